/*
 * test_tls_ctx_policy.c - what a configuration lets a handshake agree on (tlsloop/tls_ctx.h):
 * versions, ciphers, groups, ALPN, and whom it trusts: server verification by the client, mutual
 * TLS; every setting checked through handshakes between buffer-mode engines (support/tls_pair.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "support/tls_pair.h"
#include "test.h"

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
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.2");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

TEST(versions_no_overlap)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3);
    tl_tls_ctx *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    CHECK(tp_shake(&p) != 0);
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
    tp_free_ctxs(s, c);
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
    CHECK(TP_CONNECT_OK(c, s, "localhost"));
    tp_free_ctxs(s, c);

    /* TLS 1.2 with ChaCha only; then refused changes, each of which would change the choice. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL));
    CHECK_EQ_INT(tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-AES128-GCM-SHA256:AES128-SHA", NULL), -1);
    /* A good TLS 1.2 list with a bad TLS 1.3 list: neither is applied. */
    CHECK_EQ_INT(tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_BOGUS"), -1);
    CHECK_EQ_INT(tl_tls_ctx_set_versions(s, TL_TLS1_3, TL_TLS1_2), -1);
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.2");
        CHECK_STR(ci.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

TEST(cipher_chacha_tls12)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL));
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        CHECK_STR(ci.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
        CHECK_STR(si.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
        CHECK_STR(ci.version, "TLSv1.2");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

TEST(cipher_tls13_suite)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    CHECK_OK(s, tl_tls_ctx_set_ciphers(s, NULL, "TLS_CHACHA20_POLY1305_SHA256"));
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci;
        tl_engine_get_info(p.c.e, &ci);
        CHECK_STR(ci.version, "TLSv1.3");
        CHECK_STR(ci.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

/* ---- groups ------------------------------------------------------------------------------ */

/* The group a default client and this server agree on, compared with OpenSSL's name for nid. */
static void expect_group(tl_tls_ctx *s, int version, int nid)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
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
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
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
    tp_free_ctxs(s, c);
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
        tp_pair_named(&p, c, s, "localhost");
        CHECK(tp_shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_ALERT);
        CHECK_HAS(tl_engine_error(p.c.e), "application protocol");
        tp_pair_free(&p);
        tp_free_ctxs(s, c);
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
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info ci, si;
        tl_engine_get_info(p.c.e, &ci);
        tl_engine_get_info(p.s.e, &si);
        CHECK_STR(ci.alpn, "h2");
        CHECK_STR(si.alpn, "h2");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

/* ---- verification ------------------------------------------------------------------------ */

/* A verifying client connecting with `name` must fail verification with `why` in the message. */
static void expect_verify_failure(tl_tls_ctx *c, tl_tls_ctx *s, const char *name, const char *why)
{
    tp_pair p;
    tp_pair_named(&p, c, s, name);
    CHECK(tp_shake(&p) != 0);
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
    tp_free_ctxs(s, c);
    /* The same over TLS 1.2. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_OK(c, tl_tls_ctx_set_ca_pem(c, tp.other_ca.cert_pem));
    expect_verify_failure(c, s, "localhost", "local issuer");
    tp_free_ctxs(s, c);
    /* Several anchors in one PEM: the right one among them is enough. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    char *both = tp_cat_pem(tp.other_ca.cert_pem, tp.ca.cert_pem, NULL);
    CHECK_OK(c, tl_tls_ctx_set_ca_pem(c, both));
    CHECK(TP_CONNECT_OK(c, s, "localhost"));
    free(both);
    tp_free_ctxs(s, c);
}

TEST(verify_names)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0), *c = tp_client_ctx(0, 0);
    expect_verify_failure(c, s, "evil.test", "hostname mismatch");
    expect_verify_failure(c, s, "sub.good.test", "hostname mismatch");
    expect_verify_failure(c, s, "10.0.0.1", "IP address mismatch");
    expect_verify_failure(c, s, "::2", "IP address mismatch");
    CHECK(TP_CONNECT_OK(c, s, "good.test"));
    CHECK(TP_CONNECT_OK(c, s, "localhost"));
    CHECK(TP_CONNECT_OK(c, s, "127.0.0.1"));
    CHECK(TP_CONNECT_OK(c, s, "::1"));
    tp_free_ctxs(s, c);
}

TEST(verify_none_client)
{
    /* A server whose CA the client does not know, a name that does not match, and no name. */
    tl_tls_ctx *s = tp_server_ctx(&tp.rsa, 0, 0), *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    CHECK_OK(c, tl_tls_ctx_set_verify(c, TL_VERIFY_NONE));
    CHECK(TP_CONNECT_OK(c, s, "evil.test"));
    CHECK(TP_CONNECT_OK(c, s, NULL));
    tp_free_ctxs(s, c);
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
    tp_free_ctxs(s, c);
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
        tp_pair_named(&p, c, s, "localhost");
        if (TP_SHAKE_OK(&p)) {
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
        tp_free_ctxs(s, c);
    }
}

TEST(mtls_missing_client_cert)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s = mtls_server(TL_VERIFY_REQUIRE, version), *c = tp_client_ctx(0, 0);
        tp_pair p;
        tp_pair_named(&p, c, s, "localhost");
        CHECK(tp_shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(p.s.last, TL_ERROR);
        CHECK(tl_engine_error_kind(p.s.e) != TL_ERR_NONE);
        CHECK(tl_engine_error(p.s.e)[0] != '\0');
        /* The client learns it from the server's alert. */
        CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_ALERT);
        tp_pair_free(&p);
        tp_free_ctxs(s, c);
    }
}

TEST(mtls_untrusted_client_cert)
{
    tl_certgen_pair stranger = tp_issue("stranger.test", false, -3600, 86400, &tp.other_ca);
    for (int m = 0; m < 2; m++) {
        tl_tls_ctx *s = mtls_server(m ? TL_VERIFY_OPTIONAL : TL_VERIFY_REQUIRE, 0);
        tl_tls_ctx *c = client_with_cert(&stranger);
        tp_pair p;
        tp_pair_named(&p, c, s, "localhost");
        CHECK(tp_shake(&p) != 0);
        CHECK(!tl_engine_handshake_done(p.s.e));
        CHECK_EQ_INT(tl_engine_error_kind(p.s.e), TL_ERR_VERIFY);
        CHECK_HAS(tl_engine_error(p.s.e), "certificate verify failed");
        tp_pair_free(&p);
        tp_free_ctxs(s, c);
    }
    tl_certgen_pair_free(&stranger);
}

TEST(mtls_optional)
{
    /* Without a client certificate: fine, and the server knows there was none. */
    tl_tls_ctx *s = mtls_server(TL_VERIFY_OPTIONAL, 0), *c = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(!si.has_peer_cert);
        CHECK_STR(si.peer_subject, "");
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
    /* With one: verified and seen. */
    c = client_with_cert(&tp.client);
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(si.has_peer_cert);
        CHECK_HAS(si.peer_subject, "client.test");
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);

    /* A server that does not ask gets no certificate even from a client that has one. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    c = client_with_cert(&tp.client);
    tp_pair_named(&p, c, s, "localhost");
    if (TP_SHAKE_OK(&p)) {
        tl_engine_info si;
        tl_engine_get_info(p.s.e, &si);
        CHECK(!si.has_peer_cert);
    }
    tp_pair_free(&p);
    tp_free_ctxs(s, c);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
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
    TEST_MAIN_END();
}
