/*
 * test_tls_ctx_certs.c - a configuration's life and the certificates it serves (tlsloop/tls_ctx.h):
 * defaults, freezing, references; loading certificates (mismatch, validity, chain order, bad PEM,
 * files, RSA + ECDSA in one) and their expiry, checked through handshakes (support/tls_pair.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "support/tls_pair.h"
#include "support/vhosts.h"
#include "test.h"

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
    tp_free_ctxs(s, c);
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
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.3");
        CHECK_STR(ci.alpn, "");
        CHECK(tp_send(&p.c, &p.s, "ping", 4, 10) == 0);
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
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
    CHECK(TP_CONNECT_OK(c, s, "localhost"));
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, TL_VERIFY_NONE), TL_ERR_USAGE, "in use");
    tp_free_ctxs(s, c);
}

TEST(client_default_uses_system_store)
{
    /* No CA given: the client trusts the system store, where the test CA is not. */
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(c);
    CHECK_OK(c, tl_tls_ctx_freeze(c));
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    CHECK(tp_shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK_HAS(tl_engine_error(p.c.e), "certificate verify failed");
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
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
    tp_pair_named(&p, c, s, "localhost");
    tp_free_ctxs(s, c); /* the engines hold the only references now */
    if (TP_SHAKE_OK(&p)) {
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
    CHECK(TP_CONNECT_OK(c, s, "localhost"));
    tp_free_ctxs(s, c);
}

TEST(cert_expired)
{
    tl_certgen_pair old = tp_issue("expired.test", false, -86400 * 2, -86400, &tp.ca);
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
    tp_pair_named(&p, c, s, "localhost");
    CHECK(tp_shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK_HAS(tl_engine_error(p.c.e), "expired");
    tp_pair_free(&p);
    tp_free_ctxs(s, c);

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
    tl_certgen_pair future = tp_issue("future.test", false, 86400, 2 * 86400, &tp.ca);
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
    tl_certgen_pair int1 = tp_issue("intermediate 1", true, -3600, 86400, &tp.ca);
    tl_certgen_pair int2 = tp_issue("intermediate 2", true, -3600, 86400, &int1);
    tl_certgen_pair leaf = tp_issue("chained.test", false, -3600, 86400, &int2);
    tl_tls_ctx *c = tp_client_ctx(0, 0);

    /* Right order: loads, and the handshake sends the whole chain (no auto-chaining). */
    char *good = tp_cat_pem(leaf.cert_pem, int2.cert_pem, int1.cert_pem);
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, good, leaf.key_pem));
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
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
    tp_pair_named(&p, c, s, "localhost");
    CHECK(tp_shake(&p) != 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    tp_pair_free(&p);
    tl_tls_ctx_free(s);

    /* Intermediates in reverse order. */
    char *swapped = tp_cat_pem(leaf.cert_pem, int1.cert_pem, int2.cert_pem);
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, swapped, leaf.key_pem), TL_ERR_CONFIG,
               "certificate 2 did not issue certificate 1");
    /* Leaf, then an unrelated CA. */
    char *unrelated = tp_cat_pem(leaf.cert_pem, tp.other_ca.cert_pem, NULL);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, unrelated, leaf.key_pem), TL_ERR_CONFIG,
               "did not issue");
    /* Right order, then one that does not belong at the end. */
    char *extra = tp_cat_pem(good, tp.other_ca.cert_pem, NULL);
    CHECK_FAIL(s, tl_tls_ctx_use_cert_pem(s, extra, leaf.key_pem), TL_ERR_CONFIG,
               "certificate 4 did not issue certificate 3");
    /* Everything reversed: the first certificate is taken as the leaf, and the key is not its. */
    char *reversed = tp_cat_pem(int1.cert_pem, int2.cert_pem, leaf.cert_pem);
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
    tp_free_ctxs(s, c);
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
    CHECK(TP_CONNECT_OK(c, s, "good.test"));
    tp_free_ctxs(s, c);

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
    tp_pair_named(&p, c, s, "localhost");
    int type = -1;
    if (TP_SHAKE_OK(&p)) {
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
    tl_certgen_pair second = tp_issue("second.test", false, -3600, 86400, &tp.ca);
    s = tl_tls_ctx_new(TL_ROLE_SERVER);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, second.cert_pem, second.key_pem));
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_HAS(ci.peer_subject, "second.test");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
    tl_certgen_pair_free(&second);
}

/* ---- certificate expiry ------------------------------------------------------------------- */

static bool near(int64_t t, int64_t want) { return t >= want - 5 && t <= want + 5; }

TEST(cert_expiry)
{
    int64_t t = 0, now = (int64_t)time(NULL);
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER), *client = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_FAIL(s, tl_tls_ctx_cert_expiry(s, &t), TL_ERR_USAGE, "no certificate");
    CHECK_FAIL(client, tl_tls_ctx_cert_expiry(client, &t), TL_ERR_USAGE, "no certificate");
    CHECK_EQ_INT(tl_tls_ctx_cert_expiry(NULL, &t), -1);

    tl_certgen_pair ec10, ec3, rsa5, named2, expired;
    vh_issue(TL_KEY_ECDSA_P256, "e.test", 10 * 86400, &ec10);
    vh_issue(TL_KEY_ECDSA_P256, "e.test", 3 * 86400, &ec3);
    vh_issue(TL_KEY_RSA_2048, "e.test", 5 * 86400, &rsa5);
    vh_issue(TL_KEY_ECDSA_P256, "n.test", 2 * 86400, &named2);
    vh_issue(TL_KEY_ECDSA_P256, "old.test", -86400, &expired);

    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, ec10.cert_pem, ec10.key_pem));
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 10 * 86400));
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, rsa5.cert_pem, rsa5.key_pem)); /* the earlier of two */
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 5 * 86400));
    /* A refused certificate changes nothing. */
    CHECK_EQ_INT(tl_tls_ctx_use_cert_pem(s, expired.cert_pem, expired.key_pem), -1);
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 5 * 86400));
    /* A new ECDSA certificate replaces the old one, and so does its expiry. */
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, ec3.cert_pem, ec3.key_pem));
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 3 * 86400));
    /* Named configurations count; the default's own expiry is included after them. */
    tl_tls_ctx *n = vh_server(&named2, 0, 0);
    vh_attach(s, "n.test", n);
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 2 * 86400));
    CHECK_OK(n, tl_tls_ctx_cert_expiry(n, &t));
    CHECK(near(t, now + 2 * 86400));
    CHECK_OK(s, tl_tls_ctx_freeze(s)); /* and on a frozen configuration */
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 2 * 86400));
    /* A default without a certificate of its own still reports its names'. */
    tl_tls_ctx *bare = tl_tls_ctx_new(TL_ROLE_SERVER);
    vh_attach(bare, "n.test", n);
    CHECK_OK(bare, tl_tls_ctx_cert_expiry(bare, &t));
    CHECK(near(t, now + 2 * 86400));
    /* An expired certificate, when allowed, gives a time in the past. */
    tl_tls_ctx *old = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_OK(old, tl_tls_ctx_allow_expired(old, true));
    CHECK_OK(old, tl_tls_ctx_use_cert_pem(old, expired.cert_pem, expired.key_pem));
    CHECK_OK(old, tl_tls_ctx_cert_expiry(old, &t));
    CHECK(near(t, now - 86400));

    tl_certgen_pair *pairs[] = {&ec10, &ec3, &rsa5, &named2, &expired};
    for (int i = 0; i < 5; i++)
        tl_certgen_pair_free(pairs[i]);
    tl_tls_ctx *all[] = {s, client, n, bare, old};
    for (int i = 0; i < 5; i++)
        tl_tls_ctx_free(all[i]);
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
    RUN(cert_expiry);
    TEST_MAIN_END();
}
