/* test_loop_accept.c - listeners (tl_listen) in every way a loop accepts: epoll (readiness and
 * accept4), io_uring with a multishot accept, a single-shot one and polls (TLSLOOP_IO_ACCEPT).
 * N connections handed over with their peers' addresses and at most TL_LOOP_MAX_ACCEPTS per
 * iteration; pausing stops the kernel's accepts (connections wait in the backlog) and resuming
 * takes them, a refused socket first; a listener stopped while its accept is armed, or from its
 * own callback, calls nothing more and leaves no socket open; EMFILE reaches on_error and the
 * listener resumes once descriptors are free. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsloop/loop.h>

#include "test.h"

/* The ways to accept: a backend and TLSLOOP_IO_ACCEPT. */
typedef struct way {
    const char *name;
    tl_io_backend io;
    const char *env;    /* TLSLOOP_IO_ACCEPT */
    const char *mode;   /* tl_listen_mode once started */
} way;

static const way ways[] = {
    {"epoll", TL_IO_EPOLL, NULL, "poll"},
    {"uring-multishot", TL_IO_URING, NULL, "multishot"},
    {"uring-single", TL_IO_URING, "single", "single"},
    {"uring-poll", TL_IO_URING, "poll", "poll"},
};
#define NWAYS (sizeof ways / sizeof ways[0])

/* A loop for w, or NULL (skipped) where io_uring is refused. */
static tl_loop *way_loop(const way *w)
{
    if (w->env)
        setenv("TLSLOOP_IO_ACCEPT", w->env, 1);
    else
        unsetenv("TLSLOOP_IO_ACCEPT");
    char err[160];
    tl_loop *l = tl_loop_new_ex(&(tl_loop_opts){.io = w->io}, err, sizeof err);
    if (!l) {
        fprintf(stderr, "  %s: tl_loop_new_ex: %s\n", w->name, err);
        return NULL;
    }
    if (w->io == TL_IO_URING && strcmp(tl_loop_backend(l), "io_uring") != 0) {
        fprintf(stderr, "  %s: no io_uring here (%s): skipped\n", w->name, tl_loop_backend_note(l));
        tl_loop_free(l);
        return NULL;
    }
    return l;
}

static int listener(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

/* A client connecting to port (non-blocking: loopback completes it in the kernel); its local
 * port in *local. */
static int client(uint16_t port, uint16_t *local)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    socklen_t alen = sizeof a;
    if (local && getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        *local = ntohs(a.sin_port);
    return fd;
}

/* Connections waiting in a listening socket's accept queue (TCP_INFO of a listener). */
static int backlog_len(int lfd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    return (int)ti.tcpi_unacked;
}

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

/* What a test's callback saw. */
typedef struct seen {
    int fds[1024];
    uint16_t peer_port[1024];
    int n;
    int pause_after;     /* pause (and refuse) the socket after this many; 0: never */
    int refuse_once;     /* refuse without pausing, once */
    int refused_fd;
    int offered_again;   /* the refused fd came back */
    bool stop_in_cb;     /* stop the listener from the first callback */
    int after_stop;      /* callbacks after the stop */
    bool stopped;
    int errors, last_err;
    bool flags_ok;
} seen;

static bool on_sock(tl_loop *loop, tl_listen *l, int fd, const struct sockaddr *peer,
                    socklen_t len)
{
    seen *s = l->data;
    if (s->stopped)
        s->after_stop++;
    if (s->refused_fd == fd)
        s->offered_again++;
    if (s->refuse_once) {
        s->refuse_once = 0;
        s->refused_fd = fd;
        return false;
    }
    if (s->pause_after && s->n >= s->pause_after) {
        tl_listen_pause(loop, l);
        return false;
    }
    int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
    if (!(fl & O_NONBLOCK) || !(fdf & FD_CLOEXEC))
        s->flags_ok = false;
    if (s->n < 1024) {
        s->fds[s->n] = fd;
        s->peer_port[s->n] = len >= sizeof(struct sockaddr_in) && peer->sa_family == AF_INET
                                 ? ntohs(((const struct sockaddr_in *)peer)->sin_port)
                                 : 0;
    }
    s->n++;
    if (s->stop_in_cb) {
        tl_listen_stop(loop, l);
        s->stopped = true;
    }
    return true;
}

static void on_err(tl_loop *loop, tl_listen *l, int err)
{
    seen *s = l->data;
    s->errors++;
    s->last_err = err;
    tl_listen_pause(loop, l);
}

static void close_seen(seen *s)
{
    for (int i = 0; i < s->n && i < 1024; i++)
        close(s->fds[i]);
}

static void run_for(tl_loop *l, int iterations, int ms)
{
    for (int i = 0; i < iterations; i++)
        tl_loop_run_once(l, ms);
}

/* N connections, each handed over once with its peer's port, non-blocking and close-on-exec, at
 * most TL_LOOP_MAX_ACCEPTS per iteration. */
TEST(accepts_n)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        const way *w = &ways[wi];
        tl_loop *l = way_loop(w);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.flags_ok = true;
        s.refused_fd = -1;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        CHECK(strcmp(tl_listen_mode(&lis), "") == 0);
        tl_listen_start(l, &lis);
        CHECK(strcmp(tl_listen_mode(&lis), w->mode) == 0);
        tl_loop_run_once(l, 0);   /* armed before the clients come */
        enum { N = 200 };
        static int cfd[N];
        static uint16_t cport[N];
        for (int i = 0; i < N; i++)
            REQUIRE((cfd[i] = client(port, &cport[i])) >= 0);
        int most = 0;
        for (int i = 0; i < 2000 && s.n < N; i++) {
            int before = s.n;
            tl_loop_run_once(l, 5);
            if (s.n - before > most)
                most = s.n - before;
        }
        CHECK_EQ_INT(s.n, N);
        CHECK(most <= TL_LOOP_MAX_ACCEPTS);
        CHECK(s.flags_ok);
        int matched = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < s.n; j++)
                if (s.peer_port[j] == cport[i]) {
                    matched++;
                    break;
                }
        CHECK_EQ_INT(matched, N);
        if (s.n != N || matched != N)
            fprintf(stderr, "  (way %s)\n", w->name);
        tl_listen_stop(l, &lis);
        close(lfd);
        close_seen(&s);
        for (int i = 0; i < N; i++)
            close(cfd[i]);
        tl_loop_free(l);
    }
}

/* Paused after 5: no more are taken, and clients that connect after the pause wait in the
 * kernel's backlog (the kernel does not accept them for us); resumed, all are taken, the one
 * refused at the pause first. */
TEST(pause_keeps_the_backlog)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        const way *w = &ways[wi];
        tl_loop *l = way_loop(w);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.flags_ok = true;
        s.refused_fd = -1;
        s.pause_after = 5;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        tl_listen_start(l, &lis);
        tl_loop_run_once(l, 0);
        int cfd[40];
        for (int i = 0; i < 20; i++)
            REQUIRE((cfd[i] = client(port, NULL)) >= 0);
        run_for(l, 50, 2);
        CHECK_EQ_INT(s.n, 5);
        /* Paused (and its cancel long done): these stay in the backlog, whatever the way. */
        int before = backlog_len(lfd), after = before;
        for (int i = 20; i < 40; i++)
            REQUIRE((cfd[i] = client(port, NULL)) >= 0);
        for (int i = 0; i < 1000 && after - before < 20; i++) {   /* up to ~2 s on a busy box */
            tl_loop_run_once(l, 2);
            after = backlog_len(lfd);
        }
        run_for(l, 20, 2);
        after = backlog_len(lfd);
        CHECK_EQ_INT(s.n, 5);
        CHECK_EQ_INT(after - before, 20);
        if (after - before != 20 || s.n != 5)
            fprintf(stderr, "  (way %s: backlog %d -> %d)\n", w->name, before, after);
        s.pause_after = 0;
        tl_listen_start(l, &lis);
        for (int i = 0; i < 500 && s.n < 40; i++)
            tl_loop_run_once(l, 5);
        CHECK_EQ_INT(s.n, 40);
        CHECK_EQ_INT(backlog_len(lfd), 0);
        tl_listen_stop(l, &lis);
        close(lfd);
        close_seen(&s);
        for (int i = 0; i < 40; i++)
            close(cfd[i]);
        tl_loop_free(l);
    }
}

/* A socket refused without a pause is offered again (the same fd), in a later iteration. */
TEST(refused_is_offered_again)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        tl_loop *l = way_loop(&ways[wi]);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.flags_ok = true;
        s.refused_fd = -1;
        s.refuse_once = 1;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        tl_listen_start(l, &lis);
        int c = client(port, NULL);
        REQUIRE(c >= 0);
        for (int i = 0; i < 200 && s.n < 1; i++)
            tl_loop_run_once(l, 5);
        CHECK_EQ_INT(s.n, 1);
        CHECK_EQ_INT(s.offered_again, 1);
        CHECK(s.fds[0] == s.refused_fd);
        tl_listen_stop(l, &lis);
        close(lfd);
        close_seen(&s);
        close(c);
        tl_loop_free(l);
    }
}

/* Stopped while its accept is armed and connections are on their way: nothing more is called,
 * every socket accepted for it is closed, and the listening socket really closes (with an accept
 * in flight still holding it, a new client would be accepted, not refused). */
TEST(stop_while_armed)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        const way *w = &ways[wi];
        int fds_before = open_fds();
        tl_loop *l = way_loop(w);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.refused_fd = -1;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        tl_listen_start(l, &lis);
        tl_loop_run_once(l, 0);   /* armed */
        int cfd[8];
        for (int i = 0; i < 8; i++)
            REQUIRE((cfd[i] = client(port, NULL)) >= 0);
        usleep(20000);            /* the kernel's accepts complete, not yet reaped */
        tl_listen_stop(l, &lis);
        s.stopped = true;
        close(lfd);
        /* Before the loop runs again: the stop itself let go of the socket. */
        int late = client(port, NULL);
        REQUIRE(late >= 0);
        struct pollfd pfd = {.fd = late, .events = POLLOUT};
        poll(&pfd, 1, 5000);      /* refused (or, wrongly, connected) */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(late, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        CHECK_EQ_INT(soerr, ECONNREFUSED);
        close(late);
        run_for(l, 20, 2);
        CHECK_EQ_INT(s.after_stop, 0);
        close_seen(&s);
        for (int i = 0; i < 8; i++)
            close(cfd[i]);
        tl_loop_free(l);
        CHECK_EQ_INT(open_fds(), fds_before);
        if (soerr != ECONNREFUSED || open_fds() != fds_before)
            fprintf(stderr, "  (way %s)\n", w->name);
    }
}

/* Stopped from its own callback with more sockets accepted in the same round: the rest are closed,
 * never handed over. */
TEST(stop_from_the_callback)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        int fds_before = open_fds();
        tl_loop *l = way_loop(&ways[wi]);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.refused_fd = -1;
        s.stop_in_cb = true;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        tl_listen_start(l, &lis);
        tl_loop_run_once(l, 0);
        int cfd[16];
        for (int i = 0; i < 16; i++)
            REQUIRE((cfd[i] = client(port, NULL)) >= 0);
        usleep(20000);
        for (int i = 0; i < 200 && s.n < 1; i++)
            tl_loop_run_once(l, 5);
        close(lfd);
        run_for(l, 20, 2);
        CHECK_EQ_INT(s.n, 1);
        CHECK_EQ_INT(s.after_stop, 0);
        close_seen(&s);
        for (int i = 0; i < 16; i++)
            close(cfd[i]);
        tl_loop_free(l);
        CHECK_EQ_INT(open_fds(), fds_before);
    }
}

/* Two descriptors left for four clients: two are handed over, then accept fails with EMFILE
 * and on_error hears it (once: it pauses), the other two wait; with descriptors free again and the
 * listener resumed, they are taken. The two go first also when the kernel accepted them before
 * it failed (a multishot accept, its completions reaped together): were the error reported
 * first, its pause would leave them held, each resume would fail again at once, and they would
 * never be taken. */
TEST(emfile_reaches_on_error)
{
    for (size_t wi = 0; wi < NWAYS; wi++) {
        const way *w = &ways[wi];
        /* The limit is lowered first: io_uring reads it when an accept is armed. */
        struct rlimit old, low;
        REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
        low = old;
        low.rlim_cur = 512;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
        tl_loop *l = way_loop(w);
        if (!l)
            continue;
        uint16_t port;
        int lfd = listener(&port);
        REQUIRE(lfd >= 0);
        static seen s;
        memset(&s, 0, sizeof s);
        s.flags_ok = true;
        s.refused_fd = -1;
        tl_listen lis;
        tl_listen_init(&lis, lfd, on_sock, on_err, &s);
        tl_listen_start(l, &lis);
        tl_loop_run_once(l, 0);
        /* The clients' sockets first, then the table filled up to the limit, then the
         * connections (an armed accept would take them at once). */
        int cfd[4];
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        for (int i = 0; i < 4; i++)
            REQUIRE((cfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) >= 0);
        static int fill[512];
        int nfill = 0, fd;
        while (nfill < 512 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
            fill[nfill++] = fd;
        CHECK(errno == EMFILE);
        close(fill[--nfill]);
        close(fill[--nfill]);
        for (int i = 0; i < 4; i++)
            CHECK(connect(cfd[i], (struct sockaddr *)&to, sizeof to) == 0 || errno == EINPROGRESS);
        usleep(50000);   /* accepted meanwhile by an armed accept, reaped in one iteration */
        run_for(l, 20, 2);
        CHECK_EQ_INT(s.n, 2);
        CHECK_EQ_INT(s.errors, 1);
        CHECK_EQ_INT(s.last_err, EMFILE);
        for (int i = 0; i < nfill; i++)
            close(fill[i]);
        tl_listen_start(l, &lis);
        for (int i = 0; i < 300 && s.n < 4; i++)
            tl_loop_run_once(l, 5);
        CHECK_EQ_INT(s.n, 4);
        CHECK_EQ_INT(s.errors, 1);
        if (s.n != 4 || s.errors != 1)
            fprintf(stderr, "  (way %s: %d errors, last %d)\n", w->name, s.errors, s.last_err);
        tl_listen_stop(l, &lis);
        close(lfd);
        close_seen(&s);
        for (int i = 0; i < 4; i++)
            close(cfd[i]);
        tl_loop_free(l);
        setrlimit(RLIMIT_NOFILE, &old);
    }
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(accepts_n);
    RUN(pause_keeps_the_backlog);
    RUN(refused_is_offered_again);
    RUN(stop_while_armed);
    RUN(stop_from_the_callback);
    RUN(emfile_reaches_on_error);
    TEST_MAIN_END();
}
