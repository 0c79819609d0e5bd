/* proxy_metrics.c - the proxy's counters, summed over the workers (tl_proxy_get_stats), as
 * Prometheus text, and the metrics-listen listener's one page.
 */
#include <string.h>
#include <time.h>

#include "proxy/proxy_int.h"

/* ---- the metrics page ------------------------------------------------------------------- */

#define METRICS_HEAD_MAX 8192

static void metrics_answer(pair *pr, tl_conn *c, int status, const tl_buf *body, bool head_only)
{
    char head[256];
    size_t n = tl_buf_len(body);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain; version=0.0.4; "
                      "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, tl_http_reason(status), n);
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)tl_buf_rptr(body), n}};
    pr->answered = true;
    tl_conn_writev_close(c, iov, head_only || n == 0 ? 1 : 2);
}

/* One request per connection: GET (or HEAD) /metrics gets the server's and the proxy's counters;
 * /health and /ready 200 "ok"/"ready", or 503 with the reason once the server drains
 * (tl_server_health); anything else a short error. */
void tli_proxy_metrics_read(pair *pr, tl_conn *c, const uint8_t *d, size_t n)
{
    if (pr->answered)
        return;   /* what follows the request is read and dropped while the connection closes */
    size_t from = tl_buf_len(&pr->early);
    tl_buf body = TL_BUF_INIT;
    if (tl_buf_append(&pr->early, d, n) != 0) {
        tl_conn_abort(c);
        return;
    }
    const char *b = (const char *)tl_buf_rptr(&pr->early);
    size_t len = tl_buf_len(&pr->early);
    if (!tl_http_head_ended(b, len, from)) {
        if (len > METRICS_HEAD_MAX)
            metrics_answer(pr, c, 431, &body, false);
        return;
    }
    tl_http_header fields[32];
    tl_http_request req = {.headers = fields, .max_headers = 32};
    int status = 200;
    bool head_only = false;
    if (tl_http_parse_request(b, len, &req) < 0) {
        status = req.error_status ? req.error_status : 400;
    } else {
        head_only = req.method_len == 4 && !memcmp(req.method, "HEAD", 4);
        bool path = req.target_len == 8 && !memcmp(req.target, "/metrics", 8);
        bool health = req.target_len == 7 && !memcmp(req.target, "/health", 7);
        bool ready = req.target_len == 6 && !memcmp(req.target, "/ready", 6);
        if (!head_only && !(req.method_len == 3 && !memcmp(req.method, "GET", 3)))
            status = 405;
        else if (health || ready) {
            const char *why = tl_server_health(pr->p->srv, ready);
            const char *text = why ? why : ready ? "ready" : "ok";
            if (tl_buf_append(&body, text, strlen(text)) != 0 || tl_buf_append(&body, "\n", 1) != 0)
                status = 500;
            else
                status = why ? 503 : 200;
            metrics_answer(pr, c, status, &body, head_only);
            tl_buf_free(&body);
            return;
        } else if (!path)
            status = 404;
    }
    if (status == 200 && (tl_server_metrics_text(pr->p->srv, &body) != 0 ||
                          tl_proxy_metrics_text(pr->p, &body) != 0))
        status = 500;
    if (status != 200)
        tl_buf_free(&body);
    metrics_answer(pr, c, status, &body, head_only);
    tl_buf_free(&body);
}

int tl_proxy_metrics_text(tl_proxy *p, tl_buf *out)
{
    tl_proxy_stats s;
    tl_proxy_get_stats(p, &s);
    tli_prom pw = {out, 0}, *w = &pw;
    tli_prom_one(w, "proxy_clients_total", "counter", "Client connections given a backend leg.",
                 (double)s.clients);
    tli_prom_one(w, "proxy_pairs_open", "gauge", "Client and backend connection pairs open now.",
                 (double)s.active);
    tli_prom_one(w, "proxy_backend_connects_total", "counter", "Backend connections established.",
                 (double)s.backend_connects);
    tli_prom_one(w, "proxy_backend_resumed_total", "counter",
                 "Backend TLS connections that resumed a session (backend-tls).",
                 (double)s.backend_resumed);
    tli_prom_one(w, "proxy_backend_failures_total", "counter",
                 "Backend connections refused, timed out or not verified.",
                 (double)s.backend_failures);
    tli_prom_one(w, "proxy_no_backend_total", "counter",
                 "Clients closed because no backend answered.", (double)s.no_backend);
    tli_prom_family(w, "proxy_backend_up", "gauge",
                    "1 while the backend answers; 0 after a failure, for backend-retry (it is "
                    "tried after the others meanwhile).");
    struct timespec ts;   /* any thread: the loops' clock (CLOCK_MONOTONIC, ms) read here */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (size_t i = 0; i < p->nbackends; i++)
        tli_prom_sample(w, "proxy_backend_up", "backend", p->backends[i].name,
                        atomic_load(&p->backends[i].down_until) > now ? 0 : 1);
    tli_prom_family(w, "proxy_bytes_total", "counter", "Bytes carried, by direction.");
    tli_prom_sample(w, "proxy_bytes_total", "direction", "to_backend", s.bytes_to_backend);
    tli_prom_sample(w, "proxy_bytes_total", "direction", "to_client", s.bytes_to_client);
    tli_prom_family(w, "proxy_pairs_ended_total", "counter",
                    "Pairs ended, by how: both sides clean, a reset or failure carried across, a "
                    "deadline, or a client that ended TLS without close_notify.");
    const char *how[] = {"clean", "reset", "timeout", "truncated"};
    uint64_t n[] = {s.ended_clean, s.ended_reset, s.ended_timeout, s.ended_truncated};
    for (size_t i = 0; i < 4; i++)
        tli_prom_sample(w, "proxy_pairs_ended_total", "end", how[i], n[i]);
    return pw.rc;
}

void tl_proxy_get_stats(tl_proxy *p, tl_proxy_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < p->nworkers; i++) {
        pworker *w = &p->workers[i];
#define ADD(field, src) out->field += atomic_load_explicit(&w->src, memory_order_relaxed)
        ADD(clients, clients);
        ADD(active, active);
        ADD(backend_connects, connects);
        ADD(backend_failures, failures);
        ADD(no_backend, no_backend);
        ADD(bytes_to_backend, to_backend);
        ADD(bytes_to_client, to_client);
        ADD(ended_clean, clean);
        ADD(ended_reset, reset);
        ADD(ended_timeout, timeout);
        ADD(ended_truncated, truncated);
        ADD(backend_resumed, resumed);
#undef ADD
    }
}
