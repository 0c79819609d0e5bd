/*
 * test_engine_transport.c - the engine in transport mode: over a socketpair, and over mock
 * transports that move one byte at a time, block, or fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tls/engine_int.h"
#include "support/tls_pair.h"
#include "test.h"

/* ---- a socket transport ---- */

static ssize_t sock_recv(void *arg, void *buf, size_t len)
{
    ssize_t n = recv(*(int *)arg, buf, len, 0);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TL_IO_AGAIN : TL_IO_ERROR;
}

static int counted_sends;   /* send calls, either side */

static ssize_t sock_send(void *arg, const void *buf, size_t len)
{
    counted_sends++;
    ssize_t n = send(*(int *)arg, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TL_IO_AGAIN : TL_IO_ERROR;
}

typedef struct side {
    int fd;
    tl_transport tp;
    tl_engine *e;
} side;

static void sides(side *c, side *s, tl_tls_ctx *cctx, tl_tls_ctx *sctx, int sndbuf)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    if (sndbuf) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    c->fd = sv[0];
    s->fd = sv[1];
    c->tp = (tl_transport){sock_recv, sock_send, &c->fd};
    s->tp = (tl_transport){sock_recv, sock_send, &s->fd};
    tl_engine_opts co = {.server_name = "localhost", .transport = &c->tp};
    tl_engine_opts so = {.transport = &s->tp, .flags = TL_ENGINE_HOLD_LAST_FLIGHT};
    c->e = tl_engine_new(cctx, &co);
    s->e = tl_engine_new(sctx, &so);
    REQUIRE(c->e && s->e);
}

static void close_sides(side *c, side *s)
{
    tl_engine_free(c->e);
    tl_engine_free(s->e);
    if (c->fd >= 0)
        close(c->fd);
    if (s->fd >= 0)
        close(s->fd);
}

static int handshake(side *c, side *s)
{
    for (int i = 0; i < 50; i++) {
        tl_result a = tl_engine_handshake(c->e), b = tl_engine_handshake(s->e);
        if (a.status == TL_ERROR || b.status == TL_ERROR)
            return -1;
        if (tl_engine_handshake_done(c->e) && tl_engine_handshake_done(s->e) &&
            tl_engine_pending_output(c->e) == 0 && tl_engine_pending_output(s->e) == 0)
            return 0;
    }
    return -1;
}

TEST(socketpair_handshake_and_echo)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    REQUIRE(handshake(&c, &s) == 0);
    tl_result r = tl_engine_write(c.e, "hello", 5);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.consumed, 5);
    char buf[100];
    r = tl_engine_read(s.e, buf, sizeof buf);
    CHECK_EQ_INT(r.produced, 5);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT); /* it read until the socket was empty */
    CHECK(memcmp(buf, "hello", 5) == 0);
    r = tl_engine_read(s.e, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.produced, 0);
    /* The client's first read after the handshake takes the server's tickets: no data. */
    r = tl_engine_read(c.e, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    CHECK_EQ_INT(r.produced, 0);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A small socket buffer and a big write: the engine keeps at most one record pending, the writer
 * waits for writability (WANT_OUTPUT), and every byte arrives in order (pitfall 5). */
TEST(socketpair_backpressure_bulk)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 4096);
    REQUIRE(handshake(&c, &s) == 0);
    size_t total = 4u << 20, sent = 0, got = 0;
    uint8_t *data = malloc(total), *recvd = malloc(total);
    tp_pattern(data, total, 11);
    size_t max_pending = 0;
    int want_output = 0;
    for (int guard = 0; guard < 1000000 && got < total; guard++) {
        if (sent < total || tl_engine_pending_output(s.e)) {
            tl_result r = sent < total ? tl_engine_write(s.e, data + sent, total - sent)
                                       : tl_engine_flush(s.e);
            sent += r.consumed;
            if (r.status == TL_WANT_OUTPUT)
                want_output++;
            REQUIRE(r.status == TL_OK || r.status == TL_WANT_OUTPUT);
            if (tl_engine_pending_output(s.e) > max_pending)
                max_pending = tl_engine_pending_output(s.e);
        }
        /* A slow reader: at most 3000 bytes per turn. */
        tl_result r = tl_engine_read(c.e, recvd + got, total - got < 3000 ? total - got : 3000);
        got += r.produced;
        REQUIRE(r.status != TL_ERROR);
    }
    CHECK_EQ_INT(got, total);
    CHECK(memcmp(data, recvd, total) == 0);
    CHECK(want_output > 0);
    CHECK(max_pending > 0 && max_pending <= TLI_GATHER_MAX);   /* the records of one send */
    fprintf(stderr, "  WANT_OUTPUT %d times, most pending %zu bytes\n", want_output, max_pending);
    free(data);
    free(recvd);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* EOF after close_notify is a clean close; EOF without it is truncation. */
static void eof_case(bool send_close_notify, tl_status want)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    REQUIRE(handshake(&c, &s) == 0);
    static uint8_t data[1024];
    tp_pattern(data, sizeof data, 1);
    REQUIRE(tl_engine_write(c.e, data, sizeof data).consumed == sizeof data);
    if (send_close_notify)
        CHECK_EQ_INT(tl_engine_close(c.e).status, TL_OK);
    shutdown(c.fd, SHUT_WR);
    uint8_t buf[2048];
    size_t got = 0;
    tl_result r;
    do {
        r = tl_engine_read(s.e, buf + got, sizeof buf - got);
        got += r.produced;
    } while (r.status == TL_OK);
    CHECK_EQ_INT(got, sizeof data);
    CHECK(memcmp(buf, data, sizeof data) == 0);
    CHECK_EQ_INT(r.status, want);
    CHECK_EQ_INT(tl_engine_error_kind(s.e), TL_ERR_NONE);
    /* The server may still answer on the half-open connection (TLS 1.3). */
    r = tl_engine_write(s.e, "bye", 3);
    CHECK_EQ_INT(r.status, TL_OK);
    r = tl_engine_close(s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    r = tl_engine_read(c.e, buf, sizeof buf);
    CHECK_EQ_INT(r.produced, 3);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(socketpair_eof_with_close_notify) { eof_case(true, TL_CLOSED); }
TEST(socketpair_eof_without_close_notify) { eof_case(false, TL_TRUNCATED); }

/* ---- the last write ---- */

/* A 64 KiB write: gathered into one send on a socket; on a queued transport (which gathers
 * itself, TL_TRANSPORT_QUEUED) each of its four records is handed over as made. Both arrive. */
static void write_64k_case(unsigned tp_flags, int want_sends)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    REQUIRE(handshake(&c, &s) == 0);
    char tmp[256];
    tl_engine_read(c.e, tmp, sizeof tmp);   /* TLS 1.3 tickets */
    tl_engine_set_transport_flags(s.e, tp_flags);
    enum { LEN = 65536 };
    static uint8_t out[LEN], in[LEN];
    for (size_t i = 0; i < LEN; i++)
        out[i] = (uint8_t)(i * 7 + 3);
    counted_sends = 0;
    tl_result r = tl_engine_write(s.e, out, LEN);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.consumed, LEN);
    CHECK_EQ_INT(counted_sends, want_sends);
    size_t got = 0;
    for (int i = 0; i < 100 && got < LEN; i++) {
        tl_result q = tl_engine_read(c.e, in + got, LEN - got);
        got += q.produced;
    }
    CHECK(got == LEN && memcmp(in, out, LEN) == 0);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(large_write_gathered_on_a_socket) { write_64k_case(0, 1); }
TEST(large_write_record_by_record_when_queued) { write_64k_case(TL_TRANSPORT_QUEUED, 4); }

/* tl_engine_write_close: the answer and close_notify in one send; the peer reads the answer,
 * then a clean close. With a full socket, close_notify waits until the rest is written. */
static void write_close_case(int version)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, version, version), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    REQUIRE(handshake(&c, &s) == 0);
    char buf[256];
    tl_engine_read(c.e, buf, sizeof buf);   /* TLS 1.3 tickets */
    counted_sends = 0;
    tl_result r = tl_engine_write_close(s.e, "the answer", 10);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(r.consumed, 10);
    CHECK_EQ_INT(counted_sends, 1);
    CHECK(tl_engine_close_sent(s.e));
    CHECK_EQ_INT(tl_engine_close(s.e).status, TL_OK);   /* already queued: nothing more */
    CHECK_EQ_INT(counted_sends, 1);
    size_t got = 0;
    do {
        r = tl_engine_read(c.e, buf + got, sizeof buf - got);
        got += r.produced;
    } while (r.status == TL_OK);
    CHECK_EQ_INT(got, 10);
    CHECK(memcmp(buf, "the answer", 10) == 0);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    close_sides(&c, &s);

    /* A write the socket cannot take: no close_notify yet, the rest goes as usual. */
    sides(&c, &s, cctx, sctx, 4096);
    REQUIRE(handshake(&c, &s) == 0);
    size_t total = 1u << 20, sent = 0;
    uint8_t *data = malloc(total), *recvd = malloc(total);
    tp_pattern(data, total, 5);
    r = tl_engine_write_close(s.e, data, total);
    sent = r.consumed;
    CHECK(sent < total);
    CHECK(!tl_engine_close_sent(s.e));
    got = 0;
    bool closed = false;
    for (int guard = 0; guard < 1000000 && r.status != TL_CLOSED; guard++) {
        if (sent < total) {
            r = tl_engine_write(s.e, data + sent, total - sent);
            sent += r.consumed;
        } else if (!closed) {
            closed = true;
            tl_engine_close(s.e);
        } else {
            tl_engine_flush(s.e);
        }
        r = tl_engine_read(c.e, recvd + got, total - got);
        got += r.produced;
        REQUIRE(r.status != TL_ERROR);
    }
    CHECK_EQ_INT(got, total);
    CHECK(memcmp(data, recvd, total) == 0);
    CHECK_EQ_INT(r.status, TL_CLOSED);
    free(data);
    free(recvd);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(write_close_one_send_tls13) { write_close_case(TL_TLS1_3); }
TEST(write_close_one_send_tls12) { write_close_case(TL_TLS1_2); }

/* ---- the handshake's last flight ---- */

/* A TLS 1.3 handshake up to the client's Finished, sent with a request behind it: what the
 * server's last handshake step then reads in one go. */
static void finished_and_request(side *c, side *s)
{
    REQUIRE(tl_engine_handshake(c->e).status == TL_WANT_INPUT);   /* ClientHello */
    REQUIRE(tl_engine_handshake(s->e).status == TL_WANT_INPUT);   /* the server's flight */
    REQUIRE(tl_engine_handshake(c->e).status == TL_OK);           /* Finished */
    REQUIRE(tl_engine_handshake_done(c->e));
    REQUIRE(tl_engine_write(c->e, "request", 7).status == TL_OK);
}

/* A TLS 1.3 client's Finished and its request arrive in one read: the server's tickets are held
 * (the handshake step sends nothing) and leave in front of the answer, in its send; with no
 * answer, tl_engine_flush sends them. The client gets the answer and a resumable session. */
static void held_flight_case(bool answer)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    finished_and_request(&c, &s);
    int before = counted_sends;
    tl_result r = tl_engine_handshake(s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK(tl_engine_handshake_done(s.e));
    CHECK(tl_engine_output_held(s.e));
    CHECK(tl_engine_pending_output(s.e) > 0);   /* the ticket */
    CHECK_EQ_INT(counted_sends, before);
    char buf[256];
    r = tl_engine_read(s.e, buf, sizeof buf);
    CHECK_EQ_INT(r.produced, 7);
    CHECK(memcmp(buf, "request", 7) == 0);
    CHECK_EQ_INT(counted_sends, before);        /* reading does not send what is held */
    r = answer ? tl_engine_write(s.e, "answer", 6) : tl_engine_flush(s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK_EQ_INT(counted_sends, before + 1);    /* tickets and answer: one send */
    CHECK(!tl_engine_output_held(s.e));
    CHECK_EQ_INT(tl_engine_pending_output(s.e), 0);
    size_t got = 0;
    for (int i = 0; i < 10; i++) {
        r = tl_engine_read(c.e, buf + got, sizeof buf - got);
        got += r.produced;
        REQUIRE(r.status != TL_ERROR);
    }
    CHECK_EQ_INT(got, answer ? 6 : 0);
    if (answer)
        CHECK(memcmp(buf, "answer", 6) == 0);
    tl_session *sess = tl_engine_get_session(c.e);
    CHECK(sess != NULL);   /* the ticket came, in front of the answer */
    tl_session_free(sess);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(held_tickets_leave_with_the_answer) { held_flight_case(true); }
TEST(held_tickets_leave_with_a_flush) { held_flight_case(false); }

/* Without TL_ENGINE_HOLD_LAST_FLIGHT nothing is held, data or not: the step sends the tickets. */
TEST(last_flight_not_held_without_the_flag)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    tl_engine_free(s.e);
    tl_engine_opts so = {.transport = &s.tp};
    REQUIRE((s.e = tl_engine_new(sctx, &so)));
    finished_and_request(&c, &s);
    int before = counted_sends;
    tl_result r = tl_engine_handshake(s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK(tl_engine_handshake_done(s.e));
    CHECK(!tl_engine_output_held(s.e));
    CHECK_EQ_INT(tl_engine_pending_output(s.e), 0);
    CHECK_EQ_INT(counted_sends, before + 1);
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Without the peer's data in the same read, the last flight is not held: it leaves at once. */
TEST(last_flight_not_held_without_data)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_3, TL_TLS1_3), *cctx = tp_client_ctx(0, 0);
    side c, s;
    sides(&c, &s, cctx, sctx, 0);
    REQUIRE(tl_engine_handshake(c.e).status == TL_WANT_INPUT);
    REQUIRE(tl_engine_handshake(s.e).status == TL_WANT_INPUT);
    REQUIRE(tl_engine_handshake(c.e).status == TL_OK);
    int before = counted_sends;
    tl_result r = tl_engine_handshake(s.e);
    CHECK_EQ_INT(r.status, TL_OK);
    CHECK(tl_engine_handshake_done(s.e));
    CHECK(!tl_engine_output_held(s.e));
    CHECK_EQ_INT(tl_engine_pending_output(s.e), 0);
    CHECK_EQ_INT(counted_sends, before + 1);    /* the ticket, sent by the step */
    close_sides(&c, &s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* ---- mock transports ---- */

typedef struct mock {
    tl_buf *in;        /* bytes to hand out */
    tl_buf *out;       /* bytes written */
    size_t step;       /* most bytes per call */
    int again_every;   /* answer AGAIN on every n-th call (0: never) */
    int calls;
    bool fail_send;    /* hard error on send */
    bool eof;          /* end of stream once `in` is empty */
    int sends;         /* send calls */
} mock;

static ssize_t mock_recv(void *arg, void *buf, size_t len)
{
    mock *m = arg;
    if (m->again_every && ++m->calls % m->again_every == 0)
        return TL_IO_AGAIN;
    if (tl_buf_len(m->in) == 0)
        return m->eof ? 0 : TL_IO_AGAIN;
    size_t n = len < m->step ? len : m->step;
    return (ssize_t)tl_buf_take(m->in, buf, n);
}

static ssize_t mock_send(void *arg, const void *buf, size_t len)
{
    mock *m = arg;
    m->sends++;
    if (m->fail_send)
        return TL_IO_ERROR;
    if (m->again_every && ++m->calls % m->again_every == 0)
        return TL_IO_AGAIN;
    size_t n = len < m->step ? len : m->step;
    tl_buf_append(m->out, buf, n);
    return (ssize_t)n;
}

/* One byte per call, and AGAIN every third call: partial sends and reads everywhere. */
TEST(mock_one_byte_transport)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tl_buf c2s = TL_BUF_INIT, s2c = TL_BUF_INIT;
    mock cm = {.in = &s2c, .out = &c2s, .step = 1, .again_every = 3};
    mock sm = {.in = &c2s, .out = &s2c, .step = 1, .again_every = 3};
    tl_transport ct = {mock_recv, mock_send, &cm}, st = {mock_recv, mock_send, &sm};
    tl_engine_opts co = {.server_name = "localhost", .transport = &ct};
    tl_engine_opts so = {.transport = &st};
    tl_engine *c = tl_engine_new(cctx, &co), *s = tl_engine_new(sctx, &so);
    int rounds = 0;
    while (!(tl_engine_handshake_done(c) && tl_engine_handshake_done(s) &&
             !tl_engine_pending_output(c) && !tl_engine_pending_output(s)) &&
           rounds++ < 100000) {
        REQUIRE(tl_engine_handshake(c).status != TL_ERROR);
        REQUIRE(tl_engine_handshake(s).status != TL_ERROR);
    }
    REQUIRE(tl_engine_handshake_done(c) && tl_engine_handshake_done(s));
    static uint8_t data[20000], got[20000];
    tp_pattern(data, sizeof data, 2);
    size_t sent = 0, have = 0;
    for (int guard = 0; guard < 1000000 && have < sizeof data; guard++) {
        tl_result r = sent < sizeof data ? tl_engine_write(c, data + sent, sizeof data - sent)
                                         : tl_engine_flush(c);
        sent += r.consumed;
        REQUIRE(r.status != TL_ERROR);
        r = tl_engine_read(s, got + have, sizeof got - have);
        have += r.produced;
        REQUIRE(r.status != TL_ERROR);
    }
    CHECK_EQ_INT(have, sizeof data);
    CHECK(memcmp(got, data, sizeof data) == 0);
    tl_engine_free(c);
    tl_engine_free(s);
    tl_buf_free(&c2s);
    tl_buf_free(&s2c);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A hard transport error is an IO error with a message; the engine then stays failed. */
TEST(mock_send_failure)
{
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    tl_buf in = TL_BUF_INIT, out = TL_BUF_INIT;
    mock m = {.in = &in, .out = &out, .step = 100000, .fail_send = true};
    tl_transport t = {mock_recv, mock_send, &m};
    tl_engine_opts o = {.server_name = "localhost", .transport = &t};
    tl_engine *c = tl_engine_new(cctx, &o);
    tl_result r = tl_engine_handshake(c);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(tl_engine_error_kind(c), TL_ERR_IO);
    CHECK(strstr(tl_engine_error(c), "transport") != NULL);
    int sends = m.sends;
    r = tl_engine_write(c, "x", 1);
    CHECK_EQ_INT(r.status, TL_ERROR);
    CHECK_EQ_INT(m.sends, sends); /* no more I/O on a failed engine */
    tl_engine_free(c);
    tl_buf_free(&in);
    tl_buf_free(&out);
    tl_tls_ctx_free(cctx);
}

/* A delegated task never touches the transport: its output waits until the owner flushes. */
TEST(task_output_stays_pending)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tl_buf c2s = TL_BUF_INIT, s2c = TL_BUF_INIT;
    mock cm = {.in = &s2c, .out = &c2s, .step = 100000};
    mock sm = {.in = &c2s, .out = &s2c, .step = 100000};
    tl_transport ct = {mock_recv, mock_send, &cm}, st = {mock_recv, mock_send, &sm};
    tl_engine_opts co = {.server_name = "localhost", .transport = &ct};
    tl_engine_opts so = {.transport = &st, .flags = TL_ENGINE_DELEGATE_TASKS};
    tl_engine *c = tl_engine_new(cctx, &co), *s = tl_engine_new(sctx, &so);
    CHECK_EQ_INT(tl_engine_handshake(c).status, TL_WANT_INPUT);
    tl_result r = tl_engine_handshake(s);
    CHECK_EQ_INT(r.status, TL_NEED_TASK);
    int sends = sm.sends;
    CHECK_EQ_INT(tl_engine_run_task(s), TL_OK);
    CHECK_EQ_INT(sm.sends, sends);
    CHECK(tl_engine_pending_output(s) > 0);
    CHECK_EQ_INT(tl_engine_flush(s).status, TL_OK);
    CHECK_EQ_INT(tl_engine_pending_output(s), 0);
    CHECK(sm.sends > sends);
    for (int i = 0; i < 10; i++) {
        tl_engine_handshake(c);
        tl_engine_handshake(s);
    }
    CHECK(tl_engine_handshake_done(c) && tl_engine_handshake_done(s));
    tl_engine_free(c);
    tl_engine_free(s);
    tl_buf_free(&c2s);
    tl_buf_free(&s2c);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(socketpair_handshake_and_echo);
    RUN(socketpair_backpressure_bulk);
    RUN(socketpair_eof_with_close_notify);
    RUN(socketpair_eof_without_close_notify);
    RUN(write_close_one_send_tls13);
    RUN(write_close_one_send_tls12);
    RUN(held_tickets_leave_with_the_answer);
    RUN(held_tickets_leave_with_a_flush);
    RUN(last_flight_not_held_without_data);
    RUN(last_flight_not_held_without_the_flag);
    RUN(large_write_gathered_on_a_socket);
    RUN(large_write_record_by_record_when_queued);
    RUN(mock_one_byte_transport);
    RUN(mock_send_failure);
    RUN(task_output_stays_pending);
    TEST_MAIN_END();
}
