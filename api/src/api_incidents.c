/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: GET /aiops/incidents (filters), GET /aiops/incidents/{id} and the lifecycle
 * routes acknowledge / resolve over the incident set the server keeps (fl_incidents_t). */
#include "api_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static fl_incidents_t *require_incidents(fl_api_call_t *call)
{
    fl_incidents_t *s = call->api->incidents;

    if (!s)
        fl_api_reply_error(call, 503, "incidents are not available (no analysis engine)");
    return s;
}

static void write_s(fl_jw_t *w, const char *key, const char *v)
{
    fl_jw_key(w, key);
    fl_jw_str(w, v);
}

static void write_num(fl_jw_t *w, const char *key, double v)
{
    fl_jw_key(w, key);
    fl_jw_double(w, v);
}

static void write_u(fl_jw_t *w, const char *key, uint64_t v)
{
    fl_jw_key(w, key);
    fl_jw_uint(w, v);
}

static void write_candidate(fl_jw_t *w, const fl_rca_candidate_t *c)
{
    fl_jw_obj_begin(w);
    write_s(w, "service", c->service);
    write_s(w, "operation", c->operation);
    write_s(w, "kind", fl_anomaly_kind_name(c->kind));
    write_s(w, "issue", c->issue);
    write_num(w, "score", c->score);
    write_num(w, "confidence", c->confidence);
    fl_jw_key(w, "virtual_peer");
    fl_jw_bool(w, c->virtual_peer);
    fl_jw_key(w, "evidence");
    fl_jw_obj_begin(w);
    write_num(w, "observed", c->observed);
    write_num(w, "baseline", c->baseline);
    write_u(w, "anomalous_traces", c->anomalous_traces);
    write_u(w, "normal_traces", c->normal_traces);
    write_u(w, "anomalies", c->anomalies);
    fl_jw_key(w, "example_trace_ids");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < c->n_trace_ids && i < FL_ANOMALY_MAX_TRACES; i++)
        fl_jw_hex(w, c->trace_ids[i], 16);
    fl_jw_arr_end(w);
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
}

static void write_strs(fl_jw_t *w, const char *key, const char **v, size_t n)
{
    fl_jw_key(w, key);
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++)
        fl_jw_str(w, v[i]);
    fl_jw_arr_end(w);
}

void fl_api_write_incident(fl_jw_t *w, const fl_incident_t *x)
{
    fl_jw_obj_begin(w);
    write_s(w, "id", x->id);
    write_s(w, "title", x->title);
    write_s(w, "severity", fl_severity_name(x->severity));
    write_s(w, "status", fl_incident_status_name(x->status));
    fl_jw_key(w, "root_cause");
    if (x->n_candidates)
        write_candidate(w, &x->root_cause);
    else
        fl_jw_null(w);
    fl_jw_key(w, "candidates");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < x->n_candidates; i++)
        write_candidate(w, &x->candidates[i]);
    fl_jw_arr_end(w);
    write_strs(w, "affected_services", x->affected_services, x->n_affected_services);
    write_strs(w, "affected_endpoints", x->affected_endpoints, x->n_affected_endpoints);
    fl_api__write_time(w, "first_detected", x->first_detected_ns);
    fl_api__write_time(w, "last_updated", x->last_updated_ns);
    fl_jw_key(w, "anomalies");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < x->n_anomalies; i++)
        fl_api__write_anomaly(w, &x->anomalies[i]);
    fl_jw_arr_end(w);
    fl_jw_key(w, "timeline");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < x->n_timeline; i++) {
        fl_jw_obj_begin(w);
        fl_api__write_time(w, "time", x->timeline[i].time_ns);
        write_s(w, "type", x->timeline[i].type);
        write_s(w, "detail", x->timeline[i].detail);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    fl_jw_key(w, "trace_correlation");
    fl_jw_obj_begin(w);
    fl_jw_key(w, "trace_ids");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < x->n_trace_ids; i++)
        fl_jw_hex(w, x->trace_ids[i], 16);
    fl_jw_arr_end(w);
    write_u(w, "correlated_failures", x->correlated_failures);
    fl_jw_obj_end(w);
    fl_jw_key(w, "impact");
    fl_jw_obj_begin(w);
    write_u(w, "failed_requests", x->failed_requests);
    write_u(w, "blast_radius", x->blast_radius);
    fl_jw_obj_end(w);
    if (x->acknowledged_ns)
        fl_api__write_time(w, "acknowledged", x->acknowledged_ns);
    if (x->status == FL_INC_RESOLVED || x->status == FL_INC_CLOSED) {
        write_s(w, "resolution", x->resolution);
        write_s(w, "resolved_by", x->resolved_by);
        fl_api__write_time(w, "resolved", x->resolved_ns);
    }
    if (x->closed_ns)
        fl_api__write_time(w, "closed", x->closed_ns);
    fl_jw_obj_end(w);
}

/* ---------------------------------------------------------------- GET /aiops/incidents */

static void route_list(fl_api_call_t *call, void *ud)
{
    static const char *const allowed[] = {"status", "severity", "service"};
    const fl_api_query_t *q = fl_api_call_query(call);
    fl_incident_filter_t f = {0};
    fl_incident_t *items = NULL;
    size_t n = 0;
    char err[512];
    fl_incidents_t *s;
    (void)ud;

    if (fl_api_query_check(q, allowed, 3, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    if (!(s = require_incidents(call)))
        return;
    const char *st = fl_api_query_get(q, "status"), *sev = fl_api_query_get(q, "severity");
    const char *svc = fl_api_query_get(q, "service");
    if (st && *st) {
        if (!strcmp(st, "all"))
            f.status = -1;
        else if (!(f.status = fl_incident_status_parse(st))) {
            fl_api_reply_error(call, 400,
                               "status: \"%s\" is not open, investigating, resolved, closed or all",
                               st);
            return;
        }
    }
    if (sev && *sev && !(f.severity = fl_severity_parse(sev))) {
        fl_api_reply_error(call, 400, "severity: \"%s\" is not critical, high, medium or low", sev);
        return;
    }
    f.service = svc && *svc ? svc : NULL;
    int rc = fl_incidents_list(s, &f, fl_api_call_arena(call), &items, &n);
    if (rc != FL_OK) {
        fl_api_reply_error(call, 500, "listing incidents failed (%s)", fl_strerror(rc));
        return;
    }
    fl_jw_t *w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    fl_jw_key(w, "incidents");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++)
        fl_api_write_incident(w, &items[i]);
    fl_jw_arr_end(w);
    write_u(w, "count", n);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- one incident */

static int reply_incident(fl_api_call_t *call, fl_incidents_t *s, const char *id, int status)
{
    fl_incident_t inc;
    int rc = fl_incidents_get(s, id, fl_api_call_arena(call), &inc);

    if (rc == FL_ERR_NOT_FOUND) {
        fl_api_reply_error(call, 404, "no incident %s", id);
        return rc;
    }
    if (rc != FL_OK) {
        fl_api_reply_error(call, 500, "reading incident %s failed (%s)", id, fl_strerror(rc));
        return rc;
    }
    fl_api_write_incident(fl_api_call_json(call), &inc);
    fl_api_reply(call, status, NULL, 0);
    return FL_OK;
}

static void route_get(fl_api_call_t *call, void *ud)
{
    fl_incidents_t *s;
    char err[512];
    (void)ud;

    if (fl_api_query_check(fl_api_call_query(call), NULL, 0, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    if ((s = require_incidents(call)))
        reply_incident(call, s, fl_api_call_param(call, "id"), 200);
}

/* Lifecycle events are stamped with event time: the analysis watermark (the latest span time
 * seen), so incident timelines stay in one clock; wall clock only without an engine. */
static uint64_t event_now(fl_api_call_t *call)
{
    fl_analysis_status_t st;

    if (call->api->analysis && fl_analysis_status(call->api->analysis, &st) == FL_OK &&
        st.watermark_ns)
        return st.watermark_ns;
    return fl_time_now_ns();
}

static void after_change(fl_api_call_t *call, const char *id, const char *event)
{
    if (call->api->incident_fn)
        call->api->incident_fn(call->api->incident_ud, id, event);
}

static void route_ack(fl_api_call_t *call, void *ud)
{
    fl_incidents_t *s;
    const char *why = NULL, *id = fl_api_call_param(call, "id");
    (void)ud;

    if (!(s = require_incidents(call)))
        return;
    int rc = fl_incidents_acknowledge(s, id, event_now(call), &why);
    if (rc == FL_ERR_NOT_FOUND) {
        fl_api_reply_error(call, 404, "no incident %s", id);
        return;
    }
    if (rc == FL_ERR_CONFLICT) {
        fl_api_reply_error(call, 409, "cannot acknowledge %s: %s", id, why ? why : "conflict");
        return;
    }
    if (rc != FL_OK) {
        fl_api_reply_error(call, 500, "acknowledging %s failed (%s)", id, fl_strerror(rc));
        return;
    }
    after_change(call, id, "acknowledged");
    reply_incident(call, s, id, 200);
}

static void route_resolve(fl_api_call_t *call, void *ud)
{
    fl_incidents_t *s;
    const char *why = NULL, *id = fl_api_call_param(call, "id");
    size_t len = 0;
    const uint8_t *body = fl_api_call_body(call, &len);
    json_error_t jerr;
    json_t *j = NULL;
    (void)ud;

    if (!(s = require_incidents(call)))
        return;
    if (!len) {
        fl_api_reply_error(call, 400,
                           "a JSON body {\"resolution\": \"...\", \"resolved_by\": \"...\"} is "
                           "required");
        return;
    }
    j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        fl_api_reply_error(call, 400, "invalid JSON body: %s", j ? "not an object" : jerr.text);
        json_decref(j);
        return;
    }
    json_t *res = json_object_get(j, "resolution"), *by = json_object_get(j, "resolved_by");
    if (!json_is_string(res) || !*json_string_value(res) || !json_is_string(by) ||
        !*json_string_value(by)) {
        fl_api_reply_error(call, 400,
                           "\"resolution\" and \"resolved_by\" must be non-empty strings");
        json_decref(j);
        return;
    }
    int rc = fl_incidents_resolve(s, id, json_string_value(res), json_string_value(by),
                                  event_now(call), &why);
    json_decref(j);
    if (rc == FL_ERR_NOT_FOUND) {
        fl_api_reply_error(call, 404, "no incident %s", id);
        return;
    }
    if (rc == FL_ERR_CONFLICT || rc == FL_ERR_INVALID) {
        fl_api_reply_error(call, rc == FL_ERR_CONFLICT ? 409 : 400, "cannot resolve %s: %s", id,
                           why ? why : fl_strerror(rc));
        return;
    }
    if (rc != FL_OK) {
        fl_api_reply_error(call, 500, "resolving %s failed (%s)", id, fl_strerror(rc));
        return;
    }
    after_change(call, id, "resolved");
    reply_incident(call, s, id, 200);
}

int fl_api__register_incidents(fl_api_t *api)
{
    static const fl_api__route_def_t routes[] = {
        {"GET", "/aiops/incidents", route_list, 0},
        {"GET", "/aiops/incidents/{id}", route_get, 0},
        {"POST", "/aiops/incidents/{id}/acknowledge", route_ack, 0},
        {"POST", "/aiops/incidents/{id}/resolve", route_resolve, 0},
    };
    return fl_api__register_table(api, routes, sizeof(routes) / sizeof(routes[0]));
}
