/* SPDX-License-Identifier: Apache-2.0 */
/* faultline receiver: the OTLP endpoints. OTLP/HTTP routes and the gRPC TraceService served
 * through net/, decompression, protobuf and JSON decoding into fl_span_batch_t, validation
 * with partial success, admission control, capture to disk, and the hand-off to a sink
 * (the server wires the sink to the store writer; the receiver never includes store.h). */
#ifndef FAULTLINE_RECEIVER_H
#define FAULTLINE_RECEIVER_H

#include <faultline/common.h>
#include <faultline/net.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- decoding (no sockets) */

enum fl_otlp_format { FL_OTLP_PROTOBUF = 0, FL_OTLP_JSON = 1 };

/** Decompress `in` according to a Content-Encoding / grpc-encoding token: "" or "identity"
 *  (copied), "gzip", "deflate" (zlib, raw deflate also accepted), "zstd", "snappy" (block or
 *  framed). Never produces more than max_out bytes: FL_ERR_TOO_LARGE when the output would
 *  pass it (checked while inflating, so a bomb costs nothing), FL_ERR_ENCODING for an
 *  unknown token or corrupt data, with a message in err. out is appended to. */
int fl_decompress(const char *encoding, const uint8_t *in, size_t len, size_t max_out, fl_buf_t *out,
                  char *err, size_t errlen);

/** Check a protobuf message's nesting depth (every length-delimited field that parses as a
 *  message counts) before unpacking: FL_ERR_TOO_DEEP past max_depth, FL_ERR_DECODE when the
 *  wire format is broken. */
int fl_otlp_prescan(const uint8_t *buf, size_t len, int max_depth, char *err, size_t errlen);

/** Decode an ExportTraceServiceRequest (protobuf or OTLP/JSON) into batch (allocated in
 *  batch->arena). Spans with invalid ids (wrong length, all-zero trace or span id) are
 *  rejected one by one (batch->rejected, batch->reject_msg); the rest are kept.
 *  FL_ERR_DECODE / FL_ERR_TOO_DEEP with a message naming the problem and where
 *  ("resourceSpans[0].scopeSpans[1].spans[3].traceId: ...") when the request as a whole
 *  is malformed. */
int fl_otlp_decode_traces(const uint8_t *body, size_t len, int format, fl_span_batch_t *batch,
                          char *err, size_t errlen);

/** Encode an ExportTraceServiceResponse: empty partial_success when rejected == 0 and
 *  msg == NULL (JSON: "{}"), else partial_success {rejected_spans, error_message}. */
int fl_otlp_encode_trace_response(int format, size_t rejected, const char *msg, fl_buf_t *out);

/** Encode a google.rpc.Status {code, message, details[RetryInfo when retry_after_s > 0]}. */
int fl_otlp_encode_status(int format, int grpc_code, const char *msg, unsigned retry_after_s,
                          fl_buf_t *out);

/* ---------------------------------------------------------------- endpoints */

typedef void (*fl_sink_done_cb)(void *ctx, int status, size_t stored, size_t duplicates);

/** Where decoded batches go. submit_take has fl_store_submit_take's contract: it takes the
 *  batch in every case; FL_OK means cb will be called once (from any thread) after the batch
 *  is durable (status FL_OK) or failed; FL_ERR_BUSY / FL_ERR_CLOSED mean refused now. */
typedef struct fl_receiver_sink {
    int (*submit_take)(void *ud, fl_span_batch_t *batch, fl_sink_done_cb cb, void *ctx);
    /** Optional admission hint: non-zero when n_spans more would be refused. */
    int (*would_block)(void *ud, size_t n_spans);
    void *ud;
} fl_receiver_sink_t;

typedef struct fl_receiver_opts {
    fl_receiver_sink_t sink;
    size_t max_body;           /**< decompressed bytes per request; 0: 64 MiB */
    size_t max_inflight_bytes; /**< wire + decoded bytes of requests being handled; past it
                                    new requests get 503 before their body is read.
                                    0: 128 MiB */
    int decode_threads;        /**< decoding workers; 0: 2 */
    unsigned retry_after_s;    /**< Retry-After / RetryInfo on overload; 0: 1 */
    const char *capture_dir;   /**< when set, every accepted request is written here */
    int max_depth;             /**< AnyValue nesting; 0: 64 */
} fl_receiver_opts_t;

typedef struct fl_receiver fl_receiver_t;

/** NULL on failure (e.g. capture_dir cannot be created: err says why). */
fl_receiver_t *fl_receiver_new(const fl_receiver_opts_t *opts, char *err, size_t errlen);
/** Wait for in-flight requests' sink callbacks (up to timeout_ms), then free. Accepts NULL. */
void fl_receiver_free(fl_receiver_t *r, int timeout_ms);
/** Handler for an OTLP/HTTP listener: POST /v1/traces (+ /v1/logs, /v1/metrics answered
 *  as documented). */
fl_net_handler_t fl_receiver_http_handler(fl_receiver_t *r);
/** Handler for an OTLP/gRPC listener: TraceService/Export (+ Logs/Metrics services). */
fl_net_handler_t fl_receiver_grpc_handler(fl_receiver_t *r);

typedef struct fl_receiver_stats {
    uint64_t requests;         /**< export requests received */
    uint64_t spans_accepted;   /**< spans acknowledged (committed) */
    uint64_t spans_rejected;   /**< spans refused as invalid (partial success) */
    uint64_t requests_refused; /**< 503 / UNAVAILABLE for overload */
    uint64_t requests_failed;  /**< 4xx / 5xx other than overload */
    uint64_t inflight_bytes;
    uint64_t inflight_requests;
} fl_receiver_stats_t;

void fl_receiver_stats(fl_receiver_t *r, fl_receiver_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
