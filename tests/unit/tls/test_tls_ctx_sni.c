/*
 * test_tls_ctx_sni.c - named configurations chosen by SNI (tl_tls_ctx_add_name): routing by exact
 * and wildcard names in any case, the default, RSA and ECDSA per name, per-name policy, delegated
 * tasks, malformed server_name, attaching and freezing names (hosts: support/vhosts.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "support/tls_pair.h"
#include "support/vhosts.h"
#include "test.h"
#include "tls/tli_tls.h"
#include "util/tli.h" /* tli_tls_ctx_ssl_ctx: the client's signature algorithms */

/* ---- helpers ------------------------------------------------------------------------------ */

/* The subject of the certificate served for this SNI, to a client that does not verify. */
static void served(tl_tls_ctx *sctx, const char *sni, char *subject, size_t len)
{
    tl_tls_ctx *c = vh_loose_client(0, 0);
    vh_outcome o = VH_RUN_OK(c, sctx, sni, NULL, 0);
    snprintf(subject, len, "%s", o.subject);
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
}

#define CHECK_SERVED(sctx, sni, want)                                                           \
    do {                                                                                        \
        char got_[256];                                                                         \
        served((sctx), (sni), got_, sizeof got_);                                               \
        CHECK_STR(got_, (want));                                                                \
    } while (0)

/* ---- routing ------------------------------------------------------------------------------ */

TEST(sni_exact_name)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *c = tp_client_ctx(0, 0);
    /* A verifying client gets a certificate that is valid for the name it asked for. */
    vh_outcome o = VH_RUN_OK(c, d, "a.test", NULL, 0);
    CHECK_STR(o.subject, "CN=a.test");
    CHECK_STR(o.sni, "a.test");
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "b.test", NULL, 0);
    CHECK_STR(o.subject, "CN=b.test");
    tl_session_free(o.session);
    /* TLS 1.2 as well. */
    tl_tls_ctx *c12 = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    o = VH_RUN_OK(c12, d, "a.test", NULL, 0);
    CHECK_STR(o.subject, "CN=a.test");
    CHECK_STR(o.version, "TLSv1.2");
    tl_session_free(o.session);
    tl_tls_ctx_free(c12);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_default_without_sni_or_match)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *c = tp_client_ctx(0, 0);
    /* An IP address is never sent as SNI: the default, whose certificate has 127.0.0.1. */
    vh_outcome o = VH_RUN_OK(c, d, "127.0.0.1", NULL, 0);
    CHECK_STR(o.subject, "CN=localhost");
    CHECK_STR(o.sni, ""); /* the server got none */
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "localhost", NULL, 0); /* a name with no configuration of its own */
    CHECK_STR(o.subject, "CN=localhost");
    tl_session_free(o.session);
    CHECK_SERVED(d, NULL, "CN=localhost");
    CHECK_SERVED(d, "unknown.test", "CN=localhost");
    CHECK_SERVED(d, "a.test.evil", "CN=localhost");
    CHECK_SERVED(d, "xa.test", "CN=localhost");
    /* A verifying client to an unknown name gets the default, which is not valid for it. */
    o = vh_run(c, d, "unknown.test", NULL, 0);
    CHECK(!o.ok);
    CHECK_HAS(o.cerr, "certificate");
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_case_insensitive)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *c = tp_client_ctx(0, 0);
    /* "B.Test" was attached in mixed case; clients may send any case. */
    CHECK_SERVED(d, "A.TEST", "CN=a.test");
    CHECK_SERVED(d, "b.test", "CN=b.test");
    CHECK_SERVED(d, "B.tESt", "CN=b.test");
    CHECK_SERVED(d, "X.WILD.Test", "CN=*.wild.test");
    vh_outcome o = VH_RUN_OK(c, d, "A.Test", NULL, 0); /* and it still verifies */
    CHECK_STR(o.subject, "CN=a.test");
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_wildcard)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *c = tp_client_ctx(0, 0);
    vh_outcome o = VH_RUN_OK(c, d, "x.wild.test", NULL, 0);
    CHECK_STR(o.subject, "CN=*.wild.test");
    tl_session_free(o.session);
    CHECK_SERVED(d, "www-2.wild.test", "CN=*.wild.test");
    /* Exactly one label: neither the bare name nor two labels. */
    CHECK_SERVED(d, "wild.test", "CN=localhost");
    CHECK_SERVED(d, "a.b.wild.test", "CN=localhost");
    /* An exact name wins over the wildcard, whatever the order they were attached in. */
    o = VH_RUN_OK(c, d, "exact.wild.test", NULL, 0);
    CHECK_STR(o.subject, "CN=exact.wild.test");
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);

    d = vh_server(&tp.ecdsa, 0, 0);
    tl_tls_ctx *x = vh_server(&vh.exact_wild, 0, 0), *w = vh_server(&vh.wild, 0, 0);
    vh_attach(d, "exact.wild.test", x);
    vh_attach(d, "*.wild.test", w);
    CHECK_SERVED(d, "exact.wild.test", "CN=exact.wild.test");
    CHECK_SERVED(d, "other.wild.test", "CN=*.wild.test");
    tl_tls_ctx_free(x);
    tl_tls_ctx_free(w);
    tl_tls_ctx_free(d);
}

TEST(select_api)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *a = vh_server(&vh.a, 0, 0);
    tl_tls_ctx *w = vh_server(&vh.wild, 0, 0);
    vh_attach(d, "a.test", a);
    vh_attach(d, "*.wild.test", w);
    CHECK(tl_tls_ctx_select(d, "a.test") == a);
    CHECK(tl_tls_ctx_select(d, "A.TEST") == a);
    CHECK(tl_tls_ctx_select(d, "x.wild.test") == w);
    CHECK(tl_tls_ctx_select(d, "wild.test") == d);
    CHECK(tl_tls_ctx_select(d, ".wild.test") == d); /* an empty first label */
    CHECK(tl_tls_ctx_select(d, "a.test.") == d);
    CHECK(tl_tls_ctx_select(d, "") == d);
    CHECK(tl_tls_ctx_select(d, NULL) == d);
    CHECK(tl_tls_ctx_select(a, "a.test") == a); /* a configuration without names */
    CHECK(tl_tls_ctx_select(NULL, "a.test") == NULL);
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(w);
    tl_tls_ctx_free(d);
}

/* A name with both an RSA and an ECDSA certificate: the client's signature algorithms choose,
 * as they do on a default configuration. The default here has only ECDSA. */
TEST(sni_rsa_and_ecdsa_per_name)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *dual = vh_server(&vh.dual_rsa, 0, 0);
    REQUIRE(tl_tls_ctx_use_cert_pem(dual, vh.dual_ec.cert_pem, vh.dual_ec.key_pem) == 0);
    vh_attach(d, "dual.test", dual);
    static const char RSA_ALGS[] = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256";
    static const char EC_ALGS[] = "ecdsa_secp256r1_sha256";
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *rsa = tp_client_ctx(version, version), *ec = tp_client_ctx(version, version);
        REQUIRE(SSL_CTX_set1_sigalgs_list(tli_tls_ctx_ssl_ctx(rsa), RSA_ALGS) == 1);
        REQUIRE(SSL_CTX_set1_sigalgs_list(tli_tls_ctx_ssl_ctx(ec), EC_ALGS) == 1);
        vh_outcome o = VH_RUN_OK(rsa, d, "dual.test", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_RSA);
        CHECK_STR(o.subject, "CN=dual.test");
        tl_session_free(o.session);
        o = VH_RUN_OK(ec, d, "dual.test", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_EC);
        CHECK_STR(o.subject, "CN=dual.test");
        tl_session_free(o.session);
        /* The default has no RSA certificate: an RSA-only client fails there. */
        o = vh_run(rsa, d, "localhost", NULL, 0);
        CHECK(!o.ok);
        o = VH_RUN_OK(ec, d, "localhost", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_EC);
        tl_session_free(o.session);
        tl_tls_ctx_free(rsa);
        tl_tls_ctx_free(ec);
    }
    tl_tls_ctx_free(dual);
    tl_tls_ctx_free(d);
}

/* ---- per-name policy ---------------------------------------------------------------------- */

TEST(sni_client_cert_per_name)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = vh_mtls_hosts(TL_VERIFY_REQUIRE);
        tl_tls_ctx *plain = tp_client_ctx(version, version), *with = vh_client_with_cert();
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        /* Without a certificate: fine on the default and on a.test, refused on secure.test. */
        vh_outcome o = VH_RUN_OK(plain, d, "localhost", NULL, 0);
        CHECK(!o.client_cert);
        tl_session_free(o.session);
        o = VH_RUN_OK(plain, d, "a.test", NULL, 0);
        CHECK(!o.client_cert);
        tl_session_free(o.session);
        o = vh_run(plain, d, "secure.test", NULL, 0);
        CHECK(!o.ok);
        CHECK(o.serr[0] != '\0');
        /* With one: secure.test asks for it, names its CA, and verifies it; a.test does not ask. */
        o = VH_RUN_OK(with, d, "secure.test", NULL, 0);
        CHECK(o.client_cert);
        CHECK_EQ_INT(o.peer_ca_names, 1);
        CHECK_STR(o.subject, "CN=secure.test");
        tl_session_free(o.session);
        o = VH_RUN_OK(with, d, "a.test", NULL, 0);
        CHECK(!o.client_cert);
        CHECK_EQ_INT(o.peer_ca_names, 0);
        tl_session_free(o.session);
        tl_tls_ctx_free(plain);
        tl_tls_ctx_free(with);
        tl_tls_ctx_free(d);
    }
    /* Optional on a name: asked for, not required. */
    tl_tls_ctx *d = vh_mtls_hosts(TL_VERIFY_OPTIONAL), *plain = tp_client_ctx(0, 0);
    tl_tls_ctx *with = vh_client_with_cert();
    vh_outcome o = VH_RUN_OK(plain, d, "secure.test", NULL, 0);
    CHECK(!o.client_cert);
    tl_session_free(o.session);
    o = VH_RUN_OK(with, d, "secure.test", NULL, 0);
    CHECK(o.client_cert);
    tl_session_free(o.session);
    tl_tls_ctx_free(plain);
    tl_tls_ctx_free(with);
    tl_tls_ctx_free(d);
}

/* Versions, ciphers, groups and ALPN are the named configuration's, not the default's. */
TEST(sni_policy_per_name)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    REQUIRE(tl_tls_ctx_set_alpn(d, "http/1.1") == 0);
    tl_tls_ctx *v13 = vh_server(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3);
    REQUIRE(tl_tls_ctx_set_alpn(v13, "h2,http/1.1") == 0);
    REQUIRE(tl_tls_ctx_set_ciphers(v13, NULL, "TLS_AES_256_GCM_SHA384") == 0);
    REQUIRE(tl_tls_ctx_set_groups(v13, "P-384") == 0);
    REQUIRE(tl_tls_ctx_set_num_tickets(v13, 0) == 0);
    tl_tls_ctx *chacha = vh_server(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2); /* and no ALPN */
    REQUIRE(tl_tls_ctx_set_ciphers(chacha, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL) == 0);
    vh_attach(d, "v13.test", v13);
    vh_attach(d, "chacha.test", chacha);
    tl_tls_ctx *c = vh_loose_client(0, 0);
    REQUIRE(tl_tls_ctx_set_alpn(c, "h2,http/1.1") == 0);

    vh_outcome o = VH_RUN_OK(c, d, "localhost", NULL, 0);
    CHECK_STR(o.version, "TLSv1.2");
    CHECK_STR(o.alpn, "http/1.1");
    CHECK_STR(o.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    CHECK_EQ_INT(vh_ring_stat(d, 0), 1); /* one TLS 1.2 ticket */
    tl_session_free(o.session);
    /* Also a HelloRetryRequest: the client guessed X25519. */
    o = VH_RUN_OK(c, d, "v13.test", NULL, 0);
    CHECK_EQ_INT(vh_ring_stat(d, 0), 1); /* v13.test sends no tickets */
    CHECK_STR(o.version, "TLSv1.3");
    CHECK_STR(o.alpn, "h2");
    CHECK_STR(o.cipher, "TLS_AES_256_GCM_SHA384");
    CHECK_HAS(o.group, "384");
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "chacha.test", NULL, 0);
    CHECK_STR(o.version, "TLSv1.2");
    CHECK_STR(o.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
    CHECK_STR(o.alpn, ""); /* nothing inherited from the default */
    tl_session_free(o.session);
    /* A client that offers only TLS 1.2 cannot reach the TLS 1.3-only name. */
    tl_tls_ctx *c12 = vh_loose_client(TL_TLS1_2, TL_TLS1_2);
    o = vh_run(c12, d, "v13.test", NULL, 0);
    CHECK(!o.ok);
    tl_tls_ctx_free(c12);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(v13);
    tl_tls_ctx_free(chacha);
    tl_tls_ctx_free(d);
}

/* ---- delegated tasks ---------------------------------------------------------------------- */

TEST(sni_with_delegated_tasks)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = vh_mtls_hosts(TL_VERIFY_REQUIRE), *c = tp_client_ctx(version, version);
        tl_tls_ctx *with = vh_client_with_cert();
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        vh_outcome o = VH_RUN_OK(c, d, "a.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=a.test");
        CHECK(o.tasks >= 1);
        REQUIRE(o.session);
        vh_outcome r = VH_RUN_OK(c, d, "a.test", o.session, TL_ENGINE_DELEGATE_TASKS);
        CHECK(r.resumed);
        CHECK(r.tasks >= 1);
        tl_session_free(r.session);
        tl_session_free(o.session);
        o = VH_RUN_OK(c, d, "x.wild.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=*.wild.test");
        tl_session_free(o.session);
        o = VH_RUN_OK(c, d, "127.0.0.1", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=localhost");
        tl_session_free(o.session);
        /* The named policy holds across the pause: secure.test still demands a certificate. */
        o = vh_run(c, d, "secure.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK(!o.ok);
        o = VH_RUN_OK(with, d, "secure.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK(o.client_cert);
        tl_session_free(o.session);
        tl_tls_ctx_free(with);
        tl_tls_ctx_free(c);
        tl_tls_ctx_free(d);
    }
}

/* ---- malformed server_name ---------------------------------------------------------------- */

/* The offset of the server_name extension's data in a ClientHello record, or 0. */
static size_t find_sni(const uint8_t *m, size_t len)
{
    size_t p = 5 + 4 + 2 + 32; /* record header, handshake header, version, random */
    if (len < p + 1 || m[0] != 22 || m[5] != 1)
        return 0;
    p += 1 + m[p];                           /* session id */
    p += 2 + ((size_t)m[p] << 8 | m[p + 1]); /* cipher suites */
    p += 1 + m[p];                           /* compression methods */
    size_t end = p + 2 + ((size_t)m[p] << 8 | m[p + 1]);
    for (p += 2; p + 4 <= end && end <= len;) {
        size_t type = (size_t)m[p] << 8 | m[p + 1], n = (size_t)m[p + 2] << 8 | m[p + 3];
        if (type == 0)
            return p + 4;
        p += 4 + n;
    }
    return 0;
}

/* Feed the server a ClientHello for "a.test" with its server_name changed by `mangle`; returns
 * the alert the server sent (-1: none) and its error. */
static int mangled_hello(tl_tls_ctx *s, void (*mangle)(uint8_t *ext), char *err, size_t errlen)
{
    tl_tls_ctx *c = vh_loose_client(0, 0);
    tl_engine_opts co = {.server_name = "a.test"};
    tl_engine *ce = tl_engine_new(c, &co), *se = tl_engine_new(s, NULL);
    REQUIRE(ce && se);
    uint8_t hello[2048], out[2048], app[64];
    tl_result r = tl_engine_wrap(ce, NULL, 0, hello, sizeof hello);
    size_t at = find_sni(hello, r.produced);
    REQUIRE(at > 0);
    mangle(hello + at);
    r = tl_engine_unwrap(se, hello, r.produced, app, sizeof app);
    CHECK_EQ_INT(r.status, TL_ERROR);
    snprintf(err, errlen, "%s", tl_engine_error(se));
    r = tl_engine_wrap(se, NULL, 0, out, sizeof out);
    /* A plaintext alert record: type 21, version, length 2, level 2 (fatal), description. */
    int alert = r.produced == 7 && out[0] == 21 && out[5] == 2 ? out[6] : -1;
    tl_engine_free(ce);
    tl_engine_free(se);
    tl_tls_ctx_free(c);
    return alert;
}

static void wrong_type(uint8_t *ext) { ext[2] = 1; }
static void list_too_long(uint8_t *ext) { ext[1]++; }
static void name_too_short(uint8_t *ext) { ext[4]--; }

TEST(sni_malformed_is_decode_error)
{
    void (*mangles[])(uint8_t *) = {wrong_type, list_too_long, name_too_short};
    for (int i = 0; i < 3; i++) {
        char err[256];
        tl_tls_ctx *d = vh_hosts(0, 0);
        CHECK_EQ_INT(mangled_hello(d, mangles[i], err, sizeof err), SSL_AD_DECODE_ERROR);
        CHECK_HAS(err, "bad extension");
        tl_tls_ctx_free(d);
        /* A configuration without names lets OpenSSL parse it: the same alert. */
        tl_tls_ctx *plain = vh_server(&tp.ecdsa, 0, 0);
        CHECK_EQ_INT(mangled_hello(plain, mangles[i], err, sizeof err), SSL_AD_DECODE_ERROR);
        tl_tls_ctx_free(plain);
    }
}

/* ---- configuration ------------------------------------------------------------------------ */

TEST(add_name_refusals)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *a = vh_server(&vh.a, 0, 0);
    tl_tls_ctx *b = vh_server(&vh.b, 0, 0);
    tl_tls_ctx *client = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(client);
    CHECK_EQ_INT(tl_tls_ctx_add_name(NULL, "a.test", a), -1);
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, NULL, a), TL_ERR_USAGE, "required");
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "a.test", NULL), TL_ERR_USAGE, "required");
    static const char *const bad[] = {"", ".", "a..b", ".a.test", "a.test.", "a b.test",
                                      "a/b", "*", "*.", "**.test", "*a.test", "a.*.test",
                                      "x.*", "*.*.test", "caf\xc3\xa9.test", "a:443"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_FAIL(d, tl_tls_ctx_add_name(d, bad[i], a), TL_ERR_USAGE, "is not a host name");
        if (bad[i][0])
            CHECK_HAS(tl_tls_ctx_error(d), bad[i]);
    }
    char label[80], longname[300];
    memset(label, 'x', 64);
    strcpy(label + 64, ".test");
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, label, a), TL_ERR_USAGE, "not a host name");
    strcpy(label + 63, ".test"); /* 63 is the longest label */
    CHECK_OK(d, tl_tls_ctx_add_name(d, label, a));
    for (int i = 0; i < 127; i++)
        memcpy(longname + 2 * i, "y.", 2);
    strcpy(longname + 252, "z"); /* 253 characters */
    CHECK_OK(d, tl_tls_ctx_add_name(d, longname, a));
    strcpy(longname + 252, "zz");
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, longname, a), TL_ERR_USAGE, "not a host name");

    /* Duplicates, in any case; an exact name and a wildcard over it are different names. */
    CHECK_OK(d, tl_tls_ctx_add_name(d, "a.test", a));
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "A.Test", b), TL_ERR_USAGE, "already attached");
    CHECK_OK(d, tl_tls_ctx_add_name(d, "*.a.test", b));
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "*.A.TEST", a), TL_ERR_USAGE, "already attached");
    CHECK_OK(d, tl_tls_ctx_add_name(d, "under_score.test", a));
    CHECK_OK(d, tl_tls_ctx_add_name(d, "other.test", a)); /* one configuration, several names */
    CHECK_STR(tl_tls_ctx_error(d), "");

    /* Roles, self, and one level only. */
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "c.test", client), TL_ERR_USAGE, "TL_ROLE_SERVER");
    CHECK_FAIL(client, tl_tls_ctx_add_name(client, "c.test", a), TL_ERR_USAGE, "TL_ROLE_SERVER");
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "self.test", d), TL_ERR_USAGE, "itself");
    tl_tls_ctx *top = vh_server(&tp.ecdsa, 0, 0);
    CHECK_FAIL(top, tl_tls_ctx_add_name(top, "d.test", d), TL_ERR_USAGE, "names of its own");
    CHECK_FAIL(a, tl_tls_ctx_add_name(a, "x.test", top), TL_ERR_USAGE, "itself attached");
    tl_tls_ctx_free(top);

    /* Once the default is frozen, no more names. */
    CHECK_OK(d, tl_tls_ctx_freeze(d));
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "late.test", b), TL_ERR_USAGE, "in use");
    tl_tls_ctx_free(client);
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
    tl_tls_ctx_free(d);
}

/* A configuration already in use keeps its session ID context: attaching it is refused unless
 * that context is its own (set by the user, or derived when it was attached before). */
TEST(add_name_frozen_named)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *a = vh_server(&vh.a, 0, 0);
    tl_tls_ctx *b = vh_server(&vh.b, 0, 0);
    CHECK_OK(a, tl_tls_ctx_freeze(a));
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "a.test", a), TL_ERR_USAGE, "session ID context");
    REQUIRE(tl_tls_ctx_set_session_id_context(b, "bee", 3) == 0);
    CHECK_OK(b, tl_tls_ctx_freeze(b));
    CHECK_OK(d, tl_tls_ctx_add_name(d, "b.test", b));
    /* A second default (another listener) may share a named configuration already in use. */
    tl_tls_ctx *a2 = vh_server(&vh.a, 0, 0), *d2 = vh_server(&tp.ecdsa, 0, 0);
    CHECK_OK(d, tl_tls_ctx_add_name(d, "a.test", a2));
    CHECK_OK(d, tl_tls_ctx_freeze(d));
    CHECK_OK(d2, tl_tls_ctx_add_name(d2, "a.test", a2));
    CHECK_SERVED(d2, "a.test", "CN=a.test");
    CHECK_SERVED(d, "a.test", "CN=a.test");
    CHECK_SERVED(d, "b.test", "CN=b.test");
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
    tl_tls_ctx_free(a2);
    tl_tls_ctx_free(d);
    tl_tls_ctx_free(d2);
}

TEST(freeze_covers_names)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *a = vh_server(NULL, 0, 0);
    tl_tls_ctx *w = vh_server(&vh.wild, 0, 0);
    vh_attach(d, "*.wild.test", w);
    vh_attach(d, "a.test", a);
    /* A named configuration that cannot freeze fails the default's freeze, naming it. */
    CHECK_FAIL(d, tl_tls_ctx_freeze(d), TL_ERR_CONFIG, "name 'a.test'");
    CHECK_HAS(tl_tls_ctx_error(d), "no certificate");
    /* An engine made from the default meanwhile reports the same. */
    tl_engine *e = tl_engine_new(d, NULL);
    REQUIRE(e);
    uint8_t buf[64];
    CHECK_EQ_INT(tl_engine_unwrap(e, "x", 1, buf, sizeof buf).status, TL_ERROR);
    CHECK_HAS(tl_engine_error(e), "name 'a.test'");
    tl_engine_free(e);
    /* Everything stays open for the fix; then freezing the default freezes its names. */
    CHECK_OK(a, tl_tls_ctx_use_cert_pem(a, vh.a.cert_pem, vh.a.key_pem));
    CHECK_OK(d, tl_tls_ctx_freeze(d));
    CHECK_FAIL(a, tl_tls_ctx_set_alpn(a, "h2"), TL_ERR_USAGE, "in use");
    CHECK_FAIL(w, tl_tls_ctx_set_alpn(w, "h2"), TL_ERR_USAGE, "in use");
    /* An engine freezes them too. */
    tl_tls_ctx *d2 = vh_server(&tp.ecdsa, 0, 0), *b = vh_server(&vh.b, 0, 0);
    vh_attach(d2, "b.test", b);
    e = tl_engine_new(d2, NULL);
    CHECK_FAIL(b, tl_tls_ctx_set_alpn(b, "h2"), TL_ERR_USAGE, "in use");
    tl_engine_free(e);
    /* Names with an incomplete mTLS policy: the CA is missing. */
    tl_tls_ctx *d3 = vh_server(&tp.ecdsa, 0, 0), *sec = vh_server(&vh.secure, 0, 0);
    REQUIRE(tl_tls_ctx_set_verify(sec, TL_VERIFY_REQUIRE) == 0);
    vh_attach(d3, "secure.test", sec);
    CHECK_FAIL(d3, tl_tls_ctx_freeze(d3), TL_ERR_CONFIG, "name 'secure.test'");
    CHECK_HAS(tl_tls_ctx_error(d3), "no CA");
    tl_tls_ctx *all[] = {d, a, w, d2, b, d3, sec};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tl_tls_ctx_free(all[i]);
}

/* The default holds its named configurations: the caller's references may go first. */
TEST(named_lifetime)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *c = tp_client_ctx(0, 0);
    tl_engine_opts co = {.server_name = "a.test"};
    tp_pair p;
    tp_pair_init(&p, c, d, &co, NULL);
    tl_tls_ctx_free(d); /* the engine holds the default, the default its names */
    CHECK(tp_handshake(&p.c, &p.s, 10) == 0);
    tl_engine_info ci;
    tl_engine_get_info(p.c.e, &ci);
    CHECK_STR(ci.peer_subject, "CN=a.test");
    CHECK(tp_send(&p.c, &p.s, "hello", 5, 10) == 0);
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    vh_init();
    RUN(sni_exact_name);
    RUN(sni_default_without_sni_or_match);
    RUN(sni_case_insensitive);
    RUN(sni_wildcard);
    RUN(select_api);
    RUN(sni_rsa_and_ecdsa_per_name);
    RUN(sni_client_cert_per_name);
    RUN(sni_policy_per_name);
    RUN(sni_with_delegated_tasks);
    RUN(sni_malformed_is_decode_error);
    RUN(add_name_refusals);
    RUN(add_name_frozen_named);
    RUN(freeze_covers_names);
    RUN(named_lifetime);
    TEST_MAIN_END();
}
