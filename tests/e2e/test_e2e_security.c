/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: bearer tokens on ingest (HTTP and gRPC) and on the API, CORS for browser
 * exporters, PII masking at ingest, the per-request limits and the spans-per-trace limit,
 * against the real server. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INGEST_TOKEN "ingest-old-7f3a"
#define INGEST_TOKEN2 "ingest-new-91c2"
#define API_TOKEN "api-token-55e1"
#define TRACE_EXPORT "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

static fl_test_server_t srv;

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int setup(void **state)
{
    (void)state;
    static char ingest_file[512], api_file[512];
    char tmpl[] = "/tmp/fl-sec-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(srv.dir, sizeof(srv.dir), "%s", tmpl);
    snprintf(ingest_file, sizeof(ingest_file), "%s/ingest.tokens", srv.dir);
    snprintf(api_file, sizeof(api_file), "%s/api.tokens", srv.dir);
    if (write_file(ingest_file, INGEST_TOKEN "\n\n  " INGEST_TOKEN2 "  \n") != 0 ||
        write_file(api_file, API_TOKEN "\n") != 0)
        return -1;
    const char *args[] = {"--ingest-token-file",
                          ingest_file,
                          "--api-token-file",
                          api_file,
                          "--cors-origin",
                          "https://app.example.org",
                          "--cors-origin",
                          "https://*.example.com",
                          "--mask-attribute",
                          "customer.email",
                          "--mask-attribute",
                          "internal.*",
                          "--mask-mode",
                          "hash",
                          "--max-attributes",
                          "5",
                          "--max-attribute-length",
                          "32",
                          "--max-spans-per-request",
                          "10",
                          "--max-spans-per-trace",
                          "12",
                          NULL};
    return fl_test_server_start(&srv, args);
}

static int teardown(void **state)
{
    (void)state;
    int rc = fl_test_server_stop(&srv);
    fl_test_server_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

/* One request with arbitrary headers; returns the status, response in *resp. */
static int request(int port, const char *method, const char *path, const fl_net_header_t *h,
                   size_t nh, const char *body, fl_http_response_t *resp)
{
    fl_http_client_opts_t o = {.host = "127.0.0.1", .port = port};
    fl_http_client_t *c = fl_http_client_new(&o);
    assert_non_null(c);
    int rc = fl_http_client_request(c, method, path, h, nh, body, body ? strlen(body) : 0, resp);
    fl_http_client_free(c);
    assert_int_equal(rc, FL_OK);
    return resp->status;
}

static const char *hdr(const fl_http_response_t *r, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    return fl_http_response_header(r, name, buf[k], sizeof(buf[k]));
}

static int post_json(const char *auth, const char *body, fl_http_response_t *resp)
{
    fl_net_header_t h[2] = {{"Content-Type", "application/json"}, {"Authorization", auth}};
    return request(srv.http_port, "POST", "/v1/traces", h, auth ? 2 : 1, body, resp);
}

static char *span_json(const char *trace_id, const char *span_id, const char *attrs)
{
    char *out = malloc(8192);
    snprintf(out, 8192,
             "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
             "\"value\":{\"stringValue\":\"sec-svc\"}},{\"key\":\"db.password\",\"value\":"
             "{\"stringValue\":\"hunter2\"}}]},\"scopeSpans\":[{\"spans\":[{\"traceId\":\"%s\","
             "\"spanId\":\"%s\",\"name\":\"op\",\"kind\":2,\"startTimeUnixNano\":"
             "\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000100000000\","
             "\"attributes\":[%s]}]}]}]}",
             trace_id, span_id, attrs);
    return out;
}

/* GET /api/traces/{id}: the document. */
static json_t *get_trace(const char *trace_id)
{
    char path[128], auth[64];
    snprintf(path, sizeof(path), "/api/traces/%s", trace_id);
    snprintf(auth, sizeof(auth), "Bearer %s", API_TOKEN);
    fl_net_header_t h[1] = {{"Authorization", auth}};
    fl_http_response_t r;
    assert_int_equal(request(srv.api_port, "GET", path, h, 1, NULL, &r), 200);
    json_t *doc = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    fl_http_response_dispose(&r);
    assert_non_null(doc);
    return doc;
}

static json_t *get_span(const char *trace_id)
{
    json_t *doc = get_trace(trace_id);
    json_t *span = json_incref(json_array_get(json_object_get(doc, "spans"), 0));
    json_decref(doc);
    assert_non_null(span);
    return span;
}

/* ---------------------------------------------------------------- auth */

static void test_e2e_security_http_auth(void **state)
{
    (void)state;
    fl_http_response_t r;
    const char *ok = "{\"resourceSpans\":[]}";

    assert_int_equal(post_json(NULL, ok, &r), 401);
    assert_non_null(hdr(&r, "www-authenticate"));
    assert_true(strncmp(hdr(&r, "www-authenticate"), "Bearer", 6) == 0);
    json_t *st = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "code")), 16);
    assert_non_null(strstr(json_string_value(json_object_get(st, "message")), "bearer"));
    json_decref(st);
    fl_http_response_dispose(&r);

    assert_int_equal(post_json("Bearer wrong-token", ok, &r), 401);
    fl_http_response_dispose(&r);
    assert_int_equal(post_json("Basic " INGEST_TOKEN, ok, &r), 401);
    fl_http_response_dispose(&r);
    assert_int_equal(post_json("Bearer " INGEST_TOKEN, ok, &r), 200);
    fl_http_response_dispose(&r);
    assert_int_equal(post_json("Bearer " INGEST_TOKEN2, ok, &r), 200);
    fl_http_response_dispose(&r);
    /* The token never reaches the log. */
    char *log = fl_test_read_file(srv.log_path, NULL);
    assert_non_null(log);
    assert_null(strstr(log, INGEST_TOKEN));
    assert_null(strstr(log, "wrong-token"));
    free(log);
}

static void test_e2e_security_grpc_auth(void **state)
{
    (void)state;
    fl_grpc_client_opts_t o = {.host = "127.0.0.1", .port = srv.grpc_port};
    fl_grpc_client_t *c = fl_grpc_client_new(&o);
    fl_grpc_result_t res;
    assert_non_null(c);

    assert_int_equal(fl_grpc_client_call(c, TRACE_EXPORT, NULL, 0, "", 0, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_UNAUTHENTICATED);
    fl_grpc_result_dispose(&res);

    fl_net_header_t bad = {"authorization", "Bearer nope"};
    assert_int_equal(fl_grpc_client_call(c, TRACE_EXPORT, &bad, 1, "", 0, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_UNAUTHENTICATED);
    fl_grpc_result_dispose(&res);

    fl_net_header_t good = {"authorization", "Bearer " INGEST_TOKEN2};
    assert_int_equal(fl_grpc_client_call(c, TRACE_EXPORT, &good, 1, "", 0, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_OK);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
}

static void test_e2e_security_api_auth(void **state)
{
    (void)state;
    fl_http_response_t r;
    fl_net_header_t bad = {"Authorization", "Bearer " INGEST_TOKEN};
    fl_net_header_t good = {"Authorization", "Bearer " API_TOKEN};

    assert_int_equal(request(srv.api_port, "GET", "/health", NULL, 0, NULL, &r), 200);
    fl_http_response_dispose(&r);
    assert_int_equal(request(srv.api_port, "GET", "/api/services", NULL, 0, NULL, &r), 401);
    assert_non_null(hdr(&r, "www-authenticate"));
    json_t *e = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "status")), 401);
    assert_non_null(json_object_get(e, "error"));
    json_decref(e);
    fl_http_response_dispose(&r);
    assert_int_equal(request(srv.api_port, "GET", "/api/services", &bad, 1, NULL, &r), 401);
    fl_http_response_dispose(&r);
    assert_int_equal(request(srv.api_port, "GET", "/api/services", &good, 1, NULL, &r), 200);
    fl_http_response_dispose(&r);
}

/* ---------------------------------------------------------------- CORS */

static void test_e2e_security_cors(void **state)
{
    (void)state;
    fl_http_response_t r;
    fl_net_header_t pre[3] = {{"Origin", "https://shop.example.com"},
                              {"Access-Control-Request-Method", "POST"},
                              {"Access-Control-Request-Headers", "content-type, x-custom"}};

    assert_int_equal(request(srv.http_port, "OPTIONS", "/v1/traces", pre, 3, NULL, &r), 204);
    assert_string_equal(hdr(&r, "access-control-allow-origin"), "https://shop.example.com");
    assert_string_equal(hdr(&r, "access-control-allow-credentials"), "true");
    assert_non_null(strstr(hdr(&r, "access-control-allow-methods"), "POST"));
    const char *ah = hdr(&r, "access-control-allow-headers");
    assert_non_null(strstr(ah, "Authorization"));
    assert_non_null(strstr(ah, "x-custom"));
    assert_non_null(hdr(&r, "access-control-max-age"));
    fl_http_response_dispose(&r);

    /* Not listed: no CORS headers (the browser refuses). */
    pre[0].value = "https://evil.example.net";
    assert_int_equal(request(srv.http_port, "OPTIONS", "/v1/traces", pre, 3, NULL, &r), 204);
    assert_null(hdr(&r, "access-control-allow-origin"));
    fl_http_response_dispose(&r);

    /* The POST response (and an error response) carry the headers too. */
    fl_net_header_t post[3] = {{"Content-Type", "application/json"},
                               {"Origin", "https://app.example.org"},
                               {"Authorization", "Bearer " INGEST_TOKEN}};
    assert_int_equal(
        request(srv.http_port, "POST", "/v1/traces", post, 3, "{\"resourceSpans\":[]}", &r), 200);
    assert_string_equal(hdr(&r, "access-control-allow-origin"), "https://app.example.org");
    assert_string_equal(hdr(&r, "access-control-allow-credentials"), "true");
    fl_http_response_dispose(&r);
    assert_int_equal(request(srv.http_port, "POST", "/v1/traces", post, 2, "{}", &r), 401);
    assert_string_equal(hdr(&r, "access-control-allow-origin"), "https://app.example.org");
    fl_http_response_dispose(&r);
    post[1].value = "https://app.example.org.evil.net";
    assert_int_equal(request(srv.http_port, "POST", "/v1/traces", post, 3, "{}", &r), 200);
    assert_null(hdr(&r, "access-control-allow-origin"));
    fl_http_response_dispose(&r);

    /* The API too, with GET. */
    pre[0].value = "https://app.example.org";
    pre[1].value = "GET";
    assert_int_equal(request(srv.api_port, "OPTIONS", "/api/services", pre, 2, NULL, &r), 204);
    assert_non_null(strstr(hdr(&r, "access-control-allow-methods"), "GET"));
    fl_http_response_dispose(&r);
}

/* ---------------------------------------------------------------- masking and limits */

static void test_e2e_security_masking(void **state)
{
    (void)state;
    fl_http_response_t r;
    const char *tid = "5ec000000000000000000000000000a1";
    char *body = span_json(tid, "5ec00000000000a1",
                           "{\"key\":\"user.password\",\"value\":{\"stringValue\":\"s3cret!\"}},"
                           "{\"key\":\"customer.email\",\"value\":{\"stringValue\":\"a@b.c\"}},"
                           "{\"key\":\"internal.note\",\"value\":{\"stringValue\":\"a@b.c\"}},"
                           "{\"key\":\"http.route\",\"value\":{\"stringValue\":\"/x\"}}");
    assert_int_equal(post_json("Bearer " INGEST_TOKEN, body, &r), 200);
    fl_http_response_dispose(&r);
    free(body);

    json_t *span = get_span(tid);
    json_t *attrs = json_object_get(span, "attributes");
    const char *pw = json_string_value(json_object_get(attrs, "user.password"));
    const char *em = json_string_value(json_object_get(attrs, "customer.email"));
    const char *note = json_string_value(json_object_get(attrs, "internal.note"));
    assert_non_null(pw);
    assert_int_equal(strlen(pw), 23);
    assert_true(strncmp(pw, "sha256:", 7) == 0);
    assert_null(strstr(pw, "s3cret"));
    assert_true(strncmp(em, "sha256:", 7) == 0);
    /* Equal values hash alike, so they stay correlatable. */
    assert_string_equal(em, note);
    assert_string_equal(json_string_value(json_object_get(attrs, "http.route")), "/x");
    json_t *rattrs = json_object_get(json_object_get(span, "resource"), "attributes");
    const char *rpw = json_string_value(json_object_get(rattrs, "db.password"));
    assert_true(rpw && strncmp(rpw, "sha256:", 7) == 0);
    json_decref(span);
}

static void test_e2e_security_limits(void **state)
{
    (void)state;
    fl_http_response_t r;
    const char *tid = "5ec000000000000000000000000000b2";
    char attrs[2048] = "", one[256];
    for (int i = 0; i < 8; i++) {
        snprintf(one, sizeof(one), "%s{\"key\":\"k%d\",\"value\":{\"stringValue\":\"%s\"}}",
                 i ? "," : "", i,
                 i == 0 ? "0123456789012345678901234567890123456789-long-value" : "v");
        strcat(attrs, one);
    }
    char *body = span_json(tid, "5ec00000000000b2", attrs);
    assert_int_equal(post_json("Bearer " INGEST_TOKEN, body, &r), 200);
    fl_http_response_dispose(&r);
    free(body);

    json_t *span = get_span(tid);
    json_t *a = json_object_get(span, "attributes");
    assert_int_equal(json_object_size(a), 5);
    assert_int_equal(json_integer_value(json_object_get(span, "dropped_attributes_count")), 3);
    assert_string_equal(json_string_value(json_object_get(a, "k0")),
                        "01234567890123456789012345678901");
    json_decref(span);

    /* Too many spans in one request: 413 with a message. */
    fl_buf_t big;
    fl_buf_init(&big, 0);
    fl_buf_puts(&big, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[");
    for (int i = 0; i < 11; i++) {
        char s[256];
        snprintf(s, sizeof(s),
                 "%s{\"traceId\":\"5ec000000000000000000000000000c3\",\"spanId\":"
                 "\"5ec00000000000%02x\",\"name\":\"x\",\"startTimeUnixNano\":\"1\","
                 "\"endTimeUnixNano\":\"2\"}",
                 i ? "," : "", i + 1);
        fl_buf_puts(&big, s);
    }
    fl_buf_puts(&big, "]}]}]}");
    fl_buf_putc(&big, 0);
    assert_int_equal(post_json("Bearer " INGEST_TOKEN, (const char *)big.data, &r), 413);
    assert_non_null(strstr((const char *)r.body.data, "spans per request"));
    fl_http_response_dispose(&r);
    fl_buf_dispose(&big);

    /* Counted, and visible in /aiops/status. */
    fl_net_header_t h[1] = {{"Authorization", "Bearer " API_TOKEN}};
    assert_int_equal(request(srv.api_port, "GET", "/aiops/status", h, 1, NULL, &r), 200);
    json_t *st = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    json_t *in = json_object_get(st, "ingest");
    assert_true(json_integer_value(json_object_get(in, "attributes_dropped")) >= 3);
    assert_true(json_integer_value(json_object_get(in, "values_truncated")) >= 1);
    assert_true(json_integer_value(json_object_get(in, "attributes_masked")) >= 1);
    assert_true(json_integer_value(json_object_get(in, "requests_too_many_spans")) >= 1);
    assert_true(json_integer_value(json_object_get(in, "requests_unauthenticated")) >= 1);
    json_decref(st);
    fl_http_response_dispose(&r);
}

/* One ResourceSpans with n spans of trace tid (span ids first+1 .. first+n), then m spans of
 * trace tid2 (ids 0x80+1 ..), into b (initialised here, NUL-terminated). */
static void spans_json(fl_buf_t *b, const char *tid, int first, int n, const char *tid2, int m)
{
    fl_buf_init(b, 0);
    fl_buf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                   "\"value\":{\"stringValue\":\"limit-svc\"}}]},\"scopeSpans\":[{\"spans\":[");
    for (int i = 0; i < n + m; i++)
        fl_buf_printf(b,
                      "%s{\"traceId\":\"%s\",\"spanId\":\"00000000000000%02x\",\"name\":\"op\","
                      "\"startTimeUnixNano\":\"1700000000000000000\","
                      "\"endTimeUnixNano\":\"1700000000100000000\"}",
                      i ? "," : "", i < n ? tid : tid2, i < n ? first + i + 1 : 0x80 + i - n + 1);
    fl_buf_puts(b, "]}]}]}");
    fl_buf_putc(b, 0);
}

/* The span ids of a stored trace, sorted, as "01 02 ...". */
static void stored_span_ids(const char *tid, char *out, size_t outlen)
{
    json_t *doc = get_trace(tid);
    json_t *spans = json_object_get(doc, "spans");
    unsigned char have[256] = {0};
    for (size_t i = 0; i < json_array_size(spans); i++) {
        const char *sid = json_string_value(json_object_get(json_array_get(spans, i), "span_id"));
        assert_non_null(sid);
        have[strtoul(sid + 14, NULL, 16) & 255]++;
    }
    json_decref(doc);
    size_t o = 0;
    out[0] = 0;
    for (int k = 0; k < 256; k++)
        for (int c = 0; c < have[k] && o + 4 < outlen; c++)
            o += (size_t)snprintf(out + o, outlen - o, "%s%02x", o ? " " : "", k);
}

/* --max-spans-per-trace 12: one trace sent in four requests of 5 spans keeps its first 12;
 * the rest are answered as partial success, counted in /aiops/status, and a trace sent
 * alongside is untouched. */
static void test_e2e_security_spans_per_trace(void **state)
{
    (void)state;
    const char *tid = "5ec000000000000000000000000000d4",
               *other = "5ec000000000000000000000000000e5";
    fl_http_response_t r;
    const char *want_rejected[4] = {NULL, NULL, "3", "5"};
    for (int k = 0; k < 4; k++) {
        fl_buf_t b;
        spans_json(&b, tid, 5 * k, 5, other, k == 2 ? 3 : 0);
        assert_int_equal(post_json("Bearer " INGEST_TOKEN, (const char *)b.data, &r), 200);
        fl_buf_dispose(&b);
        json_t *doc = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        assert_non_null(doc);
        json_t *ps = json_object_get(doc, "partialSuccess");
        if (!want_rejected[k]) {
            assert_null(ps);
        } else {
            assert_string_equal(json_string_value(json_object_get(ps, "rejectedSpans")),
                                want_rejected[k]);
            const char *msg = json_string_value(json_object_get(ps, "errorMessage"));
            assert_non_null(msg);
            print_message("request %d: %s\n", k + 1, msg);
            assert_non_null(strstr(msg, "limit of 12 spans per trace"));
            assert_non_null(strstr(msg, tid));
        }
        json_decref(doc);
        fl_http_response_dispose(&r);
    }

    char ids[256];
    stored_span_ids(tid, ids, sizeof(ids));
    assert_string_equal(ids, "01 02 03 04 05 06 07 08 09 0a 0b 0c");
    stored_span_ids(other, ids, sizeof(ids));
    assert_string_equal(ids, "81 82 83");

    fl_net_header_t h[1] = {{"Authorization", "Bearer " API_TOKEN}};
    assert_int_equal(request(srv.api_port, "GET", "/aiops/status", h, 1, NULL, &r), 200);
    json_t *st = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    json_t *in = json_object_get(st, "ingest");
    assert_int_equal(json_integer_value(json_object_get(in, "spans_over_trace_limit")), 8);
    json_decref(st);
    fl_http_response_dispose(&r);
}

static void test_e2e_security_bad_token_file(void **state)
{
    (void)state;
    fl_test_server_t s2;
    memset(&s2, 0, sizeof(s2));
    const char *args[] = {"--ingest-token-file", "/nonexistent/tokens", NULL};
    /* Startup fails: the server exits instead of becoming healthy. */
    assert_int_not_equal(fl_test_server_start(&s2, args), 0);
    fl_test_server_cleanup(&s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_security_http_auth),
        cmocka_unit_test(test_e2e_security_grpc_auth),
        cmocka_unit_test(test_e2e_security_api_auth),
        cmocka_unit_test(test_e2e_security_cors),
        cmocka_unit_test(test_e2e_security_masking),
        cmocka_unit_test(test_e2e_security_limits),
        cmocka_unit_test(test_e2e_security_spans_per_trace),
        cmocka_unit_test(test_e2e_security_bad_token_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
