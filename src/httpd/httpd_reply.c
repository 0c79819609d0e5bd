/* httpd_reply.c - answers: their making (fields, error bodies), their counters and access-log
 * line, whichever protocol carries them; and the HTTP/1.1 writer: an answer's head and in-memory
 * body, streamed files.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

void tli_httpd_reply_init(reply *r, int status)
{
    r->status = status;
    r->type = NULL;
    r->extra_len = 0;
    r->length = 0;
    r->no_length = r->close = r->rejected = false;
    r->body = NULL;
    r->body_len = 0;
    r->fd = -1;
    r->off = 0;
    r->held = NULL;
    r->page = (tl_buf)TL_BUF_INIT;
}

void tli_httpd_reply_free(reply *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->held)
        tli_httpd_entry_release(r->held);
    r->held = NULL;
    tl_buf_free(&r->page);
    r->body = NULL;
    r->body_len = 0;
}

void tli_httpd_reply_move(reply *dst, reply *src)
{
    size_t small_at = (const char *)src->body - src->small;
    bool in_small = src->body && (const char *)src->body >= src->small &&
                    small_at < sizeof src->small;
    *dst = *src;
    if (in_small)
        dst->body = dst->small + small_at;
    /* page: tl_buf's storage moves with it (body points into that storage, not the struct) */
    tli_httpd_reply_init(src, src->status);
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

/* A header line for the rare answers (Location, Content-Range): formatted, kept whole or not at
 * all. */
void tli_httpd_add_header(reply *r, const char *fmt, ...)
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
void tli_httpd_add_field(reply *r, const char *name, const char *value)
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

void tli_httpd_log(hworker *w, tl_conn *c, uint64_t t0_ns, const char *line, size_t line_len,
                   int status, uint64_t bytes, const char *ref, size_t ref_len, const char *ua,
                   size_t ua_len)
{
    hlogline l = {
        .peer = tl_server_conn_peer(c, NULL),
        .request = line, .request_len = line_len, .status = status, .bytes = bytes,
        .referer = ref, .referer_len = ref_len, .agent = ua, .agent_len = ua_len,
    };
    tl_engine *e = tl_conn_engine(c);
    if (e) {   /* asked per line: an access log is not the hot path that keeps connections small */
        tl_engine_info info;
        tl_engine_get_info(e, &info);
        l.tls_version = info.version;
        l.cipher = info.cipher;
        l.resumed = info.resumed;
    }
    tl_loop_update_time(tl_conn_loop(c));
    l.seconds = (double)(tl_loop_now_ns(tl_conn_loop(c)) - t0_ns) / 1e9;
    tli_halog_write(w->h->alog, &l);
}

static void log_line(hconn *hc, const char *line, size_t line_len, int status, uint64_t bytes,
                     const char *ref, size_t ref_len, const char *ua, size_t ua_len)
{
    tli_httpd_log(hc->w, hc->c, hc->t0_ns, line, line_len, status, bytes, ref, ref_len, ua,
                  ua_len);
}

static void log_now(hconn *hc, const reqview *rv, int status, uint64_t bytes)
{
    const tl_http_header *ref = req_field(rv, "referer"), *ua = req_field(rv, "user-agent");
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
    const tl_http_header *ref = req_field(rv, "referer"), *ua = req_field(rv, "user-agent");
    lg->status = status;
    lg->request = dup_span(rv->line, rv->line_len);
    lg->request_len = lg->request ? rv->line_len : 0;
    if (ref && (lg->referer = dup_span(ref->value, ref->value_len)))
        lg->referer_len = ref->value_len;
    if (ua && (lg->agent = dup_span(ua->value, ua->value_len)))
        lg->agent_len = ua->value_len;
    hc->stream->lg = lg;
}

void tli_httpd_count(hworker *w, const reply *r)
{
    hbump(&w->st.status[r->status / 100 % 6], 1);
    if (r->status == 304)
        hbump(&w->st.not_modified, 1);
    else if (r->status == 404)
        hbump(&w->st.not_found, 1);
    if (r->rejected) {
        hbump(&w->st.rejected, 1);
        if (r->status == 408)
            hbump(&w->st.timeouts, 1);
    }
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
    tli_httpd_count(w, r);
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
    of_conn(hc)->answered(hc);   /* tli_httpd_answered */
}

void tli_httpd_simple_body(reply *r)
{
    const char *why = tl_http_reason(r->status);
    int n = snprintf(r->small, sizeof r->small,
                     "<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n", r->status, why,
                     r->status, why);
    if (n < 0 || (size_t)n >= sizeof r->small)
        n = 0;
    r->type = "text/html; charset=utf-8";
    r->body = r->small;
    r->body_len = (size_t)n;
    r->length = (uint64_t)n;
}

void tli_httpd_error_answer(reply *r, int status)
{
    r->status = status;
    if (status == 405)
        tli_httpd_add_field(r, "Allow", "GET, HEAD");
    tli_httpd_simple_body(r);
}

/* HTTP/1.1: a file's bytes go with the head when they are few (read into the worker's scratch
 * buffer), else they are streamed with backpressure. */
void tli_httpd_h1_send(hconn *hc, const reqview *rv, reply *r)
{
    hworker *w = hc->w;
    if (r->rejected)
        r->close = true;
    bool streams = false;
    if (r->fd >= 0 && !rv->head && r->length) {
        if (r->length <= HTTPD_CHUNK) {
            if (tli_httpd_read_at(r->fd, w->scratch, r->length, r->off) != 0) {
                tli_httpd_reply_free(r);
                tli_httpd_reply_init(r, 500);
                tli_httpd_error_answer(r, 500);
            } else {
                r->body = w->scratch;
                r->body_len = (size_t)r->length;
            }
        } else if (!(hc->stream = calloc(1, sizeof *hc->stream))) {
            tli_httpd_reply_free(r);
            tli_httpd_reply_init(r, 503);
            tli_httpd_error_answer(r, 503);
        } else {
            *hc->stream = (hstream){.fd = r->fd, .off = r->off, .end = r->off + r->length};
            r->fd = -1;   /* the stream owns it now */
            streams = true;
        }
    }
    int rc = send_reply(hc, rv, r, streams);
    bool close = r->close;
    tli_httpd_reply_free(r);
    if (!streams || rc < 0) {
        tli_httpd_end_stream(hc);
        sent(hc, rc, close);
        return;
    }
    hc->blocked = true;
    tl_conn_pause_read(hc->c);
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    if (rc == 0)
        tli_httpd_pump(hc);   /* else on_drain starts it */
}

/* A request that cannot be answered normally: its framing is broken or refused. */
void tli_httpd_reject(hconn *hc, const reqview *rv, int status)
{
    reply r;
    tli_httpd_reply_init(&r, status);
    r.rejected = true;
    tli_httpd_error_answer(&r, status);
    tli_httpd_h1_send(hc, rv, &r);
}

/* ---- streaming files -------------------------------------------------------------------- */

void tli_httpd_end_stream(hconn *hc)
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

void tli_httpd_log_stream(hconn *hc)
{
    hlogctx *lg = hc->stream ? hc->stream->lg : NULL;
    if (lg)
        log_line(hc, lg->request, lg->request_len, lg->status, lg->bytes, lg->referer,
                 lg->referer_len, lg->agent, lg->agent_len);
}

void tli_httpd_pump(hconn *hc)
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
            tli_httpd_end_stream(hc);
            hc->state = H_CLOSING;
            tl_conn_abort(hc->c);
            return;
        }
        int rc = tl_conn_write(hc->c, w->scratch, (size_t)n);
        if (rc < 0) {
            tli_httpd_end_stream(hc);   /* the connection is ending: on_close cleans up */
            return;
        }
        st->off += (uint64_t)n;
        hbump(&w->st.body_bytes, (uint64_t)n);
        if (st->lg)
            st->lg->bytes += (uint64_t)n;
        if (rc == 1)
            return;   /* on_drain goes on */
    }
    tli_httpd_log_stream(hc);
    tli_httpd_end_stream(hc);
    hc->blocked = false;
    if (!hc->keep_alive) {
        close_conn(hc);
        return;
    }
    of_conn(hc)->answered(hc);   /* tli_httpd_answered */
}
