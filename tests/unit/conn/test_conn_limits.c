/*
 * test_conn_limits.c - the deadlines and limits of connections over loopback sockets: handshake,
 * idle and send-stall deadlines, the KeyUpdate rate cap, and what connections cost: no fd or
 * memory growth, the size of an idle one, silent ones do not spin (harness: support/conn_world.h).
 */
#include <dirent.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <tlsloop/conn.h>
#include <tlsloop/loop.h>

#include "conn/conn_int.h"
#include "support/conn_world.h"
#include "support/tls_pair.h"
#include "tls/engine_int.h"
#include "test.h"

/* ---- handshake deadline ---- */

/* A silent client: the handshake deadline ends it. */
TEST(handshake_deadline)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    cw_world *w = cw_new(sctx, NULL);
    w->sopts.handshake_timeout_ms = 200;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK(strstr(w->s.error, "did not complete within 200 ms") != NULL);
    char buf[10];
    CHECK(read(fd, buf, sizeof buf) == 0); /* the client sees the connection end */
    close(fd);
    cw_free(w);
    tl_tls_ctx_free(sctx);
}

/* ---- many connections: no fd or memory growth ---- */

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static int many_target;
static bool all_closed(cw_world *w)
{
    return w->c.closes >= many_target && w->s.closes >= many_target;
}

/* n connections open at once (all handshaken, one exchange each), then all closed. */
static bool all_echoed(cw_world *w)
{
    return w->s.handshakes_ok >= many_target && tl_buf_len(&w->c.got) >= (size_t)many_target * 2;
}

static void many_round(cw_world *w, int n)
{
    w->c.closes = w->s.closes = w->s.handshakes_ok = 0;
    tl_buf_consume(&w->c.got, tl_buf_len(&w->c.got));
    many_target = n;
    tl_conn **conns = calloc((size_t)n, sizeof *conns);
    for (int i = 0; i < n; i++) {
        conns[i] = cw_connect(w);
        REQUIRE(conns[i]);
        tl_conn_write(conns[i], "hi", 2);
        if (i % 50 == 0)
            tl_loop_run_once(w->loop, 0);
    }
    CHECK(cw_run_until(w, all_echoed, 60000));
    CHECK_EQ_INT(w->server_conns_open, n);
    for (int i = 0; i < n; i++)
        tl_conn_close(conns[i]);
    CHECK(cw_run_until(w, all_closed, 60000));
    free(conns);
}

TEST(many_connections_no_growth)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->echo = true;
    int n = tests_scale() > 1 ? 5000 : 1000; /* client and server here: two fds each */
    many_round(w, n); /* warm-up: caches, the heap's own growth */
    int fds = count_fds();
    struct mallinfo2 m0 = mallinfo2();
    many_round(w, n);
    struct mallinfo2 m1 = mallinfo2();
    CHECK_EQ_INT(count_fds(), fds);
    CHECK_EQ_INT(w->server_conns_open, 0);
    CHECK_EQ_INT(w->client_conns_open, 0);
    long growth = (long)m1.uordblks - (long)m0.uordblks;
    fprintf(stderr, "  %d concurrent connections, opened and closed again: heap in use grew by "
                    "%ld bytes, fds back to %d\n", n, growth, fds);
    CHECK(growth < 256 * 1024);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* An idle TLS connection: tlsloop's own heap stays under 1 KiB (the connection and the engine,
 * with malloc's overhead), and neither holds an I/O buffer. */
TEST(idle_connection_is_small)
{
    size_t ours = sizeof(struct tl_conn) + sizeof(struct tl_engine) + 2 * 16;
    fprintf(stderr, "  tl_conn %zu + tl_engine %zu bytes (+ malloc overhead): %zu\n",
            sizeof(struct tl_conn), sizeof(struct tl_engine), ours);
    CHECK(ours < 1024);
    /* Pinned, so that growth is a decision (docs/conn.md states the size): 424 bytes, then 456
     * with the owner hooks, the idle and send-stall marks and the KeyUpdate window. */
    CHECK(sizeof(struct tl_conn) <= 456);
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->echo = true;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_conn_write(c, "ping", 4);
    cw_echo_target = 4;
    CHECK(cw_run_until(w, cw_echo_back, 5000));
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 5);
    tl_conn *sc = w->s.conn;
    CHECK(sc->wq.data == NULL && c->wq.data == NULL);
    CHECK(sc->engine->pending.data == NULL && c->engine->pending.data == NULL);
    CHECK(sc->err == NULL && sc->engine->err == NULL);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* 200 connections that never send a ClientHello: the loop sleeps, it does not spin (pitfall 2). */
static int accepted_target;
static bool all_accepted(cw_world *w) { return w->server_conns_open >= accepted_target; }

TEST(silent_connections_do_not_spin)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    cw_world *w = cw_new(sctx, NULL);
    int fds[200];
    for (int i = 0; i < 200; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(connect(fds[i], (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    }
    accepted_target = 200;
    CHECK(cw_run_until(w, all_accepted, 5000));
    int callbacks = 0, iterations = 0;
    tl_loop_update_time(w->loop);
    uint64_t end = tl_loop_now(w->loop) + 300;
    while (tl_loop_now(w->loop) < end) {
        callbacks += tl_loop_run_once(w->loop, 50);
        iterations++;
    }
    fprintf(stderr, "  300 ms with 200 silent connections: %d iterations, %d callbacks\n",
            iterations, callbacks);
    CHECK(callbacks == 0);
    CHECK(iterations <= 10); /* woken only by the 50 ms limit */
    for (int i = 0; i < 200; i++)
        close(fds[i]);
    accepted_target = 0;
    cw_free(w);
    tl_tls_ctx_free(sctx);
}

/* ---- idle deadline ---- */

static uint64_t server_closed_at;
static void note_server_close(tl_conn *c, tl_conn_end how)
{
    cw_cb_close(c, how);
    server_closed_at = tl_loop_now(tl_conn_loop(c));
}

/* Nothing moves after the handshake: the server closes gracefully at the deadline (the client
 * gets close_notify), and the end says timeout. */
TEST(idle_timeout_closes_gracefully)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.idle_timeout_ms = 300;
    w->scbs.on_close = note_server_close;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    tl_loop_update_time(w->loop);
    uint64_t t0 = tl_loop_now(w->loop);
    CHECK(cw_run_until(w, cw_both_closed, 5000));
    uint64_t took = server_closed_at - t0;
    fprintf(stderr, "  idle 300 ms: closed after %llu ms\n", (unsigned long long)took);
    CHECK(took >= 250 && took < 2000);
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.error, "idle timeout");
    CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN); /* close_notify arrived */
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Bytes in either direction every 100 ms keep a 300 ms idle deadline away; once they stop, it
 * comes 300 ms after the last. */
static tl_timer tick_timer;
static int ticks;
static uint64_t last_tick_at;
static void tick_cb(tl_loop *loop, tl_timer *t)
{
    if (ticks >= 8 || !cw_cur->s.conn || !cw_cur->c.conn)
        return;
    /* Alternate: the client writes to the server, then the server to the client. */
    tl_conn_write(ticks % 2 ? cw_cur->s.conn : cw_cur->c.conn, "t", 1);
    ticks++;
    last_tick_at = tl_loop_now(loop);
    tl_timer_start(loop, t, 100);
}

TEST(idle_timeout_postponed_by_activity)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    w->sopts.idle_timeout_ms = 300;
    w->scbs.on_close = note_server_close;
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    ticks = 0;
    tl_timer_init(&tick_timer, tick_cb, NULL);
    tl_timer_start(w->loop, &tick_timer, 100);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    tl_timer_stop(w->loop, &tick_timer);
    CHECK_EQ_INT(ticks, 8); /* 800 ms of activity, more than twice the deadline */
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 4);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), 4);
    uint64_t after = server_closed_at - last_tick_at;
    fprintf(stderr, "  closed %llu ms after the last byte\n", (unsigned long long)after);
    CHECK(after >= 250 && after < 2000);
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Plain TCP: counted from the accept; the peer sees a FIN, not a reset. */
TEST(idle_timeout_plain_from_accept)
{
    cw_world *w = cw_new(NULL, NULL);
    w->sopts.idle_timeout_ms = 200;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(cw_run_until(w, cw_server_accepted, 5000));
    /* Still lingering: it waits for our FIN. */
    char buf[10];
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 40 && w->s.closes == 0; i++)
        tl_loop_run_once(w->loop, 10);
    CHECK(read(fd, buf, sizeof buf) == 0); /* the server's FIN */
    close(fd);
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.error, "idle timeout");
    cw_free(w);
}

/* ---- send-stall deadline ---- */

static uint64_t t_start;
static void write_lots(tl_conn *c, size_t total)
{
    static uint8_t chunk[256 * 1024];
    for (size_t sent = 0; sent < total; sent += sizeof chunk)
        tl_conn_write(c, chunk, sizeof chunk);
}

/* A peer that stopped reading, while we write (and then while we close): aborted at the stall
 * deadline, not at the close deadline; TLS and TCP. */
TEST(send_stall_aborts_non_reader)
{
    for (int tls = 0; tls < 2; tls++) {
        for (int closing = 0; closing < 2; closing++) {
            tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
            tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
            cw_world *w = cw_new(sctx, cctx);
            w->sopts.send_stall_timeout_ms = 300;
            w->scbs.on_close = note_server_close;
            tl_conn *c = cw_connect(w);
            REQUIRE(c && cw_run_until(w, cw_client_open, 5000));
            if (tls)
                REQUIRE(cw_run_until(w, cw_handshaken, 5000));
            tl_conn_pause_read(c);
            /* A small send buffer stalls fast. Not a receive buffer shrunk after the connect:
             * the kernel then drops what the window still admits, and each retransmission
             * that gets in is progress again. */
            int small = 4096;
            setsockopt(tl_conn_fd(w->s.conn), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
            tl_loop_update_time(w->loop);
            t_start = tl_loop_now(w->loop);
            write_lots(w->s.conn, 4u << 20);
            if (closing)
                tl_conn_close(w->s.conn); /* its close deadline is 5 s */
            CHECK(cw_run_until(w, cw_server_closed, 5000));
            uint64_t took = server_closed_at - t_start;
            fprintf(stderr, "  %s%s: aborted after %llu ms\n", tls ? "tls" : "tcp",
                    closing ? ", closing" : "", (unsigned long long)took);
            CHECK(took >= 250 && took < 2000);
            CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
            CHECK_STR(w->s.error, "send stalled: the peer stopped reading");
            cw_free(w);
            tl_tls_ctx_free(sctx);
            tl_tls_ctx_free(cctx);
        }
    }
}

/* A slow reader that keeps taking some of the data is not a stalled one. */
static tl_timer slow_timer;
static void slow_resume_cb(tl_loop *loop, tl_timer *t)
{
    if (cw_cur->c.conn)
        tl_conn_resume_read(cw_cur->c.conn);
    tl_timer_start(loop, t, 10);
}

TEST(send_stall_spares_slow_reader)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        cw_world *w = cw_new(sctx, cctx);
        w->sopts.send_stall_timeout_ms = 400;
        w->on_client_read = cw_slow_reader; /* 8 KiB per 10 ms at most */
        w->copts.read_chunk = 8192;
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, cw_client_open, 5000));
        if (tls)
            REQUIRE(cw_run_until(w, cw_handshaken, 5000));
        int small = 4096;
        setsockopt(tl_conn_fd(w->s.conn), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        tl_timer_init(&slow_timer, slow_resume_cb, NULL);
        tl_timer_start(w->loop, &slow_timer, 10);
        /* Over a second: more than twice the deadline. */
        cw_prod = (cw_producer){.total = 768u * 1024u};
        w->scbs.on_drain = cw_drain_more;
        tl_loop_update_time(w->loop);
        t_start = tl_loop_now(w->loop);
        cw_produce(w->s.conn, &cw_prod);
        CHECK(cw_run_until(w, cw_got_all_prod, 20000));
        tl_timer_stop(w->loop, &slow_timer);
        fprintf(stderr, "  %s: %zu bytes in %llu ms\n", tls ? "tls" : "tcp", cw_prod.total,
                (unsigned long long)(tl_loop_now(w->loop) - t_start));
        CHECK_EQ_INT(tl_buf_len(&w->c.got), cw_prod.total);
        CHECK(cw_prod.paused_by_queue); /* output did wait for the peer */
        CHECK_EQ_INT(w->s.closes, 0);
        CHECK_STR(w->s.error, "");
        cw_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* ---- KeyUpdate rate cap ---- */

/* n KeyUpdates from the client, each carried by one byte of data. Returns how many went. */
static int send_key_updates(tl_conn *c, int n)
{
    for (int i = 0; i < n; i++) {
        if (SSL_key_update(tl_engine_ssl(tl_conn_engine(c)), SSL_KEY_UPDATE_NOT_REQUESTED) != 1 ||
            tl_conn_write(c, "k", 1) != 0)
            return i;
    }
    return n;
}

static size_t server_want;
static bool server_got_want(cw_world *w) { return tl_buf_len(&w->s.got) >= server_want; }

static void idle_for(cw_world *w, int ms)
{
    tl_loop_update_time(w->loop);
    uint64_t end = tl_loop_now(w->loop) + (uint64_t)ms;
    while (tl_loop_now(w->loop) < end)
        tl_loop_run_once(w->loop, 20);
}

/* Under the limit in each second is fine, also when the seconds add up to more; above it in one
 * second, the connection is dropped. With the default limit (100), and with a limit of 20. */
TEST(key_update_rate_cap)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    for (int deflt = 1; deflt >= 0; deflt--) {
        cw_world *w = cw_new(sctx, cctx);
        w->sopts.key_update_limit = deflt ? 0 : 20;
        tl_conn *c = cw_connect(w);
        REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
        if (deflt) {
            CHECK_EQ_INT(send_key_updates(c, 90), 90);
            server_want = 90;
            CHECK(cw_run_until(w, server_got_want, 5000));
            idle_for(w, 1050); /* the next second */
            CHECK_EQ_INT(send_key_updates(c, 90), 90);
            server_want = 180;
            CHECK(cw_run_until(w, server_got_want, 5000));
            CHECK_EQ_INT(w->s.closes, 0);
            tl_engine_info info;
            tl_engine_get_info(tl_conn_engine(w->s.conn), &info);
            CHECK_EQ_INT(info.key_updates_received, 180);
        }
        send_key_updates(c, deflt ? 300 : 25); /* too many in this second */
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
        CHECK_STR(w->s.error, "peer sent too many KeyUpdates");
        CHECK(w->c.end_how == TL_END_RESET || w->c.end_how == TL_END_TRUNCATED);
        cw_free(w);
    }
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* The same flood read a few at a time (the loop runs between small batches): counted across
 * reads, dropped all the same. */
TEST(key_update_flood_in_batches)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    cw_world *w = cw_new(sctx, cctx);
    tl_conn *c = cw_connect(w);
    REQUIRE(c && cw_run_until(w, cw_handshaken, 5000));
    int sent = 0;
    for (int i = 0; i < 30 && w->s.closes == 0; i++) {
        sent += send_key_updates(c, 10);
        for (int k = 0; k < 3; k++)
            tl_loop_run_once(w->loop, 1);
    }
    CHECK(cw_run_until(w, cw_server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
    CHECK_STR(w->s.error, "peer sent too many KeyUpdates");
    fprintf(stderr, "  dropped after %d KeyUpdates sent, %zu read\n", sent,
            tl_buf_len(&w->s.got));
    CHECK(tl_buf_len(&w->s.got) <= 110); /* the rest was never delivered */
    cw_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(handshake_deadline);
    RUN(many_connections_no_growth);
    RUN(idle_connection_is_small);
    RUN(silent_connections_do_not_spin);
    RUN(idle_timeout_closes_gracefully);
    RUN(idle_timeout_postponed_by_activity);
    RUN(idle_timeout_plain_from_accept);
    RUN(send_stall_aborts_non_reader);
    RUN(send_stall_spares_slow_reader);
    RUN(key_update_rate_cap);
    RUN(key_update_flood_in_batches);
    TEST_MAIN_END();
}
