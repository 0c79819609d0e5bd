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


/* Every partial path: network chunks and destinations from 1 byte up. */
static void sizes_case(size_t chunk, size_t dst, int version)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, version, version), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    p.c.net_chunk = p.s.net_chunk = chunk;
    p.c.dst_size = p.s.dst_size = dst;
    if (tp_handshake(&p.c, &p.s, 50) != 0) {
        fprintf(stderr, "  chunk %zu dst %zu: handshake failed: %s | %s\n", chunk, dst,
                tl_engine_error(p.c.e), tl_engine_error(p.s.e));
        test_failures_++;
    } else {
        static uint8_t data[40000];
        tp_pattern(data, sizeof data, (unsigned)(chunk * 31 + dst));
        CHECK(tp_send(&p.c, &p.s, data, sizeof data, 50) == 0);
        CHECK(tp_send(&p.s, &p.c, data, sizeof data, 50) == 0);
        CHECK(tl_buf_len(&p.s.app) == sizeof data &&
              memcmp(tl_buf_rptr(&p.s.app), data, sizeof data) == 0);
        CHECK(tl_buf_len(&p.c.app) == sizeof data &&
              memcmp(tl_buf_rptr(&p.c.app), data, sizeof data) == 0);
        CHECK(tl_engine_pending_output(p.c.e) == 0 && tl_engine_pending_output(p.s.e) == 0);
    }
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(buffer_sizes_tiny)
{
    static const size_t sizes[] = {1, 2, 3, 5, 7, 13};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        sizes_case(sizes[i], sizes[i], TL_TLS1_3);
        sizes_case(sizes[i], 1000, TL_TLS1_2);
        sizes_case(1000, sizes[i], TL_TLS1_3);
    }
    /* Soak: every size up to 64 in both directions and versions. */
    for (size_t n = 1; tests_scale() > 1 && n <= 64; n++) {
        sizes_case(n, 65 - n, TL_TLS1_3);
        sizes_case(65 - n, n, TL_TLS1_2);
    }
}

TEST(buffer_sizes_large)
{
    static const size_t sizes[] = {64, 1000, 4096, 16384 + 5, 16384 + 22, 16384 + 300, 20000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        sizes_case(sizes[i], sizes[i], TL_TLS1_3);
        sizes_case(sizes[i], 100, TL_TLS1_2);
    }
}

static void established(tp_pair *p, tl_tls_ctx **sctx, tl_tls_ctx **cctx, int version)
{
    *sctx = tp_server_ctx(&tp.ecdsa, version, version);
    *cctx = tp_client_ctx(0, 0);
    tp_pair_init(p, *cctx, *sctx, NULL, NULL);
    REQUIRE(tp_handshake(&p->c, &p->s, 10) == 0);
}

static void finish(tp_pair *p, tl_tls_ctx *sctx, tl_tls_ctx *cctx)
{
    tp_pair_free(p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Overflow: no room for plaintext is reported only when nothing else can progress; the plaintext
 * waits inside (pending) and comes out with no new input. Underflow: a partial record is taken
 * and kept. */
TEST(overflow_underflow_pending)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    static uint8_t data[16384], got[16384];
    tp_pattern(data, sizeof data, 7);
    uint8_t net[20000];
    tl_result r = tl_engine_wrap(p.s.e, data, sizeof data, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.consumed, sizeof data);
    size_t rec = r.produced;
    CHECK(rec > sizeof data && rec < sizeof data + 64); /* one record */

    /* Underflow: 10 bytes of the record are consumed (kept inside), nothing produced. */
    r = tl_engine_unwrap(p.c.e, net, 10, got, sizeof got);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.consumed, 10);
    CHECK_EQ_INT(r.produced, 0);
    /* No room at all: the rest goes in, but nothing can come out: WANT_OUTPUT. */
    r = tl_engine_unwrap(p.c.e, net + 10, rec - 10, got, 0);
    CHECK_EQ_INT(r.status, TL_WANT_OUTPUT);
    CHECK_EQ_INT(r.consumed, rec - 10);
    CHECK_EQ_INT(tl_engine_pending(p.c.e), sizeof data);
    /* A 100-byte destination: OK (it was filled), the rest stays pending. */
    r = tl_engine_unwrap(p.c.e, NULL, 0, got, 100);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.produced, 100);
    CHECK_EQ_INT(tl_engine_pending(p.c.e), sizeof data - 100);
    /* The rest with no new input. */
    r = tl_engine_unwrap(p.c.e, NULL, 0, got + 100, sizeof got - 100);
    CHECK_EQ_INT(r.produced, sizeof got - 100);
    CHECK(memcmp(got, data, sizeof data) == 0);
    r = tl_engine_unwrap(p.c.e, NULL, 0, got, sizeof got);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.produced, 0);

    /* Wrap overflow: no room, one record is made and kept; nothing more until it is taken. */
    r = tl_engine_wrap(p.s.e, data, sizeof data, net, 0);
    CHECK_EQ_INT(r.status, TL_WANT_OUTPUT);
    CHECK_EQ_INT(r.produced, 0);
    CHECK_EQ_INT(r.consumed, sizeof data);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP);
    size_t pend = tl_engine_pending_output(p.s.e);
    CHECK_EQ_INT(pend, rec);
    r = tl_engine_wrap(p.s.e, data, sizeof data, net, 0);
    CHECK_EQ_INT(r.status, TL_WANT_OUTPUT);
    CHECK_EQ_INT(r.consumed, 0); /* bounded: no second record while one is pending */
    r = tl_engine_wrap(p.s.e, NULL, 0, net, 5);
    CHECK_EQ_INT(r.status, TL_WANT_OUTPUT);
    CHECK_EQ_INT(r.produced, 5);
    r = tl_engine_wrap(p.s.e, NULL, 0, net + 5, sizeof net - 5);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.produced, rec - 5);
    r = tl_engine_unwrap(p.c.e, net, rec, got, sizeof got);
    CHECK_EQ_INT(r.produced, sizeof data);
    CHECK(memcmp(got, data, sizeof data) == 0);
    finish(&p, sctx, cctx);
}

/* Ten records in one burst and a tiny reader: everything arrives without new input (pitfall 1). */
TEST(coalesced_records_small_reads)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    static uint8_t data[10 * 1000];
    tp_pattern(data, sizeof data, 3);
    tl_buf burst = TL_BUF_INIT;
    uint8_t net[2000];
    for (int i = 0; i < 10; i++) {
        tl_result r = tl_engine_wrap(p.s.e, data + i * 1000, 1000, net, sizeof net);
        REQUIRE(r.consumed == 1000);
        tl_buf_append(&burst, net, r.produced);
    }
    uint8_t got[sizeof data];
    size_t have = 0;
    tl_result r = tl_engine_unwrap(p.c.e, tl_buf_rptr(&burst), tl_buf_len(&burst), got, 100);
    size_t consumed = r.consumed;
    have += r.produced;
    int calls = 1;
    while (r.status == TL_OK && calls < 1000) {
        r = tl_engine_unwrap(p.c.e, tl_buf_rptr(&burst) + consumed, tl_buf_len(&burst) - consumed,
                             got + have, sizeof got - have < 100 ? sizeof got - have : 100);
        consumed += r.consumed;
        have += r.produced;
        calls++;
    }
    CHECK_EQ_INT(have, sizeof data);
    CHECK(memcmp(got, data, sizeof data) == 0);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK(calls <= 101 + 10);
    tl_buf_free(&burst);
    finish(&p, sctx, cctx);
}

/* Clean close both ways: close_notify is reported as TL_CLOSED, after all data. */
TEST(clean_close)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    CHECK(tp_send(&p.s, &p.c, "last words", 10, 10) == 0);
    tl_result r = tl_engine_close(p.s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP);
    CHECK(tl_engine_close_sent(p.s.e));
    CHECK(tp_wrap_to(&p.s, &p.c, NULL, 0, NULL) == TL_OK);
    CHECK_EQ_INT(tp_unwrap(&p.c), TL_CLOSED);
    CHECK(tl_engine_close_received(p.c.e));
    CHECK(tl_buf_len(&p.c.app) == 10 && memcmp(tl_buf_rptr(&p.c.app), "last words", 10) == 0);
    /* Data after close: refused on the closed side. */
    uint8_t net[100];
    r = tl_engine_wrap(p.s.e, "more", 4, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    CHECK_EQ_INT(r.consumed, 0);
    /* The client answers; the server sees TL_CLOSED. */
    tl_engine_close(p.c.e);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    CHECK_EQ_INT(tp_unwrap(&p.s), TL_CLOSED);
    CHECK(tl_engine_close_received(p.s.e));
    CHECK_STR(tl_engine_error(p.s.e), "");
    /* Closing twice is a no-op. */
    r = tl_engine_close(p.s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(tl_engine_pending_output(p.s.e), 0);
    finish(&p, sctx, cctx);
}

/* EOF without close_notify: every byte first, then TL_TRUNCATED (not an error). */
TEST(truncation_after_data)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    static uint8_t data[1024];
    tp_pattern(data, sizeof data, 9);
    tp_wrap_to(&p.c, &p.s, data, sizeof data, NULL);
    tl_engine_set_input_eof(p.s.e);
    CHECK_EQ_INT(tp_unwrap(&p.s), TL_TRUNCATED);
    CHECK(tl_buf_len(&p.s.app) == sizeof data && memcmp(tl_buf_rptr(&p.s.app), data, 1024) == 0);
    CHECK(!tl_engine_close_received(p.s.e));
    CHECK_EQ_INT(tl_engine_error_kind(p.s.e), TL_ERR_NONE);
    CHECK(strstr(tl_engine_error(p.s.e), "without close_notify") != NULL);
    /* It stays truncated. */
    uint8_t buf[10];
    tl_result r = tl_engine_unwrap(p.s.e, NULL, 0, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_TRUNCATED);
    /* The server may still send (the peer may only have shut its write side). */
    r = tl_engine_wrap(p.s.e, "bye", 3, buf, sizeof buf);
    CHECK(r.status == TL_OK || r.status == TL_WANT_OUTPUT);
    finish(&p, sctx, cctx);
}

/* EOF in the middle of a record is truncation too, and the session is not kept. */
TEST(truncation_mid_record)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    uint8_t net[200], buf[200];
    tl_result r = tl_engine_wrap(p.c.e, "0123456789", 10, net, sizeof net);
    REQUIRE(r.produced > 20);
    tl_engine_set_input_eof(p.s.e);
    r = tl_engine_unwrap(p.s.e, net, r.produced - 3, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_TRUNCATED);
    CHECK_EQ_INT(r.produced, 0);
    CHECK(strstr(tl_engine_error(p.s.e), "middle of a TLS record") != NULL);
    finish(&p, sctx, cctx);
}

/* EOF during the handshake. */
TEST(truncation_during_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    tp_unwrap(&p.s);
    tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
    tl_engine_set_input_eof(p.s.e);
    CHECK_EQ_INT(tp_unwrap(&p.s), TL_TRUNCATED);
    CHECK(!tl_engine_handshake_done(p.s.e));
    CHECK(strstr(tl_engine_error(p.s.e), "during the handshake") != NULL);
    /* The client, too, when the server's flight never comes. */
    tl_engine_set_input_eof(p.c.e);
    tl_buf_consume(&p.c.inbox, tl_buf_len(&p.c.inbox));
    CHECK_EQ_INT(tp_unwrap(&p.c), TL_TRUNCATED);
    finish(&p, sctx, cctx);
}

/* TLS 1.3 half-close: after the peer's close_notify we still send; after ours we still read. */
TEST(half_close_tls13)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    CHECK(tp_send(&p.c, &p.s, "request", 7, 10) == 0);
    tl_engine_close(p.c.e); /* the client is done sending */
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    CHECK_EQ_INT(tp_unwrap(&p.s), TL_CLOSED);
    static uint8_t resp[50000];
    tp_pattern(resp, sizeof resp, 4);
    CHECK(tp_send(&p.s, &p.c, resp, sizeof resp, 50) == 0); /* the answer still flows */
    CHECK(tl_buf_len(&p.c.app) == sizeof resp &&
          memcmp(tl_buf_rptr(&p.c.app), resp, sizeof resp) == 0);
    tl_engine_close(p.s.e);
    tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
    CHECK_EQ_INT(tp_unwrap(&p.c), TL_CLOSED);
    CHECK_STR(tl_engine_error(p.c.e), "");
    finish(&p, sctx, cctx);
}

/* TLS 1.2 has no half-close: after the peer's close_notify, wrap refuses data. */
TEST(half_close_refused_tls12)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_2);
    tl_engine_close(p.c.e);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    CHECK_EQ_INT(tp_unwrap(&p.s), TL_CLOSED);
    uint8_t net[100];
    tl_result r = tl_engine_wrap(p.s.e, "late", 4, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    CHECK_EQ_INT(r.consumed, 0);
    r = tl_engine_close(p.s.e); /* the answer: our close_notify */
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK(tl_engine_pending_output(p.s.e) > 0);
    finish(&p, sctx, cctx);
}

/* Close before or during the handshake: no close_notify (OpenSSL cannot send one), no error. */
TEST(close_during_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    tp_unwrap(&p.s);
    tl_result r = tl_engine_close(p.s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_STR(tl_engine_error(p.s.e), "");
    r = tl_engine_close(p.c.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(ERR_peek_error(), 0);
    finish(&p, sctx, cctx);
    /* And before anything at all. */
    sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tl_engine *e = tl_engine_new(sctx, NULL);
    r = tl_engine_close(e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(tl_engine_pending_output(e), 0);
    tl_engine_free(e);
    tl_tls_ctx_free(sctx);
}

/* Garbage instead of a ClientHello: a clear error, an alert to send, no crash. */
TEST(garbage_client_hello)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    static const char *inputs[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "\x16\x03\x01\xff\xff\x01\x00",            /* a record header claiming 65535 bytes */
        "\x16\x03\x00\x00\x05\x01\x00\x00\x01\x00", /* SSLv3-style, truncated handshake */
        "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10", /* SSLv2 hello */
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        tl_engine *e = tl_engine_new(sctx, NULL);
        uint8_t buf[100];
        tl_result r = tl_engine_unwrap(e, inputs[i], strlen(inputs[i]) + (i == 3), buf, sizeof buf);
        if (r.status == TL_WANT_INPUT) {
            tl_engine_set_input_eof(e);
            r = tl_engine_unwrap(e, NULL, 0, buf, sizeof buf);
        }
        CHECK(r.status == TL_ERROR || r.status == TL_TRUNCATED);
        CHECK(tl_engine_error(e)[0] != '\0');
        if (i == 0)
            CHECK(strstr(tl_engine_error(e), "plain HTTP to a TLS port") != NULL);
        fprintf(stderr, "  input %zu: %s: %s\n", i, tl_status_name(r.status), tl_engine_error(e));
        /* Calling again does not spin or change the verdict. */
        tl_result r2 = tl_engine_unwrap(e, "x", 1, buf, sizeof buf);
        CHECK_EQ_INT(r2.status, r.status);
        CHECK_EQ_INT(r2.produced, 0);
        tl_engine_free(e);
    }
    tl_tls_ctx_free(sctx);
}

/* A corrupted record fails the connection with a clear message and an alert for the peer. */
TEST(corrupted_record)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    uint8_t net[300], buf[300];
    tl_result r = tl_engine_wrap(p.c.e, "attack at dawn", 14, net, sizeof net);
    net[r.produced - 3] ^= 0x40;
    r = tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(r.produced, 0);
    CHECK_EQ_INT(tl_engine_error_kind(p.s.e), TL_ERR_PROTOCOL);
    CHECK(strstr(tl_engine_error(p.s.e), "bad record mac") != NULL);
    CHECK(strstr(tl_engine_error(p.s.e), "alert sent") != NULL);
    /* The alert is pending: take it, and the client learns why. */
    CHECK(tl_engine_pending_output(p.s.e) > 0);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK(r.produced > 0);
    r = tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_ALERT);
    CHECK(strstr(tl_engine_error(p.c.e), "bad record mac") != NULL);
    finish(&p, sctx, cctx);
}

/* One engine's failure never shows in another on the same thread (pitfall 7). */
TEST(error_isolation)
{
    tp_pair good;
    tl_tls_ctx *sctx, *cctx;
    established(&good, &sctx, &cctx, TL_TLS1_3);
    tl_engine *bad = tl_engine_new(sctx, NULL);
    uint8_t buf[100];
    tl_result r = tl_engine_unwrap(bad, "\x16\x03\x01\x00\x05garbage", 12, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    /* Leave junk on the thread's queue too, as a careless library might. */
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    static uint8_t data[5000];
    tp_pattern(data, sizeof data, 5);
    CHECK(tp_send(&good.c, &good.s, data, sizeof data, 10) == 0);
    CHECK(tp_send(&good.s, &good.c, data, sizeof data, 10) == 0);
    CHECK_STR(tl_engine_error(good.s.e), "");
    CHECK_STR(tl_engine_error(good.c.e), "");
    CHECK(tl_engine_error(bad)[0] != '\0');
    tl_engine_free(bad);
    finish(&good, sctx, cctx);
}

/* A record claiming more than 2^14+256 bytes fails at once instead of waiting for it (pitfall 18). */
TEST(oversized_record_length)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    uint8_t rec[5 + 100] = {0x17, 0x03, 0x03, 0xff, 0xff};
    uint8_t buf[100];
    tl_result r = tl_engine_unwrap(p.s.e, rec, sizeof rec, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    fprintf(stderr, "  %s\n", tl_engine_error(p.s.e));
    finish(&p, sctx, cctx);
}

/* A KeyUpdate asking for ours, received while only unwrapping (pitfall 17a), at every split of the
 * record (17c). OpenSSL answers it right before our next application data (RFC 8446 4.6.3 asks no
 * sooner): the next wrap carries two records, our KeyUpdate and the data, and data keeps flowing
 * both ways under the new keys. */
TEST(key_update_from_read)
{
    for (size_t split = 0; split < 40; split++) {
        tp_pair p;
        tl_tls_ctx *sctx, *cctx;
        established(&p, &sctx, &cctx, TL_TLS1_3);
        uint8_t net[400], buf[100];
        tl_result r = tl_engine_wrap(p.s.e, "pong", 4, net, sizeof net);
        size_t plain_record = r.produced; /* the size of one 4-byte record, for comparison */
        REQUIRE(tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf).produced == 4);

        REQUIRE(SSL_key_update(tl_engine_ssl(p.c.e), SSL_KEY_UPDATE_REQUESTED) == 1);
        r = tl_engine_wrap(p.c.e, "ping", 4, net, sizeof net);
        REQUIRE(r.consumed == 4);
        size_t n = r.produced, at = split < n ? split : n;
        CHECK(n > plain_record); /* the client's own KeyUpdate went first */
        r = tl_engine_unwrap(p.s.e, net, at, buf, sizeof buf);
        size_t got = r.produced;
        r = tl_engine_unwrap(p.s.e, net + at, n - at, buf + got, sizeof buf - got);
        got += r.produced;
        CHECK_EQ_INT(got, 4);
        CHECK(memcmp(buf, "ping", 4) == 0);
        CHECK_EQ_INT(r.status, TL_WANT_INPUT);

        r = tl_engine_wrap(p.s.e, "pong", 4, net, sizeof net);
        CHECK_EQ_INT(r.consumed, 4);
        CHECK(r.produced > plain_record); /* our KeyUpdate, then the data */
        CHECK_EQ_INT(tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf).produced, 4);
        CHECK(memcmp(buf, "pong", 4) == 0);
        CHECK(tp_send(&p.s, &p.c, "again", 5, 10) == 0);
        CHECK(tp_send(&p.c, &p.s, "again", 5, 10) == 0);
        finish(&p, sctx, cctx);
    }
}

/* The engine counts the peer's KeyUpdates (for a rate cap above it): both kinds, several read in
 * one call, and never its own (the answers it sends to the requests). */
TEST(key_updates_counted)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    CHECK_EQ_INT(tl_engine_key_updates_received(p.s.e), 0);
    for (int i = 0; i < 5; i++) {
        REQUIRE(SSL_key_update(tl_engine_ssl(p.c.e), i % 2 ? SSL_KEY_UPDATE_REQUESTED
                                                            : SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
        tp_wrap_to(&p.c, &p.s, "k", 1, NULL); /* five records in the server's inbox */
    }
    tp_unwrap(&p.s);                          /* read in one go */
    CHECK_EQ_INT(tl_buf_len(&p.s.app), 5);
    CHECK_EQ_INT(tl_engine_key_updates_received(p.s.e), 5);
    tl_engine_info info;
    tl_engine_get_info(p.s.e, &info);
    CHECK_EQ_INT(info.key_updates_received, 5);
    CHECK(tp_send(&p.s, &p.c, "answer", 6, 10) == 0); /* carries the server's answers */
    CHECK(tl_engine_key_updates_received(p.c.e) >= 1);
    CHECK_EQ_INT(tl_engine_key_updates_received(p.s.e), 5); /* its own are not counted */
    finish(&p, sctx, cctx);
}

/* Renegotiation is refused (TLS 1.2). */
TEST(renegotiation_refused)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_2);
    int rc = SSL_renegotiate(tl_engine_ssl(p.c.e));
    ERR_clear_error();
    if (rc == 1) {
        tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
        tp_unwrap(&p.s);
        tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
        tp_unwrap(&p.c);
    }
    /* Either our client refused to start it, or the server refused it: no renegotiation. */
    CHECK(SSL_num_renegotiations(tl_engine_ssl(p.s.e)) == 0);
    finish(&p, sctx, cctx);
}

/* Idle engines give their buffers back. */
TEST(release_buffers)
{
    tp_pair p;
    tl_tls_ctx *sctx, *cctx;
    established(&p, &sctx, &cctx, TL_TLS1_3);
    CHECK(tp_send(&p.c, &p.s, "x", 1, 10) == 0);
    CHECK(tl_engine_release_buffers(p.s.e));
    CHECK(tp_send(&p.c, &p.s, "y", 1, 10) == 0); /* and they come back when needed */
    finish(&p, sctx, cctx);
}

/* Wrong calls for the mode are errors, not crashes. */
TEST(mode_misuse)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tl_engine *e = tl_engine_new(sctx, NULL);
    uint8_t buf[10];
    tl_result r = tl_engine_read(e, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(e), TL_ERR_USAGE);
    CHECK(strstr(tl_engine_error(e), "tl_engine_unwrap") != NULL);
    tl_engine_free(e);
    tl_tls_ctx_free(sctx);
    CHECK(tl_engine_new(NULL, NULL) == NULL);
}

/* A verifying client without a server name fails at the first call, with the fix in the text. */
TEST(client_needs_name)
{
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    tl_engine_opts o = {0};
    tl_engine *e = tl_engine_new(cctx, &o);
    uint8_t buf[2000];
    tl_result r = tl_engine_wrap(e, NULL, 0, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(r.produced, 0);
    CHECK_EQ_INT(tl_engine_error_kind(e), TL_ERR_USAGE);
    CHECK(strstr(tl_engine_error(e), "server_name") != NULL);
    tl_engine_free(e);
    tl_tls_ctx_free(cctx);
}

/* The client writes right after its Finished: one buffer holds both, and the server completes its
 * handshake and delivers the data in the same unwrap (pitfall 19's stall). */
TEST(data_right_after_finished)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    uint8_t net[20000], buf[100];
    tl_result r = tl_engine_wrap(p.c.e, "early?", 6, net, sizeof net);
    CHECK_EQ_INT(r.consumed, 0); /* not before the handshake: offered again later */
    r = tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    r = tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf);
    REQUIRE(tl_engine_handshake_done(p.c.e));
    r = tl_engine_wrap(p.c.e, "GET /", 5, net, sizeof net); /* Finished, then the data */
    CHECK_EQ_INT(r.consumed, 5);
    CHECK_EQ_INT(r.hs, TL_HS_FINISHED);
    r = tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
    CHECK(tl_engine_handshake_done(p.s.e));
    CHECK_EQ_INT(r.produced, 5);
    CHECK(memcmp(buf, "GET /", 5) == 0);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_WRAP); /* the tickets wait */
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A close_notify instead of the ServerHello (found by fuzz_engine_client): TL_CLOSED, and it
 * stays TL_CLOSED for every later call. */
TEST(close_notify_during_handshake_is_final)
{
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    tl_engine_opts o = {.server_name = "localhost"};
    tl_engine *c = tl_engine_new(cctx, &o);
    uint8_t net[2000], buf[100];
    tl_result r = tl_engine_wrap(c, NULL, 0, net, sizeof net);
    REQUIRE(r.status == TL_WANT_INPUT);
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00};
    r = tl_engine_unwrap(c, alert, sizeof alert, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    for (int i = 0; i < 3; i++) {
        r = tl_engine_unwrap(c, NULL, 0, buf, sizeof buf);
        CHECK_EQ_INT(r.status, TL_CLOSED);
        CHECK_EQ_INT(r.consumed + r.produced, 0);
        r = tl_engine_wrap(c, "x", 1, net, sizeof net);
        CHECK_EQ_INT(r.status, TL_CLOSED);
        CHECK_EQ_INT(r.consumed + r.produced, 0);
    }
    CHECK(!tl_engine_handshake_done(c));
    tl_engine_free(c);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(handshake_statuses_tls13);
    RUN(tls13_rsa);
    RUN(tls13_ecdsa);
    RUN(tls12_rsa);
    RUN(tls12_ecdsa);
    RUN(buffer_sizes_tiny);
    RUN(buffer_sizes_large);
    RUN(overflow_underflow_pending);
    RUN(coalesced_records_small_reads);
    RUN(clean_close);
    RUN(truncation_after_data);
    RUN(truncation_mid_record);
    RUN(truncation_during_handshake);
    RUN(half_close_tls13);
    RUN(half_close_refused_tls12);
    RUN(close_during_handshake);
    RUN(garbage_client_hello);
    RUN(corrupted_record);
    RUN(error_isolation);
    RUN(oversized_record_length);
    RUN(key_update_from_read);
    RUN(key_updates_counted);
    RUN(renegotiation_refused);
    RUN(release_buffers);
    RUN(mode_misuse);
    RUN(client_needs_name);
    RUN(data_right_after_finished);
    RUN(close_notify_during_handshake_is_final);
    TEST_MAIN_END();
}
