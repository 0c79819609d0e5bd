/* test_buf.c - tl_buf: append, consume, take, compaction in reserve, release. */
#include <stdint.h>
#include <string.h>

#include <tlsloop/buf.h>

#include "test.h"

TEST(empty)
{
    tl_buf b = TL_BUF_INIT;
    CHECK_EQ_INT(tl_buf_len(&b), 0);
    CHECK(tl_buf_rptr(&b) == NULL);
    uint8_t x;
    CHECK_EQ_INT(tl_buf_take(&b, &x, 1), 0);
    CHECK_EQ_INT(tl_buf_append(&b, "", 0), 0);
    CHECK(b.data == NULL);
    tl_buf_release(&b);
    tl_buf_free(&b);
    tl_buf_free(&b); /* twice is fine */
    CHECK(b.data == NULL);
}

TEST(append_take)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "hello ", 6) == 0);
    REQUIRE(tl_buf_append(&b, "world", 5) == 0);
    CHECK_EQ_INT(tl_buf_len(&b), 11);
    CHECK(memcmp(tl_buf_rptr(&b), "hello world", 11) == 0);

    char out[16] = {0};
    CHECK_EQ_INT(tl_buf_take(&b, out, 5), 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK_EQ_INT(tl_buf_len(&b), 6);
    /* asking for more than is readable copies what there is */
    memset(out, 0, sizeof out);
    CHECK_EQ_INT(tl_buf_take(&b, out, sizeof out), 6);
    CHECK_STR(out, " world");
    CHECK_EQ_INT(tl_buf_len(&b), 0);
    /* everything read: both cursors back at the start */
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 0);
    tl_buf_free(&b);
}

TEST(consume)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "abcdef", 6) == 0);
    tl_buf_consume(&b, 2);
    CHECK_EQ_INT(tl_buf_len(&b), 4);
    CHECK(memcmp(tl_buf_rptr(&b), "cdef", 4) == 0);
    tl_buf_consume(&b, 0);
    CHECK_EQ_INT(tl_buf_len(&b), 4);
    tl_buf_consume(&b, 4);
    CHECK_EQ_INT(tl_buf_len(&b), 0);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 0);
    CHECK(b.data != NULL); /* consume keeps the block; release gives it back */
    tl_buf_free(&b);
}

TEST(grow_keeps_bytes)
{
    tl_buf b = TL_BUF_INIT;
    uint8_t chunk[1000];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 100; i++)
        REQUIRE(tl_buf_append(&b, chunk, sizeof chunk) == 0);
    CHECK_EQ_INT(tl_buf_len(&b), 100 * sizeof chunk);
    CHECK(b.cap >= tl_buf_len(&b));
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= memcmp(tl_buf_rptr(&b) + (size_t)i * sizeof chunk, chunk, sizeof chunk) == 0;
    CHECK(same);
    tl_buf_free(&b);
}

TEST(reserve_compacts)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_reserve(&b, 100) == 0);
    size_t cap = b.cap;
    REQUIRE(cap >= 100);
    uint8_t *block = b.data;

    /* fill up, then read most of it: the free space is now in front of rpos */
    uint8_t fill[4096];
    memset(fill, 'x', sizeof fill);
    REQUIRE(cap <= sizeof fill);
    REQUIRE(tl_buf_append(&b, fill, cap - 10) == 0);
    tl_buf_consume(&b, 10);
    size_t left = tl_buf_len(&b);
    REQUIRE(left == cap - 20);
    tl_buf_consume(&b, left - 16); /* 16 readable bytes at the end of the block */
    memcpy(b.data + b.rpos, "0123456789abcdef", 16);

    /* room for 100 more is there once the 16 readable bytes move to the front: no new block */
    REQUIRE(tl_buf_reserve(&b, 100) == 0);
    CHECK(b.data == block);
    CHECK_EQ_INT(b.cap, cap);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 16);
    CHECK(memcmp(tl_buf_rptr(&b), "0123456789abcdef", 16) == 0);

    /* more than the block holds: it grows, keeping the readable bytes */
    REQUIRE(tl_buf_reserve(&b, cap * 3) == 0);
    CHECK(b.cap - b.wpos >= cap * 3);
    CHECK_EQ_INT(tl_buf_len(&b), 16);
    CHECK(memcmp(tl_buf_rptr(&b), "0123456789abcdef", 16) == 0);
    tl_buf_free(&b);
}

TEST(reserve_enough_is_noop)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "abc", 3) == 0);
    uint8_t *block = b.data;
    size_t cap = b.cap;
    tl_buf_consume(&b, 1);
    REQUIRE(tl_buf_reserve(&b, 1) == 0);
    CHECK(b.data == block);
    CHECK_EQ_INT(b.cap, cap);
    CHECK_EQ_INT(b.rpos, 1); /* nothing moved: the room was already after wpos */
    tl_buf_free(&b);
}

TEST(reserve_too_large_fails)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "abc", 3) == 0);
    uint8_t *block = b.data;
    CHECK_EQ_INT(tl_buf_reserve(&b, SIZE_MAX - 1), -1);
    CHECK(tl_buf_append(&b, "x", SIZE_MAX / 2 + 1) == -1);
    /* unchanged */
    CHECK(b.data == block);
    CHECK_EQ_INT(tl_buf_len(&b), 3);
    CHECK(memcmp(tl_buf_rptr(&b), "abc", 3) == 0);
    tl_buf_free(&b);
}

TEST(release)
{
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "abc", 3) == 0);
    /* readable bytes: release keeps them */
    tl_buf_release(&b);
    CHECK(b.data != NULL);
    CHECK_EQ_INT(tl_buf_len(&b), 3);
    /* drained: release frees the block, the buffer is usable again */
    tl_buf_consume(&b, 3);
    tl_buf_release(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.cap, 0);
    REQUIRE(tl_buf_append(&b, "z", 1) == 0);
    CHECK_EQ_INT(tl_buf_len(&b), 1);
    CHECK(*tl_buf_rptr(&b) == 'z');
    tl_buf_free(&b);
}

TEST(one_byte_steps)
{
    /* a byte in, a byte out, many times: the bytes stay in order and the block stays small */
    tl_buf b = TL_BUF_INIT;
    REQUIRE(tl_buf_append(&b, "\xff", 1) == 0);
    int ok = 1;
    for (int i = 0; i < 10000; i++) {
        uint8_t in = (uint8_t)i, out = 0;
        REQUIRE(tl_buf_append(&b, &in, 1) == 0);
        ok &= tl_buf_take(&b, &out, 1) == 1 && out == (uint8_t)(i - 1);
    }
    CHECK(ok);
    CHECK_EQ_INT(tl_buf_len(&b), 1);
    CHECK(b.cap <= 4096);
    tl_buf_free(&b);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(empty);
    RUN(append_take);
    RUN(consume);
    RUN(grow_keeps_bytes);
    RUN(reserve_compacts);
    RUN(reserve_enough_is_noop);
    RUN(reserve_too_large_fails);
    RUN(release);
    RUN(one_byte_steps);
    TEST_MAIN_END();
}
