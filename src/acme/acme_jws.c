/* acme_jws.c - the ACME client's cryptography, with OpenSSL: base64url, ECDSA P-256 keys and
 * their files, the JWK and its RFC 7638 thumbprint, JWS ES256 (RFC 7515, 7518), the CSR, and
 * the TLS-ALPN-01 validation certificate (RFC 8737). No sockets: tests/unit/acme/. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "acme/acme_int.h"
#include "tls/tli_tls.h"

/* ---- base64url -------------------------------------------------------------------------- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *tli_b64url(const void *data, size_t n)
{
    const uint8_t *p = data;
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = B64URL[v >> 18];
        *o++ = B64URL[v >> 12 & 63];
        *o++ = B64URL[v >> 6 & 63];
        *o++ = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = B64URL[v >> 18];
        *o++ = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = B64URL[v >> 18];
        *o++ = B64URL[v >> 12 & 63];
        *o++ = B64URL[v >> 6 & 63];
    }
    *o = 0;
    return out;
}

static int b64url_value(char c)
{
    const char *p = c ? strchr(B64URL, c) : NULL;
    return p ? (int)(p - B64URL) : -1;
}

int tli_b64url_decode(const char *s, uint8_t **out, size_t *outlen)
{
    size_t n = strlen(s);
    if (n % 4 == 1)
        return -1;
    uint8_t *buf = malloc(n / 4 * 3 + 3), *o = buf;
    if (!buf)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
    }
    /* The bits left over must be zero: one text, one value. */
    if (acc & ((1u << bits) - 1)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = (size_t)(o - buf);
    return 0;
}

/* ---- keys ------------------------------------------------------------------------------- */

static void ssl_err(char *err, size_t errlen, const char *what)
{
    char why[300];
    tli_drain_errors(why, sizeof why, "");
    tli_fmt(err, errlen, "%s%s%s", what, *why ? ": " : "", why);
}

EVP_PKEY *tli_acme_key_new(char *err, size_t errlen)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        ssl_err(err, errlen, "cannot make an ECDSA P-256 key");
    return k;
}

static bool is_p256(EVP_PKEY *k)
{
    char group[32];
    return EVP_PKEY_is_a(k, "EC") &&
           EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                          NULL) &&
           (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"));
}

EVP_PKEY *tli_acme_key_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        tli_fmt(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        char what[4200];
        tli_fmt(what, sizeof what, "%s: no PEM private key in the file", path);
        ssl_err(err, errlen, what);
        return NULL;
    }
    if (!is_p256(k)) {
        tli_fmt(err, errlen, "%s: not an ECDSA P-256 key (ACME's ES256 needs one); move it away "
                "and a new one is made", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

char *tli_acme_key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *p;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) {
        long n = BIO_get_mem_data(b, &p);
        if (n > 0 && (out = malloc((size_t)n + 1))) {
            memcpy(out, p, (size_t)n);
            out[n] = 0;
        }
    }
    BIO_free(b);
    return out;
}

/* ---- JWK, thumbprint, JWS --------------------------------------------------------------- */

char *tli_acme_jwk(EVP_PKEY *key)
{
    BIGNUM *x = NULL, *y = NULL;
    uint8_t bx[32], by[32];
    char *out = NULL, *sx = NULL, *sy = NULL;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) &&
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) &&
        BN_bn2binpad(x, bx, 32) == 32 && BN_bn2binpad(y, by, 32) == 32 &&
        (sx = tli_b64url(bx, 32)) && (sy = tli_b64url(by, 32)) &&
        asprintf(&out, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", sx, sy) < 0)
        out = NULL;
    BN_free(x);
    BN_free(y);
    free(sx);
    free(sy);
    return out;
}

char *tli_acme_thumbprint(EVP_PKEY *key)
{
    char *jwk = tli_acme_jwk(key);
    uint8_t md[32];
    unsigned mdlen = 0;
    char *out = NULL;
    if (jwk && EVP_Digest(jwk, strlen(jwk), md, &mdlen, EVP_sha256(), NULL) && mdlen == 32)
        out = tli_b64url(md, 32);
    free(jwk);
    return out;
}

char *tli_acme_key_authz(const char *token, const char *thumbprint)
{
    char *out;
    return asprintf(&out, "%s.%s", token, thumbprint) < 0 ? NULL : out;
}

int tli_acme_es256(EVP_PKEY *key, const void *data, size_t n, uint8_t sig[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t derlen = sizeof der;
    int rc = -1;
    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) > 0 &&
        EVP_DigestSign(md, der, &derlen, data, n) > 0) {
        /* DER ECDSA-Sig-Value { r INTEGER, s INTEGER } to the fixed-width r||s of RFC 7518. */
        const uint8_t *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
        if (es && BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32)
            rc = 0;
        ECDSA_SIG_free(es);
    }
    EVP_MD_CTX_free(md);
    return rc;
}

/* A JSON string's text with quotes and backslashes escaped (URLs and nonces need none in
 * practice; a server's odd value must still not break the header). */
static char *json_str(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n * 6 + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            o += sprintf(o, "\\u%04x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = 0;
    return out;
}

char *tli_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                   const char *payload, char *err, size_t errlen)
{
    char *who = NULL, *hdr = NULL, *ph = NULL, *pp = NULL, *input = NULL, *sig = NULL;
    char *jn = json_str(nonce), *ju = json_str(url), *out = NULL;
    uint8_t raw[64];
    if (kid) {
        char *jk = json_str(kid);
        if (jk && asprintf(&who, "\"kid\":%s", jk) < 0)
            who = NULL;
        free(jk);
    } else {
        char *jwk = tli_acme_jwk(key);
        if (jwk && asprintf(&who, "\"jwk\":%s", jwk) < 0)
            who = NULL;
        free(jwk);
    }
    bool ok = jn && ju && who &&
              asprintf(&hdr, "{\"alg\":\"ES256\",%s,\"nonce\":%s,\"url\":%s}", who, jn, ju) >= 0;
    if (!ok)
        hdr = NULL;
    ok = ok && (ph = tli_b64url(hdr, strlen(hdr))) &&
         (pp = payload ? tli_b64url(payload, strlen(payload)) : strdup("")) &&
         asprintf(&input, "%s.%s", ph, pp) >= 0;
    if (!ok)
        input = NULL;
    if (ok && tli_acme_es256(key, input, strlen(input), raw) != 0) {
        ssl_err(err, errlen, "ES256 signature failed");
        ok = false;
    } else if (!ok) {
        tli_fmt(err, errlen, "out of memory");
    }
    if (ok && (!(sig = tli_b64url(raw, 64)) ||
               asprintf(&out, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}",
                        ph, pp, sig) < 0)) {
        out = NULL;
        tli_fmt(err, errlen, "out of memory");
    }
    free(who);
    free(hdr);
    free(ph);
    free(pp);
    free(input);
    free(sig);
    free(jn);
    free(ju);
    return out;
}

/* ---- certificates ----------------------------------------------------------------------- */

static X509_EXTENSION *san_ext(X509V3_CTX *ctx, const char *const *names, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(names[i]) + 5;
    char *val = malloc(len), *o = val;
    if (!val)
        return NULL;
    *o = 0;
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, "%sDNS:%s", i ? "," : "", names[i]);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, NID_subject_alt_name, val);
    free(val);
    return e;
}

char *tli_acme_csr(EVP_PKEY *key, const char *const *names, size_t n, char *err, size_t errlen)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = NULL;
    uint8_t *der = NULL;
    char *out = NULL;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, NULL, NULL, req, NULL, 0);
    bool ok = req && subj && exts && n > 0 && strlen(names[0]) <= 64 &&
              X509_REQ_set_version(req, 0) &&
              X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                         (const unsigned char *)names[0], -1, -1, 0) &&
              X509_REQ_set_subject_name(req, subj) && X509_REQ_set_pubkey(req, key) &&
              (san = san_ext(&v3, names, n)) && sk_X509_EXTENSION_push(exts, san) &&
              X509_REQ_add_extensions(req, exts) && X509_REQ_sign(req, key, EVP_sha256()) > 0;
    if (ok) {
        san = NULL;   /* the stack owns it */
        int len = i2d_X509_REQ(req, &der);
        ok = len > 0 && (out = tli_b64url(der, (size_t)len));
    }
    if (!ok)
        ssl_err(err, errlen, "cannot make the CSR");
    OPENSSL_free(der);
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    return out;
}

char *tli_acme_alpn_cert(EVP_PKEY *key, const char *name, const char *key_authz, char *err,
                         size_t errlen)
{
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);   /* id-pe-acmeIdentifier */
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL, *san = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    /* extnValue is the DER of Authorization ::= OCTET STRING (SIZE (32)): 04 20 and the hash. */
    uint8_t val[34] = {0x04, 0x20};
    unsigned mdlen = 0;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *names[] = {name};
    uint8_t serial[16];
    BIGNUM *sn = NULL;
    bool ok = x && subj && oid && os && b &&
              EVP_Digest(key_authz, strlen(key_authz), val + 2, &mdlen, EVP_sha256(), NULL) &&
              ASN1_OCTET_STRING_set(os, val, sizeof val) &&
              (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, os)) &&
              X509_set_version(x, 2) && RAND_bytes(serial, sizeof serial) == 1 &&
              (serial[0] &= 0x7f, sn = BN_bin2bn(serial, sizeof serial, NULL)) &&
              BN_to_ASN1_INTEGER(sn, X509_get_serialNumber(x)) &&
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) &&
              X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)name,
                                         -1, -1, 0) &&
              X509_set_subject_name(x, subj) && X509_set_issuer_name(x, subj) &&
              X509_set_pubkey(x, key) && (san = san_ext(&v3, names, 1)) &&
              X509_add_ext(x, san, -1) && X509_add_ext(x, ext, -1) &&
              X509_sign(x, key, EVP_sha256()) > 0 && PEM_write_bio_X509(b, x);
    if (ok) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0 && (out = malloc((size_t)n + 1))) {
            memcpy(out, p, (size_t)n);
            out[n] = 0;
        }
    }
    if (!out)
        ssl_err(err, errlen, "cannot make the TLS-ALPN-01 validation certificate");
    BN_free(sn);
    BIO_free(b);
    X509_EXTENSION_free(ext);
    X509_EXTENSION_free(san);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(oid);
    X509_NAME_free(subj);
    X509_free(x);
    return out;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;
    return ASN1_TIME_to_tm(t, &tm) ? (int64_t)timegm(&tm) : 0;
}

int tli_acme_cert_times(const char *pem, int64_t *not_before, int64_t *not_after,
                        bool *self_issued)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) {
        ERR_clear_error();
        return -1;
    }
    *not_before = asn1_unix(X509_get0_notBefore(x));
    *not_after = asn1_unix(X509_get0_notAfter(x));
    *self_issued = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
    X509_free(x);
    return 0;
}

char *tli_acme_ari_id(const char *pem, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    const ASN1_OCTET_STRING *kid = x ? X509_get0_authority_key_id(x) : NULL;
    uint8_t *der = NULL;
    int n = x ? i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der) : -1;
    char *out = NULL, *k = NULL, *sn = NULL;
    /* The serial's DER content octets: after the tag and a short-form length (serials are at
     * most 20 octets, RFC 5280 section 4.1.2.2). */
    if (!kid || n < 3 || der[1] >= 0x80 || der[1] != n - 2)
        tli_fmt(err, errlen, "the certificate has no authority key identifier or serial for its "
                "renewal information");
    else if (!(k = tli_b64url(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid))) ||
             !(sn = tli_b64url(der + 2, (size_t)n - 2)) || asprintf(&out, "%s.%s", k, sn) < 0)
        out = NULL, tli_fmt(err, errlen, "out of memory");
    ERR_clear_error();
    free(k);
    free(sn);
    OPENSSL_free(der);
    X509_free(x);
    return out;
}

int tli_acme_parse_time(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        off = (strtol(p + 1, NULL, 10) * 60 + strtol(p + 4, NULL, 10)) * 60;
        if (*p == '-')
            off = -off;
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    *out = (int64_t)timegm(&tm) - off;
    return 0;
}
