/*
 * tlsloop/limits.h - admission limits a server applies before any TLS work: a rate limiter for
 * new handshakes and a per-source-address connection limit.
 *
 * tl_rate is a token bucket: `rate` tokens per second, at most `burst` saved up. tl_rate_take
 * answers whether one more event (a new handshake) may happen now. The caller passes the time
 * (a loop's tl_loop_now), so nothing here reads a clock and tests are exact.
 *
 * tl_addr_limit counts open connections per source address and refuses the one that would exceed
 * the limit. IPv6 sources can be grouped by prefix (a /64 is one host to most providers); IPv4
 * addresses count one by one. The table hashes with SipHash under a random key, so a client that
 * chooses its addresses cannot make lookups slow, and it is sharded with one lock per shard, so
 * every worker thread can use the same limit.
 *
 * Thread-safety: both objects may be used from any number of threads at once.
 * Errors: _new returns NULL when out of memory or given an invalid argument.
 */
#ifndef TLSLOOP_LIMITS_H
#define TLSLOOP_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_rate tl_rate;

/* A bucket refilled with rate tokens per second, holding at most burst (>= 1), full at start. */
TL_API tl_rate *tl_rate_new(double rate, double burst);
TL_API void tl_rate_free(tl_rate *r);
/* Take one token at time now_ms (monotonic milliseconds). Returns false when none is left. */
TL_API bool tl_rate_take(tl_rate *r, uint64_t now_ms);
/* Give back a token taken for an event that did not happen (never above the burst). */
TL_API void tl_rate_put_back(tl_rate *r);

typedef struct tl_addr_limit tl_addr_limit;

/* At most max_per_source connections per source. ipv6_prefix: bits of an IPv6 address that name
 * a source (1..128; 64 groups a /64). */
TL_API tl_addr_limit *tl_addr_limit_new(unsigned max_per_source, unsigned ipv6_prefix);
TL_API void tl_addr_limit_free(tl_addr_limit *l);
/* Count one more connection from addr; false (nothing counted) when the source is at its limit
 * or the address family is not IPv4/IPv6. */
TL_API bool tl_addr_limit_acquire(tl_addr_limit *l, const struct sockaddr *addr);
/* The connection from addr ended: count one less. */
TL_API void tl_addr_limit_release(tl_addr_limit *l, const struct sockaddr *addr);
/* Connections counted now for addr's source, and sources with any connection. */
TL_API unsigned tl_addr_limit_count(tl_addr_limit *l, const struct sockaddr *addr);
TL_API size_t tl_addr_limit_sources(tl_addr_limit *l);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_LIMITS_H */
