/* server_worker.c - the workers: each one a thread with its own loop, its own socket per
 * listener and the connections it accepted. Its setup, its thread, its accept loop (slots, rate,
 * then the PROXY header step or the connection), and its teardown.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/server_int.h"

/* ---- accepting -------------------------------------------------------------------------- */

static void on_listen(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    wlisten *wl = io->data;
    worker *w = wl->w;
    tl_server *srv = w->srv;
    const tli_listen *L = &srv->cfg->listens[wl->index];
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP; i++) {
        if (!tli_take_slot(srv, &srv->conns, srv->max_conns)) {
            tli_pause_listener(w, wl, PAUSE_SLOTS);
            return;
        }
        if (L->tls && !tli_take_slot(srv, &srv->handshakes, srv->max_hs)) {
            tli_release_slots(srv, true, false);
            tli_pause_listener(w, wl, PAUSE_SLOTS);
            return;
        }
        bool token = L->tls && srv->rate;
        if (token && !tl_rate_take(srv->rate, tl_loop_now(loop))) {
            tli_release_slots(srv, true, true);
            tli_pause_listener(w, wl, PAUSE_RATE);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            tli_release_slots(srv, true, L->tls);
            if (token)
                tl_rate_put_back(srv->rate);   /* no connection came: the token is unused */
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM)
                continue;
            LOG(srv, ERROR, "accept on %s: %s; pausing for %d ms", L->text, strerror(err), TLI_FD_RETRY_MS);
            tli_pause_listener(w, wl, PAUSE_FDS);
            return;
        }
        bump(&w->st.conns_total, 1);
        if (L->proxy && !tli_proxy_trusted(srv->cfg, L, (struct sockaddr *)&peer))
            tli_refuse_untrusted(w, wl->index, fd, (struct sockaddr *)&peer);
        else if (L->proxy)
            tli_start_pending(w, wl->index, fd, (struct sockaddr *)&peer, len);
        else
            tli_start_conn(w, wl->index, fd, (struct sockaddr *)&peer, len, NULL, 0);
    }
}

/* ---- the thread ------------------------------------------------------------------------- */

static void on_worker_done(tl_loop *loop, tl_work *work)
{
    tl_server *srv = ((worker *)work->data)->srv;
    if (++srv->workers_done == srv->nstarted)
        tl_loop_stop(loop);
}

void *tli_worker_main(void *arg)
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
    if (w->store)
        tli_sstore_start(w->store);   /* on the loop's own thread */
    if (tl_loop_run(w->loop) != 0)
        LOG(w->srv, ERROR, "worker %d: %s", w->index, tl_loop_error(w->loop));
    tl_loop_post(w->srv->control, &w->done_work);
    return NULL;
}

/* ---- setup and teardown ----------------------------------------------------------------- */

int tli_init_worker(tl_server *srv, worker *w, int index, char *err, size_t errlen)
{
    w->srv = srv;
    w->index = index;
    pthread_mutex_init(&w->swap_lock, NULL);
    if (!(w->loop = tl_loop_new_ex(&(tl_loop_opts){.io = srv->cfg->io}, err, errlen)))
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
    tl_timer_init(&w->retry, tli_on_retry, w);
    tl_timer_init(&w->drain_deadline, tli_on_drain_deadline, w);
    w->wake_work = (tl_work){.done = tli_on_wake, .data = w};
    w->drain_work = (tl_work){.done = tli_on_drain_work, .data = w};
    w->swap_work = (tl_work){.done = tli_on_swap, .data = w};
    w->done_work = (tl_work){.done = on_worker_done, .data = w};
    w->opts.cbs = srv->handler.cbs;
    w->opts.half_close = srv->handler.half_close;
    w->opts.fd_nonblocking = true;   /* accept4(SOCK_NONBLOCK), and PROXY sockets alike */
    w->opts.fd_nodelay = true;       /* the listener's TCP_NODELAY */
    w->opts.fd_private = true;       /* SOCK_CLOEXEC, never duplicated: close leaves epoll */
    w->opts.owner = &tli_server_owner;
    if (srv->cfg->session_store) {
        tli_sstore_addr a;
        if (tli_sstore_parse_url(srv->cfg->session_store, &a, err, errlen) != 0)
            return -1;
        if (!(w->store = tli_sstore_new(w->loop, &a, (uint32_t)srv->cfg->session_store_timeout_ms,
                                        w->index == 0 ? srv->log : NULL))) {
            tli_fmt(err, errlen, "session-store: out of memory");
            return -1;
        }
        w->opts.owner = &tli_server_owner_store;
    }
    if (srv->gen)
        tli_set_gen(w, tli_gen_ref(srv->gen));
    return 0;
}

void tli_free_worker(tl_server *srv, worker *w)
{
    if (w->loop) {
        /* Connections left (a server freed without running) are aborted and their callbacks run. */
        while (w->pendings)
            tli_end_pending(w->pendings, false);
        for (sconn *s = w->conns; s; s = s->next)
            tl_conn_abort(s->c);
        for (int spins = 0; w->nconns && spins < 1000; spins++)
            tl_loop_run_once(w->loop, 10);
        for (size_t i = 0; w->ls && i < srv->nlisten; i++)
            tl_io_stop(w->loop, &w->ls[i].io);
        tl_timer_stop(w->loop, &w->retry);
        tl_timer_stop(w->loop, &w->drain_deadline);
        tli_sstore_free(w->store);
        w->store = NULL;
        tl_loop_run_once(w->loop, 0);   /* deferred frees */
        tl_loop_free(w->loop);
        w->loop = NULL;
    }
    free(w->ls);
    tli_gen_unref(w->gen);
    tli_gen_unref(w->next_gen);
    pthread_mutex_destroy(&w->swap_lock);
}

const char *tli_workers_io(const tl_server *srv)
{
    const char *first = srv->nworkers ? tl_loop_backend(srv->workers[0].loop) : "none";
    for (unsigned i = 1; i < srv->nworkers; i++)
        if (strcmp(tl_loop_backend(srv->workers[i].loop), first) != 0)
            return "mixed";
    return first;
}
