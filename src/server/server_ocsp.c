/* server_ocsp.c - OCSP stapling for the server's certificates (ocsp-staple, docs/certificates.md).
 *
 * One entry per leaf certificate (by the SHA-256 of its DER), kept across reloads, with the staple
 * slot every configuration serving that certificate holds (tli_ocsp.h): workers' handshakes read
 * the slot, this file replaces its contents. With ocsp-staple on, the control loop fetches a
 * response from the certificate's OCSP responder (its AIA URL) with tlsloop's own client (a DER
 * POST, never a blocking call), checks it against the issuer, staples it if it says good, writes
 * it to the cache directory (atomically: a temporary file renamed) and fetches again half way to
 * its nextUpdate; failures are retried with backoff while the response held stays stapled until
 * it expires. At start a response kept in the cache is read and checked again. With
 * ocsp-staple FILE the operator's response is read and checked at start and on every reload.
 * A revoked status is logged as an error and never stapled. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include <tlsloop/client.h>

#include "server/server_int.h"
#include "tls/tli_ocsp.h"

#define MAX_RESPONSE (64u * 1024u)
#define FETCH_TIMEOUT_MS 15000
#define MAX_MEMBERS 256

typedef struct ocsp_cert {
    struct ocsp_cert *next;
    tli_ocsp *o;
    char key[65];                  /* SHA-256 of the leaf's DER, hex: the cache file's name */
    char name[160];                /* for the log: the subject's CN, else its first DNS name */
    X509 *leaf;                    /* references */
    STACK_OF(X509) *chain;
    X509 *issuer;                  /* in chain, or NULL */
    char *url;                     /* the responder, or NULL */
    bool must_staple;
    bool used;                     /* by the newest generation */
    bool cache_read;
    bool announced;                /* "no responder" / "no issuer" said (once) */
    tli_staple *staple;
    tl_ocsp_info info;             /* the response stapled now, when has */
    bool has;
    unsigned failures;
    tl_timer timer;
    bool scheduled;
    /* the fetch under way */
    tl_client_dial *dial;
    tl_client_http *x;
    uint8_t *req;
    size_t req_len;
    uint8_t *body;
    size_t body_len;
    int http_status;
    bool answered, too_big;
    char why[400];
} ocsp_cert;

struct tli_ocsp {
    tl_server *srv;
    pthread_mutex_t lock;          /* recursive: the list, and each entry's state */
    ocsp_cert *certs;
    tl_client *client;             /* made with the first fetch */
    tli_ocsp_mode mode;            /* of the newest generation */
    char cache[4096];
    tl_work kick;
    atomic_bool kick_posted;
    bool stopping;
};

static const tl_conn_cbs FETCH_CONN_CBS = {0};

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void time_text(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(buf, len, "%lld", (long long)t);
}

void tli_ocsp_cache_dir(const tl_server_config *cfg, char *out, size_t len)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (cfg->ocsp_cache)
        tli_fmt(out, len, "%s", cfg->ocsp_cache);
    else if (xdg && *xdg)
        tli_fmt(out, len, "%s/tlsloop/ocsp", xdg);
    else
        tli_fmt(out, len, "%s/.local/state/tlsloop/ocsp", home && *home ? home : "/tmp");
}

/* ---- the cache directory ----------------------------------------------------------------- */

/* A whole small file (at most MAX_RESPONSE bytes). 0, or -1 with errno (EFBIG: too large). */
static int read_small(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t *buf = malloc(MAX_RESPONSE + 1);
    size_t n = 0;
    ssize_t r = 0;
    while (buf && n <= MAX_RESPONSE && (r = read(fd, buf + n, MAX_RESPONSE + 1 - n)) > 0)
        n += (size_t)r;
    int e = errno;
    close(fd);
    if (!buf || r < 0 || n > MAX_RESPONSE) {
        free(buf);
        errno = !buf ? ENOMEM : r < 0 ? e : EFBIG;
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Write the response to DIR/KEY.der through a temporary file, fsync'd and renamed, so a crash
 * leaves the old file or the new one, never half of one. */
static int write_cache(tli_ocsp *o, const ocsp_cert *c, const uint8_t *der, size_t len,
                       char *err, size_t errlen)
{
    if (tli_mkdirs(o->cache) != 0) {
        tli_fmt(err, errlen, "%s: cannot make the directory: %s", o->cache, strerror(errno));
        return -1;
    }
    char path[4200];
    tli_fmt(path, sizeof path, "%s/%s.der", o->cache, c->key);
    return tli_write_file(path, der, len, err, errlen);
}

/* ---- entries ----------------------------------------------------------------------------- */

static void cert_name(X509 *x, char *out, size_t len)
{
    out[0] = 0;
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len) > 0)
        return;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !out[0]; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS)
            tli_fmt(out, len, "%.*s", ASN1_STRING_length(gn->d.dNSName),
                    (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (!out[0])
        tli_fmt(out, len, "(no name)");
}

static int cert_key(X509 *x, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!X509_digest(x, EVP_sha256(), md, &n) || n != 32)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static void on_timer(tl_loop *loop, tl_timer *t);

static ocsp_cert *find_or_add(tli_ocsp *o, X509 *leaf, STACK_OF(X509) *chain, bool *added)
{
    char key[65];
    *added = false;
    if (cert_key(leaf, key) != 0)
        return NULL;
    for (ocsp_cert *c = o->certs; c; c = c->next)
        if (!strcmp(c->key, key))
            return c;
    ocsp_cert *c = calloc(1, sizeof *c);
    if (!c || !(c->staple = tli_staple_new()) || !X509_up_ref(leaf) ||
        !(c->chain = X509_chain_up_ref(chain))) {
        if (c && c->staple)
            tli_staple_free(c->staple);
        free(c);
        return NULL;
    }
    c->o = o;
    c->leaf = leaf;
    memcpy(c->key, key, sizeof key);
    cert_name(leaf, c->name, sizeof c->name);
    c->issuer = tli_ocsp_issuer(leaf, c->chain);
    c->url = tli_ocsp_url(leaf);
    c->must_staple = tli_ocsp_must_staple(leaf);
    tl_timer_init(&c->timer, on_timer, c);
    c->next = o->certs;
    o->certs = c;
    *added = true;
    return c;
}

static void drop_staple(ocsp_cert *c)
{
    tli_staple_clear(c->staple);
    c->has = false;
}

static void warn_must_staple(tli_ocsp *o, ocsp_cert *c)
{
    if (c->must_staple && !c->has)
        LOG(o->srv, WARN, "ocsp: %s: the certificate is must-staple (TLS feature status_request) "
            "and no good OCSP response is stapled: clients that honour it will refuse this server",
            c->name);
}

/* Check a response; staple it when it says good. Returns 1 when stapled, 0 when it verified but
 * says revoked or unknown (logged, not stapled), -1 when it does not verify (why set). */
static int take_response(tli_ocsp *o, ocsp_cert *c, const uint8_t *der, size_t len,
                         const char *from, char *why, size_t whylen)
{
    tl_ocsp_info info;
    if (!c->issuer) {
        tli_fmt(why, whylen, "the certificate's issuer is not in its chain file (put the "
                             "intermediate after the leaf): OCSP cannot be checked");
        return -1;
    }
    if (tli_ocsp_verify(der, len, c->leaf, c->chain, now_s(), &info, why, whylen) != 0)
        return -1;
    char t[40];
    if (info.status == TL_OCSP_REVOKED) {
        time_text(info.revoked_at, t, sizeof t);
        LOG(o->srv, ERROR, "ocsp: %s: REVOKED: the CA's OCSP response (%s) says this certificate "
            "was revoked on %s (reason %d); it is not stapled: replace the certificate now",
            c->name, from, t, info.reason);
        drop_staple(c);
        c->info = info;   /* its times schedule the next check */
        return 0;
    }
    if (info.status != TL_OCSP_GOOD) {
        LOG(o->srv, WARN, "ocsp: %s: the OCSP response (%s) says the certificate's status is "
            "unknown to the responder; not stapled", c->name, from);
        drop_staple(c);
        c->info = info;
        return 0;
    }
    if (tli_staple_set(c->staple, der, len, info.expires) != 0) {
        tli_fmt(why, whylen, "out of memory");
        return -1;
    }
    c->info = info;
    c->has = true;
    char t2[40];
    time_text(info.this_update, t, sizeof t);
    time_text(info.expires, t2, sizeof t2);
    LOG(o->srv, INFO, "ocsp: %s: stapling a good response (%s; thisUpdate %s, valid until %s)",
        c->name, from, t, t2);
    return 1;
}

/* ---- fetching ---------------------------------------------------------------------------- */

static void schedule(ocsp_cert *c, int64_t at);

static void fetch_reset(ocsp_cert *c)
{
    free(c->req);
    free(c->body);
    c->req = c->body = NULL;
    c->req_len = c->body_len = 0;
    c->http_status = 0;
    c->answered = c->too_big = false;
    c->why[0] = 0;
}

/* The fetch ended (its connection is gone): schedule the next one. */
static void fetch_end(ocsp_cert *c)
{
    tli_ocsp *o = c->o;
    int64_t now = now_s();
    if (o->stopping || !c->used || o->mode != TLI_OCSP_ON) {
        fetch_reset(c);
        return;
    }
    int taken = -1;
    char why[400];
    if (c->answered) {
        char from[300];
        tli_fmt(from, sizeof from, "from %s", c->url);
        taken = take_response(o, c, c->body, c->body_len, from, why, sizeof why);
        if (taken < 0)
            tli_fmt(c->why, sizeof c->why, "the response was refused: %s", why);
    }
    if (taken == 1) {
        char err[512];
        if (write_cache(o, c, c->body, c->body_len, err, sizeof err) != 0)
            LOG(o->srv, WARN, "ocsp: %s: the response is stapled but not kept for a restart: %s",
                c->name, err);
        c->failures = 0;
        int64_t at = tli_ocsp_refresh_at(&c->info);
        fetch_reset(c);
        schedule(c, at);
        return;
    }
    if (taken == 0) {   /* revoked or unknown: ask again as the response says, as a failure */
        c->failures++;
        int64_t at = tli_ocsp_refresh_at(&c->info);
        int64_t retry = now + tli_ocsp_retry_after(c->failures, now, 0);
        fetch_reset(c);
        schedule(c, at > retry ? retry : at);
        warn_must_staple(o, c);
        return;
    }
    c->failures++;
    int64_t expires = 0;
    bool held = c->has && tli_staple_valid(c->staple, now, &expires);
    if (c->has && !held) {
        c->has = false;
        LOG(o->srv, WARN, "ocsp: %s: the stapled response expired and no new one could be had: "
            "no staple until the responder answers", c->name);
    }
    int64_t delay = tli_ocsp_retry_after(c->failures, now, held ? expires : 0);
    char until[64] = "";
    if (held)
        time_text(expires, until, sizeof until);
    LOG(o->srv, WARN, "ocsp: %s: fetching a response from %s failed: %s; retry in %llds%s%s",
        c->name, c->url, c->why[0] ? c->why : "no answer", (long long)delay,
        held ? "; the response held stays stapled until " : "", until);
    warn_must_staple(o, c);
    fetch_reset(c);
    schedule(c, now + delay);
}

static void on_http_head(tl_client_http *x, const tl_http_response *resp, void *data)
{
    (void)x;
    ocsp_cert *c = data;
    c->http_status = resp->status;
}

static void on_http_body(tl_client_http *x, const uint8_t *p, size_t n, void *data)
{
    ocsp_cert *c = data;
    if (c->too_big)
        return;
    if (c->body_len + n > MAX_RESPONSE) {
        c->too_big = true;
        tl_client_http_close(x);
        return;
    }
    uint8_t *grown = realloc(c->body, c->body_len + n);
    if (!grown) {
        c->too_big = true;
        tl_client_http_close(x);
        return;
    }
    memcpy(grown + c->body_len, p, n);
    c->body = grown;
    c->body_len += n;
}

static void on_http_done(tl_client_http *x, tl_http_result res, const char *why, void *data)
{
    ocsp_cert *c = data;
    pthread_mutex_lock(&c->o->lock);
    if (c->too_big)
        tli_fmt(c->why, sizeof c->why, "the response is over %u bytes", MAX_RESPONSE);
    else if (res != TL_HTTP_DONE)
        tli_fmt(c->why, sizeof c->why, "HTTP %s%s%s", tl_http_result_name(res), *why ? ": " : "",
                why);
    else if (c->http_status != 200)
        tli_fmt(c->why, sizeof c->why, "the responder answered HTTP %d", c->http_status);
    else
        c->answered = true;
    pthread_mutex_unlock(&c->o->lock);
    tl_client_http_close(x);
}

static void on_http_close(tl_client_http *x, tl_conn_end how, void *data)
{
    (void)x;
    (void)how;
    ocsp_cert *c = data;
    pthread_mutex_lock(&c->o->lock);
    c->x = NULL;
    if (!c->answered && !c->why[0])
        tli_fmt(c->why, sizeof c->why, "the connection closed before a response");
    fetch_end(c);
    pthread_mutex_unlock(&c->o->lock);
}

static const tl_client_http_cbs FETCH_HTTP_CBS = {
    .on_head = on_http_head, .on_body = on_http_body, .on_done = on_http_done,
    .on_close = on_http_close,
};

/* The URL's parts (OCSP_parse_url: http or https, host, port, path). */
typedef struct url_parts {
    char *host, *port, *path;
    int tls;
} url_parts;

static void on_connected(tl_conn *conn, tl_client_error e, const char *msg, void *data)
{
    ocsp_cert *c = data;
    tli_ocsp *o = c->o;
    pthread_mutex_lock(&o->lock);
    c->dial = NULL;
    if (!conn) {
        tli_fmt(c->why, sizeof c->why, "%s: %s", tl_client_error_name(e), msg);
        fetch_end(c);
        pthread_mutex_unlock(&o->lock);
        return;
    }
    url_parts u = {0};
    char host[300];
    bool ok = OCSP_parse_url(c->url, &u.host, &u.port, &u.path, &u.tls) == 1;
    if (ok) {
        bool dflt = !strcmp(u.port, u.tls ? "443" : "80");
        tli_fmt(host, sizeof host, "%s%s%s", u.host, dflt ? "" : ":", dflt ? "" : u.port);
    }
    c->x = ok ? tl_client_http_new(conn, &FETCH_HTTP_CBS, c) : NULL;
    if (!c->x) {
        if (ok)   /* tl_client_http_new closed the connection */
            tli_fmt(c->why, sizeof c->why, "out of memory");
        else
            tl_conn_close(conn);
        OPENSSL_free(u.host);
        OPENSSL_free(u.port);
        OPENSSL_free(u.path);
        fetch_end(c);
        pthread_mutex_unlock(&o->lock);
        return;
    }
    /* The client sends heads; the DER body follows on the same connection, in order. */
    char headers[200];
    tli_fmt(headers, sizeof headers, "Content-Type: application/ocsp-request\r\n"
            "Accept: application/ocsp-response\r\nContent-Length: %zu\r\n", c->req_len);
    if (tl_client_http_request(c->x, "POST", u.path, host, headers, false, FETCH_TIMEOUT_MS) != 0 ||
        tl_conn_write(conn, c->req, c->req_len) < 0) {
        tli_fmt(c->why, sizeof c->why, "the request could not be sent");
        tl_client_http_close(c->x);   /* on_close ends the fetch */
    }
    OPENSSL_free(u.host);
    OPENSSL_free(u.port);
    OPENSSL_free(u.path);
    pthread_mutex_unlock(&o->lock);
}

static void fetch(ocsp_cert *c)
{
    tli_ocsp *o = c->o;
    char err[300];
    fetch_reset(c);
    if (!o->client) {
        tl_client_config cc = {.resolver_threads = 1, .connect_timeout_ms = FETCH_TIMEOUT_MS,
                               .handshake_timeout_ms = FETCH_TIMEOUT_MS};
        if (!(o->client = tl_client_new(&cc, err, sizeof err))) {
            tli_fmt(c->why, sizeof c->why, "cannot make the HTTP client: %s", err);
            fetch_end(c);
            return;
        }
    }
    url_parts u = {0};
    if (OCSP_parse_url(c->url, &u.host, &u.port, &u.path, &u.tls) != 1) {
        ERR_clear_error();
        tli_fmt(c->why, sizeof c->why, "the responder URL %s is not an http:// or https:// URL",
                c->url);
        fetch_end(c);
        return;
    }
    if (tli_ocsp_request(c->leaf, c->issuer, &c->req, &c->req_len, err, sizeof err) != 0) {
        tli_fmt(c->why, sizeof c->why, "%s", err);
    } else {
        long port = strtol(u.port, NULL, 10);
        tl_client_target t = {.host = u.host, .port = (uint16_t)port, .tls = u.tls != 0,
                              .cbs = &FETCH_CONN_CBS, .timeout_ms = FETCH_TIMEOUT_MS};
        if (port <= 0 || port > 65535)
            tli_fmt(c->why, sizeof c->why, "bad port in %s", c->url);
        else
            c->dial = tl_client_connect(o->client, o->srv->control, &t, on_connected, c, err,
                                        sizeof err);
        if (!c->dial && !c->why[0])
            tli_fmt(c->why, sizeof c->why, "%s", err);
    }
    OPENSSL_free(u.host);
    OPENSSL_free(u.port);
    OPENSSL_free(u.path);
    if (!c->dial)
        fetch_end(c);
}

static void on_timer(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    ocsp_cert *c = t->data;
    pthread_mutex_lock(&c->o->lock);
    c->scheduled = false;
    if (!c->o->stopping && c->used && c->o->mode == TLI_OCSP_ON && !c->dial && !c->x)
        fetch(c);
    pthread_mutex_unlock(&c->o->lock);
}

/* On the control loop. */
static void schedule(ocsp_cert *c, int64_t at)
{
    int64_t now = now_s();
    uint64_t ms = at > now ? (uint64_t)(at - now) * 1000 : 0;
    tl_timer_stop(c->o->srv->control, &c->timer);
    c->scheduled = tl_timer_start(c->o->srv->control, &c->timer, ms) == 0;
}

static void cancel(ocsp_cert *c)
{
    tl_loop *loop = c->o->srv->control;
    if (c->scheduled)
        tl_timer_stop(loop, &c->timer);
    c->scheduled = false;
    if (c->dial)
        tl_client_cancel(c->dial);     /* on_connected(NULL) follows */
    if (c->x)
        tl_conn_abort(tl_client_http_conn(c->x));   /* on_close follows */
}

static void free_cert(ocsp_cert *c)
{
    fetch_reset(c);
    tli_staple_free(c->staple);   /* the configurations that serve it hold their own references */
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    free(c->url);
    free(c);
}

/* On the control loop: what each entry should do now that a generation was attached. An entry
 * the newest generation no longer has (a certificate replaced by a reload) is dropped once its
 * fetch has ended. */
static void on_kick(tl_loop *loop, tl_work *w)
{
    (void)loop;
    tli_ocsp *o = w->data;
    atomic_store(&o->kick_posted, false);
    pthread_mutex_lock(&o->lock);
    for (ocsp_cert **pp = &o->certs; *pp;) {
        ocsp_cert *c = *pp;
        if (!c->used) {
            cancel(c);
            if (!c->dial && !c->x) {
                *pp = c->next;
                free_cert(c);
                continue;
            }
        }
        pp = &c->next;
    }
    for (ocsp_cert *c = o->certs; c; c = c->next) {
        bool fetching = o->mode == TLI_OCSP_ON && c->used && c->url && c->issuer && !o->stopping;
        if (!fetching) {
            cancel(c);
            continue;
        }
        if (c->scheduled || c->dial || c->x)
            continue;
        schedule(c, c->has ? tli_ocsp_refresh_at(&c->info) : 0);
    }
    pthread_mutex_unlock(&o->lock);
}

/* ---- generations ------------------------------------------------------------------------- */

/* ocsp-staple on, a certificate seen for the first time: say what will happen, and take the
 * response kept in the cache if it still checks. */
static void first_sight(tli_ocsp *o, ocsp_cert *c)
{
    if ((!c->url || !c->issuer) && c->announced)
        return;
    c->announced = !c->url || !c->issuer;
    if (!c->url) {
        LOG(o->srv, INFO, "ocsp: %s: the certificate names no OCSP responder (no AIA OCSP URL): "
            "not stapling", c->name);
        warn_must_staple(o, c);
        return;
    }
    if (!c->issuer) {
        LOG(o->srv, WARN, "ocsp: %s: the certificate's issuer is not in its chain file (put the "
            "intermediate after the leaf): OCSP responses cannot be asked for or checked; not "
            "stapling", c->name);
        warn_must_staple(o, c);
        return;
    }
    if (c->cache_read)
        return;
    c->cache_read = true;
    char path[4200], why[400], from[4300];
    tli_fmt(path, sizeof path, "%s/%s.der", o->cache, c->key);
    uint8_t *der = NULL;
    size_t len = 0;
    if (read_small(path, &der, &len) != 0) {
        if (errno != ENOENT)
            LOG(o->srv, WARN, "ocsp: %s: %s: cannot read the kept response: %s", c->name, path,
                strerror(errno));
        return;
    }
    tli_fmt(from, sizeof from, "kept in %s", path);
    if (take_response(o, c, der, len, from, why, sizeof why) < 0)
        LOG(o->srv, INFO, "ocsp: %s: the response kept in %s is not used: %s", c->name, path, why);
    free(der);
}

/* ocsp-staple FILE: staple it for the certificates it is for. */
static void use_file(tli_ocsp *o, const char *file)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (read_small(file, &der, &len) != 0) {
        LOG(o->srv, ERROR, "ocsp-staple %s: cannot read: %s; nothing is stapled", file,
            errno == EFBIG ? "over 64 KiB, not an OCSP response" : strerror(errno));
        for (ocsp_cert *c = o->certs; c; c = c->next)
            drop_staple(c);
        return;
    }
    unsigned matched = 0, used = 0;
    char first_why[400] = "";
    char from[4200];
    tli_fmt(from, sizeof from, "from ocsp-staple %s", file);
    for (ocsp_cert *c = o->certs; c; c = c->next) {
        if (!c->used)
            continue;
        used++;
        char why[400];
        int r = take_response(o, c, der, len, from, why, sizeof why);
        if (r >= 0) {
            matched++;
            continue;
        }
        drop_staple(c);
        if (!first_why[0])
            tli_fmt(first_why, sizeof first_why, "%s: %s", c->name, why);
    }
    if (!matched)
        LOG(o->srv, ERROR, "ocsp-staple %s: refused, nothing is stapled: %s", file,
            used ? first_why : "no certificate");
    for (ocsp_cert *c = o->certs; c; c = c->next)
        if (c->used)
            warn_must_staple(o, c);
    free(der);
}

int tli_ocsp_attach(tli_ocsp *o, tli_gen *g)
{
    if (!o || !g->tls)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&o->lock);
    const tl_server_config *cfg = g->cfg;
    o->mode = cfg->ocsp;
    tli_ocsp_cache_dir(cfg, o->cache, sizeof o->cache);
    for (ocsp_cert *c = o->certs; c; c = c->next)
        c->used = false;
    tl_tls_ctx *members[MAX_MEMBERS];
    size_t n = tli_tls_ctx_members(g->tls, members, MAX_MEMBERS);
    for (size_t m = 0; m < n && m < MAX_MEMBERS; m++) {
        for (size_t i = 0; i < tli_tls_ctx_leaf_count(members[m]); i++) {
            STACK_OF(X509) *chain = NULL;
            X509 *leaf = tli_tls_ctx_leaf(members[m], i, &chain);
            bool added;
            ocsp_cert *c = leaf ? find_or_add(o, leaf, chain, &added) : NULL;
            if (!c) {
                rc = -1;
                continue;
            }
            c->used = true;
            if (o->mode != TLI_OCSP_OFF)
                tli_tls_ctx_set_staple(members[m], i, c->staple);
            if (o->mode == TLI_OCSP_ON)
                first_sight(o, c);
        }
    }
    if (o->mode == TLI_OCSP_FILE)
        use_file(o, cfg->ocsp_file);
    if (rc != 0)
        LOG(o->srv, ERROR, "ocsp: out of memory: some certificates are not stapled");
    pthread_mutex_unlock(&o->lock);
    if (!atomic_exchange(&o->kick_posted, true))
        tl_loop_post(o->srv->control, &o->kick);
    return rc;
}

tli_ocsp *tli_ocsp_new(tl_server *srv)
{
    tli_ocsp *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->srv = srv;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&o->lock, &a);
    pthread_mutexattr_destroy(&a);
    o->kick = (tl_work){.done = on_kick, .data = o};
    return o;
}

void tli_ocsp_stop(tli_ocsp *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    for (ocsp_cert *c = o->certs; c; c = c->next)
        cancel(c);
    pthread_mutex_unlock(&o->lock);
}

bool tli_ocsp_busy(tli_ocsp *o)
{
    if (!o)
        return false;
    bool busy = false;
    pthread_mutex_lock(&o->lock);
    for (ocsp_cert *c = o->certs; c && !busy; c = c->next)
        busy = c->dial || c->x;
    pthread_mutex_unlock(&o->lock);
    return busy;
}

void tli_ocsp_free(tli_ocsp *o)
{
    if (!o)
        return;
    for (ocsp_cert *c = o->certs, *next; c; c = next) {
        next = c->next;
        if (c->scheduled && o->srv->control)
            tl_timer_stop(o->srv->control, &c->timer);
        free_cert(c);
    }
    tl_client_free(o->client);
    pthread_mutex_destroy(&o->lock);
    free(o);
}
