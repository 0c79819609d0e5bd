/* loop_uring.c - the loop's io_uring backend: interest as one-shot poll requests queued on the
 * ring (re-armed after each completion, which keeps readiness level-triggered), one
 * io_uring_enter per iteration to submit them all and wait. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop_int.h"
#include "util/tli.h"

#define RING_ENTRIES 1024u
#define CQ_ENTRIES 8192u

/* A poll request in flight. Its id is the request's user_data; an id stays taken until the
 * request's completion arrives, so a completion never finds a watcher that was stopped (and
 * perhaps freed) since: stopping clears t->io and queues a cancel. */
typedef struct ticket {
    tl_io *io;        /* NULL: cancelled, or free */
    uint32_t next;    /* free list */
    uint8_t mask;     /* the interest asked for */
} ticket;

struct tli_uring {
    struct io_uring ring;
    ticket *t;        /* t[0] unused: id 0 is the user_data of cancels, whose completions we skip */
    uint32_t cap, free_head;
};

static uint32_t ticket_take(tli_uring *u, tl_io *io, uint8_t mask)
{
    if (!u->free_head) {
        uint32_t cap = u->cap ? u->cap * 2 : 256;
        ticket *t = realloc(u->t, cap * sizeof *t);
        if (!t)
            return 0;
        for (uint32_t i = cap - 1; i >= (u->cap ? u->cap : 1); i--) {
            t[i] = (ticket){.next = u->free_head};
            u->free_head = i;
        }
        u->t = t;
        u->cap = cap;
    }
    uint32_t id = u->free_head;
    u->free_head = u->t[id].next;
    u->t[id] = (ticket){.io = io, .mask = mask};
    return id;
}

static void ticket_put(tli_uring *u, uint32_t id)
{
    u->t[id] = (ticket){.next = u->free_head};
    u->free_head = id;
}

/* A free submission entry; a full queue is submitted first. */
static struct io_uring_sqe *sqe_get(tl_loop *loop)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->uring->ring);
    if (!sqe) {
        io_uring_submit(&loop->uring->ring);
        sqe = io_uring_get_sqe(&loop->uring->ring);
    }
    if (!sqe)
        tli_fmt(loop->err, sizeof loop->err, "io_uring: the submission queue is full");
    return sqe;
}

/* Cancel the poll in flight, if any: its completion then finds no watcher. */
static int cancel(tl_loop *loop, tl_io *io)
{
    if (!io->ticket)
        return 0;
    tli_uring *u = loop->uring;
    u->t[io->ticket].io = NULL;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    io_uring_prep_poll_remove(sqe, io->ticket);
    io_uring_sqe_set_data64(sqe, 0);
    io->ticket = 0;
    io->registered = 0;
    return 0;
}

static int uring_apply(tl_loop *loop, tl_io *io)
{
    if (io->want == io->registered && (io->ticket != 0) == (io->want != 0))
        return 0;
    if (cancel(loop, io) != 0)
        return -1;
    if (!io->want)
        return 0;
    uint32_t id = ticket_take(loop->uring, io, io->want);
    struct io_uring_sqe *sqe = id ? sqe_get(loop) : NULL;
    if (!sqe) {
        if (id)
            ticket_put(loop->uring, id);
        else
            tli_fmt(loop->err, sizeof loop->err, "io_uring: out of memory");
        return -1;
    }
    unsigned mask = 0;
    if (io->want & TL_READABLE)
        mask |= POLLIN | POLLRDHUP;
    if (io->want & TL_WRITABLE)
        mask |= POLLOUT;
    io_uring_prep_poll_add(sqe, io->fd, mask);
    io_uring_sqe_set_data64(sqe, id);
    io->ticket = id;
    io->registered = io->want;
    return 0;
}

/* Even when the fd is about to close: the ring holds a reference to the file while a poll is in
 * flight, so the socket would live on (no FIN) until the request is cancelled. */
static void uring_forget(tl_loop *loop, tl_io *io, bool closing)
{
    (void)closing;
    io->want = 0;
    cancel(loop, io);
    io->registered = 0;
}

static unsigned our_events(int res, uint8_t mask)
{
    if (res < 0)
        return TL_HANGUP;   /* the request failed (the fd went bad): let the owner find out */
    unsigned out = 0;
    if (res & POLLIN)
        out |= TL_READABLE;
    if (res & POLLOUT)
        out |= TL_WRITABLE;
    if (res & (POLLHUP | POLLERR | POLLRDHUP))
        out |= TL_HANGUP;
    return out & (mask | TL_HANGUP);
}

static int uring_wait(tl_loop *loop, int timeout_ms)
{
    tli_uring *u = loop->uring;
    struct io_uring_cqe *cqe;
    int rc;
    if (timeout_ms == 0 || io_uring_cq_ready(&u->ring)) {
        rc = io_uring_submit(&u->ring);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts,
                                              NULL);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        tli_fmt(loop->err, sizeof loop->err, "io_uring_enter: %s", strerror(-rc));
        return -1;
    }
    int n = 0;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        if (n == TL_LOOP_MAX_EVENTS)
            break;   /* the rest waits in the queue for the next iteration */
        seen++;
        uint64_t id = io_uring_cqe_get_data64(cqe);
        if (id == 0 || id >= u->cap)
            continue;   /* a cancel's own completion */
        tl_io *io = u->t[id].io;
        uint8_t mask = u->t[id].mask;
        ticket_put(u, (uint32_t)id);
        if (!io)
            continue;   /* stopped after it was armed */
        io->ticket = 0;
        io->registered = 0;
        if (io->want)
            tl_io_set(loop, io, io->want);   /* one-shot: armed again next iteration */
        unsigned ev = our_events(cqe->res, mask);
        if (ev)
            loop->ready[n++] = (tli_ready){.io = io, .events = ev};
    }
    io_uring_cq_advance(&u->ring, seen);
    return n;
}

static void uring_destroy(tl_loop *loop)
{
    if (!loop->uring)
        return;
    io_uring_queue_exit(&loop->uring->ring);
    free(loop->uring->t);
    free(loop->uring);
    loop->uring = NULL;
}

const tli_backend tli_uring_backend = {
    .name = "io_uring",
    .apply = uring_apply,
    .forget = uring_forget,
    .wait = uring_wait,
    .destroy = uring_destroy,
};

int tli_uring_init(tl_loop *loop, char *err, size_t errlen)
{
    tli_uring *u = calloc(1, sizeof *u);
    if (!u) {
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    /* SUBMIT_ALL: one bad request does not hold back the rest; COOP_TASKRUN: completions are
     * run when we enter the kernel anyway, not by interrupting the loop. Older kernels take
     * neither: try without. */
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                                         IORING_SETUP_COOP_TASKRUN,
                                .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
    if (rc == -EINVAL) {
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
    }
    if (rc < 0) {
        tli_fmt(err, errlen, "io_uring_setup: %s", strerror(-rc));
        free(u);
        return -1;
    }
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
        tli_fmt(err, errlen, "this kernel's io_uring lacks %s",
                !(p.features & IORING_FEAT_NODROP) ? "FEAT_NODROP" : "FEAT_EXT_ARG");
        io_uring_queue_exit(&u->ring);
        free(u);
        return -1;
    }
    loop->uring = u;
    loop->be = &tli_uring_backend;
    return 0;
}
