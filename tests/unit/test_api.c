/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/: query parsing and validation (every 400), trace ids, route matching,
 * JSON escaping of hostile span data (checked with jansson), handlers through fl_api_request,
 * and an in-process run with a real store and a real net listener. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/api.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static fl_api_query_t parse_ok(fl_arena_t *a, const char *qs)
{
    fl_api_query_t q;
    char err[256] = "";
    int rc = fl_api_query_parse(qs, a, &q, err, sizeof(err));
    if (rc != FL_OK)
        fail_msg("parse of \"%s\" failed: %s", qs, err);
    return q;
}

/* Parse a /api/traces query; returns the error text (empty on success). */
static const char *search(fl_arena_t *a, const char *qs, fl_trace_query_t *out)
{
    static char err[768];
    fl_api_query_t q;
    fl_trace_query_t t;

    err[0] = '\0';
    if (fl_api_query_parse(qs, a, &q, err, sizeof(err)) != FL_OK)
        return err;
    if (fl_api_parse_trace_search(&q, out ? out : &t, err, sizeof(err)) != FL_OK) {
        assert_true(err[0] != '\0');
        return err;
    }
    return "";
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* A reply captured from fl_api_request (possibly delivered on a pool thread). */
typedef struct reply {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    char allow[128];
    char retry_after[16];
    char content_type[64];
    char *body;
    size_t len;
} reply_t;

static void on_reply(void *ctx, int status, const fl_net_header_t *h, size_t nh, const void *body,
                     size_t len)
{
    reply_t *r = ctx;

    pthread_mutex_lock(&r->mu);
    r->status = status;
    for (size_t i = 0; i < nh; i++) {
        if (!strcasecmp(h[i].name, "Allow"))
            snprintf(r->allow, sizeof(r->allow), "%s", h[i].value);
        if (!strcasecmp(h[i].name, "Retry-After"))
            snprintf(r->retry_after, sizeof(r->retry_after), "%s", h[i].value);
        if (!strcasecmp(h[i].name, "Content-Type"))
            snprintf(r->content_type, sizeof(r->content_type), "%s", h[i].value);
    }
    r->body = malloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = 0;
    r->len = len;
    r->done++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Run one request through the API and wait for its reply; the body is parsed as JSON. */
static json_t *request(fl_api_t *api, const char *method, const char *target, reply_t *r)
{
    json_error_t jerr;
    json_t *j;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    fl_api_request(api, method, target, NULL, 0, on_reply, r);
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    assert_int_equal(r->done, 1);
    assert_string_equal(r->content_type, "application/json; charset=utf-8");
    j = json_loadb(r->body, r->len, 0, &jerr);
    if (!j)
        fail_msg("%s %s: invalid JSON (%s): %s", method, target, jerr.text, r->body);
    return j;
}

static void reply_dispose(reply_t *r)
{
    free(r->body);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* The error object {"error": "...", "status": N}: checks status and a fragment of the text. */
static void assert_error(json_t *j, int status, const char *fragment)
{
    json_t *e = json_object_get(j, "error");
    assert_true(json_is_string(e));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    if (fragment)
        assert_contains(json_string_value(e), fragment);
}

/* ---------------------------------------------------------------- query strings */

static void test_api_query_parse(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(0);
    fl_api_query_t q = parse_ok(a, "service=check%2Fout&operation=GET+%2Fcart&flag&&x=a%3Db&");

    assert_int_equal(q.n, 4);
    assert_string_equal(fl_api_query_get(&q, "service"), "check/out");
    assert_string_equal(fl_api_query_get(&q, "operation"), "GET /cart");
    assert_string_equal(fl_api_query_get(&q, "flag"), "");
    assert_string_equal(fl_api_query_get(&q, "x"), "a=b");
    assert_null(fl_api_query_get(&q, "missing"));

    q = parse_ok(a, "");
    assert_int_equal(q.n, 0);
    q = parse_ok(a, NULL);
    assert_int_equal(q.n, 0);
    q = parse_ok(a, "n%C3%A4me=%E2%9C%93&Up=%4a%4A");
    assert_string_equal(fl_api_query_get(&q, "n\xc3\xa4me"), "\xe2\x9c\x93");
    assert_string_equal(fl_api_query_get(&q, "Up"), "JJ");
    fl_arena_free(a);
}

static void test_api_query_parse_errors(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(0);
    char err[256], qs[2048];
    fl_api_query_t q;
    size_t n = 0;

    assert_int_equal(fl_api_query_parse("a=%zz", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "malformed percent-encoding");
    assert_int_equal(fl_api_query_parse("a=%4", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "malformed percent-encoding");
    assert_int_equal(fl_api_query_parse("a=%", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_int_equal(fl_api_query_parse("a%g1=1", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_int_equal(fl_api_query_parse("a=x%00y", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "NUL");
    assert_int_equal(fl_api_query_parse("=v", a, &q, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "empty name");
    assert_int_equal(fl_api_query_parse("limit=1&limit=2", a, &q, err, sizeof(err)),
                     FL_ERR_INVALID);
    assert_contains(err, "'limit'");
    assert_contains(err, "more than once");
    /* The same name spelled differently is still the same parameter. */
    assert_int_equal(fl_api_query_parse("limit=1&l%69mit=2", a, &q, err, sizeof(err)),
                     FL_ERR_INVALID);
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(qs + n, sizeof(qs) - n, "p%d=1&", i);
    assert_int_equal(fl_api_query_parse(qs, a, &q, err, sizeof(err)), FL_ERR_LIMIT);
    assert_contains(err, "too many");
    fl_arena_free(a);
}

static void test_api_query_check_unknown(void **state)
{
    (void)state;
    static const char *const allowed[] = {"service", "limit"};
    fl_arena_t *a = fl_arena_new(0);
    fl_api_query_t q = parse_ok(a, "service=x&bogus=1&limit=3&other=");
    char err[512];

    assert_int_equal(fl_api_query_check(&q, allowed, 2, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "'bogus'");
    assert_contains(err, "'other'");
    assert_contains(err, "allowed: service, limit");
    q = parse_ok(a, "limit=3");
    assert_int_equal(fl_api_query_check(&q, allowed, 2, err, sizeof(err)), FL_OK);
    assert_int_equal(fl_api_query_check(&q, NULL, 0, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "allowed: none");
    fl_arena_free(a);
}

static void test_api_query_typed(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(0);
    fl_api_query_t q = parse_ok(a, "n=42&big=18446744073709551616&neg=-1&sp=+1&ms=1.5&ms2=0.0000019"
                                   "&msx=1e3&b=TRUE&b0=0&bx=yes&t=2026-11-30T03:43:47Z&tn=17&e=");
    char err[256];
    uint64_t v = 7;
    int present = -1, b = -1;

    assert_int_equal(fl_api_query_uint(&q, "n", 1, 100, &v, &present, err, sizeof(err)), FL_OK);
    assert_true(present && v == 42);
    assert_int_equal(fl_api_query_uint(&q, "n", 1, 10, &v, &present, err, sizeof(err)),
                     FL_ERR_INVALID);
    assert_contains(err, "n: must be an integer from 1 to 10, got \"42\"");
    assert_int_equal(fl_api_query_uint(&q, "big", 0, UINT64_MAX, &v, &present, err, sizeof(err)),
                     FL_ERR_INVALID);
    assert_int_equal(fl_api_query_uint(&q, "neg", 0, 10, &v, &present, err, sizeof(err)),
                     FL_ERR_INVALID);
    assert_int_equal(fl_api_query_uint(&q, "sp", 0, 10, &v, &present, err, sizeof(err)),
                     FL_ERR_INVALID);
    v = 7;
    assert_int_equal(fl_api_query_uint(&q, "absent", 0, 10, &v, &present, err, sizeof(err)), FL_OK);
    assert_true(!present && v == 7);
    assert_int_equal(fl_api_query_uint(&q, "e", 0, 10, &v, &present, err, sizeof(err)), FL_OK);
    assert_true(!present && v == 7);

    assert_int_equal(fl_api_query_ms(&q, "ms", &v, &present, err, sizeof(err)), FL_OK);
    assert_true(present && v == 1500000);
    assert_int_equal(fl_api_query_ms(&q, "ms2", &v, &present, err, sizeof(err)), FL_OK);
    assert_true(v == 1); /* 1.9 ns truncated to 1 ns */
    assert_int_equal(fl_api_query_ms(&q, "msx", &v, &present, err, sizeof(err)), FL_ERR_INVALID);
    assert_int_equal(fl_api_query_ms(&q, "neg", &v, &present, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "neg: must be a number of milliseconds");

    assert_int_equal(fl_api_query_bool(&q, "b", &b, &present, err, sizeof(err)), FL_OK);
    assert_true(present && b == 1);
    assert_int_equal(fl_api_query_bool(&q, "b0", &b, &present, err, sizeof(err)), FL_OK);
    assert_true(b == 0);
    assert_int_equal(fl_api_query_bool(&q, "bx", &b, &present, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "bx: must be true or false, got \"yes\"");

    assert_int_equal(fl_api_query_time(&q, "t", &v, &present, err, sizeof(err)), FL_OK);
    assert_true(present && v == 1796010227000000000ull);
    assert_int_equal(fl_api_query_time(&q, "tn", &v, &present, err, sizeof(err)), FL_OK);
    assert_true(v == 17);
    assert_int_equal(fl_api_query_time(&q, "bx", &v, &present, err, sizeof(err)), FL_ERR_INVALID);
    assert_contains(err, "bx: expected an RFC 3339 time");
    fl_arena_free(a);
}

/* Every way GET /api/traces can refuse its parameters, each naming the parameter. */
static void test_api_search_params(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(0);
    fl_trace_query_t t;
    static const struct {
        const char *qs;
        const char *fragment;
    } bad[] = {
        {"limit=0", "limit: must be an integer from 1 to 1000"},
        {"limit=1001", "limit:"},
        {"limit=abc", "got \"abc\""},
        {"limit=-5", "limit:"},
        {"limit=1.5", "limit:"},
        {"limit=99999999999999999999999", "limit:"},
        {"start=yesterday", "start: expected an RFC 3339 time"},
        {"start=2026-13-01T00:00:00Z", "start:"},
        {"end=12ab", "end:"},
        {"start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "start: must not be after end"},
        {"end=0", "end: must be after the unix epoch"},
        {"min_duration_ms=-1", "min_duration_ms:"},
        {"min_duration_ms=abc", "min_duration_ms:"},
        {"min_duration_ms=1e3", "min_duration_ms:"},
        {"min_duration_ms=inf", "min_duration_ms:"},
        {"min_duration_ms=.5", "min_duration_ms:"},
        {"min_duration_ms=5.", "min_duration_ms:"},
        {"min_duration_ms=99999999999999", "min_duration_ms:"},
        {"error=maybe", "error: must be true or false"},
        {"foo=1", "unknown query parameter 'foo'"},
        {"service=a&Service=b&x=", "'Service', 'x'"},
        {"limit=5&limit=6", "'limit' is given more than once"},
        {"service=%E", "malformed percent-encoding"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = search(a, bad[i].qs, NULL);
        if (!*err)
            fail_msg("query \"%s\" was accepted", bad[i].qs);
        assert_contains(err, bad[i].fragment);
    }

    assert_string_equal(search(a, "", &t), "");
    assert_int_equal(t.limit, 20);
    assert_null(t.service);
    assert_null(t.operation);
    assert_true(t.start_ns == 0 && t.end_ns == 0 && t.min_duration_ns == 0);
    assert_int_equal(t.errors_only, 0);

    /* Empty values mean "not given", as in the DESIGN template "?service=&operation=". */
    assert_string_equal(
        search(a, "service=&operation=&start=&end=&min_duration_ms=&error=&limit=", &t), "");
    assert_int_equal(t.limit, 20);
    assert_null(t.service);

    assert_string_equal(search(a,
                               "service=check%20out&operation=POST+%2Fpay&start=2026-01-01T00:00:"
                               "00Z&end=1767312000000000000&min_duration_ms=250.5&error=true&"
                               "limit=1000",
                               &t),
                        "");
    assert_string_equal(t.service, "check out");
    assert_string_equal(t.operation, "POST /pay");
    assert_true(t.start_ns == 1767225600000000000ull);
    assert_true(t.end_ns == 1767312000000000000ull);
    assert_true(t.min_duration_ns == 250500000ull);
    assert_int_equal(t.errors_only, 1);
    assert_int_equal(t.limit, 1000);
    assert_string_equal(search(a, "error=false&limit=1", &t), "");
    assert_int_equal(t.errors_only, 0);
    assert_int_equal(t.limit, 1);
    /* An explicit epoch start stays a bound rather than becoming "unbounded" (0). */
    assert_string_equal(search(a, "start=0", &t), "");
    assert_true(t.start_ns == 1);
    fl_arena_free(a);
}

static void test_api_trace_id(void **state)
{
    (void)state;
    uint8_t id[16];
    char err[256];

    assert_int_equal(
        fl_api_parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736", id, err, sizeof(err)), FL_OK);
    assert_int_equal(id[0], 0x4b);
    assert_int_equal(id[15], 0x36);
    assert_int_equal(
        fl_api_parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736", id, err, sizeof(err)), FL_OK);
    assert_int_equal(id[0], 0x4b);
    assert_int_equal(fl_api_parse_trace_id("4bf92f3577b34da6a3ce929d0e0e473", id, err, sizeof(err)),
                     FL_ERR_INVALID);
    assert_contains(err, "32 hex characters, got 31");
    assert_int_equal(
        fl_api_parse_trace_id("4bf92f3577b34da6a3ce929d0e0e47360", id, err, sizeof(err)),
        FL_ERR_INVALID);
    assert_int_equal(
        fl_api_parse_trace_id("4bf92f3577b34da6a3ce929d0e0e473g", id, err, sizeof(err)),
        FL_ERR_INVALID);
    assert_contains(err, "position 32");
    assert_int_equal(
        fl_api_parse_trace_id("00000000000000000000000000000000", id, err, sizeof(err)),
        FL_ERR_INVALID);
    assert_contains(err, "all zeros");
    assert_int_equal(fl_api_parse_trace_id("", id, err, sizeof(err)), FL_ERR_INVALID);
    assert_int_equal(fl_api_parse_trace_id(NULL, id, err, sizeof(err)), FL_ERR_INVALID);
}

/* ---------------------------------------------------------------- JSON shapes */

/* Quotes, backslashes, a newline, a control byte, a NUL and invalid UTF-8 (a lone
 * continuation byte, 0xff, an overlong '/', a truncated sequence at the end). */
static const char hostile[] = "q\"b\\n\nc\x01z\0y\x80\xff\xc0\xaf\xe2\x82";
#define HOSTILE_LEN (sizeof(hostile) - 1)
/* The same without the NUL, for object keys (jansson cannot hold a NUL in a key). */
static const char hostile_key[] = "q\"b\\n\nc\x01zy\x80\xff\xc0\xaf\xe2\x82";
#define HOSTILE_KEY_LEN (sizeof(hostile_key) - 1)

static void build_span(fl_arena_t *a, fl_span_t *s, fl_resource_t *res, fl_scope_t *scope,
                       uint64_t base, int root)
{
    fl_kv_t *kv = fl_arena_calloc(a, 4, sizeof(fl_kv_t));
    fl_value_t *arr = fl_arena_calloc(a, 2, sizeof(fl_value_t));
    fl_event_t *ev = fl_arena_calloc(a, 1, sizeof(fl_event_t));
    fl_link_t *ln = fl_arena_calloc(a, 1, sizeof(fl_link_t));
    fl_kv_t *rkv = fl_arena_calloc(a, 1, sizeof(fl_kv_t));

    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 16; i++)
        s->trace_id[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 8; i++)
        s->span_id[i] = (uint8_t)(root ? 0x10 + i : 0x20 + i);
    if (!root)
        memcpy(s->parent_span_id, "\x10\x11\x12\x13\x14\x15\x16\x17", 8);
    s->name = (fl_str_t){hostile, HOSTILE_LEN};
    s->kind = root ? FL_KIND_SERVER : FL_KIND_CLIENT;
    s->start_ns = base;
    s->end_ns = base + 1500000;
    s->status_code = root ? FL_STATUS_ERROR : FL_STATUS_OK;
    s->status_message = (fl_str_t){hostile, HOSTILE_LEN};
    s->trace_state = FL_STR_LIT("k=v");
    s->flags = 1;
    kv[0].key = (fl_str_t){hostile_key, HOSTILE_KEY_LEN};
    kv[0].value.type = FL_VAL_STRING;
    kv[0].value.u.str = (fl_str_t){hostile, HOSTILE_LEN};
    kv[1].key = FL_STR_LIT("http.status_code");
    kv[1].value.type = FL_VAL_INT;
    kv[1].value.u.i = 500;
    kv[2].key = FL_STR_LIT("list");
    kv[2].value.type = FL_VAL_ARRAY;
    arr[0].type = FL_VAL_BOOL;
    arr[0].u.b = 1;
    arr[1].type = FL_VAL_DOUBLE;
    arr[1].u.d = 0.25;
    kv[2].value.u.arr.items = arr;
    kv[2].value.u.arr.n = 2;
    kv[3].key = FL_STR_LIT("big");
    kv[3].value.type = FL_VAL_INT;
    kv[3].value.u.i = INT64_MIN;
    s->attrs.items = kv;
    s->attrs.n = 4;
    ev->name = FL_STR_LIT("exception");
    ev->time_ns = base + 1000;
    ev->attrs.items = kv;
    ev->attrs.n = 1;
    s->events = ev;
    s->n_events = 1;
    memset(ln->trace_id, 0x77, 16);
    memset(ln->span_id, 0x66, 8);
    ln->trace_state = FL_STR_LIT("");
    s->links = ln;
    s->n_links = 1;
    rkv->key = FL_STR_LIT("service.name");
    rkv->value.type = FL_VAL_STRING;
    rkv->value.u.str = (fl_str_t){hostile, HOSTILE_LEN};
    memset(res, 0, sizeof(*res));
    res->attrs.items = rkv;
    res->attrs.n = 1;
    res->service_name = (fl_str_t){hostile, HOSTILE_LEN};
    memset(scope, 0, sizeof(*scope));
    scope->name = FL_STR_LIT("lib\"x");
    scope->version = FL_STR_LIT("1.0");
    s->resource = res;
    s->scope = scope;
}

/* The decoded form of `hostile`: valid bytes kept, the NUL as U+0000, each invalid
 * sequence as one or more U+FFFD. Checks the valid prefix and that nothing invalid leaks. */
static void assert_decoded_as(const char *s, size_t len, const char *prefix, size_t plen)
{
    assert_true(len > plen);
    assert_memory_equal(s, prefix, plen);
    for (size_t i = plen; i < len; i += 3) /* U+FFFD only */
        assert_memory_equal(s + i, "\xef\xbf\xbd", len - i < 3 ? len - i : 3);
    assert_int_equal((len - plen) % 3, 0);
}

static void assert_hostile_decoded(const char *s, size_t len)
{
    static const char prefix[] = "q\"b\\n\nc\x01z\0y";
    assert_decoded_as(s, len, prefix, sizeof(prefix) - 1);
}

static void assert_hostile_key_decoded(const char *s)
{
    static const char prefix[] = "q\"b\\n\nc\x01zy";
    assert_decoded_as(s, strlen(s), prefix, sizeof(prefix) - 1);
}

static void test_api_span_json_hostile(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(0);
    fl_span_t s;
    fl_resource_t res;
    fl_scope_t scope;
    fl_buf_t b;
    fl_jw_t w;
    json_error_t jerr;
    json_t *j, *attrs, *ev, *ln;
    const char *key;
    json_t *val;
    int found = 0;

    build_span(a, &s, &res, &scope, 1796004978739000123ull, 0);
    fl_buf_init(&b, 0);
    fl_jw_init(&w, &b);
    fl_api_write_span(&w, &s);
    assert_int_equal(w.err, FL_OK);
    j = json_loadb((const char *)b.data, b.len, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("invalid JSON (%s): %s", jerr.text, (const char *)b.data);
    assert_string_equal(json_string_value(json_object_get(j, "trace_id")),
                        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    assert_string_equal(json_string_value(json_object_get(j, "span_id")), "2021222324252627");
    assert_string_equal(json_string_value(json_object_get(j, "parent_span_id")),
                        "1011121314151617");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "client");
    assert_string_equal(json_string_value(json_object_get(j, "status_code")), "ok");
    /* 64-bit times are exact JSON integers, with RFC 3339 strings beside them. */
    assert_true(json_integer_value(json_object_get(j, "start_time_unix_nano")) ==
                1796004978739000123ll);
    assert_true(json_integer_value(json_object_get(j, "end_time_unix_nano")) ==
                1796004978740500123ll);
    assert_true(json_integer_value(json_object_get(j, "duration_ns")) == 1500000);
    assert_string_equal(json_string_value(json_object_get(j, "start_time")),
                        "2026-11-30T02:16:18.739000123Z");
    assert_hostile_decoded(json_string_value(json_object_get(j, "name")),
                           json_string_length(json_object_get(j, "name")));
    assert_hostile_decoded(json_string_value(json_object_get(j, "service")),
                           json_string_length(json_object_get(j, "service")));
    assert_hostile_decoded(json_string_value(json_object_get(j, "status_message")),
                           json_string_length(json_object_get(j, "status_message")));
    attrs = json_object_get(j, "attributes");
    assert_true(json_is_object(attrs));
    json_object_foreach(attrs, key, val)
    {
        if (key[0] == 'q') {
            found = 1;
            assert_hostile_key_decoded(key);
            assert_hostile_decoded(json_string_value(val), json_string_length(val));
        }
    }
    assert_true(found);
    assert_int_equal(json_integer_value(json_object_get(attrs, "http.status_code")), 500);
    assert_true(json_integer_value(json_object_get(attrs, "big")) == INT64_MIN);
    assert_true(json_is_true(json_array_get(json_object_get(attrs, "list"), 0)));
    ev = json_array_get(json_object_get(j, "events"), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "name")), "exception");
    assert_true(json_integer_value(json_object_get(ev, "time_unix_nano")) == 1796004978739001123ll);
    assert_true(json_is_string(json_object_get(ev, "time")));
    ln = json_array_get(json_object_get(j, "links"), 0);
    assert_string_equal(json_string_value(json_object_get(ln, "span_id")), "6666666666666666");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "scope"), "name")),
                        "lib\"x");
    assert_true(json_is_object(json_object_get(json_object_get(j, "resource"), "attributes")));
    json_decref(j);

    /* A root span: parent "" and the OTLP enum names. */
    build_span(a, &s, &res, &scope, 5, 1);
    s.kind = 42;
    s.status_code = 9;
    fl_buf_reset(&b);
    fl_jw_init(&w, &b);
    fl_api_write_span(&w, &s);
    j = json_loadb((const char *)b.data, b.len, JSON_ALLOW_NUL, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "parent_span_id")), "");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "unknown");
    assert_string_equal(json_string_value(json_object_get(j, "status_code")), "unset");
    json_decref(j);
    fl_buf_dispose(&b);
    fl_arena_free(a);
}

static void test_api_kind_status_names(void **state)
{
    (void)state;
    assert_string_equal(fl_api_kind_name(FL_KIND_UNSPECIFIED), "unspecified");
    assert_string_equal(fl_api_kind_name(FL_KIND_INTERNAL), "internal");
    assert_string_equal(fl_api_kind_name(FL_KIND_SERVER), "server");
    assert_string_equal(fl_api_kind_name(FL_KIND_CLIENT), "client");
    assert_string_equal(fl_api_kind_name(FL_KIND_PRODUCER), "producer");
    assert_string_equal(fl_api_kind_name(FL_KIND_CONSUMER), "consumer");
    assert_string_equal(fl_api_kind_name(-1), "unknown");
    assert_string_equal(fl_api_status_name(FL_STATUS_UNSET), "unset");
    assert_string_equal(fl_api_status_name(FL_STATUS_OK), "ok");
    assert_string_equal(fl_api_status_name(FL_STATUS_ERROR), "error");
}

static void test_api_summary_json(void **state)
{
    (void)state;
    const char *svcs[] = {"a\"b", "c\n"};
    fl_trace_summary_t t = {.root_service = "front\x01",
                            .root_name = "GET /",
                            .start_ns = 1000,
                            .end_ns = 2501000,
                            .n_spans = 3,
                            .n_errors = 1,
                            .services = svcs,
                            .n_services = 2};
    fl_buf_t b;
    fl_jw_t w;
    json_t *j;

    memset(t.trace_id, 0xab, 16);
    fl_buf_init(&b, 0);
    fl_jw_init(&w, &b);
    fl_api_write_trace_summary(&w, &t);
    j = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "root_service")), "front\x01");
    assert_true(json_real_value(json_object_get(j, "duration_ms")) == 2.5 ||
                json_integer_value(json_object_get(j, "duration_ms")) == 2);
    assert_int_equal(json_integer_value(json_object_get(j, "span_count")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "error_count")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "start_time_unix_nano")), 1000);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "services"), 1)),
                        "c\n");
    json_decref(j);
    fl_buf_dispose(&b);
}

/* ---------------------------------------------------------------- routing */

static void noop_route(fl_api_call_t *call, void *ud)
{
    fl_jw_t *w = fl_api_call_json(call);
    const char *id = fl_api_call_param(call, "id");

    fl_jw_obj_begin(w);
    fl_jw_key(w, "route");
    fl_jw_str(w, ud);
    fl_jw_key(w, "id");
    fl_jw_str(w, id);
    fl_jw_key(w, "missing");
    fl_jw_str(w, fl_api_call_param(call, "nope"));
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

static void silent_route(fl_api_call_t *call, void *ud)
{
    (void)call;
    (void)ud;
}

static void test_api_routes(void **state)
{
    (void)state;
    fl_api_opts_t o = {0};
    fl_api_t *api = fl_api_new(&o);
    fl_api_match_t m;

    assert_non_null(api);
    assert_int_equal(fl_api_lookup(api, "GET", "/api/traces", &m), 200);
    assert_string_equal(m.pattern, "/api/traces");
    assert_int_equal(fl_api_lookup(api, "GET", "/api/traces/abc", &m), 200);
    assert_string_equal(m.pattern, "/api/traces/{trace_id}");
    assert_int_equal(fl_api_lookup(api, "GET", "/health", &m), 200);
    assert_int_equal(fl_api_lookup(api, "GET", "/api/services", &m), 200);
    assert_int_equal(fl_api_lookup(api, "POST", "/api/traces", &m), 405);
    assert_string_equal(m.allow, "GET");
    assert_int_equal(fl_api_lookup(api, "DELETE", "/api/traces/abc", &m), 405);
    assert_int_equal(fl_api_lookup(api, "GET", "/api/traces/", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "/api/traces/a/b", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "/api", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "/", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "api/traces", &m), 404);
    assert_int_equal(fl_api_lookup(api, "GET", "/API/traces", &m), 404);

    /* Later modules register their routes the same way. */
    assert_int_equal(fl_api_route(api, "GET", "/x/incidents/{id}", noop_route, "by-id", 0), FL_OK);
    assert_int_equal(fl_api_route(api, "GET", "/x/incidents/summary", noop_route, "summary", 0),
                     FL_OK);
    assert_int_equal(
        fl_api_route(api, "POST", "/x/incidents/{id}/resolve", noop_route, "resolve", 0), FL_OK);
    assert_int_equal(fl_api_route(api, "PUT", "/x/incidents/{id}", noop_route, "put", 0), FL_OK);
    assert_int_equal(fl_api_route(api, "GET", "/x/incidents/{id}", noop_route, "x", 0),
                     FL_ERR_CONFLICT);
    assert_int_equal(fl_api_route(api, "GET", "aiops", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a//b", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a/", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a/{x", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a/{}", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a/b{x}", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "get", "/a", noop_route, NULL, 0), FL_ERR_INVALID);
    assert_int_equal(fl_api_route(api, "GET", "/a", NULL, NULL, 0), FL_ERR_INVALID);

    assert_int_equal(fl_api_lookup(api, "GET", "/x/incidents/summary", &m), 200);
    assert_string_equal(m.pattern, "/x/incidents/summary"); /* the literal wins */
    assert_int_equal(fl_api_lookup(api, "GET", "/x/incidents/INC-1", &m), 200);
    assert_string_equal(m.pattern, "/x/incidents/{id}");
    assert_int_equal(fl_api_lookup(api, "PUT", "/x/incidents/summary", &m), 200);
    assert_string_equal(m.pattern, "/x/incidents/{id}");
    assert_int_equal(fl_api_lookup(api, "DELETE", "/x/incidents/INC-1", &m), 405);
    assert_string_equal(m.allow, "GET, PUT");
    assert_int_equal(fl_api_lookup(api, "GET", "/x/incidents/INC-1/resolve", &m), 405);
    assert_string_equal(m.allow, "POST");
    fl_api_free(api);
}

/* ---------------------------------------------------------------- handlers, no socket */

static void test_api_requests_without_store(void **state)
{
    (void)state;
    fl_api_opts_t o = {.threads = 2, .version = "9.9.9"};
    fl_api_t *api = fl_api_new(&o);
    reply_t r;
    json_t *j;

    assert_non_null(api);
    assert_int_equal(fl_api_route(api, "GET", "/test/metrics/{id}", noop_route, "metrics", 0),
                     FL_OK);
    assert_int_equal(fl_api_route(api, "GET", "/silent", silent_route, NULL, 0), FL_OK);

    j = request(api, "GET", "/health", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "starting");
    assert_string_equal(json_string_value(json_object_get(j, "version")), "9.9.9");
    json_decref(j);
    reply_dispose(&r);
    fl_api_set_ready(api, 1);
    j = request(api, "GET", "/health?probe=1", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    reply_dispose(&r);

    j = request(api, "POST", "/health", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET");
    assert_error(j, 405, "POST");
    json_decref(j);
    reply_dispose(&r);

    j = request(api, "GET", "/nope/\"x\x01", &r);
    assert_int_equal(r.status, 404);
    assert_error(j, 404, "no such endpoint");
    json_decref(j);
    reply_dispose(&r);

    j = request(api, "GET", "/api/traces/xyz", &r);
    assert_int_equal(r.status, 400);
    assert_error(j, 400, "32 hex characters");
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/api/traces/00000000000000000000000000000000", &r);
    assert_int_equal(r.status, 400);
    assert_error(j, 400, "all zeros");
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736?x=1", &r);
    assert_int_equal(r.status, 400);
    assert_error(j, 400, "'x'");
    json_decref(j);
    reply_dispose(&r);

    j = request(api, "GET", "/api/traces?limit=0", &r);
    assert_int_equal(r.status, 400);
    assert_error(j, 400, "limit:");
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/api/traces?bogus=%zz", &r);
    assert_int_equal(r.status, 400);
    assert_error(j, 400, "percent-encoding");
    json_decref(j);
    reply_dispose(&r);

    /* Valid requests that need the store: 503 when there is none. */
    j = request(api, "GET", "/api/traces?service=x", &r);
    assert_int_equal(r.status, 503);
    assert_error(j, 503, "store");
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/api/services", &r);
    assert_int_equal(r.status, 503);
    json_decref(j);
    reply_dispose(&r);

    /* Path parameters are percent-decoded; a handler that forgets to reply yields 500. */
    j = request(api, "GET", "/test/metrics/check%2Fout%20%22x%22", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "route")), "metrics");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "check/out \"x\"");
    assert_true(json_is_null(json_object_get(j, "missing")));
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/test/metrics/a%00b", &r);
    assert_int_equal(r.status, 400);
    json_decref(j);
    reply_dispose(&r);
    j = request(api, "GET", "/silent", &r);
    assert_int_equal(r.status, 500);
    assert_error(j, 500, "no response");
    json_decref(j);
    reply_dispose(&r);

    j = request(api, "GET", "/aiops/status", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_integer_value(json_object_get(json_object_get(j, "api"), "requests")) >= 10);
    json_decref(j);
    reply_dispose(&r);

    fl_api_set_ready(api, 0);
    j = request(api, "GET", "/health", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.retry_after, "1");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "stopping");
    json_decref(j);
    reply_dispose(&r);
    fl_api_free(api);
}

/* A route writing more than max_response: the API answers 500 with valid JSON. */
static void big_route(fl_api_call_t *call, void *ud)
{
    fl_jw_t *w = fl_api_call_json(call);

    (void)ud;
    fl_jw_arr_begin(w);
    for (int i = 0; i < 10000; i++)
        fl_jw_str(w, "0123456789abcdef");
    fl_jw_arr_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

static void test_api_response_cap(void **state)
{
    (void)state;
    fl_api_opts_t o = {.max_response = 4096};
    fl_api_t *api = fl_api_new(&o);
    reply_t r;
    json_t *j;

    assert_int_equal(fl_api_route(api, "GET", "/big", big_route, NULL, 0), FL_OK);
    j = request(api, "GET", "/big", &r);
    assert_int_equal(r.status, 500);
    assert_error(j, 500, "4096-byte limit");
    json_decref(j);
    reply_dispose(&r);
    fl_api_free(api);
}

/* ---------------------------------------------------------------- real store + net */

typedef struct commit_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    size_t stored;
} commit_wait_t;

static void on_commit(void *ctx, int status, size_t stored, size_t duplicates)
{
    commit_wait_t *c = ctx;
    (void)duplicates;
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    c->status = status;
    c->stored = stored;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static json_t *http_get(fl_http_client_t *c, const char *path, int *status, char *allow,
                        size_t allowlen)
{
    fl_http_response_t resp;
    json_error_t jerr;
    json_t *j;

    assert_int_equal(fl_http_client_request(c, "GET", path, NULL, 0, NULL, 0, &resp), FL_OK);
    *status = resp.status;
    if (allow)
        fl_http_response_header(&resp, "allow", allow, allowlen);
    j = json_loadb((const char *)resp.body.data, resp.body.len, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("GET %s: invalid JSON (%s): %.*s", path, jerr.text, (int)resp.body.len,
                 (const char *)resp.body.data);
    fl_http_response_dispose(&resp);
    return j;
}

static void test_api_store_and_net(void **state)
{
    (void)state;
    char dir[] = "/tmp/fl_test_api_XXXXXX";
    char db[256], err[256], allow[64] = "", path[256];
    fl_store_opts_t so = {0};
    fl_store_t *store = NULL;
    fl_span_batch_t *batch;
    fl_resource_t *res;
    fl_scope_t *scope;
    commit_wait_t cw = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    fl_api_opts_t ao = {0};
    fl_api_t *api;
    fl_net_t *net;
    fl_net_listen_opts_t lo = {0};
    fl_http_client_opts_t co = {0};
    fl_http_client_t *client;
    json_t *j, *spans, *traces;
    int status;

    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/faultline.db", dir);
    so.path = db;
    assert_int_equal(fl_store_open(&so, &store, err, sizeof(err)), FL_OK);

    batch = fl_span_batch_new(0);
    assert_non_null(batch);
    batch->spans = fl_arena_calloc(batch->arena, 2, sizeof(fl_span_t));
    res = fl_arena_calloc(batch->arena, 1, sizeof(*res));
    scope = fl_arena_calloc(batch->arena, 1, sizeof(*scope));
    build_span(batch->arena, &batch->spans[0], res, scope, 1796004978739000000ull, 1);
    build_span(batch->arena, &batch->spans[1], res, scope, 1796004978739500000ull, 0);
    /* A plain service name so the search below can filter on it. */
    res->service_name = FL_STR_LIT("checkout");
    res->attrs.items[0].value.u.str = FL_STR_LIT("checkout");
    batch->spans[0].name = FL_STR_LIT("POST /checkout");
    batch->n_spans = 2;
    batch->received_ns = fl_time_now_ns();
    assert_int_equal(fl_store_submit_take(store, batch, on_commit, &cw), FL_OK);
    pthread_mutex_lock(&cw.mu);
    while (!cw.done)
        pthread_cond_wait(&cw.cv, &cw.mu);
    pthread_mutex_unlock(&cw.mu);
    assert_int_equal(cw.status, FL_OK);
    assert_int_equal(cw.stored, 2);

    ao.store = store;
    api = fl_api_new(&ao);
    assert_non_null(api);
    fl_api_set_ready(api, 1);
    net = fl_net_new("api-test");
    assert_non_null(net);
    lo.name = "api";
    lo.host = "127.0.0.1";
    lo.port = 0;
    lo.handler = fl_api_handler(api);
    assert_int_equal(fl_net_listen(net, &lo, err, sizeof(err)), FL_OK);
    assert_int_equal(fl_net_start(net), FL_OK);
    co.host = "127.0.0.1";
    co.port = fl_net_bound_port(net, 0);
    client = fl_http_client_new(&co);
    assert_non_null(client);

    j = http_get(client, "/health", &status, NULL, 0);
    assert_int_equal(status, 200);
    json_decref(j);

    j = http_get(client, "/api/traces/A0A1A2A3A4A5A6A7A8A9AAABACADAEAF", &status, NULL, 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "trace_id")),
                        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    spans = json_object_get(j, "spans");
    assert_int_equal(json_array_size(spans), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(spans, 0), "name")),
                        "POST /checkout");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(spans, 0), "parent_span_id")), "");
    assert_string_equal(json_string_value(json_object_get(json_array_get(spans, 0), "kind")),
                        "server");
    assert_true(json_integer_value(json_object_get(
                    json_array_get(spans, 0), "start_time_unix_nano")) == 1796004978739000000ll);
    assert_hostile_decoded(json_string_value(json_object_get(json_array_get(spans, 1), "name")),
                           json_string_length(json_object_get(json_array_get(spans, 1), "name")));
    assert_true(json_is_false(json_object_get(j, "truncated")));
    json_decref(j);

    j = http_get(client, "/api/traces/a0a1a2a3a4a5a6a7a8a9aaabacadae00", &status, NULL, 0);
    assert_int_equal(status, 404);
    assert_error(j, 404, "not found");
    json_decref(j);

    j = http_get(client, "/api/traces/nothex", &status, NULL, 0);
    assert_int_equal(status, 400);
    json_decref(j);

    snprintf(path, sizeof(path), "/api/traces?service=checkout&start=%s&error=true&limit=5",
             "2026-11-30T00:00:00Z");
    j = http_get(client, path, &status, NULL, 0);
    assert_int_equal(status, 200);
    traces = json_object_get(j, "traces");
    assert_int_equal(json_array_size(traces), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(traces, 0), "trace_id")),
                        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(traces, 0), "span_count")),
                     2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(traces, 0), "root_name")),
                        "POST /checkout");
    json_decref(j);

    j = http_get(client, "/api/traces?service=nobody", &status, NULL, 0);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(j, "traces")), 0);
    json_decref(j);

    j = http_get(client, "/api/traces?limit=5000", &status, NULL, 0);
    assert_int_equal(status, 400);
    assert_error(j, 400, "limit");
    json_decref(j);

    j = http_get(client, "/api/services", &status, NULL, 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "services"), 0), "name")),
                        "checkout");
    json_decref(j);

    j = http_get(client, "/no/such/thing", &status, NULL, 0);
    assert_int_equal(status, 404);
    json_decref(j);
    {
        fl_http_response_t resp;
        assert_int_equal(
            fl_http_client_request(client, "DELETE", "/api/services", NULL, 0, NULL, 0, &resp),
            FL_OK);
        assert_int_equal(resp.status, 405);
        assert_non_null(fl_http_response_header(&resp, "allow", allow, sizeof(allow)));
        assert_string_equal(allow, "GET");
        fl_http_response_dispose(&resp);
    }

    fl_http_client_free(client);
    fl_net_shutdown(net, 5000);
    fl_net_free(net);
    fl_api_free(api);
    fl_store_close(store);
    {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_query_parse),
        cmocka_unit_test(test_api_query_parse_errors),
        cmocka_unit_test(test_api_query_check_unknown),
        cmocka_unit_test(test_api_query_typed),
        cmocka_unit_test(test_api_search_params),
        cmocka_unit_test(test_api_trace_id),
        cmocka_unit_test(test_api_span_json_hostile),
        cmocka_unit_test(test_api_kind_status_names),
        cmocka_unit_test(test_api_summary_json),
        cmocka_unit_test(test_api_routes),
        cmocka_unit_test(test_api_requests_without_store),
        cmocka_unit_test(test_api_response_cap),
        cmocka_unit_test(test_api_store_and_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
