/* SPDX-License-Identifier: Apache-2.0 */
/* Public decoding entry points: dispatch on the format, plus the small helpers the
 * protobuf and JSON decoders share (error formatting, the arena-backed protobuf-c
 * allocator). */
#include "receiver_int.h"

#include <stdarg.h>
#include <string.h>

int fl__errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void *pb_arena_alloc(void *data, size_t size)
{
    fl__pb_alloc_t *a = data;
    void *p = fl_arena_alloc(a->arena, size);
    if (!p)
        a->failed = 1;
    return p;
}

static void pb_arena_free(void *data, void *ptr)
{
    /* Everything goes away with the arena. */
    (void)data;
    (void)ptr;
}

void fl__pb_alloc_init(fl__pb_alloc_t *a, fl_arena_t *arena)
{
    a->base.alloc = pb_arena_alloc;
    a->base.free = pb_arena_free;
    a->base.allocator_data = a;
    a->arena = arena;
    a->failed = 0;
}

int fl__span_path(char *out, size_t outlen, size_t rs, size_t ss, size_t sp)
{
    return snprintf(out, outlen, "resourceSpans[%zu].scopeSpans[%zu].spans[%zu]", rs, ss, sp);
}

int fl_otlp_decode_traces_ex(const uint8_t *body, size_t len, int format, int max_depth,
                             fl_span_batch_t *batch, char *err, size_t errlen)
{
    if (!batch || !batch->arena || (!body && len))
        return fl__errf(err, errlen, FL_ERR_INVALID, "invalid arguments");
    if (max_depth <= 0)
        max_depth = FL__DEFAULT_MAX_DEPTH;
    batch->spans = NULL;
    batch->n_spans = 0;
    batch->rejected = 0;
    batch->reject_msg = NULL;
    if (format == FL_OTLP_PROTOBUF)
        return fl__pb_decode_traces(body, len, max_depth, 0, batch, err, errlen);
    if (format == FL_OTLP_JSON)
        return fl__json_decode_traces(body, len, max_depth, batch, err, errlen);
    return fl__errf(err, errlen, FL_ERR_INVALID, "unknown format %d", format);
}

int fl_otlp_decode_traces(const uint8_t *body, size_t len, int format, fl_span_batch_t *batch,
                          char *err, size_t errlen)
{
    return fl_otlp_decode_traces_ex(body, len, format, FL__DEFAULT_MAX_DEPTH, batch, err, errlen);
}

int fl_otlp_count_items(int signal, const uint8_t *body, size_t len, int format, int max_depth,
                        size_t *count, char *err, size_t errlen)
{
    if (!count || (!body && len) || signal < FL_OTLP_TRACES || signal > FL_OTLP_METRICS)
        return fl__errf(err, errlen, FL_ERR_INVALID, "invalid arguments");
    *count = 0;
    if (max_depth <= 0)
        max_depth = FL__DEFAULT_MAX_DEPTH;
    if (format == FL_OTLP_PROTOBUF)
        return fl__pb_count(signal, body, len, max_depth, count, err, errlen);
    if (format == FL_OTLP_JSON) {
        if (signal != FL_OTLP_TRACES)
            return fl__json_count(signal, body, len, max_depth, count, err, errlen);
        /* Spans are counted by decoding them (valid and rejected alike). */
        fl_span_batch_t *b = fl_span_batch_new(0);
        if (!b)
            return fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
        int rc = fl__json_decode_traces(body, len, max_depth, b, err, errlen);
        if (rc == FL_OK)
            *count = b->n_spans + b->rejected;
        fl_span_batch_free(b);
        return rc;
    }
    return fl__errf(err, errlen, FL_ERR_INVALID, "unknown format %d", format);
}
