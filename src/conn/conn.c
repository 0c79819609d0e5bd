/*
 * conn.c - connections: states, event interest, reading with a fairness budget, the write queue
 * and its watermarks, the TLS handshake (with delegated steps), the close protocol, the deadlines
 * (one timer for the nearest), the KeyUpdate rate cap, and the owner's hooks.
 *
 * Callbacks run only from the loop (a watcher, a timer or a post), never from inside an API call:
 * an API call that ends a connection closes the socket at once and posts on_close. The
 * connection is freed after on_close, in that post, so a callback may end any connection and the
 * code that called it only has to check c->state afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn/conn_int.h"

#define DEFAULT_HS_TIMEOUT_MS 10000
#define DEFAULT_CLOSE_TIMEOUT_MS 5000
#define DEFAULT_WRITE_HIGH (256u * 1024u)
#define DEFAULT_KEY_UPDATE_LIMIT 100
#define KEY_UPDATE_WINDOW_MS 1000

static void update_interest(tl_conn *c);
static void do_read(tl_conn *c);
static void do_flush(tl_conn *c);
static void do_handshake(tl_conn *c);
static void arm_deadline(tl_conn *c);

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

static size_t queued(const tl_conn *c)
{
    return tl_buf_len(&c->wq) + c->type->pending_output(c);
}

#define MSG_MAX 256
#define TL_CONN_DEFER_MAX (16u * 1024u)   /* larger writes go at once: bulk gains nothing */

static uint32_t now_ms(const tl_conn *c) { return (uint32_t)tl_loop_now(c->loop); }

/* The first reason sticks. Allocated only on failure: idle connections stay small. */
static void set_error(tl_conn *c, const char *msg)
{
    if (!c->err)
        c->err = strdup(msg);
}

/* ---- ending ---------------------------------------------------------------------------- */

static void on_post(tl_loop *loop, tl_work *w);

/* The owner hears how a TLS handshake ended exactly once, and before the application does. */
static void owner_handshake(tl_conn *c, bool ok)
{
    if (c->hs_told || !c->engine)
        return;
    c->hs_told = true;
    if (c->owner && c->owner->on_handshake)
        c->owner->on_handshake(c, ok, c->owner_data);
}

/* The handshake failed and the connection is dead: the owner learns, then the application. */
static void report_handshake_failure(tl_conn *c)
{
    owner_handshake(c, false);
    if (c->cbs && c->cbs->on_handshake)
        c->cbs->on_handshake(c, false);
}

static void schedule(tl_conn *c, unsigned act)
{
    c->actions |= act;
    if (c->posted)
        return;
    c->posted = true;
    c->post.done = on_post;
    c->post.data = c;
    tl_loop_post(c->loop, &c->post);
}

/* Close the socket now; on_close follows from the loop. While a task owns the engine, only note
 * it: the task's completion finishes. */
static void finish(tl_conn *c, tl_conn_end end)
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
    schedule(c, ACT_CLOSE);
}

/* A failure of the socket or of TLS: record why, push out a pending alert, end. */
static void fail(tl_conn *c, const char *what)
{
    tl_conn_end end = TL_END_RESET;
    if (c->engine && tl_engine_error_kind(c->engine) != TL_ERR_IO &&
        tl_engine_error(c->engine)[0]) {
        set_error(c, tl_engine_error(c->engine));
        end = TL_END_TLS_ERROR;
        c->type->flush(c); /* best effort: the peer learns why from the alert */
    } else {
        char msg[MSG_MAX];
        tli_fmt(msg, sizeof msg, "%s: %s", what,
                c->sock_errno ? strerror(c->sock_errno) : "connection failed");
        set_error(c, msg);
    }
    finish(c, end);
}

static void on_post(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tl_conn *c = w->data;
    c->posted = false;
    unsigned acts = c->actions;
    c->actions = 0;
    if (acts & ACT_CLOSE) {
        owner_handshake(c, false); /* TLS that ended before its handshake did, however it ended */
        if (c->cbs && c->cbs->on_close)
            c->cbs->on_close(c, c->end);
        if (c->owner && c->owner->on_close)
            c->owner->on_close(c, c->end, c->owner_data);
        c->type->destroy(c);
        tl_buf_free(&c->wq);
        free(c->err);
        free(c);
        return;
    }
    if ((acts & ACT_HANDSHAKE) && c->state == ST_HANDSHAKE) {
        do_handshake(c);
        if (c->state != ST_DEAD)
            update_interest(c);
    }
    if ((acts & ACT_FLUSH) && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        do_flush(c);
        if (c->state != ST_DEAD)
            update_interest(c);
    }
    if ((acts & ACT_READ) && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        do_read(c);
        if (c->state != ST_DEAD)
            update_interest(c);
    }
}

/* ---- interest ------------------------------------------------------------------------------ */

static void update_interest(tl_conn *c)
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
        if (queued(c) > 0)
            want |= TL_WRITABLE;
        break;
    case ST_CLOSING:
        if (!c->eof)
            want |= TL_READABLE; /* the lingering drain */
        if (queued(c) > 0)
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
        arm_deadline(c);
}

/* ---- reading ------------------------------------------------------------------------------- */

static void maybe_release(tl_conn *c)
{
    if (queued(c) == 0) {
        tl_buf_release(&c->wq);
        c->type->release(c);
    }
}

static void peer_eof(tl_conn *c, tl_conn_end how)
{
    c->eof = true;
    c->eof_how = how;
    if (c->state == ST_OPEN) {
        if (c->cbs && c->cbs->on_eof)
            c->cbs->on_eof(c, how);
        /* Answer with our close_notify, unless the application still writes (half-close); when
         * our side was already shut, both are done. */
        if (c->state == ST_OPEN && (!c->half_close || c->fin_sent))
            tl_conn_close(c);
    }
    if ((c->state == ST_CLOSING || c->state == ST_OPEN) && c->fin_sent)
        finish(c, how);
}

/* The peer's KeyUpdates, counted in one-second windows, each opening with the first KeyUpdate
 * after the last one closed. Each costs us key derivations and maybe an answer: a peer sending
 * them by the hundred per second is spending our CPU on purpose (pitfall 26). */
static bool key_updates_ok(tl_conn *c, uint32_t count)
{
    uint32_t now = now_ms(c);
    if (now - c->ku_window_ms >= KEY_UPDATE_WINDOW_MS) {
        c->ku_window_ms = now;
        c->ku_base = c->ku_seen; /* the new ones count in the new window */
    }
    c->ku_seen = count;
    if (count - c->ku_base <= c->ku_limit)
        return true;
    set_error(c, "peer sent too many KeyUpdates");
    finish(c, TL_END_TLS_ERROR);
    return false;
}

static void do_read(tl_conn *c)
{
    uint8_t *buf = tli_conn_scratch();
    size_t budget = TL_CONN_READ_BUDGET;
    for (;;) {
        bool deliver = c->state == ST_OPEN;
        if (!deliver && c->state != ST_CLOSING)
            return;
        if (c->eof || (deliver && c->read_paused))
            return;
        if (budget == 0) {
            schedule(c, ACT_READ); /* our turn is over; data TLS holds comes next iteration */
            return;
        }
        size_t want = budget < c->read_chunk ? budget : c->read_chunk;
        tl_result r = c->type->read(c, buf, want);
        uint32_t key_updates = c->type->key_updates(c);
        if (key_updates != c->ku_seen && !key_updates_ok(c, key_updates))
            return; /* dropped: what this read produced goes nowhere */
        budget -= r.produced < budget ? r.produced : budget;
        if (r.produced > 0 && !deliver)
            c->no_linger = false;   /* the peer goes on sending after all: let it finish */
        if (r.produced > 0 && deliver) {
            c->bytes_in += r.produced;
            if (c->cbs && c->cbs->on_read)
                c->cbs->on_read(c, buf, r.produced);
        }
        switch (r.status) {
        case TL_OK:
            continue;
        case TL_WANT_INPUT:
            maybe_release(c);
            return;
        case TL_WANT_OUTPUT:
            return; /* output first; interest says so */
        case TL_CLOSED:
            peer_eof(c, TL_END_CLEAN);
            return;
        case TL_TRUNCATED:
            peer_eof(c, TL_END_TRUNCATED);
            return;
        default:
            if (c->state != ST_DEAD)
                fail(c, "recv");
            return;
        }
    }
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Send what is held inside the type, then the write queue. No callbacks. Returns false after
 * ending the connection. */
static bool flush_output(tl_conn *c)
{
    tl_status st = c->type->flush(c);
    if (st == TL_ERROR) {
        fail(c, "send");
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
        fail(c, "send");
        return false;
    }
    if (tl_buf_len(&c->wq) == 0)
        tl_buf_release(&c->wq);
    return true;
}

/* After the queue is out: close_notify, then FIN; ends a closing connection whose peer is done. */
static void send_shutdown(tl_conn *c)
{
    if (!c->shut_requested || queued(c) > 0)
        return;
    if (!c->notify_queued) {
        c->notify_queued = true;
        if (c->type->close_notify(c) == TL_ERROR) {
            fail(c, "send");
            return;
        }
        if (queued(c) > 0)
            return; /* close_notify waits for writability */
    }
    if (!c->fin_sent) {
        /* Nothing unread and nothing more coming (tl_conn_set_linger): close() sends the FIN,
         * and no lingering drain waits for the peer's close_notify. */
        if (c->state == ST_CLOSING && c->no_linger && !c->eof && c->rx_dry &&
            !c->type->input_buffered(c)) {
            finish(c, TL_END_LOCAL);
            return;
        }
        shutdown(c->fd, SHUT_WR);
        c->fin_sent = true;
    }
    if (c->eof) /* the peer is done too */
        finish(c, c->eof_how);
}

static void do_flush(tl_conn *c)
{
    if (c->state != ST_OPEN && c->state != ST_CLOSING)
        return;
    if (!flush_output(c))
        return;
    if (c->above_high && queued(c) <= c->low) {
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
    set_error(c, "out of memory for the write queue");
    finish(c, TL_END_LOCAL);
    return -1;
}

/* The high-water verdict of a write: 1 (and on_drain owed) above the mark, else 0. */
static int high_water(tl_conn *c)
{
    if (queued(c) > c->high) {
        c->above_high = true;
        return 1;
    }
    return 0;
}

/* The end of every write: interest, and the high-water verdict. */
static int after_write(tl_conn *c)
{
    update_interest(c);
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
        schedule(c, ACT_FLUSH);   /* interest follows the flush, later in this iteration */
        return high_water(c);
    }
    /* Optimistic write: straight to the socket when nothing waits before it. */
    if (c->state == ST_OPEN && queued(c) == 0) {
        tl_result r = c->type->write(c, data, len);
        off = r.consumed;
        c->bytes_out += r.consumed;
        if (r.status == TL_ERROR) {
            fail(c, "send");
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

size_t tl_conn_write_queued(const tl_conn *c) { return queued(c); }

/* ---- handshake ----------------------------------------------------------------------------- */

/* A close asked for before the connection was up, with data written: now that it is, the data
 * goes and the close follows. Returns whether it closed. */
static bool close_if_requested(tl_conn *c)
{
    if (!c->close_requested)
        return false;
    c->close_requested = false;
    tl_conn_close(c);
    return true;
}

static void handshake_done(tl_conn *c)
{
    c->hs_ns = tl_loop_now_ns(c->loop) - c->hs_start_ns;
    c->state = ST_OPEN;
    c->active_ms = now_ms(c);
    arm_deadline(c); /* the handshake deadline gives way to idle and send stall */
    owner_handshake(c, true);
    /* An owner that ended the connection already: the application has nothing to start. */
    if (c->state == ST_OPEN && c->cbs && c->cbs->on_handshake)
        c->cbs->on_handshake(c, true);
    if (c->state != ST_OPEN)
        return;
    if (close_if_requested(c))
        return;
    /* Data that came with the peer's last flight is inside already: read first, so that an
     * answer takes a held last flight (our tickets) along in its send; then whatever is still
     * queued (the held flight when no answer came, data written during the handshake). */
    do_read(c);
    do_flush(c);
}

static void handshake_failed(tl_conn *c, tl_status st)
{
    if (st == TL_CLOSED || st == TL_TRUNCATED) {
        /* The peer went away mid-handshake: how it ended, not a TLS error. */
        set_error(c, st == TL_CLOSED ? "the peer closed during the handshake"
                                     : "the connection ended during the handshake");
        finish(c, st == TL_CLOSED ? TL_END_CLEAN : TL_END_TRUNCATED);
    } else {
        fail(c, "handshake");
    }
    report_handshake_failure(c);
}

static void task_run(tl_work *w)
{
    tl_conn *c = w->data;
    uint64_t t0 = thread_cpu_ns();
    tl_engine_run_task(c->engine);
    c->task_cpu_ns = thread_cpu_ns() - t0;
}

static void task_done(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tl_conn *c = w->data;
    c->hs_cpu_ns += c->task_cpu_ns;
    c->state = ST_HANDSHAKE;
    if (c->abort_requested) {
        finish(c, c->pending_end);
        if (c->pending_end == TL_END_TIMEOUT) /* the deadline passed while the task ran */
            report_handshake_failure(c);
        return;
    }
    if (c->close_requested && tl_buf_len(&c->wq) == 0) {
        finish(c, TL_END_LOCAL);   /* nothing written to deliver: no reason to go on */
        return;
    }
    do_handshake(c);
    if (c->state != ST_DEAD)
        update_interest(c);
}

static void do_handshake(tl_conn *c)
{
    for (;;) {
        uint64_t t0 = step_ns();
        tl_status st = c->type->handshake(c);
        c->hs_cpu_ns += step_ns() - t0;
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

/* ---- events -------------------------------------------------------------------------------- */

static void start_tls(tl_conn *c)
{
    c->state = ST_HANDSHAKE;
    c->hs_start_ns = tl_loop_now_ns(c->loop);
}

static void connected(tl_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        c->sock_errno = err;
        char msg[MSG_MAX];
        tli_fmt(msg, sizeof msg, "connect: %s", strerror(err));
        set_error(c, msg);
        finish(c, TL_END_RESET);
        if (c->cbs && c->cbs->on_connect)
            c->cbs->on_connect(c, false);
        return;
    }
    if (c->cbs && c->cbs->on_connect)
        c->cbs->on_connect(c, true);
    if (c->state != ST_CONNECTING)
        return;
    if (c->engine) {
        start_tls(c);
        do_handshake(c);
    } else {
        c->state = ST_OPEN;
        c->active_ms = now_ms(c);
        arm_deadline(c);
        if (!close_if_requested(c))
            do_flush(c);
    }
}

static void on_io(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    tl_conn *c = io->data;
    if (events & (TL_READABLE | TL_HANGUP))
        c->rx_dry = false;   /* the kernel says there is something to read again */
    switch (c->state) {
    case ST_CONNECTING:
        connected(c);
        break;
    case ST_HANDSHAKE:
        do_handshake(c);
        break;
    case ST_OPEN:
    case ST_CLOSING:
        if (events & (TL_WRITABLE | TL_HANGUP))
            do_flush(c);
        if (events & (TL_READABLE | TL_HANGUP))
            do_read(c);
        break;
    case ST_TASK:
    case ST_DEAD:
        break;
    }
    if (c->state != ST_DEAD)
        update_interest(c);
}

/* ---- deadlines ---------------------------------------------------------------------------- */

/* Milliseconds left until `limit` has passed since `mark`; 0 once it has. */
static uint32_t left(uint32_t now, uint32_t mark, uint32_t limit)
{
    uint32_t spent = now - mark;
    return spent >= limit ? 0 : limit - spent;
}

/* The send-stall deadline is on, and output waits. */
static bool stall_applies(const tl_conn *c)
{
    return c->stall_timeout_ms && queued(c) > 0;
}

/* Arm the one timer for the nearest deadline of an open or closing connection: idle (open),
 * close (closing), send stall (output waiting). Reads and writes only move marks; when the timer
 * fires for a deadline that has moved on, on_timer arms it again for what is left, so a busy
 * connection touches the timer heap once per timeout period, not once per read. */
static void arm_deadline(tl_conn *c)
{
    uint32_t now = now_ms(c), next = UINT32_MAX;
    bool any = false;
    if (c->state == ST_CLOSING) {
        next = left(now, c->close_ms, c->close_timeout_ms);
        any = true;
    }
    if (c->state == ST_OPEN && c->idle_timeout_ms) {
        uint32_t idle = left(now, c->active_ms, c->idle_timeout_ms);
        next = idle < next ? idle : next;
        any = true;
    }
    c->stall_armed = stall_applies(c);
    if (c->stall_armed) {
        if (!c->send_blocked)
            c->send_ms = now; /* nothing refused yet: any wait starts now */
        uint32_t stall = left(now, c->send_ms, c->stall_timeout_ms);
        next = stall < next ? stall : next;
        any = true;
    }
    if (any)
        tl_timer_start(c->loop, &c->timer, next);
    else
        tl_timer_stop(c->loop, &c->timer);
}

static void on_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    tl_conn *c = t->data;
    char msg[MSG_MAX];
    uint32_t now = now_ms(c);
    switch (c->state) {
    case ST_CONNECTING:
    case ST_HANDSHAKE:
    case ST_TASK:
        tli_fmt(msg, sizeof msg, "%s did not complete within %u ms",
                c->state == ST_CONNECTING ? "connect" : "TLS handshake", c->hs_timeout_ms);
        set_error(c, msg);
        finish(c, TL_END_TIMEOUT);
        if (c->state == ST_DEAD && c->engine) /* (a task running: its completion reports) */
            report_handshake_failure(c);
        break;
    case ST_OPEN:
    case ST_CLOSING: {
        /* Only a refusal counts: output can also wait because our write budget ended a turn. If
         * the last send was complete but output still waits a whole period, the socket never said
         * writable since: ask it now, and a send that moves nothing is the refusal. */
        bool stalled = false;
        if (stall_applies(c) && left(now, c->send_ms, c->stall_timeout_ms) == 0) {
            if (c->send_blocked) {
                stalled = true;
            } else {
                size_t before = queued(c);
                do_flush(c);
                if (c->state == ST_DEAD)
                    break;
                update_interest(c);
                stalled = c->send_blocked && queued(c) == before;
            }
        }
        if (stalled) {
            /* The peer must not hold the connection and its buffers forever. Aborted: a close
             * would only wait on the same peer. */
            set_error(c, "send stalled: the peer stopped reading");
            finish(c, TL_END_TIMEOUT);
            break;
        }
        if (c->state == ST_CLOSING && left(now, c->close_ms, c->close_timeout_ms) == 0) {
            /* Everything sent and the peer silent: we end it. Not even sent: the peer stalled. */
            tli_fmt(msg, sizeof msg, "close: %s within %u ms",
                    queued(c) ? "the peer did not take the last data" : "no answer from the peer",
                    c->close_timeout_ms);
            set_error(c, msg);
            finish(c, queued(c) ? TL_END_TIMEOUT : TL_END_LOCAL);
            break;
        }
        if (c->state == ST_OPEN && c->idle_timeout_ms &&
            left(now, c->active_ms, c->idle_timeout_ms) == 0) {
            set_error(c, "idle timeout");
            c->end = TL_END_TIMEOUT; /* the reason, whatever the graceful close meets later */
            tl_conn_close(c);
            break;
        }
        arm_deadline(c); /* early for a deadline that moved on: re-arm for what is left */
        break;
    }
    case ST_DEAD:
        break;
    }
}

/* ---- making connections -------------------------------------------------------------------- */

static ssize_t tp_recv(void *arg, void *buf, size_t len) { return tli_conn_recv(arg, buf, len); }
static ssize_t tp_send(void *arg, const void *buf, size_t len)
{
    return tli_conn_send(arg, buf, len);
}

static tl_conn *conn_new(tl_loop *loop, int fd, const tl_conn_opts *o, tl_role role)
{
    tl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->fd = fd;
    c->cbs = o->cbs;
    c->data = o->data;
    c->owner = o->owner;
    c->owner_data = o->owner_data;
    c->half_close = o->half_close;
    c->pool = o->pool;
    c->hs_timeout_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : DEFAULT_HS_TIMEOUT_MS;
    c->close_timeout_ms = o->close_timeout_ms ? o->close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS;
    c->idle_timeout_ms = o->idle_timeout_ms;
    c->stall_timeout_ms = o->send_stall_timeout_ms;
    c->ku_limit = o->key_update_limit ? o->key_update_limit : DEFAULT_KEY_UPDATE_LIMIT;
    c->active_ms = c->send_ms = now_ms(c);
    c->ku_window_ms = c->active_ms - KEY_UPDATE_WINDOW_MS; /* closed: the first one opens one */
    c->high = o->write_high ? o->write_high : DEFAULT_WRITE_HIGH;
    c->low = o->write_low ? o->write_low : c->high / 4;
    c->read_chunk = o->read_chunk && o->read_chunk < TL_CONN_READ_CHUNK ? o->read_chunk
                                                                        : TL_CONN_READ_CHUNK;
    c->type = &tli_conn_tcp;
    tl_io_init(&c->io, fd, on_io, c);
    tl_timer_init(&c->timer, on_timer, c);
    if (o->tls) {
        c->tp = (tl_transport){tp_recv, tp_send, c};
        tl_engine_opts eo = {.server_name = role == TL_ROLE_CLIENT ? o->server_name : NULL,
                             .transport = &c->tp,
                             .flags = (o->pool ? TL_ENGINE_DELEGATE_TASKS : 0) |
                                      TL_ENGINE_HOLD_LAST_FLIGHT,   /* handshake_done flushes */
                             .session = role == TL_ROLE_CLIENT ? o->session : NULL};
        c->engine = tl_engine_new(o->tls, &eo);
        if (!c->engine) {
            free(c);
            return NULL;
        }
        c->type = &tli_conn_tls;
    }
    c->fd_private = o->fd_private;
    int one = 1;
    if (!o->fd_nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly off TCP */
    return c;
}

tl_conn *tl_conn_accept(tl_loop *loop, int fd, const tl_conn_opts *opts)
{
    int flags = opts->fd_nonblocking ? O_NONBLOCK : fcntl(fd, F_GETFL);
    if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)) {
        close(fd);
        return NULL;
    }
    tl_conn *c = conn_new(loop, fd, opts, TL_ROLE_SERVER);
    if (!c) {
        close(fd);
        return NULL;
    }
    if (c->engine) {
        start_tls(c);
        tl_timer_start(loop, &c->timer, c->hs_timeout_ms);
        schedule(c, ACT_HANDSHAKE);
    } else {
        c->state = ST_OPEN;
        arm_deadline(c); /* idle counts from the accept */
    }
    update_interest(c);
    return c;
}

tl_conn *tl_conn_connect(tl_loop *loop, const struct sockaddr *addr, socklen_t addrlen,
                         const tl_conn_opts *opts, char *errbuf, size_t errlen)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tli_fmt(errbuf, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    if (opts->local_addr) {
        /* The port is picked at connect time, for the 4-tuple: many sources, few ports each. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, opts->local_addr, opts->local_addrlen) != 0) {
            tli_fmt(errbuf, errlen, "bind to the source address: %s", strerror(errno));
            close(fd);
            return NULL;
        }
    }
    if (connect(fd, addr, addrlen) != 0 && errno != EINPROGRESS) {
        tli_fmt(errbuf, errlen, "connect: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    tl_conn *c = conn_new(loop, fd, opts, TL_ROLE_CLIENT);
    if (!c) {
        tli_fmt(errbuf, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    /* Connected or not, the first writable event tells, from the loop. */
    c->state = ST_CONNECTING;
    tl_timer_start(loop, &c->timer, c->hs_timeout_ms);
    update_interest(c);
    return c;
}

/* ---- control ------------------------------------------------------------------------------- */

/* Our data ends: what is queued goes out, then close_notify and FIN (send_shutdown). */
static void end_our_side(tl_conn *c)
{
    c->shut_requested = true;
    if (!flush_output(c))
        return;
    send_shutdown(c);
    if (c->state != ST_DEAD)
        update_interest(c);
}

void tl_conn_pause_read(tl_conn *c)
{
    c->read_paused = true;
    /* No readiness events while paused: whether the socket is empty is unknown from now on
     * (a close without linger must not trust an old short read). */
    c->rx_dry = false;
    if (c->state != ST_DEAD)
        update_interest(c);
}

void tl_conn_resume_read(tl_conn *c)
{
    if (!c->read_paused)
        return;
    c->read_paused = false;
    if (c->state == ST_DEAD)
        return;
    update_interest(c);
    schedule(c, ACT_READ); /* what TLS already decrypted gets no socket event (pitfall 1) */
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
        finish(c, TL_END_LOCAL);   /* nothing to flush, no close_notify before the handshake */
        return;
    case ST_OPEN:
        break;
    }
    c->state = ST_CLOSING;
    c->close_ms = now_ms(c);
    arm_deadline(c);
    end_our_side(c);
}

static int writev_close(tl_conn *c, const struct iovec *iov, int iovcnt, size_t total)
{
    if (c->state != ST_OPEN || queued(c) > 0 || !c->type->write_close ||
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
        fail(c, "send");
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

void tl_conn_set_defer_writes(tl_conn *c, bool on) { c->defer_writes = on; }
void tl_conn_set_linger(tl_conn *c, bool on) { c->no_linger = !on; }

void tl_conn_shutdown_write(tl_conn *c)
{
    if (c->state != ST_OPEN || c->shut_requested)
        return;
    end_our_side(c);
}

void tl_conn_abort(tl_conn *c)
{
    finish(c, TL_END_LOCAL);
}

/* ---- facts --------------------------------------------------------------------------------- */

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
