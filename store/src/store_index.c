/* SPDX-License-Identifier: Apache-2.0 */
/* In-memory indexes of the store: the trace-id filter (per-block trace-id range and bloom
 * filter, probed by readers) and the writer's ingest dedup set of recent span keys. */
#include "store_int.h"

#include <stdlib.h>
#include <sys/mman.h>

/* ---------------------------------------------------------------- trace-id filter index */

int fl__tix_init(fl__tix_t *t)
{
    memset(t, 0, sizeof(*t));
    return pthread_rwlock_init(&t->lock, NULL) == 0 ? FL_OK : FL_ERR_NOMEM;
}

void fl__tix_dispose(fl__tix_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->ents[i].bloom);
    free(t->ents);
    pthread_rwlock_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

int fl__tix_add(fl__tix_t *t, int64_t block_id, const uint8_t lo[16], const uint8_t hi[16],
                const uint8_t *bloom, size_t nbytes, uint64_t born)
{
    uint8_t *copy = malloc(nbytes ? nbytes : 1);
    if (!copy)
        return FL_ERR_NOMEM;
    memcpy(copy, bloom, nbytes);
    int rc = FL_OK;
    pthread_rwlock_wrlock(&t->lock);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        fl__tix_ent_t *ne = realloc(t->ents, cap * sizeof(*ne));
        if (!ne) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        t->ents = ne;
        t->cap = cap;
    }
    fl__tix_ent_t *e = &t->ents[t->n++];
    e->block_id = block_id;
    e->lo = fl__load64be(lo);
    e->hi = fl__load64be(hi);
    e->born = born;
    e->died = UINT64_MAX;
    e->bloom = copy;
    e->nbytes = (uint32_t)nbytes;
    t->bytes += nbytes + sizeof(*e);
    t->live++;
    copy = NULL;
out:
    pthread_rwlock_unlock(&t->lock);
    free(copy);
    return rc;
}

size_t fl__tix_count(fl__tix_t *t)
{
    pthread_rwlock_rdlock(&t->lock);
    size_t n = t->n;
    pthread_rwlock_unlock(&t->lock);
    return n;
}

void fl__tix_truncate(fl__tix_t *t, size_t n)
{
    pthread_rwlock_wrlock(&t->lock);
    while (t->n > n) {
        fl__tix_ent_t *e = &t->ents[--t->n];
        t->bytes -= e->nbytes + sizeof(*e);
        t->live -= e->died == UINT64_MAX;
        free(e->bloom);
    }
    pthread_rwlock_unlock(&t->lock);
}

void fl__tix_retire(fl__tix_t *t, int64_t first, int64_t last, uint64_t epoch)
{
    pthread_rwlock_wrlock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        fl__tix_ent_t *e = &t->ents[i];
        if (e->block_id >= first && e->block_id <= last && e->born < epoch &&
            e->died == UINT64_MAX) {
            e->died = epoch;
            t->live--;
        }
    }
    pthread_rwlock_unlock(&t->lock);
}

void fl__tix_gc(fl__tix_t *t, uint64_t min_epoch)
{
    pthread_rwlock_wrlock(&t->lock);
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        fl__tix_ent_t *e = &t->ents[i];
        if (e->died <= min_epoch) {
            t->bytes -= e->nbytes + sizeof(*e);
            free(e->bloom);
            continue;
        }
        t->ents[w++] = *e;
    }
    t->n = w;
    pthread_rwlock_unlock(&t->lock);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int fl__tix_probe(fl__tix_t *t, const uint8_t trace[16], uint64_t epoch, int64_t **ids, size_t *n)
{
    uint64_t k = fl__load64be(trace);
    fl__bloom_key_t bk;
    int64_t *out = NULL;
    size_t cnt = 0, cap = 0;
    int rc = FL_OK;

    fl__bloom_key_init(&bk, fl__trace_hash(trace));
    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        const fl__tix_ent_t *e = &t->ents[i];
        if (i + 4 < t->n)
            __builtin_prefetch(t->ents[i + 4].bloom);
        if (epoch < e->born || epoch >= e->died || k < e->lo || k > e->hi ||
            !fl__bloom_test_key(e->bloom, e->nbytes, &bk))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *no = realloc(out, cap * sizeof(*no));
            if (!no) {
                rc = FL_ERR_NOMEM;
                break;
            }
            out = no;
        }
        out[cnt++] = e->block_id;
    }
    pthread_rwlock_unlock(&t->lock);
    if (rc != FL_OK) {
        free(out);
        out = NULL;
        cnt = 0;
    }
    if (cnt > 1) { /* merged blocks sit out of order; keep reads in block (= age) order */
        fl_sort(out, cnt, sizeof(*out), cmp_i64);
        size_t m = 1;
        for (size_t i = 1; i < cnt; i++)
            if (out[i] != out[m - 1])
                out[m++] = out[i];
        cnt = m;
    }
    *ids = out;
    *n = cnt;
    return rc;
}

static int cmp_hit(const void *a, const void *b)
{
    const fl__tix_hit_t *x = a, *y = b;
    if (x->block_id != y->block_id)
        return x->block_id < y->block_id ? -1 : 1;
    return x->trace < y->trace ? -1 : x->trace > y->trace;
}

int fl__tix_probe_many(fl__tix_t *t, const uint8_t (*traces)[16], size_t n_traces, uint64_t epoch,
                       fl__tix_hit_t **hits, size_t *n_hits)
{
    uint64_t *k = malloc(n_traces * sizeof(uint64_t) + 1);
    fl__bloom_key_t *bk = malloc(n_traces * sizeof(*bk) + 1);
    fl__tix_hit_t *out = NULL;
    size_t cnt = 0, cap = 0;
    int rc = FL_OK;
    *hits = NULL;
    *n_hits = 0;
    if (!k || !bk) {
        free(k);
        free(bk);
        return FL_ERR_NOMEM;
    }
    for (size_t j = 0; j < n_traces; j++) {
        k[j] = fl__load64be(traces[j]);
        fl__bloom_key_init(&bk[j], fl__trace_hash(traces[j]));
    }
    /* One pass over the filters for all traces: each filter is loaded once. */
    pthread_rwlock_rdlock(&t->lock);
    for (size_t i = 0; i < t->n && rc == FL_OK; i++) {
        const fl__tix_ent_t *e = &t->ents[i];
        if (epoch < e->born || epoch >= e->died)
            continue;
        for (size_t j = 0; j < n_traces; j++) {
            if (k[j] < e->lo || k[j] > e->hi || !fl__bloom_test_key(e->bloom, e->nbytes, &bk[j]))
                continue;
            if (cnt == cap) {
                cap = cap ? cap * 2 : 64;
                fl__tix_hit_t *no = realloc(out, cap * sizeof(*no));
                if (!no) {
                    rc = FL_ERR_NOMEM;
                    break;
                }
                out = no;
            }
            out[cnt].block_id = e->block_id;
            out[cnt++].trace = (uint32_t)j;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    free(k);
    free(bk);
    if (rc != FL_OK) {
        free(out);
        return rc;
    }
    if (cnt > 1) {
        fl_sort(out, cnt, sizeof(*out), cmp_hit);
        size_t m = 1;
        for (size_t i = 1; i < cnt; i++)
            if (out[i].block_id != out[m - 1].block_id || out[i].trace != out[m - 1].trace)
                out[m++] = out[i];
        cnt = m;
    }
    *hits = out;
    *n_hits = cnt;
    return FL_OK;
}

/* ---------------------------------------------------------------- ingest dedup set
 * Slots hold a 61-bit fingerprint of the key plus a 3-bit generation tag; 0 is empty.
 * Linear probing. Keys are inserted into the current generation of gen_size keys; the 6
 * generations before it are kept whole, so the last 6 * gen_size >= window keys are always
 * remembered. The generation before those (whose tag the next generation reuses) is swept
 * out while the current one fills: each insert advances a cursor over a few slots,
 * deleting that generation's keys (backward-shift deletion keeps probe chains intact), so
 * the pass ends as the generation fills. Sweeping the whole table at once (16 MiB for a
 * 1M-key window) had held one commit's acknowledgements ~16 ms about once a second at
 * 365k spans/s, a visible part of the p99 export latency. */

#define DD_TAGS 8
#define DD_TAG_MASK ((uint64_t)DD_TAGS - 1)

static inline uint64_t dd_fp(uint64_t key)
{
    uint64_t fp = key & ~DD_TAG_MASK;
    return fp ? fp : DD_TAGS;
}

static inline size_t dd_home(const fl__dedup_t *d, uint64_t fp)
{
    return (size_t)(((unsigned __int128)fl__mix64(fp) * d->cap) >> 64);
}

int fl__dedup_init(fl__dedup_t *d, size_t window)
{
    memset(d, 0, sizeof(*d));
    if (window < DD_TAGS - 2)
        window = DD_TAGS - 2;
    d->gen_size = (window + DD_TAGS - 3) / (DD_TAGS - 2);
    /* Present at once: the current generation, the 6 kept and what is left of the swept
     * one, which together never exceed 7 generations. */
    size_t max_keys = d->gen_size * (DD_TAGS - 1);
    d->cap = max_keys + max_keys / 2 + 64; /* load <= ~0.67 */
    size_t bytes = d->cap * sizeof(uint64_t);
    /* Every probe is a random access into tens of MiB: huge pages spare a TLB miss each. */
    size_t huge = (size_t)2 << 20;
    if (bytes >= huge) {
        bytes = (bytes + huge - 1) / huge * huge;
        d->cap = bytes / sizeof(uint64_t);
        void *p = NULL;
        if (posix_memalign(&p, huge, bytes) == 0) {
            madvise(p, bytes, MADV_HUGEPAGE);
            memset(p, 0, bytes);
            d->slots = p;
        }
    } else {
        d->slots = calloc(d->cap, sizeof(uint64_t));
    }
    /* Slots per insert so that a whole pass fits in one generation. */
    d->sweep_step = (d->cap + d->gen_size - 1) / d->gen_size + 1;
    d->sweep_pos = d->cap; /* no pass running */
    return d->slots ? FL_OK : FL_ERR_NOMEM;
}

void fl__dedup_dispose(fl__dedup_t *d)
{
    free(d->slots);
    memset(d, 0, sizeof(*d));
}

void fl__dedup_prefetch(const fl__dedup_t *d, uint64_t key)
{
    __builtin_prefetch(&d->slots[dd_home(d, dd_fp(key))]);
}

int fl__dedup_contains(const fl__dedup_t *d, uint64_t key)
{
    uint64_t fp = dd_fp(key);
    size_t i = dd_home(d, fp);
    while (d->slots[i]) {
        if ((d->slots[i] & ~DD_TAG_MASK) == fp)
            return 1;
        if (++i == d->cap)
            i = 0;
    }
    return 0;
}

static void dd_delete_at(fl__dedup_t *d, size_t i)
{
    size_t j = i;
    for (;;) {
        if (++j == d->cap)
            j = 0;
        uint64_t v = d->slots[j];
        if (!v)
            break;
        size_t k = dd_home(d, v & ~DD_TAG_MASK);
        /* v may fill the hole at i unless its home lies cyclically in (i, j]. */
        int in_range = (i <= j) ? (k > i && k <= j) : (k > i || k <= j);
        if (in_range)
            continue;
        d->slots[i] = v;
        i = j;
    }
    d->slots[i] = 0;
}

/* Sweep slots [sweep_pos, end) of the generation being swept. A deletion only moves
 * entries from ahead of the cursor into the hole at or ahead of it, so every key of that
 * generation is met once the cursor has passed the whole table. */
static void dd_sweep(fl__dedup_t *d, size_t end)
{
    unsigned tag = (d->cur + 1) & DD_TAG_MASK;
    size_t x = d->sweep_pos;
    for (; x < end && d->gen_count[tag]; x++)
        while (d->slots[x] && (d->slots[x] & DD_TAG_MASK) == tag) {
            dd_delete_at(d, x);
            d->gen_count[tag]--;
        }
    d->sweep_pos = d->gen_count[tag] ? x : d->cap;
}

static void dd_rotate(fl__dedup_t *d)
{
    if (d->sweep_pos < d->cap) /* normally done already: the pass is paced to the fill */
        dd_sweep(d, d->cap);
    d->cur = (d->cur + 1) & DD_TAG_MASK;
    d->gen_count[d->cur] = 0;
    /* The oldest kept generation now starts its sweep. */
    d->sweep_pos = d->gen_count[(d->cur + 1) & DD_TAG_MASK] ? 0 : d->cap;
}

void fl__dedup_insert(fl__dedup_t *d, uint64_t key)
{
    if (d->gen_count[d->cur] >= d->gen_size)
        dd_rotate(d);
    uint64_t fp = dd_fp(key);
    size_t i = dd_home(d, fp);
    while (d->slots[i]) {
        if (++i == d->cap)
            i = 0;
    }
    d->slots[i] = fp | d->cur;
    d->gen_count[d->cur]++;
    if (d->sweep_pos < d->cap) {
        size_t end = d->sweep_pos + d->sweep_step;
        dd_sweep(d, end < d->cap ? end : d->cap);
    }
}
