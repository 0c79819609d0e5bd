/*
 * tlsloop/buf.h - the one byte buffer of the library: a heap block with a read and a write cursor.
 *
 *      data            rpos              wpos               cap
 *       |  consumed     |   readable      |   writable       |
 *
 * Bytes are appended at wpos and taken from rpos. When everything is read, both cursors go back to
 * zero; before growing, readable bytes are moved to the front. A buffer owns its block; an empty
 * buffer may hold no memory at all (tl_buf_release gives it back), which is how idle connections
 * stay small.
 *
 * Ownership: the struct is the caller's (embed it anywhere); tl_buf_free releases the block.
 * Thread-safety: none; a buffer belongs to one thread at a time.
 * Errors: only growth can fail (out of memory, or past the buffer's limit): those calls return -1
 * and leave the buffer unchanged.
 */
#ifndef TLSLOOP_BUF_H
#define TLSLOOP_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_buf {
    uint8_t *data;
    size_t rpos;  /* first readable byte */
    size_t wpos;  /* one past the last readable byte */
    size_t cap;   /* bytes allocated at data */
} tl_buf;

#define TL_BUF_INIT {NULL, 0, 0, 0}

/* Readable bytes. */
static inline size_t tl_buf_len(const tl_buf *b) { return b->wpos - b->rpos; }
/* Pointer to the first readable byte (NULL when the buffer holds no memory). */
static inline uint8_t *tl_buf_rptr(const tl_buf *b) { return b->data ? b->data + b->rpos : NULL; }

/* Make room for at least n more bytes after wpos. Returns 0, or -1 when memory is exhausted. */
TL_API int tl_buf_reserve(tl_buf *b, size_t n);
/* Append n bytes. Returns 0, or -1 when memory is exhausted (nothing appended). */
TL_API int tl_buf_append(tl_buf *b, const void *p, size_t n);
/* Mark n readable bytes as consumed (n <= tl_buf_len). */
TL_API void tl_buf_consume(tl_buf *b, size_t n);
/* Copy up to n readable bytes to dst and consume them. Returns the number copied. */
TL_API size_t tl_buf_take(tl_buf *b, void *dst, size_t n);
/* Free the block if nothing is readable (idle buffers hold no memory). */
TL_API void tl_buf_release(tl_buf *b);
/* Free the block and reset the buffer to empty. */
TL_API void tl_buf_free(tl_buf *b);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_BUF_H */
