/* src/loop/loop_int.h - the loop's private structure and the table of its two backends
 * (loop_epoll.c, loop_uring.c), shared by loop*.c only. */
#ifndef TLSLOOP_LOOP_INT_H
#define TLSLOOP_LOOP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>

#include <tlsloop/loop.h>

/* One ready watcher of a batch: dispatch calls io->cb(events) unless io was stopped meanwhile. */
typedef struct tli_ready {
    tl_io *io;
    unsigned events;   /* TL_READABLE | TL_WRITABLE | TL_HANGUP */
} tli_ready;

/* A backend: what the loop's policy (loop.c) asks of the kernel. */
typedef struct tli_backend {
    const char *name;
    /* Make the kernel's interest match io->want (io->registered says what it has). */
    int (*apply)(tl_loop *loop, tl_io *io);
    /* io leaves the loop; closing: its fd is closed right after, so epoll may skip the call. */
    void (*forget)(tl_loop *loop, tl_io *io, bool closing);
    /* Wait (submitting what is queued); fill loop->ready. Returns its count, 0 on timeout or
     * EINTR, -1 on failure with loop->err set. */
    int (*wait)(tl_loop *loop, int timeout_ms);
    void (*destroy)(tl_loop *loop);
    /* Completion I/O (tl_io_stream and the calls on a stream's watcher); NULL: readiness only. */
    int (*stream)(tl_loop *loop, tl_io *io);
    ssize_t (*recv)(tl_loop *loop, tl_io *io, void *buf, size_t len);
    ssize_t (*send)(tl_loop *loop, tl_io *io, const void *buf, size_t len, int flags);
    size_t (*unsent)(const tl_loop *loop, const tl_io *io);
    /* Accept on the listening socket of a tl_listen's watcher with completions (io->accepting
     * set; apply then arms or cancels the accept); -1: declined, the listener polls. NULL: the
     * backend only polls. */
    int (*listen)(tl_loop *loop, tl_io *io);
} tli_backend;

extern const tli_backend tli_epoll_backend;
extern const tli_backend tli_uring_backend;
typedef struct tli_uring tli_uring;

typedef struct sig_handler {
    void (*cb)(tl_loop *loop, int signo, void *data);
    void *data;
} sig_handler;

struct tl_loop {
    const tli_backend *be;
    int epfd;               /* epoll */
    tli_uring *uring;       /* io_uring */
    char be_note[160];      /* why io_uring was asked for and not used */
    tli_ready ready[TL_LOOP_MAX_EVENTS];
    int nevents;            /* events of the batch being dispatched */
    int dispatching;        /* index of the event being dispatched, -1 outside dispatch */

    tl_io *changes;         /* watchers whose interest changed since the last iteration */
    tl_listen *listed;      /* listeners with sockets to offer in the next iteration */

    tl_timer **heap;        /* min-heap on (due_ms, seq) */
    size_t nheap, heap_cap;
    uint64_t timer_seq;

    uint64_t now_ns;

    /* posts from any thread */
    int wakefd;             /* eventfd */
    tl_io wake_io;
    pthread_mutex_t post_lock;
    tl_work *post_head, *post_tail;
    tl_work *ready_head;    /* taken from the queue, not yet run (fairness cap) */
    bool self_posted;       /* the loop's own thread posted without a wake-up: wait 0 next */
    atomic_bool stop;

    /* signals */
    int sigfd;
    tl_io sig_io;
    sigset_t sigmask;
    sig_handler sig[65];

    void (*before_sleep)(tl_loop *loop, void *data);
    void *before_sleep_data;

    void **deferred;        /* freed after the iteration's callbacks */
    size_t ndeferred, deferred_cap;

    char err[160];
};

/* Take io off the change list (loop_io.c). */
void tli_io_unlink_change(tl_loop *loop, tl_io *io);

/* Listeners (loop_listen.c). A ready event of a listener's watcher that only offers the sockets
 * it holds (no accept4), from the list of listeners with sockets to offer. */
#define TLI_HELD 0x80u
/* A socket the backend accepted for the tl_listen of io, or the error its accept ended with. */
void tli_listen_took(tl_loop *loop, tl_io *io, int fd);
void tli_listen_failed(tl_loop *loop, tl_io *io, int err);
/* An accept error that concerns one connection only (aborted before it was taken): skip it. */
bool tli_accept_transient(int err);
/* Append the listed listeners to loop->ready from n on; returns the new count. */
int tli_listen_report(tl_loop *loop, int n);

/* Set up a backend on loop (loop->be is set on success). Return 0, or -1 with the reason in err;
 * io_uring's failure leaves the loop untouched, for the fall-back to epoll. */
int tli_epoll_init(tl_loop *loop, char *err, size_t errlen);
int tli_uring_init(tl_loop *loop, char *err, size_t errlen);

#endif /* TLSLOOP_LOOP_INT_H */
