/* SPDX-License-Identifier: Apache-2.0 */
/* What analysis reads from a span: one pass over its attributes for the HTTP/RPC/DB facts,
 * error and timeout signals, and the operation and peer naming rules that keep the number
 * of series bounded ("GET /user/123" -> "GET /user/{id}" or the http.route). */
#include "analysis_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int key_is(fl_str_t k, const char *lit, size_t n)
{
    return k.len == n && memcmp(k.ptr, lit, n) == 0;
}
#define KEY(k, lit) key_is((k), (lit), sizeof(lit) - 1)

static fl_str_t val_str(const fl_value_t *v)
{
    if (v->type == FL_VAL_STRING)
        return v->u.str;
    return (fl_str_t){NULL, 0};
}

/* Status codes arrive as ints, doubles (OTLP/JSON readers) or digit strings. */
static int val_int(const fl_value_t *v)
{
    if (v->type == FL_VAL_INT)
        return v->u.i > 0 && v->u.i < 100000 ? (int)v->u.i : 0;
    if (v->type == FL_VAL_DOUBLE)
        return v->u.d > 0 && v->u.d < 100000 ? (int)v->u.d : 0;
    if (v->type == FL_VAL_STRING) { /* some SDKs send codes as strings */
        int x = 0;
        for (size_t i = 0; i < v->u.str.len && i < 6; i++) {
            char c = v->u.str.ptr[i];
            if (c < '0' || c > '9')
                return 0;
            x = x * 10 + (c - '0');
        }
        return x;
    }
    return 0;
}

static int contains_ci(fl_str_t s, const char *needle)
{
    size_t n = strlen(needle);
    if (!s.ptr || s.len < n)
        return 0;
    for (size_t i = 0; i + n <= s.len; i++) {
        size_t j = 0;
        while (j < n && tolower((unsigned char)s.ptr[i + j]) == needle[j])
            j++;
        if (j == n)
            return 1;
    }
    return 0;
}

static int looks_timeout(fl_str_t s)
{
    return contains_ci(s, "timeout") || contains_ci(s, "timed out") || contains_ci(s, "deadline");
}

void fl__span_facts(const fl_span_t *s, fl__span_facts_t *f)
{
    memset(f, 0, sizeof(*f));
    f->grpc_status = -1;
    fl_str_t db_ns = {NULL, 0};
    for (size_t i = 0; i < s->attrs.n; i++) {
        fl_str_t k = s->attrs.items[i].key;
        const fl_value_t *v = &s->attrs.items[i].value;
        if (k.len < 7)
            continue;
        /* Dispatch on the first letter so most keys cost one comparison. */
        switch (k.ptr[0]) {
        case 'h':
            if (KEY(k, "http.response.status_code") || KEY(k, "http.status_code"))
                f->http_status = val_int(v);
            else if (KEY(k, "http.route"))
                f->route = val_str(v);
            else if (KEY(k, "http.request.method") || KEY(k, "http.method"))
                f->method = val_str(v);
            break;
        case 'r':
            if (KEY(k, "rpc.grpc.status_code"))
                f->grpc_status = v->type == FL_VAL_INT ? (int)v->u.i : val_int(v);
            break;
        case 'p':
            if (KEY(k, "peer.service"))
                f->peer = val_str(v);
            break;
        case 'd':
            if (KEY(k, "db.system") || KEY(k, "db.system.name"))
                f->db_system = val_str(v);
            else if (KEY(k, "db.name"))
                f->db_name = val_str(v);
            else if (KEY(k, "db.namespace"))
                db_ns = val_str(v);
            break;
        case 's':
            if (KEY(k, "server.address"))
                f->server_addr = val_str(v);
            break;
        case 'n':
            if (KEY(k, "net.peer.name") && !f->server_addr.len)
                f->server_addr = val_str(v);
            break;
        case 'e':
            if (KEY(k, "error.type"))
                f->error_type = val_str(v);
            break;
        default:
            break;
        }
    }
    if (!f->db_name.len)
        f->db_name = db_ns;
    if (!f->error_type.len) {
        for (size_t i = 0; i < s->n_events; i++) {
            const fl_event_t *e = &s->events[i];
            if (!key_is(e->name, "exception", 9))
                continue;
            const fl_value_t *v = fl_attrs_get(&e->attrs, "exception.type");
            if (v && v->type == FL_VAL_STRING && v->u.str.len) {
                f->error_type = v->u.str;
                break;
            }
        }
    }
    int server_or_client = s->kind == FL_KIND_SERVER || s->kind == FL_KIND_CLIENT;
    f->is_error = s->status_code == FL_STATUS_ERROR ||
                  (server_or_client && f->http_status >= 500 && f->http_status < 600);
    f->timeout_hint =
        f->http_status == 408 || f->http_status == 504 || f->grpc_status == 4 ||
        (f->is_error && (looks_timeout(f->error_type) || looks_timeout(s->status_message)));
}

/* ---------------------------------------------------------------- ids in names */

static int is_delim(char c)
{
    return c == '/' || c == ' ' || c == '?' || c == '&' || c == '=' || c == ':' || c == ',' ||
           c == ';' || c == '.' || c == '#';
}

/* Ids in names are what explode series counts: numbers, uuids, hashes, opaque tokens.
 * Short mixed tokens ("v1", "oauth2") are names and stay. */
static int token_is_id(const char *p, size_t n)
{
    if (!n)
        return 0;
    size_t digits = 0, hex = 0, run = 0, max_run = 0, letters = 0, dashes = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= '0' && c <= '9') {
            digits++;
            hex++;
            if (++run > max_run)
                max_run = run;
            continue;
        }
        run = 0;
        if (isxdigit(c))
            hex++;
        if (isalpha(c))
            letters++;
        if (c == '-')
            dashes++;
    }
    if (digits == n)
        return 1; /* "123", "2024" */
    if (max_run >= 3)
        return 1; /* "SKU-1002", "order123" */
    if (digits && hex + dashes == n && hex >= 8)
        return 1; /* hex ids and uuids */
    if (n >= 16 && digits >= 3 && letters)
        return 1; /* base64-ish tokens */
    return 0;
}

int fl_analysis_name_has_ids(const char *name, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (name[i] == '?')
            return 1;
        if (is_delim(name[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && !is_delim(name[j]))
            j++;
        if (token_is_id(name + i, j - i))
            return 1;
        i = j;
    }
    return 0;
}

static size_t put(char *out, size_t cap, size_t at, const char *s, size_t n)
{
    if (at >= cap)
        return at;
    size_t room = cap - 1 - at;
    if (n > room)
        n = room;
    memcpy(out + at, s, n);
    out[at + n] = 0;
    return at + n;
}

/* Copy name with id tokens replaced by "{id}" and any query string dropped. */
static size_t templatize(const char *name, size_t len, char *out, size_t cap)
{
    size_t at = 0, i = 0;
    out[0] = 0;
    while (i < len && name[i] != '?') {
        if (is_delim(name[i])) {
            at = put(out, cap, at, name + i, 1);
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && !is_delim(name[j]))
            j++;
        if (token_is_id(name + i, j - i))
            at = put(out, cap, at, "{id}", 4);
        else
            at = put(out, cap, at, name + i, j - i);
        i = j;
    }
    return at;
}

/* The route is the best name when the span name is too specific or says only the method;
 * otherwise templating the ids keeps the name readable and bounded. */
size_t fl__op_name(const fl_span_t *s, const fl__span_facts_t *f, char *out, size_t cap)
{
    const char *name = s->name.ptr ? s->name.ptr : "";
    size_t len = s->name.len;
    out[0] = 0;
    int specific = fl_analysis_name_has_ids(name, len);
    /* A server span named only by its method ("GET") says less than its route does. */
    int generic = len == 0 || (f->method.len == len && strncasecmp(name, f->method.ptr, len) == 0);
    if ((specific || generic) && f->route.len) {
        size_t at = 0;
        if (f->method.len) {
            at = put(out, cap, at, f->method.ptr, f->method.len);
            at = put(out, cap, at, " ", 1);
        }
        return put(out, cap, at, f->route.ptr, f->route.len);
    }
    if (specific)
        return templatize(name, len, out, cap);
    if (!len)
        return put(out, cap, 0, "unknown", 7);
    return put(out, cap, 0, name, len);
}

/* peer.service is what the user chose to call it; a database is best known by system and
 * database; an address is the last resort. */
size_t fl__peer_name(const fl__span_facts_t *f, char *out, size_t cap)
{
    out[0] = 0;
    if (f->peer.len)
        return put(out, cap, 0, f->peer.ptr, f->peer.len);
    if (f->db_system.len) {
        size_t at = put(out, cap, 0, f->db_system.ptr, f->db_system.len);
        if (f->db_name.len) {
            at = put(out, cap, at, "/", 1);
            at = put(out, cap, at, f->db_name.ptr, f->db_name.len);
        }
        return at;
    }
    if (f->server_addr.len)
        return put(out, cap, 0, f->server_addr.ptr, f->server_addr.len);
    return 0;
}

size_t fl_analysis_op_name(const fl_span_t *span, char *out, size_t cap)
{
    if (!span || !out || cap < 2) {
        if (out && cap)
            out[0] = 0;
        return 0;
    }
    fl__span_facts_t f;
    fl__span_facts(span, &f);
    return fl__op_name(span, &f, out, cap);
}

size_t fl_analysis_peer_name(const fl_span_t *span, char *out, size_t cap)
{
    if (!span || !out || cap < 2) {
        if (out && cap)
            out[0] = 0;
        return 0;
    }
    fl__span_facts_t f;
    fl__span_facts(span, &f);
    return fl__peer_name(&f, out, cap);
}
