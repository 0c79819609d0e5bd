/*
 * tools/bench.h - the parts of `tlsloop bench` shared between its files: the latency histogram
 * (bench_hist.c), the run's state (bench.c sets it up), the load (bench_load.c), the report.
 */
#ifndef TLSLOOP_TOOLS_BENCH_H
#define TLSLOOP_TOOLS_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <netinet/in.h>

#include <tlsloop/client.h>

#include "tools.h"

#define HIST_SUB_BITS 7
#define HIST_BUCKETS (58u << HIST_SUB_BITS)   /* every uint64_t value has a bucket */

typedef struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_add(hist *h, uint64_t v);
void hist_merge(hist *into, const hist *from);
/* The value at percentile p (0-100]: the upper edge of its bucket, at most the maximum. */
uint64_t hist_percentile(const hist *h, double p);

/* ---- the run: threads (workers), their connection slots, the error table ----------------- */

#define MAX_ERROR_KINDS 24
#define RATE_QUEUE_MAX (1u << 20)   /* due requests waiting for a free slot, per thread */

typedef enum { M_KEEPALIVE, M_NEWCONN, M_RESUME, M_HSONLY } mode_t_;

typedef struct errtab {
    char kind[MAX_ERROR_KINDS][80];
    uint64_t n[MAX_ERROR_KINDS];
    int used;
} errtab;

typedef struct bench bench;
typedef struct worker worker;

enum { S_IDLE, S_CONNECTING, S_READY, S_BUSY, S_CLOSING };

typedef struct slot slot;

/* --h2: one request on a stream of a slot's connection. */
typedef struct h2op {
    slot *s;
    uint64_t t_start;              /* its start: its intended time at a fixed rate */
    int status;
    bool used;
} h2op;

struct slot {
    worker *w;
    int index;
    int st;
    tl_client_dial *dial;
    tl_conn *c;
    tl_client_http *x;
    tl_client_h2 *h2;              /* --h2: the session, and its requests (-m of them) */
    h2op *ops;
    int inflight;
    uint64_t t_start;              /* the operation's start: its intended time at a fixed rate */
    uint64_t t_dial;               /* when this connection's attempt began */
    int status;
    char key[80];                  /* its own session key (--resume) */
    struct sockaddr_in src;        /* --source-ips */
};

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
    _Atomic uint64_t retried;      /* --h2: refused streams sent again */
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
    bool default_slice;            /* --default-slice: --rate without the short slice */
    uint32_t timeout_ms;
    const char *method;
    char headers[4096];
    int source_ips;
    tl_io_backend io;              /* --io (TL_IO_DEFAULT: TLSLOOP_IO, else epoll) */
    bool h2;                       /* --h2: HTTP/2 (ALPN h2; prior knowledge over http://) */
    int streams;                   /* -m: concurrent streams per connection with --h2 */
    bool json, quiet;
    worker *w;
    uint64_t t0, t_measure, t_end;
    _Atomic uint64_t started_n;    /* -n: operations begun */
    _Atomic uint64_t finished_n;
    _Atomic bool all_done;
};

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the load (bench_load.c) --------------------------------------------------------------- */

/* Count n errors of this kind; kinds beyond the table's size are counted as "other". */
void bench_err_add(errtab *e, const char *kind, uint64_t n);
/* A worker's callbacks, set up by cmd_bench: the --rate timerfd, the stop (posted at the end)
 * and its grace deadline, and the thread itself. */
void bench_on_tick(tl_loop *loop, tl_io *io, unsigned events);
void bench_on_stop(tl_loop *loop, tl_work *work);
void bench_on_stop_deadline(tl_loop *loop, tl_timer *t);
void *bench_worker_main(void *arg);

/* ---- the report (bench_report.c) ------------------------------------------------------------ */

/* The threads' figures merged over the measured window. */
typedef struct totals {
    uint64_t done, full, resumed, bytes, errors, retried, status[6];
    hist lat, connect, handshake, lag;
    errtab errs;
    double seconds, cpu_pct;
    bool saturated;
} totals;

void bench_report(bench *b, totals *t, const char *url_text);

#endif /* TLSLOOP_TOOLS_BENCH_H */
