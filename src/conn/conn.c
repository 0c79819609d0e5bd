/*
 * conn.c - the core of a connection that the other conn*.c files build on: ending it (finish,
 * fail, the posted on_close), event interest, the one timer armed for the nearest deadline, the
 * owner's handshake hook, and the getters.
 *
 * Callbacks run only from the loop (a watcher, a timer or a post), never from inside an API call:
 * an API call that ends a connection closes the socket at once and posts on_close. The
 * connection is freed after on_close, in that post, so a callback may end any connection and the
 * code that called it only has to check c->state afterwards.
 */
#include <string.h>
#include <unistd.h>

#include "conn/conn_int.h"

/* The first reason sticks. Allocated only on failure: idle connections stay small. */
void tli_conn_set_error(tl_conn *c, const char *msg)
{
    if (!c->err)
        c->err = strdup(msg);
}

/* ---- ending ---------------------------------------------------------------------------------- */

/* The owner hears how a TLS handshake ended exactly once, and before the application does. */
void tli_conn_owner_handshake(tl_conn *c, bool ok)
{
    if (c->hs_told || !c->engine)
        return;
    c->hs_told = true;
    if (c->owner && c->owner->on_handshake)
        c->owner->on_handshake(c, ok, c->owner_data);
}

/* The handshake failed and the connection is dead: the owner learns, then the application. */
void tli_conn_report_handshake_failure(tl_conn *c)
{
    tli_conn_owner_handshake(c, false);
    if (c->cbs && c->cbs->on_handshake)
        c->cbs->on_handshake(c, false);
}

void tli_conn_schedule(tl_conn *c, unsigned act)
{
    c->actions |= act;
    if (c->posted)
        return;
    c->posted = true;
    tl_loop_post(c->loop, &c->post);   /* runs on_post (conn_events.c), set by conn_new */
}

/* Close the socket now; on_close follows from the loop. While a task owns the engine, only note
 * it: the task's completion finishes. */
void tli_conn_finish(tl_conn *c, tl_conn_end end)
{
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_TASK) {
        if (!c->abort_requested) {
            c->abort_requested = true;
            c->pending_end = end;
        }
        return;
    }
    if (c->end == TL_END_NONE)
        c->end = end;
    tl_timer_stop(c->loop, &c->timer);
    if (c->fd_private)
        tl_io_stop_closing(c->loop, &c->io);
    else
        tl_io_stop(c->loop, &c->io);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
    tli_conn_schedule(c, ACT_CLOSE);
}

/* A failure of the socket or of TLS: record why, push out a pending alert, end. */
void tli_conn_fail(tl_conn *c, const char *what)
{
    tl_conn_end end = TL_END_RESET;
    if (c->engine && tl_engine_error_kind(c->engine) != TL_ERR_IO &&
        tl_engine_error(c->engine)[0]) {
        tli_conn_set_error(c, tl_engine_error(c->engine));
        end = TL_END_TLS_ERROR;
        c->type->flush(c); /* best effort: the peer learns why from the alert */
    } else {
        char msg[CONN_MSG_MAX];
        tli_fmt(msg, sizeof msg, "%s: %s", what,
                c->sock_errno ? strerror(c->sock_errno) : "connection failed");
        tli_conn_set_error(c, msg);
    }
    tli_conn_finish(c, end);
}

/* ---- interest -------------------------------------------------------------------------------- */

void tli_conn_update_interest(tl_conn *c)
{
    unsigned want = 0;
    switch (c->state) {
    case ST_CONNECTING:
        want = TL_WRITABLE;
        break;
    case ST_HANDSHAKE: {
        tl_hs_status hs = tl_engine_handshake_status(c->engine);
        if (hs == TL_HS_NEED_WRAP)
            want |= TL_WRITABLE;
        if (hs == TL_HS_NEED_UNWRAP)
            want |= TL_READABLE;
        break;
    }
    case ST_OPEN:
        if (!c->read_paused && !c->eof)
            want |= TL_READABLE;
        if (tli_conn_queued(c) > 0)
            want |= TL_WRITABLE;
        break;
    case ST_CLOSING:
        if (!c->eof)
            want |= TL_READABLE; /* the lingering drain */
        if (tli_conn_queued(c) > 0)
            want |= TL_WRITABLE;
        break;
    case ST_TASK:
    case ST_DEAD:
        break;
    }
    tl_io_set(c->loop, &c->io, want);
    /* Output began to wait: the send-stall deadline joins the timer (once; it re-checks). */
    if ((want & TL_WRITABLE) && c->stall_timeout_ms && !c->stall_armed &&
        (c->state == ST_OPEN || c->state == ST_CLOSING))
        tli_conn_arm_deadline(c);
}

/* ---- deadlines ------------------------------------------------------------------------------- */

/* Arm the one timer for the nearest deadline of an open or closing connection: idle (open),
 * close (closing), send stall (output waiting). Reads and writes only move marks; when the timer
 * fires for a deadline that has moved on, on_timer arms it again for what is left, so a busy
 * connection touches the timer heap once per timeout period, not once per read. */
void tli_conn_arm_deadline(tl_conn *c)
{
    uint32_t now = tli_conn_now_ms(c), next = UINT32_MAX;
    bool any = false;
    if (c->state == ST_CLOSING) {
        next = tli_conn_left(now, c->close_ms, c->close_timeout_ms);
        any = true;
    }
    if (c->state == ST_OPEN && c->idle_timeout_ms) {
        uint32_t idle = tli_conn_left(now, c->active_ms, c->idle_timeout_ms);
        next = idle < next ? idle : next;
        any = true;
    }
    c->stall_armed = tli_conn_stall_applies(c);
    if (c->stall_armed) {
        if (!c->send_blocked)
            c->send_ms = now; /* nothing refused yet: any wait starts now */
        uint32_t stall = tli_conn_left(now, c->send_ms, c->stall_timeout_ms);
        next = stall < next ? stall : next;
        any = true;
    }
    if (any)
        tl_timer_start(c->loop, &c->timer, next);
    else
        tl_timer_stop(c->loop, &c->timer);
}

/* ---- facts ----------------------------------------------------------------------------------- */

int tl_conn_fd(const tl_conn *c) { return c->fd; }
void *tl_conn_data(const tl_conn *c) { return c->data; }
void *tl_conn_owner_data(const tl_conn *c) { return c->owner_data; }
const tl_conn_owner *tl_conn_get_owner(const tl_conn *c) { return c->owner; }
void tl_conn_set_data(tl_conn *c, void *data) { c->data = data; }
tl_loop *tl_conn_loop(const tl_conn *c) { return c->loop; }
bool tl_conn_is_tls(const tl_conn *c) { return c->engine != NULL; }
tl_engine *tl_conn_engine(tl_conn *c) { return c->engine; }
const char *tl_conn_error(const tl_conn *c) { return c->err ? c->err : ""; }

void tl_conn_get_stats(const tl_conn *c, tl_conn_stats *out)
{
    out->bytes_in = c->bytes_in;
    out->bytes_out = c->bytes_out;
    out->handshake_ns = c->hs_ns;
    out->handshake_cpu_ns = c->hs_cpu_ns;
}

const char *tl_conn_end_name(tl_conn_end how)
{
    switch (how) {
    case TL_END_NONE: return "open";
    case TL_END_CLEAN: return "clean";
    case TL_END_TRUNCATED: return "truncated";
    case TL_END_RESET: return "reset";
    case TL_END_TIMEOUT: return "timeout";
    case TL_END_TLS_ERROR: return "tls-error";
    case TL_END_LOCAL: return "local";
    }
    return "unknown";
}
