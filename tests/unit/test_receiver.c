/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for receiver decoding: every captured fixture decoded (protobuf, JSON, gRPC,
 * plain and gzip) and compared field by field with its expected file, JSON leniency and
 * errors, compression and bombs, the depth pre-scan, and response encodings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/receiver.h>
#include <google/rpc/error_details.pb-c.h>
#include <google/rpc/status.pb-c.h>
#include <jansson.h>
#include <math.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h>
#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#define FIX FL_TEST_DATA_DIR "/fixtures"

/* ---------------------------------------------------------------- helpers */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        *len = (size_t)n;
    }
    return p;
}

/* The decompressed, unprefixed message of a fixture body. */
static void load_plain(const char *transport, const char *scenario, int gz, fl_buf_t *out)
{
    char path[512], err[256];
    size_t len;
    snprintf(path, sizeof(path), "%s/%s/%s%s.body", FIX, transport, scenario, gz ? ".gz" : "");
    uint8_t *raw = read_file(path, &len);
    assert_non_null(raw);
    const uint8_t *p = raw;
    size_t n = len;
    if (strcmp(transport, "grpc") == 0) {
        assert_true(len >= 5);
        uint32_t mlen =
            (uint32_t)raw[1] << 24 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 8 | raw[4];
        assert_int_equal(raw[0], gz ? 1 : 0);
        assert_int_equal(mlen, len - 5);
        p += 5;
        n -= 5;
    }
    fl_buf_init(out, 0);
    int rc = fl_decompress(gz ? "gzip" : "", p, n, 64u << 20, out, err, sizeof(err));
    if (rc != FL_OK)
        fail_msg("%s: %s", path, err);
    free(raw);
}

static fl_span_batch_t *decode_ok(const uint8_t *body, size_t len, int format)
{
    char err[512] = "";
    fl_span_batch_t *b = fl_span_batch_new(0);
    assert_non_null(b);
    int rc = fl_otlp_decode_traces(body, len, format, b, err, sizeof(err));
    if (rc != FL_OK)
        fail_msg("decode failed rc=%d: %s", rc, err);
    return b;
}

static int decode_str(const char *json, fl_span_batch_t **out, char *err, size_t errlen)
{
    fl_span_batch_t *b = fl_span_batch_new(0);
    assert_non_null(b);
    err[0] = 0;
    int rc =
        fl_otlp_decode_traces((const uint8_t *)json, strlen(json), FL_OTLP_JSON, b, err, errlen);
    *out = b;
    return rc;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    fl_hex_encode(p, n, out);
}

static int key_cmp(const void *a, const void *b)
{
    const fl_span_t *x = *(const fl_span_t *const *)a, *y = *(const fl_span_t *const *)b;
    int c = memcmp(x->trace_id, y->trace_id, 16);
    return c ? c : memcmp(x->span_id, y->span_id, 8);
}

/* Spans sorted by (trace id, span id). */
static const fl_span_t **sorted(const fl_span_batch_t *b)
{
    const fl_span_t **v = malloc((b->n_spans + 1) * sizeof(*v));
    for (size_t i = 0; i < b->n_spans; i++)
        v[i] = &b->spans[i];
    qsort(v, b->n_spans, sizeof(*v), key_cmp);
    return v;
}

static const fl_span_t *find_span(const fl_span_t **v, size_t n, const char *tid, const char *sid)
{
    fl_span_t key;
    const fl_span_t *kp = &key;
    memset(&key, 0, sizeof(key));
    assert_int_equal(fl_hex_decode(tid, strlen(tid), key.trace_id, 16), FL_OK);
    assert_int_equal(fl_hex_decode(sid, strlen(sid), key.span_id, 8), FL_OK);
    const fl_span_t **hit = bsearch(&kp, v, n, sizeof(*v), key_cmp);
    return hit ? *hit : NULL;
}

static void assert_str_eq(fl_str_t s, const char *want, const char *what)
{
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("%s: got \"%.*s\", want \"%s\"", what, (int)s.len, s.ptr, want);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        fail_msg("expected string field %s", k);
    return json_string_value(v);
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        fail_msg("expected integer field %s", k);
    return json_integer_value(v);
}

/* ---------------------------------------------------------------- fixture comparison */

/* Compare every field of *.expected.full.jsonl with the decoded batch. */
static void check_against_expected(const fl_span_batch_t *b, const char *scenario, const char *what)
{
    char path[512], line[65536], h[40];
    snprintf(path, sizeof(path), "%s/%s.expected.full.jsonl", FIX, scenario);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    const fl_span_t **v = sorted(b);
    size_t lines = 0;
    while (fgets(line, sizeof(line), f)) {
        json_error_t je;
        json_t *e = json_loads(line, 0, &je);
        if (!e)
            fail_msg("%s: bad expected line: %s", path, je.text);
        lines++;
        const char *tid = jstr(e, "trace_id"), *sid = jstr(e, "span_id");
        const fl_span_t *s = find_span(v, b->n_spans, tid, sid);
        if (!s)
            fail_msg("%s: span %s/%s not decoded", what, tid, sid);
        const char *pid = jstr(e, "parent_span_id");
        if (*pid) {
            hex(s->parent_span_id, 8, h);
            assert_string_equal(h, pid);
        } else {
            assert_true(fl_is_zero(s->parent_span_id, 8));
        }
        assert_str_eq(s->resource->service_name, jstr(e, "service_name"), "service_name");
        assert_str_eq(s->name, jstr(e, "name"), "name");
        assert_int_equal(s->kind, jint(e, "kind"));
        assert_int_equal(s->start_ns, strtoull(jstr(e, "start_time_unix_nano"), NULL, 10));
        assert_int_equal(s->end_ns, strtoull(jstr(e, "end_time_unix_nano"), NULL, 10));
        assert_int_equal(s->status_code, jint(e, "status_code"));
        assert_str_eq(s->status_message, jstr(e, "status_message"), "status_message");
        assert_int_equal(s->attrs.n, jint(e, "attribute_count"));
        assert_int_equal(s->n_events, jint(e, "event_count"));
        assert_int_equal(s->n_links, jint(e, "link_count"));
        assert_str_eq(s->trace_state, jstr(e, "trace_state"), "trace_state");
        assert_int_equal(s->flags, jint(e, "flags"));
        assert_int_equal(s->dropped_attrs, jint(e, "dropped_attributes_count"));
        assert_int_equal(s->dropped_events, jint(e, "dropped_events_count"));
        assert_int_equal(s->dropped_links, jint(e, "dropped_links_count"));
        assert_str_eq(s->scope->name, jstr(e, "scope_name"), "scope_name");
        assert_str_eq(s->scope->version, jstr(e, "scope_version"), "scope_version");
        assert_str_eq(s->scope->schema_url, jstr(e, "scope_schema_url"), "scope_schema_url");
        assert_int_equal(s->resource->attrs.n, jint(e, "resource_attribute_count"));
        json_t *en = json_object_get(e, "event_names"),
               *ec = json_object_get(e, "event_attribute_counts");
        assert_int_equal(json_array_size(en), s->n_events);
        assert_int_equal(json_array_size(ec), s->n_events);
        for (size_t i = 0; i < s->n_events; i++) {
            assert_str_eq(s->events[i].name, json_string_value(json_array_get(en, i)),
                          "event name");
            assert_int_equal(s->events[i].attrs.n, json_integer_value(json_array_get(ec, i)));
        }
        json_t *ls = json_object_get(e, "link_span_ids"),
               *lt = json_object_get(e, "link_trace_ids");
        assert_int_equal(json_array_size(ls), s->n_links);
        assert_int_equal(json_array_size(lt), s->n_links);
        for (size_t i = 0; i < s->n_links; i++) {
            hex(s->links[i].span_id, 8, h);
            assert_string_equal(h, json_string_value(json_array_get(ls, i)));
            hex(s->links[i].trace_id, 16, h);
            assert_string_equal(h, json_string_value(json_array_get(lt, i)));
        }
        json_decref(e);
    }
    fclose(f);
    /* Every span decoded is an expected one, none rejected. */
    assert_int_equal(lines, b->n_spans);
    assert_int_equal(b->rejected, 0);
    free(v);
}

typedef struct fixture_case {
    const char *transport;
    const char *scenario;
    int gz;
} fixture_case_t;

static void test_receiver_fixture(void **state)
{
    const fixture_case_t *fc = *state;
    char what[128];
    fl_buf_t body;
    snprintf(what, sizeof(what), "%s/%s%s", fc->transport, fc->scenario, fc->gz ? ".gz" : "");
    load_plain(fc->transport, fc->scenario, fc->gz, &body);
    int format = strcmp(fc->transport, "http-json") == 0 ? FL_OTLP_JSON : FL_OTLP_PROTOBUF;
    fl_span_batch_t *b = decode_ok(body.data, body.len, format);
    check_against_expected(b, fc->scenario, what);
    /* Resources and scopes are shared, not copied per span. */
    if (b->n_spans > 1) {
        size_t shared = 0;
        for (size_t i = 1; i < b->n_spans; i++)
            shared += b->spans[i].resource == b->spans[i - 1].resource;
        assert_true(shared > 0);
    }
    fl_span_batch_free(b);
    fl_buf_dispose(&body);
}

#define FX(t, s, g)                                                                                \
    {                                                                                              \
        t, s, g                                                                                    \
    }
static const fixture_case_t fixture_cases[] = {
    FX("http-protobuf", "healthy", 0),
    FX("http-protobuf", "healthy", 1),
    FX("http-protobuf", "payment_errors", 0),
    FX("http-protobuf", "payment_errors", 1),
    FX("http-protobuf", "inventory_slow", 0),
    FX("http-protobuf", "inventory_slow", 1),
    FX("http-protobuf", "big_batch", 0),
    FX("http-protobuf", "big_batch", 1),
    FX("http-protobuf", "edge_numbers", 0),
    FX("http-protobuf", "edge_numbers", 1),
    FX("http-json", "healthy", 0),
    FX("http-json", "healthy", 1),
    FX("http-json", "payment_errors", 0),
    FX("http-json", "payment_errors", 1),
    FX("http-json", "inventory_slow", 0),
    FX("http-json", "inventory_slow", 1),
    FX("http-json", "big_batch", 1),
    FX("http-json", "edge_numbers", 0),
    FX("http-json", "edge_numbers", 1),
    FX("grpc", "healthy", 0),
    FX("grpc", "healthy", 1),
    FX("grpc", "payment_errors", 0),
    FX("grpc", "payment_errors", 1),
    FX("grpc", "inventory_slow", 0),
    FX("grpc", "inventory_slow", 1),
    FX("grpc", "big_batch", 0),
    FX("grpc", "big_batch", 1),
    FX("grpc", "edge_numbers", 0),
    FX("grpc", "edge_numbers", 1),
};

/* ---------------------------------------------------------------- protobuf vs JSON */

static int attrs_eq(const fl_attrs_t *a, const fl_attrs_t *b, const char **diff_key)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (!fl_str_eq(a->items[i].key, b->items[i].key) ||
            !fl_value_eq(&a->items[i].value, &b->items[i].value)) {
            if (diff_key)
                *diff_key = a->items[i].key.ptr;
            return 0;
        }
    }
    return 1;
}

/* Attribute-by-attribute equality, except the keys JSON cannot carry exactly. */
static void assert_attrs_eq_except(const fl_attrs_t *pb, const fl_attrs_t *js,
                                   const char *const *skip)
{
    assert_int_equal(pb->n, js->n);
    for (size_t i = 0; i < pb->n; i++) {
        assert_true(fl_str_eq(pb->items[i].key, js->items[i].key));
        int skipped = 0;
        for (size_t k = 0; skip && skip[k]; k++)
            skipped |= fl_str_eq(pb->items[i].key, fl_str(skip[k]));
        if (skipped)
            continue;
        if (!fl_value_eq(&pb->items[i].value, &js->items[i].value))
            fail_msg("attribute %.*s differs between protobuf and JSON", (int)pb->items[i].key.len,
                     pb->items[i].key.ptr);
    }
}

static void compare_batches(const fl_span_batch_t *pb, const fl_span_batch_t *js,
                            const char *const *skip)
{
    assert_int_equal(pb->n_spans, js->n_spans);
    const fl_span_t **a = sorted(pb), **b = sorted(js);
    for (size_t i = 0; i < pb->n_spans; i++) {
        const fl_span_t *x = a[i], *y = b[i];
        const char *dk = NULL;
        assert_memory_equal(x->trace_id, y->trace_id, 16);
        assert_memory_equal(x->span_id, y->span_id, 8);
        assert_memory_equal(x->parent_span_id, y->parent_span_id, 8);
        assert_true(fl_str_eq(x->trace_state, y->trace_state));
        assert_int_equal(x->flags, y->flags);
        assert_true(fl_str_eq(x->name, y->name));
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->start_ns, y->start_ns);
        assert_int_equal(x->end_ns, y->end_ns);
        assert_attrs_eq_except(&x->attrs, &y->attrs, skip);
        assert_int_equal(x->dropped_attrs, y->dropped_attrs);
        assert_int_equal(x->n_events, y->n_events);
        for (size_t e = 0; e < x->n_events; e++) {
            assert_int_equal(x->events[e].time_ns, y->events[e].time_ns);
            assert_true(fl_str_eq(x->events[e].name, y->events[e].name));
            assert_true(attrs_eq(&x->events[e].attrs, &y->events[e].attrs, &dk));
            assert_int_equal(x->events[e].dropped_attrs, y->events[e].dropped_attrs);
        }
        assert_int_equal(x->dropped_events, y->dropped_events);
        assert_int_equal(x->n_links, y->n_links);
        for (size_t l = 0; l < x->n_links; l++) {
            assert_memory_equal(x->links[l].trace_id, y->links[l].trace_id, 16);
            assert_memory_equal(x->links[l].span_id, y->links[l].span_id, 8);
            assert_true(fl_str_eq(x->links[l].trace_state, y->links[l].trace_state));
            assert_true(attrs_eq(&x->links[l].attrs, &y->links[l].attrs, &dk));
            assert_int_equal(x->links[l].dropped_attrs, y->links[l].dropped_attrs);
            assert_int_equal(x->links[l].flags, y->links[l].flags);
        }
        assert_int_equal(x->dropped_links, y->dropped_links);
        assert_int_equal(x->status_code, y->status_code);
        assert_true(fl_str_eq(x->status_message, y->status_message));
        assert_true(attrs_eq(&x->resource->attrs, &y->resource->attrs, &dk));
        assert_int_equal(x->resource->dropped_attrs, y->resource->dropped_attrs);
        assert_true(fl_str_eq(x->resource->schema_url, y->resource->schema_url));
        assert_true(fl_str_eq(x->resource->service_name, y->resource->service_name));
        assert_true(fl_str_eq(x->scope->name, y->scope->name));
        assert_true(fl_str_eq(x->scope->version, y->scope->version));
        assert_true(attrs_eq(&x->scope->attrs, &y->scope->attrs, &dk));
        assert_true(fl_str_eq(x->scope->schema_url, y->scope->schema_url));
    }
    free(a);
    free(b);
}

static void test_receiver_pb_json_equal(void **state)
{
    static const char *const scenarios[] = {"healthy", "payment_errors", "inventory_slow",
                                            "big_batch"};
    (void)state;
    for (size_t i = 0; i < 4; i++) {
        fl_buf_t pbb, jsb;
        load_plain("http-protobuf", scenarios[i], 0, &pbb);
        load_plain("http-json", scenarios[i], 1, &jsb);
        fl_span_batch_t *pb = decode_ok(pbb.data, pbb.len, FL_OTLP_PROTOBUF);
        fl_span_batch_t *js = decode_ok(jsb.data, jsb.len, FL_OTLP_JSON);
        compare_batches(pb, js, NULL);
        /* gRPC carries the same request bytes as HTTP/protobuf. */
        fl_buf_t gb;
        load_plain("grpc", scenarios[i], 0, &gb);
        fl_span_batch_t *g = decode_ok(gb.data, gb.len, FL_OTLP_PROTOBUF);
        compare_batches(pb, g, NULL);
        fl_span_batch_free(g);
        fl_buf_dispose(&gb);
        fl_span_batch_free(pb);
        fl_span_batch_free(js);
        fl_buf_dispose(&pbb);
        fl_buf_dispose(&jsb);
    }
}

static const fl_value_t *attr(const fl_span_t *s, const char *key)
{
    for (size_t i = 0; i < s->attrs.n; i++)
        if (fl_str_eq(s->attrs.items[i].key, fl_str(key)))
            return &s->attrs.items[i].value;
    fail_msg("attribute %s missing", key);
    return NULL;
}

static void test_receiver_edge_numbers(void **state)
{
    (void)state;
    fl_buf_t pbb, jsb;
    load_plain("http-protobuf", "edge_numbers", 0, &pbb);
    load_plain("http-json", "edge_numbers", 0, &jsb);
    fl_span_batch_t *pb = decode_ok(pbb.data, pbb.len, FL_OTLP_PROTOBUF);
    fl_span_batch_t *js = decode_ok(jsb.data, jsb.len, FL_OTLP_JSON);
    /* Equal everywhere except what the JSON text itself lost. */
    static const char *const lossy[] = {"edge.int.2_pow_60", "edge.double.pos_inf",
                                        "edge.double.neg_inf", NULL};
    compare_batches(pb, js, lossy);
    const fl_span_t *p = &pb->spans[0], *j = &js->spans[0];

    assert_int_equal(attr(p, "edge.int.max_safe")->u.i, 9007199254740991LL);
    assert_int_equal(attr(j, "edge.int.2_pow_53")->u.i, 9007199254740992LL);
    /* 2^60: exact in protobuf, the JavaScript-rounded decimal in JSON, read exactly. */
    assert_int_equal(attr(p, "edge.int.2_pow_60")->type, FL_VAL_INT);
    assert_int_equal(attr(p, "edge.int.2_pow_60")->u.i, 1152921504606846976LL);
    assert_int_equal(attr(j, "edge.int.2_pow_60")->type, FL_VAL_INT);
    assert_int_equal(attr(j, "edge.int.2_pow_60")->u.i, 1152921504606847000LL);
    /* -2^63 as the rounded text -9223372036854776000 is still int64 min. */
    assert_int_equal(attr(j, "edge.int.int64_min")->type, FL_VAL_INT);
    assert_true(attr(j, "edge.int.int64_min")->u.i == INT64_MIN);
    /* 2^63, 2^64, 1e300 sent as intValue in JSON become doubles, as in protobuf. */
    assert_int_equal(attr(j, "edge.int.2_pow_63")->type, FL_VAL_DOUBLE);
    assert_true(attr(j, "edge.int.2_pow_63")->u.d == 9223372036854775808.0);
    assert_int_equal(attr(j, "edge.int.2_pow_64")->type, FL_VAL_DOUBLE);
    assert_true(attr(j, "edge.int.2_pow_64")->u.d == 18446744073709551616.0);
    assert_true(attr(j, "edge.double.1e300")->u.d == 1e300);
    assert_true(attr(j, "edge.double.max")->u.d == 1.7976931348623157e308);
    assert_true(attr(j, "edge.double.min_positive")->u.d == 5e-324);
    /* NaN is NaN on both sides; ±Infinity is Infinity in protobuf, null (NaN) in JSON. */
    assert_true(isnan(attr(p, "edge.double.nan")->u.d));
    assert_true(isnan(attr(j, "edge.double.nan")->u.d));
    assert_true(isinf(attr(p, "edge.double.pos_inf")->u.d) &&
                attr(p, "edge.double.pos_inf")->u.d > 0);
    assert_true(isinf(attr(p, "edge.double.neg_inf")->u.d) &&
                attr(p, "edge.double.neg_inf")->u.d < 0);
    assert_int_equal(attr(j, "edge.double.pos_inf")->type, FL_VAL_DOUBLE);
    assert_true(isnan(attr(j, "edge.double.pos_inf")->u.d));
    const fl_value_t *arr = attr(j, "edge.array.with_nan");
    assert_int_equal(arr->type, FL_VAL_ARRAY);
    assert_int_equal(arr->u.arr.n, 3);
    assert_true(arr->u.arr.items[0].u.d == 1.5);
    assert_true(isnan(arr->u.arr.items[1].u.d));
    fl_span_batch_free(pb);
    fl_span_batch_free(js);
    fl_buf_dispose(&pbb);
    fl_buf_dispose(&jsb);
}

/* ---------------------------------------------------------------- JSON leniency and errors */

static const char lenient_json[] =
    "{\"resource_spans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
    "{\"string_value\":\"svc\"}}],\"dropped_attributes_count\":\"2\",\"unknown\":{\"x\":[1,2,"
    "{\"y\":null}]},\"schemaUrl\":\"ignored\"},\"schema_url\":\"https://s/1\","
    "\"scope_spans\":[{\"spans\":[{\"trace_id\":\"5B8EFFF798038103D269B633813FC60C\","
    "\"span_id\":\"EEE19B7EC3C1B174\",\"parent_span_id\":\"\",\"name\":\"op\",\"kind\":"
    "\"SPAN_KIND_CLIENT\",\"start_time_unix_nano\":\"18446744073709551615\","
    "\"end_time_unix_nano\":18446744073709551615,\"status\":{\"code\":\"STATUS_CODE_ERROR\","
    "\"message\":\"boom\"},\"flags\":\"257\",\"extra\":true,\"attributes\":["
    "{\"key\":\"s\",\"value\":{\"stringValue\":\"a\\\"b\\u00e9\\ud83d\\ude00\\n\"}},"
    "{\"key\":\"b\",\"value\":{\"boolValue\":true}},"
    "{\"key\":\"i\",\"value\":{\"intValue\":\"-42\"}},"
    "{\"key\":\"i2\",\"value\":{\"intValue\":9007199254740993}},"
    "{\"key\":\"d\",\"value\":{\"doubleValue\":1.5}},"
    "{\"key\":\"dn\",\"value\":{\"doubleValue\":\"NaN\"}},"
    "{\"key\":\"dinf\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
    "{\"key\":\"by\",\"value\":{\"bytesValue\":\"AAECAw==\"}},"
    "{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":1},{\"stringValue\":"
    "\"x\"},{\"arrayValue\":{\"values\":[]}}]}}},"
    "{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"n\",\"value\":"
    "{\"kvlist_value\":{\"values\":[{\"key\":\"deep\",\"value\":{\"boolValue\":false}}]}}}]}}},"
    "{\"key\":\"empty\",\"value\":{}},{\"key\":\"nullv\",\"value\":null}],"
    "\"events\":[{\"time_unix_nano\":5,\"name\":\"ev\",\"attributes\":[],"
    "\"dropped_attributes_count\":1}],\"dropped_events_count\":3,"
    "\"links\":[{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":"
    "\"1112131415161718\",\"trace_state\":\"a=b\",\"flags\":1}]},"
    "{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"0000000000000001\","
    "\"kind\":\"SERVER\",\"startTimeUnixNano\":1.5e9,\"status\":{\"code\":1}}],"
    "\"scope\":{\"name\":\"lib\",\"version\":\"1.0\",\"future\":[]}}]}],\"later\":1}";

static void test_receiver_json_lenient(void **state)
{
    (void)state;
    char err[512];
    fl_span_batch_t *b;
    int rc = decode_str(lenient_json, &b, err, sizeof(err));
    if (rc != FL_OK)
        fail_msg("rc=%d %s", rc, err);
    assert_int_equal(b->n_spans, 2);
    assert_int_equal(b->rejected, 0);
    const fl_span_t *s = &b->spans[0];
    char h[40];
    hex(s->trace_id, 16, h);
    assert_string_equal(h, "5b8efff798038103d269b633813fc60c");
    hex(s->span_id, 8, h);
    assert_string_equal(h, "eee19b7ec3c1b174");
    assert_true(fl_is_zero(s->parent_span_id, 8));
    assert_str_eq(s->name, "op", "name");
    assert_int_equal(s->kind, FL_KIND_CLIENT);
    assert_true(s->start_ns == UINT64_MAX);
    assert_true(s->end_ns == UINT64_MAX);
    assert_int_equal(s->status_code, FL_STATUS_ERROR);
    assert_str_eq(s->status_message, "boom", "status message");
    assert_int_equal(s->flags, 257);
    assert_str_eq(s->resource->service_name, "svc", "service");
    assert_int_equal(s->resource->dropped_attrs, 2);
    assert_str_eq(s->resource->schema_url, "https://s/1", "schema");
    assert_str_eq(s->scope->name, "lib", "scope");
    assert_str_eq(s->scope->version, "1.0", "scope version");
    assert_int_equal(s->attrs.n, 12);
    assert_str_eq(attr(s, "s")->u.str, "a\"b\xc3\xa9\xf0\x9f\x98\x80\n", "escapes");
    assert_int_equal(attr(s, "b")->type, FL_VAL_BOOL);
    assert_int_equal(attr(s, "b")->u.b, 1);
    assert_int_equal(attr(s, "i")->u.i, -42);
    assert_int_equal(attr(s, "i2")->u.i, 9007199254740993LL);
    assert_true(attr(s, "d")->u.d == 1.5);
    assert_true(isnan(attr(s, "dn")->u.d));
    assert_true(isinf(attr(s, "dinf")->u.d) && attr(s, "dinf")->u.d < 0);
    const fl_value_t *by = attr(s, "by");
    assert_int_equal(by->type, FL_VAL_BYTES);
    assert_int_equal(by->u.str.len, 4);
    assert_memory_equal(by->u.str.ptr, "\x00\x01\x02\x03", 4);
    const fl_value_t *arr = attr(s, "arr");
    assert_int_equal(arr->type, FL_VAL_ARRAY);
    assert_int_equal(arr->u.arr.n, 3);
    assert_int_equal(arr->u.arr.items[0].u.i, 1);
    assert_str_eq(arr->u.arr.items[1].u.str, "x", "arr[1]");
    assert_int_equal(arr->u.arr.items[2].type, FL_VAL_ARRAY);
    assert_int_equal(arr->u.arr.items[2].u.arr.n, 0);
    const fl_value_t *kv = attr(s, "kv");
    assert_int_equal(kv->type, FL_VAL_KVLIST);
    assert_int_equal(kv->u.kv.n, 1);
    assert_int_equal(kv->u.kv.items[0].value.type, FL_VAL_KVLIST);
    assert_str_eq(kv->u.kv.items[0].value.u.kv.items[0].key, "deep", "deep key");
    assert_int_equal(kv->u.kv.items[0].value.u.kv.items[0].value.u.b, 0);
    assert_int_equal(attr(s, "empty")->type, FL_VAL_EMPTY);
    assert_int_equal(attr(s, "nullv")->type, FL_VAL_EMPTY);
    assert_int_equal(s->n_events, 1);
    assert_int_equal(s->events[0].time_ns, 5);
    assert_int_equal(s->events[0].dropped_attrs, 1);
    assert_int_equal(s->dropped_events, 3);
    assert_int_equal(s->n_links, 1);
    hex(s->links[0].trace_id, 16, h);
    assert_string_equal(h, "0102030405060708090a0b0c0d0e0f10");
    assert_str_eq(s->links[0].trace_state, "a=b", "link trace state");
    assert_int_equal(s->links[0].flags, 1);
    /* The scope came after the spans in the text; both spans share it and the resource. */
    assert_ptr_equal(b->spans[1].scope, s->scope);
    assert_ptr_equal(b->spans[1].resource, s->resource);
    assert_int_equal(b->spans[1].kind, FL_KIND_SERVER);
    assert_int_equal(b->spans[1].start_ns, 1500000000ULL);
    assert_int_equal(b->spans[1].status_code, FL_STATUS_OK);
    fl_span_batch_free(b);
}

static void test_receiver_json_empty(void **state)
{
    (void)state;
    char err[256];
    fl_span_batch_t *b;
    static const char *const ok[] = {"",
                                     "  \n",
                                     "{}",
                                     "{\"resourceSpans\":[]}",
                                     "{\"resourceSpans\":null}",
                                     "{\"resourceSpans\":[{\"scopeSpans\":[{}]}]}",
                                     "{\"resourceSpans\":[{\"instrumentationLibrarySpans\":[]}]}"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = decode_str(ok[i], &b, err, sizeof(err));
        if (rc != FL_OK)
            fail_msg("'%s': %s", ok[i], err);
        assert_int_equal(b->n_spans, 0);
        fl_span_batch_free(b);
    }
    /* A resource without service.name. */
    assert_int_equal(decode_str("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
                                "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":"
                                "\"0102030405060708\"}]}]}]}",
                                &b, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(b->n_spans, 1);
    assert_str_eq(b->spans[0].resource->service_name, "unknown_service", "default service");
    fl_span_batch_free(b);
}

static const char bad_ids_json[] =
    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\"},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f\",\"spanId\":\"0102030405060708\"},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"zz02030405060708\"},"
    "{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0102030405060708\"},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\"},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060709\","
    "\"parentSpanId\":\"01020304\"},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060709\","
    "\"links\":[{\"traceId\":\"01\",\"spanId\":\"0102030405060708\"}]},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0000000000000000\"},"
    "{\"spanId\":\"0102030405060708\",\"traceId\":\"A102030405060708090A0B0C0D0E0F10\","
    "\"parentSpanId\":\"\"}"
    "]}]}]}";

static void test_receiver_json_bad_ids(void **state)
{
    (void)state;
    char err[256];
    fl_span_batch_t *b;
    assert_int_equal(decode_str(bad_ids_json, &b, err, sizeof(err)), FL_OK);
    assert_int_equal(b->n_spans, 2);
    assert_int_equal(b->rejected, 7);
    assert_non_null(b->reject_msg);
    assert_string_equal(b->reject_msg, "resourceSpans[0].scopeSpans[0].spans[1].traceId: "
                                       "expected 32 hex digits, got 30");
    assert_int_equal(b->spans[1].trace_id[0], 0xa1);
    fl_span_batch_free(b);

    /* Each kind of problem, alone, with its message. */
    static const struct {
        const char *span;
        const char *msg;
    } one[] = {
        {"{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"zz02030405060708\"}",
         "spans[0].spanId: not a hex string"},
        {"{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0102030405060708\"}",
         "spans[0].traceId: all-zero trace id"},
        {"{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\"}", "spans[0].spanId: missing span id"},
        {"{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
         "\"parentSpanId\":\"01020304\"}",
         "spans[0].parentSpanId: expected 16 hex digits, got 8"},
        {"{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\","
         "\"links\":[{},{\"spanId\":\"01\"}]}",
         "spans[0].links[1].spanId: expected 16 hex digits, got 2"},
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        char json[1024];
        snprintf(json, sizeof(json), "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[%s]}]}]}",
                 one[i].span);
        assert_int_equal(decode_str(json, &b, err, sizeof(err)), FL_OK);
        assert_int_equal(b->n_spans, 0);
        assert_int_equal(b->rejected, 1);
        if (!strstr(b->reject_msg, one[i].msg))
            fail_msg("case %zu: '%s' lacks '%s'", i, b->reject_msg, one[i].msg);
        fl_span_batch_free(b);
    }
}

static void test_receiver_json_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int rc;
        const char *msg;
    } cases[] = {
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"x\",}]}]}]}", FL_ERR_DECODE,
         "resourceSpans[0].scopeSpans[0].spans[0]: invalid JSON at byte 55 (line 1, "
         "column 56): expected a string key"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{},{},{},{\"name\":5}]}]}]}",
         FL_ERR_DECODE,
         "resourceSpans[0].scopeSpans[0].spans[3].name: expected a string, got a "
         "number"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":12}]}]}]}", FL_ERR_DECODE,
         "spans[0].traceId: expected a hex string, got a number"},
        {"{\"resourceSpans\":{}}", FL_ERR_DECODE,
         "resourceSpans: expected an array, got an object"},
        {"[]", FL_ERR_DECODE, "the request must be a JSON object, got an array"},
        {"{\"resourceSpans\":[]} x", FL_ERR_DECODE, "unexpected data after the top-level object"},
        {"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"a\",\"value\":"
         "{\"stringValue\":\"unterminated}}]}}]}",
         FL_ERR_DECODE, "unterminated string"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"12x\"}]}]}]}",
         FL_ERR_DECODE, "spans[0].startTimeUnixNano: '12x' is not a number"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":-5}]}]}]}",
         FL_ERR_DECODE, "negative value -5"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":"
         "18446744073709551616}]}]}]}",
         FL_ERR_DECODE, "out of range"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"kind\":\"SPAN_KIND_BOGUS\"}]}]}]}",
         FL_ERR_DECODE, "spans[0].kind: unknown enum value \"SPAN_KIND_BOGUS\""},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"droppedLinksCount\":4294967296}]}]}]"
         "}",
         FL_ERR_DECODE, "droppedLinksCount: integer 4294967296 out of range"},
        {"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"b\",\"value\":"
         "{\"bytesValue\":\"*\"}}]}}]}",
         FL_ERR_DECODE,
         "resourceSpans[0].resource.attributes[0].value.bytesValue: not valid "
         "base64"},
        {"{\"resourceSpans\":[01]}", FL_ERR_DECODE,
         "resourceSpans[0]: expected a ResourceSpans object, got a number"},
        {"{\"x\":-}", FL_ERR_DECODE, "invalid JSON at byte 6 (line 1, column 7): invalid number"},
        {"{\"x\":01}", FL_ERR_DECODE, "expected ',' or '}' after object member"},
        {"{\"x\":1.}", FL_ERR_DECODE, "digit expected after '.'"},
        {"{\"a\":tru}", FL_ERR_DECODE, "invalid literal"},
        {"{\"a\":\"\\x\"}", FL_ERR_DECODE, "bad escape in string"},
        {"{\"a\":[1,]}", FL_ERR_DECODE, "trailing comma in array"},
        {"{\"a\":\"tab\there\"}", FL_ERR_DECODE, "control character in string"},
        {"{\"resourceSpans\":[", FL_ERR_DECODE, "unexpected end of input"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":\"a\","
         "\"value\":{\"intValue\":\"abc\"}}]}]}]}]}",
         FL_ERR_DECODE, "spans[0].attributes[0].value.intValue: 'abc' is not a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512];
        fl_span_batch_t *b;
        int rc = decode_str(cases[i].json, &b, err, sizeof(err));
        if (rc != cases[i].rc || !strstr(err, cases[i].msg))
            fail_msg("case %zu: rc=%d err='%s', want rc=%d containing '%s'", i, rc, err,
                     cases[i].rc, cases[i].msg);
        fl_span_batch_free(b);
    }
}

/* Nested arrayValue n deep around an intValue. */
static char *nested_json(int n)
{
    fl_buf_t b;
    fl_buf_init(&b, 0);
    fl_buf_puts(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"k\",\"value\":");
    for (int i = 0; i < n; i++)
        fl_buf_puts(&b, "{\"arrayValue\":{\"values\":[");
    fl_buf_puts(&b, "{\"intValue\":1}");
    for (int i = 0; i < n; i++)
        fl_buf_puts(&b, "]}}");
    fl_buf_puts(&b, "}]}}]}");
    return (char *)fl_buf_take(&b, NULL);
}

static void test_receiver_json_depth(void **state)
{
    (void)state;
    char err[512];
    fl_span_batch_t *b;
    char *ok = nested_json(20), *deep = nested_json(200);
    assert_int_equal(decode_str(ok, &b, err, sizeof(err)), FL_OK);
    fl_span_batch_free(b);
    assert_int_equal(decode_str(deep, &b, err, sizeof(err)), FL_ERR_TOO_DEEP);
    assert_non_null(strstr(err, "nesting deeper than 64 levels"));
    assert_non_null(strstr(err, "resourceSpans[0].resource.attributes[0].value.arrayValue"));
    fl_span_batch_free(b);
    /* Unknown fields are skipped under the same cap. */
    assert_int_equal(decode_str("{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
                                "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
                                &b, err, sizeof(err)),
                     FL_ERR_TOO_DEEP);
    fl_span_batch_free(b);
    free(ok);
    free(deep);
}

/* ---------------------------------------------------------------- protobuf */

static void put_varint(fl_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        fl_buf_putc(b, (int)(v | 0x80) & 0xff);
        v >>= 7;
    }
    fl_buf_putc(b, (int)v);
}

/* Wrap content as a length-delimited field of a new buffer (content is disposed). */
static void wrap(fl_buf_t *content, unsigned field)
{
    fl_buf_t o;
    fl_buf_init(&o, 0);
    put_varint(&o, (uint64_t)field << 3 | 2);
    put_varint(&o, content->len);
    fl_buf_append(&o, content->data, content->len);
    fl_buf_dispose(content);
    *content = o;
}

/* An ExportTraceServiceRequest with one span whose attribute nests arrayValue n deep. */
static void nested_pb(int n, fl_buf_t *out)
{
    fl_buf_t av, kv, span;
    fl_buf_init(&av, 0);
    fl_buf_append(&av, "\x18\x01", 2); /* AnyValue{int_value: 1} */
    for (int i = 0; i < n; i++) {
        wrap(&av, 1); /* ArrayValue.values */
        wrap(&av, 5); /* AnyValue.array_value */
    }
    fl_buf_init(&kv, 0);
    fl_buf_append(&kv, "\x0a\x01k", 3);
    wrap(&av, 2);
    fl_buf_append(&kv, av.data, av.len);
    fl_buf_dispose(&av);
    fl_buf_init(&span, 0);
    fl_buf_append(&span, "\x0a\x10", 2);
    fl_buf_append(&span, "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10", 16);
    fl_buf_append(&span, "\x12\x08\x01\x02\x03\x04\x05\x06\x07\x08", 10);
    wrap(&kv, 9);
    fl_buf_append(&span, kv.data, kv.len);
    fl_buf_dispose(&kv);
    wrap(&span, 2); /* ScopeSpans.spans */
    wrap(&span, 2); /* ResourceSpans.scope_spans */
    wrap(&span, 1); /* ExportTraceServiceRequest.resource_spans */
    *out = span;
}

static void test_receiver_prescan_depth(void **state)
{
    (void)state;
    char err[256];
    fl_buf_t ok, deep;
    fl_span_batch_t *b;
    /* Depth: request 1, ResourceSpans 2, ScopeSpans 3, Span 4, KeyValue 5, AnyValue 6, and
     * two more per array level. */
    nested_pb(29, &ok);   /* 64 levels */
    nested_pb(30, &deep); /* 66 levels */
    assert_int_equal(fl_otlp_prescan(ok.data, ok.len, 64, err, sizeof(err)), FL_OK);
    assert_int_equal(fl_otlp_prescan(deep.data, deep.len, 64, err, sizeof(err)), FL_ERR_TOO_DEEP);
    assert_non_null(strstr(err, "deeper than 64"));
    b = fl_span_batch_new(0);
    assert_int_equal(fl_otlp_decode_traces(ok.data, ok.len, FL_OTLP_PROTOBUF, b, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(b->n_spans, 1);
    const fl_value_t *v = &b->spans[0].attrs.items[0].value;
    for (int i = 0; i < 29; i++) {
        assert_int_equal(v->type, FL_VAL_ARRAY);
        v = &v->u.arr.items[0];
    }
    assert_int_equal(v->u.i, 1);
    fl_span_batch_free(b);
    b = fl_span_batch_new(0);
    assert_int_equal(
        fl_otlp_decode_traces(deep.data, deep.len, FL_OTLP_PROTOBUF, b, err, sizeof(err)),
        FL_ERR_TOO_DEEP);
    fl_span_batch_free(b);
    /* A very deep one (that protobuf-c alone would recurse through) is refused cheaply. */
    fl_buf_t huge;
    nested_pb(5000, &huge);
    assert_int_equal(fl_otlp_prescan(huge.data, huge.len, 64, err, sizeof(err)), FL_ERR_TOO_DEEP);
    /* Other caps. */
    assert_int_equal(fl_otlp_prescan(ok.data, ok.len, 10, err, sizeof(err)), FL_ERR_TOO_DEEP);
    assert_int_equal(fl_otlp_prescan(deep.data, deep.len, 100, err, sizeof(err)), FL_OK);
    /* Broken wire format. */
    assert_int_equal(fl_otlp_prescan((const uint8_t *)"\x0a\x05\x01", 3, 64, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_string_equal(err, "protobuf: length-delimited field runs past the end of its "
                             "message (field 1) at byte offset 0");
    assert_int_equal(fl_otlp_prescan((const uint8_t *)"\x08\x01\xff", 3, 64, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_string_equal(err, "protobuf: truncated field key at byte offset 2");
    assert_int_equal(fl_otlp_prescan((const uint8_t *)"\x0b", 1, 64, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_non_null(strstr(err, "groups are not supported"));
    assert_int_equal(fl_otlp_prescan(NULL, 0, 64, err, sizeof(err)), FL_OK);
    fl_buf_dispose(&ok);
    fl_buf_dispose(&deep);
    fl_buf_dispose(&huge);
}

typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;

static void set_bytes(ProtobufCBinaryData *d, const void *p, size_t n)
{
    d->data = (uint8_t *)p;
    d->len = n;
}

static void test_receiver_pb_partial(void **state)
{
    (void)state;
    static const uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const uint8_t sid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t zero[16] = {0};
    pb_span_t sp[7];
    pb_span_t *spp[7];
    Opentelemetry__Proto__Trace__V1__Span__Link link =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
    Opentelemetry__Proto__Trace__V1__Span__Link *linkp = &link;
    for (int i = 0; i < 7; i++) {
        opentelemetry__proto__trace__v1__span__init(&sp[i]);
        set_bytes(&sp[i].trace_id, tid, 16);
        set_bytes(&sp[i].span_id, sid, 8);
        sp[i].name = (char *)"op";
        spp[i] = &sp[i];
    }
    set_bytes(&sp[1].trace_id, tid, 15);
    set_bytes(&sp[2].span_id, zero, 8);
    set_bytes(&sp[3].parent_span_id, sid, 3);
    set_bytes(&link.trace_id, tid, 5);
    set_bytes(&link.span_id, sid, 8);
    sp[4].links = &linkp;
    sp[4].n_links = 1;
    set_bytes(&sp[5].trace_id, zero, 16);
    sp[6].kind = 9; /* unknown kinds are kept as sent */
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss =
        OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    ss.spans = spp;
    ss.n_spans = 7;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs =
        OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    rs.scope_spans = &ssp;
    rs.n_scope_spans = 1;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.resource_spans = &rsp;
    req.n_resource_spans = 1;
    size_t n = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&req.base, buf);
    fl_span_batch_t *b = decode_ok(buf, n, FL_OTLP_PROTOBUF);
    assert_int_equal(b->n_spans, 2);
    assert_int_equal(b->rejected, 5);
    assert_string_equal(b->reject_msg,
                        "resourceSpans[0].scopeSpans[0].spans[1].traceId: expected 16 bytes, "
                        "got 15");
    assert_int_equal(b->spans[1].kind, 9);
    assert_str_eq(b->spans[0].resource->service_name, "unknown_service", "default service");
    assert_str_eq(b->spans[0].scope->name, "", "absent scope");
    fl_span_batch_free(b);
    free(buf);
}

static void test_receiver_pb_errors(void **state)
{
    (void)state;
    char err[512];
    fl_span_batch_t *b = fl_span_batch_new(0);
    /* Span.name (field 5) sent as a varint. */
    static const uint8_t wrong_wt[] = {0x0a, 0x06, 0x12, 0x04, 0x12, 0x02, 0x28, 0x01};
    assert_int_equal(
        fl_otlp_decode_traces(wrong_wt, sizeof(wrong_wt), FL_OTLP_PROTOBUF, b, err, sizeof(err)),
        FL_ERR_DECODE);
    assert_string_equal(err, "protobuf: resourceSpans[0].scopeSpans[0].spans[0].name (field 5) at "
                             "byte offset 6: wire type 0 (varint), expected 2 (length-delimited)");
    /* A truncated fixture: the prescan reports the offset. */
    fl_buf_t body;
    load_plain("http-protobuf", "healthy", 0, &body);
    assert_int_equal(
        fl_otlp_decode_traces(body.data, body.len - 7, FL_OTLP_PROTOBUF, b, err, sizeof(err)),
        FL_ERR_DECODE);
    if (!strstr(err, "protobuf: length-delimited field runs past the end of its message (field "
                     "1) at byte offset "))
        fail_msg("%s", err);
    /* A JSON body sent as protobuf. */
    fl_buf_t js;
    load_plain("http-json", "healthy", 0, &js);
    assert_int_equal(fl_otlp_decode_traces(js.data, js.len, FL_OTLP_PROTOBUF, b, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_non_null(strstr(err, "protobuf: "));
    /* An empty body is an empty request. */
    assert_int_equal(fl_otlp_decode_traces(NULL, 0, FL_OTLP_PROTOBUF, b, err, sizeof(err)), FL_OK);
    assert_int_equal(b->n_spans, 0);
    fl_buf_dispose(&js);
    fl_buf_dispose(&body);
    fl_span_batch_free(b);
}

/* Run a decode under ever larger arena limits: every allocation failure must surface as
 * FL_ERR_NOMEM with nothing else going wrong (the arena is our injectable allocator). */
static void test_receiver_alloc_failures(void **state)
{
    (void)state;
    const char *transports[] = {"http-protobuf", "http-json"};
    for (int t = 0; t < 2; t++) {
        fl_buf_t body;
        load_plain(transports[t], "healthy", 0, &body);
        int format = t ? FL_OTLP_JSON : FL_OTLP_PROTOBUF;
        size_t limit = 1024, fails = 0;
        for (;;) {
            char err[256];
            fl_span_batch_t *b = fl_span_batch_new(4096);
            assert_non_null(b);
            fl_arena_set_limit(b->arena, limit);
            int rc = fl_otlp_decode_traces(body.data, body.len, format, b, err, sizeof(err));
            fl_span_batch_free(b);
            if (rc == FL_OK)
                break;
            assert_int_equal(rc, FL_ERR_NOMEM);
            fails++;
            limit += 4096;
        }
        assert_true(fails > 10);
        fl_buf_dispose(&body);
    }
}

/* ---------------------------------------------------------------- logs and metrics */

static void test_receiver_count_logs_metrics(void **state)
{
    (void)state;
    char path[512], err[256], line[8192];
    size_t want_logs = 0, want_points = 0, len, n;
    snprintf(path, sizeof(path), "%s/logs.expected.jsonl", FIX);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        want_logs += line[0] == '{';
    fclose(f);
    snprintf(path, sizeof(path), "%s/metrics.expected.json", FIX);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    assert_non_null(m);
    json_t *arr = json_object_get(m, "metrics"), *it;
    size_t i;
    json_array_foreach(arr, i, it) want_points += (size_t)jint(it, "data_point_count");
    json_decref(m);
    assert_true(want_logs > 0 && want_points > 0);

    const char *transports[] = {"http-protobuf", "http-json"};
    for (int t = 0; t < 2; t++) {
        int format = t ? FL_OTLP_JSON : FL_OTLP_PROTOBUF;
        snprintf(path, sizeof(path), "%s/%s/logs.body", FIX, transports[t]);
        uint8_t *body = read_file(path, &len);
        assert_non_null(body);
        assert_int_equal(
            fl_otlp_count_items(FL_OTLP_LOGS, body, len, format, 0, &n, err, sizeof(err)), FL_OK);
        assert_int_equal(n, want_logs);
        free(body);
        snprintf(path, sizeof(path), "%s/%s/metrics.body", FIX, transports[t]);
        body = read_file(path, &len);
        assert_non_null(body);
        if (fl_otlp_count_items(FL_OTLP_METRICS, body, len, format, 0, &n, err, sizeof(err)))
            fail_msg("%s: %s", path, err);
        assert_int_equal(n, want_points);
        free(body);
    }
    /* Traces count spans. */
    fl_buf_t tb;
    load_plain("http-json", "healthy", 0, &tb);
    assert_int_equal(
        fl_otlp_count_items(FL_OTLP_TRACES, tb.data, tb.len, FL_OTLP_JSON, 0, &n, err, sizeof(err)),
        FL_OK);
    assert_int_equal(n, 200);
    fl_buf_dispose(&tb);
    load_plain("http-protobuf", "healthy", 0, &tb);
    assert_int_equal(fl_otlp_count_items(FL_OTLP_TRACES, tb.data, tb.len, FL_OTLP_PROTOBUF, 0, &n,
                                         err, sizeof(err)),
                     FL_OK);
    assert_int_equal(n, 200);
    /* A traces body is not a logs request: protobuf field 1 has the wrong shape deeper down,
     * or decodes to no records; either way no crash and no log records. */
    int rc = fl_otlp_count_items(FL_OTLP_LOGS, tb.data, tb.len, FL_OTLP_PROTOBUF, 0, &n, err,
                                 sizeof(err));
    assert_true(rc == FL_OK || rc == FL_ERR_DECODE);
    fl_buf_dispose(&tb);
    /* Broken JSON names where. */
    const char *bad = "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{},1]}]}]}";
    assert_int_equal(fl_otlp_count_items(FL_OTLP_LOGS, (const uint8_t *)bad, strlen(bad),
                                         FL_OTLP_JSON, 0, &n, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_string_equal(err, "resourceLogs[0].scopeLogs[0].logRecords[1]: expected an object, "
                             "got a number");
    const char *mj = "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"a\","
                     "\"sum\":{\"dataPoints\":[{},{}]}},{\"gauge\":{\"data_points\":[{}]}},"
                     "{\"exponentialHistogram\":{\"dataPoints\":[{}]}},{\"summary\":null}]}]}]}";
    assert_int_equal(fl_otlp_count_items(FL_OTLP_METRICS, (const uint8_t *)mj, strlen(mj),
                                         FL_OTLP_JSON, 0, &n, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(n, 4);
}

/* ---------------------------------------------------------------- compression */

static void gzip_compress(const uint8_t *in, size_t len, int window, fl_buf_t *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY), Z_OK);
    fl_buf_init(out, 0);
    fl_buf_reserve(out, deflateBound(&zs, len));
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out->data;
    zs.avail_out = (uInt)(out->cap - 1);
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out->len = zs.total_out;
    deflateEnd(&zs);
}

static uint32_t t_crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_chunk(fl_buf_t *b, int type, const uint8_t *raw, size_t rawlen, const uint8_t *data,
                      size_t dlen, int bad_crc)
{
    uint32_t crc = t_crc32c(raw, rawlen);
    crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8u + (bad_crc ? 1 : 0);
    size_t clen = dlen + 4;
    uint8_t h[8] = {(uint8_t)type, (uint8_t)clen,       (uint8_t)(clen >> 8), (uint8_t)(clen >> 16),
                    (uint8_t)crc,  (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    fl_buf_append(b, h, 8);
    fl_buf_append(b, data, dlen);
}

static void snappy_framed_compress(const uint8_t *in, size_t len, fl_buf_t *out, int bad_crc)
{
    fl_buf_init(out, 0);
    fl_buf_append(out, "\xff\x06\x00\x00sNaPpY", 10);
    for (size_t off = 0; off < len; off += 65536) {
        size_t n = len - off < 65536 ? len - off : 65536;
        size_t cl = snappy_max_compressed_length(n);
        char *tmp = malloc(cl);
        assert_int_equal(snappy_compress((const char *)in + off, n, tmp, &cl), SNAPPY_OK);
        /* Alternate compressed and stored chunks, with padding between. */
        if ((off / 65536) % 2 == 0)
            put_chunk(out, 0x00, in + off, n, (uint8_t *)tmp, cl, bad_crc);
        else
            put_chunk(out, 0x01, in + off, n, in + off, n, bad_crc);
        fl_buf_append(out, "\xfe\x02\x00\x00\x00\x00", 6);
        free(tmp);
    }
}

static void test_receiver_decompress(void **state)
{
    (void)state;
    char err[256];
    fl_buf_t plain, z, out;
    load_plain("http-protobuf", "healthy", 0, &plain);

    struct {
        const char *enc;
        int window;
    } zl[] = {{"gzip", 16 + 15}, {"GZIP", 16 + 15}, {"x-gzip", 16 + 15},
              {"deflate", 15},   {"deflate", -15},  {"zlib", 15}};
    for (size_t i = 0; i < sizeof(zl) / sizeof(zl[0]); i++) {
        gzip_compress(plain.data, plain.len, zl[i].window, &z);
        fl_buf_init(&out, 0);
        if (fl_decompress(zl[i].enc, z.data, z.len, 1u << 20, &out, err, sizeof(err)) != FL_OK)
            fail_msg("%s/%d: %s", zl[i].enc, zl[i].window, err);
        assert_int_equal(out.len, plain.len);
        assert_memory_equal(out.data, plain.data, plain.len);
        fl_buf_dispose(&out);
        fl_buf_dispose(&z);
    }
    /* Two gzip members back to back. */
    gzip_compress(plain.data, 1000, 16 + 15, &z);
    fl_buf_t z2;
    gzip_compress(plain.data + 1000, plain.len - 1000, 16 + 15, &z2);
    fl_buf_append(&z, z2.data, z2.len);
    fl_buf_init(&out, 0);
    assert_int_equal(fl_decompress("gzip", z.data, z.len, 1u << 20, &out, err, sizeof(err)), FL_OK);
    assert_int_equal(out.len, plain.len);
    assert_memory_equal(out.data, plain.data, plain.len);
    fl_buf_dispose(&out);
    fl_buf_dispose(&z2);
    /* Truncated and corrupt gzip. */
    fl_buf_init(&out, 0);
    assert_int_equal(fl_decompress("gzip", z.data, z.len / 2, 1u << 20, &out, err, sizeof(err)),
                     FL_ERR_ENCODING);
    assert_string_equal(err, "gzip: unexpected end of compressed data");
    fl_buf_reset(&out);
    z.data[z.len / 2] ^= 0x55;
    z.data[z.len / 2 + 1] ^= 0x55;
    int rc = fl_decompress("gzip", z.data, z.len, 1u << 20, &out, err, sizeof(err));
    assert_int_equal(rc, FL_ERR_ENCODING);
    assert_non_null(strstr(err, "gzip: "));
    fl_buf_reset(&out);
    assert_int_equal(fl_decompress("gzip", plain.data, plain.len, 1u << 20, &out, err, sizeof(err)),
                     FL_ERR_ENCODING);
    assert_string_equal(err, "gzip: invalid header");
    fl_buf_dispose(&z);

    /* zstd */
    size_t zb = ZSTD_compressBound(plain.len);
    uint8_t *zs = malloc(zb);
    size_t zn = ZSTD_compress(zs, zb, plain.data, plain.len, 3);
    assert_false(ZSTD_isError(zn));
    fl_buf_reset(&out);
    assert_int_equal(fl_decompress("zstd", zs, zn, 1u << 20, &out, err, sizeof(err)), FL_OK);
    assert_int_equal(out.len, plain.len);
    assert_memory_equal(out.data, plain.data, plain.len);
    fl_buf_reset(&out);
    assert_int_equal(fl_decompress("zstd", zs, zn - 3, 1u << 20, &out, err, sizeof(err)),
                     FL_ERR_ENCODING);
    assert_non_null(strstr(err, "zstd: "));
    fl_buf_reset(&out);
    assert_int_equal(fl_decompress("zstd", plain.data, 100, 1u << 20, &out, err, sizeof(err)),
                     FL_ERR_ENCODING);
    free(zs);

    /* snappy block, auto-detected framed, and x-snappy-framed */
    size_t sl = snappy_max_compressed_length(plain.len);
    char *sb = malloc(sl);
    assert_int_equal(snappy_compress((const char *)plain.data, plain.len, sb, &sl), SNAPPY_OK);
    fl_buf_reset(&out);
    assert_int_equal(fl_decompress("snappy", (uint8_t *)sb, sl, 1u << 20, &out, err, sizeof(err)),
                     FL_OK);
    assert_memory_equal(out.data, plain.data, plain.len);
    fl_buf_reset(&out);
    assert_int_equal(
        fl_decompress("snappy", (uint8_t *)sb, sl / 2, 1u << 20, &out, err, sizeof(err)),
        FL_ERR_ENCODING);
    free(sb);
    fl_buf_t fr;
    snappy_framed_compress(plain.data, plain.len, &fr, 0);
    const char *framed_names[] = {"snappy", "x-snappy-framed"};
    for (int i = 0; i < 2; i++) {
        fl_buf_reset(&out);
        if (fl_decompress(framed_names[i], fr.data, fr.len, 1u << 20, &out, err, sizeof(err)))
            fail_msg("%s: %s", framed_names[i], err);
        assert_int_equal(out.len, plain.len);
        assert_memory_equal(out.data, plain.data, plain.len);
    }
    fl_buf_dispose(&fr);
    snappy_framed_compress(plain.data, plain.len, &fr, 1);
    fl_buf_reset(&out);
    assert_int_equal(
        fl_decompress("x-snappy-framed", fr.data, fr.len, 1u << 20, &out, err, sizeof(err)),
        FL_ERR_ENCODING);
    assert_string_equal(err, "snappy (framed): checksum mismatch");
    fl_buf_dispose(&fr);

    /* identity, unknown, limits */
    fl_buf_reset(&out);
    assert_int_equal(
        fl_decompress("identity", plain.data, plain.len, plain.len, &out, err, sizeof(err)), FL_OK);
    assert_int_equal(out.len, plain.len);
    fl_buf_reset(&out);
    assert_int_equal(
        fl_decompress("", plain.data, plain.len, plain.len - 1, &out, err, sizeof(err)),
        FL_ERR_TOO_LARGE);
    assert_int_equal(fl_decompress("br", plain.data, plain.len, 1u << 20, &out, err, sizeof(err)),
                     FL_ERR_ENCODING);
    assert_string_equal(err, "unsupported Content-Encoding: br");
    assert_true(fl_decompress_supported(" Gzip "));
    assert_false(fl_decompress_supported("lz4"));
    fl_buf_dispose(&out);
    fl_buf_dispose(&plain);
}

/* Bombs: a small input that expands past the limit stops at the limit. */
static void test_receiver_decompress_bombs(void **state)
{
    (void)state;
    char err[256];
    const size_t big = 256u << 20, limit = 1u << 20;
    uint8_t *zeros = calloc(1, 1u << 20);
    fl_buf_t out;

    /* gzip of 256 MiB of zeros, compressed in a stream (~250 KiB). */
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    fl_buf_t gz;
    fl_buf_init(&gz, 0);
    fl_buf_reserve(&gz, 1u << 20);
    zs.next_out = gz.data;
    zs.avail_out = (uInt)(gz.cap - 1);
    for (size_t done = 0; done < big; done += 1u << 20) {
        zs.next_in = zeros;
        zs.avail_in = 1u << 20;
        assert_int_equal(deflate(&zs, done + (1u << 20) >= big ? Z_FINISH : Z_NO_FLUSH) >= 0, 1);
    }
    gz.len = zs.total_out;
    deflateEnd(&zs);
    assert_true(gz.len < (1u << 20));
    fl_buf_init(&out, 0);
    clock_t t0 = clock();
    assert_int_equal(fl_decompress("gzip", gz.data, gz.len, limit, &out, err, sizeof(err)),
                     FL_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "larger than the 1048576-byte limit"));
    /* Never inflated (or allocated) much past the limit. */
    assert_true(out.len <= limit + 1);
    assert_true(out.cap <= 2 * limit + 2);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
    fl_buf_dispose(&out);
    fl_buf_dispose(&gz);

    /* zstd */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    fl_buf_t zb;
    fl_buf_init(&zb, 0);
    fl_buf_reserve(&zb, 1u << 20);
    ZSTD_outBuffer ob = {zb.data, zb.cap - 1, 0};
    for (size_t done = 0; done < big; done += 1u << 20) {
        ZSTD_inBuffer ib = {zeros, 1u << 20, 0};
        while (ib.pos < ib.size)
            assert_false(ZSTD_isError(ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_continue)));
    }
    ZSTD_inBuffer empty = {NULL, 0, 0};
    while (ZSTD_compressStream2(cc, &ob, &empty, ZSTD_e_end) != 0)
        ;
    zb.len = ob.pos;
    ZSTD_freeCCtx(cc);
    fl_buf_init(&out, 0);
    assert_int_equal(fl_decompress("zstd", zb.data, zb.len, limit, &out, err, sizeof(err)),
                     FL_ERR_TOO_LARGE);
    assert_true(out.len <= limit + 1);
    fl_buf_dispose(&out);
    fl_buf_dispose(&zb);

    /* snappy block whose header claims 1 GiB: refused before allocating. */
    static const uint8_t claim[] = {0x80, 0x80, 0x80, 0x80, 0x04, 0x00};
    fl_buf_init(&out, 0);
    assert_int_equal(fl_decompress("snappy", claim, sizeof(claim), limit, &out, err, sizeof(err)),
                     FL_ERR_TOO_LARGE);
    assert_int_equal(out.cap, 0);
    fl_buf_dispose(&out);
    free(zeros);
}

/* ---------------------------------------------------------------- response encodings */

static void test_receiver_encode_responses(void **state)
{
    (void)state;
    fl_buf_t out;
    fl_buf_init(&out, 0);
    /* Full success: empty protobuf, "{}" JSON. */
    assert_int_equal(fl_otlp_encode_trace_response(FL_OTLP_PROTOBUF, 0, NULL, &out), FL_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(fl_otlp_encode_trace_response(FL_OTLP_JSON, 0, NULL, &out), FL_OK);
    assert_string_equal((char *)out.data, "{}");
    fl_buf_reset(&out);

    /* Partial success, protobuf. */
    assert_int_equal(fl_otlp_encode_trace_response(FL_OTLP_PROTOBUF, 3, "bad \"ids\"", &out),
                     FL_OK);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *tr =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, out.len, out.data);
    assert_non_null(tr);
    assert_non_null(tr->partial_success);
    assert_int_equal(tr->partial_success->rejected_spans, 3);
    assert_string_equal(tr->partial_success->error_message, "bad \"ids\"");
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr,
                                                                                             NULL);
    fl_buf_reset(&out);

    /* Partial success, JSON (int64 as a string). */
    assert_int_equal(fl_otlp_encode_trace_response(FL_OTLP_JSON, 3, "bad \"ids\"", &out), FL_OK);
    assert_string_equal((char *)out.data,
                        "{\"partialSuccess\":{\"rejectedSpans\":\"3\",\"errorMessage\":\"bad "
                        "\\\"ids\\\"\"}}");
    fl_buf_reset(&out);
    /* A warning: no rejection, a message. */
    assert_int_equal(fl_otlp_encode_trace_response(FL_OTLP_JSON, 0, "note", &out), FL_OK);
    assert_string_equal((char *)out.data, "{\"partialSuccess\":{\"errorMessage\":\"note\"}}");
    fl_buf_reset(&out);

    /* Logs and metrics responses. */
    assert_int_equal(
        fl_otlp_encode_export_response(FL_OTLP_LOGS, FL_OTLP_PROTOBUF, 7, "logs", &out), FL_OK);
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse *lr =
        opentelemetry__proto__collector__logs__v1__export_logs_service_response__unpack(
            NULL, out.len, out.data);
    assert_non_null(lr);
    assert_int_equal(lr->partial_success->rejected_log_records, 7);
    opentelemetry__proto__collector__logs__v1__export_logs_service_response__free_unpacked(lr,
                                                                                           NULL);
    fl_buf_reset(&out);
    assert_int_equal(
        fl_otlp_encode_export_response(FL_OTLP_METRICS, FL_OTLP_PROTOBUF, 11, "m", &out), FL_OK);
    Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse *mr =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__unpack(
            NULL, out.len, out.data);
    assert_non_null(mr);
    assert_int_equal(mr->partial_success->rejected_data_points, 11);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__free_unpacked(
        mr, NULL);
    fl_buf_reset(&out);
    assert_int_equal(fl_otlp_encode_export_response(FL_OTLP_METRICS, FL_OTLP_JSON, 11, "m", &out),
                     FL_OK);
    assert_string_equal((char *)out.data,
                        "{\"partialSuccess\":{\"rejectedDataPoints\":\"11\",\"errorMessage\":"
                        "\"m\"}}");
    fl_buf_reset(&out);

    /* google.rpc.Status with RetryInfo, protobuf. */
    assert_int_equal(fl_otlp_encode_status(FL_OTLP_PROTOBUF, 14, "busy", 2, &out), FL_OK);
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, out.len, out.data);
    assert_non_null(st);
    assert_int_equal(st->code, 14);
    assert_string_equal(st->message, "busy");
    assert_int_equal(st->n_details, 1);
    assert_string_equal(st->details[0]->type_url, "type.googleapis.com/google.rpc.RetryInfo");
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(NULL, st->details[0]->value.len,
                                                                 st->details[0]->value.data);
    assert_non_null(ri);
    assert_non_null(ri->retry_delay);
    assert_int_equal(ri->retry_delay->seconds, 2);
    google__rpc__retry_info__free_unpacked(ri, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    fl_buf_reset(&out);
    assert_int_equal(fl_otlp_encode_status(FL_OTLP_PROTOBUF, 3, "bad", 0, &out), FL_OK);
    st = google__rpc__status__unpack(NULL, out.len, out.data);
    assert_non_null(st);
    assert_int_equal(st->code, 3);
    assert_int_equal(st->n_details, 0);
    google__rpc__status__free_unpacked(st, NULL);
    fl_buf_reset(&out);

    /* ... and JSON. */
    assert_int_equal(fl_otlp_encode_status(FL_OTLP_JSON, 3, "gzip: invalid header", 0, &out),
                     FL_OK);
    assert_string_equal((char *)out.data, "{\"code\":3,\"message\":\"gzip: invalid header\"}");
    fl_buf_reset(&out);
    assert_int_equal(fl_otlp_encode_status(FL_OTLP_JSON, 14, "busy", 1, &out), FL_OK);
    json_error_t je;
    json_t *j = json_loads((char *)out.data, 0, &je);
    assert_non_null(j);
    assert_int_equal(jint(j, "code"), 14);
    json_t *d0 = json_array_get(json_object_get(j, "details"), 0);
    assert_string_equal(jstr(d0, "@type"), "type.googleapis.com/google.rpc.RetryInfo");
    assert_string_equal(jstr(d0, "retryDelay"), "1s");
    json_decref(j);
    fl_buf_dispose(&out);
}

/* ---------------------------------------------------------------- throughput (report only) */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_receiver_throughput(void **state)
{
    (void)state;
    const char *transports[] = {"http-protobuf", "http-json"};
    for (int t = 0; t < 2; t++) {
        fl_buf_t body;
        load_plain(transports[t], "big_batch", t, &body);
        int format = t ? FL_OTLP_JSON : FL_OTLP_PROTOBUF;
        size_t spans = 0;
        double t0 = now_s(), el;
        int iters = 0;
        do {
            fl_span_batch_t *b = decode_ok(body.data, body.len, format);
            spans += b->n_spans;
            fl_span_batch_free(b);
            iters++;
            el = now_s() - t0;
        } while (el < 0.5 && iters < 50);
        print_message("decode %-13s %8.0f spans/s (%.1f MB/s, 1 thread)\n", transports[t],
                      (double)spans / el, (double)body.len * iters / el / 1e6);
        fl_buf_dispose(&body);
    }
}

int main(void)
{
    size_t nfx = sizeof(fixture_cases) / sizeof(fixture_cases[0]);
    struct CMUnitTest *tests = calloc(nfx + 32, sizeof(*tests));
    size_t n = 0;
    for (size_t i = 0; i < nfx; i++) {
        char *name = malloc(96);
        snprintf(name, 96, "test_receiver_fixture(%s/%s%s)", fixture_cases[i].transport,
                 fixture_cases[i].scenario, fixture_cases[i].gz ? ".gz" : "");
        struct CMUnitTest t =
            cmocka_unit_test_prestate(test_receiver_fixture, (void *)&fixture_cases[i]);
        t.name = name;
        tests[n++] = t;
    }
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_receiver_pb_json_equal),
        cmocka_unit_test(test_receiver_edge_numbers),
        cmocka_unit_test(test_receiver_json_lenient),
        cmocka_unit_test(test_receiver_json_empty),
        cmocka_unit_test(test_receiver_json_bad_ids),
        cmocka_unit_test(test_receiver_json_errors),
        cmocka_unit_test(test_receiver_json_depth),
        cmocka_unit_test(test_receiver_prescan_depth),
        cmocka_unit_test(test_receiver_pb_partial),
        cmocka_unit_test(test_receiver_pb_errors),
        cmocka_unit_test(test_receiver_alloc_failures),
        cmocka_unit_test(test_receiver_count_logs_metrics),
        cmocka_unit_test(test_receiver_decompress),
        cmocka_unit_test(test_receiver_decompress_bombs),
        cmocka_unit_test(test_receiver_encode_responses),
        cmocka_unit_test(test_receiver_throughput),
    };
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
        tests[n++] = rest[i];
    int rc = _cmocka_run_group_tests("receiver", tests, n, NULL, NULL);
    for (size_t i = 0; i < nfx; i++)
        free((void *)tests[i].name);
    free(tests);
    return rc;
}
