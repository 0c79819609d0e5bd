/* echo_server.c - a TLS echo server: prints what each connection sends and sends it back; each
 * connection cleans up after itself when its peer goes. Tested by tests/e2e/test_examples.py.
 * usage: echo_server PORT CERT.pem KEY.pem   (PORT 0: any free port; the one taken is printed) */
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <tlsloop/conn.h>

static tl_conn_opts opts;
static intptr_t next_id = 1;

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    printf("%ld: %.*s\n", (long)(intptr_t)tl_conn_data(c), (int)len, (const char *)data);
    fflush(stdout);
    tl_conn_write(c, data, len);
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    printf("%ld: closed (%s) %s\n", (long)(intptr_t)tl_conn_data(c), tl_conn_end_name(how),
           tl_conn_error(c));
    fflush(stdout);
}

static void on_accept(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    int fd;
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP &&
                    (fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0; i++) {
        opts.data = (void *)next_id++;
        tl_conn_accept(loop, fd, &opts); /* the connection frees itself after on_close */
    }
}

static void on_signal(tl_loop *loop, int signo, void *data)
{
    (void)signo, (void)data;
    tl_loop_stop(loop); /* SIGTERM or SIGINT: stop, then free everything */
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: echo_server PORT CERT.pem KEY.pem\n");
        return 2;
    }
    tl_tls_ctx *tls = tl_tls_ctx_new(TL_ROLE_SERVER);
    if (!tls || tl_tls_ctx_use_cert_file(tls, argv[2], argv[3]) != 0) {
        fprintf(stderr, "echo_server: %s\n", tls ? tl_tls_ctx_error(tls) : "out of memory");
        return 1;
    }
    static const tl_conn_cbs cbs = {.on_read = on_read, .on_close = on_close};
    opts = (tl_conn_opts){.tls = tls, .cbs = &cbs};
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (bind(lfd, (struct sockaddr *)&addr, len) != 0 || listen(lfd, 511) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
        perror("echo_server: listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    tl_loop *loop = tl_loop_new(NULL, 0);
    tl_io lio;
    tl_io_init(&lio, lfd, on_accept, NULL);
    tl_io_set(loop, &lio, TL_READABLE);
    tl_loop_on_signal(loop, SIGTERM, on_signal, NULL);
    tl_loop_on_signal(loop, SIGINT, on_signal, NULL);
    int rc = tl_loop_run(loop);
    tl_io_stop(loop, &lio);
    tl_loop_free(loop);
    tl_tls_ctx_free(tls);
    return rc == 0 ? 0 : 1;
}
