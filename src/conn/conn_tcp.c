/* conn_tcp.c - the plain TCP connection type, and the socket I/O both types share. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "conn/conn_int.h"

static __thread uint8_t scratch[TL_CONN_READ_CHUNK];

uint8_t *tli_conn_scratch(void) { return scratch; }

static ssize_t io_result(tl_conn *c, ssize_t n)
{
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return TL_IO_AGAIN;
    c->sock_errno = errno;
    return TL_IO_ERROR;
}

/* The marks the idle and send-stall deadlines are measured from: two stores per call, so that no
 * timer is touched per read or write (the deadline's timer re-checks them when it fires). */
ssize_t tli_conn_recv(tl_conn *c, void *buf, size_t len)
{
    /* A TCP recv that returns less than asked found the receive queue empty; asking again
     * before the next readiness event could only say EAGAIN. Level-triggered epoll reports
     * whatever arrives meanwhile, so the syscall is skipped (one per request saved: a TLS
     * read otherwise ends with a recv that fails). On a stream (io_uring) the same holds for
     * the loop's queue of received buffers. */
    if (c->rx_dry)
        return TL_IO_AGAIN;
    ssize_t r = tl_io_recv(c->loop, &c->io, buf, len);
    if (r > 0) {
        c->active_ms = (uint32_t)tl_loop_now(c->loop);
        c->rx_dry = (size_t)r < len;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->rx_dry = true;
    }
    return io_result(c, r);
}

ssize_t tli_conn_send(tl_conn *c, const void *buf, size_t len)
{
    /* MSG_MORE before the FIN: the kernel holds the last partial segment until shutdown(SHUT_WR)
     * pushes it with the FIN flag set, one packet (and one ACK) instead of two. */
    int flags = MSG_NOSIGNAL | (c->last_send ? MSG_MORE : 0);
    ssize_t n = io_result(c, tl_io_send(c->loop, &c->io, buf, len, flags));
    uint32_t now = (uint32_t)tl_loop_now(c->loop);
    if (n > 0)
        c->active_ms = now;
    /* A stall runs from the last progress; after a complete send, from the first refusal. */
    if (n > 0 || !c->send_blocked)
        c->send_ms = now;
    c->send_blocked = n < (ssize_t)len;
    return n;
}

static tl_status tcp_handshake(tl_conn *c)
{
    (void)c;
    return TL_OK;
}

static tl_result tcp_read(tl_conn *c, void *buf, size_t cap)
{
    tl_result r = {TL_OK, TL_HS_NOT_HANDSHAKING, 0, 0};
    ssize_t n = tli_conn_recv(c, buf, cap);
    if (n > 0) {
        r.produced = (size_t)n;
        /* A short read drained the socket; level-triggered epoll reports any later data. */
        r.status = (size_t)n == cap ? TL_OK : TL_WANT_INPUT;
    } else if (n == 0) {
        r.status = TL_CLOSED; /* a FIN is the clean end of a TCP stream */
    } else {
        r.status = n == TL_IO_AGAIN ? TL_WANT_INPUT : TL_ERROR;
    }
    return r;
}

static tl_result tcp_write(tl_conn *c, const void *buf, size_t len)
{
    tl_result r = {TL_OK, TL_HS_NOT_HANDSHAKING, 0, 0};
    ssize_t n = len ? tli_conn_send(c, buf, len) : 0;
    if (n >= 0) {
        r.consumed = (size_t)n;
        r.status = (size_t)n == len ? TL_OK : TL_WANT_OUTPUT;
    } else {
        r.status = n == TL_IO_AGAIN ? TL_WANT_OUTPUT : TL_ERROR;
    }
    return r;
}

static tl_status tcp_none(tl_conn *c)
{
    (void)c;
    return TL_OK;
}

static size_t tcp_pending(const tl_conn *c)
{
    (void)c;
    return 0;
}

static uint32_t tcp_key_updates(const tl_conn *c)
{
    (void)c;
    return 0;
}

static bool tcp_input_buffered(const tl_conn *c)
{
    (void)c;
    return false;
}

static void tcp_release(tl_conn *c) { (void)c; }
static void tcp_destroy(tl_conn *c) { (void)c; }

const tli_conn_type tli_conn_tcp = {
    .name = "tcp",
    .handshake = tcp_handshake,
    .read = tcp_read,
    .write = tcp_write,
    .flush = tcp_none,
    .close_notify = tcp_none,
    .pending_output = tcp_pending,
    .release = tcp_release,
    .destroy = tcp_destroy,
    .key_updates = tcp_key_updates,
    .input_buffered = tcp_input_buffered,
};
