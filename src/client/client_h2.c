/* client_h2.c - HTTP/2 exchanges on a client connection, many streams at once, on nghttp2's
 * client session (tlsloop/client.h; docs/client.md, "HTTP/2"). nghttp2 frames and decodes; this
 * file feeds it what the connection reads (nghttp2_session_mem_recv) and writes what it has to
 * send (nghttp2_session_mem_send), gathered into one write per turn.
 *
 * Lifetimes. A request (h2req) lives from tl_client_h2_request until its stream closes in
 * nghttp2 (on_stream_close) or the session is freed, whichever comes first; its on_done comes
 * once, earlier or then. The session is freed after the connection's on_close, never inside an
 * nghttp2 call (nghttp2 forbids nghttp2_session_del from its callbacks). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>
#include <tlsloop/buf.h>

#include "client/client_int.h"

#define MAX_FIELDS 100                 /* response header fields kept (as for HTTP/1.1) */
#define MAX_HEAD (64u * 1024u)         /* their bytes */
#define MAX_REQ_FIELDS 64              /* request header fields, pseudo-headers included */
#define H2_WINDOW (16u << 20)          /* our stream and connection windows */
#define OUT_CHUNK (64u * 1024u)        /* gathered output written once it reaches this */

typedef struct field {
    uint32_t name, name_len, value, value_len;   /* offsets into tl_client_h2.head */
} field;

typedef struct h2req {
    struct h2req *next, *prev;
    tl_client_h2 *h;
    void *data;
    int32_t id;
    tl_timer timer;
    int status;
    uint64_t got;                  /* body bytes delivered */
    bool head_done;                /* the final head was delivered */
    bool ended;                    /* END_STREAM received */
    bool done;                     /* on_done was called */
} h2req;

struct tl_client_h2 {
    tl_conn *c;
    nghttp2_session *s;
    const tl_client_h2_cbs *cbs;
    void *data;
    h2req *reqs;                   /* every request not yet freed */
    size_t in_flight;              /* of them, those whose on_done is owed */
    tl_buf out;
    int busy;                      /* inside nghttp2_session_mem_recv/mem_send */
    bool flush_again;              /* output was asked for while busy */
    bool blocked;                  /* the write queue is above its mark: wait for on_drain */
    bool closing;                  /* tl_client_h2_close */
    bool conn_gone;                /* the connection's on_close came */
    bool goaway;                   /* the server sent GOAWAY */
    tl_conn_end peer_end;
    char err[200];                 /* the session's failure, in words */
    char goaway_text[120];         /* the server's GOAWAY, in words */
    /* The response head being received: one at a time, since a header block (HEADERS and its
     * CONTINUATIONs) is never interleaved with another frame (RFC 9113 section 4.3). */
    tl_buf head;                   /* its names and values */
    field fld[MAX_FIELDS];
    int nf;
};

static void destroy(tl_client_h2 *h);

static void req_done(h2req *r, tl_http_result res, const char *why)
{
    if (r->done)
        return;
    tl_client_h2 *h = r->h;
    r->done = true;
    h->in_flight--;
    if (!h->conn_gone)
        tl_timer_stop(tl_conn_loop(h->c), &r->timer);
    if (!h->in_flight)
        tl_buf_free(&h->head);   /* idle: no buffers */
    if (h->cbs->on_done)
        h->cbs->on_done(h, res, why, r->data);
}

static void req_free(h2req *r)
{
    tl_client_h2 *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
}

/* End every request still under way (the session or the connection ended). */
static void fail_all(tl_client_h2 *h, const char *what)
{
    for (h2req *r = h->reqs; r; r = r->next) {
        if (r->done)
            continue;
        char why[400];
        tl_http_result res = TL_HTTP_CONN_FAILED;
        if (r->head_done) {
            res = TL_HTTP_TRUNCATED;
            snprintf(why, sizeof why, "%s after %llu bytes of the body (no END_STREAM)", what,
                     (unsigned long long)r->got);
        } else {
            snprintf(why, sizeof why, "%s before the response", what);
        }
        req_done(r, res, why);
    }
}

/* The session is over (GOAWAY both ways, or a fatal error): whatever is under way fails, and
 * the connection closes once what nghttp2 had to say (its GOAWAY) is written. */
static void session_over(tl_client_h2 *h)
{
    h->closing = true;
    fail_all(h, h->err[0] ? h->err : h->goaway_text[0] ? h->goaway_text
                                                   : "the HTTP/2 session ended");
    if (!h->conn_gone)
        tl_conn_close(h->c);
}

/* Write what nghttp2 has to send: gathered, then one write (deferred to the end of the
 * iteration, with the other streams' and connections' output). */
static void flush(tl_client_h2 *h)
{
    if (h->busy) {
        h->flush_again = true;
        return;
    }
    bool fatal = false;
    while (!h->conn_gone && !fatal) {
        h->flush_again = false;
        while (!h->blocked) {
            const uint8_t *p;
            h->busy++;
            ssize_t n = nghttp2_session_mem_send(h->s, &p);
            h->busy--;
            if (n < 0) {
                snprintf(h->err, sizeof h->err, "HTTP/2: %s", nghttp2_strerror((int)n));
                fatal = true;
                break;
            }
            if (n == 0 && !tl_buf_len(&h->out))
                break;
            if (n > 0 && tl_buf_append(&h->out, p, (size_t)n) != 0) {
                snprintf(h->err, sizeof h->err, "out of memory");
                fatal = true;
                break;
            }
            if (n > 0 && tl_buf_len(&h->out) < OUT_CHUNK)
                continue;
            int w = tl_conn_write(h->c, tl_buf_rptr(&h->out), tl_buf_len(&h->out));
            tl_buf_consume(&h->out, tl_buf_len(&h->out));
            if (!h->in_flight)
                tl_buf_release(&h->out);   /* idle: no buffers; busy: kept for the next turn */
            if (w < 0)
                return;   /* the connection is closing or failed: its on_close follows */
            if (w == 1)
                h->blocked = true;
            if (n == 0)
                break;
        }
        if (!h->flush_again)
            break;
    }
    if (h->conn_gone)
        return;
    if (fatal || (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s) &&
                  !tl_buf_len(&h->out)))
        session_over(h);   /* GOAWAY sent or received and nothing left: close */
}

/* ---- nghttp2's callbacks ----------------------------------------------------------------- */

static h2req *stream_req(nghttp2_session *s, int32_t id)
{
    h2req *r = nghttp2_session_get_stream_user_data(s, id);
    return r && !r->done ? r : NULL;
}

static void head_reset(tl_client_h2 *h)
{
    h->nf = 0;
    tl_buf_consume(&h->head, tl_buf_len(&h->head));
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    tl_client_h2 *h = ud;
    h2req *r = f->hd.type == NGHTTP2_HEADERS ? stream_req(s, f->hd.stream_id) : NULL;
    if (r && !r->head_done) {
        head_reset(h);
        r->status = 0;
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    tl_client_h2 *h = ud;
    h2req *r = f->hd.type == NGHTTP2_HEADERS ? stream_req(s, f->hd.stream_id) : NULL;
    if (!r || r->head_done)
        return 0;   /* trailers: not kept */
    if (namelen == 7 && !memcmp(name, ":status", 7)) {
        /* nghttp2's HTTP messaging checked it: three digits. */
        r->status = valuelen == 3 ? (value[0] - '0') * 100 + (value[1] - '0') * 10 +
                                        (value[2] - '0')
                                  : 0;
        return 0;
    }
    if (namelen && name[0] == ':')
        return 0;
    size_t at = tl_buf_len(&h->head);
    if (h->nf == MAX_FIELDS || at + namelen + valuelen > MAX_HEAD) {
        char why[100];
        snprintf(why, sizeof why, "response head over %s", h->nf == MAX_FIELDS
                 ? "100 header fields" : "64 KiB");
        req_done(r, TL_HTTP_BAD_RESPONSE, why);
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
        return 0;
    }
    if (tl_buf_append(&h->head, name, namelen) != 0 ||
        tl_buf_append(&h->head, value, valuelen) != 0) {
        req_done(r, TL_HTTP_CONN_FAILED, "out of memory");
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
        return 0;
    }
    h->fld[h->nf++] = (field){(uint32_t)at, (uint32_t)namelen, (uint32_t)(at + namelen),
                              (uint32_t)valuelen};
    return 0;
}

static void deliver_head(tl_client_h2 *h, h2req *r)
{
    tl_http_header hs[MAX_FIELDS];
    const char *base = (const char *)tl_buf_rptr(&h->head);
    for (int i = 0; i < h->nf; i++)
        hs[i] = (tl_http_header){base + h->fld[i].name, h->fld[i].name_len,
                                 base + h->fld[i].value, h->fld[i].value_len};
    tl_http_response resp = {.minor_version = 0, .status = r->status, .reason = "",
                             .headers = hs, .max_headers = MAX_FIELDS,
                             .num_headers = (size_t)h->nf};
    r->head_done = true;
    if (h->cbs->on_head)
        h->cbs->on_head(h, &resp, r->data);
    head_reset(h);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    tl_client_h2 *h = ud;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
        h2req *r = stream_req(s, f->hd.stream_id);
        if (!r)
            break;
        if (!r->head_done && r->status >= 100 && r->status < 200) {
            head_reset(h);   /* interim (103 Early Hints, 100 Continue): the real head follows */
            break;
        }
        if (!r->head_done)
            deliver_head(h, r);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            r->ended = true;
        break;
    }
    case NGHTTP2_DATA: {
        h2req *r = stream_req(s, f->hd.stream_id);
        if (r && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            r->ended = true;
        break;
    }
    case NGHTTP2_GOAWAY:
        h->goaway = true;
        snprintf(h->goaway_text, sizeof h->goaway_text,
                 "the server sent GOAWAY (%s, last stream %d)",
                 nghttp2_http2_strerror(f->goaway.error_code), f->goaway.last_stream_id);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
                   void *ud)
{
    (void)flags;
    tl_client_h2 *h = ud;
    h2req *r = stream_req(s, id);
    if (!r)
        return 0;
    r->got += n;
    if (h->cbs->on_body)
        h->cbs->on_body(h, p, n, r->data);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    tl_client_h2 *h = ud;
    h2req *r = nghttp2_session_get_stream_user_data(s, id);
    if (!r)
        return 0;
    if (!r->done) {
        char why[300];
        if (r->ended && code == NGHTTP2_NO_ERROR && r->head_done) {
            req_done(r, TL_HTTP_DONE, "");
        } else if (code == NGHTTP2_REFUSED_STREAM) {
            snprintf(why, sizeof why, "the server refused the stream (%s): not processed, it "
                     "may be sent again", h->goaway ? h->goaway_text : "RST_STREAM REFUSED_STREAM");
            req_done(r, TL_HTTP_CONN_FAILED, why);
        } else if (code == NGHTTP2_PROTOCOL_ERROR && r->head_done) {
            snprintf(why, sizeof why, "malformed response (the body did not match its "
                     "content-length, or a frame broke the rules): stream reset, %llu bytes "
                     "received", (unsigned long long)r->got);
            req_done(r, TL_HTTP_BAD_RESPONSE, why);
        } else {
            snprintf(why, sizeof why, "the stream was reset (%s) %s %llu bytes of the body",
                     nghttp2_http2_strerror(code), r->head_done ? "after" : "before the head,",
                     (unsigned long long)r->got);
            req_done(r, r->head_done ? TL_HTTP_TRUNCATED : TL_HTTP_CONN_FAILED, why);
        }
    }
    req_free(r);
    return 0;
}

static int on_error(nghttp2_session *s, int lib_error, const char *msg, size_t len, void *ud)
{
    (void)s;
    (void)lib_error;
    tl_client_h2 *h = ud;
    while (len && (msg[len - 1] == '.' || msg[len - 1] == ' '))
        len--;   /* it goes on inside our sentence */
    /* The last one is kept: it says why nghttp2 ends the session, when it does. */
    snprintf(h->err, sizeof h->err, "HTTP/2 protocol error: %.*s", (int)len, msg);
    return 0;
}

/* ---- the connection's callbacks ---------------------------------------------------------- */

static void c_read(tl_conn *c, const uint8_t *p, size_t n)
{
    tl_client_h2 *h = tl_conn_data(c);
    if (h->closing && !nghttp2_session_want_read(h->s))
        return;
    h->busy++;
    ssize_t rv = nghttp2_session_mem_recv(h->s, p, n);
    h->busy--;
    if (h->conn_gone) {
        destroy(h);
        return;
    }
    if (rv < 0) {
        snprintf(h->err, sizeof h->err, "HTTP/2: %s", nghttp2_strerror((int)rv));
        nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
        h->closing = true;   /* first: nothing new from the callbacks fail_all calls */
        fail_all(h, h->err);
    }
    flush(h);
}

static void c_eof(tl_conn *c, tl_conn_end how)
{
    tl_client_h2 *h = tl_conn_data(c);
    if (!h->closing)
        h->peer_end = how;
    h->closing = true;
    fail_all(h, how == TL_END_CLEAN ? "the server closed the connection"
                                    : "the connection ended without close_notify");
}

static void c_drain(tl_conn *c)
{
    tl_client_h2 *h = tl_conn_data(c);
    h->blocked = false;
    flush(h);
}

static void c_close(tl_conn *c, tl_conn_end how)
{
    tl_client_h2 *h = tl_conn_data(c);
    h->closing = true;
    char what[300];
    const char *e = tl_conn_error(c);
    snprintf(what, sizeof what, "the connection failed: %s", *e ? e : tl_conn_end_name(how));
    fail_all(h, what);
    for (h2req *r = h->reqs; r; r = r->next)
        tl_timer_stop(tl_conn_loop(c), &r->timer);
    h->conn_gone = true;
    if (h->cbs->on_close)
        h->cbs->on_close(h, how, h->data);
    if (!h->busy)
        destroy(h);   /* else c_read does, once nghttp2 returns */
}

static void r_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    h2req *r = t->data;
    tl_client_h2 *h = r->h;
    int32_t id = r->id;   /* r may be gone after its on_done (a close from there) */
    char why[200];
    if (!r->head_done)
        snprintf(why, sizeof why, "waiting for the response (stream %d sent, no head came back)",
                 r->id);
    else
        snprintf(why, sizeof why, "waiting for the rest of the body (stream %d, %llu bytes came)",
                 r->id, (unsigned long long)r->got);
    req_done(r, TL_HTTP_TIMED_OUT, why);
    /* The request stays known to nghttp2 (a zombie) until its stream closes. */
    if (!h->closing)
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    flush(h);
}

static const tl_conn_cbs H2_CBS = {.on_read = c_read, .on_eof = c_eof, .on_drain = c_drain,
                                   .on_close = c_close};

static void destroy(tl_client_h2 *h)
{
    nghttp2_session_del(h->s);   /* calls no callback */
    while (h->reqs)
        req_free(h->reqs);
    tl_buf_free(&h->out);
    tl_buf_free(&h->head);
    free(h);
}

/* ---- the API ------------------------------------------------------------------------------ */

static nghttp2_session *new_session(tl_client_h2 *h)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_session *s = NULL;
    int rv = nghttp2_session_client_new(&s, cb, h);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return NULL;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW}};
    if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, H2_WINDOW) != 0) {
        nghttp2_session_del(s);
        return NULL;
    }
    return s;
}

tl_client_h2 *tl_client_h2_new(tl_conn *c, const tl_client_h2_cbs *cbs, void *data)
{
    tl_client_h2 *h = tli_client_conn(c) ? calloc(1, sizeof *h) : NULL;
    if (h && !(h->s = new_session(h))) {
        free(h);
        h = NULL;
    }
    if (!h) {
        tl_conn_close(c);
        return NULL;
    }
    h->c = c;
    h->cbs = cbs;
    h->data = data;
    tl_conn_set_data(c, h);
    tli_client_conn_set_cbs(c, &H2_CBS);
    tl_conn_set_defer_writes(c, true);   /* many streams' frames leave in one write */
    flush(h);   /* the preface and our SETTINGS */
    return h;
}

/* RFC 9113 section 8.2.2: fields that are connection-specific in HTTP/1.1 are not sent. */
static bool connection_specific(const char *name, size_t len, const char *value, size_t vlen)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len))
            return true;
    return len == 2 && !memcmp(name, "te", 2) && !(vlen == 8 && !strncasecmp(value, "trailers", 8));
}

#define NV(n, nl, v, vl)                                                                       \
    ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), (nl), (vl), NGHTTP2_NV_FLAG_NONE})

int32_t tl_client_h2_request(tl_client_h2 *h, const char *method, const char *authority,
                             const char *path, const char *headers, uint32_t timeout_ms,
                             void *req)
{
    if (h->closing || h->conn_gone || !nghttp2_session_check_request_allowed(h->s))
        return -1;
    char buf[8192];
    size_t hl = headers ? strlen(headers) : 0;
    if (hl >= sizeof buf)
        return -1;
    memcpy(buf, headers ? headers : "", hl + 1);
    nghttp2_nv nv[MAX_REQ_FIELDS];
    size_t n = 4;
    const char *scheme = tl_conn_is_tls(h->c) ? "https" : "http";
    nv[0] = NV(":method", 7, method, strlen(method));
    nv[1] = NV(":scheme", 7, scheme, strlen(scheme));
    nv[2] = NV(":authority", 10, authority, strlen(authority));
    nv[3] = NV(":path", 5, path, strlen(path));
    /* "Name: value\r\n" lines; names in lower case, in place. */
    for (char *p = buf; *p;) {
        char *eol = strstr(p, "\r\n"), *colon = strchr(p, ':');
        if (!eol || !colon || colon > eol || colon == p)
            return -1;
        size_t nl = (size_t)(colon - p);
        for (size_t i = 0; i < nl; i++)
            p[i] = (char)tolower((unsigned char)p[i]);
        char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        if (!nghttp2_check_header_name((uint8_t *)p, nl) ||
            !nghttp2_check_header_value((uint8_t *)v, vl))
            return -1;
        if (nl == 4 && !memcmp(p, "host", 4))
            nv[2] = NV(":authority", 10, v, vl);
        else if (!connection_specific(p, nl, v, vl)) {
            if (n == MAX_REQ_FIELDS)
                return -1;
            nv[n++] = NV(p, nl, v, vl);
        }
        p = eol + 2;
    }
    h2req *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->h = h;
    r->data = req;
    int32_t id = nghttp2_submit_request(h->s, NULL, nv, n, NULL, r);   /* nghttp2 copies nv */
    if (id < 0) {
        free(r);
        return -1;
    }
    r->id = id;
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->in_flight++;
    tl_timer_init(&r->timer, r_timer, r);
    if (timeout_ms)
        tl_timer_start(tl_conn_loop(h->c), &r->timer, timeout_ms);
    flush(h);
    return id;
}

bool tl_client_h2_reusable(const tl_client_h2 *h)
{
    return !h->closing && !h->conn_gone && !h->goaway &&
           nghttp2_session_check_request_allowed(h->s);
}

size_t tl_client_h2_in_flight(const tl_client_h2 *h)
{
    return h->in_flight;
}

uint32_t tl_client_h2_max_streams(const tl_client_h2 *h)
{
    return nghttp2_session_get_remote_settings(h->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

void tl_client_h2_close(tl_client_h2 *h)
{
    if (h->conn_gone)
        return;
    if (!h->closing) {
        h->closing = true;
        for (h2req *r = h->reqs; r; r = r->next)
            if (!r->done)
                req_done(r, TL_HTTP_CLOSED, "closed while the response was arriving");
        nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
    }
    /* From inside an nghttp2 call (an on_done, say) the GOAWAY is written when it returns, and
     * the connection closed after it (flush): closing it now would drop the GOAWAY. */
    if (h->busy) {
        h->flush_again = true;
        return;
    }
    flush(h);
    if (!h->conn_gone)
        tl_conn_close(h->c);
}

tl_conn_end tl_client_h2_peer_end(const tl_client_h2 *h)
{
    return h->peer_end;
}

tl_conn *tl_client_h2_conn(tl_client_h2 *h)
{
    return h->c;
}
