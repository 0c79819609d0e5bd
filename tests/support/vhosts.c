/* tests/support/vhosts.c - see vhosts.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls_pair.h"
#include "vhosts.h"

/* As test.h's REQUIRE: end the test at once, saying which condition failed. */
#define MUST(cond)                                                                              \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);         \
            fflush(stderr);                                                                     \
            _exit(1);                                                                           \
        }                                                                                       \
    } while (0)

vh_certs vh;

void vh_issue(tl_key_type key, const char *name, long not_after, tl_certgen_pair *out)
{
    const char *names[] = {name};
    tl_certgen_spec spec = {.key = key, .dns_names = names, .n_dns = 1,
                            .not_before = not_after < 0 ? not_after - 3600 : -3600,
                            .not_after = not_after};
    char err[256];
    if (tl_certgen_issue(&spec, &tp.ca, out, err, sizeof err) != 0) {
        fprintf(stderr, "issue %s: %s\n", name, err);
        exit(2);
    }
}

void vh_init(void)
{
    vh_issue(TL_KEY_ECDSA_P256, "a.test", 86400, &vh.a);
    vh_issue(TL_KEY_ECDSA_P256, "b.test", 86400, &vh.b);
    vh_issue(TL_KEY_ECDSA_P256, "*.wild.test", 86400, &vh.wild);
    vh_issue(TL_KEY_ECDSA_P256, "exact.wild.test", 86400, &vh.exact_wild);
    vh_issue(TL_KEY_RSA_2048, "dual.test", 86400, &vh.dual_rsa);
    vh_issue(TL_KEY_ECDSA_P256, "dual.test", 86400, &vh.dual_ec);
    vh_issue(TL_KEY_ECDSA_P256, "secure.test", 86400, &vh.secure);
}

tl_tls_ctx *vh_server(const tl_certgen_pair *cert, int min_v, int max_v)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    MUST(s);
    if (cert)
        MUST(tl_tls_ctx_use_cert_pem(s, cert->cert_pem, cert->key_pem) == 0);
    if (min_v || max_v)
        MUST(tl_tls_ctx_set_versions(s, min_v ? min_v : TL_TLS1_2,
                                     max_v ? max_v : TL_TLS1_3) == 0);
    return s;
}

void vh_attach(tl_tls_ctx *dflt, const char *name, tl_tls_ctx *named)
{
    if (tl_tls_ctx_add_name(dflt, name, named) != 0) {
        fprintf(stderr, "  add_name %s: %s\n", name, tl_tls_ctx_error(dflt));
        _exit(1);
    }
}

tl_tls_ctx *vh_hosts(int min_v, int max_v)
{
    tl_tls_ctx *d = vh_server(&tp.ecdsa, min_v, max_v);
    const tl_certgen_pair *certs[] = {&vh.a, &vh.b, &vh.wild, &vh.exact_wild};
    const char *names[] = {"a.test", "B.Test", "*.wild.test", "exact.wild.test"};
    for (int i = 0; i < 4; i++) {
        tl_tls_ctx *n = vh_server(certs[i], min_v, max_v);
        vh_attach(d, names[i], n);
        tl_tls_ctx_free(n); /* the default holds it */
    }
    return d;
}

tl_tls_ctx *vh_mtls_hosts(tl_verify mode)
{
    tl_tls_ctx *d = vh_hosts(0, 0), *sec = vh_server(&vh.secure, 0, 0);
    MUST(tl_tls_ctx_set_ca_pem(sec, tp.ca.cert_pem) == 0);
    MUST(tl_tls_ctx_set_verify(sec, mode) == 0);
    vh_attach(d, "secure.test", sec);
    tl_tls_ctx_free(sec);
    return d;
}

tl_tls_ctx *vh_loose_client(int min_v, int max_v)
{
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    MUST(c && tl_tls_ctx_set_verify(c, TL_VERIFY_NONE) == 0);
    if (min_v || max_v)
        MUST(tl_tls_ctx_set_versions(c, min_v ? min_v : TL_TLS1_2,
                                     max_v ? max_v : TL_TLS1_3) == 0);
    return c;
}

tl_tls_ctx *vh_client_with_cert(void)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    MUST(tl_tls_ctx_use_cert_pem(c, tp.client.cert_pem, tp.client.key_pem) == 0);
    return c;
}

vh_outcome vh_run(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                  unsigned sflags)
{
    vh_outcome o;
    memset(&o, 0, sizeof o);
    tl_engine_opts co = {.server_name = sni, .session = offer}, so = {.flags = sflags};
    tp_pair p;
    tp_pair_init(&p, cctx, sctx, &co, &so);
    p.s.task_thread = true;
    o.ok = tp_handshake(&p.c, &p.s, 10) == 0;
    o.tasks = p.s.tasks_run;
    if (!o.ok) { /* one more round each way, so each side has read the other's alert */
        tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
        tp_unwrap(&p.c);
        tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
        tp_unwrap(&p.s);
        snprintf(o.cerr, sizeof o.cerr, "%s", tl_engine_error(p.c.e));
        snprintf(o.serr, sizeof o.serr, "%s", tl_engine_error(p.s.e));
        tp_pair_free(&p);
        return o;
    }
    tl_engine_info ci, si;
    tl_engine_get_info(p.c.e, &ci);
    tl_engine_get_info(p.s.e, &si);
    o.resumed = ci.resumed;
    if (ci.resumed != si.resumed)
        fprintf(stderr, "  client and server disagree on resumption\n");
    snprintf(o.subject, sizeof o.subject, "%s", ci.peer_subject);
    X509 *cert = SSL_get0_peer_certificate(tl_engine_ssl(p.c.e));
    o.key_type = cert ? EVP_PKEY_get_base_id(X509_get0_pubkey(cert)) : 0;
    o.client_cert = si.has_peer_cert;
    const STACK_OF(X509_NAME) *cas = SSL_get0_peer_CA_list(tl_engine_ssl(p.c.e));
    o.peer_ca_names = cas ? sk_X509_NAME_num(cas) : 0;
    snprintf(o.version, sizeof o.version, "%s", ci.version);
    snprintf(o.cipher, sizeof o.cipher, "%s", ci.cipher);
    snprintf(o.group, sizeof o.group, "%s", ci.group ? ci.group : "");
    snprintf(o.alpn, sizeof o.alpn, "%s", ci.alpn);
    snprintf(o.sni, sizeof o.sni, "%s", si.server_name ? si.server_name : "");
    if (tp_send(&p.c, &p.s, "GET", 3, 10) != 0 || tp_send(&p.s, &p.c, "OK", 2, 10) != 0)
        fprintf(stderr, "  data after the handshake did not arrive\n");
    o.session = tl_engine_get_session(p.c.e);
    tl_engine_close(p.c.e);
    tp_wrap_to(&p.c, &p.s, NULL, 0, NULL);
    tp_unwrap(&p.s);
    tl_engine_close(p.s.e);
    tp_wrap_to(&p.s, &p.c, NULL, 0, NULL);
    tp_unwrap(&p.c);
    tp_pair_free(&p);
    return o;
}

vh_outcome vh_run_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                     unsigned sflags, int *failures)
{
    vh_outcome o = vh_run(cctx, sctx, sni, offer, sflags);
    if (!o.ok) {
        fprintf(stderr, "  handshake with SNI %s failed: client \"%s\" | server \"%s\"\n",
                sni ? sni : "(none)", o.cerr, o.serr);
        (*failures)++;
    }
    return o;
}

uint64_t vh_ring_stat(tl_tls_ctx *s, int which)
{
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &st);
    switch (which) {
    case 0: return st.issued;
    case 1: return st.decrypted_current;
    case 2: return st.decrypted_old;
    default: return st.unknown_key;
    }
}
