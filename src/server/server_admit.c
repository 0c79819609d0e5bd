/* server_admit.c - admission slots: the server-wide connection and handshake limits that a worker
 * reserves before it calls accept(), and the pausing and waking of listeners at a limit
 * (docs/server.md, "Protection, before any TLS work"). */
#include "server/server_int.h"

static void wake_sleepers(tl_server *srv);

bool tli_take_slot(tl_server *srv, atomic_uint_fast64_t *count, uint64_t max)
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
void tli_release_slots(tl_server *srv, bool conn, bool hs)
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
            tl_listen_start(w->loop, &w->ls[i].lis);
        }
}

void tli_on_wake(tl_loop *loop, tl_work *work)
{
    (void)loop;
    worker *w = work->data;
    atomic_store(&w->wake_posted, false);
    resume_listeners(w);
}

void tli_on_retry(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    resume_listeners(t->data);
}

void tli_pause_listener(worker *w, wlisten *wl, pause_why why)
{
    tl_server *srv = w->srv;
    wl->paused = true;
    tl_listen_pause(w->loop, &wl->lis);
    bump(&w->st.accept_pauses, 1);
    if (why == PAUSE_SLOTS) {
        atomic_store(&w->asleep, true);
        /* A slot freed between our failed reservation and the flag would wake nobody. */
        if (slots_free(srv, srv->cfg->listens[wl->index].tls) && atomic_exchange(&w->asleep, false))
            resume_listeners(w);
        return;
    }
    uint64_t after = TLI_FD_RETRY_MS;
    if (why == PAUSE_RATE)
        after = srv->cfg->handshake_rate >= 1000 ? 1 : 1000 / srv->cfg->handshake_rate;
    if (!tl_timer_active(&w->retry))
        tl_timer_start(w->loop, &w->retry, after);
}
