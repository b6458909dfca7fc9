/* SPDX-License-Identifier: Apache-2.0 */
/* The OTLP endpoints: routing and admission on the net loop thread (on_head), decoding on
 * the decode pool, the hand-off to the sink, and the answer from the sink's callback so that
 * a 200 / grpc-status 0 always means the spans are durable. */
#include "receiver_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_MAX_BODY (64u << 20)
#define DEFAULT_MAX_INFLIGHT ((size_t)128 << 20)
#define DECODE_QUEUE 4096

static const char *const grpc_paths[] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
};
static const char *const http_paths[] = {"/v1/traces", "/v1/logs", "/v1/metrics"};
static const char *const item_names[] = {"spans", "log records", "data points"};

struct fl_receiver {
    fl_receiver_sink_t sink;
    size_t max_body;
    size_t max_inflight;
    unsigned retry_after_s;
    int max_depth;
    const fl_net_tokens_t *tokens;
    const fl_net_cors_t *cors;
    fl_sanitize_opts_t sanitize;
    size_t max_spans, max_spans_per_trace;
    fl_trace_limit_t *trace_limit; /* NULL: no spans-per-trace limit */
    fl_pool_t *pool;
    fl__capture_t *capture;

    _Atomic uint64_t requests, spans_accepted, spans_rejected, spans_duplicate, items_not_stored,
        requests_refused, requests_failed, inflight_bytes, inflight_requests, bytes_received,
        captures, requests_unauthenticated, requests_too_many_spans, attributes_masked,
        attributes_dropped, values_truncated, spans_over_trace_limit;

    pthread_mutex_t mu; /* with cv: fl_receiver_free waits for the last request */
    pthread_cond_t cv;
};

/* One request from on_head to its answer. */
typedef struct rctx {
    fl_receiver_t *r;
    fl_net_req_t *req;
    int grpc;
    int signal;
    int format;
    char encoding[32];
    size_t charged; /* bytes counted in inflight_bytes */
    size_t n_spans;
    size_t rejected;
    char reject_msg[512];
    uint64_t capture_seq;
    int captured;
    fl_trace_limit_charge_t charge; /* spans counted per trace; given back on failure */
} rctx_t;

/* ---------------------------------------------------------------- small helpers */

static void charge(rctx_t *x, size_t bytes)
{
    atomic_fetch_add(&x->r->inflight_bytes, bytes);
    x->charged += bytes;
}

static void uncharge(rctx_t *x, size_t bytes)
{
    atomic_fetch_sub(&x->r->inflight_bytes, bytes);
    x->charged -= bytes;
}

/* The request is answered: release what it held. Never touch x->req after respond. */
static void finish(rctx_t *x)
{
    fl_receiver_t *r = x->r;
    atomic_fetch_sub(&r->inflight_bytes, x->charged);
    fl_trace_limit_charge_dispose(&x->charge);
    free(x);
    pthread_mutex_lock(&r->mu);
    if (atomic_fetch_sub(&r->inflight_requests, 1) == 1)
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static const char *content_type_of(int format)
{
    return format == FL_OTLP_JSON ? "application/json" : "application/x-protobuf";
}

/* Media type without parameters, case-insensitive. -1 when unsupported. */
static int format_of(const char *ct)
{
    if (!ct)
        return -1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(ct, lit, n) == 0)
    if (IS("application/x-protobuf") || IS("application/protobuf"))
        return FL_OTLP_PROTOBUF;
    if (IS("application/json"))
        return FL_OTLP_JSON;
#undef IS
    return -1;
}

static void respond_text(fl_net_req_t *req, int status, const char *text, const char *allow)
{
    fl_net_header_t h[2] = {{"Content-Type", "text/plain; charset=utf-8"}, {"Allow", allow}};
    fl_net_respond(req, status, h, allow ? 2 : 1, text, strlen(text));
}

/* An error answer in the request's own encoding (HTTP: google.rpc.Status body; gRPC:
 * Trailers-Only with grpc-message, plus RetryInfo details when retryable). */
static void respond_error(fl_receiver_t *r, fl_net_req_t *req, int grpc, int format,
                          int http_status, int grpc_code, const char *msg)
{
    int retry = http_status == 503;
    fl_buf_t body;
    fl_buf_init(&body, 0);
    if (retry)
        atomic_fetch_add(&r->requests_refused, 1);
    else
        atomic_fetch_add(&r->requests_failed, 1);
    fl_log(retry ? FL_LOG_DEBUG : FL_LOG_INFO, "receiver",
           "request refused status=%d grpc=%d peer=%s msg=\"%s\"", http_status, grpc_code,
           fl_net_req_peer(req), msg);
    if (grpc) {
        if (retry)
            fl_otlp_encode_status(FL_OTLP_PROTOBUF, grpc_code, msg, r->retry_after_s, &body);
        fl_net_grpc_respond(req, grpc_code, msg, retry ? body.data : NULL, retry ? body.len : 0,
                            NULL, 0);
    } else {
        char ra[16];
        fl_net_header_t h[2] = {{"Content-Type", content_type_of(format)}, {"Retry-After", ra}};
        snprintf(ra, sizeof(ra), "%u", r->retry_after_s);
        if (fl_otlp_encode_status(format, grpc_code, msg, retry ? r->retry_after_s : 0, &body) !=
            FL_OK) {
            fl_buf_reset(&body);
            fl_buf_puts(&body, "failed to encode the error message");
            h[0].value = "text/plain; charset=utf-8";
        }
        fl_net_respond(req, http_status, h, retry ? 2 : 1, body.data, body.len);
    }
    fl_buf_dispose(&body);
}

/* Map a decoder, sink or store error code to the HTTP status and gRPC code. */
static void status_for(int rc, int *http, int *grpc_code)
{
    switch (rc) {
    case FL_ERR_TOO_LARGE:
    case FL_ERR_NOMEM:
    case FL_ERR_LIMIT:
        *http = 413;
        *grpc_code = FL_GRPC_RESOURCE_EXHAUSTED;
        break;
    case FL_ERR_DECODE:
    case FL_ERR_TOO_DEEP:
    case FL_ERR_ENCODING:
    case FL_ERR_INVALID:
        *http = 400;
        *grpc_code = FL_GRPC_INVALID_ARGUMENT;
        break;
    case FL_ERR_BUSY:
    case FL_ERR_CLOSED:
    case FL_ERR_STORE_FULL:
        *http = 503;
        *grpc_code = FL_GRPC_UNAVAILABLE;
        break;
    default:
        *http = 500;
        *grpc_code = FL_GRPC_INTERNAL;
        break;
    }
}

static const char *transport_of(const rctx_t *x)
{
    return x->grpc ? "grpc" : x->format == FL_OTLP_JSON ? "http-json" : "http-protobuf";
}

static void fail(rctx_t *x, int rc, const char *msg)
{
    int http, code;
    status_for(rc, &http, &code);
    if (x->captured) {
        fl__capture_remove(x->r->capture, transport_of(x), x->capture_seq);
        atomic_fetch_sub(&x->r->captures, 1);
    }
    /* Not stored: the client's retry must not count against the spans-per-trace limit. */
    fl_trace_limit_release(x->r->trace_limit, &x->charge);
    respond_error(x->r, x->req, x->grpc, x->format, http, code, msg);
    finish(x);
}

/* The success answer: an Export*ServiceResponse, with partial success when items were not
 * accepted. */
static void respond_ok(rctx_t *x, size_t rejected, const char *msg)
{
    fl_buf_t body;
    fl_buf_init(&body, 0);
    int fmt = x->grpc ? FL_OTLP_PROTOBUF : x->format;
    if (fl_otlp_encode_export_response(x->signal, fmt, rejected, msg, &body) != FL_OK) {
        fl_buf_dispose(&body);
        fail(x, FL_ERR_IO, "failed to encode the response");
        return;
    }
    if (x->grpc) {
        fl_net_grpc_respond(x->req, FL_GRPC_OK, NULL, NULL, 0, body.data, body.len);
    } else {
        fl_net_header_t h[1] = {{"Content-Type", content_type_of(x->format)}};
        fl_net_respond(x->req, 200, h, 1, body.data, body.len);
    }
    fl_buf_dispose(&body);
    finish(x);
}

static void respond_traces_ok(rctx_t *x)
{
    char msg[900], hex[33];
    size_t over = x->charge.dropped;
    int n = 0;
    if (!x->rejected && !over) {
        respond_ok(x, 0, NULL);
        return;
    }
    if (x->rejected)
        n = snprintf(msg, sizeof(msg), "%zu span%s rejected as invalid; first: %s", x->rejected,
                     x->rejected == 1 ? "" : "s", x->reject_msg);
    if (over && n >= 0 && (size_t)n < sizeof(msg)) {
        fl_hex_encode(x->charge.first_over, 16, hex);
        snprintf(msg + n, sizeof(msg) - (size_t)n,
                 "%s%zu span%s dropped past the limit of %zu spans per trace (first: trace %s)",
                 n ? "; " : "", over, over == 1 ? "" : "s", x->r->max_spans_per_trace, hex);
    }
    respond_ok(x, x->rejected + over, msg);
}

/* ---------------------------------------------------------------- decode pool */

static void sink_done(void *ctx, int status, size_t stored, size_t duplicates)
{
    rctx_t *x = ctx;
    fl_receiver_t *r = x->r;
    if (status == FL_OK) {
        atomic_fetch_add(&r->spans_accepted, x->n_spans);
        atomic_fetch_add(&r->spans_duplicate, duplicates);
        (void)stored;
        respond_traces_ok(x);
        return;
    }
    char msg[160];
    if (status == FL_ERR_BUSY || status == FL_ERR_STORE_FULL)
        snprintf(msg, sizeof(msg), "storage temporarily unavailable (%s); retry later",
                 fl_strerror(status));
    else
        snprintf(msg, sizeof(msg), "storing the spans failed: %s", fl_strerror(status));
    fl_log(FL_LOG_WARN, "receiver", "sink failed status=%d msg=\"%s\"", status, msg);
    fail(x, status == FL_ERR_BUSY || status == FL_ERR_STORE_FULL ? FL_ERR_BUSY : FL_ERR_STORE, msg);
}

static void capture(rctx_t *x, const uint8_t *body, size_t len)
{
    fl_receiver_t *r = x->r;
    uint8_t prefix[5];
    size_t plen = 0;
    if (!r->capture)
        return;
    if (x->grpc) {
        /* Put back the gRPC message prefix the framework removed. */
        prefix[0] = fl_net_req_grpc_compressed(x->req) ? 1 : 0;
        prefix[1] = (uint8_t)(len >> 24);
        prefix[2] = (uint8_t)(len >> 16);
        prefix[3] = (uint8_t)(len >> 8);
        prefix[4] = (uint8_t)len;
        plen = 5;
    }
    if (fl__capture_write(r->capture, transport_of(x), x->req, prefix, plen, body, len,
                          &x->capture_seq) == FL_OK) {
        x->captured = 1;
        atomic_fetch_add(&r->captures, 1);
    } else {
        fl_log(FL_LOG_WARN, "receiver", "capture write failed errno=%d", errno);
    }
}

static void decode_job(void *arg)
{
    rctx_t *x = arg;
    fl_receiver_t *r = x->r;
    char err[512];
    size_t len;
    const uint8_t *body = fl_net_req_body(x->req, &len);
    const uint8_t *data = body;
    size_t dlen = len;
    fl_buf_t plain;
    fl_span_batch_t *batch = NULL;
    int rc;

    fl_buf_init(&plain, 0);
    err[0] = 0;
    if (x->encoding[0]) {
        rc = fl_decompress(x->encoding, body, len, r->max_body, &plain, err, sizeof(err));
        if (rc != FL_OK) {
            fl_buf_dispose(&plain);
            fail(x, rc, err);
            return;
        }
        charge(x, plain.cap);
        data = plain.data;
        dlen = plain.len;
    } else if (len > r->max_body) {
        snprintf(err, sizeof(err), "request body of %zu bytes is larger than the %zu-byte limit",
                 len, r->max_body);
        fail(x, FL_ERR_TOO_LARGE, err);
        return;
    }

    if (x->signal != FL_OTLP_TRACES) {
        size_t count = 0;
        char msg[160];
        rc = fl_otlp_count_items(x->signal, data, dlen, x->format, r->max_depth, &count, err,
                                 sizeof(err));
        uncharge(x, plain.cap);
        fl_buf_dispose(&plain);
        if (rc != FL_OK) {
            fail(x, rc, err);
            return;
        }
        capture(x, body, len);
        atomic_fetch_add(&r->items_not_stored, count);
        if (count == 0) {
            respond_ok(x, 0, NULL);
            return;
        }
        if (count == 1)
            snprintf(msg, sizeof(msg), "faultline stores traces only; 1 %s was not stored",
                     x->signal == FL_OTLP_LOGS ? "log record" : "data point");
        else
            snprintf(msg, sizeof(msg), "faultline stores traces only; %zu %s were not stored",
                     count, item_names[x->signal]);
        respond_ok(x, count, msg);
        return;
    }

    /* Protobuf decodes to a few times its size, JSON to about its size plus the copy. */
    size_t chunk = dlen * 2;
    chunk = chunk < 65536 ? 65536 : chunk > (8u << 20) ? (8u << 20) : chunk;
    batch = fl_span_batch_new(chunk);
    if (!batch) {
        uncharge(x, plain.cap);
        fl_buf_dispose(&plain);
        fail(x, FL_ERR_BUSY, "out of memory; retry later");
        return;
    }
    fl_arena_set_limit(batch->arena, dlen * 16 + (16u << 20));
    batch->received_ns = fl_time_now_ns();
    rc = fl_otlp_decode_traces_ex(data, dlen, x->format, r->max_depth, batch, err, sizeof(err));
    /* The batch no longer points into the decompressed body. */
    uncharge(x, plain.cap);
    fl_buf_dispose(&plain);
    if (rc != FL_OK) {
        fl_span_batch_free(batch);
        fail(x, rc, err);
        return;
    }
    if (r->max_spans && batch->n_spans + batch->rejected > r->max_spans) {
        snprintf(err, sizeof(err),
                 "request holds %zu spans, more than the limit of %zu spans per request; "
                 "send smaller batches",
                 batch->n_spans + batch->rejected, r->max_spans);
        fl_span_batch_free(batch);
        atomic_fetch_add(&r->requests_too_many_spans, 1);
        fail(x, FL_ERR_TOO_LARGE, err);
        return;
    }
    fl_sanitize_counts_t sc = {0};
    rc = fl_sanitize_batch(&r->sanitize, batch, &sc);
    atomic_fetch_add(&r->attributes_masked, sc.masked);
    atomic_fetch_add(&r->attributes_dropped, sc.dropped);
    atomic_fetch_add(&r->values_truncated, sc.truncated);
    if (rc != FL_OK) {
        fl_span_batch_free(batch);
        fail(x, FL_ERR_BUSY, "out of memory while masking attributes; retry later");
        return;
    }
    if (fl_trace_limit_apply(r->trace_limit, batch, &x->charge) != FL_OK) {
        fl_span_batch_free(batch);
        fail(x, FL_ERR_BUSY, "out of memory while counting spans per trace; retry later");
        return;
    }
    atomic_fetch_add(&r->spans_over_trace_limit, x->charge.dropped);
    x->n_spans = batch->n_spans;
    x->rejected = batch->rejected;
    if (batch->reject_msg)
        snprintf(x->reject_msg, sizeof(x->reject_msg), "%s", batch->reject_msg);
    atomic_fetch_add(&r->spans_rejected, batch->rejected);
    capture(x, body, len);
    /* The batch holds its own copies: the body need not wait for the commit (for protobuf
     * bodies that is a third of what an export holds while it is in flight). All that is
     * charged at this point is the body (the decompressed copy was given back above). */
    fl_net_req_drop_body(x->req);
    uncharge(x, x->charged);
    if (batch->n_spans == 0) {
        /* Nothing to make durable. */
        fl_span_batch_free(batch);
        respond_traces_ok(x);
        return;
    }
    /* What the decoded batch holds (a reused arena may keep more spare chunks than this
     * request needs; counting those refused exports that fit the budget). */
    charge(x, fl_arena_used(batch->arena));
    /* From here the sink owns the batch, and x belongs to the callback once it is accepted:
     * it may already have run when submit_take returns. */
    rc = r->sink.submit_take(r->sink.ud, batch, sink_done, x);
    if (rc != FL_OK) {
        snprintf(err, sizeof(err), "ingest queue full (%s); retry later", fl_strerror(rc));
        if (rc != FL_ERR_BUSY && rc != FL_ERR_CLOSED && rc != FL_ERR_STORE_FULL) {
            snprintf(err, sizeof(err), "storing the spans failed: %s", fl_strerror(rc));
            rc = FL_ERR_STORE;
        } else {
            rc = FL_ERR_BUSY;
        }
        fail(x, rc, err);
    }
}

/* ---------------------------------------------------------------- net callbacks */

/* Reserve in-flight bytes for a request of (at least) want bytes; 0 when refused. A lone
 * request bigger than the whole budget is still let in, or it could never succeed. */
static int admit(fl_receiver_t *r, size_t want, size_t est_spans, const char **why)
{
    uint64_t cur = atomic_load(&r->inflight_bytes);
    for (;;) {
        if (cur > 0 && cur + want > r->max_inflight) {
            *why = "in-flight byte budget exhausted";
            return 0;
        }
        if (atomic_compare_exchange_weak(&r->inflight_bytes, &cur, cur + want))
            break;
    }
    if (r->sink.would_block && r->sink.would_block(r->sink.ud, est_spans)) {
        atomic_fetch_sub(&r->inflight_bytes, want);
        *why = "ingest queue full";
        return 0;
    }
    return 1;
}

static int route_grpc(const char *path)
{
    for (int i = 0; i < 3; i++)
        if (path && strcmp(path, grpc_paths[i]) == 0)
            return i;
    return -1;
}

static int route_http(const char *path)
{
    for (int i = 0; i < 3; i++)
        if (path && strcmp(path, http_paths[i]) == 0)
            return i;
    return -1;
}

static int on_head(fl_net_req_t *req, void *ud)
{
    fl_receiver_t *r = ud;
    int grpc = fl_net_req_is_grpc(req);
    const char *path = fl_net_req_path(req);
    const char *enc;
    int signal, format;
    char msg[512];
    atomic_fetch_add(&r->requests, 1);

    /* CORS first: a browser's preflight carries no credentials. */
    if (!grpc && fl_net_cors_apply(req, r->cors) == FL_NET_CORS_PREFLIGHT)
        return FL_NET_RESPONDED;
    /* Authentication before anything else is looked at, and before the body is read. */
    if (r->tokens && !fl_net_tokens_check(r->tokens, fl_net_req_header(req, "authorization"))) {
        atomic_fetch_add(&r->requests_unauthenticated, 1);
        format = grpc ? FL_OTLP_PROTOBUF : format_of(fl_net_req_header(req, "content-type"));
        if (format < 0)
            format = FL_OTLP_JSON;
        fl_net_req_add_response_header(req, "WWW-Authenticate", "Bearer realm=\"faultline\"");
        respond_error(r, req, grpc, format, 401, FL_GRPC_UNAUTHENTICATED,
                      fl_net_req_header(req, "authorization")
                          ? "invalid bearer token"
                          : "missing bearer token (Authorization: Bearer <token>)");
        return FL_NET_RESPONDED;
    }

    if (grpc) {
        format = FL_OTLP_PROTOBUF;
        signal = route_grpc(path);
        if (signal < 0) {
            snprintf(msg, sizeof(msg), "unknown service or method %s", path ? path : "");
            respond_error(r, req, 1, format, 404, FL_GRPC_UNIMPLEMENTED, msg);
            return FL_NET_RESPONDED;
        }
        enc = fl_net_req_header(req, "grpc-encoding");
        if (enc && !fl_decompress_supported(enc)) {
            /* gRPC asks for UNIMPLEMENTED on an unknown message encoding. */
            snprintf(msg, sizeof(msg),
                     "grpc-encoding \"%.64s\" is not supported (supported: identity, gzip, "
                     "deflate, zstd, snappy)",
                     enc);
            respond_error(r, req, 1, format, 415, FL_GRPC_UNIMPLEMENTED, msg);
            return FL_NET_RESPONDED;
        }
    } else {
        if (route_grpc(path) >= 0) {
            /* A gRPC method called without a gRPC content type (PROTOCOL-HTTP2.md: 415). */
            atomic_fetch_add(&r->requests_failed, 1);
            respond_text(req, 415,
                         "415 unsupported media type: gRPC calls need content-type "
                         "application/grpc",
                         NULL);
            return FL_NET_RESPONDED;
        }
        signal = route_http(path);
        if (signal < 0) {
            atomic_fetch_add(&r->requests_failed, 1);
            snprintf(msg, sizeof(msg),
                     "404 page not found: %.200s (OTLP/HTTP paths: /v1/traces, /v1/logs, "
                     "/v1/metrics)",
                     path ? path : "");
            respond_text(req, 404, msg, NULL);
            return FL_NET_RESPONDED;
        }
        if (strcmp(fl_net_req_method(req), "POST") != 0) {
            atomic_fetch_add(&r->requests_failed, 1);
            respond_text(req, 405, "405 method not allowed, supported: [POST]", "POST");
            return FL_NET_RESPONDED;
        }
        format = format_of(fl_net_req_header(req, "content-type"));
        if (format < 0) {
            atomic_fetch_add(&r->requests_failed, 1);
            respond_text(req, 415,
                         "415 unsupported media type, supported: [application/json, "
                         "application/x-protobuf]",
                         NULL);
            return FL_NET_RESPONDED;
        }
        enc = fl_net_req_header(req, "content-encoding");
        if (enc && !fl_decompress_supported(enc)) {
            snprintf(msg, sizeof(msg),
                     "unsupported Content-Encoding: %.64s (supported: gzip, deflate, zstd, "
                     "snappy, x-snappy-framed, identity)",
                     enc);
            respond_error(r, req, 0, format, 400, FL_GRPC_INVALID_ARGUMENT, msg);
            return FL_NET_RESPONDED;
        }
    }

    int64_t cl = fl_net_req_content_length(req);
    if (cl > 0 && (uint64_t)cl > r->max_body + (grpc ? 5 : 0)) {
        snprintf(msg, sizeof(msg), "request body of %lld bytes is larger than the %zu-byte limit",
                 (long long)cl, r->max_body);
        respond_error(r, req, grpc, format, 413, FL_GRPC_RESOURCE_EXHAUSTED, msg);
        return FL_NET_RESPONDED;
    }
    const char *why = NULL;
    size_t want = cl > 0 ? (size_t)cl : 0;
    /* A rough span estimate for the sink's admission hint (protobuf: ~400 bytes a span). */
    size_t est = signal == FL_OTLP_TRACES ? want / 1024 + 1 : 1;
    if (!admit(r, want, est, &why)) {
        snprintf(msg, sizeof(msg), "server overloaded (%s); retry later", why);
        respond_error(r, req, grpc, format, 503, FL_GRPC_UNAVAILABLE, msg);
        return FL_NET_RESPONDED;
    }
    rctx_t *x = calloc(1, sizeof(*x));
    if (!x) {
        atomic_fetch_sub(&r->inflight_bytes, want);
        respond_error(r, req, grpc, format, 503, FL_GRPC_UNAVAILABLE, "out of memory; retry later");
        return FL_NET_RESPONDED;
    }
    x->r = r;
    x->req = req;
    x->grpc = grpc;
    x->signal = signal;
    x->format = format;
    x->charged = want;
    if (enc) {
        /* Normalise: identity needs no work. */
        while (*enc == ' ')
            enc++;
        if (strcasecmp(enc, "identity") != 0)
            snprintf(x->encoding, sizeof(x->encoding), "%s", enc);
    }
    atomic_fetch_add(&r->inflight_requests, 1);
    fl_net_req_set_data(req, x);
    return FL_NET_READ_BODY;
}

static void on_body(fl_net_req_t *req, void *ud)
{
    fl_receiver_t *r = ud;
    rctx_t *x = fl_net_req_get_data(req);
    size_t len;
    if (!x) {
        /* on_head did not run (a NULL on_head in some framework path): do it now. */
        if (on_head(req, ud) != FL_NET_READ_BODY)
            return;
        x = fl_net_req_get_data(req);
    }
    fl_net_req_body(req, &len);
    atomic_fetch_add(&r->bytes_received, len + (x->grpc ? 5 : 0));
    if (len > x->charged)
        charge(x, len - x->charged);
    if (x->grpc) {
        /* The compressed flag decides; grpc-encoding only names the algorithm. */
        if (!fl_net_req_grpc_compressed(req)) {
            x->encoding[0] = 0;
        } else if (!x->encoding[0]) {
            fail(x, FL_ERR_PROTOCOL, "compressed flag set but grpc-encoding is identity");
            return;
        }
    }
    int rc = fl_pool_submit(r->pool, decode_job, x);
    if (rc != FL_OK)
        fail(x, FL_ERR_BUSY, "decode queue full; retry later");
}

/* The client went away (or the framework refused the body) after on_head admitted the
 * request: give its budget back. */
static void on_abort(fl_net_req_t *req, void *ud)
{
    (void)ud;
    rctx_t *x = fl_net_req_get_data(req);
    if (x) {
        fl_net_req_set_data(req, NULL);
        finish(x);
    }
}

/* ---------------------------------------------------------------- lifecycle */

fl_receiver_t *fl_receiver_new(const fl_receiver_opts_t *opts, char *err, size_t errlen)
{
    fl_receiver_t *r = NULL;
    if (!opts || !opts->sink.submit_take) {
        fl__errf(err, errlen, FL_ERR_INVALID, "a sink with submit_take is required");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->sink = opts->sink;
    r->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    r->max_inflight = opts->max_inflight_bytes ? opts->max_inflight_bytes : DEFAULT_MAX_INFLIGHT;
    r->retry_after_s = opts->retry_after_s ? opts->retry_after_s : 1;
    r->max_depth = opts->max_depth > 0 ? opts->max_depth : FL__DEFAULT_MAX_DEPTH;
    r->tokens = opts->tokens;
    r->cors = opts->cors;
    r->sanitize = opts->sanitize;
    r->max_spans = opts->max_spans;
    r->max_spans_per_trace = opts->max_spans_per_trace;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (opts->capture_dir && *opts->capture_dir) {
        r->capture = fl__capture_new(opts->capture_dir, err, errlen);
        if (!r->capture)
            goto fail;
    }
    if (r->max_spans_per_trace &&
        !(r->trace_limit = fl_trace_limit_new(r->max_spans_per_trace, 0))) {
        fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    r->pool =
        fl_pool_new(opts->decode_threads > 0 ? opts->decode_threads : 2, DECODE_QUEUE, "fl-decode");
    if (!r->pool) {
        fl__errf(err, errlen, FL_ERR_NOMEM, "cannot start the decode threads");
        goto fail;
    }
    return r;
fail:
    fl_trace_limit_free(r->trace_limit);
    fl__capture_free(r->capture);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return NULL;
}

void fl_receiver_free(fl_receiver_t *r, int timeout_ms)
{
    if (!r)
        return;
    /* Run what is queued (those jobs answer or hand to the sink), then wait for the sink's
     * callbacks. */
    fl_pool_free(r->pool);
    r->pool = NULL;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (atomic_load(&r->inflight_requests) > 0)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
            break;
    uint64_t left = atomic_load(&r->inflight_requests);
    pthread_mutex_unlock(&r->mu);
    if (left > 0) {
        fl_log(FL_LOG_WARN, "receiver",
               "requests still waiting for the sink at shutdown; leaking the receiver "
               "pending=%llu",
               (unsigned long long)left);
        return;
    }
    fl_trace_limit_free(r->trace_limit);
    fl__capture_free(r->capture);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

fl_net_handler_t fl_receiver_http_handler(fl_receiver_t *r)
{
    fl_net_handler_t h = {on_head, on_body, r, on_abort};
    return h;
}

fl_net_handler_t fl_receiver_grpc_handler(fl_receiver_t *r)
{
    /* One dispatcher serves both listeners: gRPC calls are recognised by content type, so
     * OTLP/HTTP and gRPC may also share a port. */
    fl_net_handler_t h = {on_head, on_body, r, on_abort};
    return h;
}

void fl_receiver_stats(fl_receiver_t *r, fl_receiver_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!r)
        return;
    out->requests = atomic_load(&r->requests);
    out->spans_accepted = atomic_load(&r->spans_accepted);
    out->spans_rejected = atomic_load(&r->spans_rejected);
    out->spans_duplicate = atomic_load(&r->spans_duplicate);
    out->items_not_stored = atomic_load(&r->items_not_stored);
    out->requests_refused = atomic_load(&r->requests_refused);
    out->requests_failed = atomic_load(&r->requests_failed);
    out->inflight_bytes = atomic_load(&r->inflight_bytes);
    out->inflight_requests = atomic_load(&r->inflight_requests);
    out->bytes_received = atomic_load(&r->bytes_received);
    out->captures = atomic_load(&r->captures);
    out->requests_unauthenticated = atomic_load(&r->requests_unauthenticated);
    out->requests_too_many_spans = atomic_load(&r->requests_too_many_spans);
    out->attributes_masked = atomic_load(&r->attributes_masked);
    out->attributes_dropped = atomic_load(&r->attributes_dropped);
    out->values_truncated = atomic_load(&r->values_truncated);
    out->spans_over_trace_limit = atomic_load(&r->spans_over_trace_limit);
}
