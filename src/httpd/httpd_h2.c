/* httpd_h2.c - HTTP/2 connections (RFC 9113) on nghttp2: nghttp2 does the framing, HPACK and the
 * stream states through its callbacks; tlsloop owns the I/O (nghttp2_session_mem_recv on what the
 * connection reads, nghttp2_session_mem_send into its writes), the buffers, the deadlines and the
 * limits (docs/http.md, "HTTP/2"). Requests are answered by the same routing as HTTP/1.1
 * (tli_httpd_route); httpd_h2_stream.c turns the answer into HEADERS and DATA.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd/httpd_int.h"

/* ---- the budgets against floods (token buckets) ----------------------------------------- */

static void refill(h2conn *h2, uint64_t now)
{
    double dt = (double)(now - h2->bucket_ns) / 1e9;
    h2->bucket_ns = now;
    h2->reset_tokens += dt * H2_RESET_RATE;
    if (h2->reset_tokens > H2_RESET_BURST)
        h2->reset_tokens = H2_RESET_BURST;
    h2->flood_tokens += dt * H2_FLOOD_RATE;
    if (h2->flood_tokens > H2_FLOOD_BURST)
        h2->flood_tokens = H2_FLOOD_BURST;
}

/* Spend one token of a bucket; false when it is empty (the connection is to end). */
static bool spend(h2conn *h2, double *tokens)
{
    refill(h2, tl_loop_now_ns(tl_conn_loop(h2->hc->c)));
    if (*tokens < 1)
        return false;
    *tokens -= 1;
    return true;
}

/* End the connection for what the client did: GOAWAY with code, then close once it is out. */
static void fail(h2conn *h2, tl_h2_abuse kind, uint32_t code, const char *why)
{
    if (h2->dead)
        return;
    h2->dead = true;
    hbump(&h2->hc->w->st.h2_abuse[kind], 1);
    TL_LOG(of_conn(h2->hc)->log, TL_LOG_INFO, "HTTP/2: %s: the connection is ended (GOAWAY %s)",
           why, nghttp2_http2_strerror(code));
    nghttp2_session_terminate_session(h2->s, code);
}

/* ---- nghttp2's callbacks ---------------------------------------------------------------- */

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
    (void)s;
    h2conn *h2 = ud;
    if (hd->type == NGHTTP2_HEADERS) {
        h2->block_frames = 0;
        h2->block_bytes = hd->length;
        if (!h2->hdr_t0_ns)
            h2->hdr_t0_ns = tl_loop_now_ns(tl_conn_loop(h2->hc->c));
    } else if (hd->type == NGHTTP2_CONTINUATION) {
        /* CONTINUATION flood: a header block spread over endless frames, each too small to
         * decode into anything, holds the stream open and eats CPU (2024). Counted by frames
         * and by bytes per block. */
        h2->block_bytes += hd->length;
        if (++h2->block_frames > H2_MAX_CONTINUATIONS ||
            h2->block_bytes > 2 * of_conn(h2->hc)->max_header + 16384) {
            fail(h2, TL_H2_ABUSE_CONTINUATION, NGHTTP2_ENHANCE_YOUR_CALM,
                        "a header block over too many CONTINUATION frames");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2conn *h2 = ud;
    h2stream *hs = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    bool flood = false;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        h2->hdr_t0_ns = 0;   /* called once the whole block (CONTINUATIONs too) is in */
        if (!hs)
            break;
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            hs->body_done = true;
        if (hs->too_big && ++h2->bad_blocks > H2_MAX_BAD_BLOCKS) {
            fail(h2, TL_H2_ABUSE_HEADERS, NGHTTP2_ENHANCE_YOUR_CALM,
                        "header lists over max-header-size, again and again");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        tli_h2_request(h2, hs);   /* HEADERS ends with its END_HEADERS (nghttp2 joins them) */
        break;
    case NGHTTP2_DATA:
        if (f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            flood = true;   /* empty DATA frames cost us a frame each and move nothing */
        if (hs && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            hs->body_done = true;
            tli_h2_request(h2, hs);
        }
        break;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
        flood = !(f->hd.flags & NGHTTP2_FLAG_ACK);   /* each one makes us send an ACK */
        break;
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_PRIORITY:
        flood = true;
        break;
    case NGHTTP2_RST_STREAM:
        /* Rapid reset (CVE-2023-44487): streams opened and reset at once make the server start
         * work it never sends, beyond the concurrent-stream limit. Each reset of a stream still
         * in progress spends a token. */
        if (hs && !spend(h2, &h2->reset_tokens)) {
            fail(h2, TL_H2_ABUSE_RESET, NGHTTP2_ENHANCE_YOUR_CALM,
                        "rapid reset: streams reset faster than the limit");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    default:
        break;
    }
    if (flood && !spend(h2, &h2->flood_tokens)) {
        fail(h2, TL_H2_ABUSE_FLOOD, NGHTTP2_ENHANCE_YOUR_CALM,
                    "a flood of control or empty frames");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2conn *h2 = ud;
    if (f->hd.type == NGHTTP2_DATA) {
        /* Answer data earns the client room for the WINDOW_UPDATEs it takes. */
        if (h2->flood_tokens < H2_FLOOD_BURST)
            h2->flood_tokens += 1;
    } else if (f->hd.type == NGHTTP2_RST_STREAM &&
               f->rst_stream.error_code == NGHTTP2_REFUSED_STREAM && !h2->notice_sent) {
        hbump(&h2->hc->w->st.h2_abuse[TL_H2_ABUSE_STREAMS], 1);
    }
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        h2stream *hs = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        /* An answer sent before its request body ended (413): the rest of the body is not
         * wanted (RFC 9113 8.1). */
        if (hs && !hs->body_done)
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    h2conn *h2 = ud;
    h2stream *hs = nghttp2_session_get_stream_user_data(s, id);
    if (hs) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        tli_h2_stream_free(h2, hs, true);
    }
    return 0;
}

static ssize_t send_nothing(nghttp2_session *s, const uint8_t *d, size_t n, int fl, void *ud)
{
    (void)s, (void)d, (void)n, (void)fl, (void)ud;
    return NGHTTP2_ERR_CALLBACK_FAILURE;   /* mem_send only */
}

/* ---- the session ------------------------------------------------------------------------ */

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, send_nothing);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    tli_h2_stream_callbacks(cb);
    return cb;
}

static uint64_t tick_ms(const tl_httpd *h)
{
    uint64_t t = 1000;
    uint64_t all[] = {h->header_timeout_ms, h->body_timeout_ms, h->keepalive_timeout_ms,
                      h->h2_send_timeout_ms};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i] / 4 < t)
            t = all[i] / 4;
    return t < 20 ? 20 : t;
}

static void flush(h2conn *h2);

static void arm(h2conn *h2, uint64_t ms)
{
    if (tl_timer_start(tl_conn_loop(h2->hc->c), &h2->hc->timer, ms) != 0)
        tl_conn_abort(h2->hc->c);   /* no memory for a deadline: do not serve without one */
}

int tli_httpd_h2_start(hconn *hc, const uint8_t *data, size_t len)
{
    tl_httpd *h = of_conn(hc);
    h2conn *h2 = calloc(1, sizeof *h2);
    nghttp2_session_callbacks *cb = h2 ? callbacks() : NULL;
    nghttp2_option *opt = NULL;
    if (!cb || nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(h2);
        TL_LOG(h->log, TL_LOG_ERROR, "out of memory: an HTTP/2 connection is closed");
        close_conn(hc);
        return -1;
    }
    /* nghttp2's own limits stay behind ours, which count what they end (the metrics). */
    nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS + 1);
    nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS);
    nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * H2_RESET_BURST, 2 * H2_RESET_RATE);
    nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
    h2->hc = hc;
    uint64_t now = tl_loop_now_ns(tl_conn_loop(hc->c));
    h2->bucket_ns = h2->progress_ns = h2->idle_ns = now;
    h2->reset_tokens = H2_RESET_BURST;
    h2->flood_tokens = H2_FLOOD_BURST;
    int rc = nghttp2_session_server_new2(&h2->s, cb, h2, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->h2_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->max_header},
    };
    if (rc != 0 ||
        nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        (h->h2_window > 65535 &&
         nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0,
                                               (int32_t)h->h2_window) != 0)) {
        if (rc == 0)
            nghttp2_session_del(h2->s);
        free(h2);
        TL_LOG(h->log, TL_LOG_ERROR, "out of memory: an HTTP/2 connection is closed");
        close_conn(hc);
        return -1;
    }
    hc->h2 = h2;
    hbump(&hc->w->st.h2_conns, 1);
    if (hc->draining)
        tli_httpd_h2_drain(hc);   /* the drain came during the handshake */
    tl_conn_resume_read(hc->c);
    arm(h2, tick_ms(h));
    if (len)
        tli_httpd_h2_read(hc, data, len);
    else
        flush(h2);
    return 0;
}

/* ---- output ----------------------------------------------------------------------------- */

static void end_now(h2conn *h2)
{
    if (h2->closing)
        return;
    h2->closing = true;
    h2->hc->state = H_CLOSING;
    tl_timer_stop(tl_conn_loop(h2->hc->c), &h2->hc->timer);
    tl_conn_close(h2->hc->c);   /* what is queued goes out, then close_notify */
}

/* Nothing more to do on this connection: both sides said GOAWAY, or the peer finished. */
static void check_end(h2conn *h2)
{
    if (h2->closing)
        return;
    if (h2->dead) {
        if (!h2->wblocked)
            end_now(h2);   /* the GOAWAY is out (or queued): close */
        return;
    }
    bool can_write = nghttp2_session_want_write(h2->s);
    bool want = nghttp2_session_want_read(h2->s) || can_write;
    /* After the client's end of stream no WINDOW_UPDATE can come: once nothing can be written
     * within the windows it gave, the streams left would wait forever. */
    bool stuck = h2->hc->eof && !can_write && !h2->wblocked;
    if (!want || stuck || (h2->goaway_sent && h2->nstreams == 0))
        end_now(h2);
}

static void flush(h2conn *h2)
{
    if (h2->closing || h2->flushing)
        return;
    h2->flushing = true;
    hconn *hc = h2->hc;
    uint8_t *buf = hc->w->scratch;
    size_t n = 0;
    int wrc = 0;
    while (!h2->wblocked && wrc >= 0) {
        const uint8_t *p;
        ssize_t k = nghttp2_session_mem_send(h2->s, &p);
        if (k < 0) {
            TL_LOG(of_conn(hc)->log, TL_LOG_WARN, "HTTP/2: %s: the connection is aborted",
                   nghttp2_strerror((int)k));
            h2->flushing = false;
            h2->closing = true;
            hc->state = H_CLOSING;
            tl_conn_abort(hc->c);
            return;
        }
        if (k == 0)
            break;
        /* Frames are gathered into the worker's scratch buffer, so that many small ones leave
         * as one write (one TLS record) rather than one each. */
        if (n + (size_t)k > HTTPD_CHUNK && n) {
            wrc = tl_conn_write(hc->c, buf, n);
            n = 0;
            if (wrc == 1)
                h2->wblocked = true;
        }
        if ((size_t)k > HTTPD_CHUNK) {
            wrc = tl_conn_write(hc->c, p, (size_t)k);
            if (wrc == 1)
                h2->wblocked = true;
        } else {
            memcpy(buf + n, p, (size_t)k);
            n += (size_t)k;
        }
    }
    if (n && wrc >= 0 && tl_conn_write(hc->c, buf, n) == 1)
        h2->wblocked = true;
    if (h2->wblocked)
        tl_conn_pause_read(hc->c);   /* the client reads slower than it asks: wait for it */
    h2->flushing = false;
    check_end(h2);
}

/* ---- the connection's events ------------------------------------------------------------ */

void tli_httpd_h2_read(hconn *hc, const uint8_t *data, size_t len)
{
    h2conn *h2 = hc->h2;
    if (h2->closing)
        return;
    ssize_t rc = nghttp2_session_mem_recv(h2->s, data, len);
    if (rc < 0 && !h2->dead) {
        tl_h2_abuse kind = rc == NGHTTP2_ERR_FLOODED                 ? TL_H2_ABUSE_FLOOD
                           : rc == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? TL_H2_ABUSE_CONTINUATION
                                                                      : TL_H2_ABUSE_PROTOCOL;
        uint32_t code = kind == TL_H2_ABUSE_PROTOCOL ? NGHTTP2_PROTOCOL_ERROR
                                                      : NGHTTP2_ENHANCE_YOUR_CALM;
        char why[128];
        snprintf(why, sizeof why, "the client's input: %s", nghttp2_strerror((int)rc));
        fail(h2, kind, code, why);
    }
    flush(h2);
}

void tli_httpd_h2_writable(hconn *hc)
{
    h2conn *h2 = hc->h2;
    if (h2->closing)
        return;
    h2->wblocked = false;
    h2->progress_ns = tl_loop_now_ns(tl_conn_loop(hc->c));   /* the client is reading */
    tl_conn_resume_read(hc->c);
    for (h2stream *hs = h2->streams; hs; hs = hs->next)
        if (hs->deferred) {
            hs->deferred = false;
            hs->progress_ns = h2->progress_ns;
            nghttp2_session_resume_data(h2->s, hs->id);
        }
    flush(h2);
}

void tli_httpd_h2_eof(hconn *hc)
{
    h2conn *h2 = hc->h2;
    if (!h2->closing)
        check_end(h2);   /* the answers under way finish first */
}

/* Drain (SIGTERM), and reload: GOAWAY with the largest stream id first (no new streams, please),
 * then, a moment later, the real one with the last stream taken; the streams in flight finish,
 * then the connection closes with close_notify. */
void tli_httpd_h2_drain(hconn *hc)
{
    h2conn *h2 = hc->h2;
    if (h2->closing || h2->notice_sent)
        return;
    h2->notice_sent = true;
    nghttp2_submit_shutdown_notice(h2->s);
    h2->goaway_ns = tl_loop_now_ns(tl_conn_loop(hc->c)) + H2_GOAWAY_DELAY_MS * 1000000u;
    arm(h2, H2_GOAWAY_DELAY_MS);
    flush(h2);
}

static void goaway(h2conn *h2)
{
    h2->goaway_sent = true;
    nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->s), NGHTTP2_NO_ERROR,
                          NULL, 0);
}

void tli_httpd_h2_timer(hconn *hc)
{
    h2conn *h2 = hc->h2;
    tl_httpd *h = of_conn(hc);
    if (h2->closing)
        return;
    uint64_t now = tl_loop_now_ns(tl_conn_loop(hc->c));
    const uint64_t ms = 1000000u;
    if (h2->notice_sent && !h2->goaway_sent && now >= h2->goaway_ns)
        goaway(h2);
    uint64_t idle_ms = h2->had_stream ? h->keepalive_timeout_ms : h->header_timeout_ms;
    if (h2->nstreams == 0 && !h2->goaway_sent && now - h2->idle_ns >= idle_ms * ms) {
        goaway(h2);   /* idle: a polite end, no stream is cut */
    } else if (h2->hdr_t0_ns && now - h2->hdr_t0_ns >= h->header_timeout_ms * ms) {
        hbump(&hc->w->st.timeouts, 1);
        fail(h2, TL_H2_ABUSE_PROTOCOL, NGHTTP2_PROTOCOL_ERROR,
                    "a header block did not end within header-timeout");
    } else if (h2->pending && !h2->wblocked &&
               now - h2->progress_ns >= h->h2_send_timeout_ms * ms) {
        /* The client's connection window stays shut: nothing of any answer moves. */
        fail(h2, TL_H2_ABUSE_STALL, NGHTTP2_FLOW_CONTROL_ERROR,
                    "no answer data could move for h2-send-timeout (a shut window)");
    } else {
        for (h2stream *hs = h2->streams; hs; hs = hs->next) {
            if (hs->reset)
                continue;
            /* Only a stream its own window keeps shut: one that waits its turn behind others
             * on a slow connection is not the client's doing. Its window shut when it last
             * sent, so progress_ns says since when. */
            if (hs->left && !hs->deferred &&
                nghttp2_session_get_stream_remote_window_size(h2->s, hs->id) <= 0 &&
                now - hs->progress_ns >= h->h2_send_timeout_ms * ms) {
                hbump(&hc->w->st.h2_abuse[TL_H2_ABUSE_STALL], 1);
                hs->reset = true;
                nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, hs->id, NGHTTP2_CANCEL);
            } else if (!hs->answered && !hs->body_done && h2->hdr_t0_ns == 0 &&
                       now - hs->progress_ns >= h->body_timeout_ms * ms) {
                hbump(&hc->w->st.timeouts, 1);
                hs->reset = true;
                nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, hs->id, NGHTTP2_CANCEL);
            }
        }
    }
    arm(h2, h2->notice_sent && !h2->goaway_sent ? H2_GOAWAY_DELAY_MS : tick_ms(h));
    flush(h2);
}

void tli_httpd_h2_close(hconn *hc)
{
    h2conn *h2 = hc->h2;
    hc->h2 = NULL;
    /* Streams cut short are logged with the bytes they sent, as HTTP/1.1's are. */
    while (h2->streams) {
        h2stream *hs = h2->streams;
        nghttp2_session_set_stream_user_data(h2->s, hs->id, NULL);
        tli_h2_stream_free(h2, hs, true);
    }
    nghttp2_session_del(h2->s);
    free(h2);
}
