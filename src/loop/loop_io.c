/* loop_io.c - fd watchers: their set-up and the loop's list of interest changes, which loop.c
 * applies once per iteration and the io_uring backend refills to re-arm one-shot polls. */
#include <string.h>

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
