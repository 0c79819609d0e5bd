/*
 * src/tls/engine_int.h - the engine's private structure, shared by engine*.c only.
 */
#ifndef TLSLOOP_ENGINE_INT_H
#define TLSLOOP_ENGINE_INT_H

#include <tlsloop/buf.h>
#include <tlsloop/engine.h>

#include "tls/tli_tls.h"
#include "util/tli.h"

/* Where the BIO sends what OpenSSL writes during the current call. */
typedef enum sink {
    SINK_PENDING = 0, /* into e->pending (unwrap, tasks, anything without a destination) */
    SINK_DST,         /* into the caller's wrap destination, the rest into e->pending */
    SINK_TRANSPORT,   /* to the transport, what it cannot take into e->pending */
} sink;

struct tl_engine {
    tli_ssl_state st;           /* attached to the SSL as app data (see tli.h) */
    SSL *ssl;
    tl_tls_ctx *cfg;            /* owned reference */
    tl_transport tp;
    unsigned tp_flags;   /* TL_TRANSPORT_* */
    bool has_tp;

    /* The current call's I/O, read by the BIO. Outside calls: in == NULL, sink == SINK_PENDING. */
    const uint8_t *in;
    size_t in_len, in_pos;
    uint8_t *out;
    size_t out_cap, out_pos;
    sink sink;

    tl_buf pending;             /* network output not yet taken (buffer) or sent (transport) */

    /* TLS record boundaries of the network input handed to OpenSSL, to tell an EOF between
     * records (a clean truncation) from one inside a record. */
    uint8_t rec_hdr[5];
    unsigned rec_hdr_have;
    size_t rec_body_left;

    bool input_eof;             /* no more network input will come */
    bool eof_at_boundary;       /* OpenSSL asked for input after EOF, between records */
    bool io_error;              /* the transport failed */
    bool gathering;             /* records go to the thread's gather buffer (tli_engine_gather) */
    bool gather_hold;           /* tl_engine_write_close: gather even a small write, keep it */
    bool hold_last_flight;      /* TL_ENGINE_HOLD_LAST_FLIGHT */
    bool hold_output;           /* a handshake step runs: its flight stays pending, then goes */
    bool held;                  /* the last flight waits to leave with the next write (see
                                   tl_engine_handshake) */
    bool out_of_memory;         /* pending output could not grow */
    bool started;               /* the handshake has begun */
    bool hs_done;
    bool hs_finished_unreported; /* TL_HS_FINISHED still to be reported once */
    bool task_pending;
    bool close_sent;
    bool close_received;
    bool truncated;
    bool failed;
    bool session_bad;           /* the exchange did not end well: do not keep the session */

    int alert_sent;             /* last alert descriptions, -1 if none */
    int alert_received;
    tl_error_kind err_kind;
    uint32_t key_updates_received; /* TLS 1.3 KeyUpdate messages from the peer */
    char *err;                  /* why it failed or ended; allocated only then (NULL: "") */

    uint64_t bytes_in, bytes_out;
    char *server_name;
};

#define TLI_MSG_MAX 320 /* longest error text */

/* The BIO for an engine (engine_bio.c). NULL when out of memory. */
BIO *tli_engine_bio_new(tl_engine *e);
/* Send pending output through the transport. Returns true when nothing is left pending. */
bool tli_engine_flush_pending(tl_engine *e);
/* Move the pending output to the front of this thread's gather buffer (which must be empty), so
 * that it leaves with the records gathered next. False when it does not fit or memory is short
 * (the output stays pending). */
bool tli_engine_gather_adopt(tl_engine *e);
/* Several records of one write leave in one send: while gathering, the BIO appends records to a
 * per-thread buffer of TLI_GATHER_MAX bytes instead of sending each; tli_engine_gather_room says
 * whether another full record fits, tli_engine_gather_flush sends what was gathered (what the
 * socket does not take becomes pending output, as with any write). */
#define TLI_GATHER_MAX (4u * (16384u + 256u))
bool tli_engine_gather_room(void);
bool tli_engine_gather_flush(tl_engine *e);
/* Whether the network input handed to OpenSSL ends exactly at a record boundary. */
static inline bool tli_engine_at_record_boundary(const tl_engine *e)
{
    return e->rec_hdr_have == 0 && e->rec_body_left == 0;
}

#endif /* TLSLOOP_ENGINE_INT_H */
