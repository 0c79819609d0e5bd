/* ocsp.c - OCSP responses checked against a certificate, requests, the responder URL and the
 * refresh schedule (tli_ocsp.h), and the client's check of a stapled response (tlsloop/ocsp.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/tli_ocsp.h"
#include "tls/tli_tls.h"
#include "util/tli.h"

#define RETRY_FIRST_S 10
#define RETRY_MAX_S 3600
#define TLSEXT_STATUS_REQUEST 5   /* the TLS feature of RFC 7633 that asks for a staple */

const char *tl_ocsp_status_name(tl_ocsp_cert_status s)
{
    switch (s) {
    case TL_OCSP_GOOD: return "good";
    case TL_OCSP_REVOKED: return "revoked";
    default: return "unknown";
    }
}

X509 *tli_ocsp_issuer(X509 *leaf, STACK_OF(X509) *chain)
{
    for (int i = 0; chain && i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (X509_check_issued(c, leaf) == X509_V_OK)
            return c;
    }
    return NULL;
}

static int64_t asn1_unix(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

static void time_text(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%lld", (long long)t);
}

/* why := prefix and OpenSSL's queued reasons; returns -1. */
static int fail_ssl(char *why, size_t whylen, const char *prefix)
{
    char buf[400];
    tli_drain_errors(buf, sizeof buf, prefix);
    if (why)
        tli_fmt(why, whylen, "%s", buf);
    return -1;
}

static int failf(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(char *why, size_t whylen, const char *fmt, ...)
{
    ERR_clear_error();
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The signature: by the issuer itself, or by a responder certificate the issuer signed for
 * OCSP (id-kp-OCSPSigning, checked by OCSP_basic_verify). The issuer is the only trust anchor
 * (partial chain): the server's chain may end below the root, and the client has verified the
 * issuer already. */
static int verify_signature(OCSP_BASICRESP *bs, X509 *issuer, STACK_OF(X509) *chain, char *why,
                            size_t whylen)
{
    X509_STORE *store = X509_STORE_new();
    if (!store || !X509_STORE_add_cert(store, issuer) ||
        !X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN)) {
        X509_STORE_free(store);
        return fail_ssl(why, whylen, "OCSP: cannot set up the check (out of memory)");
    }
    int ok = OCSP_basic_verify(bs, chain, store, 0);
    X509_STORE_free(store);
    if (ok <= 0)
        return fail_ssl(why, whylen, "the OCSP response's signature does not verify against the "
                                     "certificate's issuer");
    return 0;
}

int tli_ocsp_verify(const uint8_t *der, size_t len, X509 *leaf, STACK_OF(X509) *chain,
                    int64_t now, tl_ocsp_info *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    out->status = TL_OCSP_UNKNOWN;
    out->reason = -1;
    ERR_clear_error();
    if (!der || len == 0 || len > (1u << 20))
        return failf(why, whylen, "the OCSP response is empty or over 1 MiB");
    X509 *issuer = tli_ocsp_issuer(leaf, chain);
    if (!issuer)
        return failf(why, whylen, "the certificate's issuer is not in its chain (put the "
                                  "intermediate after the leaf): an OCSP response cannot be checked");
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *id = NULL;
    int rc = -1;
    if (!resp || p != der + len) {
        fail_ssl(why, whylen, "not an OCSP response (DER)");
        goto out;
    }
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        failf(why, whylen, "the OCSP responder answered \"%s\" (%d)", OCSP_response_status_str(rs), rs);
        goto out;
    }
    if (!(bs = OCSP_response_get1_basic(resp))) {
        fail_ssl(why, whylen, "the OCSP response holds no basic response");
        goto out;
    }
    if (verify_signature(bs, issuer, chain, why, whylen) != 0)
        goto out;
    if (!(id = OCSP_cert_to_id(NULL, leaf, issuer))) {
        fail_ssl(why, whylen, "OCSP: cannot make the certificate's ID");
        goto out;
    }
    int status = -1, reason = -1;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd)) {
        char serial[80] = "?";
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        if (hex)
            tli_fmt(serial, sizeof serial, "%s", hex);
        OPENSSL_free(hex);
        BN_free(bn);
        failf(why, whylen, "the OCSP response is not for this certificate (it holds no status for "
                           "serial %s of this issuer)", serial);
        goto out;
    }
    out->this_update = asn1_unix(thisupd);
    out->next_update = nextupd ? asn1_unix(nextupd) : 0;
    out->expires = nextupd ? out->next_update : out->this_update + TL_OCSP_NO_NEXT_UPDATE_S;
    out->status = status == V_OCSP_CERTSTATUS_GOOD      ? TL_OCSP_GOOD
                  : status == V_OCSP_CERTSTATUS_REVOKED ? TL_OCSP_REVOKED
                                                        : TL_OCSP_UNKNOWN;
    if (out->status == TL_OCSP_REVOKED) {
        out->revoked_at = asn1_unix(rev);
        out->reason = reason;
    }
    char t1[40], t2[40];
    if (!OCSP_check_validity(thisupd, nextupd, TL_OCSP_SKEW_S, -1) ||
        out->this_update > now + TL_OCSP_SKEW_S) {
        ERR_clear_error();
        time_text(out->this_update, t1, sizeof t1);
        failf(why, whylen, "the OCSP response is not valid yet or malformed (thisUpdate %s)", t1);
        goto out;
    }
    if (out->expires <= now) {
        time_text(out->expires, t2, sizeof t2);
        failf(why, whylen, "the OCSP response expired on %s", t2);
        goto out;
    }
    rc = 0;
out:
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return rc;
}

int tli_ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len, char *why,
                     size_t whylen)
{
    *der = NULL;
    *len = 0;
    ERR_clear_error();
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = req ? OCSP_cert_to_id(NULL, leaf, issuer) : NULL;
    if (!id || !OCSP_request_add0_id(req, id)) {
        OCSP_CERTID_free(id);
        OCSP_REQUEST_free(req);
        return fail_ssl(why, whylen, "OCSP: cannot make the request");
    }
    unsigned char *buf = NULL;
    int n = i2d_OCSP_REQUEST(req, &buf);
    OCSP_REQUEST_free(req);
    if (n <= 0 || !(*der = malloc((size_t)n))) {
        OPENSSL_free(buf);
        return fail_ssl(why, whylen, "OCSP: cannot encode the request");
    }
    memcpy(*der, buf, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(buf);
    return 0;
}

char *tli_ocsp_url(X509 *leaf)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
    char *url = urls && sk_OPENSSL_STRING_num(urls) > 0 ? strdup(sk_OPENSSL_STRING_value(urls, 0))
                                                        : NULL;
    X509_email_free(urls);
    return url;
}

bool tli_ocsp_must_staple(X509 *leaf)
{
    TLS_FEATURE *f = X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL);
    bool must = false;
    for (int i = 0; f && i < sk_ASN1_INTEGER_num(f); i++)
        must |= ASN1_INTEGER_get(sk_ASN1_INTEGER_value(f, i)) == TLSEXT_STATUS_REQUEST;
    TLS_FEATURE_free(f);
    ERR_clear_error();
    return must;
}

int64_t tli_ocsp_refresh_at(const tl_ocsp_info *info)
{
    int64_t life = info->expires - info->this_update;
    return info->this_update + (life > 0 ? life / 2 : 0);
}

int64_t tli_ocsp_retry_after(unsigned failures, int64_t now, int64_t expires)
{
    int64_t d = RETRY_FIRST_S;
    for (unsigned i = 1; i < failures && d < RETRY_MAX_S; i++)
        d *= 2;
    if (d > RETRY_MAX_S)
        d = RETRY_MAX_S;
    /* With a response in hand, try again before it runs out rather than after. */
    if (expires > now && now + d >= expires)
        d = (expires - now) / 2;
    return d < 1 ? 1 : d;
}

/* ---- the client's check --------------------------------------------------------------------- */

int tl_ocsp_check_peer(tl_engine *e, tl_ocsp_info *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    out->status = TL_OCSP_UNKNOWN;
    out->reason = -1;
    SSL *ssl = e ? tl_engine_ssl(e) : NULL;
    if (!ssl)
        return failf(why, whylen, "no TLS connection");
    const unsigned char *resp = NULL;
    long n = SSL_get_tlsext_status_ocsp_resp(ssl, &resp);
    if (n <= 0 || !resp)
        return failf(why, whylen, "the server stapled no OCSP response");
    STACK_OF(X509) *vc = SSL_get0_verified_chain(ssl);
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
    STACK_OF(X509) *full = vc && sk_X509_num(vc) > 0 ? vc : sent;
    if (!full || sk_X509_num(full) < 1)
        return failf(why, whylen, "the server sent no certificate");
    X509 *leaf = sk_X509_value(full, 0);
    STACK_OF(X509) *rest = sk_X509_new_null();
    for (int i = 1; rest && i < sk_X509_num(full); i++)
        sk_X509_push(rest, sk_X509_value(full, i));
    if (!rest)
        return failf(why, whylen, "out of memory");
    int rc = tli_ocsp_verify(resp, (size_t)n, leaf, rest, (int64_t)time(NULL), out, why, whylen);
    sk_X509_free(rest);
    if (rc != 0)
        return -1;
    if (out->status != TL_OCSP_GOOD)
        return failf(why, whylen, "the stapled OCSP response says the certificate is %s",
                     tl_ocsp_status_name(out->status));
    return 0;
}
