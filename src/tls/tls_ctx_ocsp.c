/* tls_ctx_ocsp.c - OCSP on a configuration: the staple slots a server serves from memory (one per
 * leaf certificate, replaced atomically while every worker's handshakes read them, through
 * SSL_CTX_set_tlsext_status_cb), and a client's request for a staple (tlsloop/ocsp.h,
 * tli_ocsp.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "tls/tli_ocsp.h"
#include "tls/tls_ctx_int.h"

/* ---- staple slots ------------------------------------------------------------------------ */

struct tli_staple {
    atomic_int refs;
    pthread_mutex_t lock;          /* held only to copy or replace the bytes */
    uint8_t *der;
    size_t len;
    int64_t expires;
};

tli_staple *tli_staple_new(void)
{
    tli_staple *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

tli_staple *tli_staple_ref(tli_staple *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void tli_staple_free(tli_staple *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(s->der);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int tli_staple_set(tli_staple *s, const uint8_t *der, size_t len, int64_t expires)
{
    uint8_t *copy = len ? malloc(len) : NULL;
    if (!copy)
        return -1;
    memcpy(copy, der, len);
    pthread_mutex_lock(&s->lock);
    uint8_t *old = s->der;
    s->der = copy;
    s->len = len;
    s->expires = expires;
    pthread_mutex_unlock(&s->lock);
    free(old);
    return 0;
}

void tli_staple_clear(tli_staple *s)
{
    pthread_mutex_lock(&s->lock);
    uint8_t *old = s->der;
    s->der = NULL;
    s->len = 0;
    s->expires = 0;
    pthread_mutex_unlock(&s->lock);
    free(old);
}

bool tli_staple_valid(tli_staple *s, int64_t now, int64_t *expires)
{
    pthread_mutex_lock(&s->lock);
    bool ok = s->der && s->expires > now;
    if (expires)
        *expires = ok ? s->expires : 0;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* A copy for OpenSSL (which frees it with OPENSSL_free) of a response still valid now. */
static unsigned char *staple_copy(tli_staple *s, int64_t now, size_t *len)
{
    unsigned char *copy = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->der && s->expires > now && (copy = OPENSSL_malloc(s->len))) {
        memcpy(copy, s->der, s->len);
        *len = s->len;
    }
    pthread_mutex_unlock(&s->lock);
    return copy;
}

/* ---- on a configuration ------------------------------------------------------------------ */

/* The status_request callback of a server configuration (after SNI, that of the named one:
 * OpenSSL calls the current SSL_CTX's), once the certificate is chosen. A response that has
 * expired since it was fetched is never sent: the handshake goes on without one. */
static int status_cb(SSL *ssl, void *arg)
{
    tl_tls_ctx *ctx = arg;
    X509 *cert = SSL_get_certificate(ssl);
    tli_staple *st = NULL;
    for (unsigned i = 0; cert && i < TLI_MAX_LEAVES && !st; i++)
        if (ctx->ocsp[i].x509 && (ctx->ocsp[i].x509 == cert || !X509_cmp(ctx->ocsp[i].x509, cert)))
            st = atomic_load_explicit(&ctx->ocsp[i].staple, memory_order_acquire);
    size_t len = 0;
    unsigned char *der = st ? staple_copy(st, (int64_t)time(NULL), &len) : NULL;
    if (!der)
        return SSL_TLSEXT_ERR_NOACK;
    if (!SSL_set_tlsext_status_ocsp_resp(ssl, der, (long)len)) {
        OPENSSL_free(der);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

static void ocsp_free(tl_tls_ctx *ctx)
{
    for (unsigned i = 0; i < TLI_MAX_LEAVES; i++) {
        X509_free(ctx->ocsp[i].x509);
        sk_X509_pop_free(ctx->ocsp[i].chain, X509_free);
        tli_staple_free(atomic_load(&ctx->ocsp[i].staple));
        ctx->ocsp[i].x509 = NULL;
        ctx->ocsp[i].chain = NULL;
        atomic_store(&ctx->ocsp[i].staple, NULL);
    }
}

static const tli_ctx_part_ops ocsp_ops = {.freeze = NULL, .free = ocsp_free};

int tli_ctx_keep_leaf(tl_tls_ctx *ctx, unsigned slot, X509 *leaf, STACK_OF(X509) *chain)
{
    if (slot >= TLI_MAX_LEAVES)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "keep_leaf: no such slot");
    STACK_OF(X509) *copy = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
    if (!copy || !X509_up_ref(leaf)) {
        sk_X509_pop_free(copy, X509_free);
        return tli_ctx_failf(ctx, TL_ERR_RESOURCE, "out of memory");
    }
    struct tli_leaf_ocsp *o = &ctx->ocsp[slot];
    X509_free(o->x509);
    sk_X509_pop_free(o->chain, X509_free);
    tli_staple_free(atomic_exchange(&o->staple, NULL));   /* a new certificate: not its staple */
    o->x509 = leaf;
    o->chain = copy;
    ctx->ocsp_ops = &ocsp_ops;
    if (ctx->role == TL_ROLE_SERVER) {
        SSL_CTX_set_tlsext_status_cb(ctx->ssl, status_cb);
        SSL_CTX_set_tlsext_status_arg(ctx->ssl, ctx);
    }
    return 0;
}

size_t tli_tls_ctx_members(tl_tls_ctx *dflt, tl_tls_ctx **out, size_t max)
{
    size_t n = 0;
    if (max > 0)
        out[0] = dflt;
    n = 1;
    for (size_t i = 0; i < dflt->n_names; i++) {
        tl_tls_ctx *c = dflt->names[i].ctx;
        bool seen = c == dflt;
        for (size_t j = 0; j < n && j < max && !seen; j++)
            seen = out[j] == c;
        if (seen)
            continue;
        if (n < max)
            out[n] = c;
        n++;
    }
    return n;
}

size_t tli_tls_ctx_leaf_count(const tl_tls_ctx *ctx)
{
    return ctx->n_leaves;
}

X509 *tli_tls_ctx_leaf(const tl_tls_ctx *ctx, size_t i, STACK_OF(X509) **chain)
{
    if (i >= ctx->n_leaves || !ctx->ocsp[i].x509)
        return NULL;
    if (chain)
        *chain = ctx->ocsp[i].chain;
    return ctx->ocsp[i].x509;
}

int tli_tls_ctx_set_staple(tl_tls_ctx *ctx, size_t i, tli_staple *s)
{
    if (i >= ctx->n_leaves || !ctx->ocsp[i].x509)
        return -1;
    tli_staple *old = atomic_exchange_explicit(&ctx->ocsp[i].staple, s ? tli_staple_ref(s) : NULL,
                                               memory_order_acq_rel);
    tli_staple_free(old);
    return 0;
}

/* ---- the client ---------------------------------------------------------------------------- */

int tl_tls_ctx_request_ocsp(tl_tls_ctx *ctx, bool on)
{
    if (tli_ctx_mutable(ctx, "request_ocsp") != 0)
        return -1;
    if (ctx->role != TL_ROLE_CLIENT)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "request_ocsp: only a client asks for a stapled "
                                                "response (a server staples with ocsp-staple)");
    if (!SSL_CTX_set_tlsext_status_type(ctx->ssl, on ? TLSEXT_STATUSTYPE_ocsp : -1) && on)
        return tli_ctx_fail_ssl(ctx, TL_ERR_RESOURCE, "request_ocsp");
    return 0;
}
