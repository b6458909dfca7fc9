/* SPDX-License-Identifier: Apache-2.0 */
/* store concurrency tests: producers submitting from several threads while readers query;
 * every read sees whole committed batches only, and everything acknowledged is readable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>

#include "test_store_util.h"

#define PRODUCERS 2
#define BATCHES 60 /* per producer */
#define TRACES_PER_BATCH 40
#define SPANS_PER_TRACE 4 /* one per service */
#define N_TRACES (PRODUCERS * BATCHES * TRACES_PER_BATCH)

static const char *svc_names[SPANS_PER_TRACE] = {"edge", "api", "db", "cache"};

typedef struct shared {
    fl_store_t *s;
    atomic_int acked[N_TRACES];
    atomic_int producers_left;
    atomic_int errors; /* violations seen by readers */
    atomic_long reads_ok;
    atomic_long reads_missing;
    char first_error[160];
    pthread_mutex_t mu;
} shared_t;

typedef struct ack_ctx {
    shared_t *sh;
    int first_trace;
    int status;
} ack_ctx_t;

static void report(shared_t *sh, const char *msg)
{
    pthread_mutex_lock(&sh->mu);
    if (!sh->first_error[0])
        snprintf(sh->first_error, sizeof(sh->first_error), "%s", msg);
    pthread_mutex_unlock(&sh->mu);
    atomic_fetch_add(&sh->errors, 1);
}

static void ack_cb(void *ctx, int status, size_t stored, size_t dups)
{
    ack_ctx_t *a = ctx;
    a->status = status;
    if (status == FL_OK && stored == TRACES_PER_BATCH * SPANS_PER_TRACE && dups == 0)
        for (int t = 0; t < TRACES_PER_BATCH; t++)
            atomic_store(&a->sh->acked[a->first_trace + t], 1);
    else
        report(a->sh, "a batch was not stored whole");
    free(a);
}

typedef struct prod_arg {
    shared_t *sh;
    int id;
} prod_arg_t;

static void *producer(void *arg)
{
    prod_arg_t *pa = arg;
    shared_t *sh = pa->sh;
    for (int b = 0; b < BATCHES;) {
        int first = (pa->id * BATCHES + b) * TRACES_PER_BATCH;
        fl_span_batch_t *bt = tsu_batch(TRACES_PER_BATCH * SPANS_PER_TRACE);
        fl_resource_t *res[SPANS_PER_TRACE];
        for (int k = 0; k < SPANS_PER_TRACE; k++)
            res[k] = tsu_resource(bt->arena, svc_names[k]);
        size_t i = 0;
        for (int k = 0; k < SPANS_PER_TRACE; k++) /* grouped by resource, as SDKs send */
            for (int t = 0; t < TRACES_PER_BATCH; t++) {
                uint64_t tr = (uint64_t)(first + t) + 1;
                tsu_span(bt->arena, &bt->spans[i++], tr, tr * 10 + (uint64_t)k, k ? tr * 10 : 0,
                         res[k], NULL, svc_names[k], 1000000 + tr * 1000 + (uint64_t)k,
                         100 + (uint64_t)k, k == 3 ? FL_STATUS_ERROR : 0);
            }
        ack_ctx_t *a = calloc(1, sizeof(*a));
        a->sh = sh;
        a->first_trace = first;
        while (fl_store_would_block(sh->s, bt->n_spans)) /* a receiver's admission check */
            usleep(200);
        int rc = fl_store_submit_take(sh->s, bt, ack_cb, a);
        if (rc == FL_ERR_BUSY) { /* lost a race with the other producer: build it again */
            free(a);
            continue;
        }
        if (rc != FL_OK) {
            report(sh, "submit failed");
            free(a);
        }
        b++;
    }
    atomic_fetch_sub(&sh->producers_left, 1);
    return NULL;
}

static void check_trace(shared_t *sh, fl_arena_t *a, int t)
{
    uint8_t id[16];
    tsu_id(id, 16, (uint64_t)t + 1, 0x1111);
    int acked_before = atomic_load(&sh->acked[t]);
    fl_span_t *sp;
    size_t n;
    int rc = fl_store_get_trace(sh->s, id, a, &sp, &n);
    if (rc == FL_ERR_NOT_FOUND) {
        atomic_fetch_add(&sh->reads_missing, 1);
        if (acked_before)
            report(sh, "an acknowledged trace was not found");
        return;
    }
    if (rc != FL_OK) {
        report(sh, "get_trace failed");
        return;
    }
    atomic_fetch_add(&sh->reads_ok, 1);
    if (n != SPANS_PER_TRACE) {
        report(sh, "a trace was seen partially");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (memcmp(sp[i].trace_id, id, 16) != 0 || (i && sp[i].start_ns < sp[i - 1].start_ns))
            report(sh, "wrong or unordered span");
        if (strcmp(sp[i].resource->service_name.ptr, svc_names[i]) != 0)
            report(sh, "wrong resource");
    }
}

static void *reader(void *arg)
{
    shared_t *sh = arg;
    fl_arena_t *a = fl_arena_new(0);
    uint64_t rng = (uint64_t)(uintptr_t)a;
    int rounds = 0;
    while (atomic_load(&sh->producers_left) > 0 || rounds < 50) {
        rounds++;
        check_trace(sh, a, (int)tsu_below(&rng, N_TRACES));
        fl_arena_reset(a);

        fl_trace_query_t q = {.service = svc_names[tsu_below(&rng, SPANS_PER_TRACE)], .limit = 10};
        fl_trace_summary_t *sum;
        size_t ns;
        if (fl_store_search_traces(sh->s, &q, a, &sum, &ns) != FL_OK)
            report(sh, "search failed");
        for (size_t i = 0; i < ns; i++)
            if (sum[i].n_spans != SPANS_PER_TRACE || sum[i].n_errors != 1 ||
                sum[i].n_services != SPANS_PER_TRACE || strcmp(sum[i].root_service, "edge"))
                report(sh, "search saw a partial trace");
        fl_arena_reset(a);

        fl_service_info_t *sv;
        size_t nsv;
        if (fl_store_list_services(sh->s, a, &sv, &nsv) != FL_OK)
            report(sh, "list_services failed");
        for (size_t i = 1; i < nsv; i++)
            if (sv[i].span_count != sv[0].span_count)
                report(sh, "service counts from different commits");
        if (nsv && sv[0].span_count % TRACES_PER_BATCH)
            report(sh, "service count not a whole number of batches");
        fl_arena_reset(a);
    }
    fl_arena_free(a);
    return NULL;
}

static void test_store_concurrent_reads_and_writes(void **state)
{
    (void)state;
    tsu_db_t db;
    assert_int_equal(tsu_db_init(&db), 0);
    /* A small group size forces many commits while the readers run. */
    fl_store_opts_t o = {.readers = 3, .max_group_spans = 400, .max_queue_spans = 2000};
    shared_t *sh = calloc(1, sizeof(*sh));
    pthread_mutex_init(&sh->mu, NULL);
    sh->s = tsu_open(&db, &o);
    assert_non_null(sh->s);
    atomic_store(&sh->producers_left, PRODUCERS);

    pthread_t prod[PRODUCERS], rd[3];
    prod_arg_t pa[PRODUCERS];
    for (int i = 0; i < 3; i++)
        pthread_create(&rd[i], NULL, reader, sh);
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (prod_arg_t){sh, i};
        pthread_create(&prod[i], NULL, producer, &pa[i]);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    fl_store_flush(sh->s);
    for (int i = 0; i < 3; i++)
        pthread_join(rd[i], NULL);
    if (atomic_load(&sh->errors))
        fail_msg("%d violations, first: %s", atomic_load(&sh->errors), sh->first_error);
    assert_true(atomic_load(&sh->reads_ok) > 0);

    /* Everything acknowledged is there, exactly once. */
    fl_arena_t *a = fl_arena_new(0);
    int acked = 0;
    for (int t = 0; t < N_TRACES; t++) {
        if (!atomic_load(&sh->acked[t]))
            continue;
        acked++;
        check_trace(sh, a, t);
        fl_arena_reset(a);
    }
    assert_int_equal(atomic_load(&sh->errors), 0);
    fl_store_stats_t st;
    fl_store_stats(sh->s, &st);
    assert_int_equal(st.spans_stored, (uint64_t)acked * SPANS_PER_TRACE);
    assert_int_equal(st.queue_spans, 0);
    assert_true(acked > N_TRACES / 2);
    assert_true(st.compactions > 0); /* blocks were merged while the readers ran */
    fl_arena_free(a);
    fl_store_close(sh->s);
    tsu_db_remove(&db);
    free(sh);
}

/* Many threads submitting to a tiny queue: BUSY refusals happen, nothing else fails, and
 * every accepted batch is called back exactly once. */
typedef struct busy_arg {
    fl_store_t *s;
    atomic_int *accepted;
    atomic_int *busy;
    atomic_int *called;
    int id;
} busy_arg_t;

static void count_cb(void *ctx, int status, size_t stored, size_t dups)
{
    atomic_int *called = ctx;
    (void)stored;
    (void)dups;
    if (status == FL_OK)
        atomic_fetch_add(called, 1);
}

static void *busy_producer(void *arg)
{
    busy_arg_t *ba = arg;
    for (int i = 0; i < 200; i++) {
        fl_span_batch_t *b = tsu_batch(20);
        for (int k = 0; k < 20; k++)
            tsu_span(b->arena, &b->spans[k], (uint64_t)(ba->id * 1000 + i) + 1, (uint64_t)k + 1, 0,
                     NULL, NULL, "x", 1, 1, 0);
        int rc = fl_store_submit_take(ba->s, b, count_cb, ba->called);
        if (rc == FL_OK)
            atomic_fetch_add(ba->accepted, 1);
        else if (rc == FL_ERR_BUSY)
            atomic_fetch_add(ba->busy, 1);
    }
    return NULL;
}

static void test_store_busy_under_contention(void **state)
{
    (void)state;
    tsu_db_t db;
    assert_int_equal(tsu_db_init(&db), 0);
    fl_store_opts_t o = {.max_queue_spans = 60, .max_group_spans = 40};
    fl_store_t *s = tsu_open(&db, &o);
    assert_non_null(s);
    atomic_int accepted = 0, busy = 0, called = 0;
    pthread_t th[4];
    busy_arg_t ba[4];
    for (int i = 0; i < 4; i++) {
        ba[i] = (busy_arg_t){s, &accepted, &busy, &called, i};
        pthread_create(&th[i], NULL, busy_producer, &ba[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    fl_store_flush(s);
    assert_int_equal(atomic_load(&accepted) + atomic_load(&busy), 800);
    assert_int_equal(atomic_load(&called), atomic_load(&accepted));
    assert_true(atomic_load(&busy) > 0);
    fl_store_stats_t st;
    fl_store_stats(s, &st);
    assert_int_equal(st.spans_stored, (uint64_t)atomic_load(&accepted) * 20);
    assert_int_equal(st.queue_spans, 0);
    fl_store_close(s);
    tsu_db_remove(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_concurrent_reads_and_writes),
        cmocka_unit_test(test_store_busy_under_contention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
