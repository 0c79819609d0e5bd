/* certgen.c - keys and X.509 certificates in PEM, made with OpenSSL 3 (see tlsloop/certgen.h). */

/* The GNU strerror_r (it returns the text) keeps error messages thread-safe; the build usually
 * defines this already. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tlsloop/certgen.h>

#define CERT_FILE_MODE 0644
#define KEY_FILE_MODE 0600

/* ---- error messages ---- */

static void vset_err(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    /* Whatever OpenSSL queued for this failure is reported (or irrelevant) now; a stale queue
     * would confuse the next SSL_get_error on this thread. */
    ERR_clear_error();
}

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_err(err, errlen, fmt, ap);
    va_end(ap);
}

/* "<what>: <OpenSSL's reason>", from the oldest error queued, which is usually the cause. */
__attribute__((format(printf, 3, 4)))
static void set_ssl_err(char *err, size_t errlen, const char *fmt, ...)
{
    char what[512], reason[256] = "no detail from OpenSSL";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    unsigned long code = ERR_get_error();
    if (code != 0)
        ERR_error_string_n(code, reason, sizeof(reason));
    set_err(err, errlen, "%s: %s", what, reason);
}

static void set_errno_err(char *err, size_t errlen, const char *what, const char *path, int e)
{
    char buf[256];
    set_err(err, errlen, "%s '%s': %s", what, path, strerror_r(e, buf, sizeof(buf)));
}

/* ---- checking the spec ---- */

static const char *key_type_name(tl_key_type t)
{
    switch (t) {
    case TL_KEY_ECDSA_P256: return "ECDSA P-256";
    case TL_KEY_ECDSA_P384: return "ECDSA P-384";
    case TL_KEY_RSA_2048: return "RSA-2048";
    case TL_KEY_RSA_3072: return "RSA-3072";
    }
    return NULL;
}

/* A subjectAltName dNSName is an IA5String: printable ASCII, and a host name has no spaces. */
static bool dns_name_ok(const char *name)
{
    if (!name || !*name)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

static bool ip_addr_ok(const char *text)
{
    if (!text)
        return false;
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(text);
    ASN1_OCTET_STRING_free(ip);
    return ip != NULL;
}

/* An IP range "ADDR/BITS" as a name constraint's base: the address (masked) then the mask, 8
 * bytes for IPv4 and 32 for IPv6 (RFC 5280 section 4.2.1.10). NULL when it is not one. */
static ASN1_OCTET_STRING *cidr_to_nc(const char *text)
{
    char addr[64];
    const char *slash = text ? strchr(text, '/') : NULL;
    if (!slash || (size_t)(slash - text) >= sizeof addr)
        return NULL;
    memcpy(addr, text, (size_t)(slash - text));
    addr[slash - text] = 0;
    char *end;
    errno = 0;
    long bits = strtol(slash + 1, &end, 10);
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(addr);
    if (!ip || !slash[1] || *end || errno || bits < 0 || bits > ASN1_STRING_length(ip) * 8) {
        ASN1_OCTET_STRING_free(ip);
        return NULL;
    }
    int n = ASN1_STRING_length(ip);
    unsigned char buf[32];
    memcpy(buf, ASN1_STRING_get0_data(ip), (size_t)n);
    for (int i = 0; i < n; i++) {
        long b = bits - 8L * i;
        unsigned char m = b >= 8 ? 0xff : b <= 0 ? 0 : (unsigned char)(0xff << (8 - b));
        buf[i] &= m;
        buf[n + i] = m;
    }
    if (!ASN1_OCTET_STRING_set(ip, buf, 2 * n)) {
        ASN1_OCTET_STRING_free(ip);
        return NULL;
    }
    return ip;
}

/* Everything a caller can get wrong is checked before the (slow) key generation. */
static int check_spec(const tl_certgen_spec *spec, char *err, size_t errlen)
{
    if (!key_type_name(spec->key)) {
        set_err(err, errlen, "unknown key type %d", (int)spec->key);
        return -1;
    }
    if ((spec->n_dns && !spec->dns_names) || (spec->n_ip && !spec->ip_addrs)) {
        set_err(err, errlen, "dns_names or ip_addrs is NULL but its count is not zero");
        return -1;
    }
    for (size_t i = 0; i < spec->n_dns; i++) {
        if (!dns_name_ok(spec->dns_names[i])) {
            set_err(err, errlen, "invalid DNS name '%s'",
                    spec->dns_names[i] ? spec->dns_names[i] : "(null)");
            return -1;
        }
    }
    for (size_t i = 0; i < spec->n_ip; i++) {
        if (!ip_addr_ok(spec->ip_addrs[i])) {
            set_err(err, errlen, "invalid IP address '%s'",
                    spec->ip_addrs[i] ? spec->ip_addrs[i] : "(null)");
            return -1;
        }
    }
    if ((spec->n_permit_dns && !spec->permit_dns) || (spec->n_permit_ip && !spec->permit_ip)) {
        set_err(err, errlen, "permit_dns or permit_ip is NULL but its count is not zero");
        return -1;
    }
    if ((spec->n_permit_dns || spec->n_permit_ip) && !spec->is_ca) {
        set_err(err, errlen, "name constraints (permit_dns, permit_ip) are for a CA only");
        return -1;
    }
    for (size_t i = 0; i < spec->n_permit_dns; i++) {
        if (!dns_name_ok(spec->permit_dns[i])) {
            set_err(err, errlen, "invalid permitted DNS name '%s'",
                    spec->permit_dns[i] ? spec->permit_dns[i] : "(null)");
            return -1;
        }
    }
    for (size_t i = 0; i < spec->n_permit_ip; i++) {
        ASN1_OCTET_STRING *nc = cidr_to_nc(spec->permit_ip[i]);
        ASN1_OCTET_STRING_free(nc);
        if (!nc) {
            set_err(err, errlen, "invalid permitted IP range '%s' (expected ADDR/BITS, such as "
                    "127.0.0.0/8)", spec->permit_ip[i] ? spec->permit_ip[i] : "(null)");
            return -1;
        }
    }
    if (spec->not_after < spec->not_before) {
        set_err(err, errlen, "validity ends (%ld s) before it starts (%ld s)", spec->not_after,
                spec->not_before);
        return -1;
    }
    return 0;
}

/* ---- the issuer ---- */

/* An encrypted issuer key fails to load instead of prompting on the terminal, which is what
 * OpenSSL's default password callback would do. */
static int no_password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int load_issuer(const tl_certgen_pair *issuer, X509 **cert, EVP_PKEY **key, char *err,
                       size_t errlen)
{
    if (!issuer->cert_pem || !issuer->key_pem) {
        set_err(err, errlen, "issuer has no certificate or no key");
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(issuer->cert_pem, -1);
    *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!*cert) {
        set_ssl_err(err, errlen, "reading the issuer certificate");
        return -1;
    }
    bio = BIO_new_mem_buf(issuer->key_pem, -1);
    *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_password_cb, NULL) : NULL;
    BIO_free(bio);
    if (!*key) {
        set_ssl_err(err, errlen, "reading the issuer key (an unencrypted PEM key)");
        return -1;
    }
    if (X509_check_private_key(*cert, *key) != 1) {
        set_ssl_err(err, errlen, "the issuer key does not match the issuer certificate");
        return -1;
    }
    return 0;
}

/* ---- the new key ---- */

static EVP_PKEY *make_key(tl_key_type type, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    switch (type) {
    case TL_KEY_ECDSA_P256: key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); break;
    case TL_KEY_ECDSA_P384: key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"); break;
    case TL_KEY_RSA_2048: key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048); break;
    case TL_KEY_RSA_3072: key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072); break;
    }
    if (!key)
        set_ssl_err(err, errlen, "generating a %s key", key_type_name(type));
    return key;
}

static bool key_is_rsa(EVP_PKEY *key)
{
    return EVP_PKEY_is_a(key, "RSA");
}

/* ---- the certificate ---- */

/* 64 random bits; zero is redrawn because RFC 5280 wants a positive serial number. */
static int set_serial(X509 *x)
{
    uint64_t v = 0;
    while (v == 0)
        if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
            return -1;
    return ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), v) == 1 ? 0 : -1;
}

static const char *subject_cn(const tl_certgen_spec *spec)
{
    if (spec->common_name)
        return spec->common_name;
    return spec->n_dns ? spec->dns_names[0] : "tlsloop";
}

static int set_subject(X509 *x, const tl_certgen_spec *spec, char *err, size_t errlen)
{
    const char *cn = subject_cn(spec);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                    -1, 0)) {
        set_ssl_err(err, errlen, "setting the subject CN '%s'", cn);
        return -1;
    }
    return 0;
}

/* Both ends come from one reading of the clock, so the window is exactly what the spec says. */
static int set_validity(X509 *x, const tl_certgen_spec *spec, char *err, size_t errlen)
{
    time_t now = time(NULL);
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, spec->not_before, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, spec->not_after, &now)) {
        set_ssl_err(err, errlen, "setting the validity period");
        return -1;
    }
    return 0;
}

static int set_identity(X509 *x, EVP_PKEY *key, const tl_certgen_spec *spec, X509 *icert,
                        char *err, size_t errlen)
{
    if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) != 0) {
        set_ssl_err(err, errlen, "setting the version and serial number");
        return -1;
    }
    if (set_subject(x, spec, err, errlen) != 0 || set_validity(x, spec, err, errlen) != 0)
        return -1;
    X509_NAME *iname = icert ? X509_get_subject_name(icert) : X509_get_subject_name(x);
    if (!X509_set_issuer_name(x, iname) || !X509_set_pubkey(x, key)) {
        set_ssl_err(err, errlen, "setting the issuer name and public key");
        return -1;
    }
    return 0;
}

static int push_name(GENERAL_NAMES *names, int type, ASN1_STRING *value)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!gn) {
        ASN1_STRING_free(value);
        return -1;
    }
    GENERAL_NAME_set0_value(gn, type, value);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return -1;
    }
    return 0;
}

static int fill_names(GENERAL_NAMES *names, const tl_certgen_spec *spec)
{
    for (size_t i = 0; i < spec->n_dns; i++) {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (!dns || !ASN1_STRING_set(dns, spec->dns_names[i], -1)) {
            ASN1_IA5STRING_free(dns);
            return -1;
        }
        if (push_name(names, GEN_DNS, dns) != 0)
            return -1;
    }
    for (size_t i = 0; i < spec->n_ip; i++) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(spec->ip_addrs[i]);
        if (!ip || push_name(names, GEN_IPADD, ip) != 0)
            return -1;
    }
    return 0;
}

static int add_san(X509 *x, const tl_certgen_spec *spec, char *err, size_t errlen)
{
    if (spec->n_dns == 0 && spec->n_ip == 0)
        return 0;
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    int ok = names && fill_names(names, spec) == 0 &&
             X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(names);
    if (!ok) {
        set_ssl_err(err, errlen, "adding the subjectAltName extension");
        return -1;
    }
    return 0;
}

static int push_subtree(NAME_CONSTRAINTS *nc, int type, ASN1_STRING *value)
{
    GENERAL_SUBTREE *st = value ? GENERAL_SUBTREE_new() : NULL;
    if (!st) {
        ASN1_STRING_free(value);
        return -1;
    }
    GENERAL_NAME_set0_value(st->base, type, value);
    if (!sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st)) {
        GENERAL_SUBTREE_free(st);
        return -1;
    }
    return 0;
}

/* A critical nameConstraints extension with the spec's permitted subtrees. */
static int add_name_constraints(X509 *x, const tl_certgen_spec *spec, char *err, size_t errlen)
{
    if (spec->n_permit_dns == 0 && spec->n_permit_ip == 0)
        return 0;
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    int ok = nc && (nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null()) != NULL;
    for (size_t i = 0; ok && i < spec->n_permit_dns; i++) {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns && !ASN1_STRING_set(dns, spec->permit_dns[i], -1)) {
            ASN1_IA5STRING_free(dns);
            dns = NULL;
        }
        ok = push_subtree(nc, GEN_DNS, dns) == 0;
    }
    for (size_t i = 0; ok && i < spec->n_permit_ip; i++)
        ok = push_subtree(nc, GEN_IPADD, cidr_to_nc(spec->permit_ip[i])) == 0;
    ok = ok && X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT) == 1;
    NAME_CONSTRAINTS_free(nc);
    if (!ok) {
        set_ssl_err(err, errlen, "adding the nameConstraints extension");
        return -1;
    }
    return 0;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, char *err,
                   size_t errlen)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!ok) {
        set_ssl_err(err, errlen, "adding the %s extension '%s'", OBJ_nid2sn(nid), value);
        return -1;
    }
    return 0;
}

static const char *key_usage(const tl_certgen_spec *spec, EVP_PKEY *key)
{
    if (spec->is_ca)
        return "critical,keyCertSign,cRLSign,digitalSignature";
    /* TLS 1.2's RSA key exchange encrypts to the key; ECDSA keys only ever sign. */
    return key_is_rsa(key) ? "critical,digitalSignature,keyEncipherment"
                           : "critical,digitalSignature";
}

/* icert NULL: self-signed, so the certificate is its own issuer for the authorityKeyIdentifier. */
static int add_extensions(X509 *x, EVP_PKEY *key, const tl_certgen_spec *spec, X509 *icert,
                          char *err, size_t errlen)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, icert ? icert : x, x, NULL, NULL, 0);
    const char *bc = spec->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
    /* The subject key identifier goes first: a self-signed certificate's authority key
     * identifier is copied from it. An issuer made elsewhere may lack one, hence the
     * issuer+serial fallback. */
    const char *akid = icert ? "keyid,issuer" : "keyid:always";
    if (add_ext(x, &ctx, NID_basic_constraints, bc, err, errlen) != 0 ||
        add_ext(x, &ctx, NID_key_usage, key_usage(spec, key), err, errlen) != 0 ||
        (!spec->is_ca &&
         add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth", err, errlen) != 0) ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash", err, errlen) != 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, akid, err, errlen) != 0)
        return -1;
    if (add_name_constraints(x, spec, err, errlen) != 0)
        return -1;
    return add_san(x, spec, err, errlen);
}

static X509 *build_cert(const tl_certgen_spec *spec, EVP_PKEY *key, X509 *icert,
                        EVP_PKEY *sign_key, char *err, size_t errlen)
{
    X509 *x = X509_new();
    if (!x) {
        set_ssl_err(err, errlen, "allocating a certificate");
        return NULL;
    }
    if (set_identity(x, key, spec, icert, err, errlen) != 0 ||
        add_extensions(x, key, spec, icert, err, errlen) != 0)
        goto fail;
    if (X509_sign(x, sign_key, EVP_sha256()) <= 0) {
        set_ssl_err(err, errlen, "signing the certificate");
        goto fail;
    }
    return x;
fail:
    X509_free(x);
    return NULL;
}

tl_certgen_spec tl_certgen_local_ca_spec(void)
{
    static const char *const dns[] = {"localhost"};
    static const char *const ips[] = {"127.0.0.0/8", "::1/128"};
    return (tl_certgen_spec){.key = TL_KEY_ECDSA_P256, .common_name = "tlsloop local CA",
                             .is_ca = true, .not_before = -3600, .not_after = 10L * 365 * 86400,
                             .permit_dns = dns, .n_permit_dns = 1, .permit_ip = ips,
                             .n_permit_ip = 2};
}

/* ---- PEM ---- */

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    memcpy(s, data, (size_t)len);
    s[len] = '\0';
    return s;
}

static char *cert_to_pem(X509 *x, char *err, size_t errlen)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = bio && PEM_write_bio_X509(bio, x) ? bio_to_string(bio) : NULL;
    BIO_free(bio);
    if (!pem)
        set_ssl_err(err, errlen, "writing the certificate as PEM");
    return pem;
}

/* A secure-memory BIO is wiped when freed, so no copy of the key is left behind in the heap. */
static char *key_to_pem(EVP_PKEY *key, char *err, size_t errlen)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    char *pem = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                    ? bio_to_string(bio)
                    : NULL;
    BIO_free(bio);
    if (!pem)
        set_ssl_err(err, errlen, "writing the private key as PEM");
    return pem;
}

/* ---- the API ---- */

static int issue(const tl_certgen_spec *spec, const tl_certgen_pair *issuer,
                 tl_certgen_pair *made, char *err, size_t errlen)
{
    X509 *icert = NULL, *x = NULL;
    EVP_PKEY *ikey = NULL, *key = NULL;
    int rc = -1;
    if (check_spec(spec, err, errlen) != 0)
        return -1;
    if (issuer && load_issuer(issuer, &icert, &ikey, err, errlen) != 0)
        goto done;
    if (!(key = make_key(spec->key, err, errlen)))
        goto done;
    if (!(x = build_cert(spec, key, icert, ikey ? ikey : key, err, errlen)))
        goto done;
    if (!(made->cert_pem = cert_to_pem(x, err, errlen)) ||
        !(made->key_pem = key_to_pem(key, err, errlen)))
        goto done;
    rc = 0;
done:
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(icert);
    EVP_PKEY_free(ikey);
    return rc;
}

int tl_certgen_issue(const tl_certgen_spec *spec, const tl_certgen_pair *issuer,
                     tl_certgen_pair *out, char *err, size_t errlen)
{
    if (!spec || !out) {
        set_err(err, errlen, "tl_certgen_issue: spec and out must not be NULL");
        return -1;
    }
    /* Built aside and stored last: out may be the issuer itself, and on failure out is left
     * empty, so freeing it then is always safe. */
    tl_certgen_pair made = {0};
    if (issue(spec, issuer, &made, err, errlen) != 0) {
        tl_certgen_pair_free(&made);
        *out = (tl_certgen_pair){0};
        return -1;
    }
    *out = made;
    return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_file(const char *path, const char *data, mode_t mode, const char *what,
                      char *err, size_t errlen)
{
    char action[64];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(action, sizeof(action), "opening %s file", what);
        set_errno_err(err, errlen, action, path, errno);
        return -1;
    }
    /* open's mode applies only to a new file, minus the umask. Set it before writing, so a key
     * never sits in a file others may read. */
    if (fchmod(fd, mode) != 0 || write_all(fd, data, strlen(data)) != 0) {
        int e = errno;
        close(fd);
        snprintf(action, sizeof(action), "writing %s file", what);
        set_errno_err(err, errlen, action, path, e);
        return -1;
    }
    /* close reports delayed write errors on some file systems (NFS). */
    if (close(fd) != 0) {
        snprintf(action, sizeof(action), "closing %s file", what);
        set_errno_err(err, errlen, action, path, errno);
        return -1;
    }
    return 0;
}

int tl_certgen_write(const tl_certgen_pair *pair, const char *cert_path, const char *key_path,
                     char *err, size_t errlen)
{
    if (!pair || (cert_path && !pair->cert_pem) || (key_path && !pair->key_pem)) {
        set_err(err, errlen, "tl_certgen_write: the pair has nothing to write to a given path");
        return -1;
    }
    if (cert_path && write_file(cert_path, pair->cert_pem, CERT_FILE_MODE, "certificate", err,
                                errlen) != 0)
        return -1;
    if (key_path && write_file(key_path, pair->key_pem, KEY_FILE_MODE, "key", err, errlen) != 0)
        return -1;
    return 0;
}

void tl_certgen_pair_free(tl_certgen_pair *pair)
{
    if (!pair)
        return;
    /* The key text is secret: wipe it before giving the memory back. */
    if (pair->key_pem)
        OPENSSL_cleanse(pair->key_pem, strlen(pair->key_pem));
    free(pair->key_pem);
    free(pair->cert_pem);
    pair->key_pem = NULL;
    pair->cert_pem = NULL;
}
