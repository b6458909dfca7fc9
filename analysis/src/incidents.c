/* SPDX-License-Identifier: Apache-2.0 */
/* Incidents: fault groups from root-cause ranking become incidents that are extended by
 * repeated detections, carry severity, impact and a timeline, follow the lifecycle
 * open -> investigating -> resolved -> closed, and persist as one versioned blob. */
#include "analysis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_CAND 16
#define CAP_ANOM 64
#define CAP_TL 128
#define CAP_TL_HEAD 16 /* when the timeline is full, the first entries stay */
#define CAP_TR 16
#define CAP_SVC 32
#define CAP_EP 64
#define COMPACT_BYTES (512 * 1024)

typedef struct inc {
    fl_arena_t *ar; /* owns every string and array of v */
    fl_incident_t v;
    uint64_t seq; /* creation order */
} inc_t;

struct fl_incidents {
    pthread_mutex_t mu;
    fl_incident_opts_t o;
    inc_t *items;
    size_t n, cap;
    uint64_t seq;
};

void fl_incident_opts_default(fl_incident_opts_t *o)
{
    o->correlation_window_ns = 300ull * 1000000000ull;
    o->auto_resolve_ns = 30ull * 1000000000ull;
    o->retention_ns = 24ull * 3600 * 1000000000ull;
    o->max_incidents = 1000;
}

static const char *status_names[] = {"unknown", "open", "investigating", "resolved", "closed"};
static const char *sev_names[] = {"unknown", "low", "medium", "high", "critical"};

const char *fl_incident_status_name(int status)
{
    return status >= 1 && status <= 4 ? status_names[status] : "unknown";
}

int fl_incident_status_parse(const char *s)
{
    for (int i = 1; s && i <= 4; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return 0;
}

int fl_severity_parse(const char *s)
{
    for (int i = 1; s && i <= 4; i++)
        if (strcmp(s, sev_names[i]) == 0)
            return i;
    return 0;
}

fl_incidents_t *fl_incidents_new(const fl_incident_opts_t *opts)
{
    fl_incidents_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (opts)
        s->o = *opts;
    else
        fl_incident_opts_default(&s->o);
    if (!s->o.max_incidents)
        s->o.max_incidents = 1000;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void clear_items(fl_incidents_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        fl_arena_free(s->items[i].ar);
    s->n = 0;
}

void fl_incidents_free(fl_incidents_t *s)
{
    if (!s)
        return;
    clear_items(s);
    free(s->items);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---------------------------------------------------------------- deep copies */

#define DUP(f)                                                                                     \
    do {                                                                                           \
        if (s->f && !(d->f = fl_arena_strdup(ar, s->f)))                                           \
            return FL_ERR_NOMEM;                                                                   \
    } while (0)

static int copy_cand(fl_arena_t *ar, fl_rca_candidate_t *d, const fl_rca_candidate_t *s)
{
    *d = *s;
    DUP(service);
    DUP(operation);
    DUP(issue);
    return FL_OK;
}

static int copy_anom(fl_arena_t *ar, fl_anomaly_t *d, const fl_anomaly_t *s)
{
    *d = *s;
    DUP(service);
    DUP(operation);
    DUP(caller_service);
    DUP(caller_operation);
    DUP(metric);
    DUP(unit);
    DUP(direction);
    DUP(error_type);
    DUP(summary);
    return FL_OK;
}

static int copy_event(fl_arena_t *ar, fl_incident_event_t *d, const fl_incident_event_t *s)
{
    *d = *s;
    DUP(type);
    DUP(detail);
    return FL_OK;
}

/* Copy src into dst in arena ar; caps != 0 gives every array its full internal capacity. */
static int copy_inc(fl_arena_t *ar, fl_incident_t *d, const fl_incident_t *s, int caps)
{
    *d = *s;
    DUP(title);
    DUP(resolution);
    DUP(resolved_by);
    if (copy_cand(ar, &d->root_cause, &s->root_cause))
        return FL_ERR_NOMEM;
#define ARR(f, nf, cap)                                                                            \
    size_t c_##f = caps ? (cap) : (s->nf ? s->nf : 1);                                             \
    if (!(d->f = fl_arena_calloc(ar, c_##f, sizeof(*d->f))))                                       \
        return FL_ERR_NOMEM;
    ARR(candidates, n_candidates, CAP_CAND)
    ARR(anomalies, n_anomalies, CAP_ANOM)
    ARR(timeline, n_timeline, CAP_TL)
    ARR(trace_ids, n_trace_ids, CAP_TR)
    ARR(affected_services, n_affected_services, CAP_SVC)
    ARR(affected_endpoints, n_affected_endpoints, CAP_EP)
#undef ARR
    for (size_t i = 0; i < s->n_candidates; i++)
        if (copy_cand(ar, &d->candidates[i], &s->candidates[i]))
            return FL_ERR_NOMEM;
    for (size_t i = 0; i < s->n_anomalies; i++)
        if (copy_anom(ar, &d->anomalies[i], &s->anomalies[i]))
            return FL_ERR_NOMEM;
    for (size_t i = 0; i < s->n_timeline; i++)
        if (copy_event(ar, &d->timeline[i], &s->timeline[i]))
            return FL_ERR_NOMEM;
    if (s->n_trace_ids)
        memcpy(d->trace_ids, s->trace_ids, s->n_trace_ids * 16);
    for (size_t i = 0; i < s->n_affected_services; i++)
        if (!(d->affected_services[i] = fl_arena_strdup(ar, s->affected_services[i])))
            return FL_ERR_NOMEM;
    for (size_t i = 0; i < s->n_affected_endpoints; i++)
        if (!(d->affected_endpoints[i] = fl_arena_strdup(ar, s->affected_endpoints[i])))
            return FL_ERR_NOMEM;
    return FL_OK;
}

/* Re-home an incident into a fresh arena once its arena has collected stale strings. */
static int compact(inc_t *x)
{
    if (fl_arena_used(x->ar) < COMPACT_BYTES)
        return FL_OK;
    fl_arena_t *na = fl_arena_new(0);
    fl_incident_t nv;
    if (!na || copy_inc(na, &nv, &x->v, 1) != FL_OK) {
        fl_arena_free(na);
        return FL_ERR_NOMEM;
    }
    fl_arena_free(x->ar);
    x->ar = na;
    x->v = nv;
    return FL_OK;
}

/* ---------------------------------------------------------------- building blocks */

static void timeline(inc_t *x, uint64_t t, const char *type, const char *detail)
{
    fl_incident_t *v = &x->v;
    if (v->n_timeline == CAP_TL) {
        memmove(&v->timeline[CAP_TL_HEAD], &v->timeline[CAP_TL_HEAD + 1],
                (CAP_TL - CAP_TL_HEAD - 1) * sizeof(*v->timeline));
        v->n_timeline--;
    }
    fl_incident_event_t *e = &v->timeline[v->n_timeline];
    e->time_ns = t;
    e->type = fl_arena_strdup(x->ar, type);
    e->detail = fl_arena_strdup(x->ar, detail ? detail : "");
    if (e->type && e->detail)
        v->n_timeline++;
}

static int has_str(const char **a, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], s) == 0)
            return 1;
    return 0;
}

static void add_str(inc_t *x, const char **a, size_t *n, size_t cap, const char *s)
{
    if (!s || !*s || has_str(a, *n, s) || *n >= cap)
        return;
    const char *d = fl_arena_strdup(x->ar, s);
    if (d)
        a[(*n)++] = d;
}

static void add_trace(fl_incident_t *v, const uint8_t tid[16])
{
    for (size_t i = 0; i < v->n_trace_ids; i++)
        if (memcmp(v->trace_ids[i], tid, 16) == 0)
            return;
    if (v->n_trace_ids < CAP_TR)
        memcpy(v->trace_ids[v->n_trace_ids++], tid, 16);
}

static uint64_t failures(const fl_anomaly_t *a)
{
    if (a->kind == FL_ANOMALY_ERROR && a->unit && strcmp(a->unit, "ratio") == 0)
        return (uint64_t)(a->observed * (double)a->samples + 0.5);
    if (a->kind == FL_ANOMALY_TIMEOUT || a->kind == FL_ANOMALY_ERROR)
        return a->samples;
    return 0;
}

/* Severity, impact and title from the current anomalies and root cause. */
static void derive(inc_t *x)
{
    fl_incident_t *v = &x->v;
    int worst = FL_SEV_LOW;
    uint64_t failed = 0;
    for (size_t i = 0; i < v->n_anomalies; i++) {
        if ((int)v->anomalies[i].severity > worst)
            worst = v->anomalies[i].severity;
        failed += failures(&v->anomalies[i]);
    }
    v->failed_requests = failed;
    v->correlated_failures = failed;
    uint32_t blast = 0;
    for (size_t i = 0; i < v->n_affected_services; i++)
        if (!v->root_cause.service || strcmp(v->affected_services[i], v->root_cause.service))
            blast++;
    v->blast_radius = blast;
    /* Impact raises the anomaly's own severity by one step: many failed requests, or a
     * fault that reaches several services upstream. */
    if ((failed >= 100 || blast >= 3) && worst < FL_SEV_CRITICAL)
        worst++;
    v->severity = (fl_severity_t)worst;
    const char *svc = v->root_cause.service;
    if (!svc && v->n_anomalies)
        svc = v->anomalies[0].service;
    const char *what = "Anomaly";
    switch (v->root_cause.kind ? (int)v->root_cause.kind
                               : (v->n_anomalies ? (int)v->anomalies[0].kind : 0)) {
    case FL_ANOMALY_LATENCY:
        what = "Latency spike";
        break;
    case FL_ANOMALY_ERROR:
    case FL_ANOMALY_NEW_ERROR_TYPE:
        what = "Errors";
        break;
    case FL_ANOMALY_TIMEOUT:
        what = "Timeouts";
        break;
    case FL_ANOMALY_TRAFFIC:
        what = "Traffic anomaly";
        break;
    default:
        break;
    }
    const char *op = v->root_cause.operation;
    char *t = op && *op ? fl_arena_sprintf(x->ar, "%s in %s (%s)", what, svc ? svc : "?", op)
                        : fl_arena_sprintf(x->ar, "%s in %s", what, svc ? svc : "?");
    if (t)
        v->title = t;
}

static int merge_anomaly(inc_t *x, const fl_anomaly_t *a, uint64_t now)
{
    fl_incident_t *v = &x->v;
    size_t i = 0;
    while (i < v->n_anomalies && v->anomalies[i].id != a->id)
        i++;
    int fresh = i == v->n_anomalies;
    if (fresh && v->n_anomalies == CAP_ANOM)
        return FL_OK; /* counted in impact no more; the incident already says enough */
    if (copy_anom(x->ar, &v->anomalies[i], a) != FL_OK)
        return FL_ERR_NOMEM;
    if (fresh) {
        v->n_anomalies++;
        timeline(x, a->detected_ns ? a->detected_ns : now, "anomaly",
                 a->summary ? a->summary : fl_anomaly_kind_name(a->kind));
    }
    add_str(x, v->affected_services, &v->n_affected_services, CAP_SVC, a->service);
    if (a->caller_service)
        add_str(x, v->affected_services, &v->n_affected_services, CAP_SVC, a->caller_service);
    char ep[512];
    snprintf(ep, sizeof(ep), "%s %s", a->service ? a->service : "",
             a->operation ? a->operation : "");
    if (a->subject == FL_SUBJECT_ENDPOINT || a->subject == FL_SUBJECT_SELF_TIME ||
        a->subject == FL_SUBJECT_EDGE || a->subject == FL_SUBJECT_EDGE_GAP)
        add_str(x, v->affected_endpoints, &v->n_affected_endpoints, CAP_EP, ep);
    for (size_t k = 0; k < a->n_trace_ids; k++)
        add_trace(v, a->trace_ids[k]);
    return FL_OK;
}

static void set_candidates(inc_t *x, const fl_rca_result_t *rca, const fl_rca_group_t *g,
                           uint64_t now)
{
    fl_incident_t *v = &x->v;
    if (!rca || !g || !g->n_candidates)
        return;
    const fl_rca_candidate_t *root = &rca->candidates[g->candidates[0]];
    int changed = !v->root_cause.service || strcmp(v->root_cause.service, root->service) ||
                  strcmp(v->root_cause.operation, root->operation) ||
                  v->root_cause.kind != root->kind;
    v->n_candidates = 0;
    for (size_t i = 0; i < g->n_candidates && v->n_candidates < CAP_CAND; i++)
        if (copy_cand(x->ar, &v->candidates[v->n_candidates], &rca->candidates[g->candidates[i]]) ==
            FL_OK)
            v->n_candidates++;
    if (v->n_candidates)
        v->root_cause = v->candidates[0];
    add_str(x, v->affected_services, &v->n_affected_services, CAP_SVC, root->service);
    for (size_t k = 0; k < root->n_trace_ids; k++)
        add_trace(v, root->trace_ids[k]);
    if (changed && v->n_timeline) {
        char *d = fl_arena_sprintf(x->ar, "Root cause: %s %s (%s): %s", root->service,
                                   root->operation, fl_anomaly_kind_name(root->kind), root->issue);
        timeline(x, now, "root_cause", d);
    }
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static inc_t *find(fl_incidents_t *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i].v.id, id) == 0)
            return &s->items[i];
    return NULL;
}

static int active(const inc_t *x)
{
    return x->v.status == FL_INC_OPEN || x->v.status == FL_INC_INVESTIGATING;
}

static inc_t *new_inc(fl_incidents_t *s, uint64_t first, uint64_t seed)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        inc_t *p = realloc(s->items, nc * sizeof(*p));
        if (!p)
            return NULL;
        s->items = p;
        s->cap = nc;
    }
    inc_t *x = &s->items[s->n];
    memset(x, 0, sizeof(*x));
    fl_incident_t empty;
    memset(&empty, 0, sizeof(empty));
    if (!(x->ar = fl_arena_new(0)) || copy_inc(x->ar, &x->v, &empty, 1) != FL_OK) {
        fl_arena_free(x->ar);
        return NULL;
    }
    uint64_t h = mix(mix(0x1f2e3d4c5b6a7988ull, seed), first);
    do {
        snprintf(x->v.id, sizeof(x->v.id), "INC-%016llx", (unsigned long long)h);
        h = mix(h, 1);
    } while (find(s, x->v.id));
    x->v.status = FL_INC_OPEN;
    x->v.first_detected_ns = first;
    x->seq = ++s->seq;
    s->n++;
    return x;
}

/* ---------------------------------------------------------------- update */

static int group_matches(const fl_incidents_t *s, const inc_t *x, const fl_anomaly_t *an,
                         const fl_rca_group_t *g, const fl_rca_candidate_t *root, uint64_t now)
{
    const fl_incident_t *v = &x->v;
    if (!active(x) || now > v->last_active_ns + s->o.correlation_window_ns)
        return 0;
    for (size_t j = 0; j < g->n_anomalies; j++)
        for (size_t i = 0; i < v->n_anomalies; i++)
            if (v->anomalies[i].id == an[g->anomalies[j]].id)
                return 2;
    if (root && v->root_cause.service) {
        if (strcmp(root->service, v->root_cause.service) == 0)
            return 1;
        if (has_str(v->affected_services, v->n_affected_services, root->service))
            return 1;
    }
    if (v->root_cause.service)
        for (size_t j = 0; j < g->n_anomalies; j++)
            if (strcmp(an[g->anomalies[j]].service, v->root_cause.service) == 0)
                return 1;
    return 0;
}

static int push_change(fl_arena_t *ar, char (**arr)[24], size_t *n, const char *id)
{
    if (!ar)
        return FL_OK;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*arr)[i], id) == 0)
            return FL_OK;
    char(*p)[24] = fl_arena_alloc(ar, (*n + 1) * 24);
    if (!p)
        return FL_ERR_NOMEM;
    if (*n)
        memcpy(p, *arr, *n * 24);
    snprintf(p[*n], 24, "%s", id);
    *arr = p;
    (*n)++;
    return FL_OK;
}

static int update_locked(fl_incidents_t *s, const fl_anomaly_t *an, size_t n,
                         const fl_rca_result_t *rca, uint64_t now, fl_arena_t *ar,
                         fl_incident_changes_t *ch)
{
    fl_incident_changes_t dummy;
    if (!ch)
        ch = &dummy;
    memset(ch, 0, sizeof(*ch));
    /* Without a ranking every anomaly forms one group. */
    fl_rca_group_t one;
    uint32_t *all = NULL;
    const fl_rca_group_t *groups = rca ? rca->groups : NULL;
    size_t ng = rca ? rca->n_groups : 0;
    if (!ng && n) {
        if (!(all = malloc(n * sizeof(*all))))
            return FL_ERR_NOMEM;
        for (size_t i = 0; i < n; i++)
            all[i] = (uint32_t)i;
        one = (fl_rca_group_t){NULL, 0, all, n};
        groups = &one;
        ng = 1;
        rca = NULL;
    }
    uint8_t *touched = calloc(s->n + ng + 1, 1);
    if (!touched) {
        free(all);
        return FL_ERR_NOMEM;
    }
    int rc = FL_OK;
    for (size_t gi = 0; gi < ng; gi++) {
        const fl_rca_group_t *g = &groups[gi];
        if (!g->n_anomalies)
            continue;
        const fl_rca_candidate_t *root =
            rca && g->n_candidates ? &rca->candidates[g->candidates[0]] : NULL;
        /* Prefer an incident sharing an anomaly; one already extended by another group of
         * this update only takes it when they share an anomaly. */
        inc_t *x = NULL;
        int best = 0;
        for (size_t i = 0; i < s->n; i++) {
            int m = group_matches(s, &s->items[i], an, g, root, now);
            if (m == 1 && touched[i])
                m = 0;
            if (m > best) {
                best = m;
                x = &s->items[i];
            }
        }
        int opened = 0;
        if (!x) {
            uint64_t first = UINT64_MAX, seed = 0;
            for (size_t j = 0; j < g->n_anomalies; j++) {
                const fl_anomaly_t *a = &an[g->anomalies[j]];
                uint64_t d = a->detected_ns ? a->detected_ns : now;
                if (d < first) {
                    first = d;
                    seed = a->id;
                }
            }
            if (!(x = new_inc(s, first, seed))) {
                rc = FL_ERR_NOMEM;
                goto out;
            }
            opened = 1;
            if ((rc = push_change(ar, &ch->opened, &ch->n_opened, x->v.id)) != FL_OK)
                goto out;
        }
        touched[x - s->items] = 1;
        fl_severity_t before = x->v.severity;
        if (opened) {
            char *d = root ? fl_arena_sprintf(x->ar, "Incident opened: %s %s: %s", root->service,
                                              root->operation, root->issue)
                           : fl_arena_strdup(x->ar, "Incident opened");
            timeline(x, x->v.first_detected_ns, "opened", d);
        }
        for (size_t j = 0; j < g->n_anomalies; j++)
            if ((rc = merge_anomaly(x, &an[g->anomalies[j]], now)) != FL_OK)
                goto out;
        set_candidates(x, rca, g, now);
        derive(x);
        if (!opened && x->v.severity > before) {
            char *d = fl_arena_sprintf(x->ar, "Severity raised from %s to %s",
                                       fl_severity_name(before), fl_severity_name(x->v.severity));
            timeline(x, now, "severity", d);
        }
        if (now > x->v.last_updated_ns)
            x->v.last_updated_ns = now;
        if (x->v.last_updated_ns < x->v.first_detected_ns)
            x->v.last_updated_ns = x->v.first_detected_ns;
        x->v.last_active_ns = x->v.last_updated_ns;
        if (!opened && (rc = push_change(ar, &ch->updated, &ch->n_updated, x->v.id)) != FL_OK)
            goto out;
        if ((rc = compact(x)) != FL_OK)
            goto out;
    }
    /* Lifecycle by event time: auto-resolve, then close after retention. */
    for (size_t i = 0; i < s->n; i++) {
        inc_t *x = &s->items[i];
        fl_incident_t *v = &x->v;
        if (active(x) && !touched[i] && now >= v->last_active_ns + s->o.auto_resolve_ns) {
            for (size_t k = 0; k < v->n_anomalies; k++)
                v->anomalies[k].open = 0;
            v->status = FL_INC_RESOLVED;
            v->resolved_ns = now;
            v->last_updated_ns = now;
            v->resolved_by = "faultline";
            v->resolution =
                fl_arena_sprintf(x->ar,
                                 "Resolved automatically: every anomaly clear for "
                                 "%llu s",
                                 (unsigned long long)(s->o.auto_resolve_ns / 1000000000ull));
            timeline(x, now, "auto_resolved", v->resolution);
            if ((rc = push_change(ar, &ch->resolved, &ch->n_resolved, v->id)) != FL_OK)
                goto out;
        } else if (v->status == FL_INC_RESOLVED && now >= v->resolved_ns + s->o.retention_ns) {
            v->status = FL_INC_CLOSED;
            v->closed_ns = now;
            v->last_updated_ns = now;
            timeline(x, now, "closed", "Closed after the retention period");
            if ((rc = push_change(ar, &ch->resolved, &ch->n_resolved, v->id)) != FL_OK)
                goto out;
        }
    }
    /* Bound the set: the oldest closed incidents go first. */
    while (s->n > s->o.max_incidents) {
        size_t victim = s->n;
        for (size_t i = 0; i < s->n; i++)
            if (s->items[i].v.status == FL_INC_CLOSED &&
                (victim == s->n || s->items[i].seq < s->items[victim].seq))
                victim = i;
        if (victim == s->n)
            break;
        fl_arena_free(s->items[victim].ar);
        memmove(&s->items[victim], &s->items[victim + 1], (s->n - victim - 1) * sizeof(inc_t));
        s->n--;
    }
out:
    free(touched);
    free(all);
    return rc;
}

int fl_incidents_update(fl_incidents_t *s, const fl_anomaly_t *anomalies, size_t n,
                        const fl_rca_result_t *rca, uint64_t now_ns, fl_arena_t *arena,
                        fl_incident_changes_t *changes)
{
    if (!s || (n && !anomalies))
        return FL_ERR_INVALID;
    if (rca)
        for (size_t g = 0; g < rca->n_groups; g++)
            for (size_t j = 0; j < rca->groups[g].n_anomalies; j++)
                if (rca->groups[g].anomalies[j] >= n)
                    return FL_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    int rc = update_locked(s, anomalies, n, rca, now_ns, arena, changes);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---------------------------------------------------------------- queries, lifecycle */

static int cmp_newest(const void *x, const void *y)
{
    const fl_incident_t *a = x, *b = y;
    if (a->first_detected_ns != b->first_detected_ns)
        return a->first_detected_ns > b->first_detected_ns ? -1 : 1;
    return strcmp(a->id, b->id);
}

int fl_incidents_list(fl_incidents_t *s, const fl_incident_filter_t *f, fl_arena_t *ar,
                      fl_incident_t **out, size_t *n)
{
    if (!s || !ar || !out || !n)
        return FL_ERR_INVALID;
    *out = NULL;
    *n = 0;
    int rc = FL_OK;
    pthread_mutex_lock(&s->mu);
    fl_incident_t *r = fl_arena_calloc(ar, s->n ? s->n : 1, sizeof(*r));
    if (!r) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    size_t m = 0;
    for (size_t i = 0; i < s->n; i++) {
        const fl_incident_t *v = &s->items[i].v;
        int st = f ? f->status : 0;
        if (st == 0 && !active(&s->items[i]))
            continue;
        if (st > 0 && (int)v->status != st)
            continue;
        if (f && f->severity && (int)v->severity != f->severity)
            continue;
        if (f && f->service && !has_str(v->affected_services, v->n_affected_services, f->service))
            continue;
        if ((rc = copy_inc(ar, &r[m], v, 0)) != FL_OK)
            goto out;
        m++;
    }
    fl_sort(r, m, sizeof(*r), cmp_newest);
    *out = r;
    *n = m;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int fl_incidents_get(fl_incidents_t *s, const char *id, fl_arena_t *ar, fl_incident_t *out)
{
    if (!s || !id || !ar || !out)
        return FL_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    inc_t *x = find(s, id);
    int rc = x ? copy_inc(ar, out, &x->v, 0) : FL_ERR_NOT_FOUND;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int fl_incidents_acknowledge(fl_incidents_t *s, const char *id, uint64_t now, const char **why)
{
    const char *w = NULL;
    if (!s || !id)
        return FL_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    int rc = FL_OK;
    inc_t *x = find(s, id);
    if (!x) {
        rc = FL_ERR_NOT_FOUND;
        w = "no such incident";
    } else if (x->v.status != FL_INC_OPEN) {
        rc = FL_ERR_CONFLICT;
        w = x->v.status == FL_INC_INVESTIGATING ? "incident is already acknowledged"
            : x->v.status == FL_INC_RESOLVED    ? "incident is resolved: it cannot be acknowledged"
                                                : "incident is closed: it cannot be acknowledged";
    } else {
        x->v.status = FL_INC_INVESTIGATING;
        x->v.acknowledged_ns = now;
        if (now > x->v.last_updated_ns)
            x->v.last_updated_ns = now;
        timeline(x, now, "acknowledged", "Acknowledged: investigating");
    }
    pthread_mutex_unlock(&s->mu);
    if (why)
        *why = w;
    return rc;
}

int fl_incidents_resolve(fl_incidents_t *s, const char *id, const char *resolution,
                         const char *resolved_by, uint64_t now, const char **why)
{
    const char *w = NULL;
    if (!s || !id)
        return FL_ERR_INVALID;
    if (!resolution || !*resolution || !resolved_by || !*resolved_by) {
        if (why)
            *why = "resolution and resolved_by are required";
        return FL_ERR_INVALID;
    }
    pthread_mutex_lock(&s->mu);
    int rc = FL_OK;
    inc_t *x = find(s, id);
    if (!x) {
        rc = FL_ERR_NOT_FOUND;
        w = "no such incident";
    } else if (!active(x)) {
        rc = FL_ERR_CONFLICT;
        w = x->v.status == FL_INC_RESOLVED ? "incident is already resolved"
                                           : "incident is closed: it cannot be resolved";
    } else {
        const char *r = fl_arena_strdup(x->ar, resolution);
        const char *b = fl_arena_strdup(x->ar, resolved_by);
        char *d = fl_arena_sprintf(x->ar, "Resolved by %s: %s", resolved_by, resolution);
        if (!r || !b || !d) {
            rc = FL_ERR_NOMEM;
        } else {
            x->v.status = FL_INC_RESOLVED;
            x->v.resolution = r;
            x->v.resolved_by = b;
            x->v.resolved_ns = now;
            if (now > x->v.last_updated_ns)
                x->v.last_updated_ns = now;
            timeline(x, now, "resolved", d);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (why)
        *why = w;
    return rc;
}

/* ---------------------------------------------------------------- persistence */

#define BLOB_VERSION 1

static int put_ostr(fl_buf_t *b, const char *s)
{
    int rc = fl__put_u8(b, s != NULL);
    return rc ? rc : (s ? fl__put_str(b, s) : FL_OK);
}

static int put_cand(fl_buf_t *b, const fl_rca_candidate_t *c)
{
    int rc = 0;
    rc |= put_ostr(b, c->service);
    rc |= put_ostr(b, c->operation);
    rc |= fl__put_varint(b, (uint64_t)c->virtual_peer);
    rc |= fl__put_varint(b, (uint64_t)c->kind);
    rc |= fl__put_double(b, c->score);
    rc |= fl__put_double(b, c->confidence);
    rc |= put_ostr(b, c->issue);
    rc |= fl__put_double(b, c->observed);
    rc |= fl__put_double(b, c->baseline);
    rc |= fl__put_varint(b, c->anomalous_traces);
    rc |= fl__put_varint(b, c->normal_traces);
    rc |= fl__put_varint(b, c->anomalies);
    rc |= fl__put_varint(b, c->group);
    rc |= fl__put_varint(b, c->n_trace_ids);
    for (size_t i = 0; i < c->n_trace_ids; i++)
        rc |= fl__put_bytes(b, c->trace_ids[i], 16);
    return rc ? FL_ERR_NOMEM : FL_OK;
}

static int put_anom(fl_buf_t *b, const fl_anomaly_t *a)
{
    int rc = 0;
    rc |= fl__put_varint(b, a->id);
    rc |= fl__put_varint(b, (uint64_t)a->kind);
    rc |= fl__put_varint(b, (uint64_t)a->subject);
    rc |= put_ostr(b, a->service);
    rc |= put_ostr(b, a->operation);
    rc |= put_ostr(b, a->caller_service);
    rc |= put_ostr(b, a->caller_operation);
    rc |= fl__put_varint(b, (uint64_t)a->virtual_peer);
    rc |= put_ostr(b, a->metric);
    rc |= put_ostr(b, a->unit);
    rc |= put_ostr(b, a->direction);
    rc |= put_ostr(b, a->error_type);
    rc |= fl__put_varint(b, a->start_ns);
    rc |= fl__put_varint(b, a->end_ns);
    rc |= fl__put_varint(b, a->detected_ns);
    rc |= fl__put_varint(b, (uint64_t)a->open);
    rc |= fl__put_varint(b, (uint64_t)a->accepted);
    rc |= fl__put_double(b, a->observed);
    rc |= fl__put_double(b, a->baseline);
    rc |= fl__put_double(b, a->ratio);
    rc |= fl__put_double(b, a->z);
    rc |= fl__put_varint(b, a->samples);
    rc |= fl__put_varint(b, a->buckets);
    rc |= fl__put_varint(b, (uint64_t)a->severity);
    rc |= put_ostr(b, a->summary);
    rc |= fl__put_varint(b, a->n_trace_ids);
    for (size_t i = 0; i < a->n_trace_ids; i++)
        rc |= fl__put_bytes(b, a->trace_ids[i], 16);
    return rc ? FL_ERR_NOMEM : FL_OK;
}

static int put_inc(fl_buf_t *b, const fl_incident_t *v)
{
    int rc = 0;
    rc |= fl__put_str(b, v->id);
    rc |= put_ostr(b, v->title);
    rc |= fl__put_varint(b, (uint64_t)v->severity);
    rc |= fl__put_varint(b, (uint64_t)v->status);
    rc |= fl__put_varint(b, v->n_candidates);
    for (size_t i = 0; i < v->n_candidates; i++)
        rc |= put_cand(b, &v->candidates[i]);
    rc |= fl__put_varint(b, v->n_affected_services);
    for (size_t i = 0; i < v->n_affected_services; i++)
        rc |= fl__put_str(b, v->affected_services[i]);
    rc |= fl__put_varint(b, v->n_affected_endpoints);
    for (size_t i = 0; i < v->n_affected_endpoints; i++)
        rc |= fl__put_str(b, v->affected_endpoints[i]);
    rc |= fl__put_varint(b, v->first_detected_ns);
    rc |= fl__put_varint(b, v->last_updated_ns);
    rc |= fl__put_varint(b, v->last_active_ns);
    rc |= fl__put_varint(b, v->n_anomalies);
    for (size_t i = 0; i < v->n_anomalies; i++)
        rc |= put_anom(b, &v->anomalies[i]);
    rc |= fl__put_varint(b, v->n_timeline);
    for (size_t i = 0; i < v->n_timeline; i++) {
        rc |= fl__put_varint(b, v->timeline[i].time_ns);
        rc |= fl__put_str(b, v->timeline[i].type);
        rc |= fl__put_str(b, v->timeline[i].detail);
    }
    rc |= fl__put_varint(b, v->n_trace_ids);
    for (size_t i = 0; i < v->n_trace_ids; i++)
        rc |= fl__put_bytes(b, v->trace_ids[i], 16);
    rc |= fl__put_varint(b, v->correlated_failures);
    rc |= fl__put_varint(b, v->failed_requests);
    rc |= fl__put_varint(b, v->blast_radius);
    rc |= put_ostr(b, v->resolution);
    rc |= put_ostr(b, v->resolved_by);
    rc |= fl__put_varint(b, v->acknowledged_ns);
    rc |= fl__put_varint(b, v->resolved_ns);
    rc |= fl__put_varint(b, v->closed_ns);
    return rc ? FL_ERR_NOMEM : FL_OK;
}

int fl_incidents_save(fl_incidents_t *s, fl_buf_t *out)
{
    if (!s || !out)
        return FL_ERR_INVALID;
    pthread_mutex_lock(&s->mu);
    int rc = fl__put_bytes(out, "FLI", 3);
    if (!rc)
        rc = fl__put_u8(out, BLOB_VERSION);
    if (!rc)
        rc = fl__put_varint(out, s->seq);
    if (!rc)
        rc = fl__put_varint(out, s->n);
    for (size_t i = 0; i < s->n && !rc; i++)
        rc = put_inc(out, &s->items[i].v);
    pthread_mutex_unlock(&s->mu);
    return rc ? (rc == FL_ERR_LIMIT ? FL_ERR_LIMIT : FL_ERR_NOMEM) : FL_OK;
}

/* A decoded string copied into the arena (NULL when absent). */
static const char *get_ostr(fl__rd_t *r, fl_arena_t *ar, int optional)
{
    if (optional && !fl__get_u8(r))
        return NULL;
    size_t n;
    const char *p = fl__get_str(r, &n);
    if (r->err)
        return NULL;
    const char *d = fl_arena_strndup(ar, p, n);
    if (!d)
        r->err = 2;
    return d;
}

static size_t get_count(fl__rd_t *r, size_t cap)
{
    uint64_t n = fl__get_varint(r);
    if (n > cap) {
        r->err = 1;
        return 0;
    }
    return (size_t)n;
}

static void get_tids(fl__rd_t *r, size_t *n, uint8_t (*ids)[16], size_t cap)
{
    *n = get_count(r, cap);
    for (size_t i = 0; i < *n; i++)
        fl__get_bytes(r, ids[i], 16);
}

static void get_cand(fl__rd_t *r, fl_arena_t *ar, fl_rca_candidate_t *c)
{
    memset(c, 0, sizeof(*c));
    c->service = get_ostr(r, ar, 1);
    c->operation = get_ostr(r, ar, 1);
    c->virtual_peer = (int)fl__get_varint(r);
    c->kind = (fl_anomaly_kind_t)fl__get_varint(r);
    c->score = fl__get_double(r);
    c->confidence = fl__get_double(r);
    c->issue = get_ostr(r, ar, 1);
    c->observed = fl__get_double(r);
    c->baseline = fl__get_double(r);
    c->anomalous_traces = (uint32_t)fl__get_varint(r);
    c->normal_traces = (uint32_t)fl__get_varint(r);
    c->anomalies = (uint32_t)fl__get_varint(r);
    c->group = (uint32_t)fl__get_varint(r);
    get_tids(r, &c->n_trace_ids, c->trace_ids, FL_ANOMALY_MAX_TRACES);
}

static void get_anom(fl__rd_t *r, fl_arena_t *ar, fl_anomaly_t *a)
{
    memset(a, 0, sizeof(*a));
    a->id = fl__get_varint(r);
    a->kind = (fl_anomaly_kind_t)fl__get_varint(r);
    a->subject = (fl_subject_t)fl__get_varint(r);
    a->service = get_ostr(r, ar, 1);
    a->operation = get_ostr(r, ar, 1);
    a->caller_service = get_ostr(r, ar, 1);
    a->caller_operation = get_ostr(r, ar, 1);
    a->virtual_peer = (int)fl__get_varint(r);
    a->metric = get_ostr(r, ar, 1);
    a->unit = get_ostr(r, ar, 1);
    a->direction = get_ostr(r, ar, 1);
    a->error_type = get_ostr(r, ar, 1);
    a->start_ns = fl__get_varint(r);
    a->end_ns = fl__get_varint(r);
    a->detected_ns = fl__get_varint(r);
    a->open = (int)fl__get_varint(r);
    a->accepted = (int)fl__get_varint(r);
    a->observed = fl__get_double(r);
    a->baseline = fl__get_double(r);
    a->ratio = fl__get_double(r);
    a->z = fl__get_double(r);
    a->samples = fl__get_varint(r);
    a->buckets = fl__get_varint(r);
    a->severity = (fl_severity_t)fl__get_varint(r);
    a->summary = get_ostr(r, ar, 1);
    get_tids(r, &a->n_trace_ids, a->trace_ids, FL_ANOMALY_MAX_TRACES);
}

static int get_inc(fl__rd_t *r, inc_t *x)
{
    fl_incident_t empty;
    memset(&empty, 0, sizeof(empty));
    if (!(x->ar = fl_arena_new(0)) || copy_inc(x->ar, &x->v, &empty, 1) != FL_OK)
        return FL_ERR_NOMEM;
    fl_incident_t *v = &x->v;
    fl_arena_t *ar = x->ar;
    size_t n;
    const char *id = fl__get_str(r, &n);
    if (r->err || n >= sizeof(v->id) || n < 4 || memcmp(id, "INC-", 4) != 0)
        return FL_ERR_DECODE;
    memcpy(v->id, id, n);
    v->id[n] = 0;
    v->title = get_ostr(r, ar, 1);
    v->severity = (fl_severity_t)fl__get_varint(r);
    v->status = (fl_incident_status_t)fl__get_varint(r);
    if (v->severity < FL_SEV_LOW || v->severity > FL_SEV_CRITICAL || v->status < FL_INC_OPEN ||
        v->status > FL_INC_CLOSED)
        r->err = 1;
    v->n_candidates = get_count(r, CAP_CAND);
    for (size_t i = 0; i < v->n_candidates && !r->err; i++)
        get_cand(r, ar, &v->candidates[i]);
    if (v->n_candidates)
        v->root_cause = v->candidates[0];
    v->n_affected_services = get_count(r, CAP_SVC);
    for (size_t i = 0; i < v->n_affected_services && !r->err; i++)
        v->affected_services[i] = get_ostr(r, ar, 0);
    v->n_affected_endpoints = get_count(r, CAP_EP);
    for (size_t i = 0; i < v->n_affected_endpoints && !r->err; i++)
        v->affected_endpoints[i] = get_ostr(r, ar, 0);
    v->first_detected_ns = fl__get_varint(r);
    v->last_updated_ns = fl__get_varint(r);
    v->last_active_ns = fl__get_varint(r);
    v->n_anomalies = get_count(r, CAP_ANOM);
    for (size_t i = 0; i < v->n_anomalies && !r->err; i++)
        get_anom(r, ar, &v->anomalies[i]);
    v->n_timeline = get_count(r, CAP_TL);
    for (size_t i = 0; i < v->n_timeline && !r->err; i++) {
        v->timeline[i].time_ns = fl__get_varint(r);
        v->timeline[i].type = get_ostr(r, ar, 0);
        v->timeline[i].detail = get_ostr(r, ar, 0);
    }
    get_tids(r, &v->n_trace_ids, v->trace_ids, CAP_TR);
    v->correlated_failures = fl__get_varint(r);
    v->failed_requests = fl__get_varint(r);
    v->blast_radius = (uint32_t)fl__get_varint(r);
    v->resolution = get_ostr(r, ar, 1);
    v->resolved_by = get_ostr(r, ar, 1);
    v->acknowledged_ns = fl__get_varint(r);
    v->resolved_ns = fl__get_varint(r);
    v->closed_ns = fl__get_varint(r);
    return r->err == 2 ? FL_ERR_NOMEM : r->err ? FL_ERR_DECODE : FL_OK;
}

int fl_incidents_restore(fl_incidents_t *s, const void *data, size_t len)
{
    if (!s || (len && !data))
        return FL_ERR_INVALID;
    fl__rd_t r = {data, (const uint8_t *)data + len, 0};
    if (len < 4 || memcmp(data, "FLI", 3) != 0)
        return FL_ERR_DECODE;
    r.p += 3;
    uint8_t ver = fl__get_u8(&r);
    if (ver > BLOB_VERSION)
        return FL_ERR_UNSUPPORTED;
    if (ver != BLOB_VERSION)
        return FL_ERR_DECODE;
    uint64_t seq = fl__get_varint(&r);
    uint64_t n = fl__get_varint(&r);
    if (r.err || n > (uint64_t)(r.end - r.p))
        return FL_ERR_DECODE;
    inc_t *items = calloc(n ? n : 1, sizeof(*items));
    if (!items)
        return FL_ERR_NOMEM;
    int rc = FL_OK;
    size_t got = 0;
    for (; got < n && rc == FL_OK; got++) {
        rc = get_inc(&r, &items[got]);
        items[got].seq = got + 1;
    }
    if (rc == FL_OK && r.p != r.end)
        rc = FL_ERR_DECODE;
    if (rc != FL_OK) {
        for (size_t i = 0; i < got; i++)
            fl_arena_free(items[i].ar);
        free(items);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    clear_items(s);
    free(s->items);
    s->items = items;
    s->n = s->cap = n;
    s->seq = seq > n ? seq : n;
    pthread_mutex_unlock(&s->mu);
    return FL_OK;
}
