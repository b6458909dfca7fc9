/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: the real faultline plus the five demo services on ephemeral ports. Every
 * checkout is one trace across the processes with SERVER -> CLIENT -> SERVER links, and each
 * injected failure shows in the stored spans (and goes away on clear). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { CHECKOUT, PAYMENT, INVENTORY, FRAUD, STOCK, N_SVC };
static const char *const svc_names[N_SVC] = {"checkout", "payment", "inventory", "fraud", "stock"};

static fl_test_server_t srv;
static pid_t svc_pid[N_SVC];
static int svc_port[N_SVC];

static const char ORDER[] = "{\"items\":[{\"sku\":\"SKU-1001\",\"quantity\":1}],"
                            "\"payment_method\":\"card\"}";

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    return (double)fl_time_mono_ns() / 1e6;
}

/* ---------------------------------------------------------------- processes */

static int start_service(int i)
{
    char bin[512], portfile[600], log[600], listen[] = "127.0.0.1:0", otlp[64];
    snprintf(bin, sizeof(bin), "%s/faultline-demo-%s", FL_BUILD_DIR, svc_names[i]);
    snprintf(portfile, sizeof(portfile), "%s/%s.port", srv.dir, svc_names[i]);
    snprintf(log, sizeof(log), "%s/%s.log", srv.dir, svc_names[i]);
    snprintf(otlp, sizeof(otlp), "http://127.0.0.1:%d", srv.http_port);
    unlink(portfile);
    char urls[2][2][128];
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--otlp-endpoint";
    argv[n++] = otlp;
    argv[n++] = "--latency-scale";
    argv[n++] = "0.2";
    argv[n++] = "--timeout";
    argv[n++] = "3000";
    int deps[N_SVC][2] = {{PAYMENT, INVENTORY}, {FRAUD, -1}, {STOCK, -1}, {-1, -1}, {-1, -1}};
    for (int d = 0; d < 2; d++) {
        int c = deps[i][d];
        if (c < 0)
            continue;
        snprintf(urls[d][0], sizeof(urls[d][0]), "--%s-url", svc_names[c]);
        snprintf(urls[d][1], sizeof(urls[d][1]), "http://127.0.0.1:%d", svc_port[c]);
        argv[n++] = urls[d][0];
        argv[n++] = urls[d][1];
    }
    char db[600];
    if (i == STOCK) {
        snprintf(db, sizeof(db), "%s/stock.db", srv.dir);
        argv[n++] = "--db";
        argv[n++] = db;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("OTEL_BSP_SCHEDULE_DELAY", "100", 1);
        unsetenv("OTEL_SERVICE_NAME");
        unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        unsetenv("OTEL_RESOURCE_ATTRIBUTES");
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    svc_pid[i] = pid;
    for (int k = 0; k < 200; k++) { /* 10 s */
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            svc_pid[i] = 0;
            fprintf(stderr, "%s exited during start-up; see %s\n", svc_names[i], log);
            return -1;
        }
        char *text = fl_test_read_file(portfile, NULL);
        if (text) {
            json_t *j = json_loads(text, 0, NULL);
            free(text);
            svc_port[i] = (int)json_integer_value(json_object_get(j, "port"));
            json_decref(j);
            int st = 0;
            json_t *h = svc_port[i] > 0 ? fl_test_get_json(svc_port[i], "/health", &st) : NULL;
            json_decref(h);
            if (st == 200)
                return 0;
        }
        sleep_ms(50);
    }
    return -1;
}

static int stop_service(int i)
{
    if (svc_pid[i] <= 0)
        return 0;
    kill(svc_pid[i], SIGTERM);
    for (int k = 0; k < 300; k++) { /* 15 s */
        int st;
        if (waitpid(svc_pid[i], &st, WNOHANG) == svc_pid[i]) {
            svc_pid[i] = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        sleep_ms(50);
    }
    kill(svc_pid[i], SIGKILL);
    waitpid(svc_pid[i], NULL, 0);
    svc_pid[i] = 0;
    return -1;
}

static int setup(void **state)
{
    (void)state;
    if (fl_test_server_start(&srv, NULL) != 0)
        return -1;
    /* Dependencies first so each caller knows where its callees listen. */
    const int order[N_SVC] = {STOCK, FRAUD, INVENTORY, PAYMENT, CHECKOUT};
    for (int k = 0; k < N_SVC; k++)
        if (start_service(order[k]) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int bad = 0;
    const int order[N_SVC] = {CHECKOUT, PAYMENT, INVENTORY, FRAUD, STOCK};
    for (int k = 0; k < N_SVC; k++) {
        int rc = stop_service(order[k]);
        if (rc != 0) {
            fprintf(stderr, "%s exited with %d\n", svc_names[order[k]], rc);
            bad = 1;
        }
    }
    int rc = fl_test_server_stop(&srv);
    if (!bad && rc == 0)
        fl_test_server_cleanup(&srv);
    else
        fprintf(stderr, "logs kept in %s\n", srv.dir);
    return rc == 0 && !bad ? 0 : -1;
}

/* ---------------------------------------------------------------- HTTP helpers */

typedef struct answer {
    int status;
    json_t *json;
    double ms;
} answer_t;

/* One request with optional extra headers; the answer's JSON (if any) in a->json. */
static answer_t call(int port, const char *method, const char *path, const char *body,
                     const fl_net_header_t *extra, size_t n_extra)
{
    answer_t a = {-1, NULL, 0};
    fl_http_client_opts_t o;
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_ms = 20000;
    fl_http_client_t *c = fl_http_client_new(&o);
    if (!c)
        return a;
    fl_net_header_t h[8];
    size_t nh = 0;
    for (size_t i = 0; i < n_extra && nh < 7; i++)
        h[nh++] = extra[i];
    if (body)
        h[nh++] = (fl_net_header_t){"Content-Type", "application/json"};
    fl_http_response_t r;
    double t0 = now_ms();
    if (fl_http_client_request(c, method, path, h, nh, body, body ? strlen(body) : 0, &r) ==
        FL_OK) {
        a.ms = now_ms() - t0;
        a.status = r.status;
        if (r.body.len)
            a.json = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        fl_http_response_dispose(&r);
    }
    fl_http_client_free(c);
    return a;
}

static answer_t checkout(void)
{
    return call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, NULL, 0);
}

static answer_t simulate(int port, const char *path)
{
    return call(port, strstr(path, "/status") ? "GET" : "POST", path, NULL, NULL, 0);
}

static void clear_all(void)
{
    answer_t a = simulate(svc_port[CHECKOUT], "/simulate/clear");
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "cleared")), N_SVC);
    json_decref(a.json);
}

/* A successful checkout returns its trace id (copied into tid). */
static void checkout_ok(char tid[33])
{
    answer_t a = checkout();
    if (a.status != 200)
        fail_msg("checkout answered %d", a.status);
    const char *t = json_string_value(json_object_get(a.json, "trace_id"));
    assert_non_null(t);
    assert_int_equal(strlen(t), 32);
    snprintf(tid, 33, "%s", t);
    json_decref(a.json);
}

/* A checkout continuing a caller's trace with this trace id (the parent is not stored). */
static answer_t checkout_in(const char *tid)
{
    char tp[64];
    snprintf(tp, sizeof(tp), "00-%s-00f067aa0ba902b7-01", tid);
    fl_net_header_t h[1] = {{"traceparent", tp}};
    return call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, h, 1);
}

/* Poll an /api/traces query until it lists tid. */
static int listed(const char *query, const char *tid)
{
    for (int k = 0; k < 150; k++) {
        int st, found = 0;
        json_t *list = fl_test_get_json(srv.api_port, query, &st);
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(list, "traces"), i, t) found |=
            strcmp(json_string_value(json_object_get(t, "trace_id")), tid) == 0;
        json_decref(list);
        if (found)
            return 1;
        sleep_ms(100);
    }
    return 0;
}

/* ---------------------------------------------------------------- stored spans */

static const char *sget(json_t *span, const char *k)
{
    const char *v = json_string_value(json_object_get(span, k));
    return v ? v : "";
}

/* kind and status_code may be names or OTLP integers. */
static int kind_is(json_t *span, const char *name, int value)
{
    json_t *k = json_object_get(span, "kind");
    if (json_is_integer(k))
        return json_integer_value(k) == value;
    return strcasecmp(json_string_value(k) ? json_string_value(k) : "", name) == 0 ||
           (strncasecmp(sget(span, "kind"), "SPAN_KIND_", 10) == 0 &&
            strcasecmp(sget(span, "kind") + 10, name) == 0);
}

static int is_error(json_t *span)
{
    json_t *s = json_object_get(span, "status_code");
    if (json_is_integer(s))
        return json_integer_value(s) == 2;
    const char *v = json_string_value(s);
    return v && (strcasecmp(v, "error") == 0 || strcasecmp(v, "STATUS_CODE_ERROR") == 0);
}

static double dur_ms(json_t *span)
{
    return (double)json_integer_value(json_object_get(span, "duration_ns")) / 1e6;
}

static json_t *attr(json_t *span, const char *k)
{
    return json_object_get(json_object_get(span, "attributes"), k);
}

static json_t *by_id(json_t *spans, const char *id)
{
    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s) if (strcmp(sget(s, "span_id"), id) == 0) return s;
    return NULL;
}

/* The span of service with this kind whose name starts with prefix (first found). */
static json_t *find(json_t *spans, const char *service, const char *kind, int kv,
                    const char *prefix)
{
    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        if (strcmp(sget(s, "service"), service) == 0 && kind_is(s, kind, kv) &&
            strncmp(sget(s, "name"), prefix, strlen(prefix)) == 0)
            return s;
    }
    return NULL;
}

/* One root (no parent, or a parent outside the store: a caller's own span), every other
 * parent present, and the services wanted (NULL-terminated) all there. */
static int trace_complete(json_t *spans, const char *const *want)
{
    size_t i, roots = 0;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        const char *p = sget(s, "parent_span_id");
        if (!*p || !by_id(spans, p))
            roots++;
    }
    if (roots != 1)
        return 0;
    for (int k = 0; want && want[k]; k++) {
        int found = 0;
        json_array_foreach(spans, i, s) found |= strcmp(sget(s, "service"), want[k]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

/* Poll the API until the trace is complete and stable; returns its span array (owned). */
static json_t *wait_trace(const char *tid, const char *const *want)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/traces/%s", tid);
    size_t last = 0;
    int stable = 0;
    json_t *spans = NULL;
    for (int k = 0; k < 150; k++) { /* 15 s */
        int st;
        json_t *t = fl_test_get_json(srv.api_port, path, &st);
        json_t *sp = json_object_get(t, "spans");
        if (st == 200 && json_is_array(sp) && trace_complete(sp, want)) {
            if (json_array_size(sp) == last && ++stable >= 2) {
                spans = json_incref(sp);
                json_decref(t);
                return spans;
            }
            if (json_array_size(sp) != last)
                stable = 0;
            last = json_array_size(sp);
        }
        json_decref(t);
        sleep_ms(100);
    }
    fail_msg("trace %s never became complete", tid);
    return NULL;
}

static const char *const ALL[] = {"checkout", "payment", "inventory", "fraud", "stock", NULL};

/* SERVER span of callee, its CLIENT parent in caller, whose parent is caller's SERVER span. */
static json_t *assert_hop(json_t *spans, const char *caller, const char *callee)
{
    json_t *srv_span = find(spans, callee, "server", 2, "");
    if (!srv_span)
        fail_msg("no SERVER span of %s", callee);
    json_t *client = by_id(spans, sget(srv_span, "parent_span_id"));
    assert_non_null(client);
    assert_string_equal(sget(client, "service"), caller);
    assert_true(kind_is(client, "client", 3));
    assert_string_equal(json_string_value(attr(client, "peer.service")), callee);
    assert_non_null(attr(client, "server.port"));
    json_t *up = by_id(spans, sget(client, "parent_span_id"));
    assert_non_null(up);
    assert_string_equal(sget(up, "service"), caller);
    assert_true(kind_is(up, "server", 2));
    /* The callee ran inside the caller's call. */
    json_int_t cs = json_integer_value(json_object_get(client, "start_time_unix_nano"));
    json_int_t ss = json_integer_value(json_object_get(srv_span, "start_time_unix_nano"));
    assert_true(ss + 50000000 >= cs); /* clocks are the same host; allow 50 ms of skew */
    return srv_span;
}

/* ---------------------------------------------------------------- tests */

static void test_e2e_demo_one_trace(void **state)
{
    (void)state;
    clear_all();
    for (int n = 0; n < 3; n++) {
        char tid[33];
        checkout_ok(tid);
        json_t *spans = wait_trace(tid, ALL);
        size_t i;
        json_t *s;
        json_array_foreach(spans, i, s) assert_string_equal(sget(s, "trace_id"), tid);

        json_t *root = find(spans, "checkout", "server", 2, "POST /checkout");
        assert_non_null(root);
        assert_string_equal(sget(root, "parent_span_id"), "");
        assert_string_equal(json_string_value(attr(root, "http.request.method")), "POST");
        assert_string_equal(json_string_value(attr(root, "http.route")), "/checkout");
        assert_string_equal(json_string_value(attr(root, "url.path")), "/checkout");
        assert_int_equal(json_integer_value(attr(root, "http.response.status_code")), 200);
        assert_int_equal(json_integer_value(attr(root, "server.port")), svc_port[CHECKOUT]);
        assert_false(is_error(root));

        json_t *pay = assert_hop(spans, "checkout", "payment");
        assert_string_equal(sget(pay, "name"), "POST /charge");
        assert_hop(spans, "payment", "fraud");
        assert_hop(spans, "checkout", "inventory");
        json_t *stock = assert_hop(spans, "inventory", "stock");
        assert_string_equal(json_string_value(attr(stock, "http.route")), "/stock/reserve");

        /* The store's statements: CLIENT spans with db.system=sqlite under the stock span. */
        int db_spans = 0;
        json_array_foreach(spans, i, s)
        {
            if (!attr(s, "db.system"))
                continue;
            db_spans++;
            assert_string_equal(json_string_value(attr(s, "db.system")), "sqlite");
            assert_string_equal(json_string_value(attr(s, "db.name")), "stock.db");
            assert_non_null(attr(s, "db.operation"));
            assert_true(kind_is(s, "client", 3));
            assert_string_equal(sget(s, "service"), "stock");
            assert_string_equal(sget(s, "parent_span_id"), sget(stock, "span_id"));
        }
        assert_true(db_spans >= 3); /* BEGIN, SELECT, UPDATE, COMMIT at least */
        assert_non_null(find(spans, "stock", "client", 3, "UPDATE stock"));
        json_decref(spans);
    }

    /* The API lists it by service. */
    int st;
    json_t *list = fl_test_get_json(srv.api_port, "/api/traces?service=checkout&limit=50", &st);
    assert_int_equal(st, 200);
    assert_true(json_array_size(json_object_get(list, "traces")) >= 3);
    json_decref(list);
}

static void test_e2e_demo_traceparent(void **state)
{
    (void)state;
    clear_all();
    const char *tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    fl_net_header_t h[2] = {
        {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {"tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}};
    answer_t a = call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, h, 2);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "trace_id")), tid);
    json_decref(a.json);
    /* The caller's span is not stored, so the root is the checkout span under it. */
    json_t *spans = wait_trace(tid, ALL);
    json_t *root = find(spans, "checkout", "server", 2, "POST /checkout");
    assert_non_null(root);
    assert_string_equal(sget(root, "parent_span_id"), "00f067aa0ba902b7");
    json_t *fraud = find(spans, "fraud", "server", 2, "");
    assert_string_equal(sget(fraud, "trace_state"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    json_decref(spans);

    /* An invalid traceparent (uppercase hex) starts a new trace. */
    fl_net_header_t bad[1] = {
        {"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}};
    a = call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, bad, 1);
    assert_int_equal(a.status, 200);
    const char *got = json_string_value(json_object_get(a.json, "trace_id"));
    assert_non_null(got);
    assert_string_not_equal(got, tid);
    assert_string_not_equal(got, "4bf92f3577b34da6a3ce929d0e0e4736");
    json_decref(a.json);
}

/* The injected delay (ms) and the bound an unaffected span stays under: far enough apart that
 * a loaded machine (ASan, a busy CI runner) slowing the other spans down several times cannot
 * put them on the wrong side. */
#define DELAY_MS 1000
#define UNDELAYED_MS 750

static void test_e2e_demo_delay(void **state)
{
    (void)state;
    clear_all();
    char path[96];
    snprintf(path, sizeof(path), "/simulate/delay?endpoint=payment&duration=%d", DELAY_MS);
    answer_t a = simulate(svc_port[CHECKOUT], path);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "service")), "payment");
    json_decref(a.json);

    char tid[33];
    a = checkout();
    assert_int_equal(a.status, 200);
    assert_true(a.ms >= DELAY_MS);
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(a.json, "trace_id")));
    json_decref(a.json);
    json_t *spans = wait_trace(tid, ALL);
    json_t *pay = find(spans, "payment", "server", 2, "");
    assert_true(dur_ms(pay) >= DELAY_MS);
    assert_int_equal(json_integer_value(attr(pay, "faultline.demo.injected_delay_ms")), DELAY_MS);
    assert_false(is_error(pay));
    assert_true(dur_ms(find(spans, "checkout", "server", 2, "")) >= DELAY_MS);
    assert_true(dur_ms(find(spans, "checkout", "client", 3, "POST /charge")) >= DELAY_MS);
    json_t *inv = find(spans, "inventory", "server", 2, ""); /* others unaffected */
    assert_true(dur_ms(inv) < UNDELAYED_MS);
    assert_null(attr(inv, "faultline.demo.injected_delay_ms"));
    json_decref(spans);

    /* The MVP's query finds it. */
    int st, found = 0;
    char query[96];
    snprintf(query, sizeof(query), "/api/traces?service=payment&min_duration_ms=%d", UNDELAYED_MS);
    json_t *list = fl_test_get_json(srv.api_port, query, &st);
    assert_int_equal(st, 200);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(list, "traces"), i, t) found |=
        strcmp(sget(t, "trace_id"), tid) == 0;
    assert_true(found);
    json_decref(list);

    clear_all();
    checkout_ok(tid);
    spans = wait_trace(tid, ALL);
    pay = find(spans, "payment", "server", 2, "");
    assert_true(dur_ms(pay) < UNDELAYED_MS);
    assert_null(attr(pay, "faultline.demo.injected_delay_ms"));
    json_decref(spans);
}

/* The exception event of a span, or NULL. */
static json_t *exception_event(json_t *span)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(span, "events"), i,
                       e) if (strcmp(sget(e, "name"), "exception") == 0) return e;
    return NULL;
}

static void test_e2e_demo_error(void **state)
{
    (void)state;
    clear_all();
    answer_t a = simulate(svc_port[CHECKOUT], "/simulate/error?endpoint=inventory&rate=1.0");
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    char tid[33] = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";
    a = checkout_in(tid);
    assert_int_equal(a.status, 502);
    json_decref(a.json);
    /* The API's error filter finds it by the failing service. */
    assert_true(listed("/api/traces?service=inventory&error=true", tid));
    const char *const want[] = {"checkout", "inventory", NULL};
    json_t *spans = wait_trace(tid, want);
    json_t *inv = find(spans, "inventory", "server", 2, "");
    assert_true(is_error(inv));
    assert_int_equal(json_integer_value(attr(inv, "http.response.status_code")), 500);
    assert_string_equal(json_string_value(attr(inv, "error.type")), "SimulatedError");
    json_t *ex = exception_event(inv);
    assert_non_null(ex);
    assert_string_equal(json_string_value(attr(ex, "exception.type")), "SimulatedError");
    assert_non_null(strstr(json_string_value(attr(ex, "exception.message")), "inventory"));
    assert_true(strlen(json_string_value(attr(ex, "exception.stacktrace"))) > 10);
    assert_true(is_error(find(spans, "checkout", "client", 3, "POST /reserve")));
    json_t *root = find(spans, "checkout", "server", 2, "POST /checkout");
    assert_true(is_error(root));
    assert_int_equal(json_integer_value(attr(root, "http.response.status_code")), 502);
    /* Inventory failed first, so payment was never called. */
    assert_null(find(spans, "payment", "server", 2, ""));
    assert_null(find(spans, "stock", "server", 2, ""));
    json_decref(spans);

    clear_all();
    checkout_ok(tid);
    spans = wait_trace(tid, ALL);
    assert_false(is_error(find(spans, "inventory", "server", 2, "")));
    assert_false(is_error(find(spans, "checkout", "server", 2, "")));
    json_decref(spans);
}

static void test_e2e_demo_timeout(void **state)
{
    (void)state;
    clear_all();
    char path[96];
    snprintf(path, sizeof(path), "/simulate/timeout?endpoint=fraud&duration=%d", DELAY_MS);
    answer_t a = simulate(svc_port[CHECKOUT], path);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    fl_net_header_t h[1] = {
        {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
    a = call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, h, 1);
    assert_int_equal(a.status, 504);
    assert_true(a.ms >= DELAY_MS);
    json_decref(a.json);
    const char *const want[] = {"checkout", "payment", "fraud", NULL};
    json_t *spans = wait_trace("0af7651916cd43dd8448eb211c80319c", want);
    json_t *fraud = find(spans, "fraud", "server", 2, "");
    assert_true(is_error(fraud));
    assert_true(dur_ms(fraud) >= DELAY_MS);
    assert_int_equal(json_integer_value(attr(fraud, "http.response.status_code")), 504);
    assert_string_equal(json_string_value(attr(fraud, "error.type")), "timeout");
    assert_non_null(exception_event(fraud));
    json_t *root = find(spans, "checkout", "server", 2, "");
    assert_true(is_error(root));
    assert_int_equal(json_integer_value(attr(root, "http.response.status_code")), 504);
    json_decref(spans);

    clear_all();
    a = checkout();
    assert_int_equal(a.status, 200);
    assert_true(a.ms < UNDELAYED_MS);
    json_decref(a.json);
}

static void test_e2e_demo_intermittent(void **state)
{
    (void)state;
    clear_all();
    answer_t a =
        simulate(svc_port[CHECKOUT], "/simulate/intermittent?endpoint=stock&probability=1");
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    fl_net_header_t h[1] = {
        {"traceparent", "00-11111111111111111111111111111111-2222222222222222-01"}};
    a = call(svc_port[CHECKOUT], "POST", "/checkout", ORDER, h, 1);
    assert_int_equal(a.status, 502);
    json_decref(a.json);
    const char *const want[] = {"checkout", "inventory", "stock", NULL};
    json_t *spans = wait_trace("11111111111111111111111111111111", want);
    json_t *stock = find(spans, "stock", "server", 2, "");
    assert_true(is_error(stock));
    assert_int_equal(json_integer_value(attr(stock, "http.response.status_code")), 503);
    assert_string_equal(json_string_value(attr(exception_event(stock), "exception.type")),
                        "IntermittentFailure");
    assert_true(is_error(find(spans, "inventory", "server", 2, "")));
    json_decref(spans);

    /* Half the requests fail: some do, some don't (16 tries: 2^-15 odds of a false alarm). */
    a = simulate(svc_port[CHECKOUT], "/simulate/intermittent?endpoint=stock&probability=0.5");
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    int ok = 0, failed = 0;
    for (int i = 0; i < 16; i++) {
        a = checkout();
        if (a.status == 200)
            ok++;
        else if (a.status == 502)
            failed++;
        json_decref(a.json);
    }
    assert_int_equal(ok + failed, 16);
    assert_true(ok > 0 && failed > 0);

    clear_all();
    for (int i = 0; i < 4; i++) {
        a = checkout();
        assert_int_equal(a.status, 200);
        json_decref(a.json);
    }
}

static void test_e2e_demo_presets(void **state)
{
    (void)state;
    clear_all();
    /* latency_spike: payment slows down. */
    answer_t a = simulate(svc_port[CHECKOUT], "/simulate/preset/latency_spike?duration=300");
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "preset")), "latency_spike");
    json_decref(a.json);
    char tid[33];
    checkout_ok(tid);
    json_t *spans = wait_trace(tid, ALL);
    assert_true(dur_ms(find(spans, "payment", "server", 2, "")) >= 300);
    json_decref(spans);
    a = simulate(svc_port[CHECKOUT], "/simulate/status");
    assert_int_equal(a.status, 200);
    json_t *pf =
        json_object_get(json_object_get(json_object_get(a.json, "services"), "payment"), "faults");
    assert_int_equal(json_array_size(pf), 1);
    assert_string_equal(sget(json_array_get(pf, 0), "fault"), "delay");
    json_decref(a.json);
    clear_all();

    /* error_storm: inventory fails 80 % of requests. */
    a = simulate(svc_port[CHECKOUT], "/simulate/preset/error_storm");
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    a = simulate(svc_port[CHECKOUT], "/simulate/status");
    json_t *inf = json_object_get(json_object_get(json_object_get(a.json, "services"), "inventory"),
                                  "faults");
    assert_int_equal(json_array_size(inf), 1);
    assert_true(json_number_value(json_object_get(json_array_get(inf, 0), "rate")) == 0.8);
    json_decref(a.json);
    int failed = 0;
    for (int i = 0; i < 12; i++) {
        a = checkout();
        failed += a.status == 502;
        json_decref(a.json);
    }
    assert_true(failed >= 3); /* expected 9.6 of 12; fewer than 3 has odds of 5e-6 */
    clear_all();

    /* cascading_failure: payment fails every request, and checkout with it. */
    a = simulate(svc_port[CHECKOUT], "/simulate/preset/cascading_failure");
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    const char *const want[] = {"checkout", "payment", "inventory", "stock", NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(tid, sizeof(tid), "ca5cade%025d", i);
        a = checkout_in(tid);
        assert_int_equal(a.status, 502);
        json_decref(a.json);
        spans = wait_trace(tid, want);
        json_t *pay = find(spans, "payment", "server", 2, "");
        assert_true(is_error(pay));
        assert_string_equal(json_string_value(attr(exception_event(pay), "exception.type")),
                            "SimulatedError");
        assert_true(is_error(find(spans, "checkout", "client", 3, "POST /charge")));
        assert_true(is_error(find(spans, "checkout", "server", 2, "")));
        assert_false(is_error(find(spans, "inventory", "server", 2, "")));
        assert_null(find(spans, "fraud", "server", 2, "")); /* payment failed before fraud */
        json_decref(spans);
    }
    assert_true(listed("/api/traces?service=checkout&error=true", tid));
    clear_all();
    a = checkout();
    assert_int_equal(a.status, 200);
    json_decref(a.json);
}

static void expect_400(int port, const char *path, const char *param)
{
    answer_t a = simulate(port, path);
    if (a.status != 400)
        fail_msg("%s answered %d, not 400", path, a.status);
    assert_non_null(a.json);
    const char *msg = json_string_value(json_object_get(a.json, "error"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 10);
    if (param)
        assert_string_equal(json_string_value(json_object_get(a.json, "parameter")), param);
    json_decref(a.json);
}

static void test_e2e_demo_bad_params(void **state)
{
    (void)state;
    int co = svc_port[CHECKOUT];
    expect_400(co, "/simulate/delay?endpoint=payment", "duration");
    expect_400(co, "/simulate/delay?endpoint=payment&duration=abc", "duration");
    expect_400(co, "/simulate/delay?endpoint=payment&duration=-5", "duration");
    expect_400(co, "/simulate/delay?endpoint=payment&duration=10000000", "duration");
    expect_400(co, "/simulate/timeout?endpoint=fraud&duration=1.5", "duration");
    expect_400(co, "/simulate/error?endpoint=inventory&rate=1.5", "rate");
    expect_400(co, "/simulate/error?endpoint=inventory&rate=x", "rate");
    expect_400(co, "/simulate/error?endpoint=inventory", "rate");
    expect_400(co, "/simulate/intermittent?endpoint=stock&probability=-0.1", "probability");
    expect_400(co, "/simulate/error?endpoint=nosuch&rate=0.5", "endpoint");
    expect_400(co, "/simulate/error?endpoint=payment&rate=0.5&colour=red", "colour");
    expect_400(co, "/simulate/preset/nosuch", "preset");
    expect_400(co, "/simulate/preset/error_storm?rate=2", "rate");
    expect_400(co, "/simulate/delay?endpoint=payment&duration=%zz", NULL);
    /* A service cannot reach services outside its own subtree. */
    expect_400(svc_port[PAYMENT], "/simulate/error?endpoint=stock&rate=0.5", "endpoint");
    /* Nothing was changed by the bad requests. */
    answer_t a = simulate(co, "/simulate/status");
    json_t *services = json_object_get(a.json, "services");
    assert_int_equal(json_object_size(services), N_SVC);
    const char *name;
    json_t *v;
    json_object_foreach(services, name, v)
        assert_int_equal(json_array_size(json_object_get(v, "faults")), 0);
    json_decref(a.json);

    /* Each service has the API itself: without endpoint it applies to that service. */
    a = simulate(svc_port[FRAUD], "/simulate/delay?duration=300");
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "service")), "fraud");
    json_decref(a.json);
    a = call(svc_port[FRAUD], "POST", "/score", "{\"amount_cents\":100}", NULL, 0);
    assert_int_equal(a.status, 200);
    assert_true(a.ms >= 300);
    json_decref(a.json);
    /* A route path names one operation: checkout's own POST /payment fails, /checkout not. */
    a = simulate(co, "/simulate/error?endpoint=/payment&rate=1");
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "service")), "checkout");
    assert_string_equal(json_string_value(json_object_get(a.json, "route")), "/payment");
    json_decref(a.json);
    a = call(co, "POST", "/payment", NULL, NULL, 0);
    assert_int_equal(a.status, 500);
    json_decref(a.json);
    a = checkout();
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    /* ... and payment's /charge, two levels down, fails both. */
    a = simulate(co, "/simulate/error?endpoint=/charge&rate=1");
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "service")), "payment");
    json_decref(a.json);
    a = checkout();
    assert_int_equal(a.status, 502);
    json_decref(a.json);
    clear_all();
    a = call(co, "POST", "/payment", NULL, NULL, 0);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
}

static void test_e2e_demo_health_and_load(void **state)
{
    (void)state;
    clear_all();
    int st;
    json_t *h = fl_test_get_json(svc_port[CHECKOUT], "/health", &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(h, "status")), "healthy");
    assert_true(json_is_number(json_object_get(h, "uptime")));
    assert_true(json_is_string(json_object_get(h, "version")));
    json_decref(h);

    char out[600], url[64], base[64];
    snprintf(out, sizeof(out), "%s/load.json", srv.dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", svc_port[CHECKOUT]);
    snprintf(base, sizeof(base), "%s/faultline-load", FL_BUILD_DIR);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        close(fd);
        execl(base, base, "live", "--url", url, "--rate", "40", "--concurrency", "2", "--requests",
              "12", "--duration", "20s", "--json", "--quiet", (char *)NULL);
        _exit(127);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    char *text = fl_test_read_file(out, NULL);
    assert_non_null(text);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "requests")), 12);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "status"), "200")), 12);
    json_t *lat = json_object_get(j, "latency_ms");
    double p50 = json_number_value(json_object_get(lat, "p50"));
    double p99 = json_number_value(json_object_get(lat, "p99"));
    assert_true(p50 > 0 && p99 >= p50);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_demo_one_trace),
        cmocka_unit_test(test_e2e_demo_traceparent),
        cmocka_unit_test(test_e2e_demo_delay),
        cmocka_unit_test(test_e2e_demo_error),
        cmocka_unit_test(test_e2e_demo_timeout),
        cmocka_unit_test(test_e2e_demo_intermittent),
        cmocka_unit_test(test_e2e_demo_presets),
        cmocka_unit_test(test_e2e_demo_bad_params),
        cmocka_unit_test(test_e2e_demo_health_and_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
