/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: replay the healthy capture, analyse, and check the dependency graph, metrics,
 * baselines and status against what the fixture implies; re-sent spans change nothing, the
 * learned state survives a restart, and bad parameters get a 400 naming them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fl_test_server_t srv;

/* Expectations derived from tests/data/fixtures/healthy.expected.full.jsonl. */
static json_t *exp_endpoints; /* "service\toperation" -> request count (entry spans) */
static json_t *exp_services;  /* service -> entry requests */
static json_t *exp_edges;     /* "caller\tcallee" -> calls (sync and async) */
static json_t *exp_async;     /* "producer\tconsumer" -> async hops */
static uint64_t fixture_max_end;

static void bump(json_t *o, const char *key)
{
    json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + 1));
}

static uint64_t u64_of(json_t *v)
{
    return json_is_string(v) ? strtoull(json_string_value(v), NULL, 10)
                             : (uint64_t)json_integer_value(v);
}

/* Entry spans (SERVER = 2, CONSUMER = 5, or roots) are endpoints; a SERVER/CONSUMER span
 * whose parent belongs to another service is a call from that service, and a root consumer
 * linked to a producer is an async hop from the producer's service. */
static int load_expectations(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/healthy.expected.full.jsonl", FL_TEST_DATA_DIR);
    char *text = fl_test_read_file(path, NULL);
    if (!text)
        return -1;
    json_t *spans = json_array(), *by_id = json_object();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *e = json_loads(line, 0, NULL);
        if (!e)
            return -1;
        json_array_append_new(spans, e);
        json_object_set(by_id, json_string_value(json_object_get(e, "span_id")), e);
    }
    free(text);
    exp_endpoints = json_object();
    exp_services = json_object();
    exp_edges = json_object();
    exp_async = json_object();
    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        const char *svc = json_string_value(json_object_get(s, "service_name"));
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *parent = json_string_value(json_object_get(s, "parent_span_id"));
        int kind = (int)json_integer_value(json_object_get(s, "kind"));
        uint64_t end = u64_of(json_object_get(s, "end_time_unix_nano"));
        char key[512];
        if (end > fixture_max_end)
            fixture_max_end = end;
        if (kind == 2 || kind == 5 || !*parent) {
            snprintf(key, sizeof(key), "%s\t%s", svc, name);
            bump(exp_endpoints, key);
            bump(exp_services, svc);
        }
        if (kind != 2 && kind != 5)
            continue;
        json_t *p = *parent ? json_object_get(by_id, parent) : NULL;
        int async = 0;
        if (!p) {
            json_t *links = json_object_get(s, "link_span_ids");
            if (json_array_size(links) > 0)
                p = json_object_get(by_id, json_string_value(json_array_get(links, 0)));
            async = p != NULL;
        } else {
            async = json_integer_value(json_object_get(p, "kind")) == 4; /* PRODUCER */
        }
        const char *psvc = p ? json_string_value(json_object_get(p, "service_name")) : NULL;
        if (!psvc || !strcmp(psvc, svc))
            continue;
        snprintf(key, sizeof(key), "%s\t%s", psvc, svc);
        bump(exp_edges, key);
        if (async)
            bump(exp_async, key);
    }
    json_decref(spans);
    json_decref(by_id);
    return json_object_size(exp_edges) > 0 && json_object_size(exp_async) > 0 ? 0 : -1;
}

static int replay_healthy(void)
{
    char body[512], ep[64];
    snprintf(body, sizeof(body), "%s/fixtures/http-protobuf/healthy.body", FL_TEST_DATA_DIR);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", srv.http_port);
    const char *a[] = {"--quiet", "--endpoint", ep, body, NULL};
    return fl_test_run_tool("faultline-replay", a);
}

/* POST /aiops/analyze with the watermark moved a minute past the capture's last span, so
 * every bucket of the capture is closed. Returns the answer (NULL unless 200). */
static json_t *analyze(void)
{
    char path[128];
    fl_buf_t body;
    snprintf(path, sizeof(path), "/aiops/analyze?until=%llu",
             (unsigned long long)(fixture_max_end + 60000000000ull));
    int st = fl_test_http(srv.api_port, "POST", path, NULL, NULL, NULL, 0, &body, NULL, 0);
    json_t *j = st == 200 ? json_loadb((const char *)body.data, body.len, 0, NULL) : NULL;
    fl_buf_dispose(&body);
    return j;
}

static int setup(void **state)
{
    (void)state;
    if (load_expectations() != 0 || fl_test_server_start(&srv, NULL) != 0 || replay_healthy() != 0)
        return -1;
    json_t *j = analyze();
    if (!j)
        return -1;
    json_decref(j);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = fl_test_server_stop(&srv);
    fl_test_server_cleanup(&srv);
    json_decref(exp_endpoints);
    json_decref(exp_services);
    json_decref(exp_edges);
    json_decref(exp_async);
    return rc == 0 ? 0 : -1;
}

static json_t *get(const char *path)
{
    int status;
    json_t *j = fl_test_get_json(srv.api_port, path, &status);
    if (status != 200)
        fprintf(stderr, "GET %s -> %d\n", path, status);
    assert_int_equal(status, 200);
    assert_non_null(j);
    return j;
}

/* ---------------------------------------------------------------- dependencies */

static void test_aiops_dependencies(void **state)
{
    (void)state;
    json_t *g = get("/api/dependencies?operations=true");
    json_t *nodes = json_object_get(g, "nodes"), *edges = json_object_get(g, "edges");
    json_t *n, *e, *v;
    size_t i;
    const char *key;

    /* Every service is a node; any other node is an uninstrumented peer. */
    json_t *seen = json_object();
    json_array_foreach(nodes, i, n)
    {
        const char *name = json_string_value(json_object_get(n, "name"));
        json_object_set_new(seen, name, json_true());
        if (!json_object_get(exp_services, name))
            assert_true(json_is_true(json_object_get(n, "virtual_peer")));
        else
            assert_int_equal(json_integer_value(json_object_get(n, "request_count")),
                             json_integer_value(json_object_get(exp_services, name)));
    }
    json_object_foreach(exp_services, key, v) assert_non_null(json_object_get(seen, key));
    json_decref(seen);

    /* Every service -> service call of the fixture, with its count. */
    json_object_foreach(exp_edges, key, v)
    {
        char caller[256];
        const char *tab = strchr(key, '\t');
        snprintf(caller, sizeof(caller), "%.*s", (int)(tab - key), key);
        json_int_t calls = -1;
        json_array_foreach(edges, i, e)
        {
            if (!strcmp(json_string_value(json_object_get(e, "caller")), caller) &&
                !strcmp(json_string_value(json_object_get(e, "callee")), tab + 1))
                calls = json_integer_value(json_object_get(e, "call_count"));
        }
        if (calls != json_integer_value(v))
            fprintf(stderr, "edge %s: %lld calls, expected %lld\n", key, (long long)calls,
                    (long long)json_integer_value(v));
        assert_int_equal(calls, json_integer_value(v));
    }
    /* Edges between instrumented services are exactly those of the fixture. */
    json_array_foreach(edges, i, e)
    {
        char k[512];
        snprintf(k, sizeof(k), "%s\t%s", json_string_value(json_object_get(e, "caller")),
                 json_string_value(json_object_get(e, "callee")));
        if (json_is_true(json_object_get(e, "virtual_peer")))
            continue;
        assert_non_null(json_object_get(exp_edges, k));
        assert_int_equal(json_integer_value(json_object_get(e, "error_count")), 0);
        assert_true(json_number_value(json_object_get(e, "p95_ms")) >=
                    json_number_value(json_object_get(e, "p50_ms")));
    }

    /* The producer -> consumer hops, from the operation-level edges. */
    json_t *async = json_object();
    json_array_foreach(json_object_get(g, "operation_edges"), i, e)
    {
        if (!json_is_true(json_object_get(e, "async")))
            continue;
        const char *c = json_string_value(json_object_get(e, "caller"));
        const char *d = json_string_value(json_object_get(e, "callee"));
        char k[512];
        snprintf(k, sizeof(k), "%.*s\t%.*s", (int)strcspn(c, ":"), c, (int)strcspn(d, ":"), d);
        json_object_set_new(async, k,
                            json_integer(json_integer_value(json_object_get(async, k)) +
                                         json_integer_value(json_object_get(e, "call_count"))));
    }
    assert_true(json_equal(async, exp_async));
    json_decref(async);
    assert_int_equal(json_array_size(json_object_get(g, "cycles")), 0);
    json_decref(g);
}

/* ---------------------------------------------------------------- metrics */

static void check_metrics_doc(json_t *m, const char *only_service)
{
    json_t *eps = json_object_get(m, "endpoints"), *ep, *v;
    size_t i;
    const char *key;
    json_int_t total = 0, want = 0;

    json_array_foreach(eps, i, ep)
    {
        const char *svc = json_string_value(json_object_get(ep, "service"));
        char k[512];
        snprintf(k, sizeof(k), "%s\t%s", svc, json_string_value(json_object_get(ep, "operation")));
        if (only_service)
            assert_string_equal(svc, only_service);
        json_t *x = json_object_get(exp_endpoints, k);
        if (!x)
            fprintf(stderr, "unexpected endpoint %s\n", k);
        assert_non_null(x);
        assert_int_equal(json_integer_value(json_object_get(ep, "request_count")),
                         json_integer_value(x));
        total += json_integer_value(json_object_get(ep, "request_count"));
        assert_true(json_number_value(json_object_get(ep, "p50_ms")) > 0);
        assert_true(json_number_value(json_object_get(ep, "p99_ms")) >=
                    json_number_value(json_object_get(ep, "p50_ms")));
        assert_true(json_number_value(json_object_get(ep, "baseline_latency_ms")) > 0);
        assert_true(json_is_object(json_object_get(ep, "status_codes")));
        assert_true(json_is_number(json_object_get(ep, "error_rate")));
        assert_true(json_is_number(json_object_get(ep, "avg_latency_ms")));
    }
    json_object_foreach(exp_endpoints, key, v)
    {
        if (!only_service || (!strncmp(key, only_service, strlen(only_service)) &&
                              key[strlen(only_service)] == '\t'))
            want += json_integer_value(v);
    }
    assert_int_equal(total, want);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "totals"), "request_count")), want);
}

static void test_aiops_metrics(void **state)
{
    (void)state;
    json_t *m = get("/aiops/metrics");
    check_metrics_doc(m, NULL);
    assert_int_equal(json_array_size(json_object_get(m, "endpoints")),
                     json_object_size(exp_endpoints));
    json_decref(m);
    m = get("/aiops/metrics?time_range=7d");
    check_metrics_doc(m, NULL);
    assert_string_equal(json_string_value(json_object_get(m, "time_range")), "7d");
    json_decref(m);

    const char *svc;
    json_t *v;
    json_object_foreach(exp_services, svc, v)
    {
        char path[256];
        snprintf(path, sizeof(path), "/aiops/metrics/%s?time_range=24h", svc);
        m = get(path);
        check_metrics_doc(m, svc);
        json_decref(m);
    }
}

static void test_aiops_baselines(void **state)
{
    (void)state;
    json_t *b = get("/aiops/baselines?subject=endpoint");
    json_t *arr = json_object_get(b, "baselines"), *x;
    size_t i;
    assert_int_equal(json_array_size(arr), json_object_size(exp_endpoints));
    json_array_foreach(arr, i, x)
    {
        char k[512];
        snprintf(k, sizeof(k), "%s\t%s", json_string_value(json_object_get(x, "service")),
                 json_string_value(json_object_get(x, "operation")));
        assert_non_null(json_object_get(exp_endpoints, k));
        assert_int_equal(json_integer_value(json_object_get(x, "trained_requests")),
                         json_integer_value(json_object_get(exp_endpoints, k)));
        assert_true(json_number_value(json_object_get(x, "baseline_latency_ms")) > 0);
        assert_true(json_is_array(json_object_get(x, "history")));
    }
    json_decref(b);
    b = get("/aiops/baselines");
    assert_true(json_array_size(json_object_get(b, "baselines")) > json_object_size(exp_endpoints));
    json_decref(b);
}

static void test_aiops_anomalies_and_status(void **state)
{
    (void)state;
    json_t *a = get("/aiops/anomalies");
    assert_true(json_is_array(json_object_get(a, "anomalies")));
    assert_int_equal(json_array_size(json_object_get(a, "anomalies")), 0); /* healthy */
    json_decref(a);
    a = get("/aiops/anomalies?start=2020-01-01T00:00:00Z&end=2099-01-01T00:00:00Z&service=payment");
    json_decref(a);

    json_t *s = get("/aiops/status");
    json_t *an = json_object_get(s, "analysis");
    assert_non_null(an);
    assert_int_equal(json_integer_value(json_object_get(an, "spans_observed")), 200);
    assert_int_equal(json_integer_value(json_object_get(an, "spans_late")), 0);
    assert_true(json_integer_value(json_object_get(an, "series_count")) > 0);
    assert_int_equal(json_integer_value(json_object_get(an, "series_refused")), 0);
    assert_true(json_integer_value(json_object_get(an, "runs")) >= 1);
    assert_non_null(json_object_get(an, "last_analysis"));
    assert_non_null(json_object_get(an, "window_evictions"));
    assert_int_equal(json_integer_value(json_object_get(s, "spans_stored")), 200);
    /* the trace-id filters of the stored blocks: some memory, far less than the spans' */
    json_int_t ib = json_integer_value(json_object_get(s, "index_bytes"));
    assert_true(ib > 0 && ib < 200 * 64);
    assert_non_null(json_object_get(json_object_get(s, "ingest"), "spans_per_s"));
    assert_non_null(json_object_get(json_object_get(s, "api"), "queue_depth"));
    json_decref(s);
}

/* ---------------------------------------------------------------- bad parameters */

static void test_aiops_bad_params(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *names;
    } cases[] = {
        {"GET", "/aiops/metrics?time_range=2x", "time_range"},
        {"GET", "/aiops/metrics?time_range=30s", "time_range"},
        {"GET", "/aiops/metrics?time_range=8d", "time_range"},
        {"GET", "/aiops/metrics?time_range=1h&start=1", "time_range"},
        {"GET", "/aiops/metrics?bogus=1", "bogus"},
        {"GET", "/aiops/metrics?service=", "service"},
        {"GET", "/aiops/metrics/checkout?time_range=forever", "time_range"},
        {"GET", "/aiops/metrics/checkout?service=x", "service"},
        {"GET", "/aiops/baselines?subject=nope", "subject"},
        {"GET", "/aiops/anomalies?start=yesterday", "start"},
        {"GET", "/aiops/anomalies?end=-5", "end"},
        {"GET", "/aiops/anomalies?start=2000&end=1000", "end"},
        {"GET", "/aiops/anomalies?kind=slow", "kind"},
        {"GET", "/aiops/anomalies?open=maybe", "open"},
        {"POST", "/aiops/analyze?until=soon", "until"},
        {"POST", "/aiops/analyze?x=1", "x"},
        {"GET", "/api/dependencies?start=2024-13-01T00:00:00Z", "start"},
        {"GET", "/api/dependencies?operations=2", "operations"},
        {"GET", "/api/dependencies?start=5&end=5", "end"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fl_buf_t body;
        int st = fl_test_http(srv.api_port, cases[i].method, cases[i].path, NULL, NULL, NULL, 0,
                              &body, NULL, 0);
        json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "error"));
        if (st != 400 || !msg || !strstr(msg, cases[i].names))
            fprintf(stderr, "%s %s -> %d %.*s\n", cases[i].method, cases[i].path, st, (int)body.len,
                    (const char *)body.data);
        assert_int_equal(st, 400);
        assert_non_null(msg);
        assert_non_null(strstr(msg, cases[i].names));
        json_decref(j);
        fl_buf_dispose(&body);
    }
    /* An unknown service is a 404 naming it, not a 400. */
    fl_buf_t body;
    assert_int_equal(fl_test_http(srv.api_port, "GET", "/aiops/metrics/no-such-service", NULL, NULL,
                                  NULL, 0, &body, NULL, 0),
                     404);
    fl_buf_dispose(&body);
}

/* ---------------------------------------------------------------- dedup and restart */

static char *dump(const char *path)
{
    json_t *j = get(path);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return s;
}

static void test_aiops_resend_changes_nothing(void **state)
{
    (void)state;
    char *before = dump("/aiops/metrics");
    assert_int_equal(replay_healthy(), 0);
    json_t *j = analyze();
    assert_non_null(j);
    json_decref(j);
    char *after = dump("/aiops/metrics");
    assert_string_equal(before, after);
    json_t *s = get("/aiops/status");
    assert_int_equal(json_integer_value(json_object_get(s, "spans_duplicate")), 200);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(s, "analysis"), "spans_observed")), 200);
    json_decref(s);
    free(before);
    free(after);
}

static void test_aiops_restart_keeps_state(void **state)
{
    (void)state;
    static const char *const paths[] = {"/aiops/metrics", "/api/dependencies?operations=true",
                                        "/aiops/baselines", "/aiops/anomalies",
                                        "/aiops/metrics/checkout?time_range=7d"};
    enum { N = sizeof(paths) / sizeof(paths[0]) };
    char *before[N];
    for (size_t i = 0; i < N; i++)
        before[i] = dump(paths[i]);
    assert_int_equal(fl_test_server_stop(&srv), 0);
    assert_int_equal(fl_test_server_start(&srv, NULL), 0);
    for (size_t i = 0; i < N; i++) {
        char *after = dump(paths[i]);
        if (strcmp(before[i], after) != 0)
            fprintf(stderr, "%s changed across a restart:\n%s\n%s\n", paths[i], before[i], after);
        assert_string_equal(before[i], after);
        free(after);
        free(before[i]);
    }
    json_t *s = get("/aiops/status");
    assert_true(json_is_true(json_object_get(json_object_get(s, "analysis_runtime"), "restored")));
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aiops_dependencies),
        cmocka_unit_test(test_aiops_metrics),
        cmocka_unit_test(test_aiops_baselines),
        cmocka_unit_test(test_aiops_anomalies_and_status),
        cmocka_unit_test(test_aiops_bad_params),
        cmocka_unit_test(test_aiops_resend_changes_nothing),
        cmocka_unit_test(test_aiops_restart_keeps_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
