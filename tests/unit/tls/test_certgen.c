/* test_certgen.c - certgen's certificates parse back, verify, and carry what the spec says. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tlsloop/certgen.h>

#include "test.h"

static const char *const DNS[] = {"localhost", "*.example.test"};
static const char *const IPS[] = {"127.0.0.1", "::1"};

static tl_certgen_spec leaf_spec(void)
{
    return (tl_certgen_spec){
        .key = TL_KEY_ECDSA_P256,
        .common_name = "leaf.example.test",
        .dns_names = DNS,
        .n_dns = 2,
        .ip_addrs = IPS,
        .n_ip = 2,
        .not_before = -3600,
        .not_after = 86400,
    };
}

static tl_certgen_spec ca_spec(void)
{
    return (tl_certgen_spec){
        .key = TL_KEY_ECDSA_P256,
        .common_name = "tlsloop test CA",
        .is_ca = true,
        .not_before = -3600,
        .not_after = 86400,
    };
}

static void issue_ok(const tl_certgen_spec *spec, const tl_certgen_pair *issuer,
                     tl_certgen_pair *out)
{
    char err[256] = "";
    int rc = tl_certgen_issue(spec, issuer, out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  tl_certgen_issue: %s\n", err);
    REQUIRE(rc == 0);
    REQUIRE(out->cert_pem && out->key_pem);
}

static X509 *parse_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    REQUIRE(bio);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    REQUIRE(x);
    return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    REQUIRE(bio);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    REQUIRE(key);
    return key;
}

/* X509_verify_cert against a store holding only `trusted` (or nothing), for TLS server use. */
static int verify(X509 *leaf, X509 *trusted, int *error)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    REQUIRE(store && ctx);
    if (trusted)
        REQUIRE(X509_STORE_add_cert(store, trusted) == 1);
    REQUIRE(X509_STORE_CTX_init(ctx, store, leaf, NULL) == 1);
    REQUIRE(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) == 1);
    int rc = X509_verify_cert(ctx);
    *error = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

static void check_cn(X509 *x, const char *want)
{
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    CHECK_STR(cn, want);
}

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

TEST(selfsigned_ecdsa_leaf_parses_back)
{
    tl_certgen_spec spec = leaf_spec();
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    CHECK(strncmp(pair.cert_pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    CHECK(strncmp(pair.key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    X509 *x = parse_cert(pair.cert_pem);
    EVP_PKEY *key = parse_key(pair.key_pem);

    check_cn(x, "leaf.example.test");
    CHECK_EQ_INT(X509_get_version(x), X509_VERSION_3);
    CHECK(X509_check_host(x, "localhost", 0, 0, NULL) == 1);
    CHECK(X509_check_host(x, "www.example.test", 0, 0, NULL) == 1);
    CHECK(X509_check_host(x, "other.test", 0, 0, NULL) == 0);
    CHECK(X509_check_ip_asc(x, "127.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(x, "::1", 0) == 1);
    CHECK(X509_check_ip_asc(x, "10.0.0.1", 0) == 0);
    CHECK(EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) == 256);
    CHECK(X509_check_private_key(x, key) == 1);
    CHECK(X509_verify(x, X509_get0_pubkey(x)) == 1);
    CHECK(X509_cmp(x, x) == 0 &&
          X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0);

    X509_free(x);
    EVP_PKEY_free(key);
    tl_certgen_pair_free(&pair);
}

TEST(leaf_extensions)
{
    tl_certgen_spec spec = leaf_spec();
    tl_certgen_pair a = {0}, b = {0};
    issue_ok(&spec, NULL, &a);
    issue_ok(&spec, NULL, &b);
    X509 *x = parse_cert(a.cert_pem), *y = parse_cert(b.cert_pem);

    CHECK_EQ_INT(X509_check_ca(x), 0);
    CHECK(ext_critical(x, NID_basic_constraints));
    CHECK(ext_critical(x, NID_key_usage));
    CHECK_EQ_INT(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    CHECK_EQ_INT(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    CHECK(skid && akid && ASN1_OCTET_STRING_cmp(skid, akid) == 0);

    /* Positive, non-zero, and fresh for every certificate. */
    const ASN1_INTEGER *sx = X509_get0_serialNumber(x), *sy = X509_get0_serialNumber(y);
    uint64_t v = 0;
    CHECK(ASN1_INTEGER_get_uint64(&v, sx) == 1 && v != 0);
    CHECK(ASN1_INTEGER_cmp(sx, sy) != 0);

    X509_free(x);
    X509_free(y);
    tl_certgen_pair_free(&a);
    tl_certgen_pair_free(&b);
}

TEST(ca_signed_leaf_verifies)
{
    tl_certgen_spec cspec = ca_spec(), lspec = leaf_spec();
    tl_certgen_pair ca = {0}, leaf = {0};
    issue_ok(&cspec, NULL, &ca);
    issue_ok(&lspec, &ca, &leaf);
    X509 *cx = parse_cert(ca.cert_pem), *lx = parse_cert(leaf.cert_pem);

    CHECK(X509_NAME_cmp(X509_get_issuer_name(lx), X509_get_subject_name(cx)) == 0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(lx), X509_get0_subject_key_id(cx)) ==
          0);
    int error = 0;
    CHECK_EQ_INT(verify(lx, cx, &error), 1);
    CHECK_EQ_INT(error, X509_V_OK);
    CHECK(verify(lx, NULL, &error) <= 0);
    CHECK_EQ_INT(error, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

    X509_free(cx);
    X509_free(lx);
    tl_certgen_pair_free(&ca);
    tl_certgen_pair_free(&leaf);
}

/* The local CA of `tlsloop serve`: a critical nameConstraints extension permitting localhost and
 * loopback only, so a leaf it signs for another name does not verify, whoever trusts it. */
TEST(local_ca_is_name_constrained)
{
    tl_certgen_spec cspec = tl_certgen_local_ca_spec();
    tl_certgen_pair ca = {0}, ok = {0}, bad = {0}, badip = {0};
    issue_ok(&cspec, NULL, &ca);
    X509 *cx = parse_cert(ca.cert_pem);
    CHECK(ext_critical(cx, NID_name_constraints));
    int crit = 0;
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(cx, NID_name_constraints, &crit, NULL);
    REQUIRE(nc);
    CHECK_EQ_INT(crit, 1);
    CHECK(sk_GENERAL_SUBTREE_num(nc->excludedSubtrees) <= 0);
    int dns = 0, v4 = 0, v6 = 0;
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); i++) {
        GENERAL_NAME *gn = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;
        int type;
        ASN1_STRING *v = GENERAL_NAME_get0_value(gn, &type);
        const unsigned char *d = ASN1_STRING_get0_data(v);
        int n = ASN1_STRING_length(v);
        if (type == GEN_DNS && n == 9 && !memcmp(d, "localhost", 9))
            dns++;
        static const unsigned char want4[8] = {127, 0, 0, 0, 255, 0, 0, 0};
        if (type == GEN_IPADD && n == 8 && !memcmp(d, want4, 8))
            v4++;
        if (type == GEN_IPADD && n == 32 && d[15] == 1 && d[31] == 0xff && d[16] == 0xff)
            v6++;
    }
    CHECK_EQ_INT(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 3);
    CHECK(dns == 1 && v4 == 1 && v6 == 1);
    NAME_CONSTRAINTS_free(nc);

    static const char *const local[] = {"localhost", "www.localhost"};
    static const char *const loop[] = {"127.0.0.1", "::1"};
    tl_certgen_spec lspec = {.key = TL_KEY_ECDSA_P256, .common_name = "localhost",
                             .dns_names = local, .n_dns = 2, .ip_addrs = loop, .n_ip = 2,
                             .not_before = -3600, .not_after = 86400};
    issue_ok(&lspec, &ca, &ok);
    static const char *const other[] = {"example.com"};
    lspec.common_name = "example.com";
    lspec.dns_names = other;
    lspec.n_dns = 1;
    lspec.n_ip = 0;
    issue_ok(&lspec, &ca, &bad);
    static const char *const public_ip[] = {"192.0.2.1"};
    lspec.common_name = "localhost";
    lspec.dns_names = local;
    lspec.ip_addrs = public_ip;
    lspec.n_ip = 1;
    issue_ok(&lspec, &ca, &badip);

    X509 *okx = parse_cert(ok.cert_pem), *badx = parse_cert(bad.cert_pem);
    X509 *badipx = parse_cert(badip.cert_pem);
    int error = 0;
    CHECK_EQ_INT(verify(okx, cx, &error), 1);
    CHECK_EQ_INT(error, X509_V_OK);
    CHECK(verify(badx, cx, &error) <= 0);
    CHECK_EQ_INT(error, X509_V_ERR_PERMITTED_VIOLATION);
    CHECK(verify(badipx, cx, &error) <= 0);
    CHECK_EQ_INT(error, X509_V_ERR_PERMITTED_VIOLATION);

    /* Constraints on a leaf, or a malformed range, are refused before any key is made. */
    char err[256] = "";
    tl_certgen_pair none = {0};
    static const char *const bad_range[] = {"127.0.0.0/33"};
    tl_certgen_spec wrong = cspec;
    wrong.permit_ip = bad_range;
    wrong.n_permit_ip = 1;
    CHECK(tl_certgen_issue(&wrong, NULL, &none, err, sizeof err) == -1);
    CHECK(strstr(err, "127.0.0.0/33") != NULL);
    wrong = cspec;
    wrong.is_ca = false;
    CHECK(tl_certgen_issue(&wrong, NULL, &none, err, sizeof err) == -1);
    CHECK(strstr(err, "CA only") != NULL);

    X509_free(cx);
    X509_free(okx);
    X509_free(badx);
    X509_free(badipx);
    tl_certgen_pair_free(&ca);
    tl_certgen_pair_free(&ok);
    tl_certgen_pair_free(&bad);
    tl_certgen_pair_free(&badip);
}

TEST(rsa_2048_key_matches_cert)
{
    tl_certgen_spec spec = leaf_spec();
    spec.key = TL_KEY_RSA_2048;
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    X509 *x = parse_cert(pair.cert_pem);
    EVP_PKEY *key = parse_key(pair.key_pem);

    CHECK(EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) == 2048);
    CHECK(X509_check_private_key(x, key) == 1);
    CHECK_EQ_INT(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    CHECK(X509_verify(x, X509_get0_pubkey(x)) == 1);

    X509_free(x);
    EVP_PKEY_free(key);
    tl_certgen_pair_free(&pair);
}

TEST(p384_leaf_signed_by_rsa_ca)
{
    tl_certgen_spec cspec = ca_spec(), lspec = leaf_spec();
    cspec.key = TL_KEY_RSA_2048;
    lspec.key = TL_KEY_ECDSA_P384;
    tl_certgen_pair ca = {0}, leaf = {0};
    issue_ok(&cspec, NULL, &ca);
    issue_ok(&lspec, &ca, &leaf);
    X509 *cx = parse_cert(ca.cert_pem), *lx = parse_cert(leaf.cert_pem);
    EVP_PKEY *key = parse_key(leaf.key_pem);

    CHECK(EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) == 384);
    CHECK(X509_check_private_key(lx, key) == 1);
    int error = 0;
    CHECK_EQ_INT(verify(lx, cx, &error), 1);

    X509_free(cx);
    X509_free(lx);
    EVP_PKEY_free(key);
    tl_certgen_pair_free(&ca);
    tl_certgen_pair_free(&leaf);
}

TEST(expired_spec_gives_expired_cert)
{
    tl_certgen_spec spec = leaf_spec();
    spec.not_before = -7200;
    spec.not_after = -3600;
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    X509 *x = parse_cert(pair.cert_pem);

    CHECK(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(x)) < 0);
    int error = 0;
    CHECK(verify(x, x, &error) <= 0);
    CHECK_EQ_INT(error, X509_V_ERR_CERT_HAS_EXPIRED);

    X509_free(x);
    tl_certgen_pair_free(&pair);
}

TEST(validity_window_follows_spec)
{
    tl_certgen_spec spec = leaf_spec();
    spec.not_before = -60;
    spec.not_after = 3L * 365 * 86400;
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    X509 *x = parse_cert(pair.cert_pem);

    int days = 0, secs = 0;
    REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)) == 1);
    CHECK_EQ_INT((long)days * 86400 + secs, 3L * 365 * 86400 + 60);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);

    X509_free(x);
    tl_certgen_pair_free(&pair);
}

TEST(is_ca_sets_basic_constraints)
{
    tl_certgen_spec spec = ca_spec();
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    X509 *x = parse_cert(pair.cert_pem);

    CHECK_EQ_INT(X509_check_ca(x), 1);
    CHECK(ext_critical(x, NID_basic_constraints));
    CHECK_EQ_INT(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE);
    CHECK_EQ_INT(X509_get_ext_by_NID(x, NID_ext_key_usage, -1), -1);
    CHECK_EQ_INT(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    check_cn(x, "tlsloop test CA");

    X509_free(x);
    tl_certgen_pair_free(&pair);
}

TEST(common_name_defaults)
{
    tl_certgen_spec spec = leaf_spec();
    spec.common_name = NULL;
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    X509 *x = parse_cert(pair.cert_pem);
    check_cn(x, "localhost");
    X509_free(x);
    tl_certgen_pair_free(&pair);

    spec.n_dns = 0;
    spec.dns_names = NULL;
    issue_ok(&spec, NULL, &pair);
    x = parse_cert(pair.cert_pem);
    check_cn(x, "tlsloop");
    CHECK(X509_check_ip_asc(x, "::1", 0) == 1);
    X509_free(x);
    tl_certgen_pair_free(&pair);
}

TEST(bad_ip_is_rejected)
{
    static const char *const bad[] = {"127.0.0.1", "1.2.3"};
    tl_certgen_spec spec = leaf_spec();
    spec.ip_addrs = bad;
    tl_certgen_pair pair = {.cert_pem = NULL};
    char err[256] = "";
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, err, sizeof(err)), -1);
    CHECK(strstr(err, "invalid IP address '1.2.3'") != NULL);
    CHECK(pair.cert_pem == NULL && pair.key_pem == NULL);
    CHECK_EQ_INT(ERR_peek_error(), 0);

    /* No error buffer, or a tiny one: still safe, still terminated. */
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, NULL, 0), -1);
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, tiny, sizeof(tiny)), -1);
    CHECK_EQ_INT(strlen(tiny), sizeof(tiny) - 1);
}

TEST(bad_arguments_are_rejected)
{
    tl_certgen_spec spec = leaf_spec();
    tl_certgen_pair pair = {0};
    char err[256] = "";
    CHECK_EQ_INT(tl_certgen_issue(NULL, NULL, &pair, err, sizeof(err)), -1);
    CHECK(strstr(err, "NULL") != NULL);
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, NULL, err, sizeof(err)), -1);

    spec.key = (tl_key_type)42;
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, err, sizeof(err)), -1);
    CHECK(strstr(err, "key type") != NULL);

    static const char *const bad_dns[] = {"has space.test"};
    spec = leaf_spec();
    spec.dns_names = bad_dns;
    spec.n_dns = 1;
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, err, sizeof(err)), -1);
    CHECK(strstr(err, "invalid DNS name 'has space.test'") != NULL);

    spec = leaf_spec();
    spec.dns_names = NULL;
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, err, sizeof(err)), -1);

    spec = leaf_spec();
    spec.not_before = 10;
    spec.not_after = 5;
    CHECK_EQ_INT(tl_certgen_issue(&spec, NULL, &pair, err, sizeof(err)), -1);
    CHECK(strstr(err, "validity") != NULL);
    CHECK(pair.cert_pem == NULL && pair.key_pem == NULL);
}

TEST(issuer_with_mismatching_key_is_rejected)
{
    tl_certgen_spec cspec = ca_spec(), lspec = leaf_spec();
    tl_certgen_pair ca1 = {0}, ca2 = {0}, leaf = {0};
    issue_ok(&cspec, NULL, &ca1);
    issue_ok(&cspec, NULL, &ca2);
    tl_certgen_pair mixed = {.cert_pem = ca1.cert_pem, .key_pem = ca2.key_pem};
    char err[256] = "";
    CHECK_EQ_INT(tl_certgen_issue(&lspec, &mixed, &leaf, err, sizeof(err)), -1);
    CHECK(strstr(err, "does not match") != NULL);
    CHECK(leaf.cert_pem == NULL && leaf.key_pem == NULL);
    CHECK_EQ_INT(ERR_peek_error(), 0);

    tl_certgen_pair garbage = {.cert_pem = "not a certificate", .key_pem = ca1.key_pem};
    CHECK_EQ_INT(tl_certgen_issue(&lspec, &garbage, &leaf, err, sizeof(err)), -1);
    CHECK(strstr(err, "issuer certificate") != NULL);
    tl_certgen_pair no_key = {.cert_pem = ca1.cert_pem};
    CHECK_EQ_INT(tl_certgen_issue(&lspec, &no_key, &leaf, err, sizeof(err)), -1);

    tl_certgen_pair_free(&ca1);
    tl_certgen_pair_free(&ca2);
}

TEST(write_files_with_modes)
{
    char dir[] = "/tmp/tlsloop-certgen-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char cert_path[128], key_path[128];
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    /* A key file that already exists with a loose mode must end up 0600 too. */
    int fd = open(key_path, O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "old old old old old old old old old old old old", 47) == 47);
    REQUIRE(fchmod(fd, 0644) == 0);
    close(fd);

    tl_certgen_spec spec = leaf_spec();
    tl_certgen_pair pair = {0};
    issue_ok(&spec, NULL, &pair);
    char err[256] = "";
    CHECK_EQ_INT(tl_certgen_write(&pair, cert_path, key_path, err, sizeof(err)), 0);

    struct stat st;
    REQUIRE(stat(cert_path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0644);
    REQUIRE(stat(key_path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0600);
    CHECK_STR(read_file(cert_path), pair.cert_pem);
    CHECK_STR(read_file(key_path), pair.key_pem);
    X509 *x = parse_cert(read_file(cert_path));
    EVP_PKEY *key = parse_key(read_file(key_path));
    CHECK(X509_check_private_key(x, key) == 1);

    /* A NULL path skips that file. */
    REQUIRE(unlink(cert_path) == 0);
    CHECK_EQ_INT(tl_certgen_write(&pair, NULL, key_path, err, sizeof(err)), 0);
    CHECK(access(cert_path, F_OK) != 0);

    X509_free(x);
    EVP_PKEY_free(key);
    tl_certgen_pair_free(&pair);
    unlink(key_path);
    rmdir(dir);
}

TEST(write_error_names_path)
{
    tl_certgen_pair pair = {.cert_pem = "cert", .key_pem = "key"};
    char err[256] = "";
    const char *path = "/nonexistent-tlsloop-dir/key.pem";
    CHECK_EQ_INT(tl_certgen_write(&pair, NULL, path, err, sizeof(err)), -1);
    CHECK(strstr(err, path) != NULL);
    CHECK(strstr(err, strerror(ENOENT)) != NULL);

    tl_certgen_pair empty = {0};
    CHECK_EQ_INT(tl_certgen_write(&empty, "/tmp/x", NULL, err, sizeof(err)), -1);
    CHECK_EQ_INT(tl_certgen_write(NULL, NULL, NULL, err, sizeof(err)), -1);
}

TEST(pair_free_is_safe)
{
    tl_certgen_pair pair = {0};
    tl_certgen_pair_free(&pair);
    tl_certgen_pair_free(NULL);

    tl_certgen_spec spec = leaf_spec();
    issue_ok(&spec, NULL, &pair);
    tl_certgen_pair_free(&pair);
    CHECK(pair.cert_pem == NULL && pair.key_pem == NULL);
    tl_certgen_pair_free(&pair);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(selfsigned_ecdsa_leaf_parses_back);
    RUN(leaf_extensions);
    RUN(ca_signed_leaf_verifies);
    RUN(local_ca_is_name_constrained);
    RUN(rsa_2048_key_matches_cert);
    RUN(p384_leaf_signed_by_rsa_ca);
    RUN(expired_spec_gives_expired_cert);
    RUN(validity_window_follows_spec);
    RUN(is_ca_sets_basic_constraints);
    RUN(common_name_defaults);
    RUN(bad_ip_is_rejected);
    RUN(bad_arguments_are_rejected);
    RUN(issuer_with_mismatching_key_is_rejected);
    RUN(write_files_with_modes);
    RUN(write_error_names_path);
    RUN(pair_free_is_safe);
    TEST_MAIN_END();
}
