/* conn_tls.c - the TLS connection type: the engine in transport mode over the socket. */
#include "conn/conn_int.h"

static tl_status tls_handshake(tl_conn *c)
{
    return tl_engine_handshake(c->engine).status;
}

static tl_result tls_read(tl_conn *c, void *buf, size_t cap)
{
    return tl_engine_read(c->engine, buf, cap);
}

static tl_result tls_write(tl_conn *c, const void *buf, size_t len)
{
    return tl_engine_write(c->engine, buf, len);
}

static tl_result tls_write_close(tl_conn *c, const void *buf, size_t len)
{
    return tl_engine_write_close(c->engine, buf, len);
}

static tl_status tls_flush(tl_conn *c)
{
    return tl_engine_flush(c->engine).status;
}

static tl_status tls_close_notify(tl_conn *c)
{
    return tl_engine_close(c->engine).status;
}

/* A held last flight does not count: it leaves with the next write, or with handshake_done's
 * flush in the same turn, so it is never waited for. */
static size_t tls_pending(const tl_conn *c)
{
    return tl_engine_output_held(c->engine) ? 0 : tl_engine_pending_output(c->engine);
}

static void tls_release(tl_conn *c)
{
    tl_engine_release_buffers(c->engine);
}

static void tls_destroy(tl_conn *c)
{
    tl_engine_free(c->engine);
    c->engine = NULL;
}

static uint32_t tls_key_updates(const tl_conn *c)
{
    return tl_engine_key_updates_received(c->engine);
}

static bool tls_input_buffered(const tl_conn *c)
{
    return tl_engine_input_buffered(c->engine);
}

const tli_conn_type tli_conn_tls = {
    .name = "tls",
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .write_close = tls_write_close,
    .flush = tls_flush,
    .close_notify = tls_close_notify,
    .pending_output = tls_pending,
    .release = tls_release,
    .destroy = tls_destroy,
    .key_updates = tls_key_updates,
    .input_buffered = tls_input_buffered,
};
