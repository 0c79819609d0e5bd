/*
 * src/httpd/httpd_int.h - the HTTP server's private structures, shared by httpd*.c only.
 */
#ifndef TLSLOOP_HTTPD_INT_H
#define TLSLOOP_HTTPD_INT_H

#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

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

typedef struct hstats {
    hcounter requests, status[6], not_modified, not_found, rejected, timeouts, body_bytes;
    hcounter cache_hits, cache_misses;
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
} hfile;

typedef struct hworker hworker;

/* Open the file for a normalised path below the root (through the cache when it holds it).
 * Returns 0 with f filled (tli_httpd_file_close after), or the status to answer: 301 (a directory
 * without its trailing slash), 403, 404, 414, 500, 503. */
int tli_httpd_file_open(hworker *w, const char *path, size_t len, hfile *f);
void tli_httpd_file_close(hfile *f);
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

typedef struct hpage {
    char *path;
    tl_httpd_page_fn fn;
    void *data;
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
    halog *alog;
    hpage *pages;
    size_t npages;
    hworker *workers;
    unsigned nworkers;
};

/* The Date header's value for now, formatted at most once a second per worker. */
const char *tli_httpd_date(hworker *w);

#endif /* TLSLOOP_HTTPD_INT_H */
