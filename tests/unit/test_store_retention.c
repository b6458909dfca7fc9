/* SPDX-License-Identifier: Apache-2.0 */
/* store retention tests: blocks whose spans all ended more than the retention before the
 * watermark are deleted in small steps (get_trace, search and list_services stop returning
 * them), newer blocks stay, and ingest keeps being acknowledged while retention runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_store_util.h"

#include <sys/stat.h>

#define SPANS 2500 /* >= the compaction threshold: each batch stays its own block */
#define MIN_NS (60ull * 1000000000ull)
#define HOUR_NS (60 * MIN_NS)

/* SPANS spans (traces of 5) of service svc, starting at t, numbered by no. */
static fl_span_batch_t *batch_at(int no, const char *svc, uint64_t t)
{
    fl_span_batch_t *b = tsu_batch(SPANS);
    fl_resource_t *res = tsu_resource(b->arena, svc);
    for (int i = 0; i < SPANS; i++)
        tsu_span(b->arena, &b->spans[i], (uint64_t)no * 10000 + (uint64_t)i / 5 + 1,
                 (uint64_t)i + 1, 0, res, NULL, "op", t + (uint64_t)i * 1000, 1000, 0);
    return b;
}

static int trace_n(fl_store_t *s, int no)
{
    uint8_t id[16];
    fl_span_t *sp;
    size_t n;
    fl_arena_t *a = fl_arena_new(0);
    tsu_id(id, 16, (uint64_t)no * 10000 + 1, 0x1111);
    int rc = fl_store_get_trace(s, id, a, &sp, &n);
    fl_arena_free(a);
    if (rc == FL_ERR_NOT_FOUND)
        return 0;
    assert_int_equal(rc, FL_OK);
    return (int)n;
}

static size_t search_n(fl_store_t *s, const char *svc)
{
    fl_arena_t *a = fl_arena_new(0);
    fl_trace_query_t q = {.service = svc, .limit = 10000};
    fl_trace_summary_t *out;
    size_t n = 0;
    assert_int_equal(fl_store_search_traces(s, &q, a, &out, &n), FL_OK);
    fl_arena_free(a);
    return n;
}

static int has_service(fl_store_t *s, const char *svc)
{
    fl_arena_t *a = fl_arena_new(0);
    fl_service_info_t *out;
    size_t n = 0;
    int found = 0;
    assert_int_equal(fl_store_list_services(s, a, &out, &n), FL_OK);
    for (size_t i = 0; i < n; i++)
        found |= strcmp(out[i].name, svc) == 0;
    fl_arena_free(a);
    return found;
}

static void ok_cb(void *ctx, int status, size_t stored, size_t dups)
{
    (void)stored;
    (void)dups;
    if (status != FL_OK)
        __atomic_add_fetch((int *)ctx, 1, __ATOMIC_RELAXED);
}

static void submit(fl_store_t *s, fl_span_batch_t *b, int *errors)
{
    int rc;
    while ((rc = fl_store_would_block(s, b->n_spans)) != 0)
        usleep(1000);
    rc = fl_store_submit_take(s, b, ok_cb, errors);
    assert_int_equal(rc, FL_OK);
}

static fl_store_stats_t wait_expired(fl_store_t *s, uint64_t want_spans)
{
    fl_store_stats_t st;
    for (int i = 0; i < 1000; i++) {
        fl_store_flush(s);
        fl_store_stats(s, &st);
        if (st.spans_expired >= want_spans)
            break;
        usleep(5000);
    }
    return st;
}

static void test_store_retention_deletes_old_keeps_new(void **state)
{
    (void)state;
    tsu_db_t db;
    int errors = 0;
    assert_int_equal(tsu_db_init(&db), 0);
    fl_store_t *s = tsu_open(&db, NULL);
    assert_non_null(s);
    uint64_t now = fl_time_now_ns();
    for (int no = 1; no <= 40; no++) /* 40 old blocks, 3 h ago: more than two steps */
        submit(s, batch_at(no, "old-svc", now - 3 * HOUR_NS + (uint64_t)no * 1000000), &errors);
    fl_store_flush(s);
    assert_int_equal(trace_n(s, 1), 5);
    assert_true(has_service(s, "old-svc"));

    /* Retention alone expires nothing: the watermark is the old spans' end (event time). */
    fl_store_set_retention(s, HOUR_NS);
    usleep(50000);
    fl_store_stats_t st;
    fl_store_stats(s, &st);
    assert_int_equal(st.blocks_expired, 0);

    submit(s, batch_at(100, "new-svc", now - 10 * MIN_NS), &errors);
    st = wait_expired(s, 40ull * SPANS);
    assert_int_equal(errors, 0);
    assert_int_equal(st.spans_expired, 40ull * SPANS);
    assert_true(st.blocks_expired > 0);
    assert_int_equal(st.spans_stored, SPANS);
    assert_int_equal(trace_n(s, 1), 0);
    assert_int_equal(trace_n(s, 40), 0);
    assert_int_equal(trace_n(s, 100), 5);
    assert_int_equal(search_n(s, "old-svc"), 0);
    assert_int_equal(search_n(s, "new-svc"), SPANS / 5);
    assert_int_equal(search_n(s, NULL), SPANS / 5);
    assert_false(has_service(s, "old-svc"));
    assert_true(has_service(s, "new-svc"));
    char err[256];
    assert_int_equal(fl_store_integrity_check(s, err, sizeof(err)), FL_OK);
    fl_store_close(s);

    /* The deletions are durable; the freed pages are reused by new blocks. */
    s = tsu_open(&db, NULL);
    assert_non_null(s);
    fl_store_stats(s, &st);
    assert_int_equal(st.spans_stored, SPANS);
    struct stat sb;
    assert_int_equal(stat(db.path, &sb), 0);
    off_t before = sb.st_size;
    for (int no = 200; no < 220; no++)
        submit(s, batch_at(no, "new-svc", now - 5 * MIN_NS + (uint64_t)no), &errors);
    fl_store_flush(s);
    assert_int_equal(trace_n(s, 1), 0);
    fl_store_close(s);
    assert_int_equal(stat(db.path, &sb), 0);
    assert_true(sb.st_size <= before); /* 20 new blocks fit in the 40 freed ones' pages */
    tsu_db_remove(&db);
}

/* Event time advances by a minute per batch over 5 h while a 1 h retention runs: every batch
 * is acknowledged, old blocks go step by step, the last hour stays. */
static void test_store_retention_during_ingest(void **state)
{
    (void)state;
    tsu_db_t db;
    int errors = 0;
    assert_int_equal(tsu_db_init(&db), 0);
    fl_store_opts_t o = {.retention_ns = HOUR_NS};
    fl_store_t *s = tsu_open(&db, &o);
    assert_non_null(s);
    uint64_t base = fl_time_now_ns() - 5 * HOUR_NS;
    const int N = 300;
    uint64_t max_commit = 0;
    for (int no = 1; no <= N; no++) {
        submit(s, batch_at(no, "svc", base + (uint64_t)no * MIN_NS), &errors);
        fl_store_stats_t st;
        fl_store_stats(s, &st);
        if (st.last_commit_ns > max_commit)
            max_commit = st.last_commit_ns;
    }
    fl_store_flush(s);
    fl_store_stats_t st = wait_expired(s, (uint64_t)(N - 62) * SPANS);
    assert_int_equal(errors, 0);
    /* Everything ending more than 1 h before the newest span is gone, the rest is there. */
    assert_true(st.spans_expired >= (uint64_t)(N - 62) * SPANS);
    assert_true(st.spans_stored <= 62ull * SPANS);
    assert_int_equal(st.spans_stored + st.spans_expired, (uint64_t)N * SPANS);
    assert_int_equal(trace_n(s, 1), 0);
    assert_int_equal(trace_n(s, N - 200), 0);
    assert_int_equal(trace_n(s, N - 30), 5);
    assert_int_equal(trace_n(s, N), 5);
    char err[256];
    assert_int_equal(fl_store_integrity_check(s, err, sizeof(err)), FL_OK);
    fl_store_close(s);
    tsu_db_remove(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_retention_deletes_old_keeps_new),
        cmocka_unit_test(test_store_retention_during_ingest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
