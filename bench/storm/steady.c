/*
 * bench/storm/steady.c - the steady client thread: M established connections carrying requests at
 * a fixed rate, open loop, each echo's latency counted from its intended send time.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "storm.h"

static uint64_t intended(const steady *s, uint64_t g)
{
    return s->t0 + g * 1000000000u / s->cfg->rate;
}

static void steady_close_all(steady *s);

static void steady_measured(steady *s)
{
    if (s->phase >= PH_MEASURED)
        return;
    s->phase = PH_MEASURED;
    tl_timer_stop(s->loop, &s->deadline);
    tl_io_stop(s->loop, &s->tio);
    sync_set(s->sync, SYNC_MEASURED);
}

/* Draining ends when every request generated has been answered (or its connection is gone). */
static void steady_check_drained(steady *s)
{
    if (s->phase != PH_DRAINING)
        return;
    for (unsigned i = 0; i < s->cfg->conns; i++) {
        steady_conn *sc = &s->conns[i];
        if (!sc->gone && (sc->in_flight || sc->sent < sc->due))
            return;
    }
    steady_measured(s);
}

/* Request g: its number in it, so an echo of the wrong request (or of garbage) is caught. */
static void make_msg(uint8_t *msg, uint64_t g, size_t size)
{
    memset(msg, 'x', size);
    msg[0] = 'm'; /* never '!': the echo server answers "!stats" and "!peer" itself */
    memcpy(msg + 1, &g, sizeof g);
}

static void steady_send(steady_conn *sc)
{
    steady *s = sc->s;
    if (sc->gone || sc->in_flight || sc->sent >= sc->due || s->phase >= PH_MEASURED)
        return;
    uint64_t g = sc->sent * s->cfg->conns + sc->idx;
    uint8_t msg[MAX_SIZE];
    make_msg(msg, g, s->cfg->size);
    sc->cur_g = g;
    sc->cur_intended = intended(s, g);
    sc->cur_sent = now_ns();
    sc->in_flight = true;
    sc->got = 0;
    sc->sent++;
    if (tl_conn_write(sc->c, msg, s->cfg->size) < 0) {
        s->errors++;
        note(&s->printed, "steady", "write refused on connection %u", sc->idx);
        tl_conn_abort(sc->c);
    }
}

/* Make every request whose intended time has come due on its connection, then sleep until the
 * next one. */
static void steady_tick(steady *s)
{
    uint64_t now = now_ns();
    while (s->phase == PH_RUNNING) {
        uint64_t t = intended(s, s->gen);
        if (t >= s->win_end) {
            s->phase = PH_DRAINING;
            tl_io_stop(s->loop, &s->tio);
            tl_timer_start(s->loop, &s->deadline, (uint64_t)(s->cfg->drain * 1000));
            steady_check_drained(s);
            return;
        }
        if (t > now) {
            struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / 1000000000u),
                                                  .tv_nsec = (long)(t % 1000000000u)}};
            timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &its, NULL);
            return;
        }
        steady_conn *sc = &s->conns[s->gen % s->cfg->conns];
        if (t >= s->win_start) {
            s->win_generated++;
            /* How late this thread noticed the request was due: its own scheduling delay, which
             * no server can make smaller. Per request, so a long sleep weighs as many requests
             * as it delays; and not the lateness of the send, which includes waiting for the
             * previous echo. */
            hist_add(&s->wake, now - t);
        }
        sc->due++;
        s->gen++;
        steady_send(sc);
    }
}

void steady_on_timerfd(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    steady *s = io->data;
    uint64_t expirations;
    if (read(s->tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        note(&s->printed, "steady", "timerfd: %s", strerror(errno));
    steady_tick(s);
}

static void steady_start_schedule(steady *s)
{
    s->phase = PH_RUNNING;
    s->t0 = now_ns();
    s->win_start = s->t0 + (uint64_t)(s->cfg->warmup * 1e9);
    s->win_end = s->win_start + (uint64_t)(s->cfg->duration * 1e9);
    tl_timer_stop(s->loop, &s->deadline);
    tl_io_set(s->loop, &s->tio, TL_READABLE);
    sync_set(s->sync, SYNC_READY);
    steady_tick(s);
}

static void steady_on_handshake(tl_conn *c, bool ok)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    if (!ok)
        return; /* on_close says why */
    if (SSL_session_reused(tl_engine_ssl(tl_conn_engine(c)))) {
        s->errors++;
        note(&s->printed, "steady", "connection %u resumed a session", sc->idx);
    }
    sc->up = true;
    if (++s->up == s->cfg->conns && s->phase == PH_CONNECTING)
        steady_start_schedule(s);
}

static void steady_on_read(tl_conn *c, const uint8_t *data, size_t len)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    if (s->phase == PH_STATS && sc->idx == 0) {
        size_t room = sizeof s->stats - 1 - s->stats_len;
        size_t n = len < room ? len : room;
        memcpy(s->stats + s->stats_len, data, n);
        s->stats_len += n;
        s->stats[s->stats_len] = '\0';
        if (memchr(data, '\n', len) || s->stats_len == sizeof s->stats - 1)
            steady_close_all(s);
        return;
    }
    uint8_t expect[MAX_SIZE];
    make_msg(expect, sc->cur_g, s->cfg->size);
    if (!sc->in_flight || sc->got + len > s->cfg->size ||
        memcmp(data, expect + sc->got, len) != 0) {
        s->errors++;
        note(&s->printed, "steady", "connection %u: unexpected echo (%zu bytes)", sc->idx, len);
        tl_conn_abort(c);
        return;
    }
    sc->got += len;
    if (sc->got < s->cfg->size)
        return;
    uint64_t t = now_ns();
    if (sc->cur_intended >= s->win_start && sc->cur_intended < s->win_end &&
        s->phase < PH_MEASURED) {
        hist_add(&s->lat, t - sc->cur_intended);
        hist_add(&s->uncorr, t - sc->cur_sent);
        s->done++;
    }
    sc->in_flight = false;
    steady_send(sc);
    steady_check_drained(s);
}

static void steady_on_close(tl_conn *c, tl_conn_end how)
{
    steady_conn *sc = tl_conn_data(c);
    steady *s = sc->s;
    sc->c = NULL;
    sc->gone = true;
    s->open--;
    if (s->phase < PH_CLOSING) {
        s->errors++;
        note(&s->printed, "steady", "connection %u ended (%s): %s", sc->idx,
             tl_conn_end_name(how), tl_conn_error(c));
        if (s->phase == PH_CONNECTING) {
            /* One steady connection fewer than asked would change what is measured: give up. */
            tl_timer_stop(s->loop, &s->deadline);
            s->phase = PH_MEASURED;
            sync_set(s->sync, SYNC_FAILED);
        }
        steady_check_drained(s);
    }
    if (s->open == 0 && s->phase == PH_CLOSING)
        tl_loop_stop(s->loop);
}

static const tl_conn_cbs steady_cbs = {.on_handshake = steady_on_handshake,
                                       .on_read = steady_on_read,
                                       .on_close = steady_on_close};

static void steady_close_all(steady *s)
{
    s->phase = PH_CLOSING;
    tl_timer_stop(s->loop, &s->deadline);
    for (unsigned i = 0; i < s->cfg->conns; i++)
        if (s->conns[i].c)
            tl_conn_close(s->conns[i].c); /* bounded by CLOSE_TIMEOUT_MS */
    if (s->open == 0)
        tl_loop_stop(s->loop);
}

void steady_on_deadline(tl_loop *loop, tl_timer *t)
{
    (void)loop;
    steady *s = t->data;
    switch (s->phase) {
    case PH_CONNECTING:
        note(&s->printed, "steady", "only %u of %u connections up after %d s", s->up,
             s->cfg->conns, CONNECT_WAIT_S);
        s->errors++;
        s->phase = PH_MEASURED;
        sync_set(s->sync, SYNC_FAILED);
        break;
    case PH_DRAINING:
        steady_measured(s); /* what is still unanswered is lost */
        break;
    case PH_STATS:
        note(&s->printed, "steady", "no answer to !stats");
        steady_close_all(s);
        break;
    default:
        break;
    }
}

/* Posted by main once the flood is stopped: ask the server for its counters, then close. */
void steady_finish(tl_loop *loop, tl_work *w)
{
    steady *s = w->data;
    if (s->cfg->server_stats && s->conns[0].c && !s->conns[0].in_flight) {
        s->phase = PH_STATS;
        tl_timer_start(loop, &s->deadline, STATS_WAIT_MS);
        tl_conn_write(s->conns[0].c, "!stats\n", 7);
        return;
    }
    steady_close_all(s);
}

void *steady_main(void *arg)
{
    steady *s = arg;
    s->tid = (long)syscall(SYS_gettid);
    /* The measuring thread shares CPU 1 with the flood and with whatever else the machine runs;
     * SCHED_FIFO (root or CAP_SYS_NICE) lets it preempt them at once, so its own scheduling delay
     * stays out of the latencies. It uses a few percent of a CPU, so it starves nobody. */
    if (s->cfg->steady_fifo) {
        struct sched_param sp = {.sched_priority = 1};
        int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (err != 0)
            note(&s->printed, "steady", "SCHED_FIFO refused (%s): running at normal priority",
                 strerror(err));
        else
            s->fifo = true;
    }
    tl_conn_opts o = {.tls = s->cfg->tls,
                      .server_name = "localhost",
                      .handshake_timeout_ms = HS_TIMEOUT_MS,
                      .close_timeout_ms = CLOSE_TIMEOUT_MS,
                      .cbs = &steady_cbs};
    tl_timer_start(s->loop, &s->deadline, CONNECT_WAIT_S * 1000u);
    for (unsigned i = 0; i < s->cfg->conns; i++) {
        steady_conn *sc = &s->conns[i];
        char err[256];
        o.data = sc;
        sc->c = tl_conn_connect(s->loop, (const struct sockaddr *)&s->cfg->addr,
                                sizeof s->cfg->addr, &o, err, sizeof err);
        if (!sc->c) {
            note(&s->printed, "steady", "%s", err);
            s->errors++;
            sc->gone = true;
            s->phase = PH_MEASURED;
            sync_set(s->sync, SYNC_FAILED);
            break;
        }
        s->open++;
    }
    if (tl_loop_run(s->loop) != 0) {
        note(&s->printed, "steady", "loop failed: %s", tl_loop_error(s->loop));
        sync_set(s->sync, SYNC_FAILED);
    }
    return NULL;
}
