/* client.c - connecting: names resolved on the task pool, every address tried in turn, TLS that
 * verifies, and the session cache per host:port (tlsloop/client.h; docs/client.md, "The API"). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include <tlsloop/ocsp.h>

#include "client/client_int.h"

#define MAX_ADDRS 16
#define MAX_SESSIONS 1024   /* host:port entries kept (the oldest goes first) */

typedef struct sentry {
    char *key;                     /* "host:port" */
    tl_session *session;
    struct sentry *next;           /* newest first */
} sentry;

typedef struct override {
    char *host;
    uint16_t port;
    struct sockaddr_storage addr;
    socklen_t len;
} override;

struct tl_client {
    tl_tls_ctx *tls;
    tl_pool *pool;
    bool no_sessions;
    uint32_t connect_timeout_ms, handshake_timeout_ms, close_timeout_ms;
    pthread_mutex_t lock;          /* sessions and overrides */
    sentry *sessions;
    size_t nsessions;
    override *overrides;
    size_t noverrides;
    _Atomic uint64_t connects, failures, full, resumed, offered;
};

struct tl_client_dial {
    tl_client *cl;
    tl_loop *loop;
    char *host;
    char key[300];                 /* "host:port" for the session cache */
    uint16_t port;
    bool tls;
    const tl_conn_cbs *cbs;
    size_t write_high;
    uint64_t deadline_ms;          /* the target's timeout_ms as a point of mono_ms(); 0: none */
    uint32_t timeout_ms;
    struct sockaddr_storage local;  /* the source address (local_len 0: any) */
    socklen_t local_len;
    tl_client_connect_cb cb;
    void *data;
    tl_work work;                  /* the resolution (pool), then the first attempt (loop) */
    tl_timer timer;                /* the TCP connect deadline of the current attempt */
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t lens[MAX_ADDRS];
    int naddrs, next;
    int gai;                       /* getaddrinfo's answer */
    tl_conn *c;                    /* the current attempt */
    bool tcp_up, timed_out, cancelled;
    tl_client_error last_err;
    char msg[300];
};

/* ---- the session cache ------------------------------------------------------------------ */

static void store_session(tl_client *cl, const char *key, tl_session *s)
{
    pthread_mutex_lock(&cl->lock);
    sentry **pp = &cl->sessions, *e = NULL;
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, key)) {
            e = *pp;
            *pp = e->next;   /* unlinked: it goes to the front below */
            cl->nsessions--;
            break;
        }
    if (!e && (e = calloc(1, sizeof *e)) && !(e->key = strdup(key))) {
        free(e);
        e = NULL;
    }
    if (!e) {
        pthread_mutex_unlock(&cl->lock);
        tl_session_free(s);
        return;
    }
    tl_session_free(e->session);
    e->session = s;
    e->next = cl->sessions;
    cl->sessions = e;
    if (++cl->nsessions > MAX_SESSIONS) {
        sentry **last = &cl->sessions;
        while ((*last)->next)
            last = &(*last)->next;
        tl_session_free((*last)->session);
        free((*last)->key);
        free(*last);
        *last = NULL;
        cl->nsessions--;
    }
    pthread_mutex_unlock(&cl->lock);
}

/* The session to offer for key, as a reference the caller frees; a TLS 1.3 ticket leaves the
 * cache (one use each). */
static tl_session *take_session(tl_client *cl, const char *key)
{
    if (cl->no_sessions)
        return NULL;
    pthread_mutex_lock(&cl->lock);
    tl_session *s = NULL;
    for (sentry **pp = &cl->sessions; *pp; pp = &(*pp)->next) {
        sentry *e = *pp;
        if (strcmp(e->key, key) != 0)
            continue;
        s = e->session;
        if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
            *pp = e->next;
            free(e->key);
            free(e);
            cl->nsessions--;
        } else {
            SSL_SESSION_up_ref(s);
        }
        break;
    }
    pthread_mutex_unlock(&cl->lock);
    return s;
}

/* Take the connection's newest session if it is one we have not stored yet. */
static void capture(cconn *cc, tl_conn *c)
{
    tl_engine *e = tl_conn_engine(c);
    if (!e || cc->cl->no_sessions)
        return;
    tl_session *s = tl_engine_get_session(e);
    if (!s)
        return;
    if (s == cc->seen) {
        tl_session_free(s);
        return;
    }
    tl_session_free(cc->seen);
    cc->seen = s;
    SSL_SESSION_up_ref(s);
    store_session(cc->cl, cc->key, s);
}

/* ---- the relay: the client's callbacks in front of the user's ---------------------------- */

/* Every connection a client makes has a cconn as its owner data and RELAY as its callbacks: they
 * take TLS sessions as they arrive and pass the rest on to the user's (or tl_client_http's). */

static void report(tl_client_dial *d, tl_conn *c, tl_client_error err);

static void r_connect(tl_conn *c, bool ok)
{
    cconn *cc = tl_conn_owner_data(c);
    tl_client_dial *d = cc->dial;
    if (!d || !ok)
        return;   /* a failed connect: the owner's on_close goes on */
    d->tcp_up = true;
    tl_timer_stop(d->loop, &d->timer);
    if (!d->tls)
        report(d, c, TL_CLIENT_OK);
}

static void r_handshake(tl_conn *c, bool ok)
{
    cconn *cc = tl_conn_owner_data(c);
    tl_client_dial *d = cc->dial;
    if (!d || !ok)
        return;
    tl_engine_info info;
    tl_engine_get_info(tl_conn_engine(c), &info);
    atomic_fetch_add(info.resumed ? &cc->cl->resumed : &cc->cl->full, 1);
    cc->tls13 = info.version && !strcmp(info.version, "TLSv1.3");
    if (!cc->tls13)
        capture(cc, c);   /* TLS 1.2: the session exists now */
    report(d, c, TL_CLIENT_OK);
}

static void r_read(tl_conn *c, const uint8_t *p, size_t n)
{
    cconn *cc = tl_conn_owner_data(c);
    if (cc->tls13)
        capture(cc, c);   /* tickets come with the first records read */
    if (cc->user && cc->user->on_read)
        cc->user->on_read(c, p, n);
}

static void r_eof(tl_conn *c, tl_conn_end how)
{
    cconn *cc = tl_conn_owner_data(c);
    if (cc->tls13)
        capture(cc, c);
    if (cc->user && cc->user->on_eof)
        cc->user->on_eof(c, how);
}

static void r_drain(tl_conn *c)
{
    cconn *cc = tl_conn_owner_data(c);
    if (cc->user && cc->user->on_drain)
        cc->user->on_drain(c);
}

static void r_close(tl_conn *c, tl_conn_end how)
{
    cconn *cc = tl_conn_owner_data(c);
    if (!cc->dial && cc->user && cc->user->on_close)
        cc->user->on_close(c, how);
}

static const tl_conn_cbs RELAY = {.on_connect = r_connect, .on_handshake = r_handshake,
                                  .on_read = r_read, .on_eof = r_eof, .on_drain = r_drain,
                                  .on_close = r_close};

void tli_client_conn_set_cbs(tl_conn *c, const tl_conn_cbs *cbs)
{
    cconn *cc = tli_client_conn(c);
    if (cc)
        cc->user = cbs;
}

/* ---- attempts --------------------------------------------------------------------------- */

static void try_next(tl_client_dial *d);
static void o_close(tl_conn *c, tl_conn_end how, void *owner_data);
static const tl_conn_owner OWNER = {.on_close = o_close};

cconn *tli_client_conn(const tl_conn *c)
{
    return tl_conn_get_owner(c) == &OWNER ? tl_conn_owner_data(c) : NULL;
}

/* The monotonic clock now (the loop's clock may be a loop iteration old, or not running yet
 * when tl_client_connect is called). */
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* What is left of the attempt's deadline, in ms: UINT32_MAX without one, 0 once it passed. */
static uint32_t time_left(const tl_client_dial *d)
{
    if (!d->deadline_ms)
        return UINT32_MAX;
    uint64_t now = mono_ms();
    if (now >= d->deadline_ms)
        return 0;
    uint64_t left = d->deadline_ms - now;
    return left < UINT32_MAX ? (uint32_t)left : UINT32_MAX - 1;
}

static void free_dial(tl_client_dial *d)
{
    tl_timer_stop(d->loop, &d->timer);
    free(d->host);
    free(d);
}

/* The one outcome: a connection (ready) or a failure (c NULL). */
static void report(tl_client_dial *d, tl_conn *c, tl_client_error err)
{
    tl_client *cl = d->cl;
    if (c) {
        cconn *cc = tl_conn_owner_data(c);
        cc->dial = NULL;
        cc->user = d->cbs;
        atomic_fetch_add(&cl->connects, 1);
    } else {
        atomic_fetch_add(&cl->failures, 1);
    }
    tl_client_connect_cb cb = d->cb;
    void *data = d->data;
    char msg[sizeof d->msg];
    memcpy(msg, d->msg, sizeof msg);
    free_dial(d);
    cb(c, err, c ? "" : msg, data);
}

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        tli_fmt(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        tli_fmt(buf, len, "%s:%u", ip, ntohs(a->sin_port));
    }
}

static void on_connect_deadline(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    tl_client_dial *d = t->data;
    d->timed_out = true;
    if (d->c)
        tl_conn_abort(d->c);   /* its owner's on_close tries the next address */
}

/* Why a TLS handshake failed, from the connection's end and the engine's error kind. */
static tl_client_error tls_failure(tl_conn *c, tl_conn_end how)
{
    if (how == TL_END_TIMEOUT)
        return TL_CLIENT_TIMEOUT;
    tl_engine *e = tl_conn_engine(c);
    switch (e ? tl_engine_error_kind(e) : TL_ERR_NONE) {
    case TL_ERR_VERIFY:
        return TL_CLIENT_VERIFY;
    case TL_ERR_PROTOCOL:
    case TL_ERR_ALERT:
    case TL_ERR_CONFIG:
    case TL_ERR_USAGE:
        return TL_CLIENT_TLS;
    case TL_ERR_RESOURCE:
        return TL_CLIENT_RESOURCE;
    default:
        return TL_CLIENT_CLOSED;
    }
}

/* While the connection is still an attempt (cc->dial), this decides: the next address, or the
 * failure reported. */
static void o_close(tl_conn *c, tl_conn_end how, void *owner_data)
{
    cconn *cc = owner_data;
    tl_client_dial *d = cc->dial;
    tl_session_free(cc->seen);
    free(cc->key);
    free(cc);
    if (!d)
        return;
    d->c = NULL;
    tl_timer_stop(d->loop, &d->timer);
    char where[80];
    addr_text(&d->addrs[d->next - 1], where, sizeof where);
    if (d->cancelled) {
        tli_fmt(d->msg, sizeof d->msg, "cancelled");
        report(d, NULL, TL_CLIENT_CANCELLED);
        return;
    }
    if (d->tcp_up) {
        /* Connected, then TLS failed: another address would not help. */
        tl_client_error err = tls_failure(c, how);
        const char *why = tl_conn_error(c);
        if (err == TL_CLIENT_TIMEOUT)
            tli_fmt(d->msg, sizeof d->msg, "TLS handshake with %s timed out", where);
        else if (err == TL_CLIENT_CLOSED)
            tli_fmt(d->msg, sizeof d->msg, "%s closed the connection during the TLS handshake%s%s",
                    where, *why ? ": " : "", why);
        else
            tli_fmt(d->msg, sizeof d->msg, "%s", *why ? why : tl_conn_end_name(how));
        report(d, NULL, err);
        return;
    }
    const char *why = tl_conn_error(c);
    d->last_err = d->timed_out ? TL_CLIENT_TIMEOUT : TL_CLIENT_CONNECT;
    if (d->timed_out)
        tli_fmt(d->msg, sizeof d->msg, "connect to %s timed out", where);
    else
        tli_fmt(d->msg, sizeof d->msg, "connect to %s: %s", where,
                *why ? (strncmp(why, "connect: ", 9) ? why : why + 9) : "failed");
    try_next(d);
}

static void try_next(tl_client_dial *d)
{
    tl_client *cl = d->cl;
    while (d->next < d->naddrs && !d->cancelled) {
        uint32_t left = time_left(d);
        if (left == 0) {
            if (d->last_err != TL_CLIENT_TIMEOUT)   /* else: "connect to ... timed out" */
                tli_fmt(d->msg, sizeof d->msg, "no connection to %s within %u ms", d->host,
                        d->timeout_ms);
            report(d, NULL, TL_CLIENT_TIMEOUT);
            return;
        }
        int i = d->next++;
        d->tcp_up = d->timed_out = false;
        cconn *cc = calloc(1, sizeof *cc);
        tl_session *offer = d->tls ? take_session(cl, d->key) : NULL;
        if (!cc || !(cc->key = strdup(d->key))) {
            free(cc);
            tl_session_free(offer);
            tli_fmt(d->msg, sizeof d->msg, "out of memory");
            report(d, NULL, TL_CLIENT_RESOURCE);
            return;
        }
        cc->cl = cl;
        cc->dial = d;
        tl_conn_opts o = {
            .tls = d->tls ? cl->tls : NULL,
            .server_name = d->host,
            .session = offer,
            .handshake_timeout_ms = cl->connect_timeout_ms + cl->handshake_timeout_ms < left
                                        ? cl->connect_timeout_ms + cl->handshake_timeout_ms
                                        : left,
            .close_timeout_ms = cl->close_timeout_ms,
            .write_high = d->write_high,
            .local_addr = d->local_len ? (struct sockaddr *)&d->local : NULL,
            .local_addrlen = d->local_len,
            .cbs = &RELAY,
            .owner = &OWNER,
            .owner_data = cc,
        };
        if (offer)
            atomic_fetch_add(&cl->offered, 1);
        char err[200];
        d->c = tl_conn_connect(d->loop, (struct sockaddr *)&d->addrs[i], d->lens[i], &o, err,
                               sizeof err);
        tl_session_free(offer);   /* the engine offers its own copy */
        if (d->c) {
            tl_timer_start(d->loop, &d->timer,
                           cl->connect_timeout_ms < left ? cl->connect_timeout_ms : left);
            return;   /* its outcome comes to r_connect / o_close */
        }
        free(cc->key);
        free(cc);
        char where[80];
        addr_text(&d->addrs[i], where, sizeof where);
        tli_fmt(d->msg, sizeof d->msg, "connect to %s: %s", where, err);
        d->last_err = TL_CLIENT_CONNECT;
    }
    if (d->cancelled) {
        tli_fmt(d->msg, sizeof d->msg, "cancelled");
        report(d, NULL, TL_CLIENT_CANCELLED);
    } else {
        report(d, NULL, d->last_err ? d->last_err : TL_CLIENT_CONNECT);
    }
}

/* ---- resolution ------------------------------------------------------------------------- */

static void resolve_run(tl_work *w)
{
    tl_client_dial *d = w->data;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", d->port);
    d->gai = getaddrinfo(d->host, port, &hints, &res);
    for (struct addrinfo *a = res; a && d->naddrs < MAX_ADDRS; a = a->ai_next)
        if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
            a->ai_addrlen <= sizeof d->addrs[0]) {
            memcpy(&d->addrs[d->naddrs], a->ai_addr, a->ai_addrlen);
            d->lens[d->naddrs++] = a->ai_addrlen;
        }
    if (res)
        freeaddrinfo(res);
}

static void start(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tl_client_dial *d = w->data;
    if (d->cancelled) {
        tli_fmt(d->msg, sizeof d->msg, "cancelled");
        report(d, NULL, TL_CLIENT_CANCELLED);
        return;
    }
    if (time_left(d) == 0) {
        tli_fmt(d->msg, sizeof d->msg, "resolving %s took longer than %u ms", d->host,
                d->timeout_ms);
        report(d, NULL, TL_CLIENT_TIMEOUT);
        return;
    }
    if (d->naddrs == 0) {
        tli_fmt(d->msg, sizeof d->msg, "cannot resolve %s: %s", d->host,
                d->gai ? gai_strerror(d->gai) : "no IPv4 or IPv6 address");
        report(d, NULL, TL_CLIENT_DNS);
        return;
    }
    try_next(d);
}

/* An IP address or an override: no resolution needed. */
static bool literal(tl_client *cl, tl_client_dial *d)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&d->addrs[0];
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&d->addrs[0];
    if (inet_pton(AF_INET, d->host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(d->port);
        d->lens[0] = sizeof *in;
        d->naddrs = 1;
        return true;
    }
    if (inet_pton(AF_INET6, d->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(d->port);
        d->lens[0] = sizeof *in6;
        d->naddrs = 1;
        return true;
    }
    /* Every override for host:port, in the order given: tried in turn like resolved ones. */
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->noverrides && d->naddrs < MAX_ADDRS; i++)
        if (cl->overrides[i].port == d->port && !strcasecmp(cl->overrides[i].host, d->host)) {
            memcpy(&d->addrs[d->naddrs], &cl->overrides[i].addr, cl->overrides[i].len);
            d->lens[d->naddrs++] = cl->overrides[i].len;
        }
    pthread_mutex_unlock(&cl->lock);
    return d->naddrs > 0;
}

tl_client_dial *tl_client_connect(tl_client *cl, tl_loop *loop, const tl_client_target *t,
                                  tl_client_connect_cb on_connect, void *data, char *err,
                                  size_t errlen)
{
    if (!cl || !loop || !t || !t->host || !*t->host || !t->cbs || !on_connect || !t->port) {
        tli_fmt(err, errlen, "tl_client_connect: a host, a port, callbacks and on_connect are "
                             "required");
        return NULL;
    }
    if (strlen(t->host) > 255) {
        tli_fmt(err, errlen, "host name too long (%zu bytes; 255 at most)", strlen(t->host));
        return NULL;
    }
    tl_client_dial *d = calloc(1, sizeof *d);
    if (!d || !(d->host = strdup(t->host))) {
        free(d);
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    d->cl = cl;
    d->loop = loop;
    d->port = t->port;
    d->tls = t->tls;
    d->cbs = t->cbs;
    d->write_high = t->write_high;
    if (t->timeout_ms) {
        d->timeout_ms = t->timeout_ms;
        d->deadline_ms = mono_ms() + t->timeout_ms;
    }
    if (t->local_addr && t->local_addrlen <= sizeof d->local) {
        memcpy(&d->local, t->local_addr, t->local_addrlen);
        d->local_len = t->local_addrlen;
    }
    d->cb = on_connect;
    d->data = data;
    if (t->session_key)
        tli_fmt(d->key, sizeof d->key, "%s", t->session_key);
    else
        tli_fmt(d->key, sizeof d->key, "%s:%u", t->host, t->port);
    tl_timer_init(&d->timer, on_connect_deadline, d);
    d->work = (tl_work){.run = resolve_run, .done = start, .data = d};
    if (literal(cl, d))
        tl_loop_post(loop, &d->work);        /* never call back inside this call */
    else
        tl_pool_submit(cl->pool, loop, &d->work);
    return d;
}

void tl_client_cancel(tl_client_dial *d)
{
    d->cancelled = true;
    if (d->c)
        tl_conn_close(d->c);   /* the close protocol, also mid-handshake; o_close reports */
}

/* ---- the client ------------------------------------------------------------------------- */

tl_client *tl_client_new(const tl_client_config *cfg, char *err, size_t errlen)
{
    static const tl_client_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    tl_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cl->lock, NULL);
    cl->no_sessions = cfg->no_sessions;
    cl->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000;
    cl->handshake_timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : 10000;
    cl->close_timeout_ms = cfg->close_timeout_ms ? cfg->close_timeout_ms : 5000;
    tl_tls_ctx_opts opts = {.kdf = cfg->kdf};
    tl_tls_ctx *t = cl->tls = tl_tls_ctx_new_ex(TL_ROLE_CLIENT, &opts);
    if (!t) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    if ((cfg->ca_file && tl_tls_ctx_set_ca_file(t, cfg->ca_file) != 0) ||
        (cfg->insecure && tl_tls_ctx_set_verify(t, TL_VERIFY_NONE) != 0) ||
        ((cfg->tls_min || cfg->tls_max) &&
         tl_tls_ctx_set_versions(t, cfg->tls_min ? cfg->tls_min : TL_TLS1_2,
                                 cfg->tls_max ? cfg->tls_max : TL_TLS1_3) != 0) ||
        ((cfg->ciphers || cfg->ciphersuites) &&
         tl_tls_ctx_set_ciphers(t, cfg->ciphers, cfg->ciphersuites) != 0) ||
        (cfg->alpn && tl_tls_ctx_set_alpn(t, cfg->alpn) != 0) ||
        (cfg->no_tickets && tl_tls_ctx_set_tickets(t, false) != 0) ||
        (cfg->ocsp && tl_tls_ctx_request_ocsp(t, true) != 0) ||
        tl_tls_ctx_freeze(t) != 0) {
        tli_fmt(err, errlen, "%s", tl_tls_ctx_error(t));
        goto fail;
    }
    if (!(cl->pool = tl_pool_new(cfg->resolver_threads ? cfg->resolver_threads : 2))) {
        tli_fmt(err, errlen, "cannot start the resolver threads");
        goto fail;
    }
    return cl;
fail:
    tl_client_free(cl);
    return NULL;
}

void tl_client_free(tl_client *cl)
{
    if (!cl)
        return;
    tl_pool_free(cl->pool);
    tl_tls_ctx_free(cl->tls);
    while (cl->sessions) {
        sentry *e = cl->sessions;
        cl->sessions = e->next;
        tl_session_free(e->session);
        free(e->key);
        free(e);
    }
    for (size_t i = 0; i < cl->noverrides; i++)
        free(cl->overrides[i].host);
    free(cl->overrides);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

int tl_client_add_override(tl_client *cl, const char *host, uint16_t port, const char *addr,
                           char *err, size_t errlen)
{
    override o = {.port = port};
    struct sockaddr_in *in = (struct sockaddr_in *)&o.addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&o.addr;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' && n - 2 < sizeof buf) {
        memcpy(buf, addr + 1, n - 2);   /* "[::1]" */
        buf[n - 2] = 0;
    } else {
        tli_fmt(buf, sizeof buf, "%s", addr);
    }
    if (inet_pton(AF_INET, buf, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        o.len = sizeof *in;
    } else if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        o.len = sizeof *in6;
    } else {
        tli_fmt(err, errlen, "%s: not an IPv4 or IPv6 address", addr);
        return -1;
    }
    if (!(o.host = strdup(host)))
        return tli_fmt(err, errlen, "out of memory"), -1;
    pthread_mutex_lock(&cl->lock);
    override *arr = realloc(cl->overrides, (cl->noverrides + 1) * sizeof *arr);
    if (arr) {
        cl->overrides = arr;
        arr[cl->noverrides++] = o;
    }
    pthread_mutex_unlock(&cl->lock);
    if (!arr) {
        free(o.host);
        return tli_fmt(err, errlen, "out of memory"), -1;
    }
    return 0;
}

void tl_client_get_stats(tl_client *cl, tl_client_stats *out)
{
    out->connects = atomic_load(&cl->connects);
    out->failures = atomic_load(&cl->failures);
    out->handshakes_full = atomic_load(&cl->full);
    out->handshakes_resumed = atomic_load(&cl->resumed);
    out->sessions_offered = atomic_load(&cl->offered);
}

const char *tl_client_error_name(tl_client_error e)
{
    static const char *const names[] = {"ok", "dns", "connect", "timeout", "verify",
                                        "tls", "closed", "cancelled", "resource"};
    return (unsigned)e < sizeof names / sizeof names[0] ? names[e] : "unknown";
}
