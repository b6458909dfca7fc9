/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP protobuf decoding: prescan, protobuf-c unpack into the batch's arena, conversion to
 * the span model with per-span validation, item counting for logs and metrics, and a
 * descriptor-driven diagnosis that names the field where an unpack failed. */
#include "receiver_int.h"

#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h>
#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <string.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_treq_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest pb_lreq_t;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest pb_mreq_t;

/* ---------------------------------------------------------------- diagnosis */

/* protobuf-c says only "failed". Walk the message again with its descriptor to find the
 * first field whose wire type or length does not fit, and name it by path and offset. */

static const char *wt_name(unsigned wt)
{
    switch (wt) {
    case 0:
        return "varint";
    case 1:
        return "64-bit";
    case 2:
        return "length-delimited";
    case 5:
        return "32-bit";
    default:
        return "invalid";
    }
}

static int expected_wt(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_BOOL:
    case PROTOBUF_C_TYPE_ENUM:
        return 0;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    default:
        return 2;
    }
}

static int diag_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Append a path element: snake_case field names become lowerCamelCase like the JSON
 * mapping, repeated fields get their index. */
static size_t path_add(char *path, size_t plen, size_t cap, const char *name, long idx)
{
    size_t o = plen;
    if (o && o + 1 < cap)
        path[o++] = '.';
    for (const char *q = name; *q && o + 1 < cap; q++) {
        if (*q == '_' && q[1]) {
            q++;
            path[o++] = (char)(*q >= 'a' && *q <= 'z' ? *q - 32 : *q);
        } else {
            path[o++] = *q;
        }
    }
    if (idx >= 0 && o + 1 < cap)
        o += (size_t)snprintf(path + o, cap - o, "[%ld]", idx);
    if (o >= cap)
        o = cap - 1;
    path[o] = 0;
    return o;
}

static int diag(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, size_t base,
                char *path, size_t plen, size_t pcap, char *out, size_t outlen, int depth)
{
    long counts[64];
    size_t i = 0;
    memset(counts, 0, sizeof(counts));
    if (depth > 200)
        return 0;
    while (i < len) {
        size_t at = i;
        uint64_t key, v = 0;
        if (diag_varint(p, len, &i, &key) < 0) {
            snprintf(out, outlen, "protobuf: %s%struncated field key at byte offset %zu", path,
                     plen ? ": " : "", base + at);
            return 1;
        }
        uint32_t num = (uint32_t)(key >> 3);
        unsigned wt = (unsigned)(key & 7);
        const ProtobufCFieldDescriptor *f =
            num ? protobuf_c_message_descriptor_get_field(d, num) : NULL;
        long idx = -1;
        if (f) {
            unsigned fi = (unsigned)(f - d->fields);
            if (f->label == PROTOBUF_C_LABEL_REPEATED && fi < 64)
                idx = counts[fi]++;
        }
        char sub[512];
        memcpy(sub, path, plen + 1);
        size_t slen = f ? path_add(sub, plen, sizeof(sub), f->name, idx) : plen;
        if (f) {
            int want = expected_wt(f->type);
            int packable = f->label == PROTOBUF_C_LABEL_REPEATED && want != 2;
            if ((int)wt != want && !(packable && wt == 2)) {
                snprintf(out, outlen,
                         "protobuf: %s (field %u) at byte offset %zu: wire type %u (%s), "
                         "expected %d (%s)",
                         sub, num, base + at, wt, wt_name(wt), want, wt_name((unsigned)want));
                return 1;
            }
        }
        switch (wt) {
        case 0:
            if (diag_varint(p, len, &i, &v) < 0) {
                snprintf(out, outlen, "protobuf: %s at byte offset %zu: truncated varint",
                         slen ? sub : "message", base + at);
                return 1;
            }
            break;
        case 1:
        case 5: {
            size_t w = wt == 1 ? 8 : 4;
            if (len - i < w) {
                snprintf(out, outlen, "protobuf: %s at byte offset %zu: truncated %s field",
                         slen ? sub : "message", base + at, wt_name(wt));
                return 1;
            }
            i += w;
            break;
        }
        case 2:
            if (diag_varint(p, len, &i, &v) < 0 || v > len - i) {
                snprintf(out, outlen,
                         "protobuf: %s at byte offset %zu: length runs past the end of the "
                         "enclosing message",
                         slen ? sub : "message", base + at);
                return 1;
            }
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                diag(f->descriptor, p + i, (size_t)v, base + i, sub, slen, sizeof(sub), out, outlen,
                     depth + 1))
                return 1;
            i += (size_t)v;
            break;
        default:
            snprintf(out, outlen, "protobuf: %s at byte offset %zu: unsupported wire type %u",
                     slen ? sub : "message", base + at, wt);
            return 1;
        }
    }
    return 0;
}

static int unpack_failed(const fl__pb_alloc_t *al, const ProtobufCMessageDescriptor *d,
                         const uint8_t *body, size_t len, char *err, size_t errlen)
{
    if (al->failed)
        return fl__errf(err, errlen, FL_ERR_NOMEM,
                        "out of memory while decoding (request too large to decode)");
    char path[512] = "";
    char msg[640];
    if (diag(d, body, len, 0, path, 0, sizeof(path), msg, sizeof(msg), 0))
        return fl__errf(err, errlen, FL_ERR_DECODE, "%s", msg);
    return fl__errf(err, errlen, FL_ERR_DECODE, "protobuf: cannot parse %s (%zu bytes)", d->name,
                    len);
}

/* ---------------------------------------------------------------- conversion */

/* Spans are unpacked one at a time into a scratch arena that is reset after each, so the
 * bulky protobuf-c structures never pile up; their strings and bytes are copied into the
 * batch arena (copy = 1). Resources and scopes are unpacked straight into the batch arena
 * and referenced in place (copy = 0). Copies go to a byte pool carved from the arena, so
 * small strings are not rounded up to the arena's 16-byte alignment. */
typedef struct conv {
    fl_arena_t *arena;
    int copy;
    int nomem;
    char *pool;
    size_t pool_left;
} conv_t;

#define STR_POOL_BLOCK 8192

static fl_str_t conv_bytes(conv_t *cv, const void *p, size_t len)
{
    fl_str_t r = {"", 0};
    if (!cv->copy || len == 0) {
        r.ptr = len ? p : "";
        r.len = len;
        return r;
    }
    if (len + 1 > cv->pool_left) {
        if (len + 1 > STR_POOL_BLOCK / 4) {
            char *own = fl_arena_alloc(cv->arena, len + 1);
            if (!own) {
                cv->nomem = 1;
                return r;
            }
            memcpy(own, p, len);
            own[len] = 0;
            r.ptr = own;
            r.len = len;
            return r;
        }
        cv->pool = fl_arena_alloc(cv->arena, STR_POOL_BLOCK);
        cv->pool_left = cv->pool ? STR_POOL_BLOCK : 0;
        if (!cv->pool) {
            cv->nomem = 1;
            return r;
        }
    }
    memcpy(cv->pool, p, len);
    cv->pool[len] = 0;
    r.ptr = cv->pool;
    r.len = len;
    cv->pool += len + 1;
    cv->pool_left -= len + 1;
    return r;
}

static inline fl_str_t cstr(conv_t *cv, const char *s)
{
    return s ? conv_bytes(cv, s, strlen(s)) : (fl_str_t){"", 0};
}

static int conv_attrs(conv_t *cv, size_t n, pb_kv_t **in, fl_attrs_t *out);

static int conv_value(conv_t *cv, const pb_any_t *in, fl_value_t *out)
{
    out->type = FL_VAL_EMPTY;
    if (!in)
        return 0;
    switch (in->value_case) {
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
        out->type = FL_VAL_STRING;
        out->u.str = cstr(cv, in->string_value);
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
        out->type = FL_VAL_BOOL;
        out->u.b = in->bool_value ? 1 : 0;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
        out->type = FL_VAL_INT;
        out->u.i = in->int_value;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
        out->type = FL_VAL_DOUBLE;
        out->u.d = in->double_value;
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
        out->type = FL_VAL_BYTES;
        out->u.str = conv_bytes(cv, in->bytes_value.data, in->bytes_value.len);
        break;
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
        const Opentelemetry__Proto__Common__V1__ArrayValue *a = in->array_value;
        out->type = FL_VAL_ARRAY;
        out->u.arr.items = NULL;
        out->u.arr.n = 0;
        if (!a || !a->n_values)
            break;
        fl_value_t *items = fl_arena_alloc(cv->arena, a->n_values * sizeof(*items));
        if (!items)
            return cv->nomem = -1;
        for (size_t i = 0; i < a->n_values; i++)
            if (conv_value(cv, a->values[i], &items[i]) < 0)
                return -1;
        out->u.arr.items = items;
        out->u.arr.n = a->n_values;
        break;
    }
    case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
        const Opentelemetry__Proto__Common__V1__KeyValueList *l = in->kvlist_value;
        fl_attrs_t kv = {NULL, 0};
        out->type = FL_VAL_KVLIST;
        if (l && conv_attrs(cv, l->n_values, l->values, &kv) < 0)
            return -1;
        out->u.kv.items = kv.items;
        out->u.kv.n = kv.n;
        break;
    }
    default:
        /* Not set, or the profiles-only string table index: an empty value. */
        break;
    }
    return 0;
}

static int conv_attrs(conv_t *cv, size_t n, pb_kv_t **in, fl_attrs_t *out)
{
    out->items = NULL;
    out->n = 0;
    if (!n)
        return 0;
    fl_kv_t *items = fl_arena_alloc(cv->arena, n * sizeof(*items));
    if (!items)
        return cv->nomem = -1;
    for (size_t i = 0; i < n; i++) {
        items[i].key = cstr(cv, in[i]->key);
        if (conv_value(cv, in[i]->value, &items[i].value) < 0)
            return -1;
    }
    out->items = items;
    out->n = n;
    return 0;
}

/* fl_is_zero for the two id sizes, a word at a time (this runs for every span). */
static inline int zero_id(const uint8_t *p, size_t n)
{
    uint64_t a, b = 0;
    memcpy(&a, p, 8);
    if (n == 16)
        memcpy(&b, p + 8, 8);
    return (a | b) == 0;
}

/* Why a span's ids make it invalid, or NULL. */
static const char *check_ids(const pb_span_t *s, char *buf, size_t buflen)
{
    if (s->trace_id.len != 16) {
        if (s->trace_id.len == 0)
            return "traceId: missing trace id";
        snprintf(buf, buflen, "traceId: expected 16 bytes, got %zu", s->trace_id.len);
        return buf;
    }
    if (zero_id(s->trace_id.data, 16))
        return "traceId: all-zero trace id";
    if (s->span_id.len != 8) {
        if (s->span_id.len == 0)
            return "spanId: missing span id";
        snprintf(buf, buflen, "spanId: expected 8 bytes, got %zu", s->span_id.len);
        return buf;
    }
    if (zero_id(s->span_id.data, 8))
        return "spanId: all-zero span id";
    if (s->parent_span_id.len != 0 && s->parent_span_id.len != 8) {
        snprintf(buf, buflen, "parentSpanId: expected 8 bytes, got %zu", s->parent_span_id.len);
        return buf;
    }
    for (size_t i = 0; i < s->n_links; i++) {
        const pb_link_t *l = s->links[i];
        if (l->trace_id.len != 0 && l->trace_id.len != 16) {
            snprintf(buf, buflen, "links[%zu].traceId: expected 16 bytes, got %zu", i,
                     l->trace_id.len);
            return buf;
        }
        if (l->span_id.len != 0 && l->span_id.len != 8) {
            snprintf(buf, buflen, "links[%zu].spanId: expected 8 bytes, got %zu", i,
                     l->span_id.len);
            return buf;
        }
    }
    return NULL;
}

static int conv_span(conv_t *cv, const pb_span_t *in, fl_span_t *s, const fl_resource_t *res,
                     const fl_scope_t *scope)
{
    memcpy(s->trace_id, in->trace_id.data, 16);
    memcpy(s->span_id, in->span_id.data, 8);
    if (in->parent_span_id.len == 8)
        memcpy(s->parent_span_id, in->parent_span_id.data, 8);
    else
        memset(s->parent_span_id, 0, 8);
    s->trace_state = cstr(cv, in->trace_state);
    s->flags = in->flags;
    s->name = cstr(cv, in->name);
    s->kind = (int)in->kind;
    s->start_ns = in->start_time_unix_nano;
    s->end_ns = in->end_time_unix_nano;
    if (conv_attrs(cv, in->n_attributes, in->attributes, &s->attrs) < 0)
        return -1;
    s->dropped_attrs = in->dropped_attributes_count;
    s->events = NULL;
    s->n_events = in->n_events;
    if (in->n_events) {
        s->events = fl_arena_alloc(cv->arena, in->n_events * sizeof(fl_event_t));
        if (!s->events)
            return cv->nomem = -1;
        for (size_t i = 0; i < in->n_events; i++) {
            const pb_event_t *e = in->events[i];
            fl_event_t *o = &s->events[i];
            o->time_ns = e->time_unix_nano;
            o->name = cstr(cv, e->name);
            o->dropped_attrs = e->dropped_attributes_count;
            if (conv_attrs(cv, e->n_attributes, e->attributes, &o->attrs) < 0)
                return -1;
        }
    }
    s->dropped_events = in->dropped_events_count;
    s->links = NULL;
    s->n_links = in->n_links;
    if (in->n_links) {
        s->links = fl_arena_alloc(cv->arena, in->n_links * sizeof(fl_link_t));
        if (!s->links)
            return cv->nomem = -1;
        for (size_t i = 0; i < in->n_links; i++) {
            const pb_link_t *l = in->links[i];
            fl_link_t *o = &s->links[i];
            memset(o->trace_id, 0, 16);
            memset(o->span_id, 0, 8);
            if (l->trace_id.len == 16)
                memcpy(o->trace_id, l->trace_id.data, 16);
            if (l->span_id.len == 8)
                memcpy(o->span_id, l->span_id.data, 8);
            o->trace_state = cstr(cv, l->trace_state);
            o->dropped_attrs = l->dropped_attributes_count;
            o->flags = l->flags;
            if (conv_attrs(cv, l->n_attributes, l->attributes, &o->attrs) < 0)
                return -1;
        }
    }
    s->dropped_links = in->dropped_links_count;
    s->status_code = in->status ? (int)in->status->code : 0;
    s->status_message = cstr(cv, in->status ? in->status->message : NULL);
    s->resource = res;
    s->scope = scope;
    return cv->nomem ? -1 : 0;
}

static void set_service_name(fl_resource_t *res)
{
    for (size_t i = 0; i < res->attrs.n; i++) {
        const fl_kv_t *kv = &res->attrs.items[i];
        if (kv->key.len == 12 && memcmp(kv->key.ptr, "service.name", 12) == 0 &&
            kv->value.type == FL_VAL_STRING && kv->value.u.str.len > 0) {
            res->service_name = kv->value.u.str;
            return;
        }
    }
    res->service_name = FL_STR_LIT("unknown_service");
}

/* ---------------------------------------------------------------- envelope walk */

/* One field of a message whose wire format the prescan has not necessarily vouched for
 * (below the top level it only checked what parses as a message). 1: a field was read,
 * 0: end, -1: broken. Length-delimited values come back in *val / *vlen. */
static int next_field(const uint8_t *p, size_t len, size_t *i, uint32_t *num, unsigned *wt,
                      const uint8_t **val, size_t *vlen)
{
    uint64_t key, v;
    if (*i >= len)
        return 0;
    if (diag_varint(p, len, i, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF)
        return -1;
    *num = (uint32_t)(key >> 3);
    *wt = (unsigned)(key & 7);
    switch (*wt) {
    case 0:
        return diag_varint(p, len, i, &v) < 0 ? -1 : 1;
    case 1:
    case 5: {
        size_t w = *wt == 1 ? 8 : 4;
        if (len - *i < w)
            return -1;
        *i += w;
        return 1;
    }
    case 2:
        if (diag_varint(p, len, i, &v) < 0 || v > len - *i)
            return -1;
        *val = p + *i;
        *vlen = (size_t)v;
        *i += (size_t)v;
        return 1;
    default:
        return -1;
    }
}

typedef struct walk {
    const uint8_t *body;
    size_t len;
    fl_span_batch_t *batch;
    conv_t cv;
    fl__pb_alloc_t batch_alloc, scratch_alloc;
    fl_arena_t *scratch;
    fl_span_t *spans;
    size_t n, total;
    char *err;
    size_t errlen;
} walk_t;

#define REQ_DESC                                                                                   \
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor

/* The envelope failed to parse: let the descriptor walk name the field. */
static int envelope_error(walk_t *w)
{
    return unpack_failed(&w->batch_alloc, &REQ_DESC, w->body, w->len, w->err, w->errlen);
}

static int nomem(walk_t *w)
{
    return fl__errf(w->err, w->errlen, FL_ERR_NOMEM,
                    "out of memory while decoding (request too large to decode)");
}

/* Count the spans (ScopeSpans.spans fields) so the span array is allocated once. */
static int count_spans(walk_t *w)
{
    size_t i = 0, total = 0;
    uint32_t num;
    unsigned wt;
    const uint8_t *rv, *sv, *v;
    size_t rl, sl, l;
    int r;
    while ((r = next_field(w->body, w->len, &i, &num, &wt, &rv, &rl)) == 1) {
        if (num != 1 || wt != 2)
            continue;
        size_t j = 0;
        while ((r = next_field(rv, rl, &j, &num, &wt, &sv, &sl)) == 1) {
            if (num != 2 || wt != 2)
                continue;
            size_t k = 0;
            while ((r = next_field(sv, sl, &k, &num, &wt, &v, &l)) == 1)
                total += num == 2;
            if (r < 0)
                return -1;
        }
        if (r < 0)
            return -1;
    }
    if (r < 0)
        return -1;
    w->total = total;
    return 0;
}

static int walk_span(walk_t *w, const uint8_t *v, size_t l, size_t ri, size_t si, size_t ki,
                     const fl_resource_t *res, const fl_scope_t *sc)
{
    char path[128], why[96];
    fl_arena_reset(w->scratch);
    w->scratch_alloc.failed = 0;
    pb_span_t *sp = opentelemetry__proto__trace__v1__span__unpack(&w->scratch_alloc.base, l, v);
    if (!sp) {
        if (w->scratch_alloc.failed)
            return nomem(w);
        return envelope_error(w);
    }
    const char *bad = check_ids(sp, why, sizeof(why));
    if (bad) {
        if (!w->batch->reject_msg) {
            fl__span_path(path, sizeof(path), ri, si, ki);
            w->batch->reject_msg = fl_arena_sprintf(w->batch->arena, "%s.%s", path, bad);
            if (!w->batch->reject_msg)
                return nomem(w);
        }
        w->batch->rejected++;
        return FL_OK;
    }
    w->cv.copy = 1;
    if (w->n >= w->total || conv_span(&w->cv, sp, &w->spans[w->n], res, sc) < 0)
        return nomem(w);
    w->n++;
    return FL_OK;
}

static int walk_scope_spans(walk_t *w, const uint8_t *p, size_t len, size_t ri, size_t si,
                            const fl_resource_t *res)
{
    size_t i = 0, ki = 0;
    uint32_t num;
    unsigned wt;
    const uint8_t *v = NULL;
    size_t l = 0;
    int r, rc;
    /* Allocated first: spans may come before the scope field. */
    fl_scope_t *sc = fl_arena_calloc(w->batch->arena, 1, sizeof(*sc));
    if (!sc)
        return nomem(w);
    sc->name.ptr = sc->version.ptr = sc->schema_url.ptr = "";
    while ((r = next_field(p, len, &i, &num, &wt, &v, &l)) == 1) {
        if (wt != 2 && num <= 3)
            return envelope_error(w);
        if (num == 1) {
            Opentelemetry__Proto__Common__V1__InstrumentationScope *s =
                opentelemetry__proto__common__v1__instrumentation_scope__unpack(
                    &w->batch_alloc.base, l, v);
            if (!s)
                return w->batch_alloc.failed ? nomem(w) : envelope_error(w);
            w->cv.copy = 0;
            sc->name = cstr(&w->cv, s->name);
            sc->version = cstr(&w->cv, s->version);
            if (conv_attrs(&w->cv, s->n_attributes, s->attributes, &sc->attrs) < 0)
                return nomem(w);
            sc->dropped_attrs = s->dropped_attributes_count;
        } else if (num == 2) {
            if ((rc = walk_span(w, v, l, ri, si, ki++, res, sc)) != FL_OK)
                return rc;
        } else if (num == 3) {
            w->cv.copy = 1;
            sc->schema_url = conv_bytes(&w->cv, v, l);
            if (w->cv.nomem)
                return nomem(w);
        }
    }
    return r < 0 ? envelope_error(w) : FL_OK;
}

static int walk_resource_spans(walk_t *w, const uint8_t *p, size_t len, size_t ri)
{
    size_t i = 0, si = 0;
    uint32_t num;
    unsigned wt;
    const uint8_t *v = NULL;
    size_t l = 0;
    int r, rc;
    fl_resource_t *res = fl_arena_calloc(w->batch->arena, 1, sizeof(*res));
    if (!res)
        return nomem(w);
    res->schema_url.ptr = "";
    while ((r = next_field(p, len, &i, &num, &wt, &v, &l)) == 1) {
        if (wt != 2 && num <= 3)
            return envelope_error(w);
        if (num == 1) {
            Opentelemetry__Proto__Resource__V1__Resource *rp =
                opentelemetry__proto__resource__v1__resource__unpack(&w->batch_alloc.base, l, v);
            if (!rp)
                return w->batch_alloc.failed ? nomem(w) : envelope_error(w);
            w->cv.copy = 0;
            if (conv_attrs(&w->cv, rp->n_attributes, rp->attributes, &res->attrs) < 0)
                return nomem(w);
            res->dropped_attrs = rp->dropped_attributes_count;
        } else if (num == 2) {
            if ((rc = walk_scope_spans(w, v, l, ri, si++, res)) != FL_OK)
                return rc;
        } else if (num == 3) {
            w->cv.copy = 1;
            res->schema_url = conv_bytes(&w->cv, v, l);
            if (w->cv.nomem)
                return nomem(w);
        }
    }
    if (r < 0)
        return envelope_error(w);
    /* After the walk: the resource field may come after the scope spans. */
    set_service_name(res);
    return FL_OK;
}

int fl__pb_decode_traces(const uint8_t *body, size_t len, int max_depth, fl_span_batch_t *batch,
                         char *err, size_t errlen)
{
    walk_t w;
    size_t i = 0, ri = 0;
    uint32_t num;
    unsigned wt;
    const uint8_t *v = NULL;
    size_t l = 0;
    int r, rc = fl_otlp_prescan(body, len, max_depth, err, errlen);
    if (rc != FL_OK)
        return rc;
    memset(&w, 0, sizeof(w));
    w.body = body;
    w.len = len;
    w.batch = batch;
    w.err = err;
    w.errlen = errlen;
    w.cv.arena = batch->arena;
    fl__pb_alloc_init(&w.batch_alloc, batch->arena);
    if (count_spans(&w) < 0)
        return envelope_error(&w);
    if (w.total) {
        w.spans = fl_arena_alloc(batch->arena, w.total * sizeof(fl_span_t));
        if (!w.spans)
            return nomem(&w);
    }
    /* One span's protobuf-c structures at a time; the cap mirrors the batch's. */
    w.scratch = fl_arena_new(64 * 1024);
    if (!w.scratch)
        return nomem(&w);
    fl_arena_set_limit(w.scratch, len * 16 + (16u << 20));
    fl__pb_alloc_init(&w.scratch_alloc, w.scratch);
    rc = FL_OK;
    while (rc == FL_OK && (r = next_field(body, len, &i, &num, &wt, &v, &l)) == 1) {
        if (num != 1)
            continue; /* unknown fields are skipped */
        if (wt != 2)
            rc = envelope_error(&w);
        else
            rc = walk_resource_spans(&w, v, l, ri++);
    }
    fl_arena_free(w.scratch);
    if (rc != FL_OK)
        return rc;
    batch->spans = w.spans;
    batch->n_spans = w.n;
    return FL_OK;
}

int fl__pb_count(int signal, const uint8_t *body, size_t len, int max_depth, size_t *count,
                 char *err, size_t errlen)
{
    fl__pb_alloc_t al;
    size_t n = 0;
    const ProtobufCMessageDescriptor *desc =
        signal == FL_OTLP_TRACES
            ? &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor
        : signal == FL_OTLP_LOGS
            ? &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor
            : &opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor;
    int rc = fl__prescan(desc, body, len, max_depth, err, errlen);
    if (rc != FL_OK)
        return rc;
    fl_arena_t *arena = fl_arena_new(len * 2 + 4096);
    if (!arena)
        return fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
    fl__pb_alloc_init(&al, arena);
    if (signal == FL_OTLP_TRACES) {
        const ProtobufCMessageDescriptor *d =
            &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor;
        pb_treq_t *req = (pb_treq_t *)protobuf_c_message_unpack(d, &al.base, len, body);
        if (!req) {
            rc = unpack_failed(&al, d, body, len, err, errlen);
            goto out;
        }
        for (size_t r = 0; r < req->n_resource_spans; r++)
            for (size_t s = 0; s < req->resource_spans[r]->n_scope_spans; s++)
                n += req->resource_spans[r]->scope_spans[s]->n_spans;
    } else if (signal == FL_OTLP_LOGS) {
        const ProtobufCMessageDescriptor *d =
            &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor;
        pb_lreq_t *req = (pb_lreq_t *)protobuf_c_message_unpack(d, &al.base, len, body);
        if (!req) {
            rc = unpack_failed(&al, d, body, len, err, errlen);
            goto out;
        }
        for (size_t r = 0; r < req->n_resource_logs; r++)
            for (size_t s = 0; s < req->resource_logs[r]->n_scope_logs; s++)
                n += req->resource_logs[r]->scope_logs[s]->n_log_records;
    } else {
        const ProtobufCMessageDescriptor *d =
            &opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor;
        pb_mreq_t *req = (pb_mreq_t *)protobuf_c_message_unpack(d, &al.base, len, body);
        if (!req) {
            rc = unpack_failed(&al, d, body, len, err, errlen);
            goto out;
        }
        for (size_t r = 0; r < req->n_resource_metrics; r++) {
            const Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = req->resource_metrics[r];
            for (size_t s = 0; s < rm->n_scope_metrics; s++) {
                const Opentelemetry__Proto__Metrics__V1__ScopeMetrics *sm = rm->scope_metrics[s];
                for (size_t m = 0; m < sm->n_metrics; m++) {
                    const Opentelemetry__Proto__Metrics__V1__Metric *mt = sm->metrics[m];
                    switch (mt->data_case) {
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
                        n += mt->gauge->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
                        n += mt->sum->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
                        n += mt->histogram->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
                        n += mt->exponential_histogram->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
                        n += mt->summary->n_data_points;
                        break;
                    default:
                        break;
                    }
                }
            }
        }
    }
    *count = n;
out:
    fl_arena_free(arena);
    return rc;
}
