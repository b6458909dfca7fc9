/* SPDX-License-Identifier: Apache-2.0 */
/* Detector tests for analysis/ on seeded synthetic traces (frontend -> checkout -> payment /
 * inventory, a database, a queue) with scripted faults, delivered out of order: true positives,
 * long noisy-normal runs, k-of-n, clearing, determinism, threads and the cost per span. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/analysis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define SEC 1000000000ull
#define MSD 1000000.0
#define T0NS (1700000400ull * SEC) /* an hour boundary */
#define BUCKET (10 * SEC)

/* ---------------------------------------------------------------- generator */

enum { F_LATENCY = 1, F_SELF, F_GAP, F_ERROR, F_HANG, F_RATE, F_NEWTYPE };

typedef struct fault {
    int kind;
    const char *svc;
    double t0, t1; /* seconds */
    double x;
    const char *etype;
} fault_t;

typedef struct gen {
    uint64_t rng, mix_rng;
    double rate, health_rate, sigma, err_rate, diurnal_amp, diurnal_period, drift;
    int mix;
    fault_t f[8];
    int nf;
    fl_arena_t *ar[2];
    int cur;
    fl_span_t *out, *carry;
    size_t n, cap, nc, ccap, ncarried;
    uint64_t trace;
    double next_flow, next_health; /* ms */
} gen_t;

static fl_resource_t g_res[8];
static const char *g_svc[] = {"frontend", "checkout", "payment", "inventory", "admin"};

static const fl_resource_t *gres(const char *svc)
{
    for (int i = 0; i < 5; i++) {
        if (!strcmp(g_svc[i], svc)) {
            g_res[i].service_name = fl_str(g_svc[i]);
            return &g_res[i];
        }
    }
    fail();
    return NULL;
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double u01(uint64_t *s)
{
    return (double)(xs(s) >> 11) * 0x1.0p-53;
}

static double gauss(uint64_t *s)
{
    double u = u01(s), v = u01(s);
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static void gen_init(gen_t *g, uint64_t seed)
{
    memset(g, 0, sizeof(*g));
    g->rng = seed * 2654435761ull + 1;
    g->mix_rng = seed * 40503ull + 7;
    g->rate = 5;
    g->health_rate = 2;
    g->sigma = 0.4;
    g->err_rate = 0.0;
    g->diurnal_period = 6 * 3600;
    g->mix = 1;
    g->ar[0] = fl_arena_new(0);
    g->ar[1] = fl_arena_new(0);
}

static void gen_free(gen_t *g)
{
    fl_arena_free(g->ar[0]);
    fl_arena_free(g->ar[1]);
    free(g->out);
    free(g->carry);
}

static void gen_fault(gen_t *g, int kind, const char *svc, double t0, double t1, double x,
                      const char *etype)
{
    g->f[g->nf++] = (fault_t){kind, svc, t0, t1, x, etype};
}

static const fault_t *active(const gen_t *g, int kind, const char *svc, double t_ms)
{
    for (int i = 0; i < g->nf; i++)
        if (g->f[i].kind == kind && !strcmp(g->f[i].svc, svc) && t_ms >= g->f[i].t0 * 1000 &&
            t_ms < g->f[i].t1 * 1000)
            return &g->f[i];
    return NULL;
}

static double fx(const gen_t *g, int kind, const char *svc, double t, double dflt)
{
    const fault_t *f = active(g, kind, svc, t);
    return f ? f->x : dflt;
}

static double lognorm(gen_t *g, double median_ms, double t)
{
    double drift = 1 + g->drift * sin(2 * M_PI * t / 1234567.0);
    return median_ms * drift * exp(g->sigma * gauss(&g->rng));
}

static fl_span_t *emit(gen_t *g, const char *svc, uint64_t trace, uint64_t id, uint64_t parent,
                       int kind, const char *name, double s_ms, double e_ms)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4096;
        g->out = realloc(g->out, g->cap * sizeof(*g->out));
    }
    fl_span_t *s = &g->out[g->n++];
    memset(s, 0, sizeof(*s));
    memcpy(s->trace_id, &trace, 8);
    s->trace_id[15] = 0x5a;
    memcpy(s->span_id, &id, 8);
    if (parent)
        memcpy(s->parent_span_id, &parent, 8);
    s->kind = kind;
    s->name = fl_str(name);
    s->start_ns = T0NS + (uint64_t)(s_ms * MSD);
    s->end_ns = T0NS + (uint64_t)(e_ms * MSD);
    s->resource = gres(svc);
    s->attrs.items = fl_arena_calloc(g->ar[g->cur], 6, sizeof(fl_kv_t));
    return s;
}

static void kv_s(fl_span_t *s, const char *k, const char *v)
{
    fl_kv_t *kv = &s->attrs.items[s->attrs.n++];
    kv->key = fl_str(k);
    kv->value.type = FL_VAL_STRING;
    kv->value.u.str = fl_str(v);
}

static void kv_i(fl_span_t *s, const char *k, int64_t v)
{
    fl_kv_t *kv = &s->attrs.items[s->attrs.n++];
    kv->key = fl_str(k);
    kv->value.type = FL_VAL_INT;
    kv->value.u.i = v;
}

static void fail_span(gen_t *g, fl_span_t *s, int code, const char *etype, const char *msg)
{
    s->status_code = FL_STATUS_ERROR;
    if (code)
        kv_i(s, "http.response.status_code", code);
    if (msg)
        s->status_message = fl_str(msg);
    if (etype) {
        fl_event_t *e = fl_arena_calloc(g->ar[g->cur], 1, sizeof(*e));
        fl_kv_t *kv = fl_arena_calloc(g->ar[g->cur], 1, sizeof(*kv));
        kv->key = fl_str("exception.type");
        kv->value.type = FL_VAL_STRING;
        kv->value.u.str = fl_str(etype);
        e->name = fl_str("exception");
        e->attrs.items = kv;
        e->attrs.n = 1;
        s->events = e;
        s->n_events = 1;
    }
}

static void ok_span(fl_span_t *s)
{
    kv_i(s, "http.response.status_code", 200);
}

/* One checkout flow starting at t (ms): ten spans in two traces. */
static void flow(gen_t *g, double t)
{
    uint64_t tr = ++g->trace, id = tr * 16;
    double net = lognorm(g, 0.3, t);
    double fc_s = t + lognorm(g, 1, t), c_s = fc_s + net / 2;
    double c_self =
        lognorm(g, 2, t) * fx(g, F_LATENCY, "checkout", t, 1) + fx(g, F_SELF, "checkout", t, 0);
    double cp_s = c_s + c_self, cp_e, p_s = 0, p_e = 0;
    double gap = fx(g, F_GAP, "payment", t, 0);
    int hang = active(g, F_HANG, "payment", t) != NULL;
    double perr = fx(g, F_ERROR, "payment", t, g->err_rate);
    const fault_t *nt = active(g, F_NEWTYPE, "payment", t);
    if (nt)
        perr = nt->x;
    int p_err = !hang && u01(&g->rng) < perr;
    if (!hang) {
        p_s = cp_s + net / 4 + gap / 2;
        p_e = p_s + lognorm(g, 20, t) * fx(g, F_LATENCY, "payment", t, 1);
        cp_e = p_e + net / 4 + gap / 2;
    } else {
        cp_e = cp_s + 2000; /* the client's deadline */
    }
    double ci_s = cp_e + 0.1, i_s = ci_s + net / 4;
    double d_s = i_s + lognorm(g, 1, t);
    double d_e = d_s + lognorm(g, 3, t) * fx(g, F_LATENCY, "inventory", t, 1);
    double i_e = d_e + lognorm(g, 0.5, t), ci_e = i_e + net / 4;
    double ck_s = ci_e + 0.05, ck_e = ck_s + lognorm(g, 0.5, t);
    double c_e = ck_e + lognorm(g, 1, t), fc_e = c_e + net / 2, f_e = fc_e + lognorm(g, 1, t);
    double ic_s = ck_e + lognorm(g, 5, t), ic_e = ic_s + lognorm(g, 4, t);
    int c_err = p_err || hang;

    fl_span_t *s = emit(g, "frontend", tr, id + 1, 0, FL_KIND_SERVER, "GET /checkout", t, f_e);
    kv_s(s, "http.route", "/checkout");
    c_err ? fail_span(g, s, 502, NULL, NULL) : ok_span(s);
    s = emit(g, "frontend", tr, id + 2, id + 1, FL_KIND_CLIENT, "POST", fc_s, fc_e);
    kv_s(s, "server.address", "checkout.svc");
    c_err ? fail_span(g, s, 500, NULL, NULL) : ok_span(s);
    s = emit(g, "checkout", tr, id + 3, id + 2, FL_KIND_SERVER, "POST /api/checkout", c_s, c_e);
    c_err ? fail_span(g, s, hang ? 504 : 500, NULL, NULL) : ok_span(s);
    s = emit(g, "checkout", tr, id + 4, id + 3, FL_KIND_CLIENT, "POST", cp_s, cp_e);
    kv_s(s, "server.address", "payment.svc");
    if (hang)
        fail_span(g, s, 0, "TimeoutError", "deadline exceeded");
    else
        p_err ? fail_span(g, s, 500, NULL, NULL) : ok_span(s);
    if (!hang) {
        s = emit(g, "payment", tr, id + 5, id + 4, FL_KIND_SERVER, "POST /api/charge", p_s, p_e);
        kv_s(s, "http.route", "/api/charge");
        if (p_err)
            fail_span(g, s, 500, nt ? nt->etype : "CardDeclinedError", NULL);
        else
            ok_span(s);
    }
    s = emit(g, "checkout", tr, id + 6, id + 3, FL_KIND_CLIENT, "GET", ci_s, ci_e);
    kv_s(s, "server.address", "inventory.svc");
    ok_span(s);
    static const char *skus[] = {"GET /api/stock/SKU-1002", "GET /api/stock/SKU-2040",
                                 "GET /api/stock/SKU-3300"};
    s = emit(g, "inventory", tr, id + 7, id + 6, FL_KIND_SERVER, skus[tr % 3], i_s, i_e);
    kv_s(s, "http.route", "/api/stock/{sku}");
    kv_s(s, "http.request.method", "GET");
    ok_span(s);
    s = emit(g, "inventory", tr, id + 8, id + 7, FL_KIND_INTERNAL, "SELECT stock", d_s, d_e);
    kv_s(s, "db.system", "postgresql");
    kv_s(s, "db.name", "shop");
    emit(g, "checkout", tr, id + 9, id + 3, FL_KIND_PRODUCER, "publish orders", ck_s, ck_e);
    s = emit(g, "inventory", tr | (1ull << 62), id + 10, 0, FL_KIND_CONSUMER, "process orders",
             ic_s, ic_e);
    s->links = fl_arena_calloc(g->ar[g->cur], 1, sizeof(fl_link_t));
    uint64_t ck = id + 9;
    memcpy(s->links[0].span_id, &ck, 8);
    s->n_links = 1;
}

static double flow_rate(const gen_t *g, double t_ms)
{
    double r = g->rate * (1 + g->diurnal_amp * sin(2 * M_PI * t_ms / 1000 / g->diurnal_period));
    return r * fx(g, F_RATE, "frontend", t_ms, 1);
}

/* Produce the spans of every flow starting before t_to (s), mixed like real exporters:
 * shuffled, and one service's spans held back to arrive with the next chunk. */
static void gen_chunk(gen_t *g, double t_to)
{
    g->cur ^= 1;
    fl_arena_reset(g->ar[g->cur]);
    if (g->cap < g->nc) {
        g->cap = g->nc * 2;
        g->out = realloc(g->out, g->cap * sizeof(*g->out));
    }
    if (g->nc) /* last chunk's held-back spans */
        memcpy(g->out, g->carry, g->nc * sizeof(*g->out));
    g->n = g->ncarried = g->nc;
    g->nc = 0;
    double to_ms = t_to * 1000;
    while (g->next_flow < to_ms) {
        double t = g->next_flow, r = flow_rate(g, t);
        if (r > 1e-6)
            flow(g, t);
        g->next_flow += r > 1e-6 ? -log(1 - u01(&g->rng)) * 1000 / r : 1000;
    }
    while (g->next_health < to_ms) {
        double t = g->next_health, d = lognorm(g, 0.5, t);
        uint64_t tr = ++g->trace;
        fl_span_t *s =
            emit(g, "admin", tr, tr * 16 + 1, 0, FL_KIND_SERVER, "GET /health", t, t + d);
        ok_span(s);
        g->next_health += -log(1 - u01(&g->rng)) * 1000 / g->health_rate;
    }
    if (!g->mix)
        return;
    /* Shuffle and hold back only this chunk's spans: last chunk's held-back spans go out
     * now (first), since their arena is reused for the next chunk. */
    size_t old = g->ncarried;
    for (size_t i = g->n; i > old + 1; i--) {
        size_t j = old + (size_t)(u01(&g->mix_rng) * (double)(i - old));
        fl_span_t tmp = g->out[i - 1];
        g->out[i - 1] = g->out[j];
        g->out[j] = tmp;
    }
    const fl_resource_t *held = gres(g_svc[xs(&g->mix_rng) % 4]);
    size_t w = old;
    for (size_t i = old; i < g->n; i++) {
        if (g->out[i].resource == held && u01(&g->mix_rng) < 0.7) {
            if (g->nc == g->ccap) {
                g->ccap = g->ccap ? g->ccap * 2 : 1024;
                g->carry = realloc(g->carry, g->ccap * sizeof(*g->carry));
            }
            g->carry[g->nc++] = g->out[i];
        } else {
            g->out[w++] = g->out[i];
        }
    }
    g->n = w;
}

/* Feed [from, to) seconds of traffic in 1 s chunks, each split into random batches; run
 * analysis every run_every chunks (0: only at the end; -1: never). */
static void sim(gen_t *g, fl_analysis_t *a, double from, double to, int run_every)
{
    int k = 0;
    for (double t = from + 1; t <= to + 1e-9; t += 1, k++) {
        gen_chunk(g, t);
        size_t i = 0;
        while (i < g->n) {
            size_t m = 1 + (size_t)(u01(&g->mix_rng) * (double)(g->n / 2 + 1));
            if (m > g->n - i)
                m = g->n - i;
            assert_int_equal(fl_analysis_observe(a, g->out + i, m), FL_OK);
            i += m;
        }
        if (run_every > 0 && k % run_every == 0)
            assert_int_equal(fl_analysis_run(a, 0, NULL, NULL), FL_OK);
    }
    if (run_every >= 0)
        assert_int_equal(fl_analysis_run(a, 0, NULL, NULL), FL_OK);
}

/* ---------------------------------------------------------------- helpers */

static fl_arena_t *ar;

static fl_analysis_anomalies_t all_anomalies(fl_analysis_t *a)
{
    fl_analysis_anomalies_t out;
    assert_int_equal(fl_analysis_anomalies(a, NULL, ar, &out), FL_OK);
    return out;
}

static void dump(const fl_analysis_anomalies_t *an)
{
    for (size_t i = 0; i < an->n; i++) {
        const fl_anomaly_t *x = &an->items[i];
        fprintf(
            stderr,
            "  [%s] kind=%d subj=%d %s%s%s -> %s:%s metric=%s start=+%.0fs det=+%.0fs "
            "end=+%.0fs open=%d sev=%d obs=%.3f base=%.3f ratio=%.2f z=%.1f n=%llu traces=%zu\n",
            x->summary, x->kind, x->subject, x->caller_service ? x->caller_service : "",
            x->caller_service ? ":" : "", x->caller_operation ? x->caller_operation : "",
            x->service, x->operation, x->metric, (double)(x->start_ns - T0NS) / 1e9,
            (double)(x->detected_ns - T0NS) / 1e9, (double)(x->end_ns - T0NS) / 1e9, x->open,
            x->severity, x->observed, x->baseline, x->ratio, x->z, (unsigned long long)x->samples,
            x->n_trace_ids);
    }
}

/* The first anomaly of this kind/subject on service (and operation, if given). */
static const fl_anomaly_t *find(const fl_analysis_anomalies_t *an, int kind, int subject,
                                const char *svc, const char *op)
{
    for (size_t i = 0; i < an->n; i++) {
        const fl_anomaly_t *x = &an->items[i];
        if ((int)x->kind == kind && (!subject || (int)x->subject == subject) &&
            !strcmp(x->service, svc) && (!op || !strcmp(x->operation, op)))
            return x;
    }
    return NULL;
}

/* True positive: raised within three buckets of the fault start, nothing before it. */
static const fl_anomaly_t *expect(fl_analysis_t *a, double fault_s, int kind, int subject,
                                  const char *svc, const char *op)
{
    fl_analysis_anomalies_t an = all_anomalies(a);
    const fl_anomaly_t *x = find(&an, kind, subject, svc, op);
    uint64_t t0 = T0NS + (uint64_t)(fault_s * 1e9);
    int bad = !x;
    for (size_t i = 0; i < an.n; i++)
        bad |= an.items[i].detected_ns < t0;
    if (x)
        bad |= x->detected_ns > t0 + 3 * BUCKET || x->start_ns + BUCKET < t0 ||
               (x->n_trace_ids == 0 && kind != FL_ANOMALY_TRAFFIC) || x->severity < FL_SEV_LOW ||
               !x->summary;
    if (bad) {
        fprintf(stderr, "expected kind %d subject %d on %s within 3 buckets of +%.0fs; got:\n",
                kind, subject, svc, fault_s);
        dump(&an);
        fail();
    }
    return x;
}

static void near_rate(double got, double want)
{
    if (fabs(got - want) > 0.25 * want) {
        fprintf(stderr, "rate %.3f, want %.3f\n", got, want);
        fail();
    }
}

static fl_analysis_t *engine(void)
{
    fl_analysis_t *a = fl_analysis_new(NULL);
    assert_non_null(a);
    fl_arena_reset(ar);
    return a;
}

/* ---------------------------------------------------------------- detectors */

static void test_detect_latency(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 1);
    gen_fault(&g, F_LATENCY, "payment", 1800, 2100, 6, NULL);
    sim(&g, a, 0, 2400, 1);
    const fl_anomaly_t *x =
        expect(a, 1800, FL_ANOMALY_LATENCY, FL_SUBJECT_ENDPOINT, "payment", "POST /api/charge");
    assert_true(x->ratio > 4 && x->ratio < 9);
    assert_true(x->severity == FL_SEV_MEDIUM);
    assert_false(x->open); /* ended after the fault, once clear for three buckets */
    assert_true(x->end_ns >= T0NS + 2090 * SEC && x->end_ns <= T0NS + 2120 * SEC);
    assert_non_null(strstr(x->summary, "Latency spike"));
    /* the slow callee shows on the edge into it too, and not on unrelated endpoints */
    fl_analysis_anomalies_t an = all_anomalies(a);
    assert_non_null(find(&an, FL_ANOMALY_LATENCY, FL_SUBJECT_EDGE, "payment", NULL));
    assert_null(find(&an, FL_ANOMALY_LATENCY, 0, "inventory", NULL));
    assert_null(find(&an, FL_ANOMALY_ERROR, 0, "payment", NULL));
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_self_time(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 2);
    gen_fault(&g, F_SELF, "checkout", 1800, 2100, 40, NULL);
    sim(&g, a, 0, 2200, 3);
    expect(a, 1800, FL_ANOMALY_LATENCY, FL_SUBJECT_SELF_TIME, "checkout", "POST /api/checkout");
    fl_analysis_anomalies_t an = all_anomalies(a);
    assert_null(find(&an, FL_ANOMALY_LATENCY, 0, "payment", NULL));
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_gap(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 3);
    gen_fault(&g, F_GAP, "payment", 1800, 2100, 150, NULL);
    sim(&g, a, 0, 2200, 1);
    const fl_anomaly_t *x =
        expect(a, 1800, FL_ANOMALY_LATENCY, FL_SUBJECT_EDGE_GAP, "payment", "POST /api/charge");
    assert_string_equal(x->caller_service, "checkout");
    assert_string_equal(x->caller_operation, "POST /api/checkout");
    fl_analysis_anomalies_t an = all_anomalies(a);
    assert_null(find(&an, FL_ANOMALY_LATENCY, FL_SUBJECT_ENDPOINT, "payment", NULL));
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_errors(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 4);
    g.err_rate = 0.01;
    gen_fault(&g, F_ERROR, "payment", 1800, 2100, 0.6, NULL);
    sim(&g, a, 0, 2200, 1);
    const fl_anomaly_t *x =
        expect(a, 1800, FL_ANOMALY_ERROR, FL_SUBJECT_ENDPOINT, "payment", "POST /api/charge");
    assert_true(x->observed > 0.3);
    assert_true(x->baseline < 0.05);
    fl_analysis_anomalies_t an = all_anomalies(a);
    assert_null(find(&an, FL_ANOMALY_TIMEOUT, 0, "payment", NULL));
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_errors_normally_failing(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 5);
    g.err_rate = 0.25; /* payment normally fails a quarter of the time */
    g.rate = 8;
    gen_fault(&g, F_ERROR, "payment", 3600, 3900, 0.7, NULL);
    sim(&g, a, 0, 3600, 5);
    fl_analysis_anomalies_t an = all_anomalies(a);
    /* The first minute, before the baseline is trusted, falls under the plain 20 % rule;
     * once learned, 25 % is normal here and raises nothing. */
    for (size_t i = 0; i < an.n; i++)
        assert_true(an.items[i].end_ns < T0NS + 120 * SEC && !an.items[i].open);
    size_t before = an.n;
    sim(&g, a, 3600, 4000, 5);
    an = all_anomalies(a);
    const fl_anomaly_t *x = NULL;
    for (size_t i = before; i < an.n; i++)
        if (!x && an.items[i].kind == FL_ANOMALY_ERROR && !strcmp(an.items[i].service, "payment"))
            x = &an.items[i];
    if (!x || x->detected_ns > T0NS + 3630 * SEC || x->start_ns < T0NS + 3590 * SEC)
        dump(&an);
    assert_non_null(x);
    assert_true(x->detected_ns <= T0NS + 3630 * SEC);
    assert_true(x->baseline > 0.2 && x->baseline < 0.3);
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_timeout(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 6);
    gen_fault(&g, F_HANG, "payment", 1800, 2100, 1, NULL);
    sim(&g, a, 0, 2200, 1);
    fl_analysis_anomalies_t an = all_anomalies(a);
    const fl_anomaly_t *x = find(&an, FL_ANOMALY_TIMEOUT, FL_SUBJECT_EDGE, "payment", NULL);
    if (!x || x->detected_ns > T0NS + 1830 * SEC) {
        dump(&an);
        fail();
    }
    assert_string_equal(x->caller_service, "checkout");
    assert_true(x->severity >= FL_SEV_HIGH);
    /* the checkout endpoint's own failures are timeouts too, not a separate error storm */
    assert_non_null(find(&an, FL_ANOMALY_TIMEOUT, FL_SUBJECT_ENDPOINT, "checkout", NULL));
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_traffic(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 7);
    g.rate = 6;
    gen_fault(&g, F_RATE, "frontend", 1800, 2100, 0, NULL); /* silent */
    gen_fault(&g, F_RATE, "frontend", 2700, 3000, 15, NULL);
    sim(&g, a, 0, 2400, 1);
    const fl_anomaly_t *x =
        expect(a, 1800, FL_ANOMALY_TRAFFIC, FL_SUBJECT_ENDPOINT, "frontend", "GET /checkout");
    assert_string_equal(x->direction, "drop");
    assert_true(x->observed < 0.1);
    assert_true(x->baseline > 4);
    sim(&g, a, 2400, 3100, 1);
    fl_analysis_anomalies_t an = all_anomalies(a);
    int surge = 0;
    for (size_t i = 0; i < an.n; i++) {
        const fl_anomaly_t *y = &an.items[i];
        if (y->kind == FL_ANOMALY_TRAFFIC && !strcmp(y->service, "frontend") &&
            !strcmp(y->direction, "surge") && y->detected_ns <= T0NS + 2730 * SEC &&
            y->detected_ns >= T0NS + 2700 * SEC)
            surge = 1;
    }
    if (!surge)
        dump(&an);
    assert_true(surge);
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_new_error_type(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 8);
    g.err_rate = 0.03;
    gen_fault(&g, F_NEWTYPE, "payment", 1800, 1900, 0.03, "FraudSuspectedError");
    sim(&g, a, 0, 2000, 1);
    const fl_anomaly_t *x = expect(a, 1800, FL_ANOMALY_NEW_ERROR_TYPE, FL_SUBJECT_ENDPOINT,
                                   "payment", "POST /api/charge");
    assert_string_equal(x->error_type, "FraudSuspectedError");
    fl_analysis_anomalies_t an = all_anomalies(a);
    size_t n = 0;
    for (size_t i = 0; i < an.n; i++)
        n += an.items[i].kind == FL_ANOMALY_NEW_ERROR_TYPE;
    assert_int_equal(n, 1); /* CardDeclinedError was learned silently */
    gen_free(&g);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- k of n, clearing */

static uint64_t kn_id = 1;

/* One bucket of one endpoint: 20 requests around median_ms. */
static void bucket(fl_analysis_t *a, int b, double median_ms, uint64_t *seed)
{
    fl_span_t s[22];
    static fl_resource_t r = {.service_name = {"svc", 3}};
    static fl_resource_t other = {.service_name = {"other", 5}};
    memset(s, 0, sizeof(s));
    for (int i = 0; i < 22; i++) {
        uint64_t t = T0NS + (uint64_t)b * BUCKET + (uint64_t)i * 400000000ull;
        double d = median_ms * exp(0.2 * gauss(seed));
        uint64_t id = kn_id++;
        memcpy(s[i].span_id, &id, 8);
        memcpy(s[i].trace_id, &id, 8);
        s[i].kind = FL_KIND_SERVER;
        s[i].name = fl_str(i < 20 ? "GET /op" : "GET /other");
        s[i].resource = i < 20 ? &r : &other;
        s[i].start_ns = t;
        s[i].end_ns = t + (uint64_t)(d * MSD);
    }
    assert_int_equal(fl_analysis_observe(a, s, 22), FL_OK);
    assert_int_equal(fl_analysis_run(a, 0, NULL, NULL), FL_OK);
}

static size_t count_latency(fl_analysis_t *a, int open_only)
{
    fl_analysis_filter_t f = {0};
    f.service = "svc";
    f.open_only = open_only;
    fl_analysis_anomalies_t an;
    assert_int_equal(fl_analysis_anomalies(a, &f, ar, &an), FL_OK);
    size_t n = 0;
    for (size_t i = 0; i < an.n; i++)
        n += an.items[i].kind == FL_ANOMALY_LATENCY; /* a leaf: no separate self-time one */
    return n;
}

static void test_detect_k_of_n(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    uint64_t seed = 99;
    int b = 0;
    for (; b < 60; b++)
        bucket(a, b, 10, &seed);
    /* the run for bucket b happens once bucket b+1 arrives (grace 5 s) */
    bucket(a, b++, 40, &seed); /* 4x, low severity: one bucket alone is not enough */
    for (int i = 0; i < 5; i++)
        bucket(a, b++, 10, &seed);
    assert_int_equal(count_latency(a, 0), 0);
    bucket(a, b++, 40, &seed); /* 2 of 3 */
    bucket(a, b++, 10, &seed);
    bucket(a, b++, 40, &seed);
    bucket(a, b++, 10, &seed);
    assert_int_equal(count_latency(a, 1), 1);
    fl_analysis_filter_t f = {0};
    f.service = "svc";
    fl_analysis_anomalies_t an;
    fl_analysis_anomalies(a, &f, ar, &an);
    uint64_t start = an.items[0].start_ns;
    assert_int_equal(start, T0NS + (uint64_t)(b - 4) * BUCKET); /* the first bucket that held */
    assert_int_equal(an.items[0].severity, FL_SEV_LOW);
    /* clear: still open after two clear buckets, closed after the third */
    bucket(a, b++, 10, &seed);
    bucket(a, b++, 10, &seed);
    assert_int_equal(count_latency(a, 1), 1);
    bucket(a, b++, 10, &seed);
    assert_int_equal(count_latency(a, 1), 0);
    fl_analysis_anomalies(a, &f, ar, &an);
    assert_int_equal(an.n, 1);
    assert_int_equal(an.items[0].end_ns, T0NS + (uint64_t)(b - 4) * BUCKET);
    for (int i = 0; i < 10; i++)
        bucket(a, b++, 10, &seed);
    /* a severe bucket (30x, critical) opens at once */
    bucket(a, b++, 300, &seed);
    bucket(a, b++, 10, &seed);
    f.open_only = 1;
    fl_analysis_anomalies(a, &f, ar, &an);
    assert_int_equal(an.n, 1);
    assert_int_equal(an.items[0].severity, FL_SEV_CRITICAL);
    assert_int_equal(an.items[0].start_ns, T0NS + (uint64_t)(b - 2) * BUCKET);
    assert_int_equal(an.items[0].buckets, 1);
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- hour-of-day profile */

/* A shop open 09:00-18:00 UTC: 40 requests per bucket by day, 4 by night, switching at once.
 * The 1 h EWMA calls the evening drop anomalous on the first days; once two days of
 * history exist the hour-of-day profile knows it and the third day raises nothing. */
static void test_detect_hourly_profile(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    static fl_resource_t shop = {.service_name = {"shop", 4}}, bg = {.service_name = {"bg", 2}};
    fl_span_t s[48];
    uint64_t seed = 3, id = 1;
    int days = 4, per_day = 8640;
    for (int b = 0; b < days * per_day; b++) {
        int hour = (b % per_day) / 360, n = (hour >= 9 && hour < 18) ? 40 : 4;
        /* a little Poisson-ish jitter */
        n += (int)(gauss(&seed) * sqrt((double)n));
        if (n < 0)
            n = 0;
        int m = 0;
        for (int i = 0; i < n + 2 && m < 48; i++, m++) {
            uint64_t t = T0NS + (uint64_t)b * BUCKET + (uint64_t)(u01(&seed) * 9e9);
            memset(&s[m], 0, sizeof(s[m]));
            memcpy(s[m].span_id, &id, 8);
            id++;
            s[m].kind = FL_KIND_SERVER;
            s[m].name = fl_str(i < 2 ? "tick" : "GET /shop");
            s[m].resource = i < 2 ? &bg : &shop;
            s[m].start_ns = t;
            s[m].end_ns = t + (uint64_t)(5e6 * exp(0.3 * gauss(&seed)));
        }
        assert_int_equal(fl_analysis_observe(a, s, (size_t)m), FL_OK);
        if (b % 60 == 0)
            assert_int_equal(fl_analysis_run(a, 0, NULL, NULL), FL_OK);
    }
    fl_analysis_run(a, 0, NULL, NULL);
    fl_analysis_anomalies_t an = all_anomalies(a);
    size_t early = 0, late = 0;
    for (size_t i = 0; i < an.n; i++) {
        if (an.items[i].start_ns < T0NS + 50 * 3600 * SEC)
            early++;
        else
            late++;
    }
    fl_analysis_filter_t f = {0};
    f.service = "shop";
    fl_analysis_baselines_t bl;
    assert_int_equal(fl_analysis_baselines(a, &f, ar, &bl), FL_OK);
    fprintf(stderr, "diurnal: %zu anomalies in the first 50 h, %zu after; hourly=%d rate %.2f/s\n",
            early, late, bl.items[0].hourly, bl.items[0].rate_per_s);
    if (late)
        dump(&an);
    assert_int_equal(late, 0);
    assert_true(bl.items[0].hourly);
    near_rate(bl.items[0].rate_per_s, 0.4); /* the last hour is at night: 4 per 10 s */
    fl_analysis_free(a);
}

/* ---------------------------------------------------------------- threads */

typedef struct conc {
    fl_analysis_t *a;
    int done; /* atomic */
    uint64_t runs, queries;
} conc_t;

static void *conc_writer(void *arg)
{
    conc_t *c = arg;
    gen_t g;
    gen_init(&g, 51);
    gen_fault(&g, F_LATENCY, "payment", 900, 1100, 8, NULL);
    sim(&g, c->a, 0, 1200, -1); /* observe only; the other threads run and query */
    gen_free(&g);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *conc_runner(void *arg)
{
    conc_t *c = arg;
    fl_arena_t *x = fl_arena_new(0);
    while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
        fl_analysis_run_result_t r;
        assert_int_equal(fl_analysis_run(c->a, 0, x, &r), FL_OK);
        fl_arena_reset(x);
        c->runs++;
    }
    fl_arena_free(x);
    return NULL;
}

static void *conc_reader(void *arg)
{
    conc_t *c = arg;
    fl_arena_t *x = fl_arena_new(0);
    while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
        fl_analysis_metrics_t m;
        fl_analysis_anomalies_t an;
        fl_analysis_baselines_t bl;
        fl_graph_t g;
        fl_analysis_status_t st;
        assert_int_equal(fl_analysis_metrics(c->a, NULL, x, &m), FL_OK);
        assert_int_equal(fl_analysis_anomalies(c->a, NULL, x, &an), FL_OK);
        assert_int_equal(fl_analysis_baselines(c->a, NULL, x, &bl), FL_OK);
        assert_int_equal(fl_analysis_graph(c->a, NULL, x, &g), FL_OK);
        assert_int_equal(fl_analysis_status(c->a, &st), FL_OK);
        fl_arena_reset(x);
        c->queries++;
    }
    fl_arena_free(x);
    return NULL;
}

static void test_detect_concurrency(void **state)
{
    (void)state;
    conc_t c = {0};
    c.a = engine();
    pthread_t w, r, q;
    pthread_create(&r, NULL, conc_runner, &c);
    pthread_create(&q, NULL, conc_reader, &c);
    pthread_create(&w, NULL, conc_writer, &c);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    pthread_join(q, NULL);
    fl_analysis_run(c.a, 0, NULL, NULL);
    fl_analysis_anomalies_t an = all_anomalies(c.a);
    fprintf(stderr, "concurrency: %llu runs, %llu query rounds, %zu anomalies\n",
            (unsigned long long)c.runs, (unsigned long long)c.queries, an.n);
    assert_true(c.runs > 0 && c.queries > 0);
    assert_non_null(find(&an, FL_ANOMALY_LATENCY, FL_SUBJECT_ENDPOINT, "payment", NULL));
    fl_analysis_free(c.a);
}

/* ---------------------------------------------------------------- noise */

static void noise_run(uint64_t seed, double hours, double sigma, double err)
{
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, seed);
    g.rate = 8;
    g.sigma = sigma;
    g.err_rate = err;
    g.diurnal_amp = 0.6;
    g.diurnal_period = 5 * 3600;
    g.drift = 0.2;
    sim(&g, a, 0, hours * 3600, 7);
    fl_analysis_anomalies_t an = all_anomalies(a);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    fprintf(stderr, "noise seed %llu: %.1f h, %llu spans, %u series, %zu anomalies, late %llu\n",
            (unsigned long long)seed, hours, (unsigned long long)st.spans_observed, st.series_total,
            an.n, (unsigned long long)st.spans_late);
    if (an.n)
        dump(&an);
    assert_int_equal(an.n, 0);
    assert_int_equal(st.spans_late, 0);
    assert_int_equal(st.window_evictions, 0);
    gen_free(&g);
    fl_analysis_free(a);
}

static void test_detect_noise_6h(void **state)
{
    (void)state;
    noise_run(11, 6, 0.5, 0.01);
}

static void test_detect_noise_heavy_tail(void **state)
{
    (void)state;
    noise_run(12, 2, 0.9, 0.02);
}

/* ---------------------------------------------------------------- determinism */

static fl_analysis_anomalies_t det_run(uint64_t mix_seed, int run_every, int mix)
{
    fl_analysis_t *a = fl_analysis_new(NULL);
    gen_t g;
    gen_init(&g, 21);
    g.mix_rng = mix_seed;
    g.mix = mix;
    gen_fault(&g, F_LATENCY, "payment", 1500, 1700, 8, NULL);
    gen_fault(&g, F_ERROR, "payment", 1900, 2000, 0.5, NULL);
    sim(&g, a, 0, 2200, run_every);
    fl_analysis_anomalies_t an;
    assert_int_equal(fl_analysis_anomalies(a, NULL, ar, &an), FL_OK);
    gen_free(&g);
    fl_analysis_free(a);
    return an;
}

static void test_detect_determinism(void **state)
{
    (void)state;
    fl_arena_reset(ar);
    fl_analysis_anomalies_t x = det_run(1, 1, 1), y = det_run(777, 37, 1), z = det_run(5, 0, 0);
    assert_true(x.n >= 2);
    fl_analysis_anomalies_t *other[] = {&y, &z};
    for (int k = 0; k < 2; k++) {
        if (other[k]->n != x.n) {
            dump(&x);
            dump(other[k]);
        }
        assert_int_equal(other[k]->n, x.n);
        for (size_t i = 0; i < x.n; i++) {
            const fl_anomaly_t *p = &x.items[i], *q = &other[k]->items[i];
            assert_int_equal(p->id, q->id);
            assert_int_equal(p->kind, q->kind);
            assert_int_equal(p->start_ns, q->start_ns);
            assert_int_equal(p->end_ns, q->end_ns);
            assert_int_equal(p->detected_ns, q->detected_ns);
            assert_true(p->observed == q->observed);
            assert_true(p->baseline == q->baseline);
            assert_true(p->z == q->z);
            assert_int_equal(p->samples, q->samples);
            assert_int_equal(p->n_trace_ids, q->n_trace_ids);
            assert_memory_equal(p->trace_ids, q->trace_ids, sizeof(p->trace_ids));
            assert_string_equal(p->summary, q->summary);
        }
    }
}

/* ---------------------------------------------------------------- cost */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the box may be busy */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_detect_cost(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 31);
    g.rate = 400; /* ~4000 spans/s of event time */
    g.mix = 1;
    double spent = 0;
    size_t spans = 0;
    for (double t = 1; t <= 150; t += 1) {
        gen_chunk(&g, t);
        double t0 = now_s();
        assert_int_equal(fl_analysis_observe(a, g.out, g.n), FL_OK);
        spent += now_s() - t0;
        spans += g.n;
        if ((int)t % 10 == 0)
            fl_analysis_run(a, 0, NULL, NULL);
    }
    double t0 = now_s();
    fl_analysis_run(a, 0, NULL, NULL);
    double run_s = now_s() - t0;
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    fprintf(stderr, "observe: %zu spans, %.0f ns/span (incl. sealing); last run %.2f ms\n", spans,
            spent / (double)spans * 1e9, run_s * 1e3);
    /* The cost itself is a benchmark figure (make bench), never a timed assertion. */
    assert_int_equal(st.spans_late, 0);
    gen_free(&g);
    fl_analysis_free(a);
}

/* An analysis round over 10,000 series (the cap), measured. */
static void test_detect_many_series(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    fl_span_t *s = calloc(10000, sizeof(*s));
    static fl_resource_t res[100];
    static char names[100][16];
    char(*ops)[24] = calloc(10000, 24);
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof(names[i]), "svc-%d", i);
        res[i].service_name = fl_str(names[i]);
    }
    uint64_t seed = 5, id = 1;
    double worst = 0;
    for (int b = 0; b < 33; b++) { /* bucket 30 completes a 5 min roll-up */
        for (int i = 0; i < 10000; i++) {
            uint64_t t = T0NS + (uint64_t)b * BUCKET + (uint64_t)i * 900000ull;
            memset(&s[i], 0, sizeof(s[i]));
            snprintf(ops[i], 24, "op-%d", i / 100);
            s[i].name = fl_str(ops[i]);
            s[i].resource = &res[i % 100];
            s[i].kind = FL_KIND_SERVER;
            memcpy(s[i].span_id, &id, 8);
            id++;
            s[i].start_ns = t;
            s[i].end_ns = t + (uint64_t)(5e6 * exp(0.3 * gauss(&seed)));
        }
        assert_int_equal(fl_analysis_observe(a, s, 10000), FL_OK);
        fl_analysis_run_result_t r;
        assert_int_equal(fl_analysis_run(a, 0, NULL, &r), FL_OK);
        if (r.buckets_closed && (double)r.duration_ns / 1e6 > worst)
            worst = (double)r.duration_ns / 1e6;
    }
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    fprintf(stderr, "10k series: worst analysis round %.1f ms, %u series, refused %llu\n", worst,
            st.series_total, (unsigned long long)st.series_refused);
    assert_int_equal(st.series_total, 10000);
    assert_true(worst < 1000);
    /* the cap refuses (and counts) series beyond it */
    fl_span_t extra = s[0];
    extra.name = fl_str("brand-new-op");
    fl_analysis_observe(a, &extra, 1);
    fl_analysis_status(a, &st);
    assert_true(st.series_refused > 0);
    free(ops);
    free(s);
    fl_analysis_free(a);
}

static void test_detect_run_result_status(void **state)
{
    (void)state;
    fl_analysis_t *a = engine();
    gen_t g;
    gen_init(&g, 41);
    gen_fault(&g, F_LATENCY, "payment", 600, 900, 30, NULL);
    sim(&g, a, 0, 640, 0);
    fl_analysis_run_result_t r;
    /* nothing pending: run returns zero buckets */
    assert_int_equal(fl_analysis_run(a, 0, ar, &r), FL_OK);
    assert_int_equal(r.buckets_closed, 0);
    sim(&g, a, 640, 700, 0); /* its last run takes the sealed buckets */
    assert_int_equal(fl_analysis_run(a, 0, ar, &r), FL_OK);
    assert_int_equal(r.buckets_closed, 0);
    sim(&g, a, 700, 760, -1);
    assert_int_equal(fl_analysis_run(a, 0, ar, &r), FL_OK);
    fprintf(stderr, "closed %u until +%.0f wm +%.0f\n", r.buckets_closed,
            (double)(r.closed_until_ns - T0NS) / 1e9, (double)(r.watermark_ns - T0NS) / 1e9);
    assert_true(r.buckets_closed >= 5);
    assert_int_equal(r.n_buckets, r.buckets_closed);
    assert_true(r.closed_until_ns > T0NS + 740 * SEC);
    fl_analysis_status_t st;
    fl_analysis_status(a, &st);
    assert_true(st.runs >= 2);
    assert_true(st.series_endpoints >= 5 && st.series_edges >= 4 && st.series_operations >= 1);
    assert_true(st.anomalies_open >= 1);
    assert_true(st.history_bytes > 0 && st.history_oldest_ns == T0NS);
    fl_analysis_filter_t f = {0};
    f.open_only = 1;
    f.service = "payment";
    fl_analysis_anomalies_t an;
    assert_int_equal(fl_analysis_anomalies(a, &f, ar, &an), FL_OK);
    assert_true(an.n >= 1);
    assert_true(an.items[0].n_trace_ids >= 1);
    /* metrics over a range, with the learned baseline beside the observed numbers */
    f.open_only = 0;
    f.start_ns = T0NS + 300 * SEC;
    f.end_ns = T0NS + 600 * SEC;
    fl_analysis_metrics_t m;
    assert_int_equal(fl_analysis_metrics(a, &f, ar, &m), FL_OK);
    assert_int_equal(m.n, 1);
    assert_int_equal(m.start_ns, f.start_ns);
    assert_int_equal(m.end_ns, f.end_ns);
    assert_true(m.items[0].baseline_trusted);
    assert_true(fabs(m.items[0].avg_ms - m.items[0].baseline_latency_ms) <
                0.2 * m.items[0].baseline_latency_ms);
    assert_int_equal(m.items[0].n_statuses, 1);
    assert_int_equal(m.items[0].statuses[0].code, 200);
    fl_analysis_baselines_t bl;
    assert_int_equal(fl_analysis_baselines(a, &f, ar, &bl), FL_OK);
    assert_true(bl.n >= 2);
    assert_true(bl.items[0].confidence > 0.9 && bl.items[0].n_history >= 2);
    gen_free(&g);
    fl_analysis_free(a);
}

static int setup(void **state)
{
    (void)state;
    ar = fl_arena_new(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fl_arena_free(ar);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_latency),
        cmocka_unit_test(test_detect_self_time),
        cmocka_unit_test(test_detect_gap),
        cmocka_unit_test(test_detect_errors),
        cmocka_unit_test(test_detect_errors_normally_failing),
        cmocka_unit_test(test_detect_timeout),
        cmocka_unit_test(test_detect_traffic),
        cmocka_unit_test(test_detect_new_error_type),
        cmocka_unit_test(test_detect_k_of_n),
        cmocka_unit_test(test_detect_hourly_profile),
        cmocka_unit_test(test_detect_concurrency),
        cmocka_unit_test(test_detect_noise_6h),
        cmocka_unit_test(test_detect_noise_heavy_tail),
        cmocka_unit_test(test_detect_determinism),
        cmocka_unit_test(test_detect_cost),
        cmocka_unit_test(test_detect_many_series),
        cmocka_unit_test(test_detect_run_result_status),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
