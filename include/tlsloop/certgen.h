/*
 * tlsloop/certgen.h - make keys and X.509 certificates with OpenSSL's API, in PEM.
 *
 * What it is for: the self-signed certificate `tlsloop serve` makes on first start, and the test
 * CAs and certificates the tests and benchmarks make at run time (no private key is ever committed).
 * It can make a self-signed certificate, a CA, and leaf certificates signed by such a CA, with DNS
 * and IP subjectAltNames, RSA or ECDSA keys, and any validity window (also one already expired).
 * A CA can be name-constrained (permit_dns, permit_ip): the local CA of `tlsloop serve` can then
 * vouch for localhost and loopback addresses only, whoever trusts it and whatever leaks.
 *
 * Ownership: a tl_certgen_pair owns two heap strings; tl_certgen_pair_free releases them.
 * Thread-safety: every function is safe to call from several threads at once.
 * Errors: functions return 0 on success, or -1 with a one-line message in err (when err is not
 * NULL; errlen bytes at most, always NUL-terminated) that names what failed.
 */
#ifndef TLSLOOP_CERTGEN_H
#define TLSLOOP_CERTGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tl_key_type {
    TL_KEY_ECDSA_P256 = 0,
    TL_KEY_ECDSA_P384,
    TL_KEY_RSA_2048,
    TL_KEY_RSA_3072,
} tl_key_type;

typedef struct tl_certgen_spec {
    tl_key_type key;               /* type of the new key */
    const char *common_name;       /* subject CN; NULL: the first DNS name, else "tlsloop" */
    const char *const *dns_names;  /* subjectAltName DNS entries (wildcards allowed) */
    size_t n_dns;
    const char *const *ip_addrs;   /* subjectAltName IP entries, IPv4 or IPv6 text */
    size_t n_ip;
    bool is_ca;                    /* basicConstraints CA:TRUE and keyCertSign */
    long not_before;               /* validity start, seconds relative to now (e.g. -3600) */
    long not_after;                /* validity end, seconds relative to now (negative: expired) */
    /* CA only: a critical nameConstraints extension whose permitted subtrees are these DNS
     * names (each also covers its subdomains: "localhost" permits "a.localhost") and IP ranges
     * in CIDR form ("127.0.0.0/8", "::1/128"). Leaves the CA signs for other names fail to
     * verify (X509_V_ERR_PERMITTED_VIOLATION). None given: no such extension. */
    const char *const *permit_dns;
    size_t n_permit_dns;
    const char *const *permit_ip;
    size_t n_permit_ip;
} tl_certgen_spec;

typedef struct tl_certgen_pair {
    char *cert_pem;  /* NUL-terminated PEM certificate */
    char *key_pem;   /* NUL-terminated PEM private key (PKCS#8, unencrypted) */
} tl_certgen_pair;

/* Make a new key and a certificate for it. issuer NULL: self-signed; otherwise signed by issuer's
 * key, with issuer's subject as the issuer name (issuer should be a CA made here or elsewhere).
 * The serial number is random; the signature uses SHA-256. On success out holds new strings. */
TL_API int tl_certgen_issue(const tl_certgen_spec *spec, const tl_certgen_pair *issuer,
                            tl_certgen_pair *out, char *err, size_t errlen);

/* The local CA of `tlsloop serve`'s default set-up: ECDSA P-256, CN "tlsloop local CA", valid
 * for ten years, name-constrained (critical) to DNS localhost (and its subdomains) and the IP
 * ranges 127.0.0.0/8 and ::1/128. Leaves it signs should live TL_CERTGEN_LOCAL_LEAF_DAYS days
 * at most. */
#define TL_CERTGEN_LOCAL_LEAF_DAYS 90
TL_API tl_certgen_spec tl_certgen_local_ca_spec(void);

/* Write the certificate and the key to files. The key file is created with mode 0600; cert_path
 * or key_path may be NULL to skip that file. */
TL_API int tl_certgen_write(const tl_certgen_pair *pair, const char *cert_path,
                            const char *key_path, char *err, size_t errlen);

/* Free the strings of a pair (NULL-safe) and zero it. */
TL_API void tl_certgen_pair_free(tl_certgen_pair *pair);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_CERTGEN_H */
