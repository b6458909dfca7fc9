/* SPDX-License-Identifier: Apache-2.0 */
/* Deep comparison of spans in the span model, shared by the store and receiver tests and the
 * protobuf fuzz target. Header-only (static inline). */
#ifndef FL_TEST_SPAN_UTIL_H
#define FL_TEST_SPAN_UTIL_H

#include <faultline/common.h>

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- deep comparison */

static inline int tsu_str_eq(fl_str_t a, fl_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline int tsu_attrs_eq(const fl_attrs_t *a, const fl_attrs_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (!tsu_str_eq(a->items[i].key, b->items[i].key) ||
            !fl_value_eq(&a->items[i].value, &b->items[i].value))
            return 0;
    return 1;
}

#define TSU_CHECK(cond, what)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(why, whylen, "%s", what);                                                     \
            return 0;                                                                              \
        }                                                                                          \
    } while (0)

static inline int tsu_resource_eq(const fl_resource_t *a, const fl_resource_t *b, char *why,
                                  size_t whylen)
{
    TSU_CHECK(!a == !b, "resource presence");
    if (!a)
        return 1;
    TSU_CHECK(tsu_attrs_eq(&a->attrs, &b->attrs), "resource attrs");
    TSU_CHECK(a->dropped_attrs == b->dropped_attrs, "resource dropped");
    TSU_CHECK(tsu_str_eq(a->schema_url, b->schema_url), "resource schema_url");
    TSU_CHECK(tsu_str_eq(a->service_name, b->service_name), "resource service_name");
    return 1;
}

static inline int tsu_scope_eq(const fl_scope_t *a, const fl_scope_t *b, char *why, size_t whylen)
{
    TSU_CHECK(!a == !b, "scope presence");
    if (!a)
        return 1;
    TSU_CHECK(tsu_str_eq(a->name, b->name), "scope name");
    TSU_CHECK(tsu_str_eq(a->version, b->version), "scope version");
    TSU_CHECK(tsu_attrs_eq(&a->attrs, &b->attrs), "scope attrs");
    TSU_CHECK(a->dropped_attrs == b->dropped_attrs, "scope dropped");
    TSU_CHECK(tsu_str_eq(a->schema_url, b->schema_url), "scope schema_url");
    return 1;
}

/* 1 when every field of two spans is equal; otherwise why names the first difference. */
static inline int tsu_span_eq(const fl_span_t *a, const fl_span_t *b, char *why, size_t whylen)
{
    TSU_CHECK(memcmp(a->trace_id, b->trace_id, 16) == 0, "trace_id");
    TSU_CHECK(memcmp(a->span_id, b->span_id, 8) == 0, "span_id");
    TSU_CHECK(memcmp(a->parent_span_id, b->parent_span_id, 8) == 0, "parent_span_id");
    TSU_CHECK(tsu_str_eq(a->trace_state, b->trace_state), "trace_state");
    TSU_CHECK(a->flags == b->flags, "flags");
    TSU_CHECK(tsu_str_eq(a->name, b->name), "name");
    TSU_CHECK(a->kind == b->kind, "kind");
    TSU_CHECK(a->start_ns == b->start_ns, "start_ns");
    TSU_CHECK(a->end_ns == b->end_ns, "end_ns");
    TSU_CHECK(tsu_attrs_eq(&a->attrs, &b->attrs), "attrs");
    TSU_CHECK(a->dropped_attrs == b->dropped_attrs, "dropped_attrs");
    TSU_CHECK(a->n_events == b->n_events, "n_events");
    for (size_t i = 0; i < a->n_events; i++) {
        const fl_event_t *x = &a->events[i], *y = &b->events[i];
        TSU_CHECK(x->time_ns == y->time_ns, "event time");
        TSU_CHECK(tsu_str_eq(x->name, y->name), "event name");
        TSU_CHECK(tsu_attrs_eq(&x->attrs, &y->attrs), "event attrs");
        TSU_CHECK(x->dropped_attrs == y->dropped_attrs, "event dropped");
    }
    TSU_CHECK(a->dropped_events == b->dropped_events, "dropped_events");
    TSU_CHECK(a->n_links == b->n_links, "n_links");
    for (size_t i = 0; i < a->n_links; i++) {
        const fl_link_t *x = &a->links[i], *y = &b->links[i];
        TSU_CHECK(memcmp(x->trace_id, y->trace_id, 16) == 0, "link trace_id");
        TSU_CHECK(memcmp(x->span_id, y->span_id, 8) == 0, "link span_id");
        TSU_CHECK(tsu_str_eq(x->trace_state, y->trace_state), "link trace_state");
        TSU_CHECK(tsu_attrs_eq(&x->attrs, &y->attrs), "link attrs");
        TSU_CHECK(x->dropped_attrs == y->dropped_attrs, "link dropped");
        TSU_CHECK(x->flags == y->flags, "link flags");
    }
    TSU_CHECK(a->dropped_links == b->dropped_links, "dropped_links");
    TSU_CHECK(a->status_code == b->status_code, "status_code");
    TSU_CHECK(tsu_str_eq(a->status_message, b->status_message), "status_message");
    if (!tsu_resource_eq(a->resource, b->resource, why, whylen))
        return 0;
    if (!tsu_scope_eq(a->scope, b->scope, why, whylen))
        return 0;
    return 1;
}

/* ---------------------------------------------------------------- strings cut at NUL */

/* protobuf-c hands strings back NUL-terminated, so the protobuf-c reference decoder ends a
 * string at an embedded U+0000 where the wire decoder keeps it whole. These cut a span's
 * strings (not its bytes values) the same way, so the two can be compared on any input. */
static inline void tsu_cut_str(fl_str_t *s)
{
    const char *z = s->len ? memchr(s->ptr, 0, s->len) : NULL;
    if (z)
        s->len = (size_t)(z - s->ptr);
}

static inline void tsu_cut_attrs(fl_attrs_t *a);

static inline void tsu_cut_value(fl_value_t *v)
{
    if (v->type == FL_VAL_STRING) {
        tsu_cut_str(&v->u.str);
    } else if (v->type == FL_VAL_ARRAY) {
        for (size_t i = 0; i < v->u.arr.n; i++)
            tsu_cut_value(&v->u.arr.items[i]);
    } else if (v->type == FL_VAL_KVLIST) {
        fl_attrs_t kv = {v->u.kv.items, v->u.kv.n};
        tsu_cut_attrs(&kv);
    }
}

static inline void tsu_cut_attrs(fl_attrs_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        tsu_cut_str(&a->items[i].key);
        tsu_cut_value(&a->items[i].value);
    }
}

static inline void tsu_cut_span(fl_span_t *s)
{
    tsu_cut_str(&s->trace_state);
    tsu_cut_str(&s->name);
    tsu_cut_str(&s->status_message);
    tsu_cut_attrs(&s->attrs);
    for (size_t i = 0; i < s->n_events; i++) {
        tsu_cut_str(&s->events[i].name);
        tsu_cut_attrs(&s->events[i].attrs);
    }
    for (size_t i = 0; i < s->n_links; i++) {
        tsu_cut_str(&s->links[i].trace_state);
        tsu_cut_attrs(&s->links[i].attrs);
    }
}

#endif
