/*
 * bench/storm/flood.c - the flood thread: F connections, each a full handshake (never resumed)
 * and a graceful close, replaced at once; it counts the handshakes of the measured window.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "storm.h"

static void flood_start(flood_slot *s);

static void flood_on_handshake(tl_conn *c, bool ok)
{
    flood_slot *s = tl_conn_data(c);
    flood *f = s->f;
    if (!ok)
        return; /* counted in on_close, with the reason */
    s->hs_ok = true;
    f->hs_ok++;
    uint64_t t = now_ns();
    if (t >= f->win_start && t < f->win_end)
        f->hs_window++;
    if (SSL_session_reused(tl_engine_ssl(tl_conn_engine(c))))
        f->resumed++;
    tl_conn_close(c);
}

static void flood_on_close(tl_conn *c, tl_conn_end how)
{
    flood_slot *s = tl_conn_data(c);
    flood *f = s->f;
    s->c = NULL;
    f->live--;
    if (f->stopping) {
        f->aborted_at_stop++;
    } else if (!s->hs_ok) {
        f->hs_failed++;
        note(&f->printed, "flood", "handshake failed (%s): %s", tl_conn_end_name(how),
             tl_conn_error(c));
    } else if (how != TL_END_CLEAN) {
        f->bad_end++;
        note(&f->printed, "flood", "connection ended %s after its handshake: %s",
             tl_conn_end_name(how), tl_conn_error(c));
    }
    if (f->stopping) {
        if (f->live == 0)
            tl_loop_stop(f->loop);
        return;
    }
    if (!s->hs_ok || how != TL_END_CLEAN)
        tl_timer_start(f->loop, &s->retry, RETRY_MS); /* a server that refuses: no busy cycle */
    else
        flood_start(s);
}

static const tl_conn_cbs flood_cbs = {.on_handshake = flood_on_handshake,
                                      .on_close = flood_on_close};

void flood_retry(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    flood_start(t->data);
}

static void flood_start(flood_slot *s)
{
    flood *f = s->f;
    tl_conn_opts o = {.tls = f->cfg->tls,
                      .server_name = "localhost",
                      .handshake_timeout_ms = HS_TIMEOUT_MS,
                      .close_timeout_ms = CLOSE_TIMEOUT_MS,
                      .cbs = &flood_cbs,
                      .data = s};
    char err[256];
    s->hs_ok = false;
    s->c = tl_conn_connect(f->loop, (const struct sockaddr *)&f->cfg->addr, sizeof f->cfg->addr,
                           &o, err, sizeof err);
    if (!s->c) {
        f->connect_failed++;
        note(&f->printed, "flood", "%s", err);
        tl_timer_start(f->loop, &s->retry, RETRY_MS);
        return;
    }
    f->started++;
    f->live++;
}

/* Posted by main: abort everything in flight, then leave the loop once the last one closed. */
void flood_stop(tl_loop *loop, tl_work *w)
{
    flood *f = w->data;
    f->stopping = true;
    for (unsigned i = 0; i < f->cfg->flood; i++) {
        tl_timer_stop(loop, &f->slots[i].retry);
        if (f->slots[i].c)
            tl_conn_abort(f->slots[i].c);
    }
    if (f->live == 0)
        tl_loop_stop(loop);
}

void *flood_main(void *arg)
{
    flood *f = arg;
    /* Optional: yield CPU 1 to the steady client, so its own scheduling delay stays small. */
    if (f->cfg->flood_nice != 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), f->cfg->flood_nice) != 0)
        note(&f->printed, "flood", "setpriority: %s", strerror(errno));
    for (unsigned i = 0; i < f->cfg->flood; i++)
        flood_start(&f->slots[i]);
    if (tl_loop_run(f->loop) != 0)
        note(&f->printed, "flood", "loop failed: %s", tl_loop_error(f->loop));
    return NULL;
}
