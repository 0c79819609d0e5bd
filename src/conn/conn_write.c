/*
 * conn_write.c - writing: the write queue and its watermarks (on_drain), flushing it through the
 * type, and the close protocol that follows it out: close_notify, FIN, the graceful close.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conn/conn_int.h"

#define TL_CONN_DEFER_MAX (16u * 1024u)   /* larger writes go at once: bulk gains nothing */

/* ---- writing --------------------------------------------------------------------------------- */

/* Send what is held inside the type, then the write queue. No callbacks. Returns false after
 * ending the connection. */
static bool flush_output(tl_conn *c)
{
    tl_status st = c->type->flush(c);
    if (st == TL_ERROR) {
        tli_conn_fail(c, "send");
        return false;
    }
    if (st != TL_OK)
        return true;
    /* A turn's worth; with more queued, writable interest stays and the next iteration goes on. */
    size_t budget = TL_CONN_WRITE_BUDGET;
    while (tl_buf_len(&c->wq) > 0 && budget > 0) {
        size_t n = tl_buf_len(&c->wq) < budget ? tl_buf_len(&c->wq) : budget;
        tl_result r = c->type->write(c, tl_buf_rptr(&c->wq), n);
        budget -= r.consumed;
        tl_buf_consume(&c->wq, r.consumed);
        c->bytes_out += r.consumed;
        if (r.status == TL_OK)
            continue;
        if (r.status == TL_WANT_OUTPUT)
            break;
        if (r.status == TL_CLOSED) { /* TLS 1.2 peer closed: this data cannot go anywhere */
            tl_buf_free(&c->wq);
            break;
        }
        tli_conn_fail(c, "send");
        return false;
    }
    if (tl_buf_len(&c->wq) == 0)
        tl_buf_release(&c->wq);
    return true;
}

/* After the queue is out: close_notify, then FIN; ends a closing connection whose peer is done. */
static void send_shutdown(tl_conn *c)
{
    if (!c->shut_requested || tli_conn_queued(c) > 0)
        return;
    if (!c->notify_queued) {
        c->notify_queued = true;
        if (c->type->close_notify(c) == TL_ERROR) {
            tli_conn_fail(c, "send");
            return;
        }
        if (tli_conn_queued(c) > 0)
            return; /* close_notify waits for writability */
    }
    if (!c->fin_sent) {
        /* Nothing unread and nothing more coming (tl_conn_set_linger): close() sends the FIN,
         * and no lingering drain waits for the peer's close_notify. */
        if (c->state == ST_CLOSING && c->no_linger && !c->eof && c->rx_dry &&
            !c->type->input_buffered(c)) {
            tli_conn_finish(c, TL_END_LOCAL);
            return;
        }
        shutdown(c->fd, SHUT_WR);
        c->fin_sent = true;
    }
    if (c->eof) /* the peer is done too */
        tli_conn_finish(c, c->eof_how);
}

void tli_conn_do_flush(tl_conn *c)
{
    if (c->state != ST_OPEN && c->state != ST_CLOSING)
        return;
    if (!flush_output(c))
        return;
    if (c->above_high && tli_conn_queued(c) <= c->low) {
        c->above_high = false;
        if (c->state == ST_OPEN && c->cbs && c->cbs->on_drain)
            c->cbs->on_drain(c);
    }
    if (c->state == ST_OPEN || c->state == ST_CLOSING)
        send_shutdown(c);
}

/* Whether the connection still takes data from the application. */
static bool writable(const tl_conn *c)
{
    return c->state != ST_DEAD && c->state != ST_CLOSING && !c->shut_requested;
}

static int out_of_queue_memory(tl_conn *c)
{
    tli_conn_set_error(c, "out of memory for the write queue");
    tli_conn_finish(c, TL_END_LOCAL);
    return -1;
}

/* The high-water verdict of a write: 1 (and on_drain owed) above the mark, else 0. */
static int high_water(tl_conn *c)
{
    if (tli_conn_queued(c) > c->high) {
        c->above_high = true;
        return 1;
    }
    return 0;
}

/* The end of every write: interest, and the high-water verdict. */
static int after_write(tl_conn *c)
{
    tli_conn_update_interest(c);
    return high_water(c);
}

int tl_conn_write(tl_conn *c, const void *data, size_t len)
{
    if (!writable(c))
        return -1;
    if (len == 0)
        return c->above_high ? 1 : 0;
    size_t off = 0;
    /* Not after the peer's end: a TLS 1.2 peer's close_notify must make this write fail now. */
    if (c->defer_writes && c->state == ST_OPEN && !c->eof && len < TL_CONN_DEFER_MAX) {
        if (tl_buf_append(&c->wq, data, len) != 0)
            return out_of_queue_memory(c);
        tli_conn_schedule(c, ACT_FLUSH);   /* interest follows the flush, later in this iteration */
        return high_water(c);
    }
    /* Optimistic write: straight to the socket when nothing waits before it (a stream's sends
     * in flight keep their order: it takes bytes behind them). */
    if (c->state == ST_OPEN && tli_conn_unwritten(c) == 0) {
        tl_result r = c->type->write(c, data, len);
        off = r.consumed;
        c->bytes_out += r.consumed;
        if (r.status == TL_ERROR) {
            tli_conn_fail(c, "send");
            return -1;
        }
        if (r.status == TL_CLOSED)
            return -1;
    }
    if (off < len && tl_buf_append(&c->wq, (const uint8_t *)data + off, len - off) != 0)
        return out_of_queue_memory(c);
    return after_write(c);
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

/* Gathered into the queue, the pieces go out as few TLS records (or one send) together. */
static int queue_iov(tl_conn *c, const struct iovec *iov, int iovcnt, size_t total)
{
    if (tl_buf_reserve(&c->wq, total) != 0)
        return out_of_queue_memory(c);
    for (int i = 0; i < iovcnt; i++)
        tl_buf_append(&c->wq, iov[i].iov_base, iov[i].iov_len);
    return 0;
}

int tl_conn_writev(tl_conn *c, const struct iovec *iov, int iovcnt)
{
    if (!writable(c))
        return -1;
    if (queue_iov(c, iov, iovcnt, iov_total(iov, iovcnt)) != 0)
        return -1;
    if (c->state == ST_OPEN && !flush_output(c))
        return -1;
    return after_write(c);
}

/* What the kernel has of a stream's sends counts as sent, as a socket buffer's bytes do. */
size_t tl_conn_write_queued(const tl_conn *c) { return tli_conn_unwritten(c); }
void tl_conn_set_defer_writes(tl_conn *c, bool on) { c->defer_writes = on; }

/* ---- closing --------------------------------------------------------------------------------- */

/* A close asked for before the connection was up, with data written: now that it is, the data
 * goes and the close follows. Returns whether it closed. */
bool tli_conn_close_if_requested(tl_conn *c)
{
    if (!c->close_requested)
        return false;
    c->close_requested = false;
    tl_conn_close(c);
    return true;
}

/* Our data ends: what is queued goes out, then close_notify and FIN (send_shutdown). */
static void end_our_side(tl_conn *c)
{
    c->shut_requested = true;
    if (!flush_output(c))
        return;
    send_shutdown(c);
    if (c->state != ST_DEAD)
        tli_conn_update_interest(c);
}

void tl_conn_close(tl_conn *c)
{
    switch (c->state) {
    case ST_DEAD:
    case ST_CLOSING:
        return;
    case ST_TASK:
        c->close_requested = true;
        return;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        if (tl_buf_len(&c->wq) > 0) {
            /* Written before the connection was up: delivered once it is, then the close. */
            c->close_requested = true;
            return;
        }
        /* nothing to flush, no close_notify before the handshake */
        tli_conn_finish(c, TL_END_LOCAL);
        return;
    case ST_OPEN:
        break;
    }
    c->state = ST_CLOSING;
    c->close_ms = tli_conn_now_ms(c);
    tli_conn_arm_deadline(c);
    end_our_side(c);
}

static int writev_close(tl_conn *c, const struct iovec *iov, int iovcnt, size_t total)
{
    if (c->state != ST_OPEN || tli_conn_queued(c) > 0 || !c->type->write_close ||
        total > TL_CONN_WRITE_BUDGET) {
        int rc = tl_conn_writev(c, iov, iovcnt);
        tl_conn_close(c);
        return rc < 0 ? -1 : 0;
    }
    if (queue_iov(c, iov, iovcnt, total) != 0)
        return -1;
    tl_result r = c->type->write_close(c, tl_buf_rptr(&c->wq), total);
    tl_buf_consume(&c->wq, r.consumed);
    c->bytes_out += r.consumed;
    if (r.status == TL_ERROR) {
        tli_conn_fail(c, "send");
        return -1;
    }
    if (r.status == TL_CLOSED)   /* TLS 1.2 peer closed: this data cannot go anywhere */
        tl_buf_free(&c->wq);
    else if (r.consumed == total)
        c->notify_queued = true;   /* sent with the data, or pending right after it */
    if (tl_buf_len(&c->wq) == 0)
        tl_buf_release(&c->wq);
    tl_conn_close(c);   /* the rest of the queue, close_notify if not yet, FIN, lingering */
    return r.status == TL_CLOSED ? -1 : 0;
}

int tl_conn_writev_close(tl_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t total = iov_total(iov, iovcnt);
    c->last_send = true;   /* for the sends made before this returns: shutdown comes right after */
    int rc = writev_close(c, iov, iovcnt, total);
    c->last_send = false;
    return rc;
}

void tl_conn_set_linger(tl_conn *c, bool on) { c->no_linger = !on; }

void tl_conn_shutdown_write(tl_conn *c)
{
    if (c->state != ST_OPEN || c->shut_requested)
        return;
    end_our_side(c);
}

void tl_conn_abort(tl_conn *c)
{
    tli_conn_finish(c, TL_END_LOCAL);
}
