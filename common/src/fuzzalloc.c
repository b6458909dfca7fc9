/* SPDX-License-Identifier: Apache-2.0 */
/* Allocation failure injection for fuzz builds (see common.h "allocation failures"): the
 * plan and the allocation wrappers that project code calls when built with
 * FL_FUZZ_ALLOC_FAIL. In other builds nothing calls the wrappers. */
#include <faultline/common.h>

#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t plan_seed;   /* 0: no failures */
static _Atomic uint64_t plan_nth;    /* the first allocation that fails (1-based) */
static _Atomic uint32_t plan_after;  /* later ones: fail when mix(n) % 16 < plan_after */
static _Atomic uint64_t allocations; /* counted since the plan */
static _Atomic uint64_t failed;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void fl_fuzz_alloc_plan(uint64_t seed)
{
    static const uint32_t after[4] = {0, 0, 1, 16}; /* none, none, 1 in 16, all */
    uint64_t h = mix(seed);
    atomic_store(&plan_seed, 0);
    atomic_store(&allocations, 0);
    atomic_store(&failed, 0);
    if (!seed || h % 4 != 0)
        return;
    atomic_store(&plan_nth, 1 + (h >> 8) % 48);
    atomic_store(&plan_after, after[(h >> 16) % 4]);
    atomic_store(&plan_seed, seed);
}

uint64_t fl_fuzz_alloc_failed(void)
{
    return atomic_load(&failed);
}

static int should_fail(void)
{
    uint64_t seed = atomic_load(&plan_seed);
    if (!seed)
        return 0;
    uint64_t n = atomic_fetch_add(&allocations, 1) + 1, nth = atomic_load(&plan_nth);
    if (n < nth || (n > nth && mix(seed ^ n) % 16 >= atomic_load(&plan_after)))
        return 0;
    atomic_fetch_add(&failed, 1);
    return 1;
}

void *fl__fuzz_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *fl__fuzz_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *fl__fuzz_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

char *fl__fuzz_strdup(const char *s)
{
    return should_fail() ? NULL : strdup(s);
}

char *fl__fuzz_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : strndup(s, n);
}
