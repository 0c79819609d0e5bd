/* loop_io.c - fd watchers: their set-up and stop, the loop's list of interest changes (applied
 * by loop.c once per iteration, refilled by the io_uring backend to re-arm one-shot polls), and
 * socket I/O that goes to the backend for a stream's watcher and to recv/send for any other. */
#include <string.h>
#include <sys/socket.h>

#include "loop/loop_int.h"

void tl_io_init(tl_io *io, int fd, tl_io_cb cb, void *data)
{
    memset(io, 0, sizeof *io);
    io->fd = fd;
    io->cb = cb;
    io->data = data;
}

void tli_io_unlink_change(tl_loop *loop, tl_io *io)
{
    if (!io->queued)
        return;
    if (io->prev_change)
        io->prev_change->next_change = io->next_change;
    else
        loop->changes = io->next_change;
    if (io->next_change)
        io->next_change->prev_change = io->prev_change;
    io->next_change = io->prev_change = NULL;
    io->queued = false;
}

static void stop(tl_loop *loop, tl_io *io, bool closing)
{
    tli_io_unlink_change(loop, io);
    loop->be->forget(loop, io, closing);
    /* Events of the batch being dispatched may still point to this watcher, whose memory the
     * caller may free as soon as we return: forget them. */
    for (int i = loop->dispatching + 1; loop->dispatching >= 0 && i < loop->nevents; i++)
        if (loop->ready[i].io == io)
            loop->ready[i].io = NULL;
}

void tl_io_stop(tl_loop *loop, tl_io *io) { stop(loop, io, false); }
void tl_io_stop_closing(tl_loop *loop, tl_io *io) { stop(loop, io, true); }

void tl_io_set(tl_loop *loop, tl_io *io, unsigned events)
{
    io->want = events & (TL_READABLE | TL_WRITABLE);
    if (io->queued)
        return;
    io->queued = true;
    io->prev_change = NULL;
    io->next_change = loop->changes;
    if (loop->changes)
        loop->changes->prev_change = io;
    loop->changes = io;
}

bool tl_io_stream(tl_loop *loop, tl_io *io)
{
    return io->stream || (loop->be->stream && loop->be->stream(loop, io) == 0);
}

ssize_t tl_io_recv(tl_loop *loop, tl_io *io, void *buf, size_t len)
{
    return io->stream ? loop->be->recv(loop, io, buf, len) : recv(io->fd, buf, len, 0);
}

ssize_t tl_io_send(tl_loop *loop, tl_io *io, const void *buf, size_t len, int flags)
{
    return io->stream ? loop->be->send(loop, io, buf, len, flags) : send(io->fd, buf, len, flags);
}

size_t tl_io_unsent(const tl_loop *loop, const tl_io *io)
{
    return io->stream ? loop->be->unsent(loop, io) : 0;
}
