/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for analysis/: the sketch, EWMA, naming, self time, edge pairing across batches,
 * virtual peers, the dependency graph, the window bound, persistence, and the OTLP fixtures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/analysis.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1700000000ull * SEC) /* a bucket boundary */

/* ---------------------------------------------------------------- span builder */

static fl_resource_t resources[32];
static char res_names[32][64];
static int n_resources;

static const fl_resource_t *res(const char *svc)
{
    for (int i = 0; i < n_resources; i++)
        if (strcmp(res_names[i], svc) == 0)
            return &resources[i];
    assert_true(n_resources < 32);
    snprintf(res_names[n_resources], sizeof(res_names[0]), "%s", svc);
    resources[n_resources].service_name = fl_str(res_names[n_resources]);
    return &resources[n_resources++];
}

typedef struct tb {
    fl_arena_t *ar;
    fl_span_t *s;
    size_t n, cap;
} tb_t;

static void tb_init(tb_t *b)
{
    memset(b, 0, sizeof(*b));
    b->ar = fl_arena_new(0);
    b->cap = 4096;
    b->s = calloc(b->cap, sizeof(*b->s));
}

static void tb_free(tb_t *b)
{
    fl_arena_free(b->ar);
    free(b->s);
}

static void put_id(uint8_t *out, uint64_t v, size_t n)
{
    memset(out, 0, n);
    memcpy(out, &v, 8);
}

/* start/end relative to T0 in nanoseconds */
static fl_span_t *sp(tb_t *b, const char *svc, uint64_t trace, uint64_t id, uint64_t parent,
                     int kind, const char *name, uint64_t start, uint64_t end)
{
    if (b->n == b->cap) {
        b->cap *= 2;
        b->s = realloc(b->s, b->cap * sizeof(*b->s));
    }
    fl_span_t *s = &b->s[b->n++];
    memset(s, 0, sizeof(*s));
    put_id(s->trace_id, trace, 16);
    put_id(s->span_id, id, 8);
    if (parent)
        put_id(s->parent_span_id, parent, 8);
    s->kind = kind;
    s->name = fl_str(fl_arena_strdup(b->ar, name));
    s->start_ns = T0 + start;
    s->end_ns = T0 + end;
    s->resource = res(svc);
    s->attrs.items = fl_arena_calloc(b->ar, 8, sizeof(fl_kv_t));
    return s;
}

static void attr_s(tb_t *b, fl_span_t *s, const char *k, const char *v)
{
    fl_kv_t *kv = &s->attrs.items[s->attrs.n++];
    kv->key = fl_str(fl_arena_strdup(b->ar, k));
    kv->value.type = FL_VAL_STRING;
    kv->value.u.str = fl_str(fl_arena_strdup(b->ar, v));
}

static void attr_i(tb_t *b, fl_span_t *s, const char *k, int64_t v)
{
    fl_kv_t *kv = &s->attrs.items[s->attrs.n++];
    kv->key = fl_str(fl_arena_strdup(b->ar, k));
    kv->value.type = FL_VAL_INT;
    kv->value.u.i = v;
}

static fl_analysis_t *engine(void)
{
    fl_analysis_t *a = fl_analysis_new(NULL);
    assert_non_null(a);
    return a;
}

static void observe(fl_analysis_t *a, tb_t *b, size_t from, size_t to)
{
    assert_int_equal(fl_analysis_observe(a, b->s + from, to - from), FL_OK);
}

static void flush(fl_analysis_t *a)
{
    assert_int_equal(fl_analysis_run(a, UINT64_MAX, NULL, NULL), FL_OK);
}

static const fl_graph_edge_t *find_edge(const fl_graph_t *g, const char *from, const char *to)
{
    for (size_t i = 0; i < g->n_edges; i++)
        if (!strcmp(g->edges[i].caller_name, from) && !strcmp(g->edges[i].callee_name, to))
            return &g->edges[i];
    return NULL;
}

static const fl_graph_edge_t *find_op_edge(const fl_graph_t *g, const char *from, const char *to)
{
    for (size_t i = 0; i < g->n_op_edges; i++)
        if (!strcmp(g->op_edges[i].caller_name, from) && !strcmp(g->op_edges[i].callee_name, to))
            return &g->op_edges[i];
    return NULL;
}

static const fl_graph_node_t *find_node(const fl_graph_t *g, const char *name)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, name))
            return &g->nodes[i];
    return NULL;
}

static const fl_endpoint_metrics_t *find_metrics(const fl_analysis_metrics_t *m, const char *svc,
                                                 const char *op)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->items[i].service, svc) && !strcmp(m->items[i].operation, op))
            return &m->items[i];
    return NULL;
}

static void near(double got, double want, double rel)
{
    if (fabs(got - want) > rel * fabs(want) + 1e-9) {
        fprintf(stderr, "got %.6f want %.6f (rel %.4f)\n", got, want, rel);
        fail();
    }
}

/* ---------------------------------------------------------------- sketch */

static uint64_t rng = 88172645463325252ull;

static double u01(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static double gauss(void)
{
    double u = u01(), v = u01();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void check_quantiles(uint64_t *v, size_t n)
{
    fl_sketch_t *s = fl_sketch_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fl_sketch_add(s, v[i]), FL_OK);
    qsort(v, n, sizeof(*v), u64_cmp);
    const double qs[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        double exact = (double)v[(size_t)floor(qs[k] * (double)(n - 1))];
        double est = fl_sketch_quantile_ns(s, qs[k]);
        if (fabs(est - exact) > FL_SKETCH_REL_ACCURACY * exact + 1e-9) {
            fprintf(stderr, "q=%g exact=%.0f est=%.0f\n", qs[k], exact, est);
            fail();
        }
    }
    assert_int_equal(fl_sketch_count(s), n);
    assert_int_equal(fl_sketch_min_ns(s), v[0]);
    assert_int_equal(fl_sketch_max_ns(s), v[n - 1]);
    fl_sketch_free(s);
}

static void test_analysis_sketch_bounds(void **state)
{
    (void)state;
    size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++) /* uniform 1 ms .. 1 s */
        v[i] = (uint64_t)(MS + u01() * (SEC - MS));
    check_quantiles(v, n);
    for (size_t i = 0; i < n; i++) /* lognormal, median 20 ms, sigma 1 */
        v[i] = (uint64_t)(20.0 * MS * exp(gauss()));
    check_quantiles(v, n);
    for (size_t i = 0; i < n; i++) /* bimodal: 80 % near 5 ms, 20 % near 2 s */
        v[i] = (uint64_t)(u01() < 0.8 ? 5.0 * MS * exp(0.2 * gauss())
                                      : 2.0 * SEC * exp(0.1 * gauss()));
    check_quantiles(v, n);
    for (size_t i = 0; i < n; i++) /* tiny and huge values, zeros */
        v[i] = i % 10 == 0 ? 0 : (uint64_t)exp(u01() * 40);
    check_quantiles(v, n);
    free(v);
}

static void test_analysis_sketch_merge_encode(void **state)
{
    (void)state;
    fl_sketch_t *a = fl_sketch_new(), *b = fl_sketch_new(), *u = fl_sketch_new();
    for (int i = 0; i < 5000; i++) {
        uint64_t x = (uint64_t)(10.0 * MS * exp(gauss())),
                 y = (uint64_t)(300.0 * MS * exp(gauss()));
        fl_sketch_add(a, x);
        fl_sketch_add(b, y);
        fl_sketch_add(u, x);
        fl_sketch_add(u, y);
    }
    assert_int_equal(fl_sketch_merge(a, b), FL_OK);
    assert_int_equal(fl_sketch_count(a), fl_sketch_count(u));
    assert_int_equal(fl_sketch_sum_ns(a), fl_sketch_sum_ns(u));
    assert_int_equal(fl_sketch_bins(a), fl_sketch_bins(u));
    for (double q = 0; q <= 1.0; q += 0.05)
        assert_true(fl_sketch_quantile_ns(a, q) == fl_sketch_quantile_ns(u, q));

    fl_buf_t buf;
    fl_buf_init(&buf, 0);
    assert_int_equal(fl_sketch_encode(a, &buf), FL_OK);
    fl_sketch_t *c = fl_sketch_new();
    size_t used = 0;
    assert_int_equal(fl_sketch_decode(c, buf.data, buf.len, &used), FL_OK);
    assert_int_equal(used, buf.len);
    assert_int_equal(fl_sketch_count(c), fl_sketch_count(a));
    assert_int_equal(fl_sketch_max_ns(c), fl_sketch_max_ns(a));
    assert_true(fl_sketch_quantile_ns(c, 0.99) == fl_sketch_quantile_ns(a, 0.99));
    assert_int_equal(fl_sketch_decode(c, buf.data, buf.len - 1, NULL), FL_ERR_DECODE);
    buf.data[1] = 9;
    assert_int_equal(fl_sketch_decode(c, buf.data, buf.len, NULL), FL_ERR_UNSUPPORTED);

    /* A typical series-bucket: 100 requests, lognormal sigma 0.5, well under 1 KiB. */
    fl_sketch_t *t = fl_sketch_new();
    for (int i = 0; i < 100; i++)
        fl_sketch_add(t, (uint64_t)(25.0 * MS * exp(0.5 * gauss())));
    fl_buf_reset(&buf);
    fl_sketch_encode(t, &buf);
    fprintf(stderr, "typical bucket sketch: %zu bins, %zu bytes in memory, %zu encoded\n",
            fl_sketch_bins(t), fl_sketch_bytes(t), buf.len);
    assert_true(fl_sketch_bytes(t) < 700);
    assert_true(buf.len < 300);
    fl_buf_dispose(&buf);
    fl_sketch_free(a);
    fl_sketch_free(b);
    fl_sketch_free(c);
    fl_sketch_free(t);
    fl_sketch_free(u);
}

/* ---------------------------------------------------------------- EWMA */

static void test_analysis_ewma(void **state)
{
    (void)state;
    double alpha = fl_ewma_alpha(10 * SEC, 3600 * SEC);
    near(alpha, 1 - exp(-10.0 / 3600), 1e-12);
    fl_ewma_t e = {0};
    /* the first 1/alpha values form a plain running mean and population variance */
    double xs[] = {10, 12, 8, 11, 9};
    for (int i = 0; i < 5; i++)
        fl_ewma_update(&e, xs[i], alpha);
    near(e.mean, 10, 1e-12);
    near(e.var, 2, 1e-12);
    assert_int_equal(e.n, 5);
    /* long after warm-up a step moves it by alpha per update */
    fl_ewma_t f = {0};
    for (int i = 0; i < 5000; i++)
        fl_ewma_update(&f, 100, alpha);
    double before = f.mean;
    fl_ewma_update(&f, 200, alpha);
    near(f.mean - before, alpha * 100, 1e-9);
    /* and after 1 h of 10 s buckets it has covered 1 - 1/e of the step */
    for (int i = 1; i < 360; i++)
        fl_ewma_update(&f, 200, alpha);
    near(f.mean, 100 + 100 * (1 - exp(-1)), 0.01);
    assert_true(fl_ewma_sd(&f) > 0);
}

/* ---------------------------------------------------------------- naming */

static void check_name(const char *name, int kind, const char *route, const char *method,
                       const char *want)
{
    tb_t b;
    tb_init(&b);
    fl_span_t *s = sp(&b, "svc", 1, 1, 0, kind, name, 0, MS);
    if (route)
        attr_s(&b, s, "http.route", route);
    if (method)
        attr_s(&b, s, "http.request.method", method);
    char out[128];
    fl_analysis_op_name(s, out, sizeof(out));
    if (strcmp(out, want)) {
        fprintf(stderr, "name '%s' -> '%s', want '%s'\n", name, out, want);
        fail();
    }
    tb_free(&b);
}

static void test_analysis_naming(void **state)
{
    (void)state;
    check_name("GET /user/123", FL_KIND_SERVER, "/user/{id}", "GET", "GET /user/{id}");
    check_name("GET /user/123", FL_KIND_SERVER, NULL, NULL, "GET /user/{id}");
    check_name("GET", FL_KIND_SERVER, "/api/stock/{sku}", "GET", "GET /api/stock/{sku}");
    check_name("POST /api/checkout", FL_KIND_SERVER, "/api/checkout", "POST", "POST /api/checkout");
    check_name("GET /api/v1/items", FL_KIND_SERVER, NULL, NULL, "GET /api/v1/items");
    check_name("GET /orders/3fa85f64-5717-4562-b3fc-2c963f66afa6/items", FL_KIND_SERVER, NULL, NULL,
               "GET /orders/{id}/items");
    check_name("GET /blob/deadbeef42cafe", FL_KIND_SERVER, NULL, NULL, "GET /blob/{id}");
    check_name("GET /api/stock/SKU-1002", FL_KIND_SERVER, "/api/stock/{sku}", NULL,
               "/api/stock/{sku}");
    check_name("GET /search?q=shoes&page=2", FL_KIND_SERVER, NULL, NULL, "GET /search");
    check_name("process orders", FL_KIND_CONSUMER, NULL, NULL, "process orders");
    check_name("SELECT shop.inventory", FL_KIND_INTERNAL, NULL, NULL, "SELECT shop.inventory");
    check_name("", FL_KIND_SERVER, NULL, NULL, "unknown");
    assert_true(fl_analysis_name_has_ids("job 12345", 9));
    assert_false(fl_analysis_name_has_ids("oauth2 token", 12));

    tb_t b;
    tb_init(&b);
    char out[64];
    fl_span_t *s = sp(&b, "svc", 1, 1, 0, FL_KIND_CLIENT, "SELECT", 0, MS);
    attr_s(&b, s, "db.system", "sqlite");
    attr_s(&b, s, "db.namespace", "stock");
    attr_s(&b, s, "server.address", "db.local");
    fl_analysis_peer_name(s, out, sizeof(out));
    assert_string_equal(out, "sqlite/stock");
    attr_s(&b, s, "peer.service", "stock-db");
    fl_analysis_peer_name(s, out, sizeof(out));
    assert_string_equal(out, "stock-db");
    s = sp(&b, "svc", 1, 2, 0, FL_KIND_CLIENT, "GET", 0, MS);
    attr_s(&b, s, "server.address", "api.stripe.com");
    fl_analysis_peer_name(s, out, sizeof(out));
    assert_string_equal(out, "api.stripe.com");
    s = sp(&b, "svc", 1, 3, 0, FL_KIND_CLIENT, "GET", 0, MS);
    assert_int_equal(fl_analysis_peer_name(s, out, sizeof(out)), 0);
    tb_free(&b);
}

/* ---------------------------------------------------------------- self time */

static void test_analysis_self_time(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    tb_t b;
    tb_init(&b);
    /* Parent 0..100 ms; children 10..50 and 30..70 overlap (async), 90..120 runs past the
     * parent's end: busy = [10,70] + [90,100] = 70 ms, so self time = 30 ms. Trace 1 sends
     * the children first, trace 2 the parent first, in separate batches. */
    for (uint64_t t = 1; t <= 2; t++) {
        uint64_t base = t * 1000;
        size_t p0 = b.n;
        sp(&b, "api", t, base + 1, 0, FL_KIND_SERVER, "GET /work", 0, 100 * MS);
        size_t c0 = b.n;
        sp(&b, "api", t, base + 2, base + 1, FL_KIND_INTERNAL, "step-a", 10 * MS, 50 * MS);
        sp(&b, "api", t, base + 3, base + 1, FL_KIND_INTERNAL, "step-b", 30 * MS, 70 * MS);
        sp(&b, "api", t, base + 4, base + 1, FL_KIND_INTERNAL, "step-c", 90 * MS, 120 * MS);
        if (t == 1) {
            observe(a, &b, c0, b.n);
            observe(a, &b, p0, c0);
        } else {
            observe(a, &b, p0, c0);
            observe(a, &b, c0, b.n);
        }
    }
    flush(a);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_metrics_t m;
    assert_int_equal(fl_analysis_metrics(a, NULL, ar, &m), FL_OK);
    const fl_endpoint_metrics_t *e = find_metrics(&m, "api", "GET /work");
    assert_non_null(e);
    assert_int_equal(e->request_count, 2);
    near(e->self_p50_ms, 30, 0.011);
    near(e->self_p95_ms, 30, 0.011);
    near(e->p50_ms, 100, 0.011);
    /* internal operations get their own self time (no children: their duration) */
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(a, NULL, ar, &g), FL_OK);
    int found = 0;
    for (size_t i = 0; i < g.n_ops; i++) {
        if (!strcmp(g.ops[i].operation, "step-c")) {
            near(g.ops[i].self_p95_ms, 30, 0.011);
            assert_false(g.ops[i].entry);
            found = 1;
        }
    }
    assert_true(found);
    /* the per-trace helper agrees */
    uint64_t self[4];
    assert_int_equal(fl_analysis_trace_self_time(b.s + 4, 4, self), FL_OK);
    assert_int_equal(self[0], 30 * MS);
    assert_int_equal(self[3], 30 * MS); /* step-c, no children */
    fl_arena_free(ar);
    tb_free(&b);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- edges, gaps, peers */

static void test_analysis_edges(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    tb_t b;
    tb_init(&b);
    /* One trace, three batches, callee first: frontend -> checkout -> payment. */
    sp(&b, "payment", 7, 5, 4, FL_KIND_SERVER, "POST /api/charge", 12 * MS, 32 * MS); /* 20 */
    observe(a, &b, 0, b.n);
    size_t k = b.n;
    sp(&b, "checkout", 7, 3, 2, FL_KIND_SERVER, "POST /api/checkout", 5 * MS, 45 * MS);
    fl_span_t *cp = sp(&b, "checkout", 7, 4, 3, FL_KIND_CLIENT, "POST", 10 * MS, 35 * MS); /* 25 */
    attr_s(&b, cp, "server.address", "payment.svc");
    /* uninstrumented peers */
    fl_span_t *db = sp(&b, "checkout", 7, 6, 3, FL_KIND_CLIENT, "SELECT orders", 36 * MS, 40 * MS);
    attr_s(&b, db, "db.system", "postgresql");
    attr_s(&b, db, "db.name", "shop");
    fl_span_t *ps = sp(&b, "checkout", 7, 8, 3, FL_KIND_CLIENT, "POST", 40 * MS, 41 * MS);
    attr_s(&b, ps, "peer.service", "fraud-api");
    fl_span_t *ad = sp(&b, "checkout", 7, 9, 3, FL_KIND_CLIENT, "GET", 41 * MS, 42 * MS);
    attr_s(&b, ad, "server.address", "maps.example.com");
    observe(a, &b, k, b.n);
    k = b.n;
    sp(&b, "frontend", 7, 1, 0, FL_KIND_SERVER, "GET /checkout", 0, 50 * MS);
    sp(&b, "frontend", 7, 2, 1, FL_KIND_CLIENT, "POST", 2 * MS, 48 * MS); /* 46 vs 40 */
    observe(a, &b, k, b.n);

    /* 30 s later, a call to payment whose server span never arrives: charged to payment
     * (learned from the pair above) as unanswered, not to a virtual "payment.svc". */
    k = b.n;
    sp(&b, "checkout", 8, 13, 0, FL_KIND_SERVER, "POST /api/checkout", 30 * SEC,
       30 * SEC + 2000 * MS);
    fl_span_t *lost =
        sp(&b, "checkout", 8, 14, 13, FL_KIND_CLIENT, "POST", 30 * SEC + MS, 30 * SEC + 1999 * MS);
    attr_s(&b, lost, "server.address", "payment.svc");
    lost->status_code = FL_STATUS_ERROR;
    observe(a, &b, k, b.n);
    flush(a);

    fl_arena_t *ar = fl_arena_new(0);
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(a, NULL, ar, &g), FL_OK);
    const fl_graph_edge_t *e = find_edge(&g, "frontend", "checkout");
    assert_non_null(e);
    assert_int_equal(e->calls, 1);
    near(e->p50_ms, 46, 0.011);
    near(e->gap_p50_ms, 6, 0.011);
    e = find_edge(&g, "checkout", "payment");
    assert_non_null(e);
    assert_int_equal(e->calls, 2);
    assert_int_equal(e->unanswered, 1);
    assert_int_equal(e->errors, 1);
    near(e->gap_p50_ms, 5, 0.011); /* only the answered call has a gap */
    assert_false(e->virtual_peer);
    e = find_edge(&g, "checkout", "postgresql/shop");
    assert_non_null(e);
    assert_true(e->virtual_peer);
    near(e->p50_ms, 4, 0.011);
    assert_non_null(find_edge(&g, "checkout", "fraud-api"));
    assert_non_null(find_edge(&g, "checkout", "maps.example.com"));
    assert_null(find_node(&g, "payment.svc"));
    const fl_graph_node_t *n = find_node(&g, "postgresql/shop");
    assert_non_null(n);
    assert_true(n->virtual_peer);
    assert_false(find_node(&g, "payment")->virtual_peer);
    assert_non_null(find_op_edge(&g, "frontend:GET /checkout", "checkout:POST /api/checkout"));
    assert_non_null(find_op_edge(&g, "checkout:POST /api/checkout", "payment:POST /api/charge"));
    assert_non_null(
        find_op_edge(&g, "checkout:POST /api/checkout", "postgresql/shop:SELECT orders"));
    /* criticality: payment is depended on by checkout and frontend */
    assert_int_equal(find_node(&g, "payment")->dependents, 2);
    assert_int_equal(find_node(&g, "frontend")->dependencies, 5);
    assert_int_equal(find_edge(&g, "checkout", "payment")->criticality, 2);
    assert_int_equal(g.n_cycles, 0);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_int_equal(st.unmatched_clients, 0);
    assert_int_equal(st.spans_late, 0);
    fl_arena_free(ar);
    tb_free(&b);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- graph: cycles */

static void call(tb_t *b, uint64_t *id, uint64_t t, const char *from, const char *to)
{
    uint64_t p = (*id)++, c = (*id)++, s = (*id)++;
    sp(b, from, t, p, 0, FL_KIND_SERVER, "handle", 0, 10 * MS);
    sp(b, from, t, c, p, FL_KIND_CLIENT, "call", MS, 9 * MS);
    sp(b, to, t, s, c, FL_KIND_SERVER, "handle", 2 * MS, 8 * MS);
}

static void test_analysis_graph_cycles(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    tb_t b;
    tb_init(&b);
    uint64_t id = 1;
    call(&b, &id, 1, "A", "B");
    call(&b, &id, 2, "B", "C");
    call(&b, &id, 3, "C", "A");
    call(&b, &id, 4, "D", "A");
    call(&b, &id, 5, "E", "E"); /* a service calling itself */
    sp(&b, "lonely", 6, id++, 0, FL_KIND_SERVER, "GET /ping", 0, MS);
    observe(a, &b, 0, b.n);
    flush(a);
    fl_arena_t *ar = fl_arena_new(0);
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(a, NULL, ar, &g), FL_OK);
    assert_int_equal(g.n_nodes, 6);
    assert_non_null(find_node(&g, "lonely"));
    assert_int_equal(find_node(&g, "lonely")->dependents, 0);
    assert_int_equal(find_node(&g, "A")->dependents, 3); /* B, C (cycle) and D */
    assert_int_equal(find_node(&g, "D")->dependents, 0);
    assert_int_equal(find_node(&g, "D")->dependencies, 3);
    assert_int_equal(find_edge(&g, "D", "A")->criticality, 1);
    assert_int_equal(find_edge(&g, "C", "A")->criticality, 4); /* C, and A, B, D reach C */
    assert_int_equal(g.n_cycles, 2);
    assert_int_equal(g.cycles[0].n, 3); /* A, B, C (sorted by name) */
    assert_string_equal(g.nodes[g.cycles[0].nodes[0]].name, "A");
    assert_string_equal(g.nodes[g.cycles[0].nodes[2]].name, "C");
    assert_int_equal(g.cycles[1].n, 1);
    assert_string_equal(g.nodes[g.cycles[1].nodes[0]].name, "E");
    assert_true(find_node(&g, "B")->in_cycle);
    assert_false(find_node(&g, "D")->in_cycle);
    fl_arena_free(ar);
    tb_free(&b);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- window bound */

static void test_analysis_window_bound(void **state)
{
    (void)state;
    fl_analysis_opts_t o;
    fl_analysis_opts_default(&o);
    o.window_capacity = 1024;
    fl_analysis_t *a = fl_analysis_new(&o);
    assert_non_null(a);
    tb_t b;
    tb_init(&b);
    /* 200k spans, most waiting for parents that never come: the window stays at capacity
     * and evicts (and counts) the oldest records. */
    uint64_t id = 1;
    fl_analysis_status_t st;
    for (int round = 0; round < 200; round++) {
        b.n = 0;
        fl_arena_reset(b.ar);
        for (int i = 0; i < 1000; i++) {
            uint64_t t = (uint64_t)round * 50 * MS + (uint64_t)i * 20000;
            fl_span_t *s = sp(&b, i % 3 ? "svc-a" : "svc-b", id, id, id + 7777777 + (u01() < 0.5),
                              i % 4 == 0 ? FL_KIND_CLIENT : FL_KIND_SERVER, "op", t, t + MS);
            (void)s;
            id++;
        }
        observe(a, &b, 0, b.n);
        fl_analysis_status(a, &st);
        assert_true(st.window_used <= st.window_capacity);
        assert_int_equal(st.window_capacity, 1024);
        if (round % 20 == 0)
            assert_int_equal(fl_analysis_run(a, 0, NULL, NULL), FL_OK);
    }
    fl_analysis_status(a, &st);
    assert_true(st.window_evictions > 0);
    assert_int_equal(st.spans_observed, 200000);
    flush(a);
    tb_free(&b);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- fixtures */

static int hex_id(const char *hex, uint8_t *out, size_t n)
{
    if (!hex || !*hex) {
        memset(out, 0, n);
        return 0;
    }
    return fl_hex_decode(hex, strlen(hex), out, n);
}

static size_t load_fixture(const char *name, tb_t *b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/%s.expected.full.jsonl", FL_TEST_DATA_DIR, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    size_t n0 = b->n;
    while (fgets(line, sizeof(line), f)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        fl_span_t *s = sp(b, json_string_value(json_object_get(j, "service_name")), 0, 0, 0,
                          (int)json_integer_value(json_object_get(j, "kind")),
                          json_string_value(json_object_get(j, "name")), 0, 0);
        assert_int_equal(hex_id(json_string_value(json_object_get(j, "trace_id")), s->trace_id, 16),
                         0);
        assert_int_equal(hex_id(json_string_value(json_object_get(j, "span_id")), s->span_id, 8),
                         0);
        assert_int_equal(
            hex_id(json_string_value(json_object_get(j, "parent_span_id")), s->parent_span_id, 8),
            0);
        s->start_ns =
            strtoull(json_string_value(json_object_get(j, "start_time_unix_nano")), NULL, 10);
        s->end_ns = strtoull(json_string_value(json_object_get(j, "end_time_unix_nano")), NULL, 10);
        s->status_code = (int)json_integer_value(json_object_get(j, "status_code"));
        json_t *links = json_object_get(j, "link_span_ids");
        if (json_array_size(links)) {
            s->n_links = json_array_size(links);
            s->links = fl_arena_calloc(b->ar, s->n_links, sizeof(fl_link_t));
            for (size_t i = 0; i < s->n_links; i++)
                hex_id(json_string_value(json_array_get(links, i)), s->links[i].span_id, 8);
        }
        json_decref(j);
    }
    fclose(f);
    return b->n - n0;
}

static fl_analysis_t *fixture_engine(const char *name, size_t batch)
{
    fl_analysis_t *a = engine();
    tb_t b;
    tb_init(&b);
    size_t n = load_fixture(name, &b);
    assert_true(n > 100);
    /* Observe blocks of 60 spans in reverse order, in small batches: callees and parents
     * arrive in different batches than their partners, out of order, but never later than
     * the grace period (the whole capture spans 6 s). */
    for (size_t k = 0; k < n; k += 60) {
        size_t m = k + 60 < n ? 60 : n - k;
        for (size_t i = 0; i < m / 2; i++) {
            fl_span_t t = b.s[k + i];
            b.s[k + i] = b.s[k + m - 1 - i];
            b.s[k + m - 1 - i] = t;
        }
    }
    for (size_t i = 0; i < n; i += batch)
        observe(a, &b, i, i + batch < n ? i + batch : n);
    flush(a);
    tb_free(&b);
    return a;
}

static void test_analysis_fixture_graph(void **state)
{
    (void)state;
    fl_analysis_t *a = fixture_engine("healthy", 7);
    fl_arena_t *ar = fl_arena_new(0);
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(a, NULL, ar, &g), FL_OK);
    assert_int_equal(g.n_nodes, 4);
    assert_int_equal(g.n_edges, 3);
    const fl_graph_edge_t *e = find_edge(&g, "frontend", "checkout");
    assert_non_null(e);
    assert_int_equal(e->calls, 20);
    assert_true(e->gap_p50_ms > 0);
    assert_int_equal(find_edge(&g, "checkout", "payment")->calls, 20);
    e = find_edge(&g, "checkout", "inventory");
    assert_non_null(e);
    assert_int_equal(e->calls, 40); /* 20 stock lookups + 20 order messages */
    assert_true(e->async);
    const fl_graph_edge_t *oe =
        find_op_edge(&g, "checkout:POST /api/checkout", "inventory:process orders");
    assert_non_null(oe);
    assert_true(oe->async);
    assert_int_equal(oe->calls, 20);
    oe = find_op_edge(&g, "checkout:POST /api/checkout", "inventory:GET /api/stock/{sku}");
    assert_non_null(oe);
    assert_false(oe->async);
    assert_non_null(find_op_edge(&g, "frontend:GET /checkout", "checkout:POST /api/checkout"));
    assert_int_equal(find_node(&g, "inventory")->dependents, 2);
    assert_int_equal(find_node(&g, "frontend")->dependencies, 3);
    assert_int_equal(g.n_cycles, 0);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_int_equal(st.spans_observed, 200);
    assert_int_equal(st.spans_late, 0);
    assert_int_equal(st.window_evictions, 0);
    fl_arena_free(ar);
    fl_analysis_free(a);
}

static void test_analysis_fixture_inventory_slow(void **state)
{
    (void)state;
    fl_analysis_t *h = fixture_engine("healthy", 50), *s = fixture_engine("inventory_slow", 50);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_metrics_t mh, ms;
    fl_analysis_filter_t f = {0};
    f.service = "inventory";
    assert_int_equal(fl_analysis_metrics(h, &f, ar, &mh), FL_OK);
    assert_int_equal(fl_analysis_metrics(s, &f, ar, &ms), FL_OK);
    const fl_endpoint_metrics_t *a = find_metrics(&mh, "inventory", "GET /api/stock/{sku}");
    const fl_endpoint_metrics_t *b = find_metrics(&ms, "inventory", "GET /api/stock/{sku}");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->request_count, 20);
    assert_int_equal(b->request_count, 20);
    double r50 = b->p50_ms / a->p50_ms, ravg = b->avg_ms / a->avg_ms;
    fprintf(stderr, "inventory p50 %.2f -> %.2f ms (x%.1f), avg x%.1f\n", a->p50_ms, b->p50_ms, r50,
            ravg);
    assert_true(r50 > 7 && r50 < 14);
    assert_true(ravg > 7 && ravg < 14);
    /* the other services' own work did not change much */
    fl_analysis_metrics_t ph, ps;
    f.service = "payment";
    fl_analysis_metrics(h, &f, ar, &ph);
    fl_analysis_metrics(s, &f, ar, &ps);
    assert_true(ps.items[0].p50_ms / ph.items[0].p50_ms < 2);
    fl_arena_free(ar);
    fl_analysis_free(h);
    fl_analysis_free(s);
}

static void test_analysis_fixture_errors(void **state)
{
    (void)state;
    fl_analysis_t *a = fixture_engine("payment_errors", 13);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_metrics_t m;
    assert_int_equal(fl_analysis_metrics(a, NULL, ar, &m), FL_OK);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_int_equal(st.spans_late, 0);
    const fl_endpoint_metrics_t *e = find_metrics(&m, "payment", "POST /api/charge");
    assert_non_null(e);
    assert_int_equal(e->request_count, 20);
    assert_int_equal(e->error_count, 10);
    near(e->error_rate, 0.5, 1e-9);
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(a, NULL, ar, &g), FL_OK);
    assert_int_equal(find_edge(&g, "checkout", "payment")->errors, 10);
    fl_arena_free(ar);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- persistence */

static void build_traffic(fl_analysis_t *a, int minutes, uint64_t seed)
{
    tb_t b;
    tb_init(&b);
    rng = seed;
    uint64_t id = 1;
    for (int sec = 0; sec < minutes * 60; sec++) {
        b.n = 0;
        fl_arena_reset(b.ar);
        for (int i = 0; i < 5; i++) {
            uint64_t t = (uint64_t)sec * SEC + (uint64_t)(u01() * 900) * MS;
            uint64_t d = (uint64_t)(20.0 * MS * exp(0.3 * gauss()));
            uint64_t p = id++, c = id++, s = id++;
            fl_span_t *srv = sp(&b, "api", p, p, 0, FL_KIND_SERVER, "GET /x", t, t + d + 4 * MS);
            attr_i(&b, srv, "http.response.status_code", 200);
            fl_span_t *cl = sp(&b, "api", p, c, p, FL_KIND_CLIENT, "GET", t + MS, t + d + 3 * MS);
            attr_s(&b, cl, "server.address", "db.svc");
            sp(&b, "db", p, s, c, FL_KIND_SERVER, "query", t + 2 * MS, t + d + 2 * MS);
        }
        observe(a, &b, 0, b.n);
        if (sec % 10 == 0)
            fl_analysis_run(a, 0, NULL, NULL);
    }
    fl_analysis_run(a, 0, NULL, NULL);
    tb_free(&b);
}

static void test_analysis_persistence(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    build_traffic(a, 10, 12345);
    fl_buf_t blob;
    fl_buf_init(&blob, 0);
    assert_int_equal(fl_analysis_save(a, &blob), FL_OK);
    fl_analysis_t *b = engine();
    assert_int_equal(fl_analysis_restore(b, blob.data, blob.len), FL_OK);
    assert_int_equal(fl_analysis_restore(b, blob.data, blob.len), FL_ERR_CONFLICT);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_baselines_t x, y;
    assert_int_equal(fl_analysis_baselines(a, NULL, ar, &x), FL_OK);
    assert_int_equal(fl_analysis_baselines(b, NULL, ar, &y), FL_OK);
    assert_int_equal(x.n, y.n);
    assert_true(x.n >= 3);
    for (size_t i = 0; i < x.n; i++) {
        assert_string_equal(x.items[i].service, y.items[i].service);
        assert_true(x.items[i].mean_ms == y.items[i].mean_ms);
        assert_true(x.items[i].p95_spread == y.items[i].p95_spread);
        assert_int_equal(x.items[i].trained_buckets, y.items[i].trained_buckets);
        assert_int_equal(x.items[i].n_history, y.items[i].n_history);
        assert_int_equal(x.items[i].trusted, 1);
    }
    fl_analysis_status_t sa, sb;
    fl_analysis_status(a, &sa);
    fl_analysis_status(b, &sb);
    assert_int_equal(sb.watermark_ns, sa.watermark_ns);
    /* corrupt and truncated blobs are refused */
    fl_analysis_t *c = engine();
    assert_int_equal(fl_analysis_restore(c, blob.data, blob.len / 2), FL_ERR_DECODE);
    fl_analysis_free(c);
    blob.data[3] = 99;
    c = engine();
    assert_int_equal(fl_analysis_restore(c, blob.data, blob.len), FL_ERR_UNSUPPORTED);
    fl_analysis_free(c);

    /* closed buckets: export from a, import into a fresh engine, same metrics */
    fl_analysis_metrics_t ma;
    fl_analysis_filter_t f = {0};
    assert_int_equal(fl_analysis_metrics(a, &f, ar, &ma), FL_OK);
    c = engine();
    int exported = 0;
    for (uint64_t t = ma.start_ns; t < ma.end_ns; t += 10 * SEC) {
        fl_buf_reset(&blob);
        if (fl_analysis_export_bucket(a, t, &blob) == FL_OK) {
            assert_int_equal(fl_analysis_import_bucket(c, blob.data, blob.len), FL_OK);
            exported++;
        }
    }
    assert_true(exported >= 55);
    fl_buf_reset(&blob);
    assert_int_equal(fl_analysis_export_bucket(a, T0 - 3600 * SEC, &blob), FL_ERR_NOT_FOUND);
    fl_analysis_metrics_t mc;
    assert_int_equal(fl_analysis_metrics(c, &f, ar, &mc), FL_OK);
    assert_int_equal(mc.n, ma.n);
    for (size_t i = 0; i < ma.n; i++) {
        assert_string_equal(ma.items[i].operation, mc.items[i].operation);
        assert_int_equal(ma.items[i].request_count, mc.items[i].request_count);
        assert_true(ma.items[i].p99_ms == mc.items[i].p99_ms);
    }
    fl_graph_t g;
    assert_int_equal(fl_analysis_graph(c, NULL, ar, &g), FL_OK);
    assert_non_null(find_edge(&g, "api", "db"));
    fl_buf_dispose(&blob);
    fl_arena_free(ar);
    fl_analysis_free(a);
    fl_analysis_free(b);
    fl_analysis_free(c);
}

/* Over two hours the history holds the last hour at bucket resolution and everything at
 * 5 min resolution; a query over the whole range counts every request exactly once. */
static void test_analysis_history_tiers(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    build_traffic(a, 130, 777);
    flush(a);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_metrics_t m;
    fl_analysis_filter_t f = {0};
    f.service = "api";
    assert_int_equal(fl_analysis_metrics(a, &f, ar, &m), FL_OK);
    assert_int_equal(m.n, 1);
    assert_int_equal(m.items[0].request_count, 130 * 60 * 5);
    assert_int_equal(m.start_ns, T0 / (300 * SEC) * (300 * SEC)); /* a 5 min bucket */
    assert_int_equal(m.end_ns, T0 + 7800 * SEC);
    near(m.items[0].rate_per_s, 5, 0.05);
    /* an old range is answered at 5 min resolution */
    f.start_ns = T0 + 600 * SEC;
    f.end_ns = T0 + 1800 * SEC;
    assert_int_equal(fl_analysis_metrics(a, &f, ar, &m), FL_OK);
    assert_int_equal(m.start_ns % (300 * SEC), 0);
    assert_int_equal(m.end_ns % (300 * SEC), 0);
    near((double)m.items[0].request_count, (double)(m.end_ns - m.start_ns) / SEC * 5, 0.02);
    /* a recent one at bucket resolution */
    f.start_ns = T0 + 7000 * SEC;
    f.end_ns = T0 + 7100 * SEC;
    assert_int_equal(fl_analysis_metrics(a, &f, ar, &m), FL_OK);
    assert_int_equal(m.start_ns, f.start_ns);
    assert_int_equal(m.end_ns, f.end_ns);
    near((double)m.items[0].request_count, 500, 0.05);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_true(st.history_oldest_ns <= T0 && st.history_oldest_ns > T0 - 3600 * SEC);
    assert_true(st.history_bytes > 0 && st.history_bytes < (size_t)4 << 20);
    fl_arena_free(ar);
    fl_analysis_free(a);
}

/* A tiny history budget keeps memory bounded by dropping the oldest buckets first. */
static void test_analysis_history_budget(void **state)
{
    (void)state;
    fl_analysis_opts_t o;
    fl_analysis_opts_default(&o);
    o.history_max_bytes = 65536;
    fl_analysis_t *a = fl_analysis_new(&o);
    build_traffic(a, 30, 5);
    flush(a);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_true(st.history_bytes <= 65536);
    assert_true(st.history_oldest_ns > T0);
    fl_arena_t *ar = fl_arena_new(0);
    fl_analysis_metrics_t m;
    assert_int_equal(fl_analysis_metrics(a, NULL, ar, &m), FL_OK);
    assert_true(m.n >= 1 && m.items[0].request_count > 0);
    fl_arena_free(ar);
    fl_analysis_free(a);
}

static void test_analysis_options(void **state)
{
    (void)state;
    fl_analysis_opts_t o;
    fl_analysis_opts_default(&o);
    const char *why = NULL;
    assert_int_equal(fl_analysis_opts_check(&o, &why), FL_OK);
    o.confirm_k = 4;
    assert_int_equal(fl_analysis_opts_check(&o, &why), FL_ERR_INVALID);
    assert_non_null(why);
    assert_null(fl_analysis_new(&o));
    fl_analysis_opts_default(&o);
    o.bucket_ns = 10;
    assert_int_equal(fl_analysis_opts_check(&o, NULL), FL_ERR_INVALID);
    assert_int_equal(fl_analysis_observe(NULL, NULL, 0), FL_ERR_INVALID);
    fl_analysis_free(NULL);
    fl_sketch_free(NULL);
    assert_string_equal(fl_anomaly_kind_name(FL_ANOMALY_NEW_ERROR_TYPE), "new_error_type");
    assert_string_equal(fl_subject_name(FL_SUBJECT_EDGE_GAP), "edge_gap");
    assert_string_equal(fl_severity_name(FL_SEV_CRITICAL), "critical");
    assert_string_equal(fl_severity_name(9), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analysis_sketch_bounds),
        cmocka_unit_test(test_analysis_sketch_merge_encode),
        cmocka_unit_test(test_analysis_ewma),
        cmocka_unit_test(test_analysis_naming),
        cmocka_unit_test(test_analysis_self_time),
        cmocka_unit_test(test_analysis_edges),
        cmocka_unit_test(test_analysis_graph_cycles),
        cmocka_unit_test(test_analysis_window_bound),
        cmocka_unit_test(test_analysis_fixture_graph),
        cmocka_unit_test(test_analysis_fixture_inventory_slow),
        cmocka_unit_test(test_analysis_fixture_errors),
        cmocka_unit_test(test_analysis_persistence),
        cmocka_unit_test(test_analysis_history_tiers),
        cmocka_unit_test(test_analysis_history_budget),
        cmocka_unit_test(test_analysis_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
