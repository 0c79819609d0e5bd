/*
 * tests/support/conn_world.h - connections over real loopback sockets for unit tests: one loop, one
 * listener, a client and a server side with counters, on TLS or plain TCP (test_conn_*.c).
 *
 * cw_new() makes the loop and a listener on an ephemeral loopback port; cw_connect() opens a
 * client connection to it; every connection the listener accepts becomes the server side. The
 * callbacks count into the side's cw_side and record the order of events in its log; the server
 * echoes when echo is set, or a test's read hook takes the data. cw_run_until() runs the loop
 * until a condition holds or the time is up. One world at a time (cw_cur, for callbacks).
 */
#ifndef TLSLOOP_CONN_WORLD_H
#define TLSLOOP_CONN_WORLD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tlsloop/buf.h>
#include <tlsloop/conn.h>
#include <tlsloop/loop.h>
#include <tlsloop/tls_ctx.h>

typedef struct cw_side {
    tl_buf got;               /* application bytes received */
    int handshakes_ok, handshakes_failed, eofs, closes, drains, connects;
    tl_conn_end eof_how, end_how;
    char error[200];
    tl_conn *conn;            /* the last connection of this side */
    tl_conn_stats stats;
    char log[32];             /* callbacks in order: A/a app handshake ok/failed, C app close,
                                 H/h owner handshake ok/failed, O owner close, X wrong data */
} cw_side;

typedef struct cw_world cw_world;
typedef void (*cw_read_hook)(cw_world *w, tl_conn *c, const uint8_t *d, size_t n);

struct cw_world {
    tl_loop *loop;
    int lfd;
    tl_io lio;
    struct sockaddr_in addr;
    tl_conn_opts sopts, copts;
    tl_conn_cbs scbs, ccbs;
    cw_side s, c;
    cw_read_hook on_server_read, on_client_read;
    bool echo;                /* the server writes back what it reads */
    int server_conns_open;
    int client_conns_open;
    void *user;
};

extern cw_world *cw_cur; /* the test's world, for callbacks */

/* A world with these configurations (NULL: plain TCP on that side); NULL if it cannot be made. */
cw_world *cw_new(tl_tls_ctx *sctx, tl_tls_ctx *cctx);
/* A client connection to the world's listener (NULL, with the reason printed, on failure). */
tl_conn *cw_connect(cw_world *w);
/* Run the loop until cond(w) or about `ms` milliseconds pass. Returns whether cond held. */
bool cw_run_until(cw_world *w, bool (*cond)(cw_world *), int ms);
/* End every connection, let them free themselves, then free the world. */
void cw_free(cw_world *w);

/* Append `what` to the connection's side's log. */
void cw_log_event(tl_conn *c, char what);
/* The default callbacks, for a test's own callbacks that do more. */
void cw_cb_eof(tl_conn *c, tl_conn_end how);
void cw_cb_close(tl_conn *c, tl_conn_end how);

/* Conditions for cw_run_until. */
bool cw_both_closed(cw_world *w);
bool cw_handshaken(cw_world *w);    /* both sides' handshakes succeeded */
bool cw_client_open(cw_world *w);   /* connected, and the server accepted */
bool cw_server_closed(cw_world *w);
bool cw_server_accepted(cw_world *w);
bool cw_client_closed(cw_world *w);
/* The client got at least cw_echo_target bytes. */
extern size_t cw_echo_target;
bool cw_echo_back(cw_world *w);

/* A producer writes `total` bytes of tp_pattern in 32 KiB chunks until the write queue is over
 * its high-water mark, and goes on from on_drain (cw_drain_more on the server side). */
typedef struct cw_producer {
    size_t total, sent, max_queued;
    uint8_t chunk[32768];
    bool paused_by_queue;
} cw_producer;

extern cw_producer cw_prod;
void cw_produce(tl_conn *c, cw_producer *p);
void cw_drain_more(tl_conn *c);             /* on_drain: counts, then cw_produce(&cw_prod) */
bool cw_got_all_prod(cw_world *w);          /* the client got cw_prod.total bytes */
/* A client read hook that pauses reading after every chunk (a timer of the test resumes it). */
void cw_slow_reader(cw_world *w, tl_conn *c, const uint8_t *d, size_t n);

#endif /* TLSLOOP_CONN_WORLD_H */
