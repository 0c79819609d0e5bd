/*
 * conn_read.c - reading: the type's bytes to on_read within a fairness budget, the peer's end of
 * data, the KeyUpdate rate cap, pausing and resuming.
 */
#include "conn/conn_int.h"

/* ---- reading --------------------------------------------------------------------------------- */

/* A stream's bytes in flight are the loop's (staged), not the queue's or the engine's. */
static void maybe_release(tl_conn *c)
{
    if (tli_conn_unwritten(c) == 0) {
        tl_buf_release(&c->wq);
        c->type->release(c);
    }
}

static void peer_eof(tl_conn *c, tl_conn_end how)
{
    c->eof = true;
    c->eof_how = how;
    if (c->state == ST_OPEN) {
        if (c->cbs && c->cbs->on_eof)
            c->cbs->on_eof(c, how);
        /* Answer with our close_notify, unless the application still writes (half-close); when
         * our side was already shut, both are done. */
        if (c->state == ST_OPEN && (!c->half_close || c->fin_sent))
            tl_conn_close(c);
    }
    if ((c->state == ST_CLOSING || c->state == ST_OPEN) && c->fin_sent)
        tli_conn_finish(c, how);
}

/* The peer's KeyUpdates, counted in one-second windows, each opening with the first KeyUpdate
 * after the last one closed. Each costs us key derivations and maybe an answer: a peer sending
 * them by the hundred per second is spending our CPU on purpose (pitfall 26). */
static bool key_updates_ok(tl_conn *c, uint32_t count)
{
    uint32_t now = tli_conn_now_ms(c);
    if (now - c->ku_window_ms >= KEY_UPDATE_WINDOW_MS) {
        c->ku_window_ms = now;
        c->ku_base = c->ku_seen; /* the new ones count in the new window */
    }
    c->ku_seen = count;
    if (count - c->ku_base <= c->ku_limit)
        return true;
    tli_conn_set_error(c, "peer sent too many KeyUpdates");
    tli_conn_finish(c, TL_END_TLS_ERROR);
    return false;
}

void tli_conn_do_read(tl_conn *c)
{
    uint8_t *buf = tli_conn_scratch();
    size_t budget = TL_CONN_READ_BUDGET;
    for (;;) {
        bool deliver = c->state == ST_OPEN;
        if (!deliver && c->state != ST_CLOSING)
            return;
        if (c->eof || (deliver && c->read_paused))
            return;
        if (budget == 0) {
            /* our turn is over; data TLS holds comes next iteration */
            tli_conn_schedule(c, ACT_READ);
            return;
        }
        size_t want = budget < c->read_chunk ? budget : c->read_chunk;
        tl_result r = c->type->read(c, buf, want);
        uint32_t key_updates = c->type->key_updates(c);
        if (key_updates != c->ku_seen && !key_updates_ok(c, key_updates))
            return; /* dropped: what this read produced goes nowhere */
        budget -= r.produced < budget ? r.produced : budget;
        if (r.produced > 0 && !deliver)
            c->no_linger = false;   /* the peer goes on sending after all: let it finish */
        if (r.produced > 0 && deliver) {
            c->bytes_in += r.produced;
            if (c->cbs && c->cbs->on_read)
                c->cbs->on_read(c, buf, r.produced);
        }
        switch (r.status) {
        case TL_OK:
            continue;
        case TL_WANT_INPUT:
            maybe_release(c);
            return;
        case TL_WANT_OUTPUT:
            return; /* output first; interest says so */
        case TL_CLOSED:
            peer_eof(c, TL_END_CLEAN);
            return;
        case TL_TRUNCATED:
            peer_eof(c, TL_END_TRUNCATED);
            return;
        default:
            if (c->state != ST_DEAD)
                tli_conn_fail(c, "recv");
            return;
        }
    }
}

void tl_conn_pause_read(tl_conn *c)
{
    c->read_paused = true;
    /* No readiness events while paused: whether the socket is empty is unknown from now on
     * (a close without linger must not trust an old short read). */
    c->rx_dry = false;
    if (c->state != ST_DEAD)
        tli_conn_update_interest(c);
}

void tl_conn_resume_read(tl_conn *c)
{
    if (!c->read_paused)
        return;
    c->read_paused = false;
    if (c->state == ST_DEAD)
        return;
    tli_conn_update_interest(c);
    /* what TLS already decrypted gets no socket event (pitfall 1) */
    tli_conn_schedule(c, ACT_READ);
}
