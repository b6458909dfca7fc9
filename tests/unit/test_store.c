/* SPDX-License-Identifier: Apache-2.0 */
/* store unit tests on a real SQLite file: lossless round trip of every field and value kind,
 * dedup (batch, group, reopen, read time), search filters, services, persistence, BUSY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_store_util.h"

typedef struct fixture {
    tsu_db_t db;
    fl_store_t *s;
    fl_arena_t *a; /* results */
    fl_arena_t *m; /* model data that outlives batches */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f || tsu_db_init(&f->db) != 0)
        return -1;
    f->s = tsu_open(&f->db, NULL);
    f->a = fl_arena_new(0);
    f->m = fl_arena_new(0);
    *state = f;
    return f->s && f->a && f->m ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fl_store_close(f->s);
    fl_arena_free(f->a);
    fl_arena_free(f->m);
    tsu_db_remove(&f->db);
    free(f);
    return 0;
}

static void reopen(fixture_t *f, const fl_store_opts_t *o)
{
    fl_store_close(f->s);
    f->s = tsu_open(&f->db, o);
    assert_non_null(f->s);
}

/* ---------------------------------------------------------------- every value kind */

static fl_value_t val_str(fl_arena_t *a, const char *s)
{
    fl_value_t v = {.type = FL_VAL_STRING};
    v.u.str = tsu_str(a, s);
    return v;
}

static fl_attrs_t all_kinds(fl_arena_t *a)
{
    static const uint8_t raw[] = {0, 1, 2, 0xff, 0, 0x80};
    fl_attrs_t at;
    size_t n = 22;
    at.items = fl_arena_calloc(a, n, sizeof(fl_kv_t));
    at.n = n;
    fl_kv_t *kv = at.items;
    size_t i = 0;
    kv[i].key = tsu_str(a, "str");
    kv[i++].value = val_str(a, "hello \"world\" \xe2\x9c\x93");
    kv[i].key = tsu_str(a, "str.empty");
    kv[i++].value = val_str(a, "");
    kv[i].key = tsu_str(a, "bool.true");
    kv[i].value.type = FL_VAL_BOOL;
    kv[i++].value.u.b = 1;
    kv[i].key = tsu_str(a, "bool.false");
    kv[i].value.type = FL_VAL_BOOL;
    kv[i++].value.u.b = 0;
    kv[i].key = tsu_str(a, "int.min");
    kv[i].value.type = FL_VAL_INT;
    kv[i++].value.u.i = INT64_MIN;
    kv[i].key = tsu_str(a, "int.max");
    kv[i].value.type = FL_VAL_INT;
    kv[i++].value.u.i = INT64_MAX;
    kv[i].key = tsu_str(a, "int.neg");
    kv[i].value.type = FL_VAL_INT;
    kv[i++].value.u.i = -1;
    kv[i].key = tsu_str(a, "int.zero");
    kv[i].value.type = FL_VAL_INT;
    kv[i++].value.u.i = 0;
    kv[i].key = tsu_str(a, "dbl.nan");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = NAN;
    kv[i].key = tsu_str(a, "dbl.inf");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = INFINITY;
    kv[i].key = tsu_str(a, "dbl.ninf");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = -INFINITY;
    kv[i].key = tsu_str(a, "dbl.negzero");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = -0.0;
    kv[i].key = tsu_str(a, "dbl.pi");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = 3.141592653589793;
    kv[i].key = tsu_str(a, "bytes");
    kv[i].value.type = FL_VAL_BYTES;
    kv[i++].value.u.str = tsu_bytes(a, raw, sizeof(raw));
    kv[i].key = tsu_str(a, "bytes.empty");
    kv[i].value.type = FL_VAL_BYTES;
    kv[i++].value.u.str = tsu_bytes(a, "", 0);
    kv[i].key = tsu_str(a, "empty");
    kv[i++].value.type = FL_VAL_EMPTY;
    kv[i].key = tsu_str(a, "arr.empty");
    kv[i++].value.type = FL_VAL_ARRAY;
    kv[i].key = tsu_str(a, "kv.empty");
    kv[i++].value.type = FL_VAL_KVLIST;
    /* array [1, "two", [true, 2.5], {"k": null}] */
    fl_value_t *arr = fl_arena_calloc(a, 4, sizeof(fl_value_t));
    arr[0].type = FL_VAL_INT;
    arr[0].u.i = 1;
    arr[1] = val_str(a, "two");
    arr[2].type = FL_VAL_ARRAY;
    arr[2].u.arr.items = fl_arena_calloc(a, 2, sizeof(fl_value_t));
    arr[2].u.arr.n = 2;
    arr[2].u.arr.items[0].type = FL_VAL_BOOL;
    arr[2].u.arr.items[0].u.b = 1;
    arr[2].u.arr.items[1].type = FL_VAL_DOUBLE;
    arr[2].u.arr.items[1].u.d = 2.5;
    arr[3].type = FL_VAL_KVLIST;
    arr[3].u.kv.items = fl_arena_calloc(a, 1, sizeof(fl_kv_t));
    arr[3].u.kv.n = 1;
    arr[3].u.kv.items[0].key = tsu_str(a, "k");
    arr[3].u.kv.items[0].value.type = FL_VAL_EMPTY;
    kv[i].key = tsu_str(a, "arr.nested");
    kv[i].value.type = FL_VAL_ARRAY;
    kv[i].value.u.arr.items = arr;
    kv[i++].value.u.arr.n = 4;
    /* kvlist {"a": {"b": [bytes]}, "": "empty key"} */
    fl_kv_t *outer = fl_arena_calloc(a, 2, sizeof(fl_kv_t));
    outer[0].key = tsu_str(a, "a");
    outer[0].value.type = FL_VAL_KVLIST;
    outer[0].value.u.kv.items = fl_arena_calloc(a, 1, sizeof(fl_kv_t));
    outer[0].value.u.kv.n = 1;
    fl_kv_t *inner = outer[0].value.u.kv.items;
    inner->key = tsu_str(a, "b");
    inner->value.type = FL_VAL_ARRAY;
    inner->value.u.arr.items = fl_arena_calloc(a, 1, sizeof(fl_value_t));
    inner->value.u.arr.n = 1;
    inner->value.u.arr.items[0].type = FL_VAL_BYTES;
    inner->value.u.arr.items[0].u.str = tsu_bytes(a, raw, 3);
    outer[1].key = tsu_str(a, "");
    outer[1].value = val_str(a, "empty key");
    kv[i].key = tsu_str(a, "kv.nested");
    kv[i].value.type = FL_VAL_KVLIST;
    kv[i].value.u.kv.items = outer;
    kv[i++].value.u.kv.n = 2;
    /* duplicate keys are kept as sent, in order */
    kv[i].key = tsu_str(a, "str");
    kv[i++].value = val_str(a, "second copy");
    kv[i].key = tsu_str(a, "dbl.small");
    kv[i].value.type = FL_VAL_DOUBLE;
    kv[i++].value.u.d = 5e-324;
    assert_int_equal(i, n);
    return at;
}

/* A span that sets every field of the model to a non-default value. */
static void full_span(fl_arena_t *a, fl_span_t *sp, const fl_resource_t *res, const fl_scope_t *sc)
{
    tsu_span(a, sp, 77, 1, 0, res, sc, "GET /full", 1700000000000000000ULL, 12345678,
             FL_STATUS_ERROR);
    sp->attrs = all_kinds(a);
    sp->trace_state = tsu_str(a, "vendor=a:1,other=b");
    sp->flags = 0x301;
    sp->kind = FL_KIND_CLIENT;
    sp->dropped_attrs = 3;
    sp->dropped_events = 4;
    sp->dropped_links = 5;
    sp->status_message = tsu_str(a, "boom: connection reset");
    sp->n_events = 3;
    sp->events = fl_arena_calloc(a, 3, sizeof(fl_event_t));
    sp->events[0].time_ns = sp->start_ns + 10;
    sp->events[0].name = tsu_str(a, "exception");
    sp->events[0].attrs = all_kinds(a);
    sp->events[0].dropped_attrs = 7;
    sp->events[1].time_ns = sp->start_ns - 1000; /* before the span: kept as sent */
    sp->events[1].name = tsu_str(a, "");
    sp->events[2].time_ns = 0;
    sp->events[2].name = tsu_str(a, "epoch");
    sp->n_links = 2;
    sp->links = fl_arena_calloc(a, 2, sizeof(fl_link_t));
    tsu_id(sp->links[0].trace_id, 16, 999, 1);
    tsu_id(sp->links[0].span_id, 8, 998, 2);
    sp->links[0].trace_state = tsu_str(a, "k=v");
    sp->links[0].flags = 1;
    sp->links[0].dropped_attrs = 2;
    sp->links[0].attrs = all_kinds(a);
    memcpy(sp->links[1].trace_id, sp->trace_id, 16); /* a link inside the same trace */
    tsu_id(sp->links[1].span_id, 8, 5, 0x2222);
    sp->links[1].flags = 0xffffffffu;
}

static fl_resource_t *full_resource(fl_arena_t *a)
{
    fl_resource_t *r = tsu_resource(a, "checkout");
    r->attrs = all_kinds(a);
    r->dropped_attrs = 9;
    r->schema_url = tsu_str(a, "https://opentelemetry.io/schemas/1.21.0");
    return r;
}

static fl_scope_t *full_scope(fl_arena_t *a)
{
    fl_scope_t *s = tsu_scope(a, "io.opentelemetry.http");
    s->version = tsu_str(a, "2.3.4-beta");
    s->attrs = all_kinds(a);
    s->dropped_attrs = 1;
    s->schema_url = tsu_str(a, "https://example.com/scope-schema");
    return s;
}

static void test_store_roundtrip_every_field(void **state)
{
    fixture_t *f = *state;
    fl_span_batch_t *b = tsu_batch(1);
    fl_span_t expect;
    char why[64] = "";
    full_span(f->m, &expect, full_resource(f->m), full_scope(f->m));
    b->spans[0] = expect;
    tsu_done_t d;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 1);
    assert_int_equal(d.dups, 0);

    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, expect.trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    if (!tsu_span_eq(&expect, &got[0], why, sizeof(why)))
        fail_msg("span differs in %s", why);
    /* Strings come back NUL-terminated and the resource knows its service. */
    assert_string_equal(got[0].name.ptr, "GET /full");
    assert_string_equal(got[0].resource->service_name.ptr, "checkout");

    /* And again after a restart. */
    reopen(f, NULL);
    fl_arena_reset(f->a);
    assert_int_equal(fl_store_get_trace(f->s, expect.trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    if (!tsu_span_eq(&expect, &got[0], why, sizeof(why)))
        fail_msg("span differs after reopen in %s", why);
}

static void test_store_roundtrip_edge_values(void **state)
{
    fixture_t *f = *state;
    fl_span_batch_t *b = tsu_batch(4);
    fl_span_t expect[4];
    char why[64];
    const fl_resource_t *res = tsu_resource(f->m, "edge");
    /* No resource / scope at all, odd kinds and status codes, end before start, zero and
     * huge timestamps, a parent outside the batch. */
    tsu_span(f->m, &expect[0], 5, 1, 0, NULL, NULL, "", 0, 0, 0);
    expect[0].attrs.n = 0;
    expect[0].kind = 42;
    expect[0].status_code = -7;
    tsu_span(f->m, &expect[1], 5, 2, 1, res, NULL, "late", UINT64_MAX - 5, 5, 1);
    tsu_span(f->m, &expect[2], 5, 3, 12345, res, NULL, "backwards", 1000, 0, 2);
    expect[2].end_ns = 10; /* ends before it starts */
    tsu_span(f->m, &expect[3], 5, 4, 2, res, NULL, "same-start", 1000, 3, 0);
    memcpy(b->spans, expect, sizeof(expect));
    assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);

    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, expect[0].trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 4);
    /* Ordered by start time, then span id. */
    const fl_span_t *order[4] = {&expect[0], NULL, NULL, &expect[1]};
    int c = memcmp(expect[2].span_id, expect[3].span_id, 8);
    order[1] = c < 0 ? &expect[2] : &expect[3];
    order[2] = c < 0 ? &expect[3] : &expect[2];
    for (int i = 0; i < 4; i++)
        if (!tsu_span_eq(order[i], &got[i], why, sizeof(why)))
            fail_msg("span %d differs in %s", i, why);
    assert_null(got[0].resource);
    assert_null(got[0].scope);
}

/* ---------------------------------------------------------------- writer gate */

/* A done callback that parks the writer thread until the test opens the gate, so the
 * batches submitted meanwhile are queued and taken as one group. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;
    int open;
} gate_t;

static void gate_cb(void *ctx, int status, size_t stored, size_t dups)
{
    gate_t *g = ctx;
    (void)status;
    (void)stored;
    (void)dups;
    pthread_mutex_lock(&g->mu);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---------------------------------------------------------------- dedup */

static void test_store_dedup_batch_group_reopen(void **state)
{
    fixture_t *f = *state;
    const fl_resource_t *res = tsu_resource(f->m, "svc");
    fl_span_t sp[3];
    for (int i = 0; i < 3; i++)
        tsu_span(f->m, &sp[i], 100, (uint64_t)i + 1, 0, res, NULL, "op", 1000 + i, 10, 0);

    /* Within one batch: the second copy is a duplicate. */
    fl_span_batch_t *b = tsu_batch(4);
    b->spans[0] = sp[0];
    b->spans[1] = sp[1];
    b->spans[2] = sp[0];
    b->spans[3] = sp[0];
    tsu_done_t d;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 2);
    assert_int_equal(d.dups, 2);

    /* Across batches. */
    b = tsu_batch(2);
    b->spans[0] = sp[1];
    b->spans[1] = sp[2];
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 1);
    assert_int_equal(d.dups, 1);

    /* Across batches of one group: park the writer so both land in one commit. */
    fl_span_t sp4, sp5;
    tsu_span(f->m, &sp4, 100, 4, 0, res, NULL, "op", 2000, 10, 0);
    tsu_span(f->m, &sp5, 100, 5, 0, res, NULL, "op", 2001, 10, 0);
    tsu_done_t d1 = {0}, d2 = {0};
    gate_t g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(fl_store_submit_take(f->s, tsu_batch(0), gate_cb, &g), FL_OK);
    gate_wait_entered(&g);
    fl_span_batch_t *b1 = tsu_batch(2), *b2 = tsu_batch(2);
    b1->spans[0] = sp4;
    b1->spans[1] = sp5;
    b2->spans[0] = sp5;
    b2->spans[1] = sp4;
    assert_int_equal(fl_store_submit_take(f->s, b1, tsu_done_cb, &d1), FL_OK);
    assert_int_equal(fl_store_submit_take(f->s, b2, tsu_done_cb, &d2), FL_OK);
    uint64_t commits_before;
    fl_store_stats_t st;
    fl_store_stats(f->s, &st);
    commits_before = st.commits;
    gate_open(&g);
    fl_store_flush(f->s);
    fl_store_stats(f->s, &st);
    assert_int_equal(st.commits, commits_before + 1); /* one group, one commit */
    assert_int_equal(d1.status, FL_OK);
    assert_int_equal(d2.status, FL_OK);
    assert_int_equal(d1.stored + d2.stored, 2);
    assert_int_equal(d1.dups + d2.dups, 2);
    assert_int_equal(d1.stored, 2); /* the first submitted copy wins */

    fl_store_stats(f->s, &st);
    assert_int_equal(st.spans_stored, 5);
    assert_int_equal(st.spans_duplicate, 5);

    /* After a restart the window is rebuilt from the newest blocks. */
    reopen(f, NULL);
    b = tsu_batch(3);
    b->spans[0] = sp[0];
    b->spans[1] = sp[2];
    b->spans[2] = sp4;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 0);
    assert_int_equal(d.dups, 3);
    fl_store_stats(f->s, &st);
    assert_int_equal(st.spans_stored, 5);

    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, sp[0].trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 5);
}

/* The ingest window remembers at least the last dedup_window_spans keys while the oldest
 * generation is swept out a few slots per insert: every span re-sent from the last window
 * is a duplicate at every point of many generations, and one from far beyond it is not. */
static void test_store_dedup_window(void **state)
{
    fixture_t *f = *state;
    const size_t window = 600, total = 9000, per_batch = 150;
    fl_store_opts_t o = {.dedup_window_spans = window};
    reopen(f, &o);
    const fl_resource_t *res = tsu_resource(f->m, "svc");
    fl_span_t *sp = calloc(total, sizeof(*sp));
    assert_non_null(sp);
    for (size_t i = 0; i < total; i++)
        tsu_span(f->m, &sp[i], 7000 + i / 5, i + 1, 0, res, NULL, "op", 5000 + i, 10, 0);
    uint64_t rng = 42;
    tsu_done_t d;
    for (size_t sent = 0; sent < total; sent += per_batch) {
        fl_span_batch_t *b = tsu_batch(per_batch);
        for (size_t k = 0; k < per_batch; k++)
            b->spans[k] = sp[sent + k];
        assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
        assert_int_equal(d.stored, per_batch);
        /* 40 random spans of the last window, re-sent: all duplicates. */
        size_t upto = sent + per_batch, from = upto > window ? upto - window : 0;
        b = tsu_batch(40);
        for (size_t k = 0; k < 40; k++)
            b->spans[k] = sp[from + (size_t)tsu_below(&rng, upto - from)];
        assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
        assert_int_equal(d.stored, 0);
        assert_int_equal(d.dups, 40);
    }
    /* The first 1000 are long gone from the window (at most 7/6 of it is held): stored
     * again (reads still show each span once). */
    fl_span_batch_t *b = tsu_batch(1000);
    for (size_t k = 0; k < 1000; k++)
        b->spans[k] = sp[k];
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 1000);
    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, sp[0].trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 5);
    free(sp);
}

static void test_store_dedup_at_read(void **state)
{
    fixture_t *f = *state;
    /* A tiny window: an old duplicate gets past ingest and must be merged at read. */
    fl_store_opts_t o = {.dedup_window_spans = 3};
    reopen(f, &o);
    const fl_resource_t *res = tsu_resource(f->m, "svc");
    fl_span_t first, again;
    tsu_span(f->m, &first, 200, 1, 0, res, NULL, "original", 5000, 100, 0);
    again = first;
    again.name = tsu_str(f->m, "resent-later"); /* differs, so we can tell which one shows */
    again.status_code = FL_STATUS_ERROR;
    fl_span_batch_t *b = tsu_batch(1);
    b->spans[0] = first;
    assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    for (int i = 0; i < 20; i++) { /* push the key out of the window */
        b = tsu_batch(1);
        tsu_span(f->m, &b->spans[0], 300 + (uint64_t)i, 1, 0, res, NULL, "filler", 6000, 1, 0);
        assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    }
    tsu_done_t d;
    b = tsu_batch(1);
    b->spans[0] = again;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, 1); /* not caught at ingest */

    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, first.trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].name.ptr, "original");

    fl_trace_query_t q = {.service = "svc", .operation = "original"};
    fl_trace_summary_t *sum;
    size_t ns;
    assert_int_equal(fl_store_search_traces(f->s, &q, f->a, &sum, &ns), FL_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(sum[0].n_spans, 1);
    assert_int_equal(sum[0].n_errors, 0);
    /* A restart with the small window does not change what reads show. */
    reopen(f, &o);
    assert_int_equal(fl_store_get_trace(f->s, first.trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].name.ptr, "original");
}

/* ---------------------------------------------------------------- search */

/* Ten traces: trace t has a root in "frontend" starting at t*1000, a child in "backend"
 * ("db.query") and, for odd t, an erroring child in "payment" of duration t*100. */
static void load_search_data(fixture_t *f)
{
    const fl_resource_t *fe = tsu_resource(f->m, "frontend");
    const fl_resource_t *be = tsu_resource(f->m, "backend");
    const fl_resource_t *pay = tsu_resource(f->m, "payment");
    const fl_scope_t *sc = tsu_scope(f->m, "lib");
    for (uint64_t t = 1; t <= 10; t++) {
        fl_span_batch_t *b = tsu_batch(t % 2 ? 3 : 2);
        uint64_t st = t * 1000;
        tsu_span(b->arena, &b->spans[0], t, t * 10 + 1, 0, fe, sc, "GET /home", st, 500, 0);
        tsu_span(b->arena, &b->spans[1], t, t * 10 + 2, t * 10 + 1, be, sc, "db.query", st + 10, 50,
                 0);
        if (t % 2)
            tsu_span(b->arena, &b->spans[2], t, t * 10 + 3, t * 10 + 1, pay, sc, "charge", st + 20,
                     t * 100, FL_STATUS_ERROR);
        assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    }
}

static int trace_no(const fl_trace_summary_t *s)
{
    uint8_t id[16];
    for (int t = 1; t <= 10; t++) {
        tsu_id(id, 16, (uint64_t)t, 0x1111);
        if (memcmp(id, s->trace_id, 16) == 0)
            return t;
    }
    return -1;
}

static void expect_traces(fixture_t *f, const fl_trace_query_t *q, const int *want, size_t n)
{
    fl_trace_summary_t *s;
    size_t ns;
    assert_int_equal(fl_store_search_traces(f->s, q, f->a, &s, &ns), FL_OK);
    if (ns != n) {
        for (size_t i = 0; i < ns; i++)
            fprintf(stderr, "got trace %d\n", trace_no(&s[i]));
    }
    assert_int_equal(ns, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(trace_no(&s[i]), want[i]);
}

static void test_store_search_filters(void **state)
{
    fixture_t *f = *state;
    load_search_data(f);

    /* No filter: newest first, default limit 20 covers all ten. */
    int all[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
    fl_trace_query_t q = {0};
    expect_traces(f, &q, all, 10);
    expect_traces(f, NULL, all, 10);

    /* Limit. */
    q = (fl_trace_query_t){.limit = 3};
    int top3[] = {10, 9, 8};
    expect_traces(f, &q, top3, 3);

    /* Service only. */
    q = (fl_trace_query_t){.service = "payment"};
    int odd[] = {9, 7, 5, 3, 1};
    expect_traces(f, &q, odd, 5);
    q = (fl_trace_query_t){.service = "nope"};
    expect_traces(f, &q, NULL, 0);

    /* Operation only, and operation of another service (no match). */
    q = (fl_trace_query_t){.operation = "charge"};
    expect_traces(f, &q, odd, 5);
    q = (fl_trace_query_t){.service = "frontend", .operation = "charge"};
    expect_traces(f, &q, NULL, 0);
    q = (fl_trace_query_t){.service = "backend", .operation = "db.query", .limit = 2};
    int be2[] = {10, 9};
    expect_traces(f, &q, be2, 2);

    /* Time range on span start (inclusive both ends). */
    q = (fl_trace_query_t){.start_ns = 3000, .end_ns = 5000};
    int mid[] = {5, 4, 3};
    expect_traces(f, &q, mid, 3);
    q = (fl_trace_query_t){.start_ns = 3001, .end_ns = 5000};
    int mid2[] = {5, 4, 3}; /* trace 3's children start at 3010 / 3020 */
    expect_traces(f, &q, mid2, 3);
    q = (fl_trace_query_t){.service = "frontend", .start_ns = 3001, .end_ns = 5000};
    int mid3[] = {5, 4};
    expect_traces(f, &q, mid3, 2);
    q = (fl_trace_query_t){.start_ns = 9000};
    int late[] = {10, 9};
    expect_traces(f, &q, late, 2);
    q = (fl_trace_query_t){.end_ns = 1999};
    int early[] = {1};
    expect_traces(f, &q, early, 1);
    q = (fl_trace_query_t){.start_ns = 5000, .end_ns = 4000};
    expect_traces(f, &q, NULL, 0);

    /* Minimum duration: roots last 500; charge spans t*100. */
    q = (fl_trace_query_t){.min_duration_ns = 501};
    int slow[] = {9, 7};
    expect_traces(f, &q, slow, 2);
    q = (fl_trace_query_t){.min_duration_ns = 500};
    expect_traces(f, &q, all, 10);
    q = (fl_trace_query_t){.service = "payment", .min_duration_ns = 300};
    int slowpay[] = {9, 7, 5, 3};
    expect_traces(f, &q, slowpay, 4);

    /* Errors only. */
    q = (fl_trace_query_t){.errors_only = 1};
    expect_traces(f, &q, odd, 5);
    q = (fl_trace_query_t){.service = "frontend", .errors_only = 1};
    expect_traces(f, &q, NULL, 0);

    /* Everything combined. */
    q = (fl_trace_query_t){.service = "payment",
                           .operation = "charge",
                           .start_ns = 2000,
                           .end_ns = 8000,
                           .min_duration_ns = 400,
                           .errors_only = 1,
                           .limit = 2};
    int comb[] = {7, 5};
    expect_traces(f, &q, comb, 2);

    /* Summary contents. */
    fl_trace_summary_t *s;
    size_t ns;
    q = (fl_trace_query_t){.service = "payment", .limit = 1};
    assert_int_equal(fl_store_search_traces(f->s, &q, f->a, &s, &ns), FL_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(trace_no(&s[0]), 9);
    assert_string_equal(s[0].root_service, "frontend");
    assert_string_equal(s[0].root_name, "GET /home");
    assert_int_equal(s[0].start_ns, 9000);
    assert_int_equal(s[0].end_ns, 9020 + 900);
    assert_int_equal(s[0].n_spans, 3);
    assert_int_equal(s[0].n_errors, 1);
    assert_int_equal(s[0].n_services, 3);
    assert_string_equal(s[0].services[0], "backend");
    assert_string_equal(s[0].services[1], "frontend");
    assert_string_equal(s[0].services[2], "payment");
}

static void test_store_search_newest_across_blocks(void **state)
{
    fixture_t *f = *state;
    const fl_resource_t *res = tsu_resource(f->m, "svc");
    /* Ingested out of time order, one batch each: blocks whose time ranges interleave. */
    uint64_t times[] = {50, 10, 90, 30, 70, 20, 80, 40, 60, 100};
    for (int i = 0; i < 10; i++) {
        fl_span_batch_t *b = tsu_batch(1);
        tsu_span(b->arena, &b->spans[0], (uint64_t)i + 1, 1, 0, res, NULL, "op", times[i] * 1000, 5,
                 0);
        assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    }
    fl_trace_query_t q = {.service = "svc", .limit = 4};
    fl_trace_summary_t *s;
    size_t ns;
    assert_int_equal(fl_store_search_traces(f->s, &q, f->a, &s, &ns), FL_OK);
    assert_int_equal(ns, 4);
    uint64_t want[] = {100, 90, 80, 70};
    for (int i = 0; i < 4; i++)
        assert_int_equal(s[i].start_ns, want[i] * 1000);
}

/* ---------------------------------------------------------------- services */

static void test_store_list_services(void **state)
{
    fixture_t *f = *state;
    fl_service_info_t *sv;
    size_t n;
    assert_int_equal(fl_store_list_services(f->s, f->a, &sv, &n), FL_OK);
    assert_int_equal(n, 0);
    load_search_data(f);
    assert_int_equal(fl_store_list_services(f->s, f->a, &sv, &n), FL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(sv[0].name, "backend");
    assert_int_equal(sv[0].n_operations, 1);
    assert_string_equal(sv[0].operations[0], "db.query");
    assert_int_equal(sv[0].span_count, 10);
    assert_string_equal(sv[1].name, "frontend");
    assert_int_equal(sv[1].span_count, 10);
    assert_string_equal(sv[2].name, "payment");
    assert_int_equal(sv[2].span_count, 5);

    /* A second operation, and a span with no resource (unknown_service). */
    fl_span_batch_t *b = tsu_batch(2);
    tsu_span(b->arena, &b->spans[0], 50, 1, 0, tsu_resource(b->arena, "backend"), NULL, "cache.get",
             1, 1, 0);
    tsu_span(b->arena, &b->spans[1], 50, 2, 0, NULL, NULL, "orphan", 1, 1, 0);
    assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    reopen(f, NULL); /* the summary table persists */
    assert_int_equal(fl_store_list_services(f->s, f->a, &sv, &n), FL_OK);
    assert_int_equal(n, 4);
    assert_string_equal(sv[0].name, "backend");
    assert_int_equal(sv[0].n_operations, 2);
    assert_string_equal(sv[0].operations[0], "cache.get");
    assert_string_equal(sv[0].operations[1], "db.query");
    assert_int_equal(sv[0].span_count, 11);
    assert_string_equal(sv[3].name, "unknown_service");
    assert_string_equal(sv[3].operations[0], "orphan");
}

/* ---------------------------------------------------------------- persistence, stats */

static void test_store_persistence_and_stats(void **state)
{
    fixture_t *f = *state;
    load_search_data(f);
    fl_store_stats_t st;
    fl_store_stats(f->s, &st);
    assert_int_equal(st.spans_stored, 25);
    assert_int_equal(st.batches_committed, 10);
    assert_true(st.commits >= 1);
    assert_int_equal(st.watermark_ns, 10000 + 500); /* trace 10 root end */
    assert_int_equal(st.queue_spans, 0);
    assert_true(st.db_bytes > 0);

    reopen(f, NULL);
    fl_store_stats(f->s, &st);
    assert_int_equal(st.spans_stored, 25);
    assert_int_equal(st.watermark_ns, 10000 + 500); /* trace 10 root end */
    int all[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
    expect_traces(f, NULL, all, 10);
    uint8_t id[16];
    tsu_id(id, 16, 4, 0x1111);
    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].name.ptr, "GET /home");
    assert_string_equal(got[1].resource->service_name.ptr, "backend");
    tsu_id(id, 16, 11, 0x1111);
    assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_ERR_NOT_FOUND);
}

/* ---------------------------------------------------------------- big traces and batches */

static void test_store_big_trace_and_batch(void **state)
{
    fixture_t *f = *state;
    const fl_resource_t *res = tsu_resource(f->m, "big");
    /* One trace bigger than a block, plus 3000 small traces, in one batch. */
    size_t big = 20000, small = 3000 * 3;
    fl_span_batch_t *b = tsu_batch(big + small);
    for (size_t i = 0; i < big; i++)
        tsu_span(b->arena, &b->spans[i], 1, i + 1, i ? 1 : 0, res, NULL, "step", 1000000 - i * 7, i,
                 0);
    for (size_t i = 0; i < small; i++)
        tsu_span(b->arena, &b->spans[big + i], 1000 + i / 3, i + 1, 0, res, NULL, "small", 5000 + i,
                 1, 0);
    tsu_done_t d;
    assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
    assert_int_equal(d.stored, big + small);
    uint8_t id[16];
    tsu_id(id, 16, 1, 0x1111);
    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, big);
    for (size_t i = 1; i < n; i++)
        assert_true(got[i - 1].start_ns <= got[i].start_ns);
    assert_int_equal(got[0].start_ns, 1000000 - (big - 1) * 7);
    assert_int_equal(got[0].attrs.items[2].value.u.i, (int64_t)big);
    for (size_t t = 1000; t < 4000; t += 499) {
        fl_arena_reset(f->a);
        tsu_id(id, 16, t, 0x1111);
        assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_OK);
        assert_int_equal(n, 3);
    }
    fl_trace_query_t q = {.operation = "step", .limit = 1};
    fl_trace_summary_t *s;
    size_t ns;
    assert_int_equal(fl_store_search_traces(f->s, &q, f->a, &s, &ns), FL_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(s[0].n_spans, big);
}

/* ---------------------------------------------------------------- queue limits */

static void test_store_busy_when_queue_full(void **state)
{
    fixture_t *f = *state;
    fl_store_opts_t o = {.max_queue_spans = 10};
    reopen(f, &o);
    gate_t g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    const fl_resource_t *res = tsu_resource(f->m, "q");

    fl_span_batch_t *b = tsu_batch(5);
    for (int i = 0; i < 5; i++)
        tsu_span(b->arena, &b->spans[i], 1, (uint64_t)i + 1, 0, res, NULL, "x", 1, 1, 0);
    assert_int_equal(fl_store_submit_take(f->s, b, gate_cb, &g), FL_OK);
    gate_wait_entered(&g); /* the writer is now parked in our callback */

    tsu_done_t d1 = {0}, d2 = {0};
    b = tsu_batch(5);
    for (int i = 0; i < 5; i++)
        tsu_span(b->arena, &b->spans[i], 2, (uint64_t)i + 1, 0, res, NULL, "x", 1, 1, 0);
    assert_false(fl_store_would_block(f->s, 5));
    assert_int_equal(fl_store_submit_take(f->s, b, tsu_done_cb, &d1), FL_OK);
    assert_true(fl_store_would_block(f->s, 1));
    b = tsu_batch(1);
    tsu_span(b->arena, &b->spans[0], 3, 1, 0, res, NULL, "x", 1, 1, 0);
    assert_int_equal(fl_store_submit_take(f->s, b, tsu_done_cb, &d2), FL_ERR_BUSY);
    fl_store_stats_t st;
    fl_store_stats(f->s, &st);
    assert_int_equal(st.queue_spans, 10);
    assert_int_equal(st.queue_batches, 2);

    gate_open(&g);
    fl_store_flush(f->s);
    assert_int_equal(d1.called, 1);
    assert_int_equal(d1.status, FL_OK);
    assert_int_equal(d2.called, 0); /* refused batches are never called back */
    assert_false(fl_store_would_block(f->s, 10));

    /* Once drained, the same batch is accepted; an empty queue takes an oversized batch. */
    b = tsu_batch(30);
    for (int i = 0; i < 30; i++)
        tsu_span(b->arena, &b->spans[i], 3, (uint64_t)i + 1, 0, res, NULL, "x", 1, 1, 0);
    assert_int_equal(tsu_put(f->s, b, &d2), FL_OK);
    assert_int_equal(d2.stored, 30);
}

static void test_store_empty_and_invalid_batches(void **state)
{
    fixture_t *f = *state;
    tsu_done_t d;
    assert_int_equal(fl_store_submit_take(f->s, NULL, tsu_done_cb, &d), FL_ERR_INVALID);
    assert_int_equal(tsu_put(f->s, tsu_batch(0), &d), FL_OK);
    assert_int_equal(d.stored, 0);
    assert_int_equal(d.dups, 0);

    /* A value nested deeper than the store accepts is refused with its batch only. */
    fl_span_batch_t *bad = tsu_batch(1), *good = tsu_batch(1);
    tsu_span(bad->arena, &bad->spans[0], 9, 1, 0, NULL, NULL, "deep", 1, 1, 0);
    fl_value_t *v = &bad->spans[0].attrs.items[0].value;
    for (int i = 0; i < 200; i++) {
        v->type = FL_VAL_ARRAY;
        v->u.arr.n = 1;
        v->u.arr.items = fl_arena_calloc(bad->arena, 1, sizeof(fl_value_t));
        v = v->u.arr.items;
    }
    tsu_span(good->arena, &good->spans[0], 10, 1, 0, NULL, NULL, "fine", 1, 1, 0);
    tsu_done_t db = {0}, dg = {0};
    assert_int_equal(fl_store_submit_take(f->s, bad, tsu_done_cb, &db), FL_OK);
    assert_int_equal(fl_store_submit_take(f->s, good, tsu_done_cb, &dg), FL_OK);
    fl_store_flush(f->s);
    assert_int_equal(db.status, FL_ERR_INVALID);
    assert_int_equal(dg.status, FL_OK);
    assert_int_equal(dg.stored, 1);
    uint8_t id[16];
    fl_span_t *got;
    size_t n;
    tsu_id(id, 16, 9, 0x1111);
    assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_ERR_NOT_FOUND);
    tsu_id(id, 16, 10, 0x1111);
    assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n), FL_OK);
}

/* ---------------------------------------------------------------- compaction */

static void check_small_traces(fixture_t *f, const fl_span_t *model, size_t n_traces)
{
    char why[64];
    for (size_t t = 0; t < n_traces; t++) {
        fl_span_t *got;
        size_t n;
        assert_int_equal(fl_store_get_trace(f->s, model[t * 7].trace_id, f->a, &got, &n), FL_OK);
        assert_int_equal(n, 7);
        for (size_t i = 0; i < 7; i++) /* model spans of a trace start in span order */
            if (!tsu_span_eq(&model[t * 7 + i], &got[i], why, sizeof(why)))
                fail_msg("trace %zu span %zu differs in %s", t, i, why);
        fl_arena_reset(f->a);
    }
}

static void test_store_compaction(void **state)
{
    fixture_t *f = *state;
    fl_store_opts_t o = {.dedup_window_spans = 3}; /* let resends through to storage */
    reopen(f, &o);
    enum { TRACES = 120 };
    fl_span_t *model = fl_arena_calloc(f->m, TRACES * 7, sizeof(fl_span_t));
    const fl_resource_t *res[2] = {tsu_resource(f->m, "alpha"), tsu_resource(f->m, "beta")};
    for (size_t t = 0; t < TRACES; t++)
        for (size_t i = 0; i < 7; i++)
            tsu_span(f->m, &model[t * 7 + i], 500 + t, i + 1, i ? 1 : 0, res[i % 2], NULL,
                     i ? "child" : "root", 1000000 * (t + 1) + i, 10 + i,
                     i == 6 ? FL_STATUS_ERROR : 0);
    /* One small commit per trace: a block each, merged by the idle writer. */
    for (size_t t = 0; t < TRACES; t++) {
        fl_span_batch_t *b = tsu_batch(7);
        memcpy(b->spans, &model[t * 7], 7 * sizeof(fl_span_t));
        assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    }
    fl_store_stats_t st;
    fl_store_stats(f->s, &st);
    assert_true(st.compactions >= 10);
    assert_true(st.blocks <= TRACES / 4);
    assert_int_equal(st.spans_stored, TRACES * 7);
    check_small_traces(f, model, TRACES);

    /* Resend 10 old traces one by one: they pass the tiny window, are stored twice, and
     * merging drops the copies again. Reads show each span once throughout. */
    for (size_t t = 0; t < 10; t++) {
        fl_span_batch_t *b = tsu_batch(7);
        memcpy(b->spans, &model[t * 7], 7 * sizeof(fl_span_t));
        tsu_done_t d;
        assert_int_equal(tsu_put(f->s, b, &d), FL_OK);
        assert_int_equal(d.stored, 7);
    }
    check_small_traces(f, model, TRACES);
    fl_store_stats(f->s, &st);
    assert_true(st.spans_stored >= TRACES * 7);

    fl_trace_query_t q = {.service = "alpha", .errors_only = 1, .limit = 1000};
    fl_trace_summary_t *sum;
    size_t ns;
    assert_int_equal(fl_store_search_traces(f->s, &q, f->a, &sum, &ns), FL_OK);
    assert_int_equal(ns, TRACES);
    for (size_t i = 0; i < ns; i++) {
        assert_int_equal(sum[i].n_spans, 7);
        assert_int_equal(sum[i].n_errors, 1);
        assert_string_equal(sum[i].root_name, "root");
    }
    fl_service_info_t *sv;
    size_t nsv;
    assert_int_equal(fl_store_list_services(f->s, f->a, &sv, &nsv), FL_OK);
    assert_int_equal(nsv, 2);

    /* After a restart the run of small blocks is picked up again and keeps merging. */
    reopen(f, &o);
    uint64_t blocks_before;
    fl_store_stats(f->s, &st);
    blocks_before = st.blocks;
    for (size_t t = 0; t < 20; t++) {
        fl_span_batch_t *b = tsu_batch(1);
        tsu_span(b->arena, &b->spans[0], 900 + t, 1, 0, res[0], NULL, "late", 5, 1, 0);
        assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    }
    fl_store_stats(f->s, &st);
    assert_true(st.compactions >= 2);
    assert_true(st.blocks <= blocks_before + 8);
    check_small_traces(f, model, TRACES);
    char err[128];
    assert_int_equal(fl_store_integrity_check(f->s, err, sizeof(err)), FL_OK);
}

/* A chain of arrays/kvlists nested `depth` deep (the outermost value counts as 1). */
static void nest(fl_arena_t *a, fl_value_t *v, int depth)
{
    for (int i = 1; i < depth; i++) {
        if (i % 2) {
            v->type = FL_VAL_ARRAY;
            v->u.arr.n = 1;
            v->u.arr.items = fl_arena_calloc(a, 1, sizeof(fl_value_t));
            v = v->u.arr.items;
        } else {
            v->type = FL_VAL_KVLIST;
            v->u.kv.n = 1;
            v->u.kv.items = fl_arena_calloc(a, 1, sizeof(fl_kv_t));
            v->u.kv.items[0].key = tsu_str(a, "k");
            v = &v->u.kv.items[0].value;
        }
    }
    v->type = FL_VAL_INT;
    v->u.i = depth;
}

static void test_store_deep_values(void **state)
{
    fixture_t *f = *state;
    char why[64];
    /* 100 levels is fine and round-trips, in span, event and resource attributes. */
    fl_resource_t *res = tsu_resource(f->m, "deep");
    nest(f->m, &res->attrs.items[1].value, 100);
    fl_span_t sp;
    tsu_span(f->m, &sp, 20, 1, 0, res, NULL, "deep", 1, 1, 0);
    nest(f->m, &sp.attrs.items[0].value, 100);
    sp.n_events = 1;
    sp.events = fl_arena_calloc(f->m, 1, sizeof(fl_event_t));
    sp.events[0].attrs.n = 1;
    sp.events[0].attrs.items = fl_arena_calloc(f->m, 1, sizeof(fl_kv_t));
    sp.events[0].attrs.items[0].key = tsu_str(f->m, "e");
    nest(f->m, &sp.events[0].attrs.items[0].value, 128);
    fl_span_batch_t *b = tsu_batch(1);
    b->spans[0] = sp;
    assert_int_equal(tsu_put(f->s, b, NULL), FL_OK);
    fl_span_t *got;
    size_t n;
    assert_int_equal(fl_store_get_trace(f->s, sp.trace_id, f->a, &got, &n), FL_OK);
    assert_int_equal(n, 1);
    if (!tsu_span_eq(&sp, &got[0], why, sizeof(why)))
        fail_msg("deep span differs in %s", why);

    /* 129 levels in an event, or in a resource: that batch alone is refused. */
    fl_span_batch_t *bad1 = tsu_batch(1), *bad2 = tsu_batch(1), *good = tsu_batch(1);
    tsu_span(bad1->arena, &bad1->spans[0], 21, 1, 0, NULL, NULL, "x", 1, 1, 0);
    bad1->spans[0].n_events = 1;
    bad1->spans[0].events = fl_arena_calloc(bad1->arena, 1, sizeof(fl_event_t));
    bad1->spans[0].events[0].attrs.n = 1;
    bad1->spans[0].events[0].attrs.items = fl_arena_calloc(bad1->arena, 1, sizeof(fl_kv_t));
    nest(bad1->arena, &bad1->spans[0].events[0].attrs.items[0].value, 129);
    fl_resource_t *deep = tsu_resource(bad2->arena, "deeper");
    nest(bad2->arena, &deep->attrs.items[1].value, 129);
    tsu_span(bad2->arena, &bad2->spans[0], 22, 1, 0, deep, NULL, "x", 1, 1, 0);
    tsu_span(good->arena, &good->spans[0], 23, 1, 0, NULL, NULL, "x", 1, 1, 0);
    tsu_done_t d1 = {0}, d2 = {0}, d3 = {0};
    assert_int_equal(fl_store_submit_take(f->s, bad1, tsu_done_cb, &d1), FL_OK);
    assert_int_equal(fl_store_submit_take(f->s, good, tsu_done_cb, &d3), FL_OK);
    assert_int_equal(fl_store_submit_take(f->s, bad2, tsu_done_cb, &d2), FL_OK);
    fl_store_flush(f->s);
    assert_int_equal(d1.status, FL_ERR_INVALID);
    assert_int_equal(d2.status, FL_ERR_INVALID);
    assert_int_equal(d3.status, FL_OK);
    assert_int_equal(d3.stored, 1);
    uint8_t id[16];
    for (uint64_t t = 21; t <= 23; t++) {
        tsu_id(id, 16, t, 0x1111);
        assert_int_equal(fl_store_get_trace(f->s, id, f->a, &got, &n),
                         t == 23 ? FL_OK : FL_ERR_NOT_FOUND);
    }
    fl_service_info_t *sv;
    size_t nsv;
    assert_int_equal(fl_store_list_services(f->s, f->a, &sv, &nsv), FL_OK);
    for (size_t i = 0; i < nsv; i++)
        assert_string_not_equal(sv[i].name, "deeper");
}

static void test_store_open_errors(void **state)
{
    (void)state;
    fl_store_t *s = NULL;
    char err[256];
    fl_store_opts_t o = {0};
    assert_int_equal(fl_store_open(&o, &s, err, sizeof(err)), FL_ERR_INVALID);
    assert_null(s);
    o.path = "/nonexistent-dir-fl/sub/faultline.db";
    assert_int_not_equal(fl_store_open(&o, &s, err, sizeof(err)), FL_OK);
    assert_null(s);
    assert_true(strlen(err) > 0);
    fl_store_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_roundtrip_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_roundtrip_edge_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_dedup_batch_group_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_dedup_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_dedup_at_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_search_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_search_newest_across_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_list_services, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_persistence_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_big_trace_and_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_busy_when_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_empty_and_invalid_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_deep_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_compaction, setup, teardown),
        cmocka_unit_test(test_store_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
