/* SPDX-License-Identifier: Apache-2.0 */
/* The demo service skeleton: flags, the net/ server with handlers moved onto a worker pool,
 * SERVER/CLIENT spans with W3C propagation, /health and the /simulate failure-injection API
 * (applied locally or forwarded down the service tree). */
#include "svc.h"

#include <errno.h>
#include <execinfo.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- topology */

/* The demo's call tree. Each service forwards /simulate requests for services below it, so
 * checkout reaches every service by name. Paths are every route a service serves. */
typedef struct topo_node {
    const char *name;
    const char *parent;
    int port;
    const char *paths[6];
} topo_node_t;

static const topo_node_t topo[] = {
    {"checkout", NULL, 5000, {"/checkout", "/payment", "/inventory", NULL}},
    {"payment", "checkout", 5001, {"/charge", NULL}},
    {"inventory", "checkout", 5002, {"/reserve", "/items", NULL}},
    {"fraud", "payment", 5003, {"/score", NULL}},
    {"stock", "inventory", 5004, {"/stock", "/stock/{sku}", "/stock/reserve", NULL}},
};
#define N_TOPO (sizeof(topo) / sizeof(topo[0]))
#define MAX_CHILDREN 4

static const topo_node_t *topo_find(const char *name)
{
    for (size_t i = 0; i < N_TOPO; i++)
        if (strcmp(topo[i].name, name) == 0)
            return &topo[i];
    return NULL;
}

/* ---------------------------------------------------------------- service state */

typedef struct child {
    const char *name;
    char url[256];
    char host[128];
    int port;
} child_t;

struct demo_svc {
    const demo_service_def_t *def;
    const topo_node_t *node;
    char listen_host[128];
    int listen_port;
    char port_file[512];
    int workers;
    int timeout_ms;
    double latency_scale;
    const char *flag_values[16];
    child_t children[MAX_CHILDREN];
    int n_children;

    fl_dt_env_t env;
    fl_dt_tracer_t *tracer;
    fl_net_t *net;
    fl_pool_t *pool;
    demo_chaos_t *chaos;
    uint64_t started_mono;

    pthread_mutex_t mu; /* guards stopping and pool submission */
    pthread_cond_t stop_cv;
    int stopping;
};

#define MAX_ROUTE_PARAMS 4

struct demo_req {
    demo_svc_t *svc;
    fl_net_req_t *nreq;
    const demo_route_t *route;
    char method[16];
    char *path;
    char *query;
    uint8_t *body;
    size_t body_len;
    char *pnames[MAX_ROUTE_PARAMS], *pvalues[MAX_ROUTE_PARAMS];
    int n_params;
    demo_params_t qp;
    int qp_parsed;
    json_t *json;
    int json_parsed, json_bad;
    fl_dt_span_t *span;
    int replied;
    int status;
    char *out;
    int error_type_set;
    const char *allow; /* Allow header for 405 */
};

const char *demo_svc_flag(const demo_svc_t *svc, const char *name)
{
    for (size_t i = 0; i < svc->def->n_flags; i++)
        if (strcmp(svc->def->flags[i].name, name) == 0)
            return svc->flag_values[i] ? svc->flag_values[i] : svc->def->flags[i].dflt;
    return NULL;
}

fl_dt_tracer_t *demo_svc_tracer(demo_svc_t *svc)
{
    return svc->tracer;
}

const char *demo_req_method(const demo_req_t *r)
{
    return r->method;
}

const char *demo_req_path(const demo_req_t *r)
{
    return r->path;
}

const char *demo_req_param(const demo_req_t *r, const char *name)
{
    for (int i = 0; i < r->n_params; i++)
        if (strcmp(r->pnames[i], name) == 0)
            return r->pvalues[i];
    return NULL;
}

const char *demo_req_query(const demo_req_t *r, const char *name)
{
    demo_req_t *m = (demo_req_t *)r;
    if (!m->qp_parsed) {
        char err[128];
        demo_params_parse_query(&m->qp, m->query, err, sizeof(err));
        m->qp_parsed = 1;
    }
    return demo_params_get(&m->qp, name);
}

json_t *demo_req_json(demo_req_t *r, int *bad)
{
    if (!r->json_parsed) {
        r->json_parsed = 1;
        size_t i = 0;
        while (i < r->body_len && (r->body[i] == ' ' || r->body[i] == '\n' || r->body[i] == '\r' ||
                                   r->body[i] == '\t'))
            i++;
        if (i < r->body_len) {
            r->json = json_loadb((const char *)r->body, r->body_len, 0, NULL);
            r->json_bad = r->json == NULL;
        }
    }
    if (bad)
        *bad = r->json_bad;
    return r->json;
}

fl_dt_span_t *demo_req_span(demo_req_t *r)
{
    return r->span;
}

demo_svc_t *demo_req_svc(demo_req_t *r)
{
    return r->svc;
}

/* ---------------------------------------------------------------- time and latency */

void demo_sleep_ms(demo_svc_t *svc, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000ull;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        if (pthread_cond_timedwait(&svc->stop_cv, &svc->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&svc->mu);
}

/* A standard normal sample (Box-Muller). */
static double gauss(void)
{
    double u1 = fl_dt_random_unit(), u2 = fl_dt_random_unit();
    if (u1 < 1e-12)
        u1 = 1e-12;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void demo_work(demo_req_t *r, double median_ms)
{
    double scale = r->svc->latency_scale;
    if (scale <= 0 || median_ms <= 0)
        return;
    /* Lognormal with a small spread, plus a rare slow outlier: real services look like that. */
    double ms = median_ms * exp(0.35 * gauss());
    if (fl_dt_random_unit() < 0.01)
        ms *= 3.0;
    if (ms > median_ms * 10)
        ms = median_ms * 10;
    demo_sleep_ms(r->svc, (uint64_t)(ms * scale));
}

/* ---------------------------------------------------------------- replies */

static void reply_raw(demo_req_t *r, int status, char *body)
{
    if (r->replied) {
        free(body);
        return;
    }
    r->replied = 1;
    r->status = status;
    r->out = body;
}

void demo_reply_json(demo_req_t *r, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(doc);
    reply_raw(r, status, s ? s : strdup("{}"));
}

static void set_error_type(demo_req_t *r, const char *type)
{
    if (!r->error_type_set) {
        fl_dt_span_set_str(r->span, "error.type", type);
        r->error_type_set = 1;
    }
}

void demo_reply_error(demo_req_t *r, int status, const char *error_type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status >= 500) {
        char code[16];
        snprintf(code, sizeof(code), "%d", status);
        set_error_type(r, error_type ? error_type : code);
        fl_dt_span_set_status(r->span, FL_DT_STATUS_ERROR, msg);
    }
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(msg));
    json_object_set_new(j, "service", json_string(r->svc->node->name));
    if (error_type)
        json_object_set_new(j, "error_type", json_string(error_type));
    demo_reply_json(r, status, j);
}

/* 400 naming the bad parameter and why. */
static void reply_bad_param(demo_req_t *r, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_bad_param(demo_req_t *r, const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(msg));
    json_object_set_new(j, "parameter", param ? json_string(param) : json_null());
    json_object_set_new(j, "service", json_string(r->svc->node->name));
    demo_reply_json(r, 400, j);
}

/* A readable exception stack: the frames of this process at the failure point. */
static char *capture_stack(const char *type, const char *msg)
{
    void *frames[24];
    int n = backtrace(frames, 24);
    char **syms = backtrace_symbols(frames, n);
    fl_buf_t b;
    fl_buf_init(&b, 8192);
    fl_buf_printf(&b, "%s: %s", type, msg);
    for (int i = 1; i < n && syms; i++)
        fl_buf_printf(&b, "\n    at %s", syms[i]);
    free(syms);
    size_t len;
    char *s = (char *)fl_buf_take(&b, &len);
    return s ? s : strdup(type);
}

static void inject_failure(demo_req_t *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void inject_failure(demo_req_t *r, int status, const char *type, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *stack = capture_stack(type, msg);
    fl_dt_span_record_exception(r->span, type, msg, stack);
    free(stack);
    fl_dt_span_set_bool(r->span, "faultline.demo.injected", 1);
    demo_reply_error(r, status, type, "%s", msg);
}

/* ---------------------------------------------------------------- downstream calls */

typedef struct tl_clients {
    fl_http_client_t *c[MAX_CHILDREN];
    int timeout[MAX_CHILDREN];
} tl_clients_t;

static pthread_key_t clients_key;
static pthread_once_t clients_once = PTHREAD_ONCE_INIT;

static void clients_destroy(void *p)
{
    tl_clients_t *t = p;
    for (int i = 0; i < MAX_CHILDREN; i++)
        fl_http_client_free(t->c[i]);
    free(t);
}

static void clients_key_init(void)
{
    pthread_key_create(&clients_key, clients_destroy);
}

/* The calling thread's keep-alive client for child i. */
static fl_http_client_t *client_for(demo_svc_t *svc, int i)
{
    pthread_once(&clients_once, clients_key_init);
    tl_clients_t *t = pthread_getspecific(clients_key);
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t)
            return NULL;
        pthread_setspecific(clients_key, t);
    }
    if (!t->c[i]) {
        fl_http_client_opts_t o;
        memset(&o, 0, sizeof(o));
        o.host = svc->children[i].host;
        o.port = svc->children[i].port;
        o.timeout_ms = svc->timeout_ms;
        o.max_response = 4 << 20;
        t->c[i] = fl_http_client_new(&o);
    }
    return t->c[i];
}

static void client_reset(int i)
{
    tl_clients_t *t = pthread_getspecific(clients_key);
    if (t) {
        fl_http_client_free(t->c[i]);
        t->c[i] = NULL;
    }
}

static int child_index(demo_svc_t *svc, const char *name)
{
    for (int i = 0; i < svc->n_children; i++)
        if (strcmp(svc->children[i].name, name) == 0)
            return i;
    return -1;
}

/* One request to child i; returns the HTTP status, -1 transport error, -2 timeout. */
static int raw_call(demo_svc_t *svc, int i, const char *method, const char *target,
                    const fl_net_header_t *extra, size_t n_extra, const char *body, fl_buf_t *out,
                    char *err, size_t errlen)
{
    fl_http_client_t *c = client_for(svc, i);
    if (!c) {
        snprintf(err, errlen, "cannot create an HTTP client");
        return -1;
    }
    fl_net_header_t h[8];
    size_t nh = 0;
    for (size_t k = 0; k < n_extra && nh < 6; k++)
        h[nh++] = extra[k];
    h[nh++] = (fl_net_header_t){"Accept", "application/json"};
    if (body)
        h[nh++] = (fl_net_header_t){"Content-Type", "application/json"};
    fl_http_response_t resp;
    int rc = fl_http_client_request(c, method, target, h, nh, body, body ? strlen(body) : 0, &resp);
    if (rc != FL_OK) {
        client_reset(i);
        snprintf(err, errlen, "%s %s:%d: %s",
                 rc == FL_ERR_TIMEOUT ? "timed out calling" : "cannot reach", svc->children[i].host,
                 svc->children[i].port, fl_strerror(rc));
        return rc == FL_ERR_TIMEOUT ? -2 : -1;
    }
    int status = resp.status;
    if (out)
        fl_buf_append(out, resp.body.data ? resp.body.data : (const uint8_t *)"", resp.body.len);
    fl_http_response_dispose(&resp);
    return status;
}

int demo_call(demo_req_t *r, const char *dep, const char *method, const char *path, json_t *body,
              demo_call_result_t *res)
{
    demo_svc_t *svc = r->svc;
    memset(res, 0, sizeof(*res));
    int i = child_index(svc, dep);
    if (i < 0) {
        res->status = -1;
        snprintf(res->error, sizeof(res->error), "no dependency named %s", dep);
        return -1;
    }
    child_t *ch = &svc->children[i];
    char name[160];
    size_t plen = strcspn(path, "?");
    snprintf(name, sizeof(name), "%s %.*s", method, (int)plen, path);
    fl_dt_span_t *span =
        fl_dt_span_start(svc->tracer, name, FL_DT_KIND_CLIENT, fl_dt_span_context(r->span));
    char url[512];
    snprintf(url, sizeof(url), "http://%s:%d%s", ch->host, ch->port, path);
    fl_dt_span_set_str(span, "http.request.method", method);
    fl_dt_span_set_str(span, "server.address", ch->host);
    fl_dt_span_set_int(span, "server.port", ch->port);
    fl_dt_span_set_str(span, "url.full", url);
    fl_dt_span_set_str(span, "peer.service", dep);

    char tp[FL_DT_TRACEPARENT_LEN];
    fl_net_header_t h[2];
    size_t nh = 0;
    if (fl_dt_span_traceparent(span, tp))
        h[nh++] = (fl_net_header_t){"traceparent", tp};
    const fl_dt_context_t *ctx = fl_dt_span_context(span);
    if (ctx->tracestate[0])
        h[nh++] = (fl_net_header_t){"tracestate", ctx->tracestate};

    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    fl_buf_t out;
    fl_buf_init(&out, 4 << 20);
    int status = raw_call(svc, i, method, path, h, nh, text, &out, res->error, sizeof(res->error));
    free(text);
    res->status = status;
    if (status > 0) {
        fl_dt_span_set_int(span, "http.response.status_code", status);
        if (out.len)
            res->json = json_loadb((const char *)out.data, out.len, 0, NULL);
        if (status >= 400) {
            char code[16];
            snprintf(code, sizeof(code), "%d", status);
            fl_dt_span_set_str(span, "error.type", code);
            const char *m = json_string_value(json_object_get(res->json, "error"));
            char msg[256];
            snprintf(msg, sizeof(msg), "%s answered %d%s%s", dep, status, m ? ": " : "",
                     m ? m : "");
            fl_dt_span_set_status(span, FL_DT_STATUS_ERROR, msg);
        }
    } else {
        fl_dt_span_set_str(span, "error.type", status == -2 ? "timeout" : "connection_error");
        fl_dt_span_record_exception(span, status == -2 ? "TimeoutError" : "ConnectionError",
                                    res->error, NULL);
        fl_dt_span_set_status(span, FL_DT_STATUS_ERROR, res->error);
    }
    fl_buf_dispose(&out);
    fl_dt_span_end(span);
    return status;
}

/* ---------------------------------------------------------------- request lifecycle */

static void req_free(demo_req_t *r)
{
    free(r->path);
    free(r->query);
    free(r->body);
    for (int i = 0; i < r->n_params; i++) {
        free(r->pnames[i]);
        free(r->pvalues[i]);
    }
    demo_params_dispose(&r->qp);
    json_decref(r->json);
    free(r->out);
    free(r);
}

/* End the span and send the answer: from a worker, or the loop thread for early answers. */
static void req_finish(demo_req_t *r)
{
    if (!r->replied)
        demo_reply_error(r, 500, "NoResponse", "the handler produced no response");
    if (r->span) {
        fl_dt_span_set_int(r->span, "http.response.status_code", r->status);
        if (r->status >= 500) {
            char code[16];
            snprintf(code, sizeof(code), "%d", r->status);
            set_error_type(r, code);
            if (fl_dt_span_status(r->span) != FL_DT_STATUS_ERROR)
                fl_dt_span_set_status(r->span, FL_DT_STATUS_ERROR, fl_net_status_text(r->status));
        }
        fl_dt_span_end(r->span);
        r->span = NULL;
    }
    fl_net_header_t h[2];
    size_t nh = 0;
    h[nh++] = (fl_net_header_t){"Content-Type", "application/json"};
    if (r->allow)
        h[nh++] = (fl_net_header_t){"Allow", r->allow};
    const char *body = r->out ? r->out : "";
    fl_net_respond(r->nreq, r->status, h, nh, body, strlen(body));
    req_free(r);
}

static void run_route(demo_req_t *r)
{
    demo_svc_t *svc = r->svc;
    demo_fault_set_t f;
    demo_chaos_lookup(svc->chaos, r->route->route, &f);
    if (f.has[DEMO_FAULT_DELAY]) {
        fl_dt_span_set_int(r->span, "faultline.demo.injected_delay_ms",
                           (int64_t)f.value[DEMO_FAULT_DELAY]);
        demo_sleep_ms(svc, (uint64_t)f.value[DEMO_FAULT_DELAY]);
    }
    if (f.has[DEMO_FAULT_TIMEOUT]) {
        demo_sleep_ms(svc, (uint64_t)f.value[DEMO_FAULT_TIMEOUT]);
        set_error_type(r, "timeout");
        inject_failure(r, 504, "TimeoutError",
                       "simulated timeout: %s gave no answer within %.0f ms", svc->node->name,
                       f.value[DEMO_FAULT_TIMEOUT]);
        return;
    }
    if (f.has[DEMO_FAULT_ERROR] && fl_dt_random_unit() < f.value[DEMO_FAULT_ERROR]) {
        inject_failure(r, 500, "SimulatedError", "simulated error in %s (rate %.2f)",
                       svc->node->name, f.value[DEMO_FAULT_ERROR]);
        return;
    }
    if (f.has[DEMO_FAULT_INTERMITTENT] && fl_dt_random_unit() < f.value[DEMO_FAULT_INTERMITTENT]) {
        inject_failure(r, 503, "IntermittentFailure",
                       "simulated intermittent failure in %s (probability %.2f)", svc->node->name,
                       f.value[DEMO_FAULT_INTERMITTENT]);
        return;
    }
    r->route->fn(r);
}

static void simulate(demo_req_t *r);

static void worker_job(void *arg)
{
    demo_req_t *r = arg;
    if (r->route)
        run_route(r);
    else
        simulate(r);
    req_finish(r);
}

/* Match a route template against a path, capturing {name} segments. */
static int route_match(const char *tmpl, const char *path, demo_req_t *r)
{
    int n = 0;
    const char *t = tmpl, *p = path;
    while (*t && *p) {
        if (*t != '/' || *p != '/')
            return 0;
        t++;
        p++;
        size_t tl = strcspn(t, "/"), pl = strcspn(p, "/");
        if (tl > 2 && t[0] == '{' && t[tl - 1] == '}') {
            if (pl == 0)
                return 0;
            if (r && n < MAX_ROUTE_PARAMS) {
                r->pnames[n] = strndup(t + 1, tl - 2);
                r->pvalues[n] = strndup(p, pl);
                n++;
                r->n_params = n;
            }
        } else if (tl != pl || memcmp(t, p, tl) != 0) {
            return 0;
        }
        t += tl;
        p += pl;
    }
    return *t == 0 && *p == 0;
}

static void respond_inline(fl_net_req_t *nreq, int status, json_t *doc, const char *allow)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    fl_net_header_t h[2] = {{"Content-Type", "application/json"}, {"Allow", allow}};
    fl_net_respond(nreq, status, h, allow ? 2 : 1, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

static void health(demo_svc_t *svc, fl_net_req_t *nreq)
{
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string("healthy"));
    json_object_set_new(j, "service", json_string(fl_dt_tracer_service(svc->tracer)));
    json_object_set_new(j, "uptime",
                        json_real((double)(fl_time_mono_ns() - svc->started_mono) / 1e9));
    json_object_set_new(j, "version", json_string(FL_VERSION));
    respond_inline(nreq, 200, j, NULL);
}

static void on_body(fl_net_req_t *nreq, void *ud)
{
    demo_svc_t *svc = ud;
    const char *method = fl_net_req_method(nreq);
    const char *path = fl_net_req_path(nreq);
    if (strcmp(path, "/health") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            json_t *j = json_pack("{s:s}", "error", "use GET /health");
            respond_inline(nreq, 405, j, "GET");
            return;
        }
        health(svc, nreq);
        return;
    }
    demo_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        fl_net_respond(nreq, 503, NULL, 0, NULL, 0);
        return;
    }
    r->svc = svc;
    r->nreq = nreq;
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->path = strdup(path);
    r->query = strdup(fl_net_req_query(nreq));
    size_t blen = 0;
    const uint8_t *b = fl_net_req_body(nreq, &blen);
    r->body = malloc(blen + 1);
    if (r->body && blen)
        memcpy(r->body, b, blen);
    r->body_len = blen;
    if (!r->path || !r->query || !r->body) {
        req_free(r);
        fl_net_respond(nreq, 503, NULL, 0, NULL, 0);
        return;
    }

    int is_sim = strcmp(path, "/simulate") == 0 || strncmp(path, "/simulate/", 10) == 0;
    if (!is_sim) {
        const demo_route_t *path_match = NULL;
        for (size_t i = 0; i < svc->def->n_routes && !r->route; i++) {
            const demo_route_t *rt = &svc->def->routes[i];
            if (!route_match(rt->route, path, NULL))
                continue;
            path_match = rt;
            if (strcmp(rt->method, method) == 0)
                r->route = rt;
        }
        if (!r->route) {
            json_t *j = json_object();
            if (path_match) {
                json_object_set_new(
                    j, "error", json_sprintf("use %s %s", path_match->method, path_match->route));
                respond_inline(nreq, 405, j, path_match->method);
            } else {
                json_t *routes = json_array();
                for (size_t i = 0; i < svc->def->n_routes; i++)
                    json_array_append_new(routes, json_sprintf("%s %s", svc->def->routes[i].method,
                                                               svc->def->routes[i].route));
                json_object_set_new(j, "error", json_sprintf("no route for %s %s", method, path));
                json_object_set_new(j, "routes", routes);
                respond_inline(nreq, 404, j, NULL);
            }
            req_free(r);
            return;
        }
        route_match(r->route->route, path, r);

        /* A SERVER span per request, continuing the caller's trace when it sent one. */
        fl_dt_context_t parent;
        fl_dt_extract(fl_net_req_header(nreq, "traceparent"), fl_net_req_header(nreq, "tracestate"),
                      &parent);
        char name[160];
        snprintf(name, sizeof(name), "%s %s", method, r->route->route);
        r->span = fl_dt_span_start(svc->tracer, name, FL_DT_KIND_SERVER, &parent);
        fl_dt_span_set_str(r->span, "http.request.method", method);
        fl_dt_span_set_str(r->span, "http.route", r->route->route);
        fl_dt_span_set_str(r->span, "url.path", path);
        fl_dt_span_set_str(r->span, "url.scheme", "http");
        if (r->query[0])
            fl_dt_span_set_str(r->span, "url.query", r->query);
        fl_dt_span_set_str(r->span, "server.address", svc->listen_host);
        fl_dt_span_set_int(r->span, "server.port", svc->listen_port);
        fl_dt_span_set_str(r->span, "network.protocol.version", "1.1");
        const char *peer = fl_net_req_peer(nreq);
        if (peer) {
            char addr[96];
            snprintf(addr, sizeof(addr), "%s", peer);
            char *colon = strrchr(addr, ':');
            if (colon) {
                fl_dt_span_set_int(r->span, "client.port", atoi(colon + 1));
                *colon = 0;
            }
            fl_dt_span_set_str(r->span, "client.address", addr);
        }
        const char *ua = fl_net_req_header(nreq, "user-agent");
        if (ua)
            fl_dt_span_set_str(r->span, "user_agent.original", ua);
    }

    pthread_mutex_lock(&svc->mu);
    int rc = svc->stopping ? FL_ERR_CLOSED : fl_pool_submit(svc->pool, worker_job, r);
    pthread_mutex_unlock(&svc->mu);
    if (rc != FL_OK) {
        demo_reply_error(r, 503, "overloaded", "%s",
                         rc == FL_ERR_CLOSED ? "shutting down" : "too many requests");
        req_finish(r);
    }
}

/* ---------------------------------------------------------------- /simulate */

typedef struct target {
    int local;           /* 1: this service */
    char route[96];      /* local route template, "" for the whole service */
    int child;           /* forward to this child when !local */
    const char *service; /* the service the endpoint names */
} target_t;

/* Is node n (by name) under ancestor a (or a itself)? Returns the child of a on the path. */
static const topo_node_t *path_below(const topo_node_t *n, const topo_node_t *a)
{
    const topo_node_t *prev = NULL;
    while (n) {
        if (n == a)
            return prev ? prev : a;
        prev = n;
        n = n->parent ? topo_find(n->parent) : NULL;
    }
    return NULL;
}

static int resolve(demo_svc_t *svc, const char *endpoint, target_t *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->child = -1;
    const topo_node_t *self = svc->node, *n = NULL;
    const char *route = "";
    if (!endpoint || !*endpoint || strcmp(endpoint, self->name) == 0 ||
        strcmp(endpoint, fl_dt_tracer_service(svc->tracer)) == 0) {
        n = self;
    } else if (endpoint[0] == '/') {
        /* Our own routes first (checkout's /payment is checkout's route, not payment). */
        for (int k = 0; self->paths[k] && !n; k++)
            if (strcmp(self->paths[k], endpoint) == 0) {
                n = self;
                route = self->paths[k];
            }
        for (size_t i = 0; i < N_TOPO && !n; i++)
            for (int k = 0; topo[i].paths[k] && !n; k++)
                if (strcmp(topo[i].paths[k], endpoint) == 0) {
                    n = &topo[i];
                    route = topo[i].paths[k];
                }
    } else {
        n = topo_find(endpoint);
    }
    if (!n) {
        snprintf(err, errlen,
                 "unknown endpoint '%s': name a service (checkout, payment, inventory, fraud, "
                 "stock) or a route path such as /charge",
                 endpoint);
        return -1;
    }
    t->service = n->name;
    if (n == self) {
        t->local = 1;
        snprintf(t->route, sizeof(t->route), "%s", route);
        return 0;
    }
    const topo_node_t *via = path_below(n, self);
    if (!via) {
        snprintf(err, errlen,
                 "endpoint '%s' (service %s) is not reachable from %s; send it to "
                 "checkout or to %s itself",
                 endpoint, n->name, self->name, n->name);
        return -1;
    }
    t->child = child_index(svc, via->name);
    if (t->child < 0) {
        snprintf(err, errlen, "no URL configured for %s", via->name);
        return -1;
    }
    return 0;
}

/* Query plus body (JSON object or form) into p; answers 400 and returns -1 on bad input. */
static int gather_params(demo_req_t *r, demo_params_t *p)
{
    char err[256];
    if (demo_params_parse_query(p, r->query, err, sizeof(err)) != 0) {
        reply_bad_param(r, NULL, "%s", err);
        return -1;
    }
    size_t i = 0;
    while (i < r->body_len &&
           (r->body[i] == ' ' || r->body[i] == '\n' || r->body[i] == '\r' || r->body[i] == '\t'))
        i++;
    if (i == r->body_len)
        return 0;
    if (r->body[i] == '{') {
        int bad;
        json_t *j = demo_req_json(r, &bad);
        if (bad) {
            reply_bad_param(r, NULL, "the body is not valid JSON");
            return -1;
        }
        if (demo_params_add_json(p, j, err, sizeof(err)) != 0) {
            reply_bad_param(r, NULL, "%s", err);
            return -1;
        }
        return 0;
    }
    r->body[r->body_len] = 0;
    if (demo_params_parse_query(p, (const char *)r->body + i, err, sizeof(err)) != 0) {
        reply_bad_param(r, NULL, "%s", err);
        return -1;
    }
    return 0;
}

/* Parse a fault value; answers 400 and returns -1 when missing or out of range. */
static int parse_value(demo_req_t *r, int kind, const char *s, double *out)
{
    const char *param = demo_fault_param(kind);
    if (!s || !*s) {
        if (kind == DEMO_FAULT_DELAY || kind == DEMO_FAULT_TIMEOUT)
            reply_bad_param(r, param, "%s is required: milliseconds, 0 to 600000", param);
        else
            reply_bad_param(r, param, "%s is required: a number from 0.0 to 1.0", param);
        return -1;
    }
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (kind == DEMO_FAULT_DELAY || kind == DEMO_FAULT_TIMEOUT) {
        if (e != s && strcmp(e, "ms") == 0)
            e += 2;
        else if (e != s && strcmp(e, "s") == 0) {
            v *= 1000;
            e += 1;
        }
        if (e == s || *e || errno || !isfinite(v) || v < 0 || v > 600000 || v != floor(v)) {
            reply_bad_param(r, param,
                            "%s must be a whole number of milliseconds from 0 to 600000, got '%s'",
                            param, s);
            return -1;
        }
    } else if (e == s || *e || errno || !isfinite(v) || v < 0 || v > 1) {
        reply_bad_param(r, param, "%s must be a number from 0.0 to 1.0, got '%s'", param, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Send /simulate/<action>?<params> to child i and relay its answer. */
static void forward(demo_req_t *r, int i, const char *method, const char *action,
                    const demo_params_t *p)
{
    fl_buf_t target, out;
    fl_buf_init(&target, 0);
    fl_buf_init(&out, 1 << 20);
    fl_buf_printf(&target, "/simulate/%s", action);
    if (p && p->n) {
        fl_buf_putc(&target, '?');
        demo_params_encode(p, &target);
    }
    char err[256];
    int status = raw_call(r->svc, i, method, (const char *)target.data, NULL, 0, NULL, &out, err,
                          sizeof(err));
    if (status > 0) {
        reply_raw(r, status, out.len ? (char *)fl_buf_take(&out, &(size_t){0}) : strdup("{}"));
    } else {
        json_t *j = json_object();
        json_object_set_new(
            j, "error", json_sprintf("cannot forward to %s: %s", r->svc->children[i].name, err));
        json_object_set_new(j, "service", json_string(r->svc->children[i].name));
        demo_reply_json(r, 502, j);
    }
    fl_buf_dispose(&target);
    fl_buf_dispose(&out);
}

/* Apply (or forward) one fault with already-validated parameters. */
static void apply_fault(demo_req_t *r, int kind, demo_params_t *p)
{
    const char *endpoint = demo_params_get(p, "endpoint");
    target_t t;
    char err[300];
    if (resolve(r->svc, endpoint, &t, err, sizeof(err)) != 0) {
        reply_bad_param(r, "endpoint", "%s", err);
        return;
    }
    double v;
    if (parse_value(r, kind, demo_params_get(p, demo_fault_param(kind)), &v) != 0)
        return;
    if (!t.local) {
        forward(r, t.child, "POST", demo_fault_name(kind), p);
        return;
    }
    if (demo_chaos_set(r->svc->chaos, t.route, kind, v) != 0) {
        reply_bad_param(r, "endpoint", "too many routes with faults on %s", r->svc->node->name);
        return;
    }
    fl_log(FL_LOG_INFO, "demo", "fault set fault=%s service=%s route=%s value=%g",
           demo_fault_name(kind), r->svc->node->name, t.route[0] ? t.route : "*", v);
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string("ok"));
    json_object_set_new(j, "service", json_string(r->svc->node->name));
    json_object_set_new(j, "fault", json_string(demo_fault_name(kind)));
    json_object_set_new(j, "endpoint",
                        json_string(endpoint && *endpoint ? endpoint : r->svc->node->name));
    json_object_set_new(j, "route", t.route[0] ? json_string(t.route) : json_null());
    if (kind == DEMO_FAULT_DELAY || kind == DEMO_FAULT_TIMEOUT)
        json_object_set_new(j, "duration_ms", json_integer((json_int_t)v));
    else
        json_object_set_new(j, demo_fault_param(kind), json_real(v));
    json_object_set_new(j, "active", demo_chaos_json(r->svc->chaos));
    demo_reply_json(r, 200, j);
}

static void sim_fault(demo_req_t *r, int kind)
{
    demo_params_t p = {0};
    if (gather_params(r, &p) == 0) {
        const char *allowed[] = {"endpoint", demo_fault_param(kind), NULL};
        const char *bad = demo_params_unknown(&p, allowed);
        if (bad)
            reply_bad_param(r, bad,
                            "unknown parameter '%s' for /simulate/%s (expected endpoint, "
                            "%s)",
                            bad, demo_fault_name(kind), demo_fault_param(kind));
        else
            apply_fault(r, kind, &p);
    }
    demo_params_dispose(&p);
}

static void sim_clear(demo_req_t *r)
{
    demo_params_t p = {0};
    if (gather_params(r, &p) != 0)
        goto out;
    const char *allowed[] = {"endpoint", NULL};
    const char *bad = demo_params_unknown(&p, allowed);
    if (bad) {
        reply_bad_param(r, bad, "unknown parameter '%s' for /simulate/clear (expected endpoint)",
                        bad);
        goto out;
    }
    const char *endpoint = demo_params_get(&p, "endpoint");
    json_t *cleared = json_array(), *errors = json_object();
    if (endpoint && *endpoint) {
        target_t t;
        char err[300];
        if (resolve(r->svc, endpoint, &t, err, sizeof(err)) != 0) {
            json_decref(cleared);
            json_decref(errors);
            reply_bad_param(r, "endpoint", "%s", err);
            goto out;
        }
        if (!t.local) {
            json_decref(cleared);
            json_decref(errors);
            forward(r, t.child, "POST", "clear", &p);
            goto out;
        }
        demo_chaos_clear(r->svc->chaos, t.route);
        json_array_append_new(cleared, json_string(r->svc->node->name));
    } else {
        demo_chaos_clear(r->svc->chaos, NULL);
        json_array_append_new(cleared, json_string(r->svc->node->name));
        for (int i = 0; i < r->svc->n_children; i++) {
            fl_buf_t out;
            fl_buf_init(&out, 1 << 20);
            char err[256];
            int st = raw_call(r->svc, i, "POST", "/simulate/clear", NULL, 0, NULL, &out, err,
                              sizeof(err));
            json_t *j = st == 200 ? json_loadb((const char *)out.data, out.len, 0, NULL) : NULL;
            json_t *sub = json_object_get(j, "cleared");
            if (json_is_array(sub))
                json_array_extend(cleared, sub);
            json_t *suberr = json_object_get(j, "errors");
            if (json_is_object(suberr))
                json_object_update(errors, suberr);
            if (!j)
                json_object_set_new(errors, r->svc->children[i].name,
                                    st > 0 ? json_sprintf("answered %d", st) : json_string(err));
            json_decref(j);
            fl_buf_dispose(&out);
        }
    }
    fl_log(FL_LOG_INFO, "demo", "faults cleared service=%s endpoint=%s", r->svc->node->name,
           endpoint && *endpoint ? endpoint : "*");
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string(json_object_size(errors) ? "partial" : "ok"));
    json_object_set_new(j, "cleared", cleared);
    json_object_set_new(j, "errors", errors);
    demo_reply_json(r, 200, j);
out:
    demo_params_dispose(&p);
}

static void sim_status(demo_req_t *r)
{
    demo_params_t p = {0};
    if (gather_params(r, &p) != 0)
        goto out;
    const char *allowed[] = {NULL};
    const char *bad = demo_params_unknown(&p, allowed);
    if (bad) {
        reply_bad_param(r, bad, "/simulate/status takes no parameters (got '%s')", bad);
        goto out;
    }
    json_t *services = json_object();
    json_t *me = json_object();
    json_object_set_new(me, "service_name", json_string(fl_dt_tracer_service(r->svc->tracer)));
    json_object_set_new(me, "faults", demo_chaos_json(r->svc->chaos));
    json_object_set_new(me, "reachable", json_true());
    json_object_set_new(services, r->svc->node->name, me);
    for (int i = 0; i < r->svc->n_children; i++) {
        fl_buf_t out;
        fl_buf_init(&out, 1 << 20);
        char err[256];
        int st =
            raw_call(r->svc, i, "GET", "/simulate/status", NULL, 0, NULL, &out, err, sizeof(err));
        json_t *j = st == 200 ? json_loadb((const char *)out.data, out.len, 0, NULL) : NULL;
        json_t *sub = json_object_get(j, "services");
        if (json_is_object(sub)) {
            json_object_update(services, sub);
        } else {
            json_t *e = json_object();
            json_object_set_new(e, "reachable", json_false());
            json_object_set_new(e, "error",
                                st > 0 ? json_sprintf("answered %d", st) : json_string(err));
            json_object_set_new(services, r->svc->children[i].name, e);
        }
        json_decref(j);
        fl_buf_dispose(&out);
    }
    json_t *j = json_object();
    json_object_set_new(j, "service", json_string(r->svc->node->name));
    json_object_set_new(j, "services", services);
    demo_reply_json(r, 200, j);
out:
    demo_params_dispose(&p);
}

typedef struct preset {
    const char *name;
    const char *service;
    int kind;
    const char *dflt;
    const char *description;
} preset_t;

static const preset_t presets[] = {
    {"latency_spike", "payment", DEMO_FAULT_DELAY, "1500",
     "payment answers slowly (delay); checkout latency rises with it"},
    {"error_storm", "inventory", DEMO_FAULT_ERROR, "0.8",
     "inventory fails 80 % of requests; checkouts fail with it"},
    {"cascading_failure", "payment", DEMO_FAULT_ERROR, "1.0",
     "payment fails every request; the failure cascades to checkout"},
};

static void sim_preset(demo_req_t *r, const char *name)
{
    const preset_t *ps = NULL;
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (strcmp(presets[i].name, name) == 0)
            ps = &presets[i];
    if (!ps) {
        reply_bad_param(r, "preset",
                        "unknown preset '%s' (known: latency_spike, error_storm, "
                        "cascading_failure)",
                        name);
        return;
    }
    demo_params_t p = {0};
    if (gather_params(r, &p) != 0)
        goto out;
    const char *param = demo_fault_param(ps->kind);
    const char *allowed[] = {param, NULL};
    const char *bad = demo_params_unknown(&p, allowed);
    if (bad) {
        reply_bad_param(r, bad, "unknown parameter '%s' for preset %s (it takes only %s)", bad,
                        ps->name, param);
        goto out;
    }
    if (!demo_params_get(&p, param))
        demo_params_set(&p, param, ps->dflt);
    demo_params_set(&p, "endpoint", ps->service);
    apply_fault(r, ps->kind, &p);
    if (r->status == 200 && r->out) {
        json_t *inner = json_loads(r->out, 0, NULL);
        json_t *j = json_object();
        json_object_set_new(j, "status", json_string("ok"));
        json_object_set_new(j, "preset", json_string(ps->name));
        json_object_set_new(j, "description", json_string(ps->description));
        json_object_set_new(j, "applied", inner ? inner : json_null());
        free(r->out);
        r->out = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
out:
    demo_params_dispose(&p);
}

static void simulate(demo_req_t *r)
{
    const char *action = r->path[9] == '/' ? r->path + 10 : "";
    static const char *const kinds[DEMO_FAULT_KINDS] = {"delay", "error", "timeout",
                                                        "intermittent"};
    int is_get = strcmp(r->method, "GET") == 0, is_post = strcmp(r->method, "POST") == 0;
    if (strcmp(action, "status") == 0) {
        if (!is_get) {
            r->allow = "GET";
            demo_reply_error(r, 405, NULL, "use GET /simulate/status");
            return;
        }
        sim_status(r);
        return;
    }
    int known = strcmp(action, "clear") == 0 || strncmp(action, "preset/", 7) == 0;
    for (int k = 0; k < DEMO_FAULT_KINDS && !known; k++)
        known = strcmp(action, kinds[k]) == 0;
    if (!known) {
        json_t *j = json_object();
        json_object_set_new(j, "error", json_sprintf("unknown action /simulate/%s", action));
        json_object_set_new(j, "actions",
                            json_pack("[s,s,s,s,s,s,s]", "POST /simulate/delay",
                                      "POST /simulate/error", "POST /simulate/timeout",
                                      "POST /simulate/intermittent", "POST /simulate/clear",
                                      "GET /simulate/status", "POST /simulate/preset/{name}"));
        demo_reply_json(r, 404, j);
        return;
    }
    if (!is_post) {
        r->allow = "POST";
        demo_reply_error(r, 405, NULL, "use POST /simulate/%s", action);
        return;
    }
    if (strcmp(action, "clear") == 0) {
        sim_clear(r);
        return;
    }
    if (strncmp(action, "preset/", 7) == 0) {
        sim_preset(r, action + 7);
        return;
    }
    for (int k = 0; k < DEMO_FAULT_KINDS; k++)
        if (strcmp(action, kinds[k]) == 0)
            sim_fault(r, k);
}

/* ---------------------------------------------------------------- main */

static void usage(const demo_service_def_t *def, const topo_node_t *node, FILE *f)
{
    fprintf(f, "usage: faultline-demo-%s [options]\n\n", def->name);
    /* The summary, word-wrapped at 90 columns. */
    const char *p = def->summary;
    while (*p) {
        size_t n = strlen(p);
        if (n > 90) {
            n = 90;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = strcspn(p, " ");
        }
        fprintf(f, "%.*s\n", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
    fprintf(f,
            "\noptions:\n"
            "  --listen HOST:PORT      address to serve on (default 127.0.0.1:%d)\n",
            node->port);
    char left[64];
    for (size_t i = 0; i < N_TOPO; i++) {
        if (topo[i].parent && strcmp(topo[i].parent, node->name) == 0) {
            snprintf(left, sizeof(left), "--%s-url URL", topo[i].name);
            fprintf(f, "  %-22s  the %s service (default http://127.0.0.1:%d)\n", left,
                    topo[i].name, topo[i].port);
        }
    }
    for (size_t i = 0; i < def->n_flags; i++) {
        snprintf(left, sizeof(left), "--%s %s", def->flags[i].name, def->flags[i].arg);
        fprintf(f, "  %-22s  %s\n  %-22s  (default %s)\n", left, def->flags[i].help, "",
                def->flags[i].dflt ? def->flags[i].dflt : "none");
    }
    fprintf(
        f,
        "  --otlp-endpoint URL     OTLP/HTTP base URL of the receiver; /v1/traces is appended\n"
        "                          (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else\n"
        "                          $OTEL_EXPORTER_OTLP_ENDPOINT, else http://127.0.0.1:4318;\n"
        "                          'none' disables export)\n"
        "  --service-name NAME     service.name (default: $OTEL_SERVICE_NAME, else %s)\n"
        "  --workers N             request worker threads (default 32)\n"
        "  --timeout MS            timeout of calls to dependencies (default 5000)\n"
        "  --latency-scale X       scale the simulated work latency (default 1.0; 0: none)\n"
        "  --port-file PATH        write {\"port\": N} once listening\n"
        "  --log-level LEVEL       error|warn|info|debug (default info)\n"
        "  --help                  this text\n"
        "\nfailure injection (on every service; checkout reaches every service by name):\n"
        "  POST /simulate/delay?endpoint=NAME&duration=MS\n"
        "  POST /simulate/error?endpoint=NAME&rate=0.0-1.0\n"
        "  POST /simulate/timeout?endpoint=NAME&duration=MS\n"
        "  POST /simulate/intermittent?endpoint=NAME&probability=0.0-1.0\n"
        "  POST /simulate/clear[?endpoint=NAME]   GET /simulate/status\n"
        "  POST /simulate/preset/latency_spike|error_storm|cascading_failure\n"
        "  NAME is a service (checkout, payment, inventory, fraud, stock) or a route path;\n"
        "  without endpoint the fault applies to the service receiving the request.\n"
        "\nenvironment: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,\n"
        "  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_SCHEDULE_DELAY,\n"
        "  OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_EXPORTER_OTLP_TIMEOUT\n",
        def->name);
}

static int parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if (e == colon + 1 || *e || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}

static int parse_url(const char *url, char *host, size_t hostlen, int *port)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    char hp[256];
    snprintf(hp, sizeof(hp), "%s", url + 7);
    hp[strcspn(hp, "/")] = 0;
    if (!strchr(hp, ':') || hp[strlen(hp) - 1] == ']') {
        size_t l = strlen(hp);
        if (l + 4 >= sizeof(hp))
            return -1;
        strcat(hp, ":80");
    }
    return parse_hostport(hp, host, hostlen, port);
}

static int write_port_file(const char *path, int port)
{
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%.1000s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"port\": %d}\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

int demo_main(const demo_service_def_t *def, int argc, char **argv)
{
    static demo_svc_t svc_storage;
    demo_svc_t *svc = &svc_storage;
    int rc = 1, started = 0;
    svc->def = def;
    svc->node = topo_find(def->name);
    if (!svc->node || def->n_flags > 16) {
        fprintf(stderr, "faultline-demo: unknown service role %s\n", def->name);
        return 2;
    }
    snprintf(svc->listen_host, sizeof(svc->listen_host), "127.0.0.1");
    svc->listen_port = svc->node->port;
    svc->workers = 32;
    svc->timeout_ms = 5000;
    svc->latency_scale = 1.0;
    for (size_t i = 0; i < N_TOPO; i++) {
        if (topo[i].parent && strcmp(topo[i].parent, def->name) == 0 &&
            svc->n_children < MAX_CHILDREN) {
            child_t *c = &svc->children[svc->n_children++];
            c->name = topo[i].name;
            snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%d", topo[i].port);
        }
    }
    const char *otlp = NULL, *service_name = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(def, svc->node, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "faultline-demo-%s: %s '%s' (see --help)\n", def->name,
                    strncmp(a, "--", 2) ? "unexpected argument" : "missing value for", a);
            return 2;
        }
        const char *v = argv[++i];
        const char *name = a + 2;
        int ok = 1;
        if (strcmp(name, "listen") == 0) {
            ok = parse_hostport(v, svc->listen_host, sizeof(svc->listen_host), &svc->listen_port) ==
                 0;
        } else if (strcmp(name, "otlp-endpoint") == 0) {
            otlp = v;
        } else if (strcmp(name, "service-name") == 0) {
            service_name = v;
        } else if (strcmp(name, "workers") == 0) {
            svc->workers = atoi(v);
            ok = svc->workers >= 1 && svc->workers <= 1024;
        } else if (strcmp(name, "timeout") == 0) {
            svc->timeout_ms = atoi(v);
            ok = svc->timeout_ms >= 1;
        } else if (strcmp(name, "latency-scale") == 0) {
            char *e;
            svc->latency_scale = strtod(v, &e);
            ok = e != v && !*e && svc->latency_scale >= 0 && svc->latency_scale <= 100;
        } else if (strcmp(name, "port-file") == 0) {
            snprintf(svc->port_file, sizeof(svc->port_file), "%s", v);
        } else if (strcmp(name, "log-level") == 0) {
            ok = fl_log_set_level_name(v) == FL_OK;
        } else {
            int found = 0;
            for (int c = 0; c < svc->n_children && !found; c++) {
                size_t nl = strlen(svc->children[c].name);
                if (strncmp(name, svc->children[c].name, nl) == 0 &&
                    strcmp(name + nl, "-url") == 0) {
                    snprintf(svc->children[c].url, sizeof(svc->children[c].url), "%s", v);
                    found = 1;
                }
            }
            for (size_t f = 0; f < def->n_flags && !found; f++) {
                if (strcmp(name, def->flags[f].name) == 0) {
                    svc->flag_values[f] = v;
                    found = 1;
                }
            }
            if (!found) {
                fprintf(stderr, "faultline-demo-%s: unknown option %s (see --help)\n", def->name,
                        a);
                return 2;
            }
        }
        if (!ok) {
            fprintf(stderr, "faultline-demo-%s: bad value '%s' for %s (see --help)\n", def->name, v,
                    a);
            return 2;
        }
    }
    for (int c = 0; c < svc->n_children; c++) {
        child_t *ch = &svc->children[c];
        if (parse_url(ch->url, ch->host, sizeof(ch->host), &ch->port) != 0 || ch->port == 0) {
            fprintf(stderr, "faultline-demo-%s: bad --%s-url '%s' (want http://HOST:PORT)\n",
                    def->name, ch->name, ch->url);
            return 2;
        }
    }

    /* Signals are taken synchronously by the main thread; every other thread blocks them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_mutex_init(&svc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&svc->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    svc->started_mono = fl_time_mono_ns();

    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    fl_dt_config_from_env(&cfg, &svc->env, def->name);
    char traces_url[1024];
    if (service_name)
        cfg.service_name = service_name;
    if (otlp) {
        size_t l = strlen(otlp);
        if (strcmp(otlp, "none") == 0 || (l >= 10 && strcmp(otlp + l - 10, "/v1/traces") == 0))
            snprintf(traces_url, sizeof(traces_url), "%s", otlp);
        else
            fl_dt_traces_url(otlp, traces_url, sizeof(traces_url));
        cfg.endpoint = traces_url;
    } else if (!cfg.endpoint) {
        cfg.endpoint = "http://127.0.0.1:4318/v1/traces";
    }
    cfg.service_version = FL_VERSION;
    svc->tracer = fl_dt_tracer_new(&cfg);
    svc->chaos = demo_chaos_new();
    if (!svc->tracer || !svc->chaos)
        goto out;
    if (def->start && def->start(svc) != 0)
        goto out;
    svc->pool = fl_pool_new(svc->workers, 4096, "demo-worker");
    svc->net = fl_net_new(def->name);
    if (!svc->pool || !svc->net)
        goto out_stop;
    fl_net_listen_opts_t lo;
    memset(&lo, 0, sizeof(lo));
    lo.name = def->name;
    lo.host = svc->listen_host;
    lo.port = svc->listen_port;
    lo.handler.on_body = on_body;
    lo.handler.ud = svc;
    lo.max_body = 1 << 20;
    char err[256] = "";
    if (fl_net_listen(svc->net, &lo, err, sizeof(err)) != FL_OK) {
        fl_log(FL_LOG_ERROR, "demo", "cannot listen service=%s addr=%s:%d err=\"%s\"", def->name,
               svc->listen_host, svc->listen_port, err);
        goto out_stop;
    }
    svc->listen_port = fl_net_bound_port(svc->net, 0);
    if (fl_net_start(svc->net) != FL_OK)
        goto out_stop;
    started = 1;
    if (svc->port_file[0] && write_port_file(svc->port_file, svc->listen_port) != 0)
        fl_log(FL_LOG_WARN, "demo", "cannot write the port file path=%s", svc->port_file);
    fl_log(FL_LOG_INFO, "demo", "listening service=%s addr=%s:%d otlp=%s", def->name,
           svc->listen_host, svc->listen_port, cfg.endpoint);

    int sig = 0;
    sigwait(&sigs, &sig);
    fl_log(FL_LOG_INFO, "demo", "stopping service=%s signal=%d", def->name, sig);
    rc = 0;

out_stop:
    /* Wake sleepers, let the workers answer what they hold, then close the server. */
    pthread_mutex_lock(&svc->mu);
    svc->stopping = 1;
    pthread_cond_broadcast(&svc->stop_cv);
    pthread_mutex_unlock(&svc->mu);
    fl_pool_free(svc->pool);
    svc->pool = NULL;
    if (started)
        fl_net_shutdown(svc->net, 2000);
    fl_net_free(svc->net);
    if (def->stop)
        def->stop(svc);
out:
    fl_dt_tracer_free(svc->tracer, 3000);
    demo_chaos_free(svc->chaos);
    fl_dt_env_dispose(&svc->env);
    pthread_cond_destroy(&svc->stop_cv);
    pthread_mutex_destroy(&svc->mu);
    return rc;
}
