/*
 * bench/bench_engine/main.c - the engine against raw OpenSSL, in one process: server-side CPU per
 * TLS handshake and per MiB of 16 KiB records. This file: the options, the rounds and statistics,
 * the machine facts and the report; the paths measured are in handshakes.c and records.c.
 *
 * Every workload runs twice per round on the same objects: through the engine (tl_engine_*) and
 * through raw OpenSSL calls on an SSL made from the engine configuration's own SSL_CTX (so the
 * certificate, groups, ciphers, read-ahead, session cache, ticket keys and number of tickets are
 * the same). The client is the same engine for both; it offers only the cipher measured and does
 * not verify the certificate (client work is not measured). The checks at the end confirm that
 * both servers sent the same bytes and tickets per handshake and resumed (or not) every time.
 *
 *   handshakes  buffer mode; full TLS 1.3 (RSA-2048, ECDSA P-256), resumed TLS 1.3 (each ticket
 *               used once, the new one offered next) and resumed TLS 1.2 (session ID, tickets
 *               off; 4x as many, they are short). Engine: tl_engine_new, unwrap then wrap per
 *               flight, tl_engine_free. Raw: SSL_new + two memory BIOs, BIO_write of the flight,
 *               SSL_do_handshake, SSL_read_ex once the handshake is done (a correct server must
 *               look for data that came with the client's Finished), BIO_read of the output,
 *               SSL_free after marking the shutdown sent as the engine does (else OpenSSL drops
 *               the session from its cache). Both clear the thread's error queue before their
 *               OpenSSL calls, as SSL_get_error requires.
 *   records     16 KiB application writes (and reads into a 16 KiB buffer), server to client and
 *               client to server: buffer mode (tl_engine_wrap/unwrap vs SSL_write_ex/SSL_read_ex
 *               over memory BIOs) and transport mode over an AF_UNIX socketpair (tl_engine_write/
 *               read with recv/send(MSG_NOSIGNAL) callbacks vs SSL_write_ex/SSL_read_ex on
 *               SSL_set_fd's socket BIO). The client checks every byte it receives.
 *
 * Only the server's calls are timed, with CLOCK_THREAD_CPUTIME_ID: client and server alternate on
 * one thread, so the client's work (and any wait) is never counted. Records are timed per batch
 * (1 MiB when the socket buffer holds it) so the timer's own cost stays negligible.
 *
 * Rounds interleave the two paths (engine first in even rounds, raw first in odd ones); the table
 * gives medians with min-max, and the ratio engine/raw is the median of the per-round ratios.
 * It is a benchmark: it fails only when something does not work (a handshake, a byte count), never
 * because of a timing.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h> /* a profile (bench/callgrind.sh) starts after the warm-up */
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#endif

#include "bench_engine.h"

const char *const PATH_NAME[2] = {"engine", "raw"};

/* ---- small things ------------------------------------------------------------------------ */

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_engine: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(2);
}

uint64_t intervals;
static double timer_ns; /* what one interval's clock reading costs (timer_cost_ns) */

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- options ----------------------------------------------------------------------------- */

options opt = {5, 2000, 512, false, false, false, -1, NULL};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_engine [--rounds N] [--handshakes N] [--mib N] [--cipher aes|chacha]\n"
        "                    [--quick] [--json] [--cpu N] [--only KEY[,KEY...]]\n"
        "  --rounds N      rounds, engine and raw interleaved (default 5)\n"
        "  --handshakes N  handshakes per measurement (default 2000; TLS 1.2 resumption 4N)\n"
        "  --mib N         MiB per record measurement and direction (default 512)\n"
        "  --cipher C      aes (TLS_AES_128_GCM_SHA256, default) or chacha\n"
        "  --quick         a smoke run: 3 rounds, 100 handshakes, 32 MiB\n"
        "  --json          machine-readable output instead of the table\n"
        "  --cpu N         pin the thread to CPU N\n"
        "  --only KEYS     run only these workloads (hs_full_rsa hs_full_ecdsa hs_resumed_tls13\n"
        "                  hs_resumed_tls12 buf_s2c buf_c2s tp_s2c tp_c2s; a prefix works)\n");
}

static int int_arg(int argc, char **argv, int *i, int min, int max)
{
    if (*i + 1 >= argc)
        die("%s needs a number", argv[*i]);
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < min || v > max)
        die("%s: %s is not a number in %d..%d", argv[*i - 1], argv[*i], min, max);
    return (int)v;
}

static void parse_args(int argc, char **argv)
{
    bool rounds = false, hs = false, mib = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--rounds")) {
            opt.rounds = int_arg(argc, argv, &i, 1, MAX_ROUNDS);
            rounds = true;
        } else if (!strcmp(a, "--handshakes")) {
            opt.handshakes = int_arg(argc, argv, &i, 1, 10000000);
            hs = true;
        } else if (!strcmp(a, "--mib")) {
            opt.mib = int_arg(argc, argv, &i, 1, 1 << 20);
            mib = true;
        } else if (!strcmp(a, "--cpu")) {
            opt.cpu = int_arg(argc, argv, &i, 0, 4095);
        } else if (!strcmp(a, "--cipher")) {
            if (i + 1 >= argc)
                die("--cipher needs aes or chacha");
            const char *c = argv[++i];
            if (!strcmp(c, "chacha"))
                opt.chacha = true;
            else if (strcmp(c, "aes"))
                die("--cipher: '%s' is neither aes nor chacha", c);
        } else if (!strcmp(a, "--only")) {
            if (i + 1 >= argc)
                die("--only needs workload keys");
            opt.only = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            die("unknown option '%s'", a);
        }
    }
    if (opt.quick) {
        if (!rounds)
            opt.rounds = 3;
        if (!hs)
            opt.handshakes = 100;
        if (!mib)
            opt.mib = 32;
    }
}

/* ---- workloads, rounds, statistics ------------------------------------------------------- */

typedef enum wl_kind { WL_HS, WL_REC } wl_kind;

typedef struct workload {
    const char *key, *name;
    wl_kind kind;
    hs_kind hs;
    bool transport, s2c;
    server_side *side;
    tl_tls_ctx *ccfg;
    int count;        /* handshakes, or MiB */
    double max_ratio; /* engine/raw CPU at most this for PASS; 0: no target */
    const char *target;
    double v[2][MAX_ROUNDS]; /* per round: us per handshake, or us per MiB */
    double ratio[MAX_ROUNDS];
    int n;
    hs_check hc[2];
    rec_check rc[2];
} workload;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stat3 {
    double med, min, max;
} stat3;

static stat3 stats(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    stat3 s = {n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2, tmp[0], tmp[n - 1]};
    return s;
}

/* One measurement: server CPU in us per handshake or per MiB, minus the timer's own cost. */
static double measure(workload *w, int path, int count)
{
    uint64_t ns, before = intervals;
    if (w->kind == WL_HS)
        ns = run_handshakes(w->side, w->ccfg, w->hs, path, count, &w->hc[path]);
    else
        ns = run_records(w->side, w->ccfg, w->transport, w->s2c, path, count, &w->rc[path]);
    double net = (double)ns - (double)(intervals - before) * timer_ns;
    return net / 1e3 / count;
}

/* A tenth of a measurement on both paths, not recorded: allocator, caches, OpenSSL's fetches. */
static void warm_up(workload *w)
{
    int count = w->count / 10;
    if (count < (w->kind == WL_HS ? 5 : 2))
        count = w->kind == WL_HS ? 5 : 2;
    for (int p = 0; p < 2; p++)
        measure(w, p, count);
    memset(w->hc, 0, sizeof w->hc);
    memset(w->rc, 0, sizeof w->rc);
}

static bool selected(const char *key)
{
    if (!opt.only)
        return true;
    const char *p = opt.only;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0 && strncmp(key, p, len) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

/* ---- machine facts ----------------------------------------------------------------------- */

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, len, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, len, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* The machine's CPU time from /proc/stat, in seconds: busy (all CPUs, any process) and stolen by
 * the hypervisor. Minus our own CPU time, busy says how much else ran during the benchmark. */
typedef struct machine_cpu {
    double busy, steal;
} machine_cpu;

static machine_cpu machine_cpu_now(void)
{
    machine_cpu m = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return m;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        m.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
        m.steal = (double)v[7] / hz;
    }
    fclose(f);
    return m;
}

static double own_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The CPU time an empty interval measures: the median of many. */
static double timer_cost_ns(void)
{
    enum { N = 4001 };
    static double d[N];
    for (int i = 0; i < N; i++) {
        uint64_t t0 = cpu_ns();
        d[i] = (double)(cpu_ns() - t0);
    }
    qsort(d, N, sizeof d[0], cmp_double);
    return d[N / 2];
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (opt.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opt.cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            die("cannot pin to CPU %d: %s", opt.cpu, strerror(errno));
    }
    double start_wall = wall_s();
    time_t now = time(NULL);
    char date[64], model[256], load0[64], load1[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    cpu_model(model, sizeof model);
    loadavg(load0, sizeof load0);
    struct utsname un;
    if (uname(&un) != 0)
        snprintf(un.release, sizeof un.release, "?");
    machine_cpu m0 = machine_cpu_now();
    double own0 = own_cpu_s();

    src = malloc(SRC_SIZE);
    if (!src)
        die("out of memory");
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < SRC_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        src[i] = (uint8_t)x;
    }
    nbuf_init(&c2s, NET_CAP);
    nbuf_init(&s2c, NET_CAP);

    if (!opt.json)
        fprintf(stderr, "bench_engine: making certificates...\n");
    tl_certgen_pair rsa = make_cert(TL_KEY_RSA_2048), ec = make_cert(TL_KEY_ECDSA_P256);
    server_side s_rsa, s_ec, s_ec12;
    server_side_init(&s_rsa, server_cfg(&rsa, true));
    server_side_init(&s_ec, server_cfg(&ec, true));
    server_side_init(&s_ec12, server_cfg(&ec, false));
    tl_tls_ctx *c13 = client_cfg(TL_TLS1_3), *c12 = client_cfg(TL_TLS1_2);

    /* Records per batch in transport mode: what the socket buffer surely holds (up to 1 MiB). */
    {
        int sv[2], big = 4 << 20, got = 0;
        socklen_t len = sizeof got;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            die("socketpair: %s", strerror(errno));
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &got, &len);
        close(sv[0]);
        close(sv[1]);
        batch_recs = got / 2 / 24576; /* a 16 KiB record costs ~20 KiB of socket memory */
        if (batch_recs > MAX_BATCH)
            batch_recs = MAX_BATCH;
        if (batch_recs < 1)
            batch_recs = 1;
    }

    int n = opt.handshakes;
    const double HS_MAX = 1.03, REC_MAX = 1.0 / 0.95;
#define HS(k, nm, kind_, side_, cli, cnt)                                                          \
    {.key = k, .name = nm, .kind = WL_HS, .hs = kind_, .side = side_, .ccfg = cli, .count = cnt,  \
     .max_ratio = HS_MAX, .target = "<= 1.03"}
#define RECS(k, nm, tp, dir, maxr, tgt)                                                            \
    {.key = k, .name = nm, .kind = WL_REC, .transport = tp, .s2c = dir, .side = &s_ec,            \
     .ccfg = c13, .count = opt.mib, .max_ratio = maxr, .target = tgt}
    workload wl[] = {
        HS("hs_full_rsa", "full TLS 1.3 handshake, RSA-2048", HS_FULL, &s_rsa, c13, n),
        HS("hs_full_ecdsa", "full TLS 1.3 handshake, ECDSA P-256", HS_FULL, &s_ec, c13, n),
        HS("hs_resumed_tls13", "resumed TLS 1.3 (ticket, X25519)", HS_RESUME13, &s_ec, c13, n),
        HS("hs_resumed_tls12", "resumed TLS 1.2 (session ID)", HS_RESUME12, &s_ec12, c12, 4 * n),
        RECS("buf_s2c", "records, buffer mode, server -> client", false, true, 0, "-"),
        RECS("buf_c2s", "records, buffer mode, client -> server", false, false, 0, "-"),
        RECS("tp_s2c", "records, transport mode, server -> client", true, true, REC_MAX,
             "MB/s >= 95%"),
        RECS("tp_c2s", "records, transport mode, client -> server", true, false, REC_MAX,
             "MB/s >= 95%"),
    };
#undef HS
#undef RECS
    int nwl = (int)(sizeof wl / sizeof wl[0]), active = 0;
    for (int i = 0; i < nwl; i++)
        active += selected(wl[i].key);
    if (!active)
        die("--only %s selects no workload", opt.only);

    double tcost = timer_ns = timer_cost_ns();
    const char *suite = opt.chacha ? "TLS_CHACHA20_POLY1305_SHA256" : "TLS_AES_128_GCM_SHA256";
    if (!opt.json) {
        printf("tlsloop %s engine benchmark (bench/bench_engine/), %s\n", TL_VERSION_STRING, date);
        printf("machine: %s, %ld CPUs online, kernel %s, %s\n", model,
               sysconf(_SC_NPROCESSORS_ONLN), un.release, OpenSSL_version(OPENSSL_VERSION));
        printf("settings: %d rounds; %d handshakes per measurement (TLS 1.2 resumption %d); "
               "%d MiB per record measurement;\n  %s; %d-byte application writes and reads; "
               "%d records per timed batch (transport mode: %d)%s\n",
               opt.rounds, n, 4 * n, opt.mib, suite, REC, MAX_BATCH, batch_recs,
               opt.cpu >= 0 ? "; pinned" : "");
        printf("method: one thread; client and server take turns and only the server's calls are "
               "timed, with\n  CLOCK_THREAD_CPUTIME_ID (an empty interval reads %.0f ns; "
               "subtracted per interval).\n  raw = SSL_new on the engine configuration's own "
               "SSL_CTX, with memory BIOs (buffer mode) or\n  SSL_set_fd (transport mode). Rounds "
               "alternate which path goes first; engine/raw = median of the\n  per-round ratios "
               "of server CPU (above 1: the engine costs more).\n",
               tcost);
        printf("load average at start: %s\n\n", load0);
        fflush(stdout);
    }

    for (int i = 0; i < nwl; i++)
        if (selected(wl[i].key))
            warm_up(&wl[i]);
    CALLGRIND_ZERO_STATS; /* one-time costs (RSA blinding, Montgomery contexts) stay out of it */

    for (int r = 0; r < opt.rounds; r++) {
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!selected(w->key))
                continue;
            int first = r % 2 ? P_RAW : P_ENGINE;
            for (int k = 0; k < 2; k++) {
                int p = k == 0 ? first : 1 - first;
                w->v[p][w->n] = measure(w, p, w->count);
            }
            w->ratio[w->n] = w->v[P_ENGINE][w->n] / w->v[P_RAW][w->n];
            w->n++;
        }
        if (!opt.json) {
            fprintf(stderr, "bench_engine: round %d/%d done (%.0f s)\n", r + 1, opt.rounds,
                    wall_s() - start_wall);
        }
    }
    loadavg(load1, sizeof load1);
    machine_cpu m1 = machine_cpu_now();
    double steal_s = m1.steal - m0.steal;
    double other_s = (m1.busy - m0.busy) - (own_cpu_s() - own0);
    if (other_s < 0)
        other_s = 0;
    double elapsed = wall_s() - start_wall;

    /* Consistency: both paths did the same work. */
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n || w->kind != WL_HS)
            continue;
        hs_check *e = &w->hc[P_ENGINE], *r = &w->hc[P_RAW];
        uint64_t want = w->hs == HS_FULL ? 0 : e->handshakes;
        if (e->reused != want || r->reused != (w->hs == HS_FULL ? 0 : r->handshakes))
            die("%s: resumed %llu/%llu (engine) and %llu/%llu (raw)", w->key,
                (unsigned long long)e->reused, (unsigned long long)e->handshakes,
                (unsigned long long)r->reused, (unsigned long long)r->handshakes);
        if (e->tickets * r->handshakes != r->tickets * e->handshakes)
            die("%s: the engine and raw servers sent different numbers of tickets", w->key);
        double be = (double)e->server_bytes / e->handshakes,
               br = (double)r->server_bytes / r->handshakes;
        if (be > br * 1.01 || br > be * 1.01)
            die("%s: server bytes per handshake differ: engine %.1f, raw %.1f", w->key, be, br);
    }

    if (opt.json) {
        printf("{\n  \"bench\": \"bench_engine\",\n  \"tlsloop\": \"%s\",\n  \"date\": ",
               TL_VERSION_STRING);
        json_str(date);
        printf(",\n  \"cpu\": ");
        json_str(model);
        printf(",\n  \"cpus\": %ld,\n  \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
        json_str(un.release);
        printf(",\n  \"openssl\": ");
        json_str(OpenSSL_version(OPENSSL_VERSION));
        printf(
            ",\n  \"cipher\": \"%s\",\n  \"rounds\": %d,\n  \"handshakes\": %d,\n  \"mib\": %d,\n"
            "  \"batch_records\": %d,\n  \"transport_batch_records\": %d,\n"
            "  \"timer_ns\": %.1f,\n  \"loadavg_start\": \"%s\",\n  \"loadavg_end\": \"%s\",\n"
            "  \"steal_s\": %.2f,\n  \"other_cpu_s\": %.1f,\n  \"elapsed_s\": %.1f,\n"
            "  \"workloads\": [",
            suite, opt.rounds, n, opt.mib, MAX_BATCH, batch_recs, tcost, load0, load1, steal_s,
            other_s, elapsed);
        bool first = true;
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!w->n)
                continue;
            stat3 ratio = stats(w->ratio, w->n);
            printf("%s\n    {\"key\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"count\": %d,",
                   first ? "" : ",", w->key, w->name, w->kind == WL_HS ? "us/handshake" : "us/MiB",
                   w->count);
            first = false;
            for (int p = 0; p < 2; p++) {
                stat3 s = stats(w->v[p], w->n);
                printf(
                    "\n     \"%s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"rounds\": [",
                    PATH_NAME[p], s.med, s.min, s.max);
                for (int k = 0; k < w->n; k++)
                    printf("%s%.3f", k ? ", " : "", w->v[p][k]);
                printf("]");
                if (w->kind == WL_REC)
                    printf(", \"mb_per_s\": %.1f", 1048576.0 / s.med);
                printf("},");
            }
            printf("\n     \"ratio\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}, ",
                   ratio.med, ratio.min, ratio.max);
            if (w->max_ratio > 0)
                printf("\"max_ratio\": %.4f, \"verdict\": \"%s\"}", w->max_ratio,
                       ratio.med <= w->max_ratio ? "PASS" : "FAIL");
            else
                printf("\"max_ratio\": null, \"verdict\": \"info\"}");
        }
        printf("\n  ]\n}\n");
        return 0;
    }

    printf("| workload | unit | engine | raw | engine/raw | target | verdict |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n)
            continue;
        stat3 e = stats(w->v[P_ENGINE], w->n), r = stats(w->v[P_RAW], w->n),
              q = stats(w->ratio, w->n);
        const char *verdict = w->max_ratio <= 0 ? "info" : q.med <= w->max_ratio ? "PASS" : "FAIL";
        int prec = e.med < 100 ? 2 : 1;
        printf("| %s | %s | %.*f [%.*f-%.*f] | %.*f [%.*f-%.*f] | %.3f [%.3f-%.3f] | %s | %s |\n",
               w->name, w->kind == WL_HS ? "us/handshake" : "us/MiB", prec, e.med, prec, e.min,
               prec, e.max, prec, r.med, prec, r.min, prec, r.max, q.med, q.min, q.max, w->target,
               verdict);
    }
    bool any_rec = false;
    for (int i = 0; i < nwl; i++)
        any_rec |= wl[i].n && wl[i].kind == WL_REC;
    if (any_rec) {
        printf(
            "\nRecord throughput per server CPU-second (MB = 10^6 bytes; from the medians):\n\n");
        printf("| workload | engine MB/s | raw MB/s | engine/raw |\n|---|---|---|---|\n");
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!w->n || w->kind != WL_REC)
                continue;
            stat3 e = stats(w->v[P_ENGINE], w->n), r = stats(w->v[P_RAW], w->n),
                  q = stats(w->ratio, w->n);
            printf("| %s | %.0f | %.0f | %.3f |\n", w->name, 1048576.0 / e.med, 1048576.0 / r.med,
                   1.0 / q.med);
        }
    }
    printf("\nchecks:");
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n)
            continue;
        if (w->kind == WL_HS) {
            hs_check *e = &w->hc[P_ENGINE];
            hs_check *r = &w->hc[P_RAW];
            printf("\n  %s: %llu+%llu handshakes, resumed %s; per handshake %.2f+%.2f tickets, "
                   "%.1f+%.1f server bytes (engine+raw)",
                   w->key, (unsigned long long)e->handshakes, (unsigned long long)r->handshakes,
                   w->hs == HS_FULL ? "0%" : "100%", (double)e->tickets / e->handshakes,
                   (double)r->tickets / r->handshakes, (double)e->server_bytes / e->handshakes,
                   (double)r->server_bytes / r->handshakes);
        } else {
            printf("\n  %s: %s, %llu+%llu bytes, socket-full stalls %llu+%llu (engine+raw)",
                   w->key, w->rc[P_ENGINE].cipher, (unsigned long long)w->rc[P_ENGINE].bytes,
                   (unsigned long long)w->rc[P_RAW].bytes,
                   (unsigned long long)w->rc[P_ENGINE].stalls,
                   (unsigned long long)w->rc[P_RAW].stalls);
        }
    }
    printf("\nelapsed %.0f s; load average at end: %s; other processes used %.1f CPU-seconds "
           "(%.0f%% of one CPU)\nduring the run, the hypervisor stole %.2f s%s\n",
           elapsed, load1, other_s, 100 * other_s / elapsed, steal_s,
           other_s > 0.2 * elapsed ? ": NOISY, compare with a quiet run" : "");

    for (int i = 0; i < 3; i++) {
        server_side *s = i == 0 ? &s_rsa : i == 1 ? &s_ec : &s_ec12;
        tl_engine_free(s->anchor);
        tl_tls_ctx_free(s->cfg);
    }
    tl_tls_ctx_free(c13);
    tl_tls_ctx_free(c12);
    tl_certgen_pair_free(&rsa);
    tl_certgen_pair_free(&ec);
    free(c2s.p);
    free(s2c.p);
    free(src);
    return 0;
}
