/* SPDX-License-Identifier: Apache-2.0 */
/* Bump allocator: chunks from malloc, everything released at reset or free. */
#include <faultline/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, 16-aligned */
} chunk_t;

#define HDR ((sizeof(chunk_t) + 15) & ~(size_t)15)

struct fl_arena {
    chunk_t *head; /* current chunk; older ones follow */
    size_t chunk_size;
    size_t used;
    size_t reserved;
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
        free(c);
        c = next;
    }
}

void fl_arena_free(fl_arena_t *a)
{
    if (!a)
        return;
    free_chunks(a->head);
    free(a);
}

void *fl_arena_alloc(fl_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    chunk_t *c = a->head;
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
        chunk_t *n = malloc(HDR + want);
        if (!n)
            return NULL;
        n->size = want;
        n->used = 0;
        /* Keep the fuller chunk behind the new one; a big one-off allocation should not
         * waste the free tail of the current chunk. */
        if (c && size > a->chunk_size && c->size - c->used > 256) {
            n->next = c->next;
            c->next = n;
            n->used = size;
            a->reserved += HDR + want;
            a->used += size;
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

void fl_arena_reset(fl_arena_t *a)
{
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
            free(c);
        c = next;
    }
    keep->next = NULL;
    keep->used = 0;
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
    return a->reserved;
}

void fl_arena_set_limit(fl_arena_t *a, size_t max_bytes)
{
    a->limit = max_bytes;
}
