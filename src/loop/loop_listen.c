/* loop_listen.c - listeners (tl_listen): sockets accepted by the backend's completions (io_uring)
 * or by accept4 on readiness (epoll, TLSLOOP_IO_ACCEPT=poll), handed to the callback the same way,
 * with what the callback refused or the kernel accepted beyond one iteration's share held for the
 * next. Pausing and throttling switch the watcher's interest, which the backend turns into arming
 * or cancelling its accept. docs/design.md, decision 15. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop_int.h"

static tl_listen *of(tl_io *io) { return (tl_listen *)((char *)io - offsetof(tl_listen, io)); }

void tl_listen_init(tl_listen *l, int fd, tl_listen_cb cb, tl_listen_err_cb on_error, void *data)
{
    memset(l, 0, sizeof *l);
    l->cb = cb;
    l->on_error = on_error;
    l->data = data;
    l->io.fd = fd;
}

bool tli_accept_transient(int err)
{
    /* The connection went away between the handshake and accept (ECONNABORTED; EPROTO, and
     * the network errors accept(2) says to treat like EAGAIN), a signal, or a firewall (EPERM). */
    switch (err) {
    case EAGAIN: case EINTR: case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN:
    case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    }
    return false;
}

static void list(tl_loop *loop, tl_listen *l)
{
    if (l->listed)
        return;
    l->listed = true;
    l->next_listed = loop->listed;
    loop->listed = l;
}

static void unlist(tl_loop *loop, tl_listen *l)
{
    if (!l->listed)
        return;
    for (tl_listen **p = &loop->listed; *p; p = &(*p)->next_listed)
        if (*p == l) {
            *p = l->next_listed;
            break;
        }
    l->listed = false;
    l->next_listed = NULL;
}

int tli_listen_report(tl_loop *loop, int n)
{
    while (loop->listed && n < TL_LOOP_MAX_EVENTS) {
        tl_listen *l = loop->listed;
        loop->listed = l->next_listed;
        l->listed = false;
        l->next_listed = NULL;
        loop->ready[n++] = (tli_ready){.io = &l->io, .events = TL_READABLE | TLI_HELD};
    }
    return n;
}

/* The watcher's interest: accepting while running, unless held sockets throttle the kernel's
 * accepts (a poll listener offers what it holds before it accepts more, so it needs no throttle). */
static void interest(tl_loop *loop, tl_listen *l)
{
    tl_io_set(loop, &l->io, l->running && !l->throttled ? TL_READABLE : 0);
}

static bool hold(tl_listen *l, int fd, bool front)
{
    if (l->held_n == l->held_cap) {
        uint32_t cap = l->held_cap ? l->held_cap * 2 : 16;
        int *h = malloc(cap * sizeof *h);
        if (!h)
            return false;
        for (uint32_t i = 0; i < l->held_n; i++)
            h[i] = l->held[(l->held_head + i) % l->held_cap];
        free(l->held);
        l->held = h;
        l->held_cap = cap;
        l->held_head = 0;
    }
    if (front) {
        l->held_head = (l->held_head + l->held_cap - 1) % l->held_cap;
        l->held[l->held_head] = fd;
    } else {
        l->held[(l->held_head + l->held_n) % l->held_cap] = fd;
    }
    l->held_n++;
    return true;
}

static int unhold(tl_listen *l)
{
    int fd = l->held[l->held_head];
    l->held_head = (l->held_head + 1) % l->held_cap;
    l->held_n--;
    return fd;
}

void tli_listen_took(tl_loop *loop, tl_io *io, int fd)
{
    tl_listen *l = of(io);
    if (!hold(l, fd, false)) {
        close(fd);   /* the client sees a reset; the error says why */
        tli_listen_failed(loop, io, ENOMEM);
        return;
    }
    if (l->held_n >= TL_LOOP_MAX_ACCEPTS && !l->throttled) {
        l->throttled = true;   /* the rest waits in the backlog until these are handed over */
        interest(loop, l);
    }
    if (l->running)
        list(loop, l);
}

void tli_listen_failed(tl_loop *loop, tl_io *io, int err)
{
    tl_listen *l = of(io);
    l->err = err;
    list(loop, l);
}

/* Hand fd over; false when refused (it is held again, first). */
static bool offer(tl_loop *loop, tl_listen *l, int fd, const struct sockaddr *peer,
                  socklen_t peerlen)
{
    if (l->cb(loop, l, fd, peer, peerlen))
        return true;
    if (!l->started || !hold(l, fd, true))
        close(fd);   /* stopped from the callback, or no memory to keep it */
    return false;
}

/* The listener's events: the sockets it holds, an error to report, then (polling) accept4 until
 * the backlog is empty, the callback refuses, or the iteration's share is handed over. The held
 * sockets go first: they take descriptors, and an EMFILE reported before them would pause the
 * listener, whose every resume re-arms an accept that fails at once: they would never be taken,
 * nor their descriptors freed. */
static void on_ready(tl_loop *loop, tl_io *io, unsigned events)
{
    tl_listen *l = of(io);
    int budget = TL_LOOP_MAX_ACCEPTS;
    while (l->running && l->held_n && budget > 0) {
        int fd = unhold(l);
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0) {
            close(fd);   /* reset before it was handed over (ENOTCONN), as accept4 skips it */
            continue;
        }
        budget--;
        if (!offer(loop, l, fd, (struct sockaddr *)&peer, len))
            break;   /* refused: held, offered again next iteration or on resume */
    }
    if (l->err) {
        int err = l->err;
        l->err = 0;
        if (l->on_error)
            l->on_error(loop, l, err);
    }
    if (l->held_n) {
        if (l->running)
            list(loop, l);
        return;
    }
    if (l->throttled) {
        l->throttled = false;
        interest(loop, l);
    }
    if (io->accepting || (events & TLI_HELD))
        return;
    while (l->running && budget-- > 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (tli_accept_transient(err))
                continue;
            if (l->on_error)
                l->on_error(loop, l, err);
            return;
        }
        if (!offer(loop, l, fd, (struct sockaddr *)&peer, len)) {
            if (l->running && l->held_n)
                list(loop, l);   /* refused, not paused: again next iteration */
            return;
        }
    }
}

void tl_listen_start(tl_loop *loop, tl_listen *l)
{
    if (!l->started) {
        l->started = true;
        l->io.cb = on_ready;
        if (loop->be->listen)
            loop->be->listen(loop, &l->io);
    }
    l->running = true;
    if (l->held_n || l->err)
        list(loop, l);
    interest(loop, l);
}

void tl_listen_pause(tl_loop *loop, tl_listen *l)
{
    if (!l->started || !l->running)
        return;
    l->running = false;
    if (!l->err)
        unlist(loop, l);
    interest(loop, l);
}

void tl_listen_stop(tl_loop *loop, tl_listen *l)
{
    unlist(loop, l);
    if (l->started)
        tl_io_stop(loop, &l->io);   /* also forgets its events in the batch being dispatched */
    while (l->held_n)
        close(unhold(l));
    free(l->held);
    l->held = NULL;
    l->held_cap = l->held_head = 0;
    l->started = l->running = l->throttled = false;
    l->err = 0;
}

const char *tl_listen_mode(const tl_listen *l)
{
    if (!l->started)
        return "";
    return l->io.accepting == 1 ? "multishot" : l->io.accepting == 2 ? "single" : "poll";
}
