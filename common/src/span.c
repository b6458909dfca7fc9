/* SPDX-License-Identifier: Apache-2.0 */
/* The internal span model: batches, attribute lookup, value comparison and JSON output. */
#include <faultline/common.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Arenas of freed batches, kept warm for the next ones: a fresh megabyte per export request
 * costs a page fault every 4 KiB (~10 % of the ingest CPU). Bounded in count and bytes. */
#define BATCH_POOL_MAX 8
#define BATCH_POOL_ARENA_MAX ((size_t)8 << 20)
#define BATCH_POOL_BYTES ((size_t)16 << 20)

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static fl_arena_t *pool[BATCH_POOL_MAX];
static size_t pool_n, pool_bytes;

static fl_arena_t *pool_take(void)
{
    fl_arena_t *a = NULL;
    pthread_mutex_lock(&pool_mu);
    if (pool_n) {
        a = pool[--pool_n];
        pool_bytes -= fl_arena_reserved(a);
    }
    pthread_mutex_unlock(&pool_mu);
    return a;
}

/* 1 when the pool kept a (rewound), 0 when the caller must free it. */
static int pool_put(fl_arena_t *a)
{
    size_t r = fl_arena_reserved(a);
    int kept = 0;
    if (r > BATCH_POOL_ARENA_MAX)
        return 0;
    fl_arena_rewind(a);
    pthread_mutex_lock(&pool_mu);
    if (pool_n < BATCH_POOL_MAX && pool_bytes + r <= BATCH_POOL_BYTES) {
        pool[pool_n++] = a;
        pool_bytes += r;
        kept = 1;
    }
    pthread_mutex_unlock(&pool_mu);
    return kept;
}

fl_span_batch_t *fl_span_batch_new(size_t chunk_size)
{
    fl_arena_t *a = pool_take();
    if (a)
        fl_arena_set_limit(a, 0);
    else
        a = fl_arena_new(chunk_size);
    if (!a)
        return NULL;
    fl_span_batch_t *b = fl_arena_calloc(a, 1, sizeof(*b));
    if (!b) {
        fl_arena_free(a);
        return NULL;
    }
    b->arena = a;
    b->received_ns = fl_time_now_ns();
    return b;
}

void fl_span_batch_free(fl_span_batch_t *b)
{
    if (!b)
        return;
    fl_arena_t *a = b->arena; /* the batch lives inside its own arena */
    if (!pool_put(a))
        fl_arena_free(a);
}

const fl_value_t *fl_attrs_get(const fl_attrs_t *attrs, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < attrs->n; i++) {
        const fl_kv_t *kv = &attrs->items[i];
        if (kv->key.len == kl && memcmp(kv->key.ptr, key, kl) == 0)
            return &kv->value;
    }
    return NULL;
}

int fl_value_eq(const fl_value_t *a, const fl_value_t *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case FL_VAL_EMPTY:
        return 1;
    case FL_VAL_STRING:
    case FL_VAL_BYTES:
        return fl_str_eq(a->u.str, b->u.str);
    case FL_VAL_BOOL:
        return !a->u.b == !b->u.b;
    case FL_VAL_INT:
        return a->u.i == b->u.i;
    case FL_VAL_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0;
    case FL_VAL_ARRAY:
        if (a->u.arr.n != b->u.arr.n)
            return 0;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!fl_value_eq(&a->u.arr.items[i], &b->u.arr.items[i]))
                return 0;
        return 1;
    case FL_VAL_KVLIST:
        if (a->u.kv.n != b->u.kv.n)
            return 0;
        for (size_t i = 0; i < a->u.kv.n; i++)
            if (!fl_str_eq(a->u.kv.items[i].key, b->u.kv.items[i].key) ||
                !fl_value_eq(&a->u.kv.items[i].value, &b->u.kv.items[i].value))
                return 0;
        return 1;
    }
    return 0;
}

void fl_jw_value(fl_jw_t *w, const fl_value_t *v)
{
    switch (v->type) {
    case FL_VAL_EMPTY:
        fl_jw_null(w);
        break;
    case FL_VAL_STRING:
        fl_jw_strn(w, v->u.str.ptr, v->u.str.len);
        break;
    case FL_VAL_BOOL:
        fl_jw_bool(w, v->u.b);
        break;
    case FL_VAL_INT:
        fl_jw_int(w, v->u.i);
        break;
    case FL_VAL_DOUBLE:
        if (isnan(v->u.d))
            fl_jw_str(w, "NaN");
        else if (isinf(v->u.d))
            fl_jw_str(w, v->u.d > 0 ? "Infinity" : "-Infinity");
        else
            fl_jw_double(w, v->u.d);
        break;
    case FL_VAL_BYTES: {
        size_t n = v->u.str.len;
        char *tmp = malloc(4 * ((n + 2) / 3) + 1);
        if (!tmp) {
            w->err = FL_ERR_NOMEM;
            break;
        }
        size_t l = fl_base64_encode((const uint8_t *)v->u.str.ptr, n, tmp);
        fl_jw_strn(w, tmp, l);
        free(tmp);
        break;
    }
    case FL_VAL_ARRAY:
        fl_jw_arr_begin(w);
        for (size_t i = 0; i < v->u.arr.n; i++)
            fl_jw_value(w, &v->u.arr.items[i]);
        fl_jw_arr_end(w);
        break;
    case FL_VAL_KVLIST:
        fl_jw_obj_begin(w);
        for (size_t i = 0; i < v->u.kv.n; i++) {
            const fl_kv_t *kv = &v->u.kv.items[i];
            fl_jw_keyn(w, kv->key.ptr, kv->key.len);
            fl_jw_value(w, &kv->value);
        }
        fl_jw_obj_end(w);
        break;
    }
}

void fl_jw_attrs(fl_jw_t *w, const fl_attrs_t *attrs)
{
    fl_value_t v = {.type = FL_VAL_KVLIST};
    v.u.kv.items = attrs->items;
    v.u.kv.n = attrs->n;
    fl_jw_value(w, &v);
}
