/* SPDX-License-Identifier: Apache-2.0 */
/* faultline demotrace: a minimal OpenTelemetry-style tracing library for C programs.
 * Spans with attributes, events and status; W3C Trace Context propagation; a batch span
 * processor feeding an OTLP/HTTP protobuf exporter thread (gzip, retries, Retry-After). */
#ifndef FAULTLINE_DEMOTRACE_H
#define FAULTLINE_DEMOTRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- trace context */

/** Longest tracestate kept (the W3C minimum every vendor must propagate). */
#define FL_DT_TRACESTATE_MAX 512
/** Most list-members a tracestate may hold. */
#define FL_DT_TRACESTATE_MEMBERS 32
/** Bytes needed for a formatted traceparent, NUL included ("00-<32>-<16>-<2>"). */
#define FL_DT_TRACEPARENT_LEN 56
/** The sampled bit of trace-flags. */
#define FL_DT_FLAG_SAMPLED 0x01

/** A span context: what crosses process boundaries. valid is 0 for "no parent". */
typedef struct fl_dt_context {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /**< trace-flags; only FL_DT_FLAG_SAMPLED is interpreted */
    int valid;     /**< 1 when trace_id and span_id are set and non-zero */
    int remote;    /**< 1 when extracted from a carrier (another process) */
    char tracestate[FL_DT_TRACESTATE_MAX + 1]; /**< normalised ("k=v,k=v"), "" when none */
} fl_dt_context_t;

/** Parse a traceparent header value exactly as W3C Trace Context says: version 00 is
 *  exactly 55 characters; a higher version (not ff) may carry more fields after a '-',
 *  which are ignored; ids and flags are lowercase hex; all-zero ids are invalid; leading
 *  and trailing spaces/tabs (HTTP OWS) are ignored. On success fills trace_id, span_id,
 *  flags, sets valid=1 and remote=1, clears tracestate, and returns 0. Returns -1 (ctx
 *  zeroed) for a NULL, malformed or invalid value. Never reads past the NUL. */
int fl_dt_traceparent_parse(const char *value, fl_dt_context_t *ctx);

/** Write "00-<trace-id>-<parent-id>-<flags>" for ctx into out (FL_DT_TRACEPARENT_LEN bytes).
 *  Only the sampled flag is propagated. Returns the length (55), or 0 when ctx is not valid
 *  (out is then ""). */
size_t fl_dt_traceparent_format(const fl_dt_context_t *ctx, char *out);

/** Validate and normalise a tracestate header value into out (outlen bytes, at least
 *  FL_DT_TRACESTATE_MAX + 1). Members are split on ',', OWS around them and empty members
 *  are dropped, keys and values are checked against the W3C grammar (simple-key or
 *  tenant@system key, value of 1..256 printable characters without ',' or '=' and not
 *  ending in a space). A duplicate key, an invalid member or more than 32 members makes
 *  the whole header invalid. When the normalised text exceeds FL_DT_TRACESTATE_MAX,
 *  members longer than 128 characters are dropped first, then members from the right.
 *  Returns the number of members kept (0 for an empty header), or -1 when invalid (out is
 *  then ""). */
int fl_dt_tracestate_parse(const char *value, char *out, size_t outlen);

/** Add or update key=value in ctx->tracestate: the entry moves to the front (W3C rules);
 *  the right-most member is dropped when 32 would be exceeded. Returns 0, or -1 when the
 *  key or value is invalid (the tracestate is unchanged). */
int fl_dt_tracestate_put(fl_dt_context_t *ctx, const char *key, const char *value);

/** Extract a parent context from incoming header values (either may be NULL). An invalid
 *  traceparent yields ctx->valid == 0 (the caller starts a new trace) and the tracestate is
 *  then ignored, as the spec requires; an invalid tracestate alone is dropped. */
void fl_dt_extract(const char *traceparent, const char *tracestate, fl_dt_context_t *ctx);

/* ---------------------------------------------------------------- attributes */

typedef enum fl_dt_attr_type {
    FL_DT_ATTR_STRING = 1,
    FL_DT_ATTR_BOOL = 2,
    FL_DT_ATTR_INT = 3,
    FL_DT_ATTR_DOUBLE = 4
} fl_dt_attr_type_t;

/** One attribute; key and s are owned by whatever holds the attribute. */
typedef struct fl_dt_attr {
    char *key;
    fl_dt_attr_type_t type;
    union {
        char *s;
        int b;
        int64_t i;
        double d;
    } v;
} fl_dt_attr_t;

/** Parse OTEL_RESOURCE_ATTRIBUTES text ("k=v,k=v", keys and values percent-decoded, OWS
 *  around them trimmed, empty members skipped) into a malloc'd array of string attributes
 *  (*out, *n). A later duplicate key replaces the earlier one. As the OpenTelemetry spec
 *  asks, any error (a member without '=', an empty key, a bad %-escape) discards the whole
 *  value: returns -1 with *out NULL and *n 0, and err (may be NULL) says why. NULL or ""
 *  gives 0 attributes. Free with fl_dt_attrs_free. */
int fl_dt_resource_attrs_parse(const char *text, fl_dt_attr_t **out, size_t *n, char *err,
                               size_t errlen);
/** Free an attribute array from fl_dt_resource_attrs_parse. Accepts NULL. */
void fl_dt_attrs_free(fl_dt_attr_t *attrs, size_t n);

/* ---------------------------------------------------------------- tracer */

/** Span kinds (the OTLP values). */
typedef enum fl_dt_kind {
    FL_DT_KIND_INTERNAL = 1,
    FL_DT_KIND_SERVER = 2,
    FL_DT_KIND_CLIENT = 3,
    FL_DT_KIND_PRODUCER = 4,
    FL_DT_KIND_CONSUMER = 5
} fl_dt_kind_t;

/** Span status codes (the OTLP values). */
typedef enum fl_dt_status {
    FL_DT_STATUS_UNSET = 0,
    FL_DT_STATUS_OK = 1,
    FL_DT_STATUS_ERROR = 2
} fl_dt_status_t;

/** Tracer settings. Zero / NULL fields take the defaults shown. */
typedef struct fl_dt_config {
    const char *service_name;    /**< service.name; NULL: "unknown_service" */
    const char *service_version; /**< service.version; NULL: not set */
    /** Full URL of the traces endpoint ("http://127.0.0.1:4318/v1/traces"); https uses TLS.
     *  NULL: http://localhost:4318/v1/traces. "" or "none" disables export (spans are
     *  still counted, then discarded). */
    const char *endpoint;
    const fl_dt_attr_t *resource_attrs; /**< extra resource attributes (copied) */
    size_t n_resource_attrs;
    size_t max_queue;         /**< spans buffered for export; 0: 2048 */
    size_t max_batch;         /**< spans per export request; 0: 512 */
    int schedule_delay_ms;    /**< export at least this often; 0: 1000 */
    int export_timeout_ms;    /**< per HTTP attempt; 0: 10000 */
    int retry_initial_ms;     /**< first backoff; 0: 500 (doubles, +/-20 % jitter) */
    int retry_max_ms;         /**< cap on one backoff or Retry-After wait; 0: 5000 */
    int retry_max_elapsed_ms; /**< give a batch up after retrying this long; 0: 15000 */
    int no_gzip;              /**< send uncompressed */
    int quiet;                /**< do not log export failures */
} fl_dt_config_t;

/** Fill cfg from the standard environment: OTEL_SERVICE_NAME (else service.name from
 *  OTEL_RESOURCE_ATTRIBUTES, else default_service), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used
 *  as is), else OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: "/v1/traces" is appended),
 *  OTEL_EXPORTER_OTLP_TIMEOUT (ms), OTEL_EXPORTER_OTLP_COMPRESSION (gzip|none),
 *  OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY (ms),
 *  OTEL_SDK_DISABLED=true (export off). Strings are stored in env, which the caller zeroes
 *  and keeps alive as long as cfg is used. A bad OTEL_RESOURCE_ATTRIBUTES is ignored with a
 *  warning on stderr. Fields already set in cfg are overwritten only by variables that are
 *  present. Returns 0. */
typedef struct fl_dt_env {
    char service_name[256];
    char endpoint[1024];
    fl_dt_attr_t *attrs;
    size_t n_attrs;
} fl_dt_env_t;
int fl_dt_config_from_env(fl_dt_config_t *cfg, fl_dt_env_t *env, const char *default_service);
/** Release what fl_dt_config_from_env stored in env. */
void fl_dt_env_dispose(fl_dt_env_t *env);

/** Build the traces URL from a base endpoint as OTEL_EXPORTER_OTLP_ENDPOINT means it:
 *  "http://h:4318" and "http://h:4318/" give "http://h:4318/v1/traces", "http://h/x" gives
 *  "http://h/x/v1/traces". Returns 0, or -1 when out is too small. */
int fl_dt_traces_url(const char *base, char *out, size_t outlen);

typedef struct fl_dt_tracer fl_dt_tracer_t;

/** Create a tracer and start its exporter thread. NULL on bad settings (an endpoint URL
 *  that cannot be parsed) or OOM. */
fl_dt_tracer_t *fl_dt_tracer_new(const fl_dt_config_t *cfg);
/** Export everything ended so far; wait at most timeout_ms. 0 when the queue was emptied
 *  and exported (or given up on: see stats), -1 on timeout. */
int fl_dt_tracer_flush(fl_dt_tracer_t *t, int timeout_ms);
/** Flush (at most timeout_ms; retries are cut short), stop the exporter thread and free.
 *  Spans still open must not be used afterwards. Accepts NULL. */
void fl_dt_tracer_free(fl_dt_tracer_t *t, int timeout_ms);
/** The service.name the tracer reports. */
const char *fl_dt_tracer_service(const fl_dt_tracer_t *t);

/** Counters (monotonic since creation). */
typedef struct fl_dt_stats {
    uint64_t spans_started;
    uint64_t spans_ended;         /**< sampled spans handed to the processor */
    uint64_t spans_dropped;       /**< refused because the queue was full */
    uint64_t spans_exported;      /**< acknowledged with 2xx */
    uint64_t spans_failed;        /**< given up on (non-retryable answer or retries exhausted) */
    uint64_t export_requests;     /**< HTTP attempts, retries included */
    uint64_t export_retries;      /**< attempts that were retries */
    uint64_t last_retry_after_ms; /**< last Retry-After honoured (0: none) */
    int last_status;              /**< HTTP status of the last attempt; -1 for a transport error */
} fl_dt_stats_t;

void fl_dt_tracer_stats(fl_dt_tracer_t *t, fl_dt_stats_t *out);

/* ---------------------------------------------------------------- spans */

typedef struct fl_dt_span fl_dt_span_t;

/** Start a span now. parent NULL or not valid: a new trace (root span, sampled); else the
 *  span joins parent's trace, inherits its flags and tracestate. An unsampled span is
 *  created (its context propagates) but records nothing and is never exported. Returns
 *  NULL only on OOM; every span function accepts a NULL span and does nothing. */
fl_dt_span_t *fl_dt_span_start(fl_dt_tracer_t *t, const char *name, fl_dt_kind_t kind,
                               const fl_dt_context_t *parent);
/** As fl_dt_span_start with an explicit start time (unix ns). */
fl_dt_span_t *fl_dt_span_start_at(fl_dt_tracer_t *t, const char *name, fl_dt_kind_t kind,
                                  const fl_dt_context_t *parent, uint64_t start_ns);
/** The span's own context (for children and for injection). */
const fl_dt_context_t *fl_dt_span_context(const fl_dt_span_t *s);
/** Rename the span (e.g. once the route is known). */
void fl_dt_span_set_name(fl_dt_span_t *s, const char *name);
/** Set an attribute; a key set twice keeps the last value. Strings are copied. */
void fl_dt_span_set_str(fl_dt_span_t *s, const char *key, const char *value);
void fl_dt_span_set_int(fl_dt_span_t *s, const char *key, int64_t value);
void fl_dt_span_set_double(fl_dt_span_t *s, const char *key, double value);
void fl_dt_span_set_bool(fl_dt_span_t *s, const char *key, int value);
/** Add an event now with attrs (copied; may be NULL with n 0). */
void fl_dt_span_add_event(fl_dt_span_t *s, const char *name, const fl_dt_attr_t *attrs, size_t n);
/** Add an "exception" event with exception.type, exception.message and (when not NULL)
 *  exception.stacktrace. Does not change the status. */
void fl_dt_span_record_exception(fl_dt_span_t *s, const char *type, const char *message,
                                 const char *stacktrace);
/** Set the status. The description is kept only for ERROR (as the spec says); once OK is
 *  set, later ERROR/UNSET are ignored, and UNSET never overrides. */
void fl_dt_span_set_status(fl_dt_span_t *s, fl_dt_status_t code, const char *description);
/** The status currently set. */
fl_dt_status_t fl_dt_span_status(const fl_dt_span_t *s);
/** Format the span's traceparent (see fl_dt_traceparent_format). */
size_t fl_dt_span_traceparent(const fl_dt_span_t *s, char *out);
/** End the span now and hand it to the batch processor; the span is freed and must not be
 *  used again. Never blocks on export: when the queue is full the span is dropped and
 *  counted. */
void fl_dt_span_end(fl_dt_span_t *s);
/** As fl_dt_span_end with an explicit end time (unix ns). */
void fl_dt_span_end_at(fl_dt_span_t *s, uint64_t end_ns);

/* ---------------------------------------------------------------- ids */

/** Fill buf with n random bytes (a per-thread generator seeded from the kernel; not for
 *  cryptography). Never all zero for n >= 8. */
void fl_dt_random_id(uint8_t *buf, size_t n);
/** A uniform double in [0, 1) from the same per-thread generator. */
double fl_dt_random_unit(void);

#ifdef __cplusplus
}
#endif
#endif
