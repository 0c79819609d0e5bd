/* tls_ctx_cert.c - certificates, keys and trust anchors of a configuration. A chain is checked
 * once, at load (PEM, key and leaf, validity, order), then given to OpenSSL as is
 * (SSL_MODE_NO_AUTO_CHAIN): no handshake ever builds it. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls_ctx_int.h"

/* Parse every certificate in a PEM text. Returns a stack (maybe empty) or NULL on a PEM error. */
static STACK_OF(X509) *parse_certs(const char *pem)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!sk || !bio)
        goto fail;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    }
    /* The loop ends with "no start line" at the end of the text: that is not an error. */
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error();
    else if (e != 0)
        goto fail;
    BIO_free(bio);
    return sk;
fail:
    BIO_free(bio);
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

static void asn1_time_text(const ASN1_TIME *t, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    buf[0] = '\0';
    if (b && ASN1_TIME_print(b, t)) {
        int n = BIO_read(b, buf, (int)len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

static int check_validity(tl_tls_ctx *ctx, const char *name, X509 *leaf)
{
    char when[64];
    if (ctx->allow_expired)
        return 0;
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
        asn1_time_text(X509_get0_notAfter(leaf), when, sizeof when);
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: the certificate expired on %s (renew it, "
                             "or allow expired certificates)", name, when);
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
        asn1_time_text(X509_get0_notBefore(leaf), when, sizeof when);
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: the certificate is not valid before %s",
                             name, when);
    }
    return 0;
}

/* The leaf's expiry for tl_tls_ctx_cert_expiry and the slot it goes to: that of the same key
 * type, as OpenSSL replaces a certificate of the same type. */
static int leaf_expiry(tl_tls_ctx *ctx, const char *name, X509 *leaf, EVP_PKEY *key,
                       tli_leaf *out, unsigned *slot)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm))
        return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, name);
    *out = (tli_leaf){EVP_PKEY_get_base_id(key), (int64_t)timegm(&tm)};
    unsigned i = 0;
    while (i < ctx->n_leaves && ctx->leaves[i].key_type != out->key_type)
        i++;
    if (i == TLI_MAX_LEAVES)
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: at most %d certificates of different key "
                             "types fit in one configuration", name, TLI_MAX_LEAVES);
    *slot = i;
    return 0;
}

/* Each certificate must be issued by the next: leaf first, then intermediates. */
static int check_order(tl_tls_ctx *ctx, const char *name, X509 *leaf, STACK_OF(X509) *chain)
{
    X509 *prev = leaf;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *next = sk_X509_value(chain, i);
        if (X509_check_issued(next, prev) != X509_V_OK) {
            return tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: certificate %d did not issue "
                                 "certificate %d; put the leaf first, then each issuer in order",
                                 name, i + 2, i + 1);
        }
        prev = next;
    }
    return 0;
}

static int use_cert(tl_tls_ctx *ctx, const char *name, const char *chain_pem, const char *key_pem,
                    const char *key_name)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = parse_certs(chain_pem);
    if (!certs) {
        tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, name);
        return -1;
    }
    if (sk_X509_num(certs) == 0) {
        tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: no PEM certificate found", name);
        goto out;
    }
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    if (!key) {
        char what[300];
        tli_fmt(what, sizeof what, "%s: no usable PEM private key", key_name);
        tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, what);
        goto out;
    }
    X509 *leaf = sk_X509_shift(certs);
    if (!X509_check_private_key(leaf, key)) {
        tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: the key in %s does not match the certificate",
                      name, key_name);
        X509_free(leaf);
        goto out;
    }
    tli_leaf expiry = {0};
    unsigned slot = 0;
    if (check_validity(ctx, name, leaf) != 0 || check_order(ctx, name, leaf, certs) != 0 ||
        leaf_expiry(ctx, name, leaf, key, &expiry, &slot) != 0) {
        X509_free(leaf);
        goto out;
    }
    /* override=1: a second certificate of the same key type replaces the first. */
    if (!SSL_CTX_use_cert_and_key(ctx->ssl, leaf, key, certs, 1)) {
        tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, name);
        X509_free(leaf);
        goto out;
    }
    if (tli_ctx_keep_leaf(ctx, slot, leaf, certs) != 0) {
        X509_free(leaf);
        goto out;
    }
    X509_free(leaf);
    ctx->leaves[slot] = expiry;
    if (slot == ctx->n_leaves)
        ctx->n_leaves++;
    ctx->has_cert = true;
    rc = 0;
out:
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int tl_tls_ctx_use_cert_pem(tl_tls_ctx *ctx, const char *chain_pem, const char *key_pem)
{
    if (tli_ctx_mutable(ctx, "use_cert_pem") != 0)
        return -1;
    if (!chain_pem || !key_pem)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "use_cert_pem: certificate and key are required");
    return use_cert(ctx, "certificate", chain_pem, key_pem, "the key");
}

int tl_tls_ctx_use_cert_file(tl_tls_ctx *ctx, const char *chain_path, const char *key_path)
{
    if (tli_ctx_mutable(ctx, "use_cert_file") != 0)
        return -1;
    if (!chain_path || !key_path)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "use_cert_file: certificate and key paths are "
                                               "required");
    char *chain = tli_read_text(chain_path, ctx->err, sizeof ctx->err);
    if (!chain) {
        ctx->err_kind = TL_ERR_CONFIG;
        return -1;
    }
    char *key = tli_read_text(key_path, ctx->err, sizeof ctx->err);
    if (!key) {
        ctx->err_kind = TL_ERR_CONFIG;
        free(chain);
        return -1;
    }
    int rc = use_cert(ctx, chain_path, chain, key, key_path);
    OPENSSL_cleanse(key, strlen(key));
    free(key);
    free(chain);
    return rc;
}

int tl_tls_ctx_allow_expired(tl_tls_ctx *ctx, bool allow)
{
    if (tli_ctx_mutable(ctx, "allow_expired") != 0)
        return -1;
    ctx->allow_expired = allow;
    return 0;
}

static int add_cas(tl_tls_ctx *ctx, const char *name, const char *pem)
{
    STACK_OF(X509) *certs = parse_certs(pem);
    if (!certs)
        return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, name);
    if (sk_X509_num(certs) == 0) {
        sk_X509_pop_free(certs, X509_free);
        return tli_ctx_failf(ctx, TL_ERR_CONFIG, "%s: no PEM certificate found", name);
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_STORE_add_cert(store, x) ||
            (ctx->role == TL_ROLE_SERVER && !SSL_CTX_add_client_CA(ctx->ssl, x))) {
            sk_X509_pop_free(certs, X509_free);
            return tli_ctx_fail_ssl(ctx, TL_ERR_CONFIG, name);
        }
    }
    sk_X509_pop_free(certs, X509_free);
    ctx->has_ca = true;
    return 0;
}

int tl_tls_ctx_set_ca_pem(tl_tls_ctx *ctx, const char *pem)
{
    if (tli_ctx_mutable(ctx, "set_ca_pem") != 0)
        return -1;
    if (!pem)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_ca_pem: no PEM given");
    return add_cas(ctx, "CA", pem);
}

int tl_tls_ctx_set_ca_file(tl_tls_ctx *ctx, const char *path)
{
    if (tli_ctx_mutable(ctx, "set_ca_file") != 0)
        return -1;
    if (!path)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "set_ca_file: no path given");
    char *pem = tli_read_text(path, ctx->err, sizeof ctx->err);
    if (!pem) {
        ctx->err_kind = TL_ERR_CONFIG;
        return -1;
    }
    int rc = add_cas(ctx, path, pem);
    free(pem);
    return rc;
}

static bool earliest_leaf(const tl_tls_ctx *ctx, int64_t *t)
{
    bool any = false;
    for (unsigned i = 0; i < ctx->n_leaves; i++) {
        if (!any || ctx->leaves[i].not_after < *t)
            *t = ctx->leaves[i].not_after;
        any = true;
    }
    return any;
}

int tl_tls_ctx_cert_expiry(tl_tls_ctx *ctx, int64_t *not_after_unix)
{
    if (!ctx || !not_after_unix)
        return -1;
    int64_t t = 0, n;
    bool any = earliest_leaf(ctx, &t);
    for (size_t i = 0; i < ctx->n_names; i++) {
        if (earliest_leaf(ctx->names[i].ctx, &n) && (!any || n < t))
            t = n;
        any |= ctx->names[i].ctx->n_leaves > 0;
    }
    if (!any)
        return tli_ctx_failf(ctx, TL_ERR_USAGE, "cert_expiry: no certificate is loaded");
    *not_after_unix = t;
    return 0;
}
