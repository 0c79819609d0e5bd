/*
 * test_tls_ctx_kdf.c - tlsloop's TLS1-PRF and TLS13-KDF (the TL_KDF_TLSLOOP opt-in) against
 * OpenSSL's default provider: the same output for thousands of random inputs, the same refusals
 * and edge cases, duplicated and reset contexts, "size", an RFC 8448 value (support/kdf_compare.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "support/kdf_compare.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------------------ */

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
    int ok_ours = derive(kdf_name, kc_ours, params, a, outlen);
    int ok_theirs = derive(kdf_name, kc_theirs, params, b, outlen);
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

/* ---- TLS1-PRF ----------------------------------------------------------------------------- */

TEST(provider_serves_both_kdfs)
{
    kc_opt_in();
    const char *names[] = {OSSL_KDF_NAME_TLS1_PRF, OSSL_KDF_NAME_TLS1_3_KDF};
    for (int i = 0; i < 2; i++) {
        EVP_KDF *k = EVP_KDF_fetch(NULL, names[i], kc_propq());
        REQUIRE(k);
        CHECK_STR(OSSL_PROVIDER_get0_name(EVP_KDF_get0_provider(k)), "tlsloop");
        EVP_KDF_free(k);
    }
    /* Only a preference: what we do not offer still comes from the default provider. */
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA2-256", kc_propq());
    REQUIRE(md);
    CHECK_STR(OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md)), "default");
    EVP_MD_free(md);
}

TEST(prf_matches_openssl)
{
    kc_opt_in();
    unsigned char secret[300], seeds[5][200];
    RAND_bytes(secret, sizeof secret);
    RAND_bytes(&seeds[0][0], sizeof seeds);
    /* Lengths around the hash sizes (32, 48) and blocks (64, 128), and random ones. */
    static const size_t lens[] = {1, 12, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 96, 104, 127, 128,
                                  129, 200};
    int bad = 0;
    for (int iter = 0; iter < 3000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? kc_other_digests[kc_rnd(3)] : kc_digests[kc_rnd(4)]);
        size_t slen = iter % 3 == 0 ? lens[kc_rnd(18)] : kc_rnd(300);
        size_t olen = iter % 2 ? lens[kc_rnd(18)] : 1 + kc_rnd(400);
        OSSL_PARAM params[8], *p = params;
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, slen);
        unsigned nseeds = 1 + kc_rnd(5);
        for (unsigned s = 0; s < nseeds; s++) {
            /* Empty and NULL seeds are skipped, as libssl passes them for unused slots. */
            size_t n = kc_rnd(4) == 0 ? 0 : kc_rnd(200);
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED,
                                                     kc_rnd(8) == 0 ? NULL : seeds[s], n);
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
    kc_opt_in();
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
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, no_digest, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, no_secret, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, no_seed, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, empty_seed, out, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_digest, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_secret, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, no_seed, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, empty_seed, sizeof out));
    /* Zero bytes out. */
    OSSL_PARAM complete[] = {no_secret[0], no_seed[1], no_secret[1], OSSL_PARAM_construct_end()};
    CHECK(derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, complete, out, sizeof out));
    CHECK(!derive(OSSL_KDF_NAME_TLS1_PRF, kc_ours, complete, out, 0));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_PRF, complete, 0));
}

/* Parameters set in steps, a duplicated context and a reset one behave as OpenSSL's do. */
TEST(prf_context_lifecycle)
{
    kc_opt_in();
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
    REQUIRE(derive(OSSL_KDF_NAME_TLS1_PRF, kc_theirs, all, want, sizeof want));

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, kc_ours);
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
    kc_opt_in();
    unsigned char key[200], label[300], data[300];
    RAND_bytes(key, sizeof key);
    RAND_bytes(label, sizeof label);
    RAND_bytes(data, sizeof data);
    unsigned char prefix[] = "tls13 ";
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    int bad = 0;
    for (int iter = 0; iter < 3000 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? kc_other_digests[kc_rnd(3)] : kc_digests[kc_rnd(4)]);
        size_t klen = kc_rnd(3) ? (kc_rnd(2) ? 32 : 48) : 1 + kc_rnd(200);
        /* Labels and data up to past the 255 bytes the HkdfLabel can carry. */
        size_t llen = kc_rnd(10) == 0 ? 240 + kc_rnd(30) : kc_rnd(40);
        size_t dlen = kc_rnd(10) == 0 ? 250 + kc_rnd(10) : kc_rnd(3) ? kc_rnd(49) : 0;
        size_t olen = kc_rnd(3) ? 1 + kc_rnd(64) : 1 + kc_rnd(1000);
        OSSL_PARAM params[8], *p = params;
        *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key, klen);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, llen);
        if (dlen || kc_rnd(2))
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
    kc_opt_in();
    unsigned char key[100], salt[64];
    RAND_bytes(key, sizeof key);
    RAND_bytes(salt, sizeof salt);
    unsigned char prefix[] = "tls13 ", label[] = "derived";
    char mode_name[] = "EXTRACT_ONLY";
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    int bad = 0;
    for (int iter = 0; iter < 600 && bad < 5; iter++) {
        bool other = iter % 10 == 9;
        char *digest = (char *)(other ? kc_other_digests[kc_rnd(3)] : kc_digests[kc_rnd(4)]);
        size_t n = strstr(digest, "384") ? 48 : strstr(digest, "512") ? 64 : 32;
        size_t olen = kc_rnd(8) == 0 ? n - 1 + kc_rnd(3) : n;   /* sometimes not one hash length */
        OSSL_PARAM params[8], *p = params;
        if (kc_rnd(2))
            *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
        else
            *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, mode_name, 0);
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
        if (kc_rnd(3))    /* no key: zeros, as for TLS 1.3's master secret */
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key,
                                                     kc_rnd(2) ? n : 1 + kc_rnd(100));
        if (kc_rnd(3))    /* no salt: the early secret */
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, kc_rnd(4) ? n : 0);
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
    kc_opt_in();
    static const unsigned char want[32] = {
        0x33, 0xad, 0x0a, 0x1c, 0x60, 0x7e, 0xc0, 0x3b, 0x09, 0xe6, 0xcd, 0x98, 0x93, 0x68, 0x0c, 0xe2,
        0x10, 0xad, 0xf3, 0x00, 0xaa, 0x1f, 0x26, 0x60, 0xe1, 0xb2, 0x2e, 0x10, 0xf1, 0x70, 0xf9, 0x2a};
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    char digest[] = "SHA2-256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                           OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    unsigned char got[32];
    REQUIRE(derive(OSSL_KDF_NAME_TLS1_3_KDF, kc_ours, params, got, sizeof got));
    CHECK(memcmp(got, want, sizeof want) == 0);
}

TEST(tls13_refusals_and_size)
{
    kc_opt_in();
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
        CHECK_EQ_INT(derive(OSSL_KDF_NAME_TLS1_3_KDF, kc_ours, params, out, sizeof out), m);
        CHECK(same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, params, sizeof out));
    }
    char bad_mode[] = "EXPAND_SOMETIMES";
    OSSL_PARAM bad[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, bad_mode, 0),
                        OSSL_PARAM_construct_end()};
    unsigned char out[32];
    CHECK(!derive(OSSL_KDF_NAME_TLS1_3_KDF, kc_ours, bad, out, sizeof out));
    CHECK(same_derivation(OSSL_KDF_NAME_TLS1_3_KDF, bad, sizeof out));

    /* "size": one hash length when extracting, unlimited when expanding, like OpenSSL's. */
    const char *const names[] = {"SHA2-256", "SHA2-384", "SHA2-512"};
    for (int i = 0; i < 3; i++) {
        for (int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY; mode <= EVP_KDF_HKDF_MODE_EXPAND_ONLY; mode++) {
            size_t sizes[2];
            const char *props[2] = {kc_ours, kc_theirs};
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
    kc_opt_in();
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
        const char *props[2] = {kc_ours, kc_theirs};
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
    TEST_MAIN_END();
}
