/* SPDX-License-Identifier: Apache-2.0 */
/* demotrace: the batch span processor (a bounded ring that never blocks span end) and the
 * OTLP/HTTP protobuf exporter thread: gzip, retries with jittered backoff, Retry-After. */
#include "demotrace_int.h"

#include <faultline/common.h>
#include <faultline/net.h>

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

/* ---------------------------------------------------------------- processor */

void fl__dt_processor_push(fl_dt_tracer_t *t, fl_dt_span_t *s)
{
    int dropped = 0, wake = 0;
    pthread_mutex_lock(&t->mu);
    if (t->count >= t->max_queue) {
        dropped = 1;
    } else {
        t->ring[(t->head + t->count) % t->max_queue] = s;
        t->count++;
        wake = t->count >= t->max_batch;
    }
    pthread_mutex_unlock(&t->mu);
    if (dropped) {
        atomic_fetch_add(&t->spans_dropped, 1);
        fl__dt_span_free(s);
        return;
    }
    atomic_fetch_add(&t->spans_ended, 1);
    if (wake)
        pthread_cond_signal(&t->cv);
}

/* ---------------------------------------------------------------- encoding */

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event_t;

/* Every struct of one request comes from one arena, freed at once after packing. */
static pb_kv_t **enc_attrs(fl_arena_t *a, const fl_dt_attr_t *attrs, size_t n)
{
    if (n == 0)
        return NULL;
    pb_kv_t **out = fl_arena_alloc(a, n * sizeof(*out));
    pb_kv_t *kvs = fl_arena_alloc(a, n * sizeof(*kvs));
    pb_any_t *vals = fl_arena_alloc(a, n * sizeof(*vals));
    if (!out || !kvs || !vals)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        opentelemetry__proto__common__v1__key_value__init(&kvs[i]);
        opentelemetry__proto__common__v1__any_value__init(&vals[i]);
        kvs[i].key = attrs[i].key;
        kvs[i].value = &vals[i];
        switch (attrs[i].type) {
        case FL_DT_ATTR_STRING:
            vals[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            vals[i].string_value = attrs[i].v.s;
            break;
        case FL_DT_ATTR_BOOL:
            vals[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
            vals[i].bool_value = attrs[i].v.b;
            break;
        case FL_DT_ATTR_INT:
            vals[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
            vals[i].int_value = attrs[i].v.i;
            break;
        case FL_DT_ATTR_DOUBLE:
            vals[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
            vals[i].double_value = attrs[i].v.d;
            break;
        }
        out[i] = &kvs[i];
    }
    return out;
}

static int enc_span(fl_arena_t *a, const fl_dt_span_t *s, pb_span_t *p)
{
    opentelemetry__proto__trace__v1__span__init(p);
    p->trace_id.data = (uint8_t *)s->ctx.trace_id;
    p->trace_id.len = 16;
    p->span_id.data = (uint8_t *)s->ctx.span_id;
    p->span_id.len = 8;
    if (s->has_parent) {
        p->parent_span_id.data = (uint8_t *)s->parent_span_id;
        p->parent_span_id.len = 8;
    }
    p->trace_state = (char *)s->ctx.tracestate;
    /* Low byte: W3C trace flags; bits 8/9: whether the parent is remote is known / true. */
    p->flags = (uint32_t)(s->ctx.flags & 0xff) | 0x100u | (s->parent_remote ? 0x200u : 0);
    p->name = s->name;
    p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
    p->start_time_unix_nano = s->start_ns;
    p->end_time_unix_nano = s->end_ns;
    p->n_attributes = s->n_attrs;
    p->attributes = enc_attrs(a, s->attrs, s->n_attrs);
    p->dropped_attributes_count = s->dropped_attrs;
    if (s->n_attrs && !p->attributes)
        return -1;
    if (s->n_events) {
        p->events = fl_arena_alloc(a, s->n_events * sizeof(*p->events));
        pb_event_t *ev = fl_arena_alloc(a, s->n_events * sizeof(*ev));
        if (!p->events || !ev)
            return -1;
        for (size_t i = 0; i < s->n_events; i++) {
            const fl__dt_event_t *e = &s->events[i];
            opentelemetry__proto__trace__v1__span__event__init(&ev[i]);
            ev[i].time_unix_nano = e->time_ns;
            ev[i].name = e->name;
            ev[i].n_attributes = e->n_attrs;
            ev[i].attributes = enc_attrs(a, e->attrs, e->n_attrs);
            ev[i].dropped_attributes_count = e->dropped_attrs;
            if (e->n_attrs && !ev[i].attributes)
                return -1;
            p->events[i] = &ev[i];
        }
        p->n_events = s->n_events;
    }
    p->dropped_events_count = s->dropped_events;
    if (s->status != FL_DT_STATUS_UNSET) {
        Opentelemetry__Proto__Trace__V1__Status *st = fl_arena_alloc(a, sizeof(*st));
        if (!st)
            return -1;
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
        if (s->status_msg)
            st->message = s->status_msg;
        p->status = st;
    }
    return 0;
}

uint8_t *fl__dt_encode(const fl_dt_tracer_t *t, fl_dt_span_t *const *spans, size_t n, size_t *len)
{
    fl_arena_t *a = fl_arena_new(0);
    uint8_t *out = NULL;
    if (!a)
        return NULL;
    Opentelemetry__Proto__Resource__V1__Resource res;
    opentelemetry__proto__resource__v1__resource__init(&res);
    res.n_attributes = t->n_resource;
    res.attributes = enc_attrs(a, t->resource, t->n_resource);

    Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = "faultline-demotrace";
    scope.version = FL_VERSION;

    Opentelemetry__Proto__Trace__V1__ScopeSpans ss;
    opentelemetry__proto__trace__v1__scope_spans__init(&ss);
    ss.scope = &scope;
    ss.n_spans = n;
    ss.spans = fl_arena_alloc(a, n * sizeof(*ss.spans));
    pb_span_t *ps = fl_arena_alloc(a, n * sizeof(*ps));
    if (!ss.spans || !ps || (t->n_resource && !res.attributes))
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (enc_span(a, spans[i], &ps[i]) != 0)
            goto out;
        ss.spans[i] = &ps[i];
    }
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs;
    opentelemetry__proto__trace__v1__resource_spans__init(&rs);
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;
    size_t sz =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    out = malloc(sz ? sz : 1);
    if (out)
        *len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req,
                                                                                              out);
out:
    fl_arena_free(a);
    return out;
}

/* gzip-compress (RFC 1952 framing via zlib). NULL on failure. */
static uint8_t *gzip_bytes(const uint8_t *in, size_t n, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    uLong bound = deflateBound(&zs, (uLong)n) + 32;
    uint8_t *out = malloc(bound);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- exporter */

/* Retry-After: delta-seconds or an HTTP-date. Returns ms, or -1 when absent/unparsable. */
static int64_t parse_retry_after(const char *v)
{
    if (!v)
        return -1;
    while (*v == ' ')
        v++;
    if (*v >= '0' && *v <= '9') {
        char *e;
        long long s = strtoll(v, &e, 10);
        while (*e == ' ')
            e++;
        if (*e || s < 0)
            return -1;
        return s > 86400 ? 86400000 : (int64_t)s * 1000;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return -1;
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    return when > now ? (int64_t)(when - now) * 1000 : 0;
}

static void log_failure(fl_dt_tracer_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Export failures are logged at most once per 30 s so a dead receiver does not flood. */
static void log_failure(fl_dt_tracer_t *t, const char *fmt, ...)
{
    if (t->quiet)
        return;
    uint64_t now = fl__dt_mono_ns();
    if (t->last_log_ns && now - t->last_log_ns < 30000000000ull) {
        t->suppressed_logs++;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (t->suppressed_logs)
        fl_log(FL_LOG_WARN, "demotrace", "%s suppressed=%u service=%s", msg, t->suppressed_logs,
               t->service_name);
    else
        fl_log(FL_LOG_WARN, "demotrace", "%s service=%s", msg, t->service_name);
    t->last_log_ns = now;
    t->suppressed_logs = 0;
}

/* Wait ms on the tracer's condition; returns early only when shutdown begins. Called with
 * the mutex held. */
static void timed_wait_locked(fl_dt_tracer_t *t, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000ull;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

typedef struct exporter {
    fl_dt_tracer_t *t;
    fl_http_client_t *client;
    int client_timeout_ms;
} exporter_t;

/* One POST. Returns the HTTP status or -1 on a transport error; *retry_after_ms set when the
 * answer carries a usable Retry-After. */
static int post_once(exporter_t *x, const uint8_t *body, size_t len, int timeout_ms,
                     int64_t *retry_after_ms)
{
    fl_dt_tracer_t *t = x->t;
    *retry_after_ms = -1;
    if (!x->client || x->client_timeout_ms != timeout_ms) {
        fl_http_client_free(x->client);
        fl_http_client_opts_t o;
        memset(&o, 0, sizeof(o));
        o.host = t->url.host;
        o.port = t->url.port;
        o.tls = t->url.tls;
        o.timeout_ms = timeout_ms;
        o.max_response = 1 << 20;
        x->client = fl_http_client_new(&o);
        x->client_timeout_ms = timeout_ms;
        if (!x->client)
            return -1;
    }
    fl_net_header_t h[3];
    size_t nh = 0;
    h[nh++] = (fl_net_header_t){"Content-Type", "application/x-protobuf"};
    if (t->gzip)
        h[nh++] = (fl_net_header_t){"Content-Encoding", "gzip"};
    h[nh++] = (fl_net_header_t){"User-Agent", "faultline-demotrace/" FL_VERSION};
    fl_http_response_t resp;
    int rc = fl_http_client_request(x->client, "POST", t->url.path, h, nh, body, len, &resp);
    if (rc != FL_OK) {
        /* Start afresh next time: the connection state is unknown. */
        fl_http_client_free(x->client);
        x->client = NULL;
        return -1;
    }
    int status = resp.status;
    char ra[128];
    *retry_after_ms =
        parse_retry_after(fl_http_response_header(&resp, "retry-after", ra, sizeof(ra)));
    fl_http_response_dispose(&resp);
    return status;
}

static int retryable(int status)
{
    return status < 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

/* Deliver one batch, retrying as the OTLP spec says. Called without the mutex. */
static void export_batch(exporter_t *x, fl_dt_span_t **spans, size_t n)
{
    fl_dt_tracer_t *t = x->t;
    size_t raw_len = 0, len = 0;
    uint8_t *raw = fl__dt_encode(t, spans, n, &raw_len);
    uint8_t *body = raw;
    len = raw_len;
    if (raw && t->gzip) {
        body = gzip_bytes(raw, raw_len, &len);
        free(raw);
        raw = NULL;
    }
    if (!body) {
        atomic_fetch_add(&t->spans_failed, n);
        log_failure(t, "cannot encode spans spans=%zu", n);
        return;
    }
    uint64_t start = fl__dt_mono_ns();
    uint64_t backoff = (uint64_t)t->retry_initial_ms;
    for (int attempt = 0;; attempt++) {
        int timeout = t->export_timeout_ms;
        pthread_mutex_lock(&t->mu);
        int stopping = t->stopping;
        uint64_t deadline = t->stop_deadline_ns;
        pthread_mutex_unlock(&t->mu);
        uint64_t now = fl__dt_mono_ns();
        if (stopping) {
            if (now >= deadline) {
                atomic_fetch_add(&t->spans_failed, n);
                log_failure(t, "shutdown deadline passed, dropping spans spans=%zu", n);
                break;
            }
            uint64_t left = (deadline - now) / 1000000ull;
            if (left < (uint64_t)timeout)
                timeout = left > 0 ? (int)left : 1;
        }
        atomic_fetch_add(&t->export_requests, 1);
        if (attempt)
            atomic_fetch_add(&t->export_retries, 1);
        int64_t retry_after = -1;
        int status = post_once(x, body, len, timeout, &retry_after);
        atomic_store(&t->last_status, status);
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&t->spans_exported, n);
            break;
        }
        if (!retryable(status)) {
            atomic_fetch_add(&t->spans_failed, n);
            log_failure(t, "export rejected, not retrying status=%d spans=%zu", status, n);
            break;
        }
        uint64_t wait_ms;
        if (retry_after >= 0) {
            /* Honoured as sent, but "Retry-After: 0" must not become a hot loop. */
            wait_ms = retry_after < 50 ? 50 : (uint64_t)retry_after;
            atomic_store(&t->last_retry_after_ms, (uint64_t)retry_after);
        } else {
            /* Full jitter around the exponential step: 80 % .. 120 %. */
            wait_ms = (uint64_t)((double)backoff * (0.8 + 0.4 * fl_dt_random_unit()));
            if (wait_ms > (uint64_t)t->retry_max_ms)
                wait_ms = (uint64_t)t->retry_max_ms;
            backoff =
                backoff * 2 > (uint64_t)t->retry_max_ms ? (uint64_t)t->retry_max_ms : backoff * 2;
        }
        now = fl__dt_mono_ns();
        uint64_t elapsed_ms = (now - start) / 1000000ull;
        uint64_t until = now + wait_ms * 1000000ull;
        int give_up = elapsed_ms + wait_ms > (uint64_t)t->retry_max_elapsed_ms;
        /* Shutting down and the receiver is gone: waiting for it would only delay exit. */
        if (status < 0 && stopping)
            give_up = 1;
        pthread_mutex_lock(&t->mu);
        while (!give_up && fl__dt_mono_ns() < until) {
            /* Shutting down: a wait that would pass the deadline is not worth it. */
            if (t->stopping && until > t->stop_deadline_ns) {
                give_up = 1;
                break;
            }
            uint64_t left = (until - fl__dt_mono_ns()) / 1000000ull;
            timed_wait_locked(t, left ? left : 1);
        }
        pthread_mutex_unlock(&t->mu);
        if (give_up) {
            atomic_fetch_add(&t->spans_failed, n);
            if (status < 0)
                log_failure(t, "receiver unreachable, giving up on batch url=%s:%d%s spans=%zu",
                            t->url.host, t->url.port, t->url.path, n);
            else
                log_failure(t, "export still refused, giving up on batch status=%d spans=%zu",
                            status, n);
            break;
        }
    }
    free(body);
}

static void *exporter_main(void *arg)
{
    fl_dt_tracer_t *t = arg;
    exporter_t x = {.t = t};
    fl_dt_span_t **batch = calloc(t->max_batch, sizeof(*batch));
    pthread_setname_np(pthread_self(), "dt-export");
    pthread_mutex_lock(&t->mu);
    uint64_t next = fl__dt_mono_ns() + (uint64_t)t->schedule_delay_ms * 1000000ull;
    for (;;) {
        while (!t->stopping && t->count < t->max_batch && t->flush_req == t->flush_done) {
            uint64_t now = fl__dt_mono_ns();
            if (now >= next)
                break;
            timed_wait_locked(t, (next - now) / 1000000ull + 1);
        }
        if (t->count == 0) {
            t->flush_done = t->flush_req;
            pthread_cond_broadcast(&t->done_cv);
            if (t->stopping)
                break;
            next = fl__dt_mono_ns() + (uint64_t)t->schedule_delay_ms * 1000000ull;
            continue;
        }
        size_t n = 0;
        while (t->count && n < t->max_batch && batch) {
            batch[n++] = t->ring[t->head];
            t->head = (t->head + 1) % t->max_queue;
            t->count--;
        }
        t->in_flight = n;
        pthread_mutex_unlock(&t->mu);
        if (t->export_enabled && n)
            export_batch(&x, batch, n); /* with export disabled spans are simply discarded */
        for (size_t i = 0; i < n; i++)
            fl__dt_span_free(batch[i]);
        pthread_mutex_lock(&t->mu);
        t->in_flight = 0;
        if (!batch) { /* OOM at start: nothing can be exported; drop what is queued */
            while (t->count) {
                fl__dt_span_free(t->ring[t->head]);
                t->head = (t->head + 1) % t->max_queue;
                t->count--;
                atomic_fetch_add(&t->spans_failed, 1);
            }
        }
        next = fl__dt_mono_ns() + (uint64_t)t->schedule_delay_ms * 1000000ull;
    }
    pthread_mutex_unlock(&t->mu);
    fl_http_client_free(x.client);
    free(batch);
    return NULL;
}

int fl__dt_exporter_start(fl_dt_tracer_t *t)
{
    if (pthread_create(&t->thread, NULL, exporter_main, t) != 0)
        return -1;
    t->thread_started = 1;
    return 0;
}

static void deadline_ts(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (uint64_t)timeout_ms * 1000000ull;
    ts->tv_sec += (time_t)(ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
}

int fl_dt_tracer_flush(fl_dt_tracer_t *t, int timeout_ms)
{
    if (!t)
        return 0;
    struct timespec ts;
    deadline_ts(&ts, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    uint64_t want = ++t->flush_req;
    pthread_cond_signal(&t->cv);
    while (t->flush_done < want) {
        if (pthread_cond_timedwait(&t->done_cv, &t->mu, &ts) == ETIMEDOUT) {
            rc = t->flush_done < want ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void fl_dt_tracer_free(fl_dt_tracer_t *t, int timeout_ms)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = 1;
    t->stop_deadline_ns =
        fl__dt_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (t->thread_started)
        pthread_join(t->thread, NULL);
    /* Anything left (the thread could not start) is dropped. */
    while (t->count) {
        fl__dt_span_free(t->ring[t->head]);
        t->head = (t->head + 1) % t->max_queue;
        t->count--;
    }
    fl_dt_attrs_free(t->resource, t->n_resource);
    free(t->ring);
    free(t->service_name);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->done_cv);
    free(t);
}
