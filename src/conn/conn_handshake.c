/*
 * conn_handshake.c - driving the TLS handshake: its steps on the loop or, delegated, on the pool,
 * their CPU time, and what follows its end (the owner, then the application, then queued data).
 */
#include <time.h>

#include "conn/conn_int.h"

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A handshake step on the loop never waits (its I/O does not block), so its wall time is its
 * CPU time up to preemption; the monotonic clock is read in user space (vDSO), where the thread
 * CPU clock is a system call: two per step, four per TLS 1.2 resumption, saved. */
static uint64_t step_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- handshake ----------------------------------------------------------------------------- */

static void handshake_done(tl_conn *c)
{
    c->hs_ns = tl_loop_now_ns(c->loop) - c->hs_start_ns;
    c->state = ST_OPEN;
    c->active_ms = tli_conn_now_ms(c);
    tli_conn_arm_deadline(c); /* the handshake deadline gives way to idle and send stall */
    tli_conn_owner_handshake(c, true);
    /* An owner that ended the connection already: the application has nothing to start. */
    if (c->state == ST_OPEN && c->cbs && c->cbs->on_handshake)
        c->cbs->on_handshake(c, true);
    if (c->state != ST_OPEN)
        return;
    if (tli_conn_close_if_requested(c))
        return;
    /* Data that came with the peer's last flight is inside already: read first, so that an
     * answer takes a held last flight (our tickets) along in its send; then whatever is still
     * queued (the held flight when no answer came, data written during the handshake). */
    tli_conn_do_read(c);
    tli_conn_do_flush(c);
}

static void handshake_failed(tl_conn *c, tl_status st)
{
    if (st == TL_CLOSED || st == TL_TRUNCATED) {
        /* The peer went away mid-handshake: how it ended, not a TLS error. */
        tli_conn_set_error(c, st == TL_CLOSED ? "the peer closed during the handshake"
                                     : "the connection ended during the handshake");
        tli_conn_finish(c, st == TL_CLOSED ? TL_END_CLEAN : TL_END_TRUNCATED);
    } else {
        tli_conn_fail(c, "handshake");
    }
    tli_conn_report_handshake_failure(c);
}

static void task_run(tl_work *w)
{
    tl_conn *c = w->data;
    uint64_t t0 = thread_cpu_ns();
    tl_engine_run_task(c->engine);
    c->task_cpu_ns = thread_cpu_ns() - t0;
}

/* A task (or a session lookup) gave the engine back: go on, or end as asked meanwhile. */
static void after_task(tl_conn *c)
{
    c->state = ST_HANDSHAKE;
    if (c->abort_requested) {
        tli_conn_finish(c, c->pending_end);
        if (c->pending_end == TL_END_TIMEOUT) /* the deadline passed while the task ran */
            tli_conn_report_handshake_failure(c);
        return;
    }
    if (c->close_requested && tl_buf_len(&c->wq) == 0) {
        tli_conn_finish(c, TL_END_LOCAL);   /* nothing written to deliver: no reason to go on */
        return;
    }
    tli_conn_do_handshake(c);
    if (c->state != ST_DEAD)
        tli_conn_update_interest(c);
}

static void task_done(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tl_conn *c = w->data;
    c->hs_cpu_ns += c->task_cpu_ns;
    after_task(c);
}

int tl_conn_session_found(tl_conn *c, const void *der, size_t len)
{
    if (!c->lookup_pending)
        return -1;
    c->lookup_pending = false;
    int rc = tl_engine_session_found(c->engine, der, len);
    after_task(c);
    return rc;
}

void tli_conn_do_handshake(tl_conn *c)
{
    for (;;) {
        uint64_t t0 = step_ns();
        tl_status st = c->type->handshake(c);
        c->hs_cpu_ns += step_ns() - t0;
        const uint8_t *id;
        size_t id_len;
        if (st == TL_NEED_TASK && tl_engine_session_lookup(c->engine, &id, &id_len)) {
            if (c->owner && c->owner->session_lookup) {
                c->state = ST_TASK;            /* no I/O until the owner answers */
                c->lookup_pending = true;
                tl_io_set(c->loop, &c->io, 0);
                if (c->owner->session_lookup(c, id, id_len, c->owner_data))
                    return;
                c->lookup_pending = false;
                c->state = ST_HANDSHAKE;
            }
            tl_engine_session_found(c->engine, NULL, 0);
            continue;
        }
        if (st == TL_NEED_TASK) {
            if (c->pool) {
                c->state = ST_TASK;
                c->task = (tl_work){.run = task_run, .done = task_done, .data = c};
                tl_io_set(c->loop, &c->io, 0);
                tl_pool_submit(c->pool, c->loop, &c->task);
                return;
            }
            t0 = step_ns();
            tl_engine_run_task(c->engine);
            c->hs_cpu_ns += step_ns() - t0;
            continue;
        }
        if (tl_engine_handshake_done(c->engine)) {
            handshake_done(c);
            return;
        }
        if (st == TL_ERROR || st == TL_TRUNCATED || st == TL_CLOSED)
            handshake_failed(c, st);
        return;
    }
}
