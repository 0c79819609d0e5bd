/* uv_echo.c - a TLS echo server on libuv's loop, driving tl_engine in buffer mode through the public
 * API only: the engine needs no loop of ours (handshake tasks run on libuv's thread pool).
 * Tested by tests/e2e/test_uv_echo.py; docs/engine.md ("Driving the engine from libuv") explains it.
 *
 * usage: uv_echo [--listen ADDR:PORT] [--cert FILE --key FILE | --save-cert FILE]
 *                [--high-water BYTES] [--quiet]
 * Build: cc uv_echo.c $(pkg-config --cflags --libs tlsloop libuv) */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>

#define PLAIN_CAP 65536           /* plaintext unwrapped and not yet wrapped back */
#define WBUF_CAP (65536 + 1024)   /* network bytes of one uv_write */
#define IN_MAX (256 * 1024)       /* network bytes read and not yet unwrapped */

typedef struct conn conn;
struct conn {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    uv_work_t work;
    tl_engine *eng;
    conn *prev, *next;        /* the open connections, for the stop */
    long id;
    char peer[64];
    uint8_t *in;              /* network input; libuv reads into its tail */
    size_t in_len, in_cap;
    uint8_t plain[PLAIN_CAP]; /* the echo: unwrapped, waiting to be wrapped */
    size_t plain_len;
    size_t write_pending;     /* bytes in uv_write requests not completed yet */
    unsigned long long echoed;
    unsigned tasks;
    tl_status task_status;
    bool reading, paused, eof, eof_told, task_running, abort, shutting, closing;
    const char *ending;       /* why it ends ("clean", "truncated", ...); NULL while open */
    char why[256];
};

typedef struct wbuf {
    uv_write_t req;
    conn *c;
    size_t len;
    char data[WBUF_CAP];
} wbuf;

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_signal_t sigterm, sigint;
static uv_timer_t stop_timer;
static tl_tls_ctx *tls;
static conn *conns;
static long next_id = 1;
static size_t high_water = 256 * 1024;
static bool quiet, stopping, deadline_passed;

static void pump(conn *c);

static void say(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(conn *c, const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%ld: ", c->id);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

/* ---- ending a connection ---- */

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;
    say(c, "closed (%s)%s%s, %llu bytes echoed", c->ending ? c->ending : "?", c->why[0] ? " " : "",
        c->why, c->echoed);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    tl_engine_free(c->eng);
    free(c->in);
    free(c);
}

/* Remember why the connection ends (the first reason wins); abort: close without flushing. */
static void conn_end(conn *c, const char *how, const char *why, bool abort)
{
    if (!c->ending) {
        c->ending = how;
        snprintf(c->why, sizeof c->why, "%s", why);
    }
    c->abort |= abort;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    if (!uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_closed);
}

/* Close an ended connection: after its writes (uv_shutdown waits for them), or now on abort. The
 * engine belongs to the pool while a task runs; task_done comes back here. */
static void conn_finish(conn *c)
{
    if (!c->ending || c->task_running || c->closing)
        return;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (!c->abort) {
        if (c->shutting)
            return;
        c->shutting = true;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
            return;
    }
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    wbuf *w = req->data;
    conn *c = w->c;
    c->write_pending -= w->len;
    free(w);
    if (status < 0) {
        if (!c->closing) {
            conn_end(c, "write-error", uv_strerror(status), true);
            conn_finish(c);
        }
        return;
    }
    if (c->paused && c->write_pending <= high_water / 2 && !c->ending) {
        c->paused = false;
        say(c, "resumed (%zu bytes unsent)", c->write_pending);
        pump(c);
    }
}

/* Hand w to libuv; it stays alive until on_write. */
static void submit(conn *c, wbuf *w)
{
    w->c = c;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w);
        conn_end(c, "write-error", uv_strerror(rc), true);
        return;
    }
    c->write_pending += w->len;
}

static void start_task(conn *c);

/* FINISHED comes once, from the wrap or unwrap that completed the handshake. */
static void handshake_news(conn *c, tl_result r)
{
    if (r.hs == TL_HS_FINISHED) {
        tl_engine_info info;
        tl_engine_get_info(c->eng, &info);
        say(c, "handshake %s %s, %u task(s) on the libuv pool", info.version, info.cipher,
            c->tasks);
    }
}

/* Wrap the echo (c->plain) and whatever the engine has to send (handshake flights, alerts,
 * close_notify) into buffers and write them. Returns 0 when all of it is out, 1 when a task was
 * started, -1 when the connection failed. */
static int wrap_out(conn *c)
{
    for (;;) {
        wbuf *w = malloc(sizeof *w);
        if (!w) {
            conn_end(c, "error", "out of memory for a write buffer", true);
            return -1;
        }
        w->len = 0;
        size_t off = 0;
        tl_result r;
        do { /* WANT_OUTPUT with room left: the rest of a record, then more records */
            r = tl_engine_wrap(c->eng, c->plain + off, c->plain_len - off, w->data + w->len,
                               WBUF_CAP - w->len);
            off += r.consumed;
            w->len += r.produced;
            handshake_news(c, r);
        } while (r.status == TL_WANT_OUTPUT && r.produced > 0 && w->len < WBUF_CAP);
        memmove(c->plain, c->plain + off, c->plain_len - off);
        c->plain_len -= off;
        c->echoed += off;
        if (w->len > 0)
            submit(c, w);
        else
            free(w);
        if (c->abort)
            return -1;
        switch (r.status) {
        case TL_OK:
        case TL_WANT_OUTPUT:
            if (c->plain_len > 0 || tl_engine_pending_output(c->eng) > 0)
                continue;
            return 0;
        case TL_NEED_TASK:
            start_task(c);
            return 1;
        case TL_CLOSED: /* our side is closed (TLS 1.2 after the peer's close_notify) */
            c->plain_len = 0;
            if (tl_engine_pending_output(c->eng) > 0)
                continue;
            return 0;
        case TL_ERROR:
            conn_end(c, "tls-error", tl_engine_error(c->eng), false);
            if (tl_engine_pending_output(c->eng) > 0)
                continue; /* the alert */
            return -1;
        default: /* WANT_INPUT: the handshake waits for the peer */
            return 0;
        }
    }
}

/* ---- delegated tasks on libuv's pool ---- */

static void task_work(uv_work_t *req)
{
    conn *c = req->data; /* the engine is the pool thread's until task_done */
    c->task_status = tl_engine_run_task(c->eng);
}

static void stop_conn(conn *c);

static void task_done(uv_work_t *req, int status)
{
    conn *c = req->data;
    c->task_running = false;
    c->tasks++;
    if (status < 0)
        conn_end(c, "error", uv_strerror(status), true);
    else if (c->task_status == TL_ERROR)
        conn_end(c, "tls-error", tl_engine_error(c->eng), false);
    if (stopping && !c->ending)
        stop_conn(c);
    if (deadline_passed)
        c->abort = true;
    if (c->abort)
        conn_finish(c);
    else
        pump(c); /* the task's output, then on with the handshake (or the end) */
}

static void start_task(conn *c)
{
    c->task_running = true;
    c->work.data = c;
    int rc = uv_queue_work(loop, &c->work, task_work, task_done);
    if (rc != 0) {
        c->task_running = false;
        conn_end(c, "error", uv_strerror(rc), true);
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Read while the connection is open, its peer takes our echo, and its input fits. */
static void update_reading(conn *c)
{
    bool want = !c->ending && !c->eof && !c->paused && c->in_len < IN_MAX;
    if (want && !c->reading)
        c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
    else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Unwrap what has arrived and echo it, until the engine needs the network, a task, or the peer
 * to read (backpressure: past high_water unsent bytes, wait for on_write). */
static void pump(conn *c)
{
    while (!c->task_running && !c->closing) {
        if (c->plain_len > 0 || tl_engine_pending_output(c->eng) > 0) {
            if (wrap_out(c) != 0)
                break;
        }
        if (c->ending)
            break;
        if (c->write_pending > high_water) {
            if (!c->paused) {
                c->paused = true;
                say(c, "paused (%zu bytes unsent)", c->write_pending);
            }
            break;
        }
        if (c->eof && !c->eof_told) {
            tl_engine_set_input_eof(c->eng);
            c->eof_told = true;
        }
        tl_result r = tl_engine_unwrap(c->eng, c->in, c->in_len, c->plain + c->plain_len,
                                       PLAIN_CAP - c->plain_len);
        memmove(c->in, c->in + r.consumed, c->in_len - r.consumed);
        c->in_len -= r.consumed;
        c->plain_len += r.produced;
        handshake_news(c, r);
        switch (r.status) {
        case TL_OK:          /* our buffer is full: echo it, then go on */
        case TL_WANT_OUTPUT: /* output pending: wrap it first */
            continue;
        case TL_WANT_INPUT:
            if (c->plain_len > 0 || tl_engine_pending_output(c->eng) > 0)
                continue;
            goto out; /* wait for the network */
        case TL_NEED_TASK:
            start_task(c);
            goto out;
        case TL_CLOSED: /* the peer's close_notify: echo the rest, answer with ours */
            if (wrap_out(c) != 0)
                goto out;
            tl_engine_close(c->eng);
            conn_end(c, "clean", "", false);
            continue;
        case TL_TRUNCATED:
            conn_end(c, "truncated", "the peer closed TCP without close_notify", false);
            continue;
        default:
            conn_end(c, "tls-error", tl_engine_error(c->eng), false);
            continue; /* the alert goes out first */
        }
    }
out:
    update_reading(c);
    conn_finish(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    if (c->in_cap - c->in_len < suggested) {
        uint8_t *p = realloc(c->in, c->in_len + suggested);
        if (!p) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->in = p;
        c->in_cap = c->in_len + suggested;
    }
    *buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    (void)buf; /* it is the tail of c->in */
    if (nread > 0)
        c->in_len += (size_t)nread;
    else if (nread == UV_EOF)
        c->eof = true; /* told to the engine in pump: a task may own it now */
    else if (nread < 0)
        conn_end(c, nread == UV_ECONNRESET ? "reset" : "read-error", uv_strerror((int)nread), true);
    if (c->abort)
        conn_finish(c);
    else
        pump(c);
}

/* ---- accepting and stopping ---- */

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "uv_echo: accept: %s\n", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        fprintf(stderr, "uv_echo: out of memory for a connection\n");
        return;
    }
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->id = next_id++;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_end(c, "error", "accept failed", true);
        conn_finish(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char host[48] = "?";
    unsigned port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%u", host, port);
    tl_engine_opts opts = {.flags = TL_ENGINE_DELEGATE_TASKS};
    c->eng = tl_engine_new(tls, &opts);
    if (!c->eng) {
        conn_end(c, "error", "out of memory for a TLS engine", true);
        conn_finish(c);
        return;
    }
    say(c, "open %s", c->peer);
    update_reading(c);
}

/* Our close_notify, then the FIN once the writes are out. */
static void stop_conn(conn *c)
{
    if (c->ending || c->task_running)
        return; /* ending already, or task_done comes back here */
    tl_engine_close(c->eng);
    conn_end(c, "stopped", "", false);
    wrap_out(c);
    conn_finish(c);
}

static void on_stop_deadline(uv_timer_t *t)
{
    deadline_passed = true;
    for (conn *c = conns; c; c = c->next) {
        conn_end(c, "stopped", "the peer did not take our last writes in time", true);
        conn_finish(c);
    }
    uv_close((uv_handle_t *)t, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (stopping)
        return;
    stopping = true;
    if (!quiet) {
        printf("stopping on %s\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
        fflush(stdout);
    }
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_timer_init(loop, &stop_timer);
    uv_timer_start(&stop_timer, on_stop_deadline, 5000, 0);
    uv_unref((uv_handle_t *)&stop_timer); /* the loop ends without it once the connections are gone */
    for (conn *c = conns, *next; c; c = next) {
        next = c->next;
        stop_conn(c);
    }
}

/* ---- set-up ---- */

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: uv_echo [--listen ADDR:PORT] [--cert FILE --key FILE | --save-cert FILE]\n"
               "               [--high-water BYTES] [--quiet]\n"
               "  --listen ADDR:PORT   where to listen (default 127.0.0.1:8443; port 0: any free "
               "port;\n"
               "                       IPv6 as [::1]:PORT); prints \"listening on ADDR:PORT\"\n"
               "  --cert, --key FILE   the certificate chain and key (PEM); without them a "
               "self-signed\n"
               "                       certificate for localhost, 127.0.0.1 and ::1 is made\n"
               "  --save-cert FILE     write that self-signed certificate to FILE (for clients)\n"
               "  --high-water BYTES   stop reading a connection while this much of its echo "
               "is unsent\n"
               "                       (default 262144); read again below half of it\n"
               "  --quiet              no line per connection event\n"
               "SIGTERM or SIGINT stops: every connection gets our close_notify.\n");
    return rc;
}

static int parse_listen(const char *s, struct sockaddr_storage *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']')
            return -1;
        host[n - 1] = 0;
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)sa) == 0 ? 0 : -1;
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0 ? 0 : -1;
}

/* The server's TLS configuration: the given certificate, or a self-signed one made now. */
static tl_tls_ctx *make_tls(const char *cert, const char *key, const char *save_cert)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_SERVER);
    if (!ctx) {
        fprintf(stderr, "uv_echo: out of memory for the TLS configuration\n");
        return NULL;
    }
    if (cert) {
        if (tl_tls_ctx_use_cert_file(ctx, cert, key) != 0) {
            fprintf(stderr, "uv_echo: %s\n", tl_tls_ctx_error(ctx));
            tl_tls_ctx_free(ctx);
            return NULL;
        }
        return ctx;
    }
    static const char *const dns[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.1", "::1"};
    tl_certgen_spec spec = {.dns_names = dns, .n_dns = 1, .ip_addrs = ips, .n_ip = 2,
                            .not_before = -3600, .not_after = 30 * 86400};
    tl_certgen_pair pair = {0};
    char err[256];
    int rc = tl_certgen_issue(&spec, NULL, &pair, err, sizeof err);
    if (rc == 0 && save_cert)
        rc = tl_certgen_write(&pair, save_cert, NULL, err, sizeof err);
    if (rc == 0 && tl_tls_ctx_use_cert_pem(ctx, pair.cert_pem, pair.key_pem) != 0) {
        snprintf(err, sizeof err, "%s", tl_tls_ctx_error(ctx));
        rc = -1;
    }
    tl_certgen_pair_free(&pair);
    if (rc != 0) {
        fprintf(stderr, "uv_echo: the self-signed certificate: %s\n", err);
        tl_tls_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:8443", *cert = NULL, *key = NULL, *save_cert = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--help"))
            return usage(stdout, 0);
        if (!strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (strcmp(a, "--listen") && strcmp(a, "--cert") && strcmp(a, "--key") &&
            strcmp(a, "--save-cert") && strcmp(a, "--high-water")) {
            fprintf(stderr, "uv_echo: unknown option %s (uv_echo --help lists them)\n", a);
            return 2;
        }
        if (!has_value) {
            fprintf(stderr, "uv_echo: %s needs a value (uv_echo --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--listen"))
            listen_at = v;
        else if (!strcmp(a, "--cert"))
            cert = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--save-cert"))
            save_cert = v;
        else {
            char *end;
            unsigned long long n = strtoull(v, &end, 10);
            if (!*v || *end || n < 1024 || n > (1ull << 30)) {
                fprintf(stderr, "uv_echo: --high-water %s: give a byte count from 1024 to "
                                "1073741824\n", v);
                return 2;
            }
            high_water = (size_t)n;
        }
    }
    if (!cert != !key) {
        fprintf(stderr, "uv_echo: --cert and --key go together (or give neither for a "
                        "self-signed certificate)\n");
        return 2;
    }
    if (cert && save_cert) {
        fprintf(stderr, "uv_echo: --save-cert writes the self-signed certificate; with --cert "
                        "there is none\n");
        return 2;
    }
    struct sockaddr_storage sa;
    if (parse_listen(listen_at, &sa) != 0) {
        fprintf(stderr, "uv_echo: --listen %s: give ADDR:PORT, e.g. 127.0.0.1:8443 or "
                        "[::1]:0\n", listen_at);
        return 2;
    }
    tls = make_tls(cert, key, save_cert);
    if (!tls)
        return 1;

    loop = uv_default_loop();
    uv_tcp_init(loop, &listener);
    int rc = uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&listener, 511, on_connection);
    if (rc != 0) {
        fprintf(stderr, "uv_echo: cannot listen on %s: %s\n", listen_at, uv_strerror(rc));
        tl_tls_ctx_free(tls);
        return 1;
    }
    int len = sizeof sa;
    char host[48] = "?";
    uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &len);
    if (sa.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof host);
        printf("listening on [%s]:%u\n", host, ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof host);
        printf("listening on %s:%u\n", host, ntohs(((struct sockaddr_in *)&sa)->sin_port));
    }
    fflush(stdout);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);

    uv_run(loop, UV_RUN_DEFAULT);
    if (stopping && !uv_is_closing((uv_handle_t *)&stop_timer)) {
        uv_close((uv_handle_t *)&stop_timer, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    rc = uv_loop_close(loop);
    tl_tls_ctx_free(tls);
    if (rc != 0) {
        fprintf(stderr, "uv_echo: the loop still had handles at exit: %s\n", uv_strerror(rc));
        return 1;
    }
    if (!quiet)
        printf("stopped after %ld connection(s)\n", next_id - 1);
    return 0;
}
