/*
 * bench/bench_engine.c - the engine against raw OpenSSL, in one process: server-side CPU per TLS
 * handshake and per MiB of 16 KiB records.
 *
 * Every workload runs twice per round on the same objects: through the engine (tl_engine_*) and
 * through raw OpenSSL calls on an SSL made from the engine configuration's own SSL_CTX (so the
 * certificate, groups, ciphers, read-ahead, session cache, ticket keys and number of tickets are
 * the same). The client is the same engine for both; it offers only the cipher measured and does
 * not verify the certificate (client work is not measured). The checks at the end confirm that
 * both servers sent the same bytes and tickets per handshake and resumed (or not) every time.
 *
 *   handshakes  buffer mode; full TLS 1.3 (RSA-2048, ECDSA P-256), resumed TLS 1.3 (each ticket
 *               used once, the new one offered next) and resumed TLS 1.2 (session ID, tickets
 *               off; 4x as many, they are short). Engine: tl_engine_new, unwrap then wrap per
 *               flight, tl_engine_free. Raw: SSL_new + two memory BIOs, BIO_write of the flight,
 *               SSL_do_handshake, SSL_read_ex once the handshake is done (a correct server must
 *               look for data that came with the client's Finished), BIO_read of the output,
 *               SSL_free after marking the shutdown sent as the engine does (else OpenSSL drops
 *               the session from its cache). Both clear the thread's error queue before their
 *               OpenSSL calls, as SSL_get_error requires.
 *   records     16 KiB application writes (and reads into a 16 KiB buffer), server to client and
 *               client to server: buffer mode (tl_engine_wrap/unwrap vs SSL_write_ex/SSL_read_ex
 *               over memory BIOs) and transport mode over an AF_UNIX socketpair (tl_engine_write/
 *               read with recv/send(MSG_NOSIGNAL) callbacks vs SSL_write_ex/SSL_read_ex on
 *               SSL_set_fd's socket BIO). The client checks every byte it receives.
 *
 * Only the server's calls are timed, with CLOCK_THREAD_CPUTIME_ID: client and server alternate on
 * one thread, so the client's work (and any wait) is never counted. Records are timed per batch
 * (1 MiB when the socket buffer holds it) so the timer's own cost stays negligible.
 *
 * Rounds interleave the two paths (engine first in even rounds, raw first in odd ones); the table
 * gives medians with min-max, and the ratio engine/raw is the median of the per-round ratios.
 * It is a benchmark: it fails only when something does not work (a handshake, a byte count), never
 * because of a timing.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h> /* a profile (bench/callgrind.sh) starts after the warm-up */
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#endif

#include <tlsloop/api.h>
#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

#define REC 16384           /* application bytes per write / read */
#define SRC_SIZE (1u << 20) /* the source pattern: record k is the slice k mod 64 */
#define SRC_RECS (SRC_SIZE / REC)
#define MAX_BATCH 64 /* records per timed batch (1 MiB) */
#define NET_CAP (MAX_BATCH * (REC + 64) + 65536)
#define CLI_APP 65536
#define MAX_ROUNDS 101

enum { P_ENGINE = 0, P_RAW = 1 };
static const char *const PATH_NAME[] = {"engine", "raw"};

/* ---- small things ------------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_engine: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static inline uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Timed intervals so far: each carries about one clock reading of overhead (a system call here),
 * which measure() subtracts. */
static uint64_t intervals;
static double timer_ns;

static inline uint64_t lap(uint64_t t0)
{
    uint64_t t1 = cpu_ns();
    intervals++;
    return t1 - t0;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct nbuf {
    uint8_t *p;
    size_t len, cap;
} nbuf;

static void nbuf_init(nbuf *b, size_t cap)
{
    b->p = malloc(cap);
    b->len = 0;
    b->cap = cap;
    if (!b->p)
        die("out of memory");
}

static uint8_t *src;          /* SRC_SIZE bytes of pattern */
static uint8_t sapp[REC];     /* the server's application buffer */
static uint8_t capp[CLI_APP]; /* the client's */
static nbuf c2s, s2c;         /* network bytes between them (buffer mode) */

static const uint8_t *rec_src(uint64_t k) { return src + (k % SRC_RECS) * REC; }

/* Check application bytes the client received against the stream position *pos. */
static void verify_stream(const uint8_t *p, size_t n, uint64_t *pos)
{
    while (n > 0) {
        size_t off = (size_t)(*pos % SRC_SIZE), k = SRC_SIZE - off;
        if (k > n)
            k = n;
        if (memcmp(p, src + off, k) != 0)
            die("the client received wrong bytes at stream offset %llu", (unsigned long long)*pos);
        p += k;
        n -= k;
        *pos += k;
    }
}

/* ---- options ----------------------------------------------------------------------------- */

static struct {
    int rounds;
    int handshakes;
    int mib;
    bool quick, json, chacha;
    int cpu;
    const char *only;
} opt = {5, 2000, 512, false, false, false, -1, NULL};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_engine [--rounds N] [--handshakes N] [--mib N] [--cipher aes|chacha]\n"
        "                    [--quick] [--json] [--cpu N] [--only KEY[,KEY...]]\n"
        "  --rounds N      rounds, engine and raw interleaved (default 5)\n"
        "  --handshakes N  handshakes per measurement (default 2000; TLS 1.2 resumption 4N)\n"
        "  --mib N         MiB per record measurement and direction (default 512)\n"
        "  --cipher C      aes (TLS_AES_128_GCM_SHA256, default) or chacha\n"
        "  --quick         a smoke run: 3 rounds, 100 handshakes, 32 MiB\n"
        "  --json          machine-readable output instead of the table\n"
        "  --cpu N         pin the thread to CPU N\n"
        "  --only KEYS     run only these workloads (hs_full_rsa hs_full_ecdsa hs_resumed_tls13\n"
        "                  hs_resumed_tls12 buf_s2c buf_c2s tp_s2c tp_c2s; a prefix works)\n");
}

static int int_arg(int argc, char **argv, int *i, int min, int max)
{
    if (*i + 1 >= argc)
        die("%s needs a number", argv[*i]);
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < min || v > max)
        die("%s: %s is not a number in %d..%d", argv[*i - 1], argv[*i], min, max);
    return (int)v;
}

static void parse_args(int argc, char **argv)
{
    bool rounds = false, hs = false, mib = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--rounds")) {
            opt.rounds = int_arg(argc, argv, &i, 1, MAX_ROUNDS);
            rounds = true;
        } else if (!strcmp(a, "--handshakes")) {
            opt.handshakes = int_arg(argc, argv, &i, 1, 10000000);
            hs = true;
        } else if (!strcmp(a, "--mib")) {
            opt.mib = int_arg(argc, argv, &i, 1, 1 << 20);
            mib = true;
        } else if (!strcmp(a, "--cpu")) {
            opt.cpu = int_arg(argc, argv, &i, 0, 4095);
        } else if (!strcmp(a, "--cipher")) {
            if (i + 1 >= argc)
                die("--cipher needs aes or chacha");
            const char *c = argv[++i];
            if (!strcmp(c, "chacha"))
                opt.chacha = true;
            else if (strcmp(c, "aes"))
                die("--cipher: '%s' is neither aes nor chacha", c);
        } else if (!strcmp(a, "--only")) {
            if (i + 1 >= argc)
                die("--only needs workload keys");
            opt.only = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--json")) {
            opt.json = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            die("unknown option '%s'", a);
        }
    }
    if (opt.quick) {
        if (!rounds)
            opt.rounds = 3;
        if (!hs)
            opt.handshakes = 100;
        if (!mib)
            opt.mib = 32;
    }
}

/* ---- certificates and configurations ----------------------------------------------------- */

static tl_certgen_pair make_cert(tl_key_type key)
{
    static const char *const names[] = {"localhost"};
    tl_certgen_spec spec = {
        .key = key, .dns_names = names, .n_dns = 1, .not_before = -3600, .not_after = 86400};
    tl_certgen_pair pair;
    char err[256];
    if (tl_certgen_issue(&spec, NULL, &pair, err, sizeof err) != 0)
        die("certificate: %s", err);
    return pair;
}

static void must(int rc, tl_tls_ctx *ctx, const char *what)
{
    if (rc != 0)
        die("%s: %s", what, tl_tls_ctx_error(ctx));
}

static tl_tls_ctx *server_cfg(const tl_certgen_pair *leaf, bool tickets)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_SERVER);
    if (!ctx)
        die("out of memory");
    must(tl_tls_ctx_use_cert_pem(ctx, leaf->cert_pem, leaf->key_pem), ctx, "server certificate");
    if (!tickets)
        must(tl_tls_ctx_set_tickets(ctx, false), ctx, "tickets off");
    return ctx;
}

/* The client picks the cipher: it offers only the one measured. It does not verify (that is
 * client work only; the server's work is the same). */
static tl_tls_ctx *client_cfg(int max_version)
{
    tl_tls_ctx *ctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    if (!ctx)
        die("out of memory");
    must(tl_tls_ctx_set_verify(ctx, TL_VERIFY_NONE), ctx, "client verify");
    must(tl_tls_ctx_set_versions(ctx, TL_TLS1_2, max_version), ctx, "client versions");
    if (opt.chacha)
        must(tl_tls_ctx_set_ciphers(ctx,
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
                                    "TLS_CHACHA20_POLY1305_SHA256"),
             ctx, "client ciphers");
    else
        must(tl_tls_ctx_set_ciphers(ctx,
                                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
                                    "TLS_AES_128_GCM_SHA256"),
             ctx, "client ciphers");
    return ctx;
}

/* A server configuration and the very SSL_CTX its engines use, for the raw path. */
typedef struct server_side {
    tl_tls_ctx *cfg;
    tl_engine *anchor; /* freezes cfg and lends us its SSL_CTX */
    SSL_CTX *ssl_ctx;
} server_side;

static void server_side_init(server_side *s, tl_tls_ctx *cfg)
{
    s->cfg = cfg;
    s->anchor = tl_engine_new(cfg, NULL);
    if (!s->anchor)
        die("out of memory");
    s->ssl_ctx = SSL_get_SSL_CTX(tl_engine_ssl(s->anchor));
}

static uint64_t tickets_issued(const server_side *s)
{
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s->cfg), &st);
    return st.issued;
}

/* ---- the client (an engine, the same for both server paths; never timed) ----------------- */

/* Append everything the client has to send to nb. */
static void cli_flush_to(tl_engine *c, nbuf *nb)
{
    for (int guard = 0; guard < 1000; guard++) {
        tl_result r = tl_engine_wrap(c, NULL, 0, nb->p + nb->len, nb->cap - nb->len);
        nb->len += r.produced;
        if (r.status == TL_ERROR)
            die("client wrap: %s", tl_engine_error(c));
        if (tl_engine_pending_output(c) == 0)
            return;
        if (r.produced == 0)
            die("client output does not fit its buffer");
    }
    die("client wrap does not end");
}

/* Give nb to the client; application bytes are checked against the stream at *pos (NULL: none
 * expected). */
static void cli_feed(tl_engine *c, nbuf *nb, uint64_t *pos)
{
    size_t off = 0;
    for (;;) {
        tl_result r = tl_engine_unwrap(c, nb->p + off, nb->len - off, capp, sizeof capp);
        off += r.consumed;
        if (r.produced) {
            if (!pos)
                die("the client received unexpected data");
            verify_stream(capp, r.produced, pos);
        }
        if (r.status == TL_OK)
            continue;
        if (r.status != TL_WANT_INPUT)
            die("client unwrap: %s (%s)", tl_status_name(r.status), tl_engine_error(c));
        if (off < nb->len && r.consumed > 0)
            continue;
        break;
    }
    if (off != nb->len)
        die("the client left %zu network bytes", nb->len - off);
    nb->len = 0;
}

/* ---- the server in buffer mode: engine or raw -------------------------------------------- */

typedef struct srv {
    int path;
    tl_engine *e;
    SSL *ssl;
    BIO *rb, *wb; /* raw, buffer mode: memory BIOs */
} srv;

/* Each path's server code is in functions of its own (never inlined), so that a profile
 * (valgrind --tool=callgrind) gives each path's cost as the inclusive cost of eng_* and raw_*. */
#define NOINLINE __attribute__((noinline))

static NOINLINE void eng_new(srv *s, const server_side *side)
{
    s->e = tl_engine_new(side->cfg, NULL);
    if (!s->e)
        die("out of memory");
}

static NOINLINE void raw_new(srv *s, const server_side *side)
{
    s->ssl = SSL_new(side->ssl_ctx);
    s->rb = BIO_new(BIO_s_mem());
    s->wb = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rb || !s->wb)
        die("SSL_new / BIO_new failed");
    SSL_set_bio(s->ssl, s->rb, s->wb);
    SSL_set_accept_state(s->ssl);
}

static void srv_new(srv *s, int path, const server_side *side)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    if (path == P_ENGINE)
        eng_new(s, side);
    else
        raw_new(s, side);
}

/* One input event: the network bytes in `in` arrive; the server's output is appended to out.
 * Engine: unwrap until it wants input, then wrap while it says NEED_WRAP. */
static NOINLINE void eng_feed(srv *s, nbuf *in, nbuf *out)
{
    size_t off = 0;
    tl_result r;
    for (;;) {
        r = tl_engine_unwrap(s->e, in->p + off, in->len - off, sapp, sizeof sapp);
        off += r.consumed;
        if (r.status == TL_OK)
            continue;
        if (r.status == TL_WANT_INPUT && off < in->len && r.consumed > 0)
            continue;
        break;
    }
    if (r.status != TL_WANT_INPUT)
        die("server unwrap: %s (%s)", tl_status_name(r.status), tl_engine_error(s->e));
    while (r.hs == TL_HS_NEED_WRAP) {
        r = tl_engine_wrap(s->e, NULL, 0, out->p + out->len, out->cap - out->len);
        out->len += r.produced;
        if (r.status != TL_OK && r.status != TL_WANT_INPUT)
            die("server wrap: %s (%s)", tl_status_name(r.status), tl_engine_error(s->e));
    }
}

/* Raw: what a correct non-blocking server does with memory BIOs. */
static NOINLINE void raw_feed(srv *s, nbuf *in, nbuf *out)
{
    ERR_clear_error();
    if (in->len && BIO_write(s->rb, in->p, (int)in->len) != (int)in->len)
        die("BIO_write");
    if (!SSL_is_init_finished(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);
        if (r != 1 && SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
            die("raw server: SSL_do_handshake failed");
    }
    if (SSL_is_init_finished(s->ssl)) {
        /* data may have come with the client's Finished: a server must look now */
        size_t n;
        while (SSL_read_ex(s->ssl, sapp, sizeof sapp, &n))
            ;
        if (SSL_get_error(s->ssl, 0) != SSL_ERROR_WANT_READ)
            die("raw server: SSL_read_ex failed");
    }
    size_t pend = BIO_ctrl_pending(s->wb);
    if (pend > 0) {
        if (pend > out->cap - out->len ||
            BIO_read(s->wb, out->p + out->len, (int)pend) != (int)pend)
            die("raw server: output does not fit");
        out->len += pend;
    }
}

static void srv_feed(srv *s, nbuf *in, nbuf *out)
{
    if (s->path == P_ENGINE)
        eng_feed(s, in, out);
    else
        raw_feed(s, in, out);
    in->len = 0;
}

static bool srv_done(const srv *s)
{
    return s->path == P_ENGINE ? tl_engine_handshake_done(s->e) : SSL_is_init_finished(s->ssl);
}

static SSL *srv_ssl(const srv *s) { return s->path == P_ENGINE ? tl_engine_ssl(s->e) : s->ssl; }

static NOINLINE void eng_free(srv *s) { tl_engine_free(s->e); }

static NOINLINE void raw_free(srv *s)
{
    /* Keep the session cached as the engine does after a complete exchange (OpenSSL drops the
     * session of an SSL freed without SENT_SHUTDOWN). */
    SSL_set_shutdown(s->ssl, SSL_get_shutdown(s->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(s->ssl);
}

static void srv_free(srv *s)
{
    if (s->path == P_ENGINE)
        eng_free(s);
    else
        raw_free(s);
}

/* ---- handshakes -------------------------------------------------------------------------- */

typedef enum hs_kind { HS_FULL, HS_RESUME13, HS_RESUME12 } hs_kind;

typedef struct hs_check {
    uint64_t handshakes, reused, server_bytes, tickets;
} hs_check;

/* One connection: the client's ClientHello, the server's flight, the client's Finished, the
 * server's answer (TLS 1.3: its tickets), then the client reads them. Returns the server's CPU.
 * *sess: the session to offer (NULL: none); with renew, replaced by the newest one. */
static uint64_t one_handshake(const server_side *side, tl_tls_ctx *ccfg, int path,
                              tl_session **sess, bool renew, hs_check *chk)
{
    tl_engine_opts co = {.server_name = "localhost", .session = sess ? *sess : NULL};
    tl_engine *c = tl_engine_new(ccfg, &co);
    if (!c)
        die("out of memory");
    srv s;
    c2s.len = s2c.len = 0;
    cli_flush_to(c, &c2s);

    uint64_t t0 = cpu_ns();
    srv_new(&s, path, side);
    srv_feed(&s, &c2s, &s2c);
    uint64_t t = lap(t0);

    chk->server_bytes += s2c.len;
    cli_feed(c, &s2c, NULL);
    cli_flush_to(c, &c2s);

    t0 = cpu_ns();
    srv_feed(&s, &c2s, &s2c);
    bool done = srv_done(&s);
    int reused = SSL_session_reused(srv_ssl(&s));
    srv_free(&s);
    t += lap(t0);

    chk->handshakes++;
    chk->reused += reused == 1;
    chk->server_bytes += s2c.len;
    cli_feed(c, &s2c, NULL); /* TLS 1.3: the tickets; TLS 1.2: the server's Finished */
    if (!done || !tl_engine_handshake_done(c))
        die("%s handshake did not complete", PATH_NAME[path]);
    if (renew && sess) {
        tl_session *next = tl_engine_get_session(c);
        if (!next)
            die("no session after a handshake");
        tl_session_free(*sess);
        *sess = next;
    }
    tl_engine_free(c);
    return t;
}

static uint64_t run_handshakes(const server_side *side, tl_tls_ctx *ccfg, hs_kind kind, int path,
                               int n, hs_check *chk)
{
    tl_session *sess = NULL;
    if (kind != HS_FULL) {
        hs_check scratch = {0};
        one_handshake(side, ccfg, path, &sess, true, &scratch); /* untimed: the first session */
    }
    uint64_t tickets0 = tickets_issued(side), t = 0;
    for (int i = 0; i < n; i++)
        t += one_handshake(side, ccfg, path, kind == HS_FULL ? NULL : &sess, kind == HS_RESUME13,
                           chk);
    chk->tickets += tickets_issued(side) - tickets0;
    tl_session_free(sess);
    return t;
}

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

static int batch_recs; /* records per timed batch in transport mode (from the socket buffer) */

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

typedef struct rec_check {
    uint64_t bytes, stalls;
    const char *cipher;
} rec_check;

static uint64_t run_records(const server_side *side, tl_tls_ctx *ccfg, bool transport, bool s2c_dir,
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

/* ---- workloads, rounds, statistics ------------------------------------------------------- */

typedef enum wl_kind { WL_HS, WL_REC } wl_kind;

typedef struct workload {
    const char *key, *name;
    wl_kind kind;
    hs_kind hs;
    bool transport, s2c;
    server_side *side;
    tl_tls_ctx *ccfg;
    int count;        /* handshakes, or MiB */
    double max_ratio; /* engine/raw CPU at most this for PASS; 0: no target */
    const char *target;
    double v[2][MAX_ROUNDS]; /* per round: us per handshake, or us per MiB */
    double ratio[MAX_ROUNDS];
    int n;
    hs_check hc[2];
    rec_check rc[2];
} workload;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stat3 {
    double med, min, max;
} stat3;

static stat3 stats(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    stat3 s = {n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2, tmp[0], tmp[n - 1]};
    return s;
}

/* One measurement: server CPU in us per handshake or per MiB, minus the timer's own cost. */
static double measure(workload *w, int path, int count)
{
    uint64_t ns, before = intervals;
    if (w->kind == WL_HS)
        ns = run_handshakes(w->side, w->ccfg, w->hs, path, count, &w->hc[path]);
    else
        ns = run_records(w->side, w->ccfg, w->transport, w->s2c, path, count, &w->rc[path]);
    double net = (double)ns - (double)(intervals - before) * timer_ns;
    return net / 1e3 / count;
}

/* A tenth of a measurement on both paths, not recorded: allocator, caches, OpenSSL's fetches. */
static void warm_up(workload *w)
{
    int count = w->count / 10;
    if (count < (w->kind == WL_HS ? 5 : 2))
        count = w->kind == WL_HS ? 5 : 2;
    for (int p = 0; p < 2; p++)
        measure(w, p, count);
    memset(w->hc, 0, sizeof w->hc);
    memset(w->rc, 0, sizeof w->rc);
}

static bool selected(const char *key)
{
    if (!opt.only)
        return true;
    const char *p = opt.only;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0 && strncmp(key, p, len) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

/* ---- machine facts ----------------------------------------------------------------------- */

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, len, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, len, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* The machine's CPU time from /proc/stat, in seconds: busy (all CPUs, any process) and stolen by
 * the hypervisor. Minus our own CPU time, busy says how much else ran during the benchmark. */
typedef struct machine_cpu {
    double busy, steal;
} machine_cpu;

static machine_cpu machine_cpu_now(void)
{
    machine_cpu m = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return m;
    unsigned long long v[8] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        m.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
        m.steal = (double)v[7] / hz;
    }
    fclose(f);
    return m;
}

static double own_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The CPU time an empty interval measures: the median of many. */
static double timer_cost_ns(void)
{
    enum { N = 4001 };
    static double d[N];
    for (int i = 0; i < N; i++) {
        uint64_t t0 = cpu_ns();
        d[i] = (double)(cpu_ns() - t0);
    }
    qsort(d, N, sizeof d[0], cmp_double);
    return d[N / 2];
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (opt.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opt.cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            die("cannot pin to CPU %d: %s", opt.cpu, strerror(errno));
    }
    double start_wall = wall_s();
    time_t now = time(NULL);
    char date[64], model[256], load0[64], load1[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    cpu_model(model, sizeof model);
    loadavg(load0, sizeof load0);
    struct utsname un;
    if (uname(&un) != 0)
        snprintf(un.release, sizeof un.release, "?");
    machine_cpu m0 = machine_cpu_now();
    double own0 = own_cpu_s();

    src = malloc(SRC_SIZE);
    if (!src)
        die("out of memory");
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < SRC_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        src[i] = (uint8_t)x;
    }
    nbuf_init(&c2s, NET_CAP);
    nbuf_init(&s2c, NET_CAP);

    if (!opt.json)
        fprintf(stderr, "bench_engine: making certificates...\n");
    tl_certgen_pair rsa = make_cert(TL_KEY_RSA_2048), ec = make_cert(TL_KEY_ECDSA_P256);
    server_side s_rsa, s_ec, s_ec12;
    server_side_init(&s_rsa, server_cfg(&rsa, true));
    server_side_init(&s_ec, server_cfg(&ec, true));
    server_side_init(&s_ec12, server_cfg(&ec, false));
    tl_tls_ctx *c13 = client_cfg(TL_TLS1_3), *c12 = client_cfg(TL_TLS1_2);

    /* Records per batch in transport mode: what the socket buffer surely holds (up to 1 MiB). */
    {
        int sv[2], big = 4 << 20, got = 0;
        socklen_t len = sizeof got;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            die("socketpair: %s", strerror(errno));
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &got, &len);
        close(sv[0]);
        close(sv[1]);
        batch_recs = got / 2 / 24576; /* a 16 KiB record costs ~20 KiB of socket memory */
        if (batch_recs > MAX_BATCH)
            batch_recs = MAX_BATCH;
        if (batch_recs < 1)
            batch_recs = 1;
    }

    int n = opt.handshakes;
    const double HS_MAX = 1.03, REC_MAX = 1.0 / 0.95;
#define HS(k, nm, kind_, side_, cli, cnt)                                                          \
    {.key = k, .name = nm, .kind = WL_HS, .hs = kind_, .side = side_, .ccfg = cli, .count = cnt,  \
     .max_ratio = HS_MAX, .target = "<= 1.03"}
#define RECS(k, nm, tp, dir, maxr, tgt)                                                            \
    {.key = k, .name = nm, .kind = WL_REC, .transport = tp, .s2c = dir, .side = &s_ec,            \
     .ccfg = c13, .count = opt.mib, .max_ratio = maxr, .target = tgt}
    workload wl[] = {
        HS("hs_full_rsa", "full TLS 1.3 handshake, RSA-2048", HS_FULL, &s_rsa, c13, n),
        HS("hs_full_ecdsa", "full TLS 1.3 handshake, ECDSA P-256", HS_FULL, &s_ec, c13, n),
        HS("hs_resumed_tls13", "resumed TLS 1.3 (ticket, X25519)", HS_RESUME13, &s_ec, c13, n),
        HS("hs_resumed_tls12", "resumed TLS 1.2 (session ID)", HS_RESUME12, &s_ec12, c12, 4 * n),
        RECS("buf_s2c", "records, buffer mode, server -> client", false, true, 0, "-"),
        RECS("buf_c2s", "records, buffer mode, client -> server", false, false, 0, "-"),
        RECS("tp_s2c", "records, transport mode, server -> client", true, true, REC_MAX,
             "MB/s >= 95%"),
        RECS("tp_c2s", "records, transport mode, client -> server", true, false, REC_MAX,
             "MB/s >= 95%"),
    };
#undef HS
#undef RECS
    int nwl = (int)(sizeof wl / sizeof wl[0]), active = 0;
    for (int i = 0; i < nwl; i++)
        active += selected(wl[i].key);
    if (!active)
        die("--only %s selects no workload", opt.only);

    double tcost = timer_ns = timer_cost_ns();
    const char *suite = opt.chacha ? "TLS_CHACHA20_POLY1305_SHA256" : "TLS_AES_128_GCM_SHA256";
    if (!opt.json) {
        printf("tlsloop %s engine benchmark (bench/bench_engine.c), %s\n", TL_VERSION_STRING, date);
        printf("machine: %s, %ld CPUs online, kernel %s, %s\n", model,
               sysconf(_SC_NPROCESSORS_ONLN), un.release, OpenSSL_version(OPENSSL_VERSION));
        printf("settings: %d rounds; %d handshakes per measurement (TLS 1.2 resumption %d); "
               "%d MiB per record measurement;\n  %s; %d-byte application writes and reads; "
               "%d records per timed batch (transport mode: %d)%s\n",
               opt.rounds, n, 4 * n, opt.mib, suite, REC, MAX_BATCH, batch_recs,
               opt.cpu >= 0 ? "; pinned" : "");
        printf("method: one thread; client and server take turns and only the server's calls are "
               "timed, with\n  CLOCK_THREAD_CPUTIME_ID (an empty interval reads %.0f ns; "
               "subtracted per interval).\n  raw = SSL_new on the engine configuration's own "
               "SSL_CTX, with memory BIOs (buffer mode) or\n  SSL_set_fd (transport mode). Rounds "
               "alternate which path goes first; engine/raw = median of the\n  per-round ratios "
               "of server CPU (above 1: the engine costs more).\n",
               tcost);
        printf("load average at start: %s\n\n", load0);
        fflush(stdout);
    }

    for (int i = 0; i < nwl; i++)
        if (selected(wl[i].key))
            warm_up(&wl[i]);
    CALLGRIND_ZERO_STATS; /* one-time costs (RSA blinding, Montgomery contexts) stay out of it */

    for (int r = 0; r < opt.rounds; r++) {
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!selected(w->key))
                continue;
            int first = r % 2 ? P_RAW : P_ENGINE;
            for (int k = 0; k < 2; k++) {
                int p = k == 0 ? first : 1 - first;
                w->v[p][w->n] = measure(w, p, w->count);
            }
            w->ratio[w->n] = w->v[P_ENGINE][w->n] / w->v[P_RAW][w->n];
            w->n++;
        }
        if (!opt.json) {
            fprintf(stderr, "bench_engine: round %d/%d done (%.0f s)\n", r + 1, opt.rounds,
                    wall_s() - start_wall);
        }
    }
    loadavg(load1, sizeof load1);
    machine_cpu m1 = machine_cpu_now();
    double steal_s = m1.steal - m0.steal;
    double other_s = (m1.busy - m0.busy) - (own_cpu_s() - own0);
    if (other_s < 0)
        other_s = 0;
    double elapsed = wall_s() - start_wall;

    /* Consistency: both paths did the same work. */
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n || w->kind != WL_HS)
            continue;
        hs_check *e = &w->hc[P_ENGINE], *r = &w->hc[P_RAW];
        uint64_t want = w->hs == HS_FULL ? 0 : e->handshakes;
        if (e->reused != want || r->reused != (w->hs == HS_FULL ? 0 : r->handshakes))
            die("%s: resumed %llu/%llu (engine) and %llu/%llu (raw)", w->key,
                (unsigned long long)e->reused, (unsigned long long)e->handshakes,
                (unsigned long long)r->reused, (unsigned long long)r->handshakes);
        if (e->tickets * r->handshakes != r->tickets * e->handshakes)
            die("%s: the engine and raw servers sent different numbers of tickets", w->key);
        double be = (double)e->server_bytes / e->handshakes,
               br = (double)r->server_bytes / r->handshakes;
        if (be > br * 1.01 || br > be * 1.01)
            die("%s: server bytes per handshake differ: engine %.1f, raw %.1f", w->key, be, br);
    }

    if (opt.json) {
        printf("{\n  \"bench\": \"bench_engine\",\n  \"tlsloop\": \"%s\",\n  \"date\": ",
               TL_VERSION_STRING);
        json_str(date);
        printf(",\n  \"cpu\": ");
        json_str(model);
        printf(",\n  \"cpus\": %ld,\n  \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
        json_str(un.release);
        printf(",\n  \"openssl\": ");
        json_str(OpenSSL_version(OPENSSL_VERSION));
        printf(
            ",\n  \"cipher\": \"%s\",\n  \"rounds\": %d,\n  \"handshakes\": %d,\n  \"mib\": %d,\n"
            "  \"batch_records\": %d,\n  \"transport_batch_records\": %d,\n"
            "  \"timer_ns\": %.1f,\n  \"loadavg_start\": \"%s\",\n  \"loadavg_end\": \"%s\",\n"
            "  \"steal_s\": %.2f,\n  \"other_cpu_s\": %.1f,\n  \"elapsed_s\": %.1f,\n"
            "  \"workloads\": [",
            suite, opt.rounds, n, opt.mib, MAX_BATCH, batch_recs, tcost, load0, load1, steal_s,
            other_s, elapsed);
        bool first = true;
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!w->n)
                continue;
            stat3 ratio = stats(w->ratio, w->n);
            printf("%s\n    {\"key\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"count\": %d,",
                   first ? "" : ",", w->key, w->name, w->kind == WL_HS ? "us/handshake" : "us/MiB",
                   w->count);
            first = false;
            for (int p = 0; p < 2; p++) {
                stat3 s = stats(w->v[p], w->n);
                printf(
                    "\n     \"%s\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"rounds\": [",
                    PATH_NAME[p], s.med, s.min, s.max);
                for (int k = 0; k < w->n; k++)
                    printf("%s%.3f", k ? ", " : "", w->v[p][k]);
                printf("]");
                if (w->kind == WL_REC)
                    printf(", \"mb_per_s\": %.1f", 1048576.0 / s.med);
                printf("},");
            }
            printf("\n     \"ratio\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}, ",
                   ratio.med, ratio.min, ratio.max);
            if (w->max_ratio > 0)
                printf("\"max_ratio\": %.4f, \"verdict\": \"%s\"}", w->max_ratio,
                       ratio.med <= w->max_ratio ? "PASS" : "FAIL");
            else
                printf("\"max_ratio\": null, \"verdict\": \"info\"}");
        }
        printf("\n  ]\n}\n");
        return 0;
    }

    printf("| workload | unit | engine | raw | engine/raw | target | verdict |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n)
            continue;
        stat3 e = stats(w->v[P_ENGINE], w->n), r = stats(w->v[P_RAW], w->n),
              q = stats(w->ratio, w->n);
        const char *verdict = w->max_ratio <= 0 ? "info" : q.med <= w->max_ratio ? "PASS" : "FAIL";
        int prec = e.med < 100 ? 2 : 1;
        printf("| %s | %s | %.*f [%.*f-%.*f] | %.*f [%.*f-%.*f] | %.3f [%.3f-%.3f] | %s | %s |\n",
               w->name, w->kind == WL_HS ? "us/handshake" : "us/MiB", prec, e.med, prec, e.min,
               prec, e.max, prec, r.med, prec, r.min, prec, r.max, q.med, q.min, q.max, w->target,
               verdict);
    }
    bool any_rec = false;
    for (int i = 0; i < nwl; i++)
        any_rec |= wl[i].n && wl[i].kind == WL_REC;
    if (any_rec) {
        printf(
            "\nRecord throughput per server CPU-second (MB = 10^6 bytes; from the medians):\n\n");
        printf("| workload | engine MB/s | raw MB/s | engine/raw |\n|---|---|---|---|\n");
        for (int i = 0; i < nwl; i++) {
            workload *w = &wl[i];
            if (!w->n || w->kind != WL_REC)
                continue;
            stat3 e = stats(w->v[P_ENGINE], w->n), r = stats(w->v[P_RAW], w->n),
                  q = stats(w->ratio, w->n);
            printf("| %s | %.0f | %.0f | %.3f |\n", w->name, 1048576.0 / e.med, 1048576.0 / r.med,
                   1.0 / q.med);
        }
    }
    printf("\nchecks:");
    for (int i = 0; i < nwl; i++) {
        workload *w = &wl[i];
        if (!w->n)
            continue;
        if (w->kind == WL_HS) {
            hs_check *e = &w->hc[P_ENGINE];
            hs_check *r = &w->hc[P_RAW];
            printf("\n  %s: %llu+%llu handshakes, resumed %s; per handshake %.2f+%.2f tickets, "
                   "%.1f+%.1f server bytes (engine+raw)",
                   w->key, (unsigned long long)e->handshakes, (unsigned long long)r->handshakes,
                   w->hs == HS_FULL ? "0%" : "100%", (double)e->tickets / e->handshakes,
                   (double)r->tickets / r->handshakes, (double)e->server_bytes / e->handshakes,
                   (double)r->server_bytes / r->handshakes);
        } else {
            printf("\n  %s: %s, %llu+%llu bytes, socket-full stalls %llu+%llu (engine+raw)",
                   w->key, w->rc[P_ENGINE].cipher, (unsigned long long)w->rc[P_ENGINE].bytes,
                   (unsigned long long)w->rc[P_RAW].bytes,
                   (unsigned long long)w->rc[P_ENGINE].stalls,
                   (unsigned long long)w->rc[P_RAW].stalls);
        }
    }
    printf("\nelapsed %.0f s; load average at end: %s; other processes used %.1f CPU-seconds "
           "(%.0f%% of one CPU)\nduring the run, the hypervisor stole %.2f s%s\n",
           elapsed, load1, other_s, 100 * other_s / elapsed, steal_s,
           other_s > 0.2 * elapsed ? ": NOISY, compare with a quiet run" : "");

    for (int i = 0; i < 3; i++) {
        server_side *s = i == 0 ? &s_rsa : i == 1 ? &s_ec : &s_ec12;
        tl_engine_free(s->anchor);
        tl_tls_ctx_free(s->cfg);
    }
    tl_tls_ctx_free(c13);
    tl_tls_ctx_free(c12);
    tl_certgen_pair_free(&rsa);
    tl_certgen_pair_free(&ec);
    free(c2s.p);
    free(s2c.p);
    free(src);
    return 0;
}
