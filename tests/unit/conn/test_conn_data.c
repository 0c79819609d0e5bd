/*
 * test_conn_data.c - data through connections on loopback sockets, TLS and TCP: echo, buffered
 * TLS data after a pause, backpressure, small buffers both ways, deferred and coalesced writes,
 * delegated handshakes, a KeyUpdate while the write is blocked (harness: support/conn_world.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <tlsloop/conn.h>
#include <tlsloop/loop.h>

#include "support/conn_world.h"
#include "support/tls_pair.h"
#include "test.h"

/* ---- echo, TLS and TCP through the same code ---- */

static void echo_case(bool tls, size_t total)
{
    tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
    tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
    cw_world *w = cw_new(sctx, cctx);
    REQUIRE(w);
    w->echo = true;
    tl_conn *c = cw_connect(w);
    REQUIRE(c);
    uint8_t *data = malloc(total);
    tp_pattern(data, total, 3);
    /* Written before the connection (and handshake) completes: sent after. */
    size_t off = 0;
    while (off < total) {
        size_t n = total - off < 70000 ? total - off : 70000;
        CHECK(tl_conn_write(c, data + off, n) >= 0);
        off += n;
        tl_loop_run_once(w->loop, 0);
    }
    cw_echo_target = total;
    CHECK(cw_run_until(w, cw_echo_back, 10000));
    CHECK(tl_buf_len(&w->c.got) == total && memcmp(tl_buf_rptr(&w->c.got), data, total) == 0);
    if (tls)
        CHECK(cw_handshaken(w));
    tl_conn_close(c);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK_STR(w->s.error, "");
    CHECK_STR(w->c.error, "");
    CHECK_EQ_INT(w->c.stats.bytes_out, total);
    CHECK_EQ_INT(w->c.stats.bytes_in, total);
    if (tls) {
        CHECK(w->c.stats.handshake_ns > 0);
        CHECK(w->s.stats.handshake_cpu_ns > 0);
    }
    free(data);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(echo_tls) { echo_case(true, 3u << 20); }
TEST(echo_tcp) { echo_case(false, 3u << 20); }

/* ---- data inside OpenSSL after a pause (pitfall 1) ---- */

static size_t pause_after;
static void pause_reader(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    if (tl_buf_len(&w->c.got) >= pause_after)
        tl_conn_pause_read(c);
}

static bool got_16k(cw_world *w) { return tl_buf_len(&w->c.got) >= 16384; }
static bool got_some(cw_world *w) { return tl_buf_len(&w->c.got) >= 100; }

/* One 16 KiB record, an application that takes 100 bytes per callback: all of it arrives with no
 * further socket event; and paused after the first 100 bytes, all of it arrives on resume. */
TEST(record_inside_openssl)
{
    for (int paused = 0; paused < 2; paused++) {
        tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
        cw_world *w = cw_new(sctx, cctx);
        w->copts.read_chunk = 100;
        if (paused) {
            w->on_client_read = pause_reader;
            pause_after = 100;
        }
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
        static uint8_t rec[16384];
        tp_pattern(rec, sizeof rec, 5);
        CHECK(tl_conn_write(w->s.conn, rec, sizeof rec) == 0); /* one record */
        if (paused) {
            CHECK(cw_run_until(w, got_some, 5000));
            for (int i = 0; i < 10; i++)
                tl_loop_run_once(w->loop, 10);
            CHECK_EQ_INT(tl_buf_len(&w->c.got), 100); /* paused: nothing more */
            w->on_client_read = NULL;
            tl_conn_resume_read(c); /* the socket is empty: only the engine holds the rest */
        }
        CHECK(cw_run_until(w, got_16k, 5000));
        CHECK(tl_buf_len(&w->c.got) == sizeof rec &&
              memcmp(tl_buf_rptr(&w->c.got), rec, sizeof rec) == 0);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* ---- backpressure: a slow reader and the watermarks ---- */

static tl_timer resume_timer;
static void resume_cb(tl_loop *loop, tl_timer *t)
{
    if (cw_cur->c.conn)
        tl_conn_resume_read(cw_cur->c.conn);
    tl_timer_start(loop, t, 1);
}

static void backpressure_case(bool tls)
{
    tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
    tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.write_high = 64 * 1024;
    w->scbs.on_drain = cw_drain_more;
    w->on_client_read = cw_slow_reader;
    w->copts.read_chunk = 8192;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_client_open, 5000));
    if (tls)
        REQUIRE(cw_run_until(w, cw_handshaken, 5000));
    /* A small send buffer only: a tiny receive buffer on loopback (64 KiB MSS) never reopens its
     * window by a segment and crawls on the kernel's zero-window probes. */
    int sndbuf = 4096;
    setsockopt(tl_conn_fd(w->s.conn), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    cw_prod = (cw_producer){.total = 8u << 20};
    tl_timer_init(&resume_timer, resume_cb, NULL);
    tl_timer_start(w->loop, &resume_timer, 1);
    cw_produce(w->s.conn, &cw_prod);
    CHECK(cw_run_until(w, cw_got_all_prod, 60000));
    tl_timer_stop(w->loop, &resume_timer);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), cw_prod.total);
    CHECK(cw_prod.paused_by_queue);
    CHECK(w->s.drains > 0);
    /* Memory stays bounded: the high-water mark plus one write. */
    CHECK(cw_prod.max_queued <= 64 * 1024 + sizeof cw_prod.chunk + 17 * 1024);
    fprintf(stderr, "  %s: most queued %zu bytes, %d drains\n", tls ? "tls" : "tcp",
            cw_prod.max_queued, w->s.drains);
    bool ok = true;
    uint8_t expect[32768];
    for (size_t off = 0; ok && off < cw_prod.total; off += sizeof expect) {
        tp_pattern(expect, sizeof expect, (unsigned)(off / sizeof expect));
        ok = memcmp(tl_buf_rptr(&w->c.got) + off, expect, sizeof expect) == 0;
    }
    CHECK(ok);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(backpressure_tls) { backpressure_case(true); }
TEST(backpressure_tcp) { backpressure_case(false); }

/* Both directions at once with 4 KiB send buffers: every write must wait for the socket while
 * reads go on, TLS interest being the union of both (pitfall 2). */
static size_t bidir_total;
static bool bidir_done(cw_world *w)
{
    return tl_buf_len(&w->c.got) >= bidir_total && tl_buf_len(&w->s.got) >= bidir_total;
}

TEST(bidirectional_small_buffers)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    int small = 4096;
    int fds[2] = {tl_conn_fd(c), tl_conn_fd(w->s.conn)};
    for (int i = 0; i < 2; i++)
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    bidir_total = 2u << 20;
    uint8_t *data = malloc(bidir_total);
    tp_pattern(data, bidir_total, 8);
    CHECK(tl_conn_write(c, data, bidir_total) >= 0);
    CHECK(tl_conn_write(w->s.conn, data, bidir_total) >= 0);
    CHECK(cw_run_until(w, bidir_done, 30000));
    CHECK(memcmp(tl_buf_rptr(&w->c.got), data, bidir_total) == 0);
    CHECK(memcmp(tl_buf_rptr(&w->s.got), data, bidir_total) == 0);
    free(data);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Deferred writes: small ones wait in the queue for the end of the loop iteration, large ones go
 * at once; the peer gets everything in order. */
static size_t dq_after_big, dq_after_small;
static uint8_t dq_big[20000];
static void deferred_answer(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    tl_conn_set_defer_writes(c, true);
    CHECK_EQ_INT(tl_conn_write(c, dq_big, sizeof dq_big), 0);
    dq_after_big = tl_conn_write_queued(c);
    CHECK_EQ_INT(tl_conn_write(c, "small one ", 10), 0);
    CHECK_EQ_INT(tl_conn_write(c, "small two ", 10), 0);
    dq_after_small = tl_conn_write_queued(c);
}

static bool got_deferred(cw_world *w) { return tl_buf_len(&w->c.got) >= sizeof dq_big + 20; }

TEST(deferred_small_writes)
{
    tp_pattern(dq_big, sizeof dq_big, 6);
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        REQUIRE(w);
        w->on_server_read = deferred_answer;
        tl_conn *c = cw_connect(w);
        REQUIRE(c);
        tl_conn_write(c, "request", 7);
        CHECK(cw_run_until(w, got_deferred, 5000));
        CHECK_EQ_INT(dq_after_big, 0);      /* sent at once */
        CHECK_EQ_INT(dq_after_small, 20);   /* waiting for the end of the iteration */
        CHECK_EQ_INT(tl_buf_len(&w->c.got), sizeof dq_big + 20);
        const uint8_t *got = tl_buf_rptr(&w->c.got);
        CHECK(memcmp(got, dq_big, sizeof dq_big) == 0);
        CHECK(memcmp(got + sizeof dq_big, "small one small two ", 20) == 0);
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* Handshakes through the task pool. */
TEST(delegated_handshakes)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.rsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tl_pool *pool = tl_pool_new(1);
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.pool = pool;
    w->copts.pool = pool;
    w->echo = true;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_write(c, "ping", 4);
    cw_echo_target = 4;
    CHECK(cw_run_until(w, cw_echo_back, 5000));
    tl_conn_close(c);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK(w->s.stats.handshake_cpu_ns > 0);
    cw_free(w);
    tl_pool_free(pool);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* writev: small pieces leave as one TLS record (one record's overhead on the wire, not three),
 * and arrive in order. */
TEST(writev_coalesces)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->echo = true;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_engine_info before, after;
    tl_engine_get_info(tl_conn_engine(c), &before);
    struct iovec iov[3] = {{"HTTP/1.1 ", 9}, {"200 OK\r\n", 8}, {"\r\n", 2}};
    CHECK_EQ_INT(tl_conn_writev(c, iov, 3), 0);
    cw_echo_target = 19;
    CHECK(cw_run_until(w, cw_echo_back, 5000));
    tl_engine_get_info(tl_conn_engine(c), &after);
    /* TLS 1.3 with AES-GCM: 5 header + 19 data + 1 type + 16 tag = 41 bytes for one record. */
    CHECK_EQ_INT(after.bytes_out - before.bytes_out, 41);
    CHECK(memcmp(tl_buf_rptr(&w->c.got), "HTTP/1.1 200 OK\r\n\r\n", 19) == 0);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* The client asks for a KeyUpdate while the server's write is blocked (the client does not read):
 * no deadlock; the server takes it, answers once it can write, and everything arrives. */
static size_t want_total;
static bool got_total(cw_world *w) { return tl_buf_len(&w->c.got) >= want_total; }
static bool server_got_x(cw_world *w) { return tl_buf_len(&w->s.got) >= 1; }

TEST(key_update_while_write_blocked)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_pause_read(c);
    /* Write until the kernel's buffers are full and the server's write really waits. */
    static uint8_t chunk[256 * 1024];
    size_t sent = 0;
    for (int i = 0; i < 64 && tl_conn_write_queued(w->s.conn) == 0; i++) {
        tp_pattern(chunk, sizeof chunk, (unsigned)i);
        tl_conn_write(w->s.conn, chunk, sizeof chunk);
        sent += sizeof chunk;
        for (int k = 0; k < 3; k++)
            tl_loop_run_once(w->loop, 2);
    }
    REQUIRE(tl_conn_write_queued(w->s.conn) > 0);
    REQUIRE(SSL_key_update(tl_engine_ssl(tl_conn_engine(c)), SSL_KEY_UPDATE_REQUESTED) == 1);
    tl_conn_write(c, "x", 1); /* carries the KeyUpdate */
    CHECK(cw_run_until(w, server_got_x, 5000));
    tl_conn_resume_read(c);
    want_total = sent;
    CHECK(cw_run_until(w, got_total, 20000));
    bool same = true;
    for (size_t i = 0; same && i < sent / sizeof chunk; i++) {
        tp_pattern(chunk, sizeof chunk, (unsigned)i);
        same = memcmp(tl_buf_rptr(&w->c.got) + i * sizeof chunk, chunk, sizeof chunk) == 0;
    }
    CHECK(same);
    tl_conn_write(w->s.conn, "y", 1); /* the server still writes after the key change */
    want_total = sent + 1;
    CHECK(cw_run_until(w, got_total, 5000));
    tl_conn_close(c);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(echo_tls);
    RUN(echo_tcp);
    RUN(record_inside_openssl);
    RUN(backpressure_tls);
    RUN(backpressure_tcp);
    RUN(bidirectional_small_buffers);
    RUN(deferred_small_writes);
    RUN(delegated_handshakes);
    RUN(writev_coalesces);
    RUN(key_update_while_write_blocked);
    TEST_MAIN_END();
}
