/* bench.c - `tlsloop bench URL`: a TLS load generator on the client API (docs/bench.md). This
 * file: the options, the setup, the progress line and the merge of the threads' figures; the load
 * is bench_load.c, the report bench_report.c, the histogram bench_hist.c. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
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

/* ---- options ---------------------------------------------------------------------------- */

void cmd_bench_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop bench [options] URL\n\n"
            "A TLS load generator. One loop per thread; each connection slot runs one operation\n"
            "at a time: a request on a kept connection (default), or a new connection per\n"
            "request, or a handshake alone; with --h2, -m requests at once on its HTTP/2\n"
            "connection.\n\n"
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
            "      --default-slice    with --rate: keep the scheduler's default slice, as other\n"
            "                         load generators do\n"
            "      --tlsv1.2, --tlsv1.3  only this TLS version\n"
            "      --tls-kdf openssl|tlsloop  the client's TLS key derivation and HMAC:\n"
            "                         OpenSSL's own (default) or tlsloop's faster ones\n"
            "      --io epoll|uring|auto  the loops' I/O backend (default: TLSLOOP_IO, else\n"
            "                         epoll; auto: io_uring when the kernel allows it)\n"
            "      --no-tickets       TLS 1.2: ask for no session ticket, so --resume resumes\n"
            "                         by session ID from the server's cache\n"
            "      --cipher LIST      TLS 1.3 suites (TLS_...) or a TLS 1.2 cipher list\n"
            "      --alpn LIST        protocols offered (default http/1.1; h2,http/1.1 with --h2)\n"
            "      --h2               HTTP/2 on kept connections (ALPN h2; over http:// by prior\n"
            "                         knowledge, as h2load); a server that does not select h2\n"
            "                         is an error\n"
            "  -m, --max-streams N    with --h2: N requests at once on each connection, each\n"
            "                         finished one followed by the next (default 1; h2load -m)\n"
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
    bool alpn_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[40];
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            a = name;
            v = eq + 1;
        } else if (a[0] == '-' && a[1] && a[1] != '-' && a[2] && strchr("tcdnmXH", a[1])) {
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
        } else if (!strcmp(a, "--default-slice")) {
            b->default_slice = true;
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
        } else if (!strcmp(a, "--io")) {
            if (tl_io_backend_parse(VALUE(), &b->io) != 0)
                return usage_error("--io needs epoll, uring or auto");
        } else if (!strcmp(a, "--h2")) {
            b->h2 = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--max-streams")) {
            if (parse_count(VALUE(), 10000, &n) != 0)
                return usage_error("%s needs a number from 1 to 10000", a);
            b->streams = (int)n;
        } else if (!strcmp(a, "--alpn")) {
            if (!(cc.alpn = VALUE()))
                return usage_error("--alpn needs a list");
            alpn_given = true;
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
    if (b->streams && !b->h2)
        return usage_error("-m (streams per connection) needs --h2");
    if (b->default_slice && !(b->rate > 0))
        return usage_error("--default-slice goes with --rate");
    if (b->h2 && b->mode != M_KEEPALIVE)
        return usage_error("--h2 runs on kept connections: not with --new-conn, --resume or "
                           "--handshake-only");
    /* h2 and http/1.1, as h2load offers them: a server that cannot speak HTTP/2 then answers
     * with http/1.1 (an error the report names) rather than a no_application_protocol alert. */
    if (b->h2 && !alpn_given)
        cc.alpn = "h2,http/1.1";
    if (!b->streams)
        b->streams = 1;
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
        for (int k = 0; b->h2 && w->slots && k < w->nslots; k++)
            if (!(w->slots[k].ops = calloc((size_t)b->streams, sizeof *w->slots[k].ops))) {
                fprintf(stderr, "tlsloop bench: out of memory\n");
                return EXIT_FAILURE_RUN;
            }
        if (b->rate > 0) {
            w->interval_ns = 1e9 * b->threads / b->rate;
            w->queue = malloc(RATE_QUEUE_MAX * sizeof *w->queue);
        }
        if (!(w->loop = tl_loop_new_ex(&(tl_loop_opts){.io = b->io}, err, sizeof err)) ||
            !w->slots || (b->rate > 0 && !w->queue)) {
            fprintf(stderr, "tlsloop bench: %s\n", w->loop ? "out of memory" : err);
            return EXIT_FAILURE_RUN;
        }
        if (i == 0 && *tl_loop_backend_note(w->loop) && b->io != TL_IO_AUTO)
            fprintf(stderr, "tlsloop bench: --io: %s\n", tl_loop_backend_note(w->loop));
        w->tfd = -1;
        if (b->rate > 0 && (w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
            fprintf(stderr, "tlsloop bench: timerfd: %s\n", strerror(errno));
            return EXIT_FAILURE_RUN;
        }
        tl_io_init(&w->tick, w->tfd, bench_on_tick, w);
        tl_timer_init(&w->stop_timer, bench_on_stop_deadline, w);
        w->stop_work = (tl_work){.done = bench_on_stop, .data = w};
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
        if (pthread_create(&b->w[i].th, NULL, bench_worker_main, &b->w[i]) != 0) {
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
        tot->retried += atomic_load(&w->retried);
        for (int k = 0; k < 6; k++)
            tot->status[k] += w->status[k];
        hist_merge(&tot->lat, &w->lat);
        hist_merge(&tot->connect, &w->connect);
        hist_merge(&tot->handshake, &w->handshake);
        hist_merge(&tot->lag, &w->lag);
        for (int k = 0; k < w->errs.used; k++)
            bench_err_add(&tot->errs, w->errs.kind[k], w->errs.n[k]);
    }
    double window = (double)(t_stop - (cpu_started ? from : t_stop)) / 1e9;
    tot->cpu_pct = window > 0 ? (cpu_end - cpu_start) / window / b->threads * 100 : 0;
    tot->saturated = tot->cpu_pct > 90;
    bench_report(b, tot, url_arg);

    for (int i = 0; i < b->threads; i++) {
        if (b->w[i].tfd >= 0)
            close(b->w[i].tfd);
        tl_loop_free(b->w[i].loop);
        for (int k = 0; k < b->w[i].nslots; k++)
            free(b->w[i].slots[k].ops);
        free(b->w[i].slots);
        free(b->w[i].queue);
    }
    free(b->w);
    tl_client_free(b->cl);
    return tot->errors ? EXIT_FAILURE_RUN : EXIT_OK;
}
