/* httpd.c - the HTTP/1.1 server: options, set-up, and each connection's requests and answers
 * (tlsloop/httpd.h).
 *
 * A connection is in one of four states:
 *   IDLE     waiting for a request's first byte (keepalive-timeout; header-timeout for the first)
 *   HEAD     a request head is arriving (header-timeout from its first byte, then 408)
 *   BODY     its body is being read and discarded (body-timeout, then 408); the head waits in
 *            `held` and is parsed again when the body has ended
 *   CLOSING  an answer that ends the connection was sent; input is ignored
 * and, across IDLE, independently `blocked`: an answer is waiting for the connection's write
 * queue (a streamed file, or pipelined answers above the high-water mark). While blocked, reading
 * is paused and input waits in `in`; on_drain goes on with the file or with `in`.
 *
 * Input is used where it lies: a request that arrives whole in one read is parsed and answered
 * from the connection's read buffer without a copy. Only a head split across reads, or requests
 * that must wait, are kept in `in`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

#define MAX_PATH_BYTES 8192

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
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

int tl_httpd_config_init(tl_server_config *cfg)
{
    return tl_server_config_extend(cfg, OPTIONS, N_OPTIONS);
}

int tl_httpd_config_finish(tl_server_config *cfg, char *err, size_t errlen)
{
    return tl_server_config_add_metrics_listen(cfg, err, errlen);
}

void tl_httpd_usage(FILE *out)
{
    tl_server_option_usage(out, OPTIONS, N_OPTIONS);
}

/* ---- per-connection state --------------------------------------------------------------- */

enum { H_IDLE, H_HEAD, H_BODY, H_CLOSING };

/* What the access-log line of a streamed answer needs once the request's bytes are gone. */
typedef struct hlogctx {
    int status;
    uint64_t bytes;
    char *request, *referer, *agent;   /* copies, or NULL */
    size_t request_len, referer_len, agent_len;
} hlogctx;

/* A request body that spans reads (state BODY). */
typedef struct hbody {
    tl_buf held;               /* the head, parsed again when the body has ended */
    uint64_t left;             /* of a Content-Length body */
    tl_http_chunked chunk;
    bool chunked;
} hbody;

/* A file being streamed. */
typedef struct hstream {
    int fd;
    uint64_t off, end;
    hlogctx *lg;               /* its access-log line, when there is an access log */
} hstream;

/* A connection's state, kept small (an idle connection holds this and nothing else of ours but
 * the server's and the connection layer's): what only a body or a stream needs lives apart. */
typedef struct hconn {
    tl_conn *c;
    hworker *w;
    tl_buf in;                 /* input not used yet */
    tl_http_scan scan;         /* HEAD: the head checked so far (tlsloop/http.h) */
    tl_timer timer;
    uint64_t t0_ns;            /* the current request's first byte */
    hbody *body;               /* BODY */
    hstream *stream;           /* blocked on a streamed file */
    uint8_t state;
    bool keep_alive, blocked, eof, draining, first;
    bool consuming;            /* inside consume(): answers must not read input themselves */
} hconn;

static void answered(hconn *hc);
static size_t consume(hconn *hc, const uint8_t *p, size_t n);

static tl_httpd *of_conn(const hconn *hc)
{
    return hc->w->h;
}

const char *tli_httpd_date(hworker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        w->date_sec = now;
        tl_http_format_date(now, w->date);
    }
    return w->date;
}

static void arm(hconn *hc, uint64_t ms)
{
    if (tl_timer_start(tl_conn_loop(hc->c), &hc->timer, ms) != 0)
        tl_conn_abort(hc->c);   /* no memory for a deadline: do not serve without one */
}

static void arm_idle(hconn *hc)
{
    tl_httpd *h = of_conn(hc);
    arm(hc, hc->first ? h->header_timeout_ms : h->keepalive_timeout_ms);
}

static void close_conn(hconn *hc)
{
    hc->state = H_CLOSING;
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    tl_conn_close(hc->c);
}

/* ---- writing answers -------------------------------------------------------------------- */

typedef struct reply {
    int status;
    const char *type;          /* Content-Type, or NULL */
    char extra[1024];          /* more header lines, each ending in CRLF */
    size_t extra_len;
    uint64_t length;           /* Content-Length */
    bool no_length;            /* no Content-Length (304) */
    bool close;                /* end the connection after it */
    const void *body;          /* sent after the head (NULL: nothing, or a stream follows) */
    size_t body_len;
} reply;

/* A header line for the rare answers (Location, Content-Range): formatted, kept whole or not at
 * all. */
static void add_header(reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_header(reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->extra + r->extra_len, sizeof r->extra - r->extra_len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof r->extra - r->extra_len)
        r->extra_len += (size_t)n;
}

/* "name: value\r\n", kept whole or not at all; the common answers' fields go this way, without
 * printf's parsing (a keep-alive request's answer spent 3% of its CPU there). */
static void add_field(reply *r, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (nl + vl + 4 > sizeof r->extra - r->extra_len)
        return;
    char *p = r->extra + r->extra_len;
    memcpy(p, name, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vl);
    p += vl;
    *p++ = '\r';
    *p++ = '\n';
    r->extra_len = (size_t)(p - r->extra);
}

/* An answer's head, written into a fixed buffer (its parts are bounded: 3 + 16 + 1024 + the
 * type's and reason's few bytes). */
typedef struct headbuf {
    char b[2048];
    size_t n;
} headbuf;

static void hb_put(headbuf *h, const char *s, size_t n)
{
    if (n > sizeof h->b - h->n)
        n = sizeof h->b - h->n;   /* cannot happen, see above */
    memcpy(h->b + h->n, s, n);
    h->n += n;
}

static void hb_str(headbuf *h, const char *s)
{
    hb_put(h, s, strlen(s));
}

static void hb_u64(headbuf *h, uint64_t v)
{
    char t[20];
    size_t i = sizeof t;
    do
        t[--i] = (char)('0' + v % 10);
    while (v /= 10);
    hb_put(h, t + i, sizeof t - i);
}

/* The request facts an answer and its log line need. */
typedef struct reqview {
    const tl_http_request *req;   /* NULL: the request could not be parsed */
    const char *line;             /* the request line for the log (may be partial) */
    size_t line_len;
    bool head;                    /* HEAD: no body */
    int minor;
} reqview;

static const tl_http_header *field(const reqview *rv, const char *name)
{
    return rv->req ? tl_http_find_header(rv->req, name) : NULL;
}

static void log_line(hconn *hc, const char *line, size_t line_len, int status, uint64_t bytes,
                     const char *ref, size_t ref_len, const char *ua, size_t ua_len)
{
    tl_httpd *h = of_conn(hc);
    hlogline l = {
        .peer = tl_server_conn_peer(hc->c, NULL),
        .request = line, .request_len = line_len, .status = status, .bytes = bytes,
        .referer = ref, .referer_len = ref_len, .agent = ua, .agent_len = ua_len,
    };
    tl_engine *e = tl_conn_engine(hc->c);
    if (e) {   /* asked per line: an access log is not the hot path that keeps connections small */
        tl_engine_info info;
        tl_engine_get_info(e, &info);
        l.tls_version = info.version;
        l.cipher = info.cipher;
        l.resumed = info.resumed;
    }
    tl_loop_update_time(tl_conn_loop(hc->c));
    l.seconds = (double)(tl_loop_now_ns(tl_conn_loop(hc->c)) - hc->t0_ns) / 1e9;
    tli_halog_write(h->alog, &l);
}

static void log_now(hconn *hc, const reqview *rv, int status, uint64_t bytes)
{
    const tl_http_header *ref = field(rv, "referer"), *ua = field(rv, "user-agent");
    log_line(hc, rv->line, rv->line_len, status, bytes, ref ? ref->value : NULL,
             ref ? ref->value_len : 0, ua ? ua->value : NULL, ua ? ua->value_len : 0);
}

static char *dup_span(const char *s, size_t n)
{
    char *p = s ? malloc(n + 1) : NULL;
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Keep what a streamed answer's log line needs (best effort: without memory, "-" is logged). */
static void log_later(hconn *hc, const reqview *rv, int status)
{
    hlogctx *lg = calloc(1, sizeof *lg);
    if (!lg)
        return;
    const tl_http_header *ref = field(rv, "referer"), *ua = field(rv, "user-agent");
    lg->status = status;
    lg->request = dup_span(rv->line, rv->line_len);
    lg->request_len = lg->request ? rv->line_len : 0;
    if (ref && (lg->referer = dup_span(ref->value, ref->value_len)))
        lg->referer_len = ref->value_len;
    if (ua && (lg->agent = dup_span(ua->value, ua->value_len)))
        lg->agent_len = ua->value_len;
    hc->stream->lg = lg;
}

/* Send an answer's head and its in-memory body. Returns tl_conn_writev's answer. */
static int send_reply(hconn *hc, const reqview *rv, reply *r, bool streams)
{
    hworker *w = hc->w;
    if (r->close || !hc->keep_alive || hc->draining || hc->eof)
        r->close = true;
    headbuf h = {.n = 0};
    hb_str(&h, "HTTP/1.1 ");
    hb_u64(&h, (uint64_t)r->status);
    hb_str(&h, " ");
    hb_str(&h, tl_http_reason(r->status));
    hb_str(&h, "\r\nServer: " HTTPD_SERVER "\r\nDate: ");
    hb_put(&h, tli_httpd_date(w), TL_HTTP_DATE_LEN);
    hb_str(&h, "\r\n");
    if (r->type) {
        hb_str(&h, "Content-Type: ");
        hb_str(&h, r->type);
        hb_str(&h, "\r\n");
    }
    if (!r->no_length) {
        hb_str(&h, "Content-Length: ");
        hb_u64(&h, r->length);
        hb_str(&h, "\r\n");
    }
    hb_put(&h, r->extra, r->extra_len);
    hb_str(&h, r->close ? "Connection: close\r\n\r\n"
               : rv->minor == 0 ? "Connection: keep-alive\r\n\r\n" : "\r\n");
    struct iovec iov[2] = {{h.b, h.n}, {(void *)r->body, rv->head ? 0 : r->body_len}};
    int niov = iov[1].iov_len ? 2 : 1;
    /* An answer that ends the connection takes close_notify along in the same send. */
    int rc = r->close && !streams ? tl_conn_writev_close(hc->c, iov, niov)
                                  : tl_conn_writev(hc->c, iov, niov);
    hbump(&w->st.status[r->status / 100 % 6], 1);
    if (r->status == 304)
        hbump(&w->st.not_modified, 1);
    else if (r->status == 404)
        hbump(&w->st.not_found, 1);
    hbump(&w->st.body_bytes, iov[1].iov_len);
    if (of_conn(hc)->alog) {
        if (streams)
            log_later(hc, rv, r->status);
        else
            log_now(hc, rv, r->status, iov[1].iov_len);
    }
    if (r->close)
        hc->keep_alive = false;
    return rc;
}

/* An answer held in memory was handed to the connection (rc from send_reply): close when it
 * ends the connection, wait for on_drain when the write queue is full, else go on. */
static void sent(hconn *hc, int rc, bool close)
{
    if (rc < 0 || close) {
        close_conn(hc);
        return;
    }
    if (rc == 1) {
        hc->blocked = true;
        tl_conn_pause_read(hc->c);
    }
    answered(hc);
}

/* A small HTML body for errors and redirects. */
static void simple_reply(hconn *hc, const reqview *rv, reply *r)
{
    char body[512];
    const char *why = tl_http_reason(r->status);
    int n = snprintf(body, sizeof body, "<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n",
                     r->status, why, r->status, why);
    r->type = "text/html; charset=utf-8";
    r->body = body;
    r->body_len = (size_t)n;
    r->length = (uint64_t)n;
    sent(hc, send_reply(hc, rv, r, false), r->close);
}

static void error_reply(hconn *hc, const reqview *rv, int status, bool close)
{
    reply r = {.status = status, .close = close};
    if (status == 405)
        add_field(&r, "Allow", "GET, HEAD");
    simple_reply(hc, rv, &r);
}

/* A request that cannot be answered normally: its framing is broken or refused. */
static void reject(hconn *hc, const reqview *rv, int status)
{
    hbump(&hc->w->st.rejected, 1);
    if (status == 408)
        hbump(&hc->w->st.timeouts, 1);
    error_reply(hc, rv, status, true);
}

/* ---- streaming files -------------------------------------------------------------------- */

static void end_stream(hconn *hc)
{
    hstream *st = hc->stream;
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    if (st->lg) {
        free(st->lg->request);
        free(st->lg->referer);
        free(st->lg->agent);
        free(st->lg);
    }
    free(st);
    hc->stream = NULL;
}

static void log_stream(hconn *hc)
{
    hlogctx *lg = hc->stream ? hc->stream->lg : NULL;
    if (lg)
        log_line(hc, lg->request, lg->request_len, lg->status, lg->bytes, lg->referer,
                 lg->referer_len, lg->agent, lg->agent_len);
}

static void pump(hconn *hc)
{
    hworker *w = hc->w;
    hstream *st = hc->stream;
    while (st->off < st->end) {
        uint64_t left = st->end - st->off;
        size_t want = left < HTTPD_CHUNK ? (size_t)left : HTTPD_CHUNK;
        ssize_t n = pread(st->fd, w->scratch, want, (off_t)st->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The file shrank or failed under us: the promised length cannot be kept, so the
             * connection ends without close_notify, which the client sees as a truncation. */
            TL_LOG(of_conn(hc)->log, TL_LOG_WARN, "a file being sent %s at offset %llu: the "
                   "connection is aborted", n < 0 ? strerror(errno) : "ended early",
                   (unsigned long long)st->off);
            end_stream(hc);
            hc->state = H_CLOSING;
            tl_conn_abort(hc->c);
            return;
        }
        int rc = tl_conn_write(hc->c, w->scratch, (size_t)n);
        if (rc < 0) {
            end_stream(hc);   /* the connection is ending: on_close cleans up */
            return;
        }
        st->off += (uint64_t)n;
        hbump(&w->st.body_bytes, (uint64_t)n);
        if (st->lg)
            st->lg->bytes += (uint64_t)n;
        if (rc == 1)
            return;   /* on_drain goes on */
    }
    log_stream(hc);
    end_stream(hc);
    hc->blocked = false;
    if (!hc->keep_alive) {
        close_conn(hc);
        return;
    }
    answered(hc);
}

/* ---- answering a request ---------------------------------------------------------------- */

static void serve_page(hconn *hc, const reqview *rv, const hpage *pg, const char *path)
{
    tl_httpd_page page = {.path = path, .conn = hc->c, .status = 200,
                          .content_type = "text/html; charset=utf-8"};
    pg->fn(of_conn(hc), &page, pg->data);
    reply r = {.status = page.status, .type = page.content_type,
               .body = tl_buf_rptr(&page.body), .body_len = tl_buf_len(&page.body),
               .length = tl_buf_len(&page.body)};
    if (!page.cacheable)
        add_field(&r, "Cache-Control", "no-store");
    int rc = send_reply(hc, rv, &r, false);
    tl_buf_free(&page.body);
    sent(hc, rc, r.close);
}

static void metrics_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    (void)data;
    page->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (tl_httpd_metrics_text(h, &page->body) != 0) {
        tl_buf_free(&page->body);
        page->status = 500;
    }
}

/* Does If-Range let the range apply? Only an exact (strong) entity tag or the exact date. */
static bool if_range_holds(const tl_http_header *ir, const hfile *f)
{
    if (!ir)
        return true;
    if (ir->value_len && ir->value[0] == '"')
        return ir->value_len == strlen(f->etag) && memcmp(ir->value, f->etag, ir->value_len) == 0;
    time_t t;
    return tl_http_parse_date(ir->value, ir->value_len, &t) == 0 && t == f->mtime.tv_sec;
}

static void serve_file(hconn *hc, const reqview *rv, const char *path, size_t plen)
{
    hworker *w = hc->w;
    hfile f;
    int st = tli_httpd_file_open(w, path, plen, &f);
    if (st == 301) {
        /* The decoded path, escaped again for the header (a space, a byte above 0x7e). */
        static const char hex[] = "0123456789ABCDEF";
        reply r = {.status = 301};
        char loc[sizeof r.extra - 16];
        size_t n = 0;
        for (size_t i = 0; i < plen && n + 4 < sizeof loc; i++) {
            unsigned char c = (unsigned char)path[i];
            if (c > 0x20 && c < 0x7f && c != '%' && c != '"' && c != '?' && c != '#') {
                loc[n++] = (char)c;
            } else {
                loc[n++] = '%';
                loc[n++] = hex[c >> 4];
                loc[n++] = hex[c & 15];
            }
        }
        add_header(&r, "Location: %.*s/\r\n", (int)n, loc);
        simple_reply(hc, rv, &r);
        return;
    }
    if (st) {
        error_reply(hc, rv, st, false);
        return;
    }
    reply r = {.status = 200, .type = f.type};
    add_field(&r, "Last-Modified", f.last_modified);
    add_field(&r, "ETag", f.etag);

    const tl_http_header *inm = field(rv, "if-none-match"), *ims = field(rv, "if-modified-since");
    time_t since;
    if (inm ? tl_http_etag_match(inm->value, inm->value_len, f.etag, strlen(f.etag))
            : ims && tl_http_parse_date(ims->value, ims->value_len, &since) == 0 &&
                  f.mtime.tv_sec <= since) {
        tli_httpd_file_close(&f);
        r.status = 304;
        r.type = NULL;
        r.no_length = true;
        sent(hc, send_reply(hc, rv, &r, false), r.close);
        return;
    }

    add_field(&r, "Accept-Ranges", "bytes");
    uint64_t first = 0, last = f.size ? f.size - 1 : 0;
    const tl_http_header *range = rv->head ? NULL : field(rv, "range");
    if (range && if_range_holds(field(rv, "if-range"), &f)) {
        int k = tl_http_parse_range(range->value, range->value_len, f.size, &first, &last);
        if (k < 0) {
            tli_httpd_file_close(&f);
            reply bad = {.status = 416};
            add_header(&bad, "Content-Range: bytes */%llu\r\n", (unsigned long long)f.size);
            simple_reply(hc, rv, &bad);
            return;
        }
        if (k == 1) {
            r.status = 206;
            add_header(&r, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)first,
                       (unsigned long long)last, (unsigned long long)f.size);
        } else {
            first = 0;
            last = f.size ? f.size - 1 : 0;
        }
    }
    uint64_t len = f.size ? last - first + 1 : 0;
    r.length = len;
    bool streams = false;
    if (rv->head || len == 0) {
        /* the head alone */
    } else if (f.data) {
        r.body = f.data + first;
        r.body_len = (size_t)len;
    } else if (len <= HTTPD_CHUNK) {
        if (tli_httpd_read_at(f.fd, w->scratch, len, first) != 0) {
            tli_httpd_file_close(&f);
            error_reply(hc, rv, 500, false);
            return;
        }
        r.body = w->scratch;
        r.body_len = (size_t)len;
    } else {
        if (!(hc->stream = calloc(1, sizeof *hc->stream))) {
            tli_httpd_file_close(&f);
            error_reply(hc, rv, 503, false);
            return;
        }
        *hc->stream = (hstream){.fd = f.fd, .off = first, .end = first + len};
        f.fd = -1;   /* the stream owns it now */
        streams = true;
    }
    int rc = send_reply(hc, rv, &r, streams);
    if (!streams || rc < 0) {
        tli_httpd_file_close(&f);
        end_stream(hc);
        sent(hc, rc, r.close);
        return;
    }
    hc->blocked = true;
    tl_conn_pause_read(hc->c);
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    if (rc == 0)
        pump(hc);   /* else on_drain starts it */
}

/* Is a segment of this normalised path a dotfile or dot-directory not allowed (.git, .env)? They
 * hold what a site's files never mean to publish: a repository, secrets, editor state. */
static bool dot_refused(const tl_httpd *h, const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/' || i + 1 >= len || path[i + 1] != '.')
            continue;
        const char *seg = path + i + 1;
        const char *end = memchr(seg, '/', len - i - 1);
        size_t n = end ? (size_t)(end - seg) : len - i - 1;
        if (n == 11 && !memcmp(seg, ".well-known", 11))
            continue;   /* RFC 8615: meant to be published */
        bool allowed = false;
        for (const char *a = h->dot_allow; a && *a && !allowed;) {
            size_t an = strcspn(a, ",");
            allowed = an == n && !memcmp(a, seg, n);
            a += an + (a[an] == ',');
        }
        if (!allowed)
            return true;
    }
    return false;
}

static void respond(hconn *hc, const tl_http_request *req, const tl_http_message *msg)
{
    tl_httpd *h = of_conn(hc);
    hc->keep_alive = msg->keep_alive;
    hc->first = false;
    /* Its last request, read whole (a body has been read before this): once the answer and
     * close_notify are out, nothing is left to wait for. */
    if (!msg->keep_alive)
        tl_conn_set_linger(hc->c, false);
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    /* The request line for the log: from the method to the version. */
    reqview rv = {.req = req, .line = req->method, .head = head, .minor = req->minor_version,
                  .line_len = (size_t)(req->target + req->target_len - req->method) + 9};
    char path[MAX_PATH_BYTES];
    ssize_t plen = tl_http_normalize_path(req->target, req->target_len, path, sizeof path);
    if (plen < 0) {
        /* Too long for us, or not a path at all: either way not something to guess about. */
        reject(hc, &rv, req->target_len + 3 > sizeof path ? 414 : 400);
        return;
    }
    if (h->metrics_listener >= 0 && tl_server_conn_listener(hc->c) == h->metrics_listener) {
        if (strcmp(path, h->metrics_path) != 0)
            error_reply(hc, &rv, 404, false);   /* nothing else lives here */
        else if (!get && !head)
            error_reply(hc, &rv, 405, false);
        else
            serve_page(hc, &rv, &(hpage){.path = h->metrics_path, .fn = metrics_page}, path);
        return;
    }
    if (h->redirect_https && !tl_conn_is_tls(hc->c) && h->https_port) {
        reply r = {.status = 308};
        const char *host = msg->host;
        size_t hl = msg->host_len;
        if (!host || !hl) {
            reject(hc, &rv, 400);
            return;
        }
        /* Host without its port: "[::1]:8080" -> "[::1]", "a:8080" -> "a". */
        const char *colon = memrchr(host, ':', hl);
        if (colon && (host[0] != '[' || colon > (const char *)memchr(host, ']', hl)))
            hl = (size_t)(colon - host);
        char port[8] = "";
        if (h->https_port != 443)
            snprintf(port, sizeof port, ":%u", h->https_port);
        add_header(&r, "Location: https://%.*s%s%.*s\r\n", (int)(hl > 255 ? 255 : hl), host, port,
                   (int)(req->target_len > 700 ? 700 : req->target_len), req->target);
        simple_reply(hc, &rv, &r);
        return;
    }
    for (size_t i = 0; i < h->npages; i++)
        if (!strcmp(h->pages[i].path, path)) {
            if (!get && !head)
                error_reply(hc, &rv, 405, false);
            else
                serve_page(hc, &rv, &h->pages[i], path);
            return;
        }
    if (!get && !head) {
        error_reply(hc, &rv, 405, false);
        return;
    }
    if (h->root_fd < 0 || dot_refused(h, path, (size_t)plen)) {
        error_reply(hc, &rv, 404, false);
        return;
    }
    serve_file(hc, &rv, path, (size_t)plen);
}

/* Where a connection stands once no input is being used: closing when the peer has finished
 * or the server drains, waiting for the next request, or waiting for its writes. */
static void settle(hconn *hc)
{
    if (hc->state == H_CLOSING)
        return;
    if (hc->blocked) {
        tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);   /* the send-stall deadline covers it */
        return;
    }
    if (hc->state == H_IDLE && (hc->eof || hc->draining) && !tl_buf_len(&hc->in)) {
        close_conn(hc);   /* no further request is coming, or none is taken */
        return;
    }
    if (hc->state == H_HEAD && hc->eof) {
        close_conn(hc);   /* the peer has finished: this head can never complete */
        return;
    }
    if (hc->state == H_IDLE)
        arm_idle(hc);
    /* Reading was paused while an answer waited; an answer may also have been written whole
     * while input was being used (a file the socket took at once). Either way, read again. */
    tl_conn_resume_read(hc->c);
}

/* Go on with the input that waited while the connection was blocked, then read again. */
static void resume(hconn *hc)
{
    if (tl_buf_len(&hc->in)) {
        size_t used = consume(hc, tl_buf_rptr(&hc->in), tl_buf_len(&hc->in));
        if (hc->state == H_CLOSING)
            return;
        tl_buf_consume(&hc->in, used);
    }
    if (!tl_buf_len(&hc->in))
        tl_buf_release(&hc->in);
    settle(hc);
}

/* An answer was handed to the connection: the next request, or the end. */
static void answered(hconn *hc)
{
    if (hc->state == H_CLOSING)
        return;
    hc->state = H_IDLE;
    if (hc->consuming || hc->blocked)
        return;   /* the loop that reads input goes on; or on_drain comes back later */
    resume(hc);
}

/* ---- reading requests ------------------------------------------------------------------- */

/* Read a body from p[0..n): returns the bytes that belonged to it; *done when it ended; -1 on
 * a malformed or oversized chunked body (answered here). */
static ssize_t read_body(hconn *hc, hbody *b, const uint8_t *p, size_t n, bool *done,
                         const reqview *rv)
{
    if (!b->chunked) {
        size_t take = n < b->left ? n : (size_t)b->left;
        b->left -= take;
        *done = b->left == 0;
        return (ssize_t)take;
    }
    ssize_t r = tl_http_chunked_read(&b->chunk, p, n);
    if (r < 0) {
        reject(hc, rv, 400);
        return -1;
    }
    if (b->chunk.total > of_conn(hc)->max_body) {
        reject(hc, rv, 413);
        return -1;
    }
    *done = b->chunk.done;
    return r;
}

/* The request line of unparsed bytes, for the log of a rejected head. */
static reqview raw_view(const uint8_t *p, size_t n)
{
    const uint8_t *nl = memchr(p, '\n', n);
    size_t len = nl ? (size_t)(nl - p) : n;
    if (len && p[len - 1] == '\r')
        len--;
    return (reqview){.line = (const char *)p, .line_len = len > 200 ? 200 : len, .minor = 1};
}

/* Use what p[0..n) holds; returns the bytes used (the rest must wait for more). */
static size_t consume_loop(hconn *hc, const uint8_t *p, size_t n);

static size_t consume(hconn *hc, const uint8_t *p, size_t n)
{
    hc->consuming = true;
    size_t used = consume_loop(hc, p, n);
    hc->consuming = false;
    settle(hc);
    return used;
}

static size_t consume_loop(hconn *hc, const uint8_t *p, size_t n)
{
    tl_httpd *h = of_conn(hc);
    tl_loop *loop = tl_conn_loop(hc->c);
    size_t at = 0;
    while (at < n && !hc->blocked && hc->state != H_CLOSING) {
        const uint8_t *v = p + at;
        size_t vl = n - at;
        if (hc->state == H_IDLE) {
            if (hc->draining) {
                close_conn(hc);   /* no new request once draining */
                return n;
            }
            hc->state = H_HEAD;
            hc->scan = (tl_http_scan){.flags = h->parse_flags};
            hc->t0_ns = tl_loop_now_ns(loop);
            arm(hc, h->header_timeout_ms);
        }
        if (hc->state == H_BODY) {
            tl_http_header fields[HTTPD_MAX_FIELDS];
            tl_http_request req = {.headers = fields, .max_headers = HTTPD_MAX_FIELDS};
            const char *held = (const char *)tl_buf_rptr(&hc->body->held);
            size_t held_len = tl_buf_len(&hc->body->held);
            int hn = tl_http_parse_request_ex(held, held_len, &req, h->parse_flags);
            reqview rv = raw_view((const uint8_t *)held, held_len);
            rv.req = hn > 0 ? &req : NULL;
            bool done = false;
            ssize_t used = read_body(hc, hc->body, v, vl, &done, &rv);
            if (used < 0)
                return n;
            at += (size_t)used;
            if (!done)
                return n;
            tl_http_message msg;
            tl_http_check_request(&req, &msg);   /* it passed when the head arrived */
            tl_timer_stop(loop, &hc->timer);
            hbody *b = hc->body;
            hc->body = NULL;
            respond(hc, &req, &msg);   /* req points into b->held: freed after */
            tl_buf_free(&b->held);
            free(b);
            continue;
        }
        /* HEAD: refused as soon as it cannot become a valid head. The first look is the parser
         * alone (a head that arrives whole, the common case, is read in one pass; the parser too
         * answers TL_HTTP_INCOMPLETE only for a valid beginning). A head split across reads goes
         * on with tl_http_scan_head, which resumes where it stopped (linear time for a head that
         * dribbles in), and is parsed once its empty line has arrived. */
        tl_http_header fields[HTTPD_MAX_FIELDS];
        tl_http_request req = {.headers = fields, .max_headers = HTTPD_MAX_FIELDS};
        int hn = TL_HTTP_INCOMPLETE, sn = 0;
        if (hc->scan.at == 0)
            hn = tl_http_parse_request_ex((const char *)v, vl, &req, h->parse_flags);
        if (hn == TL_HTTP_INCOMPLETE) {
            sn = tl_http_scan_head(&hc->scan, (const char *)v, vl);
            if (sn == TL_HTTP_INCOMPLETE) {
                if (vl > h->max_header) {
                    reqview rv = raw_view(v, vl);
                    hbump(&hc->w->st.requests, 1);
                    reject(hc, &rv, tl_http_incomplete_status((const char *)v, vl));
                    return n;
                }
                return at;
            }
            hn = sn < 0 ? sn : tl_http_parse_request_ex((const char *)v, vl, &req, h->parse_flags);
        }
        hbump(&hc->w->st.requests, 1);
        if (hn <= 0) {   /* the scan's verdict, or the parser's (431: too many fields) */
            reqview rv = raw_view(v, vl);
            const char *why = sn < 0 ? hc->scan.error : req.error;
            int st = sn < 0 ? hc->scan.error_status : req.error_status;
            TL_LOG(h->log, TL_LOG_DEBUG, "bad request: %s", why ? why : "malformed head");
            reject(hc, &rv, st ? st : 400);
            return n;
        }
        reqview rv = {.req = &req, .line = req.method, .minor = req.minor_version,
                      .line_len = (size_t)(req.target + req.target_len - req.method) + 9};
        if ((size_t)hn > h->max_header) {
            reject(hc, &rv, req.target_len > h->max_header / 2 ? 414 : 431);
            return n;
        }
        tl_http_message msg;
        int bad = tl_http_check_request(&req, &msg);
        if (bad) {
            TL_LOG(h->log, TL_LOG_DEBUG, "bad request: %s", msg.error);
            reject(hc, &rv, bad);
            return n;
        }
        if (msg.content_length > 0 && (uint64_t)msg.content_length > h->max_body) {
            reject(hc, &rv, 413);
            return n;
        }
        if (msg.content_length <= 0 && !msg.chunked) {
            at += (size_t)hn;
            tl_timer_stop(loop, &hc->timer);
            respond(hc, &req, &msg);
            continue;
        }
        /* A body: read (and discard) it before answering. */
        hbody body = {.chunked = msg.chunked,
                      .left = msg.chunked ? 0 : (uint64_t)msg.content_length};
        tl_http_chunked_init(&body.chunk, h->parse_flags);
        bool done = false;
        ssize_t used = read_body(hc, &body, v + hn, vl - (size_t)hn, &done, &rv);
        if (used < 0)
            return n;
        if (done) {
            at += (size_t)hn + (size_t)used;
            tl_timer_stop(loop, &hc->timer);
            respond(hc, &req, &msg);
            continue;
        }
        if (msg.expect_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            tl_conn_write(hc->c, cont, sizeof cont - 1);
        }
        /* The body goes on in later reads: keep its state and the head apart. */
        if (!(hc->body = malloc(sizeof *hc->body))) {
            reject(hc, &rv, 503);
            return n;
        }
        *hc->body = body;
        if (tl_buf_append(&hc->body->held, v, (size_t)hn) != 0) {
            free(hc->body);
            hc->body = NULL;
            reject(hc, &rv, 503);
            return n;
        }
        hc->state = H_BODY;
        arm(hc, h->body_timeout_ms);
        return n;   /* the rest of the input was body */
    }
    return at;
}

/* ---- connection callbacks --------------------------------------------------------------- */

static void keep_input(hconn *hc, const uint8_t *p, size_t n)
{
    if (tl_buf_append(&hc->in, p, n) != 0) {
        TL_LOG(of_conn(hc)->log, TL_LOG_ERROR, "out of memory: a connection is closed");
        hc->state = H_CLOSING;
        tl_conn_abort(hc->c);
    }
}

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    hconn *hc = tl_conn_data(c);
    if (hc->state == H_CLOSING)
        return;
    if (hc->blocked) {   /* reading pauses when blocked; what arrived meanwhile waits */
        keep_input(hc, data, len);
        return;
    }
    if (tl_buf_len(&hc->in) == 0) {
        size_t used = consume(hc, data, len);
        if (hc->state != H_CLOSING && used < len)
            keep_input(hc, data + used, len - used);
        return;
    }
    keep_input(hc, data, len);
    if (hc->state == H_CLOSING)
        return;
    size_t used = consume(hc, tl_buf_rptr(&hc->in), tl_buf_len(&hc->in));
    if (hc->state != H_CLOSING) {
        tl_buf_consume(&hc->in, used);
        if (!tl_buf_len(&hc->in))
            tl_buf_release(&hc->in);
    }
}

static void on_writable(tl_conn *c)
{
    hconn *hc = tl_conn_data(c);
    if (hc->stream) {
        pump(hc);
    } else if (hc->blocked) {
        hc->blocked = false;
        answered(hc);
    }
}

static void on_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    hc->eof = true;
    if (hc->state == H_CLOSING || hc->blocked)
        return;   /* the answer under way closes when it is done (settle) */
    /* Waiting for a request, or in the middle of one that nothing can complete now. */
    close_conn(hc);
}

static void on_handshake(tl_conn *c, bool ok)
{
    hconn *hc = tl_conn_data(c);
    if (ok && hc->state == H_IDLE && !hc->blocked)
        arm_idle(hc);
}

static void on_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    hconn *hc = t->data;
    if (hc->state == H_IDLE) {
        close_conn(hc);   /* waited long enough for a request: no answer owed */
        return;
    }
    if (hc->state == H_HEAD || hc->state == H_BODY) {
        const tl_buf *b = hc->state == H_BODY && hc->body ? &hc->body->held : &hc->in;
        const uint8_t *p = tl_buf_rptr(b);
        size_t n = tl_buf_len(b);
        reqview rv = p ? raw_view(p, n) : (reqview){.line = NULL, .minor = 1};
        reject(hc, &rv, 408);
    }
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    tl_timer_stop(tl_conn_loop(c), &hc->timer);
    log_stream(hc);   /* a streamed answer cut short: logged with the bytes that were sent */
    end_stream(hc);
    if (hc->body)
        tl_buf_free(&hc->body->held);
    free(hc->body);
    tl_buf_free(&hc->in);
    free(hc);
}

static void on_open(tl_conn *c, void *data)
{
    tl_httpd *h = data;
    int wi = tl_server_conn_worker(c);
    hconn *hc = calloc(1, sizeof *hc);
    if (!hc || wi < 0 || (unsigned)wi >= h->nworkers) {
        free(hc);
        TL_LOG(h->log, TL_LOG_ERROR, "out of memory: a new connection is closed");
        tl_conn_set_data(c, NULL);
        tl_conn_abort(c);
        return;
    }
    hc->c = c;
    hc->w = &h->workers[wi];
    hc->first = true;
    hc->t0_ns = tl_loop_now_ns(tl_conn_loop(c));
    tl_timer_init(&hc->timer, on_timer, hc);
    tl_conn_set_data(c, hc);
    if (!tl_conn_is_tls(c))
        arm_idle(hc);
}

static void on_server_drain(tl_conn *c, void *data)
{
    (void)data;
    hconn *hc = tl_conn_data(c);
    if (!hc)
        return;
    hc->draining = true;
    if (hc->state == H_IDLE && !hc->blocked && !tl_buf_len(&hc->in))
        close_conn(hc);
}

static void on_reopen(void *data)
{
    tl_httpd *h = data;
    char err[300];
    if (h->alog && tli_halog_reopen(h->alog, err, sizeof err) != 0)
        TL_LOG(h->log, TL_LOG_ERROR, "SIGUSR1: %s (still writing to the old file)", err);
}

/* A connection whose on_open failed has no state: its callbacks do nothing. */
#define GUARD(c)                                                                                \
    do {                                                                                        \
        if (!tl_conn_data(c))                                                                   \
            return;                                                                             \
    } while (0)

static void g_read(tl_conn *c, const uint8_t *d, size_t n) { GUARD(c); on_read(c, d, n); }
static void g_writable(tl_conn *c) { GUARD(c); on_writable(c); }
static void g_eof(tl_conn *c, tl_conn_end how) { GUARD(c); on_eof(c, how); }
static void g_handshake(tl_conn *c, bool ok) { GUARD(c); on_handshake(c, ok); }
static void g_close(tl_conn *c, tl_conn_end how) { GUARD(c); on_close(c, how); }

/* ---- set-up ----------------------------------------------------------------------------- */

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
    const char *v = tl_server_config_value(cfg, "redirect-https");
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
    h->cbs = (tl_conn_cbs){.on_handshake = g_handshake, .on_read = g_read, .on_eof = g_eof,
                           .on_drain = g_writable, .on_close = g_close};
    h->handler = (tl_server_handler){.cbs = &h->cbs, .on_open = on_open,
                                     .on_drain = on_server_drain, .on_reopen = on_reopen,
                                     .data = h, .half_close = true};
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
    h->npages++;
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
