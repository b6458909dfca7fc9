/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-store-bench: ingest realistic spans (5-span traces, 11 HTTP attributes each,
 * 1000-span batches) straight into the store and print spans/s, store CPU per span,
 * bytes/span on disk, reopen time, and get_trace / search latencies. Not a test. */
#include <faultline/store.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct bench {
    fl_store_t *s;
    size_t spans;
    size_t batch;
    uint64_t seed;
    uint64_t t0_event; /* event time of the first trace */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t acked;
    size_t stored;
    size_t failed;
    uint8_t (*sample)[16]; /* every 64th trace id, for reads */
    size_t n_sample;
    uint64_t gen_cpu_ns;
} bench_t;

static uint64_t rnd(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static const char *services[] = {"frontend", "checkout", "payment", "inventory", "postgres"};
static const char *ops[] = {"GET /api/v1/orders/{id}", "POST /api/v1/checkout",
                            "POST /api/v1/payments", "GET /api/v1/stock/{sku}", "SELECT orders"};
static const char *routes[] = {"/api/v1/orders/{id}", "/api/v1/checkout", "/api/v1/payments",
                               "/api/v1/stock/{sku}", "/db"};
static const char *agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 Version/17.2 Safari/605",
    "okhttp/4.12.0", "python-requests/2.31.0", "Go-http-client/1.1"};

static fl_str_t dup_str(fl_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    return (fl_str_t){fl_arena_strndup(a, s, n), n};
}

static void set_str(fl_arena_t *a, fl_kv_t *kv, const char *k, const char *v)
{
    kv->key = dup_str(a, k);
    kv->value.type = FL_VAL_STRING;
    kv->value.u.str = dup_str(a, v);
}

static void set_int(fl_arena_t *a, fl_kv_t *kv, const char *k, int64_t v)
{
    kv->key = dup_str(a, k);
    kv->value.type = FL_VAL_INT;
    kv->value.u.i = v;
}

/* One request: batch->n traces of 5 spans, spans grouped by service like ResourceSpans. */
static fl_span_batch_t *make_batch(bench_t *b, uint64_t *rng, size_t first_trace, size_t n)
{
    fl_span_batch_t *bt = fl_span_batch_new(256 * 1024);
    fl_arena_t *a = bt->arena;
    size_t ntr = n / 5;
    bt->spans = fl_arena_calloc(a, ntr * 5, sizeof(fl_span_t));
    bt->n_spans = ntr * 5;
    fl_resource_t *res[5];
    fl_scope_t *scope = fl_arena_calloc(a, 1, sizeof(*scope));
    scope->name = dup_str(a, "@opentelemetry/instrumentation-http");
    scope->version = dup_str(a, "0.45.1");
    for (int i = 0; i < 5; i++) {
        res[i] = fl_arena_calloc(a, 1, sizeof(fl_resource_t));
        res[i]->attrs.items = fl_arena_calloc(a, 4, sizeof(fl_kv_t));
        res[i]->attrs.n = 4;
        set_str(a, &res[i]->attrs.items[0], "service.name", services[i]);
        set_str(a, &res[i]->attrs.items[1], "service.version", "1.4.2");
        set_str(a, &res[i]->attrs.items[2], "telemetry.sdk.language", "nodejs");
        set_str(a, &res[i]->attrs.items[3], "host.name", "node-7");
        res[i]->service_name = dup_str(a, services[i]);
    }
    uint8_t(*tids)[16] = malloc(ntr * 16);
    uint8_t(*sids)[5][8] = malloc(ntr * 5 * 8);
    uint64_t *starts = malloc(ntr * sizeof(uint64_t));
    for (size_t t = 0; t < ntr; t++) {
        uint64_t x = rnd(rng), y = rnd(rng);
        memcpy(tids[t], &x, 8);
        memcpy(tids[t] + 8, &y, 8);
        for (int k = 0; k < 5; k++) {
            uint64_t z = rnd(rng);
            memcpy(sids[t][k], &z, 8);
        }
        /* 60k traces per second of event time, with jitter */
        starts[t] = b->t0_event + (first_trace + t) * 16667ULL + rnd(rng) % 5000;
        size_t gi = first_trace + t;
        if (gi % 64 == 0 && b->n_sample < b->spans / 5 / 64 + 1)
            memcpy(b->sample[b->n_sample++], tids[t], 16);
    }
    /* Service k's spans of all traces are adjacent (one ResourceSpans per service). */
    char buf[160];
    size_t idx = 0;
    for (int k = 0; k < 5; k++) {
        for (size_t t = 0; t < ntr; t++) {
            fl_span_t *sp = &bt->spans[idx++];
            memcpy(sp->trace_id, tids[t], 16);
            memcpy(sp->span_id, sids[t][k], 8);
            if (k > 0)
                memcpy(sp->parent_span_id, sids[t][k == 4 ? 3 : (k == 1 ? 0 : 1)], 8);
            sp->name = dup_str(a, ops[k]);
            sp->kind = k == 0 ? FL_KIND_SERVER : (k == 4 ? FL_KIND_CLIENT : FL_KIND_SERVER);
            sp->flags = 1;
            uint64_t dur = 200000 + rnd(rng) % (k == 4 ? 2000000 : 20000000);
            sp->start_ns = starts[t] + (uint64_t)k * 150000 + rnd(rng) % 100000;
            sp->end_ns = sp->start_ns + dur;
            int err = rnd(rng) % 100 == 0;
            sp->status_code = err ? FL_STATUS_ERROR : FL_STATUS_UNSET;
            if (err)
                sp->status_message = dup_str(a, "upstream connect error");
            sp->resource = res[k];
            sp->scope = scope;
            sp->attrs.items = fl_arena_calloc(a, 11, sizeof(fl_kv_t));
            sp->attrs.n = 11;
            fl_kv_t *kv = sp->attrs.items;
            set_str(a, &kv[0], "http.request.method", k == 1 || k == 2 ? "POST" : "GET");
            set_str(a, &kv[1], "http.route", routes[k]);
            snprintf(buf, sizeof(buf), "%s", routes[k]);
            char *brace = strchr(buf, '{');
            if (brace)
                snprintf(brace, sizeof(buf) - (size_t)(brace - buf), "%llu",
                         (unsigned long long)(rnd(rng) % 100000));
            set_str(a, &kv[2], "url.path", buf);
            set_int(a, &kv[3], "http.response.status_code", err ? 503 : 200);
            set_str(a, &kv[4], "url.scheme", "http");
            snprintf(buf, sizeof(buf), "%s.shop.svc.cluster.local", services[k]);
            set_str(a, &kv[5], "server.address", buf);
            set_int(a, &kv[6], "server.port", 8080);
            snprintf(buf, sizeof(buf), "10.42.%u.%u", (unsigned)(rnd(rng) % 8),
                     (unsigned)(rnd(rng) % 250));
            set_str(a, &kv[7], "network.peer.address", buf);
            set_str(a, &kv[8], "user_agent.original", agents[rnd(rng) % 5]);
            set_int(a, &kv[9], "http.request.body.size", (int64_t)(rnd(rng) % 2000));
            set_int(a, &kv[10], "http.response.body.size", (int64_t)(rnd(rng) % 40000));
        }
    }
    free(tids);
    free(sids);
    free(starts);
    return bt;
}

static void done_cb(void *ctx, int status, size_t stored, size_t dups)
{
    bench_t *b = ctx;
    (void)dups;
    pthread_mutex_lock(&b->mu);
    b->acked++;
    b->stored += stored;
    if (status != FL_OK)
        b->failed++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static fl_span_batch_t **pregen;
static size_t n_pregen;

static void *generator(void *arg)
{
    bench_t *b = arg;
    uint64_t rng = b->seed;
    uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    size_t traces = b->spans / 5, per = b->batch / 5;
    size_t k = 0;
    for (size_t t = 0; t < traces; t += per) {
        size_t n = (traces - t < per ? traces - t : per) * 5;
        fl_span_batch_t *bt = pregen ? pregen[k++] : make_batch(b, &rng, t, n);
        while (fl_store_would_block(b->s, bt->n_spans)) /* as a receiver's admission check */
            usleep(200);
        if (fl_store_submit_take(b->s, bt, done_cb, b) != FL_OK) {
            fprintf(stderr, "submit refused\n"); /* one generator thread: cannot happen */
            break;
        }
    }
    b->gen_cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    return NULL;
}

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000000ULL + (uint64_t)ru.ru_utime.tv_usec * 1000 +
           (uint64_t)ru.ru_stime.tv_sec * 1000000000ULL + (uint64_t)ru.ru_stime.tv_usec * 1000;
}

static uint64_t fsize(const char *p, const char *suffix)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s", p, suffix);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Wall-clock latency percentiles, and the same for the thread's CPU time: on a busy shared
 * machine the wall tail is mostly waiting for a core, the CPU tail is the operation's own. */
static void pct(const char *what, uint64_t *v, uint64_t *cpu, size_t n)
{
    fl_sort(v, n, sizeof(*v), cmp_u64);
    fl_sort(cpu, n, sizeof(*cpu), cmp_u64);
    printf("%-31s p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms | cpu p50 %6.3f p99 %6.3f ms "
           "(n=%zu)\n",
           what, v[n / 2] / 1e6, v[(n * 99) / 100] / 1e6, v[n - 1] / 1e6, cpu[n / 2] / 1e6,
           cpu[(n * 99) / 100] / 1e6, n);
}

static void usage(void)
{
    printf(
        "usage: faultline-store-bench [--spans N] [--batch N] [--db PATH] [--full] [--keep]\n"
        "  ingests N spans (default 2000000) in batches of N (default 1000) into a fresh\n"
        "  store, then measures reads. --full: synchronous=FULL. --keep: keep the db.\n"
        "  --reuse: ingest into an existing --db (scale test). --ingest-only: skip reads.\n"
        "  --pregen: build all batches before timing (store cost alone; needs ~1.2 KB/span).\n"
        "  --reads-only: only measure reads on an existing --db (its traces found by search).\n");
}

int main(int argc, char **argv)
{
    bench_t b = {.spans = 2000000, .batch = 1000, .seed = 42};
    const char *db = NULL;
    int keep = 0, full = 0, reuse = 0, ingest_only = 0, pre = 0, reads_only = 0;
    char dir[64] = "";
    char path[128];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--spans") && i + 1 < argc)
            b.spans = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            b.batch = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            b.seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--full"))
            full = 1;
        else if (!strcmp(argv[i], "--reuse"))
            reuse = 1;
        else if (!strcmp(argv[i], "--ingest-only"))
            ingest_only = 1;
        else if (!strcmp(argv[i], "--pregen"))
            pre = 1;
        else if (!strcmp(argv[i], "--reads-only"))
            reads_only = reuse = keep = 1;
        else {
            usage();
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (b.batch < 5)
        b.batch = 5;
    if (!db) {
        snprintf(dir, sizeof(dir), "/tmp/fl_store_bench_XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/faultline.db", dir);
        db = path;
    } else if (!reuse) {
        unlink(db);
    }
    uint64_t base0 = fsize(db, "") + fsize(db, "-wal");
    b.t0_event = 1700000000000000000ULL +
                 (reuse ? (uint64_t)time(NULL) * 1000000000ULL % 86400000000000ULL : 0);
    b.seed ^= reuse ? (uint64_t)time(NULL) : 0;
    b.sample = malloc((b.spans / 5 / 64 + 2 + 2000) * 16);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);

    fl_store_opts_t o = {.path = db, .synchronous_full = full, .max_queue_spans = 131072};
    char err[256];
    uint64_t t_open = now_ns(CLOCK_MONOTONIC);
    if (fl_store_open(&o, &b.s, err, sizeof(err)) != FL_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    double open_ms = (now_ns(CLOCK_MONOTONIC) - t_open) / 1e6;
    printf("store bench: %zu spans, %zu-span batches, 5-span traces, 11 attributes, %s%s\n",
           b.spans, b.batch, full ? "synchronous=FULL" : "synchronous=NORMAL",
           reuse ? " (into existing db)" : "");
    if (reuse)
        printf("opened existing store in %.1f ms\n", open_ms);

    if (reads_only) {
        fl_store_stats_t st0;
        fl_store_stats(b.s, &st0);
        b.t0_event = 1700000000000000000ULL;
        b.spans = st0.spans_stored;
        fl_arena_t *sa = fl_arena_new(0);
        uint64_t rng = 99;
        uint64_t range = (b.spans / 5) * 16667ULL;
        for (int tries = 0; b.n_sample < 2000 && tries < 5000; tries++) {
            fl_trace_query_t q = {.limit = 20};
            q.start_ns =
                b.t0_event + (range > 1000000000ULL ? rnd(&rng) % (range - 1000000000ULL) : 0);
            q.end_ns = q.start_ns + 1000000000ULL;
            fl_trace_summary_t *sum;
            size_t n;
            if (fl_store_search_traces(b.s, &q, sa, &sum, &n) != FL_OK)
                break;
            for (size_t i = 0; i < n && b.n_sample < 2000; i++)
                memcpy(b.sample[b.n_sample++], sum[i].trace_id, 16);
            fl_arena_reset(sa);
        }
        fl_arena_free(sa);
        printf("reads only: %llu spans stored, %zu trace ids sampled by search\n",
               (unsigned long long)b.spans, b.n_sample);
        fl_store_close(b.s);
        goto reads;
    }
    if (pre) { /* build every batch first: the timed run then measures the store alone */
        uint64_t rng = b.seed;
        size_t traces = b.spans / 5, per = b.batch / 5;
        pregen = malloc((traces / per + 2) * sizeof(*pregen));
        for (size_t t = 0; t < traces; t += per)
            pregen[n_pregen++] = make_batch(&b, &rng, t, (traces - t < per ? traces - t : per) * 5);
    }
    uint64_t c0 = cpu_ns(), t0 = now_ns(CLOCK_MONOTONIC);
    pthread_t gen;
    pthread_create(&gen, NULL, generator, &b);
    pthread_join(gen, NULL);
    fl_store_flush(b.s);
    uint64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = cpu_ns();
    fl_store_stats_t st;
    fl_store_stats(b.s, &st);
    double secs = (t1 - t0) / 1e9;
    double store_cpu = (double)(c1 - c0 - b.gen_cpu_ns);
    printf("ingest: %.0f spans/s wall (%.2f s), store CPU %.2f us/span (%.0f spans per "
           "store CPU-second), generator CPU %.2f us/span\n",
           b.stored / secs, secs, store_cpu / 1e3 / b.stored, b.stored / (store_cpu / 1e9),
           b.gen_cpu_ns / 1e3 / b.spans);
    printf("blocks %llu, compactions %llu, trace filters %.1f MiB in memory\n",
           (unsigned long long)st.blocks, (unsigned long long)st.compactions,
           st.index_bytes / 1048576.0);
    printf("commits %llu (%.0f spans/commit, last commit %.2f ms), failed batches %zu\n",
           (unsigned long long)st.commits, (double)b.stored / (st.commits ? st.commits : 1),
           st.last_commit_ns / 1e6, b.failed);

    /* Close (checkpoints the WAL) and measure the file. */
    fl_store_close(b.s);
    uint64_t bytes = fsize(db, "") + fsize(db, "-wal");
    printf("disk: %.1f MB total, %.1f bytes/span (this run's spans)\n", bytes / 1e6,
           (double)(bytes - base0) / b.stored);

    if (ingest_only)
        goto cleanup;
reads:
    t_open = now_ns(CLOCK_MONOTONIC);
    if (fl_store_open(&o, &b.s, err, sizeof(err)) != FL_OK) {
        fprintf(stderr, "reopen: %s\n", err);
        return 1;
    }
    fl_store_stats(b.s, &st);
    printf("reopen: %.1f ms (trace filters + dedup window rebuild), %llu spans stored\n",
           (now_ns(CLOCK_MONOTONIC) - t_open) / 1e6, (unsigned long long)st.spans_stored);

    /* get_trace on sampled ids */
    size_t nq = b.n_sample < 2000 ? b.n_sample : 2000;
    uint64_t *lat = malloc((nq + 200) * sizeof(uint64_t));
    uint64_t *cpu = malloc((nq + 200) * sizeof(uint64_t));
    fl_arena_t *a = fl_arena_new(0);
    uint64_t rng = 7;
    size_t bad = 0;
    for (size_t i = 0; i < nq; i++) {
        const uint8_t *id = b.sample[rnd(&rng) % b.n_sample];
        fl_span_t *sp;
        size_t n;
        uint64_t q0 = now_ns(CLOCK_MONOTONIC), k0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        int rc = fl_store_get_trace(b.s, id, a, &sp, &n);
        lat[i] = now_ns(CLOCK_MONOTONIC) - q0;
        cpu[i] = now_ns(CLOCK_THREAD_CPUTIME_ID) - k0;
        bad += rc != FL_OK || n != 5;
        fl_arena_reset(a);
    }
    pct("get_trace (full spans)", lat, cpu, nq);
    if (bad)
        printf("  !! %zu lookups did not return 5 spans\n", bad);

    /* search: service + 10 s time window + min duration */
    uint64_t span_ns = (b.spans / 5) * 16667ULL;
    for (int kind = 0; kind < 3; kind++) {
        size_t n_s = 100;
        size_t found = 0;
        for (size_t i = 0; i < n_s; i++) {
            fl_trace_query_t q = {.limit = 20};
            uint64_t win = 10000000000ULL;
            uint64_t off = span_ns > win ? rnd(&rng) % (span_ns - win) : 0;
            q.start_ns = b.t0_event + off;
            q.end_ns = q.start_ns + win;
            if (kind == 0) {
                q.service = services[rnd(&rng) % 5];
                q.min_duration_ns = 10000000;
            } else if (kind == 1) {
                q.service = "payment";
                q.operation = ops[2];
                q.min_duration_ns = 19000000;
                q.errors_only = 1;
                q.start_ns = q.end_ns = 0; /* whole store: rare matches */
            } else {
                q.start_ns = q.end_ns = 0; /* newest, no filter */
            }
            fl_trace_summary_t *sum;
            size_t n;
            uint64_t q0 = now_ns(CLOCK_MONOTONIC), k0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
            fl_store_search_traces(b.s, &q, a, &sum, &n);
            lat[i] = now_ns(CLOCK_MONOTONIC) - q0;
            cpu[i] = now_ns(CLOCK_THREAD_CPUTIME_ID) - k0;
            found += n;
            fl_arena_reset(a);
        }
        const char *names[] = {"search svc+10s+min duration", "search svc+op+err+dur, all",
                               "search newest, no filter"};
        pct(names[kind], lat, cpu, n_s);
        printf("  (%.1f traces per result)\n", (double)found / n_s);
    }
    uint64_t q0 = now_ns(CLOCK_MONOTONIC);
    fl_service_info_t *sv;
    size_t nsv;
    fl_store_list_services(b.s, a, &sv, &nsv);
    printf("list_services: %.3f ms, %zu services\n", (now_ns(CLOCK_MONOTONIC) - q0) / 1e6, nsv);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.0f MiB (includes the bench's own queued batches)\n", ru.ru_maxrss / 1024.0);
    fl_store_close(b.s);
    fl_arena_free(a);
    free(lat);
    free(cpu);
cleanup:
    free(b.sample);
    free(pregen);
    if (!keep && dir[0]) {
        char p[200];
        snprintf(p, sizeof(p), "%s-wal", db);
        unlink(p);
        snprintf(p, sizeof(p), "%s-shm", db);
        unlink(p);
        unlink(db);
        rmdir(dir);
    } else {
        printf("database kept at %s\n", db);
    }
    return 0;
}
