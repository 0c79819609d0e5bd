/* loop_epoll.c - the loop's epoll backend: level-triggered interest by epoll_ctl, one epoll_wait
 * per iteration. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "loop/loop_int.h"
#include "util/tli.h"

static uint32_t epoll_mask(unsigned want)
{
    uint32_t m = 0;
    /* RDHUP only with read interest: level-triggered, it would otherwise wake a writer waiting
     * for room again and again after the peer's FIN. */
    if (want & TL_READABLE)
        m |= EPOLLIN | EPOLLRDHUP;
    if (want & TL_WRITABLE)
        m |= EPOLLOUT;
    return m;
}

static int epoll_apply(tl_loop *loop, tl_io *io)
{
    if (io->want == io->registered)
        return 0;
    struct epoll_event ev = {.events = epoll_mask(io->want), .data.ptr = io};
    int op = io->registered == 0 ? EPOLL_CTL_ADD : io->want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    /* With no interest the fd leaves the set: EPOLLHUP and EPOLLERR are reported whatever the
     * mask, and a paused watcher on a dead socket must not spin. */
    if (epoll_ctl(loop->epfd, op, io->fd, &ev) != 0) {
        if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)) {
            io->registered = 0; /* already gone with its fd */
            return 0;
        }
        tli_fmt(loop->err, sizeof loop->err, "epoll_ctl(fd %d): %s", io->fd, strerror(errno));
        return -1;
    }
    io->registered = io->want;
    return 0;
}

/* A closed fd leaves the epoll set by itself (we never dup sockets). */
static void epoll_forget(tl_loop *loop, tl_io *io, bool closing)
{
    io->want = 0;
    if (io->registered && !closing)
        epoll_apply(loop, io);
    io->registered = 0;
}

static unsigned our_events(uint32_t ev)
{
    unsigned out = 0;
    if (ev & EPOLLIN)
        out |= TL_READABLE;
    if (ev & EPOLLOUT)
        out |= TL_WRITABLE;
    if (ev & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        out |= TL_HANGUP;
    return out;
}

static int epoll_wait_ready(tl_loop *loop, int timeout_ms)
{
    struct epoll_event ev[TL_LOOP_MAX_EVENTS];
    int n = epoll_wait(loop->epfd, ev, TL_LOOP_MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        tli_fmt(loop->err, sizeof loop->err, "epoll_wait: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++)
    {
        tl_io *io = ev[i].data.ptr;
        /* Only what was asked for, plus hang-ups (which readers must see). */
        loop->ready[i] = (tli_ready){.io = io,
                                     .events = our_events(ev[i].events) &
                                               (io->registered | TL_HANGUP)};
    }
    return n;
}

static void epoll_destroy(tl_loop *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
}

const tli_backend tli_epoll_backend = {
    .name = "epoll",
    .apply = epoll_apply,
    .forget = epoll_forget,
    .wait = epoll_wait_ready,
    .destroy = epoll_destroy,
};

int tli_epoll_init(tl_loop *loop, char *err, size_t errlen)
{
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        tli_fmt(err, errlen, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    loop->be = &tli_epoll_backend;
    return 0;
}
