/*
 * bench/storm.c - a handshake storm against a TLS echo server, and the latency of requests on
 * established connections meanwhile (issue 4). The client side is tlsloop's own (tl_conn_connect
 * with a client tl_tls_ctx); bench/storm.sh runs it against examples/echo_server.
 *
 * Two threads, each with its own loop:
 *   flood   F concurrent connections; each connects, completes a full handshake (no session is
 *           ever offered, and SSL_session_reused is checked and counted), closes gracefully and
 *           is replaced at once. The graceful close (close_notify both ways) makes the server
 *           finish the handshake's whole work (it reads our Finished and sends its tickets) and
 *           end without lingering; an abort could reset the connection before the server has
 *           read our Finished. Our side keeps TIME_WAIT, which Linux reuses on loopback
 *           (tcp_tw_reuse=2, the default).
 *   steady  M established connections carry a small request (--size bytes, echoed back) at a
 *           fixed total rate R, open loop: request g has the intended send time t0 + g/R and goes
 *           to connection g mod M. A connection still waiting for its previous echo sends the
 *           next request as soon as the echo is in, and its latency still counts from its
 *           intended time: a stalled server shows as latency, never as fewer samples (no
 *           coordinated omission). Keep rate/conns (each connection's interval) above the stalls
 *           expected, or a connection's backlog grows for the whole run: the defaults, 200/s on 20
 *           connections, give each 100 ms.
 * Requests whose intended time falls in the window [t0 + warmup, t0 + warmup + duration) are
 * measured; flood handshakes completed in that window are counted. Afterwards the steady client
 * waits at most --drain seconds for outstanding echoes; requests of the window still unanswered
 * then are reported as lost.
 *
 * What the client itself adds is reported beside the latency, since both threads share one CPU:
 * wake_p99_ms (per request, how late the steady thread noticed it was due) and steady_rq_wait_ms
 * (how long, in the window, the steady thread was runnable but waiting for a CPU). Both stay near
 * 0.1 ms and a few ms with --steady-fifo (SCHED_FIFO for the steady thread, when permitted);
 * without it, on a busy CPU, they reach several ms and 100s of ms on this kernel. With
 * --server-pid, the server's CPU over the window, per flood handshake, and the CPU every other
 * process on the machine used meanwhile (others_cpu_pct: a busy neighbour shows).
 *
 * Histograms are log-linear (128 sub-buckets per power of two: each bucket is within 0.8% of its
 * values) over 1 ns .. 1100 s, a fixed 35 KiB each, whatever the run's length. Percentiles are
 * the upper edge of their bucket.
 *
 * Output: one line of key=value pairs (requests, lost, p50/p90/p99/p99.9/max ms, the uncorrected
 * p99 and max, the client's own delays, flood handshakes and per second, errors, resumed, CPU),
 * and with --server-stats a second line with the echo server's counters ("!stats"). Errors go to
 * stderr (the first few messages). Exit status 0 when the run was clean (no steady error, nothing
 * lost, nothing resumed), 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <tlsloop/conn.h>
#include <tlsloop/loop.h>
#include <tlsloop/tls_ctx.h>

#define MAX_FLOOD 8000          /* fds: the hard limit here is 20,000 per process */
#define MAX_CONNS 4000
#define MAX_SIZE 16384          /* request size: one TLS record */
#define HS_TIMEOUT_MS 10000     /* a handshake slower than this is an error, not a sample */
#define CLOSE_TIMEOUT_MS 5000
#define CONNECT_WAIT_S 15       /* the steady connections must be up by then */
#define RETRY_MS 10             /* after a failed connection (no ephemeral port, refused): pause */
#define STATS_WAIT_MS 3000
#define MAX_MESSAGES 5          /* error messages printed per thread */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ---------------------------------------------------------------------------- */

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define MAX_EXP 40 /* 2^40 ns = 1100 s: anything longer is clamped */
#define HIST_BUCKETS (SUB + (MAX_EXP - SUB_BITS + 1) * SUB)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max;
} hist;

static unsigned hist_index(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    if (v >= (1ull << (MAX_EXP + 1)))
        v = (1ull << (MAX_EXP + 1)) - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - SUB_BITS)) - SUB;
    return SUB + (e - SUB_BITS) * SUB + sub;
}

/* The highest value a bucket holds: a percentile is never reported lower than it was. */
static uint64_t hist_upper(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned e = (i - SUB) / SUB + SUB_BITS, sub = (i - SUB) % SUB;
    return ((uint64_t)(sub + SUB + 1) << (e - SUB_BITS)) - 1;
}

static void hist_add(hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* The value at rank ceil(p * n), in milliseconds (0 when empty). */
static double hist_ms(const hist *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n);
    if ((double)rank < p * (double)h->n)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return (double)(v < h->max ? v : h->max) / 1e6;
        }
    }
    return (double)h->max / 1e6;
}

/* ---- configuration and shared state -------------------------------------------------------- */

typedef struct config {
    struct sockaddr_in addr;
    unsigned flood, conns, size;
    uint64_t rate;
    double duration, warmup, drain;
    int flood_nice;
    bool steady_fifo;
    long server_pid;
    bool server_stats;
    tl_tls_ctx *tls;
} config;

/* How the main thread and the steady thread hand over phases. */
enum { SYNC_NONE, SYNC_READY, SYNC_MEASURED, SYNC_FAILED };
typedef struct sync_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;
} sync_state;

static void sync_set(sync_state *s, int state)
{
    pthread_mutex_lock(&s->mu);
    if (s->state != SYNC_FAILED)
        s->state = state;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait until the state is at least `want` (or failed), at most until deadline_ns. */
static int sync_wait(sync_state *s, int want, uint64_t deadline_ns)
{
    pthread_mutex_lock(&s->mu);
    while (s->state != SYNC_FAILED && s->state < want && now_ns() < deadline_ns) {
        struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                              .tv_nsec = (long)(deadline_ns % 1000000000u)};
        pthread_cond_timedwait(&s->cv, &s->mu, &ts); /* the condvar uses CLOCK_MONOTONIC */
    }
    int st = s->state;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void note(unsigned *printed, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(unsigned *printed, const char *who, const char *fmt, ...)
{
    if (*printed >= MAX_MESSAGES)
        return;
    (*printed)++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "storm: %s: ", who);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- the flood ------------------------------------------------------------------------------ */

typedef struct flood flood;
typedef struct flood_slot {
    flood *f;
    tl_conn *c;
    tl_timer retry;
    bool hs_ok;
} flood_slot;

struct flood {
    const config *cfg;
    tl_loop *loop;
    flood_slot *slots;
    pthread_t thread;
    tl_work stop_work;
    uint64_t win_start, win_end; /* set before the thread starts */
    unsigned live;
    bool stopping;
    /* Counters (read by main after the thread is joined). */
    uint64_t started, hs_ok, hs_window, resumed;
    uint64_t connect_failed, hs_failed, bad_end, aborted_at_stop;
    unsigned printed;
};

static void flood_start(flood_slot *s);

static void flood_on_handshake(tl_conn *c, bool ok)
{
    flood_slot *s = tl_conn_data(c);
    flood *f = s->f;
    if (!ok)
        return; /* counted in on_close, with the reason */
    s->hs_ok = true;
    f->hs_ok++;
    uint64_t t = now_ns();
    if (t >= f->win_start && t < f->win_end)
        f->hs_window++;
    if (SSL_session_reused(tl_engine_ssl(tl_conn_engine(c))))
        f->resumed++;
    tl_conn_close(c);
}

static void flood_on_close(tl_conn *c, tl_conn_end how)
{
    flood_slot *s = tl_conn_data(c);
    flood *f = s->f;
    s->c = NULL;
    f->live--;
    if (f->stopping) {
        f->aborted_at_stop++;
    } else if (!s->hs_ok) {
        f->hs_failed++;
        note(&f->printed, "flood", "handshake failed (%s): %s", tl_conn_end_name(how),
             tl_conn_error(c));
    } else if (how != TL_END_CLEAN) {
        f->bad_end++;
        note(&f->printed, "flood", "connection ended %s after its handshake: %s",
             tl_conn_end_name(how), tl_conn_error(c));
    }
    if (f->stopping) {
        if (f->live == 0)
            tl_loop_stop(f->loop);
        return;
    }
    if (!s->hs_ok || how != TL_END_CLEAN)
        tl_timer_start(f->loop, &s->retry, RETRY_MS); /* a server that refuses: no busy cycle */
    else
        flood_start(s);
}

static const tl_conn_cbs flood_cbs = {.on_handshake = flood_on_handshake,
                                      .on_close = flood_on_close};

static void flood_retry(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    flood_start(t->data);
}

static void flood_start(flood_slot *s)
{
    flood *f = s->f;
    tl_conn_opts o = {.tls = f->cfg->tls,
                      .server_name = "localhost",
                      .handshake_timeout_ms = HS_TIMEOUT_MS,
                      .close_timeout_ms = CLOSE_TIMEOUT_MS,
                      .cbs = &flood_cbs,
                      .data = s};
    char err[256];
    s->hs_ok = false;
    s->c = tl_conn_connect(f->loop, (const struct sockaddr *)&f->cfg->addr, sizeof f->cfg->addr,
                           &o, err, sizeof err);
    if (!s->c) {
        f->connect_failed++;
        note(&f->printed, "flood", "%s", err);
        tl_timer_start(f->loop, &s->retry, RETRY_MS);
        return;
    }
    f->started++;
    f->live++;
}

/* Posted by main: abort everything in flight, then leave the loop once the last one closed. */
static void flood_stop(tl_loop *loop, tl_work *w)
{
    flood *f = w->data;
    f->stopping = true;
    for (unsigned i = 0; i < f->cfg->flood; i++) {
        tl_timer_stop(loop, &f->slots[i].retry);
        if (f->slots[i].c)
            tl_conn_abort(f->slots[i].c);
    }
    if (f->live == 0)
        tl_loop_stop(loop);
}

static void *flood_main(void *arg)
{
    flood *f = arg;
    /* Optional: yield CPU 1 to the steady client, so its own scheduling delay stays small. */
    if (f->cfg->flood_nice != 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), f->cfg->flood_nice) != 0)
        note(&f->printed, "flood", "setpriority: %s", strerror(errno));
    for (unsigned i = 0; i < f->cfg->flood; i++)
        flood_start(&f->slots[i]);
    if (tl_loop_run(f->loop) != 0)
        note(&f->printed, "flood", "loop failed: %s", tl_loop_error(f->loop));
    return NULL;
}

/* ---- the steady client ---------------------------------------------------------------------- */

typedef struct steady steady;
typedef struct steady_conn {
    steady *s;
    tl_conn *c;
    unsigned idx;
    bool up, gone;
    uint64_t due;          /* requests of this connection whose intended time has come */
    uint64_t sent;         /* requests sent (the next one's number) */
    bool in_flight;
    uint64_t cur_intended, cur_sent;
    uint64_t cur_g;        /* the request in flight (its global number) */
    size_t got;
} steady_conn;

enum { PH_CONNECTING, PH_RUNNING, PH_DRAINING, PH_MEASURED, PH_STATS, PH_CLOSING };

struct steady {
    const config *cfg;
    sync_state *sync;
    tl_loop *loop;
    steady_conn *conns;
    pthread_t thread;
    _Atomic long tid;      /* for its scheduler statistics (/proc/self/task/TID/schedstat) */
    bool fifo;             /* runs under SCHED_FIFO (--steady-fifo, when permitted) */
    int phase;
    unsigned up, open;
    /* The schedule: request g is due at t0 + g * 1e9 / rate, on connection g % conns. */
    uint64_t t0, win_start, win_end;
    uint64_t gen;
    int tfd;               /* timerfd: tl_timer has millisecond resolution, too coarse here */
    tl_io tio;
    tl_timer deadline;     /* connecting, draining, waiting for the stats answer */
    tl_work finish_work;
    hist lat, uncorr, wake;
    uint64_t win_generated, done, errors;
    char stats[2048];
    size_t stats_len;
    unsigned printed;
};

static uint64_t intended(const steady *s, uint64_t g)
{
    return s->t0 + g * 1000000000u / s->cfg->rate;
}

static void steady_close_all(steady *s);

static void steady_measured(steady *s)
{
    if (s->phase >= PH_MEASURED)
        return;
    s->phase = PH_MEASURED;
    tl_timer_stop(s->loop, &s->deadline);
    tl_io_stop(s->loop, &s->tio);
    sync_set(s->sync, SYNC_MEASURED);
}

/* Draining ends when every request generated has been answered (or its connection is gone). */
static void steady_check_drained(steady *s)
{
    if (s->phase != PH_DRAINING)
        return;
    for (unsigned i = 0; i < s->cfg->conns; i++) {
        steady_conn *sc = &s->conns[i];
        if (!sc->gone && (sc->in_flight || sc->sent < sc->due))
            return;
    }
    steady_measured(s);
}

/* Request g: its number in it, so an echo of the wrong request (or of garbage) is caught. */
static void make_msg(uint8_t *msg, uint64_t g, size_t size)
{
    memset(msg, 'x', size);
    msg[0] = 'm'; /* never '!': the echo server answers "!stats" and "!peer" itself */
    memcpy(msg + 1, &g, sizeof g);
}

static void steady_send(steady_conn *sc)
{
    steady *s = sc->s;
    if (sc->gone || sc->in_flight || sc->sent >= sc->due || s->phase >= PH_MEASURED)
        return;
    uint64_t g = sc->sent * s->cfg->conns + sc->idx;
    uint8_t msg[MAX_SIZE];
    make_msg(msg, g, s->cfg->size);
    sc->cur_g = g;
    sc->cur_intended = intended(s, g);
    sc->cur_sent = now_ns();
    sc->in_flight = true;
    sc->got = 0;
    sc->sent++;
    if (tl_conn_write(sc->c, msg, s->cfg->size) < 0) {
        s->errors++;
        note(&s->printed, "steady", "write refused on connection %u", sc->idx);
        tl_conn_abort(sc->c);
    }
}

/* Make every request whose intended time has come due on its connection, then sleep until the
 * next one. */
static void steady_tick(steady *s)
{
    uint64_t now = now_ns();
    while (s->phase == PH_RUNNING) {
        uint64_t t = intended(s, s->gen);
        if (t >= s->win_end) {
            s->phase = PH_DRAINING;
            tl_io_stop(s->loop, &s->tio);
            tl_timer_start(s->loop, &s->deadline, (uint64_t)(s->cfg->drain * 1000));
            steady_check_drained(s);
            return;
        }
        if (t > now) {
            struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / 1000000000u),
                                                  .tv_nsec = (long)(t % 1000000000u)}};
            timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL);
            return;
        }
        steady_conn *sc = &s->conns[s->gen % s->cfg->conns];
        if (t >= s->win_start) {
            s->win_generated++;
            /* How late this thread noticed the request was due: its own scheduling delay, which
             * no server can make smaller. Per request, so a long sleep weighs as many requests
             * as it delays; and not the lateness of the send, which includes waiting for the
             * previous echo. */
            hist_add(&s->wake, now - t);
        }
        sc->due++;
        s->gen++;
        steady_send(sc);
    }
}

static void steady_on_timerfd(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    steady *s = io->data;
    uint64_t expirations;
    if (read(s->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        note(&s->printed, "steady", "timerfd: %s", strerror(errno));
    steady_tick(s);
}

static void steady_start_schedule(steady *s)
{
    s->phase = PH_RUNNING;
    s->t0 = now_ns();
    s->win_start = s->t0 + (uint64_t)(s->cfg->warmup * 1e9);
    s->win_end = s->win_start + (uint64_t)(s->cfg->duration * 1e9);
    tl_timer_stop(s->loop, &s->deadline);
    tl_io_set(s->loop, &s->tio, TL_READABLE);
    sync_set(s->sync, SYNC_READY);
    steady_tick(s);
}

static void steady_on_handshake(tl_conn *c, bool ok)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    if (!ok)
        return; /* on_close says why */
    if (SSL_session_reused(tl_engine_ssl(tl_conn_engine(c)))) {
        s->errors++;
        note(&s->printed, "steady", "connection %u resumed a session", sc->idx);
    }
    sc->up = true;
    if (++s->up == s->cfg->conns && s->phase == PH_CONNECTING)
        steady_start_schedule(s);
}

static void steady_on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    if (s->phase == PH_STATS && sc->idx == 0) {
        size_t room = sizeof s->stats - 1 - s->stats_len;
        size_t n = len < room ? len : room;
        memcpy(s->stats + s->stats_len, data, n);
        s->stats_len += n;
        s->stats[s->stats_len] = '\0';
        if (memchr(data, '\n', len) || s->stats_len == sizeof s->stats - 1)
            steady_close_all(s);
        return;
    }
    uint8_t expect[MAX_SIZE];
    make_msg(expect, sc->cur_g, s->cfg->size);
    if (!sc->in_flight || sc->got + len > s->cfg->size ||
        memcmp(data, expect + sc->got, len) != 0) {
        s->errors++;
        note(&s->printed, "steady", "connection %u: unexpected echo (%zu bytes)", sc->idx, len);
        tl_conn_abort(c);
        return;
    }
    sc->got += len;
    if (sc->got < s->cfg->size)
        return;
    uint64_t t = now_ns();
    if (sc->cur_intended >= s->win_start && sc->cur_intended < s->win_end &&
        s->phase < PH_MEASURED) {
        hist_add(&s->lat, t - sc->cur_intended);
        hist_add(&s->uncorr, t - sc->cur_sent);
        s->done++;
    }
    sc->in_flight = false;
    steady_send(sc);
    steady_check_drained(s);
}

static void steady_on_close(tl_conn *c, tl_conn_end how)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    sc->c = NULL;
    sc->gone = true;
    s->open--;
    if (s->phase < PH_CLOSING) {
        s->errors++;
        note(&s->printed, "steady", "connection %u ended (%s): %s", sc->idx,
             tl_conn_end_name(how), tl_conn_error(c));
        if (s->phase == PH_CONNECTING) {
            /* One steady connection fewer than asked would change what is measured: give up. */
            tl_timer_stop(s->loop, &s->deadline);
            s->phase = PH_MEASURED;
            sync_set(s->sync, SYNC_FAILED);
        }
        steady_check_drained(s);
    }
    if (s->open == 0 && s->phase == PH_CLOSING)
        tl_loop_stop(s->loop);
}

static const tl_conn_cbs steady_cbs = {.on_handshake = steady_on_handshake,
                                       .on_read = steady_on_read,
                                       .on_close = steady_on_close};

static void steady_close_all(steady *s)
{
    s->phase = PH_CLOSING;
    tl_timer_stop(s->loop, &s->deadline);
    for (unsigned i = 0; i < s->cfg->conns; i++)
        if (s->conns[i].c)
            tl_conn_close(s->conns[i].c); /* bounded by CLOSE_TIMEOUT_MS */
    if (s->open == 0)
        tl_loop_stop(s->loop);
}

static void steady_on_deadline(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    steady *s = t->data;
    switch (s->phase) {
    case PH_CONNECTING:
        note(&s->printed, "steady", "only %u of %u connections up after %d s", s->up,
             s->cfg->conns, CONNECT_WAIT_S);
        s->errors++;
        s->phase = PH_MEASURED;
        sync_set(s->sync, SYNC_FAILED);
        break;
    case PH_DRAINING:
        steady_measured(s); /* what is still unanswered is lost */
        break;
    case PH_STATS:
        note(&s->printed, "steady", "no answer to !stats");
        steady_close_all(s);
        break;
    default:
        break;
    }
}

/* Posted by main once the flood is stopped: ask the server for its counters, then close. */
static void steady_finish(tl_loop *loop, tl_work *w)
{
    steady *s = w->data;
    if (s->cfg->server_stats && s->conns[0].c && !s->conns[0].in_flight) {
        s->phase = PH_STATS;
        tl_timer_start(loop, &s->deadline, STATS_WAIT_MS);
        tl_conn_write(s->conns[0].c, "!stats\n", 7);
        return;
    }
    steady_close_all(s);
}

static void *steady_main(void *arg)
{
    steady *s = arg;
    s->tid = (long)syscall(SYS_gettid);
    /* The measuring thread shares CPU 1 with the flood and with whatever else the machine runs;
     * SCHED_FIFO (root or CAP_SYS_NICE) lets it preempt them at once, so its own scheduling delay
     * stays out of the latencies. It uses a few percent of a CPU, so it starves nobody. */
    if (s->cfg->steady_fifo) {
        struct sched_param sp = {.sched_priority = 1};
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (err != 0)
            note(&s->printed, "steady", "SCHED_FIFO refused (%s): running at normal priority",
                 strerror(err));
        else
            s->fifo = true;
    }
    tl_conn_opts o = {.tls = s->cfg->tls,
                      .server_name = "localhost",
                      .handshake_timeout_ms = HS_TIMEOUT_MS,
                      .close_timeout_ms = CLOSE_TIMEOUT_MS,
                      .cbs = &steady_cbs};
    tl_timer_start(s->loop, &s->deadline, CONNECT_WAIT_S * 1000u);
    for (unsigned i = 0; i < s->cfg->conns; i++) {
        steady_conn *sc = &s->conns[i];
        char err[256];
        o.data = sc;
        sc->c = tl_conn_connect(s->loop, (const struct sockaddr *)&s->cfg->addr,
                                sizeof s->cfg->addr, &o, err, sizeof err);
        if (!sc->c) {
            note(&s->printed, "steady", "%s", err);
            s->errors++;
            sc->gone = true;
            s->phase = PH_MEASURED;
            sync_set(s->sync, SYNC_FAILED);
            break;
        }
        s->open++;
    }
    if (tl_loop_run(s->loop) != 0) {
        note(&s->printed, "steady", "loop failed: %s", tl_loop_error(s->loop));
        sync_set(s->sync, SYNC_FAILED);
    }
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

/* utime + stime of a process, in seconds; -1 when unreadable. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* The name (field 2) may hold spaces and parentheses: count fields after its last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Busy time of all CPUs (user, nice, system, irq, softirq, steal), in seconds; -1 if unreadable. */
static double all_cpu_busy_s(void)
{
    FILE *fp = fopen("/proc/stat", "r");
    if (!fp)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(fp);
    if (n != 8)
        return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* Time a thread of ours spent runnable but waiting for a CPU (schedstat's second field), in
 * seconds: the steady client's own scheduling delay, which the server has no part in. */
static double thread_rq_wait_s(long tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/schedstat", tid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    unsigned long long run, wait;
    int n = fscanf(fp, "%llu %llu", &run, &wait);
    fclose(fp);
    return n == 2 ? (double)wait / 1e9 : -1;
}

/* What main samples at the start and at the end of the measured window. */
typedef struct sample {
    double self_cpu, server_cpu, all_busy, steady_wait;
} sample;

static void take_sample(sample *out, const config *cfg, long steady_tid)
{
    out->self_cpu = self_cpu_s();
    out->server_cpu = cfg->server_pid > 0 ? proc_cpu_s(cfg->server_pid) : -1;
    out->all_busy = all_cpu_busy_s();
    out->steady_wait = thread_rq_wait_s(steady_tid);
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: storm --port PORT [options]\n"
            "  --host IPV4        server address (default 127.0.0.1)\n"
            "  --port PORT        server port (required)\n"
            "  --flood N          concurrent full-handshake connections (default 0: baseline)\n"
            "  --conns M          established connections of the steady client (default 20)\n"
            "  --rate R           steady requests per second, all connections (default 200)\n"
            "  --size BYTES       request size, echoed back (default 64)\n"
            "  --duration S       measured seconds (default 10)\n"
            "  --warmup S         seconds before measuring (default 2)\n"
            "  --drain S          wait at most this for the last echoes (default 5)\n"
            "  --flood-nice N     nice value of the flood thread (default 0)\n"
            "  --server-pid PID   report the server's CPU (from /proc/PID/stat) over the window\n"
            "  --server-stats     ask the echo server for its counters at the end (!stats)\n"
            "  --steady-fifo      run the steady client under SCHED_FIFO if permitted\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    config cfg = {.conns = 20, .size = 64, .rate = 200, .duration = 10, .warmup = 2,
                  .drain = 5, .server_pid = -1};
    const char *host = "127.0.0.1";
    double port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--server-stats")) {
            cfg.server_stats = true;
            continue;
        }
        if (!strcmp(a, "--steady-fifo")) {
            cfg.steady_fifo = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "storm: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double d = 0;
        bool ok = true;
        if (!strcmp(a, "--host")) {
            host = v;
        } else if (!strcmp(a, "--port")) {
            ok = parse_num(v, 1, 65535, &port);
        } else if (!strcmp(a, "--flood")) {
            ok = parse_num(v, 0, MAX_FLOOD, &d);
            cfg.flood = (unsigned)d;
        } else if (!strcmp(a, "--conns")) {
            ok = parse_num(v, 1, MAX_CONNS, &d);
            cfg.conns = (unsigned)d;
        } else if (!strcmp(a, "--rate")) {
            ok = parse_num(v, 1, 1e7, &d);
            cfg.rate = (uint64_t)d;
        } else if (!strcmp(a, "--size")) {
            ok = parse_num(v, 16, MAX_SIZE, &d);
            cfg.size = (unsigned)d;
        } else if (!strcmp(a, "--duration")) {
            ok = parse_num(v, 0.1, 3600, &cfg.duration);
        } else if (!strcmp(a, "--warmup")) {
            ok = parse_num(v, 0, 3600, &cfg.warmup);
        } else if (!strcmp(a, "--drain")) {
            ok = parse_num(v, 0.1, 600, &cfg.drain);
        } else if (!strcmp(a, "--flood-nice")) {
            ok = parse_num(v, -20, 19, &d);
            cfg.flood_nice = (int)d;
        } else if (!strcmp(a, "--server-pid")) {
            ok = parse_num(v, 1, 1e9, &d);
            cfg.server_pid = (long)d;
        } else {
            fprintf(stderr, "storm: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "storm: bad value for %s: %s\n", a, v);
            return 2;
        }
    }
    cfg.addr.sin_family = AF_INET;
    cfg.addr.sin_port = htons((uint16_t)port);
    if (port == 0 || inet_pton(AF_INET, host, &cfg.addr.sin_addr) != 1) {
        fprintf(stderr, "storm: --port and an IPv4 --host are required\n");
        usage(stderr);
        return 2;
    }

    int rc = 1;
    cfg.tls = tl_tls_ctx_new(TL_ROLE_CLIENT);
    if (!cfg.tls || tl_tls_ctx_set_verify(cfg.tls, TL_VERIFY_NONE) != 0 ||
        tl_tls_ctx_freeze(cfg.tls) != 0) {
        fprintf(stderr, "storm: client TLS configuration: %s\n",
                cfg.tls ? tl_tls_ctx_error(cfg.tls) : "out of memory");
        tl_tls_ctx_free(cfg.tls);
        return 1;
    }

    sync_state sync = {.mu = PTHREAD_MUTEX_INITIALIZER, .state = SYNC_NONE};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sync.cv, &ca);
    pthread_condattr_destroy(&ca);

    char err[256];
    steady *s = calloc(1, sizeof *s);
    flood *f = calloc(1, sizeof *f);
    if (s)
        s->tfd = -1;
    if (!s || !f || !(s->conns = calloc(cfg.conns, sizeof *s->conns)) ||
        !(f->slots = calloc(cfg.flood ? cfg.flood : 1, sizeof *f->slots))) {
        fprintf(stderr, "storm: out of memory\n");
        goto out;
    }
    s->cfg = f->cfg = &cfg;
    s->sync = &sync;
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->tfd < 0 || !(s->loop = tl_loop_new(err, sizeof err)) ||
        (cfg.flood && !(f->loop = tl_loop_new(err, sizeof err)))) {
        fprintf(stderr, "storm: %s\n", s->tfd < 0 ? strerror(errno) : err);
        goto out;
    }
    tl_io_init(&s->tio, s->tfd, steady_on_timerfd, s);
    tl_timer_init(&s->deadline, steady_on_deadline, s);
    for (unsigned i = 0; i < cfg.conns; i++)
        s->conns[i] = (steady_conn){.s = s, .idx = i};
    for (unsigned i = 0; i < cfg.flood; i++) {
        f->slots[i] = (flood_slot){.f = f};
        tl_timer_init(&f->slots[i].retry, flood_retry, &f->slots[i]);
    }

    if (pthread_create(&s->thread, NULL, steady_main, s) != 0) {
        fprintf(stderr, "storm: cannot start a thread\n");
        goto out;
    }
    bool flood_running = false;
    int st = sync_wait(&sync, SYNC_READY, now_ns() + (CONNECT_WAIT_S + 5) * 1000000000ull);
    sample a = {0}, b = {0};
    if (st == SYNC_READY) {
        /* The steady thread published t0 before SYNC_READY (under the mutex). */
        f->win_start = s->win_start;
        f->win_end = s->win_end;
        if (cfg.flood) {
            if (pthread_create(&f->thread, NULL, flood_main, f) != 0)
                fprintf(stderr, "storm: cannot start a thread\n");
            else
                flood_running = true;
        }
        sleep_until(f->win_start);
        take_sample(&a, &cfg, s->tid);
        sleep_until(f->win_end);
        take_sample(&b, &cfg, s->tid);
        st = sync_wait(&sync, SYNC_MEASURED,
                       f->win_end + (uint64_t)((cfg.drain + 5) * 1e9));
    }
    if (flood_running) {
        f->stop_work = (tl_work){.done = flood_stop, .data = f};
        tl_loop_post(f->loop, &f->stop_work);
        pthread_join(f->thread, NULL);
    }
    /* Whatever happened, the steady thread ends the same way: close (after !stats) and leave. */
    s->finish_work = (tl_work){.done = steady_finish, .data = s};
    tl_loop_post(s->loop, &s->finish_work);
    pthread_join(s->thread, NULL);

    if (st != SYNC_MEASURED) {
        fprintf(stderr, "storm: the run failed (%s)\n",
                st == SYNC_READY ? "the steady client never finished" : "no steady connections");
        goto out;
    }
    double win = cfg.duration;
    uint64_t lost = s->win_generated - s->done;
    uint64_t flood_errors = f->connect_failed + f->hs_failed + f->bad_end;
    printf("flood=%u conns=%u rate=%llu duration=%g requests=%llu lost=%llu p50_ms=%.3f "
           "p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f uncorr_p99_ms=%.3f "
           "uncorr_max_ms=%.3f wake_p99_ms=%.3f flood_hs=%llu flood_hs_per_s=%.1f flood_errors=%llu resumed=%llu "
           "steady_errors=%llu steady_sched=%s steady_rq_wait_ms=%.1f client_cpu_pct=%.1f",
           cfg.flood, cfg.conns, (unsigned long long)cfg.rate, win,
           (unsigned long long)s->done, (unsigned long long)lost, hist_ms(&s->lat, 0.50),
           hist_ms(&s->lat, 0.90), hist_ms(&s->lat, 0.99), hist_ms(&s->lat, 0.999),
           (double)s->lat.max / 1e6, hist_ms(&s->uncorr, 0.99), (double)s->uncorr.max / 1e6, hist_ms(&s->wake, 0.99),
           (unsigned long long)f->hs_window, (double)f->hs_window / win,
           (unsigned long long)flood_errors, (unsigned long long)f->resumed,
           (unsigned long long)s->errors, s->fifo ? "fifo" : "other", (b.steady_wait - a.steady_wait) * 1e3,
           100 * (b.self_cpu - a.self_cpu) / win);
    if (a.server_cpu >= 0 && b.server_cpu >= 0) {
        double srv = b.server_cpu - a.server_cpu;
        printf(" server_cpu_pct=%.1f", 100 * srv / win);
        if (f->hs_window)
            printf(" server_us_per_hs=%.0f", srv * 1e6 / (double)f->hs_window);
        /* Everything else the machine ran meanwhile: a round with a busy neighbour shows. */
        if (a.all_busy >= 0 && b.all_busy >= 0) {
            double others = b.all_busy - a.all_busy - srv - (b.self_cpu - a.self_cpu);
            /* Three clocks of tick granularity: a quiet machine can come out slightly below 0. */
            printf(" others_cpu_pct=%.1f", others > 0 ? 100 * others / win : 0.0);
        }
    }
    putchar('\n');
    if (f->connect_failed || f->hs_failed || f->bad_end)
        fprintf(stderr, "storm: flood errors: %llu connect, %llu handshake, %llu bad end\n",
                (unsigned long long)f->connect_failed, (unsigned long long)f->hs_failed,
                (unsigned long long)f->bad_end);
    if (cfg.server_stats)
        printf("server: %s%s", s->stats_len ? s->stats : "(no answer)\n",
               s->stats_len && s->stats[s->stats_len - 1] != '\n' ? "\n" : "");
    fflush(stdout);
    rc = (lost == 0 && s->errors == 0 && f->resumed == 0) ? 0 : 1;

out:
    if (s) {
        if (s->loop)
            tl_loop_free(s->loop);
        if (s->tfd >= 0)
            close(s->tfd);
        free(s->conns);
        free(s);
    }
    if (f) {
        if (f->loop)
            tl_loop_free(f->loop);
        free(f->slots);
        free(f);
    }
    pthread_cond_destroy(&sync.cv);
    tl_tls_ctx_free(cfg.tls);
    return rc;
}
