/*
 * test_tls_ctx_alpn_switch.c - handshakes handed over by ALPN (tl_tls_ctx_set_alpn_switch), the
 * hook ACME's TLS-ALPN-01 answers through: a ClientHello offering the protocol is switched to the
 * configuration the hook returns (its certificate, its ALPN), before SNI; other handshakes, and
 * ones the hook declines, are untouched; the setter's refusals. Engines over memory, no sockets.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "support/tls_pair.h"
#include "support/vhosts.h"
#include "test.h"

typedef struct hook {
    tl_tls_ctx *to;
    const char *want_sni;
    int calls;
    char last_sni[64];
} hook;

static tl_tls_ctx *switch_fn(const char *sni, void *data)
{
    hook *h = data;
    h->calls++;
    snprintf(h->last_sni, sizeof h->last_sni, "%s", sni ? sni : "(none)");
    return sni && !strcmp(sni, h->want_sni) ? h->to : NULL;
}

/* The validation side: a.test's certificate, acme-tls/1 only, no tickets. */
static tl_tls_ctx *validation(void)
{
    tl_tls_ctx *v = vh_server(&vh.a, 0, 0);
    CHECK_OK(v, tl_tls_ctx_set_alpn(v, "acme-tls/1"));
    CHECK_OK(v, tl_tls_ctx_set_num_tickets(v, 0));
    return v;
}

static tl_tls_ctx *client(const char *alpn)
{
    tl_tls_ctx *c = vh_loose_client(0, 0);
    CHECK_OK(c, tl_tls_ctx_set_alpn(c, alpn));
    return c;
}

/* A default serving tp.ecdsa with http/1.1, b.test attached by SNI, and the hook. */
static tl_tls_ctx *server(hook *h)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, 0, 0);
    CHECK_OK(d, tl_tls_ctx_set_alpn(d, "http/1.1"));
    tl_tls_ctx *b = vh_server(&vh.b, 0, 0);
    CHECK_OK(b, tl_tls_ctx_set_alpn(b, "http/1.1"));
    vh_attach(d, "b.test", b);
    tl_tls_ctx_free(b);
    CHECK_OK(d, tl_tls_ctx_set_alpn_switch(d, "acme-tls/1", switch_fn, h));
    return d;
}

TEST(offered_protocol_switches_configuration)
{
    hook h = {.to = validation(), .want_sni = "localhost"};
    tl_tls_ctx *s = server(&h), *c = client("acme-tls/1");
    for (int v = 0; v < 2; v++) {   /* TLS 1.3, then 1.2 */
        tl_tls_ctx *cv = v ? vh_loose_client(TL_TLS1_2, TL_TLS1_2) : NULL;
        if (cv)
            CHECK_OK(cv, tl_tls_ctx_set_alpn(cv, "acme-tls/1"));
        vh_outcome o = VH_RUN_OK(cv ? cv : c, s, "localhost", NULL, 0);
        CHECK_STR(o.subject, "CN=a.test");
        CHECK_STR(o.alpn, "acme-tls/1");
        CHECK_STR(h.last_sni, "localhost");
        tl_session_free(o.session);
        tl_tls_ctx_free(cv);
    }
    CHECK_EQ_INT(h.calls, 2);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(h.to);
}

TEST(other_handshakes_are_untouched)
{
    hook h = {.to = validation(), .want_sni = "localhost"};
    tl_tls_ctx *s = server(&h), *c = client("http/1.1"), *c2 = client("h2,http/1.1");
    vh_outcome o = VH_RUN_OK(c, s, "localhost", NULL, 0);
    CHECK(strcmp(o.subject, "CN=a.test") != 0);
    CHECK_STR(o.alpn, "http/1.1");
    tl_session_free(o.session);
    /* SNI still routes when the protocol is not offered. */
    o = VH_RUN_OK(c2, s, "b.test", NULL, 0);
    CHECK_STR(o.subject, "CN=b.test");
    CHECK_STR(o.alpn, "http/1.1");
    tl_session_free(o.session);
    CHECK_EQ_INT(h.calls, 0);   /* never asked */
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(c2);
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(h.to);
}

TEST(declined_by_the_hook_goes_on_as_before)
{
    hook h = {.to = validation(), .want_sni = "localhost"};
    tl_tls_ctx *s = server(&h), *c = client("acme-tls/1");
    /* A name without a challenge: the default has no acme-tls/1, so the handshake fails with
     * no_application_protocol as it would without the hook; never the validation certificate. */
    vh_outcome o = vh_run(c, s, "b.test", NULL, 0);
    CHECK(!o.ok);
    CHECK(strcmp(o.subject, "CN=a.test") != 0);
    CHECK_STR(h.last_sni, "b.test");
    tl_session_free(o.session);
    o = vh_run(c, s, NULL, NULL, 0);   /* no SNI at all: the hook hears NULL */
    CHECK(!o.ok);
    CHECK_STR(h.last_sni, "(none)");
    tl_session_free(o.session);
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(s);
    tl_tls_ctx_free(h.to);
}

TEST(setter_refusals)
{
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT), *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(c, tl_tls_ctx_set_alpn_switch(c, "acme-tls/1", switch_fn, NULL), TL_ERR_USAGE,
               "only a server configuration");
    CHECK_FAIL(s, tl_tls_ctx_set_alpn_switch(s, "", switch_fn, NULL), TL_ERR_USAGE, "1 to 255");
    CHECK_OK(s, tl_tls_ctx_set_alpn_switch(s, "acme-tls/1", switch_fn, NULL));
    CHECK_OK(s, tl_tls_ctx_set_alpn_switch(s, NULL, NULL, NULL));   /* removed */
    CHECK_OK(s, tl_tls_ctx_use_cert_pem(s, tp.ecdsa.cert_pem, tp.ecdsa.key_pem));
    CHECK_OK(s, tl_tls_ctx_freeze(s));
    CHECK_FAIL(s, tl_tls_ctx_set_alpn_switch(s, "acme-tls/1", switch_fn, NULL), TL_ERR_USAGE,
               "in use");
    tl_tls_ctx_free(c);
    tl_tls_ctx_free(s);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    vh_init();
    RUN(offered_protocol_switches_configuration);
    RUN(other_handshakes_are_untouched);
    RUN(declined_by_the_hook_goes_on_as_before);
    RUN(setter_refusals);
    TEST_MAIN_END();
}
