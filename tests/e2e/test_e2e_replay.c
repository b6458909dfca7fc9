/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: replay every captured fixture (each transport, plain and gzip) into a real
 * faultline with faultline-replay, then compare every span the API returns with the
 * fixture's expected spans, field by field; replaying again must change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *scenarios[] = {"healthy", "payment_errors", "inventory_slow", "big_batch",
                                  "edge_numbers"};
#define N_SCEN 5

static const char *kind_names[] = {"unspecified", "internal", "server",
                                   "client",      "producer", "consumer"};
static const char *status_names[] = {"unset", "ok", "error"};

/* The API may render enums as names or numbers; compare either way. */
static int enum_matches(json_t *got, long long want, const char **names, int n)
{
    if (json_is_integer(got))
        return json_integer_value(got) == want;
    if (json_is_string(got) && want >= 0 && want < n)
        return strcasecmp(json_string_value(got), names[want]) == 0;
    return 0;
}

static unsigned long long u64_of(json_t *v)
{
    if (json_is_integer(v))
        return (unsigned long long)json_integer_value(v);
    if (json_is_string(v))
        return strtoull(json_string_value(v), NULL, 10);
    return 0;
}

static size_t count_of(json_t *v)
{
    if (json_is_object(v))
        return json_object_size(v);
    if (json_is_array(v))
        return json_array_size(v);
    return 0;
}

/* Compare one expected line with the span the API returned. */
static void check_span(json_t *exp, json_t *got)
{
    const char *sid = json_string_value(json_object_get(exp, "span_id"));
    assert_string_equal(json_string_value(json_object_get(got, "parent_span_id")),
                        json_string_value(json_object_get(exp, "parent_span_id")));
    assert_string_equal(json_string_value(json_object_get(got, "service")),
                        json_string_value(json_object_get(exp, "service_name")));
    assert_string_equal(json_string_value(json_object_get(got, "name")),
                        json_string_value(json_object_get(exp, "name")));
    if (!enum_matches(json_object_get(got, "kind"),
                      json_integer_value(json_object_get(exp, "kind")), kind_names, 6))
        fail_msg("span %s: kind differs", sid);
    if (!enum_matches(json_object_get(got, "status_code"),
                      json_integer_value(json_object_get(exp, "status_code")), status_names, 3))
        fail_msg("span %s: status differs", sid);
    assert_true(u64_of(json_object_get(got, "start_time_unix_nano")) ==
                u64_of(json_object_get(exp, "start_time_unix_nano")));
    assert_true(u64_of(json_object_get(got, "end_time_unix_nano")) ==
                u64_of(json_object_get(exp, "end_time_unix_nano")));
    assert_int_equal(count_of(json_object_get(got, "attributes")),
                     json_integer_value(json_object_get(exp, "attribute_count")));
    assert_int_equal(count_of(json_object_get(got, "events")),
                     json_integer_value(json_object_get(exp, "event_count")));
    assert_int_equal(count_of(json_object_get(got, "links")),
                     json_integer_value(json_object_get(exp, "link_count")));
    json_t *ts = json_object_get(got, "trace_state");
    assert_string_equal(ts ? json_string_value(ts) : "",
                        json_string_value(json_object_get(exp, "trace_state")));
    assert_int_equal(json_integer_value(json_object_get(got, "flags")),
                     json_integer_value(json_object_get(exp, "flags")));
    assert_string_equal(json_string_value(json_object_get(got, "status_message")),
                        json_string_value(json_object_get(exp, "status_message")));
    json_t *scope = json_object_get(got, "scope");
    assert_string_equal(json_string_value(json_object_get(scope, "name")),
                        json_string_value(json_object_get(exp, "scope_name")));
    assert_string_equal(json_string_value(json_object_get(scope, "version")),
                        json_string_value(json_object_get(exp, "scope_version")));
    json_t *res = json_object_get(got, "resource");
    assert_int_equal(count_of(json_object_get(res, "attributes")),
                     json_integer_value(json_object_get(exp, "resource_attribute_count")));
    json_t *en = json_object_get(exp, "event_names"), *ev = json_object_get(got, "events");
    for (size_t i = 0; i < json_array_size(en); i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(ev, i), "name")),
                            json_string_value(json_array_get(en, i)));
    json_t *ls = json_object_get(exp, "link_span_ids"),
           *lt = json_object_get(exp, "link_trace_ids");
    json_t *lg = json_object_get(got, "links");
    for (size_t i = 0; i < json_array_size(ls); i++) {
        json_t *l = json_array_get(lg, i);
        assert_string_equal(json_string_value(json_object_get(l, "span_id")),
                            json_string_value(json_array_get(ls, i)));
        assert_string_equal(json_string_value(json_object_get(l, "trace_id")),
                            json_string_value(json_array_get(lt, i)));
    }
}

/* Every expected span of every scenario is returned exactly once, with its fields. */
static void verify_all(const fl_test_server_t *s)
{
    for (int sc = 0; sc < N_SCEN; sc++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/fixtures/%s.expected.full.jsonl", FL_TEST_DATA_DIR,
                 scenarios[sc]);
        char *text = fl_test_read_file(path, NULL);
        assert_non_null(text);
        /* Group expected spans by trace. */
        json_t *by_trace = json_object();
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *e = json_loads(line, 0, NULL);
            assert_non_null(e);
            const char *tid = json_string_value(json_object_get(e, "trace_id"));
            json_t *arr = json_object_get(by_trace, tid);
            if (!arr) {
                arr = json_array();
                json_object_set_new(by_trace, tid, arr);
            }
            json_array_append_new(arr, e);
        }
        free(text);
        const char *tid;
        json_t *spans;
        json_object_foreach(by_trace, tid, spans)
        {
            char url[128];
            int status;
            snprintf(url, sizeof(url), "/api/traces/%s", tid);
            json_t *got = fl_test_get_json(s->api_port, url, &status);
            if (status != 200)
                fail_msg("%s: GET %s answered %d", scenarios[sc], url, status);
            assert_string_equal(json_string_value(json_object_get(got, "trace_id")), tid);
            json_t *gs = json_object_get(got, "spans");
            if (json_array_size(gs) != json_array_size(spans))
                fail_msg("%s: trace %s has %zu spans, expected %zu", scenarios[sc], tid,
                         json_array_size(gs), json_array_size(spans));
            size_t i;
            json_t *exp;
            json_array_foreach(spans, i, exp)
            {
                const char *sid = json_string_value(json_object_get(exp, "span_id"));
                json_t *match = NULL;
                size_t k;
                json_t *g;
                json_array_foreach(gs, k, g)
                {
                    if (!strcmp(json_string_value(json_object_get(g, "span_id")), sid))
                        match = g;
                }
                if (!match)
                    fail_msg("%s: span %s of trace %s missing", scenarios[sc], sid, tid);
                check_span(exp, match);
            }
            json_decref(got);
        }
        json_decref(by_trace);
    }
}

static int replay(const fl_test_server_t *s, const char *transport, int gz)
{
    char endpoint[64], grpc_ep[64], files[N_SCEN][512];
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", s->http_port);
    snprintf(grpc_ep, sizeof(grpc_ep), "127.0.0.1:%d", s->grpc_port);
    const char *args[16 + N_SCEN];
    int n = 0;
    args[n++] = "--quiet";
    args[n++] = "--endpoint";
    args[n++] = endpoint;
    args[n++] = "--grpc-endpoint";
    args[n++] = grpc_ep;
    for (int sc = 0; sc < N_SCEN; sc++) {
        /* Only the gzip copy of the 4.7 MB http-json big_batch body is in the repository. */
        int use_gz = gz || (!strcmp(transport, "http-json") && !strcmp(scenarios[sc], "big_batch"));
        snprintf(files[sc], sizeof(files[sc]), "%s/fixtures/%s/%s%s.body", FL_TEST_DATA_DIR,
                 transport, scenarios[sc], use_gz ? ".gz" : "");
        args[n++] = files[sc];
    }
    args[n] = NULL;
    return fl_test_run_tool("faultline-replay", args);
}

static void run_transport(const char *transport, int gz)
{
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    assert_int_equal(replay(&s, transport, gz), 0);
    verify_all(&s);
    /* A retrying client re-sends: nothing may show twice. */
    assert_int_equal(replay(&s, transport, gz), 0);
    verify_all(&s);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

static void test_e2e_replay_http_protobuf(void **st)
{
    (void)st;
    run_transport("http-protobuf", 0);
}
static void test_e2e_replay_http_protobuf_gzip(void **st)
{
    (void)st;
    run_transport("http-protobuf", 1);
}
static void test_e2e_replay_http_json(void **st)
{
    (void)st;
    run_transport("http-json", 0);
}
static void test_e2e_replay_http_json_gzip(void **st)
{
    (void)st;
    run_transport("http-json", 1);
}
static void test_e2e_replay_grpc(void **st)
{
    (void)st;
    run_transport("grpc", 0);
}
static void test_e2e_replay_grpc_gzip(void **st)
{
    (void)st;
    run_transport("grpc", 1);
}

/* Data survives a restart on the same database. */
static void test_e2e_replay_restart_keeps_data(void **st)
{
    (void)st;
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    assert_int_equal(replay(&s, "http-protobuf", 0), 0);
    assert_int_equal(fl_test_server_stop(&s), 0);
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    verify_all(&s);
    /* kill -9 and restart at once on the same ports and database. */
    fl_test_server_kill(&s);
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    verify_all(&s);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_replay_http_protobuf),
        cmocka_unit_test(test_e2e_replay_http_protobuf_gzip),
        cmocka_unit_test(test_e2e_replay_http_json),
        cmocka_unit_test(test_e2e_replay_http_json_gzip),
        cmocka_unit_test(test_e2e_replay_grpc),
        cmocka_unit_test(test_e2e_replay_grpc_gzip),
        cmocka_unit_test(test_e2e_replay_restart_keeps_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
