/* SPDX-License-Identifier: Apache-2.0 */
/* store internals shared by the store's .c files: byte streams and varints, the column-block
 * codec, the trace-id filter index, the ingest dedup set, and the store object itself. */
#ifndef FL_STORE_INT_H
#define FL_STORE_INT_H

#include <faultline/store.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <zstd.h>

/* ---------------------------------------------------------------- tuning constants */

#define FL__BLOCK_TARGET 4096     /* spans per column block, cut at trace boundaries */
#define FL__BLOCK_MAX 16384       /* hard cap: a bigger trace is split across blocks */
#define FL__BLOOM_BITS_PER_KEY 24 /* per distinct trace in a block: ~1e-4 false positives */
#define FL__HEAVY_CHUNK 1024      /* rows per independently compressed heavy chunk */
#define FL__HEAVY_CHUNK_V1 512    /* ... in blocks written with blob version 1 */
#define FL__MAX_CHUNKS 32         /* FL__BLOCK_MAX / FL__HEAVY_CHUNK_V1 */
/* block_heavy rowid of chunk c of a block */
#define FL__HEAVY_ROWID(block_id, c) (((int64_t)(block_id) << 6) | (int64_t)(c))
#define FL__ZSTD_LEVEL 1
#define FL__MAX_VALUE_DEPTH 128 /* nesting of arrays/kvlists accepted and decoded */
#define FL__STREAM_MAX 32
#define FL__SEARCH_MAX_LIMIT 10000 /* traces per search, whatever the query asks */
/* Blob version 2 (written): 1024-row heavy chunks, string references 0 = "the next new
 * string of the table", k = string k - 1. Version 1 (still read): 512-row chunks, string
 * references are table indexes. */
#define FL__BLOB_VERSION 2

/* ---------------------------------------------------------------- growable byte stream */

/** A growable byte stream. An allocation failure sets oom; later writes are dropped, so a
 *  sequence of writes needs one check at the end. */
typedef struct fl__sb {
    uint8_t *p;
    size_t len;
    size_t cap;
    int oom;
} fl__sb_t;

int fl__sb_grow(fl__sb_t *b, size_t extra);
void fl__sb_dispose(fl__sb_t *b);

static inline int fl__sb_reserve(fl__sb_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    return fl__sb_grow(b, extra);
}

static inline void fl__sb_put(fl__sb_t *b, const void *p, size_t n)
{
    if (n == 0 || fl__sb_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void fl__sb_u8(fl__sb_t *b, uint8_t v)
{
    if (fl__sb_reserve(b, 1) != 0)
        return;
    b->p[b->len++] = v;
}

static inline void fl__sb_varint(fl__sb_t *b, uint64_t v)
{
    if (fl__sb_reserve(b, 10) != 0)
        return;
    uint8_t *q = b->p + b->len;
    while (v >= 0x80) {
        *q++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *q++ = (uint8_t)v;
    b->len = (size_t)(q - b->p);
}

static inline uint64_t fl__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t fl__unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---------------------------------------------------------------- reading cursor */

/** A bounds-checked reading cursor; any overrun sets err and yields zeros. */
typedef struct fl__rd {
    const uint8_t *p;
    const uint8_t *end;
    int err;
} fl__rd_t;

static inline void fl__rd_init(fl__rd_t *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = r->p + n;
    r->err = 0;
}

static inline uint64_t fl__rd_varint(fl__rd_t *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            break;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->err = 1;
    r->p = r->end;
    return 0;
}

static inline uint8_t fl__rd_u8(fl__rd_t *r)
{
    if (r->p >= r->end) {
        r->err = 1;
        return 0;
    }
    return *r->p++;
}

static inline const uint8_t *fl__rd_bytes(fl__rd_t *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->err = 1;
        r->p = r->end;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}

/* ---------------------------------------------------------------- hashing (persisted) */

/** Our own 64-bit hashes. Resource and scope hashes are stored in the database, so these
 *  must never change meaning; they do not depend on common's fl_hash64. */
static inline uint64_t fl__mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t fl__load64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline void fl__store64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t fl__hash_bytes(const void *data, size_t len, uint64_t seed);

/** Hash of a trace id for the bloom filters. */
static inline uint64_t fl__trace_hash(const uint8_t id[16])
{
    return fl__mix64(fl__load64be(id) ^ fl__mix64(fl__load64be(id + 8) ^ 0x243f6a8885a308d3ULL));
}

/** Key of a span for the ingest dedup set. */
static inline uint64_t fl__span_key(const uint8_t trace[16], const uint8_t span[8])
{
    return fl__mix64(fl__trace_hash(trace) ^ fl__mix64(fl__load64be(span) + 0x13198a2e03707344ULL));
}

/* ---------------------------------------------------------------- blob container
 * A blob holds several streams, each stored raw or zstd-compressed:
 *   u8 version, varint n, n x (varint raw_len, varint stored_len, u8 codec), payloads. */

enum { FL__CODEC_RAW = 0, FL__CODEC_ZSTD = 1 };

/** Streams decoded from a blob; pointers refer to the scratch buffer given to unpack. */
typedef struct fl__streams {
    int version; /**< the blob's version (1 or FL__BLOB_VERSION) */
    int n;
    const uint8_t *p[FL__STREAM_MAX];
    size_t len[FL__STREAM_MAX];
} fl__streams_t;

/** Pack n streams into out (appending). raw_mask bit i: store stream i without trying zstd. */
int fl__blob_pack(ZSTD_CCtx *cctx, fl__sb_t *const *streams, int n, uint32_t raw_mask,
                  fl__sb_t *out);
/** Unpack a blob into scratch (reset first) and point st at each stream.
 *  FL_ERR_STORE_CORRUPT on a malformed blob, FL_ERR_NOMEM. */
int fl__blob_unpack(ZSTD_DCtx *dctx, const void *blob, size_t len, fl__sb_t *scratch,
                    fl__streams_t *st);

/* ---------------------------------------------------------------- value codecs */

/** Self-contained encoding of attributes (used for resource and scope bodies). */
void fl__inline_attrs_put(fl__sb_t *b, const fl_attrs_t *attrs);
void fl__inline_str_put(fl__sb_t *b, fl_str_t s);
/** Decode into the arena; strings are copied and NUL-terminated. */
int fl__inline_attrs_get(fl__rd_t *r, fl_arena_t *a, fl_attrs_t *out);
int fl__inline_str_get(fl__rd_t *r, fl_arena_t *a, fl_str_t *out);

/** Canonical body of a resource / scope, for dedup and storage. */
void fl__resource_body(fl__sb_t *b, const fl_resource_t *res);
void fl__scope_body(fl__sb_t *b, const fl_scope_t *scope);
int fl__resource_decode(const void *body, size_t len, fl_arena_t *a, fl_resource_t *out);
int fl__scope_decode(const void *body, size_t len, fl_arena_t *a, fl_scope_t *out);

/** 0 when some value nests deeper than FL__MAX_VALUE_DEPTH (resources and scopes are
 *  checked with this; span values are checked while they are encoded). */
int fl__attrs_depth_ok(const fl_attrs_t *attrs);

/* ---------------------------------------------------------------- column blocks */

/** One span going into a block: its resolved dictionary ids and copies of the fields the
 *  encoder sorts and groups by, so that grouping never touches the span itself. */
typedef struct fl__row {
    const fl_span_t *sp;
    uint64_t t_hi; /* trace id, big-endian halves */
    uint64_t t_lo;
    uint64_t s_id; /* span id, big-endian */
    uint64_t start;
    uint32_t seq; /* arrival order within the group */
    uint32_t svc_id;
    uint32_t name_id;
    uint32_t res_id;
    uint32_t scope_id;
} fl__row_t;

/** Per (service, name) summary of a block, written to block_ops. */
typedef struct fl__op_sum {
    uint32_t svc_id;
    uint32_t name_id;
    uint64_t min_start;
    uint64_t max_start;
    uint64_t max_dur;
    uint32_t n_spans;
    uint32_t n_errors;
} fl__op_sum_t;

/** Block-level figures written beside the blobs. */
typedef struct fl__block_meta {
    uint32_t n_spans;
    uint32_t n_traces;
    uint64_t min_start;
    uint64_t max_start;
    uint64_t max_end;
    uint64_t max_dur;
    uint32_t n_errors;
    uint8_t trace_lo[16];
    uint8_t trace_hi[16];
} fl__block_meta_t;

/** Reusable encoder state (owned by the writer). */
typedef struct fl__enc fl__enc_t;

fl__enc_t *fl__enc_new(void);
void fl__enc_free(fl__enc_t *e);
/** Encode rows into the light blob, the heavy chunks and the bloom; fills meta and the op
 *  summaries (pointer valid until the next call). Heavy chunk c (rows c * FL__HEAVY_CHUNK
 *  onwards, in arrival order) is heavy[chunk_off[c] .. chunk_off[c + 1]). FL_ERR_TOO_DEEP
 *  (with *bad_seq = the offending row's seq) when a span value nests deeper than
 *  FL__MAX_VALUE_DEPTH. rows come grouped by trace id in ascending order, with no duplicate
 *  (trace, span); the block stores them in arrival (seq) order, which keeps the encoder's
 *  reads of span memory sequential. */
int fl__enc_block(fl__enc_t *e, const fl__row_t *rows, size_t n, fl__sb_t *light, fl__sb_t *heavy,
                  const size_t **chunk_off, size_t *n_chunks, fl__sb_t *bloom,
                  fl__block_meta_t *meta, const fl__op_sum_t **ops, size_t *n_ops,
                  uint32_t *bad_seq);

/** Light columns of a block, decoded (arrays owned by the decoder). Rows are in arrival
 *  order; the trace directory lists the distinct traces (ascending) and their rows. */
typedef struct fl__light {
    uint32_t n;
    uint32_t chunk_rows;      /* rows per heavy chunk (by blob version) */
    uint32_t n_runs;          /* distinct traces */
    const uint8_t *trace_ids; /* n_runs x 16, ascending */
    uint32_t *run_start;      /* n_runs + 1: trace k's rows are trace_rows[run_start[k] ..] */
    uint32_t *trace_rows;     /* n row numbers, ascending within each trace */
    uint32_t *row_trace;      /* n: the trace (directory index) of each row */
    const uint8_t *span_ids;  /* n x 8 */
    uint8_t *parent_ids;      /* n x 8 */
    uint64_t *start;
    uint64_t *end;
    uint32_t *svc;
    uint32_t *name;
    int32_t *status;
} fl__light_t;

/** Rows in heavy chunk c of the block L describes. */
static inline uint32_t fl__light_chunk_len(const fl__light_t *L, uint32_t c)
{
    uint32_t left = L->n - c * L->chunk_rows;
    return left < L->chunk_rows ? left : L->chunk_rows;
}

typedef struct fl__dec fl__dec_t;

fl__dec_t *fl__dec_new(void);
void fl__dec_free(fl__dec_t *d);
/** Decode the light blob of a block of n spans. */
int fl__dec_light(fl__dec_t *d, const void *blob, size_t len, uint32_t n, const fl__light_t **out);
/** Only the trace-id run table (cheap): used to test membership before a full decode. */
int fl__dec_find_trace(fl__dec_t *d, const void *blob, size_t len, const uint8_t trace[16],
                       int *found);
/** Decode the heavy columns of rows[0 .. k) (ascending, relative to the chunk; the chunk
 *  holds n rows) of one heavy chunk into spans[0 .. k)
 *  (identity fields must already be filled from the light columns). res_ids / scope_ids
 *  receive the references. */
int fl__dec_heavy(fl__dec_t *d, const void *blob, size_t len, uint32_t n, const uint32_t *rows,
                  size_t k, fl_arena_t *a, fl_span_t *spans, uint32_t *res_ids,
                  uint32_t *scope_ids);

/* ---------------------------------------------------------------- bloom */

/** A key's probe positions, computed once for testing it against many filters. */
typedef struct fl__bloom_key {
    uint64_t h;
    uint16_t pos[8];
} fl__bloom_key_t;

size_t fl__bloom_bytes(size_t n_keys);
void fl__bloom_add(uint8_t *bloom, size_t nbytes, uint64_t h);
int fl__bloom_test(const uint8_t *bloom, size_t nbytes, uint64_t h);
void fl__bloom_key_init(fl__bloom_key_t *k, uint64_t h);
int fl__bloom_test_key(const uint8_t *bloom, size_t nbytes, const fl__bloom_key_t *k);

/* ---------------------------------------------------------------- trace-id filter index
 * In memory, shared by the writer (append after commit) and readers (probe). */

typedef struct fl__tix_ent {
    int64_t block_id;
    uint64_t lo; /* first 8 bytes of the smallest / largest trace id, big-endian */
    uint64_t hi;
    uint64_t born; /* valid for layout epochs born <= e < died */
    uint64_t died;
    uint8_t *bloom;
    uint32_t nbytes;
} fl__tix_ent_t;

/* The layout epoch is persisted in meta and bumped by every transaction that moves spans
 * between blocks (compaction; retention later). A reader reads it inside its snapshot and
 * probes only the filters valid at that epoch, so the filters it uses always describe the
 * blocks its snapshot holds, whatever the writer does meanwhile. */
typedef struct fl__tix {
    pthread_rwlock_t lock;
    fl__tix_ent_t *ents; /* live entries in ascending block order, merged ones appended */
    size_t n;
    size_t cap;
    size_t live;
    size_t bytes;
} fl__tix_t;

int fl__tix_init(fl__tix_t *t);
void fl__tix_dispose(fl__tix_t *t);
/** Append a block valid from epoch born (takes a copy of the bloom). */
int fl__tix_add(fl__tix_t *t, int64_t block_id, const uint8_t lo[16], const uint8_t hi[16],
                const uint8_t *bloom, size_t nbytes, uint64_t born);
/** Number of entries (live or awaiting collection). */
size_t fl__tix_count(fl__tix_t *t);
/** Drop the entries added after the first n (their commit failed). */
void fl__tix_truncate(fl__tix_t *t, size_t n);
/** End the validity of blocks first .. last (entries born before epoch) at epoch. */
void fl__tix_retire(fl__tix_t *t, int64_t first, int64_t last, uint64_t epoch);
/** Free the entries no reader can need: dead at every epoch >= min_epoch. */
void fl__tix_gc(fl__tix_t *t, uint64_t min_epoch);
/** Ids of the blocks valid at epoch whose filter may hold the trace: ascending, unique, in a
 *  malloc'ed array. */
int fl__tix_probe(fl__tix_t *t, const uint8_t trace[16], uint64_t epoch, int64_t **ids, size_t *n);

typedef struct fl__tix_hit {
    int64_t block_id;
    uint32_t trace; /* index into the probed traces */
} fl__tix_hit_t;

/** As fl__tix_probe for several traces at once: (block, trace) pairs, ascending by block. */
int fl__tix_probe_many(fl__tix_t *t, const uint8_t (*traces)[16], size_t n_traces, uint64_t epoch,
                       fl__tix_hit_t **hits, size_t *n_hits);

/* ---------------------------------------------------------------- ingest dedup set */

/** Remembers at least `window` recent span keys (64-bit) in one open-addressing table;
 *  keys age out in four generations. Not thread-safe (writer only). */
typedef struct fl__dedup {
    uint64_t *slots;
    size_t cap;
    size_t gen_size;
    size_t gen_count[8];
    unsigned cur;
    size_t sweep_pos;  /* next slot the running sweep looks at; cap: none running */
    size_t sweep_step; /* slots swept per insert */
} fl__dedup_t;

int fl__dedup_init(fl__dedup_t *d, size_t window);
void fl__dedup_dispose(fl__dedup_t *d);
int fl__dedup_contains(const fl__dedup_t *d, uint64_t key);
/** Start loading the slot a later fl__dedup_contains(key) will probe. */
void fl__dedup_prefetch(const fl__dedup_t *d, uint64_t key);
/** Insert a key known to be absent. */
void fl__dedup_insert(fl__dedup_t *d, uint64_t key);

/* ---------------------------------------------------------------- the store */

typedef struct fl__qent {
    struct fl__qent *next;
    fl_span_batch_t *batch;
    fl_store_done_cb cb;
    void *ctx;
} fl__qent_t;

typedef struct fl__reader fl__reader_t;
typedef struct fl__writer fl__writer_t;

struct fl_store {
    char *path;
    fl_store_opts_t opts;

    /* queue, shared with submitters; also guards stats */
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* writer waits for work */
    pthread_cond_t cv_done; /* flushers wait for commits */
    fl__qent_t *q_head;
    fl__qent_t *q_tail;
    size_t q_spans; /* queued + being written */
    size_t q_batches;
    uint64_t seq_submitted; /* batches accepted */
    uint64_t seq_done;      /* batches called back */
    int closing;
    int writer_started;
    pthread_t writer_thread;
    fl_store_stats_t stats;
    uint64_t max_db_bytes; /* requested (0: none); applied by the writer */
    uint64_t max_db_bytes_applied;
    uint64_t retention_ns; /* 0: keep everything; read by the writer */
    int retain_kick;       /* the retention changed: the idle writer takes a step */

    fl__writer_t *w;
    fl__tix_t tix;

    /* commit observer (set before ingest starts; read by the writer only) */
    fl_store_observer_fn observer;
    void *observer_ud;

    /* analysis persistence: an auxiliary write connection (store_analysis.c) */
    pthread_mutex_t amu;
    struct fl__aux *aux;

    /* WAL checkpoints on their own thread and connection (store.c) */
    pthread_mutex_t ckmu;
    pthread_cond_t ckcv;
    int ckpt_kick, ckpt_closing, ckpt_started, ckpt_last_rc;
    pthread_t ckpt_thread;
    sqlite3 *ckpt_db;

    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    fl__reader_t **readers;
    int n_readers;
    int n_free_readers;
    fl__reader_t **free_readers;
};

#define FL__COMPACT_SMALL (FL__BLOCK_TARGET / 2) /* blocks below this get merged */
#define FL__COMPACT_MAX_RUN 64                   /* blocks merged at once, at most */
#define FL__COMPACT_RUN 8                        /* merge when this many have accumulated */
#define FL__RETAIN_STEP 16 /* blocks deleted per retention transaction (~one full group) */

/* writer (store_write.c) */
int fl__writer_new(fl_store_t *s, sqlite3 *db, fl__writer_t **out, char *err, size_t errlen);
void fl__writer_free(fl__writer_t *w);
/** Load persisted state (meta, trace filters, dedup window). */
int fl__writer_load(fl_store_t *s, char *err, size_t errlen);
/** Write one group of queue entries in one transaction; calls back and frees each. */
void fl__writer_group(fl_store_t *s, fl__qent_t *list);
void fl__writer_apply_limits(fl_store_t *s);
/** One bounded retention step when something may have expired; 1 when more may remain. */
int fl__writer_retention(fl_store_t *s);
/** The configured retention (0: none), read under the store's lock. */
uint64_t fl__store_retention(fl_store_t *s);

/* analysis persistence (store_analysis.c) */
int fl__aux_open(fl_store_t *s, char *err, size_t errlen);
void fl__aux_close(fl_store_t *s);

/* readers (store_read.c) */
/** The oldest layout epoch a reader may still be using (UINT64_MAX: none). */
uint64_t fl__readers_min_epoch(fl_store_t *s);
int fl__reader_new(fl_store_t *s, fl__reader_t **out, char *err, size_t errlen);
void fl__reader_free(fl__reader_t *r);

/* shared SQLite helpers (store.c) */
/** Open a connection with the store's pragmas: the writer (read-write, creating, WAL) or a
 *  reader (read-only). */
int fl__open_db(fl_store_t *s, int writer, sqlite3 **out, char *err, size_t errlen);
/** Map an SQLite result code to an fl error: FULL / READONLY / IOERR / CANTOPEN / BUSY
 *  become FL_ERR_STORE_FULL (retryable), CORRUPT / NOTADB FL_ERR_STORE_CORRUPT, NOMEM. */
int fl__sql_err(int rc);
int fl__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen);
static inline void fl__done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}
/** Run one statement with no result rows (reset after). Returns the SQLite code. */
int fl__step_done(sqlite3_stmt *st);

#endif
