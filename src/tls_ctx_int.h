/*
 * src/tls_ctx_int.h - the configuration's private structure, shared by tls_ctx*.c only.
 */
#ifndef TLSLOOP_TLS_CTX_INT_H
#define TLSLOOP_TLS_CTX_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "tli.h"

struct tl_tls_ctx {
    SSL_CTX *ssl;
    tl_role role;
    atomic_int refs;
    atomic_bool frozen;          /* set by the first engine on a complete configuration; final */
    pthread_mutex_t freeze_lock;
    tl_verify verify;
    bool has_cert;               /* at least one certificate and key loaded */
    bool has_ca;                 /* trust anchors loaded */
    bool allow_expired;
    tl_ticket_ring *ring;        /* server: ticket keys (owned reference) */
    unsigned char *alpn_wire;    /* ALPN list in wire format, or NULL */
    size_t alpn_len;
    char err[512];
    tl_error_kind err_kind;
};

/* Begin a setter: clears the last error; fails once the configuration is frozen. */
int tli_ctx_mutable(tl_tls_ctx *ctx, const char *what);
/* Record an error (with OpenSSL's queued reasons after `what`) and return -1. */
int tli_ctx_fail_ssl(tl_tls_ctx *ctx, tl_error_kind kind, const char *what);
int tli_ctx_failf(tl_tls_ctx *ctx, tl_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* TLSLOOP_TLS_CTX_INT_H */
