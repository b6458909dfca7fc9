/* SPDX-License-Identifier: Apache-2.0 */
/* Every SQL text the store runs: schema migrations, pragmas, and the statements that are
 * prepared once at open. Nothing else in store/ builds SQL. */
#ifndef FL_STORE_SQL_H
#define FL_STORE_SQL_H

/* ---------------------------------------------------------------- pragmas (run at open)
 * Pragmas cannot take bound parameters; the %-fields are integers from fl_store_opts_t. */

#define FL_SQL_PRAGMA_WAL "PRAGMA journal_mode=WAL"
#define FL_SQL_PRAGMA_SYNC_NORMAL "PRAGMA synchronous=NORMAL"
#define FL_SQL_PRAGMA_SYNC_FULL "PRAGMA synchronous=FULL"
#define FL_SQL_PRAGMA_CACHE_FMT "PRAGMA cache_size=-%zu" /* KiB */
#define FL_SQL_PRAGMA_TEMP_MEMORY "PRAGMA temp_store=MEMORY"
#define FL_SQL_PRAGMA_JOURNAL_LIMIT "PRAGMA journal_size_limit=67108864"
#define FL_SQL_PRAGMA_MAX_PAGES_FMT "PRAGMA max_page_count=%llu"
#define FL_SQL_PRAGMA_PAGE_SIZE "PRAGMA page_size"
#define FL_SQL_PRAGMA_QUERY_ONLY "PRAGMA query_only=1"
#define FL_SQL_INTEGRITY_CHECK "PRAGMA integrity_check"

/* ---------------------------------------------------------------- migrations
 * Each step runs in its own transaction, followed by FL_SQL_MIGRATION_RECORD. Later issues
 * (rollups, retention) append steps to the table in store.c; never edit a shipped step. */

#define FL_SQL_MIGRATIONS_TABLE                                                                    \
    "CREATE TABLE IF NOT EXISTS schema_migrations("                                                \
    " version INTEGER PRIMARY KEY,"                                                                \
    " applied_ns INTEGER NOT NULL)"

#define FL_SQL_MIGRATION_CURRENT "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
#define FL_SQL_MIGRATION_RECORD "INSERT INTO schema_migrations(version, applied_ns) VALUES(?1, ?2)"

/* Version 1: the columnar span store (docs/store.md). */
#define FL_SQL_MIGRATION_V1                                                                        \
    "CREATE TABLE meta("                                                                           \
    " key TEXT PRIMARY KEY,"                                                                       \
    " value INTEGER NOT NULL) WITHOUT ROWID;"                                                      \
    "CREATE TABLE dict("                                                                           \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " kind INTEGER NOT NULL,"                                                                      \
    " value BLOB NOT NULL);"                                                                       \
    "CREATE UNIQUE INDEX dict_kind_value ON dict(kind, value);"                                    \
    "CREATE TABLE resources("                                                                      \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " hash INTEGER NOT NULL,"                                                                      \
    " service_id INTEGER NOT NULL,"                                                                \
    " body BLOB NOT NULL);"                                                                        \
    "CREATE INDEX resources_hash ON resources(hash);"                                              \
    "CREATE TABLE scopes("                                                                         \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " hash INTEGER NOT NULL,"                                                                      \
    " body BLOB NOT NULL);"                                                                        \
    "CREATE INDEX scopes_hash ON scopes(hash);"                                                    \
    "CREATE TABLE blocks("                                                                         \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " n_spans INTEGER NOT NULL,"                                                                   \
    " n_traces INTEGER NOT NULL,"                                                                  \
    " min_start INTEGER NOT NULL,"                                                                 \
    " max_start INTEGER NOT NULL,"                                                                 \
    " max_end INTEGER NOT NULL,"                                                                   \
    " max_dur INTEGER NOT NULL,"                                                                   \
    " n_errors INTEGER NOT NULL,"                                                                  \
    " trace_lo BLOB NOT NULL,"                                                                     \
    " trace_hi BLOB NOT NULL,"                                                                     \
    " light BLOB NOT NULL);"                                                                       \
    "CREATE INDEX blocks_max_start ON blocks(max_start);"                                          \
    "CREATE TABLE block_heavy(" /* id = block id << 6 | chunk number */                            \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " data BLOB NOT NULL);"                                                                        \
    "CREATE TABLE block_bloom("                                                                    \
    " id INTEGER PRIMARY KEY,"                                                                     \
    " bloom BLOB NOT NULL);"                                                                       \
    "CREATE TABLE block_ops("                                                                      \
    " service_id INTEGER NOT NULL,"                                                                \
    " max_start INTEGER NOT NULL,"                                                                 \
    " block_id INTEGER NOT NULL,"                                                                  \
    " name_id INTEGER NOT NULL,"                                                                   \
    " min_start INTEGER NOT NULL,"                                                                 \
    " max_dur INTEGER NOT NULL,"                                                                   \
    " n_spans INTEGER NOT NULL,"                                                                   \
    " n_errors INTEGER NOT NULL,"                                                                  \
    " PRIMARY KEY(service_id, max_start, block_id, name_id)) WITHOUT ROWID;"                       \
    "CREATE INDEX block_ops_block ON block_ops(block_id);"                                         \
    "CREATE TABLE service_ops("                                                                    \
    " service_id INTEGER NOT NULL,"                                                                \
    " name_id INTEGER NOT NULL,"                                                                   \
    " span_count INTEGER NOT NULL,"                                                                \
    " PRIMARY KEY(service_id, name_id)) WITHOUT ROWID;"

/* Version 2: persistence for analysis/ (docs/store.md "Analysis state"): named state blobs
 * (upserted) and closed rollup buckets keyed by their start (unix ns, event time). */
#define FL_SQL_MIGRATION_V2                                                                        \
    "CREATE TABLE analysis_state("                                                                 \
    " key TEXT PRIMARY KEY,"                                                                       \
    " value BLOB NOT NULL,"                                                                        \
    " updated_ns INTEGER NOT NULL);"                                                               \
    "CREATE TABLE analysis_buckets("                                                               \
    " bucket_start INTEGER PRIMARY KEY,"                                                           \
    " data BLOB NOT NULL);"

/* ---------------------------------------------------------------- transactions */

#define FL_SQL_BEGIN "BEGIN"
#define FL_SQL_BEGIN_IMMEDIATE "BEGIN IMMEDIATE"
#define FL_SQL_COMMIT "COMMIT"
#define FL_SQL_ROLLBACK "ROLLBACK"

/* ---------------------------------------------------------------- writer statements */

#define FL_SQL_META_GET "SELECT value FROM meta WHERE key = ?1"
#define FL_SQL_META_PUT "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)"

#define FL_SQL_DICT_FIND "SELECT id FROM dict WHERE kind = ?1 AND value = ?2"
#define FL_SQL_DICT_INSERT "INSERT INTO dict(kind, value) VALUES(?1, ?2)"

#define FL_SQL_RES_FIND "SELECT id, body, service_id FROM resources WHERE hash = ?1"
#define FL_SQL_RES_INSERT "INSERT INTO resources(hash, service_id, body) VALUES(?1, ?2, ?3)"
#define FL_SQL_SCOPE_FIND "SELECT id, body FROM scopes WHERE hash = ?1"
#define FL_SQL_SCOPE_INSERT "INSERT INTO scopes(hash, body) VALUES(?1, ?2)"

#define FL_SQL_BLOCK_INSERT                                                                        \
    "INSERT INTO blocks(id, n_spans, n_traces, min_start, max_start, max_end, max_dur,"            \
    " n_errors, trace_lo, trace_hi, light) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
#define FL_SQL_HEAVY_INSERT "INSERT INTO block_heavy(id, data) VALUES(?1, ?2)"
#define FL_SQL_BLOOM_INSERT "INSERT INTO block_bloom(id, bloom) VALUES(?1, ?2)"
#define FL_SQL_OPS_INSERT                                                                          \
    "INSERT INTO block_ops(service_id, max_start, block_id, name_id, min_start, max_dur,"          \
    " n_spans, n_errors) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define FL_SQL_SVCOPS_UPSERT                                                                       \
    "INSERT INTO service_ops(service_id, name_id, span_count) VALUES(?1, ?2, ?3)"                  \
    " ON CONFLICT(service_id, name_id) DO UPDATE SET span_count = span_count + "                   \
    "excluded.span_count"

/* Compaction (and later retention) removes a range of blocks: ?1 .. ?2 are block ids
 * (for block_heavy, chunk row ids: block << 6 .. block << 6 | 63). */
#define FL_SQL_BLOCK_DELETE "DELETE FROM blocks WHERE id BETWEEN ?1 AND ?2"
#define FL_SQL_HEAVY_DELETE "DELETE FROM block_heavy WHERE id BETWEEN ?1 AND ?2"
#define FL_SQL_BLOOM_DELETE "DELETE FROM block_bloom WHERE id BETWEEN ?1 AND ?2"
#define FL_SQL_OPS_DELETE "DELETE FROM block_ops WHERE block_id BETWEEN ?1 AND ?2"

/* Retention (docs/store.md "Retention"): the oldest blocks whose every span ended before ?1,
 * at most ?2 of them (the max_start index narrows the candidates: max_end >= max_start). */
#define FL_SQL_BLOCKS_EXPIRED                                                                      \
    "SELECT id, n_spans FROM blocks WHERE max_start < ?1 AND max_end < ?1"                         \
    " ORDER BY max_start LIMIT ?2"
/* Take an expired block's spans off the service list's counts, then drop emptied rows. */
#define FL_SQL_SVCOPS_EXPIRE                                                                       \
    "UPDATE service_ops SET span_count = span_count - o.n FROM (SELECT service_id, name_id,"       \
    " SUM(n_spans) AS n FROM block_ops WHERE block_id = ?1 GROUP BY service_id, name_id) AS o"     \
    " WHERE service_ops.service_id = o.service_id AND service_ops.name_id = o.name_id"
#define FL_SQL_SVCOPS_PRUNE "DELETE FROM service_ops WHERE span_count <= 0"

/* ---------------------------------------------------------------- analysis persistence
 * Run on the store's auxiliary write connection (store_analysis.c), never the writer's. */

#define FL_SQL_ASTATE_PUT                                                                          \
    "INSERT INTO analysis_state(key, value, updated_ns) VALUES(?1, ?2, ?3)"                        \
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_ns = excluded.updated_ns"
#define FL_SQL_ASTATE_GET "SELECT value FROM analysis_state WHERE key = ?1"
#define FL_SQL_ABUCKET_PUT                                                                         \
    "INSERT OR REPLACE INTO analysis_buckets(bucket_start, data) VALUES(?1, ?2)"
/* Buckets starting in [?1, ?2), oldest first. */
#define FL_SQL_ABUCKET_RANGE                                                                       \
    "SELECT bucket_start, data FROM analysis_buckets"                                              \
    " WHERE bucket_start >= ?1 AND bucket_start < ?2 ORDER BY bucket_start"
#define FL_SQL_ABUCKET_MAX "SELECT MAX(bucket_start) FROM analysis_buckets"
/* Retention in small steps: at most ?2 buckets older than ?1 per call. */
#define FL_SQL_ABUCKET_EXPIRE                                                                      \
    "DELETE FROM analysis_buckets WHERE bucket_start IN (SELECT bucket_start FROM"                 \
    " analysis_buckets WHERE bucket_start < ?1 ORDER BY bucket_start LIMIT ?2)"

/* ---------------------------------------------------------------- open-time loading */

#define FL_SQL_BLOCK_MAX_ID "SELECT COALESCE(MAX(id), 0) FROM blocks"
/* The in-memory trace-id filter: first/last trace id and bloom of every block. */
#define FL_SQL_BLOOM_LOAD                                                                          \
    "SELECT b.id, b.trace_lo, b.trace_hi, f.bloom FROM blocks b JOIN block_bloom f"                \
    " ON f.id = b.id ORDER BY b.id"
/* Newest blocks first: the ones that rebuild the ingest dedup window, and the trailing run of
 * small blocks that compaction will merge. */
#define FL_SQL_BLOCKS_NEWEST "SELECT id, n_spans FROM blocks ORDER BY id DESC"

/* ---------------------------------------------------------------- reader statements */

#define FL_SQL_BLOCK_LIGHT "SELECT n_spans, min_start, light FROM blocks WHERE id = ?1"
#define FL_SQL_BLOCK_HEAVY "SELECT data FROM block_heavy WHERE id = ?1"
#define FL_SQL_DICT_GET "SELECT kind, value FROM dict WHERE id = ?1"
#define FL_SQL_RES_GET "SELECT body FROM resources WHERE id = ?1"
#define FL_SQL_SCOPE_GET "SELECT body FROM scopes WHERE id = ?1"

/* Search candidates for one service, newest block summaries first; the other filters prune
 * (service, name, block) summaries without touching the column blocks. ?2 = name id or
 * NULL, ?3/?4 = start range on span start, ?5 = min duration, ?6 = min errors. */
#define FL_SQL_SEARCH_BY_SERVICE                                                                   \
    "SELECT block_id, max_start FROM block_ops"                                                    \
    " WHERE service_id = ?1 AND (?2 IS NULL OR name_id = ?2)"                                      \
    " AND max_start >= ?3 AND min_start <= ?4 AND max_dur >= ?5 AND n_errors >= ?6"                \
    " ORDER BY max_start DESC"
/* Search candidates with no service given, newest first (?1, ?2 unused). */
#define FL_SQL_SEARCH_ALL                                                                          \
    "SELECT id, max_start FROM blocks"                                                             \
    " WHERE max_start >= ?3 AND min_start <= ?4 AND max_dur >= ?5 AND n_errors >= ?6"              \
    " ORDER BY max_start DESC"

#define FL_SQL_LIST_SERVICES                                                                       \
    "SELECT sd.value, nd.value, so.span_count FROM service_ops so"                                 \
    " JOIN dict sd ON sd.id = so.service_id JOIN dict nd ON nd.id = so.name_id"                    \
    " ORDER BY sd.value, nd.value"

#endif
