/* echo_server.c - a TLS echo server on tlsloop's server API: every connection gets back what it
 * sends, with backpressure (a client that does not read stops being read). All the server's
 * options work (listeners, certificates per SNI name, limits, deadlines, --config FILE); SIGTERM
 * drains, SIGHUP reloads, SIGUSR1 reopens the log, SIGUSR2 upgrades (docs/scale-out.md).
 * Tested by tests/e2e/test_server_*.py.
 *
 * usage: echo_server [--quiet] [--check] SERVER-OPTIONS...
 *   e.g. echo_server --listen 127.0.0.1:8443 --cert cert.pem --key key.pem --workers 2
 * Prints "listening on ADDR:PORT" per listener, then a line per connection event unless --quiet.
 * A message starting with "!stats" is answered with the server's counters, "!peer" with the
 * client's address as the server knows it (from the PROXY header when there is one). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsloop/server.h>

static bool quiet;
static tl_server *server;

/* One printf per line: workers print from several threads. */
static void say(tl_conn *c, const char *what, const char *a, const char *b)
{
    if (!quiet) {
        printf("%ld: %s%s %s\n", (long)(intptr_t)tl_conn_data(c), what, a, b);
        fflush(stdout);
    }
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    const void *ip = sa->sa_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr
                                               : (const void *)&((struct sockaddr_in *)sa)->sin_addr;
    unsigned port = ntohs(sa->sa_family == AF_INET6 ? ((struct sockaddr_in6 *)sa)->sin6_port
                                                    : ((struct sockaddr_in *)sa)->sin_port);
    inet_ntop(sa->sa_family, ip, host, sizeof host);
    snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

static void answer_stats(tl_conn *c)
{
    tl_server_stats st;
    tl_server_get_stats(server, -1, &st);
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "conns_open=%llu conns_total=%llu refused_source=%llu proxy_invalid=%llu "
                     "proxy_untrusted=%llu accept_pauses=%llu handshakes_active=%llu full=%llu resumed=%llu "
                     "failed_timeout=%llu failed_closed=%llu failed_protocol=%llu "
                     "failed_alert=%llu failed_verify=%llu reloads=%llu reload_failures=%llu "
                     "cert_days=%lld\n",
                     (unsigned long long)st.conns_open, (unsigned long long)st.conns_total,
                     (unsigned long long)st.conns_refused_source,
                     (unsigned long long)st.proxy_invalid,
                     (unsigned long long)st.proxy_untrusted, (unsigned long long)st.accept_pauses,
                     (unsigned long long)st.handshakes_active,
                     (unsigned long long)st.handshakes_full,
                     (unsigned long long)st.handshakes_resumed,
                     (unsigned long long)st.handshakes_failed[TL_HS_FAIL_TIMEOUT],
                     (unsigned long long)st.handshakes_failed[TL_HS_FAIL_CLOSED],
                     (unsigned long long)st.handshakes_failed[TL_HS_FAIL_PROTOCOL],
                     (unsigned long long)st.handshakes_failed[TL_HS_FAIL_ALERT],
                     (unsigned long long)st.handshakes_failed[TL_HS_FAIL_VERIFY],
                     (unsigned long long)st.reloads, (unsigned long long)st.reload_failures,
                     (long long)st.cert_expiry_days);
    tl_conn_write(c, buf, (size_t)n);
}

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    if (len >= 6 && memcmp(data, "!stats", 6) == 0) {
        answer_stats(c);
        return;
    }
    if (len >= 5 && memcmp(data, "!peer", 5) == 0) {
        char buf[80];
        addr_text(tl_server_conn_peer(c, NULL), buf, sizeof buf - 1);
        strcat(buf, "\n");
        tl_conn_write(c, buf, strlen(buf));
        return;
    }
    if (!quiet) {
        printf("%ld: %.*s\n", (long)(intptr_t)tl_conn_data(c), len > 200 ? 200 : (int)len,
               (const char *)data);
        fflush(stdout);
    }
    if (tl_conn_write(c, data, len) == 1)
        tl_conn_pause_read(c);   /* the peer reads slower than it sends: wait for on_drain */
}

static void on_drain(tl_conn *c)
{
    tl_conn_resume_read(c);
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    char end[32];
    snprintf(end, sizeof end, "(%s)", tl_conn_end_name(how));
    say(c, "closed ", end, tl_conn_error(c));
}

static void on_open(tl_conn *c, void *data)
{
    static _Atomic intptr_t next_id = 1;
    (void)data;
    tl_conn_set_data(c, (void *)next_id++);
    char peer[80];
    addr_text(tl_server_conn_peer(c, NULL), peer, sizeof peer);
    say(c, "open ", peer, "");
}

int main(int argc, char **argv)
{
    tl_server_config *cfg = tl_server_config_new();
    char err[512];
    bool check = false;
    for (int i = 1; i < argc;) {
        if (tl_server_config_args(cfg, argc, argv, &i, err, sizeof err) != 0) {
            fprintf(stderr, "echo_server: %s\n", err);
            tl_server_config_free(cfg);
            return 2;
        }
        if (i >= argc)
            break;
        if (!strcmp(argv[i], "--help")) {
            printf("usage: echo_server [--quiet] [--check] SERVER-OPTIONS...\n");
            tl_server_config_usage(stdout);
            tl_server_config_free(cfg);
            return 0;
        }
        if (!strcmp(argv[i], "--quiet"))
            quiet = true;
        else if (!strcmp(argv[i], "--check"))
            check = true;
        else {
            fprintf(stderr, "echo_server: unknown option %s (echo_server --help lists them)\n",
                    argv[i]);
            tl_server_config_free(cfg);
            return 2;
        }
        i++;
    }
    if (check) {
        int rc = tl_server_check(cfg, err, sizeof err);
        printf(rc == 0 ? "configuration OK\n" : "configuration error: %s\n", err);
        tl_server_config_free(cfg);
        return rc == 0 ? 0 : 1;
    }
    static const tl_conn_cbs cbs = {.on_read = on_read, .on_drain = on_drain, .on_close = on_close};
    tl_server_handler handler = {.cbs = &cbs, .on_open = on_open};
    server = tl_server_new(cfg, &handler, err, sizeof err);
    tl_server_config_free(cfg);
    if (!server) {
        fprintf(stderr, "echo_server: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < tl_server_listeners(server); i++)
        printf("listening on port %u\n", tl_server_port(server, i));
    fflush(stdout);
    int rc = tl_server_run(server, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "echo_server: %s\n", err);
    tl_server_free(server);
    return rc == 0 ? 0 : 1;
}
