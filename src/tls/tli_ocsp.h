/* tli_ocsp.h - OCSP, privately, for the layers above the tls layer (the server's stapling in
 * src/server/server_ocsp.c): checking a response against a certificate, the request, the
 * certificate's responder URL, the refresh time, and the staples a server configuration serves
 * (ocsp.c, tls_ctx_ocsp.c; the public part is tlsloop/ocsp.h). */
#ifndef TLSLOOP_TLI_OCSP_H
#define TLSLOOP_TLI_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include <tlsloop/ocsp.h>
#include <tlsloop/tls_ctx.h>

/* ---- responses and requests (ocsp.c) ---- */

/* The certificate in chain (any order) that issued leaf, or NULL. Borrowed. */
X509 *tli_ocsp_issuer(X509 *leaf, STACK_OF(X509) *chain);

/* Check a DER response for leaf, whose issuer is in chain (the certificates after the leaf), at
 * time now (Unix seconds): a successful basic response, signed by the issuer or a responder it
 * delegated, holding this certificate's status, within its validity window (see tlsloop/ocsp.h).
 * Returns 0 and fills out (the status may be revoked or unknown: the caller decides), or -1 with
 * the reason in why. */
int tli_ocsp_verify(const uint8_t *der, size_t len, X509 *leaf, STACK_OF(X509) *chain,
                    int64_t now, tl_ocsp_info *out, char *why, size_t whylen);

/* A DER OCSP request for leaf, issued by issuer (no nonce: responses stay cacheable). *der is
 * malloc'd. 0, or -1 with why set. */
int tli_ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len, char *why,
                     size_t whylen);

/* The first OCSP responder URL of the leaf's Authority Information Access, malloc'd, or NULL. */
char *tli_ocsp_url(X509 *leaf);

/* Whether the leaf carries the TLS feature extension with status_request (RFC 7633,
 * "must-staple"). */
bool tli_ocsp_must_staple(X509 *leaf);

/* When to fetch a new response for one valid from info->this_update to info->expires: half way
 * between them (never before this_update). */
int64_t tli_ocsp_refresh_at(const tl_ocsp_info *info);

/* The delay before retry number `failures` (1, 2, ...) after failed fetches: 10 s doubled each
 * time up to an hour, and no later than the response in hand expires (expires 0: none held), but
 * at least 1 s. In seconds. */
int64_t tli_ocsp_retry_after(unsigned failures, int64_t now, int64_t expires);

/* ---- the staples a server configuration serves (tls_ctx_ocsp.c) ---- */

/* A staple slot: the DER response served for one certificate, replaced atomically while workers
 * read it. Reference-counted: the server's stapling keeps one per certificate across reloads, and
 * each configuration that serves the certificate holds a reference. Any thread. */
typedef struct tli_staple tli_staple;

tli_staple *tli_staple_new(void);
tli_staple *tli_staple_ref(tli_staple *s);
void tli_staple_free(tli_staple *s);
/* Serve this response (copied) until `expires` (Unix seconds); after that, none. 0 or -1 (memory). */
int tli_staple_set(tli_staple *s, const uint8_t *der, size_t len, int64_t expires);
/* Serve none from now on. */
void tli_staple_clear(tli_staple *s);
/* Whether a response is served at time now, and until when (may be NULL). */
bool tli_staple_valid(tli_staple *s, int64_t now, int64_t *expires);

/* Server configurations: the default and its named ones, each once (at most max into out;
 * returns how many there are). Borrowed. */
size_t tli_tls_ctx_members(tl_tls_ctx *dflt, tl_tls_ctx **out, size_t max);
/* The leaf certificates loaded into ctx (one per key type): their number, and leaf i with the
 * certificates given after it (borrowed; NULL when i is out of range). */
size_t tli_tls_ctx_leaf_count(const tl_tls_ctx *ctx);
X509 *tli_tls_ctx_leaf(const tl_tls_ctx *ctx, size_t i, STACK_OF(X509) **chain);
/* Serve staple s (a reference is taken; NULL: none) for leaf i of ctx to clients that ask for
 * one (status_request). Only before the configuration serves its first connection. 0 or -1. */
int tli_tls_ctx_set_staple(tl_tls_ctx *ctx, size_t i, tli_staple *s);

#endif /* TLSLOOP_TLI_OCSP_H */
