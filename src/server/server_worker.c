/* server_worker.c - the workers: each one a thread with its own loop, its own socket per
 * listener and the connections it accepted. Its setup, its thread, what it does with each socket
 * its listeners accept (slots, rate, then the PROXY header step or the connection), and its
 * teardown.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/server_int.h"

/* ---- accepting -------------------------------------------------------------------------- */

/* A socket the listener accepted (tl_listen: a multishot accept on io_uring, accept4 on epoll).
 * Slots and a rate token are taken now; at a limit the socket is left with the listener, which is
 * paused (the next connections wait in the kernel's backlog) and offers it first when resumed. */
static bool on_accept(tl_loop *loop, tl_listen *lis, int fd, const struct sockaddr *peer,
                      socklen_t len)
{
    wlisten *wl = lis->data;
    worker *w = wl->w;
    tl_server *srv = w->srv;
    const tli_listen *L = &srv->cfg->listens[wl->index];
    if (!tli_take_slot(srv, &srv->conns, srv->max_conns)) {
        tli_pause_listener(w, wl, PAUSE_SLOTS);
        return false;
    }
    if (L->tls && !tli_take_slot(srv, &srv->handshakes, srv->max_hs)) {
        tli_release_slots(srv, true, false);
        tli_pause_listener(w, wl, PAUSE_SLOTS);
        return false;
    }
    if (L->tls && srv->rate && !tl_rate_take(srv->rate, tl_loop_now(loop))) {
        tli_release_slots(srv, true, true);
        tli_pause_listener(w, wl, PAUSE_RATE);
        return false;
    }
    bump(&w->st.conns_total, 1);
    if (L->proxy && !tli_proxy_trusted(srv->cfg, L, peer))
        tli_refuse_untrusted(w, wl->index, fd, peer);
    else if (L->proxy)
        tli_start_pending(w, wl->index, fd, peer, len);
    else
        tli_start_conn(w, wl->index, fd, peer, len, NULL, 0);
    return true;
}

/* accept failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
 * connection waits in the backlog while the listener pauses for a while. */
static void on_accept_error(tl_loop *loop, tl_listen *lis, int err)
{
    (void)loop;
    wlisten *wl = lis->data;
    tl_server *srv = wl->w->srv;
    LOG(srv, ERROR, "accept on %s: %s; pausing for %d ms", srv->cfg->listens[wl->index].text,
        strerror(err), TLI_FD_RETRY_MS);
    tli_pause_listener(wl->w, wl, PAUSE_FDS);
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
        if (tl_listen_fd(&w->ls[i].lis) >= 0)
            tl_listen_start(w->loop, &w->ls[i].lis);
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
        tl_listen_init(&w->ls[i].lis, srv->fds[(size_t)index * srv->nlisten + i], on_accept,
                       on_accept_error, &w->ls[i]);
    }
    tl_timer_init(&w->retry, tli_on_retry, w);
    tl_timer_init(&w->drain_deadline, tli_on_drain_deadline, w);
    tl_timer_init(&w->close_ls, tli_on_close_listeners, w);
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
            tl_listen_stop(w->loop, &w->ls[i].lis);
        tl_timer_stop(w->loop, &w->retry);
        tl_timer_stop(w->loop, &w->drain_deadline);
        tl_timer_stop(w->loop, &w->close_ls);
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
