/*
 * src/tli.h - library-internal declarations shared between modules' .c files.
 *
 * Nothing here is API: the names use the reserved prefix tli_ and are not exported from the shared
 * library. Dependency rule: engine uses tls_ctx; tls_ctx knows nothing of the engine and reaches
 * per-connection state only through tli_ssl_state, which the engine attaches to each SSL.
 */
#ifndef TLSLOOP_TLI_H
#define TLSLOOP_TLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include <tlsloop/status.h>
#include <tlsloop/tls_ctx.h>

/* Per-connection state that the configuration's OpenSSL callbacks need. The engine embeds it and
 * attaches it with SSL_set_app_data. */
typedef struct tli_ssl_state {
    bool delegate;          /* pause at the pause points (TL_ENGINE_DELEGATE_TASKS) */
    bool in_task;           /* the delegated step runs now: do not pause */
    bool paused;            /* a pause point asked OpenSSL to stop */
    SSL_SESSION *session;   /* client: newest session received (our own duplicate) */
    tl_tls_ctx *session_cfg; /* server: the configuration the engine was made from, once SNI has
                              * switched the SSL to a named one (it keeps the ticket keys) */
} tli_ssl_state;

/* The SSL_CTX of a configuration (borrowed). */
SSL_CTX *tli_tls_ctx_ssl_ctx(const tl_tls_ctx *ctx);
/* Freeze for use by an engine. Returns 0, or -1 with the reason in msg. */
int tli_tls_ctx_freeze(tl_tls_ctx *ctx, char *msg, size_t msglen);
/* The configuration's verification policy. */
tl_verify tli_tls_ctx_verify(const tl_tls_ctx *ctx);

/* Ticket key ring: the OpenSSL ticket callback body (see SSL_CTX_set_tlsext_ticket_key_evp_cb).
 * renew: ask for a new ticket even when the current key opened this one. */
int tli_ticket_ring_crypt(tl_ticket_ring *ring, unsigned char name[16], unsigned char *iv,
                          EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc, bool renew);

/* Write "prefix: reason[: reason...]" from the thread's OpenSSL error queue into buf, draining the
 * queue. Without queued errors, writes only the prefix. Returns the kind the errors suggest
 * (TL_ERR_PROTOCOL, or TL_ERR_RESOURCE for malloc failures). */
tl_error_kind tli_drain_errors(char *buf, size_t len, const char *prefix);

/* SipHash-2-4 of data under a 128-bit key (limits.c): a hash that chosen inputs cannot flood. */
uint64_t tli_siphash24(const uint64_t key[2], const void *data, size_t len);

/* snprintf into a fixed buffer, always terminated, never failing. */
void tli_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prometheus text (format 0.0.4) for the metrics pages (server_metrics.c): append a line, a
 * family's HELP and TYPE lines, a family with its one sample, or one sample of a family with a
 * label (its value escaped as the format wants); names get the "tlsloop_" prefix. rc turns -1 once
 * a line did not fit or memory ran out. */
typedef struct tli_prom {
    struct tl_buf *out;
    int rc;
} tli_prom;
void tli_prom_emit(tli_prom *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tli_prom_family(tli_prom *w, const char *name, const char *type, const char *help);
void tli_prom_one(tli_prom *w, const char *name, const char *type, const char *help, double v);
void tli_prom_sample(tli_prom *w, const char *name, const char *label, const char *value,
                     uint64_t v);

#endif /* TLSLOOP_TLI_H */
