/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for faultline-load's synthetic generator: topology errors, well-formed traces,
 * scripted faults acting exactly on their target and window, determinism, OTLP encoding. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "synth.h"

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000000ull
#define T0 1767225600000000000ull /* 2026-01-01T00:00:00Z */

static fl_synth_topo_t *load_shop(void)
{
    char err[512];
    fl_synth_topo_t *t =
        fl_synth_topo_load(FL_SOURCE_DIR "/tools/load/topologies/shop.json", err, sizeof(err));
    if (!t)
        fail_msg("shop.json: %s", err);
    return t;
}

/* Every span of a run, drained in steps of step_ns (0: all at once). */
static fl_synth_span_t *run(const fl_synth_topo_t *t, const fl_synth_fault_t *f, size_t nf,
                            uint64_t dur, uint64_t seed, uint64_t step_ns, size_t *n)
{
    char err[512];
    fl_synth_gen_t *g = fl_synth_gen_new(t, f, nf, T0, dur, seed, err, sizeof(err));
    if (!g)
        fail_msg("gen: %s", err);
    fl_synth_span_t *all = NULL;
    size_t cnt = 0, cap = 0;
    uint64_t until = T0, last_end = 0;
    while (!fl_synth_gen_done(g)) {
        until = step_ns == 0 || until >= T0 + dur ? UINT64_MAX : until + step_ns;
        const fl_synth_span_t *s;
        size_t k = fl_synth_gen_advance(g, until, &s);
        for (size_t i = 0; i < k; i++) {
            /* Event-time order across calls, and nothing beyond the requested time. */
            assert_true(s[i].end_ns >= last_end);
            assert_true(s[i].end_ns <= until);
            last_end = s[i].end_ns;
            if (cnt == cap) {
                cap = cap ? cap * 2 : 1024;
                all = realloc(all, cap * sizeof(*all));
                assert_non_null(all);
            }
            memcpy(&all[cnt++], &s[i], sizeof(*all));
        }
    }
    fl_synth_gen_free(g);
    *n = cnt;
    return all;
}

static int cmp_trace_span(const void *a, const void *b)
{
    const fl_synth_span_t *x = a, *y = b;
    int r = memcmp(x->trace_id, y->trace_id, 16);
    return r ? r : memcmp(x->span_id, y->span_id, 8);
}

static const fl_synth_span_t *find_span(const fl_synth_span_t *s, size_t n, const uint8_t *tid,
                                        const uint8_t *sid)
{
    fl_synth_span_t key;
    memcpy(key.trace_id, tid, 16);
    memcpy(key.span_id, sid, 8);
    return bsearch(&key, s, n, sizeof(*s), cmp_trace_span);
}

static int svc_is(const fl_synth_topo_t *t, const fl_synth_span_t *s, const char *name)
{
    return strcmp(fl_synth_topo_service_name(t, (size_t)s->service), name) == 0;
}

/* ---------------------------------------------------------------- topology */

static void test_load_topology_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{", "invalid JSON"},
        {"[]", "expected an object"},
        {"{\"services\":[]}", "services: expected a non-empty array"},
        {"{\"servics\":[]}", "unknown key \"servics\""},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"calls\":[{\"to\":\"b.GET /\"}]}]}]}",
         "unknown service in \"b.GET /\""},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"calls\":[{\"to\":\"a.GET /x\"}]}]}]}",
         "service \"a\" has no operation \"GET /x\""},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\"}]}]}",
         "no entry operation"},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"calls\":[{\"to\":\"a.GET /\"}]}]}]}",
         "cycle"},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"latency\":{\"sigma\":1}}]}]}",
         "services[\"a\"].operations[\"GET /\"].latency: missing median_ms"},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"error_rate\":2}]}]}",
         "error_rate: expected a number from 0 to 1"},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"calls\":[{\"peer\":\"db\",\"to\":\"a.GET /\"}]}]}]}",
         "exactly one of \"to\""},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1}]},"
         "{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\"}]}]}",
         "duplicate service \"a\""},
        {"{\"services\":[{\"name\":\"a\",\"operations\":[{\"name\":\"GET /\",\"rate\":1,"
         "\"calls\":[{\"parallel\":[]}]}]}]}",
         "calls[0]: \"parallel\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        fl_synth_topo_t *t =
            fl_synth_topo_parse(cases[i].json, strlen(cases[i].json), err, sizeof(err));
        if (t || !strstr(err, cases[i].want))
            fail_msg("case %zu: want error containing '%s', got '%s'", i, cases[i].want,
                     t ? "(parsed)" : err);
    }
}

static void test_load_topology_edges(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    const char *a[16], *b[16];
    size_t n = fl_synth_topo_edges(t, a, b, 16);
    static const char *want[][2] = {{"checkout", "inventory"}, {"checkout", "payment"},
                                    {"frontend", "checkout"},  {"frontend", "inventory"},
                                    {"inventory", "stock-db"}, {"payment", "fraud"}};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(a[i], want[i][0]);
        assert_string_equal(b[i], want[i][1]);
    }
    int peers = 0;
    for (size_t i = 0; i < fl_synth_topo_n_services(t); i++)
        peers += fl_synth_topo_is_peer(t, i);
    assert_int_equal(peers, 1);
    fl_synth_topo_free(t);

    char err[512];
    t = fl_synth_topo_load(FL_SOURCE_DIR "/tools/load/topologies/platform.json", err, sizeof(err));
    if (!t)
        fail_msg("platform.json: %s", err);
    assert_true(fl_synth_topo_n_services(t) >= 12);
    fl_synth_topo_free(t);
}

static void test_load_fault_parse(void **state)
{
    (void)state;
    fl_synth_fault_t f;
    char err[512];
    assert_int_equal(fl_synth_fault_parse(
                         "kind=latency,target=payment.POST /charge,factor=5,start=30m,duration=5m",
                         &f, err, sizeof(err)),
                     0);
    assert_int_equal(f.kind, FL_SYNTH_FAULT_LATENCY);
    assert_string_equal(f.service, "payment");
    assert_string_equal(f.operation, "POST /charge");
    assert_true(f.factor == 5);
    assert_true(f.start_ns == 1800 * SEC && !f.start_abs);
    assert_true(f.duration_ns == 300 * SEC);
    assert_int_equal(fl_synth_fault_parse("kind=drop,target=frontend,start=2026-01-01T00:10:00Z,"
                                          "duration=1m",
                                          &f, err, sizeof(err)),
                     0);
    assert_true(f.kind == FL_SYNTH_FAULT_TRAFFIC && f.factor == 0 && f.start_abs);
    assert_true(f.start_ns == T0 + 600 * SEC);
    assert_int_equal(
        fl_synth_fault_parse("kind=error,target=x,start=1m,duration=1m", &f, err, sizeof(err)), 0);
    assert_true(f.rate == 1.0);
    assert_int_equal(
        fl_synth_fault_parse("kind=slow,target=x,start=1m,duration=1m", &f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown kind \"slow\""));
    assert_int_equal(fl_synth_fault_parse("kind=latency,target=x,start=1m", &f, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "required"));
    assert_int_equal(fl_synth_fault_parse("kind=error,target=x,rate=3,start=1m,duration=1m", &f,
                                          err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "rate must be"));

    /* Targets are checked against the topology. */
    fl_synth_topo_t *t = load_shop();
    fl_synth_fault_parse("kind=latency,target=nope,start=1m,duration=1m", &f, err, sizeof(err));
    assert_null(fl_synth_gen_new(t, &f, 1, T0, 60 * SEC, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "no service or peer \"nope\""));
    fl_synth_fault_parse("kind=latency,target=payment.GET /x,start=1m,duration=1m", &f, err,
                         sizeof(err));
    assert_null(fl_synth_gen_new(t, &f, 1, T0, 60 * SEC, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "has no operation \"GET /x\""));
    fl_synth_fault_parse("kind=drop,target=payment,start=1m,duration=1m", &f, err, sizeof(err));
    assert_null(fl_synth_gen_new(t, &f, 1, T0, 60 * SEC, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "entry operation"));
    fl_synth_topo_free(t);
}

/* ---------------------------------------------------------------- traces */

static void test_load_traces_well_formed(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    size_t n;
    fl_synth_span_t *s = run(t, NULL, 0, 300 * SEC, 7, SEC, &n);
    assert_true(n > 10000);
    qsort(s, n, sizeof(*s), cmp_trace_span);
    size_t traces = 0, pairs = 0, db = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, roots = 0;
        while (j < n && memcmp(s[j].trace_id, s[i].trace_id, 16) == 0)
            j++;
        traces++;
        for (size_t k = i; k < j; k++) {
            const fl_synth_span_t *sp = &s[k];
            assert_true(sp->end_ns > sp->start_ns);
            if (!sp->has_parent) {
                roots++;
                assert_int_equal(sp->kind, FL_SYNTH_SERVER);
                assert_true(svc_is(t, sp, "frontend"));
                continue;
            }
            const fl_synth_span_t *p = find_span(s + i, j - i, sp->trace_id, sp->parent_id);
            assert_non_null(p);
            /* Times nest inside the parent. */
            assert_true(sp->start_ns >= p->start_ns && sp->end_ns <= p->end_ns);
            if (sp->kind == FL_SYNTH_SERVER) {
                /* A SERVER span's parent is its caller's CLIENT span, in another service,
                 * with a small network gap on each side. */
                assert_int_equal(p->kind, FL_SYNTH_CLIENT);
                assert_int_not_equal(p->service, sp->service);
                assert_string_equal(p->peer, fl_synth_topo_service_name(t, (size_t)sp->service));
                assert_true(sp->start_ns - p->start_ns >= 100000);
                assert_true(sp->start_ns - p->start_ns <= 600000);
                assert_true(p->end_ns - sp->end_ns >= 100000);
                assert_string_equal(p->route, sp->route);
                pairs++;
            } else {
                assert_int_equal(p->kind, FL_SYNTH_SERVER);
                assert_int_equal(p->service, sp->service);
                if (sp->db_system) {
                    db++;
                    assert_string_equal(sp->db_system, "sqlite");
                    assert_string_equal(sp->peer, "stock-db");
                    assert_true(svc_is(t, sp, "inventory"));
                }
            }
            if (sp->kind == FL_SYNTH_SERVER && sp->method)
                assert_true(sp->http_status == 200 || sp->http_status >= 500);
        }
        assert_int_equal(roots, 1);
        /* Every CLIENT call into an instrumented service has its SERVER span (no faults). */
        for (size_t k = i; k < j; k++) {
            if (s[k].kind != FL_SYNTH_CLIENT || s[k].db_system)
                continue;
            int children = 0;
            for (size_t m = i; m < j; m++)
                children += s[m].has_parent && memcmp(s[m].parent_id, s[k].span_id, 8) == 0;
            assert_int_equal(children, 1);
        }
        i = j;
    }
    /* 15 requests/s for 300 s, Poisson. */
    assert_in_range(traces, 4000, 5000);
    assert_true(pairs > traces * 2);
    assert_true(db > traces / 2);
    free(s);
    fl_synth_topo_free(t);
}

static void test_load_latency_fault(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    fl_synth_fault_t f;
    char err[512];
    assert_int_equal(fl_synth_fault_parse("kind=latency,target=fraud,factor=5,start=120s,"
                                          "duration=60s",
                                          &f, err, sizeof(err)),
                     0);
    size_t na, nb;
    fl_synth_span_t *a = run(t, NULL, 0, 300 * SEC, 11, SEC, &na);
    fl_synth_span_t *b = run(t, &f, 1, 300 * SEC, 11, SEC, &nb);
    assert_int_equal(na, nb);
    qsort(a, na, sizeof(*a), cmp_trace_span);
    qsort(b, nb, sizeof(*b), cmp_trace_span);
    uint64_t fs = T0 + 120 * SEC, fe = fs + 60 * SEC;
    size_t slowed = 0, same = 0;
    for (size_t i = 0; i < na; i++) {
        assert_memory_equal(a[i].span_id, b[i].span_id, 8);
        uint64_t da = a[i].end_ns - a[i].start_ns, db = b[i].end_ns - b[i].start_ns;
        if (a[i].kind == FL_SYNTH_SERVER && svc_is(t, &a[i], "fraud")) {
            assert_true(a[i].start_ns == b[i].start_ns);
            if (a[i].start_ns >= fs && a[i].start_ns < fe) {
                assert_true(db == 5 * da);
                slowed++;
            } else {
                assert_true(db == da);
                same++;
            }
        }
        /* Traces that do not reach fraud while the fault is active are untouched. */
        if (a[i].end_ns < fs || a[i].start_ns >= fe + 10 * SEC) {
            assert_true(a[i].start_ns == b[i].start_ns && a[i].end_ns == b[i].end_ns);
        }
    }
    assert_in_range(slowed, 500, 700); /* 10 req/s for 60 s */
    assert_true(same > 2000);
    free(a);
    free(b);
    fl_synth_topo_free(t);
}

static void test_load_error_and_timeout_faults(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    fl_synth_fault_t f[2];
    char err[512];
    assert_int_equal(fl_synth_fault_parse("kind=error,target=inventory.GET /stock,rate=0.8,"
                                          "start=60s,duration=60s",
                                          &f[0], err, sizeof(err)),
                     0);
    assert_int_equal(fl_synth_fault_parse("kind=timeout,target=payment,deadline=1s,start=180s,"
                                          "duration=60s",
                                          &f[1], err, sizeof(err)),
                     0);
    size_t n;
    fl_synth_span_t *s = run(t, f, 2, 300 * SEC, 5, SEC, &n);
    size_t inv = 0, inv_err = 0, inv_out = 0, inv_out_err = 0, pay_in = 0, timeouts = 0;
    for (size_t i = 0; i < n; i++) {
        const fl_synth_span_t *p = &s[i];
        if (p->kind == FL_SYNTH_SERVER && svc_is(t, p, "inventory")) {
            int in = p->start_ns >= T0 + 60 * SEC && p->start_ns < T0 + 120 * SEC;
            inv += in;
            inv_err += in && p->error;
            inv_out += !in;
            inv_out_err += !in && p->error;
            if (in && p->error) {
                assert_int_equal(p->http_status, 500);
                assert_non_null(p->exception_type);
            }
        }
        if (p->kind == FL_SYNTH_SERVER && svc_is(t, p, "payment") &&
            p->start_ns >= T0 + 180 * SEC && p->start_ns < T0 + 240 * SEC)
            pay_in++;
        if (p->kind == FL_SYNTH_CLIENT && p->timeout) {
            timeouts++;
            assert_true(svc_is(t, p, "checkout"));
            assert_string_equal(p->peer, "payment");
            assert_true(p->error);
            assert_true(p->end_ns - p->start_ns == SEC);
        }
    }
    /* 80 % of inventory's requests fail inside the window, none outside. */
    assert_true(inv > 500);
    assert_in_range(inv_err * 100 / inv, 74, 86);
    assert_int_equal(inv_out_err, 0);
    assert_true(inv_out > 3000);
    /* Payment stops answering: none of its spans, and checkout's calls hit the deadline. */
    assert_int_equal(pay_in, 0);
    assert_in_range(timeouts, 450, 750);
    free(s);
    fl_synth_topo_free(t);
}

static void test_load_traffic_fault(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    fl_synth_fault_t f;
    char err[512];
    assert_int_equal(fl_synth_fault_parse("kind=drop,target=frontend.POST /checkout,factor=0.1,"
                                          "start=100s,duration=100s",
                                          &f, err, sizeof(err)),
                     0);
    size_t n;
    fl_synth_span_t *s = run(t, &f, 1, 300 * SEC, 3, SEC, &n);
    size_t before = 0, during = 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i].has_parent && strcmp(s[i].name, "POST /checkout") == 0) {
            before += s[i].start_ns < T0 + 100 * SEC;
            during += s[i].start_ns >= T0 + 100 * SEC && s[i].start_ns < T0 + 200 * SEC;
        }
    assert_in_range(before, 900, 1100);
    assert_in_range(during, 60, 140);
    free(s);
    fl_synth_topo_free(t);
}

static void test_load_determinism(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    size_t n1, n2, n3;
    /* The same seed gives the same spans, whatever steps the caller drains them in. */
    fl_synth_span_t *a = run(t, NULL, 0, 120 * SEC, 42, SEC, &n1);
    fl_synth_span_t *b = run(t, NULL, 0, 120 * SEC, 42, 0, &n2);
    fl_synth_span_t *c = run(t, NULL, 0, 120 * SEC, 43, SEC, &n3);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof(*a));
    assert_true(n1 != n3 || memcmp(a, c, n1 * sizeof(*a)) != 0);
    free(a);
    free(b);
    free(c);
    fl_synth_topo_free(t);
}

static void test_load_encode(void **state)
{
    (void)state;
    fl_synth_topo_t *t = load_shop();
    fl_synth_fault_t f;
    char err[512];
    fl_synth_fault_parse("kind=error,target=payment,start=0s,duration=10s", &f, err, sizeof(err));
    size_t n;
    fl_synth_span_t *s = run(t, &f, 1, 10 * SEC, 9, SEC, &n);
    size_t len = 0;
    uint8_t *buf = fl_synth_encode(t, s, n, &len);
    assert_non_null(buf);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len,
                                                                                         buf);
    assert_non_null(req);
    size_t total = 0, exceptions = 0, with_route = 0;
    assert_int_equal(req->n_resource_spans, 5); /* every instrumented service, no peer */
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[r];
        assert_string_equal(rs->resource->attributes[0]->key, "service.name");
        assert_string_not_equal(rs->resource->attributes[0]->value->string_value, "stock-db");
        for (size_t k = 0; k < rs->scope_spans[0]->n_spans; k++) {
            Opentelemetry__Proto__Trace__V1__Span *sp = rs->scope_spans[0]->spans[k];
            total++;
            assert_int_equal(sp->trace_id.len, 16);
            for (size_t e = 0; e < sp->n_events; e++)
                exceptions += strcmp(sp->events[e]->name, "exception") == 0;
            for (size_t a = 0; a < sp->n_attributes; a++)
                with_route += strcmp(sp->attributes[a]->key, "http.route") == 0;
            if (sp->status)
                assert_int_equal(sp->status->code, 2);
        }
    }
    assert_int_equal(total, n);
    assert_true(exceptions > 50); /* payment failed every request for 10 s */
    assert_true(with_route > 100);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    free(buf);
    free(s);
    fl_synth_topo_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_topology_errors),
        cmocka_unit_test(test_load_topology_edges),
        cmocka_unit_test(test_load_fault_parse),
        cmocka_unit_test(test_load_traces_well_formed),
        cmocka_unit_test(test_load_latency_fault),
        cmocka_unit_test(test_load_error_and_timeout_faults),
        cmocka_unit_test(test_load_traffic_fault),
        cmocka_unit_test(test_load_determinism),
        cmocka_unit_test(test_load_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
