/* zerocopy.c - does MSG_ZEROCOPY pay for the proxy's large sends here? send() against MSG_ZEROCOPY
 * over loopback TCP, CPU per MiB (bench/README.md; docs/proxy.md, "Copies").
 * usage: zerocopy [MiB] */
#include <errno.h>
#include <time.h>

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

#define CHUNK (64 * 1024)
#define RING 16

static void die(const char *what)
{
    fprintf(stderr, "zerocopy: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double cpu_s(clockid_t which)
{
    struct timespec t;
    clock_gettime(which, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    static char buf[256 * 1024];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return NULL;
}

/* Take the completions that are there (or wait for one): returns how many sends they cover. */
static uint32_t completions(int fd, bool wait, uint32_t *copied)
{
    if (wait) {
        struct pollfd p = {.fd = fd, .events = 0};
        poll(&p, 1, 1000);   /* the error queue reports as POLLERR */
    }
    uint32_t done = 0;
    for (;;) {
        char control[128];
        struct msghdr m = {.msg_control = control, .msg_controllen = sizeof control};
        if (recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return done;
            die("recvmsg(MSG_ERRQUEUE)");
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            struct sock_extended_err *e = (struct sock_extended_err *)CMSG_DATA(c);
            if (e->ee_origin != SO_EE_ORIGIN_ZEROCOPY)
                continue;
            uint32_t n = e->ee_data - e->ee_info + 1;   /* a range of send numbers */
            done += n;
            if (e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
                *copied += n;
        }
    }
}

static int connected_pair(int *rfd)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        die("listen");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect");
    if ((*rfd = accept(l, NULL, NULL)) < 0)
        die("accept");
    close(l);
    return s;
}

typedef struct cost {
    double sender, both;   /* us per MiB: the sending thread, and sender + receiver */
} cost;

static cost run(size_t mib, bool zc, uint32_t *copied, uint32_t *sends)
{
    int r, s = connected_pair(&r);
    pthread_t th;
    pthread_create(&th, NULL, drain, &r);
    int one = 1;
    if (zc && setsockopt(s, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) != 0)
        die("SO_ZEROCOPY");
    static char ring[RING][CHUNK];
    for (int i = 0; i < RING; i++)
        memset(ring[i], 'a' + i, CHUNK);
    size_t total = mib << 20, sent = 0;
    uint32_t issued = 0, completed = 0;
    double t0 = cpu_s(CLOCK_THREAD_CPUTIME_ID), p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    while (sent < total) {
        if (zc && issued - completed >= RING)   /* the oldest buffer is still the kernel's */
            completed += completions(s, true, copied);
        ssize_t n = send(s, ring[issued % RING], CHUNK, zc ? MSG_ZEROCOPY : 0);
        if (n < 0) {
            if (errno == ENOBUFS && zc) {   /* out of optmem for notifications: take some */
                completed += completions(s, true, copied);
                continue;
            }
            die("send");
        }
        sent += (size_t)n;
        issued++;
        if (zc)
            completed += completions(s, false, copied);
    }
    while (zc && completed < issued)
        completed += completions(s, true, copied);
    double cpu = cpu_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    shutdown(s, SHUT_WR);
    pthread_join(th, NULL);
    double both = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - p0;
    close(s);
    close(r);
    *sends = issued;
    double per = 1e6 / (double)(total >> 20);
    return (cost){cpu * per, both * per};
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 1024;
    if (mib == 0 || mib > 65536) {
        fprintf(stderr, "usage: zerocopy [MiB, 1 to 65536]\n");
        return 2;
    }
    uint32_t copied = 0, sends = 0, dummy = 0, dsends = 0;
    cost plain = run(mib, false, &dummy, &dsends);
    cost zc = run(mib, true, &copied, &sends);
    printf("zerocopy: %zu MiB over loopback TCP in 64 KiB sends; CPU per MiB, sender and "
           "sender+receiver: send() %.0f and %.0f us, MSG_ZEROCOPY %.0f and %.0f us (ratio of the "
           "totals %.2f); %u of %u zero-copy sends were copied by the kernel after all\n",
           mib, plain.sender, plain.both, zc.sender, zc.both, zc.both / plain.both, copied,
           sends);
    return 0;
}
