/* proxy_relay.c - the byte relay between a client and its backend, each side's callbacks, and
 * how the end of one side is carried to the other.
 *
 * Backpressure: a write that leaves the receiving side's queue above its high-water mark
 * (tl_conn_write returns 1) pauses reading on the sending side; the receiving side's on_drain
 * resumes it. So each direction holds at most one queue's worth plus one read.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/proxy_int.h"

/* ---- the pair ----------------------------------------------------------------------------- */

/* The pair ends as the first side that did not end cleanly did. */
void tli_proxy_note_end(pair *pr, tl_conn_end how)
{
    if (pr->end == TL_END_NONE || pr->end == TL_END_CLEAN)
        pr->end = how;
}

void tli_proxy_maybe_free(pair *pr)
{
    if (pr->front || pr->back)
        return;
    bump(&pr->w->active, (uint64_t)-1);
    if (pr->back_up) {   /* a pair that never reached a backend is counted as no_backend */
        switch (pr->end) {
        case TL_END_CLEAN:
            bump(&pr->w->clean, 1);
            break;
        case TL_END_TIMEOUT:
            bump(&pr->w->timeout, 1);
            break;
        case TL_END_TRUNCATED:
            bump(&pr->w->truncated, 1);
            break;
        default:
            bump(&pr->w->reset, 1);
            break;
        }
    }
    tl_buf_free(&pr->early);
    free(pr);
}

/* TLS 1.2 has no half-close: a client's close_notify ends both directions. */
static bool front_half_closes(tl_conn *front)
{
    if (!tl_conn_is_tls(front))
        return true;
    tl_engine_info info;
    tl_engine_get_info(tl_conn_engine(front), &info);
    return info.version && strcmp(info.version, "TLSv1.3") == 0;
}

/* Carry the client's end of data to the backend. */
void tli_proxy_front_done(pair *pr)
{
    if (front_half_closes(pr->front)) {
        tl_conn_shutdown_write(pr->back);   /* FIN; the backend may go on answering */
    } else {
        tl_conn_close(pr->back);            /* what is queued goes first, then FIN */
        tl_conn_close(pr->front);
    }
}

/* End the other side as this one ended: a reset becomes a reset (close with a zero linger sends
 * RST), any other failure an abort (no close_notify: the peer sees a truncation), a clean end or
 * a deadline a graceful close (what is queued goes first). */
void tli_proxy_carry_end(tl_conn *other, tl_conn_end how)
{
    if (how == TL_END_CLEAN || how == TL_END_TIMEOUT) {
        tl_conn_close(other);
        return;
    }
    if (how == TL_END_RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(tl_conn_fd(other), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    tl_conn_abort(other);
}

/* ---- the client's side ------------------------------------------------------------------ */

void tli_proxy_front_read(tl_conn *c, const uint8_t *d, size_t n)
{
    pair *pr = tl_conn_data(c);
    if (pr && pr->metrics) {
        tli_proxy_metrics_read(pr, c, d, n);
        return;
    }
    if (!pr || !pr->back)   /* no backend side any more: its on_close ends this side */
        return;
    if (!pr->back_up) {   /* reading is paused already; this was read before the pause */
        if (tl_buf_append(&pr->early, d, n) != 0)
            tl_conn_abort(c);
        return;
    }
    int rc = tl_conn_write(pr->back, d, n);
    if (rc < 0)
        return;   /* the backend is closing: its on_close ends the client's side */
    bump(&pr->w->to_backend, n);
    if (rc == 1)
        tl_conn_pause_read(c);
}

void tli_proxy_front_eof(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    if (!pr)
        return;
    if (pr->metrics) {
        tl_conn_close(c);   /* (after the answer, when there is one) */
        return;
    }
    pr->front_eof = true;
    tli_proxy_note_end(pr, how);
    if (pr->back_up && pr->back)
        tli_proxy_front_done(pr);
    else if (!pr->back)
        tl_conn_close(c);   /* no backend yet (TLS handshake still running) or none left */
}

void tli_proxy_front_drain(tl_conn *c)
{
    pair *pr = tl_conn_data(c);
    if (pr && pr->back)
        tl_conn_resume_read(pr->back);
}

void tli_proxy_front_close(tl_conn *c, tl_conn_end how)
{
    pair *pr = tl_conn_data(c);
    if (!pr)
        return;
    if (pr->metrics) {
        tl_buf_free(&pr->early);
        free(pr);
        return;
    }
    pr->front = NULL;
    TL_LOG(pr->p->log, TL_LOG_DEBUG, "client connection ended: %s%s%s", tl_conn_end_name(how),
           *tl_conn_error(c) ? ": " : "", tl_conn_error(c));
    if (pr->back)
        tli_proxy_carry_end(pr->back, how);
    tli_proxy_note_end(pr, how);
    tli_proxy_maybe_free(pr);
}

/* ---- the backend's side --------------------------------------------------------------------- */

void tli_proxy_back_read(tl_conn *c, const uint8_t *d, size_t n)
{
    pair *pr = tl_conn_data(c);
    if (!pr->front)
        return;
    int rc = tl_conn_write(pr->front, d, n);
    if (rc < 0)
        return;   /* the client's side is closing (TLS 1.2 after its close_notify) */
    bump(&pr->w->to_client, n);
    if (rc == 1)
        tl_conn_pause_read(c);
}

void tli_proxy_back_eof(tl_conn *c, tl_conn_end how)
{
    (void)how;
    pair *pr = tl_conn_data(c);
    pr->back_eof = true;
    if (pr->front)
        tl_conn_shutdown_write(pr->front);   /* close_notify; the client may go on sending */
}

void tli_proxy_back_drain(tl_conn *c)
{
    pair *pr = tl_conn_data(c);
    if (pr->front)
        tl_conn_resume_read(pr->front);
}
