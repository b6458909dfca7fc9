/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-load: drives traffic. Live mode sends POST /checkout to the demo at a given rate
 * and concurrency for a duration, shows progress on stderr and a latency/status summary;
 * synthetic mode (synth_main.c) generates OTLP traces for a topology with scripted faults. */
#include "load_int.h"

#include <faultline/common.h>
#include <faultline/net.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- latency histogram */

/* Log-scale buckets 2 % wide from 1 us: bounded memory whatever the run length. */
#define HIST_BUCKETS 1400
#define HIST_GROWTH 1.02

typedef struct stats {
    pthread_mutex_t mu;
    uint64_t hist[HIST_BUCKETS];
    uint64_t count, ok, failed, transport, timeouts;
    uint64_t status[600];
    double min_ms, max_ms, sum_ms;
} stats_t;

static int bucket_of(double ms)
{
    double us = ms * 1000.0;
    if (us <= 1.0)
        return 0;
    int b = (int)(log(us) / log(HIST_GROWTH));
    return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}

/* The middle of a bucket, in ms. */
static double bucket_ms(int b)
{
    return pow(HIST_GROWTH, b + 0.5) / 1000.0;
}

static void stats_add(stats_t *s, int status, double ms)
{
    pthread_mutex_lock(&s->mu);
    s->count++;
    if (status > 0) {
        s->hist[bucket_of(ms)]++;
        if (s->count - s->transport - s->timeouts == 1 || ms < s->min_ms)
            s->min_ms = ms;
        if (ms > s->max_ms)
            s->max_ms = ms;
        s->sum_ms += ms;
        if (status >= 100 && status < 600)
            s->status[status]++;
        if (status >= 200 && status < 400)
            s->ok++;
        else
            s->failed++;
    } else {
        s->failed++;
        if (status == -2)
            s->timeouts++;
        else
            s->transport++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Percentile over answered requests (called with the mutex held). */
static double stats_pct(const stats_t *s, double p)
{
    uint64_t n = s->count - s->transport - s->timeouts;
    if (n == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p * (double)n), seen = 0;
    if (want == 0)
        want = 1;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += s->hist[b];
        if (seen >= want) {
            double v = bucket_ms(b);
            return v < s->min_ms ? s->min_ms : v > s->max_ms ? s->max_ms : v;
        }
    }
    return s->max_ms;
}

/* ---------------------------------------------------------------- options */

typedef struct opts {
    char host[256];
    int port;
    int tls;
    char path[512];
    double rate;
    int concurrency;
    uint64_t duration_ns; /* 0: until interrupted */
    uint64_t max_requests;
    int timeout_ms;
    const char *body; /* NULL: a random order per request */
    int quiet;
    int json;
} opts_t;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: faultline-load [live] [options]\n"
        "       faultline-load synthetic --topology FILE [options]\n"
        "\n"
        "Drive traffic at the faultline demo, or synthetic traces at a receiver. Modes:\n"
        "  live       send POST /checkout (a random order each time) to the running demo at a\n"
        "             steady rate and concurrency; the default mode\n"
        "  synthetic  generate complete traces for a topology with scripted faults and send\n"
        "             them as OTLP/HTTP protobuf, fast-forwarded in event time or live\n"
        "\n"
        "live options:\n"
        "  --url URL           base URL of the checkout service (default http://127.0.0.1:5000)\n"
        "  --path PATH         request path (default /checkout)\n"
        "  --rate N            requests per second in total; 0 = as fast as possible\n"
        "                      (default 5)\n"
        "  --concurrency N     requests in flight at most, one connection each (default 4)\n"
        "  --duration D        how long to run: 30s, 5m, 1h, or seconds; 0 = until Ctrl-C\n"
        "                      (default 30s)\n"
        "  --requests N        stop after N requests (default: no limit)\n"
        "  --timeout MS        per-request timeout (default 10000)\n"
        "  --body JSON         send this body instead of a random order; '' sends none\n"
        "  --quiet             no progress line\n"
        "  --json              print the summary as JSON\n"
        "  --help              this text\n"
        "\n"
        "Progress goes to stderr; the summary (requests, status counts, latency p50/p95/p99)\n"
        "to stdout when the run ends or on SIGINT/SIGTERM.\n"
        "Exit status: 0 when at least one request got an HTTP answer, 1 when none did,\n"
        "2 on bad usage.\n"
        "\n");
    fl__load_synthetic_usage(f);
}

static int parse_url(const char *url, opts_t *o)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        o->port = 80;
        o->tls = 0;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        o->port = 443;
        o->tls = 1;
    } else {
        return -1;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he)
            return -1;
        hs = p + 1;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(o->host))
        return -1;
    memcpy(o->host, hs, (size_t)(he - hs));
    o->host[he - hs] = 0;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port < 1 || port > 65535)
            return -1;
        o->port = (int)port;
        p = e;
    }
    if (*p && strcmp(p, "/") != 0)
        return -1; /* a base URL: the path comes from --path */
    return 0;
}

/* ---------------------------------------------------------------- the run */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct run {
    const opts_t *o;
    stats_t stats;
    pthread_mutex_t sched_mu;
    uint64_t next_slot; /* monotonic ns of the next send */
    uint64_t interval_ns;
    uint64_t start_ns, end_ns;
    uint64_t issued;
    atomic_int stop;
    atomic_int inflight;
} run_t;

static uint64_t mono_ns(void)
{
    return fl_time_mono_ns();
}

static void sleep_until(uint64_t t)
{
    uint64_t now = mono_ns();
    while (now < t && !interrupted) {
        uint64_t d = t - now;
        if (d > 100000000ull)
            d = 100000000ull; /* wake up now and then to notice Ctrl-C */
        struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
        now = mono_ns();
    }
}

/* Claim the next send time; 0 when the run is over. */
static uint64_t claim_slot(run_t *r)
{
    uint64_t slot = 0;
    pthread_mutex_lock(&r->sched_mu);
    uint64_t now = mono_ns();
    if (!atomic_load(&r->stop) && !interrupted &&
        (r->o->max_requests == 0 || r->issued < r->o->max_requests)) {
        if (r->interval_ns == 0) {
            slot = now;
        } else {
            /* After a stall (all workers busy) do not fire a burst to catch up. */
            if (r->next_slot + 1000000000ull < now)
                r->next_slot = now;
            slot = r->next_slot;
            r->next_slot += r->interval_ns;
        }
        if (r->end_ns && slot >= r->end_ns)
            slot = 0;
        else
            r->issued++;
    }
    pthread_mutex_unlock(&r->sched_mu);
    return slot;
}

static const char *const skus[] = {"SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004",
                                   "SKU-1005", "SKU-1006", "SKU-1007", "SKU-1008"};
static const char *const methods[] = {"card", "card", "card", "paypal", "apple_pay"};

static void random_order(fl_buf_t *b, unsigned *seed)
{
    int n = 1 + (int)(rand_r(seed) % 3);
    fl_buf_puts(b, "{\"items\":[");
    for (int i = 0; i < n; i++)
        fl_buf_printf(b, "%s{\"sku\":\"%s\",\"quantity\":%d}", i ? "," : "", skus[rand_r(seed) % 8],
                      1 + (int)(rand_r(seed) % 2));
    fl_buf_printf(b, "],\"payment_method\":\"%s\"}", methods[rand_r(seed) % 5]);
}

static void *worker(void *arg)
{
    run_t *r = arg;
    const opts_t *o = r->o;
    fl_http_client_opts_t co;
    memset(&co, 0, sizeof(co));
    co.host = o->host;
    co.port = o->port;
    co.tls = o->tls;
    co.timeout_ms = o->timeout_ms;
    co.max_response = 1 << 20;
    fl_http_client_t *c = fl_http_client_new(&co);
    unsigned seed = (unsigned)(mono_ns() ^ (uintptr_t)&seed);
    fl_buf_t body;
    fl_buf_init(&body, 0);
    for (;;) {
        uint64_t slot = claim_slot(r);
        if (!slot)
            break;
        sleep_until(slot);
        if (interrupted)
            break;
        fl_buf_reset(&body);
        if (o->body)
            fl_buf_puts(&body, o->body);
        else
            random_order(&body, &seed);
        fl_net_header_t h[2] = {{"Content-Type", "application/json"},
                                {"User-Agent", "faultline-load/" FL_VERSION}};
        if (!c)
            c = fl_http_client_new(&co);
        atomic_fetch_add(&r->inflight, 1);
        uint64_t t0 = mono_ns();
        fl_http_response_t resp;
        int rc = c ? fl_http_client_request(c, "POST", o->path, h, 2, body.data, body.len, &resp)
                   : FL_ERR_IO;
        double ms = (double)(mono_ns() - t0) / 1e6;
        atomic_fetch_sub(&r->inflight, 1);
        int status;
        if (rc == FL_OK) {
            status = resp.status;
            fl_http_response_dispose(&resp);
        } else {
            status = rc == FL_ERR_TIMEOUT ? -2 : -1;
            fl_http_client_free(c); /* reconnect next time */
            c = NULL;
            if (status == -1 && r->interval_ns == 0)
                sleep_until(mono_ns() + 100000000ull); /* no hot loop on a dead server */
        }
        stats_add(&r->stats, status, ms);
    }
    fl_buf_dispose(&body);
    fl_http_client_free(c);
    return NULL;
}

static void progress(run_t *r, int tty, int final)
{
    stats_t *s = &r->stats;
    double el = (double)(mono_ns() - r->start_ns) / 1e9;
    pthread_mutex_lock(&s->mu);
    double p50 = stats_pct(s, 0.50), p99 = stats_pct(s, 0.99);
    uint64_t count = s->count, ok = s->ok, failed = s->failed;
    pthread_mutex_unlock(&s->mu);
    fprintf(stderr,
            "%s[%6.1fs] sent %llu  ok %llu  failed %llu  %.1f req/s  p50 %.1f ms  p99 %.1f ms"
            "  in flight %d%s",
            tty ? "\r\033[K" : "", el, (unsigned long long)count, (unsigned long long)ok,
            (unsigned long long)failed, el > 0 ? (double)count / el : 0.0, p50, p99,
            atomic_load(&r->inflight), tty && !final ? "" : "\n");
    fflush(stderr);
}

static void summary(run_t *r, FILE *f)
{
    stats_t *s = &r->stats;
    const opts_t *o = r->o;
    double el = (double)(mono_ns() - r->start_ns) / 1e9;
    pthread_mutex_lock(&s->mu);
    uint64_t answered = s->count - s->transport - s->timeouts;
    double mean = answered ? s->sum_ms / (double)answered : 0;
    if (o->json) {
        fl_buf_t b;
        fl_buf_init(&b, 0);
        fl_jw_t w;
        fl_jw_init(&w, &b);
        fl_jw_obj_begin(&w);
        fl_jw_key(&w, "mode");
        fl_jw_str(&w, "live");
        fl_jw_key(&w, "requests");
        fl_jw_uint(&w, s->count);
        fl_jw_key(&w, "ok");
        fl_jw_uint(&w, s->ok);
        fl_jw_key(&w, "failed");
        fl_jw_uint(&w, s->failed);
        fl_jw_key(&w, "transport_errors");
        fl_jw_uint(&w, s->transport);
        fl_jw_key(&w, "timeouts");
        fl_jw_uint(&w, s->timeouts);
        fl_jw_key(&w, "duration_s");
        fl_jw_double(&w, el);
        fl_jw_key(&w, "rate");
        fl_jw_double(&w, el > 0 ? (double)s->count / el : 0);
        fl_jw_key(&w, "status");
        fl_jw_obj_begin(&w);
        for (int i = 100; i < 600; i++) {
            if (!s->status[i])
                continue;
            char k[8];
            snprintf(k, sizeof(k), "%d", i);
            fl_jw_key(&w, k);
            fl_jw_uint(&w, s->status[i]);
        }
        fl_jw_obj_end(&w);
        fl_jw_key(&w, "latency_ms");
        fl_jw_obj_begin(&w);
        const char *names[] = {"min", "p50", "p95", "p99", "max", "mean"};
        double vals[] = {answered ? s->min_ms : 0, stats_pct(s, .5), stats_pct(s, .95),
                         stats_pct(s, .99),        s->max_ms,        mean};
        for (int i = 0; i < 6; i++) {
            fl_jw_key(&w, names[i]);
            fl_jw_double(&w, round(vals[i] * 1000) / 1000);
        }
        fl_jw_obj_end(&w);
        fl_jw_obj_end(&w);
        fprintf(f, "%s\n", (const char *)b.data);
        fl_buf_dispose(&b);
    } else {
        fprintf(f,
                "faultline-load live: %llu requests in %.1f s (%.1f req/s), concurrency %d, "
                "%s://%s:%d%s\n",
                (unsigned long long)s->count, el, el > 0 ? (double)s->count / el : 0.0,
                o->concurrency, o->tls ? "https" : "http", o->host, o->port, o->path);
        fprintf(f, "  status:");
        int any = 0;
        for (int i = 100; i < 600; i++) {
            if (s->status[i]) {
                fprintf(f, "%s %d x %llu", any ? "," : "", i, (unsigned long long)s->status[i]);
                any = 1;
            }
        }
        if (s->transport)
            fprintf(f, "%s transport error x %llu", any ? "," : "",
                    (unsigned long long)s->transport),
                any = 1;
        if (s->timeouts)
            fprintf(f, "%s timeout x %llu", any ? "," : "", (unsigned long long)s->timeouts),
                any = 1;
        fprintf(f, "%s\n", any ? "" : " none");
        fprintf(f, "  failed: %llu (%.1f %%)\n", (unsigned long long)s->failed,
                s->count ? 100.0 * (double)s->failed / (double)s->count : 0.0);
        fprintf(f, "  latency ms: min %.1f  p50 %.1f  p95 %.1f  p99 %.1f  max %.1f  mean %.1f\n",
                answered ? s->min_ms : 0, stats_pct(s, .5), stats_pct(s, .95), stats_pct(s, .99),
                s->max_ms, mean);
    }
    pthread_mutex_unlock(&s->mu);
    fflush(f);
}

static int run_live(const opts_t *o)
{
    run_t r;
    memset(&r, 0, sizeof(r));
    r.o = o;
    pthread_mutex_init(&r.stats.mu, NULL);
    pthread_mutex_init(&r.sched_mu, NULL);
    r.interval_ns = o->rate > 0 ? (uint64_t)(1e9 / o->rate) : 0;
    r.start_ns = mono_ns();
    r.next_slot = r.start_ns;
    r.end_ns = o->duration_ns ? r.start_ns + o->duration_ns : 0;

    pthread_t *th = calloc((size_t)o->concurrency, sizeof(*th));
    int started = 0;
    for (int i = 0; th && i < o->concurrency; i++)
        if (pthread_create(&th[i], NULL, worker, &r) == 0)
            started++;
    if (!started) {
        fprintf(stderr, "faultline-load: cannot start worker threads\n");
        free(th);
        return 1;
    }
    int tty = isatty(2);
    /* At most 2 progress lines per second on a terminal, one per 10 s in a log. */
    uint64_t every = tty ? 500000000ull : 10000000000ull, last = mono_ns();
    for (;;) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        uint64_t now = mono_ns();
        int done = interrupted || (r.end_ns && now >= r.end_ns);
        pthread_mutex_lock(&r.sched_mu);
        if (o->max_requests && r.issued >= o->max_requests)
            done = 1;
        pthread_mutex_unlock(&r.sched_mu);
        if (done)
            break;
        if (!o->quiet && now - last >= every) {
            progress(&r, tty, 0);
            last = now;
        }
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    if (!o->quiet)
        progress(&r, tty, 1);
    summary(&r, stdout);
    int answered = r.stats.count > r.stats.transport + r.stats.timeouts;
    pthread_mutex_destroy(&r.stats.mu);
    pthread_mutex_destroy(&r.sched_mu);
    return answered ? 0 : 1;
}

int main(int argc, char **argv)
{
    opts_t o;
    memset(&o, 0, sizeof(o));
    parse_url("http://127.0.0.1:5000", &o);
    snprintf(o.path, sizeof(o.path), "/checkout");
    o.rate = 5;
    o.concurrency = 4;
    o.duration_ns = 30000000000ull;
    o.timeout_ms = 10000;

    int i = 1;
    if (i < argc && strcmp(argv[i], "synthetic") == 0)
        return fl__load_synthetic_main(argc - 2, argv + 2);
    if (i < argc && argv[i][0] != '-') {
        if (strcmp(argv[i], "live") != 0) {
            fprintf(stderr,
                    "faultline-load: unknown mode '%s' (modes: live, synthetic; see --help)\n",
                    argv[i]);
            return 2;
        }
        i++;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--quiet") == 0) {
            o.quiet = 1;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "faultline-load: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *e = NULL;
        int ok = 1;
        if (strcmp(a, "--url") == 0) {
            ok = parse_url(v, &o) == 0;
        } else if (strcmp(a, "--path") == 0) {
            ok = v[0] == '/' && strlen(v) < sizeof(o.path);
            if (ok)
                snprintf(o.path, sizeof(o.path), "%s", v);
        } else if (strcmp(a, "--rate") == 0) {
            o.rate = strtod(v, &e);
            ok = e != v && !*e && o.rate >= 0 && o.rate <= 1e6;
        } else if (strcmp(a, "--concurrency") == 0) {
            long c = strtol(v, &e, 10);
            ok = e != v && !*e && c >= 1 && c <= 1024;
            o.concurrency = (int)c;
        } else if (strcmp(a, "--duration") == 0) {
            ok = fl_duration_parse(v, &o.duration_ns) == FL_OK;
        } else if (strcmp(a, "--requests") == 0) {
            unsigned long long n = strtoull(v, &e, 10);
            ok = e != v && !*e && v[0] != '-';
            o.max_requests = n;
        } else if (strcmp(a, "--timeout") == 0) {
            long t = strtol(v, &e, 10);
            ok = e != v && !*e && t >= 1 && t <= 3600000;
            o.timeout_ms = (int)t;
        } else if (strcmp(a, "--body") == 0) {
            o.body = v;
        } else {
            fprintf(stderr, "faultline-load: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "faultline-load: bad value '%s' for %s (see --help)\n", v, a);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return run_live(&o);
}
