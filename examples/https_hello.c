/* https_hello.c - the smallest HTTPS responder on tlsloop: every connection gets one answer, then
 * a clean close (close_notify, then FIN). Tested by tests/e2e/test_examples.py.
 * usage: https_hello PORT CERT.pem KEY.pem   (PORT 0: any free port; the one taken is printed) */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsloop/conn.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 14\r\nConnection: close\r\n\r\nhello, world!\n";

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    /* Answer once the request's header block is complete (no body is expected). */
    if (len >= 4 && memcmp(data + len - 4, "\r\n\r\n", 4) == 0) {
        tl_conn_write(c, RESPONSE, sizeof RESPONSE - 1);
        tl_conn_close(c);
    }
}

static tl_conn_opts opts;

static void on_accept(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    int fd;
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP &&
                    (fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0; i++)
        tl_conn_accept(loop, fd, &opts);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: https_hello PORT CERT.pem KEY.pem\n");
        return 2;
    }
    tl_tls_ctx *tls = tl_tls_ctx_new(TL_ROLE_SERVER);
    if (!tls || tl_tls_ctx_use_cert_file(tls, argv[2], argv[3]) != 0 ||
        tl_tls_ctx_set_alpn(tls, "http/1.1") != 0) {
        fprintf(stderr, "https_hello: %s\n", tls ? tl_tls_ctx_error(tls) : "out of memory");
        return 1;
    }
    static const tl_conn_cbs cbs = {.on_read = on_read};
    opts = (tl_conn_opts){.tls = tls, .cbs = &cbs};
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (bind(lfd, (struct sockaddr *)&addr, len) != 0 || listen(lfd, 511) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
        perror("https_hello: listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    tl_loop *loop = tl_loop_new(NULL, 0);
    tl_io lio;
    tl_io_init(&lio, lfd, on_accept, NULL);
    tl_io_set(loop, &lio, TL_READABLE);
    return tl_loop_run(loop) == 0 ? 0 : 1;
}
