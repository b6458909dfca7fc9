/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: the HTTP JSON API (health, traces, services, status, and every route later
 * modules register). Routing is a table of {method, path pattern, handler}; handlers run on a
 * worker pool, never on the net loop thread. docs/api.md documents every route. */
#ifndef FAULTLINE_API_H
#define FAULTLINE_API_H

#include <faultline/analysis.h>
#include <faultline/common.h>
#include <faultline/net.h>
#include <faultline/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- the API object */

typedef struct fl_api fl_api_t;
/** One API request being handled: what a route handler receives. Owned by the API; valid
 *  until the handler has replied (fl_api_reply / fl_api_reply_error). */
typedef struct fl_api_call fl_api_call_t;

/** Adds fields to the object GET /aiops/status answers (called on a pool thread, inside the
 *  open object: write keys and values only). Must be thread-safe. */
typedef void (*fl_api_status_fn)(void *ud, fl_jw_t *w);

/** Runs the analysis for POST /aiops/analyze: advance the watermark to until_ns (0: the
 *  watermark observed from spans), run, persist, and fill out (allocated in arena). The
 *  server supplies it so that runs are serialised with its analysis thread and closed
 *  buckets are persisted. Returns FL_OK or an fl_err_t. Must be thread-safe. */
typedef int (*fl_api_analyze_fn)(void *ud, uint64_t until_ns, fl_arena_t *arena,
                                 fl_analysis_run_result_t *out, fl_incident_changes_t *changes);

/** Called after an incident route changed an incident (event "acknowledged" or "resolved"),
 *  on a pool thread, so the server can persist the set and notify. Must be thread-safe. */
typedef void (*fl_api_incident_fn)(void *ud, const char *id, const char *event);

typedef struct fl_api_opts {
    fl_store_t *store;          /**< read by the routes; NULL: routes needing it answer 503 */
    int threads;                /**< worker threads running the handlers; 0: 2 */
    size_t max_queue;           /**< calls waiting for a worker; past it 503 + Retry-After.
                                     0: 1024 */
    size_t max_response;        /**< bytes per response body; 0: 32 MiB. Trace and search
                                     results stop early (with "truncated": true) before it */
    size_t max_call_mem;        /**< arena bytes per call (store results live there); past it
                                     the call fails with 500. 0: 512 MiB */
    const char *version;        /**< reported by /health and /aiops/status; NULL: FL_VERSION */
    fl_api_status_fn status_fn; /**< extra /aiops/status fields; may be NULL */
    void *status_ud;
    fl_analysis_t *analysis;      /**< engine behind /aiops/metrics, baselines, anomalies,
                                       analyze and /api/dependencies; NULL: they answer 503 */
    fl_api_analyze_fn analyze_fn; /**< POST /aiops/analyze; NULL: fl_analysis_run directly
                                       (closed buckets are then not persisted) */
    void *analyze_ud;
    fl_incidents_t *incidents;      /**< behind /aiops/incidents; NULL: they answer 503 */
    fl_api_incident_fn incident_fn; /**< after acknowledge / resolve; may be NULL */
    void *incident_ud;
    const fl_net_tokens_t *tokens; /**< when set, every route but GET /health needs
                                        "Authorization: Bearer" with one of them, else 401
                                        {"error", "status"} + WWW-Authenticate: Bearer.
                                        Checked by the net handler only. Not owned */
    const fl_net_cors_t *cors;     /**< CORS for browser pages; NULL: off */
} fl_api_opts_t;

/** Create the API with its worker pool and the built-in routes (docs/api.md). The API starts
 *  "not ready": /health answers 503 until fl_api_set_ready(api, 1). NULL on failure. */
fl_api_t *fl_api_new(const fl_api_opts_t *opts);
/** Finish queued calls, stop the workers, free. Call after the listener serving the API has
 *  been shut down (fl_net_shutdown) and before the store is closed. Accepts NULL. */
void fl_api_free(fl_api_t *api);
/** The handler for the API listener (fl_net_listen_opts_t.handler). Unknown paths and wrong
 *  methods are answered from on_head, before any body is read. */
fl_net_handler_t fl_api_handler(fl_api_t *api);
/** Readiness reported by /health: 1 ready (200); 0 not ready (503: "starting" before the
 *  first ready, "stopping" after). Thread-safe. */
void fl_api_set_ready(fl_api_t *api, int ready);

/* ---------------------------------------------------------------- routes */

/** A route handler. Runs on a pool thread (or on the caller's thread for inline routes). It
 *  must answer exactly once, before returning, with fl_api_reply or fl_api_reply_error; if it
 *  does not, the API answers 500 for it. */
typedef void (*fl_api_route_fn)(fl_api_call_t *call, void *ud);

enum fl_api_route_flags {
    FL_API_ROUTE_INLINE = 1 /**< run on the caller's thread (the net loop): only for handlers
                                 that never block and never touch the store, e.g. /health */
};

/** Register a route. method is an HTTP method ("GET", "POST", ...). pattern is an absolute
 *  path whose segments are literals or `{name}` placeholders that each match one non-empty
 *  segment ("/aiops/metrics/{service}"); read them with fl_api_call_param. When several
 *  patterns match a path, the one with a literal at the leftmost differing segment wins.
 *  Register every route before the listener starts (not thread-safe against serving).
 *  FL_OK, FL_ERR_INVALID (bad method or pattern), FL_ERR_CONFLICT (same method and pattern
 *  already registered), FL_ERR_NOMEM. */
int fl_api_route(fl_api_t *api, const char *method, const char *pattern, fl_api_route_fn fn,
                 void *ud, int flags);

/** What fl_api_lookup found. */
typedef struct fl_api_match {
    int status;          /**< 200 a route matches; 404 no route has this path; 405 the path
                              exists but not for this method */
    const char *pattern; /**< the matching route's pattern (200 only) */
    char allow[128];     /**< 405: the methods the path accepts, "GET, POST" */
} fl_api_match_t;

/** Resolve method + path (no query) against the route table. Returns m->status. */
int fl_api_lookup(const fl_api_t *api, const char *method, const char *path, fl_api_match_t *m);

/** Signature of the transport callback that delivers a response (body is JSON unless the
 *  handler chose otherwise; it is valid only during the call). */
typedef void (*fl_api_reply_fn)(void *ctx, int status, const fl_net_header_t *headers,
                                size_t n_headers, const void *body, size_t len);

/** Handle one request without any socket: target is "path?query" as sent on the request
 *  line. reply is called exactly once, either before this returns (errors, inline routes,
 *  overload) or later from a pool thread. The net handler is a thin adapter over this; tests
 *  and other front ends use it directly. body may be NULL when len is 0. */
void fl_api_request(fl_api_t *api, const char *method, const char *target, const void *body,
                    size_t len, fl_api_reply_fn reply, void *ctx);

/* ---------------------------------------------------------------- inside a handler */

const char *fl_api_call_method(const fl_api_call_t *call);
/** The request path as sent (not percent-decoded). */
const char *fl_api_call_path(const fl_api_call_t *call);
/** A `{name}` path placeholder's value, percent-decoded; NULL when the pattern has none. */
const char *fl_api_call_param(const fl_api_call_t *call, const char *name);
/** The request body (may be empty). */
const uint8_t *fl_api_call_body(const fl_api_call_t *call, size_t *len);
/** The parsed, percent-decoded query (see fl_api_query_t). */
const struct fl_api_query *fl_api_call_query(const fl_api_call_t *call);
/** A per-call arena (capped by max_call_mem), freed after the reply. */
fl_arena_t *fl_api_call_arena(fl_api_call_t *call);
/** The store given in the options (NULL when none). */
fl_store_t *fl_api_call_store(const fl_api_call_t *call);
/** The API the call belongs to. */
fl_api_t *fl_api_call_api(const fl_api_call_t *call);
/** A JSON writer into the (capped) response body; write one value, then fl_api_reply. */
fl_jw_t *fl_api_call_json(fl_api_call_t *call);
/** Bytes the response body may still grow by before max_response (for early truncation). */
size_t fl_api_call_room(const fl_api_call_t *call);

/** Send what was written with fl_api_call_json as application/json with this status (plus
 *  extra headers, may be NULL). If the writer failed (response too large, OOM) a 500 JSON
 *  error is sent instead. */
void fl_api_reply(fl_api_call_t *call, int status, const fl_net_header_t *extra, size_t n_extra);
/** Send {"error": message, "status": status} (discarding anything written so far). */
void fl_api_reply_error(fl_api_call_t *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- query parameters */

typedef struct fl_api_param {
    const char *name;  /**< percent-decoded, NUL-terminated */
    const char *value; /**< percent-decoded ('+' is a space), NUL-terminated; "" when the
                            parameter has no '=' */
} fl_api_param_t;

typedef struct fl_api_query {
    fl_api_param_t *items;
    size_t n;
} fl_api_query_t;

/** Parse a query string (the text after '?', no '#'); strings go into arena a.
 *  FL_ERR_INVALID with err naming the problem: malformed percent-encoding, a decoded NUL,
 *  an empty name, a parameter given twice; FL_ERR_LIMIT past 64 parameters. */
int fl_api_query_parse(const char *qs, fl_arena_t *a, fl_api_query_t *out, char *err,
                       size_t errlen);
/** A parameter's value; NULL when absent. Empty values are returned as "". */
const char *fl_api_query_get(const fl_api_query_t *q, const char *name);
/** FL_ERR_INVALID when q holds a parameter not in allowed[0..n_allowed) (err names every
 *  unknown one and lists the allowed ones). */
int fl_api_query_check(const fl_api_query_t *q, const char *const *allowed, size_t n_allowed,
                       char *err, size_t errlen);
/** Typed readers. Each sets *present = 0 and leaves *out alone when the parameter is absent
 *  or empty (empty means "not given"); FL_ERR_INVALID with err "NAME: problem" when the value
 *  is malformed or out of range. */
int fl_api_query_time(const fl_api_query_t *q, const char *name, uint64_t *out, int *present,
                      char *err, size_t errlen); /**< RFC 3339 or unix nanoseconds */
int fl_api_query_uint(const fl_api_query_t *q, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, int *present, char *err, size_t errlen);
int fl_api_query_ms(const fl_api_query_t *q, const char *name, uint64_t *out_ns, int *present,
                    char *err, size_t errlen); /**< milliseconds >= 0, fraction allowed */
int fl_api_query_bool(const fl_api_query_t *q, const char *name, int *out, int *present, char *err,
                      size_t errlen); /**< true|false|1|0 */

/** Parse a trace id: exactly 32 hex digits (any case), not all zero. FL_ERR_INVALID + err. */
int fl_api_parse_trace_id(const char *s, uint8_t out[16], char *err, size_t errlen);
/** Validate the GET /api/traces query (docs/api.md) into a store query (strings point into
 *  q). FL_ERR_INVALID + err naming the parameter and the problem. */
int fl_api_parse_trace_search(const fl_api_query_t *q, fl_trace_query_t *out, char *err,
                              size_t errlen);

/* ---------------------------------------------------------------- JSON shapes */

/** "unspecified", "internal", "server", "client", "producer", "consumer"; "unknown" else. */
const char *fl_api_kind_name(int kind);
/** "unset", "ok", "error"; "unset" for values outside the enum. */
const char *fl_api_status_name(int status_code);
/** Write one span object as GET /api/traces/{id} returns it. */
void fl_api_write_span(fl_jw_t *w, const fl_span_t *s);
/** Write one trace summary object as GET /api/traces returns it. */
void fl_api_write_trace_summary(fl_jw_t *w, const fl_trace_summary_t *t);

/** Write one incident object as GET /aiops/incidents/{id} returns it (docs/api.md). */
void fl_api_write_incident(fl_jw_t *w, const fl_incident_t *inc);

/* ---------------------------------------------------------------- webhooks */

/** Payload shapes for --webhook-format. */
typedef enum fl_webhook_format {
    FL_WEBHOOK_ALERTMANAGER = 1, /**< Alertmanager webhook payload, version 4 */
    FL_WEBHOOK_SLACK = 2,        /**< Slack incoming webhook {"text", "blocks"} */
    FL_WEBHOOK_JSON = 3          /**< {"event", "incident": <the incident JSON>} */
} fl_webhook_format_t;

/** "alertmanager" | "slack" | "json" -> the format; 0 when unknown. */
int fl_webhook_format_parse(const char *s);

typedef struct fl_webhook_opts {
    const char *const *urls; /**< http://HOST[:PORT]/PATH (https:// too); copied */
    size_t n_urls;
    fl_webhook_format_t format;
    size_t max_queue;    /**< notifications waiting; past it the oldest is dropped. 0: 256 */
    int max_attempts;    /**< per URL, on 5xx / 429 / connection errors. 0: 5 */
    uint64_t backoff_ns; /**< first retry delay, doubling (capped at 30 s). 0: 1 s */
    int timeout_ms;      /**< per request. 0: 5000 */
} fl_webhook_opts_t;

/** Sends incident notifications to URLs from its own thread, through a bounded queue. */
typedef struct fl_webhook fl_webhook_t;

/** Start the sender thread. NULL with err on a bad URL, OOM or thread failure. */
fl_webhook_t *fl_webhook_new(const fl_webhook_opts_t *opts, char *err, size_t errlen);
/** The base of generatorURL / incident links ("http://127.0.0.1:8080"); copied. */
void fl_webhook_set_base_url(fl_webhook_t *wh, const char *base);
/** Look at an incident's current state and queue what is due: "firing" the first time it is
 *  seen open (or investigating), again when its severity rose, "resolved" once when it is
 *  resolved or closed. Never blocks (the queue drops its oldest entry when full). Thread-safe. */
void fl_webhook_incident(fl_webhook_t *wh, const fl_incident_t *inc);
/** Write the "webhooks" member of /aiops/status (key and object). */
void fl_webhook_status(fl_webhook_t *wh, fl_jw_t *w);
/** Stop the thread after at most timeout_ms of sending what is queued; free. Accepts NULL. */
void fl_webhook_free(fl_webhook_t *wh, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
