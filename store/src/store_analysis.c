/* SPDX-License-Identifier: Apache-2.0 */
/* Persistence for analysis/: named state blobs and closed rollup buckets, written through an
 * auxiliary connection so they never share a transaction with the ingest writer. */
#include "store_int.h"
#include "store_sql.h"

#include <stdio.h>
#include <stdlib.h>

#define RETAIN_DEFAULT_NS (7ull * 24 * 3600 * 1000000000ull)
#define EXPIRE_STEP 1000

typedef struct fl__aux {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *state_put, *state_get, *bucket_put, *bucket_range, *bucket_max, *expire;
} fl__aux_t;

int fl__aux_open(fl_store_t *s, char *err, size_t errlen)
{
    fl__aux_t *x = calloc(1, sizeof(*x));
    int rc;

    if (!x) {
        snprintf(err, errlen, "out of memory");
        return FL_ERR_NOMEM;
    }
    s->aux = x;
    if ((rc = fl__open_db(s, 1, &x->db, err, errlen)) != FL_OK)
        return rc;
    const struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&x->begin, FL_SQL_BEGIN_IMMEDIATE},      {&x->commit, FL_SQL_COMMIT},
        {&x->rollback, FL_SQL_ROLLBACK},          {&x->state_put, FL_SQL_ASTATE_PUT},
        {&x->state_get, FL_SQL_ASTATE_GET},       {&x->bucket_put, FL_SQL_ABUCKET_PUT},
        {&x->bucket_range, FL_SQL_ABUCKET_RANGE}, {&x->bucket_max, FL_SQL_ABUCKET_MAX},
        {&x->expire, FL_SQL_ABUCKET_EXPIRE},
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if ((rc = fl__prepare(x->db, stmts[i].sql, stmts[i].st, err, errlen)) != FL_OK)
            return rc;
    return FL_OK;
}

void fl__aux_close(fl_store_t *s)
{
    fl__aux_t *x = s ? s->aux : NULL;

    if (!x)
        return;
    sqlite3_stmt *all[] = {x->begin,        x->commit,     x->rollback,
                           x->state_put,    x->state_get,  x->bucket_put,
                           x->bucket_range, x->bucket_max, x->expire};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close_v2(x->db);
    free(x);
    s->aux = NULL;
}

static int sql_fail(int rc)
{
    int e = fl__sql_err(rc);
    return e == FL_OK ? FL_ERR_STORE : e;
}

/* Bind a u64 as SQLite's signed integer (times stay far below 2^63). */
static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    sqlite3_bind_int64(st, i, v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v);
}

int fl_store_analysis_save(fl_store_t *s, const char *key, const void *state, size_t state_len,
                           const fl_store_bucket_t *buckets, size_t n_buckets, uint64_t retain_ns)
{
    if (!s || !s->aux || (key && !state && state_len) || (n_buckets && !buckets))
        return FL_ERR_INVALID;
    fl__aux_t *x = s->aux;
    int rc, status = FL_OK;

    if (!retain_ns) /* the store's retention (--retention), else 7 days */
        retain_ns = fl__store_retention(s);
    if (!retain_ns)
        retain_ns = RETAIN_DEFAULT_NS;
    pthread_mutex_lock(&s->amu);
    if ((rc = fl__step_done(x->begin)) != SQLITE_DONE) {
        status = sql_fail(rc);
        goto out;
    }
    if (key) {
        sqlite3_bind_text(x->state_put, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(x->state_put, 2, state_len ? state : "", state_len, SQLITE_STATIC);
        bind_u64(x->state_put, 3, fl_time_now_ns());
        if ((rc = fl__step_done(x->state_put)) != SQLITE_DONE)
            status = sql_fail(rc);
    }
    for (size_t i = 0; status == FL_OK && i < n_buckets; i++) {
        bind_u64(x->bucket_put, 1, buckets[i].start_ns);
        sqlite3_bind_blob64(x->bucket_put, 2, buckets[i].len ? buckets[i].data : "", buckets[i].len,
                            SQLITE_STATIC);
        if ((rc = fl__step_done(x->bucket_put)) != SQLITE_DONE)
            status = sql_fail(rc);
    }
    if (status == FL_OK && n_buckets) {
        /* Retention is relative to the newest bucket (event time), so a replayed capture
         * keeps its history whatever the wall clock says. */
        int64_t newest = -1;
        if ((rc = sqlite3_step(x->bucket_max)) == SQLITE_ROW &&
            sqlite3_column_type(x->bucket_max, 0) != SQLITE_NULL)
            newest = sqlite3_column_int64(x->bucket_max, 0);
        else if (rc != SQLITE_ROW)
            status = sql_fail(rc);
        fl__done(x->bucket_max);
        if (status == FL_OK && newest >= 0 && (uint64_t)newest > retain_ns) {
            bind_u64(x->expire, 1, (uint64_t)newest - retain_ns);
            sqlite3_bind_int(x->expire, 2, EXPIRE_STEP);
            if ((rc = fl__step_done(x->expire)) != SQLITE_DONE)
                status = sql_fail(rc);
        }
    }
    if (status == FL_OK && (rc = fl__step_done(x->commit)) != SQLITE_DONE)
        status = sql_fail(rc);
    if (status != FL_OK && !sqlite3_get_autocommit(x->db))
        fl__step_done(x->rollback);
out:
    pthread_mutex_unlock(&s->amu);
    return status;
}

int fl_store_analysis_load_state(fl_store_t *s, const char *key, fl_buf_t *out)
{
    if (!s || !s->aux || !key || !out)
        return FL_ERR_INVALID;
    fl__aux_t *x = s->aux;
    int status;

    pthread_mutex_lock(&s->amu);
    sqlite3_bind_text(x->state_get, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(x->state_get);
    if (rc == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(x->state_get, 0);
        size_t len = (size_t)sqlite3_column_bytes(x->state_get, 0);
        status = len ? fl_buf_append(out, p, len) : FL_OK;
    } else if (rc == SQLITE_DONE) {
        status = FL_ERR_NOT_FOUND;
    } else {
        status = sql_fail(rc);
    }
    fl__done(x->state_get);
    pthread_mutex_unlock(&s->amu);
    return status;
}

int fl_store_analysis_buckets(fl_store_t *s, uint64_t start_ns, uint64_t end_ns,
                              fl_store_bucket_fn fn, void *ud)
{
    if (!s || !s->aux || !fn)
        return FL_ERR_INVALID;
    fl__aux_t *x = s->aux;
    int status = FL_OK, rc;

    pthread_mutex_lock(&s->amu);
    bind_u64(x->bucket_range, 1, start_ns);
    bind_u64(x->bucket_range, 2, end_ns ? end_ns : UINT64_MAX);
    while ((rc = sqlite3_step(x->bucket_range)) == SQLITE_ROW) {
        uint64_t st = (uint64_t)sqlite3_column_int64(x->bucket_range, 0);
        const void *p = sqlite3_column_blob(x->bucket_range, 1);
        size_t len = (size_t)sqlite3_column_bytes(x->bucket_range, 1);
        if ((status = fn(ud, st, p, len)) != 0)
            break;
    }
    if (status == FL_OK && rc != SQLITE_DONE)
        status = sql_fail(rc);
    fl__done(x->bucket_range);
    pthread_mutex_unlock(&s->amu);
    return status;
}
