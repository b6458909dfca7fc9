/* SPDX-License-Identifier: Apache-2.0 */
/* Builds small, valid OTLP trace exports (protobuf and JSON) for the e2e tests, with ids
 * the test chooses, so every span sent can be looked up again. Header-only. */
#ifndef FAULTLINE_TEST_OTLP_GEN_H
#define FAULTLINE_TEST_OTLP_GEN_H

#include <faultline/common.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A trace of n_spans spans: trace id = 16 bytes, span i's id = 8 bytes derived from seed. */
typedef struct otlp_gen_trace {
    uint8_t trace_id[16];
    uint64_t span_seed; /* span i has id (span_seed + i), big-endian, never 0 */
    int n_spans;
    const char *service;
    uint64_t start_ns;
} otlp_gen_trace_t;

static inline void otlp_gen_hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static inline void otlp_gen_span_id(const otlp_gen_trace_t *t, int i, uint8_t out[8])
{
    uint64_t v = t->span_seed + (uint64_t)i;
    for (int k = 7; k >= 0; k--, v >>= 8)
        out[k] = (uint8_t)v;
}

static inline void pb_varint(fl_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    fl_buf_append(b, tmp, n);
}

static inline void pb_bytes(fl_buf_t *b, unsigned field, const void *p, size_t len)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, len);
    fl_buf_append(b, p, len);
}

static inline void pb_fixed64(fl_buf_t *b, unsigned field, uint64_t v)
{
    uint8_t le[8];
    pb_varint(b, (uint64_t)field << 3 | 1);
    for (int k = 0; k < 8; k++, v >>= 8)
        le[k] = (uint8_t)v;
    fl_buf_append(b, le, 8);
}

/* Append a length-delimited field whose content is sub (then dispose sub). */
static inline void pb_sub(fl_buf_t *b, unsigned field, fl_buf_t *sub)
{
    pb_bytes(b, field, sub->data ? sub->data : (const uint8_t *)"", sub->len);
    fl_buf_dispose(sub);
}

/** An ExportTraceServiceRequest holding the traces (one ResourceSpans each), into out
 *  (initialised here). */
static inline void otlp_gen_protobuf(const otlp_gen_trace_t *traces, int n, fl_buf_t *out)
{
    fl_buf_init(out, 0);
    for (int t = 0; t < n; t++) {
        const otlp_gen_trace_t *tr = &traces[t];
        fl_buf_t rs, res, kv, av, ss;
        fl_buf_init(&av, 0);
        pb_bytes(&av, 1, tr->service, strlen(tr->service)); /* AnyValue.string_value */
        fl_buf_init(&kv, 0);
        pb_bytes(&kv, 1, "service.name", 12);
        pb_sub(&kv, 2, &av);
        fl_buf_init(&res, 0);
        pb_sub(&res, 1, &kv); /* Resource.attributes */
        fl_buf_init(&ss, 0);
        for (int i = 0; i < tr->n_spans; i++) {
            fl_buf_t sp;
            uint8_t sid[8], pid[8];
            char name[32];
            fl_buf_init(&sp, 0);
            otlp_gen_span_id(tr, i, sid);
            pb_bytes(&sp, 1, tr->trace_id, 16);
            pb_bytes(&sp, 2, sid, 8);
            if (i > 0) {
                otlp_gen_span_id(tr, 0, pid);
                pb_bytes(&sp, 4, pid, 8);
            }
            snprintf(name, sizeof(name), "op-%d", i % 4);
            pb_bytes(&sp, 5, name, strlen(name));
            pb_varint(&sp, 6 << 3 | 0);
            pb_varint(&sp, i == 0 ? 2 : 3); /* SERVER root, CLIENT children */
            pb_fixed64(&sp, 7, tr->start_ns + (uint64_t)i * 1000);
            pb_fixed64(&sp, 8, tr->start_ns + (uint64_t)i * 1000 + 500000);
            pb_sub(&ss, 2, &sp); /* ScopeSpans.spans */
        }
        fl_buf_init(&rs, 0);
        pb_sub(&rs, 1, &res);
        pb_sub(&rs, 2, &ss);
        pb_sub(out, 1, &rs); /* ExportTraceServiceRequest.resource_spans */
    }
}

/** The same export as OTLP/JSON (hex ids), into out (initialised here). */
static inline void otlp_gen_json(const otlp_gen_trace_t *traces, int n, fl_buf_t *out)
{
    fl_buf_init(out, 0);
    fl_buf_puts(out, "{\"resourceSpans\":[");
    for (int t = 0; t < n; t++) {
        const otlp_gen_trace_t *tr = &traces[t];
        char tid[33], sid[17], pid[17];
        uint8_t b[8];
        otlp_gen_hex(tr->trace_id, 16, tid);
        otlp_gen_span_id(tr, 0, b);
        otlp_gen_hex(b, 8, pid);
        fl_buf_printf(out,
                      "%s{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
                      "{\"stringValue\":\"%s\"}}]},\"scopeSpans\":[{\"spans\":[",
                      t ? "," : "", tr->service);
        for (int i = 0; i < tr->n_spans; i++) {
            otlp_gen_span_id(tr, i, b);
            otlp_gen_hex(b, 8, sid);
            uint64_t st = tr->start_ns + (uint64_t)i * 1000;
            fl_buf_printf(out,
                          "%s{\"traceId\":\"%s\",\"spanId\":\"%s\",\"parentSpanId\":\"%s\","
                          "\"name\":\"op-%d\",\"kind\":%d,\"startTimeUnixNano\":\"%llu\","
                          "\"endTimeUnixNano\":\"%llu\"}",
                          i ? "," : "", tid, sid, i ? pid : "", i % 4, i == 0 ? 2 : 3,
                          (unsigned long long)st, (unsigned long long)(st + 500000));
        }
        fl_buf_puts(out, "]}]}");
    }
    fl_buf_puts(out, "]}");
}

#endif
