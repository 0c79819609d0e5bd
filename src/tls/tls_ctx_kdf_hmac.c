/* tls_ctx_kdf_hmac.c - tlsloop's HMAC for libssl (TLS 1.3's Finished messages, PSK binders, the
 * ticket MAC): a key is two pad states, a message a copy of the inner one; other digests and
 * parameters go to the HMAC that would have served without us. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <string.h>

#include "tls/tls_ctx_int.h"
#include "tls/tls_ctx_kdf_int.h"

/* ---- HMAC ---- */

/* A MAC context: SHA-256/384 keys and messages are ours; anything else is handed, with the key
 * so far and every later call, to the HMAC that would have served without us. Which calls
 * libssl makes, the delegate and the two refusals: docs/design.md, decision 10, "HMAC". */
typedef struct {
    md_kind md;                  /* the digest set: MD_UNSET or ours (others go to `other`) */
    md_kind keyed;               /* the digest the key was set with, which messages use (as
                                  * the default's HMAC_CTX keeps its own); MD_UNSET: no key */
    octets key;                  /* the raw key, for a delegate made after it was set */
    hmac_key pads;               /* the key's pad states */
    md_state run;                /* the inner hash of the message so far */
    bool running, fed;           /* a message is open; it has data */
    EVP_MAC_CTX *other;          /* the delegate: once made, it does everything */
} mac_ctx;

static int mac_refuse(const char *why)
{
    return tli_kdf_refuse("HMAC", why);
}

static size_t hmacs_made;       /* contexts, for tests: libssl does come here */

static void *mac_newctx(void *provctx)
{
    (void)provctx;
    __atomic_fetch_add(&hmacs_made, 1, __ATOMIC_RELAXED);
    return OPENSSL_zalloc(sizeof(mac_ctx));
}

static void mac_freectx(void *vc)
{
    mac_ctx *c = vc;
    if (!c)
        return;
    tli_kdf_octets_clear(&c->key);
    EVP_MAC_CTX_free(c->other);
    OPENSSL_clear_free(c, sizeof *c);
}

static void *mac_dupctx(void *vsrc)
{
    mac_ctx *s = vsrc, *d = mac_newctx(NULL);
    if (!d)
        return NULL;
    *d = *s;
    d->key = (octets){0};
    d->other = NULL;
    if ((s->key.set && !tli_kdf_octets_append(&d->key, s->key.p, s->key.len)) ||
        (s->other && !(d->other = EVP_MAC_CTX_dup(s->other)))) {
        mac_freectx(d);
        return NULL;
    }
    return d;
}

/* Open a message under the key set last. */
static int mac_start(mac_ctx *c)
{
    if (c->keyed == MD_UNSET)
        return mac_refuse("no key");
    c->run = c->pads.inner;
    c->running = true;
    c->fed = false;
    return 1;
}

/* A new key, with the digest set now, and a message opened under it. Without key bytes
 * (NULL), the key there is opened again if it was made for this digest. */
static int mac_set_key(mac_ctx *c, const unsigned char *key, size_t len)
{
    if (c->md == MD_UNSET || (!key && c->keyed != c->md)) {
        tli_kdf_octets_clear(&c->key);
        c->keyed = MD_UNSET;
        c->running = false;
        return mac_refuse(c->md == MD_UNSET ? "a key without a digest" : "no key");
    }
    if (key) {
        tli_kdf_octets_clear(&c->key);
        if (!tli_kdf_octets_append(&c->key, key, len))
            return 0;
        tli_kdf_hmac_key_init(&c->pads, c->md, key, len);
        c->keyed = c->md;
    }
    return mac_start(c);
}

static const char *md_name(md_kind k)
{
    return k == MD_SHA256 ? "SHA2-256" : "SHA2-384";
}

/* Hand the context to the default provider's HMAC: the digest and key it has so far, then the
 * parameters that needed it. */
static int mac_hand_over(mac_ctx *c)
{
    if (c->running && c->fed)
        return mac_refuse("parameters that need OpenSSL's HMAC in the middle of a message");
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, "provider!=" PROVIDER_NAME);
    c->other = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    if (!c->other)
        return 0;
    /* The key with the digest it was made for, then the digest set since (the default, too,
     * keeps its key's digest until the next key). */
    OSSL_PARAM keyed[3] = {OSSL_PARAM_END, OSSL_PARAM_END, OSSL_PARAM_END};
    OSSL_PARAM digest[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
    if (c->keyed != MD_UNSET) {
        keyed[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                    (char *)md_name(c->keyed), 0);
        keyed[1] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, c->key.p, c->key.len);
    }
    if (c->md != MD_UNSET)
        digest[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     (char *)md_name(c->md), 0);
    if (!EVP_MAC_CTX_set_params(c->other, keyed) || !EVP_MAC_CTX_set_params(c->other, digest)) {
        EVP_MAC_CTX_free(c->other);   /* ours as it was */
        c->other = NULL;
        return 0;
    }
    tli_kdf_octets_clear(&c->key);
    OPENSSL_cleanse(&c->pads, sizeof c->pads);
    OPENSSL_cleanse(&c->run, sizeof c->run);
    return 1;
}

/* A UTF-8 parameter equal to s (its data need not end in a NUL). */
static bool param_is(const OSSL_PARAM *p, const char *s)
{
    size_t n = strlen(s);
    return p->data_type == OSSL_PARAM_UTF8_STRING && p->data &&
           strnlen(p->data, p->data_size) == n && memcmp(p->data, s, n) == 0;
}

/* The digest a UTF-8 parameter names: ours, or MD_OTHER for anything else. */
static md_kind md_by_param(const OSSL_PARAM *p)
{
    char name[32];
    if (p->data_type != OSSL_PARAM_UTF8_STRING || !p->data)
        return MD_OTHER;
    size_t n = strnlen(p->data, p->data_size);
    if (n >= sizeof name)
        return MD_OTHER;
    memcpy(name, p->data, n);
    name[n] = '\0';
    return tli_kdf_md_by_name(name);
}

/* Whether these parameters are ours to take: SHA-256 or SHA-384 with no properties but our own
 * query, and nothing but the key besides. */
static bool mac_params_ours(const OSSL_PARAM params[])
{
    const OSSL_PARAM *d = OSSL_PARAM_locate_const(params, OSSL_MAC_PARAM_DIGEST);
    const OSSL_PARAM *q = OSSL_PARAM_locate_const(params, OSSL_MAC_PARAM_PROPERTIES);
    if (d && md_by_param(d) == MD_OTHER)
        return false;
    if (d && q && q->data && !param_is(q, "") && !param_is(q, PROPQ))
        return false;
    for (const OSSL_PARAM *p = params; p->key; p++) {
        if (strcmp(p->key, OSSL_MAC_PARAM_DIGEST) && strcmp(p->key, OSSL_MAC_PARAM_PROPERTIES) &&
            strcmp(p->key, OSSL_MAC_PARAM_KEY))
            return false;
    }
    return true;
}

static int mac_set_ctx_params(void *vc, const OSSL_PARAM params[])
{
    mac_ctx *c = vc;
    if (!params || !params[0].key)
        return 1;
    if (!c->other && !mac_params_ours(params) && !mac_hand_over(c))
        return 0;
    if (c->other)
        return EVP_MAC_CTX_set_params(c->other, params);
    const OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_MAC_PARAM_PROPERTIES)) &&
        p->data_type != OSSL_PARAM_UTF8_STRING)
        return mac_refuse("properties are not a string");
    if ((p = OSSL_PARAM_locate_const(params, OSSL_MAC_PARAM_DIGEST)))
        c->md = md_by_param(p);
    if ((p = OSSL_PARAM_locate_const(params, OSSL_MAC_PARAM_KEY))) {
        if (p->data_type != OSSL_PARAM_OCTET_STRING)
            return mac_refuse("the key is not an octet string");
        return mac_set_key(c, p->data, p->data_size);
    }
    return 1;
}

static int mac_init(void *vc, const unsigned char *key, size_t keylen, const OSSL_PARAM params[])
{
    mac_ctx *c = vc;
    if (!mac_set_ctx_params(c, params))
        return 0;
    if (c->other)
        return EVP_MAC_init(c->other, key, keylen, NULL);
    return key ? mac_set_key(c, key, keylen) : mac_start(c);
}

static int mac_update(void *vc, const unsigned char *data, size_t len)
{
    mac_ctx *c = vc;
    if (c->other)
        return EVP_MAC_update(c->other, data, len);
    if (!c->running)
        return mac_refuse("update without init");
    md_update(&c->run, data, len);
    c->fed = true;
    return 1;
}

static int mac_final(void *vc, unsigned char *out, size_t *outl, size_t outsize)
{
    mac_ctx *c = vc;
    if (c->other)
        return EVP_MAC_final(c->other, out, outl, outsize);
    if (!c->running)
        return mac_refuse("final without init");
    size_t n = md_size(c->keyed);
    if (outsize < n)
        return mac_refuse("output buffer too small");
    unsigned char ih[MD_MAX];
    md_final(&c->run, ih);
    md_state s = c->pads.outer;
    md_update(&s, ih, n);
    md_final(&s, out);
    OPENSSL_cleanse(&s, sizeof s);
    OPENSSL_cleanse(ih, sizeof ih);
    c->running = false;
    *outl = n;
    return 1;
}

static const OSSL_PARAM *mac_gettable(void *vc, void *provctx)
{
    (void)vc, (void)provctx;
    static const OSSL_PARAM known[] = {
        OSSL_PARAM_size_t(OSSL_MAC_PARAM_SIZE, NULL),
        OSSL_PARAM_size_t(OSSL_MAC_PARAM_BLOCK_SIZE, NULL),
        OSSL_PARAM_END};
    return known;
}

/* The default provider's list, so that callers which look (EVP_Q_mac) pass a digest. */
static const OSSL_PARAM *mac_settable(void *vc, void *provctx)
{
    (void)vc, (void)provctx;
    static const OSSL_PARAM known[] = {
        OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_MAC_PARAM_KEY, NULL, 0),
        OSSL_PARAM_int(OSSL_MAC_PARAM_DIGEST_NOINIT, NULL),
        OSSL_PARAM_int(OSSL_MAC_PARAM_DIGEST_ONESHOT, NULL),
        OSSL_PARAM_size_t(OSSL_MAC_PARAM_TLS_DATA_SIZE, NULL),
        OSSL_PARAM_END};
    return known;
}

/* As the default's: "size" is that of the key's digest (0 before a key), "block-size" the block
 * of the digest set. */
static int mac_get_ctx_params(void *vc, OSSL_PARAM params[])
{
    mac_ctx *c = vc;
    if (c->other)
        return EVP_MAC_CTX_get_params(c->other, params);
    OSSL_PARAM *p;
    size_t size = c->keyed == MD_UNSET ? 0 : md_size(c->keyed);
    size_t block = c->md == MD_UNSET ? 0 : md_block(c->md);
    if ((p = OSSL_PARAM_locate(params, OSSL_MAC_PARAM_SIZE)) && !OSSL_PARAM_set_size_t(p, size))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_MAC_PARAM_BLOCK_SIZE)) &&
        !OSSL_PARAM_set_size_t(p, block))
        return 0;
    return 1;
}

static const OSSL_DISPATCH mac_functions[] = {
    {OSSL_FUNC_MAC_NEWCTX, (void (*)(void))mac_newctx},
    {OSSL_FUNC_MAC_DUPCTX, (void (*)(void))mac_dupctx},
    {OSSL_FUNC_MAC_FREECTX, (void (*)(void))mac_freectx},
    {OSSL_FUNC_MAC_INIT, (void (*)(void))mac_init},
    {OSSL_FUNC_MAC_UPDATE, (void (*)(void))mac_update},
    {OSSL_FUNC_MAC_FINAL, (void (*)(void))mac_final},
    {OSSL_FUNC_MAC_GETTABLE_CTX_PARAMS, (void (*)(void))mac_gettable},
    {OSSL_FUNC_MAC_GET_CTX_PARAMS, (void (*)(void))mac_get_ctx_params},
    {OSSL_FUNC_MAC_SETTABLE_CTX_PARAMS, (void (*)(void))mac_settable},
    {OSSL_FUNC_MAC_SET_CTX_PARAMS, (void (*)(void))mac_set_ctx_params},
    {0, NULL},
};

const OSSL_ALGORITHM tli_kdf_hmac_algorithms[] = {
    {OSSL_MAC_NAME_HMAC, ALG_PROPS, mac_functions,
     "HMAC over SHA-256/384 (tlsloop)"},
    {NULL, NULL, NULL, NULL},
};

size_t tli_kdf_hmacs_made(void)
{
    return __atomic_load_n(&hmacs_made, __ATOMIC_RELAXED);
}
