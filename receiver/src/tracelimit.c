/* SPDX-License-Identifier: Apache-2.0 */
/* Spans per trace across requests (--max-spans-per-trace): a fixed-size, set-associative
 * table of recent trace ids and their accepted span counts, shared by the decode threads. */
#include "receiver_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 8    /* entries per set; a new trace evicts the least recently touched one */
#define LOCKS 256 /* striped locks: set s is guarded by locks[s % LOCKS] */

typedef struct entry {
    uint8_t id[16];
    uint32_t count; /* spans accepted for this trace */
    uint32_t stamp; /* clock at the last touch; 0: the entry is empty */
} entry_t;

struct fl_trace_limit {
    size_t max_spans;
    size_t n_sets; /* a power of two */
    entry_t *entries;
    _Atomic uint32_t clock;
    pthread_mutex_t locks[LOCKS];
};

/* One trace of one request: how many of its spans the request holds and how many the table
 * let through (what fl_trace_limit_release gives back). */
struct fl__trace_count {
    uint8_t id[16];
    uint32_t n, kept, used;
};

static uint64_t hash_id(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    /* splitmix64's finaliser over both halves: ids are random in practice, but tests and
     * some SDKs make ids that differ in a few bytes only. */
    uint64_t h = a * 0x9E3779B97F4A7C15ull + b;
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

fl_trace_limit_t *fl_trace_limit_new(size_t max_spans, size_t n_slots)
{
    if (!max_spans)
        return NULL;
    fl_trace_limit_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max_spans = max_spans < UINT32_MAX ? max_spans : UINT32_MAX;
    t->n_sets = pow2_at_least((n_slots ? n_slots : FL_TRACE_LIMIT_DEFAULT_SLOTS) / WAYS);
    t->entries = calloc(t->n_sets * WAYS, sizeof(entry_t));
    if (!t->entries) {
        free(t);
        return NULL;
    }
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_init(&t->locks[i], NULL);
    return t;
}

void fl_trace_limit_free(fl_trace_limit_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_destroy(&t->locks[i]);
    free(t->entries);
    free(t);
}

size_t fl_trace_limit_memory(const fl_trace_limit_t *t)
{
    return t ? sizeof(*t) + t->n_sets * WAYS * sizeof(entry_t) : 0;
}

/* The entry of id in its set (locked by the caller), or NULL. */
static entry_t *find(entry_t *set, const uint8_t id[16])
{
    for (int w = 0; w < WAYS; w++)
        if (set[w].stamp && memcmp(set[w].id, id, 16) == 0)
            return &set[w];
    return NULL;
}

/* Take up to n more spans of trace id; returns how many the limit lets through. */
static uint32_t admit(fl_trace_limit_t *t, const uint8_t id[16], uint32_t n)
{
    size_t s = (size_t)(hash_id(id) >> 20) & (t->n_sets - 1);
    entry_t *set = &t->entries[s * WAYS];
    uint32_t now = atomic_fetch_add_explicit(&t->clock, 1, memory_order_relaxed) + 1;
    if (!now) /* 0 marks an empty entry */
        now = 1;
    pthread_mutex_t *mu = &t->locks[s % LOCKS];
    pthread_mutex_lock(mu);
    entry_t *e = find(set, id);
    if (!e) {
        /* Replace an empty entry, else the one touched longest ago (ages wrap with the
         * clock, so compare differences). */
        e = &set[0];
        for (int w = 0; w < WAYS && e->stamp; w++)
            if (!set[w].stamp || now - set[w].stamp > now - e->stamp)
                e = &set[w];
        memcpy(e->id, id, 16);
        e->count = 0;
    }
    uint32_t room = e->count < t->max_spans ? (uint32_t)(t->max_spans - e->count) : 0;
    uint32_t kept = n < room ? n : room;
    e->count += kept;
    e->stamp = now;
    pthread_mutex_unlock(mu);
    return kept;
}

int fl_trace_limit_apply(fl_trace_limit_t *t, fl_span_batch_t *b, fl_trace_limit_charge_t *charge)
{
    memset(charge, 0, sizeof(*charge));
    size_t n = b->n_spans;
    if (!t || !n)
        return FL_OK;
    /* Group the request's spans by trace (an open-addressing table of record numbers), so
     * the shared table is locked once per trace rather than once per span. */
    size_t mask = pow2_at_least(2 * n) - 1;
    uint32_t *slots = calloc(mask + 1, sizeof(*slots));
    uint32_t *of = malloc(n * sizeof(*of));
    struct fl__trace_count *recs = malloc(n * sizeof(*recs));
    if (!slots || !of || !recs) {
        free(slots);
        free(of);
        free(recs);
        return FL_ERR_NOMEM;
    }
    uint32_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = b->spans[i].trace_id;
        size_t h = (size_t)hash_id(id) & mask;
        while (slots[h] && memcmp(recs[slots[h] - 1].id, id, 16) != 0)
            h = (h + 1) & mask;
        if (!slots[h]) {
            memcpy(recs[nr].id, id, 16);
            recs[nr].n = recs[nr].kept = recs[nr].used = 0;
            slots[h] = ++nr;
        }
        of[i] = slots[h] - 1;
        recs[of[i]].n++;
    }
    free(slots);
    for (uint32_t r = 0; r < nr; r++)
        recs[r].kept = admit(t, recs[r].id, recs[r].n);
    /* Keep the first spans of each trace, in the request's order. */
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        struct fl__trace_count *rc = &recs[of[i]];
        if (rc->used < rc->kept) {
            rc->used++;
            b->spans[w++] = b->spans[i];
        } else if (!charge->dropped++) {
            memcpy(charge->first_over, rc->id, 16);
        }
    }
    free(of);
    b->n_spans = w;
    struct fl__trace_count *shrunk = realloc(recs, nr * sizeof(*recs));
    charge->items = shrunk ? shrunk : recs;
    charge->n_items = nr;
    return FL_OK;
}

void fl_trace_limit_release(fl_trace_limit_t *t, fl_trace_limit_charge_t *charge)
{
    for (size_t i = 0; t && i < charge->n_items; i++) {
        const struct fl__trace_count *rc = &charge->items[i];
        if (!rc->kept)
            continue;
        size_t s = (size_t)(hash_id(rc->id) >> 20) & (t->n_sets - 1);
        pthread_mutex_lock(&t->locks[s % LOCKS]);
        entry_t *e = find(&t->entries[s * WAYS], rc->id);
        /* Gone when evicted meanwhile: then there is nothing to give back. */
        if (e)
            e->count -= e->count < rc->kept ? e->count : rc->kept;
        pthread_mutex_unlock(&t->locks[s % LOCKS]);
    }
    fl_trace_limit_charge_dispose(charge);
}

void fl_trace_limit_charge_dispose(fl_trace_limit_charge_t *charge)
{
    free(charge->items);
    memset(charge, 0, sizeof(*charge));
}
