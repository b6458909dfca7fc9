/* SPDX-License-Identifier: Apache-2.0 */
/* Request parameters for the /simulate endpoints: query strings, form and JSON bodies. */
#include "svc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode a..b (percent escapes, '+' as space) into a new string; NULL when malformed. */
static char *decode(const char *a, const char *b)
{
    char *s = malloc((size_t)(b - a) + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (const char *p = a; p < b; p++) {
        if (*p == '%') {
            if (b - p < 3 || hexv(p[1]) < 0 || hexv(p[2]) < 0) {
                free(s);
                return NULL;
            }
            s[o++] = (char)(hexv(p[1]) * 16 + hexv(p[2]));
            p += 2;
        } else {
            s[o++] = *p == '+' ? ' ' : *p;
        }
    }
    s[o] = 0;
    return s;
}

int demo_params_set(demo_params_t *p, const char *name, const char *value)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->name[i], name) == 0) {
            char *v = strdup(value);
            if (!v)
                return -1;
            free(p->value[i]);
            p->value[i] = v;
            return 0;
        }
    }
    if (p->n >= DEMO_MAX_PARAMS)
        return -1;
    p->name[p->n] = strdup(name);
    p->value[p->n] = strdup(value);
    if (!p->name[p->n] || !p->value[p->n]) {
        free(p->name[p->n]);
        free(p->value[p->n]);
        return -1;
    }
    p->n++;
    return 0;
}

int demo_params_parse_query(demo_params_t *p, const char *q, char *err, size_t errlen)
{
    while (q && *q) {
        const char *end = strchr(q, '&');
        if (!end)
            end = q + strlen(q);
        if (end > q) {
            const char *eq = memchr(q, '=', (size_t)(end - q));
            const char *ne = eq ? eq : end;
            char *name = decode(q, ne);
            char *value = eq ? decode(eq + 1, end) : strdup("");
            if (!name || !value) {
                snprintf(err, errlen, "malformed percent-encoding in '%.*s'", (int)(end - q), q);
                free(name);
                free(value);
                return -1;
            }
            /* The first occurrence of a name wins, as the query is read before the body. */
            int rc = demo_params_get(p, name) ? 0 : demo_params_set(p, name, value);
            free(name);
            free(value);
            if (rc != 0) {
                snprintf(err, errlen, "too many parameters (at most %d)", DEMO_MAX_PARAMS);
                return -1;
            }
        }
        if (!*end)
            break;
        q = end + 1;
    }
    return 0;
}

int demo_params_add_json(demo_params_t *p, json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "the body must be a JSON object or form parameters");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char num[64];
        const char *s;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            s = num;
        } else if (json_is_real(v)) {
            snprintf(num, sizeof(num), "%.17g", json_real_value(v));
            s = num;
        } else if (json_is_boolean(v)) {
            s = json_is_true(v) ? "true" : "false";
        } else {
            snprintf(err, errlen, "parameter '%s' must be a string or a number", k);
            return -1;
        }
        if (demo_params_get(p, k))
            continue;
        if (demo_params_set(p, k, s) != 0) {
            snprintf(err, errlen, "too many parameters (at most %d)", DEMO_MAX_PARAMS);
            return -1;
        }
    }
    return 0;
}

const char *demo_params_get(const demo_params_t *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->name[i], name) == 0)
            return p->value[i];
    return NULL;
}

const char *demo_params_unknown(const demo_params_t *p, const char *const *allowed)
{
    for (size_t i = 0; i < p->n; i++) {
        int ok = 0;
        for (size_t j = 0; allowed[j] && !ok; j++)
            ok = strcmp(p->name[i], allowed[j]) == 0;
        if (!ok)
            return p->name[i];
    }
    return NULL;
}

static void enc(fl_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '_' || *c == '.' || *c == '~' || *c == '/') {
            fl_buf_putc(out, *c);
        } else {
            fl_buf_putc(out, '%');
            fl_buf_putc(out, hex[*c >> 4]);
            fl_buf_putc(out, hex[*c & 15]);
        }
    }
}

void demo_params_encode(const demo_params_t *p, fl_buf_t *out)
{
    for (size_t i = 0; i < p->n; i++) {
        if (i)
            fl_buf_putc(out, '&');
        enc(out, p->name[i]);
        fl_buf_putc(out, '=');
        enc(out, p->value[i]);
    }
}

void demo_params_dispose(demo_params_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->name[i]);
        free(p->value[i]);
    }
    p->n = 0;
}
