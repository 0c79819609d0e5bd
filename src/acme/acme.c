/* acme.c - the ACME client's life (tlsloop/acme.h): its options, the state directory (account
 * key, certificate file, lock), the thread that issues and renews, and the swap of a new
 * certificate into the running server through its reload (the SIGHUP path). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tlsloop/certgen.h>

#include "acme/acme_int.h"

#define DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"
#define DEFAULT_RETRY_MS 60000ull
#define RETRY_MAX_MS (24ull * 3600 * 1000)
/* How often the thread looks at the certificate file while waiting (another instance may have
 * renewed it). */
#define WATCH_MS 60000ull
#define MAX_DOMAINS 100
/* How often the renewal information is asked again while waiting. */
#define ARI_RECHECK_S (6 * 3600)

/* ---- options ---------------------------------------------------------------------------- */

static int check_challenge(const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "tls-alpn-01") && strcmp(v, "http-01")) {
        tli_fmt(err, errlen, "expected tls-alpn-01 or http-01");
        return -1;
    }
    return 0;
}

/* A DNS name the challenges can prove: labels of letters, digits and '-', no wildcard (neither
 * http-01 nor tls-alpn-01 may validate one, RFC 8555 section 7.1.3). */
static int check_domain(const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v), label = 0;
    bool ok = n > 0 && n <= 253;
    for (size_t i = 0; ok && i <= n; i++) {
        char c = v[i];
        if (c == '.' || !c) {
            ok = label > 0 && label <= 63;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            label++;
        } else {
            ok = false;
        }
    }
    if (!ok) {
        tli_fmt(err, errlen, "expected a DNS name (labels of letters, digits and '-'; no "
                "wildcards: http-01 and tls-alpn-01 cannot validate them)");
        return -1;
    }
    return 0;
}

static int check_url(const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "https://", 8) && strncmp(v, "http://", 7)) {
        tli_fmt(err, errlen, "expected an https:// URL (the ACME server's directory)");
        return -1;
    }
    return 0;
}

static const tl_server_option OPTIONS[] = {
    {"acme-domain", "NAME", "get a certificate for NAME from the ACME server (repeat for more "
     "names, one certificate for all; default: no ACME)", check_domain, true},
    {"acme-directory", "URL", "the ACME server's directory (default " DEFAULT_DIRECTORY ")",
     check_url, false},
    {"acme-ca", "FILE", "trust the ACME server's TLS certificate by these CAs (default: the "
     "system store)", NULL, false},
    {"acme-email", "ADDR", "contact address of the ACME account (default: none)", NULL, false},
    {"acme-state", "DIR", "the account key, certificate and lock (default: acme/ in the state "
     "directory)", NULL, false},
    {"acme-challenge", "TYPE", "tls-alpn-01 (on the TLS listener) or http-01 (on a plain "
     "listener; serve only) (default: tls-alpn-01 when there is a TLS listener)",
     check_challenge, false},
    {"acme-retry", "DURATION", "first retry after a failure, doubling up to a day (default 60s)",
     tl_server_check_duration, false},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

int tl_acme_config_init(tl_server_config *cfg)
{
    return tl_server_config_extend(cfg, OPTIONS, N_OPTIONS);
}

void tl_acme_usage(FILE *out)
{
    tl_server_option_usage(out, OPTIONS, N_OPTIONS);
}

bool tl_acme_wanted(const tl_server_config *cfg)
{
    return tl_server_config_count(cfg, "acme-domain") > 0;
}

/* ---- the state directory ---------------------------------------------------------------- */

static int account_key(tl_acme *a, char *err, size_t errlen)
{
    if (access(a->account_path, F_OK) == 0)
        return (a->account_key = tli_acme_key_load(a->account_path, err, errlen)) ? 0 : -1;
    if (!(a->account_key = tli_acme_key_new(err, errlen)))
        return -1;
    char *pem = tli_acme_key_pem(a->account_key);
    int rc = pem ? tli_write_file(a->account_path, pem, strlen(pem), err, errlen) : -1;
    if (!pem)
        tli_fmt(err, errlen, "out of memory");
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    return rc;
}

/* Until the ACME server issues one: a self-signed certificate for the names (clients are warned
 * by their browsers; the log says why). */
static int placeholder(tl_acme *a, char *err, size_t errlen)
{
    /* A certificate that expired (the ACME server was out of reach for its whole last third)
     * would stop the server from starting at all: the placeholder serves instead, and the log
     * says so once the thread runs. */
    char *pem = tli_read_text(a->cert_path, NULL, 0);
    int64_t nb, na;
    bool self;
    bool usable = pem && tli_acme_cert_times(pem, &nb, &na, &self) == 0 && na > time(NULL) + 60;
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    if (usable)
        return 0;
    tl_certgen_spec spec = {.key = TL_KEY_ECDSA_P256, .dns_names = (const char *const *)a->domains,
                            .n_dns = a->n_domains, .not_before = -3600,
                            .not_after = 90L * 86400};
    tl_certgen_pair p = {0};
    char *both = NULL;
    int rc = -1;
    if (tl_certgen_issue(&spec, NULL, &p, err, errlen) == 0) {
        if (asprintf(&both, "%s%s", p.key_pem, p.cert_pem) < 0)
            both = NULL;
        rc = both ? tli_write_file(a->cert_path, both, strlen(both), err, errlen) : -1;
        if (!both)
            tli_fmt(err, errlen, "out of memory");
    }
    if (both) {
        OPENSSL_cleanse(both, strlen(both));
        free(both);
    }
    tl_certgen_pair_free(&p);
    return rc;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static char *opt_dup(const tl_server_config *cfg, const char *name)
{
    const char *v = tl_server_config_value(cfg, name);
    return v ? strdup(v) : NULL;
}

tl_acme *tl_acme_new(tl_server_config *cfg, const char *default_state, char *err, size_t errlen)
{
    tl_acme *a = calloc(1, sizeof *a);
    const char *names[MAX_DOMAINS];
    size_t n = tl_server_config_values(cfg, "acme-domain", names, MAX_DOMAINS);
    if (!a) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->chal_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cond, &ca);
    pthread_condattr_destroy(&ca);
    a->renew_fraction = 2.0 / 3.0;
    a->retry_max_ms = RETRY_MAX_MS;
    if (n == 0 || n >= MAX_DOMAINS) {
        tli_fmt(err, errlen, n ? "acme-domain: at most %d names" : "acme-domain: none given",
                MAX_DOMAINS - 1);
        goto fail;
    }
    const char *dir = tl_server_config_value(cfg, "acme-directory");
    const char *state = tl_server_config_value(cfg, "acme-state");
    const char *chal = tl_server_config_value(cfg, "acme-challenge");
    const char *retry = tl_server_config_value(cfg, "acme-retry");
    size_t tls = tl_server_config_count(cfg, "tls-listen");
    size_t plain = tl_server_config_count(cfg, "listen") - tls;
    a->challenge = chal ? (!strcmp(chal, "http-01") ? TL_ACME_HTTP_01 : TL_ACME_TLS_ALPN_01)
                        : (tls ? TL_ACME_TLS_ALPN_01 : TL_ACME_HTTP_01);
    if (a->challenge == TL_ACME_TLS_ALPN_01 && !tls) {
        tli_fmt(err, errlen, "acme-challenge tls-alpn-01 needs a TLS listener (or use http-01 "
                "on a plain one)");
        goto fail;
    }
    if (a->challenge == TL_ACME_HTTP_01 && !plain) {
        tli_fmt(err, errlen, "acme-challenge http-01 needs a plain listener (\"listen "
                "ADDR:80,plain\"), or use tls-alpn-01");
        goto fail;
    }
    a->retry_ms = DEFAULT_RETRY_MS;
    if (retry)
        tl_server_parse_duration(retry, &a->retry_ms);   /* checked when it was set */
    a->directory = strdup(dir ? dir : DEFAULT_DIRECTORY);
    a->ca_file = opt_dup(cfg, "acme-ca");
    a->email = opt_dup(cfg, "acme-email");
    a->state = state ? strdup(state) : strdup(default_state);
    a->domains = calloc(n, sizeof *a->domains);
    if (!a->directory || !a->state || !a->domains) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if (!(a->domains[a->n_domains++] = strdup(names[i]))) {
            tli_fmt(err, errlen, "out of memory");
            goto fail;
        }
    if (a->ca_file && access(a->ca_file, R_OK) != 0) {
        tli_fmt(err, errlen, "acme-ca %s: cannot read: %s", a->ca_file, strerror(errno));
        goto fail;
    }
    if (snprintf(a->cert_path, sizeof a->cert_path, "%s/certificate.pem", a->state) >=
            (int)sizeof a->cert_path ||
        snprintf(a->account_path, sizeof a->account_path, "%s/account.key", a->state) >=
            (int)sizeof a->account_path ||
        snprintf(a->lock_path, sizeof a->lock_path, "%s/lock", a->state) >=
            (int)sizeof a->lock_path) {
        tli_fmt(err, errlen, "acme-state %.200s...: the path is too long", a->state);
        goto fail;
    }
    char chal_dir[4200];
    snprintf(chal_dir, sizeof chal_dir, "%s/challenges", a->state);
    if (tli_mkdirs(chal_dir) != 0) {
        tli_fmt(err, errlen, "acme-state %s: cannot create it: %s", chal_dir, strerror(errno));
        goto fail;
    }
    if (account_key(a, err, errlen) != 0 || placeholder(a, err, errlen) != 0)
        goto fail;
    /* Root making the files in a directory someone else owns (a server that drops privileges
     * to that user): the files are that user's too, so renewals can replace them. */
    struct stat sb;
    if (geteuid() == 0 && stat(a->state, &sb) == 0 && sb.st_uid != 0 &&
        (chown(a->account_path, sb.st_uid, sb.st_gid) != 0 ||
         chown(a->cert_path, sb.st_uid, sb.st_gid) != 0 ||
         chown(chal_dir, sb.st_uid, sb.st_gid) != 0)) {
        tli_fmt(err, errlen, "acme-state %s: cannot give the files to its owner (uid %u): %s",
                a->state, (unsigned)sb.st_uid, strerror(errno));
        goto fail;
    }
    if (!(a->thumbprint = tli_acme_thumbprint(a->account_key))) {
        tli_fmt(err, errlen, "cannot compute the account key's thumbprint");
        goto fail;
    }
    char msg[600];
    if (tl_server_config_set(cfg, "cert", a->cert_path, msg, sizeof msg) != 0 ||
        tl_server_config_set(cfg, "key", a->cert_path, msg, sizeof msg) != 0) {
        tli_fmt(err, errlen, "acme-state: %s", msg);
        goto fail;
    }
    if (a->challenge == TL_ACME_TLS_ALPN_01 &&
        tl_server_config_set_alpn_switch(cfg, "acme-tls/1", tli_acme_alpn_switch, a) != 0) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    return a;
fail:
    tl_acme_free(a);
    return NULL;
}

const char *tl_acme_cert_path(const tl_acme *a)
{
    return a->cert_path;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void on_stop_work(tl_loop *loop, tl_work *w)
{
    (void)w;
    tl_loop_stop(loop);
}

typedef struct certstate {
    bool ok, self_issued;
    int64_t not_before, not_after;
    char issuer[256];
    char ari_id[256];              /* RFC 9773's identifier, "" when it has none */
    bool covers;                   /* it has every configured name */
} certstate;

static certstate read_cert(tl_acme *a)
{
    certstate cs = {.ok = false};
    char *pem = tli_read_text(a->cert_path, NULL, 0);
    if (pem && tli_acme_cert_times(pem, &cs.not_before, &cs.not_after, &cs.self_issued) == 0) {
        cs.ok = true;
        BIO *b = BIO_new_mem_buf(pem, -1);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        if (x)
            X509_NAME_oneline(X509_get_issuer_name(x), cs.issuer, sizeof cs.issuer);
        cs.covers = x != NULL;
        for (size_t i = 0; x && i < a->n_domains; i++)
            cs.covers = cs.covers &&
                        X509_check_host(x, a->domains[i], 0, X509_CHECK_FLAG_NO_WILDCARDS,
                                        NULL) == 1;
        X509_free(x);
        BIO_free(b);
        char ignored[200];
        char *id = cs.self_issued ? NULL : tli_acme_ari_id(pem, ignored, sizeof ignored);
        if (id && strlen(id) < sizeof cs.ari_id)
            strcpy(cs.ari_id, id);
        free(id);
    }
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    return cs;
}

static uint64_t random_below(uint64_t n)
{
    uint64_t r = 0;
    RAND_bytes((unsigned char *)&r, sizeof r);
    return n ? r % n : 0;
}

/* When the certificate is due: two thirds of its life, less up to a thirtieth of it at random.
 * The placeholder, or no certificate: now. */
static int64_t due_at(tl_acme *a, const certstate *cs)
{
    if (!cs->ok || cs->self_issued || !cs->covers || cs->not_after <= cs->not_before)
        return 0;   /* now (a name was added to acme-domain: a certificate for all, now) */
    int64_t life = cs->not_after - cs->not_before;
    int64_t jitter = life / 30 > 0 ? (int64_t)random_below((uint64_t)(life / 30 + 1)) : 0;
    return cs->not_before + (int64_t)((double)life * a->renew_fraction) - jitter;
}

/* The ACME server's renewal window (RFC 9773), when it offers one: a random moment in it
 * replaces *due (earlier or later: the server knows of revocations and load). Asked again every
 * ARI_RECHECK_S while waiting. */
static void ari_due(tl_acme *a, const certstate *cs, int64_t *due)
{
    if (!cs->ok || cs->self_issued || !cs->covers || !*cs->ari_id)
        return;
    int64_t start, end;
    char err[700];
    int rc = tli_acme_renewal_info(a, cs->ari_id, &start, &end, err, sizeof err);
    if (rc < 0) {
        ALOG(a, WARN, "renewal information: %s (renewing at two thirds of the lifetime instead)",
             err);
        return;
    }
    if (rc == 0)
        return;
    int64_t at = start + (int64_t)random_below((uint64_t)(end - start) + 1);
    if (at >= cs->not_after)
        at = *due;   /* a window past expiry is not to be trusted */
    if (at != *due)
        ALOG(a, INFO, "renewal window from the ACME server: %lld s from now",
             (long long)(at - time(NULL)));
    *due = at;
}

static void names_text(tl_acme *a, char *out, size_t len)
{
    size_t at = 0;
    out[0] = 0;
    for (size_t i = 0; i < a->n_domains && at + 1 < len; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%s", i ? ", " : "", a->domains[i]);
}

static void swap_in(tl_acme *a, const char *why)
{
    char err[600];
    if (tl_server_reload(a->srv, err, sizeof err) != 0)
        ALOG(a, ERROR, "%s, but the server could not load it: %s (it keeps the old one)", why,
             err);
    else
        ALOG(a, INFO, "%s: new handshakes use it", why);
}

/* When to renew: due_at, or the ACME server's window; *asked is when the window was asked. */
static int64_t schedule(tl_acme *a, const certstate *cs, int64_t *asked)
{
    int64_t due = due_at(a, cs);
    *asked = time(NULL);
    ari_due(a, cs, &due);
    return due;
}

/* Issue now, under the lock (replaces: the ARI identifier of the certificate it replaces, or
 * NULL). true when a new certificate was written and swapped in. */
static bool issue_locked(tl_acme *a, const char *names, const char *replaces)
{
    char err[1024], *pem = NULL;
    if (tli_acme_issue(a, replaces, &pem, err, sizeof err) != 0) {
        pthread_mutex_lock(&a->lock);
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->lock);
        if (!stopping)
            ALOG(a, ERROR, "issuing the certificate for %s failed: %s", names, err);
        return false;
    }
    int rc = tli_write_file(a->cert_path, pem, strlen(pem), err, sizeof err);
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
    if (rc != 0) {
        ALOG(a, ERROR, "the certificate for %s was issued but cannot be saved: %s", names, err);
        return false;
    }
    atomic_fetch_add(&a->issued, 1);
    certstate cs = read_cert(a);
    char why[600], until[32] = "?";
    time_t na = (time_t)cs.not_after;
    struct tm tm;
    if (gmtime_r(&na, &tm))
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    tli_fmt(why, sizeof why, "certificate for %s issued by %s, valid until %s, saved in %s",
            names, cs.issuer, until, a->cert_path);
    swap_in(a, why);
    return true;
}

static void *acme_main(void *arg)
{
    tl_acme *a = arg;
    char names[1024];
    names_text(a, names, sizeof names);
    certstate served = read_cert(a);
    if (served.self_issued)
        ALOG(a, WARN, "no certificate from the ACME server yet: serving a self-signed one for %s "
             "until %s issues one", names, a->directory);
    else
        ALOG(a, INFO, "serving the certificate for %s from %s (issued by %s)%s", names,
             a->cert_path, served.issuer,
             served.covers ? "" : "; it lacks a name given with acme-domain: a new one is asked "
                                  "for now");
    unsigned failures = 0;
    int64_t asked = 0, due = schedule(a, &served, &asked);
    for (;;) {
        int64_t now = time(NULL);
        if (now < due && now - asked >= ARI_RECHECK_S && *served.ari_id) {
            due = schedule(a, &served, &asked);
            continue;
        }
        if (now < due) {
            uint64_t wait = (uint64_t)(due - now) * 1000;
            if (!tli_acme_sleep(a, wait < WATCH_MS ? wait : WATCH_MS))
                break;
            /* Another instance sharing the state directory may have renewed it. */
            certstate cs = read_cert(a);
            if (cs.ok && !cs.self_issued && cs.not_after != served.not_after) {
                served = cs;
                swap_in(a, "took up the certificate another instance saved");
                due = schedule(a, &served, &asked);
            }
            continue;
        }
        int fd = open(a->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ALOG(a, INFO, "%s: %s; trying again in %llu s", a->lock_path,
                 fd < 0 ? strerror(errno) : "another instance is issuing (the lock is held)",
                 (unsigned long long)(a->retry_ms / 1000));
            if (fd >= 0)
                close(fd);
            if (!tli_acme_sleep(a, a->retry_ms))
                break;
            continue;
        }
        /* Under the lock: what another instance did meanwhile counts. */
        certstate cs = read_cert(a);
        if (cs.ok && !cs.self_issued && cs.not_after != served.not_after &&
            time(NULL) < due_at(a, &cs)) {
            served = cs;
            close(fd);
            swap_in(a, "took up the certificate another instance saved");
            due = schedule(a, &served, &asked);
            failures = 0;
            continue;
        }
        ALOG(a, INFO, "%s certificate for %s from %s (%s)",
             served.self_issued || !served.covers ? "getting a" : "renewing the", names,
             a->directory,
             a->challenge == TL_ACME_HTTP_01 ? "http-01" : "tls-alpn-01");
        bool ok = issue_locked(a, names, served.self_issued || !*served.ari_id ? NULL
                                                                              : served.ari_id);
        close(fd);   /* releases the lock */
        pthread_mutex_lock(&a->lock);
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->lock);
        if (stopping)
            break;
        if (ok) {
            served = read_cert(a);
            due = schedule(a, &served, &asked);
            failures = 0;
            continue;
        }
        atomic_fetch_add(&a->failures, 1);
        uint64_t delay = a->retry_ms;
        for (unsigned i = 0; i < failures && delay < a->retry_max_ms; i++)
            delay *= 2;
        if (delay > a->retry_max_ms)
            delay = a->retry_max_ms;
        /* Never wait past half of what the certificate served has left. */
        int64_t left = served.self_issued ? 0 : served.not_after - time(NULL);
        if (left > 0 && (uint64_t)left * 500 < delay)
            delay = (uint64_t)left * 500 > a->retry_ms ? (uint64_t)left * 500 : a->retry_ms;
        failures++;
        ALOG(a, WARN, "attempt %u for %s failed; next in %llu s (serving %s meanwhile)", failures,
             names, (unsigned long long)(delay / 1000),
             served.self_issued ? "the self-signed certificate" : "the current certificate");
        due = time(NULL) + (int64_t)(delay / 1000);
        if (!tli_acme_sleep(a, delay))
            break;
    }
    return NULL;
}

int tl_acme_start(tl_acme *a, tl_server *srv, char *err, size_t errlen)
{
    /* After tl_server_new, which may have dropped privileges (user): the files made before
     * must still be ours to renew and reload. */
    char chal_dir[4200];
    snprintf(chal_dir, sizeof chal_dir, "%s/challenges", a->state);
    if (access(a->state, W_OK | X_OK) != 0 || access(a->cert_path, R_OK | W_OK) != 0 ||
        access(chal_dir, W_OK | X_OK) != 0) {
        tli_fmt(err, errlen, "acme-state %s: not readable and writable by uid %u (after dropping "
                "privileges, with user?): renewals could not be saved; make the directory and "
                "its files that user's (chown -R)", a->state, (unsigned)geteuid());
        return -1;
    }
    a->srv = srv;
    a->log = tl_server_log(srv);
    tl_client_config cc = {.ca_file = a->ca_file, .alpn = "http/1.1", .resolver_threads = 1};
    if (!(a->loop = tl_loop_new(err, errlen)) || !(a->client = tl_client_new(&cc, err, errlen)))
        return -1;
    a->stop_work.done = on_stop_work;
    a->stop_work.data = a;
    /* Signals are the control thread's (tl_server_run): the thread starts with all blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&a->thread, NULL, acme_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        tli_fmt(err, errlen, "cannot start the ACME thread");
        return -1;
    }
    a->started = true;
    return 0;
}

void tl_acme_stop(tl_acme *a)
{
    if (!a || !a->started)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    tl_loop_post(a->loop, &a->stop_work);
    pthread_join(a->thread, NULL);
    a->started = false;
}

void tl_acme_free(tl_acme *a)
{
    if (!a)
        return;
    tl_acme_stop(a);
    tl_client_free(a->client);
    tl_loop_free(a->loop);
    tli_acme_chal_free(a);
    EVP_PKEY_free(a->account_key);
    for (size_t i = 0; i < a->n_domains; i++)
        free(a->domains[i]);
    free(a->domains);
    free(a->directory);
    free(a->ca_file);
    free(a->email);
    free(a->state);
    free(a->thumbprint);
    free(a->kid);
    free(a->nonce);
    free(a->url_nonce);
    free(a->url_account);
    free(a->url_order);
    free(a->url_renewal);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->chal_lock);
    pthread_cond_destroy(&a->cond);
    free(a);
}
