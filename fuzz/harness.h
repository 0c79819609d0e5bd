/*
 * fuzz/harness.h - the declarations of fuzz/harness.c: the deterministic RNG, the test world, the
 * invariant-checked engine calls, the input driver and in-memory peers the engine targets share.
 */
#ifndef TLSLOOP_FUZZ_HARNESS_H
#define TLSLOOP_FUZZ_HARNESS_H

/* RAND_set_rand_method is deprecated in OpenSSL 3 but still honoured by RAND_bytes_ex and
 * RAND_priv_bytes_ex, which is all the TLS stack and the key generators use. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <tlsloop/buf.h>
#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

/* ---- checks --------------------------------------------------------------------------------- */

#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "\nINVARIANT FAILED at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Setup that cannot fail in a healthy build (certificates, configurations). */
#define FZ_MUST(cond, what)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz setup failed: %s\n", what);                                      \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

extern bool fz_verbose; /* FZ_VERBOSE=1: one line per input about how it ended */

/* ---- deterministic RNG and state feedback --------------------------------------------------- */

void fz_rng_reset(void);      /* both streams back to their start, stream 0 selected */
void fz_rng_use(int stream);  /* the stream (0 or 1) the next draws come from */
void fz_feature(uint32_t v);  /* count feature v in libFuzzer's extra counters */
/* memcmp that accepts NULL with a zero length (an empty tl_buf has no memory). */
bool fz_eq(const void *a, const void *b, size_t n);

/* ---- the world: certificates and configurations --------------------------------------------- */

/* Server configurations (fuzz_engine_server chooses with the low bits of its first byte). */
enum {
    FZ_SRV_DEFAULT = 0, /* TLS 1.2-1.3, ALPN h2,http/1.1 */
    FZ_SRV_TLS12_CERTREQ, /* TLS 1.2 only, asks for a client certificate (optional) */
    FZ_SRV_TLS13_CERTREQ, /* TLS 1.3 only, requires a client certificate */
    FZ_SRV_NO_TICKETS,  /* TLS 1.2-1.3, no tickets, no session cache */
    FZ_N_SERVER
};

/* Client profiles (fuzz_engine_client chooses likewise). All verify nothing (TL_VERIFY_NONE) and
 * send "localhost" as SNI. */
enum {
    FZ_CLI_DEFAULT = 0, /* TLS 1.2-1.3, ALPN http/1.1,h2 */
    FZ_CLI_TLS12,       /* TLS 1.2 only */
    FZ_CLI_TLS13_CERT,  /* TLS 1.3 only, with a client certificate */
    FZ_CLI_TLS12_CERT,  /* TLS 1.2 only, with a client certificate */
    FZ_CLI_RESUME13,    /* default, offering a TLS 1.3 session (PSK) */
    FZ_CLI_RESUME12,    /* TLS 1.2, offering a TLS 1.2 session (ticket) */
    FZ_CLI_HRR,         /* groups P-521:X25519: a key share the server lacks, so HelloRetryRequest */
    FZ_CLI_CHACHA,      /* CHACHA20-POLY1305 suites only */
    FZ_N_CLIENT
};

/* Cipher-suite pairs of the appdata target (record layers). */
enum { FZ_APP_13_AESGCM = 0, FZ_APP_13_CHACHA, FZ_APP_12_AESGCM, FZ_APP_12_CHACHA, FZ_N_APP };

typedef struct fz_world {
    tl_certgen_pair ca, leaf, client_leaf;
    tl_tls_ctx *server[FZ_N_SERVER];
    tl_tls_ctx *client_ctx[FZ_N_CLIENT]; /* by profile; RESUME* share DEFAULT's and TLS12's */
    tl_session *session[FZ_N_CLIENT];    /* a session a profile offers, or NULL */
    tl_tls_ctx *app_server;              /* appdata: no tickets, no cache */
    tl_tls_ctx *app_client[FZ_N_APP];
} fz_world;

extern fz_world fz_w;

/* Make everything once (the RNG starts from its seed, so the keys are the same in every process). */
void fz_world_init(void);

/* ---- invariant-checked calls ---------------------------------------------------------------- */

#define FZ_LARGE_DST 20000        /* larger than any record's plaintext */
#define FZ_MAX_PENDING (64 * 1024) /* pending output stays below one record or one flight */
#define FZ_MAX_CALLS 50000L       /* unwrap calls of the main loop (fz_drive) per input */

/* One engine under test and what the checks remember about it. */
typedef struct fz_run {
    tl_engine *e;
    const char *who;     /* "server", "client": for messages and features */
    uint32_t tag;        /* feature namespace */
    int finished;        /* TL_HS_FINISHED reports seen */
    bool errored;        /* a call returned TL_ERROR: every later call must too */
    bool closed;         /* tl_engine_close was called */
    long calls;          /* engine calls so far */
    long unwraps;        /* main-loop unwrap calls (the budget FZ_MAX_CALLS) */
    uint64_t consumed;   /* network bytes unwrap consumed, in all */
    uint64_t out_base;   /* network bytes produced before the run began */
    size_t wcap;         /* wrap destination size for draining */
    tl_buf out;          /* every network byte the engine produced (optional use) */
    tl_buf app;          /* every plaintext byte unwrap delivered */
} fz_run;

void fz_run_init(fz_run *run, tl_engine *e, const char *who, uint32_t tag, size_t wcap);
void fz_run_free(fz_run *run);
tl_result fz_unwrap(fz_run *run, const uint8_t *src, size_t len, uint8_t *dst, size_t cap);
tl_result fz_wrap(fz_run *run, const uint8_t *src, size_t len, size_t cap);
void fz_task(fz_run *run);
tl_status fz_drain(fz_run *run); /* take all pending output; the last status */
bool fz_send(fz_run *run, const uint8_t *src, size_t len); /* wrap it all; whether all was taken */
tl_result fz_finish_eof(fz_run *run, const uint8_t *rest, size_t len);
void fz_check_facts(fz_run *run);

/* ---- the fuzz-input driver of fuzz_engine_server and fuzz_engine_client --------------------- */

/*
 * Input: an 8-byte header, then the network bytes (missing header bytes count as 0).
 *   h[0] bits 0-2  configuration (server: % FZ_N_SERVER; client: % FZ_N_CLIENT)
 *        bit 3     TL_ENGINE_DELEGATE_TASKS
 *        bit 4     drain with small wrap destinations (h[3] + 1 bytes) instead of 20000
 *        bit 5     tl_engine_close before the EOF
 *        bit 6     echo: wrap every plaintext byte that arrives back to the peer
 *        bit 7     tl_engine_release_buffers whenever the engine waits for input
 *   h[1]           the small unwrap destination size (0 allowed: the no-room path)
 *   h[2]           per-call choice of destination: bit (call % 8) set = small, clear = 20000
 *   h[3]           small wrap destination size - 1
 *   h[4..7]        sizes of the successive network chunks, cycled; 0 = all that is left
 */
#define FZ_HDR 8
#define FZ_F_DELEGATE 0x08
#define FZ_F_SMALL_WRAP 0x10
#define FZ_F_CLOSE 0x20
#define FZ_F_ECHO 0x40
#define FZ_F_RELEASE 0x80

typedef struct fz_input {
    uint8_t h[FZ_HDR];
    const uint8_t *data;
    size_t len;
    size_t whole_after; /* bytes from here on arrive in one piece (fz_parse: len) */
    bool big_chunks;    /* chunk byte c >= 128 means (c - 127) * 256 bytes */
} fz_input;

fz_input fz_parse(const uint8_t *data, size_t size);
/* Feed in.data to the engine chunk by chunk and check every step; then the EOF. */
tl_result fz_drive(fz_run *run, const fz_input *in);

/* ---- genuine peers in memory (appdata target, make_corpus) ---------------------------------- */

typedef struct fz_peer {
    tl_engine *e;
    int stream;   /* RNG stream of this peer's calls */
    tl_buf in;    /* network bytes sent to it, not yet unwrapped */
    tl_buf app;   /* plaintext it received */
    tl_buf sent;  /* every network byte it produced */
} fz_peer;

void fz_peer_init(fz_peer *p, tl_tls_ctx *ctx, const tl_engine_opts *opts, int stream);
void fz_peer_free(fz_peer *p);
tl_status fz_peer_wrap(fz_peer *p, fz_peer *to, const void *src, size_t len);
tl_status fz_peer_unwrap(fz_peer *p);
int fz_handshake(fz_peer *c, fz_peer *s); /* client speaks first; 0 when both are done */
tl_engine *fz_new_client(int profile, unsigned flags); /* as the client target makes it */

#endif /* TLSLOOP_FUZZ_HARNESS_H */
