/* SPDX-License-Identifier: Apache-2.0 */
/* The engine: options, lifecycle, the two locks (ingest vs. analysis state), observe and run,
 * and the metrics, baselines, anomalies and status queries. */
#include "analysis_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_NS 1000000000ull

void fl_analysis_opts_default(fl_analysis_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->bucket_ns = 10 * S_NS;
    o->grace_ns = 5 * S_NS;
    o->baseline_window_ns = 3600 * S_NS;
    o->anomaly_threshold = 3.0;
    o->error_rate_threshold = 0.2;
    o->z_threshold = 3.0;
    o->max_series = 10000;
    o->window_capacity = 131072;
    o->min_requests = 10;
    o->min_buckets = 5;
    o->min_samples = 5;
    o->confirm_k = 2;
    o->confirm_n = 3;
    o->clear_buckets = 3;
    o->min_latency_delta_ms = 1.0;
    o->history_max_bytes = (size_t)48 << 20;
    o->max_pending = 720;
    o->max_anomalies = 10000;
}

int fl_analysis_opts_check(const fl_analysis_opts_t *o, const char **why)
{
    const char *w = NULL;
    if (!o)
        w = "options missing";
    else if (o->bucket_ns < S_NS || o->bucket_ns > 3600 * S_NS)
        w = "bucket width must be between 1 s and 1 h";
    else if (o->grace_ns > 32 * o->bucket_ns || o->grace_ns > 600 * S_NS)
        w = "grace must be at most 32 buckets and 10 minutes";
    else if (o->baseline_window_ns < 2 * o->bucket_ns)
        w = "baseline window must be at least two buckets";
    else if (!(o->anomaly_threshold >= 1.0) || !(o->anomaly_threshold < 1e6))
        w = "anomaly threshold must be >= 1";
    else if (!(o->error_rate_threshold > 0) || !(o->error_rate_threshold < 1))
        w = "error rate threshold must be between 0 and 1";
    else if (!(o->z_threshold > 0) || !(o->z_threshold < 1e3))
        w = "z threshold must be positive";
    else if (o->max_series < 16 || o->max_series > (1u << 22))
        w = "max series must be between 16 and 4M";
    else if (o->window_capacity < 1024 || o->window_capacity > (1u << 24))
        w = "window capacity must be between 1024 and 16M records";
    else if (!o->min_buckets || !o->min_samples)
        w = "min buckets and min samples must be positive";
    else if (o->confirm_n < 1 || o->confirm_n > 8 || o->confirm_k < 1 ||
             o->confirm_k > o->confirm_n)
        w = "confirmation needs 1 <= k <= n <= 8";
    else if (!o->clear_buckets || o->clear_buckets > 255)
        w = "clear buckets must be between 1 and 255";
    else if (!(o->min_latency_delta_ms >= 0))
        w = "min latency delta must be >= 0";
    else if (o->history_max_bytes < 65536)
        w = "history budget must be at least 64 KiB";
    else if (!o->max_pending || !o->max_anomalies)
        w = "max pending and max anomalies must be positive";
    if (why)
        *why = w;
    return w ? FL_ERR_INVALID : FL_OK;
}

fl_analysis_t *fl_analysis_new(const fl_analysis_opts_t *opts)
{
    fl_analysis_opts_t o;
    if (opts)
        o = *opts;
    else
        fl_analysis_opts_default(&o);
    if (fl_analysis_opts_check(&o, NULL))
        return NULL;
    fl_analysis_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->o = o;
    a->alpha = fl_ewma_alpha(o.bucket_ns, o.baseline_window_ns);
    /* Open buckets at any time: the one the watermark is in, those still within grace, and
     * one spare for the bucket boundary. */
    a->K = (uint32_t)(o.grace_ns / o.bucket_ns) + 3;
    a->sealed_next = INT64_MIN;
    a->last_svc = FL__NONE;
    pthread_mutex_init(&a->ingest_mu, NULL);
    pthread_mutex_init(&a->run_mu, NULL);
    pthread_rwlock_init(&a->state_lock, NULL);
    /* Names: each series has up to four, error types and peers add some; the cap keeps a
     * name explosion (ids in names that naming missed) bounded too. */
    uint32_t max_str = o.max_series * 8 > 65536 ? o.max_series * 8 : 65536;
    int rc = fl__strtab_init(&a->str, max_str);
    rc = rc ? rc : fl__sertab_init(&a->ser, o.max_series);
    rc = rc ? rc : fl__window_init(&a->win, o.window_capacity);
    rc = rc ? rc : fl__history_init(&a->hist, o.bucket_ns, o.history_max_bytes);
    a->ob = calloc(a->K, sizeof(*a->ob));
    a->peer_keys = calloc(FL__PEER_CAP, sizeof(uint64_t));
    a->peer_k2 = calloc(FL__PEER_CAP, sizeof(uint64_t));
    a->peer_vals = calloc(FL__PEER_CAP, sizeof(uint64_t));
    a->peer_mask = FL__PEER_CAP - 1;
    a->opcache = calloc(4096, sizeof(*a->opcache));
    a->ofilt[0] = calloc((1u << 20) / 64, sizeof(uint64_t));
    a->ofilt[1] = calloc((1u << 20) / 64, sizeof(uint64_t));
    if (rc || !a->ob || !a->peer_keys || !a->peer_k2 || !a->peer_vals || !a->opcache ||
        !a->ofilt[0] || !a->ofilt[1]) {
        fl_analysis_free(a);
        return NULL;
    }
    for (uint32_t k = 0; k < a->K; k++)
        a->ob[k].b = INT64_MIN;
    a->id_empty = fl__strtab_intern(&a->str, "", 0);
    return a;
}

void fl_analysis_free(fl_analysis_t *a)
{
    if (!a)
        return;
    fl__ingest_dispose(a);
    for (uint32_t i = 0; i < a->st_n; i++) {
        free(a->st[i].profile);
        free(a->st[i].recent);
    }
    free(a->st);
    free(a->an);
    fl__history_dispose(&a->hist);
    fl__sertab_dispose(&a->ser);
    fl__strtab_dispose(&a->str);
    pthread_mutex_destroy(&a->ingest_mu);
    pthread_mutex_destroy(&a->run_mu);
    pthread_rwlock_destroy(&a->state_lock);
    free(a);
}

int fl_analysis_observe(fl_analysis_t *a, const fl_span_t *spans, size_t n)
{
    if (!a || (n && !spans))
        return FL_ERR_INVALID;
    pthread_mutex_lock(&a->ingest_mu);
    /* The whole batch under one lock acquisition: cheaper than per span, and run waits at
     * most one batch for its hand-over. */
    uint64_t lost0 = a->c_lost;
    for (size_t i = 0; i < n; i++) {
        if (i + 8 < n)
            fl__observe_prefetch(a, &spans[i + 8]);
        fl__observe_one(a, &spans[i]);
    }
    int rc = a->c_lost != lost0 ? FL_ERR_NOMEM : FL_OK;
    pthread_mutex_unlock(&a->ingest_mu);
    return rc;
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* run_mu serialises runs; the ingest lock is held only to take the sealed list; the state
 * lock is taken per bucket. Lock order where two are held: ingest before state. */
int fl_analysis_run(fl_analysis_t *a, uint64_t watermark_ns, fl_arena_t *arena,
                    fl_analysis_run_result_t *out)
{
    if (!a)
        return FL_ERR_INVALID;
    if (out)
        memset(out, 0, sizeof(*out));
    uint64_t t0 = fl_time_mono_ns();
    pthread_mutex_lock(&a->run_mu);

    /* Take the sealed buckets; the ingest lock is held only for this hand-over. */
    pthread_mutex_lock(&a->ingest_mu);
    if (watermark_ns > a->wm)
        fl__advance(a, watermark_ns);
    fl__sealed_t *list = a->pend_head;
    a->pend_head = a->pend_tail = NULL;
    FL__SET(a->n_pend, 0);
    uint64_t wm = a->wm;
    int64_t sealed_next = a->sealed_next;
    pthread_mutex_unlock(&a->ingest_mu);

    /* The state lock is taken per bucket, so queries wait at most one bucket's analysis
     * even when a run has many buckets to catch up on. */
    fl__runctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    pthread_rwlock_wrlock(&a->state_lock);
    ctx.mark = ++a->runs;
    pthread_rwlock_unlock(&a->state_lock);
    int rc = FL_OK;
    uint32_t nb = 0, bcap = 0;
    uint64_t *starts = NULL;
    for (fl__sealed_t *s = list, *nx; s; s = nx) {
        nx = s->next;
        pthread_rwlock_wrlock(&a->state_lock);
        int r = fl__process_sealed(a, s, &ctx);
        pthread_rwlock_unlock(&a->state_lock);
        if (r && !rc)
            rc = r;
        if (arena && out) {
            if (nb == bcap) {
                uint32_t cap = bcap ? bcap * 2 : 16;
                uint64_t *p = fl_arena_alloc(arena, cap * sizeof(*p));
                if (p) {
                    if (nb)
                        memcpy(p, starts, nb * sizeof(*p));
                    starts = p;
                    bcap = cap;
                }
            }
            if (nb < bcap)
                starts[nb] = fl__bstart(a, s->b);
        }
        nb++;
        fl__sealed_free(s);
    }
    pthread_rwlock_wrlock(&a->state_lock);
    a->run_wm = wm;
    if (out) {
        out->watermark_ns = wm;
        out->closed_until_ns = sealed_next == INT64_MIN ? 0 : fl__bstart(a, sealed_next);
        out->buckets_closed = nb;
        out->opened = ctx.opened;
        out->updated = ctx.updated;
        out->closed = ctx.closed;
        out->bucket_starts = starts;
        out->n_buckets = starts ? (nb < bcap ? nb : bcap) : 0;
        if (arena && ctx.n) {
            out->changed = fl_arena_calloc(arena, ctx.n, sizeof(*out->changed));
            if (out->changed) {
                for (uint32_t i = 0; i < ctx.n; i++)
                    fl__anom_to_public(a, &a->an[ctx.changed[i]], arena, &out->changed[i]);
                out->n_changed = ctx.n;
            } else {
                rc = FL_ERR_NOMEM;
            }
        }
    }
    free(ctx.changed);
    fl__anom_compact(a);
    a->last_run_wall = fl_time_now_ns();
    a->last_run_dur = fl_time_mono_ns() - t0;
    if (out)
        out->duration_ns = a->last_run_dur;
    pthread_rwlock_unlock(&a->state_lock);
    pthread_mutex_unlock(&a->run_mu);
    return rc;
}

const char *fl_anomaly_kind_name(int kind)
{
    static const char *n[] = {"unknown", "latency", "error",
                              "timeout", "traffic", "new_error_type"};
    return kind > 0 && kind < 6 ? n[kind] : n[0];
}

const char *fl_subject_name(int subject)
{
    static const char *n[] = {"unknown", "endpoint", "self_time", "edge", "edge_gap"};
    return subject > 0 && subject < 5 ? n[subject] : n[0];
}

const char *fl_severity_name(int severity)
{
    static const char *n[] = {"unknown", "low", "medium", "high", "critical"};
    return severity > 0 && severity < 5 ? n[severity] : n[0];
}

/* ---------------------------------------------------------------- helpers for queries */

static const char *adup(fl_arena_t *ar, const char *s)
{
    const char *c = fl_arena_strdup(ar, s ? s : "");
    return c ? c : "";
}

static int name_ok(const char *want, const char *have)
{
    return !want || strcmp(want, have) == 0;
}

static double q_ms(const fl_sketch_t *s, double q)
{
    return fl_sketch_quantile_ns(s, q) / 1e6;
}

static int blob_to_map(void *ctx, const uint8_t *blob, uint32_t len, uint64_t t0, uint64_t t1)
{
    (void)t0;
    (void)t1;
    return fl__blob_foreach(blob, len, fl__accmap_add, ctx, NULL);
}

/* Merge every closed bucket overlapping the filter's range into one accumulator per series.
 * Caller holds the state lock. */
int fl__range_map(fl_analysis_t *a, const fl_analysis_filter_t *f, fl__accmap_t *m, uint64_t *cs,
                  uint64_t *ce)
{
    memset(m, 0, sizeof(*m));
    uint64_t s = f ? f->start_ns : 0, e = f ? f->end_ns : 0;
    return fl__history_scan(&a->hist, s, e, blob_to_map, m, cs, ce);
}

/* ---------------------------------------------------------------- metrics */

static int em_cmp(const void *x, const void *y)
{
    const fl_endpoint_metrics_t *p = x, *q = y;
    int c = strcmp(p->service, q->service);
    return c ? c : strcmp(p->operation, q->operation);
}

static int status_cmp(const void *x, const void *y)
{
    const fl_status_count_t *p = x, *q = y;
    return p->code - q->code;
}

/* RED per endpoint over a range: merge the closed buckets, then read quantiles from the
 * merged sketches (never averages of per-bucket quantiles). */
int fl_analysis_metrics(fl_analysis_t *a, const fl_analysis_filter_t *f, fl_arena_t *ar,
                        fl_analysis_metrics_t *out)
{
    if (!a || !ar || !out)
        return FL_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&a->state_lock);
    fl__accmap_t m;
    uint64_t cs = 0, ce = 0;
    int rc = fl__range_map(a, f, &m, &cs, &ce);
    out->start_ns = cs;
    out->end_ns = ce;
    double secs = ce > cs ? (double)(ce - cs) / 1e9 : 0;
    size_t n = 0;
    if (!rc && m.n)
        out->items = fl_arena_calloc(ar, m.n, sizeof(*out->items));
    if (!rc && m.n && !out->items)
        rc = FL_ERR_NOMEM;
    for (uint32_t i = 0; !rc && i < m.n; i++) {
        const fl__acc_t *c = &m.accs[i];
        const fl__series_t *ser = fl__sertab_at(&a->ser, c->series);
        /* Only endpoints are "requests"; operations and edges have their own queries. */
        if (ser->type != FL__SER_ENDPOINT || !c->count)
            continue;
        const char *svc = fl__s(a, ser->svc), *op = fl__s(a, ser->op);
        if (f && (!name_ok(f->service, svc) || !name_ok(f->operation, op)))
            continue;
        fl_endpoint_metrics_t *e = &out->items[n++];
        e->service = adup(ar, svc);
        e->operation = adup(ar, op);
        e->request_count = c->count;
        e->error_count = c->errors;
        e->timeout_count = c->timeouts;
        e->error_rate = (double)c->errors / (double)c->count;
        e->rate_per_s = secs > 0 ? (double)c->count / secs : 0;
        e->avg_ms = fl_sketch_mean_ns(&c->lat) / 1e6;
        e->p50_ms = q_ms(&c->lat, 0.5);
        e->p95_ms = q_ms(&c->lat, 0.95);
        e->p99_ms = q_ms(&c->lat, 0.99);
        e->max_ms = (double)fl_sketch_max_ns(&c->lat) / 1e6;
        e->self_p50_ms = q_ms(&c->aux, 0.5);
        e->self_p95_ms = q_ms(&c->aux, 0.95);
        e->status_unset = c->st_unset;
        e->status_ok = c->st_ok;
        e->status_error = c->st_error;
        if (c->series < a->st_n) {
            const fl__sstate_t *st = &a->st[c->series];
            e->baseline_latency_ms = fl__lat_base(&st->m[FL__M_LAT_MEAN]) / 1e6;
            e->baseline_p95_ms = fl__lat_base(&st->m[FL__M_LAT_P95]) / 1e6;
            e->baseline_error_rate = st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : 0;
            e->baseline_trusted = fl__trusted(a, st);
        }
        /* HTTP codes sorted ascending; "other" (codes beyond the per-bucket table) is -1. */
        size_t ns = c->n_codes + (c->code_other ? 1 : 0);
        e->statuses = ns ? fl_arena_calloc(ar, ns, sizeof(*e->statuses)) : NULL;
        if (e->statuses) {
            for (int k = 0; k < c->n_codes; k++)
                e->statuses[k] = (fl_status_count_t){c->codes[k], c->code_cnt[k]};
            if (c->code_other)
                e->statuses[c->n_codes] = (fl_status_count_t){-1, c->code_other};
            e->n_statuses = ns;
            fl_sort(e->statuses, ns, sizeof(*e->statuses), status_cmp);
        }
    }
    out->n = n;
    if (n)
        fl_sort(out->items, n, sizeof(*out->items), em_cmp);
    fl__accmap_dispose(&m);
    pthread_rwlock_unlock(&a->state_lock);
    return rc;
}

/* ---------------------------------------------------------------- baselines */

static int bl_cmp(const void *x, const void *y)
{
    const fl_baseline_info_t *p = x, *q = y;
    if (p->subject != q->subject)
        return (int)p->subject - (int)q->subject;
    int c = strcmp(p->service, q->service);
    c = c ? c : strcmp(p->operation, q->operation);
    if (!c && p->caller_service && q->caller_service) {
        c = strcmp(p->caller_service, q->caller_service);
        c = c ? c : strcmp(p->caller_operation, q->caller_operation);
    }
    return c;
}

int fl_analysis_baselines(fl_analysis_t *a, const fl_analysis_filter_t *f, fl_arena_t *ar,
                          fl_analysis_baselines_t *out)
{
    if (!a || !ar || !out)
        return FL_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&a->state_lock);
    int rc = FL_OK;
    double secs = (double)a->o.bucket_ns / 1e9;
    if (a->st_n && !(out->items = fl_arena_calloc(ar, a->st_n, sizeof(*out->items))))
        rc = FL_ERR_NOMEM;
    size_t n = 0;
    for (uint32_t i = 0; !rc && i < a->st_n; i++) {
        const fl__sstate_t *st = &a->st[i];
        if (!st->seen)
            continue;
        const fl__series_t *ser = fl__sertab_at(&a->ser, i);
        const char *svc = fl__s(a, ser->svc), *op = fl__s(a, ser->op);
        if (f && (!name_ok(f->service, svc) || !name_ok(f->operation, op)))
            continue;
        fl_baseline_info_t *b = &out->items[n++];
        b->subject = ser->type == FL__SER_ENDPOINT ? FL_SUBJECT_ENDPOINT
                     : ser->type == FL__SER_OP     ? FL_SUBJECT_SELF_TIME
                                                   : FL_SUBJECT_EDGE;
        b->service = adup(ar, svc);
        b->operation = adup(ar, op);
        if (ser->type == FL__SER_EDGE) {
            b->caller_service = adup(ar, fl__s(a, ser->caller_svc));
            b->caller_operation = adup(ar, fl__s(a, ser->caller_op));
        }
        b->virtual_peer = (ser->flags & FL__EDGE_VIRTUAL) != 0;
        /* Latencies are learned as ln(value): show exp(mean) and the spread as a fraction. */
        b->mean_ms = fl__lat_base(&st->m[FL__M_LAT_MEAN]) / 1e6;
        b->mean_spread = fl_ewma_sd(&st->m[FL__M_LAT_MEAN].e);
        b->p95_ms = fl__lat_base(&st->m[FL__M_LAT_P95]) / 1e6;
        b->p95_spread = fl_ewma_sd(&st->m[FL__M_LAT_P95].e);
        b->aux_mean_ms = fl__lat_base(&st->m[FL__M_AUX_MEAN]) / 1e6;
        b->aux_p95_ms = fl__lat_base(&st->m[FL__M_AUX_P95]) / 1e6;
        b->error_rate = st->ew_cnt > 0 ? st->ew_err / st->ew_cnt : 0;
        double sd;
        int hourly;
        int64_t now_b = a->analyzed_next > 0 ? a->analyzed_next - 1 : 0;
        b->rate_per_s = fl__baseline_rate(a, st, now_b, &sd, &hourly) / secs;
        b->rate_sd = sd / secs;
        b->hourly = hourly;
        /* Confidence reaches 1 after 30 learned buckets (5 min) and 100 requests. */
        double cb = (double)st->trained_buckets / 30.0, cr = (double)st->trained_requests / 100.0;
        b->confidence = (cb < 1 ? cb : 1) * (cr < 1 ? cr : 1);
        b->trusted = fl__trusted(a, st);
        b->trained_buckets = st->trained_buckets;
        b->trained_requests = st->trained_requests;
        b->skipped_anomalous = st->skipped_anomalous;
        b->skipped_outliers = st->skipped_outliers;
        b->first_ns = st->first_trained_b >= 0 ? fl__bstart(a, st->first_trained_b) : 0;
        b->updated_ns = st->last_trained_b >= 0 ? fl__bstart(a, st->last_trained_b + 1) : 0;
        if (st->recent_n) {
            b->history = fl_arena_calloc(ar, st->recent_n, sizeof(*b->history));
            if (b->history) {
                for (uint32_t k = 0; k < st->recent_n; k++) {
                    uint32_t idx = (st->recent_head + FL__RECENT - st->recent_n + k) % FL__RECENT;
                    b->history[k] = st->recent[idx];
                }
                b->n_history = st->recent_n;
            }
        }
    }
    out->n = n;
    if (n)
        fl_sort(out->items, n, sizeof(*out->items), bl_cmp);
    pthread_rwlock_unlock(&a->state_lock);
    return rc;
}

/* ---------------------------------------------------------------- anomalies */

static int an_cmp(const void *x, const void *y)
{
    const fl_anomaly_t *p = x, *q = y;
    if (p->start_ns != q->start_ns)
        return p->start_ns < q->start_ns ? -1 : 1;
    return p->id < q->id ? -1 : p->id > q->id;
}

/* Filtered copies in the caller's arena; the service filter also matches an edge's caller
 * so "what is wrong around checkout" finds checkout's calls out too. */
int fl_analysis_anomalies(fl_analysis_t *a, const fl_analysis_filter_t *f, fl_arena_t *ar,
                          fl_analysis_anomalies_t *out)
{
    if (!a || !ar || !out)
        return FL_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&a->state_lock);
    int rc = FL_OK;
    if (a->an_n && !(out->items = fl_arena_calloc(ar, a->an_n, sizeof(*out->items))))
        rc = FL_ERR_NOMEM;
    size_t n = 0;
    for (uint32_t i = 0; !rc && i < a->an_n; i++) {
        const fl__anom_t *x = &a->an[i];
        if (f && f->open_only && !x->open)
            continue;
        uint64_t s = fl__bstart(a, x->start_b), e = fl__bstart(a, x->end_b + 1);
        if (f && f->end_ns && s >= f->end_ns)
            continue;
        /* An open anomaly reaches the present, so it overlaps any range that does. */
        if (f && f->start_ns && e <= f->start_ns && !x->open)
            continue;
        const fl__series_t *ser = fl__sertab_at(&a->ser, x->series);
        if (f && f->service && strcmp(f->service, fl__s(a, ser->svc)) != 0 &&
            !(ser->type == FL__SER_EDGE && strcmp(f->service, fl__s(a, ser->caller_svc)) == 0))
            continue;
        if (f && f->operation && strcmp(f->operation, fl__s(a, ser->op)) != 0)
            continue;
        fl__anom_to_public(a, x, ar, &out->items[n++]);
    }
    out->n = n;
    if (n)
        fl_sort(out->items, n, sizeof(*out->items), an_cmp);
    pthread_rwlock_unlock(&a->state_lock);
    return rc;
}

/* ---------------------------------------------------------------- status */

int fl_analysis_status(fl_analysis_t *a, fl_analysis_status_t *o)
{
    if (!a || !o)
        return FL_ERR_INVALID;
    memset(o, 0, sizeof(*o));
    /* Ingest counters are read without the ingest lock (relaxed loads), so a status call
     * never waits for a batch. */
    o->watermark_ns = ld(&a->wm);
    int64_t sn = __atomic_load_n(&a->sealed_next, __ATOMIC_RELAXED);
    o->closed_until_ns = sn == INT64_MIN ? 0 : fl__bstart(a, sn);
    o->spans_observed = ld(&a->c_spans);
    o->spans_late = ld(&a->c_late);
    o->spans_lost = ld(&a->c_lost);
    o->series_refused = ld(&a->c_refused);
    o->window_evictions = ld(&a->c_evict);
    o->unmatched_clients = ld(&a->c_unmatched);
    o->dropped_buckets = ld(&a->c_dropped_buckets);
    o->window_capacity = a->win.cap;
    o->window_used = __atomic_load_n(&a->win.used, __ATOMIC_RELAXED);
    o->pending_buckets = __atomic_load_n(&a->n_pend, __ATOMIC_RELAXED);
    o->series_endpoints =
        __atomic_load_n(&a->ser.count_by_type[FL__SER_ENDPOINT], __ATOMIC_RELAXED);
    o->series_operations = __atomic_load_n(&a->ser.count_by_type[FL__SER_OP], __ATOMIC_RELAXED);
    o->series_edges = __atomic_load_n(&a->ser.count_by_type[FL__SER_EDGE], __ATOMIC_RELAXED);
    o->series_total = fl__sertab_count(&a->ser);
    pthread_rwlock_rdlock(&a->state_lock);
    o->analyzed_until_ns = a->analyzed_next > 0 ? fl__bstart(a, a->analyzed_next) : 0;
    o->last_run_wall_ns = a->last_run_wall;
    o->last_run_duration_ns = a->last_run_dur;
    o->runs = a->runs;
    o->history_bytes = a->hist.bytes;
    o->history_oldest_ns = fl__history_oldest_ns(&a->hist);
    o->anomalies_open = a->an_open;
    o->anomalies_total = a->an_total;
    pthread_rwlock_unlock(&a->state_lock);
    return FL_OK;
}
