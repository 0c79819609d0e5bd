/*
 * test_sstore.c - the session store's pieces without a network (src/server/sstore_int.h): the
 * store URL, memcached's and Redis's requests and reply parsers (whole, cut at every byte,
 * malformed), and sealed entries (open with the key that sealed them while it is in the ring,
 * refused when tampered with, moved to another ID, or its key gone).
 */
#include <string.h>

#include <openssl/rand.h>

#include "server/sstore_int.h"
#include "test.h"

/* ---- URLs and keys ---------------------------------------------------------------------- */

TEST(store_urls)
{
    tli_sstore_addr a;
    char err[256];
    CHECK_EQ_INT(tli_sstore_parse_url("memcached://127.0.0.1:11211", &a, err, sizeof err), 0);
    CHECK(a.kind == TLI_SSTORE_MEMCACHED && a.addr.ss_family == AF_INET);
    CHECK_EQ_INT(tli_sstore_parse_url("redis://[::1]:6379", &a, err, sizeof err), 0);
    CHECK(a.kind == TLI_SSTORE_REDIS && a.addr.ss_family == AF_INET6);
    CHECK_EQ_INT(tli_sstore_parse_url("redis://localhost:6379", &a, err, sizeof err), 0);
    CHECK(a.addr.ss_family == AF_INET);
    const char *bad[] = {"http://1.2.3.4:1", "memcached://1.2.3.4", "memcached://1.2.3.4:0",
                         "memcached://1.2.3.4:70000", "redis://[::1:6379", "redis://1.2.3.4:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_EQ_INT(tli_sstore_parse_url(bad[i], &a, err, sizeof err), -1);
        CHECK_HAS(err, "session-store");
    }
    CHECK_EQ_INT(tli_sstore_parse_url("redis://cache.example:6379", &a, err, sizeof err), -1);
    CHECK_HAS(err, "IP address");
    uint8_t id[32];
    memset(id, 0xab, sizeof id);
    char key[TLI_SSTORE_KEY_MAX];
    tli_sstore_key(id, 2, key);
    CHECK_STR(key, "tlsloop:s:abab");
    tli_sstore_key(id, 32, key);
    CHECK_EQ_INT(strlen(key), 10 + 64);
}

/* ---- requests --------------------------------------------------------------------------- */

static int buf_is(const tl_buf *b, const char *want, size_t len)
{
    return tl_buf_len(b) == len && memcmp(b->data + b->rpos, want, len) == 0;
}

TEST(requests)
{
    tl_buf b = {0};
    CHECK_EQ_INT(tli_sstore_req_get(&b, TLI_SSTORE_MEMCACHED, "k1"), 0);
    CHECK(buf_is(&b, "get k1\r\n", 8));
    tl_buf_consume(&b, tl_buf_len(&b));
    CHECK_EQ_INT(tli_sstore_req_set(&b, TLI_SSTORE_MEMCACHED, "k1", "a\r\nb", 4, 300), 0);
    CHECK(buf_is(&b, "set k1 0 300 4\r\na\r\nb\r\n", 22));
    tl_buf_consume(&b, tl_buf_len(&b));
    CHECK_EQ_INT(tli_sstore_req_set(&b, TLI_SSTORE_MEMCACHED, "k1", "x", 1, 0), 0);
    CHECK(buf_is(&b, "set k1 0 1 1\r\nx\r\n", 17));   /* at least a second */
    tl_buf_consume(&b, tl_buf_len(&b));
    CHECK_EQ_INT(tli_sstore_req_get(&b, TLI_SSTORE_REDIS, "k1"), 0);
    CHECK(buf_is(&b, "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n", 21));
    tl_buf_consume(&b, tl_buf_len(&b));
    CHECK_EQ_INT(tli_sstore_req_set(&b, TLI_SSTORE_REDIS, "k1", "v\0w", 3, 7200), 0);
    const char want[] = "*5\r\n$3\r\nSET\r\n$2\r\nk1\r\n$3\r\nv\0w\r\n$2\r\nEX\r\n$4\r\n7200\r\n";
    CHECK(buf_is(&b, want, sizeof want - 1));
    tl_buf_free(&b);
}

/* ---- replies ---------------------------------------------------------------------------- */

/* A whole reply parses to (kind, value) and takes all of it; every prefix is incomplete. */
static void check_reply(tli_sstore_kind kind, const char *text, size_t len, tli_reply_kind want,
                        const char *value, size_t vlen)
{
    tli_reply r;
    ssize_t k = tli_sstore_parse_reply(kind, (const uint8_t *)text, len, &r);
    CHECK_EQ_INT(k, (ssize_t)len);
    CHECK_EQ_INT(r.kind, want);
    if (value) {
        CHECK_EQ_INT(r.len, vlen);
        CHECK(r.data && memcmp(r.data, value, vlen) == 0);
    }
    for (size_t cut = 0; cut < len; cut++) {
        k = tli_sstore_parse_reply(kind, (const uint8_t *)text, cut, &r);
        if (k != 0) {
            fprintf(stderr, "  prefix %zu of %zu: %zd\n", cut, len, k);
            CHECK(k == 0);
            break;
        }
    }
    /* With the next reply behind it: only its own bytes. */
    char two[512];
    REQUIRE(len * 2 < sizeof two);
    memcpy(two, text, len);
    memcpy(two + len, text, len);
    CHECK_EQ_INT(tli_sstore_parse_reply(kind, (const uint8_t *)two, 2 * len, &r), (ssize_t)len);
}

static void check_bad(tli_sstore_kind kind, const char *text)
{
    tli_reply r;
    ssize_t k = tli_sstore_parse_reply(kind, (const uint8_t *)text, strlen(text), &r);
    if (k != -1)
        fprintf(stderr, "  accepted: '%s'\n", text);
    CHECK_EQ_INT(k, -1);
}

#define S(x) x, sizeof x - 1

TEST(memcached_replies)
{
    tli_sstore_kind m = TLI_SSTORE_MEMCACHED;
    check_reply(m, S("END\r\n"), TLI_REPLY_MISS, NULL, 0);
    check_reply(m, S("STORED\r\n"), TLI_REPLY_STORED, NULL, 0);
    check_reply(m, S("VALUE tlsloop:s:ab 0 5\r\nhe\r\no\r\nEND\r\n"), TLI_REPLY_VALUE, "he\r\no", 5);
    check_reply(m, S("VALUE k 0 0\r\n\r\nEND\r\n"), TLI_REPLY_VALUE, "", 0);
    check_reply(m, S("VALUE k 7 3 99\r\nabc\r\nEND\r\n"), TLI_REPLY_VALUE, "abc", 3);   /* CAS */
    check_reply(m, S("NOT_STORED\r\n"), TLI_REPLY_ERROR, NULL, 0);
    check_reply(m, S("SERVER_ERROR out of memory storing object\r\n"), TLI_REPLY_ERROR,
                "SERVER_ERROR out of memory storing object", 41);
    check_reply(m, S("CLIENT_ERROR bad data chunk\r\n"), TLI_REPLY_ERROR, NULL, 0);
    check_reply(m, S("ERROR\r\n"), TLI_REPLY_ERROR, NULL, 0);
    check_bad(m, "HELLO\r\n");
    check_bad(m, "END\n");
    check_bad(m, "END\rX");
    check_bad(m, "VALUE k 0 3\r\nabcEND\r\n\r\n");    /* the length lies */
    check_bad(m, "VALUE k 0 x\r\nabc\r\nEND\r\n");
    check_bad(m, "VALUE k 0\r\nabc\r\nEND\r\n");
    check_bad(m, "VALUE k 0 3\r\nabc\r\nVALUE k 0 3\r\nabc\r\nEND\r\n");   /* one key per get */
    check_bad(m, "VALUE k 0 99999999\r\n");           /* over TLI_SSTORE_VALUE_MAX */
    char longline[700];
    memset(longline, 'V', sizeof longline);
    tli_reply r;
    CHECK_EQ_INT(tli_sstore_parse_reply(m, (uint8_t *)longline, sizeof longline, &r), -1);
}

TEST(redis_replies)
{
    tli_sstore_kind R = TLI_SSTORE_REDIS;
    check_reply(R, S("$-1\r\n"), TLI_REPLY_MISS, NULL, 0);
    check_reply(R, S("+OK\r\n"), TLI_REPLY_STORED, NULL, 0);
    check_reply(R, S(":1\r\n"), TLI_REPLY_STORED, NULL, 0);
    check_reply(R, S("$5\r\nhe\r\no\r\n"), TLI_REPLY_VALUE, "he\r\no", 5);
    check_reply(R, S("$0\r\n\r\n"), TLI_REPLY_VALUE, "", 0);
    check_reply(R, S("-ERR wrong number of arguments\r\n"), TLI_REPLY_ERROR,
                "ERR wrong number of arguments", 29);
    check_bad(R, "*1\r\n$1\r\na\r\n");
    check_bad(R, "$3\r\nabcd\r\n");
    check_bad(R, "$x\r\n");
    check_bad(R, "$-2\r\n");
    check_bad(R, "\r\n");
    check_bad(R, "$99999999\r\n");
    check_bad(R, "+OK\n");
}

/* ---- sealed entries --------------------------------------------------------------------- */

TEST(seal_and_open)
{
    tl_ticket_ring *ring = tl_ticket_ring_new(3);
    tli_sealer *s = tli_sealer_new();
    REQUIRE(ring && s);
    uint8_t id[32], der[300];
    REQUIRE(RAND_bytes(id, sizeof id) == 1 && RAND_bytes(der, sizeof der) == 1);
    uint8_t *e, *back;
    size_t elen, blen;
    REQUIRE(tli_seal(s, ring, id, sizeof id, der, sizeof der, &e, &elen) == 0);
    CHECK_EQ_INT(elen, sizeof der + TLI_SEAL_OVERHEAD);
    CHECK(memmem(e, elen, der, 16) == NULL);   /* not in clear */
    uint8_t name[16];
    tl_ticket_ring_current_name(ring, name);
    CHECK(memcmp(e + 3, name, 16) == 0);       /* the key's name travels */
    REQUIRE(tli_open(s, ring, id, sizeof id, e, elen, &back, &blen) == 0);
    CHECK(blen == sizeof der && memcmp(back, der, blen) == 0);
    free(back);
    /* Another sealer (another worker, another process with the same keys) opens it too. */
    tli_sealer *s2 = tli_sealer_new();
    REQUIRE(tli_open(s2, ring, id, sizeof id, e, elen, &back, &blen) == 0);
    free(back);
    /* Two seals of the same session differ (random nonce). */
    uint8_t *e2;
    size_t e2len;
    REQUIRE(tli_seal(s, ring, id, sizeof id, der, sizeof der, &e2, &e2len) == 0);
    CHECK(memcmp(e, e2, elen) != 0);
    free(e2);
    /* Every byte flipped: refused. */
    for (size_t i = 0; i < elen; i++) {
        e[i] ^= 0x40;
        int rc = tli_open(s, ring, id, sizeof id, e, elen, &back, &blen);
        if (rc == 0) {
            fprintf(stderr, "  byte %zu flipped and still opened\n", i);
            free(back);
        }
        CHECK(rc != 0);
        e[i] ^= 0x40;
    }
    /* Under another session ID, cut short, or too short to be an entry: refused. */
    uint8_t other[32];
    memcpy(other, id, sizeof other);
    other[0] ^= 1;
    CHECK(tli_open(s, ring, other, sizeof other, e, elen, &back, &blen) != 0);
    CHECK(tli_open(s, ring, id, 31, e, elen, &back, &blen) != 0);
    CHECK(tli_open(s, ring, id, sizeof id, e, elen - 1, &back, &blen) != 0);
    CHECK(tli_open(s, ring, id, sizeof id, e, TLI_SEAL_OVERHEAD, &back, &blen) != 0);
    /* Rotation: the old key still opens it while in the ring (rotate keeps 3 keys) ... */
    REQUIRE(tl_ticket_ring_rotate(ring) == 0);
    REQUIRE(tli_open(s, ring, id, sizeof id, e, elen, &back, &blen) == 0);
    free(back);
    /* ... and new entries take the new key. */
    REQUIRE(tli_seal(s, ring, id, sizeof id, der, sizeof der, &e2, &e2len) == 0);
    CHECK(memcmp(e2 + 3, name, 16) != 0);
    free(e2);
    /* Once the key is out of the ring, not even a sealer that cached it opens it. */
    REQUIRE(tl_ticket_ring_rotate(ring) == 0 && tl_ticket_ring_rotate(ring) == 0);
    CHECK(!tl_ticket_ring_has(ring, name));
    CHECK(tli_open(s, ring, id, sizeof id, e, elen, &back, &blen) != 0);
    CHECK(tli_open(s2, ring, id, sizeof id, e, elen, &back, &blen) != 0);
    /* A ring of other keys (another deployment): refused. */
    tl_ticket_ring *stranger = tl_ticket_ring_new(1);
    tli_sealer *s3 = tli_sealer_new();
    REQUIRE(tli_seal(s3, stranger, id, sizeof id, der, sizeof der, &e2, &e2len) == 0);
    CHECK(tli_open(s, ring, id, sizeof id, e2, e2len, &back, &blen) != 0);
    free(e2);
    free(e);
    tli_sealer_free(s);
    tli_sealer_free(s2);
    tli_sealer_free(s3);
    tl_ticket_ring_free(ring);
    tl_ticket_ring_free(stranger);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(store_urls);
    RUN(requests);
    RUN(memcached_replies);
    RUN(redis_replies);
    RUN(seal_and_open);
    TEST_MAIN_END();
}
