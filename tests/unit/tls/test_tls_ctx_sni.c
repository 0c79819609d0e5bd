/*
 * test_tls_ctx_sni.c - named configurations chosen by SNI (tl_tls_ctx_add_name): routing by exact
 * and wildcard names in any case, the default without SNI or a match, RSA and ECDSA per name, the
 * per-name policy (client certificates, versions, ciphers, groups, ALPN), resumption on a named
 * host and isolation between names, delegated tasks, malformed server_name extensions, freezing;
 * then certificate expiry (tl_tls_ctx_cert_expiry) and ticket key files (tl_ticket_ring_load_file).
 * Every handshake runs between two buffer-mode engines (tests/support/tls_pair.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "support/tls_pair.h"
#include "test.h"
#include "tls/tli_tls.h"
#include "util/tli.h" /* tli_tls_ctx_ssl_ctx: the client's signature algorithms */

/* ---- helpers ------------------------------------------------------------------------------ */

/* Certificates for the named hosts, made once before the tests fork. */
static struct {
    tl_certgen_pair a, b, wild, exact_wild, dual_rsa, dual_ec, secure;
} vc;

static void must_issue(tl_key_type key, const char *name, long not_after, tl_certgen_pair *out)
{
    const char *names[] = {name};
    tl_certgen_spec spec = {.key = key, .dns_names = names, .n_dns = 1,
                            .not_before = not_after < 0 ? not_after - 3600 : -3600,
                            .not_after = not_after};
    char err[256];
    if (tl_certgen_issue(&spec, &tp.ca, out, err, sizeof err) != 0) {
        fprintf(stderr, "issue %s: %s\n", name, err);
        exit(2);
    }
}

static void make_certs(void)
{
    must_issue(TL_KEY_ECDSA_P256, "a.test", 86400, &vc.a);
    must_issue(TL_KEY_ECDSA_P256, "b.test", 86400, &vc.b);
    must_issue(TL_KEY_ECDSA_P256, "*.wild.test", 86400, &vc.wild);
    must_issue(TL_KEY_ECDSA_P256, "exact.wild.test", 86400, &vc.exact_wild);
    must_issue(TL_KEY_RSA_2048, "dual.test", 86400, &vc.dual_rsa);
    must_issue(TL_KEY_ECDSA_P256, "dual.test", 86400, &vc.dual_ec);
    must_issue(TL_KEY_ECDSA_P256, "secure.test", 86400, &vc.secure);
}

/* A server configuration with this certificate (NULL: none), versions min..max (0: defaults). */
static tl_tls_ctx *server(const tl_certgen_pair *cert, int min_v, int max_v)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    REQUIRE(s);
    if (cert)
        REQUIRE(tl_tls_ctx_use_cert_pem(s, cert->cert_pem, cert->key_pem) == 0);
    if (min_v || max_v)
        REQUIRE(tl_tls_ctx_set_versions(s, min_v ? min_v : TL_TLS1_2,
                                        max_v ? max_v : TL_TLS1_3) == 0);
    return s;
}

/* Attach, or end the test with the default's message. */
static void attach(tl_tls_ctx *dflt, const char *name, tl_tls_ctx *named)
{
    if (tl_tls_ctx_add_name(dflt, name, named) != 0) {
        fprintf(stderr, "  add_name %s: %s\n", name, tl_tls_ctx_error(dflt));
        _exit(1);
    }
}

/* The virtual hosts most tests use: the default serves tp.ecdsa (localhost, 127.0.0.1); a.test,
 * b.test, *.wild.test and exact.wild.test have their own configurations. versions as server(). */
static tl_tls_ctx *vhosts(int min_v, int max_v)
{
    tl_tls_ctx *d = server(&tp.ecdsa, min_v, max_v);
    const tl_certgen_pair *certs[] = {&vc.a, &vc.b, &vc.wild, &vc.exact_wild};
    const char *names[] = {"a.test", "B.Test", "*.wild.test", "exact.wild.test"};
    for (int i = 0; i < 4; i++) {
        tl_tls_ctx *n = server(certs[i], min_v, max_v);
        attach(d, names[i], n);
        tl_tls_ctx_free(n); /* the default holds it */
    }
    return d;
}

/* A client that does not verify: it connects to any name, to see which certificate comes. */
static tl_tls_ctx *loose_client(int min_v, int max_v)
{
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(c && tl_tls_ctx_set_verify(c, TL_VERIFY_NONE) == 0);
    if (min_v || max_v)
        REQUIRE(tl_tls_ctx_set_versions(c, min_v ? min_v : TL_TLS1_2,
                                        max_v ? max_v : TL_TLS1_3) == 0);
    return c;
}

static tl_tls_ctx *client_with_cert(void)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    REQUIRE(tl_tls_ctx_use_cert_pem(c, tp.client.cert_pem, tp.client.key_pem) == 0);
    return c;
}

/* What one connection showed. */
typedef struct outcome {
    bool ok, resumed;
    char subject[256];       /* the server certificate's subject, as the client saw it */
    int key_type;            /* its key type (EVP_PKEY_EC, EVP_PKEY_RSA) */
    bool client_cert;        /* the server got a client certificate */
    int peer_ca_names;       /* CA names the server sent with its CertificateRequest */
    char version[16], cipher[64], group[32], alpn[64], sni[64];
    int tasks;               /* delegated tasks the server ran */
    char cerr[256], serr[256];
    tl_session *session;     /* the client's newest session (the caller frees it) */
} outcome;

/* One connection with this SNI (NULL: no server name), offering a session, with server engine
 * flags: handshake, a request and an answer (so TLS 1.3 tickets arrive), close. */
static outcome run(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                   unsigned sflags)
{
    outcome o;
    memset(&o, 0, sizeof o);
    tl_engine_opts co = {.server_name = sni, .session = offer}, so = {.flags = sflags};
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, &co, &so);
    p.s.task_thread = true;
    o.ok = tp_handshake(&p.c, &p.s, 10) == 0;
    o.tasks = p.s.tasks_run;
    if (!o.ok) { /* one more round each way, so each side has read the other's alert */
        tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
        tp_unwrap(&p.c);
        tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
        tp_unwrap(&p.s);
        snprintf(o.cerr, sizeof o.cerr, "%s", tl_engine_error(p.c.e));
        snprintf(o.serr, sizeof o.serr, "%s", tl_engine_error(p.s.e));
        tp_pair_free(&p);
        return o;
    }
    tl_engine_info ci, si;
    tl_engine_get_info(p.c.e, &ci);
    tl_engine_get_info(p.s.e, &si);
    o.resumed = ci.resumed;
    if (ci.resumed != si.resumed)
        fprintf(stderr, "  client and server disagree on resumption\n");
    snprintf(o.subject, sizeof o.subject, "%s", ci.peer_subject);
    X509 *cert = SSL_get0_peer_certificate(tl_engine_ssl(p.c.e));
    o.key_type = cert ? EVP_PKEY_get_base_id(X509_get0_pubkey(cert)) : 0;
    o.client_cert = si.has_peer_cert;
    const STACK_OF(X509_NAME) *cas = SSL_get0_peer_CA_list(tl_engine_ssl(p.c.e));
    o.peer_ca_names = cas ? sk_X509_NAME_num(cas) : 0;
    snprintf(o.version, sizeof o.version, "%s", ci.version);
    snprintf(o.cipher, sizeof o.cipher, "%s", ci.cipher);
    snprintf(o.group, sizeof o.group, "%s", ci.group ? ci.group : "");
    snprintf(o.alpn, sizeof o.alpn, "%s", ci.alpn);
    snprintf(o.sni, sizeof o.sni, "%s", si.server_name ? si.server_name : "");
    if (tp_send(&p.c, &p.s, "GET", 3, 10) != 0 || tp_send(&p.s, &p.c, "OK", 2, 10) != 0)
        fprintf(stderr, "  data after the handshake did not arrive\n");
    o.session = tl_engine_get_session(p.c.e);
    tl_engine_close(p.c.e);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    tp_unwrap(&p.s);
    tl_engine_close(p.s.e);
    tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
    tp_unwrap(&p.c);
    tp_pair_free(&p);
    return o;
}

/* A connection that must succeed; prints both errors otherwise. */
static outcome run_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                      unsigned sflags)
{
    outcome o = run(cctx, sctx, sni, offer, sflags);
    if (!o.ok) {
        fprintf(stderr, "  handshake with SNI %s failed: client \"%s\" | server \"%s\"\n",
                sni ? sni : "(none)", o.cerr, o.serr);
        test_failures_++;
    }
    return o;
}

/* The subject of the certificate served for this SNI, to a client that does not verify. */
static void served(tl_tls_ctx *sctx, const char *sni, char *subject, size_t len)
{
    tl_tls_ctx *c = loose_client(0, 0);
    outcome o = run_ok(c, sctx, sni, NULL, 0);
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

static uint64_t ring_stat(tl_tls_ctx *s, int which)
{
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &st);
    switch (which) {
    case 0: return st.issued;
    case 1: return st.decrypted_current;
    case 2: return st.decrypted_old;
    default: return st.unknown_key;
    }
}

/* ---- routing ------------------------------------------------------------------------------ */

TEST(sni_exact_name)
{
    tl_tls_ctx *d = vhosts(0, 0), *c = tp_client_ctx(0, 0);
    /* A verifying client gets a certificate that is valid for the name it asked for. */
    outcome o = run_ok(c, d, "a.test", NULL, 0);
    CHECK_STR(o.subject, "CN=a.test");
    CHECK_STR(o.sni, "a.test");
    tl_session_free(o.session);
    o = run_ok(c, d, "b.test", NULL, 0);
    CHECK_STR(o.subject, "CN=b.test");
    tl_session_free(o.session);
    /* TLS 1.2 as well. */
    tl_tls_ctx *c12 = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    o = run_ok(c12, d, "a.test", NULL, 0);
    CHECK_STR(o.subject, "CN=a.test");
    CHECK_STR(o.version, "TLSv1.2");
    tl_session_free(o.session);
    tl_tls_ctx_free(c12);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_default_without_sni_or_match)
{
    tl_tls_ctx *d = vhosts(0, 0), *c = tp_client_ctx(0, 0);
    /* An IP address is never sent as SNI: the default, whose certificate has 127.0.0.1. */
    outcome o = run_ok(c, d, "127.0.0.1", NULL, 0);
    CHECK_STR(o.subject, "CN=localhost");
    CHECK_STR(o.sni, ""); /* the server got none */
    tl_session_free(o.session);
    o = run_ok(c, d, "localhost", NULL, 0); /* a name with no configuration of its own */
    CHECK_STR(o.subject, "CN=localhost");
    tl_session_free(o.session);
    CHECK_SERVED(d, NULL, "CN=localhost");
    CHECK_SERVED(d, "unknown.test", "CN=localhost");
    CHECK_SERVED(d, "a.test.evil", "CN=localhost");
    CHECK_SERVED(d, "xa.test", "CN=localhost");
    /* A verifying client to an unknown name gets the default, which is not valid for it. */
    o = run(c, d, "unknown.test", NULL, 0);
    CHECK(!o.ok);
    CHECK_HAS(o.cerr, "certificate");
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_case_insensitive)
{
    tl_tls_ctx *d = vhosts(0, 0), *c = tp_client_ctx(0, 0);
    /* "B.Test" was attached in mixed case; clients may send any case. */
    CHECK_SERVED(d, "A.TEST", "CN=a.test");
    CHECK_SERVED(d, "b.test", "CN=b.test");
    CHECK_SERVED(d, "B.tESt", "CN=b.test");
    CHECK_SERVED(d, "X.WILD.Test", "CN=*.wild.test");
    outcome o = run_ok(c, d, "A.Test", NULL, 0); /* and it still verifies */
    CHECK_STR(o.subject, "CN=a.test");
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(sni_wildcard)
{
    tl_tls_ctx *d = vhosts(0, 0), *c = tp_client_ctx(0, 0);
    outcome o = run_ok(c, d, "x.wild.test", NULL, 0);
    CHECK_STR(o.subject, "CN=*.wild.test");
    tl_session_free(o.session);
    CHECK_SERVED(d, "www-2.wild.test", "CN=*.wild.test");
    /* Exactly one label: neither the bare name nor two labels. */
    CHECK_SERVED(d, "wild.test", "CN=localhost");
    CHECK_SERVED(d, "a.b.wild.test", "CN=localhost");
    /* An exact name wins over the wildcard, whatever the order they were attached in. */
    o = run_ok(c, d, "exact.wild.test", NULL, 0);
    CHECK_STR(o.subject, "CN=exact.wild.test");
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);

    d = server(&tp.ecdsa, 0, 0);
    tl_tls_ctx *x = server(&vc.exact_wild, 0, 0), *w = server(&vc.wild, 0, 0);
    attach(d, "exact.wild.test", x);
    attach(d, "*.wild.test", w);
    CHECK_SERVED(d, "exact.wild.test", "CN=exact.wild.test");
    CHECK_SERVED(d, "other.wild.test", "CN=*.wild.test");
    tl_tls_ctx_free(x);
    tl_tls_ctx_free(w);
    tl_tls_ctx_free(d);
}

TEST(select_api)
{
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *a = server(&vc.a, 0, 0), *w = server(&vc.wild, 0, 0);
    attach(d, "a.test", a);
    attach(d, "*.wild.test", w);
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
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *dual = server(&vc.dual_rsa, 0, 0);
    REQUIRE(tl_tls_ctx_use_cert_pem(dual, vc.dual_ec.cert_pem, vc.dual_ec.key_pem) == 0);
    attach(d, "dual.test", dual);
    static const char RSA_ALGS[] = "rsa_pss_rsae_sha256:rsa_pkcs1_sha256";
    static const char EC_ALGS[] = "ecdsa_secp256r1_sha256";
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *rsa = tp_client_ctx(version, version), *ec = tp_client_ctx(version, version);
        REQUIRE(SSL_CTX_set1_sigalgs_list(tli_tls_ctx_ssl_ctx(rsa), RSA_ALGS) == 1);
        REQUIRE(SSL_CTX_set1_sigalgs_list(tli_tls_ctx_ssl_ctx(ec), EC_ALGS) == 1);
        outcome o = run_ok(rsa, d, "dual.test", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_RSA);
        CHECK_STR(o.subject, "CN=dual.test");
        tl_session_free(o.session);
        o = run_ok(ec, d, "dual.test", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_EC);
        CHECK_STR(o.subject, "CN=dual.test");
        tl_session_free(o.session);
        /* The default has no RSA certificate: an RSA-only client fails there. */
        o = run(rsa, d, "localhost", NULL, 0);
        CHECK(!o.ok);
        o = run_ok(ec, d, "localhost", NULL, 0);
        CHECK_EQ_INT(o.key_type, EVP_PKEY_EC);
        tl_session_free(o.session);
        tl_tls_ctx_free(rsa);
        tl_tls_ctx_free(ec);
    }
    tl_tls_ctx_free(dual);
    tl_tls_ctx_free(d);
}

/* ---- per-name policy ---------------------------------------------------------------------- */

/* The default takes no client certificates; secure.test requires one from the test CA. */
static tl_tls_ctx *mtls_vhosts(tl_verify mode)
{
    tl_tls_ctx *d = vhosts(0, 0), *sec = server(&vc.secure, 0, 0);
    REQUIRE(tl_tls_ctx_set_ca_pem(sec, tp.ca.cert_pem) == 0);
    REQUIRE(tl_tls_ctx_set_verify(sec, mode) == 0);
    attach(d, "secure.test", sec);
    tl_tls_ctx_free(sec);
    return d;
}

TEST(sni_client_cert_per_name)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = mtls_vhosts(TL_VERIFY_REQUIRE);
        tl_tls_ctx *plain = tp_client_ctx(version, version), *with = client_with_cert();
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        /* Without a certificate: fine on the default and on a.test, refused on secure.test. */
        outcome o = run_ok(plain, d, "localhost", NULL, 0);
        CHECK(!o.client_cert);
        tl_session_free(o.session);
        o = run_ok(plain, d, "a.test", NULL, 0);
        CHECK(!o.client_cert);
        tl_session_free(o.session);
        o = run(plain, d, "secure.test", NULL, 0);
        CHECK(!o.ok);
        CHECK(o.serr[0] != '\0');
        /* With one: secure.test asks for it, names its CA, and verifies it; a.test does not ask. */
        o = run_ok(with, d, "secure.test", NULL, 0);
        CHECK(o.client_cert);
        CHECK_EQ_INT(o.peer_ca_names, 1);
        CHECK_STR(o.subject, "CN=secure.test");
        tl_session_free(o.session);
        o = run_ok(with, d, "a.test", NULL, 0);
        CHECK(!o.client_cert);
        CHECK_EQ_INT(o.peer_ca_names, 0);
        tl_session_free(o.session);
        tl_tls_ctx_free(plain);
        tl_tls_ctx_free(with);
        tl_tls_ctx_free(d);
    }
    /* Optional on a name: asked for, not required. */
    tl_tls_ctx *d = mtls_vhosts(TL_VERIFY_OPTIONAL), *plain = tp_client_ctx(0, 0);
    tl_tls_ctx *with = client_with_cert();
    outcome o = run_ok(plain, d, "secure.test", NULL, 0);
    CHECK(!o.client_cert);
    tl_session_free(o.session);
    o = run_ok(with, d, "secure.test", NULL, 0);
    CHECK(o.client_cert);
    tl_session_free(o.session);
    tl_tls_ctx_free(plain);
    tl_tls_ctx_free(with);
    tl_tls_ctx_free(d);
}

/* Versions, ciphers, groups and ALPN are the named configuration's, not the default's. */
TEST(sni_policy_per_name)
{
    tl_tls_ctx *d = server(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    REQUIRE(tl_tls_ctx_set_alpn(d, "http/1.1") == 0);
    tl_tls_ctx *v13 = server(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3);
    REQUIRE(tl_tls_ctx_set_alpn(v13, "h2,http/1.1") == 0);
    REQUIRE(tl_tls_ctx_set_ciphers(v13, NULL, "TLS_AES_256_GCM_SHA384") == 0);
    REQUIRE(tl_tls_ctx_set_groups(v13, "P-384") == 0);
    REQUIRE(tl_tls_ctx_set_num_tickets(v13, 0) == 0);
    tl_tls_ctx *chacha = server(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2); /* and no ALPN */
    REQUIRE(tl_tls_ctx_set_ciphers(chacha, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL) == 0);
    attach(d, "v13.test", v13);
    attach(d, "chacha.test", chacha);
    tl_tls_ctx *c = loose_client(0, 0);
    REQUIRE(tl_tls_ctx_set_alpn(c, "h2,http/1.1") == 0);

    outcome o = run_ok(c, d, "localhost", NULL, 0);
    CHECK_STR(o.version, "TLSv1.2");
    CHECK_STR(o.alpn, "http/1.1");
    CHECK_STR(o.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    CHECK_EQ_INT(ring_stat(d, 0), 1); /* one TLS 1.2 ticket */
    tl_session_free(o.session);
    o = run_ok(c, d, "v13.test", NULL, 0); /* also a HelloRetryRequest: the client guessed X25519 */
    CHECK_EQ_INT(ring_stat(d, 0), 1); /* v13.test sends no tickets */
    CHECK_STR(o.version, "TLSv1.3");
    CHECK_STR(o.alpn, "h2");
    CHECK_STR(o.cipher, "TLS_AES_256_GCM_SHA384");
    CHECK_HAS(o.group, "384");
    tl_session_free(o.session);
    o = run_ok(c, d, "chacha.test", NULL, 0);
    CHECK_STR(o.version, "TLSv1.2");
    CHECK_STR(o.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
    CHECK_STR(o.alpn, ""); /* nothing inherited from the default */
    tl_session_free(o.session);
    /* A client that offers only TLS 1.2 cannot reach the TLS 1.3-only name. */
    tl_tls_ctx *c12 = loose_client(TL_TLS1_2, TL_TLS1_2);
    o = run(c12, d, "v13.test", NULL, 0);
    CHECK(!o.ok);
    tl_tls_ctx_free(c12);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(v13);
    tl_tls_ctx_free(chacha);
    tl_tls_ctx_free(d);
}

/* ---- sessions ----------------------------------------------------------------------------- */

/* version; tickets: on, or off (TLS 1.2 session IDs / TLS 1.3 stateful, from the default's
 * cache) on the named configuration. */
static void resume_named(int version, bool tickets)
{
    tl_tls_ctx *d = server(&tp.ecdsa, version, version), *a = server(&vc.a, version, version);
    if (!tickets)
        REQUIRE(tl_tls_ctx_set_tickets(a, false) == 0);
    attach(d, "a.test", a);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    outcome o = run_ok(c, d, "a.test", NULL, 0);
    REQUIRE(o.session);
    CHECK(!o.resumed);
    for (int i = 0; i < 3; i++) {
        outcome next = run_ok(c, d, "a.test", o.session, 0);
        CHECK(next.resumed);
        CHECK_STR(next.subject, "CN=a.test");
        tl_session_free(o.session);
        o = next;
        REQUIRE(o.session);
    }
    tl_session_free(o.session);
    /* Tickets come from the default's ring; the named configuration's own is never used. */
    CHECK_EQ_INT(ring_stat(a, 0), 0);
    if (tickets) {
        CHECK(ring_stat(d, 0) >= 1); /* TLS 1.3 renews every ticket, TLS 1.2 keeps the first */
        CHECK_EQ_INT(ring_stat(d, 1), 3);
    } else {
        CHECK_EQ_INT(ring_stat(d, 0), 0);
    }
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(resume_named_tls13) { resume_named(TL_TLS1_3, true); }
TEST(resume_named_tls12) { resume_named(TL_TLS1_2, true); }
TEST(resume_named_tls12_session_id) { resume_named(TL_TLS1_2, false); }
TEST(resume_named_tls13_stateful) { resume_named(TL_TLS1_3, false); }

/* A session from one name, offered with another name's SNI, gets a full handshake there. */
static void isolation(int version, bool tickets)
{
    tl_tls_ctx *d = vhosts(version, version), *c = tp_client_ctx(0, 0);
    if (!tickets)
        REQUIRE(tl_tls_ctx_set_tickets(d, false) == 0); /* the cache is the default's anyway */
    /* The session cache is shared, so B's configuration must not take tickets either. */
    tl_tls_ctx *b = tl_tls_ctx_select(d, "b.test"), *a = tl_tls_ctx_select(d, "a.test");
    if (!tickets) {
        REQUIRE(tl_tls_ctx_set_tickets(a, false) == 0);
        REQUIRE(tl_tls_ctx_set_tickets(b, false) == 0);
    }
    outcome from_a = run_ok(c, d, "a.test", NULL, 0);
    outcome from_dflt = run_ok(c, d, "localhost", NULL, 0);
    REQUIRE(from_a.session && from_dflt.session);
    outcome o = run_ok(c, d, "b.test", from_a.session, 0);
    CHECK(!o.resumed);
    CHECK_STR(o.subject, "CN=b.test");
    tl_session_free(o.session);
    o = run_ok(c, d, "localhost", from_a.session, 0); /* named to default */
    CHECK(!o.resumed);
    tl_session_free(o.session);
    o = run_ok(c, d, "a.test", from_dflt.session, 0); /* default to named */
    CHECK(!o.resumed);
    CHECK_STR(o.subject, "CN=a.test");
    tl_session_free(o.session);
    o = run_ok(c, d, "a.test", from_a.session, 0); /* and on its own name it resumes */
    CHECK(o.resumed);
    tl_session_free(o.session);
    tl_session_free(from_a.session);
    tl_session_free(from_dflt.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(isolation_tls13) { isolation(TL_TLS1_3, true); }
TEST(isolation_tls12) { isolation(TL_TLS1_2, true); }
TEST(isolation_tls12_session_id) { isolation(TL_TLS1_2, false); }

/* Pitfall 32: a session from a name without client certificates, offered to a name that requires
 * one, must give a full handshake that demands the certificate. */
TEST(resume_into_mtls_name)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = mtls_vhosts(TL_VERIFY_REQUIRE);
        tl_tls_ctx *with = client_with_cert(), *plain = tp_client_ctx(version, version);
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        outcome a = run_ok(with, d, "a.test", NULL, 0);
        REQUIRE(a.session);
        CHECK(!a.client_cert);
        outcome o = run_ok(with, d, "secure.test", a.session, 0);
        CHECK(!o.resumed);
        CHECK(o.client_cert);
        tl_session_free(o.session);
        outcome pa = run_ok(plain, d, "a.test", NULL, 0);
        REQUIRE(pa.session);
        o = run(plain, d, "secure.test", pa.session, 0);
        CHECK(!o.ok); /* no certificate, no way in, not even with a session */
        tl_session_free(pa.session);
        tl_session_free(a.session);
        tl_tls_ctx_free(with);
        tl_tls_ctx_free(plain);
        tl_tls_ctx_free(d);
    }
}

/* Two generations (a reload): new default and named configurations sharing the ticket ring. A
 * name's derived session ID context is the same in both, so its sessions survive the reload. */
TEST(resume_across_generations)
{
    tl_ticket_ring *ring = tl_ticket_ring_new(2);
    REQUIRE(ring);
    tl_tls_ctx *gen[2], *c = tp_client_ctx(0, 0);
    for (int g = 0; g < 2; g++) {
        gen[g] = vhosts(0, 0);
        REQUIRE(tl_tls_ctx_set_ticket_ring(gen[g], ring) == 0);
    }
    outcome o = run_ok(c, gen[0], "a.test", NULL, 0);
    REQUIRE(o.session);
    outcome r = run_ok(c, gen[1], "a.test", o.session, 0);
    CHECK(r.resumed);
    tl_session_free(r.session);
    r = run_ok(c, gen[1], "b.test", o.session, 0);
    CHECK(!r.resumed);
    tl_session_free(r.session);
    tl_session_free(o.session);
    tl_tls_ctx_free(gen[0]);
    tl_tls_ctx_free(gen[1]);
    tl_tls_ctx_free(c);
    tl_ticket_ring_free(ring);
}

/* A session ID context the user set is kept: two names sharing one resume each other's sessions. */
TEST(user_session_id_context_kept)
{
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *a = server(&vc.a, 0, 0), *b = server(&vc.b, 0, 0);
    REQUIRE(tl_tls_ctx_set_session_id_context(a, "shared", 6) == 0);
    REQUIRE(tl_tls_ctx_set_session_id_context(b, "shared", 6) == 0);
    attach(d, "a.test", a);
    attach(d, "b.test", b);
    tl_tls_ctx *c = loose_client(0, 0);
    outcome o = run_ok(c, d, "a.test", NULL, 0);
    REQUIRE(o.session);
    outcome r = run_ok(c, d, "b.test", o.session, 0);
    CHECK(r.resumed);
    tl_session_free(r.session);
    tl_session_free(o.session);
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

/* ---- delegated tasks ---------------------------------------------------------------------- */

TEST(sni_with_delegated_tasks)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = mtls_vhosts(TL_VERIFY_REQUIRE), *c = tp_client_ctx(version, version);
        tl_tls_ctx *with = client_with_cert();
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        outcome o = run_ok(c, d, "a.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=a.test");
        CHECK(o.tasks >= 1);
        REQUIRE(o.session);
        outcome r = run_ok(c, d, "a.test", o.session, TL_ENGINE_DELEGATE_TASKS);
        CHECK(r.resumed);
        CHECK(r.tasks >= 1);
        tl_session_free(r.session);
        tl_session_free(o.session);
        o = run_ok(c, d, "x.wild.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=*.wild.test");
        tl_session_free(o.session);
        o = run_ok(c, d, "127.0.0.1", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK_STR(o.subject, "CN=localhost");
        tl_session_free(o.session);
        /* The named policy holds across the pause: secure.test still demands a certificate. */
        o = run(c, d, "secure.test", NULL, TL_ENGINE_DELEGATE_TASKS);
        CHECK(!o.ok);
        o = run_ok(with, d, "secure.test", NULL, TL_ENGINE_DELEGATE_TASKS);
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
    tl_tls_ctx *c = loose_client(0, 0);
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
        tl_tls_ctx *d = vhosts(0, 0);
        CHECK_EQ_INT(mangled_hello(d, mangles[i], err, sizeof err), SSL_AD_DECODE_ERROR);
        CHECK_HAS(err, "bad extension");
        tl_tls_ctx_free(d);
        /* A configuration without names lets OpenSSL parse it: the same alert. */
        tl_tls_ctx *plain = server(&tp.ecdsa, 0, 0);
        CHECK_EQ_INT(mangled_hello(plain, mangles[i], err, sizeof err), SSL_AD_DECODE_ERROR);
        tl_tls_ctx_free(plain);
    }
}

/* ---- configuration ------------------------------------------------------------------------ */

TEST(add_name_refusals)
{
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *a = server(&vc.a, 0, 0), *b = server(&vc.b, 0, 0);
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
    tl_tls_ctx *top = server(&tp.ecdsa, 0, 0);
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
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *a = server(&vc.a, 0, 0), *b = server(&vc.b, 0, 0);
    CHECK_OK(a, tl_tls_ctx_freeze(a));
    CHECK_FAIL(d, tl_tls_ctx_add_name(d, "a.test", a), TL_ERR_USAGE, "session ID context");
    REQUIRE(tl_tls_ctx_set_session_id_context(b, "bee", 3) == 0);
    CHECK_OK(b, tl_tls_ctx_freeze(b));
    CHECK_OK(d, tl_tls_ctx_add_name(d, "b.test", b));
    /* A second default (another listener) may share a named configuration already in use. */
    tl_tls_ctx *a2 = server(&vc.a, 0, 0), *d2 = server(&tp.ecdsa, 0, 0);
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
    tl_tls_ctx *d = server(&tp.ecdsa, 0, 0), *a = server(NULL, 0, 0), *w = server(&vc.wild, 0, 0);
    attach(d, "*.wild.test", w);
    attach(d, "a.test", a);
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
    CHECK_OK(a, tl_tls_ctx_use_cert_pem(a, vc.a.cert_pem, vc.a.key_pem));
    CHECK_OK(d, tl_tls_ctx_freeze(d));
    CHECK_FAIL(a, tl_tls_ctx_set_alpn(a, "h2"), TL_ERR_USAGE, "in use");
    CHECK_FAIL(w, tl_tls_ctx_set_alpn(w, "h2"), TL_ERR_USAGE, "in use");
    /* An engine freezes them too. */
    tl_tls_ctx *d2 = server(&tp.ecdsa, 0, 0), *b = server(&vc.b, 0, 0);
    attach(d2, "b.test", b);
    e = tl_engine_new(d2, NULL);
    CHECK_FAIL(b, tl_tls_ctx_set_alpn(b, "h2"), TL_ERR_USAGE, "in use");
    tl_engine_free(e);
    /* Names with an incomplete mTLS policy: the CA is missing. */
    tl_tls_ctx *d3 = server(&tp.ecdsa, 0, 0), *sec = server(&vc.secure, 0, 0);
    REQUIRE(tl_tls_ctx_set_verify(sec, TL_VERIFY_REQUIRE) == 0);
    attach(d3, "secure.test", sec);
    CHECK_FAIL(d3, tl_tls_ctx_freeze(d3), TL_ERR_CONFIG, "name 'secure.test'");
    CHECK_HAS(tl_tls_ctx_error(d3), "no CA");
    tl_tls_ctx *all[] = {d, a, w, d2, b, d3, sec};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tl_tls_ctx_free(all[i]);
}

/* The default holds its named configurations: the caller's references may go first. */
TEST(named_lifetime)
{
    tl_tls_ctx *d = vhosts(0, 0), *c = tp_client_ctx(0, 0);
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
    must_issue(TL_KEY_ECDSA_P256, "e.test", 10 * 86400, &ec10);
    must_issue(TL_KEY_ECDSA_P256, "e.test", 3 * 86400, &ec3);
    must_issue(TL_KEY_RSA_2048, "e.test", 5 * 86400, &rsa5);
    must_issue(TL_KEY_ECDSA_P256, "n.test", 2 * 86400, &named2);
    must_issue(TL_KEY_ECDSA_P256, "old.test", -86400, &expired);

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
    tl_tls_ctx *n = server(&named2, 0, 0);
    attach(s, "n.test", n);
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 2 * 86400));
    CHECK_OK(n, tl_tls_ctx_cert_expiry(n, &t));
    CHECK(near(t, now + 2 * 86400));
    CHECK_OK(s, tl_tls_ctx_freeze(s)); /* and on a frozen configuration */
    CHECK_OK(s, tl_tls_ctx_cert_expiry(s, &t));
    CHECK(near(t, now + 2 * 86400));
    /* A default without a certificate of its own still reports its names'. */
    tl_tls_ctx *bare = tl_tls_ctx_new(TL_ROLE_SERVER);
    attach(bare, "n.test", n);
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

/* ---- ticket key files --------------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tlsloop-sni-XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", tmpdir);
}

/* Write a file in the test directory with this mode; returns its path (static per slot). */
static const char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    static char paths[8][128];
    static int slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 128, "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(len == 0 || write(fd, data, len) == (ssize_t)len);
    REQUIRE(fchmod(fd, mode) == 0);
    close(fd);
    return path;
}

/* A server for a.test-less tests (the default, tp.ecdsa) using the ring of this key file. */
static tl_tls_ctx *server_with_key_file(const char *path, int version)
{
    char err[256];
    tl_ticket_ring *ring = tl_ticket_ring_load_file(path, err, sizeof err);
    if (!ring) {
        fprintf(stderr, "  %s\n", err);
        _exit(1);
    }
    tl_tls_ctx *s = server(&tp.ecdsa, version, version);
    REQUIRE(tl_tls_ctx_set_ticket_ring(s, ring) == 0);
    tl_ticket_ring_free(ring);
    return s;
}

TEST(ticket_file_shared_by_two_servers)
{
    make_tmpdir();
    uint8_t keys[3 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(keys, sizeof keys) == 1);
    const char *path = write_file("three.key", keys, sizeof keys, 0600);
    char err[256] = "unchanged";
    tl_ticket_ring *ring = tl_ticket_ring_load_file(path, err, sizeof err);
    REQUIRE(ring);
    CHECK_STR(err, "unchanged"); /* no message on success */
    CHECK_EQ_INT(tl_ticket_ring_count(ring), 3);
    uint8_t name[16];
    tl_ticket_ring_current_name(ring, name);
    CHECK(memcmp(name, keys, 16) == 0); /* the first key encrypts */
    tl_ticket_ring_free(ring);

    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s1 = server_with_key_file(path, version);
        tl_tls_ctx *s2 = server_with_key_file(path, version), *c = tp_client_ctx(0, 0);
        CHECK(tl_tls_ctx_ticket_ring(s1) != tl_tls_ctx_ticket_ring(s2));
        outcome o = run_ok(c, s1, "localhost", NULL, 0);
        REQUIRE(o.session);
        outcome r = run_ok(c, s2, "localhost", o.session, 0);
        CHECK(r.resumed);
        CHECK_EQ_INT(ring_stat(s2, 1), 1); /* opened with the current key */
        /* And back: s2's ticket resumes on s1. */
        REQUIRE(r.session);
        outcome back = run_ok(c, s1, "localhost", r.session, 0);
        CHECK(back.resumed);
        tl_session_free(back.session);
        tl_session_free(r.session);
        tl_session_free(o.session);
        tl_tls_ctx_free(c);
        tl_tls_ctx_free(s1);
        tl_tls_ctx_free(s2);
    }
    remove_tmpdir();
}

/* Rotation by files: [old], then [new, old], then [new]. A ticket under the old key opens with
 * the second file and is renewed under the new key, which the third file alone still opens. */
TEST(ticket_file_rotation)
{
    make_tmpdir();
    uint8_t old_key[TL_TICKET_KEY_LEN], both[2 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(both, sizeof both) == 1);
    memcpy(old_key, both + TL_TICKET_KEY_LEN, TL_TICKET_KEY_LEN);
    const char *f_old = write_file("old.key", old_key, sizeof old_key, 0600);
    const char *f_both = write_file("both.key", both, sizeof both, 0600);
    const char *f_new = write_file("new.key", both, TL_TICKET_KEY_LEN, 0400);
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s1 = server_with_key_file(f_old, version);
        tl_tls_ctx *s2 = server_with_key_file(f_both, version);
        tl_tls_ctx *s3 = server_with_key_file(f_new, version), *c = tp_client_ctx(0, 0);
        uint8_t name[16];
        tl_ticket_ring_current_name(tl_tls_ctx_ticket_ring(s2), name);
        CHECK(memcmp(name, both, 16) == 0);
        outcome o = run_ok(c, s1, "localhost", NULL, 0);
        REQUIRE(o.session);
        outcome r = run_ok(c, s2, "localhost", o.session, 0);
        CHECK(r.resumed);
        CHECK_EQ_INT(ring_stat(s2, 2), 1); /* opened with an older key */
        CHECK(ring_stat(s2, 0) >= 1);      /* and renewed */
        REQUIRE(r.session);
        outcome n = run_ok(c, s3, "localhost", r.session, 0);
        CHECK(n.resumed);
        CHECK_EQ_INT(ring_stat(s3, 1), 1);
        outcome gone = run_ok(c, s3, "localhost", o.session, 0); /* the old key is gone */
        CHECK(!gone.resumed);
        CHECK_EQ_INT(ring_stat(s3, 3), 1);
        outcome *all[] = {&o, &r, &n, &gone};
        for (int i = 0; i < 4; i++)
            tl_session_free(all[i]->session);
        tl_tls_ctx_free(s1);
        tl_tls_ctx_free(s2);
        tl_tls_ctx_free(s3);
        tl_tls_ctx_free(c);
    }
    remove_tmpdir();
}

/* load_file must fail with a message naming the path and containing `sub`. */
static void check_refused(const char *path, const char *sub)
{
    char err[512] = "";
    tl_ticket_ring *r = tl_ticket_ring_load_file(path, err, sizeof err);
    CHECK(r == NULL);
    tl_ticket_ring_free(r);
    CHECK_HAS(err, path);
    CHECK_HAS(err, sub);
}

TEST(ticket_file_refusals)
{
    make_tmpdir();
    uint8_t keys[65 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(keys, sizeof keys) == 1);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.key", tmpdir);
    check_refused(missing, "cannot open");
    check_refused(missing, "No such file");
    check_refused(tmpdir, "not a regular file");
    check_refused(write_file("empty.key", keys, 0, 0600), "empty");
    check_refused(write_file("empty.key", keys, 0, 0600), "openssl rand 80");
    check_refused(write_file("short.key", keys, 79, 0600), "79 bytes is not a whole number");
    check_refused(write_file("long.key", keys, 161, 0600), "161 bytes");
    check_refused(write_file("many.key", keys, sizeof keys, 0600), "65 ticket keys, at most 64");
    const char *max = write_file("max.key", keys, 64 * TL_TICKET_KEY_LEN, 0600);
    tl_ticket_ring *r = tl_ticket_ring_load_file(max, NULL, 0);
    CHECK(r && tl_ticket_ring_count(r) == 64);
    tl_ticket_ring_free(r);
    /* Two keys with one name (keys 1 and 3 of 3). */
    memcpy(keys + 2 * TL_TICKET_KEY_LEN, keys, 16);
    check_refused(write_file("dup.key", keys, 3 * TL_TICKET_KEY_LEN, 0600), "keys 1 and 3");
    /* Open to anyone but the owner (group bits too): refused, with the fix. */
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0644), "chmod 600");
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0604), "mode 604");
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0602), "open to other users");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0640), "open to its group");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0620), "chmod 600");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0610), "mode 610");
    r = tl_ticket_ring_load_file(write_file("own.key", keys, TL_TICKET_KEY_LEN, 0400), NULL, 0);
    CHECK(r != NULL);
    tl_ticket_ring_free(r);
    /* Another user's file: refused, with the fix (only root can make one here). */
    if (geteuid() == 0) {
        const char *theirs = write_file("theirs.key", keys, TL_TICKET_KEY_LEN, 0600);
        REQUIRE(chown(theirs, 65534, 65534) == 0);
        check_refused(theirs, "belongs to uid 65534");
        check_refused(theirs, "chown 0 ");
    }
    /* Unreadable (root reads anything, so only as another user). */
    if (geteuid() != 0)
        check_refused(write_file("noread.key", keys, TL_TICKET_KEY_LEN, 0200), "Permission denied");
    /* Without a buffer for the message, or without a path. */
    CHECK(tl_ticket_ring_load_file(missing, NULL, 0) == NULL);
    char err[64];
    CHECK(tl_ticket_ring_load_file(NULL, err, sizeof err) == NULL);
    CHECK_HAS(err, "no path");
    /* A message longer than the buffer is cut, still terminated. */
    char tiny[8];
    CHECK(tl_ticket_ring_load_file(missing, tiny, sizeof tiny) == NULL);
    CHECK_EQ_INT(strlen(tiny), 7);
    remove_tmpdir();
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    make_certs();
    RUN(sni_exact_name);
    RUN(sni_default_without_sni_or_match);
    RUN(sni_case_insensitive);
    RUN(sni_wildcard);
    RUN(select_api);
    RUN(sni_rsa_and_ecdsa_per_name);
    RUN(sni_client_cert_per_name);
    RUN(sni_policy_per_name);
    RUN(resume_named_tls13);
    RUN(resume_named_tls12);
    RUN(resume_named_tls12_session_id);
    RUN(resume_named_tls13_stateful);
    RUN(isolation_tls13);
    RUN(isolation_tls12);
    RUN(isolation_tls12_session_id);
    RUN(resume_into_mtls_name);
    RUN(resume_across_generations);
    RUN(user_session_id_context_kept);
    RUN(sni_with_delegated_tasks);
    RUN(sni_malformed_is_decode_error);
    RUN(add_name_refusals);
    RUN(add_name_frozen_named);
    RUN(freeze_covers_names);
    RUN(named_lifetime);
    RUN(cert_expiry);
    RUN(ticket_file_shared_by_two_servers);
    RUN(ticket_file_rotation);
    RUN(ticket_file_refusals);
    TEST_MAIN_END();
}
