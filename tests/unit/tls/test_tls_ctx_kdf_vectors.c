/*
 * test_tls_ctx_kdf_vectors.c - published test vectors, typed in from the documents, for
 * tlsloop's TLS1-PRF, TLS13-KDF and HMAC (src/tls/tls_ctx_kdf.c, the TL_KDF_TLSLOOP opt-in) and,
 * beside them, OpenSSL's default provider: RFC 4231 (HMAC-SHA-256/384), RFC 5869 test case 3
 * (the HKDF-Extract TLS13-KDF does without a salt), RFC 8448 section 3 (early, derived and
 * handshake secrets of the simple 1-RTT trace), and the TLS 1.2 PRF-SHA256 vector circulated
 * on the IETF TLS list (secret 9bbe436b..., label "test label", 100 bytes).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "test.h"
#include "tls/tls_ctx_int.h"

static const char *const impls[] = {"provider=tlsloop", "provider=default"};

static void opt_in(void)
{
    REQUIRE(tli_kdf_propq(TL_KDF_TLSLOOP, NULL));   /* loads the provider */
}

/* Hex text to bytes; returns the length. */
static size_t unhex(const char *h, unsigned char *out, size_t max)
{
    size_t n = 0;
    for (; h[0] && h[1] && n < max; h += 2) {
        while (*h == ' ')
            h++;
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            break;
        out[n++] = (unsigned char)v;
    }
    return n;
}

static int same(const unsigned char *got, size_t n, const char *want_hex, const char *what,
                const char *who)
{
    unsigned char want[256];
    size_t wn = unhex(want_hex, want, sizeof want);
    if (wn != n || memcmp(got, want, n) != 0) {
        fprintf(stderr, "  %s (%s): wrong output\n", what, who);
        return 0;
    }
    return 1;
}

TEST(rfc4231_hmac)
{
    opt_in();
    struct {
        const char *md, *key, *data, *want;
    } v[] = {
        /* test case 1: key 0x0b x 20, "Hi There" */
        {"SHA2-256", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"SHA2-384", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
         "faea9ea9076ede7f4af152e8b2fa9cb6"},
        /* test case 2: "Jefe", "what do ya want for nothing?" */
        {"SHA2-256", "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"SHA2-384", "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
         "8e2240ca5e69e2c78b3239ecfab21649"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int w = 0; w < 2; w++) {
            unsigned char key[64], data[64], out[64];
            size_t kn = unhex(v[i].key, key, sizeof key), dn = unhex(v[i].data, data, sizeof data);
            size_t outl = 0;
            CHECK(EVP_Q_mac(NULL, OSSL_MAC_NAME_HMAC, impls[w], v[i].md, NULL, key, kn, data, dn,
                            out, sizeof out, &outl) != NULL);
            CHECK(same(out, outl, v[i].want, v[i].md, impls[w]));
        }
}

/* TLS13-KDF in extract mode: salt (run through Derive-Secret(salt, "derived", "") first when
 * given), key; no salt and no key are zeros. */
static int extract(const char *who, const unsigned char *salt, size_t sn,
                   const unsigned char *key, size_t kn, unsigned char *out)
{
    EVP_KDF *k = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_3_KDF, who);
    EVP_KDF_CTX *kc = k ? EVP_KDF_CTX_new(k) : NULL;
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    char md[] = "SHA2-256";
    unsigned char prefix[] = "tls13 ", label[] = "derived";
    OSSL_PARAM p[8], *q = p;
    *q++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0);
    if (key)
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, kn);
    if (salt) {
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sn);
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6);
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, label, 7);
    }
    *q = OSSL_PARAM_construct_end();
    int ok = kc && EVP_KDF_derive(kc, out, 32, p) > 0;
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(k);
    return ok;
}

TEST(rfc5869_case3_extract)
{
    opt_in();
    /* Test case 3: IKM 0x0b x 22, salt empty: PRK. */
    unsigned char ikm[22], out[32];
    memset(ikm, 0x0b, sizeof ikm);
    for (int w = 0; w < 2; w++) {
        CHECK(extract(impls[w], NULL, 0, ikm, sizeof ikm, out));
        CHECK(same(out, 32, "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
                   "RFC 5869 case 3 PRK", impls[w]));
    }
}

TEST(rfc8448_simple_1rtt_secrets)
{
    opt_in();
    static const char early[] = "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a";
    static const char ecdhe[] = "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d";
    static const char hs[] = "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac";
    for (int w = 0; w < 2; w++) {
        unsigned char e[32], shared[32], out[32];
        CHECK(extract(impls[w], NULL, 0, NULL, 0, out));      /* HKDF-Extract(0, 0) */
        CHECK(same(out, 32, early, "RFC 8448 early secret", impls[w]));
        unhex(early, e, 32);
        unhex(ecdhe, shared, 32);
        CHECK(extract(impls[w], e, 32, shared, 32, out));     /* through "derived" */
        CHECK(same(out, 32, hs, "RFC 8448 handshake secret", impls[w]));
    }
}

TEST(tls12_prf_sha256_vector)
{
    opt_in();
    static const char want[] =
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
        "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
        "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
        "87347b66";
    unsigned char secret[16], seed[16 + 10], out[100];
    unhex("9bbe436ba940f017b17652849a71db35", secret, 16);
    memcpy(seed, "test label", 10);
    unhex("a0ba9f936cda311827a6f796ffd5198c", seed + 10, 16);
    for (int w = 0; w < 2; w++) {
        EVP_KDF *k = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, impls[w]);
        EVP_KDF_CTX *kc = k ? EVP_KDF_CTX_new(k) : NULL;
        char md[] = "SHA2-256";
        OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0),
                          OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, secret, 16),
                          OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, 26),
                          OSSL_PARAM_construct_end()};
        CHECK(kc && EVP_KDF_derive(kc, out, sizeof out, p) > 0);
        CHECK(same(out, sizeof out, want, "TLS 1.2 PRF-SHA256", impls[w]));
        EVP_KDF_CTX_free(kc);
        EVP_KDF_free(k);
    }
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(rfc4231_hmac);
    RUN(rfc5869_case3_extract);
    RUN(rfc8448_simple_1rtt_secrets);
    RUN(tls12_prf_sha256_vector);
    TEST_MAIN_END();
}
