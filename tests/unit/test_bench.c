/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fl_benchgen (tools/bench): the pre-encoded requests decode back to the
 * intended spans at ~480 bytes/span, ids are unique across the pool, re-stamping works. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bench_gen.h"

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req_t;

#define BASE_NS 1796004969000000000ull

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static int cmp8(const void *a, const void *b)
{
    return memcmp(a, b, 8);
}

static req_t *decode(const uint8_t *d, size_t n)
{
    return opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, n,
                                                                                            d);
}

static void req_free(req_t *m)
{
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(m,
                                                                                            NULL);
}

/* Number of spans in m; checks ids and times, reports the attribute count range. */
static size_t count_spans(const req_t *m, size_t *attrs_min, size_t *attrs_max)
{
    size_t n = 0;
    *attrs_min = SIZE_MAX;
    *attrs_max = 0;
    for (size_t r = 0; r < m->n_resource_spans; r++)
        for (size_t s = 0; s < m->resource_spans[r]->n_scope_spans; s++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                m->resource_spans[r]->scope_spans[s];
            for (size_t i = 0; i < ss->n_spans; i++) {
                size_t na = ss->spans[i]->n_attributes;
                *attrs_min = na < *attrs_min ? na : *attrs_min;
                *attrs_max = na > *attrs_max ? na : *attrs_max;
                assert_int_equal(ss->spans[i]->trace_id.len, 16);
                assert_int_equal(ss->spans[i]->span_id.len, 8);
                assert_true(ss->spans[i]->end_time_unix_nano >= ss->spans[i]->start_time_unix_nano);
            }
            n += ss->n_spans;
        }
    return n;
}

static void check_pool(size_t n_req, size_t spans)
{
    fl_bench_pool_t p;
    assert_int_equal(fl_bench_pool_init(&p, n_req, spans, FL_BENCH_WITH_ROWS, 1, BASE_NS), 0);
    assert_int_equal(p.n, n_req);
    size_t bytes = 0;
    for (size_t i = 0; i < p.n; i++) {
        const fl_bench_req_t *r = &p.reqs[i];
        req_t *m = decode(r->pb, r->pb_len);
        assert_non_null(m);
        size_t amin, amax;
        assert_int_equal(count_spans(m, &amin, &amax), spans);
        assert_int_equal(amin, 11);
        assert_int_equal(amax, 11);
        req_free(m);
        assert_int_equal(r->n_spans, spans);
        /* Traces of 5-10 spans (the last one of a request may be cut short). */
        assert_true(r->n_traces >= spans / 10 && r->n_traces <= spans / 5 + 1);
        bytes += r->pb_len;
    }
    double per_span = (double)bytes / (double)(n_req * spans);
    assert_true(per_span > 430 && per_span < 530);

    /* Trace ids are unique across the pool, span ids unique too. */
    size_t nt = 0, ns = 0;
    for (size_t i = 0; i < p.n; i++) {
        nt += p.reqs[i].n_traces;
        ns += p.reqs[i].n_spans;
    }
    uint8_t(*t)[16] = malloc(nt * 16);
    uint8_t(*s)[8] = malloc(ns * 8);
    assert_non_null(t);
    assert_non_null(s);
    size_t kt = 0, ks = 0;
    for (size_t i = 0; i < p.n; i++) {
        memcpy(t[kt], p.reqs[i].trace_ids, p.reqs[i].n_traces * 16);
        kt += p.reqs[i].n_traces;
        for (size_t j = 0; j < p.reqs[i].n_spans; j++)
            memcpy(s[ks++], p.reqs[i].rows[j].span_id, 8);
    }
    qsort(t, nt, 16, cmp16);
    for (size_t i = 1; i < nt; i++)
        assert_true(memcmp(t[i - 1], t[i], 16) != 0);
    qsort(s, ns, 8, cmp8);
    for (size_t i = 1; i < ns; i++)
        assert_true(memcmp(s[i - 1], s[i], 8) != 0);
    free(t);
    free(s);
    fl_bench_pool_dispose(&p);
}

static void test_bench_pool_1000(void **state)
{
    check_pool(4, 1000);
}

static void test_bench_pool_100(void **state)
{
    check_pool(16, 100);
}

/* Re-stamping a generation changes only the last 4 bytes of every trace id, in protobuf and
 * in JSON, and the result still decodes to the same spans. */
static void test_bench_patch(void **state)
{
    fl_bench_pool_t p;
    assert_int_equal(fl_bench_pool_init(&p, 2, 100, FL_BENCH_WITH_JSON, 3, BASE_NS), 0);
    const fl_bench_req_t *r = &p.reqs[1];
    uint8_t *buf = malloc(r->pb_len);
    assert_non_null(buf);
    memcpy(buf, r->pb, r->pb_len);
    fl_bench_patch_pb(r, buf, 0xdeadbeefu);
    req_t *m = decode(buf, r->pb_len);
    assert_non_null(m);
    uint8_t want[16];
    fl_bench_trace_id(r, 0, 0xdeadbeefu, want);
    size_t seen = 0;
    for (size_t i = 0; i < m->n_resource_spans; i++) {
        const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
            m->resource_spans[i]->scope_spans[0];
        for (size_t j = 0; j < ss->n_spans; j++) {
            const uint8_t *id = ss->spans[j]->trace_id.data;
            assert_memory_equal(id + 12, "\xde\xad\xbe\xef", 4);
            seen += memcmp(id, want, 16) == 0;
        }
    }
    assert_true(seen >= 5);
    req_free(m);
    free(buf);

    char *js = malloc(r->json_len + 1);
    assert_non_null(js);
    memcpy(js, r->json, r->json_len + 1);
    fl_bench_patch_json(r, js, 0x0102abcdu);
    assert_int_equal(strncmp(js, "{\"resourceSpans\":[", 18), 0);
    size_t hits = 0;
    for (const char *q = js; (q = strstr(q, "0102abcd\",\"spanId\"")) != NULL; q++)
        hits++;
    assert_int_equal(hits, r->n_spans);
    free(js);
    fl_bench_pool_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_pool_1000),
        cmocka_unit_test(test_bench_pool_100),
        cmocka_unit_test(test_bench_patch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
