/* proxy.c - TLS termination in front of TCP backends (tlsloop/proxy.h).
 *
 * A pair joins the client's connection (the front, made by the server) and ours to a backend (the
 * back). Each side's callbacks find the pair through the connection's data. The pair is freed
 * when both connections have closed; either pointer is NULL once its connection is gone.
 *
 * Backpressure: a write that leaves the receiving side's queue above its high-water mark
 * (tl_conn_write returns 1) pauses reading on the sending side; the receiving side's on_drain
 * resumes it. So each direction holds at most one queue's worth plus one read.
 *
 * Counters are per worker: only the worker's thread writes them (a relaxed load and store, no
 * locked add on the per-read path), tl_proxy_get_stats reads them from any thread. The
 * round-robin cursor is the one value every worker updates.
 */
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <tlsloop/buf.h>
#include <tlsloop/conn.h>
#include <tlsloop/engine.h>
#include <tlsloop/http.h>
#include <tlsloop/log.h>
#include <tlsloop/proxy.h>
#include <tlsloop/proxyproto.h>
#include <tlsloop/tls_ctx.h>

#include "proxy/proxy_int.h"

#include "util/tli.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_RETRY_MS 2000
#define MAX_BACKENDS 64

typedef struct backend {
    char *name;                    /* as configured */
    char *verify_name;             /* backend-tls: the name verified and sent as SNI */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    _Atomic uint64_t down_until;   /* tl_loop_now ms: failed, tried last until then; 0: up */
} backend;

#define SESSIONS_PER_BACKEND 8   /* TLS 1.3 tickets are used once: one per concurrent connect */

/* The sessions a worker keeps per TLS backend, newest last; touched by that worker only. */
typedef struct session_stack {
    tl_session *s[SESSIONS_PER_BACKEND];
    unsigned n;
} session_stack;

typedef struct pworker {
    _Atomic uint64_t clients, active, connects, failures, no_backend, to_backend, to_client,
        clean, reset, timeout, truncated, resumed;
    session_stack *sessions;       /* backend-tls: one stack per backend */
} pworker;

struct tl_proxy {
    backend *backends;
    size_t nbackends;
    uint32_t connect_timeout_ms;   /* tl_server_parse_duration caps durations at 2^32 ms */
    uint32_t retry_ms;             /* backend-retry: a failed backend is tried last this long */
    int proxy_protocol;            /* 0, 1 or 2: the header each backend connection starts with */
    tl_tls_ctx *backend_tls;       /* backend-tls: our client configuration; NULL: plain TCP */
    _Atomic uint64_t next;         /* round-robin cursor */
    tl_log *log;
    tl_server *srv;                /* attached */
    int metrics_listener;          /* the listener serving GET /metrics; -1: none */
    pworker *workers;
    unsigned nworkers;
    tl_conn_cbs front_cbs, back_cbs;
    tl_server_handler handler;
};

typedef struct pair {
    tl_proxy *p;
    pworker *w;
    tl_conn *front, *back;
    size_t first;                  /* where this client's round-robin order starts */
    size_t bi;                     /* the backend of `back` */
    size_t k;                      /* connect_next's position: two passes over the backends */
    uint64_t tried;                /* a bit per backend tried for this client */
    tl_buf early;                  /* what the client sent before the backend was up */
    bool back_up;                  /* the backend connection is established */
    bool back_tls13;               /* the backend connection is TLS 1.3 (tickets come later) */
    bool metrics;                  /* a metrics page request, not a pair: `early` holds its head */
    bool answered;                 /* metrics: the answer is written */
    bool front_eof, back_eof;      /* that side ended its data */
    tl_conn_end end;               /* clean, or the first other end seen on either side */
} pair;

static void bump(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

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

/* ---- the pair ----------------------------------------------------------------------------- */

/* The pair ends as the first side that did not end cleanly did. */
static void note_end(pair *pr, tl_conn_end how)
{
    if (pr->end == TL_END_NONE || pr->end == TL_END_CLEAN)
        pr->end = how;
}

static void maybe_free(pair *pr)
{
    if (pr->front || pr->back)
        return;
    bump(&pr->w->active, (uint64_t)-1);
    if (pr->back_up) {   /* a pair that never reached a backend is counted as no_backend */
        switch (pr->end) {
        case TL_END_CLEAN:
            bump(&pr->w->clean, 1);
            break;
        case TL_END_TIMEOUT:
            bump(&pr->w->timeout, 1);
            break;
        case TL_END_TRUNCATED:
            bump(&pr->w->truncated, 1);
            break;
        default:
            bump(&pr->w->reset, 1);
            break;
        }
    }
    tl_buf_free(&pr->early);
    free(pr);
}

/* TLS 1.2 has no half-close: a client's close_notify ends both directions. */
static bool front_half_closes(tl_conn *front)
{
    if (!tl_conn_is_tls(front))
        return true;
    tl_engine_info info;
    tl_engine_get_info(tl_conn_engine(front), &info);
    return info.version && strcmp(info.version, "TLSv1.3") == 0;
}

/* Carry the client's end of data to the backend. */
static void front_done(pair *pr)
{
    if (front_half_closes(pr->front)) {
        tl_conn_shutdown_write(pr->back);   /* FIN; the backend may go on answering */
    } else {
        tl_conn_close(pr->back);            /* what is queued goes first, then FIN */
        tl_conn_close(pr->front);
    }
}

static void connect_next(pair *pr);

/* A backend refused, timed out or failed verification: counted, logged, and tried after the
 * others until backend-retry has passed (passive health: clients stop paying for it first). */
static void backend_failed(pair *pr, backend *b, const char *why)
{
    bump(&pr->w->failures, 1);
    uint64_t until = tl_loop_now(tl_conn_loop(pr->front)) + pr->p->retry_ms;
    bool was_up = atomic_exchange(&b->down_until, until) == 0;
    TL_LOG(pr->p->log, TL_LOG_WARN, "backend %s: %s%s", b->name, why,
           was_up ? "; tried after the others for backend-retry" : "");
}

/* The PROXY header for the backend: the client's address (what the server knows: a PROXY
 * header of a balancer in front, else the socket's peer), the address it connected to, and for
 * v2 over TLS the TLS facts (PP2_TYPE_ALPN, AUTHORITY = SNI, and SSL: client flags, verify,
 * VERSION, CIPHER and a client certificate's CN; proxy_pp2.c). Returns the length, or -1 when it
 * could not be made. */
static ssize_t pp_header(pair *pr, uint8_t *buf, size_t cap)
{
    socklen_t plen = 0;
    const struct sockaddr *src = tl_server_conn_peer(pr->front, &plen);
    struct sockaddr_storage dst;
    socklen_t dlen = sizeof dst;
    if (getsockname(tl_conn_fd(pr->front), (struct sockaddr *)&dst, &dlen) != 0 || !src ||
        src->sa_family != dst.ss_family)
        src = NULL;   /* v1 UNKNOWN / v2 LOCAL: the backend uses the connection's addresses */
    if (pr->p->proxy_protocol == 1)
        return tl_proxy_write_v1((char *)buf, cap, src, (struct sockaddr *)&dst);
    tl_proxy_tlv_out tlvs[3];
    size_t n = 0;
    uint8_t ssl[1400];
    tl_engine_info info;
    if (tl_conn_is_tls(pr->front)) {
        tl_engine_get_info(tl_conn_engine(pr->front), &info);
        if (info.alpn[0])
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_ALPN, info.alpn, strlen(info.alpn)};
        if (info.server_name)
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_AUTHORITY, info.server_name,
                                           strlen(info.server_name)};
        size_t len = tli_pp2_ssl_value(tl_engine_ssl(tl_conn_engine(pr->front)), ssl, sizeof ssl);
        if (len)
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_SSL, ssl, len};
    }
    return tl_proxy_write_v2(buf, cap, src, (struct sockaddr *)&dst, tlvs, n, false);
}

/* End the other side as this one ended: a reset becomes a reset (close with a zero linger sends
 * RST), any other failure an abort (no close_notify: the peer sees a truncation), a clean end or
 * a deadline a graceful close (what is queued goes first). */
static void carry_end(tl_conn *other, tl_conn_end how)
{
    if (how == TL_END_CLEAN || how == TL_END_TIMEOUT) {
        tl_conn_close(other);
        return;
    }
    if (how == TL_END_RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(tl_conn_fd(other), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    tl_conn_abort(other);
}

/* The backend connection is usable: TCP connected, or over TLS the handshake verified. */
static void back_established(pair *pr, tl_conn *back)
{
    pr->back_up = true;
    bump(&pr->w->connects, 1);
    backend *b = &pr->p->backends[pr->bi];
    if (atomic_load_explicit(&b->down_until, memory_order_relaxed) &&
        atomic_exchange(&b->down_until, 0) != 0)
        TL_LOG(pr->p->log, TL_LOG_INFO, "backend %s: answering again", b->name);
    if (!pr->front) {
        tl_conn_close(back);
        return;
    }
    int rc = 0;
    if (pr->p->proxy_protocol) {
        uint8_t hdr[2048];   /* ALPN and SNI up to 255 bytes each, the SSL TLV up to 1400 */
        ssize_t n = pp_header(pr, hdr, sizeof hdr);
        if (n <= 0 || tl_conn_write(back, hdr, (size_t)n) < 0) {
            TL_LOG(pr->p->log, TL_LOG_ERROR, "proxy-protocol: the header could not be made");
            tl_conn_abort(back);   /* back_close carries it to the client */
            return;
        }
    }
    if (tl_buf_len(&pr->early) > 0) {
        size_t n = tl_buf_len(&pr->early);
        rc = tl_conn_write(back, tl_buf_rptr(&pr->early), n);
        bump(&pr->w->to_backend, n);
        tl_buf_free(&pr->early);
        if (rc < 0)
            return;
    }
    if (pr->front_eof)
        front_done(pr);   /* the client ended while we connected: FIN after what it sent */
    else if (rc == 0)
        tl_conn_resume_read(pr->front);   /* else it stays paused until the back drains */
}

/* ---- sessions towards TLS backends ---------------------------------------------------------- */

static tl_session *take_session(pair *pr)
{
    session_stack *st = pr->w->sessions ? &pr->w->sessions[pr->bi] : NULL;
    return st && st->n ? st->s[--st->n] : NULL;
}

/* Push a session (ours now) on the backend's stack; with a full stack the oldest goes. */
static void put_session(pair *pr, tl_session *sess)
{
    session_stack *st = &pr->w->sessions[pr->bi];
    if (st->n == SESSIONS_PER_BACKEND) {
        tl_session_free(st->s[0]);
        memmove(st->s, st->s + 1, (SESSIONS_PER_BACKEND - 1) * sizeof st->s[0]);
        st->n--;
    }
    st->s[st->n++] = sess;
}

/* Keep the newest session the backend connection received: TLS 1.2 at the handshake, TLS 1.3
 * tickets at the end, once they came. */
static void keep_session(pair *pr, tl_conn *back)
{
    tl_session *sess = pr->w->sessions && tl_conn_engine(back)
                           ? tl_engine_get_session(tl_conn_engine(back))
                           : NULL;
    if (sess)
        put_session(pr, sess);
}

static void back_connected(tl_conn *back, bool ok)
{
    if (ok && !tl_conn_is_tls(back))   /* else on_close follows and tries the next backend */
        back_established(tl_conn_data(back), back);
}

static void back_handshake(tl_conn *back, bool ok)
{
    if (!ok)   /* a failed one (verification, say) ends in on_close: the next backend */
        return;
    pair *pr = tl_conn_data(back);
    tl_engine_info info;
    tl_engine_get_info(tl_conn_engine(back), &info);
    if (info.resumed)
        bump(&pr->w->resumed, 1);
    pr->back_tls13 = info.version && !strcmp(info.version, "TLSv1.3");
    if (!pr->back_tls13)
        keep_session(pr, back);   /* TLS 1.2: the session is there now, reusable */
    back_established(pr, back);
}

/* Each backend at most once per client, in round-robin order: first those that have not failed
 * within backend-retry, then the others (so a client is served while any backend answers, and a
 * backend that recovers is found again). */
static void connect_next(pair *pr)
{
    tl_proxy *p = pr->p;
    uint64_t now = tl_loop_now(tl_conn_loop(pr->front));
    while (pr->k < 2 * p->nbackends) {
        size_t k = pr->k++, bi = (pr->first + k) % p->nbackends;
        backend *b = &p->backends[bi];
        bool down = atomic_load_explicit(&b->down_until, memory_order_relaxed) > now;
        if ((pr->tried >> bi & 1) || down != (k >= p->nbackends))
            continue;
        pr->tried |= (uint64_t)1 << bi;
        pr->bi = bi;
        tl_session *sess = take_session(pr);   /* offered once: the engine keeps a copy */
        tl_conn_opts o = {.half_close = true,
                          .tls = p->backend_tls,
                          .server_name = b->verify_name,
                          .session = sess,
                          .handshake_timeout_ms = p->connect_timeout_ms,
                          .cbs = &p->back_cbs,
                          .data = pr};
        char err[200];
        pr->back = tl_conn_connect(tl_conn_loop(pr->front), (const struct sockaddr *)&b->addr,
                                   b->addrlen, &o, err, sizeof err);
        if (!pr->back && sess)
            put_session(pr, sess);   /* never offered: still good */
        else
            tl_session_free(sess);
        if (pr->back) {
            tl_conn_set_defer_writes(pr->back, true);
            return;
        }
        backend_failed(pr, b, err);
    }
    bump(&pr->w->no_backend, 1);
    TL_LOG(p->log, TL_LOG_WARN, "no backend answered (%zu tried): the client's connection is "
           "closed", (size_t)__builtin_popcountll(pr->tried));
    tl_conn_close(pr->front);
}

static void start_backend(pair *pr)
{
    bump(&pr->w->clients, 1);
    pr->first = (size_t)(atomic_fetch_add_explicit(&pr->p->next, 1, memory_order_relaxed) %
                         pr->p->nbackends);
    tl_conn_pause_read(pr->front);   /* until the backend is up */
    connect_next(pr);
}

/* ---- the metrics page ------------------------------------------------------------------- */

#define METRICS_HEAD_MAX 8192

static void metrics_answer(pair *pr, tl_conn *c, int status, const tl_buf *body, bool head_only)
{
    char head[256];
    size_t n = tl_buf_len(body);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain; version=0.0.4; "
                      "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, tl_http_reason(status), n);
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)tl_buf_rptr(body), n}};
    pr->answered = true;
    tl_conn_writev_close(c, iov, head_only || n == 0 ? 1 : 2);
}

/* One request per connection: GET (or HEAD) /metrics gets the server's and the proxy's counters;
 * anything else a short error. */
static void metrics_read(pair *pr, tl_conn *c, const uint8_t *d, size_t n)
{
    if (pr->answered)
        return;   /* what follows the request is read and dropped while the connection closes */
    size_t from = tl_buf_len(&pr->early);
    tl_buf body = TL_BUF_INIT;
    if (tl_buf_append(&pr->early, d, n) != 0) {
        tl_conn_abort(c);
        return;
    }
    const char *b = (const char *)tl_buf_rptr(&pr->early);
    size_t len = tl_buf_len(&pr->early);
    if (!tl_http_head_ended(b, len, from)) {
        if (len > METRICS_HEAD_MAX)
            metrics_answer(pr, c, 431, &body, false);
        return;
    }
    tl_http_header fields[32];
    tl_http_request req = {.headers = fields, .max_headers = 32};
    int status = 200;
    bool head_only = false;
    if (tl_http_parse_request(b, len, &req) < 0) {
        status = req.error_status ? req.error_status : 400;
    } else {
        head_only = req.method_len == 4 && !memcmp(req.method, "HEAD", 4);
        bool path = req.target_len == 8 && !memcmp(req.target, "/metrics", 8);
        if (!head_only && !(req.method_len == 3 && !memcmp(req.method, "GET", 3)))
            status = 405;
        else if (!path)
            status = 404;
    }
    if (status == 200 && (tl_server_metrics_text(pr->p->srv, &body) != 0 ||
                          tl_proxy_metrics_text(pr->p, &body) != 0))
        status = 500;
    if (status != 200)
        tl_buf_free(&body);
    metrics_answer(pr, c, status, &body, head_only);
    tl_buf_free(&body);
}

/* ---- the client's side ------------------------------------------------------------------ */

static void front_open(tl_conn *c, void *data)
{
    tl_proxy *p = data;
    int wi = tl_server_conn_worker(c);
    pair *pr = calloc(1, sizeof *pr);
    if (!pr || wi < 0 || (unsigned)wi >= p->nworkers) {
        free(pr);
        TL_LOG(p->log, TL_LOG_ERROR, "out of memory: a new connection is closed");
        tl_conn_set_data(c, NULL);
        tl_conn_abort(c);
        return;
    }
    pr->p = p;
    pr->w = &p->workers[wi];
    pr->front = c;
    if (p->metrics_listener >= 0 && tl_server_conn_listener(c) == p->metrics_listener) {
        pr->metrics = true;
        tl_conn_set_data(c, pr);
        return;
    }
    bump(&pr->w->active, 1);
    tl_conn_set_data(c, pr);
    tl_conn_set_defer_writes(c, true);   /* the sends of one iteration leave together */
    if (!tl_conn_is_tls(c))
        start_backend(pr);
}

/* The server drains: a byte stream has no point at which closing is safe, so transfers are left
 * to finish; the server aborts what is still open at drain-timeout. */
static void front_drain_server(tl_conn *c, void *data)
{
    (void)data;
    pair *pr = tl_conn_data(c);
    if (pr && pr->metrics && !pr->answered)
        tl_conn_close(c);   /* a scraper's idle connection: nothing to finish */
}

static void front_handshake(tl_conn *c, bool ok)
{
    pair *pr = tl_conn_data(c);
    if (pr && ok)
        start_backend(pr);
}

static void front_read(tl_conn *c, const uint8_t *d, size_t n)
{
    pair *pr = tl_conn_data(c);
    if (pr && pr->metrics) {
        metrics_read(pr, c, d, n);
        return;
    }
    if (!pr || !pr->back)   /* no backend side any more: its on_close ends this side */
        return;
    if (!pr->back_up) {   /* reading is paused already; this was read before the pause */
        if (tl_buf_append(&pr->early, d, n) != 0)
            tl_conn_abort(c);
        return;
    }
    int rc = tl_conn_write(pr->back, d, n);
    if (rc < 0)
        return;   /* the backend is closing: its on_close ends the client's side */
    bump(&pr->w->to_backend, n);
    if (rc == 1)
        tl_conn_pause_read(c);
}

static void front_eof(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    if (!pr)
        return;
    if (pr->metrics) {
        tl_conn_close(c);   /* (after the answer, when there is one) */
        return;
    }
    pr->front_eof = true;
    note_end(pr, how);
    if (pr->back_up && pr->back)
        front_done(pr);
    else if (!pr->back)
        tl_conn_close(c);   /* no backend yet (TLS handshake still running) or none left */
}

static void front_drain(tl_conn *c)
{
    pair *pr = tl_conn_data(c);
    if (pr && pr->back)
        tl_conn_resume_read(pr->back);
}

static void front_close(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    if (!pr)
        return;
    if (pr->metrics) {
        tl_buf_free(&pr->early);
        free(pr);
        return;
    }
    pr->front = NULL;
    TL_LOG(pr->p->log, TL_LOG_DEBUG, "client connection ended: %s%s%s", tl_conn_end_name(how),
           *tl_conn_error(c) ? ": " : "", tl_conn_error(c));
    if (pr->back)
        carry_end(pr->back, how);
    note_end(pr, how);
    maybe_free(pr);
}

/* ---- the backend's side --------------------------------------------------------------------- */

static void back_read(tl_conn *c, const uint8_t *d, size_t n)
{
    pair *pr = tl_conn_data(c);
    if (!pr->front)
        return;
    int rc = tl_conn_write(pr->front, d, n);
    if (rc < 0)
        return;   /* the client's side is closing (TLS 1.2 after its close_notify) */
    bump(&pr->w->to_client, n);
    if (rc == 1)
        tl_conn_pause_read(c);
}

static void back_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    pair *pr = tl_conn_data(c);
    pr->back_eof = true;
    if (pr->front)
        tl_conn_shutdown_write(pr->front);   /* close_notify; the client may go on sending */
}

static void back_drain(tl_conn *c)
{
    pair *pr = tl_conn_data(c);
    if (pr->front)
        tl_conn_resume_read(pr->front);
}

static void back_close(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    pr->back = NULL;
    TL_LOG(pr->p->log, TL_LOG_DEBUG, "backend connection ended: %s%s%s", tl_conn_end_name(how),
           *tl_conn_error(c) ? ": " : "", tl_conn_error(c));
    if (!pr->back_up && !pr->front) {   /* the client left while we connected */
        maybe_free(pr);
        return;
    }
    if (!pr->back_up) {   /* refused or timed out: the next backend, if any */
        backend_failed(pr, &pr->p->backends[pr->bi],
                       how == TL_END_TIMEOUT ? "no answer within connect-timeout"
                                             : tl_conn_error(c));
        connect_next(pr);
        return;
    }
    if (pr->back_tls13)
        keep_session(pr, c);   /* TLS 1.3: the newest ticket that came meanwhile */
    if (pr->front)
        carry_end(pr->front, how);
    note_end(pr, how);
    maybe_free(pr);
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
    p->front_cbs = (tl_conn_cbs){.on_handshake = front_handshake, .on_read = front_read,
                                 .on_eof = front_eof, .on_drain = front_drain,
                                 .on_close = front_close};
    p->back_cbs = (tl_conn_cbs){.on_connect = back_connected, .on_handshake = back_handshake,
                                .on_read = back_read,
                                .on_eof = back_eof, .on_drain = back_drain,
                                .on_close = back_close};
    p->handler = (tl_server_handler){.cbs = &p->front_cbs, .on_open = front_open,
                                     .on_drain = front_drain_server, .data = p,
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

int tl_proxy_metrics_text(tl_proxy *p, tl_buf *out)
{
    tl_proxy_stats s;
    tl_proxy_get_stats(p, &s);
    tli_prom pw = {out, 0}, *w = &pw;
    tli_prom_one(w, "proxy_clients_total", "counter", "Client connections given a backend leg.",
                 (double)s.clients);
    tli_prom_one(w, "proxy_pairs_open", "gauge", "Client and backend connection pairs open now.",
                 (double)s.active);
    tli_prom_one(w, "proxy_backend_connects_total", "counter", "Backend connections established.",
                 (double)s.backend_connects);
    tli_prom_one(w, "proxy_backend_resumed_total", "counter",
                 "Backend TLS connections that resumed a session (backend-tls).",
                 (double)s.backend_resumed);
    tli_prom_one(w, "proxy_backend_failures_total", "counter",
                 "Backend connections refused, timed out or not verified.",
                 (double)s.backend_failures);
    tli_prom_one(w, "proxy_no_backend_total", "counter",
                 "Clients closed because no backend answered.", (double)s.no_backend);
    tli_prom_family(w, "proxy_backend_up", "gauge",
                    "1 while the backend answers; 0 after a failure, for backend-retry (it is "
                    "tried after the others meanwhile).");
    struct timespec ts;   /* any thread: the loops' clock (CLOCK_MONOTONIC, ms) read here */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (size_t i = 0; i < p->nbackends; i++)
        tli_prom_sample(w, "proxy_backend_up", "backend", p->backends[i].name,
                        atomic_load(&p->backends[i].down_until) > now ? 0 : 1);
    tli_prom_family(w, "proxy_bytes_total", "counter", "Bytes carried, by direction.");
    tli_prom_sample(w, "proxy_bytes_total", "direction", "to_backend", s.bytes_to_backend);
    tli_prom_sample(w, "proxy_bytes_total", "direction", "to_client", s.bytes_to_client);
    tli_prom_family(w, "proxy_pairs_ended_total", "counter",
                    "Pairs ended, by how: both sides clean, a reset or failure carried across, a "
                    "deadline, or a client that ended TLS without close_notify.");
    const char *how[] = {"clean", "reset", "timeout", "truncated"};
    uint64_t n[] = {s.ended_clean, s.ended_reset, s.ended_timeout, s.ended_truncated};
    for (size_t i = 0; i < 4; i++)
        tli_prom_sample(w, "proxy_pairs_ended_total", "end", how[i], n[i]);
    return pw.rc;
}

void tl_proxy_get_stats(tl_proxy *p, tl_proxy_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < p->nworkers; i++) {
        pworker *w = &p->workers[i];
#define ADD(field, src) out->field += atomic_load_explicit(&w->src, memory_order_relaxed)
        ADD(clients, clients);
        ADD(active, active);
        ADD(backend_connects, connects);
        ADD(backend_failures, failures);
        ADD(no_backend, no_backend);
        ADD(bytes_to_backend, to_backend);
        ADD(bytes_to_client, to_client);
        ADD(ended_clean, clean);
        ADD(ended_reset, reset);
        ADD(ended_timeout, timeout);
        ADD(ended_truncated, truncated);
        ADD(backend_resumed, resumed);
#undef ADD
    }
}
