/* httpd.c - the HTTP server (tlsloop/httpd.h): its options, set-up, pages and clean-up; a
 * connection's requests are in httpd_conn.c (HTTP/1.1) and httpd_h2*.c (HTTP/2), their answers
 * in httpd_route.c and httpd_reply.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

/* ---- options ---------------------------------------------------------------------------- */

static int check_size(const char *v, char *err, size_t errlen)
{
    uint64_t n;
    if (tl_server_parse_size(v, &n) != 0)
        return tli_fmt(err, errlen, "expected a size such as 512, 64k or 16m"), -1;
    return 0;
}

static int check_header_size(const char *v, char *err, size_t errlen)
{
    uint64_t n;
    if (tl_server_parse_size(v, &n) != 0 || n < 1024 || n > (1u << 20))
        return tli_fmt(err, errlen, "expected a size from 1k to 1m"), -1;
    return 0;
}

static int check_streams(const char *v, char *err, size_t errlen)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < 1 || n > 10000)
        return tli_fmt(err, errlen, "expected a number of streams from 1 to 10000"), -1;
    return 0;
}

static int check_window(const char *v, char *err, size_t errlen)
{
    uint64_t n;
    if (tl_server_parse_size(v, &n) != 0 || n < 1024 || n > 0x7fffffff)
        return tli_fmt(err, errlen, "expected a size from 1k to 2047m"), -1;
    return 0;
}

static int check_page_path(const char *v, char *err, size_t errlen)
{
    char norm[512];
    ssize_t n = tl_http_normalize_path(v, strlen(v), norm, sizeof norm);
    if (v[0] != '/' || n < 0 || strcmp(norm, v) != 0)
        return tli_fmt(err, errlen, "expected a clean absolute path such as /metrics"), -1;
    return 0;
}

static int check_index(const char *v, char *err, size_t errlen)
{
    if (!*v || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..") || strlen(v) > 255)
        return tli_fmt(err, errlen, "expected a file name such as index.html"), -1;
    return 0;
}

/* allow-dotfiles: names such as .htaccess or .config, comma-separated. */
static int check_dotfiles(const char *v, char *err, size_t errlen)
{
    for (const char *p = v;;) {
        size_t n = strcspn(p, ",");
        if (n < 2 || p[0] != '.' || memchr(p, '/', n) || (n == 2 && p[1] == '.') || n > 255)
            return tli_fmt(err, errlen, "expected names that start with a dot, comma-separated, "
                           "such as .well-known or .config"), -1;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

static const tl_server_option OPTIONS[] = {
    {"root", "DIR", "serve the files below DIR (default: none, only built-in pages)", NULL, false},
    {"index", "NAME", "file served for a directory (default index.html)", check_index, false},
    {"allow-dotfiles", "NAME[,NAME...]", "serve files and directories with these names that "
     "start with a dot (default: none but .well-known; others get 404)", check_dotfiles, false},
    {"access-log", "FILE", "access log, - for stdout (default: none)", NULL, false},
    {"metrics-listen", "[ADDR:]PORT", "serve Prometheus metrics over plain HTTP on this "
     "listener of their own, and nowhere else; keep it on loopback or behind a firewall "
     "(default off)", NULL, false},
    {"metrics", "PATH", "the metrics page's path on the metrics-listen listener (default "
     "/metrics)", check_page_path, false},
    {"redirect-https", "", "plain listeners redirect every request to HTTPS (default off)", NULL,
     false},
    {"allow-lone-lf", "", "accept a lone LF as a line end in requests (default off: 400; "
     "unsafe behind a proxy that reads it otherwise)", NULL, false},
    {"header-timeout", "TIME", "a request head must arrive within this of its first byte "
     "(default 10s; then 408)", tl_server_check_duration, false},
    {"body-timeout", "TIME", "a request body must arrive within this (default 30s)",
     tl_server_check_duration, false},
    {"keepalive-timeout", "TIME", "close a connection waiting this long for its next request "
     "(default 60s)", tl_server_check_duration, false},
    {"max-header-size", "SIZE", "largest request head (default 16k; above: 414 or 431)",
     check_header_size, false},
    {"max-body", "SIZE", "largest request body read and discarded (default 1m; above: 413)",
     check_size, false},
    {"file-cache", "SIZE", "contents of small files kept per worker, 0 off (default 16m)",
     check_size, false},
    {"file-cache-max", "SIZE", "largest file the cache keeps (default 64k)", check_size, false},
    {"h2c", "", "plain listeners take HTTP/2 with prior knowledge (a client that starts with the "
     "HTTP/2 preface; default off). TLS listeners speak h2 when ALPN picks it", NULL, false},
    {"h2-max-streams", "N", "HTTP/2 streams a client may have open at once (default 100; more "
     "are refused)", check_streams, false},
    {"h2-window", "SIZE", "HTTP/2 receive window for request bodies, per stream and per "
     "connection (default 65535, the protocol's initial one)", check_window, false},
    {"h2-send-timeout", "TIME", "HTTP/2: a stream whose answer cannot move (the client's window "
     "stays shut) is reset after this, a connection none of whose answers move is ended "
     "(default 30s)", tl_server_check_duration, false},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

int tl_httpd_config_init(tl_server_config *cfg)
{
    /* An HTTP server says so in ALPN unless told otherwise (options given later replace it):
     * HTTP/2 first, then HTTP/1.1 (a client that offers neither gets HTTP/1.1 too). */
    char err[128];
    if (tl_server_config_extend(cfg, OPTIONS, N_OPTIONS) != 0 ||
        tl_server_config_set(cfg, "alpn", "h2,http/1.1", err, sizeof err) != 0)
        return -1;
    return 0;
}

int tl_httpd_config_finish(tl_server_config *cfg, char *err, size_t errlen)
{
    return tl_server_config_add_metrics_listen(cfg, err, errlen);
}

void tl_httpd_usage(FILE *out)
{
    tl_server_option_usage(out, OPTIONS, N_OPTIONS);
}

/* ---- set-up ----------------------------------------------------------------------------- */

/* SIGUSR1: the access log opens its file again (after a rotation). */
static void on_reopen(void *data)
{
    tl_httpd *h = data;
    char err[300];
    if (h->alog && tli_halog_reopen(h->alog, err, sizeof err) != 0)
        TL_LOG(h->log, TL_LOG_ERROR, "SIGUSR1: %s (still writing to the old file)", err);
}

static uint64_t opt_ms(const tl_server_config *cfg, const char *name, uint64_t dflt)
{
    const char *v = tl_server_config_value(cfg, name);
    uint64_t ms;
    return v && tl_server_parse_duration(v, &ms) == 0 ? ms : dflt;
}

static uint64_t opt_size(const tl_server_config *cfg, const char *name, uint64_t dflt)
{
    const char *v = tl_server_config_value(cfg, name);
    uint64_t n;
    return v && tl_server_parse_size(v, &n) == 0 ? n : dflt;
}

tl_httpd *tl_httpd_new(const tl_server_config *cfg, char *err, size_t errlen)
{
    tl_httpd *h = calloc(1, sizeof *h);
    if (!h) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    h->root_fd = -1;
    h->header_timeout_ms = opt_ms(cfg, "header-timeout", 10000);
    h->body_timeout_ms = opt_ms(cfg, "body-timeout", 30000);
    h->keepalive_timeout_ms = opt_ms(cfg, "keepalive-timeout", 60000);
    h->max_header = opt_size(cfg, "max-header-size", 16384);
    h->max_body = opt_size(cfg, "max-body", 1u << 20);
    h->cache_bytes = opt_size(cfg, "file-cache", 16u << 20);
    h->cache_max_file = opt_size(cfg, "file-cache-max", 64u << 10);
    h->h2_window = (uint32_t)opt_size(cfg, "h2-window", 65535);
    h->h2_send_timeout_ms = opt_ms(cfg, "h2-send-timeout", 30000);
    const char *v = tl_server_config_value(cfg, "h2-max-streams");
    h->h2_max_streams = v ? (uint32_t)strtoul(v, NULL, 10) : 100;
    v = tl_server_config_value(cfg, "h2c");
    h->h2c = v && !strcmp(v, "on");
    v = tl_server_config_value(cfg, "redirect-https");
    h->redirect_https = v && !strcmp(v, "on");
    const char *dots = tl_server_config_value(cfg, "allow-dotfiles");
    if (dots && !(h->dot_allow = strdup(dots)))
        goto oom;
    v = tl_server_config_value(cfg, "allow-lone-lf");
    h->parse_flags = v && !strcmp(v, "on") ? TL_HTTP_LONE_LF : 0;
    const char *index = tl_server_config_value(cfg, "index");
    if (!(h->index = strdup(index ? index : "index.html")))
        goto oom;
    const char *root = tl_server_config_value(cfg, "root");
    if (root) {
        h->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (h->root_fd < 0) {
            tli_fmt(err, errlen, "root %s: %s", root,
                    errno == ENOTDIR ? "not a directory" : strerror(errno));
            goto fail;
        }
        if (!(h->root_real = realpath(root, NULL))) {
            tli_fmt(err, errlen, "root %s: %s", root, strerror(errno));
            goto fail;
        }
    }
    const char *alog = tl_server_config_value(cfg, "access-log");
    if (alog && !(h->alog = tli_halog_open(alog, err, errlen)))
        goto fail;
    /* Metrics only on a listener of their own (tl_httpd_config_finish added it): a public
     * listener answers 404 for the path, so counters never leak to whoever can connect. */
    const char *metrics = tl_server_config_value(cfg, "metrics");
    if ((h->metrics_listener = tl_server_config_metrics_listener(cfg, err, errlen)) < -1)
        goto fail;
    if (metrics && h->metrics_listener < 0) {
        tli_fmt(err, errlen, "metrics %s: metrics are served only on a listener of their own; "
                "add metrics-listen [ADDR:]PORT, such as metrics-listen 127.0.0.1:9100", metrics);
        goto fail;
    }
    if (h->metrics_listener >= 0 && !(h->metrics_path = strdup(metrics ? metrics : "/metrics")))
        goto oom;
    h->cbs = (tl_conn_cbs){.on_handshake = tli_httpd_conn_handshake,
                           .on_read = tli_httpd_conn_read, .on_eof = tli_httpd_conn_eof,
                           .on_drain = tli_httpd_conn_writable, .on_close = tli_httpd_conn_close};
    h->answered = tli_httpd_answered;
    h->handler = (tl_server_handler){.cbs = &h->cbs, .on_open = tli_httpd_conn_open,
                                     .on_drain = tli_httpd_conn_drain, .on_reopen = on_reopen,
                                     .on_reload = tli_httpd_conn_reload, .data = h,
                                     .half_close = true};
    return h;
oom:
    tli_fmt(err, errlen, "out of memory");
fail:
    tl_httpd_free(h);
    return NULL;
}

const tl_server_handler *tl_httpd_handler(tl_httpd *h)
{
    return &h->handler;
}

int tl_httpd_add_page(tl_httpd *h, const char *path, tl_httpd_page_fn fn, void *data)
{
    hpage *p = realloc(h->pages, (h->npages + 1) * sizeof *p);
    if (!p)
        return -1;
    h->pages = p;
    if (!(p[h->npages].path = strdup(path)))
        return -1;
    p[h->npages].fn = fn;
    p[h->npages].data = data;
    p[h->npages].prefix = false;
    h->npages++;
    return 0;
}

int tl_httpd_add_prefix_page(tl_httpd *h, const char *prefix, tl_httpd_page_fn fn, void *data)
{
    if (tl_httpd_add_page(h, prefix, fn, data) != 0)
        return -1;
    h->pages[h->npages - 1].prefix = true;
    return 0;
}

int tl_httpd_attach(tl_httpd *h, tl_server *srv, char *err, size_t errlen)
{
    h->srv = srv;
    h->log = tl_server_log(srv);
    h->nworkers = tl_server_workers(srv);
    if (!(h->workers = calloc(h->nworkers, sizeof *h->workers)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    for (unsigned i = 0; i < h->nworkers; i++) {
        hworker *w = &h->workers[i];
        w->h = h;
        w->index = (int)i;
        w->date_sec = -1;
        w->cache.max_bytes = h->cache_bytes;
        w->cache.max_file = h->cache_max_file;
        if (!(w->scratch = malloc(HTTPD_CHUNK)))
            return tli_fmt(err, errlen, "out of memory"), -1;
    }
    for (size_t i = 0; i < tl_server_listeners(srv); i++)
        if (tl_server_listener_is_tls(srv, i)) {
            h->https_port = tl_server_port(srv, i);
            break;
        }
    if (h->redirect_https && !h->https_port)
        TL_LOG(h->log, TL_LOG_WARN, "redirect-https: no TLS listener to redirect to: plain "
               "listeners serve as usual");
    return 0;
}

void tl_httpd_free(tl_httpd *h)
{
    if (!h)
        return;
    for (unsigned i = 0; i < h->nworkers; i++) {
        tli_httpd_cache_free(&h->workers[i].cache);
        free(h->workers[i].scratch);
    }
    free(h->workers);
    for (size_t i = 0; i < h->npages; i++)
        free(h->pages[i].path);
    free(h->pages);
    if (h->root_fd >= 0)
        close(h->root_fd);
    free(h->root_real);
    free(h->index);
    free(h->dot_allow);
    free(h->metrics_path);
    tli_halog_free(h->alog);
    free(h);
}

tl_server *tl_httpd_server(tl_httpd *h)
{
    return h->srv;
}
