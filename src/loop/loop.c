/* loop.c - the event loop's policy: iterations, batched interest changes, the timer heap, posts
 * from other threads, signals, deferred frees. The kernel's side is a backend (loop_epoll.c,
 * loop_uring.c); listeners are loop_listen.c, the task pool loop_pool.c, a loop thread's time
 * slice loop_sched.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop_int.h"
#include "util/tli.h"

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- fd watchers (the rest is loop_io.c) ---- */

static int apply_changes(tl_loop *loop)
{
    int rc = 0;
    while (loop->changes) {
        tl_io *io = loop->changes;
        tli_io_unlink_change(loop, io);
        if (loop->be->apply(loop, io) != 0)
            rc = -1;
    }
    return rc;
}

/* ---- timers: a binary min-heap of pointers; t->slot is its index + 1 ---- */

static bool earlier(const tl_timer *a, const tl_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_place(tl_loop *loop, size_t i, tl_timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(t, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void sift_down(tl_loop *loop, size_t i)
{
    tl_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && earlier(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!earlier(loop->heap[child], t))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

void tl_timer_init(tl_timer *t, tl_timer_cb cb, void *data)
{
    memset(t, 0, sizeof *t);
    t->cb = cb;
    t->data = data;
}

void tl_timer_stop(tl_loop *loop, tl_timer *t)
{
    if (!t->slot)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    tl_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_place(loop, i, last);
    if (i > 0 && earlier(last, loop->heap[(i - 1) / 2]))
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

int tl_timer_start(tl_loop *loop, tl_timer *t, uint64_t after_ms)
{
    tl_timer_stop(loop, t);
    if (loop->nheap == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        tl_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (!h)
            return -1;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->due_ms = tl_loop_now(loop) + after_ms;
    t->seq = loop->timer_seq++;
    loop->heap[loop->nheap] = t;
    loop->nheap++;
    sift_up(loop, loop->nheap - 1);
    return 0;
}

size_t tl_loop_timer_count(const tl_loop *loop) { return loop->nheap; }

/* Run the timers due now that were armed before this pass began: a timer re-armed with 0 ms from
 * its own callback waits for the next iteration instead of spinning here. */
static int run_timers(tl_loop *loop)
{
    uint64_t now = tl_loop_now(loop), seq_limit = loop->timer_seq;
    int ran = 0;
    while (loop->nheap > 0) {
        tl_timer *t = loop->heap[0];
        if (t->due_ms > now || t->seq >= seq_limit)
            break;
        tl_timer_stop(loop, t);
        t->cb(loop, t);
        ran++;
    }
    return ran;
}

static int next_timeout(tl_loop *loop, int timeout_ms)
{
    if (loop->nheap == 0)
        return timeout_ms;
    uint64_t due = loop->heap[0]->due_ms, now = tl_loop_now(loop);
    int until = due <= now ? 0 : due - now > 3600000 ? 3600000 : (int)(due - now);
    return timeout_ms < 0 || until < timeout_ms ? until : timeout_ms;
}

/* ---- posts ---- */

/* The loop whose iteration runs on this thread now, if any: a post from inside the loop's own
 * callbacks needs no wake-up through the eventfd (two system calls), only a zero wait next. */
static __thread tl_loop *current_loop;

void tl_loop_post(tl_loop *loop, tl_work *w)
{
    if (current_loop == loop) {
        w->loop = loop;
        w->next = NULL;
        pthread_mutex_lock(&loop->post_lock);   /* other threads may post at the same time */
        if (loop->post_tail)
            loop->post_tail->next = w;
        else
            loop->post_head = w;
        loop->post_tail = w;
        pthread_mutex_unlock(&loop->post_lock);
        loop->self_posted = true;
        return;
    }
    w->loop = loop;
    w->next = NULL;
    pthread_mutex_lock(&loop->post_lock);
    bool was_empty = loop->post_head == NULL;
    if (loop->post_tail)
        loop->post_tail->next = w;
    else
        loop->post_head = w;
    loop->post_tail = w;
    pthread_mutex_unlock(&loop->post_lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n = write(loop->wakefd, &one, sizeof one);
        (void)n; /* EAGAIN means the counter is already non-zero: the loop will wake */
    }
}

static void on_wake(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    (void)n;
    (void)loop;
}

/* Move the queued posts to the ready list (which must be empty). */
static void take_posts(tl_loop *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    loop->ready_head = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
}

/* Run up to TL_LOOP_MAX_POSTS posted items. Whenever the ready list runs dry the queue is taken
 * again, and it is taken once more at the end: a post queued after the eventfd was drained is
 * then either run now or left on the ready list, which makes the next wait zero. Either way no
 * post waits for a wake-up that already happened. */
static int run_posts(tl_loop *loop)
{
    int ran = 0;
    for (;;) {
        if (!loop->ready_head) {
            take_posts(loop);
            if (!loop->ready_head)
                loop->self_posted = false;   /* ours ran too: no reason for a zero wait */
        }
        if (!loop->ready_head || ran >= TL_LOOP_MAX_POSTS)
            return ran;
        tl_work *w = loop->ready_head;
        loop->ready_head = w->next;
        w->next = NULL;
        w->done(loop, w);
        ran++;
    }
}

/* ---- signals ---- */

static void on_signal(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int signo = (int)si.ssi_signo;
        if (signo > 0 && signo < 65 && loop->sig[signo].cb)
            loop->sig[signo].cb(loop, signo, loop->sig[signo].data);
    }
}

int tl_signals_block(const int *signos, size_t n)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < n; i++)
        sigaddset(&set, signos[i]);
    return pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

int tl_loop_on_signal(tl_loop *loop, int signo, void (*cb)(tl_loop *, int, void *), void *data)
{
    if (signo <= 0 || signo >= 65 || !cb) {
        tli_fmt(loop->err, sizeof loop->err, "on_signal: bad signal number %d", signo);
        return -1;
    }
    if (tl_signals_block(&signo, 1) != 0)
        return -1;
    sigaddset(&loop->sigmask, signo);
    int fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        tli_fmt(loop->err, sizeof loop->err, "signalfd: %s", strerror(errno));
        return -1;
    }
    if (loop->sigfd < 0) {
        loop->sigfd = fd;
        tl_io_init(&loop->sig_io, fd, on_signal, NULL);
        tl_io_set(loop, &loop->sig_io, TL_READABLE);
    }
    loop->sig[signo] = (sig_handler){cb, data};
    return 0;
}

/* ---- the loop ---- */

int tl_io_backend_parse(const char *text, tl_io_backend *out)
{
    static const struct { const char *name; tl_io_backend io; } names[] = {
        {"epoll", TL_IO_EPOLL}, {"uring", TL_IO_URING}, {"io_uring", TL_IO_URING},
        {"auto", TL_IO_AUTO},
    };
    for (size_t i = 0; text && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].io;
            return 0;
        }
    return -1;
}

const char *tl_io_backend_name(tl_io_backend io)
{
    switch (io) {
    case TL_IO_EPOLL: return "epoll";
    case TL_IO_URING: return "uring";
    case TL_IO_AUTO: return "auto";
    case TL_IO_DEFAULT: break;
    }
    return "default";
}

/* TL_IO_DEFAULT: the environment's choice (TLSLOOP_IO), else epoll. */
static tl_io_backend resolve(tl_io_backend io, char *note, size_t notelen)
{
    if (io != TL_IO_DEFAULT)
        return io;
    const char *env = getenv("TLSLOOP_IO");
    if (!env || !*env)
        return TL_IO_EPOLL;
    if (tl_io_backend_parse(env, &io) == 0)
        return io;
    tli_fmt(note, notelen, "TLSLOOP_IO=%.40s is not epoll, uring or auto: epoll", env);
    return TL_IO_EPOLL;
}

tl_loop *tl_loop_new(char *errbuf, size_t errlen) { return tl_loop_new_ex(NULL, errbuf, errlen); }

tl_loop *tl_loop_new_ex(const tl_loop_opts *opts, char *errbuf, size_t errlen)
{
    pthread_once(&sigpipe_once, ignore_sigpipe);
    tl_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        tli_fmt(errbuf, errlen, "out of memory");
        return NULL;
    }
    loop->dispatching = -1;
    loop->epfd = -1;
    loop->sigfd = -1;
    loop->wakefd = -1;
    sigemptyset(&loop->sigmask);
    pthread_mutex_init(&loop->post_lock, NULL);
    atomic_init(&loop->stop, false);
    tl_io_backend io = resolve(opts ? opts->io : TL_IO_DEFAULT, loop->be_note, sizeof loop->be_note);
    if (io == TL_IO_URING || io == TL_IO_AUTO) {
        char why[128];
        if (tli_uring_init(loop, why, sizeof why) != 0)
            tli_fmt(loop->be_note, sizeof loop->be_note, "io_uring: %s; running on epoll", why);
    }
    if (!loop->be && tli_epoll_init(loop, errbuf, errlen) != 0) {
        tl_loop_free(loop);
        return NULL;
    }
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0) {
        tli_fmt(errbuf, errlen, "eventfd: %s", strerror(errno));
        tl_loop_free(loop);
        return NULL;
    }
    tl_io_init(&loop->wake_io, loop->wakefd, on_wake, NULL);
    tl_io_set(loop, &loop->wake_io, TL_READABLE);
    loop->now_ns = clock_ns();
    return loop;
}

const char *tl_loop_backend(const tl_loop *loop) { return loop->be->name; }
const char *tl_loop_backend_note(const tl_loop *loop) { return loop->be_note; }

void tl_loop_free(tl_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->ndeferred; i++)
        free(loop->deferred[i]);
    free(loop->deferred);
    free(loop->heap);
    /* The backend first: io_uring's poll requests hold references to these files. */
    if (loop->be)
        loop->be->destroy(loop);
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
}

void tl_loop_stop(tl_loop *loop)
{
    atomic_store(&loop->stop, true);
    uint64_t one = 1;
    ssize_t n = write(loop->wakefd, &one, sizeof one);
    (void)n;
}

uint64_t tl_loop_now(const tl_loop *loop) { return loop->now_ns / 1000000u; }
uint64_t tl_loop_now_ns(const tl_loop *loop) { return loop->now_ns; }
void tl_loop_update_time(tl_loop *loop) { loop->now_ns = clock_ns(); }
const char *tl_loop_error(const tl_loop *loop) { return loop->err; }

void tl_loop_set_before_sleep(tl_loop *loop, void (*cb)(tl_loop *, void *), void *data)
{
    loop->before_sleep = cb;
    loop->before_sleep_data = data;
}

void tl_loop_defer_free(tl_loop *loop, void *p)
{
    if (!p)
        return;
    if (loop->ndeferred == loop->deferred_cap) {
        size_t cap = loop->deferred_cap ? loop->deferred_cap * 2 : 16;
        void **d = realloc(loop->deferred, cap * sizeof *d);
        if (!d) {
            /* Cannot defer: nothing in this iteration may still use it once the caller decided
             * to free, except the batch we already cleaned in tl_io_stop. Free now. */
            free(p);
            return;
        }
        loop->deferred = d;
        loop->deferred_cap = cap;
    }
    loop->deferred[loop->ndeferred++] = p;
}

static int dispatch(tl_loop *loop, int n)
{
    int ran = 0;
    loop->nevents = n;
    for (int i = 0; i < n; i++) {
        loop->dispatching = i;
        tl_io *io = loop->ready[i].io;
        if (!io)
            continue; /* stopped by an earlier callback of this batch */
        /* Only what was asked for, plus hang-ups (which readers must see): the backend kept
         * those. */
        unsigned ev = loop->ready[i].events;
        if (ev) {
            io->cb(loop, io, ev);
            ran++;
        }
    }
    loop->dispatching = -1;
    loop->nevents = 0;
    return ran;
}

int tl_loop_run_once(tl_loop *loop, int timeout_ms)
{
    tl_loop *outer = current_loop;   /* a loop run from inside another's callback (tests) */
    current_loop = loop;
    int ran = -1;
    if (apply_changes(loop) != 0)
        goto out;
    if (loop->before_sleep) {
        loop->before_sleep(loop, loop->before_sleep_data);
        if (apply_changes(loop) != 0)
            goto out;
    }
    bool own_posts = loop->self_posted;
    loop->self_posted = false;
    int wait = loop->ready_head || own_posts || loop->listed || atomic_load(&loop->stop)
                   ? 0
                   : next_timeout(loop, timeout_ms);
    int n = loop->be->wait(loop, wait);
    if (n < 0)
        goto out;
    n = tli_listen_report(loop, n);   /* listeners with accepted sockets to hand over */
    loop->now_ns = clock_ns();
    ran = dispatch(loop, n);
    ran += run_posts(loop);
    ran += run_timers(loop);
    for (size_t i = 0; i < loop->ndeferred; i++)
        free(loop->deferred[i]);
    loop->ndeferred = 0;
out:
    current_loop = outer;
    return ran;
}

int tl_loop_run(tl_loop *loop)
{
    int rc = 0;
    while (!atomic_load(&loop->stop) && rc == 0)
        if (tl_loop_run_once(loop, -1) < 0)
            rc = -1;
    atomic_store(&loop->stop, false); /* a stop is used up by the run it ended */
    return rc;
}
