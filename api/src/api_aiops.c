/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: the analysis routes: /aiops/metrics[/{service}], /aiops/baselines,
 * /aiops/anomalies, POST /aiops/analyze, /api/dependencies and the "analysis" member of
 * /aiops/status. Shapes are documented in docs/api.md; keep them stable. */
#include "api_internal.h"

#include <stdio.h>
#include <string.h>

#define NS_PER_S 1000000000ull
#define HOUR_NS (3600ull * NS_PER_S)
#define MAX_RANGE_NS (7ull * 24 * HOUR_NS)

static fl_analysis_t *require_analysis(fl_api_call_t *call)
{
    fl_analysis_t *a = call->api->analysis;

    if (!a)
        fl_api_reply_error(call, 503, "the analysis engine is not running");
    return a;
}

static void reply_analysis_error(fl_api_call_t *call, int rc, const char *what)
{
    if (rc == FL_ERR_NOMEM)
        fl_api_reply_error(call, 500, "%s: out of memory", what);
    else
        fl_api_reply_error(call, 500, "%s failed (%s)", what, fl_strerror(rc));
}

static int check_params(fl_api_call_t *call, const char *const *allowed, size_t n)
{
    char err[512];

    if (fl_api_query_check(fl_api_call_query(call), allowed, n, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return 0;
    }
    return 1;
}

/* A filter value: absent -> NULL; present but empty -> 400. */
static int get_name(fl_api_call_t *call, const char *name, const char **out)
{
    const char *v = fl_api_query_get(fl_api_call_query(call), name);

    *out = NULL;
    if (v && !*v) {
        fl_api_reply_error(call, 400, "%s: must not be empty", name);
        return 0;
    }
    *out = v;
    return 1;
}

/* The time range of a query, in event time. time_range (a duration, 1m .. 7d: 1h, 6h, 24h,
 * 7d, ...) counts back from end (default: the watermark); start/end are RFC 3339 or unix
 * nanoseconds. def_range_ns is used when neither time_range nor start is given (0: start
 * unbounded). With no data yet (watermark 0) the range is unbounded. */
static int parse_range(fl_api_call_t *call, int allow_time_range, uint64_t def_range_ns,
                       fl_analysis_filter_t *f, const char **range_name)
{
    const fl_api_query_t *q = fl_api_call_query(call);
    char err[256];
    uint64_t start = 0, end = 0, range = 0;
    int has_start = 0, has_end = 0;
    fl_analysis_status_t st;
    const char *tr = allow_time_range ? fl_api_query_get(q, "time_range") : NULL;

    if (fl_api_query_time(q, "start", &start, &has_start, err, sizeof(err)) != FL_OK ||
        fl_api_query_time(q, "end", &end, &has_end, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return 0;
    }
    if (tr) {
        if (fl_duration_parse(tr, &range) != FL_OK || range < 60 * NS_PER_S ||
            range > MAX_RANGE_NS) {
            fl_api_reply_error(call, 400,
                               "time_range: \"%s\" is not a duration from 1m to 7d "
                               "(e.g. 1h, 6h, 24h, 7d)",
                               tr);
            return 0;
        }
        if (has_start) {
            fl_api_reply_error(call, 400, "time_range: cannot be combined with start");
            return 0;
        }
    }
    if (range_name)
        *range_name = tr;
    if (!has_end) {
        fl_analysis_status(call->api->analysis, &st);
        end = st.watermark_ns;
        if (end == 0) { /* no data yet */
            f->start_ns = has_start ? start : 0;
            f->end_ns = 0;
            return 1;
        }
        end += 1; /* the range is [start, end): include the watermark's own bucket */
    }
    if (!has_start) {
        if (!range)
            range = def_range_ns;
        start = range && end > range ? end - range : 0;
    }
    if (has_start && has_end && end <= start) {
        fl_api_reply_error(call, 400, "end: must be after start");
        return 0;
    }
    f->start_ns = start;
    f->end_ns = end;
    return 1;
}

void fl_api__write_time(fl_jw_t *w, const char *key, uint64_t ns)
{
    char k[64];

    fl_jw_key(w, key);
    if (ns)
        fl_jw_time(w, ns);
    else
        fl_jw_null(w);
    snprintf(k, sizeof(k), "%s_unix_nano", key);
    fl_jw_key(w, k);
    fl_jw_uint(w, ns);
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

static void write_s(fl_jw_t *w, const char *key, const char *v)
{
    fl_jw_key(w, key);
    fl_jw_str(w, v);
}

static void write_b(fl_jw_t *w, const char *key, int v)
{
    fl_jw_key(w, key);
    fl_jw_bool(w, v);
}

static void write_range(fl_jw_t *w, uint64_t start, uint64_t end, fl_analysis_t *a)
{
    fl_analysis_status_t st;

    fl_analysis_status(a, &st);
    fl_api__write_time(w, "start", start);
    fl_api__write_time(w, "end", end);
    fl_api__write_time(w, "watermark", st.watermark_ns);
}

/* ---------------------------------------------------------------- GET /aiops/metrics */

static void write_endpoint(fl_jw_t *w, const fl_endpoint_metrics_t *m)
{
    char code[16];

    fl_jw_obj_begin(w);
    write_s(w, "service", m->service);
    write_s(w, "operation", m->operation);
    write_u(w, "request_count", m->request_count);
    write_u(w, "error_count", m->error_count);
    write_u(w, "timeout_count", m->timeout_count);
    write_num(w, "error_rate", m->error_rate);
    write_num(w, "requests_per_s", m->rate_per_s);
    write_num(w, "avg_latency_ms", m->avg_ms);
    write_num(w, "p50_ms", m->p50_ms);
    write_num(w, "p95_ms", m->p95_ms);
    write_num(w, "p99_ms", m->p99_ms);
    write_num(w, "max_ms", m->max_ms);
    write_num(w, "self_p50_ms", m->self_p50_ms);
    write_num(w, "self_p95_ms", m->self_p95_ms);
    write_num(w, "baseline_latency_ms", m->baseline_latency_ms);
    write_num(w, "baseline_p95_ms", m->baseline_p95_ms);
    write_num(w, "baseline_error_rate", m->baseline_error_rate);
    write_b(w, "baseline_trusted", m->baseline_trusted);
    fl_jw_key(w, "status_codes");
    fl_jw_obj_begin(w);
    for (size_t i = 0; i < m->n_statuses; i++) {
        int c = m->statuses[i].code;
        if (c == 0)
            snprintf(code, sizeof(code), "none");
        else if (c < 0)
            snprintf(code, sizeof(code), "other");
        else
            snprintf(code, sizeof(code), "%d", c);
        write_u(w, code, m->statuses[i].count);
    }
    fl_jw_obj_end(w);
    fl_jw_key(w, "span_status");
    fl_jw_obj_begin(w);
    write_u(w, "unset", m->status_unset);
    write_u(w, "ok", m->status_ok);
    write_u(w, "error", m->status_error);
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
}

static void metrics_common(fl_api_call_t *call, const char *service)
{
    static const char *const allowed_all[] = {"time_range", "start", "end", "service", "operation"};
    static const char *const allowed_svc[] = {"time_range", "start", "end", "operation"};
    fl_analysis_t *a;
    fl_analysis_filter_t f = {0};
    fl_analysis_metrics_t m = {0};
    const char *range_name = NULL;
    int rc;

    if (!check_params(call, service ? allowed_svc : allowed_all,
                      service ? sizeof(allowed_svc) / sizeof(allowed_svc[0])
                              : sizeof(allowed_all) / sizeof(allowed_all[0])))
        return;
    if (!(a = require_analysis(call)))
        return;
    if (!parse_range(call, 1, HOUR_NS, &f, &range_name))
        return;
    if (!service && !get_name(call, "service", &service))
        return;
    f.service = service;
    if (!get_name(call, "operation", &f.operation))
        return;
    if ((rc = fl_analysis_metrics(a, &f, fl_api_call_arena(call), &m)) != FL_OK) {
        reply_analysis_error(call, rc, "computing metrics");
        return;
    }
    if (fl_api_call_param(call, "service") && m.n == 0) {
        fl_api_reply_error(call, 404, "service \"%s\" has no endpoint metrics in the range",
                           service);
        return;
    }
    uint64_t req = 0, err = 0;
    fl_jw_t *w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    if (service)
        write_s(w, "service", service);
    write_s(w, "time_range", range_name ? range_name : NULL);
    write_range(w, m.start_ns ? m.start_ns : f.start_ns, m.end_ns ? m.end_ns : f.end_ns, a);
    fl_jw_key(w, "endpoints");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < m.n; i++) {
        write_endpoint(w, &m.items[i]);
        req += m.items[i].request_count;
        err += m.items[i].error_count;
    }
    fl_jw_arr_end(w);
    fl_jw_key(w, "totals");
    fl_jw_obj_begin(w);
    write_u(w, "endpoints", m.n);
    write_u(w, "request_count", req);
    write_u(w, "error_count", err);
    write_num(w, "error_rate", req ? (double)err / (double)req : 0.0);
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

static void route_metrics(fl_api_call_t *call, void *ud)
{
    (void)ud;
    metrics_common(call, NULL);
}

static void route_metrics_service(fl_api_call_t *call, void *ud)
{
    (void)ud;
    metrics_common(call, fl_api_call_param(call, "service"));
}

/* ---------------------------------------------------------------- GET /aiops/baselines */

static void route_baselines(fl_api_call_t *call, void *ud)
{
    static const char *const allowed[] = {"service", "operation", "subject"};
    fl_analysis_t *a;
    fl_analysis_filter_t f = {0};
    fl_analysis_baselines_t b = {0};
    const char *subject = NULL;
    int want = 0, rc;
    (void)ud;

    if (!check_params(call, allowed, 3) || !(a = require_analysis(call)))
        return;
    if (!get_name(call, "service", &f.service) || !get_name(call, "operation", &f.operation) ||
        !get_name(call, "subject", &subject))
        return;
    if (subject) {
        for (int k = FL_SUBJECT_ENDPOINT; k <= FL_SUBJECT_EDGE; k++)
            if (!strcmp(subject, fl_subject_name(k)))
                want = k;
        if (!want) {
            fl_api_reply_error(call, 400, "subject: \"%s\" is not endpoint|self_time|edge",
                               subject);
            return;
        }
    }
    if ((rc = fl_analysis_baselines(a, &f, fl_api_call_arena(call), &b)) != FL_OK) {
        reply_analysis_error(call, rc, "reading baselines");
        return;
    }
    fl_jw_t *w = fl_api_call_json(call);
    size_t count = 0;
    fl_jw_obj_begin(w);
    fl_jw_key(w, "baselines");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < b.n; i++) {
        const fl_baseline_info_t *x = &b.items[i];
        int edge = x->subject == FL_SUBJECT_EDGE;
        if (want && (int)x->subject != want)
            continue;
        count++;
        fl_jw_obj_begin(w);
        write_s(w, "subject", fl_subject_name(x->subject));
        write_s(w, "service", x->service);
        write_s(w, "operation", x->operation);
        if (edge) {
            write_s(w, "caller_service", x->caller_service);
            write_s(w, "caller_operation", x->caller_operation);
        }
        write_b(w, "virtual_peer", x->virtual_peer);
        write_num(w, "baseline_latency_ms", x->mean_ms);
        write_num(w, "mean_spread", x->mean_spread);
        write_num(w, "baseline_p95_ms", x->p95_ms);
        write_num(w, "p95_spread", x->p95_spread);
        write_num(w, edge ? "gap_mean_ms" : "self_mean_ms", x->aux_mean_ms);
        write_num(w, edge ? "gap_p95_ms" : "self_p95_ms", x->aux_p95_ms);
        write_num(w, "error_rate", x->error_rate);
        write_num(w, "requests_per_s", x->rate_per_s);
        write_num(w, "requests_per_s_sd", x->rate_sd);
        write_num(w, "confidence", x->confidence);
        write_b(w, "trusted", x->trusted);
        write_b(w, "hourly", x->hourly);
        write_u(w, "trained_buckets", x->trained_buckets);
        write_u(w, "trained_requests", x->trained_requests);
        write_u(w, "skipped_anomalous", x->skipped_anomalous);
        write_u(w, "skipped_outliers", x->skipped_outliers);
        fl_api__write_time(w, "first_trained", x->first_ns);
        fl_api__write_time(w, "updated", x->updated_ns);
        fl_jw_key(w, "history");
        fl_jw_arr_begin(w);
        for (size_t k = 0; k < x->n_history; k++) {
            const fl_baseline_point_t *p = &x->history[k];
            fl_jw_obj_begin(w);
            fl_api__write_time(w, "time", p->time_ns);
            write_num(w, "mean_ms", p->mean_ms);
            write_num(w, "p95_ms", p->p95_ms);
            write_num(w, "error_rate", p->error_rate);
            write_num(w, "requests_per_s", p->rate_per_s);
            fl_jw_obj_end(w);
        }
        fl_jw_arr_end(w);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    write_u(w, "count", count);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- anomalies */

void fl_api__write_anomaly(fl_jw_t *w, const fl_anomaly_t *x)
{
    char id[17];
    uint8_t idb[8];

    for (int i = 0; i < 8; i++)
        idb[i] = (uint8_t)(x->id >> (56 - 8 * i));
    fl_hex_encode(idb, 8, id);
    fl_jw_obj_begin(w);
    write_s(w, "id", id);
    write_s(w, "service", x->service);
    write_s(w, "operation", x->operation);
    write_s(w, "kind", fl_anomaly_kind_name(x->kind));
    write_s(w, "subject", fl_subject_name(x->subject));
    write_s(w, "caller_service", x->caller_service);
    write_s(w, "caller_operation", x->caller_operation);
    write_b(w, "virtual_peer", x->virtual_peer);
    write_s(w, "metric", x->metric);
    write_s(w, "unit", x->unit);
    write_s(w, "direction", x->direction);
    write_s(w, "error_type", x->error_type);
    fl_api__write_time(w, "start", x->start_ns);
    fl_api__write_time(w, "end", x->end_ns);
    fl_api__write_time(w, "detected", x->detected_ns);
    write_b(w, "open", x->open);
    write_b(w, "accepted", x->accepted);
    write_num(w, "observed", x->observed);
    write_num(w, "baseline", x->baseline);
    write_num(w, "ratio", x->ratio);
    write_num(w, "z_score", x->z);
    write_u(w, "samples", x->samples);
    write_u(w, "buckets", x->buckets);
    write_s(w, "severity", fl_severity_name(x->severity));
    write_s(w, "summary", x->summary);
    fl_jw_key(w, "example_trace_ids");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < x->n_trace_ids && i < FL_ANOMALY_MAX_TRACES; i++)
        fl_jw_hex(w, x->trace_ids[i], 16);
    fl_jw_arr_end(w);
    fl_jw_obj_end(w);
}

static void route_anomalies(fl_api_call_t *call, void *ud)
{
    static const char *const allowed[] = {"start", "end", "service", "open", "kind"};
    fl_analysis_t *a;
    fl_analysis_filter_t f = {0};
    fl_analysis_anomalies_t r = {0};
    const char *kind = NULL;
    char err[256];
    int open = 0, has_open = 0, want = 0, rc;
    (void)ud;

    if (!check_params(call, allowed, 5) || !(a = require_analysis(call)))
        return;
    if (!parse_range(call, 0, 0, &f, NULL))
        return;
    /* Without an explicit end, the range reaches the present (open anomalies included). */
    if (!fl_api_query_get(fl_api_call_query(call), "end"))
        f.end_ns = 0;
    if (!get_name(call, "service", &f.service) || !get_name(call, "kind", &kind))
        return;
    if (fl_api_query_bool(fl_api_call_query(call), "open", &open, &has_open, err, sizeof(err)) !=
        FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    f.open_only = has_open && open;
    if (kind) {
        for (int k = FL_ANOMALY_LATENCY; k <= FL_ANOMALY_NEW_ERROR_TYPE; k++)
            if (!strcmp(kind, fl_anomaly_kind_name(k)))
                want = k;
        if (!want) {
            fl_api_reply_error(call, 400,
                               "kind: \"%s\" is not latency|error|timeout|traffic|new_error_type",
                               kind);
            return;
        }
    }
    if ((rc = fl_analysis_anomalies(a, &f, fl_api_call_arena(call), &r)) != FL_OK) {
        reply_analysis_error(call, rc, "listing anomalies");
        return;
    }
    fl_jw_t *w = fl_api_call_json(call);
    size_t count = 0;
    fl_jw_obj_begin(w);
    write_range(w, f.start_ns, f.end_ns, a);
    fl_jw_key(w, "anomalies");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < r.n; i++) {
        if (want && (int)r.items[i].kind != want)
            continue;
        if (has_open && !open && r.items[i].open)
            continue;
        fl_api__write_anomaly(w, &r.items[i]);
        count++;
    }
    fl_jw_arr_end(w);
    write_u(w, "count", count);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- POST /aiops/analyze */

static void route_analyze(fl_api_call_t *call, void *ud)
{
    static const char *const allowed[] = {"until"};
    const fl_api_query_t *q = fl_api_call_query(call);
    fl_analysis_t *a;
    fl_analysis_run_result_t res = {0};
    fl_analysis_anomalies_t open = {0};
    fl_analysis_filter_t f = {.open_only = 1};
    fl_analysis_status_t st;
    uint64_t until = 0;
    int has_until = 0, rc;
    char err[256];
    fl_arena_t *arena = fl_api_call_arena(call);
    (void)ud;

    if (!check_params(call, allowed, 1) || !(a = require_analysis(call)))
        return;
    if (fl_api_query_time(q, "until", &until, &has_until, err, sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    fl_incident_changes_t ch = {0};
    if (call->api->analyze_fn)
        rc = call->api->analyze_fn(call->api->analyze_ud, until, arena, &res, &ch);
    else
        rc = fl_analysis_run(a, until, arena, &res);
    if (rc != FL_OK) {
        reply_analysis_error(call, rc, "running the analysis");
        return;
    }
    if ((rc = fl_analysis_anomalies(a, &f, arena, &open)) != FL_OK) {
        reply_analysis_error(call, rc, "listing anomalies");
        return;
    }
    fl_analysis_status(a, &st);
    fl_jw_t *w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    write_s(w, "status", "ok");
    fl_api__write_time(w, "watermark", res.watermark_ns);
    fl_api__write_time(w, "closed_until", res.closed_until_ns);
    write_u(w, "buckets_closed", res.buckets_closed);
    write_u(w, "opened", res.opened);
    write_u(w, "updated", res.updated);
    write_u(w, "closed", res.closed);
    write_num(w, "duration_ms", (double)res.duration_ns / 1e6);
    write_u(w, "series", st.series_total);
    fl_jw_key(w, "changed");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < res.n_changed; i++)
        fl_api__write_anomaly(w, &res.changed[i]);
    fl_jw_arr_end(w);
    fl_jw_key(w, "anomalies");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < open.n; i++)
        fl_api__write_anomaly(w, &open.items[i]);
    fl_jw_arr_end(w);
    /* What the run did to incidents: ids of those opened, updated and resolved. */
    fl_jw_key(w, "incidents");
    fl_jw_obj_begin(w);
    const struct {
        const char *key;
        char (*ids)[24];
        size_t n;
    } lists[] = {{"opened", ch.opened, ch.n_opened},
                 {"updated", ch.updated, ch.n_updated},
                 {"resolved", ch.resolved, ch.n_resolved}};
    for (size_t k = 0; k < 3; k++) {
        fl_jw_key(w, lists[k].key);
        fl_jw_arr_begin(w);
        for (size_t i = 0; i < lists[k].n; i++)
            fl_jw_str(w, lists[k].ids[i]);
        fl_jw_arr_end(w);
    }
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- GET /api/dependencies */

static void write_edge(fl_jw_t *w, const fl_graph_edge_t *e)
{
    fl_jw_obj_begin(w);
    write_s(w, "caller", e->caller_name);
    write_s(w, "callee", e->callee_name);
    write_u(w, "call_count", e->calls);
    write_u(w, "error_count", e->errors);
    write_num(w, "error_rate", e->error_rate);
    write_u(w, "unanswered", e->unanswered);
    write_num(w, "p50_ms", e->p50_ms);
    write_num(w, "p95_ms", e->p95_ms);
    write_num(w, "gap_p50_ms", e->gap_p50_ms);
    write_num(w, "gap_p95_ms", e->gap_p95_ms);
    write_u(w, "criticality", e->criticality);
    write_b(w, "async", e->async);
    write_b(w, "virtual_peer", e->virtual_peer);
    fl_jw_obj_end(w);
}

static void route_dependencies(fl_api_call_t *call, void *ud)
{
    static const char *const allowed[] = {"start", "end", "time_range", "operations"};
    fl_analysis_t *a;
    fl_analysis_filter_t f = {0};
    fl_graph_t g = {0};
    char err[256];
    int ops = 0, has_ops = 0, rc;
    (void)ud;

    if (!check_params(call, allowed, 4) || !(a = require_analysis(call)))
        return;
    if (!parse_range(call, 1, HOUR_NS, &f, NULL))
        return;
    if (fl_api_query_bool(fl_api_call_query(call), "operations", &ops, &has_ops, err,
                          sizeof(err)) != FL_OK) {
        fl_api_reply_error(call, 400, "%s", err);
        return;
    }
    if ((rc = fl_analysis_graph(a, &f, fl_api_call_arena(call), &g)) != FL_OK) {
        reply_analysis_error(call, rc, "building the dependency graph");
        return;
    }
    fl_jw_t *w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    write_range(w, g.start_ns ? g.start_ns : f.start_ns, g.end_ns ? g.end_ns : f.end_ns, a);
    fl_jw_key(w, "nodes");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < g.n_nodes; i++) {
        const fl_graph_node_t *n = &g.nodes[i];
        fl_jw_obj_begin(w);
        write_s(w, "name", n->name);
        write_s(w, "type", n->virtual_peer ? "peer" : "service");
        write_b(w, "virtual_peer", n->virtual_peer);
        write_u(w, "request_count", n->requests);
        write_u(w, "error_count", n->errors);
        write_num(w, "error_rate", n->requests ? (double)n->errors / (double)n->requests : 0.0);
        write_u(w, "dependents", n->dependents);
        write_u(w, "dependencies", n->dependencies);
        write_b(w, "in_cycle", n->in_cycle);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    fl_jw_key(w, "edges");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < g.n_edges; i++)
        write_edge(w, &g.edges[i]);
    fl_jw_arr_end(w);
    fl_jw_key(w, "cycles");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < g.n_cycles; i++) {
        fl_jw_arr_begin(w);
        for (size_t k = 0; k < g.cycles[i].n; k++) {
            uint32_t ni = g.cycles[i].nodes[k];
            fl_jw_str(w, ni < g.n_nodes ? g.nodes[ni].name : "");
        }
        fl_jw_arr_end(w);
    }
    fl_jw_arr_end(w);
    if (ops) {
        fl_jw_key(w, "operations");
        fl_jw_arr_begin(w);
        for (size_t i = 0; i < g.n_ops; i++) {
            const fl_graph_op_t *o = &g.ops[i];
            fl_jw_obj_begin(w);
            write_s(w, "service", o->service);
            write_s(w, "operation", o->operation);
            write_b(w, "entry", o->entry);
            write_u(w, "count", o->count);
            write_u(w, "error_count", o->errors);
            write_num(w, "p50_ms", o->p50_ms);
            write_num(w, "p95_ms", o->p95_ms);
            write_num(w, "self_p95_ms", o->self_p95_ms);
            fl_jw_obj_end(w);
        }
        fl_jw_arr_end(w);
        fl_jw_key(w, "operation_edges");
        fl_jw_arr_begin(w);
        for (size_t i = 0; i < g.n_op_edges; i++)
            write_edge(w, &g.op_edges[i]);
        fl_jw_arr_end(w);
    }
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

/* ---------------------------------------------------------------- /aiops/status member */

void fl_api__write_analysis_status(fl_api_t *api, fl_jw_t *w)
{
    fl_analysis_status_t st;

    if (!api->analysis || fl_analysis_status(api->analysis, &st) != FL_OK)
        return;
    fl_jw_key(w, "analysis");
    fl_jw_obj_begin(w);
    fl_api__write_time(w, "watermark", st.watermark_ns);
    fl_api__write_time(w, "closed_until", st.closed_until_ns);
    fl_api__write_time(w, "analyzed_until", st.analyzed_until_ns);
    fl_api__write_time(w, "last_analysis", st.last_run_wall_ns);
    write_num(w, "last_analysis_duration_ms", (double)st.last_run_duration_ns / 1e6);
    write_u(w, "runs", st.runs);
    write_u(w, "spans_observed", st.spans_observed);
    write_u(w, "spans_late", st.spans_late);
    write_u(w, "spans_lost", st.spans_lost);
    write_u(w, "series_count", st.series_total);
    write_u(w, "series_endpoints", st.series_endpoints);
    write_u(w, "series_operations", st.series_operations);
    write_u(w, "series_edges", st.series_edges);
    write_u(w, "series_refused", st.series_refused);
    write_u(w, "window_capacity", st.window_capacity);
    write_u(w, "window_used", st.window_used);
    write_u(w, "window_evictions", st.window_evictions);
    write_u(w, "unmatched_clients", st.unmatched_clients);
    write_u(w, "pending_buckets", st.pending_buckets);
    write_u(w, "dropped_buckets", st.dropped_buckets);
    write_u(w, "history_bytes", st.history_bytes);
    fl_api__write_time(w, "history_oldest", st.history_oldest_ns);
    write_u(w, "anomalies_open", st.anomalies_open);
    write_u(w, "anomalies_total", st.anomalies_total);
    fl_jw_obj_end(w);
}

int fl_api__register_aiops(fl_api_t *api)
{
    static const fl_api__route_def_t routes[] = {
        {"GET", "/aiops/metrics", route_metrics, 0},
        {"GET", "/aiops/metrics/{service}", route_metrics_service, 0},
        {"GET", "/aiops/baselines", route_baselines, 0},
        {"GET", "/aiops/anomalies", route_anomalies, 0},
        {"POST", "/aiops/analyze", route_analyze, 0},
        {"GET", "/api/dependencies", route_dependencies, 0},
    };
    return fl_api__register_table(api, routes, sizeof(routes) / sizeof(routes[0]));
}
