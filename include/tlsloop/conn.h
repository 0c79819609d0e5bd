/*
 * tlsloop/conn.h - one connection API for plain TCP and TLS streams, driven by a loop.
 *
 * A tl_conn wraps a non-blocking socket on one loop (tlsloop/loop.h). With a TLS configuration it
 * runs a TLS engine (tlsloop/engine.h) in transport mode; without one it is plain TCP. Callers
 * never branch on which: reads, writes, backpressure, pausing and closing are the same.
 *
 * Reading. Data arrives through on_read(c, data, len); the bytes live in a buffer of the loop
 * thread's and are valid only during the callback (copy what you keep). A connection reads only
 * while reading is not paused; tl_conn_pause_read stops delivery at once, tl_conn_resume_read
 * restarts it, and data TLS already holds inside is delivered without waiting for the socket.
 * on_eof(c, how) tells that the peer finished sending: TL_END_CLEAN (TLS close_notify, or a TCP
 * FIN on a plain connection) or TL_END_TRUNCATED (TLS without close_notify). Unless half_close is
 * set, the connection then closes itself (answering the peer's close_notify with ours); with it,
 * the application may go on writing and closes when done (TLS 1.3 and TCP half-close).
 *
 * Writing. tl_conn_write copies; what the socket cannot take now waits in the connection's write
 * queue. It returns 1 once the queue is above the high-water mark: stop producing until on_drain,
 * which comes when the queue falls to the low-water mark. tl_conn_writev gathers small pieces into
 * one TLS record rather than one record per piece.
 *
 * TLS. Event interest follows what TLS needs, not only what the application asked: during the
 * handshake, after a write that must wait for the socket, while output is pending. The handshake
 * has a deadline; on_handshake(c, ok) reports its end, with the reason on failure in
 * tl_conn_error. With a task pool in the options, the CPU-heavy handshake steps run on the pool
 * (the connection does no I/O meanwhile) and come back to the loop.
 *
 * Deadlines. Besides the handshake and close deadlines, two are optional (0: off). Idle
 * (idle_timeout_ms): once the handshake is done (plain: from the start), a connection on which no
 * byte moved either way for that long is closed gracefully, as tl_conn_close does, and ends with
 * TL_END_TIMEOUT ("idle timeout"). Send stall (send_stall_timeout_ms): while output waits (the
 * write queue, or TLS records not yet sent) and the peer takes none of it for that long, the
 * connection is aborted with TL_END_TIMEOUT ("send stalled: the peer stopped reading"), also
 * during tl_conn_close's flush: a peer that stopped reading must not hold the connection and its
 * buffers forever. Any byte moved resets the first, any byte sent the second (bytes the kernel
 * still takes into its send buffer count as sent, so a stall is recognised after one to about
 * three periods). TLS 1.3 KeyUpdates
 * from the peer are capped at key_update_limit per second (0: 100); above, the connection is
 * aborted with TL_END_TLS_ERROR ("peer sent too many KeyUpdates").
 *
 * Closing is a protocol. tl_conn_close stops reading for the application, flushes the write
 * queue, sends close_notify (TLS), shuts the write side, and reads and discards until the peer's
 * close_notify or EOF (a lingering close: the peer never gets a reset that destroys the last
 * response), all within the close deadline; then it closes the socket and calls on_close(c, how)
 * once. An application whose protocol says the peer sends nothing more (an HTTP client that
 * asked for Connection: close, its request read whole) may call tl_conn_set_linger(c, false):
 * the close then ends with close_notify and FIN, without the drain, when nothing unread is
 * waiting (the last read found the socket empty and TLS holds no input), and on_close says
 * TL_END_LOCAL; a peer that writes after that gets a reset, as nginx's peers do. Input found
 * meanwhile makes it linger after all. Before a connection is up (connecting, or in its TLS
 * handshake) a close ends it at once, unless data was written meanwhile: that is delivered once
 * it is up, then the close goes on as above (a failed connect or handshake still ends it).
 * tl_conn_abort ends at once. on_close is the last callback (an owner's on_close aside, see
 * below); the connection is freed when it returns. Any callback may close or abort its own
 * connection, or another one.
 *
 * Owner. A layer that manages connections for an application (a server) passes tl_conn_owner
 * hooks besides the application's callbacks; the application's callbacks behave the same with or
 * without them. The owner's on_handshake is called exactly once for every TLS connection (never
 * for plain TCP), before the application's on_handshake: ok true when the handshake completed;
 * false when the connection ended before it did, however that happened (failure, deadline, the
 * peer gone, tl_conn_close or tl_conn_abort during the handshake, a failed connect), at the
 * latest just before on_close. If the owner ends the connection from its on_handshake(true), the
 * application's on_handshake is not called. The owner's on_close is called exactly once for every
 * connection that tl_conn_accept or tl_conn_connect returned, after the application's on_close:
 * it is the very last call, and the connection is freed when it returns.
 *
 * Threads: a connection belongs to its loop's thread; call nothing here from another thread (post
 * to the loop instead).
 *
 * Memory: an idle connection holds no I/O buffers: the write queue is freed when it empties and
 * TLS record buffers are given back whenever the connection has nothing in flight.
 */
#ifndef TLSLOOP_CONN_H
#define TLSLOOP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <tlsloop/api.h>
#include <tlsloop/engine.h>
#include <tlsloop/loop.h>
#include <tlsloop/status.h>
#include <tlsloop/tls_ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fairness: most bytes read, and written, for one connection per loop iteration; the rest waits
 * a turn. And the most connections a listener accepts per wake-up. */
#define TL_CONN_READ_BUDGET (256u * 1024u)
#define TL_CONN_WRITE_BUDGET (256u * 1024u)
#define TL_ACCEPTS_PER_WAKEUP TL_LOOP_MAX_ACCEPTS   /* 64 (loop.h) */
/* Size of the per-thread read buffer that on_read data points into. */
#define TL_CONN_READ_CHUNK (64u * 1024u)

typedef struct tl_conn tl_conn;

/* How a connection ended (or, in on_eof, how the peer's data ended). */
typedef enum tl_conn_end {
    TL_END_NONE = 0,    /* not ended */
    TL_END_CLEAN,       /* TLS: close_notify; TCP: FIN */
    TL_END_TRUNCATED,   /* TLS: the transport ended without close_notify */
    TL_END_RESET,       /* the peer reset the connection, or the socket failed */
    TL_END_TIMEOUT,     /* a deadline passed (handshake, close, idle, send stall) */
    TL_END_TLS_ERROR,   /* TLS failed; tl_conn_error says why (the alert, the verification, the
                           peer's KeyUpdates over key_update_limit) */
    TL_END_LOCAL,       /* we ended it without the peer's answer (tl_conn_abort, or a close whose
                           peer went on sending until the deadline) */
} tl_conn_end;

typedef struct tl_conn_cbs {
    /* TLS only: the handshake ended; ok false means it failed (on_close follows). */
    void (*on_handshake)(tl_conn *c, bool ok);
    /* Application data (valid during the call). */
    void (*on_read)(tl_conn *c, const uint8_t *data, size_t len);
    /* The peer finished sending: TL_END_CLEAN or TL_END_TRUNCATED. */
    void (*on_eof)(tl_conn *c, tl_conn_end how);
    /* The write queue fell to the low-water mark after tl_conn_write returned 1. */
    void (*on_drain)(tl_conn *c);
    /* Last call: the connection is gone when this returns (only an owner's on_close follows). */
    void (*on_close)(tl_conn *c, tl_conn_end how);
    /* tl_conn_connect: the TCP connection is established (before any TLS handshake), or failed
     * (ok false; on_close follows with TL_END_RESET). */
    void (*on_connect)(tl_conn *c, bool ok);
} tl_conn_cbs;

/* Hooks of a layer that manages connections on behalf of the application (see Owner above). Both
 * may be NULL. They get the owner_data of the options (tl_conn_owner_data). */
typedef struct tl_conn_owner {
    /* TLS only: exactly once; before the application's on_handshake. */
    void (*on_handshake)(tl_conn *c, bool ok, void *owner_data);
    /* Exactly once, after the application's on_close: the very last call. */
    void (*on_close)(tl_conn *c, tl_conn_end how, void *owner_data);
    /* TLS server, optional: a ClientHello offers a TLS 1.2 session ID that the configuration's
     * session cache does not hold, and no ticket (tlsloop/engine.h, "Session lookup"). Return
     * true after starting a lookup: the connection does no I/O (its deadlines still run) until
     * the owner calls tl_conn_session_found, exactly once, on the loop's thread, after this
     * returns. Return false to go on at once with a full handshake. */
    bool (*session_lookup)(tl_conn *c, const uint8_t *id, size_t len, void *owner_data);
} tl_conn_owner;

typedef struct tl_conn_opts {
    tl_tls_ctx *tls;                  /* NULL: plain TCP; else its role must fit accept/connect */
    const char *server_name;          /* connect + TLS: name (or IP) to verify, SNI */
    tl_session *session;              /* connect + TLS: a session to resume */
    tl_pool *pool;                    /* TLS: run CPU-heavy handshake steps on this pool */
    uint32_t handshake_timeout_ms;    /* 0: 10000 */
    uint32_t close_timeout_ms;        /* flush, close_notify and linger; 0: 5000 */
    uint32_t idle_timeout_ms;         /* nothing sent or received for this long: close (TLS: from
                                         the handshake's end); 0: off */
    uint32_t send_stall_timeout_ms;   /* output waiting, none taken for this long: abort; 0: off */
    uint32_t key_update_limit;        /* TLS 1.3 KeyUpdates per second from the peer; 0: 100 */
    size_t write_high;                /* write queue high-water mark; 0: 256 KiB */
    size_t write_low;                 /* low-water mark; 0: write_high / 4 */
    size_t read_chunk;                /* most bytes per on_read; 0: TL_CONN_READ_CHUNK (the max) */
    bool half_close;                  /* keep the connection writable after the peer's EOF */
    bool fd_nonblocking;              /* accept: the fd is non-blocking already (accept4 with
                                         SOCK_NONBLOCK): no fcntl calls */
    bool fd_nodelay;                  /* TCP_NODELAY is on already (accepted sockets inherit
                                         the listener's): no setsockopt */
    bool fd_private;                  /* no other descriptor or process shares the socket
                                         (accept4 with SOCK_CLOEXEC, no fork): closing it takes
                                         it out of epoll, no epoll_ctl (tl_io_stop_closing) */
    const struct sockaddr *local_addr;/* connect: bind here first (a source address; port 0 is
                                         chosen at connect time); NULL: the kernel's choice */
    socklen_t local_addrlen;
    const tl_conn_cbs *cbs;
    void *data;                       /* the caller's */
    const tl_conn_owner *owner;       /* NULL: none; must outlive the connection */
    void *owner_data;                 /* the owner's */
} tl_conn_opts;

/* Take an accepted socket (made non-blocking here unless fd_nonblocking) and start (a server's TLS handshake, or plain
 * reading). A TLS handshake is tried in this iteration already, before any event: the client
 * speaks first, and under load its hello is there by the time accept returns (one epoll_wait per
 * connection saved; a recv that finds nothing costs less). NULL when out of memory (the fd is
 * closed then). */
TL_API tl_conn *tl_conn_accept(tl_loop *loop, int fd, const tl_conn_opts *opts);
/* Connect to addr without blocking; then TLS when configured. NULL when the socket cannot even be
 * made (errbuf says why). */
TL_API tl_conn *tl_conn_connect(tl_loop *loop, const struct sockaddr *addr, socklen_t addrlen,
                                const tl_conn_opts *opts, char *errbuf, size_t errlen);

/* Write (copying). Returns 0; 1 when the write queue is above the high-water mark (pause until
 * on_drain); -1 when the connection no longer takes data (closing, closed, failed). Data written
 * before a TLS handshake ends is sent after it. */
TL_API int tl_conn_write(tl_conn *c, const void *data, size_t len);
/* Deferred writes (default off): a tl_conn_write under 16 KiB is queued (copied) and sent after
 * the callbacks of this loop iteration, with whatever else was written meanwhile. With many
 * connections ready at once, their sends then leave together after all of the iteration's reads,
 * and the peers take them in fewer wake-ups (tlsloop proxy, keep-alive requests through it: +5%
 * requests/s here, with its backend and the client sharing a CPU). Larger writes go at once. */
TL_API void tl_conn_set_defer_writes(tl_conn *c, bool on);
/* The same for several pieces, coalesced into as few TLS records as possible. */
TL_API int tl_conn_writev(tl_conn *c, const struct iovec *iov, int iovcnt);
/* Bytes waiting in the write queue (and, for TLS, not yet sent by the engine). */
TL_API size_t tl_conn_write_queued(const tl_conn *c);

TL_API void tl_conn_pause_read(tl_conn *c);
TL_API void tl_conn_resume_read(tl_conn *c);

/* End gracefully (see above). Idempotent. */
TL_API void tl_conn_close(tl_conn *c);
/* The last pieces, then tl_conn_close: over TLS the data and close_notify leave in one send
 * when the socket takes them (a short-lived connection saves a system call and a packet).
 * Returns 0, or -1 when the connection no longer took data (it closes all the same). */
TL_API int tl_conn_writev_close(tl_conn *c, const struct iovec *iov, int iovcnt);
/* Whether tl_conn_close drains the peer's input before closing (default true; see "Closing is a
 * protocol" above for when false applies). Saves one recv, one shutdown and one wake-up per
 * short-lived connection, and leaves no TIME_WAIT socket on our side. */
TL_API void tl_conn_set_linger(tl_conn *c, bool on);
/* Send our end of the stream (TLS close_notify, then FIN) but keep reading. */
TL_API void tl_conn_shutdown_write(tl_conn *c);
/* End now: nothing more is sent or read; on_close(TL_END_LOCAL) follows. */
TL_API void tl_conn_abort(tl_conn *c);

/* Facts. */
TL_API int tl_conn_fd(const tl_conn *c);
TL_API void *tl_conn_data(const tl_conn *c);
TL_API void tl_conn_set_data(tl_conn *c, void *data);
/* The end of the owner's session lookup: der (len bytes) is the session found (i2d_SSL_SESSION),
 * NULL for none. The handshake goes on (resumed when the session fits, else full). Returns 0 when
 * the session was taken into the cache, -1 otherwise (also when no lookup was pending). */
TL_API int tl_conn_session_found(tl_conn *c, const void *der, size_t len);
/* The owner_data given in the options. */
TL_API void *tl_conn_owner_data(const tl_conn *c);
/* The owner hooks given at accept/connect (NULL: none), so an owner recognises its connections. */
TL_API const tl_conn_owner *tl_conn_get_owner(const tl_conn *c);
TL_API tl_loop *tl_conn_loop(const tl_conn *c);
TL_API bool tl_conn_is_tls(const tl_conn *c);
/* The TLS engine (NULL for plain TCP): for its facts (tl_engine_get_info), not for I/O. */
TL_API tl_engine *tl_conn_engine(tl_conn *c);
/* Why the connection failed ("" otherwise). */
TL_API const char *tl_conn_error(const tl_conn *c);

typedef struct tl_conn_stats {
    uint64_t bytes_in, bytes_out;      /* application bytes */
    uint64_t handshake_ns;             /* wall time of the TLS handshake */
    uint64_t handshake_cpu_ns;         /* CPU time spent in it: on the pool the thread's CPU clock;
                                          on the loop each step's duration (a step never waits) */
} tl_conn_stats;
TL_API void tl_conn_get_stats(const tl_conn *c, tl_conn_stats *out);

/* "clean", "truncated", ... */
TL_API const char *tl_conn_end_name(tl_conn_end how);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_CONN_H */
