/* loop_epoll.c - the loop's epoll system calls: create, change interest, wait. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "loop/loop_int.h"
#include "util/tli.h"

int tli_epoll_create(char *err, size_t errlen)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        tli_fmt(err, errlen, "epoll_create1: %s", strerror(errno));
    return fd;
}

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

int tli_epoll_apply(tl_loop *loop, tl_io *io)
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

int tli_epoll_wait(tl_loop *loop, int timeout_ms)
{
    int n = epoll_wait(loop->epfd, loop->events, TL_LOOP_MAX_EVENTS, timeout_ms);
    if (n >= 0)
        return n;
    if (errno == EINTR)
        return 0;
    tli_fmt(loop->err, sizeof loop->err, "epoll_wait: %s", strerror(errno));
    return -1;
}

unsigned tli_epoll_events(uint32_t ev)
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
