/* engine_bio.c - the engine's BIO, OpenSSL's only way in and out: the caller's buffers (buffer
 * mode) or its recv/send (transport mode), straight to and from OpenSSL's record buffers
 * (docs/design.md, decisions 1, 2 and 4). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "tls/engine_int.h"

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* Follow the TLS record framing of bytes handed to OpenSSL. */
static void track_records(tl_engine *e, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (e->rec_body_left > 0) {
            size_t k = n < e->rec_body_left ? n : e->rec_body_left;
            e->rec_body_left -= k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = 5 - e->rec_hdr_have;
        if (k > n)
            k = n;
        memcpy(e->rec_hdr + e->rec_hdr_have, p, k);
        e->rec_hdr_have += (unsigned)k;
        p += k;
        n -= k;
        if (e->rec_hdr_have == 5) {
            e->rec_body_left = ((size_t)e->rec_hdr[3] << 8) | e->rec_hdr[4];
            e->rec_hdr_have = 0;
        }
    }
}

/* Input has ended. Between two records: "retry", and the engine reports TL_TRUNCATED itself, so
 * OpenSSL never takes its fatal unexpected-EOF path (which would also drop the session). */
static int at_eof(BIO *b, tl_engine *e)
{
    if (tli_engine_at_record_boundary(e)) {
        e->eof_at_boundary = true;
        BIO_set_retry_read(b);
        return -1;
    }
    return 0; /* inside a record: a real, fatal EOF */
}

static int bio_read(BIO *b, char *buf, int len)
{
    tl_engine *e = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (e->st.in_task) {
        /* A delegated task works on input OpenSSL already holds; it never reads the transport. */
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n;
    if (e->has_tp) {
        if (e->input_eof)
            return at_eof(b, e);
        ssize_t r = e->tp.recv(e->tp.arg, buf, (size_t)len);
        if (r == 0) {
            e->input_eof = true;
            return at_eof(b, e);
        }
        if (r == TL_IO_AGAIN) {
            BIO_set_retry_read(b);
            return -1;
        }
        if (r < 0) {
            e->io_error = true;
            return -1;
        }
        n = (size_t)r;
    } else {
        size_t avail = e->in ? e->in_len - e->in_pos : 0;
        if (avail == 0) {
            if (e->input_eof)
                return at_eof(b, e);
            BIO_set_retry_read(b);
            return -1;
        }
        n = avail < (size_t)len ? avail : (size_t)len;
        memcpy(buf, e->in + e->in_pos, n);
        e->in_pos += n;
    }
    track_records(e, (const uint8_t *)buf, n);
    e->bytes_in += n;
    return (int)n;
}

/* The gather buffer of this thread (tli_engine_gather_*): records of one write, sent at once.
 * Made on a thread's first large write, freed when the thread ends (the key's destructor). */
typedef struct gather_buf {
    size_t len;
    uint8_t data[TLI_GATHER_MAX];
} gather_buf;
static __thread gather_buf *gather;
static pthread_key_t gather_key;
static pthread_once_t gather_once = PTHREAD_ONCE_INIT;

static void make_gather_key(void)
{
    pthread_key_create(&gather_key, free);
}

bool tli_engine_gather_room(void)
{
    if (!gather) {
        pthread_once(&gather_once, make_gather_key);
        if (!(gather = calloc(1, sizeof *gather)))
            return false;   /* no memory: records go out one by one, as without gathering */
        pthread_setspecific(gather_key, gather);
    }
    return TLI_GATHER_MAX - gather->len >= 16384 + 256;
}

static int keep_pending(tl_engine *e, const char *p, size_t n);

bool tli_engine_gather_flush(tl_engine *e)
{
    if (!gather || gather->len == 0)
        return true;
    size_t n = gather->len, done = 0;
    gather->len = 0;
    ssize_t r = e->tp.send(e->tp.arg, gather->data, n);
    if (r > 0) {
        done = (size_t)r;
    } else if (r != TL_IO_AGAIN) {
        e->io_error = true;
        return false;
    }
    if (done < n && keep_pending(e, (const char *)gather->data + done, n - done) != 0)
        return false;
    return done == n;
}

bool tli_engine_gather_adopt(tl_engine *e)
{
    size_t n = tl_buf_len(&e->pending);
    if (!tli_engine_gather_room() || gather->len != 0 || n > TLI_GATHER_MAX - 16384 - 256)
        return false;   /* room for the pending bytes and still a full record after them */
    memcpy(gather->data, tl_buf_rptr(&e->pending), n);
    gather->len = n;
    tl_buf_free(&e->pending);
    return true;
}

/* What cannot be delivered now waits here and is reported to OpenSSL as written: it never sees a
 * blocked write (pitfall 5), and the engine encrypts more only once this is gone. */
static int keep_pending(tl_engine *e, const char *p, size_t n)
{
    if (tl_buf_append(&e->pending, p, n) == 0)
        return 0;
    e->out_of_memory = true;
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    tl_engine *e = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t n = (size_t)len, done = 0;
    if (e->gathering && gather && TLI_GATHER_MAX - gather->len >= n) {
        memcpy(gather->data + gather->len, buf, n);   /* sent with the write's other records */
        gather->len += n;
        e->bytes_out += n;
        return len;
    }
    if (e->gathering && !tli_engine_gather_flush(e) && e->io_error)
        return -1;   /* a record that does not fit: what came before goes first */
    /* Order matters: nothing overtakes bytes already pending. */
    if (tl_buf_len(&e->pending) == 0 && !e->st.in_task && !e->hold_output) {
        if (e->sink == SINK_DST) {
            size_t room = e->out_cap - e->out_pos;
            done = n < room ? n : room;
            memcpy(e->out + e->out_pos, buf, done);
            e->out_pos += done;
        } else if (e->sink == SINK_TRANSPORT) {
            ssize_t r = e->tp.send(e->tp.arg, buf, n);
            if (r > 0) {
                done = (size_t)r;
            } else if (r != TL_IO_AGAIN) {
                e->io_error = true;
                return -1;
            }
        }
    }
    if (done < n && keep_pending(e, buf + done, n - done) != 0)
        return -1; /* out of memory: OpenSSL fails the connection */
    e->bytes_out += n;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tl_engine *e = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* written bytes are delivered or pending: nothing is held back here */
    case BIO_CTRL_EOF:
        return e->input_eof && (e->has_tp || !e->in || e->in_pos == e->in_len);
    case BIO_CTRL_WPENDING:
        return (long)tl_buf_len(&e->pending);
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tlsloop engine");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

BIO *tli_engine_bio_new(tl_engine *e)
{
    pthread_once(&bio_once, make_method);
    if (!bio_method)
        return NULL;
    BIO *b = BIO_new(bio_method);
    if (b)
        BIO_set_data(b, e);
    return b;
}

bool tli_engine_flush_pending(tl_engine *e)
{
    while (tl_buf_len(&e->pending) > 0) {
        ssize_t r = e->tp.send(e->tp.arg, tl_buf_rptr(&e->pending), tl_buf_len(&e->pending));
        if (r > 0) {
            tl_buf_consume(&e->pending, (size_t)r);
            continue;
        }
        if (r != TL_IO_AGAIN) {
            e->io_error = true;
            tl_buf_free(&e->pending);   /* nothing will ever take it */
        }
        return false;
    }
    tl_buf_release(&e->pending); /* a full socket is rare: hold no memory meanwhile */
    return true;
}
