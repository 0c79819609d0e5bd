/* server_config_check.c - checks of a whole configuration, beyond each value's own: something to
 * listen on, no two listeners on overlapping addresses, trust for every proxy listener, versions
 * in order (tl_server_check also builds its TLS generation once).
 */
#include <pwd.h>
#include <string.h>

#include "server/server_int.h"

bool tli_any_tls(const tl_server_config *cfg)
{
    for (size_t i = 0; i < cfg->n_listens; i++)
        if (cfg->listens[i].tls)
            return true;
    return false;
}

/* Two listeners whose addresses overlap on one port: the same address, or the family's wildcard
 * and any other. SO_REUSEPORT would let both bind and the kernel would split (or steal) their
 * connections, so it is refused. Port 0 (pick one) never overlaps. */
static bool listens_overlap(const tli_listen *a, const tli_listen *b)
{
    if (a->addr.ss_family != b->addr.ss_family)
        return false;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin_port && x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr || x->sin_addr.s_addr == INADDR_ANY ||
                y->sin_addr.s_addr == INADDR_ANY);
    }
    const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
    return x->sin6_port && x->sin6_port == y->sin6_port &&
           (!memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) ||
            IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
}

/* Checks that need no system resource; tl_server_check adds loading the TLS generation. */
int tli_server_config_check(const tl_server_config *cfg, char *err, size_t errlen)
{
    if (!cfg->n_listens) {
        tli_fmt(err, errlen, "nothing to listen on: give listen [ADDR:]PORT");
        return -1;
    }
    if (tli_check_proxy_trust(cfg, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < cfg->n_listens; i++)
        for (size_t j = i + 1; j < cfg->n_listens; j++)
            if (listens_overlap(&cfg->listens[i], &cfg->listens[j])) {
                tli_fmt(err, errlen, "listen %s and listen %s: the same port on overlapping "
                        "addresses (each would get some of the other's connections)",
                        cfg->listens[i].text, cfg->listens[j].text);
                return -1;
            }
    if (cfg->tls_min > cfg->tls_max) {
        tli_fmt(err, errlen, "tls-min is above tls-max");
        return -1;
    }
    if (cfg->client_verify != (tl_verify)-1 && cfg->client_verify != TL_VERIFY_NONE && !cfg->client_ca) {
        tli_fmt(err, errlen, "client-cert needs client-ca FILE (the CAs that issue client certificates)");
        return -1;
    }
    if (cfg->session_store && !cfg->ticket_key_file) {
        tli_fmt(err, errlen, "session-store needs ticket-key-file FILE (the same on every "
                "instance): its entries are sealed under a key derived from the file's current "
                "key, which the other instances must have to open them (make one with: tlsloop "
                "ticket-keys new FILE)");
        return -1;
    }
    if (cfg->session_store_timeout_ms > 1000) {
        tli_fmt(err, errlen, "session-store-timeout %llums: at most 1s (a handshake waits this long "
                "for the store; a store slower than that is better treated as down)",
                (unsigned long long)cfg->session_store_timeout_ms);
        return -1;
    }
    if (cfg->session_store && !tli_any_tls(cfg)) {
        tli_fmt(err, errlen, "session-store: no TLS listener to share sessions of");
        return -1;
    }
    if (cfg->user && !getpwnam(cfg->user)) {
        tli_fmt(err, errlen, "user %s: no such user", cfg->user);
        return -1;
    }
    return 0;
}

int tl_server_check(const tl_server_config *cfg, char *err, size_t errlen)
{
    if (tli_server_config_check(cfg, err, errlen) != 0)
        return -1;
    if (!tli_any_tls(cfg))
        return 0;
    tl_server_config *copy = tli_server_config_replay(cfg, err, errlen);
    tli_gen *g = copy ? tli_gen_build(copy, NULL, err, errlen) : NULL;
    if (g)
        g->cfg = copy;
    else
        tl_server_config_free(copy);
    tli_gen_unref(g);
    return g ? 0 : -1;
}
