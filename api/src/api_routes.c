/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: the built-in routes: /health, /api/traces/{trace_id}, /api/traces,
 * /api/services and /aiops/status. Store reads run here, on the API's worker pool. */
#include "api_internal.h"

#include <stdio.h>
#include <string.h>

/* Bytes kept free after the last array element for the fields that close the document. */
#define TAIL_RESERVE 256

typedef void (*write_item_fn)(fl_jw_t *w, const void *item);

static void write_span_item(fl_jw_t *w, const void *item)
{
    fl_api_write_span(w, item);
}

static void write_summary_item(fl_jw_t *w, const void *item)
{
    fl_api_write_trace_summary(w, item);
}

/* Write one array element through a scratch buffer and append it only when the response
 * stays under its cap, so large results end early and still parse. 1 appended, 0 not. */
static int append_bounded(fl_api_call_t *call, fl_buf_t *scratch, write_item_fn fn,
                          const void *item)
{
    fl_jw_t sw;

    fl_buf_reset(scratch);
    fl_jw_init(&sw, scratch);
    fn(&sw, item);
    if (sw.err != FL_OK || scratch->len + TAIL_RESERVE > fl_api_call_room(call))
        return 0;
    fl_jw_raw(fl_api_call_json(call), (const char *)scratch->data, scratch->len);
    return 1;
}

/* Answer a failed store read. */
static void reply_store_error(fl_api_call_t *call, int rc, const char *what)
{
    if (rc == FL_ERR_NOMEM)
        fl_api_reply_error(call, 500, "%s: result too large to load into memory", what);
    else if (rc == FL_ERR_BUSY || rc == FL_ERR_CLOSED)
        fl_api_reply_error(call, 503, "%s: store unavailable (%s)", what, fl_strerror(rc));
    else
        fl_api_reply_error(call, 500, "%s: store read failed (%s)", what, fl_strerror(rc));
}

static int require_no_query(fl_api_call_t *call)
{
    char err[512];

    if (fl_api_query_check(fl_api_call_query(call), NULL, 0, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return 0;
    }
    return 1;
}

static fl_store_t *require_store(fl_api_call_t *call)
{
    fl_store_t *s = fl_api_call_store(call);

    if (!s)
        fl_api_reply_error(call, 503, "no store is attached to this API");
    return s;
}

/* ---------------------------------------------------------------- GET /health */

static void route_health(fl_api_call_t *call, void *ud)
{
    fl_api_t *api = fl_api_call_api(call);
    fl_jw_t *w = fl_api_call_json(call);
    int ready = atomic_load(&api->ready);
    static const char *const states[] = {"starting", "ok", "stopping"};

    fl_jw_obj_begin(w);
    fl_jw_key(w, "status");
    fl_jw_str(w, states[ready >= 0 && ready <= 2 ? ready : 0]);
    fl_jw_key(w, "version");
    fl_jw_str(w, api->version);
    fl_jw_obj_end(w);
    if (ready == 1) {
        fl_api_reply(call, 200, NULL, 0);
    } else {
        fl_net_header_t ra = {"Retry-After", "1"};
        fl_api_reply(call, 503, &ra, 1);
    }
}

/* ---------------------------------------------------------------- GET /api/traces/{trace_id} */

static void route_trace_get(fl_api_call_t *call, void *ud)
{
    uint8_t id[16];
    char err[256], hex[33];
    fl_span_t *spans = NULL;
    size_t n = 0, written = 0;
    fl_store_t *store;
    fl_buf_t scratch;
    fl_jw_t *w;
    int rc;

    if (fl_api_parse_trace_id(fl_api_call_param(call, "trace_id"), id, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    if (!require_no_query(call) || !(store = require_store(call)))
        return;
    fl_hex_encode(id, 16, hex);
    rc = fl_store_get_trace(store, id, fl_api_call_arena(call), &spans, &n);
    if (rc == FL_ERR_NOT_FOUND || (rc == FL_OK && n == 0)) {
        fl_api_reply_error(call, 404, "trace %s not found", hex);
        return;
    }
    if (rc != FL_OK) {
        reply_store_error(call, rc, "reading the trace");
        return;
    }
    fl_buf_init(&scratch, call->api->max_response);
    w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    fl_jw_key(w, "trace_id");
    fl_jw_str(w, hex);
    fl_jw_key(w, "spans");
    fl_jw_arr_begin(w);
    for (; written < n; written++)
        if (!append_bounded(call, &scratch, write_span_item, &spans[written]))
            break;
    fl_jw_arr_end(w);
    fl_jw_key(w, "span_count");
    fl_jw_uint(w, n);
    fl_jw_key(w, "truncated");
    fl_jw_bool(w, written < n);
    fl_jw_obj_end(w);
    fl_buf_dispose(&scratch);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- GET /api/traces */

static void route_trace_search(fl_api_call_t *call, void *ud)
{
    fl_trace_query_t q;
    fl_trace_summary_t *res = NULL;
    size_t n = 0, written = 0;
    char err[768];
    fl_store_t *store;
    fl_buf_t scratch;
    fl_jw_t *w;
    int rc;

    if (fl_api_parse_trace_search(fl_api_call_query(call), &q, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    if (!(store = require_store(call)))
        return;
    rc = fl_store_search_traces(store, &q, fl_api_call_arena(call), &res, &n);
    if (rc != FL_OK) {
        reply_store_error(call, rc, "searching traces");
        return;
    }
    fl_buf_init(&scratch, call->api->max_response);
    w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    fl_jw_key(w, "traces");
    fl_jw_arr_begin(w);
    for (; written < n; written++)
        if (!append_bounded(call, &scratch, write_summary_item, &res[written]))
            break;
    fl_jw_arr_end(w);
    fl_jw_key(w, "count");
    fl_jw_uint(w, written);
    fl_jw_key(w, "limit");
    fl_jw_uint(w, q.limit);
    fl_jw_key(w, "truncated");
    fl_jw_bool(w, written < n);
    fl_jw_obj_end(w);
    fl_buf_dispose(&scratch);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- GET /api/services */

static void route_services(fl_api_call_t *call, void *ud)
{
    fl_service_info_t *svc = NULL;
    size_t n = 0;
    fl_store_t *store;
    fl_jw_t *w;
    int rc;

    if (!require_no_query(call) || !(store = require_store(call)))
        return;
    rc = fl_store_list_services(store, fl_api_call_arena(call), &svc, &n);
    if (rc != FL_OK) {
        reply_store_error(call, rc, "listing services");
        return;
    }
    w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    fl_jw_key(w, "services");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        fl_jw_obj_begin(w);
        fl_jw_key(w, "name");
        fl_jw_str(w, svc[i].name ? svc[i].name : "");
        fl_jw_key(w, "operations");
        fl_jw_arr_begin(w);
        for (size_t j = 0; j < svc[i].n_operations; j++)
            fl_jw_str(w, svc[i].operations[j] ? svc[i].operations[j] : "");
        fl_jw_arr_end(w);
        fl_jw_key(w, "span_count");
        fl_jw_uint(w, svc[i].span_count);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- GET /aiops/status */

static void route_status(fl_api_call_t *call, void *ud)
{
    fl_api_t *api = fl_api_call_api(call);
    fl_jw_t *w = fl_api_call_json(call);
    int ready = atomic_load(&api->ready);

    if (!require_no_query(call))
        return;
    fl_jw_obj_begin(w);
    fl_jw_key(w, "status");
    fl_jw_str(w, ready == 1 ? "ok" : ready == 0 ? "starting" : "stopping");
    fl_jw_key(w, "version");
    fl_jw_str(w, api->version);
    fl_jw_key(w, "uptime_s");
    fl_jw_uint(w, (fl_time_now_ns() - api->started_ns) / 1000000000ull);
    if (api->store) {
        fl_store_stats_t st;
        fl_store_stats(api->store, &st);
        fl_jw_key(w, "watermark");
        if (st.watermark_ns)
            fl_jw_time(w, st.watermark_ns);
        else
            fl_jw_null(w);
        fl_jw_key(w, "watermark_unix_nano");
        fl_jw_uint(w, st.watermark_ns);
        fl_jw_key(w, "spans_stored");
        fl_jw_uint(w, st.spans_stored);
        fl_jw_key(w, "spans_duplicate");
        fl_jw_uint(w, st.spans_duplicate);
        fl_jw_key(w, "spans_future");
        fl_jw_uint(w, st.spans_future);
        fl_jw_key(w, "queue_spans");
        fl_jw_uint(w, st.queue_spans);
        fl_jw_key(w, "queue_batches");
        fl_jw_uint(w, st.queue_batches);
        fl_jw_key(w, "commits");
        fl_jw_uint(w, st.commits);
        fl_jw_key(w, "last_commit_ms");
        fl_jw_double(w, (double)st.last_commit_ns / 1e6);
        fl_jw_key(w, "db_bytes");
        fl_jw_uint(w, st.db_bytes);
        fl_jw_key(w, "index_bytes");
        fl_jw_uint(w, st.index_bytes);
        fl_jw_key(w, "write_errors");
        fl_jw_uint(w, st.write_errors);
        fl_jw_key(w, "blocks_expired");
        fl_jw_uint(w, st.blocks_expired);
        fl_jw_key(w, "spans_expired");
        fl_jw_uint(w, st.spans_expired);
    }
    fl_jw_key(w, "api");
    fl_jw_obj_begin(w);
    fl_jw_key(w, "requests");
    fl_jw_uint(w, atomic_load(&api->n_requests));
    fl_jw_key(w, "client_errors");
    fl_jw_uint(w, atomic_load(&api->n_client_errors));
    fl_jw_key(w, "server_errors");
    fl_jw_uint(w, atomic_load(&api->n_server_errors));
    fl_jw_key(w, "refused");
    fl_jw_uint(w, atomic_load(&api->n_refused));
    fl_jw_key(w, "queue_depth");
    fl_jw_uint(w, fl_pool_depth(api->pool));
    fl_jw_obj_end(w);
    fl_api__write_analysis_status(api, w);
    if (api->status_fn)
        api->status_fn(api->status_ud, w);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

int fl_api__register_table(fl_api_t *api, const fl_api__route_def_t *defs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc =
            fl_api_route(api, defs[i].method, defs[i].pattern, defs[i].fn, NULL, defs[i].flags);
        if (rc != FL_OK)
            return rc;
    }
    return FL_OK;
}

int fl_api__register_builtin(fl_api_t *api)
{
    static const fl_api__route_def_t routes[] = {
        {"GET", "/health", route_health, FL_API_ROUTE_INLINE},
        {"GET", "/api/traces/{trace_id}", route_trace_get, 0},
        {"GET", "/api/traces", route_trace_search, 0},
        {"GET", "/api/services", route_services, 0},
        {"GET", "/aiops/status", route_status, 0},
    };
    return fl_api__register_table(api, routes, sizeof(routes) / sizeof(routes[0]));
}
