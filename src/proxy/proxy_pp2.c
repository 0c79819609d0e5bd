/* proxy_pp2.c - the TLS facts a PROXY v2 header carries to a backend (PP2_TYPE_SSL): client flags,
 * the verify result and the client certificate's CN, exactly or not at all (a backend may
 * authorise by it; docs/proxy.md, "The client's identity at the backend"). */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>

#include <tlsloop/proxyproto.h>

#include "proxy/proxy_int.h"

/* Strict UTF-8 (RFC 3629): shortest forms only, no surrogates, at most U+10FFFF. */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* From the X509_NAME entry, never a printed subject line (escaped, truncated: a CN "é" and a CN
 * "C3A9" both print "C3A9"); what no string carries faithfully is left out, not altered. */
int tli_cert_cn_utf8(X509 *cert, char *out, size_t cap)
{
    out[0] = 0;
    const X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
    int at = -1;
    for (int i = -1; name && (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;)
        at = i;
    if (at < 0)
        return 0;
    const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    unsigned char *utf8 = NULL;
    int n = data ? ASN1_STRING_to_UTF8(&utf8, data) : -1;   /* -1: not convertible */
    int rc = -1;
    if (n >= 0 && (size_t)n < cap && !memchr(utf8, 0, (size_t)n) &&
        valid_utf8(utf8, (size_t)n)) {
        memcpy(out, utf8, (size_t)n);
        out[n] = 0;
        rc = n;
    }
    OPENSSL_free(utf8);
    return rc;
}

static size_t sub_tlv(uint8_t *buf, size_t at, size_t cap, uint8_t type, const char *v, size_t n)
{
    if (!v || !n || n > 0xFFFF || at + 3 + n > cap)
        return at;
    buf[at] = type;
    buf[at + 1] = (uint8_t)(n >> 8);
    buf[at + 2] = (uint8_t)n;
    memcpy(buf + at + 3, v, n);
    return at + 3 + n;
}

size_t tli_pp2_ssl_value(SSL *ssl, uint8_t *buf, size_t cap)
{
    if (cap < 5)
        return 0;
    /* The peer certificate stays in the session: a resumed one still has it (CERT_SESS), but it
     * was sent on this connection only when the handshake was a full one (CERT_CONN). */
    X509 *peer = SSL_get0_peer_certificate(ssl);
    uint8_t flags = TLI_PP2_CLIENT_SSL;
    uint32_t verify = 1;   /* the spec: 0 only for a certificate presented and verified */
    if (peer) {
        flags |= TLI_PP2_CLIENT_CERT_SESS;
        if (!SSL_session_reused(ssl))
            flags |= TLI_PP2_CLIENT_CERT_CONN;
        verify = (uint32_t)SSL_get_verify_result(ssl);   /* kept in the session when resumed */
    }
    buf[0] = flags;
    for (int i = 0; i < 4; i++)
        buf[1 + i] = (uint8_t)(verify >> (8 * (3 - i)));
    size_t len = 5;
    const char *version = SSL_get_version(ssl);
    const char *cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    len = sub_tlv(buf, len, cap, TL_PP2_SSL_VERSION, version, version ? strlen(version) : 0);
    len = sub_tlv(buf, len, cap, TL_PP2_SSL_CIPHER, cipher, cipher ? strlen(cipher) : 0);
    char cn[1024];
    int n = tli_cert_cn_utf8(peer, cn, sizeof cn);
    if (n > 0)
        len = sub_tlv(buf, len, cap, TL_PP2_SSL_CN, cn, (size_t)n);
    return len;
}
