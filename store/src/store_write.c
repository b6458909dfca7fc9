/* SPDX-License-Identifier: Apache-2.0 */
/* The writer thread: turns a group of queued batches into column blocks in one transaction
 * (dedup, dictionary/resource/scope ids, sort, encode, insert, commit), then calls back;
 * merges runs of small blocks; loads the persisted state at open. */
#include "store_int.h"
#include "store_sql.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

enum { DICT_SERVICE = 1, DICT_NAME = 2 };

#define BCACHE_MAX_ENTRIES 262144

/* write_group's signal that a span value nests too deep: the group is rolled back and
 * written again without the offending batch (w->bad_batch). Not an SQLite code. */
#define WRITE_TOO_DEEP (-1)

/* Cache of byte strings -> ids (dictionary entries, resource and scope bodies). It is only
 * a cache: SQLite holds the truth, so it is cleared when full or after a rollback. */
typedef struct bc_ent {
    uint64_t hash;
    uint8_t *bytes;
    uint32_t len;
    uint32_t kind;
    uint32_t id;
    uint32_t aux;
} bc_ent_t;

typedef struct bcache {
    bc_ent_t *ents;
    size_t cap; /* power of two */
    size_t n;
} bcache_t;

/* A span on its way into a block: sort key plus the resolved row. */
typedef struct sent {
    uint64_t t_hi;
    uint64_t t_lo;
    uint64_t s_id;
    uint64_t key;
    uint32_t seq;
    uint32_t batch;
    fl__row_t row;
} sent_t;

/* Radix sort key: the first 8 bytes of the trace id and the entry index. */
typedef struct skey {
    uint64_t k;
    uint32_t i;
} skey_t;

typedef struct pend_block {
    int64_t id;
    uint32_t n_spans;
    uint8_t lo[16];
    uint8_t hi[16];
    size_t bloom_off;
    size_t bloom_len;
} pend_block_t;

struct fl__writer {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *meta_get, *meta_put;
    sqlite3_stmt *dict_find, *dict_insert;
    sqlite3_stmt *res_find, *res_insert, *scope_find, *scope_insert;
    sqlite3_stmt *block_insert, *heavy_insert, *bloom_insert, *ops_insert, *svcops_upsert;
    sqlite3_stmt *block_max, *bloom_load, *blocks_newest, *block_light, *block_heavy;
    sqlite3_stmt *block_del, *heavy_del, *bloom_del, *ops_del;
    sqlite3_stmt *blocks_expired, *svcops_expire, *svcops_prune;
    int page_size;
    fl__dec_t *dec; /* compaction reads blocks back */
    /* The trailing run of small blocks (no other block between them), oldest first. */
    struct {
        int64_t id;
        uint32_t n;
    } tail[FL__COMPACT_MAX_RUN];
    size_t tail_n;
    size_t tail_spans;

    fl__enc_t *enc;
    fl__dedup_t dedup;
    bcache_t dict;
    bcache_t res;
    bcache_t scope;
    int64_t next_block_id;
    uint64_t spans_stored;
    uint64_t watermark;
    uint64_t epoch; /* layout epoch (see fl__tix_t) */
    uint32_t bad_batch;
    uint64_t retain_wm;   /* watermark at the last retention step */
    uint64_t retain_keep; /* retention of the last step */
    int retain_more;      /* the last step was full: more expired blocks may remain */

    sent_t *ents;
    size_t ents_cap;
    size_t n_ents;          /* entries of the last group written (ents[0 .. n_ents)) */
    uint8_t *kept;          /* per entry: 1 stored, 2 stored but far in the future */
    uint64_t *future_limit; /* per batch of the group: end times past this are "future" */
    size_t future_cap;
    uint64_t n_future; /* future spans in the last group written */
    uint32_t *order;   /* ents sorted by (trace, span, seq) */
    skey_t *skeys;
    skey_t *skeys_tmp;
    uint64_t *batch_keys; /* dedup keys of one batch */
    size_t batch_keys_cap;
    fl__row_t *rows;
    fl__row_t *rows2; /* rows regrouped by block */
    uint32_t *blk_of; /* block number of each entry */
    size_t rows_cap;
    fl__sb_t light, heavy, bloom, body;
    fl__sb_t blooms; /* blooms of the blocks written in the open transaction */
    pend_block_t *pend;
    size_t pend_n, pend_cap;
    uint64_t *svcops_keys;
    uint64_t *svcops_cnt;
    size_t svcops_n, svcops_cap;
    /* compaction's decode space, kept warm between merges */
    fl_arena_t *cmp_arena;
    fl_span_t *cmp_spans;
    fl__row_t *cmp_rows;
    size_t cmp_cap;
};

/* ---------------------------------------------------------------- byte cache */

static void bc_clear(bcache_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->ents[i].bytes);
    free(c->ents);
    memset(c, 0, sizeof(*c));
}

static bc_ent_t *bc_find(bcache_t *c, uint64_t hash, uint32_t kind, const void *p, size_t len)
{
    if (!c->cap)
        return NULL;
    size_t mask = c->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        bc_ent_t *e = &c->ents[i];
        if (!e->bytes)
            return NULL;
        if (e->hash == hash && e->kind == kind && e->len == len &&
            (len == 0 || memcmp(e->bytes, p, len) == 0))
            return e;
    }
}

static void bc_put(bcache_t *c, uint64_t hash, uint32_t kind, const void *p, size_t len,
                   uint32_t id, uint32_t aux)
{
    if (len > UINT32_MAX)
        return;
    if (c->n >= BCACHE_MAX_ENTRIES)
        bc_clear(c);
    if ((c->n + 1) * 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        bc_ent_t *ne = calloc(cap, sizeof(*ne));
        if (!ne)
            return; /* a cache: failing to remember is fine */
        for (size_t i = 0; i < c->cap; i++) {
            bc_ent_t *e = &c->ents[i];
            if (!e->bytes)
                continue;
            size_t j = (size_t)e->hash & (cap - 1);
            while (ne[j].bytes)
                j = (j + 1) & (cap - 1);
            ne[j] = *e;
        }
        free(c->ents);
        c->ents = ne;
        c->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    if (len)
        memcpy(copy, p, len);
    size_t j = (size_t)hash & (c->cap - 1);
    while (c->ents[j].bytes)
        j = (j + 1) & (c->cap - 1);
    c->ents[j] = (bc_ent_t){hash, copy, (uint32_t)len, kind, id, aux};
    c->n++;
}

/* ---------------------------------------------------------------- create / free */

#define WS(field, sql)                                                                             \
    {                                                                                              \
        offsetof(fl__writer_t, field), sql                                                         \
    }
static const struct {
    size_t off;
    const char *sql;
} writer_stmts[] = {
    WS(begin, FL_SQL_BEGIN_IMMEDIATE),       WS(commit, FL_SQL_COMMIT),
    WS(rollback, FL_SQL_ROLLBACK),           WS(meta_get, FL_SQL_META_GET),
    WS(meta_put, FL_SQL_META_PUT),           WS(dict_find, FL_SQL_DICT_FIND),
    WS(dict_insert, FL_SQL_DICT_INSERT),     WS(res_find, FL_SQL_RES_FIND),
    WS(res_insert, FL_SQL_RES_INSERT),       WS(scope_find, FL_SQL_SCOPE_FIND),
    WS(scope_insert, FL_SQL_SCOPE_INSERT),   WS(block_insert, FL_SQL_BLOCK_INSERT),
    WS(heavy_insert, FL_SQL_HEAVY_INSERT),   WS(bloom_insert, FL_SQL_BLOOM_INSERT),
    WS(ops_insert, FL_SQL_OPS_INSERT),       WS(svcops_upsert, FL_SQL_SVCOPS_UPSERT),
    WS(block_max, FL_SQL_BLOCK_MAX_ID),      WS(bloom_load, FL_SQL_BLOOM_LOAD),
    WS(blocks_newest, FL_SQL_BLOCKS_NEWEST), WS(block_light, FL_SQL_BLOCK_LIGHT),
    WS(block_heavy, FL_SQL_BLOCK_HEAVY),     WS(block_del, FL_SQL_BLOCK_DELETE),
    WS(heavy_del, FL_SQL_HEAVY_DELETE),      WS(bloom_del, FL_SQL_BLOOM_DELETE),
    WS(ops_del, FL_SQL_OPS_DELETE),          WS(blocks_expired, FL_SQL_BLOCKS_EXPIRED),
    WS(svcops_expire, FL_SQL_SVCOPS_EXPIRE), WS(svcops_prune, FL_SQL_SVCOPS_PRUNE),
};
#undef WS
#define WSTMT(w, i) ((sqlite3_stmt **)((char *)(w) + writer_stmts[i].off))

int fl__writer_new(fl_store_t *s, sqlite3 *db, fl__writer_t **out, char *err, size_t errlen)
{
    int rc;
    fl__writer_t *w = calloc(1, sizeof(*w));
    if (!w) {
        sqlite3_close_v2(db);
        return FL_ERR_NOMEM;
    }
    w->db = db;
    *out = w;
    for (size_t i = 0; i < sizeof(writer_stmts) / sizeof(writer_stmts[0]); i++)
        if ((rc = fl__prepare(db, writer_stmts[i].sql, WSTMT(w, i), err, errlen)) != FL_OK)
            return rc;
    sqlite3_stmt *ps = NULL;
    if ((rc = fl__prepare(db, FL_SQL_PRAGMA_PAGE_SIZE, &ps, err, errlen)) != FL_OK)
        return rc;
    w->page_size = sqlite3_step(ps) == SQLITE_ROW ? sqlite3_column_int(ps, 0) : 4096;
    sqlite3_finalize(ps);
    if (w->page_size <= 0)
        w->page_size = 4096;
    if (!(w->enc = fl__enc_new()) || !(w->dec = fl__dec_new()))
        return FL_ERR_NOMEM;
    if ((rc = fl__dedup_init(&w->dedup, s->opts.dedup_window_spans)) != FL_OK) {
        snprintf(err, errlen, "cannot allocate the dedup window of %zu spans",
                 s->opts.dedup_window_spans);
        return rc;
    }
    return FL_OK;
}

void fl__writer_free(fl__writer_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < sizeof(writer_stmts) / sizeof(writer_stmts[0]); i++)
        sqlite3_finalize(*WSTMT(w, i));
    sqlite3_close_v2(w->db);
    fl__enc_free(w->enc);
    fl__dec_free(w->dec);
    fl__dedup_dispose(&w->dedup);
    bc_clear(&w->dict);
    bc_clear(&w->res);
    bc_clear(&w->scope);
    free(w->ents);
    free(w->kept);
    free(w->future_limit);
    free(w->order);
    free(w->skeys);
    free(w->skeys_tmp);
    free(w->batch_keys);
    free(w->rows);
    free(w->rows2);
    free(w->blk_of);
    fl__sb_dispose(&w->light);
    fl__sb_dispose(&w->heavy);
    fl__sb_dispose(&w->bloom);
    fl__sb_dispose(&w->body);
    fl__sb_dispose(&w->blooms);
    free(w->pend);
    free(w->svcops_keys);
    free(w->svcops_cnt);
    fl_arena_free(w->cmp_arena);
    free(w->cmp_spans);
    free(w->cmp_rows);
    free(w);
}

/* ---------------------------------------------------------------- meta */

static int meta_get(fl__writer_t *w, const char *key, uint64_t *out)
{
    sqlite3_bind_text(w->meta_get, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(w->meta_get);
    if (rc == SQLITE_ROW)
        *out = (uint64_t)sqlite3_column_int64(w->meta_get, 0);
    fl__done(w->meta_get);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int meta_put(fl__writer_t *w, const char *key, uint64_t v)
{
    sqlite3_bind_text(w->meta_put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(w->meta_put, 2, (sqlite3_int64)v);
    int rc = fl__step_done(w->meta_put);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---------------------------------------------------------------- open-time loading */

static int load_dedup(fl_store_t *s, fl__writer_t *w, char *err, size_t errlen)
{
    int64_t *ids = NULL;
    size_t n_ids = 0, cap = 0;
    uint64_t have = 0;
    int rc = FL_OK, src;
    fl__dec_t *dec = fl__dec_new();
    if (!dec)
        return FL_ERR_NOMEM;
    while (have < s->opts.dedup_window_spans &&
           (src = sqlite3_step(w->blocks_newest)) == SQLITE_ROW) {
        if (n_ids == cap) {
            cap = cap ? cap * 2 : 256;
            int64_t *ni = realloc(ids, cap * sizeof(*ni));
            if (!ni) {
                rc = FL_ERR_NOMEM;
                break;
            }
            ids = ni;
        }
        ids[n_ids++] = sqlite3_column_int64(w->blocks_newest, 0);
        have += (uint64_t)sqlite3_column_int64(w->blocks_newest, 1);
    }
    fl__done(w->blocks_newest);
    /* Oldest first, so the newest keys are the last to age out. */
    for (size_t k = n_ids; k-- > 0 && rc == FL_OK;) {
        sqlite3_bind_int64(w->block_light, 1, ids[k]);
        if ((src = sqlite3_step(w->block_light)) == SQLITE_ROW) {
            uint32_t n = (uint32_t)sqlite3_column_int64(w->block_light, 0);
            const void *blob = sqlite3_column_blob(w->block_light, 2);
            size_t len = (size_t)sqlite3_column_bytes(w->block_light, 2);
            const fl__light_t *L;
            rc = fl__dec_light(dec, blob, len, n, &L);
            for (uint32_t r = 0; rc == FL_OK && r < L->n_runs; r++) {
                for (uint32_t j = L->run_start[r]; j < L->run_start[r + 1]; j++) {
                    /* A key stored twice (an old duplicate) just takes two slots. */
                    fl__dedup_insert(&w->dedup,
                                     fl__span_key(L->trace_ids + (size_t)r * 16,
                                                  L->span_ids + (size_t)L->trace_rows[j] * 8));
                }
            }
            if (rc != FL_OK)
                snprintf(err, errlen, "block %lld is unreadable: %s", (long long)ids[k],
                         fl_strerror(rc));
        }
        fl__done(w->block_light);
    }
    free(ids);
    fl__dec_free(dec);
    return rc;
}

int fl__writer_load(fl_store_t *s, char *err, size_t errlen)
{
    fl__writer_t *w = s->w;
    int rc;
    uint64_t v = 0;
    if ((rc = meta_get(w, "spans_stored", &v)) != SQLITE_OK)
        goto sqlfail;
    w->spans_stored = v;
    v = 0;
    if ((rc = meta_get(w, "watermark_ns", &v)) != SQLITE_OK)
        goto sqlfail;
    w->watermark = v;
    v = 0;
    if ((rc = meta_get(w, "layout_epoch", &v)) != SQLITE_OK)
        goto sqlfail;
    w->epoch = v;
    if ((rc = sqlite3_step(w->block_max)) != SQLITE_ROW)
        goto sqlfail;
    w->next_block_id = sqlite3_column_int64(w->block_max, 0) + 1;
    fl__done(w->block_max);

    while ((rc = sqlite3_step(w->bloom_load)) == SQLITE_ROW) {
        const void *lo = sqlite3_column_blob(w->bloom_load, 1);
        int lo_n = sqlite3_column_bytes(w->bloom_load, 1);
        const void *hi = sqlite3_column_blob(w->bloom_load, 2);
        int hi_n = sqlite3_column_bytes(w->bloom_load, 2);
        const void *bl = sqlite3_column_blob(w->bloom_load, 3);
        int bl_n = sqlite3_column_bytes(w->bloom_load, 3);
        static const uint8_t zero[16], ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        if (lo_n != 16 || hi_n != 16) { /* damaged range: keep the block findable */
            lo = zero;
            hi = ones;
        }
        int arc = fl__tix_add(&s->tix, sqlite3_column_int64(w->bloom_load, 0), lo, hi,
                              bl ? bl : zero, bl ? (size_t)bl_n : 0, 0);
        if (arc != FL_OK) {
            fl__done(w->bloom_load);
            snprintf(err, errlen, "out of memory loading the trace index");
            return arc;
        }
    }
    fl__done(w->bloom_load);
    if (rc != SQLITE_DONE)
        goto sqlfail;
    /* The trailing run of small blocks, for compaction. */
    int64_t ids[FL__COMPACT_MAX_RUN];
    uint32_t ns[FL__COMPACT_MAX_RUN];
    size_t k = 0;
    while (k < FL__COMPACT_MAX_RUN && (rc = sqlite3_step(w->blocks_newest)) == SQLITE_ROW) {
        uint32_t n = (uint32_t)sqlite3_column_int64(w->blocks_newest, 1);
        if (n >= FL__COMPACT_SMALL)
            break;
        ids[k] = sqlite3_column_int64(w->blocks_newest, 0);
        ns[k++] = n;
    }
    fl__done(w->blocks_newest);
    for (size_t i = 0; i < k; i++) {
        w->tail[i].id = ids[k - 1 - i];
        w->tail[i].n = ns[k - 1 - i];
        w->tail_spans += ns[k - 1 - i];
    }
    w->tail_n = k;
    if ((rc = load_dedup(s, w, err, errlen)) != FL_OK)
        return rc;
    s->stats.spans_stored = w->spans_stored;
    s->stats.watermark_ns = w->watermark;
    return FL_OK;
sqlfail:
    snprintf(err, errlen, "loading store state: %s", sqlite3_errmsg(w->db));
    fl__done(w->block_max);
    return fl__sql_err(rc) == FL_ERR_STORE_CORRUPT ? FL_ERR_STORE_CORRUPT : FL_ERR_STORE;
}

void fl__writer_apply_limits(fl_store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t want = s->max_db_bytes;
    uint64_t have = s->max_db_bytes_applied;
    pthread_mutex_unlock(&s->mu);
    if (want == have)
        return;
    /* A pragma takes no bound parameter: the page count is formatted into its text. */
    unsigned long long pages = want ? want / (uint64_t)s->w->page_size : 4294967294ULL;
    if (pages < 1)
        pages = 1;
    char sql[96];
    snprintf(sql, sizeof(sql), FL_SQL_PRAGMA_MAX_PAGES_FMT, pages);
    if (sqlite3_exec(s->w->db, sql, NULL, NULL, NULL) == SQLITE_OK) {
        pthread_mutex_lock(&s->mu);
        s->max_db_bytes_applied = want;
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---------------------------------------------------------------- id resolution */

static int dict_id(fl__writer_t *w, uint32_t kind, const char *p, size_t len, uint32_t *id)
{
    uint64_t h = fl__hash_bytes(p, len, kind);
    bc_ent_t *e = bc_find(&w->dict, h, kind, p, len);
    if (e) {
        *id = e->id;
        return SQLITE_OK;
    }
    sqlite3_bind_int(w->dict_find, 1, (int)kind);
    sqlite3_bind_blob(w->dict_find, 2, p, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(w->dict_find);
    int64_t found = rc == SQLITE_ROW ? sqlite3_column_int64(w->dict_find, 0) : -1;
    fl__done(w->dict_find);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rc;
    if (found < 0) {
        sqlite3_bind_int(w->dict_insert, 1, (int)kind);
        sqlite3_bind_blob(w->dict_insert, 2, p, (int)len, SQLITE_STATIC);
        if ((rc = fl__step_done(w->dict_insert)) != SQLITE_DONE)
            return rc;
        found = sqlite3_last_insert_rowid(w->db);
    }
    if (found > UINT32_MAX)
        return SQLITE_FULL;
    *id = (uint32_t)found;
    bc_put(&w->dict, h, kind, p, len, *id, 0);
    return SQLITE_OK;
}

/* Find or insert a body (resource or scope). aux carries the resource's service id. */
static int body_id(fl__writer_t *w, bcache_t *c, sqlite3_stmt *find, sqlite3_stmt *ins,
                   int with_service, uint32_t service_id, uint32_t *id)
{
    const uint8_t *p = w->body.p;
    size_t len = w->body.len;
    uint64_t h = fl__hash_bytes(p, len, 0x5eed);
    bc_ent_t *e = bc_find(c, h, 0, p, len);
    if (e) {
        *id = e->id;
        return SQLITE_OK;
    }
    int64_t found = -1;
    int rc;
    sqlite3_bind_int64(find, 1, (sqlite3_int64)h);
    while ((rc = sqlite3_step(find)) == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(find, 1);
        size_t bl = (size_t)sqlite3_column_bytes(find, 1);
        if (bl == len && (len == 0 || memcmp(b, p, len) == 0)) {
            found = sqlite3_column_int64(find, 0);
            rc = SQLITE_DONE;
            break;
        }
    }
    fl__done(find);
    if (rc != SQLITE_DONE)
        return rc;
    if (found < 0) {
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)h);
        if (with_service) {
            sqlite3_bind_int64(ins, 2, service_id);
            sqlite3_bind_blob(ins, 3, p, (int)len, SQLITE_STATIC);
        } else {
            sqlite3_bind_blob(ins, 2, p, (int)len, SQLITE_STATIC);
        }
        if ((rc = fl__step_done(ins)) != SQLITE_DONE)
            return rc;
        found = sqlite3_last_insert_rowid(w->db);
    }
    if (found > UINT32_MAX)
        return SQLITE_FULL;
    *id = (uint32_t)found;
    bc_put(c, h, 0, p, len, *id, service_id);
    return SQLITE_OK;
}

static const fl_str_t unknown_service = {"unknown_service", 15};

static int resource_ids(fl__writer_t *w, const fl_resource_t *res, uint32_t *res_id,
                        uint32_t *svc_id)
{
    int rc;
    fl_str_t svc = res ? res->service_name : unknown_service;
    if ((rc = dict_id(w, DICT_SERVICE, svc.ptr ? svc.ptr : "", svc.ptr ? svc.len : 0, svc_id)) !=
        SQLITE_OK)
        return rc;
    if (!res) {
        *res_id = 0;
        return SQLITE_OK;
    }
    w->body.len = 0;
    w->body.oom = 0;
    fl__resource_body(&w->body, res);
    if (w->body.oom)
        return SQLITE_NOMEM;
    return body_id(w, &w->res, w->res_find, w->res_insert, 1, *svc_id, res_id);
}

static int scope_id(fl__writer_t *w, const fl_scope_t *scope, uint32_t *id)
{
    if (!scope) {
        *id = 0;
        return SQLITE_OK;
    }
    w->body.len = 0;
    w->body.oom = 0;
    fl__scope_body(&w->body, scope);
    if (w->body.oom)
        return SQLITE_NOMEM;
    return body_id(w, &w->scope, w->scope_find, w->scope_insert, 0, 0, id);
}

/* ---------------------------------------------------------------- sorting */

static int sent_less(const sent_t *x, const sent_t *y)
{
    if (x->t_hi != y->t_hi)
        return x->t_hi < y->t_hi;
    if (x->t_lo != y->t_lo)
        return x->t_lo < y->t_lo;
    if (x->s_id != y->s_id)
        return x->s_id < y->s_id;
    return x->seq < y->seq;
}

static const sent_t *cmp_base;

static int cmp_order(const void *a, const void *b)
{
    const sent_t *x = &cmp_base[*(const uint32_t *)a], *y = &cmp_base[*(const uint32_t *)b];
    return sent_less(x, y) ? -1 : sent_less(y, x);
}

/* Order entries by (trace id, span id, submission): an LSD radix sort on the first 8 bytes
 * of the trace id (stable, so submission order survives), then the rare runs that share
 * those bytes are finished by comparison. */
static void sort_entries(fl__writer_t *w, size_t n)
{
    if (n < 2) {
        if (n == 1)
            w->order[0] = 0;
        return;
    }
    if (n < 512) {
        for (size_t i = 0; i < n; i++)
            w->order[i] = (uint32_t)i;
        cmp_base = w->ents; /* writer thread only */
        fl_sort(w->order, n, sizeof(uint32_t), cmp_order);
        return;
    }
    skey_t *a = w->skeys, *t = w->skeys_tmp;
    for (size_t i = 0; i < n; i++) {
        a[i].k = w->ents[i].t_hi;
        a[i].i = (uint32_t)i;
    }
    enum { BITS = 11, NB = 1 << BITS };
    size_t cnt[NB];
    for (int shift = 0; shift < 64; shift += BITS) {
        memset(cnt, 0, sizeof(cnt));
        for (size_t i = 0; i < n; i++)
            cnt[(a[i].k >> shift) & (NB - 1)]++;
        if (cnt[(a[0].k >> shift) & (NB - 1)] == n)
            continue; /* every key shares this digit */
        size_t sum = 0;
        for (size_t d = 0; d < NB; d++) {
            size_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            t[cnt[(a[i].k >> shift) & (NB - 1)]++] = a[i];
        skey_t *x = a;
        a = t;
        t = x;
    }
    for (size_t i = 0; i < n; i++)
        w->order[i] = a[i].i;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && a[j].k == a[i].k)
            j++;
        if (j - i > 16) {
            cmp_base = w->ents;
            fl_sort(w->order + i, j - i, sizeof(uint32_t), cmp_order);
        } else {
            for (size_t x = i + 1; x < j; x++) { /* spans of one trace: a handful */
                uint32_t v = w->order[x];
                size_t y = x;
                while (y > i && sent_less(&w->ents[v], &w->ents[w->order[y - 1]])) {
                    w->order[y] = w->order[y - 1];
                    y--;
                }
                w->order[y] = v;
            }
        }
        i = j;
    }
}

/* ---------------------------------------------------------------- writing one group */

static int svcops_add(fl__writer_t *w, uint32_t svc, uint32_t name, uint64_t cnt)
{
    uint64_t key = ((uint64_t)svc << 32) | name;
    for (size_t i = 0; i < w->svcops_n; i++)
        if (w->svcops_keys[i] == key) {
            w->svcops_cnt[i] += cnt;
            return FL_OK;
        }
    if (w->svcops_n == w->svcops_cap) {
        size_t cap = w->svcops_cap ? w->svcops_cap * 2 : 64;
        uint64_t *k = realloc(w->svcops_keys, cap * sizeof(*k));
        if (k)
            w->svcops_keys = k;
        uint64_t *c = realloc(w->svcops_cnt, cap * sizeof(*c));
        if (c)
            w->svcops_cnt = c;
        if (!k || !c)
            return FL_ERR_NOMEM;
        w->svcops_cap = cap;
    }
    w->svcops_keys[w->svcops_n] = key;
    w->svcops_cnt[w->svcops_n++] = cnt;
    return FL_OK;
}

/* Encode and insert one block of rows. Returns an SQLite code (or SQLITE_NOMEM). */
/* Encode rows as block id and insert it (blocks, heavy chunks, filter, op summaries). The
 * filter stays in w->bloom. Returns an SQLite code, or WRITE_TOO_DEEP. */
static int insert_block(fl__writer_t *w, const fl__row_t *rows, size_t n, int64_t id,
                        int count_svcops, fl__block_meta_t *meta_out)
{
    fl__block_meta_t meta;
    const fl__op_sum_t *ops;
    size_t n_ops;
    int rc;
    uint32_t bad_seq = 0;
    const size_t *chunk_off;
    size_t n_chunks;
    int erc = fl__enc_block(w->enc, rows, n, &w->light, &w->heavy, &chunk_off, &n_chunks, &w->bloom,
                            &meta, &ops, &n_ops, &bad_seq);
    if (erc == FL_ERR_TOO_DEEP) {
        w->bad_batch = w->ents[bad_seq].batch;
        return WRITE_TOO_DEEP;
    }
    if (erc != FL_OK)
        return erc == FL_ERR_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;

    sqlite3_stmt *b = w->block_insert;
    sqlite3_bind_int64(b, 1, id);
    sqlite3_bind_int64(b, 2, meta.n_spans);
    sqlite3_bind_int64(b, 3, meta.n_traces);
    sqlite3_bind_int64(b, 4, (sqlite3_int64)meta.min_start);
    sqlite3_bind_int64(b, 5, (sqlite3_int64)meta.max_start);
    sqlite3_bind_int64(b, 6, (sqlite3_int64)meta.max_end);
    sqlite3_bind_int64(b, 7, (sqlite3_int64)meta.max_dur);
    sqlite3_bind_int64(b, 8, meta.n_errors);
    sqlite3_bind_blob(b, 9, meta.trace_lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(b, 10, meta.trace_hi, 16, SQLITE_STATIC);
    sqlite3_bind_blob(b, 11, w->light.p, (int)w->light.len, SQLITE_STATIC);
    if ((rc = fl__step_done(b)) != SQLITE_DONE)
        return rc;
    for (size_t c = 0; c < n_chunks; c++) {
        sqlite3_bind_int64(w->heavy_insert, 1, FL__HEAVY_ROWID(id, c));
        sqlite3_bind_blob(w->heavy_insert, 2, w->heavy.p + chunk_off[c],
                          (int)(chunk_off[c + 1] - chunk_off[c]), SQLITE_STATIC);
        if ((rc = fl__step_done(w->heavy_insert)) != SQLITE_DONE)
            return rc;
    }
    sqlite3_bind_int64(w->bloom_insert, 1, id);
    sqlite3_bind_blob(w->bloom_insert, 2, w->bloom.p, (int)w->bloom.len, SQLITE_STATIC);
    if ((rc = fl__step_done(w->bloom_insert)) != SQLITE_DONE)
        return rc;
    for (size_t i = 0; i < n_ops; i++) {
        const fl__op_sum_t *o = &ops[i];
        sqlite3_stmt *st = w->ops_insert;
        sqlite3_bind_int64(st, 1, o->svc_id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)o->max_start);
        sqlite3_bind_int64(st, 3, id);
        sqlite3_bind_int64(st, 4, o->name_id);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)o->min_start);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)o->max_dur);
        sqlite3_bind_int64(st, 7, o->n_spans);
        sqlite3_bind_int64(st, 8, o->n_errors);
        if ((rc = fl__step_done(st)) != SQLITE_DONE)
            return rc;
        if (count_svcops && svcops_add(w, o->svc_id, o->name_id, o->n_spans) != FL_OK)
            return SQLITE_NOMEM;
    }
    *meta_out = meta;
    return SQLITE_OK;
}

/* A new block of the open group: inserted, then remembered for publishing. */
static int write_block(fl__writer_t *w, const fl__row_t *rows, size_t n)
{
    fl__block_meta_t meta = {0};
    int64_t id = w->next_block_id + (int64_t)w->pend_n;
    int rc = insert_block(w, rows, n, id, 1, &meta);
    if (rc != SQLITE_OK)
        return rc;

    if (w->pend_n == w->pend_cap) {
        size_t cap = w->pend_cap ? w->pend_cap * 2 : 32;
        pend_block_t *np = realloc(w->pend, cap * sizeof(*np));
        if (!np)
            return SQLITE_NOMEM;
        w->pend = np;
        w->pend_cap = cap;
    }
    pend_block_t *pb = &w->pend[w->pend_n++];
    pb->id = id;
    pb->n_spans = meta.n_spans;
    memcpy(pb->lo, meta.trace_lo, 16);
    memcpy(pb->hi, meta.trace_hi, 16);
    pb->bloom_off = w->blooms.len;
    pb->bloom_len = w->bloom.len;
    fl__sb_put(&w->blooms, w->bloom.p, w->bloom.len);
    return w->blooms.oom ? SQLITE_NOMEM : SQLITE_OK;
}

/* Resolve ids, sort, drop duplicates, write blocks, update summaries. Returns an SQLite
 * code; *n_rows receives the number of spans written. */
static int write_group(fl_store_t *s, fl__writer_t *w, fl__qent_t *list, int *bstatus,
                       size_t *stored, size_t *dups, size_t *n_rows, uint64_t *max_end)
{
    int rc;
    size_t n = 0;
    uint32_t b = 0;
    (void)s;

    /* Ingest dedup against the recent-key window, and id resolution in batch order (spans of
     * one ResourceSpans are adjacent there, so the last-pointer checks nearly always hit). */
    const fl_resource_t *last_res = NULL;
    const fl_scope_t *last_scope = NULL;
    uint32_t res_id = 0, svc_id = 0, sc_id = 0;
    int have_res = 0, have_scope = 0;
    const char *last_name = NULL;
    size_t last_name_len = 0;
    uint32_t name_id = 0;
    for (fl__qent_t *q = list; q; q = q->next, b++) {
        fl_span_batch_t *bt = q->batch;
        size_t batch_first = n;
        if (bstatus[b] != FL_OK)
            continue;
        if (bt->n_spans > w->batch_keys_cap) {
            uint64_t *nk = realloc(w->batch_keys, bt->n_spans * sizeof(uint64_t));
            if (!nk)
                return SQLITE_NOMEM;
            w->batch_keys = nk;
            w->batch_keys_cap = bt->n_spans;
        }
        for (size_t i = 0; i < bt->n_spans; i++) {
            const fl_span_t *sp = &bt->spans[i];
            w->batch_keys[i] = fl__span_key(sp->trace_id, sp->span_id);
            fl__dedup_prefetch(&w->dedup, w->batch_keys[i]);
        }
        for (size_t i = 0; i < bt->n_spans; i++) {
            const fl_span_t *sp = &bt->spans[i];
            uint64_t key = w->batch_keys[i];
            if (fl__dedup_contains(&w->dedup, key)) {
                dups[b]++;
                continue;
            }
            if (!have_res || sp->resource != last_res) {
                if (sp->resource && !fl__attrs_depth_ok(&sp->resource->attrs))
                    goto too_deep;
                if ((rc = resource_ids(w, sp->resource, &res_id, &svc_id)) != SQLITE_OK)
                    return rc;
                last_res = sp->resource;
                have_res = 1;
            }
            if (!have_scope || sp->scope != last_scope) {
                if (sp->scope && !fl__attrs_depth_ok(&sp->scope->attrs))
                    goto too_deep;
                if ((rc = scope_id(w, sp->scope, &sc_id)) != SQLITE_OK)
                    return rc;
                last_scope = sp->scope;
                have_scope = 1;
            }
            const char *np = sp->name.ptr ? sp->name.ptr : "";
            size_t nl = sp->name.ptr ? sp->name.len : 0;
            if (!last_name || nl != last_name_len || memcmp(np, last_name, nl) != 0) {
                if ((rc = dict_id(w, DICT_NAME, np, nl, &name_id)) != SQLITE_OK)
                    return rc;
                last_name = np;
                last_name_len = nl;
            }
            sent_t *e = &w->ents[n];
            e->t_hi = fl__load64be(sp->trace_id);
            e->t_lo = fl__load64be(sp->trace_id + 8);
            e->s_id = fl__load64be(sp->span_id);
            e->key = key;
            e->seq = (uint32_t)n;
            e->batch = b;
            e->row = (fl__row_t){.sp = sp,
                                 .t_hi = e->t_hi,
                                 .t_lo = e->t_lo,
                                 .s_id = e->s_id,
                                 .start = sp->start_ns,
                                 .seq = (uint32_t)n,
                                 .svc_id = svc_id,
                                 .name_id = name_id,
                                 .res_id = res_id,
                                 .scope_id = sc_id};
            n++;
        }
        continue;
    too_deep: /* a resource or scope value nests too deep: drop the whole batch */
        bstatus[b] = FL_ERR_INVALID;
        dups[b] = 0;
        n = batch_first;
    }
    sort_entries(w, n);

    /* Duplicates inside the group are now adjacent; the first submitted copy wins.
     * order[0 .. m) keeps the survivors; kept[] marks them for the commit observer. A span
     * ending far past its receipt is stored but does not move the watermark: one bad clock
     * must not make every later span late. */
    size_t m = 0;
    w->n_ents = n;
    w->n_future = 0;
    if (n > 0)
        memset(w->kept, 0, n);
    for (size_t j = 0; j < n; j++) {
        const sent_t *e = &w->ents[w->order[j]];
        if (m > 0) {
            const sent_t *p = &w->ents[w->order[m - 1]];
            if (p->t_hi == e->t_hi && p->t_lo == e->t_lo && p->s_id == e->s_id) {
                dups[e->batch]++;
                continue;
            }
        }
        int future = e->row.sp->end_ns > w->future_limit[e->batch];
        w->kept[w->order[j]] = future ? 2 : 1;
        w->n_future += (uint64_t)future;
        w->order[m] = w->order[j];
        w->rows[m] = e->row;
        stored[e->batch]++;
        if (!future && e->row.sp->end_ns > *max_end)
            *max_end = e->row.sp->end_ns;
        m++;
    }
    *n_rows = m;

    /* Blocks are runs of whole batches in arrival order, about FL__BLOCK_TARGET spans each
     * (a batch bigger than FL__BLOCK_MAX is cut): the encoder then reads span memory
     * sequentially. A stable counting pass sends each surviving row to its block, keeping
     * the (trace, span) order inside the block. */
    size_t nblk = 0, cnt = 0;
    uint32_t prev_batch = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        if (cnt > 0 &&
            ((cnt >= FL__BLOCK_TARGET && w->ents[i].batch != prev_batch) || cnt >= FL__BLOCK_MAX)) {
            nblk++;
            cnt = 0;
        }
        w->blk_of[i] = (uint32_t)nblk;
        cnt++;
        prev_batch = w->ents[i].batch;
    }
    nblk += n > 0;
    size_t *bstart = calloc(nblk + 1, sizeof(size_t));
    if (!bstart)
        return SQLITE_NOMEM;
    for (size_t j = 0; j < m; j++)
        bstart[w->blk_of[w->order[j]] + 1]++;
    for (size_t k = 0; k < nblk; k++)
        bstart[k + 1] += bstart[k];
    for (size_t j = 0; j < m; j++)
        w->rows2[bstart[w->blk_of[w->order[j]]]++] = w->rows[j];
    rc = SQLITE_OK;
    for (size_t k = 0, start = 0; k < nblk && rc == SQLITE_OK; k++) {
        size_t end = bstart[k]; /* advanced to the block's end by the scatter */
        if (end > start)
            rc = write_block(w, w->rows2 + start, end - start);
        start = end;
    }
    free(bstart);
    if (rc != SQLITE_OK)
        return rc;

    for (size_t i = 0; i < w->svcops_n; i++) {
        sqlite3_stmt *st = w->svcops_upsert;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(w->svcops_keys[i] >> 32));
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(w->svcops_keys[i] & 0xffffffffu));
        sqlite3_bind_int64(st, 3, (sqlite3_int64)w->svcops_cnt[i]);
        if ((rc = fl__step_done(st)) != SQLITE_DONE)
            return rc;
    }
    if (m > 0) {
        if ((rc = meta_put(w, "spans_stored", w->spans_stored + m)) != SQLITE_OK)
            return rc;
        uint64_t wm = *max_end > w->watermark ? *max_end : w->watermark;
        if ((rc = meta_put(w, "watermark_ns", wm)) != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int ensure_group_capacity(fl__writer_t *w, size_t n)
{
    if (n == 0)
        return FL_OK;
    if (n > w->ents_cap) {
        sent_t *ne = realloc(w->ents, n * sizeof(*ne));
        if (!ne)
            return FL_ERR_NOMEM;
        w->ents = ne;
        uint8_t *nk = realloc(w->kept, n);
        if (!nk)
            return FL_ERR_NOMEM;
        w->kept = nk;
        w->ents_cap = n;
    }
    if (n > w->rows_cap) {
        fl__row_t *nr = realloc(w->rows, n * sizeof(*nr));
        if (!nr)
            return FL_ERR_NOMEM;
        w->rows = nr;
        uint32_t *no = realloc(w->order, n * sizeof(*no));
        if (!no)
            return FL_ERR_NOMEM;
        w->order = no;
        skey_t *k1 = realloc(w->skeys, n * sizeof(*k1));
        if (!k1)
            return FL_ERR_NOMEM;
        w->skeys = k1;
        skey_t *k2 = realloc(w->skeys_tmp, n * sizeof(*k2));
        if (!k2)
            return FL_ERR_NOMEM;
        w->skeys_tmp = k2;
        fl__row_t *r2 = realloc(w->rows2, n * sizeof(*r2));
        if (!r2)
            return FL_ERR_NOMEM;
        w->rows2 = r2;
        uint32_t *bo = realloc(w->blk_of, n * sizeof(*bo));
        if (!bo)
            return FL_ERR_NOMEM;
        w->blk_of = bo;
        w->rows_cap = n;
    }
    return FL_OK;
}

/* ---------------------------------------------------------------- compaction
 * At a low ingest rate every commit writes a small block. Small blocks cost per-block bytes,
 * a filter each and decoding work on every lookup, so the writer merges the trailing run of
 * small blocks (no other block between them) into one block that takes the first id, in
 * one transaction. Duplicates inside the run (resends that passed the ingest window) are
 * dropped on the way, the oldest copy kept, as reads would. */

static int cmp_row_key(const void *a, const void *b)
{
    const fl__row_t *x = a, *y = b;
    if (x->t_hi != y->t_hi)
        return x->t_hi < y->t_hi ? -1 : 1;
    if (x->t_lo != y->t_lo)
        return x->t_lo < y->t_lo ? -1 : 1;
    if (x->s_id != y->s_id)
        return x->s_id < y->s_id ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Decode block id back into spans (into arena) and rows; *n receives its span count. */
static int read_block_rows(fl__writer_t *w, int64_t id, fl_arena_t *a, fl_span_t *spans,
                           fl__row_t *rows, size_t cap, uint32_t seq0, size_t *n_out)
{
    const fl__light_t *L = NULL;
    int rc;
    sqlite3_bind_int64(w->block_light, 1, id);
    int src = sqlite3_step(w->block_light);
    if (src != SQLITE_ROW) {
        fl__done(w->block_light);
        return src == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(src);
    }
    uint32_t n = (uint32_t)sqlite3_column_int64(w->block_light, 0);
    if (n > cap)
        rc = FL_ERR_STORE_CORRUPT;
    else
        rc = fl__dec_light(w->dec, sqlite3_column_blob(w->block_light, 2),
                           (size_t)sqlite3_column_bytes(w->block_light, 2), n, &L);
    fl__done(w->block_light);
    if (rc != FL_OK)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        fl_span_t *sp = &spans[i];
        memset(sp, 0, sizeof(*sp));
        memcpy(sp->trace_id, L->trace_ids + (size_t)L->row_trace[i] * 16, 16);
        memcpy(sp->span_id, L->span_ids + (size_t)i * 8, 8);
        memcpy(sp->parent_span_id, L->parent_ids + (size_t)i * 8, 8);
        sp->start_ns = L->start[i];
        sp->end_ns = L->end[i];
        sp->status_code = L->status[i];
        rows[i] = (fl__row_t){.sp = sp,
                              .t_hi = fl__load64be(sp->trace_id),
                              .t_lo = fl__load64be(sp->trace_id + 8),
                              .s_id = fl__load64be(sp->span_id),
                              .start = sp->start_ns,
                              .seq = seq0 + i,
                              .svc_id = L->svc[i],
                              .name_id = L->name[i]};
    }
    uint32_t all[FL__HEAVY_CHUNK], res[FL__HEAVY_CHUNK], scope[FL__HEAVY_CHUNK];
    uint32_t cr = L->chunk_rows; /* <= FL__HEAVY_CHUNK */
    for (uint32_t i = 0; i < FL__HEAVY_CHUNK; i++)
        all[i] = i;
    for (uint32_t c = 0; c * cr < n && rc == FL_OK; c++) {
        uint32_t n_c = fl__light_chunk_len(L, c);
        sqlite3_bind_int64(w->block_heavy, 1, FL__HEAVY_ROWID(id, c));
        src = sqlite3_step(w->block_heavy);
        if (src == SQLITE_ROW)
            rc = fl__dec_heavy(w->dec, sqlite3_column_blob(w->block_heavy, 0),
                               (size_t)sqlite3_column_bytes(w->block_heavy, 0), n_c, all, n_c, a,
                               spans + c * cr, res, scope);
        else
            rc = src == SQLITE_DONE ? FL_ERR_STORE_CORRUPT : fl__sql_err(src);
        fl__done(w->block_heavy);
        for (uint32_t i = 0; rc == FL_OK && i < n_c; i++) {
            rows[c * cr + i].res_id = res[i];
            rows[c * cr + i].scope_id = scope[i];
        }
    }
    *n_out = n;
    return rc;
}

static int delete_range(fl__writer_t *w, sqlite3_stmt *st, int64_t lo, int64_t hi)
{
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    return fl__step_done(st);
}

/* Merge the whole tail into one block. Leaves the tail holding the merged block if it is
 * still small, or empty. */
static void compact_tail(fl_store_t *s)
{
    fl__writer_t *w = s->w;
    size_t k = w->tail_n, total = w->tail_spans;
    int64_t first = w->tail[0].id, last = w->tail[k - 1].id;
    if (!w->cmp_arena)
        w->cmp_arena = fl_arena_new(1u << 20);
    if (total > w->cmp_cap) {
        fl_span_t *ns = realloc(w->cmp_spans, total * sizeof(*ns));
        if (ns)
            w->cmp_spans = ns;
        fl__row_t *nr = realloc(w->cmp_rows, total * sizeof(*nr));
        if (nr)
            w->cmp_rows = nr;
        if (ns && nr)
            w->cmp_cap = total;
    }
    fl_arena_t *a = w->cmp_arena;
    fl_span_t *spans = total <= w->cmp_cap ? w->cmp_spans : NULL;
    fl__row_t *rows = total <= w->cmp_cap ? w->cmp_rows : NULL;
    size_t n = 0, m = 0;
    int ok = 0, rc = FL_OK, src = SQLITE_OK;
    fl__block_meta_t meta = {0};

    w->tail_n = 0;
    w->tail_spans = 0;
    if (!a || !spans || !rows || k < 2 || fl__step_done(w->begin) != SQLITE_DONE)
        goto out;
    for (size_t j = 0; j < k && rc == FL_OK; j++) {
        size_t got = 0;
        rc =
            read_block_rows(w, w->tail[j].id, a, spans + n, rows + n, total - n, (uint32_t)n, &got);
        n += got;
    }
    if (rc != FL_OK)
        goto rollback;
    fl_sort(rows, n, sizeof(*rows), cmp_row_key);
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && rows[m - 1].t_hi == rows[i].t_hi && rows[m - 1].t_lo == rows[i].t_lo &&
            rows[m - 1].s_id == rows[i].s_id)
            continue; /* a duplicate: the older copy (lower seq) is already kept */
        rows[m++] = rows[i];
    }
    if ((src = delete_range(w, w->block_del, first, last)) != SQLITE_DONE ||
        (src = delete_range(w, w->heavy_del, FL__HEAVY_ROWID(first, 0),
                            FL__HEAVY_ROWID(last, 63))) != SQLITE_DONE ||
        (src = delete_range(w, w->bloom_del, first, last)) != SQLITE_DONE ||
        (src = delete_range(w, w->ops_del, first, last)) != SQLITE_DONE)
        goto rollback;
    if ((src = insert_block(w, rows, m, first, 0, &meta)) != SQLITE_OK)
        goto rollback;
    if (m < n && (src = meta_put(w, "spans_stored", w->spans_stored - (n - m))) != SQLITE_OK)
        goto rollback;
    /* A new layout epoch: readers whose snapshot predates this commit keep using the old
     * blocks' filters, readers after it the merged one (see fl__tix_t). */
    uint64_t epoch = w->epoch + 1;
    if ((src = meta_put(w, "layout_epoch", epoch)) != SQLITE_OK)
        goto rollback;
    size_t tix_before = fl__tix_count(&s->tix);
    if (fl__tix_add(&s->tix, first, meta.trace_lo, meta.trace_hi, w->bloom.p, w->bloom.len,
                    epoch) != FL_OK)
        goto rollback;
    if (fl__step_done(w->commit) != SQLITE_DONE) {
        fl__tix_truncate(&s->tix, tix_before);
        goto rollback;
    }
    fl__tix_retire(&s->tix, first, last, epoch);
    w->epoch = epoch;
    uint64_t oldest = fl__readers_min_epoch(s);
    fl__tix_gc(&s->tix, oldest < epoch ? oldest : epoch);
    w->spans_stored -= n - m;
    pthread_mutex_lock(&s->mu);
    s->stats.spans_stored = w->spans_stored;
    s->stats.compactions++;
    pthread_mutex_unlock(&s->mu);
    if (m < FL__COMPACT_SMALL) {
        w->tail[0].id = first;
        w->tail[0].n = (uint32_t)m;
        w->tail_n = 1;
        w->tail_spans = m;
    }
    ok = 1;
rollback:
    if (!ok && !sqlite3_get_autocommit(w->db))
        fl__step_done(w->rollback);
out:
    (void)src;
    if (a && fl_arena_reserved(a) > (8u << 20))
        fl_arena_reset(a); /* an unusually big merge: do not hold on to all of it */
    else if (a)
        fl_arena_rewind(a);
}

/* After a committed group: extend the tail with the new blocks and merge when due. */
static void compact_after_group(fl_store_t *s)
{
    fl__writer_t *w = s->w;
    for (size_t i = 0; i < w->pend_n; i++) {
        const pend_block_t *pb = &w->pend[i];
        if (pb->n_spans >= FL__COMPACT_SMALL) { /* ends the run: merge what is before it */
            if (w->tail_n >= 2)
                compact_tail(s);
            w->tail_n = 0;
            w->tail_spans = 0;
            continue;
        }
        if (w->tail_n == FL__COMPACT_MAX_RUN || w->tail_spans + pb->n_spans > FL__BLOCK_MAX)
            compact_tail(s);
        if (w->tail_n == FL__COMPACT_MAX_RUN) { /* could not merge: start over */
            w->tail_n = 0;
            w->tail_spans = 0;
        }
        w->tail[w->tail_n].id = pb->id;
        w->tail[w->tail_n++].n = pb->n_spans;
        w->tail_spans += pb->n_spans;
    }
    /* Under load groups are big, blocks are not small and nothing is merged; merging costs
     * about what encoding the spans cost the first time. */
    if (w->tail_n >= FL__COMPACT_RUN || (w->tail_n >= 2 && w->tail_spans >= FL__BLOCK_TARGET))
        compact_tail(s);
}

static int ensure_future_capacity(fl__writer_t *w, size_t nb)
{
    if (nb <= w->future_cap)
        return FL_OK;
    uint64_t *nf = realloc(w->future_limit, nb * sizeof(*nf));
    if (!nf)
        return FL_ERR_NOMEM;
    w->future_limit = nf;
    w->future_cap = nb;
    return FL_OK;
}

/* Pass the spans the last group stored, in submission order, as runs of adjacent spans of
 * one batch: no copy, and one call per batch when it held no duplicates. */
static void notify_observer(fl__writer_t *w, fl_store_observer_fn fn, void *ud)
{
    const fl_span_t *run = NULL;
    size_t run_n = 0;
    uint32_t run_batch = 0;

    for (size_t i = 0; i < w->n_ents; i++) {
        const sent_t *e = &w->ents[i];
        if (w->kept[i] != 1)
            continue;
        if (run_n && e->batch == run_batch && e->row.sp == run + run_n) {
            run_n++;
            continue;
        }
        if (run_n)
            fn(ud, run, run_n);
        run = e->row.sp;
        run_n = 1;
        run_batch = e->batch;
    }
    if (run_n)
        fn(ud, run, run_n);
}

void fl__writer_group(fl_store_t *s, fl__qent_t *list)
{
    fl__writer_t *w = s->w;
    size_t nb = 0, total = 0;
    for (fl__qent_t *q = list; q; q = q->next) {
        nb++;
        total += q->batch->n_spans;
    }
    int *bstatus = calloc(nb, sizeof(int));
    size_t *stored = calloc(nb, sizeof(size_t));
    size_t *dups = calloc(nb, sizeof(size_t));
    int status = FL_OK;
    size_t n_rows = 0;
    uint64_t max_end = 0;
    uint64_t t0 = fl_time_mono_ns();
    size_t b;
    fl_store_observer_fn observer = NULL;
    void *observer_ud = NULL;

    w->pend_n = 0;
    w->blooms.len = 0;
    w->blooms.oom = 0;
    w->svcops_n = 0;
    if (!bstatus || !stored || !dups || ensure_group_capacity(w, total) != FL_OK ||
        ensure_future_capacity(w, nb) != FL_OK) {
        status = FL_ERR_NOMEM;
        goto callback;
    }
    uint64_t now = fl_time_now_ns();
    b = 0;
    for (fl__qent_t *q = list; q; q = q->next, b++) {
        uint64_t base = q->batch->received_ns ? q->batch->received_ns : now;
        uint64_t skew = s->opts.future_skew_ns;
        w->future_limit[b] = base > UINT64_MAX - skew ? UINT64_MAX : base + skew;
    }

    int rc;
    for (;;) {
        rc = fl__step_done(w->begin);
        if (rc == SQLITE_DONE)
            rc = write_group(s, w, list, bstatus, stored, dups, &n_rows, &max_end);
        if (rc != WRITE_TOO_DEEP)
            break;
        /* Refuse the offending batch alone and write the group again without it. */
        fl__step_done(w->rollback);
        bc_clear(&w->dict);
        bc_clear(&w->res);
        bc_clear(&w->scope);
        bstatus[w->bad_batch] = FL_ERR_INVALID;
        memset(stored, 0, nb * sizeof(size_t));
        memset(dups, 0, nb * sizeof(size_t));
        w->pend_n = 0;
        w->blooms.len = 0;
        w->svcops_n = 0;
        n_rows = 0;
        max_end = 0;
    }
    /* Publish the new blocks' filters before COMMIT: a reader whose snapshot includes the
     * commit must find them, and one that probes them too early just finds no such block
     * in its snapshot. A failed commit takes them back. */
    size_t tix_before = fl__tix_count(&s->tix);
    for (size_t i = 0; (rc == SQLITE_OK || rc == SQLITE_DONE) && i < w->pend_n; i++) {
        const pend_block_t *pb = &w->pend[i];
        if (fl__tix_add(&s->tix, pb->id, pb->lo, pb->hi, w->blooms.p + pb->bloom_off, pb->bloom_len,
                        w->epoch) != FL_OK)
            rc = SQLITE_NOMEM;
    }
    if (rc == SQLITE_OK || rc == SQLITE_DONE)
        rc = fl__step_done(w->commit);
    if (rc != SQLITE_DONE) {
        fl__tix_truncate(&s->tix, tix_before);
        status = fl__sql_err(rc);
        if (status == FL_OK)
            status = FL_ERR_STORE;
        if (!sqlite3_get_autocommit(w->db))
            fl__step_done(w->rollback);
        /* Ids created in the rolled-back transaction are gone: forget the caches. */
        bc_clear(&w->dict);
        bc_clear(&w->res);
        bc_clear(&w->scope);
        goto callback;
    }

    /* Committed: remember the keys. */
    w->next_block_id += (int64_t)w->pend_n;
    for (size_t i = 0; i < n_rows; i++) {
        if (i + 8 < n_rows)
            fl__dedup_prefetch(&w->dedup, w->ents[w->order[i + 8]].key);
        fl__dedup_insert(&w->dedup, w->ents[w->order[i]].key);
    }
    w->spans_stored += n_rows;
    if (max_end > w->watermark)
        w->watermark = max_end;

callback:
    pthread_mutex_lock(&s->mu);
    if (status == FL_OK) {
        size_t d = 0, okb = 0;
        b = 0;
        for (fl__qent_t *q = list; q; q = q->next, b++) {
            d += dups[b];
            okb += bstatus[b] == FL_OK;
        }
        s->stats.spans_stored = w->spans_stored;
        s->stats.spans_duplicate += d;
        s->stats.batches_committed += okb;
        s->stats.commits++;
        s->stats.watermark_ns = w->watermark;
        s->stats.last_commit_ns = fl_time_mono_ns() - t0;
        s->stats.spans_future += w->n_future;
        observer = s->observer;
        observer_ud = s->observer_ud;
    } else {
        s->stats.write_errors++;
    }
    pthread_mutex_unlock(&s->mu);

    /* Before the acknowledgements: a span the client saw acknowledged has been observed. */
    if (status == FL_OK && observer)
        notify_observer(w, observer, observer_ud);

    b = 0;
    for (fl__qent_t *q = list, *next; q; q = next, b++) {
        next = q->next;
        int st = status != FL_OK ? status : (bstatus ? bstatus[b] : FL_ERR_NOMEM);
        if (q->cb) {
            if (st == FL_OK)
                q->cb(q->ctx, FL_OK, stored[b], dups[b]);
            else
                q->cb(q->ctx, st, 0, 0);
        }
        fl_span_batch_free(q->batch);
        free(q);
    }
    free(bstatus);
    free(stored);
    free(dups);

    pthread_mutex_lock(&s->mu);
    s->q_spans -= total;
    s->q_batches -= nb;
    pthread_mutex_unlock(&s->mu);

    if (status == FL_OK) /* after the callbacks: merging never delays an acknowledgement */
        compact_after_group(s);

    pthread_mutex_lock(&s->mu); /* flush waits for the merge too: tests see settled blocks */
    s->seq_done += nb;
    pthread_cond_broadcast(&s->cv_done);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- retention
 * Whole blocks whose every span ended more than the retention before the watermark (event
 * time) are deleted, FL__RETAIN_STEP blocks per transaction, as compaction deletes the
 * blocks it merges: rows, heavy chunks, filter, block_ops rows, and their share of the
 * service list. The freed pages go to SQLite's free list and are reused by later blocks. */

static int retention_step(fl_store_t *s, uint64_t keep)
{
    fl__writer_t *w = s->w;
    int64_t ids[FL__RETAIN_STEP];
    size_t k = 0;
    uint64_t spans = 0;
    int ok = 0, src;
    uint64_t cutoff = w->watermark - keep;

    if (cutoff > (uint64_t)INT64_MAX)
        cutoff = (uint64_t)INT64_MAX;
    if (fl__step_done(w->begin) != SQLITE_DONE)
        return 0;
    sqlite3_bind_int64(w->blocks_expired, 1, (int64_t)cutoff);
    sqlite3_bind_int64(w->blocks_expired, 2, FL__RETAIN_STEP);
    while (k < FL__RETAIN_STEP && (src = sqlite3_step(w->blocks_expired)) == SQLITE_ROW) {
        ids[k++] = sqlite3_column_int64(w->blocks_expired, 0);
        spans += (uint64_t)sqlite3_column_int64(w->blocks_expired, 1);
    }
    fl__done(w->blocks_expired);
    if (k == 0)
        goto out;
    for (size_t i = 0; i < k; i++) {
        sqlite3_bind_int64(w->svcops_expire, 1, ids[i]);
        if (fl__step_done(w->svcops_expire) != SQLITE_DONE ||
            delete_range(w, w->block_del, ids[i], ids[i]) != SQLITE_DONE ||
            delete_range(w, w->heavy_del, FL__HEAVY_ROWID(ids[i], 0),
                         FL__HEAVY_ROWID(ids[i], 63)) != SQLITE_DONE ||
            delete_range(w, w->bloom_del, ids[i], ids[i]) != SQLITE_DONE ||
            delete_range(w, w->ops_del, ids[i], ids[i]) != SQLITE_DONE)
            goto out;
    }
    if (fl__step_done(w->svcops_prune) != SQLITE_DONE)
        goto out;
    uint64_t left = w->spans_stored > spans ? w->spans_stored - spans : 0;
    uint64_t epoch = w->epoch + 1; /* readers of older snapshots keep the old filters */
    if (meta_put(w, "spans_stored", left) != SQLITE_OK ||
        meta_put(w, "layout_epoch", epoch) != SQLITE_OK || fl__step_done(w->commit) != SQLITE_DONE)
        goto out;
    ok = 1;
    for (size_t i = 0; i < k; i++) {
        fl__tix_retire(&s->tix, ids[i], ids[i], epoch);
        for (size_t j = 0; j < w->tail_n; j++)
            if (w->tail[j].id == ids[i]) /* the compaction run lost a block: start over */
                w->tail_n = w->tail_spans = 0;
    }
    w->epoch = epoch;
    uint64_t oldest = fl__readers_min_epoch(s);
    fl__tix_gc(&s->tix, oldest < epoch ? oldest : epoch);
    w->spans_stored = left;
    pthread_mutex_lock(&s->mu);
    s->stats.spans_stored = left;
    s->stats.blocks_expired += k;
    s->stats.spans_expired += spans;
    pthread_mutex_unlock(&s->mu);
out:
    if (!ok && !sqlite3_get_autocommit(w->db))
        fl__step_done(w->rollback);
    return ok && k == FL__RETAIN_STEP;
}

int fl__writer_retention(fl_store_t *s)
{
    fl__writer_t *w = s->w;
    pthread_mutex_lock(&s->mu);
    uint64_t keep = s->retention_ns;
    s->retain_kick = 0;
    pthread_mutex_unlock(&s->mu);
    /* Nothing new can have expired unless the watermark moved or the retention changed. */
    if (!keep || w->watermark <= keep ||
        (!w->retain_more && w->retain_wm == w->watermark && w->retain_keep == keep))
        return 0;
    w->retain_wm = w->watermark;
    w->retain_keep = keep;
    w->retain_more = retention_step(s, keep);
    return w->retain_more;
}
