/*
 * tests/support/kdf_compare.h - tlsloop's KDFs and HMAC (the TL_KDF_TLSLOOP opt-in,
 * src/tls/tls_ctx_kdf.c) beside OpenSSL's default provider, for the tests that compare them:
 * the property queries that pick either, the opt-in itself, random sizes, the digests to try.
 */
#ifndef TLSLOOP_KDF_COMPARE_H
#define TLSLOOP_KDF_COMPARE_H

extern const char *const kc_ours;     /* "provider=tlsloop" */
extern const char *const kc_theirs;   /* "provider=default" */

/* A random number below n (0 for n 0). */
unsigned kc_rnd(unsigned n);
/* The query of a configuration that opts in (and loads the provider). */
const char *kc_propq(void);
/* Opt in: tp_server_ctx and tp_client_ctx ask for tlsloop's, which loads the provider. Ends the
 * test (exit 1) if the opt-in does not take. */
void kc_opt_in(void);

/* The digests tlsloop computes, in several spellings. */
extern const char *const kc_digests[4];
/* Not computed by tlsloop: handed to the default provider. */
extern const char *const kc_other_digests[3];

#endif /* TLSLOOP_KDF_COMPARE_H */
