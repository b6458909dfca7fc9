/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: the MVP's three fault scenarios (fast-forwarded by faultline-load synthetic)
 * each give exactly one incident naming the faulty service at rank 1; a healthy hour gives
 * none; the lifecycle, persistence across a restart and webhook delivery (every format,
 * retry after a 503) work against the real server. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEC 1000000000ull
#define MIN (60 * SEC)
#define SHOP FL_SOURCE_DIR "/tools/load/topologies/shop.json"

/* A start in the past so the whole run ends before now, on a minute boundary. */
static uint64_t past_start(uint64_t duration_ns)
{
    return fl_test_synthetic_start(duration_ns);
}

static void load(const fl_test_server_t *s, uint64_t start, const char *duration, const char *seed,
                 const char *const *faults)
{
    assert_int_equal(fl_test_run_synthetic(s->http_port, SHOP, start, duration, seed, faults, NULL),
                     0);
}

static int post(const fl_test_server_t *s, const char *path, const char *body, json_t **out)
{
    fl_buf_t b;
    int st = fl_test_http(s->api_port, "POST", path, body ? "application/json" : NULL, NULL, body,
                          body ? strlen(body) : 0, &b, NULL, 0);
    if (out)
        *out = b.len ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
    fl_buf_dispose(&b);
    return st;
}

/* POST /aiops/analyze up to until; returns the response. */
static json_t *analyze(const fl_test_server_t *s, uint64_t until)
{
    char path[128];
    json_t *j = NULL;
    snprintf(path, sizeof(path), "/aiops/analyze?until=%llu", (unsigned long long)until);
    int st = post(s, path, NULL, &j);
    if (st != 200 || !j)
        fail_msg("POST %s answered %d", path, st);
    return j;
}

static json_t *incidents(const fl_test_server_t *s, const char *query)
{
    char path[256];
    int st;
    snprintf(path, sizeof(path), "/aiops/incidents%s", query);
    json_t *j = fl_test_get_json(s->api_port, path, &st);
    if (st != 200 || !j)
        fail_msg("GET %s answered %d", path, st);
    json_t *arr = json_incref(json_object_get(j, "incidents"));
    json_decref(j);
    assert_true(json_is_array(arr));
    return arr;
}

static uint64_t u64_of(json_t *v)
{
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoull(json_string_value(v), NULL, 10);
    return 0;
}

static const char *str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void dump(json_t *arr)
{
    char *t = json_dumps(arr, JSON_INDENT(1));
    fprintf(stderr, "%s\n", t ? t : "?");
    free(t);
}

static int has_string(json_t *arr, const char *want)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (json_is_string(x) && !strcmp(json_string_value(x), want))
            return 1;
    }
    return 0;
}

/* Exactly one incident, its root cause at rank 1 is service (operation), it lists endpoint
 * among the affected ones and was detected within 40 s (event time) after the fault began.
 * Returns the incident (a new reference). */
static json_t *check_one(const fl_test_server_t *s, const char *service, const char *operation,
                         const char *endpoint, uint64_t fault_start)
{
    json_t *arr = incidents(s, "?status=all");
    if (json_array_size(arr) != 1) {
        dump(arr);
        fail_msg("%zu incidents, want exactly 1", json_array_size(arr));
    }
    json_t *inc = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    json_t *rc = json_object_get(inc, "root_cause");
    json_t *c0 = json_array_get(json_object_get(inc, "candidates"), 0);
    if (strcmp(str(rc, "service"), service) || strcmp(str(rc, "operation"), operation) ||
        strcmp(str(c0, "service"), service) ||
        !has_string(json_object_get(inc, "affected_endpoints"), endpoint) ||
        strncmp(str(inc, "id"), "INC-", 4)) {
        dump(inc);
        fail_msg("root cause / endpoints: want %s %s and endpoint %s", service, operation,
                 endpoint);
    }
    uint64_t fd = u64_of(json_object_get(inc, "first_detected_unix_nano"));
    if (fd < fault_start || fd > fault_start + 40 * SEC) {
        dump(inc);
        fail_msg("first detected %.1f s after the fault (want 0..40 s)",
                 ((double)fd - (double)fault_start) / 1e9);
    }
    assert_true(json_array_size(json_object_get(inc, "timeline")) > 0);
    assert_true(json_array_size(json_object_get(inc, "anomalies")) > 0);
    assert_non_null(json_object_get(json_object_get(inc, "impact"), "blast_radius"));
    assert_true(
        json_is_array(json_object_get(json_object_get(inc, "trace_correlation"), "trace_ids")));
    fprintf(stderr, "  %s %s severity=%s detected +%.0fs: %s\n", str(inc, "id"), str(inc, "title"),
            str(inc, "severity"), ((double)fd - (double)fault_start) / 1e9, str(rc, "issue"));
    return inc;
}

/* Run one scenario on a fresh server: 30 min healthy, then the fault until the end. */
static void scenario(fl_test_server_t *s, const char *const *extra, const char *fault,
                     const char *seed, uint64_t *fault_start)
{
    assert_int_equal(fl_test_server_start(s, extra), 0);
    uint64_t start = past_start(34 * MIN);
    const char *faults[] = {fault, NULL};
    load(s, start, "34m", seed, faults);
    json_t *r = analyze(s, start + 34 * MIN);
    json_decref(r);
    *fault_start = start + 30 * MIN;
}

/* ---------------------------------------------------------------- lifecycle + persistence */

static void test_incidents_latency_lifecycle_restart(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    uint64_t fs;
    scenario(&s, NULL, "kind=latency,target=payment.POST /charge,factor=5,start=30m,duration=10m",
             "101", &fs);
    json_t *inc = check_one(&s, "payment", "POST /charge", "payment POST /charge", fs);
    char id[64], path[160];
    snprintf(id, sizeof(id), "%s", str(inc, "id"));
    json_decref(inc);

    /* Default listing: open and investigating; filters. */
    json_t *arr = incidents(&s, "");
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    arr = incidents(&s, "?service=payment");
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    arr = incidents(&s, "?service=nosuch");
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    int st;
    json_t *j = fl_test_get_json(s.api_port, "/aiops/incidents?status=bogus", &st);
    assert_int_equal(st, 400);
    json_decref(j);
    j = fl_test_get_json(s.api_port, "/aiops/incidents/INC-0000000000000000", &st);
    assert_int_equal(st, 404);
    json_decref(j);
    snprintf(path, sizeof(path), "/aiops/incidents/%s", id);
    j = fl_test_get_json(s.api_port, path, &st);
    assert_int_equal(st, 200);
    assert_string_equal(str(j, "id"), id);
    json_decref(j);

    /* Lifecycle: resolve needs a body; acknowledge once; resolve; no way back. */
    snprintf(path, sizeof(path), "/aiops/incidents/%s/resolve", id);
    assert_int_equal(post(&s, path, NULL, NULL), 400);
    assert_int_equal(post(&s, path, "{not json", NULL), 400);
    assert_int_equal(post(&s, path, "{\"resolution\": \"x\"}", NULL), 400);
    snprintf(path, sizeof(path), "/aiops/incidents/%s/acknowledge", id);
    assert_int_equal(post(&s, path, NULL, &j), 200);
    assert_string_equal(str(j, "status"), "investigating");
    json_decref(j);
    assert_int_equal(post(&s, path, NULL, &j), 409);
    assert_true(strlen(str(j, "error")) > 0);
    json_decref(j);
    assert_int_equal(post(&s, "/aiops/incidents/INC-0000000000000000/acknowledge", NULL, NULL),
                     404);
    snprintf(path, sizeof(path), "/aiops/incidents/%s/resolve", id);
    assert_int_equal(post(&s, path,
                          "{\"resolution\": \"rolled back payment 1.4.2\", \"resolved_by\": "
                          "\"alice\"}",
                          &j),
                     200);
    assert_string_equal(str(j, "status"), "resolved");
    assert_string_equal(str(j, "resolution"), "rolled back payment 1.4.2");
    assert_string_equal(str(j, "resolved_by"), "alice");
    json_decref(j);
    assert_int_equal(post(&s, path, "{\"resolution\": \"again\", \"resolved_by\": \"bob\"}", &j),
                     409);
    fprintf(stderr, "  409: %s\n", str(j, "error"));
    json_decref(j);
    snprintf(path, sizeof(path), "/aiops/incidents/%s/acknowledge", id);
    assert_int_equal(post(&s, path, NULL, NULL), 409);
    arr = incidents(&s, ""); /* resolved: no longer in the default list */
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    json_t *before = incidents(&s, "?status=all");

    /* Persistence: the same incidents after a restart on the same database. */
    assert_int_equal(fl_test_server_stop(&s), 0);
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    json_t *after = incidents(&s, "?status=all");
    if (!json_equal(before, after)) {
        dump(before);
        dump(after);
        fail_msg("incidents differ after a restart");
    }
    json_decref(before);
    json_decref(after);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

/* ---------------------------------------------------------------- the other MVP scenarios */

static void test_incidents_inventory_errors(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    uint64_t fs;
    scenario(&s, NULL, "kind=error,target=inventory.GET /stock,rate=0.8,start=30m,duration=10m",
             "202", &fs);
    json_t *inc = check_one(&s, "inventory", "GET /stock", "inventory GET /stock", fs);
    assert_string_equal(str(json_object_get(inc, "root_cause"), "kind"), "error");
    assert_true(u64_of(json_object_get(json_object_get(inc, "impact"), "failed_requests")) > 0);
    json_decref(inc);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

static void test_incidents_payment_cascade(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    uint64_t fs;
    scenario(&s, NULL, "kind=error,target=payment.POST /charge,rate=1,start=30m,duration=10m",
             "303", &fs);
    json_t *inc = check_one(&s, "payment", "POST /charge", "payment POST /charge", fs);
    /* The cascade: checkout fails too and is listed, but ranks below payment. */
    assert_true(has_string(json_object_get(inc, "affected_endpoints"), "checkout POST /checkout"));
    assert_true(has_string(json_object_get(inc, "affected_services"), "checkout"));
    json_decref(inc);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

static void test_incidents_healthy_hour(void **state)
{
    (void)state;
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, NULL), 0);
    uint64_t start = past_start(60 * MIN);
    load(&s, start, "60m", "404", NULL);
    json_t *r = analyze(&s, start + 60 * MIN);
    json_t *ch = json_object_get(r, "incidents");
    assert_non_null(ch);
    assert_int_equal(json_array_size(json_object_get(ch, "opened")), 0);
    json_decref(r);
    json_t *arr = incidents(&s, "?status=all");
    if (json_array_size(arr)) {
        dump(arr);
        fail_msg("a healthy hour opened %zu incidents", json_array_size(arr));
    }
    json_decref(arr);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
}

/* ---------------------------------------------------------------- webhooks */

#define MAX_HOOKS 16

/* A tiny HTTP receiver: one request per connection; the first fail_first requests get 503
 * with Retry-After: 1, the rest 200 "ok". Bodies are kept in order. */
typedef struct hook_server {
    int fd, port, fail_first, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    char *bodies[MAX_HOOKS];
    char paths[MAX_HOOKS][64];
    int statuses[MAX_HOOKS];
    int n;
} hook_server_t;

static void *hook_main(void *arg)
{
    hook_server_t *h = arg;
    for (;;) {
        int c = accept(h->fd, NULL, NULL);
        if (c < 0)
            break;
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop) {
            close(c);
            break;
        }
        fl_buf_t b;
        fl_buf_init(&b, 0);
        char tmp[4096];
        size_t want = (size_t)-1, hdr_end = 0;
        while (b.len < want) {
            ssize_t r = recv(c, tmp, sizeof(tmp), 0);
            if (r <= 0)
                break;
            fl_buf_append(&b, tmp, (size_t)r);
            if (!hdr_end) {
                fl_buf_putc(&b, 0);
                b.len--;
                char *e = strstr((char *)b.data, "\r\n\r\n");
                if (e) {
                    hdr_end = (size_t)(e - (char *)b.data) + 4;
                    char *cl = strcasestr((char *)b.data, "content-length:");
                    want = hdr_end + (cl ? strtoul(cl + 15, NULL, 10) : 0);
                }
            }
        }
        pthread_mutex_lock(&h->mu);
        int status = h->n < h->fail_first ? 503 : 200;
        if (hdr_end && h->n < MAX_HOOKS) {
            h->bodies[h->n] = strndup((char *)b.data + hdr_end, b.len - hdr_end);
            sscanf((char *)b.data, "POST %63s", h->paths[h->n]);
            h->statuses[h->n] = status;
            h->n++;
        }
        pthread_mutex_unlock(&h->mu);
        const char *resp = status == 503 ? "HTTP/1.1 503 Service Unavailable\r\nRetry-After: "
                                           "1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                                         : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: "
                                           "close\r\n\r\nok";
        ssize_t wr = send(c, resp, strlen(resp), MSG_NOSIGNAL);
        (void)wr;
        close(c);
        fl_buf_dispose(&b);
    }
    return NULL;
}

static void hook_start(hook_server_t *h, int fail_first)
{
    memset(h, 0, sizeof(*h));
    h->fail_first = fail_first;
    pthread_mutex_init(&h->mu, NULL);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(h->fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    assert_int_equal(bind(h->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(h->fd, 16), 0);
    assert_int_equal(getsockname(h->fd, (struct sockaddr *)&a, &al), 0);
    h->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&h->thread, NULL, hook_main, h), 0);
}

static void hook_stop(hook_server_t *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    /* Wake accept with a connection of our own. */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)h->port);
    if (connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
        shutdown(h->fd, SHUT_RDWR);
    pthread_join(h->thread, NULL);
    close(c);
    close(h->fd);
    for (int i = 0; i < h->n; i++)
        free(h->bodies[i]);
    pthread_mutex_destroy(&h->mu);
}

/* Wait (up to 15 s) until the receiver has n requests. */
static int hook_wait(hook_server_t *h, int n)
{
    uint64_t end = fl_time_mono_ns() + 15 * SEC;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int got = h->n;
        pthread_mutex_unlock(&h->mu);
        if (got >= n || fl_time_mono_ns() > end)
            return got;
        usleep(20000);
    }
}

static json_t *hook_body(hook_server_t *h, int i)
{
    pthread_mutex_lock(&h->mu);
    json_t *j = json_loads(h->bodies[i], 0, NULL);
    pthread_mutex_unlock(&h->mu);
    if (!j)
        fail_msg("webhook body %d is not JSON: %s", i, h->bodies[i]);
    return j;
}

/* The webhook counters of /aiops/status. */
static uint64_t webhook_count(const fl_test_server_t *s, const char *key)
{
    int st;
    json_t *status = fl_test_get_json(s->api_port, "/aiops/status", &st);
    assert_int_equal(st, 200);
    json_t *wh = json_object_get(json_object_get(status, "analysis_runtime"), "webhooks");
    if (!wh)
        wh = json_object_get(status, "webhooks");
    assert_non_null(wh);
    uint64_t v = u64_of(json_object_get(wh, key));
    json_decref(status);
    return v;
}

/* The counter key once it reaches want (or its value after 10 s): the receiver has a
 * notification before the sender thread has read the answer and counted it. */
static uint64_t webhook_count_wait(const fl_test_server_t *s, const char *key, uint64_t want)
{
    uint64_t v = 0;
    for (int i = 0; i < 200 && (v = webhook_count(s, key)) < want; i++)
        usleep(50000);
    return v;
}

/* One server per format: the fault opens an incident (firing), a person resolves it
 * (resolved). fail_first 503s come first and must be retried. */
static void run_webhook(const char *format, int fail_first,
                        void (*check)(json_t *body, int resolved, const char *id, int api_port))
{
    hook_server_t h;
    hook_start(&h, fail_first);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook/%s", h.port, format);
    const char *extra[] = {"--webhook", url, "--webhook-format", format, NULL};
    fl_test_server_t s = {0};
    uint64_t fs;
    scenario(&s, extra, "kind=error,target=inventory.GET /stock,rate=0.8,start=30m,duration=10m",
             "505", &fs);
    json_t *inc = check_one(&s, "inventory", "GET /stock", "inventory GET /stock", fs);
    char id[64], path[160];
    snprintf(id, sizeof(id), "%s", str(inc, "id"));
    json_decref(inc);
    if (hook_wait(&h, fail_first + 1) < fail_first + 1)
        fail_msg("%s: no firing notification", format);
    for (int i = 0; i <= fail_first; i++) /* the retries carry the same payload */
        assert_string_equal(h.bodies[i], h.bodies[fail_first]);
    assert_string_equal(h.paths[fail_first], strchr(url + 7, '/'));
    json_t *b = hook_body(&h, fail_first);
    check(b, 0, id, s.api_port);
    json_decref(b);

    snprintf(path, sizeof(path), "/aiops/incidents/%s/resolve", id);
    assert_int_equal(post(&s, path, "{\"resolution\": \"fixed\", \"resolved_by\": \"bob\"}", NULL),
                     200);
    if (hook_wait(&h, fail_first + 2) < fail_first + 2)
        fail_msg("%s: no resolved notification", format);
    b = hook_body(&h, fail_first + 1);
    check(b, 1, id, s.api_port);
    json_decref(b);

    /* Counted in /aiops/status. */
    assert_int_equal(webhook_count_wait(&s, "sent", 2), 2);
    assert_int_equal(webhook_count(&s, "retries"), (uint64_t)fail_first);
    assert_int_equal(webhook_count(&s, "failed"), 0);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
    hook_stop(&h);
}

static void check_alertmanager(json_t *b, int resolved, const char *id, int api_port)
{
    const char *want = resolved ? "resolved" : "firing";
    assert_string_equal(str(b, "version"), "4");
    assert_string_equal(str(b, "status"), want);
    json_t *a = json_array_get(json_object_get(b, "alerts"), 0);
    assert_non_null(a);
    assert_string_equal(str(a, "status"), want);
    json_t *l = json_object_get(a, "labels");
    assert_string_equal(str(l, "service"), "inventory");
    assert_string_equal(str(l, "incident_id"), id);
    assert_true(strlen(str(l, "alertname")) > 0);
    assert_true(strlen(str(l, "severity")) > 0);
    json_t *an = json_object_get(a, "annotations");
    assert_true(strstr(str(an, "description"), "inventory") != NULL);
    assert_true(strstr(str(an, "description"), "Example trace") != NULL);
    assert_true(strlen(str(an, "summary")) > 0);
    char link[160];
    snprintf(link, sizeof(link), "http://127.0.0.1:%d/aiops/incidents/%s", api_port, id);
    assert_string_equal(str(a, "generatorURL"), link);
    assert_true(strlen(str(a, "startsAt")) >= 20);
    if (resolved)
        assert_true(strcmp(str(a, "endsAt"), "0001-01-01T00:00:00Z") != 0);
    else
        assert_string_equal(str(a, "endsAt"), "0001-01-01T00:00:00Z");
}

static void check_slack(json_t *b, int resolved, const char *id, int api_port)
{
    (void)api_port;
    const char *text = str(b, "text");
    assert_true(strstr(text, resolved ? "[RESOLVED]" : "[FIRING]") != NULL);
    assert_true(strstr(text, id) != NULL);
    json_t *blk = json_array_get(json_object_get(b, "blocks"), 0);
    assert_string_equal(str(blk, "type"), "section");
    assert_true(strstr(str(json_object_get(blk, "text"), "text"), "inventory") != NULL);
}

static void check_json(json_t *b, int resolved, const char *id, int api_port)
{
    (void)api_port;
    assert_string_equal(str(b, "event"), resolved ? "resolved" : "opened");
    json_t *inc = json_object_get(b, "incident");
    assert_string_equal(str(inc, "id"), id);
    assert_string_equal(str(inc, "status"), resolved ? "resolved" : "open");
    assert_string_equal(str(json_object_get(inc, "root_cause"), "service"), "inventory");
}

static void test_incidents_webhook_alertmanager_retry(void **state)
{
    (void)state;
    run_webhook("alertmanager", 1, check_alertmanager);
}

static void test_incidents_webhook_slack(void **state)
{
    (void)state;
    run_webhook("slack", 0, check_slack);
}

static void test_incidents_webhook_json(void **state)
{
    (void)state;
    run_webhook("json", 0, check_json);
}

/* Every notification queued so far has arrived; returns how many. */
static int hook_all(hook_server_t *h, const fl_test_server_t *s)
{
    int want = (int)webhook_count(s, "queued"), got = hook_wait(h, want);
    if (got != want)
        fail_msg("%d notifications queued, %d received", want, got);
    return want;
}

/* 1 (low) .. 4 (critical); 0 for anything else. */
static int severity_rank(const char *s)
{
    static const char *names[] = {"low", "medium", "high", "critical"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i]))
            return i + 1;
    return 0;
}

/* Notification i (JSON format): its event, and the incident's id, status and severity. */
static void hook_event(hook_server_t *h, int i, char event[16], char id[32], char status[16],
                       int *severity)
{
    json_t *b = hook_body(h, i);
    json_t *inc = json_object_get(b, "incident");
    snprintf(event, 16, "%s", str(b, "event"));
    snprintf(id, 32, "%s", str(inc, "id"));
    snprintf(status, 16, "%s", str(inc, "status"));
    *severity = severity_rank(str(inc, "severity"));
    fprintf(stderr, "  webhook %d: %s %s status=%s severity=%s\n", i, event, id, status,
            str(inc, "severity"));
    json_decref(b);
}

/* Escalation: a payment slowdown that starts mild (5x) and then worsens (40x; each stage's
 * load scripts its own fault) raises the incident's severity. The receiver gets, in order
 * and all for the one incident: opened (open, below critical) while the fault is mild,
 * escalated (open, each higher than the last, the last critical) once it worsens, and
 * resolved once the fault is gone. Traffic is sent and analysed in three stages so each
 * stage's notifications are known to be out before the next stage starts. */
static void test_incidents_webhook_escalation(void **state)
{
    (void)state;
    hook_server_t h;
    hook_start(&h, 0);
    char url[128], event[16], id[32], first_id[32], status[16], path[160];
    int sev, last_sev;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook/escalation", h.port);
    const char *extra[] = {"--webhook", url, "--webhook-format", "json", NULL};
    fl_test_server_t s = {0};
    assert_int_equal(fl_test_server_start(&s, extra), 0);
    uint64_t start = past_start(40 * MIN);
    const char *mild[] = {
        "kind=latency,target=payment.POST /charge,factor=5,start=30m,duration=10m", NULL};
    const char *worse[] = {"kind=latency,target=payment.POST /charge,factor=40,start=0m,"
                           "duration=3m",
                           NULL};

    load(&s, start, "33m", "606", mild);
    json_decref(analyze(&s, start + 33 * MIN));
    int n1 = hook_all(&h, &s);
    assert_int_equal(n1, 1);
    hook_event(&h, 0, event, first_id, status, &last_sev);
    assert_string_equal(event, "opened");
    assert_string_equal(status, "open");
    assert_true(last_sev >= 1 && last_sev < 4);

    load(&s, start + 33 * MIN, "3m", "607", worse);
    json_decref(analyze(&s, start + 36 * MIN));
    int n2 = hook_all(&h, &s);
    assert_true(n2 > n1);
    for (int i = n1; i < n2; i++) {
        hook_event(&h, i, event, id, status, &sev);
        assert_string_equal(event, "escalated");
        assert_string_equal(id, first_id);
        assert_string_equal(status, "open");
        assert_true(sev > last_sev);
        last_sev = sev;
    }
    assert_int_equal(last_sev, 4);

    load(&s, start + 36 * MIN, "4m", "608", NULL);
    json_decref(analyze(&s, start + 40 * MIN));
    int n3 = hook_all(&h, &s);
    assert_int_equal(n3, n2 + 1);
    hook_event(&h, n2, event, id, status, &sev);
    assert_string_equal(event, "resolved");
    assert_string_equal(id, first_id);
    assert_string_equal(status, "resolved");
    assert_int_equal(sev, 4);

    /* The incident agrees: one incident, critical, resolved automatically, and its timeline
     * records each escalation. */
    json_t *arr = incidents(&s, "?status=all");
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    int st;
    snprintf(path, sizeof(path), "/aiops/incidents/%s", first_id);
    json_t *inc = fl_test_get_json(s.api_port, path, &st);
    assert_int_equal(st, 200);
    assert_string_equal(str(inc, "severity"), "critical");
    assert_string_equal(str(inc, "resolved_by"), "faultline");
    size_t i, raised = 0;
    json_t *e;
    json_array_foreach(json_object_get(inc, "timeline"), i, e)
    {
        raised += !strcmp(str(e, "type"), "severity");
    }
    assert_int_equal(raised, (size_t)(n2 - n1));
    json_decref(inc);
    assert_int_equal(webhook_count_wait(&s, "sent", (uint64_t)n3), (uint64_t)n3);
    assert_int_equal(webhook_count(&s, "failed"), 0);
    assert_int_equal(fl_test_server_stop(&s), 0);
    fl_test_server_cleanup(&s);
    hook_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incidents_latency_lifecycle_restart),
        cmocka_unit_test(test_incidents_inventory_errors),
        cmocka_unit_test(test_incidents_payment_cascade),
        cmocka_unit_test(test_incidents_healthy_hour),
        cmocka_unit_test(test_incidents_webhook_alertmanager_retry),
        cmocka_unit_test(test_incidents_webhook_slack),
        cmocka_unit_test(test_incidents_webhook_json),
        cmocka_unit_test(test_incidents_webhook_escalation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
