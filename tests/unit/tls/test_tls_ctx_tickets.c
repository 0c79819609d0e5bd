/*
 * test_tls_ctx_tickets.c - session and ticket settings of a configuration (tlsloop/tls_ctx.h): the
 * setters and their effect, a ticket ring shared by configurations, the ring's API, and ticket key
 * files (tl_ticket_ring_load_file); resumption itself is test_engine_resume.c's.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "support/tls_pair.h"
#include "support/vhosts.h"
#include "test.h"

/* ---- sessions and tickets ---------------------------------------------------------------- */

TEST(session_setters)
{
    tl_tls_ctx *s = tl_tls_ctx_new(TL_ROLE_SERVER);
    CHECK_FAIL(s, tl_tls_ctx_set_num_tickets(s, 17), TL_ERR_USAGE, "17");
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 16));
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 0));
    CHECK_FAIL(s, tl_tls_ctx_set_session_cache(s, 100, 0), TL_ERR_USAGE, "out of range");
    CHECK_FAIL(s, tl_tls_ctx_set_session_cache(s, 100, 7 * 24 * 3600 + 1), TL_ERR_USAGE,
               "out of range");
    CHECK_OK(s, tl_tls_ctx_set_session_cache(s, 100, 7 * 24 * 3600));
    CHECK_OK(s, tl_tls_ctx_set_session_cache(s, 0, 60));
    uint8_t sid[40];
    memset(sid, 's', sizeof sid);
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, sid, 0), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, sid, 33), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_FAIL(s, tl_tls_ctx_set_session_id_context(s, NULL, 5), TL_ERR_USAGE, "1 to 32 bytes");
    CHECK_OK(s, tl_tls_ctx_set_session_id_context(s, sid, 32));
    CHECK_OK(s, tl_tls_ctx_set_session_id_context(s, "a", 1));
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, false));
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, true));
    CHECK_FAIL(s, tl_tls_ctx_set_ticket_ring(s, NULL), TL_ERR_USAGE, "no ring");

    /* Server-only settings on a client (tickets are both sides'). */
    tl_tls_ctx *c = tl_tls_ctx_new(TL_ROLE_CLIENT);
    tl_ticket_ring *ring = tl_ticket_ring_new(2);
    REQUIRE(ring);
    CHECK_OK(c, tl_tls_ctx_set_tickets(c, false));
    CHECK_OK(c, tl_tls_ctx_set_tickets(c, true));
    CHECK_FAIL(c, tl_tls_ctx_set_num_tickets(c, 1), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_session_cache(c, 10, 60), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_session_id_context(c, "x", 1), TL_ERR_USAGE, "only a server");
    CHECK_FAIL(c, tl_tls_ctx_set_ticket_ring(c, ring), TL_ERR_USAGE, "only a server");
    CHECK(tl_tls_ctx_ticket_ring(c) == NULL);
    /* Client-only: optional verification is the server's (the client side of it is refused). */
    CHECK_FAIL(c, tl_tls_ctx_set_verify(c, TL_VERIFY_OPTIONAL), TL_ERR_USAGE, "servers");
    CHECK_OK(s, tl_tls_ctx_set_verify(s, TL_VERIFY_OPTIONAL));
    tl_ticket_ring_free(ring);
    tp_free_ctxs(s, c);
}

/* Tickets issued by a server for one full handshake of the given version. */
static uint64_t tickets_issued(tl_tls_ctx *s)
{
    tl_tls_ctx *c = tp_client_ctx(0, 0);
    tl_ticket_stats before, after;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &before);
    tp_pair p;
    tp_pair_named(&p, c, s, "localhost");
    TP_SHAKE_OK(&p);
    tp_send(&p.s, &p.c, "x", 1, 10); /* the client reads past the tickets */
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(s), &after);
    tp_pair_free(&p);
    tl_tls_ctx_free(c);
    return after.issued - before.issued;
}

TEST(ticket_setters_take_effect)
{
    tl_tls_ctx *s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_EQ_INT(tickets_issued(s), 2); /* the default */
    tl_tls_ctx_free(s);

    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 3));
    CHECK_EQ_INT(tl_tls_ctx_set_num_tickets(s, 17), -1); /* keeps 3 */
    CHECK_EQ_INT(tickets_issued(s), 3);
    tl_tls_ctx_free(s);

    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_num_tickets(s, 0));
    CHECK_EQ_INT(tickets_issued(s), 0);
    tl_tls_ctx_free(s);

    /* Tickets off: TLS 1.3 tickets are stateful (from the cache), none from the ring. */
    s = tp_server_ctx(&tp.ecdsa, 0, 0);
    CHECK_OK(s, tl_tls_ctx_set_tickets(s, false));
    CHECK_EQ_INT(tickets_issued(s), 0);
    tl_tls_ctx_free(s);

    /* TLS 1.2: one ticket per full handshake, from the ring. */
    s = tp_server_ctx(&tp.ecdsa, TL_TLS1_2, TL_TLS1_2);
    CHECK_EQ_INT(tickets_issued(s), 1);
    tl_tls_ctx_free(s);
}

TEST(shared_ticket_ring)
{
    tl_ticket_ring *ring = tl_ticket_ring_new(3);
    REQUIRE(ring);
    tl_tls_ctx *a = tp_server_ctx(&tp.ecdsa, 0, 0), *b = tp_server_ctx(&tp.rsa, 0, 0);
    tl_ticket_ring *own = tl_tls_ctx_ticket_ring(a);
    CHECK(own != NULL && own != ring);
    CHECK_OK(a, tl_tls_ctx_set_ticket_ring(a, ring));
    CHECK_OK(b, tl_tls_ctx_set_ticket_ring(b, ring));
    CHECK(tl_tls_ctx_ticket_ring(a) == ring);
    CHECK(tl_tls_ctx_ticket_ring(b) == ring);
    tl_ticket_ring_free(ring); /* the configurations hold it now */
    CHECK_EQ_INT(tickets_issued(a), 2);
    CHECK_EQ_INT(tickets_issued(b), 2);
    tl_ticket_stats st;
    tl_ticket_ring_stats(tl_tls_ctx_ticket_ring(b), &st);
    CHECK_EQ_INT(st.issued, 4); /* both served from the one ring */
    tl_tls_ctx_free(a);
    CHECK_EQ_INT(tl_ticket_ring_count(tl_tls_ctx_ticket_ring(b)), 1); /* still alive */
    tl_tls_ctx_free(b);
}

TEST(ticket_ring_api)
{
    CHECK(tl_ticket_ring_new(0) == NULL);
    CHECK(tl_ticket_ring_new(65) == NULL);
    tl_ticket_ring *big = tl_ticket_ring_new(64);
    CHECK(big != NULL);
    tl_ticket_ring_free(big);

    tl_ticket_ring *r = tl_ticket_ring_new(3);
    REQUIRE(r);
    tl_ticket_stats st;
    memset(&st, 0xff, sizeof st);
    tl_ticket_ring_stats(r, &st);
    CHECK_EQ_INT(st.issued, 0);
    CHECK_EQ_INT(st.decrypted_current, 0);
    CHECK_EQ_INT(st.decrypted_old, 0);
    CHECK_EQ_INT(st.unknown_key, 0);

    uint8_t names[6][16];
    CHECK_EQ_INT(tl_ticket_ring_count(r), 1);
    tl_ticket_ring_current_name(r, names[0]);
    for (int i = 1; i < 6; i++) {
        CHECK_EQ_INT(tl_ticket_ring_rotate(r), 0);
        CHECK_EQ_INT(tl_ticket_ring_count(r), i + 1 < 3 ? i + 1 : 3);
        tl_ticket_ring_current_name(r, names[i]);
        CHECK(memcmp(names[i], names[i - 1], 16) != 0);
    }

    /* Adding: a name already in the ring (the current one, or an older one) is refused. */
    uint8_t key[TL_TICKET_KEY_LEN];
    memset(key, 0x5a, sizeof key);
    memcpy(key, names[5], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1);
    memcpy(key, names[3], 16); /* the oldest still kept */
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1);
    uint8_t cur[16];
    tl_ticket_ring_current_name(r, cur);
    CHECK(memcmp(cur, names[5], 16) == 0); /* unchanged by the refusals */
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);

    /* A name that was rotated out can come back; an added key becomes the current one. */
    memcpy(key, names[0], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), 0);
    tl_ticket_ring_current_name(r, cur);
    CHECK(memcmp(cur, names[0], 16) == 0);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), -1); /* and now it is a duplicate */

    /* Another reference keeps it alive. */
    CHECK(tl_ticket_ring_ref(r) == r);
    tl_ticket_ring_free(r);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 3);
    tl_ticket_ring_free(r);
    tl_ticket_ring_free(NULL);

    /* Capacity 1: rotation replaces the only key. */
    r = tl_ticket_ring_new(1);
    REQUIRE(r);
    tl_ticket_ring_current_name(r, names[0]);
    CHECK_EQ_INT(tl_ticket_ring_rotate(r), 0);
    CHECK_EQ_INT(tl_ticket_ring_count(r), 1);
    tl_ticket_ring_current_name(r, names[1]);
    CHECK(memcmp(names[0], names[1], 16) != 0);
    memcpy(key, names[0], 16);
    CHECK_EQ_INT(tl_ticket_ring_add(r, key), 0); /* the old one is gone, so not a duplicate */
    tl_ticket_ring_free(r);
}

/* ---- ticket key files --------------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tlsloop-sni-XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", tmpdir);
}

/* Write a file in the test directory with this mode; returns its path (static per slot). */
static const char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    static char paths[8][128];
    static int slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 128, "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(len == 0 || write(fd, data, len) == (ssize_t)len);
    REQUIRE(fchmod(fd, mode) == 0);
    close(fd);
    return path;
}

/* A server for a.test-less tests (the default, tp.ecdsa) using the ring of this key file. */
static tl_tls_ctx *server_with_key_file(const char *path, int version)
{
    char err[256];
    tl_ticket_ring *ring = tl_ticket_ring_load_file(path, err, sizeof err);
    if (!ring) {
        fprintf(stderr, "  %s\n", err);
        _exit(1);
    }
    tl_tls_ctx *s = vh_server(&tp.ecdsa, version, version);
    REQUIRE(tl_tls_ctx_set_ticket_ring(s, ring) == 0);
    tl_ticket_ring_free(ring);
    return s;
}

TEST(ticket_file_shared_by_two_servers)
{
    make_tmpdir();
    uint8_t keys[3 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(keys, sizeof keys) == 1);
    const char *path = write_file("three.key", keys, sizeof keys, 0600);
    char err[256] = "unchanged";
    tl_ticket_ring *ring = tl_ticket_ring_load_file(path, err, sizeof err);
    REQUIRE(ring);
    CHECK_STR(err, "unchanged"); /* no message on success */
    CHECK_EQ_INT(tl_ticket_ring_count(ring), 3);
    uint8_t name[16];
    tl_ticket_ring_current_name(ring, name);
    CHECK(memcmp(name, keys, 16) == 0); /* the first key encrypts */
    tl_ticket_ring_free(ring);

    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s1 = server_with_key_file(path, version);
        tl_tls_ctx *s2 = server_with_key_file(path, version), *c = tp_client_ctx(0, 0);
        CHECK(tl_tls_ctx_ticket_ring(s1) != tl_tls_ctx_ticket_ring(s2));
        vh_outcome o = VH_RUN_OK(c, s1, "localhost", NULL, 0);
        REQUIRE(o.session);
        vh_outcome r = VH_RUN_OK(c, s2, "localhost", o.session, 0);
        CHECK(r.resumed);
        CHECK_EQ_INT(vh_ring_stat(s2, 1), 1); /* opened with the current key */
        /* And back: s2's ticket resumes on s1. */
        REQUIRE(r.session);
        vh_outcome back = VH_RUN_OK(c, s1, "localhost", r.session, 0);
        CHECK(back.resumed);
        tl_session_free(back.session);
        tl_session_free(r.session);
        tl_session_free(o.session);
        tl_tls_ctx_free(c);
        tl_tls_ctx_free(s1);
        tl_tls_ctx_free(s2);
    }
    remove_tmpdir();
}

/* Rotation by files: [old], then [new, old], then [new]. A ticket under the old key opens with
 * the second file and is renewed under the new key, which the third file alone still opens. */
TEST(ticket_file_rotation)
{
    make_tmpdir();
    uint8_t old_key[TL_TICKET_KEY_LEN], both[2 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(both, sizeof both) == 1);
    memcpy(old_key, both + TL_TICKET_KEY_LEN, TL_TICKET_KEY_LEN);
    const char *f_old = write_file("old.key", old_key, sizeof old_key, 0600);
    const char *f_both = write_file("both.key", both, sizeof both, 0600);
    const char *f_new = write_file("new.key", both, TL_TICKET_KEY_LEN, 0400);
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s1 = server_with_key_file(f_old, version);
        tl_tls_ctx *s2 = server_with_key_file(f_both, version);
        tl_tls_ctx *s3 = server_with_key_file(f_new, version), *c = tp_client_ctx(0, 0);
        uint8_t name[16];
        tl_ticket_ring_current_name(tl_tls_ctx_ticket_ring(s2), name);
        CHECK(memcmp(name, both, 16) == 0);
        vh_outcome o = VH_RUN_OK(c, s1, "localhost", NULL, 0);
        REQUIRE(o.session);
        vh_outcome r = VH_RUN_OK(c, s2, "localhost", o.session, 0);
        CHECK(r.resumed);
        CHECK_EQ_INT(vh_ring_stat(s2, 2), 1); /* opened with an older key */
        CHECK(vh_ring_stat(s2, 0) >= 1);      /* and renewed */
        REQUIRE(r.session);
        vh_outcome n = VH_RUN_OK(c, s3, "localhost", r.session, 0);
        CHECK(n.resumed);
        CHECK_EQ_INT(vh_ring_stat(s3, 1), 1);
        vh_outcome gone = VH_RUN_OK(c, s3, "localhost", o.session, 0); /* the old key is gone */
        CHECK(!gone.resumed);
        CHECK_EQ_INT(vh_ring_stat(s3, 3), 1);
        vh_outcome *all[] = {&o, &r, &n, &gone};
        for (int i = 0; i < 4; i++)
            tl_session_free(all[i]->session);
        tl_tls_ctx_free(s1);
        tl_tls_ctx_free(s2);
        tl_tls_ctx_free(s3);
        tl_tls_ctx_free(c);
    }
    remove_tmpdir();
}

/* load_file must fail with a message naming the path and containing `sub`. */
static void check_refused(const char *path, const char *sub)
{
    char err[512] = "";
    tl_ticket_ring *r = tl_ticket_ring_load_file(path, err, sizeof err);
    CHECK(r == NULL);
    tl_ticket_ring_free(r);
    CHECK_HAS(err, path);
    CHECK_HAS(err, sub);
}

TEST(ticket_file_refusals)
{
    make_tmpdir();
    uint8_t keys[65 * TL_TICKET_KEY_LEN];
    REQUIRE(RAND_bytes(keys, sizeof keys) == 1);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.key", tmpdir);
    check_refused(missing, "cannot open");
    check_refused(missing, "No such file");
    check_refused(tmpdir, "not a regular file");
    check_refused(write_file("empty.key", keys, 0, 0600), "empty");
    check_refused(write_file("empty.key", keys, 0, 0600), "tlsloop ticket-keys new");
    check_refused(write_file("short.key", keys, 79, 0600), "79 bytes is neither a key file");
    check_refused(write_file("long.key", keys, 161, 0600), "161 bytes");
    check_refused(write_file("many.key", keys, sizeof keys, 0600), "65 keys, at most 64");
    const char *max = write_file("max.key", keys, 64 * TL_TICKET_KEY_LEN, 0600);
    tl_ticket_ring *r = tl_ticket_ring_load_file(max, NULL, 0);
    CHECK(r && tl_ticket_ring_count(r) == 64);
    tl_ticket_ring_free(r);
    /* Two keys with one name (keys 1 and 3 of 3). */
    memcpy(keys + 2 * TL_TICKET_KEY_LEN, keys, 16);
    check_refused(write_file("dup.key", keys, 3 * TL_TICKET_KEY_LEN, 0600), "keys 1 and 3");
    /* Open to anyone but the owner (group bits too): refused, with the fix. */
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0644), "chmod 600");
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0604), "mode 604");
    check_refused(write_file("world.key", keys, TL_TICKET_KEY_LEN, 0602), "open to other users");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0640), "open to its group");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0620), "chmod 600");
    check_refused(write_file("group.key", keys, TL_TICKET_KEY_LEN, 0610), "mode 610");
    r = tl_ticket_ring_load_file(write_file("own.key", keys, TL_TICKET_KEY_LEN, 0400), NULL, 0);
    CHECK(r != NULL);
    tl_ticket_ring_free(r);
    /* Another user's file: refused, with the fix (only root can make one here). */
    if (geteuid() == 0) {
        const char *theirs = write_file("theirs.key", keys, TL_TICKET_KEY_LEN, 0600);
        REQUIRE(chown(theirs, 65534, 65534) == 0);
        check_refused(theirs, "belongs to uid 65534");
        check_refused(theirs, "chown 0 ");
    }
    /* Unreadable (root reads anything, so only as another user). */
    if (geteuid() != 0)
        check_refused(write_file("noread.key", keys, TL_TICKET_KEY_LEN, 0200), "Permission denied");
    /* Without a buffer for the message, or without a path. */
    CHECK(tl_ticket_ring_load_file(missing, NULL, 0) == NULL);
    char err[64];
    CHECK(tl_ticket_ring_load_file(NULL, err, sizeof err) == NULL);
    CHECK_HAS(err, "no path");
    /* A message longer than the buffer is cut, still terminated. */
    char tiny[8];
    CHECK(tl_ticket_ring_load_file(missing, tiny, sizeof tiny) == NULL);
    CHECK_EQ_INT(strlen(tiny), 7);
    remove_tmpdir();
}

/* ---- the text format, next keys, rotation (tl_ticket_keys_*) ---------------------------- */

static const char *write_keys(const char *name, const tl_ticket_key_entry *k, size_t n)
{
    char text[4096];
    size_t len = tl_ticket_keys_format(k, n, text, sizeof text);
    REQUIRE(len > 0);
    return write_file(name, text, len, 0600);
}

TEST(ticket_keys_text_format)
{
    tl_ticket_key_entry k[4], back[8];
    REQUIRE(tl_ticket_keys_make(&k[0], TL_TICKET_KEY_PREVIOUS, 100) == 0);
    REQUIRE(tl_ticket_keys_make(&k[1], TL_TICKET_KEY_CURRENT, 200) == 0);
    REQUIRE(tl_ticket_keys_make(&k[2], TL_TICKET_KEY_NEXT, 300) == 0);
    char text[4096], err[256];
    size_t len = tl_ticket_keys_format(k, 3, text, sizeof text);
    REQUIRE(len > 0);
    CHECK(tl_ticket_keys_is_text(text, len));
    CHECK(strstr(text, "\nprevious 100 ") && strstr(text, "\ncurrent 200 ") &&
          strstr(text, "\nnext 300 "));
    CHECK_EQ_INT(tl_ticket_keys_format(k, 3, text, 100), 0);   /* too small */
    len = tl_ticket_keys_format(k, 3, text, sizeof text);
    size_t n = 0;
    CHECK_EQ_INT(tl_ticket_keys_parse(text, len, back, 8, &n, err, sizeof err), 0);
    REQUIRE(n == 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(back[i].role, k[i].role);
        CHECK_EQ_INT(back[i].created, k[i].created);
        CHECK(memcmp(back[i].key, k[i].key, TL_TICKET_KEY_LEN) == 0);
    }
    /* Comments, blank lines, CRLF, upper-case hex. */
    char edited[4200];
    memcpy(edited, text, len);
    strcpy(edited + len, "\r\n# a comment\n\n");
    for (char *p = strstr(edited, "current"); p && *p != '\n'; p++)
        if (*p >= 'a' && *p <= 'f' && p > strstr(edited, "current") + 12)
            *p = (char)(*p - 32);
    CHECK_EQ_INT(tl_ticket_keys_parse(edited, strlen(edited), back, 8, &n, err, sizeof err), 0);
    CHECK(n == 3 && memcmp(back[1].key, k[1].key, TL_TICKET_KEY_LEN) == 0);
    /* Refusals, each with its reason. */
    struct { const char *text, *why; } bad[] = {
        {"# tlsloop ticket keys\n", "no current key"},
        {"# tlsloop ticket keys\ncurrent 1 00\n", "has 2 hex digits, not 160"},
        {"# tlsloop ticket keys\nfuture 1 00\n", "is not previous, current or next"},
        {"# tlsloop ticket keys\ncurrent x\n", "expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_EQ_INT(tl_ticket_keys_parse(bad[i].text, strlen(bad[i].text), back, 8, &n, err,
                                          sizeof err), -1);
        CHECK_HAS(err, bad[i].why);
        CHECK_EQ_INT(n, 0);
    }
    tl_ticket_key_entry two[2] = {k[1], k[1]};   /* two current keys, one name */
    len = tl_ticket_keys_format(two, 2, text, sizeof text);
    CHECK_EQ_INT(tl_ticket_keys_parse(text, len, back, 8, &n, err, sizeof err), -1);
    CHECK_HAS(err, "more than one current");
    tl_ticket_key_entry dup[2] = {k[1], k[1]};
    dup[1].role = TL_TICKET_KEY_PREVIOUS;
    len = tl_ticket_keys_format(dup, 2, text, sizeof text);
    CHECK_EQ_INT(tl_ticket_keys_parse(text, len, back, 8, &n, err, sizeof err), -1);
    CHECK_HAS(err, "the same name");
    tl_ticket_key_entry nexts[3] = {k[1], k[2], k[0]};
    nexts[2].role = TL_TICKET_KEY_NEXT;
    len = tl_ticket_keys_format(nexts, 3, text, sizeof text);
    CHECK_EQ_INT(tl_ticket_keys_parse(text, len, back, 8, &n, err, sizeof err), -1);
    CHECK_HAS(err, "more than one next");
    len = tl_ticket_keys_format(k, 3, text, sizeof text);
    CHECK_EQ_INT(tl_ticket_keys_parse(text, len, back, 2, &n, err, sizeof err), -1);
    CHECK_HAS(err, "more than 2 keys");
    /* Binary: the first key current, the others previous. */
    uint8_t bin[2 * TL_TICKET_KEY_LEN];
    memcpy(bin, k[0].key, TL_TICKET_KEY_LEN);
    memcpy(bin + TL_TICKET_KEY_LEN, k[1].key, TL_TICKET_KEY_LEN);
    CHECK_EQ_INT(tl_ticket_keys_parse(bin, sizeof bin, back, 8, &n, err, sizeof err), 0);
    CHECK(n == 2 && back[0].role == TL_TICKET_KEY_CURRENT && back[1].role == TL_TICKET_KEY_PREVIOUS);
    CHECK_STR(tl_ticket_key_role_name(TL_TICKET_KEY_NEXT), "next");
}

static int count_role(const tl_ticket_key_entry *k, size_t n, tl_ticket_key_role role)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += k[i].role == role;
    return c;
}

static int find_key(const tl_ticket_key_entry *k, size_t n, const tl_ticket_key_entry *want)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(k[i].key, want->key, TL_TICKET_KEY_LEN) == 0)
            return (int)i;
    return -1;
}

TEST(ticket_keys_rotate)
{
    tl_ticket_key_entry k[8];
    REQUIRE(tl_ticket_keys_make(&k[0], TL_TICKET_KEY_CURRENT, 1) == 0);
    size_t n = 1;
    /* Without a next key: one is added, the current one stays. */
    tl_ticket_key_entry c0 = k[0];
    n = tl_ticket_keys_rotate(k, n, 8, 2, 10);
    REQUIRE(n == 2);
    CHECK_EQ_INT(k[find_key(k, n, &c0)].role, TL_TICKET_KEY_CURRENT);
    CHECK_EQ_INT(count_role(k, n, TL_TICKET_KEY_NEXT), 1);
    /* Then next -> current, current -> previous, a new next; previous keys beyond 2 drop, the
     * oldest first. */
    tl_ticket_key_entry hist[6];
    for (int r = 0; r < 6; r++) {
        size_t i;
        for (i = 0; k[i].role != TL_TICKET_KEY_NEXT; i++) {}
        tl_ticket_key_entry next = k[i], cur = k[find_key(k, n, &c0)];
        (void)cur;
        hist[r] = c0;
        n = tl_ticket_keys_rotate(k, n, 8, 2, 20 + r);
        REQUIRE(n > 0);
        CHECK_EQ_INT(k[find_key(k, n, &next)].role, TL_TICKET_KEY_CURRENT);
        CHECK_EQ_INT(k[find_key(k, n, &c0)].role, TL_TICKET_KEY_PREVIOUS);
        CHECK_EQ_INT(count_role(k, n, TL_TICKET_KEY_CURRENT), 1);
        CHECK_EQ_INT(count_role(k, n, TL_TICKET_KEY_NEXT), 1);
        CHECK(count_role(k, n, TL_TICKET_KEY_PREVIOUS) == (r < 1 ? 1 : 2));
        if (r >= 2)
            CHECK(find_key(k, n, &hist[r - 2]) < 0);   /* two rotations as previous, then gone */
        c0 = next;
    }
    /* keep 0: no previous key. */
    n = tl_ticket_keys_rotate(k, n, 8, 0, 99);
    CHECK(n == 2 && count_role(k, n, TL_TICKET_KEY_PREVIOUS) == 0);
    /* Room for too few: refused. */
    CHECK_EQ_INT(tl_ticket_keys_rotate(k, n, 2, 2, 100), 0);
}

/* A file [A current, B next] and its rotation [A previous, B current, C next], on two servers
 * at once (the moment between two hosts' copies): tickets of each resume on the other, since B
 * was accepted as next before anyone encrypted with it. Then the running ring of the first
 * takes the second file in place. */
TEST(ticket_next_key_accepted)
{
    make_tmpdir();
    tl_ticket_key_entry k[4];
    REQUIRE(tl_ticket_keys_make(&k[0], TL_TICKET_KEY_CURRENT, 1) == 0);
    REQUIRE(tl_ticket_keys_make(&k[1], TL_TICKET_KEY_NEXT, 2) == 0);
    const char *f1 = write_keys("one.key", k, 2);
    size_t n = tl_ticket_keys_rotate(k, 2, 4, 2, 3);
    REQUIRE(n == 3);
    const char *f2 = write_keys("two.key", k, n);
    for (int v = 0; v < 2; v++) {
        int version = v ? TL_TLS1_2 : TL_TLS1_3;
        tl_tls_ctx *s1 = server_with_key_file(f1, version);
        tl_tls_ctx *s2 = server_with_key_file(f2, version), *c = tp_client_ctx(0, 0);
        uint8_t name[16];
        tl_ticket_ring_current_name(tl_tls_ctx_ticket_ring(s2), name);
        CHECK(memcmp(name, k[find_key(k, n, &k[1])].key, 16) == 0);
        vh_outcome o = VH_RUN_OK(c, s2, "localhost", NULL, 0);   /* under B */
        REQUIRE(o.session);
        vh_outcome r = VH_RUN_OK(c, s1, "localhost", o.session, 0);   /* B is s1's next */
        CHECK(r.resumed);
        REQUIRE(r.session);                                           /* renewed under A */
        vh_outcome back = VH_RUN_OK(c, s2, "localhost", r.session, 0); /* A is s2's previous */
        CHECK(back.resumed);
        /* s1 takes the rotated file in place: B encrypts now. */
        char err[256];
        tl_ticket_ring *ring1 = tl_tls_ctx_ticket_ring(s1);
        CHECK_EQ_INT(tl_ticket_ring_reload_file(ring1, f2, err, sizeof err), 0);
        tl_ticket_ring_current_name(ring1, name);
        CHECK(memcmp(name, k[1].key, 16) == 0);
        CHECK_EQ_INT(tl_ticket_ring_count(ring1), 3);
        /* A refused file leaves the ring as it was. */
        const char *bad = write_file("bad.key", "# tlsloop ticket keys\n", 22, 0600);
        CHECK_EQ_INT(tl_ticket_ring_reload_file(ring1, bad, err, sizeof err), -1);
        CHECK_HAS(err, "no current key");
        CHECK_EQ_INT(tl_ticket_ring_count(ring1), 3);
        vh_outcome *all[] = {&o, &r, &back};
        for (int i = 0; i < 3; i++)
            tl_session_free(all[i]->session);
        tl_tls_ctx_free(s1);
        tl_tls_ctx_free(s2);
        tl_tls_ctx_free(c);
    }
    remove_tmpdir();
}

TEST(ticket_ring_derive)
{
    tl_ticket_ring *r = tl_ticket_ring_new(3);
    REQUIRE(r);
    uint8_t name0[16], name[16], k1[32], k2[32], k3[32];
    tl_ticket_ring_current_name(r, name0);
    CHECK_EQ_INT(tl_ticket_ring_derive(r, NULL, "a", name, k1), 0);
    CHECK(memcmp(name, name0, 16) == 0);
    CHECK_EQ_INT(tl_ticket_ring_derive(r, name0, "a", NULL, k2), 0);
    CHECK(memcmp(k1, k2, 32) == 0);                       /* the same key by name */
    CHECK_EQ_INT(tl_ticket_ring_derive(r, name0, "b", NULL, k3), 0);
    CHECK(memcmp(k1, k3, 32) != 0);                       /* a label of its own */
    REQUIRE(tl_ticket_ring_rotate(r) == 0);
    CHECK_EQ_INT(tl_ticket_ring_derive(r, NULL, "a", name, k3), 0);
    CHECK(memcmp(name, name0, 16) != 0 && memcmp(k3, k1, 32) != 0);
    CHECK_EQ_INT(tl_ticket_ring_derive(r, name0, "a", NULL, k2), 0);   /* still there */
    CHECK(memcmp(k1, k2, 32) == 0);
    memset(name, 0xee, 16);
    CHECK_EQ_INT(tl_ticket_ring_derive(r, name, "a", NULL, k2), -1);
    tl_ticket_ring_free(r);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(session_setters);
    RUN(ticket_setters_take_effect);
    RUN(shared_ticket_ring);
    RUN(ticket_ring_api);
    RUN(ticket_file_shared_by_two_servers);
    RUN(ticket_file_rotation);
    RUN(ticket_file_refusals);
    RUN(ticket_keys_text_format);
    RUN(ticket_keys_rotate);
    RUN(ticket_next_key_accepted);
    RUN(ticket_ring_derive);
    TEST_MAIN_END();
}
