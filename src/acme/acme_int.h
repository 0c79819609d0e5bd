/*
 * src/acme/acme_int.h - the ACME client's private structures and helpers, shared by acme*.c only.
 *
 * Files, from the bottom up: acme_jws.c (base64url, keys, JWK and its thumbprint, JWS ES256, the
 * CSR and the TLS-ALPN-01 validation certificate: pure OpenSSL, no I/O but key files), acme_http.c
 * (one HTTP exchange over tlsloop's client on the ACME thread's private loop), acme_chal.c (the
 * challenges being answered, shared with the worker threads), acme_proto.c (RFC 8555: directory,
 * nonces, account, order, authorizations, finalize, download), acme.c (options, state directory,
 * the thread, renewal, the lock file, the swap into the server).
 */
#ifndef TLSLOOP_ACME_INT_H
#define TLSLOOP_ACME_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <tlsloop/acme.h>
#include <tlsloop/client.h>
#include <tlsloop/log.h>
#include <tlsloop/loop.h>
#include <tlsloop/server.h>
#include <tlsloop/tls_ctx.h>

#include "util/tli.h"

/* ---- acme_jws.c ---- */

/* base64url without padding (RFC 7515 section 2) of p[0..n): a new string, or NULL. */
char *tli_b64url(const void *p, size_t n);
/* Decode base64url (no padding); a new buffer (*out, *outlen), 0 or -1 on bad input. */
int tli_b64url_decode(const char *s, uint8_t **out, size_t *outlen);
/* A new ECDSA P-256 key, or NULL with err. */
EVP_PKEY *tli_acme_key_new(char *err, size_t errlen);
/* Load a PEM private key (must be ECDSA P-256), or NULL with err. */
EVP_PKEY *tli_acme_key_load(const char *path, char *err, size_t errlen);
/* The key's PEM text (PKCS#8), a new string or NULL. */
char *tli_acme_key_pem(EVP_PKEY *key);
/* The public key as a JWK (RFC 7517), members in the order RFC 7638 hashes them:
 * {"crv":"P-256","kty":"EC","x":"...","y":"..."}. A new string, or NULL. */
char *tli_acme_jwk(EVP_PKEY *key);
/* The RFC 7638 thumbprint: base64url(SHA-256(jwk)). A new string, or NULL. */
char *tli_acme_thumbprint(EVP_PKEY *key);
/* The key authorization of a challenge: token "." thumbprint (RFC 8555 section 8.1). */
char *tli_acme_key_authz(const char *token, const char *thumbprint);
/* ES256 over data: the raw r||s form (64 bytes) JWS wants (RFC 7518 section 3.4), not DER.
 * 0 or -1. */
int tli_acme_es256(EVP_PKEY *key, const void *data, size_t n, uint8_t sig[64]);
/* A flattened JWS (RFC 7515 section 7.2.2) as ACME wants it: protected header with alg ES256,
 * nonce, url and either jwk (kid NULL) or kid; payload NULL is POST-as-GET (an empty payload).
 * A new string, or NULL with err. */
char *tli_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                   const char *payload, char *err, size_t errlen);
/* A CSR (DER, base64url) for these names (the first is also the CN), signed by key. */
char *tli_acme_csr(EVP_PKEY *key, const char *const *names, size_t n, char *err, size_t errlen);
/* The TLS-ALPN-01 validation certificate (RFC 8737 section 3): self-signed by key, SAN dNSName
 * name, the critical id-pe-acmeIdentifier extension holding SHA-256(key_authz). PEM, new. */
char *tli_acme_alpn_cert(EVP_PKEY *key, const char *name, const char *key_authz, char *err,
                         size_t errlen);
/* The leaf's validity of a PEM chain, and whether it is self-issued (subject == issuer, as the
 * placeholder is). 0, or -1 when there is no certificate. */
int tli_acme_cert_times(const char *pem, int64_t *not_before, int64_t *not_after,
                        bool *self_issued);
/* RFC 9773's certificate identifier of a PEM chain's leaf: base64url(authority key identifier)
 * "." base64url(serial number's DER content octets). New, or NULL with err. */
char *tli_acme_ari_id(const char *pem, char *err, size_t errlen);
/* An RFC 3339 date-time ("2025-01-02T03:04:05Z", fractions and +hh:mm allowed) as Unix time.
 * 0, or -1. */
int tli_acme_parse_time(const char *s, int64_t *out);

/* ---- acme_http.c ---- */

typedef struct tli_acme_resp {
    int status;
    char *body;                    /* NUL-terminated */
    size_t len;
    char *location, *nonce, *retry_after, *content_type;
} tli_acme_resp;
void tli_acme_resp_free(tli_acme_resp *r);

/* ---- the client object ---- */

typedef struct tli_acme_http01 {
    char *token, *key_authz;
} tli_acme_http01;

typedef struct tli_acme_alpn01 {
    char *name;                    /* lower case */
    char *key_authz;
    tl_tls_ctx *tls;               /* the validation configuration (owned) */
    bool foreign;                  /* another instance's, from its shared file */
} tli_acme_alpn01;

struct tl_acme {
    /* configuration (fixed after tl_acme_new) */
    char *directory, *ca_file, *email, *state;
    char **domains;
    size_t n_domains;
    tl_acme_challenge challenge;
    uint64_t retry_ms, retry_max_ms;
    double renew_fraction;         /* of the lifetime, from notBefore (2/3) */
    char cert_path[4096], lock_path[4096], account_path[4096];

    /* the running client (the ACME thread) */
    tl_server *srv;
    tl_log *log;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;          /* stopping, cond */
    pthread_cond_t cond;
    bool stopping;
    tl_loop *loop;                 /* the ACME thread's own */
    tl_client *client;
    tl_work stop_work;
    EVP_PKEY *account_key;
    char *thumbprint;
    char *kid;                     /* the account URL */
    char *nonce;                   /* the next Replay-Nonce to use */
    char *url_nonce, *url_account, *url_order;
    char *url_renewal;             /* renewalInfo (RFC 9773), NULL when not offered */
    atomic_uint_fast64_t issued, failures;

    /* the challenges being answered (chal_lock): read by worker threads */
    pthread_mutex_t chal_lock;
    tli_acme_http01 *http;
    size_t n_http;
    tli_acme_alpn01 *alpn;
    size_t n_alpn;
    /* validation configurations no longer answered: kept until tl_acme_free, since a handshake
     * that switched to one may still be using it */
    tl_tls_ctx **retired;
    size_t n_retired;
};

#define ALOG(a, level, ...) tl_log_write((a)->log, TL_LOG_##level, "acme: " __VA_ARGS__)

/* acme_http.c: one exchange, a new connection each (Connection: close); ctype and body NULL for
 * a GET or HEAD. 0 with *r filled (any status), or -1 with err (no answer). */
int tli_acme_http(tl_acme *a, const char *method, const char *url, const char *ctype,
                  const char *body, tli_acme_resp *r, char *err, size_t errlen);
/* acme_http.c: sleep up to ms on the ACME thread; false when tl_acme_stop asks it to end. */
bool tli_acme_sleep(tl_acme *a, uint64_t ms);

/* acme_chal.c: answer a challenge from now on (also written to challenges/ in the state
 * directory, for other instances sharing it); stop answering it. 0 or -1 with err. */
int tli_acme_chal_http_add(tl_acme *a, const char *token, const char *key_authz);
void tli_acme_chal_http_del(tl_acme *a, const char *token);
int tli_acme_chal_alpn_add(tl_acme *a, const char *name, const char *key_authz, char *err,
                           size_t errlen);
void tli_acme_chal_alpn_del(tl_acme *a, const char *name);
void tli_acme_chal_free(tl_acme *a);
/* The ClientHello hook given to the server (tl_server_config_set_alpn_switch); data is a. */
tl_tls_ctx *tli_acme_alpn_switch(const char *sni, void *data);

/* acme_proto.c: one whole issuance for the configured names: account, order, challenges,
 * finalize, download. On success *pem is the new key followed by the chain. 0, or -1 with err. */
int tli_acme_issue(tl_acme *a, const char *replaces, char **pem, char *err, size_t errlen);
/* acme_proto.c: the renewal window the ACME server suggests for the certificate with this ARI
 * identifier (RFC 9773; GET renewalInfo/ID): 1 with *start and *end, 0 when the server offers no
 * renewal information, -1 with err. */
int tli_acme_renewal_info(tl_acme *a, const char *ari_id, int64_t *start, int64_t *end,
                          char *err, size_t errlen);

#endif /* TLSLOOP_ACME_INT_H */
