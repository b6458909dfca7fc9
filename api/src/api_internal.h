/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: private structures shared by the api/src files (route table, call state). */
#ifndef FAULTLINE_API_INTERNAL_H
#define FAULTLINE_API_INTERNAL_H

#include <faultline/api.h>

#include <stdatomic.h>

#define FL_API_MAX_SEGS 32
#define FL_API_MAX_PARAMS 8

typedef struct fl_api_route_ent {
    char *method;
    char *pattern;
    char **segs; /* literal text, or "{name}" for a placeholder */
    size_t n_segs;
    uint32_t score; /* bit per literal segment, leftmost most significant */
    fl_api_route_fn fn;
    void *ud;
    int flags;
} fl_api_route_ent_t;

struct fl_api {
    fl_store_t *store;
    size_t max_response;
    size_t max_call_mem;
    char *version;
    fl_api_status_fn status_fn;
    void *status_ud;
    fl_analysis_t *analysis;
    fl_api_analyze_fn analyze_fn;
    void *analyze_ud;
    fl_incidents_t *incidents;
    fl_api_incident_fn incident_fn;
    void *incident_ud;
    const fl_net_tokens_t *tokens;
    const fl_net_cors_t *cors;
    fl_pool_t *pool;
    fl_api_route_ent_t *routes;
    size_t n_routes;
    size_t cap_routes;
    atomic_int ready; /* 0 starting, 1 ready, 2 stopping */
    uint64_t started_ns;
    atomic_uint_fast64_t n_requests;
    atomic_uint_fast64_t n_client_errors;
    atomic_uint_fast64_t n_server_errors;
    atomic_uint_fast64_t n_refused;
};

struct fl_api_call {
    fl_api_t *api;
    const fl_api_route_ent_t *route;
    fl_arena_t *arena;
    const char *method;
    const char *path;
    fl_api_query_t query;
    const char *param_names[FL_API_MAX_PARAMS];
    const char *param_values[FL_API_MAX_PARAMS];
    size_t n_params;
    const uint8_t *body;
    size_t body_len;
    fl_buf_t out;
    fl_jw_t jw;
    fl_api_reply_fn reply;
    void *ctx;
    int replied;
};

/** Percent-decode len bytes of s into out (room for len + 1); '+' becomes a space when
 *  plus_space. Returns 0, -1 on a malformed escape, -2 on a decoded NUL. */
int fl_api__pct_decode(const char *s, size_t len, int plus_space, char *out, size_t *out_len);

/** Register the built-in routes (api_routes.c). */
/* One row of a module's route table. */
typedef struct fl_api__route_def {
    const char *method, *pattern;
    fl_api_route_fn fn;
    int flags;
} fl_api__route_def_t;

/* Register every route of a table (ud NULL); stops at the first error. */
int fl_api__register_table(fl_api_t *api, const fl_api__route_def_t *defs, size_t n);

int fl_api__register_builtin(fl_api_t *api);
/** Register the analysis routes: /aiops/metrics, baselines, anomalies, analyze and
 *  /api/dependencies (api_aiops.c). */
int fl_api__register_aiops(fl_api_t *api);
/** Register /aiops/incidents and its lifecycle routes (api_incidents.c). */
int fl_api__register_incidents(fl_api_t *api);
/** Write one anomaly object as GET /aiops/anomalies does (api_aiops.c). */
void fl_api__write_anomaly(fl_jw_t *w, const fl_anomaly_t *x);
/** Write key + RFC 3339 time (null when 0) and key_unix_nano (api_aiops.c). */
void fl_api__write_time(fl_jw_t *w, const char *key, uint64_t ns);

/** Write the "analysis" member of GET /aiops/status (api_aiops.c); nothing without engine. */
void fl_api__write_analysis_status(fl_api_t *api, fl_jw_t *w);

#endif
