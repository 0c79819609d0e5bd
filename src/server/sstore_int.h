/*
 * src/server/sstore_int.h - the shared session store: TLS 1.2 sessions of clients without
 * tickets, kept in memcached or Redis so that every instance behind a balancer resumes them
 * (docs/session-store.md). Private to the server layer; three files, each using only the ones
 * before it:
 *
 *   server_sstore_proto.c  the two protocols: memcached's text protocol (get, set with an expiry)
 *                          and Redis's RESP (GET, SET EX): requests written into a buffer, one
 *                          reply parsed at a time with picohttpparser's contract (bytes used,
 *                          0 incomplete, -1 malformed); no I/O, no allocation.
 *   server_sstore_seal.c   an entry is the session's DER sealed with AES-256-GCM under a key
 *                          derived (HKDF-SHA256, tl_ticket_ring_derive) from the ticket key
 *                          file's current key; the key's name travels in the entry, so entries
 *                          open while that key is in the file (previous, current or next), and
 *                          the session ID is authenticated with it (an entry moved under another
 *                          ID does not open). The store never sees a session secret in clear.
 *   server_sstore.c        one client per worker loop, on a tl_conn: requests pipelined in
 *                          order, lookups with a deadline (a late reply is read and dropped),
 *                          writes not waited for; a store that is down, slow or talks nonsense
 *                          means a miss at once (a full handshake), never an error or a stall;
 *                          reconnect with backoff.
 *
 * Threads: a tli_sstore belongs to its loop's thread.
 */
#ifndef TLSLOOP_SSTORE_INT_H
#define TLSLOOP_SSTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <tlsloop/buf.h>
#include <tlsloop/engine.h>
#include <tlsloop/log.h>
#include <tlsloop/loop.h>
#include <tlsloop/tls_ctx.h>

/* ---- protocols (server_sstore_proto.c) ---------------------------------------------------- */

typedef enum tli_sstore_kind { TLI_SSTORE_MEMCACHED = 0, TLI_SSTORE_REDIS = 1 } tli_sstore_kind;

/* Where the store is: "memcached://HOST:PORT" or "redis://HOST:PORT" (HOST an IPv4 address, an
 * [IPv6] address or "localhost"; no name lookups on the loop). */
typedef struct tli_sstore_addr {
    tli_sstore_kind kind;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[128];                /* as given */
} tli_sstore_addr;
/* 0, or -1 with the reason in err. */
int tli_sstore_parse_url(const char *url, tli_sstore_addr *out, char *err, size_t errlen);

/* The key an entry is stored under: "tlsloop:s:" and the session ID in hex (at most 32 bytes:
 * 75 characters with the NUL, within memcached's 250). */
#define TLI_SSTORE_KEY_MAX 80
void tli_sstore_key(const uint8_t *id, size_t id_len, char out[TLI_SSTORE_KEY_MAX]);

/* Append a request to b. set: the value expires after expiry_s seconds (at least 1). 0, or -1
 * out of memory. */
int tli_sstore_req_get(tl_buf *b, tli_sstore_kind kind, const char *key);
int tli_sstore_req_set(tl_buf *b, tli_sstore_kind kind, const char *key, const void *value,
                       size_t len, unsigned expiry_s);

typedef enum tli_reply_kind {
    TLI_REPLY_VALUE,               /* a GET found a value: data, len */
    TLI_REPLY_MISS,                /* a GET found nothing */
    TLI_REPLY_STORED,              /* a SET was done */
    TLI_REPLY_ERROR,               /* the store refused (data, len: its words) */
} tli_reply_kind;
typedef struct tli_reply {
    tli_reply_kind kind;
    const uint8_t *data;           /* into the input */
    size_t len;
} tli_reply;
/* The most value bytes a reply may carry (an entry is a sealed session: a few KiB at most). */
#define TLI_SSTORE_VALUE_MAX (64u * 1024u)
/* Parse one reply at p (n bytes): bytes it takes (> 0), 0 when incomplete, -1 when malformed
 * (or a value over TLI_SSTORE_VALUE_MAX). */
ssize_t tli_sstore_parse_reply(tli_sstore_kind kind, const uint8_t *p, size_t n, tli_reply *r);

/* ---- sealed entries (server_sstore_seal.c) ---------------------------------------------- */

/* An entry: "TS", version 1, the key name (16), the nonce (12), the ciphertext, the tag (16). */
#define TLI_SEAL_OVERHEAD (3 + 16 + 12 + 16)

typedef struct tli_sealer tli_sealer;
/* A sealer with its cipher and a few derived keys cached (HKDF per entry would cost more than the
 * encryption). NULL out of memory. */
tli_sealer *tli_sealer_new(void);
void tli_sealer_free(tli_sealer *s);
/* Seal der under ring's current key, bound to the session ID: *out (malloc'd, the caller frees)
 * of *out_len bytes. 0, or -1. */
int tli_seal(tli_sealer *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
             const uint8_t *der, size_t der_len, uint8_t **out, size_t *out_len);
/* Open an entry found under the session ID: *der (malloc'd) of *der_len bytes. 0, or -1 (not an
 * entry, its key no longer in the ring, tampered with, another ID). */
int tli_open(tli_sealer *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
             const uint8_t *entry, size_t len, uint8_t **der, size_t *der_len);

/* ---- the client (server_sstore.c) ----------------------------------------------------------- */

typedef struct tli_sstore tli_sstore;

/* Counters, single writer (the loop's thread), read from any thread. */
typedef struct tli_sstore_stats {
    _Atomic uint64_t lookups, hits, misses, timeouts, unavailable, rejected, stores, store_errors,
        connects, disconnects, retries;
} tli_sstore_stats;

/* A client for addr on loop (not connected yet: tli_sstore_start, on the loop's thread). Lookups
 * wait at most timeout_ms. log may be NULL. NULL out of memory. */
tli_sstore *tli_sstore_new(tl_loop *loop, const tli_sstore_addr *addr, uint32_t timeout_ms,
                           tl_log *log);
void tli_sstore_start(tli_sstore *s);
/* Close (pending lookups are answered as misses) and free, on the loop's thread; runs the loop
 * briefly for the connection's end. NULL is a no-op. */
void tli_sstore_free(tli_sstore *s);

/* The answer of a lookup: der (len bytes, valid during the call) is the session found, NULL
 * none. Called exactly once, from the loop, never from inside tli_sstore_lookup. */
typedef void (*tli_sstore_cb)(void *arg, const uint8_t *der, size_t len);
/* Look a session ID up. true: cb will be called; false: not now (the store is not connected,
 * too many requests are in flight, out of memory): a miss, cb is not called. */
bool tli_sstore_lookup(tli_sstore *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
                       tli_sstore_cb cb, void *arg);
/* Store a new session (sealed under ring's current key) until it expires; not waited for. */
void tli_sstore_put(tli_sstore *s, tl_ticket_ring *ring, tl_session *sess);
const tli_sstore_stats *tli_sstore_stats_of(const tli_sstore *s);
bool tli_sstore_connected(const tli_sstore *s);

#endif /* TLSLOOP_SSTORE_INT_H */
