/* proxy.c - TLS termination in front of TCP backends (tlsloop/proxy.h): its options, set-up and
 * clean-up; a client's arrival and its backend are in proxy_connect.c, the byte relay in
 * proxy_relay.c, the counters and the metrics page in proxy_metrics.c.
 */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/proxy_int.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_RETRY_MS 2000
#define MAX_BACKENDS 64

/* ---- options ------------------------------------------------------------------------------ */

static int split_host_port(const char *v, char *host, size_t hostcap, char *port, size_t portcap)
{
    const char *colon;
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (!end || end[1] != ':')
            return -1;
        if ((size_t)(end - v - 1) >= hostcap)
            return -1;
        memcpy(host, v + 1, (size_t)(end - v - 1));
        host[end - v - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= hostcap ||
            memchr(v, ':', (size_t)(colon - v)))   /* a bare IPv6 address needs brackets */
            return -1;
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = 0;
    }
    const char *p = colon + 1;
    char *end;
    unsigned long n = strtoul(p, &end, 10);
    if (!*p || *end || n == 0 || n > 65535 || strlen(p) >= portcap)
        return -1;
    strcpy(port, p);
    return 0;
}

static int check_backend(const char *v, char *err, size_t errlen)
{
    char host[256], port[8];
    if (!v || split_host_port(v, host, sizeof host, port, sizeof port) != 0)
        return tli_fmt(err, errlen, "expected HOST:PORT or [IPv6]:PORT, port 1 to 65535"), -1;
    return 0;
}

static int check_pp(const char *v, char *err, size_t errlen)
{
    if (v && (!strcmp(v, "v1") || !strcmp(v, "v2") || !strcmp(v, "off")))
        return 0;
    return tli_fmt(err, errlen, "expected v1, v2 or off"), -1;
}

static const tl_server_option OPTIONS[] = {
    {"backend", "HOST:PORT", "a TCP service to forward to (repeat for more: round-robin, the next "
     "one tried when one refuses); names are resolved at start", check_backend, true},
    {"proxy-protocol", "v1|v2", "start each backend connection with a PROXY protocol header "
     "saying who the client is; v2 also carries the TLS facts (default off)", check_pp, false},
    {"backend-tls", "", "connect to the backends over TLS, verifying their certificate chain and "
     "name (default off)", NULL, false},
    {"backend-ca", "FILE", "CA certificates the backends' chains must lead to (default: the "
     "system store)", NULL, false},
    {"backend-name", "NAME", "the name backends' certificates must carry, sent as SNI (default: "
     "each backend's HOST)", NULL, false},
    {"connect-timeout", "TIME", "a backend must accept within this, else the next is tried "
     "(default 5s)", tl_server_check_duration, false},
    {"backend-retry", "TIME", "a backend that failed is tried after the others for this long "
     "(default 2s)", tl_server_check_duration, false},
    {"metrics-listen", "[ADDR:]PORT", "serve Prometheus metrics (GET /metrics) over plain HTTP "
     "here; keep it on loopback or behind a firewall (default off)", NULL, false},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

int tl_proxy_config_init(tl_server_config *cfg)
{
    return tl_server_config_extend(cfg, OPTIONS, N_OPTIONS);
}

int tl_proxy_config_finish(tl_server_config *cfg, char *err, size_t errlen)
{
    return tl_server_config_add_metrics_listen(cfg, err, errlen);
}

void tl_proxy_usage(FILE *out)
{
    tl_server_option_usage(out, OPTIONS, N_OPTIONS);
}

/* ---- set-up --------------------------------------------------------------------------------- */

static int resolve(backend *b, const char *verify_name, char *err, size_t errlen)
{
    char host[256], port[8];
    if (split_host_port(b->name, host, sizeof host, port, sizeof port) != 0)
        return tli_fmt(err, errlen, "backend %s: expected HOST:PORT", b->name), -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        tli_fmt(err, errlen, "backend %s: %s", b->name, rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    b->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    if (!(b->verify_name = strdup(verify_name ? verify_name : host)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    return 0;
}

/* Our client configuration for TLS backends: verification on (chain and name), their CA file. */
static int setup_backend_tls(tl_proxy *p, const tl_server_config *cfg, char *err, size_t errlen)
{
    const char *ca = tl_server_config_value(cfg, "backend-ca");
    tl_tls_ctx_opts opts = {.kdf = tl_server_config_kdf(cfg)};   /* tls-kdf: the backends too */
    if (!(p->backend_tls = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &opts)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    if ((ca && tl_tls_ctx_set_ca_file(p->backend_tls, ca) != 0) ||
        tl_tls_ctx_freeze(p->backend_tls) != 0)
        return tli_fmt(err, errlen, "%s: %s", ca ? "backend-ca" : "backend-tls",
                       tl_tls_ctx_error(p->backend_tls)), -1;
    return 0;
}

tl_proxy *tl_proxy_new(const tl_server_config *cfg, char *err, size_t errlen)
{
    tl_proxy *p = calloc(1, sizeof *p);
    const char *names[MAX_BACKENDS];
    size_t n = tl_server_config_values(cfg, "backend", names, MAX_BACKENDS);
    if (!p) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    /* tl_proxy_config_finish added it as the last listener (checked). */
    if ((p->metrics_listener = tl_server_config_metrics_listener(cfg, err, errlen)) < -1) {
        free(p);
        return NULL;
    }
    if (n == 0) {
        tli_fmt(err, errlen, "no backend: give at least one --backend HOST:PORT");
        free(p);
        return NULL;
    }
    if (tl_server_config_count(cfg, "backend") > MAX_BACKENDS) {
        tli_fmt(err, errlen, "backend: at most %d", MAX_BACKENDS);
        free(p);
        return NULL;
    }
    if (!(p->backends = calloc(n, sizeof *p->backends))) {
        tli_fmt(err, errlen, "out of memory");
        free(p);
        return NULL;
    }
    p->nbackends = n;
    for (size_t i = 0; i < n; i++) {
        if (!(p->backends[i].name = strdup(names[i]))) {
            tli_fmt(err, errlen, "out of memory");
            tl_proxy_free(p);
            return NULL;
        }
        if (resolve(&p->backends[i], tl_server_config_value(cfg, "backend-name"), err,
                    errlen) != 0) {
            tl_proxy_free(p);
            return NULL;
        }
    }
    const char *v = tl_server_config_value(cfg, "connect-timeout");
    uint64_t ms;
    p->connect_timeout_ms =
        (uint32_t)(v && tl_server_parse_duration(v, &ms) == 0 ? ms : DEFAULT_CONNECT_TIMEOUT_MS);
    v = tl_server_config_value(cfg, "backend-retry");
    p->retry_ms = (uint32_t)(v && tl_server_parse_duration(v, &ms) == 0 ? ms : DEFAULT_RETRY_MS);
    v = tl_server_config_value(cfg, "backend-tls");
    if (v && !strcmp(v, "on") && setup_backend_tls(p, cfg, err, errlen) != 0) {
        tl_proxy_free(p);
        return NULL;
    }
    v = tl_server_config_value(cfg, "proxy-protocol");
    p->proxy_protocol = v && !strcmp(v, "v1") ? 1 : v && !strcmp(v, "v2") ? 2 : 0;
    p->front_cbs = (tl_conn_cbs){.on_handshake = tli_proxy_front_handshake,
                                 .on_read = tli_proxy_front_read,
                                 .on_eof = tli_proxy_front_eof, .on_drain = tli_proxy_front_drain,
                                 .on_close = tli_proxy_front_close};
    p->back_cbs = (tl_conn_cbs){.on_connect = tli_proxy_back_connected,
                                .on_handshake = tli_proxy_back_handshake,
                                .on_read = tli_proxy_back_read,
                                .on_eof = tli_proxy_back_eof, .on_drain = tli_proxy_back_drain,
                                .on_close = tli_proxy_back_close};
    p->handler = (tl_server_handler){.cbs = &p->front_cbs, .on_open = tli_proxy_front_open,
                                     .on_drain = tli_proxy_front_drain_server, .data = p,
                                     .half_close = true};
    return p;
}

const tl_server_handler *tl_proxy_handler(tl_proxy *p) { return &p->handler; }

int tl_proxy_attach(tl_proxy *p, tl_server *srv, char *err, size_t errlen)
{
    p->srv = srv;
    p->log = tl_server_log(srv);
    p->nworkers = tl_server_workers(srv);
    if (!(p->workers = calloc(p->nworkers, sizeof *p->workers)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    for (unsigned i = 0; p->backend_tls && i < p->nworkers; i++)
        if (!(p->workers[i].sessions = calloc(p->nbackends, sizeof(session_stack))))
            return tli_fmt(err, errlen, "out of memory"), -1;
    return 0;
}

void tl_proxy_free(tl_proxy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nbackends; i++) {
        free(p->backends[i].name);
        free(p->backends[i].verify_name);
    }
    for (unsigned i = 0; p->workers && i < p->nworkers; i++) {
        for (size_t b = 0; p->workers[i].sessions && b < p->nbackends; b++)
            for (unsigned k = 0; k < p->workers[i].sessions[b].n; k++)
                tl_session_free(p->workers[i].sessions[b].s[k]);
        free(p->workers[i].sessions);
    }
    tl_tls_ctx_free(p->backend_tls);
    free(p->backends);
    free(p->workers);
    free(p);
}

size_t tl_proxy_backends(const tl_proxy *p) { return p->nbackends; }

const char *tl_proxy_backend_name(const tl_proxy *p, size_t i)
{
    return i < p->nbackends ? p->backends[i].name : NULL;
}

int tl_proxy_metrics_listener(const tl_proxy *p) { return p->metrics_listener; }
