/*
 * src/proxy/proxy_int.h - the proxy's private structures and functions, shared by proxy*.c (and
 * the unit tests).
 */
#ifndef TLSLOOP_PROXY_INT_H
#define TLSLOOP_PROXY_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <tlsloop/buf.h>
#include <tlsloop/conn.h>
#include <tlsloop/engine.h>
#include <tlsloop/http.h>
#include <tlsloop/log.h>
#include <tlsloop/proxy.h>
#include <tlsloop/proxyproto.h>
#include <tlsloop/tls_ctx.h>

#include "util/tli.h"

/* ---- the proxy and its pairs ---- */

/* A pair joins the client's connection (the front, made by the server) and ours to a backend (the
 * back). Each side's callbacks find the pair through the connection's data. The pair is freed
 * when both connections have closed; either pointer is NULL once its connection is gone.
 *
 * Counters are per worker: only the worker's thread writes them (a relaxed load and store, no
 * locked add on the per-read path), tl_proxy_get_stats reads them from any thread. The
 * round-robin cursor is the one value every worker updates. */

typedef struct backend {
    char *name;                    /* as configured */
    char *verify_name;             /* backend-tls: the name verified and sent as SNI */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    _Atomic uint64_t down_until;   /* tl_loop_now ms: failed, tried last until then; 0: up */
} backend;

#define SESSIONS_PER_BACKEND 8   /* TLS 1.3 tickets are used once: one per concurrent connect */

/* The sessions a worker keeps per TLS backend, newest last; touched by that worker only. */
typedef struct session_stack {
    tl_session *s[SESSIONS_PER_BACKEND];
    unsigned n;
} session_stack;

typedef struct pworker {
    _Atomic uint64_t clients, active, connects, failures, no_backend, to_backend, to_client,
        clean, reset, timeout, truncated, resumed;
    session_stack *sessions;       /* backend-tls: one stack per backend */
} pworker;

struct tl_proxy {
    backend *backends;
    size_t nbackends;
    uint32_t connect_timeout_ms;   /* tl_server_parse_duration caps durations at 2^32 ms */
    uint32_t retry_ms;             /* backend-retry: a failed backend is tried last this long */
    int proxy_protocol;            /* 0, 1 or 2: the header each backend connection starts with */
    tl_tls_ctx *backend_tls;       /* backend-tls: our client configuration; NULL: plain TCP */
    _Atomic uint64_t next;         /* round-robin cursor */
    tl_log *log;
    tl_server *srv;                /* attached */
    int metrics_listener;          /* the listener serving GET /metrics; -1: none */
    pworker *workers;
    unsigned nworkers;
    tl_conn_cbs front_cbs, back_cbs;
    tl_server_handler handler;
};

typedef struct pair {
    tl_proxy *p;
    pworker *w;
    tl_conn *front, *back;
    size_t first;                  /* where this client's round-robin order starts */
    size_t bi;                     /* the backend of `back` */
    size_t k;                      /* connect_next's position: two passes over the backends */
    uint64_t tried;                /* a bit per backend tried for this client */
    tl_buf early;                  /* what the client sent before the backend was up */
    bool back_up;                  /* the backend connection is established */
    bool back_tls13;               /* the backend connection is TLS 1.3 (tickets come later) */
    bool metrics;                  /* a metrics page request, not a pair: `early` holds its head */
    bool answered;                 /* metrics: the answer is written */
    bool front_eof, back_eof;      /* that side ended its data */
    tl_conn_end end;               /* clean, or the first other end seen on either side */
} pair;

static inline void bump(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ---- a client's arrival and its backend (proxy_connect.c) ---- */

void tli_proxy_front_open(tl_conn *c, void *data);
void tli_proxy_front_drain_server(tl_conn *c, void *data);
void tli_proxy_front_handshake(tl_conn *c, bool ok);
void tli_proxy_back_connected(tl_conn *back, bool ok);
void tli_proxy_back_handshake(tl_conn *back, bool ok);
void tli_proxy_back_close(tl_conn *c, tl_conn_end how);

/* ---- the relay (proxy_relay.c) ---- */

/* The pair ends as the first side that did not end cleanly did. */
void tli_proxy_note_end(pair *pr, tl_conn_end how);
/* Free the pair once both sides have closed, counting how it ended. */
void tli_proxy_maybe_free(pair *pr);
/* Carry the client's end of data to the backend. */
void tli_proxy_front_done(pair *pr);
/* End the other side as this one ended. */
void tli_proxy_carry_end(tl_conn *other, tl_conn_end how);
void tli_proxy_front_read(tl_conn *c, const uint8_t *d, size_t n);
void tli_proxy_front_eof(tl_conn *c, tl_conn_end how);
void tli_proxy_front_drain(tl_conn *c);
void tli_proxy_front_close(tl_conn *c, tl_conn_end how);
void tli_proxy_back_read(tl_conn *c, const uint8_t *d, size_t n);
void tli_proxy_back_eof(tl_conn *c, tl_conn_end how);
void tli_proxy_back_drain(tl_conn *c);

/* ---- the metrics page (proxy_metrics.c) ---- */

/* What a metrics-listen connection read: one request, answered once its head is whole. */
void tli_proxy_metrics_read(pair *pr, tl_conn *c, const uint8_t *d, size_t n);

/* ---- PROXY v2's TLS facts (proxy_pp2.c) ---- */

/* The CN of a certificate's subject as UTF-8, from its X509_NAME entry (the last CN, the most
 * specific one, as X509_check_host takes it), converted with ASN1_STRING_to_UTF8: into out with
 * a terminating NUL. Returns its length; 0 when there is no CN; -1 when it cannot be passed on
 * faithfully: it contains a NUL, is not valid UTF-8 (overlong forms, surrogates, above
 * U+10FFFF), or does not fit cap. */
int tli_cert_cn_utf8(X509 *cert, char *out, size_t cap);

/* The value of a PROXY v2 PP2_TYPE_SSL TLV for a finished server-side handshake: client flags
 * (PP2_CLIENT_SSL; PP2_CLIENT_CERT_CONN when the client sent a certificate on this connection;
 * PP2_CLIENT_CERT_SESS when the session has one, on a full handshake or a resumed one), verify (0
 * when a certificate was presented and verified, else its verification result, 1 without a
 * certificate), then sub-TLVs VERSION, CIPHER and CN (only when tli_cert_cn_utf8 gives one).
 * Returns the length written into buf (at least 5), or 0 if cap is too small for the fixed part. */
size_t tli_pp2_ssl_value(SSL *ssl, uint8_t *buf, size_t cap);

#define TLI_PP2_CLIENT_SSL 0x01
#define TLI_PP2_CLIENT_CERT_CONN 0x02
#define TLI_PP2_CLIENT_CERT_SESS 0x04

#endif /* TLSLOOP_PROXY_INT_H */
