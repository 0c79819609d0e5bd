/* acme_chal.c - the challenges being answered: HTTP-01 tokens and their key authorizations, and
 * TLS-ALPN-01 names with their validation configurations. The ACME thread adds and removes them;
 * worker threads look them up (tl_acme_http01, the ClientHello hook), under chal_lock.
 *
 * Several instances behind one name share the state directory, and the ACME server's validation
 * may reach any of them, not the one that asked. So each challenge is also written to the state
 * directory (challenges/http-01.TOKEN, challenges/tls-alpn-01.NAME: the key authorization), and a
 * lookup that misses the memory table reads the file. That read runs on the worker thread: a
 * small file, on the rare requests and handshakes that ask for a challenge only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "acme/acme_int.h"

#define MAX_KEY_AUTHZ 512

/* A token or a name safe to put in a file name: [A-Za-z0-9_.-], no leading dot, 1..255. */
static bool file_safe(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && s[0] != '.' &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static void chal_path(const tl_acme *a, const char *kind, const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/challenges/%s.%s", a->state, kind, id);
}

/* The shared copy of a challenge, for the other instances (see above). 0 or -1 with err. */
static int share_file(tl_acme *a, const char *kind, const char *id, const char *key_authz,
                      char *err, size_t errlen)
{
    char path[4400];
    if (!file_safe(id)) {
        tli_fmt(err, errlen, "%s challenge: '%.100s' cannot name a file", kind, id);
        return -1;
    }
    chal_path(a, kind, id, path, sizeof path);
    return tli_write_file(path, key_authz, strlen(key_authz), err, errlen);
}

static void unshare_file(tl_acme *a, const char *kind, const char *id)
{
    char path[4400];
    if (!file_safe(id))
        return;
    chal_path(a, kind, id, path, sizeof path);
    unlink(path);
}

/* The key authorization another instance shared (a new string), or NULL. */
static char *shared(const tl_acme *a, const char *kind, const char *id)
{
    char path[4400], buf[MAX_KEY_AUTHZ + 1];
    if (!file_safe(id))
        return NULL;
    chal_path(a, kind, id, path, sizeof path);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, MAX_KEY_AUTHZ, f);
    fclose(f);
    if (n == 0 || n == MAX_KEY_AUTHZ)
        return NULL;
    buf[n] = 0;
    return strdup(buf);
}

/* ---- HTTP-01 ---------------------------------------------------------------------------- */

int tli_acme_chal_http_add(tl_acme *a, const char *token, const char *key_authz)
{
    char err[300];
    if (share_file(a, "http-01", token, key_authz, err, sizeof err) != 0) {
        ALOG(a, ERROR, "%s (other instances cannot answer it)", err);
        return -1;
    }
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
        unshare_file(a, "http-01", token);
        return -1;
    }
    return 0;
}

void tli_acme_chal_http_del(tl_acme *a, const char *token)
{
    unshare_file(a, "http-01", token);
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
    if (!found) {   /* another instance's challenge? */
        char *ka = shared(a, "http-01", token);
        if (ka)
            found = tl_buf_append(out, ka, strlen(ka)) == 0 ? 1 : -1;
        free(ka);
    }
    return found;
}

/* ---- TLS-ALPN-01 ------------------------------------------------------------------------ */

/* The validation configuration for name: its own complete configuration (see
 * tl_tls_ctx_set_alpn_switch) with the validation certificate, acme-tls/1 the only protocol, no
 * tickets for a one-off handshake. NULL with err. */
static tl_tls_ctx *validation_ctx(const char *name, const char *key_authz, char *err,
                                  size_t errlen)
{
    EVP_PKEY *k = tli_acme_key_new(err, errlen);
    char *cert = k ? tli_acme_alpn_cert(k, name, key_authz, err, errlen) : NULL;
    char *key = cert ? tli_acme_key_pem(k) : NULL;
    EVP_PKEY_free(k);
    tl_tls_ctx *t = key ? tl_tls_ctx_new(TL_ROLE_SERVER) : NULL;
    bool ok = t && tl_tls_ctx_use_cert_pem(t, cert, key) == 0 &&
              tl_tls_ctx_set_alpn(t, "acme-tls/1") == 0 && tl_tls_ctx_set_num_tickets(t, 0) == 0 &&
              tl_tls_ctx_freeze(t) == 0;
    if (!ok && t)
        tli_fmt(err, errlen, "TLS-ALPN-01 configuration for %s: %s", name, tl_tls_ctx_error(t));
    else if (!ok && cert && !key)
        tli_fmt(err, errlen, "out of memory");
    free(cert);
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    if (!ok) {
        tl_tls_ctx_free(t);
        return NULL;
    }
    return t;
}

/* Put an entry in the table (under chal_lock); takes over t. 0, or -1 out of memory. */
static int alpn_insert(tl_acme *a, const char *name, const char *key_authz, tl_tls_ctx *t,
                       bool foreign)
{
    char *n = strdup(name), *k = strdup(key_authz);
    tli_acme_alpn01 *grown = n && k ? realloc(a->alpn, (a->n_alpn + 1) * sizeof *grown) : NULL;
    tl_tls_ctx **kept = grown ? realloc(a->retired, (a->n_retired + 1) * sizeof *kept) : NULL;
    if (grown)
        a->alpn = grown;
    if (!kept) {
        free(n);
        free(k);
        tl_tls_ctx_free(t);
        return -1;
    }
    a->retired = kept;
    /* Kept until tl_acme_free: a handshake may still be on it after the challenge ends. */
    a->retired[a->n_retired++] = tl_tls_ctx_ref(t);
    a->alpn[a->n_alpn++] = (tli_acme_alpn01){.name = n, .key_authz = k, .tls = t,
                                             .foreign = foreign};
    return 0;
}

static void alpn_remove(tl_acme *a, size_t i)
{
    free(a->alpn[i].name);
    free(a->alpn[i].key_authz);
    tl_tls_ctx_free(a->alpn[i].tls);   /* the retired list keeps it alive */
    a->alpn[i] = a->alpn[--a->n_alpn];
}

int tli_acme_chal_alpn_add(tl_acme *a, const char *name, const char *key_authz, char *err,
                           size_t errlen)
{
    tl_tls_ctx *t = validation_ctx(name, key_authz, err, errlen);
    if (!t || share_file(a, "tls-alpn-01", name, key_authz, err, errlen) != 0) {
        tl_tls_ctx_free(t);
        return -1;
    }
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn; i++)
        if (!strcasecmp(a->alpn[i].name, name)) {
            alpn_remove(a, i);   /* an older one, ours or another instance's */
            break;
        }
    int rc = alpn_insert(a, name, key_authz, t, false);
    pthread_mutex_unlock(&a->chal_lock);
    if (rc != 0) {
        unshare_file(a, "tls-alpn-01", name);
        tli_fmt(err, errlen, "out of memory");
    }
    return rc;
}

void tli_acme_chal_alpn_del(tl_acme *a, const char *name)
{
    unshare_file(a, "tls-alpn-01", name);
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn; i++)
        if (!strcasecmp(a->alpn[i].name, name)) {
            alpn_remove(a, i);
            break;
        }
    pthread_mutex_unlock(&a->chal_lock);
}

/* The ClientHello hook (tl_tls_ctx_set_alpn_switch): the validation configuration of a name with
 * a pending TLS-ALPN-01 challenge, ours, or another instance's from its shared file (made here
 * once, and again when that file changes; dropped when it is gone). */
tl_tls_ctx *tli_acme_alpn_switch(const char *sni, void *data)
{
    tl_acme *a = data;
    char lower[256];
    size_t n = sni ? strlen(sni) : 0;
    if (!n || n >= sizeof lower)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)(sni[i] >= 'A' && sni[i] <= 'Z' ? sni[i] + 32 : sni[i]);
    tl_tls_ctx *t = NULL;
    bool foreign = false;
    char *kept_ka = NULL;
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn && !t; i++)
        if (!strcasecmp(a->alpn[i].name, lower)) {
            t = a->alpn[i].tls;
            foreign = a->alpn[i].foreign;
            kept_ka = foreign ? strdup(a->alpn[i].key_authz) : NULL;
        }
    pthread_mutex_unlock(&a->chal_lock);
    if (t && !foreign)
        return t;
    /* Another instance's (or none): the file decides. */
    char *ka = shared(a, "tls-alpn-01", lower);
    if (t && ka && kept_ka && !strcmp(ka, kept_ka)) {
        free(ka);
        free(kept_ka);
        return t;
    }
    free(kept_ka);
    tl_tls_ctx *made = NULL;
    char err[300];
    if (ka && !(made = validation_ctx(lower, ka, err, sizeof err)))
        ALOG(a, ERROR, "%s", err);
    pthread_mutex_lock(&a->chal_lock);
    for (size_t i = 0; i < a->n_alpn; i++)
        if (a->alpn[i].foreign && !strcasecmp(a->alpn[i].name, lower)) {
            alpn_remove(a, i);   /* stale: gone or changed */
            break;
        }
    if (made && alpn_insert(a, lower, ka, tl_tls_ctx_ref(made), true) != 0) {
        tl_tls_ctx_free(made);
        made = NULL;
    }
    pthread_mutex_unlock(&a->chal_lock);
    if (made) {
        ALOG(a, INFO, "%s: answering the tls-alpn-01 challenge another instance asked for", lower);
        tl_tls_ctx_free(made);   /* the table and the retired list hold it */
    }
    free(ka);
    return made;
}

void tli_acme_chal_free(tl_acme *a)
{
    for (size_t i = 0; i < a->n_http; i++) {
        free(a->http[i].token);
        free(a->http[i].key_authz);
    }
    free(a->http);
    while (a->n_alpn)
        alpn_remove(a, a->n_alpn - 1);
    free(a->alpn);
    for (size_t i = 0; i < a->n_retired; i++)
        tl_tls_ctx_free(a->retired[i]);
    free(a->retired);
    a->http = NULL;
    a->alpn = NULL;
    a->retired = NULL;
    a->n_http = a->n_alpn = a->n_retired = 0;
}
