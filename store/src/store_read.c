/* SPDX-License-Identifier: Apache-2.0 */
/* Reads: a pool of read-only connections, trace by id (trace filters -> blocks -> spans),
 * trace search over block summaries and light columns, the service list. Each read runs
 * in one SQLite read transaction: one committed snapshot. */
#include "store_int.h"
#include "store_sql.h"

#include <stdio.h>
#include <stdlib.h>

enum { DICT_SERVICE = 1, DICT_NAME = 2 };

#define DICT_CACHE_MAX_ID (1u << 20)

struct fl__reader {
    fl_store_t *s;
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *block_light, *block_heavy, *dict_get, *dict_find, *res_get,
        *scope_get, *search_svc, *search_all, *list_services, *integrity, *meta_get;
    uint64_t snap_epoch; /* layout epoch of the open read transaction (guarded by s->rmu):
                            UINT64_MAX idle, 0 while it is being read */
    fl__dec_t *dec;
    /* id -> dictionary string; ids are never reused, so entries never go stale */
    char **dict_str;
    uint32_t *dict_len;
    size_t dict_cap;
};

/* ---------------------------------------------------------------- pool */

int fl__reader_new(fl_store_t *s, fl__reader_t **out, char *err, size_t errlen)
{
    int rc;
    fl__reader_t *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return FL_ERR_NOMEM;
    r->s = s;
    if ((rc = fl__open_db(s, 0, &r->db, err, errlen)) != FL_OK)
        goto fail;
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&r->begin, FL_SQL_BEGIN},
        {&r->commit, FL_SQL_COMMIT},
        {&r->block_light, FL_SQL_BLOCK_LIGHT},
        {&r->block_heavy, FL_SQL_BLOCK_HEAVY},
        {&r->dict_get, FL_SQL_DICT_GET},
        {&r->dict_find, FL_SQL_DICT_FIND},
        {&r->res_get, FL_SQL_RES_GET},
        {&r->scope_get, FL_SQL_SCOPE_GET},
        {&r->search_svc, FL_SQL_SEARCH_BY_SERVICE},
        {&r->search_all, FL_SQL_SEARCH_ALL},
        {&r->list_services, FL_SQL_LIST_SERVICES},
        {&r->integrity, FL_SQL_INTEGRITY_CHECK},
        {&r->meta_get, FL_SQL_META_GET},
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if ((rc = fl__prepare(r->db, stmts[i].sql, stmts[i].st, err, errlen)) != FL_OK)
            goto fail;
    if (!(r->dec = fl__dec_new())) {
        rc = FL_ERR_NOMEM;
        goto fail;
    }
    *out = r;
    return FL_OK;
fail:
    fl__reader_free(r);
    return rc;
}

void fl__reader_free(fl__reader_t *r)
{
    if (!r)
        return;
    sqlite3_stmt *all[] = {r->begin,      r->commit,     r->block_light,   r->block_heavy,
                           r->dict_get,   r->dict_find,  r->res_get,       r->scope_get,
                           r->search_svc, r->search_all, r->list_services, r->integrity,
                           r->meta_get};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close_v2(r->db);
    fl__dec_free(r->dec);
    for (size_t i = 0; i < r->dict_cap; i++)
        free(r->dict_str[i]);
    free(r->dict_str);
    free(r->dict_len);
    free(r);
}

static fl__reader_t *borrow(fl_store_t *s)
{
    pthread_mutex_lock(&s->rmu);
    while (s->n_free_readers == 0)
        pthread_cond_wait(&s->rcv, &s->rmu);
    fl__reader_t *r = s->free_readers[--s->n_free_readers];
    r->snap_epoch = 0; /* pins every filter until begin_read knows the real epoch */
    pthread_mutex_unlock(&s->rmu);
    return r;
}

uint64_t fl__readers_min_epoch(fl_store_t *s)
{
    uint64_t m = UINT64_MAX;
    pthread_mutex_lock(&s->rmu);
    for (int i = 0; i < s->n_readers; i++)
        if (s->readers[i]->snap_epoch < m)
            m = s->readers[i]->snap_epoch;
    pthread_mutex_unlock(&s->rmu);
    return m;
}

static void give_back(fl_store_t *s, fl__reader_t *r)
{
    pthread_mutex_lock(&s->rmu);
    r->snap_epoch = UINT64_MAX;
    s->free_readers[s->n_free_readers++] = r;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

/* Open a read transaction and learn its layout epoch; reading meta starts the snapshot. */
static int begin_read(fl__reader_t *r, uint64_t *epoch)
{
    int rc = fl__step_done(r->begin);
    if (rc != SQLITE_DONE)
        return fl__sql_err(rc);
    sqlite3_bind_text(r->meta_get, 1, "layout_epoch", -1, SQLITE_STATIC);
    rc = sqlite3_step(r->meta_get);
    uint64_t e = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(r->meta_get, 0) : 0;
    fl__done(r->meta_get);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fl__step_done(r->commit);
        return fl__sql_err(rc);
    }
    pthread_mutex_lock(&r->s->rmu);
    r->snap_epoch = e;
    pthread_mutex_unlock(&r->s->rmu);
    *epoch = e;
    return FL_OK;
}

static void end_read(fl__reader_t *r)
{
    fl__step_done(r->commit);
}

/* ---------------------------------------------------------------- dictionary */

/* The string of a dictionary id (owned by the reader's cache, or copied into the arena
 * when the id is too large to cache). */
static int dict_get(fl__reader_t *r, uint32_t id, fl_arena_t *a, fl_str_t *out)
{
    if (id < r->dict_cap && r->dict_str[id]) {
        out->ptr = r->dict_str[id];
        out->len = r->dict_len[id];
        return FL_OK;
    }
    sqlite3_bind_int64(r->dict_get, 1, id);
    int rc = sqlite3_step(r->dict_get);
    if (rc != SQLITE_ROW) {
        fl__done(r->dict_get);
        return rc == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(rc);
    }
    const char *p = sqlite3_column_blob(r->dict_get, 1);
    size_t len = (size_t)sqlite3_column_bytes(r->dict_get, 1);
    int ret = FL_OK;
    if (id < DICT_CACHE_MAX_ID) {
        if (id >= r->dict_cap) {
            size_t cap = r->dict_cap ? r->dict_cap : 256;
            while (cap <= id)
                cap *= 2;
            char **ns = realloc(r->dict_str, cap * sizeof(char *));
            if (ns) {
                r->dict_str = ns;
                memset(ns + r->dict_cap, 0, (cap - r->dict_cap) * sizeof(char *));
            }
            uint32_t *nl = ns ? realloc(r->dict_len, cap * sizeof(uint32_t)) : NULL;
            if (nl) {
                r->dict_len = nl;
                r->dict_cap = cap;
            }
        }
        char *copy = id < r->dict_cap ? malloc(len + 1) : NULL;
        if (copy) {
            if (len)
                memcpy(copy, p, len);
            copy[len] = 0;
            r->dict_str[id] = copy;
            r->dict_len[id] = (uint32_t)len;
            out->ptr = copy;
            out->len = len;
            fl__done(r->dict_get);
            return FL_OK;
        }
    }
    char *copy = fl_arena_strndup(a, p ? p : "", len);
    if (!copy)
        ret = FL_ERR_NOMEM;
    out->ptr = copy;
    out->len = len;
    fl__done(r->dict_get);
    return ret;
}

/* Arena copy of a dictionary string. */
static int dict_get_arena(fl__reader_t *r, uint32_t id, fl_arena_t *a, fl_str_t *out)
{
    fl_str_t s = {0};
    int rc = dict_get(r, id, a, &s);
    if (rc != FL_OK)
        return rc;
    char *c = fl_arena_strndup(a, s.ptr, s.len);
    if (!c)
        return FL_ERR_NOMEM;
    out->ptr = c;
    out->len = s.len;
    return FL_OK;
}

/* Id of a dictionary string; 0 when absent. */
static int dict_find(fl__reader_t *r, int kind, const char *s, int64_t *id)
{
    sqlite3_bind_int(r->dict_find, 1, kind);
    sqlite3_bind_blob(r->dict_find, 2, s, (int)strlen(s), SQLITE_STATIC);
    int rc = sqlite3_step(r->dict_find);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(r->dict_find, 0) : 0;
    fl__done(r->dict_find);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? FL_OK : fl__sql_err(rc);
}

/* ---------------------------------------------------------------- block access */

/* Fetch and decode the light columns of a block (valid until the next call). */
static int load_light(fl__reader_t *r, int64_t id, const uint8_t *want_trace, const fl__light_t **L)
{
    *L = NULL;
    sqlite3_bind_int64(r->block_light, 1, id);
    int rc = sqlite3_step(r->block_light);
    if (rc != SQLITE_ROW) {
        fl__done(r->block_light);
        /* Absent: committed after our snapshot began, or removed. */
        return rc == SQLITE_DONE ? FL_OK : fl__sql_err(rc);
    }
    uint32_t n = (uint32_t)sqlite3_column_int64(r->block_light, 0);
    const void *blob = sqlite3_column_blob(r->block_light, 2);
    size_t len = (size_t)sqlite3_column_bytes(r->block_light, 2);
    int ret = FL_OK, found = 1;
    if (want_trace)
        ret = fl__dec_find_trace(r->dec, blob, len, want_trace, &found);
    if (ret == FL_OK && found)
        ret = fl__dec_light(r->dec, blob, len, n, L);
    fl__done(r->block_light);
    return ret;
}

/* Directory index of the trace in a decoded block; -1 when absent. */
static int64_t find_run(const fl__light_t *L, const uint8_t trace[16])
{
    size_t lo = 0, hi = L->n_runs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(L->trace_ids + mid * 16, trace, 16);
        if (c == 0)
            return (int64_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---------------------------------------------------------------- get_trace */

typedef struct res_cache {
    uint32_t *res_ids;
    const fl_resource_t **res;
    size_t n_res, cap_res;
    uint32_t *scope_ids;
    const fl_scope_t **scopes;
    size_t n_scope, cap_scope;
} res_cache_t;

static void res_cache_dispose(res_cache_t *c)
{
    free(c->res_ids);
    free(c->res);
    free(c->scope_ids);
    free(c->scopes);
}

static int get_resource(fl__reader_t *r, res_cache_t *c, uint32_t id, fl_arena_t *a,
                        const fl_resource_t **out)
{
    *out = NULL;
    if (id == 0)
        return FL_OK;
    for (size_t i = 0; i < c->n_res; i++)
        if (c->res_ids[i] == id) {
            *out = c->res[i];
            return FL_OK;
        }
    fl_resource_t *res = fl_arena_calloc(a, 1, sizeof(*res));
    if (!res)
        return FL_ERR_NOMEM;
    sqlite3_bind_int64(r->res_get, 1, id);
    int rc = sqlite3_step(r->res_get);
    int ret;
    if (rc == SQLITE_ROW)
        ret = fl__resource_decode(sqlite3_column_blob(r->res_get, 0),
                                  (size_t)sqlite3_column_bytes(r->res_get, 0), a, res);
    else
        ret = rc == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(rc);
    fl__done(r->res_get);
    if (ret != FL_OK)
        return ret;
    if (c->n_res == c->cap_res) {
        size_t cap = c->cap_res ? c->cap_res * 2 : 8;
        uint32_t *ni = realloc(c->res_ids, cap * sizeof(*ni));
        if (ni)
            c->res_ids = ni;
        const fl_resource_t **nr = realloc(c->res, cap * sizeof(*nr));
        if (nr)
            c->res = nr;
        if (!ni || !nr)
            return FL_ERR_NOMEM;
        c->cap_res = cap;
    }
    c->res_ids[c->n_res] = id;
    c->res[c->n_res++] = res;
    *out = res;
    return FL_OK;
}

static int get_scope(fl__reader_t *r, res_cache_t *c, uint32_t id, fl_arena_t *a,
                     const fl_scope_t **out)
{
    *out = NULL;
    if (id == 0)
        return FL_OK;
    for (size_t i = 0; i < c->n_scope; i++)
        if (c->scope_ids[i] == id) {
            *out = c->scopes[i];
            return FL_OK;
        }
    fl_scope_t *sc = fl_arena_calloc(a, 1, sizeof(*sc));
    if (!sc)
        return FL_ERR_NOMEM;
    sqlite3_bind_int64(r->scope_get, 1, id);
    int rc = sqlite3_step(r->scope_get);
    int ret;
    if (rc == SQLITE_ROW)
        ret = fl__scope_decode(sqlite3_column_blob(r->scope_get, 0),
                               (size_t)sqlite3_column_bytes(r->scope_get, 0), a, sc);
    else
        ret = rc == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(rc);
    fl__done(r->scope_get);
    if (ret != FL_OK)
        return ret;
    if (c->n_scope == c->cap_scope) {
        size_t cap = c->cap_scope ? c->cap_scope * 2 : 8;
        uint32_t *ni = realloc(c->scope_ids, cap * sizeof(*ni));
        if (ni)
            c->scope_ids = ni;
        const fl_scope_t **ns = realloc(c->scopes, cap * sizeof(*ns));
        if (ns)
            c->scopes = ns;
        if (!ni || !ns)
            return FL_ERR_NOMEM;
        c->cap_scope = cap;
    }
    c->scope_ids[c->n_scope] = id;
    c->scopes[c->n_scope++] = sc;
    *out = sc;
    return FL_OK;
}

/* Spans gathered for one trace, in block order (oldest block first). */
typedef struct span_vec {
    fl_span_t *v;
    size_t n, cap;
} span_vec_t;

static int span_vec_grow(span_vec_t *sv, size_t extra)
{
    if (sv->cap - sv->n >= extra)
        return FL_OK;
    size_t cap = sv->cap ? sv->cap : 16;
    while (cap - sv->n < extra)
        cap *= 2;
    fl_span_t *nv = realloc(sv->v, cap * sizeof(*nv));
    if (!nv)
        return FL_ERR_NOMEM;
    sv->v = nv;
    sv->cap = cap;
    return FL_OK;
}

static int read_trace_block(fl__reader_t *r, int64_t id, const uint8_t trace[16], fl_arena_t *a,
                            res_cache_t *rc_cache, span_vec_t *sv)
{
    const fl__light_t *L;
    int rc = load_light(r, id, trace, &L);
    if (rc != FL_OK || !L)
        return rc;
    int64_t t = find_run(L, trace);
    if (t < 0)
        return FL_OK;
    const uint32_t *rows = L->trace_rows + L->run_start[t];
    size_t k = L->run_start[t + 1] - L->run_start[t];
    if ((rc = span_vec_grow(sv, k)) != FL_OK)
        return rc;
    fl_span_t *out = sv->v + sv->n;
    memset(out, 0, k * sizeof(*out));
    for (size_t j = 0; j < k; j++) {
        uint32_t i = rows[j];
        fl_span_t *sp = &out[j];
        memcpy(sp->trace_id, trace, 16);
        memcpy(sp->span_id, L->span_ids + (size_t)i * 8, 8);
        memcpy(sp->parent_span_id, L->parent_ids + (size_t)i * 8, 8);
        sp->start_ns = L->start[i];
        sp->end_ns = L->end[i];
        sp->status_code = L->status[i];
        if ((rc = dict_get_arena(r, L->name[i], a, &sp->name)) != FL_OK)
            return rc;
    }
    uint32_t *ids = malloc(k * 3 * sizeof(uint32_t));
    if (!ids)
        return FL_ERR_NOMEM;
    uint32_t *rel = ids + 2 * k;
    /* Only the heavy chunks that hold the trace's rows are read. */
    for (size_t j = 0; j < k && rc == FL_OK;) {
        uint32_t cr = L->chunk_rows, c = rows[j] / cr;
        size_t je = j;
        while (je < k && rows[je] / cr == c) {
            rel[je] = rows[je] - c * cr;
            je++;
        }
        uint32_t n_c = fl__light_chunk_len(L, c);
        sqlite3_bind_int64(r->block_heavy, 1, FL__HEAVY_ROWID(id, c));
        int src = sqlite3_step(r->block_heavy);
        if (src == SQLITE_ROW)
            rc = fl__dec_heavy(r->dec, sqlite3_column_blob(r->block_heavy, 0),
                               (size_t)sqlite3_column_bytes(r->block_heavy, 0), n_c, rel + j,
                               je - j, a, out + j, ids + j, ids + k + j);
        else
            rc = src == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(src);
        fl__done(r->block_heavy);
        j = je;
    }
    for (size_t i = 0; i < k && rc == FL_OK; i++) {
        rc = get_resource(r, rc_cache, ids[i], a, &out[i].resource);
        if (rc == FL_OK)
            rc = get_scope(r, rc_cache, ids[k + i], a, &out[i].scope);
    }
    free(ids);
    if (rc == FL_OK)
        sv->n += k;
    return rc;
}

static int cmp_span_id_then_index(const void *a, const void *b)
{
    const fl_span_t *const *x = a, *const *y = b;
    int c = memcmp((*x)->span_id, (*y)->span_id, 8);
    if (c)
        return c;
    return *x < *y ? -1 : *x > *y; /* earlier in the vector = older block: keep it */
}

static int cmp_span_start(const void *a, const void *b)
{
    const fl_span_t *const *x = a, *const *y = b;
    if ((*x)->start_ns != (*y)->start_ns)
        return (*x)->start_ns < (*y)->start_ns ? -1 : 1;
    return memcmp((*x)->span_id, (*y)->span_id, 8);
}

int fl_store_get_trace(fl_store_t *s, const uint8_t trace_id[16], fl_arena_t *arena,
                       fl_span_t **spans, size_t *n_spans)
{
    int64_t *ids = NULL;
    size_t n_ids = 0;
    span_vec_t sv = {0};
    res_cache_t cache = {0};
    fl_span_t **order = NULL;
    fl__reader_t *r = NULL;
    int rc;

    *spans = NULL;
    *n_spans = 0;
    uint64_t epoch;
    r = borrow(s);
    if ((rc = begin_read(r, &epoch)) != FL_OK)
        goto out;
    rc = fl__tix_probe(&s->tix, trace_id, epoch, &ids, &n_ids);
    for (size_t i = 0; i < n_ids && rc == FL_OK; i++)
        rc = read_trace_block(r, ids[i], trace_id, arena, &cache, &sv);
    end_read(r);
    if (rc != FL_OK)
        goto out;
    if (sv.n == 0) {
        rc = FL_ERR_NOT_FOUND;
        goto out;
    }

    /* Read-time dedup: one span per span id, the first stored copy. */
    order = malloc(sv.n * sizeof(*order));
    if (!order) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < sv.n; i++)
        order[i] = &sv.v[i];
    fl_sort(order, sv.n, sizeof(*order), cmp_span_id_then_index);
    size_t m = 0;
    for (size_t i = 0; i < sv.n; i++)
        if (m == 0 || memcmp(order[m - 1]->span_id, order[i]->span_id, 8) != 0)
            order[m++] = order[i];
    fl_sort(order, m, sizeof(*order), cmp_span_start);
    fl_span_t *res = fl_arena_alloc(arena, m * sizeof(fl_span_t));
    if (!res) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < m; i++)
        res[i] = *order[i];
    *spans = res;
    *n_spans = m;
out:
    if (r)
        give_back(s, r);
    free(order);
    free(sv.v);
    free(ids);
    res_cache_dispose(&cache);
    return rc;
}

/* ---------------------------------------------------------------- search */

typedef struct cand {
    uint8_t trace[16];
    uint64_t best; /* latest start of a matching span */
} cand_t;

typedef struct cand_set {
    cand_t *v;
    size_t n, cap;
    int32_t *slots; /* index into v, -1 empty */
    size_t nslots;  /* power of two */
} cand_set_t;

static void cand_dispose(cand_set_t *c)
{
    free(c->v);
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

static int cand_rehash(cand_set_t *c, size_t nslots)
{
    int32_t *ns = malloc(nslots * sizeof(int32_t));
    if (!ns)
        return FL_ERR_NOMEM;
    memset(ns, 0xff, nslots * sizeof(int32_t));
    for (size_t i = 0; i < c->n; i++) {
        size_t j = (size_t)fl__trace_hash(c->v[i].trace) & (nslots - 1);
        while (ns[j] >= 0)
            j = (j + 1) & (nslots - 1);
        ns[j] = (int32_t)i;
    }
    free(c->slots);
    c->slots = ns;
    c->nslots = nslots;
    return FL_OK;
}

static int cand_note(cand_set_t *c, const uint8_t trace[16], uint64_t start)
{
    if ((c->n + 1) * 2 > c->nslots && cand_rehash(c, c->nslots ? c->nslots * 2 : 256) != FL_OK)
        return FL_ERR_NOMEM;
    size_t j = (size_t)fl__trace_hash(trace) & (c->nslots - 1);
    while (c->slots[j] >= 0) {
        cand_t *e = &c->v[c->slots[j]];
        if (memcmp(e->trace, trace, 16) == 0) {
            if (start > e->best)
                e->best = start;
            return FL_OK;
        }
        j = (j + 1) & (c->nslots - 1);
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        cand_t *nv = realloc(c->v, cap * sizeof(*nv));
        if (!nv)
            return FL_ERR_NOMEM;
        c->v = nv;
        c->cap = cap;
    }
    memcpy(c->v[c->n].trace, trace, 16);
    c->v[c->n].best = start;
    c->slots[j] = (int32_t)c->n++;
    return FL_OK;
}

/* Block ids already scanned by a search (a block has one block_ops row per span name). */
typedef struct id_set {
    int64_t *slots; /* 0 = empty; block ids are >= 1 */
    size_t cap, n;  /* cap: power of two */
} id_set_t;

/* 1 when id was added, 0 when already present, FL_ERR_NOMEM. */
static int id_set_add(id_set_t *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        int64_t *ns = calloc(cap, sizeof(int64_t));
        if (!ns)
            return FL_ERR_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i])
                continue;
            size_t j = (size_t)fl__mix64((uint64_t)s->slots[i]) & (cap - 1);
            while (ns[j])
                j = (j + 1) & (cap - 1);
            ns[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = cap;
    }
    size_t j = (size_t)fl__mix64((uint64_t)id) & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == id)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = id;
    s->n++;
    return 1;
}

static int cmp_cand_newest(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->best != y->best)
        return x->best > y->best ? -1 : 1;
    return memcmp(x->trace, y->trace, 16);
}

/* Keep only the `keep` newest candidates (sorted newest first). */
static int cand_trim(cand_set_t *c, size_t keep)
{
    if (c->n == 0)
        return FL_OK;
    fl_sort(c->v, c->n, sizeof(cand_t), cmp_cand_newest);
    if (c->n > keep)
        c->n = keep;
    return cand_rehash(c, c->nslots);
}

/* Summary of one trace from the light columns of every block that holds it. */
typedef struct sum_span {
    uint8_t span_id[8];
    uint32_t svc, name;
    uint64_t start, end;
    int is_root;
    int error;
    size_t order;
} sum_span_t;

static int cmp_sum_span(const void *a, const void *b)
{
    const sum_span_t *x = a, *y = b;
    int c = memcmp(x->span_id, y->span_id, 8);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct sum_vec {
    sum_span_t *v;
    size_t n, cap;
} sum_vec_t;

/* Append the light-column facts of the trace's rows in a decoded block. */
static int sum_collect(const fl__light_t *L, const uint8_t trace[16], sum_vec_t *sv)
{
    int64_t t = find_run(L, trace);
    if (t < 0)
        return FL_OK;
    for (uint32_t j = L->run_start[t]; j < L->run_start[t + 1]; j++) {
        uint32_t i = L->trace_rows[j];
        if (sv->n == sv->cap) {
            size_t cap = sv->cap ? sv->cap * 2 : 16;
            sum_span_t *nv = realloc(sv->v, cap * sizeof(*nv));
            if (!nv)
                return FL_ERR_NOMEM;
            sv->v = nv;
            sv->cap = cap;
        }
        sum_span_t *e = &sv->v[sv->n];
        memcpy(e->span_id, L->span_ids + (size_t)i * 8, 8);
        e->svc = L->svc[i];
        e->name = L->name[i];
        e->start = L->start[i];
        e->end = L->end[i];
        e->is_root = fl__load64be(L->parent_ids + (size_t)i * 8) == 0;
        e->error = L->status[i] == FL_STATUS_ERROR;
        e->order = sv->n++;
    }
    return FL_OK;
}

/* Build the summary of one trace from its collected spans (read-time dedup included). */
static int sum_finish(fl__reader_t *r, sum_vec_t *sv, fl_arena_t *a, fl_trace_summary_t *out)
{
    sum_span_t *v = sv->v;
    size_t n = sv->n;
    int rc = FL_OK;
    if (n == 0)
        return FL_OK;
    fl_sort(v, n, sizeof(*v), cmp_sum_span);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || memcmp(v[m - 1].span_id, v[i].span_id, 8) != 0)
            v[m++] = v[i];
    n = m;

    const sum_span_t *root = NULL, *earliest = NULL;
    out->start_ns = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const sum_span_t *e = &v[i];
        out->n_spans++;
        out->n_errors += e->error;
        if (e->start < out->start_ns)
            out->start_ns = e->start;
        if (e->end > out->end_ns)
            out->end_ns = e->end;
        if (!earliest || e->start < earliest->start)
            earliest = e;
        if (e->is_root && (!root || e->start < root->start))
            root = e;
    }
    if (!root)
        root = earliest;
    fl_str_t svs, nvs;
    if ((rc = dict_get_arena(r, root->svc, a, &svs)) != FL_OK ||
        (rc = dict_get_arena(r, root->name, a, &nvs)) != FL_OK)
        return rc;
    out->root_service = svs.ptr;
    out->root_name = nvs.ptr;

    /* Distinct services, sorted by name. */
    uint32_t *svcs = malloc(n * sizeof(uint32_t));
    if (!svcs)
        return FL_ERR_NOMEM;
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < ns && svcs[j] != v[i].svc)
            j++;
        if (j == ns)
            svcs[ns++] = v[i].svc;
    }
    out->services = fl_arena_alloc(a, ns * sizeof(char *));
    if (!out->services)
        rc = FL_ERR_NOMEM;
    for (size_t i = 0; i < ns && rc == FL_OK; i++) {
        fl_str_t s;
        if ((rc = dict_get_arena(r, svcs[i], a, &s)) == FL_OK)
            out->services[i] = s.ptr;
    }
    if (rc == FL_OK) {
        out->n_services = ns;
        fl_sort(out->services, ns, sizeof(char *), cmp_cstr);
    }
    free(svcs);
    return rc;
}

/* Summaries of n traces: one pass over the trace filters, each block decoded once. */
static int summarize_many(fl__reader_t *r, uint64_t epoch, const cand_t *cands, size_t n,
                          fl_arena_t *a, fl_trace_summary_t *out)
{
    uint8_t(*ids)[16] = malloc(n * 16);
    sum_vec_t *vecs = calloc(n, sizeof(*vecs));
    fl__tix_hit_t *hits = NULL;
    size_t n_hits = 0;
    int rc = FL_OK;
    if (!ids || !vecs) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(ids[i], cands[i].trace, 16);
        memset(&out[i], 0, sizeof(out[i]));
        memcpy(out[i].trace_id, cands[i].trace, 16);
    }
    if ((rc = fl__tix_probe_many(&r->s->tix, (const uint8_t(*)[16])ids, n, epoch, &hits,
                                 &n_hits)) != FL_OK)
        goto out;
    for (size_t h = 0; h < n_hits && rc == FL_OK;) {
        size_t he = h;
        while (he < n_hits && hits[he].block_id == hits[h].block_id)
            he++;
        const fl__light_t *L;
        rc = load_light(r, hits[h].block_id, he - h == 1 ? ids[hits[h].trace] : NULL, &L);
        for (size_t k = h; rc == FL_OK && L && k < he; k++)
            rc = sum_collect(L, ids[hits[k].trace], &vecs[hits[k].trace]);
        h = he;
    }
    for (size_t i = 0; i < n && rc == FL_OK; i++)
        rc = sum_finish(r, &vecs[i], a, &out[i]);
out:
    if (vecs)
        for (size_t i = 0; i < n; i++)
            free(vecs[i].v);
    free(vecs);
    free(ids);
    free(hits);
    return rc;
}

static int cmp_summary_newest(const void *a, const void *b)
{
    const fl_trace_summary_t *x = a, *y = b;
    if (x->start_ns != y->start_ns)
        return x->start_ns > y->start_ns ? -1 : 1;
    return memcmp(x->trace_id, y->trace_id, 16);
}

static sqlite3_int64 clamp_i64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

/* Scan one block's light columns for spans matching the query. */
static int scan_block(fl__reader_t *r, int64_t id, const fl_trace_query_t *q, int64_t svc_id,
                      int64_t name_id, uint64_t end_ns, cand_set_t *c)
{
    const fl__light_t *L;
    int rc = load_light(r, id, NULL, &L);
    if (rc != FL_OK || !L)
        return rc;
    for (uint32_t i = 0; i < L->n; i++) {
        if (svc_id && L->svc[i] != (uint64_t)svc_id)
            continue;
        if (name_id && L->name[i] != (uint64_t)name_id)
            continue;
        uint64_t st = L->start[i];
        if (st < q->start_ns || st > end_ns)
            continue;
        uint64_t dur = L->end[i] > st ? L->end[i] - st : 0;
        if (dur < q->min_duration_ns)
            continue;
        if (q->errors_only && L->status[i] != FL_STATUS_ERROR)
            continue;
        if ((rc = cand_note(c, L->trace_ids + (size_t)L->row_trace[i] * 16, st)) != FL_OK)
            return rc;
    }
    return FL_OK;
}

int fl_store_search_traces(fl_store_t *s, const fl_trace_query_t *query, fl_arena_t *arena,
                           fl_trace_summary_t **out, size_t *n_out)
{
    fl_trace_query_t q = {0};
    cand_set_t c = {0};
    id_set_t seen = {0};
    int64_t svc_id = 0, name_id = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    if (query)
        q = *query;
    size_t limit = q.limit ? q.limit : 20;
    if (limit > FL__SEARCH_MAX_LIMIT)
        limit = FL__SEARCH_MAX_LIMIT;
    uint64_t end_ns = q.end_ns ? q.end_ns : UINT64_MAX;
    if (q.end_ns && q.start_ns > q.end_ns)
        return FL_OK;

    uint64_t epoch;
    fl__reader_t *r = borrow(s);
    if ((rc = begin_read(r, &epoch)) != FL_OK)
        goto out;
    if (q.service && (rc = dict_find(r, DICT_SERVICE, q.service, &svc_id)) != FL_OK)
        goto done;
    if (q.operation && (rc = dict_find(r, DICT_NAME, q.operation, &name_id)) != FL_OK)
        goto done;
    if ((q.service && !svc_id) || (q.operation && !name_id))
        goto done; /* unknown service or operation: nothing matches */

    sqlite3_stmt *st = q.service ? r->search_svc : r->search_all;
    if (q.service)
        sqlite3_bind_int64(st, 1, svc_id);
    if (q.operation && q.service)
        sqlite3_bind_int64(st, 2, name_id);
    sqlite3_bind_int64(st, 3, clamp_i64(q.start_ns));
    sqlite3_bind_int64(st, 4, clamp_i64(end_ns));
    sqlite3_bind_int64(st, 5, clamp_i64(q.min_duration_ns));
    sqlite3_bind_int64(st, 6, q.errors_only ? 1 : 0);
    uint64_t kth = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        uint64_t max_start = (uint64_t)sqlite3_column_int64(st, 1);
        if (c.n >= limit && max_start < (uint64_t)clamp_i64(kth))
            break; /* no later block can hold a newer match (both sides clamped alike) */
        int added = id_set_add(&seen, id);
        if (added < 0) {
            rc = added;
            break;
        }
        if (!added)
            continue;
        if ((rc = scan_block(r, id, &q, svc_id, name_id, end_ns, &c)) != FL_OK)
            break;
        if (c.n >= limit) {
            if ((rc = cand_trim(&c, limit)) != FL_OK)
                break;
            kth = c.v[limit - 1].best;
        }
    }
    fl__done(st);
    if (rc == FL_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = fl__sql_err(src);
    if (rc != FL_OK)
        goto done;
    if ((rc = cand_trim(&c, limit)) != FL_OK)
        goto done;

    fl_trace_summary_t *res = c.n ? fl_arena_calloc(arena, c.n, sizeof(*res)) : NULL;
    if (c.n && !res) {
        rc = FL_ERR_NOMEM;
        goto done;
    }
    size_t m = 0;
    if (c.n)
        rc = summarize_many(r, epoch, c.v, c.n, arena, res);
    for (size_t i = 0; i < c.n && rc == FL_OK; i++)
        if (res[i].n_spans) /* always, unless a block vanished under us */
            res[m++] = res[i];
    if (rc == FL_OK) {
        if (m > 1)
            fl_sort(res, m, sizeof(*res), cmp_summary_newest);
        *out = m ? res : NULL;
        *n_out = m;
    }
done:
    end_read(r);
out:
    give_back(s, r);
    cand_dispose(&c);
    free(seen.slots);
    return rc;
}

/* ---------------------------------------------------------------- services */

int fl_store_list_services(fl_store_t *s, fl_arena_t *arena, fl_service_info_t **out, size_t *n)
{
    typedef struct row {
        const char *svc;
        const char *op;
        uint64_t count;
    } row_t;
    row_t *rows = NULL;
    size_t nr = 0, cap = 0;
    int rc = FL_OK, src;
    *out = NULL;
    *n = 0;

    fl__reader_t *r = borrow(s);
    sqlite3_stmt *st = r->list_services;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (nr == cap) {
            cap = cap ? cap * 2 : 64;
            row_t *nv = realloc(rows, cap * sizeof(*nv));
            if (!nv) {
                rc = FL_ERR_NOMEM;
                break;
            }
            rows = nv;
        }
        const char *sv = sqlite3_column_blob(st, 0);
        int svl = sqlite3_column_bytes(st, 0);
        const char *op = sqlite3_column_blob(st, 1);
        int opl = sqlite3_column_bytes(st, 1);
        rows[nr].svc = fl_arena_strndup(arena, sv ? sv : "", (size_t)svl);
        rows[nr].op = fl_arena_strndup(arena, op ? op : "", (size_t)opl);
        rows[nr].count = (uint64_t)sqlite3_column_int64(st, 2);
        if (!rows[nr].svc || !rows[nr].op) {
            rc = FL_ERR_NOMEM;
            break;
        }
        nr++;
    }
    fl__done(st);
    give_back(s, r);
    if (rc == FL_OK && src != SQLITE_DONE)
        rc = fl__sql_err(src);
    if (rc != FL_OK)
        goto out;

    size_t ns = 0;
    for (size_t i = 0; i < nr; i++)
        if (i == 0 || strcmp(rows[i].svc, rows[i - 1].svc) != 0)
            ns++;
    fl_service_info_t *res = ns ? fl_arena_calloc(arena, ns, sizeof(*res)) : NULL;
    if (ns && !res) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < nr;) {
        size_t j = i;
        while (j < nr && strcmp(rows[j].svc, rows[i].svc) == 0)
            j++;
        fl_service_info_t *si = &res[k++];
        si->name = rows[i].svc;
        si->n_operations = j - i;
        si->operations = fl_arena_alloc(arena, (j - i) * sizeof(char *));
        if (!si->operations) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        for (size_t x = i; x < j; x++) {
            si->operations[x - i] = rows[x].op;
            si->span_count += rows[x].count;
        }
        i = j;
    }
    *out = res;
    *n = ns;
out:
    free(rows);
    return rc;
}

/* ---------------------------------------------------------------- integrity */

int fl_store_integrity_check(fl_store_t *s, char *err, size_t errlen)
{
    fl__reader_t *r = borrow(s);
    sqlite3_stmt *st = r->integrity;
    int rc = FL_OK;
    int src = sqlite3_step(st);
    const char *msg = src == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!msg || strcmp(msg, "ok") != 0) {
        rc = src == SQLITE_ROW ? FL_ERR_STORE_CORRUPT : fl__sql_err(src);
        if (err && errlen)
            snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(r->db));
    }
    fl__done(st);
    give_back(s, r);
    return rc;
}
