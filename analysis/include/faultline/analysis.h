/* SPDX-License-Identifier: Apache-2.0 */
/* faultline analysis: RED rollups maintained from observed spans, caller -> callee edges with
 * self time and network gap, self-learning baselines, anomaly detectors and the dependency
 * graph. Event time only (the clock is the watermark); no sockets, no logging, no SQL. */
#ifndef FAULTLINE_ANALYSIS_H
#define FAULTLINE_ANALYSIS_H

#include <faultline/common.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threading. One engine (fl_analysis_t) is shared by three kinds of callers:
 *  - the store writer calls fl_analysis_observe() with every committed span;
 *  - one analysis thread (or the API on POST /aiops/analyze) calls fl_analysis_run();
 *  - any number of API threads call the query functions.
 * observe and run serialise on a short ingest lock (run holds it only to take the sealed
 * buckets); queries take a reader lock that observe never takes, so a slow query never
 * stalls ingest. Every function here is safe to call concurrently with the others, except
 * fl_analysis_free() and fl_analysis_restore() (no other call may be running).
 *
 * Errors. Functions return FL_OK or a negative fl_err_t from common.h: FL_ERR_INVALID
 * (bad argument), FL_ERR_NOMEM, FL_ERR_DECODE (malformed blob), FL_ERR_UNSUPPORTED (blob
 * of a newer format version), FL_ERR_CONFLICT (state does not allow it), FL_ERR_NOT_FOUND.
 *
 * Result memory. Query functions fill plain structs whose arrays and strings are allocated
 * in the caller's arena; they stay valid until the arena is reset, independently of the
 * engine. Durations in results are milliseconds (double), times are unix nanoseconds.
 */

/* ---------------------------------------------------------------- latency sketch */

/** Relative accuracy of every quantile a sketch returns: |estimate - exact| <= 1 % of exact
 *  (exact = the sample at rank floor(q * (count - 1)) of the sorted values). */
#define FL_SKETCH_REL_ACCURACY 0.01

/** A mergeable quantile sketch of non-negative durations in nanoseconds (DDSketch-style
 *  logarithmic buckets, stored sparsely: about 6 bytes per distinct bucket in memory and
 *  2-3 bytes encoded). Count, sum, min and max are exact. Not thread-safe. */
typedef struct fl_sketch fl_sketch_t;

/** New empty sketch; NULL on OOM. */
fl_sketch_t *fl_sketch_new(void);
/** Free a sketch. Accepts NULL. */
void fl_sketch_free(fl_sketch_t *s);
/** Forget every value, keeping the memory. */
void fl_sketch_clear(fl_sketch_t *s);
/** Add one value. FL_OK or FL_ERR_NOMEM (the sketch is unchanged then). */
int fl_sketch_add(fl_sketch_t *s, uint64_t value_ns);
/** Add a value n times. FL_OK or FL_ERR_NOMEM. */
int fl_sketch_add_n(fl_sketch_t *s, uint64_t value_ns, uint64_t n);
/** dst becomes the sketch of the union of both inputs' values. FL_OK or FL_ERR_NOMEM. */
int fl_sketch_merge(fl_sketch_t *dst, const fl_sketch_t *src);
/** Number of values added. */
uint64_t fl_sketch_count(const fl_sketch_t *s);
/** Exact sum of the values (saturates at UINT64_MAX). */
uint64_t fl_sketch_sum_ns(const fl_sketch_t *s);
/** Exact smallest / largest value (0 when empty). */
uint64_t fl_sketch_min_ns(const fl_sketch_t *s);
uint64_t fl_sketch_max_ns(const fl_sketch_t *s);
/** Exact mean (0 when empty). */
double fl_sketch_mean_ns(const fl_sketch_t *s);
/** The q-quantile (0 <= q <= 1) within FL_SKETCH_REL_ACCURACY; 0 when empty. */
double fl_sketch_quantile_ns(const fl_sketch_t *s, double q);
/** Number of values >= value_ns, counted by bucket (exact to within one bucket). */
uint64_t fl_sketch_count_above(const fl_sketch_t *s, uint64_t value_ns);
/** Distinct logarithmic buckets in use. */
size_t fl_sketch_bins(const fl_sketch_t *s);
/** Heap bytes the sketch uses, struct included. */
size_t fl_sketch_bytes(const fl_sketch_t *s);
/** Append the versioned binary encoding of s to out. FL_OK, FL_ERR_NOMEM, FL_ERR_LIMIT. */
int fl_sketch_encode(const fl_sketch_t *s, fl_buf_t *out);
/** Replace s with the sketch encoded at data. *used (may be NULL) receives the bytes read.
 *  FL_ERR_DECODE (truncated or inconsistent), FL_ERR_UNSUPPORTED (newer version),
 *  FL_ERR_NOMEM; s is left empty on error. */
int fl_sketch_decode(fl_sketch_t *s, const void *data, size_t len, size_t *used);

/* ---------------------------------------------------------------- EWMA */

/** An exponentially weighted mean and variance. Zero-initialise before use. */
typedef struct fl_ewma {
    double mean; /**< weighted mean */
    double var;  /**< weighted variance around the mean */
    uint64_t n;  /**< values added */
} fl_ewma_t;

/** alpha for an EWMA that forgets with time constant window_ns when fed once per bucket:
 *  1 - exp(-bucket_ns / window_ns) (10 s buckets, 1 h window: 0.00277). */
double fl_ewma_alpha(uint64_t bucket_ns, uint64_t window_ns);
/** Add x. The weight is max(alpha, 1/n): the first 1/alpha values form a plain running mean
 *  and variance, so a young baseline is not biased towards its zero start. */
void fl_ewma_update(fl_ewma_t *e, double x, double alpha);
/** Standard deviation (sqrt of var, 0 when var < 0 through rounding). */
double fl_ewma_sd(const fl_ewma_t *e);

/* ---------------------------------------------------------------- naming */

/** The operation name analysis uses for a span: the span name, except
 *  - when the name carries ids (a run of 3+ digits, an all-digit segment, a uuid, 8+ hex
 *    characters with a digit) or is only the HTTP method, and http.route is set:
 *    "METHOD /route" (method from http.request.method or http.method; route alone if none);
 *  - when it carries ids and there is no route: the name with each id segment replaced by
 *    "{id}" and any query string ("?...") removed ("GET /user/123" -> "GET /user/{id}").
 *  Writes a NUL-terminated name (truncated to cap - 1 bytes) and returns its length. */
size_t fl_analysis_op_name(const fl_span_t *span, char *out, size_t cap);
/** The virtual node a CLIENT span (or a span with db.system) calls when no instrumented
 *  server answers it: peer.service; else db.system + "/" + db.name (or db.namespace), e.g.
 *  "sqlite/shop", or db.system alone; else server.address (else net.peer.name). Returns the
 *  length written (0 and out = "" when the span names no peer). */
size_t fl_analysis_peer_name(const fl_span_t *span, char *out, size_t cap);
/** 1 when the text contains id-like segments (see fl_analysis_op_name). */
int fl_analysis_name_has_ids(const char *name, size_t len);

/** Self time of every span of one trace: its duration minus the union of its children's
 *  intervals clipped to it, so overlapping (async) children count once and work after the
 *  parent ended does not count. Children are matched by parent span id among the given
 *  spans; a consumer linked to its producer is not the producer's child. self_ns[i] is
 *  written for spans[i]. FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_analysis_trace_self_time(const fl_span_t *spans, size_t n, uint64_t *self_ns);

/* ---------------------------------------------------------------- options */

/** Engine options. Get the defaults with fl_analysis_opts_default(), then change fields.
 *  The MVP's environment variables map to: BASELINE_WINDOW -> baseline_window_ns,
 *  ANOMALY_THRESHOLD -> anomaly_threshold, ERROR_RATE_THRESHOLD -> error_rate_threshold. */
typedef struct fl_analysis_opts {
    uint64_t bucket_ns;          /**< rollup bucket width (10 s); 1 s .. 1 h */
    uint64_t grace_ns;           /**< a bucket closes when watermark >= end + grace (5 s) */
    uint64_t baseline_window_ns; /**< EWMA memory (1 h); >= 2 buckets */
    double anomaly_threshold;    /**< latency: observed / baseline ratio to flag (3.0) */
    double error_rate_threshold; /**< error rate to flag (0.2) */
    double z_threshold;          /**< significance: z-score to flag (3.0) */
    uint32_t max_series;         /**< endpoint + operation + edge series cap (10,000) */
    uint32_t window_capacity;    /**< compact span records kept for pairing (131,072) */
    uint32_t min_requests;       /**< a baseline is trusted after this many requests (10) */
    uint32_t min_buckets;        /**< ... and this many trained buckets (5) */
    uint32_t min_samples;        /**< requests a bucket needs for latency/error tests (5) */
    uint32_t confirm_k;          /**< a non-severe condition must hold in k ... (2) */
    uint32_t confirm_n;          /**< ... of the last n evaluated buckets (3); n <= 8 */
    uint32_t clear_buckets;      /**< an anomaly ends after this many clear buckets (3) */
    double min_latency_delta_ms; /**< ignore latency rises smaller than this (1 ms) */
    size_t history_max_bytes;    /**< memory for closed rollups, all tiers (48 MiB) */
    uint32_t max_pending;        /**< sealed buckets waiting for run before the oldest is
                                      dropped (720 = 2 h of 10 s buckets) */
    uint32_t max_anomalies;      /**< closed anomalies kept for queries (10,000) */
} fl_analysis_opts_t;

/** Fill o with the defaults above. */
void fl_analysis_opts_default(fl_analysis_opts_t *o);
/** FL_OK, or FL_ERR_INVALID with *why (may be NULL) naming the bad option. */
int fl_analysis_opts_check(const fl_analysis_opts_t *o, const char **why);

/* ---------------------------------------------------------------- engine */

typedef struct fl_analysis fl_analysis_t;

/** New engine (opts NULL: defaults). NULL on invalid options (see fl_analysis_opts_check)
 *  or OOM. Memory is bounded by the options: window_capacity * 144 bytes (80-byte records
 *  plus two hash tables at half load), about 2 KiB per series (baselines, detector state,
 *  hour-of-day profile, recent history) plus ~300 bytes per series per open bucket,
 *  history_max_bytes, and at most max_pending sealed buckets. Defaults: ~19 MB window,
 *  ~20 MB at the 10,000-series cap, 48 MiB history. */
fl_analysis_t *fl_analysis_new(const fl_analysis_opts_t *opts);
/** Free the engine and everything it holds. Accepts NULL. */
void fl_analysis_free(fl_analysis_t *a);

/** Feed committed, deduplicated spans (any order, any batch boundaries). Cheap: a few
 *  hundred ns per span; takes only the ingest lock. Reads the spans during the call only.
 *  Each span advances the watermark (the latest end time seen); buckets whose end + grace is
 *  at or before the watermark are sealed here (pairing finished, rollups frozen) and wait
 *  for fl_analysis_run. A span ending in an already sealed bucket is late: it is counted
 *  and left out of the rollups. Returns FL_OK or FL_ERR_NOMEM (spans after the failure are
 *  still processed where memory allows; the count of lost spans is in the status). */
int fl_analysis_observe(fl_analysis_t *a, const fl_span_t *spans, size_t n);

/** Kind of anomaly. */
typedef enum fl_anomaly_kind {
    FL_ANOMALY_LATENCY = 1,       /**< latency (endpoint, self time, edge call or gap) */
    FL_ANOMALY_ERROR = 2,         /**< error rate */
    FL_ANOMALY_TIMEOUT = 3,       /**< no successful answers / durations at a deadline */
    FL_ANOMALY_TRAFFIC = 4,       /**< request rate drop or surge */
    FL_ANOMALY_NEW_ERROR_TYPE = 5 /**< an exception.type / error.type never seen there */
} fl_anomaly_kind_t;

/** What the anomaly was measured on. */
typedef enum fl_subject {
    FL_SUBJECT_ENDPOINT = 1,  /**< an entry operation's requests (service, operation) */
    FL_SUBJECT_SELF_TIME = 2, /**< an operation's self time (exclusive of its children) */
    FL_SUBJECT_EDGE = 3,      /**< calls caller -> callee, seen from the caller */
    FL_SUBJECT_EDGE_GAP = 4   /**< caller-side minus callee-side duration (network/queue) */
} fl_subject_t;

/** Severity, from the MVP's table (latency: ratio 3-5 low, 5-10 medium, 10-20 high, > 20 or
 *  observed > 10 s critical; other kinds: see docs/analysis.md). */
typedef enum fl_severity {
    FL_SEV_LOW = 1,
    FL_SEV_MEDIUM = 2,
    FL_SEV_HIGH = 3,
    FL_SEV_CRITICAL = 4
} fl_severity_t;

/** Lowercase names for JSON: "latency", "error", "timeout", "traffic", "new_error_type";
 *  "endpoint", "self_time", "edge", "edge_gap"; "low", "medium", "high", "critical".
 *  Unknown values give "unknown". */
const char *fl_anomaly_kind_name(int kind);
const char *fl_subject_name(int subject);
const char *fl_severity_name(int severity);

#define FL_ANOMALY_MAX_TRACES 4

/** One anomaly with its evidence. Strings live in the caller's arena. */
typedef struct fl_anomaly {
    uint64_t id;                  /**< stable: a hash of subject, kind and start, so a replay
                                       of the same spans gives the same ids */
    fl_anomaly_kind_t kind;       /**< latency | error | timeout | traffic | new_error_type */
    fl_subject_t subject;         /**< what was measured */
    const char *service;          /**< the service blamed: endpoint/operation owner, or the
                                       callee of an edge (a virtual peer name for peers) */
    const char *operation;        /**< its operation (callee operation for edges) */
    const char *caller_service;   /**< edges: the caller; NULL otherwise */
    const char *caller_operation; /**< edges: the caller's entry operation ("" if unknown) */
    int virtual_peer;             /**< 1 when service is an uninstrumented peer */
    const char *metric;           /**< the statistic: "mean", "p95", "error_rate",
                                       "no_success", "deadline", "unanswered", "rate",
                                       "error_type" */
    const char *unit;             /**< "ms", "ratio" (0..1) or "req/s" */
    const char *direction;        /**< traffic: "drop" or "surge"; NULL otherwise */
    const char *error_type;       /**< new_error_type: the new type; NULL otherwise */
    uint64_t start_ns;            /**< start of the first bucket in which it held */
    uint64_t end_ns;              /**< end of the last bucket in which it held */
    uint64_t detected_ns;         /**< event time it was confirmed (end of that bucket) */
    int open;                     /**< 1 while still active */
    int accepted;                 /**< 1 when it ended because it lasted a whole baseline
                                       window: the series relearns it as the new normal */
    double observed;              /**< worst bucket's value, in unit */
    double baseline;              /**< learned normal value at that bucket, in unit */
    double ratio;                 /**< observed / baseline (0 when baseline is 0) */
    double z;                     /**< z-score (or -log10 p for the count tests) */
    uint64_t samples;             /**< requests in the buckets where it held */
    uint64_t buckets;             /**< buckets in which it held */
    fl_severity_t severity;       /**< worst severity reached */
    const char *summary;          /**< one sentence, e.g. "Latency spike: 1250ms (baseline:
                                       180ms)" */
    size_t n_trace_ids;           /**< example traces (slowest or erroring), <= 4 */
    uint8_t trace_ids[FL_ANOMALY_MAX_TRACES][16];
} fl_anomaly_t;

/** What one fl_analysis_run changed. */
typedef struct fl_analysis_run_result {
    uint64_t watermark_ns;    /**< the watermark the run used */
    uint64_t closed_until_ns; /**< every bucket ending at or before this is closed */
    uint32_t buckets_closed;  /**< buckets processed by this run */
    uint32_t opened;          /**< anomalies opened */
    uint32_t updated;         /**< open anomalies that held again */
    uint32_t closed;          /**< anomalies that ended */
    uint64_t duration_ns;     /**< wall time the run took */
    fl_anomaly_t *changed;    /**< the opened/updated/closed anomalies (arena given) */
    size_t n_changed;
    uint64_t *bucket_starts; /**< start of each closed bucket, oldest first (arena given;
                                  pass them to fl_analysis_export_bucket to persist) */
    size_t n_buckets;
} fl_analysis_run_result_t;

/** Close every bucket whose end + grace <= watermark, learn baselines from them, run the
 *  detectors and update anomalies. watermark_ns 0 uses the watermark observed from spans; a
 *  larger value first advances it (never backwards; e.g. UINT64_MAX at the end of a replay
 *  closes everything). Results are a function of the observed span sequence alone (event
 *  time), so batch boundaries and the moment run is called do not change them. arena may
 *  be NULL (then out gets counts only); out may be NULL. FL_OK or FL_ERR_NOMEM. */
int fl_analysis_run(fl_analysis_t *a, uint64_t watermark_ns, fl_arena_t *arena,
                    fl_analysis_run_result_t *out);

/* ---------------------------------------------------------------- queries */

/** A query's time range and filters. start/end 0: unbounded. Buckets overlapping
 *  [start, end) are included whole; ranges older than the finest history tier are answered
 *  at the coarser tier's resolution (5 min, then 1 h). */
typedef struct fl_analysis_filter {
    uint64_t start_ns;
    uint64_t end_ns;
    const char *service;   /**< only this service (NULL: all) */
    const char *operation; /**< only this operation (NULL: all) */
    int open_only;         /**< anomalies: only the open ones */
} fl_analysis_filter_t;

/** One HTTP status code and how many requests answered it (code 0: no HTTP status). */
typedef struct fl_status_count {
    int code;
    uint64_t count;
} fl_status_count_t;

/** RED metrics of one endpoint over the range. */
typedef struct fl_endpoint_metrics {
    const char *service;
    const char *operation;
    uint64_t request_count;
    uint64_t error_count;   /**< status ERROR, or HTTP >= 500 on the server span */
    uint64_t timeout_count; /**< requests that look like timeouts (408/504, "timeout") */
    double error_rate;      /**< error_count / request_count */
    double rate_per_s;      /**< request_count / covered seconds */
    double avg_ms, p50_ms, p95_ms, p99_ms, max_ms;
    double self_p50_ms, self_p95_ms;                /**< self time (exclusive of children) */
    double baseline_latency_ms;                     /**< current learned mean latency (0 if none) */
    double baseline_p95_ms;                         /**< current learned p95 latency */
    double baseline_error_rate;                     /**< current learned error rate */
    int baseline_trusted;                           /**< 1 when the baseline has enough samples */
    uint64_t status_unset, status_ok, status_error; /**< OpenTelemetry span status */
    fl_status_count_t *statuses;                    /**< HTTP status distribution, by code */
    size_t n_statuses;
} fl_endpoint_metrics_t;

typedef struct fl_analysis_metrics {
    uint64_t start_ns, end_ns;    /**< the range actually covered (bucket-aligned) */
    fl_endpoint_metrics_t *items; /**< sorted by service, then operation */
    size_t n;
} fl_analysis_metrics_t;

/** Per-endpoint metrics over a range (filter->service / operation narrow it; filter NULL:
 *  all history). FL_OK, FL_ERR_INVALID (a, arena or out NULL), FL_ERR_NOMEM. */
int fl_analysis_metrics(fl_analysis_t *a, const fl_analysis_filter_t *filter, fl_arena_t *arena,
                        fl_analysis_metrics_t *out);

/** One point of a baseline's recent history (sampled every 5 minutes of event time; the
 *  last 24 points, i.e. two hours, are kept). */
typedef struct fl_baseline_point {
    uint64_t time_ns;
    double mean_ms, p95_ms, error_rate, rate_per_s;
} fl_baseline_point_t;

/** The learned baseline of one series. */
typedef struct fl_baseline_info {
    fl_subject_t subject; /**< ENDPOINT, SELF_TIME (operation) or EDGE */
    const char *service;  /**< endpoint / operation owner, or edge callee */
    const char *operation;
    const char *caller_service;   /**< edges only */
    const char *caller_operation; /**< edges only */
    int virtual_peer;
    double mean_ms;                 /**< typical per-bucket mean latency: exp(EWMA of ln(mean)) */
    double mean_spread;             /**< bucket-to-bucket std dev of ln(mean): 0.1 = about 10 % */
    double p95_ms;                  /**< typical per-bucket p95 latency, learned the same way */
    double p95_spread;              /**< std dev of ln(p95) */
    double aux_mean_ms, aux_p95_ms; /**< self time (endpoints, operations) or gap (edges),
                                         learned the same way */
    double error_rate;              /**< learned error rate */
    double rate_per_s, rate_sd;     /**< learned request rate (hour-of-day profile if active) */
    double confidence;              /**< 0..1: min(1, buckets/30) * min(1, requests/100) */
    int trusted;                    /**< detectors use it (>= min_requests, >= min_buckets) */
    int hourly;                     /**< 1 when the hour-of-day profile is in use */
    uint64_t trained_buckets;       /**< buckets learned from */
    uint64_t trained_requests;      /**< requests in those buckets */
    uint64_t skipped_anomalous;     /**< buckets not learned because anomalous */
    uint64_t skipped_outliers;      /**< values not learned because beyond 5 sigma */
    uint64_t first_ns, updated_ns;  /**< first and latest trained bucket */
    fl_baseline_point_t *history;   /**< oldest first */
    size_t n_history;
} fl_baseline_info_t;

typedef struct fl_analysis_baselines {
    fl_baseline_info_t *items; /**< endpoints, then operations, then edges; by name */
    size_t n;
} fl_analysis_baselines_t;

/** Current baselines (filter: service/operation only; the time range is ignored).
 *  FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_analysis_baselines(fl_analysis_t *a, const fl_analysis_filter_t *filter, fl_arena_t *arena,
                          fl_analysis_baselines_t *out);

typedef struct fl_analysis_anomalies {
    fl_anomaly_t *items; /**< by start time, then id */
    size_t n;
} fl_analysis_anomalies_t;

/** Anomalies overlapping the range (open ones always overlap a range that reaches the
 *  present); filter->service matches the blamed service or an edge's caller;
 *  filter->open_only lists only open anomalies with their example trace ids. Root-cause
 *  ranking starts here. FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_analysis_anomalies(fl_analysis_t *a, const fl_analysis_filter_t *filter, fl_arena_t *arena,
                          fl_analysis_anomalies_t *out);

/** A service node. */
typedef struct fl_graph_node {
    const char *name;
    int virtual_peer;  /**< uninstrumented peer named by a caller's attributes */
    uint64_t requests; /**< entry requests received (calls for virtual peers) */
    uint64_t errors;
    uint32_t dependents;   /**< nodes that call it directly or transitively */
    uint32_t dependencies; /**< nodes it calls directly or transitively */
    int in_cycle;
} fl_graph_node_t;

/** An operation node (entry operations, internal operations, and peer operations). */
typedef struct fl_graph_op {
    uint32_t node; /**< index into nodes */
    const char *service;
    const char *operation;
    int entry; /**< 1: SERVER/CONSUMER/root operation (an endpoint) */
    uint64_t count, errors;
    double p50_ms, p95_ms, self_p95_ms;
} fl_graph_op_t;

/** A caller -> callee edge (between services, or between operations). */
typedef struct fl_graph_edge {
    uint32_t caller, callee; /**< node indices (service edges) or op indices (op edges) */
    const char *caller_name; /**< caller service (op edges: "service:operation") */
    const char *callee_name;
    uint64_t calls, errors;
    uint64_t unanswered; /**< client calls whose server span never arrived */
    double error_rate;
    double p50_ms, p95_ms;         /**< caller-side latency */
    double gap_p50_ms, gap_p95_ms; /**< caller-side minus callee-side duration */
    uint32_t criticality;          /**< nodes depending on this edge: the caller and everything
                                        that reaches it */
    int async;                     /**< producer -> consumer */
    int virtual_peer;              /**< callee is an uninstrumented peer */
} fl_graph_edge_t;

/** A dependency cycle: the services of one strongly connected component. */
typedef struct fl_graph_cycle {
    uint32_t *nodes;
    size_t n;
} fl_graph_cycle_t;

typedef struct fl_graph {
    uint64_t start_ns, end_ns;
    fl_graph_node_t *nodes; /**< every service with data in the range, by name */
    size_t n_nodes;
    fl_graph_edge_t *edges; /**< service -> service, by caller then callee */
    size_t n_edges;
    fl_graph_op_t *ops; /**< by service then operation */
    size_t n_ops;
    fl_graph_edge_t *op_edges; /**< operation -> operation (caller/callee index ops) */
    size_t n_op_edges;
    fl_graph_cycle_t *cycles;
    size_t n_cycles;
} fl_graph_t;

/** The dependency graph over a range, built from the rollups (filter: range only; NULL: all
 *  history). op_edges give who calls whom per operation, for walking the graph from an
 *  anomaly to its callees. FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_analysis_graph(fl_analysis_t *a, const fl_analysis_filter_t *filter, fl_arena_t *arena,
                      fl_graph_t *out);

/** Status figures (no arena needed). */
typedef struct fl_analysis_status {
    uint64_t watermark_ns;      /**< latest span end seen (or given to run) */
    uint64_t closed_until_ns;   /**< buckets ending at or before this are closed */
    uint64_t analyzed_until_ns; /**< ... and analysed by run */
    uint64_t last_run_wall_ns;  /**< wall clock of the last run (0: never) */
    uint64_t last_run_duration_ns;
    uint64_t runs;
    uint64_t spans_observed;
    uint64_t spans_late; /**< ended in an already closed bucket: not in rollups */
    uint64_t spans_lost; /**< dropped by OOM */
    uint32_t series_endpoints, series_operations, series_edges, series_total;
    uint64_t series_refused; /**< span contributions refused by the max_series cap */
    uint32_t window_capacity, window_used;
    uint64_t window_evictions;  /**< records pushed out before their bucket closed */
    uint64_t unmatched_clients; /**< client spans with no server child and no peer name */
    uint32_t pending_buckets;   /**< sealed, waiting for run */
    uint64_t dropped_buckets;   /**< sealed buckets dropped because run fell behind */
    size_t history_bytes;
    uint64_t history_oldest_ns; /**< oldest bucket still held in memory */
    uint32_t anomalies_open;
    uint64_t anomalies_total;
} fl_analysis_status_t;

/** Fill out; never waits for ingest. FL_OK, FL_ERR_INVALID. */
int fl_analysis_status(fl_analysis_t *a, fl_analysis_status_t *out);

/* ---------------------------------------------------------------- persistence */

/** Serialise the learned state (names, series, baselines, detector state, known error types,
 *  hour-of-day profiles, anomalies, watermark) as one versioned blob appended to out. The
 *  span window, open buckets and rollup history are not included (history is persisted per
 *  bucket with fl_analysis_export_bucket). FL_OK, FL_ERR_NOMEM, FL_ERR_LIMIT. */
int fl_analysis_save(fl_analysis_t *a, fl_buf_t *out);
/** Load a blob from fl_analysis_save into a fresh engine (no span observed yet; else
 *  FL_ERR_CONFLICT). The engine's bucket width must match (FL_ERR_INVALID). FL_ERR_DECODE,
 *  FL_ERR_UNSUPPORTED, FL_ERR_NOMEM; on error the engine is unusable and must be freed. */
int fl_analysis_restore(fl_analysis_t *a, const void *data, size_t len);
/** Append the closed rollups of the bucket starting at bucket_start_ns (self-contained:
 *  names included) to out. FL_ERR_NOT_FOUND when that bucket is not in the finest tier. */
int fl_analysis_export_bucket(fl_analysis_t *a, uint64_t bucket_start_ns, fl_buf_t *out);
/** Put an exported bucket back into the history (e.g. after a restart) so range queries
 *  see it. Buckets older than the history horizon are ignored (FL_OK). FL_ERR_DECODE,
 *  FL_ERR_UNSUPPORTED, FL_ERR_INVALID (other bucket width), FL_ERR_NOMEM. */
int fl_analysis_import_bucket(fl_analysis_t *a, const void *data, size_t len);

/* ---------------------------------------------------------------- root-cause ranking */

/** Read one whole trace: fill *spans / *n with its spans, allocated in arena (the store's
 *  fl_store_get_trace has this shape). Return FL_OK, FL_ERR_NOT_FOUND (skipped) or another
 *  error (ranking goes on without that trace). */
typedef int (*fl_rca_fetch_trace_cb)(void *ud, const uint8_t trace_id[16], fl_arena_t *arena,
                                     fl_span_t **spans, size_t *n);

/** What to rank from. Traces come from fetch_trace (for the example trace ids of the
 *  anomalies and extra_trace_ids, at most max_traces of them) and/or directly from spans
 *  (offline use: any order, grouped by trace id here; at most max_traces traces are read). */
typedef struct fl_rca_input {
    const fl_anomaly_t *anomalies; /**< the open anomalies (fl_analysis_anomalies open_only) */
    size_t n_anomalies;
    fl_analysis_t *engine; /**< optional: learned self-time / gap baselines and the graph */
    fl_rca_fetch_trace_cb fetch_trace; /**< optional */
    void *fetch_ud;
    const uint8_t (*extra_trace_ids)[16]; /**< normal traces to read, for comparison */
    size_t n_extra_trace_ids;
    const fl_span_t *spans; /**< optional: traces given directly */
    size_t n_spans;
    const fl_span_t *normal_spans; /**< optional: traces known to be normal (e.g. from before
                                        the fault); like extra_trace_ids they never vote */
    size_t n_normal_spans;
    uint32_t max_traces;     /**< bound on traces examined (0: 200) */
    uint32_t max_candidates; /**< candidates returned (0: 10) */
} fl_rca_input_t;

/** One ranked root-cause candidate. Strings live in the caller's arena. */
typedef struct fl_rca_candidate {
    const char *service;   /**< blamed service, or uninstrumented peer (virtual_peer = 1) */
    const char *operation; /**< its operation ("" when only the service is known) */
    int virtual_peer;
    fl_anomaly_kind_t kind;    /**< LATENCY, ERROR, TIMEOUT or TRAFFIC */
    double score;              /**< ranking score (higher first); comparable within one result */
    double confidence;         /**< 0..1, spectrum (Ochiai) of anomalous vs normal traces */
    const char *issue;         /**< "Latency spike: 1250ms (baseline: 180ms)" style sentence */
    double observed;           /**< latency: ms (self time or gap); error/timeout: error rate
                                    among sampled traces; traffic: req/s */
    double baseline;           /**< the same statistic's normal value */
    uint32_t anomalous_traces; /**< anomalous sampled traces blaming it */
    uint32_t normal_traces;    /**< normal sampled traces showing the same symptom */
    uint32_t anomalies;        /**< open anomalies it explains (itself and upstream) */
    uint32_t group;            /**< fault group (index into fl_rca_result_t.groups) */
    size_t n_trace_ids;        /**< example traces, <= FL_ANOMALY_MAX_TRACES */
    uint8_t trace_ids[FL_ANOMALY_MAX_TRACES][16];
} fl_rca_candidate_t;

/** One fault: the anomalies one root cause explains. */
typedef struct fl_rca_group {
    uint32_t *candidates; /**< indices into candidates, best first; [0] is the root cause */
    size_t n_candidates;
    uint32_t *anomalies; /**< indices into the input anomalies */
    size_t n_anomalies;
} fl_rca_group_t;

typedef struct fl_rca_result {
    fl_rca_candidate_t *candidates; /**< best first */
    size_t n_candidates;
    fl_rca_group_t *groups; /**< unrelated faults; groups[i].candidates[0] ranks highest */
    size_t n_groups;
    uint32_t traces_examined;
    uint32_t traces_anomalous;
} fl_rca_result_t;

/** Rank root-cause candidates: error origin per failing trace (deepest erroring span whose
 *  children do not explain it), latency culprit per slow trace (critical-path span whose
 *  self time or call gap grew most against its baseline), the anomalies themselves, graph
 *  propagation (a cause downstream of other anomalies outranks them) and spectrum support.
 *  Conventions: a gap on a call blames the callee; an unanswered or timed-out call blames
 *  the callee (an anomaly on the edge names it) or the uninstrumented peer; a traffic drop
 *  blames the entry service. Pure: reads the engine and traces, writes only into arena.
 *  FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_rca_rank(const fl_rca_input_t *in, fl_arena_t *arena, fl_rca_result_t *out);

/* ---------------------------------------------------------------- incidents */

typedef enum fl_incident_status {
    FL_INC_OPEN = 1,
    FL_INC_INVESTIGATING = 2,
    FL_INC_RESOLVED = 3,
    FL_INC_CLOSED = 4
} fl_incident_status_t;

/** "open", "investigating", "resolved", "closed" ("unknown" otherwise). */
const char *fl_incident_status_name(int status);
/** Parse a status or severity name; 0 when unknown. */
int fl_incident_status_parse(const char *s);
int fl_severity_parse(const char *s);

/** One timeline entry. */
typedef struct fl_incident_event {
    uint64_t time_ns;   /**< event time */
    const char *type;   /**< "opened", "anomaly", "root_cause", "severity", "acknowledged",
                             "resolved", "auto_resolved", "closed" */
    const char *detail; /**< a sentence */
} fl_incident_event_t;

/** An incident (shape of DESIGN.md "Contract: incident"). Strings and arrays in an arena. */
typedef struct fl_incident {
    char id[24]; /**< "INC-" + 16 hex digits, stable for a replay */
    const char *title;
    fl_severity_t severity;
    fl_incident_status_t status;
    fl_rca_candidate_t root_cause; /**< = candidates[0] (zeroed when there is none) */
    fl_rca_candidate_t *candidates;
    size_t n_candidates;
    const char **affected_services;
    size_t n_affected_services;
    const char **affected_endpoints; /**< "service operation" */
    size_t n_affected_endpoints;
    uint64_t first_detected_ns, last_updated_ns; /**< event time */
    uint64_t last_active_ns;                     /**< latest event time an anomaly was open */
    fl_anomaly_t *anomalies;                     /**< latest known state of each anomaly (<= 64) */
    size_t n_anomalies;
    fl_incident_event_t *timeline; /**< oldest first (<= 128: the first and latest kept) */
    size_t n_timeline;
    uint8_t (*trace_ids)[16]; /**< correlated traces (<= 16) */
    size_t n_trace_ids;
    uint64_t correlated_failures; /**< failing requests across its anomalies */
    uint64_t failed_requests;     /**< impact: failed requests of error/timeout anomalies */
    uint32_t blast_radius;        /**< impact: affected services upstream of the root cause */
    const char *resolution;       /**< when resolved */
    const char *resolved_by;      /**< person, or "faultline" when automatic */
    uint64_t acknowledged_ns, resolved_ns, closed_ns;
} fl_incident_t;

typedef struct fl_incident_opts {
    uint64_t correlation_window_ns; /**< anomalies this close join an incident (5 min) */
    uint64_t auto_resolve_ns;       /**< resolved automatically when every anomaly has been clear
                                         this long (3 buckets = 30 s) */
    uint64_t retention_ns;          /**< resolved -> closed after this (24 h) */
    uint32_t max_incidents;         /**< kept; the oldest closed go first (1,000) */
} fl_incident_opts_t;

void fl_incident_opts_default(fl_incident_opts_t *o);

/** The incident set. Thread-safe (one internal lock); no logging, no I/O. */
typedef struct fl_incidents fl_incidents_t;

/** New set (opts NULL: defaults). NULL on OOM. */
fl_incidents_t *fl_incidents_new(const fl_incident_opts_t *opts);
/** Free. Accepts NULL. */
void fl_incidents_free(fl_incidents_t *s);

/** What one update changed (ids; the arena given to update owns the arrays). */
typedef struct fl_incident_changes {
    char (*opened)[24];
    size_t n_opened;
    char (*updated)[24]; /**< extended, escalated or with a new root cause */
    size_t n_updated;
    char (*resolved)[24]; /**< automatically resolved or closed by retention */
    size_t n_resolved;
} fl_incident_changes_t;

/** Feed the currently open anomalies and their ranking (from fl_rca_rank on the same
 *  anomalies; NULL ranks nothing) at event time now_ns (the watermark). Each fault group
 *  extends the active incident it shares an anomaly, root cause or affected service with
 *  (last active within the correlation window), else opens a new one. Then incidents whose
 *  anomalies are all clear for auto_resolve_ns are resolved ("faultline"), and resolved
 *  ones older than retention are closed. arena / changes may be NULL.
 *  FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_incidents_update(fl_incidents_t *s, const fl_anomaly_t *anomalies, size_t n,
                        const fl_rca_result_t *rca, uint64_t now_ns, fl_arena_t *arena,
                        fl_incident_changes_t *changes);

/** Filters for listing: status 0 = open and investigating, -1 = all; severity 0 = any;
 *  service NULL = any (affected services). */
typedef struct fl_incident_filter {
    int status;
    int severity;
    const char *service;
} fl_incident_filter_t;

/** Incidents matching filter (NULL: default), newest first, copied into arena.
 *  FL_OK, FL_ERR_INVALID, FL_ERR_NOMEM. */
int fl_incidents_list(fl_incidents_t *s, const fl_incident_filter_t *filter, fl_arena_t *arena,
                      fl_incident_t **out, size_t *n);
/** One incident by id. FL_OK, FL_ERR_NOT_FOUND, FL_ERR_NOMEM. */
int fl_incidents_get(fl_incidents_t *s, const char *id, fl_arena_t *arena, fl_incident_t *out);
/** open -> investigating at now_ns (event time). FL_ERR_NOT_FOUND; FL_ERR_CONFLICT with *why
 *  (static text) when the incident is not open. */
int fl_incidents_acknowledge(fl_incidents_t *s, const char *id, uint64_t now_ns, const char **why);
/** open|investigating -> resolved by a person. resolution and resolved_by required
 *  (FL_ERR_INVALID with *why otherwise); FL_ERR_NOT_FOUND; FL_ERR_CONFLICT with *why when
 *  already resolved or closed. */
int fl_incidents_resolve(fl_incidents_t *s, const char *id, const char *resolution,
                         const char *resolved_by, uint64_t now_ns, const char **why);

/** Append every incident as one versioned blob ("FLI" v1). FL_OK, FL_ERR_NOMEM, FL_ERR_LIMIT. */
int fl_incidents_save(fl_incidents_t *s, fl_buf_t *out);
/** Replace the set with a saved blob. FL_ERR_DECODE, FL_ERR_UNSUPPORTED (newer version),
 *  FL_ERR_NOMEM; the set is unchanged on error. */
int fl_incidents_restore(fl_incidents_t *s, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
