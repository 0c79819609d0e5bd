/*
 * fuzz/fuzz_engine_appdata.c - the post-handshake path of a server engine.
 *
 * Per input: a real handshake between a client and a server engine in memory (deterministic RNG,
 * so the same bytes every time), then the client wraps 1-4 application-data records (optionally a
 * TLS 1.3 KeyUpdate first, and its close_notify last). That genuine stream is mutated as the input
 * says (XOR or set a byte, set a record's length field, e.g. to 0xFFFF) and fed to the server in
 * chunks, with every call checked against the engine's contract (fuzz/harness.c). Then:
 *  - unmodified stream: the server delivers exactly the plaintext and ends TL_CLOSED (TL_TRUNCATED
 *    without close_notify), and the client accepts everything the server sent back (KeyUpdate);
 *  - modified stream: the server delivers exactly the plaintext of the records before the first
 *    modified one and ends TL_ERROR (in EOF mode a record cut by the EOF may end TL_TRUNCATED), and
 *    the alert it sent makes the client fail with the alert.
 * In close_notify mode 20 KiB of zeros follow the stream, so a record whose length was made longer
 * always finds its bytes (and fails its MAC) rather than waiting for input.
 *
 * Input: an 8-byte header, then up to 4 mutations of 4 bytes (missing bytes count as 0).
 *   h[0] bits 0-1  suites: TLS 1.3 AES-128-GCM, TLS 1.3 ChaCha20, TLS 1.2 AES-256-GCM, TLS 1.2 ChaCha20
 *        bit 2     TLS 1.3: the client sends KeyUpdate(update_requested) before its last record
 *        bit 3     the server delegates tasks (TL_ENGINE_DELEGATE_TASKS) during the handshake
 *        bit 4     EOF mode: no close_notify, no filler; the stream ends with tl_engine_set_input_eof
 *        bit 5     the server drains with small wrap destinations ((h[4] & 63) + 1 bytes)
 *        bit 6     echo: the server wraps what it receives back to the client
 *        bit 7     the server calls tl_engine_close at the end
 *   h[1]           bits 0-1: records - 1; bits 2-6: seed of the plaintext pattern; bit 7: the server
 *                  releases its buffers (tl_engine_release_buffers) whenever it waits for input
 *   h[2], h[3]     record sizes, one nibble each (index into SIZES)
 *   h[4]           the small unwrap destination size
 *   h[5]           per-call choice of small or large destination
 *   h[6], h[7]     chunk sizes (c < 128: c bytes; c >= 128: (c - 127) * 256; 0: all the rest)
 *   mutation       m[0] bits 6-7 kind, bits 0-5 record index (mod records, KeyUpdate and
 *                  close_notify included); m[1..2] offset (big-endian); m[3] value.
 *                  kind 0: XOR the record's byte at offset % length (header included) with value
 *                  kind 1: set that byte to value
 *                  kind 2: set the record's length field to m[1..2]
 *                  kind 3: XOR the stream's byte at offset % stream length with value
 */
#include "harness.h"

#define APP_FILLER 20480
#define APP_MAX_RECS 16

static const size_t SIZES[16] = {1,    2,    3,    16,   17,   31,    100,   255,
                                 256,  1000, 1500, 4096, 8192, 16000, 16383, 16384};

typedef struct rec {
    size_t start, len; /* len includes the 5-byte header */
    size_t plain;      /* application bytes it carries */
} rec;

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

/* Split a genuine stream into records from index *n on; returns false if it does not parse. */
static bool parse_records(const uint8_t *p, size_t from, size_t len, rec *recs, int *n)
{
    size_t off = from;
    while (off < len) {
        if (len - off < 5 || *n >= APP_MAX_RECS)
            return false;
        size_t body = ((size_t)p[off + 3] << 8) | p[off + 4];
        if (len - off - 5 < body)
            return false;
        recs[*n].start = off;
        recs[*n].len = 5 + body;
        recs[*n].plain = 0;
        (*n)++;
        off += 5 + body;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_world_init();
    return 0;
}

static uint8_t plain[4 * 16384];
static uint8_t stream[4 * 16384 + 4096 + APP_FILLER];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t h[FZ_HDR] = {0};
    memcpy(h, data, size < FZ_HDR ? size : FZ_HDR);
    const uint8_t *muts = size > FZ_HDR ? data + FZ_HDR : NULL;
    size_t nmut = size > FZ_HDR ? (size - FZ_HDR) / 4 : 0;
    if (nmut > 4)
        nmut = 4;
    int suite = h[0] & 3;
    bool tls13 = suite == FZ_APP_13_AESGCM || suite == FZ_APP_13_CHACHA;
    bool key_update = tls13 && (h[0] & 0x04);
    bool eof_mode = h[0] & 0x10;

    /* The genuine handshake. */
    fz_rng_reset();
    fz_peer c, s;
    tl_engine_opts co = {.server_name = "localhost"};
    tl_engine_opts so = {.flags = (h[0] & 0x08) ? TL_ENGINE_DELEGATE_TASKS : 0};
    fz_peer_init(&c, fz_w.app_client[suite], &co, 0);
    fz_peer_init(&s, fz_w.app_server, &so, 1);
    FZ_CHECK(fz_handshake(&c, &s) == 0, "appdata: the genuine handshake failed: client '%s', "
             "server '%s'", tl_engine_error(c.e), tl_engine_error(s.e));
    tl_buf_consume(&c.sent, tl_buf_len(&c.sent));

    /* The genuine stream: records of known plaintext. */
    int nrec = (h[1] & 3) + 1;
    size_t sizes[4] = {SIZES[h[2] & 15], SIZES[h[2] >> 4], SIZES[h[3] & 15], SIZES[h[3] >> 4]};
    size_t total = 0;
    for (int i = 0; i < nrec; i++)
        total += sizes[i];
    pattern(plain, total, (h[1] >> 2) & 31);
    rec recs[APP_MAX_RECS];
    int nrecs = 0;
    size_t poff = 0;
    for (int i = 0; i < nrec; i++) {
        if (key_update && i == nrec - 1)
            FZ_MUST(SSL_key_update(tl_engine_ssl(c.e), SSL_KEY_UPDATE_REQUESTED) == 1,
                    "SSL_key_update");
        size_t before = tl_buf_len(&c.sent);
        int first = nrecs;
        FZ_CHECK(fz_peer_wrap(&c, NULL, plain + poff, sizes[i]) == TL_OK, "appdata: client wrap: "
                 "%s", tl_engine_error(c.e));
        FZ_MUST(parse_records(tl_buf_rptr(&c.sent), before, tl_buf_len(&c.sent), recs, &nrecs) &&
                    nrecs - first == 1 + (key_update && i == nrec - 1),
                "appdata: one wrap of <= 16384 bytes must give one record (and a KeyUpdate)");
        recs[nrecs - 1].plain = sizes[i];
        poff += sizes[i];
    }
    if (!eof_mode) {
        size_t before = tl_buf_len(&c.sent);
        tl_engine_close(c.e);
        fz_peer_wrap(&c, NULL, NULL, 0);
        FZ_MUST(parse_records(tl_buf_rptr(&c.sent), before, tl_buf_len(&c.sent), recs, &nrecs),
                "appdata: close_notify record");
    }
    size_t glen = tl_buf_len(&c.sent);
    memcpy(stream, tl_buf_rptr(&c.sent), glen);
    size_t slen = glen;
    if (!eof_mode) {
        memset(stream + glen, 0, APP_FILLER);
        slen += APP_FILLER;
    }

    /* The mutations. */
    for (size_t i = 0; i < nmut; i++) {
        const uint8_t *m = muts + 4 * i;
        const rec *r = &recs[(m[0] & 63) % nrecs];
        size_t off = ((size_t)m[1] << 8) | m[2];
        switch (m[0] >> 6) {
        case 0: stream[r->start + off % r->len] ^= m[3]; break;
        case 1: stream[r->start + off % r->len] = m[3]; break;
        case 2:
            stream[r->start + 3] = m[1];
            stream[r->start + 4] = m[2];
            break;
        default: stream[off % glen] ^= m[3]; break;
        }
    }
    const uint8_t *genuine = tl_buf_rptr(&c.sent);
    size_t first_diff = glen;
    for (size_t i = 0; i < glen; i++) {
        if (stream[i] != genuine[i]) {
            first_diff = i;
            break;
        }
    }
    bool modified = first_diff < glen;
    size_t expect = 0; /* plaintext of the records before the first modified one */
    int first_bad = nrecs;
    for (int i = 0; i < nrecs; i++) {
        if (modified && first_diff < recs[i].start + recs[i].len) {
            first_bad = i;
            break;
        }
        expect += recs[i].plain;
    }
    fz_feature(0x41000000u ^ ((uint32_t)suite << 16) ^ ((uint32_t)modified << 8) ^
               ((uint32_t)(first_bad < nrecs ? stream[recs[first_bad].start] : 0xff) << 9) ^
               (uint32_t)(modified ? first_diff - recs[first_bad].start < 5 : 2)); /* header? */

    /* Feed it to the server, every call checked. */
    fz_run run;
    fz_run_init(&run, s.e, "server", 0x41000000u | ((uint32_t)suite << 12),
                (h[0] & 0x20) ? (size_t)(h[4] & 63) + 1 : 0);
    s.e = NULL;
    run.finished = 1; /* reported during the handshake */
    tl_engine_info info;
    tl_engine_get_info(run.e, &info);
    run.consumed = info.bytes_in; /* the handshake's bytes */
    run.out_base = info.bytes_out - tl_engine_pending_output(run.e);
    fz_input in;
    memset(&in, 0, sizeof in);
    in.h[0] = (h[0] & 0x40 ? FZ_F_ECHO : 0) | (h[0] & 0x80 ? FZ_F_CLOSE : 0) |
              (h[1] & 0x80 ? FZ_F_RELEASE : 0);
    in.h[1] = h[4];
    in.h[2] = h[5];
    in.h[4] = in.h[6] = h[6];
    in.h[5] = in.h[7] = h[7];
    in.data = stream;
    in.len = slen;
    in.whole_after = glen; /* the filler arrives at once */
    in.big_chunks = true;
    tl_result f = fz_drive(&run, &in);

    size_t got = tl_buf_len(&run.app);
    FZ_CHECK(got == expect && fz_eq(tl_buf_rptr(&run.app), plain, got),
             "appdata: the server delivered %zu plaintext bytes (%s), expected exactly %zu: the "
             "records before the first modified one (stream %s, first difference at %zu, record "
             "%d of %d), final %s '%s'",
             got, got <= total && fz_eq(tl_buf_rptr(&run.app), plain, got) ? "a prefix" :
             "NOT a prefix of what was sent", expect, modified ? "modified" : "unmodified",
             first_diff, first_bad, nrecs, tl_status_name(f.status), tl_engine_error(run.e));
    if (!modified)
        FZ_CHECK(f.status == (eof_mode ? TL_TRUNCATED : TL_CLOSED), "appdata: unmodified stream "
                 "ended %s, not %s ('%s')", tl_status_name(f.status),
                 eof_mode ? "truncated" : "closed", tl_engine_error(run.e));
    else if (eof_mode)
        FZ_CHECK(f.status == TL_ERROR || f.status == TL_TRUNCATED, "appdata: modified stream "
                 "(EOF mode) ended %s ('%s')", tl_status_name(f.status), tl_engine_error(run.e));
    else
        FZ_CHECK(f.status == TL_ERROR, "appdata: modified stream ended %s, not error (first "
                 "difference at %zu, record %d of %d; '%s')", tl_status_name(f.status), first_diff,
                 first_bad, nrecs, tl_engine_error(run.e));

    /* The client reads what the server sent back (KeyUpdate answer, echo, alert, close_notify). */
    tl_buf_append(&c.in, tl_buf_rptr(&run.out), tl_buf_len(&run.out));
    tl_status cst = fz_peer_unwrap(&c);
    size_t echoed = tl_buf_len(&c.app);
    FZ_CHECK(echoed <= got && fz_eq(tl_buf_rptr(&c.app), plain, echoed),
             "appdata: the client received %zu bytes that are not what the server echoed", echoed);
    if (!modified)
        FZ_CHECK(cst != TL_ERROR, "appdata: the client failed on the server's answer: '%s'",
                 tl_engine_error(c.e));
    else if (f.status == TL_ERROR) /* the alert, unless the server's close_notify went first */
        FZ_CHECK((cst == TL_ERROR && tl_engine_error_kind(c.e) == TL_ERR_ALERT) ||
                     ((h[0] & 0x80) && cst == TL_CLOSED),
                 "appdata: the server failed ('%s') but the client saw no alert (%s, '%s')",
                 tl_engine_error(run.e), tl_status_name(cst), tl_engine_error(c.e));
    if (fz_verbose)
        fprintf(stderr, "appdata: suite %d, %d records, %s, server %s, client %s '%s'\n", suite,
                nrecs, modified ? "modified" : "unmodified", tl_status_name(f.status),
                tl_status_name(cst), tl_engine_error(c.e));

    fz_run_free(&run);
    fz_peer_free(&c);
    fz_peer_free(&s);
    return 0;
}
