/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: the JSON shapes of spans and trace summaries (docs/api.md). Every string
 * goes through the common JSON writer, which escapes whatever the client sent. */
#include "api_internal.h"

#include <stdio.h>
#include <string.h>

const char *fl_api_kind_name(int kind)
{
    static const char *const names[] = {"unspecified", "internal", "server",
                                        "client",      "producer", "consumer"};
    if (kind < 0 || kind > FL_KIND_CONSUMER)
        return "unknown";
    return names[kind];
}

const char *fl_api_status_name(int status_code)
{
    switch (status_code) {
    case FL_STATUS_OK:
        return "ok";
    case FL_STATUS_ERROR:
        return "error";
    default:
        return "unset";
    }
}

static void key_strn(fl_jw_t *w, const char *key, fl_str_t s)
{
    fl_jw_key(w, key);
    fl_jw_strn(w, s.ptr ? s.ptr : "", s.ptr ? s.len : 0);
}

static void key_uint(fl_jw_t *w, const char *key, uint64_t v)
{
    fl_jw_key(w, key);
    fl_jw_uint(w, v);
}

static void key_hex(fl_jw_t *w, const char *key, const uint8_t *p, size_t n)
{
    fl_jw_key(w, key);
    fl_jw_hex(w, p, n);
}

/* "<name>": RFC 3339 and "<name>_unix_nano": exact integer, side by side. */
static void key_time(fl_jw_t *w, const char *name, uint64_t ns)
{
    char key[64];

    fl_jw_key(w, name);
    fl_jw_time(w, ns);
    snprintf(key, sizeof(key), "%s_unix_nano", name);
    key_uint(w, key, ns);
}

static void write_attrs(fl_jw_t *w, const fl_attrs_t *attrs, uint32_t dropped)
{
    fl_jw_key(w, "attributes");
    fl_jw_attrs(w, attrs);
    if (dropped)
        key_uint(w, "dropped_attributes_count", dropped);
}

void fl_api_write_span(fl_jw_t *w, const fl_span_t *s)
{
    static const fl_str_t unknown = {"unknown_service", 15};
    fl_str_t service = s->resource ? s->resource->service_name : unknown;

    fl_jw_obj_begin(w);
    key_hex(w, "trace_id", s->trace_id, 16);
    key_hex(w, "span_id", s->span_id, 8);
    fl_jw_key(w, "parent_span_id");
    if (fl_is_zero(s->parent_span_id, 8))
        fl_jw_str(w, "");
    else
        fl_jw_hex(w, s->parent_span_id, 8);
    key_strn(w, "service", service.ptr ? service : unknown);
    key_strn(w, "name", s->name);
    fl_jw_key(w, "kind");
    fl_jw_str(w, fl_api_kind_name(s->kind));
    key_time(w, "start_time", s->start_ns);
    key_time(w, "end_time", s->end_ns);
    key_uint(w, "duration_ns", s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0);
    fl_jw_key(w, "status_code");
    fl_jw_str(w, fl_api_status_name(s->status_code));
    key_strn(w, "status_message", s->status_message);
    key_strn(w, "trace_state", s->trace_state);
    key_uint(w, "flags", s->flags);
    write_attrs(w, &s->attrs, s->dropped_attrs);

    fl_jw_key(w, "events");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < s->n_events; i++) {
        const fl_event_t *e = &s->events[i];
        fl_jw_obj_begin(w);
        key_strn(w, "name", e->name);
        key_time(w, "time", e->time_ns);
        write_attrs(w, &e->attrs, e->dropped_attrs);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    if (s->dropped_events)
        key_uint(w, "dropped_events_count", s->dropped_events);

    fl_jw_key(w, "links");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < s->n_links; i++) {
        const fl_link_t *l = &s->links[i];
        fl_jw_obj_begin(w);
        key_hex(w, "trace_id", l->trace_id, 16);
        key_hex(w, "span_id", l->span_id, 8);
        key_strn(w, "trace_state", l->trace_state);
        key_uint(w, "flags", l->flags);
        write_attrs(w, &l->attrs, l->dropped_attrs);
        fl_jw_obj_end(w);
    }
    fl_jw_arr_end(w);
    if (s->dropped_links)
        key_uint(w, "dropped_links_count", s->dropped_links);

    fl_jw_key(w, "resource");
    fl_jw_obj_begin(w);
    if (s->resource) {
        write_attrs(w, &s->resource->attrs, s->resource->dropped_attrs);
        if (s->resource->schema_url.len)
            key_strn(w, "schema_url", s->resource->schema_url);
    } else {
        fl_jw_key(w, "attributes");
        fl_jw_obj_begin(w);
        fl_jw_obj_end(w);
    }
    fl_jw_obj_end(w);

    fl_jw_key(w, "scope");
    fl_jw_obj_begin(w);
    if (s->scope) {
        key_strn(w, "name", s->scope->name);
        key_strn(w, "version", s->scope->version);
        if (s->scope->attrs.n || s->scope->dropped_attrs)
            write_attrs(w, &s->scope->attrs, s->scope->dropped_attrs);
        if (s->scope->schema_url.len)
            key_strn(w, "schema_url", s->scope->schema_url);
    } else {
        key_strn(w, "name", FL_STR_LIT(""));
        key_strn(w, "version", FL_STR_LIT(""));
    }
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
}

void fl_api_write_trace_summary(fl_jw_t *w, const fl_trace_summary_t *t)
{
    uint64_t dur = t->end_ns > t->start_ns ? t->end_ns - t->start_ns : 0;

    fl_jw_obj_begin(w);
    key_hex(w, "trace_id", t->trace_id, 16);
    fl_jw_key(w, "root_service");
    fl_jw_str(w, t->root_service ? t->root_service : "");
    fl_jw_key(w, "root_name");
    fl_jw_str(w, t->root_name ? t->root_name : "");
    fl_jw_key(w, "start");
    fl_jw_time(w, t->start_ns);
    key_uint(w, "start_time_unix_nano", t->start_ns);
    fl_jw_key(w, "duration_ms");
    fl_jw_double(w, (double)dur / 1e6);
    key_uint(w, "span_count", t->n_spans);
    key_uint(w, "error_count", t->n_errors);
    fl_jw_key(w, "services");
    fl_jw_arr_begin(w);
    for (size_t i = 0; i < t->n_services; i++)
        fl_jw_str(w, t->services[i] ? t->services[i] : "");
    fl_jw_arr_end(w);
    fl_jw_obj_end(w);
}
