/*
 * tlsloop/acme.h - certificates that run themselves: an ACME client (RFC 8555) inside a running
 * server, which gets a certificate for the configured names, answers the ACME server's challenge
 * on the server's own listeners, swaps the certificate in for new handshakes with no restart, and
 * renews it before it expires. `tlsloop serve` and `tlsloop proxy` use it (docs/certificates.md).
 *
 * Setting up. tl_acme_config_init adds the ACME options (acme-directory, acme-ca, acme-email,
 * acme-domain (repeat), acme-state, acme-challenge, acme-retry; tl_acme_usage lists them) to a
 * server configuration. With at least one acme-domain, tl_acme_new reads them, prepares the state
 * directory (made 0700) and adds its certificate to the configuration (cert and key: one
 * file, the key then the chain); tl_acme_start, after tl_server_new, starts the client's thread;
 * tl_acme_stop and tl_acme_free after tl_server_run returned.
 *
 * State directory: account.key (the account's ECDSA P-256 key, made once, mode 0600),
 * certificate.pem (the certificate's own P-256 key, then the chain the ACME server sent; 0600),
 * lock (flock: one instance issues at a time), challenges/ (the pending ones, so that every
 * instance sharing the directory answers them). Until the first certificate arrives,
 * certificate.pem holds a self-signed certificate for the names (made at the first start), the
 * server serves it, and the log says so. Every file is written whole to a temporary name and
 * renamed, so a reader (another instance, a SIGHUP) never sees half of one.
 *
 * Issuing. The thread gets the directory, a nonce (HEAD newNonce; every answer's Replay-Nonce is
 * kept for the next request, and a badNonce error is retried with the fresh one), the account
 * (newAccount with the key as JWK, onlyReturnExisting not used: the same key gives the same
 * account), an order for the names, each authorization's challenge (below), then finalizes with a
 * CSR for a new key, polls the order and downloads the chain. Requests are JWS ES256 (raw r||s
 * signatures, base64url) over tlsloop's own HTTP client; the ACME server's certificate is checked
 * against acme-ca (else the system store).
 *
 * Challenges. tls-alpn-01 (RFC 8737, the default when the server has a TLS listener): a
 * ClientHello that offers ALPN acme-tls/1 for a name with a pending challenge gets the validation
 * certificate (self-signed, that name, the critical acmeIdentifier extension with SHA-256 of the
 * key authorization) and acme-tls/1 selected; other handshakes are untouched. http-01: the HTTP
 * layer asks tl_acme_http01 for paths under TL_ACME_HTTP01_PREFIX on its plain listeners (tlsloop
 * serve does; the proxy cannot: it uses tls-alpn-01).
 *
 * Renewal. A certificate is renewed once two thirds of its lifetime (notBefore to notAfter) have
 * passed, less a random jitter of up to a thirtieth of the lifetime (instances sharing an account
 * spread out), or, when the ACME server offers renewal information (RFC 9773), at a random
 * moment of the window it suggests. A failed attempt is logged with its reason and retried after acme-retry, doubling
 * each time up to a day (and never later than the certificate's expiry allows). A new certificate
 * is written, then tl_server_reload makes a new TLS generation (the SIGHUP path): new handshakes
 * use it, established connections keep theirs. Another instance holding the lock is waited for,
 * and a certificate it wrote is taken up instead of issuing again.
 *
 * Threads: the client runs on its own thread with its own loop; tl_acme_http01 and the TLS hook
 * run on worker threads (a mutex guards the challenges); the other functions belong to the
 * thread that set the server up.
 *
 * Errors: functions returning int give 0 or -1 with a one-line message in err naming the option,
 * file or step at fault.
 */
#ifndef TLSLOOP_ACME_H
#define TLSLOOP_ACME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <tlsloop/api.h>
#include <tlsloop/buf.h>
#include <tlsloop/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_acme tl_acme;

typedef enum tl_acme_challenge {
    TL_ACME_TLS_ALPN_01 = 0,
    TL_ACME_HTTP_01 = 1,
} tl_acme_challenge;

/* Where the HTTP-01 answers live (RFC 8555 section 8.3). */
#define TL_ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"

/* Add the ACME options to cfg (before any option is set). 0, or -1 (out of memory, or the
 * configuration has four option tables already). */
TL_API int tl_acme_config_init(tl_server_config *cfg);
/* Print the ACME options with their defaults, for --help. */
TL_API void tl_acme_usage(FILE *out);
/* Whether cfg asks for ACME (at least one acme-domain). */
TL_API bool tl_acme_wanted(const tl_server_config *cfg);

/* Read the ACME options of cfg, make or load the account key, the state directory and its
 * certificate (a self-signed placeholder until the first issuance), and set cfg up to serve it:
 * its file is added as cert and key, and TLS-ALPN-01 handshakes are routed to the client.
 * default_state: the directory when acme-state is not given. NULL with err set. */
TL_API tl_acme *tl_acme_new(tl_server_config *cfg, const char *default_state, char *err,
                            size_t errlen);
/* Start the client's thread for this server (made from cfg): it logs to the server's log and
 * reloads the server when a certificate arrives. 0, or -1 with err. */
TL_API int tl_acme_start(tl_acme *a, tl_server *srv, char *err, size_t errlen);
/* End the thread (a request under way is abandoned). Before tl_server_free. */
TL_API void tl_acme_stop(tl_acme *a);
/* After tl_acme_stop, once the server that used it is freed. NULL is a no-op. */
TL_API void tl_acme_free(tl_acme *a);
/* The path of the certificate file the server serves (key and chain). */
TL_API const char *tl_acme_cert_path(const tl_acme *a);

/* HTTP-01: the answer for a request path (normalised; it starts with TL_ACME_HTTP01_PREFIX):
 * appends the key authorization to out and returns 1 when its token has a pending challenge, 0
 * when not (the HTTP layer answers 404). Any thread. */
TL_API int tl_acme_http01(tl_acme *a, const char *path, tl_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_ACME_H */
