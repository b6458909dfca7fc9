/* SPDX-License-Identifier: Apache-2.0 */
/* The store object: open (pragmas, schema migrations, persisted state), the bounded submit
 * queue and its single writer thread (group commit), flush, stats and close. */
#include "store_int.h"
#include "store_sql.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- SQLite helpers */

int fl__sql_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return FL_OK;
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return FL_ERR_STORE_FULL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return FL_ERR_STORE_CORRUPT;
    case SQLITE_NOMEM:
        return FL_ERR_NOMEM;
    default:
        return FL_ERR_STORE;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int fl__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "preparing \"%.60s\": %s", sql, sqlite3_errmsg(db));
        *st = NULL;
        return fl__sql_err(rc) == FL_ERR_STORE_CORRUPT ? FL_ERR_STORE_CORRUPT : FL_ERR_STORE;
    }
    return FL_OK;
}

int fl__step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    fl__done(st);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "\"%.60s\": %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        int e = fl__sql_err(rc);
        return e == FL_ERR_STORE_CORRUPT || e == FL_ERR_STORE_FULL ? e : FL_ERR_STORE;
    }
    return FL_OK;
}

/* ---------------------------------------------------------------- migrations */

typedef struct migration {
    int version;
    const char *sql;
} migration_t;

/* Append new steps at the end; each runs once, in its own transaction. */
static const migration_t migrations[] = {
    {1, FL_SQL_MIGRATION_V1},
    {2, FL_SQL_MIGRATION_V2},
};

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *cur = NULL, *rec = NULL;
    int rc = exec_sql(db, FL_SQL_MIGRATIONS_TABLE, err, errlen);
    if (rc != FL_OK)
        return rc;
    if ((rc = fl__prepare(db, FL_SQL_MIGRATION_CURRENT, &cur, err, errlen)) != FL_OK ||
        (rc = fl__prepare(db, FL_SQL_MIGRATION_RECORD, &rec, err, errlen)) != FL_OK)
        goto out;
    int version = 0;
    if (sqlite3_step(cur) == SQLITE_ROW)
        version = sqlite3_column_int(cur, 0);
    fl__done(cur);
    int latest = migrations[sizeof(migrations) / sizeof(migrations[0]) - 1].version;
    if (version > latest) {
        set_err(err, errlen, "database schema version %d is newer than this faultline (%d)",
                version, latest);
        rc = FL_ERR_STORE;
        goto out;
    }
    for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        const migration_t *m = &migrations[i];
        if (m->version <= version)
            continue;
        if ((rc = exec_sql(db, FL_SQL_BEGIN_IMMEDIATE, err, errlen)) != FL_OK)
            goto out;
        rc = exec_sql(db, m->sql, err, errlen);
        if (rc == FL_OK) {
            sqlite3_bind_int(rec, 1, m->version);
            sqlite3_bind_int64(rec, 2, (sqlite3_int64)fl_time_now_ns());
            int src = fl__step_done(rec);
            if (src != SQLITE_DONE) {
                set_err(err, errlen, "recording migration %d: %s", m->version, sqlite3_errmsg(db));
                rc = FL_ERR_STORE;
            }
        }
        if (rc == FL_OK)
            rc = exec_sql(db, FL_SQL_COMMIT, err, errlen);
        if (rc != FL_OK) {
            sqlite3_exec(db, FL_SQL_ROLLBACK, NULL, NULL, NULL);
            goto out;
        }
    }
out:
    sqlite3_finalize(cur);
    sqlite3_finalize(rec);
    return rc;
}

/* ---------------------------------------------------------------- pragmas */

static int apply_pragmas(sqlite3 *db, const fl_store_opts_t *o, int writer, char *err,
                         size_t errlen)
{
    char sql[96];
    int rc;
    sqlite3_busy_timeout(db, 5000);
    snprintf(sql, sizeof(sql), FL_SQL_PRAGMA_CACHE_FMT, o->cache_mib * 1024);
    if ((rc = exec_sql(db, sql, err, errlen)) != FL_OK)
        return rc;
    if ((rc = exec_sql(db, FL_SQL_PRAGMA_TEMP_MEMORY, err, errlen)) != FL_OK)
        return rc;
    if (!writer)
        return exec_sql(db, FL_SQL_PRAGMA_QUERY_ONLY, err, errlen);

    sqlite3_stmt *st = NULL;
    if ((rc = fl__prepare(db, FL_SQL_PRAGMA_WAL, &st, err, errlen)) != FL_OK)
        return rc;
    int ok = sqlite3_step(st) == SQLITE_ROW &&
             sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!ok) {
        set_err(err, errlen, "cannot switch the database to WAL mode: %s", sqlite3_errmsg(db));
        return FL_ERR_STORE;
    }
    if ((rc =
             exec_sql(db, o->synchronous_full ? FL_SQL_PRAGMA_SYNC_FULL : FL_SQL_PRAGMA_SYNC_NORMAL,
                      err, errlen)) != FL_OK)
        return rc;
    /* (checkpoints: see wal_hook) */
    return exec_sql(db, FL_SQL_PRAGMA_JOURNAL_LIMIT, err, errlen);
}

/* ---------------------------------------------------------------- checkpoints */

/* WAL checkpoints run on a thread and connection of their own. Done by the committing
 * connection (SQLite's autocheckpoint) they held the ingest writer for the copy and fsync of
 * 16 MiB, 50-90 ms in which no export was acknowledged. A PASSIVE checkpoint runs beside the
 * writer. Every writing connection's commit hook kicks the thread once the WAL holds
 * CKPT_FRAMES pages; past CKPT_HARD_FRAMES (the thread cannot keep up, or fails) the
 * committing connection checkpoints itself, so the WAL stays bounded either way. */
#define CKPT_FRAMES 4096
#define CKPT_HARD_FRAMES 65536

static int wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    fl_store_t *s = ud;
    if (frames >= CKPT_HARD_FRAMES || !s->ckpt_started) {
        if (frames >= CKPT_FRAMES)
            sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (frames >= CKPT_FRAMES) {
        pthread_mutex_lock(&s->ckmu);
        s->ckpt_kick = 1;
        pthread_cond_signal(&s->ckcv);
        pthread_mutex_unlock(&s->ckmu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    fl_store_t *s = arg;
    pthread_mutex_lock(&s->ckmu);
    for (;;) {
        while (!s->ckpt_kick && !s->ckpt_closing)
            pthread_cond_wait(&s->ckcv, &s->ckmu);
        if (s->ckpt_closing)
            break;
        s->ckpt_kick = 0;
        pthread_mutex_unlock(&s->ckmu);
        int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != s->ckpt_last_rc)
            fl_log(FL_LOG_WARN, "store", "WAL checkpoint failed error=\"%s\"", sqlite3_errstr(rc));
        s->ckpt_last_rc = rc;
        pthread_mutex_lock(&s->ckmu);
    }
    pthread_mutex_unlock(&s->ckmu);
    return NULL;
}

static int ckpt_start(fl_store_t *s, char *err, size_t errlen)
{
    int rc = fl__open_db(s, 1, &s->ckpt_db, err, errlen);
    if (rc != FL_OK)
        return rc;
    if (pthread_create(&s->ckpt_thread, NULL, ckpt_main, s) != 0) {
        set_err(err, errlen, "cannot start the checkpoint thread");
        return FL_ERR_NOMEM;
    }
    s->ckpt_started = 1;
    return FL_OK;
}

/* After the writer and the auxiliary connection are closed. */
static void ckpt_stop(fl_store_t *s)
{
    if (s->ckpt_started) {
        pthread_mutex_lock(&s->ckmu);
        s->ckpt_closing = 1;
        pthread_cond_signal(&s->ckcv);
        pthread_mutex_unlock(&s->ckmu);
        pthread_join(s->ckpt_thread, NULL);
        s->ckpt_started = 0;
    }
    sqlite3_close_v2(s->ckpt_db); /* the last connection: checkpoints and removes the WAL */
    s->ckpt_db = NULL;
}

int fl__open_db(fl_store_t *s, int writer, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_NOMUTEX |
                (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
    int rc = sqlite3_open_v2(s->path, &db, flags, NULL);
    *out = NULL;
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "cannot open %s: %s", s->path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close_v2(db);
        return (rc & 0xff) == SQLITE_CANTOPEN ? FL_ERR_IO : FL_ERR_STORE;
    }
    sqlite3_extended_result_codes(db, 1);
    fl_store_opts_t o = s->opts;
    if (!writer) /* readers mostly touch recent blocks; keep their caches smaller */
        o.cache_mib = o.cache_mib / 4 > 8 ? o.cache_mib / 4 : 8;
    if ((rc = apply_pragmas(db, &o, writer, err, errlen)) != FL_OK) {
        sqlite3_close_v2(db);
        return rc;
    }
    if (writer)
        sqlite3_wal_hook(db, wal_hook, s); /* replaces SQLite's autocheckpoint */
    *out = db;
    return FL_OK;
}

/* ---------------------------------------------------------------- writer thread */

static void *writer_main(void *arg)
{
    fl_store_t *s = arg;
    int more = 0; /* retention has more expired blocks to delete */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->q_head && !s->closing) {
            if (more || s->retain_kick) { /* an idle moment: one bounded retention step */
                pthread_mutex_unlock(&s->mu);
                more = fl__writer_retention(s);
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_cond_wait(&s->cv_work, &s->mu);
        }
        if (!s->q_head && s->closing) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* Take everything queued, up to max_group_spans (always at least one batch). */
        fl__qent_t *head = s->q_head, *last = head;
        size_t spans = head->batch->n_spans;
        while (last->next && spans + last->next->batch->n_spans <= s->opts.max_group_spans) {
            last = last->next;
            spans += last->batch->n_spans;
        }
        s->q_head = last->next;
        if (!s->q_head)
            s->q_tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        fl__writer_apply_limits(s);
        fl__writer_group(s, head);
        more = fl__writer_retention(s); /* bounded: ingest never waits long for it */
    }
    return NULL;
}

/* ---------------------------------------------------------------- open / close */

static void opts_defaults(fl_store_opts_t *o)
{
    if (!o->max_queue_spans)
        o->max_queue_spans = 1000000;
    if (!o->max_group_spans)
        o->max_group_spans = 65536;
    if (!o->cache_mib)
        o->cache_mib = 64;
    if (o->readers <= 0)
        o->readers = 4;
    if (!o->dedup_window_spans)
        o->dedup_window_spans = 4000000;
    if (!o->future_skew_ns)
        o->future_skew_ns = 600ull * 1000000000ull;
}

int fl_store_open(const fl_store_opts_t *opts, fl_store_t **out, char *err, size_t errlen)
{
    fl_store_t *s = NULL;
    sqlite3 *db = NULL;
    int rc = FL_OK;
    int mu_init = 0, tix_init = 0;

    *out = NULL;
    set_err(err, errlen, "%s", "");
    if (!opts || !opts->path || !*opts->path) {
        set_err(err, errlen, "no database path given");
        return FL_ERR_INVALID;
    }
    if (!sqlite3_threadsafe()) {
        set_err(err, errlen, "SQLite was built without thread support");
        return FL_ERR_STORE;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(opts->path))) {
        rc = FL_ERR_NOMEM;
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    s->opts = *opts;
    s->opts.path = s->path;
    opts_defaults(&s->opts);
    s->max_db_bytes = opts->max_db_bytes;
    s->retention_ns = opts->retention_ns;
    s->retain_kick = opts->retention_ns != 0;

    if (pthread_mutex_init(&s->mu, NULL) || pthread_cond_init(&s->cv_work, NULL) ||
        pthread_cond_init(&s->cv_done, NULL) || pthread_mutex_init(&s->rmu, NULL) ||
        pthread_cond_init(&s->rcv, NULL) || pthread_mutex_init(&s->amu, NULL) ||
        pthread_mutex_init(&s->ckmu, NULL) || pthread_cond_init(&s->ckcv, NULL)) {
        rc = FL_ERR_NOMEM;
        set_err(err, errlen, "cannot initialise locks");
        goto fail;
    }
    mu_init = 1;
    if ((rc = fl__tix_init(&s->tix)) != FL_OK) {
        set_err(err, errlen, "cannot initialise the trace index");
        goto fail;
    }
    tix_init = 1;

    if ((rc = fl__open_db(s, 1, &db, err, errlen)) != FL_OK)
        goto fail;
    if ((rc = migrate(db, err, errlen)) != FL_OK)
        goto fail;
    rc = fl__writer_new(s, db, &s->w, err, errlen);
    db = NULL; /* owned by the writer now, whatever happened */
    if (rc != FL_OK)
        goto fail;
    if ((rc = fl__writer_load(s, err, errlen)) != FL_OK)
        goto fail;
    if ((rc = fl__aux_open(s, err, errlen)) != FL_OK)
        goto fail;
    if ((rc = ckpt_start(s, err, errlen)) != FL_OK)
        goto fail;

    s->readers = calloc((size_t)s->opts.readers, sizeof(*s->readers));
    s->free_readers = calloc((size_t)s->opts.readers, sizeof(*s->free_readers));
    if (!s->readers || !s->free_readers) {
        rc = FL_ERR_NOMEM;
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < s->opts.readers; i++) {
        if ((rc = fl__reader_new(s, &s->readers[i], err, errlen)) != FL_OK)
            goto fail;
        s->n_readers++;
        s->free_readers[s->n_free_readers++] = s->readers[i];
    }
    if (pthread_create(&s->writer_thread, NULL, writer_main, s) != 0) {
        rc = FL_ERR_NOMEM;
        set_err(err, errlen, "cannot start the writer thread");
        goto fail;
    }
    s->writer_started = 1;
    *out = s;
    return FL_OK;

fail:
    if (db)
        sqlite3_close_v2(db);
    if (s) {
        for (int i = 0; i < s->n_readers; i++)
            fl__reader_free(s->readers[i]);
        free(s->readers);
        free(s->free_readers);
        fl__writer_free(s->w);
        fl__aux_close(s);
        if (mu_init)
            ckpt_stop(s);
        if (tix_init)
            fl__tix_dispose(&s->tix);
        if (mu_init) {
            pthread_mutex_destroy(&s->ckmu);
            pthread_cond_destroy(&s->ckcv);
            pthread_mutex_destroy(&s->mu);
            pthread_cond_destroy(&s->cv_work);
            pthread_cond_destroy(&s->cv_done);
            pthread_mutex_destroy(&s->rmu);
            pthread_cond_destroy(&s->rcv);
            pthread_mutex_destroy(&s->amu);
        }
        free(s->path);
        free(s);
    }
    return rc;
}

void fl_store_close(fl_store_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_started)
        pthread_join(s->writer_thread, NULL);
    for (int i = 0; i < s->n_readers; i++)
        fl__reader_free(s->readers[i]);
    free(s->readers);
    free(s->free_readers);
    fl__writer_free(s->w);
    fl__aux_close(s);
    ckpt_stop(s);
    fl__tix_dispose(&s->tix);
    pthread_mutex_destroy(&s->ckmu);
    pthread_cond_destroy(&s->ckcv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    pthread_mutex_destroy(&s->amu);
    free(s->path);
    free(s);
}

/* ---------------------------------------------------------------- submit */

static int would_block_locked(const fl_store_t *s, size_t n)
{
    /* An empty queue takes any batch, so an oversized one is not refused forever. */
    return s->q_spans > 0 && s->q_spans + n > s->opts.max_queue_spans;
}

int fl_store_would_block(fl_store_t *s, size_t n_spans)
{
    pthread_mutex_lock(&s->mu);
    int r = s->closing || would_block_locked(s, n_spans);
    pthread_mutex_unlock(&s->mu);
    return r;
}

int fl_store_submit_take(fl_store_t *s, fl_span_batch_t *batch, fl_store_done_cb cb, void *ctx)
{
    if (!batch)
        return FL_ERR_INVALID;
    fl__qent_t *e = malloc(sizeof(*e));
    if (!e) {
        fl_span_batch_free(batch);
        return FL_ERR_NOMEM;
    }
    e->next = NULL;
    e->batch = batch;
    e->cb = cb;
    e->ctx = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = FL_OK;
    if (s->closing)
        rc = FL_ERR_CLOSED;
    else if (would_block_locked(s, batch->n_spans))
        rc = FL_ERR_BUSY;
    if (rc == FL_OK) {
        if (s->q_tail)
            s->q_tail->next = e;
        else
            s->q_head = e;
        s->q_tail = e;
        s->q_spans += batch->n_spans;
        s->q_batches++;
        s->seq_submitted++;
        pthread_cond_signal(&s->cv_work);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != FL_OK) {
        free(e);
        fl_span_batch_free(batch);
    }
    return rc;
}

int fl_store_flush(fl_store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t target = s->seq_submitted;
    while (s->seq_done < target)
        pthread_cond_wait(&s->cv_done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return FL_OK;
}

void fl_store_set_max_db_bytes(fl_store_t *s, uint64_t max_bytes)
{
    pthread_mutex_lock(&s->mu);
    s->max_db_bytes = max_bytes;
    pthread_mutex_unlock(&s->mu);
}

void fl_store_set_retention(fl_store_t *s, uint64_t retention_ns)
{
    pthread_mutex_lock(&s->mu);
    s->retention_ns = retention_ns;
    s->retain_kick = 1;
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
}

uint64_t fl__store_retention(fl_store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->retention_ns;
    pthread_mutex_unlock(&s->mu);
    return v;
}

void fl_store_set_observer(fl_store_t *s, fl_store_observer_fn fn, void *ud)
{
    /* Taken under the queue lock so a writer that picks up the next group sees both. */
    pthread_mutex_lock(&s->mu);
    s->observer = fn;
    s->observer_ud = ud;
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- stats */

static uint64_t file_size(const char *path, const char *suffix)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

void fl_store_stats(fl_store_t *s, fl_store_stats_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->queue_spans = s->q_spans;
    out->queue_batches = s->q_batches;
    pthread_mutex_unlock(&s->mu);
    out->db_bytes = file_size(s->path, "") + file_size(s->path, "-wal");
    pthread_rwlock_rdlock(&s->tix.lock);
    out->blocks = s->tix.live;
    out->index_bytes = s->tix.bytes;
    pthread_rwlock_unlock(&s->tix.lock);
}
