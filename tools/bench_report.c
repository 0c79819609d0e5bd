/* bench_report.c - the final report of `tlsloop bench`: the merged figures as text or as JSON
 * (--json), percentiles of each histogram, errors by kind, and whether the generator saturated. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const char *const MODE_NAMES[] = {"keep-alive", "new connection per request (full "
                                         "handshakes)", "new connection per request (resumed)",
                                         "handshake only"};

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

/* h2load's terms: succeeded (2xx, 3xx), failed (the rest: 4xx, 5xx and no response), errored
 * (no response: reset, refused, timed out, the connection failed), timeout (no response in
 * time). From the error table: its "HTTP Nxx" kinds are responses that came. */
typedef struct outcome {
    uint64_t succeeded, failed, errored, timeout;
} outcome;

static outcome outcomes(const totals *t)
{
    outcome o = {.succeeded = t->done, .failed = t->errors};
    uint64_t http = 0;
    for (int i = 0; i < t->errs.used; i++) {
        if (!strncmp(t->errs.kind[i], "HTTP ", 5))
            http += t->errs.n[i];
        if (!strncmp(t->errs.kind[i], "timeout", 7))
            o.timeout += t->errs.n[i];
    }
    o.errored = t->errors - http;
    return o;
}

void bench_report(bench *b, totals *t, const char *url_text)
{
    double s = t->seconds > 0 ? t->seconds : 1;
    outcome o = outcomes(t);
    if (b->json) {
        printf("{\n  \"url\": ");
        json_string(url_text);
        printf(",\n  \"io\": \"%s\"", tl_loop_backend(b->w[0].loop));
        printf(",\n  \"protocol\": \"%s\",\n  \"streams_per_connection\": %d",
               b->h2 ? "h2" : b->mode == M_HSONLY ? "none" : "http/1.1", b->streams);
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
        printf("},\n  \"streams_retried\": %llu", (unsigned long long)t->retried);
        printf(",\n  \"outcome\": {\"succeeded\": %llu, \"failed\": %llu, \"errored\": %llu, "
               "\"timeout\": %llu}", (unsigned long long)o.succeeded,
               (unsigned long long)o.failed, (unsigned long long)o.errored,
               (unsigned long long)o.timeout);
        printf(",\n  \"errors_total\": %llu,\n  \"generator_cpu_percent\": %.1f,\n"
               "  \"generator_saturated\": %s\n}\n", (unsigned long long)t->errors, t->cpu_pct,
               t->saturated ? "true" : "false");
        return;
    }
    char mode[80];
    if (b->h2)
        snprintf(mode, sizeof mode, "HTTP/2, %d stream%s per connection", b->streams,
                 b->streams == 1 ? "" : "s");
    else
        snprintf(mode, sizeof mode, "%s", MODE_NAMES[b->mode]);
    printf("tlsloop bench %s: %s, %d thread%s, %d connection%s, %.1f s measured", url_text,
           mode, b->threads, b->threads == 1 ? "" : "s", b->conns,
           b->conns == 1 ? "" : "s", t->seconds);
    if (b->warmup_ms)
        printf(" after %.1f s of warm-up", (double)b->warmup_ms / 1e3);
    if (b->rate > 0)
        printf(", at %.0f/s (latency from the intended send time)", b->rate);
    printf(", io=%s\n", tl_loop_backend(b->w[0].loop));
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
    if (b->h2) {
        printf("  outcome      %llu succeeded, %llu failed, %llu errored, %llu timeout (as h2load "
               "counts them)\n", (unsigned long long)o.succeeded, (unsigned long long)o.failed,
               (unsigned long long)o.errored, (unsigned long long)o.timeout);
        printf("  streams      refused by the server and sent again: %llu\n",
               (unsigned long long)t->retried);
    }
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
