/* tls_ctx_hello.c - the rules a server holds a ClientHello to beyond OpenSSL 3.0's own, in the
 * ClientHello callback, each with the alert its RFC names (docs/server.md, "TLS conformance"; a
 * case each in tests/e2e/test_tls_conformance.py). The server_name rules are tls_ctx_sni.c's. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/tls_ctx_int.h"

/* Padding exists to lift a ClientHello past 512 bytes (RFC 7685 section 4); 4 KiB of zeros is far
 * more than any client needs, and the rest of a ClientHello is bounded by OpenSSL (128 KiB). */
#define TLI_MAX_PADDING 4096

#define TYPE_PADDING 21           /* RFC 7685 */
#define TYPE_EC_POINT_FORMATS 11  /* RFC 8422 */

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static int refuse(int *alert, int what, const char *why)
{
    ERR_raise_data(ERR_LIB_SSL, SSL_R_BAD_EXTENSION, "%s", why);
    *alert = what;
    return -1;
}

/* Whether the versions list offers TLS 1.3; -1 when the list is malformed. */
static int versions_offer_tls13(const unsigned char *p, size_t n)
{
    if (n < 3 || p[0] != n - 1 || (p[0] & 1))
        return -1;
    for (size_t i = 1; i + 1 < n; i += 2)
        if (get16(p + i) == TLS1_3_VERSION)
            return 1;
    return 0;
}

/* 1 when two entries of the key_share list name the same group, 0 when not, -1 when it is
 * malformed (OpenSSL's own parser then refuses it with decode_error: leave that to it). */
static int key_share_duplicate(const unsigned char *p, size_t n)
{
    if (n < 2 || get16(p) != n - 2)
        return -1;
    uint64_t seen[65536 / 64];
    memset(seen, 0, sizeof seen);
    for (size_t i = 2; i < n;) {
        if (n - i < 4 || n - i - 4 < get16(p + i + 2))
            return -1;
        unsigned g = get16(p + i);
        if (seen[g / 64] >> (g % 64) & 1)
            return 1;
        seen[g / 64] |= (uint64_t)1 << (g % 64);
        i += 4 + get16(p + i + 2);
    }
    return 0;
}

#define TYPE_SESSION_TICKET 35    /* RFC 5077 */

bool tli_ctx_hello_wants_lookup(SSL *ssl, tli_ssl_state *st)
{
    const unsigned char *p;
    size_t n;
    bool tickets_on = !(SSL_get_options(ssl) & SSL_OP_NO_TICKET);
    bool ticket_ext = SSL_client_hello_get0_ext(ssl, TYPE_SESSION_TICKET, &p, &n) == 1;
    st->hello_ticket = tickets_on && ticket_ext;
    if (st->hello_ticket && n > 0)
        return false;                 /* it offers a ticket: that resumes, or nothing does */
    /* A TLS 1.3 hello carries a random legacy session ID (RFC 8446 D.4); it resumes by PSK. */
    int max = SSL_get_max_proto_version(ssl);
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &n) &&
        versions_offer_tls13(p, n) == 1 && (max == 0 || max >= TLS1_3_VERSION))
        return false;
    size_t len = SSL_client_hello_get0_session_id(ssl, &p);
    if (len == 0 || len > sizeof st->lookup_id)
        return false;
    tl_tls_ctx *cache = st->session_cfg ? st->session_cfg
                                        : SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (cache && tli_ctx_cache_has(cache, p, (unsigned)len))
        return false;                 /* our own cache has it */
    memcpy(st->lookup_id, p, len);
    st->lookup_id_len = (unsigned)len;
    return true;
}

/* OpenSSL has checked the hello's framing by now (the lengths of its parts, each extension's
 * header, duplicates of the extensions it knows); what is left is content it would accept, or
 * judge later with another alert. Runs before OpenSSL picks a version, a cipher or a key share. */
int tli_ctx_hello_check(SSL *ssl, int *alert)
{
    if (SSL_client_hello_isv2(ssl))
        return refuse(alert, SSL_AD_PROTOCOL_VERSION,
                      "SSL 2.0-compatible ClientHello (RFC 8446 appendix D.5)");
    const unsigned char *p;
    size_t n;
    if (SSL_client_hello_get0_ciphers(ssl, &p) == 0)
        return refuse(alert, SSL_AD_DECODE_ERROR, "empty cipher_suites list");

    int tls13 = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &n)) {
        tls13 = versions_offer_tls13(p, n);
        if (tls13 < 0)
            return refuse(alert, SSL_AD_DECODE_ERROR, "malformed supported_versions extension");
        int max = SSL_get_max_proto_version(ssl);
        tls13 = tls13 && (max == 0 || max >= TLS1_3_VERSION);
    } else if (SSL_client_hello_get0_legacy_version(ssl) < TLS1_VERSION) {
        return refuse(alert, SSL_AD_PROTOCOL_VERSION, "ClientHello version below TLS 1.0");
    }

    n = SSL_client_hello_get0_compression_methods(ssl, &p);
    if (tls13 && n > 0 && (n != 1 || p[0] != 0)) /* empty: OpenSSL's decode_error */
        return refuse(alert, SSL_AD_ILLEGAL_PARAMETER,
                      "TLS 1.3 ClientHello with compression methods other than just null");

    if (tls13 && SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_key_share, &p, &n) &&
        key_share_duplicate(p, n) == 1)
        return refuse(alert, SSL_AD_ILLEGAL_PARAMETER, "two key shares for one group");

    if (SSL_client_hello_get0_ext(ssl, TYPE_PADDING, &p, &n)) {
        if (n > TLI_MAX_PADDING)
            return refuse(alert, SSL_AD_ILLEGAL_PARAMETER, "padding extension over 4096 bytes");
        for (size_t i = 0; i < n; i++)
            if (p[i] != 0)
                return refuse(alert, SSL_AD_ILLEGAL_PARAMETER,
                              "padding extension with non-zero bytes (RFC 7685)");
    }

    if (!tls13 && SSL_client_hello_get0_ext(ssl, TYPE_EC_POINT_FORMATS, &p, &n) && n >= 2 &&
        p[0] == n - 1 && !memchr(p + 1, 0, n - 1))
        return refuse(alert, SSL_AD_ILLEGAL_PARAMETER,
                      "ec_point_formats without uncompressed (RFC 8422)");
    return 0;
}
