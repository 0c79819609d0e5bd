/*
 * bench/bench_engine/handshakes.c - the certificates and configurations, the buffers both peers
 * use, the client, the buffer-mode server of each path (eng_* and raw_*) and the handshakes.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_engine.h"

/* ---- buffers ----------------------------------------------------------------------------- */

uint8_t *src;          /* SRC_SIZE bytes of pattern */
uint8_t sapp[REC];     /* the server's application buffer */
uint8_t capp[CLI_APP]; /* the client's */
nbuf c2s, s2c;         /* network bytes between them (buffer mode) */

void nbuf_init(nbuf *b, size_t cap)
{
    b->p = malloc(cap);
    b->len = 0;
    b->cap = cap;
    if (!b->p)
        die("out of memory");
}

/* Check application bytes the client received against the stream position *pos. */
void verify_stream(const uint8_t *p, size_t n, uint64_t *pos)
{
    while (n > 0) {
        size_t off = (size_t)(*pos % SRC_SIZE), k = SRC_SIZE - off;
        if (k > n)
            k = n;
        if (memcmp(p, src + off, k) != 0)
            die("the client received wrong bytes at stream offset %llu", (unsigned long long)*pos);
        p += k;
        n -= k;
        *pos += k;
    }
}

/* ---- certificates and configurations ----------------------------------------------------- */

tl_certgen_pair make_cert(tl_key_type key)
{
    static const char *const names[] = {"localhost"};
    tl_certgen_spec spec = {
        .key = key, .dns_names = names, .n_dns = 1, .not_before = -3600, .not_after = 86400};
    tl_certgen_pair pair;
    char err[256];
    if (tl_certgen_issue(&spec, NULL, &pair, err, sizeof err) != 0)
        die("certificate: %s", err);
    return pair;
}

static void must(int rc, tl_tls_ctx *ctx, const char *what)
{
    if (rc != 0)
        die("%s: %s", what, tl_tls_ctx_error(ctx));
}

tl_tls_ctx *server_cfg(const tl_certgen_pair *leaf, bool tickets)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_SERVER);
    if (!ctx)
        die("out of memory");
    must(tl_tls_ctx_use_cert_pem(ctx, leaf->cert_pem, leaf->key_pem), ctx, "server certificate");
    if (!tickets)
        must(tl_tls_ctx_set_tickets(ctx, false), ctx, "tickets off");
    return ctx;
}

/* The client picks the cipher: it offers only the one measured. It does not verify (that is
 * client work only; the server's work is the same). */
tl_tls_ctx *client_cfg(int max_version)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    if (!ctx)
        die("out of memory");
    must(tl_tls_ctx_set_verify(ctx, TL_VERIFY_NONE), ctx, "client verify");
    must(tl_tls_ctx_set_versions(ctx, TL_TLS1_2, max_version), ctx, "client versions");
    if (opt.chacha)
        must(tl_tls_ctx_set_ciphers(ctx,
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
                                    "TLS_CHACHA20_POLY1305_SHA256"),
             ctx, "client ciphers");
    else
        must(tl_tls_ctx_set_ciphers(ctx,
                                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
                                    "TLS_AES_128_GCM_SHA256"),
             ctx, "client ciphers");
    return ctx;
}

void server_side_init(server_side *s, tl_tls_ctx *cfg)
{
    s->cfg = cfg;
    s->anchor = tl_engine_new(cfg, NULL);
    if (!s->anchor)
        die("out of memory");
    s->ssl_ctx = SSL_get_SSL_CTX(tl_engine_ssl(s->anchor));
}

static uint64_t tickets_issued(const server_side *s)
{
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s->cfg), &st);
    return st.issued;
}

/* ---- the client (an engine, the same for both server paths; never timed) ----------------- */

/* Append everything the client has to send to nb. */
void cli_flush_to(tl_engine *c, nbuf *nb)
{
    for (int guard = 0; guard < 1000; guard++) {
        tl_result r = tl_engine_wrap(c, NULL, 0, nb->p + nb->len, nb->cap - nb->len);
        nb->len += r.produced;
        if (r.status == TL_ERROR)
            die("client wrap: %s", tl_engine_error(c));
        if (tl_engine_pending_output(c) == 0)
            return;
        if (r.produced == 0)
            die("client output does not fit its buffer");
    }
    die("client wrap does not end");
}

/* Give nb to the client; application bytes are checked against the stream at *pos (NULL: none
 * expected). */
void cli_feed(tl_engine *c, nbuf *nb, uint64_t *pos)
{
    size_t off = 0;
    for (;;) {
        tl_result r = tl_engine_unwrap(c, nb->p + off, nb->len - off, capp, sizeof capp);
        off += r.consumed;
        if (r.produced) {
            if (!pos)
                die("the client received unexpected data");
            verify_stream(capp, r.produced, pos);
        }
        if (r.status == TL_OK)
            continue;
        if (r.status != TL_WANT_INPUT)
            die("client unwrap: %s (%s)", tl_status_name(r.status), tl_engine_error(c));
        if (off < nb->len && r.consumed > 0)
            continue;
        break;
    }
    if (off != nb->len)
        die("the client left %zu network bytes", nb->len - off);
    nb->len = 0;
}

/* ---- the server in buffer mode: engine or raw -------------------------------------------- */

static NOINLINE void eng_new(srv *s, const server_side *side)
{
    s->e = tl_engine_new(side->cfg, NULL);
    if (!s->e)
        die("out of memory");
}

static NOINLINE void raw_new(srv *s, const server_side *side)
{
    s->ssl = SSL_new(side->ssl_ctx);
    s->rb = BIO_new(BIO_s_mem());
    s->wb = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rb || !s->wb)
        die("SSL_new / BIO_new failed");
    SSL_set_bio(s->ssl, s->rb, s->wb);
    SSL_set_accept_state(s->ssl);
}

void srv_new(srv *s, int path, const server_side *side)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    if (path == P_ENGINE)
        eng_new(s, side);
    else
        raw_new(s, side);
}

/* One input event: the network bytes in `in` arrive; the server's output is appended to out.
 * Engine: unwrap until it wants input, then wrap while it says NEED_WRAP. */
static NOINLINE void eng_feed(srv *s, nbuf *in, nbuf *out)
{
    size_t off = 0;
    tl_result r;
    for (;;) {
        r = tl_engine_unwrap(s->e, in->p + off, in->len - off, sapp, sizeof sapp);
        off += r.consumed;
        if (r.status == TL_OK)
            continue;
        if (r.status == TL_WANT_INPUT && off < in->len && r.consumed > 0)
            continue;
        break;
    }
    if (r.status != TL_WANT_INPUT)
        die("server unwrap: %s (%s)", tl_status_name(r.status), tl_engine_error(s->e));
    while (r.hs == TL_HS_NEED_WRAP) {
        r = tl_engine_wrap(s->e, NULL, 0, out->p + out->len, out->cap - out->len);
        out->len += r.produced;
        if (r.status != TL_OK && r.status != TL_WANT_INPUT)
            die("server wrap: %s (%s)", tl_status_name(r.status), tl_engine_error(s->e));
    }
}

/* Raw: what a correct non-blocking server does with memory BIOs. */
static NOINLINE void raw_feed(srv *s, nbuf *in, nbuf *out)
{
    ERR_clear_error();
    if (in->len && BIO_write(s->rb, in->p, (int)in->len) != (int)in->len)
        die("BIO_write");
    if (!SSL_is_init_finished(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);
        if (r != 1 && SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
            die("raw server: SSL_do_handshake failed");
    }
    if (SSL_is_init_finished(s->ssl)) {
        /* data may have come with the client's Finished: a server must look now */
        size_t n;
        while (SSL_read_ex(s->ssl, sapp, sizeof sapp, &n))
            ;
        if (SSL_get_error(s->ssl, 0) != SSL_ERROR_WANT_READ)
            die("raw server: SSL_read_ex failed");
    }
    size_t pend = BIO_ctrl_pending(s->wb);
    if (pend > 0) {
        if (pend > out->cap - out->len ||
            BIO_read(s->wb, out->p + out->len, (int)pend) != (int)pend)
            die("raw server: output does not fit");
        out->len += pend;
    }
}

void srv_feed(srv *s, nbuf *in, nbuf *out)
{
    if (s->path == P_ENGINE)
        eng_feed(s, in, out);
    else
        raw_feed(s, in, out);
    in->len = 0;
}

bool srv_done(const srv *s)
{
    return s->path == P_ENGINE ? tl_engine_handshake_done(s->e) : SSL_is_init_finished(s->ssl);
}

SSL *srv_ssl(const srv *s) { return s->path == P_ENGINE ? tl_engine_ssl(s->e) : s->ssl; }

static NOINLINE void eng_free(srv *s) { tl_engine_free(s->e); }

static NOINLINE void raw_free(srv *s)
{
    /* Keep the session cached as the engine does after a complete exchange (OpenSSL drops the
     * session of an SSL freed without SENT_SHUTDOWN). */
    SSL_set_shutdown(s->ssl, SSL_get_shutdown(s->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(s->ssl);
}

void srv_free(srv *s)
{
    if (s->path == P_ENGINE)
        eng_free(s);
    else
        raw_free(s);
}

/* ---- handshakes -------------------------------------------------------------------------- */

/* One connection: the client's ClientHello, the server's flight, the client's Finished, the
 * server's answer (TLS 1.3: its tickets), then the client reads them. Returns the server's CPU.
 * *sess: the session to offer (NULL: none); with renew, replaced by the newest one. */
static uint64_t one_handshake(const server_side *side, tl_tls_ctx *ccfg, int path,
                              tl_session **sess, bool renew, hs_check *chk)
{
    tl_engine_opts co = {.server_name = "localhost", .session = sess ? *sess : NULL};
    tl_engine *c = tl_engine_new(ccfg, &co);
    if (!c)
        die("out of memory");
    srv s;
    c2s.len = s2c.len = 0;
    cli_flush_to(c, &c2s);

    uint64_t t0 = cpu_ns();
    srv_new(&s, path, side);
    srv_feed(&s, &c2s, &s2c);
    uint64_t t = lap(t0);

    chk->server_bytes += s2c.len;
    cli_feed(c, &s2c, NULL);
    cli_flush_to(c, &c2s);

    t0 = cpu_ns();
    srv_feed(&s, &c2s, &s2c);
    bool done = srv_done(&s);
    int reused = SSL_session_reused(srv_ssl(&s));
    srv_free(&s);
    t += lap(t0);

    chk->handshakes++;
    chk->reused += reused == 1;
    chk->server_bytes += s2c.len;
    cli_feed(c, &s2c, NULL); /* TLS 1.3: the tickets; TLS 1.2: the server's Finished */
    if (!done || !tl_engine_handshake_done(c))
        die("%s handshake did not complete", PATH_NAME[path]);
    if (renew && sess) {
        tl_session *next = tl_engine_get_session(c);
        if (!next)
            die("no session after a handshake");
        tl_session_free(*sess);
        *sess = next;
    }
    tl_engine_free(c);
    return t;
}

uint64_t run_handshakes(const server_side *side, tl_tls_ctx *ccfg, hs_kind kind, int path,
                        int n, hs_check *chk)
{
    tl_session *sess = NULL;
    if (kind != HS_FULL) {
        hs_check scratch = {0};
        one_handshake(side, ccfg, path, &sess, true, &scratch); /* untimed: the first session */
    }
    uint64_t tickets0 = tickets_issued(side), t = 0;
    for (int i = 0; i < n; i++)
        t += one_handshake(side, ccfg, path, kind == HS_FULL ? NULL : &sess, kind == HS_RESUME13,
                           chk);
    chk->tickets += tickets_issued(side) - tickets0;
    tl_session_free(sess);
    return t;
}
