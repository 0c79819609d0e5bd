/* tls_ctx_probe.c - whether a configuration's session cache holds a TLS 1.2 session ID, asked
 * from the ClientHello callback (before a session lookup outside the process).
 *
 * SSL_has_matching_session_id is the only public way to ask the cache (its lock is private), and
 * it matches the asking SSL's version too: during the ClientHello callback a server's SSL has no
 * version yet, so the connection's own SSL never matches. A probe SSL made with the TLS 1.2 server
 * method asks instead; the call only reads the probe (its version and session context) under the
 * cache's read lock, so one probe serves every thread. The method is deprecated for making
 * connections, not for this. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/ssl.h>

#include "tls/tls_ctx_int.h"

bool tli_ctx_cache_has(tl_tls_ctx *ctx, const unsigned char *id, unsigned len)
{
    SSL *probe = atomic_load_explicit(&ctx->probe, memory_order_acquire);
    if (!probe) {
        pthread_mutex_lock(&ctx->freeze_lock);
        probe = atomic_load_explicit(&ctx->probe, memory_order_relaxed);
        if (!probe && (probe = SSL_new(ctx->ssl)) != NULL) {
            if (SSL_set_ssl_method(probe, TLSv1_2_server_method()) == 1) {
                atomic_store_explicit(&ctx->probe, probe, memory_order_release);
            } else {
                SSL_free(probe);
                probe = NULL;
            }
        }
        pthread_mutex_unlock(&ctx->freeze_lock);
    }
    /* Without a probe (out of memory): "no", and the lookup outside costs a round trip. */
    return probe && SSL_has_matching_session_id(probe, id, len) == 1;
}

void tli_ctx_probe_free(tl_tls_ctx *ctx)
{
    SSL_free(atomic_load(&ctx->probe));
}
