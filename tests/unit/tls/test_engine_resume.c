/*
 * test_engine_resume.c - session resumption through the engine: TLS 1.3 tickets, TLS 1.2 tickets
 * and session IDs, key rotation, a key ring shared by two configurations or copied between
 * processes, and what happens to a session when its connection ends badly.
 */
#include <string.h>

#include <openssl/ssl.h>

#include "support/tls_pair.h"
#include "test.h"

/* One connection: handshake, a request and an answer (so TLS 1.3 tickets are read), then the end
 * chosen by `how`. Returns the client's newest session (or NULL) and whether it resumed. */
enum ending { END_CLOSE, END_TRUNCATE, END_MID_RECORD, END_ERROR };

static tl_session *connect_once(tl_tls_ctx *cctx, tl_tls_ctx *sctx, tl_session *offer,
                                enum ending how, bool *resumed)
{
    tl_engine_opts co = {.server_name = "localhost", .session = offer};
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, &co, NULL);
    if (tp_handshake(&p.c, &p.s, 10) != 0) {
        fprintf(stderr, "  handshake failed: %s | %s\n", tl_engine_error(p.c.e),
                tl_engine_error(p.s.e));
        tp_pair_free(&p);
        *resumed = false;
        return NULL;
    }
    tl_engine_info ci, si;
    tl_engine_get_info(p.c.e, &ci);
    tl_engine_get_info(p.s.e, &si);
    *resumed = ci.resumed;
    if (ci.resumed != si.resumed)
        fprintf(stderr, "  client and server disagree on resumption\n");
    tp_send(&p.c, &p.s, "GET", 3, 10);
    tp_send(&p.s, &p.c, "200 OK", 6, 10);
    uint8_t net[200], buf[10];
    switch (how) {
    case END_CLOSE:
        tl_engine_close(p.c.e);
        tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
        tp_unwrap(&p.s);
        tl_engine_close(p.s.e);
        tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
        tp_unwrap(&p.c);
        break;
    case END_TRUNCATE: /* the client goes away between records, without close_notify */
        tl_engine_set_input_eof(p.s.e);
        if (tp_unwrap(&p.s) != TL_TRUNCATED)
            fprintf(stderr, "  expected truncation\n");
        break;
    case END_MID_RECORD: { /* the client goes away in the middle of a record */
        tl_result r = tl_engine_wrap(p.c.e, "partial", 7, net, sizeof net);
        tl_engine_set_input_eof(p.s.e);
        tl_engine_unwrap(p.s.e, net, r.produced - 4, buf, sizeof buf);
        break;
    }
    case END_ERROR: { /* a corrupted record */
        tl_result r = tl_engine_wrap(p.c.e, "corrupt", 7, net, sizeof net);
        net[r.produced - 1] ^= 1;
        tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
        break;
    }
    }
    tl_session *s = tl_engine_get_session(p.c.e);
    tp_pair_free(&p);
    return s;
}

/* Tickets on or off at the server, or off at the client only (TLS 1.2: it asks for none, and its
 * sessions resume by ID from the server's cache). */
static void resume_case(int version, bool tickets, bool client_tickets)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, version, version), *cctx = tp_client_ctx(0, 0);
    if (!tickets)
        REQUIRE(tl_tls_ctx_set_tickets(sctx, false) == 0);
    if (!client_tickets) {
        REQUIRE(tl_tls_ctx_set_tickets(cctx, false) == 0);
        tickets = false;   /* none issued, none decrypted */
    }
    bool resumed;
    tl_session *s = connect_once(cctx, sctx, NULL, END_CLOSE, &resumed);
    REQUIRE(s != NULL);
    CHECK(!resumed);
    for (int i = 0; i < 3; i++) {
        tl_session *next = connect_once(cctx, sctx, s, END_CLOSE, &resumed);
        CHECK(resumed);
        tl_session_free(s);
        s = next;
        REQUIRE(s != NULL);
    }
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(sctx), &st);
    if (tickets)
        CHECK(st.issued > 0 && st.decrypted_current == 3);
    else
        CHECK(st.issued == 0);
    tl_session_free(s);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(resume_tls13_tickets) { resume_case(TL_TLS1_3, true, true); }
TEST(resume_tls12_tickets) { resume_case(TL_TLS1_2, true, true); }
TEST(resume_tls12_session_cache) { resume_case(TL_TLS1_2, false, true); }
TEST(resume_tls12_client_without_tickets) { resume_case(TL_TLS1_2, true, false); }
TEST(resume_tls13_stateful) { resume_case(TL_TLS1_3, false, true); }

/* Rotation: a ticket from the previous key still resumes (and is renewed under the new key); once
 * its key has left the ring, a full handshake follows. */
TEST(resume_across_rotation)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tl_ticket_ring *ring = tl_ticket_ring_new(3);
    REQUIRE(tl_tls_ctx_set_ticket_ring(sctx, ring) == 0);
    bool resumed;
    tl_session *old = connect_once(cctx, sctx, NULL, END_CLOSE, &resumed);
    REQUIRE(old);
    tl_ticket_ring_rotate(ring);
    tl_session *renewed = connect_once(cctx, sctx, old, END_CLOSE, &resumed);
    CHECK(resumed);
    tl_ticket_stats st;
    tl_ticket_ring_stats(ring, &st);
    CHECK_EQ_INT(st.decrypted_old, 1);
    /* Two more rotations: the first key is gone (capacity 3), the renewed ticket's key is not. */
    tl_ticket_ring_rotate(ring);
    tl_ticket_ring_rotate(ring);
    CHECK_EQ_INT(tl_ticket_ring_count(ring), 3);
    tl_session *s3 = connect_once(cctx, sctx, old, END_CLOSE, &resumed);
    CHECK(!resumed);
    tl_ticket_ring_stats(ring, &st);
    CHECK_EQ_INT(st.unknown_key, 1);
    tl_session *s4 = connect_once(cctx, sctx, renewed, END_CLOSE, &resumed);
    CHECK(resumed);
    tl_session_free(old);
    tl_session_free(renewed);
    tl_session_free(s3);
    tl_session_free(s4);
    tl_ticket_ring_free(ring);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* One ring, two configurations (two generations after a reload, or two listeners): a ticket from
 * one resumes on the other. Two rings holding the same keys (two processes) do the same. */
TEST(resume_shared_ring)
{
    tl_tls_ctx *a = tp_server_ctx(&tp.ecdsa, 0, 0), *b = tp_server_ctx(&tp.rsa, 0, 0);
    tl_tls_ctx *cctx = tp_client_ctx(0, 0);
    tl_ticket_ring *ring = tl_ticket_ring_new(4);
    REQUIRE(tl_tls_ctx_set_ticket_ring(a, ring) == 0 && tl_tls_ctx_set_ticket_ring(b, ring) == 0);
    bool resumed;
    tl_session *s = connect_once(cctx, a, NULL, END_CLOSE, &resumed);
    tl_session *s2 = connect_once(cctx, b, s, END_CLOSE, &resumed);
    CHECK(resumed);

    uint8_t key[TL_TICKET_KEY_LEN];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    tl_ticket_ring *r1 = tl_ticket_ring_new(2), *r2 = tl_ticket_ring_new(2);
    REQUIRE(tl_ticket_ring_add(r1, key) == 0 && tl_ticket_ring_add(r2, key) == 0);
    CHECK(tl_ticket_ring_add(r1, key) == -1); /* the same name twice */
    tl_tls_ctx *p1 = tp_server_ctx(&tp.ecdsa, 0, 0), *p2 = tp_server_ctx(&tp.ecdsa, 0, 0);
    REQUIRE(tl_tls_ctx_set_ticket_ring(p1, r1) == 0 && tl_tls_ctx_set_ticket_ring(p2, r2) == 0);
    tl_session *s3 = connect_once(cctx, p1, NULL, END_CLOSE, &resumed);
    tl_session *s4 = connect_once(cctx, p2, s3, END_CLOSE, &resumed);
    CHECK(resumed);
    /* A third configuration with its own random ring cannot open it. */
    tl_tls_ctx *stranger = tp_server_ctx(&tp.ecdsa, 0, 0);
    tl_session *s5 = connect_once(cctx, stranger, s4, END_CLOSE, &resumed);
    CHECK(!resumed);
    tl_session_free(s);
    tl_session_free(s2);
    tl_session_free(s3);
    tl_session_free(s4);
    tl_session_free(s5);
    tl_ticket_ring_free(ring);
    tl_ticket_ring_free(r1);
    tl_ticket_ring_free(r2);
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
    tl_tls_ctx_free(p1);
    tl_tls_ctx_free(p2);
    tl_tls_ctx_free(stranger);
    tl_tls_ctx_free(cctx);
}

/* The server's session cache after a connection that ended without close_notify: kept when the
 * exchange was complete (EOF between records), dropped after an error or a cut record. */
static void after_ending(enum ending how, bool expect_resumed)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2), *cctx = tp_client_ctx(0, 0);
    REQUIRE(tl_tls_ctx_set_tickets(sctx, false) == 0); /* session IDs: the server cache decides */
    bool resumed;
    tl_session *first = connect_once(cctx, sctx, NULL, END_CLOSE, &resumed);
    REQUIRE(first);
    tl_session *second = connect_once(cctx, sctx, first, how, &resumed);
    CHECK(resumed);
    tl_session *third = connect_once(cctx, sctx, first, END_CLOSE, &resumed);
    CHECK_EQ_INT(resumed, expect_resumed);
    tl_session_free(first);
    tl_session_free(second);
    tl_session_free(third);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(session_kept_after_truncation) { after_ending(END_TRUNCATE, true); }
TEST(session_dropped_after_mid_record_eof) { after_ending(END_MID_RECORD, false); }
TEST(session_dropped_after_error) { after_ending(END_ERROR, false); }

/* TLS 1.3: a client that closes right after the handshake, before reading, has no ticket; one
 * that read an answer has (pitfall 14). */
TEST(tls13_ticket_needs_a_read)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, NULL, NULL);
    /* Handshake by hand, stopping before the client reads the server's tickets. */
    uint8_t net[20000], buf[100];
    tl_result r = tl_engine_wrap(p.c.e, NULL, 0, net, sizeof net);
    r = tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    r = tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf);
    r = tl_engine_wrap(p.c.e, NULL, 0, net, sizeof net);
    r = tl_engine_unwrap(p.s.e, net, r.produced, buf, sizeof buf);
    REQUIRE(tl_engine_handshake_done(p.c.e) && tl_engine_handshake_done(p.s.e));
    CHECK(tl_engine_get_session(p.c.e) == NULL);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net); /* the tickets */
    r = tl_engine_unwrap(p.c.e, net, r.produced, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT); /* a read that yields no data is normal */
    CHECK_EQ_INT(r.produced, 0);
    tl_session *s = tl_engine_get_session(p.c.e);
    CHECK(s != NULL);
    CHECK(s && SSL_SESSION_is_resumable(s));
    tl_session_free(s);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(resume_tls13_tickets);
    RUN(resume_tls12_tickets);
    RUN(resume_tls12_session_cache);
    RUN(resume_tls12_client_without_tickets);
    RUN(resume_tls13_stateful);
    RUN(resume_across_rotation);
    RUN(resume_shared_ring);
    RUN(session_kept_after_truncation);
    RUN(session_dropped_after_mid_record_eof);
    RUN(session_dropped_after_error);
    RUN(tls13_ticket_needs_a_read);
    TEST_MAIN_END();
}
