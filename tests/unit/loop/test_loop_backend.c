/* test_loop_backend.c - the loop's two backends: which one a loop gets (asked for, from
 * TLSLOOP_IO, refused by the kernel), and io_uring's own hazards (requests in flight when a
 * watcher stops, files the ring holds). The rest of test_loop runs on both via TLSLOOP_IO. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <tlsloop/loop.h>

#include "test.h"
#include "support/no_uring.h"

/* Whether this kernel lets us have io_uring (io_uring_disabled 0, and no filter in the way). */
static bool uring_allowed(void)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    int v = 0;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v == 0;
}

static tl_loop *loop_on(tl_io_backend io)
{
    char err[160];
    tl_loop *l = tl_loop_new_ex(&(tl_loop_opts){.io = io}, err, sizeof err);
    if (!l)
        fprintf(stderr, "  tl_loop_new_ex: %s\n", err);
    return l;
}

TEST(names_parse_both_ways)
{
    tl_io_backend io = TL_IO_DEFAULT;
    CHECK(tl_io_backend_parse("epoll", &io) == 0 && io == TL_IO_EPOLL);
    CHECK(tl_io_backend_parse("uring", &io) == 0 && io == TL_IO_URING);
    CHECK(tl_io_backend_parse("io_uring", &io) == 0 && io == TL_IO_URING);
    CHECK(tl_io_backend_parse("auto", &io) == 0 && io == TL_IO_AUTO);
    io = TL_IO_EPOLL;
    CHECK(tl_io_backend_parse("kqueue", &io) == -1 && io == TL_IO_EPOLL);
    CHECK(tl_io_backend_parse(NULL, &io) == -1);
    CHECK_STR(tl_io_backend_name(TL_IO_URING), "uring");
    CHECK_STR(tl_io_backend_name(TL_IO_DEFAULT), "default");
}

TEST(each_backend_when_asked)
{
    unsetenv("TLSLOOP_IO");
    tl_loop *e = loop_on(TL_IO_EPOLL);
    REQUIRE(e);
    CHECK_STR(tl_loop_backend(e), "epoll");
    CHECK_STR(tl_loop_backend_note(e), "");
    tl_loop_free(e);
    tl_loop *d = loop_on(TL_IO_DEFAULT);
    REQUIRE(d);
    CHECK_STR(tl_loop_backend(d), "epoll");
    tl_loop_free(d);
    if (!uring_allowed()) {
        fprintf(stderr, "  io_uring is disabled on this machine: only the fall-back is seen\n");
        return;
    }
    for (int i = 0; i < 2; i++) {
        tl_loop *u = loop_on(i ? TL_IO_AUTO : TL_IO_URING);
        REQUIRE(u);
        CHECK_STR(tl_loop_backend(u), "io_uring");
        CHECK_STR(tl_loop_backend_note(u), "");
        tl_loop_free(u);
    }
}

TEST(environment_chooses_the_default)
{
    setenv("TLSLOOP_IO", "epoll", 1);
    tl_loop *l = loop_on(TL_IO_DEFAULT);
    REQUIRE(l);
    CHECK_STR(tl_loop_backend(l), "epoll");
    tl_loop_free(l);
    setenv("TLSLOOP_IO", "uring", 1);
    l = loop_on(TL_IO_EPOLL);   /* asked for: the environment does not override */
    REQUIRE(l);
    CHECK_STR(tl_loop_backend(l), "epoll");
    tl_loop_free(l);
    if (uring_allowed()) {
        l = loop_on(TL_IO_DEFAULT);
        REQUIRE(l);
        CHECK_STR(tl_loop_backend(l), "io_uring");
        tl_loop_free(l);
    }
    setenv("TLSLOOP_IO", "fast", 1);
    l = loop_on(TL_IO_DEFAULT);
    REQUIRE(l);
    CHECK_STR(tl_loop_backend(l), "epoll");
    CHECK(strstr(tl_loop_backend_note(l), "TLSLOOP_IO=fast") != NULL);
    tl_loop_free(l);
    unsetenv("TLSLOOP_IO");
}

static void on_readable(tl_loop *l, tl_io *io, unsigned ev)
{
    (void)l;
    char b[16];
    if (ev & TL_READABLE && read(io->fd, b, sizeof b) > 0)
        (*(int *)io->data)++;
}

/* A loop refused io_uring_setup (err from seccomp: EPERM as Docker's default profile gives,
 * ENOSYS as a kernel without io_uring): it runs on epoll, says why, and works. */
static void refused_falls_back(int err, const char *why)
{
    REQUIRE(nu_refuse_io_uring(err) == 0);   /* this test's own process (test.h forks each test) */
    for (int i = 0; i < 2; i++) {
        tl_loop *l = loop_on(i ? TL_IO_AUTO : TL_IO_URING);
        REQUIRE(l);
        CHECK_STR(tl_loop_backend(l), "epoll");
        const char *note = tl_loop_backend_note(l);
        fprintf(stderr, "  %s\n", note);
        CHECK(strstr(note, why) != NULL);
        CHECK(strstr(note, "running on epoll") != NULL);
        int fds[2], calls = 0;
        REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        tl_io io;
        tl_io_init(&io, fds[0], on_readable, &calls);
        tl_io_set(l, &io, TL_READABLE);
        CHECK(write(fds[1], "x", 1) == 1);
        tl_loop_run_once(l, 1000);
        CHECK_EQ_INT(calls, 1);
        tl_io_stop(l, &io);
        close(fds[0]);
        close(fds[1]);
        tl_loop_free(l);
    }
}

TEST(refused_io_uring_falls_back_to_epoll)
{
    refused_falls_back(EPERM, "io_uring_setup: Operation not permitted");
}

TEST(io_uring_missing_falls_back_to_epoll)
{
    refused_falls_back(ENOSYS, "io_uring_setup: Function not implemented");
}

/* Watchers stopped and freed while their poll request is in flight: the completions that follow
 * (cancelled, or ready) must not reach them (ASan sees a use after free), and a new watcher on a
 * reused fd gets only its own events. */
TEST(stopped_watcher_with_request_in_flight)
{
    tl_loop *l = loop_on(TL_IO_URING);
    REQUIRE(l);
    enum { N = 64 };
    int fds[N][2], calls = 0;
    tl_io *io[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(pipe2(fds[i], O_NONBLOCK | O_CLOEXEC) == 0);
        REQUIRE((io[i] = malloc(sizeof *io[i])));
        tl_io_init(io[i], fds[i][0], on_readable, &calls);
        tl_io_set(l, io[i], TL_READABLE);
    }
    tl_loop_run_once(l, 0);   /* submitted: every watcher has a poll in flight */
    for (int i = 0; i < N; i++) {
        CHECK(write(fds[i][1], "x", 1) == 1);   /* half of them become ready meanwhile */
        if (i % 2 == 0)
            continue;
        tl_io_stop(l, io[i]);
        memset(io[i], 0xa5, sizeof *io[i]);
        free(io[i]);
        io[i] = NULL;
    }
    for (int k = 0; k < 5; k++)
        tl_loop_run_once(l, 20);
    CHECK_EQ_INT(calls, N / 2);
    for (int i = 0; i < N; i++) {
        if (io[i]) {
            tl_io_stop(l, io[i]);
            free(io[i]);
        }
        close(fds[i][0]);
        close(fds[i][1]);
    }
    tl_loop_free(l);
}

/* The ring holds a reference to the file a poll waits on: a watcher stopped for closing must
 * still cancel it, or the socket outlives close() and the peer never sees the FIN. */
TEST(closed_socket_is_released_by_the_ring)
{
    tl_loop *l = loop_on(TL_IO_URING);
    REQUIRE(l);
    int sv[2], calls = 0;
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    tl_io io;
    tl_io_init(&io, sv[0], on_readable, &calls);
    tl_io_set(l, &io, TL_READABLE);
    tl_loop_run_once(l, 0);   /* the poll is in flight */
    tl_io_stop_closing(l, &io);
    close(sv[0]);
    tl_loop_run_once(l, 0);   /* the cancel goes out with the iteration's submissions */
    char b[4];
    ssize_t n = -1;
    for (int k = 0; k < 100 && n < 0; k++) {
        n = read(sv[1], b, sizeof b);
        if (n < 0)
            usleep(1000);
    }
    CHECK(n == 0);   /* EOF: the socket is gone */
    CHECK_EQ_INT(calls, 0);
    close(sv[1]);
    tl_loop_free(l);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(names_parse_both_ways);
    RUN(each_backend_when_asked);
    RUN(environment_chooses_the_default);
    RUN(refused_io_uring_falls_back_to_epoll);
    RUN(io_uring_missing_falls_back_to_epoll);
    RUN(stopped_watcher_with_request_in_flight);
    RUN(closed_socket_is_released_by_the_ring);
    TEST_MAIN_END();
}
