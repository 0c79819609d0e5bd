/*
 * src/proxy/proxy_int.h - the proxy's private functions, shared by proxy*.c (and the unit tests).
 */
#ifndef TLSLOOP_PROXY_INT_H
#define TLSLOOP_PROXY_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* The CN of a certificate's subject as UTF-8, from its X509_NAME entry (the last CN, the most
 * specific one, as X509_check_host takes it), converted with ASN1_STRING_to_UTF8: into out with
 * a terminating NUL. Returns its length; 0 when there is no CN; -1 when it cannot be passed on
 * faithfully: it contains a NUL, is not valid UTF-8 (overlong forms, surrogates, above
 * U+10FFFF), or does not fit cap. */
int tli_cert_cn_utf8(X509 *cert, char *out, size_t cap);

/* The value of a PROXY v2 PP2_TYPE_SSL TLV for a finished server-side handshake: client flags
 * (PP2_CLIENT_SSL; PP2_CLIENT_CERT_CONN when the client sent a certificate on this connection;
 * PP2_CLIENT_CERT_SESS when the session has one, on a full handshake or a resumed one), verify (0
 * when a certificate was presented and verified, else its verification result, 1 without a
 * certificate), then sub-TLVs VERSION, CIPHER and CN (only when tli_cert_cn_utf8 gives one).
 * Returns the length written into buf (at least 5), or 0 if cap is too small for the fixed part. */
size_t tli_pp2_ssl_value(SSL *ssl, uint8_t *buf, size_t cap);

#define TLI_PP2_CLIENT_SSL 0x01
#define TLI_PP2_CLIENT_CERT_CONN 0x02
#define TLI_PP2_CLIENT_CERT_SESS 0x04

#endif /* TLSLOOP_PROXY_INT_H */
