/* SPDX-License-Identifier: Apache-2.0 */
/* Receiver endpoints end to end over real sockets: a fl_net server with the receiver's
 * handlers and an in-memory test sink (a store double that acknowledges from its own
 * thread), driven by net's blocking HTTP/1.1 and gRPC clients. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/receiver.h>
#include <dirent.h>
#include <google/rpc/error_details.pb-c.h>
#include <google/rpc/status.pb-c.h>
#include <jansson.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FIX FL_TEST_DATA_DIR "/fixtures"
#define GRPC_TRACES "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define GRPC_LOGS "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

/* ---------------------------------------------------------------- the test sink */

typedef struct pending {
    fl_span_batch_t *b;
    fl_sink_done_cb cb;
    void *ctx;
} pending_t;

typedef struct tsink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thr;
    int stop;
    pending_t q[1024];
    size_t nq;
    /* behaviour */
    int submit_rc;   /* what submit_take returns */
    int done_status; /* what the callback reports */
    int would_block;
    int hold; /* callbacks wait while set */
    /* what it saw */
    size_t submits, would_block_calls;
    uint8_t (*ids)[24];
    size_t n_ids, cap_ids;
    size_t duplicates;
} tsink_t;

static void *sink_thread(void *arg)
{
    tsink_t *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && (s->nq == 0 || s->hold))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->nq == 0 && s->stop)
            break;
        if (s->hold && !s->stop)
            continue;
        pending_t p = s->q[0];
        memmove(s->q, s->q + 1, (s->nq - 1) * sizeof(pending_t));
        s->nq--;
        int status = s->done_status;
        size_t stored = 0, dups = 0;
        if (status == FL_OK) {
            /* "Commit": remember ids, counting re-sent spans as duplicates. */
            for (size_t i = 0; i < p.b->n_spans; i++) {
                uint8_t key[24];
                memcpy(key, p.b->spans[i].trace_id, 16);
                memcpy(key + 16, p.b->spans[i].span_id, 8);
                int dup = 0;
                for (size_t k = 0; k < s->n_ids && !dup; k++)
                    dup = memcmp(s->ids[k], key, 24) == 0;
                if (dup) {
                    dups++;
                    continue;
                }
                if (s->n_ids == s->cap_ids) {
                    s->cap_ids = s->cap_ids ? s->cap_ids * 2 : 1024;
                    s->ids = realloc(s->ids, s->cap_ids * 24);
                }
                memcpy(s->ids[s->n_ids++], key, 24);
                stored++;
            }
            s->duplicates += dups;
        }
        pthread_mutex_unlock(&s->mu);
        fl_span_batch_free(p.b);
        p.cb(p.ctx, status, stored, dups);
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int sink_submit(void *ud, fl_span_batch_t *b, fl_sink_done_cb cb, void *ctx)
{
    tsink_t *s = ud;
    pthread_mutex_lock(&s->mu);
    s->submits++;
    int rc = s->submit_rc;
    if (rc == FL_OK && s->nq < 1024) {
        s->q[s->nq++] = (pending_t){b, cb, ctx};
        pthread_cond_broadcast(&s->cv);
        b = NULL;
    } else if (rc == FL_OK) {
        rc = FL_ERR_BUSY;
    }
    pthread_mutex_unlock(&s->mu);
    fl_span_batch_free(b); /* _take: refused batches are freed too */
    return rc;
}

static int sink_would_block(void *ud, size_t n)
{
    tsink_t *s = ud;
    (void)n;
    pthread_mutex_lock(&s->mu);
    s->would_block_calls++;
    int wb = s->would_block;
    pthread_mutex_unlock(&s->mu);
    return wb;
}

static void sink_set(tsink_t *s, int submit_rc, int done_status, int would_block, int hold)
{
    pthread_mutex_lock(&s->mu);
    s->submit_rc = submit_rc;
    s->done_status = done_status;
    s->would_block = would_block;
    s->hold = hold;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static size_t sink_stored(tsink_t *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_ids;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static size_t sink_submits(tsink_t *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->submits;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static size_t sink_duplicates(tsink_t *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->duplicates;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------------------------------------------------------------- fixture setup */

typedef struct env {
    tsink_t sink;
    fl_receiver_t *r;
    fl_net_t *net;
    int http_port, grpc_port;
    fl_http_client_t *http;
    fl_grpc_client_t *grpc;
    char capture_dir[256];
} env_t;

static int env_start(env_t *e, size_t max_body, size_t max_inflight, const char *capture)
{
    char err[256];
    memset(e, 0, sizeof(*e));
    pthread_mutex_init(&e->sink.mu, NULL);
    pthread_cond_init(&e->sink.cv, NULL);
    pthread_create(&e->sink.thr, NULL, sink_thread, &e->sink);
    fl_receiver_opts_t o = {0};
    o.sink.submit_take = sink_submit;
    o.sink.would_block = sink_would_block;
    o.sink.ud = &e->sink;
    o.max_body = max_body;
    o.max_inflight_bytes = max_inflight;
    o.retry_after_s = 2;
    if (capture) {
        snprintf(e->capture_dir, sizeof(e->capture_dir), "%s", capture);
        o.capture_dir = e->capture_dir;
    }
    e->r = fl_receiver_new(&o, err, sizeof(err));
    if (!e->r)
        fail_msg("receiver: %s", err);
    e->net = fl_net_new("test-receiver");
    fl_net_listen_opts_t l = {0};
    l.name = "otlp-http";
    l.host = "127.0.0.1";
    l.handler = fl_receiver_http_handler(e->r);
    l.max_body = 8u << 20;
    if (fl_net_listen(e->net, &l, err, sizeof(err)) != FL_OK)
        fail_msg("listen: %s", err);
    fl_net_listen_opts_t g = l;
    g.name = "otlp-grpc";
    g.handler = fl_receiver_grpc_handler(e->r);
    g.allow_h2c = 1;
    if (fl_net_listen(e->net, &g, err, sizeof(err)) != FL_OK)
        fail_msg("listen: %s", err);
    e->http_port = fl_net_bound_port(e->net, 0);
    e->grpc_port = fl_net_bound_port(e->net, 1);
    assert_int_equal(fl_net_start(e->net), FL_OK);
    fl_http_client_opts_t co = {0};
    co.host = "127.0.0.1";
    co.port = e->http_port;
    co.timeout_ms = 10000;
    e->http = fl_http_client_new(&co);
    fl_grpc_client_opts_t go = {0};
    go.host = "127.0.0.1";
    go.port = e->grpc_port;
    go.timeout_ms = 10000;
    e->grpc = fl_grpc_client_new(&go);
    assert_non_null(e->http);
    assert_non_null(e->grpc);
    return 0;
}

static void env_stop(env_t *e)
{
    fl_http_client_free(e->http);
    fl_grpc_client_free(e->grpc);
    sink_set(&e->sink, FL_OK, FL_OK, 0, 0);
    fl_net_shutdown(e->net, 5000);
    fl_receiver_free(e->r, 5000);
    fl_net_free(e->net);
    pthread_mutex_lock(&e->sink.mu);
    e->sink.stop = 1;
    pthread_cond_broadcast(&e->sink.cv);
    pthread_mutex_unlock(&e->sink.mu);
    pthread_join(e->sink.thr, NULL);
    free(e->sink.ids);
    pthread_mutex_destroy(&e->sink.mu);
    pthread_cond_destroy(&e->sink.cv);
}

static int setup(void **state)
{
    env_t *e = malloc(sizeof(*e));
    env_start(e, 1u << 20, 0, NULL);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_stop(*state);
    free(*state);
    return 0;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static uint8_t *fixture(const char *transport, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s.body", FIX, transport, name);
    uint8_t *p = read_file(path, len);
    assert_non_null(p);
    return p;
}

static int post(env_t *e, const char *path, const char *ct, const char *ce, const void *body,
                size_t len, fl_http_response_t *resp)
{
    fl_net_header_t h[2] = {{"Content-Type", ct}, {"Content-Encoding", ce}};
    int rc = fl_http_client_request(e->http, "POST", path, h, ce ? 2 : 1, body, len, resp);
    assert_int_equal(rc, FL_OK);
    return resp->status;
}

static const char *hdr(fl_http_response_t *r, const char *name)
{
    static char buf[256];
    return fl_http_response_header(r, name, buf, sizeof(buf));
}

/* ---------------------------------------------------------------- HTTP */

static void test_receiver_http_protobuf_and_json(void **state)
{
    env_t *e = *state;
    fl_http_response_t resp;
    size_t len;
    uint8_t *body = fixture("http-protobuf", "healthy", &len);
    assert_int_equal(post(e, "/v1/traces", "application/x-protobuf", NULL, body, len, &resp), 200);
    assert_string_equal(hdr(&resp, "content-type"), "application/x-protobuf");
    assert_int_equal(resp.body.len, 0);
    assert_int_equal(sink_stored(&e->sink), 200);
    fl_http_response_dispose(&resp);
    free(body);

    /* JSON with gzip, charset parameter: same spans again, so all duplicates (still 200). */
    body = fixture("http-json", "healthy.gz", &len);
    assert_int_equal(
        post(e, "/v1/traces", "application/json; charset=utf-8", "gzip", body, len, &resp), 200);
    assert_string_equal(hdr(&resp, "content-type"), "application/json");
    assert_string_equal((char *)resp.body.data, "{}");
    assert_int_equal(sink_stored(&e->sink), 200);
    assert_int_equal(sink_duplicates(&e->sink), 200);
    fl_http_response_dispose(&resp);
    free(body);

    fl_receiver_stats_t st;
    fl_receiver_stats(e->r, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.spans_accepted, 400);
    assert_int_equal(st.spans_duplicate, 200);
    assert_int_equal(st.inflight_requests, 0);
    assert_int_equal(st.inflight_bytes, 0);
}

static void test_receiver_http_partial_success(void **state)
{
    env_t *e = *state;
    fl_http_response_t resp;
    const char *json =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
        "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\"},"
        "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"00000000000000000\"},"
        "{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"0102030405060708\"}]}]}]}";
    assert_int_equal(post(e, "/v1/traces", "application/json", NULL, json, strlen(json), &resp),
                     200);
    json_error_t je;
    json_t *j = json_loads((char *)resp.body.data, 0, &je);
    assert_non_null(j);
    json_t *ps = json_object_get(j, "partialSuccess");
    assert_string_equal(json_string_value(json_object_get(ps, "rejectedSpans")), "2");
    assert_string_equal(json_string_value(json_object_get(ps, "errorMessage")),
                        "2 spans rejected as invalid; first: resourceSpans[0].scopeSpans[0]."
                        "spans[1].spanId: expected 16 hex digits, got 17");
    json_decref(j);
    fl_http_response_dispose(&resp);
    fl_receiver_stats_t st;
    fl_receiver_stats(e->r, &st);
    assert_int_equal(st.spans_rejected, 2);
    assert_int_equal(st.spans_accepted, 1);

    /* Only invalid spans: answered at once, nothing submitted. */
    size_t before = sink_submits(&e->sink);
    const char *none = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"x\"}]}]}]}";
    assert_int_equal(post(e, "/v1/traces", "application/json", NULL, none, strlen(none), &resp),
                     200);
    assert_non_null(strstr((char *)resp.body.data, "\"rejectedSpans\":\"1\""));
    assert_int_equal(sink_submits(&e->sink), before);
    fl_http_response_dispose(&resp);
}

static void test_receiver_http_routing_errors(void **state)
{
    env_t *e = *state;
    fl_http_response_t resp;
    assert_int_equal(post(e, "/v1/nope", "application/json", NULL, "{}", 2, &resp), 404);
    assert_non_null(strstr((char *)resp.body.data, "/v1/nope"));
    fl_http_response_dispose(&resp);

    assert_int_equal(fl_http_client_request(e->http, "GET", "/v1/traces", NULL, 0, NULL, 0, &resp),
                     FL_OK);
    assert_int_equal(resp.status, 405);
    assert_string_equal(hdr(&resp, "allow"), "POST");
    fl_http_response_dispose(&resp);

    assert_int_equal(post(e, "/v1/traces", "text/plain", NULL, "x", 1, &resp), 415);
    assert_non_null(strstr((char *)resp.body.data, "application/x-protobuf"));
    assert_non_null(strstr(hdr(&resp, "content-type"), "text/plain"));
    fl_http_response_dispose(&resp);

    /* Malformed JSON: 400 with a JSON google.rpc.Status naming where. */
    const char *bad = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":7}]}]}]}";
    assert_int_equal(post(e, "/v1/traces", "application/json", NULL, bad, strlen(bad), &resp), 400);
    json_error_t je;
    json_t *j = json_loads((char *)resp.body.data, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "resourceSpans[0].scopeSpans[0].spans[0].name: expected a string, got a "
                        "number");
    json_decref(j);
    fl_http_response_dispose(&resp);

    /* Malformed protobuf: a protobuf Status. */
    assert_int_equal(
        post(e, "/v1/traces", "application/x-protobuf", NULL, "\x0a\x7f\x01", 3, &resp), 400);
    assert_string_equal(hdr(&resp, "content-type"), "application/x-protobuf");
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, resp.body.len, resp.body.data);
    assert_non_null(st);
    assert_int_equal(st->code, 3);
    assert_non_null(strstr(st->message, "byte offset 0"));
    google__rpc__status__free_unpacked(st, NULL);
    fl_http_response_dispose(&resp);

    /* Unknown and corrupt encodings. */
    assert_int_equal(post(e, "/v1/traces", "application/json", "br", "{}", 2, &resp), 400);
    assert_non_null(strstr((char *)resp.body.data, "unsupported Content-Encoding: br"));
    fl_http_response_dispose(&resp);
    assert_int_equal(post(e, "/v1/traces", "application/json", "gzip", "{}", 2, &resp), 400);
    assert_string_equal((char *)resp.body.data,
                        "{\"code\":3,\"message\":\"gzip: invalid header\"}");
    fl_http_response_dispose(&resp);

    fl_receiver_stats_t s;
    fl_receiver_stats(e->r, &s);
    assert_int_equal(s.requests_failed, 7);
    assert_int_equal(sink_submits(&e->sink), 0);
}

static void test_receiver_http_too_large(void **state)
{
    env_t *e = *state; /* max_body 1 MiB */
    fl_http_response_t resp;
    size_t len;
    /* Content-Length over the limit: refused in on_head. */
    uint8_t *big = calloc(1, (1u << 20) + 10);
    assert_int_equal(
        post(e, "/v1/traces", "application/x-protobuf", NULL, big, (1u << 20) + 10, &resp), 413);
    assert_non_null(strstr((char *)resp.body.data + 2, "larger than the 1048576-byte limit"));
    fl_http_response_dispose(&resp);
    free(big);
    /* Under the limit on the wire, over it decompressed: big_batch is ~2 MB of protobuf. */
    uint8_t *gz = fixture("http-protobuf", "big_batch.gz", &len);
    assert_int_equal(post(e, "/v1/traces", "application/x-protobuf", "gzip", gz, len, &resp), 413);
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, resp.body.len, resp.body.data);
    assert_non_null(st);
    assert_non_null(strstr(st->message, "gzip: decompressed body larger than the 1048576-byte"));
    google__rpc__status__free_unpacked(st, NULL);
    fl_http_response_dispose(&resp);
    free(gz);
    assert_int_equal(sink_submits(&e->sink), 0);
}

static void test_receiver_http_overload(void **state)
{
    env_t *e = *state;
    fl_http_response_t resp;
    size_t len;
    uint8_t *body = fixture("http-protobuf", "healthy", &len);
    /* The sink says it is full: 503 + Retry-After before decoding anything. */
    sink_set(&e->sink, FL_OK, FL_OK, 1, 0);
    assert_int_equal(post(e, "/v1/traces", "application/x-protobuf", NULL, body, len, &resp), 503);
    assert_string_equal(hdr(&resp, "retry-after"), "2");
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, resp.body.len, resp.body.data);
    assert_non_null(st);
    assert_int_equal(st->code, 14);
    assert_int_equal(st->n_details, 1);
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(NULL, st->details[0]->value.len,
                                                                 st->details[0]->value.data);
    assert_int_equal(ri->retry_delay->seconds, 2);
    google__rpc__retry_info__free_unpacked(ri, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    fl_http_response_dispose(&resp);
    assert_int_equal(sink_submits(&e->sink), 0);

    /* Refused at submit: 503 too. */
    sink_set(&e->sink, FL_ERR_BUSY, FL_OK, 0, 0);
    assert_int_equal(post(e, "/v1/traces", "application/x-protobuf", NULL, body, len, &resp), 503);
    assert_string_equal(hdr(&resp, "retry-after"), "2");
    fl_http_response_dispose(&resp);
    /* Failed later, retryably (disk full) and not (a store error). */
    sink_set(&e->sink, FL_OK, FL_ERR_STORE_FULL, 0, 0);
    assert_int_equal(post(e, "/v1/traces", "application/x-protobuf", NULL, body, len, &resp), 503);
    fl_http_response_dispose(&resp);
    sink_set(&e->sink, FL_OK, FL_ERR_STORE, 0, 0);
    const char *json =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
        "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\"}]}]}]}";
    assert_int_equal(post(e, "/v1/traces", "application/json", NULL, json, strlen(json), &resp),
                     500);
    assert_non_null(strstr((char *)resp.body.data, "storing the spans failed"));
    fl_http_response_dispose(&resp);
    assert_int_equal(sink_stored(&e->sink), 0);
    fl_receiver_stats_t s;
    fl_receiver_stats(e->r, &s);
    assert_int_equal(s.requests_refused, 3);
    assert_int_equal(s.requests_failed, 1);
    assert_int_equal(s.spans_accepted, 0);
    free(body);
}

typedef struct bg_post {
    env_t *e;
    fl_http_client_t *c;
    const uint8_t *body;
    size_t len;
    int status;
    int done;
    pthread_mutex_t mu;
} bg_post_t;

static void *bg_post_run(void *arg)
{
    bg_post_t *b = arg;
    fl_http_response_t resp;
    fl_net_header_t h[1] = {{"Content-Type", "application/x-protobuf"}};
    int rc = fl_http_client_request(b->c, "POST", "/v1/traces", h, 1, b->body, b->len, &resp);
    pthread_mutex_lock(&b->mu);
    b->status = rc == FL_OK ? resp.status : -1;
    b->done = 1;
    pthread_mutex_unlock(&b->mu);
    if (rc == FL_OK)
        fl_http_response_dispose(&resp);
    return NULL;
}

static int bg_done(bg_post_t *b)
{
    pthread_mutex_lock(&b->mu);
    int d = b->done;
    pthread_mutex_unlock(&b->mu);
    return d;
}

/* The 200 waits for the sink's callback; meanwhile the in-flight budget refuses others. */
static void test_receiver_http_ack_after_durable(void **state)
{
    env_t e;
    size_t len;
    (void)state;
    env_start(&e, 1u << 20, 100000, NULL); /* a 100 kB in-flight budget */
    uint8_t *body = fixture("http-protobuf", "healthy", &len);
    sink_set(&e.sink, FL_OK, FL_OK, 0, 1); /* hold callbacks */
    fl_http_client_opts_t co = {0};
    co.host = "127.0.0.1";
    co.port = e.http_port;
    co.timeout_ms = 10000;
    bg_post_t bg = {&e, fl_http_client_new(&co), body, len, 0, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t;
    pthread_create(&t, NULL, bg_post_run, &bg);
    /* Wait until the batch reached the sink, then check nobody answered yet. */
    for (int i = 0; i < 500 && sink_submits(&e.sink) == 0; i++)
        usleep(10000);
    assert_int_equal(sink_submits(&e.sink), 1);
    usleep(200000);
    assert_int_equal(bg_done(&bg), 0);
    fl_receiver_stats_t s;
    fl_receiver_stats(e.r, &s);
    assert_int_equal(s.inflight_requests, 1);
    assert_true(s.inflight_bytes >= len);
    /* A second request does not fit the in-flight budget: 503 before its body is decoded. */
    fl_http_response_t resp;
    assert_int_equal(post(&e, "/v1/traces", "application/x-protobuf", NULL, body, len, &resp), 503);
    assert_non_null(strstr((char *)resp.body.data + 2, "in-flight byte budget"));
    fl_http_response_dispose(&resp);
    assert_int_equal(sink_submits(&e.sink), 1);
    /* Commit: now the first request is answered. */
    sink_set(&e.sink, FL_OK, FL_OK, 0, 0);
    pthread_join(t, NULL);
    assert_int_equal(bg.status, 200);
    assert_int_equal(sink_stored(&e.sink), 200);
    fl_http_client_free(bg.c);
    free(body);
    env_stop(&e);
}

static void test_receiver_http_logs_metrics(void **state)
{
    env_t *e = *state;
    fl_http_response_t resp;
    size_t len;
    uint8_t *body = fixture("http-json", "logs", &len);
    assert_int_equal(post(e, "/v1/logs", "application/json", NULL, body, len, &resp), 200);
    assert_string_equal((char *)resp.body.data,
                        "{\"partialSuccess\":{\"rejectedLogRecords\":\"7\",\"errorMessage\":"
                        "\"faultline stores traces only; 7 log records were not stored\"}}");
    fl_http_response_dispose(&resp);
    free(body);
    body = fixture("http-protobuf", "metrics", &len);
    assert_int_equal(post(e, "/v1/metrics", "application/x-protobuf", NULL, body, len, &resp), 200);
    assert_true(resp.body.len > 0);
    fl_http_response_dispose(&resp);
    free(body);
    assert_int_equal(sink_submits(&e->sink), 0);
}

/* Remove a capture dir and, when it is empty then, its parent. */
static void rm_capture_dir(const char *dir)
{
    char path[512];
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    snprintf(path, sizeof(path), "%s", dir);
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = 0;
        rmdir(path);
    }
}

/* Every accepted request lands in the capture dir as the fixture layout. */
static void test_receiver_http_capture(void **state)
{
    env_t e;
    size_t len, clen;
    char path[512];
    (void)state;
    char dir[128];
    snprintf(dir, sizeof(dir), "/tmp/fl-recv-capture-%d/http", (int)getpid());
    env_start(&e, 8u << 20, 0, dir);
    uint8_t *body = fixture("http-json", "healthy.gz", &len);
    fl_http_response_t resp;
    assert_int_equal(post(&e, "/v1/traces", "application/json", "gzip", body, len, &resp), 200);
    fl_http_response_dispose(&resp);
    /* A rejected request is not captured. */
    assert_int_equal(post(&e, "/v1/traces", "application/json", NULL, "[", 1, &resp), 400);
    fl_http_response_dispose(&resp);
    snprintf(path, sizeof(path), "%s/00000001-http-json.body", e.capture_dir);
    uint8_t *cap = read_file(path, &clen);
    assert_non_null(cap);
    assert_int_equal(clen, len);
    assert_memory_equal(cap, body, len);
    free(cap);
    snprintf(path, sizeof(path), "%s/00000001-http-json.headers.json", e.capture_dir);
    json_error_t je;
    json_t *h = json_load_file(path, 0, &je);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(h, "path")), "/v1/traces");
    json_t *hh = json_object_get(h, "headers");
    assert_string_equal(json_string_value(json_object_get(hh, "content-type")), "application/json");
    assert_string_equal(json_string_value(json_object_get(hh, "content-encoding")), "gzip");
    json_decref(h);
    snprintf(path, sizeof(path), "%s/00000002-http-json.body", e.capture_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    fl_receiver_stats_t s;
    fl_receiver_stats(e.r, &s);
    assert_int_equal(s.captures, 1);
    free(body);

    env_stop(&e);

    /* A restart continues the numbering: nothing is overwritten. */
    env_start(&e, 8u << 20, 0, dir);
    assert_int_equal(post(&e, "/v1/logs", "application/json", NULL, "{}", 2, &resp), 200);
    fl_http_response_dispose(&resp);
    env_stop(&e);
    snprintf(path, sizeof(path), "%s/00000002-http-json.body", dir);
    cap = read_file(path, &clen);
    assert_non_null(cap);
    assert_int_equal(clen, 2);
    free(cap);
    rm_capture_dir(dir);
    char err[256];
    fl_receiver_opts_t o = {0};
    o.sink.submit_take = sink_submit;
    /* A capture dir that cannot be made is an error at startup. */
    o.capture_dir = "/proc/nope/capture";
    assert_null(fl_receiver_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "capture dir /proc/nope/capture"));
}

/* ---------------------------------------------------------------- gRPC */

/* gRPC captures carry the 5-byte prefix, exactly as the fixtures do. */
static void test_receiver_grpc_capture(void **state)
{
    env_t e;
    size_t len, clen;
    char path[512];
    (void)state;
    char dir[128];
    snprintf(dir, sizeof(dir), "/tmp/fl-recv-capture-%d/grpc", (int)getpid());
    env_start(&e, 8u << 20, 0, dir);
    uint8_t *gb = fixture("grpc", "healthy.gz", &len);
    fl_net_header_t enc[1] = {{"grpc-encoding", "gzip"}};
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call_raw(e.grpc, GRPC_TRACES, enc, 1, gb, len, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    fl_grpc_result_dispose(&res);
    snprintf(path, sizeof(path), "%s/00000001-grpc.body", e.capture_dir);
    uint8_t *cap = read_file(path, &clen);
    assert_non_null(cap);
    assert_int_equal(clen, len);
    assert_memory_equal(cap, gb, len);
    free(cap);
    free(gb);
    snprintf(path, sizeof(path), "%s/00000001-grpc.headers.json", e.capture_dir);
    json_error_t je;
    json_t *h = json_load_file(path, 0, &je);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "path")), GRPC_TRACES);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(h, "headers"), "grpc-encoding")), "gzip");
    json_decref(h);
    env_stop(&e);
    rm_capture_dir(e.capture_dir);
}

static void test_receiver_grpc_export(void **state)
{
    env_t *e = *state;
    fl_grpc_result_t res;
    size_t len;
    uint8_t *body = fixture("grpc", "healthy", &len);
    assert_int_equal(fl_grpc_client_call_raw(e->grpc, GRPC_TRACES, NULL, 0, body, len, &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, 0);
    assert_int_equal(res.message.len, 0);
    assert_int_equal(sink_stored(&e->sink), 200);
    fl_grpc_result_dispose(&res);
    free(body);
    /* gzip with the compressed flag: all duplicates, still OK. */
    body = fixture("grpc", "payment_errors.gz", &len);
    fl_net_header_t enc[1] = {{"grpc-encoding", "gzip"}};
    assert_int_equal(fl_grpc_client_call_raw(e->grpc, GRPC_TRACES, enc, 1, body, len, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    assert_int_equal(sink_stored(&e->sink), 380);
    fl_grpc_result_dispose(&res);
    free(body);

    /* Partial success in the response message. */
    static const uint8_t tid[16] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    Opentelemetry__Proto__Trace__V1__Span sp[2];
    Opentelemetry__Proto__Trace__V1__Span *spp[2] = {&sp[0], &sp[1]};
    for (int i = 0; i < 2; i++) {
        opentelemetry__proto__trace__v1__span__init(&sp[i]);
        sp[i].trace_id.data = (uint8_t *)tid;
        sp[i].trace_id.len = 16;
        sp[i].span_id.data = (uint8_t *)tid;
        sp[i].span_id.len = i ? 8 : 7;
    }
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss =
        OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    ss.spans = spp;
    ss.n_spans = 2;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs =
        OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    rs.scope_spans = &ssp;
    rs.n_scope_spans = 1;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.resource_spans = &rsp;
    req.n_resource_spans = 1;
    uint8_t buf[256];
    size_t n = protobuf_c_message_pack(&req.base, buf);
    assert_int_equal(fl_grpc_client_call(e->grpc, GRPC_TRACES, NULL, 0, buf, n, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *tr =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, res.message.len, res.message.data);
    assert_non_null(tr);
    assert_int_equal(tr->partial_success->rejected_spans, 1);
    assert_non_null(
        strstr(tr->partial_success->error_message, "spans[0].spanId: expected 8 bytes"));
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr,
                                                                                             NULL);
    fl_grpc_result_dispose(&res);

    /* Logs service: accepted, not stored, counted. */
    body = fixture("http-protobuf", "logs", &len);
    assert_int_equal(fl_grpc_client_call(e->grpc, GRPC_LOGS, NULL, 0, body, len, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse *lr =
        opentelemetry__proto__collector__logs__v1__export_logs_service_response__unpack(
            NULL, res.message.len, res.message.data);
    assert_non_null(lr);
    assert_int_equal(lr->partial_success->rejected_log_records, 7);
    opentelemetry__proto__collector__logs__v1__export_logs_service_response__free_unpacked(lr,
                                                                                           NULL);
    fl_grpc_result_dispose(&res);
    free(body);
}

static void test_receiver_grpc_errors(void **state)
{
    env_t *e = *state;
    fl_grpc_result_t res;
    size_t len;
    /* Unknown method and service. */
    assert_int_equal(
        fl_grpc_client_call(e->grpc, "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
                            NULL, 0, "", 0, 0, &res),
        FL_OK);
    assert_int_equal(res.grpc_status, 12);
    fl_grpc_result_dispose(&res);
    assert_int_equal(fl_grpc_client_call(e->grpc, "/x.Y/Z", NULL, 0, "", 0, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 12);
    fl_grpc_result_dispose(&res);
    /* Unknown grpc-encoding. */
    fl_net_header_t br[1] = {{"grpc-encoding", "br"}};
    assert_int_equal(fl_grpc_client_call(e->grpc, GRPC_TRACES, br, 1, "x", 1, 1, &res), FL_OK);
    assert_int_equal(res.grpc_status, 12);
    fl_grpc_result_dispose(&res);
    /* Malformed message. */
    assert_int_equal(fl_grpc_client_call(e->grpc, GRPC_TRACES, NULL, 0, "\x0a\x7f", 2, 0, &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, 3);
    assert_non_null(res.grpc_message);
    assert_non_null(strstr(res.grpc_message, "byte offset 0"));
    fl_grpc_result_dispose(&res);
    /* Over the decompressed limit (1 MiB). */
    uint8_t *gz = fixture("grpc", "big_batch.gz", &len);
    fl_net_header_t enc[1] = {{"grpc-encoding", "gzip"}};
    assert_int_equal(fl_grpc_client_call_raw(e->grpc, GRPC_TRACES, enc, 1, gz, len, &res), FL_OK);
    assert_int_equal(res.grpc_status, 8);
    fl_grpc_result_dispose(&res);
    free(gz);
    /* Overload: UNAVAILABLE with RetryInfo in grpc-status-details-bin. */
    sink_set(&e->sink, FL_OK, FL_OK, 1, 0);
    uint8_t *body = fixture("grpc", "healthy", &len);
    assert_int_equal(fl_grpc_client_call_raw(e->grpc, GRPC_TRACES, NULL, 0, body, len, &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, 14);
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, res.details.len, res.details.data);
    assert_non_null(st);
    assert_int_equal(st->code, 14);
    assert_int_equal(st->n_details, 1);
    assert_string_equal(st->details[0]->type_url, "type.googleapis.com/google.rpc.RetryInfo");
    google__rpc__status__free_unpacked(st, NULL);
    fl_grpc_result_dispose(&res);
    /* A store failure: INTERNAL. */
    sink_set(&e->sink, FL_OK, FL_ERR_STORE, 0, 0);
    assert_int_equal(fl_grpc_client_call_raw(e->grpc, GRPC_TRACES, NULL, 0, body, len, &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, 13);
    fl_grpc_result_dispose(&res);
    free(body);
    assert_int_equal(sink_stored(&e->sink), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receiver_http_protobuf_and_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_http_partial_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_http_routing_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_http_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_http_overload, setup, teardown),
        cmocka_unit_test(test_receiver_http_ack_after_durable),
        cmocka_unit_test_setup_teardown(test_receiver_http_logs_metrics, setup, teardown),
        cmocka_unit_test(test_receiver_http_capture),
        cmocka_unit_test(test_receiver_grpc_capture),
        cmocka_unit_test_setup_teardown(test_receiver_grpc_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_grpc_errors, setup, teardown),
    };
    fl_log_set_level_name("warn");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
