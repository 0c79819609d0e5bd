/*
 * conn_events.c - the loop's three ways into a connection: socket readiness (on_io), the deadline
 * timer (on_timer) and posted actions (on_post, which also frees); and making connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn/conn_int.h"

#define DEFAULT_HS_TIMEOUT_MS 10000
#define DEFAULT_CLOSE_TIMEOUT_MS 5000
#define DEFAULT_WRITE_HIGH (256u * 1024u)
#define DEFAULT_KEY_UPDATE_LIMIT 100

/* ---- events ---------------------------------------------------------------------------------- */

static void on_post(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tl_conn *c = w->data;
    c->posted = false;
    unsigned acts = c->actions;
    c->actions = 0;
    if (acts & ACT_CLOSE) {
        /* TLS that ended before its handshake did, however it ended */
        tli_conn_owner_handshake(c, false);
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
        tli_conn_do_handshake(c);
        if (c->state != ST_DEAD)
            tli_conn_update_interest(c);
    }
    if ((acts & ACT_FLUSH) && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        tli_conn_do_flush(c);
        if (c->state != ST_DEAD)
            tli_conn_update_interest(c);
    }
    if ((acts & ACT_READ) && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        tli_conn_do_read(c);
        if (c->state != ST_DEAD)
            tli_conn_update_interest(c);
    }
}

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
        char msg[CONN_MSG_MAX];
        tli_fmt(msg, sizeof msg, "connect: %s", strerror(err));
        tli_conn_set_error(c, msg);
        tli_conn_finish(c, TL_END_RESET);
        if (c->cbs && c->cbs->on_connect)
            c->cbs->on_connect(c, false);
        return;
    }
    tli_conn_stream(c);   /* completions from here on, where the loop has them */
    if (c->cbs && c->cbs->on_connect)
        c->cbs->on_connect(c, true);
    if (c->state != ST_CONNECTING)
        return;
    if (c->engine) {
        start_tls(c);
        tli_conn_do_handshake(c);
    } else {
        c->state = ST_OPEN;
        c->active_ms = tli_conn_now_ms(c);
        tli_conn_arm_deadline(c);
        if (!tli_conn_close_if_requested(c))
            tli_conn_do_flush(c);
    }
}

static void on_io(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    tl_conn *c = io->data;
    if (events & (TL_READABLE | TL_HANGUP))
        c->rx_dry = false;   /* the kernel says there is something to read again */
    if ((events & TL_WRITABLE) && c->io.stream)
        c->send_ms = tli_conn_now_ms(c);   /* a stream's send completed: progress */
    switch (c->state) {
    case ST_CONNECTING:
        connected(c);
        break;
    case ST_HANDSHAKE:
        tli_conn_do_handshake(c);
        break;
    case ST_OPEN:
    case ST_CLOSING:
        if (events & (TL_WRITABLE | TL_HANGUP))
            tli_conn_do_flush(c);
        if (events & (TL_READABLE | TL_HANGUP))
            tli_conn_do_read(c);
        break;
    case ST_TASK:
    case ST_DEAD:
        break;
    }
    if (c->state != ST_DEAD)
        tli_conn_update_interest(c);
}

static void on_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    tl_conn *c = t->data;
    char msg[CONN_MSG_MAX];
    uint32_t now = tli_conn_now_ms(c);
    switch (c->state) {
    case ST_CONNECTING:
    case ST_HANDSHAKE:
    case ST_TASK:
        tli_fmt(msg, sizeof msg, "%s did not complete within %u ms",
                c->state == ST_CONNECTING ? "connect" : "TLS handshake", c->hs_timeout_ms);
        tli_conn_set_error(c, msg);
        tli_conn_finish(c, TL_END_TIMEOUT);
        if (c->state == ST_DEAD && c->engine) /* (a task running: its completion reports) */
            tli_conn_report_handshake_failure(c);
        break;
    case ST_OPEN:
    case ST_CLOSING: {
        /* Only a refusal counts: output can also wait because our write budget ended a turn. If
         * the last send was complete but output still waits a whole period, the socket never said
         * writable since: ask it now, and a send that moves nothing is the refusal. */
        bool stalled = false;
        if (tli_conn_stall_applies(c) && tli_conn_left(now, c->send_ms, c->stall_timeout_ms) == 0) {
            if (c->send_blocked || tl_io_unsent(c->loop, &c->io)) {
                stalled = true;
            } else {
                size_t before = tli_conn_queued(c);
                tli_conn_do_flush(c);
                if (c->state == ST_DEAD)
                    break;
                tli_conn_update_interest(c);
                stalled = c->send_blocked && tli_conn_queued(c) == before;
            }
        }
        if (stalled) {
            /* The peer must not hold the connection and its buffers forever. Aborted: a close
             * would only wait on the same peer. */
            tli_conn_set_error(c, "send stalled: the peer stopped reading");
            tli_conn_finish(c, TL_END_TIMEOUT);
            break;
        }
        if (c->state == ST_CLOSING && tli_conn_left(now, c->close_ms, c->close_timeout_ms) == 0) {
            /* Everything sent and the peer silent: we end it. Not even sent: the peer stalled. */
            tli_fmt(msg, sizeof msg, "close: %s within %u ms",
                    tli_conn_queued(c) ? "the peer did not take the last data"
                                       : "no answer from the peer",
                    c->close_timeout_ms);
            tli_conn_set_error(c, msg);
            tli_conn_finish(c, tli_conn_queued(c) ? TL_END_TIMEOUT : TL_END_LOCAL);
            break;
        }
        if (c->state == ST_OPEN && c->idle_timeout_ms &&
            tli_conn_left(now, c->active_ms, c->idle_timeout_ms) == 0) {
            tli_conn_set_error(c, "idle timeout");
            c->end = TL_END_TIMEOUT; /* the reason, whatever the graceful close meets later */
            tl_conn_close(c);
            break;
        }
        tli_conn_arm_deadline(c); /* early for a deadline that moved on: re-arm for what is left */
        break;
    }
    case ST_DEAD:
        break;
    }
}

/* ---- making connections ---------------------------------------------------------------------- */

static ssize_t tp_recv(void *arg, void *buf, size_t len) { return tli_conn_recv(arg, buf, len); }
static ssize_t tp_send(void *arg, const void *buf, size_t len)
{
    return tli_conn_send(arg, buf, len);
}

/* The socket's I/O on the loop's completions where it has them (io_uring): sends are queued
 * there, and the engine hands them its records one by one instead of gathering them itself. */
void tli_conn_stream(tl_conn *c)
{
    if (tl_io_stream(c->loop, &c->io) && c->engine)
        tl_engine_set_transport_flags(c->engine, TL_TRANSPORT_QUEUED);
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
    c->active_ms = c->send_ms = tli_conn_now_ms(c);
    c->ku_window_ms = c->active_ms - KEY_UPDATE_WINDOW_MS; /* closed: the first one opens one */
    c->high = o->write_high ? o->write_high : DEFAULT_WRITE_HIGH;
    c->low = o->write_low ? o->write_low : c->high / 4;
    c->read_chunk = o->read_chunk && o->read_chunk < TL_CONN_READ_CHUNK ? o->read_chunk
                                                                        : TL_CONN_READ_CHUNK;
    c->type = &tli_conn_tcp;
    tl_io_init(&c->io, fd, on_io, c);
    tl_timer_init(&c->timer, on_timer, c);
    c->post.done = on_post;   /* the actions tli_conn_schedule posts */
    c->post.data = c;
    if (o->tls) {
        c->tp = (tl_transport){tp_recv, tp_send, c};
        tl_engine_opts eo = {.server_name = role == TL_ROLE_CLIENT ? o->server_name : NULL,
                             .transport = &c->tp,
                             .flags = (o->pool ? TL_ENGINE_DELEGATE_TASKS : 0) |
                                      (role == TL_ROLE_SERVER && o->owner &&
                                               o->owner->session_lookup
                                           ? TL_ENGINE_SESSION_LOOKUP
                                           : 0) |
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
    tli_conn_stream(c);
    if (c->engine) {
        start_tls(c);
        tl_timer_start(loop, &c->timer, c->hs_timeout_ms);
        tli_conn_schedule(c, ACT_HANDSHAKE);
    } else {
        c->state = ST_OPEN;
        tli_conn_arm_deadline(c); /* idle counts from the accept */
    }
    tli_conn_update_interest(c);
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
    tli_conn_update_interest(c);
    return c;
}
