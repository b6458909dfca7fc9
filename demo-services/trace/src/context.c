/* SPDX-License-Identifier: Apache-2.0 */
/* demotrace: W3C Trace Context (traceparent, tracestate), OTEL_RESOURCE_ATTRIBUTES and the
 * OTLP endpoint URL rules. Pure string handling, no I/O. */
#include "demotrace_int.h"

#include <faultline/common.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_lchex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Decode n bytes from 2n lowercase hex characters; -1 on anything else. */
static int lchex_decode(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_lchex(s[2 * i]) || !is_lchex(s[2 * i + 1]))
            return -1;
        out[i] = (uint8_t)(fl_hex_value(s[2 * i]) << 4 | fl_hex_value(s[2 * i + 1]));
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int is_ows(int c)
{
    return c == ' ' || c == '\t';
}

int fl_dt_traceparent_parse(const char *value, fl_dt_context_t *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    if (!value)
        return -1;
    while (is_ows(*value))
        value++;
    size_t len = strlen(value);
    while (len > 0 && is_ows(value[len - 1]))
        len--;
    /* version(2) '-' trace-id(32) '-' parent-id(16) '-' flags(2) = 55 */
    if (len < 55)
        return -1;
    uint8_t version;
    if (lchex_decode(value, &version, 1) != 0 || version == 0xff)
        return -1;
    if (version == 0 && len != 55)
        return -1;
    /* A future version may append fields, but only after a '-'. */
    if (version != 0 && len > 55 && value[55] != '-')
        return -1;
    if (value[2] != '-' || value[35] != '-' || value[52] != '-')
        return -1;
    fl_dt_context_t c;
    memset(&c, 0, sizeof(c));
    if (lchex_decode(value + 3, c.trace_id, 16) != 0 ||
        lchex_decode(value + 36, c.span_id, 8) != 0 || lchex_decode(value + 53, &c.flags, 1) != 0)
        return -1;
    if (all_zero(c.trace_id, 16) || all_zero(c.span_id, 8))
        return -1;
    c.valid = 1;
    c.remote = 1;
    *ctx = c;
    return 0;
}

size_t fl_dt_traceparent_format(const fl_dt_context_t *ctx, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = 0;
    if (!ctx || !ctx->valid || all_zero(ctx->trace_id, 16) || all_zero(ctx->span_id, 8))
        return 0;
    char *p = out;
    *p++ = '0';
    *p++ = '0';
    *p++ = '-';
    for (int i = 0; i < 16; i++) {
        *p++ = hex[ctx->trace_id[i] >> 4];
        *p++ = hex[ctx->trace_id[i] & 15];
    }
    *p++ = '-';
    for (int i = 0; i < 8; i++) {
        *p++ = hex[ctx->span_id[i] >> 4];
        *p++ = hex[ctx->span_id[i] & 15];
    }
    *p++ = '-';
    uint8_t f = ctx->flags & FL_DT_FLAG_SAMPLED;
    *p++ = hex[f >> 4];
    *p++ = hex[f & 15];
    *p = 0;
    return (size_t)(p - out);
}

/* ---------------------------------------------------------------- tracestate */

static int is_lcalpha(int c)
{
    return c >= 'a' && c <= 'z';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_keychar(int c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / multi-tenant-key
 * simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 * multi-tenant-key = tenant-id "@" system-id
 * tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 * system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" ) */
static int valid_key(const char *k, size_t n)
{
    if (n == 0)
        return 0;
    const char *at = memchr(k, '@', n);
    if (!at) {
        if (n > 256 || !is_lcalpha(k[0]))
            return 0;
        for (size_t i = 1; i < n; i++)
            if (!is_keychar(k[i]))
                return 0;
        return 1;
    }
    size_t tn = (size_t)(at - k), sn = n - tn - 1;
    if (tn == 0 || tn > 241 || sn == 0 || sn > 14)
        return 0;
    if (!is_lcalpha(k[0]) && !is_digit(k[0]))
        return 0;
    for (size_t i = 1; i < tn; i++)
        if (!is_keychar(k[i]))
            return 0;
    if (!is_lcalpha(at[1]))
        return 0;
    for (size_t i = 2; i <= sn; i++)
        if (!is_keychar(at[i]))
            return 0;
    return 1;
}

/* value = 0*255(chr) nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E; chr = %x20 / nblk-chr */
static int valid_value(const char *v, size_t n)
{
    if (n == 0 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return 0;
    }
    return v[n - 1] != ' ';
}

typedef struct ts_member {
    const char *p; /* "key=value" */
    size_t len;
    size_t keylen;
} ts_member_t;

/* Split and validate; members[] receives views into value. Returns the count or -1. */
static int ts_split(const char *value, ts_member_t *m, int max)
{
    int n = 0;
    const char *p = value;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if (b > a) {
            const char *eq = memchr(a, '=', (size_t)(b - a));
            if (!eq || !valid_key(a, (size_t)(eq - a)) ||
                !valid_value(eq + 1, (size_t)(b - eq - 1)))
                return -1;
            size_t kl = (size_t)(eq - a);
            for (int i = 0; i < n; i++)
                if (m[i].keylen == kl && memcmp(m[i].p, a, kl) == 0)
                    return -1; /* duplicate key */
            if (n == max)
                return -1; /* more than 32 members */
            m[n].p = a;
            m[n].len = (size_t)(b - a);
            m[n].keylen = kl;
            n++;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return n;
}

/* Join the members that are still kept, dropping long ones and then right-most ones until the
 * text fits FL_DT_TRACESTATE_MAX. */
static int ts_join(ts_member_t *m, int n, char *out, size_t outlen)
{
    int keep[FL_DT_TRACESTATE_MEMBERS];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        keep[i] = 1;
        total += m[i].len + (i ? 1 : 0);
    }
    for (int i = 0; i < n && total > FL_DT_TRACESTATE_MAX; i++) {
        if (m[i].len > 128) {
            keep[i] = 0;
            total -= m[i].len + 1;
        }
    }
    for (int i = n - 1; i >= 0 && total > FL_DT_TRACESTATE_MAX; i--) {
        if (keep[i]) {
            keep[i] = 0;
            total -= m[i].len + 1;
        }
    }
    size_t o = 0;
    int kept = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        if (o + m[i].len + 2 > outlen)
            break;
        if (kept)
            out[o++] = ',';
        memcpy(out + o, m[i].p, m[i].len);
        o += m[i].len;
        kept++;
    }
    out[o] = 0;
    return kept;
}

int fl_dt_tracestate_parse(const char *value, char *out, size_t outlen)
{
    if (outlen)
        out[0] = 0;
    if (!value || outlen == 0)
        return value ? -1 : 0;
    ts_member_t m[FL_DT_TRACESTATE_MEMBERS];
    int n = ts_split(value, m, FL_DT_TRACESTATE_MEMBERS);
    if (n < 0)
        return -1;
    return ts_join(m, n, out, outlen);
}

int fl_dt_tracestate_put(fl_dt_context_t *ctx, const char *key, const char *value)
{
    size_t kl = key ? strlen(key) : 0, vl = value ? strlen(value) : 0;
    if (!valid_key(key ? key : "", kl) || !valid_value(value ? value : "", vl))
        return -1;
    if (kl + 1 + vl > FL_DT_TRACESTATE_MAX)
        return -1;
    char old[FL_DT_TRACESTATE_MAX + 1];
    snprintf(old, sizeof(old), "%s", ctx->tracestate);
    ts_member_t m[FL_DT_TRACESTATE_MEMBERS + 1];
    int n = ts_split(old, m + 1, FL_DT_TRACESTATE_MEMBERS);
    if (n < 0)
        n = 0;
    char entry[FL_DT_TRACESTATE_MAX + 2];
    snprintf(entry, sizeof(entry), "%s=%s", key, value);
    m[0].p = entry;
    m[0].len = kl + 1 + vl;
    m[0].keylen = kl;
    /* Remove the old entry for this key; the new one goes first. */
    int w = 1;
    for (int i = 1; i <= n; i++) {
        if (m[i].keylen == kl && memcmp(m[i].p, key, kl) == 0)
            continue;
        m[w++] = m[i];
    }
    if (w > FL_DT_TRACESTATE_MEMBERS)
        w = FL_DT_TRACESTATE_MEMBERS;
    ts_join(m, w, ctx->tracestate, sizeof(ctx->tracestate));
    return 0;
}

void fl_dt_extract(const char *traceparent, const char *tracestate, fl_dt_context_t *ctx)
{
    if (fl_dt_traceparent_parse(traceparent, ctx) != 0)
        return; /* tracestate is meaningless without a valid traceparent */
    if (tracestate &&
        fl_dt_tracestate_parse(tracestate, ctx->tracestate, sizeof(ctx->tracestate)) < 0)
        ctx->tracestate[0] = 0;
}

/* ---------------------------------------------------------------- resource attributes */

static char *trim_dup_decode(const char *a, const char *b, int *bad)
{
    while (a < b && (is_ows(*a)))
        a++;
    while (b > a && is_ows(b[-1]))
        b--;
    char *s = malloc((size_t)(b - a) + 1);
    if (!s) {
        *bad = 1;
        return NULL;
    }
    size_t o = 0;
    for (const char *p = a; p < b; p++) {
        if (*p == '%') {
            if (b - p < 3 || fl_hex_value(p[1]) < 0 || fl_hex_value(p[2]) < 0) {
                *bad = 1;
                free(s);
                return NULL;
            }
            s[o++] = (char)(fl_hex_value(p[1]) << 4 | fl_hex_value(p[2]));
            p += 2;
        } else {
            s[o++] = *p;
        }
    }
    s[o] = 0;
    return s;
}

void fl_dt_attrs_free(fl_dt_attr_t *attrs, size_t n)
{
    if (!attrs)
        return;
    for (size_t i = 0; i < n; i++) {
        free(attrs[i].key);
        if (attrs[i].type == FL_DT_ATTR_STRING)
            free(attrs[i].v.s);
    }
    free(attrs);
}

int fl_dt_resource_attrs_parse(const char *text, fl_dt_attr_t **out, size_t *n, char *err,
                               size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (err && errlen)
        err[0] = 0;
    if (!text || !*text)
        return 0;
    fl_dt_attr_t *attrs = NULL;
    size_t cnt = 0, cap = 0;
    const char *p = text;
    int rc = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p;
        while (a < end && is_ows(*a))
            a++;
        if (a < end) {
            const char *eq = memchr(a, '=', (size_t)(end - a));
            int bad = 0;
            if (!eq) {
                if (err)
                    snprintf(err, errlen, "member '%.*s' has no '='", (int)(end - a), a);
                rc = -1;
                break;
            }
            char *k = trim_dup_decode(a, eq, &bad);
            char *v = bad ? NULL : trim_dup_decode(eq + 1, end, &bad);
            if (bad || !k || !*k) {
                if (err)
                    snprintf(err, errlen, "member '%.*s': %s", (int)(end - a), a,
                             bad ? "invalid percent-encoding" : "empty key");
                free(k);
                free(v);
                rc = -1;
                break;
            }
            size_t i;
            for (i = 0; i < cnt; i++)
                if (strcmp(attrs[i].key, k) == 0)
                    break;
            if (i < cnt) {
                free(k);
                free(attrs[i].v.s);
                attrs[i].v.s = v;
            } else {
                if (cnt == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    fl_dt_attr_t *na = realloc(attrs, nc * sizeof(*na));
                    if (!na) {
                        free(k);
                        free(v);
                        rc = -1;
                        if (err)
                            snprintf(err, errlen, "out of memory");
                        break;
                    }
                    attrs = na;
                    cap = nc;
                }
                attrs[cnt].key = k;
                attrs[cnt].type = FL_DT_ATTR_STRING;
                attrs[cnt].v.s = v;
                cnt++;
            }
        }
        if (!*end)
            break;
        p = end + 1;
    }
    if (rc != 0) {
        fl_dt_attrs_free(attrs, cnt);
        return -1;
    }
    *out = attrs;
    *n = cnt;
    return 0;
}

/* ---------------------------------------------------------------- endpoint URLs */

int fl_dt_traces_url(const char *base, char *out, size_t outlen)
{
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    int n = snprintf(out, outlen, "%.*s/v1/traces", (int)len, base);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int fl__dt_url_parse(const char *url, fl__dt_url_t *u)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        u->port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        u->port = 443;
        u->tls = 1;
    } else {
        return -1;
    }
    const char *hend;
    const char *hs = p;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend)
            return -1;
        hs = p + 1;
        p = hend + 1;
    } else {
        hend = p + strcspn(p, ":/?#");
        p = hend;
    }
    size_t hl = (size_t)(hend - hs);
    if (hl == 0 || hl >= sizeof(u->host))
        return -1;
    memcpy(u->host, hs, hl);
    u->host[hl] = 0;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port <= 0 || port > 65535)
            return -1;
        u->port = (int)port;
        p = e;
    }
    if (*p && *p != '/' && *p != '?')
        return -1;
    int n = snprintf(u->path, sizeof(u->path), "%s%s", *p == '/' ? "" : "/", p);
    if (n < 0 || (size_t)n >= sizeof(u->path))
        return -1;
    return 0;
}
