/* SPDX-License-Identifier: Apache-2.0 */
/* The analysis side of a closed bucket: baselines (EWMA mean/variance trained only on
 * normal buckets, 5-sigma outliers excluded, hour-of-day rate profiles), the detectors
 * (latency, error, timeout, traffic, new error type) and the k-of-n anomaly lifecycle. */
#include "analysis_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    MET_MEAN = 1,
    MET_P95,
    MET_ERR_RATE,
    MET_NO_SUCCESS,
    MET_DEADLINE,
    MET_UNANSWERED,
    MET_RATE,
    MET_ERROR_TYPE
};
enum { DIR_NONE = 0, DIR_DROP = 1, DIR_SURGE = 2 };

#define OUTLIER_SIGMA 5.0
#define SHIFT_ACCEPT 30 /* consecutive outliers after which a level shift is learned */
#define P95_MIN_SAMPLES 20

/* One detector's verdict on one bucket of one series. */
typedef struct ev {
    int held, severe;
    uint8_t metric, direction, severity;
    uint32_t etype;
    int64_t start_b; /* where the condition began, when that is before this bucket */
    double observed, baseline, ratio, z, peak;
    uint64_t samples;
    int set_start;
} ev_t;

int fl__trusted(const fl_analysis_t *a, const fl__sstate_t *st)
{
    return st->trained_buckets >= a->o.min_buckets && st->trained_requests >= a->o.min_requests;
}

static int metric_trusted(const fl_analysis_t *a, const fl__metric_t *m)
{
    return m->e.n >= a->o.min_buckets;
}

/* Analysis state grows with the series table; only run (under the write lock) grows it. */
int fl__state_reserve(fl_analysis_t *a, uint32_t n)
{
    if (n <= a->st_n)
        return FL_OK;
    if (n > a->st_cap) {
        uint32_t cap = a->st_cap ? a->st_cap : 256;
        while (cap < n)
            cap *= 2;
        fl__sstate_t *p = realloc(a->st, (size_t)cap * sizeof(*p));
        if (!p)
            return FL_ERR_NOMEM;
        a->st = p;
        a->st_cap = cap;
    }
    for (uint32_t i = a->st_n; i < n; i++) {
        fl__sstate_t *st = &a->st[i];
        memset(st, 0, sizeof(*st));
        st->first_trained_b = st->last_trained_b = -1;
        for (int d = 0; d < FL__D_N; d++)
            st->det[d].open = FL__NONE;
        st->cand = FL__NONE;
    }
    a->st_n = n;
    return FL_OK;
}

static uint64_t buckets_per_hour(const fl_analysis_t *a)
{
    uint64_t n = 3600000000000ull / a->o.bucket_ns;
    return n ? n : 1;
}

static int hour_of(const fl_analysis_t *a, int64_t b)
{
    return (int)((fl__bstart(a, b) / 3600000000000ull) % 24);
}

double fl__baseline_rate(const fl_analysis_t *a, const fl__sstate_t *st, int64_t b, double *sd,
                         int *hourly)
{
    double lam = st->m[FL__M_RATE].e.mean;
    *sd = fl_ewma_sd(&st->m[FL__M_RATE].e);
    *hourly = 0;
    const fl__profile_t *p = st->profile;
    if (p && b >= p->first_b && (uint64_t)(b - p->first_b) >= 48 * buckets_per_hour(a)) {
        int h = hour_of(a, b);
        if (p->n[h] >= buckets_per_hour(a)) {
            lam = p->rate_mean[h];
            *sd = p->rate_var[h] > 0 ? sqrt(p->rate_var[h]) : 0;
            *hourly = 1;
        }
    }
    return lam;
}

/* ---------------------------------------------------------------- tests */

static uint8_t latency_severity(double ratio, double observed_ns)
{
    if (ratio > 20 || observed_ns > 10e9)
        return FL_SEV_CRITICAL;
    if (ratio >= 10)
        return FL_SEV_HIGH;
    if (ratio >= 5)
        return FL_SEV_MEDIUM;
    return FL_SEV_LOW;
}

/* One latency statistic against its baseline: the ratio, a z-score of ln(value) against the
 * baseline's bucket-to-bucket spread of ln(value) (scaled up when this bucket has fewer
 * requests than usual; floored at 0.05, i.e. 5 %, so a very stable series does not turn
 * every wobble into a huge z), a minimum absolute rise, and at least two requests
 * individually beyond threshold x baseline. */
static void lat_stat(const fl_analysis_t *a, const fl__sstate_t *st, const fl_sketch_t *sk, int mi,
                     uint8_t metric, double obs, int aux, ev_t *ev)
{
    const fl__metric_t *m = &st->m[mi];
    if (!metric_trusted(a, m))
        return;
    double T = a->o.anomaly_threshold, base = fl__lat_base(m);
    if (base <= 0)
        return;
    double n = (double)sk->count, ntyp = st->ew_cnt > 1 ? st->ew_cnt : 1;
    double scale = ntyp > n ? sqrt(ntyp / n) : 1.0;
    double sd = fl_ewma_sd(&m->e) * scale;
    if (sd < 0.05)
        sd = 0.05;
    double ratio = obs / base, z = (fl__lat_ln(obs) - m->e.mean) / sd;
    uint64_t slow = fl_sketch_count_above(sk, (uint64_t)(T * base));
    int sig;
    if (metric == MET_MEAN) {
        /* Also against this bucket's own spread (a t-test in spirit): one huge request
         * raises the mean, but it raises the standard error as much. */
        double se2 = fl__sketch_var(sk) / n, bsd = base * sd;
        double zw = (obs - base) / sqrt(se2 + bsd * bsd);
        if (zw < z)
            z = zw;
        sig = z >= a->o.z_threshold && slow >= 2;
    } else {
        /* p95: more requests beyond threshold x the usual p95 than the usual share of such
         * requests explains (binomial). Heavy-tailed endpoints have a larger usual share. */
        double q0 = st->ew_cnt > 0 ? st->ew_slow[aux] / st->ew_cnt : 0;
        sig = z >= a->o.z_threshold && slow >= 2 &&
              fl__binom_sf(slow, sk->count, q0 > 0.002 ? q0 : 0.002) < 1e-3;
    }
    int held = ratio >= T && sig && obs - base >= a->o.min_latency_delta_ms * 1e6;
    /* Prefer a holding statistic, then the larger ratio. */
    if ((held && !ev->held) || (held == ev->held && ratio > ev->ratio)) {
        ev->held = held;
        ev->metric = metric;
        ev->observed = obs / 1e6;
        ev->baseline = base / 1e6;
        ev->ratio = ratio;
        ev->z = z;
        ev->peak = ratio;
        ev->samples = sk->count;
        ev->severity = latency_severity(ratio, obs);
        ev->severe = held && ev->severity >= FL_SEV_HIGH && n >= 2.0 * a->o.min_samples;
    }
}

static void lat_test(const fl_analysis_t *a, const fl__sstate_t *st, const fl_sketch_t *sk,
                     int mi_mean, int mi_p95, ev_t *ev)
{
    if (sk->count < a->o.min_samples || !fl__trusted(a, st))
        return;
    int aux = mi_mean == FL__M_AUX_MEAN;
    lat_stat(a, st, sk, mi_mean, MET_MEAN, fl_sketch_mean_ns(sk), aux, ev);
    if (sk->count >= P95_MIN_SAMPLES)
        lat_stat(a, st, sk, mi_p95, MET_P95, fl_sketch_quantile_ns(sk, 0.95), aux, ev);
}

static uint8_t error_severity(double rate)
{
    if (rate >= 0.8)
        return FL_SEV_CRITICAL;
    if (rate >= 0.5)
        return FL_SEV_HIGH;
    if (rate >= 0.3)
        return FL_SEV_MEDIUM;
    return FL_SEV_LOW;
}

static double neglog10(double p)
{
    return p <= 1e-300 ? 300 : -log10(p);
}

/* Error rate: above the threshold and significant against the normal rate (binomial), or,
 * for an endpoint that normally fails often, a significant rise over its own rate. */
static void err_test(const fl_analysis_t *a, const fl__sstate_t *st, uint64_t n, uint64_t e,
                     ev_t *ev)
{
    if (n < a->o.min_samples)
        return;
    double thr = a->o.error_rate_threshold, rate = (double)e / (double)n;
    double p0 = fl__trusted(a, st) && st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : -1;
    double pv;
    int held;
    /* An endpoint that normally fails a lot is judged against its own rate. */
    if (p0 >= thr / 2) {
        pv = fl__binom_sf(e, n, p0);
        held = pv < 1e-4 && rate >= p0 + 0.1 && rate >= 1.5 * p0;
    } else {
        pv = fl__binom_sf(e, n, p0 > 0.02 ? p0 : 0.02);
        held = rate > thr && e >= 2 && pv < 1e-3;
    }
    ev->held = held;
    ev->metric = MET_ERR_RATE;
    ev->observed = rate;
    ev->baseline = p0 > 0 ? p0 : 0;
    ev->ratio = p0 > 0 ? rate / p0 : 0;
    ev->z = neglog10(pv);
    ev->peak = rate;
    ev->samples = n;
    ev->severity = error_severity(rate);
    ev->severe = held && ev->severity >= FL_SEV_HIGH && n >= 10 && e >= 5;
}

/* Timeouts: nothing succeeded and the failures look like timeouts (hints, durations piled
 * at one deadline, or a callee that stopped answering), or durations pile up at a deadline
 * far above normal, or calls to a known callee go unanswered. */
static void timeout_test(const fl_analysis_t *a, const fl__sstate_t *st, const fl__acc_t *c,
                         int is_edge, ev_t *ev)
{
    uint64_t n = c->count;
    if (n < a->o.min_samples)
        return;
    uint64_t succ = n - (c->errors < n ? c->errors : n), mx = c->lat.max;
    uint64_t pile = mx ? fl_sketch_count_above(&c->lat, mx - mx / 33) : 0;
    const fl__metric_t *m95 = &st->m[FL__M_LAT_P95];
    double base95 = metric_trusted(a, m95) ? fl__lat_base(m95) : 0;
    int far = base95 > 0 ? (double)mx >= a->o.anomaly_threshold * base95 : mx >= 1000000000ull;
    uint64_t need = (uint64_t)ceil(0.3 * (double)n);
    /* Piled at one duration, mostly failing, and far above normal: requests cut off by a
     * deadline. Healthy slow requests spread out and succeed. */
    int deadline = pile >= (need > 3 ? need : 3) && c->errors * 2 >= pile && far;
    int hinted = c->timeouts >= 3 && c->timeouts * 2 >= n;
    double unans_base = st->ew_cnt > 0 ? st->ew_unans / st->ew_cnt : 0;
    int unans = is_edge && fl__trusted(a, st) && c->unanswered >= 3 && c->unanswered * 2 >= n &&
                unans_base < 0.1;
    double p0 = st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : 0;
    ev->samples = n;
    if (succ == 0 && (hinted || deadline || unans)) {
        ev->held = ev->severe = 1;
        ev->metric = MET_NO_SUCCESS;
        ev->observed = 1.0;
        ev->baseline = p0;
        ev->ratio = p0 > 0 ? 1.0 / p0 : 0;
        ev->z = neglog10(fl__binom_sf(n, n, p0 > 0.02 ? p0 : 0.02));
        ev->severity = FL_SEV_CRITICAL;
        ev->peak = 2.0;
    } else if (unans) {
        double f = (double)c->unanswered / (double)n;
        ev->held = 1;
        ev->severe = c->unanswered == n;
        ev->metric = MET_UNANSWERED;
        ev->observed = f;
        ev->baseline = unans_base;
        ev->ratio = unans_base > 0 ? f / unans_base : 0;
        ev->z = neglog10(fl__binom_sf(c->unanswered, n, unans_base > 0.01 ? unans_base : 0.01));
        ev->severity = FL_SEV_HIGH;
        ev->peak = 1.0 + f;
    } else if (deadline) {
        ev->held = 1;
        ev->metric = MET_DEADLINE;
        ev->observed = (double)mx / 1e6;
        ev->baseline = base95 / 1e6;
        ev->ratio = base95 > 0 ? (double)mx / base95 : 0;
        ev->z = neglog10(fl__binom_sf(pile, n, 0.05));
        ev->severity = FL_SEV_HIGH;
        ev->peak = (double)pile / (double)n;
    }
}

/* Traffic against the learned rate (the hour-of-day profile once two days exist): a drop
 * below 20 % or a surge above 10x, significant under a Poisson model and by z-score, and
 * only while the rest of the system still reports. */
static void traffic_test(const fl_analysis_t *a, const fl__sstate_t *st, int64_t b, uint64_t n,
                         uint64_t global, ev_t *ev)
{
    if (!fl__trusted(a, st) || global <= n)
        return;
    double sd;
    int hourly;
    double lam = fl__baseline_rate(a, st, b, &sd, &hourly);
    double sdd = sd > sqrt(lam) ? sd : sqrt(lam), x = (double)n;
    double secs = (double)a->o.bucket_ns / 1e9;
    /* Below 5 requests per bucket even total silence is not significant. */
    if (lam >= 5 && x <= 0.2 * lam) {
        double pv = fl__poisson_cdf(n, lam), z = (lam - x) / sdd;
        ev->held = pv < 1e-3 && z >= a->o.z_threshold;
        ev->direction = DIR_DROP;
        ev->severity = (n == 0 || x <= 0.05 * lam) ? FL_SEV_HIGH : FL_SEV_MEDIUM;
        ev->z = z;
        ev->peak = lam / (x + 1);
    } else if (lam > 0 && x >= 10 * lam && n >= 20) {
        double pv = fl__poisson_sf(n, lam), z = (x - lam) / sdd;
        ev->held = pv < 1e-4 && z >= a->o.z_threshold;
        ev->direction = DIR_SURGE;
        ev->severity = x >= 20 * lam ? FL_SEV_HIGH : FL_SEV_MEDIUM;
        ev->z = z;
        ev->peak = x / lam;
    } else {
        return;
    }
    ev->metric = MET_RATE;
    ev->observed = x / secs;
    ev->baseline = lam / secs;
    ev->ratio = lam > 0 ? x / lam : 0;
    ev->samples = n;
}

/* ---------------------------------------------------------------- anomalies */

static const char *metric_name(uint8_t m)
{
    static const char *names[] = {"",         "mean",       "p95",  "error_rate", "no_success",
                                  "deadline", "unanswered", "rate", "error_type"};
    return m < sizeof(names) / sizeof(names[0]) ? names[m] : "";
}

static void add_traces(fl__anom_t *x, const fl__example_t *ex)
{
    for (int i = 0; i < FL__MAX_EX && x->n_traces < FL_ANOMALY_MAX_TRACES; i++) {
        if (!ex[i].dur_ns)
            continue;
        int dup = 0;
        for (int j = 0; j < x->n_traces; j++)
            dup |= memcmp(x->traces[j], ex[i].trace_id, 16) == 0;
        if (!dup)
            memcpy(x->traces[x->n_traces++], ex[i].trace_id, 16);
    }
}

static void evidence(fl__anom_t *x, const ev_t *ev)
{
    x->observed = ev->observed;
    x->baseline = ev->baseline;
    x->ratio = ev->ratio;
    x->z = ev->z;
    x->peak = ev->peak;
    x->metric = ev->metric;
    if (ev->direction)
        x->direction = ev->direction;
}

/* Remember what this run changed (once per anomaly) for the run result. */
static void note_change(fl__runctx_t *ctx, fl__anom_t *x, uint32_t idx)
{
    if (x->mark == ctx->mark)
        return;
    x->mark = ctx->mark;
    if (ctx->n == ctx->cap) {
        uint32_t cap = ctx->cap ? ctx->cap * 2 : 32;
        uint32_t *p = realloc(ctx->changed, (size_t)cap * sizeof(*p));
        if (!p)
            return;
        ctx->changed = p;
        ctx->cap = cap;
    }
    ctx->changed[ctx->n++] = idx;
}

/* Ids come from content, not from a counter: series ids and evaluation order depend on
 * arrival order, the names and the start bucket do not. */
static uint64_t anom_id(const fl_analysis_t *a, const fl__series_t *ser, const fl__anom_t *x)
{
    fl_buf_t b;
    fl_buf_init(&b, 0);
    fl_buf_printf(&b, "%u|%u|%s|%s|%s|%s|%lld|%s", x->kind, x->subject, fl__s(a, ser->svc),
                  fl__s(a, ser->op), fl__s(a, ser->caller_svc), fl__s(a, ser->caller_op),
                  (long long)x->start_b, x->etype == FL__NONE ? "" : fl__s(a, x->etype));
    uint64_t h = fl_hash64(b.data, b.len, 0xa70a1);
    fl_buf_dispose(&b);
    return h >> 1; /* 63 bits: survives JSON readers that parse into int64 */
}

static const uint8_t det_kind[FL__D_N] = {FL_ANOMALY_LATENCY, FL_ANOMALY_LATENCY,
                                          FL_ANOMALY_ERROR,   FL_ANOMALY_TIMEOUT,
                                          FL_ANOMALY_TRAFFIC, FL_ANOMALY_NEW_ERROR_TYPE};

static uint8_t det_subject(const fl__series_t *ser, int d)
{
    int edge = ser->type == FL__SER_EDGE;
    if (d == FL__D_AUX)
        return edge ? FL_SUBJECT_EDGE_GAP : FL_SUBJECT_SELF_TIME;
    return edge ? FL_SUBJECT_EDGE : FL_SUBJECT_ENDPOINT;
}

/* Forget the learned values so the series relearns from scratch (after an anomaly that
 * lasted a whole baseline window: that state is the new normal). */
static void reset_baseline(fl__sstate_t *st)
{
    memset(st->m, 0, sizeof(st->m));
    st->ew_err = st->ew_cnt = st->ew_unans = st->ew_slow[0] = st->ew_slow[1] = 0;
    st->trained_buckets = st->trained_requests = 0;
    st->first_trained_b = st->last_trained_b = -1;
    /* the hour-of-day profile is kept: it describes days, not this episode */
}

static uint32_t anom_push(fl_analysis_t *a, const fl__anom_t *x)
{
    if (a->an_n == a->an_cap) {
        uint32_t cap = a->an_cap ? a->an_cap * 2 : 256;
        fl__anom_t *p = realloc(a->an, (size_t)cap * sizeof(*p));
        if (!p)
            return FL__NONE;
        a->an = p;
        a->an_cap = cap;
    }
    a->an[a->an_n] = *x;
    return a->an_n++;
}

static void close_anom(fl_analysis_t *a, fl__runctx_t *ctx, fl__det_t *dt)
{
    fl__anom_t *x = &a->an[dt->open];
    x->open = 0;
    a->an_open--;
    ctx->closed++;
    note_change(ctx, x, dt->open);
    dt->open = FL__NONE;
    dt->clear = 0;
}

/* The anomaly lifecycle of one detector on one series: k-of-n to open (unless severe),
 * clear for a few buckets to close, relearn after a whole baseline window. */
static void det_step(fl_analysis_t *a, fl__runctx_t *ctx, uint32_t sid, fl__sstate_t *st, int d,
                     const ev_t *ev, const fl__acc_t *c, int64_t b)
{
    fl__det_t *dt = &st->det[d];
    uint32_t nwin = a->o.confirm_n;
    dt->hist = (uint8_t)(((dt->hist << 1) | (ev->held ? 1 : 0)) & ((1u << nwin) - 1));
    const fl__example_t *ex = (d == FL__D_ERR || d == FL__D_NEWTYPE) ? c ? c->err : NULL
                              : c                                    ? c->slow
                                                                     : NULL;
    if (dt->open != FL__NONE) {
        fl__anom_t *x = &a->an[dt->open];
        if (!ev->held) {
            if (++dt->clear >= a->o.clear_buckets)
                close_anom(a, ctx, dt);
            return;
        }
        dt->clear = 0;
        x->end_b = b;
        x->samples += ev->samples;
        x->buckets++;
        if (ev->severity > x->severity)
            x->severity = ev->severity;
        if (ev->peak > x->peak)
            evidence(x, ev);
        if (ex)
            add_traces(x, ex);
        ctx->updated++;
        note_change(ctx, x, dt->open);
        /* Abnormal for a whole baseline window: accept it as the new normal and relearn. */
        uint64_t relearn = a->o.baseline_window_ns / a->o.bucket_ns;
        if (relearn < 30)
            relearn = 30;
        if ((uint64_t)(b - x->start_b) >= relearn) {
            x->accepted = 1;
            close_anom(a, ctx, dt);
            reset_baseline(st);
        }
        return;
    }
    if (!ev->held || !(ev->severe || (uint32_t)__builtin_popcount(dt->hist) >= a->o.confirm_k))
        return;
    fl__anom_t x;
    memset(&x, 0, sizeof(x));
    const fl__series_t *ser = fl__sertab_at(&a->ser, sid);
    x.series = sid;
    x.kind = det_kind[d];
    x.subject = det_subject(ser, d);
    x.det = (uint8_t)d;
    x.open = 1;
    x.severity = ev->severity;
    x.etype = d == FL__D_NEWTYPE ? ev->etype : FL__NONE;
    x.start_b = b;
    for (int i = (int)nwin - 1; i >= 0; i--) {
        if ((dt->hist >> i) & 1 && i < st->n_eval) {
            x.start_b = st->eval_b[i];
            break;
        }
    }
    if (ev->set_start && ev->start_b < x.start_b)
        x.start_b = ev->start_b;
    x.end_b = x.detected_b = b;
    x.samples = ev->samples;
    x.buckets = (uint64_t)__builtin_popcount(dt->hist);
    evidence(&x, ev);
    if (ex)
        add_traces(&x, ex);
    if (c && x.n_traces < FL_ANOMALY_MAX_TRACES)
        add_traces(&x, c->slow);
    x.id = anom_id(a, ser, &x);
    uint32_t idx = anom_push(a, &x);
    if (idx == FL__NONE)
        return;
    dt->open = idx;
    dt->clear = 0;
    a->an_open++;
    a->an_total++;
    ctx->opened++;
    note_change(ctx, &a->an[idx], idx);
}

/* An exception.type / error.type never seen on this endpoint before. Types are learned
 * silently for the first 30 trained buckets (5 min) of a trusted baseline. After that a new
 * type raises an anomaly once it is seen twice: in one bucket, or again within confirm_n
 * buckets; a type seen once and never again is learned quietly (one stray exception is
 * not an incident). */
static int known_type(const fl__sstate_t *st, uint32_t et)
{
    for (int j = 0; j < st->n_known; j++)
        if (st->known[j] == et)
            return 1;
    return 0;
}

static void learn_type(fl__sstate_t *st, uint32_t et)
{
    if (st->n_known < FL__KNOWN_TYPES && !known_type(st, et))
        st->known[st->n_known++] = et;
}

static void newtype_test(const fl_analysis_t *a, fl__sstate_t *st, const fl__acc_t *c, int64_t b,
                         ev_t *ev)
{
    if (st->cand != FL__NONE && b - st->cand_b > (int64_t)a->o.confirm_n) {
        learn_type(st, st->cand); /* seen once, long ago: just learn it */
        st->cand = FL__NONE;
    }
    if (!c)
        return;
    int learning = !fl__trusted(a, st) || st->trained_buckets < 30;
    for (int i = 0; i < c->n_etypes; i++) {
        uint32_t et = c->etypes[i];
        if (known_type(st, et) || st->n_known >= FL__KNOWN_TYPES)
            continue;
        if (learning) {
            learn_type(st, et);
            continue;
        }
        int again = st->cand == et;
        if (c->etype_cnt[i] < 2 && !again) {
            if (st->cand == FL__NONE) {
                st->cand = et;
                st->cand_b = b;
            }
            continue;
        }
        learn_type(st, et);
        if (again)
            st->cand = FL__NONE;
        if (ev->held)
            continue;
        double p0 = st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : 0;
        ev->held = ev->severe = 1;
        ev->metric = MET_ERROR_TYPE;
        ev->etype = et;
        ev->start_b = again ? st->cand_b : b;
        ev->set_start = 1;
        ev->observed = c->count ? (double)c->errors / (double)c->count : 0;
        ev->baseline = p0;
        ev->ratio = p0 > 0 ? ev->observed / p0 : 0;
        ev->samples = c->etype_cnt[i] + (again ? 1 : 0);
        ev->severity = c->errors >= 5 ? FL_SEV_MEDIUM : FL_SEV_LOW;
        ev->peak = ev->observed;
    }
}

/* ---------------------------------------------------------------- training */

static void train_metric(const fl_analysis_t *a, fl__sstate_t *st, int mi, double x, int is_rate)
{
    fl__metric_t *m = &st->m[mi];
    if (metric_trusted(a, m)) {
        double mean = m->e.mean, sd = fl_ewma_sd(&m->e), floor = 0.05; /* ln scale: 5 % */
        if (is_rate) {
            floor = 0.05 * fabs(mean);
            if (floor < sqrt(mean))
                floor = sqrt(mean);
            if (floor < 1)
                floor = 1;
        }
        if (sd < floor)
            sd = floor;
        if (fabs(x - mean) > OUTLIER_SIGMA * sd) {
            st->skipped_outliers++;
            if (++m->streak < SHIFT_ACCEPT)
                return;
        }
    }
    m->streak = 0;
    fl_ewma_update(&m->e, x, a->alpha);
}

/* Learn from one normal bucket. Error and unanswered rates are kept as EWMAs of counts, so
 * busy buckets weigh more than quiet ones (a request-weighted rate). */
static void train(fl_analysis_t *a, fl__sstate_t *st, const fl__acc_t *c, int64_t b)
{
    uint64_t n = c ? c->count : 0;
    if (c && c->lat.count) {
        train_metric(a, st, FL__M_LAT_MEAN, fl__lat_ln(fl_sketch_mean_ns(&c->lat)), 0);
        if (c->lat.count >= 5)
            train_metric(a, st, FL__M_LAT_P95, fl__lat_ln(fl_sketch_quantile_ns(&c->lat, 0.95)), 0);
    }
    if (c && c->aux.count) {
        train_metric(a, st, FL__M_AUX_MEAN, fl__lat_ln(fl_sketch_mean_ns(&c->aux)), 0);
        if (c->aux.count >= 5)
            train_metric(a, st, FL__M_AUX_P95, fl__lat_ln(fl_sketch_quantile_ns(&c->aux, 0.95)), 0);
    }
    /* The usual share of requests beyond threshold x the usual p95, for the p95 test. */
    double slow[2] = {0, 0};
    for (int k = 0; c && k < 2; k++) {
        const fl__metric_t *m95 = &st->m[k ? FL__M_AUX_P95 : FL__M_LAT_P95];
        if (m95->e.n)
            slow[k] = (double)fl_sketch_count_above(
                k ? &c->aux : &c->lat, (uint64_t)(a->o.anomaly_threshold * fl__lat_base(m95)));
    }
    train_metric(a, st, FL__M_RATE, (double)n, 1);
    double w = 1.0 / (double)(st->trained_buckets + 1);
    if (w < a->alpha)
        w = a->alpha;
    st->ew_slow[0] += w * (slow[0] - st->ew_slow[0]);
    st->ew_slow[1] += w * (slow[1] - st->ew_slow[1]);
    st->ew_cnt += w * ((double)n - st->ew_cnt);
    st->ew_err += w * ((double)(c ? c->errors : 0) - st->ew_err);
    st->ew_unans += w * ((double)(c ? c->unanswered : 0) - st->ew_unans);
    st->trained_buckets++;
    st->trained_requests += n;
    if (st->first_trained_b < 0)
        st->first_trained_b = b;
    st->last_trained_b = b;
}

/* Hour-of-day rate profile: a running mean per hour of the day, then an EWMA over about
 * three days of that hour. It learns from every bucket until it is in use (so a daily
 * pattern that the 1 h EWMA calls anomalous can still be learned), then from normal ones. */
static void profile_train(const fl_analysis_t *a, fl__sstate_t *st, int64_t b, uint64_t n)
{
    if (!st->profile) {
        if (!(st->profile = calloc(1, sizeof(*st->profile))))
            return;
        st->profile->first_b = b;
    }
    fl__profile_t *p = st->profile;
    int h = hour_of(a, b);
    p->n[h]++;
    double wh = 1.0 / p->n[h], floor = 1.0 / (3.0 * (double)buckets_per_hour(a));
    if (wh < floor)
        wh = floor;
    double d = (double)n - p->rate_mean[h];
    p->rate_mean[h] += (float)(wh * d);
    p->rate_var[h] = (float)((1 - wh) * (p->rate_var[h] + wh * d * d));
}

/* A sampled point of the baseline for display; sampling on the bucket index keeps it
 * identical across replays. */
static void recent_point(fl_analysis_t *a, fl__sstate_t *st, int64_t b)
{
    uint64_t every = 300000000000ull / a->o.bucket_ns;
    if (every < 1)
        every = 1;
    if ((uint64_t)b % every || !st->trained_buckets)
        return;
    if (!st->recent && !(st->recent = calloc(FL__RECENT, sizeof(*st->recent))))
        return;
    fl_baseline_point_t *p = &st->recent[st->recent_head];
    p->time_ns = fl__bstart(a, b + 1);
    p->mean_ms = fl__lat_base(&st->m[FL__M_LAT_MEAN]) / 1e6;
    p->p95_ms = fl__lat_base(&st->m[FL__M_LAT_P95]) / 1e6;
    p->error_rate = st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : 0;
    double sd;
    int hourly;
    p->rate_per_s = fl__baseline_rate(a, st, b, &sd, &hourly) / ((double)a->o.bucket_ns / 1e9);
    st->recent_head = (uint8_t)((st->recent_head + 1) % FL__RECENT);
    if (st->recent_n < FL__RECENT)
        st->recent_n++;
}

/* ---------------------------------------------------------------- one series, one bucket */

static void evaluate(fl_analysis_t *a, fl__runctx_t *ctx, uint32_t sid, fl__sstate_t *st,
                     const fl__acc_t *c, int64_t b, uint64_t global)
{
    const fl__series_t *ser = fl__sertab_at(&a->ser, sid);
    int endpoint = ser->type == FL__SER_ENDPOINT, edge = ser->type == FL__SER_EDGE;
    ev_t ev[FL__D_N];
    memset(ev, 0, sizeof(ev));
    uint64_t n = c ? c->count : 0;
    if (c && (endpoint || edge)) {
        timeout_test(a, st, c, edge, &ev[FL__D_TIMEOUT]);
        err_test(a, st, n, c->errors, &ev[FL__D_ERR]);
        lat_test(a, st, &c->lat, FL__M_LAT_MEAN, FL__M_LAT_P95, &ev[FL__D_LAT]);
    }
    if (c && c->aux.count)
        lat_test(a, st, &c->aux, FL__M_AUX_MEAN, FL__M_AUX_P95, &ev[FL__D_AUX]);
    if (endpoint) {
        traffic_test(a, st, b, n, global, &ev[FL__D_TRAFFIC]);
        newtype_test(a, st, c, b, &ev[FL__D_NEWTYPE]);
    }
    int anomalous = 0;
    for (int d = 0; d < FL__D_N; d++)
        anomalous |= ev[d].held || st->det[d].open != FL__NONE;
    if (ev[FL__D_TIMEOUT].held) /* a timeout explains its own errors and long durations */
        ev[FL__D_ERR].held = ev[FL__D_LAT].held = 0;
    /* When the endpoint's own work is (nearly) all of its latency, a self-time anomaly would
     * repeat the latency one. */
    if (ev[FL__D_LAT].held && ev[FL__D_AUX].held && c &&
        fl_sketch_mean_ns(&c->aux) >= 0.9 * fl_sketch_mean_ns(&c->lat))
        ev[FL__D_AUX].held = 0;

    memmove(st->eval_b + 1, st->eval_b, 7 * sizeof(st->eval_b[0]));
    st->eval_b[0] = b;
    if (st->n_eval < 8)
        st->n_eval++;
    for (int d = 0; d < FL__D_N; d++)
        det_step(a, ctx, sid, st, d, &ev[d], c, b);

    /* Learn only from normal buckets; while the baseline is still young it cannot tell what
     * is normal, so it learns from everything (else an endpoint that always fails 25 % of
     * the time would stay "anomalous" under the plain 20 % rule and never learn). */
    if (anomalous && fl__trusted(a, st))
        st->skipped_anomalous++;
    else
        train(a, st, c, b);
    double sd;
    int hourly;
    fl__baseline_rate(a, st, b, &sd, &hourly);
    if (!anomalous || !hourly)
        profile_train(a, st, b, n);
    recent_point(a, st, b);
}

static int acc_series_cmp(const void *x, const void *y)
{
    const fl__acc_t *p = x, *q = y;
    return p->series < q->series ? -1 : p->series > q->series;
}

/* One closed bucket: into the history, then every known series is evaluated, including
 * those with no data in it (that is how silence is seen). A bucket in which no span at all
 * ended means the whole system did not report: nothing is judged. */
int fl__process_sealed(fl_analysis_t *a, fl__sealed_t *s, fl__runctx_t *ctx)
{
    if (s->n) /* a bucket may hold spans but no series (only non-entry spans ended in it) */
        fl_sort(s->accs, s->n, sizeof(*s->accs), acc_series_cmp);
    uint32_t nser = fl__sertab_count(&a->ser);
    if (fl__state_reserve(a, nser))
        return FL_ERR_NOMEM;
    fl_buf_t blob;
    fl_buf_init(&blob, 0);
    int rc = fl__blob_encode(s->accs, s->n, s->spans, &blob);
    if (!rc) {
        size_t len;
        uint8_t *data = fl_buf_take(&blob, &len);
        rc = fl__history_put(&a->hist, s->b, data, (uint32_t)len);
    }
    fl_buf_dispose(&blob);
    a->analyzed_next = s->b + 1;
    if (!s->spans)
        return rc;
    uint32_t j = 0;
    for (uint32_t sid = 0; sid < nser; sid++) {
        const fl__acc_t *c = j < s->n && s->accs[j].series == sid ? &s->accs[j++] : NULL;
        fl__sstate_t *st = &a->st[sid];
        if (!st->seen) {
            if (!c)
                continue;
            st->seen = 1;
            st->first_b = s->b;
        }
        if (c)
            st->last_b = s->b;
        evaluate(a, ctx, sid, st, c, s->b, s->spans);
    }
    return rc;
}

/* ---------------------------------------------------------------- compaction */

void fl__anom_compact(fl_analysis_t *a)
{
    uint32_t closed = a->an_n - a->an_open;
    if (closed <= a->o.max_anomalies + a->o.max_anomalies / 4)
        return;
    uint32_t drop = closed - a->o.max_anomalies, *map = malloc((size_t)a->an_n * sizeof(*map));
    if (!map)
        return;
    uint32_t w = 0;
    for (uint32_t i = 0; i < a->an_n; i++) {
        if (!a->an[i].open && drop) { /* oldest closed ones go first */
            drop--;
            map[i] = FL__NONE;
            continue;
        }
        map[i] = w;
        a->an[w++] = a->an[i];
    }
    for (uint32_t s = 0; s < a->st_n; s++)
        for (int d = 0; d < FL__D_N; d++)
            if (a->st[s].det[d].open != FL__NONE)
                a->st[s].det[d].open = map[a->st[s].det[d].open];
    a->an_n = w;
    free(map);
}

/* ---------------------------------------------------------------- public form */

static const char *fmt_ms(fl_arena_t *ar, double ms)
{
    return ms < 10 ? fl_arena_sprintf(ar, "%.1fms", ms) : fl_arena_sprintf(ar, "%.0fms", ms);
}

static const char *summary(const fl_analysis_t *a, const fl__anom_t *x, const fl_anomaly_t *o,
                           fl_arena_t *ar)
{
    const char *route = o->caller_service
                            ? fl_arena_sprintf(ar, " on %s -> %s", o->caller_service, o->service)
                            : "";
    switch (x->kind) {
    case FL_ANOMALY_LATENCY: {
        const char *what = x->subject == FL_SUBJECT_SELF_TIME  ? "Self time spike"
                           : x->subject == FL_SUBJECT_EDGE_GAP ? "Network/queue delay spike"
                                                               : "Latency spike";
        return fl_arena_sprintf(ar, "%s%s%s: %s (baseline: %s)", x->metric == MET_P95 ? "p95 " : "",
                                what, route, fmt_ms(ar, x->observed), fmt_ms(ar, x->baseline));
    }
    case FL_ANOMALY_ERROR:
        return fl_arena_sprintf(ar, "Error rate %.0f%%%s (baseline: %.1f%%)", 100 * x->observed,
                                route, 100 * x->baseline);
    case FL_ANOMALY_TIMEOUT:
        if (x->metric == MET_UNANSWERED)
            return fl_arena_sprintf(ar, "%s stopped answering%s: %.0f%% of calls unanswered",
                                    o->service, route, 100 * x->observed);
        if (x->metric == MET_DEADLINE)
            return fl_arena_sprintf(ar, "Requests piling up at a %s deadline%s (baseline p95: %s)",
                                    fmt_ms(ar, x->observed), route, fmt_ms(ar, x->baseline));
        return fl_arena_sprintf(ar, "Timeouts%s: no successful responses", route);
    case FL_ANOMALY_TRAFFIC:
        return fl_arena_sprintf(ar, "Traffic %s: %.2f req/s (baseline: %.2f req/s)",
                                x->direction == DIR_SURGE ? "surge" : "drop", x->observed,
                                x->baseline);
    case FL_ANOMALY_NEW_ERROR_TYPE:
        return fl_arena_sprintf(ar, "New error type: %s", fl__s(a, x->etype));
    default:
        return "";
    }
}

static const char *adup(fl_arena_t *ar, const char *s)
{
    const char *c = fl_arena_strdup(ar, s ? s : "");
    return c ? c : "";
}

void fl__anom_to_public(const fl_analysis_t *a, const fl__anom_t *x, fl_arena_t *ar,
                        fl_anomaly_t *o)
{
    const fl__series_t *ser = fl__sertab_at(&a->ser, x->series);
    memset(o, 0, sizeof(*o));
    o->id = x->id;
    o->kind = (fl_anomaly_kind_t)x->kind;
    o->subject = (fl_subject_t)x->subject;
    o->service = adup(ar, fl__s(a, ser->svc));
    o->operation = adup(ar, fl__s(a, ser->op));
    if (ser->type == FL__SER_EDGE) {
        o->caller_service = adup(ar, fl__s(a, ser->caller_svc));
        o->caller_operation = adup(ar, fl__s(a, ser->caller_op));
    }
    o->virtual_peer = (ser->flags & FL__EDGE_VIRTUAL) != 0;
    o->metric = metric_name(x->metric);
    switch (x->metric) {
    case MET_MEAN:
    case MET_P95:
    case MET_DEADLINE:
        o->unit = "ms";
        break;
    case MET_RATE:
        o->unit = "req/s";
        break;
    default:
        o->unit = "ratio";
        break;
    }
    o->direction = x->direction == DIR_DROP ? "drop" : x->direction == DIR_SURGE ? "surge" : NULL;
    o->error_type = x->etype != FL__NONE && x->kind == FL_ANOMALY_NEW_ERROR_TYPE
                        ? adup(ar, fl__s(a, x->etype))
                        : NULL;
    o->start_ns = fl__bstart(a, x->start_b);
    o->end_ns = fl__bstart(a, x->end_b + 1);
    o->detected_ns = fl__bstart(a, x->detected_b + 1);
    o->open = x->open;
    o->accepted = x->accepted;
    o->observed = x->observed;
    o->baseline = x->baseline;
    o->ratio = x->ratio;
    o->z = x->z;
    o->samples = x->samples;
    o->buckets = x->buckets;
    o->severity = (fl_severity_t)x->severity;
    o->n_trace_ids = x->n_traces;
    memcpy(o->trace_ids, x->traces, sizeof(o->trace_ids));
    o->summary = summary(a, x, o, ar);
}
