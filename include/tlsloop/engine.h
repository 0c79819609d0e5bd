/*
 * tlsloop/engine.h - a transport-independent TLS engine (Java SSLEngine semantics, in C).
 *
 * One engine is one TLS connection's state machine, made from a shared configuration
 * (tlsloop/tls_ctx.h). It knows nothing of sockets, loops or clocks. It moves bytes in one of two
 * modes, chosen when it is made:
 *
 *  - Buffer mode (no transport): tl_engine_unwrap takes network bytes and gives application bytes;
 *    tl_engine_wrap takes application bytes and gives network bytes. Both report what they consumed
 *    and produced. The caller does all I/O (io_uring, a test, a proxy's own buffers).
 *  - Transport mode: the engine reads and writes through the caller's callbacks (for a socket,
 *    recv and send). tl_engine_read and tl_engine_write move application bytes; network bytes go
 *    from the kernel straight into OpenSSL's record buffer and back, with no copy of ours.
 *
 * Both modes share the status mapping, the handshake, the close logic and the delegated tasks.
 *
 * Status contract (tlsloop/status.h). Every call returns a tl_result:
 *   status    why the call stopped, so what to do next:
 *             TL_OK           it did all it was asked (wrap/write: all of the source taken;
 *                             unwrap/read: the destination is full, more may be inside);
 *             TL_WANT_INPUT   nothing more without new network input (SSLEngine's underflow);
 *             TL_WANT_OUTPUT  nothing more until the pending network output is taken (buffer
 *                             mode: wrap into a destination with room; transport: writability),
 *                             or (unwrap with no room at all) SSLEngine's overflow;
 *             TL_NEED_TASK    run tl_engine_run_task before anything else;
 *             TL_CLOSED       the peer's close_notify arrived (clean end of its data); from
 *                             wrap/write: our sending side is closed;
 *             TL_TRUNCATED    the transport ended without close_notify;
 *             TL_ERROR        fatal; see tl_engine_error.
 *             A status other than TL_OK means an immediate second call would make no progress,
 *             so loops of the form "call again while TL_OK" never spin.
 *   hs        the handshake status after the call: TL_HS_NEED_WRAP (network output is pending:
 *             call wrap / flush), TL_HS_NEED_UNWRAP (network input is needed), TL_HS_NEED_TASK,
 *             TL_HS_FINISHED (reported once, by the call after which the handshake is complete
 *             and its last output taken), TL_HS_NOT_HANDSHAKING.
 *   consumed  bytes taken from the source (network bytes for unwrap, application bytes for wrap),
 *   produced  bytes written to the destination: valid whatever the status (data that arrived
 *             before a close_notify or an error is delivered with that status).
 * Application data is never lost: what wrap did not consume must be offered again; what unwrap
 * did not consume was not seen.
 *
 * Buffering. unwrap may consume a partial record (OpenSSL keeps it). Plaintext beyond the
 * caller's buffer stays inside: tl_engine_pending says how much, and it is delivered by the next
 * unwrap/read even with no new input. A caller that got TL_OK (its buffer was full) or that stops
 * early must come back before waiting for the network: only TL_WANT_INPUT means "wait". Network bytes that the caller's destination could not take stay inside as pending
 * output (tl_engine_pending_output) and come out first from the next wrap, before anything new;
 * the engine encrypts new application data only when no output is pending, so pending output is
 * bounded by one record or one handshake flight (on a transport, by the four records a large
 * write gathers into one send: about 65 KiB).
 *
 * Handshake. The handshake runs inside wrap/unwrap (read/write): a client starts it with a wrap
 * (or tl_engine_handshake) and a server with the first unwrap. Every call can produce network
 * output (a handshake message, a KeyUpdate answer, an alert), also unwrap: after any call whose
 * hs is TL_HS_NEED_WRAP, call wrap (an empty source is fine) until no output is pending. The engine
 * counts the TLS 1.3 KeyUpdates the peer sends (tl_engine_key_updates_received) so that its
 * owner, which has a clock, can cap their rate.
 *
 * Delegated tasks. With tasks on (TL_ENGINE_DELEGATE_TASKS), the CPU-heavy handshake steps never
 * run inline: the call stops at OpenSSL's pause points (a server's ClientHello callback, before the
 * signature flight; a client's certificate verification, before the chain and the server's
 * signature are checked) and returns TL_NEED_TASK. tl_engine_run_task then runs that one step on
 * any thread, provided the caller hands the engine over exclusively meanwhile (no other call on it
 * until the task returns, and a memory barrier both ways: a mutex or a queue does it). The task
 * never touches the transport: its output goes to the pending output; the OpenSSL error queue of
 * its thread is captured into the engine. The owner then goes on with wrap/unwrap.
 *
 * Session lookup. A server engine with TL_ENGINE_SESSION_LOOKUP stops when a ClientHello offers
 * a TLS 1.2 session ID that the configuration's session cache does not hold, and no ticket: the
 * call returns TL_NEED_TASK, and tl_engine_session_lookup gives the ID. The owner looks it up
 * (in memcached, say, asynchronously) and calls tl_engine_session_found with what it found (or
 * nothing), which puts the session into the configuration's cache; then it goes on with the
 * handshake as after a task (wrap/unwrap/handshake), and OpenSSL resumes from the cache.
 * tl_engine_run_task on such a stop counts as "nothing found". After a full TLS 1.2 handshake
 * whose client takes no tickets, tl_engine_take_new_session hands the new session over for the
 * owner's store.
 *
 * Close. tl_engine_close queues our close_notify (during a handshake, when OpenSSL cannot send
 * one, it only closes our side). The peer's close_notify ends unwrap with TL_CLOSED. In TLS 1.3 a
 * side may go on sending after receiving the peer's close_notify (half-close), and unwrap goes on
 * reading after ours; in TLS 1.2 wrap refuses data after the peer's close_notify. EOF of the
 * transport without close_notify (buffer mode: tl_engine_set_input_eof; transport mode: recv
 * returned 0) is TL_TRUNCATED once every byte before it was delivered; the engine recognises it
 * itself, without OpenSSL's fatal "unexpected EOF" path. A connection that ended after a complete
 * exchange (handshake done, no error, EOF between records) keeps its session resumable even when
 * the peer skipped close_notify; one that ended in an error or in the middle of a record does not.
 *
 * Errors. TL_ERROR is final: tl_engine_error gives a one-line message (OpenSSL's reason, the alert
 * sent or received, the verification failure), tl_engine_error_kind its kind. An alert OpenSSL
 * produced for the peer is still in the pending output: take it before closing the transport.
 * The thread's OpenSSL error queue is cleared before each call and drained into the engine after a
 * failure, so one engine's error never shows up in another.
 *
 * Ownership and threads. An engine holds a reference to its configuration. It belongs to one
 * thread at a time; different engines may be used on different threads at once. tl_engine_free
 * frees everything in any state and is NULL-safe.
 */
#ifndef TLSLOOP_ENGINE_H
#define TLSLOOP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <tlsloop/api.h>
#include <tlsloop/status.h>
#include <tlsloop/tls_ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_engine tl_engine;
typedef struct ssl_session_st tl_session; /* an OpenSSL SSL_SESSION */

typedef enum tl_hs_status {
    TL_HS_NOT_HANDSHAKING = 0,
    TL_HS_NEED_WRAP,
    TL_HS_NEED_UNWRAP,
    TL_HS_NEED_TASK,
    TL_HS_FINISHED,
} tl_hs_status;

typedef struct tl_result {
    tl_status status;
    tl_hs_status hs;
    size_t consumed;
    size_t produced;
} tl_result;

/* Transport callbacks. recv returns bytes read (>0), 0 at end of stream, TL_IO_AGAIN when it would
 * block, TL_IO_ERROR on a hard error (reset). send returns bytes sent (>0, may be fewer than
 * asked), TL_IO_AGAIN or TL_IO_ERROR. A socket transport uses recv(2) and send(2) with
 * MSG_NOSIGNAL. They are called only from inside engine calls, on the owner's thread. */
#define TL_IO_AGAIN (-1)
#define TL_IO_ERROR (-2)
typedef struct tl_transport {
    ssize_t (*recv)(void *arg, void *buf, size_t len);
    ssize_t (*send)(void *arg, const void *buf, size_t len);
    void *arg;
} tl_transport;

/* Transport flags (tl_engine_set_transport_flags). QUEUED: send copies into a queue of the transport's own that leaves later in one
 * system call, with everything else queued meanwhile (a loop's io_uring stream, tl_io_stream):
 * each record goes to it as OpenSSL makes it, not first gathered into a buffer of the engine's
 * (which saves send(2) calls on a socket, and would cost one more copy here). */
#define TL_TRANSPORT_QUEUED 0x1u

/* Engine flags. */
#define TL_ENGINE_DELEGATE_TASKS 0x1u /* return TL_NEED_TASK before CPU-heavy handshake steps */
#define TL_ENGINE_SESSION_LOOKUP 0x4u /* server: sessions are also looked up outside the process
                                         (see Session lookup) */
#define TL_ENGINE_HOLD_LAST_FLIGHT 0x2u /* transport mode: tl_engine_handshake may hold the last
                                           flight for the next write (see there; tl_conn does) */

typedef struct tl_engine_opts {
    /* Client: the server's DNS name or IP address. It is verified against the certificate when
     * the configuration verifies (required then), and a DNS name is sent as SNI. */
    const char *server_name;
    /* Transport mode when not NULL (copied; arg must outlive the engine); buffer mode otherwise. */
    const tl_transport *transport;
    unsigned flags;
    /* Client: a session to resume (not taken, not changed: the engine offers its own copy). */
    tl_session *session;
} tl_engine_opts;

/* A new engine on cfg (which it freezes and references). opts may be NULL (server, buffer mode).
 * Returns NULL only when memory is exhausted; a problem with the options (say, a client that
 * verifies but has no server name) is reported by the first call as TL_ERROR. */
TL_API tl_engine *tl_engine_new(tl_tls_ctx *cfg, const tl_engine_opts *opts);

/* Free the engine in any state. Does not send anything. NULL is a no-op. */
TL_API void tl_engine_free(tl_engine *e);

/* ---- buffer mode ---- */

/* Decrypt: take network bytes from src, put application bytes into dst. Drives the handshake. */
TL_API tl_result tl_engine_unwrap(tl_engine *e, const void *src, size_t srclen, void *dst,
                                  size_t dstcap);
/* Encrypt: take application bytes from src, put network bytes into dst. Pending output comes out
 * first. Drives the handshake (a client's first wrap writes its ClientHello). */
TL_API tl_result tl_engine_wrap(tl_engine *e, const void *src, size_t srclen, void *dst,
                                size_t dstcap);
/* The transport reached end of stream: no more network input will come. */
TL_API void tl_engine_set_input_eof(tl_engine *e);

/* ---- transport mode ---- */

/* Read application bytes; network input comes from the transport. Drives the handshake. */
TL_API tl_result tl_engine_read(tl_engine *e, void *dst, size_t cap);
/* Write application bytes; network output goes to the transport (what the transport cannot take
 * now stays pending: TL_WANT_OUTPUT, then tl_engine_flush when writable). */
TL_API tl_result tl_engine_write(tl_engine *e, const void *src, size_t len);
/* Send pending output. TL_OK when nothing is left pending, TL_WANT_OUTPUT if the transport is full. */
TL_API tl_result tl_engine_flush(tl_engine *e);
/* Say what kind of transport this is (TL_TRANSPORT_*; 0 at first), e.g. once its socket moved to
 * completion I/O. Between calls, on the owner's thread. */
TL_API void tl_engine_set_transport_flags(tl_engine *e, unsigned flags);
/* The last write: application bytes, then our close_notify, in one send (a connection that ends
 * after its answer saves a system call and a packet). When the transport cannot take all of src
 * (consumed < len), close_notify is not queued: write the rest, then tl_engine_close. */
TL_API tl_result tl_engine_write_close(tl_engine *e, const void *src, size_t len);

/* ---- both modes ---- */

/* Transport mode: drive the handshake without application data (sends pending output, then one
 * handshake step, whose flight leaves in one send). In buffer mode, wrap and unwrap with empty
 * buffers do the same. With TL_ENGINE_HOLD_LAST_FLIGHT, when the step ends the handshake and the
 * peer's application data is already inside (a TLS 1.3 client sends its Finished and its request
 * together), the last flight (the session tickets) is held instead: the result is TL_OK,
 * tl_engine_output_held says so, reads leave it alone, and it leaves in front of the next write's
 * records, in the same send, or with tl_engine_flush, which the caller owes before it waits for
 * the network without having written an answer. */
TL_API tl_result tl_engine_handshake(tl_engine *e);

/* Run the delegated task (after TL_NEED_TASK). Any thread, with exclusive ownership (see above).
 * Returns TL_OK (continue with wrap/unwrap) or TL_ERROR. */
TL_API tl_status tl_engine_run_task(tl_engine *e);

/* After TL_NEED_TASK: whether the engine waits for a session lookup (TL_ENGINE_SESSION_LOOKUP),
 * and the session ID to look up (borrowed, valid until tl_engine_session_found). */
TL_API bool tl_engine_session_lookup(const tl_engine *e, const uint8_t **id, size_t *len);
/* End the lookup: der (len bytes; NULL: nothing found) is the DER of an SSL_SESSION
 * (i2d_SSL_SESSION), put into the configuration's session cache when it parses and has the
 * looked-up ID. Returns 0 when it was added, -1 when nothing was (no lookup pending, nothing
 * found, does not parse, another ID). Either way the handshake goes on with the next call. */
TL_API int tl_engine_session_found(tl_engine *e, const void *der, size_t len);
/* Server with TL_ENGINE_SESSION_LOOKUP, after the handshake: the new TLS 1.2 session to store
 * (a reference for the caller: tl_session_free), once; NULL when there is none (resumed, TLS 1.3,
 * the client takes tickets, no session ID). */
TL_API tl_session *tl_engine_take_new_session(tl_engine *e);

/* Queue our close_notify (once; later calls are no-ops). The result's status is TL_OK, or
 * TL_WANT_OUTPUT in transport mode when it is still pending; in buffer mode take it with wrap. */
TL_API tl_result tl_engine_close(tl_engine *e);

/* Free OpenSSL's record buffers and our empty buffers while the connection is idle (nothing
 * pending). Returns true if the engine now holds no I/O buffers. */
TL_API bool tl_engine_release_buffers(tl_engine *e);

/* ---- state and facts ---- */

TL_API tl_hs_status tl_engine_handshake_status(const tl_engine *e);
TL_API bool tl_engine_handshake_done(const tl_engine *e);
/* Plaintext bytes ready to be read without new input. */
TL_API size_t tl_engine_pending(const tl_engine *e);
/* Whether input is held inside that no read has consumed yet: plaintext, or records read ahead
 * from the network and not yet decrypted (more than tl_engine_pending counts). */
TL_API bool tl_engine_input_buffered(const tl_engine *e);
/* Network bytes waiting to be taken (buffer mode) or sent (transport mode). */
TL_API size_t tl_engine_pending_output(const tl_engine *e);
/* Pending output is a held last handshake flight (tl_engine_handshake). */
TL_API bool tl_engine_output_held(const tl_engine *e);
/* Whether our close_notify was queued, and whether the peer's was received. */
TL_API bool tl_engine_close_sent(const tl_engine *e);
TL_API bool tl_engine_close_received(const tl_engine *e);
/* TLS 1.3 KeyUpdate messages received from the peer so far (each one makes us derive new keys,
 * and may make us send one: a peer can spend our CPU with them; tl_conn caps their rate). Cheap:
 * meant to be read after every read or unwrap. */
TL_API uint32_t tl_engine_key_updates_received(const tl_engine *e);

TL_API const char *tl_engine_error(const tl_engine *e);   /* "" when there was no error */
TL_API tl_error_kind tl_engine_error_kind(const tl_engine *e);

typedef struct tl_engine_info {
    const char *version;      /* "TLSv1.3"; NULL before the handshake is done */
    const char *cipher;       /* "TLS_AES_128_GCM_SHA256" */
    const char *group;        /* key-exchange group, "X25519"; NULL if none (TLS 1.2 resumption) */
    const char *server_name;  /* SNI (server: what the client sent; client: what we sent) */
    char alpn[64];            /* negotiated protocol, "" if none */
    bool resumed;             /* session resumed (ticket or cache) */
    bool has_peer_cert;
    char peer_subject[256];   /* RFC 2253, "" without a peer certificate */
    char peer_issuer[256];
    long verify_result;       /* X509_V_OK (0) or the verification error */
    const char *verify_error; /* its text ("ok" when it passed) */
    uint64_t bytes_in;        /* network bytes received and sent by this engine */
    uint64_t bytes_out;
    uint32_t key_updates_received; /* TLS 1.3 KeyUpdates from the peer (see above) */
} tl_engine_info;

/* Fill out with the connection's facts. Strings are owned by the engine and valid until it is
 * freed. */
TL_API void tl_engine_get_info(const tl_engine *e, tl_engine_info *out);

/* Client: the newest resumable session this connection received (TLS 1.3 tickets arrive after the
 * handshake, so read at least once first), as a new reference the caller frees with
 * tl_session_free, or NULL if there is none or the connection ended badly. A TLS 1.3 ticket should
 * be offered only once. */
TL_API tl_session *tl_engine_get_session(tl_engine *e);
TL_API void tl_session_free(tl_session *s);

/* The OpenSSL object, for facts this API does not cover. Do not do I/O on it. */
TL_API struct ssl_st *tl_engine_ssl(tl_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_ENGINE_H */
