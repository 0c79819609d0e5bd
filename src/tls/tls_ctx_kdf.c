/*
 * src/tls/tls_ctx_kdf.c - TLS 1.2's PRF, TLS 1.3's key schedule and HMAC for libssl, from a provider
 * of our own (tls_ctx.h, "Key derivation").
 *
 * Why: OpenSSL 3.0's libssl derives every TLS secret through EVP_KDF ("TLS1-PRF", "TLS13-KDF"),
 * and the default provider's implementations build, duplicate and free EVP_MAC and EVP_MD
 * contexts for each call: fetches, allocations and cleanses around a dozen hash blocks of real
 * work. Counted by callgrind on `tlsloop serve`: a resumed TLS 1.2 connection spent 134,000 of its
 * 440,000 instructions in its three PRF calls. Here an HMAC key is two hash states with the pads
 * absorbed once per call; each HMAC after that copies the two states (plain structs) and hashes
 * only its message.
 *
 * The same goes for HMAC, which libssl uses for TLS 1.3's Finished messages, PSK binders and
 * session tickets ("HMAC" below).
 *
 * How: a built-in provider named "tlsloop" offers the three algorithms with the properties
 * "provider=tlsloop,tlsloop.kdf=yes". It is an opt-in (TL_KDF_TLSLOOP in tl_tls_ctx_opts; the
 * default is OpenSSL's own): only then is it loaded, and that configuration's SSL_CTX is made
 * with the property query "?tlsloop.kdf=yes" (tli_kdf_propq). No other provider's algorithm has
 * that property, so for everything else libssl fetches the query is neutral and the site's
 * default_properties decide as they would without us. The two digests TLS 1.2 and 1.3 suites
 * use, SHA-256 and SHA-384, are computed here; any other digest is handed, with the same
 * parameters, to the implementation that would have served it otherwise ("provider!=tlsloop"),
 * and so is a digest that comes with properties. The parameters, their meaning and what is
 * refused are the default provider's (EVP_KDF-TLS1_PRF(7), EVP_KDF-TLS13_KDF(7), and OpenSSL
 * 3.0's code where the pages are silent: the PRF's 1024-byte seed limit, TLS13-KDF clearing its
 * data on every call with parameters); tests/unit/tls/test_tls_ctx_kdf.c compares outputs and
 * verdicts with it, tests/unit/tls/test_tls_ctx_kdf_vectors.c checks RFC 5869, 8448 and 4231.
 *
 * Standing aside: each configuration that opts in asks again (tli_kdf_propq) and gets OpenSSL's
 * when FIPS mode is on in the default library context (EVP_default_properties_is_fips_enabled:
 * FIPS's KDFs and HMAC are the approved ones), or when the default properties would not select
 * ours anyway; tl_tls_ctx_kdf and tl_kdf_unavailable say so.
 *
 * Unloading: OpenSSL keeps pointers into this file (provider_init, the dispatch tables) until
 * the process ends, so libtlsloop.so is linked with -z nodelete and a dlclose leaves it mapped.
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
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls/tls_ctx_int.h"

#define PROVIDER_NAME "tlsloop"
/* Our algorithms carry a property no other provider's have, and configurations that opt in ask
 * for it as a preference: for every other algorithm that query is neutral, so a site's
 * default_properties decide there as they would without us ("?provider=tlsloop" would have
 * replaced the site's own "provider" preference for everything libssl fetches). */
#define ALG_PROPS "provider=" PROVIDER_NAME ",tlsloop.kdf=yes"
#define PROPQ "?tlsloop.kdf=yes"

/* ---- SHA-256 and SHA-384, and HMAC over them ---- */

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

static size_t md_size(md_kind k)
{
    return k == MD_SHA256 ? 32 : 48;
}

static size_t md_block(md_kind k)
{
    return k == MD_SHA256 ? 64 : 128;
}

static void md_init(md_state *s, md_kind k)
{
    s->kind = k;
    if (k == MD_SHA256)
        SHA256_Init(&s->u.s256);
    else
        SHA384_Init(&s->u.s512);
}

static void md_update(md_state *s, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (s->kind == MD_SHA256)
        SHA256_Update(&s->u.s256, p, n);
    else
        SHA384_Update(&s->u.s512, p, n);
}

static void md_final(md_state *s, unsigned char *out)
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

static void hmac_key_init(hmac_key *h, md_kind k, const unsigned char *key, size_t len)
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
static void p_hash(md_kind k, const unsigned char *sec, size_t slen, const unsigned char *seed,
                   size_t seedlen, unsigned char *out, size_t olen)
{
    hmac_key h;
    unsigned char a[MD_MAX], chunk[MD_MAX];
    size_t n = md_size(k);
    hmac_key_init(&h, k, sec, slen);
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
static void hkdf_expand(md_kind k, const unsigned char *prk, size_t prklen,
                        const unsigned char *info, size_t infolen, unsigned char *out, size_t olen)
{
    hmac_key h;
    unsigned char t[MD_MAX];
    size_t n = md_size(k), tlen = 0;
    hmac_key_init(&h, k, prk, prklen);
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
static void hkdf_extract(md_kind k, const unsigned char *salt, size_t saltlen,
                         const unsigned char *ikm, size_t ikmlen, unsigned char *out)
{
    hmac_key h;
    hmac_key_init(&h, k, salt, saltlen);
    hmac3(&h, ikm, ikmlen, NULL, 0, NULL, 0, out);
    OPENSSL_cleanse(&h, sizeof h);
}

/* ---- The two KDFs' contexts and parameters ---- */

/* A parameter's octets: inline when short (all of TLS's secrets, labels and seeds are), on the
 * heap otherwise. */
typedef struct {
    unsigned char *p;            /* small, or a heap copy */
    size_t len;
    bool set;
    unsigned char small[96];
} octets;

static void octets_clear(octets *o)
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
static int octets_append(octets *o, const void *v, size_t n)
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
static int refuse_as(const char *what, const char *why)
{
    ERR_raise_data(ERR_LIB_PROV, ERR_R_PASSED_INVALID_ARGUMENT, "tlsloop %s: %s", what, why);
    return 0;
}

static int refuse(const char *why)
{
    return refuse_as("KDF", why);
}

/* An octet parameter read as OSSL_PARAM_get_octet_string reads it: an octet string whose data
 * is there, even when it is empty. */
static int octets_set_param(octets *o, const OSSL_PARAM *p)
{
    if (p->data_type != OSSL_PARAM_OCTET_STRING || !p->data)
        return refuse("an octet parameter without data");
    octets_clear(o);
    return octets_append(o, p->data, p->data_size);
}

/* A UTF-8 parameter kept with its NUL; data NULL is "not given". */
static int string_set_param(octets *o, const OSSL_PARAM *p)
{
    if (p->data_type != OSSL_PARAM_UTF8_STRING)
        return refuse("a string parameter of another type");
    octets_clear(o);
    if (!p->data)
        return 1;
    size_t n = strnlen(p->data, p->data_size);
    return octets_append(o, p->data, n) && octets_append(o, "", 1);
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
        octets_clear(all[i]);
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
        if (from[i]->set && !octets_append(to[i], from[i]->p, from[i]->len)) {
            kdf_freectx(d);
            return NULL;
        }
    }
    return d;
}

/* The digest names OpenSSL knows SHA-256 and SHA-384 by; anything else is someone else's. */
static md_kind md_by_name(const char *name)
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
        octets_clear(&c->props);
    c->md = md_by_name((const char *)c->digest.p);
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
        if (!octets_append(&c->seed, p->data, p->data_size))
            return 0;
    }
    return 1;
}

/* As OpenSSL's TLS13-KDF: any parameters clear the data; a context must be in one of the two
 * modes (there is no extract-and-expand) before anything else is taken. */
static int tls13_set_params(kdf_ctx *c, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    octets_clear(&c->data);
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
    p_hash(c->md, c->key.p, c->key.len, c->seed.p, c->seed.len, out, outlen);
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
    hkdf_expand(md, secret->p, secret->len, info, n, out, outlen);
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
        hkdf_extract(c->md, zeros, 0, ikm, ikmlen, out);
        return 1;
    }
    unsigned char empty_hash[MD_MAX], salt[MD_MAX];
    md_state s;
    md_init(&s, c->md);
    md_final(&s, empty_hash);
    octets hash = {.p = empty_hash, .len = n, .set = true};
    if (!tls13_expand(c->md, &c->salt, &c->prefix, &c->label, &hash, salt, n))
        return 0;
    hkdf_extract(c->md, salt, n, ikm, ikmlen, out);
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

static const OSSL_ALGORITHM kdfs[] = {
    {OSSL_KDF_NAME_TLS1_PRF, ALG_PROPS, prf_functions,
     "TLS 1.2 PRF over HMAC-SHA-256/384 (tlsloop)"},
    {OSSL_KDF_NAME_TLS1_3_KDF, ALG_PROPS, tls13_functions,
     "TLS 1.3 key schedule over HMAC-SHA-256/384 (tlsloop)"},
    {NULL, NULL, NULL, NULL},
};

/* ---- HMAC ---- */

/* libssl 3.0 MACs with "HMAC" fetched under its property query: the TLS 1.3 Finished messages
 * (EVP_Q_mac: fetch, context, digest, key, one message, free), the PSK binder (through the
 * default provider's HMAC signature, which fetches its MAC with the same query) and the session
 * ticket MAC. The default provider's HMAC builds three EVP_MD contexts and fetches its digest on
 * every key; here a key is the two pad states of hmac_key, and a message runs on a copy of the
 * inner one.
 *
 * SHA-256 and SHA-384 without properties (or with our own query, which selects no digest of
 * ours) are computed here. Anything else goes to a delegate: the HMAC that would have served
 * without us ("provider!=tlsloop"), given the digest and the key so far and then every call.
 * That covers other digests, digest properties, the digest flags, and "tls-data-size", the
 * constant-time MAC check of TLS 1.2 CBC records (set on a keyed context before its record:
 * libssl copies the keyed context for every record it reads, so those suites pay a hand-over,
 * a context of OpenSSL's keyed again, per record; tl_tls_ctx_set_ciphers refuses CBC suites,
 * only an application that sets them on the SSL itself meets it).
 * Parameters are read in the default provider's order (digest, then key), a key set by
 * parameter starts a message as its HMAC_Init_ex does, and a message uses the digest its key
 * was set with; the outputs and verdicts are compared with it in tests/unit/tls/test_tls_ctx_kdf.c.
 * Two refusals where it goes on, neither met by libssl: handing over a message already begun
 * (it would keep the new digest for the next key), and a second final without an init between
 * (it would give bytes of a finished hash state). */
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
    return refuse_as("HMAC", why);
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
    octets_clear(&c->key);
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
    if ((s->key.set && !octets_append(&d->key, s->key.p, s->key.len)) ||
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
        octets_clear(&c->key);
        c->keyed = MD_UNSET;
        c->running = false;
        return mac_refuse(c->md == MD_UNSET ? "a key without a digest" : "no key");
    }
    if (key) {
        octets_clear(&c->key);
        if (!octets_append(&c->key, key, len))
            return 0;
        hmac_key_init(&c->pads, c->md, key, len);
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
    octets_clear(&c->key);
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
    return md_by_name(name);
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

static const OSSL_ALGORITHM macs[] = {
    {OSSL_MAC_NAME_HMAC, ALG_PROPS, mac_functions,
     "HMAC over SHA-256/384 (tlsloop)"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *provider_query(void *provctx, int operation, int *no_store)
{
    (void)provctx;
    *no_store = 0;
    return operation == OSSL_OP_KDF ? kdfs : operation == OSSL_OP_MAC ? macs : NULL;
}

static const OSSL_DISPATCH provider_functions[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))provider_query},
    {0, NULL},
};

static int provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                         const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    *out = provider_functions;
    *provctx = (void *)handle;
    return 1;
}

/* ---- Loading and choosing ---- */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded;              /* the provider is registered and active */
static OSSL_PROVIDER *provider;  /* our reference, dropped in OpenSSL's own cleanup */

static void unload(void)
{
    OSSL_PROVIDER_unload(provider);
    provider = NULL;
}

/* Once, on the first configuration that opts in. The library is linked with -z nodelete
 * (Makefile): OpenSSL keeps pointers to provider_init and our dispatch tables for the rest of
 * the process, so a dlclose must not unmap them. */
static void load(void)
{
    /* A fetch that states no preference between two implementations takes the one libcrypto
     * listed first, and it lists them as it first meets them. Have it meet OpenSSL's three
     * now, before ours exist: everyone who does not ask for ours (configurations without the
     * opt-in, the application's own fetches) keeps getting OpenSSL's. */
    EVP_KDF_free(EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, NULL));
    EVP_KDF_free(EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, NULL));
    EVP_MAC_free(EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL));
    /* try_load with fallbacks kept: OpenSSL still activates the default provider when nothing
     * else was loaded explicitly, as it would have without us. */
    if (OSSL_PROVIDER_add_builtin(NULL, PROVIDER_NAME, provider_init) &&
        (provider = OSSL_PROVIDER_try_load(NULL, PROVIDER_NAME, 1))) {
        if (OPENSSL_atexit(unload))
            loaded = true;
        else
            unload();
    }
    ERR_clear_error();
}

static bool is_ours(const OSSL_PROVIDER *p)
{
    return p && strcmp(OSSL_PROVIDER_get0_name(p), PROVIDER_NAME) == 0;
}

/* Whether a fetch with our query, under the default properties in force now, comes to us. */
static bool fetches_ours(void)
{
    EVP_KDF *prf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, PROPQ);
    EVP_KDF *t13 = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, PROPQ);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, PROPQ);
    bool ours = prf && t13 && mac && is_ours(EVP_KDF_get0_provider(prf)) &&
                is_ours(EVP_KDF_get0_provider(t13)) && is_ours(EVP_MAC_get0_provider(mac));
    EVP_KDF_free(prf);
    EVP_KDF_free(t13);
    EVP_MAC_free(mac);
    ERR_clear_error();
    return ours;
}

const char *tli_kdf_propq(tl_kdf want, const char **why)
{
    if (why)
        *why = NULL;
    if (want != TL_KDF_TLSLOOP)
        return NULL;
    const char *no = NULL;
    if (!EVP_default_properties_is_fips_enabled(NULL))
        pthread_once(&load_once, load);
    /* Asked each time, of the library context the configurations use: FIPS mode may be turned
     * on (or off) at any time, by the configuration file or the application. */
    if (EVP_default_properties_is_fips_enabled(NULL))
        no = "FIPS mode is on (default properties fips=yes): OpenSSL's approved TLS1-PRF, "
             "TLS13-KDF and HMAC are used instead of tlsloop's";
    else if (!loaded)
        no = "tlsloop's key derivation provider could not be loaded: OpenSSL's TLS1-PRF, "
             "TLS13-KDF and HMAC are used";
    else if (!fetches_ours())
        no = "the default properties (openssl.cnf or EVP_set_default_properties) select "
             "another provider's TLS1-PRF, TLS13-KDF or HMAC: OpenSSL's are used";
    if (why)
        *why = no;
    return no ? NULL : PROPQ;
}

const char *tl_kdf_unavailable(tl_kdf want)
{
    const char *why;
    if (want != TL_KDF_OPENSSL && want != TL_KDF_TLSLOOP)
        return "unknown key derivation (expected TL_KDF_OPENSSL or TL_KDF_TLSLOOP)";
    tli_kdf_propq(want, &why);
    return why;
}

const char *tl_kdf_name(tl_kdf kdf)
{
    return kdf == TL_KDF_TLSLOOP ? "tlsloop" : "openssl";
}

int tl_kdf_parse(const char *s, tl_kdf *out)
{
    if (s && !strcmp(s, "openssl"))
        *out = TL_KDF_OPENSSL;
    else if (s && !strcmp(s, "tlsloop"))
        *out = TL_KDF_TLSLOOP;
    else
        return -1;
    return 0;
}

size_t tli_kdf_hmacs_made(void)
{
    return __atomic_load_n(&hmacs_made, __ATOMIC_RELAXED);
}
