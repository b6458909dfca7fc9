/* SPDX-License-Identifier: Apache-2.0 */
/* The latency sketch: logarithmic buckets with ratio gamma = (1 + a) / (1 - a), a = 1 %, so
 * any value in bucket k, (gamma^(k-1), gamma^k], is within a of the bucket's representative
 * 2 gamma^k / (gamma + 1). Buckets are kept sparse and sorted; merge is bucket-wise sum. */
#include "analysis_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SK_VERSION 1
#define SK_MAX_KEY 2400 /* ln(2^64) / ln(gamma) = 2218 */

/* ln(gamma) = ln(1.01 / 0.99), spelled out so no thread has to initialise it. */
#define SK_LOG_GAMMA 0.020000666706669435

static double sk_log_gamma(void)
{
    return SK_LOG_GAMMA;
}

static uint16_t sk_key(uint64_t v)
{
    /* v >= 1 here; ceil(log_gamma(v)), so v = 1 maps to bucket 0. */
    double k = ceil(log((double)v) / sk_log_gamma());
    if (k < 0)
        k = 0;
    return (uint16_t)k;
}

static double sk_value(uint16_t k)
{
    double lg = sk_log_gamma();
    double g = exp(lg);
    return 2.0 * exp((double)k * lg) / (1.0 + g);
}

void fl__sketch_init(fl_sketch_t *s)
{
    memset(s, 0, sizeof(*s));
}

void fl__sketch_dispose(fl_sketch_t *s)
{
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

size_t fl__sketch_heap(const fl_sketch_t *s)
{
    return (size_t)s->cap * (sizeof(uint16_t) + sizeof(uint32_t));
}

static int sk_grow(fl_sketch_t *s, uint32_t need)
{
    if (need <= s->cap)
        return FL_OK;
    uint32_t cap = s->cap ? s->cap : 8;
    while (cap < need)
        cap *= 2;
    /* keys first (2 bytes each), then counts; cap is even so counts stay 4-byte aligned */
    uint8_t *mem = malloc((size_t)cap * 6);
    if (!mem)
        return FL_ERR_NOMEM;
    uint16_t *keys = (uint16_t *)mem;
    uint32_t *cnts = (uint32_t *)(mem + (size_t)cap * 2);
    if (s->n) {
        memcpy(keys, s->keys, (size_t)s->n * 2);
        memcpy(cnts, s->cnts, (size_t)s->n * 4);
    }
    free(s->keys);
    s->keys = keys;
    s->cnts = cnts;
    s->cap = cap;
    return FL_OK;
}

static uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static int sk_add_key(fl_sketch_t *s, uint16_t k, uint64_t c)
{
    uint32_t lo = 0, hi = s->n;
    /* Values usually land at or near the top bucket: check the last one first. */
    if (s->n && s->keys[s->n - 1] < k) {
        lo = s->n;
    } else {
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (s->keys[mid] < k)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < s->n && s->keys[lo] == k) {
            s->cnts[lo] = sat32((uint64_t)s->cnts[lo] + c);
            return FL_OK;
        }
    }
    if (sk_grow(s, s->n + 1))
        return FL_ERR_NOMEM;
    memmove(s->keys + lo + 1, s->keys + lo, (size_t)(s->n - lo) * 2);
    memmove(s->cnts + lo + 1, s->cnts + lo, (size_t)(s->n - lo) * 4);
    s->keys[lo] = k;
    s->cnts[lo] = sat32(c);
    s->n++;
    return FL_OK;
}

static void sk_note(fl_sketch_t *s, uint64_t v, uint64_t n)
{
    if (!s->count || v < s->min)
        s->min = v;
    if (!s->count || v > s->max)
        s->max = v;
    s->count += n;
    uint64_t add = v;
    if (n > 1)
        add = v && n > UINT64_MAX / v ? UINT64_MAX : v * n;
    s->sum = sat_add(s->sum, add);
}

fl_sketch_t *fl_sketch_new(void)
{
    fl_sketch_t *s = malloc(sizeof(*s));
    if (s)
        fl__sketch_init(s);
    return s;
}

void fl_sketch_free(fl_sketch_t *s)
{
    if (!s)
        return;
    fl__sketch_dispose(s);
    free(s);
}

void fl_sketch_clear(fl_sketch_t *s)
{
    s->count = s->zero = s->sum = s->min = s->max = 0;
    s->n = 0;
}

int fl_sketch_add_n(fl_sketch_t *s, uint64_t v, uint64_t n)
{
    if (!n)
        return FL_OK;
    /* Zero durations have no logarithm: they get a counter of their own. */
    if (v == 0)
        s->zero += n;
    else if (sk_add_key(s, sk_key(v), n))
        return FL_ERR_NOMEM;
    sk_note(s, v, n);
    return FL_OK;
}

int fl_sketch_add(fl_sketch_t *s, uint64_t v)
{
    return fl_sketch_add_n(s, v, 1);
}

/* Count the union of keys first: when src adds no new key (the common case when merging
 * buckets of one endpoint), counts are added in place without reallocating. */
int fl_sketch_merge(fl_sketch_t *dst, const fl_sketch_t *src)
{
    if (!src->count)
        return FL_OK;
    /* Linear merge of the two sorted key lists into fresh storage. */
    uint32_t i = 0, j = 0, n = 0;
    while (i < dst->n || j < src->n) {
        if (j >= src->n || (i < dst->n && dst->keys[i] < src->keys[j]))
            i++;
        else if (i >= dst->n || src->keys[j] < dst->keys[i])
            j++;
        else
            i++, j++;
        n++;
    }
    if (n > dst->n) {
        fl_sketch_t t;
        fl__sketch_init(&t);
        if (sk_grow(&t, n))
            return FL_ERR_NOMEM;
        i = j = 0;
        while (i < dst->n || j < src->n) {
            if (j >= src->n || (i < dst->n && dst->keys[i] < src->keys[j])) {
                t.keys[t.n] = dst->keys[i];
                t.cnts[t.n++] = dst->cnts[i++];
            } else if (i >= dst->n || src->keys[j] < dst->keys[i]) {
                t.keys[t.n] = src->keys[j];
                t.cnts[t.n++] = src->cnts[j++];
            } else {
                t.keys[t.n] = dst->keys[i];
                t.cnts[t.n++] = sat32((uint64_t)dst->cnts[i++] + src->cnts[j++]);
            }
        }
        free(dst->keys);
        dst->keys = t.keys;
        dst->cnts = t.cnts;
        dst->cap = t.cap;
        dst->n = t.n;
    } else {
        /* Every source key already exists in dst. */
        for (i = 0, j = 0; j < src->n; i++)
            if (dst->keys[i] == src->keys[j])
                dst->cnts[i] = sat32((uint64_t)dst->cnts[i] + src->cnts[j++]);
    }
    if (!dst->count || src->min < dst->min)
        dst->min = src->min;
    if (!dst->count || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->zero += src->zero;
    dst->sum = sat_add(dst->sum, src->sum);
    return FL_OK;
}

uint64_t fl_sketch_count(const fl_sketch_t *s)
{
    return s->count;
}

uint64_t fl_sketch_sum_ns(const fl_sketch_t *s)
{
    return s->sum;
}

uint64_t fl_sketch_min_ns(const fl_sketch_t *s)
{
    return s->count ? s->min : 0;
}

uint64_t fl_sketch_max_ns(const fl_sketch_t *s)
{
    return s->count ? s->max : 0;
}

double fl_sketch_mean_ns(const fl_sketch_t *s)
{
    return s->count ? (double)s->sum / (double)s->count : 0.0;
}

/* Rank floor(q (n - 1)), the same definition the tests use for the exact answer; the
 * estimate is clamped to the exact min and max, which only reduces the error. */
double fl_sketch_quantile_ns(const fl_sketch_t *s, double q)
{
    if (!s->count)
        return 0;
    if (q <= 0)
        return (double)s->min;
    if (q >= 1)
        return (double)s->max;
    uint64_t rank = (uint64_t)floor(q * (double)(s->count - 1));
    if (rank < s->zero)
        return 0;
    uint64_t cum = s->zero;
    for (uint32_t i = 0; i < s->n; i++) {
        cum += s->cnts[i];
        if (cum > rank) {
            double v = sk_value(s->keys[i]);
            if (v < (double)s->min)
                v = (double)s->min;
            if (v > (double)s->max)
                v = (double)s->max;
            return v;
        }
    }
    return (double)s->max; /* only reachable when bin counts saturated */
}

double fl__sketch_var(const fl_sketch_t *s)
{
    if (s->count < 2)
        return 0;
    double mean = fl_sketch_mean_ns(s), acc = (double)s->zero * mean * mean;
    for (uint32_t i = 0; i < s->n; i++) {
        double d = sk_value(s->keys[i]) - mean;
        acc += (double)s->cnts[i] * d * d;
    }
    return acc / (double)(s->count - 1);
}

uint64_t fl_sketch_count_above(const fl_sketch_t *s, uint64_t v)
{
    if (v == 0)
        return s->count;
    uint16_t k = sk_key(v);
    uint64_t c = 0;
    for (uint32_t i = s->n; i-- > 0 && s->keys[i] >= k;)
        c += s->cnts[i];
    return c;
}

size_t fl_sketch_bins(const fl_sketch_t *s)
{
    return s->n;
}

size_t fl_sketch_bytes(const fl_sketch_t *s)
{
    return sizeof(*s) + fl__sketch_heap(s);
}

/* Body: n, zero, sum, min, max, then n x (key delta, count), all varints. */
int fl__sketch_encode_body(const fl_sketch_t *s, fl_buf_t *out)
{
    int rc = fl__put_varint(out, s->n);
    rc = rc ? rc : fl__put_varint(out, s->zero);
    rc = rc ? rc : fl__put_varint(out, s->sum);
    rc = rc ? rc : fl__put_varint(out, s->count ? s->min : 0);
    rc = rc ? rc : fl__put_varint(out, s->count ? s->max : 0);
    uint16_t prev = 0;
    for (uint32_t i = 0; i < s->n && !rc; i++) {
        rc = fl__put_varint(out, (uint64_t)(s->keys[i] - prev));
        rc = rc ? rc : fl__put_varint(out, s->cnts[i]);
        prev = s->keys[i];
    }
    return rc;
}

int fl__sketch_decode_merge(fl_sketch_t *s, fl__rd_t *r)
{
    uint64_t n = fl__get_varint(r);
    uint64_t zero = fl__get_varint(r);
    uint64_t sum = fl__get_varint(r);
    uint64_t mn = fl__get_varint(r);
    uint64_t mx = fl__get_varint(r);
    if (r->err || n > SK_MAX_KEY + 1)
        return FL_ERR_DECODE;
    fl_sketch_t t;
    fl__sketch_init(&t);
    if (n && sk_grow(&t, (uint32_t)n))
        return FL_ERR_NOMEM;
    uint64_t key = 0, total = zero;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t d = fl__get_varint(r), c = fl__get_varint(r);
        key += d;
        if (r->err || (i && d == 0) || key > SK_MAX_KEY || c == 0 || c > UINT32_MAX) {
            fl__sketch_dispose(&t);
            return FL_ERR_DECODE;
        }
        t.keys[i] = (uint16_t)key;
        t.cnts[i] = (uint32_t)c;
        total += c;
    }
    t.n = (uint32_t)n;
    if (total && mn > mx) {
        fl__sketch_dispose(&t);
        return FL_ERR_DECODE;
    }
    t.count = total;
    t.zero = zero;
    t.sum = sum;
    t.min = mn;
    t.max = mx;
    int rc = fl_sketch_merge(s, &t);
    fl__sketch_dispose(&t);
    return rc;
}

int fl_sketch_encode(const fl_sketch_t *s, fl_buf_t *out)
{
    int rc = fl__put_u8(out, 'S');
    rc = rc ? rc : fl__put_u8(out, SK_VERSION);
    return rc ? rc : fl__sketch_encode_body(s, out);
}

int fl_sketch_decode(fl_sketch_t *s, const void *data, size_t len, size_t *used)
{
    fl__rd_t r = {data, (const uint8_t *)data + len, 0};
    fl_sketch_clear(s);
    uint8_t magic = fl__get_u8(&r), ver = fl__get_u8(&r);
    if (r.err || magic != 'S')
        return FL_ERR_DECODE;
    if (ver != SK_VERSION)
        return ver > SK_VERSION ? FL_ERR_UNSUPPORTED : FL_ERR_DECODE;
    int rc = fl__sketch_decode_merge(s, &r);
    if (rc) {
        fl_sketch_clear(s);
        return rc;
    }
    if (used)
        *used = (size_t)(r.p - (const uint8_t *)data);
    return FL_OK;
}
