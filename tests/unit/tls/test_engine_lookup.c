/*
 * test_engine_lookup.c - sessions looked up outside the process (TL_ENGINE_SESSION_LOOKUP,
 * tlsloop/engine.h "Session lookup"): a TLS 1.2 client without tickets gets a session from one
 * server configuration and resumes it on another (a second process, in effect) once the owner
 * answers the lookup with the first's session; what is not looked up (TLS 1.3, tickets, a
 * session the cache holds) and what is refused (another ID, garbage).
 */
#include <string.h>

#include <openssl/ssl.h>

#include "support/tls_pair.h"
#include "test.h"

/* A TLS 1.2 server with its own session cache; tickets as asked. */
static tl_tls_ctx *server12(bool tickets)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    REQUIRE(s && tl_tls_ctx_set_tickets(s, tickets) == 0);
    return s;
}

typedef struct run {
    bool ok, resumed;
    int lookups, added;
    tl_session *client_session;   /* the client's, to offer again */
    tl_session *stored;           /* the server's, for the store */
    uint8_t id[32];
    size_t id_len;
} run;

static run connect_lookup(tl_tls_ctx *cctx, tl_tls_ctx *sctx, tl_session *offer, const void *der,
                          size_t der_len, unsigned sflags)
{
    run out = {0};
    tl_engine_opts co = {.server_name = "localhost", .session = offer};
    tl_engine_opts so = {.flags = sflags};
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, &co, &so);
    p.s.lookup_der = der;
    p.s.lookup_der_len = der_len;
    out.ok = tp_handshake(&p.c, &p.s, 10) == 0;
    if (!out.ok)
        fprintf(stderr, "  handshake failed: %s | %s\n", tl_engine_error(p.c.e),
                tl_engine_error(p.s.e));
    tl_engine_info si;
    tl_engine_get_info(p.s.e, &si);
    out.resumed = si.resumed;
    out.lookups = p.s.lookups;
    out.added = p.s.lookups_added;
    memcpy(out.id, p.s.lookup_id, sizeof out.id);
    out.id_len = p.s.lookup_id_len;
    tp_send(&p.c, &p.s, "GET", 3, 10);
    tp_send(&p.s, &p.c, "200", 3, 10);
    out.client_session = tl_engine_get_session(p.c.e);
    out.stored = tl_engine_take_new_session(p.s.e);
    CHECK(tl_engine_take_new_session(p.s.e) == NULL);   /* once */
    tl_engine_close(p.c.e);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    tp_unwrap(&p.s);
    tp_pair_free(&p);
    return out;
}

static void run_free(run *r)
{
    tl_session_free(r->client_session);
    tl_session_free(r->stored);
}

static size_t der_of(tl_session *s, unsigned char **out)
{
    int n = i2d_SSL_SESSION(s, NULL);
    REQUIRE(n > 0);
    *out = malloc((size_t)n);
    unsigned char *p = *out;
    REQUIRE(i2d_SSL_SESSION(s, &p) == n);
    return (size_t)n;
}

TEST(tls12_session_resumes_on_another_configuration)
{
    tl_tls_ctx *a = server12(false), *b = server12(false), *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    REQUIRE(tl_tls_ctx_set_tickets(c, false) == 0);
    run first = connect_lookup(c, a, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    REQUIRE(first.ok);
    CHECK(!first.resumed);
    CHECK_EQ_INT(first.lookups, 0);          /* no session offered: nothing to look up */
    REQUIRE(first.stored && first.client_session);
    unsigned id_len;
    const unsigned char *id = SSL_SESSION_get_id(first.stored, &id_len);
    CHECK(id_len == 32);
    unsigned char *der;
    size_t der_len = der_of(first.stored, &der);

    /* b does not hold it: it asks, gets it, resumes. */
    run second = connect_lookup(c, b, first.client_session, der, der_len, TL_ENGINE_SESSION_LOOKUP);
    CHECK(second.ok && second.resumed);
    CHECK_EQ_INT(second.lookups, 1);
    CHECK_EQ_INT(second.added, 1);
    CHECK(second.id_len == id_len && memcmp(second.id, id, id_len) == 0);
    CHECK(second.stored == NULL);             /* resumed: nothing new to store */
    /* Now b's cache has it: no lookup the next time. */
    run third = connect_lookup(c, b, first.client_session, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    CHECK(third.ok && third.resumed);
    CHECK_EQ_INT(third.lookups, 0);

    /* A fresh configuration whose lookup finds nothing: a full handshake, and a new session
     * to store. */
    tl_tls_ctx *d = server12(false);
    run miss = connect_lookup(c, d, first.client_session, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    CHECK(miss.ok && !miss.resumed);
    CHECK_EQ_INT(miss.lookups, 1);
    CHECK_EQ_INT(miss.added, 0);
    CHECK(miss.stored != NULL);

    /* Without the flag: no lookup, a full handshake, nothing kept for a store. */
    tl_tls_ctx *e = server12(false);
    run off = connect_lookup(c, e, first.client_session, der, der_len, 0);
    CHECK(off.ok && !off.resumed);
    CHECK_EQ_INT(off.lookups, 0);
    CHECK(off.stored == NULL);

    run *all[] = {&first, &second, &third, &miss, &off};
    for (size_t i = 0; i < 5; i++)
        run_free(all[i]);
    free(der);
    tl_tls_ctx_free(d);
    tl_tls_ctx_free(e);
    tp_free_ctxs(a, b);
    tl_tls_ctx_free(c);
}

TEST(lookup_refuses_wrong_entries)
{
    tl_tls_ctx *a = server12(false), *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    REQUIRE(tl_tls_ctx_set_tickets(c, false) == 0);
    run one = connect_lookup(c, a, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    run two = connect_lookup(c, a, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    REQUIRE(one.stored && two.stored);
    unsigned char *der2;
    size_t der2_len = der_of(two.stored, &der2);
    /* A lookup for one's ID answered with two's session: refused, full handshake. */
    tl_tls_ctx *b = server12(false);
    run swapped = connect_lookup(c, b, one.client_session, der2, der2_len, TL_ENGINE_SESSION_LOOKUP);
    CHECK(swapped.ok && !swapped.resumed);
    CHECK_EQ_INT(swapped.lookups, 1);
    CHECK_EQ_INT(swapped.added, 0);
    /* Garbage, and a DER cut short. */
    run junk = connect_lookup(c, b, one.client_session, "garbage", 7, TL_ENGINE_SESSION_LOOKUP);
    CHECK(junk.ok && !junk.resumed && junk.added == 0);
    tl_tls_ctx *b2 = server12(false);
    run cut = connect_lookup(c, b2, two.client_session, der2, der2_len - 1, TL_ENGINE_SESSION_LOOKUP);
    CHECK(cut.ok && !cut.resumed && cut.added == 0);
    /* A session of another session ID context (another policy) is taken into the cache but
     * does not resume. */
    tl_tls_ctx *other = server12(false);
    REQUIRE(tl_tls_ctx_set_session_id_context(other, "other", 5) == 0);
    run ctxd = connect_lookup(c, other, two.client_session, der2, der2_len,
                              TL_ENGINE_SESSION_LOOKUP);
    CHECK(ctxd.ok && !ctxd.resumed);
    run *all[] = {&one, &two, &swapped, &junk, &cut, &ctxd};
    for (size_t i = 0; i < 6; i++)
        run_free(all[i]);
    free(der2);
    tp_free_ctxs(a, b);
    tp_free_ctxs(b2, other);
    tl_tls_ctx_free(c);
}

TEST(no_lookup_for_tls13_or_tickets)
{
    /* TLS 1.3: its legacy session ID is random; resumption is by ticket. */
    tl_tls_ctx *s13 = tp_server_ctx(&tp.ecdsa, 0, 0), *c13 = tp_client_ctx(0, 0);
    run a = connect_lookup(c13, s13, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    REQUIRE(a.ok && a.client_session);
    CHECK(a.stored == NULL);
    tl_tls_ctx *s13b = tp_server_ctx(&tp.ecdsa, 0, 0);
    run b = connect_lookup(c13, s13b, a.client_session, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    CHECK(b.ok && !b.resumed);   /* another ring: the ticket does not open */
    CHECK_EQ_INT(b.lookups, 0);
    /* TLS 1.2 with tickets: the ticket resumes; nothing is stored or looked up. */
    tl_tls_ctx *s12 = server12(true), *c12 = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    run t = connect_lookup(c12, s12, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    REQUIRE(t.ok && t.client_session);
    CHECK(t.stored == NULL);
    run t2 = connect_lookup(c12, s12, t.client_session, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    CHECK(t2.ok && t2.resumed);
    CHECK_EQ_INT(t2.lookups, 0);
    /* A server with tickets off and a client that offers them: stored, looked up. */
    tl_tls_ctx *s12n = server12(false);
    run n = connect_lookup(c12, s12n, NULL, NULL, 0, TL_ENGINE_SESSION_LOOKUP);
    CHECK(n.ok && n.stored != NULL);
    run *all[] = {&a, &b, &t, &t2, &n};
    for (size_t i = 0; i < 5; i++)
        run_free(all[i]);
    tp_free_ctxs(s13, c13);
    tp_free_ctxs(s13b, s12);
    tp_free_ctxs(c12, s12n);
}

/* With delegated tasks on as well: the lookup first, then the CPU task. */
TEST(lookup_then_delegated_task)
{
    tl_tls_ctx *a = server12(false), *b = server12(false), *c = tp_client_ctx(TL_TLS1_2, TL_TLS1_2);
    REQUIRE(tl_tls_ctx_set_tickets(c, false) == 0);
    run first = connect_lookup(c, a, NULL, NULL, 0,
                               TL_ENGINE_SESSION_LOOKUP | TL_ENGINE_DELEGATE_TASKS);
    REQUIRE(first.ok && first.stored);
    unsigned char *der;
    size_t der_len = der_of(first.stored, &der);
    run second = connect_lookup(c, b, first.client_session, der, der_len,
                                TL_ENGINE_SESSION_LOOKUP | TL_ENGINE_DELEGATE_TASKS);
    CHECK(second.ok && second.resumed);
    CHECK_EQ_INT(second.lookups, 1);
    run_free(&first);
    run_free(&second);
    free(der);
    tp_free_ctxs(a, b);
    tl_tls_ctx_free(c);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(tls12_session_resumes_on_another_configuration);
    RUN(lookup_refuses_wrong_entries);
    RUN(no_lookup_for_tls13_or_tickets);
    RUN(lookup_then_delegated_task);
    TEST_MAIN_END();
}
