/*
 * test_tls_ctx_kdf_handshakes.c - handshakes between a tlsloop server that opts in to its KDFs and
 * HMAC (TL_KDF_TLSLOOP) and a plain OpenSSL client, whose Finished messages, record MACs and
 * exported keys only agree when both derived the same; and without the opt-in nothing is loaded.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "support/kdf_compare.h"
#include "support/tls_pair.h"
#include "test.h"
#include "tls/tli_tls.h"
#include "util/tli.h"           /* tli_tls_ctx_ssl_ctx */
#include "tls/tls_ctx_int.h"   /* tli_kdf_propq, tli_kdf_hmacs_made */

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
    kc_opt_in();
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
    RUN(handshakes_with_plain_openssl);
    RUN(default_is_openssl);
    TEST_MAIN_END();
}
