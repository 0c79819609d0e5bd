/*
 * bench/bench_engine/records.c - the record workloads: 16 KiB records each way, in buffer mode and
 * in transport mode over a socketpair, each path's server part (eng_* and raw_*) timing itself.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench_engine.h"

int batch_recs; /* records per timed batch in transport mode (from the socket buffer) */

/* ---- records ----------------------------------------------------------------------------- */

static ssize_t sock_recv(void *arg, void *buf, size_t len)
{
    ssize_t n = recv(*(int *)arg, buf, len, 0);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TL_IO_AGAIN : TL_IO_ERROR;
}

static ssize_t sock_send(void *arg, const void *buf, size_t len)
{
    ssize_t n = send(*(int *)arg, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TL_IO_AGAIN : TL_IO_ERROR;
}

typedef struct conn {
    int path;
    bool transport;
    tl_engine *c;
    srv s;     /* buffer mode (engine or raw with memory BIOs) */
    int fd[2]; /* transport: [0] client, [1] server */
    tl_transport ctp, stp;
    uint64_t sent, received; /* stream positions: server to client (checked), client to server */
    uint64_t stalls;         /* a write met a full socket */
} conn;

static void conn_open(conn *k, const server_side *side, tl_tls_ctx *ccfg, int path, bool transport)
{
    memset(k, 0, sizeof *k);
    k->path = path;
    k->transport = transport;
    k->fd[0] = k->fd[1] = -1;
    if (!transport) {
        tl_engine_opts co = {.server_name = "localhost"};
        k->c = tl_engine_new(ccfg, &co);
        if (!k->c)
            die("out of memory");
        srv_new(&k->s, path, side);
        c2s.len = s2c.len = 0;
        for (int i = 0; i < 10 && !(srv_done(&k->s) && tl_engine_handshake_done(k->c)); i++) {
            cli_flush_to(k->c, &c2s);
            srv_feed(&k->s, &c2s, &s2c);
            cli_feed(k->c, &s2c, NULL);
        }
        if (!srv_done(&k->s) || !tl_engine_handshake_done(k->c))
            die("buffer-mode handshake did not complete");
        cli_flush_to(k->c, &c2s);
        if (c2s.len)
            die("client output after the handshake");
        return;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, k->fd) != 0)
        die("socketpair: %s", strerror(errno));
    int big = 4 << 20;
    for (int i = 0; i < 2; i++) {
        setsockopt(k->fd[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(k->fd[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }
    k->ctp = (tl_transport){sock_recv, sock_send, &k->fd[0]};
    k->stp = (tl_transport){sock_recv, sock_send, &k->fd[1]};
    tl_engine_opts co = {.server_name = "localhost", .transport = &k->ctp};
    k->c = tl_engine_new(ccfg, &co);
    k->s.path = path;
    if (path == P_ENGINE) {
        tl_engine_opts so = {.transport = &k->stp};
        k->s.e = tl_engine_new(side->cfg, &so);
    } else {
        k->s.ssl = SSL_new(side->ssl_ctx);
        if (!k->s.ssl || !SSL_set_fd(k->s.ssl, k->fd[1]))
            die("SSL_new / SSL_set_fd failed");
        SSL_set_accept_state(k->s.ssl);
    }
    if (!k->c || (path == P_ENGINE && !k->s.e))
        die("out of memory");
    for (int i = 0; i < 50; i++) {
        tl_result r = tl_engine_handshake(k->c);
        if (r.status == TL_ERROR)
            die("client handshake: %s", tl_engine_error(k->c));
        if (path == P_ENGINE) {
            r = tl_engine_handshake(k->s.e);
            if (r.status == TL_ERROR)
                die("server handshake: %s", tl_engine_error(k->s.e));
        } else if (!SSL_is_init_finished(k->s.ssl)) {
            ERR_clear_error();
            int h = SSL_do_handshake(k->s.ssl);
            int err = h == 1 ? SSL_ERROR_NONE : SSL_get_error(k->s.ssl, h);
            if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
                die("raw server handshake failed");
        }
        if (tl_engine_handshake_done(k->c) && srv_done(&k->s) &&
            tl_engine_pending_output(k->c) == 0 &&
            (path == P_RAW || tl_engine_pending_output(k->s.e) == 0))
            break;
    }
    if (!tl_engine_handshake_done(k->c) || !srv_done(&k->s))
        die("transport handshake did not complete");
    tl_result r = tl_engine_read(k->c, capp, sizeof capp); /* the tickets */
    if (r.status != TL_WANT_INPUT || r.produced)
        die("client read after the handshake: %s", tl_status_name(r.status));
}

static void conn_close(conn *k)
{
    tl_engine_free(k->c);
    if (!k->transport) {
        srv_free(&k->s);
        return;
    }
    if (k->path == P_ENGINE)
        tl_engine_free(k->s.e);
    else
        SSL_free(k->s.ssl);
    close(k->fd[0]);
    close(k->fd[1]);
}

static const char *conn_cipher(conn *k) { return SSL_get_cipher_name(srv_ssl(&k->s)); }

/* Transport mode: the client reads everything in its socket, checking it. */
static void cli_drain(conn *k)
{
    for (;;) {
        tl_result r = tl_engine_read(k->c, capp, sizeof capp);
        verify_stream(capp, r.produced, &k->received);
        if (r.status == TL_OK)
            continue;
        if (r.status != TL_WANT_INPUT)
            die("client read: %s (%s)", tl_status_name(r.status), tl_engine_error(k->c));
        return;
    }
}

/* ---- record batches: each path's server part times itself ---- */

/* Buffer mode, server to client: n records wrapped into s2c. */
static NOINLINE uint64_t eng_wrap_recs(conn *k, int n)
{
    tl_engine *e = k->s.e;
    uint64_t t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        tl_result r =
            tl_engine_wrap(e, rec_src(k->sent / REC), REC, s2c.p + s2c.len, s2c.cap - s2c.len);
        if (r.status != TL_OK || r.consumed != REC)
            die("server wrap: %s", tl_status_name(r.status));
        s2c.len += r.produced;
        k->sent += REC;
    }
    return lap(t0);
}

static NOINLINE uint64_t raw_wrap_recs(conn *k, int n)
{
    SSL *ssl = k->s.ssl;
    uint64_t t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        size_t w;
        ERR_clear_error();
        if (!SSL_write_ex(ssl, rec_src(k->sent / REC), REC, &w))
            die("raw SSL_write_ex failed");
        int got = BIO_read(k->s.wb, s2c.p + s2c.len, (int)(s2c.cap - s2c.len));
        if (got <= 0)
            die("raw BIO_read failed");
        s2c.len += (size_t)got;
        k->sent += REC;
    }
    return lap(t0);
}

/* Buffer mode, client to server: the server takes all of c2s, reading into a 16 KiB buffer. */
static NOINLINE uint64_t eng_unwrap_recs(conn *k, size_t *got)
{
    tl_engine *e = k->s.e;
    size_t off = 0;
    uint64_t t0 = cpu_ns();
    for (;;) {
        tl_result r = tl_engine_unwrap(e, c2s.p + off, c2s.len - off, sapp, sizeof sapp);
        off += r.consumed;
        *got += r.produced;
        if (r.status == TL_OK)
            continue;
        if (r.status != TL_WANT_INPUT)
            die("server unwrap: %s (%s)", tl_status_name(r.status), tl_engine_error(e));
        if (off < c2s.len && r.consumed > 0)
            continue;
        break;
    }
    return lap(t0);
}

static NOINLINE uint64_t raw_unwrap_recs(conn *k, size_t *got)
{
    SSL *ssl = k->s.ssl;
    uint64_t t0 = cpu_ns();
    ERR_clear_error();
    if (BIO_write(k->s.rb, c2s.p, (int)c2s.len) != (int)c2s.len)
        die("BIO_write");
    for (;;) {
        size_t m;
        ERR_clear_error();
        if (!SSL_read_ex(ssl, sapp, sizeof sapp, &m)) {
            if (SSL_get_error(ssl, 0) != SSL_ERROR_WANT_READ)
                die("raw SSL_read_ex failed");
            break;
        }
        *got += m;
    }
    return lap(t0);
}

/* Transport mode, server to client: n records written to the socket. A full socket (not expected
 * with the batch sizes used) pauses the timer while the client reads. */
static NOINLINE uint64_t eng_write_recs(conn *k, int n)
{
    tl_engine *e = k->s.e;
    uint64_t t = 0, t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        tl_result r = tl_engine_write(e, rec_src(k->sent / REC), REC);
        if (r.consumed != REC)
            die("server write: %s (%s)", tl_status_name(r.status), tl_engine_error(e));
        k->sent += REC;
        while (r.status == TL_WANT_OUTPUT) {
            t += lap(t0);
            k->stalls++;
            cli_drain(k);
            t0 = cpu_ns();
            r = tl_engine_flush(e);
        }
        if (r.status != TL_OK)
            die("server write: %s (%s)", tl_status_name(r.status), tl_engine_error(e));
    }
    return t + lap(t0);
}

static NOINLINE uint64_t raw_write_recs(conn *k, int n)
{
    SSL *ssl = k->s.ssl;
    uint64_t t = 0, t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        size_t w;
        for (;;) {
            ERR_clear_error();
            if (SSL_write_ex(ssl, rec_src(k->sent / REC), REC, &w))
                break;
            if (SSL_get_error(ssl, 0) != SSL_ERROR_WANT_WRITE)
                die("raw SSL_write_ex failed");
            t += lap(t0);
            k->stalls++;
            cli_drain(k);
            t0 = cpu_ns();
        }
        k->sent += REC;
    }
    return t + lap(t0);
}

/* Transport mode, client to server: the server reads until the socket is empty. */
static NOINLINE uint64_t eng_read_recs(conn *k, size_t *got)
{
    tl_engine *e = k->s.e;
    uint64_t t0 = cpu_ns();
    for (;;) {
        tl_result r = tl_engine_read(e, sapp, sizeof sapp);
        *got += r.produced;
        if (r.status == TL_OK)
            continue;
        if (r.status != TL_WANT_INPUT)
            die("server read: %s (%s)", tl_status_name(r.status), tl_engine_error(e));
        return lap(t0);
    }
}

static NOINLINE uint64_t raw_read_recs(conn *k, size_t *got)
{
    SSL *ssl = k->s.ssl;
    uint64_t t0 = cpu_ns();
    for (;;) {
        size_t m;
        ERR_clear_error();
        if (!SSL_read_ex(ssl, sapp, sizeof sapp, &m)) {
            if (SSL_get_error(ssl, 0) != SSL_ERROR_WANT_READ)
                die("raw SSL_read_ex failed");
            return lap(t0);
        }
        *got += m;
    }
}

/* Server to client: the server sends n records (timed), the client takes and checks them. */
static uint64_t batch_s2c(conn *k, int n)
{
    bool eng = k->path == P_ENGINE;
    uint64_t t;
    if (!k->transport) {
        s2c.len = 0;
        t = eng ? eng_wrap_recs(k, n) : raw_wrap_recs(k, n);
        if (!eng && BIO_ctrl_pending(k->s.wb))
            die("raw output left in the memory BIO");
        cli_feed(k->c, &s2c, &k->received);
    } else {
        t = eng ? eng_write_recs(k, n) : raw_write_recs(k, n);
        cli_drain(k);
    }
    if (k->received != k->sent)
        die("the client got %llu of %llu bytes", (unsigned long long)k->received,
            (unsigned long long)k->sent);
    return t;
}

/* Client to server: the client sends n records, the server reads them (timed). */
static uint64_t batch_c2s(conn *k, int n)
{
    bool eng = k->path == P_ENGINE;
    uint64_t t = 0, want = k->sent + (uint64_t)n * REC;
    if (!k->transport) {
        c2s.len = 0;
        for (int i = 0; i < n; i++) {
            tl_result r = tl_engine_wrap(k->c, rec_src(k->sent / REC), REC, c2s.p + c2s.len,
                                         c2s.cap - c2s.len);
            if (r.status != TL_OK || r.consumed != REC)
                die("client wrap: %s", tl_status_name(r.status));
            c2s.len += r.produced;
            k->sent += REC;
        }
        size_t got = 0;
        t = eng ? eng_unwrap_recs(k, &got) : raw_unwrap_recs(k, &got);
        k->received += got;
        c2s.len = 0;
    } else {
        while (k->received < want) {
            bool stalled = false;
            if (tl_engine_pending_output(k->c) > 0 && tl_engine_flush(k->c).status != TL_OK)
                stalled = true;
            while (!stalled && k->sent < want) {
                tl_result r = tl_engine_write(k->c, rec_src(k->sent / REC), REC);
                k->sent += r.consumed;
                if (r.status == TL_WANT_OUTPUT)
                    stalled = true;
                else if (r.status != TL_OK)
                    die("client write: %s", tl_status_name(r.status));
            }
            k->stalls += stalled;
            size_t got = 0;
            t += eng ? eng_read_recs(k, &got) : raw_read_recs(k, &got);
            if (got == 0 && !stalled && k->received < want)
                die("the server read nothing");
            k->received += got;
        }
    }
    if (k->received != want)
        die("the server got %llu of %llu bytes", (unsigned long long)k->received,
            (unsigned long long)want);
    return t;
}

uint64_t run_records(const server_side *side, tl_tls_ctx *ccfg, bool transport, bool s2c_dir,
                     int path, int mib, rec_check *chk)
{
    conn k;
    conn_open(&k, side, ccfg, path, transport);
    chk->cipher = conn_cipher(&k);
    int per = transport ? batch_recs : MAX_BATCH;
    int64_t left = (int64_t)mib * (1 << 20) / REC;
    uint64_t t = 0;
    while (left > 0) {
        int n = left < per ? (int)left : per;
        t += s2c_dir ? batch_s2c(&k, n) : batch_c2s(&k, n);
        left -= n;
    }
    chk->bytes += k.sent;
    chk->stalls += k.stalls;
    conn_close(&k);
    return t;
}
