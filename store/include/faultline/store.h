/* SPDX-License-Identifier: Apache-2.0 */
/* faultline store: the embedded columnar SQLite span store. One writer thread commits groups
 * of batches (group commit) as column blocks; readers use their own connections. The layout
 * is private to store/ (docs/store.md describes it); callers see only this header. */
#ifndef FAULTLINE_STORE_H
#define FAULTLINE_STORE_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_store fl_store_t;

typedef struct fl_store_opts {
    const char *path;          /**< database file; every other data file lives beside it */
    size_t max_queue_spans;    /**< spans accepted but not yet committed; 0: 1,000,000 */
    size_t max_group_spans;    /**< spans per commit (group commit); 0: 65,536 */
    int synchronous_full;      /**< PRAGMA synchronous=FULL instead of NORMAL (WAL) */
    size_t cache_mib;          /**< the writer's page cache; each reader gets a quarter (at
                                    least 8 MiB); 0: 64 */
    int readers;               /**< pooled read connections; 0: 4 */
    size_t dedup_window_spans; /**< recent (trace_id, span_id) keys remembered for ingest-time
                                    dedup (16 bytes of memory each); 0: 4,000,000.
                                    Older duplicates are still merged at read time. */
    uint64_t max_db_bytes;     /**< cap on the database size (PRAGMA max_page_count); past it
                                    commits fail with FL_ERR_STORE_FULL; 0: no cap */
    uint64_t future_skew_ns;   /**< a span ending more than this after its batch was received
                                    (received_ns, else the commit's wall clock) is stored but
                                    neither advances the watermark nor reaches the observer;
                                    counted in spans_future. 0: 10 minutes */
    uint64_t retention_ns;     /**< delete span blocks whose spans all ended more than this
                                    before the watermark (event time), in small steps, and
                                    analysis buckets older than this; 0: keep spans forever
                                    (analysis buckets: 7 days) */
} fl_store_opts_t;

/** Open (creating or migrating) the database and start the writer thread.
 *  FL_ERR_IO / FL_ERR_STORE / FL_ERR_STORE_CORRUPT with a message in err. */
int fl_store_open(const fl_store_opts_t *opts, fl_store_t **out, char *err, size_t errlen);
/** Commit everything queued, stop the writer, close every connection. Accepts NULL. */
void fl_store_close(fl_store_t *s);

/** Called exactly once per submitted batch, on the writer thread, after the batch is
 *  committed (FL_OK) or has failed (FL_ERR_STORE_FULL is retryable: disk full, database
 *  read-only or I/O error, nothing of the group was stored; FL_ERR_INVALID: a value nests
 *  deeper than 128 levels, the batch alone is refused; FL_ERR_STORE / FL_ERR_NOMEM: not
 *  retryable as is). stored = spans newly stored, duplicates = spans already stored
 *  (skipped). The batch is freed right after the callback returns; the callback must not
 *  call back into the store's writer-side functions (fl_store_flush, fl_store_close). */
typedef void (*fl_store_done_cb)(void *ctx, int status, size_t stored, size_t duplicates);

/** Queue a batch for the writer; ownership of the batch moves to the store in every case
 *  (the name says _take). Returns FL_OK (cb will be called), FL_ERR_BUSY when the queue is
 *  full (an empty queue accepts a batch of any size), FL_ERR_CLOSED when closing,
 *  FL_ERR_NOMEM, FL_ERR_INVALID for a NULL batch (cb is never called on error; the batch is
 *  already freed). Thread-safe. */
int fl_store_submit_take(fl_store_t *s, fl_span_batch_t *batch, fl_store_done_cb cb, void *ctx);
/** 1 when a batch of n spans would be refused as BUSY right now (an admission hint). */
int fl_store_would_block(fl_store_t *s, size_t n_spans);
/** Wait until every batch submitted before this call has been called back. Returns FL_OK.
 *  Thread-safe; never call it from a done callback. */
int fl_store_flush(fl_store_t *s);
/** Change the database size cap at run time (0: none); applied before the next commit. */
void fl_store_set_max_db_bytes(fl_store_t *s, uint64_t max_bytes);
/** Change the retention at run time (0: keep everything, see retention_ns). The writer
 *  deletes expired blocks 16 per transaction, after a commit or when idle. */
void fl_store_set_retention(fl_store_t *s, uint64_t retention_ns);

/** Commit observer: called on the writer thread after each successful group commit and
 *  before that group's done callbacks (so an acknowledged span has been observed), with the
 *  spans the commit newly stored, in submission order, in one or more calls per group.
 *  Spans skipped as duplicates (of stored spans or within the group) and far-future spans
 *  (see future_skew_ns) are never passed. The spans point into the submitted batches (no
 *  copy) and are valid only during the call. The observer must be quick (it delays the
 *  acknowledgement) and must not call the store's writer-side functions. */
typedef void (*fl_store_observer_fn)(void *ud, const fl_span_t *spans, size_t n);

/** Set (fn NULL: remove) the commit observer. Call before the first submit, or when no
 *  commit is running; the writer reads it without a lock. */
void fl_store_set_observer(fl_store_t *s, fl_store_observer_fn fn, void *ud);

typedef struct fl_store_stats {
    uint64_t spans_stored;    /**< spans in the store (after dedup) */
    uint64_t spans_duplicate; /**< re-sent spans skipped since start */
    uint64_t batches_committed;
    uint64_t commits;
    uint64_t queue_spans; /**< queued, not yet committed */
    uint64_t queue_batches;
    uint64_t last_commit_ns; /**< duration of the last commit */
    uint64_t db_bytes;       /**< size of the database files */
    uint64_t watermark_ns;   /**< latest span end time stored */
    uint64_t write_errors;
    uint64_t blocks;         /**< column blocks in the store */
    uint64_t compactions;    /**< small-block merges since start */
    uint64_t index_bytes;    /**< memory of the in-memory trace-id filters */
    uint64_t spans_future;   /**< stored spans ending too far past their receipt (ignored by
                                  the watermark and the observer) */
    uint64_t blocks_expired; /**< blocks deleted by retention since start */
    uint64_t spans_expired;  /**< spans in them */
} fl_store_stats_t;

void fl_store_stats(fl_store_t *s, fl_store_stats_t *out);

/* ---------------------------------------------------------------- reads
 * Thread-safe: each call borrows a pooled read connection, so reads never block the writer
 * and see only committed data. Results are allocated in the caller's arena. */

/** Every stored span of a trace, deduplicated, ordered by start time then span id, fully
 *  materialised (attributes, events, links, resource, scope; every string NUL-terminated).
 *  Spans that shared a resource / scope share the pointer. FL_ERR_NOT_FOUND when none,
 *  FL_ERR_NOMEM (arena), FL_ERR_STORE_CORRUPT, FL_ERR_STORE_FULL (I/O). */
int fl_store_get_trace(fl_store_t *s, const uint8_t trace_id[16], fl_arena_t *arena,
                       fl_span_t **spans, size_t *n_spans);

typedef struct fl_trace_query {
    const char *service;      /**< NULL: any; else a span of this service must match */
    const char *operation;    /**< NULL: any; span name of the matching span */
    uint64_t start_ns;        /**< span start >= start_ns (0: unbounded) */
    uint64_t end_ns;          /**< span start <= end_ns (0: unbounded) */
    uint64_t min_duration_ns; /**< the matching span lasts at least this */
    int errors_only;          /**< the matching span has status ERROR */
    size_t limit;             /**< max traces (0: 20; at most 10,000); newest first */
} fl_trace_query_t;

typedef struct fl_trace_summary {
    uint8_t trace_id[16];
    const char *root_service; /**< service of the root span (earliest span if no root) */
    const char *root_name;
    uint64_t start_ns; /**< earliest span start */
    uint64_t end_ns;   /**< latest span end */
    size_t n_spans;
    size_t n_errors;
    const char **services; /**< distinct services, sorted */
    size_t n_services;
} fl_trace_summary_t;

/** Traces with at least one span matching the query (all filters on the same span), at most
 *  limit of them: the traces whose latest matching span starts last, returned ordered by
 *  trace start, newest first. An unknown service or operation gives 0 results and FL_OK. */
int fl_store_search_traces(fl_store_t *s, const fl_trace_query_t *q, fl_arena_t *arena,
                           fl_trace_summary_t **out, size_t *n);

typedef struct fl_service_info {
    const char *name;
    const char **operations; /**< distinct span names, sorted */
    size_t n_operations;
    uint64_t span_count;
} fl_service_info_t;

/** Every service seen, sorted by name, with its operations. */
int fl_store_list_services(fl_store_t *s, fl_arena_t *arena, fl_service_info_t **out, size_t *n);

/* ---------------------------------------------------------------- analysis persistence
 * Durable homes for analysis/'s blobs (the store does not look inside them): named state
 * blobs and closed rollup buckets by start time (event time, unix ns). These calls use the
 * store's own auxiliary write connection (serialised by a mutex, never the ingest writer's
 * transaction), so they may be called from any thread. Errors: FL_ERR_INVALID,
 * FL_ERR_NOMEM, FL_ERR_STORE_FULL (disk full / I/O / busy: retry later), FL_ERR_STORE. */

/** One closed bucket to persist. */
typedef struct fl_store_bucket {
    uint64_t start_ns;
    const void *data;
    size_t len;
} fl_store_bucket_t;

/** In one transaction: upsert the state blob under key (key NULL: none), insert or replace
 *  the given buckets, then delete at most 1,000 buckets that start more than retain_ns
 *  before the newest stored bucket (0: keep 7 days), so retention proceeds in small steps. */
int fl_store_analysis_save(fl_store_t *s, const char *key, const void *state, size_t state_len,
                           const fl_store_bucket_t *buckets, size_t n_buckets, uint64_t retain_ns);

/** Append the state blob stored under key to out. FL_ERR_NOT_FOUND when there is none. */
int fl_store_analysis_load_state(fl_store_t *s, const char *key, fl_buf_t *out);

/** Called per stored bucket, oldest first; data is valid during the call only. A nonzero
 *  return stops the iteration (and is returned by fl_store_analysis_buckets). */
typedef int (*fl_store_bucket_fn)(void *ud, uint64_t start_ns, const void *data, size_t len);

/** Every stored bucket starting in [start_ns, end_ns) (end_ns 0: unbounded), oldest first.
 *  FL_OK, an error above, or the callback's nonzero return. */
int fl_store_analysis_buckets(fl_store_t *s, uint64_t start_ns, uint64_t end_ns,
                              fl_store_bucket_fn fn, void *ud);

/** Run SQLite's integrity check on a read connection (slow on a big store: for tests and
 *  crash-consistency checks). FL_OK, or FL_ERR_STORE_CORRUPT with the first problem in err. */
int fl_store_integrity_check(fl_store_t *s, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
