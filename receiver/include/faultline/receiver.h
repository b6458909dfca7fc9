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

/** The three OTLP signals. faultline stores traces; logs and metrics are decoded only to
 *  count their items (see "Logs and metrics" below). */
enum fl_otlp_signal { FL_OTLP_TRACES = 0, FL_OTLP_LOGS = 1, FL_OTLP_METRICS = 2 };

/** Decompress `in` according to a Content-Encoding / grpc-encoding token: "" or "identity"
 *  (copied), "gzip" (also "x-gzip"), "deflate" / "zlib" (zlib; raw deflate also accepted),
 *  "zstd", "snappy" (block, or framed when the stream identifier chunk is present) and
 *  "x-snappy-framed". Tokens are case-insensitive. Never produces more than max_out bytes:
 *  FL_ERR_TOO_LARGE when the output would pass it (checked while inflating, so a bomb costs
 *  nothing), FL_ERR_ENCODING for an unknown token ("unsupported Content-Encoding: br") or
 *  corrupt data ("gzip: invalid header"), FL_ERR_NOMEM. The message goes to err.
 *  out is appended to (its own cap, if any, also applies). */
int fl_decompress(const char *encoding, const uint8_t *in, size_t len, size_t max_out,
                  fl_buf_t *out, char *err, size_t errlen);

/** 1 when fl_decompress knows the encoding token. */
int fl_decompress_supported(const char *encoding);

/** Check an ExportTraceServiceRequest's nesting depth (every field the OTLP schema declares a
 *  message counts; the top-level message is depth 1) before unpacking: FL_ERR_TOO_DEEP past
 *  max_depth, FL_ERR_DECODE when the wire format is broken (the message gives the byte
 *  offset). protobuf-c itself has no recursion limit, so every protobuf decode runs this. */
int fl_otlp_prescan(const uint8_t *buf, size_t len, int max_depth, char *err, size_t errlen);

/** Decode an ExportTraceServiceRequest (protobuf or OTLP/JSON) into batch (allocated in
 *  batch->arena). Spans with invalid ids (wrong length, bad hex, missing or all-zero trace
 *  or span id, a parent or link id of the wrong length) are rejected one by one
 *  (batch->rejected, batch->reject_msg names the first, with its path); the rest are kept.
 *  FL_ERR_DECODE / FL_ERR_TOO_DEEP with a message naming the problem and where
 *  ("resourceSpans[0].scopeSpans[1].spans[3].name: expected a string, got a number", or a
 *  protobuf byte offset) when the request as a whole is malformed; FL_ERR_NOMEM when the
 *  arena (or its limit) runs out. Nesting is capped at 64 levels (fl_otlp_decode_traces_ex
 *  takes another cap): messages for protobuf, the equivalent JSON objects for JSON.
 *
 *  The result: every pointer in fl_span_t refers to batch->arena. Protobuf: spans are
 *  unpacked by protobuf-c one at a time into a scratch arena (reset per span) and their
 *  strings copied once into the batch arena, so the batch holds ~2x the wire size instead of
 *  the ~8x that protobuf-c's structures take; resources and scopes are unpacked into the
 *  batch arena and used in place. JSON: an arena copy of the body is parsed in place
 *  (strings unescaped where they lie). Resource and scope are shared by the spans of one
 *  ResourceSpans / ScopeSpans; resource->service_name is the string attribute service.name
 *  or "unknown_service". An empty body is an empty request.
 *
 *  JSON leniency (at least the Collector's): lowerCamelCase or snake_case keys; int64/uint64
 *  as number or decimal string (exact up to 2^64-1, never via double); enums as integers or
 *  names ("SPAN_KIND_SERVER", "STATUS_CODE_ERROR"); ids as hex of either case, "" = absent;
 *  unknown fields and null values ignored; "doubleValue": null is NaN (what JavaScript's
 *  JSON.stringify makes of NaN and ±Infinity), "NaN"/"Infinity"/"-Infinity" strings too;
 *  an "intValue" that is not an exact int64 (2^63, 1e300) is kept as a double. */
int fl_otlp_decode_traces(const uint8_t *body, size_t len, int format, fl_span_batch_t *batch,
                          char *err, size_t errlen);
/** As fl_otlp_decode_traces with a nesting cap (<= 0: 64). */
int fl_otlp_decode_traces_ex(const uint8_t *body, size_t len, int format, int max_depth,
                             fl_span_batch_t *batch, char *err, size_t errlen);

/** Decode an ExportLogsServiceRequest / ExportMetricsServiceRequest (protobuf or JSON) only to
 *  count log records / data points (every metric type's data points). The request is fully
 *  validated (protobuf: unpacked with protobuf-c after the prescan; JSON: syntax checked,
 *  the key chain down to the counted arrays followed). signal FL_OTLP_TRACES counts spans.
 *  FL_ERR_DECODE / FL_ERR_TOO_DEEP with a message, FL_ERR_NOMEM, FL_ERR_INVALID. */
int fl_otlp_count_items(int signal, const uint8_t *body, size_t len, int format, int max_depth,
                        size_t *count, char *err, size_t errlen);

/** Encode an ExportTraceServiceResponse: empty partial_success when rejected == 0 and
 *  msg == NULL (JSON: "{}", protobuf: zero bytes), else partial_success {rejected_spans,
 *  error_message} (JSON: {"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}},
 *  int64 as a string per proto3 JSON). Appends to out. FL_OK, FL_ERR_NOMEM, FL_ERR_LIMIT. */
int fl_otlp_encode_trace_response(int format, size_t rejected, const char *msg, fl_buf_t *out);

/** The same for any signal: Export{Trace,Logs,Metrics}ServiceResponse whose partial success
 *  counts rejected_spans / rejected_log_records / rejected_data_points. */
int fl_otlp_encode_export_response(int signal, int format, size_t rejected, const char *msg,
                                   fl_buf_t *out);

/** Encode a google.rpc.Status {code, message, details[RetryInfo when retry_after_s > 0]}.
 *  JSON: {"code":14,"message":"...","details":[{"@type":
 *  "type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1s"}]}. Appends to out. */
int fl_otlp_encode_status(int format, int grpc_code, const char *msg, unsigned retry_after_s,
                          fl_buf_t *out);

/* ---------------------------------------------------------------- masking and limits */

enum fl_mask_mode {
    FL_MASK_REDACT = 0, /**< the value becomes the string "[REDACTED]" */
    FL_MASK_HASH = 1    /**< "sha256:" + the first 16 hex digits of SHA-256 of the value
                             (the string's bytes; other types: their JSON text), so equal
                             values stay correlatable */
};

/** The sensitive-key defaults: an attribute whose key contains one of these
 *  (case-insensitive) is masked unless no_defaults is set. NULL-terminated. */
extern const char *const fl_mask_default_keys[];

/** Attribute masking and per-request limits, applied to every decoded batch before the
 *  sink, on span, event, link, scope and resource attributes. */
typedef struct fl_sanitize_opts {
    const char *const *mask_keys; /**< exact keys, or a prefix with a trailing '*' */
    size_t n_mask_keys;
    int mask_mode;           /**< enum fl_mask_mode */
    int no_default_masks;    /**< 1: only mask_keys are masked */
    size_t max_attributes;   /**< per span / event / link / scope / resource; extra ones are
                                  dropped and added to dropped_attributes_count. 0: none */
    size_t max_value_length; /**< string and bytes values (also inside arrays and kvlists)
                                  longer than this are cut, strings at a UTF-8 boundary.
                                  0: none */
} fl_sanitize_opts_t;

typedef struct fl_sanitize_counts {
    uint64_t masked;    /**< attribute values masked */
    uint64_t dropped;   /**< attributes dropped past max_attributes */
    uint64_t truncated; /**< values cut to max_value_length */
} fl_sanitize_counts_t;

/** 1 when key (len bytes) is masked under opts (mask_keys or the defaults). */
int fl_mask_key_matches(const fl_sanitize_opts_t *opts, const char *key, size_t len);
/** Apply masking, then the limits, to every span of batch in place (new strings come from
 *  batch->arena; shared resources and scopes are handled once). Adds to counts. FL_OK or
 *  FL_ERR_NOMEM. */
int fl_sanitize_batch(const fl_sanitize_opts_t *opts, fl_span_batch_t *batch,
                      fl_sanitize_counts_t *counts);
/** Length of s cut to at most max bytes without splitting a UTF-8 sequence. */
size_t fl_utf8_truncate(const char *s, size_t len, size_t max);

/* ---------------------------------------------------------------- spans per trace */

/** Table size of fl_trace_limit_new(…, 0): 65536 entries of 24 bytes (1.5 MiB). */
#define FL_TRACE_LIMIT_DEFAULT_SLOTS 65536

/** Spans per trace across requests. A fixed-size table remembers recent trace ids with the
 *  number of spans accepted for each: n_slots entries of 24 bytes in sets of 8 (a trace id
 *  hashes to one set), allocated once, so memory stays bounded whatever the traffic. A trace
 *  not in its set replaces the entry touched least recently there; the evicted trace's count
 *  is forgotten, so a trace that comes back after that many newer traces may get max_spans
 *  more. Safe to use from several threads (striped mutexes). */
typedef struct fl_trace_limit fl_trace_limit_t;

/** What one fl_trace_limit_apply counted, per trace of the request (to give it back when
 *  the request is refused after all), and what it dropped. */
typedef struct fl_trace_limit_charge {
    struct fl__trace_count *items; /**< private */
    size_t n_items;
    size_t dropped;         /**< spans removed from the batch */
    uint8_t first_over[16]; /**< the first trace that passed the limit (when dropped > 0) */
} fl_trace_limit_charge_t;

/** A table for max_spans spans per trace with n_slots entries (rounded up to a power of two,
 *  at least 8; 0: FL_TRACE_LIMIT_DEFAULT_SLOTS). NULL when max_spans is 0 or on OOM. */
fl_trace_limit_t *fl_trace_limit_new(size_t max_spans, size_t n_slots);
/** Accepts NULL. */
void fl_trace_limit_free(fl_trace_limit_t *t);
/** Bytes the table holds (fixed at creation). */
size_t fl_trace_limit_memory(const fl_trace_limit_t *t);
/** Count batch's spans per trace and remove those past the limit from batch->spans: of each
 *  trace the first ones in the request are kept, and the kept spans keep their order. Fills
 *  charge (dispose it with fl_trace_limit_release or fl_trace_limit_charge_dispose). t NULL:
 *  no limit. FL_OK, or FL_ERR_NOMEM with nothing counted or removed. */
int fl_trace_limit_apply(fl_trace_limit_t *t, fl_span_batch_t *batch,
                         fl_trace_limit_charge_t *charge);
/** Give back the counts of charge (its spans were not stored: a retry must not count them
 *  twice), then dispose it. Accepts t NULL. */
void fl_trace_limit_release(fl_trace_limit_t *t, fl_trace_limit_charge_t *charge);
/** Free charge's memory, keeping the counts. */
void fl_trace_limit_charge_dispose(fl_trace_limit_charge_t *charge);

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
    const char *capture_dir;   /**< when set, every request that decoded and was handed on
                                    is written here as NNNNNNNN-<transport>.body (the wire
                                    body before decompression; gRPC with its 5-byte prefix)
                                    and NNNNNNNN-<transport>.headers.json ({method, path,
                                    protocol, headers}), transport = http-protobuf, http-json
                                    or grpc, each file written to a temporary name and
                                    renamed. Numbering continues after the files present. */
    int max_depth;             /**< message nesting cap (protobuf messages, JSON objects);
                                    0: 64 */
    /** When set, every request needs "Authorization: Bearer" with one of these tokens, else
     *  401 + WWW-Authenticate: Bearer (gRPC UNAUTHENTICATED), decided in on_head before the
     *  body is read. Not owned; must outlive the listeners. */
    const fl_net_tokens_t *tokens;
    /** CORS for browser exporters (OTLP/HTTP); NULL: off. Not owned. */
    const fl_net_cors_t *cors;
    /** Masking and attribute limits (copied; the strings it points to must outlive the
     *  receiver). */
    fl_sanitize_opts_t sanitize;
    /** Spans per export request; past it 413 / RESOURCE_EXHAUSTED. 0: no limit. */
    size_t max_spans;
    /** Spans per trace across requests (fl_trace_limit_t with the default table size):
     *  spans past it are dropped before the sink, counted in spans_over_trace_limit and
     *  answered as partial success (rejected_spans, error_message naming the trace and the
     *  limit). A request refused after the count (503, store failure) gives it back.
     *  0: no limit. */
    size_t max_spans_per_trace;
} fl_receiver_opts_t;

typedef struct fl_receiver fl_receiver_t;

/** NULL on failure (e.g. capture_dir cannot be created: err says why). */
fl_receiver_t *fl_receiver_new(const fl_receiver_opts_t *opts, char *err, size_t errlen);
/** Finish queued decode jobs, wait for in-flight requests' sink callbacks (up to
 *  timeout_ms), then free. Order at shutdown: fl_net_shutdown (no new requests; in-flight
 *  ones are answered), then fl_receiver_free, then fl_net_free: queued jobs still answer
 *  their requests through net. If a sink callback is still outstanding at the deadline the
 *  receiver is leaked (with a warning) rather than freed under it. Accepts NULL. */
void fl_receiver_free(fl_receiver_t *r, int timeout_ms);
/** Handler for an OTLP/HTTP listener (HTTP/1.1 or h2). Both handlers recognise gRPC calls by
 *  content type (fl_net_req_is_grpc), so OTLP/HTTP and gRPC may also share one port.
 *  - POST /v1/traces, /v1/logs, /v1/metrics; Content-Type application/x-protobuf (also
 *    application/protobuf) or application/json, parameters ignored. The response uses the
 *    request's encoding.
 *  - Refused in on_head, before the body is read: unknown path 404, other methods 405
 *    (Allow: POST), other content types 415 (text/plain, naming the supported types), an
 *    unknown Content-Encoding 400, Content-Length over max_body 413, and overload 503 +
 *    Retry-After (+ Status with RetryInfo) when the in-flight byte budget is spent or the
 *    sink's would_block says so.
 *  - The body is decompressed and decoded on the decode pool (never on the net thread):
 *    413 past max_body after decompression, 400 with the decoder's message for a malformed
 *    body or a corrupt encoding. Error bodies are google.rpc.Status in the request's
 *    encoding.
 *  - Traces: the batch goes to sink.submit_take and the 200 (with partial_success when spans
 *    were rejected as invalid; duplicates count as success) is sent from the sink's done
 *    callback only. Sink refusal (FL_ERR_BUSY, FL_ERR_CLOSED) or a FL_ERR_BUSY /
 *    FL_ERR_STORE_FULL failure: 503 + Retry-After; any other failure: 500 with a message.
 *    A request with no valid span is answered at once (nothing to make durable).
 *  - Logs and metrics: faultline stores traces only. The request is decoded to count its
 *    items and answered 200 with partial_success {rejected_log_records /
 *    rejected_data_points = that count, error_message "faultline stores traces only; N log
 *    records were not stored"} (or "N data points"). SDKs log this as a warning and do not
 *    retry. */
fl_net_handler_t fl_receiver_http_handler(fl_receiver_t *r);
/** Handler for an OTLP/gRPC listener: /opentelemetry.proto.collector.trace.v1.TraceService/
 *  Export, and the LogsService / MetricsService Export methods answered as on HTTP. Unknown
 *  service or method and an unknown grpc-encoding: UNIMPLEMENTED. grpc-encoding identity,
 *  gzip, deflate, zstd, snappy. Malformed message: INVALID_ARGUMENT with the decoder's
 *  message; over max_body after decompression: RESOURCE_EXHAUSTED; overload: UNAVAILABLE
 *  with grpc-status-details-bin = google.rpc.Status carrying RetryInfo; store failure:
 *  INTERNAL. grpc-status 0 (with the partial success message) only after the sink's
 *  callback. */
fl_net_handler_t fl_receiver_grpc_handler(fl_receiver_t *r);

typedef struct fl_receiver_stats {
    uint64_t requests;         /**< requests seen by the handlers (any path or signal) */
    uint64_t spans_accepted;   /**< spans acknowledged (committed) */
    uint64_t spans_rejected;   /**< spans refused as invalid (partial success) */
    uint64_t spans_duplicate;  /**< acknowledged spans the sink reported as duplicates */
    uint64_t items_not_stored; /**< log records and data points answered as not stored */
    uint64_t requests_refused; /**< 503 / UNAVAILABLE for overload */
    uint64_t requests_failed;  /**< 4xx / 5xx other than overload */
    uint64_t inflight_bytes;
    uint64_t inflight_requests;
    uint64_t bytes_received;           /**< wire bytes of request bodies */
    uint64_t captures;                 /**< requests written to capture_dir */
    uint64_t requests_unauthenticated; /**< 401 / UNAUTHENTICATED */
    uint64_t requests_too_many_spans;  /**< 413 past max_spans */
    uint64_t attributes_masked;        /**< values masked (fl_sanitize_batch) */
    uint64_t attributes_dropped;       /**< attributes dropped past max_attributes */
    uint64_t values_truncated;         /**< values cut to max_value_length */
    uint64_t spans_over_trace_limit;   /**< spans dropped past max_spans_per_trace */
} fl_receiver_stats_t;

void fl_receiver_stats(fl_receiver_t *r, fl_receiver_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
