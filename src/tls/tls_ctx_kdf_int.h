/*
 * src/tls/tls_ctx_kdf_int.h - what the files of tlsloop's key derivation provider share
 * (tls_ctx_kdf*.c only): its names, SHA-256/384 states, HMAC keys, octet parameters, the
 * algorithm tables. Include it after #define OPENSSL_SUPPRESS_DEPRECATED (see tls_ctx_kdf_core.c).
 */
#ifndef TLSLOOP_TLS_CTX_KDF_INT_H
#define TLSLOOP_TLS_CTX_KDF_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/core.h>
#include <openssl/sha.h>

#define PROVIDER_NAME "tlsloop"
/* Our algorithms carry a property no other provider's have, and configurations that opt in ask
 * for it as a preference: for every other algorithm that query is neutral, so a site's
 * default_properties decide there as they would without us ("?provider=tlsloop" would have
 * replaced the site's own "provider" preference for everything libssl fetches). */
#define ALG_PROPS "provider=" PROVIDER_NAME ",tlsloop.kdf=yes"
#define PROPQ "?tlsloop.kdf=yes"

/* ---- SHA-256 and SHA-384, and HMAC over them (tls_ctx_kdf_core.c) ---- */

typedef enum { MD_UNSET, MD_OTHER, MD_SHA256, MD_SHA384 } md_kind;

typedef struct {
    md_kind kind;
    union {
        SHA256_CTX s256;
        SHA512_CTX s512;         /* SHA-384 runs on SHA-512's state */
    } u;
} md_state;

#define MD_MAX 48                /* SHA-384's output */
#define MD_BLOCK_MAX 128

static inline size_t md_size(md_kind k)
{
    return k == MD_SHA256 ? 32 : 48;
}

static inline size_t md_block(md_kind k)
{
    return k == MD_SHA256 ? 64 : 128;
}

static inline void md_init(md_state *s, md_kind k)
{
    s->kind = k;
    if (k == MD_SHA256)
        SHA256_Init(&s->u.s256);
    else
        SHA384_Init(&s->u.s512);
}

static inline void md_update(md_state *s, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (s->kind == MD_SHA256)
        SHA256_Update(&s->u.s256, p, n);
    else
        SHA384_Update(&s->u.s512, p, n);
}

static inline void md_final(md_state *s, unsigned char *out)
{
    if (s->kind == MD_SHA256)
        SHA256_Final(out, &s->u.s256);
    else
        SHA384_Final(out, &s->u.s512);
}

/* An HMAC key: the hash states after the inner and the outer pad. */
typedef struct {
    md_state inner, outer;
} hmac_key;

void tli_kdf_hmac_key_init(hmac_key *h, md_kind k, const unsigned char *key, size_t len);
/* RFC 5246 section 5: P_hash(secret, seed), olen bytes. */
void tli_kdf_p_hash(md_kind k, const unsigned char *sec, size_t slen, const unsigned char *seed,
                    size_t seedlen, unsigned char *out, size_t olen);
/* RFC 5869 HKDF-Expand(prk, info, olen); olen <= 255 hash lengths (checked by the caller). */
void tli_kdf_hkdf_expand(md_kind k, const unsigned char *prk, size_t prklen,
                         const unsigned char *info, size_t infolen, unsigned char *out,
                         size_t olen);
/* RFC 5869 HKDF-Extract(salt, ikm) into md_size(k) bytes. */
void tli_kdf_hkdf_extract(md_kind k, const unsigned char *salt, size_t saltlen,
                          const unsigned char *ikm, size_t ikmlen, unsigned char *out);
/* The digest names OpenSSL knows SHA-256 and SHA-384 by; MD_OTHER for anything else. */
md_kind tli_kdf_md_by_name(const char *name);

/* ---- Parameters (tls_ctx_kdf_core.c) ---- */

/* A parameter's octets: inline when short (all of TLS's secrets, labels and seeds are), on the
 * heap otherwise. */
typedef struct {
    unsigned char *p;            /* small, or a heap copy */
    size_t len;
    bool set;
    unsigned char small[96];
} octets;

void tli_kdf_octets_clear(octets *o);
/* Append n bytes (o keeps what it had); 0 on failure. */
int tli_kdf_octets_append(octets *o, const void *v, size_t n);
/* Refuse, saying why in OpenSSL's error queue as "tlsloop <what>: <why>"; returns 0. */
int tli_kdf_refuse(const char *what, const char *why);

/* ---- The algorithms the provider offers (tls_ctx_kdf.c answers OpenSSL's query with them) ---- */

/* TLS1-PRF and TLS13-KDF (tls_ctx_kdf_tls.c). */
extern const OSSL_ALGORITHM tli_kdf_tls_algorithms[];
/* HMAC (tls_ctx_kdf_hmac.c). */
extern const OSSL_ALGORITHM tli_kdf_hmac_algorithms[];

#endif /* TLSLOOP_TLS_CTX_KDF_INT_H */
