/* serve.c - `tlsloop serve`: the static HTTPS/HTTP server (tlsloop/httpd.h on tlsloop/server.h).
 * With no options, the embedded default: 127.0.0.1:8443 and :8080, a localhost certificate from a
 * name-constrained local CA in the state directory (docs/http.md, "The embedded default"). */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tlsloop/acme.h>
#include <tlsloop/certgen.h>
#include <tlsloop/httpd.h>
#include <tlsloop/server.h>

#include "tools.h"

#define DEFAULT_HTTPS "127.0.0.1:8443"
#define DEFAULT_HTTP "127.0.0.1:8080,plain"
/* The local CA is made again when it has less than this left (it is issued for ten years). */
#define CA_RENEW_SECONDS (30L * 86400)
/* The leaf lives TL_CERTGEN_LOCAL_LEAF_DAYS and is renewed on start once less than a third of its
 * life is left (or when an older tlsloop issued it for longer). */
#define LEAF_SECONDS ((long)TL_CERTGEN_LOCAL_LEAF_DAYS * 86400)

static const tl_server_option SERVE_OPTIONS[] = {
    {"state-dir", "DIR", "where the generated CA and certificate live, and fetched OCSP "
     "responses (ocsp/) unless ocsp-cache says otherwise (default $XDG_STATE_HOME/tlsloop, else "
     "~/.local/state/tlsloop)", NULL, false},
};

void cmd_serve_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop serve [--check] [OPTIONS...]\n\n"
            "A static HTTPS/HTTP server. With no options: HTTPS on " DEFAULT_HTTPS " and HTTP on\n"
            "127.0.0.1:8080, a certificate for localhost made on first start (its CA is kept in\n"
            "the state directory; the command that trusts it is printed), and a built-in page.\n"
            "Options go on the command line (--name value) or in a --config file (name value).\n"
            "HTTP/2 over TLS when the client offers it (ALPN h2,http/1.1 unless --alpn says\n"
            "otherwise), and on plain listeners with --h2c (prior knowledge); HTTP/1.1 else.\n"
            "SIGTERM drains (HTTP/2: GOAWAY), SIGHUP reloads certificates and keys, SIGUSR1\n"
            "reopens the logs.\n\n"
            "  --check                        check the configuration (files, certificates) and exit\n"
            "  --help                         this text\n\n"
            "HTTP:\n");
    tl_httpd_usage(f);
    tl_server_option_usage(f, SERVE_OPTIONS, sizeof SERVE_OPTIONS / sizeof SERVE_OPTIONS[0]);
    fprintf(f, "\nACME (certificates from an ACME server, renewed by themselves; "
               "docs/certificates.md):\n");
    tl_acme_usage(f);
    fprintf(f, "\nServer (listeners, TLS, limits, deadlines, logs):\n");
    tl_server_config_usage(f);
    fprintf(f, "\nExit status: 0 after a drain, 1 when the server failed while running, 2 for a "
               "bad option\nor an unreadable file, 98 when another process listens on a listen "
               "address.\n");
}

/* ---- the state directory and the generated certificate ---------------------------------- */

static int mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return errno = ENAMETOOLONG, -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static void state_dir(const tl_server_config *cfg, char *out, size_t len)
{
    const char *v = tl_server_config_value(cfg, "state-dir");
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (v)
        snprintf(out, len, "%s", v);
    else if (xdg && *xdg)
        snprintf(out, len, "%s/tlsloop", xdg);
    else
        snprintf(out, len, "%s/.local/state/tlsloop", home && *home ? home : "/tmp");
}

/* What matters about a generated certificate for keeping or renewing it. */
typedef struct certfacts {
    bool ok;                       /* the file holds a certificate */
    long left;                     /* seconds it has left (negative: expired) */
    long life;                     /* seconds from notBefore to notAfter */
    bool constrained;              /* it has a nameConstraints extension */
} certfacts;

static certfacts cert_facts(const char *path)
{
    certfacts cf = {.ok = false};
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!x)
        return cf;
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x))) {
        cf.left = (long)days * 86400 + secs;
        if (ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x))) {
            cf.life = (long)days * 86400 + secs;
            cf.ok = true;
        }
    }
    cf.constrained = X509_get_ext_by_NID(x, NID_name_constraints, -1) >= 0;
    X509_free(x);
    return cf;
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *p = realloc(buf, cap = cap * 2 + 8192);
            if (!p) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    return 0;
}

/* Make (or keep) the local CA and the localhost certificate; their paths go to cert/key/ca. */
static int ensure_certificate(const char *dir, char *cert, char *key, char *ca, size_t len,
                              char *err, size_t errlen)
{
    char ca_key[4096];
    if (snprintf(ca, len, "%s/ca.pem", dir) >= (int)len ||
        snprintf(ca_key, sizeof ca_key, "%s/ca.key", dir) >= (int)sizeof ca_key ||
        snprintf(cert, len, "%s/localhost.pem", dir) >= (int)len ||
        snprintf(key, len, "%s/localhost.key", dir) >= (int)len) {
        snprintf(err, errlen, "state-dir %.200s...: the path is too long", dir);
        return -1;
    }
    if (mkdirs(dir) != 0) {
        snprintf(err, errlen, "state-dir %.900s: cannot create it: %s", dir, strerror(errno));
        return -1;
    }
    tl_certgen_pair capair = {0}, leaf = {0};
    /* A CA from before name constraints could vouch for any name: it is replaced. */
    certfacts cf = cert_facts(ca);
    const char *why_ca = !cf.ok ? NULL
                         : !cf.constrained ? "it was not limited to localhost and loopback"
                         : cf.left < CA_RENEW_SECONDS ? "it expires soon"
                         : access(ca_key, R_OK) != 0 ? "its key is missing" : "";
    bool new_ca = !why_ca || *why_ca;
    if (new_ca) {
        tl_certgen_spec spec = tl_certgen_local_ca_spec();
        if (tl_certgen_issue(&spec, NULL, &capair, err, errlen) != 0 ||
            tl_certgen_write(&capair, ca, ca_key, err, errlen) != 0)
            goto fail;
        if (why_ca)
            printf("tlsloop serve: made a new local CA (%s): %s; trust it again\n", why_ca, ca);
    } else if (read_file(ca, &capair.cert_pem) != 0 || read_file(ca_key, &capair.key_pem) != 0) {
        snprintf(err, errlen, "state-dir %.900s: cannot read the CA: %s", dir, strerror(errno));
        goto fail;
    }
    certfacts lf = cert_facts(cert);
    if (new_ca || !lf.ok || lf.left < lf.life / 3 || lf.life > LEAF_SECONDS + 86400 ||
        access(key, R_OK) != 0) {
        static const char *const dns[] = {"localhost"};
        static const char *const ips[] = {"127.0.0.1", "::1"};
        tl_certgen_spec spec = {.key = TL_KEY_ECDSA_P256, .common_name = "localhost",
                                .dns_names = dns, .n_dns = 1, .ip_addrs = ips, .n_ip = 2,
                                .not_before = -3600, .not_after = LEAF_SECONDS - 3600};
        if (tl_certgen_issue(&spec, &capair, &leaf, err, errlen) != 0 ||
            tl_certgen_write(&leaf, cert, key, err, errlen) != 0)
            goto fail;
        printf("tlsloop serve: %s a certificate for localhost, 127.0.0.1 and ::1 (valid %d "
               "days): %s\n", lf.ok ? "renewed" : "made", TL_CERTGEN_LOCAL_LEAF_DAYS, cert);
    }
    tl_certgen_pair_free(&capair);
    tl_certgen_pair_free(&leaf);
    return 0;
fail:
    tl_certgen_pair_free(&capair);
    tl_certgen_pair_free(&leaf);
    return -1;
}

/* ---- the built-in page ------------------------------------------------------------------ */

static time_t started;

static void put(tl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(tl_buf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        tl_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void row(tl_buf *b, const char *name, unsigned long long v)
{
    put(b, "<tr><td>%s</td><td>%llu</td></tr>\n", name, v);
}

static void builtin_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    (void)data;
    tl_buf *b = &page->body;
    tl_server_stats s;
    tl_server_get_stats(tl_httpd_server(h), -1, &s);
    tl_httpd_stats hs;
    tl_httpd_get_stats(h, &hs);
    put(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
           "<meta http-equiv=\"refresh\" content=\"5\">\n<title>tlsloop serve</title>\n"
           "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:2em auto;"
           "padding:0 1em;color:#222}code{background:#f2f2f2;padding:0 .2em}"
           "table{border-collapse:collapse}td{padding:.1em 1em .1em 0}"
           "td+td{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>\n"
           "<h1>tlsloop serve</h1>\n<p>This is <b>tlsloop %s</b>, asynchronous non-blocking TLS "
           "for Linux in C on OpenSSL 3, serving its built-in page because no <code>--root"
           "</code> was given. <code>tlsloop serve --root DIR</code> serves a directory; "
           "<code>tlsloop serve --help</code> lists every option.</p>\n",
        TL_VERSION_STRING);
    tl_engine *e = tl_conn_engine(page->conn);
    if (e) {
        tl_engine_info info;
        tl_engine_get_info(e, &info);
        put(b, "<p>You came over <b>%s</b> with %s%s%s, %s session, %s.</p>\n",
            info.version ? info.version : "TLS", info.cipher ? info.cipher : "?",
            info.group ? " and " : "", info.group ? info.group : "",
            info.resumed ? "a resumed" : "a new",
            !strcmp(info.alpn, "h2") ? "speaking HTTP/2" : "speaking HTTP/1.1");
    } else {
        put(b, "<p>You came over plain HTTP.</p>\n");
    }
    put(b, "<h2>Counters</h2>\n<p>Refreshed every 5 seconds; up %lld s.</p>\n<table>\n",
        (long long)(time(NULL) - started));
    row(b, "connections open", s.conns_open);
    row(b, "connections accepted", s.conns_total);
    row(b, "full TLS handshakes", s.handshakes_full);
    row(b, "resumed TLS handshakes", s.handshakes_resumed);
    unsigned long long failed = 0;
    for (int i = 0; i < TL_HS_FAIL_KINDS; i++)
        failed += s.handshakes_failed[i];
    row(b, "failed TLS handshakes", failed);
    row(b, "HTTP requests", hs.requests);
    row(b, "HTTP/2 requests", hs.requests_h2);
    row(b, "answers 2xx", hs.status[2]);
    row(b, "answers 3xx", hs.status[3]);
    row(b, "answers 4xx", hs.status[4]);
    row(b, "answers 5xx", hs.status[5]);
    row(b, "body bytes sent", hs.body_bytes);
    put(b, "</table>\n</body></html>\n");
}

/* ---- ACME ------------------------------------------------------------------------------- */

/* HTTP-01 answers (tlsloop/acme.h): the key authorization of a pending token, else 404. */
static void acme_page(tl_httpd *h, tl_httpd_page *page, void *data)
{
    (void)h;
    page->content_type = "application/octet-stream";
    if (tl_acme_http01(data, page->path, &page->body) != 1) {
        tl_buf_free(&page->body);
        page->status = 404;
    }
}

/* ---- main ------------------------------------------------------------------------------- */

static int set_default(tl_server_config *cfg, const char *name, const char *value)
{
    char err[512];
    if (tl_server_config_set(cfg, name, value, err, sizeof err) != 0) {
        fprintf(stderr, "tlsloop serve: %s\n", err);
        return -1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    tl_server_config *cfg = tl_server_config_new();
    if (!cfg || tl_httpd_config_init(cfg) != 0 || tl_acme_config_init(cfg) != 0 ||
        tl_server_config_extend(cfg, SERVE_OPTIONS,
                                sizeof SERVE_OPTIONS / sizeof SERVE_OPTIONS[0]) != 0) {
        fprintf(stderr, "tlsloop serve: out of memory\n");
        tl_server_config_free(cfg);
        return EXIT_FAILURE_RUN;
    }
    char err[1024];
    bool check = false;
    /* ALPN: tl_httpd_config_init made h2,http/1.1 the default (options given later replace it). */
    int rc = tool_server_args("serve", cfg, argc, argv, &check, cmd_serve_usage);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;

    /* The embedded default: what is not given. */
    bool defaults = tl_server_config_count(cfg, "listen") == 0;
    if (defaults && (set_default(cfg, "listen", DEFAULT_HTTPS) != 0 ||
                     set_default(cfg, "listen", DEFAULT_HTTP) != 0)) {
        tl_server_config_free(cfg);
        return EXIT_USAGE;
    }
    /* metrics-listen: its listener goes last, once the others are known. */
    if (tl_httpd_config_finish(cfg, err, sizeof err) != 0)
        return tool_server_usage_error("serve", cfg, err);
    /* Fetched OCSP responses go to the state directory too (the server's own default is the
     * default state directory's). */
    if (tl_server_config_value(cfg, "state-dir") && !tl_server_config_count(cfg, "ocsp-cache")) {
        char dir[4096], ocsp_dir[4200];
        state_dir(cfg, dir, sizeof dir);
        snprintf(ocsp_dir, sizeof ocsp_dir, "%s/ocsp", dir);
        if (set_default(cfg, "ocsp-cache", ocsp_dir) != 0) {
            tl_server_config_free(cfg);
            return EXIT_USAGE;
        }
    }
    char ca[4096] = "";
    tl_acme *acme = NULL;
    if (tl_acme_wanted(cfg)) {
        /* Its certificate file (a self-signed one until the first issuance) is added as cert. */
        char dir[4096], adir[4200];
        state_dir(cfg, dir, sizeof dir);
        snprintf(adir, sizeof adir, "%s/acme", dir);
        if (!(acme = tl_acme_new(cfg, adir, err, sizeof err)))
            return tool_server_usage_error("serve", cfg, err);
    }
    if (tl_server_config_count(cfg, "tls-listen") && !tl_server_config_count(cfg, "cert")) {
        char dir[4096], cert[4096], key[4096];
        state_dir(cfg, dir, sizeof dir);
        if (ensure_certificate(dir, cert, key, ca, sizeof ca, err, sizeof err) != 0)
            return tool_server_usage_error("serve", cfg, err);
        if (set_default(cfg, "cert", cert) != 0 || set_default(cfg, "key", key) != 0) {
            tl_server_config_free(cfg);
            return EXIT_USAGE;
        }
    }

    /* Files first, without binding anything: an unreadable one is a usage error. */
    tl_httpd *h = NULL;
    if (tl_server_check(cfg, err, sizeof err) != 0 || !(h = tl_httpd_new(cfg, err, sizeof err)) ||
        (acme && tl_httpd_add_prefix_page(h, TL_ACME_HTTP01_PREFIX, acme_page, acme) != 0)) {
        tl_httpd_free(h);
        tl_acme_free(acme);
        return tool_server_usage_error("serve", cfg, *err ? err : "out of memory");
    }
    if (check) {
        printf("configuration OK\n");
        tl_httpd_free(h);
        tl_acme_free(acme);
        tl_server_config_free(cfg);
        return EXIT_OK;
    }
    if (!tl_server_config_value(cfg, "root") && tl_httpd_add_page(h, "/", builtin_page, NULL) != 0) {
        tl_httpd_free(h);
        tl_acme_free(acme);
        return tool_server_usage_error("serve", cfg, "out of memory");
    }
    tl_server *srv = tl_server_new(cfg, tl_httpd_handler(h), err, sizeof err);
    if (!srv) {
        /* An address someone else listens on gets its own exit code (probed again to tell). */
        char why[256];
        bool in_use = tl_server_probe(cfg, why, sizeof why) == 1;
        fprintf(stderr, "tlsloop serve: %s\n", err);
        tl_server_config_free(cfg);
        tl_httpd_free(h);
        tl_acme_free(acme);
        return in_use ? EXIT_ADDR_IN_USE : EXIT_FAILURE_RUN;
    }
    if (tl_httpd_attach(h, srv, err, sizeof err) != 0 ||
        (acme && tl_acme_start(acme, srv, err, sizeof err) != 0)) {
        fprintf(stderr, "tlsloop serve: %s\n", err);
        tl_server_config_free(cfg);
        tl_acme_stop(acme);
        tl_server_free(srv);
        tl_acme_free(acme);
        tl_httpd_free(h);
        return EXIT_FAILURE_RUN;
    }
    started = time(NULL);
    const char *first_https = NULL;
    char urls[8][64];
    const char *mv = tl_server_config_value(cfg, "metrics-listen");
    char metrics_url[128] = "";
    if (mv) {   /* "[ADDR:]PORT": the address as given, else localhost */
        const char *colon = strrchr(mv, ':');
        const char *mp = tl_server_config_value(cfg, "metrics");
        bool addr = colon && colon > mv;
        snprintf(metrics_url, sizeof metrics_url, "http://%.*s:%u%s",
                 addr ? (int)(colon - mv) : 9, addr ? mv : "localhost",
                 tl_server_port(srv, tl_server_listeners(srv) - 1), mp ? mp : "/metrics");
    }
    tl_server_config_free(cfg);
    for (size_t i = 0; i < tl_server_listeners(srv) && i < 8; i++) {
        if (mv && i == tl_server_listeners(srv) - 1)
            break;   /* the metrics listener, said below */
        bool tls = tl_server_listener_is_tls(srv, i);
        snprintf(urls[i], sizeof urls[i], "%s://localhost:%u/", tls ? "https" : "http",
                 tl_server_port(srv, i));
        printf("tlsloop serve: listening on %s\n", urls[i]);
        if (tls && !first_https)
            first_https = urls[i];
    }
    if (*metrics_url)
        printf("tlsloop serve: metrics on %s (plain HTTP, this listener only)\n", metrics_url);
    if (*ca && first_https)
        printf("tlsloop serve: the certificate's CA is %s; try:\n  curl --cacert %s %s\n", ca, ca,
               first_https);
    fflush(stdout);
    rc = tl_server_run(srv, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "tlsloop serve: %s\n", err);
    tl_acme_stop(acme);
    tl_server_free(srv);
    tl_acme_free(acme);
    tl_httpd_free(h);
    return rc == 0 ? EXIT_OK : EXIT_FAILURE_RUN;
}
