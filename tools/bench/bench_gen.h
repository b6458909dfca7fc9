/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-bench request generator: a pool of distinct, realistic, pre-encoded OTLP trace
 * export requests (protobuf and OTLP/JSON) whose trace ids can be re-stamped per send. */
#ifndef FL_BENCH_GEN_H
#define FL_BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One span as a row, for the row-store ceiling (generation 0 ids). */
typedef struct fl_bench_row {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8];
    int has_parent;
    const char *service;
    const char *name;
    int kind;
    uint64_t start_ns;
    uint64_t end_ns;
    int status;
    char *attrs_json; /**< the span's attributes as a JSON object (malloc'd) */
} fl_bench_row_t;

/** One pre-encoded request. Every trace id's last 4 bytes are the "generation": 0 in the
 *  pool; fl_bench_patch_* stamp another one into a copy, so each send carries new ids. */
typedef struct fl_bench_req {
    uint8_t *pb; /**< ExportTraceServiceRequest, protobuf */
    size_t pb_len;
    uint32_t *pb_id_off; /**< offset of each span's 16-byte trace id in pb (n_spans) */
    char *json;          /**< the same request as OTLP/JSON; NULL unless asked for */
    size_t json_len;
    uint32_t *json_id_off; /**< offset of each span's 32-hex trace id in json (n_spans) */
    size_t n_spans;
    size_t n_traces;
    uint8_t (*trace_ids)[16]; /**< the distinct trace ids, generation 0 (n_traces) */
    fl_bench_row_t *rows;     /**< the spans as rows (n_spans); NULL unless asked for */
} fl_bench_req_t;

typedef struct fl_bench_pool {
    fl_bench_req_t *reqs;
    size_t n;
    size_t spans_per_req;
    uint64_t base_ns; /**< span start times lie in [base_ns - 60 s, base_ns] */
} fl_bench_pool_t;

enum {
    FL_BENCH_WITH_JSON = 1, /**< also encode OTLP/JSON */
    FL_BENCH_WITH_ROWS = 2  /**< also keep the spans as rows */
};

/** The service names the generator uses (NULL-terminated). */
extern const char *const fl_bench_services[];

/** Build n distinct requests of spans_per_req spans each (traces of 5–10 spans, 11 HTTP
 *  attributes per span, ~480 protobuf bytes per span). Deterministic for a seed. base_ns 0:
 *  now. Returns 0, or -1 on OOM (the pool is then empty and may be disposed). */
int fl_bench_pool_init(fl_bench_pool_t *p, size_t n, size_t spans_per_req, unsigned flags,
                       uint64_t seed, uint64_t base_ns);
/** Free everything. Accepts a zeroed pool. */
void fl_bench_pool_dispose(fl_bench_pool_t *p);

/** Stamp generation gen into every trace id of buf, a copy of r->pb. */
void fl_bench_patch_pb(const fl_bench_req_t *r, uint8_t *buf, uint32_t gen);
/** Stamp generation gen into every trace id of buf, a copy of r->json. */
void fl_bench_patch_json(const fl_bench_req_t *r, char *buf, uint32_t gen);
/** Trace id i of r as sent with generation gen. */
void fl_bench_trace_id(const fl_bench_req_t *r, size_t i, uint32_t gen, uint8_t out[16]);

#ifdef __cplusplus
}
#endif
#endif
