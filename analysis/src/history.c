/* SPDX-License-Identifier: Apache-2.0 */
/* Closed rollups kept in memory in three tiers (the bucket width for 1 h, 5 min for 24 h,
 * 1 h for 7 d), each a ring of encoded bucket blobs, under one byte budget: the oldest
 * blobs go first. Range scans pick the finest tier that holds each part of the range. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

#define NS_MIN 60000000000ull
#define NS_HOUR 3600000000000ull

static void slot_clear(fl__history_t *h, fl__tier_t *tr, fl__hslot_t *s)
{
    if (s->blob) {
        h->bytes -= s->len;
        free(s->blob);
        if (s->b > tr->dropped_max)
            tr->dropped_max = s->b;
    }
    s->blob = NULL;
    s->len = 0;
    s->b = INT64_MIN;
}

int fl__history_init(fl__history_t *h, uint64_t bucket_ns, size_t max_bytes)
{
    memset(h, 0, sizeof(*h));
    h->max_bytes = max_bytes;
    /* widths: bucket, ~5 min, ~1 h (each a whole multiple of the one below) */
    uint64_t w1 = (5 * NS_MIN / bucket_ns) * bucket_ns;
    if (w1 < bucket_ns)
        w1 = bucket_ns;
    uint64_t w2 = (NS_HOUR / w1) * w1;
    if (w2 < w1)
        w2 = w1;
    uint64_t width[FL__TIERS] = {bucket_ns, w1, w2};
    uint64_t keep[FL__TIERS] = {NS_HOUR, 24 * NS_HOUR, 7 * 24 * NS_HOUR};
    for (int t = 0; t < FL__TIERS; t++) {
        fl__tier_t *tr = &h->tier[t];
        tr->width_ns = width[t];
        tr->ratio = t ? (uint32_t)(width[t] / width[t - 1]) : 1;
        /* keep one coarser bucket more than the retention, so roll-ups find their inputs */
        uint64_t extra = t + 1 < FL__TIERS ? width[t + 1] / width[t] : 0;
        tr->nslots = (uint32_t)(keep[t] / width[t] + extra + 1);
        tr->slots = calloc(tr->nslots, sizeof(*tr->slots));
        if (!tr->slots) {
            fl__history_dispose(h);
            return FL_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < tr->nslots; i++)
            tr->slots[i].b = INT64_MIN;
        tr->dropped_max = INT64_MIN;
    }
    return FL_OK;
}

void fl__history_dispose(fl__history_t *h)
{
    for (int t = 0; t < FL__TIERS; t++) {
        if (h->open[t]) {
            fl__accmap_dispose(h->open[t]);
            free(h->open[t]);
            h->open[t] = NULL;
        }
    }
    for (int t = 0; t < FL__TIERS; t++) {
        if (!h->tier[t].slots)
            continue;
        for (uint32_t i = 0; i < h->tier[t].nslots; i++)
            free(h->tier[t].slots[i].blob);
        free(h->tier[t].slots);
        h->tier[t].slots = NULL;
    }
}

const fl__hslot_t *fl__history_find(const fl__history_t *h, int t, int64_t b)
{
    const fl__tier_t *tr = &h->tier[t];
    if (b < 0)
        return NULL;
    const fl__hslot_t *s = &tr->slots[(uint64_t)b % tr->nslots];
    return s->b == b && s->blob ? s : NULL;
}

static void enforce_budget(fl__history_t *h)
{
    /* Drop the oldest blob of the coarsest tier holding any, until under budget. The tier
     * 0 bucket just stored is never dropped (it would be the only data). */
    while (h->bytes > h->max_bytes) {
        int done = 0;
        for (int t = FL__TIERS - 1; t >= 0 && !done; t--) {
            fl__tier_t *tr = &h->tier[t];
            fl__hslot_t *old = NULL;
            uint32_t held = 0;
            for (uint32_t i = 0; i < tr->nslots; i++) {
                if (!tr->slots[i].blob)
                    continue;
                held++;
                if (!old || tr->slots[i].b < old->b)
                    old = &tr->slots[i];
            }
            if (old && (t > 0 || held > 1)) {
                slot_clear(h, tr, old);
                done = 1;
            }
        }
        if (!done)
            break;
    }
}

/* Store a blob in its ring slot (taking ownership), replacing whatever older bucket the
 * ring wrapped onto. */
static int tier_put(fl__history_t *h, int t, int64_t b, uint8_t *blob, uint32_t len)
{
    fl__tier_t *tr = &h->tier[t];
    fl__hslot_t *s = &tr->slots[(uint64_t)b % tr->nslots];
    if (s->blob && s->b > b) { /* older than what the ring holds: nothing to keep */
        free(blob);
        return FL_OK;
    }
    slot_clear(h, tr, s);
    s->b = b;
    s->blob = blob;
    s->len = len;
    h->bytes += len;
    return FL_OK;
}

/* Feed a closed tier t-1 bucket (index b in tier t-1 units) into the open tier t bucket;
 * when b starts a new tier t bucket, the open one is complete: encode and store it, and
 * feed it on to tier t+1. */
static int feed(fl__history_t *h, int t, int64_t b, const uint8_t *blob, uint32_t len)
{
    if (t >= FL__TIERS)
        return FL_OK;
    int64_t tb = b / (int64_t)h->tier[t].ratio;
    int rc = FL_OK;
    if (!h->open[t]) {
        h->open[t] = calloc(1, sizeof(*h->open[t]));
        if (!h->open[t])
            return FL_ERR_NOMEM;
        h->open_b[t] = tb;
    }
    if (tb != h->open_b[t]) {
        fl__accmap_t *m = h->open[t];
        if (m->n) {
            fl_buf_t out;
            fl_buf_init(&out, 0);
            fl__accmap_sort(m);
            rc = fl__blob_encode(m->accs, m->n, h->open_spans[t], &out);
            if (!rc) {
                size_t l;
                uint8_t *data = fl_buf_take(&out, &l);
                rc = tier_put(h, t, h->open_b[t], data, (uint32_t)l);
                const fl__hslot_t *s = fl__history_find(h, t, h->open_b[t]);
                if (!rc && s)
                    rc = feed(h, t + 1, h->open_b[t], s->blob, s->len);
            }
            fl_buf_dispose(&out);
        }
        fl__accmap_dispose(m);
        h->open_spans[t] = 0;
        h->open_b[t] = tb;
    }
    if (tb < h->open_b[t])
        return rc; /* older than the bucket being built: the finer tier keeps it */
    uint64_t spans = 0;
    int r2 = fl__blob_foreach(blob, len, fl__accmap_add, h->open[t], &spans);
    h->open_spans[t] += spans;
    return rc ? rc : r2;
}

/* A newly closed bucket: tier 0 keeps it, the tier above folds it in. */
int fl__history_put(fl__history_t *h, int64_t b, uint8_t *blob, uint32_t len)
{
    int rc = tier_put(h, 0, b, blob, len);
    const fl__hslot_t *s = fl__history_find(h, 0, b);
    if (!rc && s)
        rc = feed(h, 1, b, s->blob, s->len);
    enforce_budget(h);
    return rc;
}

int fl__history_merge_into(fl__history_t *h, int t, int64_t b, const uint8_t *blob, uint32_t len)
{
    const fl__hslot_t *s = fl__history_find(h, t, b);
    const uint8_t *blobs[2] = {blob, NULL};
    uint32_t lens[2] = {len, 0};
    size_t n = 1;
    if (s) {
        blobs[1] = s->blob;
        lens[1] = s->len;
        n = 2;
    }
    fl_buf_t out;
    fl_buf_init(&out, 0);
    int rc = fl__blob_merge(blobs, lens, n, &out);
    if (!rc) {
        size_t l;
        uint8_t *data = fl_buf_take(&out, &l);
        rc = tier_put(h, t, b, data, (uint32_t)l);
    }
    fl_buf_dispose(&out);
    enforce_budget(h);
    return rc;
}

static int64_t tier_oldest(const fl__tier_t *tr)
{
    int64_t o = INT64_MAX;
    for (uint32_t i = 0; i < tr->nslots; i++)
        if (tr->slots[i].blob && tr->slots[i].b < o)
            o = tr->slots[i].b;
    return o;
}

uint64_t fl__history_oldest_ns(const fl__history_t *h)
{
    uint64_t best = 0;
    for (int t = 0; t < FL__TIERS; t++) {
        int64_t o = tier_oldest(&h->tier[t]);
        if (o == INT64_MAX)
            continue;
        uint64_t ns = (uint64_t)o * h->tier[t].width_ns;
        if (!best || ns < best)
            best = ns;
    }
    return best;
}

int fl__history_scan(const fl__history_t *h, uint64_t start, uint64_t end, fl__blob_fn fn,
                     void *ctx, uint64_t *cov_start, uint64_t *cov_end)
{
    if (!end)
        end = UINT64_MAX;
    /* Walk from the finest tier down. Each tier answers from its oldest bucket up to where
     * the finer tiers took over (upper). When this tier has already let go of part of the
     * coarser bucket that straddles its oldest one, and the coarser tier holds that bucket
     * whole, start at that bucket's end instead: nothing is lost or counted twice. */
    uint64_t upper = UINT64_MAX, cs = UINT64_MAX, ce = 0;
    int rc = FL_OK;
    for (int t = 0; t < FL__TIERS && !rc; t++) {
        const fl__tier_t *tr = &h->tier[t];
        int64_t oldest = tier_oldest(tr);
        if (oldest == INT64_MAX)
            continue;
        uint64_t floor_ns = (uint64_t)oldest * tr->width_ns;
        if (t + 1 < FL__TIERS) {
            uint64_t w = h->tier[t + 1].width_ns, cb = floor_ns / w;
            int64_t first_in_cb = (int64_t)(cb * w / tr->width_ns);
            if (floor_ns % w && tr->dropped_max >= first_in_cb &&
                fl__history_find(h, t + 1, (int64_t)cb) && (cb + 1) * w <= upper)
                floor_ns = (cb + 1) * w;
        }
        for (uint32_t i = 0; i < tr->nslots && !rc; i++) {
            const fl__hslot_t *s = &tr->slots[i];
            if (!s->blob)
                continue;
            uint64_t t0 = (uint64_t)s->b * tr->width_ns, t1 = t0 + tr->width_ns;
            if (t0 < floor_ns || t1 > upper || t1 <= start || t0 >= end)
                continue;
            rc = fn(ctx, s->blob, s->len, t0, t1);
            if (t0 < cs)
                cs = t0;
            if (t1 > ce)
                ce = t1;
        }
        if (floor_ns < upper)
            upper = floor_ns;
    }
    if (cov_start)
        *cov_start = cs == UINT64_MAX ? 0 : cs;
    if (cov_end)
        *cov_end = ce;
    return rc;
}

int fl__history_import(fl__history_t *h, int64_t b, const uint8_t *blob, uint32_t len)
{
    /* The finest tier always takes it. A coarser bucket already complete takes it directly;
     * the one being built takes it into its open map, so completing it later keeps it. */
    int rc = fl__history_merge_into(h, 0, b, blob, len);
    int64_t tb = b;
    for (int t = 1; t < FL__TIERS && !rc; t++) {
        tb /= (int64_t)h->tier[t].ratio;
        if (h->open[t] && tb == h->open_b[t]) {
            uint64_t spans = 0;
            rc = fl__blob_foreach(blob, len, fl__accmap_add, h->open[t], &spans);
            h->open_spans[t] += spans;
            break; /* the tiers above get it when this one completes */
        }
        if (h->open[t] && tb > h->open_b[t])
            break; /* newer than anything built: live roll-up will see it in tier 0 */
        rc = fl__history_merge_into(h, t, tb, blob, len);
    }
    return rc;
}
