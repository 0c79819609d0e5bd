/*
 * test_engine_task.c - delegated tasks: the CPU-heavy handshake steps stop at OpenSSL's pause
 * points, run on another thread that owns the engine meanwhile, and the owner goes on.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "support/tls_pair.h"
#include "test.h"

static void delegated_pair(tp_pair *p, tl_tls_ctx *cctx, tl_tls_ctx *sctx, bool thread)
{
    tl_engine_opts co = {.server_name = "localhost", .flags = TL_ENGINE_DELEGATE_TASKS};
    tl_engine_opts so = {.flags = TL_ENGINE_DELEGATE_TASKS};
    tp_pair_init(p, cctx, sctx, &co, &so);
    p->c.task_thread = p->s.task_thread = thread;
}

static void tasks_on_thread(int version)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.rsa, version, version), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    delegated_pair(&p, cctx, sctx, true);
    REQUIRE(tp_handshake(&p.c, &p.s, 10) == 0);
    CHECK_EQ_INT(p.s.tasks_run, 1);
    CHECK_EQ_INT(p.c.tasks_run, 1);
    CHECK(tp_send(&p.c, &p.s, "hello", 5, 10) == 0);
    CHECK(tp_send(&p.s, &p.c, "world", 5, 10) == 0);
    tl_engine_info ci;
    tl_engine_get_info(p.c.e, &ci);
    CHECK_EQ_INT(ci.verify_result, 0);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

TEST(tasks_tls13_on_thread) { tasks_on_thread(TL_TLS1_3); }
TEST(tasks_tls12_on_thread) { tasks_on_thread(TL_TLS1_2); }

/* The exact statuses: the ClientHello is taken, then every call answers NEED_TASK without
 * touching anything until the task ran; the task's output is pending, never lost. */
TEST(task_statuses)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair p;
    delegated_pair(&p, cctx, sctx, false);
    uint8_t net[20000], buf[100];
    tl_result r = tl_engine_wrap(p.c.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT); /* building a ClientHello is not a task */
    size_t ch = r.produced;
    r = tl_engine_unwrap(p.s.e, net, ch, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_NEED_TASK);
    CHECK_EQ_INT(r.hs, TL_HS_NEED_TASK);
    CHECK_EQ_INT(r.consumed, ch);
    CHECK_EQ_INT(tl_engine_pending_output(p.s.e), 0); /* nothing of the flight was made yet */
    r = tl_engine_unwrap(p.s.e, "x", 1, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_NEED_TASK);
    CHECK_EQ_INT(r.consumed, 0);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_NEED_TASK);
    CHECK_EQ_INT(r.produced, 0);
    CHECK_EQ_INT(tl_engine_handshake_status(p.s.e), TL_HS_NEED_TASK);
    CHECK_EQ_INT(tl_engine_run_task(p.s.e), TL_OK);
    CHECK_EQ_INT(tl_engine_handshake_status(p.s.e), TL_HS_NEED_WRAP);
    CHECK(tl_engine_pending_output(p.s.e) > 0);
    r = tl_engine_wrap(p.s.e, NULL, 0, net, sizeof net);
    CHECK_EQ_INT(r.status, TL_WANT_INPUT);
    size_t flight = r.produced;
    /* The client pauses before verifying the server. */
    r = tl_engine_unwrap(p.c.e, net, flight, buf, sizeof buf);
    CHECK_EQ_INT(r.status, TL_NEED_TASK);
    CHECK(!tl_engine_handshake_done(p.c.e));
    CHECK_EQ_INT(tl_engine_run_task(p.c.e), TL_OK);
    /* Running it again is a harmless no-op. */
    CHECK_EQ_INT(tl_engine_run_task(p.c.e), TL_OK);
    CHECK(tl_engine_handshake_done(p.c.e));
    REQUIRE(tp_handshake(&p.c, &p.s, 5) == 0);
    CHECK(tp_send(&p.c, &p.s, "ok", 2, 5) == 0);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A HelloRetryRequest means a second ClientHello and so a second task. */
TEST(task_after_hello_retry)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    REQUIRE(tl_tls_ctx_set_groups(sctx, "P-256") == 0);
    REQUIRE(tl_tls_ctx_set_groups(cctx, "X25519:P-256") == 0); /* key share for X25519 only */
    tp_pair p;
    delegated_pair(&p, cctx, sctx, true);
    REQUIRE(tp_handshake(&p.c, &p.s, 10) == 0);
    CHECK_EQ_INT(p.s.tasks_run, 2);
    tl_engine_info si;
    tl_engine_get_info(p.s.e, &si);
    CHECK_STR(si.group, "secp256r1");
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* A task that fails (the server's certificate does not verify) reports it, with the reason. */
TEST(task_failure)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0);
    tl_tls_ctx *cctx = tl_tls_ctx_new(TL_ROLE_CLIENT);
    REQUIRE(tl_tls_ctx_set_ca_pem(cctx, tp.other_ca.cert_pem) == 0);
    tp_pair p;
    delegated_pair(&p, cctx, sctx, true);
    CHECK(tp_handshake(&p.c, &p.s, 10) != 0);
    CHECK_EQ_INT(p.c.tasks_run, 1);
    CHECK_EQ_INT(tl_engine_error_kind(p.c.e), TL_ERR_VERIFY);
    CHECK(strstr(tl_engine_error(p.c.e), "certificate verify failed") != NULL);
    /* The task thread's error queue did not leak into ours. */
    CHECK_EQ_INT(ERR_peek_error(), 0);
    tp_pair_free(&p);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* While one engine's task runs elsewhere, another engine on the owner thread keeps working. */
typedef struct slow_task {
    tl_engine *e;
    volatile int done;
} slow_task;

static void *slow_main(void *arg)
{
    slow_task *t = arg;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    tl_engine_run_task(t->e);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

TEST(owner_not_blocked_by_task)
{
    tl_tls_ctx *sctx = tp_server_ctx(&tp.rsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    tp_pair busy, other;
    delegated_pair(&busy, cctx, sctx, false);
    tp_pair_init(&other, cctx, sctx, NULL, NULL);
    REQUIRE(tp_handshake(&other.c, &other.s, 10) == 0);
    uint8_t net[20000], buf[100];
    tl_result r = tl_engine_wrap(busy.c.e, NULL, 0, net, sizeof net);
    r = tl_engine_unwrap(busy.s.e, net, r.produced, buf, sizeof buf);
    REQUIRE(r.status == TL_NEED_TASK);
    slow_task t = {busy.s.e, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, slow_main, &t) == 0);
    int exchanges = 0;
    while (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE)) {
        CHECK(tp_send(&other.c, &other.s, "tick", 4, 5) == 0);
        exchanges++;
    }
    pthread_join(th, NULL);
    CHECK(exchanges > 1);
    REQUIRE(tp_handshake(&busy.c, &busy.s, 10) == 0);
    tp_pair_free(&busy);
    tp_pair_free(&other);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

/* Many handshakes through one task thread fed by a queue, with random delays (pitfall 19): all
 * complete, none stalls after its task. */
typedef struct job {
    tl_engine *e;
    struct job *next;
    volatile int done;
} job;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    bool stop;
} pool;

static void *pool_main(void *arg)
{
    pool *pl = arg;
    unsigned seed = 42;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        while (!pl->head && !pl->stop)
            pthread_cond_wait(&pl->cv, &pl->mu);
        job *j = pl->head;
        if (!j) {
            pthread_mutex_unlock(&pl->mu);
            return NULL;
        }
        pl->head = j->next;
        if (!pl->head)
            pl->tail = NULL;
        pthread_mutex_unlock(&pl->mu);
        struct timespec ts = {0, (long)(rand_r(&seed) % 3000) * 1000};
        nanosleep(&ts, NULL);
        tl_engine_run_task(j->e);
        __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    }
}

TEST(task_pool_many_handshakes)
{
    const int N = 40 * tests_scale();
    tl_tls_ctx *sctx = tp_server_ctx(&tp.ecdsa, 0, 0), *cctx = tp_client_ctx(0, 0);
    pool pl = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, pool_main, &pl) == 0);
    tp_pair *pairs = calloc((size_t)N, sizeof *pairs);
    job *jobs = calloc(2 * (size_t)N, sizeof *jobs);
    bool *waiting = calloc(2 * (size_t)N, sizeof *waiting);
    REQUIRE(pairs && jobs && waiting);
    for (int i = 0; i < N; i++)
        delegated_pair(&pairs[i], cctx, sctx, false);
    /* Drive every pair one step at a time; tasks go to the pool and are polled. */
    int finished = 0, rounds = 0;
    while (finished < N && rounds++ < 20000 * tests_scale()) {
        finished = 0;
        for (int i = 0; i < N; i++) {
            tp_peer *peers[2] = {&pairs[i].c, &pairs[i].s};
            for (int k = 0; k < 2; k++) {
                int id = 2 * i + k;
                if (waiting[id]) {
                    if (!__atomic_load_n(&jobs[id].done, __ATOMIC_ACQUIRE))
                        continue;
                    waiting[id] = false;
                }
                tp_peer *me = peers[k], *peer = peers[1 - k];
                uint8_t net[20000], buf[100];
                tl_result r = tl_engine_wrap(me->e, NULL, 0, net, sizeof net);
                tl_buf_append(&peer->inbox, net, r.produced);
                r = tl_engine_unwrap(me->e, tl_buf_rptr(&me->inbox), tl_buf_len(&me->inbox), buf,
                                     sizeof buf);
                tl_buf_consume(&me->inbox, r.consumed);
                if (r.status == TL_NEED_TASK) {
                    me->tasks_run++;
                    jobs[id] = (job){.e = me->e};
                    waiting[id] = true;
                    pthread_mutex_lock(&pl.mu);
                    if (pl.tail)
                        pl.tail->next = &jobs[id];
                    else
                        pl.head = &jobs[id];
                    pl.tail = &jobs[id];
                    pthread_cond_signal(&pl.cv);
                    pthread_mutex_unlock(&pl.mu);
                }
                CHECK(r.status != TL_ERROR);
            }
            if (tl_engine_handshake_done(pairs[i].c.e) && tl_engine_handshake_done(pairs[i].s.e))
                finished++;
        }
        if (finished < N) {
            struct timespec ts = {0, 200 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK_EQ_INT(finished, N);
    pthread_mutex_lock(&pl.mu);
    pl.stop = true;
    pthread_cond_signal(&pl.cv);
    pthread_mutex_unlock(&pl.mu);
    pthread_join(th, NULL);
    for (int i = 0; i < N; i++) {
        CHECK(pairs[i].s.tasks_run == 1 && pairs[i].c.tasks_run == 1);
        CHECK(tp_send(&pairs[i].c, &pairs[i].s, "x", 1, 5) == 0);
        tp_pair_free(&pairs[i]);
    }
    free(pairs);
    free(jobs);
    free(waiting);
    tl_tls_ctx_free(sctx);
    tl_tls_ctx_free(cctx);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    tp_init();
    RUN(tasks_tls13_on_thread);
    RUN(tasks_tls12_on_thread);
    RUN(task_statuses);
    RUN(task_after_hello_retry);
    RUN(task_failure);
    RUN(owner_not_blocked_by_task);
    RUN(task_pool_many_handshakes);
    TEST_MAIN_END();
}
