/* SPDX-License-Identifier: Apache-2.0 */
/* Interned names and the series dictionary. The ingest side adds entries under its lock;
 * run and queries read entries below the published count without that lock, because
 * entries never move or change once published. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash32(const void *p, size_t n)
{
    uint64_t h = fl_hash64(p, n, 0x5eed);
    return (uint32_t)(h ^ (h >> 32));
}

static int slots_init(uint32_t **slots, uint32_t *mask, uint32_t n)
{
    *slots = calloc(n, sizeof(uint32_t));
    if (!*slots)
        return FL_ERR_NOMEM;
    *mask = n - 1;
    return FL_OK;
}

/* ---------------------------------------------------------------- strings */

int fl__strtab_init(fl__strtab_t *t, uint32_t max)
{
    memset(t, 0, sizeof(*t));
    t->max = max;
    if (t->max > FL__MAX_CHUNKS * FL__CHUNK)
        t->max = FL__MAX_CHUNKS * FL__CHUNK;
    t->mem = fl_arena_new(64 * 1024);
    if (!t->mem || slots_init(&t->slots, &t->mask, 1024)) {
        fl__strtab_dispose(t);
        return FL_ERR_NOMEM;
    }
    return FL_OK;
}

void fl__strtab_dispose(fl__strtab_t *t)
{
    for (uint32_t i = 0; i < FL__MAX_CHUNKS; i++)
        free((void *)t->chunk[i]);
    free(t->slots);
    free(t->hashes);
    fl_arena_free(t->mem);
    memset(t, 0, sizeof(*t));
}

const char *fl__strtab_get(const fl__strtab_t *t, uint32_t id)
{
    return t->chunk[id >> FL__CHUNK_BITS][id & (FL__CHUNK - 1)];
}

uint32_t fl__strtab_count(const fl__strtab_t *t)
{
    return __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
}

static int str_match(const fl__strtab_t *t, uint32_t id, uint32_t h, const char *s, size_t len)
{
    if (t->hashes[id] != h)
        return 0;
    const char *x = fl__strtab_get(t, id);
    return strncmp(x, s, len) == 0 && x[len] == 0;
}

static int str_rehash(fl__strtab_t *t)
{
    uint32_t n2 = (t->mask + 1) * 2, *slots, mask;
    if (slots_init(&slots, &mask, n2))
        return FL_ERR_NOMEM;
    for (uint32_t id = 0; id < t->n; id++) {
        uint32_t i = t->hashes[id] & mask;
        while (slots[i])
            i = (i + 1) & mask;
        slots[i] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return FL_OK;
}

/* Strings are copied into an arena that never moves, and the id becomes visible to readers
 * only after the pointer is stored (release), so readers need no lock. */
uint32_t fl__strtab_intern(fl__strtab_t *t, const char *s, size_t len)
{
    uint32_t h = hash32(s, len);
    uint32_t i = h & t->mask;
    for (;; i = (i + 1) & t->mask) {
        uint32_t v = t->slots[i];
        if (!v)
            break;
        if (str_match(t, v - 1, h, s, len))
            return v - 1;
    }
    uint32_t id = t->n;
    if (id >= t->max)
        return FL__NONE;
    uint32_t c = id >> FL__CHUNK_BITS;
    if (!t->chunk[c] && !(t->chunk[c] = calloc(FL__CHUNK, sizeof(char *))))
        return FL__NONE;
    if (id >= t->hcap) {
        uint32_t cap = t->hcap ? t->hcap * 2 : 1024;
        uint32_t *hs = realloc(t->hashes, (size_t)cap * sizeof(uint32_t));
        if (!hs)
            return FL__NONE;
        t->hashes = hs;
        t->hcap = cap;
    }
    char *copy = fl_arena_strndup(t->mem, s, len);
    if (!copy)
        return FL__NONE;
    t->chunk[c][id & (FL__CHUNK - 1)] = copy;
    t->hashes[id] = h;
    t->slots[i] = id + 1;
    __atomic_store_n(&t->n, id + 1, __ATOMIC_RELEASE);
    if ((uint64_t)t->n * 2 > t->mask + 1)
        str_rehash(t); /* on OOM the table just stays fuller */
    return id;
}

/* ---------------------------------------------------------------- series */

int fl__sertab_init(fl__sertab_t *t, uint32_t max)
{
    memset(t, 0, sizeof(*t));
    t->max = max;
    if (t->max > FL__MAX_CHUNKS * FL__CHUNK)
        t->max = FL__MAX_CHUNKS * FL__CHUNK;
    return slots_init(&t->slots, &t->mask, 1024);
}

void fl__sertab_dispose(fl__sertab_t *t)
{
    for (uint32_t i = 0; i < FL__MAX_CHUNKS; i++)
        free(t->chunk[i]);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

const fl__series_t *fl__sertab_at(const fl__sertab_t *t, uint32_t id)
{
    return &t->chunk[id >> FL__CHUNK_BITS][id & (FL__CHUNK - 1)];
}

uint32_t fl__sertab_count(const fl__sertab_t *t)
{
    return __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
}

static uint32_t ser_hash(const fl__series_t *k)
{
    uint32_t v[6] = {k->type, k->flags, k->svc, k->op, k->caller_svc, k->caller_op};
    return hash32(v, sizeof(v));
}

static int ser_eq(const fl__series_t *a, const fl__series_t *b)
{
    return a->type == b->type && a->flags == b->flags && a->svc == b->svc && a->op == b->op &&
           a->caller_svc == b->caller_svc && a->caller_op == b->caller_op;
}

static int ser_rehash(fl__sertab_t *t)
{
    uint32_t n2 = (t->mask + 1) * 2, *slots, mask;
    if (slots_init(&slots, &mask, n2))
        return FL_ERR_NOMEM;
    for (uint32_t id = 0; id < t->n; id++) {
        uint32_t i = ser_hash(fl__sertab_at(t, id)) & mask;
        while (slots[i])
            i = (i + 1) & mask;
        slots[i] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return FL_OK;
}

/* The cap is enforced here: a series beyond max_series is refused (FL__NONE), and the
 * caller counts the refusal. */
uint32_t fl__sertab_get(fl__sertab_t *t, const fl__series_t *key)
{
    uint32_t i = ser_hash(key) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        uint32_t v = t->slots[i];
        if (!v)
            break;
        if (ser_eq(fl__sertab_at(t, v - 1), key))
            return v - 1;
    }
    uint32_t id = t->n;
    if (id >= t->max)
        return FL__NONE;
    uint32_t c = id >> FL__CHUNK_BITS;
    if (!t->chunk[c] && !(t->chunk[c] = calloc(FL__CHUNK, sizeof(fl__series_t))))
        return FL__NONE;
    t->chunk[c][id & (FL__CHUNK - 1)] = *key;
    t->slots[i] = id + 1;
    if (key->type < 4)
        __atomic_fetch_add(&t->count_by_type[key->type], 1, __ATOMIC_RELAXED);
    __atomic_store_n(&t->n, id + 1, __ATOMIC_RELEASE);
    if ((uint64_t)t->n * 2 > t->mask + 1)
        ser_rehash(t);
    return id;
}
