/* httpd_h2_stream.c - one HTTP/2 stream: its header fields as they are decoded (the header list
 * limit counted after decompression), its request body read and discarded up to max-body, its
 * answer from the same routing as HTTP/1.1 turned into HEADERS and DATA frames whose data is read
 * from the file or the cache only as the flow-control windows and the connection's write queue
 * take it, and its access-log line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd/httpd_int.h"

static uint64_t now_ns(h2conn *h2)
{
    return tl_loop_now_ns(tl_conn_loop(h2->hc->c));
}

static const char *at(const h2stream *hs, uint32_t off)
{
    return (const char *)tl_buf_rptr(&hs->hbuf) + off;
}

/* Keep bytes in hbuf; their offset into f. -1 without memory. */
static int keep(h2stream *hs, const void *p, size_t n, uint32_t *off)
{
    *off = (uint32_t)tl_buf_len(&hs->hbuf);
    return tl_buf_append(&hs->hbuf, p, n);
}

static bool is(const uint8_t *name, size_t nl, const char *lit)
{
    return nl == strlen(lit) && memcmp(name, lit, nl) == 0;
}

/* ---- reading a request ------------------------------------------------------------------ */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2conn *h2 = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2stream *hs = calloc(1, sizeof *hs);
    if (!hs)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* the stream is reset */
    hs->id = f->hd.stream_id;
    hs->declared = UINT64_MAX;
    hs->t0_ns = hs->progress_ns = now_ns(h2);
    tli_httpd_reply_init(&hs->r, 200);
    hs->next = h2->streams;
    if (h2->streams)
        h2->streams->prev = hs;
    h2->streams = hs;
    h2->nstreams++;
    h2->had_stream = true;
    hbump(&h2->hc->w->st.h2_streams, 1);
    nghttp2_session_set_stream_user_data(s, hs->id, hs);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    h2conn *h2 = ud;
    h2stream *hs = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!hs || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    tl_httpd *h = of_conn(h2->hc);
    /* HPACK bombs: a few bytes on the wire can name a large table entry again and again; the
     * list is measured as decoded (RFC 9113 6.5.2: name, value and 32 bytes a field), trailers
     * included. Over the limit, the rest is ignored and the answer is 431. */
    hs->hbytes += nl + vl + 32;
    if (hs->too_big)
        return 0;
    if (hs->hbytes > h->max_header ||
        (f->headers.cat == NGHTTP2_HCAT_REQUEST && hs->nfields >= HTTPD_MAX_FIELDS)) {
        hs->too_big = true;
        hbump(&h2->hc->w->st.h2_abuse[TL_H2_ABUSE_HEADERS], 1);
        return 0;
    }
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;   /* trailers: counted, not kept */
    h2field fl = {.name_len = (uint32_t)nl, .value_len = (uint32_t)vl};
    if (keep(hs, name, nl, &fl.name) != 0 || keep(hs, value, vl, &fl.value) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nl && name[0] == ':') {
        if (is(name, nl, ":method"))
            hs->method = fl;
        else if (is(name, nl, ":path"))
            hs->path = fl;
        else if (is(name, nl, ":authority"))
            hs->authority = fl;
        return 0;
    }
    if (is(name, nl, "host"))
        hs->host = fl;
    else if (is(name, nl, "referer"))
        hs->referer = fl;
    else if (is(name, nl, "user-agent"))
        hs->agent = fl;
    else if (is(name, nl, "content-length")) {
        uint64_t n = 0;
        for (size_t i = 0; i < vl && n < UINT64_MAX / 10; i++)
            n = n * 10 + (uint64_t)(value[i] - '0');   /* digits: nghttp2 checked them */
        hs->declared = n;
    }
    if (hs->nfields == hs->cap) {
        uint32_t cap = hs->cap ? hs->cap * 2 : 8;
        h2field *p = realloc(hs->fields, cap * sizeof *p);
        if (!p)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        hs->fields = p;
        hs->cap = cap;
    }
    hs->fields[hs->nfields++] = fl;
    return 0;
}

static void answer(h2conn *h2, h2stream *hs, int refuse);

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags, (void)data;
    h2conn *h2 = ud;
    h2stream *hs = nghttp2_session_get_stream_user_data(s, id);
    if (!hs)
        return 0;
    /* Read and discarded; nghttp2 gives the window back as it arrives. */
    hs->body_bytes += len;
    hs->progress_ns = now_ns(h2);
    if (!hs->answered && hs->body_bytes > of_conn(h2->hc)->max_body) {
        hbump(&h2->hc->w->st.h2_abuse[TL_H2_ABUSE_BODY], 1);
        answer(h2, hs, 413);
    }
    return 0;
}

void tli_h2_request(h2conn *h2, h2stream *hs)
{
    if (hs->answered || hs->reset)
        return;
    if (hs->too_big) {
        answer(h2, hs, 431);
    } else if (!hs->body_done) {
        if (hs->declared != UINT64_MAX && hs->declared > of_conn(h2->hc)->max_body) {
            hbump(&h2->hc->w->st.h2_abuse[TL_H2_ABUSE_BODY], 1);
            answer(h2, hs, 413);   /* said so up front: not read at all */
        }
    } else {
        answer(h2, hs, 0);
    }
}

/* ---- the answer ------------------------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id;
    h2conn *h2 = ud;
    h2stream *hs = src->ptr;
    /* Backpressure: while the connection's write queue is above its high-water mark, nothing
     * more is read from the file; on_drain resumes the stream (tli_httpd_h2_writable). */
    if (h2->wblocked) {
        hs->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = length < hs->left ? length : (size_t)hs->left;
    if (hs->r.fd >= 0) {
        ssize_t k;
        do
            k = pread(hs->r.fd, buf, n, (off_t)(hs->r.off + hs->sent));
        while (k < 0 && errno == EINTR);
        if (k <= 0) {
            /* The file shrank or failed under us: the stream is reset, the others go on. */
            TL_LOG(of_conn(h2->hc)->log, TL_LOG_WARN, "a file being sent %s at offset %llu: "
                   "the HTTP/2 stream is reset", k < 0 ? strerror(errno) : "ended early",
                   (unsigned long long)(hs->r.off + hs->sent));
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        n = (size_t)k;
    } else {
        memcpy(buf, (const uint8_t *)hs->r.body + hs->sent, n);
    }
    hs->sent += n;
    hs->left -= n;
    hbump(&h2->hc->w->st.body_bytes, n);
    hs->progress_ns = h2->progress_ns = now_ns(h2);
    if (!hs->left) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        h2->pending--;
    }
    return (ssize_t)n;
}

/* The answer's header fields: the pseudo-field, the common ones, then the reply's extra lines
 * with their names in lower case (HTTP/2 wants them so). */
typedef struct nvset {
    nghttp2_nv nv[32];
    size_t n;
    char lower[1024];
    size_t used;
} nvset;

static void nv_add(nvset *v, const char *name, size_t nl, const char *value, size_t vl)
{
    if (v->n == sizeof v->nv / sizeof v->nv[0])
        return;
    /* nghttp2 copies them (the values live on the stack) */
    v->nv[v->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
}

static void nv_lit(nvset *v, const char *name, const char *value)
{
    nv_add(v, name, strlen(name), value, strlen(value));
}

static void nv_extra(nvset *v, const reply *r)
{
    const char *p = r->extra, *end = r->extra + r->extra_len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (!eol || !colon || colon > eol)
            break;
        size_t nl = (size_t)(colon - p);
        if (nl > sizeof v->lower - v->used)
            break;
        char *lname = v->lower + v->used;
        for (size_t i = 0; i < nl; i++)
            lname[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
        v->used += nl;
        const char *val = colon + 1;
        while (val < eol && *val == ' ')
            val++;
        nv_add(v, lname, nl, val, (size_t)(eol - val));
        p = eol + 2;
    }
}

static void submit(h2conn *h2, h2stream *hs, bool head)
{
    reply *r = &hs->r;
    hworker *w = h2->hc->w;
    nvset v = {.n = 0, .used = 0};
    /* Formatted by hand: printf's parsing was 3% of a small request's CPU. */
    unsigned st = (unsigned)r->status % 1000u;
    char status[4] = {(char)('0' + st / 100), (char)('0' + st / 10 % 10), (char)('0' + st % 10)};
    char length[24];
    char *e = length + sizeof length - 1;
    *e = '\0';
    uint64_t len = r->length;
    do
        *--e = (char)('0' + len % 10);
    while (len /= 10);
    nv_lit(&v, ":status", status);
    nv_lit(&v, "server", HTTPD_SERVER);
    nv_add(&v, "date", 4, tli_httpd_date(w), TL_HTTP_DATE_LEN);
    if (r->type)
        nv_lit(&v, "content-type", r->type);
    if (!r->no_length)
        nv_lit(&v, "content-length", e);
    nv_extra(&v, r);
    hs->left = head ? 0 : r->fd >= 0 ? r->length : r->body ? r->body_len : 0;
    nghttp2_data_provider dp = {.source.ptr = hs, .read_callback = read_body};
    if (nghttp2_submit_response(h2->s, hs->id, v.nv, v.n, hs->left ? &dp : NULL) != 0) {
        hs->left = 0;
        hs->reset = true;
        nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, hs->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (hs->left) {
        if (!h2->pending++)
            h2->progress_ns = now_ns(h2);   /* the stall deadline runs from the first answer */
        hs->progress_ns = now_ns(h2);
    }
}

static void answer(h2conn *h2, h2stream *hs, int refuse)
{
    hworker *w = h2->hc->w;
    hs->answered = true;
    hbump(&w->st.requests, 1);
    hbump(&w->st.proto_requests[HPROTO_H2], 1);
    /* The request line for the access log, as HTTP/1.1's would read ("GET /a HTTP/2.0"); only
     * the log reads it. */
    if (w->h->alog) {
        char line[600];
        int ln = snprintf(line, sizeof line, "%.*s %.*s HTTP/2.0", (int)hs->method.value_len,
                          hs->method.value_len ? at(hs, hs->method.value) : "-",
                          (int)(hs->path.value_len > 500 ? 500 : hs->path.value_len),
                          hs->path.value_len ? at(hs, hs->path.value) : "-");
        if (ln > 0 && keep(hs, line, (size_t)ln, &hs->line.value) == 0)
            hs->line.value_len = (uint32_t)ln;
    }
    /* The request as HTTP/1.1's parser would give it: fields point into hbuf, which no longer
     * grows. */
    tl_http_header fields[HTTPD_MAX_FIELDS];
    for (uint32_t i = 0; i < hs->nfields && i < HTTPD_MAX_FIELDS; i++)
        fields[i] = (tl_http_header){at(hs, hs->fields[i].name), hs->fields[i].name_len,
                                     at(hs, hs->fields[i].value), hs->fields[i].value_len};
    tl_http_request req = {
        .method = hs->method.value_len ? at(hs, hs->method.value) : "",
        .method_len = hs->method.value_len,
        .target = hs->path.value_len ? at(hs, hs->path.value) : "",
        .target_len = hs->path.value_len, .minor_version = 1, .headers = fields,
        .max_headers = HTTPD_MAX_FIELDS, .num_headers = hs->nfields};
    bool head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    reqview rv = {.req = &req, .line = hs->line.value_len ? at(hs, hs->line.value) : NULL,
                  .line_len = hs->line.value_len, .head = head, .minor = 1};
    reply r;
    tli_httpd_reply_init(&r, 200);
    if (!refuse && !hs->path.value_len)
        refuse = 400;   /* CONNECT and the like: no path to serve */
    if (refuse) {
        r.rejected = true;
        tli_httpd_error_answer(&r, refuse);
    } else {
        const h2field *host = hs->authority.value_len ? &hs->authority : &hs->host;
        tli_httpd_route(w, h2->hc->c, &rv, host->value_len ? at(hs, host->value) : NULL,
                        host->value_len, &r);
    }
    tli_httpd_count(w, &r);
    tli_httpd_reply_move(&hs->r, &r);
    if (head)
        tli_httpd_reply_free(&hs->r);   /* its length stays for the head; nothing is read */
    submit(h2, hs, head);
}

/* ---- the end of a stream ---------------------------------------------------------------- */

void tli_h2_stream_free(h2conn *h2, h2stream *hs, bool log)
{
    hworker *w = h2->hc->w;
    if (hs->answered && log && w->h->alog)
        tli_httpd_log(w, h2->hc->c, hs->t0_ns, hs->line.value_len ? at(hs, hs->line.value) : NULL,
                      hs->line.value_len, hs->r.status, hs->sent,
                      hs->referer.value_len ? at(hs, hs->referer.value) : NULL,
                      hs->referer.value_len, hs->agent.value_len ? at(hs, hs->agent.value) : NULL,
                      hs->agent.value_len);
    if (hs->left)
        h2->pending--;
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        h2->streams = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    if (--h2->nstreams == 0)
        h2->idle_ns = now_ns(h2);
    tli_httpd_reply_free(&hs->r);
    tl_buf_free(&hs->hbuf);
    free(hs->fields);
    free(hs);
}

void tli_h2_stream_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
}
