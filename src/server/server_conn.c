/* server_conn.c - the connections the server made: their start after accept (or after the PROXY
 * header), the owner callbacks that count handshakes and ends and give slots back, the worker's
 * lists of them, and what tl_server_conn_* tells about one.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/ssl.h>

#include "server/server_int.h"

/* delegate-handshakes auto: delegate while the worker holds a connection established this long,
 * the kind a handshake flood would stall. Short, so connections made during a flood are soon
 * protected (with a second, a storm's first half-second ran inline: p99 24.8 ms, not ~2). */
#define DELEGATE_PROTECT_MS 250

static void link_conn(worker *w, sconn *s)
{
    s->next = w->conns;
    if (w->conns)
        w->conns->prev = s;
    w->conns = s;
    w->nconns++;
}

static void establish(worker *w, sconn *s)
{
    s->established = true;
    s->est_ms = tl_loop_now(w->loop);
    s->est_prev = w->est_tail;
    s->est_next = NULL;
    if (w->est_tail)
        w->est_tail->est_next = s;
    else
        w->est_head = s;
    w->est_tail = s;
}

static void unestablish(worker *w, sconn *s)
{
    if (!s->established)
        return;
    if (s->est_prev)
        s->est_prev->est_next = s->est_next;
    else
        w->est_head = s->est_next;
    if (s->est_next)
        s->est_next->est_prev = s->est_prev;
    else
        w->est_tail = s->est_prev;
    s->established = false;
}

/* The task pool for a new TLS connection's handshake, or NULL to run it on the loop. */
static tl_pool *pool_for(worker *w)
{
    tl_server *srv = w->srv;
    switch (w->gen->cfg->delegate) {
    case TLI_DELEGATE_ON:
        return srv->pool;
    case TLI_DELEGATE_AUTO:
        return w->est_head && tl_loop_now(w->loop) - w->est_head->est_ms >= DELEGATE_PROTECT_MS
                   ? srv->pool
                   : NULL;
    default:
        return NULL;
    }
}

static void unlink_conn(worker *w, sconn *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        w->conns = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nconns--;
}

void tli_maybe_finish(worker *w)
{
    if (w->draining && w->nconns == 0 && w->npending == 0 && w->ls_open == 0)
        tl_loop_stop(w->loop);
}

static tl_hs_fail classify(tl_conn *c, tl_conn_end how)
{
    switch (how) {
    case TL_END_TIMEOUT:
        return TL_HS_FAIL_TIMEOUT;
    case TL_END_CLEAN:
    case TL_END_TRUNCATED:
    case TL_END_RESET:
        return TL_HS_FAIL_CLOSED;
    case TL_END_TLS_ERROR:
        switch (tl_engine_error_kind(tl_conn_engine(c))) {
        case TL_ERR_ALERT:
            return TL_HS_FAIL_ALERT;
        case TL_ERR_VERIFY:
            return TL_HS_FAIL_VERIFY;
        case TL_ERR_PROTOCOL:
            return TL_HS_FAIL_PROTOCOL;
        default:
            return TL_HS_FAIL_OTHER;
        }
    default:
        return TL_HS_FAIL_OTHER;
    }
}

static void owner_handshake(tl_conn *c, bool ok, void *data)
{
    sconn *s = data;
    worker *w = s->w;
    if (s->hs_slot) {
        s->hs_slot = false;
        bump(&w->st.hs_ended, 1);
        tli_release_slots(w->srv, false, true);
    }
    if (!ok) {
        s->hs_failed = true;   /* classified at close, when the reason is known */
        return;
    }
    SSL *ssl = tl_engine_ssl(tl_conn_engine(c));
    bump(SSL_session_reused(ssl) ? &w->st.hs_resumed : &w->st.hs_full, 1);
    if (w->store) {
        tl_session *sess = tl_engine_take_new_session(tl_conn_engine(c));
        if (sess && w->gen->tls)
            tli_sstore_put(w->store, tl_tls_ctx_ticket_ring(w->gen->tls), sess);
        tl_session_free(sess);
    }
    establish(w, s);
}

static void lookup_done(void *arg, const uint8_t *der, size_t len)
{
    tl_conn_session_found(arg, der, len);
}

/* session-store: ask this worker's store; a miss at once when it cannot ask now. */
static bool owner_lookup(tl_conn *c, const uint8_t *id, size_t len, void *data)
{
    sconn *s = data;
    worker *w = s->w;
    return w->store && w->gen->tls &&
           tli_sstore_lookup(w->store, tl_tls_ctx_ticket_ring(w->gen->tls), id, len, lookup_done, c);
}

static void owner_close(tl_conn *c, tl_conn_end how, void *data)
{
    sconn *s = data;
    worker *w = s->w;
    tl_server *srv = w->srv;
    /* owner_handshake ran already for every TLS connection (tlsloop/conn.h promises it before
     * on_close), so the handshake slot is back and hs_failed is final. */
    if (s->hs_failed) {
        tl_hs_fail why = classify(c, how);
        bump(&w->st.hs_failed[why], 1);
        if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
            char addr[64], on[64];
            tli_addr_text((struct sockaddr *)&s->peer, addr, sizeof addr);
            tli_bound_text(srv, s->listener, on, sizeof on);
            const char *msg = tl_conn_error(c);
            LOG(srv, INFO, "handshake failed from %s on %s: %s (%s)", addr, on,
                *msg ? msg : tl_conn_end_name(how),
                tl_hs_fail_name(why));
        }
    }
    tl_conn_stats cs;
    tl_conn_get_stats(c, &cs);
    bump(&w->st.ends[how <= TL_END_LOCAL ? how : TL_END_LOCAL], 1);
    bump(&w->st.bytes_in, cs.bytes_in);
    bump(&w->st.bytes_out, cs.bytes_out);
    bump(&w->st.hs_cpu_ns, cs.handshake_cpu_ns);
    bump(&w->st.conns_closed, 1);
    if (s->source_counted)
        tl_addr_limit_release(srv->per_source, (struct sockaddr *)&s->peer);
    unlink_conn(w, s);
    unestablish(w, s);
    free(s->tlvs);
    free(s);
    tli_release_slots(srv, true, false);
    tli_maybe_finish(w);
}

const tl_conn_owner tli_server_owner = {.on_handshake = owner_handshake, .on_close = owner_close};
const tl_conn_owner tli_server_owner_store = {
    .on_handshake = owner_handshake, .on_close = owner_close, .session_lookup = owner_lookup};

/* Give up on an accepted socket before it became a connection: free its slots. */
void tli_drop_fd(worker *w, int fd, bool tls)
{
    close(fd);
    bump(&w->st.conns_closed, 1);
    tli_release_slots(w->srv, true, tls);
}

/* The socket (and its PROXY information) becomes a connection. Slots are already held.
 * hs_timeout_ms: the handshake deadline left (0: the configured one). */
void tli_start_conn(worker *w, int li, int fd, const struct sockaddr *peer, socklen_t peerlen,
                       const tl_proxy_info *proxy, uint32_t hs_timeout_ms)
{
    tl_server *srv = w->srv;
    bool tls = srv->cfg->listens[li].tls;
    if (srv->per_source && !tl_addr_limit_acquire(srv->per_source, peer)) {
        bump(&w->st.refused_source, 1);
        if (tl_log_enabled(srv->log, TL_LOG_INFO)) {
            char addr[64];
            tli_addr_text(peer, addr, sizeof addr);
            LOG(srv, INFO, "refused %s on %s: %llu connections from this source (max-per-source)",
                addr, srv->cfg->listens[li].text, (unsigned long long)srv->cfg->max_per_source);
        }
        tli_drop_fd(w, fd, tls);
        return;
    }
    sconn *s = calloc(1, sizeof *s);
    if (s && proxy && proxy->tlvs_len && (s->tlvs = malloc(proxy->tlvs_len))) {
        memcpy(s->tlvs, proxy->tlvs, proxy->tlvs_len);
        s->tlvs_len = proxy->tlvs_len;
    }
    if (!s || (proxy && proxy->tlvs_len && !s->tlvs)) {
        LOG(srv, ERROR, "out of memory: a new connection on %s is closed", srv->cfg->listens[li].text);
        if (s)
            free(s);
        if (srv->per_source)
            tl_addr_limit_release(srv->per_source, peer);
        tli_drop_fd(w, fd, tls);
        return;
    }
    s->w = w;
    s->listener = li;
    s->source_counted = srv->per_source != NULL;
    if (peerlen > sizeof s->peer)
        peerlen = sizeof s->peer;   /* accept gives IPv4 or IPv6 here: nothing larger */
    memcpy(&s->peer, peer, peerlen);
    s->peerlen = peerlen;
    s->hs_slot = tls;
    tl_conn_opts opts = w->opts;
    opts.tls = tls ? w->gen->tls : NULL;
    opts.pool = tls ? pool_for(w) : NULL;
    opts.owner_data = s;
    if (hs_timeout_ms)   /* what is left of the deadline the PROXY header already used */
        opts.handshake_timeout_ms = hs_timeout_ms;
    tl_conn *c = tl_conn_accept(w->loop, fd, &opts);   /* closes fd on failure */
    if (!c) {
        LOG(srv, ERROR, "out of memory: a new connection on %s is closed", srv->cfg->listens[li].text);
        if (s->source_counted)
            tl_addr_limit_release(srv->per_source, peer);
        free(s->tlvs);
        free(s);
        bump(&w->st.conns_closed, 1);
        tli_release_slots(srv, true, tls);
        return;
    }
    s->c = c;
    link_conn(w, s);
    if (tls)
        bump(&w->st.hs_started, 1);
    else
        establish(w, s);   /* plain: nothing to wait for */
    if (srv->handler.on_open)
        srv->handler.on_open(c, srv->handler.data);
}

/* ---- what a connection tells ------------------------------------------------------------ */

static const sconn *of(const tl_conn *c)
{
    const tl_conn_owner *o = tl_conn_get_owner(c);
    return o == &tli_server_owner || o == &tli_server_owner_store ? tl_conn_owner_data(c) : NULL;
}

const struct sockaddr *tl_server_conn_peer(const tl_conn *c, socklen_t *len)
{
    const sconn *s = of(c);
    if (len)
        *len = s ? s->peerlen : 0;
    return s ? (const struct sockaddr *)&s->peer : NULL;
}

int tl_server_conn_listener(const tl_conn *c) { return of(c) ? of(c)->listener : -1; }

int tl_server_conn_worker(const tl_conn *c) { return of(c) ? of(c)->w->index : -1; }

const uint8_t *tl_server_conn_proxy_tlvs(const tl_conn *c, size_t *len)
{
    const sconn *s = of(c);
    if (len)
        *len = s ? s->tlvs_len : 0;
    return s ? s->tlvs : NULL;
}

const char *tl_hs_fail_name(tl_hs_fail why)
{
    static const char *const names[TL_HS_FAIL_KINDS] = {"timeout", "closed", "protocol",
                                                         "alert", "verify", "other"};
    return (unsigned)why < TL_HS_FAIL_KINDS ? names[why] : "unknown";
}
