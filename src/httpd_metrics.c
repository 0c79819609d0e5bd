/* httpd_metrics.c - the server's and httpd's counters as Prometheus text (tlsloop/httpd.h).
 *
 * Text exposition format 0.0.4: a HELP and a TYPE line per family, then its samples. Names carry
 * the "tlsloop_" prefix; counters end in "_total". Counters are summed over workers; per-worker
 * figures are one tl_server_get_stats call away for those who want them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "httpd_int.h"

typedef struct writer {
    tl_buf *out;
    int rc;
} writer;

static void emit(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(writer *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || tl_buf_append(w->out, line, (size_t)n) != 0)
        w->rc = -1;
}

static void family(writer *w, const char *name, const char *type, const char *help)
{
    emit(w, "# HELP tlsloop_%s %s\n# TYPE tlsloop_%s %s\n", name, help, name, type);
}

static void one(writer *w, const char *name, const char *type, const char *help, double v)
{
    family(w, name, type, help);
    emit(w, "tlsloop_%s %.17g\n", name, v);
}

int tl_httpd_metrics_text(tl_httpd *h, tl_buf *out)
{
    writer w = {out, 0};
    if (h->srv) {
        tl_server_stats s;
        tl_server_get_stats(h->srv, -1, &s);
        one(&w, "connections_open", "gauge", "Connections open now.", (double)s.conns_open);
        one(&w, "connections_total", "counter", "Connections accepted.", (double)s.conns_total);
        family(&w, "connections_refused_total", "counter",
               "Connections closed at once: the source was at its limit, or its PROXY header "
               "was invalid.");
        emit(&w, "tlsloop_connections_refused_total{reason=\"per_source\"} %llu\n",
             (unsigned long long)s.conns_refused_source);
        emit(&w, "tlsloop_connections_refused_total{reason=\"proxy_header\"} %llu\n",
             (unsigned long long)s.proxy_invalid);
        one(&w, "accept_pauses_total", "counter",
            "Times a worker stopped accepting at a limit (clients wait in the backlog).",
            (double)s.accept_pauses);
        family(&w, "connections_closed_total", "counter", "Closed connections by how they ended.");
        for (int e = TL_END_CLEAN; e <= TL_END_LOCAL; e++)
            emit(&w, "tlsloop_connections_closed_total{end=\"%s\"} %llu\n",
                 tl_conn_end_name((tl_conn_end)e), (unsigned long long)s.ends[e]);
        one(&w, "handshakes_active", "gauge", "TLS handshakes in progress.",
            (double)s.handshakes_active);
        family(&w, "handshakes_total", "counter", "Completed TLS handshakes.");
        emit(&w, "tlsloop_handshakes_total{kind=\"full\"} %llu\n",
             (unsigned long long)s.handshakes_full);
        emit(&w, "tlsloop_handshakes_total{kind=\"resumed\"} %llu\n",
             (unsigned long long)s.handshakes_resumed);
        family(&w, "handshake_failures_total", "counter", "Failed TLS handshakes by reason.");
        for (int r = 0; r < TL_HS_FAIL_KINDS; r++)
            emit(&w, "tlsloop_handshake_failures_total{reason=\"%s\"} %llu\n",
                 tl_hs_fail_name((tl_hs_fail)r), (unsigned long long)s.handshakes_failed[r]);
        one(&w, "handshake_rate", "gauge", "TLS handshakes per second over the last second.",
            s.handshake_rate);
        one(&w, "handshake_cpu_seconds_total", "counter", "CPU time spent in TLS handshakes.",
            (double)s.handshake_cpu_ns / 1e9);
        family(&w, "bytes_total", "counter", "Application bytes of closed connections.");
        emit(&w, "tlsloop_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)s.bytes_in);
        emit(&w, "tlsloop_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)s.bytes_out);
        one(&w, "certificate_expiry_days", "gauge",
            "Days until the first certificate expires.", (double)s.cert_expiry_days);
        one(&w, "reloads_total", "counter", "Configuration reloads that took effect.",
            (double)s.reloads);
        one(&w, "reload_failures_total", "counter", "Reloads refused (the old configuration stays).",
            (double)s.reload_failures);
        family(&w, "tickets_total", "counter", "Session tickets issued and accepted.");
        emit(&w, "tlsloop_tickets_total{event=\"issued\"} %llu\n",
             (unsigned long long)s.tickets.issued);
        emit(&w, "tlsloop_tickets_total{event=\"decrypted_current\"} %llu\n",
             (unsigned long long)s.tickets.decrypted_current);
        emit(&w, "tlsloop_tickets_total{event=\"decrypted_old\"} %llu\n",
             (unsigned long long)s.tickets.decrypted_old);
        emit(&w, "tlsloop_tickets_total{event=\"unknown_key\"} %llu\n",
             (unsigned long long)s.tickets.unknown_key);
    }
    tl_httpd_stats st;
    tl_httpd_get_stats(h, &st);
    one(&w, "http_requests_total", "counter", "HTTP request heads read.", (double)st.requests);
    family(&w, "http_responses_total", "counter", "HTTP answers by status class.");
    for (int k = 1; k <= 5; k++)
        emit(&w, "tlsloop_http_responses_total{code=\"%dxx\"} %llu\n", k,
             (unsigned long long)st.status[k]);
    one(&w, "http_not_modified_total", "counter", "304 answers.", (double)st.not_modified);
    one(&w, "http_not_found_total", "counter", "404 answers.", (double)st.not_found);
    one(&w, "http_rejected_total", "counter",
        "Malformed or refused requests whose connection was closed.", (double)st.rejected);
    one(&w, "http_timeouts_total", "counter", "408 answers: a request head or body too slow.",
        (double)st.timeouts);
    one(&w, "http_body_bytes_total", "counter", "Bytes of answer bodies sent.",
        (double)st.body_bytes);
    family(&w, "file_cache_total", "counter", "Lookups in the small-file cache.");
    emit(&w, "tlsloop_file_cache_total{result=\"hit\"} %llu\n", (unsigned long long)st.cache_hits);
    emit(&w, "tlsloop_file_cache_total{result=\"miss\"} %llu\n",
         (unsigned long long)st.cache_misses);
    return w.rc;
}
