/*
 * test_client.c - the client API (tlsloop/client.h) over loopback, against a small TLS server on
 * the same loop: a verified fetch, sessions reused over TLS 1.2 and 1.3, a wrong host name,
 * every address tried in turn, DNS failure, cancelling in the middle of a handshake, closing
 * with writes queued, and responses that end early or cleanly.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsloop/client.h>
#include <tlsloop/loop.h>

#include "support/tls_pair.h"
#include "test.h"

/* ---- the server: answers each request head with `answer`, then maybe aborts ---- */

typedef struct server {
    tl_loop *loop;
    int lfd;
    tl_io lio;
    uint16_t port;
    tl_tls_ctx *tls;              /* NULL: accept TCP and never speak (a silent server) */
    tl_conn_cbs cbs;
    const char *answer;
    bool abort_after;             /* end without close_notify after the answer */
    bool close_after;             /* end with close_notify after the answer */
    bool no_read;                 /* never read (a peer whose buffers fill) */
    int accepted, requests;
    int silent_fds[8];
    int nsilent;
    tl_conn *open[64];            /* the server's connections still open */
} server;

static server S;

static void s_read(tl_conn *c, const uint8_t *d, size_t n)
{
    tl_buf *b = tl_conn_data(c);
    tl_buf_append(b, d, n);
    const char *p = (const char *)tl_buf_rptr(b);
    const char *end = memmem(p, tl_buf_len(b), "\r\n\r\n", 4);
    if (!end)
        return;
    tl_buf_consume(b, (size_t)(end + 4 - p));
    S.requests++;
    tl_conn_write(c, S.answer, strlen(S.answer));
    if (S.abort_after)
        tl_conn_abort(c);
    else if (S.close_after)
        tl_conn_close(c);
}

static void s_handshake(tl_conn *c, bool ok)
{
    if (ok && S.no_read)
        tl_conn_pause_read(c);
}

static void s_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    for (int i = 0; i < 64; i++)
        if (S.open[i] == c)
            S.open[i] = NULL;
    tl_buf *b = tl_conn_data(c);
    tl_buf_free(b);
    free(b);
}

static void s_accept(tl_loop *loop, tl_io *io, unsigned ev)
{
    (void)ev;
    (void)io;
    int fd;
    while ((fd = accept4(S.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        S.accepted++;
        if (!S.tls) {
            if (S.nsilent < 8)
                S.silent_fds[S.nsilent++] = fd;   /* held open, never answered */
            else
                close(fd);
            continue;
        }
        tl_conn_opts o = {.tls = S.tls, .cbs = &S.cbs, .data = calloc(1, sizeof(tl_buf))};
        tl_conn *c = tl_conn_accept(loop, fd, &o);
        for (int i = 0; c && i < 64; i++)
            if (!S.open[i]) {
                S.open[i] = c;
                break;
            }
    }
}

static void server_start(tl_loop *loop, tl_tls_ctx *tls)
{
    memset(&S, 0, sizeof S);
    S.loop = loop;
    S.tls = tls;
    S.cbs = (tl_conn_cbs){.on_read = s_read, .on_handshake = s_handshake, .on_close = s_close};
    S.answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    REQUIRE(bind(S.lfd, (struct sockaddr *)&a, len) == 0 && listen(S.lfd, 64) == 0);
    getsockname(S.lfd, (struct sockaddr *)&a, &len);
    S.port = ntohs(a.sin_port);
    tl_io_init(&S.lio, S.lfd, s_accept, NULL);
    tl_io_set(loop, &S.lio, TL_READABLE);
}

/* End what the server still has open (a peer that left mid-handshake, one that stopped
 * reading), and let the loop free it. */
static void server_stop(void)
{
    for (int i = 0; i < 64; i++)
        if (S.open[i])
            tl_conn_abort(S.open[i]);
    for (int i = 0; i < 100; i++) {
        bool any = false;
        for (int k = 0; k < 64; k++)
            any |= S.open[k] != NULL;
        if (!any)
            break;
        tl_loop_run_once(S.loop, 10);
    }
    tl_io_stop(S.loop, &S.lio);
    close(S.lfd);
    for (int i = 0; i < S.nsilent; i++)
        close(S.silent_fds[i]);
    tl_tls_ctx_free(S.tls);
}

/* ---- the client side: one fetch, its outcome recorded ---- */

typedef struct fetch {
    tl_loop *loop;
    tl_client_error err;
    char msg[300];
    bool connected, finished, closed;
    int status;
    char body[256];
    size_t body_len;
    tl_http_result result;
    char why[300];
    tl_conn_end how;
    bool resumed;
    tl_client_http *x;
    bool close_after_head;        /* close from on_head: a read still pending */
} fetch;

static void f_head(tl_client_http *x, const tl_http_response *r, void *data)
{
    fetch *f = data;
    f->status = r->status;
    if (f->close_after_head)
        tl_client_http_close(x);
}

static void f_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    (void)x;
    fetch *f = data;
    if (f->body_len + n < sizeof f->body) {
        memcpy(f->body + f->body_len, p, n);
        f->body_len += n;
    }
}

static void f_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    fetch *f = data;
    f->finished = true;
    f->result = res;
    snprintf(f->why, sizeof f->why, "%s", why);
    tl_client_http_close(x);
}

static void f_close(tl_client_http *x, tl_conn_end how, void *data)
{
    (void)x;
    fetch *f = data;
    f->closed = true;
    f->how = how;
}

static const tl_client_http_cbs F_CBS = {f_head, f_body, f_done, f_close};
static const tl_conn_cbs NO_CBS = {0};

static void f_connect(tl_conn *c, tl_client_error err, const char *msg, void *data)
{
    fetch *f = data;
    f->err = err;
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    if (!c) {
        f->closed = true;
        return;
    }
    f->connected = true;
    tl_engine_info info;
    if (tl_conn_engine(c)) {
        tl_engine_get_info(tl_conn_engine(c), &info);
        f->resumed = info.resumed;
    }
    f->x = tl_client_http_new(c, &F_CBS, f);
    REQUIRE(f->x);
    tl_client_http_request(f->x, "GET", "/", "localhost", NULL, true, 5000);
}

static bool run_until_closed(tl_loop *loop, fetch *f, int ms)
{
    for (int i = 0; i < ms / 10 && !f->closed; i++)
        tl_loop_run_once(loop, 10);
    return f->closed;
}

static char ca_path[64];

static tl_client *new_client(int version, bool no_sessions)
{
    tl_client_config cfg = {.ca_file = ca_path, .tls_min = version, .tls_max = version,
                            .no_sessions = no_sessions, .close_timeout_ms = 500,
                            .connect_timeout_ms = 2000, .handshake_timeout_ms = 2000};
    char err[300];
    tl_client *cl = tl_client_new(&cfg, err, sizeof err);
    if (!cl)
        fprintf(stderr, "  tl_client_new: %s\n", err);
    return cl;
}

static fetch do_fetch(tl_client *cl, tl_loop *loop, const char *host, uint16_t port, bool tls)
{
    fetch f = {.loop = loop};
    tl_client_target t = {.host = host, .port = port, .tls = tls, .cbs = &NO_CBS};
    char err[200];
    REQUIRE(tl_client_connect(cl, loop, &t, f_connect, &f, err, sizeof err));
    CHECK(!f.closed);   /* never a callback inside the call */
    CHECK(run_until_closed(loop, &f, 10000));
    return f;
}

static tl_loop *new_loop(void)
{
    char err[200];
    tl_loop *l = tl_loop_new(err, sizeof err);
    REQUIRE(l);
    return l;
}

/* ---- tests ---- */

TEST(verified_fetch_and_sessions_tls13_and_tls12)
{
    int versions[] = {TL_TLS1_3, TL_TLS1_2};
    for (int v = 0; v < 2; v++) {
        tl_loop *loop = new_loop();
        server_start(loop, tp_server_ctx(&tp.ecdsa, 0, 0));
        tl_client *cl = new_client(versions[v], false);
        REQUIRE(cl);
        for (int i = 0; i < 3; i++) {
            fetch f = do_fetch(cl, loop, "localhost", S.port, true);
            CHECK_EQ_INT(f.err, TL_CLIENT_OK);
            CHECK_EQ_INT(f.status, 200);
            CHECK_EQ_INT(f.result, TL_HTTP_DONE);
            CHECK(f.body_len == 5 && !memcmp(f.body, "hello", 5));
            CHECK_EQ_INT(f.how, TL_END_CLEAN);   /* close_notify both ways */
            CHECK(f.resumed == (i > 0));          /* the session of the one before */
        }
        tl_client_stats st;
        tl_client_get_stats(cl, &st);
        CHECK_EQ_INT(st.handshakes_full, 1);
        CHECK_EQ_INT(st.handshakes_resumed, 2);
        CHECK_EQ_INT(st.sessions_offered, 2);
        tl_client_free(cl);
        /* With the cache off: full handshakes only. */
        cl = new_client(versions[v], true);
        for (int i = 0; i < 2; i++)
            CHECK(!do_fetch(cl, loop, "localhost", S.port, true).resumed);
        tl_client_free(cl);
        server_stop();
        tl_loop_free(loop);
    }
}

TEST(wrong_name_and_unknown_ca)
{
    tl_loop *loop = new_loop();
    server_start(loop, tp_server_ctx(&tp.ecdsa, 0, 0));
    tl_client *cl = new_client(0, false);
    char err[200];
    REQUIRE(tl_client_add_override(cl, "evil.test", S.port, "127.0.0.1", err, sizeof err) == 0);
    fetch f = do_fetch(cl, loop, "evil.test", S.port, true);
    CHECK_EQ_INT(f.err, TL_CLIENT_VERIFY);
    CHECK_HAS(f.msg, "certificate verify failed: hostname mismatch");
    f = do_fetch(cl, loop, "127.0.0.1", S.port, true);   /* an IP the certificate has */
    CHECK_EQ_INT(f.err, TL_CLIENT_OK);
    tl_client_free(cl);
    tl_client_config cfg = {0};   /* the system store: our test CA is not in it */
    cl = tl_client_new(&cfg, err, sizeof err);
    REQUIRE(cl);
    f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.err, TL_CLIENT_VERIFY);
    CHECK_HAS(f.msg, "unable to get local issuer certificate");
    tl_client_free(cl);
    server_stop();
    tl_loop_free(loop);
}

TEST(every_address_in_turn_and_dns)
{
    tl_loop *loop = new_loop();
    server_start(loop, tp_server_ctx(&tp.ecdsa, 0, 0));
    tl_client *cl = new_client(0, false);
    char err[200];
    /* Nothing listens on 127.0.0.2 at that port (the server is bound to 127.0.0.1 only). */
    REQUIRE(tl_client_add_override(cl, "localhost", S.port, "127.0.0.2", err, sizeof err) == 0);
    REQUIRE(tl_client_add_override(cl, "localhost", S.port, "127.0.0.1", err, sizeof err) == 0);
    fetch f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.err, TL_CLIENT_OK);
    CHECK_EQ_INT(f.status, 200);
    f = do_fetch(cl, loop, "127.0.0.2", S.port, true);   /* only the refusing one */
    CHECK_EQ_INT(f.err, TL_CLIENT_CONNECT);
    CHECK_HAS(f.msg, "Connection refused");
    f = do_fetch(cl, loop, "no-such-host.invalid", 443, true);
    CHECK_EQ_INT(f.err, TL_CLIENT_DNS);
    CHECK_HAS(f.msg, "cannot resolve no-such-host.invalid");
    tl_client_free(cl);
    server_stop();
    tl_loop_free(loop);
}

TEST(cancel_in_the_middle_of_a_handshake)
{
    tl_loop *loop = new_loop();
    server_start(loop, NULL);   /* accepts, never answers the ClientHello */
    tl_client *cl = new_client(0, false);
    fetch f = {.loop = loop};
    tl_client_target t = {.host = "127.0.0.1", .port = S.port, .tls = true, .cbs = &NO_CBS};
    char err[200];
    tl_client_dial *d = tl_client_connect(cl, loop, &t, f_connect, &f, err, sizeof err);
    REQUIRE(d);
    for (int i = 0; i < 20 && S.accepted == 0; i++)
        tl_loop_run_once(loop, 10);
    CHECK_EQ_INT(S.accepted, 1);
    CHECK(!f.closed);
    uint64_t t0 = tl_loop_now(loop);
    tl_client_cancel(d);
    CHECK(run_until_closed(loop, &f, 3000));
    CHECK_EQ_INT(f.err, TL_CLIENT_CANCELLED);
    CHECK(tl_loop_now(loop) - t0 < 1500);   /* within the close deadline (500 ms) and a margin */
    /* A handshake nobody answers ends at its deadline, as a timeout. */
    f = do_fetch(cl, loop, "127.0.0.1", S.port, true);
    CHECK_EQ_INT(f.err, TL_CLIENT_TIMEOUT);
    CHECK_HAS(f.msg, "timed out");
    tl_client_free(cl);
    server_stop();
    tl_loop_free(loop);
}

TEST(target_timeout_bounds_the_whole_attempt)
{
    /* Connect and handshake may take 2 s each (4 s for a server that accepts and never answers);
     * the target's timeout_ms is one deadline for both. */
    tl_loop *loop = new_loop();
    server_start(loop, NULL);   /* accepts, never answers the ClientHello */
    tl_client *cl = new_client(0, false);
    fetch f = {.loop = loop};
    tl_client_target t = {.host = "127.0.0.1", .port = S.port, .tls = true, .cbs = &NO_CBS,
                          .timeout_ms = 300};
    char err[200];
    tl_loop_update_time(loop);
    uint64_t t0 = tl_loop_now(loop);
    REQUIRE(tl_client_connect(cl, loop, &t, f_connect, &f, err, sizeof err));
    CHECK(run_until_closed(loop, &f, 5000));
    uint64_t took = tl_loop_now(loop) - t0;
    CHECK_EQ_INT(f.err, TL_CLIENT_TIMEOUT);
    CHECK_HAS(f.msg, "TLS handshake with 127.0.0.1");
    CHECK(took >= 250 && took < 1000);
    /* A port nobody listens on still fails at once, as refused, not as a timeout. */
    uint16_t closed = S.port;
    tl_client_free(cl);
    server_stop();
    cl = new_client(0, false);
    f = (fetch){.loop = loop};
    t.port = closed;
    REQUIRE(tl_client_connect(cl, loop, &t, f_connect, &f, err, sizeof err));
    CHECK(run_until_closed(loop, &f, 5000));
    CHECK_EQ_INT(f.err, TL_CLIENT_CONNECT);
    tl_client_free(cl);
    tl_loop_free(loop);
}

TEST(responses_that_end_early_or_cleanly)
{
    tl_loop *loop = new_loop();
    server_start(loop, tp_server_ctx(&tp.ecdsa, 0, 0));
    tl_client *cl = new_client(0, false);
    /* Ten bytes promised, three sent, then the connection is cut (no close_notify). */
    S.answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    S.abort_after = true;
    fetch f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.result, TL_HTTP_TRUNCATED);
    CHECK_HAS(f.why, "after 3 of 10 bytes");
    /* A body until close, then cut: truncated too. */
    S.answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
    f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.result, TL_HTTP_TRUNCATED);
    CHECK_HAS(f.why, "without close_notify");
    /* The same ended by close_notify: complete. */
    S.abort_after = false;
    S.close_after = true;
    f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.result, TL_HTTP_DONE);
    CHECK(f.body_len == 3 && !memcmp(f.body, "abc", 3));
    CHECK_EQ_INT(f.how, TL_END_CLEAN);
    S.close_after = false;
    /* Chunked, complete. */
    S.answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    f = do_fetch(cl, loop, "localhost", S.port, true);
    CHECK_EQ_INT(f.result, TL_HTTP_DONE);
    CHECK(f.body_len == 5 && !memcmp(f.body, "abcde", 5));
    /* Closing with the response head read and the body still pending: a clean end. */
    S.answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab";
    fetch h = {.loop = loop, .close_after_head = true};
    tl_client_target t = {.host = "localhost", .port = S.port, .tls = true, .cbs = &NO_CBS};
    char err[200];
    REQUIRE(tl_client_connect(cl, loop, &t, f_connect, &h, err, sizeof err));
    CHECK(run_until_closed(loop, &h, 5000));
    CHECK_EQ_INT(h.result, TL_HTTP_CLOSED);
    tl_client_free(cl);
    server_stop();
    tl_loop_free(loop);
}

/* The server stops reading; we queue far more than the socket buffers hold, then close: the
 * close ends within its deadline and says how, instead of waiting forever for the flush. */
static bool q_closed;
static tl_conn_end q_how;
static void q_close(tl_conn *c, tl_conn_end how)
{
    (void)c;
    q_closed = true;
    q_how = how;
}
static const tl_conn_cbs Q_CBS = {.on_close = q_close};
static void q_connect(tl_conn *c, tl_client_error err, const char *msg, void *data)
{
    (void)msg;
    (void)data;
    if (!c) {
        fprintf(stderr, "  connect failed: %s\n", msg);
        q_closed = true;
        return;
    }
    CHECK_EQ_INT(err, TL_CLIENT_OK);
    /* Write until 4 MiB wait in our queue, however much the kernel's buffers take first: here
     * they took 4.19 MB of 8 MiB, which left 688 bytes less than 4 MiB queued and failed a
     * fixed count of eight writes. */
    static uint8_t block[1 << 20];
    for (int i = 0; i < 64 && tl_conn_write_queued(c) <= (4u << 20); i++)
        tl_conn_write(c, block, sizeof block);
    CHECK(tl_conn_write_queued(c) > (4u << 20));
    tl_conn_close(c);
}

TEST(close_with_writes_queued)
{
    tl_loop *loop = new_loop();
    server_start(loop, tp_server_ctx(&tp.ecdsa, 0, 0));
    S.no_read = true;
    tl_client *cl = new_client(0, false);
    tl_client_target t = {.host = "localhost", .port = S.port, .tls = true, .cbs = &Q_CBS,
                          .write_high = 16u << 20};
    char err[200];
    q_closed = false;
    REQUIRE(tl_client_connect(cl, loop, &t, q_connect, NULL, err, sizeof err));
    uint64_t t0 = tl_loop_now(loop);
    for (int i = 0; i < 500 && !q_closed; i++)
        tl_loop_run_once(loop, 10);
    CHECK(q_closed);
    CHECK(tl_loop_now(loop) - t0 < 3000);
    CHECK(q_how == TL_END_TIMEOUT || q_how == TL_END_LOCAL);
    tl_client_free(cl);
    server_stop();
    tl_loop_free(loop);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    strcpy(ca_path, "/tmp/tlsloop-client-ca-XXXXXX");
    int fd = mkstemp(ca_path);
    if (fd < 0 || write(fd, tp.ca.cert_pem, strlen(tp.ca.cert_pem)) < 0)
        return 1;
    close(fd);
    RUN(verified_fetch_and_sessions_tls13_and_tls12);
    RUN(wrong_name_and_unknown_ca);
    RUN(every_address_in_turn_and_dns);
    RUN(cancel_in_the_middle_of_a_handshake);
    RUN(target_timeout_bounds_the_whole_attempt);
    RUN(responses_that_end_early_or_cleanly);
    RUN(close_with_writes_queued);
    unlink(ca_path);
    TEST_MAIN_END();
}
