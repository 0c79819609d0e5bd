/* httpd_metrics.c - httpd's counters, summed over the workers (tl_httpd_get_stats), and as
 * Prometheus text (tlsloop/httpd.h): the server's families (tl_server_metrics_text), then httpd's,
 * with the shared writer of tli.h.
 */
#include <string.h>

#include "httpd/httpd_int.h"

void tl_httpd_get_stats(tl_httpd *h, tl_httpd_stats *out)
{
    memset(out, 0, sizeof *out);
#define SUM(field) out->field += atomic_load_explicit(&st->field, memory_order_relaxed)
    for (unsigned i = 0; i < h->nworkers; i++) {
        hstats *st = &h->workers[i].st;
        SUM(requests);
        for (int k = 0; k < 6; k++)
            SUM(status[k]);
        SUM(not_modified);
        SUM(not_found);
        SUM(rejected);
        SUM(timeouts);
        SUM(body_bytes);
        SUM(cache_hits);
        SUM(cache_misses);
        out->requests_h1 += atomic_load_explicit(&st->proto_requests[HPROTO_H1],
                                                 memory_order_relaxed);
        out->requests_h2 += atomic_load_explicit(&st->proto_requests[HPROTO_H2],
                                                 memory_order_relaxed);
        SUM(h2_conns);
        SUM(h2_streams);
        for (int k = 0; k < TL_H2_ABUSE_KINDS; k++)
            SUM(h2_abuse[k]);
    }
#undef SUM
}

int tl_httpd_metrics_text(tl_httpd *h, tl_buf *out)
{
    tli_prom pw = {out, 0}, *w = &pw;
    if (h->srv && tl_server_metrics_text(h->srv, out) != 0)
        pw.rc = -1;
    tl_httpd_stats st;
    tl_httpd_get_stats(h, &st);
    tli_prom_one(w, "http_requests_total", "counter", "HTTP request heads read.",
                 (double)st.requests);
    tli_prom_family(w, "http_requests_by_protocol_total", "counter",
                    "HTTP requests answered, by protocol.");
    tli_prom_sample(w, "http_requests_by_protocol_total", "protocol", "HTTP/1.1", st.requests_h1);
    tli_prom_sample(w, "http_requests_by_protocol_total", "protocol", "HTTP/2", st.requests_h2);
    tli_prom_one(w, "http2_connections_total", "counter", "Connections that spoke HTTP/2.",
                 (double)st.h2_conns);
    tli_prom_one(w, "http2_streams_total", "counter", "HTTP/2 streams opened by clients.",
                 (double)st.h2_streams);
    tli_prom_family(w, "http2_defended_total", "counter",
                    "HTTP/2 connections ended, or streams refused or reset, by what they did.");
    for (int k = 0; k < TL_H2_ABUSE_KINDS; k++)
        tli_prom_sample(w, "http2_defended_total", "kind", tl_h2_abuse_name((tl_h2_abuse)k),
                        st.h2_abuse[k]);
    tli_prom_family(w, "http_responses_total", "counter", "HTTP answers by status class.");
    for (int k = 1; k <= 5; k++) {
        char code[4] = {(char)('0' + k), 'x', 'x', 0};   /* "2xx" */
        tli_prom_sample(w, "http_responses_total", "code", code, st.status[k]);
    }
    tli_prom_one(w, "http_not_modified_total", "counter", "304 answers.", (double)st.not_modified);
    tli_prom_one(w, "http_not_found_total", "counter", "404 answers.", (double)st.not_found);
    tli_prom_one(w, "http_rejected_total", "counter",
                 "Malformed or refused requests whose connection was closed.", (double)st.rejected);
    tli_prom_one(w, "http_timeouts_total", "counter",
                 "408 answers: a request head or body too slow.",
                 (double)st.timeouts);
    tli_prom_one(w, "http_body_bytes_total", "counter", "Bytes of answer bodies sent.",
                 (double)st.body_bytes);
    tli_prom_family(w, "file_cache_total", "counter", "Lookups in the small-file cache.");
    tli_prom_sample(w, "file_cache_total", "result", "hit", st.cache_hits);
    tli_prom_sample(w, "file_cache_total", "result", "miss", st.cache_misses);
    return pw.rc;
}

const char *tl_h2_abuse_name(tl_h2_abuse kind)
{
    static const char *const names[TL_H2_ABUSE_KINDS] = {
        "rapid_reset", "continuation", "header_list", "flood", "streams", "stall", "body",
        "protocol"};
    return (unsigned)kind < TL_H2_ABUSE_KINDS ? names[kind] : "unknown";
}
