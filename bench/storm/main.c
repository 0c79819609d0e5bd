/*
 * bench/storm/main.c - a handshake storm against a TLS echo server, and the latency of requests on
 * established connections meanwhile (issue 4). This file: the options, the shared state, the CPU
 * samples, the run and its report; the threads are in flood.c and steady.c, histograms in hist.c.
 *
 * The client side is tlsloop's own (tl_conn_connect with a client tl_tls_ctx); bench/storm.sh
 * runs it against examples/echo_server.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "storm.h"

/* ---- shared state ------------------------------------------------------------------------- */

void sync_set(sync_state *s, int state)
{
    pthread_mutex_lock(&s->mu);
    if (s->state != SYNC_FAILED)
        s->state = state;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait until the state is at least `want` (or failed), at most until deadline_ns. */
int sync_wait(sync_state *s, int want, uint64_t deadline_ns)
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

void note(unsigned *printed, const char *who, const char *fmt, ...)
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
