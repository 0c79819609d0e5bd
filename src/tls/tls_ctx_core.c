/* tls_ctx_core.c - the configuration's own life, which the other tls_ctx*.c files build on: its
 * errors, references and freeing, freezing, and the getters. It calls none of them: what the SNI
 * file attaches is frozen and freed through the hooks it registers (names_ops). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/tls_ctx_int.h"
#include "tls/tli_tls.h"

/* ---- errors ------------------------------------------------------------------------------ */

tl_error_kind tli_drain_errors(char *buf, size_t len, const char *prefix)
{
    tl_error_kind kind = TL_ERR_PROTOCOL;
    size_t off = 0;
    tli_fmt(buf, len, "%s", prefix);
    off = strlen(buf);
    unsigned long code;
    const char *last = NULL;
    while ((code = ERR_get_error()) != 0) {
        const char *reason = ERR_reason_error_string(code);
        if (ERR_GET_REASON(code) == ERR_R_MALLOC_FAILURE)
            kind = TL_ERR_RESOURCE;
        if (!reason)
            reason = "unknown OpenSSL error";
        if (last && strcmp(last, reason) == 0)
            continue; /* OpenSSL often repeats one reason down the call stack */
        last = reason;
        if (off + 3 < len) {
            tli_fmt(buf + off, len - off, "%s%s", off ? ": " : "", reason);
            off = strlen(buf);
        }
    }
    return kind;
}

int tli_ctx_failf(tl_tls_ctx *ctx, tl_error_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    ctx->err_kind = kind;
    ERR_clear_error();
    return -1;
}

int tli_ctx_fail_ssl(tl_tls_ctx *ctx, tl_error_kind kind, const char *what)
{
    tl_error_kind k = tli_drain_errors(ctx->err, sizeof ctx->err, what);
    ctx->err_kind = k == TL_ERR_RESOURCE ? k : kind;
    return -1;
}

/* Setters run only before the configuration is in use. */
int tli_ctx_mutable(tl_tls_ctx *ctx, const char *what)
{
    if (!ctx)
        return -1;
    ctx->err[0] = '\0';
    ctx->err_kind = TL_ERR_NONE;
    ERR_clear_error();
    if (atomic_load_explicit(&ctx->frozen, memory_order_acquire))
        return tli_ctx_failf(ctx, TL_ERR_USAGE,
                    "%s: the configuration is in use and cannot change; make a new one", what);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

tl_tls_ctx *tl_tls_ctx_ref(tl_tls_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void tl_tls_ctx_free(tl_tls_ctx *ctx)
{
    if (!ctx)
        return;
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (ctx->names_ops)
        ctx->names_ops->free(ctx);
    tli_ctx_probe_free(ctx);
    if (ctx->ocsp_ops)
        ctx->ocsp_ops->free(ctx);
    SSL_CTX_free(ctx->ssl);
    tl_ticket_ring_free(ctx->ring);
    free(ctx->alpn_wire);
    free(ctx->switch_proto);
    free(ctx->groups);
    pthread_mutex_destroy(&ctx->freeze_lock);
    free(ctx);
}

tl_role tl_tls_ctx_role(const tl_tls_ctx *ctx) { return ctx->role; }
tl_kdf tl_tls_ctx_kdf(const tl_tls_ctx *ctx) { return ctx->kdf; }
const char *tl_tls_ctx_error(const tl_tls_ctx *ctx) { return ctx->err; }
tl_error_kind tl_tls_ctx_error_kind(const tl_tls_ctx *ctx) { return ctx->err_kind; }
SSL_CTX *tli_tls_ctx_ssl_ctx(const tl_tls_ctx *ctx) { return ctx->ssl; }
tl_verify tli_tls_ctx_verify(const tl_tls_ctx *ctx) { return ctx->verify; }

/* What a configuration must have before it can serve; run once, under the freeze lock. */
static int check_complete(tl_tls_ctx *ctx)
{
    if (ctx->role == TL_ROLE_SERVER) {
        if (!ctx->has_cert)
            return tli_ctx_failf(ctx, TL_ERR_CONFIG, "server configuration has no certificate: load one "
                                            "with tl_tls_ctx_use_cert_file or _pem");
        if (ctx->verify != TL_VERIFY_NONE && !ctx->has_ca)
            return tli_ctx_failf(ctx, TL_ERR_CONFIG, "server verifies client certificates but has no CA: "
                                            "set one with tl_tls_ctx_set_ca_file or _pem");
    } else if (ctx->verify != TL_VERIFY_NONE && !ctx->has_ca) {
        if (!SSL_CTX_set_default_verify_paths(ctx->ssl))
            return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, "cannot load the system CA store");
        ctx->has_ca = true;
    }
    return 0;
}

int tli_tls_ctx_freeze(tl_tls_ctx *ctx, char *msg, size_t msglen)
{
    if (atomic_load_explicit(&ctx->frozen, memory_order_acquire))
        return 0;
    int rc = 0;
    pthread_mutex_lock(&ctx->freeze_lock);
    if (!atomic_load_explicit(&ctx->frozen, memory_order_relaxed)) {
        ctx->err[0] = '\0';
        ctx->err_kind = TL_ERR_NONE;
        /* An incomplete configuration stays open: the caller may still add what is missing. */
        rc = check_complete(ctx);
        if (rc == 0 && ctx->names_ops)
            rc = ctx->names_ops->freeze(ctx);
        if (rc == 0)
            atomic_store_explicit(&ctx->frozen, true, memory_order_release);
        else if (msg)
            tli_fmt(msg, msglen, "%s", ctx->err);
    }
    pthread_mutex_unlock(&ctx->freeze_lock);
    return rc;
}

int tl_tls_ctx_freeze(tl_tls_ctx *ctx)
{
    return tli_tls_ctx_freeze(ctx, NULL, 0);
}
