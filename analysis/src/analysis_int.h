/* SPDX-License-Identifier: Apache-2.0 */
/* analysis internals shared by the module's .c files: sketch storage, name and series
 * tables, the span window, open and sealed buckets, baselines, detectors and history. */
#ifndef FAULTLINE_ANALYSIS_INT_H
#define FAULTLINE_ANALYSIS_INT_H

#include <faultline/analysis.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define FL__NONE UINT32_MAX

/* ---------------------------------------------------------------- encoding helpers */

int fl__put_u8(fl_buf_t *b, uint8_t v);
int fl__put_varint(fl_buf_t *b, uint64_t v);
int fl__put_double(fl_buf_t *b, double v);
int fl__put_bytes(fl_buf_t *b, const void *p, size_t n);
int fl__put_str(fl_buf_t *b, const char *s);

/* A bounded reader: every get fails (and sticks) once the input is exhausted or bad. */
typedef struct fl__rd {
    const uint8_t *p, *end;
    int err;
} fl__rd_t;

uint8_t fl__get_u8(fl__rd_t *r);
uint64_t fl__get_varint(fl__rd_t *r);
double fl__get_double(fl__rd_t *r);
void fl__get_bytes(fl__rd_t *r, void *out, size_t n);
/* A length-prefixed string as a view into the input (NUL not included). */
const char *fl__get_str(fl__rd_t *r, size_t *len);

/* ---------------------------------------------------------------- sketch */

struct fl_sketch {
    uint64_t count;
    uint64_t zero; /* values below 1 ns */
    uint64_t sum;
    uint64_t min, max;
    uint32_t n, cap;
    uint16_t *keys; /* sorted bucket indices; keys and cnts share one allocation */
    uint32_t *cnts;
};

void fl__sketch_init(fl_sketch_t *s);
void fl__sketch_dispose(fl_sketch_t *s);
int fl__sketch_encode_body(const fl_sketch_t *s, fl_buf_t *out);
/* Decode one encoded body and merge it into s. */
int fl__sketch_decode_merge(fl_sketch_t *s, fl__rd_t *r);
/* Variance of the values (from the bucket representatives; exact min/max not used). */
double fl__sketch_var(const fl_sketch_t *s);
/* Memory of the bins alone. */
size_t fl__sketch_heap(const fl_sketch_t *s);

/* ---------------------------------------------------------------- statistics */

double fl__binom_sf(uint64_t k, uint64_t n, double p); /* P(X >= k), X ~ Bin(n, p) */
double fl__poisson_cdf(uint64_t k, double lambda);     /* P(X <= k) */
double fl__poisson_sf(uint64_t k, double lambda);      /* P(X >= k) */

/* ---------------------------------------------------------------- span attributes */

/* What analysis reads from one span, extracted in one pass over its attributes. */
typedef struct fl__span_facts {
    int http_status; /* 0 when absent */
    int grpc_status; /* -1 when absent */
    fl_str_t route;  /* http.route */
    fl_str_t method; /* http.request.method or http.method */
    fl_str_t peer;   /* peer.service */
    fl_str_t db_system, db_name, server_addr;
    fl_str_t error_type; /* error.type, else the first exception event's exception.type */
    int is_error;        /* status ERROR, or HTTP >= 500 on server/client spans */
    int timeout_hint;    /* 408/504, DEADLINE_EXCEEDED, or "timeout" in a type/message */
} fl__span_facts_t;

void fl__span_facts(const fl_span_t *s, fl__span_facts_t *f);
/* The normalised operation name of a span into out (cap >= 16). */
size_t fl__op_name(const fl_span_t *s, const fl__span_facts_t *f, char *out, size_t cap);
size_t fl__peer_name(const fl__span_facts_t *f, char *out, size_t cap);

/* ---------------------------------------------------------------- string table */

#define FL__CHUNK_BITS 10
#define FL__CHUNK (1u << FL__CHUNK_BITS)
#define FL__MAX_CHUNKS 4096

/* Interned strings: written by the ingest side only; readers (run, queries) read ids below
 * the published count without the ingest lock. Storage never moves. */
typedef struct fl__strtab {
    const char **chunk[FL__MAX_CHUNKS];
    uint32_t n;   /* published with release semantics */
    uint32_t max; /* cap on distinct strings */
    uint32_t *slots;
    uint32_t mask;
    uint32_t *hashes; /* per id, writer side */
    uint32_t hcap;
    fl_arena_t *mem;
} fl__strtab_t;

int fl__strtab_init(fl__strtab_t *t, uint32_t max);
void fl__strtab_dispose(fl__strtab_t *t);
/* Id of the string, adding it; FL__NONE when the table is full or on OOM. */
uint32_t fl__strtab_intern(fl__strtab_t *t, const char *s, size_t len);
const char *fl__strtab_get(const fl__strtab_t *t, uint32_t id);
uint32_t fl__strtab_count(const fl__strtab_t *t);

/* ---------------------------------------------------------------- series */

enum { FL__SER_ENDPOINT = 1, FL__SER_OP = 2, FL__SER_EDGE = 3 };
enum {
    FL__EDGE_ASYNC = 1,   /* producer -> consumer */
    FL__EDGE_VIRTUAL = 2, /* callee is an uninstrumented peer */
    FL__EDGE_FALLBACK = 4 /* parent -> child of another service, no client/server pair */
};

/* Immutable description of a series. Nodes use svc/op; edges add the caller. */
typedef struct fl__series {
    uint8_t type;
    uint8_t flags;
    uint32_t svc, op;               /* node, or edge callee */
    uint32_t caller_svc, caller_op; /* edges only (FL__NONE otherwise) */
} fl__series_t;

typedef struct fl__sertab {
    fl__series_t *chunk[FL__MAX_CHUNKS];
    uint32_t n; /* published with release semantics */
    uint32_t max;
    uint32_t *slots; /* writer-side hash: id + 1 */
    uint32_t mask;
    uint32_t count_by_type[4];
} fl__sertab_t;

int fl__sertab_init(fl__sertab_t *t, uint32_t max);
void fl__sertab_dispose(fl__sertab_t *t);
/* Find or add; FL__NONE when the cap refuses it (or OOM). */
uint32_t fl__sertab_get(fl__sertab_t *t, const fl__series_t *key);
const fl__series_t *fl__sertab_at(const fl__sertab_t *t, uint32_t id);
uint32_t fl__sertab_count(const fl__sertab_t *t);

/* ---------------------------------------------------------------- accumulators */

#define FL__MAX_CODES 8
#define FL__MAX_ETYPES 4
#define FL__MAX_EX 2

typedef struct fl__example {
    uint64_t dur_ns; /* 0: empty */
    uint8_t trace_id[16];
} fl__example_t;

/* One series in one bucket, while the bucket is open and until run turns it into history. */
typedef struct fl__acc {
    uint32_t series;
    uint32_t count, errors, timeouts, unanswered;
    uint32_t st_unset, st_ok, st_error;
    fl_sketch_t lat; /* durations (edges: caller-side latency) */
    fl_sketch_t aux; /* self time (nodes) or gap (edges) */
    uint16_t codes[FL__MAX_CODES];
    uint32_t code_cnt[FL__MAX_CODES];
    uint32_t code_other;
    uint8_t n_codes, n_etypes;
    uint32_t etypes[FL__MAX_ETYPES];
    uint32_t etype_cnt[FL__MAX_ETYPES];
    fl__example_t slow[FL__MAX_EX]; /* slowest requests */
    fl__example_t err[FL__MAX_EX];  /* slowest erroring requests */
} fl__acc_t;

void fl__acc_init(fl__acc_t *c, uint32_t series);
void fl__acc_dispose(fl__acc_t *c);
void fl__acc_example(fl__example_t *ex, const uint8_t trace_id[16], uint64_t dur);
void fl__acc_code(fl__acc_t *c, int code, uint32_t n);
void fl__acc_etype(fl__acc_t *c, uint32_t id, uint32_t n);
/* Merge src into dst (sketches, counts, codes, types, examples). */
int fl__acc_merge(fl__acc_t *dst, const fl__acc_t *src);
/* Encode / decode an accumulator (names as string ids). */
int fl__acc_encode(const fl__acc_t *c, fl_buf_t *out);
/* Decode and merge into c (c->series is set from the input when c->count == 0 ...). */
int fl__acc_decode_merge(fl__acc_t *c, fl__rd_t *r, uint32_t *series_out);

typedef struct fl__obucket {
    int64_t b; /* bucket index held, or INT64_MIN */
    fl__acc_t *accs;
    uint32_t n, cap;
    uint64_t spans;
} fl__obucket_t;

typedef struct fl__sealed {
    struct fl__sealed *next;
    int64_t b;
    uint64_t spans;
    fl__acc_t *accs;
    uint32_t n;
} fl__sealed_t;

/* ---------------------------------------------------------------- span window */

enum {
    FL__R_LIVE = 1,
    FL__R_ENTRY = 2,
    FL__R_ERR = 4,
    FL__R_TIMEOUT = 8,
    FL__R_LINKED = 16, /* parent_id is a link target (consumer linked to its producer) */
    FL__R_FINAL = 32,
    FL__R_ORPHAN = 64,  /* waiting in the orphan list of parent_id */
    FL__R_DUR_US = 128, /* dur holds microseconds (span longer than 4.29 s) */
    FL__R_DB = 256      /* has db.system: a call to a data store */
};

/* A compact span record (80 bytes). Indices are slots in the ring; FL__NONE for none. */
typedef struct fl__wrec {
    uint64_t span_id, parent_id, end_ns;
    uint8_t trace_id[16];
    uint32_t dur;
    uint32_t svc, name, peer, node;
    uint32_t parent, first_child, next_sib, prev_sib;
    uint16_t flags;
    uint8_t kind;
    uint8_t pad;
} fl__wrec_t;

typedef struct fl__wslot {
    uint64_t key;
    uint32_t v; /* record index + 1; 0 = empty */
    uint32_t pad;
} fl__wslot_t;

typedef struct fl__window {
    fl__wrec_t *recs;
    uint32_t cap;  /* power of two */
    uint64_t head; /* sequence number of the next insert */
    uint64_t fin;  /* no unfinalized record has a sequence below this */
    /* open addressing with the key beside the value, so a probe is one cache line and
     * never touches a record: ids: span id -> record; orph: parent id -> the first record
     * waiting for that parent */
    fl__wslot_t *ids, *orph;
    uint32_t hmask;
    uint32_t used;
} fl__window_t;

/* ---------------------------------------------------------------- baselines & detectors */

enum { FL__M_LAT_MEAN, FL__M_LAT_P95, FL__M_AUX_MEAN, FL__M_AUX_P95, FL__M_RATE, FL__M_N };
enum { FL__D_LAT, FL__D_AUX, FL__D_ERR, FL__D_TIMEOUT, FL__D_TRAFFIC, FL__D_NEWTYPE, FL__D_N };

typedef struct fl__metric {
    fl_ewma_t e;
    uint32_t streak; /* consecutive outliers (a persistent shift is eventually learned) */
} fl__metric_t;

/* Latency statistics are learned on a log scale: latencies are skewed and change by
 * factors, so the spread of ln(value) is what a "3x" should be judged against. The baseline
 * shown is exp(mean of ln), the typical bucket value. Values below 1 us count as 1 us. */
static inline double fl__lat_ln(double ns)
{
    return log(ns < 1000 ? 1000 : ns);
}

static inline double fl__lat_base(const fl__metric_t *m)
{
    return m->e.n ? exp(m->e.mean) : 0;
}

typedef struct fl__det {
    uint8_t hist;  /* bit 0: the latest evaluated bucket held */
    uint8_t clear; /* consecutive clear buckets while open */
    uint32_t open; /* anomaly index, FL__NONE */
} fl__det_t;

typedef struct fl__profile {
    int64_t first_b; /* first bucket learned: active 48 h later */
    float rate_mean[24], rate_var[24];
    uint32_t n[24];
} fl__profile_t;

#define FL__RECENT 24
#define FL__KNOWN_TYPES 32

typedef struct fl__sstate {
    uint8_t seen;
    int64_t first_b, last_b; /* first bucket with data; latest bucket with data */
    int64_t first_trained_b, last_trained_b;
    fl__metric_t m[FL__M_N];
    double ew_err, ew_cnt, ew_unans; /* EWMA counts: error rate = ew_err / ew_cnt */
    double ew_slow[2]; /* requests beyond threshold x p95 (latency, aux): the usual share */
    uint64_t trained_buckets, trained_requests, skipped_anomalous, skipped_outliers;
    int64_t eval_b[8]; /* last evaluated buckets, [0] newest */
    uint8_t n_eval;
    fl__det_t det[FL__D_N];
    uint32_t known[FL__KNOWN_TYPES];
    uint8_t n_known;
    uint32_t cand; /* a new error type seen once, waiting to recur (FL__NONE) */
    int64_t cand_b;
    fl__profile_t *profile;
    fl_baseline_point_t *recent; /* ring of FL__RECENT */
    uint8_t recent_head, recent_n;
} fl__sstate_t;

/* An anomaly as kept by the engine (names as ids; converted on query). */
typedef struct fl__anom {
    uint64_t id;
    uint32_t series;
    uint8_t kind, subject, det, open;
    uint8_t metric, direction, severity, accepted;
    uint32_t etype;
    int64_t start_b, end_b, detected_b;
    double observed, baseline, ratio, z;
    double peak; /* how bad the worst bucket was, comparable within one detector */
    uint64_t samples, buckets;
    uint64_t mark; /* run number that last reported it */
    uint8_t n_traces;
    uint8_t traces[FL_ANOMALY_MAX_TRACES][16];
} fl__anom_t;

/* ---------------------------------------------------------------- history */

#define FL__TIERS 3

typedef struct fl__hslot {
    int64_t b; /* bucket index in the tier's width; INT64_MIN when empty */
    uint8_t *blob;
    uint32_t len;
} fl__hslot_t;

typedef struct fl__tier {
    uint64_t width_ns;
    uint32_t ratio; /* buckets of the tier below per bucket of this tier */
    uint32_t nslots;
    fl__hslot_t *slots;
    int64_t dropped_max; /* newest bucket this tier has let go of (INT64_MIN: none) */
} fl__tier_t;

typedef struct fl__history {
    fl__tier_t tier[FL__TIERS];
    size_t bytes, max_bytes;
    /* the coarser buckets being built: each closed bucket is merged in as it arrives, so
     * no single run pays for a whole roll-up */
    struct fl__accmap *open[FL__TIERS];
    int64_t open_b[FL__TIERS];
    uint64_t open_spans[FL__TIERS];
} fl__history_t;

int fl__history_init(fl__history_t *h, uint64_t bucket_ns, size_t max_bytes);
void fl__history_dispose(fl__history_t *h);
/* Store the encoded bucket b (tier 0) and roll coarser tiers up; takes blob. */
int fl__history_put(fl__history_t *h, int64_t b, uint8_t *blob, uint32_t len);
/* Oldest time held, 0 when empty. */
uint64_t fl__history_oldest_ns(const fl__history_t *h);
/* Call fn on every blob covering [start, end) without double counting across tiers. */
typedef int (*fl__blob_fn)(void *ctx, const uint8_t *blob, uint32_t len, uint64_t t0, uint64_t t1);
int fl__history_scan(const fl__history_t *h, uint64_t start_ns, uint64_t end_ns, fl__blob_fn fn,
                     void *ctx, uint64_t *cov_start, uint64_t *cov_end);
const fl__hslot_t *fl__history_find(const fl__history_t *h, int tier, int64_t b);
/* Put an imported bucket into every tier where it belongs. */
int fl__history_import(fl__history_t *h, int64_t b, const uint8_t *blob, uint32_t len);
/* Merge a blob into a tier's bucket (used by import). */
int fl__history_merge_into(fl__history_t *h, int tier, int64_t b, const uint8_t *blob,
                           uint32_t len);

/* Bucket blob (internal form): "FLB" v1, count of entries, then encoded accumulators sorted
 * by series id. Decoded with fl__blob_foreach. */
int fl__blob_encode(const fl__acc_t *accs, uint32_t n, uint64_t spans, fl_buf_t *out);
typedef int (*fl__acc_fn)(void *ctx, const fl__acc_t *acc);
int fl__blob_foreach(const uint8_t *blob, uint32_t len, fl__acc_fn fn, void *ctx, uint64_t *spans);
/* A series -> accumulator map for merging many blobs. */
typedef struct fl__accmap {
    fl__acc_t *accs;
    uint32_t n, cap;
    uint32_t *pos; /* series -> index + 1 */
    uint32_t pos_cap;
} fl__accmap_t;

fl__acc_t *fl__accmap_get(fl__accmap_t *m, uint32_t series);
int fl__accmap_add(void *map, const fl__acc_t *c); /* an fl__acc_fn */
void fl__accmap_sort(fl__accmap_t *m);
void fl__accmap_dispose(fl__accmap_t *m);
/* Merge several blobs into one. */
int fl__blob_merge(const uint8_t *const *blobs, const uint32_t *lens, size_t n, fl_buf_t *out);

/* ---------------------------------------------------------------- engine */

struct fl_analysis {
    fl_analysis_opts_t o;
    double alpha;
    uint32_t K; /* open bucket slots */

    /* ---- ingest side (ingest_mu) */
    pthread_mutex_t ingest_mu;
    fl__strtab_t str;
    fl__sertab_t ser;
    uint32_t *acc_slot; /* per series x K: index into the open bucket's accs */
    uint32_t acc_slot_cap;
    fl__obucket_t *ob;
    fl__window_t win;
    int64_t sealed_next; /* next bucket to seal; INT64_MIN before the first span */
    uint64_t wm;
    fl__sealed_t *pend_head, *pend_tail;
    uint32_t n_pend;
    const fl_resource_t *last_res;
    uint32_t last_svc;
    /* learned (caller service, peer name) -> callee (service, operation) */
    uint64_t *peer_keys;
    uint64_t *peer_vals;
    uint32_t peer_mask, peer_n;
    uint64_t *peer_k2;
    uint32_t id_empty; /* interned "" */
    /* recently named operations: hash of (name, route, method) -> interned op name */
    struct fl__opcache {
        uint64_t key;
        uint32_t id;
    } * opcache;
    /* two generations of a bit filter over the parent ids orphans wait for, so most
     * inserts skip the orphan-table probe */
    uint64_t *ofilt[2];
    uint64_t ofilt_gen;
    uint64_t *scr; /* scratch intervals for self time */
    uint32_t scr_cap;
    /* counters (written under ingest_mu, read atomically by status) */
    uint64_t c_spans, c_late, c_lost, c_refused, c_evict, c_unmatched, c_dropped_buckets;

    /* ---- analysis state (state_lock) */
    pthread_rwlock_t state_lock;
    pthread_mutex_t run_mu; /* one run at a time */
    fl__sstate_t *st;
    uint32_t st_n, st_cap;
    fl__anom_t *an;
    uint32_t an_n, an_cap;
    uint32_t an_open;
    uint64_t an_total;
    fl__history_t hist;
    int64_t analyzed_next; /* next bucket run will analyse */
    uint64_t run_wm;
    uint64_t last_run_wall, last_run_dur, runs;
    int restored_ok;
};

/* rollup.c: ingest side */
#define FL__PEER_CAP 8192
int fl__acc_slots_reserve(fl_analysis_t *a, uint32_t id);
int fl__observe_one(fl_analysis_t *a, const fl_span_t *s);
/* Start loading the window slots fl__observe_one will probe for s (a random cache miss per
 * span otherwise); called a few spans ahead. */
void fl__observe_prefetch(const fl_analysis_t *a, const fl_span_t *s);
int fl__advance(fl_analysis_t *a, uint64_t wm);
void fl__ingest_dispose(fl_analysis_t *a);
int fl__window_init(fl__window_t *w, uint32_t capacity);
void fl__window_dispose(fl__window_t *w);

/* detect.c: analysis side */
typedef struct fl__runctx {
    uint64_t mark;
    uint32_t *changed;
    uint32_t n, cap;
    uint32_t opened, updated, closed;
} fl__runctx_t;

int fl__process_sealed(fl_analysis_t *a, fl__sealed_t *s, fl__runctx_t *ctx);
void fl__anom_compact(fl_analysis_t *a);
void fl__sealed_free(fl__sealed_t *s);
int fl__state_reserve(fl_analysis_t *a, uint32_t n);
void fl__anom_to_public(const fl_analysis_t *a, const fl__anom_t *x, fl_arena_t *arena,
                        fl_anomaly_t *out);
double fl__baseline_rate(const fl_analysis_t *a, const fl__sstate_t *st, int64_t b, double *sd,
                         int *hourly);
int fl__trusted(const fl_analysis_t *a, const fl__sstate_t *st);

/* engine.c: merge the closed buckets in a filter's range (state lock held) */
int fl__range_map(fl_analysis_t *a, const fl_analysis_filter_t *f, fl__accmap_t *m, uint64_t *cs,
                  uint64_t *ce);

/* Counters the ingest side writes and status reads without the ingest lock. */
#define FL__INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
#define FL__SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Names */
static inline const char *fl__s(const fl_analysis_t *a, uint32_t id)
{
    return id == FL__NONE ? "" : fl__strtab_get(&a->str, id);
}

static inline uint64_t fl__bstart(const fl_analysis_t *a, int64_t b)
{
    return (uint64_t)b * a->o.bucket_ns;
}

#endif
