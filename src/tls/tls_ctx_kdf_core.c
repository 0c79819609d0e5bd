/*
 * tls_ctx_kdf_core.c - the hashing under tlsloop's KDFs and HMAC: HMAC keys kept as two
 * SHA-256/384 states, P_hash and HKDF over them; and the octet parameters and refusals both
 * algorithm files use.
 *
 * The low-level SHA256_* and SHA384_* functions are deprecated in OpenSSL 3.0 in favour of
 * EVP_MD. We keep them, on purpose: the provider exists to avoid the per-call EVP work, and an
 * EVP_MD_CTX copy (EVP_MD_CTX_copy_ex) frees and allocates the algorithm context on every call,
 * which is most of what the default provider's KDFs spend. The deprecated functions are the
 * same code the default provider's SHA-2 digests run, and they are only reached with the opt-in:
 * should a future OpenSSL drop them, the opt-in goes, the default does not change
 * (docs/design.md, decision 10).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "tls/tls_ctx_kdf_int.h"

/* ---- HMAC, P_hash and HKDF ---- */

void tli_kdf_hmac_key_init(hmac_key *h, md_kind k, const unsigned char *key, size_t len)
{
    unsigned char pad[MD_BLOCK_MAX], hashed[MD_MAX];
    size_t block = md_block(k);
    if (len > block) {
        md_state s;
        md_init(&s, k);
        md_update(&s, key, len);
        md_final(&s, hashed);
        OPENSSL_cleanse(&s, sizeof s);
        key = hashed;
        len = md_size(k);
    }
    for (size_t i = 0; i < block; i++)
        pad[i] = (unsigned char)((i < len ? key[i] : 0) ^ 0x36);
    md_init(&h->inner, k);
    md_update(&h->inner, pad, block);
    for (size_t i = 0; i < block; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    md_init(&h->outer, k);
    md_update(&h->outer, pad, block);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(hashed, sizeof hashed);
}

/* out = HMAC(key, a || b || c); out may be one of the inputs. */
static void hmac3(const hmac_key *h, const void *a, size_t na, const void *b, size_t nb,
                  const void *c, size_t nc, unsigned char *out)
{
    unsigned char ih[MD_MAX];
    md_state s = h->inner;
    md_update(&s, a, na);
    md_update(&s, b, nb);
    md_update(&s, c, nc);
    md_final(&s, ih);
    s = h->outer;
    md_update(&s, ih, md_size(h->inner.kind));
    md_final(&s, out);
    OPENSSL_cleanse(&s, sizeof s);
    OPENSSL_cleanse(ih, sizeof ih);
}

/* RFC 5246 section 5: P_hash(secret, seed), olen bytes. */
void tli_kdf_p_hash(md_kind k, const unsigned char *sec, size_t slen, const unsigned char *seed,
                   size_t seedlen, unsigned char *out, size_t olen)
{
    hmac_key h;
    unsigned char a[MD_MAX], chunk[MD_MAX];
    size_t n = md_size(k);
    tli_kdf_hmac_key_init(&h, k, sec, slen);
    hmac3(&h, seed, seedlen, NULL, 0, NULL, 0, a);                     /* A(1) */
    for (;;) {
        size_t take = olen < n ? olen : n;
        hmac3(&h, a, n, seed, seedlen, NULL, 0, chunk);
        memcpy(out, chunk, take);
        out += take;
        olen -= take;
        if (olen == 0)
            break;
        hmac3(&h, a, n, NULL, 0, NULL, 0, a);                          /* A(i+1) */
    }
    OPENSSL_cleanse(&h, sizeof h);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(chunk, sizeof chunk);
}

/* RFC 5869 HKDF-Expand(prk, info, olen); olen <= 255 hash lengths (checked by the caller). */
void tli_kdf_hkdf_expand(md_kind k, const unsigned char *prk, size_t prklen,
                        const unsigned char *info, size_t infolen, unsigned char *out, size_t olen)
{
    hmac_key h;
    unsigned char t[MD_MAX];
    size_t n = md_size(k), tlen = 0;
    tli_kdf_hmac_key_init(&h, k, prk, prklen);
    for (unsigned char i = 1; olen > 0; i++) {
        size_t take = olen < n ? olen : n;
        hmac3(&h, t, tlen, info, infolen, &i, 1, t);
        tlen = n;
        memcpy(out, t, take);
        out += take;
        olen -= take;
    }
    OPENSSL_cleanse(&h, sizeof h);
    OPENSSL_cleanse(t, sizeof t);
}

/* RFC 5869 HKDF-Extract(salt, ikm) into md_size(k) bytes. */
void tli_kdf_hkdf_extract(md_kind k, const unsigned char *salt, size_t saltlen,
                         const unsigned char *ikm, size_t ikmlen, unsigned char *out)
{
    hmac_key h;
    tli_kdf_hmac_key_init(&h, k, salt, saltlen);
    hmac3(&h, ikm, ikmlen, NULL, 0, NULL, 0, out);
    OPENSSL_cleanse(&h, sizeof h);
}

/* ---- Parameters ---- */

void tli_kdf_octets_clear(octets *o)
{
    if (o->p == o->small)
        OPENSSL_cleanse(o->small, o->len);
    else if (o->p)
        OPENSSL_clear_free(o->p, o->len);
    o->p = NULL;
    o->len = 0;
    o->set = false;
}

/* Append n bytes (o keeps what it had); 0 on failure. */
int tli_kdf_octets_append(octets *o, const void *v, size_t n)
{
    size_t len = o->len + n;
    if (len < o->len)
        return 0;
    unsigned char *p = o->p ? o->p : o->small;
    if (len > sizeof o->small && p == o->small) {
        if (!(p = OPENSSL_malloc(len)))
            return 0;
        memcpy(p, o->small, o->len);
        OPENSSL_cleanse(o->small, o->len);
    } else if (len > sizeof o->small) {
        if (!(p = OPENSSL_clear_realloc(o->p, o->len, len)))
            return 0;
    }
    if (n)
        memcpy(p + o->len, v, n);
    o->p = p;
    o->len = len;
    o->set = true;
    return 1;
}

/* Refusals say why in OpenSSL's error queue, as the default provider's do. */
int tli_kdf_refuse(const char *what, const char *why)
{
    ERR_raise_data(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT, "tlsloop %s: %s", what, why);
    return 0;
}

/* The digest names OpenSSL knows SHA-256 and SHA-384 by; anything else is someone else's. */
md_kind tli_kdf_md_by_name(const char *name)
{
    static const char *const sha256[] = {"SHA2-256", "SHA-256", "SHA256", "2.16.840.1.101.3.4.2.1"};
    static const char *const sha384[] = {"SHA2-384", "SHA-384", "SHA384", "2.16.840.1.101.3.4.2.2"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(name, sha256[i]) == 0)
            return MD_SHA256;
        if (strcasecmp(name, sha384[i]) == 0)
            return MD_SHA384;
    }
    return MD_OTHER;
}
