/*
 * tests/support/tls_pair.h - two buffer-mode engines talking through memory, for unit tests.
 *
 * tp_init() makes, once per test process (before the tests fork), a test CA and leaf certificates
 * signed by it: RSA-2048 and ECDSA P-256 for "localhost", "good.test", 127.0.0.1 and ::1, plus a
 * client certificate. Nothing is read from disk; no private key is committed.
 *
 * A tp_peer wraps one engine with an inbox (network bytes sent to it, not yet unwrapped) and an
 * app buffer (plaintext it received). tp_step moves everything one peer can wrap into the other's
 * inbox and lets the other unwrap; net_chunk and dst_size limit the bytes per call, down to 1, to
 * exercise every partial path. Delegated tasks run inline or on a new thread (task_thread).
 * tp_shake, TP_SHAKE_OK and TP_CONNECT_OK are the handshakes configuration tests check with.
 */
#ifndef TLSLOOP_TLS_PAIR_H
#define TLSLOOP_TLS_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tlsloop/buf.h>
#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

typedef struct tp_certs {
    tl_certgen_pair ca;
    tl_certgen_pair rsa;       /* RSA-2048 leaf for localhost, good.test, 127.0.0.1, ::1 */
    tl_certgen_pair ecdsa;     /* ECDSA P-256 leaf for the same names */
    tl_certgen_pair client;    /* ECDSA client certificate "client.test" */
    tl_certgen_pair other_ca;  /* an unrelated CA */
} tp_certs;

extern tp_certs tp;

/* Make the certificates (once). */
void tp_init(void);

/* A server configuration with one leaf (rsa or ecdsa), versions min..max (0: defaults). */
/* The key derivation tp_server_ctx and tp_client_ctx ask for (default TL_KDF_OPENSSL). */
extern tl_kdf tp_kdf;
tl_tls_ctx *tp_server_ctx(const tl_certgen_pair *leaf, int min_v, int max_v);
/* A client configuration trusting the test CA, versions min..max (0: defaults). */
tl_tls_ctx *tp_client_ctx(int min_v, int max_v);

typedef struct tp_peer {
    tl_engine *e;
    tl_buf inbox;          /* network bytes for this peer, not yet unwrapped */
    tl_buf app;            /* plaintext this peer received */
    size_t net_chunk;      /* most network bytes per unwrap (0: all) */
    size_t dst_size;       /* destination size for wrap and unwrap (0: 17000) */
    bool task_thread;      /* run delegated tasks on another thread */
    tl_status last;        /* last status other than TL_OK from unwrap */
    int tasks_run;
    int finished_reports;  /* how often TL_HS_FINISHED was reported */
    bool eof_delivered;    /* tl_engine_set_input_eof was called */
    /* Session lookups (TL_ENGINE_SESSION_LOOKUP): answered with lookup_der (NULL: nothing). */
    const void *lookup_der;
    size_t lookup_der_len;
    int lookups, lookups_added;
    uint8_t lookup_id[32];
    size_t lookup_id_len;
} tp_peer;

void tp_peer_init(tp_peer *p, tl_engine *e);
void tp_peer_free(tp_peer *p);

/* Wrap everything from a (application data src, may be NULL) into b's inbox. Returns the wrap
 * status that ended it (TL_OK, TL_WANT_INPUT ...). *taken (may be NULL) gets the source bytes
 * consumed. */
tl_status tp_wrap_to(tp_peer *a, tp_peer *b, const void *src, size_t len, size_t *taken);
/* Unwrap a's inbox until no progress. Returns the last status. */
tl_status tp_unwrap(tp_peer *a);
/* Handshake both peers; returns 0 when both finished, -1 on error or after max_rounds. */
int tp_handshake(tp_peer *c, tp_peer *s, int max_rounds);
/* Send len bytes from a to b and let b unwrap them. Returns 0 when all arrived. */
int tp_send(tp_peer *a, tp_peer *b, const void *data, size_t len, int max_rounds);

/* A complete client/server pair on the given configurations (server name "localhost"). */
typedef struct tp_pair {
    tp_peer c, s;
} tp_pair;
void tp_pair_init(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, const tl_engine_opts *copts,
                  const tl_engine_opts *sopts);
void tp_pair_free(tp_pair *p);

/* A pair on these configurations with the client's server name (NULL: none). */
void tp_pair_named(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name);
/* Handshake; after a failure one more round in each direction, so that each side has read the
 * other's alert. 0 when both finished. */
int tp_shake(tp_pair *p);
/* A handshake that must succeed: false, with both sides' errors printed and a failure counted in
 * *failures, if it does not. TP_SHAKE_OK counts in test.h's counter. */
bool tp_shake_ok(tp_pair *p, int *failures);
/* One connection (tp_pair_named): the handshake must succeed, then a byte each way; as
 * tp_shake_ok, and TP_CONNECT_OK counts in test.h's counter. */
bool tp_connect_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *name, int *failures);
#define TP_SHAKE_OK(p) tp_shake_ok((p), &test_failures_)
#define TP_CONNECT_OK(cctx, sctx, name) tp_connect_ok((cctx), (sctx), (name), &test_failures_)
/* Free two configurations. */
void tp_free_ctxs(tl_tls_ctx *a, tl_tls_ctx *b);

/* An ECDSA certificate (cheap to make) signed by issuer (NULL: self-signed): a CA when ca,
 * otherwise a leaf for localhost, good.test, 127.0.0.1 and ::1. Valid from now+nb to now+na
 * seconds. Ends the test (exit 1) if it cannot be made. */
tl_certgen_pair tp_issue(const char *cn, bool ca, long nb, long na, const tl_certgen_pair *issuer);
/* Concatenate up to three PEM texts (b, c may be NULL); the caller frees it. */
char *tp_cat_pem(const char *a, const char *b, const char *c);

/* Fill buf with a deterministic pattern starting at offset seed. */
void tp_pattern(uint8_t *buf, size_t len, unsigned seed);

/* Configuration checks for tests (they use test.h's CHECK macros and counter). */
/* A configuration call that must succeed; prints the configuration's message if it does not. */
#define CHECK_OK(ctx, call)                                                                     \
    do {                                                                                        \
        int rc_ = (call);                                                                       \
        if (rc_ != 0) {                                                                         \
            fprintf(stderr, "  %s:%d: CHECK failed: %s == 0 (%d: %s)\n", __FILE__, __LINE__,     \
                    #call, rc_, tl_tls_ctx_error(ctx));                                          \
            test_failures_++;                                                                   \
        }                                                                                       \
    } while (0)

/* A configuration call that must fail with this kind and a message containing `sub`. */
#define CHECK_FAIL(ctx, call, kind, sub)                                                        \
    do {                                                                                        \
        CHECK_EQ_INT((call), -1);                                                               \
        CHECK_EQ_INT(tl_tls_ctx_error_kind(ctx), (kind));                                       \
        CHECK_HAS(tl_tls_ctx_error(ctx), (sub));                                                \
    } while (0)

#endif /* TLSLOOP_TLS_PAIR_H */
