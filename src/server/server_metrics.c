/* server_metrics.c - the server's counters as Prometheus text (format 0.0.4, summed over workers;
 * tlsloop/server.h, docs/server.md "Counters"), and the writer the layers above share (tli.h):
 * a HELP and a TYPE line per family, names with the "tlsloop_" prefix, counters in "_total". */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/server_int.h"

void tli_prom_emit(tli_prom *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || tl_buf_append(w->out, line, (size_t)n) != 0)
        w->rc = -1;
}

void tli_prom_family(tli_prom *w, const char *name, const char *type, const char *help)
{
    tli_prom_emit(w, "# HELP tlsloop_%s %s\n# TYPE tlsloop_%s %s\n", name, help, name, type);
}

void tli_prom_one(tli_prom *w, const char *name, const char *type, const char *help, double v)
{
    tli_prom_family(w, name, type, help);
    tli_prom_emit(w, "tlsloop_%s %.17g\n", name, v);
}

void tli_prom_sample(tli_prom *w, const char *name, const char *label, const char *value,
                     uint64_t v)
{
    char esc[256];
    size_t o = 0;
    for (const char *c = value; *c && o + 2 < sizeof esc; c++) {
        if (*c == '"' || *c == '\\' || *c == '\n')
            esc[o++] = '\\';
        esc[o++] = *c == '\n' ? 'n' : *c;
    }
    esc[o] = 0;
    tli_prom_emit(w, "tlsloop_%s{%s=\"%s\"} %llu\n", name, label, esc, (unsigned long long)v);
}

int tl_server_metrics_text(tl_server *srv, tl_buf *out)
{
    tli_prom pw = {out, 0}, *w = &pw;
    tl_server_stats s;
    tl_server_get_stats(srv, -1, &s);
    tli_prom_family(w, "io_backend", "gauge",
                    "The I/O backend the workers' loops run on (1), by name (option io).");
    const char *io = tli_workers_io(srv);
    tli_prom_sample(w, "io_backend", "backend", "epoll", strcmp(io, "io_uring") != 0);
    tli_prom_sample(w, "io_backend", "backend", "io_uring", strcmp(io, "epoll") != 0);
    tli_prom_one(w, "connections_open", "gauge", "Connections open now.", (double)s.conns_open);
    tli_prom_one(w, "connections_total", "counter", "Connections accepted.", (double)s.conns_total);
    tli_prom_family(w, "connections_refused_total", "counter",
                    "Connections closed at once: the source was at its limit, its PROXY header "
                    "was invalid, or it may not send one (proxy-from).");
    tli_prom_sample(w, "connections_refused_total", "reason", "per_source", s.conns_refused_source);
    tli_prom_sample(w, "connections_refused_total", "reason", "proxy_header", s.proxy_invalid);
    tli_prom_sample(w, "connections_refused_total", "reason", "proxy_untrusted",
                    s.proxy_untrusted);
    tli_prom_one(w, "accept_pauses_total", "counter",
                 "Times a worker stopped accepting at a limit (clients wait in the backlog).",
                 (double)s.accept_pauses);
    tli_prom_family(w, "connections_closed_total", "counter",
                    "Closed connections by how they ended.");
    for (int e = TL_END_CLEAN; e <= TL_END_LOCAL; e++)
        tli_prom_sample(w, "connections_closed_total", "end", tl_conn_end_name((tl_conn_end)e),
                        s.ends[e]);
    tli_prom_one(w, "handshakes_active", "gauge", "TLS handshakes in progress.",
                 (double)s.handshakes_active);
    tli_prom_family(w, "handshakes_total", "counter", "Completed TLS handshakes.");
    tli_prom_sample(w, "handshakes_total", "kind", "full", s.handshakes_full);
    tli_prom_sample(w, "handshakes_total", "kind", "resumed", s.handshakes_resumed);
    tli_prom_family(w, "handshake_failures_total", "counter", "Failed TLS handshakes by reason.");
    for (int r = 0; r < TL_HS_FAIL_KINDS; r++)
        tli_prom_sample(w, "handshake_failures_total", "reason", tl_hs_fail_name((tl_hs_fail)r),
                        s.handshakes_failed[r]);
    tli_prom_one(w, "handshake_rate", "gauge", "TLS handshakes per second over the last second.",
                 s.handshake_rate);
    tli_prom_one(w, "handshake_cpu_seconds_total", "counter", "CPU time spent in TLS handshakes.",
                 (double)s.handshake_cpu_ns / 1e9);
    tli_prom_family(w, "bytes_total", "counter", "Application bytes of closed connections.");
    tli_prom_sample(w, "bytes_total", "direction", "in", s.bytes_in);
    tli_prom_sample(w, "bytes_total", "direction", "out", s.bytes_out);
    tli_prom_one(w, "certificate_expiry_days", "gauge",
                 "Days until the first certificate expires.", (double)s.cert_expiry_days);
    tli_prom_one(w, "reloads_total", "counter", "Configuration reloads that took effect.",
                 (double)s.reloads);
    tli_prom_one(w, "reload_failures_total", "counter",
                 "Reloads refused (the old configuration stays).",
                 (double)s.reload_failures);
    tli_prom_family(w, "tickets_total", "counter", "Session tickets issued and accepted.");
    tli_prom_sample(w, "tickets_total", "event", "issued", s.tickets.issued);
    tli_prom_sample(w, "tickets_total", "event", "decrypted_current", s.tickets.decrypted_current);
    tli_prom_sample(w, "tickets_total", "event", "decrypted_old", s.tickets.decrypted_old);
    tli_prom_sample(w, "tickets_total", "event", "unknown_key", s.tickets.unknown_key);
    tli_prom_one(w, "ticket_key_file_reloads_total", "counter",
                 "The ticket key file changed and its keys were taken.",
                 (double)s.key_file_reloads);
    tli_prom_one(w, "ticket_key_file_reload_failures_total", "counter",
                 "The ticket key file changed and was refused (the keys in use stay).",
                 (double)s.key_file_reload_failures);
    tli_prom_family(w, "session_store_total", "counter",
                    "Session store (session-store): lookups and how they ended, sessions stored.");
    tli_prom_sample(w, "session_store_total", "event", "lookup", s.store.lookups);
    tli_prom_sample(w, "session_store_total", "event", "hit", s.store.hits);
    tli_prom_sample(w, "session_store_total", "event", "miss", s.store.misses);
    tli_prom_sample(w, "session_store_total", "event", "timeout", s.store.timeouts);
    tli_prom_sample(w, "session_store_total", "event", "unavailable", s.store.unavailable);
    tli_prom_sample(w, "session_store_total", "event", "rejected", s.store.rejected);
    tli_prom_sample(w, "session_store_total", "event", "stored", s.store.stores);
    tli_prom_sample(w, "session_store_total", "event", "store_error", s.store.store_errors);
    tli_prom_sample(w, "session_store_total", "event", "connect", s.store.connects);
    tli_prom_sample(w, "session_store_total", "event", "disconnect", s.store.disconnects);
    tli_prom_sample(w, "session_store_total", "event", "retry", s.store.retries);
    return pw.rc;
}

/* ---- the metrics listener ---------------------------------------------------------------- */

int tl_server_config_add_metrics_listen(tl_server_config *cfg, char *err, size_t errlen)
{
    const char *v = tl_server_config_value(cfg, "metrics-listen");
    if (!v)
        return 0;
    char listen[300];
    if (strchr(v, ',') || strlen(v) > 64)
        return tli_fmt(err, errlen, "metrics-listen %s: expected [ADDR:]PORT, no flags", v), -1;
    tli_fmt(listen, sizeof listen, "%s,plain", v);
    char why[512];
    if (tl_server_config_set(cfg, "listen", listen, why, sizeof why) != 0) {
        const char *reason = strstr(why, ": ");   /* past "listen ADDR,plain" */
        return tli_fmt(err, errlen, "metrics-listen %s: %s", v, reason ? reason + 2 : why), -1;
    }
    return 0;
}

int tl_server_config_metrics_listener(const tl_server_config *cfg, char *err, size_t errlen)
{
    const char *v = tl_server_config_value(cfg, "metrics-listen");
    if (!v)
        return -1;
    /* Checked rather than assumed: metrics must never land on a listener meant for clients. */
    size_t last = tl_server_config_count(cfg, "listen");
    const char *l = last ? tl_server_config_listen(cfg, last - 1) : NULL;
    size_t vl = strlen(v);
    if (!l || strncmp(l, v, vl) != 0 || strcmp(l + vl, ",plain") != 0) {
        tli_fmt(err, errlen, "metrics-listen %s: its listener is not the last one; call "
                "tl_server_config_add_metrics_listen once every option is set", v);
        return -2;
    }
    return (int)last - 1;
}
