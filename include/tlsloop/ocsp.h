/*
 * tlsloop/ocsp.h - OCSP stapling (RFC 6960, RFC 6066 section 8): what a client learns from a
 * stapled response, and how a client asks for one.
 *
 * A server staples a response its certificate's CA (the OCSP responder named in the certificate's
 * Authority Information Access extension) signed: "this certificate is good from thisUpdate until
 * nextUpdate". The server side (fetching, refreshing, keeping responses on disk, serving them from
 * memory to every worker) is tlsloop/server.h's option ocsp-staple (docs/certificates.md); this
 * header is the part a client uses, and the facts both sides share.
 *
 * Checking a response (tl_ocsp_check_peer, and the server before it staples one): it must be a
 * successful OCSP response with a basic response, signed by the certificate's issuer or by a
 * responder the issuer delegated (id-kp-OCSPSigning), hold a status for exactly this certificate
 * (its CertID: issuer name and key hashes, serial), and be inside its validity window: thisUpdate
 * no later than now plus TL_OCSP_SKEW_S, nextUpdate (when present) not passed. A response without
 * nextUpdate is taken as valid for TL_OCSP_NO_NEXT_UPDATE_S after thisUpdate. A revoked or
 * unknown status is reported as such (never as good).
 *
 * Thread-safety: the functions here keep no state; an engine is used on its own thread.
 * Errors: 0, or -1 with a one-line reason in why (whylen bytes, may be NULL).
 */
#ifndef TLSLOOP_OCSP_H
#define TLSLOOP_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tlsloop/api.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Clock skew allowed for thisUpdate (a responder's clock a little ahead of ours). */
#define TL_OCSP_SKEW_S 300
/* How long a response without nextUpdate counts as valid after its thisUpdate. */
#define TL_OCSP_NO_NEXT_UPDATE_S (24 * 3600)

typedef enum tl_ocsp_cert_status {
    TL_OCSP_GOOD = 0,
    TL_OCSP_REVOKED = 1,
    TL_OCSP_UNKNOWN = 2,
} tl_ocsp_cert_status;

/* "good", "revoked", "unknown". Never NULL. */
TL_API const char *tl_ocsp_status_name(tl_ocsp_cert_status s);

/* What a checked response says. Times are Unix seconds (UTC). */
typedef struct tl_ocsp_info {
    tl_ocsp_cert_status status;
    int64_t this_update;
    int64_t next_update;      /* 0 when the response has none */
    int64_t expires;          /* next_update, or this_update + TL_OCSP_NO_NEXT_UPDATE_S */
    int64_t revoked_at;       /* TL_OCSP_REVOKED: when; else 0 */
    int reason;               /* TL_OCSP_REVOKED: the CRL reason code, -1 when none is given */
} tl_ocsp_info;

/* Client: ask servers for a stapled OCSP response (the status_request extension). Before the
 * configuration is frozen, as any setter. 0 or -1 (a server configuration, or frozen). */
TL_API int tl_tls_ctx_request_ocsp(tl_tls_ctx *ctx, bool on);

/* Client, after the handshake: check the response the server stapled against the chain the
 * handshake verified (the leaf and its issuer). Returns 0 when it verified and says good, and
 * fills out; -1 otherwise, with the reason in why ("no stapled OCSP response", "the stapled OCSP
 * response says the certificate is revoked", "... expired on ...", a signature that does not
 * verify); out is filled as far as the response could be read (out->status says revoked).
 * A connection without a verified chain (insecure) checks against the peer's certificate and
 * the chain it sent. */
TL_API int tl_ocsp_check_peer(tl_engine *e, tl_ocsp_info *out, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_OCSP_H */
