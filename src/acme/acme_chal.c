/* acme_chal.c - the challenges being answered: HTTP-01 tokens and their key authorizations, and
 * TLS-ALPN-01 names with their validation configurations. The ACME thread adds and removes them;
 * worker threads look them up (tl_acme_http01, the ClientHello hook), under chal_lock. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acme/acme_int.h"

int tli_acme_chal_http_add(tl_acme *a, const char *token, const char *key_authz)
{
    char *t = strdup(token), *k = strdup(key_authz);
    pthread_mutex_lock(&a->chal_lock);
    tli_acme_http01 *grown = t && k ? realloc(a->http, (a->n_http + 1) * sizeof *grown) : NULL;
    if (grown) {
        a->http = grown;
        a->http[a->n_http++] = (tli_acme_http01){.token = t, .key_authz = k};
    }
    pthread_mutex_unlock(&a->chal_lock);
    if (!grown) {
        free(t);
        free(k);
        return -1;
    }
    return 0;
}

void tli_acme_chal_http_del(tl_acme *a, const char *token)
{
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_http; i++)
        if (!strcmp(a->http[i].token, token)) {
            free(a->http[i].token);
            free(a->http[i].key_authz);
            a->http[i] = a->http[--a->n_http];
            break;
        }
    pthread_mutex_unlock(&a->chal_lock);
}

int tl_acme_http01(tl_acme *a, const char *path, tl_buf *out)
{
    size_t plen = strlen(TL_ACME_HTTP01_PREFIX);
    if (!a || strncmp(path, TL_ACME_HTTP01_PREFIX, plen) != 0)
        return 0;
    const char *token = path + plen;
    int found = 0;
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_http && !found; i++)
        if (!strcmp(a->http[i].token, token))
            found = tl_buf_append(out, a->http[i].key_authz, strlen(a->http[i].key_authz)) == 0
                        ? 1
                        : -1;
    pthread_mutex_unlock(&a->chal_lock);
    return found;
}

int tli_acme_chal_alpn_add(tl_acme *a, const char *name, const char *key_authz, char *err,
                           size_t errlen)
{
    EVP_PKEY *k = tli_acme_key_new(err, errlen);
    char *cert = k ? tli_acme_alpn_cert(k, name, key_authz, err, errlen) : NULL;
    char *key = cert ? tli_acme_key_pem(k) : NULL;
    EVP_PKEY_free(k);
    tl_tls_ctx *t = key ? tl_tls_ctx_new(TL_ROLE_SERVER) : NULL;
    /* Its own complete configuration (see tl_tls_ctx_set_alpn_switch): the validation
     * certificate, acme-tls/1 the only protocol, no tickets for a one-off handshake. */
    bool ok = t && tl_tls_ctx_use_cert_pem(t, cert, key) == 0 &&
              tl_tls_ctx_set_alpn(t, "acme-tls/1") == 0 && tl_tls_ctx_set_num_tickets(t, 0) == 0 &&
              tl_tls_ctx_freeze(t) == 0;
    if (!ok && t)
        tli_fmt(err, errlen, "TLS-ALPN-01 configuration for %s: %s", name, tl_tls_ctx_error(t));
    else if (!ok && key)
        tli_fmt(err, errlen, "out of memory");
    free(cert);
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    char *n = ok ? strdup(name) : NULL;
    if (ok && !n)
        tli_fmt(err, errlen, "out of memory");
    pthread_mutex_lock(&a->chal_lock);
    tli_acme_alpn01 *grown = n ? realloc(a->alpn, (a->n_alpn + 1) * sizeof *grown) : NULL;
    tl_tls_ctx **kept = grown ? realloc(a->retired, (a->n_retired + 1) * sizeof *kept) : NULL;
    if (grown)
        a->alpn = grown;
    if (kept) {
        a->retired = kept;
        /* Kept until tl_acme_free: a handshake may still be on it after the challenge ends. */
        a->retired[a->n_retired++] = tl_tls_ctx_ref(t);
        a->alpn[a->n_alpn++] = (tli_acme_alpn01){.name = n, .tls = t};
    }
    pthread_mutex_unlock(&a->chal_lock);
    if (!kept) {
        if (n)
            tli_fmt(err, errlen, "out of memory");
        free(n);
        tl_tls_ctx_free(t);
        return -1;
    }
    return 0;
}

void tli_acme_chal_alpn_del(tl_acme *a, const char *name)
{
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn; i++)
        if (!strcasecmp(a->alpn[i].name, name)) {
            free(a->alpn[i].name);
            tl_tls_ctx_free(a->alpn[i].tls);   /* the retired list keeps it alive */
            a->alpn[i] = a->alpn[--a->n_alpn];
            break;
        }
    pthread_mutex_unlock(&a->chal_lock);
}

/* The ClientHello hook (tl_tls_ctx_set_alpn_switch): the validation configuration of a name with
 * a pending TLS-ALPN-01 challenge. */
tl_tls_ctx *tli_acme_alpn_switch(const char *sni, void *data)
{
    tl_acme *a = data;
    tl_tls_ctx *t = NULL;
    if (!sni)
        return NULL;
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn && !t; i++)
        if (!strcasecmp(a->alpn[i].name, sni))
            t = a->alpn[i].tls;
    pthread_mutex_unlock(&a->chal_lock);
    return t;
}

void tli_acme_chal_free(tl_acme *a)
{
    for (size_t i = 0; i < a->n_http; i++) {
        free(a->http[i].token);
        free(a->http[i].key_authz);
    }
    free(a->http);
    for (size_t i = 0; i < a->n_alpn; i++) {
        free(a->alpn[i].name);
        tl_tls_ctx_free(a->alpn[i].tls);
    }
    free(a->alpn);
    for (size_t i = 0; i < a->n_retired; i++)
        tl_tls_ctx_free(a->retired[i]);
    free(a->retired);
    a->http = NULL;
    a->alpn = NULL;
    a->retired = NULL;
    a->n_http = a->n_alpn = a->n_retired = 0;
}
