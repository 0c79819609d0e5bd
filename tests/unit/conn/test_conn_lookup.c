/*
 * test_conn_lookup.c - the owner's session lookup on real loopback connections (tl_conn_owner's
 * session_lookup, tl_conn_session_found; tlsloop/conn.h): the server's handshake waits, doing no
 * I/O, while the owner looks a TLS 1.2 session ID up asynchronously (a timer here, memcached in
 * the server), resumes with what it found or goes on in full without; an owner that says "not
 * now"; a connection aborted or past its deadline while it waits (harness: support/conn_world.h).
 */
#include <string.h>

#include <openssl/ssl.h>

#include "conn/conn_int.h"
#include "support/conn_world.h"
#include "support/tls_pair.h"
#include "test.h"

/* What the owner does, and what it saw. */
static struct {
    bool start;                  /* start a lookup (else: "not now") */
    uint32_t answer_after_ms;    /* then answer after this long */
    const uint8_t *der;          /* with this (NULL: nothing found) */
    size_t der_len;
    unsigned char *stored;       /* the DER of the server's new session, for the next world */
    size_t stored_len;
    /* From here on, zeroed before each connection. */
    int asked, answered, handshakes_ok, handshakes_failed, closes;
    int found_rc;
    tl_conn *waiting;
    tl_timer timer;
    uint64_t asked_ms, answered_ms;
} own;

static void answer(tl_loop *loop, tl_timer *t)
{
    (void)t;
    own.answered++;
    own.answered_ms = tl_loop_now(loop);
    tl_conn *c = own.waiting;
    own.waiting = NULL;
    own.found_rc = tl_conn_session_found(c, own.der, own.der_len);
}

static bool lookup(tl_conn *c, const uint8_t *id, size_t len, void *data)
{
    (void)data;
    (void)id;
    own.asked++;
    CHECK(len == 32);
    if (!own.start)
        return false;
    own.waiting = c;
    own.asked_ms = tl_loop_now(tl_conn_loop(c));
    tl_timer_init(&own.timer, answer, NULL);
    tl_timer_start(tl_conn_loop(c), &own.timer, own.answer_after_ms);
    return true;
}

static void on_handshake(tl_conn *c, bool ok, void *data)
{
    (void)data;
    if (!ok) {
        own.handshakes_failed++;
        return;
    }
    own.handshakes_ok++;
    tl_session *s = tl_engine_take_new_session(tl_conn_engine(c));
    if (s) {
        free(own.stored);
        int n = i2d_SSL_SESSION(s, NULL);
        own.stored = malloc((size_t)n);
        unsigned char *p = own.stored;
        own.stored_len = (size_t)i2d_SSL_SESSION(s, &p);
        tl_session_free(s);
    }
}

static void on_close(tl_conn *c, tl_conn_end how, void *data)
{
    (void)c;
    (void)how;
    (void)data;
    own.closes++;
}

static const tl_conn_owner OWNER = {
    .on_handshake = on_handshake, .on_close = on_close, .session_lookup = lookup};

static tl_tls_ctx *server12(void)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    REQUIRE(s && tl_tls_ctx_set_tickets(s, false) == 0);
    return s;
}

static tl_tls_ctx *client12(void)
{
    tl_tls_ctx *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    REQUIRE(c && tl_tls_ctx_set_tickets(c, false) == 0);
    return c;
}

static cw_world *world(tl_tls_ctx *sctx, tl_tls_ctx *cctx, tl_session *offer)
{
    cw_world *w = cw_new(sctx, cctx);
    REQUIRE(w);
    w->sopts.owner = &OWNER;
    w->copts.session = offer;
    w->echo = true;
    return w;
}

static unsigned char *first_der;
static size_t first_der_len;

/* A first connection on its own configuration: the client's session and the server's DER. */
static tl_session *first_session(tl_tls_ctx *cctx)
{
    tl_tls_ctx *a = server12();
    cw_world *w = world(a, cctx, NULL);
    tl_conn *c = cw_connect(w);
    REQUIRE(c);
    REQUIRE(cw_run_until(w, cw_handshaken, 5000));
    tl_session *s = tl_engine_get_session(tl_conn_engine(c));
    tl_conn_close(c);
    cw_run_until(w, cw_both_closed, 5000);
    cw_free(w);
    tl_tls_ctx_free(a);
    REQUIRE(s && own.stored);
    CHECK_EQ_INT(own.asked, 0);   /* nothing offered: nothing asked */
    first_der = own.stored;       /* kept: later handshakes store their own */
    first_der_len = own.stored_len;
    own.stored = NULL;
    return s;
}

static bool resumed(tl_conn *c)
{
    tl_engine_info i;
    tl_engine_get_info(tl_conn_engine(c), &i);
    return i.resumed;
}

TEST(lookup_answered_later_resumes)
{
    tl_tls_ctx *cctx = client12();
    tl_session *s = first_session(cctx);
    for (int found = 0; found < 2; found++) {
        tl_tls_ctx *b = server12();
        memset(&own.asked, 0, sizeof own - offsetof(__typeof__(own), asked));
        own.start = true;
        own.answer_after_ms = 40;
        own.der = found ? first_der : NULL;
        own.der_len = found ? first_der_len : 0;
        cw_world *w = world(b, cctx, s);
        tl_conn *c = cw_connect(w);
        REQUIRE(c);
        REQUIRE(cw_run_until(w, cw_handshaken, 5000));
        CHECK_EQ_INT(own.asked, 1);
        CHECK_EQ_INT(own.answered, 1);
        CHECK_EQ_INT(own.found_rc, found ? 0 : -1);
        CHECK(own.answered_ms - own.asked_ms >= 39);   /* the handshake waited for the answer */
        CHECK(resumed(c) == (bool)found);
        CHECK(resumed(w->s.conn) == (bool)found);
        /* And it goes on as any connection: an echo. */
        tl_conn_write(c, "ping", 4);
        cw_echo_target = 4;
        CHECK(cw_run_until(w, cw_echo_back, 5000));
        tl_conn_close(c);
        CHECK(cw_run_until(w, cw_both_closed, 5000));
        CHECK_EQ_INT(own.handshakes_ok, 1);
        CHECK_EQ_INT(own.closes, 1);
        /* No answer pending: a stray one is refused. */
        cw_free(w);
        tl_tls_ctx_free(b);
    }
    tl_session_free(s);
    tl_tls_ctx_free(cctx);
    free(own.stored);
    own.stored = NULL;
    free(first_der);
    first_der = NULL;
}

TEST(owner_says_not_now)
{
    tl_tls_ctx *cctx = client12();
    tl_session *s = first_session(cctx);
    tl_tls_ctx *b = server12();
    memset(&own.asked, 0, sizeof own - offsetof(__typeof__(own), asked));
    own.start = false;
    cw_world *w = world(b, cctx, s);
    tl_conn *c = cw_connect(w);
    REQUIRE(cw_run_until(w, cw_handshaken, 5000));
    CHECK_EQ_INT(own.asked, 1);
    CHECK(!resumed(c));
    CHECK(own.stored != NULL);   /* a new session to store */
    tl_conn_close(c);
    cw_run_until(w, cw_both_closed, 5000);
    cw_free(w);
    tl_tls_ctx_free(b);
    tl_session_free(s);
    tl_tls_ctx_free(cctx);
    free(own.stored);
    own.stored = NULL;
    free(first_der);
    first_der = NULL;
}

static bool server_waiting(cw_world *w) { return own.waiting != NULL && w->s.conn; }

/* Aborted while it waits, or its handshake deadline passing meanwhile: it ends once the answer
 * comes (the owner's answer is due exactly once), the owner hears "failed" once. */
TEST(end_while_waiting)
{
    tl_tls_ctx *cctx = client12();
    tl_session *s = first_session(cctx);
    for (int deadline = 0; deadline < 2; deadline++) {
        tl_tls_ctx *b = server12();
        memset(&own.asked, 0, sizeof own - offsetof(__typeof__(own), asked));
        own.start = true;
        own.answer_after_ms = 200;
        own.der = first_der;
        own.der_len = first_der_len;
        cw_world *w = world(b, cctx, s);
        w->sopts.handshake_timeout_ms = deadline ? 50 : 0;
        REQUIRE(cw_connect(w));
        REQUIRE(cw_run_until(w, server_waiting, 5000));
        REQUIRE(w->s.conn->state == ST_TASK);
        if (!deadline)
            tl_conn_abort(w->s.conn);
        CHECK(cw_run_until(w, cw_server_closed, 5000));
        CHECK_EQ_INT(own.answered, 1);
        CHECK_EQ_INT(own.handshakes_failed, 1);
        CHECK_EQ_INT(own.handshakes_ok, 0);
        CHECK_EQ_INT(own.closes, 1);
        CHECK_EQ_INT(w->s.end_how, deadline ? TL_END_TIMEOUT : TL_END_LOCAL);
        cw_run_until(w, cw_both_closed, 5000);
        cw_free(w);
        tl_tls_ctx_free(b);
    }
    tl_session_free(s);
    tl_tls_ctx_free(cctx);
    free(own.stored);
    own.stored = NULL;
    free(first_der);
    first_der = NULL;
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(lookup_answered_later_resumes);
    RUN(owner_says_not_now);
    RUN(end_while_waiting);
    TEST_MAIN_END();
}
