/*
 * tlsloop/server.h - a server: listeners, one loop per worker thread, TLS policy, admission
 * limits, deadlines, counters, graceful drain and reload. It serves any protocol: the
 * application gives connection callbacks (tlsloop/conn.h) and the server does the rest.
 *
 * Configuration. A tl_server_config is built from named options, the same names on the command
 * line (--name value), in a configuration file (one "name value" per line) and in code
 * (tl_server_config_set). tl_server_config_usage prints the table; docs/server.md describes each.
 * A file is read with tl_server_config_load; options given after it override it, and repeated
 * options (listen, cert, key) add to it. tl_server_check validates a configuration completely
 * (certificates, keys, key files, CA) without binding anything: a check mode for operators.
 *
 * Listeners and workers. Each listener is an address:port (IPv4 or IPv6), TLS or plain, and may
 * expect a PROXY protocol v1/v2 header first (tlsloop/proxyproto.h) that says who the client
 * really is; only from the address ranges trusted for it (proxy-from, or the listener's from=):
 * anyone else's connection is closed before it is read. Each worker thread runs its own loop
 * with its own SO_REUSEPORT socket per listener: the kernel spreads connections, there is no
 * accept lock and no hand-off. An address another process listens on is refused (see
 * tl_server_probe), never shared. All TLS listeners share
 * one TLS configuration (one SSL_CTX per certificate set, with its session cache and ticket key
 * ring), never one per connection.
 *
 * Certificates. Each --cert/--key pair is checked at load (key match, chain order, expiry). The
 * host names a certificate serves are its subjectAltName DNS entries; a client's SNI picks the
 * certificate for its name, and the first certificate is the default. An RSA and an ECDSA
 * certificate for the same names serve together (the client's signature algorithms pick one).
 *
 * Admission, before any TLS work: a global connection limit (at the limit workers stop accepting,
 * so new clients wait in the kernel's backlog instead of being accepted and dropped), a cap on
 * concurrent handshakes and a new-handshake rate (both also pause accepting on TLS listeners), and
 * a per-source-address limit (the connection over it is closed at once and counted). Deadlines for
 * the handshake (and PROXY header), idleness, a send stall and the close come from tlsloop/conn.h.
 *
 * Running. tl_server_new loads everything and binds every listener, then drops privileges if a
 * user is configured. tl_server_run starts the workers and runs the control loop on the calling
 * thread until the server has drained: signals arrive there (SIGTERM/SIGINT: drain; SIGHUP:
 * reload; SIGUSR1: reopen the log; SIGUSR2: start the new binary, which takes the listening
 * sockets over and tells this one to drain: see "Upgrades" below), ticket keys rotate there, and the handshake rate is computed
 * there. Draining closes the listeners, asks every connection to finish (the handler's on_drain,
 * or tl_conn_close), and aborts what is left at the drain deadline. A reload builds a new TLS
 * generation from the configuration file and the certificate and key files; new handshakes use
 * it, established connections keep theirs, and a reload that fails keeps the old generation and
 * logs why. Listeners, workers, the user, the limits and the log file need a restart to change.
 *
 * Upgrades and systemd (docs/scale-out.md). A new process takes the running one's listening
 * sockets over a UNIX socket (SCM_RIGHTS): the one SIGUSR2 starts (our executable's path with our
 * argv, TLSLOOP_TAKEOVER naming the socket), or any started with the same options while the
 * running one listens on upgrade-socket PATH. The kernel's accept queues stay with the sockets, so
 * no connection is refused or lost; the old process drains once the new one serves. Under
 * systemd, sockets passed by socket activation (LISTEN_FDS) are used for the listeners whose
 * addresses they are bound to, and sd_notify says READY=1, RELOADING=1, STOPPING=1 and STATUS=
 * (Type=notify; NotifyAccess=all lets a successor say MAINPID=).
 *
 * Threads: callbacks of a connection run on its worker's thread. tl_server_stop, tl_server_reload
 * and tl_server_get_stats may be called from any thread once the server runs.
 *
 * Errors: functions returning int give 0 or -1 with a one-line message in err that names the
 * option, file or address at fault.
 */
#ifndef TLSLOOP_SERVER_H
#define TLSLOOP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <tlsloop/api.h>
#include <tlsloop/buf.h>
#include <tlsloop/conn.h>
#include <tlsloop/log.h>
#include <tlsloop/tls_ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_server tl_server;
typedef struct tl_server_config tl_server_config;

/* ---- configuration ---------------------------------------------------------------------- */

TL_API tl_server_config *tl_server_config_new(void);
TL_API void tl_server_config_free(tl_server_config *cfg);

/* Set one option by name ("listen", "handshake-timeout", ...). value is NULL or "" for a flag.
 * Returns 0, -1 on a bad value (err says why), or 1 when no option has this name. */
TL_API int tl_server_config_set(tl_server_config *cfg, const char *name, const char *value,
                                char *err, size_t errlen);
/* Whether the option takes a value (for command-line parsers). -1: no such option. */
TL_API int tl_server_config_takes_value(const char *name);
/* Read a configuration file: "name value" per line, '#' starts a comment. Errors name the file
 * and line. The path is kept: tl_server_reload reads it again. */
TL_API int tl_server_config_load(tl_server_config *cfg, const char *path, char *err,
                                 size_t errlen);
/* Parse the server options in argv[*argi...] ("--name value", "--name=value", "--flag",
 * "--config FILE") and advance *argi past them. Stops at the first argument that is not a server
 * option and returns 0 (the caller handles it, or it is the end); -1 on a bad option value. */
TL_API int tl_server_config_args(tl_server_config *cfg, int argc, char **argv, int *argi,
                                 char *err, size_t errlen);
/* How many listeners ("listen"), TLS listeners ("tls-listen") or certificates ("cert") the
 * configuration has, whether it has an OCSP cache directory ("ocsp-cache": 0 or 1), or how many
 * values an extension option has; 0 for other names. */
TL_API size_t tl_server_config_count(const tl_server_config *cfg, const char *name);
/* The i-th listen value as given ("127.0.0.1:8443,plain"), or NULL past the last. */
TL_API const char *tl_server_config_listen(const tl_server_config *cfg, size_t i);
/* Print the options, one per line with their argument and default, for --help. */
TL_API void tl_server_config_usage(FILE *out);
/* Hand TLS handshakes that offer this ALPN protocol to a layer above (tl_tls_ctx_set_alpn_switch,
 * tlsloop/tls_ctx.h): every TLS generation, reloads included, gets the hook. The ACME client's
 * TLS-ALPN-01 uses it. Copies and reloads keep it. 0, or -1 (out of memory). */
TL_API int tl_server_config_set_alpn_switch(tl_server_config *cfg, const char *protocol,
                                            tl_tls_alpn_switch_fn fn, void *data);

/* ---- options of the layer above -------------------------------------------------------- */

/* Options of a layer that runs on the server (an HTTP server, say) that the command line, the
 * configuration file and tl_server_config_set accept beside the server's own, so one file and
 * one command line configure both. The server keeps their values as text, after the option's
 * check accepted them; the layer reads them back with tl_server_config_value(s). A reload reads
 * them again with the file (and checks them); the layer decides what it can change live. */
typedef struct tl_server_option {
    const char *name;         /* without the leading "--" */
    const char *arg;          /* "FILE", "N", ... for the usage text; "" for an on|off flag */
    const char *help;         /* one line, with the default */
    /* Check a value (for a flag: "on" or "off"). 0, or -1 with err set; NULL accepts any. */
    int (*check)(const char *value, char *err, size_t errlen);
    bool repeat;              /* every value is kept (else a later one replaces an earlier one) */
} tl_server_option;

/* Accept these options too (up to four tables, from the layers stacked on the server). A table
 * must outlive the configuration (and the server made from it). Give them before any option is
 * set. Returns 0, or -1 if a name is taken already (or there are four tables). */
TL_API int tl_server_config_extend(tl_server_config *cfg, const tl_server_option *opts, size_t n);
/* The value last given for an extension option ("on"/"off" for a flag), or NULL if none was. */
TL_API const char *tl_server_config_value(const tl_server_config *cfg, const char *name);
/* The tls-kdf option's value (TL_KDF_OPENSSL unless set), for layers that make TLS contexts of
 * their own (the proxy's backend client). */
TL_API tl_kdf tl_server_config_kdf(const tl_server_config *cfg);
/* Every value given for a repeatable one, in order: fills out (up to max) and returns the count. */
TL_API size_t tl_server_config_values(const tl_server_config *cfg, const char *name,
                                      const char **out, size_t max);
/* Print a table of extension options like tl_server_config_usage does. */
TL_API void tl_server_option_usage(FILE *out, const tl_server_option *opts, size_t n);

/* The parsers behind the server's own options, for the checks of extension options:
 * a duration ("250ms", "10s", "5m", "2h", or bare seconds; at most 49 days) in milliseconds, and
 * a size ("512", "64k", "16m", "1g"; binary multiples) in bytes. 0, or -1. */
TL_API int tl_server_parse_duration(const char *s, uint64_t *ms);
TL_API int tl_server_parse_size(const char *s, uint64_t *bytes);
/* A tl_server_option check: a duration above 0 (the message names the expected forms). */
TL_API int tl_server_check_duration(const char *value, char *err, size_t errlen);

/* Check everything short of binding: listeners given and valid, certificates and keys load, the
 * CA and ticket key file read, the TLS policy accepted by OpenSSL, the user exists. */
TL_API int tl_server_check(const tl_server_config *cfg, char *err, size_t errlen);

/* Whether another process listens on one of the configured addresses. Workers bind with
 * SO_REUSEPORT, which would let a second server join a port silently and take part of its
 * connections; so tl_server_new first binds each address once without it (as this does) and
 * fails on one in use. Returns 0, 1 when an address is in use ("listen ADDR: address already in
 * use ..." in err: tools exit with their own code for it), or -1 on another failure. A caller
 * whose tl_server_new failed can call it to tell the two apart. */
TL_API int tl_server_probe(const tl_server_config *cfg, char *err, size_t errlen);

/* ---- the server ------------------------------------------------------------------------- */

typedef struct tl_server_handler {
    /* Callbacks of every connection (required). */
    const tl_conn_cbs *cbs;
    /* A new connection, before any of its callbacks (optional): set its data here
     * (tl_conn_set_data). Runs on the connection's worker thread. */
    void (*on_open)(tl_conn *c, void *data);
    /* The server drains (optional): finish what is in flight, then tl_conn_close. Without it the
     * server calls tl_conn_close itself. */
    void (*on_drain)(tl_conn *c, void *data);
    /* SIGUSR1 reopened the error log (optional): reopen the layer's own logs. Control thread. */
    void (*on_reopen)(void *data);
    void *data;
    /* Keep connections writable after the peer's end of stream (tl_conn_opts.half_close): a
     * client may send its request, shut its side, and still read the answer. */
    bool half_close;
    /* A reload took effect on this connection's worker (optional): new connections get the new
     * TLS generation, this one keeps its own; a protocol that can ask its client to come back on
     * a new connection may do so (HTTP/2's GOAWAY). Runs on the connection's worker thread, for
     * every established connection of the worker. */
    void (*on_reload)(tl_conn *c, void *data);
} tl_server_handler;

/* Load the configuration (copied: cfg may be freed after), bind every listener, open the log,
 * drop privileges. NULL with err set on any failure. */
TL_API tl_server *tl_server_new(const tl_server_config *cfg, const tl_server_handler *handler,
                                char *err, size_t errlen);
/* Start the workers and run the control loop here until the server has drained. Returns 0, or
 * -1 when a worker could not start (err says why). */
TL_API int tl_server_run(tl_server *srv, char *err, size_t errlen);
/* Begin draining (as SIGTERM does). Any thread. */
TL_API void tl_server_stop(tl_server *srv);
/* Reload (as SIGHUP does): read the configuration file again, certificates, keys and ticket key
 * file; on success new handshakes use them. Returns 0, or -1 with the reason (the old ones stay).
 * Any thread. */
TL_API int tl_server_reload(tl_server *srv, char *err, size_t errlen);
/* Free after tl_server_run returned (or instead of running it). */
TL_API void tl_server_free(tl_server *srv);

/* Listeners in configuration order, and the port each is bound to (useful with port 0). */
TL_API size_t tl_server_listeners(const tl_server *srv);
TL_API uint16_t tl_server_port(const tl_server *srv, size_t listener);
TL_API bool tl_server_listener_is_tls(const tl_server *srv, size_t listener);
/* Health for balancers (what tlsloop serve's metrics listener answers on /health and /ready):
 * NULL while the server takes new connections, else why not: "draining" from the moment a drain
 * begins (SIGTERM, tl_server_stop, or a successor took the listeners over), drain-grace before
 * the listeners close; with readiness, also "at max-conns" while the connection limit holds new
 * clients in the backlog. Any thread. */
TL_API const char *tl_server_health(tl_server *srv, bool readiness);
TL_API unsigned tl_server_workers(const tl_server *srv);
TL_API tl_log *tl_server_log(tl_server *srv);

/* Facts about a connection the server made (NULL/-1/0 for other connections). */
/* The client's address: from the PROXY header when the listener expects one, else the socket's. */
TL_API const struct sockaddr *tl_server_conn_peer(const tl_conn *c, socklen_t *len);
/* Which listener accepted it (configuration order), and which worker runs it. */
TL_API int tl_server_conn_listener(const tl_conn *c);
TL_API int tl_server_conn_worker(const tl_conn *c);
/* The TLVs of its PROXY v2 header (tl_proxy_tlv can search them after tl_proxy_parse), or NULL. */
TL_API const uint8_t *tl_server_conn_proxy_tlvs(const tl_conn *c, size_t *len);

/* ---- counters --------------------------------------------------------------------------- */

/* Why a handshake failed. */
typedef enum tl_hs_fail {
    TL_HS_FAIL_TIMEOUT = 0,   /* the handshake deadline passed */
    TL_HS_FAIL_CLOSED,        /* the peer closed or reset before finishing */
    TL_HS_FAIL_PROTOCOL,      /* the peer sent something invalid, or no common version/cipher */
    TL_HS_FAIL_ALERT,         /* the peer sent a fatal alert (e.g. it did not trust us) */
    TL_HS_FAIL_VERIFY,        /* the client's certificate failed verification */
    TL_HS_FAIL_OTHER,         /* drained, out of memory, ... */
    TL_HS_FAIL_KINDS
} tl_hs_fail;
TL_API const char *tl_hs_fail_name(tl_hs_fail why);

typedef struct tl_server_stats {
    uint64_t conns_open;            /* now */
    uint64_t conns_total;           /* accepted since start */
    uint64_t conns_refused_source;  /* closed at once: the source was at its limit */
    uint64_t proxy_invalid;         /* closed: malformed or missing PROXY header */
    uint64_t proxy_untrusted;       /* closed at once: a proxy listener's peer outside proxy-from */
    uint64_t accept_pauses;         /* times a worker stopped accepting at a limit */
    uint64_t handshakes_active;     /* now */
    uint64_t handshakes_full, handshakes_resumed;
    uint64_t handshakes_failed[TL_HS_FAIL_KINDS];
    uint64_t handshake_cpu_ns;      /* CPU time spent in handshakes */
    uint64_t ends[TL_END_LOCAL + 1];/* closed connections by how they ended (tl_conn_end) */
    uint64_t bytes_in, bytes_out;   /* application bytes of closed connections */
    double handshake_rate;          /* handshakes per second over the last second (summed only) */
    int64_t cert_expiry_days;       /* days until the first certificate expires (summed only) */
    uint64_t reloads, reload_failures;
    tl_ticket_stats tickets;        /* (summed only) */
    uint64_t key_file_reloads, key_file_reload_failures; /* the key file changed (summed only) */
    /* session-store: lookups asked, and how they ended (hits, misses: timeouts, the store
     * unavailable, entries that did not open (rejected) count as misses too); misses asked
     * once more a moment later (retries); sessions stored
     * and stores failed; connections made and lost. */
    struct {
        uint64_t lookups, hits, misses, timeouts, unavailable, rejected, stores, store_errors,
            connects, disconnects, retries;
    } store;
} tl_server_stats;

/* Counters of one worker (0..workers-1), or of all (worker -1). Any thread. */
TL_API void tl_server_get_stats(tl_server *srv, int worker, tl_server_stats *out);
/* The server's counters (summed over workers) as Prometheus text, format 0.0.4, appended to out:
 * connections, ends, handshakes and their failures, bytes, certificate expiry, reloads, tickets.
 * The metrics pages of tlsloop serve and tlsloop proxy start with it. Returns 0, or -1 when out
 * of memory. Any thread. */
TL_API int tl_server_metrics_text(tl_server *srv, tl_buf *out);

/* A listener of its own for the metrics page, shared by the layers above (tlsloop serve and
 * tlsloop proxy): their option `metrics-listen [ADDR:]PORT` (each declares it in its table) names
 * a plain listener that serves metrics and nothing else, while the public listeners never do.
 * tl_server_config_add_metrics_listen adds it to cfg as the last listener ("ADDR:PORT,plain"),
 * after every other option is set; without metrics-listen it does nothing. 0, or -1 with err
 * ("metrics-listen X: ..."). tl_server_config_metrics_listener gives that listener's index in a
 * configuration so finished (what tl_server_port and tl_server_conn_listener count), -1 without
 * metrics-listen, or -2 with err when the last listener is not it (finish was not called). */
TL_API int tl_server_config_add_metrics_listen(tl_server_config *cfg, char *err, size_t errlen);
TL_API int tl_server_config_metrics_listener(const tl_server_config *cfg, char *err,
                                             size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_SERVER_H */
