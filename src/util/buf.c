/* buf.c - the byte buffer with read/write cursors (see tlsloop/buf.h). */
#include <stdlib.h>
#include <string.h>

#include <tlsloop/buf.h>

#define BUF_MIN_ALLOC 512

int tl_buf_reserve(tl_buf *b, size_t n)
{
    size_t len = tl_buf_len(b);
    if (b->cap - b->wpos >= n)
        return 0;
    /* Compact first: readable bytes move to the front, which is often room enough. */
    if (b->rpos > 0 && b->cap - len >= n) {
        memmove(b->data, b->data + b->rpos, len);
        b->rpos = 0;
        b->wpos = len;
        return 0;
    }
    if (n > SIZE_MAX / 2 - len)
        return -1;
    size_t want = len + n;
    size_t cap = b->cap ? b->cap : BUF_MIN_ALLOC;
    while (cap < want)
        cap *= 2;
    uint8_t *p = malloc(cap);
    if (!p)
        return -1;
    if (len)
        memcpy(p, b->data + b->rpos, len);
    free(b->data);
    b->data = p;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = len;
    return 0;
}

int tl_buf_append(tl_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (tl_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->wpos, p, n);
    b->wpos += n;
    return 0;
}

void tl_buf_consume(tl_buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos >= b->wpos)
        b->rpos = b->wpos = 0;
}

size_t tl_buf_take(tl_buf *b, void *dst, size_t n)
{
    size_t len = tl_buf_len(b);
    if (n > len)
        n = len;
    if (n) {
        memcpy(dst, b->data + b->rpos, n);
        tl_buf_consume(b, n);
    }
    return n;
}

void tl_buf_release(tl_buf *b)
{
    if (tl_buf_len(b) == 0)
        tl_buf_free(b);
}

void tl_buf_free(tl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
}
