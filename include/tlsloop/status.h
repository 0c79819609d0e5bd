/*
 * tlsloop/status.h - the one status vocabulary of the whole library.
 *
 * Every call that drives I/O (the engine's wrap/unwrap/read/write, and later the connection layer)
 * answers with a tl_status in its return value; nothing in tlsloop reports through errno. The
 * statuses say what the caller must do next, in the style of libtls's TLS_WANT_POLLIN/POLLOUT:
 *
 *   TL_OK          progress was made (or there was nothing to do); call again as you need.
 *   TL_WANT_INPUT  no progress is possible until more network input arrives (SSLEngine's
 *                  BUFFER_UNDERFLOW; a socket user waits for readability).
 *   TL_WANT_OUTPUT no progress is possible until output drains: take the pending network bytes,
 *                  give a larger destination (SSLEngine's BUFFER_OVERFLOW), or, on a transport,
 *                  wait for writability.
 *   TL_NEED_TASK   a delegated task must run before the handshake can continue.
 *   TL_CLOSED      the peer closed cleanly (close_notify received), or the requested direction is
 *                  closed by us.
 *   TL_TRUNCATED   the transport ended without close_notify: the data may have been cut short.
 *   TL_ERROR       a fatal error; the object's error text says why.
 *
 * Thread-safety: the functions here are pure and safe from any thread.
 */
#ifndef TLSLOOP_STATUS_H
#define TLSLOOP_STATUS_H

#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tl_status {
    TL_OK = 0,
    TL_WANT_INPUT,
    TL_WANT_OUTPUT,
    TL_NEED_TASK,
    TL_CLOSED,
    TL_TRUNCATED,
    TL_ERROR,
} tl_status;

/* Why a TL_ERROR happened, coarse enough to switch on (exit codes, counters). */
typedef enum tl_error_kind {
    TL_ERR_NONE = 0,
    TL_ERR_USAGE,         /* the caller broke the API contract (bad argument, wrong state) */
    TL_ERR_RESOURCE,      /* out of memory or another local resource */
    TL_ERR_IO,            /* the transport failed (reset, broken pipe) */
    TL_ERR_PROTOCOL,      /* the peer sent something invalid, or we could not agree */
    TL_ERR_ALERT,         /* the peer sent a fatal alert */
    TL_ERR_VERIFY,        /* certificate or host name verification failed */
    TL_ERR_CONFIG,        /* the configuration cannot work (missing certificate, bad file) */
} tl_error_kind;

/* "ok", "want-input", ...: a stable lower-case name for logs and tests. Never NULL. */
TL_API const char *tl_status_name(tl_status s);

/* "usage", "io", ...: a stable lower-case name of an error kind. Never NULL. */
TL_API const char *tl_error_kind_name(tl_error_kind k);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_STATUS_H */
