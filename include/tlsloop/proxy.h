/*
 * tlsloop/proxy.h - a TCP proxy on the server core (tlsloop/server.h): TLS termination in front of
 * a service that speaks plain TCP, as stunnel, hitch or HAProxy in TCP mode do. `tlsloop proxy` is
 * a thin program over it.
 *
 * Setting up, as with tlsloop/httpd.h: tl_proxy_config_init adds the proxy's options (backend,
 * connect-timeout, proxy-protocol, backend-tls; tl_proxy_usage lists them) to a server
 * configuration; tl_proxy_new reads them (backend names are resolved then, once);
 * tl_proxy_handler gives the handler for tl_server_new, and tl_proxy_attach ties the two together
 * before tl_server_run.
 *
 * Each accepted connection (TLS or plain, per listener) gets its own connection to a backend,
 * chosen round-robin; one that refuses, or does not answer within connect-timeout, is logged and
 * the next is tried, each backend at most once per client. When none answers the client's
 * connection is closed (close_notify) and the reason is in the log. Over TLS the backend is
 * connected after the handshake, so a client that never completes one costs the backend nothing;
 * what the client sends before the backend is up waits (reading pauses).
 *
 * With backend-tls the backend connections are TLS too, verified (chain to backend-ca, name
 * backend-name or the backend's host); one that fails verification counts as refused.
 *
 * With proxy-protocol v1 or v2, each backend connection starts with a PROXY header saying who the
 * client is (tlsloop/proxyproto.h writes it); v2 adds, over TLS, ALPN, the SNI name and the TLS
 * facts (version, cipher, and a client certificate's CN).
 *
 * Bytes flow both ways with backpressure on both legs: while one side's write queue is above its
 * high-water mark, the other side is not read, so memory per connection stays bounded whatever
 * the two peers' speeds.
 *
 * Ends. A clean end of one side's data is carried to the other: the client's close_notify (or FIN
 * on a plain listener) becomes a FIN to the backend, which may go on answering; the backend's FIN
 * becomes close_notify to the client (TLS 1.3 half-close; the client may go on sending). TLS 1.2
 * has no half-close: there the client's close_notify ends both directions once what is queued
 * towards the backend has gone. A reset or a failure on one side aborts the other (a reset is
 * carried as a reset); a deadline on one side closes the other gracefully. Each end is counted
 * (tl_proxy_get_stats).
 *
 * Draining (SIGTERM): connections are left to finish; what is still open at drain-timeout is
 * aborted by the server.
 *
 * Threads: a connection pair lives on one worker's loop; tl_proxy_get_stats may be called from any
 * thread.
 */
#ifndef TLSLOOP_PROXY_H
#define TLSLOOP_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <tlsloop/api.h>
#include <tlsloop/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_proxy tl_proxy;

/* Add the proxy options to cfg (before any option is set). Returns 0 or -1. */
TL_API int tl_proxy_config_init(tl_server_config *cfg);
/* After every option is set, before tl_server_check: with metrics-listen, add its plain listener
 * (last, so the proxy knows it). Returns 0, or -1 with err set (a bad address). */
TL_API int tl_proxy_config_finish(tl_server_config *cfg, char *err, size_t errlen);
/* Print the proxy options with their defaults, for --help. */
TL_API void tl_proxy_usage(FILE *out);

/* Read the proxy options of cfg and resolve the backends. NULL with a one-line reason in err
 * (naming the option at fault). */
TL_API tl_proxy *tl_proxy_new(const tl_server_config *cfg, char *err, size_t errlen);
/* The handler to give tl_server_new (valid while p lives). */
TL_API const tl_server_handler *tl_proxy_handler(tl_proxy *p);
/* After tl_server_new: the server's log and workers. Returns 0, or -1 with err set. */
TL_API int tl_proxy_attach(tl_proxy *p, tl_server *srv, char *err, size_t errlen);
/* Free, after tl_server_run has returned and the server is freed. NULL is a no-op. */
TL_API void tl_proxy_free(tl_proxy *p);

/* Backends in configuration order, as given ("HOST:PORT"). */
TL_API size_t tl_proxy_backends(const tl_proxy *p);
TL_API const char *tl_proxy_backend_name(const tl_proxy *p, size_t i);

typedef struct tl_proxy_stats {
    uint64_t clients;              /* client connections taken (TLS ones once their handshake
                                      ended well) */
    uint64_t active;               /* pairs open now */
    uint64_t backend_connects;     /* backend connections established */
    uint64_t backend_failures;     /* backend connections refused or timed out */
    uint64_t no_backend;           /* clients closed because no backend answered */
    uint64_t bytes_to_backend, bytes_to_client;
    uint64_t ended_clean;          /* both sides ended their data cleanly */
    uint64_t ended_reset;          /* a reset or a failure on either side, carried to the other */
    uint64_t ended_timeout;        /* a deadline on either side */
    uint64_t ended_truncated;      /* the client ended TLS without close_notify */
    uint64_t backend_resumed;      /* backend-tls: backend connections that resumed a session */
} tl_proxy_stats;

/* Counters over every worker, since tl_proxy_attach. Any thread. */
TL_API void tl_proxy_get_stats(tl_proxy *p, tl_proxy_stats *out);
/* The proxy's counters as Prometheus text (format 0.0.4), appended to out; the metrics page is
 * tl_server_metrics_text followed by this. Returns 0, or -1 when out of memory. Any thread. */
TL_API int tl_proxy_metrics_text(tl_proxy *p, tl_buf *out);
/* The index of the metrics listener (tl_server_port and so on), or -1 without metrics-listen. */
TL_API int tl_proxy_metrics_listener(const tl_proxy *p);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_PROXY_H */
