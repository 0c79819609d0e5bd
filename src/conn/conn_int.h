/* conn_int.h - the connection's private structure and its type table, shared by conn*.c only;
 * the five policy files and the two types behind the table: docs/conn.md, "Connections". */
#ifndef TLSLOOP_CONN_INT_H
#define TLSLOOP_CONN_INT_H

#include <tlsloop/buf.h>
#include <tlsloop/conn.h>

#include "util/tli.h"

typedef struct tli_conn_type {
    const char *name;
    /* One handshake step: TL_OK when done (plain: at once), TL_WANT_INPUT / TL_WANT_OUTPUT,
     * TL_NEED_TASK, TL_ERROR or TL_TRUNCATED. */
    tl_status (*handshake)(tl_conn *c);
    /* Read application bytes into buf: status = why it stopped (see tlsloop/engine.h). */
    tl_result (*read)(tl_conn *c, void *buf, size_t cap);
    /* Write application bytes (consumed = taken); TL_OK when all taken, TL_WANT_OUTPUT. */
    tl_result (*write)(tl_conn *c, const void *buf, size_t len);
    /* The last write: the bytes, then the end of our data (close_notify) with them, queued only
     * when all were consumed. NULL: write, then close_notify. */
    tl_result (*write_close)(tl_conn *c, const void *buf, size_t len);
    /* Send output held inside the type (TLS records): TL_OK when none is left. */
    tl_status (*flush)(tl_conn *c);
    /* Queue the end of our data (TLS close_notify; nothing for TCP). */
    tl_status (*close_notify)(tl_conn *c);
    /* Output held inside the type, not yet on the socket. */
    size_t (*pending_output)(const tl_conn *c);
    /* Give I/O buffers back while idle. */
    void (*release)(tl_conn *c);
    /* Free what the type added to the connection (the engine). */
    void (*destroy)(tl_conn *c);
    /* KeyUpdates the peer sent so far (TLS 1.3; TCP: 0). */
    uint32_t (*key_updates)(const tl_conn *c);
    /* Input held inside the type that no read has consumed (TLS records read ahead). */
    bool (*input_buffered)(const tl_conn *c);
} tli_conn_type;

extern const tli_conn_type tli_conn_tcp;
extern const tli_conn_type tli_conn_tls;

typedef enum conn_state {
    ST_CONNECTING,   /* waiting for connect() to complete */
    ST_HANDSHAKE,    /* TLS handshake */
    ST_TASK,         /* a handshake step runs on the pool: no I/O */
    ST_OPEN,
    ST_CLOSING,      /* flushing, close_notify, lingering */
    ST_DEAD,         /* socket closed; on_close pending */
} conn_state;

/* Actions posted to the loop (c->post), run from there, never from inside an API call. */
#define ACT_READ 0x1u     /* deliver data held inside (resume, fairness budget) */
#define ACT_CLOSE 0x2u    /* call on_close and free */
#define ACT_FLUSH 0x8u    /* deferred writes: send what this iteration queued */
#define ACT_HANDSHAKE 0x4u /* a handshake step without waiting for an event (accept) */

/* Laid out to leave no padding: an idle server holds one of these per connection. Times with the
 * suffix _ms are the loop's clock (tl_loop_now) cut to 32 bits: they are only ever subtracted
 * from one another, which stays right across the wrap for spans under 49 days. */
struct tl_conn {
    tl_loop *loop;
    tl_io io;
    int fd;
    conn_state state;
    const tli_conn_type *type;
    tl_engine *engine;            /* TLS */
    tl_transport tp;              /* TLS: the engine's view of the socket */
    tl_conn_end end;              /* why it ended (first reason wins) */
    tl_conn_end eof_how;          /* how the peer's data ended, once it did */
    tl_conn_end pending_end;      /* abort_requested: the end to give it */
    int sock_errno;               /* the last socket error */

    /* Deadlines: one timer, armed for the nearest (tli_conn_arm_deadline in conn.c). */
    uint32_t hs_timeout_ms, close_timeout_ms;
    uint32_t idle_timeout_ms, stall_timeout_ms; /* 0: off */
    uint32_t active_ms;           /* the socket last moved bytes, either way */
    uint32_t send_ms;             /* the socket last took bytes, or first refused them after a
                                     complete send (the start of a wait) */
    uint32_t close_ms;            /* tl_conn_close began */
    /* KeyUpdate rate: the engine's count when last looked at, and at the window's start. */
    uint32_t ku_limit, ku_seen, ku_base, ku_window_ms;
    uint8_t actions;              /* ACT_* posted */

    bool read_paused;
    bool eof;                     /* the peer finished sending */
    bool half_close;
    bool shut_requested;          /* tl_conn_shutdown_write, or closing */
    bool notify_queued;           /* close_notify queued */
    bool fin_sent;                /* shutdown(SHUT_WR) done */
    bool above_high;              /* tl_conn_write returned 1; on_drain owed */
    bool close_requested;         /* while a task ran, or during a handshake with data queued:
                                     close once the handshake is over */
    bool abort_requested;
    bool posted;
    bool send_blocked;            /* the last send did not take everything */
    bool rx_dry;                  /* a recv came back short: the socket is empty until the next
                                     readiness event (no recv just to learn EAGAIN) */
    bool stall_armed;             /* the timer covers the send-stall deadline */
    bool hs_told;                 /* the owner heard how the handshake ended */
    bool last_send;               /* tl_conn_writev_close: the FIN follows at once, so sends say
                                     MSG_MORE and the kernel puts data and FIN in one segment */
    bool fd_private;              /* opts.fd_private: close without epoll_ctl */
    bool defer_writes;            /* tl_conn_set_defer_writes */
    bool no_linger;               /* tl_conn_set_linger(false), and the peer sent nothing since */
    bool lookup_pending;          /* ST_TASK for the owner's session lookup, not a pool task */

    tl_buf wq;                    /* write queue */
    size_t high, low;
    size_t read_chunk;

    tl_timer timer;               /* the nearest deadline of the state */

    const tl_conn_cbs *cbs;
    void *data;
    const tl_conn_owner *owner;
    void *owner_data;

    tl_work post;                 /* ACT_* */

    tl_pool *pool;
    tl_work task;                 /* a delegated handshake step */
    uint64_t task_cpu_ns;         /* written by the pool thread, read after the post */

    uint64_t hs_start_ns, hs_ns, hs_cpu_ns;
    uint64_t bytes_in, bytes_out;
    char *err;                    /* why it failed; allocated only then (NULL: "") */
};

/* ---- the policy's files share (conn.c, conn_write.c, conn_read.c, conn_handshake.c,
 * conn_events.c; each calls only the ones before it) ---- */

#define CONN_MSG_MAX 256             /* a failure's message */
#define KEY_UPDATE_WINDOW_MS 1000    /* the KeyUpdate rate cap's window */

static inline uint32_t tli_conn_now_ms(const tl_conn *c) { return (uint32_t)tl_loop_now(c->loop); }

/* Output not yet handed to the kernel: the write queue and what the type holds. */
static inline size_t tli_conn_unwritten(const tl_conn *c)
{
    return tl_buf_len(&c->wq) + c->type->pending_output(c);
}

/* Output not yet out: also what a stream's sends hold (the FIN and the close wait for it). */
static inline size_t tli_conn_queued(const tl_conn *c)
{
    return tli_conn_unwritten(c) + tl_io_unsent(c->loop, &c->io);
}

/* Milliseconds left until `limit` has passed since `mark`; 0 once it has. */
static inline uint32_t tli_conn_left(uint32_t now, uint32_t mark, uint32_t limit)
{
    uint32_t spent = now - mark;
    return spent >= limit ? 0 : limit - spent;
}

/* The send-stall deadline is on, and output waits. */
static inline bool tli_conn_stall_applies(const tl_conn *c)
{
    return c->stall_timeout_ms && tli_conn_queued(c) > 0;
}

/* conn.c: record why it failed (the first reason sticks); tell the owner how a TLS handshake
 * ended (once), and on failure the application too; post ACT_* actions; close the socket now and
 * post on_close (finish), after recording a socket or TLS failure (fail); event interest; the
 * timer for the nearest deadline. */
void tli_conn_set_error(tl_conn *c, const char *msg);
void tli_conn_owner_handshake(tl_conn *c, bool ok);
void tli_conn_report_handshake_failure(tl_conn *c);
void tli_conn_schedule(tl_conn *c, unsigned act);
void tli_conn_finish(tl_conn *c, tl_conn_end end);
void tli_conn_fail(tl_conn *c, const char *what);
void tli_conn_update_interest(tl_conn *c);
void tli_conn_arm_deadline(tl_conn *c);
/* conn_write.c: send what is queued (on_drain, then close_notify and FIN when asked); a close
 * asked for before the connection was up, now that it is (returns whether it closed). */
void tli_conn_do_flush(tl_conn *c);
bool tli_conn_close_if_requested(tl_conn *c);
/* conn_read.c: read and deliver, within the turn's budget. */
void tli_conn_do_read(tl_conn *c);
/* conn_handshake.c: run handshake steps until one waits (or goes to the pool) or it ends. */
void tli_conn_do_handshake(tl_conn *c);

/* Socket I/O shared by both types: recv/send with MSG_NOSIGNAL, errors recorded on c. Return
 * bytes, 0 at EOF (recv), TL_IO_AGAIN or TL_IO_ERROR. */
void tli_conn_stream(tl_conn *c);
ssize_t tli_conn_recv(tl_conn *c, void *buf, size_t len);
ssize_t tli_conn_send(tl_conn *c, const void *buf, size_t len);

/* The thread's read buffer (TL_CONN_READ_CHUNK bytes). */
uint8_t *tli_conn_scratch(void);

#endif /* TLSLOOP_CONN_INT_H */
