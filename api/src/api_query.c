/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: query-string parsing (percent-decoding), typed parameter validation with
 * messages that name the parameter, trace id parsing, and the /api/traces search query. */
#include "api_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_QUERY_PARAMS 64
#define SEARCH_LIMIT_DEFAULT 20
#define SEARCH_LIMIT_MAX 1000
/* 1e12 ms is about 31 years: more than any trace, and far from uint64 nanos overflow. */
#define MAX_MS 1000000000000ull

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int fl_api__pct_decode(const char *s, size_t len, int plus_space, char *out, size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3)
                return -1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return -2;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == '\0') {
            return -2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return 0;
}

/* Quote a user-supplied value for an error message, shortened to keep messages readable. */
static const char *shorten(const char *v, char buf[72])
{
    size_t n = strlen(v);
    if (n <= 64)
        return v;
    memcpy(buf, v, 60);
    memcpy(buf + 60, "...", 4);
    return buf;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int fl_api_query_parse(const char *qs, fl_arena_t *a, fl_api_query_t *out, char *err, size_t errlen)
{
    const char *p = qs ? qs : "";

    out->items = NULL;
    out->n = 0;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        size_t vlen = eq ? plen - nlen - 1 : 0;
        char *name, *value;
        int rc;

        if (plen == 0)
            goto next; /* "a=1&&b=2" and a trailing '&' are harmless */
        if (out->n == MAX_QUERY_PARAMS) {
            set_err(err, errlen, "too many query parameters (at most %d)", MAX_QUERY_PARAMS);
            return FL_ERR_LIMIT;
        }
        if (nlen == 0) {
            set_err(err, errlen, "query parameter %zu has an empty name", out->n + 1);
            return FL_ERR_INVALID;
        }
        name = fl_arena_alloc(a, nlen + 1);
        value = fl_arena_alloc(a, vlen + 1);
        if (!out->items)
            out->items = fl_arena_alloc(a, MAX_QUERY_PARAMS * sizeof(*out->items));
        if (!name || !value || !out->items) {
            set_err(err, errlen, "out of memory");
            return FL_ERR_NOMEM;
        }
        rc = fl_api__pct_decode(p, nlen, 1, name, NULL);
        if (rc == 0)
            rc = fl_api__pct_decode(eq ? eq + 1 : "", vlen, 1, value, NULL);
        if (rc != 0) {
            set_err(err, errlen, "query parameter %zu (%.*s): %s", out->n + 1,
                    (int)(nlen > 64 ? 64 : nlen), p,
                    rc == -2 ? "percent-encoded NUL byte" : "malformed percent-encoding");
            return FL_ERR_INVALID;
        }
        for (size_t i = 0; i < out->n; i++) {
            if (!strcmp(out->items[i].name, name)) {
                char sb[72];
                set_err(err, errlen, "query parameter '%s' is given more than once",
                        shorten(name, sb));
                return FL_ERR_INVALID;
            }
        }
        out->items[out->n].name = name;
        out->items[out->n].value = value;
        out->n++;
    next:
        if (!amp)
            break;
        p = amp + 1;
    }
    return FL_OK;
}

const char *fl_api_query_get(const fl_api_query_t *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++)
        if (!strcmp(q->items[i].name, name))
            return q->items[i].value;
    return NULL;
}

int fl_api_query_check(const fl_api_query_t *q, const char *const *allowed, size_t n_allowed,
                       char *err, size_t errlen)
{
    char unknown[512] = "";
    size_t ul = 0, n_unknown = 0;

    for (size_t i = 0; i < q->n; i++) {
        size_t j;
        for (j = 0; j < n_allowed; j++)
            if (!strcmp(q->items[i].name, allowed[j]))
                break;
        if (j < n_allowed)
            continue;
        n_unknown++;
        if (ul < sizeof(unknown) - 80) {
            char sb[72];
            ul += (size_t)snprintf(unknown + ul, sizeof(unknown) - ul, "%s'%s'", ul ? ", " : "",
                                   shorten(q->items[i].name, sb));
        }
    }
    if (n_unknown == 0)
        return FL_OK;
    if (err && errlen) {
        size_t el = (size_t)snprintf(err, errlen, "unknown query parameter%s %s; allowed: ",
                                     n_unknown > 1 ? "s" : "", unknown);
        if (n_allowed == 0 && el < errlen)
            snprintf(err + el, errlen - el, "none");
        for (size_t j = 0; j < n_allowed && el < errlen; j++)
            el += (size_t)snprintf(err + el, errlen - el, "%s%s", j ? ", " : "", allowed[j]);
    }
    return FL_ERR_INVALID;
}

/* The value of a parameter that is present and non-empty, else NULL (*present = 0). */
static const char *present_value(const fl_api_query_t *q, const char *name, int *present)
{
    const char *v = fl_api_query_get(q, name);

    *present = v && *v;
    return *present ? v : NULL;
}

int fl_api_query_time(const fl_api_query_t *q, const char *name, uint64_t *out, int *present,
                      char *err, size_t errlen)
{
    const char *v = present_value(q, name, present);
    uint64_t t;
    char sb[72];

    if (!v)
        return FL_OK;
    if (fl_time_parse(v, &t) != FL_OK) {
        set_err(err, errlen,
                "%s: expected an RFC 3339 time (e.g. 2024-05-01T12:00:00Z) or unix "
                "nanoseconds, got \"%s\"",
                name, shorten(v, sb));
        return FL_ERR_INVALID;
    }
    *out = t;
    return FL_OK;
}

/* Decimal digits only, no sign or spaces; -1 on overflow or a bad character. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

int fl_api_query_uint(const fl_api_query_t *q, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, int *present, char *err, size_t errlen)
{
    const char *v = present_value(q, name, present);
    uint64_t n;
    char sb[72];

    if (!v)
        return FL_OK;
    if (parse_u64(v, &n) != 0 || n < min || n > max) {
        set_err(err, errlen, "%s: must be an integer from %llu to %llu, got \"%s\"", name,
                (unsigned long long)min, (unsigned long long)max, shorten(v, sb));
        return FL_ERR_INVALID;
    }
    *out = n;
    return FL_OK;
}

int fl_api_query_ms(const fl_api_query_t *q, const char *name, uint64_t *out_ns, int *present,
                    char *err, size_t errlen)
{
    const char *v = present_value(q, name, present);
    const char *p;
    uint64_t ms = 0, frac_ns = 0, scale = 100000; /* first fraction digit = 100 us */
    int digits = 0;
    char sb[72];

    if (!v)
        return FL_OK;
    for (p = v; *p >= '0' && *p <= '9'; p++, digits++) {
        ms = ms * 10 + (uint64_t)(*p - '0');
        if (ms > MAX_MS)
            goto bad;
    }
    if (*p == '.' && digits > 0) {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            goto bad;
        for (; *p >= '0' && *p <= '9'; p++, digits++) {
            frac_ns += (uint64_t)(*p - '0') * scale; /* digits past nanoseconds add 0 */
            scale /= 10;
        }
    }
    if (*p || digits == 0)
        goto bad;
    *out_ns = ms * 1000000ull + frac_ns;
    return FL_OK;
bad:
    set_err(err, errlen, "%s: must be a number of milliseconds from 0 to %llu, got \"%s\"", name,
            (unsigned long long)MAX_MS, shorten(v, sb));
    return FL_ERR_INVALID;
}

int fl_api_query_bool(const fl_api_query_t *q, const char *name, int *out, int *present, char *err,
                      size_t errlen)
{
    const char *v = present_value(q, name, present);
    char sb[72];

    if (!v)
        return FL_OK;
    if (!strcasecmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
    } else if (!strcasecmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
    } else {
        set_err(err, errlen, "%s: must be true or false, got \"%s\"", name, shorten(v, sb));
        return FL_ERR_INVALID;
    }
    return FL_OK;
}

int fl_api_parse_trace_id(const char *s, uint8_t out[16], char *err, size_t errlen)
{
    size_t n = s ? strlen(s) : 0;
    uint8_t id[16];

    if (n != 32) {
        set_err(err, errlen, "trace id must be 32 hex characters, got %zu characters", n);
        return FL_ERR_INVALID;
    }
    for (size_t i = 0; i < 32; i++) {
        if (hexval((unsigned char)s[i]) < 0) {
            set_err(err, errlen, "trace id has a non-hex character at position %zu", i + 1);
            return FL_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < 16; i++)
        id[i] =
            (uint8_t)(hexval((unsigned char)s[2 * i]) << 4 | hexval((unsigned char)s[2 * i + 1]));
    if (fl_is_zero(id, 16)) {
        set_err(err, errlen, "trace id is all zeros, which is never a valid trace id");
        return FL_ERR_INVALID;
    }
    memcpy(out, id, 16);
    return FL_OK;
}

static const char *const search_params[] = {
    "service", "operation", "start", "end", "min_duration_ms", "error", "limit",
};

int fl_api_parse_trace_search(const fl_api_query_t *q, fl_trace_query_t *out, char *err,
                              size_t errlen)
{
    fl_trace_query_t t = {0};
    uint64_t limit = SEARCH_LIMIT_DEFAULT;
    int present, has_start, has_end, rc;
    const char *v;

    rc = fl_api_query_check(q, search_params, sizeof(search_params) / sizeof(search_params[0]), err,
                            errlen);
    if (rc != FL_OK)
        return rc;
    if ((v = present_value(q, "service", &present)) != NULL)
        t.service = v;
    if ((v = present_value(q, "operation", &present)) != NULL)
        t.operation = v;
    rc = fl_api_query_time(q, "start", &t.start_ns, &has_start, err, errlen);
    if (rc == FL_OK)
        rc = fl_api_query_time(q, "end", &t.end_ns, &has_end, err, errlen);
    if (rc == FL_OK)
        rc = fl_api_query_ms(q, "min_duration_ms", &t.min_duration_ns, &present, err, errlen);
    if (rc == FL_OK)
        rc = fl_api_query_bool(q, "error", &t.errors_only, &present, err, errlen);
    if (rc == FL_OK)
        rc = fl_api_query_uint(q, "limit", 1, SEARCH_LIMIT_MAX, &limit, &present, err, errlen);
    if (rc != FL_OK)
        return rc;
    if (has_start && has_end && t.start_ns > t.end_ns) {
        set_err(err, errlen, "start: must not be after end");
        return FL_ERR_INVALID;
    }
    if ((has_start && t.start_ns == 0) || (has_end && t.end_ns == 0)) {
        /* The store reads 0 as "unbounded"; an explicit epoch must not silently widen. */
        if (has_end && t.end_ns == 0) {
            set_err(err, errlen, "end: must be after the unix epoch");
            return FL_ERR_INVALID;
        }
        t.start_ns = 1;
    }
    t.limit = (size_t)limit;
    *out = t;
    return FL_OK;
}
