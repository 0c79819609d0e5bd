/*
 * tlsloop/loop.h - an event loop on epoll or io_uring: fd watchers, listeners that hand over
 * accepted sockets, timers, cross-thread posts, signals, a task pool for work that must not run
 * on a loop, and a short scheduler time slice for loop threads so their wake-ups preempt that
 * work.
 *
 * One loop per thread, never a global one: every function takes the loop it acts on. A loop runs
 * on the thread that calls tl_loop_run; everything here is for that thread only, except
 * tl_loop_post, tl_loop_stop and tl_pool_submit, which any thread may call.
 *
 * One iteration:
 *   1. apply the batched fd interest changes (one epoll_ctl per watcher whose interest changed
 *      since the last iteration, however often it changed; with io_uring, one poll request
 *      queued on the ring);
 *   2. run the before-sleep hook;
 *   3. wait until an fd is ready, the nearest timer is due, or a post arrives (epoll_wait; with
 *      io_uring, one io_uring_enter that also submits the iteration's requests);
 *   4. read the monotonic clock (once: tl_loop_now is constant for the rest of the iteration);
 *   5. call the ready watchers' callbacks, then the callbacks of the posts, then of due timers.
 *
 * Watchers, timers and posted work items are structs the caller embeds in its own objects (no
 * allocation per event). A watcher's callback may stop any watcher or timer, including itself,
 * and may free its own object only after stopping its watcher and timers; memory that other events
 * of the same iteration may still point to is best released with tl_loop_defer_free, which frees
 * after the iteration's callbacks.
 *
 * Level-triggered readiness: a watcher keeps being called while its fd is ready and it asked for
 * that event. Interest follows state: ask for TL_WRITABLE only while there is output to send.
 *
 * Timers live in a binary min-heap: start, stop and expiry cost O(log n), 100,000 armed timers
 * included; a timer that is due is called once per expiry, in due order.
 *
 * Errors: functions that can fail return 0 or -1 and never touch errno for the caller; the loop's
 * last error text is tl_loop_error. A fatal epoll failure ends tl_loop_run with -1.
 *
 * Backends: epoll, or io_uring (liburing) where the kernel allows it. A loop that asks for
 * io_uring and cannot have it (io_uring_disabled, a seccomp filter, an old kernel) runs on epoll
 * and says why in tl_loop_backend_note; making a loop never fails for that reason.
 */
#ifndef TLSLOOP_LOOP_H
#define TLSLOOP_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fairness caps: how much one watcher may do per iteration before others get their turn. */
#define TL_LOOP_MAX_EVENTS 256          /* ready fds taken from the kernel per iteration */
#define TL_LOOP_MAX_POSTS 1024          /* posted items run per iteration (the rest next time) */
#define TL_LOOP_MAX_ACCEPTS 64          /* sockets a listener hands over per iteration */

typedef struct tl_loop tl_loop;

/* ---- fd watchers ---- */

#define TL_READABLE 0x1u
#define TL_WRITABLE 0x2u
#define TL_HANGUP 0x4u   /* reported only: the peer hung up or the socket failed (EPOLLHUP/ERR/RDHUP) */

typedef struct tl_io tl_io;
typedef void (*tl_io_cb)(tl_loop *loop, tl_io *io, unsigned events);

struct tl_io {
    int fd;
    uint8_t want;         /* interest asked for (TL_READABLE | TL_WRITABLE) */
    uint8_t registered;   /* interest the kernel has; private */
    bool queued;          /* on the loop's change list; private */
    bool stream;          /* private: completion I/O (tl_io_stream) */
    uint8_t accepting;    /* private: io_uring accepts for a tl_listen (1 multishot, 2 single) */
    uint32_t ticket;      /* private: io_uring, the poll request in flight or the stream's slot */
    tl_io *next_change;   /* private: the change list is doubly linked, so stop is O(1) */
    tl_io *prev_change;   /* private */
    tl_io_cb cb;
    void *data;           /* the caller's */
};

/* Prepare a watcher for fd (not yet watching anything). */
TL_API void tl_io_init(tl_io *io, int fd, tl_io_cb cb, void *data);
/* Watch for these events from the next iteration on (0: none). Cheap: changes are batched. */
TL_API void tl_io_set(tl_loop *loop, tl_io *io, unsigned events);
/* Stop watching now (call before closing the fd). Safe on a watcher that never watched. */
TL_API void tl_io_stop(tl_loop *loop, tl_io *io);
/* Stop watching because the fd is closed right after, without a system call: closing the last
 * descriptor of a socket takes it out of epoll by itself. Only for an fd no other descriptor
 * (dup, a forked child) refers to; otherwise the epoll entry would outlive the watcher. */
TL_API void tl_io_stop_closing(tl_loop *loop, tl_io *io);

/* ---- completion I/O on stream sockets ----
 * On an io_uring loop the watcher of a connected stream socket can move from readiness to
 * completions: the kernel receives into the loop's shared buffers (one multishot recv; an idle
 * socket holds no buffer of its own) and sends go out with the iteration's other submissions.
 * Its events then mean: TL_READABLE, bytes, the end of the stream or an error wait for
 * tl_io_recv; TL_WRITABLE, no send is in flight (the next tl_io_send is taken). Both stay
 * level-triggered. On an epoll loop tl_io_stream declines and tl_io_recv and tl_io_send are
 * recv(2) and send(2) on the watcher's fd. */

/* Move a watcher to completion I/O; false when the loop does readiness only (epoll, or io_uring
 * without provided-buffer rings). Call when the socket is connected. */
TL_API bool tl_io_stream(tl_loop *loop, tl_io *io);
/* Like recv(2): bytes copied, 0 at the end of the stream, or -1 with errno (EAGAIN: nothing yet;
 * the socket's error once the bytes before it are read). */
TL_API ssize_t tl_io_recv(tl_loop *loop, tl_io *io, void *buf, size_t len);
/* Like send(2) (flags such as MSG_NOSIGNAL, MSG_MORE): on a stream the bytes taken are copied
 * into the stream's staging buffer (32 KiB, or 256 KiB for bulk) and all a stream staged in one
 * iteration leaves in one send when it ends; -1 with EAGAIN when the buffer is full (also behind
 * a send in flight), with the send's errno after it failed. */
TL_API ssize_t tl_io_send(tl_loop *loop, tl_io *io, const void *buf, size_t len, int flags);
/* Bytes taken by tl_io_send that the kernel has not yet accepted (0 off streams): shut the
 * socket's writing side only after they are out. */
TL_API size_t tl_io_unsent(const tl_loop *loop, const tl_io *io);

/* ---- listening sockets ----
 * A listener hands its callback the sockets it accepts, each non-blocking and close-on-exec, with
 * the peer's address, at most TL_LOOP_MAX_ACCEPTS per iteration. On an io_uring loop one
 * multishot accept is in flight while the listener runs: the kernel accepts as connections come,
 * one completion each, with no readiness round trip and no accept4 call per connection (the peer's
 * address is then one getpeername). On epoll: readiness, then accept4(2) until the backlog is
 * empty. TLSLOOP_IO_ACCEPT=single (a one-shot accept, re-armed after each) or =poll (readiness
 * and accept4 as on epoll) picks another way on io_uring, for comparison.
 *
 * Pausing (at a limit) stops accepting: on io_uring the accept is cancelled, and connections wait
 * in the kernel's backlog as on epoll. A socket accepted while the cancel was on its way, or one
 * the callback refused, stays with the listener and is the first one offered after it resumes.
 * While sockets accepted by the kernel wait to be handed over (more than TL_LOOP_MAX_ACCEPTS came
 * in one iteration), the accept is cancelled too, so the backlog, not the process, holds what
 * cannot be served yet. */

typedef struct tl_listen tl_listen;
/* An accepted socket: return true when the callee took it (it owns fd from now on). Return false
 * to leave it with the listener, which offers it again first: in the next iteration, or, when the
 * callback paused the listener (the way to stop at a limit), after tl_listen_start resumes it. */
typedef bool (*tl_listen_cb)(tl_loop *loop, tl_listen *l, int fd, const struct sockaddr *peer,
                             socklen_t peerlen);
/* accept failed for another reason than an aborted connection: EMFILE, ENFILE, ENOBUFS, ENOMEM,
 * or a broken socket. The connection stays in the backlog. Pause the listener and resume it later
 * (a timer); a listener left running tries again in the next iteration. */
typedef void (*tl_listen_err_cb)(tl_loop *loop, tl_listen *l, int err);

struct tl_listen {
    tl_io io;                 /* private: io.fd is the listening socket */
    tl_listen_cb cb;
    tl_listen_err_cb on_error;
    void *data;               /* the caller's */
    int *held;                /* private: accepted, not yet taken (a ring of held_cap) */
    uint32_t held_head, held_n, held_cap;
    int err;                  /* private: an accept error for on_error */
    bool started;             /* private: the way of accepting is chosen */
    bool running;             /* private: started and not paused */
    bool throttled;           /* private: accept cancelled while held sockets wait */
    bool listed;              /* private: on the loop's list, offered in the next iteration */
    tl_listen *next_listed;   /* private */
};

/* Prepare a listener on a listening socket (non-blocking); on_error may be NULL (errors are then
 * only retried). Nothing is accepted before tl_listen_start. */
TL_API void tl_listen_init(tl_listen *l, int fd, tl_listen_cb cb, tl_listen_err_cb on_error,
                           void *data);
/* Start accepting, or resume after tl_listen_pause, from the next iteration on. Never fails: where
 * io_uring cannot accept (TLSLOOP_IO_ACCEPT=poll, no slot) the listener watches readiness. */
TL_API void tl_listen_start(tl_loop *loop, tl_listen *l);
/* Stop accepting until tl_listen_start; what is accepted already waits. Safe when not started. */
TL_API void tl_listen_pause(tl_loop *loop, tl_listen *l);
/* Stop for good: the accept in flight is cancelled at once (io_uring holds a reference to the
 * socket while it is in flight), sockets accepted and not taken are closed. Then the caller may
 * close the listening socket. Safe from the listener's own callbacks and when never started. */
TL_API void tl_listen_stop(tl_loop *loop, tl_listen *l);
/* The way this listener accepts: "multishot", "single" (io_uring) or "poll" (readiness and
 * accept4); "" before tl_listen_start. */
TL_API const char *tl_listen_mode(const tl_listen *l);
static inline int tl_listen_fd(const tl_listen *l) { return l->io.fd; }

/* ---- timers ---- */

typedef struct tl_timer tl_timer;
typedef void (*tl_timer_cb)(tl_loop *loop, tl_timer *t);

struct tl_timer {
    uint64_t due_ms;      /* private */
    size_t slot;          /* position in the heap + 1, 0 when not armed; private */
    uint64_t seq;         /* arming order, for ties; private */
    tl_timer_cb cb;
    void *data;           /* the caller's */
};

TL_API void tl_timer_init(tl_timer *t, tl_timer_cb cb, void *data);
/* Arm (or re-arm) to fire once, after_ms milliseconds from tl_loop_now. Returns 0, or -1 when the
 * heap cannot grow (out of memory). */
TL_API int tl_timer_start(tl_loop *loop, tl_timer *t, uint64_t after_ms);
/* Disarm; safe when not armed. */
TL_API void tl_timer_stop(tl_loop *loop, tl_timer *t);
static inline bool tl_timer_active(const tl_timer *t) { return t->slot != 0; }

/* ---- posted work (from any thread) and the task pool ---- */

typedef struct tl_work tl_work;
struct tl_work {
    void (*run)(tl_work *w);                  /* tl_pool_submit: runs on a pool thread */
    void (*done)(tl_loop *loop, tl_work *w);  /* runs on the loop that owns the work */
    void *data;                               /* the caller's */
    tl_loop *loop;                            /* private */
    tl_work *next;                            /* private */
};

/* Run w->done on the loop's thread soon (in the loop's next iteration, or this one). Any thread.
 * The item must stay valid until done runs. Never fails; the loop wakes through an eventfd. */
TL_API void tl_loop_post(tl_loop *loop, tl_work *w);

typedef struct tl_pool tl_pool;
/* A pool of `threads` worker threads at normal priority with every signal blocked (see
 * src/loop/loop_pool.c for why not SCHED_IDLE). NULL if no thread could start. */
TL_API tl_pool *tl_pool_new(unsigned threads);
/* Stop the threads after the queued work has run, and free the pool. NULL is a no-op. */
TL_API void tl_pool_free(tl_pool *pool);
/* Run w->run on a pool thread, then w->done on `owner`. Any thread. */
TL_API void tl_pool_submit(tl_pool *pool, tl_loop *owner, tl_work *w);
/* Items queued and not yet started (for metrics and tests). */
TL_API size_t tl_pool_queued(tl_pool *pool);

/* Ask the scheduler for a short time slice for the calling thread (Linux 6.12 or later; see
 * src/loop/loop_sched.c). A loop thread that sets one, say 100 us, preempts CPU-bound threads such as
 * task threads in a handshake when it wakes, instead of waiting up to a whole default slice
 * (~1.4 ms): this halved the p99 of requests during a handshake flood (docs/benchmarks.md, W6).
 * The kernel clamps slice_ns to 0.1-100 ms; 0 goes back to the default. The policy and the nice
 * value are kept. Returns 0 when applied; 1 when this kernel or the thread's policy has no such
 * slice, -1 when the call failed, both with the reason in err (may be NULL). */
TL_API int tl_thread_set_slice(uint64_t slice_ns, char *err, size_t errlen);

/* ---- the loop ---- */

/* The I/O backend of a loop. */
typedef enum tl_io_backend {
    TL_IO_DEFAULT = 0,   /* the environment's TLSLOOP_IO (epoll, uring, auto) if set, else epoll */
    TL_IO_EPOLL,
    TL_IO_URING,         /* io_uring; epoll (with a note) where the kernel refuses it */
    TL_IO_AUTO,          /* io_uring when the kernel allows it, else epoll */
} tl_io_backend;

typedef struct tl_loop_opts {
    tl_io_backend io;
} tl_loop_opts;

/* "epoll", "uring" or "auto" to a backend; returns 0, or -1 for any other text. */
TL_API int tl_io_backend_parse(const char *text, tl_io_backend *out);
/* "epoll", "uring", "auto" or "default". */
TL_API const char *tl_io_backend_name(tl_io_backend io);

/* A new loop. Also ignores SIGPIPE process-wide (once): writes use MSG_NOSIGNAL, and this is the
 * belt to those braces. NULL with a reason in errbuf (may be NULL) when epoll or eventfd fail. */
TL_API tl_loop *tl_loop_new(char *errbuf, size_t errlen);
/* A new loop with options (NULL: as tl_loop_new). */
TL_API tl_loop *tl_loop_new_ex(const tl_loop_opts *opts, char *errbuf, size_t errlen);
/* The backend this loop runs on: "epoll" or "io_uring". */
TL_API const char *tl_loop_backend(const tl_loop *loop);
/* Why a loop that asked for io_uring runs on epoll ("" when it got what it asked for). */
TL_API const char *tl_loop_backend_note(const tl_loop *loop);
/* Free the loop. Watchers and timers must be stopped; posts not yet run are dropped. */
TL_API void tl_loop_free(tl_loop *loop);
/* Run until tl_loop_stop. Returns 0, or -1 when epoll failed (see tl_loop_error). */
TL_API int tl_loop_run(tl_loop *loop);
/* Run one iteration, waiting at most timeout_ms (-1: as long as needed). Returns the number of
 * callbacks run, or -1 when epoll failed. */
TL_API int tl_loop_run_once(tl_loop *loop, int timeout_ms);
/* Make tl_loop_run return after the current iteration. Any thread. */
TL_API void tl_loop_stop(tl_loop *loop);

/* The monotonic clock as read at the start of this iteration, in milliseconds and nanoseconds. */
TL_API uint64_t tl_loop_now(const tl_loop *loop);
TL_API uint64_t tl_loop_now_ns(const tl_loop *loop);
/* Read the clock again now (for measurements inside a long callback). */
TL_API void tl_loop_update_time(tl_loop *loop);

/* Called in every iteration just before the loop may sleep (after interest changes are applied). */
TL_API void tl_loop_set_before_sleep(tl_loop *loop, void (*cb)(tl_loop *loop, void *data),
                                     void *data);

/* Free p after this iteration's callbacks have run. */
TL_API void tl_loop_defer_free(tl_loop *loop, void *p);

/* Signals as loop events: cb runs on the loop when signo arrives. The signal is blocked in the
 * calling thread; block it in every thread (tl_signals_block before creating threads) so the loop
 * sees it. Returns 0 or -1. */
TL_API int tl_loop_on_signal(tl_loop *loop, int signo, void (*cb)(tl_loop *loop, int signo,
                                                                  void *data), void *data);
/* Block these signals in the calling thread (threads created after inherit the mask). */
TL_API int tl_signals_block(const int *signos, size_t n);

TL_API const char *tl_loop_error(const tl_loop *loop);
/* Armed timers and watched fds (for tests and metrics). */
TL_API size_t tl_loop_timer_count(const tl_loop *loop);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_LOOP_H */
