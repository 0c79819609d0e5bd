/* server.c - the server's life (tlsloop/server.h): tl_server_new (limits, log, the first
 * generation, sockets, workers, then the user switch), tl_server_run, tl_server_free, and the
 * facts and counters it reports. What runs in between is in server_*.c (server_int.h).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server/server_int.h"

/* ---- creating --------------------------------------------------------------------------- */

static int drop_privileges(const char *user, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        tli_fmt(err, errlen, "user %s: no such user", user);
        return -1;
    }
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid)
            return 0;
        tli_fmt(err, errlen, "user %s: switching user needs root (running as uid %u)", user,
                (unsigned)geteuid());
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        tli_fmt(err, errlen, "user %s: cannot switch to it: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && setuid(0) == 0) {   /* must be impossible now */
        tli_fmt(err, errlen, "user %s: root privileges could be regained; refusing to run", user);
        return -1;
    }
    return 0;
}

/* Open-file limit: raise the soft limit to the hard one; the default connection limit leaves room
 * for listeners, the log and loops' own descriptors. */
static uint64_t default_max_conns(unsigned workers, size_t nlisten)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1000;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t reserve = 64 + (uint64_t)workers * (nlisten + 8);
    return rl.rlim_cur > reserve + 1 ? rl.rlim_cur - reserve : 1;
}

/* Once, not per worker: why the loops run on epoll when io_uring was asked for (every loop asks
 * the same; the first note found is the reason). auto expects it may not get io_uring: info. */
static void warn_io_fallback(tl_server *srv)
{
    const char *note = tl_loop_backend_note(srv->control);
    for (unsigned i = 0; !*note && i < srv->nworkers; i++)
        note = tl_loop_backend_note(srv->workers[i].loop);
    if (!*note)
        return;
    tl_io_backend io = srv->cfg->io;
    if (io == TL_IO_DEFAULT)
        LOG(srv, WARN, "io from TLSLOOP_IO: %s", note);
    else
        tl_log_write(srv->log, io == TL_IO_AUTO ? TL_LOG_INFO : TL_LOG_WARN, "io %s requested; %s",
                     tl_io_backend_name(io), note);
}

tl_server *tl_server_new(const tl_server_config *cfg_in, const tl_server_handler *handler,
                         char *err, size_t errlen)
{
    if (!handler || !handler->cbs) {
        tli_fmt(err, errlen, "tl_server_new: a handler with connection callbacks is required");
        return NULL;
    }
    tl_server *srv = calloc(1, sizeof *srv);
    if (!srv || !(srv->cfg = tli_server_config_replay(cfg_in, err, errlen))) {
        if (!srv)
            tli_fmt(err, errlen, "out of memory");
        free(srv);
        return NULL;
    }
    tl_server_config *cfg = srv->cfg;
    srv->handler = *handler;
    srv->takeover_fd = srv->up_fd = srv->upc_fd = -1;
    if (tli_server_config_check(cfg, err, errlen) != 0) {
        tl_server_config_free(cfg);
        free(srv);
        return NULL;
    }
    pthread_mutex_init(&srv->gen_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    srv->nlisten = cfg->n_listens;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    srv->nworkers = cfg->workers ? (unsigned)cfg->workers : cores > 0 ? (unsigned)cores : 1;
    srv->max_conns = cfg->max_conns ? cfg->max_conns : default_max_conns(srv->nworkers, srv->nlisten);
    srv->max_hs = cfg->max_handshakes ? cfg->max_handshakes : UINT64_MAX;
    const char *log_path = cfg->log_path && strcmp(cfg->log_path, "-") ? cfg->log_path : NULL;
    if (!(srv->log = tl_log_open(log_path, err, errlen)))
        goto fail;
    tli_apply_log_level(srv, cfg);
    tl_log_set_rate(srv->log, (unsigned)cfg->log_rate);
    const char *no_kdf = cfg->tls_kdf == TL_KDF_TLSLOOP ? tl_kdf_unavailable(cfg->tls_kdf) : NULL;
    if (no_kdf)
        LOG(srv, WARN, "tls-kdf tlsloop: %s", no_kdf);
    /* The first generation owns the configuration the server started with (srv->cfg). */
    if ((tli_any_tls(cfg) && !(srv->ring = tli_ring_for(cfg, err, errlen))) ||
        !(srv->gen = tli_make_gen(cfg, srv->ring, err, errlen)))
        goto fail;
    srv->first_gen = tli_gen_ref(srv->gen);
    tli_warn_open_keys(srv, cfg);
    srv->ring_from_file = cfg->ticket_key_file != NULL;
    tli_key_file_seen(srv, cfg->ticket_key_file);
    srv->gen->serial = ++srv->gen_serial;
    if (cfg->handshake_rate &&
        !(srv->rate = tl_rate_new((double)cfg->handshake_rate,
                                  (double)(cfg->handshake_burst ? cfg->handshake_burst : cfg->handshake_rate)))) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->max_per_source &&
        !(srv->per_source = tl_addr_limit_new((unsigned)cfg->max_per_source, (unsigned)cfg->ipv6_prefix))) {
        tli_fmt(err, errlen, "max-per-source: cannot make the table (out of memory)");
        goto fail;
    }
    if (cfg->delegate != TLI_DELEGATE_OFF) {
        unsigned threads = cfg->task_threads ? (unsigned)cfg->task_threads : srv->nworkers;
        if (!(srv->pool = tl_pool_new(threads))) {
            tli_fmt(err, errlen, "delegate-handshakes: cannot start task threads");
            goto fail;
        }
    }
    size_t nfds = (size_t)srv->nworkers * srv->nlisten;
    if (!(srv->fds = malloc(nfds * sizeof *srv->fds)) ||
        !(srv->ports = calloc(srv->nlisten, sizeof *srv->ports)) ||
        !(srv->workers = calloc(srv->nworkers, sizeof *srv->workers))) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nfds; i++)
        srv->fds[i] = -1;
    /* Sockets systemd holds for us, else those of the server we replace, else our own. */
    if (tli_systemd_sockets(srv, err, errlen) != 0 ||
        (!srv->ninherit && tli_takeover(srv, err, errlen) != 0) ||
        tli_bind_all(srv, err, errlen) != 0)
        goto fail;
    if (!(srv->control = tl_loop_new_ex(&(tl_loop_opts){.io = cfg->io}, err, errlen)))
        goto fail;
    if (tli_any_tls(cfg)) {   /* stapling, before any worker takes the generation */
        if (!(srv->ocsp = tli_ocsp_new(srv))) {
            tli_fmt(err, errlen, "out of memory");
            goto fail;
        }
        tli_ocsp_attach(srv->ocsp, srv->gen);
    }
    for (unsigned wi = 0; wi < srv->nworkers; wi++)
        if (tli_init_worker(srv, &srv->workers[wi], (int)wi, err, errlen) != 0)
            goto fail;
    warn_io_fallback(srv);
    srv->stop_work = (tl_work){.done = tli_on_stop_work, .data = srv};
    tl_timer_init(&srv->tick, tli_on_tick, srv);
    tl_timer_init(&srv->rotate, tli_on_rotate, srv);
    tl_timer_init(&srv->grace, tli_on_grace, srv);
    tl_timer_init(&srv->up_timer, tli_on_up_timer, srv);
    tl_timer_init(&srv->keywatch, tli_on_keywatch, srv);
    if (cfg->user && drop_privileges(cfg->user, err, errlen) != 0)
        goto fail;
    return srv;
fail:
    tl_server_free(srv);
    return NULL;
}

/* ---- running ---------------------------------------------------------------------------- */

static void on_usr2(tl_loop *loop, int signo, void *data)
{
    (void)loop;
    (void)signo;
    tl_server *srv = data;
    LOG(srv, INFO, "SIGUSR2 received: starting the new binary");
    tli_upgrade_signal(srv);
}

int tl_server_run(tl_server *srv, char *err, size_t errlen)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    tl_signals_block(sigs, sizeof sigs / sizeof sigs[0]);   /* workers inherit the mask */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (tl_loop_on_signal(srv->control, sigs[i], sigs[i] == SIGUSR2 ? on_usr2 : tli_on_signal,
                              srv) != 0) {
            tli_fmt(err, errlen, "signals: %s", tl_loop_error(srv->control));
            return -1;
        }
    srv->last_tick_ms = tl_loop_now(srv->control);
    tl_timer_start(srv->control, &srv->tick, 1000);
    if (srv->ring)
        tl_timer_start(srv->control, &srv->rotate, tli_rotate_interval(srv->cfg));
    if (srv->ring)
        tl_timer_start(srv->control, &srv->keywatch, TLI_KEY_WATCH_MS);
    bool start_failed = false;
    for (unsigned i = 0; i < srv->nworkers && !start_failed; i++) {
        worker *w = &srv->workers[i];
        int rc = pthread_create(&w->thread, NULL, tli_worker_main, w);
        if (rc == 0) {
            w->started = true;
            srv->nstarted++;
            continue;
        }
        tli_fmt(err, errlen, "cannot start worker %u: %s", i, strerror(rc));
        start_failed = true;
        /* Sockets nobody will accept on must leave the SO_REUSEPORT group now. */
        for (unsigned j = i; j < srv->nworkers; j++)
            for (size_t li = 0; li < srv->nlisten; li++) {
                size_t k = (size_t)j * srv->nlisten + li;
                close(srv->fds[k]);
                srv->fds[k] = -1;
                srv->workers[j].ls[li].lis.io.fd = -1;
            }
        if (srv->nstarted == 0)
            return -1;
        tl_server_stop(srv);   /* drain and join the ones that run */
    }
    char addrs[512] = "";
    for (size_t i = 0, off = 0; i < srv->nlisten && off < sizeof addrs; i++) {
        const tli_listen *L = &srv->cfg->listens[i];
        char a[64];
        tli_bound_text(srv, i, a, sizeof a);
        off += (size_t)snprintf(addrs + off, sizeof addrs - off, "%s%s (%s%s)", i ? ", " : "", a,
                                L->tls ? "tls" : "plain", L->proxy ? ", proxy" : "");
    }
    LOG(srv, INFO, "listening on %s with %u workers, io=%s", addrs, srv->nworkers,
        tli_workers_io(srv));
    /* The workers run: a successor of ours can find us (upgrade-socket: our socket replaces the
     * old server's at the path), and the server we took over from may stop accepting (what it
     * leaves in the queues is ours). */
    char uerr[512];
    if (!start_failed && tli_upgrade_listen(srv, uerr, sizeof uerr) != 0)
        LOG(srv, ERROR, "%s (no takeover through it; SIGUSR2 still works)", uerr);
    if (!start_failed)
        tli_takeover_serving(srv);   /* else it keeps serving: we stop */
    if (!start_failed)
        tli_notify(srv, "READY=1\nMAINPID=%d\nSTATUS=serving %.400s with %u workers",
                   (int)getpid(), addrs, srv->nworkers);
    int rc = tl_loop_run(srv->control);
    if (rc != 0)
        tli_begin_drain(srv);   /* the workers still run: let them finish before they are joined */
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].started) {
            pthread_join(srv->workers[i].thread, NULL);
            srv->workers[i].started = false;
        }
    /* An OCSP fetch still closing (the drain stopped it) ends on the control loop. */
    for (int i = 0; i < 100 && tli_ocsp_busy(srv->ocsp); i++)
        tl_loop_run_once(srv->control, 50);
    tl_timer_stop(srv->control, &srv->tick);
    tl_timer_stop(srv->control, &srv->rotate);
    tl_timer_stop(srv->control, &srv->grace);
    tl_timer_stop(srv->control, &srv->keywatch);
    if (rc != 0) {
        tli_fmt(err, errlen, "control loop: %s", tl_loop_error(srv->control));
        return -1;
    }
    LOG(srv, INFO, "stopped");
    return start_failed ? -1 : 0;
}

void tl_server_free(tl_server *srv)
{
    if (!srv)
        return;
    /* The pool first: its last tasks post their results to loops that must still exist. */
    tl_pool_free(srv->pool);
    srv->pool = NULL;
    tli_upgrade_close(srv);
    for (size_t k = 0; k < srv->ninherit; k++)   /* failed before tli_bind_all took them */
        if (srv->inherit[k].fd >= 0)
            close(srv->inherit[k].fd);
    free(srv->inherit);
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        tli_free_worker(srv, &srv->workers[i]);
    for (size_t i = 0; srv->fds && i < (size_t)srv->nworkers * srv->nlisten; i++)
        if (srv->fds[i] >= 0)
            close(srv->fds[i]);
    free(srv->workers);
    free(srv->fds);
    free(srv->ports);
    tli_ocsp_free(srv->ocsp);
    if (srv->control)
        tl_loop_free(srv->control);
    tl_pool_free(srv->pool);
    tli_gen_unref(srv->gen);
    tl_ticket_ring_free(srv->ring);
    tl_rate_free(srv->rate);
    tl_addr_limit_free(srv->per_source);
    tl_log_free(srv->log);
    if (srv->first_gen)
        tli_gen_unref(srv->first_gen);
    else
        tl_server_config_free(srv->cfg);   /* failed before the first generation took it */
    pthread_mutex_destroy(&srv->gen_lock);
    pthread_mutex_destroy(&srv->reload_lock);
    free(srv);
}

/* ---- facts and counters ----------------------------------------------------------------- */

size_t tl_server_listeners(const tl_server *srv) { return srv->nlisten; }

unsigned tl_server_workers(const tl_server *srv) { return srv->nworkers; }

tl_log *tl_server_log(tl_server *srv) { return srv->log; }

uint16_t tl_server_port(const tl_server *srv, size_t listener)
{
    return listener < srv->nlisten ? srv->ports[listener] : 0;
}

const char *tl_server_health(tl_server *srv, bool readiness)
{
    if (atomic_load(&srv->draining))
        return "draining";
    if (readiness && atomic_load(&srv->conns) >= srv->max_conns)
        return "at max-conns";
    return NULL;
}

bool tl_server_listener_is_tls(const tl_server *srv, size_t listener)
{
    return listener < srv->nlisten && srv->cfg->listens[listener].tls;
}

static uint64_t get(const counter *c) { return atomic_load_explicit(c, memory_order_relaxed); }

static void add_worker_stats(const worker *w, tl_server_stats *o)
{
    const wstats *s = &w->st;
    uint64_t total = get(&s->conns_total), closed = get(&s->conns_closed);
    uint64_t started = get(&s->hs_started), ended = get(&s->hs_ended);
    /* Read without a lock, a gauge may be caught between its two counters. */
    o->conns_open += total >= closed ? total - closed : 0;
    o->handshakes_active += started >= ended ? started - ended : 0;
    o->conns_total += total;
    o->conns_refused_source += get(&s->refused_source);
    o->proxy_invalid += get(&s->proxy_invalid);
    o->proxy_untrusted += get(&s->proxy_untrusted);
    o->accept_pauses += get(&s->accept_pauses);
    o->handshakes_full += get(&s->hs_full);
    o->handshakes_resumed += get(&s->hs_resumed);
    for (int i = 0; i < TL_HS_FAIL_KINDS; i++)
        o->handshakes_failed[i] += get(&s->hs_failed[i]);
    o->handshake_cpu_ns += get(&s->hs_cpu_ns);
    for (int i = 0; i <= TL_END_LOCAL; i++)
        o->ends[i] += get(&s->ends[i]);
    o->bytes_in += get(&s->bytes_in);
    o->bytes_out += get(&s->bytes_out);
    if (w->store) {
        const tli_sstore_stats *t = tli_sstore_stats_of(w->store);
        o->store.lookups += get(&t->lookups);
        o->store.hits += get(&t->hits);
        o->store.misses += get(&t->misses);
        o->store.timeouts += get(&t->timeouts);
        o->store.unavailable += get(&t->unavailable);
        o->store.rejected += get(&t->rejected);
        o->store.stores += get(&t->stores);
        o->store.store_errors += get(&t->store_errors);
        o->store.connects += get(&t->connects);
        o->store.disconnects += get(&t->disconnects);
        o->store.retries += get(&t->retries);
    }
}

void tl_server_get_stats(tl_server *srv, int worker_index, tl_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (worker_index >= 0) {
        if ((unsigned)worker_index < srv->nworkers)
            add_worker_stats(&srv->workers[worker_index], out);
        return;
    }
    for (unsigned i = 0; i < srv->nworkers; i++)
        add_worker_stats(&srv->workers[i], out);
    out->handshake_rate = (double)atomic_load(&srv->rate_milli) / 1000.0;
    out->reloads = atomic_load(&srv->reloads);
    out->reload_failures = atomic_load(&srv->reload_failures);
    out->key_file_reloads = atomic_load(&srv->key_reloads);
    out->key_file_reload_failures = atomic_load(&srv->key_reload_failures);
    pthread_mutex_lock(&srv->gen_lock);
    if (srv->gen && srv->gen->not_after) {
        int64_t left = srv->gen->not_after - (int64_t)time(NULL);
        out->cert_expiry_days = left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
    }
    if (srv->ring)
        tl_ticket_ring_stats(srv->ring, &out->tickets);
    pthread_mutex_unlock(&srv->gen_lock);
}
