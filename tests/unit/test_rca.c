/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for root-cause ranking and incidents: synthetic traces for each blame
 * convention, the MVP's three scenarios, two unrelated faults, lifecycle and persistence. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/analysis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1700000000ull * SEC)

/* ---------------------------------------------------------------- span builder */

static fl_resource_t resources[16];
static char res_names[16][32];
static int n_resources;

static const fl_resource_t *res(const char *svc)
{
    for (int i = 0; i < n_resources; i++)
        if (strcmp(res_names[i], svc) == 0)
            return &resources[i];
    assert_true(n_resources < 16);
    snprintf(res_names[n_resources], sizeof(res_names[0]), "%s", svc);
    resources[n_resources].service_name = fl_str(res_names[n_resources]);
    return &resources[n_resources++];
}

typedef struct tb {
    fl_arena_t *ar;
    fl_span_t *s;
    size_t n, cap;
    size_t *tstart, *tcount; /* per trace number */
    size_t ntr, trcap;
} tb_t;

static void tb_init(tb_t *b)
{
    memset(b, 0, sizeof(*b));
    b->ar = fl_arena_new(0);
    b->cap = 1 << 16;
    b->s = calloc(b->cap, sizeof(*b->s));
    b->trcap = 1 << 14;
    b->tstart = calloc(b->trcap, sizeof(size_t));
    b->tcount = calloc(b->trcap, sizeof(size_t));
}

static void tb_free(tb_t *b)
{
    fl_arena_free(b->ar);
    free(b->s);
    free(b->tstart);
    free(b->tcount);
}

static void put_id(uint8_t *out, uint64_t v, size_t n)
{
    memset(out, 0, n);
    memcpy(out, &v, 8);
}

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
    s->name = fl_str(name);
    s->start_ns = start;
    s->end_ns = end;
    s->resource = res(svc);
    s->attrs.items = fl_arena_calloc(b->ar, 4, sizeof(fl_kv_t));
    return s;
}

static void attr_s(tb_t *b, fl_span_t *s, const char *k, const char *v)
{
    fl_kv_t *kv = &s->attrs.items[s->attrs.n++];
    kv->key = fl_str(k);
    kv->value.type = FL_VAL_STRING;
    kv->value.u.str = fl_str(fl_arena_strdup(b->ar, v));
}

static void set_err(fl_span_t *s, const char *msg)
{
    s->status_code = FL_STATUS_ERROR;
    s->status_message = fl_str(msg);
}

/* ---------------------------------------------------------------- the topology */

/* frontend GET /checkout -> checkout POST /checkout -> payment POST /pay -> fraud POST /score
 *                                                   -> inventory GET /stock -> postgresql/stock
 * plus an independent entry service: search GET /search (every other trace). A failing
 * payment fails before it calls fraud, as the demo's does. */
typedef struct fault {
    double pay_extra_ms; /* payment self time */
    double pay_err;      /* share of payment requests failing */
    double inv_err;      /* share of inventory requests failing */
    double pay_gap_ms;   /* network delay on checkout -> payment */
    int pay_timeout;     /* payment never answers; the client gives up after 3 s */
    double db_extra_ms;  /* uninstrumented database slower */
    int search_off;      /* search gets no traffic */
    double search_err;   /* search failing */
    double search_extra_ms;
    double chk_extra_ms; /* checkout self time */
} fault_t;

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static uint64_t jit(double ms)
{
    return (uint64_t)(ms * (0.8 + 0.4 * urand()) * MS);
}

static void gen_trace(tb_t *b, uint64_t tn, uint64_t t, const fault_t *f)
{
    assert_true(tn < b->trcap);
    b->tstart[tn] = b->n;
    uint64_t id = tn << 4;
    int pay_fail = f->pay_err > 0 && urand() < f->pay_err;
    int inv_fail = f->inv_err > 0 && urand() < f->inv_err;
    /* payment call */
    uint64_t c0 = t + 2 * MS;   /* checkout server start */
    uint64_t pc0 = c0 + jit(1); /* checkout -> payment client start */
    uint64_t gap = jit(1) + (uint64_t)(f->pay_gap_ms * MS);
    uint64_t ps0 = pc0 + gap / 2;
    uint64_t pdur = jit(20) + (uint64_t)(f->pay_extra_ms * MS);
    uint64_t pc1 = f->pay_timeout ? pc0 + 3 * SEC : ps0 + pdur + gap - gap / 2;
    /* inventory call */
    uint64_t ic0 = pc1 + jit(1);
    uint64_t is0 = ic0 + MS / 2;
    uint64_t db0 = is0 + jit(1); /* one query per item, two items */
    uint64_t db1 = db0 + jit(5) + (uint64_t)(f->db_extra_ms * MS);
    uint64_t db2 = db1 + jit(1);
    uint64_t db3 = db2 + jit(5) + (uint64_t)(f->db_extra_ms * MS);
    uint64_t is1 = db3 + jit(2);
    uint64_t ic1 = is1 + MS / 2;
    uint64_t c1 = ic1 + jit(2) + (uint64_t)(f->chk_extra_ms * MS);
    uint64_t fe1 = c1 + MS;
    int chk_fail = pay_fail || inv_fail || f->pay_timeout;
    fl_span_t *s = sp(b, "frontend", tn, id + 1, 0, FL_KIND_SERVER, "GET /checkout", t, fe1 + MS);
    if (chk_fail)
        set_err(s, "upstream failed");
    s = sp(b, "frontend", tn, id + 2, id + 1, FL_KIND_CLIENT, "POST /checkout", t + MS, fe1);
    if (chk_fail)
        set_err(s, "500");
    s = sp(b, "checkout", tn, id + 3, id + 2, FL_KIND_SERVER, "POST /checkout", c0, c1);
    if (chk_fail)
        set_err(s, "payment or inventory failed");
    s = sp(b, "checkout", tn, id + 4, id + 3, FL_KIND_CLIENT, "POST /pay", pc0, pc1);
    attr_s(b, s, "server.address", "payment.internal");
    if (f->pay_timeout)
        set_err(s, "context deadline exceeded: timeout");
    else if (pay_fail)
        set_err(s, "500");
    if (!f->pay_timeout) {
        s = sp(b, "payment", tn, id + 5, id + 4, FL_KIND_SERVER, "POST /pay", ps0, ps0 + pdur);
        if (pay_fail)
            set_err(s, "card declined: processor down");
    }
    if (!f->pay_timeout && !pay_fail) {
        uint64_t fc0 = ps0 + jit(1), fc1 = fc0 + jit(4);
        sp(b, "payment", tn, id + 10, id + 5, FL_KIND_CLIENT, "POST /score", fc0, fc1);
        sp(b, "fraud", tn, id + 11, id + 10, FL_KIND_SERVER, "POST /score", fc0 + MS / 4,
           fc1 - MS / 4);
    }
    s = sp(b, "checkout", tn, id + 6, id + 3, FL_KIND_CLIENT, "GET /stock", ic0, ic1);
    attr_s(b, s, "server.address", "inventory.internal");
    if (inv_fail)
        set_err(s, "500");
    s = sp(b, "inventory", tn, id + 7, id + 6, FL_KIND_SERVER, "GET /stock", is0, is1);
    if (inv_fail)
        set_err(s, "stock lookup failed");
    for (int q = 0; q < 2; q++) {
        s = sp(b, "inventory", tn, id + 8 + (uint64_t)q * 4, id + 7, FL_KIND_CLIENT, "SELECT stock",
               q ? db2 : db0, q ? db3 : db1);
        attr_s(b, s, "db.system", "postgresql");
        attr_s(b, s, "db.name", "stock");
    }
    if (tn % 2 == 0 && !f->search_off) {
        uint64_t d = jit(10) + (uint64_t)(f->search_extra_ms * MS);
        s = sp(b, "search", tn, id + 9, 0, FL_KIND_SERVER, "GET /search", t, t + d);
        if (f->search_err > 0 && urand() < f->search_err)
            set_err(s, "index unavailable");
    }
    b->tcount[tn] = b->n - b->tstart[tn];
    if (tn + 1 > b->ntr)
        b->ntr = tn + 1;
}

static int fetch(void *ud, const uint8_t tid[16], fl_arena_t *ar, fl_span_t **spans, size_t *n)
{
    tb_t *b = ud;
    uint64_t tn;
    memcpy(&tn, tid, 8);
    if (tn >= b->ntr || !b->tcount[tn])
        return FL_ERR_NOT_FOUND;
    fl_span_t *cp = fl_arena_alloc(ar, b->tcount[tn] * sizeof(*cp));
    if (!cp)
        return FL_ERR_NOMEM;
    memcpy(cp, b->s + b->tstart[tn], b->tcount[tn] * sizeof(*cp));
    *spans = cp;
    *n = b->tcount[tn];
    return FL_OK;
}

/* A scenario run through a real engine, its open anomalies and their ranking. */
typedef struct scen {
    tb_t b;
    fl_analysis_t *a;
    fl_arena_t *ar;
    fl_analysis_anomalies_t an;
    fl_rca_result_t r;
    uint64_t now, fault_start;
} scen_t;

static const fault_t NORMAL = {0};

static void feed_scenario(scen_t *x, const fault_t *f, uint64_t fault_secs)
{
    memset(x, 0, sizeof(*x));
    tb_init(&x->b);
    x->a = fl_analysis_new(NULL);
    x->ar = fl_arena_new(0);
    assert_non_null(x->a);
    uint64_t tn = 1;
    uint64_t normal_secs = 600;
    x->fault_start = T0 + normal_secs * SEC;
    for (uint64_t ms = 0; ms < (normal_secs + fault_secs) * 1000; ms += 200) {
        uint64_t t = T0 + ms * MS;
        size_t from = x->b.n;
        gen_trace(&x->b, tn++, t, t >= x->fault_start ? f : &NORMAL);
        assert_int_equal(fl_analysis_observe(x->a, x->b.s + from, x->b.n - from), FL_OK);
    }
    x->now = T0 + (normal_secs + fault_secs) * SEC;
    assert_int_equal(fl_analysis_run(x->a, x->now, x->ar, NULL), FL_OK);
    fl_analysis_filter_t flt = {.open_only = 1};
    assert_int_equal(fl_analysis_anomalies(x->a, &flt, x->ar, &x->an), FL_OK);
}

/* Rank the open anomalies from their example traces (at most max_traces, 0: the default), a
 * few normal traces for the spectrum and n_window more window spans given directly. */
static void rank_scenario(scen_t *x, uint32_t max_traces, const fl_span_t *window, size_t n_window)
{
    uint8_t extra[20][16];
    for (int i = 0; i < 20; i++)
        put_id(extra[i], 100 + (uint64_t)i * 97, 16);
    fl_rca_input_t in = {.anomalies = x->an.items,
                         .n_anomalies = x->an.n,
                         .engine = x->a,
                         .fetch_trace = fetch,
                         .fetch_ud = &x->b,
                         .extra_trace_ids = (const uint8_t(*)[16])extra,
                         .n_extra_trace_ids = 20,
                         .spans = window,
                         .n_spans = n_window,
                         .max_traces = max_traces};
    assert_int_equal(fl_rca_rank(&in, x->ar, &x->r), FL_OK);
}

/* A scenario: 10 minutes of normal traffic at 5 traces/s, then fault_secs with the fault(s),
 * ranked. */
static void run_scenario(scen_t *x, const fault_t *f, uint64_t fault_secs)
{
    feed_scenario(x, f, fault_secs);
    rank_scenario(x, 0, NULL, 0);
}

static void scen_free(scen_t *x)
{
    fl_analysis_free(x->a);
    fl_arena_free(x->ar);
    tb_free(&x->b);
}

static void dump(const scen_t *x)
{
    if (!getenv("RCA_DEBUG"))
        return;
    for (size_t i = 0; i < x->an.n; i++)
        fprintf(stderr, "anomaly %s %s/%s %s caller=%s sev=%d: %s\n",
                fl_anomaly_kind_name(x->an.items[i].kind), x->an.items[i].service,
                x->an.items[i].operation, fl_subject_name(x->an.items[i].subject),
                x->an.items[i].caller_service ? x->an.items[i].caller_service : "-",
                x->an.items[i].severity, x->an.items[i].summary);
    for (size_t i = 0; i < x->r.n_candidates; i++) {
        const fl_rca_candidate_t *c = &x->r.candidates[i];
        fprintf(stderr, "cand %zu %s/%s %s score=%.3f conf=%.2f votes=%u grp=%u: %s\n", i,
                c->service, c->operation, fl_anomaly_kind_name(c->kind), c->score, c->confidence,
                c->anomalous_traces, c->group, c->issue);
    }
    fprintf(stderr, "groups=%zu traces=%u anomalous=%u\n", x->r.n_groups, x->r.traces_examined,
            x->r.traces_anomalous);
}

/* Incidents from x's ranking: exactly one, rooted at svc, holding every open anomaly, with
 * affected endpoints, first detected after the fault began. */
static void expect_one_incident(scen_t *x, const char *svc)
{
    fl_incidents_t *s = fl_incidents_new(NULL);
    assert_int_equal(fl_incidents_update(s, x->an.items, x->an.n, &x->r, x->now, NULL, NULL),
                     FL_OK);
    fl_incident_t *list;
    size_t n;
    assert_int_equal(fl_incidents_list(s, NULL, x->ar, &list, &n), FL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].root_cause.service, svc);
    assert_int_equal(list[0].n_anomalies, x->an.n);
    assert_true(list[0].n_affected_endpoints > 0);
    assert_true(list[0].first_detected_ns >= x->fault_start);
    assert_true(list[0].first_detected_ns <= x->now);
    fl_incidents_free(s);
}

static const fl_rca_candidate_t *top(const scen_t *x)
{
    assert_true(x->r.n_candidates > 0);
    assert_true(x->r.n_groups > 0);
    return &x->r.candidates[x->r.groups[0].candidates[0]];
}

static void expect_root(const fault_t *f, const char *svc, int kind, const char *issue_part)
{
    scen_t x;
    run_scenario(&x, f, 60);
    dump(&x);
    assert_true(x.an.n > 0);
    const fl_rca_candidate_t *c = top(&x);
    assert_string_equal(c->service, svc);
    assert_int_equal(c->kind, kind);
    assert_ptr_equal(c, &x.r.candidates[0]);
    if (issue_part)
        assert_non_null(strstr(c->issue, issue_part));
    assert_true(c->n_trace_ids > 0 || kind == FL_ANOMALY_TRAFFIC);
    expect_one_incident(&x, svc);
    scen_free(&x);
}

/* ---------------------------------------------------------------- conventions */

static void test_rca_mvp_payment_latency(void **state)
{
    (void)state;
    fault_t f = {.pay_extra_ms = 1000};
    expect_root(&f, "payment", FL_ANOMALY_LATENCY, "Latency spike");
}

static void test_rca_mvp_inventory_errors(void **state)
{
    (void)state;
    fault_t f = {.inv_err = 0.8};
    expect_root(&f, "inventory", FL_ANOMALY_ERROR, NULL);
}

static void test_rca_mvp_payment_errors_cascade(void **state)
{
    (void)state;
    fault_t f = {.pay_err = 1.0};
    expect_root(&f, "payment", FL_ANOMALY_ERROR, NULL);
}

static void test_rca_network_gap_blames_callee(void **state)
{
    (void)state;
    fault_t f = {.pay_gap_ms = 400};
    expect_root(&f, "payment", FL_ANOMALY_LATENCY, NULL);
}

static void test_rca_timeout_missing_callee(void **state)
{
    (void)state;
    fault_t f = {.pay_timeout = 1};
    expect_root(&f, "payment", FL_ANOMALY_TIMEOUT, NULL);
}

static void test_rca_uninstrumented_db(void **state)
{
    (void)state;
    fault_t f = {.db_extra_ms = 500};
    scen_t x;
    run_scenario(&x, &f, 60);
    dump(&x);
    const fl_rca_candidate_t *c = top(&x);
    assert_string_equal(c->service, "postgresql/stock");
    assert_int_equal(c->virtual_peer, 1);
    assert_int_equal(c->kind, FL_ANOMALY_LATENCY);
    scen_free(&x);
}

static void test_rca_traffic_drop(void **state)
{
    (void)state;
    fault_t f = {.search_off = 1};
    expect_root(&f, "search", FL_ANOMALY_TRAFFIC, "Traffic");
}

static void test_rca_two_unrelated_faults(void **state)
{
    (void)state;
    fault_t f = {.pay_extra_ms = 1000, .search_err = 1.0};
    scen_t x;
    run_scenario(&x, &f, 60);
    dump(&x);
    assert_int_equal(x.r.n_groups, 2);
    const char *r0 = x.r.candidates[x.r.groups[0].candidates[0]].service;
    const char *r1 = x.r.candidates[x.r.groups[1].candidates[0]].service;
    assert_true((strcmp(r0, "payment") == 0 && strcmp(r1, "search") == 0) ||
                (strcmp(r0, "search") == 0 && strcmp(r1, "payment") == 0));
    fl_incidents_t *s = fl_incidents_new(NULL);
    assert_int_equal(fl_incidents_update(s, x.an.items, x.an.n, &x.r, x.now, NULL, NULL), FL_OK);
    fl_incident_t *list;
    size_t n;
    assert_int_equal(fl_incidents_list(s, NULL, x.ar, &list, &n), FL_OK);
    assert_int_equal(n, 2);
    assert_string_not_equal(list[0].root_cause.service, list[1].root_cause.service);
    for (size_t i = 0; i < n; i++)
        assert_true(strcmp(list[i].root_cause.service, "payment") == 0 ||
                    strcmp(list[i].root_cause.service, "search") == 0);
    fl_incidents_free(s);
    scen_free(&x);
}

/* First detections in the live demo: the ranking reads only a few example traces (too few
 * for error evidence to count) plus, here, one slow checkout that did not fail (slow is
 * given), so a service that is not the fault tops the ranking. The fault groups must still
 * give one incident with root cause root, holding every open anomaly; drop names a service
 * whose traffic drop (a consequence) must be among them. */
static void expect_one_incident_despite(const fault_t *f, const fault_t *slow, const char *root,
                                        const char *drop)
{
    scen_t x;
    feed_scenario(&x, f, 60);
    int seen = drop == NULL;
    for (size_t i = 0; i < x.an.n; i++)
        if (drop && x.an.items[i].kind == FL_ANOMALY_TRAFFIC &&
            !strcmp(x.an.items[i].service, drop))
            seen = 1;
    assert_true(seen);
    size_t from = x.b.n;
    gen_trace(&x.b, x.b.ntr, x.now - 5 * SEC, slow);
    rank_scenario(&x, 3, x.b.s + from, x.b.n - from);
    dump(&x);
    assert_string_not_equal(x.r.candidates[0].service, root); /* the trap is set */
    assert_int_equal(x.r.n_groups, 1);
    assert_int_equal(x.r.groups[0].n_anomalies, x.an.n);
    assert_string_equal(top(&x)->service, root);
    expect_one_incident(&x, root);
    scen_free(&x);
}

/* The live cascade: payment fails every request, so fraud behind it gets no traffic, while
 * the database under inventory is slower (a busy host) without an anomaly of its own. The
 * slower but healthy database explains nothing above it; the drop joins payment's incident. */
static void test_rca_cascade_drop_one_incident(void **state)
{
    (void)state;
    fault_t f = {.pay_err = 1.0, .db_extra_ms = 4}, slow = {.db_extra_ms = 300};
    expect_one_incident_despite(&f, &slow, "payment", "fraud");
}

/* The live error storm: inventory fails 80 %, and the sample's slow checkout makes checkout,
 * which fails with it, rank first. Taken first, it is still an effect of the failing service
 * it calls: inventory's root takes its anomalies over, one incident. */
static void test_rca_upstream_first_one_incident(void **state)
{
    (void)state;
    fault_t f = {.inv_err = 0.8}, slow = {.chk_extra_ms = 300};
    expect_one_incident_despite(&f, &slow, "inventory", NULL);
}

/* Spans passed directly (offline use), no engine: sampled baselines from the traces. */
static void test_rca_offline_spans_error_origin(void **state)
{
    (void)state;
    tb_t b;
    tb_init(&b);
    fault_t f = {.pay_err = 1.0};
    for (uint64_t i = 1; i <= 40; i++)
        gen_trace(&b, i, T0 + i * SEC, i > 30 ? &f : &NORMAL);
    fl_arena_t *ar = fl_arena_new(0);
    fl_rca_input_t in = {.spans = b.s, .n_spans = b.n, .max_traces = 100};
    fl_rca_result_t r;
    assert_int_equal(fl_rca_rank(&in, ar, &r), FL_OK);
    assert_true(r.n_candidates > 0);
    assert_string_equal(r.candidates[0].service, "payment");
    assert_int_equal(r.candidates[0].kind, FL_ANOMALY_ERROR);
    assert_int_equal(r.candidates[0].anomalous_traces, 10);
    assert_int_equal(r.traces_examined, 40);
    fl_arena_free(ar);
    tb_free(&b);
}

/* ---------------------------------------------------------------- incidents */

static fl_anomaly_t mk_anom(uint64_t id, const char *svc, int kind, uint64_t t)
{
    fl_anomaly_t a;
    memset(&a, 0, sizeof(a));
    a.id = id;
    a.kind = kind;
    a.subject = FL_SUBJECT_ENDPOINT;
    a.service = svc;
    a.operation = "GET /x";
    a.metric = "mean";
    a.unit = kind == FL_ANOMALY_ERROR ? "ratio" : "ms";
    a.start_ns = t;
    a.detected_ns = t;
    a.end_ns = t;
    a.open = 1;
    a.observed = kind == FL_ANOMALY_ERROR ? 0.8 : 900;
    a.baseline = kind == FL_ANOMALY_ERROR ? 0.01 : 100;
    a.samples = 50;
    a.buckets = 1;
    a.severity = FL_SEV_MEDIUM;
    a.summary = "something";
    a.n_trace_ids = 1;
    put_id(a.trace_ids[0], id, 16);
    return a;
}

static void test_rca_incident_dedup_and_extend(void **state)
{
    (void)state;
    fl_incidents_t *s = fl_incidents_new(NULL);
    fl_arena_t *ar = fl_arena_new(0);
    fl_anomaly_t a[2] = {mk_anom(1, "payment", FL_ANOMALY_ERROR, T0)};
    fl_incident_changes_t ch;
    assert_int_equal(fl_incidents_update(s, a, 1, NULL, T0, ar, &ch), FL_OK);
    assert_int_equal(ch.n_opened, 1);
    char id[24];
    snprintf(id, sizeof(id), "%s", ch.opened[0]);
    assert_memory_equal(id, "INC-", 4);
    /* the same anomaly again, then a connected one: same incident */
    assert_int_equal(fl_incidents_update(s, a, 1, NULL, T0 + 10 * SEC, ar, &ch), FL_OK);
    assert_int_equal(ch.n_opened, 0);
    assert_int_equal(ch.n_updated, 1);
    a[1] = mk_anom(2, "checkout", FL_ANOMALY_ERROR, T0 + 20 * SEC);
    assert_int_equal(fl_incidents_update(s, a, 2, NULL, T0 + 20 * SEC, ar, &ch), FL_OK);
    assert_int_equal(ch.n_opened, 0);
    fl_incident_t inc;
    assert_int_equal(fl_incidents_get(s, id, ar, &inc), FL_OK);
    assert_int_equal(inc.n_anomalies, 2);
    assert_int_equal(inc.first_detected_ns, T0);
    assert_int_equal(inc.last_updated_ns, T0 + 20 * SEC);
    assert_int_equal(inc.failed_requests, 80);
    assert_true(inc.n_timeline >= 3);
    assert_string_equal(inc.timeline[0].type, "opened");
    assert_int_equal(inc.n_trace_ids, 2);
    /* quiet for longer than auto-resolve: resolved automatically, recorded as such */
    assert_int_equal(fl_incidents_update(s, NULL, 0, NULL, T0 + 60 * SEC, ar, &ch), FL_OK);
    assert_int_equal(ch.n_resolved, 1);
    assert_int_equal(fl_incidents_get(s, id, ar, &inc), FL_OK);
    assert_int_equal(inc.status, FL_INC_RESOLVED);
    assert_string_equal(inc.resolved_by, "faultline");
    assert_string_equal(inc.timeline[inc.n_timeline - 1].type, "auto_resolved");
    /* a new detection after resolution opens a new incident */
    fl_anomaly_t b = mk_anom(3, "payment", FL_ANOMALY_ERROR, T0 + 70 * SEC);
    assert_int_equal(fl_incidents_update(s, &b, 1, NULL, T0 + 70 * SEC, ar, &ch), FL_OK);
    assert_int_equal(ch.n_opened, 1);
    assert_string_not_equal(ch.opened[0], id);
    /* retention closes the resolved one */
    assert_int_equal(fl_incidents_update(s, NULL, 0, NULL, T0 + 25 * 3600 * SEC, ar, &ch), FL_OK);
    assert_int_equal(fl_incidents_get(s, id, ar, &inc), FL_OK);
    assert_int_equal(inc.status, FL_INC_CLOSED);
    fl_incident_t *list;
    size_t n;
    fl_incident_filter_t all = {.status = -1};
    assert_int_equal(fl_incidents_list(s, &all, ar, &list, &n), FL_OK);
    assert_int_equal(n, 2);
    fl_incidents_free(s);
    fl_arena_free(ar);
}

static void test_rca_incident_lifecycle(void **state)
{
    (void)state;
    fl_incidents_t *s = fl_incidents_new(NULL);
    fl_arena_t *ar = fl_arena_new(0);
    fl_anomaly_t a = mk_anom(7, "inventory", FL_ANOMALY_ERROR, T0);
    fl_incident_changes_t ch;
    assert_int_equal(fl_incidents_update(s, &a, 1, NULL, T0, ar, &ch), FL_OK);
    const char *id = ch.opened[0];
    const char *why = NULL;
    assert_int_equal(fl_incidents_acknowledge(s, "INC-nope", T0, &why), FL_ERR_NOT_FOUND);
    assert_int_equal(fl_incidents_resolve(s, id, "", "ann", T0, &why), FL_ERR_INVALID);
    assert_non_null(why);
    assert_int_equal(fl_incidents_acknowledge(s, id, T0 + SEC, &why), FL_OK);
    assert_int_equal(fl_incidents_acknowledge(s, id, T0 + SEC, &why), FL_ERR_CONFLICT);
    assert_non_null(strstr(why, "already acknowledged"));
    fl_incident_t inc;
    assert_int_equal(fl_incidents_get(s, id, ar, &inc), FL_OK);
    assert_int_equal(inc.status, FL_INC_INVESTIGATING);
    assert_int_equal(fl_incidents_resolve(s, id, "restarted the db", "ann", T0 + 2 * SEC, &why),
                     FL_OK);
    assert_int_equal(fl_incidents_resolve(s, id, "again", "ann", T0 + 3 * SEC, &why),
                     FL_ERR_CONFLICT);
    assert_non_null(strstr(why, "already resolved"));
    assert_int_equal(fl_incidents_acknowledge(s, id, T0 + 3 * SEC, &why), FL_ERR_CONFLICT);
    assert_int_equal(fl_incidents_get(s, id, ar, &inc), FL_OK);
    assert_int_equal(inc.status, FL_INC_RESOLVED);
    assert_string_equal(inc.resolved_by, "ann");
    assert_string_equal(inc.resolution, "restarted the db");
    /* default listing hides resolved incidents */
    fl_incident_t *list;
    size_t n;
    assert_int_equal(fl_incidents_list(s, NULL, ar, &list, &n), FL_OK);
    assert_int_equal(n, 0);
    fl_incident_filter_t flt = {.status = FL_INC_RESOLVED, .service = "inventory"};
    assert_int_equal(fl_incidents_list(s, &flt, ar, &list, &n), FL_OK);
    assert_int_equal(n, 1);
    fl_incidents_free(s);
    fl_arena_free(ar);
}

static void test_rca_incident_persistence(void **state)
{
    (void)state;
    fault_t f = {.pay_err = 1.0};
    scen_t x;
    run_scenario(&x, &f, 60);
    fl_incidents_t *s = fl_incidents_new(NULL);
    assert_int_equal(fl_incidents_update(s, x.an.items, x.an.n, &x.r, x.now, NULL, NULL), FL_OK);
    fl_incident_t *l1;
    size_t n1;
    assert_int_equal(fl_incidents_list(s, NULL, x.ar, &l1, &n1), FL_OK);
    assert_int_equal(n1, 1);
    assert_int_equal(fl_incidents_acknowledge(s, l1[0].id, x.now, NULL), FL_OK);
    fl_buf_t buf;
    fl_buf_init(&buf, 0);
    assert_int_equal(fl_incidents_save(s, &buf), FL_OK);
    fl_incidents_t *t = fl_incidents_new(NULL);
    assert_int_equal(fl_incidents_restore(t, buf.data, buf.len), FL_OK);
    fl_incident_t a, b;
    assert_int_equal(fl_incidents_get(s, l1[0].id, x.ar, &a), FL_OK);
    assert_int_equal(fl_incidents_get(t, l1[0].id, x.ar, &b), FL_OK);
    assert_string_equal(a.title, b.title);
    assert_int_equal(a.status, FL_INC_INVESTIGATING);
    assert_int_equal(b.status, a.status);
    assert_int_equal(b.severity, a.severity);
    assert_string_equal(b.root_cause.service, "payment");
    assert_string_equal(b.root_cause.issue, a.root_cause.issue);
    assert_int_equal(b.n_candidates, a.n_candidates);
    assert_int_equal(b.n_anomalies, a.n_anomalies);
    assert_int_equal(b.n_timeline, a.n_timeline);
    assert_int_equal(b.n_affected_endpoints, a.n_affected_endpoints);
    assert_int_equal(b.first_detected_ns, a.first_detected_ns);
    assert_int_equal(b.failed_requests, a.failed_requests);
    assert_memory_equal(b.trace_ids, a.trace_ids, a.n_trace_ids * 16);
    for (size_t i = 0; i < a.n_anomalies; i++)
        assert_string_equal(b.anomalies[i].summary, a.anomalies[i].summary);
    /* a save of the restored set is byte-identical */
    fl_buf_t buf2;
    fl_buf_init(&buf2, 0);
    assert_int_equal(fl_incidents_save(t, &buf2), FL_OK);
    assert_int_equal(buf2.len, buf.len);
    assert_memory_equal(buf2.data, buf.data, buf.len);
    /* truncation, corruption and newer versions are refused, leaving the set as it was */
    for (size_t cut = 0; cut < buf.len; cut += 7)
        assert_int_not_equal(fl_incidents_restore(t, buf.data, cut), FL_OK);
    buf.data[3] = 9;
    assert_int_equal(fl_incidents_restore(t, buf.data, buf.len), FL_ERR_UNSUPPORTED);
    assert_int_equal(fl_incidents_get(t, l1[0].id, x.ar, &b), FL_OK);
    fl_buf_dispose(&buf);
    fl_buf_dispose(&buf2);
    fl_incidents_free(s);
    fl_incidents_free(t);
    scen_free(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rca_mvp_payment_latency),
        cmocka_unit_test(test_rca_mvp_inventory_errors),
        cmocka_unit_test(test_rca_mvp_payment_errors_cascade),
        cmocka_unit_test(test_rca_network_gap_blames_callee),
        cmocka_unit_test(test_rca_timeout_missing_callee),
        cmocka_unit_test(test_rca_uninstrumented_db),
        cmocka_unit_test(test_rca_traffic_drop),
        cmocka_unit_test(test_rca_two_unrelated_faults),
        cmocka_unit_test(test_rca_cascade_drop_one_incident),
        cmocka_unit_test(test_rca_upstream_first_one_incident),
        cmocka_unit_test(test_rca_offline_spans_error_origin),
        cmocka_unit_test(test_rca_incident_dedup_and_extend),
        cmocka_unit_test(test_rca_incident_lifecycle),
        cmocka_unit_test(test_rca_incident_persistence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
