/* SPDX-License-Identifier: Apache-2.0 */
/* Streaming JSON writer. Output is always valid JSON and valid UTF-8: control characters
 * are escaped and invalid UTF-8 is replaced by U+FFFD. */
#include <faultline/common.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fl_jw_init(fl_jw_t *w, fl_buf_t *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
}

static void put(fl_jw_t *w, const void *p, size_t n)
{
    if (!w->err)
        w->err = fl_buf_append(w->out, p, n);
}

/* Separator before a value or key at the current depth. */
static void pre_value(fl_jw_t *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0 && w->depth < 64) {
        uint64_t bit = 1ull << w->depth;
        if (w->need_comma & bit)
            put(w, ",", 1);
        w->need_comma |= bit;
    }
}

static void open_(fl_jw_t *w, char c)
{
    pre_value(w);
    put(w, &c, 1);
    w->depth++;
    if (w->depth < 64)
        w->need_comma &= ~(1ull << w->depth);
}

static void close_(fl_jw_t *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    put(w, &c, 1);
}

void fl_jw_obj_begin(fl_jw_t *w)
{
    open_(w, '{');
}
void fl_jw_obj_end(fl_jw_t *w)
{
    close_(w, '}');
}
void fl_jw_arr_begin(fl_jw_t *w)
{
    open_(w, '[');
}
void fl_jw_arr_end(fl_jw_t *w)
{
    close_(w, ']');
}

/* Length of a valid UTF-8 sequence at p (max n bytes), or 0 when invalid. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

int fl_json_escape(fl_buf_t *out, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    int rc = fl_buf_reserve(out, len + 2);
    if (rc)
        return rc;
    rc = fl_buf_putc(out, '"');
    size_t run = 0; /* start of the pending run of bytes that need no escaping */
    size_t i = 0;
    while (i < len && !rc) {
        uint8_t c = p[i];
        const char *esc = NULL;
        char ubuf[8];
        size_t adv = 1;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            adv = utf8_seq(p + i, len - i);
            if (adv) {
                i += adv;
                continue;
            }
            adv = 1;
            esc = "\xef\xbf\xbd"; /* U+FFFD */
        } else if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c == '\b') {
            esc = "\\b";
        } else if (c == '\f') {
            esc = "\\f";
        } else {
            snprintf(ubuf, sizeof(ubuf), "\\u%04x", c);
            esc = ubuf;
        }
        if (i > run)
            rc = fl_buf_append(out, p + run, i - run);
        if (!rc)
            rc = fl_buf_puts(out, esc);
        i += adv;
        run = i;
    }
    if (!rc && len > run)
        rc = fl_buf_append(out, p + run, len - run);
    if (!rc)
        rc = fl_buf_putc(out, '"');
    return rc;
}

void fl_jw_keyn(fl_jw_t *w, const char *key, size_t len)
{
    pre_value(w);
    if (!w->err)
        w->err = fl_json_escape(w->out, key ? key : "", key ? len : 0);
    put(w, ":", 1);
    w->after_key = 1;
}

void fl_jw_key(fl_jw_t *w, const char *key)
{
    fl_jw_keyn(w, key, key ? strlen(key) : 0);
}

void fl_jw_strn(fl_jw_t *w, const char *s, size_t len)
{
    pre_value(w);
    if (!w->err)
        w->err = fl_json_escape(w->out, s ? s : "", s ? len : 0);
}

void fl_jw_str(fl_jw_t *w, const char *s)
{
    if (!s) {
        fl_jw_null(w);
        return;
    }
    fl_jw_strn(w, s, strlen(s));
}

void fl_jw_int(fl_jw_t *w, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%lld", (long long)v);
    pre_value(w);
    put(w, b, (size_t)n);
}

void fl_jw_uint(fl_jw_t *w, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    pre_value(w);
    put(w, b, (size_t)n);
}

void fl_jw_double(fl_jw_t *w, double v)
{
    if (!isfinite(v)) {
        fl_jw_null(w);
        return;
    }
    char b[40];
    int n = 0;
    /* Shortest representation that round-trips. */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(b, sizeof(b), "%.*g", prec, v);
        if (strtod(b, NULL) == v)
            break;
    }
    /* Keep it recognisably a double ("3.0" rather than "3"). */
    if (!strpbrk(b, ".eEn") && n < 38) {
        b[n++] = '.';
        b[n++] = '0';
        b[n] = 0;
    }
    pre_value(w);
    put(w, b, (size_t)n);
}

void fl_jw_bool(fl_jw_t *w, int v)
{
    pre_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void fl_jw_null(fl_jw_t *w)
{
    pre_value(w);
    put(w, "null", 4);
}

void fl_jw_raw(fl_jw_t *w, const char *json, size_t len)
{
    pre_value(w);
    put(w, json, len);
}

void fl_jw_hex(fl_jw_t *w, const uint8_t *p, size_t n)
{
    char tmp[129];
    if (n > 64)
        n = 64;
    fl_hex_encode(p, n, tmp);
    fl_jw_strn(w, tmp, 2 * n);
}

void fl_jw_time(fl_jw_t *w, uint64_t unix_ns)
{
    char tmp[40];
    fl_jw_str(w, fl_time_format(unix_ns, tmp));
}
