/* bench_http.c - the HTTP/1.1 request parser (tlsloop/http.h): ns and bytes per second for three
 * request sizes, alone and with the per-request checks (bench/README.md; docs/benchmarks.md).
 * usage: bench_http [--rounds N] [--seconds S]   (defaults 5 rounds of 0.5 s each) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tlsloop/http.h>

static const struct {
    const char *name;
    const char *text;
} REQS[] = {
    {"curl", "GET /index.html HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: curl/7.88.1\r\n"
                    "Accept: */*\r\n\r\n"},
    {"wrk", "GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
    {"browser",
     "GET /assets/app.3f2a91c.js?v=12 HTTP/1.1\r\nHost: www.example.com\r\n"
     "Connection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
     "sec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\nsec-ch-ua-platform: \"Linux\"\r\n"
     "Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\n"
     "Sec-Fetch-Dest: script\r\nReferer: https://www.example.com/products/list?page=2\r\n"
     "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
     "Cookie: session=7f3a9c0e1b2d4f6a8c0e2b4d6f8a0c2e; theme=dark; _ga=GA1.2.123456789.1700000000\r\n"
     "If-None-Match: \"5f2b-18ed0a1b2c3d4e5f\"\r\nIf-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
     "\r\n"},
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static volatile size_t sink;

/* One round: ns per request for `seconds` of CPU. */
static double round_ns(const char *req, size_t len, bool full, double seconds)
{
    tl_http_header h[64];
    char path[1024];
    size_t iters = 0;
    double t0 = cpu_now(), t = t0;
    while (t - t0 < seconds) {
        for (int i = 0; i < 10000; i++) {
            tl_http_request r = {.headers = h, .max_headers = 64};
            int n = tl_http_parse_request(req, len, &r);
            if (n <= 0) {
                fprintf(stderr, "bench_http: a request did not parse (%d)\n", n);
                exit(1);
            }
            size_t acc = (size_t)n + r.num_headers;
            if (full) {
                tl_http_message m;
                acc += (size_t)tl_http_check_request(&r, &m);
                acc += (size_t)tl_http_normalize_path(r.target, r.target_len, path, sizeof path);
            }
            sink += acc;
        }
        iters += 10000;
        t = cpu_now();
    }
    return (t - t0) * 1e9 / (double)iters;
}

int main(int argc, char **argv)
{
    int rounds = 5;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_http [--rounds N] [--seconds S]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 100 || seconds <= 0) {
        fprintf(stderr, "bench_http: --rounds 1-100, --seconds above 0\n");
        return 2;
    }
    printf("HTTP/1.1 request parsing, CPU time, median of %d rounds of %.1f s [min-max]\n", rounds,
           seconds);
    printf("%-18s %-14s %22s %10s\n", "request", "work", "ns/request", "MB/s");
    for (size_t k = 0; k < sizeof REQS / sizeof REQS[0]; k++) {
        size_t len = strlen(REQS[k].text);
        for (int full = 0; full < 2; full++) {
            double ns[100];
            for (int r = 0; r < rounds; r++)
                ns[r] = round_ns(REQS[k].text, len, full, seconds);
            qsort(ns, (size_t)rounds, sizeof ns[0], cmp);
            double med = ns[rounds / 2];
            char range[64];
            snprintf(range, sizeof range, "%.1f [%.1f-%.1f]", med, ns[0], ns[rounds - 1]);
            char name[40];
            snprintf(name, sizeof name, "%s (%zu B)", REQS[k].name, len);
            printf("%-18s %-14s %22s %10.0f\n", full ? "" : name,
                   full ? "+check+path" : "parse", range, (double)len / med * 1e3);
        }
    }
    return 0;
}
