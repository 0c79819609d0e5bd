/* tests/support/tls_pair.c - see tls_pair.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls_pair.h"

tp_certs tp;

static const char *const NAMES[] = {"localhost", "good.test"};
static const char *const IPS[] = {"127.0.0.1", "::1"};

static void must_issue(const tl_certgen_spec *spec, const tl_certgen_pair *issuer,
                       tl_certgen_pair *out)
{
    char err[256];
    if (tl_certgen_issue(spec, issuer, out, err, sizeof err) != 0) {
        fprintf(stderr, "tp_init: %s\n", err);
        exit(2);
    }
}

void tp_init(void)
{
    if (tp.ca.cert_pem)
        return;
    tl_certgen_spec ca = {.key = TL_KEY_ECDSA_P256, .common_name = "tlsloop test CA",
                          .is_ca = true, .not_before = -3600, .not_after = 86400};
    must_issue(&ca, NULL, &tp.ca);
    ca.common_name = "unrelated CA";
    must_issue(&ca, NULL, &tp.other_ca);
    tl_certgen_spec leaf = {.key = TL_KEY_RSA_2048, .dns_names = NAMES, .n_dns = 2,
                            .ip_addrs = IPS, .n_ip = 2, .not_before = -3600, .not_after = 86400};
    must_issue(&leaf, &tp.ca, &tp.rsa);
    leaf.key = TL_KEY_ECDSA_P256;
    must_issue(&leaf, &tp.ca, &tp.ecdsa);
    static const char *const CLIENT[] = {"client.test"};
    tl_certgen_spec client = {.key = TL_KEY_ECDSA_P256, .dns_names = CLIENT, .n_dns = 1,
                              .not_before = -3600, .not_after = 86400};
    must_issue(&client, &tp.ca, &tp.client);
}

static void must(int rc, tl_tls_ctx *ctx, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", what, tl_tls_ctx_error(ctx));
        exit(2);
    }
}

tl_kdf tp_kdf = TL_KDF_OPENSSL;

tl_tls_ctx *tp_server_ctx(const tl_certgen_pair *leaf, int min_v, int max_v)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new_ex(TL_ROLE_SERVER, &(tl_tls_ctx_opts){.kdf = tp_kdf});
    if (!ctx)
        exit(2);
    must(tl_tls_ctx_use_cert_pem(ctx, leaf->cert_pem, leaf->key_pem), ctx, "server cert");
    if (min_v || max_v)
        must(tl_tls_ctx_set_versions(ctx, min_v ? min_v : TL_TLS1_2, max_v ? max_v : TL_TLS1_3),
             ctx, "server versions");
    return ctx;
}

tl_tls_ctx *tp_client_ctx(int min_v, int max_v)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &(tl_tls_ctx_opts){.kdf = tp_kdf});
    if (!ctx)
        exit(2);
    must(tl_tls_ctx_set_ca_pem(ctx, tp.ca.cert_pem), ctx, "client CA");
    if (min_v || max_v)
        must(tl_tls_ctx_set_versions(ctx, min_v ? min_v : TL_TLS1_2, max_v ? max_v : TL_TLS1_3),
             ctx, "client versions");
    return ctx;
}

void tp_peer_init(tp_peer *p, tl_engine *e)
{
    memset(p, 0, sizeof *p);
    p->e = e;
    p->last = TL_OK;
}

void tp_peer_free(tp_peer *p)
{
    tl_engine_free(p->e);
    tl_buf_free(&p->inbox);
    tl_buf_free(&p->app);
    memset(p, 0, sizeof *p);
}

static void *task_main(void *arg)
{
    tl_engine_run_task(arg);
    return NULL;
}

static void run_task(tp_peer *p)
{
    const uint8_t *id;
    size_t id_len;
    if (tl_engine_session_lookup(p->e, &id, &id_len)) {
        p->lookups++;
        p->lookup_id_len = id_len < sizeof p->lookup_id ? id_len : sizeof p->lookup_id;
        memcpy(p->lookup_id, id, p->lookup_id_len);
        p->lookups_added += tl_engine_session_found(p->e, p->lookup_der, p->lookup_der_len) == 0;
        return;
    }
    p->tasks_run++;
    if (!p->task_thread) {
        tl_engine_run_task(p->e);
        return;
    }
    /* pthread_create and pthread_join order the memory both ways: the hand-over the engine needs */
    pthread_t t;
    if (pthread_create(&t, NULL, task_main, p->e) != 0) {
        tl_engine_run_task(p->e);
        return;
    }
    pthread_join(t, NULL);
}

static void note(tp_peer *p, const tl_result *r)
{
    if (r->hs == TL_HS_FINISHED)
        p->finished_reports++;
}

static size_t dst_size(const tp_peer *p) { return p->dst_size ? p->dst_size : 17000; }

tl_status tp_wrap_to(tp_peer *a, tp_peer *b, const void *src, size_t len, size_t *taken)
{
    size_t cap = dst_size(a), off = 0;
    uint8_t *dst = malloc(cap);
    tl_status st = TL_OK;
    for (int guard = 0; guard < 1000000; guard++) {
        tl_result r = tl_engine_wrap(a->e, src ? (const uint8_t *)src + off : NULL, len - off,
                                     dst, cap);
        note(a, &r);
        off += r.consumed;
        tl_buf_append(&b->inbox, dst, r.produced);
        st = r.status;
        if (st == TL_NEED_TASK) {
            run_task(a);
            continue;
        }
        if (st == TL_WANT_OUTPUT && r.produced > 0)
            continue; /* the destination filled: take more */
        if (st != TL_OK || (off == len && tl_engine_pending_output(a->e) == 0))
            break;
    }
    free(dst);
    if (taken)
        *taken = off;
    return st;
}

tl_status tp_unwrap(tp_peer *a)
{
    size_t cap = dst_size(a);
    uint8_t *dst = malloc(cap);
    tl_status st = TL_OK;
    for (int guard = 0; guard < 1000000; guard++) {
        size_t avail = tl_buf_len(&a->inbox);
        size_t n = a->net_chunk && avail > a->net_chunk ? a->net_chunk : avail;
        tl_result r = tl_engine_unwrap(a->e, tl_buf_rptr(&a->inbox), n, dst, cap);
        note(a, &r);
        tl_buf_consume(&a->inbox, r.consumed);
        tl_buf_append(&a->app, dst, r.produced);
        st = r.status;
        if (st == TL_NEED_TASK) {
            run_task(a);
            continue;
        }
        if (st == TL_OK)
            continue; /* the destination was full */
        /* WANT_INPUT with input left: we offered only a chunk; offer the next one. */
        if (st == TL_WANT_INPUT && r.consumed > 0 && tl_buf_len(&a->inbox) > 0)
            continue;
        if (st == TL_WANT_INPUT && r.consumed == 0 && n < tl_buf_len(&a->inbox))
            continue;
        break;
    }
    free(dst);
    if (st != TL_OK)
        a->last = st;
    return st;
}

int tp_handshake(tp_peer *c, tp_peer *s, int max_rounds)
{
    for (int i = 0; i < max_rounds; i++) {
        tl_status a = tp_wrap_to(c, s, NULL, 0, NULL);
        tl_status b = tp_unwrap(s);
        tl_status d = tp_wrap_to(s, c, NULL, 0, NULL);
        tl_status e = tp_unwrap(c);
        if (a == TL_ERROR || b == TL_ERROR || d == TL_ERROR || e == TL_ERROR)
            return -1;
        if (tl_engine_handshake_done(c->e) && tl_engine_handshake_done(s->e) &&
            tl_engine_pending_output(c->e) == 0 && tl_engine_pending_output(s->e) == 0 &&
            tl_buf_len(&c->inbox) == 0 && tl_buf_len(&s->inbox) == 0)
            return 0;
    }
    return -1;
}

int tp_send(tp_peer *a, tp_peer *b, const void *data, size_t len, int max_rounds)
{
    size_t off = 0, before = tl_buf_len(&b->app);
    for (int i = 0; i < max_rounds; i++) {
        size_t taken = 0;
        tl_status st = tp_wrap_to(a, b, (const uint8_t *)data + off, len - off, &taken);
        off += taken;
        tp_unwrap(b);
        if (st == TL_ERROR || st == TL_CLOSED)
            return -1;
        if (off == len && tl_buf_len(&b->app) - before == len)
            return 0;
    }
    return -1;
}

void tp_pair_init(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, const tl_engine_opts *copts,
                  const tl_engine_opts *sopts)
{
    tl_engine_opts co = {.server_name = "localhost"};
    tp_peer_init(&p->c, tl_engine_new(cctx, copts ? copts : &co));
    tp_peer_init(&p->s, tl_engine_new(sctx, sopts));
    if (!p->c.e || !p->s.e)
        exit(2);
}

void tp_pair_free(tp_pair *p)
{
    tp_peer_free(&p->c);
    tp_peer_free(&p->s);
}

void tp_pair_named(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name)
{
    tl_engine_opts co = {.server_name = name};
    tp_pair_init(p, cctx, sctx, &co, NULL);
}

int tp_shake(tp_pair *p)
{
    int rc = tp_handshake(&p->c, &p->s, 10);
    if (rc != 0) {
        tp_wrap_to(&p->s, &p->c, NULL, 0, NULL);
        tp_unwrap(&p->c);
        tp_wrap_to(&p->c, &p->s, NULL, 0, NULL);
        tp_unwrap(&p->s);
    }
    return rc;
}

bool tp_shake_ok(tp_pair *p, int *failures)
{
    if (tp_shake(p) == 0)
        return true;
    fprintf(stderr, "  handshake failed: client \"%s\" | server \"%s\"\n", tl_engine_error(p->c.e),
            tl_engine_error(p->s.e));
    (*failures)++;
    return false;
}

bool tp_connect_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name, int *failures)
{
    tp_pair p;
    tp_pair_named(&p, cctx, sctx, name);
    bool ok = tp_shake_ok(&p, failures);
    if (ok) {
        ok = tp_send(&p.c, &p.s, "q", 1, 10) == 0 && tp_send(&p.s, &p.c, "a", 1, 10) == 0;
        if (!ok) {
            fprintf(stderr, "  data after the handshake did not arrive\n");
            (*failures)++;
        }
    }
    tp_pair_free(&p);
    return ok;
}

void tp_free_ctxs(tl_tls_ctx *a, tl_tls_ctx *b)
{
    tl_tls_ctx_free(a);
    tl_tls_ctx_free(b);
}

tl_certgen_pair tp_issue(const char *cn, bool ca, long nb, long na, const tl_certgen_pair *issuer)
{
    tl_certgen_spec spec = {.key = TL_KEY_ECDSA_P256, .common_name = cn, .is_ca = ca,
                            .not_before = nb, .not_after = na};
    if (!ca) {
        spec.dns_names = NAMES;
        spec.n_dns = 2;
        spec.ip_addrs = IPS;
        spec.n_ip = 2;
    }
    tl_certgen_pair out = {0};
    char err[256];
    if (tl_certgen_issue(&spec, issuer, &out, err, sizeof err) != 0) {
        fprintf(stderr, "  issue %s: %s\n", cn, err);
        _exit(1);
    }
    return out;
}

char *tp_cat_pem(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + (b ? strlen(b) : 0) + (c ? strlen(c) : 0) + 1;
    char *s = malloc(n);
    if (!s) {
        fprintf(stderr, "  tp_cat_pem: out of memory\n");
        _exit(1);
    }
    snprintf(s, n, "%s%s%s", a, b ? b : "", c ? c : "");
    return s;
}

void tp_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}
