/* server_listen.c - the listening sockets: the probe that keeps a second process off our
 * addresses (tl_server_probe; docs/server.md, "An address in use"), one SO_REUSEPORT socket per
 * worker and listener, and the address a listener is bound to, for messages. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_int.h"

/* ---- the probe -------------------------------------------------------------------------- */

/* Probe-bind L's address without SO_REUSEPORT, so that an address another process listens on is
 * found before the workers' SO_REUSEPORT sockets would silently join it. On success *fd_out is
 * the probe (bound, not listening, SO_REUSEADDR: the workers' sockets can bind beside it; hold it
 * until they have, so the port stays ours) and *port its port (the kernel's pick for port 0).
 * Returns 0, 1 when the address is in use (err names it), or -1 (err says why). */
static int probe_listen(const tli_listen *L, int *fd_out, uint16_t *port, char *err, size_t errlen)
{
    *fd_out = -1;
    struct sockaddr_storage addr;
    memcpy(&addr, &L->addr, L->addrlen);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tli_fmt(err, errlen, "listen %s: socket: %s", L->text, strerror(errno));
        return -1;
    }
    /* SO_REUSEADDR, as the workers' sockets have: a port left in TIME_WAIT by our previous run is
     * free; one that anyone listens on is not. Without SO_REUSEPORT no group can take us in. */
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&addr, L->addrlen) != 0) {
        int e = errno;
        close(fd);
        char text[64];
        tli_addr_text((struct sockaddr *)&addr, text, sizeof text);
        if (e == EADDRINUSE) {
            tli_fmt(err, errlen, "listen %s: address already in use: another process listens on "
                    "%s (stop it, or choose another port)", L->text, text);
            return 1;
        }
        tli_fmt(err, errlen, "listen %s: cannot bind %s: %s%s", L->text, text, strerror(e),
                e == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : "");
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &len) != 0) {
        tli_fmt(err, errlen, "listen %s: getsockname: %s", L->text, strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                           : ((struct sockaddr_in6 *)&got)->sin6_port);
    *fd_out = fd;
    return 0;
}

int tl_server_probe(const tl_server_config *cfg, char *err, size_t errlen)
{
    int *fds = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof *fds);
    if (!fds) {
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    size_t i;
    uint16_t port;
    /* Held together, as tl_server_new holds them: two listeners of ours never look like one
     * another's competitor (listens_overlap refuses real overlaps first). */
    for (i = 0; i < cfg->n_listens && rc == 0; i++)
        rc = probe_listen(&cfg->listens[i], &fds[i], &port, err, errlen);
    for (size_t j = 0; j < i; j++)
        if (fds[j] >= 0)
            close(fds[j]);
    free(fds);
    return rc;
}

/* ---- worker sockets --------------------------------------------------------------------- */

static int bind_listener(const tli_listen *L, uint64_t backlog, uint16_t *port, char *err,
                         size_t errlen)
{
    struct sockaddr_storage addr;
    memcpy(&addr, &L->addr, L->addrlen);
    if (*port) {   /* port 0 was asked: every worker binds the port the first one got */
        if (addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&addr)->sin_port = htons(*port);
        else
            ((struct sockaddr_in6 *)&addr)->sin6_port = htons(*port);
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        tli_fmt(err, errlen, "listen %s: socket: %s", L->text, strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        /* Inherited by every accepted socket: one setsockopt per listener, not per connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        (addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&addr, L->addrlen) != 0 ||
        listen(fd, (int)backlog) != 0) {
        int e = errno;
        close(fd);
        tli_fmt(err, errlen, "listen %s: %s%s", L->text, strerror(e),
                e == EADDRINUSE ? " (another program has this port)"
                : e == EACCES   ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                                : "");
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &len) == 0)
        *port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                               : ((struct sockaddr_in6 *)&got)->sin6_port);
    return fd;
}

/* ---- sockets we start with ------------------------------------------------------------ */

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* Whether a socket bound to got serves listener L: the same family and address, and the same
 * port (any port when L asks for port 0 and any_port). */
static bool serves(const tli_listen *L, const struct sockaddr_storage *got, bool any_port)
{
    if (got->ss_family != L->addr.ss_family)
        return false;
    uint16_t want = port_of(&L->addr);
    if (want != port_of(got) && !(want == 0 && any_port))
        return false;
    if (got->ss_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)got)->sin_addr,
                       &((const struct sockaddr_in *)&L->addr)->sin_addr, sizeof(struct in_addr));
    return got->ss_family == AF_INET6 &&
           !memcmp(&((const struct sockaddr_in6 *)got)->sin6_addr,
                   &((const struct sockaddr_in6 *)&L->addr)->sin6_addr, sizeof(struct in6_addr));
}

/* A listening TCP socket, and where it is bound. 0, or -1 with err set. */
static int inherited_address(const tli_inherit *in, struct sockaddr_storage *got, char *err,
                             size_t errlen)
{
    int type = 0, listening = 0;
    socklen_t len = sizeof type, len2 = sizeof listening, alen = sizeof *got;
    if (getsockopt(in->fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
        getsockopt(in->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) != 0 ||
        getsockname(in->fd, (struct sockaddr *)got, &alen) != 0) {
        tli_fmt(err, errlen, "inherited fd %d%s%s: %s", in->fd, *in->name ? " " : "", in->name,
                strerror(errno));
        return -1;
    }
    if (type != SOCK_STREAM || !listening ||
        (got->ss_family != AF_INET && got->ss_family != AF_INET6)) {
        tli_fmt(err, errlen, "inherited fd %d%s%s: not a listening TCP socket (a socket unit "
                "needs ListenStream=ADDR:PORT)", in->fd, *in->name ? " " : "", in->name);
        return -1;
    }
    return 0;
}

/* Match each inherited socket to its listener: a hand-off names it (and its address must be the
 * listener's); systemd's are matched by address, the exact port first, then a port 0 listener on
 * the same address. Sockets systemd passed that no listener wants are closed (systemd keeps its
 * own); a hand-off must cover every listener, or the queues of the ones left out would be lost. */
static int match_inherited(tl_server *srv, bool *have, char *err, size_t errlen)
{
    const tl_server_config *cfg = srv->cfg;
    for (size_t k = 0; k < srv->ninherit; k++) {
        tli_inherit *in = &srv->inherit[k];
        struct sockaddr_storage got;
        if (inherited_address(in, &got, err, errlen) != 0)
            return -1;
        char text[64];
        tli_addr_text((struct sockaddr *)&got, text, sizeof text);
        if (in->listener >= 0) {   /* a hand-off */
            if ((size_t)in->listener >= srv->nlisten ||
                !serves(&cfg->listens[in->listener], &got, true)) {
                tli_fmt(err, errlen, "takeover: the running server's listener %d is %s, ours is "
                        "%s: start the new server with the same listen options (the running one "
                        "goes on serving)", in->listener + 1, text,
                        (size_t)in->listener < srv->nlisten ? cfg->listens[in->listener].text
                                                            : "missing");
                return -1;
            }
            if (in->worker < 0 || (unsigned)in->worker >= srv->nworkers) {
                tli_fmt(err, errlen, "takeover: the running server has more workers (a socket "
                        "of its worker %d) than ours (%u): start the new server with at least as "
                        "many --workers, so every socket's queue has a worker", in->worker + 1,
                        srv->nworkers);
                return -1;
            }
        } else {
            for (int pass = 0; pass < 2 && in->listener < 0; pass++)
                for (size_t li = 0; li < srv->nlisten && in->listener < 0; li++)
                    if (serves(&cfg->listens[li], &got, pass == 1) && (pass == 0 || !have[li]))
                        in->listener = (int)li;
            if (in->listener < 0) {
                LOG(srv, WARN, "socket activation: fd %d%s%s on %s matches no listen option: "
                    "not used", in->fd, *in->name ? " " : "", in->name, text);
                close(in->fd);
                in->fd = -1;
                continue;
            }
        }
        have[in->listener] = true;
        srv->ports[in->listener] = port_of(&got);
    }
    for (size_t li = 0; li < srv->nlisten && !srv->from_systemd; li++)
        if (!have[li]) {
            tli_fmt(err, errlen, "takeover: the running server has no socket for listen %s: "
                    "start the new server with the same listen options", cfg->listens[li].text);
            return -1;
        }
    return 0;
}

/* Give every worker a socket of each listener it inherited: a hand-off's own worker's socket,
 * else systemd's in turn; a worker left over shares a socket (a duplicate of the first: the same
 * queue, every worker accepting from it). */
static int assign_inherited(tl_server *srv, size_t li, char *err, size_t errlen)
{
    int first = -1;
    for (unsigned wi = 0; wi < srv->nworkers; wi++) {
        int *slot = &srv->fds[(size_t)wi * srv->nlisten + li];
        for (size_t k = 0; k < srv->ninherit && *slot < 0; k++) {
            tli_inherit *in = &srv->inherit[k];
            if (in->fd < 0 || in->listener != (int)li)
                continue;
            if (in->worker == (int)wi || in->worker < 0) {
                *slot = in->fd;
                in->fd = -1;
            }
        }
        if (*slot < 0 && first >= 0 && (*slot = fcntl(first, F_DUPFD_CLOEXEC, 0)) < 0) {
            tli_fmt(err, errlen, "listen %s: dup of the inherited socket: %s",
                    srv->cfg->listens[li].text, strerror(errno));
            return -1;
        }
        if (first < 0)
            first = *slot;
    }
    for (size_t k = 0; k < srv->ninherit; k++)
        if (srv->inherit[k].fd >= 0 && srv->inherit[k].listener == (int)li) {
            LOG(srv, WARN, "listen %s: %s sockets than workers (%u): the extra one is not used",
                srv->cfg->listens[li].text, srv->from_systemd ? "systemd passed more" : "more",
                srv->nworkers);
            close(srv->inherit[k].fd);
            srv->inherit[k].fd = -1;
        }
    return 0;
}

void tli_free_inherited(tl_server *srv)
{
    for (size_t k = 0; k < srv->ninherit; k++)
        if (srv->inherit[k].fd >= 0)
            close(srv->inherit[k].fd);
    free(srv->inherit);
    srv->inherit = NULL;
    srv->ninherit = 0;
}

/* Every worker's socket for every listener: inherited ones first (above); the others after a
 * probe of each address without SO_REUSEPORT (server_trust.c) found nobody else on it. The probes
 * stay bound until the workers' sockets are: a port 0 listener's port is the probe's, and it
 * stays ours meanwhile. */
int tli_bind_all(tl_server *srv, char *err, size_t errlen)
{
    const tl_server_config *cfg = srv->cfg;
    int *probes = malloc(srv->nlisten * sizeof *probes);
    bool *have = calloc(srv->nlisten ? srv->nlisten : 1, sizeof *have);
    if (!probes || !have) {
        free(probes);
        free(have);
        tli_free_inherited(srv);
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    if (srv->ninherit) {
        rc = match_inherited(srv, have, err, errlen);
        for (size_t li = 0; li < srv->nlisten && rc == 0; li++)
            if (have[li])
                rc = assign_inherited(srv, li, err, errlen);
    }
    tli_free_inherited(srv);
    size_t np = 0;
    for (; np < srv->nlisten && rc == 0; np++) {
        probes[np] = -1;
        if (!have[np])
            rc = probe_listen(&cfg->listens[np], &probes[np], &srv->ports[np], err, errlen);
    }
    for (unsigned wi = 0; wi < srv->nworkers && rc == 0; wi++)
        for (size_t li = 0; li < srv->nlisten && rc == 0; li++) {
            if (have[li])
                continue;
            int fd = bind_listener(&cfg->listens[li], cfg->backlog, &srv->ports[li], err, errlen);
            if (fd < 0)
                rc = -1;
            else
                srv->fds[(size_t)wi * srv->nlisten + li] = fd;
        }
    for (size_t i = 0; i < np; i++)
        if (probes[i] >= 0)
            close(probes[i]);
    free(probes);
    free(have);
    return rc ? -1 : 0;
}

/* A listener's address with the port it is bound to (the configured one may be 0). */
void tli_bound_text(const tl_server *srv, size_t li, char *out, size_t outlen)
{
    const tli_listen *L = &srv->cfg->listens[li];
    struct sockaddr_storage ss;
    memcpy(&ss, &L->addr, L->addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(srv->ports[li]);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(srv->ports[li]);
    tli_addr_text((struct sockaddr *)&ss, out, outlen);
}
