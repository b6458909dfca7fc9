/* SPDX-License-Identifier: Apache-2.0 */
/* Per-trace helpers for callers that hold whole traces (root-cause ranking reads a sample of
 * them from the store): self time with the same union-of-children rule the rollups use. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct ent {
    uint64_t id;
    uint32_t idx;
} ent_t;

static int ent_cmp(const void *x, const void *y)
{
    const ent_t *a = x, *b = y;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

typedef struct iv {
    uint32_t parent;
    uint64_t s, e;
} iv_t;

static int iv_cmp(const void *x, const void *y)
{
    const iv_t *a = x, *b = y;
    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    return a->s < b->s ? -1 : a->s > b->s;
}

int fl_analysis_trace_self_time(const fl_span_t *spans, size_t n, uint64_t *self_ns)
{
    if ((n && (!spans || !self_ns)) || n > UINT32_MAX)
        return FL_ERR_INVALID;
    ent_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    iv_t *iv = malloc((n ? n : 1) * sizeof(*iv));
    if (!ids || !iv) {
        free(ids);
        free(iv);
        return FL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(&ids[i].id, spans[i].span_id, 8);
        ids[i].idx = (uint32_t)i;
        uint64_t st = spans[i].start_ns, en = spans[i].end_ns;
        self_ns[i] = en > st ? en - st : 0;
    }
    fl_sort(ids, n, sizeof(*ids), ent_cmp);
    /* Each child's interval, clipped to its parent, keyed by the parent's index. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t pid;
        memcpy(&pid, spans[i].parent_span_id, 8);
        if (!pid)
            continue;
        ent_t key = {pid, 0};
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (ent_cmp(&ids[mid], &key) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n || ids[lo].id != pid || ids[lo].idx == i)
            continue;
        const fl_span_t *p = &spans[ids[lo].idx];
        uint64_t s = spans[i].start_ns, e = spans[i].end_ns;
        if (s < p->start_ns)
            s = p->start_ns;
        if (e > p->end_ns)
            e = p->end_ns;
        if (e > s)
            iv[m++] = (iv_t){ids[lo].idx, s, e};
    }
    fl_sort(iv, m, sizeof(*iv), iv_cmp);
    for (size_t i = 0; i < m;) {
        uint32_t p = iv[i].parent;
        uint64_t busy = 0, cs = iv[i].s, ce = iv[i].e;
        for (i++; i < m && iv[i].parent == p; i++) {
            if (iv[i].s > ce) {
                busy += ce - cs;
                cs = iv[i].s;
                ce = iv[i].e;
            } else if (iv[i].e > ce) {
                ce = iv[i].e;
            }
        }
        busy += ce - cs;
        self_ns[p] = self_ns[p] > busy ? self_ns[p] - busy : 0;
    }
    free(ids);
    free(iv);
    return FL_OK;
}
