/*
 * src/server/server_int.h - the server's private structures, shared by server*.c only.
 */
#ifndef TLSLOOP_SERVER_INT_H
#define TLSLOOP_SERVER_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/stat.h>

#include <tlsloop/limits.h>
#include <tlsloop/proxyproto.h>
#include <tlsloop/server.h>

#include "server/sstore_int.h"
#include "util/tli.h"

/* ---- configuration (server_config.c) ---- */

/* An address range (proxy-from, a listener's from=): the network with its host bits zero. */
typedef struct tli_cidr {
    uint8_t family;                /* AF_INET or AF_INET6 */
    uint8_t bits;                  /* prefix length: 0-32 or 0-128 */
    uint8_t addr[16];              /* 4 bytes for IPv4 */
} tli_cidr;

#define TLI_LISTEN_FROM_MAX 8      /* from= per listener; longer lists go in proxy-from */

/* How often a server looks whether its ticket key file changed (a rotation on another host,
 * copied here, needs no signal). */
#define TLI_KEY_WATCH_MS 1000

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

/* ocsp-staple: fetch from the certificate's responder (the default), none, or the operator's file. */
typedef enum { TLI_OCSP_ON = 0, TLI_OCSP_OFF, TLI_OCSP_FILE } tli_ocsp_mode;

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
    tl_io_backend io;              /* io: the loops' backend (TL_IO_DEFAULT: TLSLOOP_IO, else epoll) */
    char *ciphers, *suites, *groups, *alpn;
    bool allow_expired;
    tli_ocsp_mode ocsp;            /* ocsp-staple: on (default), off, or a file (ocsp_file) */
    char *ocsp_file;
    char *ocsp_cache;              /* ocsp-cache: NULL, the state directory's ocsp/ */
    uint64_t session_cache;
    uint64_t session_lifetime_ms;
    bool tickets;
    uint64_t num_tickets;
    char *ticket_key_file;
    uint64_t ticket_rotate_ms;     /* 0: lifetime / 4 */
    char *session_store;           /* memcached://HOST:PORT or redis://HOST:PORT, or NULL */
    uint64_t session_store_timeout_ms;
    uint64_t workers;              /* 0: one per core */
    uint64_t max_conns;            /* 0: from RLIMIT_NOFILE */
    uint64_t max_handshakes;
    uint64_t handshake_rate, handshake_burst;   /* 0: off */
    uint64_t max_per_source;       /* 0: off */
    uint64_t ipv6_prefix;
    uint64_t handshake_timeout_ms, idle_timeout_ms, send_timeout_ms, close_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t drain_grace_ms;       /* drain-grace: /health says draining this long first */
    char *upgrade_socket;          /* upgrade-socket: where a successor takes the listeners */
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
    /* tl_server_config_set_alpn_switch: given to every generation's default TLS configuration */
    char *alpn_switch_proto;
    tl_tls_alpn_switch_fn alpn_switch_fn;
    void *alpn_switch_data;
};

/* server_config_parse.c: a whole number up to max; a duration ("100us" only with allow_us,
 * "250ms", "10s", "5m", "2h", or bare seconds) in microseconds up to max_us, or in milliseconds
 * up to 49 days; on/off (yes/no, true/false, 1/0; empty is on); a listen value
 * ("[ADDR:]PORT[,plain|,tls][,proxy[,from=CIDR...]]"). 0, or -1 (the listen one with err set). */
int tli_parse_uint(const char *s, uint64_t max, uint64_t *out);
int tli_parse_duration_us(const char *s, bool allow_us, uint64_t max_us, uint64_t *out_us);
int tli_parse_duration_ms(const char *s, uint64_t *out_ms);
int tli_parse_bool(const char *s, bool *out);
int tli_parse_listen(const char *s, tli_listen *out, char *err, size_t errlen);

/* server_config.c: remember a setting for the replay (not while a file loads: the file is one
 * "config" entry); 0, or -1 out of memory. Whether an option takes a value, extension options
 * included: 1, 0 (a flag), or -1 (unknown). */
int tli_server_config_remember(tl_server_config *cfg, const char *name, const char *value);
int tli_option_takes_value(const tl_server_config *cfg, const char *name);

/* server_config_file.c: the same settings applied again to a new configuration, files read anew:
 * a copy, or a reload. NULL with err set. */
tl_server_config *tli_server_config_replay(const tl_server_config *cfg, char *err, size_t errlen);

/* ---- addresses and trust (server_trust.c) ---- */

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

/* ---- the running server (server.c and the files below) ---- */

/* Threads. Each worker owns a loop, its own SO_REUSEPORT socket per listener and the connections
 * it accepted; other threads reach it only by posting work to its loop, or through the few
 * atomics below. The control thread (the caller of tl_server_run) handles signals, ticket
 * rotation and the handshake rate. */

/* The longest PROXY header accepted (v2 allows 64 KiB of TLVs; balancers send a few hundred). */
#define TLI_PROXY_MAX 1024
/* How long accepting pauses when the process is out of file descriptors. */
#define TLI_FD_RETRY_MS 100

typedef struct worker worker;
typedef struct tli_ocsp tli_ocsp;

/* A listening socket the server starts with instead of binding one: handed over by the server it
 * replaces (server_handoff.c; listener and worker as that server numbered them) or passed by
 * systemd (server_systemd.c; listener -1: matched by its address). tli_bind_all takes them. */
typedef struct tli_inherit {
    int fd;
    int listener;
    int worker;
    char name[64];                 /* systemd's FileDescriptorName, or "" */
} tli_inherit;

/* Single-writer counters: only the owning worker writes them, any thread reads them. */
typedef _Atomic uint64_t counter;

static inline void bump(counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

typedef struct wstats {
    counter conns_total, conns_closed, refused_source, proxy_invalid, proxy_untrusted, accept_pauses;
    counter hs_started, hs_ended, hs_full, hs_resumed, hs_failed[TL_HS_FAIL_KINDS], hs_cpu_ns;
    counter ends[TL_END_LOCAL + 1], bytes_in, bytes_out;
} wstats;

/* A connection the server made: the owner data of its tl_conn. */
typedef struct sconn {
    tl_conn *c;
    worker *w;
    struct sconn *prev, *next;
    union {                        /* an IPv4 or IPv6 address: 28 bytes, not a 128-byte storage */
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peerlen;
    uint8_t *tlvs;                 /* PROXY v2 TLVs (copied), or NULL */
    size_t tlvs_len;
    int listener;
    bool hs_slot;                  /* holds a handshake slot */
    bool established;              /* on the worker's list of established connections */
    struct sconn *est_prev, *est_next;
    uint64_t est_ms;               /* when its handshake ended (plain: when it was accepted) */
    bool hs_failed;
    bool source_counted;
    bool drain_asked;              /* on_drain called (or closed) for the drain */
} sconn;

/* An accepted socket whose PROXY header is still arriving. */
typedef struct pending {
    tl_io io;
    tl_timer timer;
    worker *w;
    struct pending *prev, *next;
    int listener;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    uint64_t deadline_ms;          /* the handshake deadline, which the header's time counts to */
    size_t have;
    uint8_t buf[TLI_PROXY_MAX];
} pending;

typedef struct wlisten {
    tl_listen lis;
    worker *w;
    int index;
    bool paused;
} wlisten;

struct worker {
    tl_server *srv;
    int index;
    pthread_t thread;
    bool started;
    tl_loop *loop;
    wlisten *ls;
    tli_gen *gen;                  /* what new TLS connections use */
    tl_conn_opts opts;             /* template for new connections */
    sconn *conns;
    sconn *est_head, *est_tail;    /* established connections, oldest first */
    pending *pendings;
    size_t nconns, npending;
    bool draining;
    tl_timer retry;                /* resume after a rate or fd pause */
    tl_timer drain_deadline;
    tl_timer close_ls;             /* draining: the listeners close once no accept is in flight */
    uint64_t close_ls_until;       /* ... or at this time whatever */
    unsigned ls_open;              /* listening sockets not closed yet (draining) */
    atomic_bool asleep;            /* a listener waits for a shared slot */
    atomic_bool wake_posted;
    tl_work wake_work;
    tl_work drain_work;
    tl_work swap_work;
    atomic_bool swap_posted;
    pthread_mutex_t swap_lock;
    tli_gen *next_gen;             /* under swap_lock */
    tl_work done_work;             /* to the control loop when the worker ends */
    tli_sstore *store;             /* session-store: this worker's client, or NULL */
    wstats st;
};

struct tl_server {
    tl_server_config *cfg;         /* as started; listeners, workers and limits come from it */
    tli_gen *first_gen;            /* owns cfg */
    tl_server_handler handler;
    tl_log *log;
    int *fds;                      /* workers x listeners sockets, bound at new */
    uint16_t *ports;
    size_t nlisten;
    unsigned nworkers;
    worker *workers;
    tl_pool *pool;
    tl_ticket_ring *ring;          /* rotated here unless it came from a key file */
    bool ring_from_file;
    pthread_mutex_t reload_lock;   /* one reload at a time */
    pthread_mutex_t gen_lock;      /* the generation and ring below (held briefly) */
    tli_gen *gen;
    unsigned gen_serial;
    tl_rate *rate;
    tl_addr_limit *per_source;
    uint64_t max_conns, max_hs;
    atomic_uint_fast64_t conns, handshakes;
    atomic_bool stopping;
    tl_loop *control;
    tl_work stop_work;
    tl_timer tick, rotate;
    tl_timer keywatch;             /* the key file, looked at every TLI_KEY_WATCH_MS */
    struct stat key_seen;          /* the key file as last read (st_ino 0: not read) */
    _Atomic uint64_t key_reloads, key_reload_failures;
    unsigned nstarted, workers_done;
    uint64_t last_hs_total, last_tick_ms;
    _Atomic uint64_t rate_milli;   /* handshakes per second x 1000 */
    _Atomic uint64_t reloads, reload_failures;
    tli_ocsp *ocsp;                /* stapling (server_ocsp.c); NULL when no listener is TLS */
    /* Health (tl_server_health): set when a drain starts, before the listeners close. */
    atomic_bool draining;
    tl_timer grace;                /* drain-grace: the listeners close when it fires */
    /* Sockets to start with (tli_bind_all takes them, then frees the table). */
    tli_inherit *inherit;
    size_t ninherit;
    bool from_systemd;             /* they came from systemd (LISTEN_FDS) */
    /* Upgrade (server_handoff.c). As the successor: the connection to the server we replace
     * (told "serving" once our workers run), else -1. As the running server: the control socket
     * a successor connects to, the one connected now, the child SIGUSR2 started. */
    int takeover_fd;
    pid_t takeover_from;
    int up_fd;                     /* listening control socket, -1 */
    tl_io up_io;
    char up_name[108];             /* its path, or "@name" for an abstract socket */
    dev_t up_dev;                  /* the path's inode as we bound it: unlinked only if still ours */
    ino_t up_ino;
    bool up_configured;            /* upgrade-socket names it (else SIGUSR2 made it) */
    int upc_fd;                    /* a successor's connection, -1 */
    tl_io upc_io;
    pid_t upc_pid;
    uint64_t upc_deadline_ms;      /* it says "serving" by then, or we stop waiting */
    pid_t up_child;                /* started by SIGUSR2, not yet reaped, 0 */
    tl_timer up_timer;             /* looks for its exit */
    bool handed_off;               /* a successor serves: we drain */
};

#define LOG(srv, level, ...) tl_log_write((srv)->log, TL_LOG_##level, __VA_ARGS__)

/* From the bottom up: each file uses only the ones above it (tests/check_circles.sh). */

/* server_config_check.c: whether a listener is TLS; the checks that need no system resource
 * (tl_server_check adds loading the TLS generation). 0, or -1 with err set. */
bool tli_any_tls(const tl_server_config *cfg);
int tli_server_config_check(const tl_server_config *cfg, char *err, size_t errlen);

/* server_admit.c: reserve a slot of *count below max; give back a connection and/or a handshake
 * slot (waking the listeners that wait for one); stop watching a listener until a slot frees
 * (PAUSE_SLOTS) or its retry timer fires; the worker's wake_work and retry callbacks. */
typedef enum { PAUSE_SLOTS, PAUSE_RATE, PAUSE_FDS } pause_why;
bool tli_take_slot(tl_server *srv, atomic_uint_fast64_t *count, uint64_t max);
void tli_release_slots(tl_server *srv, bool conn, bool hs);
void tli_pause_listener(worker *w, wlisten *wl, pause_why why);
void tli_on_wake(tl_loop *loop, tl_work *work);
void tli_on_retry(tl_loop *loop, tl_timer *t);

/* server_listen.c: bind every worker's socket for every listener (after the probe); a listener's
 * address with the port it is bound to. */
int tli_bind_all(tl_server *srv, char *err, size_t errlen);
/* Close the inherited sockets not taken and free the table (server_listen.c). */
void tli_free_inherited(tl_server *srv);
void tli_bound_text(const tl_server *srv, size_t li, char *out, size_t outlen);

/* server_conn.c: the owner of the server's connections; stop a draining worker's loop once it
 * holds nothing; close an accepted socket that never became a connection (its slots go back);
 * make the socket a connection (slots held; hs_timeout_ms: the handshake deadline left, 0: the
 * configured one). */
extern const tl_conn_owner tli_server_owner;
extern const tl_conn_owner tli_server_owner_store;   /* the same, with session-store lookups */
void tli_maybe_finish(worker *w);
void tli_drop_fd(worker *w, int fd, bool tls);
void tli_start_conn(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t peerlen,
                    const tl_proxy_info *proxy, uint32_t hs_timeout_ms);

/* server_proxy_header.c: wait for the PROXY header of an accepted socket; end that wait (ok: the
 * socket became a connection; else it is closed); close a peer not trusted to send one. */
void tli_start_pending(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t len);
void tli_end_pending(pending *p, bool ok);
void tli_refuse_untrusted(worker *w, int li, int fd, const struct sockaddr *peer);

/* server_ocsp.c: OCSP stapling for every certificate of the generations (docs/certificates.md). new
 * after the control loop exists; attach a generation before it is published (its configurations
 * get their certificates' staples; ocsp-staple FILE is read and checked now); stop on the control
 * thread when the drain begins (fetches end; busy says whether one is still closing); free after
 * the control loop stopped. attach: 0, or -1 out of memory (logged). */
tli_ocsp *tli_ocsp_new(tl_server *srv);
int tli_ocsp_attach(tli_ocsp *o, tli_gen *g);
void tli_ocsp_stop(tli_ocsp *o);
bool tli_ocsp_busy(tli_ocsp *o);
void tli_ocsp_free(tli_ocsp *o);
/* The directory fetched responses are kept in: ocsp-cache, else $XDG_STATE_HOME/tlsloop/ocsp,
 * else ~/.local/state/tlsloop/ocsp. */
void tli_ocsp_cache_dir(const tl_server_config *cfg, char *out, size_t len);

/* server_control.c: the worker's drain callbacks; a generation for cfg (taken over on success);
 * a worker's switch to a generation and its swap_work callback; the log level cfg sets; the
 * warning for world-readable keys; the start of the drain; the control thread's signal handler
 * and timers, and its stop_work callback. */
void tli_on_drain_deadline(tl_loop *loop, tl_timer *t);
void tli_on_close_listeners(tl_loop *loop, tl_timer *t);
void tli_key_file_seen(tl_server *srv, const char *path);
void tli_on_keywatch(tl_loop *loop, tl_timer *t);
void tli_on_drain_work(tl_loop *loop, tl_work *work);
tli_gen *tli_make_gen(tl_server_config *cfg, tl_ticket_ring *ring, char *err, size_t errlen);
void tli_set_gen(worker *w, tli_gen *g);
void tli_on_swap(tl_loop *loop, tl_work *work);
void tli_apply_log_level(tl_server *srv, const tl_server_config *cfg);
void tli_warn_open_keys(tl_server *srv, const tl_server_config *cfg);
void tli_begin_drain(tl_server *srv);
void tli_on_stop_work(tl_loop *loop, tl_work *work);
void tli_on_signal(tl_loop *loop, int signo, void *data);
void tli_on_tick(tl_loop *loop, tl_timer *t);
uint64_t tli_rotate_interval(const tl_server_config *cfg);
void tli_on_rotate(tl_loop *loop, tl_timer *t);
/* server_control.c: the drain-grace timer's callback (the drain proper begins). */
void tli_on_grace(tl_loop *loop, tl_timer *t);

/* server_systemd.c: tell systemd (sd_notify; nothing without NOTIFY_SOCKET): "READY=1",
 * "RELOADING=1" (MONOTONIC_USEC added), "STOPPING=1", "STATUS=...", "MAINPID=N". Take the sockets
 * systemd passed (LISTEN_FDS for this pid; the variables are unset so children do not see them)
 * into srv->inherit: 0, or -1 with err set. */
void tli_notify(tl_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tli_notify_reloading(tl_server *srv);
int tli_systemd_sockets(tl_server *srv, char *err, size_t errlen);

/* server_handoff.c: as a successor (TLSLOOP_TAKEOVER in the environment, or upgrade-socket with
 * a server on it): receive the running server's listening sockets into srv->inherit (0; 1 when
 * there is nobody to take over from; -1 with err). Once our workers run: tell it to drain, and
 * listen on upgrade-socket ourselves. SIGUSR2: start the new binary. The control socket's end. */
int tli_takeover(tl_server *srv, char *err, size_t errlen);
void tli_takeover_serving(tl_server *srv);
int tli_upgrade_listen(tl_server *srv, char *err, size_t errlen);
void tli_upgrade_signal(tl_server *srv);
void tli_on_up_timer(tl_loop *loop, tl_timer *t);
void tli_upgrade_close(tl_server *srv);

/* server_worker.c: a worker's setup (its sockets are bound), its thread, its teardown; the
 * backend the workers' loops run on ("epoll", "io_uring", or "mixed" when they differ). */
int tli_init_worker(tl_server *srv, worker *w, int index, char *err, size_t errlen);
void *tli_worker_main(void *arg);
void tli_free_worker(tl_server *srv, worker *w);
const char *tli_workers_io(const tl_server *srv);

#endif /* TLSLOOP_SERVER_INT_H */
