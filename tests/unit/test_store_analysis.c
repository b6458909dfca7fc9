/* SPDX-License-Identifier: Apache-2.0 */
/* store unit tests for what analysis/ relies on: the commit observer (new spans only, before
 * the acknowledgement, no far-future spans) and the analysis state / bucket tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_store_util.h"

#define T0 1700000000000000000ull /* 2023-11-14, event time of the test spans */
#define SEC 1000000000ull

typedef struct fixture {
    tsu_db_t db;
    fl_store_t *s;
    fl_arena_t *m;
    fl_resource_t *res;
    fl_scope_t *sc;
} fixture_t;

/* What the observer saw. */
typedef struct seen {
    size_t calls;
    size_t n;
    uint64_t seqs[256]; /* span.seq attribute of each observed span, in order */
    int before_ack;     /* every call came before the done callback */
    tsu_done_t *done;
} seen_t;

static void observer(void *ud, const fl_span_t *spans, size_t n)
{
    seen_t *o = ud;
    o->calls++;
    if (o->done && o->done->called)
        o->before_ack = 0;
    for (size_t i = 0; i < n; i++) {
        const fl_value_t *v = fl_attrs_get(&spans[i].attrs, "span.seq");
        if (o->n < 256)
            o->seqs[o->n] = v ? (uint64_t)v->u.i : 0;
        o->n++;
    }
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f || tsu_db_init(&f->db) != 0)
        return -1;
    f->s = tsu_open(&f->db, NULL);
    f->m = fl_arena_new(0);
    if (!f->s || !f->m)
        return -1;
    f->res = tsu_resource(f->m, "checkout");
    f->sc = tsu_scope(f->m, "test");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fl_store_close(f->s);
    fl_arena_free(f->m);
    tsu_db_remove(&f->db);
    free(f);
    return 0;
}

/* A batch of spans with the given span numbers (trace 1), ending at T0 + span seconds. */
static fl_span_batch_t *batch_of(fixture_t *f, const uint64_t *ids, size_t n)
{
    fl_span_batch_t *b = tsu_batch(n);
    for (size_t i = 0; i < n; i++)
        tsu_span(b->arena, &b->spans[i], 1, ids[i], 0, f->res, f->sc, "GET /x", T0 + ids[i] * SEC,
                 1000000, FL_STATUS_OK);
    return b;
}

static void test_store_analysis_observer_new_spans_only(void **state)
{
    fixture_t *f = *state;
    seen_t o = {.before_ack = 1};
    tsu_done_t d;
    o.done = &d;
    fl_store_set_observer(f->s, observer, &o);

    uint64_t a[] = {1, 2, 3, 4, 5};
    assert_int_equal(tsu_put(f->s, batch_of(f, a, 5), &d), FL_OK);
    assert_int_equal(o.n, 5);
    assert_int_equal(o.calls, 1); /* no duplicates: the whole batch in one call, no copy */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(o.seqs[i], a[i]);

    /* Re-sent: stored nothing, observed nothing. */
    o.n = o.calls = 0;
    assert_int_equal(tsu_put(f->s, batch_of(f, a, 5), &d), FL_OK);
    assert_int_equal(d.dups, 5);
    assert_int_equal(o.n, 0);

    /* Mixed: new spans between re-sent ones and a duplicate inside the batch arrive in
     * submission order, once each. */
    uint64_t b[] = {6, 2, 7, 8, 3, 6, 9};
    o.n = o.calls = 0;
    assert_int_equal(tsu_put(f->s, batch_of(f, b, 7), &d), FL_OK);
    assert_int_equal(d.stored, 4);
    assert_int_equal(o.n, 4);
    assert_int_equal(o.seqs[0], 6);
    assert_int_equal(o.seqs[1], 7);
    assert_int_equal(o.seqs[2], 8);
    assert_int_equal(o.seqs[3], 9);
    assert_int_equal(o.calls, 3); /* runs {6}, {7, 8}, {9} */
    assert_true(o.before_ack);

    /* Removing the observer stops the calls. */
    fl_store_set_observer(f->s, NULL, NULL);
    uint64_t c[] = {10};
    o.n = 0;
    assert_int_equal(tsu_put(f->s, batch_of(f, c, 1), &d), FL_OK);
    assert_int_equal(o.n, 0);
}

static void test_store_analysis_future_spans(void **state)
{
    fixture_t *f = *state;
    seen_t o = {.before_ack = 1};
    fl_store_stats_t st;
    uint64_t now = fl_time_now_ns();
    fl_store_set_observer(f->s, observer, &o);

    fl_span_batch_t *b = tsu_batch(3);
    b->received_ns = now;
    tsu_span(b->arena, &b->spans[0], 2, 1, 0, f->res, f->sc, "a", now - SEC, 1000, 0);
    /* 9 minutes ahead: a skewed clock, still accepted */
    tsu_span(b->arena, &b->spans[1], 2, 2, 0, f->res, f->sc, "b", now + 540 * SEC, 1000, 0);
    /* a year ahead: stored, but neither watermark nor observer see it */
    tsu_span(b->arena, &b->spans[2], 2, 3, 0, f->res, f->sc, "c", now + 365 * 86400 * SEC, 1000, 0);
    tsu_done_t d;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 3);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.seqs[0], 1);
    assert_int_equal(o.seqs[1], 2);
    fl_store_stats(f->s, &st);
    assert_int_equal(st.spans_stored, 3);
    assert_int_equal(st.spans_future, 1);
    assert_int_equal(st.watermark_ns, now + 540 * SEC + 1000);
}

typedef struct collected {
    size_t n;
    uint64_t starts[64];
    char first[32];
    int stop_after;
} collected_t;

static int collect(void *ud, uint64_t start_ns, const void *data, size_t len)
{
    collected_t *c = ud;
    if (c->n == 0)
        snprintf(c->first, sizeof(c->first), "%.*s", (int)len, (const char *)data);
    if (c->n < 64)
        c->starts[c->n] = start_ns;
    c->n++;
    return c->stop_after && (int)c->n >= c->stop_after ? 7 : 0;
}

static void test_store_analysis_state_and_buckets(void **state)
{
    fixture_t *f = *state;
    fl_buf_t buf;
    fl_buf_init(&buf, 0);

    assert_int_equal(fl_store_analysis_load_state(f->s, "analysis", &buf), FL_ERR_NOT_FOUND);
    assert_int_equal(fl_store_analysis_save(f->s, "analysis", "v1", 2, NULL, 0, 0), FL_OK);
    assert_int_equal(fl_store_analysis_save(f->s, "analysis", "version2", 8, NULL, 0, 0), FL_OK);
    assert_int_equal(fl_store_analysis_load_state(f->s, "analysis", &buf), FL_OK);
    assert_int_equal(buf.len, 8);
    assert_memory_equal(buf.data, "version2", 8);

    /* Buckets, 10 s apart; one replaced. */
    fl_store_bucket_t bk[5];
    for (int i = 0; i < 5; i++)
        bk[i] = (fl_store_bucket_t){T0 + (uint64_t)i * 10 * SEC, "old", 3};
    assert_int_equal(fl_store_analysis_save(f->s, NULL, NULL, 0, bk, 5, 0), FL_OK);
    bk[0].data = "new";
    assert_int_equal(fl_store_analysis_save(f->s, "analysis", "v3", 2, bk, 1, 0), FL_OK);
    collected_t c = {0};
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), FL_OK);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.first, "new");
    for (int i = 1; i < 5; i++)
        assert_true(c.starts[i] > c.starts[i - 1]);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fl_store_analysis_buckets(f->s, T0 + 10 * SEC, T0 + 30 * SEC, collect, &c),
                     FL_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.starts[0], T0 + 10 * SEC);
    memset(&c, 0, sizeof(c));
    c.stop_after = 1;
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), 7);

    /* Retention relative to the newest bucket: keep 25 s -> buckets at 0 s and 10 s go. */
    fl_store_bucket_t late = {T0 + 40 * SEC, "x", 1};
    assert_int_equal(fl_store_analysis_save(f->s, NULL, NULL, 0, &late, 1, 25 * SEC), FL_OK);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), FL_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.starts[0], T0 + 20 * SEC);

    /* Everything survives a reopen. */
    fl_store_close(f->s);
    f->s = tsu_open(&f->db, NULL);
    assert_non_null(f->s);
    fl_buf_reset(&buf);
    assert_int_equal(fl_store_analysis_load_state(f->s, "analysis", &buf), FL_OK);
    assert_int_equal(buf.len, 2);
    assert_memory_equal(buf.data, "v3", 2);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), FL_OK);
    assert_int_equal(c.n, 3);

    assert_int_equal(fl_store_analysis_save(NULL, "k", "v", 1, NULL, 0, 0), FL_ERR_INVALID);
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, NULL, NULL), FL_ERR_INVALID);
    fl_buf_dispose(&buf);
}

/* Retention deletes in steps of 1,000, so a large backlog shrinks over several saves. */
static void test_store_analysis_retention_steps(void **state)
{
    fixture_t *f = *state;
    enum { N = 2500 };
    fl_store_bucket_t *bk = calloc(N, sizeof(*bk));
    assert_non_null(bk);
    for (int i = 0; i < N; i++)
        bk[i] = (fl_store_bucket_t){T0 + (uint64_t)i * SEC, "b", 1};
    assert_int_equal(fl_store_analysis_save(f->s, NULL, NULL, 0, bk, N, 0), FL_OK);
    fl_store_bucket_t last = {T0 + (uint64_t)N * SEC, "b", 1};
    collected_t c = {0};
    assert_int_equal(fl_store_analysis_save(f->s, NULL, NULL, 0, &last, 1, 10 * SEC), FL_OK);
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), FL_OK);
    assert_int_equal(c.n, N + 1 - 1000);
    for (int k = 0; k < 2; k++)
        assert_int_equal(fl_store_analysis_save(f->s, NULL, NULL, 0, &last, 1, 10 * SEC), FL_OK);
    memset(&c, 0, sizeof(c));
    assert_int_equal(fl_store_analysis_buckets(f->s, 0, 0, collect, &c), FL_OK);
    assert_int_equal(c.n, 11); /* newest and the 10 s before it */
    free(bk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_analysis_observer_new_spans_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_analysis_future_spans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_analysis_state_and_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_analysis_retention_steps, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
