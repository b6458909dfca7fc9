/* SPDX-License-Identifier: Apache-2.0 */
/* The skeleton every demo service shares: command line, HTTP routing on the net/ server,
 * a SERVER span per request, traced downstream calls, noisy latency and failure injection. */
#ifndef FL_DEMO_SVC_H
#define FL_DEMO_SVC_H

#include <faultline/common.h>
#include <faultline/demotrace.h>
#include <faultline/net.h>
#include <jansson.h>

typedef struct demo_svc demo_svc_t;
typedef struct demo_req demo_req_t;

/** A route handler: runs on a worker thread (blocking is fine) and answers with one of the
 *  demo_reply_* calls; a handler that returns without answering gets a 500. */
typedef void (*demo_handler_fn)(demo_req_t *r);

typedef struct demo_route {
    const char *method;
    const char *route; /**< template: "/stock/{sku}" */
    demo_handler_fn fn;
} demo_route_t;

/** An extra command-line option of one service ("--db PATH"). */
typedef struct demo_flag {
    const char *name; /**< without the dashes */
    const char *arg;  /**< placeholder for --help */
    const char *help;
    const char *dflt;
} demo_flag_t;

typedef struct demo_service_def {
    const char *name; /**< the role: checkout, payment, inventory, fraud, stock */
    const char *summary;
    const demo_route_t *routes;
    size_t n_routes;
    const demo_flag_t *flags;
    size_t n_flags;
    /** Called after flags are parsed and before listening; non-zero aborts start-up. */
    int (*start)(demo_svc_t *svc);
    /** Called after the last request finished. */
    void (*stop)(demo_svc_t *svc);
} demo_service_def_t;

/** Run a service: parse argv, listen, serve until SIGINT/SIGTERM, then drain, flush spans
 *  and exit. Returns the process exit code. */
int demo_main(const demo_service_def_t *def, int argc, char **argv);

/** The value of an extra flag (or its default). */
const char *demo_svc_flag(const demo_svc_t *svc, const char *name);
/** The tracer of the service. */
fl_dt_tracer_t *demo_svc_tracer(demo_svc_t *svc);

/* ---------------------------------------------------------------- requests */

const char *demo_req_method(const demo_req_t *r);
const char *demo_req_path(const demo_req_t *r);
/** A route parameter ("sku" for "/stock/{sku}"), NULL when absent. */
const char *demo_req_param(const demo_req_t *r, const char *name);
/** Query parameter value (percent-decoded), NULL when absent. */
const char *demo_req_query(const demo_req_t *r, const char *name);
/** The body as JSON: NULL when empty; *bad set when present but not valid JSON. Owned by
 *  the request. */
json_t *demo_req_json(demo_req_t *r, int *bad);
/** The SERVER span of this request. */
fl_dt_span_t *demo_req_span(demo_req_t *r);
demo_svc_t *demo_req_svc(demo_req_t *r);

/** Answer with a JSON document (reference stolen). */
void demo_reply_json(demo_req_t *r, int status, json_t *doc);
/** Answer {"error": message, ...}; for status >= 500 the span gets ERROR status and
 *  error.type (error_type, or the status code when NULL). */
void demo_reply_error(demo_req_t *r, int status, const char *error_type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Simulated work: sleep a lognormal time with this median (ms), scaled by --latency-scale.
 *  Returns early when the service is stopping. */
void demo_work(demo_req_t *r, double median_ms);
/** Sleep ms unless the service stops first. */
void demo_sleep_ms(demo_svc_t *svc, uint64_t ms);

/* ---------------------------------------------------------------- downstream calls */

typedef struct demo_call_result {
    int status;      /**< HTTP status; -1 transport error; -2 timeout */
    json_t *json;    /**< parsed response body (NULL when not JSON); caller decrefs */
    char error[160]; /**< transport error text */
} demo_call_result_t;

/** Call a dependency by role name ("payment") with a CLIENT span child of the request's
 *  span and the traceparent/tracestate injected. body may be NULL (reference not stolen).
 *  Returns res->status. */
int demo_call(demo_req_t *r, const char *dep, const char *method, const char *path, json_t *body,
              demo_call_result_t *res);

/* ---------------------------------------------------------------- failure injection */

/** The kinds of injected fault. */
enum demo_fault_kind {
    DEMO_FAULT_DELAY = 0,
    DEMO_FAULT_ERROR = 1,
    DEMO_FAULT_TIMEOUT = 2,
    DEMO_FAULT_INTERMITTENT = 3,
    DEMO_FAULT_KINDS = 4
};

typedef struct demo_chaos demo_chaos_t;

/** What applies to one request (merged service-wide and per-route rules). */
typedef struct demo_fault_set {
    int has[DEMO_FAULT_KINDS];
    double value[DEMO_FAULT_KINDS]; /**< ms for delay/timeout, probability otherwise */
} demo_fault_set_t;

demo_chaos_t *demo_chaos_new(void);
void demo_chaos_free(demo_chaos_t *c);
/** Set (value > 0) or remove (value == 0) a fault for target ("" = the whole service, else
 *  a route template). Returns 0, or -1 when too many targets. */
int demo_chaos_set(demo_chaos_t *c, const char *target, int kind, double value);
/** Remove every fault for target (NULL: all targets). */
void demo_chaos_clear(demo_chaos_t *c, const char *target);
/** Faults in effect for a request to route. */
void demo_chaos_lookup(demo_chaos_t *c, const char *route, demo_fault_set_t *out);
/** {"delay": {...}, ...} per target, as JSON (new reference). */
json_t *demo_chaos_json(demo_chaos_t *c);
/** The parameter name of a fault kind ("duration", "rate", "duration", "probability"). */
const char *demo_fault_param(int kind);
const char *demo_fault_name(int kind);

/* ---------------------------------------------------------------- parameters */

#define DEMO_MAX_PARAMS 16

/** Decoded name=value pairs from a query string and a form or JSON-object body. */
typedef struct demo_params {
    size_t n;
    char *name[DEMO_MAX_PARAMS];
    char *value[DEMO_MAX_PARAMS];
} demo_params_t;

/** Parse "a=1&b=x%20y" (percent- and '+'-decoded) into p (appends). -1 when there are too
 *  many parameters or an escape is malformed; err says which. */
int demo_params_parse_query(demo_params_t *p, const char *q, char *err, size_t errlen);
/** Add the members of a JSON object body (strings, numbers, booleans). -1 on other shapes. */
int demo_params_add_json(demo_params_t *p, json_t *obj, char *err, size_t errlen);
/** Value of name (first occurrence), NULL when absent. */
const char *demo_params_get(const demo_params_t *p, const char *name);
/** Name of the first parameter not in allowed (NULL-terminated), or NULL. */
const char *demo_params_unknown(const demo_params_t *p, const char *const *allowed);
/** Encode as a query string into out ("a=1&b=x%20y"). */
void demo_params_encode(const demo_params_t *p, fl_buf_t *out);
void demo_params_dispose(demo_params_t *p);
/** Set (replace or add) name=value. */
int demo_params_set(demo_params_t *p, const char *name, const char *value);

#endif
