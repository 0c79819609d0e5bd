/* get.c - `tlsloop get URL`: fetch an http:// or https:// URL with HTTP/1.1 on the client API
 * (tlsloop/client.h), verifying TLS by default, and exit with a code a script can rely on. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <tlsloop/client.h>
#include <tlsloop/server.h>

#include "tools.h"

/* Exit codes (tlsloop get --help lists them). */
enum {
    GET_OK = 0,
    GET_FAILED = 1,        /* anything else: writing the output failed, out of memory */
    GET_USAGE = 2,
    GET_DNS = 3,
    GET_CONNECT = 4,
    GET_VERIFY = 5,
    GET_TLS = 6,
    GET_HTTP = 7,          /* an HTTP error status, with --fail */
    GET_TIMEOUT = 8,
    GET_TRUNCATED = 9,     /* the response is incomplete or malformed */
    GET_REDIRECTS = 10,    /* more redirects than --max-redirs */
};

void cmd_get_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop get [options] URL\n\n"
            "Fetch an http:// or https:// URL with HTTP/1.1 and write the body to stdout. TLS\n"
            "verifies the certificate chain (system store, or --cacert) and the host name.\n\n"
            "  -o, --output FILE      write the body to FILE\n"
            "  -I, --head             send HEAD and print the response headers only\n"
            "  -v, --verbose          show the request, the response headers and the TLS facts\n"
            "                         (protocol, cipher, ALPN, resumed, certificate, verification)\n"
            "  -H, --header 'N: V'    send this header too (repeat)\n"
            "  -X, --request METHOD   another method than GET\n"
            "  -f, --fail             exit 7 for an HTTP status of 400 or above (no body written)\n"
            "  -L, --location         follow redirects (at most --max-redirs, default 10)\n"
            "      --max-redirs N     redirects followed with -L\n"
            "      --cacert FILE      trust the CA certificates in FILE (PEM) instead of the system\n"
            "  -k, --insecure         DO NOT VERIFY the server's certificate or name (for tests)\n"
            "      --resolve H:P:ADDR connect to ADDR for host H and port P (repeat)\n"
            "      --timeout TIME     for connecting, the handshake, and each response (default "
            "30s)\n"
            "      --repeat N         fetch N times, each on a new connection offering the last\n"
            "                         session; prints how many were resumed (body written once)\n"
            "      --tlsv1.2, --tlsv1.3  use only this TLS version\n"
            "      --tls-kdf openssl|tlsloop  TLS key derivation and HMAC: OpenSSL's own\n"
            "                         (default) or tlsloop's faster ones\n"
            "      --help             this text\n\n"
            "Exit status: 0 success, 1 other failure (writing the output), 2 usage, 3 name not\n"
            "resolved, 4 connection refused or unreachable, 5 certificate verification failed,\n"
            "6 other TLS failure, 7 HTTP error status (with --fail), 8 timeout, 9 response\n"
            "truncated or malformed, 10 too many redirects.\n");
}

/* ---- one run ---------------------------------------------------------------------------- */

typedef struct run {
    tl_client *cl;
    tl_loop *loop;
    url u;
    const char *method;
    char headers[8192];
    bool head_only, verbose, fail_on_http, follow, insecure;
    unsigned max_redirs, redirects;
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

static void start_fetch(run *r);

static void tls_facts(run *r, tl_conn *c)
{
    tl_engine *e = tl_conn_engine(c);
    if (!e)
        return;
    tl_engine_info i;
    tl_engine_get_info(e, &i);
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

static void on_head(tl_client_http *x, const tl_http_response *resp, void *data)
{
    (void)x;
    run *r = data;
    r->status = resp->status;
    r->location[0] = 0;
    bool print = r->head_only || r->verbose;
    FILE *hf = r->head_only ? r->out : stderr;
    if (print)
        fprintf(hf, "%sHTTP/1.%d %d %.*s\r\n", r->head_only ? "" : "< ", resp->minor_version,
                resp->status, (int)resp->reason_len, resp->reason);
    for (size_t i = 0; i < resp->num_headers; i++) {
        const tl_http_header *h = &resp->headers[i];
        if (print)
            fprintf(hf, "%s%.*s: %.*s\r\n", r->head_only ? "" : "< ", (int)h->name_len, h->name,
                    (int)h->value_len, h->value);
        if (h->name_len == 8 && !strncasecmp(h->name, "location", 8) &&
            h->value_len < sizeof r->location) {
            memcpy(r->location, h->value, h->value_len);
            r->location[h->value_len] = 0;
        }
    }
    if (print)
        fprintf(hf, r->head_only ? "\r\n" : "<\n");
    bool redirect = r->follow && r->location[0] &&
                    (resp->status == 301 || resp->status == 302 || resp->status == 303 ||
                     resp->status == 307 || resp->status == 308);
    r->skip_body = redirect || (r->fail_on_http && resp->status >= 400);
}

static void on_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    (void)x;
    run *r = data;
    if (!r->write_body || r->skip_body || r->exit_code)
        return;
    if (fwrite(p, 1, n, r->out) != n) {
        finish(r, GET_FAILED, "writing %s: %s", r->out_path ? r->out_path : "the output",
               strerror(errno));
        tl_client_http_close(x);
    }
}

static void on_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    run *r = data;
    switch (res) {
    case TL_HTTP_DONE:
        break;
    case TL_HTTP_TIMED_OUT:
        finish(r, GET_TIMEOUT, "no complete response within %u ms", r->timeout_ms);
        break;
    case TL_HTTP_CLOSED:
        break;   /* we closed it (an error is already set) */
    default:
        finish(r, GET_TRUNCATED, "%s: %s", tl_http_result_name(res), why);
        break;
    }
    tl_client_http_close(x);   /* close_notify, and the peer's awaited: on_close goes on */
}

static void on_close(tl_client_http *x, tl_conn_end how, void *data)
{
    run *r = data;
    vsay(r, "* connection closed: %s%s%s\n", tl_conn_end_name(how),
         *tl_conn_error(tl_client_http_conn(x)) ? ": " : "", tl_conn_error(tl_client_http_conn(x)));
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
            finish(r, GET_REDIRECTS, "more than %u redirects", r->max_redirs);
            tl_loop_stop(r->loop);
            return;
        }
        /* An absolute URL, or a path on the same origin. */
        char err[400];
        url next;
        if (r->location[0] == '/') {
            next = r->u;
            snprintf(next.target, sizeof next.target, "%s", r->location);
        } else if (parse_url(r->location, &next, err, sizeof err) != 0) {
            finish(r, GET_TRUNCATED, "a redirect to %s", err);
            tl_loop_stop(r->loop);
            return;
        }
        vsay(r, "* following the redirect to %s\n", r->location);
        r->u = next;
        start_fetch(r);
        return;
    }
    if (++r->done_fetches < r->repeat) {
        start_fetch(r);
        return;
    }
    tl_loop_stop(r->loop);
}

static const tl_client_http_cbs HTTP_CBS = {.on_head = on_head, .on_body = on_body,
                                            .on_done = on_done, .on_close = on_close};
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
        finish(r, codes[err], "%s", msg);
        tl_loop_stop(r->loop);
        return;
    }
    vsay(r, "* connected to %s port %u\n", r->u.host, r->u.port);
    tls_facts(r, c);
    tl_client_http *x = tl_client_http_new(c, &HTTP_CBS, r);
    if (!x) {
        finish(r, GET_FAILED, "out of memory");
        tl_loop_stop(r->loop);
        return;
    }
    vsay(r, "> %s %s HTTP/1.1\n> Host: %s\n", r->method, r->u.target, r->u.authority);
    if (r->verbose)
        for (const char *p = r->headers; *p;) {
            const char *e = strstr(p, "\r\n");
            fprintf(stderr, "> %.*s\n", (int)(e - p), p);
            p = e + 2;
        }
    vsay(r, "> Connection: close\n>\n");
    if (tl_client_http_request(x, r->method, r->u.target, r->u.authority, r->headers, false,
                               r->timeout_ms) != 0) {
        finish(r, GET_FAILED, "the request could not be sent (too long?)");
        tl_client_http_close(x);
    }
}

static void start_fetch(run *r)
{
    char err[300];
    r->write_body = r->done_fetches == 0;
    r->skip_body = false;
    r->status = 0;
    tl_client_target t = {.host = r->u.host, .port = r->u.port, .tls = r->u.tls,
                          .cbs = &CONN_CBS};
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
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            r.verbose = true;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--fail")) {
            r.fail_on_http = true;
        } else if (!strcmp(a, "-L") || !strcmp(a, "--location")) {
            r.follow = true;
        } else if (!strcmp(a, "-k") || !strcmp(a, "--insecure")) {
            cc.insecure = r.insecure = true;
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
    if (parse_url(url_arg, &r.u, err, sizeof err) != 0)
        return usage_error("%s", err);
    int n = snprintf(r.headers + hl, sizeof r.headers - hl,
                     "User-Agent: tlsloop/" TL_VERSION_STRING "\r\nAccept: */*\r\n");
    if (n < 0 || (size_t)n >= sizeof r.headers - hl)
        return usage_error("too many headers");
    if (cc.insecure)
        fprintf(stderr, "tlsloop get: WARNING: --insecure: the server's certificate and name are "
                        "NOT verified; anyone in the path can read and change this exchange\n");
    cc.connect_timeout_ms = cc.handshake_timeout_ms = r.timeout_ms;
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
    if (!(r.loop = tl_loop_new(err, sizeof err))) {
        fprintf(stderr, "tlsloop get: %s\n", err);
        tl_client_free(r.cl);
        return GET_FAILED;
    }
    start_fetch(&r);
    tl_loop_run(r.loop);
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
