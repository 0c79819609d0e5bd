/*
 * test_conn.c - connections over real loopback sockets, client and server on one loop: echo over
 * TLS and TCP through the same code, buffered TLS data after a pause, backpressure, every close
 * path, handshake deadlines and failures, delegated handshakes, many connections without leaks,
 * owner hooks, the idle and send-stall deadlines, and the KeyUpdate rate cap.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <tlsloop/conn.h>
#include <tlsloop/loop.h>

#include "conn/conn_int.h"
#include "tls/engine_int.h"
#include "support/tls_pair.h"
#include "test.h"

/* ---- a tiny harness: one loop, one listener, counters per side ---- */

typedef struct side_state {
    tl_buf got;               /* application bytes received */
    int handshakes_ok, handshakes_failed, eofs, closes, drains, connects;
    tl_conn_end eof_how, end_how;
    char error[200];
    tl_conn *conn;            /* the last connection of this side */
    tl_conn_stats stats;
    char log[32];             /* callbacks in order: A/a app handshake ok/failed, C app close,
                                 H/h owner handshake ok/failed, O owner close, X wrong data */
} side_state;

typedef struct world world;
typedef void (*read_hook)(world *w, tl_conn *c, const uint8_t *d, size_t n);

struct world {
    tl_loop *loop;
    int lfd;
    tl_io lio;
    struct sockaddr_in addr;
    tl_conn_opts sopts, copts;
    tl_conn_cbs scbs, ccbs;
    side_state s, c;
    read_hook on_server_read, on_client_read;
    bool echo;                /* the server writes back what it reads */
    int server_conns_open;
    int client_conns_open;
    void *user;
};

static world *W; /* the test's world, for callbacks */

static side_state *side_of(tl_conn *c) { return tl_conn_data(c); }

static void log_event(tl_conn *c, char what)
{
    side_state *s = side_of(c);
    size_t n = strlen(s->log);
    if (n + 1 < sizeof s->log) {
        s->log[n] = what;
        s->log[n + 1] = '\0';
    }
}

static void cb_handshake(tl_conn *c, bool ok)
{
    side_state *s = side_of(c);
    log_event(c, ok ? 'A' : 'a');
    if (ok)
        s->handshakes_ok++;
    else
        s->handshakes_failed++;
}

static void cb_read(tl_conn *c, const uint8_t *d, size_t n)
{
    side_state *s = side_of(c);
    tl_buf_append(&s->got, d, n);
    bool server = s == &W->s;
    read_hook h = server ? W->on_server_read : W->on_client_read;
    if (h)
        h(W, c, d, n);
    else if (server && W->echo)
        tl_conn_write(c, d, n);
}

static void cb_eof(tl_conn *c, tl_conn_end how)
{
    side_state *s = side_of(c);
    s->eofs++;
    s->eof_how = how;
}

static void cb_drain(tl_conn *c) { side_of(c)->drains++; }

static void cb_close(tl_conn *c, tl_conn_end how)
{
    side_state *s = side_of(c);
    log_event(c, 'C');
    s->closes++;
    s->end_how = how;
    snprintf(s->error, sizeof s->error, "%s", tl_conn_error(c));
    tl_conn_get_stats(c, &s->stats);
    if (s == &W->s)
        W->server_conns_open--;
    else
        W->client_conns_open--;
    if (s->conn == c)
        s->conn = NULL;
}

static void cb_connect(tl_conn *c, bool ok)
{
    if (ok)
        side_of(c)->connects++;
}

static void on_accept(tl_loop *loop, tl_io *io, unsigned ev)
{
    (void)ev;
    world *w = io->data;
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        w->sopts.data = &w->s;
        tl_conn *c = tl_conn_accept(loop, fd, &w->sopts);
        if (c) {
            w->s.conn = c;
            w->server_conns_open++;
        }
    }
}

static world *world_new(tl_tls_ctx *sctx, tl_tls_ctx *cctx)
{
    world *w = calloc(1, sizeof *w);
    char err[160];
    w->loop = tl_loop_new(err, sizeof err);
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    w->addr.sin_family = AF_INET;
    w->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof w->addr;
    if (!w->loop || bind(w->lfd, (struct sockaddr *)&w->addr, len) != 0 ||
        listen(w->lfd, 1024) != 0 || getsockname(w->lfd, (struct sockaddr *)&w->addr, &len) != 0)
        return NULL;
    tl_io_init(&w->lio, w->lfd, on_accept, w);
    tl_io_set(w->loop, &w->lio, TL_READABLE);
    w->scbs = (tl_conn_cbs){cb_handshake, cb_read, cb_eof, cb_drain, cb_close, cb_connect};
    w->ccbs = w->scbs;
    w->sopts = (tl_conn_opts){.tls = sctx, .cbs = &w->scbs, .data = &w->s};
    w->copts = (tl_conn_opts){.tls = cctx, .server_name = "localhost", .cbs = &w->ccbs,
                              .data = &w->c};
    W = w;
    return w;
}

static tl_conn *world_connect(world *w)
{
    char err[160];
    tl_conn *c = tl_conn_connect(w->loop, (struct sockaddr *)&w->addr, sizeof w->addr, &w->copts,
                                 err, sizeof err);
    if (!c)
        fprintf(stderr, "  connect: %s\n", err);
    else {
        w->c.conn = c;
        w->client_conns_open++;
    }
    return c;
}

/* Run the loop until cond(w) or about `ms` milliseconds pass. Returns whether cond held. */
static bool run_until(world *w, bool (*cond)(world *), int ms)
{
    tl_loop_update_time(w->loop);
    uint64_t end = tl_loop_now(w->loop) + (uint64_t)ms;
    while (!cond(w)) {
        if (tl_loop_now(w->loop) >= end)
            return false;
        tl_loop_run_once(w->loop, 20);
    }
    return true;
}

static void world_free(world *w)
{
    /* Let every connection end and free itself. */
    if (w->s.conn)
        tl_conn_abort(w->s.conn);
    if (w->c.conn)
        tl_conn_abort(w->c.conn);
    for (int i = 0; i < 20; i++)
        tl_loop_run_once(w->loop, 5);
    tl_io_stop(w->loop, &w->lio);
    close(w->lfd);
    tl_buf_free(&w->s.got);
    tl_buf_free(&w->c.got);
    tl_loop_free(w->loop);
    free(w);
    W = NULL;
}

static bool both_closed(world *w) { return w->s.closes > 0 && w->c.closes > 0; }
static bool handshaken(world *w) { return w->s.handshakes_ok && w->c.handshakes_ok; }
static bool client_open(world *w) { return w->c.connects > 0 && w->s.conn != NULL; }

/* ---- echo, TLS and TCP through the same code ---- */

static size_t echo_target;
static bool echo_back(world *w) { return tl_buf_len(&w->c.got) >= echo_target; }

static void echo_case(bool tls, size_t total)
{
    tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
    tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
    world *w = world_new(sctx, cctx);
    REQUIRE(w);
    w->echo = true;
    tl_conn *c = world_connect(w);
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
    echo_target = total;
    CHECK(run_until(w, echo_back, 10000));
    CHECK(tl_buf_len(&w->c.got) == total && memcmp(tl_buf_rptr(&w->c.got), data, total) == 0);
    if (tls)
        CHECK(handshaken(w));
    tl_conn_close(c);
    CHECK(run_until(w, both_closed, 5000));
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
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(echo_tls) { echo_case(true, 3u << 20); }
TEST(echo_tcp) { echo_case(false, 3u << 20); }

/* ---- data inside OpenSSL after a pause (pitfall 1) ---- */

static size_t pause_after;
static void pause_reader(world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)d;
    (void)n;
    if (tl_buf_len(&w->c.got) >= pause_after)
        tl_conn_pause_read(c);
}

static bool got_16k(world *w) { return tl_buf_len(&w->c.got) >= 16384; }
static bool got_some(world *w) { return tl_buf_len(&w->c.got) >= 100; }

/* One 16 KiB record, an application that takes 100 bytes per callback: all of it arrives with no
 * further socket event; and paused after the first 100 bytes, all of it arrives on resume. */
TEST(record_inside_openssl)
{
    for (int paused = 0; paused < 2; paused++) {
        tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
        world *w = world_new(sctx, cctx);
        w->copts.read_chunk = 100;
        if (paused) {
            w->on_client_read = pause_reader;
            pause_after = 100;
        }
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, handshaken, 5000));
        static uint8_t rec[16384];
        tp_pattern(rec, sizeof rec, 5);
        CHECK(tl_conn_write(w->s.conn, rec, sizeof rec) == 0); /* one record */
        if (paused) {
            CHECK(run_until(w, got_some, 5000));
            for (int i = 0; i < 10; i++)
                tl_loop_run_once(w->loop, 10);
            CHECK_EQ_INT(tl_buf_len(&w->c.got), 100); /* paused: nothing more */
            w->on_client_read = NULL;
            tl_conn_resume_read(c); /* the socket is empty: only the engine holds the rest */
        }
        CHECK(run_until(w, got_16k, 5000));
        CHECK(tl_buf_len(&w->c.got) == sizeof rec &&
              memcmp(tl_buf_rptr(&w->c.got), rec, sizeof rec) == 0);
        world_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* ---- backpressure: a slow reader and the watermarks ---- */

typedef struct producer {
    size_t total, sent, max_queued;
    uint8_t chunk[32768];
    bool paused_by_queue;
} producer;

static void produce(tl_conn *c, producer *p)
{
    while (p->sent < p->total) {
        size_t n = p->total - p->sent < sizeof p->chunk ? p->total - p->sent : sizeof p->chunk;
        tp_pattern(p->chunk, n, (unsigned)(p->sent / sizeof p->chunk));
        int rc = tl_conn_write(c, p->chunk, n);
        p->sent += n;
        size_t q = tl_conn_write_queued(c);
        if (q > p->max_queued)
            p->max_queued = q;
        if (rc != 0) {
            p->paused_by_queue = rc == 1;
            return; /* wait for on_drain */
        }
    }
}

static producer prod;
static void drain_more(tl_conn *c)
{
    W->s.drains++;
    produce(c, &prod);
}

static bool got_all_prod(world *w) { return tl_buf_len(&w->c.got) >= prod.total; }

static void slow_reader(world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    tl_conn_pause_read(c); /* take a break after every chunk: a timer resumes */
}

static tl_timer resume_timer;
static void resume_cb(tl_loop *loop, tl_timer *t)
{
    if (W->c.conn)
        tl_conn_resume_read(W->c.conn);
    tl_timer_start(loop, t, 1);
}

static void backpressure_case(bool tls)
{
    tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
    tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
    world *w = world_new(sctx, cctx);
    w->sopts.write_high = 64 * 1024;
    w->scbs.on_drain = drain_more;
    w->on_client_read = slow_reader;
    w->copts.read_chunk = 8192;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, client_open, 5000));
    if (tls)
        REQUIRE(run_until(w, handshaken, 5000));
    /* A small send buffer only: a tiny receive buffer on loopback (64 KiB MSS) never reopens its
     * window by a segment and crawls on the kernel's zero-window probes. */
    int sndbuf = 4096;
    setsockopt(tl_conn_fd(w->s.conn), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    prod = (producer){.total = 8u << 20};
    tl_timer_init(&resume_timer, resume_cb, NULL);
    tl_timer_start(w->loop, &resume_timer, 1);
    produce(w->s.conn, &prod);
    CHECK(run_until(w, got_all_prod, 60000));
    tl_timer_stop(w->loop, &resume_timer);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), prod.total);
    CHECK(prod.paused_by_queue);
    CHECK(w->s.drains > 0);
    /* Memory stays bounded: the high-water mark plus one write. */
    CHECK(prod.max_queued <= 64 * 1024 + sizeof prod.chunk + 17 * 1024);
    fprintf(stderr, "  %s: most queued %zu bytes, %d drains\n", tls ? "tls" : "tcp",
            prod.max_queued, w->s.drains);
    bool ok = true;
    uint8_t expect[32768];
    for (size_t off = 0; ok && off < prod.total; off += sizeof expect) {
        tp_pattern(expect, sizeof expect, (unsigned)(off / sizeof expect));
        ok = memcmp(tl_buf_rptr(&w->c.got) + off, expect, sizeof expect) == 0;
    }
    CHECK(ok);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(backpressure_tls) { backpressure_case(true); }
TEST(backpressure_tcp) { backpressure_case(false); }

/* Both directions at once with 4 KiB send buffers: every write must wait for the socket while
 * reads go on, TLS interest being the union of both (pitfall 2). */
static size_t bidir_total;
static bool bidir_done(world *w)
{
    return tl_buf_len(&w->c.got) >= bidir_total && tl_buf_len(&w->s.got) >= bidir_total;
}

TEST(bidirectional_small_buffers)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    int small = 4096;
    int fds[2] = {tl_conn_fd(c), tl_conn_fd(w->s.conn)};
    for (int i = 0; i < 2; i++)
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    bidir_total = 2u << 20;
    uint8_t *data = malloc(bidir_total);
    tp_pattern(data, bidir_total, 8);
    CHECK(tl_conn_write(c, data, bidir_total) >= 0);
    CHECK(tl_conn_write(w->s.conn, data, bidir_total) >= 0);
    CHECK(run_until(w, bidir_done, 30000));
    CHECK(memcmp(tl_buf_rptr(&w->c.got), data, bidir_total) == 0);
    CHECK(memcmp(tl_buf_rptr(&w->s.got), data, bidir_total) == 0);
    free(data);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* ---- close paths ---- */

static bool server_closed(world *w) { return w->s.closes > 0; }
static bool server_accepted(world *w) { return w->s.conn != NULL; }

/* The client goes away without close_notify: the server sees truncation, and says so. */
TEST(eof_without_close_notify)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_write(c, "bye", 3);
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10);
    shutdown(tl_conn_fd(c), SHUT_WR); /* a FIN, no close_notify */
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.eof_how, TL_END_TRUNCATED);
    CHECK_EQ_INT(w->s.end_how, TL_END_TRUNCATED);
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 3);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A reset in the middle of the stream. */
TEST(reset_mid_stream)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    struct linger lg = {1, 0};
    setsockopt(tl_conn_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    static uint8_t big[1 << 20];
    tl_conn_write(w->s.conn, big, sizeof big); /* the server is mid-send */
    tl_conn_abort(c);                          /* RST */
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_RESET);
    CHECK(strstr(w->s.error, "reset") != NULL || strstr(w->s.error, "Broken pipe") != NULL);
    fprintf(stderr, "  server: %s\n", w->s.error);
    CHECK_EQ_INT(w->c.end_how, TL_END_LOCAL);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A reset in the middle of the handshake (a raw socket sends half a ClientHello). */
TEST(reset_mid_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    world *w = world_new(sctx, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(write(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) == 11);
    CHECK(run_until(w, server_accepted, 5000));
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10); /* the server reads the half ClientHello */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_RESET);
    CHECK_EQ_INT(w->s.handshakes_failed, 1);
    world_free(w);
    tl_tls_ctx_free(sctx);
}

/* A silent client: the handshake deadline ends it. */
TEST(handshake_deadline)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    world *w = world_new(sctx, NULL);
    w->sopts.handshake_timeout_ms = 200;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK(strstr(w->s.error, "did not complete within 200 ms") != NULL);
    char buf[10];
    CHECK(read(fd, buf, sizeof buf) == 0); /* the client sees the connection end */
    close(fd);
    world_free(w);
    tl_tls_ctx_free(sctx);
}

/* Verification fails: both sides learn why. */
TEST(handshake_failure_reasons)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(tl_tls_ctx_set_ca_pem(cctx, tp.other_ca.cert_pem) == 0);
    world *w = world_new(sctx, cctx);
    REQUIRE(world_connect(w));
    CHECK(run_until(w, both_closed, 5000));
    CHECK_EQ_INT(w->c.handshakes_failed, 1);
    CHECK_EQ_INT(w->c.end_how, TL_END_TLS_ERROR);
    CHECK(strstr(w->c.error, "certificate verify failed") != NULL);
    CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
    CHECK(strstr(w->s.error, "alert") != NULL);
    fprintf(stderr, "  client: %s\n  server: %s\n", w->c.error, w->s.error);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Reading paused (a pending read cancelled), then a clean close: no error on either side. */
TEST(cancel_read_then_close)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_pause_read(c);
    static uint8_t data[200000];
    tl_conn_write(w->s.conn, data, sizeof data); /* in flight towards a client not reading */
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 10);
    tl_conn_close(c);
    CHECK(run_until(w, both_closed, 5000));
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
    CHECK_STR(w->c.error, "");
    CHECK_STR(w->s.error, "");
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* TLS 1.3 half-close: the client sends its request and close_notify, the server still answers. */
static void answer_on_eof(tl_conn *c, tl_conn_end how)
{
    cb_eof(c, how);
    static uint8_t resp[100000];
    tp_pattern(resp, sizeof resp, 9);
    tl_conn_write(c, resp, sizeof resp);
    tl_conn_close(c);
}

TEST(half_close_tls13)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    w->sopts.half_close = true;
    w->copts.half_close = true;
    w->scbs.on_eof = answer_on_eof;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_write(c, "GET", 3);
    tl_conn_shutdown_write(c);
    CHECK(tl_conn_write(c, "more", 4) == -1); /* our side is closed */
    CHECK(run_until(w, both_closed, 5000));
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 3);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), 100000);
    CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Close from inside the read callback, after writing the answer: the answer arrives in full. */
static void answer_and_close(world *w, tl_conn *c, const uint8_t *d, size_t n)
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
        world *w = world_new(sctx, cctx);
        w->on_server_read = answer_and_close;
        tl_conn *c = world_connect(w);
        REQUIRE(c);
        tl_conn_write(c, "request", 7);
        CHECK(run_until(w, both_closed, 5000));
        CHECK_EQ_INT(tl_buf_len(&w->c.got), 300000);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
        world_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* tl_conn_writev_close from the read callback: a small answer (data and close_notify in one
 * send) and one bigger than a socket takes at once (the rest and close_notify follow as with
 * write then close). Over TCP it is write then close. The client gets all, then a clean end. */
static size_t wvc_size;
static void answer_with_writev_close(world *w, tl_conn *c, const uint8_t *d, size_t n)
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
            world *w = world_new(sctx, cctx);
            w->on_server_read = answer_with_writev_close;
            tl_conn *c = world_connect(w);
            REQUIRE(c);
            tl_conn_write(c, "request", 7);
            CHECK(run_until(w, both_closed, 5000));
            CHECK_EQ_INT(tl_buf_len(&w->c.got), wvc_size);
            uint8_t *want = malloc(wvc_size);
            tp_pattern(want, wvc_size, 4);
            CHECK(tl_buf_len(&w->c.got) == wvc_size &&
                  memcmp(tl_buf_rptr(&w->c.got), want, wvc_size) == 0);
            free(want);
            CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
            CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);
            CHECK_STR(w->s.error, "");
            world_free(w);
            tl_tls_ctx_free(sctx);
            tl_tls_ctx_free(cctx);
        }
}

/* Deferred writes: small ones wait in the queue for the end of the loop iteration, large ones go
 * at once; the peer gets everything in order. */
static size_t dq_after_big, dq_after_small;
static uint8_t dq_big[20000];
static void deferred_answer(world *w, tl_conn *c, const uint8_t *d, size_t n)
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

static bool got_deferred(world *w) { return tl_buf_len(&w->c.got) >= sizeof dq_big + 20; }

TEST(deferred_small_writes)
{
    tp_pattern(dq_big, sizeof dq_big, 6);
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        world *w = world_new(sctx, cctx);
        REQUIRE(w);
        w->on_server_read = deferred_answer;
        tl_conn *c = world_connect(w);
        REQUIRE(c);
        tl_conn_write(c, "request", 7);
        CHECK(run_until(w, got_deferred, 5000));
        CHECK_EQ_INT(dq_after_big, 0);      /* sent at once */
        CHECK_EQ_INT(dq_after_small, 20);   /* waiting for the end of the iteration */
        CHECK_EQ_INT(tl_buf_len(&w->c.got), sizeof dq_big + 20);
        const uint8_t *got = tl_buf_rptr(&w->c.got);
        CHECK(memcmp(got, dq_big, sizeof dq_big) == 0);
        CHECK(memcmp(got + sizeof dq_big, "small one small two ", 20) == 0);
        world_free(w);
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
    world *w = world_new(sctx, cctx);
    REQUIRE(w);
    tl_conn *c = world_connect(w);
    REQUIRE(c);
    CHECK_EQ_INT(tl_conn_write(c, "written before the handshake", 28), 0);
    tl_conn_close(c);
    CHECK(run_until(w, both_closed, 5000));
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 28);
    CHECK(tl_buf_len(&w->s.got) == 28 &&
          memcmp(tl_buf_rptr(&w->s.got), "written before the handshake", 28) == 0);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    world_free(w);
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
    world *w = world_new(sctx, cctx);
    w->sopts.close_timeout_ms = 300;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_pause_read(c); /* the client will not see our close_notify, nor answer it */
    tl_loop_update_time(w->loop);
    uint64_t t0 = tl_loop_now(w->loop);
    tl_conn_close(w->s.conn);
    CHECK(run_until(w, server_closed, 5000));
    uint64_t took = tl_loop_now(w->loop) - t0;
    CHECK(took >= 250 && took < 3000);
    CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
    CHECK(strstr(w->s.error, "no answer") != NULL);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* tl_conn_set_linger(false): the peer said it sends nothing more. The answer, close_notify and FIN
 * go, and the socket closes at once, without waiting for the peer's close_notify; the peer still
 * gets everything, and a clean end. */
static void answer_no_linger(world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    tl_conn_set_linger(c, false);
    struct iovec iov = {"the answer", 10};
    CHECK_EQ_INT(tl_conn_writev_close(c, &iov, 1), 0);
}

static bool client_closed(world *w);
static bool server_paused(world *w) { return w->user != NULL; }

TEST(linger_off_closes_at_once)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        world *w = world_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->on_server_read = answer_no_linger;
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, tls ? handshaken : client_open, 5000));
        tl_conn_pause_read(c);   /* the client will not answer our close: nothing to wait for */
        tl_conn_write(c, "last request", 12);
        tl_loop_update_time(w->loop);
        uint64_t t0 = tl_loop_now(w->loop);
        CHECK(run_until(w, server_closed, 5000));
        CHECK(tl_loop_now(w->loop) - t0 < 1000);   /* not the close deadline */
        CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
        CHECK_STR(w->s.error, "");
        tl_conn_resume_read(c);
        CHECK(run_until(w, client_closed, 5000));
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eofs, 1);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        world_free(w);
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
        world *w = world_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->sopts.read_chunk = 4;   /* "last" now, " request" unread */
        w->on_server_read = answer_no_linger;
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, tls ? handshaken : client_open, 5000));
        tl_conn_write(c, "last", 4);          /* TLS: two records, read ahead together */
        tl_conn_write(c, " request", 8);
        CHECK(run_until(w, both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);   /* the peer's close_notify or FIN came */
        CHECK_STR(w->s.error, "");
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        world_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* The same after a pause: what arrived meanwhile was never announced, so the close lingers. */
static void answer_no_linger_later(world *w, tl_conn *c, const uint8_t *d, size_t n)
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
        world *w = world_new(sctx, cctx);
        w->sopts.close_timeout_ms = 3000;
        w->on_server_read = answer_no_linger_later;
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, tls ? handshaken : client_open, 5000));
        tl_conn_write(c, "request", 7);
        CHECK(run_until(w, server_paused, 5000));
        tl_conn_write(c, "more", 4);   /* lands while the server does not read */
        for (int i = 0; i < 5; i++)
            tl_loop_run_once(w->loop, 5);
        answer_no_linger(w, w->user, NULL, 0);
        CHECK(run_until(w, both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_CLEAN);   /* lingered until the peer's end */
        CHECK(tl_buf_len(&w->c.got) == 10 && memcmp(tl_buf_rptr(&w->c.got), "the answer", 10) == 0);
        CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN);
        world_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* Handshakes through the task pool. */
TEST(delegated_handshakes)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.rsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tl_pool *pool = tl_pool_new(1);
    world *w = world_new(sctx, cctx);
    w->sopts.pool = pool;
    w->copts.pool = pool;
    w->echo = true;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_write(c, "ping", 4);
    echo_target = 4;
    CHECK(run_until(w, echo_back, 5000));
    tl_conn_close(c);
    CHECK(run_until(w, both_closed, 5000));
    CHECK(w->s.stats.handshake_cpu_ns > 0);
    world_free(w);
    tl_pool_free(pool);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
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
static bool all_closed(world *w)
{
    return w->c.closes >= many_target && w->s.closes >= many_target;
}

/* n connections open at once (all handshaken, one exchange each), then all closed. */
static bool all_echoed(world *w)
{
    return w->s.handshakes_ok >= many_target && tl_buf_len(&w->c.got) >= (size_t)many_target * 2;
}

static void many_round(world *w, int n)
{
    w->c.closes = w->s.closes = w->s.handshakes_ok = 0;
    tl_buf_consume(&w->c.got, tl_buf_len(&w->c.got));
    many_target = n;
    tl_conn **conns = calloc((size_t)n, sizeof *conns);
    for (int i = 0; i < n; i++) {
        conns[i] = world_connect(w);
        REQUIRE(conns[i]);
        tl_conn_write(conns[i], "hi", 2);
        if (i % 50 == 0)
            tl_loop_run_once(w->loop, 0);
    }
    CHECK(run_until(w, all_echoed, 60000));
    CHECK_EQ_INT(w->server_conns_open, n);
    for (int i = 0; i < n; i++)
        tl_conn_close(conns[i]);
    CHECK(run_until(w, all_closed, 60000));
    free(conns);
}

TEST(many_connections_no_growth)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
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
    world_free(w);
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
    world *w = world_new(sctx, cctx);
    w->echo = true;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_write(c, "ping", 4);
    echo_target = 4;
    CHECK(run_until(w, echo_back, 5000));
    for (int i = 0; i < 5; i++)
        tl_loop_run_once(w->loop, 5);
    tl_conn *sc = w->s.conn;
    CHECK(sc->wq.data == NULL && c->wq.data == NULL);
    CHECK(sc->engine->pending.data == NULL && c->engine->pending.data == NULL);
    CHECK(sc->err == NULL && sc->engine->err == NULL);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* writev: small pieces leave as one TLS record (one record's overhead on the wire, not three),
 * and arrive in order. */
TEST(writev_coalesces)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    w->echo = true;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_engine_info before, after;
    tl_engine_get_info(tl_conn_engine(c), &before);
    struct iovec iov[3] = {{"HTTP/1.1 ", 9}, {"200 OK\r\n", 8}, {"\r\n", 2}};
    CHECK_EQ_INT(tl_conn_writev(c, iov, 3), 0);
    echo_target = 19;
    CHECK(run_until(w, echo_back, 5000));
    tl_engine_get_info(tl_conn_engine(c), &after);
    /* TLS 1.3 with AES-GCM: 5 header + 19 data + 1 type + 16 tag = 41 bytes for one record. */
    CHECK_EQ_INT(after.bytes_out - before.bytes_out, 41);
    CHECK(memcmp(tl_buf_rptr(&w->c.got), "HTTP/1.1 200 OK\r\n\r\n", 19) == 0);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* 200 connections that never send a ClientHello: the loop sleeps, it does not spin (pitfall 2). */
static int accepted_target;
static bool all_accepted(world *w) { return w->server_conns_open >= accepted_target; }

TEST(silent_connections_do_not_spin)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    world *w = world_new(sctx, NULL);
    int fds[200];
    for (int i = 0; i < 200; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(connect(fds[i], (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    }
    accepted_target = 200;
    CHECK(run_until(w, all_accepted, 5000));
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
    world_free(w);
    tl_tls_ctx_free(sctx);
}

/* The client asks for a KeyUpdate while the server's write is blocked (the client does not read):
 * no deadlock; the server takes it, answers once it can write, and everything arrives. */
static size_t want_total;
static bool got_total(world *w) { return tl_buf_len(&w->c.got) >= want_total; }
static bool server_got_x(world *w) { return tl_buf_len(&w->s.got) >= 1; }

TEST(key_update_while_write_blocked)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
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
    CHECK(run_until(w, server_got_x, 5000));
    tl_conn_resume_read(c);
    want_total = sent;
    CHECK(run_until(w, got_total, 20000));
    bool same = true;
    for (size_t i = 0; same && i < sent / sizeof chunk; i++) {
        tp_pattern(chunk, sizeof chunk, (unsigned)i);
        same = memcmp(tl_buf_rptr(&w->c.got) + i * sizeof chunk, chunk, sizeof chunk) == 0;
    }
    CHECK(same);
    tl_conn_write(w->s.conn, "y", 1); /* the server still writes after the key change */
    want_total = sent + 1;
    CHECK(run_until(w, got_total, 5000));
    tl_conn_close(c);
    CHECK(run_until(w, both_closed, 5000));
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* 1 MiB, close_notify and FIN in one burst: everything is delivered before the clean EOF, even
 * though the hang-up is known at the first event (pitfall 4). */
static bool server_saw_eof(world *w) { return w->s.eofs > 0; }

TEST(burst_then_close_all_delivered)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_conn_pause_read(w->s.conn); /* the burst piles up before the server reads */
    static uint8_t big[1u << 20];
    tp_pattern(big, sizeof big, 6);
    tl_conn_write(c, big, sizeof big);
    tl_conn_close(c);
    for (int i = 0; i < 20; i++)
        tl_loop_run_once(w->loop, 5);
    tl_conn_resume_read(w->s.conn);
    CHECK(run_until(w, server_saw_eof, 10000));
    CHECK(tl_buf_len(&w->s.got) == sizeof big &&
          memcmp(tl_buf_rptr(&w->s.got), big, sizeof big) == 0);
    CHECK_EQ_INT(w->s.eof_how, TL_END_CLEAN);
    CHECK(run_until(w, both_closed, 5000));
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* ---- owner hooks ---- */

static void owner_handshake(tl_conn *c, bool ok, void *owner_data)
{
    log_event(c, owner_data == W && tl_conn_owner_data(c) == W ? (ok ? 'H' : 'h') : 'X');
}

static void owner_close(tl_conn *c, tl_conn_end how, void *owner_data)
{
    (void)how;
    log_event(c, owner_data == W && tl_conn_owner_data(c) == W ? 'O' : 'X');
}

static const tl_conn_owner test_owner = {owner_handshake, owner_close};

static world *owned_world(tl_tls_ctx *sctx, tl_tls_ctx *cctx)
{
    world *w = world_new(sctx, cctx);
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
        world *w = owned_world(sctx, cctx);
        REQUIRE(w);
        w->echo = true;
        tl_conn *c = world_connect(w);
        REQUIRE(c);
        CHECK(tl_conn_owner_data(c) == w);
        tl_conn_write(c, "ping", 4);
        echo_target = 4;
        CHECK(run_until(w, echo_back, 5000));
        tl_conn_close(c);
        CHECK(run_until(w, both_closed, 5000));
        CHECK_STR(w->s.log, tls ? "HACO" : "CO");
        CHECK_STR(w->c.log, tls ? "HACO" : "CO");
        world_free(w);
        tl_tls_ctx_free(sctx);
        tl_tls_ctx_free(cctx);
    }
}

/* A failed verification and a handshake deadline: owner, then application, once each. */
TEST(owner_hooks_failed_and_timeout)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(tl_tls_ctx_set_ca_pem(cctx, tp.other_ca.cert_pem) == 0);
    world *w = owned_world(sctx, cctx);
    REQUIRE(world_connect(w));
    CHECK(run_until(w, both_closed, 5000));
    CHECK_STR(w->c.log, "haCO");
    CHECK_STR(w->s.log, "haCO");
    world_free(w);

    w = owned_world(sctx, NULL);
    w->sopts.handshake_timeout_ms = 150;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.log, "haCO");
    close(fd);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Ended by us during the handshake (abort and close): the owner still hears "failed", from the
 * loop, not inside the call; the application's callbacks are as without an owner. */
TEST(owner_hooks_end_during_handshake)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    for (int how = 0; how < 2; how++) {
        world *w = owned_world(sctx, NULL);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
        CHECK(write(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) == 11);
        CHECK(run_until(w, server_accepted, 5000));
        for (int i = 0; i < 5; i++)
            tl_loop_run_once(w->loop, 10); /* the server reads half a ClientHello */
        REQUIRE(w->s.conn->state == ST_HANDSHAKE);
        if (how)
            tl_conn_close(w->s.conn);
        else
            tl_conn_abort(w->s.conn);
        CHECK_STR(w->s.log, ""); /* nothing inside the API call */
        CHECK(run_until(w, server_closed, 5000));
        CHECK_STR(w->s.log, "hCO");
        CHECK_EQ_INT(w->s.end_how, TL_END_LOCAL);
        close(fd);
        world_free(w);
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
static bool server_in_task(world *w) { return w->s.conn && w->s.conn->state == ST_TASK; }

/* The connection is aborted, or its deadline passes, while a handshake step is on the pool: the
 * owner hears "failed" once; a deadline is a failure for the application too. */
TEST(owner_hooks_during_task)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    for (int deadline = 0; deadline < 2; deadline++) {
        tl_pool *pool = tl_pool_new(1);
        world *w = owned_world(sctx, cctx);
        w->sopts.pool = pool;
        w->sopts.handshake_timeout_ms = deadline ? 150 : 0;
        __atomic_store_n(&blocker_released, 0, __ATOMIC_RELEASE);
        tl_work blocker = {.run = blocker_run, .done = blocker_done};
        tl_pool_submit(pool, w->loop, &blocker);
        REQUIRE(world_connect(w));
        REQUIRE(run_until(w, server_in_task, 5000));
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
        CHECK(run_until(w, server_closed, 5000));
        CHECK_STR(w->s.log, deadline ? "haCO" : "hCO");
        CHECK_EQ_INT(w->s.end_how, deadline ? TL_END_TIMEOUT : TL_END_LOCAL);
        world_free(w);
        tl_pool_free(pool);
    }
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A connect that fails: the owner's close hook all the same (and, TLS, its handshake hook). */
static bool client_closed(world *w) { return w->c.closes > 0; }

TEST(owner_hooks_failed_connect)
{
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    for (int tls = 0; tls < 2; tls++) {
        world *w = owned_world(NULL, tls ? cctx : NULL);
        /* A port nobody listens on: the listener's, closed. */
        tl_io_stop(w->loop, &w->lio);
        close(w->lfd);
        w->lfd = socket(AF_INET, SOCK_STREAM, 0); /* for world_free */
        REQUIRE(world_connect(w));
        CHECK(run_until(w, client_closed, 5000));
        CHECK_EQ_INT(w->c.end_how, TL_END_RESET);
        CHECK_STR(w->c.log, tls ? "hCO" : "CO");
        world_free(w);
    }
    tl_tls_ctx_free(cctx);
}

/* ---- idle deadline ---- */

static uint64_t server_closed_at;
static void note_server_close(tl_conn *c, tl_conn_end how)
{
    cb_close(c, how);
    server_closed_at = tl_loop_now(tl_conn_loop(c));
}

/* Nothing moves after the handshake: the server closes gracefully at the deadline (the client
 * gets close_notify), and the end says timeout. */
TEST(idle_timeout_closes_gracefully)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    w->sopts.idle_timeout_ms = 300;
    w->scbs.on_close = note_server_close;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    tl_loop_update_time(w->loop);
    uint64_t t0 = tl_loop_now(w->loop);
    CHECK(run_until(w, both_closed, 5000));
    uint64_t took = server_closed_at - t0;
    fprintf(stderr, "  idle 300 ms: closed after %llu ms\n", (unsigned long long)took);
    CHECK(took >= 250 && took < 2000);
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.error, "idle timeout");
    CHECK_EQ_INT(w->c.eof_how, TL_END_CLEAN); /* close_notify arrived */
    CHECK_EQ_INT(w->c.end_how, TL_END_CLEAN);
    world_free(w);
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
    if (ticks >= 8 || !W->s.conn || !W->c.conn)
        return;
    /* Alternate: the client writes to the server, then the server to the client. */
    tl_conn_write(ticks % 2 ? W->s.conn : W->c.conn, "t", 1);
    ticks++;
    last_tick_at = tl_loop_now(loop);
    tl_timer_start(loop, t, 100);
}

TEST(idle_timeout_postponed_by_activity)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    w->sopts.idle_timeout_ms = 300;
    w->scbs.on_close = note_server_close;
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    ticks = 0;
    tl_timer_init(&tick_timer, tick_cb, NULL);
    tl_timer_start(w->loop, &tick_timer, 100);
    CHECK(run_until(w, server_closed, 5000));
    tl_timer_stop(w->loop, &tick_timer);
    CHECK_EQ_INT(ticks, 8); /* 800 ms of activity, more than twice the deadline */
    CHECK_EQ_INT(tl_buf_len(&w->s.got), 4);
    CHECK_EQ_INT(tl_buf_len(&w->c.got), 4);
    uint64_t after = server_closed_at - last_tick_at;
    fprintf(stderr, "  closed %llu ms after the last byte\n", (unsigned long long)after);
    CHECK(after >= 250 && after < 2000);
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    world_free(w);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Plain TCP: counted from the accept; the peer sees a FIN, not a reset. */
TEST(idle_timeout_plain_from_accept)
{
    world *w = world_new(NULL, NULL);
    w->sopts.idle_timeout_ms = 200;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0);
    CHECK(run_until(w, server_accepted, 5000));
    /* Still lingering: it waits for our FIN. */
    char buf[10];
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 40 && w->s.closes == 0; i++)
        tl_loop_run_once(w->loop, 10);
    CHECK(read(fd, buf, sizeof buf) == 0); /* the server's FIN */
    close(fd);
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
    CHECK_STR(w->s.error, "idle timeout");
    world_free(w);
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
            world *w = world_new(sctx, cctx);
            w->sopts.send_stall_timeout_ms = 300;
            w->scbs.on_close = note_server_close;
            tl_conn *c = world_connect(w);
            REQUIRE(c && run_until(w, client_open, 5000));
            if (tls)
                REQUIRE(run_until(w, handshaken, 5000));
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
            CHECK(run_until(w, server_closed, 5000));
            uint64_t took = server_closed_at - t_start;
            fprintf(stderr, "  %s%s: aborted after %llu ms\n", tls ? "tls" : "tcp",
                    closing ? ", closing" : "", (unsigned long long)took);
            CHECK(took >= 250 && took < 2000);
            CHECK_EQ_INT(w->s.end_how, TL_END_TIMEOUT);
            CHECK_STR(w->s.error, "send stalled: the peer stopped reading");
            world_free(w);
            tl_tls_ctx_free(sctx);
            tl_tls_ctx_free(cctx);
        }
    }
}

/* A slow reader that keeps taking some of the data is not a stalled one. */
static tl_timer slow_timer;
static void slow_resume_cb(tl_loop *loop, tl_timer *t)
{
    if (W->c.conn)
        tl_conn_resume_read(W->c.conn);
    tl_timer_start(loop, t, 10);
}

TEST(send_stall_spares_slow_reader)
{
    for (int tls = 0; tls < 2; tls++) {
        tl_tls_ctx *sctx = tls ? tp_server_ctx(&tp.ecdsa, 0, 0) : NULL;
        tl_tls_ctx *cctx = tls ? tp_client_ctx(0, 0) : NULL;
        world *w = world_new(sctx, cctx);
        w->sopts.send_stall_timeout_ms = 400;
        w->on_client_read = slow_reader; /* 8 KiB per 10 ms at most */
        w->copts.read_chunk = 8192;
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, client_open, 5000));
        if (tls)
            REQUIRE(run_until(w, handshaken, 5000));
        int small = 4096;
        setsockopt(tl_conn_fd(w->s.conn), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        tl_timer_init(&slow_timer, slow_resume_cb, NULL);
        tl_timer_start(w->loop, &slow_timer, 10);
        prod = (producer){.total = 768u * 1024u}; /* over a second: more than twice the deadline */
        w->scbs.on_drain = drain_more;
        tl_loop_update_time(w->loop);
        t_start = tl_loop_now(w->loop);
        produce(w->s.conn, &prod);
        CHECK(run_until(w, got_all_prod, 20000));
        tl_timer_stop(w->loop, &slow_timer);
        fprintf(stderr, "  %s: %zu bytes in %llu ms\n", tls ? "tls" : "tcp", prod.total,
                (unsigned long long)(tl_loop_now(w->loop) - t_start));
        CHECK_EQ_INT(tl_buf_len(&w->c.got), prod.total);
        CHECK(prod.paused_by_queue); /* output did wait for the peer */
        CHECK_EQ_INT(w->s.closes, 0);
        CHECK_STR(w->s.error, "");
        world_free(w);
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
static bool server_got_want(world *w) { return tl_buf_len(&w->s.got) >= server_want; }

static void idle_for(world *w, int ms)
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
        world *w = world_new(sctx, cctx);
        w->sopts.key_update_limit = deflt ? 0 : 20;
        tl_conn *c = world_connect(w);
        REQUIRE(c && run_until(w, handshaken, 5000));
        if (deflt) {
            CHECK_EQ_INT(send_key_updates(c, 90), 90);
            server_want = 90;
            CHECK(run_until(w, server_got_want, 5000));
            idle_for(w, 1050); /* the next second */
            CHECK_EQ_INT(send_key_updates(c, 90), 90);
            server_want = 180;
            CHECK(run_until(w, server_got_want, 5000));
            CHECK_EQ_INT(w->s.closes, 0);
            tl_engine_info info;
            tl_engine_get_info(tl_conn_engine(w->s.conn), &info);
            CHECK_EQ_INT(info.key_updates_received, 180);
        }
        send_key_updates(c, deflt ? 300 : 25); /* too many in this second */
        CHECK(run_until(w, both_closed, 5000));
        CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
        CHECK_STR(w->s.error, "peer sent too many KeyUpdates");
        CHECK(w->c.end_how == TL_END_RESET || w->c.end_how == TL_END_TRUNCATED);
        world_free(w);
    }
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* The same flood read a few at a time (the loop runs between small batches): counted across
 * reads, dropped all the same. */
TEST(key_update_flood_in_batches)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    world *w = world_new(sctx, cctx);
    tl_conn *c = world_connect(w);
    REQUIRE(c && run_until(w, handshaken, 5000));
    int sent = 0;
    for (int i = 0; i < 30 && w->s.closes == 0; i++) {
        sent += send_key_updates(c, 10);
        for (int k = 0; k < 3; k++)
            tl_loop_run_once(w->loop, 1);
    }
    CHECK(run_until(w, server_closed, 5000));
    CHECK_EQ_INT(w->s.end_how, TL_END_TLS_ERROR);
    CHECK_STR(w->s.error, "peer sent too many KeyUpdates");
    fprintf(stderr, "  dropped after %d KeyUpdates sent, %zu read\n", sent,
            tl_buf_len(&w->s.got));
    CHECK(tl_buf_len(&w->s.got) <= 110); /* the rest was never delivered */
    world_free(w);
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
    RUN(eof_without_close_notify);
    RUN(reset_mid_stream);
    RUN(reset_mid_handshake);
    RUN(handshake_deadline);
    RUN(handshake_failure_reasons);
    RUN(cancel_read_then_close);
    RUN(half_close_tls13);
    RUN(close_inside_read_callback);
    RUN(writev_close_small_and_large);
    RUN(deferred_small_writes);
    RUN(close_before_up_delivers_written_data);
    RUN(linger_deadline);
    RUN(linger_off_closes_at_once);
    RUN(linger_off_lingers_for_unread_input);
    RUN(linger_off_lingers_after_a_pause);
    RUN(delegated_handshakes);
    RUN(many_connections_no_growth);
    RUN(idle_connection_is_small);
    RUN(writev_coalesces);
    RUN(silent_connections_do_not_spin);
    RUN(key_update_while_write_blocked);
    RUN(burst_then_close_all_delivered);
    RUN(owner_hooks_order);
    RUN(owner_hooks_failed_and_timeout);
    RUN(owner_hooks_end_during_handshake);
    RUN(owner_hooks_during_task);
    RUN(owner_hooks_failed_connect);
    RUN(idle_timeout_closes_gracefully);
    RUN(idle_timeout_postponed_by_activity);
    RUN(idle_timeout_plain_from_accept);
    RUN(send_stall_aborts_non_reader);
    RUN(send_stall_spares_slow_reader);
    RUN(key_update_rate_cap);
    RUN(key_update_flood_in_batches);
    TEST_MAIN_END();
}
