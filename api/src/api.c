/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: the API object, the route table, request dispatch onto the worker pool, and
 * the adapter that serves it through a net listener. */
#include "api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_THREADS 2
#define DEFAULT_QUEUE 1024
#define DEFAULT_MAX_RESPONSE ((size_t)32 << 20)
#define DEFAULT_MAX_CALL_MEM ((size_t)512 << 20)

/* ---------------------------------------------------------------- direct replies */

static const fl_net_header_t json_headers[] = {
    {"Content-Type", "application/json; charset=utf-8"},
    {"Cache-Control", "no-store"},
};
#define N_JSON_HEADERS (sizeof(json_headers) / sizeof(json_headers[0]))
#define MAX_EXTRA_HEADERS 8

static void count_status(fl_api_t *api, int status)
{
    if (status >= 500)
        atomic_fetch_add(&api->n_server_errors, 1);
    else if (status >= 400)
        atomic_fetch_add(&api->n_client_errors, 1);
}

static void send_json(fl_api_t *api, fl_api_reply_fn reply, void *ctx, int status,
                      const fl_net_header_t *extra, size_t n_extra, const void *body, size_t len)
{
    fl_net_header_t hdrs[N_JSON_HEADERS + MAX_EXTRA_HEADERS];
    size_t n = 0;

    for (size_t i = 0; i < N_JSON_HEADERS; i++)
        hdrs[n++] = json_headers[i];
    for (size_t i = 0; i < n_extra && i < MAX_EXTRA_HEADERS; i++)
        hdrs[n++] = extra[i];
    count_status(api, status);
    reply(ctx, status, hdrs, n, body, len);
}

/* {"error": msg, "status": status} into b. FL_OK, or FL_ERR_NOMEM when the buffer could not
 * grow (then b holds a cut-off document that must not be sent). */
static int write_error(fl_buf_t *b, int status, const char *msg)
{
    fl_jw_t w;

    fl_jw_init(&w, b);
    fl_jw_obj_begin(&w);
    fl_jw_key(&w, "error");
    fl_jw_str(&w, msg);
    fl_jw_key(&w, "status");
    fl_jw_int(&w, status);
    fl_jw_obj_end(&w);
    return w.err == FL_OK && b->len ? FL_OK : FL_ERR_NOMEM;
}

/* The answer when not even an error body can be written: a static one. */
static void send_oom(fl_api_t *api, fl_api_reply_fn reply, void *ctx)
{
    static const char oom[] = "{\"error\":\"out of memory\",\"status\":500}";
    send_json(api, reply, ctx, 500, NULL, 0, oom, sizeof(oom) - 1);
}

/* An error answered without a call object (routing failures, OOM, overload). */
static void send_error_direct(fl_api_t *api, fl_api_reply_fn reply, void *ctx, int status,
                              const fl_net_header_t *extra, size_t n_extra, const char *msg)
{
    fl_buf_t b;

    fl_buf_init(&b, 0);
    if (write_error(&b, status, msg) != FL_OK)
        send_oom(api, reply, ctx);
    else
        send_json(api, reply, ctx, status, extra, n_extra, b.data, b.len);
    fl_buf_dispose(&b);
}

static void send_route_error(fl_api_t *api, fl_api_reply_fn reply, void *ctx, const char *method,
                             const char *path, const fl_api_match_t *m)
{
    char msg[512];

    if (m->status == 405) {
        fl_net_header_t allow = {"Allow", m->allow};
        snprintf(msg, sizeof(msg), "method %.16s not allowed on %.256s (allowed: %s)", method, path,
                 m->allow);
        send_error_direct(api, reply, ctx, 405, &allow, 1, msg);
    } else {
        snprintf(msg, sizeof(msg), "no such endpoint: %.256s (see docs/api.md)", path);
        send_error_direct(api, reply, ctx, 404, NULL, 0, msg);
    }
}

/* ---------------------------------------------------------------- route table */

static int valid_method(const char *m)
{
    if (!m || !*m || strlen(m) > 16)
        return 0;
    for (const char *p = m; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return 0;
    return 1;
}

static int is_placeholder(const char *seg)
{
    size_t n = strlen(seg);
    return n >= 3 && seg[0] == '{' && seg[n - 1] == '}';
}

static void route_dispose(fl_api_route_ent_t *r)
{
    for (size_t i = 0; i < r->n_segs; i++)
        free(r->segs[i]);
    free(r->segs);
    free(r->method);
    free(r->pattern);
}

/* Split a pattern into segments; validates literals and placeholders. */
static int route_compile(fl_api_route_ent_t *r, const char *pattern)
{
    const char *p = pattern;
    size_t n_params = 0;

    if (!pattern || pattern[0] != '/')
        return FL_ERR_INVALID;
    r->segs = calloc(FL_API_MAX_SEGS, sizeof(char *));
    if (!r->segs)
        return FL_ERR_NOMEM;
    p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *seg;

        if (len == 0 || r->n_segs == FL_API_MAX_SEGS)
            return FL_ERR_INVALID;
        seg = strndup(p, len);
        if (!seg)
            return FL_ERR_NOMEM;
        r->segs[r->n_segs++] = seg;
        if (is_placeholder(seg)) {
            if (strpbrk(seg + 1, "{}/") != seg + len - 1 || ++n_params > FL_API_MAX_PARAMS)
                return FL_ERR_INVALID;
        } else {
            if (strpbrk(seg, "{}?#"))
                return FL_ERR_INVALID;
            if (r->n_segs <= 32)
                r->score |= 1u << (32 - r->n_segs);
        }
        p += len;
        if (*p == '/') {
            p++;
            if (!*p)
                return FL_ERR_INVALID; /* a trailing slash would make an empty segment */
        }
    }
    return FL_OK;
}

int fl_api_route(fl_api_t *api, const char *method, const char *pattern, fl_api_route_fn fn,
                 void *ud, int flags)
{
    fl_api_route_ent_t r = {0};
    int rc;

    if (!api || !fn || !valid_method(method))
        return FL_ERR_INVALID;
    for (size_t i = 0; i < api->n_routes; i++)
        if (!strcmp(api->routes[i].method, method) && pattern &&
            !strcmp(api->routes[i].pattern, pattern))
            return FL_ERR_CONFLICT;
    rc = route_compile(&r, pattern);
    if (rc != FL_OK)
        goto fail;
    r.method = strdup(method);
    r.pattern = strdup(pattern);
    if (!r.method || !r.pattern) {
        rc = FL_ERR_NOMEM;
        goto fail;
    }
    r.fn = fn;
    r.ud = ud;
    r.flags = flags;
    if (api->n_routes == api->cap_routes) {
        size_t cap = api->cap_routes ? api->cap_routes * 2 : 16;
        fl_api_route_ent_t *nr = realloc(api->routes, cap * sizeof(*nr));
        if (!nr) {
            rc = FL_ERR_NOMEM;
            goto fail;
        }
        api->routes = nr;
        api->cap_routes = cap;
    }
    api->routes[api->n_routes++] = r;
    return FL_OK;
fail:
    route_dispose(&r);
    return rc;
}

typedef struct path_segs {
    const char *ptr[FL_API_MAX_SEGS];
    size_t len[FL_API_MAX_SEGS];
    size_t n;
} path_segs_t;

/* Split a request path; 0 when it is not absolute or has too many segments. */
static int split_path(const char *path, path_segs_t *ps)
{
    const char *p;

    ps->n = 0;
    if (!path || path[0] != '/')
        return 0;
    p = path + 1;
    if (!*p)
        return 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);

        if (ps->n == FL_API_MAX_SEGS)
            return 0;
        ps->ptr[ps->n] = p;
        ps->len[ps->n] = len;
        ps->n++;
        if (!e)
            return 1;
        p = e + 1;
    }
}

static int route_matches(const fl_api_route_ent_t *r, const path_segs_t *ps)
{
    if (r->n_segs != ps->n)
        return 0;
    for (size_t i = 0; i < ps->n; i++) {
        const char *seg = r->segs[i];
        if (is_placeholder(seg)) {
            if (ps->len[i] == 0)
                return 0;
        } else if (strlen(seg) != ps->len[i] || memcmp(seg, ps->ptr[i], ps->len[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

/* Append a method to a ", "-separated Allow list unless it is already there. */
static void allow_add(char *allow, size_t cap, const char *method)
{
    size_t al = strlen(allow), ml = strlen(method);

    for (const char *a = allow; (a = strstr(a, method)) != NULL; a++)
        if ((a == allow || a[-1] == ' ') && (a[ml] == ',' || a[ml] == '\0'))
            return;
    if (al + ml + 3 < cap)
        snprintf(allow + al, cap - al, "%s%s", al ? ", " : "", method);
}

static const fl_api_route_ent_t *lookup(const fl_api_t *api, const char *method, const char *path,
                                        path_segs_t *ps, fl_api_match_t *m)
{
    const fl_api_route_ent_t *best = NULL;
    int any = 0;

    memset(m, 0, sizeof(*m));
    m->status = 404;
    if (!split_path(path, ps))
        return NULL;
    for (size_t i = 0; i < api->n_routes; i++) {
        const fl_api_route_ent_t *r = &api->routes[i];
        if (!route_matches(r, ps))
            continue;
        if (!strcmp(r->method, method)) {
            if (!best || r->score > best->score)
                best = r;
        }
        allow_add(m->allow, sizeof(m->allow), r->method);
        any = 1;
    }
    if (best) {
        m->status = 200;
        m->pattern = best->pattern;
    } else if (any) {
        m->status = 405;
    }
    return best;
}

int fl_api_lookup(const fl_api_t *api, const char *method, const char *path, fl_api_match_t *m)
{
    path_segs_t ps;

    lookup(api, method ? method : "", path, &ps, m);
    return m->status;
}

/* ---------------------------------------------------------------- calls */

static void call_free(fl_api_call_t *c)
{
    if (!c)
        return;
    fl_buf_dispose(&c->out);
    fl_arena_free(c->arena); /* the call itself lives in its arena */
}

static void call_run(void *arg)
{
    fl_api_call_t *c = arg;

    c->route->fn(c, c->route->ud);
    if (!c->replied) {
        fl_log(FL_LOG_ERROR, "api", "handler sent no response method=%s path=%s", c->method,
               c->route->pattern);
        fl_api_reply_error(c, 500, "internal error: the handler for %s %s sent no response",
                           c->method, c->route->pattern);
    }
    call_free(c);
}

static void dispatch(fl_api_t *api, const char *method, const char *path, const char *query,
                     const void *body, size_t len, fl_api_reply_fn reply, void *ctx)
{
    fl_api_match_t m;
    path_segs_t ps;
    const fl_api_route_ent_t *r;
    fl_arena_t *a = NULL;
    fl_api_call_t *c = NULL;
    char err[512];
    int oom = 0;
    int rc;

    atomic_fetch_add(&api->n_requests, 1);
    r = lookup(api, method, path, &ps, &m);
    if (!r) {
        send_route_error(api, reply, ctx, method, path, &m);
        return;
    }
    a = fl_arena_new(0);
    if (a)
        fl_arena_set_limit(a, api->max_call_mem);
    c = a ? fl_arena_calloc(a, 1, sizeof(*c)) : NULL;
    if (!c) {
        fl_arena_free(a);
        send_error_direct(api, reply, ctx, 500, NULL, 0, "out of memory");
        return;
    }
    c->api = api;
    c->route = r;
    c->arena = a;
    c->reply = reply;
    c->ctx = ctx;
    fl_buf_init(&c->out, api->max_response);
    fl_jw_init(&c->jw, &c->out);
    c->method = fl_arena_strdup(a, method);
    c->path = fl_arena_strdup(a, path);
    c->body = (const uint8_t *)"";
    if (len > 0) {
        uint8_t *copy = fl_arena_alloc(a, len + 1);
        if (copy) {
            memcpy(copy, body, len);
            copy[len] = 0;
            c->body = copy;
            c->body_len = len;
        } else {
            oom = 1;
        }
    }
    if (oom || !c->method || !c->path) {
        fl_api_reply_error(c, 500, "out of memory");
        goto done;
    }
    rc = fl_api_query_parse(query, a, &c->query, err, sizeof(err));
    if (rc != FL_OK) {
        fl_api_reply_error(c, 400, "%s", err);
        goto done;
    }
    for (size_t i = 0; i < r->n_segs; i++) {
        char *v;
        size_t vlen;
        if (!is_placeholder(r->segs[i]))
            continue;
        v = fl_arena_alloc(a, ps.len[i] + 1);
        if (!v) {
            fl_api_reply_error(c, 500, "out of memory");
            goto done;
        }
        rc = fl_api__pct_decode(ps.ptr[i], ps.len[i], 0, v, &vlen);
        if (rc != 0) {
            fl_api_reply_error(c, 400, "path segment %zu: %s", i + 1,
                               rc == -2 ? "percent-encoded NUL byte"
                                        : "malformed percent-encoding");
            goto done;
        }
        c->param_names[c->n_params] = r->segs[i];
        c->param_values[c->n_params] = v;
        c->n_params++;
    }
    if (r->flags & FL_API_ROUTE_INLINE) {
        call_run(c);
        return;
    }
    rc = fl_pool_submit(api->pool, call_run, c);
    if (rc == FL_OK)
        return;
    atomic_fetch_add(&api->n_refused, 1);
    {
        fl_net_header_t ra = {"Retry-After", "1"};
        fl_buf_reset(&c->out);
        fl_jw_init(&c->jw, &c->out);
        if (write_error(&c->out, 503,
                        rc == FL_ERR_BUSY ? "API overloaded: too many queued requests, retry later"
                                          : "API is shutting down") != FL_OK)
            send_oom(api, reply, ctx);
        else
            send_json(api, reply, ctx, 503, &ra, 1, c->out.data, c->out.len);
        c->replied = 1;
    }
done:
    call_free(c);
}

void fl_api_request(fl_api_t *api, const char *method, const char *target, const void *body,
                    size_t len, fl_api_reply_fn reply, void *ctx)
{
    const char *q = target ? strchr(target, '?') : NULL;
    const char *hash;
    char *path = NULL, *query = NULL;

    if (!target)
        target = "";
    path = q ? strndup(target, (size_t)(q - target)) : strdup(target);
    query = strdup(q ? q + 1 : "");
    if (!path || !query) {
        send_error_direct(api, reply, ctx, 500, NULL, 0, "out of memory");
        goto out;
    }
    if ((hash = strchr(query, '#')) != NULL)
        query[hash - query] = '\0';
    dispatch(api, method ? method : "", path, query, body, len, reply, ctx);
out:
    free(path);
    free(query);
}

/* ---------------------------------------------------------------- handler side */

const char *fl_api_call_method(const fl_api_call_t *call)
{
    return call->method;
}

const char *fl_api_call_path(const fl_api_call_t *call)
{
    return call->path;
}

const char *fl_api_call_param(const fl_api_call_t *call, const char *name)
{
    size_t nl = strlen(name);

    for (size_t i = 0; i < call->n_params; i++) {
        const char *pn = call->param_names[i]; /* "{name}" */
        if (strlen(pn) == nl + 2 && !memcmp(pn + 1, name, nl))
            return call->param_values[i];
    }
    return NULL;
}

const uint8_t *fl_api_call_body(const fl_api_call_t *call, size_t *len)
{
    if (len)
        *len = call->body_len;
    return call->body;
}

const fl_api_query_t *fl_api_call_query(const fl_api_call_t *call)
{
    return &call->query;
}

fl_arena_t *fl_api_call_arena(fl_api_call_t *call)
{
    return call->arena;
}

fl_store_t *fl_api_call_store(const fl_api_call_t *call)
{
    return call->api->store;
}

fl_api_t *fl_api_call_api(const fl_api_call_t *call)
{
    return call->api;
}

fl_jw_t *fl_api_call_json(fl_api_call_t *call)
{
    return &call->jw;
}

size_t fl_api_call_room(const fl_api_call_t *call)
{
    size_t max = call->out.max;
    return call->out.len >= max ? 0 : max - call->out.len;
}

void fl_api_reply(fl_api_call_t *call, int status, const fl_net_header_t *extra, size_t n_extra)
{
    if (call->replied)
        return;
    if (call->jw.err != FL_OK || call->jw.depth != 0 || call->out.len == 0) {
        int err = call->jw.err;
        if (err == FL_ERR_LIMIT)
            fl_api_reply_error(call, 500,
                               "response larger than the %zu-byte limit; narrow the query",
                               call->out.max);
        else
            fl_api_reply_error(call, 500, "internal error writing the response: %s",
                               err ? fl_strerror(err) : "incomplete JSON");
        return;
    }
    call->replied = 1;
    send_json(call->api, call->reply, call->ctx, status, extra, n_extra, call->out.data,
              call->out.len);
}

void fl_api_reply_error(fl_api_call_t *call, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    fl_buf_t b;

    if (call->replied)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call->replied = 1;
    /* A fresh, uncapped buffer: the error must go out even when the body hit its cap. */
    fl_buf_init(&b, 0);
    if (write_error(&b, status, msg) != FL_OK)
        send_oom(call->api, call->reply, call->ctx);
    else
        send_json(call->api, call->reply, call->ctx, status, NULL, 0, b.data, b.len);
    fl_buf_dispose(&b);
}

/* ---------------------------------------------------------------- lifecycle */

fl_api_t *fl_api_new(const fl_api_opts_t *opts)
{
    fl_api_t *api = calloc(1, sizeof(*api));
    int threads = opts && opts->threads > 0 ? opts->threads : DEFAULT_THREADS;
    size_t queue = opts && opts->max_queue ? opts->max_queue : DEFAULT_QUEUE;

    if (!api)
        return NULL;
    if (opts) {
        api->store = opts->store;
        api->status_fn = opts->status_fn;
        api->status_ud = opts->status_ud;
        api->analysis = opts->analysis;
        api->analyze_fn = opts->analyze_fn;
        api->analyze_ud = opts->analyze_ud;
        api->incidents = opts->incidents;
        api->incident_fn = opts->incident_fn;
        api->incident_ud = opts->incident_ud;
        api->tokens = opts->tokens;
        api->cors = opts->cors;
        api->max_response = opts->max_response;
        api->max_call_mem = opts->max_call_mem;
    }
    if (!api->max_response)
        api->max_response = DEFAULT_MAX_RESPONSE;
    if (!api->max_call_mem)
        api->max_call_mem = DEFAULT_MAX_CALL_MEM;
    api->version = strdup(opts && opts->version ? opts->version : FL_VERSION);
    atomic_init(&api->ready, 0);
    atomic_init(&api->n_requests, 0);
    atomic_init(&api->n_client_errors, 0);
    atomic_init(&api->n_server_errors, 0);
    atomic_init(&api->n_refused, 0);
    api->started_ns = fl_time_now_ns();
    api->pool = fl_pool_new(threads, queue, "api");
    if (!api->version || !api->pool || fl_api__register_builtin(api) != FL_OK ||
        fl_api__register_aiops(api) != FL_OK || fl_api__register_incidents(api) != FL_OK) {
        fl_api_free(api);
        return NULL;
    }
    return api;
}

void fl_api_free(fl_api_t *api)
{
    if (!api)
        return;
    fl_pool_free(api->pool);
    for (size_t i = 0; i < api->n_routes; i++)
        route_dispose(&api->routes[i]);
    free(api->routes);
    free(api->version);
    free(api);
}

void fl_api_set_ready(fl_api_t *api, int ready)
{
    if (ready)
        atomic_store(&api->ready, 1);
    else if (atomic_load(&api->ready) != 0)
        atomic_store(&api->ready, 2);
}

/* ---------------------------------------------------------------- net adapter */

static void net_reply(void *ctx, int status, const fl_net_header_t *headers, size_t n_headers,
                      const void *body, size_t len)
{
    fl_net_respond(ctx, status, headers, n_headers, body, len);
}

static int net_on_head(fl_net_req_t *req, void *ud)
{
    fl_api_t *api = ud;
    fl_api_match_t m;
    const char *method = fl_net_req_method(req);
    const char *path = fl_net_req_path(req);

    if (fl_net_cors_apply(req, api->cors) == FL_NET_CORS_PREFLIGHT) {
        atomic_fetch_add(&api->n_requests, 1);
        return FL_NET_RESPONDED;
    }
    /* /health stays open for probes; everything else needs a token when tokens are set. */
    if (api->tokens && strcmp(path, "/health") != 0 &&
        !fl_net_tokens_check(api->tokens, fl_net_req_header(req, "authorization"))) {
        fl_net_header_t h = {"WWW-Authenticate", "Bearer realm=\"faultline\""};
        atomic_fetch_add(&api->n_requests, 1);
        send_error_direct(api, net_reply, req, 401, &h, 1,
                          fl_net_req_header(req, "authorization")
                              ? "invalid bearer token"
                              : "missing bearer token (Authorization: Bearer <token>)");
        return FL_NET_RESPONDED;
    }
    /* Decide routing failures before the body is read; the body is then discarded. */
    if (fl_api_lookup(api, method, path, &m) != 200) {
        atomic_fetch_add(&api->n_requests, 1);
        send_route_error(api, net_reply, req, method, path, &m);
        return FL_NET_RESPONDED;
    }
    return FL_NET_READ_BODY;
}

static void net_on_body(fl_net_req_t *req, void *ud)
{
    fl_api_t *api = ud;
    size_t len = 0;
    const uint8_t *body = fl_net_req_body(req, &len);
    const char *query = fl_net_req_query(req);

    /* dispatch copies everything it needs, so workers only ever touch req to respond. */
    dispatch(api, fl_net_req_method(req), fl_net_req_path(req), query ? query : "", body, len,
             net_reply, req);
}

fl_net_handler_t fl_api_handler(fl_api_t *api)
{
    fl_net_handler_t h = {.on_head = net_on_head, .on_body = net_on_body, .ud = api};
    return h;
}
