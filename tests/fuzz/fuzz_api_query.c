/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: API request targets. The input is "[METHOD ]path?query" (cut at the first
 * NUL). It goes through fl_api_request on an API without a store (routing, placeholders,
 * query parsing, the built-in routes' validation, error replies) and, separately, through
 * the query helpers (fl_api_query_parse, the typed readers, fl_api_parse_trace_search,
 * fl_api_parse_trace_id). Invariants: exactly one reply with a valid status, JSON bodies
 * parse, parsed parameters are unique, NUL-free and bounded in number. */
#include "fuzz_util.h"

#include <faultline/api.h>

#include <jansson.h>
#include <pthread.h>
#include <strings.h>

typedef struct reply_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int replies;
    int status;
} reply_wait_t;

static void on_reply(void *ctx, int status, const fl_net_header_t *headers, size_t n_headers,
                     const void *body, size_t len)
{
    reply_wait_t *w = ctx;
    FUZZ_CHECK(status >= 100 && status <= 599);
    int is_json = 0;
    for (size_t i = 0; i < n_headers; i++) {
        FUZZ_CHECK(headers[i].name && headers[i].value);
        if (!strcasecmp(headers[i].name, "Content-Type") &&
            !strncmp(headers[i].value, "application/json", 16))
            is_json = 1;
    }
    if (is_json) {
        json_error_t e;
        json_t *j = json_loadb(body, len, 0, &e);
        if (!j)
            fprintf(stderr, "invalid JSON reply (%d): %.*s\n", status, (int)len,
                    (const char *)body);
        FUZZ_CHECK(j != NULL);
        json_decref(j);
    }
    pthread_mutex_lock(&w->mu);
    w->replies++;
    w->status = status;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void route_echo(fl_api_call_t *call, void *ud)
{
    const char *svc = fl_api_call_param(call, "service");
    const char *op = fl_api_call_param(call, "op");
    FUZZ_CHECK(svc != NULL && svc[0] != 0);
    const fl_api_query_t *q = fl_api_call_query(call);
    FUZZ_CHECK(q != NULL);
    fl_jw_t *w = fl_api_call_json(call);
    fl_jw_obj_begin(w);
    fl_jw_key(w, "service");
    fl_jw_str(w, svc);
    fl_jw_key(w, "op");
    fl_jw_str(w, op);
    fl_jw_key(w, "query");
    fl_jw_obj_begin(w);
    for (size_t i = 0; i < q->n; i++) {
        fl_jw_key(w, q->items[i].name);
        fl_jw_str(w, q->items[i].value);
    }
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
    fl_api_reply(call, 200, NULL, 0);
}

static fl_api_t *api_get(void)
{
    static fl_api_t *api;
    if (api)
        return api;
    fuzz_quiet();
    fl_api_opts_t o = {.store = NULL, .threads = 1, .max_response = 1u << 20};
    api = fl_api_new(&o);
    FUZZ_CHECK(api != NULL);
    fl_api_set_ready(api, 1);
    FUZZ_CHECK(fl_api_route(api, "GET", "/fuzz/{service}", route_echo, NULL, FL_API_ROUTE_INLINE) ==
               FL_OK);
    FUZZ_CHECK(fl_api_route(api, "GET", "/fuzz/{service}/ops/{op}", route_echo, NULL,
                            FL_API_ROUTE_INLINE) == FL_OK);
    return api;
}

static void query_helpers(const char *qs)
{
    fl_arena_t *a = fl_arena_new(4096);
    FUZZ_CHECK(a != NULL || fuzz_oom());
    if (!a)
        return;
    fl_api_query_t q;
    char err[512] = "";
    int rc = fl_api_query_parse(qs, a, &q, err, sizeof(err));
    FUZZ_CHECK(rc == FL_OK || rc == FL_ERR_INVALID || rc == FL_ERR_LIMIT ||
               (rc == FL_ERR_NOMEM && fuzz_oom()));
    if (rc != FL_OK) {
        FUZZ_CHECK(err[0] != 0);
        fl_arena_free(a);
        return;
    }
    FUZZ_CHECK(q.n <= 64);
    for (size_t i = 0; i < q.n; i++) {
        FUZZ_CHECK(q.items[i].name && q.items[i].name[0] && q.items[i].value);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(q.items[i].name, q.items[j].name) != 0);
        FUZZ_CHECK(fl_api_query_get(&q, q.items[i].name) == q.items[i].value);
    }
    static const char *const allowed[] = {"service",         "operation", "start", "end",
                                          "min_duration_ms", "errors",    "limit"};
    (void)fl_api_query_check(&q, allowed, 7, err, sizeof(err));
    uint64_t u;
    int present, b;
    (void)fl_api_query_time(&q, "start", &u, &present, err, sizeof(err));
    if (fl_api_query_uint(&q, "limit", 1, 10000, &u, &present, err, sizeof(err)) == FL_OK &&
        present)
        FUZZ_CHECK(u >= 1 && u <= 10000);
    (void)fl_api_query_ms(&q, "min_duration_ms", &u, &present, err, sizeof(err));
    if (fl_api_query_bool(&q, "errors", &b, &present, err, sizeof(err)) == FL_OK && present)
        FUZZ_CHECK(b == 0 || b == 1);
    fl_trace_query_t tq;
    if (fl_api_parse_trace_search(&q, &tq, err, sizeof(err)) == FL_OK)
        FUZZ_CHECK(tq.limit <= 10000);
    else
        FUZZ_CHECK(err[0] != 0);
    const char *id = fl_api_query_get(&q, "trace_id");
    if (id) {
        uint8_t tid[16];
        if (fl_api_parse_trace_id(id, tid, err, sizeof(err)) == FL_OK)
            FUZZ_CHECK(strlen(id) == 32 && !fl_is_zero(tid, 16));
    }
    fl_arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fl_api_t *api = api_get();
    fuzz_alloc_begin(data, size); /* exactly one reply even when allocations fail */
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = 0;

    const char *method = "GET", *target = s;
    static const char *const methods[] = {"POST ", "DELETE ", "PUT ", "HEAD ", "GET "};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        size_t n = strlen(methods[i]);
        if (!strncmp(s, methods[i], n)) {
            s[n - 1] = 0;
            method = s;
            target = s + n;
            break;
        }
    }

    reply_wait_t w = {.replies = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    fl_api_request(api, method, target, NULL, 0, on_reply, &w);
    pthread_mutex_lock(&w.mu);
    while (w.replies == 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    FUZZ_CHECK(w.replies == 1);

    fl_api_match_t m;
    const char *q = strchr(target, '?');
    char *path = q ? strndup(target, (size_t)(q - target)) : strdup(target);
    FUZZ_CHECK(path != NULL);
    int st = fl_api_lookup(api, method, path, &m);
    FUZZ_CHECK(st == 200 || st == 404 || st == 405);
    if (st == 405)
        FUZZ_CHECK(m.allow[0] != 0);
    free(path);

    if (q) {
        char *qs = strdup(q + 1);
        char *hash = strchr(qs, '#');
        if (hash)
            *hash = 0;
        query_helpers(qs);
        free(qs);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    free(s);
    fuzz_alloc_end();
    return 0;
}
