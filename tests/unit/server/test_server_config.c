/* test_server_config.c - the server's options: values, errors that name the fault, the file
 * format, argument vectors, replay for reload, and the check mode (no sockets). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tlsloop/certgen.h>
#include <tlsloop/server.h>

#include "server/server_int.h"
#include "test.h"

static char err[512];

static int set(tl_server_config *cfg, const char *name, const char *value)
{
    err[0] = 0;
    return tl_server_config_set(cfg, name, value, err, sizeof err);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/tlsloop-cfg-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        return NULL;
    close(fd);
    return path;
}

TEST(defaults)
{
    tl_server_config *cfg = tl_server_config_new();
    REQUIRE(cfg);
    CHECK_EQ_INT(cfg->tls_min, TL_TLS1_2);
    CHECK_EQ_INT(cfg->tls_max, TL_TLS1_3);
    CHECK_EQ_INT(cfg->handshake_timeout_ms, 10000);
    CHECK_EQ_INT(cfg->close_timeout_ms, 5000);
    CHECK(cfg->tickets);
    CHECK_EQ_INT(cfg->n_listens, 0);
    /* Nothing to listen on is the first thing a check reports. */
    CHECK(tl_server_check(cfg, err, sizeof err) == -1);
    CHECK(strstr(err, "listen") != NULL);
    tl_server_config_free(cfg);
}

TEST(listen_forms)
{
    tl_server_config *cfg = tl_server_config_new();
    CHECK_EQ_INT(set(cfg, "listen", "8443"), 0);
    CHECK_EQ_INT(set(cfg, "listen", "127.0.0.1:8080,plain"), 0);
    CHECK_EQ_INT(set(cfg, "listen", "[::1]:9443,proxy"), 0);
    CHECK_EQ_INT(set(cfg, "listen", "*:0,plain,proxy"), 0);
    REQUIRE(cfg->n_listens == 4);
    struct sockaddr_in *a = (struct sockaddr_in *)&cfg->listens[0].addr;
    CHECK(a->sin_family == AF_INET && ntohs(a->sin_port) == 8443 && a->sin_addr.s_addr == INADDR_ANY);
    CHECK(cfg->listens[0].tls && !cfg->listens[0].proxy);
    CHECK(!cfg->listens[1].tls);
    struct sockaddr_in6 *b = (struct sockaddr_in6 *)&cfg->listens[2].addr;
    CHECK(b->sin6_family == AF_INET6 && ntohs(b->sin6_port) == 9443);
    CHECK(cfg->listens[2].tls && cfg->listens[2].proxy);
    CHECK(!cfg->listens[3].tls && cfg->listens[3].proxy);
    const char *bad[] = {"", "host:80", "1.2.3.4:65536", "1.2.3.4:", "[::1]80", "[::1:80",
                         "80,tcp", "999.1.1.1:80", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(set(cfg, "listen", bad[i]) == -1);
        CHECK(err[0] != 0);
    }
    CHECK_EQ_INT(cfg->n_listens, 4);   /* bad values lose nothing */
    tl_server_config_free(cfg);
}

/* Listeners that would share connections (the same port on the same or a wildcard address) are
 * refused by the check; distinct addresses, other families and port 0 are fine. */
TEST(overlapping_listeners_refused)
{
    const char *clash[][2] = {{"127.0.0.1:8080,plain", "127.0.0.1:8080"},
                              {"8080", "127.0.0.1:8080,plain"},
                              {"[::1]:8443", "[::]:8443,plain"}};
    for (size_t i = 0; i < sizeof clash / sizeof clash[0]; i++) {
        tl_server_config *cfg = tl_server_config_new();
        REQUIRE(set(cfg, "listen", clash[i][0]) == 0 && set(cfg, "listen", clash[i][1]) == 0);
        CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "overlapping"));
        tl_server_config_free(cfg);
    }
    const char *fine[][2] = {{"127.0.0.1:8080,plain", "127.0.0.2:8080,plain"},
                             {"8080,plain", "[::]:8080,plain"},
                             {"127.0.0.1:0,plain", "127.0.0.1:0,plain"}};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        tl_server_config *cfg = tl_server_config_new();
        REQUIRE(set(cfg, "listen", fine[i][0]) == 0 && set(cfg, "listen", fine[i][1]) == 0);
        CHECK_EQ_INT(tl_server_check(cfg, err, sizeof err), 0);
        tl_server_config_free(cfg);
    }
}

TEST(values_and_errors)
{
    tl_server_config *cfg = tl_server_config_new();
    CHECK_EQ_INT(set(cfg, "handshake-timeout", "250ms"), 0);
    CHECK_EQ_INT(cfg->handshake_timeout_ms, 250);
    CHECK_EQ_INT(set(cfg, "idle-timeout", "5m"), 0);
    CHECK_EQ_INT(cfg->idle_timeout_ms, 300000);
    CHECK_EQ_INT(set(cfg, "send-timeout", "7"), 0);   /* bare: seconds */
    CHECK_EQ_INT(cfg->send_timeout_ms, 7000);
    CHECK_EQ_INT(set(cfg, "session-lifetime", "2h"), 0);
    CHECK_EQ_INT(cfg->session_lifetime_ms, 7200000);
    CHECK(set(cfg, "close-timeout", "5 s") == -1 && strstr(err, "duration"));
    CHECK(set(cfg, "close-timeout", "-5") == -1);
    CHECK_EQ_INT(cfg->close_timeout_ms, 5000);
    CHECK_EQ_INT(set(cfg, "workers", "3"), 0);
    CHECK(set(cfg, "workers", "3x") == -1 && strstr(err, "workers 3x"));
    CHECK(set(cfg, "ipv6-prefix", "129") == -1 && strstr(err, "1 to 128"));
    CHECK(set(cfg, "ipv6-prefix", "0") == -1);
    CHECK(set(cfg, "handshake-timeout", "0") == -1 && strstr(err, "above 0"));
    CHECK(set(cfg, "idle-timeout", "1200h") == -1 && strstr(err, "49 days"));
    CHECK_EQ_INT(set(cfg, "idle-timeout", "0"), 0);   /* off */
    CHECK_EQ_INT(set(cfg, "tickets", "off"), 0);
    CHECK(!cfg->tickets);
    CHECK(set(cfg, "tickets", "maybe") == -1 && strstr(err, "on or off"));
    CHECK_EQ_INT(set(cfg, "allow-expired", NULL), 0);   /* a bare flag is on */
    CHECK(cfg->allow_expired);
    CHECK(set(cfg, "tls-min", "1.1") == -1 && strstr(err, "unsafe"));
    CHECK_EQ_INT(set(cfg, "tls-min", "1.3"), 0);
    CHECK_EQ_INT(cfg->tls_min, TL_TLS1_3);
    CHECK_EQ_INT(cfg->tls_kdf, TL_KDF_OPENSSL);   /* the default */
    CHECK(set(cfg, "tls-kdf", "fast") == -1 && strstr(err, "openssl or tlsloop"));
    CHECK_EQ_INT(set(cfg, "tls-kdf", "tlsloop"), 0);
    CHECK_EQ_INT(cfg->tls_kdf, TL_KDF_TLSLOOP);
    CHECK_EQ_INT(set(cfg, "tls-kdf", "openssl"), 0);
    CHECK_EQ_INT(cfg->tls_kdf, TL_KDF_OPENSSL);
    CHECK_EQ_INT(cfg->io, TL_IO_DEFAULT);   /* the default: TLSLOOP_IO, else epoll */
    CHECK(set(cfg, "io", "kqueue") == -1 && strstr(err, "io kqueue: expected epoll, uring or auto"));
    CHECK(set(cfg, "io", "") == -1 && strstr(err, "io: needs a value (epoll|uring|auto)"));
    CHECK_EQ_INT(cfg->io, TL_IO_DEFAULT);
    CHECK_EQ_INT(set(cfg, "io", "uring"), 0);
    CHECK_EQ_INT(cfg->io, TL_IO_URING);
    CHECK_EQ_INT(set(cfg, "io", "auto"), 0);
    CHECK_EQ_INT(cfg->io, TL_IO_AUTO);
    CHECK_EQ_INT(set(cfg, "io", "epoll"), 0);
    CHECK_EQ_INT(cfg->io, TL_IO_EPOLL);
    CHECK(set(cfg, "client-cert", "sometimes") == -1);
    CHECK(set(cfg, "log-level", "chatty") == -1 && strstr(err, "debug"));
    CHECK(set(cfg, "alpn", "") == -1 && strstr(err, "needs a value"));
    CHECK_EQ_INT(cfg->loop_slice_ns, 100000);   /* the default */
    CHECK_EQ_INT(set(cfg, "loop-slice", "250us"), 0);
    CHECK_EQ_INT(cfg->loop_slice_ns, 250000);
    CHECK_EQ_INT(set(cfg, "loop-slice", "3ms"), 0);
    CHECK_EQ_INT(cfg->loop_slice_ns, 3000000);
    CHECK_EQ_INT(set(cfg, "loop-slice", "default"), 0);
    CHECK_EQ_INT(cfg->loop_slice_ns, 0);
    CHECK(set(cfg, "loop-slice", "1s") == -1 && strstr(err, "100us"));
    CHECK(set(cfg, "loop-slice", "200ms") == -1 && strstr(err, "at most"));
    CHECK(set(cfg, "loop-slice", "-1us") == -1);
    CHECK(set(cfg, "loop-slice", "7") == -1);
    /* Ticket key rotation: at most a day (forward secrecy), and never off. */
    CHECK_EQ_INT(set(cfg, "ticket-rotate", "24h"), 0);
    CHECK_EQ_INT(cfg->ticket_rotate_ms, 86400000);
    CHECK_EQ_INT(set(cfg, "ticket-rotate", "30m"), 0);
    CHECK(set(cfg, "ticket-rotate", "25h") == -1 && strstr(err, "at most 24h") &&
          strstr(err, "stolen key"));
    CHECK(set(cfg, "ticket-rotate", "86401s") == -1);
    CHECK(set(cfg, "ticket-rotate", "0") == -1 && strstr(err, "expected a duration"));
    CHECK(set(cfg, "ticket-rotate", "soon") == -1);
    CHECK_EQ_INT(cfg->ticket_rotate_ms, 1800000);
    CHECK_EQ_INT(tl_server_config_takes_value("ticket-rotate"), 1);
    CHECK_EQ_INT(set(cfg, "no-such-option", "1"), 1);
    CHECK(set(cfg, "key", "k.pem") == -1 && strstr(err, "cert"));   /* a key before its cert */
    CHECK_EQ_INT(set(cfg, "cert", "a.pem"), 0);
    CHECK(set(cfg, "cert", "b.pem") == -1 && strstr(err, "a.pem"));  /* a.pem has no key yet */
    CHECK_EQ_INT(set(cfg, "key", "a.key"), 0);
    CHECK_EQ_INT(tl_server_config_takes_value("listen"), 1);
    CHECK_EQ_INT(tl_server_config_takes_value("allow-expired"), 0);
    CHECK_EQ_INT(tl_server_config_takes_value("nope"), -1);
    tl_server_config_free(cfg);
}

TEST(file_format)
{
    const char *text = "# a comment\n"
                       "listen 127.0.0.1:0   # trailing comment\n"
                       "\n"
                       "   workers 2\n"
                       "alpn h2,http/1.1\n"
                       "allow-expired\n";
    char *path = write_tmp(text);
    REQUIRE(path);
    tl_server_config *cfg = tl_server_config_new();
    CHECK_EQ_INT(tl_server_config_load(cfg, path, err, sizeof err), 0);
    CHECK_EQ_INT(cfg->n_listens, 1);
    CHECK_EQ_INT(cfg->workers, 2);
    CHECK_STR(cfg->alpn, "h2,http/1.1");
    CHECK(cfg->allow_expired);
    unlink(path);
    /* Errors name the file and line. */
    path = write_tmp("workers 2\nbogus 1\n");
    CHECK(tl_server_config_load(cfg, path, err, sizeof err) == -1);
    char want[128];
    snprintf(want, sizeof want, "%s:2: unknown option 'bogus'", path);
    CHECK(strstr(err, want) != NULL);
    unlink(path);
    path = write_tmp("workers two\n");
    CHECK(tl_server_config_load(cfg, path, err, sizeof err) == -1);
    snprintf(want, sizeof want, "%s:1: workers two", path);
    CHECK(strstr(err, want) != NULL);
    unlink(path);
    CHECK(tl_server_config_load(cfg, "/nonexistent/tlsloop.conf", err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/tlsloop.conf") && strstr(err, "No such file"));
    tl_server_config_free(cfg);
}

TEST(args_and_replay)
{
    char *path = write_tmp("listen 127.0.0.1:0\nworkers 2\nidle-timeout 30s\n");
    REQUIRE(path);
    char *argv[] = {"prog", "--config", path, "--workers=4", "--allow-expired", "--quiet", NULL};
    int argc = 6, i = 1;
    tl_server_config *cfg = tl_server_config_new();
    CHECK_EQ_INT(tl_server_config_args(cfg, argc, argv, &i, err, sizeof err), 0);
    CHECK_EQ_INT(i, 5);   /* stopped at --quiet, which is the program's */
    CHECK_EQ_INT(cfg->workers, 4);   /* given after the file: overrides it */
    CHECK(cfg->allow_expired);
    /* A replay reads the file again and still applies the later options over it. */
    FILE *f = fopen(path, "w");
    fputs("listen 127.0.0.1:0\nworkers 2\nidle-timeout 45s\n", f);
    fclose(f);
    tl_server_config *again = tli_server_config_replay(cfg, err, sizeof err);
    REQUIRE(again);
    CHECK_EQ_INT(again->idle_timeout_ms, 45000);
    CHECK_EQ_INT(again->workers, 4);
    CHECK_EQ_INT(again->n_listens, 1);
    tl_server_config_free(again);
    /* A file that became bad makes the replay fail with its reason. */
    f = fopen(path, "w");
    fputs("workers lots\n", f);
    fclose(f);
    CHECK(tli_server_config_replay(cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "workers lots") != NULL);
    unlink(path);
    char *bad[] = {"prog", "--workers", NULL};
    i = 1;
    CHECK(tl_server_config_args(cfg, 2, bad, &i, err, sizeof err) == -1);
    CHECK(strstr(err, "--workers needs a value") != NULL);
    tl_server_config_free(cfg);
}

TEST(check_mode)
{
    tl_certgen_pair ca = {0}, leaf = {0};
    char dir[] = "/tmp/tlsloop-check-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char cert[128], key[128], ecert[128], ekey[128];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(ecert, sizeof ecert, "%s/expired.pem", dir);
    snprintf(ekey, sizeof ekey, "%s/expired.key", dir);
    static const char *const localhost[] = {"localhost"}, *const oldname[] = {"old.test"};
    tl_certgen_spec o = {.dns_names = localhost, .n_dns = 1, .not_before = -60, .not_after = 3600};
    REQUIRE(tl_certgen_issue(&o, NULL, &leaf, err, sizeof err) == 0);
    REQUIRE(tl_certgen_write(&leaf, cert, key, err, sizeof err) == 0);
    tl_certgen_spec old = {.dns_names = oldname, .n_dns = 1, .not_before = -7200, .not_after = -3600};
    REQUIRE(tl_certgen_issue(&old, NULL, &ca, err, sizeof err) == 0);
    REQUIRE(tl_certgen_write(&ca, ecert, ekey, err, sizeof err) == 0);

    tl_server_config *cfg = tl_server_config_new();
    set(cfg, "listen", "127.0.0.1:0");
    CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "no certificate"));
    set(cfg, "cert", cert);
    CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "has no key"));
    set(cfg, "key", key);
    CHECK_EQ_INT(tl_server_check(cfg, err, sizeof err), 0);
    set(cfg, "cert", ecert);
    set(cfg, "key", ekey);
    CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "expired"));
    set(cfg, "allow-expired", "on");
    CHECK_EQ_INT(tl_server_check(cfg, err, sizeof err), 0);
    set(cfg, "client-cert", "require");
    CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "client-ca"));
    set(cfg, "client-cert", "none");
    set(cfg, "ciphers", "NULL-SHA");
    CHECK(tl_server_check(cfg, err, sizeof err) == -1);
    tl_server_config_free(cfg);

    /* A plain-only server needs no certificate. */
    cfg = tl_server_config_new();
    set(cfg, "listen", "127.0.0.1:0,plain");
    CHECK_EQ_INT(tl_server_check(cfg, err, sizeof err), 0);
    set(cfg, "user", "no-such-user-here");
    CHECK(tl_server_check(cfg, err, sizeof err) == -1 && strstr(err, "no such user"));
    tl_server_config_free(cfg);
    tl_certgen_pair_free(&leaf);
    tl_certgen_pair_free(&ca);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static int check_positive(const char *v, char *e, size_t elen)
{
    uint64_t n;
    if (tl_server_parse_size(v, &n) != 0 || n == 0) {
        snprintf(e, elen, "expected a size above 0");
        return -1;
    }
    return 0;
}

static const tl_server_option EXT[] = {
    {"root", "DIR", "serve files from DIR", NULL, false},
    {"body-limit", "SIZE", "largest body (default 1m)", check_positive, false},
    {"route", "PATH", "a route (repeat)", NULL, true},
    {"access-log-on", "", "a flag", NULL, false},
};

/* Options of the layer above: the same three ways in (set, file, argv), checked, kept in order,
 * and carried over by replay (as a reload does). */
TEST(extension_options)
{
    tl_server_config *cfg = tl_server_config_new();
    REQUIRE(cfg);
    static const tl_server_option clash[] = {{"listen", "X", "no", NULL, false}};
    CHECK_EQ_INT(tl_server_config_extend(cfg, clash, 1), -1);
    CHECK_EQ_INT(tl_server_config_extend(cfg, EXT, sizeof EXT / sizeof EXT[0]), 0);
    CHECK(tl_server_config_value(cfg, "root") == NULL);
    CHECK_EQ_INT(set(cfg, "root", "/srv/a"), 0);
    CHECK_EQ_INT(set(cfg, "root", "/srv/b"), 0);
    CHECK_STR(tl_server_config_value(cfg, "root"), "/srv/b");
    CHECK_EQ_INT(set(cfg, "body-limit", "0"), -1);
    CHECK_HAS(err, "body-limit 0: expected a size above 0");
    CHECK_EQ_INT(set(cfg, "body-limit", "64k"), 0);
    CHECK_EQ_INT(set(cfg, "root", ""), -1);
    CHECK_HAS(err, "root: needs a value (DIR)");
    CHECK_EQ_INT(set(cfg, "nonsense", "1"), 1);
    char *path = write_tmp("route /a\nroute /b # comment\naccess-log-on off\nbody-limit 2m\n");
    REQUIRE(path);
    CHECK_EQ_INT(tl_server_config_load(cfg, path, err, sizeof err), 0);
    char *argv[] = {"x", "--route=/c", "--access-log-on", "--root", "/srv/c", "rest"};
    int i = 1;
    CHECK_EQ_INT(tl_server_config_args(cfg, 6, argv, &i, err, sizeof err), 0);
    CHECK_EQ_INT(i, 5);
    const char *routes[4];
    CHECK_EQ_INT(tl_server_config_values(cfg, "route", routes, 4), 3);
    CHECK_STR(routes[0], "/a");
    CHECK_STR(routes[2], "/c");
    CHECK_STR(tl_server_config_value(cfg, "access-log-on"), "on");
    CHECK_STR(tl_server_config_value(cfg, "body-limit"), "2m");
    tl_server_config *copy = tli_server_config_replay(cfg, err, sizeof err);
    REQUIRE(copy);
    CHECK_STR(tl_server_config_value(copy, "root"), "/srv/c");
    CHECK_EQ_INT(tl_server_config_values(copy, "route", routes, 4), 3);
    CHECK_STR(tl_server_config_value(copy, "access-log-on"), "on");
    /* The file changes under a reload: a bad value is refused with its file and line. */
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("body-limit lots\n", f);
    fclose(f);
    tl_server_config *bad = tli_server_config_replay(cfg, err, sizeof err);
    CHECK(bad == NULL);
    CHECK_HAS(err, ":1: body-limit lots: expected a size above 0");
    unlink(path);
    tl_server_config_free(copy);
    tl_server_config_free(cfg);
}

TEST(size_and_duration_parsers)
{
    uint64_t v = 0;
    CHECK(tl_server_parse_size("512", &v) == 0 && v == 512);
    CHECK(tl_server_parse_size("64k", &v) == 0 && v == 65536);
    CHECK(tl_server_parse_size("16M", &v) == 0 && v == 16u << 20);
    CHECK(tl_server_parse_size("1g", &v) == 0 && v == 1u << 30);
    CHECK_EQ_INT(tl_server_parse_size("1kb", &v), -1);
    CHECK_EQ_INT(tl_server_parse_size("-1", &v), -1);
    CHECK_EQ_INT(tl_server_parse_size("k", &v), -1);
    CHECK_EQ_INT(tl_server_parse_size("99999999999999999999", &v), -1);
    CHECK(tl_server_parse_duration("250ms", &v) == 0 && v == 250);
    CHECK(tl_server_parse_duration("2m", &v) == 0 && v == 120000);
    CHECK_EQ_INT(tl_server_parse_duration("soon", &v), -1);
}

TEST(usage_lists_every_option)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tl_server_config_usage(f);
    fclose(f);
    const char *names[] = {"--listen", "--cert", "--key", "--ticket-key-file", "--max-conns",
                           "--max-handshakes", "--handshake-rate", "--max-per-source",
                           "--handshake-timeout", "--idle-timeout", "--send-timeout",
                           "--drain-timeout", "--user", "--log", "--config",
                           "--io epoll|uring|auto"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(strstr(buf, names[i]) != NULL);
    free(buf);
}

static struct sockaddr_storage addr_of(const char *ip)
{
    struct sockaddr_storage ss = {0};
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a->sin_addr);
    }
    return ss;
}

/* proxy-from and from=: who may send a PROXY header. A proxy listener without either is refused
 * by the check, with the way out in the message; from= overrides proxy-from for its listener. */
TEST(proxy_trust_lists)
{
    tl_server_config *cfg = tl_server_config_new();
    CHECK_EQ_INT(set(cfg, "listen", "127.0.0.1:0,plain,proxy"), 0);
    CHECK(tl_server_check(cfg, err, sizeof err) == -1);
    CHECK(strstr(err, "listen 127.0.0.1:0,plain,proxy") && strstr(err, "proxy-from CIDR") &&
          strstr(err, "from="));
    CHECK_EQ_INT(set(cfg, "proxy-from", "10.0.0.0/8,192.168.1.7"), 0);
    CHECK_EQ_INT(set(cfg, "proxy-from", "2001:db8::/32"), 0);
    CHECK_EQ_INT(tl_server_check(cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg->n_proxy_from, 3);
    CHECK_EQ_INT(set(cfg, "listen", "[::1]:0,plain,proxy,from=::1,from=172.16.0.0/12"), 0);
    REQUIRE(cfg->n_listens == 2);
    const tli_listen *g = &cfg->listens[0], *own = &cfg->listens[1];
    CHECK_EQ_INT(own->n_from, 2);
    const struct { const char *ip; bool global, own; } cases[] = {
        {"10.255.0.1", true, false},     {"11.0.0.1", false, false},
        {"192.168.1.7", true, false},    {"192.168.1.8", false, false},
        {"2001:db8:ffff::1", true, false}, {"2001:db9::1", false, false},
        {"::1", false, true},            {"172.31.255.255", false, true},
        {"172.32.0.0", false, false},    {"::ffff:10.1.2.3", true, false},   /* v4-mapped */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss = addr_of(cases[i].ip);
        CHECK(tli_proxy_trusted(cfg, g, (struct sockaddr *)&ss) == cases[i].global);
        CHECK(tli_proxy_trusted(cfg, own, (struct sockaddr *)&ss) == cases[i].own);
    }
    /* /0 is everyone of the family (an explicit choice, never a default). */
    tli_cidr *all = NULL;
    size_t n = 0;
    CHECK_EQ_INT(tli_cidr_list_add(&all, &n, "0.0.0.0/0", err, sizeof err), 0);
    struct sockaddr_storage any = addr_of("203.0.113.1"), v6 = addr_of("2001:db8::1");
    CHECK(tli_cidr_match(all, n, (struct sockaddr *)&any));
    CHECK(!tli_cidr_match(all, n, (struct sockaddr *)&v6));
    free(all);
    const char *bad[] = {"", "10.0.0.0/33", "10.1.2.3/8", "::1/129", "host.example", "10.0.0.0/",
                         "10.0.0.0/08", "10.0.0.0/8,", "1.2.3.4,,5.6.7.8", "fe80::1%lo"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(set(cfg, "proxy-from", bad[i]) == -1);
        CHECK(strstr(err, "proxy-from") != NULL);
    }
    CHECK_EQ_INT(cfg->n_proxy_from, 3);   /* bad values add nothing */
    CHECK(set(cfg, "proxy-from", "10.1.2.3/8") == -1);
    CHECK(strstr(err, "10.0.0.0/8") != NULL);   /* the message names the range meant */
    const char *bad_listen[] = {"0,plain,from=10.0.0.0/8", "0,proxy,from=nope",
                                "0,proxy,from=1.1.1.1,from=1.1.1.2,from=1.1.1.3,from=1.1.1.4,"
                                "from=1.1.1.5,from=1.1.1.6,from=1.1.1.7,from=1.1.1.8,from=1.1.1.9"};
    for (size_t i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
        CHECK(set(cfg, "listen", bad_listen[i]) == -1);
        CHECK(strstr(err, "listen") != NULL && strstr(err, "from") != NULL);
    }
    tl_server_config_free(cfg);
}

TEST(ocsp_staple_values)
{
    tl_server_config *cfg = tl_server_config_new();
    REQUIRE(cfg);
    CHECK(cfg->ocsp == TLI_OCSP_ON);   /* the default, as Caddy */
    CHECK(cfg->ocsp_file == NULL && cfg->ocsp_cache == NULL);
    CHECK(tl_server_config_set(cfg, "ocsp-staple", "off", err, sizeof err) == 0);
    CHECK(cfg->ocsp == TLI_OCSP_OFF);
    CHECK(tl_server_config_set(cfg, "ocsp-staple", "/etc/resp.der", err, sizeof err) == 0);
    CHECK(cfg->ocsp == TLI_OCSP_FILE);
    CHECK_STR(cfg->ocsp_file, "/etc/resp.der");
    CHECK(tl_server_config_set(cfg, "ocsp-staple", "on", err, sizeof err) == 0);
    CHECK(cfg->ocsp == TLI_OCSP_ON && cfg->ocsp_file == NULL);
    CHECK(tl_server_config_set(cfg, "ocsp-staple", "", err, sizeof err) == -1);
    CHECK(tl_server_config_set(cfg, "ocsp-cache", "/var/lib/x", err, sizeof err) == 0);
    char dir[256];
    tli_ocsp_cache_dir(cfg, dir, sizeof dir);
    CHECK_STR(dir, "/var/lib/x");
    /* A copy (and a reload) keeps every OCSP setting. */
    CHECK(tl_server_config_set(cfg, "ocsp-staple", "/nonexistent/resp.der", err, sizeof err) == 0);
    tl_server_config *copy = tli_server_config_replay(cfg, err, sizeof err);
    REQUIRE(copy);
    CHECK(copy->ocsp == TLI_OCSP_FILE);
    CHECK_STR(copy->ocsp_file, "/nonexistent/resp.der");
    CHECK_STR(copy->ocsp_cache, "/var/lib/x");
    tl_server_config_free(copy);
    tl_server_config_free(cfg);
    cfg = tl_server_config_new();
    REQUIRE(cfg);
    setenv("XDG_STATE_HOME", "/tmp/xdg", 1);
    tli_ocsp_cache_dir(cfg, dir, sizeof dir);
    CHECK_STR(dir, "/tmp/xdg/tlsloop/ocsp");
    tl_server_config_free(cfg);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(defaults);
    RUN(listen_forms);
    RUN(overlapping_listeners_refused);
    RUN(values_and_errors);
    RUN(file_format);
    RUN(args_and_replay);
    RUN(check_mode);
    RUN(extension_options);
    RUN(size_and_duration_parsers);
    RUN(usage_lists_every_option);
    RUN(proxy_trust_lists);
    RUN(ocsp_staple_values);
    TEST_MAIN_END();
}
