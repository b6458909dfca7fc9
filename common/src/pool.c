/* SPDX-License-Identifier: Apache-2.0 */
/* A fixed-size worker pool with a bounded FIFO of jobs. */
#include <faultline/common.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    fl_pool_job_fn fn;
    void *arg;
} job_t;

struct fl_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *ring;
    size_t cap, head, count;
    size_t running;
    int closing;
    int nthreads;
    pthread_t *threads;
    char name[16];
};

static void *worker(void *arg)
{
    fl_pool_t *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->count == 0 && !p->closing)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->count == 0 && p->closing)
            break;
        job_t j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->running++;
        pthread_mutex_unlock(&p->mu);
        j.fn(j.arg);
        pthread_mutex_lock(&p->mu);
        p->running--;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

fl_pool_t *fl_pool_new(int nthreads, size_t max_queue, const char *name)
{
    if (nthreads < 1)
        nthreads = 1;
    if (max_queue < 1)
        max_queue = 1;
    fl_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ring = calloc(max_queue, sizeof(job_t));
    p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (!p->ring || !p->threads)
        goto fail;
    p->cap = max_queue;
    snprintf(p->name, sizeof(p->name), "%s", name ? name : "fl-pool");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            p->nthreads = i;
            fl_pool_free(p);
            return NULL;
        }
        p->nthreads = i + 1;
    }
    return p;
fail:
    free(p->ring);
    free(p->threads);
    free(p);
    return NULL;
}

int fl_pool_submit(fl_pool_t *p, fl_pool_job_fn fn, void *arg)
{
    int rc = FL_OK;
    pthread_mutex_lock(&p->mu);
    if (p->closing) {
        rc = FL_ERR_CLOSED;
    } else if (p->count == p->cap) {
        rc = FL_ERR_BUSY;
    } else {
        p->ring[(p->head + p->count) % p->cap] = (job_t){fn, arg};
        p->count++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

size_t fl_pool_depth(fl_pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    size_t d = p->count + p->running;
    pthread_mutex_unlock(&p->mu);
    return d;
}

void fl_pool_free(fl_pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->ring);
    free(p->threads);
    free(p);
}
