/*
 * test_tls_ctx.c - the shared configuration (tlsloop/tls_ctx.h): defaults and freezing, reference
 * counting, certificates (validity, chain order, files, RSA + ECDSA), versions, ciphers, groups,
 * ALPN, verification (client and mutual TLS), session and ticket setters, the ticket key ring.
 * Behaviour is checked through real handshakes between two buffer-mode engines
 * (tests/support/tls_pair.h); resumption itself is test_engine_resume.c's.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "test.h"
#include "support/tls_pair.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *const NAMES[] = {"localhost", "good.test"};
static const char *const IPS[] = {"127.0.0.1", "::1"};

/* An ECDSA certificate (cheap to make): a CA when ca, otherwise a leaf for the test names.
 * Validity from now+nb to now+na seconds. */
static tl_certgen_pair issue(const char *cn, bool ca, long nb, long na,
                             const tl_certgen_pair *issuer)
{
    tl_certgen_spec spec = {.key = TL_KEY_ECDSA_P256, .common_name = cn, .is_ca = ca,
                            .not_before = nb, .not_after = na};
    if (!ca) {
        spec.dns_names = NAMES;
        spec.n_dns = 2;
        spec.ip_addrs = IPS;
        spec.n_ip = 2;
    }
    tl_certgen_pair out = {0};
    char err[256];
    if (tl_certgen_issue(&spec, issuer, &out, err, sizeof err) != 0) {
        fprintf(stderr, "  issue %s: %s\n", cn, err);
        _exit(1);
    }
    return out;
}

/* Concatenate up to three PEM texts (NULL ends the list). */
static char *cat_pem(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + (b ? strlen(b) : 0) + (c ? strlen(c) : 0) + 1;
    char *s = malloc(n);
    REQUIRE(s);
    snprintf(s, n, "%s%s%s", a, b ? b : "", c ? c : "");
    return s;
}

/* A pair on these configurations with the client's server name (NULL: none). */
static void pair_init(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name)
{
    tl_engine_opts co = {.server_name = name};
    tp_pair_init(p, cctx, sctx, &co, NULL);
}

/* Handshake; after a failure one more round in each direction, so that each side has read the
 * other's alert. 0 when both finished. */
static int shake(tp_pair *p)
{
    int rc = tp_handshake(&p->c, &p->s, 10);
    if (rc != 0) {
        tp_wrap_to(&p->s, &p->c, NULL, 0, NULL);
        tp_unwrap(&p->c);
        tp_wrap_to(&p->c, &p->s, NULL, 0, NULL);
        tp_unwrap(&p->s);
    }
    return rc;
}

/* Handshake that must succeed: prints both sides' errors otherwise. */
static bool shake_ok(tp_pair *p)
{
    if (shake(p) == 0)
        return true;
    fprintf(stderr, "  handshake failed: client \"%s\" | server \"%s\"\n", tl_engine_error(p->c.e),
            tl_engine_error(p->s.e));
    test_failures_++;
    return false;
}

/* One connection: handshake must succeed, then a byte each way. */
static bool connect_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name)
{
    tp_pair p;
    pair_init(&p, cctx, sctx, name);
    bool ok = shake_ok(&p);
    if (ok) {
        ok = tp_send(&p.c, &p.s, "q", 1, 10) == 0 && tp_send(&p.s, &p.c, "a", 1, 10) == 0;
        if (!ok) {
            fprintf(stderr, "  data after the handshake did not arrive\n");
            test_failures_++;
        }
    }
    tp_pair_free(&p);
    return ok;
}

static void free_ctxs(tl_tls_ctx *a, tl_tls_ctx *b)
{
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
}

/* ---- defaults, freezing, lifetime -------------------------------------------------------- */

TEST(new_ctx_roles)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(s && c);
    CHECK_EQ_INT(tl_tls_ctx_role(s), TL_ROLE_SERVER);
    CHECK_EQ_INT(tl_tls_ctx_role(c), TL_ROLE_CLIENT);
    CHECK_STR(tl_tls_ctx_error(s), "");
    CHECK_EQ_INT(tl_tls_ctx_error_kind(s), TL_ERR_NONE);
    CHECK(tl_tls_ctx_new((tl_role)7) == NULL);
    /* A server has its own ticket ring from the start; a client has none. */
    CHECK(tl_tls_ctx_ticket_ring(s) != NULL);
    CHECK(tl_tls_ctx_ticket_ring(c) == NULL);
    free_ctxs(s, c);
}

TEST(server_without_cert_cannot_freeze)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    REQUIRE(s);
    CHECK_EQ_INT(tl_tls_ctx_freeze(s), -1);
    CHECK_EQ_INT(tl_tls_ctx_error_kind(s), TL_ERR_CONFIG);
    CHECK_HAS(tl_tls_ctx_error(s), "certificate");
    /* Freezing again gives the same answer, and the configuration stays open for the fix. */
    CHECK_EQ_INT(tl_tls_ctx_freeze(s), -1);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    CHECK_EQ_INT(tl_tls_ctx_error_kind(s), TL_ERR_NONE);
    tl_tls_ctx_free(s);

    /* An engine made from an incomplete configuration reports the reason as its first error. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_engine *e = tl_engine_new(s, NULL);
    REQUIRE(e);
    uint8_t buf[100];
    tl_result r = tl_engine_unwrap(e, "x", 1, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(e), TL_ERR_CONFIG);
    CHECK_HAS(tl_engine_error(e), "certificate");
    tl_engine_free(e);
    tl_tls_ctx_free(s);
}

TEST(freeze_then_setters_refused)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER), *c = tp_client_ctx(0, 0);
    REQUIRE(s);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    CHECK_STR(tl_tls_ctx_error(s), "");
    CHECK_OK(s, tl_tls_ctx_freeze(s)); /* idempotent */

    CHECK_FAIL(s, tl_tls_ctx_set_alpn(s, "h2"), TL_ERR_USAGE, "in use");
    CHECK_HAS(tl_tls_ctx_error(s), "set_alpn");
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, TL_TLS1_3, TL_TLS1_3), TL_ERR_USAGE, "in use");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.rsa.cert_pem, tp.rsa.key_pem), TL_ERR_USAGE,
               "in use");
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-AES256-GCM-SHA384", NULL), TL_ERR_USAGE,
               "in use");
    CHECK_FAIL(s, tl_tls_ctx_set_groups(s, "P-384"), TL_ERR_USAGE, "in use");
    CHECK_FAIL(s, tl_tls_ctx_set_verify(s, TL_VERIFY_OPTIONAL), TL_ERR_USAGE, "in use");
    CHECK_FAIL(s, tl_tls_ctx_set_num_tickets(s, 1), TL_ERR_USAGE, "in use");
    CHECK_FAIL(s, tl_tls_ctx_allow_expired(s, true), TL_ERR_USAGE, "in use");
    CHECK_FAIL(s, tl_tls_ctx_set_ca_pem(s, tp.ca.cert_pem), TL_ERR_USAGE, "in use");

    /* The refused setters changed nothing: still TLS 1.3, no ALPN. */
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.3");
        CHECK_STR(ci.alpn, "");
        CHECK(tp_send(&p.c, &p.s, "ping", 4, 10) == 0);
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(first_engine_freezes)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_alpn(s, "h2")); /* still mutable */
    tl_engine *first = tl_engine_new(s, NULL);
    REQUIRE(first);
    CHECK_FAIL(s, tl_tls_ctx_set_alpn(s, "http/1.1"), TL_ERR_USAGE, "in use");
    CHECK_OK(c, tl_tls_ctx_set_alpn(c, "h2")); /* another configuration: not frozen */
    tl_engine_free(first);
    /* Still frozen after its first engine is gone, and still working. */
    CHECK_FAIL(s, tl_tls_ctx_set_alpn(s, "http/1.1"), TL_ERR_USAGE, "in use");
    CHECK(connect_ok(c, s, "localhost"));
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, TL_VERIFY_NONE), TL_ERR_USAGE, "in use");
    free_ctxs(s, c);
}

TEST(client_default_uses_system_store)
{
    /* No CA given: the client trusts the system store, where the test CA is not. */
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(c);
    CHECK_OK(c, tl_tls_ctx_freeze(c));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    CHECK(shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK_HAS(tl_engine_error(p.c.e), "certificate verify failed");
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(refcount_ref_and_two_frees)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    REQUIRE(s);
    CHECK(tl_tls_ctx_ref(s) == s);
    tl_tls_ctx_free(s);
    /* The second reference keeps it alive (ASan would see a use after free here). */
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(NULL);
}

TEST(engines_keep_ctx_alive)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.rsa, 0, 0), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_alpn(s, "h2"));
    CHECK_OK(c, tl_tls_ctx_set_alpn(c, "h2"));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    free_ctxs(s, c); /* the engines hold the only references now */
    if (shake_ok(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK_STR(si.alpn, "h2"); /* the server's ALPN list lives in the configuration */
        CHECK(tp_send(&p.c, &p.s, "hello", 5, 10) == 0);
        CHECK(tp_send(&p.s, &p.c, "world", 5, 10) == 0);
    }
    tp_pair_free(&p);
}

/* ---- certificates ------------------------------------------------------------------------ */

TEST(cert_key_mismatch)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.rsa.cert_pem, tp.ecdsa.key_pem), TL_ERR_CONFIG,
               "does not match");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.client.key_pem), TL_ERR_CONFIG,
               "does not match");
    /* Nothing was loaded. */
    CHECK_FAIL(s, tl_tls_ctx_freeze(s), TL_ERR_CONFIG, "no certificate");
    tl_tls_ctx_free(s);

    /* A failed load leaves an earlier good one in place. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_EQ_INT(tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.rsa.key_pem), -1);
    CHECK(connect_ok(c, s, "localhost"));
    free_ctxs(s, c);
}

TEST(cert_expired)
{
    tl_certgen_pair old = issue("expired.test", false, -86400 * 2, -86400, &tp.ca);
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, old.cert_pem, old.key_pem), TL_ERR_CONFIG, "expired");
    CHECK_HAS(tl_tls_ctx_error(s), "allow");
    CHECK_EQ_INT(tl_tls_ctx_freeze(s), -1);
    tl_tls_ctx_free(s);

    /* Allowed: it loads, and a verifying client then refuses it. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_allow_expired(s, true));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, old.cert_pem, old.key_pem));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    CHECK(shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK_HAS(tl_engine_error(p.c.e), "expired");
    tp_pair_free(&p);
    free_ctxs(s, c);

    /* allow_expired(false) turns the check back on. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_allow_expired(s, true));
    CHECK_OK(s, tl_tls_ctx_allow_expired(s, false));
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, old.cert_pem, old.key_pem), TL_ERR_CONFIG, "expired");
    tl_tls_ctx_free(s);
    tl_certgen_pair_free(&old);
}

TEST(cert_not_yet_valid)
{
    tl_certgen_pair future = issue("future.test", false, 86400, 2 * 86400, &tp.ca);
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, future.cert_pem, future.key_pem), TL_ERR_CONFIG,
               "not valid before");
    CHECK_OK(s, tl_tls_ctx_allow_expired(s, true));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, future.cert_pem, future.key_pem));
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    tl_tls_ctx_free(s);
    tl_certgen_pair_free(&future);
}

TEST(cert_chain_order)
{
    /* tp.ca -> int1 -> int2 -> leaf; the client trusts tp.ca only. */
    tl_certgen_pair int1 = issue("intermediate 1", true, -3600, 86400, &tp.ca);
    tl_certgen_pair int2 = issue("intermediate 2", true, -3600, 86400, &int1);
    tl_certgen_pair leaf = issue("chained.test", false, -3600, 86400, &int2);
    tl_tls_ctx *c = tp_client_ctx(0, 0);

    /* Right order: loads, and the handshake sends the whole chain (no auto-chaining). */
    char *good = cat_pem(leaf.cert_pem, int2.cert_pem, int1.cert_pem);
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, good, leaf.key_pem));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        STACK_OF(X509) *sent = SSL_get_peer_cert_chain(tl_engine_ssl(p.c.e));
        CHECK_EQ_INT(sent ? sk_X509_num(sent) : 0, 3);
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_HAS(ci.peer_subject, "chained.test");
        CHECK_HAS(ci.peer_issuer, "intermediate 2");
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(s);

    /* The leaf alone loads, but the client cannot build a path: the chain comes only from what
     * was loaded. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, leaf.cert_pem, leaf.key_pem));
    pair_init(&p, c, s, "localhost");
    CHECK(shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    tp_pair_free(&p);
    tl_tls_ctx_free(s);

    /* Intermediates in reverse order. */
    char *swapped = cat_pem(leaf.cert_pem, int1.cert_pem, int2.cert_pem);
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, swapped, leaf.key_pem), TL_ERR_CONFIG,
               "certificate 2 did not issue certificate 1");
    /* Leaf, then an unrelated CA. */
    char *unrelated = cat_pem(leaf.cert_pem, tp.other_ca.cert_pem, NULL);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, unrelated, leaf.key_pem), TL_ERR_CONFIG,
               "did not issue");
    /* Right order, then one that does not belong at the end. */
    char *extra = cat_pem(good, tp.other_ca.cert_pem, NULL);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, extra, leaf.key_pem), TL_ERR_CONFIG,
               "certificate 4 did not issue certificate 3");
    /* Everything reversed: the first certificate is taken as the leaf, and the key is not its. */
    char *reversed = cat_pem(int1.cert_pem, int2.cert_pem, leaf.cert_pem);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, reversed, leaf.key_pem), TL_ERR_CONFIG,
               "does not match");
    CHECK_EQ_INT(tl_tls_ctx_freeze(s), -1); /* none of them was loaded */
    tl_tls_ctx_free(s);

    free(good);
    free(swapped);
    free(unrelated);
    free(extra);
    free(reversed);
    tl_tls_ctx_free(c);
    tl_certgen_pair_free(&leaf);
    tl_certgen_pair_free(&int2);
    tl_certgen_pair_free(&int1);
}

TEST(cert_bad_pem)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, "hello, I am not a certificate", tp.ecdsa.key_pem),
               TL_ERR_CONFIG, "no PEM certificate found");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, "", tp.ecdsa.key_pem), TL_ERR_CONFIG,
               "no PEM certificate found");

    /* A PEM block whose body is broken. */
    char *broken = strdup(tp.ecdsa.cert_pem);
    REQUIRE(broken);
    char *body = strchr(broken, '\n');
    REQUIRE(body);
    memset(body + 5, '!', 10);
    CHECK_EQ_INT(tl_tls_ctx_use_cert_pem(s, broken, tp.ecdsa.key_pem), -1);
    CHECK_EQ_INT(tl_tls_ctx_error_kind(s), TL_ERR_CONFIG);
    CHECK_HAS(tl_tls_ctx_error(s), "certificate");
    CHECK(strlen(tl_tls_ctx_error(s)) > strlen("certificate")); /* with OpenSSL's reason */
    free(broken);

    /* A good certificate with a garbage key, or a certificate where the key should be. */
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, "not a key"), TL_ERR_CONFIG,
               "no usable PEM private key");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.cert_pem), TL_ERR_CONFIG,
               "private key");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, NULL, tp.ecdsa.key_pem), TL_ERR_USAGE, "required");
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, NULL), TL_ERR_USAGE, "required");

    /* Trust anchors: the same checks. */
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_FAIL(c, tl_tls_ctx_set_ca_pem(c, "junk"), TL_ERR_CONFIG, "no PEM certificate found");
    CHECK_FAIL(c, tl_tls_ctx_set_ca_pem(c, NULL), TL_ERR_USAGE, "no PEM");

    CHECK_EQ_INT(tl_tls_ctx_freeze(s), -1);
    free_ctxs(s, c);
}

TEST(cert_file_missing)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    const char *missing = "/nonexistent-tlsloop-dir/cert.pem";
    CHECK_FAIL(s, tl_tls_ctx_use_cert_file(s, missing, "/nonexistent-tlsloop-dir/key.pem"),
               TL_ERR_CONFIG, "No such file");
    CHECK_HAS(tl_tls_ctx_error(s), missing);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_file(s, NULL, "k"), TL_ERR_USAGE, "required");
    CHECK_FAIL(s, tl_tls_ctx_set_ca_file(s, missing), TL_ERR_CONFIG, "No such file");
    CHECK_HAS(tl_tls_ctx_error(s), missing);
    tl_tls_ctx_free(s);
}

TEST(cert_files)
{
    char dir[] = "/tmp/tlsloop-test-ctx-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char cert[64], key[64], ca[64], absent[64];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(absent, sizeof absent, "%s/absent.pem", dir);
    char err[256];
    CHECK(tl_certgen_write(&tp.ecdsa, cert, key, err, sizeof err) == 0);
    CHECK(tl_certgen_write(&tp.ca, ca, NULL, err, sizeof err) == 0);

    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    /* The key file missing, the certificate present: the message names the key file. */
    CHECK_FAIL(s, tl_tls_ctx_use_cert_file(s, cert, absent), TL_ERR_CONFIG, "No such file");
    CHECK_HAS(tl_tls_ctx_error(s), absent);
    /* Certificate and key swapped: the key file holds no key. */
    CHECK_FAIL(s, tl_tls_ctx_use_cert_file(s, key, cert), TL_ERR_CONFIG, "no PEM certificate");
    CHECK_HAS(tl_tls_ctx_error(s), key);

    CHECK_OK(s, tl_tls_ctx_use_cert_file(s, cert, key));
    CHECK_OK(c, tl_tls_ctx_set_ca_file(c, ca));
    CHECK(connect_ok(c, s, "good.test"));
    free_ctxs(s, c);

    unlink(cert);
    unlink(key);
    unlink(ca);
    CHECK(rmdir(dir) == 0);
}

/* The key type of the server certificate a TLS 1.2 client restricted to `ciphers` receives. */
static int served_key_type(tl_tls_ctx *s, const char *ciphers)
{
    tl_tls_ctx *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    CHECK_OK(c, tl_tls_ctx_set_ciphers(c, ciphers, NULL));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    int type = -1;
    if (shake_ok(&p)) {
        X509 *peer = SSL_get0_peer_certificate(tl_engine_ssl(p.c.e));
        EVP_PKEY *pk = peer ? X509_get0_pubkey(peer) : NULL;
        type = pk ? EVP_PKEY_get_base_id(pk) : -1;
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.cipher, ciphers);
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
    return type;
}

TEST(rsa_and_ecdsa_in_one_ctx)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.rsa.cert_pem, tp.rsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_EQ_INT(served_key_type(s, "ECDHE-ECDSA-AES128-GCM-SHA256"), EVP_PKEY_EC);
    CHECK_EQ_INT(served_key_type(s, "ECDHE-RSA-AES128-GCM-SHA256"), EVP_PKEY_RSA);
    tl_tls_ctx_free(s);

    /* Loaded the other way round: the same. */
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.rsa.cert_pem, tp.rsa.key_pem));
    CHECK_EQ_INT(served_key_type(s, "ECDHE-RSA-AES128-GCM-SHA256"), EVP_PKEY_RSA);
    CHECK_EQ_INT(served_key_type(s, "ECDHE-ECDSA-AES128-GCM-SHA256"), EVP_PKEY_EC);
    tl_tls_ctx_free(s);

    /* A second certificate of the same key type replaces the first. */
    tl_certgen_pair second = issue("second.test", false, -3600, 86400, &tp.ca);
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, second.cert_pem, second.key_pem));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_HAS(ci.peer_subject, "second.test");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
    tl_certgen_pair_free(&second);
}

/* ---- versions ---------------------------------------------------------------------------- */

TEST(versions_refused)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, 0x0301, TL_TLS1_3), TL_ERR_USAGE, "0x0301");
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, 0x0302, TL_TLS1_2), TL_ERR_USAGE, "only TLS 1.2");
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, TL_TLS1_2, 0x0305), TL_ERR_USAGE, "only TLS 1.2");
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, 0, 0), TL_ERR_USAGE, "only TLS 1.2");
    CHECK_FAIL(s, tl_tls_ctx_set_versions(s, TL_TLS1_3, TL_TLS1_2), TL_ERR_USAGE, "above");
    CHECK_OK(s, tl_tls_ctx_set_versions(s, TL_TLS1_2, TL_TLS1_2));
    /* The refusals after a good call keep it: still 1.2 only. */
    CHECK_EQ_INT(tl_tls_ctx_set_versions(s, TL_TLS1_3, TL_TLS1_2), -1);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.2");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(versions_no_overlap)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3);
    tl_tls_ctx *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    CHECK(shake(&p) != 0);
    CHECK(!tl_engine_handshake_done(p.c.e) && !tl_engine_handshake_done(p.s.e));
    CHECK_EQ_INT(p.s.last, TL_ERROR);
    CHECK_EQ_INT(p.c.last, TL_ERROR);
    for (int i = 0; i < 2; i++) {
        tl_engine *e = i ? p.s.e : p.c.e;
        tl_error_kind k = tl_engine_error_kind(e);
        CHECK(k == TL_ERR_PROTOCOL || k == TL_ERR_ALERT);
        CHECK(tl_engine_error(e)[0] != '\0');
    }
    CHECK_HAS(tl_engine_error(p.s.e), "version");
    tp_pair_free(&p);
    free_ctxs(s, c);
}

/* ---- ciphers ----------------------------------------------------------------------------- */

TEST(ciphers_policy)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    /* No forward secrecy. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "AES128-SHA", NULL), TL_ERR_CONFIG,
               "enables AES128-SHA");
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384", NULL),
               TL_ERR_CONFIG, "enables AES256-GCM-SHA384");
    /* Forward secret but not AEAD. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "ECDHE-RSA-AES128-SHA", NULL), TL_ERR_CONFIG,
               "enables ECDHE-RSA-AES128-SHA");
    /* A broad keyword brings weak suites in. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "DEFAULT", NULL), TL_ERR_CONFIG, "forward secrecy");
    /* Nothing known. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, "NO-SUCH-CIPHER", NULL), TL_ERR_CONFIG,
               "names no usable cipher");
    /* TLS 1.3 suites. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, NULL, "TLS_BOGUS_SUITE"), TL_ERR_CONFIG,
               "TLS_BOGUS_SUITE");
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, NULL, ""), TL_ERR_CONFIG, "empty");
    /* OpenSSL would skip the unknown name inside a list; we refuse it by name. */
    CHECK_FAIL(s, tl_tls_ctx_set_ciphers(s, NULL, "TLS_AES_128_GCM_SHA256:TLS_TYPO"),
               TL_ERR_CONFIG, "'TLS_TYPO' is not known");
    /* Good ones. */
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, "ECDHE-RSA-AES128-GCM-SHA256", NULL));
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s,
                                       "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
                                       "TLS_AES_256_GCM_SHA384"));
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, NULL, NULL));
    CHECK_STR(tl_tls_ctx_error(s), "");
    tl_tls_ctx_free(s);
}

TEST(failed_setter_keeps_config)
{
    /* A weak list on a fresh server: refused, and the defaults still serve. */
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    CHECK_EQ_INT(tl_tls_ctx_set_ciphers(s, "AES128-SHA:ECDHE-RSA-AES128-SHA", NULL), -1);
    CHECK(connect_ok(c, s, "localhost"));
    free_ctxs(s, c);

    /* TLS 1.2 with ChaCha only; then refused changes, each of which would change the choice. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL));
    CHECK_EQ_INT(tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-AES128-GCM-SHA256:AES128-SHA", NULL), -1);
    /* A good TLS 1.2 list with a bad TLS 1.3 list: neither is applied. */
    CHECK_EQ_INT(tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_BOGUS"), -1);
    CHECK_EQ_INT(tl_tls_ctx_set_versions(s, TL_TLS1_3, TL_TLS1_2), -1);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.2");
        CHECK_STR(ci.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(cipher_chacha_tls12)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        CHECK_STR(ci.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
        CHECK_STR(si.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
        CHECK_STR(ci.version, "TLSv1.2");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(cipher_tls13_suite)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, NULL, "TLS_CHACHA20_POLY1305_SHA256"));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.3");
        CHECK_STR(ci.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

/* ---- groups ------------------------------------------------------------------------------ */

/* The group a default client and this server agree on, compared with OpenSSL's name for nid. */
static void expect_group(tl_tls_ctx *s, int version, int nid)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        const char *want = SSL_group_to_name(tl_engine_ssl(p.c.e), nid);
        CHECK(want != NULL);
        CHECK_STR(ci.group, want);
        CHECK_STR(si.group, want);
        CHECK_STR(ci.version, version == TL_TLS1_2 ? "TLSv1.2" : "TLSv1.3");
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
}

TEST(groups)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_groups(s, "X25519"));
    CHECK_OK(s, tl_tls_ctx_set_groups(s, "X25519:P-256"));
    CHECK_FAIL(s, tl_tls_ctx_set_groups(s, "nonsense"), TL_ERR_CONFIG, "'nonsense'");
    CHECK_FAIL(s, tl_tls_ctx_set_groups(s, NULL), TL_ERR_CONFIG, "not valid");
    CHECK_FAIL(s, tl_tls_ctx_set_groups(s, ""), TL_ERR_CONFIG, "not valid");
    tl_tls_ctx_free(s);

    /* Defaults kept after a refused list: X25519 first. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_EQ_INT(tl_tls_ctx_set_groups(s, "nonsense"), -1);
    expect_group(s, TL_TLS1_3, NID_X25519);
    tl_tls_ctx_free(s);

    /* P-256 only: the client's first key share (X25519) is not taken. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_groups(s, "P-256"));
    expect_group(s, TL_TLS1_3, NID_X9_62_prime256v1);
    tl_tls_ctx_free(s);

    /* The same in TLS 1.2. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    CHECK_OK(s, tl_tls_ctx_set_groups(s, "P-384"));
    expect_group(s, TL_TLS1_2, NID_secp384r1);
    tl_tls_ctx_free(s);

    /* A refused list after a good one keeps the good one (not the defaults). */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_groups(s, "P-256"));
    CHECK_EQ_INT(tl_tls_ctx_set_groups(s, "nonsense"), -1);
    expect_group(s, TL_TLS1_3, NID_X9_62_prime256v1);
    tl_tls_ctx_free(s);
}

/* ---- ALPN -------------------------------------------------------------------------------- */

/* Server and client ALPN lists (NULL: none); what both report after the handshake. */
static void alpn_case(const char *server, const char *client, const char *want)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    if (server)
        CHECK_OK(s, tl_tls_ctx_set_alpn(s, server));
    if (client)
        CHECK_OK(c, tl_tls_ctx_set_alpn(c, client));
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        if (strcmp(ci.alpn, want) != 0 || strcmp(si.alpn, want) != 0) {
            fprintf(stderr, "  ALPN server '%s' client '%s': got '%s' / '%s', want '%s'\n",
                    server ? server : "-", client ? client : "-", ci.alpn, si.alpn, want);
            test_failures_++;
        }
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

TEST(alpn_negotiation)
{
    alpn_case("h2,http/1.1", "http/1.1", "http/1.1");
    alpn_case("h2,http/1.1", "h2,http/1.1", "h2");
    alpn_case("h2,http/1.1", "http/1.1,h2", "h2");        /* the server's preference wins */
    alpn_case("http/1.1,h2", "h2,http/1.1", "http/1.1");
    alpn_case(NULL, "h2", "");                            /* server without ALPN */
    alpn_case("h2", NULL, "");                            /* client without ALPN */
}

/* No protocol in common: the handshake fails with no_application_protocol (RFC 7301), in both
 * versions. */
TEST(alpn_no_overlap_is_fatal)
{
    for (int v = 0; v < 2; v++) {
        tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, v ? TL_TLS1_2 : TL_TLS1_3, v ? TL_TLS1_2 : TL_TLS1_3);
        tl_tls_ctx *c = tp_client_ctx(0, 0);
        CHECK_OK(s, tl_tls_ctx_set_alpn(s, "h2,http/1.1"));
        CHECK_OK(c, tl_tls_ctx_set_alpn(c, "spdy/3,imap"));
        tp_pair p;
        pair_init(&p, c, s, "localhost");
        CHECK(shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_ALERT);
        CHECK_HAS(tl_engine_error(p.c.e), "application protocol");
        tp_pair_free(&p);
        free_ctxs(s, c);
    }
}

TEST(alpn_invalid)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    char name[300];
    memset(name, 'a', sizeof name);
    name[256] = '\0';
    for (int i = 0; i < 2; i++) {
        tl_tls_ctx *x = i ? c : s;
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, ""), TL_ERR_USAGE, "empty");
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, NULL), TL_ERR_USAGE, "empty");
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, ",h2"), TL_ERR_USAGE, "1 to 255 bytes");
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, "h2,,http/1.1"), TL_ERR_USAGE, "1 to 255 bytes");
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, "h2,"), TL_ERR_USAGE, "1 to 255 bytes");
        CHECK_FAIL(x, tl_tls_ctx_set_alpn(x, name), TL_ERR_USAGE, "1 to 255 bytes");
        name[255] = '\0'; /* 255 bytes: the longest allowed */
        CHECK_OK(x, tl_tls_ctx_set_alpn(x, name));
        name[255] = 'a';
    }
    /* Both now hold the 255-byte name; set the real lists, then refused changes keep them. */
    CHECK_OK(s, tl_tls_ctx_set_alpn(s, "h2,http/1.1"));
    CHECK_OK(c, tl_tls_ctx_set_alpn(c, "h2"));
    CHECK_EQ_INT(tl_tls_ctx_set_alpn(s, "x,,y"), -1);
    CHECK_EQ_INT(tl_tls_ctx_set_alpn(c, ""), -1);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        CHECK_STR(ci.alpn, "h2");
        CHECK_STR(si.alpn, "h2");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

/* ---- verification ------------------------------------------------------------------------ */

/* A verifying client connecting with `name` must fail verification with `why` in the message. */
static void expect_verify_failure(tl_tls_ctx *c, tl_tls_ctx *s, const char *name, const char *why)
{
    tp_pair p;
    pair_init(&p, c, s, name);
    CHECK(shake(&p) != 0);
    CHECK(!tl_engine_handshake_done(p.c.e));
    CHECK_EQ_INT(p.c.last, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK_HAS(tl_engine_error(p.c.e), "certificate verify failed");
    CHECK_HAS(tl_engine_error(p.c.e), why);
    /* The server hears about it. */
    CHECK_EQ_INT(p.s.last, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(p.s.e), TL_ERR_ALERT);
    tp_pair_free(&p);
}

TEST(verify_wrong_ca)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.rsa, 0, 0), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_OK(c, tl_tls_ctx_set_ca_pem(c, tp.other_ca.cert_pem));
    expect_verify_failure(c, s, "localhost", "local issuer");
    free_ctxs(s, c);
    /* The same over TLS 1.2. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_OK(c, tl_tls_ctx_set_ca_pem(c, tp.other_ca.cert_pem));
    expect_verify_failure(c, s, "localhost", "local issuer");
    free_ctxs(s, c);
    /* Several anchors in one PEM: the right one among them is enough. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    char *both = cat_pem(tp.other_ca.cert_pem, tp.ca.cert_pem, NULL);
    CHECK_OK(c, tl_tls_ctx_set_ca_pem(c, both));
    CHECK(connect_ok(c, s, "localhost"));
    free(both);
    free_ctxs(s, c);
}

TEST(verify_names)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    expect_verify_failure(c, s, "evil.test", "hostname mismatch");
    expect_verify_failure(c, s, "sub.good.test", "hostname mismatch");
    expect_verify_failure(c, s, "10.0.0.1", "IP address mismatch");
    expect_verify_failure(c, s, "::2", "IP address mismatch");
    CHECK(connect_ok(c, s, "good.test"));
    CHECK(connect_ok(c, s, "localhost"));
    CHECK(connect_ok(c, s, "127.0.0.1"));
    CHECK(connect_ok(c, s, "::1"));
    free_ctxs(s, c);
}

TEST(verify_none_client)
{
    /* A server whose CA the client does not know, a name that does not match, and no name. */
    tl_tls_ctx *s = tp_server_ctx(&tp.rsa, 0, 0), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_OK(c, tl_tls_ctx_set_verify(c, TL_VERIFY_NONE));
    CHECK(connect_ok(c, s, "evil.test"));
    CHECK(connect_ok(c, s, NULL));
    free_ctxs(s, c);
}

TEST(verify_mode_misuse)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0), *s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, TL_VERIFY_OPTIONAL), TL_ERR_USAGE, "optional");
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, (tl_verify)42), TL_ERR_USAGE, "unknown mode");
    CHECK_FAIL(s, tl_tls_ctx_set_verify(s, (tl_verify)-1), TL_ERR_USAGE, "unknown mode");
    /* The client still verifies after the refusal. */
    expect_verify_failure(c, s, "evil.test", "hostname mismatch");
    /* A server still asks for no client certificate after the refusal. */
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    free_ctxs(s, c);
}

/* ---- mutual TLS -------------------------------------------------------------------------- */

static tl_tls_ctx *mtls_server(tl_verify mode, int version)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, version, version);
    CHECK_OK(s, tl_tls_ctx_set_ca_pem(s, tp.ca.cert_pem));
    CHECK_OK(s, tl_tls_ctx_set_verify(s, mode));
    return s;
}

static tl_tls_ctx *client_with_cert(const tl_certgen_pair *cert)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    CHECK_OK(c, tl_tls_ctx_use_cert_pem(c, cert->cert_pem, cert->key_pem));
    return c;
}

TEST(mtls_require_needs_ca)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_verify(s, TL_VERIFY_REQUIRE));
    CHECK_FAIL(s, tl_tls_ctx_freeze(s), TL_ERR_CONFIG, "CA");
    tl_tls_ctx_free(s);
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_verify(s, TL_VERIFY_OPTIONAL));
    CHECK_FAIL(s, tl_tls_ctx_freeze(s), TL_ERR_CONFIG, "CA");
    tl_tls_ctx_free(s);
    /* With a CA (from a file or PEM) it freezes. */
    s = mtls_server(TL_VERIFY_REQUIRE, 0);
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    tl_tls_ctx_free(s);
}

TEST(mtls_client_cert)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s = mtls_server(TL_VERIFY_REQUIRE, version), *c = client_with_cert(&tp.client);
        tp_pair p;
        pair_init(&p, c, s, "localhost");
        if (shake_ok(&p)) {
            tl_engine_info si, ci;
            tl_engine_get_info(p.s.e, &si);
            tl_engine_get_info(p.c.e, &ci);
            CHECK(si.has_peer_cert);
            CHECK_HAS(si.peer_subject, "client.test");
            CHECK_HAS(si.peer_issuer, "tlsloop test CA");
            CHECK_EQ_INT(si.verify_result, X509_V_OK);
            CHECK(ci.has_peer_cert);
            CHECK(tp_send(&p.c, &p.s, "hi", 2, 10) == 0);
            /* The server named its CA as the acceptable issuer. */
            const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(tl_engine_ssl(p.c.e));
            CHECK_EQ_INT(names ? sk_X509_NAME_num(names) : 0, 1);
            X509 *ca = NULL;
            BIO *b = BIO_new_mem_buf(tp.ca.cert_pem, -1);
            if (b)
                ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
            BIO_free(b);
            CHECK(ca && names && sk_X509_NAME_num(names) == 1 &&
                  X509_NAME_cmp(sk_X509_NAME_value(names, 0), X509_get_subject_name(ca)) == 0);
            X509_free(ca);
        }
        tp_pair_free(&p);
        free_ctxs(s, c);
    }
}

TEST(mtls_missing_client_cert)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s = mtls_server(TL_VERIFY_REQUIRE, version), *c = tp_client_ctx(0, 0);
        tp_pair p;
        pair_init(&p, c, s, "localhost");
        CHECK(shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(p.s.last, TL_ERROR);
        CHECK(tl_engine_error_kind(p.s.e) != TL_ERR_NONE);
        CHECK(tl_engine_error(p.s.e)[0] != '\0');
        /* The client learns it from the server's alert. */
        CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_ALERT);
        tp_pair_free(&p);
        free_ctxs(s, c);
    }
}

TEST(mtls_untrusted_client_cert)
{
    tl_certgen_pair stranger = issue("stranger.test", false, -3600, 86400, &tp.other_ca);
    for (int m = 0; m < 2; m++) {
        tl_tls_ctx *s = mtls_server(m ? TL_VERIFY_OPTIONAL : TL_VERIFY_REQUIRE, 0);
        tl_tls_ctx *c = client_with_cert(&stranger);
        tp_pair p;
        pair_init(&p, c, s, "localhost");
        CHECK(shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(tl_engine_error_kind(p.s.e), TL_ERR_VERIFY);
        CHECK_HAS(tl_engine_error(p.s.e), "certificate verify failed");
        tp_pair_free(&p);
        free_ctxs(s, c);
    }
    tl_certgen_pair_free(&stranger);
}

TEST(mtls_optional)
{
    /* Without a client certificate: fine, and the server knows there was none. */
    tl_tls_ctx *s = mtls_server(TL_VERIFY_OPTIONAL, 0), *c = tp_client_ctx(0, 0);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(!si.has_peer_cert);
        CHECK_STR(si.peer_subject, "");
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
    /* With one: verified and seen. */
    c = client_with_cert(&tp.client);
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(si.has_peer_cert);
        CHECK_HAS(si.peer_subject, "client.test");
    }
    tp_pair_free(&p);
    free_ctxs(s, c);

    /* A server that does not ask gets no certificate even from a client that has one. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    c = client_with_cert(&tp.client);
    pair_init(&p, c, s, "localhost");
    if (shake_ok(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(!si.has_peer_cert);
    }
    tp_pair_free(&p);
    free_ctxs(s, c);
}

/* ---- sessions and tickets ---------------------------------------------------------------- */

TEST(session_setters)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_set_num_tickets(s, 17), TL_ERR_USAGE, "17");
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 16));
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 0));
    CHECK_FAIL(s, tl_tls_ctx_set_session_cache(s, 100, 0), TL_ERR_USAGE, "out of range");
    CHECK_FAIL(s, tl_tls_ctx_set_session_cache(s, 100, 7 * 24 * 3600 + 1), TL_ERR_USAGE,
               "out of range");
    CHECK_OK(s, tl_tls_ctx_set_session_cache(s, 100, 7 * 24 * 3600));
    CHECK_OK(s, tl_tls_ctx_set_session_cache(s, 0, 60));
    uint8_t sid[40];
    memset(sid, 's', sizeof sid);
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, sid, 0), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, sid, 33), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, NULL, 5), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_OK(s, tl_tls_ctx_set_session_id_context(s, sid, 32));
    CHECK_OK(s, tl_tls_ctx_set_session_id_context(s, "a", 1));
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, false));
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, true));
    CHECK_FAIL(s, tl_tls_ctx_set_ticket_ring(s, NULL), TL_ERR_USAGE, "no ring");

    /* Server-only settings on a client (tickets are both sides'). */
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    tl_ticket_ring *ring = tl_ticket_ring_new(2);
    REQUIRE(ring);
    CHECK_OK(c, tl_tls_ctx_set_tickets(c, false));
    CHECK_OK(c, tl_tls_ctx_set_tickets(c, true));
    CHECK_FAIL(c, tl_tls_ctx_set_num_tickets(c, 1), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_session_cache(c, 10, 60), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_session_id_context(c, "x", 1), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_ticket_ring(c, ring), TL_ERR_USAGE, "only a server");
    CHECK(tl_tls_ctx_ticket_ring(c) == NULL);
    /* Client-only: optional verification is the server's (the client side of it is refused). */
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, TL_VERIFY_OPTIONAL), TL_ERR_USAGE, "servers");
    CHECK_OK(s, tl_tls_ctx_set_verify(s, TL_VERIFY_OPTIONAL));
    tl_ticket_ring_free(ring);
    free_ctxs(s, c);
}

/* Tickets issued by a server for one full handshake of the given version. */
static uint64_t tickets_issued(tl_tls_ctx *s)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    tl_ticket_stats before, after;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &before);
    tp_pair p;
    pair_init(&p, c, s, "localhost");
    shake_ok(&p);
    tp_send(&p.s, &p.c, "x", 1, 10); /* the client reads past the tickets */
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &after);
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
    return after.issued - before.issued;
}

TEST(ticket_setters_take_effect)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_EQ_INT(tickets_issued(s), 2); /* the default */
    tl_tls_ctx_free(s);

    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 3));
    CHECK_EQ_INT(tl_tls_ctx_set_num_tickets(s, 17), -1); /* keeps 3 */
    CHECK_EQ_INT(tickets_issued(s), 3);
    tl_tls_ctx_free(s);

    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 0));
    CHECK_EQ_INT(tickets_issued(s), 0);
    tl_tls_ctx_free(s);

    /* Tickets off: TLS 1.3 tickets are stateful (from the cache), none from the ring. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, false));
    CHECK_EQ_INT(tickets_issued(s), 0);
    tl_tls_ctx_free(s);

    /* TLS 1.2: one ticket per full handshake, from the ring. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    CHECK_EQ_INT(tickets_issued(s), 1);
    tl_tls_ctx_free(s);
}

TEST(shared_ticket_ring)
{
    tl_ticket_ring *ring = tl_ticket_ring_new(3);
    REQUIRE(ring);
    tl_tls_ctx *a = tp_server_ctx(&tp.ecdsa, 0, 0), *b = tp_server_ctx(&tp.rsa, 0, 0);
    tl_ticket_ring *own = tl_tls_ctx_ticket_ring(a);
    CHECK(own != NULL && own != ring);
    CHECK_OK(a, tl_tls_ctx_set_ticket_ring(a, ring));
    CHECK_OK(b, tl_tls_ctx_set_ticket_ring(b, ring));
    CHECK(tl_tls_ctx_ticket_ring(a) == ring);
    CHECK(tl_tls_ctx_ticket_ring(b) == ring);
    tl_ticket_ring_free(ring); /* the configurations hold it now */
    CHECK_EQ_INT(tickets_issued(a), 2);
    CHECK_EQ_INT(tickets_issued(b), 2);
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(b), &st);
    CHECK_EQ_INT(st.issued, 4); /* both served from the one ring */
    tl_tls_ctx_free(a);
    CHECK_EQ_INT(tl_ticket_ring_count(tl_tls_ctx_ticket_ring(b)), 1); /* still alive */
    tl_tls_ctx_free(b);
}

TEST(ticket_ring_api)
{
    CHECK(tl_ticket_ring_new(0) == NULL);
    CHECK(tl_ticket_ring_new(65) == NULL);
    tl_ticket_ring *big = tl_ticket_ring_new(64);
    CHECK(big != NULL);
    tl_ticket_ring_free(big);

    tl_ticket_ring *r = tl_ticket_ring_new(3);
    REQUIRE(r);
    tl_ticket_stats st;
    memset(&st, 0xff, sizeof st);
    tl_ticket_ring_stats(r, &st);
    CHECK_EQ_INT(st.issued, 0);
    CHECK_EQ_INT(st.decrypted_current, 0);
    CHECK_EQ_INT(st.decrypted_old, 0);
    CHECK_EQ_INT(st.unknown_key, 0);

    uint8_t names[6][16];
    CHECK_EQ_INT(tl_ticket_ring_count(r), 1);
    tl_ticket_ring_current_name(r, names[0]);
    for (int i = 1; i < 6; i++) {
        CHECK_EQ_INT(tl_ticket_ring_rotate(r), 0);
        CHECK_EQ_INT(tl_ticket_ring_count(r), i + 1 < 3 ? i + 1 : 3);
        tl_ticket_ring_current_name(r, names[i]);
        CHECK(memcmp(names[i], names[i - 1], 16) != 0);
    }

    /* Adding: a name already in the ring (the current one, or an older one) is refused. */
    uint8_t key[TL_TICKET_KEY_LEN];
    memset(key, 0x5a, sizeof key);
    memcpy(key, names[5], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1);
    memcpy(key, names[3], 16); /* the oldest still kept */
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1);
    uint8_t cur[16];
    tl_ticket_ring_current_name(r, cur);
    CHECK(memcmp(cur, names[5], 16) == 0); /* unchanged by the refusals */
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);

    /* A name that was rotated out can come back; an added key becomes the current one. */
    memcpy(key, names[0], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), 0);
    tl_ticket_ring_current_name(r, cur);
    CHECK(memcmp(cur, names[0], 16) == 0);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1); /* and now it is a duplicate */

    /* Another reference keeps it alive. */
    CHECK(tl_ticket_ring_ref(r) == r);
    tl_ticket_ring_free(r);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);
    tl_ticket_ring_free(r);
    tl_ticket_ring_free(NULL);

    /* Capacity 1: rotation replaces the only key. */
    r = tl_ticket_ring_new(1);
    REQUIRE(r);
    tl_ticket_ring_current_name(r, names[0]);
    CHECK_EQ_INT(tl_ticket_ring_rotate(r), 0);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 1);
    tl_ticket_ring_current_name(r, names[1]);
    CHECK(memcmp(names[0], names[1], 16) != 0);
    memcpy(key, names[0], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), 0); /* the old one is gone, so not a duplicate */
    tl_ticket_ring_free(r);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(new_ctx_roles);
    RUN(server_without_cert_cannot_freeze);
    RUN(freeze_then_setters_refused);
    RUN(first_engine_freezes);
    RUN(client_default_uses_system_store);
    RUN(refcount_ref_and_two_frees);
    RUN(engines_keep_ctx_alive);
    RUN(cert_key_mismatch);
    RUN(cert_expired);
    RUN(cert_not_yet_valid);
    RUN(cert_chain_order);
    RUN(cert_bad_pem);
    RUN(cert_file_missing);
    RUN(cert_files);
    RUN(rsa_and_ecdsa_in_one_ctx);
    RUN(versions_refused);
    RUN(versions_no_overlap);
    RUN(ciphers_policy);
    RUN(failed_setter_keeps_config);
    RUN(cipher_chacha_tls12);
    RUN(cipher_tls13_suite);
    RUN(groups);
    RUN(alpn_negotiation);
    RUN(alpn_no_overlap_is_fatal);
    RUN(alpn_invalid);
    RUN(verify_wrong_ca);
    RUN(verify_names);
    RUN(verify_none_client);
    RUN(verify_mode_misuse);
    RUN(mtls_require_needs_ca);
    RUN(mtls_client_cert);
    RUN(mtls_missing_client_cert);
    RUN(mtls_untrusted_client_cert);
    RUN(mtls_optional);
    RUN(session_setters);
    RUN(ticket_setters_take_effect);
    RUN(shared_ticket_ring);
    RUN(ticket_ring_api);
    TEST_MAIN_END();
}
