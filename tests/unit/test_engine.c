/*
 * test_engine.c - the engine in buffer mode: handshakes, statuses, data, buffer sizes, close.
 * Two engines talk through memory (tests/support/tls_pair.h); no sockets.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "test.h"
#include "support/tls_pair.h"

/* The status contract, call by call, for a TLS 1.3 handshake. */
TEST(handshake_statuses_tls13)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    uint8_t net[20000], app[100];

    CHECK_EQ_INT(tl_engine_handshake_status(p.c.e), TL_HS_NEED_WRAP);
    CHECK_EQ_INT(tl_engine_handshake_status(p.s.e), TL_HS_NEED_UNWRAP);

    /* Client: ClientHello, then it waits for the server. */
    tl_result r = tl_engine_wrap(p.c.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_UNWRAP);
    CHECK(r.produced > 100);
    size_t ch_len = r.produced;

    /* Server: an empty unwrap asks for input, consuming nothing. */
    r = tl_engine_unwrap(p.s.e, NULL, 0, app, sizeof app);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.consumed, 0);

    /* Server: the ClientHello in, its flight pending (unwrap writes nothing to dst). */
    r = tl_engine_unwrap(p.s.e, net, ch_len, app, sizeof app);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.consumed, ch_len);
    CHECK_EQ_INT(r.produced, 0);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP);
    CHECK(tl_engine_pending_output(p.s.e) > 0);

    /* Server: wrap takes the flight. */
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_UNWRAP);
    CHECK(r.produced > 0);
    CHECK_EQ_INT(tl_engine_pending_output(p.s.e), 0);
    size_t flight = r.produced;

    /* Client: the flight in, done, its Finished pending. */
    r = tl_engine_unwrap(p.c.e, net, flight, app, sizeof app);
    CHECK_EQ_INT(r.consumed, flight);
    CHECK(tl_engine_handshake_done(p.c.e));
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP);
    r = tl_engine_wrap(p.c.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.hs, TL_HS_FINISHED);
    size_t fin = r.produced;
    CHECK(fin > 0);
    /* FINISHED is reported once. */
    r = tl_engine_wrap(p.c.e, NULL, 0, net + fin, sizeof net - fin);
    CHECK_EQ_INT(r.hs, TL_HS_NOT_HANDSHAKING);
    CHECK_EQ_INT(r.produced, 0);

    /* Server: Finished in; done; its tickets pending. */
    r = tl_engine_unwrap(p.s.e, net, fin, app, sizeof app);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK(tl_engine_handshake_done(p.s.e));
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.hs, TL_HS_FINISHED);
    CHECK(r.produced > 0); /* two NewSessionTickets */

    tl_engine_info ci, si;
    tl_engine_get_info(p.c.e, &ci);
    tl_engine_get_info(p.s.e, &si);
    CHECK_STR(ci.version, "TLSv1.3");
    CHECK_STR(si.version, "TLSv1.3");
    CHECK_STR(ci.cipher, si.cipher);
    CHECK_STR(ci.group, "x25519");
    CHECK_STR(si.server_name, "localhost");
    CHECK(!ci.resumed);
    CHECK(ci.has_peer_cert);
    CHECK(strstr(ci.peer_issuer, "tlsloop test CA") != NULL);
    CHECK_EQ_INT(ci.verify_result, 0);
    CHECK(ci.bytes_out > 0 && ci.bytes_in > 0);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Every version and key type: handshake, data both ways, facts. */
static void handshake_and_data(const tl_certgen_pair *leaf, int version, const char *want_version)
{
    tl_tls_ctx *sctx = tp_server_ctx(leaf, version, version), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    REQUIRE(tp_handshake(&p.c, &p.s, 10) == 0);
    CHECK_EQ_INT(p.c.finished_reports, 1);
    CHECK_EQ_INT(p.s.finished_reports, 1);
    static uint8_t up[100000], down[300000];
    tp_pattern(up, sizeof up, 1);
    tp_pattern(down, sizeof down, 2);
    CHECK(tp_send(&p.c, &p.s, up, sizeof up, 100) == 0);
    CHECK(tp_send(&p.s, &p.c, down, sizeof down, 100) == 0);
    CHECK(tl_buf_len(&p.s.app) == sizeof up && memcmp(tl_buf_rptr(&p.s.app), up, sizeof up) == 0);
    CHECK(tl_buf_len(&p.c.app) == sizeof down &&
          memcmp(tl_buf_rptr(&p.c.app), down, sizeof down) == 0);
    tl_engine_info ci;
    tl_engine_get_info(p.c.e, &ci);
    CHECK_STR(ci.version, want_version);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(tls13_rsa) { handshake_and_data(&tp.rsa, TL_TLS1_3, "TLSv1.3"); }
TEST(tls13_ecdsa) { handshake_and_data(&tp.ecdsa, TL_TLS1_3, "TLSv1.3"); }
TEST(tls12_rsa) { handshake_and_data(&tp.rsa, TL_TLS1_2, "TLSv1.2"); }
TEST(tls12_ecdsa) { handshake_and_data(&tp.ecdsa, TL_TLS1_2, "TLSv1.2"); }

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(handshake_statuses_tls13);
    RUN(tls13_rsa);
    RUN(tls13_ecdsa);
    RUN(tls12_rsa);
    RUN(tls12_ecdsa);
    TEST_MAIN_END();
}
