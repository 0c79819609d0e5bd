/* acme_proto.c - RFC 8555 on the ACME thread, one request after another: the directory, nonces
 * (each answer's Replay-Nonce serves the next request; badNonce is retried with the fresh one),
 * the account, an order for the configured names, each authorization's challenge answered and
 * polled, the finalize with a CSR, the order polled, and the chain downloaded. JSON by jansson. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "acme/acme_int.h"

#define BAD_NONCE_RETRIES 5
#define POLL_ATTEMPTS 60
#define POLL_DEFAULT_MS 1000
#define POLL_MAX_MS 10000

/* The "detail" (and type) of an ACME problem document (RFC 8555 section 6.7), for messages. */
static void problem_text(const tli_acme_resp *r, char *out, size_t outlen)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    const char *detail = j ? json_string_value(json_object_get(j, "detail")) : NULL;
    if (type || detail)
        tli_fmt(out, outlen, "%s%s%s", detail ? detail : "", detail && type ? " " : "",
                type ? type : "");
    else
        tli_fmt(out, outlen, "HTTP %d%s%.200s", r->status, r->len ? ": " : "",
                r->body ? r->body : "");
    json_decref(j);
}

static bool is_problem(const tli_acme_resp *r, const char *type)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    const char *t = j ? json_string_value(json_object_get(j, "type")) : NULL;
    bool yes = t && !strcmp(t, type);
    json_decref(j);
    return yes;
}

static void keep_nonce(tl_acme *a, tli_acme_resp *r)
{
    if (r->nonce) {
        free(a->nonce);
        a->nonce = r->nonce;
        r->nonce = NULL;
    }
}

static int new_nonce(tl_acme *a, char *err, size_t errlen)
{
    tli_acme_resp r;
    if (tli_acme_http(a, "HEAD", a->url_nonce, NULL, NULL, &r, err, errlen) != 0)
        return -1;
    keep_nonce(a, &r);
    int st = r.status;
    tli_acme_resp_free(&r);
    if ((st != 200 && st != 204) || !a->nonce) {
        tli_fmt(err, errlen, "newNonce %s: HTTP %d%s", a->url_nonce, st,
                a->nonce ? "" : " without a Replay-Nonce");
        return -1;
    }
    return 0;
}

/* A signed POST (payload NULL: POST-as-GET). 0 with *r (any status but badNonce), or -1. */
static int post(tl_acme *a, const char *url, const char *payload, tli_acme_resp *r, char *err,
                size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        if (!a->nonce && new_nonce(a, err, errlen) != 0)
            return -1;
        char *jws = tli_acme_jws(a->account_key, a->kid, a->nonce, url, payload, err, errlen);
        free(a->nonce);
        a->nonce = NULL;   /* used once */
        if (!jws)
            return -1;
        int rc = tli_acme_http(a, "POST", url, "application/jose+json", jws, r, err, errlen);
        free(jws);
        if (rc != 0)
            return -1;
        keep_nonce(a, r);
        if (r->status == 400 && is_problem(r, "urn:ietf:params:acme:error:badNonce") &&
            attempt < BAD_NONCE_RETRIES) {
            ALOG(a, DEBUG, "badNonce from %s: retrying with the fresh nonce", url);
            tli_acme_resp_free(r);
            continue;
        }
        return 0;
    }
}

/* A signed POST whose answer must be JSON with one of the statuses ok1/ok2. */
static json_t *post_json(tl_acme *a, const char *what, const char *url, const char *payload,
                         int ok1, int ok2, char **location, char *err, size_t errlen)
{
    tli_acme_resp r;
    if (post(a, url, payload, &r, err, errlen) != 0)
        return NULL;
    json_t *j = NULL;
    if (r.status != ok1 && r.status != ok2) {
        char why[600];
        problem_text(&r, why, sizeof why);
        tli_fmt(err, errlen, "%s (%s): %s", what, url, why);
    } else if (!(j = json_loads(r.body, 0, NULL)) || !json_is_object(j)) {
        json_decref(j);
        j = NULL;
        tli_fmt(err, errlen, "%s (%s): the answer is not a JSON object", what, url);
    } else if (location) {
        *location = r.location;
        r.location = NULL;
    }
    tli_acme_resp_free(&r);
    return j;
}

static int directory(tl_acme *a, char *err, size_t errlen)
{
    if (a->url_order)
        return 0;
    tli_acme_resp r;
    if (tli_acme_http(a, "GET", a->directory, NULL, NULL, &r, err, errlen) != 0)
        return -1;
    json_t *j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
    const char *n = json_string_value(json_object_get(j, "newNonce"));
    const char *acc = json_string_value(json_object_get(j, "newAccount"));
    const char *ord = json_string_value(json_object_get(j, "newOrder"));
    int rc = -1;
    if (!n || !acc || !ord)
        tli_fmt(err, errlen, "acme-directory %s: HTTP %d, not an ACME directory (newNonce, "
                "newAccount and newOrder wanted)", a->directory, r.status);
    else if ((a->url_nonce = strdup(n)) && (a->url_account = strdup(acc)) &&
             (a->url_order = strdup(ord)))
        rc = 0;
    const char *ri = json_string_value(json_object_get(j, "renewalInfo"));
    if (rc == 0 && ri && !(a->url_renewal = strdup(ri)))
        rc = -1, tli_fmt(err, errlen, "out of memory");
    else
        tli_fmt(err, errlen, "out of memory");
    json_decref(j);
    tli_acme_resp_free(&r);
    return rc;
}

static int account(tl_acme *a, char *err, size_t errlen)
{
    if (a->kid)
        return 0;
    json_t *req = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (a->email) {
        char mail[600];
        tli_fmt(mail, sizeof mail, "mailto:%s", a->email);
        json_object_set_new(req, "contact", json_pack("[s]", mail));
    }
    char *payload = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *kid = NULL;
    json_t *j = payload ? post_json(a, "newAccount", a->url_account, payload, 201, 200, &kid,
                                    err, errlen)
                        : NULL;
    free(payload);
    if (!j)
        return -1;
    const char *status = json_string_value(json_object_get(j, "status"));
    int rc = -1;
    if (!kid)
        tli_fmt(err, errlen, "newAccount: no Location (the account URL) in the answer");
    else if (status && strcmp(status, "valid"))
        tli_fmt(err, errlen, "newAccount: the account is %s", status);
    else {
        a->kid = kid;
        kid = NULL;
        ALOG(a, INFO, "account %s", a->kid);
        rc = 0;
    }
    free(kid);
    json_decref(j);
    return rc;
}

/* How long to wait before polling again: Retry-After (seconds) within bounds, else a second. */
static uint64_t poll_delay(const tli_acme_resp *r)
{
    long s = r->retry_after ? strtol(r->retry_after, NULL, 10) : 0;
    return s > 0 ? (uint64_t)(s * 1000 > POLL_MAX_MS ? POLL_MAX_MS : s * 1000) : POLL_DEFAULT_MS;
}

/* POST-as-GET url until its status is none of the waiting ones; returns the object (or NULL). */
static json_t *poll(tl_acme *a, const char *what, const char *url, const char *const *waiting,
                    char *err, size_t errlen)
{
    for (int i = 0; i < POLL_ATTEMPTS; i++) {
        tli_acme_resp r;
        if (post(a, url, NULL, &r, err, errlen) != 0)
            return NULL;
        json_t *j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
        const char *st = json_string_value(json_object_get(j, "status"));
        if (!st) {
            char why[600];
            problem_text(&r, why, sizeof why);
            tli_fmt(err, errlen, "%s (%s): %s", what, url, why);
            json_decref(j);
            tli_acme_resp_free(&r);
            return NULL;
        }
        bool wait = false;
        for (size_t k = 0; waiting[k]; k++)
            wait = wait || !strcmp(st, waiting[k]);
        uint64_t delay = poll_delay(&r);
        tli_acme_resp_free(&r);
        if (!wait)
            return j;
        json_decref(j);
        if (!tli_acme_sleep(a, delay)) {
            tli_fmt(err, errlen, "stopped");
            return NULL;
        }
    }
    tli_fmt(err, errlen, "%s (%s): still pending after %d polls", what, url, POLL_ATTEMPTS);
    return NULL;
}

/* The reason an authorization failed, from its challenges' error objects. */
static void authz_failure(json_t *authz, const char *name, char *err, size_t errlen)
{
    json_t *chals = json_object_get(authz, "challenges"), *c;
    size_t i;
    json_array_foreach(chals, i, c) {
        json_t *e = json_object_get(c, "error");
        if (e) {
            const char *d = json_string_value(json_object_get(e, "detail"));
            const char *t = json_string_value(json_object_get(e, "type"));
            tli_fmt(err, errlen, "the %s challenge for %s failed: %s (%s)",
                    json_string_value(json_object_get(c, "type")), name, d ? d : "?",
                    t ? t : "?");
            return;
        }
    }
    tli_fmt(err, errlen, "the authorization for %s is %s", name,
            json_string_value(json_object_get(authz, "status")));
}

static int authorize(tl_acme *a, const char *url, char *err, size_t errlen)
{
    static const char *const PENDING[] = {"pending", NULL};
    json_t *authz = post_json(a, "authorization", url, NULL, 200, 200, NULL, err, errlen);
    if (!authz)
        return -1;
    const char *status = json_string_value(json_object_get(authz, "status"));
    const char *name = json_string_value(json_object_get(json_object_get(authz, "identifier"),
                                                         "value"));
    int rc = -1;
    if (status && !strcmp(status, "valid")) {
        ALOG(a, INFO, "%s: authorization still valid, no challenge needed", name ? name : "?");
        json_decref(authz);
        return 0;
    }
    const char *want = a->challenge == TL_ACME_HTTP_01 ? "http-01" : "tls-alpn-01";
    json_t *chals = json_object_get(authz, "challenges"), *c, *chal = NULL;
    size_t i;
    json_array_foreach(chals, i, c) {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (t && !strcmp(t, want))
            chal = c;
    }
    const char *token = json_string_value(json_object_get(chal, "token"));
    const char *curl = json_string_value(json_object_get(chal, "url"));
    if (!name || !status || strcmp(status, "pending")) {
        tli_fmt(err, errlen, "authorization %s: status %s", url, status ? status : "missing");
        json_decref(authz);
        return -1;
    }
    if (!token || !curl || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-_") != strlen(token)) {
        tli_fmt(err, errlen, "%s: the ACME server offers no usable %s challenge (acme-challenge "
                "chooses another)", name, want);
        json_decref(authz);
        return -1;
    }
    char *ka = tli_acme_key_authz(token, a->thumbprint);
    int added = !ka ? -1
                : a->challenge == TL_ACME_HTTP_01 ? tli_acme_chal_http_add(a, token, ka)
                                                  : tli_acme_chal_alpn_add(a, name, ka, err,
                                                                           errlen);
    if (added != 0) {
        if (!*err)
            tli_fmt(err, errlen, "out of memory");
        free(ka);
        json_decref(authz);
        return -1;
    }
    ALOG(a, INFO, "%s: answering the %s challenge", name, want);
    json_t *resp = post_json(a, "challenge", curl, "{}", 200, 200, NULL, err, errlen);
    json_t *done = resp ? poll(a, "authorization", url, PENDING, err, errlen) : NULL;
    const char *final = json_string_value(json_object_get(done, "status"));
    if (final && !strcmp(final, "valid")) {
        ALOG(a, INFO, "%s: %s challenge valid", name, want);
        rc = 0;
    } else if (done) {
        authz_failure(done, name, err, errlen);
    }
    if (a->challenge == TL_ACME_HTTP_01)
        tli_acme_chal_http_del(a, token);
    else
        tli_acme_chal_alpn_del(a, name);
    free(ka);
    json_decref(resp);
    json_decref(done);
    json_decref(authz);
    return rc;
}

static int download(tl_acme *a, const char *url, char **chain, char *err, size_t errlen)
{
    tli_acme_resp r;
    if (post(a, url, NULL, &r, err, errlen) != 0)
        return -1;
    if (r.status != 200 || !strstr(r.body, "-----BEGIN CERTIFICATE-----")) {
        char why[600];
        problem_text(&r, why, sizeof why);
        tli_fmt(err, errlen, "certificate download (%s): %s", url, why);
        tli_acme_resp_free(&r);
        return -1;
    }
    *chain = r.body;
    r.body = NULL;
    tli_acme_resp_free(&r);
    return 0;
}

int tli_acme_renewal_info(tl_acme *a, const char *ari_id, int64_t *start, int64_t *end,
                          char *err, size_t errlen)
{
    if (directory(a, err, errlen) != 0)
        return -1;
    if (!a->url_renewal)
        return 0;
    char url[2048];
    tli_fmt(url, sizeof url, "%s%s%s", a->url_renewal,
            a->url_renewal[strlen(a->url_renewal) - 1] == '/' ? "" : "/", ari_id);
    tli_acme_resp r;
    if (tli_acme_http(a, "GET", url, NULL, NULL, &r, err, errlen) != 0)
        return -1;
    json_t *j = r.status == 200 ? json_loads(r.body, 0, NULL) : NULL;
    json_t *w = json_object_get(j, "suggestedWindow");
    const char *s = json_string_value(json_object_get(w, "start"));
    const char *e = json_string_value(json_object_get(w, "end"));
    int rc = 1;
    if (!s || !e || tli_acme_parse_time(s, start) != 0 || tli_acme_parse_time(e, end) != 0 ||
        *end < *start) {
        char why[600];
        problem_text(&r, why, sizeof why);
        tli_fmt(err, errlen, "renewalInfo %s: no usable suggestedWindow (%s)", url, why);
        rc = -1;
    }
    json_decref(j);
    tli_acme_resp_free(&r);
    return rc;
}

int tli_acme_issue(tl_acme *a, const char *replaces, char **pem, char *err, size_t errlen)
{
    static const char *const PROCESSING[] = {"pending", "processing", NULL};
    *err = 0;
    if (directory(a, err, errlen) != 0 || account(a, err, errlen) != 0)
        return -1;
    json_t *ids = json_array();
    for (size_t i = 0; i < a->n_domains; i++)
        json_array_append_new(ids, json_pack("{s:s,s:s}", "type", "dns", "value",
                                             a->domains[i]));
    json_t *req = json_pack("{s:o}", "identifiers", ids);
    /* RFC 9773 section 5: say which certificate this one replaces (servers with ARI only). */
    if (req && replaces && a->url_renewal)
        json_object_set_new(req, "replaces", json_string(replaces));
    char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    char *order_url = NULL;
    json_t *order = payload ? post_json(a, "newOrder", a->url_order, payload, 201, 200,
                                        &order_url, err, errlen)
                            : NULL;
    free(payload);
    if (!order) {
        if (!*err)
            tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    json_t *final = NULL;
    EVP_PKEY *key = NULL;
    char *csr = NULL, *chain = NULL, *keypem = NULL;
    const char *finalize = json_string_value(json_object_get(order, "finalize"));
    json_t *authzs = json_object_get(order, "authorizations"), *u;
    size_t i;
    if (!order_url || !finalize || !json_is_array(authzs)) {
        tli_fmt(err, errlen, "newOrder: the answer lacks its Location, finalize or "
                "authorizations");
        goto out;
    }
    ALOG(a, INFO, "order %s", order_url);
    json_array_foreach(authzs, i, u) {
        if (!json_is_string(u) || authorize(a, json_string_value(u), err, errlen) != 0)
            goto out;
    }
    /* The certificate's own key: new for each certificate. */
    if (!(key = tli_acme_key_new(err, errlen)) ||
        !(csr = tli_acme_csr(key, (const char *const *)a->domains, a->n_domains, err, errlen)))
        goto out;
    json_t *fin = json_pack("{s:s}", "csr", csr);
    char *fp = fin ? json_dumps(fin, JSON_COMPACT) : NULL;
    json_decref(fin);
    json_t *fr = fp ? post_json(a, "finalize", finalize, fp, 200, 200, NULL, err, errlen) : NULL;
    free(fp);
    if (!fr)
        goto out;
    json_decref(fr);
    final = poll(a, "order", order_url, PROCESSING, err, errlen);
    const char *st = json_string_value(json_object_get(final, "status"));
    const char *cert_url = json_string_value(json_object_get(final, "certificate"));
    if (!final)
        goto out;
    if (!st || strcmp(st, "valid") || !cert_url) {
        tli_fmt(err, errlen, "order %s: status %s after finalize", order_url, st ? st : "?");
        goto out;
    }
    if (download(a, cert_url, &chain, err, errlen) != 0)
        goto out;
    if (!(keypem = tli_acme_key_pem(key)) || asprintf(pem, "%s%s", keypem, chain) < 0) {
        *pem = NULL;
        tli_fmt(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (keypem) {
        OPENSSL_cleanse(keypem, strlen(keypem));
        free(keypem);
    }
    free(chain);
    free(csr);
    EVP_PKEY_free(key);
    json_decref(final);
    json_decref(order);
    free(order_url);
    return rc;
}
