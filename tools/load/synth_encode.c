/* SPDX-License-Identifier: Apache-2.0 */
/* Synthetic spans -> one OTLP ExportTraceServiceRequest, with the HTTP and database semantic
 * convention attributes a real SDK would set. Every struct comes from one arena. */
#include "synth.h"

#include <faultline/common.h>

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs_t;

#define MAX_ATTRS 12

typedef struct attrs {
    pb_kv_t **v;
    size_t n;
    fl_arena_t *a;
} attrs_t;

static pb_kv_t *kv_new(attrs_t *at, const char *key)
{
    if (at->n >= MAX_ATTRS)
        return NULL;
    pb_kv_t *kv = fl_arena_alloc(at->a, sizeof(*kv));
    pb_any_t *v = fl_arena_alloc(at->a, sizeof(*v));
    if (!kv || !v)
        return NULL;
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(v);
    kv->key = (char *)key;
    kv->value = v;
    at->v[at->n++] = kv;
    return kv;
}

static void put_str(attrs_t *at, const char *key, const char *val)
{
    pb_kv_t *kv = val ? kv_new(at, key) : NULL;
    if (!kv)
        return;
    kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    kv->value->string_value = (char *)val;
}

static void put_int(attrs_t *at, const char *key, int64_t val)
{
    pb_kv_t *kv = kv_new(at, key);
    if (!kv)
        return;
    kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    kv->value->int_value = val;
}

static int attrs_init(attrs_t *at, fl_arena_t *a)
{
    at->a = a;
    at->n = 0;
    at->v = fl_arena_alloc(a, MAX_ATTRS * sizeof(*at->v));
    return at->v ? 0 : -1;
}

static int enc_span(fl_arena_t *a, const fl_synth_topo_t *t, const fl_synth_span_t *s, pb_span_t *p)
{
    opentelemetry__proto__trace__v1__span__init(p);
    p->trace_id.data = (uint8_t *)s->trace_id;
    p->trace_id.len = 16;
    p->span_id.data = (uint8_t *)s->span_id;
    p->span_id.len = 8;
    if (s->has_parent) {
        p->parent_span_id.data = (uint8_t *)s->parent_id;
        p->parent_span_id.len = 8;
    }
    p->flags = 0x101u | (s->kind == FL_SYNTH_SERVER && s->has_parent ? 0x200u : 0);
    p->name = (char *)s->name;
    p->kind = s->kind == FL_SYNTH_SERVER
                  ? OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER
                  : OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    p->start_time_unix_nano = s->start_ns;
    p->end_time_unix_nano = s->end_ns;
    attrs_t at;
    if (attrs_init(&at, a) != 0)
        return -1;
    if (s->kind == FL_SYNTH_SERVER) {
        put_str(&at, "http.request.method", s->method);
        put_str(&at, "http.route", s->route);
        put_str(&at, "url.path", s->route);
        put_str(&at, "server.address", fl_synth_topo_service_name(t, (size_t)s->service));
        if (s->method)
            put_int(&at, "server.port", 8080);
        if (s->http_status)
            put_int(&at, "http.response.status_code", s->http_status);
    } else {
        put_str(&at, "peer.service", s->peer);
        put_str(&at, "server.address", s->peer);
        if (s->db_system) {
            put_str(&at, "db.system", s->db_system);
            put_str(&at, "db.name", s->db_name);
            put_str(&at, "db.operation.name", s->name);
        } else if (s->method) {
            put_str(&at, "http.request.method", s->method);
            put_int(&at, "server.port", 8080);
            char *url = fl_arena_sprintf(a, "http://%s:8080%s", s->peer, s->route ? s->route : "/");
            put_str(&at, "url.full", url);
        }
        if (s->http_status)
            put_int(&at, "http.response.status_code", s->http_status);
        if (s->timeout)
            put_str(&at, "error.type", "timeout");
    }
    p->attributes = at.v;
    p->n_attributes = at.n;
    if (s->exception_type) {
        Opentelemetry__Proto__Trace__V1__Span__Event *ev = fl_arena_alloc(a, sizeof(*ev));
        Opentelemetry__Proto__Trace__V1__Span__Event **evs = fl_arena_alloc(a, sizeof(*evs));
        attrs_t ea;
        if (!ev || !evs || attrs_init(&ea, a) != 0)
            return -1;
        opentelemetry__proto__trace__v1__span__event__init(ev);
        ev->name = "exception";
        ev->time_unix_nano = s->end_ns;
        put_str(&ea, "exception.type", s->exception_type);
        put_str(&ea, "exception.message", s->status_message ? s->status_message : "error");
        ev->attributes = ea.v;
        ev->n_attributes = ea.n;
        evs[0] = ev;
        p->events = evs;
        p->n_events = 1;
    }
    if (s->error) {
        Opentelemetry__Proto__Trace__V1__Status *st = fl_arena_alloc(a, sizeof(*st));
        if (!st)
            return -1;
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        st->message = (char *)(s->status_message ? s->status_message : "");
        p->status = st;
    }
    return 0;
}

uint8_t *fl_synth_encode(const fl_synth_topo_t *t, const fl_synth_span_t *spans, size_t n,
                         size_t *len)
{
    size_t nsvc = fl_synth_topo_n_services(t);
    fl_arena_t *a = fl_arena_new(0);
    uint8_t *out = NULL;
    if (!a)
        return NULL;
    /* Group by service, services in order of first appearance. */
    int *slot = fl_arena_alloc(a, nsvc * sizeof(int));
    size_t *count = fl_arena_calloc(a, nsvc, sizeof(size_t));
    pb_rs_t **rsv = fl_arena_calloc(a, nsvc, sizeof(*rsv));
    pb_span_t *ps = fl_arena_alloc(a, (n ? n : 1) * sizeof(*ps));
    if (!slot || !count || !rsv || !ps)
        goto out;
    for (size_t i = 0; i < nsvc; i++)
        slot[i] = -1;
    size_t n_rs = 0;
    int *order = fl_arena_alloc(a, nsvc * sizeof(int));
    if (!order)
        goto out;
    for (size_t i = 0; i < n; i++) {
        int s = spans[i].service;
        if (slot[s] < 0) {
            slot[s] = (int)n_rs;
            order[n_rs++] = s;
        }
        count[s]++;
    }
    Opentelemetry__Proto__Common__V1__InstrumentationScope *scope =
        fl_arena_alloc(a, sizeof(*scope));
    if (!scope)
        goto out;
    opentelemetry__proto__common__v1__instrumentation_scope__init(scope);
    scope->name = "faultline-load";
    scope->version = FL_VERSION;
    pb_ss_t **ssv = fl_arena_alloc(a, (n_rs ? n_rs : 1) * sizeof(*ssv));
    if (!ssv)
        goto out;
    for (size_t r = 0; r < n_rs; r++) {
        int s = order[r];
        pb_rs_t *rs = fl_arena_alloc(a, sizeof(*rs));
        pb_ss_t *ss = fl_arena_alloc(a, sizeof(*ss));
        pb_ss_t **ssp = fl_arena_alloc(a, sizeof(*ssp));
        Opentelemetry__Proto__Resource__V1__Resource *res = fl_arena_alloc(a, sizeof(*res));
        attrs_t ra;
        if (!rs || !ss || !ssp || !res || attrs_init(&ra, a) != 0)
            goto out;
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        opentelemetry__proto__trace__v1__scope_spans__init(ss);
        opentelemetry__proto__resource__v1__resource__init(res);
        put_str(&ra, "service.name", fl_synth_topo_service_name(t, (size_t)s));
        put_str(&ra, "telemetry.sdk.name", "faultline-load");
        put_str(&ra, "telemetry.sdk.language", "c");
        res->attributes = ra.v;
        res->n_attributes = ra.n;
        ss->scope = scope;
        ss->spans = fl_arena_alloc(a, count[s] * sizeof(*ss->spans));
        if (!ss->spans)
            goto out;
        ssv[r] = ss;
        *ssp = ss;
        rs->resource = res;
        rs->scope_spans = ssp;
        rs->n_scope_spans = 1;
        rsv[r] = rs;
    }
    for (size_t i = 0; i < n; i++) {
        if (enc_span(a, t, &spans[i], &ps[i]) != 0)
            goto out;
        pb_ss_t *ss = ssv[slot[spans[i].service]];
        ss->spans[ss->n_spans++] = &ps[i];
    }
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = n_rs;
    req.resource_spans = rsv;
    size_t sz =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    out = malloc(sz ? sz : 1);
    if (out)
        *len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req,
                                                                                              out);
out:
    fl_arena_free(a);
    return out;
}
