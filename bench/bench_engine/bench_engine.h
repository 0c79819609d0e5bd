/*
 * bench/bench_engine/bench_engine.h - what the files of bench_engine share: the sizes, the CPU timer,
 * the buffers between client and server, the options, and the workloads each file provides.
 */
#ifndef TLSLOOP_BENCH_ENGINE_H
#define TLSLOOP_BENCH_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/ssl.h>

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
extern const char *const PATH_NAME[2]; /* "engine", "raw" */

/* Each path's server code is in functions of its own (never inlined), so that a profile
 * (valgrind --tool=callgrind) gives each path's cost as the inclusive cost of eng_* and raw_*. */
#define NOINLINE __attribute__((noinline))

/* ---- small things (main.c) --------------------------------------------------------------- */

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static inline uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Timed intervals so far: each carries about one clock reading of overhead (a system call here),
 * which measure() subtracts. */
extern uint64_t intervals;

static inline uint64_t lap(uint64_t t0)
{
    uint64_t t1 = cpu_ns();
    intervals++;
    return t1 - t0;
}

typedef struct options {
    int rounds;
    int handshakes;
    int mib;
    bool quick, json, chacha;
    int cpu;
    const char *only;
} options;

extern options opt;

/* ---- buffers, certificates, the buffer-mode server, handshakes (handshakes.c) ------------ */

typedef struct nbuf {
    uint8_t *p;
    size_t len, cap;
} nbuf;

void nbuf_init(nbuf *b, size_t cap);

extern uint8_t *src;          /* SRC_SIZE bytes of pattern */
extern uint8_t sapp[REC];     /* the server's application buffer */
extern uint8_t capp[CLI_APP]; /* the client's */
extern nbuf c2s, s2c;         /* network bytes between them (buffer mode) */

static inline const uint8_t *rec_src(uint64_t k) { return src + (k % SRC_RECS) * REC; }

/* Check application bytes the client received against the stream position *pos. */
void verify_stream(const uint8_t *p, size_t n, uint64_t *pos);

tl_certgen_pair make_cert(tl_key_type key);
tl_tls_ctx *server_cfg(const tl_certgen_pair *leaf, bool tickets);
/* The client offers only the cipher measured (opt.chacha) and verifies nothing. */
tl_tls_ctx *client_cfg(int max_version);

/* A server configuration and the very SSL_CTX its engines use, for the raw path. */
typedef struct server_side {
    tl_tls_ctx *cfg;
    tl_engine *anchor; /* freezes cfg and lends us its SSL_CTX */
    SSL_CTX *ssl_ctx;
} server_side;

void server_side_init(server_side *s, tl_tls_ctx *cfg);

/* The client: an engine, the same for both server paths; never timed. */
void cli_flush_to(tl_engine *c, nbuf *nb);
void cli_feed(tl_engine *c, nbuf *nb, uint64_t *pos);

/* The server in buffer mode, either path. */
typedef struct srv {
    int path;
    tl_engine *e;
    SSL *ssl;
    BIO *rb, *wb; /* raw, buffer mode: memory BIOs */
} srv;

void srv_new(srv *s, int path, const server_side *side);
void srv_feed(srv *s, nbuf *in, nbuf *out);
bool srv_done(const srv *s);
SSL *srv_ssl(const srv *s);
void srv_free(srv *s);

typedef enum hs_kind { HS_FULL, HS_RESUME13, HS_RESUME12 } hs_kind;

typedef struct hs_check {
    uint64_t handshakes, reused, server_bytes, tickets;
} hs_check;

/* n handshakes of one kind on one path; the server's CPU in ns. */
uint64_t run_handshakes(const server_side *side, tl_tls_ctx *ccfg, hs_kind kind, int path,
                        int n, hs_check *chk);

/* ---- records (records.c) ----------------------------------------------------------------- */

extern int batch_recs; /* records per timed batch in transport mode (from the socket buffer) */

typedef struct rec_check {
    uint64_t bytes, stalls;
    const char *cipher;
} rec_check;

/* mib MiB of records one way on one path, in buffer or transport mode; the server's CPU in ns. */
uint64_t run_records(const server_side *side, tl_tls_ctx *ccfg, bool transport, bool s2c_dir,
                     int path, int mib, rec_check *chk);

#endif /* TLSLOOP_BENCH_ENGINE_H */
