/*
 * bench/storm/storm.h - what the files of the storm generator share: the limits, the clock, the
 * histogram, the configuration, the phase hand-over, and the flood and steady threads' state.
 */
#ifndef TLSLOOP_BENCH_STORM_H
#define TLSLOOP_BENCH_STORM_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

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

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram (hist.c) ------------------------------------------------------------------- */

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define MAX_EXP 40 /* 2^40 ns = 1100 s: anything longer is clamped */
#define HIST_BUCKETS (SUB + (MAX_EXP - SUB_BITS + 1) * SUB)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max;
} hist;

void hist_add(hist *h, uint64_t v);
/* The value at rank ceil(p * n), in milliseconds (0 when empty). */
double hist_ms(const hist *h, double p);

/* ---- configuration and shared state (main.c) ---------------------------------------------- */

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

void sync_set(sync_state *s, int state);
/* Wait until the state is at least `want` (or failed), at most until deadline_ns. */
int sync_wait(sync_state *s, int want, uint64_t deadline_ns);
/* An error message on stderr, at most MAX_MESSAGES per *printed. */
void note(unsigned *printed, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the flood (flood.c) ------------------------------------------------------------------ */

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

void flood_retry(tl_loop *loop, tl_timer *t); /* a slot's retry timer */
/* Posted by main: abort everything in flight, then leave the loop once the last one closed. */
void flood_stop(tl_loop *loop, tl_work *w);
void *flood_main(void *arg); /* the thread */

/* ---- the steady client (steady.c) --------------------------------------------------------- */

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

void steady_on_timerfd(tl_loop *loop, tl_io *io, unsigned events);
void steady_on_deadline(tl_loop *loop, tl_timer *t);
/* Posted by main once the flood is stopped: ask the server for its counters, then close. */
void steady_finish(tl_loop *loop, tl_work *w);
void *steady_main(void *arg); /* the thread */

#endif /* TLSLOOP_BENCH_STORM_H */
