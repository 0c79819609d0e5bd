/*
 * tlsloop/tls_ctx.h - the engine's shared TLS configuration: it owns the SSL_CTX.
 *
 * A tl_tls_ctx holds everything that is the same for many connections: the role (server or
 * client), certificates and keys, the CA store and verification policy, ALPN, protocol versions,
 * the session cache and the ticket key ring. Engines (tlsloop/engine.h) are made from it; they
 * share it, so there is one SSL_CTX per configuration, never one per connection.
 *
 * Lifecycle: tl_tls_ctx_new, then setters, then engines. The first engine made from a
 * configuration freezes it: from then on it is immutable and setters fail with TL_ERR_USAGE.
 * A reload builds a new configuration (a new "generation") and new connections use it, while old
 * connections keep theirs: the configuration is reference-counted (each engine holds a reference;
 * tl_tls_ctx_free drops the caller's), and it is freed with its last user.
 *
 * Safe defaults, applied by tl_tls_ctx_new:
 *   - TLS 1.2 and 1.3 only; forward-secret AEAD suites only (ECDHE with AES-GCM or
 *     CHACHA20-POLY1305 for 1.2, the three standard suites for 1.3); groups X25519, P-256, P-384;
 *   - renegotiation and compression off; no 0-RTT;
 *   - client: the peer's chain and host name are verified against the system CA store unless a CA
 *     file or PEM is given; verification is off only after tl_tls_ctx_set_verify(TL_VERIFY_NONE);
 *   - server: a session cache for TLS 1.2 session IDs, and tickets (TLS 1.2 and 1.3) encrypted with
 *     a private key ring of its own (rotate it with tl_ticket_ring_rotate, or share a ring between
 *     configurations and processes with tl_tls_ctx_set_ticket_ring); a session ID context is always
 *     set, so resumption works with client certificates too.
 *
 * Certificates: the chain is built once when it is loaded (leaf first, then intermediates), the key
 * is checked against the leaf, and an expired leaf is refused unless allowed. One RSA and one ECDSA
 * certificate may be loaded into the same configuration; the client's capabilities pick one.
 * tl_tls_ctx_cert_expiry gives the earliest expiry, for a "days left" gauge.
 *
 * Names (SNI): a server configuration, the default, may have other server configurations attached
 * under host names (tl_tls_ctx_add_name). When a client's server_name matches one, exactly (in any
 * case) or by a wildcard "*.example.com" (one label, any case; an exact name wins), the connection
 * switches to that named configuration before anything else of the handshake is decided; without
 * SNI or without a match it stays on the default. Engines are always made from the default.
 *   - A named configuration is complete on its own and decides everything about its handshake:
 *     certificates, CA and client-certificate policy, versions, ciphers, groups, ALPN, and whether
 *     tickets are sent and how many. Nothing is inherited from the default.
 *   - The default keeps what OpenSSL keeps per listener: the session cache (its size and the
 *     lifetime) and the ticket key ring serve every name. Sessions stay apart all the same: each
 *     named configuration gets a session ID context of its own (SHA-256 of the name it is first
 *     attached under, unless set with tl_tls_ctx_set_session_id_context), so a session from one
 *     name never resumes on another (it gets a full handshake with that name's policy).
 *   - A server_name extension that is malformed (not exactly one non-empty host_name entry) fails
 *     the handshake with a decode_error alert, as OpenSSL's own parser would.
 *   - Freezing the default freezes its named configurations; a named one that cannot freeze fails
 *     the default's freeze, with the name in the message.
 *
 * Key derivation: by default a configuration's SSL_CTX is made with no property query, so
 * libssl's TLS1-PRF, TLS13-KDF and HMAC are OpenSSL's own (and everything it fetches follows the
 * site's openssl.cnf and default properties). tlsloop has its own implementations of those three
 * over SHA-256 and SHA-384 (src/tls/tls_ctx_kdf.c): OpenSSL 3.0's default provider spends most of
 * each call building and freeing EVP contexts (about a third of a resumed TLS 1.2 handshake, a
 * tenth of a full TLS 1.3 one). They are an explicit opt-in, per configuration:
 * tl_tls_ctx_new_ex with opts.kdf = TL_KDF_TLSLOOP. That loads a built-in provider, "tlsloop",
 * once, and makes the SSL_CTX with the query "?tlsloop.kdf=yes": a preference for a property
 * only tlsloop's three algorithms have, so the site's default properties still decide every
 * other algorithm (ciphers, digests, signatures, key exchange). Other digests are handed to
 * OpenSSL's. Outputs and refusals are those of OpenSSL's own (tests/unit/tls/test_tls_ctx_kdf*.c).
 * The opt-in stands aside, and the configuration uses OpenSSL's, when FIPS mode is on when it
 * is made (EVP_default_properties_is_fips_enabled on the default library context, asked for
 * each configuration), when the provider cannot be loaded, or when the default properties
 * select another provider's KDFs; tl_tls_ctx_kdf says what a configuration uses, and
 * tl_kdf_unavailable why the opt-in would not be used now. The library may be dlclose'd: it
 * stays mapped (-z nodelete), since OpenSSL keeps the provider until the process ends.
 *
 * Thread-safety: setters belong to one thread before the configuration is used. Once frozen, a
 * configuration may be used by engines on any number of threads at once. Reference counting is
 * atomic. A ticket key ring is internally locked and may be rotated from any thread while in use.
 *
 * Errors: functions returning int give 0 on success or -1 on failure; then tl_tls_ctx_error(ctx)
 * holds a one-line message a user can act on (e.g. "cert.pem: key does not match the
 * certificate") and tl_tls_ctx_error_kind(ctx) its kind. A failed setter leaves the configuration
 * as it was.
 */
#ifndef TLSLOOP_TLS_CTX_H
#define TLSLOOP_TLS_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tlsloop/api.h>
#include <tlsloop/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_tls_ctx tl_tls_ctx;
typedef struct tl_ticket_ring tl_ticket_ring;

typedef enum tl_role {
    TL_ROLE_SERVER = 0,
    TL_ROLE_CLIENT = 1,
} tl_role;

typedef enum tl_verify {
    TL_VERIFY_NONE = 0,      /* client: accept any peer (insecure); server: no client certificate */
    TL_VERIFY_OPTIONAL,      /* server: ask for a client certificate, verify it if sent */
    TL_VERIFY_REQUIRE,       /* client default: verify chain and name; server: require a client cert */
} tl_verify;

/* Protocol versions, as on the wire. */
#define TL_TLS1_2 0x0303
#define TL_TLS1_3 0x0304

/* Who derives TLS secrets and computes libssl's HMACs (see Key derivation above). */
typedef enum tl_kdf {
    TL_KDF_OPENSSL = 0,      /* default: OpenSSL's own, no property query on the SSL_CTX */
    TL_KDF_TLSLOOP = 1,      /* opt-in: tlsloop's provider (falls back to OpenSSL's, see above) */
} tl_kdf;

/* Options fixed when a configuration is made (they shape its SSL_CTX). Zero-initialise:
 * {0} is the default of everything. */
typedef struct tl_tls_ctx_opts {
    tl_kdf kdf;
} tl_tls_ctx_opts;

/* ---- configuration ---------------------------------------------------------------------- */

/* A new configuration with the safe defaults above. NULL only when memory is exhausted. */
TL_API tl_tls_ctx *tl_tls_ctx_new(tl_role role);
/* The same with options (NULL: the defaults, as tl_tls_ctx_new). */
TL_API tl_tls_ctx *tl_tls_ctx_new_ex(tl_role role, const tl_tls_ctx_opts *opts);
/* The key derivation the configuration uses: TL_KDF_TLSLOOP only if asked for and available. */
TL_API tl_kdf tl_tls_ctx_kdf(const tl_tls_ctx *ctx);
/* NULL when a configuration made now with `kdf` would use it; otherwise a one-line reason
 * (static text), e.g. FIPS mode. Asking about TL_KDF_TLSLOOP loads the provider. */
TL_API const char *tl_kdf_unavailable(tl_kdf kdf);
/* "openssl" or "tlsloop"; and back (0, or -1 for anything else). */
TL_API const char *tl_kdf_name(tl_kdf kdf);
TL_API int tl_kdf_parse(const char *s, tl_kdf *out);

/* Take another reference (for another owner). Returns ctx. */
TL_API tl_tls_ctx *tl_tls_ctx_ref(tl_tls_ctx *ctx);

/* Drop a reference; the last one frees the configuration. NULL is a no-op. */
TL_API void tl_tls_ctx_free(tl_tls_ctx *ctx);

TL_API tl_role tl_tls_ctx_role(const tl_tls_ctx *ctx);

/* The message and kind of the last failed call on this configuration ("" / TL_ERR_NONE if none).
 * Only meaningful on the thread that configures it, before it is frozen. */
TL_API const char *tl_tls_ctx_error(const tl_tls_ctx *ctx);
TL_API tl_error_kind tl_tls_ctx_error_kind(const tl_tls_ctx *ctx);

/* Load a certificate chain (PEM: leaf first, then intermediates) and its private key (PEM). */
TL_API int tl_tls_ctx_use_cert_file(tl_tls_ctx *ctx, const char *chain_path, const char *key_path);
/* The same from NUL-terminated PEM text in memory. */
TL_API int tl_tls_ctx_use_cert_pem(tl_tls_ctx *ctx, const char *chain_pem, const char *key_pem);
/* Accept an expired (or not yet valid) leaf at load (default: refused with a clear message). */
TL_API int tl_tls_ctx_allow_expired(tl_tls_ctx *ctx, bool allow);

/* Trust anchors for verifying the peer: a PEM file with one or more CA certificates, or PEM text.
 * Without either, a client trusts the system store (/etc/ssl/certs). On a server the CA names are
 * also sent to clients as the acceptable issuers of client certificates. */
TL_API int tl_tls_ctx_set_ca_file(tl_tls_ctx *ctx, const char *path);
TL_API int tl_tls_ctx_set_ca_pem(tl_tls_ctx *ctx, const char *pem);

/* Verification policy (see tl_verify). A server that verifies needs a CA. */
TL_API int tl_tls_ctx_set_verify(tl_tls_ctx *ctx, tl_verify mode);

/* Lowest and highest protocol version (TL_TLS1_2, TL_TLS1_3); below 1.2 is refused. */
TL_API int tl_tls_ctx_set_versions(tl_tls_ctx *ctx, int min_version, int max_version);

/* TLS 1.2 cipher list and TLS 1.3 suites in OpenSSL syntax (NULL keeps the default). Lists that
 * admit a suite without forward secrecy or AEAD are refused. */
TL_API int tl_tls_ctx_set_ciphers(tl_tls_ctx *ctx, const char *tls12_list, const char *tls13_suites);

/* Key-exchange groups, e.g. "X25519:P-256". */
TL_API int tl_tls_ctx_set_groups(tl_tls_ctx *ctx, const char *groups);

/* ALPN protocols in order of preference, comma-separated (e.g. "h2,http/1.1"). A server picks its
 * most preferred protocol the client offers; a client that offers ALPN but none of the server's
 * protocols fails the handshake with a no_application_protocol alert (RFC 7301), one that offers
 * no ALPN is served without. A client offers the list. */
TL_API int tl_tls_ctx_set_alpn(tl_tls_ctx *ctx, const char *protocols);

/* Server: number of TLS 1.3 tickets sent after a full handshake (default 2; 0 turns TLS 1.3
 * tickets off). */
TL_API int tl_tls_ctx_set_num_tickets(tl_tls_ctx *ctx, unsigned n);

/* Turn session tickets on or off (default on). Server: TLS 1.2 and 1.3; with tickets off, TLS 1.2
 * resumes from the session cache and TLS 1.3 resumes from stateful tickets in the same cache.
 * Client: off asks for no TLS 1.2 ticket, so its sessions resume by session ID from the server's
 * cache (TLS 1.3 resumption is by ticket either way). */
TL_API int tl_tls_ctx_set_tickets(tl_tls_ctx *ctx, bool on);

/* Server: session cache size in sessions (0 turns the cache off; default 20480) and the lifetime
 * of sessions and tickets in seconds (default 7200). */
TL_API int tl_tls_ctx_set_session_cache(tl_tls_ctx *ctx, size_t size, unsigned lifetime_s);

/* Server: the session ID context (up to 32 bytes) that binds sessions to this configuration.
 * Default: "tlsloop", or for a named configuration one derived from its name (see Names above).
 * Give each distinct policy (virtual host, client-certificate rule) its own. */
TL_API int tl_tls_ctx_set_session_id_context(tl_tls_ctx *ctx, const void *sid, size_t len);

/* Server: attach the server configuration `named` (dflt takes a reference) for clients whose SNI
 * is `name`: a host name, or "*.example.com" for any one label before example.com (see Names in
 * the overview). Both must be server configurations, dflt not yet frozen and named not attached
 * to itself; one level only: dflt must not be a named configuration and named must have no names
 * of its own. Refused too: a name that is not a host name, and one already attached (case does not
 * count). A configuration may be attached under several names. Returns 0 or -1. */
TL_API int tl_tls_ctx_add_name(tl_tls_ctx *dflt, const char *name, tl_tls_ctx *named);

/* Server: hand the handshakes that ask for one ALPN protocol to another configuration (ACME's
 * TLS-ALPN-01, RFC 8737: "acme-tls/1"). In the ClientHello callback, before SNI, a ClientHello
 * whose ALPN list offers `protocol` calls fn with its server_name (NULL without one): fn returns
 * the server configuration to switch the connection to (borrowed: it must stay alive, and
 * frozen, as long as any handshake may use it), or NULL to carry on as if nothing happened. The
 * configuration switched to decides the rest as a named one does (certificate, ALPN, tickets).
 * fn runs on the connection's thread, for each such ClientHello: it must be quick and
 * thread-safe. Before the configuration is frozen; NULL fn removes it. 0 or -1. */
typedef tl_tls_ctx *(*tl_tls_alpn_switch_fn)(const char *sni, void *data);
TL_API int tl_tls_ctx_set_alpn_switch(tl_tls_ctx *ctx, const char *protocol,
                                      tl_tls_alpn_switch_fn fn, void *data);

/* The configuration a connection with this SNI (NULL: none) would use: a named one, else dflt.
 * Borrowed. For tests and logs; never fails. */
TL_API tl_tls_ctx *tl_tls_ctx_select(tl_tls_ctx *dflt, const char *sni);

/* The earliest notAfter (Unix time, UTC) of the leaf certificates loaded into ctx and into its
 * named configurations: when the first of them expires. Returns 0, or -1 when none is loaded. */
TL_API int tl_tls_ctx_cert_expiry(tl_tls_ctx *ctx, int64_t *not_after_unix);

/* Server: use this ticket key ring (the configuration takes a reference) instead of its own. */
TL_API int tl_tls_ctx_set_ticket_ring(tl_tls_ctx *ctx, tl_ticket_ring *ring);
/* Server: the ticket key ring in use (borrowed; valid while the configuration lives). */
TL_API tl_ticket_ring *tl_tls_ctx_ticket_ring(tl_tls_ctx *ctx);

/* Freeze now (otherwise done by the first engine): loads the system CA store if needed and makes
 * the configuration immutable. Returns 0, or -1 when the configuration cannot work yet (a server
 * without a certificate, a verifying server without a CA); it then stays open for the missing
 * setting, and engines made from it meanwhile fail with that reason. */
TL_API int tl_tls_ctx_freeze(tl_tls_ctx *ctx);

/* ---- ticket key ring ---------------------------------------------------------------------
 *
 * The keys that encrypt and decrypt session tickets. The newest key encrypts; the older ones
 * still decrypt, and a ticket that only an older key opens is replaced by a new one. The ring
 * keeps `capacity` keys: rotating adds a new key and drops the oldest. Rotate every lifetime/4
 * with a capacity of 5, and a ticket stays valid for its whole lifetime.
 *
 * A key is TL_TICKET_KEY_LEN bytes: a 16-byte name (sent in the ticket), a 32-byte HMAC-SHA256
 * key, and a 32-byte AES-256 key, in that order. Several processes share tickets by adding the
 * same keys in the same order (tl_ticket_ring_add), or by loading the same key file.
 *
 * Key file (tl_ticket_ring_load_file), in one of two formats:
 *   - text, as `tlsloop ticket-keys new|rotate` write it: a first line "# tlsloop ticket keys...",
 *     then one key per line, "ROLE UNIXTIME HEX" (ROLE previous, current or next; the time it was
 *     made; the key as 160 hex digits); '#' lines and blank lines are comments. Exactly one
 *     current key, which encrypts; at most one next key; any number of previous keys. All of
 *     them decrypt. A next key is there so that every instance accepts it before any of them
 *     encrypts with it: rotating makes the next key current, adds a new next key and keeps the
 *     old current one as previous (docs/session-store.md, "Key rotation");
 *   - binary: one or more keys concatenated, nothing else (the layout of nginx's
 *     ssl_session_ticket_key files). The first key encrypts; the others only decrypt.
 *     "openssl rand 80 > ticket.key; chmod 600 ticket.key" makes a file with one key.
 * A server rereads its key file on SIGHUP and when the file changes (tl_ticket_ring_reload_file,
 * docs/server.md); replace it atomically (write another file, then rename it over the old one).
 */
#define TL_TICKET_KEY_LEN 80

/* A ring with one random key. capacity: keys kept (1..64). NULL when out of memory or randomness
 * fails. */
TL_API tl_ticket_ring *tl_ticket_ring_new(unsigned capacity);
/* A ring holding the keys of a key file (above), the current one encrypting; its capacity is the
 * number of keys in the file. Refused, with a message naming the path in err (errlen bytes, may be
 * NULL): a file that cannot be opened or read, that is not a regular file, that its group or
 * other users may read or write, that another user owns, that is empty, that does not parse
 * (tl_ticket_keys_parse), that holds more than 64 keys. NULL then. */
TL_API tl_ticket_ring *tl_ticket_ring_load_file(const char *path, char *err, size_t errlen);
/* Replace the keys of a ring in use with those of a key file (the same checks), under the ring's
 * lock: tickets in flight see the old keys or the new ones, never a mix. The counters stay.
 * Returns 0, or -1 with err set and the ring unchanged. */
TL_API int tl_ticket_ring_reload_file(tl_ticket_ring *ring, const char *path, char *err,
                                      size_t errlen);
/* A 32-byte key of its own for another use of a ring key (HKDF-SHA256 of the 80-byte key, with
 * `label` as its info): the key named `name` (16 bytes), or the current one when name is NULL;
 * name_out (may be NULL) gets the name of the key used. Returns 0, or -1 when no key has that
 * name (or the derivation failed). The session store seals its entries with it. */
TL_API int tl_ticket_ring_derive(tl_ticket_ring *ring, const uint8_t name[16], const char *label,
                                 uint8_t name_out[16], uint8_t key_out[32]);

/* ---- key file format (for tools: tlsloop ticket-keys) ---- */
typedef enum tl_ticket_key_role {
    TL_TICKET_KEY_PREVIOUS = 0,   /* decrypts tickets issued before the last rotation */
    TL_TICKET_KEY_CURRENT = 1,    /* encrypts (and decrypts) */
    TL_TICKET_KEY_NEXT = 2,       /* decrypts; becomes current at the next rotation */
} tl_ticket_key_role;
typedef struct tl_ticket_key_entry {
    tl_ticket_key_role role;
    int64_t created;              /* Unix time it was made; 0: unknown (binary files) */
    uint8_t key[TL_TICKET_KEY_LEN];
} tl_ticket_key_entry;
/* "previous", "current", "next". */
TL_API const char *tl_ticket_key_role_name(tl_ticket_key_role role);
/* Whether data is the text format (it begins with the format's first line). */
TL_API bool tl_ticket_keys_is_text(const void *data, size_t len);
/* Parse a key file's contents (either format) into out (max entries): *n keys. Returns 0, or -1
 * with a message in err (no path in it) and *n = 0: a malformed line, not exactly one current
 * key, two next keys, two keys with one name, more than max keys, a binary file whose size is
 * not a multiple of TL_TICKET_KEY_LEN. */
TL_API int tl_ticket_keys_parse(const void *data, size_t len, tl_ticket_key_entry *out,
                                size_t max, size_t *n, char *err, size_t errlen);
/* Write n keys in the text format into out (cap bytes, NUL-terminated): previous keys in the
 * order given, then current, then next. Returns the length, or 0 when cap is too small (n * 200
 * + 200 bytes always suffice). */
/* A new random key with this role, made at `now` (Unix time). 0, or -1 (no randomness). */
TL_API int tl_ticket_keys_make(tl_ticket_key_entry *k, tl_ticket_key_role role, int64_t now);
/* Rotate the n keys in keys (room for max): the next key becomes current, the current one
 * previous, a new random key next, and only the newest keep_previous previous keys stay (each
 * lasts keep_previous rotations as previous: rotate at most every session lifetime /
 * keep_previous, and no ticket outlives its key). Keys without a next key get one, and their
 * current key stays current: only keys every instance has seen as next ever encrypt. Returns
 * the new count, or 0 (no current key, no randomness, more than max keys). */
TL_API size_t tl_ticket_keys_rotate(tl_ticket_key_entry *keys, size_t n, size_t max,
                                    unsigned keep_previous, int64_t now);
TL_API size_t tl_ticket_keys_format(const tl_ticket_key_entry *keys, size_t n, char *out,
                                    size_t cap);
TL_API tl_ticket_ring *tl_ticket_ring_ref(tl_ticket_ring *ring);
TL_API void tl_ticket_ring_free(tl_ticket_ring *ring);
/* Add a new random key as the encrypting one. Returns 0 or -1 (randomness failed). */
TL_API int tl_ticket_ring_rotate(tl_ticket_ring *ring);
/* Add this key as the encrypting one (from a key file or another process). Returns 0, or -1 if a
 * key with the same name is already in the ring. */
TL_API int tl_ticket_ring_add(tl_ticket_ring *ring, const uint8_t key[TL_TICKET_KEY_LEN]);
/* Whether a key of this name (16 bytes) is in the ring. */
TL_API bool tl_ticket_ring_has(tl_ticket_ring *ring, const uint8_t name[16]);
/* Keys in the ring, and the name of the key that encrypts now (16 bytes into name). */
TL_API unsigned tl_ticket_ring_count(tl_ticket_ring *ring);
TL_API void tl_ticket_ring_current_name(tl_ticket_ring *ring, uint8_t name[16]);
/* Tickets issued, opened with the current key, opened with an older key (and so renewed), and
 * refused because no key had their name. */
typedef struct tl_ticket_stats {
    uint64_t issued, decrypted_current, decrypted_old, unknown_key;
} tl_ticket_stats;
TL_API void tl_ticket_ring_stats(tl_ticket_ring *ring, tl_ticket_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_TLS_CTX_H */
