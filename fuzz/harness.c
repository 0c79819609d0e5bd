/*
 * fuzz/harness.c - the code the engine fuzz targets (fuzz/fuzz_engine_*.c) and the seed generator
 * (fuzz/make_corpus.c) share, declared in fuzz/harness.h; the Makefile links it into each.
 *
 *  - A deterministic RNG for OpenSSL (fz_rng_*): every input starts from the same random state, so
 *    a run is reproducible and a client's ClientHello is the same bytes in make_corpus and in the
 *    target. That is what lets a recorded server flight complete the handshake in the client target.
 *    Two streams, so a recording's client and server draw independently (the client's draws do not
 *    depend on how the server's calls interleave).
 *  - The test world (fz_world_init): an ECDSA P-256 CA, server leaf and client leaf made with
 *    tl_certgen_issue, the server and client configurations the targets choose from, and two
 *    sessions to offer. Made once per process, in the same order everywhere.
 *  - State feedback (fz_feature): OpenSSL is not instrumented, so the targets report OpenSSL's
 *    handshake state and the engine's outcomes as libFuzzer "extra counters".
 *  - The invariant checks (fz_run, fz_unwrap, fz_wrap, fz_drain ...) and FZ_CHECK, which aborts.
 *  - In-memory peers (fz_peer) for genuine handshakes: the appdata target and make_corpus.
 *
 * The contract checked is the one in include/tlsloop/engine.h; see fuzz/README.md for the list.
 */

#include "harness.h"

bool fz_verbose; /* FZ_VERBOSE=1: one line per input about how it ended */

/* ---- deterministic RNG ---------------------------------------------------------------------- */

#define FZ_SEED 0x746c736c6f6f70ull /* "tlsloop" */

static uint64_t fz_rng_state[2];
static int fz_rng_cur;

static int fz_rng_bytes(unsigned char *buf, int num)
{
    uint64_t *s = &fz_rng_state[fz_rng_cur];
    for (int i = 0; i < num; i++) { /* splitmix64, one byte per step: simple and plenty */
        uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        buf[i] = (unsigned char)(z ^ (z >> 31));
    }
    return 1;
}

static int fz_rng_status(void) { return 1; }

static RAND_METHOD fz_rng_method = {
    .bytes = fz_rng_bytes,
    .pseudorand = fz_rng_bytes,
    .status = fz_rng_status,
};

/* Both streams back to their start, stream 0 selected. */
void fz_rng_reset(void)
{
    fz_rng_state[0] = FZ_SEED;
    fz_rng_state[1] = FZ_SEED ^ 0x5555555555555555ull;
    fz_rng_cur = 0;
}

void fz_rng_use(int stream) { fz_rng_cur = stream & 1; }

static void fz_rng_install(void)
{
    FZ_MUST(RAND_set_rand_method(&fz_rng_method) == 1, "RAND_set_rand_method");
    fz_rng_reset();
}

/* ---- state feedback for libFuzzer ----------------------------------------------------------- */

#define FZ_NFEAT 8192
/* libFuzzer treats every byte of this section as a coverage counter (cleared before each input). */
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t fz_feat[FZ_NFEAT];

void fz_feature(uint32_t v)
{
    v ^= v >> 16;
    v *= 0x7feb352du;
    v ^= v >> 15;
    v *= 0x846ca68bu;
    v ^= v >> 16;
    uint8_t *c = &fz_feat[v % FZ_NFEAT];
    if (*c < 255)
        (*c)++;
}

/* memcmp that accepts NULL with a zero length (an empty tl_buf has no memory). */
bool fz_eq(const void *a, const void *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

static uint32_t fz_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* ---- the world: certificates and configurations --------------------------------------------- */

fz_world fz_w;

static void fz_issue(const tl_certgen_spec *spec, const tl_certgen_pair *issuer, tl_certgen_pair *out)
{
    char err[256];
    if (tl_certgen_issue(spec, issuer, out, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz setup: tl_certgen_issue: %s\n", err);
        exit(2);
    }
}

static void fz_ctx_must(int rc, tl_tls_ctx *ctx, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "fuzz setup: %s: %s\n", what, tl_tls_ctx_error(ctx));
        exit(2);
    }
}

static tl_tls_ctx *fz_server_ctx(int min_v, int max_v)
{
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_SERVER);
    FZ_MUST(c, "tl_tls_ctx_new");
    fz_ctx_must(tl_tls_ctx_use_cert_pem(c, fz_w.leaf.cert_pem, fz_w.leaf.key_pem), c, "server cert");
    fz_ctx_must(tl_tls_ctx_set_versions(c, min_v, max_v), c, "server versions");
    return c;
}

static tl_tls_ctx *fz_client_ctx(int min_v, int max_v)
{
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    FZ_MUST(c, "tl_tls_ctx_new");
    fz_ctx_must(tl_tls_ctx_set_verify(c, TL_VERIFY_NONE), c, "client verify");
    fz_ctx_must(tl_tls_ctx_set_versions(c, min_v, max_v), c, "client versions");
    return c;
}

static void fz_make_sessions(void); /* below, after the peers */

/* Make everything once. The RNG starts from its seed, so the keys are the same in every process
 * (the certificates' validity dates are not: they are relative to now). */
void fz_world_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    fz_verbose = getenv("FZ_VERBOSE") && atoi(getenv("FZ_VERBOSE")) > 0;
    fz_rng_install();

    static const char *const NAMES[] = {"localhost"};
    tl_certgen_spec ca = {.key = TL_KEY_ECDSA_P256, .common_name = "tlsloop fuzz CA", .is_ca = true,
                          .not_before = -3600, .not_after = 10L * 365 * 86400};
    fz_issue(&ca, NULL, &fz_w.ca);
    tl_certgen_spec leaf = {.key = TL_KEY_ECDSA_P256, .dns_names = NAMES, .n_dns = 1,
                            .not_before = -3600, .not_after = 10L * 365 * 86400};
    fz_issue(&leaf, &fz_w.ca, &fz_w.leaf);
    static const char *const CLIENT[] = {"client.test"};
    tl_certgen_spec cl = {.key = TL_KEY_ECDSA_P256, .dns_names = CLIENT, .n_dns = 1,
                          .not_before = -3600, .not_after = 10L * 365 * 86400};
    fz_issue(&cl, &fz_w.ca, &fz_w.client_leaf);

    tl_tls_ctx *s;
    s = fz_w.server[FZ_SRV_DEFAULT] = fz_server_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_alpn(s, "h2,http/1.1"), s, "server alpn");
    s = fz_w.server[FZ_SRV_TLS12_CERTREQ] = fz_server_ctx(TL_TLS1_2, TL_TLS1_2);
    fz_ctx_must(tl_tls_ctx_set_ca_pem(s, fz_w.ca.cert_pem), s, "server ca");
    fz_ctx_must(tl_tls_ctx_set_verify(s, TL_VERIFY_OPTIONAL), s, "server verify");
    s = fz_w.server[FZ_SRV_TLS13_CERTREQ] = fz_server_ctx(TL_TLS1_3, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_ca_pem(s, fz_w.ca.cert_pem), s, "server ca");
    fz_ctx_must(tl_tls_ctx_set_verify(s, TL_VERIFY_REQUIRE), s, "server verify");
    s = fz_w.server[FZ_SRV_NO_TICKETS] = fz_server_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_tickets(s, false), s, "server tickets");
    fz_ctx_must(tl_tls_ctx_set_session_cache(s, 0, 7200), s, "server cache");

    tl_tls_ctx *c;
    c = fz_w.client_ctx[FZ_CLI_DEFAULT] = fz_client_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_alpn(c, "http/1.1,h2"), c, "client alpn");
    fz_w.client_ctx[FZ_CLI_TLS12] = fz_client_ctx(TL_TLS1_2, TL_TLS1_2);
    c = fz_w.client_ctx[FZ_CLI_TLS13_CERT] = fz_client_ctx(TL_TLS1_3, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_use_cert_pem(c, fz_w.client_leaf.cert_pem, fz_w.client_leaf.key_pem), c,
                "client cert");
    c = fz_w.client_ctx[FZ_CLI_TLS12_CERT] = fz_client_ctx(TL_TLS1_2, TL_TLS1_2);
    fz_ctx_must(tl_tls_ctx_use_cert_pem(c, fz_w.client_leaf.cert_pem, fz_w.client_leaf.key_pem), c,
                "client cert");
    fz_w.client_ctx[FZ_CLI_RESUME13] = tl_tls_ctx_ref(fz_w.client_ctx[FZ_CLI_DEFAULT]);
    fz_w.client_ctx[FZ_CLI_RESUME12] = tl_tls_ctx_ref(fz_w.client_ctx[FZ_CLI_TLS12]);
    c = fz_w.client_ctx[FZ_CLI_HRR] = fz_client_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_groups(c, "P-521:X25519"), c, "client groups");
    c = fz_w.client_ctx[FZ_CLI_CHACHA] = fz_client_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_ciphers(c, "ECDHE-ECDSA-CHACHA20-POLY1305",
                                       "TLS_CHACHA20_POLY1305_SHA256"), c, "client ciphers");

    s = fz_w.app_server = fz_server_ctx(TL_TLS1_2, TL_TLS1_3);
    fz_ctx_must(tl_tls_ctx_set_tickets(s, false), s, "server tickets");
    fz_ctx_must(tl_tls_ctx_set_session_cache(s, 0, 7200), s, "server cache");
    static const struct { int v; const char *c12, *c13; } APP[FZ_N_APP] = {
        [FZ_APP_13_AESGCM] = {TL_TLS1_3, NULL, "TLS_AES_128_GCM_SHA256"},
        [FZ_APP_13_CHACHA] = {TL_TLS1_3, NULL, "TLS_CHACHA20_POLY1305_SHA256"},
        [FZ_APP_12_AESGCM] = {TL_TLS1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", NULL},
        [FZ_APP_12_CHACHA] = {TL_TLS1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL},
    };
    for (int i = 0; i < FZ_N_APP; i++) {
        c = fz_w.app_client[i] = fz_client_ctx(APP[i].v, APP[i].v);
        fz_ctx_must(tl_tls_ctx_set_ciphers(c, APP[i].c12, APP[i].c13), c, "client ciphers");
    }
    fz_make_sessions();
    fz_rng_reset();
}

/* ---- invariant-checked calls ---------------------------------------------------------------- */

static uint8_t fz_dst[FZ_LARGE_DST], fz_dst2[FZ_LARGE_DST], fz_wdst[FZ_LARGE_DST];

void fz_run_init(fz_run *run, tl_engine *e, const char *who, uint32_t tag, size_t wcap)
{
    memset(run, 0, sizeof *run);
    run->e = e;
    run->who = who;
    run->tag = tag;
    run->wcap = wcap ? wcap : FZ_LARGE_DST;
}

void fz_run_free(fz_run *run)
{
    tl_engine_free(run->e);
    tl_buf_free(&run->out);
    tl_buf_free(&run->app);
    memset(run, 0, sizeof *run);
}

static int fz_ssl_state(fz_run *run)
{
    return (int)SSL_get_state(tl_engine_ssl(run->e)) & 0xff;
}

enum { FZ_OP_UNWRAP = 1, FZ_OP_WRAP, FZ_OP_CLOSE, FZ_OP_TASK, FZ_OP_REPEAT_UNWRAP,
       FZ_OP_REPEAT_WRAP, FZ_OP_EOF };

/* The checks every call's result must pass. offered: source bytes given; cap: destination size. */
static void fz_after(fz_run *run, int op, int state_before, tl_result r, size_t offered, size_t cap)
{
    tl_engine *e = run->e;
    run->calls++;
    FZ_CHECK(r.status >= TL_OK && r.status <= TL_ERROR, "%s: op %d: status %d", run->who, op,
             (int)r.status);
    FZ_CHECK(r.hs >= TL_HS_NOT_HANDSHAKING && r.hs <= TL_HS_FINISHED, "%s: op %d: hs %d",
             run->who, op, (int)r.hs);
    FZ_CHECK(r.consumed <= offered, "%s: op %d consumed %zu of %zu offered", run->who, op,
             r.consumed, offered);
    FZ_CHECK(r.produced <= cap, "%s: op %d produced %zu into a destination of %zu", run->who, op,
             r.produced, cap);
    /* TL_ERROR is final; only the alert still pending may come out first (wrap: WANT_OUTPUT while
     * the destination fills). tl_engine_close answers TL_OK whatever the state. */
    if (run->errored && op != FZ_OP_CLOSE &&
        !(op == FZ_OP_WRAP && r.status == TL_WANT_OUTPUT && r.produced > 0))
        FZ_CHECK(r.status == TL_ERROR, "%s: op %d: TL_ERROR is final, but a later call returned %s "
                 "(error '%s')", run->who, op, tl_status_name(r.status), tl_engine_error(e));
    if (r.status == TL_ERROR) {
        FZ_CHECK(tl_engine_error(e)[0] != '\0', "%s: op %d: TL_ERROR with an empty tl_engine_error",
                 run->who, op);
        FZ_CHECK(tl_engine_error_kind(e) != TL_ERR_NONE, "%s: op %d: TL_ERROR with kind none ('%s')",
                 run->who, op, tl_engine_error(e));
        run->errored = true;
    }
    size_t pend = tl_engine_pending_output(e);
    FZ_CHECK(pend < FZ_MAX_PENDING, "%s: op %d: %zu bytes of pending output", run->who, op, pend);
    FZ_CHECK(pend == 0 || r.hs == TL_HS_NEED_WRAP, "%s: op %d: %zu bytes pending but hs %d, not "
             "NEED_WRAP", run->who, op, pend, (int)r.hs);
    if (r.hs == TL_HS_FINISHED) {
        run->finished++;
        FZ_CHECK(run->finished == 1, "%s: TL_HS_FINISHED reported %d times", run->who, run->finished);
        FZ_CHECK(tl_engine_handshake_done(e), "%s: TL_HS_FINISHED before the handshake is done",
                 run->who);
    }
    int state = fz_ssl_state(run);
    fz_feature(run->tag ^ ((uint32_t)op << 24) ^ ((uint32_t)r.status << 20) ^ ((uint32_t)r.hs << 16) ^
               ((uint32_t)state_before << 8) ^ (uint32_t)state);
    if (r.status == TL_ERROR || r.status == TL_TRUNCATED)
        fz_feature(run->tag ^ fz_hash_str(tl_engine_error(e)));
}

/* unwrap with the unwrap-only checks. */
tl_result fz_unwrap(fz_run *run, const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    int sb = fz_ssl_state(run);
    tl_result r = tl_engine_unwrap(run->e, src, len, dst, cap);
    fz_after(run, FZ_OP_UNWRAP, sb, r, len, cap);
    if (r.status == TL_OK)
        FZ_CHECK(cap > 0 && r.produced == cap, "%s: unwrap TL_OK must mean the destination is full "
                 "(produced %zu of %zu)", run->who, r.produced, cap);
    if (r.status == TL_WANT_OUTPUT)
        FZ_CHECK(cap == 0, "%s: unwrap TL_WANT_OUTPUT with a destination of %zu", run->who, cap);
    if (r.status == TL_WANT_INPUT)
        FZ_CHECK(tl_engine_pending(run->e) == 0, "%s: unwrap TL_WANT_INPUT with %zu plaintext bytes "
                 "readable without new input", run->who, tl_engine_pending(run->e));
    if (r.status == TL_CLOSED)
        FZ_CHECK(tl_engine_close_received(run->e), "%s: unwrap TL_CLOSED but no close_notify "
                 "received", run->who);
    run->consumed += r.consumed;
    if (r.produced > 0) {
        FZ_CHECK(tl_engine_handshake_done(run->e), "%s: plaintext before the handshake is done",
                 run->who);
        tl_buf_append(&run->app, dst, r.produced);
    }
    return r;
}

/* wrap with the wrap-only checks. */
tl_result fz_wrap(fz_run *run, const uint8_t *src, size_t len, size_t cap)
{
    int sb = fz_ssl_state(run);
    tl_result r = tl_engine_wrap(run->e, src, len, fz_wdst, cap);
    fz_after(run, FZ_OP_WRAP, sb, r, len, cap);
    tl_buf_append(&run->out, fz_wdst, r.produced);
    if (r.status == TL_OK)
        FZ_CHECK(r.consumed == len, "%s: wrap TL_OK must take all of the source (%zu of %zu)",
                 run->who, r.consumed, len);
    if (r.status == TL_WANT_OUTPUT)
        FZ_CHECK(tl_engine_pending_output(run->e) > 0, "%s: wrap TL_WANT_OUTPUT with nothing "
                 "pending", run->who);
    if (run->closed && len > 0)
        FZ_CHECK(r.consumed == 0, "%s: wrap took %zu application bytes after tl_engine_close",
                 run->who, r.consumed);
    return r;
}

/* A status other than TL_OK: an immediate second call with no new input (the same unconsumed
 * bytes) must give the same status and make no progress. */
static void fz_repeat_unwrap(fz_run *run, const uint8_t *src, size_t len, size_t cap, tl_result first)
{
    int sb = fz_ssl_state(run);
    tl_result r = tl_engine_unwrap(run->e, src, len, fz_dst2, cap);
    fz_after(run, FZ_OP_REPEAT_UNWRAP, sb, r, len, cap);
    FZ_CHECK(r.status == first.status && r.consumed == 0 && r.produced == 0,
             "%s: unwrap said %s, but the same call again (%zu bytes offered, dst %zu) gave %s, "
             "consumed %zu, produced %zu (error '%s')", run->who, tl_status_name(first.status),
             len, cap, tl_status_name(r.status), r.consumed, r.produced, tl_engine_error(run->e));
}

static void fz_repeat_wrap(fz_run *run, tl_result first)
{
    int sb = fz_ssl_state(run);
    tl_result r = tl_engine_wrap(run->e, NULL, 0, fz_wdst, run->wcap);
    fz_after(run, FZ_OP_REPEAT_WRAP, sb, r, 0, run->wcap);
    tl_buf_append(&run->out, fz_wdst, r.produced);
    FZ_CHECK(r.status == first.status && r.produced == 0,
             "%s: wrap said %s with nothing pending, but the same call again gave %s, produced %zu",
             run->who, tl_status_name(first.status), tl_status_name(r.status), r.produced);
}

void fz_task(fz_run *run)
{
    int sb = fz_ssl_state(run);
    tl_status st = tl_engine_run_task(run->e);
    tl_result r = {st, tl_engine_handshake_status(run->e), 0, 0};
    FZ_CHECK(st == TL_OK || st == TL_ERROR, "%s: run_task returned %s", run->who, tl_status_name(st));
    fz_after(run, FZ_OP_TASK, sb, r, 0, 0);
}

/* Take all pending output with wrap (empty source), running tasks; returns the last status. */
tl_status fz_drain(fz_run *run)
{
    tl_result r = {TL_OK, 0, 0, 0};
    /* Its own bound, not the main loop's budget: what is pending (an alert) must come out. */
    for (long i = 0; i < FZ_MAX_PENDING + 16; i++) {
        r = fz_wrap(run, NULL, 0, run->wcap);
        if (r.status == TL_WANT_OUTPUT) {
            FZ_CHECK(r.produced > 0 || run->wcap == 0, "%s: wrap said TL_WANT_OUTPUT into an "
                     "empty destination of %zu", run->who, run->wcap);
            continue;
        }
        if (r.status != TL_OK)
            fz_repeat_wrap(run, r);
        if (r.status == TL_NEED_TASK) {
            fz_task(run);
            continue;
        }
        FZ_CHECK(tl_engine_pending_output(run->e) == 0, "%s: wrap said %s with %zu bytes still "
                 "pending", run->who, tl_status_name(r.status), tl_engine_pending_output(run->e));
        break;
    }
    return r.status;
}

/* Wrap application bytes (an echo of what arrived) until taken or refused. Returns whether all
 * of it was taken (an echo that was refused stops, so what the peer gets stays a prefix). */
bool fz_send(fz_run *run, const uint8_t *src, size_t len)
{
    size_t done = 0;
    long bound = 64 + 4 * (long)(len / run->wcap);
    for (long i = 0; i < bound; i++) {
        tl_result r = fz_wrap(run, src + done, len - done, run->wcap);
        done += r.consumed;
        if (r.status == TL_WANT_OUTPUT)
            continue;
        if (r.status == TL_NEED_TASK) {
            fz_task(run);
            continue;
        }
        if (r.status != TL_OK || done == len)
            break;
    }
    return done == len;
}

/* After everything: the transport ends. Offer what is left unconsumed, with a large destination,
 * until the engine stops; it must end TL_TRUNCATED, TL_ERROR or TL_CLOSED, never wait for input. */
tl_result fz_finish_eof(fz_run *run, const uint8_t *rest, size_t len)
{
    tl_engine_set_input_eof(run->e);
    tl_result r = {TL_OK, 0, 0, 0};
    size_t off = 0, bound = 16 + 4 * (len / FZ_LARGE_DST);
    for (size_t i = 0;; i++) {
        FZ_CHECK(i < bound, "%s: unwrap after EOF did not stop (%zu calls, status %s)", run->who, i,
                 tl_status_name(r.status));
        r = fz_unwrap(run, rest + off, len - off, fz_dst, FZ_LARGE_DST);
        off += r.consumed;
        fz_drain(run);
        if (r.status == TL_OK)
            continue;
        if (r.status == TL_NEED_TASK) {
            fz_repeat_unwrap(run, rest + off, len - off, FZ_LARGE_DST, r);
            fz_task(run);
            continue;
        }
        break;
    }
    FZ_CHECK(r.status == TL_TRUNCATED || r.status == TL_ERROR || r.status == TL_CLOSED,
             "%s: after tl_engine_set_input_eof unwrap ended %s (want truncated, error or closed; "
             "error '%s')", run->who, tl_status_name(r.status), tl_engine_error(run->e));
    fz_repeat_unwrap(run, rest + off, len - off, FZ_LARGE_DST, r);
    fz_feature(run->tag ^ 0xe0f00u ^ (uint32_t)r.status);
    return r;
}

/* The facts at the end: tl_engine_get_info and tl_engine_get_session agree with what happened. */
void fz_check_facts(fz_run *run)
{
    tl_engine_info info;
    tl_engine_get_info(run->e, &info);
    bool done = tl_engine_handshake_done(run->e);
    FZ_CHECK(done ? info.version && info.cipher : !info.version, "%s: info.version %s with the "
             "handshake %s", run->who, info.version ? info.version : "NULL",
             done ? "done" : "not done");
    FZ_CHECK(memchr(info.alpn, 0, sizeof info.alpn) && memchr(info.peer_subject, 0,
             sizeof info.peer_subject) && memchr(info.peer_issuer, 0, sizeof info.peer_issuer),
             "%s: an info string is not terminated", run->who);
    FZ_CHECK(info.bytes_in == run->consumed, "%s: info.bytes_in %llu, but unwrap consumed %llu",
             run->who, (unsigned long long)info.bytes_in, (unsigned long long)run->consumed);
    FZ_CHECK(info.bytes_out == run->out_base + tl_buf_len(&run->out) +
                                   tl_engine_pending_output(run->e),
             "%s: info.bytes_out %llu, but wrap produced %zu and %zu are pending", run->who,
             (unsigned long long)info.bytes_out, tl_buf_len(&run->out),
             tl_engine_pending_output(run->e));
    if (info.version)
        fz_feature(run->tag ^ fz_hash_str(info.version) ^ fz_hash_str(info.cipher) ^
                   (info.resumed ? 0x77u : 0) ^ fz_hash_str(info.alpn));
    tl_session *sess = tl_engine_get_session(run->e);
    FZ_CHECK(!sess || (done && !run->errored), "%s: a session from a connection that %s",
             run->who, done ? "failed" : "never finished its handshake");
    tl_session_free(sess);
}

/* ---- the fuzz-input driver of fuzz_engine_server and fuzz_engine_client --------------------- */

fz_input fz_parse(const uint8_t *data, size_t size)
{
    fz_input in;
    memset(&in, 0, sizeof in);
    memcpy(in.h, data, size < FZ_HDR ? size : FZ_HDR);
    in.data = size > FZ_HDR ? data + FZ_HDR : (const uint8_t *)"";
    in.len = size > FZ_HDR ? size - FZ_HDR : 0;
    in.whole_after = in.len;
    return in;
}

/* Feed in.data to the engine chunk by chunk and check every step; then the EOF. */
tl_result fz_drive(fz_run *run, const fz_input *in)
{
    const uint8_t *h = in->h;
    size_t off = 0, arrived = 0, small = h[1];
    unsigned chunk_i = 0, call = 0;
    bool force_large = false, echo = h[0] & FZ_F_ECHO;
    tl_result r = {TL_OK, 0, 0, 0};

#define FZ_ARRIVE()                                                                                \
    do {                                                                                           \
        uint8_t c_ = h[4 + chunk_i++ % 4];                                                         \
        size_t n_ = in->big_chunks && c_ >= 128 ? (size_t)(c_ - 127) * 256 : c_;                   \
        if (n_ == 0 || arrived >= in->whole_after)                                                 \
            n_ = in->len - arrived;                                                                \
        arrived += n_ < in->len - arrived ? n_ : in->len - arrived;                                \
    } while (0)

    FZ_ARRIVE();
    /* The budget: main-loop unwraps, and all calls (an echo into tiny destinations is many). */
    while (run->unwraps++ < FZ_MAX_CALLS && run->calls < 8 * FZ_MAX_CALLS) {
        size_t cap = !force_large && ((h[2] >> (call % 8)) & 1) ? small : FZ_LARGE_DST;
        call++;
        force_large = false;
        r = fz_unwrap(run, in->data + off, arrived - off, fz_dst, cap);
        off += r.consumed;
        if (r.status != TL_OK)
            fz_repeat_unwrap(run, in->data + off, arrived - off, cap, r);
        if (r.produced && echo)
            echo = fz_send(run, fz_dst, r.produced);
        fz_drain(run);
        if (r.status == TL_OK)
            continue;
        if (r.status == TL_NEED_TASK) {
            fz_task(run);
            continue;
        }
        if (r.status == TL_WANT_OUTPUT) { /* no room at all: give room next time */
            force_large = true;
            continue;
        }
        if (r.status == TL_WANT_INPUT) {
            FZ_CHECK(off == arrived, "%s: TL_WANT_INPUT with %zu offered bytes not consumed",
                     run->who, arrived - off);
            if (arrived == in->len)
                break;
            if (h[0] & FZ_F_RELEASE) {
                bool freed = tl_engine_release_buffers(run->e);
                FZ_CHECK(!freed || tl_engine_pending_output(run->e) == 0, "%s: buffers released "
                         "with output pending", run->who);
                fz_feature(run->tag ^ 0x4e1ea5u ^ freed);
            }
            FZ_ARRIVE();
            continue;
        }
        break; /* TL_CLOSED, TL_TRUNCATED, TL_ERROR */
    }
#undef FZ_ARRIVE

    if (h[0] & FZ_F_CLOSE) {
        int sb = fz_ssl_state(run);
        tl_result c = tl_engine_close(run->e);
        fz_after(run, FZ_OP_CLOSE, sb, c, 0, 0);
        FZ_CHECK(c.status == TL_OK, "%s: tl_engine_close in buffer mode returned %s", run->who,
                 tl_status_name(c.status));
        FZ_CHECK(tl_engine_close_sent(run->e), "%s: tl_engine_close_sent false after close",
                 run->who);
        run->closed = true;
        fz_drain(run);
        fz_wrap(run, (const uint8_t *)"x", 1, run->wcap); /* must not be taken */
        fz_drain(run);
    }
    tl_result f = fz_finish_eof(run, in->data + off, in->len - off);
    fz_check_facts(run);
    if (fz_verbose)
        fprintf(stderr, "fuzz: %s: loop ended %s, final %s, handshake %s, %zu plaintext bytes, "
                "%ld calls, error '%s'\n", run->who, tl_status_name(r.status),
                tl_status_name(f.status), tl_engine_handshake_done(run->e) ? "done" : "not done",
                tl_buf_len(&run->app), run->calls, tl_engine_error(run->e));
    return f;
}

/* ---- genuine peers in memory (appdata target, make_corpus) ---------------------------------- */

void fz_peer_init(fz_peer *p, tl_tls_ctx *ctx, const tl_engine_opts *opts, int stream)
{
    memset(p, 0, sizeof *p);
    p->stream = stream;
    fz_rng_use(stream);
    p->e = tl_engine_new(ctx, opts);
    FZ_MUST(p->e, "tl_engine_new");
}

void fz_peer_free(fz_peer *p)
{
    tl_engine_free(p->e);
    tl_buf_free(&p->in);
    tl_buf_free(&p->app);
    tl_buf_free(&p->sent);
    memset(p, 0, sizeof *p);
}

/* Wrap src (may be empty) and everything pending into to->in. Returns the last status. */
tl_status fz_peer_wrap(fz_peer *p, fz_peer *to, const void *src, size_t len)
{
    size_t off = 0;
    tl_status st = TL_OK;
    for (int i = 0; i < 100000; i++) {
        fz_rng_use(p->stream);
        tl_result r = tl_engine_wrap(p->e, src ? (const uint8_t *)src + off : NULL, len - off,
                                     fz_wdst, sizeof fz_wdst);
        off += r.consumed;
        tl_buf_append(&p->sent, fz_wdst, r.produced);
        if (to)
            tl_buf_append(&to->in, fz_wdst, r.produced);
        st = r.status;
        if (st == TL_NEED_TASK) {
            tl_engine_run_task(p->e);
            continue;
        }
        if (st == TL_WANT_OUTPUT)
            continue;
        if (st != TL_OK || (off == len && tl_engine_pending_output(p->e) == 0))
            break;
    }
    return st;
}

/* Unwrap all of p->in. Returns the last status. */
tl_status fz_peer_unwrap(fz_peer *p)
{
    tl_status st = TL_OK;
    for (int i = 0; i < 100000; i++) {
        fz_rng_use(p->stream);
        tl_result r = tl_engine_unwrap(p->e, tl_buf_rptr(&p->in), tl_buf_len(&p->in), fz_dst,
                                       sizeof fz_dst);
        tl_buf_consume(&p->in, r.consumed);
        tl_buf_append(&p->app, fz_dst, r.produced);
        st = r.status;
        if (st == TL_NEED_TASK) {
            tl_engine_run_task(p->e);
            continue;
        }
        if (st == TL_OK)
            continue;
        break;
    }
    return st;
}

/* Client speaks first; rounds until both are done and nothing is in flight. 0 on success. */
int fz_handshake(fz_peer *c, fz_peer *s)
{
    for (int i = 0; i < 16; i++) {
        tl_status a = fz_peer_wrap(c, s, NULL, 0);
        tl_status b = fz_peer_unwrap(s);
        tl_status d = fz_peer_wrap(s, c, NULL, 0);
        tl_status e = fz_peer_unwrap(c);
        if (a == TL_ERROR || b == TL_ERROR || d == TL_ERROR || e == TL_ERROR)
            return -1;
        if (tl_engine_handshake_done(c->e) && tl_engine_handshake_done(s->e) &&
            tl_engine_pending_output(c->e) == 0 && tl_engine_pending_output(s->e) == 0 &&
            tl_buf_len(&c->in) == 0 && tl_buf_len(&s->in) == 0)
            return 0;
    }
    return -1;
}

/* The sessions the RESUME profiles offer: one real handshake each, with the default server. */
static void fz_make_sessions(void)
{
    static const struct { int profile; tl_tls_ctx **ctx; } S[] = {
        {FZ_CLI_RESUME13, &fz_w.client_ctx[FZ_CLI_DEFAULT]},
        {FZ_CLI_RESUME12, &fz_w.client_ctx[FZ_CLI_TLS12]},
    };
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        fz_peer c, s;
        tl_engine_opts co = {.server_name = "localhost"};
        fz_peer_init(&c, *S[i].ctx, &co, 0);
        fz_peer_init(&s, fz_w.server[FZ_SRV_DEFAULT], NULL, 1);
        FZ_MUST(fz_handshake(&c, &s) == 0, "handshake for a session");
        fz_peer_wrap(&s, &c, "s", 1); /* TLS 1.3 tickets come with the first data */
        fz_peer_unwrap(&c);
        fz_w.session[S[i].profile] = tl_engine_get_session(c.e);
        FZ_MUST(fz_w.session[S[i].profile], "a session to resume");
        fz_peer_free(&c);
        fz_peer_free(&s);
    }
}

/* A client engine of profile p, as the client target and make_corpus make it. */
tl_engine *fz_new_client(int profile, unsigned flags)
{
    tl_engine_opts o = {.server_name = "localhost", .flags = flags,
                        .session = fz_w.session[profile]};
    tl_engine *e = tl_engine_new(fz_w.client_ctx[profile], &o);
    FZ_MUST(e, "tl_engine_new");
    return e;
}
