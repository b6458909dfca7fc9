/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers for analysis: varint encoding and a bounded reader for the versioned blobs,
 * the EWMA update, and the exact tail probabilities the detectors test with. */
#include "analysis_int.h"

#include <math.h>
#include <string.h>

int fl__put_u8(fl_buf_t *b, uint8_t v)
{
    return fl_buf_append(b, &v, 1);
}

int fl__put_varint(fl_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    return fl_buf_append(b, tmp, n);
}

int fl__put_double(fl_buf_t *b, double v)
{
    uint64_t u;
    uint8_t tmp[8];
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++)
        tmp[i] = (uint8_t)(u >> (8 * i)); /* little-endian regardless of the host */
    return fl_buf_append(b, tmp, 8);
}

int fl__put_bytes(fl_buf_t *b, const void *p, size_t n)
{
    return fl_buf_append(b, p, n);
}

int fl__put_str(fl_buf_t *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    int rc = fl__put_varint(b, n);
    return rc ? rc : fl_buf_append(b, s ? s : "", n);
}

uint8_t fl__get_u8(fl__rd_t *r)
{
    if (r->err || r->p >= r->end) {
        r->err = 1;
        return 0;
    }
    return *r->p++;
}

uint64_t fl__get_varint(fl__rd_t *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->err || r->p >= r->end) {
            r->err = 1;
            return 0;
        }
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->err = 1;
    return 0;
}

double fl__get_double(fl__rd_t *r)
{
    uint8_t tmp[8];
    fl__get_bytes(r, tmp, 8);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)tmp[i] << (8 * i);
    double d;
    memcpy(&d, &u, 8);
    return r->err ? 0 : d;
}

void fl__get_bytes(fl__rd_t *r, void *out, size_t n)
{
    if (r->err || (size_t)(r->end - r->p) < n) {
        r->err = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
}

const char *fl__get_str(fl__rd_t *r, size_t *len)
{
    uint64_t n = fl__get_varint(r);
    if (r->err || (uint64_t)(r->end - r->p) < n) {
        r->err = 1;
        *len = 0;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p += n;
    *len = (size_t)n;
    return s;
}

/* ---------------------------------------------------------------- EWMA */

double fl_ewma_alpha(uint64_t bucket_ns, uint64_t window_ns)
{
    if (!window_ns || !bucket_ns)
        return 1.0;
    return 1.0 - exp(-(double)bucket_ns / (double)window_ns);
}

void fl_ewma_update(fl_ewma_t *e, double x, double alpha)
{
    if (e->n == 0) {
        e->mean = x;
        e->var = 0;
        e->n = 1;
        return;
    }
    /* Running mean/variance until 1/alpha values, EWMA after: a young baseline is not
     * dragged towards its zero start. */
    double w = 1.0 / (double)(e->n + 1);
    if (w < alpha)
        w = alpha;
    double d = x - e->mean;
    e->mean += w * d;
    e->var = (1.0 - w) * (e->var + w * d * d);
    e->n++;
}

double fl_ewma_sd(const fl_ewma_t *e)
{
    return e->var > 0 ? sqrt(e->var) : 0.0;
}

/* ---------------------------------------------------------------- tail probabilities */

/* The sums below start at the term nearest the mean that is still in the tail and walk
 * outwards; the terms fall at least geometrically there, so they stop after a few dozen
 * steps in practice. Exact enough for p-values down to 1e-300. */

double fl__binom_sf(uint64_t k, uint64_t n, double p)
{
    if (k == 0)
        return 1.0;
    if (k > n)
        return 0.0;
    if (p <= 0)
        return 0.0;
    if (p >= 1)
        return 1.0;
    if ((double)k <= (double)n * p)
        return 1.0; /* not in the upper tail: callers only look for small values */
    double lp = log(p), lq = log1p(-p);
    double lt = lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1) +
                (double)k * lp + (double)(n - k) * lq;
    double term = exp(lt), sum = 0;
    for (uint64_t i = k; i <= n && i - k < 200000; i++) {
        sum += term;
        if (term < sum * 1e-15)
            break;
        term *= ((double)(n - i) / (double)(i + 1)) * (p / (1 - p));
    }
    return sum > 1 ? 1 : sum;
}

double fl__poisson_cdf(uint64_t k, double lambda)
{
    if (lambda <= 0)
        return 1.0;
    if ((double)k >= lambda)
        return 1.0; /* not in the lower tail */
    double term = exp((double)k * log(lambda) - lambda - lgamma((double)k + 1)), sum = 0;
    for (uint64_t i = k + 1; i-- > 0;) {
        sum += term;
        if (term < sum * 1e-15)
            break;
        term *= (double)i / lambda;
    }
    return sum > 1 ? 1 : sum;
}

double fl__poisson_sf(uint64_t k, double lambda)
{
    if (k == 0)
        return 1.0;
    if (lambda <= 0)
        return 0.0;
    if ((double)k <= lambda)
        return 1.0;
    double term = exp((double)k * log(lambda) - lambda - lgamma((double)k + 1)), sum = 0;
    for (uint64_t i = k; i - k < 200000; i++) {
        sum += term;
        if (term < sum * 1e-15)
            break;
        term *= lambda / (double)(i + 1);
    }
    return sum > 1 ? 1 : sum;
}
