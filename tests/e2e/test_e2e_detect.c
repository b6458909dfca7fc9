/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: faultline-load synthetic fast-forwards traffic with scripted faults into a real
 * faultline; the anomalies must name the faulted endpoint within three buckets of the fault,
 * a healthy hour must raise nothing, replays must agree, and the graph must match the file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEC 1000000000ull
#define MIN (60 * SEC)
#define SHOP FL_SOURCE_DIR "/tools/load/topologies/shop.json"
#define BUCKET_NS (10 * SEC)

/* A start in the past so the whole run ends before now, aligned to a bucket so faults at
 * whole minutes begin on bucket boundaries. */
static uint64_t past_start(uint64_t duration_ns)
{
    return fl_test_synthetic_start(duration_ns);
}

/* Run faultline-load synthetic against s; faults is a NULL-terminated list of specs. */
static void load(const fl_test_server_t *s, uint64_t start, const char *duration, const char *seed,
                 const char *const *faults, const char *truth)
{
    assert_int_equal(
        fl_test_run_synthetic(s->http_port, SHOP, start, duration, seed, faults, truth), 0);
}

/* POST /aiops/analyze, then every anomaly in [start - 1h, end + 1h) (new reference). */
static json_t *anomalies(const fl_test_server_t *s, uint64_t start, uint64_t end)
{
    fl_buf_t b;
    int st = fl_test_http(s->api_port, "POST", "/aiops/analyze", NULL, NULL, NULL, 0, &b, NULL, 0);
    fl_buf_dispose(&b);
    if (st != 200)
        fail_msg("POST /aiops/analyze answered %d", st);
    char path[256], a[40], e[40];
    snprintf(path, sizeof(path), "/aiops/anomalies?start=%s&end=%s",
             fl_time_format(start - 60 * MIN, a), fl_time_format(end + 60 * MIN, e));
    json_t *j = fl_test_get_json(s->api_port, path, &st);
    if (st != 200 || !j)
        fail_msg("GET %s answered %d", path, st);
    json_t *arr = json_incref(json_object_get(j, "anomalies"));
    json_decref(j);
    assert_true(json_is_array(arr));
    return arr;
}

static void dump(const char *what, json_t *arr)
{
    size_t i;
    json_t *x;
    fprintf(stderr, "%s: %zu anomalies\n", what, json_array_size(arr));
    json_array_foreach(arr, i, x)
    {
        fprintf(stderr, "  %s %s.%s subject=%s caller=%s start=%s ratio=%.2f %s\n",
                json_string_value(json_object_get(x, "kind")),
                json_string_value(json_object_get(x, "service")),
                json_string_value(json_object_get(x, "operation")),
                json_string_value(json_object_get(x, "subject")),
                json_string_value(json_object_get(x, "caller_service")),
                json_string_value(json_object_get(x, "start")),
                json_number_value(json_object_get(x, "ratio")),
                json_string_value(json_object_get(x, "summary")));
    }
}

static uint64_t u64_of(json_t *v)
{
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoull(json_string_value(v), NULL, 10);
    return 0;
}

static int str_is(json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && strcmp(v, want) == 0;
}

/* The first anomaly of kind on service.operation (the endpoint itself), or NULL. */
static json_t *find_anomaly(json_t *arr, const char *service, const char *operation,
                            const char *kind)
{
    size_t i;
    json_t *x, *best = NULL;
    json_array_foreach(arr, i, x)
    {
        if (!str_is(x, "service", service) || !str_is(x, "operation", operation) ||
            !str_is(x, "kind", kind))
            continue;
        if (!best || u64_of(json_object_get(x, "start_unix_nano")) <
                         u64_of(json_object_get(best, "start_unix_nano")))
            best = x;
    }
    return best;
}

/* The fault's anomaly starts no earlier than the fault's bucket and within three buckets. */
static void assert_detected(json_t *arr, const char *service, const char *operation,
                            const char *kind, uint64_t fault_start)
{
    json_t *x = find_anomaly(arr, service, operation, kind);
    if (!x) {
        dump("anomalies", arr);
        fail_msg("no %s anomaly on %s %s", kind, service, operation);
    }
    uint64_t st = u64_of(json_object_get(x, "start_unix_nano"));
    if (st + BUCKET_NS <= fault_start || st > fault_start + 3 * BUCKET_NS) {
        dump("anomalies", arr);
        fail_msg("%s anomaly on %s %s starts %.1f s after the fault (want within 30 s)", kind,
                 service, operation, ((double)st - (double)fault_start) / 1e9);
    }
}

static void test_detect_latency(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    uint64_t start = past_start(36 * MIN);
    const char *faults[] = {
        "kind=latency,target=payment.POST /charge,factor=5,start=30m,duration=5m", NULL};
    char truth[600];
    snprintf(truth, sizeof(truth), "%s/truth.json", s.dir);
    load(&s, start, "36m", "101", faults, truth);
    /* The truth file says what was injected, when. */
    json_t *t = json_load_file(truth, 0, NULL);
    assert_non_null(t);
    json_t *f0 = json_array_get(json_object_get(t, "faults"), 0);
    assert_true(str_is(f0, "kind", "latency"));
    assert_true(str_is(f0, "service", "payment"));
    assert_true(str_is(f0, "operation", "POST /charge"));
    assert_true(u64_of(json_object_get(f0, "start_unix_nano")) == start + 30 * MIN);
    assert_true(u64_of(json_object_get(f0, "end_unix_nano")) == start + 35 * MIN);
    json_decref(t);

    json_t *arr = anomalies(&s, start, start + 36 * MIN);
    assert_detected(arr, "payment", "POST /charge", "latency", start + 30 * MIN);
    /* Nothing fires during the 30 healthy minutes before the fault. */
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (u64_of(json_object_get(x, "start_unix_nano")) + BUCKET_NS <= start + 30 * MIN) {
            dump("anomalies", arr);
            fail_msg("an anomaly before the fault");
        }
    }
    json_decref(arr);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

static void test_detect_error_rate(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    uint64_t start = past_start(36 * MIN);
    const char *faults[] = {"kind=error,target=inventory.GET /stock,rate=0.8,start=30m,"
                            "duration=5m",
                            NULL};
    load(&s, start, "36m", "202", faults, NULL);
    json_t *arr = anomalies(&s, start, start + 36 * MIN);
    assert_detected(arr, "inventory", "GET /stock", "error", start + 30 * MIN);
    json_decref(arr);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

/* The dependency edges the topology file declares: "to" and "peer" calls, any nesting. */
static void collect_calls(json_t *calls, const char *caller, json_t *want)
{
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        json_t *par = json_object_get(c, "parallel");
        if (par) {
            collect_calls(par, caller, want);
            continue;
        }
        char callee[256], key[600];
        const char *to = json_string_value(json_object_get(c, "to"));
        if (to) {
            size_t n = strcspn(to, ".");
            snprintf(callee, sizeof(callee), "%.*s", (int)n, to);
        } else {
            snprintf(callee, sizeof(callee), "%s", json_string_value(json_object_get(c, "peer")));
        }
        snprintf(key, sizeof(key), "%s -> %s", caller, callee);
        json_object_set_new(want, key, json_true());
    }
}

static void check_dependencies(const fl_test_server_t *s, uint64_t start, uint64_t end)
{
    json_t *topo = json_load_file(SHOP, 0, NULL);
    assert_non_null(topo);
    json_t *want = json_object(), *got = json_object();
    size_t i, k;
    json_t *svc, *op;
    json_array_foreach(json_object_get(topo, "services"), i, svc)
    {
        json_array_foreach(json_object_get(svc, "operations"), k, op)
        {
            collect_calls(json_object_get(op, "calls"),
                          json_string_value(json_object_get(svc, "name")), want);
        }
    }
    char path[256], a[40], e[40];
    snprintf(path, sizeof(path), "/api/dependencies?start=%s&end=%s", fl_time_format(start, a),
             fl_time_format(end, e));
    int st;
    json_t *g = fl_test_get_json(s->api_port, path, &st);
    if (st != 200 || !g)
        fail_msg("GET %s answered %d", path, st);
    json_t *edge;
    json_array_foreach(json_object_get(g, "edges"), i, edge)
    {
        char key[600];
        snprintf(key, sizeof(key), "%s -> %s", json_string_value(json_object_get(edge, "caller")),
                 json_string_value(json_object_get(edge, "callee")));
        assert_true(u64_of(json_object_get(edge, "call_count")) > 0);
        json_object_set_new(got, key, json_true());
    }
    const char *key;
    json_t *v;
    int bad = 0;
    json_object_foreach(want, key, v)
    {
        if (!json_object_get(got, key)) {
            fprintf(stderr, "missing edge %s\n", key);
            bad = 1;
        }
    }
    json_object_foreach(got, key, v)
    {
        if (!json_object_get(want, key)) {
            fprintf(stderr, "unexpected edge %s\n", key);
            bad = 1;
        }
    }
    /* Every service of the file is a node, and the database a peer node. */
    json_array_foreach(json_object_get(topo, "services"), i, svc)
    {
        int found = 0;
        json_array_foreach(json_object_get(g, "nodes"), k, op)
        {
            found |= str_is(op, "name", json_string_value(json_object_get(svc, "name")));
        }
        if (!found) {
            fprintf(stderr, "missing node %s\n", json_string_value(json_object_get(svc, "name")));
            bad = 1;
        }
    }
    if (bad)
        fail_msg("/api/dependencies does not match %s", SHOP);
    json_decref(g);
    json_decref(want);
    json_decref(got);
    json_decref(topo);
}

static void test_detect_healthy_hour(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    uint64_t start = past_start(60 * MIN);
    load(&s, start, "60m", "303", NULL, NULL);
    json_t *arr = anomalies(&s, start, start + 60 * MIN);
    if (json_array_size(arr)) {
        dump("healthy hour", arr);
        fail_msg("a healthy hour raised %zu anomalies", json_array_size(arr));
    }
    json_decref(arr);
    /* The same run checks the dependency graph against the topology, edge for edge. */
    check_dependencies(&s, start, start + 60 * MIN);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

/* Anomalies after replaying a capture into a fresh server. */
static json_t *replay_into_fresh(const char *capture, uint64_t start, uint64_t end)
{
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", s.http_port);
    const char *args[] = {"--endpoint", ep, "--quiet", capture, NULL};
    assert_int_equal(fl_test_run_tool("faultline-replay", args), 0);
    json_t *arr = anomalies(&s, start, end);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
    return arr;
}

static void test_detect_replay_identical(void **state)
{
    (void)state;
    char capture[300];
    snprintf(capture, sizeof(capture), "/tmp/fl-detect-capture-%d", (int)getpid());
    fl_test_server_t s = {0};
    const char *extra[] = {"--capture-dir", capture, NULL};
    assert_int_equal(fl_test_server_start(&s, extra), 0);
    uint64_t start = past_start(26 * MIN);
    const char *faults[] = {
        "kind=latency,target=payment.POST /charge,factor=5,start=20m,duration=4m", NULL};
    load(&s, start, "26m", "404", faults, NULL);
    json_t *live = anomalies(&s, start, start + 26 * MIN);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);

    json_t *r1 = replay_into_fresh(capture, start, start + 26 * MIN);
    json_t *r2 = replay_into_fresh(capture, start, start + 26 * MIN);
    if (!json_equal(r1, r2)) {
        dump("replay 1", r1);
        dump("replay 2", r2);
        fail_msg("two replays of the same capture gave different anomalies");
    }
    /* And the replay found what the live run found, at the same event times. */
    assert_true(json_array_size(r1) > 0);
    assert_int_equal(json_array_size(r1), json_array_size(live));
    for (size_t i = 0; i < json_array_size(live); i++) {
        json_t *a = json_array_get(live, i), *b = json_array_get(r1, i);
        assert_true(str_is(b, "service", json_string_value(json_object_get(a, "service"))));
        assert_true(str_is(b, "kind", json_string_value(json_object_get(a, "kind"))));
        assert_true(u64_of(json_object_get(a, "start_unix_nano")) ==
                    u64_of(json_object_get(b, "start_unix_nano")));
    }
    json_decref(live);
    json_decref(r1);
    json_decref(r2);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", capture);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_latency),
        cmocka_unit_test(test_detect_error_rate),
        cmocka_unit_test(test_detect_healthy_hour),
        cmocka_unit_test(test_detect_replay_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
