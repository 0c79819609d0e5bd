/*
 * tls_ctx_kdf_tls.c - tlsloop's TLS1-PRF (TLS 1.2's PRF) and TLS13-KDF (TLS 1.3's key schedule):
 * their contexts and parameters as the default provider reads them, SHA-256/384 derived here
 * (tls_ctx_kdf_core.c), any other digest handed to the implementation that would have served it.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "tls/tls_ctx_kdf_int.h"

/* ---- The two KDFs' contexts and parameters ---- */

static int refuse(const char *why)
{
    return tli_kdf_refuse("KDF", why);
}

/* An octet parameter read as OSSL_PARAM_get_octet_string reads it: an octet string whose data
 * is there, even when it is empty. */
static int octets_set_param(octets *o, const OSSL_PARAM *p)
{
    if (p->data_type != OSSL_PARAM_OCTET_STRING || !p->data)
        return refuse("an octet parameter without data");
    tli_kdf_octets_clear(o);
    return tli_kdf_octets_append(o, p->data, p->data_size);
}

/* A UTF-8 parameter kept with its NUL; data NULL is "not given". */
static int string_set_param(octets *o, const OSSL_PARAM *p)
{
    if (p->data_type != OSSL_PARAM_UTF8_STRING)
        return refuse("a string parameter of another type");
    tli_kdf_octets_clear(o);
    if (!p->data)
        return 1;
    size_t n = strnlen(p->data, p->data_size);
    return tli_kdf_octets_append(o, p->data, n) && tli_kdf_octets_append(o, "", 1);
}

#define TLS1_PRF_SEED_MAX 1024   /* the default provider's limit on the seeds together */

typedef struct {
    bool tls13;                  /* TLS13-KDF; else TLS1-PRF */
    md_kind md;
    int mode;                    /* TLS13-KDF: EVP_KDF_HKDF_MODE_* */
    /* The digest's name and the properties that came with it (NUL-terminated), for the
     * delegate. */
    octets digest, props;
    /* TLS1-PRF uses key (its "secret") and seed; TLS13-KDF the others. */
    octets key, salt, prefix, label, data, seed;
} kdf_ctx;

#define KDF_OCTETS(c) {&(c)->digest, &(c)->props, &(c)->key, &(c)->salt, &(c)->prefix, \
                       &(c)->label, &(c)->data, &(c)->seed}

static void *kdf_new(bool tls13)
{
    kdf_ctx *c = OPENSSL_zalloc(sizeof *c);
    if (c)
        c->tls13 = tls13;
    return c;
}

static void *prf_newctx(void *provctx)
{
    (void)provctx;
    return kdf_new(false);
}

static void *tls13_newctx(void *provctx)
{
    (void)provctx;
    return kdf_new(true);
}

static void kdf_reset(void *vc)
{
    kdf_ctx *c = vc;
    bool tls13 = c->tls13;
    octets *all[] = KDF_OCTETS(c);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tli_kdf_octets_clear(all[i]);
    memset(c, 0, sizeof *c);
    c->tls13 = tls13;
}

static void kdf_freectx(void *vc)
{
    if (!vc)
        return;
    kdf_reset(vc);
    OPENSSL_free(vc);
}

static void *kdf_dupctx(void *vsrc)
{
    kdf_ctx *s = vsrc;
    kdf_ctx *d = kdf_new(s->tls13);
    if (!d)
        return NULL;
    d->md = s->md;
    d->mode = s->mode;
    octets *from[] = KDF_OCTETS(s), *to[] = KDF_OCTETS(d);
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        if (from[i]->set && !tli_kdf_octets_append(to[i], from[i]->p, from[i]->len)) {
            kdf_freectx(d);
            return NULL;
        }
    }
    return d;
}

static const char *props_of(const kdf_ctx *c)
{
    return c->props.set ? (const char *)c->props.p : NULL;
}

/* The digest, and the properties that come with it in the same call (the default provider reads
 * them only there). SHA-256 and SHA-384 without properties are ours; anything else must be a
 * digest OpenSSL can fetch, now, as the default provider checks. */
static int set_digest(kdf_ctx *c, const OSSL_PARAM *params, const OSSL_PARAM *p)
{
    if (p->data_type != OSSL_PARAM_UTF8_STRING || !p->data)
        return refuse("digest is not a name");
    const OSSL_PARAM *q = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_PROPERTIES);
    if (!string_set_param(&c->digest, p) || (q && !string_set_param(&c->props, q)))
        return 0;
    if (!q)
        tli_kdf_octets_clear(&c->props);
    c->md = tli_kdf_md_by_name((const char *)c->digest.p);
    if (c->md != MD_OTHER && !c->props.set)
        return 1;
    c->md = MD_OTHER;
    EVP_MD *md = EVP_MD_fetch(NULL, (const char *)c->digest.p, props_of(c));
    EVP_MD_free(md);
    if (!md) {
        c->md = MD_UNSET;
        return refuse("no such digest");
    }
    return 1;       /* what else it refuses, the delegate says when deriving */
}

static int set_mode(kdf_ctx *c, const OSSL_PARAM *p)
{
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
        static const char *const names[] = {"EXTRACT_AND_EXPAND", "EXTRACT_ONLY", "EXPAND_ONLY"};
        for (int i = 0; p->data && i < 3; i++) {
            if (strcasecmp(p->data, names[i]) == 0) {
                c->mode = i;
                return 1;
            }
        }
        return refuse("unknown mode");
    }
    int mode;
    if (!OSSL_PARAM_get_int(p, &mode) || mode < EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND ||
        mode > EVP_KDF_HKDF_MODE_EXPAND_ONLY)
        return refuse("unknown mode");
    c->mode = mode;
    return 1;
}

static int prf_set_params(kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SECRET)) &&
        !octets_set_param(&c->key, p))
        return 0;
    /* Seeds concatenate, within one call and across calls, until a reset; empty ones are
     * skipped (libssl passes them for its unused slots). */
    for (p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SEED); p;
         p = OSSL_PARAM_locate_const(p + 1, OSSL_KDF_PARAM_SEED)) {
        if (p->data_size == 0 || !p->data)
            continue;
        if (p->data_type != OSSL_PARAM_OCTET_STRING)
            return refuse("seed is not an octet string");
        if (p->data_size > TLS1_PRF_SEED_MAX - c->seed.len)
            return refuse("seeds longer than 1024 bytes");
        if (!tli_kdf_octets_append(&c->seed, p->data, p->data_size))
            return 0;
    }
    return 1;
}

/* As OpenSSL's TLS13-KDF: any parameters clear the data; a context must be in one of the two
 * modes (there is no extract-and-expand) before anything else is taken. */
static int tls13_set_params(kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    tli_kdf_octets_clear(&c->data);
    struct {
        const char *name;
        octets *o;
    } keys[] = {{OSSL_KDF_PARAM_KEY, &c->key}, {OSSL_KDF_PARAM_SALT, &c->salt}},
      rest[] = {{OSSL_KDF_PARAM_PREFIX, &c->prefix}, {OSSL_KDF_PARAM_LABEL, &c->label},
                {OSSL_KDF_PARAM_DATA, &c->data}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if ((p = OSSL_PARAM_locate_const(params, keys[i].name)) && !octets_set_param(keys[i].o, p))
            return 0;
    }
    if (c->mode == EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND)
        return refuse("TLS13-KDF has no extract-and-expand mode");
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        if ((p = OSSL_PARAM_locate_const(params, rest[i].name)) && !octets_set_param(rest[i].o, p))
            return 0;
    }
    return 1;
}

static int kdf_set_ctx_params(void *vc, const OSSL_PARAM params[])
{
    kdf_ctx *c = vc;
    if (!params || !params[0].key)
        return 1;
    const OSSL_PARAM *p;
    if (c->tls13 && (p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_MODE)) && !set_mode(c, p))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_DIGEST)) && !set_digest(c, params, p))
        return 0;
    return c->tls13 ? tls13_set_params(c, params) : prf_set_params(c, params);
}

/* Anything but SHA-256 and SHA-384: the same derivation by the provider that would have done it
 * without us, from the parameters kept. */
static int delegate(kdf_ctx *c, unsigned char *out, size_t outlen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, c->tls13 ? OSSL_KDF_NAME_TLS1_3_KDF : OSSL_KDF_NAME_TLS1_PRF,
                                 "provider!=" PROVIDER_NAME);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kc)
        return 0;
    /* digest, properties, six octet strings, mode, end */
    OSSL_PARAM params[10], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)c->digest.p, 0);
    if (c->props.set)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_PROPERTIES, (char *)c->props.p, 0);
    struct {
        const char *name;
        octets *o;
    } fields[] = {{c->tls13 ? OSSL_KDF_PARAM_KEY : OSSL_KDF_PARAM_SECRET, &c->key},
                  {OSSL_KDF_PARAM_SALT, &c->salt}, {OSSL_KDF_PARAM_PREFIX, &c->prefix},
                  {OSSL_KDF_PARAM_LABEL, &c->label}, {OSSL_KDF_PARAM_DATA, &c->data},
                  {OSSL_KDF_PARAM_SEED, &c->seed}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].o->set)
            *p++ = OSSL_PARAM_construct_octet_string(fields[i].name, fields[i].o->p,
                                                     fields[i].o->len);
    }
    if (c->tls13)
        *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &c->mode);
    *p = OSSL_PARAM_construct_end();
    /* The mode first: the delegate refuses other parameters in its initial mode. */
    if (c->tls13) {
        OSSL_PARAM mode[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &c->mode),
                             OSSL_PARAM_construct_end()};
        if (EVP_KDF_CTX_set_params(kc, mode) <= 0) {
            EVP_KDF_CTX_free(kc);
            return 0;
        }
    }
    int ok = EVP_KDF_derive(kc, out, outlen, params);
    EVP_KDF_CTX_free(kc);
    return ok;
}

static int prf_derive(kdf_ctx *c, unsigned char *out, size_t outlen)
{
    if (!c->key.set)
        return refuse("no secret");
    if (c->seed.len == 0)
        return refuse("no seed");
    if (outlen == 0)
        return refuse("nothing to derive");
    tli_kdf_p_hash(c->md, c->key.p, c->key.len, c->seed.p, c->seed.len, out, outlen);
    return 1;
}

/* TLS 1.3's HKDF-Expand-Label (RFC 8446 section 7.1) with the label split in prefix ("tls13 ")
 * and label, as libssl gives them. */
static int tls13_expand(md_kind md, const octets *secret, const octets *prefix,
                        const octets *label, const octets *data, unsigned char *out,
                        size_t outlen)
{
    unsigned char info[2 + 1 + 255 + 1 + 255];
    size_t labellen = prefix->len + label->len;
    if (labellen > 255 || data->len > 255 || outlen > 255 * md_size(md))
        return refuse("label, context or output too long for HKDF-Expand-Label");
    size_t n = 0;
    info[n++] = (unsigned char)(outlen >> 8);
    info[n++] = (unsigned char)outlen;
    info[n++] = (unsigned char)labellen;
    if (prefix->len)
        memcpy(info + n, prefix->p, prefix->len);
    n += prefix->len;
    if (label->len)
        memcpy(info + n, label->p, label->len);
    n += label->len;
    info[n++] = (unsigned char)data->len;
    if (data->len)
        memcpy(info + n, data->p, data->len);
    n += data->len;
    tli_kdf_hkdf_expand(md, secret->p, secret->len, info, n, out, outlen);
    return 1;
}

/* TLS 1.3's HKDF-Extract, with the previous secret (the salt) first run through
 * Derive-Secret(prev, label, "") as the key schedule wants; no salt is zeros, and so is no key. */
static int tls13_extract(kdf_ctx *c, unsigned char *out, size_t outlen)
{
    static const unsigned char zeros[MD_MAX];
    size_t n = md_size(c->md);
    if (outlen != n)
        return refuse("an extracted secret is one hash long");
    const unsigned char *ikm = c->key.set ? c->key.p : zeros;
    size_t ikmlen = c->key.set ? c->key.len : n;
    if (!c->salt.set) {
        tli_kdf_hkdf_extract(c->md, zeros, 0, ikm, ikmlen, out);
        return 1;
    }
    unsigned char empty_hash[MD_MAX], salt[MD_MAX];
    md_state s;
    md_init(&s, c->md);
    md_final(&s, empty_hash);
    octets hash = {.p = empty_hash, .len = n, .set = true};
    if (!tls13_expand(c->md, &c->salt, &c->prefix, &c->label, &hash, salt, n))
        return 0;
    tli_kdf_hkdf_extract(c->md, salt, n, ikm, ikmlen, out);
    OPENSSL_cleanse(salt, sizeof salt);
    return 1;
}

static int kdf_derive(void *vc, unsigned char *out, size_t outlen, const OSSL_PARAM params[])
{
    kdf_ctx *c = vc;
    if (!kdf_set_ctx_params(c, params))
        return 0;
    if (c->md == MD_UNSET)
        return refuse("no digest");
    if (c->md == MD_OTHER)
        return delegate(c, out, outlen);
    if (!c->tls13)
        return prf_derive(c, out, outlen);
    switch (c->mode) {
    case EVP_KDF_HKDF_MODE_EXTRACT_ONLY:
        return tls13_extract(c, out, outlen);
    case EVP_KDF_HKDF_MODE_EXPAND_ONLY:
        if (!c->key.set)
            return refuse("no key");
        return tls13_expand(c->md, &c->key, &c->prefix, &c->label, &c->data, out, outlen);
    default:
        return refuse("TLS13-KDF has no extract-and-expand mode");
    }
}

static const OSSL_PARAM *prf_settable(void *vc, void *provctx)
{
    (void)vc, (void)provctx;
    static const OSSL_PARAM known[] = {
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, NULL, 0),
        OSSL_PARAM_END};
    return known;
}

static const OSSL_PARAM *tls13_settable(void *vc, void *provctx)
{
    (void)vc, (void)provctx;
    static const OSSL_PARAM known[] = {
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_MODE, NULL, 0),
        OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, NULL),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, NULL, 0),
        OSSL_PARAM_END};
    return known;
}

static const OSSL_PARAM *kdf_gettable(void *vc, void *provctx)
{
    (void)vc, (void)provctx;
    static const OSSL_PARAM known[] = {OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, NULL), OSSL_PARAM_END};
    return known;
}

/* "size": the PRF has no limit; TLS13-KDF gives one hash length when extracting. */
static int kdf_get_ctx_params(void *vc, OSSL_PARAM params[])
{
    kdf_ctx *c = vc;
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_SIZE);
    if (!p)
        return 1;
    size_t size = SIZE_MAX;
    if (c->tls13 && c->mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY) {
        if (c->md != MD_SHA256 && c->md != MD_SHA384) {
            EVP_MD *md = c->md == MD_OTHER ? EVP_MD_fetch(NULL, (const char *)c->digest.p,
                                                          props_of(c)) : NULL;
            int n = md ? EVP_MD_get_size(md) : 0;
            EVP_MD_free(md);
            if (n <= 0)
                return 0;
            size = (size_t)n;
        } else {
            size = md_size(c->md);
        }
    }
    return OSSL_PARAM_set_size_t(p, size);
}

#define KDF_FUNCTIONS(newctx, settable)                                                         \
    {                                                                                           \
        {OSSL_FUNC_KDF_NEWCTX, (void (*)(void))newctx},                                         \
        {OSSL_FUNC_KDF_DUPCTX, (void (*)(void))kdf_dupctx},                                     \
        {OSSL_FUNC_KDF_FREECTX, (void (*)(void))kdf_freectx},                                   \
        {OSSL_FUNC_KDF_RESET, (void (*)(void))kdf_reset},                                       \
        {OSSL_FUNC_KDF_DERIVE, (void (*)(void))kdf_derive},                                     \
        {OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, (void (*)(void))settable},                          \
        {OSSL_FUNC_KDF_SET_CTX_PARAMS, (void (*)(void))kdf_set_ctx_params},                     \
        {OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, (void (*)(void))kdf_gettable},                      \
        {OSSL_FUNC_KDF_GET_CTX_PARAMS, (void (*)(void))kdf_get_ctx_params},                     \
        {0, NULL},                                                                              \
    }

static const OSSL_DISPATCH prf_functions[] = KDF_FUNCTIONS(prf_newctx, prf_settable);
static const OSSL_DISPATCH tls13_functions[] = KDF_FUNCTIONS(tls13_newctx, tls13_settable);

const OSSL_ALGORITHM tli_kdf_tls_algorithms[] = {
    {OSSL_KDF_NAME_TLS1_PRF, ALG_PROPS, prf_functions,
     "TLS 1.2 PRF over HMAC-SHA-256/384 (tlsloop)"},
    {OSSL_KDF_NAME_TLS1_3_KDF, ALG_PROPS, tls13_functions,
     "TLS 1.3 key schedule over HMAC-SHA-256/384 (tlsloop)"},
    {NULL, NULL, NULL, NULL},
};
