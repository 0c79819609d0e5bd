/*
 * test_tls_ctx_sni_resume.c - resumption on named configurations (tl_tls_ctx_add_name): per name
 * with tickets, session IDs and stateful TLS 1.3, isolation between names, into a name that wants
 * client certificates, across generations, a shared session ID context (hosts: support/vhosts.h).
 */
#include <stdbool.h>
#include <string.h>

#include "support/tls_pair.h"
#include "support/vhosts.h"
#include "test.h"

/* ---- sessions ----------------------------------------------------------------------------- */

/* version; tickets: on, or off (TLS 1.2 session IDs / TLS 1.3 stateful, from the default's
 * cache) on the named configuration. */
static void resume_named(int version, bool tickets)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, version, version), *a = vh_server(&vh.a, version, version);
    if (!tickets)
        REQUIRE(tl_tls_ctx_set_tickets(a, false) == 0);
    vh_attach(d, "a.test", a);
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    vh_outcome o = VH_RUN_OK(c, d, "a.test", NULL, 0);
    REQUIRE(o.session);
    CHECK(!o.resumed);
    for (int i = 0; i < 3; i++) {
        vh_outcome next = VH_RUN_OK(c, d, "a.test", o.session, 0);
        CHECK(next.resumed);
        CHECK_STR(next.subject, "CN=a.test");
        tl_session_free(o.session);
        o = next;
        REQUIRE(o.session);
    }
    tl_session_free(o.session);
    /* Tickets come from the default's ring; the named configuration's own is never used. */
    CHECK_EQ_INT(vh_ring_stat(a, 0), 0);
    if (tickets) {
        CHECK(vh_ring_stat(d, 0) >= 1); /* TLS 1.3 renews every ticket, TLS 1.2 keeps the first */
        CHECK_EQ_INT(vh_ring_stat(d, 1), 3);
    } else {
        CHECK_EQ_INT(vh_ring_stat(d, 0), 0);
    }
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(resume_named_tls13) { resume_named(TL_TLS1_3, true); }
TEST(resume_named_tls12) { resume_named(TL_TLS1_2, true); }
TEST(resume_named_tls12_session_id) { resume_named(TL_TLS1_2, false); }
TEST(resume_named_tls13_stateful) { resume_named(TL_TLS1_3, false); }

/* A session from one name, offered with another name's SNI, gets a full handshake there. */
static void isolation(int version, bool tickets)
{
    tl_tls_ctx *d = vh_hosts(version, version), *c = tp_client_ctx(0, 0);
    if (!tickets)
        REQUIRE(tl_tls_ctx_set_tickets(d, false) == 0); /* the cache is the default's anyway */
    /* The session cache is shared, so B's configuration must not take tickets either. */
    tl_tls_ctx *b = tl_tls_ctx_select(d, "b.test"), *a = tl_tls_ctx_select(d, "a.test");
    if (!tickets) {
        REQUIRE(tl_tls_ctx_set_tickets(a, false) == 0);
        REQUIRE(tl_tls_ctx_set_tickets(b, false) == 0);
    }
    vh_outcome from_a = VH_RUN_OK(c, d, "a.test", NULL, 0);
    vh_outcome from_dflt = VH_RUN_OK(c, d, "localhost", NULL, 0);
    REQUIRE(from_a.session && from_dflt.session);
    vh_outcome o = VH_RUN_OK(c, d, "b.test", from_a.session, 0);
    CHECK(!o.resumed);
    CHECK_STR(o.subject, "CN=b.test");
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "localhost", from_a.session, 0); /* named to default */
    CHECK(!o.resumed);
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "a.test", from_dflt.session, 0); /* default to named */
    CHECK(!o.resumed);
    CHECK_STR(o.subject, "CN=a.test");
    tl_session_free(o.session);
    o = VH_RUN_OK(c, d, "a.test", from_a.session, 0); /* and on its own name it resumes */
    CHECK(o.resumed);
    tl_session_free(o.session);
    tl_session_free(from_a.session);
    tl_session_free(from_dflt.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

TEST(isolation_tls13) { isolation(TL_TLS1_3, true); }
TEST(isolation_tls12) { isolation(TL_TLS1_2, true); }
TEST(isolation_tls12_session_id) { isolation(TL_TLS1_2, false); }

/* Pitfall 32: a session from a name without client certificates, offered to a name that requires
 * one, must give a full handshake that demands the certificate. */
TEST(resume_into_mtls_name)
{
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *d = vh_mtls_hosts(TL_VERIFY_REQUIRE);
        tl_tls_ctx *with = vh_client_with_cert(), *plain = tp_client_ctx(version, version);
        REQUIRE(tl_tls_ctx_set_versions(with, version, version) == 0);
        vh_outcome a = VH_RUN_OK(with, d, "a.test", NULL, 0);
        REQUIRE(a.session);
        CHECK(!a.client_cert);
        vh_outcome o = VH_RUN_OK(with, d, "secure.test", a.session, 0);
        CHECK(!o.resumed);
        CHECK(o.client_cert);
        tl_session_free(o.session);
        vh_outcome pa = VH_RUN_OK(plain, d, "a.test", NULL, 0);
        REQUIRE(pa.session);
        o = vh_run(plain, d, "secure.test", pa.session, 0);
        CHECK(!o.ok); /* no certificate, no way in, not even with a session */
        tl_session_free(pa.session);
        tl_session_free(a.session);
        tl_tls_ctx_free(with);
        tl_tls_ctx_free(plain);
        tl_tls_ctx_free(d);
    }
}

/* Two generations (a reload): new default and named configurations sharing the ticket ring. A
 * name's derived session ID context is the same in both, so its sessions survive the reload. */
TEST(resume_across_generations)
{
    tl_ticket_ring *ring = tl_ticket_ring_new(2);
    REQUIRE(ring);
    tl_tls_ctx *gen[2], *c = tp_client_ctx(0, 0);
    for (int g = 0; g < 2; g++) {
        gen[g] = vh_hosts(0, 0);
        REQUIRE(tl_tls_ctx_set_ticket_ring(gen[g], ring) == 0);
    }
    vh_outcome o = VH_RUN_OK(c, gen[0], "a.test", NULL, 0);
    REQUIRE(o.session);
    vh_outcome r = VH_RUN_OK(c, gen[1], "a.test", o.session, 0);
    CHECK(r.resumed);
    tl_session_free(r.session);
    r = VH_RUN_OK(c, gen[1], "b.test", o.session, 0);
    CHECK(!r.resumed);
    tl_session_free(r.session);
    tl_session_free(o.session);
    tl_tls_ctx_free(gen[0]);
    tl_tls_ctx_free(gen[1]);
    tl_tls_ctx_free(c);
    tl_ticket_ring_free(ring);
}

/* A session ID context the user set is kept: two names sharing one resume each other's sessions. */
TEST(user_session_id_context_kept)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0), *a = vh_server(&vh.a, 0, 0);
    tl_tls_ctx *b = vh_server(&vh.b, 0, 0);
    REQUIRE(tl_tls_ctx_set_session_id_context(a, "shared", 6) == 0);
    REQUIRE(tl_tls_ctx_set_session_id_context(b, "shared", 6) == 0);
    vh_attach(d, "a.test", a);
    vh_attach(d, "b.test", b);
    tl_tls_ctx *c = vh_loose_client(0, 0);
    vh_outcome o = VH_RUN_OK(c, d, "a.test", NULL, 0);
    REQUIRE(o.session);
    vh_outcome r = VH_RUN_OK(c, d, "b.test", o.session, 0);
    CHECK(r.resumed);
    tl_session_free(r.session);
    tl_session_free(o.session);
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(d);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    vh_init();
    RUN(resume_named_tls13);
    RUN(resume_named_tls12);
    RUN(resume_named_tls12_session_id);
    RUN(resume_named_tls13_stateful);
    RUN(isolation_tls13);
    RUN(isolation_tls12);
    RUN(isolation_tls12_session_id);
    RUN(resume_into_mtls_name);
    RUN(resume_across_generations);
    RUN(user_session_id_context_kept);
    TEST_MAIN_END();
}
