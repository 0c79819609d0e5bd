/*
 * src/server/server_int.h - the server's private structures, shared by server*.c only.
 */
#ifndef TLSLOOP_SERVER_INT_H
#define TLSLOOP_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include <tlsloop/limits.h>
#include <tlsloop/proxyproto.h>
#include <tlsloop/server.h>

#include "util/tli.h"

/* ---- configuration (server_config.c) ---- */

/* An address range (proxy-from, a listener's from=): the network with its host bits zero. */
typedef struct tli_cidr {
    uint8_t family;                /* AF_INET or AF_INET6 */
    uint8_t bits;                  /* prefix length: 0-32 or 0-128 */
    uint8_t addr[16];              /* 4 bytes for IPv4 */
} tli_cidr;

#define TLI_LISTEN_FROM_MAX 8      /* from= per listener; longer lists go in proxy-from */

/* ticket-rotate's bound, and the default rotation's (session-lifetime/4) cap: a day. */
#define TL_SERVER_TICKET_ROTATE_MAX_MS (24ull * 3600 * 1000)

typedef struct tli_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool tls;
    bool proxy;
    tli_cidr from[TLI_LISTEN_FROM_MAX];   /* who may send its PROXY header (else proxy-from) */
    unsigned n_from;
    char text[256];                /* as given, for messages */
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
    tli_cidr *proxy_from;          /* who may send PROXY headers to listeners without from= */
    size_t n_proxy_from;
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

/* ---- trust and binding (server_trust.c) ---- */

/* Format an address as "1.2.3.4:5" or "[::1]:5". */
void tli_addr_text(const struct sockaddr *sa, char *buf, size_t len);
/* Parse one range: "10.0.0.0/8", "2001:db8::/32", or a plain address (/32, /128). Host bits must
 * be zero. 0, or -1 with the reason in err (without the option's name). */
int tli_cidr_parse(const char *s, tli_cidr *out, char *err, size_t errlen);
/* Parse "CIDR[,CIDR...]" and append to *list. 0, or -1 with err set. */
int tli_cidr_list_add(tli_cidr **list, size_t *n, const char *s, char *err, size_t errlen);
/* Whether the address is in one of the ranges (an IPv4-mapped IPv6 address counts as IPv4). */
bool tli_cidr_match(const tli_cidr *list, size_t n, const struct sockaddr *sa);
/* Whether this peer may send the PROXY header of listener L: its from= list, else proxy-from. */
bool tli_proxy_trusted(const tl_server_config *cfg, const tli_listen *L, const struct sockaddr *sa);
/* Every proxy listener has someone to trust (a configuration error otherwise). 0, or -1. */
int tli_check_proxy_trust(const tl_server_config *cfg, char *err, size_t errlen);
/* Probe-bind L's address without SO_REUSEPORT, so that an address another process listens on is
 * found before the workers' SO_REUSEPORT sockets would silently join it. On success *fd is the
 * probe (bound, not listening, SO_REUSEADDR: the workers' sockets can bind beside it; hold it
 * until they have, so the port stays ours) and *port its port (the kernel's pick for port 0).
 * Returns 0, 1 when the address is in use (err names it), or -1 (err says why). */
int tli_probe_listen(const tli_listen *L, int *fd, uint16_t *port, char *err, size_t errlen);

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
