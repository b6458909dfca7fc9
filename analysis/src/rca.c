/* SPDX-License-Identifier: Apache-2.0 */
/* Root-cause ranking: per-trace error origins and latency culprits against learned baselines,
 * the open anomalies, graph propagation and spectrum support, grouped into unrelated faults. */
#include "analysis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SVC 256 /* reachability is computed for at most this many services */

enum { M_SELF = 0, M_GAP = 1, M_CALL = 2 }; /* what a unit's value measures */
enum { K_LAT = 0, K_ERR = 1, K_TMO = 2, K_TRF = 3, K_N = 4 };

/* A blamed unit: (service, operation, metric). Candidates merge the metrics of one
 * (service, operation). */
typedef struct unit {
    const char *svc, *op;
    uint8_t metric, virt;
    uint32_t svc_id; /* index into the service table */
    uint32_t cand;   /* candidate index */
    double base_ms;  /* learned (or sampled) normal value, ms */
    int has_base;
    uint32_t last_trace; /* de-duplication of per-trace counts (trace index + 1) */
    double trace_excess; /* excess summed over the current trace's critical spans */
    double trace_value;
    double win_sum, ref_sum; /* values in window (anomalous-period) and reference traces */
    uint32_t win_n, ref_n;
    uint32_t kmin, kn; /* fewest children a reference span of it had; spans seen */
    uint32_t k0, w0;   /* reference / window spans of it without any child */
    double cut_share;  /* of its childless window spans, the share beyond the usual */
} unit_t;

typedef struct cand {
    const char *svc, *op;
    uint8_t virt;
    uint32_t svc_id;
    double w[K_N];    /* evidence weight per kind */
    double votes;     /* anomalous traces blaming it (fractional for ties) */
    double err_votes; /* ... of which for errors */
    uint32_t ef, ep;  /* spectrum: anomalous / normal traces showing its symptom */
    double obs_sum;   /* latency observed over blaming traces, ms */
    double base_ms;   /* latency baseline, ms */
    uint32_t obs_n;
    int gap; /* its latency evidence is a call gap */
    uint32_t err_traces;
    uint32_t anomalies; /* anomalies it explains */
    double pop;         /* population shift: ln(window mean / baseline) of its worst unit */
    double pop_obs, pop_base;
    int pop_gap;
    double anom_w; /* anomaly evidence (severity) */
    const fl_anomaly_t *best_anom;
    double score, conf;
    uint32_t last_trace; /* spectrum: counted once per trace */
    uint32_t group;
    int root;
    size_t n_ex;
    uint8_t ex[FL_ANOMALY_MAX_TRACES][16];
} cand_t;

typedef struct ctx {
    const fl_rca_input_t *in;
    fl_arena_t *scr; /* scratch: names, traces */
    unit_t *units;
    uint32_t n_units, cap_units;
    uint32_t *uslot; /* hash: unit index + 1 */
    uint32_t umask;
    cand_t *cands;
    uint32_t n_cands, cap_cands;
    const char *svcs[MAX_SVC];
    uint32_t n_svcs;
    uint8_t reach[MAX_SVC][MAX_SVC / 8]; /* reach[a] bit b: a calls b, transitively */
    fl_analysis_baselines_t bl;
    uint32_t traces, anomalous, win_traces;
    uint32_t err_anom, lat_anom; /* anomalous traces by evidence: errors / latency */
    /* answered calls seen in the sample: (caller service, client op) -> callee unit, so an
     * unanswered call is charged to the callee that normally answers it */
    struct callee_map {
        const char *caller, *op;
        uint32_t unit;
    } cmap[64];
    uint32_t n_cmap;
    struct gapv {
        uint32_t caller, callee; /* candidates */
        double votes;
    } gv[512];
    uint32_t n_gv;
    /* gap populations per (caller service, callee unit) */
    struct gpop {
        uint32_t caller_svc, caller_cand, unit;
        double win_sum, ref_sum;
        uint32_t win_n, ref_n;
    } gp[1024];
    uint32_t n_gp;
    double win_root_ms;       /* summed root durations of window traces */
    uint8_t fan_pop[MAX_SVC]; /* ... because calls into most of their callees slowed */
    uint8_t faulty[MAX_SVC];  /* an open anomaly other than a traffic change names it */
} ctx_t;

#define MAX_GV 512
#define MIN_ERR_TRACES 5 /* error evidence counts from this many error traces on */

static uint64_t hstr(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static uint32_t svc_id(ctx_t *c, const char *s)
{
    if (!s)
        return FL__NONE;
    for (uint32_t i = 0; i < c->n_svcs; i++)
        if (strcmp(c->svcs[i], s) == 0)
            return i;
    if (c->n_svcs == MAX_SVC)
        return FL__NONE;
    c->svcs[c->n_svcs] = s;
    return c->n_svcs++;
}

static void add_edge(ctx_t *c, uint32_t a, uint32_t b)
{
    if (a == FL__NONE || b == FL__NONE || a == b)
        return;
    c->reach[a][b / 8] |= (uint8_t)(1u << (b % 8));
}

/* 1 when service a calls b directly or transitively. */
static int calls(const ctx_t *c, uint32_t a, uint32_t b)
{
    if (a == FL__NONE || b == FL__NONE || a == b)
        return 0;
    return (c->reach[a][b / 8] >> (b % 8)) & 1;
}

static void close_reach(ctx_t *c)
{
    /* Warshall over bit rows: n^3/8 byte operations, n <= 256. */
    size_t nb = (c->n_svcs + 7) / 8;
    for (uint32_t k = 0; k < c->n_svcs; k++)
        for (uint32_t i = 0; i < c->n_svcs; i++)
            if ((c->reach[i][k / 8] >> (k % 8)) & 1)
                for (size_t j = 0; j < nb; j++)
                    c->reach[i][j] |= c->reach[k][j];
}

static uint32_t cand_get(ctx_t *c, const char *svc, const char *op, int virt)
{
    for (uint32_t i = 0; i < c->n_cands; i++)
        if (strcmp(c->cands[i].svc, svc) == 0 && strcmp(c->cands[i].op, op) == 0)
            return i;
    if (c->n_cands == c->cap_cands) {
        uint32_t nc = c->cap_cands ? c->cap_cands * 2 : 64;
        cand_t *p = realloc(c->cands, nc * sizeof(*p));
        if (!p)
            return FL__NONE;
        c->cands = p;
        c->cap_cands = nc;
    }
    cand_t *x = &c->cands[c->n_cands];
    memset(x, 0, sizeof(*x));
    x->svc = svc;
    x->op = op;
    x->virt = (uint8_t)virt;
    x->svc_id = svc_id(c, svc);
    return c->n_cands++;
}

static int units_grow(ctx_t *c)
{
    uint32_t nc = c->cap_units ? c->cap_units * 2 : 256;
    unit_t *p = realloc(c->units, nc * sizeof(*p));
    uint32_t *slots = calloc(nc * 2, sizeof(*slots));
    if (!p || !slots) {
        if (p)
            c->units = p;
        free(slots);
        return FL_ERR_NOMEM;
    }
    c->units = p;
    c->cap_units = nc;
    free(c->uslot);
    c->uslot = slots;
    c->umask = nc * 2 - 1;
    for (uint32_t i = 0; i < c->n_units; i++) {
        uint64_t h = hstr(hstr(c->units[i].metric + 1, c->units[i].svc), c->units[i].op);
        uint32_t j = (uint32_t)h & c->umask;
        while (c->uslot[j])
            j = (j + 1) & c->umask;
        c->uslot[j] = i + 1;
    }
    return FL_OK;
}

static const fl_baseline_info_t *find_base(const ctx_t *c, int subject, const char *svc,
                                           const char *op)
{
    for (size_t i = 0; i < c->bl.n; i++) {
        const fl_baseline_info_t *b = &c->bl.items[i];
        if ((int)b->subject == subject && b->trusted && strcmp(b->service, svc) == 0 &&
            strcmp(b->operation, op) == 0)
            return b;
    }
    return NULL;
}

/* The unit for (svc, op, metric), created with its learned baseline. FL__NONE on OOM. */
static uint32_t unit_get(ctx_t *c, const char *svc, size_t svc_len, const char *op, int metric,
                         int virt)
{
    char sbuf[256];
    snprintf(sbuf, sizeof(sbuf), "%.*s", (int)svc_len, svc);
    uint64_t h = hstr(hstr((uint64_t)metric + 1, sbuf), op);
    if (c->cap_units) {
        uint32_t j = (uint32_t)h & c->umask;
        for (; c->uslot[j]; j = (j + 1) & c->umask) {
            unit_t *u = &c->units[c->uslot[j] - 1];
            if (u->metric == metric && strcmp(u->svc, sbuf) == 0 && strcmp(u->op, op) == 0)
                return c->uslot[j] - 1;
        }
    }
    if (c->n_units * 2 >= c->cap_units && units_grow(c) != FL_OK)
        return FL__NONE;
    unit_t *u = &c->units[c->n_units];
    memset(u, 0, sizeof(*u));
    u->svc = fl_arena_strdup(c->scr, sbuf);
    u->op = fl_arena_strdup(c->scr, op);
    if (!u->svc || !u->op)
        return FL__NONE;
    u->metric = (uint8_t)metric;
    u->virt = (uint8_t)virt;
    u->kmin = UINT32_MAX;
    u->svc_id = svc_id(c, u->svc);
    u->cand = cand_get(c, u->svc, u->op, virt);
    if (u->cand == FL__NONE)
        return FL__NONE;
    const fl_baseline_info_t *b = NULL;
    if (metric == M_SELF) {
        b = find_base(c, FL_SUBJECT_SELF_TIME, u->svc, u->op);
        if (!b)
            b = find_base(c, FL_SUBJECT_ENDPOINT, u->svc, u->op);
        if (b && b->aux_mean_ms > 0) {
            u->base_ms = b->aux_mean_ms;
            u->has_base = 1;
        }
    } else {
        b = find_base(c, FL_SUBJECT_EDGE, u->svc, u->op);
        if (b) {
            u->base_ms = metric == M_GAP ? b->aux_mean_ms : b->mean_ms;
            u->has_base = 1;
        }
    }
    uint32_t j = (uint32_t)h & c->umask;
    while (c->uslot[j])
        j = (j + 1) & c->umask;
    c->uslot[j] = c->n_units + 1;
    return c->n_units++;
}

/* ---------------------------------------------------------------- one trace */

typedef struct tspan {
    const fl_span_t *s;
    uint32_t parent, first_child, next_sib;
    uint32_t depth;
    uint32_t unit;   /* blamed unit of its self time */
    uint32_t callee; /* for caller-side spans: the child in another service, FL__NONE */
    uint8_t crit, err, tmo, caller_side;
    uint64_t self;
} tspan_t;

typedef struct idx {
    uint64_t id;
    uint32_t i;
} idx_t;

static int idx_cmp(const void *x, const void *y)
{
    const idx_t *a = x, *b = y;
    return a->id < b->id ? -1 : a->id > b->id;
}

static fl_str_t span_svc(const fl_span_t *s)
{
    if (s->resource && s->resource->service_name.len)
        return s->resource->service_name;
    return FL_STR_LIT("unknown_service");
}

static int same_svc(const fl_span_t *a, const fl_span_t *b)
{
    return fl_str_eq(span_svc(a), span_svc(b));
}

/* The callee an unanswered call from caller went to, as an open anomaly on the edge names
 * it (the engine's learned peer map charges unanswered calls to the known callee). */
static const fl_anomaly_t *edge_anomaly_from(const ctx_t *c, fl_str_t caller)
{
    const fl_anomaly_t *best = NULL;
    for (size_t i = 0; i < c->in->n_anomalies; i++) {
        const fl_anomaly_t *a = &c->in->anomalies[i];
        if ((a->subject != FL_SUBJECT_EDGE && a->subject != FL_SUBJECT_EDGE_GAP) ||
            !a->caller_service || strlen(a->caller_service) != caller.len ||
            memcmp(a->caller_service, caller.ptr, caller.len) != 0)
            continue;
        if (!best || a->kind == FL_ANOMALY_TIMEOUT ||
            (best->kind != FL_ANOMALY_TIMEOUT && a->severity > best->severity))
            best = a;
    }
    return best;
}

static void add_example(cand_t *x, const uint8_t tid[16])
{
    for (size_t i = 0; i < x->n_ex; i++)
        if (memcmp(x->ex[i], tid, 16) == 0)
            return;
    if (x->n_ex < FL_ANOMALY_MAX_TRACES)
        memcpy(x->ex[x->n_ex++], tid, 16);
}

static int is_example(const ctx_t *c, const uint8_t tid[16])
{
    for (size_t i = 0; i < c->in->n_anomalies; i++)
        for (size_t j = 0; j < c->in->anomalies[i].n_trace_ids; j++)
            if (memcmp(c->in->anomalies[i].trace_ids[j], tid, 16) == 0)
                return 1;
    return 0;
}

/* A latency vote for the callee of a gap, remembered with its caller: when one caller sees
 * gaps into several callees, or is slow itself, the caller is the cause (its own CPU or
 * network), not the callees. */
static void gap_vote(ctx_t *c, const tspan_t *t, const fl_span_t *spans, uint32_t i, uint32_t cand)
{
    uint32_t e = i;
    while (t[e].parent != FL__NONE && same_svc(&spans[t[e].parent], &spans[i]))
        e = t[e].parent;
    fl_str_t sv = span_svc(&spans[i]);
    char op[256];
    fl__span_facts_t f;
    fl__span_facts(&spans[e], &f);
    fl__op_name(&spans[e], &f, op, sizeof(op));
    const char *svc = fl_arena_strndup(c->scr, sv.ptr, sv.len);
    if (!svc)
        return;
    uint32_t caller = cand_get(c, svc, op, 0);
    if (caller == FL__NONE)
        return;
    for (uint32_t k = 0; k < c->n_gv; k++)
        if (c->gv[k].caller == caller && c->gv[k].callee == cand) {
            c->gv[k].votes += 1;
            return;
        }
    if (c->n_gv < MAX_GV)
        c->gv[c->n_gv++] = (struct gapv){caller, cand, 1};
}

static void gap_pop(ctx_t *c, const tspan_t *t, const fl_span_t *spans, uint32_t i, uint32_t unit,
                    double v, int ref)
{
    fl_str_t sv = span_svc(&spans[i]);
    uint32_t cs = FL__NONE;
    for (uint32_t k = 0; k < c->n_svcs; k++)
        if (strlen(c->svcs[k]) == sv.len && memcmp(c->svcs[k], sv.ptr, sv.len) == 0)
            cs = k;
    if (cs == FL__NONE) {
        const char *nm = fl_arena_strndup(c->scr, sv.ptr, sv.len);
        if (!nm || (cs = svc_id(c, nm)) == FL__NONE)
            return;
    }
    struct gpop *g = NULL;
    for (uint32_t k = 0; k < c->n_gp && !g; k++)
        if (c->gp[k].caller_svc == cs && c->gp[k].unit == unit)
            g = &c->gp[k];
    if (!g) {
        if (c->n_gp == 1024)
            return;
        uint32_t e = i;
        while (t[e].parent != FL__NONE && same_svc(&spans[t[e].parent], &spans[i]))
            e = t[e].parent;
        char op[256];
        fl__span_facts_t f;
        fl__span_facts(&spans[e], &f);
        fl__op_name(&spans[e], &f, op, sizeof(op));
        const char *o = fl_arena_strdup(c->scr, op);
        uint32_t cc = o ? cand_get(c, c->svcs[cs], o, 0) : FL__NONE;
        if (cc == FL__NONE)
            return;
        g = &c->gp[c->n_gp++];
        memset(g, 0, sizeof(*g));
        g->caller_svc = cs;
        g->caller_cand = cc;
        g->unit = unit;
    }
    if (ref) {
        g->ref_sum += v;
        g->ref_n++;
    } else {
        g->win_sum += v;
        g->win_n++;
    }
}

/* Build the span tree, blame units and the critical path. pass 0 only records the values
 * (for sampled baselines); pass 1 votes. */
static int analyse_trace(ctx_t *c, const fl_span_t *spans, size_t n, int ref, int pass,
                         double *vals, uint32_t *val_units, size_t *n_vals, size_t cap_vals)
{
    int rc = FL_ERR_NOMEM;
    tspan_t *t = calloc(n ? n : 1, sizeof(*t));
    idx_t *ix = calloc(n ? n : 1, sizeof(*ix));
    uint64_t *self = calloc(n ? n : 1, sizeof(*self));
    uint32_t *order = calloc(n ? n : 1, sizeof(*order));
    if (!t || !ix || !self || !order)
        goto out;
    if ((rc = fl_analysis_trace_self_time(spans, n, self)) != FL_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        memcpy(&ix[i].id, spans[i].span_id, 8);
        ix[i].i = (uint32_t)i;
        t[i] = (tspan_t){.s = &spans[i],
                         .parent = FL__NONE,
                         .first_child = FL__NONE,
                         .next_sib = FL__NONE,
                         .callee = FL__NONE,
                         .self = self[i]};
    }
    fl_sort(ix, n, sizeof(*ix), idx_cmp);
    for (size_t i = 0; i < n; i++) {
        idx_t key;
        memcpy(&key.id, spans[i].parent_span_id, 8);
        if (!key.id)
            continue;
        idx_t *p = bsearch(&key, ix, n, sizeof(*ix), idx_cmp);
        if (!p || p->i == i)
            continue;
        t[i].parent = p->i;
        t[i].next_sib = t[p->i].first_child;
        t[p->i].first_child = (uint32_t)i;
    }
    /* depth (parents before children is not guaranteed: iterate to a fixed bound) */
    for (size_t i = 0; i < n; i++) {
        uint32_t d = 0;
        for (uint32_t p = t[i].parent; p != FL__NONE && d < 256; p = t[p].parent)
            d++;
        t[i].depth = d;
    }
    /* facts, blame units */
    char op[256], peer[256];
    for (size_t i = 0; i < n; i++) {
        const fl_span_t *s = &spans[i];
        fl__span_facts_t f;
        fl__span_facts(s, &f);
        t[i].err = (uint8_t)f.is_error;
        t[i].tmo = (uint8_t)f.timeout_hint;
        fl_str_t sv = span_svc(s);
        uint32_t callee = FL__NONE;
        uint64_t cl = 0;
        for (uint32_t ch = t[i].first_child; ch != FL__NONE; ch = t[ch].next_sib) {
            if (same_svc(&spans[ch], s))
                continue;
            uint64_t d = spans[ch].end_ns - spans[ch].start_ns;
            if (callee == FL__NONE || d > cl) {
                callee = ch;
                cl = d;
            }
        }
        int caller_side = s->kind == FL_KIND_CLIENT || s->kind == FL_KIND_PRODUCER ||
                          (callee != FL__NONE && s->kind != FL_KIND_SERVER &&
                           s->kind != FL_KIND_CONSUMER && t[i].parent != FL__NONE);
        t[i].caller_side = (uint8_t)caller_side;
        t[i].callee = callee;
        fl__op_name(s, &f, op, sizeof(op));
        uint32_t u;
        char cop[256];
        snprintf(cop, sizeof(cop), "%s", op);
        const struct callee_map *known = NULL;
        for (uint32_t k = 0; k < c->n_cmap && !known; k++)
            if (strcmp(c->cmap[k].op, cop) == 0 && strlen(c->cmap[k].caller) == sv.len &&
                memcmp(c->cmap[k].caller, sv.ptr, sv.len) == 0)
                known = &c->cmap[k];
        if (caller_side && callee != FL__NONE) {
            /* The caller-side self time is the gap: network, queue, proxies. The user-facing
             * convention blames the callee. */
            fl__span_facts_t cf;
            fl__span_facts(&spans[callee], &cf);
            fl__op_name(&spans[callee], &cf, op, sizeof(op));
            fl_str_t cs = span_svc(&spans[callee]);
            u = unit_get(c, cs.ptr, cs.len, op, M_GAP, 0);
            if (u != FL__NONE && !known && c->n_cmap < 64) {
                const char *cn = fl_arena_strndup(c->scr, sv.ptr, sv.len);
                const char *on = fl_arena_strdup(c->scr, cop);
                uint32_t cu = unit_get(c, cs.ptr, cs.len, op, M_CALL, 0);
                if (cn && on && cu != FL__NONE)
                    c->cmap[c->n_cmap++] = (struct callee_map){cn, on, cu};
            }
        } else if (caller_side && known) {
            u = known->unit;
        } else if (caller_side && (s->kind == FL_KIND_CLIENT || f.db_system.len) &&
                   fl__peer_name(&f, peer, sizeof(peer))) {
            u = unit_get(c, peer, strlen(peer), op, M_CALL, 1);
        } else if (s->kind == FL_KIND_CLIENT) {
            const fl_anomaly_t *a = edge_anomaly_from(c, sv);
            if (a)
                u = unit_get(c, a->service, strlen(a->service), a->operation ? a->operation : "",
                             M_CALL, a->virtual_peer);
            else
                u = unit_get(c, sv.ptr, sv.len, op, M_SELF, 0);
        } else {
            u = unit_get(c, sv.ptr, sv.len, op, M_SELF, 0);
        }
        if (u == FL__NONE) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        t[i].unit = u;
        if (t[i].parent != FL__NONE && !same_svc(&spans[t[i].parent], s)) {
            char b2[256];
            fl_str_t ps = span_svc(&spans[t[i].parent]);
            snprintf(b2, sizeof(b2), "%.*s", (int)ps.len, ps.ptr);
            snprintf(op, sizeof(op), "%.*s", (int)sv.len, sv.ptr);
            const char *a1 = fl_arena_strdup(c->scr, b2), *a2 = fl_arena_strdup(c->scr, op);
            if (a1 && a2)
                add_edge(c, svc_id(c, a1), svc_id(c, a2));
        }
        if (c->units[u].virt)
            add_edge(c, svc_id(c, fl_arena_strndup(c->scr, sv.ptr, sv.len)), c->units[u].svc_id);
    }
    if (pass == 0) {
        for (size_t i = 0; i < n && *n_vals < cap_vals; i++) {
            vals[*n_vals] = (double)t[i].self / 1e6;
            val_units[(*n_vals)++] = t[i].unit;
            unit_t *u = &c->units[t[i].unit];
            double v = vals[*n_vals - 1];
            if (ref) {
                u->ref_sum += v;
                u->ref_n++;
            } else {
                u->win_sum += v;
                u->win_n++;
                if (t[i].parent == FL__NONE)
                    c->win_root_ms += (double)(spans[i].end_ns - spans[i].start_ns) / 1e6;
            }
            if (u->metric == M_GAP)
                gap_pop(c, t, spans, (uint32_t)i, t[i].unit, v, ref);
            if (u->metric == M_SELF) {
                uint32_t nk = 0;
                for (uint32_t ch = t[i].first_child; ch != FL__NONE; ch = t[ch].next_sib)
                    nk++;
                if (ref && nk < u->kmin)
                    u->kmin = nk;
                u->kn += ref;
                u->k0 += ref && !nk;
                u->w0 += !ref && !nk;
            }
        }
        if (!ref)
            c->win_traces++;
        rc = FL_OK;
        goto out;
    }
    /* Critical path: from each root, walk the children backwards from the parent's end; a
     * child is critical when it ends before the current frontier (overlapping async
     * children that finish earlier are not). */
    size_t no = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].parent == FL__NONE) {
            t[i].crit = 1;
            order[no++] = (uint32_t)i;
        }
    for (size_t k = 0; k < no; k++) {
        uint32_t p = order[k];
        uint64_t cur = spans[p].end_ns;
        for (;;) {
            uint32_t best = FL__NONE;
            uint64_t be = 0;
            for (uint32_t ch = t[p].first_child; ch != FL__NONE; ch = t[ch].next_sib) {
                if (t[ch].crit)
                    continue;
                uint64_t e =
                    spans[ch].end_ns < spans[p].end_ns ? spans[ch].end_ns : spans[p].end_ns;
                if (e <= cur && (best == FL__NONE || e > be)) {
                    best = ch;
                    be = e;
                }
            }
            if (best == FL__NONE)
                break;
            t[best].crit = 1;
            if (no < n)
                order[no++] = best;
            cur = spans[best].start_ns;
        }
    }
    uint32_t tno = c->traces + 1;
    const uint8_t *tid = spans[0].trace_id;
    /* error origins: erroring spans none of whose children err */
    uint32_t max_depth = 0, n_orig = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].err)
            continue;
        int explained = 0;
        for (uint32_t ch = t[i].first_child; ch != FL__NONE; ch = t[ch].next_sib)
            if (t[ch].err)
                explained = 1;
        if (explained)
            continue;
        if (!n_orig || t[i].depth > max_depth) {
            max_depth = t[i].depth;
            n_orig = 0;
        }
        if (t[i].depth == max_depth)
            n_orig++;
    }
    /* latency: excess per unit over the critical spans */
    for (size_t i = 0; i < n; i++) {
        unit_t *u = &c->units[t[i].unit];
        if (u->last_trace != tno) {
            u->last_trace = tno;
            u->trace_excess = 0;
            u->trace_value = 0;
        }
        double v = (double)t[i].self / 1e6;
        u->trace_value += v;
        if (t[i].crit && u->has_base)
            u->trace_excess += v - u->base_ms;
    }
    uint32_t culprit = FL__NONE;
    double cex = 0;
    for (size_t i = 0; i < n; i++) {
        unit_t *u = &c->units[t[i].unit];
        if (!t[i].crit || !u->has_base)
            continue;
        if (u->trace_excess > cex) {
            cex = u->trace_excess;
            culprit = t[i].unit;
        }
    }
    int lat_anom = 0;
    if (culprit != FL__NONE) {
        unit_t *u = &c->units[culprit];
        double base_sum = u->trace_value - u->trace_excess;
        lat_anom = cex >= 1.0 && cex >= (base_sum > 0 ? base_sum : u->base_ms);
    }
    /* Truncated work: a span with fewer children than any reference span of its operation
     * stopped early (an error the trace has no status for); its last call returned the
     * failure, or, with no calls left, it failed itself. An operation that sometimes makes
     * no calls (a cached page) but now ends without any far more often than it used to
     * (cut_share) stops early too: its childless spans count for the share beyond the
     * usual. */
    uint32_t trunc = FL__NONE;
    double trunc_w = 1.0;
    if (!ref && !n_orig) {
        for (size_t i = 0; i < n; i++) {
            const unit_t *u = &c->units[t[i].unit];
            if (u->metric != M_SELF || u->kn < 10 || u->kmin == UINT32_MAX)
                continue;
            uint32_t nk = 0;
            for (uint32_t ch = t[i].first_child; ch != FL__NONE; ch = t[ch].next_sib)
                nk++;
            double w = nk < u->kmin ? 1.0 : !nk ? u->cut_share : 0;
            if (w > 0 && (trunc == FL__NONE || t[i].depth > t[trunc].depth)) {
                trunc = (uint32_t)i;
                trunc_w = w;
            }
        }
    }
    int anomalous = !ref && (n_orig > 0 || trunc != FL__NONE || lat_anom || is_example(c, tid));
    if (anomalous && (n_orig || trunc != FL__NONE))
        c->err_anom++;
    else if (anomalous)
        c->lat_anom++;
    c->traces++;
    if (anomalous)
        c->anomalous++;
    /* spectrum: which candidates show a symptom in this trace */
    for (size_t i = 0; i < n; i++) {
        unit_t *u = &c->units[t[i].unit];
        if (u->last_trace != tno)
            continue;
        u->last_trace = 0; /* count once per trace */
        double base_sum = u->trace_value - u->trace_excess;
        int sym = u->has_base && t[i].crit && u->trace_excess >= 1.0 &&
                  u->trace_excess >= (base_sum > 0 ? base_sum : u->base_ms);
        if (t[i].err)
            sym = 1;
        if (!sym)
            continue;
        cand_t *x = &c->cands[u->cand];
        if (x->last_trace == tno)
            continue;
        x->last_trace = tno;
        if (anomalous)
            x->ef++;
        else
            x->ep++;
    }
    if (ref || !anomalous) {
        /* reference traces only count as normal in the spectrum */
    } else if (n_orig) {
        for (size_t i = 0; i < n; i++) {
            if (!t[i].err || t[i].depth != max_depth)
                continue;
            int explained = 0;
            for (uint32_t ch = t[i].first_child; ch != FL__NONE; ch = t[ch].next_sib)
                if (t[ch].err)
                    explained = 1;
            if (explained)
                continue;
            /* A failing call whose callee answered fine, or never answered, blames the
             * callee (the unit of a caller-side span already names it). */
            unit_t *u = &c->units[t[i].unit];
            cand_t *x = &c->cands[u->cand];
            int kind = t[i].tmo || (t[i].caller_side && t[i].callee == FL__NONE && !u->virt &&
                                    u->metric == M_CALL)
                           ? K_TMO
                           : K_ERR;
            x->w[kind] += 1.0 / n_orig;
            x->votes += 1.0 / n_orig;
            x->err_votes += 1.0 / n_orig;
            x->err_traces++;
            add_example(x, tid);
        }
    } else if (trunc != FL__NONE) {
        uint32_t last = FL__NONE;
        for (uint32_t ch = t[trunc].first_child; ch != FL__NONE; ch = t[ch].next_sib)
            if (last == FL__NONE || spans[ch].end_ns > spans[last].end_ns)
                last = ch;
        cand_t *x = &c->cands[c->units[t[last != FL__NONE ? last : trunc].unit].cand];
        x->w[K_ERR] += trunc_w;
        x->votes += trunc_w;
        x->err_traces++;
        x->err_votes += trunc_w;
        add_example(x, tid);
    } else if (lat_anom) {
        unit_t *u = &c->units[culprit];
        cand_t *x = &c->cands[u->cand];
        x->w[K_LAT] += 1.0;
        x->votes += 1.0;
        x->obs_sum += u->trace_value;
        x->obs_n++;
        if (!x->base_ms || u->metric == M_GAP) {
            x->base_ms = u->trace_value - u->trace_excess;
            x->gap = u->metric == M_GAP;
        }
        add_example(x, tid);
        if (u->metric == M_GAP) {
            /* remember which caller saw the gap (its worst critical span of that unit) */
            uint32_t w = FL__NONE;
            double wx = -1e300;
            for (size_t i = 0; i < n; i++)
                if (t[i].unit == culprit && t[i].crit &&
                    (double)t[i].self / 1e6 - u->base_ms > wx) {
                    wx = (double)t[i].self / 1e6 - u->base_ms;
                    w = (uint32_t)i;
                }
            if (w != FL__NONE)
                gap_vote(c, t, spans, w, u->cand);
        }
    }
    rc = FL_OK;
out:
    free(t);
    free(ix);
    free(self);
    free(order);
    return rc;
}

/* ---------------------------------------------------------------- traces */

typedef struct tref {
    const fl_span_t *spans;
    size_t n;
    int ref;
} tref_t;

static int span_ptr_cmp(const void *x, const void *y)
{
    const fl_span_t *a = *(const fl_span_t *const *)x, *b = *(const fl_span_t *const *)y;
    int r = memcmp(a->trace_id, b->trace_id, 16);
    if (r)
        return r;
    return a < b ? -1 : a > b;
}

/* Gather the traces to examine into refs (spans copied so each trace is contiguous). */
static int gather(ctx_t *c, tref_t **refs, size_t *nrefs)
{
    const fl_rca_input_t *in = c->in;
    size_t maxt = in->max_traces ? in->max_traces : 200;
    tref_t *r = calloc(4 * maxt, sizeof(*r)); /* maxt per source and class */
    if (!r)
        return FL_ERR_NOMEM;
    size_t nr = 0;
    for (int ref = 0; ref < 2; ref++) {
        const fl_span_t *sp = ref ? in->normal_spans : in->spans;
        size_t ns = ref ? in->n_normal_spans : in->n_spans;
        if (!sp || !ns)
            continue;
        const fl_span_t **p = malloc(ns * sizeof(*p));
        if (!p) {
            free(r);
            return FL_ERR_NOMEM;
        }
        for (size_t i = 0; i < ns; i++)
            p[i] = &sp[i];
        fl_sort(p, ns, sizeof(*p), span_ptr_cmp);
        size_t lim = nr + maxt;
        for (size_t i = 0; i < ns && nr < lim;) {
            size_t j = i + 1;
            while (j < ns && memcmp(p[j]->trace_id, p[i]->trace_id, 16) == 0)
                j++;
            fl_span_t *cp = fl_arena_alloc(c->scr, (j - i) * sizeof(*cp));
            if (!cp) {
                free(p);
                free(r);
                return FL_ERR_NOMEM;
            }
            for (size_t k = i; k < j; k++)
                cp[k - i] = *p[k];
            r[nr++] = (tref_t){cp, j - i, ref};
            i = j;
        }
        free(p);
    }
    if (in->fetch_trace) {
        size_t nid = 0;
        for (size_t i = 0; i < in->n_anomalies; i++)
            nid += in->anomalies[i].n_trace_ids;
        nid += in->n_extra_trace_ids;
        size_t nwin = 0, nref = 0;
        for (size_t k = 0; k < nid; k++) {
            const uint8_t *tid = NULL;
            size_t q = k;
            for (size_t i = 0; i < in->n_anomalies && !tid; i++) {
                if (q < in->anomalies[i].n_trace_ids)
                    tid = in->anomalies[i].trace_ids[q];
                else
                    q -= in->anomalies[i].n_trace_ids;
            }
            int ref = !tid;
            if (!tid)
                tid = in->extra_trace_ids[q];
            if ((ref ? nref : nwin) >= maxt)
                continue;
            int dup = 0;
            for (size_t j = 0; j < nr && !dup; j++)
                dup = r[j].n && memcmp(r[j].spans[0].trace_id, tid, 16) == 0;
            if (dup)
                continue;
            fl_span_t *sp = NULL;
            size_t ns = 0;
            if (in->fetch_trace(in->fetch_ud, tid, c->scr, &sp, &ns) == FL_OK && sp && ns) {
                r[nr++] = (tref_t){sp, ns, ref};
                if (ref)
                    nref++;
                else
                    nwin++;
            }
        }
    }
    *refs = r;
    *nrefs = nr;
    return FL_OK;
}

static int dbl_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Of u's childless window spans, the share beyond the usual, when u normally makes calls
 * (most reference spans have children) and its window spans end without any far more often
 * than the reference's (twice the share plus 10 points, binomial p < 10^-3); else 0. */
static double cut_share(const unit_t *u)
{
    if (u->metric != M_SELF || u->kn < 10 || u->win_n < 10 || !u->w0)
        return 0;
    double p0 = (double)u->k0 / u->kn, w = (double)u->w0 / u->win_n;
    double p = p0 > 1.0 / u->kn ? p0 : 1.0 / u->kn;
    if (p0 >= 0.5 || w < 2 * p0 + 0.1 || fl__binom_sf(u->w0, u->win_n, p) >= 1e-3)
        return 0;
    return 1.0 - p0 / w;
}

/* Units without a learned baseline get the median of their sampled values. */
static int sampled_baselines(ctx_t *c, tref_t *refs, size_t nr)
{
    size_t cap = 0;
    for (size_t i = 0; i < nr; i++)
        cap += refs[i].n;
    double *vals = malloc((cap ? cap : 1) * sizeof(*vals));
    uint32_t *vu = malloc((cap ? cap : 1) * sizeof(*vu));
    size_t nv = 0;
    int rc = FL_ERR_NOMEM;
    if (!vals || !vu)
        goto out;
    for (size_t i = 0; i < nr; i++)
        if ((rc = analyse_trace(c, refs[i].spans, refs[i].n, refs[i].ref, 0, vals, vu, &nv, cap)) !=
            FL_OK)
            goto out;
    double *tmp = malloc((nv ? nv : 1) * sizeof(*tmp));
    if (!tmp) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t u = 0; u < c->n_units; u++) {
        unit_t *uu = &c->units[u];
        uu->cut_share = cut_share(uu);
        if (uu->has_base)
            continue;
        if (uu->ref_n >= 3) {
            uu->base_ms = uu->ref_sum / uu->ref_n;
            uu->has_base = 1;
            continue;
        }
        size_t m = 0;
        for (size_t k = 0; k < nv; k++)
            if (vu[k] == u)
                tmp[m++] = vals[k];
        if (m < 3)
            continue;
        fl_sort(tmp, m, sizeof(*tmp), dbl_cmp);
        c->units[u].base_ms = tmp[m / 2];
        c->units[u].has_base = 1;
    }
    free(tmp);
    rc = FL_OK;
out:
    free(vals);
    free(vu);
    return rc;
}

/* ---------------------------------------------------------------- anomalies, scoring */

static int anom_kind(const fl_anomaly_t *a)
{
    switch (a->kind) {
    case FL_ANOMALY_LATENCY:
        return K_LAT;
    case FL_ANOMALY_TIMEOUT:
        return K_TMO;
    case FL_ANOMALY_TRAFFIC:
        return K_TRF;
    default:
        return K_ERR;
    }
}

static double anom_weight(const fl_anomaly_t *a)
{
    double w = (double)a->severity / 4.0;
    if (a->subject == FL_SUBJECT_ENDPOINT && a->kind == FL_ANOMALY_LATENCY)
        w *= 0.5;
    if (a->kind == FL_ANOMALY_TIMEOUT ||
        (a->subject != FL_SUBJECT_ENDPOINT && a->kind != FL_ANOMALY_TRAFFIC))
        w *= 1.5;
    return w;
}

static int add_anomalies(ctx_t *c)
{
    for (size_t i = 0; i < c->in->n_anomalies; i++) {
        const fl_anomaly_t *a = &c->in->anomalies[i];
        if (!a->service)
            continue;
        const char *svc = fl_arena_strdup(c->scr, a->service);
        const char *op = fl_arena_strdup(c->scr, a->operation ? a->operation : "");
        if (!svc || !op)
            return FL_ERR_NOMEM;
        uint32_t k = cand_get(c, svc, op, a->virtual_peer);
        if (k == FL__NONE)
            return FL_ERR_NOMEM;
        cand_t *x = &c->cands[k];
        /* Self time, gap and edge anomalies point at the work that grew; an endpoint's total
         * latency also grows when anything below it does, so it weighs less. */
        double w = anom_weight(a);
        x->w[anom_kind(a)] += w;
        x->anom_w += w;
        if (!x->best_anom || w > (double)x->best_anom->severity / 4.0)
            x->best_anom = a;
        for (size_t j = 0; j < a->n_trace_ids; j++)
            if (x->n_ex < FL_ANOMALY_MAX_TRACES && a->kind != FL_ANOMALY_LATENCY)
                add_example(x, a->trace_ids[j]);
        if (a->kind != FL_ANOMALY_TRAFFIC && x->svc_id < MAX_SVC)
            c->faulty[x->svc_id] = 1;
        if (a->caller_service) {
            const char *cs = fl_arena_strdup(c->scr, a->caller_service);
            if (!cs)
                return FL_ERR_NOMEM;
            add_edge(c, svc_id(c, cs), x->svc_id);
        }
    }
    return FL_OK;
}

static int score_cmp(const void *x, const void *y)
{
    const cand_t *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    int r = strcmp(a->svc, b->svc);
    return r ? r : strcmp(a->op, b->op);
}

/* 1 when service s has an open anomaly that is not a traffic change: a fault of its own
 * that can show upstream. A traffic change only propagates down (fewer calls in mean fewer
 * calls out), so it explains nothing in the services that call it. */
static int faulty(const ctx_t *c, uint32_t s)
{
    return s < MAX_SVC && c->faulty[s];
}

/* 1 when anomaly a is explained by a cause at service s: it is there, or upstream of a
 * faulty s (a service with no anomaly of its own explains nothing above it: slower but
 * healthy, it is not where the callers' errors come from). A traffic drop is also
 * explained by its caller s, and by a fault below one of its callers: a caller whose
 * other call failed stops before calling it (checkout gives up on payment when inventory
 * errs), so the drop is a consequence, not a second fault. */
static int explains(const ctx_t *c, uint32_t s, const fl_anomaly_t *a)
{
    uint32_t as = FL__NONE;
    for (uint32_t i = 0; i < c->n_svcs; i++)
        if (strcmp(c->svcs[i], a->service) == 0)
            as = i;
    if (as == FL__NONE)
        return 0;
    if (as == s || (calls(c, as, s) && faulty(c, s)))
        return 1;
    if (a->kind == FL_ANOMALY_TRAFFIC && a->direction && !strcmp(a->direction, "drop"))
        for (uint32_t p = 0; p < c->n_svcs; p++)
            if (p != as && calls(c, p, as) && (p == s || (calls(c, p, s) && faulty(c, s))))
                return 1;
    return 0;
}

/* A candidate whose only evidence is a traffic anomaly: roots are chosen among the others
 * first, so a drop caused by another fault joins that fault's group. */
static int traffic_only(const cand_t *x)
{
    return x->best_anom && x->best_anom->kind == FL_ANOMALY_TRAFFIC && !x->err_traces && !x->obs_n;
}

static void pop_add(ctx_t *c, cand_t *x, const unit_t *un, double sum, uint32_t n, double full_ex,
                    int gap)
{
    if (n < 5 || !un->has_base || un->base_ms <= 0 || !c->win_traces)
        return;
    double mean = sum / n;
    double ex = (sum - un->base_ms * n) / c->win_traces;
    if (mean <= un->base_ms || ex < 0.2)
        return;
    double lr = log(mean / un->base_ms) * (ex < full_ex ? ex / full_ex : 1.0);
    if (lr > x->pop) {
        x->pop = lr;
        x->pop_obs = mean;
        x->pop_base = un->base_ms;
        x->pop_gap = gap;
    }
}

/* Gap votes move to their caller when it fans out slowness to several callees or is itself
 * blamed: a slow caller stretches every call it makes. */
static void reassign_gaps(ctx_t *c)
{
    for (uint32_t k = 0; k < c->n_gv; k++) {
        uint32_t caller = c->gv[k].caller;
        uint32_t csvc = c->cands[caller].svc_id;
        double total = 0, own = 0, top = 0;
        uint32_t callees = 0;
        for (uint32_t j = 0; j < c->n_gv; j++)
            if (c->cands[c->gv[j].caller].svc_id == csvc)
                total += c->gv[j].votes;
        /* distinct callee services with a real share of the caller's gap votes */
        uint8_t seen[MAX_SVC];
        memset(seen, 0, sizeof(seen));
        for (uint32_t j = 0; j < c->n_gv; j++) {
            if (c->cands[c->gv[j].caller].svc_id != csvc)
                continue;
            uint32_t cs = c->cands[c->gv[j].callee].svc_id;
            double sv = 0;
            for (uint32_t q = 0; q < c->n_gv; q++)
                if (c->cands[c->gv[q].caller].svc_id == csvc &&
                    c->cands[c->gv[q].callee].svc_id == cs)
                    sv += c->gv[q].votes;
            if (cs != FL__NONE && !seen[cs] && sv >= 0.1 * total) {
                seen[cs] = 1;
                callees++;
            }
            if (sv > top)
                top = sv;
        }
        for (uint32_t j = 0; j < c->n_cands; j++)
            if (c->cands[j].svc_id == csvc)
                own += c->cands[j].votes;
        /* own votes include nothing moved yet only on the first pass over this caller */
        int fan =
            (callees >= 2 && total >= 3 && top < 0.7 * total) || (c->fan_pop[csvc] && total >= 3);
        int self_slow = own >= 0.25 * total && own >= 2;
        if (!fan && !self_slow)
            continue;
        for (uint32_t j = 0; j < c->n_gv; j++) {
            if (c->cands[c->gv[j].caller].svc_id != csvc || c->gv[j].votes <= 0)
                continue;
            cand_t *from = &c->cands[c->gv[j].callee], *to = &c->cands[caller];
            double v = c->gv[j].votes;
            from->votes -= v;
            from->w[K_LAT] -= v;
            to->votes += v;
            to->w[K_LAT] += v;
            if (!to->obs_n) {
                to->obs_sum = from->obs_n ? from->obs_sum / from->obs_n : 0;
                to->base_ms = from->base_ms;
                to->obs_n = 1;
                to->gap = 0;
            }
            for (size_t e = 0; e < from->n_ex; e++)
                add_example(to, from->ex[e]);
            c->gv[j].votes = 0;
        }
    }
}

static void score(ctx_t *c)
{
    for (uint32_t k = 0; k < c->n_gp; k++) {
        uint32_t total = 0, up = 0;
        for (uint32_t j = 0; j < c->n_gp; j++) {
            const struct gpop *h = &c->gp[j];
            if (h->caller_svc != c->gp[k].caller_svc || h->win_n < 3)
                continue;
            const unit_t *hu = &c->units[h->unit];
            total++;
            if (hu->has_base && h->win_sum / h->win_n > 1.5 * hu->base_ms + 0.2)
                up++;
        }
        if (up >= 2 && up * 2 >= total && c->gp[k].caller_svc < MAX_SVC)
            c->fan_pop[c->gp[k].caller_svc] = 1;
    }
    reassign_gaps(c);
    double F = c->anomalous ? c->anomalous : 1;
    double maxw = 0, maxp = 0;
    for (uint32_t i = 0; i < c->n_cands; i++)
        if (c->cands[i].anom_w > maxw)
            maxw = c->cands[i].anom_w;
    /* Population shift of each unit over the window traces against its baseline. */
    /* An excess matters in proportion to the requests it slows: a fraction of a millisecond
     * on a 100 ms request is noise. */
    double root_ms = c->win_traces ? c->win_root_ms / c->win_traces : 0;
    double full_ex = root_ms * 0.05 > 2.0 ? root_ms * 0.05 : 2.0;
    for (uint32_t u = 0; u < c->n_units; u++) {
        const unit_t *un = &c->units[u];
        if (un->metric == M_GAP)
            continue; /* below, per caller */
        pop_add(c, &c->cands[un->cand], un, un->win_sum, un->win_n, full_ex, 0);
    }
    /* Gaps: a caller whose calls into several callees all slowed is itself slow (CPU,
     * its own network); otherwise the callee is blamed. */
    for (uint32_t k = 0; k < c->n_gp; k++) {
        const struct gpop *g = &c->gp[k];
        uint32_t total = 0, up = 0;
        for (uint32_t j = 0; j < c->n_gp; j++) {
            const struct gpop *h = &c->gp[j];
            if (h->caller_svc != g->caller_svc || h->win_n < 3)
                continue;
            const unit_t *hu = &c->units[h->unit];
            total++;
            if (hu->has_base && h->win_sum / h->win_n > 1.5 * hu->base_ms + 0.2)
                up++;
        }
        const unit_t *un = &c->units[g->unit];
        int fan = up >= 2 && up * 2 >= total;
        pop_add(c, fan ? &c->cands[g->caller_cand] : &c->cands[un->cand], un, g->win_sum, g->win_n,
                full_ex, !fan);
    }
    for (uint32_t i = 0; i < c->n_cands; i++)
        if (c->cands[i].pop > maxp)
            maxp = c->cands[i].pop;
    /* Weights of trace votes, spectrum confidence, anomalies and population shift (chosen on
     * the Nezha evaluation and the unit scenarios; see docs/rca.md). */
    static const double W[4] = {0.6, 0.1, 0.1, 0.2};
    for (uint32_t i = 0; i < c->n_cands; i++) {
        cand_t *x = &c->cands[i];
        double share = x->votes / F;
        /* Error and latency evidence are shares of their own kind of anomalous traces: a
         * few traces that fail outright are not outvoted by many merely slow ones. */
        double se = c->err_anom >= MIN_ERR_TRACES ? x->err_votes / c->err_anom : 0;
        double sl = c->lat_anom ? (x->votes - x->err_votes) / c->lat_anom : 0;
        share = se > sl ? se : sl;
        x->conf = x->ef ? x->ef / sqrt(F * (x->ef + x->ep)) : 0;
        if (x->conf > 1)
            x->conf = 1;
        double aw = maxw > 0 ? x->anom_w / maxw : 0;
        double pw = maxp > 0 ? x->pop / maxp : 0;
        x->score = W[0] * share + W[1] * x->conf * (x->votes > 0) + W[2] * aw + W[3] * pw;
        for (size_t j = 0; j < c->in->n_anomalies; j++)
            if (explains(c, x->svc_id, &c->in->anomalies[j]))
                x->anomalies++;
    }
    /* Propagation: an anomalous candidate downstream of another explains it, so the upstream
     * one yields (its symptoms are the downstream cause's effects). */
    for (uint32_t i = 0; i < c->n_cands; i++) {
        cand_t *x = &c->cands[i];
        int up = 0, down = 0;
        for (uint32_t j = 0; j < c->n_cands; j++) {
            const cand_t *y = &c->cands[j];
            if (i == j || y->score <= 0)
                continue;
            if (calls(c, y->svc_id, x->svc_id) && y->anom_w > 0)
                up++;
            /* a traffic drop below it is its effect, not its cause */
            if (calls(c, x->svc_id, y->svc_id) && y->score >= 0.5 * x->score &&
                (y->anom_w > 0 || y->votes > 0) && !traffic_only(y))
                down++;
        }
        x->score *= (1.0 + 0.1 * (up > 5 ? 5 : up)) * (down ? 0.6 : 1.0);
    }
}

static void issue(ctx_t *c, fl_arena_t *ar, const cand_t *x, fl_rca_candidate_t *o)
{
    (void)c;
    const fl_anomaly_t *a = x->best_anom;
    switch (o->kind) {
    case FL_ANOMALY_LATENCY:
        if (x->obs_n) {
            o->observed = x->obs_sum / x->obs_n;
            o->baseline = x->base_ms;
            o->issue = x->gap ? fl_arena_sprintf(ar,
                                                 "Network delay on calls into %s: %.0fms "
                                                 "(baseline: %.0fms)",
                                                 x->svc, o->observed, o->baseline)
                              : fl_arena_sprintf(ar, "Latency spike: %.0fms (baseline: %.0fms)",
                                                 o->observed, o->baseline);
        } else if (a) {
            o->observed = a->observed;
            o->baseline = a->baseline;
            o->issue = fl_arena_sprintf(ar, "Latency spike: %.0fms (baseline: %.0fms)", a->observed,
                                        a->baseline);
        } else if (x->pop > 0) {
            o->observed = x->pop_obs;
            o->baseline = x->pop_base;
            o->issue = x->pop_gap ? fl_arena_sprintf(ar,
                                                     "Network delay on calls into %s: %.1fms "
                                                     "(baseline: %.1fms)",
                                                     x->svc, o->observed, o->baseline)
                                  : fl_arena_sprintf(ar, "Latency spike: %.1fms (baseline: %.1fms)",
                                                     o->observed, o->baseline);
        }
        break;
    case FL_ANOMALY_ERROR:
        if (a && a->kind == FL_ANOMALY_ERROR && strcmp(a->unit, "ratio") == 0) {
            o->observed = a->observed;
            o->baseline = a->baseline;
            o->issue = fl_arena_sprintf(ar, "Error rate: %.0f%% (baseline: %.0f%%)",
                                        a->observed * 100, a->baseline * 100);
        } else {
            o->observed = c->anomalous ? (double)x->err_traces / c->anomalous : 0;
            o->issue = fl_arena_sprintf(ar, "Errors originate here in %u of %u failing traces",
                                        x->err_traces, c->anomalous);
        }
        break;
    case FL_ANOMALY_TIMEOUT:
        if (a && a->kind == FL_ANOMALY_TIMEOUT && a->summary) {
            o->observed = a->observed;
            o->baseline = a->baseline;
            o->issue = strncmp(a->summary, "Timeout", 7) == 0
                           ? fl_arena_strdup(ar, a->summary)
                           : fl_arena_sprintf(ar, "Timeout: %s", a->summary);
        } else {
            o->issue = fl_arena_sprintf(ar, "Timeout: %u sampled calls to %s got no answer",
                                        x->err_traces, x->svc);
        }
        break;
    default:
        if (a) {
            o->observed = a->observed;
            o->baseline = a->baseline;
            o->issue =
                fl_arena_sprintf(ar, "Traffic %s: %.2f req/s (baseline: %.2f req/s)",
                                 a->direction ? a->direction : "change", a->observed, a->baseline);
        }
        break;
    }
    if (!o->issue)
        o->issue = a && a->summary ? fl_arena_strdup(ar, a->summary) : "";
}

/* The kind a candidate is blamed for: the one with the most evidence. */
static int cand_kind(const cand_t *x)
{
    int best = K_LAT;
    for (int k = 1; k < K_N; k++)
        if (x->w[k] > x->w[best])
            best = k;
    return best;
}

/* How well root x explains anomaly a, given ex = explains(x's service, a): 0 not at all, 3
 * an anomaly of its own service, 2 an upstream symptom of the kind its fault produces
 * (failures make callers fail, slowness makes them slow, a timeout both; a traffic change
 * below a caller fits any fault), 1 any other upstream anomaly. When two unrelated faults
 * share callers (fraud slow, inventory failing, both under checkout), checkout's errors join
 * inventory's group and its latency fraud's. */
static int fit(const ctx_t *c, const cand_t *x, const fl_anomaly_t *a, int ex)
{
    if (!ex)
        return 0;
    if (!strcmp(c->svcs[x->svc_id], a->service))
        return 3;
    int k = cand_kind(x), ak = anom_kind(a);
    if (ak == K_TRF || k == K_TMO || ak == k || (k == K_LAT && ak == K_TMO))
        return 2;
    return 1;
}

/* Fault groups over the ranked candidates (best first): a candidate becomes a root when it
 * explains an anomaly no root explains yet. Faulty services (a non-traffic anomaly of their
 * own) are considered first, then the rest, so a consequence (a traffic drop below a failing
 * caller, a slower but healthy service) never takes anomalies a fault explains. A candidate
 * upstream of a faulty root is an effect of it; a root upstream of a new faulty root becomes
 * one (the new root explains everything it did), whatever order their scores gave. Each
 * anomaly then joins the root that fits it best (fit), ties to the root taken first; group 0
 * when none explains it. Sets cands[].root and .group, gsel[anomaly] = group and *ng. */
static int choose_roots(ctx_t *c, uint32_t m, uint32_t *gsel, uint32_t *ng)
{
    const fl_rca_input_t *in = c->in;
    size_t na = in->n_anomalies;
    /* ex[s * na + j]: service s explains anomaly j; cover[j]: roots explaining it */
    uint8_t *ex = calloc((size_t)c->n_svcs * na + 1, 1);
    uint32_t *cover = calloc(na + 1, sizeof(*cover));
    if (!ex || !cover) {
        free(ex);
        free(cover);
        return FL_ERR_NOMEM;
    }
    for (uint32_t sv = 0; sv < c->n_svcs; sv++)
        for (size_t j = 0; j < na; j++)
            ex[sv * na + j] = (uint8_t)explains(c, sv, &in->anomalies[j]);
#define EX(x, j) ((x)->svc_id < c->n_svcs && ex[(size_t)(x)->svc_id * na + (j)])
    uint32_t taken = 0;
    for (uint32_t pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < m; i++) {
            cand_t *x = &c->cands[i];
            if (faulty(c, x->svc_id) == (int)pass)
                continue;
            /* a traffic change propagates down: the most upstream one is the cause (a drop
             * at the entry service empties every service below it) */
            int below = 0;
            for (uint32_t k = 0; pass && k < m && !below; k++)
                below = k != i && traffic_only(&c->cands[k]) && traffic_only(x) &&
                        calls(c, c->cands[k].svc_id, x->svc_id);
            int take = 0;
            for (size_t j = 0; j < na && !take && !below; j++)
                take = EX(x, j) && !cover[j];
            for (uint32_t k = 0; k < m && take; k++)
                if (c->cands[k].root &&
                    (x->svc_id == c->cands[k].svc_id ||
                     (calls(c, x->svc_id, c->cands[k].svc_id) && faulty(c, c->cands[k].svc_id))))
                    take = 0;
            if (!take)
                continue;
            for (uint32_t k = 0; k < m; k++) {
                cand_t *r = &c->cands[k];
                if (!r->root || !calls(c, r->svc_id, x->svc_id) || !faulty(c, x->svc_id))
                    continue;
                r->root = 0;
                for (size_t j = 0; j < na; j++)
                    cover[j] -= EX(r, j);
            }
            x->root = 1;
            x->group = taken++;
            for (size_t j = 0; j < na; j++)
                cover[j] += EX(x, j);
        }
    if (!taken && m) { /* nothing to explain (offline ranking): the best one is the root */
        c->cands[0].root = 1;
        c->cands[0].group = taken++;
    }
    /* number the remaining roots 0.. in the order they were taken */
    *ng = 0;
    for (uint32_t t = 0; t < taken; t++)
        for (uint32_t k = 0; k < m; k++)
            if (c->cands[k].root && c->cands[k].group == t)
                c->cands[k].group = (*ng)++;
    for (size_t j = 0; j < na; j++) {
        gsel[j] = 0;
        int best = 0;
        for (uint32_t k = 0; k < m; k++) {
            const cand_t *r = &c->cands[k];
            int f = r->root ? fit(c, r, &in->anomalies[j], EX(r, j)) : 0;
            if (f > best || (f && f == best && r->group < gsel[j])) {
                best = f;
                gsel[j] = r->group;
            }
        }
    }
#undef EX
    free(ex);
    free(cover);
    return FL_OK;
}

/* ---------------------------------------------------------------- entry point */

int fl_rca_rank(const fl_rca_input_t *in, fl_arena_t *arena, fl_rca_result_t *out)
{
    if (!in || !arena || !out || (in->n_anomalies && !in->anomalies) ||
        (in->n_spans && !in->spans) || (in->n_extra_trace_ids && !in->extra_trace_ids) ||
        (in->n_normal_spans && !in->normal_spans))
        return FL_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    ctx_t *c = calloc(1, sizeof(*c));
    if (!c)
        return FL_ERR_NOMEM;
    c->in = in;
    int rc = FL_ERR_NOMEM;
    tref_t *refs = NULL;
    size_t nr = 0;
    uint32_t *gsel = NULL;
    if (!(c->scr = fl_arena_new(0)))
        goto out;
    if (in->engine) {
        if ((rc = fl_analysis_baselines(in->engine, NULL, c->scr, &c->bl)) != FL_OK)
            goto out;
        fl_graph_t g;
        if ((rc = fl_analysis_graph(in->engine, NULL, c->scr, &g)) != FL_OK)
            goto out;
        for (size_t i = 0; i < g.n_edges; i++)
            add_edge(c, svc_id(c, g.nodes[g.edges[i].caller].name),
                     svc_id(c, g.nodes[g.edges[i].callee].name));
    }
    if ((rc = gather(c, &refs, &nr)) != FL_OK)
        goto out;
    if ((rc = sampled_baselines(c, refs, nr)) != FL_OK)
        goto out;
    if ((rc = add_anomalies(c)) != FL_OK)
        goto out;
    close_reach(c);
    for (size_t i = 0; i < nr; i++)
        if ((rc = analyse_trace(c, refs[i].spans, refs[i].n, refs[i].ref, 1, NULL, NULL, NULL,
                                0)) != FL_OK)
            goto out;
    score(c);
    /* drop candidates with no evidence, rank */
    uint32_t m = 0;
    for (uint32_t i = 0; i < c->n_cands; i++)
        if (c->cands[i].score > 0)
            c->cands[m++] = c->cands[i];
    c->n_cands = m;
    fl_sort(c->cands, m, sizeof(*c->cands), score_cmp);
    /* Groups: see choose_roots. */
    size_t na = in->n_anomalies;
    gsel = malloc((na ? na : 1) * sizeof(*gsel));
    if (!gsel) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    uint32_t ng = 0;
    if ((rc = choose_roots(c, m, gsel, &ng)) != FL_OK)
        goto out;
    /* non-roots join the group whose root they are upstream of (or the first) */
    for (uint32_t i = 0; i < m; i++) {
        if (c->cands[i].root)
            continue;
        c->cands[i].group = 0;
        for (uint32_t k = 0; k < m; k++)
            if (c->cands[k].root && (calls(c, c->cands[i].svc_id, c->cands[k].svc_id) ||
                                     c->cands[i].svc_id == c->cands[k].svc_id)) {
                c->cands[i].group = c->cands[k].group;
                break;
            }
    }
    /* output: the top max_candidates plus every root */
    size_t maxc = in->max_candidates ? in->max_candidates : 10;
    size_t no = 0;
    for (uint32_t i = 0; i < m; i++)
        if (i < maxc || c->cands[i].root)
            no++;
    out->candidates = fl_arena_calloc(arena, no ? no : 1, sizeof(*out->candidates));
    out->groups = fl_arena_calloc(arena, ng ? ng : 1, sizeof(*out->groups));
    if (!out->candidates || !out->groups) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t g = 0; g < ng; g++) {
        fl_rca_group_t *G = &out->groups[g];
        G->candidates = fl_arena_calloc(arena, no ? no : 1, sizeof(uint32_t));
        G->anomalies = fl_arena_calloc(arena, na ? na : 1, sizeof(uint32_t));
        if (!G->candidates || !G->anomalies) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        for (size_t j = 0; j < na; j++)
            if (gsel[j] == g)
                G->anomalies[G->n_anomalies++] = (uint32_t)j;
    }
    out->n_groups = ng;
    for (uint32_t i = 0; i < m; i++) {
        cand_t *x = &c->cands[i];
        if (!(i < maxc || x->root))
            continue;
        fl_rca_candidate_t *o = &out->candidates[out->n_candidates];
        o->service = fl_arena_strdup(arena, x->svc);
        o->operation = fl_arena_strdup(arena, x->op);
        o->virtual_peer = x->virt;
        int best = cand_kind(x);
        o->kind = best == K_LAT   ? FL_ANOMALY_LATENCY
                  : best == K_ERR ? FL_ANOMALY_ERROR
                  : best == K_TMO ? FL_ANOMALY_TIMEOUT
                                  : FL_ANOMALY_TRAFFIC;
        o->score = x->score;
        o->confidence = x->conf;
        o->anomalous_traces = (uint32_t)(x->votes + 0.5);
        o->normal_traces = x->ep;
        o->anomalies = x->anomalies;
        o->group = x->group;
        o->n_trace_ids = x->n_ex;
        memcpy(o->trace_ids, x->ex, sizeof(x->ex));
        issue(c, arena, x, o);
        if (!o->service || !o->operation || !o->issue) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        fl_rca_group_t *G = &out->groups[x->group < ng ? x->group : 0];
        if (ng) {
            if (x->root) { /* the root goes first */
                memmove(G->candidates + 1, G->candidates, G->n_candidates * sizeof(uint32_t));
                G->candidates[0] = (uint32_t)out->n_candidates;
                G->n_candidates++;
            } else {
                G->candidates[G->n_candidates++] = (uint32_t)out->n_candidates;
            }
        }
        out->n_candidates++;
    }
    out->traces_examined = c->traces;
    out->traces_anomalous = c->anomalous;
    rc = FL_OK;
out:
    free(gsel);
    free(refs);
    free(c->units);
    free(c->uslot);
    free(c->cands);
    fl_arena_free(c->scr);
    free(c);
    return rc;
}
