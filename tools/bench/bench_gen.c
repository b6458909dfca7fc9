/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-bench request generator: builds OTLP span trees shaped like an instrumented web
 * shop (HTTP server/client spans, 11 attributes each), packs them and writes OTLP/JSON. */
#include "bench_gen.h"

#include <faultline/common.h>

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_req_t;

#define N_ATTRS 11
#define N_SVC 5

const char *const fl_bench_services[] = {"frontend",  "checkout", "payment",
                                         "inventory", "shipping", NULL};

static const char *const routes[] = {"/api/v1/products", "/api/v1/cart",      "/api/v1/checkout",
                                     "/api/v1/payments", "/api/v1/inventory", "/api/v1/shipping",
                                     "/api/v1/users",    "/api/v1/search"};
static const char *const span_names[N_SVC][4] = {
    {"GET /api/v1/products", "POST /api/v1/checkout", "GET /api/v1/cart", "GET /api/v1/search"},
    {"POST /checkout", "GET /cart/items", "POST /cart/validate", "GET /checkout/status"},
    {"POST /payments/charge", "POST /payments/refund", "GET /payments/status", "POST /fraud"},
    {"POST /inventory/reserve", "GET /inventory/stock", "POST /inventory/release", "GET /sku"},
    {"POST /shipping/quote", "POST /shipping/label", "GET /shipping/track", "GET /rates"}};
static const char *const agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "Mozilla/5.0 (Macintosh) Safari/605.1",
    "okhttp/4.12.0 (Android 14; Pixel 8)", "faultline-demo/0.1 (+https://example.com)"};

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rnd_bytes(uint64_t *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)rnd(s);
}

/* ---------------------------------------------------------------- JSON text */

typedef struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
} jbuf_t;

static void jb_put(jbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_s(jbuf_t *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

static void jb_hex(jbuf_t *b, const uint8_t *d, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    char tmp[64];
    for (size_t i = 0; i < n; i++) {
        tmp[2 * i] = hx[d[i] >> 4];
        tmp[2 * i + 1] = hx[d[i] & 15];
    }
    jb_put(b, tmp, 2 * n);
}

static void jb_fmt(jbuf_t *b, const char *fmt, unsigned long long v)
{
    char tmp[128];
    int n = snprintf(tmp, sizeof(tmp), fmt, v);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = 1; /* never with the generator's short formats */
        return;
    }
    jb_put(b, tmp, (size_t)n);
}

/* The generator's strings hold no characters that need escaping. */
static void jb_attrs(jbuf_t *b, pb_kv_t *const *kv, size_t n, int otlp)
{
    jb_s(b, otlp ? "[" : "{");
    for (size_t i = 0; i < n; i++) {
        const pb_any_t *v = kv[i]->value;
        if (i)
            jb_s(b, ",");
        if (otlp) {
            jb_s(b, "{\"key\":\"");
            jb_s(b, kv[i]->key);
            jb_s(b, "\",\"value\":{");
            if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
                jb_fmt(b, "\"intValue\":\"%lld\"", (unsigned long long)v->int_value);
            } else {
                jb_s(b, "\"stringValue\":\"");
                jb_s(b, v->string_value);
                jb_s(b, "\"");
            }
            jb_s(b, "}}");
        } else {
            jb_s(b, "\"");
            jb_s(b, kv[i]->key);
            jb_s(b, "\":");
            if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
                jb_fmt(b, "%lld", (unsigned long long)v->int_value);
            } else {
                jb_s(b, "\"");
                jb_s(b, v->string_value);
                jb_s(b, "\"");
            }
        }
    }
    jb_s(b, otlp ? "]" : "}");
}

/* ---------------------------------------------------------------- building */

typedef struct gspan {
    pb_span_t sp;
    int svc;
    int name_idx;
} gspan_t;

static char *astr(fl_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *astr(fl_arena_t *a, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = fl_arena_alloc(a, (size_t)n + 1);
    if (s)
        memcpy(s, tmp, (size_t)n + 1);
    return s;
}

static int set_attrs(fl_arena_t *a, uint64_t *rs, pb_span_t *p, int svc)
{
    pb_kv_t **out = fl_arena_alloc(a, N_ATTRS * sizeof(*out));
    pb_kv_t *kv = fl_arena_alloc(a, N_ATTRS * sizeof(*kv));
    pb_any_t *v = fl_arena_alloc(a, N_ATTRS * sizeof(*v));
    if (!out || !kv || !v)
        return -1;
    const char *route = routes[rnd(rs) % 8];
    unsigned long id = (unsigned long)(rnd(rs) % 10000000);
    uint64_t r = rnd(rs);
    int status = (r % 100) < 2 ? 500 : (r % 100) < 5 ? 404 : 200;
    static const char *const keys[N_ATTRS] = {"http.method",
                                              "http.url",
                                              "http.target",
                                              "http.host",
                                              "http.scheme",
                                              "http.status_code",
                                              "http.user_agent",
                                              "http.flavor",
                                              "net.peer.ip",
                                              "net.peer.port",
                                              "http.response_content_length"};
    const char *host = fl_bench_services[svc];
    char *s[N_ATTRS] = {0};
    int64_t iv[N_ATTRS] = {0};
    s[0] = (r >> 8) % 3 ? "GET" : "POST";
    s[1] = astr(a, "https://%s.shop.example.com%s/%lu?s=%04x", host, route, id,
                (unsigned)(rnd(rs) & 0xffffu));
    s[2] = astr(a, "%s/%lu", route, id);
    s[3] = astr(a, "%s.shop.example.com", host);
    s[4] = "https";
    iv[5] = status;
    s[6] = (char *)agents[(r >> 16) % 4];
    s[7] = "1.1";
    s[8] = astr(a, "10.%u.%u.%u", (unsigned)(r >> 24) & 255, (unsigned)(r >> 32) & 255,
                (unsigned)(r >> 40) & 255);
    iv[9] = 32768 + (int64_t)((r >> 48) % 28000);
    iv[10] = 200 + (int64_t)(rnd(rs) % 60000);
    for (int i = 0; i < N_ATTRS; i++) {
        opentelemetry__proto__common__v1__key_value__init(&kv[i]);
        opentelemetry__proto__common__v1__any_value__init(&v[i]);
        kv[i].key = (char *)keys[i];
        kv[i].value = &v[i];
        if (i == 5 || i == 9 || i == 10) {
            v[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
            v[i].int_value = iv[i];
        } else {
            if (!s[i])
                return -1;
            v[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            v[i].string_value = s[i];
        }
        out[i] = &kv[i];
    }
    p->attributes = out;
    p->n_attributes = N_ATTRS;
    return 0;
}

/* Spans of one request: traces of 5-10 spans; the root on frontend, children spread over
 * the other services, each child inside its parent's time window. */
static gspan_t *make_spans(fl_arena_t *a, uint64_t *rs, size_t n, uint64_t base_ns,
                           uint8_t (*tids)[16], size_t *n_traces)
{
    gspan_t *g = fl_arena_alloc(a, n * sizeof(*g));
    Opentelemetry__Proto__Trace__V1__Status *st_err = fl_arena_alloc(a, sizeof(*st_err));
    if (!g || !st_err)
        return NULL;
    opentelemetry__proto__trace__v1__status__init(st_err);
    st_err->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
    size_t i = 0, t = 0;
    while (i < n) {
        size_t len = 5 + rnd(rs) % 6;
        if (len > n - i)
            len = n - i;
        uint8_t *tid = tids[t++];
        rnd_bytes(rs, tid, 12);
        memset(tid + 12, 0, 4);
        size_t first = i;
        for (size_t k = 0; k < len; k++, i++) {
            gspan_t *s = &g[i];
            pb_span_t *p = &s->sp;
            opentelemetry__proto__trace__v1__span__init(p);
            uint8_t *sid = fl_arena_alloc(a, 8);
            if (!sid)
                return NULL;
            rnd_bytes(rs, sid, 8);
            p->trace_id.data = tid;
            p->trace_id.len = 16;
            p->span_id.data = sid;
            p->span_id.len = 8;
            if (k == 0) {
                s->svc = 0;
                p->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
                p->start_time_unix_nano = base_ns - rnd(rs) % 60000000000ull;
                p->end_time_unix_nano =
                    p->start_time_unix_nano + 5000000ull + rnd(rs) % 400000000ull;
            } else {
                gspan_t *par = &g[first + (k == 1 ? 0 : rnd(rs) % k)];
                uint64_t pdur = par->sp.end_time_unix_nano - par->sp.start_time_unix_nano;
                s->svc = 1 + (int)(rnd(rs) % (N_SVC - 1));
                p->parent_span_id = par->sp.span_id;
                p->kind = k % 2
                              ? OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT
                              : OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
                p->start_time_unix_nano = par->sp.start_time_unix_nano + rnd(rs) % (pdur / 4 + 1);
                p->end_time_unix_nano = p->start_time_unix_nano + 1 + rnd(rs) % (pdur / 2 + 1);
            }
            s->name_idx = (int)(rnd(rs) % 4);
            p->name = (char *)span_names[s->svc][s->name_idx];
            if (set_attrs(a, rs, p, s->svc) != 0)
                return NULL;
            if (rnd(rs) % 100 == 0)
                p->status = st_err;
        }
    }
    *n_traces = t;
    return g;
}

static void write_json(jbuf_t *b, pb_req_t *req, uint32_t *id_off)
{
    size_t k = 0;
    jb_s(b, "{\"resourceSpans\":[");
    for (size_t r = 0; r < req->n_resource_spans; r++) {
        pb_rs_t *rs = req->resource_spans[r];
        if (r)
            jb_s(b, ",");
        jb_s(b, "{\"resource\":{\"attributes\":");
        jb_attrs(b, rs->resource->attributes, rs->resource->n_attributes, 1);
        jb_s(b, "},\"scopeSpans\":[{\"scope\":{\"name\":\"");
        jb_s(b, rs->scope_spans[0]->scope->name);
        jb_s(b, "\"},\"spans\":[");
        pb_ss_t *ss = rs->scope_spans[0];
        for (size_t i = 0; i < ss->n_spans; i++) {
            pb_span_t *p = ss->spans[i];
            if (i)
                jb_s(b, ",");
            jb_s(b, "{\"traceId\":\"");
            id_off[k++] = (uint32_t)b->len;
            jb_hex(b, p->trace_id.data, 16);
            jb_s(b, "\",\"spanId\":\"");
            jb_hex(b, p->span_id.data, 8);
            if (p->parent_span_id.len) {
                jb_s(b, "\",\"parentSpanId\":\"");
                jb_hex(b, p->parent_span_id.data, 8);
            }
            jb_s(b, "\",\"name\":\"");
            jb_s(b, p->name);
            jb_fmt(b, "\",\"kind\":%llu", (unsigned long long)p->kind);
            jb_fmt(b, ",\"startTimeUnixNano\":\"%llu\"",
                   (unsigned long long)p->start_time_unix_nano);
            jb_fmt(b, ",\"endTimeUnixNano\":\"%llu\"", (unsigned long long)p->end_time_unix_nano);
            jb_s(b, ",\"attributes\":");
            jb_attrs(b, p->attributes, p->n_attributes, 1);
            if (p->status)
                jb_fmt(b, ",\"status\":{\"code\":%llu}", (unsigned long long)p->status->code);
            jb_s(b, "}");
        }
        jb_s(b, "]}]}");
    }
    jb_s(b, "]}");
}

static int build_req(fl_bench_req_t *out, size_t n, unsigned flags, uint64_t *rs, uint64_t base)
{
    int rc = -1;
    fl_arena_t *a = fl_arena_new(1 << 20);
    jbuf_t jb = {0};
    if (!a)
        return -1;
    out->n_spans = n;
    out->trace_ids = calloc(n, 16);
    out->pb_id_off = calloc(n, sizeof(uint32_t));
    if (!out->trace_ids || !out->pb_id_off)
        goto out;
    gspan_t *g = make_spans(a, rs, n, base, out->trace_ids, &out->n_traces);
    if (!g)
        goto out;

    /* One ResourceSpans per service, as a collector batching several services sends. */
    pb_rs_t rsv[N_SVC], *rsp[N_SVC];
    pb_ss_t ssv[N_SVC], *ssp[N_SVC];
    Opentelemetry__Proto__Resource__V1__Resource res[N_SVC];
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
    opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
    scope.name = "io.opentelemetry.http";
    size_t nrs = 0;
    for (int s = 0; s < N_SVC; s++) {
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            cnt += g[i].svc == s;
        if (!cnt)
            continue;
        pb_ss_t *ss = &ssv[nrs];
        opentelemetry__proto__trace__v1__scope_spans__init(ss);
        ss->scope = &scope;
        ss->spans = fl_arena_alloc(a, cnt * sizeof(*ss->spans));
        pb_kv_t **ra = fl_arena_alloc(a, 3 * sizeof(*ra));
        pb_kv_t *rkv = fl_arena_alloc(a, 3 * sizeof(*rkv));
        pb_any_t *rv = fl_arena_alloc(a, 3 * sizeof(*rv));
        if (!ss->spans || !ra || !rkv || !rv)
            goto out;
        static const char *const rkeys[3] = {"service.name", "host.name", "telemetry.sdk.name"};
        const char *rvals[3] = {fl_bench_services[s], "bench-host-1", "opentelemetry"};
        for (int k = 0; k < 3; k++) {
            opentelemetry__proto__common__v1__key_value__init(&rkv[k]);
            opentelemetry__proto__common__v1__any_value__init(&rv[k]);
            rkv[k].key = (char *)rkeys[k];
            rkv[k].value = &rv[k];
            rv[k].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            rv[k].string_value = (char *)rvals[k];
            ra[k] = &rkv[k];
        }
        for (size_t i = 0; i < n; i++)
            if (g[i].svc == s)
                ss->spans[ss->n_spans++] = &g[i].sp;
        opentelemetry__proto__resource__v1__resource__init(&res[nrs]);
        res[nrs].attributes = ra;
        res[nrs].n_attributes = 3;
        ssp[nrs] = ss;
        opentelemetry__proto__trace__v1__resource_spans__init(&rsv[nrs]);
        rsv[nrs].resource = &res[nrs];
        rsv[nrs].n_scope_spans = 1;
        rsv[nrs].scope_spans = &ssp[nrs];
        rsp[nrs] = &rsv[nrs];
        nrs++;
    }
    pb_req_t req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    req.n_resource_spans = nrs;
    req.resource_spans = rsp;
    size_t sz =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    out->pb = malloc(sz ? sz : 1);
    if (!out->pb)
        goto out;
    out->pb_len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
        &req, out->pb);
    /* Find each span's trace id in packing order; 12 random bytes make a false match
     * practically impossible, and the search only moves forward. */
    size_t pos = 0, k = 0;
    for (size_t r = 0; r < nrs; r++) {
        pb_ss_t *ss = rsp[r]->scope_spans[0];
        for (size_t i = 0; i < ss->n_spans; i++) {
            const uint8_t *hit =
                memmem(out->pb + pos, out->pb_len - pos, ss->spans[i]->trace_id.data, 16);
            if (!hit)
                goto out;
            out->pb_id_off[k++] = (uint32_t)(hit - out->pb);
            pos = (size_t)(hit - out->pb) + 16;
        }
    }
    if (flags & FL_BENCH_WITH_JSON) {
        out->json_id_off = calloc(n, sizeof(uint32_t));
        if (!out->json_id_off)
            goto out;
        write_json(&jb, &req, out->json_id_off);
        if (jb.oom)
            goto out;
        out->json = jb.p;
        out->json_len = jb.len;
        jb.p = NULL;
    }
    if (flags & FL_BENCH_WITH_ROWS) {
        out->rows = calloc(n, sizeof(*out->rows));
        if (!out->rows)
            goto out;
        for (size_t i = 0; i < n; i++) {
            fl_bench_row_t *w = &out->rows[i];
            pb_span_t *p = &g[i].sp;
            memcpy(w->trace_id, p->trace_id.data, 16);
            memcpy(w->span_id, p->span_id.data, 8);
            if (p->parent_span_id.len) {
                memcpy(w->parent_id, p->parent_span_id.data, 8);
                w->has_parent = 1;
            }
            w->service = fl_bench_services[g[i].svc];
            w->name = span_names[g[i].svc][g[i].name_idx];
            w->kind = (int)p->kind;
            w->start_ns = p->start_time_unix_nano;
            w->end_ns = p->end_time_unix_nano;
            w->status = p->status ? (int)p->status->code : 0;
            jbuf_t ab = {0};
            jb_attrs(&ab, p->attributes, p->n_attributes, 0);
            if (ab.oom)
                goto out;
            w->attrs_json = ab.p;
        }
    }
    rc = 0;
out:
    free(jb.p);
    fl_arena_free(a);
    return rc;
}

static void req_dispose(fl_bench_req_t *r)
{
    free(r->pb);
    free(r->pb_id_off);
    free(r->json);
    free(r->json_id_off);
    free(r->trace_ids);
    if (r->rows)
        for (size_t i = 0; i < r->n_spans; i++)
            free(r->rows[i].attrs_json);
    free(r->rows);
    memset(r, 0, sizeof(*r));
}

int fl_bench_pool_init(fl_bench_pool_t *p, size_t n, size_t spans_per_req, unsigned flags,
                       uint64_t seed, uint64_t base_ns)
{
    memset(p, 0, sizeof(*p));
    if (!base_ns) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        base_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    p->base_ns = base_ns;
    p->spans_per_req = spans_per_req;
    p->reqs = calloc(n, sizeof(*p->reqs));
    if (!p->reqs || !spans_per_req)
        return -1;
    uint64_t rs = seed ^ 0x5eedf00dull;
    for (size_t i = 0; i < n; i++) {
        p->n = i + 1;
        if (build_req(&p->reqs[i], spans_per_req, flags, &rs, base_ns) != 0) {
            fl_bench_pool_dispose(p);
            return -1;
        }
    }
    return 0;
}

void fl_bench_pool_dispose(fl_bench_pool_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        req_dispose(&p->reqs[i]);
    free(p->reqs);
    memset(p, 0, sizeof(*p));
}

static void put_gen(uint8_t *d, uint32_t gen)
{
    d[0] = (uint8_t)(gen >> 24);
    d[1] = (uint8_t)(gen >> 16);
    d[2] = (uint8_t)(gen >> 8);
    d[3] = (uint8_t)gen;
}

void fl_bench_patch_pb(const fl_bench_req_t *r, uint8_t *buf, uint32_t gen)
{
    for (size_t i = 0; i < r->n_spans; i++)
        put_gen(buf + r->pb_id_off[i] + 12, gen);
}

void fl_bench_patch_json(const fl_bench_req_t *r, char *buf, uint32_t gen)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < r->n_spans; i++) {
        char *h = buf + r->json_id_off[i] + 24;
        for (int k = 0; k < 8; k++)
            h[k] = hx[(gen >> (28 - 4 * k)) & 15];
    }
}

void fl_bench_trace_id(const fl_bench_req_t *r, size_t i, uint32_t gen, uint8_t out[16])
{
    memcpy(out, r->trace_ids[i], 16);
    put_gen(out + 12, gen);
}
