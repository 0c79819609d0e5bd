/* httpd_conn.c - one connection's request cycle: reading heads and bodies (in place where they
 * lie, docs/http.md), keep-alive and pipelining, the deadlines, and the connection's callbacks
 * (its states: httpd_int.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "httpd/httpd_int.h"

static size_t consume(hconn *hc, const uint8_t *p, size_t n);

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
void tli_httpd_answered(hconn *hc)
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
        tli_httpd_reject(hc, rv, 400);
        return -1;
    }
    if (b->chunk.total > of_conn(hc)->max_body) {
        tli_httpd_reject(hc, rv, 413);
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
            tli_httpd_respond(hc, &req, &msg);   /* req points into b->held: freed after */
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
                    tli_httpd_reject(hc, &rv, tl_http_incomplete_status((const char *)v, vl));
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
            tli_httpd_reject(hc, &rv, st ? st : 400);
            return n;
        }
        reqview rv = {.req = &req, .line = req.method, .minor = req.minor_version,
                      .line_len = (size_t)(req.target + req.target_len - req.method) + 9};
        if ((size_t)hn > h->max_header) {
            tli_httpd_reject(hc, &rv, req.target_len > h->max_header / 2 ? 414 : 431);
            return n;
        }
        tl_http_message msg;
        int bad = tl_http_check_request(&req, &msg);
        if (bad) {
            TL_LOG(h->log, TL_LOG_DEBUG, "bad request: %s", msg.error);
            tli_httpd_reject(hc, &rv, bad);
            return n;
        }
        if (msg.content_length > 0 && (uint64_t)msg.content_length > h->max_body) {
            tli_httpd_reject(hc, &rv, 413);
            return n;
        }
        if (msg.content_length <= 0 && !msg.chunked) {
            at += (size_t)hn;
            tl_timer_stop(loop, &hc->timer);
            tli_httpd_respond(hc, &req, &msg);
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
            tli_httpd_respond(hc, &req, &msg);
            continue;
        }
        if (msg.expect_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            tl_conn_write(hc->c, cont, sizeof cont - 1);
        }
        /* The body goes on in later reads: keep its state and the head apart. */
        if (!(hc->body = malloc(sizeof *hc->body))) {
            tli_httpd_reject(hc, &rv, 503);
            return n;
        }
        *hc->body = body;
        if (tl_buf_append(&hc->body->held, v, (size_t)hn) != 0) {
            free(hc->body);
            hc->body = NULL;
            tli_httpd_reject(hc, &rv, 503);
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

/* h2c prior knowledge: a plain connection whose first bytes are the HTTP/2 preface speaks
 * HTTP/2. Returns true when the input was taken (HTTP/2 started, or a beginning of the preface
 * waits for more). */
static bool h2c_preface(hconn *hc, const uint8_t *data, size_t len)
{
    size_t have = tl_buf_len(&hc->in);
    size_t n = have + len < H2_PREFACE_LEN ? have + len : H2_PREFACE_LEN;
    uint8_t head[H2_PREFACE_LEN];
    size_t from_in = have < n ? have : n;
    if (from_in)
        memcpy(head, tl_buf_rptr(&hc->in), from_in);
    memcpy(head + from_in, data, n - from_in);
    if (memcmp(head, H2_PREFACE, n) != 0)
        return false;   /* HTTP/1 */
    keep_input(hc, data, len);
    if (hc->state == H_CLOSING || tl_buf_len(&hc->in) < H2_PREFACE_LEN)
        return hc->state != H_CLOSING;
    tl_buf in = hc->in;
    hc->in = (tl_buf)TL_BUF_INIT;
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    tli_httpd_h2_start(hc, tl_buf_rptr(&in), tl_buf_len(&in));
    tl_buf_free(&in);
    return true;
}

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    hconn *hc = tl_conn_data(c);
    if (hc->h2) {
        tli_httpd_h2_read(hc, data, len);
        return;
    }
    if (hc->state == H_CLOSING)
        return;
    if (hc->first && hc->state == H_IDLE && !hc->blocked && of_conn(hc)->h2c &&
        !tl_conn_is_tls(c) && h2c_preface(hc, data, len))
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
    if (hc->h2) {
        tli_httpd_h2_writable(hc);
    } else if (hc->stream) {
        tli_httpd_pump(hc);
    } else if (hc->blocked) {
        hc->blocked = false;
        tli_httpd_answered(hc);
    }
}

static void on_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    hc->eof = true;
    if (hc->h2) {
        tli_httpd_h2_eof(hc);
        return;
    }
    if (hc->state == H_CLOSING || hc->blocked)
        return;   /* the answer under way closes when it is done (settle) */
    /* Waiting for a request, or in the middle of one that nothing can complete now. */
    close_conn(hc);
}

/* Whether ALPN picked h2 for this connection. */
static bool alpn_h2(tl_conn *c)
{
    tl_engine *e = tl_conn_engine(c);
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (e)
        SSL_get0_alpn_selected(tl_engine_ssl(e), &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}

static void on_handshake(tl_conn *c, bool ok)
{
    hconn *hc = tl_conn_data(c);
    if (ok && alpn_h2(c)) {
        tli_httpd_h2_start(hc, NULL, 0);
        return;
    }
    if (ok && hc->state == H_IDLE && !hc->blocked)
        arm_idle(hc);
}

static void on_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    hconn *hc = t->data;
    if (hc->h2) {
        tli_httpd_h2_timer(hc);
        return;
    }
    if (hc->state == H_IDLE) {
        close_conn(hc);   /* waited long enough for a request: no answer owed */
        return;
    }
    if (hc->state == H_HEAD || hc->state == H_BODY) {
        const tl_buf *b = hc->state == H_BODY && hc->body ? &hc->body->held : &hc->in;
        const uint8_t *p = tl_buf_rptr(b);
        size_t n = tl_buf_len(b);
        reqview rv = p ? raw_view(p, n) : (reqview){.line = NULL, .minor = 1};
        tli_httpd_reject(hc, &rv, 408);
    }
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    tl_timer_stop(tl_conn_loop(c), &hc->timer);
    if (hc->h2)
        tli_httpd_h2_close(hc);
    /* A streamed answer cut short: logged with the bytes that were sent. */
    tli_httpd_log_stream(hc);
    tli_httpd_end_stream(hc);
    if (hc->body)
        tl_buf_free(&hc->body->held);
    free(hc->body);
    tl_buf_free(&hc->in);
    free(hc);
}

void tli_httpd_conn_open(tl_conn *c, void *data)
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

void tli_httpd_conn_drain(tl_conn *c, void *data)
{
    (void)data;
    hconn *hc = tl_conn_data(c);
    if (!hc)
        return;
    hc->draining = true;
    if (hc->h2) {
        tli_httpd_h2_drain(hc);
        return;
    }
    if (hc->state == H_IDLE && !hc->blocked && !tl_buf_len(&hc->in))
        close_conn(hc);
}

/* A reload: an HTTP/2 client is asked with GOAWAY to come back on a new connection (which the
 * new certificates serve), its streams in flight finishing first; HTTP/1.1 connections go on. */
void tli_httpd_conn_reload(tl_conn *c, void *data)
{
    (void)data;
    hconn *hc = tl_conn_data(c);
    if (hc && hc->h2)
        tli_httpd_h2_drain(hc);
}

/* A connection whose on_open failed has no state: its callbacks do nothing. */
#define GUARD(c)                                                                                \
    do {                                                                                        \
        if (!tl_conn_data(c))                                                                   \
            return;                                                                             \
    } while (0)

void tli_httpd_conn_read(tl_conn *c, const uint8_t *d, size_t n) { GUARD(c); on_read(c, d, n); }
void tli_httpd_conn_writable(tl_conn *c) { GUARD(c); on_writable(c); }
void tli_httpd_conn_eof(tl_conn *c, tl_conn_end how) { GUARD(c); on_eof(c, how); }
void tli_httpd_conn_handshake(tl_conn *c, bool ok) { GUARD(c); on_handshake(c, ok); }
void tli_httpd_conn_close(tl_conn *c, tl_conn_end how) { GUARD(c); on_close(c, how); }
