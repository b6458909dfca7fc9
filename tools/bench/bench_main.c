/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-bench: drives an OTLP receiver with pre-encoded requests (HTTP/1.1 keep-alive or
 * gRPC, protobuf or JSON, max or fixed rate), measures read latencies, prefills a database
 * through the store API, and measures the two ceilings (row-per-span SQLite inserts,
 * protobuf-c decode). Prints key=value lines. */
#include "bench_gen.h"

#include <faultline/common.h>
#include <faultline/net.h>
#include <faultline/receiver.h>
#include <faultline/store.h>

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GRPC_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define MAX_IDS 20000

typedef struct opts {
    const char *mode;
    const char *host;
    int port;
    const char *transport; /* http | grpc | json */
    size_t spans;
    int conns;
    double duration, warmup, rate; /* rate: spans/s offered in total; 0: max */
    int pid;
    size_t pool;
    const char *ids_out, *ids_in, *dir, *db;
    int timeout_ms;
    uint64_t stored;   /* prefill: fill the database up to this many spans */
    double event_rate; /* prefill: spans per second of event time */
    int backoff;       /* 1: a refused request waits Retry-After and is sent again */
} opts_t;

static opts_t O = {.host = "127.0.0.1",
                   .transport = "http",
                   .spans = 1000,
                   .conns = 8,
                   .duration = 10,
                   .warmup = 1,
                   .pool = 32,
                   .timeout_ms = 30000,
                   .event_rate = 200000,
                   .backoff = 1};

static double now_s(void)
{
    return (double)fl_time_mono_ns() / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return NAN;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* ---------------------------------------------------------------- /proc */

/* utime + stime of pid, seconds; -1 when unreadable. */
static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* After ") ": state(3) ... utime is field 14, stime 15. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A "VmXXX:" field of /proc/pid/status in KiB; -1 when absent. */
static long proc_status_kb(int pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* ---------------------------------------------------------------- ingest */

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct worker {
    pthread_t th;
    int idx;
    const fl_bench_pool_t *pool;
    double *lat;
    size_t n_lat, cap_lat;
    uint64_t ok_spans, ok_reqs, errs, n503, retries;
    uint64_t acked_spans, n503_no_retry_after; /* whole run, for the overload test */
    uint8_t (*ids)[16];
    size_t n_ids, cap_ids;
} worker_t;

static atomic_uint g_gen = 1; /* generation 0 is the pool's own ids */
static atomic_int g_stop;
static double g_t_begin, g_t_measure, g_t_end;

static void lat_push(worker_t *w, double v)
{
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
        double *p = realloc(w->lat, cap * sizeof(*p));
        if (!p)
            return;
        w->lat = p;
        w->cap_lat = cap;
    }
    w->lat[w->n_lat++] = v;
}

/* Wait out a Retry-After (or 1 s), but not past the end of the run. */
static void backoff(double secs)
{
    double until = now_s() + (secs > 0 ? secs : 1);
    while (!atomic_load(&g_stop) && now_s() < until)
        sleep_s(0.02);
}

/* Send one request until it is acknowledged (503/UNAVAILABLE: wait, retry; with --backoff 0
 * give it up at once, as a client that ignores Retry-After would). 1: ok. */
static int send_one(worker_t *w, fl_http_client_t *hc, fl_grpc_client_t *gc, const void *body,
                    size_t len, int json, int *first_503)
{
    static const fl_net_header_t h_pb[] = {{"Content-Type", "application/x-protobuf"}};
    static const fl_net_header_t h_js[] = {{"Content-Type", "application/json"}};
    for (int attempt = 0;; attempt++) {
        if (attempt)
            w->retries++;
        if (gc) {
            fl_grpc_result_t res;
            int rc = fl_grpc_client_call(gc, GRPC_PATH, NULL, 0, body, len, 0, &res);
            int st = rc == FL_OK ? res.grpc_status : -2;
            double wait = 1;
            const char *pb = res.headers.data ? strstr((const char *)res.headers.data,
                                                       "grpc-retry-pushback-ms: ")
                                              : NULL;
            if (pb)
                wait = strtod(pb + 24, NULL) / 1000.0;
            fl_grpc_result_dispose(&res);
            if (st == 0)
                return 1;
            if (st == FL_GRPC_UNAVAILABLE || st == 8 /* RESOURCE_EXHAUSTED */) {
                w->n503++;
                *first_503 = 1;
                if (atomic_load(&g_stop) || !O.backoff)
                    return 0;
                backoff(wait);
                continue;
            }
            if (w->errs++ < 3)
                fprintf(stderr, "bench: grpc rc=%d status=%d\n", rc, st);
            return 0;
        }
        fl_http_response_t resp;
        int rc = fl_http_client_request(hc, "POST", "/v1/traces", json ? h_js : h_pb, 1, body, len,
                                        &resp);
        int status = rc == FL_OK ? resp.status : -1;
        char ra[32];
        double wait = 1;
        if (status == 503 && fl_http_response_header(&resp, "retry-after", ra, sizeof(ra)))
            wait = strtod(ra, NULL);
        else if (status == 503)
            w->n503_no_retry_after++;
        if (status != 200 && status != 503 && w->errs < 3)
            fprintf(stderr, "bench: http rc=%d status=%d %.200s\n", rc, status,
                    rc == FL_OK && resp.body.data ? (const char *)resp.body.data : "");
        fl_http_response_dispose(&resp);
        if (status == 200)
            return 1;
        if (status == 503) {
            w->n503++;
            *first_503 = 1;
            if (atomic_load(&g_stop) || !O.backoff)
                return 0;
            backoff(wait);
            continue;
        }
        w->errs++;
        return 0;
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const fl_bench_pool_t *pool = w->pool;
    int grpc = strcmp(O.transport, "grpc") == 0, json = strcmp(O.transport, "json") == 0;
    fl_http_client_t *hc = NULL;
    fl_grpc_client_t *gc = NULL;
    size_t maxlen = 0;
    for (size_t i = 0; i < pool->n; i++) {
        size_t l = json ? pool->reqs[i].json_len : pool->reqs[i].pb_len;
        maxlen = l > maxlen ? l : maxlen;
    }
    uint8_t *buf = malloc(maxlen + 1);
    if (grpc) {
        fl_grpc_client_opts_t go = {.host = O.host, .port = O.port, .timeout_ms = O.timeout_ms};
        gc = fl_grpc_client_new(&go);
    } else {
        fl_http_client_opts_t ho = {.host = O.host, .port = O.port, .timeout_ms = O.timeout_ms};
        hc = fl_http_client_new(&ho);
    }
    if (!buf || (!hc && !gc)) {
        fprintf(stderr, "bench: worker setup failed\n");
        goto out;
    }
    /* Fixed rate: this worker's share, scheduled open-loop; latency counts from the
     * scheduled time so a stalled server is not hidden (no coordinated omission). */
    double interval = O.rate > 0 ? (double)O.conns * (double)pool->spans_per_req / O.rate : 0;
    double next = g_t_begin + (interval > 0 ? interval * w->idx / O.conns : 0);
    for (uint64_t k = 0; !atomic_load(&g_stop); k++) {
        if (interval > 0) {
            sleep_s(next - now_s());
            if (atomic_load(&g_stop))
                break;
        }
        const fl_bench_req_t *r = &pool->reqs[(w->idx + k * (uint64_t)O.conns) % pool->n];
        uint32_t gen = atomic_fetch_add(&g_gen, 1);
        size_t len = json ? r->json_len : r->pb_len;
        memcpy(buf, json ? (const void *)r->json : (const void *)r->pb, len);
        if (json)
            fl_bench_patch_json(r, (char *)buf, gen);
        else
            fl_bench_patch_pb(r, buf, gen);
        double t0 = interval > 0 ? next : now_s();
        int got503 = 0;
        int ok = send_one(w, hc, gc, buf, len, json, &got503);
        double t1 = now_s();
        if (interval > 0)
            next += interval;
        if (ok) /* every acknowledged span, warm-up and tail included */
            w->acked_spans += r->n_spans;
        if (!ok || t1 < g_t_measure || (g_t_end > 0 && t1 > g_t_end))
            continue;
        w->ok_spans += r->n_spans;
        w->ok_reqs++;
        lat_push(w, (t1 - t0) * 1000.0);
        if (w->n_ids < w->cap_ids && (w->ok_reqs % 2) == 0)
            fl_bench_trace_id(r, w->ok_reqs % r->n_traces, gen, w->ids[w->n_ids++]);
    }
out:
    fl_http_client_free(hc);
    fl_grpc_client_free(gc);
    free(buf);
    return NULL;
}

/* Trace ids as lines of 32 hex digits (the reads mode's --ids format). */
static void write_ids(FILE *f, const uint8_t (*ids)[16], size_t n)
{
    for (size_t j = 0; j < n; j++) {
        for (int b = 0; b < 16; b++)
            fprintf(f, "%02x", ids[j][b]);
        fputc('\n', f);
    }
}

static int run_ingest(void)
{
    int json = strcmp(O.transport, "json") == 0;
    fl_bench_pool_t pool;
    double tg = now_s();
    if (fl_bench_pool_init(&pool, O.pool, O.spans, json ? FL_BENCH_WITH_JSON : 0, 42, 0) != 0) {
        fprintf(stderr, "bench: generating requests failed\n");
        return 1;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < pool.n; i++)
        bytes += json ? pool.reqs[i].json_len : pool.reqs[i].pb_len;
    fprintf(stderr, "bench: %zu requests x %zu spans, %.0f bytes/span, generated in %.2f s\n",
            pool.n, O.spans, (double)bytes / (double)(pool.n * O.spans), now_s() - tg);
    /* Start generations apart per run so repeated runs against one server stay unique. */
    atomic_store(&g_gen, (unsigned)(fl_time_now_ns() / 1000000000ull % 100000) * 40000u + 1);

    worker_t *ws = calloc((size_t)O.conns, sizeof(*ws));
    if (!ws)
        return 1;
    g_t_begin = now_s();
    g_t_measure = g_t_begin + O.warmup;
    g_t_end = 0;
    for (int i = 0; i < O.conns; i++) {
        ws[i].idx = i;
        ws[i].pool = &pool;
        ws[i].cap_ids = O.ids_out ? MAX_IDS / (size_t)O.conns : 0;
        ws[i].ids = ws[i].cap_ids ? calloc(ws[i].cap_ids, 16) : NULL;
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    sleep_s(g_t_measure - now_s());
    double cpu0 = O.pid ? proc_cpu_s(O.pid) : -1, self0 = self_cpu_s();
    long rss_max = 0;
    double end = g_t_measure + O.duration;
    g_t_end = end;
    while (now_s() < end) {
        long rss = O.pid ? proc_status_kb(O.pid, "VmRSS") : -1;
        rss_max = rss > rss_max ? rss : rss_max;
        sleep_s(fmin(0.1, end - now_s()));
    }
    double cpu1 = O.pid ? proc_cpu_s(O.pid) : -1, self1 = self_cpu_s();
    atomic_store(&g_stop, 1);
    for (int i = 0; i < O.conns; i++)
        pthread_join(ws[i].th, NULL);

    uint64_t spans = 0, reqs = 0, errs = 0, n503 = 0, retries = 0, acked = 0, no_ra = 0;
    size_t nl = 0;
    for (int i = 0; i < O.conns; i++) {
        acked += ws[i].acked_spans;
        no_ra += ws[i].n503_no_retry_after;
        spans += ws[i].ok_spans;
        reqs += ws[i].ok_reqs;
        errs += ws[i].errs;
        n503 += ws[i].n503;
        retries += ws[i].retries;
        nl += ws[i].n_lat;
    }
    double *lat = malloc((nl ? nl : 1) * sizeof(*lat));
    size_t k = 0;
    for (int i = 0; i < O.conns; i++)
        for (size_t j = 0; j < ws[i].n_lat && lat; j++)
            lat[k++] = ws[i].lat[j];
    if (lat)
        fl_sort(lat, k, sizeof(*lat), cmp_d);
    double sps = (double)spans / O.duration;
    printf("transport=%s\nspans_per_req=%zu\nconns=%d\nduration_s=%.1f\n", O.transport, O.spans,
           O.conns, O.duration);
    printf("offered_spans_per_s=%.0f\n", O.rate);
    printf("bytes_per_span_wire=%.0f\n", (double)bytes / (double)(pool.n * O.spans));
    printf("spans_per_s=%.0f\nrequests=%llu\nerrors=%llu\nrefused_503=%llu\nretries=%llu\n", sps,
           (unsigned long long)reqs, (unsigned long long)errs, (unsigned long long)n503,
           (unsigned long long)retries);
    printf("p50_ms=%.2f\np99_ms=%.2f\nmax_ms=%.2f\n", lat ? pct(lat, k, 0.5) : NAN,
           lat ? pct(lat, k, 0.99) : NAN, lat && k ? lat[k - 1] : NAN);
    printf("client_cpu_util=%.2f\n", (self1 - self0) / O.duration);
    printf("acked_spans_total=%llu\nrefused_503_without_retry_after=%llu\n",
           (unsigned long long)acked, (unsigned long long)no_ra);
    if (O.pid) {
        double cpu = cpu1 - cpu0;
        printf("server_cpu_s=%.2f\nserver_cpu_util=%.2f\n", cpu, cpu / O.duration);
        printf("spans_per_cpu_s=%.0f\n", cpu > 0 ? (double)spans / cpu : NAN);
        printf("rss_max_kb=%ld\nrss_hwm_kb=%ld\n", rss_max, proc_status_kb(O.pid, "VmHWM"));
    }
    if (O.ids_out) {
        FILE *f = fopen(O.ids_out, "w");
        for (int i = 0; f && i < O.conns; i++)
            write_ids(f, ws[i].ids, ws[i].n_ids);
        if (f)
            fclose(f);
    }
    for (int i = 0; i < O.conns; i++) {
        free(ws[i].lat);
        free(ws[i].ids);
    }
    free(ws);
    free(lat);
    fl_bench_pool_dispose(&pool);
    return 0;
}

/* ---------------------------------------------------------------- reads */

/* GET path repeatedly for secs; prints <key>_p50_ms/_p99_ms/_n/_errors. Returns the status
 * of the last reply (404 tells the caller a route is absent). */
typedef const char *(*path_fn)(char *out, size_t n, void *ud, uint64_t i);

static int time_gets(fl_http_client_t *c, const char *key, double secs, path_fn fn, void *ud)
{
    size_t cap = 1 << 16, n = 0;
    double *lat = malloc(cap * sizeof(*lat));
    uint64_t errs = 0;
    int last = 0;
    double end = now_s() + secs;
    char path[512];
    for (uint64_t i = 0; lat && now_s() < end && n < cap; i++) {
        fn(path, sizeof(path), ud, i);
        fl_http_response_t resp;
        double t0 = now_s();
        int rc = fl_http_client_request(c, "GET", path, NULL, 0, NULL, 0, &resp);
        double t1 = now_s();
        last = rc == FL_OK ? resp.status : -1;
        if (last != 200 && errs++ < 2)
            fprintf(stderr, "bench: GET %s -> %d %.200s\n", path, last,
                    rc == FL_OK && resp.body.data ? (const char *)resp.body.data : "");
        fl_http_response_dispose(&resp);
        if (last == 404 && i == 0 && strcmp(key, "metrics") == 0)
            break;
        lat[n++] = (t1 - t0) * 1000.0;
    }
    if (lat)
        fl_sort(lat, n, sizeof(*lat), cmp_d);
    printf("%s_n=%zu\n%s_errors=%llu\n%s_p50_ms=%.2f\n%s_p99_ms=%.2f\n", key, n, key,
           (unsigned long long)errs, key, lat ? pct(lat, n, 0.5) : NAN, key,
           lat ? pct(lat, n, 0.99) : NAN);
    free(lat);
    return last;
}

typedef struct ids {
    char (*hex)[33];
    size_t n;
    uint64_t rs;
} ids_t;

static const char *path_trace(char *out, size_t n, void *ud, uint64_t i)
{
    ids_t *ids = ud;
    ids->rs = ids->rs * 6364136223846793005ull + 1442695040888963407ull;
    snprintf(out, n, "/api/traces/%s", ids->hex[(ids->rs >> 33) % ids->n]);
    return out;
}

static const char *path_search(char *out, size_t n, void *ud, uint64_t i)
{
    uint64_t t = fl_time_now_ns();
    snprintf(out, n, "/api/traces?service=%s&start=%llu&end=%llu&min_duration_ms=%d&limit=20",
             fl_bench_services[1 + i % 4], (unsigned long long)(t - 600000000000ull),
             (unsigned long long)t, 50 + (int)(i % 4) * 50);
    return out;
}

static const char *path_metrics(char *out, size_t n, void *ud, uint64_t i)
{
    snprintf(out, n, "%s", (const char *)ud);
    return out;
}

static int run_reads(void)
{
    ids_t ids = {0};
    FILE *f = O.ids_in ? fopen(O.ids_in, "r") : NULL;
    char line[128];
    ids.hex = calloc(MAX_IDS, sizeof(*ids.hex));
    while (f && ids.hex && ids.n < MAX_IDS && fgets(line, sizeof(line), f))
        if (strlen(line) >= 32) {
            memcpy(ids.hex[ids.n], line, 32);
            ids.hex[ids.n++][32] = '\0';
        }
    if (f)
        fclose(f);
    fl_http_client_opts_t ho = {.host = O.host, .port = O.port, .timeout_ms = O.timeout_ms};
    fl_http_client_t *c = fl_http_client_new(&ho);
    if (!c) {
        free(ids.hex);
        return 1;
    }
    double part = O.duration / 3;
    if (ids.n)
        time_gets(c, "trace", part, path_trace, &ids);
    else
        printf("trace_note=no known ids\n");
    time_gets(c, "search", part, path_search, NULL);
    if (time_gets(c, "metrics", part, path_metrics, "/aiops/metrics") == 404)
        printf("metrics_note=/aiops/metrics absent (404), skipped\n");
    fl_http_client_free(c);
    free(ids.hex);
    return 0;
}

/* ---------------------------------------------------------------- prefill */

/* Fill a database (server stopped) up to O.stored spans through the store API: the pool's
 * requests are decoded once with the receiver's decoder; every submitted batch is a shallow
 * copy of one (strings, attributes, resources and scopes stay in the decoded pool, which
 * outlives the store) with a new generation stamped into its trace ids, exactly as the
 * ingest mode stamps its requests, and its times moved so that the event time advances
 * O.event_rate spans per second up to the prefill's start. */
typedef struct prefill {
    pthread_mutex_t mu;
    uint64_t stored, dups, failed;
} prefill_t;

static void prefill_done(void *ctx, int status, size_t stored, size_t dups)
{
    prefill_t *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->stored += stored;
    p->dups += dups;
    p->failed += status != FL_OK;
    pthread_mutex_unlock(&p->mu);
}

static fl_span_batch_t *prefill_batch(const fl_span_batch_t *tpl, uint32_t gen, uint64_t shift)
{
    fl_span_batch_t *b = fl_span_batch_new(tpl->n_spans * sizeof(fl_span_t) + 1024);
    if (!b)
        return NULL;
    b->spans = fl_arena_alloc(b->arena, tpl->n_spans * sizeof(fl_span_t));
    if (!b->spans) {
        fl_span_batch_free(b);
        return NULL;
    }
    memcpy(b->spans, tpl->spans, tpl->n_spans * sizeof(fl_span_t));
    b->n_spans = tpl->n_spans;
    b->received_ns = fl_time_now_ns();
    for (size_t i = 0; i < b->n_spans; i++) {
        fl_span_t *sp = &b->spans[i];
        sp->trace_id[12] = (uint8_t)(gen >> 24);
        sp->trace_id[13] = (uint8_t)(gen >> 16);
        sp->trace_id[14] = (uint8_t)(gen >> 8);
        sp->trace_id[15] = (uint8_t)gen;
        sp->start_ns -= shift;
        sp->end_ns -= shift;
    }
    return b;
}

static int run_prefill(void)
{
    fl_store_opts_t so = {0};
    fl_store_t *st = NULL;
    fl_store_stats_t ss;
    fl_bench_pool_t pool = {0};
    fl_span_batch_t **tpl = NULL;
    uint8_t(*ids)[16] = NULL;
    size_t n_ids = 0;
    prefill_t pf = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char err[512] = "";
    int rc = 1;

    /* The server's store settings (server/src/main.c), so the layout is what it writes. */
    so.path = O.db;
    so.dedup_window_spans = 1000000;
    so.cache_mib = 32;
    double t0 = now_s(), c0 = self_cpu_s();
    if (fl_store_open(&so, &st, err, sizeof(err)) != FL_OK) {
        fprintf(stderr, "bench: cannot open %s: %s\n", O.db, err);
        return 1;
    }
    fl_store_stats(st, &ss);
    uint64_t before = ss.spans_stored;
    uint64_t n_req = O.stored > before ? (O.stored - before + O.spans - 1) / O.spans : 0;
    if (fl_bench_pool_init(&pool, O.pool, O.spans, 0, 1009, 0) != 0 ||
        !(tpl = calloc(pool.n, sizeof(*tpl))) || !(ids = calloc(MAX_IDS / 2, 16))) {
        fprintf(stderr, "bench: prefill: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < pool.n; i++) {
        tpl[i] = fl_span_batch_new(1 << 20);
        if (!tpl[i] || fl_otlp_decode_traces(pool.reqs[i].pb, pool.reqs[i].pb_len, FL_OTLP_PROTOBUF,
                                             tpl[i], err, sizeof(err)) != FL_OK) {
            fprintf(stderr, "bench: prefill: decoding the pool failed: %s\n", err);
            goto out;
        }
    }
    /* Generations continue from what earlier prefills of this database used. */
    uint32_t gen0 = (uint32_t)(before / O.spans) + 1;
    uint64_t per_req_ns = (uint64_t)((double)O.spans * 1e9 / O.event_rate);
    uint64_t every = n_req / (MAX_IDS / 2) + 1;
    for (uint64_t k = 0; k < n_req; k++) {
        const fl_bench_req_t *r = &pool.reqs[k % pool.n];
        uint32_t gen = gen0 + (uint32_t)k;
        fl_span_batch_t *b = prefill_batch(tpl[k % pool.n], gen, (n_req - 1 - k) * per_req_ns);
        if (!b) {
            fprintf(stderr, "bench: prefill: out of memory\n");
            goto out;
        }
        if (k % every == 0 && n_ids < MAX_IDS / 2)
            fl_bench_trace_id(r, (size_t)(k / every) % r->n_traces, gen, ids[n_ids++]);
        while (fl_store_would_block(st, b->n_spans)) /* as the receiver's admission does */
            sleep_s(0.0002);
        int src = fl_store_submit_take(st, b, prefill_done, &pf);
        if (src != FL_OK) { /* one submitting thread: BUSY cannot happen after the check */
            fprintf(stderr, "bench: prefill: submit: %s\n", fl_strerror(src));
            goto out;
        }
    }
    rc = 0;
out:
    fl_store_flush(st);
    fl_store_stats(st, &ss);
    fl_store_close(st);
    double el = now_s() - t0;
    if (pf.failed) /* the writer thread has been joined: no lock needed from here */
        rc = 1;
    printf("prefill_spans_before=%llu\nprefill_spans_added=%llu\nprefill_duplicates=%llu\n",
           (unsigned long long)before, (unsigned long long)pf.stored, (unsigned long long)pf.dups);
    printf("prefill_spans_stored=%llu\nprefill_failed_batches=%llu\n",
           (unsigned long long)ss.spans_stored, (unsigned long long)pf.failed);
    printf("prefill_s=%.1f\nprefill_spans_per_s=%.0f\nprefill_cpu_s=%.1f\n", el,
           el > 0 ? (double)pf.stored / el : NAN, self_cpu_s() - c0);
    if (O.ids_out && rc == 0) {
        FILE *f = fopen(O.ids_out, "w");
        if (f) {
            write_ids(f, (const uint8_t(*)[16])ids, n_ids);
            fclose(f);
        }
    }
    for (size_t i = 0; tpl && i < pool.n; i++)
        fl_span_batch_free(tpl[i]);
    free(tpl);
    free(ids);
    fl_bench_pool_dispose(&pool);
    return rc;
}

/* ---------------------------------------------------------------- ceilings */

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* The row-store ceiling: one row per span, a trace-id index and a (service, start) index,
 * WAL, synchronous=NORMAL, one transaction per 1000-span request. */
static int run_sqlite(void)
{
    static const char *const ddl =
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        "CREATE TABLE spans(trace_id BLOB NOT NULL, span_id BLOB NOT NULL, parent_id BLOB,"
        " service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER, start_ns INTEGER,"
        " end_ns INTEGER, status INTEGER, attrs TEXT);"
        "CREATE INDEX spans_trace ON spans(trace_id);"
        "CREATE INDEX spans_svc_start ON spans(service, start_ns);";
    char path[1024];
    snprintf(path, sizeof(path), "%s/rowstore.db", O.dir ? O.dir : ".");
    unlink(path);
    fl_bench_pool_t pool;
    if (fl_bench_pool_init(&pool, O.pool, O.spans, FL_BENCH_WITH_ROWS, 7, 0) != 0)
        return 1;
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    int rc = 1;
    char *err = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, ddl, NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO spans VALUES(?,?,?,?,?,?,?,?,?,?)", -1, &ins, NULL) !=
            SQLITE_OK) {
        fprintf(stderr, "bench: sqlite: %s\n", err ? err : sqlite3_errmsg(db));
        goto out;
    }
    uint64_t rows = 0, rows_tail = 0;
    double t0 = now_s(), c0 = self_cpu_s(), end = t0 + O.duration, tail = t0 + O.duration * 0.8;
    double t_tail = 0;
    for (uint32_t gen = 1; now_s() < end; gen++) {
        const fl_bench_req_t *r = &pool.reqs[gen % pool.n];
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (size_t i = 0; i < r->n_spans; i++) {
            const fl_bench_row_t *w = &r->rows[i];
            uint8_t tid[16];
            memcpy(tid, w->trace_id, 16);
            tid[12] = (uint8_t)(gen >> 24);
            tid[13] = (uint8_t)(gen >> 16);
            tid[14] = (uint8_t)(gen >> 8);
            tid[15] = (uint8_t)gen;
            sqlite3_bind_blob(ins, 1, tid, 16, SQLITE_TRANSIENT);
            sqlite3_bind_blob(ins, 2, w->span_id, 8, SQLITE_STATIC);
            if (w->has_parent)
                sqlite3_bind_blob(ins, 3, w->parent_id, 8, SQLITE_STATIC);
            else
                sqlite3_bind_null(ins, 3);
            sqlite3_bind_text(ins, 4, w->service, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 5, w->name, -1, SQLITE_STATIC);
            sqlite3_bind_int(ins, 6, w->kind);
            sqlite3_bind_int64(ins, 7, (sqlite3_int64)w->start_ns);
            sqlite3_bind_int64(ins, 8, (sqlite3_int64)w->end_ns);
            sqlite3_bind_int(ins, 9, w->status);
            sqlite3_bind_text(ins, 10, w->attrs_json, -1, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fprintf(stderr, "bench: sqlite insert: %s\n", sqlite3_errmsg(db));
                goto out;
            }
            sqlite3_reset(ins);
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
            fprintf(stderr, "bench: sqlite commit: %s\n", err);
            goto out;
        }
        rows += r->n_spans;
        double t = now_s();
        if (t >= tail) {
            if (!t_tail)
                t_tail = t;
            else
                rows_tail += r->n_spans;
        }
    }
    double el = now_s() - t0, cpu = self_cpu_s() - c0;
    double el_tail = now_s() - t_tail;
    sqlite3_finalize(ins);
    ins = NULL;
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    long long sz = file_size(path) + file_size(wal);
    printf("rowstore_rows=%llu\nrowstore_rows_per_s=%.0f\nrowstore_rows_per_cpu_s=%.0f\n",
           (unsigned long long)rows, (double)rows / el, (double)rows / cpu);
    printf("rowstore_rows_per_s_last20pct=%.0f\nrowstore_bytes_per_span=%.0f\n",
           t_tail && el_tail > 0 ? (double)rows_tail / el_tail : NAN,
           rows ? (double)sz / (double)rows : NAN);
    rc = 0;
out:
    sqlite3_free(err);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    unlink(path);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "-wal");
    unlink(path);
    path[strlen(path) - 4] = '\0';
    strcat(path, "-shm");
    unlink(path);
    fl_bench_pool_dispose(&pool);
    return rc;
}

static void *arena_alloc(void *ud, size_t size)
{
    return fl_arena_alloc(ud, size);
}

static void arena_free(void *ud, void *p) {}

/* The decode ceiling: protobuf-c unpack + free of the same requests on one core, with
 * malloc and with an arena allocator (what the receiver uses). */
static int run_decode(void)
{
    fl_bench_pool_t pool;
    if (fl_bench_pool_init(&pool, O.pool, O.spans, 0, 11, 0) != 0)
        return 1;
    fl_arena_t *a = fl_arena_new(1 << 20);
    ProtobufCAllocator al = {arena_alloc, arena_free, a};
    for (int arena = 0; arena < 2; arena++) {
        uint64_t spans = 0;
        double t0 = now_s(), c0 = self_cpu_s(), end = t0 + O.duration / 2;
        for (size_t i = 0; now_s() < end; i++) {
            const fl_bench_req_t *r = &pool.reqs[i % pool.n];
            Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *m =
                opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
                    arena ? &al : NULL, r->pb_len, r->pb);
            if (!m) {
                fprintf(stderr, "bench: unpack failed\n");
                break;
            }
            if (arena)
                fl_arena_reset(a);
            else
                opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
                    m, NULL);
            spans += r->n_spans;
        }
        double cpu = self_cpu_s() - c0;
        printf("decode_%s_spans_per_cpu_s=%.0f\n", arena ? "arena" : "malloc",
               cpu > 0 ? (double)spans / cpu : NAN);
    }
    fl_arena_free(a);
    fl_bench_pool_dispose(&pool);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: faultline-bench MODE [options]\n"
            "  ingest   --port P [--transport http|grpc|json] [--spans N] [--conns N]\n"
            "           [--duration S] [--warmup S] [--rate SPANS_PER_S] [--pid SERVER_PID]\n"
            "           [--pool N] [--ids-out FILE] [--backoff 0|1]\n"
            "  reads    --port P [--ids FILE] [--duration S]\n"
            "  prefill  --db PATH --stored N [--ids-out FILE] [--event-rate SPANS_PER_S]\n"
            "           [--spans N] [--pool N]   fill a stopped server's database to N spans\n"
            "  sqlite   [--dir DIR] [--duration S] [--spans N]   row-per-span ceiling\n"
            "  decode   [--duration S] [--spans N]               protobuf-c ceiling\n"
            "Results go to stdout as key=value lines.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        usage();
        return 2;
    }
    O.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--host"))
            O.host = v;
        else if (!strcmp(a, "--port"))
            O.port = atoi(v);
        else if (!strcmp(a, "--transport"))
            O.transport = v;
        else if (!strcmp(a, "--spans"))
            O.spans = (size_t)atol(v);
        else if (!strcmp(a, "--conns"))
            O.conns = atoi(v);
        else if (!strcmp(a, "--duration"))
            O.duration = atof(v);
        else if (!strcmp(a, "--warmup"))
            O.warmup = atof(v);
        else if (!strcmp(a, "--rate"))
            O.rate = atof(v);
        else if (!strcmp(a, "--backoff"))
            O.backoff = atoi(v);
        else if (!strcmp(a, "--pid"))
            O.pid = atoi(v);
        else if (!strcmp(a, "--pool"))
            O.pool = (size_t)atol(v);
        else if (!strcmp(a, "--ids-out"))
            O.ids_out = v;
        else if (!strcmp(a, "--ids"))
            O.ids_in = v;
        else if (!strcmp(a, "--dir"))
            O.dir = v;
        else if (!strcmp(a, "--db"))
            O.db = v;
        else if (!strcmp(a, "--stored"))
            O.stored = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--event-rate"))
            O.event_rate = atof(v);
        else {
            usage();
            return 2;
        }
    }
    if (O.conns < 1 || O.spans < 1 || O.pool < 1 || O.duration <= 0 || O.event_rate <= 0 ||
        (!strcmp(O.mode, "prefill") && !O.db)) {
        usage();
        return 2;
    }
    if (!strcmp(O.mode, "ingest"))
        return run_ingest();
    if (!strcmp(O.mode, "reads"))
        return run_reads();
    if (!strcmp(O.mode, "prefill"))
        return run_prefill();
    if (!strcmp(O.mode, "sqlite"))
        return run_sqlite();
    if (!strcmp(O.mode, "decode"))
        return run_decode();
    usage();
    return 2;
}
