/*
 * test_tls_ctx_kdf.c - tlsloop's TLS1-PRF, TLS13-KDF and HMAC (src/tls/tls_ctx_kdf.c) against
 * OpenSSL's default provider: the same output for thousands of random inputs (both digests, every length
 * the code has a boundary at, seeds split over several parameters, the digests handed on), the
 * same refusals, duplicated and reset contexts, the "size" parameter, one RFC 8448 value, and
 * handshakes between a tlsloop server and a plain OpenSSL client, whose Finished messages and
 * exported keys only agree when both sides derived the same secrets. The same for HMAC (scripts of
 * calls run on both providers, traces compared; RFC 4231; CBC suites, whose record MACs are ours
 * or handed on). Also: without the opt-in (TL_KDF_TLSLOOP) the provider is not loaded. The
 * opt-in's other promises (site properties, FIPS, dlclose) are test_tls_ctx_kdf_opt.c; the
 * RFCs' vectors test_tls_ctx_kdf_vectors.c.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "support/tls_pair.h"
#include "test.h"
#include "tls/tli_tls.h"
#include "util/tli.h"           /* tli_tls_ctx_ssl_ctx */
#include "tls/tls_ctx_int.h"   /* tli_kdf_propq */

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *const ours = "provider=tlsloop";
static const char *const theirs = "provider=default";

static unsigned rnd(unsigned n)
{
    unsigned v;
    RAND_bytes((unsigned char *)&v, sizeof v);
    return n ? v % n : 0;
}

/* Derive with the named KDF from the provider the query picks; 1 on success. */
static int derive(const char *kdf_name, const char *props, const OSSL_PARAM *params,
                  unsigned char *out, size_t outlen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, kdf_name, props);
    REQUIRE(kdf);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    REQUIRE(kc);
    int ok = EVP_KDF_derive(kc, out, outlen, params) > 0;
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    ERR_clear_error();
    return ok;
}

/* Both providers give the same verdict, and the same bytes when they succeed. */
static int same_derivation(const char *kdf_name, const OSSL_PARAM *params, size_t outlen)
{
    unsigned char a[1024], b[1024];
    REQUIRE(outlen <= sizeof a);
    memset(a, 0xAA, sizeof a);
    memset(b, 0x55, sizeof b);
    int ok_ours = derive(kdf_name, ours, params, a, outlen);
    int ok_theirs = derive(kdf_name, theirs, params, b, outlen);
    if (ok_ours != ok_theirs) {
        fprintf(stderr, "  %s, %zu bytes: tlsloop %s, OpenSSL %s\n", kdf_name, outlen,
                ok_ours ? "derived" : "refused", ok_theirs ? "derived" : "refused");
        return 0;
    }
    if (ok_ours && memcmp(a, b, outlen) != 0) {
        fprintf(stderr, "  %s, %zu bytes: outputs differ\n", kdf_name, outlen);
        return 0;
    }
    return 1;
}

/* The query of a configuration that opts in (and loads the provider). */
static const char *propq(void)
{
    return tli_kdf_propq(TL_KDF_TLSLOOP, NULL);
}

/* Opt in: tp_server_ctx and tp_client_ctx ask for tlsloop's, which loads the provider. */
static void setup(void)
{
    tp_kdf = TL_KDF_TLSLOOP;
    tl_tls_ctx *ctx = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &(tl_tls_ctx_opts){.kdf = TL_KDF_TLSLOOP});
    REQUIRE(ctx);
    REQUIRE(tl_tls_ctx_kdf(ctx) == TL_KDF_TLSLOOP);
    REQUIRE(propq());
    tl_tls_ctx_free(ctx);
}

static const char *const digests[] = {"SHA2-256", "SHA256", "sha-384", "SHA2-384"};
/* Not computed by tlsloop: handed to the default provider. */
static const char *const other_digests[] = {"SHA2-512", "SHA1", "SHA2-224"};

/* ---- TLS1-PRF ----------------------------------------------------------------------------- */

TEST(provider_serves_both_kdfs)
{
    setup();
    const char *names[] = {OSSL_KDF_NAME_TLS1_PRF, OSSL_KDF_NAME_TLS1_3_KDF};
    for (int i = 0; i < 2; i++) {
        EVP_KDF *k = EVP_KDF_fetch(NULL, names[i], propq());
        REQUIRE(k);
        CHECK_STR(OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(k)), "tlsloop");
        EVP_KDF_free(k);
    }
    /* Only a preference: what we do not offer still comes from the default provider. */
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA2-256", propq());
    REQUIRE(md);
    CHECK_STR(OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md)), "default");
    EVP_MD_free(md);
}

TEST(prf_matches_openssl)
{
    setup();
    unsigned char secret[300], seeds[5][200];
    RAND_bytes(secret, sizeof secret);
    RAND_bytes(&seeds[0][0], sizeof seeds);
    /* Lengths around the hash sizes (32, 48) and blocks (64, 128), and random ones. */
    static const size_t lens[] = {1, 12, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 96, 104, 127, 128,
                                  129, 200};
    int bad = 0;
    for (int iter = 0; iter < 3000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? other_digests[rnd(3)] : digests[rnd(4)]);
        size_t slen = iter % 3 == 0 ? lens[rnd(18)] : rnd(300);
        size_t olen = iter % 2 ? lens[rnd(18)] : 1 + rnd(400);
        OSSL_PARAM params[8], *p = params;
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, slen);
        unsigned nseeds = 1 + rnd(5);
        for (unsigned s = 0; s < nseeds; s++) {
            /* Empty and NULL seeds are skipped, as libssl passes them for unused slots. */
            size_t n = rnd(4) == 0 ? 0 : rnd(200);
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED,
                                                     rnd(8) == 0 ? NULL : seeds[s], n);
        }
        *p = OSSL_PARAM_construct_end();
        if (!same_derivation(OSSL_KDF_NAME_TLS1_PRF, params, olen)) {
            fprintf(stderr, "  (digest %s, secret %zu, %u seeds)\n", digest, slen, nseeds);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(prf_refusals_match_openssl)
{
    setup();
    unsigned char secret[48] = {1}, seed[64] = {2};
    char sha256[] = "SHA2-256";
    /* No digest; no secret; no seed; an empty seed only. */
    OSSL_PARAM no_digest[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, sizeof secret),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof seed),
        OSSL_PARAM_construct_end()};
    OSSL_PARAM no_secret[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, sha256, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof seed),
        OSSL_PARAM_construct_end()};
    OSSL_PARAM no_seed[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, sha256, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, sizeof secret),
        OSSL_PARAM_construct_end()};
    OSSL_PARAM empty_seed[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, sha256, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, sizeof secret),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, 0),
        OSSL_PARAM_construct_end()};
    unsigned char out[32];
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, ours, no_digest, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, ours, no_secret, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, ours, no_seed, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, ours, empty_seed, out, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_digest, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_secret, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_seed, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, empty_seed, sizeof out));
    /* Zero bytes out. */
    OSSL_PARAM complete[] = {no_secret[0], no_seed[1], no_secret[1], OSSL_PARAM_construct_end()};
    CHECK(derive(OSSL_KDF_NAME_TLS1_PRF, ours, complete, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, ours, complete, out, 0));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, complete, 0));
}

/* Parameters set in steps, a duplicated context and a reset one behave as OpenSSL's do. */
TEST(prf_context_lifecycle)
{
    setup();
    unsigned char secret[48], s1[13] = "key expansion", s2[64], want[104], got[104];
    RAND_bytes(secret, sizeof secret);
    RAND_bytes(s2, sizeof s2);
    char digest[] = "SHA2-384";
    OSSL_PARAM first[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                          OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, 48),
                          OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, s1, 13),
                          OSSL_PARAM_construct_end()};
    OSSL_PARAM second[] = {OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, s2, 64),
                           OSSL_PARAM_construct_end()};
    OSSL_PARAM all[] = {first[0], first[1], first[2], second[0], OSSL_PARAM_construct_end()};
    REQUIRE(derive(OSSL_KDF_NAME_TLS1_PRF, theirs, all, want, sizeof want));

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, ours);
    REQUIRE(kdf);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    REQUIRE(kc && EVP_KDF_CTX_set_params(kc, first) > 0 && EVP_KDF_CTX_set_params(kc, second) > 0);
    EVP_KDF_CTX *dup = EVP_KDF_CTX_dup(kc);
    REQUIRE(dup);
    CHECK(EVP_KDF_derive(kc, got, sizeof got, NULL) > 0 && memcmp(got, want, sizeof got) == 0);
    memset(got, 0, sizeof got);
    CHECK(EVP_KDF_derive(dup, got, sizeof got, NULL) > 0 && memcmp(got, want, sizeof got) == 0);
    CHECK_EQ_INT(EVP_KDF_CTX_get_kdf_size(kc), (long long)SIZE_MAX);
    EVP_KDF_CTX_reset(kc);
    CHECK(EVP_KDF_derive(kc, got, sizeof got, NULL) <= 0);    /* no digest, secret or seed */
    ERR_clear_error();
    EVP_KDF_CTX_free(dup);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
}

/* ---- TLS13-KDF ---------------------------------------------------------------------------- */

TEST(tls13_expand_matches_openssl)
{
    setup();
    unsigned char key[200], label[300], data[300];
    RAND_bytes(key, sizeof key);
    RAND_bytes(label, sizeof label);
    RAND_bytes(data, sizeof data);
    unsigned char prefix[] = "tls13 ";
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    int bad = 0;
    for (int iter = 0; iter < 3000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? other_digests[rnd(3)] : digests[rnd(4)]);
        size_t klen = rnd(3) ? (rnd(2) ? 32 : 48) : 1 + rnd(200);
        /* Labels and data up to past the 255 bytes the HkdfLabel can carry. */
        size_t llen = rnd(10) == 0 ? 240 + rnd(30) : rnd(40);
        size_t dlen = rnd(10) == 0 ? 250 + rnd(10) : rnd(3) ? rnd(49) : 0;
        size_t olen = rnd(3) ? 1 + rnd(64) : 1 + rnd(1000);
        OSSL_PARAM params[8], *p = params;
        *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key, klen);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, llen);
        if (dlen || rnd(2))
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, data, dlen);
        *p = OSSL_PARAM_construct_end();
        if (!same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, params, olen)) {
            fprintf(stderr, "  (digest %s, key %zu, label %zu, data %zu)\n", digest, klen, llen,
                    dlen);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(tls13_extract_matches_openssl)
{
    setup();
    unsigned char key[100], salt[64];
    RAND_bytes(key, sizeof key);
    RAND_bytes(salt, sizeof salt);
    unsigned char prefix[] = "tls13 ", label[] = "derived";
    char mode_name[] = "EXTRACT_ONLY";
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    int bad = 0;
    for (int iter = 0; iter < 600 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? other_digests[rnd(3)] : digests[rnd(4)]);
        size_t n = strstr(digest, "384") ? 48 : strstr(digest, "512") ? 64 : 32;
        size_t olen = rnd(8) == 0 ? n - 1 + rnd(3) : n;   /* sometimes not one hash length */
        OSSL_PARAM params[8], *p = params;
        if (rnd(2))
            *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        else
            *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, mode_name, 0);
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        if (rnd(3))    /* no key: zeros, as for TLS 1.3's master secret */
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key, rnd(2) ? n : 1 + rnd(100));
        if (rnd(3))    /* no salt: the early secret */
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, rnd(4) ? n : 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, 7);
        *p = OSSL_PARAM_construct_end();
        if (!same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, params, olen)) {
            fprintf(stderr, "  (digest %s, out %zu)\n", digest, olen);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* RFC 8448 section 3: the early secret of a handshake without a PSK. */
TEST(tls13_early_secret_rfc8448)
{
    setup();
    static const unsigned char want[32] = {
        0x33, 0xad, 0x0a, 0x1c, 0x60, 0x7e, 0xc0, 0x3b, 0x09, 0xe6, 0xcd, 0x98, 0x93, 0x68, 0x0c, 0xe2,
        0x10, 0xad, 0xf3, 0x00, 0xaa, 0x1f, 0x26, 0x60, 0xe1, 0xb2, 0x2e, 0x10, 0xf1, 0x70, 0xf9, 0x2a};
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    char digest[] = "SHA2-256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                           OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char got[32];
    REQUIRE(derive(OSSL_KDF_NAME_TLS1_3_KDF, ours, params, got, sizeof got));
    CHECK(memcmp(got, want, sizeof want) == 0);
}

TEST(tls13_refusals_and_size)
{
    setup();
    unsigned char key[32] = {7}, label[] = "key", prefix[] = "tls13 ";
    char digest[] = "SHA2-256";
    int modes[] = {EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, EVP_KDF_HKDF_MODE_EXPAND_ONLY};
    for (int m = 0; m < 2; m++) {
        OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &modes[m]),
                               OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key, 32),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, 3),
                               OSSL_PARAM_construct_end()};
        unsigned char out[16];
        /* Extract-and-expand is refused; expand works; more than 255 hash lengths is refused. */
        CHECK_EQ_INT(derive(OSSL_KDF_NAME_TLS1_3_KDF, ours, params, out, sizeof out), m);
        CHECK(same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, params, sizeof out));
    }
    char bad_mode[] = "EXPAND_SOMETIMES";
    OSSL_PARAM bad[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, bad_mode, 0),
                        OSSL_PARAM_construct_end()};
    unsigned char out[32];
    CHECK(!derive(OSSL_KDF_NAME_TLS1_3_KDF, ours, bad, out, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, bad, sizeof out));

    /* "size": one hash length when extracting, unlimited when expanding, like OpenSSL's. */
    const char *const names[] = {"SHA2-256", "SHA2-384", "SHA2-512"};
    for (int i = 0; i < 3; i++) {
        for (int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY; mode <= EVP_KDF_HKDF_MODE_EXPAND_ONLY; mode++) {
            size_t sizes[2];
            const char *props[2] = {ours, theirs};
            for (int k = 0; k < 2; k++) {
                EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, props[k]);
                EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
                OSSL_PARAM ps[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                                   OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                                    (char *)names[i], 0),
                                   OSSL_PARAM_construct_end()};
                REQUIRE(kc && EVP_KDF_CTX_set_params(kc, ps) > 0);
                sizes[k] = EVP_KDF_CTX_get_kdf_size(kc);
                EVP_KDF_CTX_free(kc);
                EVP_KDF_free(kdf);
            }
            CHECK_EQ_INT(sizes[0], sizes[1]);
        }
    }
}

/* ---- edge cases: both providers given the same calls ------------------------------------ */

/* One case: calls on a fresh context; returns the verdict (1/0) and fills out. */
typedef int (*edge_fn)(EVP_KDF_CTX *kc, unsigned char *out, size_t n);

static unsigned char e_key[64] = {1, 2, 3}, e_seed[1100] = {4, 5};
static char e_sha256[] = "SHA2-256";
static int e_expand = EVP_KDF_HKDF_MODE_EXPAND_ONLY, e_extract = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
static unsigned char e_prefix[] = "tls13 ", e_label[] = "derived";

#define PRF_WITH(secret_param, seed_len, props)                                                  \
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, e_sha256, 0),       \
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_PROPERTIES, props, 0),      \
                      secret_param,                                                               \
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, e_seed, seed_len),   \
                      OSSL_PARAM_construct_end()};                                                \
    if (!props)                                                                                   \
        p[1] = p[0];                                                                              \
    return EVP_KDF_derive(kc, out, n, p) > 0

#define SECRET(data, len) OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, data, len)

static int prf_seed_1024(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(e_key, 48), 1024, NULL); }
static int prf_seed_1025(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(e_key, 48), 1025, NULL); }
static int prf_secret_null(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(NULL, 48), 32, NULL); }
static int prf_secret_null_empty(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(NULL, 0), 32, NULL); }
static int prf_props_nosuch(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(e_key, 48), 32, "provider=nosuch"); }
static int prf_props_fips(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { PRF_WITH(SECRET(e_key, 48), 32, "fips=yes"); }
static int prf_props_default(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    PRF_WITH(SECRET(e_key, 48), 32,
             "provider=default,-fips,-fips,-fips,-fips,-fips,-fips,-fips,-fips,-fips,-fips,-fips,"
             "?provider=default,?provider=default,?provider=default,?provider=default");
}
static int prf_secret_ptr(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    static void *kp = e_key;
    PRF_WITH(OSSL_PARAM_construct_octet_ptr(OSSL_KDF_PARAM_SECRET, &kp, 48), 32, NULL);
}

static int set_digest_only(EVP_KDF_CTX *kc, const char *name)
{
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)name, 0),
                      OSSL_PARAM_construct_end()};
    return EVP_KDF_CTX_set_params(kc, p) > 0;
}
static int set_nosuch_digest(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    (void)out, (void)n;
    return set_digest_only(kc, "NOSUCH");
}
static int set_shake(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    (void)out, (void)n;
    return set_digest_only(kc, "SHAKE-256");
}
static int prf_shake(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, e_key, 48),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, e_seed, 32),
                      OSSL_PARAM_construct_end()};
    return set_digest_only(kc, "SHAKE-256") && EVP_KDF_derive(kc, out, n, p) > 0;
}

/* TLS13-KDF expand with the key and label given (NULL: a label without data). */
static int t13_expand_with(EVP_KDF_CTX *kc, unsigned char *out, size_t n, const void *key,
                           size_t key_len, const void *label, const char *props)
{
    OSSL_PARAM p[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &e_expand),
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, e_sha256, 0),
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_PROPERTIES, (char *)props, 0),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, e_prefix, 6),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label,
                                                        label ? 7 : 0),
                      OSSL_PARAM_construct_end()};
    return EVP_KDF_derive(kc, out, n, p) > 0;
}
static int t13_expand_zero(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { (void)n; return t13_expand_with(kc, out, 0, e_key, 32, e_label, NULL); }
static int t13_label_null(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { return t13_expand_with(kc, out, n, e_key, 32, NULL, NULL); }
static int t13_key_null(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { return t13_expand_with(kc, out, n, NULL, 32, e_label, NULL); }
static int t13_key_null_empty(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { return t13_expand_with(kc, out, n, NULL, 0, e_label, NULL); }
static int t13_props_null(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { return t13_expand_with(kc, out, n, e_key, 32, e_label, NULL); }
static int t13_props_nosuch(EVP_KDF_CTX *kc, unsigned char *out, size_t n) { return t13_expand_with(kc, out, n, e_key, 32, e_label, "provider=nosuch"); }
static int t13_salt_null(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    OSSL_PARAM p[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &e_extract),
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, e_sha256, 0),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, e_key, 32),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, NULL, 0),
                      OSSL_PARAM_construct_end()};
    return EVP_KDF_derive(kc, out, n, p) > 0;
}
/* Data given to set_params, then a derive with other parameters: the data is gone. */
static int t13_data_cleared(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    OSSL_PARAM a[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &e_expand),
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, e_sha256, 0),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, e_key, 32),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, e_label, 7),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, e_seed, 32),
                      OSSL_PARAM_construct_end()};
    OSSL_PARAM b[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &e_expand),
                      OSSL_PARAM_construct_end()};
    return EVP_KDF_CTX_set_params(kc, a) > 0 && EVP_KDF_derive(kc, out, n, b) > 0;
}
/* Data given to set_params, then a derive without parameters: the data stays. */
static int t13_data_kept(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    OSSL_PARAM a[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &e_expand),
                      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, e_sha256, 0),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, e_key, 32),
                      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, e_seed, 32),
                      OSSL_PARAM_construct_end()};
    return EVP_KDF_CTX_set_params(kc, a) > 0 && EVP_KDF_derive(kc, out, n, NULL) > 0;
}
static int t13_set_in_initial_mode(EVP_KDF_CTX *kc, unsigned char *out, size_t n)
{
    (void)out, (void)n;
    return set_digest_only(kc, e_sha256);
}

TEST(edge_cases_match_openssl)
{
    setup();
    struct {
        const char *what, *kdf;
        edge_fn fn;
    } cases[] = {
        {"PRF, seeds of 1024 bytes", OSSL_KDF_NAME_TLS1_PRF, prf_seed_1024},
        {"PRF, seeds of 1025 bytes", OSSL_KDF_NAME_TLS1_PRF, prf_seed_1025},
        {"PRF, secret without data", OSSL_KDF_NAME_TLS1_PRF, prf_secret_null},
        {"PRF, empty secret without data", OSSL_KDF_NAME_TLS1_PRF, prf_secret_null_empty},
        {"PRF, secret as an octet pointer", OSSL_KDF_NAME_TLS1_PRF, prf_secret_ptr},
        {"PRF, properties no provider has", OSSL_KDF_NAME_TLS1_PRF, prf_props_nosuch},
        {"PRF, properties fips=yes", OSSL_KDF_NAME_TLS1_PRF, prf_props_fips},
        {"PRF, long properties the default has", OSSL_KDF_NAME_TLS1_PRF, prf_props_default},
        {"PRF, set an unknown digest", OSSL_KDF_NAME_TLS1_PRF, set_nosuch_digest},
        {"PRF, set an XOF digest", OSSL_KDF_NAME_TLS1_PRF, set_shake},
        {"PRF, derive with an XOF digest", OSSL_KDF_NAME_TLS1_PRF, prf_shake},
        {"TLS13, set an unknown digest", OSSL_KDF_NAME_TLS1_3_KDF, set_nosuch_digest},
        {"TLS13, set anything in the initial mode", OSSL_KDF_NAME_TLS1_3_KDF, t13_set_in_initial_mode},
        {"TLS13, expand to 0 bytes", OSSL_KDF_NAME_TLS1_3_KDF, t13_expand_zero},
        {"TLS13, label without data", OSSL_KDF_NAME_TLS1_3_KDF, t13_label_null},
        {"TLS13, key without data", OSSL_KDF_NAME_TLS1_3_KDF, t13_key_null},
        {"TLS13, empty key without data", OSSL_KDF_NAME_TLS1_3_KDF, t13_key_null_empty},
        {"TLS13, properties without data", OSSL_KDF_NAME_TLS1_3_KDF, t13_props_null},
        {"TLS13, properties no provider has", OSSL_KDF_NAME_TLS1_3_KDF, t13_props_nosuch},
        {"TLS13, salt without data", OSSL_KDF_NAME_TLS1_3_KDF, t13_salt_null},
        {"TLS13, data cleared by the next parameters", OSSL_KDF_NAME_TLS1_3_KDF, t13_data_cleared},
        {"TLS13, data kept by a derive without any", OSSL_KDF_NAME_TLS1_3_KDF, t13_data_kept},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int verdict[2];
        unsigned char out[2][32];
        const char *props[2] = {ours, theirs};
        for (int k = 0; k < 2; k++) {
            EVP_KDF *kdf = EVP_KDF_fetch(NULL, cases[i].kdf, props[k]);
            EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
            REQUIRE(kc);
            memset(out[k], 0, sizeof out[k]);
            verdict[k] = cases[i].fn(kc, out[k], sizeof out[k]);
            EVP_KDF_CTX_free(kc);
            EVP_KDF_free(kdf);
            ERR_clear_error();
        }
        if (verdict[0] != verdict[1] || memcmp(out[0], out[1], sizeof out[0]) != 0) {
            fprintf(stderr, "  %s: tlsloop %d, OpenSSL %d%s\n", cases[i].what, verdict[0],
                    verdict[1], verdict[0] == verdict[1] ? " (outputs differ)" : "");
            test_failures_++;
        }
    }
}

/* ---- HMAC --------------------------------------------------------------------------------- */

/* A script of EVP_MAC calls, run on a context from either provider; every call's verdict and
 * every output go into a trace, and the two traces must be equal. */
typedef enum { M_END, M_SET, M_INIT, M_UPDATE, M_FINAL, M_DUP_FINAL, M_SIZES } mac_op_kind;

typedef struct {
    mac_op_kind op;
    const OSSL_PARAM *params;    /* M_SET, M_INIT */
    const unsigned char *data;   /* M_INIT: the key (NULL: none); M_UPDATE: the data */
    size_t len;
} mac_op;

typedef struct {
    unsigned char b[4096];
    size_t n;
} trace;

static void trace_add(trace *t, const void *p, size_t n)
{
    REQUIRE(t->n + n <= sizeof t->b);
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void trace_final(trace *t, EVP_MAC_CTX *m)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    unsigned char ok = EVP_MAC_final(m, out, &outl, sizeof out) > 0;
    trace_add(t, &ok, 1);
    if (ok)
        trace_add(t, out, outl);
}

static void run_mac(const char *props, const mac_op *ops, trace *t)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, props);
    REQUIRE(mac);
    EVP_MAC_CTX *m = EVP_MAC_CTX_new(mac);
    REQUIRE(m);
    t->n = 0;
    for (; ops->op != M_END; ops++) {
        unsigned char ok = 1;
        switch (ops->op) {
        case M_SET:
            ok = EVP_MAC_CTX_set_params(m, ops->params) > 0;
            break;
        case M_INIT:
            ok = EVP_MAC_init(m, ops->data, ops->len, ops->params) > 0;
            break;
        case M_UPDATE:
            ok = EVP_MAC_update(m, ops->data, ops->len) > 0;
            break;
        case M_FINAL:
            trace_final(t, m);
            break;
        case M_DUP_FINAL: {   /* a copy finishes here; the original goes on */
            EVP_MAC_CTX *d = EVP_MAC_CTX_dup(m);
            REQUIRE(d);
            trace_final(t, d);
            EVP_MAC_CTX_free(d);
            break;
        }
        case M_SIZES: {
            size_t sz[2] = {EVP_MAC_CTX_get_mac_size(m), EVP_MAC_CTX_get_block_size(m)};
            trace_add(t, sz, sizeof sz);
            break;
        }
        case M_END:
            break;
        }
        trace_add(t, &ok, 1);
        ERR_clear_error();
    }
    EVP_MAC_CTX_free(m);
    EVP_MAC_free(mac);
}

static int same_mac(const mac_op *ops, const char *what)
{
    static trace a, b;
    run_mac(ours, ops, &a);
    run_mac(theirs, ops, &b);
    if (a.n == b.n && memcmp(a.b, b.b, a.n) == 0)
        return 1;
    size_t i = 0;
    while (i < a.n && i < b.n && a.b[i] == b.b[i])
        i++;
    fprintf(stderr, "  HMAC %s: traces differ at byte %zu (lengths %zu, %zu)\n", what, i, a.n,
            b.n);
    return 0;
}

TEST(provider_serves_hmac)
{
    setup();
    EVP_MAC *m = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, propq());
    REQUIRE(m);
    CHECK_STR(OSSL_PROVIDER_get0_name(EVP_MAC_get0_provider(m)), "tlsloop");
    EVP_MAC_free(m);
    /* One-shot, as libssl's TLS 1.3 Finished does it: RFC 4231 test case 2. */
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    static const char data[] = "what do ya want for nothing?";
    CHECK(EVP_Q_mac(NULL, OSSL_MAC_NAME_HMAC, propq(), "SHA256", NULL, "Jefe", 4,
                    (const unsigned char *)data, strlen(data), out, sizeof out, &outl) != NULL);
    static const unsigned char want[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
        0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
        0x38, 0x43};
    CHECK(outl == 32 && memcmp(out, want, 32) == 0);
}

/* Random keys (around the block sizes) and messages in random pieces, in the ways libssl keys a
 * context: EVP_Q_mac's (digest, then properties, then init with the key), the ticket callback's
 * (digest and key in one set_params, no init), a key reused (init without one), a copy finished
 * in the middle; and digests handed on to OpenSSL. */
TEST(hmac_matches_openssl)
{
    setup();
    static unsigned char key[200], msg[3000];
    RAND_bytes(key, sizeof key);
    RAND_bytes(msg, sizeof msg);
    static const size_t klens[] = {0, 1, 20, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 200};
    char propq[] = "?provider=tlsloop";
    int bad = 0;
    for (int iter = 0; iter < 2000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? other_digests[rnd(3)] : digests[rnd(4)]);
        size_t klen = klens[rnd(15)];
        int style = rnd(4);
        OSSL_PARAM dig[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end()};
        OSSL_PARAM prop[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_PROPERTIES, propq, 0),
                             OSSL_PARAM_construct_end()};
        OSSL_PARAM dig_key[] = {dig[0],
                                OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, klen),
                                OSSL_PARAM_construct_end()};
        mac_op ops[40];
        int n = 0;
        if (style == 1) {
            ops[n++] = (mac_op){M_SET, dig_key, NULL, 0};
        } else {
            ops[n++] = (mac_op){M_SET, dig, NULL, 0};
            ops[n++] = (mac_op){M_SET, prop, NULL, 0};
            ops[n++] = (mac_op){M_INIT, prop, key, klen};
        }
        ops[n++] = (mac_op){M_SIZES, NULL, NULL, 0};
        for (int round = 0; round < (style == 2 ? 3 : 1); round++) {
            if (round > 0)
                ops[n++] = (mac_op){M_INIT, NULL, NULL, 0};   /* the same key again */
            unsigned pieces = rnd(6);
            for (unsigned i = 0; i < pieces; i++) {
                ops[n++] = (mac_op){M_UPDATE, NULL, msg + rnd(1000), rnd(4) ? rnd(300) : rnd(2000)};
                if (style == 3 && i == pieces / 2)
                    ops[n++] = (mac_op){M_DUP_FINAL, NULL, NULL, 0};
            }
            ops[n++] = (mac_op){M_FINAL, NULL, NULL, 0};
        }
        ops[n] = (mac_op){M_END, NULL, NULL, 0};
        char what[96];
        snprintf(what, sizeof what, "%s, key %zu, style %d", digest, klen, style);
        if (!same_mac(ops, what))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

/* Calls out of order and odd parameters: the same verdicts (and outputs) as OpenSSL's. */
TEST(hmac_edges_match_openssl)
{
    setup();
    static unsigned char key[32] = {7}, data[100] = {9}, hdr[13] = {0x17, 3, 3, 0, 64};
    char sha256[] = "SHA2-256", sha384[] = "SHA384", sha1[] = "SHA1", nosuch[] = "NOSUCH";
    char p_nosuch[] = "provider=nosuch", p_default[] = "provider=default", p_empty[] = "";
    size_t tls_size = 64 + 32 + 16;
    int one = 1;
#define P_DIG(d) OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, d, 0)
#define P_PROP(q) OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_PROPERTIES, q, 0)
#define P_KEY(k, n) OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k, n)
#define P_END OSSL_PARAM_construct_end()
    OSSL_PARAM d256[] = {P_DIG(sha256), P_END}, d384[] = {P_DIG(sha384), P_END},
               d1[] = {P_DIG(sha1), P_END}, dno[] = {P_DIG(nosuch), P_END},
               k32[] = {P_KEY(key, 32), P_END}, knull[] = {P_KEY(NULL, 0), P_END},
               d256_nosuch[] = {P_DIG(sha256), P_PROP(p_nosuch), P_END},
               d256_default[] = {P_DIG(sha256), P_PROP(p_default), P_END},
               d256_empty[] = {P_DIG(sha256), P_PROP(p_empty), P_END},
               kint[] = {OSSL_PARAM_construct_int(OSSL_MAC_PARAM_KEY, &one), P_END},
               oneshot[] = {OSSL_PARAM_construct_int(OSSL_MAC_PARAM_DIGEST_ONESHOT, &one), P_END},
               tls[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_TLS_DATA_SIZE, &tls_size),
                        P_END};
#define SET(p) {M_SET, p, NULL, 0}
#define INIT(klen) {M_INIT, NULL, key, klen}
#define INIT_AGAIN {M_INIT, NULL, NULL, 0}
#define UPD {M_UPDATE, NULL, data, sizeof data}
#define FIN {M_FINAL, NULL, NULL, 0}
#define SIZES {M_SIZES, NULL, NULL, 0}
#define END {M_END, NULL, NULL, 0}
    struct {
        const char *name;
        mac_op ops[8];
    } cases[] = {
        {"update and final before init", {UPD, FIN, SIZES, END}},
        {"init without a digest", {INIT(32), UPD, FIN, END}},
        {"init without a key", {SET(d256), INIT_AGAIN, UPD, FIN, END}},
        {"key without a digest, digest later", {SET(k32), SET(d256), INIT_AGAIN,
                                                UPD, FIN, END}},
        {"unknown digest", {SET(dno), INIT(32), UPD, FIN, END}},
        {"digest with a provider that has none", {SET(d256_nosuch), INIT(32),
                                                  UPD, FIN, END}},
        {"digest from the default provider", {SET(d256_default), INIT(32),
                                              UPD, FIN, SIZES, END}},
        {"digest with empty properties", {SET(d256_empty), INIT(32), UPD, FIN,
                                          END}},
        {"digest changed after the key", {SET(d256), INIT(32), SET(d384),
                                          SIZES, INIT_AGAIN, UPD, FIN, END}},
        {"digest changed, then a key", {SET(d256), INIT(32), SET(d384),
                                        INIT(20), SIZES, UPD, FIN, END}},
        {"a key parameter without data", {SET(d256), INIT(32), SET(knull),
                                          UPD, FIN, END}},
        {"a key parameter of another type", {SET(d256), SET(kint), UPD, FIN, END}},
        {"handed on: SHA-1, then back to SHA-256", {SET(d1), INIT(32), UPD,
                                                    FIN, SET(d256), INIT(32),
                                                    FIN, END}},
        {"handed on: digest flags", {SET(d256), INIT(32), SET(oneshot), UPD,
                                     FIN, END}},
        /* The constant-time check of a TLS 1.2 CBC record (header, then record and MAC). */
        {"tls-data-size", {SET(d256), INIT(32), SET(tls),
                           {M_UPDATE, NULL, hdr, 13}, UPD, FIN, END}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(same_mac(cases[i].ops, cases[i].name));
    /* Two differences, both refusals where OpenSSL goes on. A second final without init:
     * OpenSSL's HMAC finishes its finished hash state again and gives bytes that mean nothing.
     * A digest not ours set while a message is open (OpenSSL keeps it for the next key): the
     * message cannot be handed over. */
    mac_op twice[] = {SET(d384), INIT(32), UPD, FIN, FIN, END};
    trace t;
    run_mac(ours, twice, &t);
    REQUIRE(t.n == 3 + (1 + 48 + 1) + (1 + 1));
    CHECK(t.b[t.n - 2] == 0);
    mac_op mid[] = {SET(d256), INIT(32), UPD, SET(d1), END};
    run_mac(ours, mid, &t);
    REQUIRE(t.n == 4);
    CHECK(t.b[2] == 1 && t.b[3] == 0);
}

/* ---- handshakes against a plain OpenSSL peer ------------------------------------------------ */

/* Move what each side wrote to the other until neither makes progress. */
static int pump(SSL *c, SSL *s, BIO *c_net, BIO *s_net)
{
    for (int round = 0; round < 50; round++) {
        int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);
        if (rc == 1 && rs == 1)
            return 0;
        char buf[16384];
        int moved = 0, n;
        while ((n = BIO_read(c_net, buf, sizeof buf)) > 0) {
            REQUIRE(BIO_write(s_net, buf, n) == n);
            moved = 1;
        }
        while ((n = BIO_read(s_net, buf, sizeof buf)) > 0) {
            REQUIRE(BIO_write(c_net, buf, n) == n);
            moved = 1;
        }
        if (!moved && (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ ||
                       SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
            return -1;
    }
    return -1;
}

/* One handshake: server from a tlsloop configuration, client plain OpenSSL (default KDFs). Then
 * data both ways and exported keys compared. *sess: offered if set, replaced by the new one. */
static int interop(tl_tls_ctx *sctx, SSL_CTX *cctx, SSL_SESSION **sess, bool *resumed)
{
    SSL *s = SSL_new(tli_tls_ctx_ssl_ctx(sctx)), *c = SSL_new(cctx);
    REQUIRE(s && c);
    BIO *s_io, *s_net, *c_io, *c_net;
    REQUIRE(BIO_new_bio_pair(&s_io, 0, &s_net, 0) && BIO_new_bio_pair(&c_io, 0, &c_net, 0));
    SSL_set_bio(s, s_io, s_io);
    SSL_set_bio(c, c_io, c_io);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (*sess)
        SSL_set_session(c, *sess);
    int ok = pump(c, s, c_net, s_net) == 0;
    if (ok) {
        unsigned char m[] = "ping", got[8];
        /* TLS 1.3 tickets arrive with the server's data; reading it takes them in. */
        ok = SSL_write(s, m, 4) == 4;
        char buf[4096];
        int n;
        while ((n = BIO_read(s_net, buf, sizeof buf)) > 0)
            BIO_write(c_net, buf, n);
        ok = ok && SSL_read(c, got, sizeof got) == 4 && memcmp(got, m, 4) == 0;
        /* And back: the server checks a record's MAC (CBC suites: tls-data-size). */
        ok = ok && SSL_write(c, "pong", 4) == 4;
        while ((n = BIO_read(c_net, buf, sizeof buf)) > 0)
            BIO_write(s_net, buf, n);
        ok = ok && SSL_read(s, got, sizeof got) == 4 && memcmp(got, "pong", 4) == 0;
        unsigned char ek_c[40], ek_s[40];
        const char label[] = "EXPORTER-tlsloop-test";
        ok = ok && SSL_export_keying_material(c, ek_c, sizeof ek_c, label, strlen(label),
                                              (const unsigned char *)"ctx", 3, 1) == 1 &&
             SSL_export_keying_material(s, ek_s, sizeof ek_s, label, strlen(label),
                                        (const unsigned char *)"ctx", 3, 1) == 1 &&
             memcmp(ek_c, ek_s, sizeof ek_c) == 0;
        /* Exporter calls at the edges (a context past the PRF's 1024-byte seed limit, no
         * output, no label): both sides give the same verdict, and the same bytes. */
        static unsigned char big[1100];
        struct {
            size_t olen;
            const char *label;
            const unsigned char *context;
            size_t context_len;
        } edges[] = {{32, "EXPORTER-x", big, sizeof big}, {0, "EXPORTER-x", NULL, 0},
                     {32, NULL, NULL, 0}, {500, "EXPORTER-long", big, 200}};
        for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
            unsigned char a[500], b[500];
            size_t ll = edges[i].label ? strlen(edges[i].label) : 0;
            int va = SSL_export_keying_material(c, a, edges[i].olen, edges[i].label, ll,
                                                edges[i].context, edges[i].context_len,
                                                edges[i].context != NULL);
            int vb = SSL_export_keying_material(s, b, edges[i].olen, edges[i].label, ll,
                                                edges[i].context, edges[i].context_len,
                                                edges[i].context != NULL);
            if (va != vb || (va == 1 && memcmp(a, b, edges[i].olen) != 0)) {
                fprintf(stderr, "  exporter edge %zu: client %d, server %d\n", i, va, vb);
                ok = 0;
            }
        }
        *resumed = SSL_session_reused(c);
        SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(c);
    }
    /* Closed as done (no close_notify needed here): a session of a connection freed in the
     * middle would be dropped from the cache and marked not resumable. */
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
    BIO_free(c_net);
    BIO_free(s_net);
    ERR_clear_error();
    return ok;
}

TEST(handshakes_with_plain_openssl)
{
    setup();
    tp_init();
    struct {
        int version;
        const char *suite;      /* TLS 1.3 suite or TLS 1.2 cipher */
        bool tickets;
        bool mac_then_encrypt;  /* CBC without RFC 7366: the constant-time record MAC check */
    } cases[] = {
        {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", true, false},
        {TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", true, false},
        {TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", true, false},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", true, false},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", true, false},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", false, false},   /* session ID */
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256", true, false},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256", false, true},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-SHA384", true, true},   /* no stitched cipher */
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA", true, false},           /* HMAC-SHA1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
        REQUIRE(sctx);
        /* Straight on the SSL_CTX: tl_tls_ctx_set_ciphers refuses CBC suites, which an
         * application can still reach through tl_engine_ssl. */
        if (cases[i].version == TLS1_2_VERSION)
            REQUIRE(SSL_CTX_set_cipher_list(tli_tls_ctx_ssl_ctx(sctx), cases[i].suite));
        size_t hmacs = tli_kdf_hmacs_made();
        /* A first engine freezes the configuration as a server does. */
        tl_engine *anchor = tl_engine_new(sctx, NULL);
        REQUIRE(anchor);
        SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());   /* no property query: default KDFs */
        REQUIRE(cctx);
        SSL_CTX_set_min_proto_version(cctx, cases[i].version);
        SSL_CTX_set_max_proto_version(cctx, cases[i].version);
        SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
        if (cases[i].version == TLS1_3_VERSION)
            REQUIRE(SSL_CTX_set_ciphersuites(cctx, cases[i].suite));
        else
            REQUIRE(SSL_CTX_set_cipher_list(cctx, cases[i].suite));
        if (!cases[i].tickets)
            SSL_CTX_set_options(cctx, SSL_OP_NO_TICKET);
        if (cases[i].mac_then_encrypt)
            SSL_CTX_set_options(cctx, SSL_OP_NO_ENCRYPT_THEN_MAC);
        SSL_SESSION *sess = NULL;
        bool resumed = true;
        CHECK(interop(sctx, cctx, &sess, &resumed));
        CHECK(!resumed);
        REQUIRE(sess);
        CHECK(interop(sctx, cctx, &sess, &resumed));
        if (!resumed)
            fprintf(stderr, "  %s: not resumed\n", cases[i].suite);
        CHECK(resumed);
        /* The server's ticket MACs (and its Finished MACs, binders and record MACs) came to
         * tlsloop's HMAC, handed on or not. (Without tickets a TLS 1.2 GCM suite has no HMAC,
         * nor has a CBC one without RFC 7366 where OpenSSL has a stitched AES-CBC-HMAC cipher.) */
        if (cases[i].tickets)
            CHECK(tli_kdf_hmacs_made() > hmacs || !fprintf(stderr, "  %s\n", cases[i].suite));
        SSL_SESSION_free(sess);
        SSL_CTX_free(cctx);
        tl_engine_free(anchor);
        tl_tls_ctx_free(sctx);
    }
}

/* The default is OpenSSL's own: nothing loaded, no property query. */
TEST(default_is_openssl)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_SERVER);
    REQUIRE(ctx);
    CHECK(tl_tls_ctx_kdf(ctx) == TL_KDF_OPENSSL);
    CHECK(tli_kdf_propq(TL_KDF_OPENSSL, NULL) == NULL);
    CHECK(!OSSL_PROVIDER_available(NULL, "tlsloop"));
    tl_tls_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(provider_serves_both_kdfs);
    RUN(prf_matches_openssl);
    RUN(prf_refusals_match_openssl);
    RUN(prf_context_lifecycle);
    RUN(tls13_expand_matches_openssl);
    RUN(tls13_extract_matches_openssl);
    RUN(tls13_early_secret_rfc8448);
    RUN(tls13_refusals_and_size);
    RUN(edge_cases_match_openssl);
    RUN(provider_serves_hmac);
    RUN(hmac_matches_openssl);
    RUN(hmac_edges_match_openssl);
    RUN(handshakes_with_plain_openssl);
    RUN(default_is_openssl);
    TEST_MAIN_END();
}
