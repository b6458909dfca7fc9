/* SPDX-License-Identifier: Apache-2.0 */
/* faultline common: the base layer every module shares. Errors, arena, growable buffers,
 * logging, time, hex/base64, a JSON writer, a worker pool, and the internal span model.
 * No HTTP, no SQL, no OTLP wire formats here. */
#ifndef FAULTLINE_COMMON_H
#define FAULTLINE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* (before the allocation macros below replace the names) */
#ifdef FL_FUZZ_ALLOC_FAIL
#include <string.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- allocation failures */

/** Allocation failure injection for the fuzz targets. Project libraries compiled with
 *  FL_FUZZ_ALLOC_FAIL (only fuzz build trees: tests/fuzz/CMakeLists.txt) send malloc, calloc,
 *  realloc, strdup and strndup through fl__fuzz_*, which fail as the current plan says.
 *  Other code (the fuzz harnesses, third-party libraries, normal builds) is unaffected.
 *  A plan comes from a seed, normally a hash of the fuzz input, so a crash reproduces from
 *  its input: a quarter of the seeds fail allocation number N (1..48, counted from the
 *  plan) and then none, 1 in 16 or all of the later ones; the other seeds fail nothing.
 *  Seed 0: no failures. Allocations are counted across threads (one counter). */
void fl_fuzz_alloc_plan(uint64_t seed);
/** Allocations failed since the last fl_fuzz_alloc_plan. */
uint64_t fl_fuzz_alloc_failed(void);
/** The wrappers: NULL when the plan fails this allocation, else the libc function's result. */
void *fl__fuzz_malloc(size_t n);
void *fl__fuzz_calloc(size_t n, size_t size);
void *fl__fuzz_realloc(void *p, size_t n);
char *fl__fuzz_strdup(const char *s);
char *fl__fuzz_strndup(const char *s, size_t n);

#ifdef FL_FUZZ_ALLOC_FAIL
#define malloc(n) fl__fuzz_malloc(n)
#define calloc(n, size) fl__fuzz_calloc(n, size)
#define realloc(p, n) fl__fuzz_realloc(p, n)
#define strdup(s) fl__fuzz_strdup(s)
#define strndup(s, n) fl__fuzz_strndup(s, n)
#endif

/* ---------------------------------------------------------------- errors */

/** Error codes: FL_OK or a negative value; each module owns a range. */
typedef enum fl_err {
    FL_OK = 0,
    /* common: -1 .. -99 */
    FL_ERR_NOMEM = -1,       /**< allocation failed */
    FL_ERR_INVALID = -2,     /**< invalid argument or input */
    FL_ERR_LIMIT = -3,       /**< a configured limit was reached */
    FL_ERR_IO = -4,          /**< file or socket I/O failed */
    FL_ERR_NOT_FOUND = -5,   /**< no such object */
    FL_ERR_BUSY = -6,        /**< temporarily overloaded: retry later */
    FL_ERR_CLOSED = -7,      /**< the object is shutting down or closed */
    FL_ERR_UNSUPPORTED = -8, /**< not supported */
    FL_ERR_TIMEOUT = -9,     /**< deadline passed */
    FL_ERR_CONFLICT = -10,   /**< state does not allow the operation */
    /* proto / receiver decoding: -100 .. -199 */
    FL_ERR_DECODE = -100,     /**< malformed protobuf or JSON */
    FL_ERR_ENCODING = -101,   /**< unsupported or corrupt content encoding */
    FL_ERR_TOO_DEEP = -102,   /**< nesting deeper than allowed */
    FL_ERR_TOO_LARGE = -103,  /**< body larger than allowed after decompression */
    FL_ERR_MEDIA_TYPE = -104, /**< unsupported content type */
    /* store: -200 .. -299 */
    FL_ERR_STORE = -200,         /**< SQLite error */
    FL_ERR_STORE_FULL = -201,    /**< disk full or database read-only: retryable */
    FL_ERR_STORE_CORRUPT = -202, /**< integrity problem: fatal */
    /* net: -300 .. -399 */
    FL_ERR_NET = -300,     /**< socket-level failure */
    FL_ERR_PROTOCOL = -301 /**< peer violated HTTP/HTTP2/gRPC */
} fl_err_t;

/** A static English description of an error code. */
const char *fl_strerror(int err);
/** Non-zero when the error leaves the object unusable. */
int fl_err_is_fatal(int err);

/* ---------------------------------------------------------------- strings */

/** A string view: not NUL-terminated unless stated. */
typedef struct fl_str {
    const char *ptr;
    size_t len;
} fl_str_t;

#define FL_STR_LIT(s) ((fl_str_t){(s), sizeof(s) - 1})
/** fl_str_t from a C string (NULL gives the empty string). */
fl_str_t fl_str(const char *s);
/** 1 when a and b hold the same bytes. */
int fl_str_eq(fl_str_t a, fl_str_t b);
/** 1 when a equals the C string b, ignoring ASCII case. */
int fl_str_ieq_cstr(fl_str_t a, const char *b);

/* ---------------------------------------------------------------- arena */

/** A bump allocator: many small allocations, freed at once by reset/free. Not thread-safe. */
typedef struct fl_arena fl_arena_t;

/** New arena whose chunks are at least chunk_size bytes (0: 64 KiB). NULL on OOM. */
fl_arena_t *fl_arena_new(size_t chunk_size);
/** Free the arena and everything allocated from it. Accepts NULL. */
void fl_arena_free(fl_arena_t *a);
/** Allocate size bytes aligned to 16. NULL on OOM or when the arena's limit would be passed. */
void *fl_arena_alloc(fl_arena_t *a, size_t size);
/** As fl_arena_alloc, zero-filled. */
void *fl_arena_calloc(fl_arena_t *a, size_t n, size_t size);
/** Copy len bytes and add a NUL. */
char *fl_arena_strndup(fl_arena_t *a, const char *s, size_t len);
/** Copy a C string (NULL gives NULL). */
char *fl_arena_strdup(fl_arena_t *a, const char *s);
/** printf into the arena. */
char *fl_arena_sprintf(fl_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Forget every allocation; keeps the first chunk for reuse. */
void fl_arena_reset(fl_arena_t *a);
/** Empty the arena but keep every chunk for the allocations that follow (a warm arena: no
 *  page faults). The memory stays counted in fl_arena_reserved; the limit applies to the
 *  chunks taken back into use. */
void fl_arena_rewind(fl_arena_t *a);
/** Bytes handed out since the last reset. */
size_t fl_arena_used(const fl_arena_t *a);
/** Bytes reserved from malloc (chunks). */
size_t fl_arena_reserved(const fl_arena_t *a);
/** Cap the total reserved bytes (0: no cap). Allocation past it returns NULL. */
void fl_arena_set_limit(fl_arena_t *a, size_t max_bytes);

/* ---------------------------------------------------------------- buffers */

/** A growable byte buffer with an optional hard cap. data is always NUL-terminated past len. */
typedef struct fl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /**< 0: unbounded */
} fl_buf_t;

/** Initialise an empty buffer with a cap (0: none). */
void fl_buf_init(fl_buf_t *b, size_t max);
/** Release the memory; the buffer may be reused after fl_buf_init. */
void fl_buf_dispose(fl_buf_t *b);
/** Ensure room for extra more bytes. FL_ERR_LIMIT past the cap, FL_ERR_NOMEM. */
int fl_buf_reserve(fl_buf_t *b, size_t extra);
/** Append bytes. FL_ERR_LIMIT, FL_ERR_NOMEM. */
int fl_buf_append(fl_buf_t *b, const void *data, size_t len);
/** Append a C string. */
int fl_buf_puts(fl_buf_t *b, const char *s);
/** Append one byte. */
int fl_buf_putc(fl_buf_t *b, int c);
/** printf-append. */
int fl_buf_printf(fl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fl_buf_vprintf(fl_buf_t *b, const char *fmt, va_list ap);
/** Drop the first n bytes. */
void fl_buf_consume(fl_buf_t *b, size_t n);
/** Empty the buffer, keeping its memory. */
void fl_buf_reset(fl_buf_t *b);
/** Take the memory (caller frees with free()); the buffer becomes empty. */
uint8_t *fl_buf_take(fl_buf_t *b, size_t *len);

/* ---------------------------------------------------------------- logging */

typedef enum fl_log_level {
    FL_LOG_ERROR = 0,
    FL_LOG_WARN = 1,
    FL_LOG_INFO = 2,
    FL_LOG_DEBUG = 3,
    FL_LOG_TRACE = 4
} fl_log_level_t;

extern int fl_log_level_current;

/** One structured line on stderr: `ts=... level=... mod=... msg="..." k=v...`.
 *  By convention fmt is `"message text" key=value ...`: the text up to the first ` key=`
 *  becomes msg. Arguments are evaluated only when the level is enabled. */
#define fl_log(level, mod, ...)                                                                    \
    do {                                                                                           \
        if ((int)(level) <= fl_log_level_current)                                                  \
            fl_log_write((level), (mod), __VA_ARGS__);                                             \
    } while (0)

void fl_log_write(int level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** Set the level from a name (error|warn|info|debug|trace). FL_ERR_INVALID if unknown. */
int fl_log_set_level_name(const char *name);
/** Log as JSON objects instead of key=value lines. */
void fl_log_set_json(int on);

/* ---------------------------------------------------------------- time */

/** Wall-clock time in unix nanoseconds. */
uint64_t fl_time_now_ns(void);
/** Monotonic time in nanoseconds. */
uint64_t fl_time_mono_ns(void);
/** Format unix nanos as RFC 3339 UTC with nanosecond precision trimmed to what is set
 *  ("2026-11-30T03:43:47.123456789Z"); out needs 40 bytes. Returns out. */
char *fl_time_format(uint64_t unix_ns, char out[40]);
/** Parse RFC 3339 (Z or ±hh:mm offset, optional fraction) or a decimal unix-nanos integer.
 *  FL_ERR_INVALID on anything else. */
int fl_time_parse(const char *s, uint64_t *unix_ns);
/** Parse a duration: "1500ms", "10s", "5m", "1h", "7d", or a bare number of seconds. */
int fl_duration_parse(const char *s, uint64_t *ns);
/** Parse a size: "64MiB", "16MB", "512KiB", "1GiB", or a bare byte count. */
int fl_size_parse(const char *s, uint64_t *bytes);

/* ---------------------------------------------------------------- hex, base64 */

/** Lowercase hex of n bytes into out (2n+1 bytes with NUL). Returns out. */
char *fl_hex_encode(const uint8_t *in, size_t n, char *out);
/** Value of one hex digit (any case), -1 when c is not one. */
int fl_hex_value(int c);
/** Decode exactly 2n hex characters (any case) into n bytes. FL_ERR_INVALID otherwise. */
int fl_hex_decode(const char *in, size_t in_len, uint8_t *out, size_t n);
/** Standard base64 with padding; out needs 4*((n+2)/3)+1 bytes. Returns the length. */
size_t fl_base64_encode(const uint8_t *in, size_t n, char *out);
/** Decode standard or URL-safe base64, padding optional. out needs in_len*3/4+3 bytes.
 *  FL_ERR_INVALID on a bad character. */
int fl_base64_decode(const char *in, size_t in_len, uint8_t *out, size_t *out_len);
/** 1 when all n bytes are zero. */
int fl_is_zero(const uint8_t *p, size_t n);

/* ---------------------------------------------------------------- hashing */

/** 64-bit non-cryptographic hash (FNV-1a folded with a final mix). */
uint64_t fl_hash64(const void *data, size_t len, uint64_t seed);

/* ---------------------------------------------------------------- sorting */

/** qsort that accepts an empty (even NULL) array: qsort's pointer must not be NULL, even for
 *  n == 0, and an empty accumulator or result list often has none. */
static inline void fl_sort(void *base, size_t n, size_t size,
                           int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

/* ---------------------------------------------------------------- JSON writer */

/** Streaming JSON writer into an fl_buf_t. Strings are escaped so the output is valid JSON
 *  and valid UTF-8 whatever the input: control characters become \u00XX, invalid UTF-8
 *  sequences become U+FFFD. Commas are inserted automatically. The first error sticks. */
typedef struct fl_jw {
    fl_buf_t *out;
    int err;
    int depth;
    uint64_t need_comma; /* bit per depth level */
    int after_key;
} fl_jw_t;

void fl_jw_init(fl_jw_t *w, fl_buf_t *out);
void fl_jw_obj_begin(fl_jw_t *w);
void fl_jw_obj_end(fl_jw_t *w);
void fl_jw_arr_begin(fl_jw_t *w);
void fl_jw_arr_end(fl_jw_t *w);
/** Object key; the next value call writes its value. */
void fl_jw_key(fl_jw_t *w, const char *key);
/** Object key given as bytes (need not be NUL-terminated). */
void fl_jw_keyn(fl_jw_t *w, const char *key, size_t len);
void fl_jw_str(fl_jw_t *w, const char *s); /**< NULL writes null */
void fl_jw_strn(fl_jw_t *w, const char *s, size_t len);
void fl_jw_int(fl_jw_t *w, int64_t v);
void fl_jw_uint(fl_jw_t *w, uint64_t v);
/** Finite doubles as shortest round-trip text; NaN and infinities as null. */
void fl_jw_double(fl_jw_t *w, double v);
void fl_jw_bool(fl_jw_t *w, int v);
void fl_jw_null(fl_jw_t *w);
/** Write pre-serialised JSON text as a value (caller guarantees validity). */
void fl_jw_raw(fl_jw_t *w, const char *json, size_t len);
/** Hex string of n bytes. */
void fl_jw_hex(fl_jw_t *w, const uint8_t *p, size_t n);
/** RFC 3339 string for unix nanos. */
void fl_jw_time(fl_jw_t *w, uint64_t unix_ns);
/** Append a JSON-escaped string (with quotes) to a buffer. */
int fl_json_escape(fl_buf_t *out, const char *s, size_t len);

/* ---------------------------------------------------------------- worker pool */

/** A fixed set of threads running submitted jobs from a bounded FIFO. */
typedef struct fl_pool fl_pool_t;
typedef void (*fl_pool_job_fn)(void *arg);

/** Start nthreads workers with room for max_queue pending jobs. NULL on failure. */
fl_pool_t *fl_pool_new(int nthreads, size_t max_queue, const char *name);
/** Queue a job. FL_ERR_BUSY when the queue is full, FL_ERR_CLOSED after shutdown starts;
 *  on error the job never runs. */
int fl_pool_submit(fl_pool_t *p, fl_pool_job_fn fn, void *arg);
/** Pending plus running jobs. */
size_t fl_pool_depth(fl_pool_t *p);
/** Run every queued job, then join the threads and free. Accepts NULL. */
void fl_pool_free(fl_pool_t *p);

/* ---------------------------------------------------------------- span model */

/** OTLP AnyValue kinds. */
typedef enum fl_value_type {
    FL_VAL_EMPTY = 0,
    FL_VAL_STRING = 1,
    FL_VAL_BOOL = 2,
    FL_VAL_INT = 3,
    FL_VAL_DOUBLE = 4,
    FL_VAL_ARRAY = 5,
    FL_VAL_KVLIST = 6,
    FL_VAL_BYTES = 7
} fl_value_type_t;

struct fl_kv;

/** An attribute value. Strings and bytes are views (string bytes are not NUL-terminated
 *  by contract, though decoders usually add one). */
typedef struct fl_value {
    fl_value_type_t type;
    union {
        fl_str_t str; /**< FL_VAL_STRING and FL_VAL_BYTES */
        int b;
        int64_t i;
        double d;
        struct {
            struct fl_value *items;
            size_t n;
        } arr;
        struct {
            struct fl_kv *items;
            size_t n;
        } kv;
    } u;
} fl_value_t;

typedef struct fl_kv {
    fl_str_t key;
    fl_value_t value;
} fl_kv_t;

typedef struct fl_attrs {
    fl_kv_t *items;
    size_t n;
} fl_attrs_t;

typedef struct fl_resource {
    fl_attrs_t attrs;
    uint32_t dropped_attrs;
    fl_str_t schema_url;   /**< ResourceSpans.schema_url */
    fl_str_t service_name; /**< service.name, or "unknown_service" when absent */
} fl_resource_t;

typedef struct fl_scope {
    fl_str_t name;
    fl_str_t version;
    fl_attrs_t attrs;
    uint32_t dropped_attrs;
    fl_str_t schema_url; /**< ScopeSpans.schema_url */
} fl_scope_t;

typedef struct fl_event {
    uint64_t time_ns;
    fl_str_t name;
    fl_attrs_t attrs;
    uint32_t dropped_attrs;
} fl_event_t;

typedef struct fl_link {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    fl_str_t trace_state;
    fl_attrs_t attrs;
    uint32_t dropped_attrs;
    uint32_t flags;
} fl_link_t;

enum fl_span_kind {
    FL_KIND_UNSPECIFIED = 0,
    FL_KIND_INTERNAL = 1,
    FL_KIND_SERVER = 2,
    FL_KIND_CLIENT = 3,
    FL_KIND_PRODUCER = 4,
    FL_KIND_CONSUMER = 5
};

enum fl_status_code { FL_STATUS_UNSET = 0, FL_STATUS_OK = 1, FL_STATUS_ERROR = 2 };

/** One span, decoded. Pointers refer to memory owned by the batch's arena (or by whatever
 *  arena a store read filled). */
typedef struct fl_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8]; /**< all zero for a root */
    fl_str_t trace_state;
    uint32_t flags;
    fl_str_t name;
    int kind; /**< enum fl_span_kind; other values are kept as sent */
    uint64_t start_ns;
    uint64_t end_ns;
    fl_attrs_t attrs;
    uint32_t dropped_attrs;
    fl_event_t *events;
    size_t n_events;
    uint32_t dropped_events;
    fl_link_t *links;
    size_t n_links;
    uint32_t dropped_links;
    int status_code; /**< enum fl_status_code */
    fl_str_t status_message;
    const fl_resource_t *resource;
    const fl_scope_t *scope;
} fl_span_t;

/** A decoded export request: the unit handed from the receiver to the store. The arena
 *  owns the batch itself and every pointer inside it. */
typedef struct fl_span_batch {
    fl_arena_t *arena;
    fl_span_t *spans;
    size_t n_spans;
    size_t rejected;        /**< spans dropped as individually invalid */
    const char *reject_msg; /**< why (first problem), NULL when none */
    uint64_t received_ns;   /**< wall clock at receipt */
} fl_span_batch_t;

/** Allocate an empty batch inside its own arena (chunk_size as for fl_arena_new; the arena
 *  of a recently freed batch is reused when one is kept). */
fl_span_batch_t *fl_span_batch_new(size_t chunk_size);
/** Free the batch and its arena (or keep the arena, emptied, for the next batch: at most 8
 *  arenas of at most 8 MiB each, 16 MiB in all). Accepts NULL. */
void fl_span_batch_free(fl_span_batch_t *b);

/** Look up an attribute value by key (NULL when absent). */
const fl_value_t *fl_attrs_get(const fl_attrs_t *attrs, const char *key);
/** Deep-compare two values (doubles compare bit patterns, so NaN equals NaN). */
int fl_value_eq(const fl_value_t *a, const fl_value_t *b);
/** Write an AnyValue as plain JSON (string, number, bool, array, object; bytes as base64
 *  string; empty as null; non-finite doubles as the strings "NaN", "Infinity", "-Infinity"). */
void fl_jw_value(fl_jw_t *w, const fl_value_t *v);
/** Write attributes as a JSON object {key: value}. */
void fl_jw_attrs(fl_jw_t *w, const fl_attrs_t *attrs);

#ifdef __cplusplus
}
#endif
#endif
