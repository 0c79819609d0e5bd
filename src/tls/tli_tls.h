/* tli_tls.h - what the tls layer's configuration shares, privately, with the engine and the layers
 * above it: the per-SSL state its callbacks need, a frozen configuration's SSL_CTX and policy, the
 * ticket key ring's callback body, and OpenSSL's error queue as a message. */
#ifndef TLSLOOP_TLI_TLS_H
#define TLSLOOP_TLI_TLS_H

#include <stdbool.h>
#include <stddef.h>

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
    /* Server, TL_ENGINE_SESSION_LOOKUP: a session looked up outside the process by its ID. */
    bool lookup;            /* the owner looks sessions up */
    uint8_t lookup_state;   /* TLI_LOOKUP_* */
    bool hello_ticket;      /* the ClientHello takes tickets (and we send them): no need to store */
    unsigned lookup_id_len;
    unsigned char lookup_id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    SSL_SESSION *store_session; /* server: a new TLS 1.2 session for the owner's store */
} tli_ssl_state;

#define TLI_LOOKUP_NONE 0   /* not asked yet */
#define TLI_LOOKUP_WAIT 1   /* the ClientHello callback paused for it */
#define TLI_LOOKUP_DONE 2

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

#endif /* TLSLOOP_TLI_TLS_H */
