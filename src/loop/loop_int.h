/* src/loop/loop_int.h - the loop's private structure and its epoll backend (loop_epoll.c),
 * shared by loop*.c only. */
#ifndef TLSLOOP_LOOP_INT_H
#define TLSLOOP_LOOP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>

#include <tlsloop/loop.h>

typedef struct sig_handler {
    void (*cb)(tl_loop *loop, int signo, void *data);
    void *data;
} sig_handler;

struct tl_loop {
    int epfd;
    struct epoll_event events[TL_LOOP_MAX_EVENTS];
    int nevents;            /* events of the batch being dispatched */
    int dispatching;        /* index of the event being dispatched, -1 outside dispatch */

    tl_io *changes;         /* watchers whose interest changed since the last iteration */

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

/* epoll backend */
int tli_epoll_create(char *err, size_t errlen);
/* Make the kernel's interest match io->want. Returns 0 or -1 with errno's text in err. */
int tli_epoll_apply(tl_loop *loop, tl_io *io);
/* Wait; returns the number of events, 0 on timeout or EINTR, -1 on failure (err set). */
int tli_epoll_wait(tl_loop *loop, int timeout_ms);
/* Our event bits for an epoll event mask. */
unsigned tli_epoll_events(uint32_t ev);

#endif /* TLSLOOP_LOOP_INT_H */
