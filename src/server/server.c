/* server.c - listeners, workers, admission, the PROXY header, drain and reload
 * (tlsloop/server.h).
 *
 * Threads. Each worker owns a loop, its own SO_REUSEPORT socket per listener, and the connections
 * it accepted; nothing of a worker is touched by another thread except through posted work and
 * the few atomics below. The control thread (the caller of tl_server_run) handles signals, ticket
 * rotation and the handshake rate, and talks to workers only by posting.
 *
 * Admission slots. A worker reserves a connection slot (and on TLS listeners a handshake slot)
 * from the server-wide counters before it calls accept(), so at a limit it does not accept at all
 * and clients wait in the kernel backlog. A worker that finds no slot stops watching that listener
 * and raises its `asleep` flag; whoever frees a slot, on any worker, wakes the sleepers by posting.
 * The sleeper raises the flag before it looks at the counters again, and the freer lowers the
 * counter before it looks at the flags, so one of them always sees the other (sequentially
 * consistent atomics).
 */
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "server/server_int.h"

/* The longest PROXY header accepted (v2 allows 64 KiB of TLVs; balancers send a few hundred). */
#define PROXY_MAX 1024
#define TLI_STR_(x) #x
#define TLI_STR(x) TLI_STR_(x)
/* delegate-handshakes auto: delegate while the worker holds a connection established at least
 * this long: a handshake flood would stall it, whereas short-lived connections (a client that
 * makes one request per connection lives a few milliseconds) lose nothing and save the
 * hand-off's CPU. Short, so that connections made during a flood are protected soon (with a
 * second, the first half-second of a measured storm ran inline: p99 24.8 ms instead of ~2). */
#define DELEGATE_PROTECT_MS 250
/* How long accepting pauses when the process is out of file descriptors. */
#define FD_RETRY_MS 100

typedef struct worker worker;

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
    uint8_t buf[PROXY_MAX];
} pending;

typedef struct wlisten {
    tl_io io;
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
    atomic_bool asleep;            /* a listener waits for a shared slot */
    atomic_bool wake_posted;
    tl_work wake_work;
    tl_work drain_work;
    tl_work swap_work;
    atomic_bool swap_posted;
    pthread_mutex_t swap_lock;
    tli_gen *next_gen;             /* under swap_lock */
    tl_work done_work;             /* to the control loop when the worker ends */
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
    unsigned nstarted, workers_done;
    uint64_t last_hs_total, last_tick_ms;
    _Atomic uint64_t rate_milli;   /* handshakes per second x 1000 */
    _Atomic uint64_t reloads, reload_failures;
};

#define LOG(srv, level, ...) tl_log_write((srv)->log, TL_LOG_##level, __VA_ARGS__)

static void drain_worker(worker *w);
static bool any_tls(const tl_server_config *cfg);
static int check_basic(const tl_server_config *cfg, char *err, size_t errlen);

/* ---- admission slots -------------------------------------------------------------------- */

static void wake_sleepers(tl_server *srv);

static bool take_slot(tl_server *srv, atomic_uint_fast64_t *count, uint64_t max)
{
    if (atomic_fetch_add(count, 1) < max)
        return true;
    /* Our brief over-count may have made another worker go to sleep: it must hear of this. */
    atomic_fetch_sub(count, 1);
    wake_sleepers(srv);
    return false;
}

static bool slots_free(tl_server *srv, bool tls)
{
    return atomic_load(&srv->conns) < srv->max_conns &&
           (!tls || atomic_load(&srv->handshakes) < srv->max_hs);
}

static void wake_sleepers(tl_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        if (w->loop && atomic_load(&w->asleep) && atomic_exchange(&w->asleep, false) &&
            !atomic_exchange(&w->wake_posted, true))
            tl_loop_post(w->loop, &w->wake_work);
    }
}

/* Give back a connection slot and/or a handshake slot, then wake whoever waits for one. */
static void release_slots(tl_server *srv, bool conn, bool hs)
{
    if (conn)
        atomic_fetch_sub(&srv->conns, 1);
    if (hs)
        atomic_fetch_sub(&srv->handshakes, 1);
    wake_sleepers(srv);
}

static void resume_listeners(worker *w)
{
    if (w->draining)
        return;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        if (w->ls[i].paused) {
            w->ls[i].paused = false;
            tl_io_set(w->loop, &w->ls[i].io, TL_READABLE);
        }
}

static void on_wake(tl_loop *loop, tl_work *work)
{
    (void)loop;
    worker *w = work->data;
    atomic_store(&w->wake_posted, false);
    resume_listeners(w);
}

static void on_retry(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    resume_listeners(t->data);
}

typedef enum { PAUSE_SLOTS, PAUSE_RATE, PAUSE_FDS } pause_why;

static void pause_listener(worker *w, wlisten *wl, pause_why why)
{
    tl_server *srv = w->srv;
    wl->paused = true;
    tl_io_set(w->loop, &wl->io, 0);
    bump(&w->st.accept_pauses, 1);
    if (why == PAUSE_SLOTS) {
        atomic_store(&w->asleep, true);
        /* A slot freed between our failed reservation and the flag would wake nobody. */
        if (slots_free(srv, srv->cfg->listens[wl->index].tls) && atomic_exchange(&w->asleep, false))
            resume_listeners(w);
        return;
    }
    uint64_t after = FD_RETRY_MS;
    if (why == PAUSE_RATE)
        after = srv->cfg->handshake_rate >= 1000 ? 1 : 1000 / srv->cfg->handshake_rate;
    if (!tl_timer_active(&w->retry))
        tl_timer_start(w->loop, &w->retry, after);
}

/* ---- connections ------------------------------------------------------------------------ */

static void link_conn(worker *w, sconn *s)
{
    s->next = w->conns;
    if (w->conns)
        w->conns->prev = s;
    w->conns = s;
    w->nconns++;
}

static void establish(worker *w, sconn *s)
{
    s->established = true;
    s->est_ms = tl_loop_now(w->loop);
    s->est_prev = w->est_tail;
    s->est_next = NULL;
    if (w->est_tail)
        w->est_tail->est_next = s;
    else
        w->est_head = s;
    w->est_tail = s;
}

static void unestablish(worker *w, sconn *s)
{
    if (!s->established)
        return;
    if (s->est_prev)
        s->est_prev->est_next = s->est_next;
    else
        w->est_head = s->est_next;
    if (s->est_next)
        s->est_next->est_prev = s->est_prev;
    else
        w->est_tail = s->est_prev;
    s->established = false;
}

/* The task pool for a new TLS connection's handshake, or NULL to run it on the loop. */
static tl_pool *pool_for(worker *w)
{
    tl_server *srv = w->srv;
    switch (w->gen->cfg->delegate) {
    case TLI_DELEGATE_ON:
        return srv->pool;
    case TLI_DELEGATE_AUTO:
        return w->est_head && tl_loop_now(w->loop) - w->est_head->est_ms >= DELEGATE_PROTECT_MS
                   ? srv->pool
                   : NULL;
    default:
        return NULL;
    }
}

static void unlink_conn(worker *w, sconn *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        w->conns = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nconns--;
}

static void maybe_finish(worker *w)
{
    if (w->draining && w->nconns == 0 && w->npending == 0)
        tl_loop_stop(w->loop);
}

static tl_hs_fail classify(tl_conn *c, tl_conn_end how)
{
    switch (how) {
    case TL_END_TIMEOUT:
        return TL_HS_FAIL_TIMEOUT;
    case TL_END_CLEAN:
    case TL_END_TRUNCATED:
    case TL_END_RESET:
        return TL_HS_FAIL_CLOSED;
    case TL_END_TLS_ERROR:
        switch (tl_engine_error_kind(tl_conn_engine(c))) {
        case TL_ERR_ALERT:
            return TL_HS_FAIL_ALERT;
        case TL_ERR_VERIFY:
            return TL_HS_FAIL_VERIFY;
        case TL_ERR_PROTOCOL:
            return TL_HS_FAIL_PROTOCOL;
        default:
            return TL_HS_FAIL_OTHER;
        }
    default:
        return TL_HS_FAIL_OTHER;
    }
}

static void owner_handshake(tl_conn *c, bool ok, void *data)
{
    sconn *s = data;
    worker *w = s->w;
    if (s->hs_slot) {
        s->hs_slot = false;
        bump(&w->st.hs_ended, 1);
        release_slots(w->srv, false, true);
    }
    if (!ok) {
        s->hs_failed = true;   /* classified at close, when the reason is known */
        return;
    }
    SSL *ssl = tl_engine_ssl(tl_conn_engine(c));
    bump(SSL_session_reused(ssl) ? &w->st.hs_resumed : &w->st.hs_full, 1);
    establish(w, s);
}

/* A listener's address with the port it is bound to (the configured one may be 0). */
static void bound_text(const tl_server *srv, size_t li, char *out, size_t outlen)
{
    const tli_listen *L = &srv->cfg->listens[li];
    struct sockaddr_storage ss;
    memcpy(&ss, &L->addr, L->addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(srv->ports[li]);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(srv->ports[li]);
    tli_addr_text((struct sockaddr *)&ss, out, outlen);
}

static void owner_close(tl_conn *c, tl_conn_end how, void *data)
{
    sconn *s = data;
    worker *w = s->w;
    tl_server *srv = w->srv;
    /* owner_handshake ran already for every TLS connection (tlsloop/conn.h promises it before
     * on_close), so the handshake slot is back and hs_failed is final. */
    if (s->hs_failed) {
        tl_hs_fail why = classify(c, how);
        bump(&w->st.hs_failed[why], 1);
        if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
            char addr[64], on[64];
            tli_addr_text((struct sockaddr *)&s->peer, addr, sizeof addr);
            bound_text(srv, s->listener, on, sizeof on);
            const char *msg = tl_conn_error(c);
            LOG(srv, INFO, "handshake failed from %s on %s: %s (%s)", addr, on,
                *msg ? msg : tl_conn_end_name(how),
                tl_hs_fail_name(why));
        }
    }
    tl_conn_stats cs;
    tl_conn_get_stats(c, &cs);
    bump(&w->st.ends[how <= TL_END_LOCAL ? how : TL_END_LOCAL], 1);
    bump(&w->st.bytes_in, cs.bytes_in);
    bump(&w->st.bytes_out, cs.bytes_out);
    bump(&w->st.hs_cpu_ns, cs.handshake_cpu_ns);
    bump(&w->st.conns_closed, 1);
    if (s->source_counted)
        tl_addr_limit_release(srv->per_source, (struct sockaddr *)&s->peer);
    unlink_conn(w, s);
    unestablish(w, s);
    free(s->tlvs);
    free(s);
    release_slots(srv, true, false);
    maybe_finish(w);
}

static const tl_conn_owner OWNER = {.on_handshake = owner_handshake, .on_close = owner_close};

/* Give up on an accepted socket before it became a connection: free its slots. */
static void drop_fd(worker *w, int fd, bool tls)
{
    close(fd);
    bump(&w->st.conns_closed, 1);
    release_slots(w->srv, true, tls);
}

/* The socket (and its PROXY information) becomes a connection. Slots are already held.
 * hs_timeout_ms: the handshake deadline left (0: the configured one). */
static void start_conn(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t peerlen,
                       const tl_proxy_info *proxy, uint32_t hs_timeout_ms)
{
    tl_server *srv = w->srv;
    bool tls = srv->cfg->listens[li].tls;
    if (srv->per_source && !tl_addr_limit_acquire(srv->per_source, peer)) {
        bump(&w->st.refused_source, 1);
        if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
            char addr[64];
            tli_addr_text(peer, addr, sizeof addr);
            LOG(srv, INFO, "refused %s on %s: %llu connections from this source (max-per-source)",
                addr, srv->cfg->listens[li].text, (unsigned long long)srv->cfg->max_per_source);
        }
        drop_fd(w, fd, tls);
        return;
    }
    sconn *s = calloc(1, sizeof *s);
    if (s && proxy && proxy->tlvs_len && (s->tlvs = malloc(proxy->tlvs_len))) {
        memcpy(s->tlvs, proxy->tlvs, proxy->tlvs_len);
        s->tlvs_len = proxy->tlvs_len;
    }
    if (!s || (proxy && proxy->tlvs_len && !s->tlvs)) {
        LOG(srv, ERROR, "out of memory: a new connection on %s is closed", srv->cfg->listens[li].text);
        if (s)
            free(s);
        if (srv->per_source)
            tl_addr_limit_release(srv->per_source, peer);
        drop_fd(w, fd, tls);
        return;
    }
    s->w = w;
    s->listener = li;
    s->source_counted = srv->per_source != NULL;
    if (peerlen > sizeof s->peer)
        peerlen = sizeof s->peer;   /* accept gives IPv4 or IPv6 here: nothing larger */
    memcpy(&s->peer, peer, peerlen);
    s->peerlen = peerlen;
    s->hs_slot = tls;
    tl_conn_opts opts = w->opts;
    opts.tls = tls ? w->gen->tls : NULL;
    opts.pool = tls ? pool_for(w) : NULL;
    opts.owner_data = s;
    if (hs_timeout_ms)   /* what is left of the deadline the PROXY header already used */
        opts.handshake_timeout_ms = hs_timeout_ms;
    tl_conn *c = tl_conn_accept(w->loop, fd, &opts);   /* closes fd on failure */
    if (!c) {
        LOG(srv, ERROR, "out of memory: a new connection on %s is closed", srv->cfg->listens[li].text);
        if (s->source_counted)
            tl_addr_limit_release(srv->per_source, peer);
        free(s->tlvs);
        free(s);
        bump(&w->st.conns_closed, 1);
        release_slots(srv, true, tls);
        return;
    }
    s->c = c;
    link_conn(w, s);
    if (tls)
        bump(&w->st.hs_started, 1);
    else
        establish(w, s);   /* plain: nothing to wait for */
    if (srv->handler.on_open)
        srv->handler.on_open(c, srv->handler.data);
}

/* ---- the PROXY header ------------------------------------------------------------------- */

/* ok: the header arrived (the socket lives on as a connection); else it is closed, and counted
 * as a bad header unless the server is draining. */
static void end_pending(pending *p, bool ok)
{
    worker *w = p->w;
    tl_io_stop(w->loop, &p->io);
    tl_timer_stop(w->loop, &p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        w->pendings = p->next;
    if (p->next)
        p->next->prev = p->prev;
    w->npending--;
    if (!ok) {
        if (!w->draining)
            bump(&w->st.proxy_invalid, 1);
        drop_fd(w, p->io.fd, w->srv->cfg->listens[p->listener].tls);
    }
    tl_loop_defer_free(w->loop, p);
    maybe_finish(w);
}

static void reject_pending(pending *p, const char *why)
{
    tl_server *srv = p->w->srv;
    if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
        char addr[64];
        tli_addr_text((struct sockaddr *)&p->peer, addr, sizeof addr);
        LOG(srv, INFO, "closed %s on %s: %s", addr, srv->cfg->listens[p->listener].text, why);
    }
    end_pending(p, false);
}

static void on_pending_timeout(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    reject_pending(t->data, "no complete PROXY header before the handshake deadline");
}

/* Peek, so that the bytes after the header stay in the socket for TLS; take from the socket only
 * what is surely header (all of it while it is incomplete, exactly its length once complete). */
static void on_pending_readable(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    pending *p = io->data;
    ssize_t n = recv(io->fd, p->buf + p->have, sizeof p->buf - p->have, MSG_PEEK);
    if (n == 0) {
        reject_pending(p, "closed before its PROXY header ended");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            reject_pending(p, "the socket failed before its PROXY header ended");
        return;
    }
    tl_proxy_info info;
    ssize_t r = tl_proxy_parse(p->buf, p->have + (size_t)n, &info);
    if (r == TL_PROXY_INVALID) {
        reject_pending(p, "invalid PROXY protocol header");
        return;
    }
    size_t take = r > 0 ? (size_t)r - p->have : (size_t)n;
    if (r == TL_PROXY_INCOMPLETE && p->have + take == sizeof p->buf) {
        reject_pending(p, "PROXY header too long (more than " TLI_STR(PROXY_MAX) " bytes)");
        return;
    }
    if (recv(io->fd, p->buf + p->have, take, 0) != (ssize_t)take) {
        reject_pending(p, "the socket failed while its PROXY header was read");
        return;
    }
    p->have += take;
    if (r == TL_PROXY_INCOMPLETE)
        return;
    /* Keep what the connection needs, then let the pending state go (its watcher must be off the
     * fd before the connection's own watcher takes it). */
    worker *w = p->w;
    int fd = io->fd, li = p->listener;
    struct sockaddr_storage peer;
    socklen_t peerlen = info.local ? p->peerlen
                        : info.family == AF_INET ? (socklen_t)sizeof(struct sockaddr_in)
                                                 : (socklen_t)sizeof(struct sockaddr_in6);
    memcpy(&peer, info.local ? &p->peer : &info.src, peerlen);
    uint8_t tlvs[PROXY_MAX];
    if (info.tlvs_len) {
        memcpy(tlvs, info.tlvs, info.tlvs_len);
        info.tlvs = tlvs;
    }
    uint64_t now = tl_loop_now(loop);
    uint32_t left = p->deadline_ms > now ? (uint32_t)(p->deadline_ms - now) : 1;
    end_pending(p, true);
    start_conn(w, li, fd, (struct sockaddr *)&peer, peerlen, &info, left);
}

static void start_pending(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t len)
{
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        LOG(w->srv, ERROR, "out of memory: a new connection on %s is closed", w->srv->cfg->listens[li].text);
        drop_fd(w, fd, w->srv->cfg->listens[li].tls);
        return;
    }
    p->w = w;
    p->listener = li;
    memcpy(&p->peer, peer, len);
    p->peerlen = len;
    tl_io_init(&p->io, fd, on_pending_readable, p);
    tl_timer_init(&p->timer, on_pending_timeout, p);
    p->next = w->pendings;
    if (w->pendings)
        w->pendings->prev = p;
    w->pendings = p;
    w->npending++;
    tl_io_set(w->loop, &p->io, TL_READABLE);
    uint64_t timeout = w->gen->cfg->handshake_timeout_ms;
    p->deadline_ms = tl_loop_now(w->loop) + timeout;
    tl_timer_start(w->loop, &p->timer, timeout);
}

/* A proxy listener's peer that is not a balancer we trust: its header would be a forged client
 * address, so the connection goes before anything is read from it. */
static void refuse_untrusted(worker *w, int li, int fd, const struct sockaddr *peer)
{
    tl_server *srv = w->srv;
    bump(&w->st.proxy_untrusted, 1);
    if (tl_log_enabled(srv->log, TL_LOG_WARN)) {   /* log-rate bounds a flood of these */
        char addr[64];
        tli_addr_text(peer, addr, sizeof addr);
        LOG(srv, WARN, "closed %s on %s: not a trusted PROXY header source (proxy-from, from=)",
            addr, srv->cfg->listens[li].text);
    }
    drop_fd(w, fd, srv->cfg->listens[li].tls);
}

/* ---- accepting -------------------------------------------------------------------------- */

static void on_listen(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    wlisten *wl = io->data;
    worker *w = wl->w;
    tl_server *srv = w->srv;
    const tli_listen *L = &srv->cfg->listens[wl->index];
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP; i++) {
        if (!take_slot(srv, &srv->conns, srv->max_conns)) {
            pause_listener(w, wl, PAUSE_SLOTS);
            return;
        }
        if (L->tls && !take_slot(srv, &srv->handshakes, srv->max_hs)) {
            release_slots(srv, true, false);
            pause_listener(w, wl, PAUSE_SLOTS);
            return;
        }
        bool token = L->tls && srv->rate;
        if (token && !tl_rate_take(srv->rate, tl_loop_now(loop))) {
            release_slots(srv, true, true);
            pause_listener(w, wl, PAUSE_RATE);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            release_slots(srv, true, L->tls);
            if (token)
                tl_rate_put_back(srv->rate);   /* no connection came: the token is unused */
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM)
                continue;
            LOG(srv, ERROR, "accept on %s: %s; pausing for %d ms", L->text, strerror(err), FD_RETRY_MS);
            pause_listener(w, wl, PAUSE_FDS);
            return;
        }
        bump(&w->st.conns_total, 1);
        if (L->proxy && !tli_proxy_trusted(srv->cfg, L, (struct sockaddr *)&peer))
            refuse_untrusted(w, wl->index, fd, (struct sockaddr *)&peer);
        else if (L->proxy)
            start_pending(w, wl->index, fd, (struct sockaddr *)&peer, len);
        else
            start_conn(w, wl->index, fd, (struct sockaddr *)&peer, len, NULL, 0);
    }
}

/* ---- generations, drain ----------------------------------------------------------------- */

static void set_gen(worker *w, tli_gen *g)
{
    tli_gen *old = w->gen;
    w->gen = g;
    const tl_server_config *c = g->cfg;
    w->opts.handshake_timeout_ms = (uint32_t)c->handshake_timeout_ms;
    w->opts.close_timeout_ms = (uint32_t)c->close_timeout_ms;
    w->opts.idle_timeout_ms = (uint32_t)c->idle_timeout_ms;
    w->opts.send_stall_timeout_ms = (uint32_t)c->send_timeout_ms;
    w->opts.key_update_limit = (uint32_t)c->key_update_limit;
    tli_gen_unref(old);
}

static void on_swap(tl_loop *loop, tl_work *work)
{
    (void)loop;
    worker *w = work->data;
    atomic_store(&w->swap_posted, false);
    pthread_mutex_lock(&w->swap_lock);
    tli_gen *g = w->next_gen;
    w->next_gen = NULL;
    pthread_mutex_unlock(&w->swap_lock);
    if (g)
        set_gen(w, g);
}

static void on_drain_deadline(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    worker *w = t->data;
    if (w->nconns)
        LOG(w->srv, WARN, "worker %d: %zu connections still open at the drain deadline: aborted",
            w->index, w->nconns);
    for (sconn *s = w->conns; s; s = s->next)
        tl_conn_abort(s->c);
}

static void drain_worker(worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    tl_server *srv = w->srv;
    for (size_t i = 0; i < srv->nlisten; i++) {
        if (w->ls[i].io.fd < 0)
            continue;
        tl_io_stop(w->loop, &w->ls[i].io);
        close(w->ls[i].io.fd);
        w->ls[i].io.fd = -1;
        srv->fds[(size_t)w->index * srv->nlisten + i] = -1;
    }
    tl_timer_stop(w->loop, &w->retry);
    while (w->pendings)
        end_pending(w->pendings, false);
    for (sconn *s = w->conns; s; s = s->next) {
        if (srv->handler.on_drain)
            srv->handler.on_drain(s->c, srv->handler.data);
        else
            tl_conn_close(s->c);
    }
    tl_timer_start(w->loop, &w->drain_deadline, w->gen->cfg->drain_timeout_ms);
    maybe_finish(w);
}

static void on_drain_work(tl_loop *loop, tl_work *work)
{
    (void)loop;
    drain_worker(work->data);
}

static void on_worker_done(tl_loop *loop, tl_work *work)
{
    tl_server *srv = ((worker *)work->data)->srv;
    if (++srv->workers_done == srv->nstarted)
        tl_loop_stop(loop);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (w->gen->cfg->loop_slice_ns) {
        char err[160];
        int rc = tl_thread_set_slice(w->gen->cfg->loop_slice_ns, err, sizeof err);
        if (rc > 0)   /* the server works without it, with more latency under load */
            LOG(w->srv, INFO, "loop-slice: %s", err);
        else if (rc < 0)
            LOG(w->srv, WARN, "loop-slice: %s", err);
    }
    for (size_t i = 0; i < w->srv->nlisten; i++)
        if (w->ls[i].io.fd >= 0)
            tl_io_set(w->loop, &w->ls[i].io, TL_READABLE);
    if (tl_loop_run(w->loop) != 0)
        LOG(w->srv, ERROR, "worker %d: %s", w->index, tl_loop_error(w->loop));
    tl_loop_post(w->srv->control, &w->done_work);
    return NULL;
}

/* ---- the control thread ----------------------------------------------------------------- */

static void begin_drain(tl_server *srv)
{
    pthread_mutex_lock(&srv->gen_lock);
    uint64_t deadline = srv->gen->cfg->drain_timeout_ms;
    pthread_mutex_unlock(&srv->gen_lock);
    LOG(srv, INFO, "draining: listeners closed, connections finishing (deadline %llu ms)",
        (unsigned long long)deadline);
    for (unsigned i = 0; i < srv->nworkers; i++)
        tl_loop_post(srv->workers[i].loop, &srv->workers[i].drain_work);
    tl_timer_stop(srv->control, &srv->rotate);
}

static void on_stop_work(tl_loop *loop, tl_work *work)
{
    (void)loop;
    begin_drain(work->data);
}

void tl_server_stop(tl_server *srv)
{
    if (!atomic_exchange(&srv->stopping, true))
        tl_loop_post(srv->control, &srv->stop_work);
}

static void on_signal(tl_loop *loop, int signo, void *data)
{
    (void)loop;
    tl_server *srv = data;
    char err[512];
    switch (signo) {
    case SIGTERM:
    case SIGINT:
        LOG(srv, INFO, "%s received", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        tl_server_stop(srv);
        break;
    case SIGHUP:
        LOG(srv, INFO, "SIGHUP received: reloading");
        tl_server_reload(srv, err, sizeof err);   /* logs its outcome */
        break;
    case SIGUSR1: {
        /* The handler's files (an access log) first: once "log reopened" is written, every
         * line that follows goes to the new files. */
        if (srv->handler.on_reopen)
            srv->handler.on_reopen(srv->handler.data);
        if (tl_log_reopen(srv->log, err, sizeof err) != 0)
            LOG(srv, ERROR, "SIGUSR1: %s (still writing to the old log)", err);
        else
            LOG(srv, INFO, "SIGUSR1: log reopened");
        break;
    }
    }
}

static uint64_t hs_total(tl_server *srv)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < srv->nworkers; i++)
        n += atomic_load_explicit(&srv->workers[i].st.hs_full, memory_order_relaxed) +
             atomic_load_explicit(&srv->workers[i].st.hs_resumed, memory_order_relaxed);
    return n;
}

static void on_tick(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    uint64_t now = tl_loop_now(loop), total = hs_total(srv);
    if (now > srv->last_tick_ms)
        atomic_store(&srv->rate_milli, (total - srv->last_hs_total) * 1000000 / (now - srv->last_tick_ms));
    srv->last_hs_total = total;
    srv->last_tick_ms = now;
    tl_timer_start(loop, t, 1000);
}

static uint64_t rotate_interval(const tl_server_config *cfg)
{
    uint64_t ms = cfg->ticket_rotate_ms ? cfg->ticket_rotate_ms : cfg->session_lifetime_ms / 4;
    if (ms > TL_SERVER_TICKET_ROTATE_MAX_MS)
        ms = TL_SERVER_TICKET_ROTATE_MAX_MS;   /* forward secrecy: see ticket-rotate */
    return ms ? ms : 1000;
}

/* Keys from a file are the operator's to rotate (every instance must agree); random keys are ours.
 * The decision and the interval follow the running generation, so a reload can change both. */
static void on_rotate(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    pthread_mutex_lock(&srv->gen_lock);
    if (srv->ring && !srv->ring_from_file && tl_ticket_ring_rotate(srv->ring) != 0)
        LOG(srv, ERROR, "ticket key rotation failed (no randomness): the current key stays");
    uint64_t next = rotate_interval(srv->gen->cfg);
    pthread_mutex_unlock(&srv->gen_lock);
    tl_timer_start(loop, t, next);
}

/* ---- reload ----------------------------------------------------------------------------- */

static void publish(tl_server *srv, tli_gen *g)
{
    tli_gen *old = srv->gen;
    srv->gen = g;
    tli_gen_unref(old);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        pthread_mutex_lock(&w->swap_lock);
        tli_gen_unref(w->next_gen);
        w->next_gen = tli_gen_ref(g);
        pthread_mutex_unlock(&w->swap_lock);
        if (!atomic_exchange(&w->swap_posted, true))
            tl_loop_post(w->loop, &w->swap_work);
    }
}

static bool same_listens(const tl_server_config *a, const tl_server_config *b)
{
    if (a->n_listens != b->n_listens || a->n_proxy_from != b->n_proxy_from ||
        (a->n_proxy_from &&
         memcmp(a->proxy_from, b->proxy_from, a->n_proxy_from * sizeof a->proxy_from[0])))
        return false;
    for (size_t i = 0; i < a->n_listens; i++) {
        const tli_listen *x = &a->listens[i], *y = &b->listens[i];
        if (x->addrlen != y->addrlen || memcmp(&x->addr, &y->addr, x->addrlen) ||
            x->tls != y->tls || x->proxy != y->proxy || x->n_from != y->n_from ||
            memcmp(x->from, y->from, x->n_from * sizeof x->from[0]))
            return false;
    }
    return true;
}

static bool same_restart_settings(const tl_server_config *a, const tl_server_config *b)
{
    return same_listens(a, b) && a->backlog == b->backlog && a->task_threads == b->task_threads &&
           a->ipv6_prefix == b->ipv6_prefix && a->log_rate == b->log_rate &&
           !strcmp(a->log_path ? a->log_path : "-", b->log_path ? b->log_path : "-") &&
           a->workers == b->workers && a->max_conns == b->max_conns &&
           a->max_handshakes == b->max_handshakes && a->handshake_rate == b->handshake_rate &&
           a->handshake_burst == b->handshake_burst && a->max_per_source == b->max_per_source &&
           a->delegate == b->delegate && a->loop_slice_ns == b->loop_slice_ns &&
           !strcmp(a->user ? a->user : "", b->user ? b->user : "");
}

/* The configured level; a reload that drops log-level goes back to the default. */
static void apply_log_level(tl_server *srv, const tl_server_config *cfg)
{
    tl_log_level level = TL_LOG_INFO;
    if (cfg->log_level)
        tl_log_parse_level(cfg->log_level, &level, NULL, 0);   /* checked when it was set */
    tl_log_set_level(srv->log, level);
}

/* A generation for cfg (taken over on success): TLS with this ring when a listener uses TLS, else
 * one that carries only the settings (deadlines, log level). */
/* A private key every user of the machine can read: said loudly, but served (the key file is the
 * operator's; a group-readable one, Debian's ssl-cert convention, is not warned about). */
static void warn_open_keys(tl_server *srv, const tl_server_config *cfg)
{
    for (size_t i = 0; i < cfg->n_certs; i++) {
        struct stat sb;
        const char *key = cfg->certs[i].key;
        if (key && stat(key, &sb) == 0 && (sb.st_mode & S_IROTH))
            LOG(srv, WARN, "key %s: the private key is readable by every user of this machine "
                "(mode %03o): anyone who reads it can impersonate this server; restrict it: "
                "chmod 600 %s (or 640 with a group of readers)", key,
                (unsigned)(sb.st_mode & 0777), key);
    }
}

static tli_gen *make_gen(tl_server_config *cfg, tl_ticket_ring *ring, char *err, size_t errlen)
{
    tli_gen *g;
    if (any_tls(cfg)) {
        if (!(g = tli_gen_build(cfg, ring, err, errlen)))
            return NULL;
    } else if ((g = calloc(1, sizeof *g))) {
        atomic_init(&g->refs, 1);
    } else {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    g->cfg = cfg;
    return g;
}

/* The ring a reload uses: the key file's when one is configured; random keys when a key file was
 * configured before and is not now; else the running ring, so issued tickets stay valid. */
static tl_ticket_ring *reload_ring(tl_server *srv, const tl_server_config *cfg, char *err,
                                   size_t errlen)
{
    if (cfg->ticket_key_file)
        return tl_ticket_ring_load_file(cfg->ticket_key_file, err, errlen);
    pthread_mutex_lock(&srv->gen_lock);
    tl_ticket_ring *ring = srv->ring && !srv->ring_from_file ? tl_ticket_ring_ref(srv->ring) : NULL;
    pthread_mutex_unlock(&srv->gen_lock);
    return ring ? ring : tli_ring_for(cfg, err, errlen);
}

int tl_server_reload(tl_server *srv, char *err, size_t errlen)
{
    /* One reload at a time. Files are read outside gen_lock, so counters and key rotation never
     * wait for a slow disk. */
    pthread_mutex_lock(&srv->reload_lock);
    tl_server_config *cfg = tli_server_config_replay(srv->cfg, err, errlen);
    tl_ticket_ring *ring = NULL;
    tli_gen *g = NULL;
    bool ok = cfg && check_basic(cfg, err, errlen) == 0;
    if (ok && any_tls(cfg))
        ok = (ring = reload_ring(srv, cfg, err, errlen)) != NULL;
    if (ok)
        ok = (g = make_gen(cfg, ring, err, errlen)) != NULL;
    if (!ok) {
        pthread_mutex_unlock(&srv->reload_lock);
        tl_server_config_free(cfg);
        tl_ticket_ring_free(ring);
        atomic_fetch_add(&srv->reload_failures, 1);
        LOG(srv, ERROR, "reload failed, keeping the running configuration: %s", err);
        return -1;
    }
    if (!same_restart_settings(srv->cfg, cfg))
        LOG(srv, WARN, "reload: listeners, workers, user, limits, the log file and task threads "
                       "take effect only after a restart");
    pthread_mutex_lock(&srv->gen_lock);
    if (ring && ring != srv->ring) {
        tl_ticket_ring_free(srv->ring);
        srv->ring = tl_ticket_ring_ref(ring);
    }
    srv->ring_from_file = cfg->ticket_key_file != NULL;
    g->serial = ++srv->gen_serial;
    publish(srv, g);
    pthread_mutex_unlock(&srv->gen_lock);
    tl_ticket_ring_free(ring);
    apply_log_level(srv, cfg);
    atomic_fetch_add(&srv->reloads, 1);
    LOG(srv, INFO, "reloaded: generation %u (new handshakes use it)", g->serial);
    warn_open_keys(srv, cfg);
    pthread_mutex_unlock(&srv->reload_lock);
    return 0;
}

/* ---- creating and running --------------------------------------------------------------- */

static int bind_listener(const tli_listen *L, uint64_t backlog, uint16_t *port, char *err,
                         size_t errlen)
{
    struct sockaddr_storage addr;
    memcpy(&addr, &L->addr, L->addrlen);
    if (*port) {   /* port 0 was asked: every worker binds the port the first one got */
        if (addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&addr)->sin_port = htons(*port);
        else
            ((struct sockaddr_in6 *)&addr)->sin6_port = htons(*port);
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        tli_fmt(err, errlen, "listen %s: socket: %s", L->text, strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        /* Inherited by every accepted socket: one setsockopt per listener, not per connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        (addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&addr, L->addrlen) != 0 ||
        listen(fd, (int)backlog) != 0) {
        int e = errno;
        close(fd);
        tli_fmt(err, errlen, "listen %s: %s%s", L->text, strerror(e),
                e == EADDRINUSE ? " (another program has this port)"
                : e == EACCES   ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                                : "");
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &len) == 0)
        *port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                               : ((struct sockaddr_in6 *)&got)->sin6_port);
    return fd;
}

/* Every worker's socket for every listener, after a probe of each address without SO_REUSEPORT
 * (server_trust.c) found nobody else on it. The probes stay bound until the workers' sockets
 * are: a port 0 listener's port is the probe's, and it stays ours meanwhile. */
static int bind_all(tl_server *srv, char *err, size_t errlen)
{
    const tl_server_config *cfg = srv->cfg;
    int *probes = malloc(srv->nlisten * sizeof *probes);
    if (!probes) {
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    size_t np = 0;
    for (; np < srv->nlisten && rc == 0; np++)
        rc = tli_probe_listen(&cfg->listens[np], &probes[np], &srv->ports[np], err, errlen);
    for (unsigned wi = 0; wi < srv->nworkers && rc == 0; wi++)
        for (size_t li = 0; li < srv->nlisten && rc == 0; li++) {
            int fd = bind_listener(&cfg->listens[li], cfg->backlog, &srv->ports[li], err, errlen);
            if (fd < 0)
                rc = -1;
            else
                srv->fds[(size_t)wi * srv->nlisten + li] = fd;
        }
    for (size_t i = 0; i < np; i++)
        if (probes[i] >= 0)
            close(probes[i]);
    free(probes);
    return rc ? -1 : 0;
}

static int drop_privileges(const char *user, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        tli_fmt(err, errlen, "user %s: no such user", user);
        return -1;
    }
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid)
            return 0;
        tli_fmt(err, errlen, "user %s: switching user needs root (running as uid %u)", user,
                (unsigned)geteuid());
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        tli_fmt(err, errlen, "user %s: cannot switch to it: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && setuid(0) == 0) {   /* must be impossible now */
        tli_fmt(err, errlen, "user %s: root privileges could be regained; refusing to run", user);
        return -1;
    }
    return 0;
}

/* Open-file limit: raise the soft limit to the hard one; the default connection limit leaves room
 * for listeners, the log and loops' own descriptors. */
static uint64_t default_max_conns(unsigned workers, size_t nlisten)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t reserve = 64 + (uint64_t)workers * (nlisten + 8);
    return rl.rlim_cur > reserve + 1 ? rl.rlim_cur - reserve : 1;
}

static bool any_tls(const tl_server_config *cfg)
{
    for (size_t i = 0; i < cfg->n_listens; i++)
        if (cfg->listens[i].tls)
            return true;
    return false;
}

/* Two listeners whose addresses overlap on one port: the same address, or the family's wildcard
 * and any other. SO_REUSEPORT would let both bind and the kernel would split (or steal) their
 * connections, so it is refused. Port 0 (pick one) never overlaps. */
static bool listens_overlap(const tli_listen *a, const tli_listen *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin_port && x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr || x->sin_addr.s_addr == INADDR_ANY ||
                y->sin_addr.s_addr == INADDR_ANY);
    }
    const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
    return x->sin6_port && x->sin6_port == y->sin6_port &&
           (!memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) ||
            IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
}

/* Checks that need no system resource; tl_server_check adds loading the TLS generation. */
static int check_basic(const tl_server_config *cfg, char *err, size_t errlen)
{
    if (!cfg->n_listens) {
        tli_fmt(err, errlen, "nothing to listen on: give listen [ADDR:]PORT");
        return -1;
    }
    if (tli_check_proxy_trust(cfg, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < cfg->n_listens; i++)
        for (size_t j = i + 1; j < cfg->n_listens; j++)
            if (listens_overlap(&cfg->listens[i], &cfg->listens[j])) {
                tli_fmt(err, errlen, "listen %s and listen %s: the same port on overlapping "
                        "addresses (each would get some of the other's connections)",
                        cfg->listens[i].text, cfg->listens[j].text);
                return -1;
            }
    if (cfg->tls_min > cfg->tls_max) {
        tli_fmt(err, errlen, "tls-min is above tls-max");
        return -1;
    }
    if (cfg->client_verify != (tl_verify)-1 && cfg->client_verify != TL_VERIFY_NONE && !cfg->client_ca) {
        tli_fmt(err, errlen, "client-cert needs client-ca FILE (the CAs that issue client certificates)");
        return -1;
    }
    if (cfg->user && !getpwnam(cfg->user)) {
        tli_fmt(err, errlen, "user %s: no such user", cfg->user);
        return -1;
    }
    return 0;
}

int tl_server_check(const tl_server_config *cfg, char *err, size_t errlen)
{
    if (check_basic(cfg, err, errlen) != 0)
        return -1;
    if (!any_tls(cfg))
        return 0;
    tl_server_config *copy = tli_server_config_replay(cfg, err, errlen);
    tli_gen *g = copy ? tli_gen_build(copy, NULL, err, errlen) : NULL;
    if (g)
        g->cfg = copy;
    else
        tl_server_config_free(copy);
    tli_gen_unref(g);
    return g ? 0 : -1;
}

static int init_worker(tl_server *srv, worker *w, int index, char *err, size_t errlen)
{
    w->srv = srv;
    w->index = index;
    pthread_mutex_init(&w->swap_lock, NULL);
    if (!(w->loop = tl_loop_new(err, errlen)))
        return -1;
    if (!(w->ls = calloc(srv->nlisten, sizeof *w->ls))) {
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < srv->nlisten; i++) {
        w->ls[i].w = w;
        w->ls[i].index = (int)i;
        tl_io_init(&w->ls[i].io, srv->fds[(size_t)index * srv->nlisten + i], on_listen, &w->ls[i]);
    }
    tl_timer_init(&w->retry, on_retry, w);
    tl_timer_init(&w->drain_deadline, on_drain_deadline, w);
    w->wake_work = (tl_work){.done = on_wake, .data = w};
    w->drain_work = (tl_work){.done = on_drain_work, .data = w};
    w->swap_work = (tl_work){.done = on_swap, .data = w};
    w->done_work = (tl_work){.done = on_worker_done, .data = w};
    w->opts.cbs = srv->handler.cbs;
    w->opts.half_close = srv->handler.half_close;
    w->opts.fd_nonblocking = true;   /* accept4(SOCK_NONBLOCK), and PROXY sockets alike */
    w->opts.fd_nodelay = true;       /* the listener's TCP_NODELAY */
    w->opts.fd_private = true;       /* SOCK_CLOEXEC, never duplicated: close leaves epoll */
    w->opts.owner = &OWNER;
    if (srv->gen)
        set_gen(w, tli_gen_ref(srv->gen));
    return 0;
}

tl_server *tl_server_new(const tl_server_config *cfg_in, const tl_server_handler *handler,
                         char *err, size_t errlen)
{
    if (!handler || !handler->cbs) {
        tli_fmt(err, errlen, "tl_server_new: a handler with connection callbacks is required");
        return NULL;
    }
    tl_server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->cfg = tli_server_config_replay(cfg_in, err, errlen))) {
        if (!srv)
            tli_fmt(err, errlen, "out of memory");
        free(srv);
        return NULL;
    }
    tl_server_config *cfg = srv->cfg;
    srv->handler = *handler;
    if (check_basic(cfg, err, errlen) != 0) {
        tl_server_config_free(cfg);
        free(srv);
        return NULL;
    }
    pthread_mutex_init(&srv->gen_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    srv->nlisten = cfg->n_listens;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    srv->nworkers = cfg->workers ? (unsigned)cfg->workers : cores > 0 ? (unsigned)cores : 1;
    srv->max_conns = cfg->max_conns ? cfg->max_conns : default_max_conns(srv->nworkers, srv->nlisten);
    srv->max_hs = cfg->max_handshakes ? cfg->max_handshakes : UINT64_MAX;
    const char *log_path = cfg->log_path && strcmp(cfg->log_path, "-") ? cfg->log_path : NULL;
    if (!(srv->log = tl_log_open(log_path, err, errlen)))
        goto fail;
    apply_log_level(srv, cfg);
    tl_log_set_rate(srv->log, (unsigned)cfg->log_rate);
    const char *no_kdf = cfg->tls_kdf == TL_KDF_TLSLOOP ? tl_kdf_unavailable(cfg->tls_kdf) : NULL;
    if (no_kdf)
        LOG(srv, WARN, "tls-kdf tlsloop: %s", no_kdf);
    /* The first generation owns the configuration the server started with (srv->cfg). */
    if ((any_tls(cfg) && !(srv->ring = tli_ring_for(cfg, err, errlen))) ||
        !(srv->gen = make_gen(cfg, srv->ring, err, errlen)))
        goto fail;
    srv->first_gen = tli_gen_ref(srv->gen);
    warn_open_keys(srv, cfg);
    srv->ring_from_file = cfg->ticket_key_file != NULL;
    srv->gen->serial = ++srv->gen_serial;
    if (cfg->handshake_rate &&
        !(srv->rate = tl_rate_new((double)cfg->handshake_rate,
                                  (double)(cfg->handshake_burst ? cfg->handshake_burst : cfg->handshake_rate)))) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->max_per_source &&
        !(srv->per_source = tl_addr_limit_new((unsigned)cfg->max_per_source, (unsigned)cfg->ipv6_prefix))) {
        tli_fmt(err, errlen, "max-per-source: cannot make the table (out of memory)");
        goto fail;
    }
    if (cfg->delegate != TLI_DELEGATE_OFF) {
        unsigned threads = cfg->task_threads ? (unsigned)cfg->task_threads : srv->nworkers;
        if (!(srv->pool = tl_pool_new(threads))) {
            tli_fmt(err, errlen, "delegate-handshakes: cannot start task threads");
            goto fail;
        }
    }
    size_t nfds = (size_t)srv->nworkers * srv->nlisten;
    if (!(srv->fds = malloc(nfds * sizeof *srv->fds)) ||
        !(srv->ports = calloc(srv->nlisten, sizeof *srv->ports)) ||
        !(srv->workers = calloc(srv->nworkers, sizeof *srv->workers))) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nfds; i++)
        srv->fds[i] = -1;
    if (bind_all(srv, err, errlen) != 0)
        goto fail;
    if (!(srv->control = tl_loop_new(err, errlen)))
        goto fail;
    for (unsigned wi = 0; wi < srv->nworkers; wi++)
        if (init_worker(srv, &srv->workers[wi], (int)wi, err, errlen) != 0)
            goto fail;
    srv->stop_work = (tl_work){.done = on_stop_work, .data = srv};
    tl_timer_init(&srv->tick, on_tick, srv);
    tl_timer_init(&srv->rotate, on_rotate, srv);
    if (cfg->user && drop_privileges(cfg->user, err, errlen) != 0)
        goto fail;
    return srv;
fail:
    tl_server_free(srv);
    return NULL;
}

int tl_server_run(tl_server *srv, char *err, size_t errlen)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    tl_signals_block(sigs, sizeof sigs / sizeof sigs[0]);   /* workers inherit the mask */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (tl_loop_on_signal(srv->control, sigs[i], on_signal, srv) != 0) {
            tli_fmt(err, errlen, "signals: %s", tl_loop_error(srv->control));
            return -1;
        }
    srv->last_tick_ms = tl_loop_now(srv->control);
    tl_timer_start(srv->control, &srv->tick, 1000);
    if (srv->ring)
        tl_timer_start(srv->control, &srv->rotate, rotate_interval(srv->cfg));
    bool start_failed = false;
    for (unsigned i = 0; i < srv->nworkers && !start_failed; i++) {
        worker *w = &srv->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc == 0) {
            w->started = true;
            srv->nstarted++;
            continue;
        }
        tli_fmt(err, errlen, "cannot start worker %u: %s", i, strerror(rc));
        start_failed = true;
        /* Sockets nobody will accept on must leave the SO_REUSEPORT group now. */
        for (unsigned j = i; j < srv->nworkers; j++)
            for (size_t li = 0; li < srv->nlisten; li++) {
                size_t k = (size_t)j * srv->nlisten + li;
                close(srv->fds[k]);
                srv->fds[k] = -1;
                srv->workers[j].ls[li].io.fd = -1;
            }
        if (srv->nstarted == 0)
            return -1;
        tl_server_stop(srv);   /* drain and join the ones that run */
    }
    char addrs[512] = "";
    for (size_t i = 0, off = 0; i < srv->nlisten && off < sizeof addrs; i++) {
        const tli_listen *L = &srv->cfg->listens[i];
        char a[64];
        bound_text(srv, i, a, sizeof a);
        off += (size_t)snprintf(addrs + off, sizeof addrs - off, "%s%s (%s%s)", i ? ", " : "", a,
                                L->tls ? "tls" : "plain", L->proxy ? ", proxy" : "");
    }
    LOG(srv, INFO, "listening on %s with %u workers", addrs, srv->nworkers);
    int rc = tl_loop_run(srv->control);
    if (rc != 0)
        begin_drain(srv);   /* the workers still run: let them finish before they are joined */
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].started) {
            pthread_join(srv->workers[i].thread, NULL);
            srv->workers[i].started = false;
        }
    tl_timer_stop(srv->control, &srv->tick);
    tl_timer_stop(srv->control, &srv->rotate);
    if (rc != 0) {
        tli_fmt(err, errlen, "control loop: %s", tl_loop_error(srv->control));
        return -1;
    }
    LOG(srv, INFO, "stopped");
    return start_failed ? -1 : 0;
}

static void free_worker(tl_server *srv, worker *w)
{
    if (w->loop) {
        /* Connections left (a server freed without running) are aborted and their callbacks run. */
        while (w->pendings)
            end_pending(w->pendings, false);
        for (sconn *s = w->conns; s; s = s->next)
            tl_conn_abort(s->c);
        for (int spins = 0; w->nconns && spins < 1000; spins++)
            tl_loop_run_once(w->loop, 10);
        for (size_t i = 0; w->ls && i < srv->nlisten; i++)
            tl_io_stop(w->loop, &w->ls[i].io);
        tl_timer_stop(w->loop, &w->retry);
        tl_timer_stop(w->loop, &w->drain_deadline);
        tl_loop_run_once(w->loop, 0);   /* deferred frees */
        tl_loop_free(w->loop);
        w->loop = NULL;
    }
    free(w->ls);
    tli_gen_unref(w->gen);
    tli_gen_unref(w->next_gen);
    pthread_mutex_destroy(&w->swap_lock);
}

void tl_server_free(tl_server *srv)
{
    if (!srv)
        return;
    /* The pool first: its last tasks post their results to loops that must still exist. */
    tl_pool_free(srv->pool);
    srv->pool = NULL;
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        free_worker(srv, &srv->workers[i]);
    for (size_t i = 0; srv->fds && i < (size_t)srv->nworkers * srv->nlisten; i++)
        if (srv->fds[i] >= 0)
            close(srv->fds[i]);
    free(srv->workers);
    free(srv->fds);
    free(srv->ports);
    if (srv->control)
        tl_loop_free(srv->control);
    tl_pool_free(srv->pool);
    tli_gen_unref(srv->gen);
    tl_ticket_ring_free(srv->ring);
    tl_rate_free(srv->rate);
    tl_addr_limit_free(srv->per_source);
    tl_log_free(srv->log);
    if (srv->first_gen)
        tli_gen_unref(srv->first_gen);
    else
        tl_server_config_free(srv->cfg);   /* failed before the first generation took it */
    pthread_mutex_destroy(&srv->gen_lock);
    pthread_mutex_destroy(&srv->reload_lock);
    free(srv);
}

/* ---- facts and counters ----------------------------------------------------------------- */

size_t tl_server_listeners(const tl_server *srv) { return srv->nlisten; }
unsigned tl_server_workers(const tl_server *srv) { return srv->nworkers; }
tl_log *tl_server_log(tl_server *srv) { return srv->log; }

uint16_t tl_server_port(const tl_server *srv, size_t listener)
{
    return listener < srv->nlisten ? srv->ports[listener] : 0;
}

bool tl_server_listener_is_tls(const tl_server *srv, size_t listener)
{
    return listener < srv->nlisten && srv->cfg->listens[listener].tls;
}

static const sconn *of(const tl_conn *c)
{
    return tl_conn_get_owner(c) == &OWNER ? tl_conn_owner_data(c) : NULL;
}

const struct sockaddr *tl_server_conn_peer(const tl_conn *c, socklen_t *len)
{
    const sconn *s = of(c);
    if (len)
        *len = s ? s->peerlen : 0;
    return s ? (const struct sockaddr *)&s->peer : NULL;
}

int tl_server_conn_listener(const tl_conn *c) { return of(c) ? of(c)->listener : -1; }
int tl_server_conn_worker(const tl_conn *c) { return of(c) ? of(c)->w->index : -1; }

const uint8_t *tl_server_conn_proxy_tlvs(const tl_conn *c, size_t *len)
{
    const sconn *s = of(c);
    if (len)
        *len = s ? s->tlvs_len : 0;
    return s ? s->tlvs : NULL;
}

const char *tl_hs_fail_name(tl_hs_fail why)
{
    static const char *const names[TL_HS_FAIL_KINDS] = {"timeout", "closed", "protocol",
                                                         "alert", "verify", "other"};
    return (unsigned)why < TL_HS_FAIL_KINDS ? names[why] : "unknown";
}

static uint64_t get(const counter *c) { return atomic_load_explicit(c, memory_order_relaxed); }

static void add_worker_stats(const worker *w, tl_server_stats *o)
{
    const wstats *s = &w->st;
    uint64_t total = get(&s->conns_total), closed = get(&s->conns_closed);
    uint64_t started = get(&s->hs_started), ended = get(&s->hs_ended);
    /* Read without a lock, a gauge may be caught between its two counters. */
    o->conns_open += total >= closed ? total - closed : 0;
    o->handshakes_active += started >= ended ? started - ended : 0;
    o->conns_total += total;
    o->conns_refused_source += get(&s->refused_source);
    o->proxy_invalid += get(&s->proxy_invalid);
    o->proxy_untrusted += get(&s->proxy_untrusted);
    o->accept_pauses += get(&s->accept_pauses);
    o->handshakes_full += get(&s->hs_full);
    o->handshakes_resumed += get(&s->hs_resumed);
    for (int i = 0; i < TL_HS_FAIL_KINDS; i++)
        o->handshakes_failed[i] += get(&s->hs_failed[i]);
    o->handshake_cpu_ns += get(&s->hs_cpu_ns);
    for (int i = 0; i <= TL_END_LOCAL; i++)
        o->ends[i] += get(&s->ends[i]);
    o->bytes_in += get(&s->bytes_in);
    o->bytes_out += get(&s->bytes_out);
}

void tl_server_get_stats(tl_server *srv, int worker_index, tl_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (worker_index >= 0) {
        if ((unsigned)worker_index < srv->nworkers)
            add_worker_stats(&srv->workers[worker_index], out);
        return;
    }
    for (unsigned i = 0; i < srv->nworkers; i++)
        add_worker_stats(&srv->workers[i], out);
    out->handshake_rate = (double)atomic_load(&srv->rate_milli) / 1000.0;
    out->reloads = atomic_load(&srv->reloads);
    out->reload_failures = atomic_load(&srv->reload_failures);
    pthread_mutex_lock(&srv->gen_lock);
    if (srv->gen && srv->gen->not_after) {
        int64_t left = srv->gen->not_after - (int64_t)time(NULL);
        out->cert_expiry_days = left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
    }
    if (srv->ring)
        tl_ticket_ring_stats(srv->ring, &out->tickets);
    pthread_mutex_unlock(&srv->gen_lock);
}
