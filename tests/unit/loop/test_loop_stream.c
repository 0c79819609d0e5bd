/* test_loop_stream.c - completion I/O on stream watchers (tl_io_stream, tl_io_recv, tl_io_send):
 * bytes in order both ways, the buffer ring running dry and refilling, a paused reader taking no
 * buffers, a socket closed with a send still queued, a round's sends leaving together, and the
 * epoll loop's plain recv/send. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsloop/loop.h>

#include "test.h"

static tl_loop *uring_loop(void)
{
    char err[160];
    tl_loop *l = tl_loop_new_ex(&(tl_loop_opts){.io = TL_IO_URING}, err, sizeof err);
    if (l && strcmp(tl_loop_backend(l), "io_uring") != 0) {
        fprintf(stderr, "  no io_uring here (%s): skipped\n", tl_loop_backend_note(l));
        tl_loop_free(l);
        return NULL;
    }
    return l;
}

/* A connected TCP pair on loopback, both non-blocking. */
static int tcp_pair(int fds[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    fds[1] = accept(ls, NULL, NULL);
    close(ls);
    if (fds[1] < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    return 0;
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131u + seed) >> 3);
}

/* One end of a transfer: a stream watcher that sends `out` and reads into `in`. */
typedef struct end {
    tl_io io;
    const uint8_t *out;
    size_t out_len, sent;
    uint8_t *in;
    size_t in_cap, got;
    bool eof, reading;
    int err;
    unsigned readable, writable;
} end;

static void end_interest(tl_loop *l, end *e)
{
    unsigned want = (e->reading && !e->eof && !e->err ? TL_READABLE : 0) |
                    (e->sent < e->out_len || tl_io_unsent(l, &e->io) ? TL_WRITABLE : 0);
    tl_io_set(l, &e->io, want);
}

static void end_cb(tl_loop *l, tl_io *io, unsigned ev)
{
    end *e = io->data;
    if (ev & TL_WRITABLE) {
        e->writable++;
        while (e->sent < e->out_len) {
            ssize_t n = tl_io_send(l, io, e->out + e->sent, e->out_len - e->sent, MSG_NOSIGNAL);
            if (n <= 0) {
                if (n < 0 && errno != EAGAIN)
                    e->err = errno;
                break;
            }
            e->sent += (size_t)n;
        }
    }
    if (ev & TL_READABLE) {
        e->readable++;
        for (;;) {
            uint8_t tmp[5000];   /* not a buffer's size: reads cross buffer boundaries */
            ssize_t n = tl_io_recv(l, io, tmp, sizeof tmp);
            if (n == 0) {
                e->eof = true;
                break;
            }
            if (n < 0) {
                if (errno != EAGAIN)
                    e->err = errno;
                break;
            }
            if (e->got + (size_t)n <= e->in_cap)
                memcpy(e->in + e->got, tmp, (size_t)n);
            e->got += (size_t)n;
        }
    }
    end_interest(l, e);
}

static bool run_until(tl_loop *l, bool (*done)(void *), void *arg, int ms)
{
    for (int i = 0; i < ms && !done(arg); i++)
        tl_loop_run_once(l, 1);
    return done(arg);
}

typedef struct pair_state {
    end *a, *b;
    size_t want_a, want_b;
} pair_state;

static bool both_got(void *arg)
{
    pair_state *p = arg;
    return p->a->got >= p->want_a && p->b->got >= p->want_b;
}

/* 3 MiB each way at once, through 5000-byte reads and sends of everything left: in order. */
TEST(bytes_in_order_both_ways)
{
    tl_loop *l = uring_loop();
    if (!l)
        return;
    int fds[2];
    REQUIRE(tcp_pair(fds) == 0);
    size_t n = 3u << 20;
    uint8_t *oa = malloc(n), *ob = malloc(n), *ia = malloc(n), *ib = malloc(n);
    REQUIRE(oa && ob && ia && ib);
    pattern(oa, n, 1);
    pattern(ob, n, 2);
    end a = {.out = oa, .out_len = n, .in = ia, .in_cap = n, .reading = true};
    end b = {.out = ob, .out_len = n, .in = ib, .in_cap = n, .reading = true};
    tl_io_init(&a.io, fds[0], end_cb, &a);
    tl_io_init(&b.io, fds[1], end_cb, &b);
    CHECK(tl_io_stream(l, &a.io) && tl_io_stream(l, &b.io));
    end_interest(l, &a);
    end_interest(l, &b);
    pair_state p = {&a, &b, n, n};
    CHECK(run_until(l, both_got, &p, 20000));
    CHECK(a.got == n && b.got == n);
    CHECK(memcmp(ia, ob, n) == 0);
    CHECK(memcmp(ib, oa, n) == 0);
    CHECK_EQ_INT(a.err, 0);
    CHECK_EQ_INT(b.err, 0);
    CHECK(tl_io_unsent(l, &a.io) == 0 && tl_io_unsent(l, &b.io) == 0);
    /* The end of the stream: a FIN reads as 0 after the bytes before it. */
    shutdown(fds[0], SHUT_WR);
    for (int i = 0; i < 2000 && !b.eof; i++)
        tl_loop_run_once(l, 1);
    CHECK(b.eof);
    tl_io_stop(l, &a.io);
    tl_io_stop(l, &b.io);
    close(fds[0]);
    close(fds[1]);
    free(oa);
    free(ob);
    free(ia);
    free(ib);
    tl_loop_free(l);
}

/* A reader that reads nothing while more than the whole ring (256 x 16 KiB) arrives: the ring
 * runs dry (-ENOBUFS); once it reads, buffers come back, its recv is armed again and every byte
 * arrives in order. */
static bool hold_back;
static void lazy_cb(tl_loop *l, tl_io *io, unsigned ev)
{
    if (hold_back)
        return;   /* level-triggered: reported again next iteration */
    end_cb(l, io, ev);
}

static bool got_all_b(void *arg)
{
    pair_state *p = arg;
    return p->b->got >= p->want_b;
}

TEST(ring_runs_dry_and_refills)
{
    tl_loop *l = uring_loop();
    if (!l)
        return;
    int fds[2];
    REQUIRE(tcp_pair(fds) == 0);
    int big = 8 << 20;
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    size_t n = 6u << 20;
    uint8_t *out = malloc(n), *in = malloc(n);
    REQUIRE(out && in);
    pattern(out, n, 3);
    end b = {.in = in, .in_cap = n, .reading = true};
    tl_io_init(&b.io, fds[1], lazy_cb, &b);
    CHECK(tl_io_stream(l, &b.io));
    end_interest(l, &b);
    hold_back = true;
    /* The sender is a plain socket, written from here. */
    size_t sent = 0;
    for (int i = 0; i < 3000 && sent < n; i++) {
        ssize_t k = send(fds[0], out + sent, n - sent, MSG_NOSIGNAL);
        if (k > 0)
            sent += (size_t)k;
        tl_loop_run_once(l, 1);
    }
    CHECK_EQ_INT(b.got, 0);
    CHECK(b.readable == 0);
    hold_back = false;
    pair_state p = {NULL, &b, 0, n};
    for (int i = 0; i < 20000 && b.got < n; i++) {
        if (sent < n) {
            ssize_t k = send(fds[0], out + sent, n - sent, MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
        }
        tl_loop_run_once(l, 1);
    }
    CHECK(got_all_b(&p));
    CHECK(b.got == n && memcmp(in, out, n) == 0);
    CHECK_EQ_INT(b.err, 0);
    tl_io_stop(l, &b.io);
    close(fds[0]);
    close(fds[1]);
    free(out);
    free(in);
    tl_loop_free(l);
}

/* A paused reader (no TL_READABLE) has its recv cancelled: 8 MiB sent to it stay in its socket,
 * not in the ring, and another stream still receives. */
TEST(paused_reader_takes_no_buffers)
{
    tl_loop *l = uring_loop();
    if (!l)
        return;
    int p1[2], p2[2];
    REQUIRE(tcp_pair(p1) == 0 && tcp_pair(p2) == 0);
    int big = 16 << 20;
    setsockopt(p1[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    static uint8_t in_b[1 << 16];
    end a = {.reading = true}, b = {.in = in_b, .in_cap = sizeof in_b, .reading = true};
    tl_io_init(&a.io, p1[1], end_cb, &a);
    tl_io_init(&b.io, p2[1], end_cb, &b);
    CHECK(tl_io_stream(l, &a.io) && tl_io_stream(l, &b.io));
    end_interest(l, &a);
    end_interest(l, &b);
    tl_loop_run_once(l, 0);   /* a's recv is armed ... */
    a.reading = false;
    end_interest(l, &a);      /* ... and cancelled */
    tl_loop_run_once(l, 0);
    size_t n = 8u << 20, sent = 0;
    uint8_t *junk = calloc(1, n);
    REQUIRE(junk);
    for (int i = 0; i < 2000 && sent < n; i++) {
        ssize_t k = send(p1[0], junk + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0)
            sent += (size_t)k;
        tl_loop_run_once(l, 1);
    }
    CHECK(sent > (4u << 20));   /* more than the ring holds */
    uint8_t msg[40000];
    pattern(msg, sizeof msg, 4);
    CHECK(send(p2[0], msg, sizeof msg, MSG_NOSIGNAL) == (ssize_t)sizeof msg);
    pair_state p = {NULL, &b, 0, sizeof msg};
    CHECK(run_until(l, got_all_b, &p, 3000));
    CHECK(memcmp(in_b, msg, sizeof msg) == 0);
    CHECK(a.got < 64u * 1024u);   /* at most what arrived before the cancel */
    tl_io_stop(l, &a.io);
    tl_io_stop(l, &b.io);
    close(p1[0]);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
    free(junk);
    tl_loop_free(l);
}

/* A send taken, the watcher stopped and the fd closed before the iteration submits: the bytes go
 * to the socket they were meant for, never to the next socket that gets the same number. */
TEST(closed_with_a_send_queued)
{
    tl_loop *l = uring_loop();
    if (!l)
        return;
    int p1[2];
    REQUIRE(tcp_pair(p1) == 0);
    tl_io io;
    end e = {0};
    tl_io_init(&io, p1[0], end_cb, &e);
    CHECK(tl_io_stream(l, &io));
    CHECK(tl_io_send(l, &io, "for p1 only", 11, MSG_NOSIGNAL) == 11);
    tl_io_stop(l, &io);
    int old = p1[0];
    close(p1[0]);
    int p2[2];
    REQUIRE(tcp_pair(p2) == 0);
    bool reused = p2[0] == old || p2[1] == old;
    tl_loop_run_once(l, 0);
    tl_loop_run_once(l, 10);
    char b[32];
    ssize_t got = -1;
    for (int i = 0; i < 200 && got < 11; i++) {
        ssize_t k = recv(p1[1], b + (got > 0 ? got : 0), sizeof b - 1, 0);
        if (k > 0)
            got = (got > 0 ? got : 0) + k;
        else
            usleep(1000);
    }
    CHECK(got == 11 && memcmp(b, "for p1 only", 11) == 0);
    char c[32];
    int reused_fd = p2[0] == old ? p2[1] : p2[0];
    CHECK(recv(reused_fd, c, sizeof c, MSG_DONTWAIT) < 0 && errno == EAGAIN);
    if (!reused)
        fprintf(stderr, "  (the fd number was not reused this time)\n");
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
    tl_loop_free(l);
}

/* Sends of one round leave together when it ends: none before, and more than the small staging
 * buffer holds is taken (it becomes a big one); bytes staged behind the send in flight follow. */
TEST(a_round_leaves_in_one_send)
{
    tl_loop *l = uring_loop();
    if (!l)
        return;
    int p[2];
    REQUIRE(tcp_pair(p) == 0);
    tl_io io;
    end e = {0};
    tl_io_init(&io, p[0], end_cb, &e);
    CHECK(tl_io_stream(l, &io));
    enum { PIECE = 20000, PIECES = 3, LATER = 100000 };
    size_t total = PIECE * PIECES + LATER;
    uint8_t *out = malloc(total), *in = malloc(total);
    REQUIRE(out && in);
    pattern(out, total, 7);
    for (int i = 0; i < PIECES; i++)
        CHECK(tl_io_send(l, &io, out + i * PIECE, PIECE, MSG_NOSIGNAL) == PIECE);
    CHECK(tl_io_unsent(l, &io) == PIECE * PIECES);
    char b[16];
    CHECK(recv(p[1], b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN);   /* not yet sent */
    tl_loop_run_once(l, 0);   /* the round ends: its send is submitted */
    CHECK(tl_io_send(l, &io, out + PIECE * PIECES, LATER, MSG_NOSIGNAL) == LATER);
    size_t got = 0;
    for (int i = 0; i < 2000 && got < total; i++) {
        tl_loop_run_once(l, 0);
        ssize_t k = recv(p[1], in + got, total - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else
            usleep(500);
    }
    CHECK(got == total && memcmp(in, out, total) == 0);
    CHECK(tl_io_unsent(l, &io) == 0);
    tl_io_stop(l, &io);
    close(p[0]);
    close(p[1]);
    free(out);
    free(in);
    tl_loop_free(l);
}

/* Where the loop does readiness only, tl_io_stream declines and the calls are recv and send. */
TEST(epoll_declines_streams)
{
    char err[160];
    tl_loop *l = tl_loop_new_ex(&(tl_loop_opts){.io = TL_IO_EPOLL}, err, sizeof err);
    REQUIRE(l);
    int fds[2];
    REQUIRE(tcp_pair(fds) == 0);
    tl_io io;
    tl_io_init(&io, fds[0], end_cb, NULL);
    CHECK(!tl_io_stream(l, &io));
    CHECK(tl_io_send(l, &io, "hi", 2, MSG_NOSIGNAL) == 2);
    CHECK(tl_io_unsent(l, &io) == 0);
    char b[4];
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++) {
        n = recv(fds[1], b, sizeof b, 0);
        if (n < 0)
            usleep(1000);
    }
    CHECK(n == 2);
    CHECK(tl_io_recv(l, &io, b, sizeof b) < 0 && errno == EAGAIN);
    close(fds[0]);
    close(fds[1]);
    tl_loop_free(l);
    /* io_uring with streams switched off (TLSLOOP_IO_STREAMS=0): declined too. */
    setenv("TLSLOOP_IO_STREAMS", "0", 1);
    l = uring_loop();
    unsetenv("TLSLOOP_IO_STREAMS");
    if (!l)
        return;
    tl_io_init(&io, 0, end_cb, NULL);
    CHECK(!tl_io_stream(l, &io));
    tl_loop_free(l);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(bytes_in_order_both_ways);
    RUN(ring_runs_dry_and_refills);
    RUN(paused_reader_takes_no_buffers);
    RUN(closed_with_a_send_queued);
    RUN(a_round_leaves_in_one_send);
    RUN(epoll_declines_streams);
    TEST_MAIN_END();
}
