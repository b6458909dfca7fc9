/* SPDX-License-Identifier: Apache-2.0 */
/* Versioned binary forms of the persistent state: the learned state as one blob (names,
 * series, baselines, detector state, anomalies) and closed buckets as self-contained blobs,
 * so the store can keep them in SQLite and put them back after a restart. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

#define STATE_VERSION 1
#define EXPORT_VERSION 1

/* b >= -1 stored as b + 1 */
static int put_b(fl_buf_t *o, int64_t b)
{
    return fl__put_varint(o, (uint64_t)(b + 1));
}

static int64_t get_b(fl__rd_t *r)
{
    return (int64_t)fl__get_varint(r) - 1;
}

static int put_id(fl_buf_t *o, uint32_t id)
{
    return fl__put_varint(o, id == FL__NONE ? 0 : (uint64_t)id + 1);
}

static uint32_t get_id(fl__rd_t *r)
{
    uint64_t v = fl__get_varint(r);
    if (v > UINT32_MAX)
        r->err = 1;
    return v ? (uint32_t)(v - 1) : FL__NONE;
}

/* Field by field, little-endian doubles and varints: portable across hosts, and the
 * version byte lets a later layout add fields. */
static int save_state(fl_buf_t *o, const fl__sstate_t *st)
{
    int rc = fl__put_u8(o, st->seen);
    rc = rc ? rc : put_b(o, st->first_b);
    rc = rc ? rc : put_b(o, st->last_b);
    rc = rc ? rc : put_b(o, st->first_trained_b);
    rc = rc ? rc : put_b(o, st->last_trained_b);
    for (int i = 0; i < FL__M_N && !rc; i++) {
        rc = fl__put_double(o, st->m[i].e.mean);
        rc = rc ? rc : fl__put_double(o, st->m[i].e.var);
        rc = rc ? rc : fl__put_varint(o, st->m[i].e.n);
        rc = rc ? rc : fl__put_varint(o, st->m[i].streak);
    }
    rc = rc ? rc : fl__put_double(o, st->ew_err);
    rc = rc ? rc : fl__put_double(o, st->ew_cnt);
    rc = rc ? rc : fl__put_double(o, st->ew_unans);
    rc = rc ? rc : fl__put_double(o, st->ew_slow[0]);
    rc = rc ? rc : fl__put_double(o, st->ew_slow[1]);
    rc = rc ? rc : fl__put_varint(o, st->trained_buckets);
    rc = rc ? rc : fl__put_varint(o, st->trained_requests);
    rc = rc ? rc : fl__put_varint(o, st->skipped_anomalous);
    rc = rc ? rc : fl__put_varint(o, st->skipped_outliers);
    rc = rc ? rc : fl__put_u8(o, st->n_eval);
    for (int i = 0; i < st->n_eval && !rc; i++)
        rc = put_b(o, st->eval_b[i]);
    for (int d = 0; d < FL__D_N && !rc; d++) {
        rc = fl__put_u8(o, st->det[d].hist);
        rc = rc ? rc : fl__put_u8(o, st->det[d].clear);
        rc = rc ? rc : put_id(o, st->det[d].open);
    }
    rc = rc ? rc : fl__put_u8(o, st->n_known);
    for (int i = 0; i < st->n_known && !rc; i++)
        rc = put_id(o, st->known[i]);
    rc = rc ? rc : put_id(o, st->cand);
    rc = rc ? rc : put_b(o, st->cand_b);
    rc = rc ? rc : fl__put_u8(o, st->profile != NULL);
    if (st->profile && !rc)
        rc = put_b(o, st->profile->first_b);
    for (int h = 0; st->profile && h < 24 && !rc; h++) {
        rc = fl__put_double(o, st->profile->rate_mean[h]);
        rc = rc ? rc : fl__put_double(o, st->profile->rate_var[h]);
        rc = rc ? rc : fl__put_varint(o, st->profile->n[h]);
    }
    rc = rc ? rc : fl__put_u8(o, st->recent_n);
    for (int k = 0; k < st->recent_n && !rc; k++) {
        const fl_baseline_point_t *p =
            &st->recent[(st->recent_head + FL__RECENT - st->recent_n + k) % FL__RECENT];
        rc = fl__put_varint(o, p->time_ns);
        rc = rc ? rc : fl__put_double(o, p->mean_ms);
        rc = rc ? rc : fl__put_double(o, p->p95_ms);
        rc = rc ? rc : fl__put_double(o, p->error_rate);
        rc = rc ? rc : fl__put_double(o, p->rate_per_s);
    }
    return rc;
}

static int load_state(fl__rd_t *r, fl__sstate_t *st, uint32_t n_strings)
{
    st->seen = fl__get_u8(r);
    st->first_b = get_b(r);
    st->last_b = get_b(r);
    st->first_trained_b = get_b(r);
    st->last_trained_b = get_b(r);
    for (int i = 0; i < FL__M_N; i++) {
        st->m[i].e.mean = fl__get_double(r);
        st->m[i].e.var = fl__get_double(r);
        st->m[i].e.n = fl__get_varint(r);
        st->m[i].streak = (uint32_t)fl__get_varint(r);
    }
    st->ew_err = fl__get_double(r);
    st->ew_cnt = fl__get_double(r);
    st->ew_unans = fl__get_double(r);
    st->ew_slow[0] = fl__get_double(r);
    st->ew_slow[1] = fl__get_double(r);
    st->trained_buckets = fl__get_varint(r);
    st->trained_requests = fl__get_varint(r);
    st->skipped_anomalous = fl__get_varint(r);
    st->skipped_outliers = fl__get_varint(r);
    st->n_eval = fl__get_u8(r);
    if (st->n_eval > 8)
        r->err = 1;
    for (int i = 0; i < st->n_eval && !r->err; i++)
        st->eval_b[i] = get_b(r);
    for (int d = 0; d < FL__D_N; d++) {
        st->det[d].hist = fl__get_u8(r);
        st->det[d].clear = fl__get_u8(r);
        st->det[d].open = get_id(r);
    }
    st->n_known = fl__get_u8(r);
    if (st->n_known > FL__KNOWN_TYPES)
        r->err = 1;
    for (int i = 0; i < st->n_known && !r->err; i++) {
        st->known[i] = get_id(r);
        if (st->known[i] >= n_strings)
            r->err = 1;
    }
    st->cand = get_id(r);
    st->cand_b = get_b(r);
    if (st->cand != FL__NONE && st->cand >= n_strings)
        r->err = 1;
    if (fl__get_u8(r) && !r->err) {
        if (!(st->profile = calloc(1, sizeof(*st->profile))))
            return FL_ERR_NOMEM;
        st->profile->first_b = get_b(r);
        for (int h = 0; h < 24; h++) {
            st->profile->rate_mean[h] = (float)fl__get_double(r);
            st->profile->rate_var[h] = (float)fl__get_double(r);
            st->profile->n[h] = (uint32_t)fl__get_varint(r);
        }
    }
    uint8_t rn = fl__get_u8(r);
    if (rn > FL__RECENT)
        r->err = 1;
    if (rn && !r->err) {
        if (!(st->recent = calloc(FL__RECENT, sizeof(*st->recent))))
            return FL_ERR_NOMEM;
        for (int k = 0; k < rn; k++) {
            fl_baseline_point_t *p = &st->recent[k];
            p->time_ns = fl__get_varint(r);
            p->mean_ms = fl__get_double(r);
            p->p95_ms = fl__get_double(r);
            p->error_rate = fl__get_double(r);
            p->rate_per_s = fl__get_double(r);
        }
        st->recent_n = rn;
        st->recent_head = (uint8_t)(rn % FL__RECENT);
    }
    return r->err ? FL_ERR_DECODE : FL_OK;
}

static int save_anom(fl_buf_t *o, const fl__anom_t *x)
{
    uint8_t small[8] = {x->kind,   x->subject,   x->det,      x->open,
                        x->metric, x->direction, x->severity, x->accepted};
    int rc = fl__put_varint(o, x->id);
    rc = rc ? rc : fl__put_varint(o, x->series);
    rc = rc ? rc : fl__put_bytes(o, small, 8);
    rc = rc ? rc : put_id(o, x->etype);
    rc = rc ? rc : put_b(o, x->start_b);
    rc = rc ? rc : put_b(o, x->end_b);
    rc = rc ? rc : put_b(o, x->detected_b);
    double d[5] = {x->observed, x->baseline, x->ratio, x->z, x->peak};
    for (int i = 0; i < 5 && !rc; i++)
        rc = fl__put_double(o, d[i]);
    rc = rc ? rc : fl__put_varint(o, x->samples);
    rc = rc ? rc : fl__put_varint(o, x->buckets);
    rc = rc ? rc : fl__put_u8(o, x->n_traces);
    for (int i = 0; i < x->n_traces && !rc; i++)
        rc = fl__put_bytes(o, x->traces[i], 16);
    return rc;
}

static void load_anom(fl__rd_t *r, fl__anom_t *x)
{
    uint8_t small[8];
    memset(x, 0, sizeof(*x));
    x->id = fl__get_varint(r);
    x->series = (uint32_t)fl__get_varint(r);
    fl__get_bytes(r, small, 8);
    x->kind = small[0];
    x->subject = small[1];
    x->det = small[2];
    x->open = small[3];
    x->metric = small[4];
    x->direction = small[5];
    x->severity = small[6];
    x->accepted = small[7];
    x->etype = get_id(r);
    x->start_b = get_b(r);
    x->end_b = get_b(r);
    x->detected_b = get_b(r);
    x->observed = fl__get_double(r);
    x->baseline = fl__get_double(r);
    x->ratio = fl__get_double(r);
    x->z = fl__get_double(r);
    x->peak = fl__get_double(r);
    x->samples = fl__get_varint(r);
    x->buckets = fl__get_varint(r);
    x->n_traces = fl__get_u8(r);
    if (x->n_traces > FL_ANOMALY_MAX_TRACES || x->det >= FL__D_N)
        r->err = 1;
    for (int i = 0; i < x->n_traces && !r->err; i++)
        fl__get_bytes(r, x->traces[i], 16);
}

int fl_analysis_save(fl_analysis_t *a, fl_buf_t *o)
{
    if (!a || !o)
        return FL_ERR_INVALID;
    /* Names and series only grow and never change once published, so a snapshot of their
     * counts taken under the state lock covers everything the state refers to; ingest goes
     * on meanwhile. */
    pthread_rwlock_rdlock(&a->state_lock);
    uint32_t ns = fl__strtab_count(&a->str), nser = fl__sertab_count(&a->ser);
    uint64_t wm = __atomic_load_n(&a->wm, __ATOMIC_RELAXED);
    int64_t sealed = __atomic_load_n(&a->sealed_next, __ATOMIC_RELAXED);
    int rc = fl__put_bytes(o, "FLA", 3);
    rc = rc ? rc : fl__put_u8(o, STATE_VERSION);
    rc = rc ? rc : fl__put_varint(o, a->o.bucket_ns);
    rc = rc ? rc : fl__put_varint(o, wm);
    rc = rc ? rc : put_b(o, sealed == INT64_MIN ? -1 : sealed);
    rc = rc ? rc : put_b(o, a->analyzed_next);
    rc = rc ? rc : fl__put_varint(o, ns);
    for (uint32_t i = 0; i < ns && !rc; i++)
        rc = fl__put_str(o, fl__strtab_get(&a->str, i));
    rc = rc ? rc : fl__put_varint(o, nser);
    for (uint32_t i = 0; i < nser && !rc; i++) {
        const fl__series_t *s = fl__sertab_at(&a->ser, i);
        rc = fl__put_u8(o, s->type);
        rc = rc ? rc : fl__put_u8(o, s->flags);
        rc = rc ? rc : put_id(o, s->svc);
        rc = rc ? rc : put_id(o, s->op);
        rc = rc ? rc : put_id(o, s->caller_svc);
        rc = rc ? rc : put_id(o, s->caller_op);
    }
    rc = rc ? rc : fl__put_varint(o, a->st_n);
    for (uint32_t i = 0; i < a->st_n && !rc; i++)
        rc = save_state(o, &a->st[i]);
    rc = rc ? rc : fl__put_varint(o, a->an_n);
    rc = rc ? rc : fl__put_varint(o, a->an_total);
    for (uint32_t i = 0; i < a->an_n && !rc; i++)
        rc = save_anom(o, &a->an[i]);
    pthread_rwlock_unlock(&a->state_lock);
    return rc;
}

/* Restore re-interns names and series in their saved order, so every id inside the saved
 * state means the same thing again; any mismatch is a corrupt blob. */
int fl_analysis_restore(fl_analysis_t *a, const void *data, size_t len)
{
    if (!a || (!data && len))
        return FL_ERR_INVALID;
    if (a->c_spans || fl__sertab_count(&a->ser) || a->st_n || a->an_n)
        return FL_ERR_CONFLICT;
    fl__rd_t r = {data, (const uint8_t *)data + len, 0};
    uint8_t magic[3];
    fl__get_bytes(&r, magic, 3);
    uint8_t ver = fl__get_u8(&r);
    if (r.err || memcmp(magic, "FLA", 3) != 0)
        return FL_ERR_DECODE;
    if (ver != STATE_VERSION)
        return ver > STATE_VERSION ? FL_ERR_UNSUPPORTED : FL_ERR_DECODE;
    if (fl__get_varint(&r) != a->o.bucket_ns)
        return r.err ? FL_ERR_DECODE : FL_ERR_INVALID;
    uint64_t wm = fl__get_varint(&r);
    int64_t sealed = get_b(&r), analyzed = get_b(&r);
    uint64_t ns = fl__get_varint(&r);
    if (r.err || ns > a->str.max)
        return FL_ERR_DECODE;
    int rc = FL_OK;
    for (uint64_t i = 0; i < ns && !rc; i++) {
        size_t l;
        const char *s = fl__get_str(&r, &l);
        if (r.err)
            return FL_ERR_DECODE;
        /* Interning in order reproduces the ids ("" is already id 0). */
        if (fl__strtab_intern(&a->str, s, l) != i)
            rc = FL_ERR_DECODE;
    }
    uint64_t nser = fl__get_varint(&r);
    if (rc || r.err || nser > a->ser.max)
        return rc ? rc : FL_ERR_DECODE;
    for (uint64_t i = 0; i < nser; i++) {
        fl__series_t k;
        k.type = fl__get_u8(&r);
        k.flags = fl__get_u8(&r);
        k.svc = get_id(&r);
        k.op = get_id(&r);
        k.caller_svc = get_id(&r);
        k.caller_op = get_id(&r);
        if (r.err || k.svc >= ns || k.op >= ns || !k.type || k.type > FL__SER_EDGE)
            return FL_ERR_DECODE;
        if (fl__sertab_get(&a->ser, &k) != i || fl__acc_slots_reserve(a, (uint32_t)i))
            return FL_ERR_DECODE;
    }
    uint64_t nst = fl__get_varint(&r);
    if (r.err || nst > nser || fl__state_reserve(a, (uint32_t)nst))
        return FL_ERR_DECODE;
    for (uint64_t i = 0; i < nst && !rc; i++)
        rc = load_state(&r, &a->st[i], (uint32_t)ns);
    uint64_t nan = fl__get_varint(&r);
    uint64_t total = fl__get_varint(&r);
    if (rc || r.err || nan > 10000000)
        return rc ? rc : FL_ERR_DECODE;
    if (nan) {
        a->an = calloc(nan, sizeof(*a->an));
        if (!a->an)
            return FL_ERR_NOMEM;
        a->an_cap = (uint32_t)nan;
    }
    for (uint64_t i = 0; i < nan; i++) {
        load_anom(&r, &a->an[i]);
        if (r.err || a->an[i].series >= nser)
            return FL_ERR_DECODE;
        a->an_n++;
        a->an_open += a->an[i].open;
    }
    /* Detector state must point at anomalies that exist. */
    for (uint32_t i = 0; i < a->st_n; i++)
        for (int d = 0; d < FL__D_N; d++)
            if (a->st[i].det[d].open != FL__NONE && a->st[i].det[d].open >= a->an_n)
                return FL_ERR_DECODE;
    a->an_total = total;
    a->wm = wm;
    a->sealed_next = sealed < 0 ? INT64_MIN : sealed;
    a->analyzed_next = analyzed;
    return FL_OK;
}

/* ---------------------------------------------------------------- bucket export/import */

typedef struct ids_ctx {
    uint32_t *series, *strs;
    uint32_t ns, nstr, cs, cstr;
} ids_ctx_t;

static int push_u32(uint32_t **arr, uint32_t *n, uint32_t *cap, uint32_t v)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*arr)[i] == v)
            return FL_OK;
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 64;
        uint32_t *p = realloc(*arr, (size_t)c * sizeof(*p));
        if (!p)
            return FL_ERR_NOMEM;
        *arr = p;
        *cap = c;
    }
    (*arr)[(*n)++] = v;
    return FL_OK;
}

static int collect_ids(void *ctx, const fl__acc_t *c)
{
    ids_ctx_t *x = ctx;
    int rc = push_u32(&x->series, &x->ns, &x->cs, c->series);
    for (int i = 0; i < c->n_etypes && !rc; i++)
        rc = push_u32(&x->strs, &x->nstr, &x->cstr, c->etypes[i]);
    return rc;
}

/* A closed bucket with the names it refers to, so it can be imported into an engine whose
 * ids differ (a restart, another process). */
int fl_analysis_export_bucket(fl_analysis_t *a, uint64_t bucket_start_ns, fl_buf_t *o)
{
    if (!a || !o)
        return FL_ERR_INVALID;
    int64_t b = (int64_t)(bucket_start_ns / a->o.bucket_ns);
    ids_ctx_t ids;
    memset(&ids, 0, sizeof(ids));
    pthread_rwlock_rdlock(&a->state_lock);
    const fl__hslot_t *s = fl__history_find(&a->hist, 0, b);
    int rc = s ? fl__blob_foreach(s->blob, s->len, collect_ids, &ids, NULL) : FL_ERR_NOT_FOUND;
    rc = rc ? rc : fl__put_bytes(o, "FLX", 3);
    rc = rc ? rc : fl__put_u8(o, EXPORT_VERSION);
    rc = rc ? rc : fl__put_varint(o, a->o.bucket_ns);
    rc = rc ? rc : fl__put_varint(o, (uint64_t)b);
    rc = rc ? rc : fl__put_varint(o, ids.ns);
    for (uint32_t i = 0; i < ids.ns && !rc; i++) {
        const fl__series_t *ser = fl__sertab_at(&a->ser, ids.series[i]);
        rc = fl__put_varint(o, ids.series[i]);
        rc = rc ? rc : fl__put_u8(o, ser->type);
        rc = rc ? rc : fl__put_u8(o, ser->flags);
        rc = rc ? rc : fl__put_str(o, fl__s(a, ser->svc));
        rc = rc ? rc : fl__put_str(o, fl__s(a, ser->op));
        rc = rc ? rc : fl__put_str(o, fl__s(a, ser->caller_svc));
        rc = rc ? rc : fl__put_str(o, fl__s(a, ser->caller_op));
    }
    rc = rc ? rc : fl__put_varint(o, ids.nstr);
    for (uint32_t i = 0; i < ids.nstr && !rc; i++) {
        rc = fl__put_varint(o, ids.strs[i]);
        rc = rc ? rc : fl__put_str(o, fl__s(a, ids.strs[i]));
    }
    rc = rc ? rc : fl__put_varint(o, s->len);
    rc = rc ? rc : fl__put_bytes(o, s->blob, s->len);
    pthread_rwlock_unlock(&a->state_lock);
    free(ids.series);
    free(ids.strs);
    return rc;
}

/* Old id -> new id, as parallel sorted-by-insertion arrays (buckets hold few series). */
typedef struct remap {
    uint32_t *from, *to;
    uint32_t n;
    uint32_t *sfrom, *sto;
    uint32_t ns;
    fl__accmap_t out;
    int err;
} remap_t;

static uint32_t lookup(const uint32_t *from, const uint32_t *to, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (from[i] == id)
            return to[i];
    return FL__NONE;
}

static int remap_acc(void *ctx, const fl__acc_t *c)
{
    remap_t *m = ctx;
    uint32_t sid = lookup(m->from, m->to, m->n, c->series);
    if (sid == FL__NONE)
        return FL_OK; /* the cap refused this series: drop its data */
    fl__acc_t *d = fl__accmap_get(&m->out, sid);
    if (!d)
        return FL_ERR_NOMEM;
    fl__acc_t tmp = *c;
    tmp.n_etypes = 0;
    for (int i = 0; i < c->n_etypes; i++) {
        uint32_t e = lookup(m->sfrom, m->sto, m->ns, c->etypes[i]);
        if (e != FL__NONE) {
            tmp.etype_cnt[tmp.n_etypes] = c->etype_cnt[i];
            tmp.etypes[tmp.n_etypes++] = e;
        }
    }
    tmp.series = sid;
    return fl__acc_merge(d, &tmp);
}

/* Names and series are created under the ingest lock (they belong to the ingest side),
 * the blob is remapped to local ids, then put into the history under the state lock. */
int fl_analysis_import_bucket(fl_analysis_t *a, const void *data, size_t len)
{
    if (!a || !data)
        return FL_ERR_INVALID;
    fl__rd_t r = {data, (const uint8_t *)data + len, 0};
    uint8_t magic[3];
    fl__get_bytes(&r, magic, 3);
    uint8_t ver = fl__get_u8(&r);
    if (r.err || memcmp(magic, "FLX", 3) != 0)
        return FL_ERR_DECODE;
    if (ver != EXPORT_VERSION)
        return ver > EXPORT_VERSION ? FL_ERR_UNSUPPORTED : FL_ERR_DECODE;
    if (fl__get_varint(&r) != a->o.bucket_ns)
        return r.err ? FL_ERR_DECODE : FL_ERR_INVALID;
    int64_t b = (int64_t)fl__get_varint(&r);
    uint64_t nser = fl__get_varint(&r);
    if (r.err || nser > (1u << 22))
        return FL_ERR_DECODE;
    remap_t m;
    memset(&m, 0, sizeof(m));
    m.from = malloc((nser + 1) * sizeof(uint32_t));
    m.to = malloc((nser + 1) * sizeof(uint32_t));
    int rc = m.from && m.to ? FL_OK : FL_ERR_NOMEM;
    pthread_mutex_lock(&a->ingest_mu);
    for (uint64_t i = 0; i < nser && !rc; i++) {
        fl__series_t k;
        size_t l1, l2, l3, l4;
        uint32_t old = (uint32_t)fl__get_varint(&r);
        k.type = fl__get_u8(&r);
        k.flags = fl__get_u8(&r);
        const char *s1 = fl__get_str(&r, &l1), *s2 = fl__get_str(&r, &l2);
        const char *s3 = fl__get_str(&r, &l3), *s4 = fl__get_str(&r, &l4);
        if (r.err || !k.type || k.type > FL__SER_EDGE) {
            rc = FL_ERR_DECODE;
            break;
        }
        int edge = k.type == FL__SER_EDGE;
        k.svc = fl__strtab_intern(&a->str, s1, l1);
        k.op = fl__strtab_intern(&a->str, s2, l2);
        k.caller_svc = edge ? fl__strtab_intern(&a->str, s3, l3) : FL__NONE;
        k.caller_op = edge ? fl__strtab_intern(&a->str, s4, l4) : FL__NONE;
        uint32_t id = FL__NONE;
        if (k.svc != FL__NONE && k.op != FL__NONE &&
            (!edge || (k.caller_svc != FL__NONE && k.caller_op != FL__NONE)))
            id = fl__sertab_get(&a->ser, &k);
        if (id != FL__NONE && fl__acc_slots_reserve(a, id))
            id = FL__NONE;
        m.from[m.n] = old;
        m.to[m.n++] = id;
    }
    uint64_t nstr = rc ? 0 : fl__get_varint(&r);
    if (!rc && (r.err || nstr > 65536))
        rc = FL_ERR_DECODE;
    if (!rc && nstr) {
        m.sfrom = malloc(nstr * sizeof(uint32_t));
        m.sto = malloc(nstr * sizeof(uint32_t));
        if (!m.sfrom || !m.sto)
            rc = FL_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < nstr && !rc; i++) {
        size_t l;
        uint32_t old = (uint32_t)fl__get_varint(&r);
        const char *s = fl__get_str(&r, &l);
        if (r.err) {
            rc = FL_ERR_DECODE;
            break;
        }
        m.sfrom[m.ns] = old;
        m.sto[m.ns++] = fl__strtab_intern(&a->str, s, l);
    }
    pthread_mutex_unlock(&a->ingest_mu);
    /* The blob itself is re-encoded with local ids; series the cap refuses are dropped. */
    uint64_t blen = rc ? 0 : fl__get_varint(&r);
    if (!rc && (r.err || blen > (uint64_t)(r.end - r.p)))
        rc = FL_ERR_DECODE;
    uint64_t spans = 0;
    if (!rc)
        rc = fl__blob_foreach(r.p, (uint32_t)blen, remap_acc, &m, &spans);
    fl_buf_t blob;
    fl_buf_init(&blob, 0);
    if (!rc) {
        fl__accmap_sort(&m.out);
        rc = fl__blob_encode(m.out.accs, m.out.n, spans, &blob);
    }
    if (!rc) {
        pthread_rwlock_wrlock(&a->state_lock);
        rc = fl__state_reserve(a, fl__sertab_count(&a->ser));
        rc = rc ? rc : fl__history_import(&a->hist, b, blob.data, (uint32_t)blob.len);
        pthread_rwlock_unlock(&a->state_lock);
    }
    fl_buf_dispose(&blob);
    fl__accmap_dispose(&m.out);
    free(m.from);
    free(m.to);
    free(m.sfrom);
    free(m.sto);
    return rc;
}
