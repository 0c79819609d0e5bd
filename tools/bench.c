/* bench.c - `tlsloop bench URL`: a TLS load generator on the client API (tlsloop/client.h) that
 * says what TLS costs: full and resumed handshakes counted apart (and checked), latency from the
 * intended send time at a fixed rate, connect and handshake times, errors by kind, and whether
 * the generator itself was the bottleneck.
 *
 * Threads: one loop per thread (-t), each with its share of the connection slots (-c) and of
 * the rate; the main thread prints progress and, at the end, merges the threads' figures. A slot
 * is one connection at a time: kept alive for request after request (the default), or a new one
 * per request (--new-conn: full handshakes only; --resume: each slot resumes its own previous
 * session), or a handshake and a close_notify with no HTTP at all (--handshake-only).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <tlsloop/client.h>
#include <tlsloop/server.h>

#include "bench.h"
#include "tools.h"

#define MAX_ERROR_KINDS 24
#define RATE_QUEUE_MAX (1u << 20)   /* due requests waiting for a free slot, per thread */
#define STOP_GRACE_MS 2000          /* how long slots get to close at the end */
#define RATE_SLICE_NS 100000u       /* --rate: the scheduler slice its threads ask for */

typedef enum { M_KEEPALIVE, M_NEWCONN, M_RESUME, M_HSONLY } mode_t_;
static const char *const MODE_NAMES[] = {"keep-alive", "new connection per request (full "
                                         "handshakes)", "new connection per request (resumed)",
                                         "handshake only"};

typedef struct errtab {
    char kind[MAX_ERROR_KINDS][80];
    uint64_t n[MAX_ERROR_KINDS];
    int used;
} errtab;

typedef struct bench bench;
typedef struct worker worker;

enum { S_IDLE, S_CONNECTING, S_READY, S_BUSY, S_CLOSING };

typedef struct slot {
    worker *w;
    int index;
    int st;
    tl_client_dial *dial;
    tl_conn *c;
    tl_client_http *x;
    uint64_t t_start;              /* the operation's start: its intended time at a fixed rate */
    uint64_t t_dial;               /* when this connection's attempt began */
    int status;
    char key[80];                  /* its own session key (--resume) */
    struct sockaddr_in src;        /* --source-ips */
} slot;

struct worker {
    bench *b;
    int id;
    pthread_t th;
    tl_loop *loop;
    slot *slots;
    int nslots;
    int tfd;                       /* --rate: a timerfd armed for the next due request (the
                                      loop's timers count milliseconds; this one nanoseconds) */
    tl_io tick;
    double interval_ns;
    uint64_t next_due;
    uint64_t *queue;               /* due times waiting for a slot (a ring) */
    size_t qhead, qlen;
    tl_work stop_work;
    tl_timer stop_timer;
    bool stopping;
    int open;                      /* slots not idle */
    _Atomic uint64_t done, full, resumed, errors, bytes;   /* for progress (measured window) */
    uint64_t status[6];
    hist lat, connect, handshake, lag;
    errtab errs;
};

struct bench {
    url u;
    tl_client *cl;
    mode_t_ mode;
    int threads, conns;
    uint64_t duration_ms, warmup_ms, total_n;
    double rate;
    uint32_t timeout_ms;
    const char *method;
    char headers[4096];
    int source_ips;
    bool json, quiet;
    worker *w;
    uint64_t t0, t_measure, t_end;
    _Atomic uint64_t started_n;    /* -n: operations begun */
    _Atomic uint64_t finished_n;
    _Atomic bool all_done;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool measuring(const bench *b, uint64_t t)
{
    return t >= b->t_measure && t <= b->t_end;
}

/* Count n errors of this kind; kinds beyond the table's size are counted as "other". */
static void err_add(errtab *e, const char *kind, uint64_t n)
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
    err_add(&w->errs, kind, 1);
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

/* One operation ended (successfully or not): counters, then the next. */
static void finished(slot *s, bool ok, uint64_t bytes)
{
    worker *w = s->w;
    bench *b = w->b;
    uint64_t t = now_ns();
    if (ok && measuring(b, t)) {
        hist_add(&w->lat, t - s->t_start);
        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->bytes, bytes, memory_order_relaxed);
    }
    if (b->total_n && atomic_fetch_add(&b->finished_n, 1) + 1 >= b->total_n)
        atomic_store(&b->all_done, true);
}

static void on_head(tl_client_http *x, const tl_http_response *r, void *data)
{
    (void)x;
    slot *s = data;
    s->status = r->status;
    if (measuring(s->w->b, now_ns()))
        s->w->status[r->status / 100 % 6]++;
    if (r->status >= 400) {
        char kind[24];
        snprintf(kind, sizeof kind, "HTTP %dxx", r->status / 100);
        error(s, kind);
    }
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
    if (res != TL_HTTP_DONE && res != TL_HTTP_CLOSED) {
        char kind[80];
        switch (res) {
        case TL_HTTP_TIMED_OUT: snprintf(kind, sizeof kind, "timeout (response)"); break;
        case TL_HTTP_TRUNCATED: snprintf(kind, sizeof kind, "truncated response"); break;
        case TL_HTTP_BAD_RESPONSE: snprintf(kind, sizeof kind, "bad response"); break;
        default:
            snprintf(kind, sizeof kind, "%s", strstr(why, "reset") ? "reset" : "connection failed");
        }
        error(s, kind);
    }
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
    if (s->st == S_READY)
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
        if (s->st == S_READY) {
            s->st = S_CLOSING;
            tl_client_http_close(s->x);
        }
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
    else if (s->st == S_READY) {
        s->st = S_CLOSING;
        tl_client_http_close(s->x);
    }
}

static void arm_tick(worker *w)
{
    struct itimerspec its = {.it_value = {(time_t)(w->next_due / 1000000000u),
                                          (long)(w->next_due % 1000000000u)}};
    timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* --rate: start what is due, on a free slot, or queue it; then wait for the next due time. */
static void on_tick(tl_loop *loop, tl_io *io, unsigned events)
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
        for (int i = 0; i < w->nslots && !free_slot; i++)
            if (w->slots[i].st == S_IDLE || w->slots[i].st == S_READY)
                free_slot = &w->slots[i];
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

static void on_stop_deadline(tl_loop *loop, tl_timer *t)
{
    (void)t;
    tl_loop_stop(loop);   /* slots that could not close in time are abandoned */
}

static void on_stop(tl_loop *loop, tl_work *work)
{
    worker *w = work->data;
    w->stopping = true;
    if (w->tfd >= 0)
        tl_io_stop(loop, &w->tick);
    for (int i = 0; i < w->nslots; i++) {
        slot *s = &w->slots[i];
        if (s->dial)
            tl_client_cancel(s->dial);
        else if (s->x && s->st != S_CLOSING) {
            s->st = S_CLOSING;
            tl_client_http_close(s->x);
        } else if (s->c && s->st != S_CLOSING) {
            s->st = S_CLOSING;
            tl_conn_close(s->c);
        }
    }
    if (!w->open)
        tl_loop_stop(loop);
    tl_timer_start(loop, &w->stop_timer, STOP_GRACE_MS);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (w->b->rate > 0) {
        /* A latency client shares its CPU with other load (a flood generator, W6): with a
         * short slice its wake-ups preempt that load instead of waiting out a default slice,
         * so what it measures is the server's delay, not its own. Best effort. */
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

/* ---- the report ------------------------------------------------------------------------- */

static void fmt_ns(char *buf, size_t len, uint64_t ns)
{
    if (ns < 1000000)
        snprintf(buf, len, "%.0f us", (double)ns / 1e3);
    else if (ns < 10000000000ull)
        snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.1f s", (double)ns / 1e9);
}

static void text_percentiles(const char *name, const hist *h)
{
    if (!h->count)
        return;
    static const double ps[] = {50, 90, 99, 99.9};
    static const char *const names[] = {"p50", "p90", "p99", "p99.9"};
    printf("  %-12s", name);
    char v[32];
    for (int i = 0; i < 4; i++) {
        fmt_ns(v, sizeof v, hist_percentile(h, ps[i]));
        printf(" %s %s ", names[i], v);
    }
    fmt_ns(v, sizeof v, h->max);
    printf(" max %s\n", v);
}

static void json_percentiles(const char *name, const hist *h, bool comma)
{
    printf("  \"%s\": {\"count\": %llu, \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, "
           "\"p99.9\": %.4f, \"max\": %.4f, \"mean\": %.4f}%s\n",
           name, (unsigned long long)h->count, hist_percentile(h, 50) / 1e6,
           hist_percentile(h, 90) / 1e6, hist_percentile(h, 99) / 1e6,
           hist_percentile(h, 99.9) / 1e6, h->max / 1e6,
           h->count ? (double)h->sum / (double)h->count / 1e6 : 0.0, comma ? "," : "");
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

typedef struct totals {
    uint64_t done, full, resumed, bytes, errors, status[6];
    hist lat, connect, handshake, lag;
    errtab errs;
    double seconds, cpu_pct;
    bool saturated;
} totals;

static void report(bench *b, totals *t, const char *url_text)
{
    double s = t->seconds > 0 ? t->seconds : 1;
    if (b->json) {
        printf("{\n  \"url\": ");
        json_string(url_text);
        printf(",\n  \"mode\": \"%s\",\n  \"threads\": %d,\n  \"connections\": %d,\n"
               "  \"seconds\": %.3f,\n  \"rate\": %.1f,\n  \"requests\": %llu,\n"
               "  \"requests_per_s\": %.1f,\n  \"handshakes\": {\"full\": %llu, \"resumed\": %llu, "
               "\"full_per_s\": %.1f, \"resumed_per_s\": %.1f},\n  \"bytes\": %llu,\n"
               "  \"bytes_per_s\": %.1f,\n  \"status\": {\"1xx\": %llu, \"2xx\": %llu, "
               "\"3xx\": %llu, \"4xx\": %llu, \"5xx\": %llu},\n",
               b->mode == M_KEEPALIVE ? "keep-alive" : b->mode == M_NEWCONN ? "new-conn"
               : b->mode == M_RESUME ? "resume" : "handshake-only",
               b->threads, b->conns, t->seconds, b->rate, (unsigned long long)t->done,
               (double)t->done / s, (unsigned long long)t->full, (unsigned long long)t->resumed,
               (double)t->full / s, (double)t->resumed / s, (unsigned long long)t->bytes,
               (double)t->bytes / s, (unsigned long long)t->status[1],
               (unsigned long long)t->status[2], (unsigned long long)t->status[3],
               (unsigned long long)t->status[4], (unsigned long long)t->status[5]);
        json_percentiles("latency_ms", &t->lat, true);
        json_percentiles("connect_ms", &t->connect, true);
        json_percentiles("handshake_ms", &t->handshake, true);
        json_percentiles("send_lag_ms", &t->lag, true);
        printf("  \"errors\": {");
        for (int i = 0; i < t->errs.used; i++) {
            printf("%s", i ? ", " : "");
            json_string(t->errs.kind[i]);
            printf(": %llu", (unsigned long long)t->errs.n[i]);
        }
        printf("},\n  \"errors_total\": %llu,\n  \"generator_cpu_percent\": %.1f,\n"
               "  \"generator_saturated\": %s\n}\n", (unsigned long long)t->errors, t->cpu_pct,
               t->saturated ? "true" : "false");
        return;
    }
    printf("tlsloop bench %s: %s, %d thread%s, %d connection%s, %.1f s measured", url_text,
           MODE_NAMES[b->mode], b->threads, b->threads == 1 ? "" : "s", b->conns,
           b->conns == 1 ? "" : "s", t->seconds);
    if (b->warmup_ms)
        printf(" after %.1f s of warm-up", (double)b->warmup_ms / 1e3);
    if (b->rate > 0)
        printf(", at %.0f/s (latency from the intended send time)", b->rate);
    printf("\n");
    if (b->mode != M_HSONLY)
        printf("  requests     %llu (%.1f/s); 2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu\n",
               (unsigned long long)t->done, (double)t->done / s, (unsigned long long)t->status[2],
               (unsigned long long)t->status[3], (unsigned long long)t->status[4],
               (unsigned long long)t->status[5]);
    else
        printf("  handshakes completed and closed: %llu (%.1f/s)\n", (unsigned long long)t->done,
               (double)t->done / s);
    printf("  TLS          full handshakes %llu (%.1f/s), resumed %llu (%.1f/s)\n",
           (unsigned long long)t->full, (double)t->full / s, (unsigned long long)t->resumed,
           (double)t->resumed / s);
    printf("  received     %.2f MB body (%.2f MB/s)\n", (double)t->bytes / 1e6,
           (double)t->bytes / 1e6 / s);
    text_percentiles(b->mode == M_HSONLY ? "connection" : "latency", &t->lat);
    if (b->mode != M_KEEPALIVE) {
        text_percentiles("connect", &t->connect);
        text_percentiles("handshake", &t->handshake);
    }
    if (b->rate > 0)
        text_percentiles("send lag", &t->lag);   /* the generator's own lateness */
    printf("  errors       %llu", (unsigned long long)t->errors);
    for (int i = 0; i < t->errs.used; i++)
        printf("%s%s %llu", i ? ", " : ": ", t->errs.kind[i], (unsigned long long)t->errs.n[i]);
    printf("\n  generator    %.0f%% CPU of %d thread%s%s\n", t->cpu_pct, b->threads,
           b->threads == 1 ? "" : "s",
           t->saturated ? ": SATURATED - the figures above may be the generator's limit, not "
                          "the server's (add -t)" : "");
}

/* ---- options ---------------------------------------------------------------------------- */

void cmd_bench_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop bench [options] URL\n\n"
            "A TLS load generator. One loop per thread; each connection slot runs one operation\n"
            "at a time: a request on a kept connection (default), or a new connection per\n"
            "request, or a handshake alone.\n\n"
            "  -t, --threads N        loops (default 1)\n"
            "  -c, --connections N    connection slots in total (default 10)\n"
            "  -d, --duration TIME    measure this long (default 10s) ...\n"
            "  -n, --requests N       ... or until N operations completed\n"
            "      --warmup TIME      run before measuring (default 1s with -d, 0 with -n)\n"
            "      --new-conn         a new TLS connection per request, full handshakes only\n"
            "                         (checked: a resumed one counts as an error)\n"
            "      --resume           a new connection per request resuming the slot's previous\n"
            "                         session (full and resumed are counted apart)\n"
            "      --handshake-only   connect, handshake, close_notify; no HTTP\n"
            "      --rate R           open loop: R operations per second in total, latency from\n"
            "                         each one's intended send time (no coordinated omission);\n"
            "                         its threads ask the scheduler for a short slice\n"
            "      --tlsv1.2, --tlsv1.3  only this TLS version\n"
            "      --tls-kdf openssl|tlsloop  the client's TLS key derivation and HMAC:\n"
            "                         OpenSSL's own (default) or tlsloop's faster ones\n"
            "      --no-tickets       TLS 1.2: ask for no session ticket, so --resume resumes\n"
            "                         by session ID from the server's cache\n"
            "      --cipher LIST      TLS 1.3 suites (TLS_...) or a TLS 1.2 cipher list\n"
            "      --alpn LIST        protocols offered (default http/1.1)\n"
            "      --cacert FILE      trust these CA certificates\n"
            "  -k, --insecure         do not verify the server (for tests)\n"
            "  -X, --request METHOD   another method than GET\n"
            "  -H, --header 'N: V'    send this header too (repeat)\n"
            "      --timeout TIME     per response, and for connect and handshake (default 10s)\n"
            "      --source-ips N     connect from 127.0.0.1 .. 127.0.0.N (many new connections\n"
            "                         per second exhaust one address's ports)\n"
            "      --json             the final report as JSON on stdout\n"
            "  -q, --quiet            no progress line (it is printed only on a terminal anyway)\n"
            "      --help             this text\n\n"
            "Exit status: 0 when the run had no error, 1 when it had errors (the report says\n"
            "which), 2 for a usage error.\n");
}

#define usage_error(...) tool_usage_error("bench", __VA_ARGS__)

static int parse_count(const char *v, uint64_t max, uint64_t *out)
{
    char *e;
    if (!v || !isdigit((unsigned char)*v))
        return -1;
    errno = 0;
    unsigned long long n = strtoull(v, &e, 10);
    if (errno || *e || n == 0 || n > max)
        return -1;
    *out = n;
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int cmd_bench(int argc, char **argv)
{
    static bench B;
    bench *b = &B;
    memset(b, 0, sizeof *b);
    b->threads = 1;
    b->conns = 10;
    b->duration_ms = 10000;
    b->timeout_ms = 10000;
    b->method = "GET";
    int64_t warmup = -1;
    bool have_d = false;
    tl_client_config cc = {.alpn = "http/1.1"};
    const char *url_arg = NULL;
    size_t hl = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[40];
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            a = name;
            v = eq + 1;
        } else if (a[0] == '-' && a[1] && a[1] != '-' && a[2] && strchr("tcdnXH", a[1])) {
            /* wrk's style: -t2 -c50 -d10s */
            name[0] = '-';
            name[1] = a[1];
            name[2] = 0;
            v = a + 2;
            a = name;
        }
#define VALUE() (v ? v : i + 1 < argc ? argv[++i] : NULL)
        uint64_t n, ms;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cmd_bench_usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (parse_count(VALUE(), 256, &n) != 0)
                return usage_error("%s needs a number from 1 to 256", a);
            b->threads = (int)n;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--connections")) {
            if (parse_count(VALUE(), 100000, &n) != 0)
                return usage_error("%s needs a number from 1 to 100000", a);
            b->conns = (int)n;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) {
            if (!(v = VALUE()) || tl_server_parse_duration(v, &ms) != 0 || ms == 0)
                return usage_error("%s needs a duration such as 10s", a);
            b->duration_ms = ms;
            have_d = true;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--requests")) {
            if (parse_count(VALUE(), UINT64_MAX / 2, &n) != 0)
                return usage_error("%s needs a number from 1", a);
            b->total_n = n;
        } else if (!strcmp(a, "--warmup")) {
            if (!(v = VALUE()) || tl_server_parse_duration(v, &ms) != 0)
                return usage_error("--warmup needs a duration such as 1s or 0");
            warmup = (int64_t)ms;
        } else if (!strcmp(a, "--timeout")) {
            if (!(v = VALUE()) || tl_server_parse_duration(v, &ms) != 0 || ms == 0)
                return usage_error("--timeout needs a duration such as 10s");
            b->timeout_ms = (uint32_t)ms;
        } else if (!strcmp(a, "--new-conn")) {
            b->mode = M_NEWCONN;
        } else if (!strcmp(a, "--resume")) {
            b->mode = M_RESUME;
        } else if (!strcmp(a, "--handshake-only")) {
            b->mode = M_HSONLY;
        } else if (!strcmp(a, "--rate")) {
            char *e;
            v = VALUE();
            b->rate = v ? strtod(v, &e) : 0;
            if (!v || *e || !(b->rate > 0) || b->rate > 1e7)
                return usage_error("--rate needs operations per second above 0");
        } else if (!strcmp(a, "--tlsv1.2")) {
            cc.tls_min = cc.tls_max = TL_TLS1_2;
        } else if (!strcmp(a, "--tlsv1.3")) {
            cc.tls_min = cc.tls_max = TL_TLS1_3;
        } else if (!strcmp(a, "--no-tickets")) {
            cc.no_tickets = true;
        } else if (!strcmp(a, "--cipher")) {
            if (!(v = VALUE()))
                return usage_error("--cipher needs a list");
            if (!strncmp(v, "TLS_", 4))
                cc.ciphersuites = v;
            else
                cc.ciphers = v;
        } else if (!strcmp(a, "--tls-kdf")) {
            if (tl_kdf_parse(VALUE(), &cc.kdf) != 0)
                return usage_error("--tls-kdf needs openssl or tlsloop");
        } else if (!strcmp(a, "--alpn")) {
            if (!(cc.alpn = VALUE()))
                return usage_error("--alpn needs a list");
        } else if (!strcmp(a, "--cacert")) {
            if (!(cc.ca_file = VALUE()))
                return usage_error("--cacert needs a file");
        } else if (!strcmp(a, "-k") || !strcmp(a, "--insecure")) {
            cc.insecure = true;
        } else if (!strcmp(a, "-X") || !strcmp(a, "--request")) {
            if (!(b->method = VALUE()) || !*b->method || strpbrk(b->method, " \r\n\t"))
                return usage_error("%s needs a method", a);
        } else if (!strcmp(a, "-H") || !strcmp(a, "--header")) {
            if (tool_add_header(b->headers, sizeof b->headers, &hl, VALUE()) != 0)
                return usage_error("%s needs 'Name: value' (and room for it)", a);
        } else if (!strcmp(a, "--source-ips")) {
            if (parse_count(VALUE(), 254, &n) != 0)
                return usage_error("--source-ips needs a number from 1 to 254");
            b->source_ips = (int)n;
        } else if (!strcmp(a, "--json")) {
            b->json = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            b->quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option %s", argv[i]);
        } else if (url_arg) {
            return usage_error("one URL at a time (%s and %s)", url_arg, a);
        } else {
            url_arg = a;
        }
#undef VALUE
    }
    if (!url_arg)
        return usage_error("no URL");
    char err[512];
    if (parse_url(url_arg, &b->u, err, sizeof err) != 0)
        return usage_error("%s", err);
    if (!b->u.tls && b->mode != M_KEEPALIVE)
        return usage_error("--new-conn, --resume and --handshake-only need an https:// URL");
    struct in_addr target4;
    if (b->source_ips && (inet_pton(AF_INET, b->u.host, &target4) != 1 ||
                          (ntohl(target4.s_addr) >> 24) != 127))
        return usage_error("--source-ips needs a 127.x.x.x address in the URL");
    if (b->conns < b->threads)
        b->threads = b->conns;
    if (!b->total_n || have_d)
        ;   /* a duration */
    else
        b->duration_ms = 24ull * 3600 * 1000;   /* -n alone: until done */
    b->warmup_ms = warmup >= 0 ? (uint64_t)warmup : b->total_n && !have_d ? 0 : 1000;
    if (b->total_n && b->warmup_ms)
        return usage_error("-n counts every operation: no --warmup with it");
    snprintf(b->headers + hl, sizeof b->headers - hl, "User-Agent: tlsloop-bench/"
             TL_VERSION_STRING "\r\n");
    cc.no_sessions = b->mode == M_NEWCONN;
    cc.connect_timeout_ms = cc.handshake_timeout_ms = b->timeout_ms;
    cc.close_timeout_ms = 1000;
    const char *no_kdf = cc.kdf ? tl_kdf_unavailable(cc.kdf) : NULL;
    if (no_kdf)
        fprintf(stderr, "tlsloop bench: --tls-kdf tlsloop: %s\n", no_kdf);
    if (cc.insecure && !b->json)
        fprintf(stderr, "tlsloop bench: WARNING: --insecure: the server is not verified\n");
    if (!(b->cl = tl_client_new(&cc, err, sizeof err))) {
        fprintf(stderr, "tlsloop bench: %s%s\n", cc.ca_file ? "--cacert: " : "", err);
        return EXIT_USAGE;
    }

    b->w = calloc((size_t)b->threads, sizeof *b->w);
    if (!b->w) {
        fprintf(stderr, "tlsloop bench: out of memory\n");
        tl_client_free(b->cl);
        return EXIT_FAILURE_RUN;
    }
    int slot_index = 0;
    for (int i = 0; i < b->threads; i++) {
        worker *w = &b->w[i];
        w->b = b;
        w->id = i;
        w->nslots = b->conns / b->threads + (i < b->conns % b->threads);
        w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
        if (b->rate > 0) {
            w->interval_ns = 1e9 * b->threads / b->rate;
            w->queue = malloc(RATE_QUEUE_MAX * sizeof *w->queue);
        }
        if (!(w->loop = tl_loop_new(err, sizeof err)) || !w->slots ||
            (b->rate > 0 && !w->queue)) {
            fprintf(stderr, "tlsloop bench: %s\n", w->loop ? "out of memory" : err);
            return EXIT_FAILURE_RUN;
        }
        w->tfd = -1;
        if (b->rate > 0 && (w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
            fprintf(stderr, "tlsloop bench: timerfd: %s\n", strerror(errno));
            return EXIT_FAILURE_RUN;
        }
        tl_io_init(&w->tick, w->tfd, on_tick, w);
        tl_timer_init(&w->stop_timer, on_stop_deadline, w);
        w->stop_work = (tl_work){.done = on_stop, .data = w};
        for (int k = 0; k < w->nslots; k++, slot_index++) {
            slot *s = &w->slots[k];
            s->w = w;
            s->index = slot_index;
            snprintf(s->key, sizeof s->key, "%.60s:%u#%d", b->u.host, b->u.port, slot_index);
            if (b->source_ips) {
                s->src.sin_family = AF_INET;
                s->src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(slot_index % b->source_ips));
            }
        }
    }

    b->t0 = now_ns();
    b->t_measure = b->t0 + b->warmup_ms * 1000000u;
    b->t_end = b->t_measure + b->duration_ms * 1000000u;
    for (int i = 0; i < b->threads; i++)
        if (pthread_create(&b->w[i].th, NULL, worker_main, &b->w[i]) != 0) {
            fprintf(stderr, "tlsloop bench: cannot start thread %d\n", i);
            return EXIT_FAILURE_RUN;
        }

    /* Progress once a second on a terminal; CPU measured over the measured window. */
    bool tty = !b->quiet && !b->json && isatty(STDOUT_FILENO);
    double cpu_start = cpu_seconds();
    bool cpu_started = b->warmup_ms == 0;
    uint64_t last_done = 0, last_t = now_ns(), last_err = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= b->t_end || atomic_load(&b->all_done))
            break;
        if (!cpu_started && t >= b->t_measure) {
            cpu_start = cpu_seconds();
            cpu_started = true;
        }
        uint64_t next = t + 1000000000u;
        if (next > b->t_end)
            next = b->t_end;
        if (!cpu_started && next > b->t_measure)
            next = b->t_measure;
        uint64_t step = (next - t) / 1000000u;
        sleep_ms(step > 100 && b->total_n ? 100 : step ? step : 1);
        if (tty && now_ns() - last_t >= 1000000000u) {
            uint64_t done = 0, errs = 0, full = 0, res = 0;
            for (int i = 0; i < b->threads; i++) {
                done += atomic_load(&b->w[i].done);
                errs += atomic_load(&b->w[i].errors);
                full += atomic_load(&b->w[i].full);
                res += atomic_load(&b->w[i].resumed);
            }
            double dt = (double)(now_ns() - last_t) / 1e9;
            printf("\r  %5.0f s  %10.0f ops/s  handshakes %llu full %llu resumed  errors %llu "
                   "(+%llu)   ", (double)(now_ns() - b->t0) / 1e9,
                   (double)(done - last_done) / dt, (unsigned long long)full,
                   (unsigned long long)res, (unsigned long long)errs,
                   (unsigned long long)(errs - last_err));
            fflush(stdout);
            last_done = done;
            last_err = errs;
            last_t = now_ns();
        }
    }
    double cpu_end = cpu_seconds();
    uint64_t t_stop = now_ns();
    if (t_stop < b->t_end)
        b->t_end = t_stop;   /* -n finished early: the window ends here */
    if (tty)
        printf("\n");
    for (int i = 0; i < b->threads; i++)
        tl_loop_post(b->w[i].loop, &b->w[i].stop_work);
    for (int i = 0; i < b->threads; i++)
        pthread_join(b->w[i].th, NULL);

    static totals T;
    totals *tot = &T;
    memset(tot, 0, sizeof *tot);
    uint64_t from = b->t_measure > b->t0 ? b->t_measure : b->t0;
    tot->seconds = (double)(b->t_end - from) / 1e9;
    for (int i = 0; i < b->threads; i++) {
        worker *w = &b->w[i];
        tot->done += atomic_load(&w->done);
        tot->full += atomic_load(&w->full);
        tot->resumed += atomic_load(&w->resumed);
        tot->bytes += atomic_load(&w->bytes);
        tot->errors += atomic_load(&w->errors);
        for (int k = 0; k < 6; k++)
            tot->status[k] += w->status[k];
        hist_merge(&tot->lat, &w->lat);
        hist_merge(&tot->connect, &w->connect);
        hist_merge(&tot->handshake, &w->handshake);
        hist_merge(&tot->lag, &w->lag);
        for (int k = 0; k < w->errs.used; k++)
            err_add(&tot->errs, w->errs.kind[k], w->errs.n[k]);
    }
    double window = (double)(t_stop - (cpu_started ? from : t_stop)) / 1e9;
    tot->cpu_pct = window > 0 ? (cpu_end - cpu_start) / window / b->threads * 100 : 0;
    tot->saturated = tot->cpu_pct > 90;
    report(b, tot, url_arg);

    for (int i = 0; i < b->threads; i++) {
        if (b->w[i].tfd >= 0)
            close(b->w[i].tfd);
        tl_loop_free(b->w[i].loop);
        free(b->w[i].slots);
        free(b->w[i].queue);
    }
    free(b->w);
    tl_client_free(b->cl);
    return tot->errors ? EXIT_FAILURE_RUN : EXIT_OK;
}
