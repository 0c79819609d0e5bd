/* proxy.c - `tlsloop proxy`: TLS termination in front of TCP backends (tlsloop/proxy.h on
 * tlsloop/server.h). Every server option works (listeners, certificates per SNI name, ALPN,
 * tickets, mTLS, workers, limits, deadlines, logs), on the command line and in a --config file.
 */
#include <stdlib.h>
#include <string.h>

#include <tlsloop/acme.h>
#include <tlsloop/log.h>
#include <tlsloop/proxy.h>
#include <tlsloop/server.h>

#include "tools.h"

void cmd_proxy_usage(FILE *f)
{
    fprintf(f,
            "usage: tlsloop proxy --listen [ADDR:]PORT --cert FILE --key FILE --backend HOST:PORT\n"
            "                     [--backend HOST:PORT ...] [--check] [OPTIONS...]\n\n"
            "TLS termination: clients connect over TLS (or plain, with ,plain on a listener), and\n"
            "their bytes go both ways to a TCP backend, chosen round-robin, with backpressure on\n"
            "both legs. A clean end of data is carried across (TLS 1.3 half-close), a reset as a\n"
            "reset. Options go on the command line (--name value) or in a --config file.\n"
            "SIGTERM drains, SIGHUP reloads certificates and keys, SIGUSR1 reopens the log.\n\n"
            "  --check                        check the configuration (files, backends) and exit\n"
            "  --help                         this text\n\n"
            "Proxy:\n");
    tl_proxy_usage(f);
    fprintf(f, "\nACME (certificates from an ACME server, renewed by themselves; tls-alpn-01 "
               "only;\ndocs/certificates.md):\n");
    tl_acme_usage(f);
    fprintf(f, "\nServer (listeners, TLS, limits, deadlines, logs):\n");
    tl_server_config_usage(f);
    fprintf(f, "\nExit status: 0 after a drain, 1 when the proxy failed while running, 2 for a "
               "bad option,\nan unreadable file or a backend name that does not resolve, 98 when "
               "another process\nlistens on a listen address.\n");
}

int cmd_proxy(int argc, char **argv)
{
    tl_server_config *cfg = tl_server_config_new();
    if (!cfg || tl_proxy_config_init(cfg) != 0 || tl_acme_config_init(cfg) != 0) {
        fprintf(stderr, "tlsloop proxy: out of memory\n");
        tl_server_config_free(cfg);
        return EXIT_FAILURE_RUN;
    }
    char err[1024];
    bool check = false;
    int rc = tool_server_args("proxy", cfg, argc, argv, &check, cmd_proxy_usage);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    if (tl_server_config_count(cfg, "listen") == 0)
        return tool_server_usage_error("proxy", cfg, "nothing to listen on: give --listen "
                                       "[ADDR:]PORT (tlsloop proxy --help)");
    tl_acme *acme = NULL;
    if (tl_acme_wanted(cfg)) {
        /* A plain listener relays bytes: only the TLS listener can answer a challenge. */
        const char *chal = tl_server_config_value(cfg, "acme-challenge");
        char dir[4200];
        if (chal && !strcmp(chal, "http-01"))
            return tool_server_usage_error("proxy", cfg, "acme-challenge http-01 needs an HTTP "
                                           "server (tlsloop serve); the proxy answers tls-alpn-01");
        tool_default_state_dir(dir, sizeof dir, "acme");
        if (!(acme = tl_acme_new(cfg, dir, err, sizeof err)))
            return tool_server_usage_error("proxy", cfg, err);
    }
    tl_proxy *p = NULL;
    if (tl_proxy_config_finish(cfg, err, sizeof err) != 0 ||
        tl_server_check(cfg, err, sizeof err) != 0 || !(p = tl_proxy_new(cfg, err, sizeof err))) {
        tl_acme_free(acme);
        return tool_server_usage_error("proxy", cfg, err);
    }
    if (check) {
        printf("configuration OK\n");
        tl_acme_free(acme);
        tl_proxy_free(p);
        tl_server_config_free(cfg);
        return EXIT_OK;
    }
    tl_server *srv = tl_server_new(cfg, tl_proxy_handler(p), err, sizeof err);
    if (!srv) {
        /* An address someone else listens on gets its own exit code (probed again to tell). */
        char why[256];
        bool in_use = tl_server_probe(cfg, why, sizeof why) == 1;
        fprintf(stderr, "tlsloop proxy: %s\n", err);
        tl_server_config_free(cfg);
        tl_proxy_free(p);
        tl_acme_free(acme);
        return in_use ? EXIT_ADDR_IN_USE : EXIT_FAILURE_RUN;
    }
    tl_server_config_free(cfg);
    if (tl_proxy_attach(p, srv, err, sizeof err) != 0 ||
        (acme && tl_acme_start(acme, srv, err, sizeof err) != 0)) {
        fprintf(stderr, "tlsloop proxy: %s\n", err);
        tl_acme_stop(acme);
        tl_server_free(srv);
        tl_acme_free(acme);
        tl_proxy_free(p);
        return EXIT_FAILURE_RUN;
    }
    for (size_t i = 0; i < tl_server_listeners(srv); i++)
        printf("tlsloop proxy: listening on port %u (%s)\n", tl_server_port(srv, i),
               (int)i == tl_proxy_metrics_listener(p) ? "metrics, plain HTTP"
               : tl_server_listener_is_tls(srv, i)    ? "TLS"
                                                      : "plain");
    for (size_t i = 0; i < tl_proxy_backends(p); i++)
        printf("tlsloop proxy: backend %s\n", tl_proxy_backend_name(p, i));
    fflush(stdout);
    rc = tl_server_run(srv, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "tlsloop proxy: %s\n", err);
    tl_proxy_stats st;
    tl_proxy_get_stats(p, &st);
    TL_LOG(tl_server_log(srv), TL_LOG_INFO,
           "proxy: %llu clients, %llu backend connections, %llu backend failures, %llu without "
           "a backend; ended clean %llu, reset %llu, timeout %llu, truncated %llu; %llu bytes to "
           "backends, %llu to clients",
           (unsigned long long)st.clients, (unsigned long long)st.backend_connects,
           (unsigned long long)st.backend_failures, (unsigned long long)st.no_backend,
           (unsigned long long)st.ended_clean, (unsigned long long)st.ended_reset,
           (unsigned long long)st.ended_timeout, (unsigned long long)st.ended_truncated,
           (unsigned long long)st.bytes_to_backend, (unsigned long long)st.bytes_to_client);
    tl_acme_stop(acme);
    tl_server_free(srv);
    tl_acme_free(acme);
    tl_proxy_free(p);
    return rc == 0 ? EXIT_OK : EXIT_FAILURE_RUN;
}
