/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-load synthetic: generate traces for a topology with scripted faults, send them as
 * OTLP/HTTP protobuf in event-time order (fast-forward or paced), write the ground truth. */
#include "load_int.h"
#include "synth.h"

#include <faultline/common.h>
#include <faultline/net.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_FAULTS 64
/* Spans are released in event-time windows of this width; a batch never mixes windows out of
 * order, so the receiver's watermark only moves forward. */
#define WINDOW_NS 1000000000ull
/* At max speed a batch also leaves once it holds this much event time, as an SDK's batch
 * processor exports at least every 5 s: one batch spanning many seconds, grouped by service,
 * would reach the receiver far out of event-time order. */
#define BATCH_EVENT_NS 2000000000ull

typedef struct syn_opts {
    const char *topology;
    fl_synth_fault_t faults[MAX_FAULTS];
    size_t n_faults;
    const char *start; /* NULL: default */
    uint64_t duration_ns;
    double speed; /* 0: max */
    char host[256];
    int port;
    char path[256];
    uint64_t seed;
    const char *truth;
    size_t batch_spans;
    int gzip;
    int quiet;
    int timeout_ms;
} syn_opts_t;

void fl__load_synthetic_usage(FILE *f)
{
    fprintf(
        f,
        "synthetic options (faultline-load synthetic --topology FILE [options]):\n"
        "  --topology FILE     services, operations, calls, latencies, error rates and entry\n"
        "                      rates as JSON (see tools/load/topologies/)\n"
        "  --fault SPEC        a scripted fault, repeatable:\n"
        "                      kind=latency|error|timeout|traffic|drop|surge,\n"
        "                      target=SERVICE[.OPERATION], start=OFFSET|RFC3339, duration=D,\n"
        "                      factor=K (latency x K, default 5; traffic x K: drop 0, surge 10),\n"
        "                      rate=P (error probability, default 1), deadline=D (timeout:\n"
        "                      when callers give up, default 2s)\n"
        "  --start TIME        event time of the first request: RFC 3339, unix nanos, now,\n"
        "                      now-1h (default: now - duration, or now with --speed 1)\n"
        "  --duration D        event time to cover (default 40m)\n"
        "  --speed N|max       event seconds per wall second; max = as fast as the receiver\n"
        "                      takes it (default max)\n"
        "  --endpoint URL      OTLP/HTTP receiver (default http://127.0.0.1:4318)\n"
        "  --seed N            random seed; the same seed gives the same traces (default 1)\n"
        "  --truth FILE        write the ground truth (faults, targets, start/end) as JSON\n"
        "  --batch-spans N     spans per export request at most (default 1000); at max speed\n"
        "                      a request also leaves once it holds 2 s of event time\n"
        "  --gzip              compress requests\n"
        "  --timeout MS        per-request timeout (default 10000)\n"
        "  --quiet             no progress line\n"
        "Requests answered 429/502/503/504 are retried (honouring Retry-After); the run fails\n"
        "(exit 1) when a batch is refused or the receiver stays unreachable for 60 s.\n");
}

/* ---------------------------------------------------------------- sending */

static volatile sig_atomic_t syn_interrupted;

static void syn_on_signal(int sig)
{
    (void)sig;
    syn_interrupted = 1;
}

typedef struct sender {
    const syn_opts_t *o;
    fl_http_client_t *c;
    uint64_t requests, retries, bytes, spans;
} sender_t;

static uint8_t *gzip_bytes(const uint8_t *in, size_t n, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    uLong bound = deflateBound(&zs, (uLong)n) + 32;
    uint8_t *out = malloc(bound);
    if (out) {
        zs.next_in = (Bytef *)in;
        zs.avail_in = (uInt)n;
        zs.next_out = out;
        zs.avail_out = (uInt)bound;
        if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
            free(out);
            out = NULL;
        }
        *outlen = zs.total_out;
    }
    deflateEnd(&zs);
    return out;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* POST one body; 0 when accepted, -1 when refused or the receiver stays away. */
static int send_body(sender_t *s, const uint8_t *body, size_t len, size_t nspans)
{
    const syn_opts_t *o = s->o;
    uint64_t first_fail = 0, backoff = 100;
    for (;;) {
        if (!s->c) {
            fl_http_client_opts_t co;
            memset(&co, 0, sizeof(co));
            co.host = o->host;
            co.port = o->port;
            co.timeout_ms = o->timeout_ms;
            co.max_response = 1 << 20;
            s->c = fl_http_client_new(&co);
            if (!s->c)
                return -1;
        }
        fl_net_header_t h[3];
        size_t nh = 0;
        h[nh++] = (fl_net_header_t){"Content-Type", "application/x-protobuf"};
        h[nh++] = (fl_net_header_t){"User-Agent", "faultline-load/" FL_VERSION};
        if (o->gzip)
            h[nh++] = (fl_net_header_t){"Content-Encoding", "gzip"};
        fl_http_response_t resp;
        s->requests++;
        int rc = fl_http_client_request(s->c, "POST", o->path, h, nh, body, len, &resp);
        int status = -1;
        int64_t ra_ms = -1;
        if (rc == FL_OK) {
            status = resp.status;
            char ra[64];
            const char *v = fl_http_response_header(&resp, "retry-after", ra, sizeof(ra));
            if (v && *v >= '0' && *v <= '9')
                ra_ms = strtoll(v, NULL, 10) * 1000;
            if (status >= 400 && status != 429 && status < 500)
                fprintf(stderr, "\nfaultline-load: receiver refused a batch: HTTP %d %.*s\n",
                        status, (int)(resp.body.len > 300 ? 300 : resp.body.len),
                        resp.body.data ? (const char *)resp.body.data : "");
            fl_http_response_dispose(&resp);
        } else {
            fl_http_client_free(s->c);
            s->c = NULL;
        }
        if (status >= 200 && status < 300) {
            s->bytes += len;
            s->spans += nspans;
            return 0;
        }
        int retry = status < 0 || status == 429 || status == 502 || status == 503 || status == 504;
        if (!retry || syn_interrupted)
            return -1;
        uint64_t now = fl_time_mono_ns();
        if (!first_fail)
            first_fail = now;
        if (now - first_fail > 60000000000ull) {
            fprintf(stderr, "\nfaultline-load: receiver %s:%d unavailable for 60 s (last: %d)\n",
                    o->host, o->port, status);
            return -1;
        }
        s->retries++;
        uint64_t wait = ra_ms >= 0 ? (uint64_t)(ra_ms < 50 ? 50 : ra_ms) : backoff;
        if (wait > 5000)
            wait = 5000;
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
        sleep_ms(wait);
    }
}

static int send_spans(sender_t *s, const fl_synth_topo_t *t, const fl_synth_span_t *spans, size_t n)
{
    size_t len = 0;
    uint8_t *raw = fl_synth_encode(t, spans, n, &len);
    if (!raw) {
        fprintf(stderr, "faultline-load: out of memory encoding %zu spans\n", n);
        return -1;
    }
    uint8_t *body = raw;
    if (s->o->gzip) {
        size_t zl = 0;
        body = gzip_bytes(raw, len, &zl);
        free(raw);
        raw = NULL;
        len = zl;
        if (!body)
            return -1;
    }
    int rc = send_body(s, body, len, n);
    free(body);
    return rc;
}

/* ---------------------------------------------------------------- truth */

static const char *kind_name(int k)
{
    switch (k) {
    case FL_SYNTH_FAULT_LATENCY:
        return "latency";
    case FL_SYNTH_FAULT_ERROR:
        return "error";
    case FL_SYNTH_FAULT_TIMEOUT:
        return "timeout";
    default:
        return "traffic";
    }
}

static int write_truth(const syn_opts_t *o, const fl_synth_gen_t *g, uint64_t start, uint64_t end)
{
    fl_buf_t b;
    fl_buf_init(&b, 0);
    fl_jw_t w;
    fl_jw_init(&w, &b);
    char ts[40];
    fl_jw_obj_begin(&w);
    fl_jw_key(&w, "topology");
    fl_jw_str(&w, o->topology);
    fl_jw_key(&w, "seed");
    fl_jw_uint(&w, o->seed);
    fl_jw_key(&w, "start");
    fl_jw_str(&w, fl_time_format(start, ts));
    fl_jw_key(&w, "start_unix_nano");
    fl_jw_uint(&w, start);
    fl_jw_key(&w, "end");
    fl_jw_str(&w, fl_time_format(end, ts));
    fl_jw_key(&w, "end_unix_nano");
    fl_jw_uint(&w, end);
    fl_jw_key(&w, "faults");
    fl_jw_arr_begin(&w);
    for (size_t i = 0; i < o->n_faults; i++) {
        const fl_synth_fault_t *f = fl_synth_gen_fault(g, i);
        fl_jw_obj_begin(&w);
        fl_jw_key(&w, "kind");
        fl_jw_str(&w, kind_name(f->kind));
        fl_jw_key(&w, "target");
        char tgt[400];
        snprintf(tgt, sizeof(tgt), "%s%s%s", f->service, f->operation[0] ? "." : "", f->operation);
        fl_jw_str(&w, tgt);
        fl_jw_key(&w, "service");
        fl_jw_str(&w, f->service);
        fl_jw_key(&w, "operation");
        fl_jw_str(&w, f->operation[0] ? f->operation : NULL);
        if (f->kind == FL_SYNTH_FAULT_LATENCY || f->kind == FL_SYNTH_FAULT_TRAFFIC) {
            fl_jw_key(&w, "factor");
            fl_jw_double(&w, f->factor);
        }
        if (f->kind == FL_SYNTH_FAULT_ERROR) {
            fl_jw_key(&w, "rate");
            fl_jw_double(&w, f->rate);
        }
        if (f->kind == FL_SYNTH_FAULT_TIMEOUT) {
            fl_jw_key(&w, "deadline_ms");
            fl_jw_uint(&w, f->deadline_ns / 1000000ull);
        }
        fl_jw_key(&w, "start");
        fl_jw_str(&w, fl_time_format(f->start_ns, ts));
        fl_jw_key(&w, "start_unix_nano");
        fl_jw_uint(&w, f->start_ns);
        fl_jw_key(&w, "end");
        fl_jw_str(&w, fl_time_format(f->start_ns + f->duration_ns, ts));
        fl_jw_key(&w, "end_unix_nano");
        fl_jw_uint(&w, f->start_ns + f->duration_ns);
        fl_jw_obj_end(&w);
    }
    fl_jw_arr_end(&w);
    fl_jw_obj_end(&w);
    fl_buf_putc(&b, '\n');
    FILE *fp = fopen(o->truth, "w");
    int rc = -1;
    if (fp) {
        rc = fwrite(b.data, 1, b.len, fp) == b.len ? 0 : -1;
        if (fclose(fp) != 0)
            rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "faultline-load: cannot write %s\n", o->truth);
    fl_buf_dispose(&b);
    return rc;
}

/* ---------------------------------------------------------------- arguments */

static int parse_endpoint(const char *url, syn_opts_t *o)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *p = url + 7, *he = p + strcspn(p, ":/");
    if (he == p || (size_t)(he - p) >= sizeof(o->host))
        return -1;
    memcpy(o->host, p, (size_t)(he - p));
    o->host[he - p] = 0;
    o->port = 80;
    p = he;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (e == p + 1 || port < 1 || port > 65535)
            return -1;
        o->port = (int)port;
        p = e;
    }
    if (*p == 0 || strcmp(p, "/") == 0)
        snprintf(o->path, sizeof(o->path), "/v1/traces");
    else if (*p == '/' && strlen(p) < sizeof(o->path))
        snprintf(o->path, sizeof(o->path), "%s", p);
    else
        return -1;
    return 0;
}

/* "now", "now-1h", RFC 3339 or unix nanos. */
static int parse_start(const char *s, uint64_t *out)
{
    if (strncmp(s, "now", 3) == 0) {
        uint64_t now = fl_time_now_ns(), d = 0;
        if (s[3] == 0) {
            *out = now;
            return 0;
        }
        if (s[3] != '-' || fl_duration_parse(s + 4, &d) != FL_OK || d > now)
            return -1;
        *out = now - d;
        return 0;
    }
    return fl_time_parse(s, out) == FL_OK ? 0 : -1;
}

int fl__load_synthetic_main(int argc, char **argv)
{
    static syn_opts_t o;
    memset(&o, 0, sizeof(o));
    o.duration_ns = 40ull * 60 * 1000000000ull;
    o.seed = 1;
    o.batch_spans = 1000;
    o.timeout_ms = 10000;
    parse_endpoint("http://127.0.0.1:4318", &o);
    char err[512];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fl__load_synthetic_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--gzip") == 0) {
            o.gzip = 1;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o.quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "faultline-load: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *e = NULL;
        int ok = 1;
        if (strcmp(a, "--topology") == 0) {
            o.topology = v;
        } else if (strcmp(a, "--fault") == 0) {
            if (o.n_faults >= MAX_FAULTS) {
                fprintf(stderr, "faultline-load: at most %d faults\n", MAX_FAULTS);
                return 2;
            }
            if (fl_synth_fault_parse(v, &o.faults[o.n_faults], err, sizeof(err)) != 0) {
                fprintf(stderr, "faultline-load: %s\n", err);
                return 2;
            }
            o.n_faults++;
        } else if (strcmp(a, "--start") == 0) {
            uint64_t tmp;
            ok = parse_start(v, &tmp) == 0;
            o.start = v;
        } else if (strcmp(a, "--duration") == 0) {
            ok = fl_duration_parse(v, &o.duration_ns) == FL_OK && o.duration_ns > 0;
        } else if (strcmp(a, "--speed") == 0) {
            if (strcmp(v, "max") == 0) {
                o.speed = 0;
            } else {
                o.speed = strtod(v, &e);
                ok = e != v && !*e && o.speed > 0 && o.speed <= 1e9;
            }
        } else if (strcmp(a, "--endpoint") == 0) {
            ok = parse_endpoint(v, &o) == 0;
        } else if (strcmp(a, "--seed") == 0) {
            o.seed = strtoull(v, &e, 10);
            ok = e != v && !*e && v[0] != '-';
        } else if (strcmp(a, "--truth") == 0) {
            o.truth = v;
        } else if (strcmp(a, "--batch-spans") == 0) {
            long n = strtol(v, &e, 10);
            ok = e != v && !*e && n >= 1 && n <= 1000000;
            o.batch_spans = (size_t)n;
        } else if (strcmp(a, "--timeout") == 0) {
            long n = strtol(v, &e, 10);
            ok = e != v && !*e && n >= 1 && n <= 3600000;
            o.timeout_ms = (int)n;
        } else {
            fprintf(stderr, "faultline-load: unknown synthetic option %s (see --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "faultline-load: bad value '%s' for %s (see --help)\n", v, a);
            return 2;
        }
    }
    if (!o.topology) {
        fprintf(stderr, "faultline-load: synthetic needs --topology FILE (see --help)\n");
        return 2;
    }
    uint64_t start;
    if (o.start)
        parse_start(o.start, &start);
    else
        start = o.speed == 1 ? fl_time_now_ns() : fl_time_now_ns() - o.duration_ns;
    fl_synth_topo_t *t = fl_synth_topo_load(o.topology, err, sizeof(err));
    if (!t) {
        fprintf(stderr, "faultline-load: %s: %s\n", o.topology, err);
        return 2;
    }
    fl_synth_gen_t *g =
        fl_synth_gen_new(t, o.faults, o.n_faults, start, o.duration_ns, o.seed, err, sizeof(err));
    if (!g) {
        fprintf(stderr, "faultline-load: %s\n", err);
        fl_synth_topo_free(t);
        return 2;
    }
    uint64_t end = start + o.duration_ns;
    if (o.truth && write_truth(&o, g, start, end) != 0) {
        fl_synth_gen_free(g);
        fl_synth_topo_free(t);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = syn_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sender_t s = {.o = &o};
    fl_synth_span_t *batch = malloc(o.batch_spans * sizeof(*batch));
    size_t nb = 0;
    int rc = batch ? 0 : 1;
    int tty = isatty(2);
    uint64_t wall0 = fl_time_mono_ns(), last_progress = wall0;
    uint64_t ev = start, batch_ev0 = 0;
    while (rc == 0 && !fl_synth_gen_done(g) && !syn_interrupted) {
        ev = ev >= end ? UINT64_MAX : ev + WINDOW_NS;
        if (o.speed > 0) {
            uint64_t ev_done = (ev == UINT64_MAX ? end : ev) - start;
            uint64_t due = wall0 + (uint64_t)((double)ev_done / o.speed);
            while (fl_time_mono_ns() < due && !syn_interrupted) {
                uint64_t left = (due - fl_time_mono_ns()) / 1000000ull;
                sleep_ms(left > 200 ? 200 : left + 1);
            }
        }
        const fl_synth_span_t *spans;
        size_t n = fl_synth_gen_advance(g, ev, &spans);
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (!nb)
                batch_ev0 = ev;
            batch[nb++] = spans[i];
            if (nb == o.batch_spans) {
                rc = send_spans(&s, t, batch, nb);
                nb = 0;
            }
        }
        /* Paced: a window's spans leave once wall time x speed has reached its end (so live
         * runs never send spans from the future), all of them at once. */
        if (rc == 0 && nb && (o.speed > 0 || ev - batch_ev0 >= BATCH_EVENT_NS)) {
            rc = send_spans(&s, t, batch, nb);
            nb = 0;
        }
        uint64_t now = fl_time_mono_ns();
        if (!o.quiet && now - last_progress >= (tty ? 500000000ull : 5000000000ull)) {
            fl_synth_stats_t st;
            fl_synth_gen_stats(g, &st);
            char ts[40];
            fprintf(stderr,
                    "%s[%6.1fs] event %s  traces %llu  spans sent %llu  requests %llu"
                    "  retries %llu%s",
                    tty ? "\r\033[K" : "", (double)(now - wall0) / 1e9,
                    fl_time_format(ev == UINT64_MAX ? end : ev, ts), (unsigned long long)st.traces,
                    (unsigned long long)s.spans, (unsigned long long)s.requests,
                    (unsigned long long)s.retries, tty ? "" : "\n");
            last_progress = now;
        }
    }
    if (rc == 0 && nb)
        rc = send_spans(&s, t, batch, nb);
    if (!o.quiet && tty)
        fprintf(stderr, "\n");
    fl_synth_stats_t st;
    fl_synth_gen_stats(g, &st);
    double wall = (double)(fl_time_mono_ns() - wall0) / 1e9;
    char t0[40], t1[40];
    printf("faultline-load synthetic: %llu traces (%llu with errors, %llu timeouts), %llu spans "
           "generated, %llu sent in %llu requests (%llu retries, %.1f MB) in %.1f s; "
           "event time %s .. %s%s\n",
           (unsigned long long)st.traces, (unsigned long long)st.error_traces,
           (unsigned long long)st.timeouts, (unsigned long long)st.spans,
           (unsigned long long)s.spans, (unsigned long long)s.requests,
           (unsigned long long)s.retries, (double)s.bytes / 1e6, wall, fl_time_format(start, t0),
           fl_time_format(end, t1), syn_interrupted ? " (interrupted)" : "");
    fflush(stdout);
    free(batch);
    fl_http_client_free(s.c);
    fl_synth_gen_free(g);
    fl_synth_topo_free(t);
    return rc == 0 && !syn_interrupted ? 0 : 1;
}
