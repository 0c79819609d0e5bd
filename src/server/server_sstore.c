/* server_sstore.c - one session store client per worker loop (src/server/sstore_int.h): a plain
 * TCP tl_conn to memcached or Redis, requests pipelined and answered in order, lookups with a
 * deadline, writes not waited for, reconnects with backoff. Nothing here ever blocks the loop or
 * fails a handshake: whatever goes wrong is a miss. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <tlsloop/conn.h>

#include "server/sstore_int.h"
#include "util/tli.h"

/* Single-writer counters that other threads read (the server's stats). */
#define INC(x) atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + 1, \
                                     memory_order_relaxed)

/* Requests in flight at most; beyond, lookups miss at once and writes are dropped (a store that
 * stopped reading must not grow our memory). */
#define MAX_INFLIGHT 256
/* Reconnect backoff: from the first to the last, doubling. */
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 1000
/* A miss is asked once more this much later, when the deadline allows: the instance that made
 * the session writes it after its handshake without waiting, and a client that reconnects to
 * another instance at once can be there first (a few in a hundred on a loaded machine). */
#define RETRY_MS 2

typedef struct req {
    bool get;
    bool retried;                  /* a lookup asked again after a miss */
    bool answered;                 /* a lookup whose answer went out (deadline): drop the reply */
    uint64_t deadline_ms;
    uint64_t due_ms;               /* in the retry queue: when to ask again */
    tli_sstore_cb cb;
    void *arg;
    tl_ticket_ring *ring;          /* a lookup's: to open what comes back (a reference) */
    uint8_t id[32];
    size_t id_len;
} req;

struct tli_sstore {
    tl_loop *loop;
    tli_sstore_addr addr;
    uint32_t timeout_ms;
    tl_log *log;
    tl_conn *conn;                 /* NULL: not connected (or connecting: see connected) */
    bool connected;
    bool closing;                  /* tli_sstore_free */
    bool down_logged;
    uint32_t backoff_ms;
    tl_timer reconnect, deadline;
    req q[MAX_INFLIGHT];           /* a ring: head, count */
    unsigned head, count;
    req rq[MAX_INFLIGHT];          /* misses to ask again (RETRY_MS after they came): rhead, rcount */
    unsigned rhead, rcount;
    tl_timer retry;
    tl_buf in;                     /* replies not yet whole */
    tl_buf out;                    /* a request being made */
    tli_sealer *sealer;
    tli_sstore_stats st;
};

static void slog(tli_sstore *s, tl_log_level level, const char *fmt, const char *detail)
{
    if (s->log)
        tl_log_write(s->log, level, fmt, s->addr.text, detail);
}

/* ---- the queue ------------------------------------------------------------------------------ */

static req *q_at(tli_sstore *s, unsigned i) { return &s->q[(s->head + i) % MAX_INFLIGHT]; }

static void answer(tli_sstore *s, req *r, const uint8_t *der, size_t len)
{
    if (!r->get || r->answered)
        return;
    r->answered = true;
    if (der)
        INC(s->st.hits);
    else
        INC(s->st.misses);
    r->cb(r->arg, der, len);
}

static void q_pop(tli_sstore *s)
{
    req *r = q_at(s, 0);
    tl_ticket_ring_free(r->ring);
    memset(r, 0, sizeof *r);
    s->head = (s->head + 1) % MAX_INFLIGHT;
    s->count--;
}

static req *rq_at(tli_sstore *s, unsigned i) { return &s->rq[(s->rhead + i) % MAX_INFLIGHT]; }

static void rq_pop(tli_sstore *s)
{
    req *r = rq_at(s, 0);
    tl_ticket_ring_free(r->ring);
    memset(r, 0, sizeof *r);
    s->rhead = (s->rhead + 1) % MAX_INFLIGHT;
    s->rcount--;
}

/* The nearest deadline of a lookup still waiting (in each queue they are in order of deadline). */
static void arm_deadline(tli_sstore *s)
{
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < s->count; i++) {
        req *r = q_at(s, i);
        if (r->get && !r->answered) {
            next = r->deadline_ms;
            break;
        }
    }
    for (unsigned i = 0; i < s->rcount; i++) {
        req *r = rq_at(s, i);
        if (!r->answered) {
            next = r->deadline_ms < next ? r->deadline_ms : next;
            break;
        }
    }
    if (next == UINT64_MAX) {
        tl_timer_stop(s->loop, &s->deadline);
        return;
    }
    uint64_t now = tl_loop_now(s->loop);
    tl_timer_start(s->loop, &s->deadline, next > now ? next - now : 0);
}

static void on_deadline(tl_loop *loop, tl_timer *t)
{
    tli_sstore *s = t->data;
    uint64_t now = tl_loop_now(loop);
    for (unsigned i = 0; i < s->count; i++) {
        req *r = q_at(s, i);
        if (r->get && !r->answered && r->deadline_ms <= now) {
            INC(s->st.timeouts);
            answer(s, r, NULL, 0);   /* its reply, if it comes, is read and dropped */
        }
    }
    for (unsigned i = 0; i < s->rcount; i++) {
        req *r = rq_at(s, i);
        if (!r->answered && r->deadline_ms <= now) {
            INC(s->st.timeouts);
            answer(s, r, NULL, 0);   /* not asked again */
        }
    }
    arm_deadline(s);
}

/* Every request fails: lookups are misses now. */
static void fail_all(tli_sstore *s)
{
    while (s->count) {
        answer(s, q_at(s, 0), NULL, 0);
        q_pop(s);
    }
    while (s->rcount) {
        answer(s, rq_at(s, 0), NULL, 0);
        rq_pop(s);
    }
    tl_timer_stop(s->loop, &s->retry);
    tl_buf_consume(&s->in, tl_buf_len(&s->in));
    tl_timer_stop(s->loop, &s->deadline);
}

static bool send_get(tli_sstore *s, req *r);

/* Ask the misses that are due again (or answer them: the store went away, the queue is full). */
static void on_retry(tl_loop *loop, tl_timer *t)
{
    tli_sstore *s = t->data;
    uint64_t now = tl_loop_now(loop);
    while (s->rcount && rq_at(s, 0)->due_ms <= now) {
        req *r = rq_at(s, 0);
        if (!r->answered && !(s->connected && send_get(s, r)))
            answer(s, r, NULL, 0);
        rq_pop(s);   /* sent: its ring reference went with it (send_get cleared r->ring) */
    }
    if (s->rcount)
        tl_timer_start(loop, t, rq_at(s, 0)->due_ms - now);
    arm_deadline(s);
}

/* ---- the connection ------------------------------------------------------------------------- */

static void start_connect(tli_sstore *s);

static void schedule_reconnect(tli_sstore *s)
{
    if (s->closing)
        return;
    tl_timer_start(s->loop, &s->reconnect, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void on_reconnect(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    start_connect(t->data);
}

static void on_connect(tl_conn *c, bool ok)
{
    tli_sstore *s = tl_conn_data(c);
    if (!ok)
        return;   /* on_close follows */
    s->connected = true;
    s->backoff_ms = BACKOFF_FIRST_MS;
    INC(s->st.connects);
    if (s->down_logged)
        slog(s, TL_LOG_INFO, "session store %s: connected again%s", "");
    s->down_logged = false;
}

/* A reply for the request at the head. */
static void on_reply(tli_sstore *s, const tli_reply *rep)
{
    req *r = q_at(s, 0);
    if (!r->get) {
        if (rep->kind != TLI_REPLY_STORED)
            INC(s->st.store_errors);
        return;
    }
    if (!r->answered && rep->kind == TLI_REPLY_MISS && !r->retried &&
        tl_loop_now(s->loop) + RETRY_MS < r->deadline_ms && s->rcount < MAX_INFLIGHT) {
        /* Ask once more in a moment: the ring reference moves to the retry queue. */
        req *again = rq_at(s, s->rcount++);
        *again = *r;
        again->retried = true;
        again->due_ms = tl_loop_now(s->loop) + RETRY_MS;
        r->ring = NULL;
        r->answered = true;   /* this request's part is over */
        INC(s->st.retries);
        if (!tl_timer_active(&s->retry))
            tl_timer_start(s->loop, &s->retry, RETRY_MS);
        return;
    }
    if (r->answered || rep->kind != TLI_REPLY_VALUE) {
        if (rep->kind == TLI_REPLY_ERROR)
            INC(s->st.store_errors);
        answer(s, r, NULL, 0);
        return;
    }
    uint8_t *der = NULL;
    size_t der_len = 0;
    if (tli_open(s->sealer, r->ring, r->id, r->id_len, rep->data, rep->len, &der, &der_len) != 0) {
        INC(s->st.rejected);   /* not ours, its key gone, tampered with */
        answer(s, r, NULL, 0);
        return;
    }
    answer(s, r, der, der_len);
    OPENSSL_cleanse(der, der_len);
    free(der);
}

static void on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    tli_sstore *s = tl_conn_data(c);
    const uint8_t *p = data;
    size_t n = len;
    if (tl_buf_len(&s->in) > 0) {   /* a reply begun before: gather it whole */
        if (tl_buf_append(&s->in, data, len) != 0) {
            tl_conn_abort(c);
            return;
        }
        p = s->in.data + s->in.rpos;
        n = tl_buf_len(&s->in);
    }
    size_t used = 0;
    while (used < n) {
        tli_reply rep;
        ssize_t k = tli_sstore_parse_reply(s->addr.kind, p + used, n - used, &rep);
        if (k == 0)
            break;
        if (k < 0 || s->count == 0) {
            slog(s, TL_LOG_WARN, "session store %s: %s: reconnecting",
                 k < 0 ? "a reply we cannot read" : "a reply nobody asked for");
            tl_conn_abort(c);
            return;
        }
        on_reply(s, &rep);
        q_pop(s);
        used += (size_t)k;
    }
    if (p == data) {
        if (used < n && tl_buf_append(&s->in, p + used, n - used) != 0)
            tl_conn_abort(c);
    } else {
        tl_buf_consume(&s->in, used);
    }
    arm_deadline(s);
}

static void on_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    tl_conn_abort(c);   /* the store went away: on_close reconnects */
}

static void on_close(tl_conn *c, tl_conn_end how)
{
    (void)how;
    tli_sstore *s = tl_conn_data(c);
    bool was = s->connected;
    s->conn = NULL;
    s->connected = false;
    fail_all(s);
    tl_buf_release(&s->in);
    if (s->closing)
        return;
    if (was)
        INC(s->st.disconnects);
    if (!s->down_logged) {
        const char *why = tl_conn_error(c);
        slog(s, TL_LOG_WARN, "session store %s is unavailable (%s): TLS 1.2 sessions without "
             "tickets resume only where they began until it is back", why && *why ? why : "closed");
        s->down_logged = true;
    }
    schedule_reconnect(s);
}

static const tl_conn_cbs CBS = {
    .on_connect = on_connect, .on_read = on_read, .on_eof = on_eof, .on_close = on_close,
};

static void start_connect(tli_sstore *s)
{
    if (s->conn || s->closing)
        return;
    tl_conn_opts o = {.cbs = &CBS, .data = s, .handshake_timeout_ms = CONNECT_TIMEOUT_MS,
                      .close_timeout_ms = 100};
    char err[256];
    s->conn = tl_conn_connect(s->loop, (const struct sockaddr *)&s->addr.addr, s->addr.addrlen, &o,
                              err, sizeof err);
    if (!s->conn) {
        if (!s->down_logged)
            slog(s, TL_LOG_WARN, "session store %s: %s", err);
        s->down_logged = true;
        schedule_reconnect(s);
    }
}

/* ---- the API ------------------------------------------------------------------------------- */

tli_sstore *tli_sstore_new(tl_loop *loop, const tli_sstore_addr *addr, uint32_t timeout_ms,
                           tl_log *log)
{
    tli_sstore *s = calloc(1, sizeof *s);
    if (!s || !(s->sealer = tli_sealer_new())) {
        free(s);
        return NULL;
    }
    s->loop = loop;
    s->addr = *addr;
    s->timeout_ms = timeout_ms ? timeout_ms : 1;
    s->log = log;
    s->backoff_ms = BACKOFF_FIRST_MS;
    tl_timer_init(&s->reconnect, on_reconnect, s);
    tl_timer_init(&s->deadline, on_deadline, s);
    tl_timer_init(&s->retry, on_retry, s);
    return s;
}

void tli_sstore_start(tli_sstore *s)
{
    start_connect(s);
}

void tli_sstore_free(tli_sstore *s)
{
    if (!s)
        return;
    s->closing = true;
    tl_timer_stop(s->loop, &s->reconnect);
    tl_timer_stop(s->loop, &s->deadline);
    tl_timer_stop(s->loop, &s->retry);
    if (s->conn)
        tl_conn_abort(s->conn);
    for (int spins = 0; s->conn && spins < 100; spins++)
        tl_loop_run_once(s->loop, 10);   /* on_close comes from the loop */
    fail_all(s);
    tl_buf_free(&s->in);
    tl_buf_free(&s->out);
    tli_sealer_free(s->sealer);
    free(s);
}

bool tli_sstore_connected(const tli_sstore *s) { return s->connected; }
const tli_sstore_stats *tli_sstore_stats_of(const tli_sstore *s) { return &s->st; }

/* Send the request made in s->out, queued as r. false when it could not be. */
static bool send_req(tli_sstore *s, const req *r)
{
    bool ok = tl_conn_write(s->conn, s->out.data + s->out.rpos, tl_buf_len(&s->out)) >= 0;
    tl_buf_consume(&s->out, tl_buf_len(&s->out));
    if (!ok)
        return false;
    *q_at(s, s->count) = *r;
    s->count++;
    return true;
}

/* Send a GET for r (its ring reference moves into the queue: r->ring is cleared). */
static bool send_get(tli_sstore *s, req *r)
{
    if (s->count == MAX_INFLIGHT)
        return false;
    char key[TLI_SSTORE_KEY_MAX];
    tli_sstore_key(r->id, r->id_len, key);
    if (tli_sstore_req_get(&s->out, s->addr.kind, key) != 0) {
        tl_buf_consume(&s->out, tl_buf_len(&s->out));
        return false;
    }
    if (!send_req(s, r))
        return false;
    r->ring = NULL;
    if (!tl_timer_active(&s->deadline))
        arm_deadline(s);
    return true;
}

bool tli_sstore_lookup(tli_sstore *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
                       tli_sstore_cb cb, void *arg)
{
    INC(s->st.lookups);
    if (!s->connected || s->count == MAX_INFLIGHT || id_len > 32 || !ring) {
        INC(s->st.unavailable);
        INC(s->st.misses);
        return false;
    }
    req r = {.get = true, .deadline_ms = tl_loop_now(s->loop) + s->timeout_ms, .cb = cb,
             .arg = arg, .id_len = id_len, .ring = tl_ticket_ring_ref(ring)};
    memcpy(r.id, id, id_len);
    if (!send_get(s, &r)) {
        tl_ticket_ring_free(r.ring);
        INC(s->st.unavailable);
        INC(s->st.misses);
        return false;
    }
    return true;
}

void tli_sstore_put(tli_sstore *s, tl_ticket_ring *ring, tl_session *sess)
{
    if (!s->connected || s->count == MAX_INFLIGHT || !ring) {
        INC(s->st.store_errors);
        return;
    }
    unsigned id_len;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);
    int n = i2d_SSL_SESSION(sess, NULL);
    if (id_len == 0 || id_len > 32 || n <= 0)
        return;
    uint8_t *der = malloc((size_t)n), *p = der, *entry = NULL;
    size_t entry_len = 0;
    bool ok = der && i2d_SSL_SESSION(sess, &p) == n &&
              tli_seal(s->sealer, ring, id, id_len, der, (size_t)n, &entry, &entry_len) == 0;
    if (der) {
        OPENSSL_cleanse(der, (size_t)n);
        free(der);
    }
    /* It lives as long as OpenSSL would keep it: its timeout from when it was made. */
    long left = (long)SSL_SESSION_get_timeout(sess) - ((long)time(NULL) - (long)SSL_SESSION_get_time(sess));
    char key[TLI_SSTORE_KEY_MAX];
    tli_sstore_key(id, id_len, key);
    req r = {.get = false};
    ok = ok && left > 0 &&
         tli_sstore_req_set(&s->out, s->addr.kind, key, entry, entry_len, (unsigned)left) == 0 &&
         send_req(s, &r);
    tl_buf_consume(&s->out, tl_buf_len(&s->out));
    free(entry);
    if (ok)
        INC(s->st.stores);
    else
        INC(s->st.store_errors);
}
