/* server_control.c - what changes a running server: signals (SIGTERM and SIGINT drain, SIGHUP
 * reloads, SIGUSR1 reopens the logs), the drain on each worker, reload into a new generation that
 * each worker swaps to, and the control thread's timers (handshake rate, ticket key rotation).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server_int.h"

/* ---- the control thread ----------------------------------------------------------------- */

void tli_begin_drain(tl_server *srv)
{
    tl_timer_stop(srv->control, &srv->grace);
    /* Not after a hand-off: the successor is systemd's main process now, and STOPPING=1 from
     * any process of the unit would say the service stops. */
    if (!atomic_exchange(&srv->draining, true) && !srv->handed_off)
        tli_notify(srv, "STOPPING=1\nSTATUS=draining");
    pthread_mutex_lock(&srv->gen_lock);
    uint64_t deadline = srv->gen->cfg->drain_timeout_ms;
    pthread_mutex_unlock(&srv->gen_lock);
    LOG(srv, INFO, "draining: listeners closed, connections finishing (deadline %llu ms)",
        (unsigned long long)deadline);
    for (unsigned i = 0; i < srv->nworkers; i++)
        tl_loop_post(srv->workers[i].loop, &srv->workers[i].drain_work);
    tl_timer_stop(srv->control, &srv->rotate);
    tl_timer_stop(srv->control, &srv->keywatch);
    tli_ocsp_stop(srv->ocsp);
}

/* drain-grace: /health and /ready say "draining" while the listeners still accept, so a
 * balancer's health checks take the instance out before anyone is refused. */
void tli_on_stop_work(tl_loop *loop, tl_work *work)
{
    tl_server *srv = work->data;
    pthread_mutex_lock(&srv->gen_lock);
    uint64_t grace = srv->gen->cfg->drain_grace_ms;
    pthread_mutex_unlock(&srv->gen_lock);
    if (!grace || srv->handed_off) {
        tli_begin_drain(srv);
        return;
    }
    atomic_store(&srv->draining, true);
    tli_notify(srv, "STOPPING=1\nSTATUS=draining: health checks fail for %llu ms, then the "
               "listeners close", (unsigned long long)grace);
    LOG(srv, INFO, "drain-grace: /health answers 503 for %llu ms before the listeners close",
        (unsigned long long)grace);
    tl_timer_start(loop, &srv->grace, grace);
}

void tli_on_grace(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    tli_begin_drain(t->data);
}

void tl_server_stop(tl_server *srv)
{
    if (!atomic_exchange(&srv->stopping, true))
        tl_loop_post(srv->control, &srv->stop_work);
}

void tli_on_signal(tl_loop *loop, int signo, void *data)
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

void tli_on_tick(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    uint64_t now = tl_loop_now(loop), total = hs_total(srv);
    if (now > srv->last_tick_ms)
        atomic_store(&srv->rate_milli, (total - srv->last_hs_total) * 1000000 / (now - srv->last_tick_ms));
    srv->last_hs_total = total;
    srv->last_tick_ms = now;
    tl_timer_start(loop, t, 1000);
}

uint64_t tli_rotate_interval(const tl_server_config *cfg)
{
    uint64_t ms = cfg->ticket_rotate_ms ? cfg->ticket_rotate_ms : cfg->session_lifetime_ms / 4;
    if (ms > TL_SERVER_TICKET_ROTATE_MAX_MS)
        ms = TL_SERVER_TICKET_ROTATE_MAX_MS;   /* forward secrecy: see ticket-rotate */
    return ms ? ms : 1000;
}

/* Keys from a file are the operator's to rotate (every instance must agree); random keys are ours.
 * The decision and the interval follow the running generation, so a reload can change both. */
void tli_on_rotate(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    pthread_mutex_lock(&srv->gen_lock);
    if (srv->ring && !srv->ring_from_file && tl_ticket_ring_rotate(srv->ring) != 0)
        LOG(srv, ERROR, "ticket key rotation failed (no randomness): the current key stays");
    uint64_t next = tli_rotate_interval(srv->gen->cfg);
    pthread_mutex_unlock(&srv->gen_lock);
    tl_timer_start(loop, t, next);
}

/* Remember the key file as it is now (after loading it). */
void tli_key_file_seen(tl_server *srv, const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        memset(&sb, 0, sizeof sb);
    srv->key_seen = sb;
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The key file changed (replaced by a rename, or rewritten): its keys go into the running ring
 * in place, so new tickets and session-store entries use the new current key at once and
 * nothing else is rebuilt. A file that does not parse is logged and the keys stay. */
void tli_on_keywatch(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    pthread_mutex_lock(&srv->gen_lock);
    tl_ticket_ring *ring = srv->ring && srv->ring_from_file ? tl_ticket_ring_ref(srv->ring) : NULL;
    tli_gen *g = tli_gen_ref(srv->gen);
    pthread_mutex_unlock(&srv->gen_lock);
    const char *path = g->cfg->ticket_key_file;
    struct stat sb;
    if (ring && path && stat(path, &sb) == 0 && !same_file_state(&sb, &srv->key_seen)) {
        char err[512];
        srv->key_seen = sb;
        if (tl_ticket_ring_reload_file(ring, path, err, sizeof err) == 0) {
            atomic_fetch_add(&srv->key_reloads, 1);
            uint8_t name[16];
            tl_ticket_ring_current_name(ring, name);
            LOG(srv, INFO, "ticket key file %s changed: %u keys, the current one %02x%02x%02x%02x...",
                path, tl_ticket_ring_count(ring), name[0], name[1], name[2], name[3]);
        } else {
            atomic_fetch_add(&srv->key_reload_failures, 1);
            LOG(srv, ERROR, "ticket key file changed but is refused, keeping the keys in use: %s",
                err);
        }
    }
    tl_ticket_ring_free(ring);
    tli_gen_unref(g);
    tl_timer_start(loop, t, TLI_KEY_WATCH_MS);
}

/* ---- drain, on each worker -------------------------------------------------------------- */

void tli_on_drain_deadline(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    worker *w = t->data;
    if (w->nconns)
        LOG(w->srv, WARN, "worker %d: %zu connections still open at the drain deadline: aborted",
            w->index, w->nconns);
    for (sconn *s = w->conns; s; s = s->next)
        tl_conn_abort(s->c);
}

/* Sockets the listener accepted but did not hand over (at a limit, or beyond an iteration's
 * share) are clients already: closing them with the listener would reset them (after a hand-off
 * too: they are ours, not in the queue the successor takes). They are served, over the limits,
 * and drain with the others. */
static void serve_held(worker *w, wlisten *wl)
{
    tl_server *srv = w->srv;
    const tli_listen *L = &srv->cfg->listens[wl->index];
    int fd;
    while ((fd = tl_listen_take(&wl->lis)) >= 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0) {
            close(fd);   /* gone already */
            continue;
        }
        tli_take_slot(srv, &srv->conns, UINT64_MAX);
        if (L->tls)
            tli_take_slot(srv, &srv->handshakes, UINT64_MAX);
        bump(&w->st.conns_total, 1);
        if (L->proxy && !tli_proxy_trusted(srv->cfg, L, (struct sockaddr *)&peer))
            tli_refuse_untrusted(w, wl->index, fd, (struct sockaddr *)&peer);
        else if (L->proxy)
            tli_start_pending(w, wl->index, fd, (struct sockaddr *)&peer, len);
        else
            tli_start_conn(w, wl->index, fd, (struct sockaddr *)&peer, len, NULL, 0);
    }
}

/* How long a draining worker waits for its listeners' accepts in flight to end (io_uring: the
 * cancel's completion; a socket accepted meanwhile is held, then served), polling every
 * CLOSE_POLL_MS; past the wait they close anyway (what comes later is closed by the loop). */
#define CLOSE_WAIT_MS 1000
#define CLOSE_POLL_MS 2

/* Close the listeners whose accept has ended, after serving what they hold. */
static void close_listeners(worker *w)
{
    tl_server *srv = w->srv;
    bool late = tl_loop_now(w->loop) >= w->close_ls_until;
    for (size_t i = 0; i < srv->nlisten; i++) {
        wlisten *wl = &w->ls[i];
        if (tl_listen_fd(&wl->lis) < 0 || (tl_listen_accepting(w->loop, &wl->lis) && !late))
            continue;
        serve_held(w, wl);
        tl_listen_stop(w->loop, &wl->lis);   /* its accept cancelled before the close */
        close(tl_listen_fd(&wl->lis));
        wl->lis.io.fd = -1;
        srv->fds[(size_t)w->index * srv->nlisten + i] = -1;
        w->ls_open--;
    }
    if (w->ls_open) {
        tl_timer_start(w->loop, &w->close_ls, CLOSE_POLL_MS);
        return;
    }
    /* The connections started from held sockets are asked to finish too. */
    for (sconn *s = w->conns; s; s = s->next)
        if (!s->drain_asked) {
            s->drain_asked = true;
            if (srv->handler.on_drain)
                srv->handler.on_drain(s->c, srv->handler.data);
            else
                tl_conn_close(s->c);
        }
    tli_maybe_finish(w);
}

void tli_on_close_listeners(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    close_listeners(t->data);
}

/* Stop accepting: each listener pauses (on io_uring its accept is cancelled; sockets the kernel
 * accepted before the cancel took effect are held) and closes once nothing more can come. */
static void drain_worker(worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    tl_server *srv = w->srv;
    w->ls_open = 0;
    for (size_t i = 0; i < srv->nlisten; i++)
        if (tl_listen_fd(&w->ls[i].lis) >= 0) {
            tl_listen_pause(w->loop, &w->ls[i].lis);
            w->ls_open++;
        }
    tl_timer_stop(w->loop, &w->retry);
    while (w->pendings)
        tli_end_pending(w->pendings, false);
    for (sconn *s = w->conns; s; s = s->next) {
        s->drain_asked = true;
        if (srv->handler.on_drain)
            srv->handler.on_drain(s->c, srv->handler.data);
        else
            tl_conn_close(s->c);
    }
    tl_timer_start(w->loop, &w->drain_deadline, w->gen->cfg->drain_timeout_ms);
    w->close_ls_until = tl_loop_now(w->loop) + CLOSE_WAIT_MS;
    close_listeners(w);
}

void tli_on_drain_work(tl_loop *loop, tl_work *work)
{
    (void)loop;
    drain_worker(work->data);
}

/* ---- generations ------------------------------------------------------------------------ */

/* A generation for cfg (taken over on success): TLS with this ring when a listener uses TLS, else
 * one that carries only the settings (deadlines, log level). */
tli_gen *tli_make_gen(tl_server_config *cfg, tl_ticket_ring *ring, char *err, size_t errlen)
{
    tli_gen *g;
    if (tli_any_tls(cfg)) {
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

void tli_set_gen(worker *w, tli_gen *g)
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

void tli_on_swap(tl_loop *loop, tl_work *work)
{
    (void)loop;
    worker *w = work->data;
    atomic_store(&w->swap_posted, false);
    pthread_mutex_lock(&w->swap_lock);
    tli_gen *g = w->next_gen;
    w->next_gen = NULL;
    pthread_mutex_unlock(&w->swap_lock);
    if (g)
        tli_set_gen(w, g);
    if (g && w->srv->handler.on_reload && !w->draining)
        for (sconn *s = w->conns; s; s = s->next)
            w->srv->handler.on_reload(s->c, w->srv->handler.data);
}

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

/* The configured level; a reload that drops log-level goes back to the default. */
void tli_apply_log_level(tl_server *srv, const tl_server_config *cfg)
{
    tl_log_level level = TL_LOG_INFO;
    if (cfg->log_level)
        tl_log_parse_level(cfg->log_level, &level, NULL, 0);   /* checked when it was set */
    tl_log_set_level(srv->log, level);
}

/* A private key every user of the machine can read: said loudly, but served (the key file is the
 * operator's; a group-readable one, Debian's ssl-cert convention, is not warned about). */
void tli_warn_open_keys(tl_server *srv, const tl_server_config *cfg)
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

/* ---- reload ----------------------------------------------------------------------------- */

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
           a->delegate == b->delegate && a->loop_slice_ns == b->loop_slice_ns && a->io == b->io &&
           !strcmp(a->user ? a->user : "", b->user ? b->user : "") &&
           !strcmp(a->session_store ? a->session_store : "", b->session_store ? b->session_store : "") &&
           a->session_store_timeout_ms == b->session_store_timeout_ms;
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
    tli_notify_reloading(srv);
    tl_server_config *cfg = tli_server_config_replay(srv->cfg, err, errlen);
    tl_ticket_ring *ring = NULL;
    tli_gen *g = NULL;
    bool ok = cfg && tli_server_config_check(cfg, err, errlen) == 0;
    if (ok && tli_any_tls(cfg))
        ok = (ring = reload_ring(srv, cfg, err, errlen)) != NULL;
    if (ok)
        ok = (g = tli_make_gen(cfg, ring, err, errlen)) != NULL;
    if (!ok) {
        pthread_mutex_unlock(&srv->reload_lock);
        tl_server_config_free(cfg);
        tl_ticket_ring_free(ring);
        atomic_fetch_add(&srv->reload_failures, 1);
        LOG(srv, ERROR, "reload failed, keeping the running configuration: %s", err);
        tli_notify(srv, "READY=1\nSTATUS=reload failed (%.300s): serving the previous "
                   "configuration", err);
        return -1;
    }
    if (!same_restart_settings(srv->cfg, cfg))
        LOG(srv, WARN, "reload: listeners, workers, io, user, limits, the log file, the session store "
                       "and task threads take effect only after a restart");
    tli_ocsp_attach(srv->ocsp, g);   /* its certificates' staples, before anyone uses it */
    pthread_mutex_lock(&srv->gen_lock);
    if (ring && ring != srv->ring) {
        tl_ticket_ring_free(srv->ring);
        srv->ring = tl_ticket_ring_ref(ring);
    }
    srv->ring_from_file = cfg->ticket_key_file != NULL;
    tli_key_file_seen(srv, cfg->ticket_key_file);
    g->serial = ++srv->gen_serial;
    publish(srv, g);
    pthread_mutex_unlock(&srv->gen_lock);
    tl_ticket_ring_free(ring);
    tli_apply_log_level(srv, cfg);
    atomic_fetch_add(&srv->reloads, 1);
    LOG(srv, INFO, "reloaded: generation %u (new handshakes use it)", g->serial);
    tli_warn_open_keys(srv, cfg);
    tli_notify(srv, "READY=1\nSTATUS=serving, reloaded: generation %u", g->serial);
    pthread_mutex_unlock(&srv->reload_lock);
    return 0;
}
