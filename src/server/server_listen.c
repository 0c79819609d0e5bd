/* server_listen.c - the listening sockets: the probe that keeps a second process off our
 * addresses (tl_server_probe), one SO_REUSEPORT socket per worker and listener, and the address
 * a listener is bound to, for messages.
 *
 * SO_REUSEPORT lets any socket of the same user join the port and take a share of its
 * connections, silently. So each address is first bound once without it: that fails with
 * EADDRINUSE while anyone else listens there, as nginx's bind does.
 */
#include <errno.h>
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

/* Every worker's socket for every listener, after a probe of each address without SO_REUSEPORT
 * (server_trust.c) found nobody else on it. The probes stay bound until the workers' sockets
 * are: a port 0 listener's port is the probe's, and it stays ours meanwhile. */
int tli_bind_all(tl_server *srv, char *err, size_t errlen)
{
    const tl_server_config *cfg = srv->cfg;
    int *probes = malloc(srv->nlisten * sizeof *probes);
    if (!probes) {
        tli_fmt(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    size_t np = 0;
    for (; np < srv->nlisten && rc == 0; np++)
        rc = probe_listen(&cfg->listens[np], &probes[np], &srv->ports[np], err, errlen);
    for (unsigned wi = 0; wi < srv->nworkers && rc == 0; wi++)
        for (size_t li = 0; li < srv->nlisten && rc == 0; li++) {
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
