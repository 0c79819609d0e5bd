/*
 * tlsloop/httpd.h - an HTTP/1.1 and HTTP/2 server on the server core (tlsloop/server.h): static
 * files from a root directory, pages the application adds, Prometheus metrics on a listener of
 * their own (metrics-listen; the public listeners never serve them), an access log, and a
 * redirect from plain listeners to HTTPS. `tlsloop serve` is a thin program over it.
 *
 * Setting up. tl_httpd_config_init adds the HTTP options (root, index, access-log, metrics,
 * header-timeout, ...; tl_httpd_usage lists them) to a server configuration, so the command line
 * and the configuration file hold both. tl_httpd_new reads them (opening the root directory and
 * the access log; tl_httpd_config_finish adds the metrics listener before), tl_httpd_handler
 * gives the handler for tl_server_new, and tl_httpd_attach ties
 * the two together before tl_server_run. A reload (SIGHUP) changes the server's TLS files; the
 * HTTP options need a restart. SIGUSR1 reopens the access log with the error log.
 *
 * Requests (tlsloop/http.h parses them). Keep-alive and pipelining: requests on a connection are
 * answered in order; input waits (reading pauses) while an answer cannot be written. GET and HEAD
 * are served; other methods get 405 with Allow. A request body is read and discarded before the
 * answer, up to max-body (413 above it, and the connection closes). Malformed requests get 400,
 * 414 or 431 (or 505, 501, 417) with a small body and the connection closes: after a framing
 * error nothing that follows can be trusted. A head is checked on each read (tl_http_scan_head)
 * and refused as soon as it cannot become valid, not only once its empty line arrives. Lines end
 * with CRLF; a lone LF is a 400 unless the option allow-lone-lf is on. Deadlines: the request head must arrive within
 * header-timeout of its first byte (slowloris: 408 and close), a body within body-timeout, and a
 * connection waiting for its next request closes after keepalive-timeout. Draining (SIGTERM): an
 * idle connection closes at once, a busy one after its answer (sent with Connection: close).
 *
 * HTTP/2 (RFC 9113, framing and HPACK by nghttp2): a TLS connection whose ALPN picked "h2" (the
 * server's alpn option, h2,http/1.1 unless set), or a plain one that starts
 * with the HTTP/2 preface when the h2c option is on. Its requests get the same answers as
 * HTTP/1.1's (one routing decides them); files are read only as the client's flow-control
 * windows and the connection's write queue take them. Limits against rapid reset, CONTINUATION
 * floods, HPACK bombs, control-frame floods, too many streams (h2-max-streams) and windows held
 * shut (h2-send-timeout) end the connection with GOAWAY or reset the stream (tl_h2_abuse counts
 * them). A drain or a reload sends GOAWAY; streams in flight finish, then close_notify.
 *
 * Files. The path is decoded and normalised (tl_http_normalize_path) and opened below the root
 * with openat2(RESOLVE_BENEATH): "..", encoded dots, and symbolic links that lead out of the root
 * are refused by the kernel itself (403), not by string checks alone. Dotfiles and dot-directories
 * (any segment starting with a dot, after decoding: /.git/config, /%2eenv) are 404, except
 * /.well-known/ and the names allow-dotfiles gives. Directories serve their
 * index file; a directory asked for without its trailing slash is redirected (301). Regular files
 * only. Last-Modified and ETag with If-Modified-Since and If-None-Match (304), one byte range
 * (206, or 416), If-Range. Large files are streamed with backpressure (never read whole); small
 * ones may be served from a per-worker cache of their contents, bounded in bytes, each entry
 * checked against the file at most once a second (file-cache, file-cache-max).
 *
 * Threads: a connection's callbacks, pages included, run on its worker's thread; per-worker state
 * (the Date header, formatted once a second; the file cache) is never shared. tl_httpd_get_stats
 * may be called from any thread.
 *
 * Errors: functions returning int give 0 or -1 with a one-line message in err naming the option
 * or file at fault.
 */
#ifndef TLSLOOP_HTTPD_H
#define TLSLOOP_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <tlsloop/api.h>
#include <tlsloop/buf.h>
#include <tlsloop/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_httpd tl_httpd;

/* Add the HTTP options to cfg (before any option is set), and make ALPN "h2,http/1.1" the
 * default (an alpn option given later replaces it). Returns 0 or -1. */
TL_API int tl_httpd_config_init(tl_server_config *cfg);
/* After every option is set, before tl_server_check and tl_httpd_new: with metrics-listen, add its
 * plain listener (the last one; tlsloop/server.h). 0, or -1 with err. */
TL_API int tl_httpd_config_finish(tl_server_config *cfg, char *err, size_t errlen);
/* Print the HTTP options with their defaults, for --help. */
TL_API void tl_httpd_usage(FILE *out);

/* Read the HTTP options of cfg (not kept: cfg may be freed after), open the root directory and
 * the access log. NULL with err set. */
TL_API tl_httpd *tl_httpd_new(const tl_server_config *cfg, char *err, size_t errlen);
/* The handler to give tl_server_new (owned by h). */
TL_API const tl_server_handler *tl_httpd_handler(tl_httpd *h);
/* After tl_server_new, before tl_server_run: per-worker state, the error log, the counters for
 * the metrics page, the HTTPS port for redirects. Returns 0, or -1 (out of memory). */
TL_API int tl_httpd_attach(tl_httpd *h, tl_server *srv, char *err, size_t errlen);
/* After tl_server_run returned and the server was freed (or instead of running). NULL is a no-op. */
TL_API void tl_httpd_free(tl_httpd *h);

/* A generated page. The callback appends the body to page->body and may set the status (200),
 * the content type (text/html; charset=utf-8) and whether clients may cache it (no). It runs on
 * the worker thread of the connection and must not block. HEAD gets the same headers, no body. */
typedef struct tl_httpd_page {
    const char *path;              /* the normalised path asked for */
    tl_conn *conn;                 /* the connection asking (for its facts) */
    int status;
    const char *content_type;
    bool cacheable;
    tl_buf body;
} tl_httpd_page;
typedef void (*tl_httpd_page_fn)(tl_httpd *h, tl_httpd_page *page, void *data);
/* Serve fn at exactly this path (before files of the root; before tl_server_run). 0 or -1. */
TL_API int tl_httpd_add_page(tl_httpd *h, const char *path, tl_httpd_page_fn fn, void *data);
/* Serve fn for every path that starts with prefix, on every listener but the metrics one, before
 * the HTTPS redirect of plain listeners and before the exact pages and files (ACME's HTTP-01
 * answers under /.well-known/acme-challenge/; the page sets 404 for what it does not know).
 * Before tl_server_run. 0 or -1. */
TL_API int tl_httpd_add_prefix_page(tl_httpd *h, const char *prefix, tl_httpd_page_fn fn,
                                    void *data);

/* Why an HTTP/2 connection was ended, or a stream of it refused or reset, to defend the server
 * (docs/http.md, "HTTP/2"). */
typedef enum tl_h2_abuse {
    TL_H2_ABUSE_RESET = 0,        /* rapid reset: streams the client reset early, past the rate */
    TL_H2_ABUSE_CONTINUATION,     /* a header block over too many CONTINUATION frames */
    TL_H2_ABUSE_HEADERS,          /* a header list over max-header-size once decoded (431) */
    TL_H2_ABUSE_FLOOD,            /* SETTINGS, PING, WINDOW_UPDATE, PRIORITY, empty DATA frames
                                     past the rate */
    TL_H2_ABUSE_STREAMS,          /* streams refused over h2-max-streams */
    TL_H2_ABUSE_STALL,            /* answer data that could not move for h2-send-timeout */
    TL_H2_ABUSE_BODY,             /* request bodies over max-body (413, then reset) */
    TL_H2_ABUSE_PROTOCOL,         /* other protocol errors that ended a connection */
    TL_H2_ABUSE_KINDS
} tl_h2_abuse;
/* "rapid_reset", "continuation", ... (the metrics' label values). */
TL_API const char *tl_h2_abuse_name(tl_h2_abuse kind);

typedef struct tl_httpd_stats {
    uint64_t requests;             /* request heads read (valid or not) */
    uint64_t status[6];            /* answers by class: [2] is 2xx, ..., [5] is 5xx */
    uint64_t not_modified;         /* 304s (also in status[3]) */
    uint64_t not_found;            /* 404s (also in status[4]) */
    uint64_t rejected;             /* malformed or refused requests that closed the connection */
    uint64_t timeouts;             /* 408s: a head or body too slow */
    uint64_t body_bytes;           /* bytes of answer bodies sent */
    uint64_t cache_hits, cache_misses;
    uint64_t requests_h1, requests_h2;   /* requests by protocol (HTTP/1.x, HTTP/2) */
    uint64_t h2_conns;             /* connections that spoke HTTP/2 */
    uint64_t h2_streams;           /* HTTP/2 streams the clients opened */
    uint64_t h2_abuse[TL_H2_ABUSE_KINDS];   /* see tl_h2_abuse */
} tl_httpd_stats;
/* Counters summed over workers. Any thread. */
TL_API void tl_httpd_get_stats(tl_httpd *h, tl_httpd_stats *out);
/* The server it is attached to (NULL before tl_httpd_attach). */
TL_API tl_server *tl_httpd_server(tl_httpd *h);

/* Append the Prometheus text exposition of the server's and httpd's counters to out. 0 or -1. */
TL_API int tl_httpd_metrics_text(tl_httpd *h, tl_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_HTTPD_H */
