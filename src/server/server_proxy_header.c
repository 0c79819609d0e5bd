/* server_proxy_header.c - the PROXY header step of proxy listeners, before TLS: a peer that is
 * not a trusted balancer is closed at once; a trusted one's header is read (proxyproto.c parses
 * it) before the socket becomes a connection with the client's address.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/server_int.h"

#define TLI_STR_(x) #x
#define TLI_STR(x) TLI_STR_(x)

/* ok: the header arrived (the socket lives on as a connection); else it is closed, and counted
 * as a bad header unless the server is draining. */
void tli_end_pending(pending *p, bool ok)
{
    worker *w = p->w;
    tl_io_stop(w->loop, &p->io);
    tl_timer_stop(w->loop, &p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        w->pendings = p->next;
    if (p->next)
        p->next->prev = p->prev;
    w->npending--;
    if (!ok) {
        if (!w->draining)
            bump(&w->st.proxy_invalid, 1);
        tli_drop_fd(w, p->io.fd, w->srv->cfg->listens[p->listener].tls);
    }
    tl_loop_defer_free(w->loop, p);
    tli_maybe_finish(w);
}

static void reject_pending(pending *p, const char *why)
{
    tl_server *srv = p->w->srv;
    if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
        char addr[64];
        tli_addr_text((struct sockaddr *)&p->peer, addr, sizeof addr);
        LOG(srv, INFO, "closed %s on %s: %s", addr, srv->cfg->listens[p->listener].text, why);
    }
    tli_end_pending(p, false);
}

static void on_pending_timeout(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    reject_pending(t->data, "no complete PROXY header before the handshake deadline");
}

/* Peek, so that the bytes after the header stay in the socket for TLS; take from the socket only
 * what is surely header (all of it while it is incomplete, exactly its length once complete). */
static void on_pending_readable(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)events;
    pending *p = io->data;
    ssize_t n = recv(io->fd, p->buf + p->have, sizeof p->buf - p->have, MSG_PEEK);
    if (n == 0) {
        reject_pending(p, "closed before its PROXY header ended");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            reject_pending(p, "the socket failed before its PROXY header ended");
        return;
    }
    tl_proxy_info info;
    ssize_t r = tl_proxy_parse(p->buf, p->have + (size_t)n, &info);
    if (r == TL_PROXY_INVALID) {
        reject_pending(p, "invalid PROXY protocol header");
        return;
    }
    size_t take = r > 0 ? (size_t)r - p->have : (size_t)n;
    if (r == TL_PROXY_INCOMPLETE && p->have + take == sizeof p->buf) {
        reject_pending(p, "PROXY header too long (more than " TLI_STR(TLI_PROXY_MAX) " bytes)");
        return;
    }
    if (recv(io->fd, p->buf + p->have, take, 0) != (ssize_t)take) {
        reject_pending(p, "the socket failed while its PROXY header was read");
        return;
    }
    p->have += take;
    if (r == TL_PROXY_INCOMPLETE)
        return;
    /* Keep what the connection needs, then let the pending state go (its watcher must be off the
     * fd before the connection's own watcher takes it). */
    worker *w = p->w;
    int fd = io->fd, li = p->listener;
    struct sockaddr_storage peer;
    socklen_t peerlen = info.local ? p->peerlen
                        : info.family == AF_INET ? (socklen_t)sizeof(struct sockaddr_in)
                                                 : (socklen_t)sizeof(struct sockaddr_in6);
    memcpy(&peer, info.local ? &p->peer : &info.src, peerlen);
    uint8_t tlvs[TLI_PROXY_MAX];
    if (info.tlvs_len) {
        memcpy(tlvs, info.tlvs, info.tlvs_len);
        info.tlvs = tlvs;
    }
    uint64_t now = tl_loop_now(loop);
    uint32_t left = p->deadline_ms > now ? (uint32_t)(p->deadline_ms - now) : 1;
    tli_end_pending(p, true);
    tli_start_conn(w, li, fd, (struct sockaddr *)&peer, peerlen, &info, left);
}

void tli_start_pending(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t len)
{
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        LOG(w->srv, ERROR, "out of memory: a new connection on %s is closed", w->srv->cfg->listens[li].text);
        tli_drop_fd(w, fd, w->srv->cfg->listens[li].tls);
        return;
    }
    p->w = w;
    p->listener = li;
    memcpy(&p->peer, peer, len);
    p->peerlen = len;
    tl_io_init(&p->io, fd, on_pending_readable, p);
    tl_timer_init(&p->timer, on_pending_timeout, p);
    p->next = w->pendings;
    if (w->pendings)
        w->pendings->prev = p;
    w->pendings = p;
    w->npending++;
    tl_io_set(w->loop, &p->io, TL_READABLE);
    uint64_t timeout = w->gen->cfg->handshake_timeout_ms;
    p->deadline_ms = tl_loop_now(w->loop) + timeout;
    tl_timer_start(w->loop, &p->timer, timeout);
}

/* A proxy listener's peer that is not a balancer we trust: its header would be a forged client
 * address, so the connection goes before anything is read from it. */
void tli_refuse_untrusted(worker *w, int li, int fd, const struct sockaddr *peer)
{
    tl_server *srv = w->srv;
    bump(&w->st.proxy_untrusted, 1);
    if (tl_log_enabled(srv->log, TL_LOG_WARN)) {   /* log-rate bounds a flood of these */
        char addr[64];
        tli_addr_text(peer, addr, sizeof addr);
        LOG(srv, WARN, "closed %s on %s: not a trusted PROXY header source (proxy-from, from=)",
            addr, srv->cfg->listens[li].text);
    }
    tli_drop_fd(w, fd, srv->cfg->listens[li].tls);
}
