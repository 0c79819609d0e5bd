/* server_config.c - the server's options: one table for the command line, the configuration file
 * and the API (tlsloop/server.h), the setting and checking of each value, extension options, the
 * usage text, and a configuration's making and freeing. */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* ---- the option table ------------------------------------------------------------------- */

typedef enum { T_FLAG, T_UINT, T_DURATION, T_STRING, T_CUSTOM } opt_type;

typedef struct option {
    const char *name;
    opt_type type;
    const char *arg;       /* for usage */
    const char *help;
    size_t off;            /* field for T_FLAG/T_UINT/T_DURATION/T_STRING */
    uint64_t max;          /* T_UINT */
    int (*set)(tl_server_config *cfg, const char *v, char *err, size_t errlen); /* T_CUSTOM */
} option;

#define F(field) offsetof(tl_server_config, field)

static int append(void **arr, size_t *n, size_t size)
{
    void *p = realloc(*arr, (*n + 1) * size);
    if (!p)
        return -1;
    *arr = p;
    memset((char *)p + *n * size, 0, size);
    (*n)++;
    return 0;
}

static int set_listen(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    tli_listen l;
    if (tli_parse_listen(v, &l, err, errlen) != 0)
        return -1;
    if (append((void **)&cfg->listens, &cfg->n_listens, sizeof l) != 0)
        return tli_fmt(err, errlen, "out of memory"), -1;
    cfg->listens[cfg->n_listens - 1] = l;
    return 0;
}

static int set_proxy_from(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    char msg[300];
    if (tli_cidr_list_add(&cfg->proxy_from, &cfg->n_proxy_from, v, msg, sizeof msg) != 0)
        return tli_fmt(err, errlen, "proxy-from %s: %s", v, msg), -1;
    return 0;
}

static int set_cert(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (cfg->n_certs && !cfg->certs[cfg->n_certs - 1].key) {
        tli_fmt(err, errlen, "cert %s: the previous cert (%s) has no key yet: give cert, then key",
                v, cfg->certs[cfg->n_certs - 1].cert);
        return -1;
    }
    char *copy = strdup(v);
    if (!copy || append((void **)&cfg->certs, &cfg->n_certs, sizeof(tli_certpair)) != 0) {
        free(copy);
        return tli_fmt(err, errlen, "out of memory"), -1;
    }
    cfg->certs[cfg->n_certs - 1].cert = copy;
    return 0;
}

static int set_key(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (!cfg->n_certs || cfg->certs[cfg->n_certs - 1].key) {
        tli_fmt(err, errlen, "key %s: give its certificate first (cert FILE, then key FILE)", v);
        return -1;
    }
    if (!(cfg->certs[cfg->n_certs - 1].key = strdup(v)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    return 0;
}

static int parse_version(const char *v, int *out)
{
    if (!strcmp(v, "1.2") || !strcmp(v, "TLSv1.2"))
        *out = TL_TLS1_2;
    else if (!strcmp(v, "1.3") || !strcmp(v, "TLSv1.3"))
        *out = TL_TLS1_3;
    else
        return -1;
    return 0;
}

static int set_tls_min(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (parse_version(v, &cfg->tls_min) != 0)
        return tli_fmt(err, errlen, "tls-min %s: expected 1.2 or 1.3 (older versions are unsafe)", v), -1;
    return 0;
}

static int set_tls_max(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (parse_version(v, &cfg->tls_max) != 0)
        return tli_fmt(err, errlen, "tls-max %s: expected 1.2 or 1.3", v), -1;
    return 0;
}

static int set_tls_kdf(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (tl_kdf_parse(v, &cfg->tls_kdf) != 0)
        return tli_fmt(err, errlen, "tls-kdf %s: expected openssl or tlsloop", v ? v : ""), -1;
    return 0;
}

static int set_io(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (tl_io_backend_parse(v, &cfg->io) != 0)
        return tli_fmt(err, errlen, "io %s: expected epoll, uring or auto", v ? v : ""), -1;
    return 0;
}

static int set_client_cert(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    if (!strcmp(v, "none"))
        cfg->client_verify = TL_VERIFY_NONE;
    else if (!strcmp(v, "optional"))
        cfg->client_verify = TL_VERIFY_OPTIONAL;
    else if (!strcmp(v, "require"))
        cfg->client_verify = TL_VERIFY_REQUIRE;
    else
        return tli_fmt(err, errlen, "client-cert %s: expected none, optional or require", v), -1;
    return 0;
}

static int set_log_level(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    tl_log_level level;
    char msg[200];
    if (tl_log_parse_level(v, &level, msg, sizeof msg) != 0)
        return tli_fmt(err, errlen, "log-level %s: expected error, warn, info or debug", v), -1;
    char *copy = strdup(v);
    if (!copy)
        return tli_fmt(err, errlen, "out of memory"), -1;
    free(cfg->log_level);
    cfg->log_level = copy;
    return 0;
}

static int set_delegate(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    bool on;
    if (v && !strcmp(v, "auto"))
        cfg->delegate = TLI_DELEGATE_AUTO;
    else if (tli_parse_bool(v, &on) == 0)
        cfg->delegate = on ? TLI_DELEGATE_ON : TLI_DELEGATE_OFF;
    else
        return tli_fmt(err, errlen, "delegate-handshakes %s: expected on, off or auto", v), -1;
    return 0;
}

/* loop-slice: a duration of at most 100 ms ("100us", "2ms"; 0 or "default": the kernel's). */
static int set_loop_slice(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    uint64_t us;
    if (v && !strcmp(v, "default")) {
        cfg->loop_slice_ns = 0;
        return 0;
    }
    if (tli_parse_duration_us(v, true, 100000, &us) == 0) {
        cfg->loop_slice_ns = us * 1000;
        return 0;
    }
    return tli_fmt(err, errlen, "loop-slice %s: expected a time such as 100us or 2ms (at most "
                   "100ms), or default", v ? v : "(none)"), -1;
}

/* ticket-rotate: at most a day. A ticket key decrypts every ticket issued under it, and with
 * it every session's resumption secret; the interval bounds what one stolen key opens. */
static int set_ticket_rotate(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    uint64_t ms;
    if (!v || tli_parse_duration_ms(v, &ms) != 0 || ms == 0)
        return tli_fmt(err, errlen, "ticket-rotate %s: expected a duration such as 30m or 6h",
                       v ? v : "(none)"), -1;
    if (ms > TL_SERVER_TICKET_ROTATE_MAX_MS)
        return tli_fmt(err, errlen, "ticket-rotate %s: at most 24h (a ticket key opens every "
                       "session resumed under it: rotating keeps a stolen key's reach short)",
                       v), -1;
    cfg->ticket_rotate_ms = ms;
    return 0;
}

/* session-store: checked here (the URL's form); connected by each worker when it starts. */
static int set_session_store(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    tli_sstore_addr a;
    if (!v || tli_sstore_parse_url(v, &a, err, errlen) != 0)
        return -1;
    char *copy = strdup(v);
    if (!copy)
        return tli_fmt(err, errlen, "out of memory"), -1;
    free(cfg->session_store);
    cfg->session_store = copy;
    return 0;
}

/* ocsp-staple: on, off, or a file with a DER OCSP response. */
static int set_ocsp_staple(tl_server_config *cfg, const char *v, char *err, size_t errlen)
{
    bool on;
    if (tli_parse_bool(v, &on) == 0) {   /* on/off, yes/no, true/false, 1/0 */
        cfg->ocsp = on ? TLI_OCSP_ON : TLI_OCSP_OFF;
        free(cfg->ocsp_file);
        cfg->ocsp_file = NULL;
        return 0;
    }
    char *copy = strdup(v);
    if (!copy)
        return tli_fmt(err, errlen, "out of memory"), -1;
    free(cfg->ocsp_file);
    cfg->ocsp_file = copy;
    cfg->ocsp = TLI_OCSP_FILE;
    return 0;
}

static const option OPTIONS[] = {
    {"listen", T_CUSTOM, "[ADDR:]PORT[,plain][,proxy[,from=CIDR]...]",
     "listen here (repeat for more); TLS unless plain; proxy: expect a PROXY v1/v2 header, "
     "only from the from= ranges (else proxy-from)", 0, 0, set_listen},
    {"proxy-from", T_CUSTOM, "CIDR[,CIDR...]", "who may send PROXY headers to proxy listeners "
     "without from= (repeat to add; required for proxy; others are closed and counted)", 0, 0,
     set_proxy_from},
    {"cert", T_CUSTOM, "FILE", "certificate chain, PEM, leaf first (repeat; the first is the "
     "default, SNI picks by the certificate's names)", 0, 0, set_cert},
    {"key", T_CUSTOM, "FILE", "private key of the cert before it, PEM", 0, 0, set_key},
    {"allow-expired", T_FLAG, "", "load expired certificates (refused by default)", F(allow_expired), 0, NULL},
    {"ocsp-staple", T_CUSTOM, "on|off|FILE", "OCSP stapling (default on): on fetches each "
     "certificate's response from its CA's responder (the AIA OCSP URL; a certificate without one "
     "is not stapled), refreshes it half way to its nextUpdate and keeps it in ocsp-cache; FILE "
     "staples that DER response (reread on SIGHUP); every response is checked first", 0, 0,
     set_ocsp_staple},
    {"ocsp-cache", T_STRING, "DIR", "where fetched OCSP responses are kept across restarts "
     "(default $XDG_STATE_HOME/tlsloop/ocsp, else ~/.local/state/tlsloop/ocsp; serve: the "
     "state-dir's ocsp/)", F(ocsp_cache), 0, NULL},
    {"client-ca", T_STRING, "FILE", "CA certificates for client certificates (mTLS)", F(client_ca), 0, NULL},
    {"client-cert", T_CUSTOM, "none|optional|require",
     "ask clients for a certificate (default: require with client-ca, else none)", 0, 0, set_client_cert},
    {"tls-min", T_CUSTOM, "1.2|1.3", "lowest TLS version (default 1.2)", 0, 0, set_tls_min},
    {"tls-max", T_CUSTOM, "1.2|1.3", "highest TLS version (default 1.3)", 0, 0, set_tls_max},
    {"tls-kdf", T_CUSTOM, "openssl|tlsloop", "who derives TLS keys and computes libssl's HMACs: "
     "OpenSSL's own (default), or tlsloop's faster ones (OpenSSL's still in FIPS mode)", 0, 0,
     set_tls_kdf},
    {"ciphers", T_STRING, "LIST", "TLS 1.2 cipher list, OpenSSL syntax (default: ECDHE with AEAD)", F(ciphers), 0, NULL},
    {"ciphersuites", T_STRING, "LIST", "TLS 1.3 suites (default: the three standard ones)", F(suites), 0, NULL},
    {"groups", T_STRING, "LIST", "key-exchange groups (default X25519:P-256:P-384)", F(groups), 0, NULL},
    {"alpn", T_STRING, "LIST", "ALPN protocols in preference order, comma-separated", F(alpn), 0, NULL},
    {"session-cache", T_UINT, "N", "TLS 1.2 session cache size in sessions, 0 off (default 20480)",
     F(session_cache), 10000000, NULL},
    {"session-lifetime", T_DURATION, "TIME", "lifetime of sessions and tickets (default 2h)",
     F(session_lifetime_ms), 1, NULL},
    {"tickets", T_FLAG, "on|off", "session tickets (default on)", F(tickets), 0, NULL},
    {"tls13-tickets", T_UINT, "N", "TLS 1.3 tickets sent after a full handshake (default 1; a client that opens "
     "connections in parallel may want more)",
     F(num_tickets), 16, NULL},
    {"ticket-key-file", T_STRING, "FILE", "ticket keys shared with other instances (made and "
     "rotated by tlsloop ticket-keys: the current key encrypts, previous and next keys decrypt; "
     "or 80-byte binary keys, the first encrypting); reread on reload and within a second of a "
     "change; must be ours and mode 600; without it keys are random and rotate",
     F(ticket_key_file), 0, NULL},
    {"session-store", T_CUSTOM, "memcached://HOST:PORT|redis://HOST:PORT", "share TLS 1.2 sessions "
     "of clients without tickets with other instances through memcached or Redis (needs "
     "ticket-key-file: entries are sealed with AES-256-GCM under a key derived from its current "
     "key); a store that is down or slow means a full handshake, never an error", 0, 0,
     set_session_store},
    {"session-store-timeout", T_DURATION, "TIME", "how long a handshake waits for the session "
     "store's answer before it goes on without, at most 1s (default 20ms)", F(session_store_timeout_ms), 1,
     NULL},
    {"ticket-rotate", T_CUSTOM, "TIME", "add a new random ticket key this often, at most 24h "
     "(default session-lifetime/4, capped at 24h)", 0, 0, set_ticket_rotate},
    {"io", T_CUSTOM, "epoll|uring|auto", "the workers' I/O backend: epoll, io_uring (epoll with a "
     "warning where the kernel refuses it), or auto: io_uring when the kernel allows it, else "
     "epoll (default: the TLSLOOP_IO environment variable, else epoll)", 0, 0, set_io},
    {"workers", T_UINT, "N", "worker threads, one loop each (default: one per core)", F(workers), 1024, NULL},
    {"max-conns", T_UINT, "N", "connections across workers; at the limit, new ones wait in the "
     "backlog (default: from the open-files limit)", F(max_conns), 100000000, NULL},
    {"max-handshakes", T_UINT, "N", "concurrent TLS handshakes (default 4096)", F(max_handshakes), 100000000, NULL},
    {"handshake-rate", T_UINT, "N", "new TLS handshakes per second, 0 unlimited (default 0)",
     F(handshake_rate), 100000000, NULL},
    {"handshake-burst", T_UINT, "N", "handshakes allowed at once above the rate (default: the rate)",
     F(handshake_burst), 100000000, NULL},
    {"max-per-source", T_UINT, "N", "connections per client address, 0 unlimited (default 0)",
     F(max_per_source), 100000000, NULL},
    {"ipv6-prefix", T_UINT, "BITS", "IPv6 prefix that counts as one source (default 64)", F(ipv6_prefix), 128, NULL},
    {"handshake-timeout", T_DURATION, "TIME", "deadline for the PROXY header and TLS handshake "
     "(default 10s)", F(handshake_timeout_ms), 1, NULL},
    {"idle-timeout", T_DURATION, "TIME", "close a connection idle this long, 0 never (default 2m)",
     F(idle_timeout_ms), 0, NULL},
    {"send-timeout", T_DURATION, "TIME", "drop a peer that accepts none of our output this long "
     "(default 60s)", F(send_timeout_ms), 0, NULL},
    {"close-timeout", T_DURATION, "TIME", "deadline of a graceful close (default 5s)", F(close_timeout_ms), 1, NULL},
    {"drain-timeout", T_DURATION, "TIME", "on SIGTERM, abort what is still open after this (default 10s)",
     F(drain_timeout_ms), 1, NULL},
    {"drain-grace", T_DURATION, "TIME", "on SIGTERM, go on serving this long with the metrics "
     "listener's /health and /ready answering 503, so balancers take the instance out before "
     "the listeners close (default 0)", F(drain_grace_ms), 0, NULL},
    {"upgrade-socket", T_STRING, "PATH", "a UNIX socket where a new process started with the same "
     "options takes over the listening sockets (this one then drains); a new process finds the "
     "running one there (default: none; SIGUSR2 starts the new binary either way)",
     F(upgrade_socket), 0, NULL},
    {"key-update-limit", T_UINT, "N", "TLS 1.3 KeyUpdates a peer may send per second (default 100)",
     F(key_update_limit), 1000000, NULL},
    {"delegate-handshakes", T_CUSTOM, "on|off|auto", "run handshake crypto on task threads, off "
     "the loops: always, never, or auto: while a worker holds connections older than a quarter of a second "
     "(default auto)", 0, 0, set_delegate},
    {"loop-slice", T_CUSTOM, "TIME", "CPU time slice the scheduler gives a worker's loop thread, "
     "so its wake-ups preempt handshake work: 100us to 100ms, or default (default 100us; "
     "Linux 6.12 or later)", 0, 0, set_loop_slice},
    {"task-threads", T_UINT, "N", "task threads for delegated handshakes (default: one per worker)",
     F(task_threads), 1024, NULL},
    {"backlog", T_UINT, "N", "listen backlog per worker socket (default 4096)", F(backlog), 65535, NULL},
    {"user", T_STRING, "NAME", "after binding and reading keys, run as this user", F(user), 0, NULL},
    {"log", T_STRING, "FILE", "error log file, - for stderr (default -)", F(log_path), 0, NULL},
    {"log-level", T_CUSTOM, "LEVEL", "error, warn, info or debug (default info)", 0, 0, set_log_level},
    {"log-rate", T_UINT, "N", "most log lines per second, 0 unlimited (default 100)", F(log_rate), 1000000, NULL},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static const option *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (!strcmp(OPTIONS[i].name, name))
            return &OPTIONS[i];
    return NULL;
}

int tl_server_config_takes_value(const char *name)
{
    if (!strcmp(name, "config"))
        return 1;
    const option *o = find_option(name);
    if (!o)
        return -1;
    return o->type != T_FLAG;
}

static const tl_server_option *find_ext(const tl_server_config *cfg, const char *name)
{
    for (size_t t = 0; t < cfg->n_ext; t++)
        for (size_t i = 0; i < cfg->ext[t].n; i++)
            if (!strcmp(cfg->ext[t].opts[i].name, name))
                return &cfg->ext[t].opts[i];
    return NULL;
}

/* tl_server_config_takes_value, extension options included. */
int tli_option_takes_value(const tl_server_config *cfg, const char *name)
{
    int t = tl_server_config_takes_value(name);
    if (t >= 0)
        return t;
    const tl_server_option *x = find_ext(cfg, name);
    return x ? *x->arg != 0 : -1;
}

int tl_server_config_extend(tl_server_config *cfg, const tl_server_option *opts, size_t n)
{
    if (cfg->n_ext == TLI_EXT_TABLES)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (tl_server_config_takes_value(opts[i].name) >= 0 || find_ext(cfg, opts[i].name))
            return -1;
    cfg->ext[cfg->n_ext].opts = opts;
    cfg->ext[cfg->n_ext].n = n;
    cfg->n_ext++;
    return 0;
}

/* Set an extension option: check, then keep the text (a flag as "on" or "off"). */
static int set_ext(tl_server_config *cfg, const tl_server_option *x, const char *value, char *err,
                   size_t errlen)
{
    bool on;
    if (!*x->arg) {
        if (tli_parse_bool(value, &on) != 0)
            return tli_fmt(err, errlen, "%s %s: expected on or off", x->name, value), -1;
        value = on ? "on" : "off";
    } else if (!value || !*value) {
        return tli_fmt(err, errlen, "%s: needs a value (%s)", x->name, x->arg), -1;
    }
    char msg[300];
    if (x->check && x->check(value, msg, sizeof msg) != 0)
        return tli_fmt(err, errlen, "%s %s: %s", x->name, value, msg), -1;
    char *copy = strdup(value);
    if (!copy)
        return tli_fmt(err, errlen, "out of memory"), -1;
    if (!x->repeat)
        for (size_t i = 0; i < cfg->n_ext_values; i++)
            if (cfg->ext_values[i].name == x->name) {
                free(cfg->ext_values[i].value);
                cfg->ext_values[i].value = copy;
                return 0;
            }
    if (append((void **)&cfg->ext_values, &cfg->n_ext_values, sizeof *cfg->ext_values) != 0) {
        free(copy);
        return tli_fmt(err, errlen, "out of memory"), -1;
    }
    cfg->ext_values[cfg->n_ext_values - 1].name = x->name;
    cfg->ext_values[cfg->n_ext_values - 1].value = copy;
    return 0;
}

size_t tl_server_config_count(const tl_server_config *cfg, const char *name)
{
    if (!strcmp(name, "listen"))
        return cfg->n_listens;
    if (!strcmp(name, "cert"))
        return cfg->n_certs;
    if (!strcmp(name, "ocsp-cache"))
        return cfg->ocsp_cache != NULL;
    if (!strcmp(name, "tls-listen")) {
        size_t n = 0;
        for (size_t i = 0; i < cfg->n_listens; i++)
            n += cfg->listens[i].tls;
        return n;
    }
    return tl_server_config_values(cfg, name, NULL, 0);
}

const char *tl_server_config_listen(const tl_server_config *cfg, size_t i)
{
    return i < cfg->n_listens ? cfg->listens[i].text : NULL;
}

const char *tl_server_config_value(const tl_server_config *cfg, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < cfg->n_ext_values; i++)
        if (!strcmp(cfg->ext_values[i].name, name))
            v = cfg->ext_values[i].value;
    return v;
}

tl_kdf tl_server_config_kdf(const tl_server_config *cfg)
{
    return cfg->tls_kdf;
}

size_t tl_server_config_values(const tl_server_config *cfg, const char *name, const char **out,
                               size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_ext_values; i++)
        if (!strcmp(cfg->ext_values[i].name, name)) {
            if (n < max)
                out[n] = cfg->ext_values[i].value;
            n++;
        }
    return n;
}

static int set_value(tl_server_config *cfg, const option *o, const char *value, char *err,
                     size_t errlen);
int tli_server_config_remember(tl_server_config *cfg, const char *name, const char *value);

int tl_server_config_set(tl_server_config *cfg, const char *name, const char *value, char *err,
                         size_t errlen)
{
    const option *o = find_option(name);
    if (!o) {
        const tl_server_option *x = find_ext(cfg, name);
        if (!x)
            return 1;
        int rc = set_ext(cfg, x, value, err, errlen);
        if (rc == 0 && tli_server_config_remember(cfg, name, value) != 0)
            return tli_fmt(err, errlen, "out of memory"), -1;
        return rc;
    }
    if (o->type != T_FLAG && (!value || !*value)) {
        tli_fmt(err, errlen, "%s: needs a value (%s)", name, o->arg);
        return -1;
    }
    int rc = set_value(cfg, o, value, err, errlen);
    if (rc == 0 && tli_server_config_remember(cfg, name, value) != 0)
        return tli_fmt(err, errlen, "out of memory"), -1;
    return rc;
}

static int set_value(tl_server_config *cfg, const option *o, const char *value, char *err,
                     size_t errlen)
{
    const char *name = o->name;
    char *field = (char *)cfg + o->off;
    switch (o->type) {
    case T_FLAG:
        if (tli_parse_bool(value, (bool *)field) != 0)
            return tli_fmt(err, errlen, "%s %s: expected on or off", name, value), -1;
        return 0;
    case T_UINT:
    {
        uint64_t v;
        uint64_t min = !strcmp(name, "ipv6-prefix");   /* 0 bits would make the world one source */
        if (tli_parse_uint(value, o->max, &v) != 0 || v < min)
            return tli_fmt(err, errlen, "%s %s: expected a whole number from %llu to %llu", name,
                           value, (unsigned long long)min, (unsigned long long)o->max), -1;
        *(uint64_t *)field = v;
        return 0;
    }
    case T_DURATION: {
        uint64_t ms;
        if (tli_parse_duration_ms(value, &ms) != 0)
            return tli_fmt(err, errlen, "%s %s: expected a duration such as 500ms, 10s, 5m or 2h "
                                        "(at most 49 days)", name, value), -1;
        if (!ms && o->max)   /* max marks the deadlines that cannot be off */
            return tli_fmt(err, errlen, "%s %s: must be above 0", name, value), -1;
        *(uint64_t *)field = ms;
        return 0;
    }
    case T_STRING: {
        char *copy = strdup(value);
        if (!copy)
            return tli_fmt(err, errlen, "out of memory"), -1;
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case T_CUSTOM:
        return o->set(cfg, value, err, errlen);
    }
    return 1;
}

static void usage_line(FILE *out, const char *name, const char *arg, const char *help)
{
    char left[64];
    tli_fmt(left, sizeof left, "--%s%s%s", name, *arg ? " " : "", *arg ? arg : "");
    if (strlen(left) > 30)
        fprintf(out, "  %s\n  %-30s %s\n", left, "", help);
    else
        fprintf(out, "  %-30s %s\n", left, help);
}

void tl_server_config_usage(FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        usage_line(out, OPTIONS[i].name, OPTIONS[i].arg, OPTIONS[i].help);
    usage_line(out, "config", "FILE", "read options from FILE (\"name value\" per line)");
}

void tl_server_option_usage(FILE *out, const tl_server_option *opts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        usage_line(out, opts[i].name, *opts[i].arg ? opts[i].arg : "[on|off]", opts[i].help);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

tl_server_config *tl_server_config_new(void)
{
    tl_server_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->tls_min = TL_TLS1_2;
    cfg->tls_max = TL_TLS1_3;
    cfg->session_cache = 20480;
    cfg->session_lifetime_ms = 2 * 3600 * 1000;
    cfg->tickets = true;
    /* One ticket: each costs the server about 170,000 instructions (6% of a full ECDSA
     * handshake, docs/benchmarks.md), a client reusing sessions one connection after another
     * needs one at a time, and every resumption brings it a fresh one. */
    cfg->num_tickets = 1;
    cfg->session_store_timeout_ms = 20;
    cfg->max_handshakes = 4096;
    cfg->ipv6_prefix = 64;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 120000;
    cfg->send_timeout_ms = 60000;
    cfg->close_timeout_ms = 5000;
    cfg->drain_timeout_ms = 10000;
    cfg->key_update_limit = 100;
    cfg->backlog = 4096;
    /* Measured (docs/benchmarks.md, "Handshake storm"): p99 of established connections during a
     * full-handshake flood 1.75 ms with delegation, 34 ms without; but a delegated handshake
     * costs the server 19-28% more CPU. auto delegates only while there are long-lived
     * connections whose latency a flood would hurt. */
    cfg->delegate = TLI_DELEGATE_AUTO;
    /* Measured (docs/benchmarks.md, W6): during a handshake flood, the p99 of requests on
     * established connections 0.76 ms with a 100 us slice, 1.2 ms with the kernel's 1.4 ms. */
    cfg->loop_slice_ns = 100000;
    cfg->log_rate = 100;
    cfg->client_verify = (tl_verify)-1;   /* not given: follows client-ca */
    return cfg;
}

static void free_strings(tl_server_config *cfg)
{
    for (size_t i = 0; i < cfg->n_certs; i++) {
        free(cfg->certs[i].cert);
        free(cfg->certs[i].key);
    }
    free(cfg->certs);
    free(cfg->listens);
    free(cfg->proxy_from);
    for (size_t i = 0; i < cfg->n_history; i++) {
        free(cfg->history[i].name);
        free(cfg->history[i].value);
    }
    free(cfg->history);
    for (size_t i = 0; i < cfg->n_ext_values; i++)
        free(cfg->ext_values[i].value);
    free(cfg->ext_values);
    char **strs[] = {&cfg->client_ca, &cfg->ciphers, &cfg->suites, &cfg->groups, &cfg->alpn,
                     &cfg->ticket_key_file, &cfg->upgrade_socket, &cfg->session_store, &cfg->user,
                     &cfg->log_path, &cfg->log_level, &cfg->path, &cfg->ocsp_file,
                     &cfg->ocsp_cache};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
}

int tl_server_config_set_alpn_switch(tl_server_config *cfg, const char *protocol,
                                     tl_tls_alpn_switch_fn fn, void *data)
{
    char *copy = fn && protocol ? strdup(protocol) : NULL;
    if (fn && !copy)
        return -1;
    free(cfg->alpn_switch_proto);
    cfg->alpn_switch_proto = copy;
    cfg->alpn_switch_fn = copy ? fn : NULL;
    cfg->alpn_switch_data = data;
    return 0;
}

void tl_server_config_free(tl_server_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->alpn_switch_proto);
    free_strings(cfg);
    free(cfg);
}

/* The configuration remembers every successful setting in order (a file as one "config" entry),
 * so a copy, or a reload, is the same settings applied again: the file read anew, and the options
 * given after it still overriding it. */
int tli_server_config_remember(tl_server_config *cfg, const char *name, const char *value)
{
    if (cfg->loading)
        return 0;
    char *n = strdup(name), *v = value ? strdup(value) : NULL;
    if (!n || (value && !v) ||
        append((void **)&cfg->history, &cfg->n_history, sizeof *cfg->history) != 0) {
        free(n);
        free(v);
        return -1;
    }
    cfg->history[cfg->n_history - 1].name = n;
    cfg->history[cfg->n_history - 1].value = v;
    return 0;
}
