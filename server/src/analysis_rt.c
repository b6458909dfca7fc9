/* SPDX-License-Identifier: Apache-2.0 */
/* The analysis runtime: store commits feed the engine (writer thread), a dedicated thread
 * runs it whenever a bucket may have closed and every --analysis-interval, and closed
 * buckets plus the learned state are persisted in the store so a restart loses nothing. */
#include "analysis_rt.h"

#include <faultline/api.h>

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_KEY "analysis"
#define INCIDENTS_KEY "incidents"
#define RCA_MAX_TRACES 100                          /* traces read per ranking (bounded sample) */
#define STATE_SAVE_EVERY_NS (60ull * 1000000000ull) /* the state blob, at most this often */
#define LOG_ANOMALIES_MAX 20                        /* per run */

struct fl_analysis_rt {
    fl_store_t *store;
    fl_analysis_t *a;
    fl_analysis_opts_t ao;
    uint64_t interval_ns;

    /* writer thread only */
    uint64_t max_end;
    uint64_t signalled_bucket;

    /* wake-ups of the analysis thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake, stop, thread_started;
    pthread_t thread;

    /* runs and persistence, serialised */
    pthread_mutex_t run_mu;
    fl_arena_t *arena; /* the thread's run results */
    fl_buf_t bucket_buf, state_buf;
    uint64_t last_state_save_mono;

    /* figures for /aiops/status (under mu) */
    uint64_t buckets_persisted, persist_errors, state_bytes, last_persist_ns;
    uint64_t buckets_restored, buckets_restore_failed;
    int restored;
    char restore_problem[128];

    /* incidents (the set locks itself; persistence and notification under run_mu) */
    fl_incidents_t *inc;
    fl_webhook_t *wh;
    fl_buf_t inc_buf;
    uint64_t inc_saves, inc_save_errors, inc_restored, rca_runs, rca_errors;

    /* ingest rates: two samples one interval apart (under mu) */
    void *recv;
    fl_analysis_rt_sample_fn sample;
    uint64_t s_prev_ns, s_prev_acc, s_prev_ref, s_cur_ns, s_cur_acc, s_cur_ref;
};

/* ---------------------------------------------------------------- observer (writer thread) */

static void observe(void *ud, const fl_span_t *spans, size_t n)
{
    fl_analysis_rt_t *rt = ud;

    fl_analysis_observe(rt->a, spans, n);
    for (size_t i = 0; i < n; i++)
        if (spans[i].end_ns > rt->max_end)
            rt->max_end = spans[i].end_ns;
    /* A bucket seals once the watermark passes its end + grace: wake the thread once per
     * bucket boundary crossed, not per commit. */
    if (rt->max_end <= rt->ao.grace_ns)
        return;
    uint64_t b = (rt->max_end - rt->ao.grace_ns) / rt->ao.bucket_ns;
    if (b > rt->signalled_bucket) {
        rt->signalled_bucket = b;
        pthread_mutex_lock(&rt->mu);
        rt->wake = 1;
        pthread_cond_signal(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
    }
}

/* ---------------------------------------------------------------- run + persist */

static void log_changes(const fl_analysis_run_result_t *r)
{
    size_t logged = 0;

    for (size_t i = 0; i < r->n_changed && logged < LOG_ANOMALIES_MAX; i++) {
        const fl_anomaly_t *x = &r->changed[i];
        if (x->open && x->buckets > 1)
            continue; /* still open: logged when it opened */
        logged++;
        fl_log(x->open ? FL_LOG_WARN : FL_LOG_INFO, "analysis",
               "anomaly %s service=\"%s\" operation=\"%s\" kind=%s severity=%s summary=\"%s\"",
               x->open ? "opened" : "closed", x->service ? x->service : "",
               x->operation ? x->operation : "", fl_anomaly_kind_name(x->kind),
               fl_severity_name(x->severity), x->summary ? x->summary : "");
    }
}

/* ---------------------------------------------------------------- incidents */

static int fetch_trace(void *ud, const uint8_t trace_id[16], fl_arena_t *arena, fl_span_t **spans,
                       size_t *n)
{
    fl_analysis_rt_t *rt = ud;

    return fl_store_get_trace(rt->store, trace_id, arena, spans, n);
}

/* Persist the incident set under its key. Caller holds run_mu (or is the only user). */
static void save_incidents(fl_analysis_rt_t *rt)
{
    int rc;

    fl_buf_reset(&rt->inc_buf);
    rc = fl_incidents_save(rt->inc, &rt->inc_buf);
    if (rc == FL_OK && rt->store)
        rc = fl_store_analysis_save(rt->store, INCIDENTS_KEY, rt->inc_buf.data, rt->inc_buf.len,
                                    NULL, 0, 0);
    pthread_mutex_lock(&rt->mu);
    if (rc == FL_OK)
        rt->inc_saves++;
    else
        rt->inc_save_errors++;
    pthread_mutex_unlock(&rt->mu);
    if (rc != FL_OK)
        fl_log(FL_LOG_WARN, "analysis", "cannot persist the incidents error=\"%s\"",
               fl_strerror(rc));
}

static void notify_ids(fl_analysis_rt_t *rt, char (*ids)[24], size_t n, fl_arena_t *arena,
                       const char *what)
{
    for (size_t i = 0; i < n; i++) {
        fl_incident_t x;
        if (fl_incidents_get(rt->inc, ids[i], arena, &x) != FL_OK)
            continue;
        if (!strcmp(what, "opened"))
            fl_log(FL_LOG_WARN, "analysis",
                   "incident opened id=%s severity=%s root_cause=\"%s %s\" title=\"%s\"", x.id,
                   fl_severity_name(x.severity), x.n_candidates ? x.root_cause.service : "",
                   x.n_candidates && x.root_cause.operation ? x.root_cause.operation : "",
                   x.title ? x.title : "");
        else if (!strcmp(what, "resolved"))
            fl_log(FL_LOG_INFO, "analysis", "incident %s id=%s", fl_incident_status_name(x.status),
                   x.id);
        fl_webhook_incident(rt->wh, &x);
    }
}

/* After a run: rank the open anomalies' root causes (reading a bounded sample of traces
 * through the store) and feed the incident set at the run's event time; persist and notify
 * what changed. Caller holds run_mu. */
static void update_incidents(fl_analysis_rt_t *rt, const fl_analysis_run_result_t *r,
                             fl_arena_t *arena, fl_incident_changes_t *changes)
{
    fl_analysis_anomalies_t open = {0};
    fl_analysis_filter_t f = {.open_only = 1};
    fl_rca_result_t rca = {0};
    fl_incident_changes_t ch = {0};
    int have_rca = 0, rc;
    uint64_t now = r->closed_until_ns ? r->closed_until_ns : r->watermark_ns;

    if (!r->buckets_closed && !r->n_changed)
        return; /* nothing new in event time */
    if ((rc = fl_analysis_anomalies(rt->a, &f, arena, &open)) != FL_OK)
        return;
    if (open.n) {
        fl_rca_input_t in = {0};
        in.anomalies = open.items;
        in.n_anomalies = open.n;
        in.engine = rt->a;
        in.fetch_trace = rt->store ? fetch_trace : NULL;
        in.fetch_ud = rt;
        in.max_traces = RCA_MAX_TRACES;
        rc = fl_rca_rank(&in, arena, &rca);
        pthread_mutex_lock(&rt->mu);
        rt->rca_runs++;
        rt->rca_errors += rc != FL_OK;
        pthread_mutex_unlock(&rt->mu);
        have_rca = rc == FL_OK;
    }
    if (fl_incidents_update(rt->inc, open.items, open.n, have_rca ? &rca : NULL, now, arena, &ch) !=
        FL_OK)
        return;
    if (changes)
        *changes = ch;
    if (!ch.n_opened && !ch.n_updated && !ch.n_resolved)
        return;
    save_incidents(rt);
    notify_ids(rt, ch.opened, ch.n_opened, arena, "opened");
    notify_ids(rt, ch.updated, ch.n_updated, arena, "updated");
    notify_ids(rt, ch.resolved, ch.n_resolved, arena, "resolved");
}

/* Run, then persist the buckets it closed (and the state when due or forced). Caller holds
 * run_mu. */
static int run_locked(fl_analysis_rt_t *rt, uint64_t until, fl_arena_t *arena,
                      fl_analysis_run_result_t *out, int force_state,
                      fl_incident_changes_t *changes)
{
    fl_store_bucket_t *bk = NULL;
    size_t nb = 0;
    int rc = fl_analysis_run(rt->a, until, arena, out);

    if (rc != FL_OK)
        return rc;
    log_changes(out);
    fl_buf_reset(&rt->bucket_buf);
    if (out->n_buckets) {
        size_t *offs = calloc(out->n_buckets + 1, sizeof(size_t));
        bk = calloc(out->n_buckets, sizeof(*bk));
        if (!offs || !bk) {
            free(offs);
            free(bk);
            return FL_ERR_NOMEM;
        }
        for (size_t i = 0; i < out->n_buckets; i++) {
            size_t before = rt->bucket_buf.len;
            if (fl_analysis_export_bucket(rt->a, out->bucket_starts[i], &rt->bucket_buf) != FL_OK) {
                rt->bucket_buf.len = before; /* not in the finest tier: nothing to keep */
                continue;
            }
            bk[nb].start_ns = out->bucket_starts[i];
            offs[nb] = before;
            bk[nb].len = rt->bucket_buf.len - before;
            nb++;
        }
        for (size_t i = 0; i < nb; i++) /* the buffer may have moved while growing */
            bk[i].data = rt->bucket_buf.data + offs[i];
        free(offs);
    }
    uint64_t now = fl_time_mono_ns();
    int save_state = force_state || (out->buckets_closed > 0 &&
                                     now - rt->last_state_save_mono >= STATE_SAVE_EVERY_NS);
    fl_buf_reset(&rt->state_buf);
    if (save_state && fl_analysis_save(rt->a, &rt->state_buf) != FL_OK) {
        fl_log(FL_LOG_WARN, "analysis", "cannot serialise the analysis state");
        save_state = 0;
    }
    int prc = FL_OK;
    if (nb || save_state)
        prc = fl_store_analysis_save(rt->store, save_state ? STATE_KEY : NULL, rt->state_buf.data,
                                     save_state ? rt->state_buf.len : 0, bk, nb, 0);
    pthread_mutex_lock(&rt->mu);
    if (prc == FL_OK) {
        rt->buckets_persisted += nb;
        if (save_state) {
            rt->state_bytes = rt->state_buf.len;
            rt->last_state_save_mono = now;
        }
        if (nb || save_state)
            rt->last_persist_ns = fl_time_now_ns();
    } else {
        rt->persist_errors++;
    }
    pthread_mutex_unlock(&rt->mu);
    if (prc != FL_OK)
        fl_log(FL_LOG_WARN, "analysis", "cannot persist the analysis buckets=%zu error=\"%s\"", nb,
               fl_strerror(prc));
    free(bk);
    update_incidents(rt, out, arena, changes);
    return FL_OK;
}

int fl_analysis_rt_analyze(void *ud, uint64_t until_ns, fl_arena_t *arena,
                           fl_analysis_run_result_t *out, fl_incident_changes_t *changes)
{
    fl_analysis_rt_t *rt = ud;

    pthread_mutex_lock(&rt->run_mu);
    int rc = run_locked(rt, until_ns, arena, out, 1, changes);
    pthread_mutex_unlock(&rt->run_mu);
    return rc;
}

static void sample_rates(fl_analysis_rt_t *rt)
{
    uint64_t acc = 0, ref = 0;

    if (!rt->sample || rt->sample(rt->recv, &acc, &ref) != 0)
        return;
    pthread_mutex_lock(&rt->mu);
    rt->s_prev_ns = rt->s_cur_ns;
    rt->s_prev_acc = rt->s_cur_acc;
    rt->s_prev_ref = rt->s_cur_ref;
    rt->s_cur_ns = fl_time_mono_ns();
    rt->s_cur_acc = acc;
    rt->s_cur_ref = ref;
    pthread_mutex_unlock(&rt->mu);
}

static void *thread_main(void *arg)
{
    fl_analysis_rt_t *rt = arg;
    uint64_t next = fl_time_mono_ns() + rt->interval_ns;

    for (;;) {
        pthread_mutex_lock(&rt->mu);
        while (!rt->stop && !rt->wake && fl_time_mono_ns() < next) {
            uint64_t wait = next - fl_time_mono_ns();
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + wait;
            ts.tv_sec = (time_t)(t / 1000000000ull);
            ts.tv_nsec = (long)(t % 1000000000ull);
            pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
        }
        int stop = rt->stop;
        rt->wake = 0;
        pthread_mutex_unlock(&rt->mu);
        if (stop)
            break;
        if (fl_time_mono_ns() >= next) {
            sample_rates(rt);
            next = fl_time_mono_ns() + rt->interval_ns;
        }
        fl_analysis_run_result_t res;
        pthread_mutex_lock(&rt->run_mu);
        fl_arena_reset(rt->arena);
        if (run_locked(rt, 0, rt->arena, &res, 0, NULL) != FL_OK)
            fl_log(FL_LOG_WARN, "analysis", "analysis run failed: out of memory");
        pthread_mutex_unlock(&rt->run_mu);
    }
    return NULL;
}

/* ---------------------------------------------------------------- create / restore */

static int import_bucket(void *ud, uint64_t start_ns, const void *data, size_t len)
{
    fl_analysis_rt_t *rt = ud;
    (void)start_ns;

    if (fl_analysis_import_bucket(rt->a, data, len) == FL_OK)
        rt->buckets_restored++;
    else
        rt->buckets_restore_failed++;
    return 0;
}

static void restore(fl_analysis_rt_t *rt)
{
    fl_buf_t buf;
    int rc;

    fl_buf_init(&buf, 0);
    rc = fl_store_analysis_load_state(rt->store, STATE_KEY, &buf);
    if (rc == FL_OK) {
        rc = fl_analysis_restore(rt->a, buf.data, buf.len);
        if (rc == FL_OK) {
            rt->restored = 1;
        } else {
            /* A failed restore leaves the engine unusable: start over, learning afresh. */
            snprintf(rt->restore_problem, sizeof(rt->restore_problem), "%s%s", fl_strerror(rc),
                     rc == FL_ERR_INVALID ? " (saved with another --bucket)" : "");
            fl_log(FL_LOG_WARN, "analysis",
                   "cannot restore the saved analysis state, starting afresh error=\"%s\"",
                   rt->restore_problem);
            fl_analysis_free(rt->a);
            rt->a = fl_analysis_new(&rt->ao);
        }
    } else if (rc != FL_ERR_NOT_FOUND) {
        snprintf(rt->restore_problem, sizeof(rt->restore_problem), "%s", fl_strerror(rc));
        fl_log(FL_LOG_WARN, "analysis", "cannot read the saved analysis state error=\"%s\"",
               rt->restore_problem);
    }
    fl_buf_dispose(&buf);
    fl_buf_init(&buf, 0);
    rc = fl_store_analysis_load_state(rt->store, INCIDENTS_KEY, &buf);
    if (rc == FL_OK) {
        rc = fl_incidents_restore(rt->inc, buf.data, buf.len);
        if (rc == FL_OK) {
            fl_incident_filter_t all = {.status = -1};
            fl_incident_t *items;
            size_t n = 0;
            fl_incidents_list(rt->inc, &all, rt->arena, &items, &n);
            rt->inc_restored = n;
            fl_arena_reset(rt->arena);
        } else {
            fl_log(FL_LOG_WARN, "analysis", "cannot restore the saved incidents error=\"%s\"",
                   fl_strerror(rc));
        }
    } else if (rc != FL_ERR_NOT_FOUND) {
        fl_log(FL_LOG_WARN, "analysis", "cannot read the saved incidents error=\"%s\"",
               fl_strerror(rc));
    }
    fl_buf_dispose(&buf);
    if (!rt->a)
        return;
    if (rt->restored) /* buckets of another width would be refused one by one anyway */
        fl_store_analysis_buckets(rt->store, 0, 0, import_bucket, rt);
    fl_analysis_status_t st;
    fl_analysis_status(rt->a, &st);
    rt->max_end = st.watermark_ns;
    rt->signalled_bucket = st.watermark_ns > rt->ao.grace_ns
                               ? (st.watermark_ns - rt->ao.grace_ns) / rt->ao.bucket_ns
                               : 0;
    fl_log(FL_LOG_INFO, "analysis",
           "analysis ready restored=%s series=%u buckets_restored=%llu buckets_refused=%llu "
           "watermark_ns=%llu",
           rt->restored ? "yes" : "no", st.series_total, (unsigned long long)rt->buckets_restored,
           (unsigned long long)rt->buckets_restore_failed, (unsigned long long)st.watermark_ns);
}

fl_analysis_rt_t *fl_analysis_rt_new(const fl_analysis_rt_opts_t *o, char *err, size_t errlen)
{
    fl_analysis_rt_t *rt = calloc(1, sizeof(*rt));
    const char *why = NULL;
    pthread_condattr_t ca;

    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fl_analysis_opts_default(&rt->ao);
    rt->ao.bucket_ns = o->bucket_ns;
    rt->ao.baseline_window_ns = o->baseline_window_ns;
    rt->ao.anomaly_threshold = o->anomaly_threshold;
    rt->ao.error_rate_threshold = o->error_rate_threshold;
    rt->interval_ns = o->interval_ns;
    rt->store = o->store;
    fl_buf_init(&rt->bucket_buf, 0);
    fl_buf_init(&rt->state_buf, 0);
    fl_buf_init(&rt->inc_buf, 0);
    pthread_mutex_init(&rt->mu, NULL);
    pthread_mutex_init(&rt->run_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (fl_analysis_opts_check(&rt->ao, &why) != FL_OK) {
        snprintf(err, errlen, "invalid analysis option: %s (see --bucket, --baseline-window)",
                 why ? why : "?");
        goto fail;
    }
    rt->a = fl_analysis_new(&rt->ao);
    rt->arena = fl_arena_new(0);
    rt->inc = fl_incidents_new(NULL);
    if (!rt->a || !rt->arena || !rt->inc) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (o->webhooks && *o->webhooks) {
        const char *urls[64];
        char list[4096];
        size_t n = 0;
        fl_webhook_opts_t wo = {0};
        snprintf(list, sizeof(list), "%s", o->webhooks);
        for (char *sp = NULL, *u = strtok_r(list, ",", &sp); u && n < 64;
             u = strtok_r(NULL, ",", &sp))
            if (*u)
                urls[n++] = u;
        wo.urls = urls;
        wo.n_urls = n;
        wo.format = fl_webhook_format_parse(o->webhook_format ? o->webhook_format : "alertmanager");
        if (!wo.format) {
            snprintf(err, errlen, "--webhook-format: %s is not alertmanager, slack or json",
                     o->webhook_format);
            goto fail;
        }
        if (!(rt->wh = fl_webhook_new(&wo, err, errlen)))
            goto fail;
    }
    restore(rt);
    if (!rt->a) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    fl_store_set_observer(rt->store, observe, rt);
    if (pthread_create(&rt->thread, NULL, thread_main, rt) != 0) {
        fl_store_set_observer(rt->store, NULL, NULL);
        snprintf(err, errlen, "cannot start the analysis thread: %s", strerror(errno));
        goto fail;
    }
    rt->thread_started = 1;
    return rt;
fail:
    fl_analysis_rt_free(rt);
    return NULL;
}

void fl_analysis_rt_set_receiver(fl_analysis_rt_t *rt, void *recv, fl_analysis_rt_sample_fn fn)
{
    pthread_mutex_lock(&rt->mu);
    rt->recv = recv;
    rt->sample = fn;
    pthread_mutex_unlock(&rt->mu);
    sample_rates(rt);
}

void *fl_analysis_rt_receiver(fl_analysis_rt_t *rt)
{
    return rt->recv;
}

fl_analysis_t *fl_analysis_rt_engine(fl_analysis_rt_t *rt)
{
    return rt->a;
}

fl_incidents_t *fl_analysis_rt_incidents(fl_analysis_rt_t *rt)
{
    return rt->inc;
}

void fl_analysis_rt_incident_changed(void *ud, const char *id, const char *event)
{
    fl_analysis_rt_t *rt = ud;
    char ids[1][24];
    fl_arena_t *arena = fl_arena_new(0);

    (void)event;
    snprintf(ids[0], sizeof(ids[0]), "%s", id);
    pthread_mutex_lock(&rt->run_mu);
    save_incidents(rt);
    if (arena)
        notify_ids(rt, ids, 1, arena, "changed");
    pthread_mutex_unlock(&rt->run_mu);
    fl_arena_free(arena);
}

void fl_analysis_rt_set_api_port(fl_analysis_rt_t *rt, const char *api_addr, int port)
{
    char host[256], url[300];
    int p = 0;

    if (!rt->wh)
        return;
    if (fl_config_split_addr(api_addr, host, sizeof(host), &p) != 0 || !*host ||
        !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
        snprintf(host, sizeof(host), "127.0.0.1");
    snprintf(url, sizeof(url), strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
    fl_webhook_set_base_url(rt->wh, url);
}

/* ---------------------------------------------------------------- status */

void fl_analysis_rt_status(fl_analysis_rt_t *rt, fl_jw_t *w)
{
    pthread_mutex_lock(&rt->mu);
    fl_jw_key(w, "analysis_runtime");
    fl_jw_obj_begin(w);
    fl_jw_key(w, "interval_s");
    fl_jw_double(w, (double)rt->interval_ns / 1e9);
    fl_jw_key(w, "bucket_s");
    fl_jw_double(w, (double)rt->ao.bucket_ns / 1e9);
    fl_jw_key(w, "baseline_window_s");
    fl_jw_double(w, (double)rt->ao.baseline_window_ns / 1e9);
    fl_jw_key(w, "anomaly_threshold");
    fl_jw_double(w, rt->ao.anomaly_threshold);
    fl_jw_key(w, "error_rate_threshold");
    fl_jw_double(w, rt->ao.error_rate_threshold);
    fl_jw_key(w, "restored");
    fl_jw_bool(w, rt->restored);
    fl_jw_key(w, "restore_problem");
    fl_jw_str(w, rt->restore_problem[0] ? rt->restore_problem : NULL);
    fl_jw_key(w, "buckets_restored");
    fl_jw_uint(w, rt->buckets_restored);
    fl_jw_key(w, "buckets_persisted");
    fl_jw_uint(w, rt->buckets_persisted);
    fl_jw_key(w, "persist_errors");
    fl_jw_uint(w, rt->persist_errors);
    fl_jw_key(w, "state_bytes");
    fl_jw_uint(w, rt->state_bytes);
    fl_jw_key(w, "last_persist");
    if (rt->last_persist_ns)
        fl_jw_time(w, rt->last_persist_ns);
    else
        fl_jw_null(w);
    fl_jw_obj_end(w);
    fl_jw_key(w, "incidents");
    fl_jw_obj_begin(w);
    fl_jw_key(w, "restored");
    fl_jw_uint(w, rt->inc_restored);
    fl_jw_key(w, "saves");
    fl_jw_uint(w, rt->inc_saves);
    fl_jw_key(w, "save_errors");
    fl_jw_uint(w, rt->inc_save_errors);
    fl_jw_key(w, "rca_runs");
    fl_jw_uint(w, rt->rca_runs);
    fl_jw_key(w, "rca_errors");
    fl_jw_uint(w, rt->rca_errors);
    fl_jw_obj_end(w);
    pthread_mutex_unlock(&rt->mu);
    fl_webhook_status(rt->wh, w);
}

void fl_analysis_rt_rates(fl_analysis_rt_t *rt, fl_jw_t *w)
{
    double acc = 0, ref = 0, dt = 0;

    pthread_mutex_lock(&rt->mu);
    if (rt->s_prev_ns && rt->s_cur_ns > rt->s_prev_ns) {
        dt = (double)(rt->s_cur_ns - rt->s_prev_ns) / 1e9;
        acc = (double)(rt->s_cur_acc - rt->s_prev_acc) / dt;
        ref = (double)(rt->s_cur_ref - rt->s_prev_ref) / dt;
    }
    pthread_mutex_unlock(&rt->mu);
    fl_jw_key(w, "spans_per_s");
    fl_jw_double(w, acc);
    fl_jw_key(w, "refusals_per_s");
    fl_jw_double(w, ref);
    fl_jw_key(w, "rate_window_s");
    fl_jw_double(w, dt);
}

/* ---------------------------------------------------------------- stop / free */

void fl_analysis_rt_stop(fl_analysis_rt_t *rt)
{
    if (!rt)
        return;
    if (rt->thread_started) {
        pthread_mutex_lock(&rt->mu);
        rt->stop = 1;
        pthread_cond_signal(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
        pthread_join(rt->thread, NULL);
        rt->thread_started = 0;
    }
    if (!rt->a || !rt->store)
        return;
    fl_store_flush(rt->store); /* every queued commit has been observed */
    fl_analysis_run_result_t res;
    pthread_mutex_lock(&rt->run_mu);
    fl_arena_reset(rt->arena);
    if (run_locked(rt, 0, rt->arena, &res, 1, NULL) != FL_OK)
        fl_log(FL_LOG_WARN, "analysis", "final analysis run failed: out of memory");
    save_incidents(rt); /* acknowledged / resolved state survives a restart */
    pthread_mutex_unlock(&rt->run_mu);
    fl_store_set_observer(rt->store, NULL, NULL);
    rt->store = NULL;
}

void fl_analysis_rt_free(fl_analysis_rt_t *rt)
{
    if (!rt)
        return;
    fl_analysis_rt_stop(rt);
    fl_webhook_free(rt->wh, 2000);
    fl_incidents_free(rt->inc);
    fl_buf_dispose(&rt->inc_buf);
    fl_analysis_free(rt->a);
    fl_arena_free(rt->arena);
    fl_buf_dispose(&rt->bucket_buf);
    fl_buf_dispose(&rt->state_buf);
    pthread_mutex_destroy(&rt->mu);
    pthread_mutex_destroy(&rt->run_mu);
    pthread_cond_destroy(&rt->cv);
    free(rt);
}
