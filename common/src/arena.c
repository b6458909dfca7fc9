/* SPDX-License-Identifier: Apache-2.0 */
/* Bump allocator: chunks from malloc (big ones mapped), everything released at reset or
 * free. */
#include <faultline/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, 16-aligned */
} chunk_t;

#define HDR ((sizeof(chunk_t) + 15) & ~(size_t)15)

/* Under AddressSanitizer the free part of every chunk is poisoned, so a pointer kept past
 * fl_arena_rewind (or past the end of its allocation) is reported. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FL_ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FL_ARENA_ASAN 1
#endif
#ifdef FL_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Chunks of BIG_CHUNK bytes or more are mapped with mmap and unmapped when freed. From
 * malloc, the decoded batches of the ingest path (a ~1 MiB chunk each, allocated by a
 * decode thread and freed by the writer) left holes that malloc's per-thread heaps kept:
 * after every ingest phase and 3x overload the server peaked at 272 MiB of RSS, where
 * heaptrack saw ~110 MiB in use at the peak of a shorter run of the same phases; mapped
 * (with the server's once-a-second malloc_trim), 197 MiB (issue 7). The batch arena pool
 * (span.c) keeps recent chunks warm, so the steady state maps nothing. Sanitizer and fuzz
 * builds keep malloc, so ASan still sees every chunk. */
#define BIG_CHUNK (256u * 1024)
#if defined(FL_ARENA_ASAN) || defined(FL_FUZZ_ALLOC_FAIL)
#define FL_ARENA_MAP 0
#else
#define FL_ARENA_MAP 1
#endif

static int chunk_mapped(size_t size)
{
    return FL_ARENA_MAP && size >= BIG_CHUNK;
}

static chunk_t *chunk_new(size_t size)
{
    chunk_t *c;
    if (chunk_mapped(size)) {
        void *p =
            mmap(NULL, HDR + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        c = p == MAP_FAILED ? NULL : p;
    } else {
        c = malloc(HDR + size);
    }
    if (!c)
        return NULL;
    c->size = size;
    c->used = 0;
    return c;
}

static void chunk_free(chunk_t *c)
{
    UNPOISON((char *)c + HDR, c->size);
    if (chunk_mapped(c->size))
        munmap(c, HDR + c->size);
    else
        free(c);
}

struct fl_arena {
    chunk_t *head;  /* current chunk; older ones follow */
    chunk_t *spare; /* emptied by fl_arena_rewind, used before malloc */
    size_t chunk_size;
    size_t used;
    size_t reserved; /* chunks in use (head chain); the limit applies to these */
    size_t spare_bytes;
    size_t limit;
};

fl_arena_t *fl_arena_new(size_t chunk_size)
{
    fl_arena_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    return a;
}

static void free_chunks(chunk_t *c)
{
    while (c) {
        chunk_t *next = c->next;
        chunk_free(c);
        c = next;
    }
}

void fl_arena_free(fl_arena_t *a)
{
    if (!a)
        return;
    free_chunks(a->head);
    free_chunks(a->spare);
    free(a);
}

void *fl_arena_alloc(fl_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    if (a->limit && a->used + size > a->limit)
        return NULL; /* (a rewound arena may hold more than its limit) */
    chunk_t *c = a->head;
    if ((!c || c->size - c->used < size) && a->spare && a->spare->size >= size &&
        (!a->limit || a->reserved + HDR + a->spare->size <= a->limit)) {
        chunk_t *n = a->spare;
        a->spare = n->next;
        a->spare_bytes -= HDR + n->size;
        a->reserved += HDR + n->size;
        n->next = c;
        a->head = n;
        c = n;
    }
    if (!c || c->size - c->used < size) {
        size_t want = a->chunk_size;
        /* Grow chunk sizes geometrically so huge requests do not make many mallocs. */
        if (a->reserved > want * 4)
            want = a->reserved / 4 < 16u << 20 ? a->reserved / 4 : 16u << 20;
        if (want < size)
            want = size;
        if (a->limit && a->reserved + want + HDR > a->limit) {
            if (a->reserved + size + HDR > a->limit)
                return NULL;
            want = size;
        }
        chunk_t *n = chunk_new(want);
        if (!n)
            return NULL;
        POISON((char *)n + HDR, want);
        /* Keep the fuller chunk behind the new one; a big one-off allocation should not
         * waste the free tail of the current chunk. */
        if (c && size > a->chunk_size && c->size - c->used > 256) {
            n->next = c->next;
            c->next = n;
            n->used = size;
            a->reserved += HDR + want;
            a->used += size;
            UNPOISON((char *)n + HDR, size);
            return (char *)n + HDR;
        }
        n->next = c;
        a->head = n;
        a->reserved += HDR + want;
        c = n;
    }
    void *p = (char *)c + HDR + c->used;
    c->used += size;
    a->used += size;
    UNPOISON(p, size);
    return p;
}

void *fl_arena_calloc(fl_arena_t *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = fl_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *fl_arena_strndup(fl_arena_t *a, const char *s, size_t len)
{
    char *p = fl_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = 0;
    return p;
}

char *fl_arena_strdup(fl_arena_t *a, const char *s)
{
    return s ? fl_arena_strndup(a, s, strlen(s)) : NULL;
}

char *fl_arena_sprintf(fl_arena_t *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? fl_arena_alloc(a, (size_t)n + 1) : NULL;
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void fl_arena_rewind(fl_arena_t *a)
{
    chunk_t *c = a->head;
    while (c) {
        chunk_t *next = c->next;
        POISON((char *)c + HDR, c->size);
        c->used = 0;
        c->next = a->spare;
        a->spare = c;
        c = next;
    }
    a->spare_bytes += a->reserved;
    a->reserved = 0;
    a->head = NULL;
    a->used = 0;
}

void fl_arena_reset(fl_arena_t *a)
{
    free_chunks(a->spare);
    a->spare = NULL;
    a->spare_bytes = 0;
    if (!a->head)
        return;
    /* Keep the largest chunk only. */
    chunk_t *keep = a->head, *c;
    for (c = a->head->next; c; c = c->next)
        if (c->size > keep->size)
            keep = c;
    for (c = a->head; c;) {
        chunk_t *next = c->next;
        if (c != keep)
            chunk_free(c);
        c = next;
    }
    keep->next = NULL;
    keep->used = 0;
    POISON((char *)keep + HDR, keep->size);
    a->head = keep;
    a->used = 0;
    a->reserved = HDR + keep->size;
}

size_t fl_arena_used(const fl_arena_t *a)
{
    return a->used;
}

size_t fl_arena_reserved(const fl_arena_t *a)
{
    return a->reserved + a->spare_bytes;
}

void fl_arena_set_limit(fl_arena_t *a, size_t max_bytes)
{
    a->limit = max_bytes;
}
