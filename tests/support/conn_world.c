/* tests/support/conn_world.c - see conn_world.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_world.h"
#include "tls_pair.h"

cw_world *cw_cur;

static cw_side *side_of(tl_conn *c) { return tl_conn_data(c); }

void cw_log_event(tl_conn *c, char what)
{
    cw_side *s = side_of(c);
    size_t n = strlen(s->log);
    if (n + 1 < sizeof s->log) {
        s->log[n] = what;
        s->log[n + 1] = '\0';
    }
}

static void cb_handshake(tl_conn *c, bool ok)
{
    cw_side *s = side_of(c);
    cw_log_event(c, ok ? 'A' : 'a');
    if (ok)
        s->handshakes_ok++;
    else
        s->handshakes_failed++;
}

static void cb_read(tl_conn *c, const uint8_t *d, size_t n)
{
    cw_side *s = side_of(c);
    tl_buf_append(&s->got, d, n);
    bool server = s == &cw_cur->s;
    cw_read_hook h = server ? cw_cur->on_server_read : cw_cur->on_client_read;
    if (h)
        h(cw_cur, c, d, n);
    else if (server && cw_cur->echo)
        tl_conn_write(c, d, n);
}

void cw_cb_eof(tl_conn *c, tl_conn_end how)
{
    cw_side *s = side_of(c);
    s->eofs++;
    s->eof_how = how;
}

static void cb_drain(tl_conn *c) { side_of(c)->drains++; }

void cw_cb_close(tl_conn *c, tl_conn_end how)
{
    cw_side *s = side_of(c);
    cw_log_event(c, 'C');
    s->closes++;
    s->end_how = how;
    snprintf(s->error, sizeof s->error, "%s", tl_conn_error(c));
    tl_conn_get_stats(c, &s->stats);
    if (s == &cw_cur->s)
        cw_cur->server_conns_open--;
    else
        cw_cur->client_conns_open--;
    if (s->conn == c)
        s->conn = NULL;
}

static void cb_connect(tl_conn *c, bool ok)
{
    if (ok)
        side_of(c)->connects++;
}

static void on_accept(tl_loop *loop, tl_io *io, unsigned ev)
{
    (void)ev;
    cw_world *w = io->data;
    for (int i = 0; i < TL_ACCEPTS_PER_WAKEUP; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        w->sopts.data = &w->s;
        tl_conn *c = tl_conn_accept(loop, fd, &w->sopts);
        if (c) {
            w->s.conn = c;
            w->server_conns_open++;
        }
    }
}

cw_world *cw_new(tl_tls_ctx *sctx, tl_tls_ctx *cctx)
{
    cw_world *w = calloc(1, sizeof *w);
    char err[160];
    w->loop = tl_loop_new(err, sizeof err);
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    w->addr.sin_family = AF_INET;
    w->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof w->addr;
    if (!w->loop || bind(w->lfd, (struct sockaddr *)&w->addr, len) != 0 ||
        listen(w->lfd, 1024) != 0 || getsockname(w->lfd, (struct sockaddr *)&w->addr, &len) != 0)
        return NULL;
    tl_io_init(&w->lio, w->lfd, on_accept, w);
    tl_io_set(w->loop, &w->lio, TL_READABLE);
    w->scbs = (tl_conn_cbs){cb_handshake, cb_read, cw_cb_eof, cb_drain, cw_cb_close, cb_connect};
    w->ccbs = w->scbs;
    w->sopts = (tl_conn_opts){.tls = sctx, .cbs = &w->scbs, .data = &w->s};
    w->copts = (tl_conn_opts){.tls = cctx, .server_name = "localhost", .cbs = &w->ccbs,
                              .data = &w->c};
    cw_cur = w;
    return w;
}

tl_conn *cw_connect(cw_world *w)
{
    char err[160];
    tl_conn *c = tl_conn_connect(w->loop, (struct sockaddr *)&w->addr, sizeof w->addr, &w->copts,
                                 err, sizeof err);
    if (!c)
        fprintf(stderr, "  connect: %s\n", err);
    else {
        w->c.conn = c;
        w->client_conns_open++;
    }
    return c;
}

bool cw_run_until(cw_world *w, bool (*cond)(cw_world *), int ms)
{
    tl_loop_update_time(w->loop);
    uint64_t end = tl_loop_now(w->loop) + (uint64_t)ms;
    while (!cond(w)) {
        if (tl_loop_now(w->loop) >= end)
            return false;
        tl_loop_run_once(w->loop, 20);
    }
    return true;
}

void cw_free(cw_world *w)
{
    /* Let every connection end and free itself. */
    if (w->s.conn)
        tl_conn_abort(w->s.conn);
    if (w->c.conn)
        tl_conn_abort(w->c.conn);
    for (int i = 0; i < 20; i++)
        tl_loop_run_once(w->loop, 5);
    tl_io_stop(w->loop, &w->lio);
    close(w->lfd);
    tl_buf_free(&w->s.got);
    tl_buf_free(&w->c.got);
    tl_loop_free(w->loop);
    free(w);
    cw_cur = NULL;
}

bool cw_both_closed(cw_world *w) { return w->s.closes > 0 && w->c.closes > 0; }
bool cw_handshaken(cw_world *w) { return w->s.handshakes_ok && w->c.handshakes_ok; }
bool cw_client_open(cw_world *w) { return w->c.connects > 0 && w->s.conn != NULL; }
bool cw_server_closed(cw_world *w) { return w->s.closes > 0; }
bool cw_server_accepted(cw_world *w) { return w->s.conn != NULL; }
bool cw_client_closed(cw_world *w) { return w->c.closes > 0; }

size_t cw_echo_target;
bool cw_echo_back(cw_world *w) { return tl_buf_len(&w->c.got) >= cw_echo_target; }

/* ---- a producer that waits for on_drain ---- */

cw_producer cw_prod;

void cw_produce(tl_conn *c, cw_producer *p)
{
    while (p->sent < p->total) {
        size_t n = p->total - p->sent < sizeof p->chunk ? p->total - p->sent : sizeof p->chunk;
        tp_pattern(p->chunk, n, (unsigned)(p->sent / sizeof p->chunk));
        int rc = tl_conn_write(c, p->chunk, n);
        p->sent += n;
        size_t q = tl_conn_write_queued(c);
        if (q > p->max_queued)
            p->max_queued = q;
        if (rc != 0) {
            p->paused_by_queue = rc == 1;
            return; /* wait for on_drain */
        }
    }
}

void cw_drain_more(tl_conn *c)
{
    cw_cur->s.drains++;
    cw_produce(c, &cw_prod);
}

bool cw_got_all_prod(cw_world *w) { return tl_buf_len(&w->c.got) >= cw_prod.total; }

void cw_slow_reader(cw_world *w, tl_conn *c, const uint8_t *d, size_t n)
{
    (void)w;
    (void)d;
    (void)n;
    tl_conn_pause_read(c); /* take a break after every chunk: a timer resumes */
}
