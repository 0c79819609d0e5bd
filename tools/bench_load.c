/* bench_load.c - the load `tlsloop bench` generates: each thread's loop and its connection slots,
 * one operation at a time (a request, a new connection, a handshake), or with --h2 up to -m
 * requests at once on a slot's HTTP/2 connection, at full speed or on the --rate schedule, with
 * the figures of the measured window and the errors by kind. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <tlsloop/client.h>

#include "bench.h"
#include "tools.h"

#define STOP_GRACE_MS 2000          /* how long slots get to close at the end */
#define RATE_SLICE_NS 100000u       /* --rate: the scheduler slice its threads ask for */

static bool measuring(const bench *b, uint64_t t)
{
    return t >= b->t_measure && t <= b->t_end;
}

/* Count n errors of this kind; kinds beyond the table's size are counted as "other". */
void bench_err_add(errtab *e, const char *kind, uint64_t n)
{
    for (int i = 0; i < e->used; i++)
        if (!strcmp(e->kind[i], kind)) {
            e->n[i] += n;
            return;
        }
    int i = e->used < MAX_ERROR_KINDS ? e->used++ : MAX_ERROR_KINDS - 1;
    if (e->used == MAX_ERROR_KINDS && i == MAX_ERROR_KINDS - 1)
        snprintf(e->kind[i], sizeof e->kind[i], "other");
    else
        snprintf(e->kind[i], sizeof e->kind[i], "%s", kind);
    e->n[i] += n;
}

static void error(slot *s, const char *kind)
{
    worker *w = s->w;
    if (!measuring(w->b, now_ns()))
        return;
    bench_err_add(&w->errs, kind, 1);
    atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
}

/* The kind of a failed connection attempt, by what the client says. */
static void connect_error(slot *s, tl_client_error err, const char *msg)
{
    char kind[80];
    switch (err) {
    case TL_CLIENT_CONNECT:
        if (strstr(msg, "Cannot assign requested address") || strstr(msg, "source address"))
            snprintf(kind, sizeof kind, "EADDRNOTAVAIL (the generator ran out of ports)");
        else if (strstr(msg, "refused"))
            snprintf(kind, sizeof kind, "refused");
        else
            snprintf(kind, sizeof kind, "connect: %.60s", msg);
        break;
    case TL_CLIENT_TIMEOUT:
        snprintf(kind, sizeof kind, "timeout (connect or handshake)");
        break;
    case TL_CLIENT_CLOSED:
        snprintf(kind, sizeof kind, "%s during the handshake",
                 strstr(msg, "reset") ? "reset" : "closed");
        break;
    case TL_CLIENT_TLS:
    case TL_CLIENT_VERIFY:
        snprintf(kind, sizeof kind, "tls: %.70s", msg);   /* the alert by name */
        break;
    default:
        snprintf(kind, sizeof kind, "%s", tl_client_error_name(err));
    }
    error(s, kind);
}

/* ---- operations ------------------------------------------------------------------------- */

static void slot_start(slot *s, uint64_t t_start);
static void slot_next(slot *s);

static bool may_start(worker *w)
{
    bench *b = w->b;
    if (w->stopping || now_ns() > b->t_end)
        return false;   /* nothing begins after the measured window: the server's counts agree */
    if (!b->total_n)
        return true;
    uint64_t n = atomic_fetch_add(&b->started_n, 1);
    if (n < b->total_n)
        return true;
    atomic_fetch_sub(&b->started_n, 1);
    return false;
}

/* One operation, begun at t_start, ended (successfully or not): counters, then the next. */
static void finished_at(slot *s, uint64_t t_start, bool ok, uint64_t bytes)
{
    worker *w = s->w;
    bench *b = w->b;
    uint64_t t = now_ns();
    if (ok && measuring(b, t)) {
        hist_add(&w->lat, t - t_start);
        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->bytes, bytes, memory_order_relaxed);
    }
    if (b->total_n && atomic_fetch_add(&b->finished_n, 1) + 1 >= b->total_n)
        atomic_store(&b->all_done, true);
}

static void finished(slot *s, bool ok, uint64_t bytes)
{
    finished_at(s, s->t_start, ok, bytes);
}

/* A response's status, counted by class; 4xx and 5xx are errors too. */
static void count_status(slot *s, int status)
{
    if (measuring(s->w->b, now_ns()))
        s->w->status[status / 100 % 6]++;
    if (status >= 400) {
        char kind[24];
        snprintf(kind, sizeof kind, "HTTP %dxx", status / 100);
        error(s, kind);
    }
}

/* An exchange that did not end well, by kind (a close of ours is none). */
static void result_error(slot *s, tl_http_result res, const char *why)
{
    if (res == TL_HTTP_DONE || res == TL_HTTP_CLOSED)
        return;
    char kind[80];
    switch (res) {
    case TL_HTTP_TIMED_OUT: snprintf(kind, sizeof kind, "timeout (response)"); break;
    case TL_HTTP_TRUNCATED: snprintf(kind, sizeof kind, "truncated response"); break;
    case TL_HTTP_BAD_RESPONSE: snprintf(kind, sizeof kind, "bad response"); break;
    default:
        if (!strncmp(why, "HTTP/2", 6))   /* what nghttp2 said: not HTTP/2, or broke its rules */
            snprintf(kind, sizeof kind, "%.79s", why);
        else
            snprintf(kind, sizeof kind, "%s", strstr(why, "refused the stream") ? "stream refused"
                                              : strstr(why, "reset") ? "reset"
                                                                     : "connection failed");
    }
    error(s, kind);
}

static void on_head(tl_client_http *x, const tl_http_response *r, void *data)
{
    (void)x;
    slot *s = data;
    s->status = r->status;
    count_status(s, r->status);
}

static void on_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    (void)x;
    (void)p;
    slot *s = data;
    atomic_fetch_add_explicit(&s->w->bytes, measuring(s->w->b, now_ns()) ? n : 0,
                              memory_order_relaxed);
}

static void on_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    slot *s = data;
    worker *w = s->w;
    bool ok = res == TL_HTTP_DONE && s->status > 0 && s->status < 400;
    result_error(s, res, why);
    finished(s, ok, 0);
    if (w->b->mode == M_KEEPALIVE && tl_client_http_reusable(x) && !w->stopping) {
        s->st = S_READY;
        slot_next(s);
        return;
    }
    s->st = S_CLOSING;
    tl_client_http_close(x);   /* with "Connection: close" the server closes first */
}

static void on_close(tl_client_http *x, tl_conn_end how, void *data)
{
    (void)x;
    (void)how;
    slot *s = data;
    s->x = NULL;
    s->c = NULL;
    s->st = S_IDLE;
    s->w->open--;
    slot_next(s);
}

static const tl_client_http_cbs HTTP_CBS = {on_head, on_body, on_done, on_close};

/* --handshake-only: the connection's own close ends the operation. */
static void hs_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    slot *s = tl_conn_data(c);
    s->c = NULL;
    s->st = S_IDLE;
    s->w->open--;
    finished(s, true, 0);
    slot_next(s);
}

static const tl_conn_cbs HS_CBS = {.on_close = hs_close};
static const tl_conn_cbs NONE_CBS = {0};

/* ---- --h2: -m streams on each slot's connection ------------------------------------------- */

/* End the slot's connection gracefully (on_close follows). */
static void slot_close(slot *s)
{
    s->st = S_CLOSING;
    if (s->h2)
        tl_client_h2_close(s->h2);
    else if (s->x)
        tl_client_http_close(s->x);
    else if (s->c)
        tl_conn_close(s->c);
}

/* A request on a new stream, counted from t_start. false when it could not be sent (counted as
 * an error: the operation had begun). */
static bool h2_send(slot *s, uint64_t t_start)
{
    bench *b = s->w->b;
    h2op *op = NULL;
    for (int i = 0; i < b->streams && !op; i++)
        if (!s->ops[i].used)
            op = &s->ops[i];
    if (op) {
        *op = (h2op){.s = s, .t_start = t_start, .used = true};
        s->inflight++;
        if (tl_client_h2_request(s->h2, b->method, b->u.authority, b->u.target, b->headers,
                                 b->timeout_ms, op) > 0)
            return true;
        op->used = false;
        s->inflight--;
    }
    error(s, "request not sent");
    finished_at(s, t_start, false, 0);
    return false;
}

/* Keep -m requests under way while there is work; close when there is none. */
static void h2_fill(slot *s)
{
    worker *w = s->w;
    bench *b = w->b;
    while (s->h2 && s->st == S_READY && s->inflight < b->streams && !w->stopping &&
           tl_client_h2_reusable(s->h2)) {
        uint64_t t;
        if (b->rate > 0) {
            if (!w->qlen)
                break;   /* the next tick brings one */
            t = w->queue[w->qhead];
            w->qhead = (w->qhead + 1) % RATE_QUEUE_MAX;
            w->qlen--;
        } else if (may_start(w)) {
            t = now_ns();
        } else {
            break;
        }
        if (!h2_send(s, t))
            break;
    }
    /* Nothing under way and nothing to begin here (at a rate: unless ticks bring more). */
    if (s->h2 && s->st == S_READY && s->inflight == 0 &&
        (b->rate <= 0 || w->stopping || !tl_client_h2_reusable(s->h2)))
        slot_close(s);
}

static void h2_head(tl_client_h2 *h, const tl_http_response *r, void *req)
{
    (void)h;
    h2op *op = req;
    op->status = r->status;
    count_status(op->s, r->status);
}

static void h2_body(tl_client_h2 *h, const uint8_t *p, size_t n, void *req)
{
    (void)h;
    (void)p;
    h2op *op = req;
    atomic_fetch_add_explicit(&op->s->w->bytes, measuring(op->s->w->b, now_ns()) ? n : 0,
                              memory_order_relaxed);
}

static void h2_done(tl_client_h2 *h, tl_http_result res, const char *why, void *req)
{
    (void)h;
    h2op *op = req;
    slot *s = op->s;
    worker *w = s->w;
    bench *b = w->b;
    op->used = false;
    s->inflight--;
    if (res == TL_HTTP_CONN_FAILED && strstr(why, "refused the stream") && !w->stopping) {
        /* Not processed (above a GOAWAY's last stream, as nginx's keepalive_requests ends a
         * connection; or RST_STREAM REFUSED_STREAM): sent again, on this connection or the
         * slot's next, still counted from its first start. */
        if (measuring(b, now_ns()))
            atomic_fetch_add_explicit(&w->retried, 1, memory_order_relaxed);
        if (b->rate > 0 && w->qlen < RATE_QUEUE_MAX) {
            w->qhead = (w->qhead + RATE_QUEUE_MAX - 1) % RATE_QUEUE_MAX;
            w->queue[w->qhead] = op->t_start;
            w->qlen++;
        } else if (b->total_n) {
            atomic_fetch_sub(&b->started_n, 1);
        }
        h2_fill(s);
        return;
    }
    bool ok = res == TL_HTTP_DONE && op->status > 0 && op->status < 400;
    result_error(s, res, why);
    finished_at(s, op->t_start, ok, 0);
    h2_fill(s);
}

static void h2_close(tl_client_h2 *h, tl_conn_end how, void *data)
{
    (void)h;
    (void)how;
    slot *s = data;
    s->h2 = NULL;
    s->c = NULL;
    s->st = S_IDLE;
    s->w->open--;
    slot_next(s);
}

static const tl_client_h2_cbs H2_CBS = {h2_head, h2_body, h2_done, h2_close};

/* The connection is up: HTTP/2 if the server selected h2 (or, plain, by prior knowledge). */
static void h2_start(slot *s, tl_conn *c)
{
    bench *b = s->w->b;
    tl_engine *e = tl_conn_engine(c);
    tl_engine_info info = {0};
    if (e)
        tl_engine_get_info(e, &info);
    if (!(s->h2 = tl_client_h2_new(c, &H2_CBS, s))) {
        error(s, "out of memory");
        return;   /* the connection closes; nothing calls back for this slot: it stays idle */
    }
    s->st = S_READY;
    if (e && strcmp(info.alpn, "h2") != 0) {
        /* As h2load: no HTTP/2, no run (every connection would fail the same way). */
        char kind[80];
        snprintf(kind, sizeof kind, "the server did not select h2 by ALPN (it chose %.20s)",
                 info.alpn[0] ? info.alpn : "none");
        error(s, kind);
        finished(s, false, 0);
        atomic_store(&b->all_done, true);
        slot_close(s);
        return;
    }
    h2_send(s, s->t_start);   /* the operation slot_start began */
    h2_fill(s);
}

static void send_request(slot *s)
{
    bench *b = s->w->b;
    s->status = 0;
    s->st = S_BUSY;
    bool keep = b->mode == M_KEEPALIVE;
    if (tl_client_http_request(s->x, b->method, b->u.target, b->u.authority, b->headers, keep,
                               b->timeout_ms) != 0) {
        error(s, "request not sent");
        finished(s, false, 0);
        s->st = S_CLOSING;
        tl_client_http_close(s->x);
    }
}

static void on_connect(tl_conn *c, tl_client_error err, const char *msg, void *data)
{
    slot *s = data;
    worker *w = s->w;
    bench *b = w->b;
    s->dial = NULL;
    uint64_t t = now_ns();
    if (!c) {
        s->st = S_IDLE;
        w->open--;
        if (err != TL_CLIENT_CANCELLED) {
            connect_error(s, err, msg);
            finished(s, false, 0);
        }
        slot_next(s);
        return;
    }
    s->c = c;
    tl_engine *e = tl_conn_engine(c);
    if (e && measuring(b, t)) {
        tl_engine_info info;
        tl_engine_get_info(e, &info);
        tl_conn_stats st;
        tl_conn_get_stats(c, &st);
        atomic_fetch_add_explicit(info.resumed ? &w->resumed : &w->full, 1, memory_order_relaxed);
        if (b->mode == M_NEWCONN && info.resumed)
            error(s, "resumed although --new-conn asked for full handshakes");
        hist_add(&w->handshake, st.handshake_ns);
        uint64_t setup = t - s->t_dial;
        hist_add(&w->connect, setup > st.handshake_ns ? setup - st.handshake_ns : 0);
    } else if (!e && measuring(b, t)) {
        hist_add(&w->connect, t - s->t_dial);
    }
    if (b->h2) {
        h2_start(s, c);
        return;
    }
    if (b->mode == M_HSONLY) {
        tl_conn_set_data(c, s);
        s->st = S_CLOSING;
        tl_conn_close(c);   /* close_notify, then the server's: hs_close ends the operation */
        return;
    }
    s->x = tl_client_http_new(c, &HTTP_CBS, s);
    if (!s->x) {
        error(s, "out of memory");
        return;   /* the connection closes; nothing calls back for this slot: it stays idle */
    }
    send_request(s);
}

static void dial(slot *s)
{
    worker *w = s->w;
    bench *b = w->b;
    tl_client_target t = {.host = b->u.host, .port = b->u.port, .tls = b->u.tls,
                          .cbs = b->mode == M_HSONLY ? &HS_CBS : &NONE_CBS,
                          .session_key = b->mode == M_RESUME ? s->key : NULL};
    if (b->source_ips) {
        t.local_addr = (struct sockaddr *)&s->src;
        t.local_addrlen = sizeof s->src;
    }
    char err[200];
    s->st = S_CONNECTING;
    s->t_dial = now_ns();
    w->open++;
    if (!(s->dial = tl_client_connect(b->cl, w->loop, &t, on_connect, s, err, sizeof err))) {
        s->st = S_IDLE;
        w->open--;
        error(s, "connect: arguments refused");
    }
}

/* Begin an operation on this slot, counting from t_start. */
static void slot_start(slot *s, uint64_t t_start)
{
    s->t_start = t_start;
    if (s->st == S_READY && s->h2)
        h2_send(s, t_start);
    else if (s->st == S_READY)
        send_request(s);
    else
        dial(s);
}

/* The slot is free (idle, or ready on a kept connection): what comes next. */
static void slot_next(slot *s)
{
    worker *w = s->w;
    bench *b = w->b;
    if (w->stopping) {
        if (s->st == S_READY)
            slot_close(s);
        if (!w->open)
            tl_loop_stop(w->loop);
        return;
    }
    if (b->rate > 0) {
        if (w->qlen) {   /* a request that waited for a slot, counted from when it was due */
            uint64_t due = w->queue[w->qhead];
            w->qhead = (w->qhead + 1) % RATE_QUEUE_MAX;
            w->qlen--;
            slot_start(s, due);
        }
        return;   /* else the next tick brings one */
    }
    if (may_start(w))
        slot_start(s, now_ns());
    else if (s->st == S_READY)
        slot_close(s);
}

static void arm_tick(worker *w)
{
    struct itimerspec its = {.it_value = {(time_t)(w->next_due / 1000000000u),
                                          (long)(w->next_due % 1000000000u)}};
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* --rate: start what is due, on a free slot, or queue it; then wait for the next due time. */
void bench_on_tick(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    worker *w = io->data;
    uint64_t expirations;
    if (read(w->tfd, &expirations, sizeof expirations) < 0 && errno == EAGAIN)
        return;
    uint64_t now = now_ns();
    while (w->next_due <= now && !w->stopping) {
        uint64_t due = w->next_due;
        w->next_due = (uint64_t)((double)w->next_due + w->interval_ns);
        if (!may_start(w))
            break;
        slot *free_slot = NULL;
        for (int i = 0; i < w->nslots && !free_slot; i++) {
            slot *c = &w->slots[i];
            if (c->st == S_IDLE ||
                (c->st == S_READY && (!c->h2 || (c->inflight < w->b->streams &&
                                                 tl_client_h2_reusable(c->h2)))))
                free_slot = c;
        }
        if (free_slot) {
            if (measuring(w->b, now))
                hist_add(&w->lag, now - due);   /* how late the generator itself was */
            slot_start(free_slot, due);
        } else if (w->qlen < RATE_QUEUE_MAX) {
            w->queue[(w->qhead + w->qlen) % RATE_QUEUE_MAX] = due;
            w->qlen++;
        } else {
            slot tmp = {.w = w};
            error(&tmp, "the rate outran every slot and the queue (raise -c)");
        }
    }
    if (!w->stopping)
        arm_tick(w);
}

/* ---- threads ---------------------------------------------------------------------------- */

void bench_on_stop_deadline(tl_loop *loop, tl_timer *t)
{
    (void)t;
    tl_loop_stop(loop);   /* slots that could not close in time are abandoned */
}

void bench_on_stop(tl_loop *loop, tl_work *work)
{
    worker *w = work->data;
    w->stopping = true;
    if (w->tfd >= 0)
        tl_io_stop(loop, &w->tick);
    for (int i = 0; i < w->nslots; i++) {
        slot *s = &w->slots[i];
        if (s->dial)
            tl_client_cancel(s->dial);
        else if ((s->x || s->h2 || s->c) && s->st != S_CLOSING)
            slot_close(s);
    }
    if (!w->open)
        tl_loop_stop(loop);
    tl_timer_start(loop, &w->stop_timer, STOP_GRACE_MS);
}

void *bench_worker_main(void *arg)
{
    worker *w = arg;
    if (w->b->rate > 0) {
        /* A latency client shares its CPU with other load (a flood generator, W6): with a
         * short slice its wake-ups preempt that load instead of waiting out a default slice,
         * so what it measures is the server's delay, not its own. Best effort. */
        if (!w->b->default_slice)
            tl_thread_set_slice(RATE_SLICE_NS, NULL, 0);
        w->next_due = w->b->t0 + (uint64_t)(w->interval_ns * w->id / w->b->threads);
        tl_io_set(w->loop, &w->tick, TL_READABLE);
        arm_tick(w);
    } else {
        for (int i = 0; i < w->nslots; i++)
            slot_next(&w->slots[i]);
    }
    tl_loop_run(w->loop);
    if (w->tfd >= 0)
        tl_io_stop(w->loop, &w->tick);
    tl_timer_stop(w->loop, &w->stop_timer);
    return NULL;
}
