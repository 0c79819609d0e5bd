/* acme_http.c - one HTTP exchange with the ACME server over tlsloop's own client
 * (tlsloop/client.h), run to its end on the ACME thread's private loop: a new connection for each
 * (ACME is a few requests a day), the body written right after the head, the answer collected
 * with the headers ACME needs (Location, Replay-Nonce, Retry-After, Content-Type). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <tlsloop/buf.h>

#include "acme/acme_int.h"

#define EXCHANGE_TIMEOUT_MS 30000
#define MAX_BODY (1u << 20)

void tli_acme_resp_free(tli_acme_resp *r)
{
    free(r->body);
    free(r->location);
    free(r->nonce);
    free(r->retry_after);
    free(r->content_type);
    memset(r, 0, sizeof *r);
}

typedef struct exch {
    tl_acme *a;
    const char *method, *target, *authority, *ctype, *body;
    tli_acme_resp *r;
    tl_buf in;
    tl_client_dial *dial;
    tl_client_http *x;
    bool finished, ok;
    char *err;
    size_t errlen;
} exch;

/* "https://host[:port]/path" into parts (host without brackets). 0, or -1. */
static int split_url(const char *url, char *host, size_t hlen, uint16_t *port, bool *tls,
                     const char **path, char *authority, size_t alen)
{
    const char *p;
    if (!strncmp(url, "https://", 8)) {
        *tls = true;
        p = url + 8;
        *port = 443;
    } else if (!strncmp(url, "http://", 7)) {
        *tls = false;
        p = url + 7;
        *port = 80;
    } else {
        return -1;
    }
    size_t alen_ = strcspn(p, "/?#");
    if (alen_ == 0 || alen_ >= alen)
        return -1;
    memcpy(authority, p, alen_);
    authority[alen_] = 0;
    *path = p[alen_] == '/' ? p + alen_ : "/";
    const char *hs = authority, *he, *colon;
    if (*hs == '[') {
        he = strchr(hs, ']');
        if (!he)
            return -1;
        hs++;
        colon = he[1] == ':' ? he + 1 : NULL;
    } else {
        colon = strrchr(hs, ':');
        he = colon ? colon : hs + strlen(hs);
    }
    if ((size_t)(he - hs) >= hlen || he == hs)
        return -1;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = 0;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || v <= 0 || v > 65535)
            return -1;
        *port = (uint16_t)v;
    }
    return 0;
}

static char *dup_field(const tl_http_header *h)
{
    return strndup(h->value, h->value_len);
}

static void on_head(tl_client_http *x, const tl_http_response *resp, void *data)
{
    (void)x;
    exch *e = data;
    e->r->status = resp->status;
    for (size_t i = 0; i < resp->num_headers; i++) {
        const tl_http_header *h = &resp->headers[i];
        char **slot = NULL;
        if (h->name_len == 8 && !strncasecmp(h->name, "Location", 8))
            slot = &e->r->location;
        else if (h->name_len == 12 && !strncasecmp(h->name, "Replay-Nonce", 12))
            slot = &e->r->nonce;
        else if (h->name_len == 11 && !strncasecmp(h->name, "Retry-After", 11))
            slot = &e->r->retry_after;
        else if (h->name_len == 12 && !strncasecmp(h->name, "Content-Type", 12))
            slot = &e->r->content_type;
        if (slot) {
            free(*slot);
            *slot = dup_field(h);
        }
    }
}

static void on_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    exch *e = data;
    if (tl_buf_len(&e->in) + n > MAX_BODY || tl_buf_append(&e->in, p, n) != 0) {
        tli_fmt(e->err, e->errlen, "the answer of %s is over 1 MiB", e->target);
        e->ok = false;
        e->finished = true;
        tl_client_http_close(x);
    }
}

static void on_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    exch *e = data;
    if (!e->finished) {
        e->finished = true;
        e->ok = res == TL_HTTP_DONE;
        if (!e->ok)
            tli_fmt(e->err, e->errlen, "%s %s: %s (%s)", e->method, e->target,
                    tl_http_result_name(res), why);
    }
    tl_client_http_close(x);
}

static void on_close(tl_client_http *x, tl_conn_end how, void *data)
{
    (void)x;
    (void)how;
    exch *e = data;
    e->x = NULL;
    if (!e->finished) {
        e->finished = true;
        tli_fmt(e->err, e->errlen, "%s %s: the connection closed before the answer", e->method,
                e->target);
    }
    tl_loop_stop(tl_conn_loop(tl_client_http_conn(x)));
}

static const tl_client_http_cbs HTTP_CBS = {.on_head = on_head, .on_body = on_body,
                                            .on_done = on_done, .on_close = on_close};
static const tl_conn_cbs CONN_CBS = {0};

static void on_connect(tl_conn *c, tl_client_error ce, const char *msg, void *data)
{
    exch *e = data;
    e->dial = NULL;
    if (!c) {
        e->finished = true;
        tli_fmt(e->err, e->errlen, "cannot reach the ACME server %s (%s): %s", e->authority,
                tl_client_error_name(ce), msg);
        tl_loop_stop(e->a->loop);
        return;
    }
    tl_client_http *x = e->x = tl_client_http_new(c, &HTTP_CBS, e);
    if (!x) {
        e->finished = true;
        tli_fmt(e->err, e->errlen, "out of memory");
        tl_loop_stop(e->a->loop);
        return;
    }
    char headers[512];
    size_t blen = e->body ? strlen(e->body) : 0;
    if (e->body)
        tli_fmt(headers, sizeof headers, "User-Agent: tlsloop/" TL_VERSION_STRING
                "\r\nAccept: application/pem-certificate-chain, application/json\r\n"
                "Content-Type: %s\r\nContent-Length: %zu\r\n", e->ctype, blen);
    else
        tli_fmt(headers, sizeof headers, "User-Agent: tlsloop/" TL_VERSION_STRING "\r\n");
    if (tl_client_http_request(x, e->method, e->target, e->authority, headers, false,
                               EXCHANGE_TIMEOUT_MS) != 0 ||
        (blen && tl_conn_write(c, e->body, blen) < 0)) {
        e->finished = true;
        tli_fmt(e->err, e->errlen, "%s %s: the request could not be sent", e->method, e->target);
        tl_client_http_close(x);
    }
}

int tli_acme_http(tl_acme *a, const char *method, const char *url, const char *ctype,
                  const char *body, tli_acme_resp *r, char *err, size_t errlen)
{
    char host[256], authority[300];
    uint16_t port;
    bool tls;
    const char *path;
    memset(r, 0, sizeof *r);
    if (split_url(url, host, sizeof host, &port, &tls, &path, authority, sizeof authority) != 0) {
        tli_fmt(err, errlen, "not an http(s) URL: %.300s", url);
        return -1;
    }
    exch e = {.a = a, .method = method, .target = path, .authority = authority, .ctype = ctype,
              .body = body, .r = r, .err = err, .errlen = errlen};
    tl_client_target t = {.host = host, .port = port, .tls = tls, .cbs = &CONN_CBS,
                          .timeout_ms = EXCHANGE_TIMEOUT_MS};
    *err = 0;
    if (!(e.dial = tl_client_connect(a->client, a->loop, &t, on_connect, &e, err, errlen)))
        return -1;
    /* Runs until the exchange ended and its connection closed, or tl_acme_stop stopped the loop:
     * then what is under way is cancelled or closed and the loop runs once more to its end. */
    while (e.dial || e.x) {
        tl_loop_run(a->loop);
        pthread_mutex_lock(&a->lock);
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->lock);
        if (stopping && !e.finished) {
            e.finished = true;
            tli_fmt(err, errlen, "stopped");
            if (e.dial)
                tl_client_cancel(e.dial);
            else if (e.x)
                tl_conn_abort(tl_client_http_conn(e.x));
        }
    }
    if (!e.ok) {
        tl_buf_free(&e.in);
        tli_acme_resp_free(r);
        if (!*err)
            tli_fmt(err, errlen, "%s %s: no answer", method, url);
        return -1;
    }
    r->len = tl_buf_len(&e.in);
    r->body = malloc(r->len + 1);
    if (!r->body) {
        tl_buf_free(&e.in);
        tli_acme_resp_free(r);
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    if (r->len)
        memcpy(r->body, tl_buf_rptr(&e.in), r->len);
    r->body[r->len] = 0;
    tl_buf_free(&e.in);
    return 0;
}

bool tli_acme_sleep(tl_acme *a, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->lock);
    while (!a->stopping && pthread_cond_timedwait(&a->cond, &a->lock, &ts) == 0)
        ;
    bool go_on = !a->stopping;
    pthread_mutex_unlock(&a->lock);
    return go_on;
}
