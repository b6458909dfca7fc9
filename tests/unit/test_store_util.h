/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the store tests: temporary databases, span builders, a seeded PRNG,
 * deep span comparison (test_span_util.h), and done-callback recorders. Header-only (static inline). */
#ifndef FL_TEST_STORE_UTIL_H
#define FL_TEST_STORE_UTIL_H

#include <faultline/store.h>

#include "test_span_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- temp database */

typedef struct tsu_db {
    char dir[64];
    char path[128];
} tsu_db_t;

static inline int tsu_db_init(tsu_db_t *d)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/fl_store_test_XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    snprintf(d->path, sizeof(d->path), "%s/faultline.db", d->dir);
    return 0;
}

static inline void tsu_db_remove(tsu_db_t *d)
{
    char p[192];
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", d->path, suffixes[i]);
        unlink(p);
    }
    rmdir(d->dir);
}

static inline fl_store_t *tsu_open(const tsu_db_t *d, const fl_store_opts_t *base)
{
    fl_store_opts_t o = {0};
    char err[256];
    fl_store_t *s = NULL;
    if (base)
        o = *base;
    o.path = d->path;
    int rc = fl_store_open(&o, &s, err, sizeof(err));
    if (rc != FL_OK) {
        fprintf(stderr, "fl_store_open: %d %s\n", rc, err);
        return NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- PRNG (splitmix64) */

static inline uint64_t tsu_rand(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t tsu_below(uint64_t *st, uint64_t n)
{
    return n ? tsu_rand(st) % n : 0;
}

/* ---------------------------------------------------------------- builders */

static inline fl_str_t tsu_str(fl_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    return (fl_str_t){fl_arena_strndup(a, s, n), n};
}

static inline fl_str_t tsu_bytes(fl_arena_t *a, const void *p, size_t n)
{
    char *c = fl_arena_alloc(a, n ? n : 1);
    if (n)
        memcpy(c, p, n);
    return (fl_str_t){c, n};
}

static inline void tsu_id(uint8_t *out, size_t n, uint64_t v, uint64_t salt)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)((v >> (8 * (i % 8))) ^ (salt >> (8 * ((i + 3) % 8))) ^ (i * 31));
}

static inline fl_span_batch_t *tsu_batch(size_t n)
{
    fl_span_batch_t *b = fl_span_batch_new(0);
    if (!b)
        return NULL;
    b->spans = n ? fl_arena_calloc(b->arena, n, sizeof(fl_span_t)) : NULL;
    b->n_spans = n;
    return b;
}

static inline fl_resource_t *tsu_resource(fl_arena_t *a, const char *service)
{
    fl_resource_t *r = fl_arena_calloc(a, 1, sizeof(*r));
    r->attrs.items = fl_arena_calloc(a, 2, sizeof(fl_kv_t));
    r->attrs.n = 2;
    r->attrs.items[0].key = tsu_str(a, "service.name");
    r->attrs.items[0].value.type = FL_VAL_STRING;
    r->attrs.items[0].value.u.str = tsu_str(a, service);
    r->attrs.items[1].key = tsu_str(a, "host.name");
    r->attrs.items[1].value.type = FL_VAL_STRING;
    r->attrs.items[1].value.u.str = tsu_str(a, "node-1");
    r->service_name = tsu_str(a, service);
    return r;
}

static inline fl_scope_t *tsu_scope(fl_arena_t *a, const char *name)
{
    fl_scope_t *s = fl_arena_calloc(a, 1, sizeof(*s));
    s->name = tsu_str(a, name);
    s->version = tsu_str(a, "1.0.0");
    return s;
}

/* A plain span with a few HTTP attributes. */
static inline void tsu_span(fl_arena_t *a, fl_span_t *sp, uint64_t trace, uint64_t span,
                            uint64_t parent, const fl_resource_t *res, const fl_scope_t *sc,
                            const char *name, uint64_t start, uint64_t dur, int status)
{
    memset(sp, 0, sizeof(*sp));
    tsu_id(sp->trace_id, 16, trace, 0x1111);
    tsu_id(sp->span_id, 8, span, 0x2222);
    if (parent)
        tsu_id(sp->parent_span_id, 8, parent, 0x2222);
    sp->name = tsu_str(a, name);
    sp->kind = FL_KIND_SERVER;
    sp->start_ns = start;
    sp->end_ns = start + dur;
    sp->status_code = status;
    sp->resource = res;
    sp->scope = sc;
    sp->attrs.items = fl_arena_calloc(a, 3, sizeof(fl_kv_t));
    sp->attrs.n = 3;
    sp->attrs.items[0].key = tsu_str(a, "http.method");
    sp->attrs.items[0].value.type = FL_VAL_STRING;
    sp->attrs.items[0].value.u.str = tsu_str(a, "GET");
    sp->attrs.items[1].key = tsu_str(a, "http.status_code");
    sp->attrs.items[1].value.type = FL_VAL_INT;
    sp->attrs.items[1].value.u.i = status == FL_STATUS_ERROR ? 500 : 200;
    sp->attrs.items[2].key = tsu_str(a, "span.seq");
    sp->attrs.items[2].value.type = FL_VAL_INT;
    sp->attrs.items[2].value.u.i = (int64_t)span;
}

/* ---------------------------------------------------------------- callbacks */

typedef struct tsu_done {
    int called;
    int status;
    size_t stored;
    size_t dups;
} tsu_done_t;

static inline void tsu_done_cb(void *ctx, int status, size_t stored, size_t dups)
{
    tsu_done_t *d = ctx;
    d->called++;
    d->status = status;
    d->stored = stored;
    d->dups = dups;
}

/* Submit and wait for the commit; returns the callback's status (or the submit error). */
static inline int tsu_put(fl_store_t *s, fl_span_batch_t *b, tsu_done_t *d)
{
    tsu_done_t local;
    if (!d)
        d = &local;
    memset(d, 0, sizeof(*d));
    int rc = fl_store_submit_take(s, b, tsu_done_cb, d);
    if (rc != FL_OK)
        return rc;
    fl_store_flush(s);
    return d->called == 1 ? d->status : -9999;
}

#endif
