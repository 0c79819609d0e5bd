/*
 * tlsloop/client.h - the client side: connections to host:port made without blocking, TLS that
 * verifies by default, a session cache per host:port, and HTTP/1.1 and HTTP/2 exchanges whose
 * responses are complete only when their framing says so.
 *
 * A tl_client is shared configuration: the TLS client configuration (trust store, verification,
 * versions, suites, ALPN), the session cache, name overrides, and a task pool that resolves names.
 * Make it once; use it from any number of loops and threads.
 *
 * Connecting. tl_client_connect resolves the host on the task pool (getaddrinfo never runs on a
 * loop; an IP address or an override needs no resolution), then tries every address in the order
 * the resolver gives (IPv6 and IPv4 alike), each within connect_timeout_ms, until one accepts.
 * With TLS the handshake follows, within handshake_timeout_ms. A target's timeout_ms bounds all
 * of it at once (a resolution that hangs inside getaddrinfo is seen only when it returns). The
 * handshake verifies the chain against the
 * system store (or ca_file) and the host name (a DNS name, or an IP address against the
 * certificate's IP entries), and sends SNI for names. Only `insecure` turns verification off.
 * The outcome comes once, on the loop, to on_connect: a connection whose handshake is done (its
 * callbacks are the ones given, from then on), or NULL with the reason (tl_client_error and a
 * one-line message: "certificate verify failed: hostname mismatch"). tl_client_cancel ends an
 * attempt at any point before that: on_connect(NULL, TL_CLIENT_CANCELLED) follows, and a TLS
 * connection in its handshake closes by the connection layer's close protocol.
 *
 * Sessions. The client keeps the newest session per host:port and offers it on the next
 * connection there. A TLS 1.3 ticket is taken as soon as it arrives (tickets come after the
 * handshake, with the first records read), a TLS 1.2 session when the handshake ends (a
 * duplicate: it outlives the connection). A TLS 1.3 ticket is offered once (RFC 8446 C.4); a
 * TLS 1.2 session until a newer one replaces it. no_sessions turns the cache off.
 *
 * HTTP. tl_client_http_new takes over a connection for HTTP/1.1 exchanges, one at a time: the
 * response's head (tl_http_parse_response), its body as it arrives (decoded when chunked), and
 * its end, which is TL_HTTP_DONE only when the framing says the body is complete: a body shorter
 * than its Content-Length, a chunked body without its last chunk, or a body delimited by the
 * connection's end that ends without close_notify is TL_HTTP_TRUNCATED, not a success.
 * tl_client_http_close ends it at any moment, a response still arriving included: close_notify is
 * sent, the peer's awaited for at most close_timeout_ms, and on_close tells how it ended.
 *
 * HTTP/2. tl_client_h2_new takes over a connection for HTTP/2 (RFC 9113) instead: over TLS one
 * whose ALPN selected "h2" (offer "h2,http/1.1" in alpn and look at tl_engine_info.alpn), over
 * plain TCP by prior knowledge. nghttp2 does the framing and HPACK; the connection's I/O, its
 * write queue and its deadlines stay tlsloop's. Many requests may be under way at once, each a
 * stream with its own callbacks' data and deadline; nghttp2 holds back the ones beyond the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS until earlier streams end. A response is
 * TL_HTTP_DONE only when its stream ended with END_STREAM (and its body matched its
 * content-length); a stream the server reset, refused (RST_STREAM REFUSED_STREAM, or above the
 * last stream id of a GOAWAY), or that the connection's end cut off is not. tl_client_h2_close
 * sends GOAWAY, then closes the connection as tl_client_http_close does.
 *
 * Threads: tl_client functions may be called from any thread; a connection and its tl_client_http
 * (or tl_client_h2) belong to the loop they were made on, and their callbacks run there.
 *
 * Errors: functions returning int give 0 or -1 with a one-line message in err.
 */
#ifndef TLSLOOP_CLIENT_H
#define TLSLOOP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tlsloop/api.h>
#include <tlsloop/conn.h>
#include <tlsloop/http.h>
#include <tlsloop/loop.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_client tl_client;
typedef struct tl_client_dial tl_client_dial;

typedef struct tl_client_config {
    const char *ca_file;              /* trust anchors (PEM); NULL: the system store */
    bool insecure;                    /* verify nothing: any certificate, any name (say so loudly) */
    int tls_min, tls_max;             /* TL_TLS1_2 / TL_TLS1_3; 0: both */
    const char *ciphers;              /* TLS 1.2 list; NULL: the safe default */
    const char *ciphersuites;         /* TLS 1.3 suites; NULL: the default */
    const char *alpn;                 /* protocols offered, comma-separated ("http/1.1"); NULL: none */
    bool no_sessions;                 /* never offer a session (full handshakes every time) */
    uint32_t connect_timeout_ms;      /* per address; 0: 10000 */
    uint32_t handshake_timeout_ms;    /* 0: 10000 */
    uint32_t close_timeout_ms;        /* waiting for the peer's close_notify; 0: 5000 */
    unsigned resolver_threads;        /* 0: 2 */
    bool no_tickets;                  /* TLS 1.2: ask for no session ticket, resume by session ID
                                         (tl_tls_ctx_set_tickets) */
    tl_kdf kdf;                       /* 0 (TL_KDF_OPENSSL): OpenSSL's own key derivation;
                                         TL_KDF_TLSLOOP: tlsloop's (tlsloop/tls_ctx.h) */
    bool ocsp;                        /* ask servers for a stapled OCSP response (check it with
                                         tl_ocsp_check_peer, tlsloop/ocsp.h) */
} tl_client_config;

/* A client. The configuration is copied. NULL with err set (a CA file that does not load, a
 * suite list OpenSSL refuses). */
TL_API tl_client *tl_client_new(const tl_client_config *cfg, char *err, size_t errlen);
/* After every connection made with it has closed. NULL is a no-op. */
TL_API void tl_client_free(tl_client *cl);

/* Connect to host:port here instead of resolving it (curl's --resolve host:port:addr); several
 * for the same host:port are tried in the order given. 0 or -1. */
TL_API int tl_client_add_override(tl_client *cl, const char *host, uint16_t port,
                                  const char *addr, char *err, size_t errlen);

/* Why a connection attempt failed. */
typedef enum tl_client_error {
    TL_CLIENT_OK = 0,
    TL_CLIENT_DNS,                    /* the name did not resolve */
    TL_CLIENT_CONNECT,                /* no address accepted (refused, unreachable) */
    TL_CLIENT_TIMEOUT,                /* connect or handshake took too long */
    TL_CLIENT_VERIFY,                 /* the certificate or host name did not verify */
    TL_CLIENT_TLS,                    /* another TLS failure (an alert, no common version) */
    TL_CLIENT_CLOSED,                 /* the peer closed or reset during the handshake */
    TL_CLIENT_CANCELLED,              /* tl_client_cancel */
    TL_CLIENT_RESOURCE,               /* out of memory, no socket */
} tl_client_error;
/* "dns", "connect", ...: stable names. Never NULL. */
TL_API const char *tl_client_error_name(tl_client_error e);

/* The outcome of tl_client_connect. c is the connection (ready, handshake done) or NULL; msg the
 * reason when it is NULL. The dial is gone when this returns. */
typedef void (*tl_client_connect_cb)(tl_conn *c, tl_client_error err, const char *msg,
                                     void *data);

typedef struct tl_client_target {
    const char *host;                 /* DNS name or IP address (no brackets) */
    uint16_t port;
    bool tls;
    const tl_conn_cbs *cbs;           /* the connection's callbacks once connected (required;
                                         must outlive the connection) */
    size_t write_high;                /* the connection's write high-water mark; 0: default */
    const char *session_key;          /* keep sessions under this key instead of "host:port"
                                         (a load generator keeps one per connection slot) */
    const struct sockaddr *local_addr;/* the source address to connect from; NULL: any */
    socklen_t local_addrlen;
    uint32_t timeout_ms;              /* one deadline for the whole attempt, from this call: the
                                         resolution, every address, the TLS handshake (each phase
                                         also keeps its own limit from tl_client_config);
                                         TL_CLIENT_TIMEOUT when it passes. 0: none */
} tl_client_target;

/* Start connecting; on_connect(c or NULL, ...) comes later on `loop` (never inside this call).
 * Returns the attempt (valid until on_connect), or NULL with err set (bad arguments). */
TL_API tl_client_dial *tl_client_connect(tl_client *cl, tl_loop *loop,
                                         const tl_client_target *target,
                                         tl_client_connect_cb on_connect, void *data, char *err,
                                         size_t errlen);
/* Give up an attempt (on its loop): on_connect(NULL, TL_CLIENT_CANCELLED) follows. */
TL_API void tl_client_cancel(tl_client_dial *d);

/* The TLS sessions offered and resumed by this client's connections (for tests and reports). */
typedef struct tl_client_stats {
    uint64_t connects, failures, handshakes_full, handshakes_resumed, sessions_offered;
} tl_client_stats;
TL_API void tl_client_get_stats(tl_client *cl, tl_client_stats *out);

/* ---- HTTP/1.1 exchanges ----------------------------------------------------------------- */

typedef struct tl_client_http tl_client_http;

typedef enum tl_http_result {
    TL_HTTP_DONE = 0,                 /* the response is complete, as its framing says */
    TL_HTTP_TRUNCATED,                /* its body ended early, or ended without close_notify */
    TL_HTTP_BAD_RESPONSE,             /* malformed, or framed ambiguously */
    TL_HTTP_CONN_FAILED,              /* the connection failed (reset, TLS error) before the end */
    TL_HTTP_TIMED_OUT,                /* no complete response within the request's timeout */
    TL_HTTP_CLOSED,                   /* tl_client_http_close while a response was arriving */
} tl_http_result;
TL_API const char *tl_http_result_name(tl_http_result r);

typedef struct tl_client_http_cbs {
    /* The response head (interim 1xx responses are skipped). Valid during the call. */
    void (*on_head)(tl_client_http *x, const tl_http_response *resp, void *data);
    /* A piece of the body (decoded). Valid during the call. */
    void (*on_body)(tl_client_http *x, const uint8_t *p, size_t n, void *data);
    /* The exchange ended; why says more for anything but TL_HTTP_DONE. Another request may be
     * sent from here when tl_client_http_reusable says so. */
    void (*on_done)(tl_client_http *x, tl_http_result res, const char *why, void *data);
    /* The connection closed (last call; x is freed when it returns). */
    void (*on_close)(tl_client_http *x, tl_conn_end how, void *data);
} tl_client_http_cbs;

/* Use connection c (from on_connect) for HTTP/1.1. NULL when out of memory (c is then closed). */
TL_API tl_client_http *tl_client_http_new(tl_conn *c, const tl_client_http_cbs *cbs, void *data);
/* Send a request: method, target ("/path?q"), Host value, more header lines (each ending in CRLF;
 * NULL for none), whether to keep the connection (else "Connection: close"), and a deadline for
 * the whole response (0: none). Returns 0, or -1 when an exchange is under way or the connection
 * cannot take it. */
TL_API int tl_client_http_request(tl_client_http *x, const char *method, const char *target,
                                  const char *host, const char *headers, bool keep_alive,
                                  uint32_t timeout_ms);
/* After TL_HTTP_DONE: may another request follow on this connection? */
TL_API bool tl_client_http_reusable(const tl_client_http *x);
/* End the connection gracefully now (see above). */
TL_API void tl_client_http_close(tl_client_http *x);
/* How the peer ended its side before tl_client_http_close was called: TL_END_CLEAN (TLS
 * close_notify; a FIN on plain TCP), TL_END_TRUNCATED (TLS: the transport ended without
 * close_notify), or TL_END_NONE (it had not: we closed first, and on_close's `how` tells how the
 * peer answered). For reports such as tlsloop get -v. */
TL_API tl_conn_end tl_client_http_peer_end(const tl_client_http *x);
TL_API tl_conn *tl_client_http_conn(tl_client_http *x);

/* ---- HTTP/2 exchanges ------------------------------------------------------------------- */

typedef struct tl_client_h2 tl_client_h2;

/* The callbacks of a request get the req pointer given to tl_client_h2_request; on_close gets
 * the session's data. */
typedef struct tl_client_h2_cbs {
    /* The response head: status, and the fields (names in lower case, as HTTP/2 sends them; no
     * pseudo-header among them); reason is empty and minor_version 0. Interim 1xx responses
     * are skipped. Valid during the call. */
    void (*on_head)(tl_client_h2 *h, const tl_http_response *resp, void *req);
    /* A piece of the body (DATA frames' payload). Valid during the call. */
    void (*on_body)(tl_client_h2 *h, const uint8_t *p, size_t n, void *req);
    /* The request ended (why says more for anything but TL_HTTP_DONE); the last call for req.
     * Another request may be sent from here. */
    void (*on_done)(tl_client_h2 *h, tl_http_result res, const char *why, void *req);
    /* The connection closed (last call; h is freed when it returns). Requests still under way
     * got their on_done before this. */
    void (*on_close)(tl_client_h2 *h, tl_conn_end how, void *data);
} tl_client_h2_cbs;

/* Use connection c (from on_connect) for HTTP/2: the client preface and SETTINGS leave at once
 * (no server push; stream and connection windows of 16 MiB, so a download is not held to one
 * window per round trip). NULL when out of memory (c is then closed). */
TL_API tl_client_h2 *tl_client_h2_new(tl_conn *c, const tl_client_h2_cbs *cbs, void *data);
/* Send a request on a new stream: method, :authority (the Host a HTTP/1.1 request would name),
 * :path ("/path?q"), more header lines as for tl_client_http_request ("Name: value\r\n" each;
 * names are sent in lower case; Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
 * Upgrade and TE other than "trailers" are left out as RFC 9113 section 8.2.2 says; a Host line
 * replaces the :authority), and a deadline for the whole response (0: none; when it passes the
 * stream is reset with CANCEL and ends with TL_HTTP_TIMED_OUT). The scheme is "https" over TLS,
 * "http" otherwise. No request body (END_STREAM on the HEADERS). Returns the stream id (> 0),
 * or -1 when the session takes no more requests (closing, GOAWAY received, stream ids used up)
 * or the headers are malformed. */
TL_API int32_t tl_client_h2_request(tl_client_h2 *h, const char *method, const char *authority,
                                    const char *path, const char *headers, uint32_t timeout_ms,
                                    void *req);
/* May another request be sent (no GOAWAY either way, not closing)? */
TL_API bool tl_client_h2_reusable(const tl_client_h2 *h);
/* Requests sent whose on_done has not come yet. */
TL_API size_t tl_client_h2_in_flight(const tl_client_h2 *h);
/* The server's SETTINGS_MAX_CONCURRENT_STREAMS, as nghttp2 keeps it: 100 until the server's
 * first SETTINGS arrive, then its value (a very large one when it set none). */
TL_API uint32_t tl_client_h2_max_streams(const tl_client_h2 *h);
/* End gracefully: requests under way end with TL_HTTP_CLOSED, GOAWAY (NO_ERROR) is sent, then
 * the connection closes as tl_client_http_close does. Idempotent. */
TL_API void tl_client_h2_close(tl_client_h2 *h);
/* As tl_client_http_peer_end. */
TL_API tl_conn_end tl_client_h2_peer_end(const tl_client_h2 *h);
TL_API tl_conn *tl_client_h2_conn(tl_client_h2 *h);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_CLIENT_H */
