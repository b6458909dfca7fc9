/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: every bad input gets its status and a message naming the problem, and
 * changes nothing already stored. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static fl_test_server_t srv;
static json_t *healthy_traces; /* trace id -> expected span count */

static int setup(void **state)
{
    (void)state;
    const char *args[] = {"--max-body", "1MiB", "--max-inflight", "1MiB", NULL};
    if (fl_test_server_start(&srv, args) != 0)
        return -1;
    char body[512], ep[64];
    snprintf(body, sizeof(body), "%s/fixtures/http-protobuf/healthy.body", FL_TEST_DATA_DIR);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", srv.http_port);
    const char *a[] = {"--quiet", "--endpoint", ep, body, NULL};
    if (fl_test_run_tool("faultline-replay", a) != 0)
        return -1;
    healthy_traces = fl_test_expected_span_counts("healthy");
    return healthy_traces ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = fl_test_server_stop(&srv);
    fl_test_server_cleanup(&srv);
    json_decref(healthy_traces);
    return rc == 0 ? 0 : -1;
}

/* Everything stored before is still there, exactly. */
static void assert_intact(void)
{
    char why[256];
    if (fl_test_traces_intact(srv.api_port, healthy_traces, why, sizeof(why)) != 0)
        fail_msg("stored data changed: %s", why);
}

/* POST to the OTLP/HTTP port; returns status, body in *out (caller disposes). */
static int post(const char *path, const char *ctype, const char *enc, const void *body, size_t len,
                fl_buf_t *out, char *hdrs, size_t hl)
{
    return fl_test_http(srv.http_port, "POST", path, ctype, enc, body, len, out, hdrs, hl);
}

static void expect(int status, int want, fl_buf_t *body, const char *needle)
{
    if (status != want)
        fail_msg("status %d, expected %d; body: %s", status, want,
                 body->data ? (char *)body->data : "");
    if (needle && (!body->data || !strcasestr((char *)body->data, needle)))
        fail_msg("body does not mention \"%s\": %s", needle, body->data ? (char *)body->data : "");
    fl_buf_dispose(body);
    assert_intact();
}

static void test_e2e_errors_unknown_path(void **st)
{
    (void)st;
    fl_buf_t b;
    expect(post("/v1/nothing", "application/json", NULL, "{}", 2, &b, NULL, 0), 404, &b, NULL);
}

static void test_e2e_errors_wrong_method(void **st)
{
    (void)st;
    fl_buf_t b;
    char hdrs[2048];
    int s = fl_test_http(srv.http_port, "GET", "/v1/traces", NULL, NULL, NULL, 0, &b, hdrs,
                         sizeof(hdrs));
    assert_non_null(strcasestr(hdrs, "allow: POST"));
    expect(s, 405, &b, "POST");
}

static void test_e2e_errors_wrong_content_type(void **st)
{
    (void)st;
    fl_buf_t b;
    expect(post("/v1/traces", "text/plain", NULL, "hello", 5, &b, NULL, 0), 415, &b,
           "application/x-protobuf");
}

static void test_e2e_errors_malformed_protobuf(void **st)
{
    (void)st;
    fl_buf_t b;
    const char junk[] = "\x0a\xff\xff\xff\x0f\x01\x02";
    int s = post("/v1/traces", "application/x-protobuf", NULL, junk, sizeof(junk) - 1, &b, NULL, 0);
    assert_int_equal(s, 400);
    assert_true(b.len > 0); /* a google.rpc.Status with a message */
    fl_buf_dispose(&b);
    assert_intact();
}

static void test_e2e_errors_malformed_json(void **st)
{
    (void)st;
    fl_buf_t b;
    const char *j = "{\"resourceSpans\":[{\"scopeSpans\":[";
    expect(post("/v1/traces", "application/json", NULL, j, strlen(j), &b, NULL, 0), 400, &b,
           "message");
    const char *j2 = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":12,"
                     "\"spanId\":\"0102030405060708\",\"name\":\"x\"}]}]}]}";
    expect(post("/v1/traces", "application/json", NULL, j2, strlen(j2), &b, NULL, 0), 400, &b,
           "traceId");
}

static void test_e2e_errors_bad_encoding(void **st)
{
    (void)st;
    fl_buf_t b;
    expect(post("/v1/traces", "application/json", "gzip", "not gzip at all", 15, &b, NULL, 0), 400,
           &b, "gzip");
    expect(post("/v1/traces", "application/json", "br", "{}", 2, &b, NULL, 0), 400, &b, "br");
}

static void test_e2e_errors_too_large(void **st)
{
    (void)st;
    fl_buf_t b;
    /* 4.7 MB of JSON once inflated, 330 KB on the wire: the limit is on decompressed bytes. */
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/http-json/big_batch.gz.body", FL_TEST_DATA_DIR);
    size_t len;
    char *gz = fl_test_read_file(path, &len);
    assert_non_null(gz);
    expect(post("/v1/traces", "application/json", "gzip", gz, len, &b, NULL, 0), 413, &b, NULL);
    free(gz);
    /* Over the limit on the wire already. */
    size_t big = 2u << 20;
    char *raw = calloc(1, big);
    expect(post("/v1/traces", "application/x-protobuf", NULL, raw, big, &b, NULL, 0), 413, &b,
           NULL);
    free(raw);
}

static void test_e2e_errors_partial_success(void **st)
{
    (void)st;
    fl_buf_t b;
    const char *j =
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
        "\"value\":{\"stringValue\":\"partial\"}}]},\"scopeSpans\":[{\"spans\":["
        "{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0102030405060708\","
        "\"name\":\"bad\",\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\"},"
        "{\"traceId\":\"abcdefabcdefabcdefabcdefabcdef01\",\"spanId\":\"0102030405060709\","
        "\"name\":\"good\",\"startTimeUnixNano\":\"1796004969369162488\","
        "\"endTimeUnixNano\":\"1796004969372397194\"}]}]}]}";
    int s = post("/v1/traces", "application/json", NULL, j, strlen(j), &b, NULL, 0);
    assert_int_equal(s, 200);
    json_t *r = json_loadb((char *)b.data, b.len, 0, NULL);
    assert_non_null(r);
    json_t *ps = json_object_get(r, "partialSuccess");
    json_t *rej = json_object_get(ps, "rejectedSpans");
    assert_true((json_is_string(rej) && !strcmp(json_string_value(rej), "1")) ||
                (json_is_integer(rej) && json_integer_value(rej) == 1));
    assert_true(strlen(json_string_value(json_object_get(ps, "errorMessage"))) > 0);
    json_decref(r);
    fl_buf_dispose(&b);
    int status;
    json_t *t =
        fl_test_get_json(srv.api_port, "/api/traces/abcdefabcdefabcdefabcdefabcdef01", &status);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(t, "spans")), 1);
    json_decref(t);
    assert_intact();
}

static void test_e2e_errors_logs_and_metrics(void **st)
{
    (void)st;
    const char *sig[] = {"logs", "metrics"};
    for (int i = 0; i < 2; i++) {
        char path[512], url[32];
        snprintf(path, sizeof(path), "%s/fixtures/http-protobuf/%s.body", FL_TEST_DATA_DIR, sig[i]);
        snprintf(url, sizeof(url), "/v1/%s", sig[i]);
        size_t len;
        char *body = fl_test_read_file(path, &len);
        assert_non_null(body);
        fl_buf_t b;
        int s = post(url, "application/x-protobuf", NULL, body, len, &b, NULL, 0);
        free(body);
        /* Accepted but not stored: a partial success saying so, never a hang or a crash. */
        assert_int_equal(s, 200);
        assert_true(b.len > 0);
        assert_non_null(memmem(b.data, b.len, "traces only", 11));
        fl_buf_dispose(&b);
    }
    assert_intact();
}

/* A client holding the in-flight budget (a slow upload) makes others get 503 +
 * Retry-After before their body is read; the slow one finishes normally afterwards. */
static void test_e2e_errors_overload(void **st)
{
    (void)st;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.http_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char *head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 1040000\r\n\r\n{";
    assert_true(write(fd, head, strlen(head)) > 0);
    int got503 = 0;
    char hdrs[2048];
    /* 20 KB (valid JSON: an empty request padded with spaces) no longer fits the budget. */
    size_t plen = 20000;
    char *pad = malloc(plen);
    memset(pad, ' ', plen);
    pad[0] = '{';
    pad[plen - 1] = '}';
    for (int i = 0; i < 100 && !got503; i++) {
        fl_buf_t b;
        int s = post("/v1/traces", "application/json", NULL, pad, plen, &b, hdrs, sizeof(hdrs));
        if (s == 503) {
            got503 = 1;
            assert_non_null(strcasestr(hdrs, "retry-after:"));
        }
        fl_buf_dispose(&b);
        if (!got503)
            usleep(20000);
    }
    close(fd);
    assert_true(got503);
    /* Once the slow client is gone the budget is free again. */
    int ok = 0;
    for (int i = 0; i < 200 && !ok; i++) {
        fl_buf_t b;
        ok = post("/v1/traces", "application/json", NULL, pad, plen, &b, NULL, 0) == 200;
        fl_buf_dispose(&b);
        if (!ok)
            usleep(20000);
    }
    free(pad);
    assert_true(ok);
    assert_intact();
}

static void test_e2e_errors_api_parameters(void **st)
{
    (void)st;
    struct {
        const char *path;
        int status;
        const char *needle;
    } cases[] = {
        {"/api/traces/not-hex", 400, "trace"},
        {"/api/traces/00000000000000000000000000000000", 400, "trace"},
        {"/api/traces/0123456789abcdef0123456789abcdef", 404, "not found"},
        {"/api/traces?limit=abc", 400, "limit"},
        {"/api/traces?start=yesterday", 400, "start"},
        {"/api/traces?min_duration_ms=-5", 400, "min_duration_ms"},
        {"/api/traces?bogus=1", 400, "bogus"},
        {"/api/nothing", 404, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fl_buf_t b;
        int s = fl_test_http(srv.api_port, "GET", cases[i].path, NULL, NULL, NULL, 0, &b, NULL, 0);
        json_t *j = json_loadb((char *)b.data, b.len, 0, NULL);
        if (!j)
            fail_msg("%s: not JSON: %s", cases[i].path, (char *)b.data);
        json_decref(j);
        expect(s, cases[i].status, &b, cases[i].needle);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_errors_unknown_path),
        cmocka_unit_test(test_e2e_errors_wrong_method),
        cmocka_unit_test(test_e2e_errors_wrong_content_type),
        cmocka_unit_test(test_e2e_errors_malformed_protobuf),
        cmocka_unit_test(test_e2e_errors_malformed_json),
        cmocka_unit_test(test_e2e_errors_bad_encoding),
        cmocka_unit_test(test_e2e_errors_too_large),
        cmocka_unit_test(test_e2e_errors_partial_success),
        cmocka_unit_test(test_e2e_errors_logs_and_metrics),
        cmocka_unit_test(test_e2e_errors_overload),
        cmocka_unit_test(test_e2e_errors_api_parameters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
