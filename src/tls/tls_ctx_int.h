/*
 * src/tls/tls_ctx_int.h - the configuration's private structure, shared by tls_ctx*.c only.
 */
#ifndef TLSLOOP_TLS_CTX_INT_H
#define TLSLOOP_TLS_CTX_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "tls/tli_tls.h"
#include "util/tli.h"

/* What a file above tls_ctx_core.c attaches to a configuration and must freeze and free with it:
 * the SNI names, registered by tls_ctx_sni.c with the first one. */
typedef struct tli_ctx_part_ops {
    int (*freeze)(tl_tls_ctx *ctx);   /* 0, or -1 with ctx's error set (under its freeze lock) */
    void (*free)(tl_tls_ctx *ctx);    /* on the last reference */
} tli_ctx_part_ops;

/* One SNI name of a default configuration (tls_ctx_sni.c). */
typedef struct tli_sni_name {
    char *name;                  /* lower case; for a wildcard, what follows "*." */
    size_t len;
    bool wildcard;
    tl_tls_ctx *ctx;             /* owned reference */
} tli_sni_name;

/* A loaded leaf certificate's expiry, one per key type (a new one of the same type replaces it,
 * as OpenSSL does). */
#define TLI_MAX_LEAVES 4
typedef struct tli_leaf {
    int key_type;                /* EVP_PKEY_get_base_id */
    int64_t not_after;           /* Unix time */
} tli_leaf;

struct tl_tls_ctx {
    SSL_CTX *ssl;
    const char *propq;           /* the SSL_CTX's property query (static), NULL: none */
    tl_kdf kdf;                  /* the key derivation in use (tls_ctx_kdf.c) */
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
    /* Settings an SSL copies from its SSL_CTX when it is made and that OpenSSL has no getter for,
     * kept for SNI to copy again when it switches a connection (tls_ctx_sni.c). */
    char *groups;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    unsigned sid_len;
    bool sid_custom;             /* set by tl_tls_ctx_set_session_id_context */
    bool sid_derived;            /* derived from the name it was first attached under */
    /* SNI: a default configuration's names, or whether this one is attached under a name. */
    tli_sni_name *names;
    size_t n_names;
    const tli_ctx_part_ops *names_ops; /* set with the first name (tls_ctx_sni.c) */
    bool is_named;
    /* tl_tls_ctx_set_alpn_switch (tls_ctx_sni.c): the protocol (wire form: length, then name) */
    unsigned char *switch_proto;
    tl_tls_alpn_switch_fn switch_fn;
    void *switch_data;
    tli_leaf leaves[TLI_MAX_LEAVES];
    unsigned n_leaves;
    _Atomic(SSL *) probe;        /* asks the session cache (tls_ctx_probe.c); made on demand */
    /* OCSP (tls_ctx_ocsp.c): each leaf's certificate and chain, kept when it is loaded, and the
     * staple served for it; freed through ocsp_ops. */
    struct tli_leaf_ocsp {
        X509 *x509;
        STACK_OF(X509) *chain;   /* the certificates given after the leaf */
        struct tli_staple *_Atomic staple;
    } ocsp[TLI_MAX_LEAVES];
    const tli_ctx_part_ops *ocsp_ops;
    char err[512];
    tl_error_kind err_kind;
};

/* Errors (tls_ctx_core.c). Begin a setter: clears the last error; fails once the configuration is frozen. */
int tli_ctx_mutable(tl_tls_ctx *ctx, const char *what);
/* Record an error (with OpenSSL's queued reasons after `what`) and return -1. */
int tli_ctx_fail_ssl(tl_tls_ctx *ctx, tl_error_kind kind, const char *what);
int tli_ctx_failf(tl_tls_ctx *ctx, tl_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ClientHello rules beyond OpenSSL's (tls_ctx_hello.c), from the ClientHello callback: 0, or -1
 * with the alert to send and the reason queued in OpenSSL's error queue. */
int tli_ctx_hello_check(SSL *ssl, int *alert);
/* From the ClientHello callback with lookups on (TL_ENGINE_SESSION_LOOKUP): whether the hello
 * resumes a TLS 1.2 session by an ID the session cache does not hold and no ticket will resume
 * it; then the ID is copied into st. Sets st->hello_ticket. */
bool tli_ctx_hello_wants_lookup(SSL *ssl, tli_ssl_state *st);
/* Whether ctx's session cache holds a TLS 1.2 session with this ID (tls_ctx_probe.c); and the
 * probe's end, from tl_tls_ctx_free. */
bool tli_ctx_cache_has(tl_tls_ctx *ctx, const unsigned char *id, unsigned len);
void tli_ctx_probe_free(tl_tls_ctx *ctx);

/* SNI (tls_ctx_sni.c). From the ClientHello callback: switch the connection to the named
 * configuration its server_name selects. Returns 0 (also when nothing changes), or -1 with the
 * alert to send. */
int tli_ctx_sni_switch(SSL *ssl, tl_tls_ctx *dflt, int *alert);
/* From the ClientHello callback, before the SNI switch: 1 when tl_tls_ctx_set_alpn_switch's hook
 * took the connection (switched), 0 when not, -1 with the alert to send. */
int tli_ctx_alpn_switch(SSL *ssl, tl_tls_ctx *dflt, int *alert);

/* OCSP (tls_ctx_ocsp.c): keep leaf `slot`'s certificate and chain (references taken) for
 * stapling, replacing what that slot held. 0, or -1 with ctx's error set. */
int tli_ctx_keep_leaf(tl_tls_ctx *ctx, unsigned slot, X509 *leaf, STACK_OF(X509) *chain);

/* Key derivation (tls_ctx_kdf.c): the property query for a new SSL_CTX asked to use `want`.
 * NULL for TL_KDF_OPENSSL, or when tlsloop's cannot be used now (FIPS mode, the provider not
 * loaded, default properties that select another provider's), with *why (may be NULL) saying
 * so; "?tlsloop.kdf=yes" otherwise, the provider loaded on the first such call. */
const char *tli_kdf_propq(tl_kdf want, const char **why);
/* HMAC contexts the provider has made (tests: libssl's MACs do come to it). */
size_t tli_kdf_hmacs_made(void);

#endif /* TLSLOOP_TLS_CTX_INT_H */
