/*
 * src/httpd/httpd_int.h - the HTTP server's private structures and functions, shared by httpd*.c
 * only.
 */
#ifndef TLSLOOP_HTTPD_INT_H
#define TLSLOOP_HTTPD_INT_H

#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include <tlsloop/http.h>
#include <tlsloop/httpd.h>
#include <tlsloop/log.h>
#include <tlsloop/server.h>

#include "util/tli.h"

/* Bytes read from a file per write when streaming, and the largest body sent in one write with
 * its head (files up to this size are read whole). */
#define HTTPD_CHUNK (64u * 1024u)
/* Header fields a request may have (more: 431). */
#define HTTPD_MAX_FIELDS 100
/* The Server header's value. */
#define HTTPD_SERVER "tlsloop/" TL_VERSION_STRING

/* Single-writer counters: only the owning worker writes them, any thread reads them. */
typedef _Atomic uint64_t hcounter;
static inline void hbump(hcounter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* The protocols a request can come over (requests by protocol in the metrics). */
enum { HPROTO_H1, HPROTO_H2, HPROTO_N };

/* What HTTP/2 connections were ended, or their streams refused, for (tlsloop/httpd.h). */
typedef struct hstats {
    hcounter requests, status[6], not_modified, not_found, rejected, timeouts, body_bytes;
    hcounter cache_hits, cache_misses;
    hcounter proto_requests[HPROTO_N];
    hcounter h2_conns, h2_streams, h2_abuse[TL_H2_ABUSE_KINDS];
} hstats;

/* ---- the file cache (httpd_files.c) ---- */

typedef struct hentry hentry;

typedef struct hcache {
    hentry **buckets;
    size_t nbuckets, count;
    hentry *lru_head, *lru_tail;   /* most recently used first */
    size_t bytes, max_bytes, max_file;
    uint64_t key[2];               /* SipHash key: paths are chosen by clients */
} hcache;

/* What serving one file needs: an open descriptor, or contents from the cache. */
typedef struct hfile {
    int fd;                        /* -1 when served from the cache */
    const uint8_t *data;           /* the cached contents, or NULL */
    uint64_t size;
    struct timespec mtime;
    char etag[48];                 /* "\"<size>-<mtime ns>\"" in hex */
    char last_modified[TL_HTTP_DATE_LEN + 1];   /* mtime as an IMF-fixdate */
    const char *type;              /* media type */
    hentry *entry;                 /* the cache entry data belongs to, held until closed */
} hfile;

typedef struct hworker hworker;

/* Open the file for a normalised path below the root (through the cache when it holds it).
 * Returns 0 with f filled (tli_httpd_file_close after), or the status to answer: 301 (a directory
 * without its trailing slash), 403, 404, 414, 500, 503. */
int tli_httpd_file_open(hworker *w, const char *path, size_t len, hfile *f);
void tli_httpd_file_close(hfile *f);
/* A cached entry stays alive (its contents unchanged) while held, even when the cache drops it;
 * tli_httpd_file_close releases what tli_httpd_file_open held. */
void tli_httpd_entry_release(hentry *e);
/* Read exactly len bytes at off (pread until done). 0, or -1 when the file ended or failed. */
int tli_httpd_read_at(int fd, uint8_t *buf, uint64_t len, uint64_t off);
void tli_httpd_cache_free(hcache *c);

/* ---- the access log (httpd_log.c) ---- */

typedef struct halog {
    int fd;                        /* never changes: reopening swaps the file behind it */
    bool own_fd;                   /* false for stdout */
    char *path;
} halog;

halog *tli_halog_open(const char *path, char *err, size_t errlen);
int tli_halog_reopen(halog *a, char *err, size_t errlen);
void tli_halog_free(halog *a);
/* One access-log line (combined format plus TLS facts and the request's time), one write(). */
typedef struct hlogline {
    const struct sockaddr *peer;
    const char *request;           /* the request line, as sent (escaped when written) */
    size_t request_len;
    int status;
    uint64_t bytes;
    const char *referer, *agent;   /* NULL: "-" */
    size_t referer_len, agent_len;
    const char *tls_version, *cipher;   /* NULL for plain connections */
    bool resumed;
    double seconds;
} hlogline;
void tli_halog_write(halog *a, const hlogline *l);

/* ---- the server ---- */

typedef struct hconn hconn;

typedef struct hpage {
    char *path;
    tl_httpd_page_fn fn;
    void *data;
    bool prefix;                   /* tl_httpd_add_prefix_page: every path below it */
} hpage;

struct hworker {
    tl_httpd *h;
    int index;
    time_t date_sec;
    char date[TL_HTTP_DATE_LEN + 1];
    uint8_t *scratch;              /* HTTPD_CHUNK bytes: file reads */
    hcache cache;
    hstats st;
};

struct tl_httpd {
    tl_server_handler handler;
    tl_conn_cbs cbs;
    tl_server *srv;
    tl_log *log;
    int root_fd;                   /* the root directory (O_PATH), -1 without one */
    char *root_real;               /* its canonical path (the fallback check without openat2) */
    char *index;                   /* file name served for a directory */
    char *dot_allow;               /* allow-dotfiles: comma-separated names, or NULL */
    char *metrics_path;            /* served on metrics_listener only */
    int metrics_listener;          /* metrics-listen's listener, -1: none */
    bool redirect_https;
    unsigned parse_flags;          /* TL_HTTP_LONE_LF with allow-lone-lf, else 0 */
    uint16_t https_port;
    uint64_t header_timeout_ms, body_timeout_ms, keepalive_timeout_ms;
    uint64_t max_header, max_body;
    uint64_t cache_bytes, cache_max_file;
    bool h2c;                      /* h2c prior knowledge on plain listeners */
    uint32_t h2_max_streams;       /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint32_t h2_window;            /* SETTINGS_INITIAL_WINDOW_SIZE (and the connection's) */
    uint64_t h2_send_timeout_ms;   /* a stream or connection whose data cannot move: reset */
    halog *alog;
    hpage *pages;
    size_t npages;
    hworker *workers;
    unsigned nworkers;
    /* tli_httpd_answered, which httpd_reply.c calls once an answer is handed over: through a
     * pointer, so that only httpd_conn.c calls the other (check_circles.sh). */
    void (*answered)(hconn *hc);
};

/* ---- a connection (httpd_conn.c) ---- */

/* A connection is in one of four states:
 *   IDLE     waiting for a request's first byte (keepalive-timeout; header-timeout for the first)
 *   HEAD     a request head is arriving (header-timeout from its first byte, then 408)
 *   BODY     its body is being read and discarded (body-timeout, then 408); the head waits in
 *            `held` and is parsed again when the body has ended
 *   CLOSING  an answer that ends the connection was sent; input is ignored
 * and, across IDLE, independently `blocked`: an answer is waiting for the connection's write
 * queue (a streamed file, or pipelined answers above the high-water mark). While blocked, reading
 * is paused and input waits in `in`; on_drain goes on with the file or with `in`. */
enum { H_IDLE, H_HEAD, H_BODY, H_CLOSING };

/* What the access-log line of a streamed answer needs once the request's bytes are gone. */
typedef struct hlogctx {
    int status;
    uint64_t bytes;
    char *request, *referer, *agent;   /* copies, or NULL */
    size_t request_len, referer_len, agent_len;
} hlogctx;

/* A request body that spans reads (state BODY). */
typedef struct hbody {
    tl_buf held;               /* the head, parsed again when the body has ended */
    uint64_t left;             /* of a Content-Length body */
    tl_http_chunked chunk;
    bool chunked;
} hbody;

/* A file being streamed. */
typedef struct hstream {
    int fd;
    uint64_t off, end;
    hlogctx *lg;               /* its access-log line, when there is an access log */
} hstream;

/* A connection's state, kept small (an idle connection holds this and nothing else of ours but
 * the server's and the connection layer's): what only a body or a stream needs lives apart. */
struct hconn {
    tl_conn *c;
    hworker *w;
    tl_buf in;                 /* input not used yet */
    tl_http_scan scan;         /* HEAD: the head checked so far (tlsloop/http.h) */
    tl_timer timer;
    uint64_t t0_ns;            /* the current request's first byte */
    hbody *body;               /* BODY */
    hstream *stream;           /* blocked on a streamed file */
    struct h2conn *h2;         /* an HTTP/2 connection (httpd_h2.c): the rest is unused */
    uint8_t state;
    bool keep_alive, blocked, eof, draining, first;
    bool consuming;            /* inside consume(): answers must not read input themselves */
};

static inline tl_httpd *of_conn(const hconn *hc)
{
    return hc->w->h;
}

static inline void close_conn(hconn *hc)
{
    hc->state = H_CLOSING;
    tl_timer_stop(tl_conn_loop(hc->c), &hc->timer);
    tl_conn_close(hc->c);
}

/* An answer was handed to the connection: the next request, or the end. */
void tli_httpd_answered(hconn *hc);
/* The server handler's and the connection's callbacks (tl_httpd_new puts them in place). */
void tli_httpd_conn_open(tl_conn *c, void *data);
void tli_httpd_conn_drain(tl_conn *c, void *data);
void tli_httpd_conn_reload(tl_conn *c, void *data);
void tli_httpd_conn_read(tl_conn *c, const uint8_t *d, size_t n);
void tli_httpd_conn_writable(tl_conn *c);
void tli_httpd_conn_eof(tl_conn *c, tl_conn_end how);
void tli_httpd_conn_handshake(tl_conn *c, bool ok);
void tli_httpd_conn_close(tl_conn *c, tl_conn_end how);

/* ---- answers (httpd_reply.c) ---- */

/* An answer, whichever protocol carries it: routing (tli_httpd_route) decides it once, and a
 * protocol's writer sends it (tli_httpd_h1_send for HTTP/1.1, tli_httpd_h2_submit for HTTP/2).
 * Start one with tli_httpd_reply_init; tli_httpd_reply_free gives back what it owns. */
typedef struct reply {
    int status;
    const char *type;          /* Content-Type, or NULL */
    char extra[1024];          /* more header lines, each "Name: value\r\n" */
    size_t extra_len;
    uint64_t length;           /* Content-Length */
    bool no_length;            /* no Content-Length (304) */
    bool close;                /* end the connection after it (HTTP/1.1) */
    bool rejected;             /* a request refused for its form: counted; HTTP/1.1 closes */
    /* The body, one of: in memory (body, body_len: into small, page or the held cache entry);
     * bytes [off, off + length) of the file fd (owned); or none. */
    const void *body;
    size_t body_len;
    int fd;
    uint64_t off;
    hentry *held;              /* the cache entry body points into (released with the reply) */
    tl_buf page;               /* a generated page's body (owned) */
    char small[512];           /* the body of errors and redirects */
} reply;

/* The request facts an answer and its log line need. */
typedef struct reqview {
    const tl_http_request *req;   /* NULL: the request could not be parsed */
    const char *line;             /* the request line for the log (may be partial) */
    size_t line_len;
    bool head;                    /* HEAD: no body */
    int minor;
} reqview;

static inline const tl_http_header *req_field(const reqview *rv, const char *name)
{
    return rv->req ? tl_http_find_header(rv->req, name) : NULL;
}

void tli_httpd_reply_init(reply *r, int status);
void tli_httpd_reply_free(reply *r);
/* Move src into dst (a reply kept beyond the call that made it: HTTP/2 streams). */
void tli_httpd_reply_move(reply *dst, reply *src);
/* The Date header's value for now, formatted at most once a second per worker. */
const char *tli_httpd_date(hworker *w);
/* A header line for the rare answers (Location, Content-Range): formatted, kept whole or not at
 * all. */
void tli_httpd_add_header(reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "name: value\r\n", kept whole or not at all. */
void tli_httpd_add_field(reply *r, const char *name, const char *value);
/* A small HTML body for errors and redirects (r->status says which). */
void tli_httpd_simple_body(reply *r);
/* An error answer: status with its small body (405 with Allow). */
void tli_httpd_error_answer(reply *r, int status);
/* The counters of an answer handed over (status classes, 304, 404, refused, 408). */
void tli_httpd_count(hworker *w, const reply *r);
/* One access-log line for conn's request that began at t0_ns. */
void tli_httpd_log(hworker *w, tl_conn *c, uint64_t t0_ns, const char *line, size_t line_len,
                   int status, uint64_t bytes, const char *ref, size_t ref_len, const char *ua,
                   size_t ua_len);

/* HTTP/1.1: send an answer (its head, then its body, in memory or streamed). */
void tli_httpd_h1_send(hconn *hc, const reqview *rv, reply *r);
/* A request that cannot be answered normally: its framing is broken or refused (HTTP/1.1). */
void tli_httpd_reject(hconn *hc, const reqview *rv, int status);
/* A streamed file (hc->stream): send what the write queue takes; its end, its log line. */
void tli_httpd_pump(hconn *hc);
void tli_httpd_end_stream(hconn *hc);
void tli_httpd_log_stream(hconn *hc);

/* ---- answering a request (httpd_route.c) ---- */

/* Decide the answer to a request whose head (and body) has been read: the metrics page, the HTTPS
 * redirect, a page, or a file. host is the Host field (HTTP/1.1) or :authority (HTTP/2). r comes
 * initialised (tli_httpd_reply_init); the caller sends it and frees it. */
void tli_httpd_route(hworker *w, tl_conn *c, const reqview *rv, const char *host,
                     size_t host_len, reply *r);
/* HTTP/1.1: route the request and send its answer. */
void tli_httpd_respond(hconn *hc, const tl_http_request *req, const tl_http_message *msg);

/* ---- HTTP/2 (httpd_h2*.c) ---- */

/* The HTTP/2 connection preface a client sends first (RFC 9113 3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* Start HTTP/2 on hc (ALPN h2 after the handshake, or h2c prior knowledge): the server's
 * SETTINGS go out; data (may be empty) is the input read so far. 0, or -1 (hc is being closed). */
int tli_httpd_h2_start(hconn *hc, const uint8_t *data, size_t len);
void tli_httpd_h2_read(hconn *hc, const uint8_t *data, size_t len);
void tli_httpd_h2_writable(hconn *hc);
void tli_httpd_h2_eof(hconn *hc);
void tli_httpd_h2_timer(hconn *hc);
void tli_httpd_h2_drain(hconn *hc);
void tli_httpd_h2_close(hconn *hc);

/* Limits of every HTTP/2 connection (docs/http.md, "HTTP/2"): token buckets, each with a burst
 * and a rate per second. */
#define H2_RESET_BURST 100         /* resets of streams in progress (rapid reset) */
#define H2_RESET_RATE 20
#define H2_FLOOD_BURST 1000        /* SETTINGS, PING, WINDOW_UPDATE, PRIORITY, empty DATA; each */
#define H2_FLOOD_RATE 100          /* DATA frame sent earns one more */
#define H2_MAX_CONTINUATIONS 8     /* CONTINUATION frames per header block */
#define H2_MAX_SETTINGS 32         /* entries in one SETTINGS frame */
#define H2_MAX_OUTBOUND_ACK 1000   /* ACKs queued for a client that does not read them */
#define H2_MAX_BAD_BLOCKS 8        /* header lists over the limit (431s) before GOAWAY */
#define H2_GOAWAY_DELAY_MS 100     /* drain: from the shutdown notice to the final GOAWAY */

/* An HTTP/2 request and its answer (httpd_h2_stream.c). Header names and values are kept in
 * hbuf, referred to by offsets (hbuf may move as it grows). */
typedef struct h2field {
    uint32_t name, name_len, value, value_len;
} h2field;

typedef struct h2stream {
    struct h2stream *next, *prev;   /* the connection's streams */
    int32_t id;
    tl_buf hbuf;
    h2field *fields;
    uint32_t nfields, cap;
    h2field method, path, authority, host, referer, agent, line;   /* name_len 0: none */
    uint64_t hbytes;           /* the header list's size as RFC 9113 counts it (+32 a field) */
    uint64_t declared;         /* content-length, or UINT64_MAX */
    uint64_t body_bytes;       /* of the request body */
    uint64_t t0_ns, progress_ns;
    uint64_t sent, left;       /* answer body bytes */
    reply r;
    bool too_big, body_done, answered, deferred, reset;
} h2stream;

typedef struct h2conn {
    hconn *hc;
    nghttp2_session *s;
    h2stream *streams;
    uint32_t nstreams;
    uint32_t pending;          /* streams with answer data left */
    uint32_t bad_blocks;       /* header lists over the limit */
    uint32_t block_frames;     /* CONTINUATION frames of the header block being read */
    uint64_t block_bytes;
    double reset_tokens, flood_tokens;
    uint64_t bucket_ns;
    uint64_t progress_ns;      /* answer data last moved */
    uint64_t idle_ns;          /* the last stream ended (or the connection began) */
    uint64_t hdr_t0_ns;        /* a header block is being read since (0: none) */
    uint64_t goaway_ns;        /* drain: the final GOAWAY then */
    bool had_stream, wblocked, dead, closing, flushing, notice_sent, goaway_sent;
} h2conn;

/* httpd_h2_stream.c: nghttp2's callbacks for headers and bodies; a request whose head (or body)
 * ended; a stream's end (its access-log line). */
void tli_h2_stream_callbacks(nghttp2_session_callbacks *cb);
void tli_h2_request(h2conn *h2, h2stream *hs);
void tli_h2_stream_free(h2conn *h2, h2stream *hs, bool log);

#endif /* TLSLOOP_HTTPD_INT_H */
