/* proxy_connect.c - a client's arrival and its backend connection: round-robin order, passive
 * health (a failed backend is tried last), sessions towards TLS backends, the PROXY header.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/proxy_int.h"

/* A backend refused, timed out or failed verification: counted, logged, and tried after the
 * others until backend-retry has passed (passive health: clients stop paying for it first). */
static void backend_failed(pair *pr, backend *b, const char *why)
{
    bump(&pr->w->failures, 1);
    uint64_t until = tl_loop_now(tl_conn_loop(pr->front)) + pr->p->retry_ms;
    bool was_up = atomic_exchange(&b->down_until, until) == 0;
    TL_LOG(pr->p->log, TL_LOG_WARN, "backend %s: %s%s", b->name, why,
           was_up ? "; tried after the others for backend-retry" : "");
}

/* The PROXY header for the backend: the client's address (what the server knows: a PROXY
 * header of a balancer in front, else the socket's peer), the address it connected to, and for
 * v2 over TLS the TLS facts (PP2_TYPE_ALPN, AUTHORITY = SNI, and SSL: client flags, verify,
 * VERSION, CIPHER and a client certificate's CN; proxy_pp2.c). Returns the length, or -1 when it
 * could not be made. */
static ssize_t pp_header(pair *pr, uint8_t *buf, size_t cap)
{
    socklen_t plen = 0;
    const struct sockaddr *src = tl_server_conn_peer(pr->front, &plen);
    struct sockaddr_storage dst;
    socklen_t dlen = sizeof dst;
    if (getsockname(tl_conn_fd(pr->front), (struct sockaddr *)&dst, &dlen) != 0 || !src ||
        src->sa_family != dst.ss_family)
        src = NULL;   /* v1 UNKNOWN / v2 LOCAL: the backend uses the connection's addresses */
    if (pr->p->proxy_protocol == 1)
        return tl_proxy_write_v1((char *)buf, cap, src, (struct sockaddr *)&dst);
    tl_proxy_tlv_out tlvs[3];
    size_t n = 0;
    uint8_t ssl[1400];
    tl_engine_info info;
    if (tl_conn_is_tls(pr->front)) {
        tl_engine_get_info(tl_conn_engine(pr->front), &info);
        if (info.alpn[0])
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_ALPN, info.alpn, strlen(info.alpn)};
        if (info.server_name)
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_AUTHORITY, info.server_name,
                                           strlen(info.server_name)};
        size_t len = tli_pp2_ssl_value(tl_engine_ssl(tl_conn_engine(pr->front)), ssl, sizeof ssl);
        if (len)
            tlvs[n++] = (tl_proxy_tlv_out){TL_PP2_SSL, ssl, len};
    }
    return tl_proxy_write_v2(buf, cap, src, (struct sockaddr *)&dst, tlvs, n, false);
}

/* The backend connection is usable: TCP connected, or over TLS the handshake verified. */
static void back_established(pair *pr, tl_conn *back)
{
    pr->back_up = true;
    bump(&pr->w->connects, 1);
    backend *b = &pr->p->backends[pr->bi];
    if (atomic_load_explicit(&b->down_until, memory_order_relaxed) &&
        atomic_exchange(&b->down_until, 0) != 0)
        TL_LOG(pr->p->log, TL_LOG_INFO, "backend %s: answering again", b->name);
    if (!pr->front) {
        tl_conn_close(back);
        return;
    }
    int rc = 0;
    if (pr->p->proxy_protocol) {
        uint8_t hdr[2048];   /* ALPN and SNI up to 255 bytes each, the SSL TLV up to 1400 */
        ssize_t n = pp_header(pr, hdr, sizeof hdr);
        if (n <= 0 || tl_conn_write(back, hdr, (size_t)n) < 0) {
            TL_LOG(pr->p->log, TL_LOG_ERROR, "proxy-protocol: the header could not be made");
            tl_conn_abort(back);   /* back_close carries it to the client */
            return;
        }
    }
    if (tl_buf_len(&pr->early) > 0) {
        size_t n = tl_buf_len(&pr->early);
        rc = tl_conn_write(back, tl_buf_rptr(&pr->early), n);
        bump(&pr->w->to_backend, n);
        tl_buf_free(&pr->early);
        if (rc < 0)
            return;
    }
    if (pr->front_eof)
        /* The client ended while we connected: FIN after what it sent. */
        tli_proxy_front_done(pr);
    else if (rc == 0)
        tl_conn_resume_read(pr->front);   /* else it stays paused until the back drains */
}

/* ---- sessions towards TLS backends ---------------------------------------------------------- */

static tl_session *take_session(pair *pr)
{
    session_stack *st = pr->w->sessions ? &pr->w->sessions[pr->bi] : NULL;
    return st && st->n ? st->s[--st->n] : NULL;
}

/* Push a session (ours now) on the backend's stack; with a full stack the oldest goes. */
static void put_session(pair *pr, tl_session *sess)
{
    session_stack *st = &pr->w->sessions[pr->bi];
    if (st->n == SESSIONS_PER_BACKEND) {
        tl_session_free(st->s[0]);
        memmove(st->s, st->s + 1, (SESSIONS_PER_BACKEND - 1) * sizeof st->s[0]);
        st->n--;
    }
    st->s[st->n++] = sess;
}

/* Keep the newest session the backend connection received: TLS 1.2 at the handshake, TLS 1.3
 * tickets at the end, once they came. */
static void keep_session(pair *pr, tl_conn *back)
{
    tl_session *sess = pr->w->sessions && tl_conn_engine(back)
                           ? tl_engine_get_session(tl_conn_engine(back))
                           : NULL;
    if (sess)
        put_session(pr, sess);
}

void tli_proxy_back_connected(tl_conn *back, bool ok)
{
    if (ok && !tl_conn_is_tls(back))   /* else on_close follows and tries the next backend */
        back_established(tl_conn_data(back), back);
}

void tli_proxy_back_handshake(tl_conn *back, bool ok)
{
    if (!ok)   /* a failed one (verification, say) ends in on_close: the next backend */
        return;
    pair *pr = tl_conn_data(back);
    tl_engine_info info;
    tl_engine_get_info(tl_conn_engine(back), &info);
    if (info.resumed)
        bump(&pr->w->resumed, 1);
    pr->back_tls13 = info.version && !strcmp(info.version, "TLSv1.3");
    if (!pr->back_tls13)
        keep_session(pr, back);   /* TLS 1.2: the session is there now, reusable */
    back_established(pr, back);
}

/* Each backend at most once per client, in round-robin order: first those that have not failed
 * within backend-retry, then the others (so a client is served while any backend answers, and a
 * backend that recovers is found again). */
static void connect_next(pair *pr)
{
    tl_proxy *p = pr->p;
    uint64_t now = tl_loop_now(tl_conn_loop(pr->front));
    while (pr->k < 2 * p->nbackends) {
        size_t k = pr->k++, bi = (pr->first + k) % p->nbackends;
        backend *b = &p->backends[bi];
        bool down = atomic_load_explicit(&b->down_until, memory_order_relaxed) > now;
        if ((pr->tried >> bi & 1) || down != (k >= p->nbackends))
            continue;
        pr->tried |= (uint64_t)1 << bi;
        pr->bi = bi;
        tl_session *sess = take_session(pr);   /* offered once: the engine keeps a copy */
        tl_conn_opts o = {.half_close = true,
                          .tls = p->backend_tls,
                          .server_name = b->verify_name,
                          .session = sess,
                          .handshake_timeout_ms = p->connect_timeout_ms,
                          .cbs = &p->back_cbs,
                          .data = pr};
        char err[200];
        pr->back = tl_conn_connect(tl_conn_loop(pr->front), (const struct sockaddr *)&b->addr,
                                   b->addrlen, &o, err, sizeof err);
        if (!pr->back && sess)
            put_session(pr, sess);   /* never offered: still good */
        else
            tl_session_free(sess);
        if (pr->back) {
            tl_conn_set_defer_writes(pr->back, true);
            return;
        }
        backend_failed(pr, b, err);
    }
    bump(&pr->w->no_backend, 1);
    TL_LOG(p->log, TL_LOG_WARN, "no backend answered (%zu tried): the client's connection is "
           "closed", (size_t)__builtin_popcountll(pr->tried));
    tl_conn_close(pr->front);
}

static void start_backend(pair *pr)
{
    bump(&pr->w->clients, 1);
    pr->first = (size_t)(atomic_fetch_add_explicit(&pr->p->next, 1, memory_order_relaxed) %
                         pr->p->nbackends);
    tl_conn_pause_read(pr->front);   /* until the backend is up */
    connect_next(pr);
}

/* ---- the client's arrival ------------------------------------------------------------------- */

void tli_proxy_front_open(tl_conn *c, void *data)
{
    tl_proxy *p = data;
    int wi = tl_server_conn_worker(c);
    pair *pr = calloc(1, sizeof *pr);
    if (!pr || wi < 0 || (unsigned)wi >= p->nworkers) {
        free(pr);
        TL_LOG(p->log, TL_LOG_ERROR, "out of memory: a new connection is closed");
        tl_conn_set_data(c, NULL);
        tl_conn_abort(c);
        return;
    }
    pr->p = p;
    pr->w = &p->workers[wi];
    pr->front = c;
    if (p->metrics_listener >= 0 && tl_server_conn_listener(c) == p->metrics_listener) {
        pr->metrics = true;
        tl_conn_set_data(c, pr);
        return;
    }
    bump(&pr->w->active, 1);
    tl_conn_set_data(c, pr);
    tl_conn_set_defer_writes(c, true);   /* the sends of one iteration leave together */
    if (!tl_conn_is_tls(c))
        start_backend(pr);
}

/* The server drains: a byte stream has no point at which closing is safe, so transfers are left
 * to finish; the server aborts what is still open at drain-timeout. */
void tli_proxy_front_drain_server(tl_conn *c, void *data)
{
    (void)data;
    pair *pr = tl_conn_data(c);
    if (pr && pr->metrics && !pr->answered)
        tl_conn_close(c);   /* a scraper's idle connection: nothing to finish */
}

void tli_proxy_front_handshake(tl_conn *c, bool ok)
{
    pair *pr = tl_conn_data(c);
    if (pr && ok)
        start_backend(pr);
}

/* ---- the backend connection's end ------------------------------------------------------------ */

/* Before it was up: the next backend. After: the client's side ends as it did. */
void tli_proxy_back_close(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    pr->back = NULL;
    TL_LOG(pr->p->log, TL_LOG_DEBUG, "backend connection ended: %s%s%s", tl_conn_end_name(how),
           *tl_conn_error(c) ? ": " : "", tl_conn_error(c));
    if (!pr->back_up && !pr->front) {   /* the client left while we connected */
        tli_proxy_maybe_free(pr);
        return;
    }
    if (!pr->back_up) {   /* refused or timed out: the next backend, if any */
        backend_failed(pr, &pr->p->backends[pr->bi],
                       how == TL_END_TIMEOUT ? "no answer within connect-timeout"
                                             : tl_conn_error(c));
        connect_next(pr);
        return;
    }
    if (pr->back_tls13)
        keep_session(pr, c);   /* TLS 1.3: the newest ticket that came meanwhile */
    if (pr->front)
        tli_proxy_carry_end(pr->front, how);
    tli_proxy_note_end(pr, how);
    tli_proxy_maybe_free(pr);
}
