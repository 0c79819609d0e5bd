/*
 * tests/support/vhosts.h - virtual hosts for the SNI and ticket tests: certificates for named
 * hosts, a default configuration with named ones attached (tl_tls_ctx_add_name), and one
 * connection through a tp_pair that reports what it showed (vh_outcome).
 *
 * vh_init() makes, once per test process (before the tests fork), the certificates in vh, all
 * signed by the test CA of tls_pair.h (tp_init first). The configuration helpers end the test
 * (exit 1) when a call they make fails.
 */
#ifndef TLSLOOP_VHOSTS_H
#define TLSLOOP_VHOSTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tlsloop/certgen.h>
#include <tlsloop/engine.h>
#include <tlsloop/tls_ctx.h>

/* Certificates for the named hosts (vh_init). */
typedef struct vh_certs {
    tl_certgen_pair a, b, wild, exact_wild, dual_rsa, dual_ec, secure;
} vh_certs;

extern vh_certs vh;

void vh_init(void);

/* A certificate for one DNS name signed by the test CA, valid until now+not_after seconds (from
 * an hour before, or before the end when that is in the past). Exits (2) if it cannot be made. */
void vh_issue(tl_key_type key, const char *name, long not_after, tl_certgen_pair *out);

/* A server configuration with this certificate (NULL: none), versions min..max (0: defaults). */
tl_tls_ctx *vh_server(const tl_certgen_pair *cert, int min_v, int max_v);
/* Attach, or end the test with the default's message. */
void vh_attach(tl_tls_ctx *dflt, const char *name, tl_tls_ctx *named);
/* The virtual hosts most tests use: the default serves tp.ecdsa (localhost, 127.0.0.1); a.test,
 * b.test, *.wild.test and exact.wild.test have their own configurations. Versions as vh_server. */
tl_tls_ctx *vh_hosts(int min_v, int max_v);
/* vh_hosts, where the default takes no client certificates and secure.test verifies them (mode)
 * against the test CA. */
tl_tls_ctx *vh_mtls_hosts(tl_verify mode);
/* A client that does not verify: it connects to any name, to see which certificate comes. */
tl_tls_ctx *vh_loose_client(int min_v, int max_v);
/* A verifying client with the test client certificate. */
tl_tls_ctx *vh_client_with_cert(void);

/* What one connection showed. */
typedef struct vh_outcome {
    bool ok, resumed;
    char subject[256];       /* the server certificate's subject, as the client saw it */
    int key_type;            /* its key type (EVP_PKEY_EC, EVP_PKEY_RSA) */
    bool client_cert;        /* the server got a client certificate */
    int peer_ca_names;       /* CA names the server sent with its CertificateRequest */
    char version[16], cipher[64], group[32], alpn[64], sni[64];
    int tasks;               /* delegated tasks the server ran */
    char cerr[256], serr[256];
    tl_session *session;     /* the client's newest session (the caller frees it) */
} vh_outcome;

/* One connection with this SNI (NULL: no server name), offering a session, with server engine
 * flags: handshake, a request and an answer (so TLS 1.3 tickets arrive), close. */
vh_outcome vh_run(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                  unsigned sflags);
/* A connection that must succeed; prints both errors and counts a failure in *failures
 * otherwise. VH_RUN_OK counts in test.h's counter. */
vh_outcome vh_run_ok(tl_tls_ctx *cctx, tl_tls_ctx *sctx, const char *sni, tl_session *offer,
                     unsigned sflags, int *failures);
#define VH_RUN_OK(cctx, sctx, sni, offer, sflags)                                               \
    vh_run_ok((cctx), (sctx), (sni), (offer), (sflags), &test_failures_)

/* A ticket ring statistic of this configuration: 0 issued, 1 decrypted_current, 2 decrypted_old,
 * 3 unknown_key. */
uint64_t vh_ring_stat(tl_tls_ctx *s, int which);

#endif /* TLSLOOP_VHOSTS_H */
