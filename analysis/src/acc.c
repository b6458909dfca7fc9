/* SPDX-License-Identifier: Apache-2.0 */
/* Rollup accumulators (one series in one bucket) and the bucket blob that holds a closed
 * bucket's accumulators compactly in the history and in exported rollups. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

#define BLOB_VERSION 1

void fl__acc_init(fl__acc_t *c, uint32_t series)
{
    memset(c, 0, sizeof(*c));
    c->series = series;
    fl__sketch_init(&c->lat);
    fl__sketch_init(&c->aux);
}

void fl__acc_dispose(fl__acc_t *c)
{
    fl__sketch_dispose(&c->lat);
    fl__sketch_dispose(&c->aux);
}

/* Keep the FL__MAX_EX slowest, ties broken by trace id, so the choice does not depend on
 * the order the spans arrived in. */
void fl__acc_example(fl__example_t *ex, const uint8_t trace_id[16], uint64_t dur)
{
    if (!dur)
        dur = 1;
    for (int i = 0; i < FL__MAX_EX; i++) {
        if (ex[i].dur_ns && memcmp(ex[i].trace_id, trace_id, 16) == 0)
            return; /* already listed */
    }
    for (int i = 0; i < FL__MAX_EX; i++) {
        int better = !ex[i].dur_ns || dur > ex[i].dur_ns ||
                     (dur == ex[i].dur_ns && memcmp(trace_id, ex[i].trace_id, 16) < 0);
        if (better) {
            memmove(&ex[i + 1], &ex[i], (size_t)(FL__MAX_EX - 1 - i) * sizeof(*ex));
            ex[i].dur_ns = dur;
            memcpy(ex[i].trace_id, trace_id, 16);
            return;
        }
    }
}

/* A handful of HTTP codes per endpoint is the norm; a fixed small table keeps the
 * accumulator flat. Codes beyond it are still counted, as "other". */
void fl__acc_code(fl__acc_t *c, int code, uint32_t n)
{
    for (int i = 0; i < c->n_codes; i++) {
        if (c->codes[i] == code) {
            c->code_cnt[i] += n;
            return;
        }
    }
    if (c->n_codes < FL__MAX_CODES && code >= 0 && code < 65536) {
        c->codes[c->n_codes] = (uint16_t)code;
        c->code_cnt[c->n_codes++] = n;
    } else {
        c->code_other += n;
    }
}

void fl__acc_etype(fl__acc_t *c, uint32_t id, uint32_t n)
{
    for (int i = 0; i < c->n_etypes; i++) {
        if (c->etypes[i] == id) {
            c->etype_cnt[i] += n;
            return;
        }
    }
    if (c->n_etypes < FL__MAX_ETYPES) {
        c->etype_cnt[c->n_etypes] = n;
        c->etypes[c->n_etypes++] = id;
    }
}

/* Everything in an accumulator merges by addition (or by a rule that does not depend on
 * order), so coarser buckets and range queries are exact unions of the buckets. */
int fl__acc_merge(fl__acc_t *d, const fl__acc_t *s)
{
    d->count += s->count;
    d->errors += s->errors;
    d->timeouts += s->timeouts;
    d->unanswered += s->unanswered;
    d->st_unset += s->st_unset;
    d->st_ok += s->st_ok;
    d->st_error += s->st_error;
    for (int i = 0; i < s->n_codes; i++)
        fl__acc_code(d, s->codes[i], s->code_cnt[i]);
    d->code_other += s->code_other;
    for (int i = 0; i < s->n_etypes; i++)
        fl__acc_etype(d, s->etypes[i], s->etype_cnt[i]);
    for (int i = 0; i < FL__MAX_EX; i++) {
        if (s->slow[i].dur_ns)
            fl__acc_example(d->slow, s->slow[i].trace_id, s->slow[i].dur_ns);
        if (s->err[i].dur_ns)
            fl__acc_example(d->err, s->err[i].trace_id, s->err[i].dur_ns);
    }
    int rc = fl_sketch_merge(&d->lat, &s->lat);
    return rc ? rc : fl_sketch_merge(&d->aux, &s->aux);
}

static int put_examples(fl_buf_t *out, const fl__example_t *ex)
{
    int n = 0, rc;
    while (n < FL__MAX_EX && ex[n].dur_ns)
        n++;
    rc = fl__put_u8(out, (uint8_t)n);
    for (int i = 0; i < n && !rc; i++) {
        rc = fl__put_varint(out, ex[i].dur_ns);
        rc = rc ? rc : fl__put_bytes(out, ex[i].trace_id, 16);
    }
    return rc;
}

static void get_examples(fl__rd_t *r, fl__example_t *ex)
{
    uint8_t n = fl__get_u8(r);
    if (n > 16) {
        r->err = 1;
        return;
    }
    for (int i = 0; i < n && !r->err; i++) {
        uint8_t id[16];
        uint64_t dur = fl__get_varint(r);
        fl__get_bytes(r, id, 16);
        if (!r->err)
            fl__acc_example(ex, id, dur);
    }
}

/* Varints throughout: most counts are small, so a typical series-bucket encodes in well
 * under 200 bytes including its sketches. */
int fl__acc_encode(const fl__acc_t *c, fl_buf_t *out)
{
    uint64_t f[8] = {c->series,     c->count,    c->errors, c->timeouts,
                     c->unanswered, c->st_unset, c->st_ok,  c->st_error};
    int rc = 0;
    for (int i = 0; i < 8 && !rc; i++)
        rc = fl__put_varint(out, f[i]);
    rc = rc ? rc : fl__put_u8(out, c->n_codes);
    for (int i = 0; i < c->n_codes && !rc; i++) {
        rc = fl__put_varint(out, c->codes[i]);
        rc = rc ? rc : fl__put_varint(out, c->code_cnt[i]);
    }
    rc = rc ? rc : fl__put_varint(out, c->code_other);
    rc = rc ? rc : fl__put_u8(out, c->n_etypes);
    for (int i = 0; i < c->n_etypes && !rc; i++) {
        rc = fl__put_varint(out, c->etypes[i]);
        rc = rc ? rc : fl__put_varint(out, c->etype_cnt[i]);
    }
    rc = rc ? rc : put_examples(out, c->slow);
    rc = rc ? rc : put_examples(out, c->err);
    rc = rc ? rc : fl__sketch_encode_body(&c->lat, out);
    return rc ? rc : fl__sketch_encode_body(&c->aux, out);
}

static uint32_t get_u32(fl__rd_t *r)
{
    uint64_t v = fl__get_varint(r);
    if (v > UINT32_MAX)
        r->err = 1;
    return (uint32_t)v;
}

/* Decodes into c by merging, so callers can fold many blobs into one accumulator without
 * an intermediate copy. Every count is range-checked; a bad input sticks in r->err. */
int fl__acc_decode_merge(fl__acc_t *c, fl__rd_t *r, uint32_t *series_out)
{
    uint32_t series = get_u32(r);
    c->count += get_u32(r);
    c->errors += get_u32(r);
    c->timeouts += get_u32(r);
    c->unanswered += get_u32(r);
    c->st_unset += get_u32(r);
    c->st_ok += get_u32(r);
    c->st_error += get_u32(r);
    uint8_t nc = fl__get_u8(r);
    if (nc > 64)
        r->err = 1;
    for (int i = 0; i < nc && !r->err; i++) {
        uint32_t code = get_u32(r), cnt = get_u32(r);
        if (!r->err)
            fl__acc_code(c, (int)code, cnt);
    }
    c->code_other += get_u32(r);
    uint8_t ne = fl__get_u8(r);
    if (ne > 64)
        r->err = 1;
    for (int i = 0; i < ne && !r->err; i++) {
        uint32_t id = get_u32(r), n = get_u32(r);
        if (!r->err)
            fl__acc_etype(c, id, n);
    }
    get_examples(r, c->slow);
    get_examples(r, c->err);
    if (r->err)
        return FL_ERR_DECODE;
    int rc = fl__sketch_decode_merge(&c->lat, r);
    rc = rc ? rc : fl__sketch_decode_merge(&c->aux, r);
    if (series_out)
        *series_out = series;
    return rc;
}

/* ---------------------------------------------------------------- bucket blobs */

int fl__blob_encode(const fl__acc_t *accs, uint32_t n, uint64_t spans, fl_buf_t *out)
{
    int rc = fl__put_bytes(out, "FLB", 3);
    rc = rc ? rc : fl__put_u8(out, BLOB_VERSION);
    rc = rc ? rc : fl__put_varint(out, spans);
    rc = rc ? rc : fl__put_varint(out, n);
    for (uint32_t i = 0; i < n && !rc; i++)
        rc = fl__acc_encode(&accs[i], out);
    return rc;
}

/* Walk a bucket blob, handing each decoded accumulator to fn (which must copy what it
 * keeps: the accumulator is freed right after). */
int fl__blob_foreach(const uint8_t *blob, uint32_t len, fl__acc_fn fn, void *ctx, uint64_t *spans)
{
    fl__rd_t r = {blob, blob + len, 0};
    uint8_t magic[3];
    fl__get_bytes(&r, magic, 3);
    uint8_t ver = fl__get_u8(&r);
    if (r.err || memcmp(magic, "FLB", 3) != 0)
        return FL_ERR_DECODE;
    if (ver != BLOB_VERSION)
        return ver > BLOB_VERSION ? FL_ERR_UNSUPPORTED : FL_ERR_DECODE;
    uint64_t sp = fl__get_varint(&r), n = fl__get_varint(&r);
    if (r.err)
        return FL_ERR_DECODE;
    if (spans)
        *spans = sp;
    int rc = FL_OK;
    for (uint64_t i = 0; i < n && !rc; i++) {
        fl__acc_t c;
        uint32_t series;
        fl__acc_init(&c, 0);
        rc = fl__acc_decode_merge(&c, &r, &series);
        c.series = series;
        if (!rc && fn)
            rc = fn(ctx, &c);
        fl__acc_dispose(&c);
    }
    return rc;
}

/* ---------------------------------------------------------------- series -> accumulator map */

void fl__accmap_dispose(fl__accmap_t *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        fl__acc_dispose(&m->accs[i]);
    free(m->accs);
    free(m->pos);
    memset(m, 0, sizeof(*m));
}

/* Series ids are dense, so a plain index array beats hashing here. */
fl__acc_t *fl__accmap_get(fl__accmap_t *m, uint32_t series)
{
    if (series >= m->pos_cap) {
        uint32_t cap = m->pos_cap ? m->pos_cap : 256;
        while (cap <= series)
            cap *= 2;
        uint32_t *p = realloc(m->pos, (size_t)cap * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + m->pos_cap, 0, (size_t)(cap - m->pos_cap) * sizeof(*p));
        m->pos = p;
        m->pos_cap = cap;
    }
    if (m->pos[series])
        return &m->accs[m->pos[series] - 1];
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 64;
        fl__acc_t *p = realloc(m->accs, (size_t)cap * sizeof(*p));
        if (!p)
            return NULL;
        m->accs = p;
        m->cap = cap;
    }
    fl__acc_init(&m->accs[m->n], series);
    m->pos[series] = ++m->n;
    return &m->accs[m->n - 1];
}

int fl__accmap_add(void *ctx, const fl__acc_t *c)
{
    fl__acc_t *d = fl__accmap_get(ctx, c->series);
    return d ? fl__acc_merge(d, c) : FL_ERR_NOMEM;
}

static int acc_cmp(const void *x, const void *y)
{
    const fl__acc_t *a = x, *b = y;
    return a->series < b->series ? -1 : a->series > b->series;
}

void fl__accmap_sort(fl__accmap_t *m)
{
    if (m->n)
        fl_sort(m->accs, m->n, sizeof(*m->accs), acc_cmp);
    for (uint32_t i = 0; i < m->n; i++)
        m->pos[m->accs[i].series] = i + 1;
}

int fl__blob_merge(const uint8_t *const *blobs, const uint32_t *lens, size_t n, fl_buf_t *out)
{
    fl__accmap_t m = {0};
    uint64_t spans = 0;
    int rc = FL_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t sp = 0;
        rc = fl__blob_foreach(blobs[i], lens[i], fl__accmap_add, &m, &sp);
        spans += sp;
    }
    if (!rc) {
        fl__accmap_sort(&m);
        rc = fl__blob_encode(m.accs, m.n, spans, out);
    }
    fl__accmap_dispose(&m);
    return rc;
}
