/* get.c - `tlsloop get URL`: fetch an http:// or https:// URL with HTTP/1.1, or HTTP/2 with
 * --http2, on the client API (tlsloop/client.h), verifying TLS by default, and exit with a code
 * a script can rely on. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tlsloop/client.h>
#include <tlsloop/ocsp.h>
#include <tlsloop/server.h>

#include "tools.h"

/* Exit codes (tlsloop get --help and docs/client.md list them). */
enum {
    GET_OK = 0,
    GET_FAILED = 1,        /* anything else: writing the output failed, out of memory */
    GET_USAGE = 2,
    GET_DNS = 3,
    GET_CONNECT = 4,
    GET_VERIFY = 5,
    GET_TLS = 6,
    GET_HTTP = 7,          /* an HTTP error status, with --fail */
    /* 8 was the timeout's code until it became curl's 28; no longer used. */
    GET_TRUNCATED = 9,     /* the response is incomplete or malformed */
    GET_REDIRECTS = 10,    /* more redirects than --max-redirs */
    GET_DOWNGRADE = 11,    /* a redirect from https to http, without --allow-downgrade-redirect */
    GET_TIMEOUT = 28,      /* --timeout passed (curl's "operation timed out") */
};

/* After a complete response, the server (asked for Connection: close) closes first; we wait this
 * long for it before closing ourselves. Our close_notify's answer is awaited as long. */
#define SERVER_CLOSE_WAIT_MS 1000
/* Once --timeout has passed, closing gracefully may take this much more; then we abort. */
#define CLOSE_MARGIN_MS 500

void cmd_get_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop get [options] URL\n\n"
            "Fetch an http:// or https:// URL with HTTP/1.1 (or HTTP/2) and write the body to\n"
            "stdout. TLS verifies the certificate chain (system store, or --cacert) and the host\n"
            "name.\n\n"
            "  -o, --output FILE      write the body to FILE\n"
            "  -I, --head             send HEAD and print the response headers only\n"
            "  -i, --include          write the response headers before the body (each\n"
            "                         redirect's too, with -L)\n"
            "  -v, --verbose          show the request, the response headers, the HTTP version\n"
            "                         and the TLS facts (protocol, cipher, ALPN, resumed,\n"
            "                         certificate, verification)\n"
            "      --http2            offer h2 and http/1.1 by ALPN and speak HTTP/2 when the\n"
            "                         server selects h2, else HTTP/1.1 (-v says which); over\n"
            "                         http:// HTTP/1.1 (no h2c upgrade)\n"
            "      --http2-prior-knowledge  HTTP/2 without asking: over http:// straight away\n"
            "                         (h2c), over https:// by ALPN h2 alone\n"
            "  -H, --header 'N: V'    send this header too (repeat)\n"
            "  -X, --request METHOD   another method than GET\n"
            "  -f, --fail             exit 7 for an HTTP status of 400 or above (no body written)\n"
            "  -L, --location         follow redirects (at most --max-redirs); at another origin\n"
            "                         (scheme, host, port) the -H headers are not sent\n"
            "      --max-redirs N     redirects followed with -L (default 10)\n"
            "      --location-trusted send the -H headers (Authorization, Cookie, ...) to every\n"
            "                         host -L goes to\n"
            "      --allow-downgrade-redirect  follow a redirect from https:// to http://\n"
            "                         (refused by default: exit 11)\n"
            "      --cacert FILE      trust the CA certificates in FILE (PEM) instead of the system\n"
            "  -k, --insecure         DO NOT VERIFY the server's certificate or name (for tests)\n"
            "      --ocsp             ask for a stapled OCSP response and require it: signed for\n"
            "                         this certificate by its issuer, good, not expired (else\n"
            "                         exit 5); -v prints its status and times\n"
            "      --resolve H:P:ADDR connect to ADDR for host H and port P (repeat)\n"
            "      --timeout TIME     for the whole fetch, redirects included: resolving,\n"
            "                         connecting, TLS, the response (default 30s; each --repeat\n"
            "                         fetch has its own)\n"
            "      --repeat N         fetch N times, each on a new connection offering the last\n"
            "                         session; prints how many were resumed (body written once)\n"
            "      --tlsv1.2, --tlsv1.3  use only this TLS version\n"
            "      --tls-kdf openssl|tlsloop  TLS key derivation and HMAC: OpenSSL's own\n"
            "                         (default) or tlsloop's faster ones\n"
            "      --io epoll|uring|auto  the loop's I/O backend (default: TLSLOOP_IO, else\n"
            "                         epoll; auto: io_uring when the kernel allows it; -v says\n"
            "                         which one ran)\n"
            "      --help             this text\n\n"
            "A response complete by its framing whose TLS connection then ends without the\n"
            "server's close_notify is kept (exit 0) with a warning on stderr; -v tells how the\n"
            "connection ended.\n\n"
            "Exit status: 0 success, 1 other failure (writing the output), 2 usage, 3 name not\n"
            "resolved, 4 connection refused or unreachable, 5 certificate verification failed,\n"
            "6 other TLS failure, 7 HTTP error status (with --fail), 9 response truncated or\n"
            "malformed, 10 too many redirects, 11 redirect from https to http refused,\n"
            "28 timeout (--timeout).\n");
}

/* ---- one run ---------------------------------------------------------------------------- */

typedef struct run {
    tl_client *cl;
    tl_loop *loop;
    url u;                        /* this request's */
    url start;                    /* the command line's: where each fetch starts, and the origin
                                     the -H headers belong to */
    const char *method, *start_method;
    char headers[8192];           /* the -H headers */
    bool head_only, include, verbose, fail_on_http, follow, insecure;
    bool ocsp;                    /* --ocsp: a good stapled response is required */
    bool location_trusted, allow_downgrade;
    bool send_headers;            /* the -H headers go with this request */
    unsigned max_redirs, redirects;
    uint64_t deadline_ms;         /* this fetch's end (mono_ms) */
    tl_timer close_timer;         /* waiting for the server to close, then for our close */
    tl_timer guard;               /* the deadline and its closing margin passed: abort */
    tl_client_http *x;            /* the exchange under way (HTTP/1.1), or NULL */
    tl_client_h2 *h2;             /* or the HTTP/2 session */
    bool http2, prior_knowledge;  /* --http2, --http2-prior-knowledge */
    bool complete;                /* its response was complete by its framing */
    bool warned;
    unsigned repeat, done_fetches, resumed;
    uint32_t timeout_ms;
    FILE *out;
    const char *out_path;
    int exit_code;
    int status;
    bool write_body;              /* this fetch's body goes to the output */
    bool skip_body;               /* a redirect or a --fail status: not written */
    char location[4096];
    char why[400];
} run;

static void vsay(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vsay(run *r, const char *fmt, ...)
{
    if (!r->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void finish(run *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(run *r, int code, const char *fmt, ...)
{
    if (r->exit_code == GET_OK && code != GET_OK) {
        r->exit_code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->why, sizeof r->why, fmt, ap);
        va_end(ap);
    }
}

static void start_fetch(run *r, bool redirect);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What is left of this fetch's --timeout, in ms (0: it passed). */
static uint32_t time_left(const run *r)
{
    uint64_t now = mono_ms();
    return now >= r->deadline_ms ? 0 : (uint32_t)(r->deadline_ms - now);
}

/* The exchange's connection, whichever HTTP it speaks (NULL: none under way). */
static tl_conn *ex_conn(run *r)
{
    return r->x ? tl_client_http_conn(r->x) : r->h2 ? tl_client_h2_conn(r->h2) : NULL;
}

static void ex_close(run *r)
{
    if (r->x)
        tl_client_http_close(r->x);
    else if (r->h2)
        tl_client_h2_close(r->h2);
}

static tl_conn_end ex_peer_end(run *r)
{
    return r->x ? tl_client_http_peer_end(r->x) : r->h2 ? tl_client_h2_peer_end(r->h2)
                                                       : TL_END_NONE;
}

static void on_close_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    ex_close(t->data);   /* the server did not close: we do, and wait as long */
}

static void on_guard(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    run *r = t->data;
    if (ex_conn(r))
        tl_conn_abort(ex_conn(r));   /* on_close follows */
}

/* The TLS facts (-v), and the protocol ALPN selected into alpn ("" for none, or plain TCP). */
static void tls_facts(run *r, tl_conn *c, char *alpn, size_t alpnlen)
{
    tl_engine *e = tl_conn_engine(c);
    if (!e)
        return;
    tl_engine_info i;
    tl_engine_get_info(e, &i);
    snprintf(alpn, alpnlen, "%s", i.alpn);
    if (i.resumed)
        r->resumed++;
    if (!r->verbose)
        return;
    fprintf(stderr, "* TLS: %s, %s%s%s, ALPN %s, %s session\n", i.version ? i.version : "?",
            i.cipher ? i.cipher : "?", i.group ? ", " : "", i.group ? i.group : "",
            i.alpn[0] ? i.alpn : "none", i.resumed ? "resumed" : "new");
    if (i.has_peer_cert)
        fprintf(stderr, "* certificate: subject %s; issuer %s\n", i.peer_subject, i.peer_issuer);
    fprintf(stderr, "* verification: %s\n",
            r->insecure ? "OFF (--insecure)" : i.verify_result == 0 ? "ok" : i.verify_error);
}

/* --ocsp: the stapled response, checked against the verified chain. false: the fetch fails. */
static bool ocsp_check(run *r, tl_conn *c)
{
    tl_engine *e = tl_conn_engine(c);
    if (!r->ocsp || !e)
        return true;
    tl_ocsp_info info;
    char why[400];
    int rc = tl_ocsp_check_peer(e, &info, why, sizeof why);
    if (rc != 0) {
        vsay(r, "* OCSP: %s\n", why);
        finish(r, GET_VERIFY, "--ocsp: %s", why);
        return false;
    }
    char t1[32] = "", t2[32] = "";
    time_t a = (time_t)info.this_update, b = (time_t)info.expires;
    struct tm tm;
    strftime(t1, sizeof t1, "%Y-%m-%d %H:%M:%S", gmtime_r(&a, &tm));
    strftime(t2, sizeof t2, "%Y-%m-%d %H:%M:%S", gmtime_r(&b, &tm));
    vsay(r, "* OCSP: %s (stapled; thisUpdate %s UTC, valid until %s UTC)\n",
         tl_ocsp_status_name(info.status), t1, t2);
    return true;
}

/* The response head: as it came, to the output (-I, -i), or marked "< " on stderr (-v). */
static void print_head(const run *r, FILE *f, bool raw, const tl_http_response *resp)
{
    const char *mark = raw ? "" : "< ";
    if (r->h2)
        fprintf(f, "%sHTTP/2 %d\r\n", mark, resp->status);
    else
        fprintf(f, "%sHTTP/1.%d %d %.*s\r\n", mark, resp->minor_version, resp->status,
                (int)resp->reason_len, resp->reason);
    for (size_t i = 0; i < resp->num_headers; i++) {
        const tl_http_header *h = &resp->headers[i];
        fprintf(f, "%s%.*s: %.*s\r\n", mark, (int)h->name_len, h->name, (int)h->value_len,
                h->value);
    }
    fprintf(f, raw ? "\r\n" : "<\n");
}

static void head(run *r, const tl_http_response *resp)
{
    r->status = resp->status;
    r->location[0] = 0;
    if (r->head_only || (r->include && r->write_body && !r->exit_code &&
                         !(r->fail_on_http && resp->status >= 400)))
        print_head(r, r->out, true, resp);
    if (r->verbose && !r->head_only)
        print_head(r, stderr, false, resp);
    for (size_t i = 0; i < resp->num_headers; i++) {
        const tl_http_header *h = &resp->headers[i];
        if (h->name_len == 8 && !strncasecmp(h->name, "location", 8)) {
            /* One too long to keep is kept as a mark: following it fails with a reason. */
            size_t n = h->value_len < sizeof r->location ? h->value_len : 1;
            memcpy(r->location, h->value_len < sizeof r->location ? h->value : "\x01", n);
            r->location[n] = 0;
        }
    }
    bool redirect = r->follow && r->location[0] &&
                    (resp->status == 301 || resp->status == 302 || resp->status == 303 ||
                     resp->status == 307 || resp->status == 308);
    r->skip_body = redirect || (r->fail_on_http && resp->status >= 400);
}

static void body(run *r, const uint8_t *p, size_t n)
{
    if (!r->write_body || r->skip_body || r->exit_code)
        return;
    if (fwrite(p, 1, n, r->out) != n) {
        finish(r, GET_FAILED, "writing %s: %s", r->out_path ? r->out_path : "the output",
               strerror(errno));
        ex_close(r);
    }
}

static void done(run *r, tl_http_result res, const char *why)
{
    switch (res) {
    case TL_HTTP_DONE:
        r->complete = true;
        /* HTTP/2: one stream, done; our GOAWAY and close_notify end the connection. */
        if (!r->h2 && ex_peer_end(r) == TL_END_NONE && !r->exit_code) {
            /* We asked for Connection: close: the server closes now (RFC 9112 section 9.6),
             * and how it does tells whether it meant to end here (close_notify). */
            uint32_t left = time_left(r);
            tl_timer_start(r->loop, &r->close_timer,
                           left < SERVER_CLOSE_WAIT_MS ? left : SERVER_CLOSE_WAIT_MS);
            return;
        }
        break;
    case TL_HTTP_TIMED_OUT:
        finish(r, GET_TIMEOUT, "timed out after %u ms (--timeout) %s from %s port %u",
               r->timeout_ms, why, r->u.host, r->u.port);
        break;
    case TL_HTTP_CLOSED:
        break;   /* we closed it (an error is already set) */
    default:
        finish(r, GET_TRUNCATED, "%s: %s", tl_http_result_name(res), why);
        break;
    }
    ex_close(r);   /* close_notify, and the peer's awaited: on_close goes on */
}

/* How the server's side ended: its close_notify or not, in words. */
static const char *peer_close_text(tl_conn_end how)
{
    switch (how) {
    case TL_END_CLEAN:
        return "received";
    case TL_END_TRUNCATED:
        return "not received (the connection just ended)";
    case TL_END_RESET:
        return "not received (the connection was reset)";
    case TL_END_TLS_ERROR:
        return "not received (a TLS error)";
    default:
        return "not received in time (we ended the connection)";
    }
}

/* -v: the facts of the close; and the warning for a complete response without close_notify. */
static void close_facts(run *r, tl_conn_end how)
{
    tl_conn *c = ex_conn(r);
    tl_conn_end peer = ex_peer_end(r);
    bool tls = tl_conn_is_tls(c);
    tl_conn_end theirs = peer != TL_END_NONE ? peer : how;   /* how the server's side ended */
    tl_conn_stats st;
    tl_conn_get_stats(c, &st);
    vsay(r, "* close: %s; %s%s; %llu bytes received, %llu sent\n",
         peer != TL_END_NONE ? "the server closed first"
                             : tls ? "we closed first (close_notify sent)" : "we closed first",
         tls ? "the server's close_notify: " : "the server's side: ",
         tls ? peer_close_text(theirs) : theirs == TL_END_CLEAN ? "closed" : tl_conn_end_name(theirs),
         (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
    /* For the response written out (not a redirect's, not one --fail refuses). Over HTTP/2 we
     * end first (GOAWAY, close_notify) after END_STREAM: a server that then closes without
     * answering our close_notify (nginx does) cut nothing off; -v says how it ended. */
    bool h2_after_ours = r->h2 && peer == TL_END_NONE;
    if (tls && r->complete && !r->skip_body && theirs != TL_END_CLEAN && !r->exit_code &&
        !r->warned && !h2_after_ours) {
        r->warned = true;
        fprintf(stderr, "tlsloop get: warning: the response was complete by its framing, but "
                        "the connection then ended without the server's close_notify (%s)\n",
                tl_conn_end_name(theirs));
    }
}

static void closed(run *r, tl_conn_end how)
{
    const char *e = tl_conn_error(ex_conn(r));
    vsay(r, "* connection closed: %s%s%s\n", tl_conn_end_name(how), *e ? ": " : "", e);
    close_facts(r, how);
    r->x = NULL;
    r->h2 = NULL;
    tl_timer_stop(r->loop, &r->close_timer);
    tl_timer_stop(r->loop, &r->guard);
    if (r->exit_code) {
        tl_loop_stop(r->loop);
        return;
    }
    if (r->fail_on_http && r->status >= 400) {
        finish(r, GET_HTTP, "the server answered %d", r->status);
        tl_loop_stop(r->loop);
        return;
    }
    if (r->skip_body && r->follow && r->location[0]) {
        if (++r->redirects > r->max_redirs) {
            finish(r, GET_REDIRECTS, "more than %u redirects (--max-redirs); the next one went "
                   "to %.200s", r->max_redirs, r->location);
            tl_loop_stop(r->loop);
            return;
        }
        /* The Location resolved against this request's URL (RFC 3986 section 5.2). */
        char err[400];
        url next;
        if (!strcmp(r->location, "\x01")) {
            finish(r, GET_TRUNCATED, "a redirect whose Location is longer than %zu bytes",
                   sizeof r->location - 1);
            tl_loop_stop(r->loop);
            return;
        }
        if (resolve_url(&r->u, r->location, &next, err, sizeof err) != 0) {
            finish(r, GET_TRUNCATED, "a redirect to %s", err);
            tl_loop_stop(r->loop);
            return;
        }
        if (r->u.tls && !next.tls && !r->allow_downgrade) {
            finish(r, GET_DOWNGRADE, "refusing to follow a redirect from https://%s to "
                   "http://%s%s: it would leave TLS (--allow-downgrade-redirect follows it)",
                   r->u.authority, next.authority, next.target);
            tl_loop_stop(r->loop);
            return;
        }
        /* 303 asks for a GET (HEAD stays HEAD); 301 and 302 turn a POST into a GET, as curl and
         * browsers do; 307 and 308 keep the method. No request body is ever sent. */
        if ((r->status == 303 && strcmp(r->method, "HEAD") != 0) ||
            ((r->status == 301 || r->status == 302) && !strcmp(r->method, "POST")))
            r->method = "GET";
        /* The -H headers (credentials, cookies) belong to the origin the command line named. */
        bool send = r->location_trusted || same_origin(&r->start, &next);
        if (!send && r->headers[0])
            vsay(r, "* %s://%s is not the origin of %s://%s: the -H headers are not sent there "
                 "(--location-trusted sends them)\n", next.tls ? "https" : "http", next.authority,
                 r->start.tls ? "https" : "http", r->start.authority);
        r->send_headers = send;
        vsay(r, "* following the redirect to %s://%s%s\n", next.tls ? "https" : "http",
             next.authority, next.target);
        r->u = next;
        start_fetch(r, true);
        return;
    }
    if (++r->done_fetches < r->repeat) {
        start_fetch(r, false);
        return;
    }
    tl_loop_stop(r->loop);
}

/* The callbacks of either HTTP, onto the same run. */
/* HTTP/2 or HTTP/1.1 on this connection: --http2 asks for h2 by ALPN and falls back to what
 * the server selected; --http2-prior-knowledge speaks HTTP/2 over plain TCP, and over TLS
 * unless the server selected another protocol. */
static bool use_h2(run *r, tl_conn *c, const char *alpn)
{
    bool tls = tl_conn_is_tls(c);
    if (!r->http2 && !r->prior_knowledge)
        return false;
    if (tls && !strcmp(alpn, "h2"))
        return true;
    if (r->prior_knowledge && (!tls || !alpn[0]))
        return true;
    if (!tls)
        vsay(r, "* --http2 over http:// is HTTP/1.1 here (no h2c upgrade; "
                "--http2-prior-knowledge speaks HTTP/2 at once)\n");
    else
        vsay(r, "* the server did not select h2 (ALPN %s): falling back to HTTP/1.1\n",
             alpn[0] ? alpn : "none");
    return false;
}

static void on_head(tl_client_http *x, const tl_http_response *resp, void *data)
{
    (void)x;
    head(data, resp);
}

static void on_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    (void)x;
    body(data, p, n);
}

static void on_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    (void)x;
    done(data, res, why);
}

static void on_close(tl_client_http *x, tl_conn_end how, void *data)
{
    (void)x;
    closed(data, how);
}

static void h2_head(tl_client_h2 *h, const tl_http_response *resp, void *req)
{
    (void)h;
    head(req, resp);
}

static void h2_body(tl_client_h2 *h, const uint8_t *p, size_t n, void *req)
{
    (void)h;
    body(req, p, n);
}

static void h2_done(tl_client_h2 *h, tl_http_result res, const char *why, void *req)
{
    (void)h;
    done(req, res, why);
}

static void h2_close(tl_client_h2 *h, tl_conn_end how, void *data)
{
    (void)h;
    closed(data, how);
}

static const tl_client_http_cbs HTTP_CBS = {.on_head = on_head, .on_body = on_body,
                                            .on_done = on_done, .on_close = on_close};
static const tl_client_h2_cbs H2_CBS = {.on_head = h2_head, .on_body = h2_body,
                                        .on_done = h2_done, .on_close = h2_close};
/* Before tl_client_http takes over: a connection only closes here if it fails at once. */
static const tl_conn_cbs CONN_CBS = {0};

static void on_connect(tl_conn *c, tl_client_error err, const char *msg, void *data)
{
    run *r = data;
    if (!c) {
        static const int codes[] = {
            [TL_CLIENT_DNS] = GET_DNS,       [TL_CLIENT_CONNECT] = GET_CONNECT,
            [TL_CLIENT_TIMEOUT] = GET_TIMEOUT, [TL_CLIENT_VERIFY] = GET_VERIFY,
            [TL_CLIENT_TLS] = GET_TLS,       [TL_CLIENT_CLOSED] = GET_TLS,
            [TL_CLIENT_CANCELLED] = GET_FAILED, [TL_CLIENT_RESOURCE] = GET_FAILED};
        if (err == TL_CLIENT_TIMEOUT)
            finish(r, GET_TIMEOUT, "timed out after %u ms (--timeout): %s", r->timeout_ms, msg);
        else
            finish(r, codes[err], "%s", msg);
        tl_loop_stop(r->loop);
        return;
    }
    vsay(r, "* connected to %s port %u\n", r->u.host, r->u.port);
    char alpn[64] = "";
    tls_facts(r, c, alpn, sizeof alpn);
    bool ocsp_ok = ocsp_check(r, c);
    bool h2 = use_h2(r, c, alpn);
    vsay(r, "* HTTP: %s\n", h2 ? "HTTP/2" : "HTTP/1.1");
    if (h2)
        r->h2 = tl_client_h2_new(c, &H2_CBS, r);
    else
        r->x = tl_client_http_new(c, &HTTP_CBS, r);
    if (!r->x && !r->h2) {
        finish(r, GET_FAILED, "out of memory");
        tl_loop_stop(r->loop);
        return;
    }
    if (!ocsp_ok) {
        ex_close(r);   /* its on_close stops the loop */
        return;
    }
    /* Whatever happens from here, the connection is gone soon after the deadline. */
    tl_timer_start(r->loop, &r->guard, (uint64_t)time_left(r) + CLOSE_MARGIN_MS);
    char headers[sizeof r->headers + 100];
    snprintf(headers, sizeof headers, "%s%s", r->send_headers ? r->headers : "",
             "User-Agent: tlsloop/" TL_VERSION_STRING "\r\nAccept: */*\r\n");
    if (h2)
        vsay(r, "> %s %s HTTP/2\n> :authority: %s\n", r->method, r->u.target, r->u.authority);
    else
        vsay(r, "> %s %s HTTP/1.1\n> Host: %s\n", r->method, r->u.target, r->u.authority);
    if (r->verbose)
        for (const char *p = headers; *p;) {
            const char *e = strstr(p, "\r\n");
            const char *colon = memchr(p, ':', (size_t)(e - p));
            size_t nl = h2 && colon ? (size_t)(colon - p) : 0;   /* HTTP/2: names in lower case */
            fputs("> ", stderr);
            for (size_t i = 0; i < nl; i++)
                fputc(tolower((unsigned char)p[i]), stderr);
            fprintf(stderr, "%.*s\n", (int)((size_t)(e - p) - nl), p + nl);
            p = e + 2;
        }
    vsay(r, h2 ? ">\n" : "> Connection: close\n>\n");
    uint32_t left = time_left(r);
    if (left == 0) {
        finish(r, GET_TIMEOUT, "timed out after %u ms (--timeout) connecting to %s port %u",
               r->timeout_ms, r->u.host, r->u.port);
        ex_close(r);
    } else if (h2 ? tl_client_h2_request(r->h2, r->method, r->u.authority, r->u.target, headers,
                                         left, r) < 0
                  : tl_client_http_request(r->x, r->method, r->u.target, r->u.authority,
                                           headers, false, left) != 0) {
        finish(r, GET_FAILED, "the request could not be sent (too long, or a malformed -H?)");
        ex_close(r);
    }
}

/* A fetch (its redirects included) from the command line's URL, or a redirect's request. */
static void start_fetch(run *r, bool redirect)
{
    char err[300];
    if (!redirect) {
        r->u = r->start;
        r->method = r->start_method;
        r->redirects = 0;
        r->send_headers = true;
        r->deadline_ms = mono_ms() + r->timeout_ms;
    }
    r->write_body = r->done_fetches == 0;
    r->skip_body = false;
    r->complete = false;
    r->status = 0;
    uint32_t left = time_left(r);
    if (left == 0) {
        finish(r, GET_TIMEOUT, "timed out after %u ms (--timeout) before the redirect to %s "
               "port %u", r->timeout_ms, r->u.host, r->u.port);
        tl_loop_stop(r->loop);
        return;
    }
    tl_client_target t = {.host = r->u.host, .port = r->u.port, .tls = r->u.tls,
                          .cbs = &CONN_CBS, .timeout_ms = left};
    if (!tl_client_connect(r->cl, r->loop, &t, on_connect, r, err, sizeof err)) {
        finish(r, GET_USAGE, "%s", err);
        tl_loop_stop(r->loop);
    }
}

/* ---- options ---------------------------------------------------------------------------- */

#define usage_error(...) tool_usage_error("get", __VA_ARGS__)

int cmd_get(int argc, char **argv)
{
    run r = {.method = "GET", .max_redirs = 10, .repeat = 1, .timeout_ms = 30000, .out = stdout};
    tl_client_config cc = {.alpn = "http/1.1"};
    const char *url_arg = NULL, *resolves[32];
    size_t nres = 0, hl = 0;
    tl_io_backend io = TL_IO_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* Options with a value, as "--name value" or "--name=value". */
        const char *v = NULL;
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        char name[40] = "";
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            a = name;
            v = eq + 1;
        }
#define VALUE()                                                                                 \
    (v ? v : i + 1 < argc ? argv[++i] : NULL)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cmd_get_usage(stdout);
            return GET_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(r.out_path = VALUE()))
                return usage_error("%s needs a file name", a);
        } else if (!strcmp(a, "-I") || !strcmp(a, "--head")) {
            r.head_only = true;
            r.method = "HEAD";
        } else if (!strcmp(a, "-i") || !strcmp(a, "--include")) {
            r.include = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            r.verbose = true;
        } else if (!strcmp(a, "--http2")) {
            r.http2 = true;
        } else if (!strcmp(a, "--http2-prior-knowledge")) {
            r.prior_knowledge = true;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--fail")) {
            r.fail_on_http = true;
        } else if (!strcmp(a, "-L") || !strcmp(a, "--location")) {
            r.follow = true;
        } else if (!strcmp(a, "--location-trusted")) {
            r.follow = r.location_trusted = true;
        } else if (!strcmp(a, "--allow-downgrade-redirect")) {
            r.allow_downgrade = true;
        } else if (!strcmp(a, "-k") || !strcmp(a, "--insecure")) {
            cc.insecure = r.insecure = true;
        } else if (!strcmp(a, "--ocsp")) {
            cc.ocsp = r.ocsp = true;
        } else if (!strcmp(a, "--tlsv1.2")) {
            cc.tls_min = cc.tls_max = TL_TLS1_2;
        } else if (!strcmp(a, "--tlsv1.3")) {
            cc.tls_min = cc.tls_max = TL_TLS1_3;
        } else if (!strcmp(a, "-X") || !strcmp(a, "--request")) {
            if (!(r.method = VALUE()) || !*r.method || strpbrk(r.method, " \r\n\t"))
                return usage_error("%s needs a method name", a);
        } else if (!strcmp(a, "-H") || !strcmp(a, "--header")) {
            if (tool_add_header(r.headers, sizeof r.headers, &hl, VALUE()) != 0)
                return usage_error("%s needs 'Name: value' (and room for it)", a);
        } else if (!strcmp(a, "--cacert")) {
            if (!(cc.ca_file = VALUE()))
                return usage_error("--cacert needs a file");
        } else if (!strcmp(a, "--resolve")) {
            if (!(v = VALUE()) || nres == sizeof resolves / sizeof resolves[0])
                return usage_error("--resolve needs host:port:address");
            resolves[nres++] = v;
        } else if (!strcmp(a, "--tls-kdf")) {
            if (tl_kdf_parse(VALUE(), &cc.kdf) != 0)
                return usage_error("--tls-kdf needs openssl or tlsloop");
        } else if (!strcmp(a, "--io")) {
            if (tl_io_backend_parse(VALUE(), &io) != 0)
                return usage_error("--io needs epoll, uring or auto");
        } else if (!strcmp(a, "--timeout")) {
            uint64_t ms;
            if (!(v = VALUE()) || tl_server_parse_duration(v, &ms) != 0 || ms == 0)
                return usage_error("--timeout needs a duration such as 10s or 500ms");
            r.timeout_ms = (uint32_t)ms;
        } else if (!strcmp(a, "--repeat") || !strcmp(a, "--max-redirs")) {
            char *e;
            bool rep = !strcmp(a, "--repeat");
            v = VALUE();
            unsigned long n = v ? strtoul(v, &e, 10) : 0;
            if (!v || !isdigit((unsigned char)*v) || *e || n > 100000 || (rep && n == 0))
                return usage_error("%s needs a number%s", a, rep ? " from 1" : "");
            *(rep ? &r.repeat : &r.max_redirs) = (unsigned)n;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option %s", argv[i]);
        } else if (url_arg) {
            return usage_error("one URL at a time (%s and %s)", url_arg, a);
        } else {
            url_arg = a;
        }
#undef VALUE
    }
    if (!url_arg)
        return usage_error("no URL");
    char err[512];
    if (parse_url(url_arg, &r.start, err, sizeof err) != 0)
        return usage_error("%s", err);
    r.start_method = r.method;
    /* With both, --http2 (h2 or http/1.1 by ALPN) rules over TLS; prior knowledge over plain. */
    if (r.http2)
        cc.alpn = "h2,http/1.1";
    else if (r.prior_knowledge)
        cc.alpn = "h2";
    if (cc.insecure)
        fprintf(stderr, "tlsloop get: WARNING: --insecure: the server's certificate and name are "
                        "NOT verified; anyone in the path can read and change this exchange\n");
    /* --timeout is one deadline for the whole fetch (start_fetch); closing has its own bound. */
    cc.connect_timeout_ms = cc.handshake_timeout_ms = r.timeout_ms;
    cc.close_timeout_ms = SERVER_CLOSE_WAIT_MS;
    const char *no_kdf = cc.kdf ? tl_kdf_unavailable(cc.kdf) : NULL;
    if (no_kdf)
        fprintf(stderr, "tlsloop get: --tls-kdf tlsloop: %s\n", no_kdf);
    if (!(r.cl = tl_client_new(&cc, err, sizeof err))) {
        fprintf(stderr, "tlsloop get: %s%s\n", cc.ca_file ? "--cacert: " : "", err);
        return cc.ca_file ? GET_USAGE : GET_FAILED;
    }
    for (size_t i = 0; i < nres; i++) {
        /* host:port:address, the address may be [v6]. */
        const char *s = resolves[i], *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        char host[256], *e;
        unsigned long port = c2 ? strtoul(c1 + 1, &e, 10) : 0;
        if (!c1 || !c2 || (size_t)(c1 - s) >= sizeof host || c1 == s || e != c2 || port == 0 ||
            port > 65535) {
            tl_client_free(r.cl);
            return usage_error("--resolve %s: expected host:port:address", s);
        }
        memcpy(host, s, (size_t)(c1 - s));
        host[c1 - s] = 0;
        if (tl_client_add_override(r.cl, host, (uint16_t)port, c2 + 1, err, sizeof err) != 0) {
            tl_client_free(r.cl);
            return usage_error("--resolve %s: %s", s, err);
        }
    }
    if (r.out_path && !(r.out = fopen(r.out_path, "wb"))) {
        fprintf(stderr, "tlsloop get: -o %s: %s\n", r.out_path, strerror(errno));
        tl_client_free(r.cl);
        return GET_FAILED;
    }
    if (!(r.loop = tl_loop_new_ex(&(tl_loop_opts){.io = io}, err, sizeof err))) {
        fprintf(stderr, "tlsloop get: %s\n", err);
        tl_client_free(r.cl);
        return GET_FAILED;
    }
    if (*tl_loop_backend_note(r.loop) && io != TL_IO_AUTO)
        fprintf(stderr, "tlsloop get: --io: %s\n", tl_loop_backend_note(r.loop));
    if (r.verbose)
        fprintf(stderr, "* io: %s\n", tl_loop_backend(r.loop));
    tl_timer_init(&r.close_timer, on_close_timer, &r);
    tl_timer_init(&r.guard, on_guard, &r);
    start_fetch(&r, false);
    tl_loop_run(r.loop);
    tl_timer_stop(r.loop, &r.close_timer);
    tl_timer_stop(r.loop, &r.guard);
    tl_loop_free(r.loop);
    tl_client_free(r.cl);
    if (r.out != stdout && fclose(r.out) != 0 && !r.exit_code)
        finish(&r, GET_FAILED, "writing %s: %s", r.out_path, strerror(errno));
    else if (r.out == stdout && fflush(stdout) != 0 && !r.exit_code)
        finish(&r, GET_FAILED, "writing the output: %s", strerror(errno));
    if (r.repeat > 1)
        fprintf(stderr, "tlsloop get: %u fetches, %u resumed\n", r.done_fetches, r.resumed);
    if (r.exit_code)
        fprintf(stderr, "tlsloop get: %s\n", r.why);
    return r.exit_code;
}
