/* fuzz_h2.c - the HTTP server's HTTP/2 input path (src/httpd/httpd_h2*.c on nghttp2) on
 * arbitrary frames: each input is what a client sends after the connection preface, given to a
 * fresh HTTP/2 connection of a real httpd over a socketpair (a tl_conn on a loop of its own, a
 * document root with a small cached file, a streamed one and a directory), in two reads split
 * where the first byte says; then the loop runs a few turns while the other end reads and
 * discards, and the connection is aborted. What is checked: no crash, no undefined behaviour,
 * no leak, and every connection ends with its state freed (ASan and UBSan; fuzz/README.md). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tlsloop/conn.h>
#include <tlsloop/httpd.h>
#include <tlsloop/loop.h>
#include <tlsloop/server.h>

#include "httpd/httpd_int.h"

static tl_loop *loop;
static tl_httpd *httpd;
static hworker worker;
static bool closed;

static void put(const char *dir, const char *name, size_t n, char fill)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char buf[4096];
    memset(buf, fill, sizeof buf);
    for (size_t left = n; fd >= 0 && left;) {
        size_t k = left < sizeof buf ? left : sizeof buf;
        if (write(fd, buf, k) != (ssize_t)k)
            abort();
        left -= k;
    }
    if (fd < 0)
        abort();
    close(fd);
}

static void setup(void)
{
    static char root[64] = "/tmp/tlsloop-fuzz-h2-XXXXXX";
    char err[256], sub[128];
    if (!mkdtemp(root))
        abort();
    snprintf(sub, sizeof sub, "%s/sub", root);
    mkdir(sub, 0755);
    put(root, "index.html", 14, 'x');
    put(root, "big.bin", 300000, 'y');
    put(sub, "index.html", 5, 'z');
    tl_server_config *cfg = tl_server_config_new();
    if (!cfg || tl_httpd_config_init(cfg) != 0 ||
        tl_server_config_set(cfg, "root", root, err, sizeof err) != 0 ||
        tl_server_config_set(cfg, "max-body", "4k", err, sizeof err) != 0 ||
        tl_server_config_set(cfg, "h2-max-streams", "16", err, sizeof err) != 0 ||
        !(httpd = tl_httpd_new(cfg, err, sizeof err)) || !(loop = tl_loop_new(err, sizeof err)))
        abort();
    tl_server_config_free(cfg);
    worker.h = httpd;
    worker.date_sec = -1;
    worker.cache.max_bytes = httpd->cache_bytes;
    worker.cache.max_file = httpd->cache_max_file;
    if (!(worker.scratch = malloc(HTTPD_CHUNK)))
        abort();
}

static void on_timer(tl_loop *l, tl_timer *t)
{
    (void)l;
    hconn *hc = t->data;
    if (hc->h2)
        tli_httpd_h2_timer(hc);
}

static void on_read(tl_conn *c, const uint8_t *d, size_t n)
{
    hconn *hc = tl_conn_data(c);
    if (hc->h2)
        tli_httpd_h2_read(hc, d, n);
}

static void on_drain(tl_conn *c)
{
    hconn *hc = tl_conn_data(c);
    if (hc->h2)
        tli_httpd_h2_writable(hc);
}

static void on_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    hc->eof = true;
    if (hc->h2)
        tli_httpd_h2_eof(hc);
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    hconn *hc = tl_conn_data(c);
    tl_timer_stop(loop, &hc->timer);
    if (hc->h2)
        tli_httpd_h2_close(hc);
    free(hc);
    closed = true;
}

static const tl_conn_cbs cbs = {.on_read = on_read, .on_drain = on_drain, .on_eof = on_eof,
                                .on_close = on_close};

/* The other end reads (and forgets) what the server wrote; the loop turns. */
static void turn(int peer)
{
    char buf[65536];
    while (recv(peer, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
    tl_loop_run_once(loop, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        setup();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    tl_conn_opts opts = {.cbs = &cbs, .half_close = true, .fd_nodelay = true,
                         .write_high = 64 * 1024};
    tl_conn *c = tl_conn_accept(loop, sv[0], &opts);
    if (!c)
        abort();
    hconn *hc = calloc(1, sizeof *hc);
    if (!hc)
        abort();
    hc->c = c;
    hc->w = &worker;
    tl_timer_init(&hc->timer, on_timer, hc);
    tl_conn_set_data(c, hc);
    closed = false;
    /* The preface is ours (the input is what follows it); the input comes in two reads. */
    size_t cut = size ? data[0] % (size + 1) : 0;
    uint8_t *first = malloc(H2_PREFACE_LEN + cut + 1);
    if (!first)
        abort();
    memcpy(first, H2_PREFACE, H2_PREFACE_LEN);
    memcpy(first + H2_PREFACE_LEN, data, cut);
    if (tli_httpd_h2_start(hc, first, H2_PREFACE_LEN + cut) == 0 && !closed && hc->h2 &&
        size > cut) {
        turn(sv[1]);
        if (!closed && hc->h2)
            tli_httpd_h2_read(hc, data + cut, size - cut);
    }
    free(first);
    for (int i = 0; i < 8 && !closed; i++)
        turn(sv[1]);
    if (!closed)
        tl_conn_abort(c);
    for (int i = 0; i < 16 && !closed; i++)
        turn(sv[1]);
    if (!closed) {
        fprintf(stderr, "INVARIANT FAILED: the connection did not end after tl_conn_abort\n");
        abort();
    }
    close(sv[1]);
    return 0;
}
