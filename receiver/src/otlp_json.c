/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP/JSON decoding: a small in-place pull parser (RFC 8259) driven by the OTLP schema,
 * writing straight into the span model. Lenient as the Collector: camelCase or snake_case
 * keys, int64 as number or string, enums as int or name, unknown fields skipped. */
#include "receiver_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A parser over a mutable, NUL-terminated copy of the body. Strings are unescaped in place
 * and NUL-terminated over their closing quote, so results point into that copy. */

#define JPATH_MAX 512
#define J_ERR (-1)

typedef struct jframe {
    const char *name;
    long idx; /* -1: a key, no index */
} jframe_t;

/* A growable scratch stack of fixed-size elements (malloc'd, freed at the end of a decode).
 * Nested arrays push on top and pop their own items, so each array's items stay
 * contiguous until they are copied into the arena in one go. */
typedef struct jvec {
    char *data;
    size_t len, cap, elem;
} jvec_t;

typedef struct jctx {
    char *p, *end, *base;
    int depth, max_depth;
    jframe_t path[JPATH_MAX];
    int npath;
    int rc; /* first error (sticky) */
    char *err;
    size_t errlen;
    fl_arena_t *arena;
    jvec_t kvs, vals, events, links, spans;
    /* per-span problem that rejects that span only */
    char prob[512];
    int has_prob;
    /* batch accounting */
    size_t rejected;
    const char *reject_msg;
    size_t count; /* logs / metrics item count */
} jctx_t;

/* ---------------------------------------------------------------- scratch stacks */

static void jvec_init(jvec_t *v, size_t elem)
{
    v->data = NULL;
    v->len = v->cap = 0;
    v->elem = elem;
}

static void jvec_dispose(jvec_t *v)
{
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

static void *jvec_push(jvec_t *v)
{
    if (v->len == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        char *nd = realloc(v->data, ncap * v->elem);
        if (!nd)
            return NULL;
        v->data = nd;
        v->cap = ncap;
    }
    return v->data + v->elem * v->len++;
}

/* Copy items [mark, len) into the arena and pop them. *out is NULL when there are none. */
static int jvec_take(jctx_t *c, jvec_t *v, size_t mark, void **out, size_t *n)
{
    size_t cnt = v->len - mark;
    *out = NULL;
    *n = cnt;
    if (cnt) {
        void *dst = fl_arena_alloc(c->arena, cnt * v->elem);
        if (!dst)
            return J_ERR;
        memcpy(dst, v->data + mark * v->elem, cnt * v->elem);
        *out = dst;
    }
    v->len = mark;
    return 0;
}

/* ---------------------------------------------------------------- errors and paths */

static void path_push(jctx_t *c, const char *name, long idx)
{
    if (c->npath < JPATH_MAX) {
        c->path[c->npath].name = name;
        c->path[c->npath].idx = idx;
    }
    c->npath++;
}

static void path_pop(jctx_t *c)
{
    c->npath--;
}

static void path_index(jctx_t *c, long idx)
{
    if (c->npath > 0 && c->npath <= JPATH_MAX)
        c->path[c->npath - 1].idx = idx;
}

static size_t path_format(const jctx_t *c, char *out, size_t outlen)
{
    size_t o = 0;
    int n = c->npath < JPATH_MAX ? c->npath : JPATH_MAX;
    if (outlen)
        out[0] = 0;
    for (int i = 0; i < n && o + 1 < outlen; i++) {
        int w;
        if (c->path[i].idx >= 0)
            w = snprintf(out + o, outlen - o, "%s%s[%ld]", i ? "." : "", c->path[i].name,
                         c->path[i].idx);
        else
            w = snprintf(out + o, outlen - o, "%s%s", i ? "." : "", c->path[i].name);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    if (c->npath > JPATH_MAX && o + 1 < outlen)
        o += (size_t)snprintf(out + o, outlen - o, "...");
    return o < outlen ? o : outlen ? outlen - 1 : 0;
}

/* A whole-request error at the current path. */
static int jfail(jctx_t *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int jfail(jctx_t *c, int rc, const char *fmt, ...)
{
    if (c->rc)
        return J_ERR;
    c->rc = rc;
    if (!c->err || !c->errlen)
        return J_ERR;
    char path[400], msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    path_format(c, path, sizeof(path));
    snprintf(c->err, c->errlen, "%s%s%s", path, path[0] ? ": " : "", msg);
    return J_ERR;
}

/* A syntax error: says where in bytes, lines and columns. */
static int jsyntax(jctx_t *c, const char *what)
{
    size_t off = (size_t)(c->p - c->base), line = 1, col = 1;
    for (const char *q = c->base; q < c->p; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (c->p >= c->end)
        return jfail(c, FL_ERR_DECODE, "invalid JSON: unexpected end of input (byte %zu): %s", off,
                     what);
    return jfail(c, FL_ERR_DECODE, "invalid JSON at byte %zu (line %zu, column %zu): %s", off, line,
                 col, what);
}

static int jnomem(jctx_t *c)
{
    return jfail(c, FL_ERR_NOMEM, "out of memory while decoding (request too large to decode)");
}

/* ---------------------------------------------------------------- tokens */

static inline void ws(jctx_t *c)
{
    char *p = c->p;
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    c->p = p;
}

static inline int peek(jctx_t *c)
{
    ws(c);
    return c->p < c->end ? (unsigned char)*c->p : 0;
}

static int read_u4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = fl_hex_value((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *w, unsigned cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | cp >> 12);
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | cp >> 18);
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* A string token at c->p (which is '"'): unescaped in place. */
static int jstring(jctx_t *c, char **out, size_t *outlen)
{
    char *start = c->p + 1, *r = start, *end = c->end;
    /* Fast path: no escapes. */
    while (r < end) {
        unsigned char ch = (unsigned char)*r;
        if (ch == '"') {
            *r = 0;
            *out = start;
            *outlen = (size_t)(r - start);
            c->p = r + 1;
            return 0;
        }
        if (ch == '\\' || ch < 0x20)
            break;
        r++;
    }
    char *w = r;
    while (r < end) {
        unsigned char ch = (unsigned char)*r;
        if (ch == '"') {
            *w = 0;
            *out = start;
            *outlen = (size_t)(w - start);
            c->p = r + 1;
            return 0;
        }
        if (ch < 0x20) {
            c->p = r;
            return jsyntax(c, "control character in string");
        }
        if (ch != '\\') {
            *w++ = (char)ch;
            r++;
            continue;
        }
        if (r + 1 >= end) {
            c->p = end;
            return jsyntax(c, "unterminated string");
        }
        char e = r[1];
        r += 2;
        switch (e) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '/':
            *w++ = '/';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (end - r < 4 || read_u4(r, &cp) < 0) {
                c->p = r - 2;
                return jsyntax(c, "bad \\u escape in string");
            }
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && end - r >= 6 && r[0] == '\\' && r[1] == 'u' &&
                read_u4(r + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate: keep the string, mark the spot */
            }
            /* The UTF-8 form is never longer than the escape it replaces. */
            w = put_utf8(w, cp);
            break;
        }
        default:
            c->p = r - 2;
            return jsyntax(c, "bad escape in string");
        }
    }
    c->p = end;
    return jsyntax(c, "unterminated string");
}

/* A number token (validated against the JSON grammar); is_int when it has no fraction or
 * exponent. The token text stays in the buffer. */
static int jnumber(jctx_t *c, const char **tok, size_t *len, int *is_int)
{
    char *p = c->p, *s = p;
    int integer = 1;
    if (*p == '-')
        p++;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9')
            p++;
    } else {
        c->p = p;
        return jsyntax(c, "invalid number");
    }
    if (*p == '.') {
        integer = 0;
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            c->p = p;
            return jsyntax(c, "invalid number: digit expected after '.'");
        }
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        integer = 0;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9')) {
            c->p = p;
            return jsyntax(c, "invalid number: digit expected in exponent");
        }
        while (*p >= '0' && *p <= '9')
            p++;
    }
    *tok = s;
    *len = (size_t)(p - s);
    *is_int = integer;
    c->p = p;
    return 0;
}

static int jliteral(jctx_t *c, const char *word, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return jsyntax(c, "invalid literal");
    c->p += n;
    return 0;
}

static int jexpect(jctx_t *c, char ch, const char *what)
{
    ws(c);
    if (c->p >= c->end || *c->p != ch)
        return jsyntax(c, what);
    c->p++;
    return 0;
}

/* Objects: call jobj_begin, then jobj_next until it returns 0. */
static int jobj_begin(jctx_t *c)
{
    if (peek(c) != '{')
        return J_ERR; /* caller reports the type error */
    c->p++;
    return 0;
}

/* 1 with *key set, 0 at the closing brace, J_ERR on error. */
static int jobj_next(jctx_t *c, int *first, char **key, size_t *klen)
{
    int ch = peek(c);
    if (ch == '}') {
        c->p++;
        return 0;
    }
    if (!*first) {
        if (ch != ',')
            return jsyntax(c, "expected ',' or '}' after object member");
        c->p++;
        ch = peek(c);
    }
    *first = 0;
    if (ch != '"')
        return jsyntax(c, "expected a string key");
    if (jstring(c, key, klen) < 0)
        return J_ERR;
    if (jexpect(c, ':', "expected ':' after object key") < 0)
        return J_ERR;
    return 1;
}

static int jarr_begin(jctx_t *c)
{
    if (peek(c) != '[')
        return J_ERR;
    c->p++;
    return 0;
}

/* 1 when another element follows, 0 at the closing bracket. */
static int jarr_next(jctx_t *c, int *first)
{
    int ch = peek(c);
    if (ch == ']') {
        c->p++;
        return 0;
    }
    if (!*first) {
        if (ch != ',')
            return jsyntax(c, "expected ',' or ']' after array element");
        c->p++;
        if (peek(c) == ']')
            return jsyntax(c, "trailing comma in array");
    }
    *first = 0;
    return 1;
}

static int jdepth_in(jctx_t *c)
{
    if (++c->depth > c->max_depth)
        return jfail(c, FL_ERR_TOO_DEEP, "nesting deeper than %d levels", c->max_depth);
    return 0;
}

/* Skip any value, checking its syntax. */
static int jskip(jctx_t *c)
{
    int ch = peek(c), first = 1, r;
    char *s;
    size_t n;
    switch (ch) {
    case '{':
        if (jdepth_in(c) < 0)
            return J_ERR;
        c->p++;
        while ((r = jobj_next(c, &first, &s, &n)) == 1)
            if (jskip(c) < 0)
                return J_ERR;
        c->depth--;
        return r;
    case '[':
        if (jdepth_in(c) < 0)
            return J_ERR;
        c->p++;
        while ((r = jarr_next(c, &first)) == 1)
            if (jskip(c) < 0)
                return J_ERR;
        c->depth--;
        return r;
    case '"':
        return jstring(c, &s, &n);
    case 't':
        return jliteral(c, "true", 4);
    case 'f':
        return jliteral(c, "false", 5);
    case 'n':
        return jliteral(c, "null", 4);
    default: {
        const char *tok;
        int is_int;
        if (ch == '-' || (ch >= '0' && ch <= '9'))
            return jnumber(c, &tok, &n, &is_int);
        return jsyntax(c, ch ? "unexpected character" : "value expected");
    }
    }
}

/* ---------------------------------------------------------------- keys */

/* Lowercase the key and drop underscores so "traceId", "trace_id" and "TraceId" all read
 * as "traceid". Keys longer than the buffer are unknown. */
static size_t keynorm(const char *k, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch == '_')
            continue;
        if (o + 1 >= cap)
            return 0;
        out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    out[o] = 0;
    return o;
}

#define KEQ(k, kl, lit) ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

/* ---------------------------------------------------------------- scalar fields */

static const char *type_name(int ch)
{
    switch (ch) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    case 0:
        return "the end of the input";
    default:
        return "a number";
    }
}

static int type_error(jctx_t *c, const char *want)
{
    if (peek(c) == 0)
        return jsyntax(c, c->p >= c->end ? "value expected" : "unexpected NUL byte");
    return jfail(c, FL_ERR_DECODE, "expected %s, got %s", want, type_name(peek(c)));
}

/* Parse an unsigned decimal integer; 1 when it does not fit. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9)
            return -1;
        if (v > (UINT64_MAX - d) / 10)
            return 1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parse an optionally signed decimal integer: 0 ok, 1 out of int64 range, -1 not an integer. */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    int neg = 0;
    uint64_t u;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    int r = parse_u64(s, n, &u);
    if (r)
        return r;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return 1;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return 1;
        *out = (int64_t)u;
    }
    return 0;
}

/* strtod over a token that is not NUL-terminated (copied to a small buffer). 0 ok. */
static int parse_double(const char *s, size_t n, double *out)
{
    char buf[128];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *endp;
    errno = 0;
    double d = strtod(buf, &endp);
    if (endp != buf + n)
        return -1;
    *out = d;
    return 0;
}

/* Read a number or a string holding one: the raw text, whether it was a number token. */
static int jnumtext(jctx_t *c, const char *want, const char **tok, size_t *len, int *is_int)
{
    int ch = peek(c);
    if (ch == '"') {
        char *s;
        if (jstring(c, &s, len) < 0)
            return J_ERR;
        /* Trim blanks some producers leave in quoted numbers. */
        while (*len && (*s == ' '))
            s++, (*len)--;
        while (*len && s[*len - 1] == ' ')
            (*len)--;
        *tok = s;
        *is_int = *len > 0;
        for (size_t i = 0; i < *len; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || (i == 0 && (s[i] == '-' || s[i] == '+'))))
                *is_int = 0;
        return 0;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9'))
        return jnumber(c, tok, len, is_int);
    return type_error(c, want);
}

/* uint64 (timestamps): exact for integer text up to 2^64-1; an integral real is accepted. */
static int jfield_u64(jctx_t *c, uint64_t *out, uint64_t max)
{
    const char *tok;
    size_t n;
    int is_int;
    if (peek(c) == 'n')
        return jliteral(c, "null", 4); /* null: the default */
    if (jnumtext(c, "an unsigned integer (number or decimal string)", &tok, &n, &is_int) < 0)
        return J_ERR;
    uint64_t v;
    if (is_int) {
        const char *s = tok;
        size_t m = n;
        if (m && *s == '+')
            s++, m--;
        if (m && *s == '-') {
            /* "-0" is zero; anything else is negative. */
            int zero = 1;
            for (size_t i = 1; i < m; i++)
                zero &= s[i] == '0';
            if (!zero)
                return jfail(c, FL_ERR_DECODE, "negative value %.*s for an unsigned field", (int)n,
                             tok);
            v = 0;
        } else {
            int r = parse_u64(s, m, &v);
            if (r)
                return jfail(c, FL_ERR_DECODE, "integer %.*s out of range", (int)n, tok);
        }
    } else {
        double d;
        if (parse_double(tok, n, &d) < 0)
            return jfail(c, FL_ERR_DECODE, "'%.*s' is not a number", (int)(n > 40 ? 40 : n), tok);
        if (!(d >= 0 && d < 18446744073709551616.0) || d != floor(d))
            return jfail(c, FL_ERR_DECODE, "%.*s is not an unsigned integer", (int)n, tok);
        v = (uint64_t)d;
    }
    if (v > max)
        return jfail(c, FL_ERR_DECODE, "integer %.*s out of range (max %llu)", (int)n, tok,
                     (unsigned long long)max);
    *out = v;
    return 0;
}

static int jfield_u32(jctx_t *c, uint32_t *out)
{
    uint64_t v = *out;
    if (jfield_u64(c, &v, UINT32_MAX) < 0)
        return J_ERR;
    *out = (uint32_t)v;
    return 0;
}

/* An enum: an integer, or a name from names[] (index = value), case-insensitive.
 * Unknown names are an error; unknown numbers are kept. */
static int jfield_enum(jctx_t *c, int *out, const char *const *names, size_t n_names,
                       const char *short_prefix)
{
    int ch = peek(c);
    if (ch == 'n')
        return jliteral(c, "null", 4);
    if (ch == '"') {
        char *s;
        size_t len;
        if (jstring(c, &s, &len) < 0)
            return J_ERR;
        int64_t iv;
        if (parse_i64(s, len, &iv) == 0 && iv >= INT32_MIN && iv <= INT32_MAX) {
            *out = (int)iv;
            return 0;
        }
        size_t pl = strlen(short_prefix);
        for (size_t i = 0; i < n_names; i++) {
            const char *nm = names[i];
            /* Accept "SPAN_KIND_SERVER" and "SERVER". */
            if ((strlen(nm) == len && strncasecmp(nm, s, len) == 0) ||
                (strlen(nm) == len + pl && strncasecmp(nm + pl, s, len) == 0)) {
                *out = (int)i;
                return 0;
            }
        }
        return jfail(c, FL_ERR_DECODE, "unknown enum value \"%.*s\"", (int)(len > 60 ? 60 : len),
                     s);
    }
    const char *tok;
    size_t n;
    int is_int;
    if (jnumtext(c, "an enum (integer or name)", &tok, &n, &is_int) < 0)
        return J_ERR;
    int64_t iv;
    if (!is_int || parse_i64(tok, n, &iv) != 0 || iv < INT32_MIN || iv > INT32_MAX)
        return jfail(c, FL_ERR_DECODE, "enum value %.*s is not a 32-bit integer", (int)n, tok);
    *out = (int)iv;
    return 0;
}

/* A string field (null: empty). The view points into the arena copy. */
static int jfield_str(jctx_t *c, fl_str_t *out)
{
    int ch = peek(c);
    if (ch == 'n') {
        out->ptr = "";
        out->len = 0;
        return jliteral(c, "null", 4);
    }
    if (ch != '"')
        return type_error(c, "a string");
    char *s;
    size_t n;
    if (jstring(c, &s, &n) < 0)
        return J_ERR;
    out->ptr = s;
    out->len = n;
    return 0;
}

/* Record the first per-span problem (the span will be rejected, the request goes on). */
static void span_problem(jctx_t *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void span_problem(jctx_t *c, const char *field, const char *fmt, ...)
{
    if (c->has_prob)
        return;
    c->has_prob = 1;
    char path[300], msg[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    path_format(c, path, sizeof(path));
    snprintf(c->prob, sizeof(c->prob), "%s%s%s: %s", path, field ? "." : "", field ? field : "",
             msg);
}

/* A hex id. Empty or null: absent. Bad hex or a wrong length: a per-span problem. */
static int jfield_id(jctx_t *c, uint8_t *out, size_t n, int *present, const char *field)
{
    int ch = peek(c);
    *present = 0;
    if (ch == 'n')
        return jliteral(c, "null", 4);
    if (ch != '"') {
        path_push(c, field, -1);
        int r = type_error(c, "a hex string");
        path_pop(c);
        return r;
    }
    char *s;
    size_t len;
    if (jstring(c, &s, &len) < 0)
        return J_ERR;
    if (len == 0)
        return 0;
    if (len != 2 * n) {
        span_problem(c, field, "expected %zu hex digits, got %zu", 2 * n, len);
        return 0;
    }
    if (fl_hex_decode(s, len, out, n) != FL_OK) {
        span_problem(c, field, "not a hex string");
        return 0;
    }
    *present = 1;
    return 0;
}

/* ---------------------------------------------------------------- AnyValue */

static int j_anyvalue(jctx_t *c, fl_value_t *out);
static int j_kvlist(jctx_t *c, fl_kv_t **items, size_t *n);

/* intValue: exact for integer text in int64 range; otherwise the number is kept as a
 * double (JavaScript exporters send 2^63, 1e300 or 1.7e308 as "intValue" because they are
 * integral doubles; the protobuf exporters send the same values as doubleValue). */
static int j_intvalue(jctx_t *c, fl_value_t *out)
{
    const char *tok;
    size_t n;
    int is_int;
    if (jnumtext(c, "an integer (number or decimal string)", &tok, &n, &is_int) < 0)
        return J_ERR;
    int64_t iv;
    if (is_int && parse_i64(tok, n, &iv) == 0) {
        out->type = FL_VAL_INT;
        out->u.i = iv;
        return 0;
    }
    double d;
    if (parse_double(tok, n, &d) < 0)
        return jfail(c, FL_ERR_DECODE, "'%.*s' is not a number", (int)(n > 40 ? 40 : n), tok);
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        out->type = FL_VAL_INT;
        out->u.i = (int64_t)d;
    } else {
        out->type = FL_VAL_DOUBLE;
        out->u.d = d;
    }
    return 0;
}

static int j_doublevalue(jctx_t *c, fl_value_t *out)
{
    int ch = peek(c);
    out->type = FL_VAL_DOUBLE;
    if (ch == 'n') {
        /* JavaScript's JSON.stringify turns NaN and ±Infinity into null. */
        out->u.d = NAN;
        return jliteral(c, "null", 4);
    }
    if (ch == '"') {
        char *s;
        size_t n;
        if (jstring(c, &s, &n) < 0)
            return J_ERR;
        if (KEQ(s, n, "NaN")) {
            out->u.d = NAN;
        } else if (KEQ(s, n, "Infinity") || KEQ(s, n, "+Infinity")) {
            out->u.d = INFINITY;
        } else if (KEQ(s, n, "-Infinity")) {
            out->u.d = -INFINITY;
        } else if (parse_double(s, n, &out->u.d) < 0) {
            return jfail(c, FL_ERR_DECODE, "\"%.*s\" is not a number", (int)(n > 40 ? 40 : n), s);
        }
        return 0;
    }
    const char *tok;
    size_t n;
    int is_int;
    if (jnumtext(c, "a number", &tok, &n, &is_int) < 0)
        return J_ERR;
    if (parse_double(tok, n, &out->u.d) < 0)
        return jfail(c, FL_ERR_DECODE, "bad number %.*s", (int)(n > 40 ? 40 : n), tok);
    return 0;
}

static int j_bytesvalue(jctx_t *c, fl_value_t *out)
{
    fl_str_t s;
    if (jfield_str(c, &s) < 0)
        return J_ERR;
    uint8_t *buf = fl_arena_alloc(c->arena, s.len * 3 / 4 + 4);
    size_t n = 0;
    if (!buf)
        return jnomem(c);
    if (fl_base64_decode(s.ptr, s.len, buf, &n) != FL_OK)
        return jfail(c, FL_ERR_DECODE, "not valid base64");
    buf[n] = 0;
    out->type = FL_VAL_BYTES;
    out->u.str.ptr = (const char *)buf;
    out->u.str.len = n;
    return 0;
}

/* {"values": [AnyValue...]} */
/* Opens an object that may also be null: 1 inside the object (one level deeper), 0 after a
 * null, J_ERR. */
static int j_obj_open(jctx_t *c, const char *what)
{
    if (peek(c) == 'n')
        return jliteral(c, "null", 4);
    if (jobj_begin(c) < 0)
        return type_error(c, what);
    if (jdepth_in(c) < 0)
        return J_ERR;
    return 1;
}

static int j_arrayvalue(jctx_t *c, fl_value_t *out)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    out->type = FL_VAL_ARRAY;
    out->u.arr.items = NULL;
    out->u.arr.n = 0;
    int open = j_obj_open(c, "an object");
    if (open <= 0)
        return open;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        if (!KEQ(kn, n, "values")) {
            if (jskip(c) < 0)
                return J_ERR;
            continue;
        }
        if (peek(c) == 'n') {
            if (jliteral(c, "null", 4) < 0)
                return J_ERR;
            continue;
        }
        path_push(c, "values", -1);
        if (jarr_begin(c) < 0)
            return type_error(c, "an array");
        size_t mark = c->vals.len;
        int afirst = 1, ar;
        long idx = 0;
        while ((ar = jarr_next(c, &afirst)) == 1) {
            fl_value_t v;
            path_index(c, idx++);
            if (j_anyvalue(c, &v) < 0)
                return J_ERR;
            fl_value_t *slot = jvec_push(&c->vals);
            if (!slot)
                return jnomem(c);
            *slot = v;
        }
        if (ar < 0)
            return J_ERR;
        void *items;
        if (jvec_take(c, &c->vals, mark, &items, &out->u.arr.n) < 0)
            return jnomem(c);
        out->u.arr.items = items;
        path_pop(c);
    }
    c->depth--;
    return r;
}

static int j_anyvalue(jctx_t *c, fl_value_t *out)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    out->type = FL_VAL_EMPTY;
    int open = j_obj_open(c, "an AnyValue object");
    if (open <= 0)
        return open;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int rc = 0;
        if (KEQ(kn, n, "stringvalue")) {
            if (peek(c) == 'n') {
                rc = jliteral(c, "null", 4);
            } else {
                path_push(c, "stringValue", -1);
                rc = jfield_str(c, &out->u.str);
                out->type = FL_VAL_STRING;
                path_pop(c);
            }
        } else if (KEQ(kn, n, "boolvalue")) {
            int ch = peek(c);
            out->type = FL_VAL_BOOL;
            if (ch == 't') {
                out->u.b = 1;
                rc = jliteral(c, "true", 4);
            } else if (ch == 'f') {
                out->u.b = 0;
                rc = jliteral(c, "false", 5);
            } else if (ch == 'n') {
                out->type = FL_VAL_EMPTY;
                rc = jliteral(c, "null", 4);
            } else if (ch == '"') {
                char *s;
                size_t sl;
                path_push(c, "boolValue", -1);
                rc = jstring(c, &s, &sl);
                if (rc == 0 && KEQ(s, sl, "true"))
                    out->u.b = 1;
                else if (rc == 0 && KEQ(s, sl, "false"))
                    out->u.b = 0;
                else if (rc == 0)
                    rc = jfail(c, FL_ERR_DECODE, "expected true or false");
                path_pop(c);
            } else {
                path_push(c, "boolValue", -1);
                rc = type_error(c, "a boolean");
                path_pop(c);
            }
        } else if (KEQ(kn, n, "intvalue")) {
            if (peek(c) == 'n') {
                rc = jliteral(c, "null", 4);
            } else {
                path_push(c, "intValue", -1);
                rc = j_intvalue(c, out);
                path_pop(c);
            }
        } else if (KEQ(kn, n, "doublevalue")) {
            path_push(c, "doubleValue", -1);
            rc = j_doublevalue(c, out);
            path_pop(c);
        } else if (KEQ(kn, n, "arrayvalue")) {
            path_push(c, "arrayValue", -1);
            rc = j_arrayvalue(c, out);
            path_pop(c);
        } else if (KEQ(kn, n, "kvlistvalue")) {
            path_push(c, "kvlistValue", -1);
            out->type = FL_VAL_KVLIST;
            out->u.kv.items = NULL;
            out->u.kv.n = 0;
            if (peek(c) == 'n') {
                rc = jliteral(c, "null", 4);
            } else if (jobj_begin(c) < 0) {
                rc = type_error(c, "an object");
            } else if ((rc = jdepth_in(c)) == 0) {
                int f2 = 1, r2;
                char *k2;
                size_t kl2;
                while ((r2 = jobj_next(c, &f2, &k2, &kl2)) == 1) {
                    size_t n2 = keynorm(k2, kl2, kn, sizeof(kn));
                    if (KEQ(kn, n2, "values")) {
                        path_push(c, "values", -1);
                        r2 = j_kvlist(c, &out->u.kv.items, &out->u.kv.n);
                        path_pop(c);
                    } else {
                        r2 = jskip(c);
                    }
                    if (r2 < 0)
                        break;
                }
                rc = r2 < 0 ? J_ERR : 0;
                c->depth--;
            }
            path_pop(c);
        } else if (KEQ(kn, n, "bytesvalue")) {
            path_push(c, "bytesValue", -1);
            rc = j_bytesvalue(c, out);
            path_pop(c);
        } else {
            rc = jskip(c);
        }
        if (rc < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

/* One KeyValue object into *kv. */
static int j_keyvalue(jctx_t *c, fl_kv_t *kv)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    kv->key.ptr = "";
    kv->key.len = 0;
    kv->value.type = FL_VAL_EMPTY;
    if (jobj_begin(c) < 0)
        return type_error(c, "a key/value object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int rc;
        if (KEQ(kn, n, "key")) {
            path_push(c, "key", -1);
            rc = jfield_str(c, &kv->key);
            path_pop(c);
        } else if (KEQ(kn, n, "value")) {
            path_push(c, "value", -1);
            rc = j_anyvalue(c, &kv->value);
            path_pop(c);
        } else {
            rc = jskip(c);
        }
        if (rc < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

/* [KeyValue...] into an arena array. The caller has pushed the field name. */
static int j_kvlist(jctx_t *c, fl_kv_t **items, size_t *n)
{
    *items = NULL;
    *n = 0;
    if (peek(c) == 'n')
        return jliteral(c, "null", 4);
    if (jarr_begin(c) < 0)
        return type_error(c, "an array");
    size_t mark = c->kvs.len;
    int first = 1, r;
    long idx = 0;
    while ((r = jarr_next(c, &first)) == 1) {
        fl_kv_t kv;
        path_index(c, idx++);
        if (j_keyvalue(c, &kv) < 0)
            return J_ERR;
        fl_kv_t *slot = jvec_push(&c->kvs);
        if (!slot)
            return jnomem(c);
        *slot = kv;
    }
    path_index(c, -1);
    if (r < 0)
        return J_ERR;
    void *out;
    if (jvec_take(c, &c->kvs, mark, &out, n) < 0)
        return jnomem(c);
    *items = out;
    return 0;
}

static int j_attrs(jctx_t *c, fl_attrs_t *attrs)
{
    path_push(c, "attributes", -1);
    int r = j_kvlist(c, &attrs->items, &attrs->n);
    path_pop(c);
    return r;
}

/* ---------------------------------------------------------------- trace messages */

static const char *const kind_names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                         "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                         "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
static const char *const status_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                           "STATUS_CODE_ERROR"};

/* Wrap a field decode with its name on the path. */
#define JFIELD(c, name, expr)                                                                      \
    do {                                                                                           \
        path_push((c), (name), -1);                                                                \
        int rc_ = (expr);                                                                          \
        path_pop(c);                                                                               \
        if (rc_ < 0)                                                                               \
            return J_ERR;                                                                          \
    } while (0)

/* The attributes and droppedAttributesCount fields of an event, link, scope or resource: 1
 * when key kn (normalised, n bytes) is one of them and was read, 0 when it is not, J_ERR. */
static int j_attrs_field(jctx_t *c, const char *kn, size_t n, fl_attrs_t *attrs, uint32_t *dropped)
{
    if (KEQ(kn, n, "attributes"))
        return j_attrs(c, attrs) < 0 ? J_ERR : 1;
    if (!KEQ(kn, n, "droppedattributescount"))
        return 0;
    JFIELD(c, "droppedAttributesCount", jfield_u32(c, dropped));
    return 1;
}

static int j_event(jctx_t *c, fl_event_t *ev)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    memset(ev, 0, sizeof(*ev));
    ev->name.ptr = "";
    if (jobj_begin(c) < 0)
        return type_error(c, "an event object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int h;
        if (KEQ(kn, n, "timeunixnano"))
            JFIELD(c, "timeUnixNano", jfield_u64(c, &ev->time_ns, UINT64_MAX));
        else if (KEQ(kn, n, "name"))
            JFIELD(c, "name", jfield_str(c, &ev->name));
        else if ((h = j_attrs_field(c, kn, n, &ev->attrs, &ev->dropped_attrs)) != 0) {
            if (h < 0)
                return J_ERR;
        } else if (jskip(c) < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

static int j_link(jctx_t *c, fl_link_t *ln)
{
    int first = 1, r, has_t = 0, has_s = 0;
    char *k;
    size_t kl;
    char kn[48];
    memset(ln, 0, sizeof(*ln));
    ln->trace_state.ptr = "";
    if (jobj_begin(c) < 0)
        return type_error(c, "a link object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int h;
        if (KEQ(kn, n, "traceid")) {
            if (jfield_id(c, ln->trace_id, 16, &has_t, "traceId") < 0)
                return J_ERR;
        } else if (KEQ(kn, n, "spanid")) {
            if (jfield_id(c, ln->span_id, 8, &has_s, "spanId") < 0)
                return J_ERR;
        } else if (KEQ(kn, n, "tracestate"))
            JFIELD(c, "traceState", jfield_str(c, &ln->trace_state));
        else if ((h = j_attrs_field(c, kn, n, &ln->attrs, &ln->dropped_attrs)) != 0) {
            if (h < 0)
                return J_ERR;
        } else if (KEQ(kn, n, "flags"))
            JFIELD(c, "flags", jfield_u32(c, &ln->flags));
        else if (jskip(c) < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

/* events or links: an array of objects, each decoded by elem into a slot of a scratch stack,
 * then moved to the arena. */
static int j_obj_array(jctx_t *c, jvec_t *vec, int (*elem)(jctx_t *, void *), void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (peek(c) == 'n')
        return jliteral(c, "null", 4);
    if (jarr_begin(c) < 0)
        return type_error(c, "an array");
    size_t mark = vec->len;
    int first = 1, r;
    long idx = 0;
    while ((r = jarr_next(c, &first)) == 1) {
        path_index(c, idx++);
        void *slot = jvec_push(vec); /* elem pushes only on other stacks: slot stays put */
        if (!slot)
            return jnomem(c);
        if (elem(c, slot) < 0)
            return J_ERR;
    }
    path_index(c, -1);
    if (r < 0)
        return J_ERR;
    if (jvec_take(c, vec, mark, out, n) < 0)
        return jnomem(c);
    return 0;
}

static int j_event_elem(jctx_t *c, void *out)
{
    return j_event(c, out);
}

static int j_link_elem(jctx_t *c, void *out)
{
    return j_link(c, out);
}

static int j_events(jctx_t *c, fl_span_t *s)
{
    void *out;
    int r = j_obj_array(c, &c->events, j_event_elem, &out, &s->n_events);
    s->events = out;
    return r;
}

static int j_links(jctx_t *c, fl_span_t *s)
{
    void *out;
    int r = j_obj_array(c, &c->links, j_link_elem, &out, &s->n_links);
    s->links = out;
    return r;
}

static int j_status(jctx_t *c, fl_span_t *s)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    int open = j_obj_open(c, "a status object");
    if (open <= 0)
        return open;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        if (KEQ(kn, n, "code"))
            JFIELD(c, "code", jfield_enum(c, &s->status_code, status_names, 3, "STATUS_CODE_"));
        else if (KEQ(kn, n, "message"))
            JFIELD(c, "message", jfield_str(c, &s->status_message));
        else if (jskip(c) < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

static int j_span(jctx_t *c, const fl_resource_t *res, const fl_scope_t *scope)
{
    int first = 1, r, has_t = 0, has_s = 0, has_p = 0;
    char *k;
    size_t kl;
    char kn[48];
    fl_span_t s;
    memset(&s, 0, sizeof(s));
    s.resource = res;
    s.scope = scope;
    s.trace_state.ptr = s.name.ptr = s.status_message.ptr = "";
    c->has_prob = 0;
    if (jobj_begin(c) < 0)
        return type_error(c, "a span object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        switch (kn[0]) {
        case 't':
            if (KEQ(kn, n, "traceid")) {
                if (jfield_id(c, s.trace_id, 16, &has_t, "traceId") < 0)
                    return J_ERR;
                continue;
            }
            if (KEQ(kn, n, "tracestate")) {
                JFIELD(c, "traceState", jfield_str(c, &s.trace_state));
                continue;
            }
            break;
        case 's':
            if (KEQ(kn, n, "spanid")) {
                if (jfield_id(c, s.span_id, 8, &has_s, "spanId") < 0)
                    return J_ERR;
                continue;
            }
            if (KEQ(kn, n, "starttimeunixnano")) {
                JFIELD(c, "startTimeUnixNano", jfield_u64(c, &s.start_ns, UINT64_MAX));
                continue;
            }
            if (KEQ(kn, n, "status")) {
                JFIELD(c, "status", j_status(c, &s));
                continue;
            }
            break;
        case 'p':
            if (KEQ(kn, n, "parentspanid")) {
                if (jfield_id(c, s.parent_span_id, 8, &has_p, "parentSpanId") < 0)
                    return J_ERR;
                continue;
            }
            break;
        case 'f':
            if (KEQ(kn, n, "flags")) {
                JFIELD(c, "flags", jfield_u32(c, &s.flags));
                continue;
            }
            break;
        case 'n':
            if (KEQ(kn, n, "name")) {
                JFIELD(c, "name", jfield_str(c, &s.name));
                continue;
            }
            break;
        case 'k':
            if (KEQ(kn, n, "kind")) {
                JFIELD(c, "kind", jfield_enum(c, &s.kind, kind_names, 6, "SPAN_KIND_"));
                continue;
            }
            break;
        case 'e':
            if (KEQ(kn, n, "endtimeunixnano")) {
                JFIELD(c, "endTimeUnixNano", jfield_u64(c, &s.end_ns, UINT64_MAX));
                continue;
            }
            if (KEQ(kn, n, "events")) {
                JFIELD(c, "events", j_events(c, &s));
                continue;
            }
            break;
        case 'a':
            if (KEQ(kn, n, "attributes")) {
                if (j_attrs(c, &s.attrs) < 0)
                    return J_ERR;
                continue;
            }
            break;
        case 'l':
            if (KEQ(kn, n, "links")) {
                JFIELD(c, "links", j_links(c, &s));
                continue;
            }
            break;
        case 'd':
            if (KEQ(kn, n, "droppedattributescount")) {
                JFIELD(c, "droppedAttributesCount", jfield_u32(c, &s.dropped_attrs));
                continue;
            }
            if (KEQ(kn, n, "droppedeventscount")) {
                JFIELD(c, "droppedEventsCount", jfield_u32(c, &s.dropped_events));
                continue;
            }
            if (KEQ(kn, n, "droppedlinkscount")) {
                JFIELD(c, "droppedLinksCount", jfield_u32(c, &s.dropped_links));
                continue;
            }
            break;
        default:
            break;
        }
        if (jskip(c) < 0)
            return J_ERR;
    }
    if (r < 0)
        return J_ERR;
    c->depth--;
    if (!c->has_prob) {
        if (!has_t || fl_is_zero(s.trace_id, 16))
            span_problem(c, "traceId", has_t ? "all-zero trace id" : "missing trace id");
        else if (!has_s || fl_is_zero(s.span_id, 8))
            span_problem(c, "spanId", has_s ? "all-zero span id" : "missing span id");
    }
    if (c->has_prob) {
        if (!c->reject_msg) {
            c->reject_msg = fl_arena_strdup(c->arena, c->prob);
            if (!c->reject_msg)
                return jnomem(c);
        }
        c->rejected++;
        return 0;
    }
    fl_span_t *slot = jvec_push(&c->spans);
    if (!slot)
        return jnomem(c);
    *slot = s;
    return 0;
}

static int j_scope(jctx_t *c, fl_scope_t *sc)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    int open = j_obj_open(c, "a scope object");
    if (open <= 0)
        return open;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int h;
        if (KEQ(kn, n, "name"))
            JFIELD(c, "name", jfield_str(c, &sc->name));
        else if (KEQ(kn, n, "version"))
            JFIELD(c, "version", jfield_str(c, &sc->version));
        else if ((h = j_attrs_field(c, kn, n, &sc->attrs, &sc->dropped_attrs)) != 0) {
            if (h < 0)
                return J_ERR;
        } else if (jskip(c) < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

static int j_resource(jctx_t *c, fl_resource_t *res)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    int open = j_obj_open(c, "a resource object");
    if (open <= 0)
        return open;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int h = j_attrs_field(c, kn, n, &res->attrs, &res->dropped_attrs);
        if (h < 0 || (h == 0 && jskip(c) < 0)) /* entityRefs, and the schemaUrl JS SDKs put here */
            return J_ERR;
    }
    c->depth--;
    return r;
}

static int j_scope_spans(jctx_t *c, const fl_resource_t *res)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    /* The scope may come after the spans in the object: allocate it first so spans can
     * point to it whatever the key order. */
    fl_scope_t *sc = fl_arena_calloc(c->arena, 1, sizeof(*sc));
    if (!sc)
        return jnomem(c);
    sc->name.ptr = sc->version.ptr = sc->schema_url.ptr = "";
    if (jobj_begin(c) < 0)
        return type_error(c, "a ScopeSpans object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        if (KEQ(kn, n, "scope")) {
            JFIELD(c, "scope", j_scope(c, sc));
        } else if (KEQ(kn, n, "schemaurl")) {
            JFIELD(c, "schemaUrl", jfield_str(c, &sc->schema_url));
        } else if (KEQ(kn, n, "spans")) {
            path_push(c, "spans", -1);
            if (peek(c) == 'n') {
                if (jliteral(c, "null", 4) < 0)
                    return J_ERR;
            } else {
                if (jarr_begin(c) < 0)
                    return type_error(c, "an array");
                int af = 1, ar;
                long idx = 0;
                while ((ar = jarr_next(c, &af)) == 1) {
                    path_index(c, idx++);
                    if (j_span(c, res, sc) < 0)
                        return J_ERR;
                }
                if (ar < 0)
                    return J_ERR;
            }
            path_pop(c);
        } else if (jskip(c) < 0) {
            return J_ERR;
        }
    }
    c->depth--;
    return r;
}

static void set_service_name(fl_resource_t *res)
{
    for (size_t i = 0; i < res->attrs.n; i++) {
        const fl_kv_t *kv = &res->attrs.items[i];
        if (kv->key.len == 12 && memcmp(kv->key.ptr, "service.name", 12) == 0 &&
            kv->value.type == FL_VAL_STRING && kv->value.u.str.len > 0) {
            res->service_name = kv->value.u.str;
            return;
        }
    }
    res->service_name = FL_STR_LIT("unknown_service");
}

static int j_resource_spans(jctx_t *c)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    fl_resource_t *res = fl_arena_calloc(c->arena, 1, sizeof(*res));
    if (!res)
        return jnomem(c);
    res->schema_url.ptr = "";
    if (jobj_begin(c) < 0)
        return type_error(c, "a ResourceSpans object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        if (KEQ(kn, n, "resource")) {
            JFIELD(c, "resource", j_resource(c, res));
        } else if (KEQ(kn, n, "schemaurl")) {
            JFIELD(c, "schemaUrl", jfield_str(c, &res->schema_url));
        } else if (KEQ(kn, n, "scopespans") || KEQ(kn, n, "instrumentationlibraryspans")) {
            path_push(c, "scopeSpans", -1);
            if (peek(c) == 'n') {
                if (jliteral(c, "null", 4) < 0)
                    return J_ERR;
            } else {
                if (jarr_begin(c) < 0)
                    return type_error(c, "an array");
                int af = 1, ar;
                long idx = 0;
                while ((ar = jarr_next(c, &af)) == 1) {
                    path_index(c, idx++);
                    if (j_scope_spans(c, res) < 0)
                        return J_ERR;
                }
                if (ar < 0)
                    return J_ERR;
            }
            path_pop(c);
        } else if (jskip(c) < 0) {
            return J_ERR;
        }
    }
    c->depth--;
    set_service_name(res);
    return r;
}

/* ---------------------------------------------------------------- logs / metrics */

/* Count the elements of an array of anything (values are skipped with syntax checks). */
static int j_count_array(jctx_t *c, size_t *count)
{
    if (peek(c) == 'n')
        return jliteral(c, "null", 4);
    if (jarr_begin(c) < 0)
        return type_error(c, "an array");
    int first = 1, r;
    long idx = 0;
    while ((r = jarr_next(c, &first)) == 1) {
        path_index(c, idx++);
        if (peek(c) != '{')
            return type_error(c, "an object");
        if (jskip(c) < 0)
            return J_ERR;
        (*count)++;
    }
    path_index(c, -1);
    return r;
}

/* Counting walks a fixed key chain: level i names the keys accepted at that depth (their
 * display names for paths) and whether the value is one object or an array of objects; the
 * last level is the array whose elements are counted. */
typedef struct jlevel {
    const char *keys[6];
    const char *names[6];
    int is_obj;
} jlevel_t;

static int j_count_obj(jctx_t *c, const jlevel_t *lv, int nlv);

/* The value of a key matched at level lv. */
static int j_count_value(jctx_t *c, const jlevel_t *lv, int nlv)
{
    if (nlv == 1)
        return j_count_array(c, &c->count);
    if (peek(c) == 'n')
        return jliteral(c, "null", 4);
    if (lv->is_obj)
        return j_count_obj(c, lv + 1, nlv - 1);
    if (jarr_begin(c) < 0)
        return type_error(c, "an array");
    int first = 1, r;
    long idx = 0;
    while ((r = jarr_next(c, &first)) == 1) {
        path_index(c, idx++);
        if (j_count_obj(c, lv + 1, nlv - 1) < 0)
            return J_ERR;
    }
    path_index(c, -1);
    return r;
}

static int j_count_obj(jctx_t *c, const jlevel_t *lv, int nlv)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    if (jobj_begin(c) < 0)
        return type_error(c, "an object");
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int hit = -1;
        for (int i = 0; lv->keys[i]; i++)
            if (strlen(lv->keys[i]) == n && memcmp(lv->keys[i], kn, n) == 0)
                hit = i;
        if (hit < 0) {
            if (jskip(c) < 0)
                return J_ERR;
            continue;
        }
        path_push(c, lv->names[hit], -1);
        int rc = j_count_value(c, lv, nlv);
        path_pop(c);
        if (rc < 0)
            return J_ERR;
    }
    c->depth--;
    return r;
}

static const jlevel_t logs_chain[] = {
    {{"resourcelogs", NULL}, {"resourceLogs"}, 0},
    {{"scopelogs", "instrumentationlibrarylogs", NULL}, {"scopeLogs", "scopeLogs"}, 0},
    {{"logrecords", NULL}, {"logRecords"}, 0},
};

static const jlevel_t metrics_chain[] = {
    {{"resourcemetrics", NULL}, {"resourceMetrics"}, 0},
    {{"scopemetrics", "instrumentationlibrarymetrics", NULL}, {"scopeMetrics", "scopeMetrics"}, 0},
    {{"metrics", NULL}, {"metrics"}, 0},
    {{"gauge", "sum", "histogram", "exponentialhistogram", "summary", NULL},
     {"gauge", "sum", "histogram", "exponentialHistogram", "summary"},
     1},
    {{"datapoints", NULL}, {"dataPoints"}, 0},
};

/* ---------------------------------------------------------------- entry points */

static int jctx_init(jctx_t *c, char *buf, size_t len, int max_depth, fl_arena_t *arena, char *err,
                     size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->base = c->p = buf;
    c->end = buf + len;
    c->max_depth = max_depth > 0 ? max_depth : FL__DEFAULT_MAX_DEPTH;
    c->err = err;
    c->errlen = errlen;
    c->arena = arena;
    jvec_init(&c->kvs, sizeof(fl_kv_t));
    jvec_init(&c->vals, sizeof(fl_value_t));
    jvec_init(&c->events, sizeof(fl_event_t));
    jvec_init(&c->links, sizeof(fl_link_t));
    jvec_init(&c->spans, sizeof(fl_span_t));
    return 0;
}

static void jctx_dispose(jctx_t *c)
{
    jvec_dispose(&c->kvs);
    jvec_dispose(&c->vals);
    jvec_dispose(&c->events);
    jvec_dispose(&c->links);
    jvec_dispose(&c->spans);
}

/* The top-level object: {"resourceSpans": [...]} (or resourceLogs / resourceMetrics). */
static int j_request(jctx_t *c, int signal)
{
    int first = 1, r;
    char *k;
    size_t kl;
    char kn[48];
    if (c->end - c->p >= 3 && memcmp(c->p, "\xEF\xBB\xBF", 3) == 0)
        c->p += 3; /* a UTF-8 byte order mark */
    if (peek(c) == 0 && c->p >= c->end)
        return 0; /* an empty body is an empty request */
    if (jobj_begin(c) < 0) {
        if (peek(c) == '[' || peek(c) == '"' || peek(c) == 't' || peek(c) == 'f' ||
            peek(c) == 'n' || peek(c) == '-' || (peek(c) >= '0' && peek(c) <= '9'))
            return jfail(c, FL_ERR_DECODE, "the request must be a JSON object, got %s",
                         type_name(peek(c)));
        return jsyntax(c, "expected a JSON object");
    }
    if (jdepth_in(c) < 0)
        return J_ERR;
    while ((r = jobj_next(c, &first, &k, &kl)) == 1) {
        size_t n = keynorm(k, kl, kn, sizeof(kn));
        int rc;
        if (signal == FL_OTLP_TRACES && KEQ(kn, n, "resourcespans")) {
            path_push(c, "resourceSpans", -1);
            if (peek(c) == 'n') {
                rc = jliteral(c, "null", 4);
            } else if (jarr_begin(c) < 0) {
                rc = type_error(c, "an array");
            } else {
                int af = 1, ar;
                long idx = 0;
                while ((ar = jarr_next(c, &af)) == 1) {
                    path_index(c, idx++);
                    if (j_resource_spans(c) < 0)
                        return J_ERR;
                }
                rc = ar;
            }
            path_pop(c);
        } else if (signal == FL_OTLP_LOGS && KEQ(kn, n, "resourcelogs")) {
            path_push(c, "resourceLogs", -1);
            rc = j_count_value(c, logs_chain, 3);
            path_pop(c);
        } else if (signal == FL_OTLP_METRICS && KEQ(kn, n, "resourcemetrics")) {
            path_push(c, "resourceMetrics", -1);
            rc = j_count_value(c, metrics_chain, 5);
            path_pop(c);
        } else {
            rc = jskip(c);
        }
        if (rc < 0)
            return J_ERR;
    }
    if (r < 0)
        return J_ERR;
    c->depth--;
    if (peek(c) != 0 || c->p < c->end)
        return jsyntax(c, "unexpected data after the top-level object");
    return 0;
}

int fl__json_decode_traces(const uint8_t *body, size_t len, int max_depth, fl_span_batch_t *batch,
                           char *err, size_t errlen)
{
    jctx_t *c = NULL;
    int rc = FL_OK;
    /* Parse a private, NUL-terminated copy in the arena: strings are then unescaped in
     * place and the span model points at them without further copies. */
    char *buf = fl_arena_alloc(batch->arena, len + 1);
    if (!buf)
        return fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory copying a %zu-byte body", len);
    memcpy(buf, body, len);
    buf[len] = 0;
    c = malloc(sizeof(*c));
    if (!c)
        return fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
    jctx_init(c, buf, len, max_depth, batch->arena, err, errlen);
    if (j_request(c, FL_OTLP_TRACES) < 0) {
        rc = c->rc ? c->rc : FL_ERR_DECODE;
        goto out;
    }
    size_t n = c->spans.len;
    fl_span_t *spans = NULL;
    if (n) {
        spans = fl_arena_alloc(batch->arena, n * sizeof(fl_span_t));
        if (!spans) {
            rc = fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(spans, c->spans.data, n * sizeof(fl_span_t));
    }
    batch->spans = spans;
    batch->n_spans = n;
    batch->rejected = c->rejected;
    batch->reject_msg = c->reject_msg;
out:
    jctx_dispose(c);
    free(c);
    return rc;
}

int fl__json_count(int signal, const uint8_t *body, size_t len, int max_depth, size_t *count,
                   char *err, size_t errlen)
{
    int rc = FL_OK;
    char *buf = malloc(len + 1);
    jctx_t *c = malloc(sizeof(*c));
    *count = 0;
    if (!buf || !c) {
        rc = fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(buf, body, len);
    buf[len] = 0;
    jctx_init(c, buf, len, max_depth, NULL, err, errlen);
    if (j_request(c, signal) < 0)
        rc = c->rc ? c->rc : FL_ERR_DECODE;
    else
        *count = c->count;
    jctx_dispose(c);
out:
    free(c);
    free(buf);
    return rc;
}
