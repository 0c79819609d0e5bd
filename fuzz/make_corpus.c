/*
 * fuzz/make_corpus.c - write the seed corpora of the engine fuzz targets.
 *
 *   make fuzz-corpus            (builds build/fuzz/make_corpus, runs it on fuzz/corpus)
 *   build/fuzz/make_corpus DIR  writes DIR/fuzz_engine_{server,client,appdata}/seed-*
 *
 * It records real handshakes between tlsloop engines in memory, with the same deterministic RNG,
 * certificates and configurations as the targets (fuzz/harness.c): the client's bytes become seeds
 * of fuzz_engine_server, the server's bytes seeds of fuzz_engine_client (where, the ClientHello
 * being the same bytes, they complete the handshake), and it adds hand-made inputs: an SSLv3 and an
 * SSLv2 hello, plain HTTP, records with a 0xFFFF length, alerts, an empty input. Each seed is the
 * target's 8-byte header (chunking, destination sizes, configuration; fuzz/harness.h) followed by
 * the bytes. Files it wrote before (seed-*) are replaced; other files (from make fuzz-merge) stay.
 * Regenerate after a change to the library's ClientHello, the harness or OpenSSL: the client seeds
 * only complete their handshakes while the ClientHello is the same bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static const char *outdir;
static int written;

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: mkdir %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* Remove the seed-* files of a target directory (ours, from an earlier run). */
static void clear_seeds(const char *target)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", outdir, target);
    make_dir(dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "seed-", 5) == 0) {
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

/* Write outdir/target/seed-name: the header (NULL: none) and then the bytes. */
static void seed(const char *target, const char *name, const uint8_t *hdr, const void *data,
                 size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/seed-%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (hdr && fwrite(hdr, 1, FZ_HDR, f) != FZ_HDR) ||
        (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
    written++;
}

/* Headers (fz_input in harness.h): configuration and flags, small unwrap dst, dst pattern, small
 * wrap dst - 1, four chunk sizes (0: all at once). */
typedef struct hdr {
    uint8_t b[FZ_HDR];
} hdr;

static hdr H(uint8_t cfg, uint8_t small, uint8_t pat, uint8_t wsmall, uint8_t c0, uint8_t c1,
             uint8_t c2, uint8_t c3)
{
    hdr h = {{cfg, small, pat, wsmall, c0, c1, c2, c3}};
    return h;
}

#define WHOLE(cfg) H((cfg), 0, 0, 0, 0, 0, 0, 0)           /* everything at once, 20000-byte dsts */
#define DRIBBLE(cfg) H((cfg), 1, 0x55, 0, 1, 1, 1, 1)      /* 1-byte chunks, 1-byte dst every other */
#define MIXED(cfg) H((cfg), 7, 0xa5, 6, 5, 1, 200, 3)     /* odd chunks and destinations */

/* ---- recordings ------------------------------------------------------------------------------ */

typedef struct recording {
    tl_buf c_first; /* the client's first flight (ClientHello) */
    tl_buf s_first; /* the server's first flight */
    tl_buf c2s;     /* everything the client sent */
    tl_buf s2c;     /* everything the server sent */
    bool done;      /* the handshake completed */
} recording;

enum {
    AFTER_NOTHING = 0,
    AFTER_DATA = 1,       /* both send a line of application data */
    AFTER_KEYUPDATE = 2,  /* TLS 1.3: the server sends KeyUpdate(update_requested) with its data */
    AFTER_CLOSE = 4,      /* both send close_notify */
};

static void rec_free(recording *r)
{
    tl_buf_free(&r->c_first);
    tl_buf_free(&r->s_first);
    tl_buf_free(&r->c2s);
    tl_buf_free(&r->s2c);
}

static void copy_buf(tl_buf *to, const tl_buf *from)
{
    tl_buf_append(to, tl_buf_rptr(from), tl_buf_len(from));
}

/* A client of profile `profile` (made exactly as fuzz_engine_client makes it: RNG stream 0 from
 * its start) against server configuration `server_cfg` (stream 1). */
static void record_session(int profile, int server_cfg, unsigned after, recording *out)
{
    memset(out, 0, sizeof *out);
    fz_rng_reset();
    fz_peer c, s;
    memset(&c, 0, sizeof c);
    c.stream = 0;
    fz_rng_use(0);
    c.e = fz_new_client(profile, 0);
    fz_peer_init(&s, fz_w.server[server_cfg], NULL, 1);

    for (int round = 0; round < 16; round++) {
        tl_status a = fz_peer_wrap(&c, &s, NULL, 0);
        if (round == 0)
            copy_buf(&out->c_first, &c.sent);
        tl_status b = fz_peer_unwrap(&s);
        tl_status d = fz_peer_wrap(&s, &c, NULL, 0);
        if (round == 0)
            copy_buf(&out->s_first, &s.sent);
        tl_status e = fz_peer_unwrap(&c);
        if (a == TL_ERROR || b == TL_ERROR || d == TL_ERROR || e == TL_ERROR)
            break;
        if (tl_engine_handshake_done(c.e) && tl_engine_handshake_done(s.e) &&
            tl_engine_pending_output(c.e) == 0 && tl_engine_pending_output(s.e) == 0 &&
            tl_buf_len(&c.in) == 0 && tl_buf_len(&s.in) == 0) {
            out->done = true;
            break;
        }
    }
    if (!out->done)
        fprintf(stderr, "make_corpus: profile %d / server %d: handshake did not complete: client "
                "'%s', server '%s'\n", profile, server_cfg, tl_engine_error(c.e),
                tl_engine_error(s.e));
    if (out->done && (after & AFTER_DATA)) {
        static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        fz_peer_wrap(&c, &s, req, sizeof req - 1);
        fz_peer_unwrap(&s);
        if (after & AFTER_KEYUPDATE)
            FZ_MUST(SSL_key_update(tl_engine_ssl(s.e), SSL_KEY_UPDATE_REQUESTED) == 1,
                    "SSL_key_update");
        fz_peer_wrap(&s, &c, resp, sizeof resp - 1);
        fz_peer_unwrap(&c);
        fz_peer_wrap(&c, &s, NULL, 0); /* the client's KeyUpdate answer, if any */
        fz_peer_unwrap(&s);
    }
    if (out->done && (after & AFTER_CLOSE)) {
        tl_engine_close(s.e);
        fz_peer_wrap(&s, &c, NULL, 0);
        fz_peer_unwrap(&c);
        tl_engine_close(c.e);
        fz_peer_wrap(&c, &s, NULL, 0);
        fz_peer_unwrap(&s);
    }
    copy_buf(&out->c2s, &c.sent);
    copy_buf(&out->s2c, &s.sent);
    fz_peer_free(&c);
    fz_peer_free(&s);
}

/* The first TLS record of a buffer, as (offset, total length), or false. */
static bool first_record(const tl_buf *b, size_t *len)
{
    const uint8_t *p = tl_buf_rptr(b);
    if (tl_buf_len(b) < 5)
        return false;
    *len = 5 + (((size_t)p[3] << 8) | p[4]);
    return *len <= tl_buf_len(b);
}

/* The handshake message of a one-record ClientHello split over two records at `at`. */
static size_t split_record(const tl_buf *b, size_t at, uint8_t *out, size_t cap)
{
    size_t len;
    if (!first_record(b, &len) || len - 5 <= at || len + 5 > cap)
        return 0;
    const uint8_t *p = tl_buf_rptr(b);
    size_t body = len - 5, rest = body - at;
    memcpy(out, p, 3);
    out[3] = (uint8_t)(at >> 8);
    out[4] = (uint8_t)at;
    memcpy(out + 5, p + 5, at);
    memcpy(out + 5 + at, p, 3);
    out[5 + at + 3] = (uint8_t)(rest >> 8);
    out[5 + at + 4] = (uint8_t)rest;
    memcpy(out + 10 + at, p + 5 + at, rest);
    return len + 5;
}

/* ---- hand-made messages ---------------------------------------------------------------------- */

/* A ClientHello record of protocol `version` with no extensions (SSLv3, TLS 1.0). */
static size_t old_client_hello(uint16_t version, uint8_t *out)
{
    static const uint8_t suites[] = {0x00, 0x2f, 0x00, 0x35, 0x00, 0x0a};
    uint8_t body[128];
    size_t n = 0;
    body[n++] = (uint8_t)(version >> 8);
    body[n++] = (uint8_t)version;
    for (int i = 0; i < 32; i++)
        body[n++] = (uint8_t)(0x20 + i); /* random */
    body[n++] = 0;                       /* session id */
    body[n++] = 0;
    body[n++] = sizeof suites;
    memcpy(body + n, suites, sizeof suites);
    n += sizeof suites;
    body[n++] = 1; /* compression: null */
    body[n++] = 0;
    size_t m = 0;
    out[m++] = 0x16;
    out[m++] = (uint8_t)(version >> 8);
    out[m++] = (uint8_t)version;
    out[m++] = (uint8_t)((n + 4) >> 8);
    out[m++] = (uint8_t)(n + 4);
    out[m++] = 0x01; /* client_hello */
    out[m++] = 0;
    out[m++] = (uint8_t)(n >> 8);
    out[m++] = (uint8_t)n;
    memcpy(out + m, body, n);
    return m + n;
}

/* An SSLv2-format ClientHello offering SSL 3.0 / TLS 1.0 (the old "compatible" hello). */
static size_t sslv2_hello(uint8_t *out)
{
    static const uint8_t specs[] = {0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x00, 0x00, 0x0a,
                                    0x07, 0x00, 0xc0, 0x01, 0x00, 0x80};
    size_t n = 0;
    uint8_t body[128];
    body[n++] = 0x01;                  /* client-hello */
    body[n++] = 0x03;                  /* version 3.1 */
    body[n++] = 0x01;
    body[n++] = 0;                     /* cipher specs length */
    body[n++] = sizeof specs;
    body[n++] = 0;                     /* session id length */
    body[n++] = 0;
    body[n++] = 0;                     /* challenge length */
    body[n++] = 16;
    memcpy(body + n, specs, sizeof specs);
    n += sizeof specs;
    for (int i = 0; i < 16; i++)
        body[n++] = (uint8_t)(0x40 + i);
    out[0] = (uint8_t)(0x80 | (n >> 8));
    out[1] = (uint8_t)n;
    memcpy(out + 2, body, n);
    return n + 2;
}

/* A ServerHello record of an old version (SSLv3 / TLS 1.0), for the client target. */
static size_t old_server_hello(uint16_t version, uint8_t *out)
{
    uint8_t body[128];
    size_t n = 0;
    body[n++] = (uint8_t)(version >> 8);
    body[n++] = (uint8_t)version;
    for (int i = 0; i < 32; i++)
        body[n++] = (uint8_t)(0x60 + i);
    body[n++] = 0;    /* session id */
    body[n++] = 0x00; /* TLS_RSA_WITH_AES_128_CBC_SHA */
    body[n++] = 0x2f;
    body[n++] = 0;    /* compression */
    size_t m = 0;
    out[m++] = 0x16;
    out[m++] = (uint8_t)(version >> 8);
    out[m++] = (uint8_t)version;
    out[m++] = (uint8_t)((n + 4) >> 8);
    out[m++] = (uint8_t)(n + 4);
    out[m++] = 0x02; /* server_hello */
    out[m++] = 0;
    out[m++] = (uint8_t)(n >> 8);
    out[m++] = (uint8_t)n;
    memcpy(out + m, body, n);
    return m + n;
}

/* A record header of type/version/length followed by `body_len` bytes of `fill`. */
static size_t record(uint8_t type, uint16_t version, uint16_t length, size_t body_len,
                     uint8_t fill, uint8_t *out)
{
    out[0] = type;
    out[1] = (uint8_t)(version >> 8);
    out[2] = (uint8_t)version;
    out[3] = (uint8_t)(length >> 8);
    out[4] = (uint8_t)length;
    memset(out + 5, fill, body_len);
    return 5 + body_len;
}

static void seed_buf(const char *target, const char *name, hdr h, const tl_buf *b)
{
    seed(target, name, h.b, tl_buf_rptr(b), tl_buf_len(b));
}

/* The common hand-made inputs of both the server and the client target. */
static void handmade(const char *t, bool server)
{
    uint8_t buf[512];
    size_t n;
    static const char http_get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const char http_connect[] = "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const char http_resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    static const uint8_t alert_fatal[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
    static const uint8_t alert_close[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00};
    static const uint8_t ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    static const uint8_t empty_hs[] = {0x16, 0x03, 0x03, 0x00, 0x00};

    seed(t, "empty", NULL, NULL, 0);
    seed(t, "header-only", WHOLE(0).b, NULL, 0);
    if (server) {
        seed(t, "http-get", WHOLE(0).b, http_get, sizeof http_get - 1);
        seed(t, "http-get-dribble", DRIBBLE(0).b, http_get, sizeof http_get - 1);
        seed(t, "http-connect", WHOLE(0).b, http_connect, sizeof http_connect - 1);
        n = old_client_hello(0x0300, buf);
        seed(t, "sslv3-client-hello", WHOLE(0).b, buf, n);
        n = old_client_hello(0x0301, buf);
        seed(t, "tls10-client-hello", WHOLE(0).b, buf, n);
        n = sslv2_hello(buf);
        seed(t, "sslv2-client-hello", WHOLE(0).b, buf, n);
    } else {
        seed(t, "http-response", WHOLE(0).b, http_resp, sizeof http_resp - 1);
        n = old_server_hello(0x0300, buf);
        seed(t, "sslv3-server-hello", WHOLE(0).b, buf, n);
        n = old_server_hello(0x0301, buf);
        seed(t, "tls10-server-hello", WHOLE(0).b, buf, n);
    }
    seed(t, "alert-fatal", WHOLE(0).b, alert_fatal, sizeof alert_fatal);
    seed(t, "alert-close-notify", WHOLE(0).b, alert_close, sizeof alert_close);
    seed(t, "ccs-first", WHOLE(0).b, ccs, sizeof ccs);
    seed(t, "empty-handshake-record", WHOLE(0).b, empty_hs, sizeof empty_hs);
    n = record(0x16, 0x0301, 0xffff, 64, 0x01, buf);
    seed(t, "len-ffff-handshake", WHOLE(0).b, buf, n);
    n = record(0x17, 0x0303, 0xffff, 64, 0x00, buf);
    seed(t, "len-ffff-appdata", MIXED(0).b, buf, n);
    n = record(0x16, 0x0303, 0x4801, 32, 0x02, buf); /* 18433: just over what TLS allows */
    seed(t, "len-18433", WHOLE(0).b, buf, n);
    n = record(0x17, 0x0303, 0x0010, 16, 0xaa, buf);
    seed(t, "appdata-first", WHOLE(0).b, buf, n);
    n = record(0x18, 0x0303, 0x0003, 3, 0x01, buf); /* heartbeat */
    seed(t, "heartbeat", WHOLE(0).b, buf, n);
    n = record(0x20, 0x0303, 0x0004, 4, 0x00, buf); /* unknown content type */
    seed(t, "unknown-type", WHOLE(0).b, buf, n);
}

/* ---- the targets' seeds ---------------------------------------------------------------------- */

static void server_seeds(void)
{
    const char *t = "fuzz_engine_server";
    clear_seeds(t);
    handmade(t, true);
    recording r;
    uint8_t buf[8192];
    size_t n;

    /* TLS 1.3 (default client) to the default server: the ClientHello, cut in several ways. */
    record_session(FZ_CLI_DEFAULT, FZ_SRV_DEFAULT, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-client-hello", WHOLE(FZ_SRV_DEFAULT), &r.c_first);
    seed_buf(t, "tls13-client-hello-dribble", DRIBBLE(FZ_SRV_DEFAULT), &r.c_first);
    seed_buf(t, "tls13-client-hello-delegate",
             MIXED(FZ_SRV_DEFAULT | FZ_F_DELEGATE | FZ_F_SMALL_WRAP), &r.c_first);
    seed_buf(t, "tls13-client-all", WHOLE(FZ_SRV_DEFAULT | FZ_F_ECHO | FZ_F_CLOSE), &r.c2s);
    n = split_record(&r.c_first, 40, buf, sizeof buf);
    if (n)
        seed(t, "tls13-client-hello-two-records", WHOLE(FZ_SRV_DEFAULT).b, buf, n);
    tl_buf_append(&r.c_first, "\x16\x03\x03\x00\x01\xff", 6); /* and a broken record */
    seed_buf(t, "tls13-client-hello-then-garbage", MIXED(FZ_SRV_DEFAULT), &r.c_first);
    rec_free(&r);

    /* TLS 1.2 ClientHellos, and a whole TLS 1.2 client flight with a certificate. */
    record_session(FZ_CLI_TLS12, FZ_SRV_DEFAULT, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls12-client-hello", WHOLE(FZ_SRV_DEFAULT), &r.c_first);
    seed_buf(t, "tls12-client-all", MIXED(FZ_SRV_DEFAULT | FZ_F_CLOSE), &r.c2s);
    seed_buf(t, "tls12-client-all-release", DRIBBLE(FZ_SRV_DEFAULT | FZ_F_RELEASE), &r.c2s);
    rec_free(&r);
    record_session(FZ_CLI_TLS12_CERT, FZ_SRV_TLS12_CERTREQ, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls12-certreq-client-all", WHOLE(FZ_SRV_TLS12_CERTREQ), &r.c2s);
    seed_buf(t, "tls12-certreq-client-all-dribble", DRIBBLE(FZ_SRV_TLS12_CERTREQ | FZ_F_DELEGATE),
             &r.c2s);
    rec_free(&r);

    /* TLS 1.3 with a client certificate; HelloRetryRequest; resumption; ChaCha20. */
    record_session(FZ_CLI_TLS13_CERT, FZ_SRV_TLS13_CERTREQ, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-certreq-client-all", WHOLE(FZ_SRV_TLS13_CERTREQ), &r.c2s);
    rec_free(&r);
    record_session(FZ_CLI_HRR, FZ_SRV_DEFAULT, AFTER_NOTHING, &r);
    seed_buf(t, "tls13-hrr-client-all", WHOLE(FZ_SRV_DEFAULT), &r.c2s);
    rec_free(&r);
    record_session(FZ_CLI_RESUME13, FZ_SRV_DEFAULT, AFTER_NOTHING, &r);
    seed_buf(t, "tls13-psk-client-hello", WHOLE(FZ_SRV_DEFAULT), &r.c_first);
    rec_free(&r);
    record_session(FZ_CLI_RESUME12, FZ_SRV_DEFAULT, AFTER_NOTHING, &r);
    seed_buf(t, "tls12-ticket-client-hello", WHOLE(FZ_SRV_DEFAULT), &r.c_first);
    rec_free(&r);
    record_session(FZ_CLI_CHACHA, FZ_SRV_NO_TICKETS, AFTER_NOTHING, &r);
    seed_buf(t, "tls13-chacha-client-hello", WHOLE(FZ_SRV_NO_TICKETS), &r.c_first);
    rec_free(&r);
}

static void client_seeds(void)
{
    const char *t = "fuzz_engine_client";
    clear_seeds(t);
    handmade(t, false);
    recording r;

    /* Whole TLS 1.3 exchanges: flight, tickets, data, KeyUpdate, close_notify. */
    record_session(FZ_CLI_DEFAULT, FZ_SRV_DEFAULT, AFTER_DATA | AFTER_KEYUPDATE | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-server-all", WHOLE(FZ_CLI_DEFAULT), &r.s2c);
    seed_buf(t, "tls13-server-all-dribble", DRIBBLE(FZ_CLI_DEFAULT | FZ_F_ECHO), &r.s2c);
    seed_buf(t, "tls13-server-all-mixed", MIXED(FZ_CLI_DEFAULT | FZ_F_DELEGATE | FZ_F_SMALL_WRAP),
             &r.s2c);
    seed_buf(t, "tls13-server-first-flight", WHOLE(FZ_CLI_DEFAULT | FZ_F_CLOSE), &r.s_first);
    seed_buf(t, "tls13-server-all-release", MIXED(FZ_CLI_DEFAULT | FZ_F_RELEASE), &r.s2c);
    rec_free(&r);

    /* TLS 1.2: first flight alone, and the whole exchange. */
    record_session(FZ_CLI_TLS12, FZ_SRV_DEFAULT, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls12-server-first-flight", WHOLE(FZ_CLI_TLS12), &r.s_first);
    seed_buf(t, "tls12-server-all", WHOLE(FZ_CLI_TLS12 | FZ_F_ECHO), &r.s2c);
    seed_buf(t, "tls12-server-all-mixed", MIXED(FZ_CLI_TLS12 | FZ_F_DELEGATE | FZ_F_CLOSE), &r.s2c);
    rec_free(&r);

    /* Certificate requests, HelloRetryRequest, resumption, ChaCha20, no tickets. */
    record_session(FZ_CLI_TLS13_CERT, FZ_SRV_TLS13_CERTREQ, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-certreq-server-all", WHOLE(FZ_CLI_TLS13_CERT), &r.s2c);
    rec_free(&r);
    record_session(FZ_CLI_TLS12_CERT, FZ_SRV_TLS12_CERTREQ, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls12-certreq-server-all", WHOLE(FZ_CLI_TLS12_CERT), &r.s2c);
    rec_free(&r);
    record_session(FZ_CLI_HRR, FZ_SRV_DEFAULT, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-hrr-server-all", WHOLE(FZ_CLI_HRR), &r.s2c);
    rec_free(&r);
    record_session(FZ_CLI_RESUME13, FZ_SRV_DEFAULT, AFTER_DATA, &r);
    seed_buf(t, "tls13-psk-server-all", WHOLE(FZ_CLI_RESUME13), &r.s2c);
    rec_free(&r);
    record_session(FZ_CLI_RESUME12, FZ_SRV_DEFAULT, AFTER_DATA, &r);
    seed_buf(t, "tls12-resumed-server-all", WHOLE(FZ_CLI_RESUME12), &r.s2c);
    rec_free(&r);
    record_session(FZ_CLI_CHACHA, FZ_SRV_NO_TICKETS, AFTER_DATA | AFTER_CLOSE, &r);
    seed_buf(t, "tls13-chacha-server-all", WHOLE(FZ_CLI_CHACHA), &r.s2c);
    rec_free(&r);
}

/* fuzz_engine_appdata inputs: a header and mutations (fuzz/fuzz_engine_appdata.c). */
static void appdata_seeds(void)
{
    const char *t = "fuzz_engine_appdata";
    clear_seeds(t);
    static const struct {
        const char *name;
        uint8_t b[FZ_HDR + 8];
        size_t len;
    } S[] = {
        /* h0: suite | 4 KeyUpdate | 8 delegate | 0x10 EOF | 0x20 small wrap | 0x40 echo | 0x80 close
         * h1: records-1 | seed<<2 | 0x80 release; h2,h3: size nibbles; h4 small dst; h5 dst
         * pattern; h6,h7 chunks; then mutations: kind<<6 | record, offset (2 bytes), value */
        {"tls13-aes-clean", {0x00, 0x00, 0x06, 0x00, 0, 0, 0, 0}, 8},
        {"tls13-chacha-clean", {0x01, 0x05, 0x96, 0x00, 0, 0, 0, 0}, 8},
        {"tls12-aes-clean", {0x02, 0x09, 0x69, 0x00, 0, 0, 0, 0}, 8},
        {"tls12-chacha-clean", {0x03, 0x02, 0x36, 0x0b, 0, 0, 0, 0}, 8},
        {"tls13-keyupdate-clean", {0x04, 0x01, 0x66, 0x00, 0, 0, 0, 0}, 8},
        {"tls13-keyupdate-dribble", {0x44, 0x01, 0x36, 0x00, 3, 0x55, 1, 7}, 8},
        {"tls12-eof-clean", {0x12, 0x01, 0x86, 0x00, 0, 0, 0, 0}, 8},
        {"tls13-big-records", {0x20, 0x01, 0xff, 0x00, 40, 0x0f, 0x90, 0}, 8},
        {"tls13-echo-close", {0xc8, 0x00, 0x09, 0x00, 0, 0, 5, 0}, 8},
        /* h1 bit 7: the server releases its buffers between chunks */
        {"tls13-release-dribble", {0x04, 0x81, 0x36, 0x00, 0, 0, 3, 5}, 8},
        {"tls12-release-big", {0x02, 0x85, 0xfd, 0x00, 0, 0, 0x81, 7}, 8},
        /* kind 2 (0x80): the first record's length field := 0xFFFF */
        {"tls13-len-ffff", {0x00, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x80, 0xff, 0xff, 0}, 12},
        {"tls12-len-ffff", {0x02, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x80, 0xff, 0xff, 0}, 12},
        /* kind 2: the second record's length := 0x0040 (shorter) */
        {"tls12-len-short", {0x03, 0x01, 0x66, 0x00, 0, 0, 0, 0, 0x81, 0x00, 0x40, 0}, 12},
        /* kind 0: XOR a body byte, the type byte (0x17 -> 0x15), a version byte, a length byte */
        {"tls13-bad-mac", {0x00, 0x01, 0x66, 0x00, 0, 0, 0, 0, 0x01, 0x00, 0x0a, 0x01}, 12},
        {"tls13-type-alert", {0x01, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x02}, 12},
        {"tls12-version", {0x02, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x02, 0x01}, 12},
        {"tls12-len-plus-one-eof", {0x12, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x04, 0x01},
         12},
        /* the KeyUpdate record (index 1 of data, KeyUpdate, data, close_notify) broken */
        {"tls13-keyupdate-broken", {0x04, 0x01, 0x66, 0x00, 0, 0, 0, 0, 0x01, 0x00, 0x07, 0x80},
         12},
        /* the close_notify record (index 1 after one data record) broken */
        {"tls13-close-notify-broken", {0x00, 0x00, 0x06, 0x00, 0, 0, 0, 0, 0x01, 0x00, 0x06, 0x10},
         12},
        /* kind 3: an absolute byte of the stream, in 1-byte chunks and 1-byte destinations */
        {"tls12-stream-byte-dribble",
         {0x03, 0x01, 0x36, 0x00, 1, 0xff, 1, 1, 0xc0, 0x00, 0x30, 0x40}, 12},
    };
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++)
        seed(t, S[i].name, NULL, S[i].b, S[i].len);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (writes DIR/fuzz_engine_*/seed-*)\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    make_dir(outdir);
    fz_world_init();
    server_seeds();
    client_seeds();
    appdata_seeds();
    printf("make_corpus: wrote %d seeds under %s/\n", written, outdir);
    return 0;
}
