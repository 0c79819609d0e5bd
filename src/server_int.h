/*
 * src/server_int.h - the server's private structures, shared by server*.c only.
 */
#ifndef TLSLOOP_SERVER_INT_H
#define TLSLOOP_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include <tlsloop/limits.h>
#include <tlsloop/proxyproto.h>
#include <tlsloop/server.h>

#include "tli.h"

/* ---- configuration (server_config.c) ---- */

typedef struct tli_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool tls;
    bool proxy;
    char text[80];                 /* as given, for messages */
} tli_listen;

typedef struct tli_certpair {
    char *cert, *key;
} tli_certpair;

#define TLI_EXT_TABLES 4

/* delegate-handshakes: never, always, or while the worker has long-lived connections to protect. */
typedef enum { TLI_DELEGATE_OFF = 0, TLI_DELEGATE_ON, TLI_DELEGATE_AUTO } tli_delegate;

struct tl_server_config {
    tli_listen *listens;
    size_t n_listens;
    tli_certpair *certs;
    size_t n_certs;
    char *client_ca;
    tl_verify client_verify;       /* NONE unless client-cert or client-ca is given */
    int tls_min, tls_max;
    tl_kdf tls_kdf;                /* tls-kdf: OpenSSL's (default) or tlsloop's */
    char *ciphers, *suites, *groups, *alpn;
    bool allow_expired;
    uint64_t session_cache;
    uint64_t session_lifetime_ms;
    bool tickets;
    uint64_t num_tickets;
    char *ticket_key_file;
    uint64_t ticket_rotate_ms;     /* 0: lifetime / 4 */
    uint64_t workers;              /* 0: one per core */
    uint64_t max_conns;            /* 0: from RLIMIT_NOFILE */
    uint64_t max_handshakes;
    uint64_t handshake_rate, handshake_burst;   /* 0: off */
    uint64_t max_per_source;       /* 0: off */
    uint64_t ipv6_prefix;
    uint64_t handshake_timeout_ms, idle_timeout_ms, send_timeout_ms, close_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t key_update_limit;
    tli_delegate delegate;
    uint64_t task_threads;         /* 0: one per worker */
    uint64_t loop_slice_ns;        /* 0: the kernel's default */
    uint64_t backlog;
    char *user;
    char *log_path;
    char *log_level;
    uint64_t log_rate;
    struct { const tl_server_option *opts; size_t n; } ext[TLI_EXT_TABLES];
    size_t n_ext;                  /* tables of the layers above (tl_server_config_extend) */
    struct { const char *name; char *value; } *ext_values;   /* in the order given */
    size_t n_ext_values;
    char *path;                    /* the file last loaded */
    struct { char *name, *value; } *history;   /* every setting, in order (see replay) */
    size_t n_history;
    bool loading;                  /* inside a file: its lines are not remembered one by one */
};

/* The same settings applied again to a new configuration, files read anew: a copy, or a reload.
 * NULL with err set. */
tl_server_config *tli_server_config_replay(const tl_server_config *cfg, char *err, size_t errlen);
/* Format an address as "1.2.3.4:5" or "[::1]:5". */
void tli_addr_text(const struct sockaddr *sa, char *buf, size_t len);

/* ---- TLS generations (server_tls.c) ---- */

/* What new handshakes use: the default configuration (with the named ones attached for SNI). */
typedef struct tli_gen {
    atomic_int refs;
    tl_tls_ctx *tls;               /* NULL when every listener is plain */
    tl_server_config *cfg;         /* the settings it was built from (owned): deadlines too */
    int64_t not_after;             /* earliest certificate expiry (unix time) */
    unsigned serial;               /* 1, 2, ... per reload */
} tli_gen;

/* Build a generation from cfg with this ticket ring (NULL: load cfg's key file, or make one).
 * NULL with err set. */
tli_gen *tli_gen_build(const tl_server_config *cfg, tl_ticket_ring *ring, char *err, size_t errlen);
tli_gen *tli_gen_ref(tli_gen *g);
void tli_gen_unref(tli_gen *g);
/* A ring for cfg: from its key file, else new random keys. NULL with err set. */
tl_ticket_ring *tli_ring_for(const tl_server_config *cfg, char *err, size_t errlen);

#endif /* TLSLOOP_SERVER_INT_H */
