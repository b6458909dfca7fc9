/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fl_replaylib (tools/replay): headers.json reading and --shift-time on every
 * captured trace fixture (protobuf, JSON, gzip, gRPC framing) plus hand-made edge cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "replay.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX FL_TEST_DATA_DIR "/fixtures"
#define DAY_NS 86400000000000ull

static void load(const char *path, fl_buf_t *out)
{
    char err[256];

    fl_buf_init(out, 0);
    if (fl_replay_read_file(path, (size_t)1 << 30, out, err, sizeof(err)) != FL_OK)
        fail_msg("%s", err);
}

static void load_meta(const char *path, fl_replay_meta_t *m)
{
    char err[256];

    if (fl_replay_meta_load(path, m, err, sizeof(err)) != FL_OK)
        fail_msg("%s", err);
}

/* ---------------------------------------------------------------- headers.json */

static void test_replay_meta_fixture(void **state)
{
    (void)state;
    fl_replay_meta_t m;

    load_meta(FIX "/http-protobuf/healthy.headers.json", &m);
    assert_string_equal(m.method, "POST");
    assert_string_equal(m.path, "/v1/traces");
    assert_string_equal(m.content_type, "application/x-protobuf");
    assert_string_equal(m.encoding, "");
    assert_int_equal(m.grpc, 0);
    assert_int_equal(m.format, FL_REPLAY_PROTOBUF);
    assert_int_equal(m.signal, FL_REPLAY_TRACES);
    for (size_t i = 0; i < m.n_headers; i++)
        assert_false(fl_replay_header_is_hop(m.headers[i].name));
    assert_int_equal(m.n_headers, 2); /* content-type, user-agent */
    fl_replay_meta_dispose(&m);

    load_meta(FIX "/http-json/healthy.gz.headers.json", &m);
    assert_int_equal(m.format, FL_REPLAY_JSON);
    assert_string_equal(m.encoding, "gzip");
    fl_replay_meta_dispose(&m);

    load_meta(FIX "/grpc/healthy.gz.headers.json", &m);
    assert_int_equal(m.grpc, 1);
    assert_int_equal(m.format, FL_REPLAY_PROTOBUF);
    assert_string_equal(m.encoding, "gzip");
    assert_string_equal(m.path, "/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    for (size_t i = 0; i < m.n_headers; i++) {
        assert_true(m.headers[i].name[0] != ':');
        assert_true(strcmp(m.headers[i].name, "te") != 0);
    }
    fl_replay_meta_dispose(&m);

    load_meta(FIX "/http-json/logs.headers.json", &m);
    assert_int_equal(m.signal, FL_REPLAY_LOGS);
    fl_replay_meta_dispose(&m);
}

static void test_replay_meta_shapes(void **state)
{
    (void)state;
    static const char pairs[] =
        "{\"method\":\"PUT\",\"path\":\"/v1/metrics\",\"protocol\":\"http/1.1\","
        "\"headers\":[[\"Content-Type\",\"application/json\"],[\"Host\",\"x\"],"
        "[\"Content-Length\",\"12\"],[\"X-Num\",7],[\"Content-Encoding\",\"deflate\"]]}";
    static const char objs[] = "{\"path\":\"/v1/traces\",\"headers\":[{\"name\":\"content-type\","
                               "\"value\":\"application/grpc\"},{\"name\":\"grpc-encoding\","
                               "\"value\":\"gzip\"}]}";
    fl_replay_meta_t m;
    char err[256];

    assert_int_equal(fl_replay_meta_parse(pairs, sizeof(pairs) - 1, &m, err, sizeof(err)), FL_OK);
    assert_string_equal(m.method, "PUT");
    assert_int_equal(m.signal, FL_REPLAY_METRICS);
    assert_int_equal(m.format, FL_REPLAY_JSON);
    assert_string_equal(m.encoding, "deflate");
    assert_int_equal(m.n_headers, 3);
    assert_string_equal(m.headers[0].name, "content-type"); /* names are lowercased */
    assert_string_equal(m.headers[1].name, "x-num");
    assert_string_equal(m.headers[1].value, "7");
    fl_replay_meta_dispose(&m);

    assert_int_equal(fl_replay_meta_parse(objs, sizeof(objs) - 1, &m, err, sizeof(err)), FL_OK);
    assert_int_equal(m.grpc, 1);
    assert_string_equal(m.method, "POST");
    assert_string_equal(m.encoding, "gzip");
    fl_replay_meta_dispose(&m);

    assert_int_equal(fl_replay_meta_parse("{\"method\":\"POST\"}", 17, &m, err, sizeof(err)),
                     FL_ERR_DECODE);
    assert_non_null(strstr(err, "path"));
    assert_int_equal(fl_replay_meta_parse("[1]", 3, &m, err, sizeof(err)), FL_ERR_DECODE);
    assert_int_equal(
        fl_replay_meta_parse("{\"path\":\"/\",\"headers\":5}", 24, &m, err, sizeof(err)),
        FL_ERR_DECODE);
    assert_int_equal(fl_replay_meta_parse("{oops", 5, &m, err, sizeof(err)), FL_ERR_DECODE);
    assert_int_equal(fl_replay_meta_load("/nonexistent/x.headers.json", &m, err, sizeof(err)),
                     FL_ERR_IO);
    assert_true(fl_replay_header_is_hop("Transfer-Encoding"));
    assert_true(fl_replay_header_is_hop(":authority"));
    assert_false(fl_replay_header_is_hop("content-encoding"));
}

/* ---------------------------------------------------------------- fixtures */

typedef struct expected {
    size_t n_spans;
    uint64_t max_end;
    json_t *by_span; /* span_id -> [start, end] */
} expected_t;

static void load_expected(const char *scenario, expected_t *e)
{
    char path[512], line[8192];
    FILE *f;

    snprintf(path, sizeof(path), FIX "/%s.expected.jsonl", scenario);
    f = fopen(path, "r");
    assert_non_null(f);
    memset(e, 0, sizeof(*e));
    e->by_span = json_object();
    while (fgets(line, sizeof(line), f)) {
        json_t *j = json_loads(line, 0, NULL);
        uint64_t start, end;
        assert_non_null(j);
        start = strtoull(json_string_value(json_object_get(j, "start_time_unix_nano")), NULL, 10);
        end = strtoull(json_string_value(json_object_get(j, "end_time_unix_nano")), NULL, 10);
        if (end > e->max_end)
            e->max_end = end;
        json_object_set_new(e->by_span, json_string_value(json_object_get(j, "span_id")),
                            json_pack("[II]", (json_int_t)start, (json_int_t)end));
        e->n_spans++;
        json_decref(j);
    }
    fclose(f);
}

/* Every span of a decoded OTLP/JSON body: its times must be the expected ones + delta. */
static void check_json_times(const fl_buf_t *plain, const expected_t *e, int64_t delta)
{
    json_error_t jerr;
    /* edge_numbers carries -2^63 rounded by JavaScript, past int64: read numbers as reals. */
    json_t *root =
        json_loadb((const char *)plain->data, plain->len, JSON_DECODE_INT_AS_REAL, &jerr);
    json_t *rs, *ss, *sp;
    size_t i, k, l, seen = 0;

    if (!root)
        fail_msg("shifted JSON does not parse: %s at byte %d", jerr.text, jerr.position);
    json_array_foreach(json_object_get(root, "resourceSpans"), i, rs)
    {
        json_array_foreach(json_object_get(rs, "scopeSpans"), k, ss)
        {
            json_array_foreach(json_object_get(ss, "spans"), l, sp)
            {
                json_t *exp =
                    json_object_get(e->by_span, json_string_value(json_object_get(sp, "spanId")));
                uint64_t st =
                    strtoull(json_string_value(json_object_get(sp, "startTimeUnixNano")), NULL, 10);
                uint64_t en =
                    strtoull(json_string_value(json_object_get(sp, "endTimeUnixNano")), NULL, 10);
                assert_non_null(exp);
                assert_true(st ==
                            (uint64_t)json_integer_value(json_array_get(exp, 0)) + (uint64_t)delta);
                assert_true(en ==
                            (uint64_t)json_integer_value(json_array_get(exp, 1)) + (uint64_t)delta);
                seen++;
            }
        }
    }
    assert_int_equal(seen, e->n_spans);
    json_decref(root);
}

/* The message bytes of a body: inflated and/or with the gRPC prefix removed. */
static void plain_bytes(const fl_replay_meta_t *m, const fl_buf_t *body, fl_buf_t *out)
{
    const uint8_t *p = body->data;
    size_t len = body->len;
    char err[256];
    int kind;

    fl_buf_init(out, 0);
    if (m->grpc) {
        assert_true(len >= 5);
        assert_int_equal(((size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4]),
                         len - 5);
        assert_int_equal(p[0], *m->encoding ? 1 : 0);
        p += 5;
        len -= 5;
    }
    if (*m->encoding)
        assert_int_equal(fl_replay_inflate(p, len, (size_t)1 << 30, out, &kind, err, sizeof(err)),
                         FL_OK);
    else
        assert_int_equal(fl_buf_append(out, p, len), FL_OK);
}

static void check_fixture(const char *transport, const char *scenario, const char *variant,
                          size_t *n_times_out)
{
    char bpath[512], hpath[512], err[256];
    fl_replay_meta_t m;
    fl_buf_t body, shifted, back, p_orig, p_shift;
    fl_replay_info_t info = {0}, info2 = {0}, info3 = {0};
    expected_t e;
    uint64_t target;
    int64_t delta;

    snprintf(bpath, sizeof(bpath), FIX "/%s/%s%s.body", transport, scenario, variant);
    snprintf(hpath, sizeof(hpath), FIX "/%s/%s%s.headers.json", transport, scenario, variant);
    load_meta(hpath, &m);
    load(bpath, &body);
    load_expected(scenario, &e);

    assert_int_equal(fl_replay_scan(&m, body.data, body.len, &info, err, sizeof(err)), FL_OK);
    assert_int_equal(info.n_spans, e.n_spans);
    assert_true(info.max_end_ns == e.max_end);
    assert_true(fl_replay_info_newest(&info) == e.max_end);
    *n_times_out = info.n_times;

    /* Move the newest end to a day and a bit later: "now" for a replay tomorrow. */
    target = e.max_end + DAY_NS + 12345;
    delta = (int64_t)(target - e.max_end);
    fl_buf_init(&shifted, 0);
    assert_int_equal(
        fl_replay_shift(&m, body.data, body.len, delta, &shifted, &info2, err, sizeof(err)), FL_OK);
    assert_true(info2.max_end_ns == target);
    assert_int_equal(info2.n_spans, e.n_spans);
    assert_int_equal(info2.n_times, info.n_times);
    memset(&info2, 0, sizeof(info2));
    assert_int_equal(fl_replay_scan(&m, shifted.data, shifted.len, &info2, err, sizeof(err)),
                     FL_OK);
    assert_true(fl_replay_info_newest(&info2) == target);

    /* Every other byte is kept: the plain messages have the same length, differ, and shifting
     * back restores the original exactly. */
    plain_bytes(&m, &body, &p_orig);
    plain_bytes(&m, &shifted, &p_shift);
    assert_int_equal(p_orig.len, p_shift.len);
    assert_true(memcmp(p_orig.data, p_shift.data, p_orig.len) != 0);
    fl_buf_init(&back, 0);
    assert_int_equal(
        fl_replay_shift(&m, shifted.data, shifted.len, -delta, &back, &info3, err, sizeof(err)),
        FL_OK);
    fl_buf_dispose(&p_shift);
    plain_bytes(&m, &back, &p_shift);
    assert_int_equal(p_orig.len, p_shift.len);
    assert_memory_equal(p_orig.data, p_shift.data, p_orig.len);
    if (!*m.encoding)
        assert_memory_equal(back.data, body.data, body.len);
    if (m.format == FL_REPLAY_PROTOBUF) {
        /* Differences sit only inside 8-byte timestamp fields: at most 8 bytes each. */
        size_t diff = 0;
        fl_buf_dispose(&p_shift);
        plain_bytes(&m, &shifted, &p_shift);
        for (size_t i = 0; i < p_orig.len; i++)
            diff += p_orig.data[i] != p_shift.data[i];
        assert_true(diff > 0 && diff <= 8 * info.n_times);
    } else {
        fl_buf_dispose(&p_shift);
        plain_bytes(&m, &shifted, &p_shift);
        check_json_times(&p_shift, &e, delta);
        check_json_times(&p_orig, &e, 0);
    }

    json_decref(e.by_span);
    fl_buf_dispose(&p_orig);
    fl_buf_dispose(&p_shift);
    fl_buf_dispose(&back);
    fl_buf_dispose(&shifted);
    fl_buf_dispose(&body);
    fl_replay_meta_dispose(&m);
}

static void test_replay_fixtures(void **state)
{
    (void)state;
    static const char *const scenarios[] = {"healthy", "payment_errors", "inventory_slow",
                                            "edge_numbers", "big_batch"};
    static const char *const transports[] = {"http-protobuf", "http-json", "grpc"};
    static const char *const variants[] = {"", ".gz"};

    for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
        size_t times[3][2] = {{0}};
        for (size_t t = 0; t < 3; t++) {
            for (size_t v = 0; v < 2; v++) {
                char p[512];
                FILE *f;
                snprintf(p, sizeof(p), FIX "/%s/%s%s.body", transports[t], scenarios[s],
                         variants[v]);
                if (!(f = fopen(p, "rb")))
                    continue; /* http-json/big_batch exists only gzipped */
                fclose(f);
                check_fixture(transports[t], scenarios[s], variants[v], &times[t][v]);
            }
        }
        /* Protobuf, JSON and gRPC captures of one scenario hold the same timestamps. */
        assert_int_equal(times[0][1], times[0][0]);
        assert_int_equal(times[1][1], times[0][0]);
        assert_int_equal(times[2][0], times[0][0]);
        assert_int_equal(times[2][1], times[0][0]);
    }
}

static void test_replay_logs_fixture(void **state)
{
    (void)state;
    const char *tr[] = {"http-protobuf", "http-json"};
    for (int t = 0; t < 2; t++) {
        char bp[256], hp[256], err[256];
        fl_replay_meta_t m;
        fl_buf_t body, out;
        fl_replay_info_t info = {0}, info2 = {0};
        snprintf(bp, sizeof(bp), FIX "/%s/logs.body", tr[t]);
        snprintf(hp, sizeof(hp), FIX "/%s/logs.headers.json", tr[t]);
        load_meta(hp, &m);
        load(bp, &body);
        assert_int_equal(fl_replay_scan(&m, body.data, body.len, &info, err, sizeof(err)), FL_OK);
        assert_true(info.n_times > 0);
        assert_int_equal(info.max_end_ns, 0);
        fl_buf_init(&out, 0);
        assert_int_equal(
            fl_replay_shift(&m, body.data, body.len, 1000, &out, &info2, err, sizeof(err)), FL_OK);
        assert_true(info2.max_any_ns == info.max_any_ns + 1000);
        assert_int_equal(out.len, body.len);
        fl_buf_dispose(&out);
        fl_buf_dispose(&body);
        fl_replay_meta_dispose(&m);
    }
}

/* ---------------------------------------------------------------- hand-made bodies */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_fixed64(uint8_t *p, uint32_t field, uint64_t v)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 1);
    for (int i = 0; i < 8; i++)
        p[n++] = (uint8_t)(v >> (8 * i));
    return n;
}

static size_t put_msg(uint8_t *p, uint32_t field, const uint8_t *m, size_t len)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, m, len);
    return n + len;
}

static uint64_t get_fixed64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void test_replay_pb_handmade(void **state)
{
    (void)state;
    uint8_t ev[32], span[128], scope[256], rs[512], req[1024];
    size_t ne, ns, nsc, nrs, nreq, off_start, off_end, off_ev, off_zero;
    uint8_t *copy;
    fl_replay_info_t info = {0};
    char err[256];

    ne = put_fixed64(ev, 1, 150);
    ns = put_msg(span, 1, (const uint8_t *)"0123456789abcdef", 16);
    off_start = ns + 1;
    ns += put_fixed64(span + ns, 7, 100);
    off_end = ns + 1;
    ns += put_fixed64(span + ns, 8, 200);
    span[ns++] = 5 << 3 | 0; /* kind: varint */
    span[ns++] = 2;
    off_ev = ns + 2 + 1;
    ns += put_msg(span + ns, 11, ev, ne);
    ns += put_varint(span + ns, 12 << 3 | 5); /* a fixed32 field */
    memcpy(span + ns, "\1\2\3\4", 4);
    ns += 4;
    nsc = put_msg(scope, 2, span, ns);
    off_zero = nsc + 2 + 1;
    {
        /* A second span whose start is zero (unset): it must stay zero. */
        uint8_t s2[32];
        size_t n2 = put_fixed64(s2, 7, 0);
        n2 += put_fixed64(s2 + n2, 8, 50);
        nsc += put_msg(scope + nsc, 2, s2, n2);
    }
    /* resource (field 1) holding a fixed64 field 7: not a span, not shifted. */
    {
        uint8_t res[16];
        size_t nres = put_fixed64(res, 7, 999);
        nrs = put_msg(rs, 1, res, nres);
    }
    size_t off_scope = nrs + 2; /* tag + 1-byte length (scope < 128 bytes) */
    assert_true(nsc < 128);
    nrs += put_msg(rs + nrs, 2, scope, nsc);
    nreq = put_msg(req, 1, rs, nrs);
    size_t base = 2 + off_scope; /* req tag + length, then rs */
    assert_true(nrs < 128);

    copy = malloc(nreq);
    memcpy(copy, req, nreq);
    assert_int_equal(
        fl_replay_pb_shift(copy, nreq, FL_REPLAY_TRACES, 1000, &info, err, sizeof(err)), FL_OK);
    assert_int_equal(info.n_spans, 2);
    assert_int_equal(info.n_times, 4); /* start, end, event, second end */
    assert_true(info.max_end_ns == 1200);
    assert_true(info.max_any_ns == 1200);
    {
        const uint8_t *sp = copy + base + 2; /* scope tag + length, then span */
        assert_true(get_fixed64(sp + off_start) == 1100);
        assert_true(get_fixed64(sp + off_end) == 1200);
        assert_true(get_fixed64(sp + off_ev) == 1150);
        assert_true(get_fixed64(copy + base + off_zero) == 0);
    }
    assert_true(get_fixed64(copy + 2 + 2 + 1) == 999); /* the resource's field 7 */
    /* Only the shifted bytes changed. */
    {
        size_t diff = 0;
        for (size_t i = 0; i < nreq; i++)
            diff += copy[i] != req[i];
        assert_true(diff >= 4 && diff <= 32);
    }
    /* Negative shifts saturate at 1 rather than wrapping or becoming "unset". */
    memset(&info, 0, sizeof(info));
    assert_int_equal(
        fl_replay_pb_shift(copy, nreq, FL_REPLAY_TRACES, -5000, &info, err, sizeof(err)), FL_OK);
    assert_true(info.max_end_ns == 1);

    /* Broken wire formats are refused with a position. */
    memset(&info, 0, sizeof(info));
    assert_int_equal(
        fl_replay_pb_shift(copy, nreq - 3, FL_REPLAY_TRACES, 1, &info, err, sizeof(err)),
        FL_ERR_DECODE);
    assert_non_null(strstr(err, "byte"));
    {
        uint8_t bad[] = {0x0b, 0x00}; /* wire type 3 (group) */
        assert_int_equal(
            fl_replay_pb_shift(bad, sizeof(bad), FL_REPLAY_TRACES, 1, &info, err, sizeof(err)),
            FL_ERR_DECODE);
        uint8_t zero_tag[] = {0x00};
        assert_int_equal(
            fl_replay_pb_shift(zero_tag, 1, FL_REPLAY_TRACES, 1, &info, err, sizeof(err)),
            FL_ERR_DECODE);
    }
    assert_int_equal(fl_replay_pb_shift(copy, nreq, FL_REPLAY_METRICS, 1, &info, err, sizeof(err)),
                     FL_ERR_UNSUPPORTED);
    free(copy);
}

static void test_replay_json_handmade(void **state)
{
    (void)state;
    static const char in[] =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"100\", "
        "\"endTimeUnixNano\" : 200,\"events\":[{\"timeUnixNano\":\"150\",\"name\":\"e\"}],"
        "\"attributes\":[{\"key\":\"endTimeUnixNano\",\"value\":{\"stringValue\":\"999\"}},"
        "{\"key\":\"q\\\"endTimeUnixNano\",\"value\":{\"intValue\":\"5\"}}],"
        "\"droppedEventsCount\":0,\"traceState\":\"timeUnixNano\"},"
        "{\"start_time_unix_nano\":\"0\",\"end_time_unix_nano\":\"300\",\"x\":[1,2,\"3\"],"
        "\"timeUnixNano\":null}]}]}]}";
    static const char want[] =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"1100\", "
        "\"endTimeUnixNano\" : 1200,\"events\":[{\"timeUnixNano\":\"1150\",\"name\":\"e\"}],"
        "\"attributes\":[{\"key\":\"endTimeUnixNano\",\"value\":{\"stringValue\":\"999\"}},"
        "{\"key\":\"q\\\"endTimeUnixNano\",\"value\":{\"intValue\":\"5\"}}],"
        "\"droppedEventsCount\":0,\"traceState\":\"timeUnixNano\"},"
        "{\"start_time_unix_nano\":\"0\",\"end_time_unix_nano\":\"1300\",\"x\":[1,2,\"3\"],"
        "\"timeUnixNano\":null}]}]}]}";
    fl_replay_info_t info = {0};
    fl_buf_t out;
    char err[256];

    fl_buf_init(&out, 0);
    assert_int_equal(fl_replay_json_shift(in, sizeof(in) - 1, 1000, &out, &info, err, sizeof(err)),
                     FL_OK);
    assert_string_equal((const char *)out.data, want);
    assert_int_equal(info.n_times, 4);
    assert_true(info.max_end_ns == 1300);
    assert_int_equal(info.n_spans, 2); /* one per end-time key */

    /* A value that grows a digit keeps everything around it. */
    fl_buf_reset(&out);
    memset(&info, 0, sizeof(info));
    assert_int_equal(
        fl_replay_json_shift("{\"timeUnixNano\":\"9\"}", 20, 1, &out, &info, err, sizeof(err)),
        FL_OK);
    assert_string_equal((const char *)out.data, "{\"timeUnixNano\":\"10\"}");

    static const char *const bad[] = {"{\"a\":[1,2}", "{\"a\":\"x", "{\"a\":1", "]", "{}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&info, 0, sizeof(info));
        assert_int_equal(
            fl_replay_json_shift(bad[i], strlen(bad[i]), 1, NULL, &info, err, sizeof(err)),
            FL_ERR_DECODE);
        assert_non_null(strstr(err, "JSON"));
    }
    {
        char deep[1200];
        memset(deep, '[', 600);
        memset(deep + 600, ']', 600);
        assert_int_equal(fl_replay_json_shift(deep, sizeof(deep), 1, NULL, &info, err, sizeof(err)),
                         FL_ERR_DECODE);
        assert_non_null(strstr(err, "deeper"));
    }
    fl_buf_dispose(&out);
}

static void test_replay_zlib(void **state)
{
    (void)state;
    static const char text[] = "hello hello hello hello replay";
    const int kinds[] = {31, 15, -15};
    char err[256];

    for (int i = 0; i < 3; i++) {
        fl_buf_t z, back;
        int kind = 0;
        fl_buf_init(&z, 0);
        fl_buf_init(&back, 0);
        assert_int_equal(fl_replay_deflate((const uint8_t *)text, sizeof(text), kinds[i], &z),
                         FL_OK);
        assert_int_equal(fl_replay_inflate(z.data, z.len, 1024, &back, &kind, err, sizeof(err)),
                         FL_OK);
        assert_int_equal(kind, kinds[i]);
        assert_int_equal(back.len, sizeof(text));
        assert_memory_equal(back.data, text, sizeof(text));
        fl_buf_reset(&back);
        assert_int_equal(fl_replay_inflate(z.data, z.len, 8, &back, &kind, err, sizeof(err)),
                         FL_ERR_TOO_LARGE);
        if (kinds[i] == 31) {
            fl_buf_reset(&back);
            assert_int_equal(
                fl_replay_inflate(z.data, z.len / 2, 1024, &back, &kind, err, sizeof(err)),
                FL_ERR_ENCODING);
            z.data[12] ^= 0xff;
            fl_buf_reset(&back);
            assert_int_not_equal(
                fl_replay_inflate(z.data, z.len, 1024, &back, &kind, err, sizeof(err)), FL_OK);
        }
        fl_buf_dispose(&z);
        fl_buf_dispose(&back);
    }
}

static void test_replay_unsupported_encoding(void **state)
{
    (void)state;
    static const char meta[] = "{\"path\":\"/v1/traces\",\"headers\":{\"content-type\":"
                               "\"application/x-protobuf\",\"content-encoding\":\"zstd\"}}";
    fl_replay_meta_t m;
    fl_replay_info_t info = {0};
    fl_buf_t out;
    char err[256];

    assert_int_equal(fl_replay_meta_parse(meta, sizeof(meta) - 1, &m, err, sizeof(err)), FL_OK);
    fl_buf_init(&out, 0);
    assert_int_equal(fl_replay_shift(&m, (const uint8_t *)"\x28\xb5\x2f\xfd", 4, 1, &out, &info,
                                     err, sizeof(err)),
                     FL_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "zstd"));
    fl_buf_dispose(&out);
    fl_replay_meta_dispose(&m);
}

/* ---------------------------------------------------------------- the tool, end to end */

#define MAX_SEEN 64

typedef struct seen_req {
    char path[128];
    char content_type[64];
    char content_encoding[32];
    int has_transfer_encoding;
    char host[64];
    fl_buf_t body;
} seen_req_t;

typedef struct sink {
    pthread_mutex_t mu;
    seen_req_t reqs[MAX_SEEN];
    size_t n;
} sink_t;

static void copy_header(fl_net_req_t *req, const char *name, char *out, size_t outlen)
{
    const char *v = fl_net_req_header(req, name);
    snprintf(out, outlen, "%s", v ? v : "");
}

/* A stand-in receiver: records every request; paths containing "fail" get a 400. */
static void sink_on_body(fl_net_req_t *req, void *ud)
{
    sink_t *s = ud;
    size_t len = 0;
    const uint8_t *body = fl_net_req_body(req, &len);
    static const fl_net_header_t ct = {"Content-Type", "text/plain"};
    const char *path = fl_net_req_path(req);

    pthread_mutex_lock(&s->mu);
    if (s->n < MAX_SEEN) {
        seen_req_t *r = &s->reqs[s->n++];
        snprintf(r->path, sizeof(r->path), "%s", path);
        copy_header(req, "content-type", r->content_type, sizeof(r->content_type));
        copy_header(req, "content-encoding", r->content_encoding, sizeof(r->content_encoding));
        copy_header(req, "host", r->host, sizeof(r->host));
        r->has_transfer_encoding = fl_net_req_header(req, "transfer-encoding") != NULL;
        fl_buf_init(&r->body, 0);
        fl_buf_append(&r->body, body, len);
    }
    pthread_mutex_unlock(&s->mu);
    if (strstr(path, "fail"))
        fl_net_respond(req, 400, &ct, 1, "bad thing happened", 18);
    else
        fl_net_respond(req, 200, &ct, 1, "{}", 2);
}

static void sink_reset(sink_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        fl_buf_dispose(&s->reqs[i].body);
    s->n = 0;
}

/* Run faultline-replay with args; returns its exit status, stderr in out. */
static int run_tool(const char *args, fl_buf_t *out)
{
    char cmd[2048], line[1024];
    FILE *p;
    int st;

    snprintf(cmd, sizeof(cmd), "%s/faultline-replay %s 2>&1", FL_BUILD_DIR, args);
    p = popen(cmd, "r");
    assert_non_null(p);
    fl_buf_init(out, 0);
    while (fgets(line, sizeof(line), p))
        fl_buf_puts(out, line);
    st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void test_replay_tool(void **state)
{
    (void)state;
    sink_t sink;
    fl_net_t *net = fl_net_new("replay-sink");
    fl_net_listen_opts_t lo = {0};
    fl_net_handler_t h = {.on_body = sink_on_body, .ud = &sink};
    char err[256], args[1024], dir[] = "/tmp/fl_test_replay_XXXXXX", path[512];
    fl_buf_t out;
    int port, rc;

    memset(&sink, 0, sizeof(sink));
    pthread_mutex_init(&sink.mu, NULL);
    lo.name = "sink";
    lo.host = "127.0.0.1";
    lo.handler = h;
    assert_non_null(net);
    assert_int_equal(fl_net_listen(net, &lo, err, sizeof(err)), FL_OK);
    assert_int_equal(fl_net_start(net), FL_OK);
    port = fl_net_bound_port(net, 0);

    /* Every http-protobuf capture arrives byte for byte, with its own headers only. */
    snprintf(args, sizeof(args), "--endpoint http://127.0.0.1:%d --quiet %s/http-protobuf", port,
             FIX);
    rc = run_tool(args, &out);
    if (rc != 0)
        fail_msg("exit %d: %s", rc, (const char *)out.data);
    assert_int_equal(out.len, 0); /* --quiet: nothing on success */
    assert_int_equal(sink.n, 12); /* 5 scenarios x (plain, gzip), logs, metrics */
    for (size_t i = 0; i < sink.n; i++) {
        seen_req_t *r = &sink.reqs[i];
        assert_string_equal(r->path, i == 8 ? "/v1/logs" : i == 9 ? "/v1/metrics" : "/v1/traces");
        assert_string_equal(r->content_type, "application/x-protobuf");
        assert_false(r->has_transfer_encoding);
        assert_null(strstr(r->host, "14318")); /* the captured Host is not replayed */
    }
    /* Name order: big_batch, big_batch.gz, edge_numbers, ... */
    assert_string_equal(sink.reqs[1].content_encoding, "gzip");
    assert_string_equal(sink.reqs[0].content_encoding, "");
    {
        fl_buf_t file;
        load(FIX "/http-protobuf/big_batch.gz.body", &file);
        assert_int_equal(sink.reqs[1].body.len, file.len);
        assert_memory_equal(sink.reqs[1].body.data, file.data, file.len);
        fl_buf_dispose(&file);
    }
    sink_reset(&sink);
    fl_buf_dispose(&out);

    /* --shift-time with --repeat and --rate: the newest span ends about now. */
    snprintf(args, sizeof(args),
             "--endpoint http://127.0.0.1:%d/ --shift-time --repeat 2 --rate 20 "
             "%s/http-json/healthy.gz.body %s/http-protobuf/healthy.headers.json",
             port, FIX, FIX);
    {
        uint64_t t0 = fl_time_mono_ns();
        rc = run_tool(args, &out);
        if (rc != 0)
            fail_msg("exit %d: %s", rc, (const char *)out.data);
        /* 4 requests at 20/s: the last one leaves 150 ms after the first. */
        assert_true(fl_time_mono_ns() - t0 >= 140000000ull);
    }
    assert_non_null(strstr((const char *)out.data, "replayed 4 requests"));
    assert_non_null(strstr((const char *)out.data, "800 spans"));
    assert_int_equal(sink.n, 4);
    for (size_t i = 0; i < sink.n; i++) {
        fl_replay_meta_t m;
        fl_replay_info_t info = {0};
        uint64_t now = fl_time_now_ns();
        load_meta(i % 2 ? FIX "/http-protobuf/healthy.headers.json"
                        : FIX "/http-json/healthy.gz.headers.json",
                  &m);
        assert_int_equal(fl_replay_scan(&m, sink.reqs[i].body.data, sink.reqs[i].body.len, &info,
                                        err, sizeof(err)),
                         FL_OK);
        assert_int_equal(info.n_spans, 200);
        assert_true(info.max_end_ns <= now && info.max_end_ns > now - 60000000000ull);
        fl_replay_meta_dispose(&m);
    }
    sink_reset(&sink);
    fl_buf_dispose(&out);

    /* A refused request: its status and body are printed and the exit status is 1. */
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/00000001-http.headers.json", dir);
    {
        static const char meta[] =
            "{\"method\":\"POST\",\"path\":\"/v1/fail\",\"protocol\":\"http/1.1\","
            "\"headers\":{\"content-type\":\"application/json\"}}";
        write_file(path, meta, sizeof(meta) - 1);
    }
    snprintf(path, sizeof(path), "%s/00000001-http.body", dir);
    write_file(path, "{}", 2);
    snprintf(args, sizeof(args), "--endpoint http://127.0.0.1:%d %s", port, dir);
    assert_int_equal(run_tool(args, &out), 1);
    assert_non_null(strstr((const char *)out.data, "HTTP 400"));
    assert_non_null(strstr((const char *)out.data, "bad thing happened"));
    assert_non_null(strstr((const char *)out.data, "1 failed"));
    fl_buf_dispose(&out);

    /* A body without its headers.json is an error, not a guess. */
    snprintf(path, sizeof(path), "%s/00000002-http.body", dir);
    write_file(path, "{}", 2);
    snprintf(args, sizeof(args), "--endpoint http://127.0.0.1:%d --quiet %s", port, path);
    assert_int_equal(run_tool(args, &out), 1);
    assert_non_null(strstr((const char *)out.data, "00000002-http.headers.json"));
    fl_buf_dispose(&out);
    sink_reset(&sink);

    /* Usage errors exit 2. */
    assert_int_equal(run_tool("--rate 0 x", &out), 2);
    fl_buf_dispose(&out);
    assert_int_equal(run_tool("--endpoint http://h:99999 x", &out), 2);
    fl_buf_dispose(&out);
    assert_int_equal(run_tool("/nonexistent/dir", &out), 2);
    fl_buf_dispose(&out);
    assert_int_equal(run_tool("--help", &out), 0);
    assert_non_null(strstr((const char *)out.data, "--shift-time"));
    fl_buf_dispose(&out);

    fl_net_shutdown(net, 2000);
    fl_net_free(net);

    /* Nobody listening any more: the replay stops with exit status 1. */
    snprintf(args, sizeof(args), "--endpoint http://127.0.0.1:%d --timeout 2000 %s/http-json", port,
             FIX);
    assert_int_equal(run_tool(args, &out), 1);
    assert_non_null(strstr((const char *)out.data, "stopping"));
    fl_buf_dispose(&out);
    sink_reset(&sink);
    snprintf(args, sizeof(args), "rm -rf '%s'", dir);
    assert_int_equal(system(args), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_meta_fixture),
        cmocka_unit_test(test_replay_meta_shapes),
        cmocka_unit_test(test_replay_fixtures),
        cmocka_unit_test(test_replay_logs_fixture),
        cmocka_unit_test(test_replay_pb_handmade),
        cmocka_unit_test(test_replay_json_handmade),
        cmocka_unit_test(test_replay_zlib),
        cmocka_unit_test(test_replay_unsupported_encoding),
        cmocka_unit_test(test_replay_tool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
