/* engine_info.c - the facts of an engine's connection (tl_engine_get_info). */
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/engine_int.h"

static void name_text(const X509_NAME *name, char *buf, size_t len)
{
    buf[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(b, buf, (int)len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

void tl_engine_get_info(const tl_engine *e, tl_engine_info *out)
{
    memset(out, 0, sizeof *out);
    SSL *ssl = e->ssl;
    out->bytes_in = e->bytes_in;
    out->bytes_out = e->bytes_out;
    out->key_updates_received = e->key_updates_received;
    out->server_name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!out->server_name)
        out->server_name = e->server_name;
    out->verify_result = SSL_get_verify_result(ssl);
    out->verify_error = X509_verify_cert_error_string(out->verify_result);
    if (!e->hs_done)
        return;
    out->version = SSL_get_version(ssl);
    out->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    int group = SSL_get_negotiated_group(ssl);
    out->group = group > 0 ? SSL_group_to_name(ssl, group) : NULL;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn && alpn_len < sizeof out->alpn) {
        memcpy(out->alpn, alpn, alpn_len);
        out->alpn[alpn_len] = '\0';
    }
    out->resumed = SSL_session_reused(ssl) == 1;
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer) {
        out->has_peer_cert = true;
        name_text(X509_get_subject_name(peer), out->peer_subject, sizeof out->peer_subject);
        name_text(X509_get_issuer_name(peer), out->peer_issuer, sizeof out->peer_issuer);
    }
}
