/* SPDX-License-Identifier: Apache-2.0 */
/* The column-block codec: spans <-> light and heavy blobs of separately compressed streams
 * (docs/store.md lists them), the inline value codec of resource and scope bodies, and the
 * per-block bloom filter. */
#include "store_int.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- byte streams */

int fl__sb_grow(fl__sb_t *b, size_t extra)
{
    if (b->oom)
        return FL_ERR_NOMEM;
    size_t need = b->len + extra;
    if (need < b->len) {
        b->oom = 1;
        return FL_ERR_NOMEM;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return FL_ERR_NOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void fl__sb_dispose(fl__sb_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static inline uint64_t load64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t fl__hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = fl__mix64(seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL));
    while (len >= 8) {
        h = (h ^ fl__mix64(load64le(p))) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < len; i++)
        t |= (uint64_t)p[i] << (8 * i);
    return fl__mix64(h ^ fl__mix64(t + 0x510e527fade682d1ULL));
}

/* ---------------------------------------------------------------- blob container */

/* Versions this reader decodes: 1 (older databases) up to the one it writes. */
static int version_ok(int version)
{
    return version >= 1 && version <= FL__BLOB_VERSION;
}

int fl__blob_pack(ZSTD_CCtx *cctx, fl__sb_t *const *streams, int n, uint32_t raw_mask,
                  fl__sb_t *out)
{
    size_t stored[FL__STREAM_MAX];
    uint8_t codec[FL__STREAM_MAX];
    fl__sb_t tmp = {0};
    int rc = FL_OK;

    if (n > FL__STREAM_MAX)
        return FL_ERR_INVALID;
    for (int i = 0; i < n; i++) {
        const fl__sb_t *s = streams[i];
        if (s->oom) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        codec[i] = FL__CODEC_RAW;
        stored[i] = s->len;
        if ((raw_mask & (1u << i)) || s->len < 64)
            continue;
        size_t bound = ZSTD_compressBound(s->len);
        if (fl__sb_reserve(&tmp, bound) != 0) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        size_t z = ZSTD_compressCCtx(cctx, tmp.p + tmp.len, bound, s->p, s->len, FL__ZSTD_LEVEL);
        if (ZSTD_isError(z) || z >= s->len)
            continue; /* incompressible: keep it raw */
        codec[i] = FL__CODEC_ZSTD;
        stored[i] = z;
        tmp.len += z;
    }
    fl__sb_u8(out, FL__BLOB_VERSION);
    fl__sb_varint(out, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        fl__sb_varint(out, streams[i]->len);
        fl__sb_varint(out, stored[i]);
        fl__sb_u8(out, codec[i]);
    }
    size_t zoff = 0;
    for (int i = 0; i < n; i++) {
        if (codec[i] == FL__CODEC_ZSTD) {
            fl__sb_put(out, tmp.p + zoff, stored[i]);
            zoff += stored[i];
        } else {
            fl__sb_put(out, streams[i]->p, stored[i]);
        }
    }
    if (out->oom)
        rc = FL_ERR_NOMEM;
out:
    fl__sb_dispose(&tmp);
    return rc;
}

int fl__blob_unpack(ZSTD_DCtx *dctx, const void *blob, size_t len, fl__sb_t *scratch,
                    fl__streams_t *st)
{
    fl__rd_t r;
    size_t raw[FL__STREAM_MAX], stored[FL__STREAM_MAX], off[FL__STREAM_MAX];
    uint8_t codec[FL__STREAM_MAX];
    size_t total = 0;

    fl__rd_init(&r, blob, len);
    int version = fl__rd_u8(&r);
    if (!version_ok(version))
        return FL_ERR_STORE_CORRUPT;
    st->version = version;
    uint64_t n = fl__rd_varint(&r);
    if (r.err || n > FL__STREAM_MAX)
        return FL_ERR_STORE_CORRUPT;
    for (uint64_t i = 0; i < n; i++) {
        raw[i] = fl__rd_varint(&r);
        stored[i] = fl__rd_varint(&r);
        codec[i] = fl__rd_u8(&r);
        if (r.err || raw[i] > ((size_t)1 << 32) || codec[i] > FL__CODEC_ZSTD ||
            (codec[i] == FL__CODEC_RAW && stored[i] != raw[i]))
            return FL_ERR_STORE_CORRUPT;
        off[i] = total;
        total += raw[i];
    }
    scratch->len = 0;
    if (fl__sb_reserve(scratch, total + 16) != 0)
        return FL_ERR_NOMEM;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *src = fl__rd_bytes(&r, stored[i]);
        if (!src)
            return FL_ERR_STORE_CORRUPT;
        uint8_t *dst = scratch->p + off[i];
        if (codec[i] == FL__CODEC_RAW) {
            if (raw[i])
                memcpy(dst, src, raw[i]);
        } else {
            size_t z = ZSTD_decompressDCtx(dctx, dst, raw[i], src, stored[i]);
            if (ZSTD_isError(z) || z != raw[i])
                return FL_ERR_STORE_CORRUPT;
        }
    }
    scratch->len = total;
    st->n = (int)n;
    for (uint64_t i = 0; i < n; i++) {
        st->p[i] = scratch->p + off[i];
        st->len[i] = raw[i];
    }
    return FL_OK;
}

/* ---------------------------------------------------------------- value tags */

enum {
    TAG_EMPTY = 0,
    TAG_STRING = 1,
    TAG_FALSE = 2,
    TAG_TRUE = 3,
    TAG_INT = 4,
    TAG_DOUBLE = 5,
    TAG_ARRAY = 6,
    TAG_KVLIST = 7,
    TAG_BYTES = 8
};

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static void put64le(fl__sb_t *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    fl__sb_put(b, t, 8);
}

/* ---------------------------------------------------------------- depth check */

static int value_depth_ok(const fl_value_t *v, int depth)
{
    if (depth > FL__MAX_VALUE_DEPTH)
        return 0;
    if (v->type == FL_VAL_ARRAY) {
        for (size_t i = 0; i < v->u.arr.n; i++)
            if (!value_depth_ok(&v->u.arr.items[i], depth + 1))
                return 0;
    } else if (v->type == FL_VAL_KVLIST) {
        for (size_t i = 0; i < v->u.kv.n; i++)
            if (!value_depth_ok(&v->u.kv.items[i].value, depth + 1))
                return 0;
    }
    return 1;
}

int fl__attrs_depth_ok(const fl_attrs_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const fl_value_t *v = &a->items[i].value;
        if ((v->type == FL_VAL_ARRAY || v->type == FL_VAL_KVLIST) && !value_depth_ok(v, 1))
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- inline codec */

void fl__inline_str_put(fl__sb_t *b, fl_str_t s)
{
    fl__sb_varint(b, s.len);
    fl__sb_put(b, s.ptr, s.len);
}

static void inline_value_put(fl__sb_t *b, const fl_value_t *v)
{
    switch (v->type) {
    case FL_VAL_STRING:
        fl__sb_u8(b, TAG_STRING);
        fl__inline_str_put(b, v->u.str);
        break;
    case FL_VAL_BYTES:
        fl__sb_u8(b, TAG_BYTES);
        fl__inline_str_put(b, v->u.str);
        break;
    case FL_VAL_BOOL:
        fl__sb_u8(b, v->u.b ? TAG_TRUE : TAG_FALSE);
        break;
    case FL_VAL_INT:
        fl__sb_u8(b, TAG_INT);
        fl__sb_varint(b, fl__zigzag(v->u.i));
        break;
    case FL_VAL_DOUBLE:
        fl__sb_u8(b, TAG_DOUBLE);
        put64le(b, dbl_bits(v->u.d));
        break;
    case FL_VAL_ARRAY:
        fl__sb_u8(b, TAG_ARRAY);
        fl__sb_varint(b, v->u.arr.n);
        for (size_t i = 0; i < v->u.arr.n; i++)
            inline_value_put(b, &v->u.arr.items[i]);
        break;
    case FL_VAL_KVLIST:
        fl__sb_u8(b, TAG_KVLIST);
        fl__sb_varint(b, v->u.kv.n);
        for (size_t i = 0; i < v->u.kv.n; i++) {
            fl__inline_str_put(b, v->u.kv.items[i].key);
            inline_value_put(b, &v->u.kv.items[i].value);
        }
        break;
    default:
        fl__sb_u8(b, TAG_EMPTY);
        break;
    }
}

void fl__inline_attrs_put(fl__sb_t *b, const fl_attrs_t *attrs)
{
    fl__sb_varint(b, attrs->n);
    for (size_t i = 0; i < attrs->n; i++) {
        fl__inline_str_put(b, attrs->items[i].key);
        inline_value_put(b, &attrs->items[i].value);
    }
}

int fl__inline_str_get(fl__rd_t *r, fl_arena_t *a, fl_str_t *out)
{
    uint64_t n = fl__rd_varint(r);
    const uint8_t *p = fl__rd_bytes(r, n);
    if (r->err)
        return FL_ERR_STORE_CORRUPT;
    char *s = fl_arena_strndup(a, (const char *)p, n);
    if (!s)
        return FL_ERR_NOMEM;
    out->ptr = s;
    out->len = n;
    return FL_OK;
}

/* A count read from the data can never exceed the bytes left (each item takes >= 1 byte);
 * checking that first keeps a corrupt count from asking the arena for gigabytes. */
static int count_ok(const fl__rd_t *r, uint64_t n)
{
    return !r->err && n <= (uint64_t)(r->end - r->p);
}

static int inline_value_get(fl__rd_t *r, fl_arena_t *a, fl_value_t *v, int depth)
{
    int rc;
    if (depth > FL__MAX_VALUE_DEPTH)
        return FL_ERR_STORE_CORRUPT;
    uint8_t tag = fl__rd_u8(r);
    memset(v, 0, sizeof(*v));
    switch (tag) {
    case TAG_EMPTY:
        v->type = FL_VAL_EMPTY;
        break;
    case TAG_STRING:
    case TAG_BYTES:
        v->type = tag == TAG_STRING ? FL_VAL_STRING : FL_VAL_BYTES;
        return fl__inline_str_get(r, a, &v->u.str);
    case TAG_FALSE:
    case TAG_TRUE:
        v->type = FL_VAL_BOOL;
        v->u.b = tag == TAG_TRUE;
        break;
    case TAG_INT:
        v->type = FL_VAL_INT;
        v->u.i = fl__unzigzag(fl__rd_varint(r));
        break;
    case TAG_DOUBLE: {
        const uint8_t *p = fl__rd_bytes(r, 8);
        if (!p)
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_DOUBLE;
        v->u.d = bits_dbl(load64le(p));
        break;
    }
    case TAG_ARRAY: {
        uint64_t n = fl__rd_varint(r);
        if (!count_ok(r, n))
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_ARRAY;
        v->u.arr.n = n;
        if (n) {
            v->u.arr.items = fl_arena_calloc(a, n, sizeof(fl_value_t));
            if (!v->u.arr.items)
                return FL_ERR_NOMEM;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((rc = inline_value_get(r, a, &v->u.arr.items[i], depth + 1)) != FL_OK)
                return rc;
        break;
    }
    case TAG_KVLIST: {
        uint64_t n = fl__rd_varint(r);
        if (!count_ok(r, n))
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_KVLIST;
        v->u.kv.n = n;
        if (n) {
            v->u.kv.items = fl_arena_calloc(a, n, sizeof(fl_kv_t));
            if (!v->u.kv.items)
                return FL_ERR_NOMEM;
        }
        for (uint64_t i = 0; i < n; i++) {
            if ((rc = fl__inline_str_get(r, a, &v->u.kv.items[i].key)) != FL_OK)
                return rc;
            if ((rc = inline_value_get(r, a, &v->u.kv.items[i].value, depth + 1)) != FL_OK)
                return rc;
        }
        break;
    }
    default:
        return FL_ERR_STORE_CORRUPT;
    }
    return r->err ? FL_ERR_STORE_CORRUPT : FL_OK;
}

int fl__inline_attrs_get(fl__rd_t *r, fl_arena_t *a, fl_attrs_t *out)
{
    int rc;
    uint64_t n = fl__rd_varint(r);
    memset(out, 0, sizeof(*out));
    if (!count_ok(r, n))
        return FL_ERR_STORE_CORRUPT;
    if (n) {
        out->items = fl_arena_calloc(a, n, sizeof(fl_kv_t));
        if (!out->items)
            return FL_ERR_NOMEM;
    }
    out->n = n;
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = fl__inline_str_get(r, a, &out->items[i].key)) != FL_OK)
            return rc;
        if ((rc = inline_value_get(r, a, &out->items[i].value, 1)) != FL_OK)
            return rc;
    }
    return FL_OK;
}

#define BODY_VERSION 1

void fl__resource_body(fl__sb_t *b, const fl_resource_t *res)
{
    fl__sb_u8(b, BODY_VERSION);
    fl__sb_varint(b, res->dropped_attrs);
    fl__inline_str_put(b, res->schema_url);
    fl__inline_str_put(b, res->service_name);
    fl__inline_attrs_put(b, &res->attrs);
}

void fl__scope_body(fl__sb_t *b, const fl_scope_t *scope)
{
    fl__sb_u8(b, BODY_VERSION);
    fl__inline_str_put(b, scope->name);
    fl__inline_str_put(b, scope->version);
    fl__inline_str_put(b, scope->schema_url);
    fl__sb_varint(b, scope->dropped_attrs);
    fl__inline_attrs_put(b, &scope->attrs);
}

int fl__resource_decode(const void *body, size_t len, fl_arena_t *a, fl_resource_t *out)
{
    fl__rd_t r;
    int rc;
    memset(out, 0, sizeof(*out));
    fl__rd_init(&r, body, len);
    if (fl__rd_u8(&r) != BODY_VERSION)
        return FL_ERR_STORE_CORRUPT;
    out->dropped_attrs = (uint32_t)fl__rd_varint(&r);
    if ((rc = fl__inline_str_get(&r, a, &out->schema_url)) != FL_OK ||
        (rc = fl__inline_str_get(&r, a, &out->service_name)) != FL_OK ||
        (rc = fl__inline_attrs_get(&r, a, &out->attrs)) != FL_OK)
        return rc;
    return r.err || r.p != r.end ? FL_ERR_STORE_CORRUPT : FL_OK;
}

int fl__scope_decode(const void *body, size_t len, fl_arena_t *a, fl_scope_t *out)
{
    fl__rd_t r;
    int rc;
    memset(out, 0, sizeof(*out));
    fl__rd_init(&r, body, len);
    if (fl__rd_u8(&r) != BODY_VERSION)
        return FL_ERR_STORE_CORRUPT;
    if ((rc = fl__inline_str_get(&r, a, &out->name)) != FL_OK ||
        (rc = fl__inline_str_get(&r, a, &out->version)) != FL_OK ||
        (rc = fl__inline_str_get(&r, a, &out->schema_url)) != FL_OK)
        return rc;
    out->dropped_attrs = (uint32_t)fl__rd_varint(&r);
    if ((rc = fl__inline_attrs_get(&r, a, &out->attrs)) != FL_OK)
        return rc;
    return r.err || r.p != r.end ? FL_ERR_STORE_CORRUPT : FL_OK;
}

/* ---------------------------------------------------------------- bloom */

size_t fl__bloom_bytes(size_t n_keys)
{
    size_t bits = n_keys * FL__BLOOM_BITS_PER_KEY;
    size_t lines = (bits + 511) / 512;
    return (lines ? lines : 1) * 64;
}

/* Blocked bloom: one 512-bit cache line per key (chosen by multiply-shift from the hash),
 * eight bit probes inside it. The probe positions depend only on the key, so a reader
 * testing one trace against many blocks computes them once (fl__bloom_key_init). */
void fl__bloom_key_init(fl__bloom_key_t *k, uint64_t h)
{
    uint64_t g = fl__mix64(h + 0x452821e638d01377ULL);
    k->h = h;
    for (int i = 0; i < 7; i++)
        k->pos[i] = (uint16_t)((g >> (9 * i)) & 511);
    k->pos[7] = (uint16_t)((h >> 40) & 511);
}

static inline size_t bloom_line(uint64_t h, size_t lines)
{
    return (size_t)(((unsigned __int128)h * lines) >> 64);
}

void fl__bloom_add(uint8_t *bloom, size_t nbytes, uint64_t h)
{
    fl__bloom_key_t k;
    fl__bloom_key_init(&k, h);
    uint8_t *l = bloom + bloom_line(h, nbytes / 64) * 64;
    for (int i = 0; i < 8; i++)
        l[k.pos[i] >> 3] |= (uint8_t)(1u << (k.pos[i] & 7));
}

int fl__bloom_test_key(const uint8_t *bloom, size_t nbytes, const fl__bloom_key_t *k)
{
    if (nbytes < 64 || nbytes % 64)
        return 1; /* malformed filter: say "maybe" so the block is still read */
    const uint8_t *l = bloom + bloom_line(k->h, nbytes / 64) * 64;
    for (int i = 0; i < 8; i++)
        if (!(l[k->pos[i] >> 3] & (1u << (k->pos[i] & 7))))
            return 0;
    return 1;
}

int fl__bloom_test(const uint8_t *bloom, size_t nbytes, uint64_t h)
{
    fl__bloom_key_t k;
    fl__bloom_key_init(&k, h);
    return fl__bloom_test_key(bloom, nbytes, &k);
}

/* ---------------------------------------------------------------- small hash map */

/* uint64 -> uint32, open addressing; used for interning, op summaries and parents. */
typedef struct u64map {
    uint64_t *keys;
    uint32_t *vals;
    uint8_t *used;
    size_t cap; /* power of two */
    size_t n;
} u64map_t;

static void u64map_dispose(u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof(*m));
}

static int u64map_reset(u64map_t *m, size_t want)
{
    size_t cap = 64;
    while (cap < want * 2)
        cap *= 2;
    if (cap > m->cap) {
        u64map_dispose(m);
        m->keys = malloc(cap * sizeof(uint64_t));
        m->vals = malloc(cap * sizeof(uint32_t));
        m->used = malloc(cap);
        if (!m->keys || !m->vals || !m->used) {
            u64map_dispose(m);
            return FL_ERR_NOMEM;
        }
        m->cap = cap;
    }
    memset(m->used, 0, m->cap);
    m->n = 0;
    return FL_OK;
}

/* Find key; when absent and insert is set, add it with val. Returns the slot's value
 * pointer, or NULL when absent (or on OOM while growing). */
static uint32_t *u64map_find(u64map_t *m, uint64_t key, uint64_t hash, int insert, uint32_t val,
                             int *inserted)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)hash & mask;
    *inserted = 0;
    while (m->used[i]) {
        if (m->keys[i] == key)
            return &m->vals[i];
        i = (i + 1) & mask;
    }
    if (!insert)
        return NULL;
    m->used[i] = 1;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    *inserted = 1;
    return &m->vals[i];
}

/* Grow when the load passes one half; the hash is recomputed from the key by hashfn. */
static int u64map_maybe_grow(u64map_t *m, uint64_t (*hashfn)(uint64_t key, void *ctx), void *ctx)
{
    if (m->n * 2 < m->cap)
        return FL_OK;
    u64map_t nm = {0};
    if (u64map_reset(&nm, m->cap) != FL_OK)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->used[i])
            continue;
        int ins;
        u64map_find(&nm, m->keys[i], hashfn(m->keys[i], ctx), 1, m->vals[i], &ins);
    }
    u64map_dispose(m);
    *m = nm;
    return FL_OK;
}

static uint64_t hash_key_mix(uint64_t key, void *ctx)
{
    (void)ctx;
    return fl__mix64(key);
}

/* ---------------------------------------------------------------- encoder */

enum {
    L_TRACE,   /* distinct trace ids, ascending, raw (must stay stream 0) */
    L_RUNS,    /* rows per trace */
    L_ROWS,    /* each trace's row numbers, ascending, delta-coded */
    L_TMIN,    /* each trace's earliest start, minus the block base */
    L_SPAN,    /* span ids, raw */
    L_PARENT,  /* 0 root, 1 explicit (L_PARENTX), k >= 2: the trace's (k-2)th row */
    L_PARENTX, /* explicit parent ids, raw */
    L_START,   /* block base, then start minus the trace's earliest start */
    L_DUR,     /* end - start, zigzag */
    L_SVC,
    L_NAME,
    L_STATUS,
    L_COUNT
};

enum {
    H_KIND,
    H_FLAGS,
    H_TSTATE,
    H_SMSG,
    H_RES,
    H_SCOPE,
    H_DROP,
    H_ACNT,
    H_AKEY,
    H_ATYPE,
    H_ASTR,
    H_AINT,
    H_ADBL,
    H_ECNT,
    H_ETIME,
    H_ENAME,
    H_LCNT,
    H_LHDR,
    H_LID,
    H_STRLEN,
    H_STRDATA,
    H_COUNT
};

#define PRED_SLOTS 64

typedef struct pred {
    const char *ptr;
    size_t len;
    uint32_t idx;
    int valid;
} pred_t;

/* Interned strings of one block: each distinct byte string gets an index. */
typedef struct strtab {
    u64map_t map;        /* hash -> first index with that hash */
    uint32_t *next_same; /* chain of indexes sharing a hash */
    uint32_t *off;
    uint32_t *len;
    size_t n;
    size_t cap;
} strtab_t;

struct fl__enc {
    ZSTD_CCtx *cctx;
    fl__sb_t l[L_COUNT];
    fl__sb_t h[H_COUNT];
    strtab_t st;
    u64map_t ops_map;
    fl__op_sum_t *ops;
    size_t ops_cap;
    u64map_t parent_map;
    /* per-block scratch, sized for n rows */
    size_t scr_cap;
    uint64_t *keys; /* radix sort of (seq, sorted index) */
    uint64_t *keys_tmp;
    uint32_t *arr2sorted; /* arrival row -> index in rows[] */
    uint32_t *sorted2arr;
    uint32_t *pos_in_trace; /* rows[] index -> position in its trace's row list */
    uint32_t *run_of;       /* rows[] index -> trace number */
    uint32_t *trace_rows;
    uint32_t *run_begin; /* trace number -> first rows[] index (n_runs + 1) */
    uint64_t *tmin;
    size_t chunk_off[FL__MAX_CHUNKS + 1]; /* heavy chunk boundaries in the heavy buffer */
    size_t n_chunks;
    /* predictor: the key/value strings at each attribute position of the previous span */
    pred_t pred_key[PRED_SLOTS];
    pred_t pred_val[PRED_SLOTS];
};

fl__enc_t *fl__enc_new(void)
{
    fl__enc_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->cctx = ZSTD_createCCtx();
    if (!e->cctx) {
        free(e);
        return NULL;
    }
    return e;
}

void fl__enc_free(fl__enc_t *e)
{
    if (!e)
        return;
    ZSTD_freeCCtx(e->cctx);
    for (int i = 0; i < L_COUNT; i++)
        fl__sb_dispose(&e->l[i]);
    for (int i = 0; i < H_COUNT; i++)
        fl__sb_dispose(&e->h[i]);
    u64map_dispose(&e->st.map);
    free(e->st.next_same);
    free(e->st.off);
    free(e->st.len);
    u64map_dispose(&e->ops_map);
    free(e->ops);
    u64map_dispose(&e->parent_map);
    free(e->keys);
    free(e->keys_tmp);
    free(e->arr2sorted);
    free(e->sorted2arr);
    free(e->pos_in_trace);
    free(e->run_of);
    free(e->trace_rows);
    free(e->run_begin);
    free(e->tmin);
    free(e);
}

static uint64_t strtab_rehash(uint64_t key, void *ctx)
{
    (void)ctx;
    return key; /* keys are already hashes */
}

/* Index of string s in the chunk's table, adding it when new. UINT32_MAX on OOM. */
static uint32_t intern_idx(fl__enc_t *e, const char *p, size_t len)
{
    strtab_t *t = &e->st;
    fl__sb_t *data = &e->h[H_STRDATA];
    uint64_t h = fl__hash_bytes(p, len, 0);
    int ins;
    uint32_t *slot = u64map_find(&t->map, h, h, 0, 0, &ins);
    if (slot) {
        for (uint32_t i = *slot; i != UINT32_MAX; i = t->next_same[i])
            if (t->len[i] == len && (len == 0 || memcmp(data->p + t->off[i], p, len) == 0))
                return i;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        uint32_t *ns = realloc(t->next_same, cap * sizeof(uint32_t));
        if (ns)
            t->next_same = ns;
        uint32_t *no = realloc(t->off, cap * sizeof(uint32_t));
        if (no)
            t->off = no;
        uint32_t *nl = realloc(t->len, cap * sizeof(uint32_t));
        if (nl)
            t->len = nl;
        if (!ns || !no || !nl)
            return UINT32_MAX;
        t->cap = cap;
    }
    if (data->len > UINT32_MAX - len || len > UINT32_MAX)
        return UINT32_MAX;
    uint32_t idx = (uint32_t)t->n++;
    t->off[idx] = (uint32_t)data->len;
    t->len[idx] = (uint32_t)len;
    fl__sb_put(data, p, len);
    fl__sb_varint(&e->h[H_STRLEN], len);
    if (slot) {
        t->next_same[idx] = *slot;
        *slot = idx;
    } else {
        t->next_same[idx] = UINT32_MAX;
        u64map_find(&t->map, h, h, 1, idx, &ins);
        if (u64map_maybe_grow(&t->map, strtab_rehash, NULL) != FL_OK)
            return UINT32_MAX;
    }
    return idx;
}

/* The reference to write for string s (interned): 0 when s is new to the table (the
 * decoder walks the references in the order they were written, so it knows which string
 * comes next), else its index + 1. Strings seen once (URLs, ids, addresses) cost one
 * repeated byte instead of an ever-growing index. *idx: the index. UINT64_MAX on OOM. */
static uint64_t intern(fl__enc_t *e, const char *p, size_t len, uint32_t *idx)
{
    size_t before = e->st.n;
    *idx = intern_idx(e, p, len);
    if (*idx == UINT32_MAX)
        return UINT64_MAX;
    return e->st.n != before ? 0 : (uint64_t)*idx + 1;
}

/* Write a string reference into stream s, interning it. */
static int put_str(fl__enc_t *e, fl__sb_t *s, fl_str_t str)
{
    uint32_t idx;
    uint64_t ref = intern(e, str.ptr ? str.ptr : "", str.ptr ? str.len : 0, &idx);
    if (ref == UINT64_MAX)
        return FL_ERR_NOMEM;
    fl__sb_varint(s, ref);
    return FL_OK;
}

/* As put_str with a per-position predictor: spans usually repeat the previous span's
 * attribute keys (and many values) at the same positions, which skips the hash. */
static int put_str_pred(fl__enc_t *e, fl__sb_t *s, fl_str_t str, size_t pos, int is_key)
{
    const char *p = str.ptr ? str.ptr : "";
    size_t len = str.ptr ? str.len : 0;
    if (pos >= PRED_SLOTS)
        return put_str(e, s, str);
    pred_t *pr = is_key ? &e->pred_key[pos] : &e->pred_val[pos];
    if (pr->valid && pr->len == len && (len == 0 || memcmp(pr->ptr, p, len) == 0)) {
        fl__sb_varint(s, (uint64_t)pr->idx + 1); /* in the table already */
        return FL_OK;
    }
    uint32_t idx;
    uint64_t ref = intern(e, p, len, &idx);
    if (ref == UINT64_MAX)
        return FL_ERR_NOMEM;
    pr->ptr = p;
    pr->len = len;
    pr->idx = idx;
    pr->valid = 1;
    fl__sb_varint(s, ref);
    return FL_OK;
}

static int enc_value(fl__enc_t *e, const fl_value_t *v, size_t pos, int depth)
{
    int rc = FL_OK;
    if (depth > FL__MAX_VALUE_DEPTH)
        return FL_ERR_TOO_DEEP;
    switch (v->type) {
    case FL_VAL_STRING:
    case FL_VAL_BYTES:
        fl__sb_u8(&e->h[H_ATYPE], v->type == FL_VAL_STRING ? TAG_STRING : TAG_BYTES);
        rc = put_str_pred(e, &e->h[H_ASTR], v->u.str, pos, 0);
        break;
    case FL_VAL_BOOL:
        fl__sb_u8(&e->h[H_ATYPE], v->u.b ? TAG_TRUE : TAG_FALSE);
        break;
    case FL_VAL_INT:
        fl__sb_u8(&e->h[H_ATYPE], TAG_INT);
        fl__sb_varint(&e->h[H_AINT], fl__zigzag(v->u.i));
        break;
    case FL_VAL_DOUBLE:
        fl__sb_u8(&e->h[H_ATYPE], TAG_DOUBLE);
        put64le(&e->h[H_ADBL], dbl_bits(v->u.d));
        break;
    case FL_VAL_ARRAY:
        fl__sb_u8(&e->h[H_ATYPE], TAG_ARRAY);
        fl__sb_varint(&e->h[H_ACNT], v->u.arr.n);
        for (size_t i = 0; i < v->u.arr.n && rc == FL_OK; i++)
            rc = enc_value(e, &v->u.arr.items[i], SIZE_MAX, depth + 1);
        break;
    case FL_VAL_KVLIST:
        fl__sb_u8(&e->h[H_ATYPE], TAG_KVLIST);
        fl__sb_varint(&e->h[H_ACNT], v->u.kv.n);
        for (size_t i = 0; i < v->u.kv.n && rc == FL_OK; i++) {
            rc = put_str(e, &e->h[H_AKEY], v->u.kv.items[i].key);
            if (rc == FL_OK)
                rc = enc_value(e, &v->u.kv.items[i].value, SIZE_MAX, depth + 1);
        }
        break;
    default:
        fl__sb_u8(&e->h[H_ATYPE], TAG_EMPTY);
        break;
    }
    return rc;
}

/* Attribute list; top-level span attributes use the position predictor (pred set). */
static int enc_attrs(fl__enc_t *e, const fl_attrs_t *a, int pred)
{
    int rc = FL_OK;
    fl__sb_varint(&e->h[H_ACNT], a->n);
    for (size_t i = 0; i < a->n && rc == FL_OK; i++) {
        const fl_kv_t *kv = &a->items[i];
        if (pred)
            rc = put_str_pred(e, &e->h[H_AKEY], kv->key, i, 1);
        else
            rc = put_str(e, &e->h[H_AKEY], kv->key);
        if (rc == FL_OK)
            rc = enc_value(e, &kv->value, pred ? i : SIZE_MAX, 1);
    }
    return rc;
}

static int enc_heavy_span(fl__enc_t *e, const fl__row_t *row)
{
    const fl_span_t *sp = row->sp;
    int rc;
    fl__sb_varint(&e->h[H_KIND], fl__zigzag(sp->kind));
    fl__sb_varint(&e->h[H_FLAGS], sp->flags);
    if ((rc = put_str(e, &e->h[H_TSTATE], sp->trace_state)) != FL_OK)
        return rc;
    if ((rc = put_str(e, &e->h[H_SMSG], sp->status_message)) != FL_OK)
        return rc;
    fl__sb_varint(&e->h[H_RES], row->res_id);
    fl__sb_varint(&e->h[H_SCOPE], row->scope_id);
    fl__sb_varint(&e->h[H_DROP], sp->dropped_attrs);
    fl__sb_varint(&e->h[H_DROP], sp->dropped_events);
    fl__sb_varint(&e->h[H_DROP], sp->dropped_links);
    if ((rc = enc_attrs(e, &sp->attrs, 1)) != FL_OK)
        return rc;
    fl__sb_varint(&e->h[H_ECNT], sp->n_events);
    for (size_t i = 0; i < sp->n_events; i++) {
        const fl_event_t *ev = &sp->events[i];
        fl__sb_varint(&e->h[H_ETIME], fl__zigzag((int64_t)(ev->time_ns - sp->start_ns)));
        if ((rc = put_str(e, &e->h[H_ENAME], ev->name)) != FL_OK)
            return rc;
        if ((rc = enc_attrs(e, &ev->attrs, 0)) != FL_OK)
            return rc;
        fl__sb_varint(&e->h[H_DROP], ev->dropped_attrs);
    }
    fl__sb_varint(&e->h[H_LCNT], sp->n_links);
    for (size_t i = 0; i < sp->n_links; i++) {
        const fl_link_t *ln = &sp->links[i];
        int same = memcmp(ln->trace_id, sp->trace_id, 16) == 0;
        fl__sb_varint(&e->h[H_LHDR], ((uint64_t)ln->flags << 1) | (uint64_t)same);
        if (!same)
            fl__sb_put(&e->h[H_LID], ln->trace_id, 16);
        fl__sb_put(&e->h[H_LID], ln->span_id, 8);
        if ((rc = put_str(e, &e->h[H_TSTATE], ln->trace_state)) != FL_OK)
            return rc;
        if ((rc = enc_attrs(e, &ln->attrs, 0)) != FL_OK)
            return rc;
        fl__sb_varint(&e->h[H_DROP], ln->dropped_attrs);
    }
    return FL_OK;
}

static uint64_t span_dur(const fl_span_t *sp)
{
    return sp->end_ns > sp->start_ns ? sp->end_ns - sp->start_ns : 0;
}

static uint64_t clamp63(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : v;
}

static int add_op(fl__enc_t *e, const fl__row_t *row)
{
    const fl_span_t *sp = row->sp;
    uint64_t key = ((uint64_t)row->svc_id << 32) | row->name_id;
    int ins;
    uint32_t *slot = u64map_find(&e->ops_map, key, fl__mix64(key), 1, 0, &ins);
    if (ins) {
        if (e->ops_map.n > e->ops_cap) {
            size_t cap = e->ops_cap ? e->ops_cap * 2 : 64;
            fl__op_sum_t *no = realloc(e->ops, cap * sizeof(*no));
            if (!no)
                return FL_ERR_NOMEM;
            e->ops = no;
            e->ops_cap = cap;
        }
        *slot = (uint32_t)(e->ops_map.n - 1);
        fl__op_sum_t *o = &e->ops[*slot];
        memset(o, 0, sizeof(*o));
        o->svc_id = row->svc_id;
        o->name_id = row->name_id;
        o->min_start = UINT64_MAX;
        if (u64map_maybe_grow(&e->ops_map, hash_key_mix, NULL) != FL_OK)
            return FL_ERR_NOMEM;
        slot = u64map_find(&e->ops_map, key, fl__mix64(key), 0, 0, &ins);
    }
    fl__op_sum_t *o = &e->ops[*slot];
    uint64_t st = clamp63(sp->start_ns), dur = clamp63(span_dur(sp));
    o->n_spans++;
    o->n_errors += sp->status_code == FL_STATUS_ERROR;
    if (st < o->min_start)
        o->min_start = st;
    if (st > o->max_start)
        o->max_start = st;
    if (dur > o->max_dur)
        o->max_dur = dur;
    return FL_OK;
}

/* Start a new heavy chunk: empty streams, string table and predictor. */
static int heavy_reset(fl__enc_t *e)
{
    for (int i = 0; i < H_COUNT; i++) {
        e->h[i].len = 0;
        e->h[i].oom = 0;
    }
    memset(e->pred_key, 0, sizeof(e->pred_key));
    memset(e->pred_val, 0, sizeof(e->pred_val));
    e->st.n = 0;
    return u64map_reset(&e->st.map, 256);
}

/* Pack the current heavy streams as one chunk blob appended to heavy. */
static int heavy_flush(fl__enc_t *e, fl__sb_t *heavy)
{
    /* The string table's count goes first in its stream. */
    fl__sb_t strlen_hdr = {0};
    fl__sb_varint(&strlen_hdr, e->st.n);
    fl__sb_put(&strlen_hdr, e->h[H_STRLEN].p, e->h[H_STRLEN].len);
    fl__sb_t saved = e->h[H_STRLEN];
    e->h[H_STRLEN] = strlen_hdr;
    fl__sb_t *hs[H_COUNT];
    for (int i = 0; i < H_COUNT; i++)
        hs[i] = &e->h[i];
    int rc = fl__blob_pack(e->cctx, hs, H_COUNT, 1u << H_LID, heavy);
    e->h[H_STRLEN] = saved;
    fl__sb_dispose(&strlen_hdr);
    if (rc == FL_OK) {
        if (e->n_chunks + 1 >= FL__MAX_CHUNKS + 1)
            return FL_ERR_INVALID;
        e->chunk_off[++e->n_chunks] = heavy->len;
    }
    return rc;
}

static int enc_scratch(fl__enc_t *e, size_t n)
{
    if (n <= e->scr_cap)
        return FL_OK;
    size_t cap = n + n / 4 + 64;
#define GROW(field, type)                                                                          \
    do {                                                                                           \
        type *np_ = realloc(e->field, cap * sizeof(type));                                         \
        if (!np_)                                                                                  \
            return FL_ERR_NOMEM;                                                                   \
        e->field = np_;                                                                            \
    } while (0)
    GROW(keys, uint64_t);
    GROW(keys_tmp, uint64_t);
    GROW(arr2sorted, uint32_t);
    GROW(sorted2arr, uint32_t);
    GROW(pos_in_trace, uint32_t);
    GROW(run_of, uint32_t);
    GROW(trace_rows, uint32_t);
    GROW(run_begin, uint32_t);
    GROW(tmin, uint64_t);
#undef GROW
    e->scr_cap = cap;
    return FL_OK;
}

/* LSD radix sort of 64-bit keys on their upper 32 bits (stable). */
static uint64_t *radix_hi32(uint64_t *a, uint64_t *t, size_t n)
{
    enum { BITS = 11, NB = 1 << BITS };
    size_t cnt[NB];
    for (int shift = 32; shift < 64; shift += BITS) {
        memset(cnt, 0, sizeof(cnt));
        for (size_t i = 0; i < n; i++)
            cnt[(a[i] >> shift) & (NB - 1)]++;
        if (cnt[(a[0] >> shift) & (NB - 1)] == n)
            continue;
        size_t sum = 0;
        for (size_t d = 0; d < NB; d++) {
            size_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[cnt[(a[i] >> shift) & (NB - 1)]++] = a[i];
        uint64_t *x = a;
        a = t;
        t = x;
    }
    return a;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_u32(uint32_t *v, size_t n)
{
    if (n > 32) {
        fl_sort(v, n, sizeof(uint32_t), cmp_u32);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t t = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > t) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
}

/* Key of a span id inside one trace, for parent lookups in big traces. */
static inline uint64_t parent_key(uint64_t s_id, uint32_t run)
{
    return s_id ^ fl__mix64((uint64_t)run + 1);
}

/* Parent reference of rows[p]: 0 root, 1 explicit id in L_PARENTX, k >= 2 the (k-2)th row of
 * the same trace's (ascending) row list. */
static void enc_parent(fl__enc_t *e, const fl__row_t *rows, size_t p)
{
    const fl_span_t *sp = rows[p].sp;
    uint64_t pid = fl__load64be(sp->parent_span_id);
    if (pid == 0) {
        fl__sb_varint(&e->l[L_PARENT], 0);
        return;
    }
    uint32_t r = e->run_of[p];
    size_t b = e->run_begin[r], en = e->run_begin[r + 1], found = SIZE_MAX;
    if (en - b <= 16) {
        for (size_t q = b; q < en; q++)
            if (rows[q].s_id == pid) {
                found = q;
                break;
            }
    } else {
        int ins;
        uint64_t k = parent_key(pid, r);
        uint32_t *v = u64map_find(&e->parent_map, k, fl__mix64(k), 0, 0, &ins);
        if (v && rows[*v].s_id == pid && e->run_of[*v] == r)
            found = *v;
    }
    if (found == SIZE_MAX) {
        fl__sb_varint(&e->l[L_PARENT], 1);
        fl__sb_put(&e->l[L_PARENTX], sp->parent_span_id, 8);
    } else {
        fl__sb_varint(&e->l[L_PARENT], (uint64_t)e->pos_in_trace[found] + 2);
    }
}

/* Spans are read in arrival order, i.e. mostly sequentially through the batches' memory;
 * a short prefetch of the span and of its attribute array keeps the encoder from waiting. */
#define PF_DIST 6

static inline void prefetch_row(const fl__row_t *row)
{
    const char *p = (const char *)row->sp;
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    __builtin_prefetch(p + 192);
}

static inline void prefetch_attrs(const fl__row_t *row)
{
    const fl_span_t *sp = row->sp;
    const char *items = (const char *)sp->attrs.items;
    size_t bytes = sp->attrs.n * sizeof(fl_kv_t);
    if (bytes > 512)
        bytes = 512;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(items + off);
}

int fl__enc_block(fl__enc_t *e, const fl__row_t *rows, size_t n, fl__sb_t *light, fl__sb_t *heavy,
                  const size_t **chunk_off, size_t *n_chunks, fl__sb_t *bloom,
                  fl__block_meta_t *meta, const fl__op_sum_t **ops, size_t *n_ops,
                  uint32_t *bad_seq)
{
    int rc = FL_OK;
    if (n == 0 || n > UINT32_MAX)
        return FL_ERR_INVALID;
    for (int i = 0; i < L_COUNT; i++) {
        e->l[i].len = 0;
        e->l[i].oom = 0;
    }
    if (n > (size_t)FL__MAX_CHUNKS * FL__HEAVY_CHUNK)
        return FL_ERR_INVALID;
    heavy->len = 0;
    heavy->oom = 0;
    e->n_chunks = 0;
    e->chunk_off[0] = 0;
    if ((rc = enc_scratch(e, n)) != FL_OK || (rc = heavy_reset(e)) != FL_OK ||
        (rc = u64map_reset(&e->ops_map, 64)) != FL_OK)
        return rc;

    memset(meta, 0, sizeof(*meta));
    meta->n_spans = (uint32_t)n;
    uint64_t base = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (rows[i].start < base)
            base = rows[i].start;

    /* Arrival order: sort (seq, index) pairs. */
    for (size_t i = 0; i < n; i++)
        e->keys[i] = ((uint64_t)rows[i].seq << 32) | i;
    const uint64_t *byseq = radix_hi32(e->keys, e->keys_tmp, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t p = (uint32_t)byseq[i];
        e->arr2sorted[i] = p;
        e->sorted2arr[p] = (uint32_t)i;
    }

    /* Trace directory. */
    size_t n_runs = 0;
    for (size_t p = 0; p < n;) {
        size_t pe = p + 1;
        while (pe < n && rows[pe].t_hi == rows[p].t_hi && rows[pe].t_lo == rows[p].t_lo)
            pe++;
        e->run_begin[n_runs] = (uint32_t)p;
        for (size_t q = p; q < pe; q++) {
            e->run_of[q] = (uint32_t)n_runs;
            e->trace_rows[q] = e->sorted2arr[q];
        }
        sort_u32(e->trace_rows + p, pe - p);
        for (size_t j = p; j < pe; j++) {
            e->pos_in_trace[e->arr2sorted[e->trace_rows[j]]] = (uint32_t)(j - p);
            fl__sb_varint(&e->l[L_ROWS],
                          j == p ? e->trace_rows[j] : e->trace_rows[j] - e->trace_rows[j - 1]);
        }
        uint8_t tid[16];
        fl__store64be(tid, rows[p].t_hi);
        fl__store64be(tid + 8, rows[p].t_lo);
        fl__sb_put(&e->l[L_TRACE], tid, 16);
        fl__sb_varint(&e->l[L_RUNS], pe - p);
        e->tmin[n_runs] = rows[p].start;
        for (size_t q = p + 1; q < pe; q++)
            if (rows[q].start < e->tmin[n_runs])
                e->tmin[n_runs] = rows[q].start;
        fl__sb_varint(&e->l[L_TMIN], e->tmin[n_runs] - base);
        if (n_runs == 0)
            memcpy(meta->trace_lo, tid, 16);
        memcpy(meta->trace_hi, tid, 16);
        n_runs++;
        p = pe;
    }
    e->run_begin[n_runs] = (uint32_t)n;
    meta->n_traces = (uint32_t)n_runs;

    size_t bb = fl__bloom_bytes(n_runs);
    bloom->len = 0;
    bloom->oom = 0;
    if (fl__sb_reserve(bloom, bb) != 0)
        return FL_ERR_NOMEM;
    memset(bloom->p, 0, bb);
    bloom->len = bb;
    const uint8_t *tids = e->l[L_TRACE].p;
    for (size_t r = 0; r < n_runs; r++)
        fl__bloom_add(bloom->p, bb, fl__trace_hash(tids + r * 16));

    /* Parent lookups in big traces go through a map. */
    int have_big = 0;
    for (size_t r = 0; r < n_runs && !have_big; r++)
        have_big = e->run_begin[r + 1] - e->run_begin[r] > 16;
    if (have_big) {
        if ((rc = u64map_reset(&e->parent_map, n)) != FL_OK)
            return rc;
        for (size_t r = 0; r < n_runs; r++) {
            if (e->run_begin[r + 1] - e->run_begin[r] <= 16)
                continue;
            for (size_t q = e->run_begin[r]; q < e->run_begin[r + 1]; q++) {
                int ins;
                uint64_t k = parent_key(rows[q].s_id, (uint32_t)r);
                u64map_find(&e->parent_map, k, fl__mix64(k), 1, (uint32_t)q, &ins);
            }
        }
    }

    /* The columns, row by row in arrival order. */
    fl__sb_varint(&e->l[L_START], base);
    for (size_t i = 0; i < n && rc == FL_OK; i++) {
        if (i + PF_DIST < n)
            prefetch_row(&rows[e->arr2sorted[i + PF_DIST]]);
        if (i + PF_DIST / 2 < n)
            prefetch_attrs(&rows[e->arr2sorted[i + PF_DIST / 2]]);
        size_t p = e->arr2sorted[i];
        const fl__row_t *row = &rows[p];
        const fl_span_t *sp = row->sp;
        uint8_t sid[8];
        fl__store64be(sid, row->s_id);
        fl__sb_put(&e->l[L_SPAN], sid, 8);
        enc_parent(e, rows, p);
        fl__sb_varint(&e->l[L_START], row->start - e->tmin[e->run_of[p]]);
        fl__sb_varint(&e->l[L_DUR], fl__zigzag((int64_t)(sp->end_ns - sp->start_ns)));
        fl__sb_varint(&e->l[L_SVC], row->svc_id);
        fl__sb_varint(&e->l[L_NAME], row->name_id);
        fl__sb_varint(&e->l[L_STATUS], fl__zigzag(sp->status_code));
        if ((rc = enc_heavy_span(e, row)) != FL_OK) {
            *bad_seq = row->seq;
            break;
        }
        if ((i + 1) % FL__HEAVY_CHUNK == 0 || i + 1 == n) {
            if ((rc = heavy_flush(e, heavy)) != FL_OK || (rc = heavy_reset(e)) != FL_OK)
                break;
        }
        rc = add_op(e, row);
        uint64_t st = clamp63(sp->start_ns), en = clamp63(sp->end_ns);
        uint64_t dur = clamp63(span_dur(sp));
        if (st > meta->max_start)
            meta->max_start = st;
        if (en > meta->max_end)
            meta->max_end = en;
        if (dur > meta->max_dur)
            meta->max_dur = dur;
        meta->n_errors += sp->status_code == FL_STATUS_ERROR;
    }
    if (rc != FL_OK)
        return rc;
    meta->min_start = clamp63(base);

    fl__sb_t *ls[L_COUNT];
    for (int i = 0; i < L_COUNT; i++)
        ls[i] = &e->l[i];
    light->len = 0;
    light->oom = 0;
    uint32_t raw_light = (1u << L_TRACE) | (1u << L_SPAN) | (1u << L_PARENTX);
    if ((rc = fl__blob_pack(e->cctx, ls, L_COUNT, raw_light, light)) != FL_OK)
        return rc;
    *chunk_off = e->chunk_off;
    *n_chunks = e->n_chunks;
    *ops = e->ops;
    *n_ops = e->ops_map.n;
    return FL_OK;
}

/* ---------------------------------------------------------------- decoder */

struct fl__dec {
    ZSTD_DCtx *dctx;
    fl__sb_t light_raw;
    fl__sb_t heavy_raw;
    fl__sb_t cols; /* the light arrays */
    fl__light_t light;
    uint32_t *str_off;
    uint32_t *str_len;
    char **str_mat;
    size_t str_cap;
};

fl__dec_t *fl__dec_new(void)
{
    fl__dec_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->dctx = ZSTD_createDCtx();
    if (!d->dctx) {
        free(d);
        return NULL;
    }
    return d;
}

void fl__dec_free(fl__dec_t *d)
{
    if (!d)
        return;
    ZSTD_freeDCtx(d->dctx);
    fl__sb_dispose(&d->light_raw);
    fl__sb_dispose(&d->heavy_raw);
    fl__sb_dispose(&d->cols);
    free(d->str_off);
    free(d->str_len);
    free(d->str_mat);
    free(d);
}

int fl__dec_find_trace(fl__dec_t *d, const void *blob, size_t len, const uint8_t trace[16],
                       int *found)
{
    /* Trace ids are stored raw in the first stream: read the header, locate it, search it
     * without decompressing anything. */
    fl__rd_t r;
    size_t raw0, stored0;
    (void)d;
    *found = 0;
    fl__rd_init(&r, blob, len);
    if (!version_ok(fl__rd_u8(&r)))
        return FL_ERR_STORE_CORRUPT;
    uint64_t n = fl__rd_varint(&r);
    if (r.err || n < 1 || n > FL__STREAM_MAX)
        return FL_ERR_STORE_CORRUPT;
    raw0 = fl__rd_varint(&r);
    stored0 = fl__rd_varint(&r);
    uint8_t codec0 = fl__rd_u8(&r);
    for (uint64_t i = 1; i < n; i++) {
        fl__rd_varint(&r);
        fl__rd_varint(&r);
        fl__rd_u8(&r);
    }
    if (r.err || codec0 != FL__CODEC_RAW || raw0 != stored0 || raw0 % 16)
        return FL_ERR_STORE_CORRUPT;
    const uint8_t *ids = fl__rd_bytes(&r, raw0);
    if (!ids)
        return FL_ERR_STORE_CORRUPT;
    size_t lo = 0, hi = raw0 / 16;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(ids + mid * 16, trace, 16);
        if (c == 0) {
            *found = 1;
            return FL_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return FL_OK;
}

int fl__dec_light(fl__dec_t *d, const void *blob, size_t len, uint32_t n, const fl__light_t **out)
{
    fl__streams_t st;
    int rc = fl__blob_unpack(d->dctx, blob, len, &d->light_raw, &st);
    if (rc != FL_OK)
        return rc;
    if (st.n != L_COUNT || st.len[L_TRACE] % 16 || st.len[L_SPAN] != (size_t)n * 8 ||
        st.len[L_PARENTX] % 8)
        return FL_ERR_STORE_CORRUPT;
    uint32_t n_runs = (uint32_t)(st.len[L_TRACE] / 16);
    if (n_runs == 0 || n_runs > n)
        return FL_ERR_STORE_CORRUPT;

    /* One allocation for all arrays; 8-byte arrays first keep the alignment. */
    size_t need =
        (size_t)n * (8 + 8 + 8 + 4 * 5) + (size_t)n_runs * 8 + ((size_t)n_runs + 1) * 4 + 64;
    d->cols.len = 0;
    if (fl__sb_reserve(&d->cols, need) != 0)
        return FL_ERR_NOMEM;
    fl__light_t *L = &d->light;
    uint64_t *tmin = (uint64_t *)d->cols.p;
    L->n = n;
    L->chunk_rows = st.version >= 2 ? FL__HEAVY_CHUNK : FL__HEAVY_CHUNK_V1;
    L->n_runs = n_runs;
    L->start = tmin + n_runs;
    L->end = L->start + n;
    L->parent_ids = (uint8_t *)(L->end + n);
    L->svc = (uint32_t *)(L->parent_ids + (size_t)n * 8);
    L->name = L->svc + n;
    L->status = (int32_t *)(L->name + n);
    L->trace_rows = (uint32_t *)(L->status + n);
    L->row_trace = L->trace_rows + n;
    L->run_start = L->row_trace + n;
    L->trace_ids = st.p[L_TRACE];
    L->span_ids = st.p[L_SPAN];

    fl__rd_t runs, rows, tm, par, parx, sta, dur, svc, name, stat;
    fl__rd_init(&runs, st.p[L_RUNS], st.len[L_RUNS]);
    fl__rd_init(&rows, st.p[L_ROWS], st.len[L_ROWS]);
    fl__rd_init(&tm, st.p[L_TMIN], st.len[L_TMIN]);
    fl__rd_init(&par, st.p[L_PARENT], st.len[L_PARENT]);
    fl__rd_init(&parx, st.p[L_PARENTX], st.len[L_PARENTX]);
    fl__rd_init(&sta, st.p[L_START], st.len[L_START]);
    fl__rd_init(&dur, st.p[L_DUR], st.len[L_DUR]);
    fl__rd_init(&svc, st.p[L_SVC], st.len[L_SVC]);
    fl__rd_init(&name, st.p[L_NAME], st.len[L_NAME]);
    fl__rd_init(&stat, st.p[L_STATUS], st.len[L_STATUS]);

    uint64_t base = fl__rd_varint(&sta);
    memset(L->row_trace, 0xff, (size_t)n * 4);
    uint64_t total = 0;
    L->run_start[0] = 0;
    for (uint32_t t = 0; t < n_runs; t++) {
        uint64_t rl = fl__rd_varint(&runs);
        if (rl == 0 || total + rl > n)
            return FL_ERR_STORE_CORRUPT;
        uint64_t row = 0;
        for (uint64_t j = 0; j < rl; j++) {
            uint64_t v = fl__rd_varint(&rows);
            if (j > 0 && v == 0)
                return FL_ERR_STORE_CORRUPT;
            row = j == 0 ? v : row + v;
            if (row >= n || L->row_trace[row] != UINT32_MAX)
                return FL_ERR_STORE_CORRUPT;
            L->row_trace[row] = t;
            L->trace_rows[total + j] = (uint32_t)row;
        }
        total += rl;
        L->run_start[t + 1] = (uint32_t)total;
        tmin[t] = base + fl__rd_varint(&tm);
    }
    if (runs.err || rows.err || tm.err || total != n)
        return FL_ERR_STORE_CORRUPT;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = L->row_trace[i];
        uint64_t pv = fl__rd_varint(&par);
        uint8_t *pid = L->parent_ids + (size_t)i * 8;
        if (pv == 0) {
            memset(pid, 0, 8);
        } else if (pv == 1) {
            const uint8_t *x = fl__rd_bytes(&parx, 8);
            if (!x)
                return FL_ERR_STORE_CORRUPT;
            memcpy(pid, x, 8);
        } else {
            uint64_t pos = L->run_start[t] + (pv - 2);
            if (pos >= L->run_start[t + 1])
                return FL_ERR_STORE_CORRUPT;
            memcpy(pid, L->span_ids + (size_t)L->trace_rows[pos] * 8, 8);
        }
        L->start[i] = tmin[t] + fl__rd_varint(&sta);
        L->end[i] = L->start[i] + (uint64_t)fl__unzigzag(fl__rd_varint(&dur));
        L->svc[i] = (uint32_t)fl__rd_varint(&svc);
        L->name[i] = (uint32_t)fl__rd_varint(&name);
        L->status[i] = (int32_t)fl__unzigzag(fl__rd_varint(&stat));
    }
    if (par.err || parx.err || sta.err || dur.err || svc.err || name.err || stat.err)
        return FL_ERR_STORE_CORRUPT;
    *out = L;
    return FL_OK;
}

/* Heavy decoding walks every row in order; rows before the wanted range are skipped
 * (a == NULL) without materialising anything. */
typedef struct hcur {
    fl__rd_t r[H_COUNT];
    fl__dec_t *d;
    size_t n_str;
    int new_refs;    /* blob version 2: 0 = the next new string, k = string k - 1 */
    size_t next_new; /* strings referenced so far as new */
    const uint8_t *strdata;
    fl_arena_t *a;
} hcur_t;

static int get_str(hcur_t *c, int stream, fl_str_t *out)
{
    uint64_t idx = fl__rd_varint(&c->r[stream]);
    if (c->new_refs) {
        if (idx == 0)
            idx = c->next_new++;
        else if (--idx >= c->next_new)
            return FL_ERR_STORE_CORRUPT; /* a string not in the table yet */
    }
    if (c->r[stream].err || idx >= c->n_str)
        return FL_ERR_STORE_CORRUPT;
    if (!c->a)
        return FL_OK;
    fl__dec_t *d = c->d;
    if (!d->str_mat[idx]) {
        d->str_mat[idx] =
            fl_arena_strndup(c->a, (const char *)c->strdata + d->str_off[idx], d->str_len[idx]);
        if (!d->str_mat[idx])
            return FL_ERR_NOMEM;
    }
    out->ptr = d->str_mat[idx];
    out->len = d->str_len[idx];
    return FL_OK;
}

static int dec_value(hcur_t *c, fl_value_t *v, int depth)
{
    int rc;
    fl_value_t dummy;
    if (depth > FL__MAX_VALUE_DEPTH)
        return FL_ERR_STORE_CORRUPT;
    if (!v)
        v = &dummy;
    memset(v, 0, sizeof(*v));
    uint8_t tag = fl__rd_u8(&c->r[H_ATYPE]);
    if (c->r[H_ATYPE].err)
        return FL_ERR_STORE_CORRUPT;
    switch (tag) {
    case TAG_EMPTY:
        v->type = FL_VAL_EMPTY;
        return FL_OK;
    case TAG_STRING:
    case TAG_BYTES:
        v->type = tag == TAG_STRING ? FL_VAL_STRING : FL_VAL_BYTES;
        return get_str(c, H_ASTR, &v->u.str);
    case TAG_FALSE:
    case TAG_TRUE:
        v->type = FL_VAL_BOOL;
        v->u.b = tag == TAG_TRUE;
        return FL_OK;
    case TAG_INT:
        v->type = FL_VAL_INT;
        v->u.i = fl__unzigzag(fl__rd_varint(&c->r[H_AINT]));
        return c->r[H_AINT].err ? FL_ERR_STORE_CORRUPT : FL_OK;
    case TAG_DOUBLE: {
        const uint8_t *p = fl__rd_bytes(&c->r[H_ADBL], 8);
        if (!p)
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_DOUBLE;
        v->u.d = bits_dbl(load64le(p));
        return FL_OK;
    }
    case TAG_ARRAY: {
        uint64_t n = fl__rd_varint(&c->r[H_ACNT]);
        if (!count_ok(&c->r[H_ATYPE], n))
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_ARRAY;
        v->u.arr.n = n;
        if (n && c->a) {
            v->u.arr.items = fl_arena_calloc(c->a, n, sizeof(fl_value_t));
            if (!v->u.arr.items)
                return FL_ERR_NOMEM;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((rc = dec_value(c, c->a ? &v->u.arr.items[i] : NULL, depth + 1)) != FL_OK)
                return rc;
        return FL_OK;
    }
    case TAG_KVLIST: {
        uint64_t n = fl__rd_varint(&c->r[H_ACNT]);
        if (!count_ok(&c->r[H_ATYPE], n))
            return FL_ERR_STORE_CORRUPT;
        v->type = FL_VAL_KVLIST;
        v->u.kv.n = n;
        if (n && c->a) {
            v->u.kv.items = fl_arena_calloc(c->a, n, sizeof(fl_kv_t));
            if (!v->u.kv.items)
                return FL_ERR_NOMEM;
        }
        for (uint64_t i = 0; i < n; i++) {
            fl_kv_t *kv = c->a ? &v->u.kv.items[i] : NULL;
            fl_str_t key;
            if ((rc = get_str(c, H_AKEY, kv ? &kv->key : &key)) != FL_OK)
                return rc;
            if ((rc = dec_value(c, kv ? &kv->value : NULL, depth + 1)) != FL_OK)
                return rc;
        }
        return FL_OK;
    }
    default:
        return FL_ERR_STORE_CORRUPT;
    }
}

static int dec_attrs(hcur_t *c, fl_attrs_t *out)
{
    int rc;
    uint64_t n = fl__rd_varint(&c->r[H_ACNT]);
    if (c->r[H_ACNT].err || n > (uint64_t)(c->r[H_AKEY].end - c->r[H_AKEY].p))
        return FL_ERR_STORE_CORRUPT;
    if (out) {
        out->n = n;
        out->items = NULL;
        if (n) {
            out->items = fl_arena_calloc(c->a, n, sizeof(fl_kv_t));
            if (!out->items)
                return FL_ERR_NOMEM;
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        fl_kv_t *kv = out ? &out->items[i] : NULL;
        fl_str_t key;
        if ((rc = get_str(c, H_AKEY, kv ? &kv->key : &key)) != FL_OK)
            return rc;
        if ((rc = dec_value(c, kv ? &kv->value : NULL, 1)) != FL_OK)
            return rc;
    }
    return FL_OK;
}

static int dec_heavy_span(hcur_t *c, fl_span_t *sp, uint32_t *res_id, uint32_t *scope_id)
{
    int rc;
    fl_str_t dummy;
    fl__rd_t *r = c->r;
    int kind = (int)fl__unzigzag(fl__rd_varint(&r[H_KIND]));
    uint32_t flags = (uint32_t)fl__rd_varint(&r[H_FLAGS]);
    if ((rc = get_str(c, H_TSTATE, sp ? &sp->trace_state : &dummy)) != FL_OK)
        return rc;
    if ((rc = get_str(c, H_SMSG, sp ? &sp->status_message : &dummy)) != FL_OK)
        return rc;
    uint32_t res = (uint32_t)fl__rd_varint(&r[H_RES]);
    uint32_t scope = (uint32_t)fl__rd_varint(&r[H_SCOPE]);
    uint32_t d_attrs = (uint32_t)fl__rd_varint(&r[H_DROP]);
    uint32_t d_events = (uint32_t)fl__rd_varint(&r[H_DROP]);
    uint32_t d_links = (uint32_t)fl__rd_varint(&r[H_DROP]);
    if ((rc = dec_attrs(c, sp ? &sp->attrs : NULL)) != FL_OK)
        return rc;
    if (sp) {
        sp->kind = kind;
        sp->flags = flags;
        sp->dropped_attrs = d_attrs;
        sp->dropped_events = d_events;
        sp->dropped_links = d_links;
        *res_id = res;
        *scope_id = scope;
    }
    uint64_t ne = fl__rd_varint(&r[H_ECNT]);
    if (r[H_ECNT].err || ne > (uint64_t)(r[H_ENAME].end - r[H_ENAME].p))
        return FL_ERR_STORE_CORRUPT;
    if (sp) {
        sp->n_events = ne;
        sp->events = NULL;
        if (ne && !(sp->events = fl_arena_calloc(c->a, ne, sizeof(fl_event_t))))
            return FL_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < ne; i++) {
        fl_event_t *ev = sp ? &sp->events[i] : NULL;
        int64_t dt = fl__unzigzag(fl__rd_varint(&r[H_ETIME]));
        if ((rc = get_str(c, H_ENAME, ev ? &ev->name : &dummy)) != FL_OK)
            return rc;
        if ((rc = dec_attrs(c, ev ? &ev->attrs : NULL)) != FL_OK)
            return rc;
        uint32_t dropped = (uint32_t)fl__rd_varint(&r[H_DROP]);
        if (ev) {
            ev->time_ns = sp->start_ns + (uint64_t)dt;
            ev->dropped_attrs = dropped;
        }
    }
    uint64_t nl = fl__rd_varint(&r[H_LCNT]);
    if (r[H_LCNT].err || nl > (uint64_t)(r[H_LHDR].end - r[H_LHDR].p))
        return FL_ERR_STORE_CORRUPT;
    if (sp) {
        sp->n_links = nl;
        sp->links = NULL;
        if (nl && !(sp->links = fl_arena_calloc(c->a, nl, sizeof(fl_link_t))))
            return FL_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < nl; i++) {
        fl_link_t *ln = sp ? &sp->links[i] : NULL;
        uint64_t hdr = fl__rd_varint(&r[H_LHDR]);
        const uint8_t *tid = NULL;
        if (!(hdr & 1) && !(tid = fl__rd_bytes(&r[H_LID], 16)))
            return FL_ERR_STORE_CORRUPT;
        const uint8_t *sid = fl__rd_bytes(&r[H_LID], 8);
        if (!sid)
            return FL_ERR_STORE_CORRUPT;
        if ((rc = get_str(c, H_TSTATE, ln ? &ln->trace_state : &dummy)) != FL_OK)
            return rc;
        if ((rc = dec_attrs(c, ln ? &ln->attrs : NULL)) != FL_OK)
            return rc;
        uint32_t dropped = (uint32_t)fl__rd_varint(&r[H_DROP]);
        if (ln) {
            memcpy(ln->trace_id, tid ? tid : sp->trace_id, 16);
            memcpy(ln->span_id, sid, 8);
            ln->flags = (uint32_t)(hdr >> 1);
            ln->dropped_attrs = dropped;
        }
    }
    for (int i = 0; i < H_COUNT; i++)
        if (r[i].err)
            return FL_ERR_STORE_CORRUPT;
    return FL_OK;
}

int fl__dec_heavy(fl__dec_t *d, const void *blob, size_t len, uint32_t n, const uint32_t *rows,
                  size_t k, fl_arena_t *a, fl_span_t *spans, uint32_t *res_ids, uint32_t *scope_ids)
{
    fl__streams_t st;
    hcur_t c;
    int rc;
    for (size_t j = 0; j < k; j++)
        if (rows[j] >= n || (j > 0 && rows[j] <= rows[j - 1]))
            return FL_ERR_INVALID;
    if (k == 0)
        return FL_OK;
    if ((rc = fl__blob_unpack(d->dctx, blob, len, &d->heavy_raw, &st)) != FL_OK)
        return rc;
    if (st.n != H_COUNT)
        return FL_ERR_STORE_CORRUPT;
    memset(&c, 0, sizeof(c));
    c.d = d;
    for (int i = 0; i < H_COUNT; i++)
        fl__rd_init(&c.r[i], st.p[i], st.len[i]);

    /* String table: count, lengths; offsets computed here. */
    fl__rd_t *sl = &c.r[H_STRLEN];
    uint64_t n_str = fl__rd_varint(sl);
    if (!count_ok(sl, n_str))
        return FL_ERR_STORE_CORRUPT;
    if (n_str > d->str_cap) {
        size_t cap = n_str;
        uint32_t *o = realloc(d->str_off, cap * sizeof(uint32_t));
        if (o)
            d->str_off = o;
        uint32_t *l = realloc(d->str_len, cap * sizeof(uint32_t));
        if (l)
            d->str_len = l;
        char **m = realloc(d->str_mat, cap * sizeof(char *));
        if (m)
            d->str_mat = m;
        if (!o || !l || !m)
            return FL_ERR_NOMEM;
        d->str_cap = cap;
    }
    uint64_t off = 0;
    for (uint64_t i = 0; i < n_str; i++) {
        uint64_t l = fl__rd_varint(sl);
        d->str_off[i] = (uint32_t)off;
        d->str_len[i] = (uint32_t)l;
        off += l;
        if (off > st.len[H_STRDATA])
            return FL_ERR_STORE_CORRUPT;
    }
    if (sl->err)
        return FL_ERR_STORE_CORRUPT;
    if (n_str)
        memset(d->str_mat, 0, n_str * sizeof(char *));
    c.n_str = n_str;
    c.new_refs = st.version >= 2;
    c.strdata = st.p[H_STRDATA];

    size_t j = 0;
    for (uint32_t i = 0; i <= rows[k - 1]; i++) {
        if (i != rows[j]) {
            c.a = NULL;
            rc = dec_heavy_span(&c, NULL, NULL, NULL);
        } else {
            c.a = a;
            rc = dec_heavy_span(&c, &spans[j], &res_ids[j], &scope_ids[j]);
            j++;
        }
        if (rc != FL_OK)
            return rc;
    }
    return FL_OK;
}
