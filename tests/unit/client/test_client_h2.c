/*
 * test_client_h2.c - the client's HTTP/2 (tl_client_h2, tlsloop/client.h) over loopback, against
 * an HTTP/2 server on the same loop: nghttp2's server session over a plain tl_conn (h2c by prior
 * knowledge). Many requests on one connection beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS
 * (held back, never more open at once than it allows), an 8 MiB body byte for byte, a request's
 * deadline while the others on the connection go on, tl_client_h2_close with streams and a large
 * body under way (each request ends once, CLOSED), an abort from inside on_body, and a server
 * that resets a stream or sends GOAWAY.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <tlsloop/client.h>
#include <tlsloop/loop.h>

#include "test.h"

/* ---- the server: nghttp2's server session on each accepted connection ---- */

#define BIG_BODY (8u << 20)

typedef struct sstream {
    size_t size, sent;             /* the body to send */
} sstream;

typedef struct sconn {
    tl_conn *c;
    nghttp2_session *s;
    char path[64];
} sconn;

typedef struct server {
    tl_loop *loop;
    int lfd;
    tl_io lio;
    uint16_t port;
    uint32_t max_streams;          /* its SETTINGS_MAX_CONCURRENT_STREAMS */
    int open_streams, max_open_seen, requests;
    bool goaway_after_first;       /* GOAWAY (last stream = the first request's) */
    bool goaway_seen;              /* the client's GOAWAY came */
    sconn *conns[16];
} server;

static server S;

static void s_flush(sconn *sc)
{
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(sc->s, &p)) > 0)
        tl_conn_write(sc->c, p, (size_t)n);
}

static ssize_t s_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                      uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    sstream *st = src->ptr;
    size_t n = st->size - st->sent < len ? st->size - st->sent : len;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((st->sent + i) % 251);
    st->sent += n;
    if (st->sent == st->size)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int s_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                    const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    sconn *sc = ud;
    if (nl == 5 && !memcmp(name, ":path", 5) && vl < sizeof sc->path) {
        memcpy(sc->path, value, vl);
        sc->path[vl] = 0;
    }
    return 0;
}

static int s_begin(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    (void)ud;
    if (f->hd.type == NGHTTP2_HEADERS && ++S.open_streams > S.max_open_seen)
        S.max_open_seen = S.open_streams;
    return 0;
}

#define SNV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static int s_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    sconn *sc = ud;
    if (f->hd.type == NGHTTP2_GOAWAY)
        S.goaway_seen = true;
    if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    S.requests++;
    int32_t id = f->hd.stream_id;
    if (!strcmp(sc->path, "/silent"))
        return 0;   /* never answered */
    if (!strcmp(sc->path, "/reset")) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    sstream *st = calloc(1, sizeof *st);
    st->size = !strcmp(sc->path, "/big") ? BIG_BODY : 100;
    nghttp2_session_set_stream_user_data(s, id, st);
    char len[24];
    snprintf(len, sizeof len, "%zu", st->size);
    nghttp2_nv nv[] = {SNV(":status", "200"), SNV("content-length", len), SNV("x-path", sc->path)};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = s_body};
    nghttp2_submit_response(s, id, nv, 3, &prd);
    if (S.goaway_after_first && S.requests == 1)
        nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL, 0);
    return 0;
}

static int s_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    (void)ud;
    S.open_streams--;
    free(nghttp2_session_get_stream_user_data(s, id));
    return 0;
}

static void s_read(tl_conn *c, const uint8_t *p, size_t n)
{
    sconn *sc = tl_conn_data(c);
    if (nghttp2_session_mem_recv(sc->s, p, n) < 0) {
        tl_conn_close(c);
        return;
    }
    s_flush(sc);
}

static void s_drain(tl_conn *c)
{
    s_flush(tl_conn_data(c));
}

static void s_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    sconn *sc = tl_conn_data(c);
    for (int i = 0; i < 16; i++)
        if (S.conns[i] == sc)
            S.conns[i] = NULL;
    nghttp2_session_del(sc->s);   /* frees no stream data: s_stream_close is not called */
    free(sc);
}

static const tl_conn_cbs S_CBS = {.on_read = s_read, .on_drain = s_drain, .on_close = s_close};

static void s_accept(tl_loop *loop, tl_io *io, unsigned ev)
{
    (void)ev;
    (void)io;
    int fd;
    while ((fd = accept4(S.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        sconn *sc = calloc(1, sizeof *sc);
        nghttp2_session_callbacks *cb;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_header_callback(cb, s_header);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, s_begin);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, s_frame);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, s_stream_close);
        nghttp2_session_server_new(&sc->s, cb, sc);
        nghttp2_session_callbacks_del(cb);
        nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, S.max_streams}};
        nghttp2_submit_settings(sc->s, NGHTTP2_FLAG_NONE, iv, 1);
        tl_conn_opts o = {.cbs = &S_CBS, .data = sc, .write_high = 1u << 20};
        sc->c = tl_conn_accept(loop, fd, &o);
        for (int i = 0; i < 16; i++)
            if (!S.conns[i]) {
                S.conns[i] = sc;
                break;
            }
        s_flush(sc);
    }
}

static void server_start(tl_loop *loop, uint32_t max_streams)
{
    memset(&S, 0, sizeof S);
    S.loop = loop;
    S.max_streams = max_streams;
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    REQUIRE(bind(S.lfd, (struct sockaddr *)&a, len) == 0 && listen(S.lfd, 64) == 0);
    getsockname(S.lfd, (struct sockaddr *)&a, &len);
    S.port = ntohs(a.sin_port);
    tl_io_init(&S.lio, S.lfd, s_accept, NULL);
    tl_io_set(loop, &S.lio, TL_READABLE);
}

static void server_stop(void)
{
    for (int i = 0; i < 16; i++)
        if (S.conns[i])
            tl_conn_abort(S.conns[i]->c);
    for (int i = 0; i < 100; i++) {
        bool any = false;
        for (int k = 0; k < 16; k++)
            any |= S.conns[k] != NULL;
        if (!any)
            break;
        tl_loop_run_once(S.loop, 10);
    }
    tl_io_stop(S.loop, &S.lio);
    close(S.lfd);
}

/* ---- the client: one session, its requests recorded ---- */

#define MAX_REQ 64

typedef struct req {
    int status, dones;
    uint64_t got;
    bool pattern_ok;
    tl_http_result res;
    char why[300];
    char xpath[64];
} req;

typedef struct session {
    tl_client_h2 *h;
    bool closed, abort_in_body, close_after_done;
    tl_conn_end how;
    req r[MAX_REQ];
    int done;
} session;

static session C;

static void c_head(tl_client_h2 *h, const tl_http_response *resp, void *p)
{
    (void)h;
    req *r = p;
    r->status = resp->status;
    r->pattern_ok = true;
    for (size_t i = 0; i < resp->num_headers; i++)
        if (resp->headers[i].name_len == 6 && !memcmp(resp->headers[i].name, "x-path", 6))
            snprintf(r->xpath, sizeof r->xpath, "%.*s", (int)resp->headers[i].value_len,
                     resp->headers[i].value);
}

static void c_body(tl_client_h2 *h, const uint8_t *p, size_t n, void *rp)
{
    req *r = rp;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((r->got + i) % 251))
            r->pattern_ok = false;
    r->got += n;
    if (C.abort_in_body && r->got > (1u << 20)) {
        C.abort_in_body = false;
        tl_conn_abort(tl_client_h2_conn(h));
    }
}

static void c_done(tl_client_h2 *h, tl_http_result res, const char *why, void *p)
{
    req *r = p;
    r->dones++;
    r->res = res;
    snprintf(r->why, sizeof r->why, "%s", why);
    C.done++;
    if (C.close_after_done && res == TL_HTTP_DONE)
        tl_client_h2_close(h);
}

static void c_close(tl_client_h2 *h, tl_conn_end how, void *data)
{
    (void)h;
    (void)data;
    C.closed = true;
    C.how = how;
}

static const tl_client_h2_cbs C_CBS = {c_head, c_body, c_done, c_close};
static const tl_conn_cbs NO_CBS = {0};

static void c_connect(tl_conn *c, tl_client_error err, const char *msg, void *data)
{
    (void)err;
    (void)data;
    if (!c) {
        fprintf(stderr, "  connect: %s\n", msg);
        C.closed = true;
        return;
    }
    C.h = tl_client_h2_new(c, &C_CBS, NULL);
}

static tl_loop *setup(tl_client **cl, uint32_t max_streams)
{
    char err[200];
    tl_loop *loop = tl_loop_new(err, sizeof err);
    REQUIRE(loop);
    server_start(loop, max_streams);
    tl_client_config cfg = {.close_timeout_ms = 500};
    REQUIRE((*cl = tl_client_new(&cfg, err, sizeof err)));
    memset(&C, 0, sizeof C);
    tl_client_target t = {.host = "127.0.0.1", .port = S.port, .cbs = &NO_CBS};
    REQUIRE(tl_client_connect(*cl, loop, &t, c_connect, NULL, err, sizeof err));
    for (int i = 0; i < 200 && !C.h && !C.closed; i++)
        tl_loop_run_once(loop, 10);
    REQUIRE(C.h);
    /* The server's SETTINGS first: requests sent before they come may go past its limit. */
    for (int i = 0; i < 100 && tl_client_h2_max_streams(C.h) != max_streams; i++)
        tl_loop_run_once(loop, 10);
    CHECK_EQ_INT((int)tl_client_h2_max_streams(C.h), (int)max_streams);
    return loop;
}

static void run_until(tl_loop *loop, bool (*cond)(void), int ms)
{
    for (int i = 0; i < ms / 10 && !cond(); i++)
        tl_loop_run_once(loop, 10);
}

static int want_done;
static bool enough_done(void) { return C.done >= want_done; }
static bool is_closed(void) { return C.closed; }

static void teardown(tl_loop *loop, tl_client *cl)
{
    if (!C.closed && C.h)
        tl_client_h2_close(C.h);
    run_until(loop, is_closed, 3000);
    CHECK(C.closed);
    server_stop();
    tl_client_free(cl);
    tl_loop_free(loop);
}

/* ---- tests ---- */

TEST(many_requests_beyond_max_concurrent_streams)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 5);
    for (int i = 0; i < 50; i++) {
        char path[32];
        snprintf(path, sizeof path, "/r%d", i);
        CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", path, "Accept: */*\r\n", 5000,
                                   &C.r[i]) > 0);
    }
    CHECK_EQ_INT((int)tl_client_h2_in_flight(C.h), 50);
    CHECK_EQ_INT(C.done, 0);   /* never a callback inside the call */
    want_done = 50;
    run_until(loop, enough_done, 5000);
    CHECK_EQ_INT(C.done, 50);
    for (int i = 0; i < 50; i++) {
        char path[32];
        snprintf(path, sizeof path, "/r%d", i);
        CHECK(C.r[i].res == TL_HTTP_DONE && C.r[i].dones == 1 && C.r[i].status == 200);
        CHECK(C.r[i].got == 100 && C.r[i].pattern_ok);
        CHECK_STR(C.r[i].xpath, path);
    }
    CHECK_EQ_INT(S.requests, 50);
    CHECK(S.max_open_seen <= 5);   /* the rest waited in nghttp2 */
    CHECK_EQ_INT((int)tl_client_h2_max_streams(C.h), 5);
    CHECK(tl_client_h2_reusable(C.h));
    CHECK_EQ_INT((int)tl_client_h2_in_flight(C.h), 0);
    teardown(loop, cl);
}

TEST(big_body_and_a_deadline_beside_it)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/silent", NULL, 300, &C.r[0]) > 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/big", NULL, 10000, &C.r[1]) > 0);
    want_done = 2;
    run_until(loop, enough_done, 10000);
    CHECK(C.r[0].res == TL_HTTP_TIMED_OUT && C.r[0].dones == 1);
    CHECK_HAS(C.r[0].why, "waiting for the response");
    CHECK(C.r[1].res == TL_HTTP_DONE && C.r[1].got == BIG_BODY && C.r[1].pattern_ok);
    /* The connection goes on after the reset of the one that timed out. */
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/again", NULL, 5000, &C.r[2]) > 0);
    want_done = 3;
    run_until(loop, enough_done, 5000);
    CHECK(C.r[2].res == TL_HTTP_DONE && C.r[2].got == 100);
    teardown(loop, cl);
}

TEST(close_with_streams_under_way)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    for (int i = 0; i < 10; i++)
        CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", i ? "/silent" : "/big", NULL, 0,
                                   &C.r[i]) > 0);
    for (int i = 0; i < 200 && C.r[0].got < (1u << 20); i++)
        tl_loop_run_once(loop, 10);
    CHECK(C.r[0].got >= (1u << 20) && C.r[0].dones == 0);
    tl_client_h2_close(C.h);
    CHECK_EQ_INT(C.done, 10);   /* at once, each once */
    for (int i = 0; i < 10; i++)
        CHECK(C.r[i].res == TL_HTTP_CLOSED && C.r[i].dones == 1);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/", NULL, 0, &C.r[11]) < 0);
    run_until(loop, is_closed, 3000);
    CHECK(C.closed);
    CHECK_EQ_INT(C.done, 10);
    teardown(loop, cl);
}

TEST(close_from_inside_on_done_sends_goaway)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    C.close_after_done = true;   /* tl_client_h2_close from inside nghttp2's callback */
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/a", NULL, 5000, &C.r[0]) > 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/silent", NULL, 5000, &C.r[1]) > 0);
    run_until(loop, is_closed, 5000);
    CHECK(C.closed);
    CHECK(C.r[0].res == TL_HTTP_DONE && C.r[1].res == TL_HTTP_CLOSED);
    CHECK(C.r[0].dones == 1 && C.r[1].dones == 1);
    CHECK(S.goaway_seen);   /* written before the connection closed */
    teardown(loop, cl);
}

TEST(abort_from_inside_on_body)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    C.abort_in_body = true;
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/big", NULL, 5000, &C.r[0]) > 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/silent", NULL, 5000, &C.r[1]) > 0);
    run_until(loop, is_closed, 5000);
    CHECK(C.closed && C.how == TL_END_LOCAL);
    CHECK(C.r[0].res == TL_HTTP_TRUNCATED && C.r[0].dones == 1);
    CHECK_HAS(C.r[0].why, "bytes of the body");
    CHECK(C.r[1].res == TL_HTTP_CONN_FAILED && C.r[1].dones == 1);
    teardown(loop, cl);
}

TEST(reset_stream_and_goaway)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    S.goaway_after_first = true;
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/first", NULL, 5000, &C.r[0]) > 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/second", NULL, 5000, &C.r[1]) > 0);
    want_done = 2;
    run_until(loop, enough_done, 5000);
    CHECK(C.r[0].res == TL_HTTP_DONE && C.r[0].got == 100);
    /* Above the GOAWAY's last stream: refused, not processed. */
    CHECK(C.r[1].res == TL_HTTP_CONN_FAILED);
    CHECK_HAS(C.r[1].why, "refused the stream");
    CHECK_HAS(C.r[1].why, "GOAWAY");
    CHECK(!tl_client_h2_reusable(C.h));
    run_until(loop, is_closed, 3000);   /* nothing left: the session ends, the connection too */
    CHECK(C.closed);
    teardown(loop, cl);

    loop = setup(&cl, 100);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/reset", NULL, 5000, &C.r[0]) > 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/fine", NULL, 5000, &C.r[1]) > 0);
    want_done = 2;
    run_until(loop, enough_done, 5000);
    CHECK(C.r[0].res == TL_HTTP_CONN_FAILED);
    CHECK_HAS(C.r[0].why, "INTERNAL_ERROR");
    CHECK(C.r[1].res == TL_HTTP_DONE && C.r[1].got == 100);
    CHECK(tl_client_h2_reusable(C.h));
    teardown(loop, cl);
}

TEST(malformed_request_headers_refused)
{
    tl_client *cl;
    tl_loop *loop = setup(&cl, 100);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/", "No colon here\r\n", 0, &C.r[0]) < 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/", "Bad Name: x\r\n", 0, &C.r[0]) < 0);
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/", "X: a\r\nunterminated", 0,
                               &C.r[0]) < 0);
    CHECK_EQ_INT((int)tl_client_h2_in_flight(C.h), 0);
    /* Connection-specific fields are left out, the rest sent: the server answers. */
    CHECK(tl_client_h2_request(C.h, "GET", "127.0.0.1", "/ok",
                               "Connection: keep-alive\r\nTE: gzip\r\nX-A: 1\r\n", 5000,
                               &C.r[0]) > 0);
    want_done = 1;
    run_until(loop, enough_done, 5000);
    CHECK(C.r[0].res == TL_HTTP_DONE && C.r[0].status == 200);
    teardown(loop, cl);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(many_requests_beyond_max_concurrent_streams);
    RUN(big_body_and_a_deadline_beside_it);
    RUN(close_with_streams_under_way);
    RUN(close_from_inside_on_done_sends_goaway);
    RUN(abort_from_inside_on_body);
    RUN(reset_stream_and_goaway);
    RUN(malformed_request_headers_refused);
    TEST_MAIN_END();
}
