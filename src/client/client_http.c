/* client_http.c - HTTP/1.1 exchanges on a client connection, one at a time (tlsloop/client.h;
 * docs/client.md, "The API"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tlsloop/buf.h>

#include "client/client_int.h"

#define MAX_FIELDS 100
#define MAX_HEAD (64u * 1024u)

/* X_WAIT: request sent, head arriving; X_BODY: framed by the head; then X_IDLE again. */
enum { X_IDLE, X_WAIT, X_BODY };

struct tl_client_http {
    tl_conn *c;
    const tl_client_http_cbs *cbs;
    void *data;
    tl_buf in;                     /* a response head split across reads */
    tl_timer timer;
    tl_http_body body;
    uint64_t left;                 /* of a Content-Length body */
    uint64_t got;                  /* body bytes delivered */
    tl_http_chunked chunk;
    uint8_t state;
    tl_conn_end peer_end;          /* how the peer ended before we closed (TL_END_NONE: it had not) */
    bool head_request, reusable, closing;
};

static void done(tl_client_http *x, tl_http_result res, const char *why)
{
    if (x->state == X_IDLE)
        return;
    x->state = X_IDLE;
    tl_timer_stop(tl_conn_loop(x->c), &x->timer);
    if (res != TL_HTTP_DONE)
        x->reusable = false;
    if (x->cbs->on_done)
        x->cbs->on_done(x, res, why, x->data);
}

/* A result that also ends the connection. */
static void fail(tl_client_http *x, tl_http_result res, const char *why)
{
    done(x, res, why);
    tl_conn_close(x->c);
}

static void deliver(void *arg, const uint8_t *p, size_t n)
{
    tl_client_http *x = arg;
    x->got += n;
    if (x->cbs->on_body)
        x->cbs->on_body(x, p, n, x->data);
}

/* Body bytes; returns the bytes that belonged to the body. */
static size_t body_bytes(tl_client_http *x, const uint8_t *p, size_t n)
{
    if (x->body.until_close) {
        deliver(x, p, n);
        return n;
    }
    if (x->body.chunked) {
        ssize_t r = tl_http_chunked_decode(&x->chunk, p, n, deliver, x);
        if (r < 0) {
            fail(x, TL_HTTP_BAD_RESPONSE, "malformed chunked body");
            return n;
        }
        if (x->chunk.done)
            done(x, TL_HTTP_DONE, "");
        return (size_t)r;
    }
    size_t take = n < x->left ? n : (size_t)x->left;
    x->left -= take;
    deliver(x, p, take);
    if (x->left == 0)
        done(x, TL_HTTP_DONE, "");
    return take;
}

/* A head in p[0..n): 0 when it is not complete yet, else the bytes it took (-1: failed). */
static long head(tl_client_http *x, const uint8_t *p, size_t n)
{
    tl_http_header fields[MAX_FIELDS];
    tl_http_response r = {.headers = fields, .max_headers = MAX_FIELDS};
    int hn = tl_http_parse_response((const char *)p, n, &r);
    if (hn == TL_HTTP_INCOMPLETE) {
        if (n > MAX_HEAD) {
            fail(x, TL_HTTP_BAD_RESPONSE, "response head over 64 KiB");
            return -1;
        }
        return 0;
    }
    if (hn < 0) {
        char why[120];
        snprintf(why, sizeof why, "malformed response: %s", r.error ? r.error : "?");
        fail(x, TL_HTTP_BAD_RESPONSE, why);
        return -1;
    }
    if (r.status >= 100 && r.status < 200 && r.status != 101)
        return hn;   /* interim (100 Continue, 103): the real head follows */
    if (tl_http_response_body(&r, x->head_request, &x->body) != 0) {
        char why[120];
        snprintf(why, sizeof why, "unsafe response framing: %s", x->body.error);
        fail(x, TL_HTTP_BAD_RESPONSE, why);
        return -1;
    }
    x->reusable = x->body.keep_alive && x->reusable;
    x->left = x->body.content_length > 0 ? (uint64_t)x->body.content_length : 0;
    x->got = 0;
    tl_http_chunked_init(&x->chunk, TL_HTTP_LONE_LF);   /* clients stay lenient (http.h) */
    x->state = X_BODY;
    if (x->cbs->on_head)
        x->cbs->on_head(x, &r, x->data);
    if (x->state == X_BODY && (x->body.none || (!x->body.chunked && !x->body.until_close &&
                                                x->left == 0)))
        done(x, TL_HTTP_DONE, "");
    return hn;
}

/* Use p[0..n); returns the bytes used (the rest is a split head). */
static size_t consume(tl_client_http *x, const uint8_t *p, size_t n)
{
    size_t at = 0;
    while (at < n && !x->closing) {
        if (x->state == X_IDLE) {
            /* Bytes nobody asked for: the connection cannot be trusted for another request. */
            x->reusable = false;
            return n;
        }
        if (x->state == X_BODY) {
            at += body_bytes(x, p + at, n - at);
            continue;
        }
        long used = head(x, p + at, n - at);
        if (used <= 0)
            return used < 0 ? n : at;
        at += (size_t)used;
    }
    return n;
}

/* A head that arrives in one read is parsed where it lies; a split one waits in x->in. */
static void x_read(tl_conn *c, const uint8_t *p, size_t n)
{
    tl_client_http *x = tl_conn_data(c);
    if (!tl_buf_len(&x->in)) {
        size_t used = consume(x, p, n);
        if (used < n && tl_buf_append(&x->in, p + used, n - used) != 0)
            fail(x, TL_HTTP_CONN_FAILED, "out of memory");
        return;
    }
    if (tl_buf_append(&x->in, p, n) != 0) {
        fail(x, TL_HTTP_CONN_FAILED, "out of memory");
        return;
    }
    size_t used = consume(x, tl_buf_rptr(&x->in), tl_buf_len(&x->in));
    if (x->state == X_IDLE)
        tl_buf_free(&x->in);   /* the exchange ended: what is left belongs to nobody */
    else
        tl_buf_consume(&x->in, used);
}

/* An exchange ends by its framing alone: the Content-Length counted down, the last chunk read, or,
 * for a body that runs to the connection's end, a clean end (close_notify; a FIN on a plain
 * connection). Any other end truncates it. */
static void x_eof(tl_conn *c, tl_conn_end how)
{
    tl_client_http *x = tl_conn_data(c);
    x->reusable = false;
    if (!x->closing)
        x->peer_end = how;
    if (x->state == X_BODY && x->body.until_close) {
        if (how == TL_END_CLEAN)
            done(x, TL_HTTP_DONE, "");
        else
            done(x, TL_HTTP_TRUNCATED, "the connection ended without close_notify: the body "
                                       "may be cut short");
    } else if (x->state == X_BODY) {
        char why[160];
        if (x->body.chunked)
            snprintf(why, sizeof why, "the connection ended before the last chunk (%llu bytes "
                     "received)", (unsigned long long)x->got);
        else
            snprintf(why, sizeof why, "the connection ended after %llu of %lld bytes",
                     (unsigned long long)x->got, (long long)x->body.content_length);
        done(x, TL_HTTP_TRUNCATED, why);
    } else if (x->state == X_WAIT) {
        done(x, tl_buf_len(&x->in) ? TL_HTTP_TRUNCATED : TL_HTTP_CONN_FAILED,
             tl_buf_len(&x->in) ? "the connection ended inside the response head"
                                : "the server closed the connection without a response");
    }
}

static void x_close(tl_conn *c, tl_conn_end how)
{
    tl_client_http *x = tl_conn_data(c);
    if (x->state != X_IDLE) {
        const char *why = tl_conn_error(c);
        char msg[300];
        snprintf(msg, sizeof msg, "the connection failed: %s", *why ? why : tl_conn_end_name(how));
        done(x, TL_HTTP_CONN_FAILED, msg);
    }
    tl_timer_stop(tl_conn_loop(c), &x->timer);
    if (x->cbs->on_close)
        x->cbs->on_close(x, how, x->data);
    tl_buf_free(&x->in);
    free(x);
}

static void x_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    tl_client_http *x = t->data;
    /* What was being waited for, in words a user can act on. */
    char why[200];
    if (x->state == X_WAIT && !tl_buf_len(&x->in))
        snprintf(why, sizeof why, "waiting for the response (the request was sent, nothing came "
                 "back)");
    else if (x->state == X_WAIT)
        snprintf(why, sizeof why, "waiting for the rest of the response head (%zu bytes came)",
                 tl_buf_len(&x->in));
    else if (x->body.chunked || x->body.until_close)
        snprintf(why, sizeof why, "waiting for the rest of the body (%llu bytes came%s)",
                 (unsigned long long)x->got, x->body.chunked ? ", chunked" : "");
    else
        snprintf(why, sizeof why, "waiting for the rest of the body (%llu of %lld bytes came)",
                 (unsigned long long)x->got, (long long)x->body.content_length);
    fail(x, TL_HTTP_TIMED_OUT, why);
}

static const tl_conn_cbs HTTP_CBS = {.on_read = x_read, .on_eof = x_eof, .on_close = x_close};

tl_client_http *tl_client_http_new(tl_conn *c, const tl_client_http_cbs *cbs, void *data)
{
    tl_client_http *x = tli_client_conn(c) ? calloc(1, sizeof *x) : NULL;
    if (!x) {
        tl_conn_close(c);
        return NULL;
    }
    x->c = c;
    x->cbs = cbs;
    x->data = data;
    x->reusable = true;
    tl_timer_init(&x->timer, x_timer, x);
    tl_conn_set_data(c, x);
    tli_client_conn_set_cbs(c, &HTTP_CBS);
    return x;
}

int tl_client_http_request(tl_client_http *x, const char *method, const char *target,
                           const char *host, const char *headers, bool keep_alive,
                           uint32_t timeout_ms)
{
    if (x->state != X_IDLE || x->closing || !x->reusable)
        return -1;
    char line[8192];
    int n = snprintf(line, sizeof line, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", method, target,
                     host, headers ? headers : "", keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    if (tl_conn_write(x->c, line, (size_t)n) < 0)
        return -1;
    x->head_request = !strcmp(method, "HEAD");
    x->reusable = keep_alive;
    x->state = X_WAIT;
    if (timeout_ms)
        tl_timer_start(tl_conn_loop(x->c), &x->timer, timeout_ms);
    return 0;
}

bool tl_client_http_reusable(const tl_client_http *x)
{
    return x->state == X_IDLE && x->reusable && !x->closing;
}

void tl_client_http_close(tl_client_http *x)
{
    if (x->closing)
        return;
    done(x, TL_HTTP_CLOSED, "closed while the response was arriving");
    x->closing = true;
    tl_conn_close(x->c);
}

tl_conn_end tl_client_http_peer_end(const tl_client_http *x)
{
    return x->peer_end;
}

tl_conn *tl_client_http_conn(tl_client_http *x)
{
    return x->c;
}

const char *tl_http_result_name(tl_http_result r)
{
    static const char *const names[] = {"done", "truncated", "bad-response", "conn-failed",
                                        "timed-out", "closed"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "unknown";
}
