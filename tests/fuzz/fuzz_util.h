/* SPDX-License-Identifier: Apache-2.0 */
/* Shared helpers for the libFuzzer targets: a hard invariant check that aborts (so libFuzzer
 * records the input), log silencing, a deep walk over decoded span batches that reads every
 * byte the batch points to (so ASan sees any dangling or short view), and the per-input
 * allocation failure plan. */
#ifndef FL_FUZZ_UTIL_H
#define FL_FUZZ_UTIL_H

#include <faultline/common.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static inline void fuzz_quiet(void)
{
    fl_log_level_current = -1; /* below FL_LOG_ERROR: nothing is formatted or written */
}

/* Reads every byte of a view; the sum is only there so the loads are not optimised out. */
static inline unsigned fuzz_touch(fl_str_t s)
{
    FUZZ_CHECK(s.len == 0 || s.ptr != NULL);
    volatile unsigned sum = 0;
    for (size_t i = 0; i < s.len; i++)
        sum += (unsigned char)s.ptr[i];
    return sum;
}

static inline void fuzz_walk_attrs(const fl_attrs_t *a, int depth);

static inline void fuzz_walk_value(const fl_value_t *v, int depth)
{
    FUZZ_CHECK(depth < 200); /* the decoder caps nesting at 64 (messages / objects) */
    switch (v->type) {
    case FL_VAL_EMPTY:
    case FL_VAL_BOOL:
    case FL_VAL_INT:
    case FL_VAL_DOUBLE:
        break;
    case FL_VAL_STRING:
    case FL_VAL_BYTES:
        fuzz_touch(v->u.str);
        break;
    case FL_VAL_ARRAY:
        FUZZ_CHECK(v->u.arr.n == 0 || v->u.arr.items != NULL);
        for (size_t i = 0; i < v->u.arr.n; i++)
            fuzz_walk_value(&v->u.arr.items[i], depth + 1);
        break;
    case FL_VAL_KVLIST: {
        fl_attrs_t a = {v->u.kv.items, v->u.kv.n};
        fuzz_walk_attrs(&a, depth + 1);
        break;
    }
    default:
        FUZZ_CHECK(!"unknown fl_value_type");
    }
}

static inline void fuzz_walk_attrs(const fl_attrs_t *a, int depth)
{
    FUZZ_CHECK(a->n == 0 || a->items != NULL);
    for (size_t i = 0; i < a->n; i++) {
        fuzz_touch(a->items[i].key);
        fuzz_walk_value(&a->items[i].value, depth);
    }
}

/* The batch invariants every successful decode must hold. */
static inline void fuzz_check_batch(const fl_span_batch_t *b)
{
    FUZZ_CHECK(b->n_spans == 0 || b->spans != NULL);
    FUZZ_CHECK((b->rejected == 0) == (b->reject_msg == NULL));
    if (b->reject_msg)
        FUZZ_CHECK(strlen(b->reject_msg) > 0);
    for (size_t i = 0; i < b->n_spans; i++) {
        const fl_span_t *s = &b->spans[i];
        /* ids: exactly 16 / 8 bytes (fixed arrays), never all zero once accepted */
        FUZZ_CHECK(!fl_is_zero(s->trace_id, sizeof(s->trace_id)));
        FUZZ_CHECK(!fl_is_zero(s->span_id, sizeof(s->span_id)));
        fuzz_touch(s->trace_state);
        fuzz_touch(s->name);
        fuzz_touch(s->status_message);
        fuzz_walk_attrs(&s->attrs, 0);
        FUZZ_CHECK(s->n_events == 0 || s->events != NULL);
        for (size_t e = 0; e < s->n_events; e++) {
            fuzz_touch(s->events[e].name);
            fuzz_walk_attrs(&s->events[e].attrs, 0);
        }
        FUZZ_CHECK(s->n_links == 0 || s->links != NULL);
        for (size_t l = 0; l < s->n_links; l++) {
            fuzz_touch(s->links[l].trace_state);
            fuzz_walk_attrs(&s->links[l].attrs, 0);
        }
        FUZZ_CHECK(s->resource != NULL && s->scope != NULL);
        FUZZ_CHECK(s->resource->service_name.len > 0);
        fuzz_touch(s->resource->service_name);
        fuzz_touch(s->resource->schema_url);
        fuzz_walk_attrs(&s->resource->attrs, 0);
        fuzz_touch(s->scope->name);
        fuzz_touch(s->scope->version);
        fuzz_touch(s->scope->schema_url);
        fuzz_walk_attrs(&s->scope->attrs, 0);
    }
}

/* Allocation failures (common.h "allocation failures"): each input plans its own from its
 * hash, so a crash reproduces from the input alone; FUZZ_ALLOC_FAIL=0 in the environment
 * turns them off (to tell an out-of-memory finding from another). Call fuzz_alloc_begin
 * after any process-wide setup, fuzz_alloc_end before returning. */
static inline void fuzz_alloc_begin(const uint8_t *data, size_t size)
{
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("FUZZ_ALLOC_FAIL");
        off = e && !strcmp(e, "0");
    }
    fl_fuzz_alloc_plan(off ? 0 : fl_hash64(data, size, 0xa110c) | 1);
}

static inline void fuzz_alloc_end(void)
{
    fl_fuzz_alloc_plan(0);
}

/* An allocation failed in this input: results that need memory may be FL_ERR_NOMEM (or a
 * refusal) instead of what the invariants between two runs expect. Memory safety, the
 * promised return codes and "no leak" still hold. */
static inline int fuzz_oom(void)
{
    return fl_fuzz_alloc_failed() > 0;
}

/* Decoder results the API promises (anything else is a bug). */
static inline int fuzz_decode_rc_ok(int rc)
{
    return rc == FL_OK || rc == FL_ERR_DECODE || rc == FL_ERR_TOO_DEEP || rc == FL_ERR_NOMEM;
}

#endif
