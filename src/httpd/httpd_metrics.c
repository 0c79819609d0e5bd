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
