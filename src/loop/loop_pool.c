/* loop_pool.c - the task pool: a few threads that run work which must not run on a loop (delegated
 * TLS handshake steps, name resolution, file opens), then post its completion back to its loop.
 * Normal priority, every signal blocked; why: docs/design.md (decision 12) and docs/conn.md. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop/loop_int.h"

#define POOL_MAX_THREADS 64

struct tl_pool {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    tl_work *head, *tail;
    size_t queued;
    bool stopping;
    unsigned nthreads;
    pthread_t threads[POOL_MAX_THREADS];
};

static void *worker(void *arg)
{
    tl_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->lock);
        tl_work *w = p->head;
        if (!w)
            break; /* stopping, and the queue is empty */
        p->head = w->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        w->run(w);
        tl_loop_post(w->loop, w); /* the owner runs w->done */
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

tl_pool *tl_pool_new(unsigned threads)
{
    if (threads == 0)
        threads = 1;
    if (threads > POOL_MAX_THREADS)
        threads = POOL_MAX_THREADS;
    tl_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    sigset_t all, old;
    sigfillset(&all);
    /* Created with the mask, not blocking it once they run: a thread not yet scheduled holds its
     * creator's mask, and a SIGUSR1 right after start-up once killed the server that way. */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->nthreads == 0) {
        tl_pool_free(p);
        return NULL;
    }
    return p;
}

void tl_pool_free(tl_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void tl_pool_submit(tl_pool *p, tl_loop *owner, tl_work *w)
{
    w->loop = owner;
    w->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->lock);
}

size_t tl_pool_queued(tl_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}
