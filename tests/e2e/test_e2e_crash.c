/* SPDX-License-Identifier: Apache-2.0 */
/* Crash consistency of the real server: heavy ingest from several client threads (OTLP/HTTP
 * protobuf and JSON, OTLP/gRPC) while the server is SIGKILLed at random moments and restarted
 * on the same ports and database; then every acknowledged span is stored exactly once, an
 * unacknowledged request is stored whole or not at all, and PRAGMA integrity_check is ok.
 * Learned state survives the kills too: baselines and an incident from a fast-forwarded
 * fault (faultline-load synthetic) are there afterwards, unchanged. The crash traffic is
 * older than that run (late for the analysis), so it leaves the learned state alone.
 * Also: SIGTERM under load loses nothing acknowledged and exits within 15 s.
 * FL_CRASH_SEED and FL_CRASH_KILLS override the seed and the number of kills. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "otlp_gen.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define SHOP FL_SOURCE_DIR "/tools/load/topologies/shop.json"
#define MIN_NS (60 * 1000000000ull)

enum { SENDERS = 4, MAX_TRACES_PER_REQ = 3 };
enum sender_kind { SEND_PROTOBUF, SEND_JSON, SEND_GRPC };

static fl_test_server_t srv;
static uint64_t id_base;
static uint64_t synth_start; /* event time of the synthetic run (now - 44 min) */
static _Atomic uint64_t id_next;
static _Atomic int stop_senders;
static _Atomic uint64_t acks_total;

/* One export request the test sent: its traces, and whether it was acknowledged. */
typedef struct sent_req {
    otlp_gen_trace_t traces[MAX_TRACES_PER_REQ];
    int n_traces;
    int acked;
} sent_req_t;

typedef struct sender {
    pthread_t th;
    enum sender_kind kind;
    uint64_t rng;
    sent_req_t *reqs;
    size_t n, cap;
    uint64_t failures;
} sender_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* xorshift64*: a seeded PRNG, so a failing run can be repeated with FL_CRASH_SEED. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static otlp_gen_trace_t new_trace(int n)
{
    /* Two hours before the synthetic run: behind the analysis watermark. */
    otlp_gen_trace_t t = {{0}, 0, n, "crash-e2e", synth_start - 120 * MIN_NS};
    uint64_t k = atomic_fetch_add(&id_next, 1) + 1;
    for (int i = 0; i < 8; i++) {
        t.trace_id[i] = (uint8_t)(id_base >> (56 - 8 * i));
        t.trace_id[8 + i] = (uint8_t)(k >> (56 - 8 * i));
    }
    t.span_seed = (id_base ^ (k << 24)) | 1;
    t.start_ns += k * 1000000;
    return t;
}

static void *sender_main(void *arg)
{
    sender_t *s = arg;
    fl_http_client_t *hc = NULL;
    fl_grpc_client_t *gc = NULL;
    if (s->kind == SEND_GRPC) {
        fl_grpc_client_opts_t o = {0};
        o.host = "127.0.0.1";
        o.port = srv.grpc_port;
        o.timeout_ms = 5000;
        gc = fl_grpc_client_new(&o);
    } else {
        fl_http_client_opts_t o = {0};
        o.host = "127.0.0.1";
        o.port = srv.http_port;
        o.timeout_ms = 5000;
        hc = fl_http_client_new(&o);
    }
    if (!hc && !gc)
        return NULL;
    while (!atomic_load(&stop_senders)) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            sent_req_t *r = realloc(s->reqs, cap * sizeof(*r));
            if (!r)
                break;
            s->reqs = r;
            s->cap = cap;
        }
        sent_req_t *q = &s->reqs[s->n];
        memset(q, 0, sizeof(*q));
        q->n_traces = 1 + (int)(rnd(&s->rng) % MAX_TRACES_PER_REQ);
        for (int i = 0; i < q->n_traces; i++)
            q->traces[i] = new_trace(5 + (int)(rnd(&s->rng) % 40));
        fl_buf_t body;
        int ok = 0;
        if (s->kind == SEND_JSON)
            otlp_gen_json(q->traces, q->n_traces, &body);
        else
            otlp_gen_protobuf(q->traces, q->n_traces, &body);
        if (gc) {
            fl_grpc_result_t res;
            if (fl_grpc_client_call(gc, EXPORT_PATH, NULL, 0, body.data, body.len, 0, &res) ==
                FL_OK) {
                ok = res.grpc_status == 0;
                fl_grpc_result_dispose(&res);
            }
        } else {
            fl_net_header_t h = {"Content-Type", s->kind == SEND_JSON ? "application/json"
                                                                      : "application/x-protobuf"};
            fl_http_response_t r;
            if (fl_http_client_request(hc, "POST", "/v1/traces", &h, 1, body.data, body.len, &r) ==
                FL_OK) {
                ok = r.status == 200;
                fl_http_response_dispose(&r);
            }
        }
        fl_buf_dispose(&body);
        q->acked = ok;
        s->n++;
        if (ok) {
            atomic_fetch_add(&acks_total, 1);
        } else {
            /* The server is down or refusing: back off a little, as an exporter would. */
            s->failures++;
            sleep_ms(5);
        }
    }
    fl_http_client_free(hc);
    fl_grpc_client_free(gc);
    return NULL;
}

static void start_senders(sender_t *s, uint64_t seed)
{
    atomic_store(&stop_senders, 0);
    for (int i = 0; i < SENDERS; i++) {
        memset(&s[i], 0, sizeof(s[i]));
        s[i].kind = i == 0 ? SEND_GRPC : i == 1 ? SEND_JSON : SEND_PROTOBUF;
        s[i].rng = seed * 7919 + (uint64_t)i + 1;
        assert_int_equal(pthread_create(&s[i].th, NULL, sender_main, &s[i]), 0);
    }
}

static void stop_all_senders(sender_t *s)
{
    atomic_store(&stop_senders, 1);
    for (int i = 0; i < SENDERS; i++)
        pthread_join(s[i].th, NULL);
}

static void free_senders(sender_t *s)
{
    for (int i = 0; i < SENDERS; i++)
        free(s[i].reqs);
}

static void dump_log(void)
{
    char *log = fl_test_read_file(srv.log_path, NULL);
    size_t len = log ? strlen(log) : 0;
    fprintf(stderr, "server log (tail):\n%s\n", log ? log + (len > 6000 ? len - 6000 : 0) : "");
    free(log);
}

/* The server must still be the process we started: a crash of its own (a sanitizer abort,
 * an assertion) between our kills would otherwise go unnoticed. */
static void assert_alive(void)
{
    int w;
    if (waitpid(srv.pid, &w, WNOHANG) == srv.pid) {
        srv.pid = 0;
        dump_log();
        fail_msg("faultline died on its own (%s %d)", WIFEXITED(w) ? "exit" : "signal",
                 WIFEXITED(w) ? WEXITSTATUS(w) : WTERMSIG(w));
    }
}

/* No sanitizer report in the server's log (appended across every restart). */
static void assert_log_clean(void)
{
    char *log = fl_test_read_file(srv.log_path, NULL);
    assert_non_null(log);
    const char *bad[] = {"Sanitizer", "runtime error:", "level=error"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = strstr(log, bad[i]);
        if (p) {
            const char *from = p - log > 300 ? p - 300 : log;
            fprintf(stderr, "server log around \"%s\":\n%.1500s\n", bad[i], from);
            free(log);
            fail_msg("the server log reports \"%s\"", bad[i]);
        }
    }
    free(log);
}

/* Wait until n more exports were acknowledged (ingest is flowing); 0 or -1 at the deadline. */
static int wait_acks(uint64_t n, int timeout_ms)
{
    uint64_t want = atomic_load(&acks_total) + n, end = now_ms() + (uint64_t)timeout_ms;
    while (atomic_load(&acks_total) < want) {
        if (now_ms() > end)
            return -1;
        sleep_ms(2);
    }
    return 0;
}

/* How the stored trace compares with what was sent: 1 = every span exactly once and nothing
 * else, 0 = absent, -1 = anything else (partial, duplicated, foreign spans). */
static int trace_state(fl_http_client_t *api, const otlp_gen_trace_t *t, char *why, size_t wl)
{
    char hex[33], url[96];
    otlp_gen_hex(t->trace_id, 16, hex);
    snprintf(url, sizeof(url), "/api/traces/%s", hex);
    fl_http_response_t r;
    if (fl_http_client_request(api, "GET", url, NULL, 0, NULL, 0, &r) != FL_OK) {
        snprintf(why, wl, "GET %s failed", url);
        return -1;
    }
    int state = -1;
    if (r.status == 404) {
        state = 0;
        goto out;
    }
    if (r.status != 200) {
        snprintf(why, wl, "GET %s: %d", url, r.status);
        goto out;
    }
    json_t *j = json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    json_t *spans = json_object_get(j, "spans");
    size_t n = json_array_size(spans);
    unsigned char seen[64] = {0};
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sid = json_string_value(json_object_get(json_array_get(spans, i), "span_id"));
        unsigned long long v = sid ? strtoull(sid, NULL, 16) : 0;
        uint64_t k = (uint64_t)v - t->span_seed;
        if (!sid || strlen(sid) != 16 || k >= (uint64_t)t->n_spans || seen[k]++)
            bad = 1;
    }
    json_decref(j);
    if (n == (size_t)t->n_spans && !bad)
        state = 1;
    else
        snprintf(why, wl, "trace %s: %zu spans stored for %d sent%s", hex, n, t->n_spans,
                 bad ? ", with duplicates or unknown span ids" : "");
out:
    fl_http_response_dispose(&r);
    return state;
}

typedef struct verify_job {
    sender_t *senders;
    int part, parts;
    uint64_t acked_spans, acked_reqs, unacked_reqs, unacked_stored, unacked_spans_stored, errors;
    char first_error[400];
} verify_job_t;

/* Every acknowledged request: all its traces stored exactly; an unacknowledged one: each of
 * its traces whole or absent, and all of them alike (one request, one transaction). */
static void *verify_main(void *arg)
{
    verify_job_t *v = arg;
    fl_http_client_opts_t o = {0};
    o.host = "127.0.0.1";
    o.port = srv.api_port;
    o.timeout_ms = 30000;
    fl_http_client_t *api = fl_http_client_new(&o);
    if (!api)
        return NULL;
    size_t k = 0;
    for (int i = 0; i < SENDERS; i++) {
        sender_t *s = &v->senders[i];
        for (size_t j = 0; j < s->n; j++, k++) {
            if ((int)(k % (size_t)v->parts) != v->part)
                continue;
            sent_req_t *q = &s->reqs[j];
            int states[MAX_TRACES_PER_REQ] = {0};
            char why[256] = "";
            int err = 0;
            for (int t = 0; t < q->n_traces; t++) {
                states[t] = trace_state(api, &q->traces[t], why, sizeof(why));
                if (states[t] < 0 || (q->acked && states[t] != 1) || states[t] != states[0])
                    err = 1;
                if (q->acked) {
                    v->acked_spans += (uint64_t)q->traces[t].n_spans;
                    if (states[t] == 0)
                        snprintf(why, sizeof(why), "acknowledged trace %d of a request missing", t);
                } else if (states[t] != states[0] && !why[0]) {
                    snprintf(why, sizeof(why), "an unacknowledged request stored in part");
                }
            }
            if (q->acked)
                v->acked_reqs++;
            else {
                v->unacked_reqs++;
                v->unacked_stored += states[0] == 1;
                for (int t = 0; t < q->n_traces && states[0] == 1; t++)
                    v->unacked_spans_stored += (uint64_t)q->traces[t].n_spans;
            }
            if (err) {
                if (!v->errors++)
                    snprintf(v->first_error, sizeof(v->first_error), "%s request (%s): %s",
                             q->acked ? "acknowledged" : "unacknowledged",
                             i == 0   ? "grpc"
                             : i == 1 ? "json"
                                      : "protobuf",
                             why);
            }
        }
    }
    fl_http_client_free(api);
    return NULL;
}

/* Check everything the senders recorded; returns the acknowledged span count, and in
 * *extra the spans of unacknowledged requests that were stored anyway. */
static uint64_t verify_all(sender_t *s, uint64_t *extra)
{
    enum { PARTS = 3 };
    verify_job_t v[PARTS];
    pthread_t th[PARTS];
    for (int i = 0; i < PARTS; i++) {
        memset(&v[i], 0, sizeof(v[i]));
        v[i].senders = s;
        v[i].part = i;
        v[i].parts = PARTS;
        assert_int_equal(pthread_create(&th[i], NULL, verify_main, &v[i]), 0);
    }
    uint64_t spans = 0, reqs = 0, un = 0, un_stored = 0, errors = 0;
    const char *first = NULL;
    for (int i = 0; i < PARTS; i++) {
        pthread_join(th[i], NULL);
        spans += v[i].acked_spans;
        reqs += v[i].acked_reqs;
        un += v[i].unacked_reqs;
        un_stored += v[i].unacked_stored;
        *extra += v[i].unacked_spans_stored;
        errors += v[i].errors;
        if (!first && v[i].errors)
            first = v[i].first_error;
    }
    print_message("verified: %llu acknowledged requests (%llu spans), %llu unacknowledged "
                  "(%llu of them stored anyway)\n",
                  (unsigned long long)reqs, (unsigned long long)spans, (unsigned long long)un,
                  (unsigned long long)un_stored);
    if (errors)
        fail_msg("%llu requests not stored as they should be; first: %s",
                 (unsigned long long)errors, first);
    assert_true(reqs > 0);
    return spans;
}

static uint64_t spans_stored(void)
{
    int status;
    json_t *j = fl_test_get_json(srv.api_port, "/aiops/status", &status);
    assert_int_equal(status, 200);
    json_t *v = json_object_get(j, "spans_stored");
    assert_true(json_is_integer(v));
    uint64_t n = (uint64_t)json_integer_value(v);
    json_decref(j);
    return n;
}

/* Wait (up to 30 s) until the server has no export request in flight and nothing queued for
 * the store. A request a client gave up on (its 5 s timeout, on a loaded machine) can still
 * be committed until then, after verify_all called it absent: the counts would disagree. */
static void wait_quiescent(void)
{
    json_int_t reqs = -1, queued = -1;
    for (int i = 0; i < 600; i++) {
        int status;
        json_t *j = fl_test_get_json(srv.api_port, "/aiops/status", &status);
        json_t *r = json_object_get(json_object_get(j, "ingest"), "inflight_requests");
        json_t *q = json_object_get(j, "queue_spans");
        reqs = json_is_integer(r) ? json_integer_value(r) : -1;
        queued = json_is_integer(q) ? json_integer_value(q) : -1;
        json_decref(j);
        if (status == 200 && reqs == 0 && queued == 0)
            return;
        sleep_ms(50);
    }
    fail_msg("the server still has %lld requests in flight and %lld spans queued after 30 s",
             (long long)reqs, (long long)queued);
}

static uint64_t spans_sent(sender_t *s)
{
    uint64_t n = 0;
    for (int i = 0; i < SENDERS; i++)
        for (size_t j = 0; j < s[i].n; j++)
            for (int t = 0; t < s[i].reqs[j].n_traces; t++)
                n += (uint64_t)s[i].reqs[j].traces[t].n_spans;
    return n;
}

/* ---------------------------------------------------------------- learned state */

/* What must survive: the incidents and the baselines as the API serves them. */
typedef struct learned {
    json_t *incidents; /* the "incidents" array of ?status=all */
    json_t *baselines; /* the "baselines" array */
} learned_t;

static json_t *get_array(const char *path, const char *key)
{
    int status;
    json_t *j = fl_test_get_json(srv.api_port, path, &status);
    if (status != 200 || !j)
        fail_msg("GET %s answered %d", path, status);
    json_t *a = json_incref(json_object_get(j, key));
    json_decref(j);
    assert_true(json_is_array(a));
    return a;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void learned_read(learned_t *l)
{
    l->incidents = get_array("/aiops/incidents?status=all", "incidents");
    l->baselines = get_array("/aiops/baselines", "baselines");
}

static void learned_dispose(learned_t *l)
{
    json_decref(l->incidents);
    json_decref(l->baselines);
}

/* A fast-forwarded shop run with a payment latency fault: 30 min healthy, then the fault
 * (faultline-load synthetic, as test_e2e_incidents does), analysed to its end. At least one
 * incident and trusted baselines; returns them. */
static void learn(learned_t *l)
{
    const char *faults[] = {
        "kind=latency,target=payment.POST /charge,factor=5,start=30m,duration=10m", NULL};
    uint64_t t0 = now_ms();
    assert_int_equal(
        fl_test_run_synthetic(srv.http_port, SHOP, synth_start, "34m", "101", faults, NULL), 0);
    char path[96];
    fl_buf_t b;
    snprintf(path, sizeof(path), "/aiops/analyze?until=%llu",
             (unsigned long long)(synth_start + 34 * MIN_NS));
    assert_int_equal(fl_test_http(srv.api_port, "POST", path, NULL, NULL, NULL, 0, &b, NULL, 0),
                     200);
    fl_buf_dispose(&b);
    learned_read(l);
    size_t trusted = 0, i;
    json_t *x;
    json_array_foreach(l->baselines, i, x)
    {
        trusted += json_is_true(json_object_get(x, "trusted"));
    }
    json_t *inc = json_array_get(l->incidents, 0);
    print_message("learned in %llu ms: %zu incidents (%s, root cause %s %s), %zu baselines "
                  "(%zu trusted)\n",
                  (unsigned long long)(now_ms() - t0), json_array_size(l->incidents),
                  jstr(inc, "id"), jstr(json_object_get(inc, "root_cause"), "service"),
                  jstr(json_object_get(inc, "root_cause"), "operation"),
                  json_array_size(l->baselines), trusted);
    assert_true(json_array_size(l->incidents) >= 1);
    assert_string_equal(jstr(json_object_get(inc, "root_cause"), "service"), "payment");
    assert_true(trusted > 0);
}

static int near(json_t *a, json_t *b)
{
    double x = json_number_value(a), y = json_number_value(b);
    double d = x > y ? x - y : y - x, m = x > y ? x : y;
    return json_is_number(a) == json_is_number(b) && d <= 0.01 * (m < 0 ? -m : m) + 1e-6;
}

/* Every incident of before is there with the same id, status and root cause; every
 * baseline series of before is there with close values. */
static void learned_check(const learned_t *before)
{
    learned_t now;
    learned_read(&now);
    size_t i, k;
    json_t *a, *b;
    json_array_foreach(before->incidents, i, a)
    {
        json_t *found = NULL;
        json_array_foreach(now.incidents, k, b)
        {
            if (!strcmp(jstr(a, "id"), jstr(b, "id")))
                found = b;
        }
        if (!found)
            fail_msg("incident %s is gone after the kills", jstr(a, "id"));
        json_t *ra = json_object_get(a, "root_cause"), *rb = json_object_get(found, "root_cause");
        if (strcmp(jstr(a, "status"), jstr(found, "status")) ||
            strcmp(jstr(ra, "service"), jstr(rb, "service")) ||
            strcmp(jstr(ra, "operation"), jstr(rb, "operation")) ||
            !json_equal(json_object_get(a, "first_detected_unix_nano"),
                        json_object_get(found, "first_detected_unix_nano")))
            fail_msg("incident %s changed: %s %s %s -> %s %s %s", jstr(a, "id"), jstr(a, "status"),
                     jstr(ra, "service"), jstr(ra, "operation"), jstr(found, "status"),
                     jstr(rb, "service"), jstr(rb, "operation"));
    }
    static const char *const keys[] = {"subject", "service", "operation", "caller_service",
                                       "caller_operation"};
    static const char *const values[] = {"baseline_latency_ms", "baseline_p95_ms",
                                         "error_rate",          "requests_per_s",
                                         "trained_buckets",     "trained_requests"};
    json_array_foreach(before->baselines, i, a)
    {
        json_t *found = NULL;
        json_array_foreach(now.baselines, k, b)
        {
            size_t same = 0;
            for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++)
                same += !strcmp(jstr(a, keys[j]), jstr(b, keys[j]));
            if (same == sizeof(keys) / sizeof(keys[0]))
                found = b;
        }
        if (!found)
            fail_msg("baseline %s %s %s is gone after the kills", jstr(a, "subject"),
                     jstr(a, "service"), jstr(a, "operation"));
        for (size_t j = 0; j < sizeof(values) / sizeof(values[0]); j++)
            if (!near(json_object_get(a, values[j]), json_object_get(found, values[j])))
                fail_msg("baseline %s %s %s: %s %g -> %g", jstr(a, "subject"), jstr(a, "service"),
                         jstr(a, "operation"), values[j],
                         json_number_value(json_object_get(a, values[j])),
                         json_number_value(json_object_get(found, values[j])));
    }
    print_message("after the kills: %zu of %zu incidents and %zu of %zu baselines as before\n",
                  json_array_size(before->incidents), json_array_size(now.incidents),
                  json_array_size(before->baselines), json_array_size(now.baselines));
    learned_dispose(&now);
}

static void integrity_check(void)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA integrity_check' 2>&1", srv.db);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    if (rc != 0 || strcmp(out, "ok\n") != 0)
        fail_msg("PRAGMA integrity_check (exit %d): %s", rc, out);
}

static int setup(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    id_base = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    synth_start = fl_test_synthetic_start(34 * MIN_NS);
    const char *args[] = {"--log-level", "warn", NULL};
    return fl_test_server_start(&srv, args);
}

static int teardown(void **state)
{
    (void)state;
    int rc = srv.pid > 0 ? fl_test_server_stop(&srv) : 0;
    fl_test_server_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

static void restart(void)
{
    const char *args[] = {"--log-level", "warn", NULL};
    int old_grpc = srv.grpc_port, old_http = srv.http_port, old_api = srv.api_port;
    uint64_t t0 = now_ms();
    if (fl_test_server_start(&srv, args) != 0) {
        dump_log();
        fail_msg("faultline did not restart on the same ports and database");
    }
    uint64_t took = now_ms() - t0;
    assert_int_equal(srv.grpc_port, old_grpc);
    assert_int_equal(srv.http_port, old_http);
    assert_int_equal(srv.api_port, old_api);
    /* "Restarts at once": well under the harness's 20 s, with sanitizers too. */
    if (took > 10000)
        fail_msg("restart took %llu ms", (unsigned long long)took);
}

static void test_e2e_crash_sigkill_under_load(void **st)
{
    (void)st;
    const char *se = getenv("FL_CRASH_SEED"), *ke = getenv("FL_CRASH_KILLS");
    uint64_t seed = se ? strtoull(se, NULL, 0) : 20261130;
    int kills = ke ? atoi(ke) : 22;
    uint64_t rng = seed | 1;
    print_message("seed %llu, %d kills\n", (unsigned long long)seed, kills);

    learned_t learned;
    learn(&learned);
    uint64_t base = spans_stored(); /* the synthetic run's */

    sender_t s[SENDERS];
    uint64_t t0 = now_ms();
    start_senders(s, seed);
    for (int k = 0; k < kills; k++) {
        /* Kill while exports are flowing: after some acknowledgements, at a random moment. */
        if (wait_acks(3, 15000) != 0) {
            stop_all_senders(s);
            dump_log();
            fail_msg("no export acknowledged within 15 s after restart %d", k);
        }
        sleep_ms((int)(rnd(&rng) % 400));
        assert_alive();
        fl_test_server_kill(&srv);
        if (k == kills - 1)
            integrity_check(); /* the database exactly as the crash left it */
        restart();
    }
    /* Let the last run ingest too, then stop the clients and check. */
    assert_int_equal(wait_acks(10, 15000), 0);
    stop_all_senders(s);
    uint64_t failures = 0;
    for (int i = 0; i < SENDERS; i++)
        failures += s[i].failures;
    print_message("%d kills in %llu ms; %llu exports acknowledged, %llu failed\n", kills,
                  (unsigned long long)(now_ms() - t0), (unsigned long long)atomic_load(&acks_total),
                  (unsigned long long)failures);

    wait_quiescent();
    uint64_t extra = 0;
    uint64_t acked = verify_all(s, &extra);
    uint64_t stored = spans_stored(), sent = spans_sent(s);
    print_message("spans: %llu acknowledged, %llu more stored from unacknowledged requests, "
                  "spans_stored %llu, %llu sent\n",
                  (unsigned long long)acked, (unsigned long long)extra, (unsigned long long)stored,
                  (unsigned long long)sent);
    /* Exactly once, counted: the store's own total is what the traces add up to. */
    if (stored != base + acked + extra)
        fail_msg("spans_stored %llu, but the synthetic run (%llu) and the stored traces hold "
                 "%llu spans",
                 (unsigned long long)stored, (unsigned long long)base,
                 (unsigned long long)(base + acked + extra));
    free_senders(s);
    /* The server running now was started after a SIGKILL, like every one since learn(). */
    learned_check(&learned);
    learned_dispose(&learned);

    /* A clean stop, then the database on disk is sound. */
    assert_int_equal(fl_test_server_stop(&srv), 0);
    integrity_check();
    assert_log_clean();
    restart();
}

static void test_e2e_crash_sigterm_under_load(void **st)
{
    (void)st;
    sender_t s[SENDERS];
    atomic_store(&acks_total, 0);
    uint64_t before = spans_stored(); /* the first test's */
    start_senders(s, 77);
    assert_int_equal(wait_acks(50, 20000), 0);
    pid_t pid = srv.pid;
    uint64_t t0 = now_ms();
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status = -1;
    while (now_ms() - t0 < 15000) {
        int w;
        if (waitpid(pid, &w, WNOHANG) == pid) {
            status = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
            break;
        }
        sleep_ms(10);
    }
    uint64_t took = now_ms() - t0;
    if (status < 0) {
        stop_all_senders(s);
        dump_log();
        fl_test_server_kill(&srv);
        fail_msg("faultline still running 15 s after SIGTERM under load");
    }
    srv.pid = 0;
    stop_all_senders(s);
    print_message("SIGTERM under load: exit %d after %llu ms\n", status, (unsigned long long)took);
    if (status != 0) {
        dump_log();
        fail_msg("exit status %d after SIGTERM", status);
    }
    restart();
    uint64_t extra = 0;
    uint64_t acked = verify_all(s, &extra);
    uint64_t stored = spans_stored();
    if (stored != before + acked + extra)
        fail_msg("spans_stored %llu, expected %llu before + %llu acknowledged + %llu "
                 "unacknowledged but stored",
                 (unsigned long long)stored, (unsigned long long)before, (unsigned long long)acked,
                 (unsigned long long)extra);
    free_senders(s);
    assert_int_equal(fl_test_server_stop(&srv), 0);
    integrity_check();
    assert_log_clean();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_crash_sigkill_under_load),
        cmocka_unit_test(test_e2e_crash_sigterm_under_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
