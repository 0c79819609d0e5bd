/* test_acme_jws.c - the ACME client's cryptography without sockets (src/acme/acme_jws.c):
 * base64url, the JWK and its RFC 7638 thumbprint (RFC 7515 A.3's P-256 key), ES256 in raw r||s
 * form, the flattened JWS, the CSR, the TLS-ALPN-01 validation certificate (RFC 8737), the
 * atomic 0600 file writer. */
#include <fcntl.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/acme_int.h"
#include "test.h"

/* The public half of RFC 7515 appendix A.3's P-256 key (a known JWK for the thumbprint). */
static const char *A3_X = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char *A3_Y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

static EVP_PKEY *a3_key(void)
{
    uint8_t *x, *y;
    size_t xl, yl;
    if (tli_b64url_decode(A3_X, &x, &xl) || tli_b64url_decode(A3_Y, &y, &yl))
        return NULL;
    uint8_t pub[65] = {0x04};
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    if (EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        k = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    free(x);
    free(y);
    return k;
}

/* Verify a raw r||s ES256 signature (independently of the code under test's conversion). */
static bool verify_raw(EVP_PKEY *k, const char *data, const uint8_t *sig, size_t siglen)
{
    if (siglen != 64)
        return false;
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    uint8_t *der = NULL;
    int dl = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = dl > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestVerify(md, der, (size_t)dl, (const uint8_t *)data, strlen(data)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}

TEST(base64url_vectors)
{
    /* RFC 4648 section 10, unpadded, and the two characters base64url changes. */
    static const struct { const char *in, *out; } v[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *s = tli_b64url(v[i].in, strlen(v[i].in));
        CHECK_STR(s, v[i].out);
        uint8_t *back;
        size_t n;
        REQUIRE(tli_b64url_decode(v[i].out, &back, &n) == 0);
        CHECK(n == strlen(v[i].in) && !memcmp(back, v[i].in, n));
        free(back);
        free(s);
    }
}

TEST(base64url_refuses_bad_text)
{
    uint8_t *out;
    size_t n;
    CHECK(tli_b64url_decode("Zg==", &out, &n) != 0);   /* padding */
    CHECK(tli_b64url_decode("Zm+v", &out, &n) != 0);   /* base64, not base64url */
    CHECK(tli_b64url_decode("Z", &out, &n) != 0);      /* impossible length */
    CHECK(tli_b64url_decode("Zh", &out, &n) != 0);     /* stray bits after the last byte */
}

TEST(jwk_and_thumbprint_of_rfc7515_key)
{
    EVP_PKEY *k = a3_key();
    REQUIRE(k);
    char *jwk = tli_acme_jwk(k);
    char want[300];
    snprintf(want, sizeof want, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
             A3_X, A3_Y);
    CHECK_STR(jwk, want);
    /* SHA-256 of exactly that text, base64url (computed independently, with Python hashlib). */
    char *tp = tli_acme_thumbprint(k);
    CHECK_STR(tp, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    char *ka = tli_acme_key_authz("tok", tp);
    CHECK_STR(ka, "tok.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    free(ka);
    free(tp);
    free(jwk);
    EVP_PKEY_free(k);
}

TEST(jwk_pads_short_coordinates)
{
    /* A coordinate with a leading zero byte still takes 32 bytes (43 characters). */
    for (int i = 0; i < 200; i++) {
        EVP_PKEY *k = tli_acme_key_new(NULL, 0);
        REQUIRE(k);
        char *jwk = tli_acme_jwk(k);
        json_t *j = json_loads(jwk, 0, NULL);
        REQUIRE(j);
        CHECK(strlen(json_string_value(json_object_get(j, "x"))) == 43);
        CHECK(strlen(json_string_value(json_object_get(j, "y"))) == 43);
        json_decref(j);
        free(jwk);
        EVP_PKEY_free(k);
    }
}

TEST(es256_is_raw_r_s_and_verifies)
{
    EVP_PKEY *k = tli_acme_key_new(NULL, 0);
    REQUIRE(k);
    const char *data = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UifQ";
    for (int i = 0; i < 50; i++) {   /* r or s with leading zeros come up now and then */
        uint8_t sig[64];
        REQUIRE(tli_acme_es256(k, data, strlen(data), sig) == 0);
        CHECK(verify_raw(k, data, sig, 64));
        sig[10] ^= 1;
        CHECK(!verify_raw(k, data, sig, 64));
    }
    EVP_PKEY_free(k);
}

static json_t *decode_part(const char *b64)
{
    uint8_t *p;
    size_t n;
    if (tli_b64url_decode(b64, &p, &n) != 0)
        return NULL;
    json_t *j = json_loadb((const char *)p, n, 0, NULL);
    free(p);
    return j;
}

TEST(jws_with_jwk_and_with_kid)
{
    EVP_PKEY *k = tli_acme_key_new(NULL, 0);
    REQUIRE(k);
    char err[200];
    char *jws = tli_acme_jws(k, NULL, "nonce-1", "https://acme.test/new-acct",
                             "{\"termsOfServiceAgreed\":true}", err, sizeof err);
    REQUIRE(jws);
    json_t *j = json_loads(jws, 0, NULL);
    REQUIRE(j);
    const char *prot = json_string_value(json_object_get(j, "protected"));
    const char *pay = json_string_value(json_object_get(j, "payload"));
    const char *sig = json_string_value(json_object_get(j, "signature"));
    REQUIRE(prot && pay && sig);
    json_t *h = decode_part(prot);
    REQUIRE(h);
    CHECK_STR(json_string_value(json_object_get(h, "alg")), "ES256");
    CHECK_STR(json_string_value(json_object_get(h, "nonce")), "nonce-1");
    CHECK_STR(json_string_value(json_object_get(h, "url")), "https://acme.test/new-acct");
    char *jwk = tli_acme_jwk(k);
    char *hjwk = json_dumps(json_object_get(h, "jwk"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR(hjwk, jwk);
    free(hjwk);
    free(jwk);
    CHECK(!json_object_get(h, "kid"));
    json_t *p = decode_part(pay);
    CHECK(p && json_is_true(json_object_get(p, "termsOfServiceAgreed")));
    char input[2048];
    snprintf(input, sizeof input, "%s.%s", prot, pay);
    uint8_t *raw;
    size_t rl;
    REQUIRE(tli_b64url_decode(sig, &raw, &rl) == 0);
    CHECK(verify_raw(k, input, raw, rl));
    free(raw);
    json_decref(p);
    json_decref(h);
    json_decref(j);
    free(jws);

    /* POST-as-GET with the account URL: kid, no jwk, an empty payload. */
    jws = tli_acme_jws(k, "https://acme.test/acct/1", "n2", "https://acme.test/order/1", NULL,
                       err, sizeof err);
    REQUIRE(jws);
    j = json_loads(jws, 0, NULL);
    h = decode_part(json_string_value(json_object_get(j, "protected")));
    REQUIRE(h);
    CHECK_STR(json_string_value(json_object_get(h, "kid")), "https://acme.test/acct/1");
    CHECK(!json_object_get(h, "jwk"));
    CHECK_STR(json_string_value(json_object_get(j, "payload")), "");
    json_decref(h);
    json_decref(j);
    free(jws);
    EVP_PKEY_free(k);
}

TEST(csr_names_and_signature)
{
    EVP_PKEY *k = tli_acme_key_new(NULL, 0);
    REQUIRE(k);
    const char *names[] = {"a.example", "b.example"};
    char err[200];
    char *csr = tli_acme_csr(k, names, 2, err, sizeof err);
    REQUIRE(csr);
    uint8_t *der;
    size_t n;
    REQUIRE(tli_b64url_decode(csr, &der, &n) == 0);
    const uint8_t *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)n);
    REQUIRE(req);
    CHECK(X509_REQ_verify(req, k) == 1);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
    CHECK_STR(cn, "a.example");
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *sans = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            sans = X509V3_EXT_d2i(e);
    }
    REQUIRE(sans);
    CHECK(sk_GENERAL_NAME_num(sans) == 2);
    for (int i = 0; i < 2; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        CHECK(g->type == GEN_DNS);
        CHECK_STR((const char *)ASN1_STRING_get0_data(g->d.dNSName), names[i]);
    }
    GENERAL_NAMES_free(sans);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);
    free(csr);
    EVP_PKEY_free(k);
}

TEST(alpn_validation_certificate)
{
    EVP_PKEY *k = tli_acme_key_new(NULL, 0);
    REQUIRE(k);
    char err[200];
    char *pem = tli_acme_alpn_cert(k, "www.example", "tok.thumb", err, sizeof err);
    REQUIRE(pem);
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    REQUIRE(x);
    CHECK(X509_verify(x, k) == 1);   /* self-signed by the key */
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int at = X509_get_ext_by_OBJ(x, oid, -1);
    REQUIRE(at >= 0);
    X509_EXTENSION *e = X509_get_ext(x, at);
    CHECK(X509_EXTENSION_get_critical(e) == 1);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(e);
    /* DER OCTET STRING of SHA-256("tok.thumb") (hashlib: b1803056...). */
    static const uint8_t want[34] = {
        0x04, 0x20, 0xb1, 0x80, 0x30, 0x56, 0xba, 0x83, 0xb5, 0x53, 0xae, 0x25, 0x9b, 0xc0,
        0x1e, 0xea, 0xd2, 0x01, 0x83, 0xe8, 0x12, 0xde, 0x5f, 0x15, 0x5f, 0xc2, 0xe1, 0xb7,
        0x52, 0x38, 0xe5, 0xbe, 0xa3, 0x96};
    CHECK(ASN1_STRING_length(v) == 34 && !memcmp(ASN1_STRING_get0_data(v), want, 34));
    CHECK(X509_check_host(x, "www.example", 0, 0, NULL) == 1);
    CHECK(X509_check_host(x, "other.example", 0, 0, NULL) != 1);
    int64_t nb, na;
    bool self;
    CHECK(tli_acme_cert_times(pem, &nb, &na, &self) == 0);
    CHECK(self && na > nb);
    ASN1_OBJECT_free(oid);
    X509_free(x);
    free(pem);
    EVP_PKEY_free(k);
}

TEST(write_file_atomic_0600_and_key_roundtrip)
{
    char dir[] = "/tmp/tl_acme_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[200], err[300];
    snprintf(path, sizeof path, "%s/account.key", dir);
    EVP_PKEY *k = tli_acme_key_new(err, sizeof err);
    char *pem = tli_acme_key_pem(k);
    REQUIRE(pem);
    REQUIRE(tli_write_file(path, pem, strlen(pem), err, sizeof err) == 0);
    struct stat sb;
    REQUIRE(stat(path, &sb) == 0);
    CHECK((sb.st_mode & 0777) == 0600);
    char tmp[220];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    EVP_PKEY *back = tli_acme_key_load(path, err, sizeof err);
    REQUIRE(back);
    char *t1 = tli_acme_thumbprint(k), *t2 = tli_acme_thumbprint(back);
    CHECK_STR(t1, t2);
    /* An RSA key is refused with a message saying what to do. */
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    char *rpem = tli_acme_key_pem(rsa);
    REQUIRE(tli_write_file(path, rpem, strlen(rpem), err, sizeof err) == 0);
    CHECK(!tli_acme_key_load(path, err, sizeof err));
    CHECK_HAS(err, "P-256");
    /* A directory that does not exist: the message names the file. */
    CHECK(tli_write_file("/nonexistent-dir/x", "a", 1, err, sizeof err) != 0);
    CHECK_HAS(err, "/nonexistent-dir/x.tmp");
    free(rpem);
    EVP_PKEY_free(rsa);
    free(t1);
    free(t2);
    free(pem);
    EVP_PKEY_free(back);
    EVP_PKEY_free(k);
    unlink(path);
    rmdir(dir);
}

TEST(ari_identifier_of_rfc9773_example)
{
    /* RFC 9773 section 4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:
     * C8:D4 and serial 0x87654321 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE". */
    static const uint8_t kid[20] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                    0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    EVP_PKEY *k = tli_acme_key_new(NULL, 0);
    X509 *x = X509_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    REQUIRE(k && x && akid);
    akid->keyid = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(akid->keyid, kid, sizeof kid);
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), 0x87654321u);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    REQUIRE(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0) == 1);
    REQUIRE(X509_sign(x, k, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    char *text = strndup(pem, (size_t)n), err[200];
    char *id = tli_acme_ari_id(text, err, sizeof err);
    CHECK_STR(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    /* Without an authority key identifier: refused with a reason. */
    char *self = tli_acme_alpn_cert(k, "x.test", "a.b", err, sizeof err);
    CHECK(!tli_acme_ari_id(self, err, sizeof err));
    CHECK_HAS(err, "authority key identifier");
    free(self);
    free(text);
    BIO_free(b);
    AUTHORITY_KEYID_free(akid);
    X509_free(x);
    EVP_PKEY_free(k);
}

TEST(rfc3339_times)
{
    int64_t t;
    CHECK(tli_acme_parse_time("2021-01-03T00:00:00Z", &t) == 0 && t == 1609632000);
    CHECK(tli_acme_parse_time("2021-01-03T00:00:00.123456Z", &t) == 0 && t == 1609632000);
    CHECK(tli_acme_parse_time("2021-01-03T01:30:00+01:30", &t) == 0 && t == 1609632000);
    CHECK(tli_acme_parse_time("2021-01-02T23:00:00-01:00", &t) == 0 && t == 1609632000);
    CHECK(tli_acme_parse_time("2021-01-03 00:00:00Z", &t) != 0);
    CHECK(tli_acme_parse_time("2021-01-03T00:00:00", &t) != 0);    /* no zone */
    CHECK(tli_acme_parse_time("2021-01-03T00:00:00Zx", &t) != 0);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(base64url_vectors);
    RUN(base64url_refuses_bad_text);
    RUN(jwk_and_thumbprint_of_rfc7515_key);
    RUN(jwk_pads_short_coordinates);
    RUN(es256_is_raw_r_s_and_verifies);
    RUN(jws_with_jwk_and_with_kid);
    RUN(csr_names_and_signature);
    RUN(alpn_validation_certificate);
    RUN(write_file_atomic_0600_and_key_roundtrip);
    RUN(ari_identifier_of_rfc9773_example);
    RUN(rfc3339_times);
    TEST_MAIN_END();
}
