/* loop_uring.c - the loop's io_uring backend: interest as one-shot poll requests (re-armed after
 * each completion, which keeps readiness level-triggered), streams on completions (multishot recv
 * into a provided-buffer ring, staged sends), listeners on multishot accepts, one io_uring_enter
 * per iteration for all of it. The stream's life and its invariants: docs/design.md, decision 14;
 * the listener's: decision 15. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop_int.h"
#include "util/tli.h"

#define RING_ENTRIES 1024u
#define CQ_ENTRIES 8192u
#define BUF_SIZE 16384u          /* a provided buffer: one TLS record and its header */
#define BUF_COUNT 256u           /* buffers the ring can hold (a power of two) */
#define BUF_GROW 16u             /* buffers given to it at first, and each time it runs dry */
#define BUF_GROUP 1
#define NO_BUF 0xffffu
#define STAGE_SMALL (32u * 1024u)   /* a stream's staging: requests, responses, handshake flights */
#define STAGE_BIG (256u * 1024u)    /* ... for a send larger than that (bulk: fewer, larger sends) */
#define SPARE_MAX 16                /* small staging buffers kept for reuse */
#define SPARE_BIG_MAX 2             /* big ones (a bulk transfer reuses its own round after round) */

/* user_data: a table index and what it is for; 0 is a cancel's own completion, skipped. */
enum { OP_POLL = 0, OP_RECV = 1, OP_SEND = 2, OP_ACCEPT = 3 };
/* How listeners accept (TLSLOOP_IO_ACCEPT): tl_io.accepting's values, and 0 for polls. */
enum { ACCEPT_POLL = 0, ACCEPT_MULTISHOT = 1, ACCEPT_SINGLE = 2 };
#define UD(id, op) ((uint64_t)(id) << 2 | (op))

/* A poll request in flight. Its id is the request's user_data; an id stays taken until the
 * request's completion arrives, so a completion never finds a watcher that was stopped (and
 * perhaps freed) since: stopping clears t->io and queues a cancel. */
typedef struct ticket {
    tl_io *io;        /* NULL: cancelled, or free */
    uint32_t next;    /* free list */
    uint8_t mask;     /* the interest asked for */
} ticket;

/* A stream's slot: what its watcher's completions left for tl_io_recv, the send in flight. A slot
 * outlives its watcher while requests are in flight (io NULL), so a late completion finds it. */
typedef struct stream {
    tl_io *io;              /* NULL: the watcher left */
    uint32_t next;          /* the hot list, the starved list, or the free list */
    uint32_t next_starved;
    uint16_t rx_head, rx_tail;   /* received buffers, oldest first (NO_BUF: none) */
    uint32_t rx_off;        /* bytes of the head buffer already read */
    int rx_err, tx_err;     /* the errno the kernel gave, for the next recv/send */
    bool rx_eof;
    bool recv_armed;        /* a multishot recv is in flight, until its last completion */
    bool recv_cancelled;    /* ... and its cancel is queued */
    bool starved;           /* its recv ended for want of buffers: re-armed when one comes back */
    bool hot;               /* on the hot list: its events are worked out each iteration */
    bool send_armed;        /* a send is in flight: of tx[tx_off, tx_len) as it was then */
    bool tx_queued;         /* on the send list: staged bytes to be sent when the round ends */
    uint32_t next_tx;
    uint64_t armed_seq;     /* the submission round of its latest request */
    uint8_t *tx;            /* staged bytes: [tx_off, tx_len) not yet sent */
    uint32_t tx_len, tx_off, tx_cap;
    int tx_flags;
} stream;

/* A listener's accept. Like a stream's slot it outlives its watcher while the accept is in
 * flight (io NULL), and a socket a late completion brings is closed. */
typedef struct acceptor {
    tl_io *io;              /* NULL: the watcher left (or the slot is free) */
    uint32_t next;          /* the free list */
    bool armed;             /* an accept is in flight, until its last completion */
    bool cancelled;         /* ... and its cancel is queued */
    bool got;               /* it gave a socket: a later -EINVAL is not "no multishot here" */
} acceptor;

struct tli_uring {
    struct io_uring ring;
    ticket *t;        /* t[0] unused: id 0 is the user_data of cancels, whose completions we skip */
    uint32_t cap, free_head;
    uint64_t seq;     /* submission rounds so far: a request armed in this one is not yet submitted */

    stream *s;        /* s[0] unused */
    uint32_t s_cap, s_free, hot, starved, txq;
    struct io_uring_buf_ring *br;   /* NULL: the kernel has no provided-buffer rings: no streams */
    uint8_t *bufs;
    uint32_t provisioned;           /* buffers given to the ring so far: it grows when it runs dry */
    uint16_t buf_next[BUF_COUNT];
    uint32_t buf_len[BUF_COUNT];
    uint8_t *spare[SPARE_MAX], *spare_big[SPARE_BIG_MAX];
    int nspare, nspare_big;

    acceptor *a;      /* a[0] unused */
    uint32_t a_cap, a_free;
    int accept_mode;  /* ACCEPT_*, from TLSLOOP_IO_ACCEPT */
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
        loop->uring->seq++;
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
    io_uring_prep_poll_remove(sqe, UD(io->ticket, OP_POLL));
    io_uring_sqe_set_data64(sqe, 0);
    io->ticket = 0;
    io->registered = 0;
    return 0;
}

/* ---- streams: completion I/O ---- */

static stream *slot(tli_uring *u, const tl_io *io) { return &u->s[io->ticket]; }

static void buf_give(tli_uring *u, uint16_t bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* More buffers for a ring that ran dry, up to BUF_COUNT: a loop touches only as many as its
 * busiest moment needed (an idle server's memory does not hold the whole ring). */
static bool buf_grow(tli_uring *u)
{
    uint32_t k = BUF_COUNT - u->provisioned < BUF_GROW ? BUF_COUNT - u->provisioned : BUF_GROW;
    for (uint32_t i = 0; i < k; i++) {
        uint16_t bid = (uint16_t)(u->provisioned + i);
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    }
    io_uring_buf_ring_advance(u->br, (int)k);
    u->provisioned += k;
    return k > 0;
}

static void mark_hot(tli_uring *u, uint32_t id)
{
    if (u->s[id].hot)
        return;
    u->s[id].hot = true;
    u->s[id].next = u->hot;
    u->hot = id;
}

/* A slot is free again once its watcher left and nothing of it is in flight or listed. */
static void maybe_free(tli_uring *u, uint32_t id)
{
    stream *s = &u->s[id];
    if (s->io || s->recv_armed || s->send_armed || s->hot || s->starved || s->tx_queued)
        return;
    *s = (stream){.next = u->s_free};
    u->s_free = id;
}

/* Staging for a stream's first send of a round: small unless that send alone is larger. */
static void stage_get(tli_uring *u, stream *s, size_t len)
{
    bool big = len > STAGE_SMALL;
    if (big)
        s->tx = u->nspare_big ? u->spare_big[--u->nspare_big] : malloc(STAGE_BIG);
    else
        s->tx = u->nspare ? u->spare[--u->nspare] : malloc(STAGE_SMALL);
    s->tx_cap = s->tx ? (big ? STAGE_BIG : STAGE_SMALL) : 0;
}

static void stage_release(tli_uring *u, uint8_t *p, uint32_t cap)
{
    if (p && cap == STAGE_SMALL && u->nspare < SPARE_MAX)
        u->spare[u->nspare++] = p;
    else if (p && cap == STAGE_BIG && u->nspare_big < SPARE_BIG_MAX)
        u->spare_big[u->nspare_big++] = p;
    else
        free(p);
}

static void stage_put(tli_uring *u, stream *s)
{
    stage_release(u, s->tx, s->tx_cap);
    s->tx = NULL;
    s->tx_cap = 0;
}

/* A small staging buffer not in flight, too small for a write: a big one, with what it held. */
static void stage_grow(tli_uring *u, stream *s)
{
    uint8_t *small = s->tx;
    size_t have = s->tx_len - s->tx_off;
    stage_get(u, s, STAGE_BIG);
    if (!s->tx) {
        s->tx = small;   /* no memory for a big one: the small one goes on */
        s->tx_cap = STAGE_SMALL;
        return;
    }
    memcpy(s->tx, small + s->tx_off, have);
    s->tx_len = (uint32_t)have;
    s->tx_off = 0;
    stage_release(u, small, STAGE_SMALL);
}

/* The events a stream's state gives its watcher's interest. */
static unsigned stream_events(const stream *s)
{
    unsigned want = s->io ? s->io->want : 0, ev = 0;
    if ((want & TL_READABLE) && (s->rx_head != NO_BUF || s->rx_eof || s->rx_err))
        ev |= TL_READABLE;
    if ((want & TL_WRITABLE) && !s->send_armed)
        ev |= TL_WRITABLE;
    if (want && (s->rx_err || s->tx_err))
        ev |= TL_HANGUP;
    return ev;
}

/* Walk the hot list: streams with no events leave it; with report, those with events are added
 * to loop->ready from n on (and stay, level-triggered). Returns the new count. */
static int walk_hot(tl_loop *loop, int n, bool report)
{
    tli_uring *u = loop->uring;
    uint32_t id = u->hot, keep = 0;
    u->hot = 0;
    while (id) {
        stream *s = &u->s[id];
        uint32_t next = s->next;
        unsigned ev = stream_events(s);
        if (!ev) {
            s->hot = false;
            maybe_free(u, id);
        } else {
            if (report && n < TL_LOOP_MAX_EVENTS)
                loop->ready[n++] = (tli_ready){.io = s->io, .events = ev};
            s->next = keep;
            keep = id;
        }
        id = next;
    }
    u->hot = keep;
    return n;
}

static int arm_recv(tl_loop *loop, uint32_t id)
{
    tli_uring *u = loop->uring;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    io_uring_prep_recv_multishot(sqe, u->s[id].io->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, UD(id, OP_RECV));
    u->s[id].recv_armed = true;
    u->s[id].armed_seq = u->seq;
    return 0;
}

static int cancel_recv(tl_loop *loop, uint32_t id)
{
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    io_uring_prep_cancel64(sqe, UD(id, OP_RECV), 0);
    io_uring_sqe_set_data64(sqe, 0);
    loop->uring->s[id].recv_cancelled = true;
    return 0;
}

static int submit_send(tl_loop *loop, uint32_t id)
{
    tli_uring *u = loop->uring;
    stream *s = &u->s[id];
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    /* MSG_WAITALL: the kernel itself sends the rest of a short send before it completes. */
    io_uring_prep_send(sqe, s->io->fd, s->tx + s->tx_off, s->tx_len - s->tx_off,
                       s->tx_flags | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, UD(id, OP_SEND));
    s->send_armed = true;
    s->armed_seq = u->seq;
    return 0;
}

/* The round's staged bytes leave, one send per stream for all that its writes staged since the
 * last round (a response's records, a download's chunks: one request, one copy). */
static void send_queued(tl_loop *loop)
{
    tli_uring *u = loop->uring;
    uint32_t id = u->txq, later = 0;
    u->txq = 0;
    while (id) {
        stream *s = &u->s[id];
        uint32_t next = s->next_tx;
        if (!s->send_armed && s->tx_off < s->tx_len && submit_send(loop, id) != 0) {
            s->next_tx = later;   /* no submission entry even after submitting: next round */
            later = id;
        } else {
            s->tx_queued = false;
            maybe_free(u, id);
        }
        id = next;
    }
    u->txq = later;
}

/* Receive while the watcher wants to read; stop (cancel) while it does not, so a paused reader
 * takes no more buffers from the ring. */
static int stream_apply(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    uint32_t id = io->ticket;
    stream *s = &u->s[id];
    int rc = 0;
    if (io->want & TL_READABLE) {
        if (!s->recv_armed && !s->rx_eof && !s->rx_err && !s->starved)
            rc = arm_recv(loop, id);
    } else if (s->recv_armed && !s->recv_cancelled) {
        rc = cancel_recv(loop, id);
    }
    io->registered = io->want;
    if (io->want)
        mark_hot(u, id);
    return rc;
}

/* The watcher leaves; its slot stays while requests are in flight. A request still in the
 * submission queue names the fd, which is closed (and may be reused) when we return: submit it
 * now, while the number still means this socket. */
static void stream_forget(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    uint32_t id = io->ticket;
    stream *s = &u->s[id];
    while (s->rx_head != NO_BUF) {
        uint16_t bid = s->rx_head;
        s->rx_head = u->buf_next[bid];
        buf_give(u, bid);
    }
    s->rx_tail = NO_BUF;
    if (s->recv_armed && !s->recv_cancelled)
        cancel_recv(loop, id);
    if (!s->send_armed && s->tx_off < s->tx_len)
        submit_send(loop, id);   /* staged before the close: it leaves, as send(2) would have */
    if ((s->recv_armed || s->send_armed) && s->armed_seq == u->seq) {
        io_uring_submit(&u->ring);
        u->seq++;
    }
    s->io = NULL;
    io->stream = false;
    io->ticket = 0;
    io->want = io->registered = 0;
    maybe_free(u, id);
}

static void wake_starved(tl_loop *loop)
{
    tli_uring *u = loop->uring;
    while (u->starved) {
        uint32_t id = u->starved;
        stream *s = &u->s[id];
        u->starved = s->next_starved;
        s->starved = false;
        if (s->io && (s->io->want & TL_READABLE))
            tl_io_set(loop, s->io, s->io->want);   /* armed again next iteration */
        maybe_free(u, id);
    }
}

static void recv_done(tl_loop *loop, uint32_t id, const struct io_uring_cqe *cqe)
{
    tli_uring *u = loop->uring;
    stream *s = &u->s[id];
    if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (!s->io) {
            buf_give(u, bid);
        } else {
            u->buf_len[bid] = (uint32_t)cqe->res;
            u->buf_next[bid] = NO_BUF;
            if (s->rx_tail != NO_BUF)
                u->buf_next[s->rx_tail] = bid;
            else
                s->rx_head = bid;
            s->rx_tail = bid;
        }
    } else if (cqe->res == 0) {
        s->rx_eof = true;
    } else if (cqe->res == -ENOBUFS) {
        if (s->io && !s->starved) {
            s->starved = true;
            s->next_starved = u->starved;
            u->starved = id;
        }
        if (buf_grow(u))
            wake_starved(loop);
    } else if (cqe->res < 0 && cqe->res != -ECANCELED) {
        s->rx_err = -cqe->res;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        s->recv_armed = s->recv_cancelled = false;
        /* Ended for another reason than ours (or cancelled, then wanted again): again. */
        if (s->io && (s->io->want & TL_READABLE) && !s->starved)
            tl_io_set(loop, s->io, s->io->want);
    }
    if (s->io)
        mark_hot(u, id);
    maybe_free(u, id);
}

static void send_done(tl_loop *loop, uint32_t id, const struct io_uring_cqe *cqe)
{
    tli_uring *u = loop->uring;
    stream *s = &u->s[id];
    s->send_armed = false;
    if (cqe->res > 0) {
        s->tx_off += (uint32_t)cqe->res;
        if (s->tx_off < s->tx_len && s->io && submit_send(loop, id) == 0)
            return;   /* taken meanwhile, or short (MSG_WAITALL gave up): the rest */
    } else if (cqe->res < 0 && s->io) {
        s->tx_err = -cqe->res;
    }
    stage_put(u, s);
    s->tx_len = s->tx_off = 0;
    if (s->io)
        mark_hot(u, id);
    maybe_free(u, id);
}

static int uring_stream(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    if (!u->br)
        return -1;
    if (!u->s_free) {
        uint32_t cap = u->s_cap ? u->s_cap * 2 : 256;
        stream *t = realloc(u->s, cap * sizeof *t);
        if (!t)
            return -1;
        for (uint32_t i = cap - 1; i >= (u->s_cap ? u->s_cap : 1); i--) {
            t[i] = (stream){.next = u->s_free};
            u->s_free = i;
        }
        u->s = t;
        u->s_cap = cap;
    }
    unsigned want = io->want;
    cancel(loop, io);   /* a poll in flight from before */
    tli_io_unlink_change(loop, io);
    uint32_t id = u->s_free;
    u->s_free = u->s[id].next;
    u->s[id] = (stream){.io = io, .rx_head = NO_BUF, .rx_tail = NO_BUF};
    io->stream = true;
    io->ticket = id;
    io->registered = 0;
    if (want)
        tl_io_set(loop, io, want);
    return 0;
}

static ssize_t uring_recv(tl_loop *loop, tl_io *io, void *buf, size_t len)
{
    tli_uring *u = loop->uring;
    stream *s = slot(u, io);
    if (s->rx_head == NO_BUF) {
        errno = s->rx_err ? s->rx_err : EAGAIN;
        return s->rx_eof && !s->rx_err ? 0 : -1;
    }
    size_t got = 0;
    bool gave = false;
    while (got < len && s->rx_head != NO_BUF) {
        uint16_t bid = s->rx_head;
        size_t n = u->buf_len[bid] - s->rx_off;
        if (n > len - got)
            n = len - got;
        memcpy((uint8_t *)buf + got, u->bufs + (size_t)bid * BUF_SIZE + s->rx_off, n);
        got += n;
        s->rx_off += (uint32_t)n;
        if (s->rx_off == u->buf_len[bid]) {
            s->rx_head = u->buf_next[bid];
            if (s->rx_head == NO_BUF)
                s->rx_tail = NO_BUF;
            s->rx_off = 0;
            buf_give(u, bid);
            gave = true;
        }
    }
    if (gave && u->starved)
        wake_starved(loop);
    return (ssize_t)got;
}

/* Bytes are staged while the buffer has room, also behind a send in flight (the kernel gets
 * them when it completes: one send in flight per socket keeps them in order); a stream's bytes of
 * one round leave together when it ends (send_queued). A small buffer not yet in flight becomes a
 * big one when a write needs more room. */
static ssize_t uring_send(tl_loop *loop, tl_io *io, const void *buf, size_t len, int flags)
{
    tli_uring *u = loop->uring;
    uint32_t id = io->ticket;
    stream *s = &u->s[id];
    if (s->tx_err) {
        errno = s->tx_err;
        return -1;
    }
    if (!len)
        return 0;
    if (!s->tx) {
        stage_get(u, s, len);
    } else if (!s->send_armed && s->tx_cap == STAGE_SMALL && s->tx_len + len > STAGE_SMALL) {
        stage_grow(u, s);
    }
    if (!s->tx) {
        errno = ENOMEM;
        return -1;
    }
    size_t room = s->tx_cap - s->tx_len;
    if (!room) {
        errno = EAGAIN;
        return -1;
    }
    size_t n = len < room ? len : room;
    memcpy(s->tx + s->tx_len, buf, n);
    s->tx_len += (uint32_t)n;
    s->tx_flags = flags;
    if (!s->send_armed && !s->tx_queued) {
        s->tx_queued = true;
        s->next_tx = u->txq;
        u->txq = id;
    }
    return (ssize_t)n;
}

static size_t uring_unsent(const tl_loop *loop, const tl_io *io)
{
    const stream *s = &loop->uring->s[io->ticket];
    return s->tx_len - s->tx_off;
}

/* ---- listeners: multishot (or single-shot) accepts ---- */

static int uring_listen(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    if (u->accept_mode == ACCEPT_POLL)
        return -1;
    if (!u->a_free) {
        uint32_t cap = u->a_cap ? u->a_cap * 2 : 16;
        acceptor *t = realloc(u->a, cap * sizeof *t);
        if (!t)
            return -1;
        for (uint32_t i = cap - 1; i >= (u->a_cap ? u->a_cap : 1); i--) {
            t[i] = (acceptor){.next = u->a_free};
            u->a_free = i;
        }
        u->a = t;
        u->a_cap = cap;
    }
    unsigned want = io->want;
    cancel(loop, io);   /* a poll in flight from before */
    tli_io_unlink_change(loop, io);
    uint32_t id = u->a_free;
    u->a_free = u->a[id].next;
    u->a[id] = (acceptor){.io = io};
    io->accepting = (uint8_t)u->accept_mode;
    io->ticket = id;
    io->registered = 0;
    if (want)
        tl_io_set(loop, io, want);
    return 0;
}

static void acceptor_put(tli_uring *u, uint32_t id)
{
    u->a[id] = (acceptor){.next = u->a_free};
    u->a_free = id;
}

static int cancel_accept(tl_loop *loop, uint32_t id)
{
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    io_uring_prep_cancel64(sqe, UD(id, OP_ACCEPT), 0);
    io_uring_sqe_set_data64(sqe, 0);
    loop->uring->a[id].cancelled = true;
    return 0;
}

/* Accept while the watcher asks for TL_READABLE, cancel while it does not (paused, throttled). A
 * cancel on its way is not undone: the accept's last completion re-arms it if still wanted. */
static int accept_apply(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    uint32_t id = io->ticket;
    acceptor *a = &u->a[id];
    io->registered = io->want;
    if (!(io->want & TL_READABLE))
        return a->armed && !a->cancelled ? cancel_accept(loop, id) : 0;
    if (a->armed)
        return 0;
    struct io_uring_sqe *sqe = sqe_get(loop);
    if (!sqe)
        return -1;
    /* No address: one buffer would serve every completion of a multishot accept; the listener
     * asks getpeername for each socket instead. */
    if (io->accepting == ACCEPT_MULTISHOT)
        io_uring_prep_multishot_accept(sqe, io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(id, OP_ACCEPT));
    a->armed = true;
    return 0;
}

/* The watcher leaves, and the listening socket is closed next: the cancel goes to the kernel now,
 * since the accept in flight holds a reference to the socket (it would go on accepting). */
static void accept_forget(tl_loop *loop, tl_io *io)
{
    tli_uring *u = loop->uring;
    uint32_t id = io->ticket;
    acceptor *a = &u->a[id];
    a->io = NULL;
    if (a->armed && !a->cancelled)
        cancel_accept(loop, id);
    if (a->armed) {
        io_uring_submit(&u->ring);
        u->seq++;
    } else {
        acceptor_put(u, id);
    }
    io->accepting = 0;
    io->ticket = 0;
    io->want = io->registered = 0;
}

static void accept_done(tl_loop *loop, uint32_t id, const struct io_uring_cqe *cqe)
{
    tli_uring *u = loop->uring;
    acceptor *a = &u->a[id];
    tl_io *io = a->io;
    if (cqe->res >= 0) {
        a->got = true;
        if (io)
            tli_listen_took(loop, io, cqe->res);
        else
            close(cqe->res);   /* accepted while the cancel was on its way */
    } else if (cqe->res == -EINVAL && io && io->accepting == ACCEPT_MULTISHOT && !a->got) {
        u->accept_mode = io->accepting = ACCEPT_SINGLE;   /* a kernel before 5.19 */
    } else if (cqe->res != -ECANCELED && !tli_accept_transient(-cqe->res) && io) {
        tli_listen_failed(loop, io, -cqe->res);
    }
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    a->armed = a->cancelled = false;
    if (!io)
        acceptor_put(u, id);
    else if (io->want & TL_READABLE)
        tl_io_set(loop, io, io->want);   /* ended (single-shot, an error, cancelled): again */
}

/* ---- the backend ---- */

static int uring_apply(tl_loop *loop, tl_io *io)
{
    if (io->accepting)
        return accept_apply(loop, io);
    if (io->stream)
        return stream_apply(loop, io);
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
    io_uring_sqe_set_data64(sqe, UD(id, OP_POLL));
    io->ticket = id;
    io->registered = io->want;
    return 0;
}

/* Even when the fd is about to close: the ring holds a reference to the file while a poll is in
 * flight, so the socket would live on (no FIN) until the request is cancelled. */
static void uring_forget(tl_loop *loop, tl_io *io, bool closing)
{
    (void)closing;
    if (io->accepting) {
        accept_forget(loop, io);
        return;
    }
    if (io->stream) {
        stream_forget(loop, io);
        return;
    }
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
    send_queued(loop);
    /* A stream with events left from the last iteration is reported again: no sleeping. */
    if (u->hot && (walk_hot(loop, 0, false), u->hot))
        timeout_ms = 0;
    if (timeout_ms == 0 || io_uring_cq_ready(&u->ring)) {
        rc = io_uring_submit(&u->ring);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts,
                                              NULL);
    }
    u->seq++;
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
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        uint64_t id = ud >> 2;
        if (ud == 0)
            continue;   /* a cancel's own completion */
        if ((ud & 3) == OP_ACCEPT) {
            if (id < u->a_cap)
                accept_done(loop, (uint32_t)id, cqe);
            continue;
        }
        if ((ud & 3) != OP_POLL) {
            if (id < u->s_cap)
                ((ud & 3) == OP_RECV ? recv_done : send_done)(loop, (uint32_t)id, cqe);
            continue;
        }
        if (id >= u->cap)
            continue;
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
    return u->hot ? walk_hot(loop, n, true) : n;
}

static void uring_destroy(tl_loop *loop)
{
    tli_uring *u = loop->uring;
    if (!u)
        return;
    /* Sockets accepted for listeners that left, not yet reaped: they are ours to close. */
    struct io_uring_cqe *cqe;
    unsigned head;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if (ud && (ud & 3) == OP_ACCEPT && cqe->res >= 0)
            close(cqe->res);
    }
    io_uring_queue_exit(&u->ring);   /* ends every request: nothing points into what follows */
    for (uint32_t i = 1; i < u->s_cap; i++)
        free(u->s[i].tx);
    for (int i = 0; i < u->nspare; i++)
        free(u->spare[i]);
    for (int i = 0; i < u->nspare_big; i++)
        free(u->spare_big[i]);
    if (u->br) {
        munmap(u->br, BUF_COUNT * sizeof(struct io_uring_buf));
        munmap(u->bufs, (size_t)BUF_COUNT * BUF_SIZE);
    }
    free(u->s);
    free(u->t);
    free(u->a);
    free(u);
    loop->uring = NULL;
}

const tli_backend tli_uring_backend = {
    .name = "io_uring",
    .apply = uring_apply,
    .forget = uring_forget,
    .wait = uring_wait,
    .destroy = uring_destroy,
    .stream = uring_stream,
    .recv = uring_recv,
    .send = uring_send,
    .unsent = uring_unsent,
    .listen = uring_listen,
};

/* The provided-buffer ring streams receive into. Where the kernel has none (before 5.19) or
 * TLSLOOP_IO_STREAMS=0 asks, streams are declined and their sockets run on polls and recv. */
static void setup_bufs(tli_uring *u)
{
    const char *env = getenv("TLSLOOP_IO_STREAMS");
    if (env && strcmp(env, "0") == 0)
        return;
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    size_t buf_bytes = (size_t)BUF_COUNT * BUF_SIZE;
    void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    void *bufs = mmap(NULL, buf_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)br, .ring_entries = BUF_COUNT,
                                   .bgid = BUF_GROUP};
    if (br == MAP_FAILED || bufs == MAP_FAILED ||
        io_uring_register_buf_ring(&u->ring, &reg, 0) != 0) {
        if (br != MAP_FAILED)
            munmap(br, ring_bytes);
        if (bufs != MAP_FAILED)
            munmap(bufs, buf_bytes);
        return;
    }
    u->br = br;
    u->bufs = bufs;
    io_uring_buf_ring_init(u->br);
    buf_grow(u);
}

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
    setup_bufs(u);
    /* Listeners: multishot accepts unless TLSLOOP_IO_ACCEPT says single or poll (to compare). */
    const char *acc = getenv("TLSLOOP_IO_ACCEPT");
    u->accept_mode = acc && strcmp(acc, "single") == 0 ? ACCEPT_SINGLE
                     : acc && strcmp(acc, "poll") == 0 ? ACCEPT_POLL
                                                       : ACCEPT_MULTISHOT;
    loop->uring = u;
    loop->be = &tli_uring_backend;
    return 0;
}
