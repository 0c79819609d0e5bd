/*
 * test_conn_close.c - how connections end, over loopback sockets: truncation, resets, handshake
 * failures, half-close, close from a callback, writev_close, the lingering close and its deadline,
 * a burst then close, and the owner hooks that hear of each end (harness: support/conn_world.h).
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsloop/conn.h>
#include <tlsloop/loop.h>

#include "conn/conn_int.h"
#include "support/conn_world.h"
#include "support/tls_pair.h"
#include "test.h"

/* ---- close paths ---- */

/* The client goes away without close_notify: the server sees truncation, and says so. */
TEST(eof_without_close_notify)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_write(c, "bye", 3);
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10);
    shutdown(tl_conn_fd(c), SHUT_WR); /* a FIN, no close_notify */
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.eof_how, TL_END_TRUNCATED);
    CHECK_EQ_INT(w->s.end_how, TL_END_TRUNCATED);
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 3);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A reset in the middle of the stream. */
TEST(reset_mid_stream)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    struct linger lg = {1, 0};
    setsockopt(tl_conn_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    static uint8_t big[1 << 20];
    tl_conn_write(w->s.conn, big, sizeof big); /* the server is mid-send */
    tl_conn_abort(c);                          /* RST */
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_RESET);
    CHECK(strstr(w->s.error, "reset") != NULL || strstr(w->s.error, "Broken pipe") != NULL);
    fprintf(stderr, "  server: %s\n", w->s.error);
    CHECK_EQ_INT(w->c.end_how, TL_END_LOCAL);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A reset in the middle of the handshake (a raw socket sends half a ClientHello). */
TEST(reset_mid_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    cw_world *w = cw_new(sctx, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(write(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) == 11);
    CHECK(cw_run_until(w, cw_server_accepted, 5000));
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10); /* the server reads the half ClientHello */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_RESET);
    CHECK_EQ_INT(w->s.handshakes_failed, 1);
    cw_free(w);
    tl_tls_ctx_free(sctx);
}

/* Verification fails: both sides learn why. */
TEST(handshake_failure_reasons)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(tl_tls_ctx_set_ca_pem(cctx, tp.other_ca.cert_pem) == 0);
    cw_world *w = cw_new(sctx, cctx);
    REQUIRE(cw_connect(w));
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(w->c.handshakes_failed, 1);
    CHECK_EQ_INT(w->c.end_how, TL_END_TLS_ERROR);
    CHECK(strstr(w->c.error, "certificate verify failed") != NULL);
    CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
    CHECK(strstr(w->s.error, "alert") != NULL);
    fprintf(stderr, "  client: %s\n  server: %s\n", w->c.error, w->s.error);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Reading paused (a pending read cancelled), then a clean close: no error on either side. */
TEST(cancel_read_then_close)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_pause_read(c);
    static uint8_t data[200000];
    tl_conn_write(w->s.conn, data, sizeof data); /* in flight towards a client not reading */
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10);
    tl_conn_close(c);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
    CHECK_STR(w->c.error, "");
    CHECK_STR(w->s.error, "");
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* TLS 1.3 half-close: the client sends its request and close_notify, the server still answers. */
static void answer_on_eof(tl_conn *c, tl_conn_end how)
{
    cw_cb_eof(c, how);
    static uint8_t resp[100000];
    tp_pattern(resp, sizeof resp, 9);
    tl_conn_write(c, resp, sizeof resp);
    tl_conn_close(c);
}

TEST(half_close_tls13)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.half_close = true;
    w->copts.half_close = true;
    w->scbs.on_eof = answer_on_eof;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_write(c, "GET", 3);
    tl_conn_shutdown_write(c);
    CHECK(tl_conn_write(c, "more", 4) == -1); /* our side is closed */
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 3);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), 100000);
    CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Close from inside the read callback, after writing the answer: the answer arrives in full. */
static void answer_and_close(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    static uint8_t resp[300000];
    tp_pattern(resp, sizeof resp, 1);
    tl_conn_write(c, resp, sizeof resp);
    tl_conn_close(c);
    tl_conn_close(c); /* twice is harmless */
}

TEST(close_inside_read_callback)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        w->on_server_read = answer_and_close;
        tl_conn *c = cw_connect(w);
        REQUIRE(c);
        tl_conn_write(c, "request", 7);
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_EQ_INT(tl_buf_len(&w->c.got), 300000);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* tl_conn_writev_close from the read callback: a small answer (data and close_notify in one
 * send) and one bigger than a socket takes at once (the rest and close_notify follow as with
 * write then close). Over TCP it is write then close. The client gets all, then a clean end. */
static size_t wvc_size;
static void answer_with_writev_close(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    static uint8_t resp[600000];
    tp_pattern(resp, wvc_size, 4);
    struct iovec iov[2] = {{resp, 5}, {resp + 5, wvc_size - 5}};
    CHECK_EQ_INT(tl_conn_writev_close(c, iov, 2), 0);
    CHECK_EQ_INT(tl_conn_write(c, "late", 4), -1);   /* our side is closed */
    tl_conn_close(c);                                /* harmless */
}

TEST(writev_close_small_and_large)
{
    size_t sizes[] = {20, 200000, 600000};   /* one send; more than the socket takes; over budget */
    for (int tls = 0; tls < 2; tls++)
        for (int k = 0; k < 3; k++) {
            wvc_size = sizes[k];
            tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
            tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
            cw_world *w = cw_new(sctx, cctx);
            w->on_server_read = answer_with_writev_close;
            tl_conn *c = cw_connect(w);
            REQUIRE(c);
            tl_conn_write(c, "request", 7);
            CHECK(cw_run_until(w, cw_both_closed, 5000));
            CHECK_EQ_INT(tl_buf_len(&w->c.got), wvc_size);
            uint8_t *want = malloc(wvc_size);
            tp_pattern(want, wvc_size, 4);
            CHECK(tl_buf_len(&w->c.got) == wvc_size &&
                  memcmp(tl_buf_rptr(&w->c.got), want, wvc_size) == 0);
            free(want);
            CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
            CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
            CHECK_STR(w->s.error, "");
            cw_free(w);
            tl_tls_ctx_free(sctx);
            tl_tls_ctx_free(cctx);
        }
}

/* A client writes and closes before it is connected (and, over TLS, before its handshake is
 * over): the data arrives once the connection is up, then a clean close (it used to be dropped
 * with an abort). */
static void close_before_up_case(bool tls)
{
    tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
    tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
    cw_world *w = cw_new(sctx, cctx);
    REQUIRE(w);
    tl_conn *c = cw_connect(w);
    REQUIRE(c);
    CHECK_EQ_INT(tl_conn_write(c, "written before the handshake", 28), 0);
    tl_conn_close(c);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 28);
    CHECK(tl_buf_len(&w->s.got) == 28 &&
          memcmp(tl_buf_rptr(&w->s.got), "written before the handshake", 28) == 0);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(close_before_up_delivers_written_data)
{
    close_before_up_case(true);
    close_before_up_case(false);
}

/* A peer that never answers our close: the lingering close ends at its deadline. */
TEST(linger_deadline)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.close_timeout_ms = 300;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_pause_read(c); /* the client will not see our close_notify, nor answer it */
    tl_loop_update_time(w->loop);
    uint64_t t0 = tl_loop_now(w->loop);
    tl_conn_close(w->s.conn);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    uint64_t took = tl_loop_now(w->loop) - t0;
    CHECK(took >= 250 && took < 3000);
    CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
    CHECK(strstr(w->s.error, "no answer") != NULL);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* tl_conn_set_linger(false): the peer said it sends nothing more. The answer, close_notify and FIN
 * go, and the socket closes at once, without waiting for the peer's close_notify; the peer still
 * gets everything, and a clean end. */
static void answer_no_linger(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    tl_conn_set_linger(c, false);
    struct iovec iov = {"the answer", 10};
    CHECK_EQ_INT(tl_conn_writev_close(c, &iov, 1), 0);
}

static bool server_paused(cw_world *w) { return w->user != NULL; }

TEST(linger_off_closes_at_once)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->on_server_read = answer_no_linger;
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, tls ? cw_handshaken : cw_client_open, 5000));
        tl_conn_pause_read(c);   /* the client will not answer our close: nothing to wait for */
        tl_conn_write(c, "last request", 12);
        tl_loop_update_time(w->loop);
        uint64_t t0 = tl_loop_now(w->loop);
        CHECK(cw_run_until(w, cw_server_closed, 5000));
        CHECK(tl_loop_now(w->loop) - t0 < 1000);   /* not the close deadline */
        CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
        CHECK_STR(w->s.error, "");
        tl_conn_resume_read(c);
        CHECK(cw_run_until(w, cw_client_closed, 5000));
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eofs, 1);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* Input not read yet when the close comes (more than the first read took: over TLS a record read
 * ahead, over TCP bytes left in the socket): the close lingers after all, and ends when the peer
 * answers. */
TEST(linger_off_lingers_for_unread_input)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->sopts.read_chunk = 4;   /* "last" now, " request" unread */
        w->on_server_read = answer_no_linger;
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, tls ? cw_handshaken : cw_client_open, 5000));
        tl_conn_write(c, "last", 4);          /* TLS: two records, read ahead together */
        tl_conn_write(c, " request", 8);
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);   /* the peer's close_notify or FIN came */
        CHECK_STR(w->s.error, "");
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* The same after a pause: what arrived meanwhile was never announced, so the close lingers. */
static void answer_no_linger_later(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    tl_conn_pause_read(c);
    w->user = c;   /* answered once the client's extra bytes are in the socket */
}

TEST(linger_off_lingers_after_a_pause)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->on_server_read = answer_no_linger_later;
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, tls ? cw_handshaken : cw_client_open, 5000));
        tl_conn_write(c, "request", 7);
        CHECK(cw_run_until(w, server_paused, 5000));
        tl_conn_write(c, "more", 4);   /* lands while the server does not read */
        for (int i = 0; i < 5; i++)
            tl_loop_run_once(w->loop, 5);
        answer_no_linger(w, w->user, NULL, 0);
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);   /* lingered until the peer's end */
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* 1 MiB, close_notify and FIN in one burst: everything is delivered before the clean EOF, even
 * though the hang-up is known at the first event (pitfall 4). */
static bool server_saw_eof(cw_world *w) { return w->s.eofs > 0; }

TEST(burst_then_close_all_delivered)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_pause_read(w->s.conn); /* the burst piles up before the server reads */
    static uint8_t big[1u << 20];
    tp_pattern(big, sizeof big, 6);
    tl_conn_write(c, big, sizeof big);
    tl_conn_close(c);
    for (int i = 0; i < 20; i++)
        tl_loop_run_once(w->loop, 5);
    tl_conn_resume_read(w->s.conn);
    CHECK(cw_run_until(w, server_saw_eof, 10000));
    CHECK(tl_buf_len(&w->s.got) == sizeof big &&
          memcmp(tl_buf_rptr(&w->s.got), big, sizeof big) == 0);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* ---- owner hooks ---- */

static void owner_handshake(tl_conn *c, bool ok, void *owner_data)
{
    bool mine = owner_data == cw_cur && tl_conn_owner_data(c) == cw_cur;
    cw_log_event(c, mine ? (ok ? 'H' : 'h') : 'X');
}

static void owner_close(tl_conn *c, tl_conn_end how, void *owner_data)
{
    (void)how;
    cw_log_event(c, owner_data == cw_cur && tl_conn_owner_data(c) == cw_cur ? 'O' : 'X');
}

static const tl_conn_owner test_owner = {.on_handshake = owner_handshake, .on_close = owner_close};

static cw_world *owned_world(tl_tls_ctx *sctx, tl_tls_ctx *cctx)
{
    cw_world *w = cw_new(sctx, cctx);
    if (!w)
        return NULL;
    w->sopts.owner = w->copts.owner = &test_owner;
    w->sopts.owner_data = w->copts.owner_data = w;
    return w;
}

/* Both sides complete, TLS and plain: the owner's handshake hook before the application's, its
 * close hook after the application's, each once. */
TEST(owner_hooks_order)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = owned_world(sctx, cctx);
        REQUIRE(w);
        w->echo = true;
        tl_conn *c = cw_connect(w);
        REQUIRE(c);
        CHECK(tl_conn_owner_data(c) == w);
        tl_conn_write(c, "ping", 4);
        cw_echo_target = 4;
        CHECK(cw_run_until(w, cw_echo_back, 5000));
        tl_conn_close(c);
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_STR(w->s.log, tls ? "HACO" : "CO");
        CHECK_STR(w->c.log, tls ? "HACO" : "CO");
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* A failed verification and a handshake deadline: owner, then application, once each. */
TEST(owner_hooks_failed_and_timeout)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(tl_tls_ctx_set_ca_pem(cctx, tp.other_ca.cert_pem) == 0);
    cw_world *w = owned_world(sctx, cctx);
    REQUIRE(cw_connect(w));
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_STR(w->c.log, "haCO");
    CHECK_STR(w->s.log, "haCO");
    cw_free(w);

    w = owned_world(sctx, NULL);
    w->sopts.handshake_timeout_ms = 150;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.log, "haCO");
    close(fd);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Ended by us during the handshake (abort and close): the owner still hears "failed", from the
 * loop, not inside the call; the application's callbacks are as without an owner. */
TEST(owner_hooks_end_during_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    for (int how = 0; how < 2; how++) {
        cw_world *w = owned_world(sctx, NULL);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
        CHECK(write(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) == 11);
        CHECK(cw_run_until(w, cw_server_accepted, 5000));
        for (int i = 0; i < 5; i++)
            tl_loop_run_once(w->loop, 10); /* the server reads half a ClientHello */
        REQUIRE(w->s.conn->state == ST_HANDSHAKE);
        if (how)
            tl_conn_close(w->s.conn);
        else
            tl_conn_abort(w->s.conn);
        CHECK_STR(w->s.log, ""); /* nothing inside the API call */
        CHECK(cw_run_until(w, cw_server_closed, 5000));
        CHECK_STR(w->s.log, "hCO");
        CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
        close(fd);
        cw_free(w);
    }
    tl_tls_ctx_free(sctx);
}

/* A pool thread kept busy, so the server's handshake step waits on the pool (ST_TASK). */
static int blocker_released;
static void blocker_run(tl_work *w)
{
    (void)w;
    while (!__atomic_load_n(&blocker_released, __ATOMIC_ACQUIRE))
        usleep(1000);
}
static void blocker_done(tl_loop *loop, tl_work *w)
{
    (void)loop;
    (void)w;
}
static bool server_in_task(cw_world *w) { return w->s.conn && w->s.conn->state == ST_TASK; }

/* The connection is aborted, or its deadline passes, while a handshake step is on the pool: the
 * owner hears "failed" once; a deadline is a failure for the application too. */
TEST(owner_hooks_during_task)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    for (int deadline = 0; deadline < 2; deadline++) {
        tl_pool *pool = tl_pool_new(1);
        cw_world *w = owned_world(sctx, cctx);
        w->sopts.pool = pool;
        w->sopts.handshake_timeout_ms = deadline ? 150 : 0;
        __atomic_store_n(&blocker_released, 0, __ATOMIC_RELEASE);
        tl_work blocker = {.run = blocker_run, .done = blocker_done};
        tl_pool_submit(pool, w->loop, &blocker);
        REQUIRE(cw_connect(w));
        REQUIRE(cw_run_until(w, server_in_task, 5000));
        if (deadline) {
            tl_loop_update_time(w->loop);
            uint64_t until = tl_loop_now(w->loop) + 300;
            while (tl_loop_now(w->loop) < until) /* the deadline passes during the task */
                tl_loop_run_once(w->loop, 20);
        } else {
            tl_conn_abort(w->s.conn);
        }
        CHECK_STR(w->s.log, "");
        __atomic_store_n(&blocker_released, 1, __ATOMIC_RELEASE);
        CHECK(cw_run_until(w, cw_server_closed, 5000));
        CHECK_STR(w->s.log, deadline ? "haCO" : "hCO");
        CHECK_EQ_INT(w->s.end_how, deadline ? TL_END_TIMEOUT : TL_END_LOCAL);
        cw_free(w);
        tl_pool_free(pool);
    }
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A connect that fails: the owner's close hook all the same (and, TLS, its handshake hook). */
TEST(owner_hooks_failed_connect)
{
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    for (int tls = 0; tls < 2; tls++) {
        cw_world *w = owned_world(NULL, tls ? cctx : NULL);
        /* A port nobody listens on: the listener's, closed. */
        tl_io_stop(w->loop, &w->lio);
        close(w->lfd);
        w->lfd = socket(AF_INET, SOCK_STREAM, 0); /* for cw_free */
        REQUIRE(cw_connect(w));
        CHECK(cw_run_until(w, cw_client_closed, 5000));
        CHECK_EQ_INT(w->c.end_how, TL_END_RESET);
        CHECK_STR(w->c.log, tls ? "hCO" : "CO");
        cw_free(w);
    }
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(eof_without_close_notify);
    RUN(reset_mid_stream);
    RUN(reset_mid_handshake);
    RUN(handshake_failure_reasons);
    RUN(cancel_read_then_close);
    RUN(half_close_tls13);
    RUN(close_inside_read_callback);
    RUN(writev_close_small_and_large);
    RUN(close_before_up_delivers_written_data);
    RUN(linger_deadline);
    RUN(linger_off_closes_at_once);
    RUN(linger_off_lingers_for_unread_input);
    RUN(linger_off_lingers_after_a_pause);
    RUN(burst_then_close_all_delivered);
    RUN(owner_hooks_order);
    RUN(owner_hooks_failed_and_timeout);
    RUN(owner_hooks_end_during_handshake);
    RUN(owner_hooks_during_task);
    RUN(owner_hooks_failed_connect);
    TEST_MAIN_END();
}
