/* SPDX-License-Identifier: Apache-2.0 */
/* Synthetic traffic: topology JSON -> call graph, scripted faults, and a generator that
 * expands Poisson arrivals into complete traces. Each trace draws from its own random stream
 * (seeded from the run seed and its arrival), so a fault changes only the traces it touches. */
#include "synth.h"

#include <faultline/common.h>

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32

/* ---------------------------------------------------------------- random numbers */

typedef struct rng {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in (0, 1). */
static double rng_unit(rng_t *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(rng_t *r)
{
    double u1 = rng_unit(r), u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void rng_id(rng_t *r, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = rng_next(r);
            for (size_t j = 0; j < 8 && i + j < n; j++)
                out[i + j] = (uint8_t)(v >> (8 * j));
        }
    } while (fl_is_zero(out, n));
}

/* ---------------------------------------------------------------- topology */

typedef struct latency {
    int fixed;
    double median_ms, sigma;
} latency_t;

typedef struct call {
    int op; /* callee operation (an instrumented op or a peer op) */
    double prob;
    uint64_t timeout_ns;
} call_t;

typedef struct step {
    call_t *calls; /* more than one: made in parallel */
    size_t n;
} step_t;

typedef struct op {
    int service;
    char *name, *method, *route;
    int peer; /* an uninstrumented peer's operation: only a CLIENT span exists */
    char *db_system, *db_name;
    latency_t lat;
    double error_rate;
    char *error_type;
    double rate; /* entry requests per second; 0: not an entry */
    step_t *steps;
    size_t n_steps;
} op_t;

typedef struct service {
    char *name;
    int peer;
} service_t;

struct fl_synth_topo {
    service_t *svc;
    size_t n_svc;
    op_t *ops;
    size_t n_ops;
    char **edge_caller, **edge_callee;
    size_t n_edges;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void fl_synth_topo_free(fl_synth_topo_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_svc; i++)
        free(t->svc[i].name);
    for (size_t i = 0; i < t->n_ops; i++) {
        op_t *o = &t->ops[i];
        free(o->name);
        free(o->method);
        free(o->route);
        free(o->db_system);
        free(o->db_name);
        free(o->error_type);
        for (size_t s = 0; s < o->n_steps; s++)
            free(o->steps[s].calls);
        free(o->steps);
    }
    for (size_t i = 0; i < t->n_edges; i++) {
        free(t->edge_caller[i]);
        free(t->edge_callee[i]);
    }
    free(t->edge_caller);
    free(t->edge_callee);
    free(t->svc);
    free(t->ops);
    free(t);
}

static int find_service(const fl_synth_topo_t *t, const char *name)
{
    for (size_t i = 0; i < t->n_svc; i++)
        if (strcmp(t->svc[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int find_op(const fl_synth_topo_t *t, int svc, const char *name)
{
    for (size_t i = 0; i < t->n_ops; i++)
        if (t->ops[i].service == svc && strcmp(t->ops[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int add_service(fl_synth_topo_t *t, const char *name, int peer)
{
    service_t *n = realloc(t->svc, (t->n_svc + 1) * sizeof(*n));
    if (!n)
        return -1;
    t->svc = n;
    t->svc[t->n_svc].name = xstrdup(name);
    t->svc[t->n_svc].peer = peer;
    if (!t->svc[t->n_svc].name)
        return -1;
    return (int)t->n_svc++;
}

static int add_op(fl_synth_topo_t *t, int svc, const char *name)
{
    op_t *n = realloc(t->ops, (t->n_ops + 1) * sizeof(*n));
    if (!n)
        return -1;
    t->ops = n;
    op_t *o = &t->ops[t->n_ops];
    memset(o, 0, sizeof(*o));
    o->service = svc;
    o->name = xstrdup(name);
    /* "POST /charge" -> method POST, route /charge; a bare "/x" or word gets no method. */
    const char *sp = strchr(name, ' ');
    if (sp && sp[1] == '/') {
        o->method = malloc((size_t)(sp - name) + 1);
        if (o->method) {
            memcpy(o->method, name, (size_t)(sp - name));
            o->method[sp - name] = 0;
        }
        o->route = xstrdup(sp + 1);
    } else if (name[0] == '/') {
        o->method = xstrdup("GET");
        o->route = xstrdup(name);
    }
    o->lat.median_ms = 5;
    o->lat.sigma = 0.25;
    o->error_type = xstrdup("InternalError");
    if (!o->name || !o->error_type)
        return -1;
    return (int)t->n_ops++;
}

static int check_keys(json_t *obj, const char *const *allowed, const char *where, char *err,
                      size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            seterr(err, errlen, "%s: unknown key \"%s\"", where, k);
            return -1;
        }
    }
    return 0;
}

static int get_number(json_t *obj, const char *key, double lo, double hi, double *out,
                      const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        seterr(err, errlen, "%s.%s: expected a number from %g to %g", where, key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int parse_latency(json_t *v, latency_t *l, const char *where, char *err, size_t errlen)
{
    static const char *const keys[] = {"median_ms", "sigma", "fixed_ms", NULL};
    char w[512];
    snprintf(w, sizeof(w), "%s.latency", where);
    if (!json_is_object(v)) {
        seterr(err, errlen,
               "%s: expected an object {\"median_ms\":..,\"sigma\":..} or "
               "{\"fixed_ms\":..}",
               w);
        return -1;
    }
    if (check_keys(v, keys, w, err, errlen) != 0)
        return -1;
    if (json_object_get(v, "fixed_ms")) {
        if (json_object_get(v, "median_ms") || json_object_get(v, "sigma")) {
            seterr(err, errlen, "%s: fixed_ms excludes median_ms and sigma", w);
            return -1;
        }
        l->fixed = 1;
        l->sigma = 0;
        return get_number(v, "fixed_ms", 0.001, 3600000, &l->median_ms, w, err, errlen);
    }
    if (!json_object_get(v, "median_ms")) {
        seterr(err, errlen, "%s: missing median_ms (or fixed_ms)", w);
        return -1;
    }
    l->fixed = 0;
    l->sigma = 0.25;
    if (get_number(v, "median_ms", 0.001, 3600000, &l->median_ms, w, err, errlen) != 0 ||
        get_number(v, "sigma", 0, 3, &l->sigma, w, err, errlen) != 0)
        return -1;
    return 0;
}

/* Operation attributes shared by instrumented operations and peer calls. */
static int parse_behaviour(json_t *v, op_t *o, const char *where, char *err, size_t errlen)
{
    json_t *l = json_object_get(v, "latency");
    if (l && parse_latency(l, &o->lat, where, err, errlen) != 0)
        return -1;
    if (get_number(v, "error_rate", 0, 1, &o->error_rate, where, err, errlen) != 0)
        return -1;
    json_t *et = json_object_get(v, "error_type");
    if (et) {
        if (!json_is_string(et) || !*json_string_value(et)) {
            seterr(err, errlen, "%s.error_type: expected a non-empty string", where);
            return -1;
        }
        free(o->error_type);
        o->error_type = xstrdup(json_string_value(et));
    }
    return 0;
}

/* Pending "to" references are resolved once every service is known. */
typedef struct callref {
    int op, step, idx;
    char *to;
    char where[256];
} callref_t;

typedef struct parse_ctx {
    fl_synth_topo_t *t;
    callref_t *refs;
    size_t n_refs;
    char *err;
    size_t errlen;
} parse_ctx_t;

static int parse_call(parse_ctx_t *c, json_t *v, int op, int step, int idx, call_t *out,
                      const char *where)
{
    static const char *const keys[] = {"to",          "peer",       "db.system",  "db.name",
                                       "name",        "latency",    "error_rate", "error_type",
                                       "probability", "timeout_ms", NULL};
    if (!json_is_object(v)) {
        seterr(c->err, c->errlen, "%s: expected a call object", where);
        return -1;
    }
    if (check_keys(v, keys, where, c->err, c->errlen) != 0)
        return -1;
    out->prob = 1.0;
    double tmo = 2000;
    if (get_number(v, "probability", 0, 1, &out->prob, where, c->err, c->errlen) != 0 ||
        get_number(v, "timeout_ms", 1, 3600000, &tmo, where, c->err, c->errlen) != 0)
        return -1;
    out->timeout_ns = (uint64_t)(tmo * 1e6);
    json_t *to = json_object_get(v, "to"), *peer = json_object_get(v, "peer");
    if ((to != NULL) == (peer != NULL)) {
        seterr(c->err, c->errlen,
               "%s: a call needs exactly one of \"to\" (service.operation) "
               "or \"peer\" (an uninstrumented peer)",
               where);
        return -1;
    }
    if (to) {
        if (!json_is_string(to)) {
            seterr(c->err, c->errlen, "%s.to: expected \"service.operation\"", where);
            return -1;
        }
        static const char *const only[] = {"latency", "error_rate", "error_type", "db.system",
                                           "db.name", "name",       NULL};
        for (size_t i = 0; only[i]; i++)
            if (json_object_get(v, only[i])) {
                seterr(c->err, c->errlen,
                       "%s: \"%s\" belongs to a peer call; set it on the callee operation", where,
                       only[i]);
                return -1;
            }
        callref_t *n = realloc(c->refs, (c->n_refs + 1) * sizeof(*n));
        if (!n)
            return -1;
        c->refs = n;
        callref_t *r = &c->refs[c->n_refs++];
        r->op = op;
        r->step = step;
        r->idx = idx;
        r->to = xstrdup(json_string_value(to));
        snprintf(r->where, sizeof(r->where), "%s", where);
        out->op = -1;
        return r->to ? 0 : -1;
    }
    if (!json_is_string(peer) || !*json_string_value(peer)) {
        seterr(c->err, c->errlen, "%s.peer: expected a non-empty name", where);
        return -1;
    }
    const char *pname = json_string_value(peer);
    fl_synth_topo_t *t = c->t;
    int svc = find_service(t, pname);
    if (svc >= 0 && !t->svc[svc].peer) {
        seterr(c->err, c->errlen, "%s.peer: \"%s\" is an instrumented service; use \"to\"", where,
               pname);
        return -1;
    }
    if (svc < 0 && (svc = add_service(t, pname, 1)) < 0)
        return -1;
    json_t *nm = json_object_get(v, "name"), *dbs = json_object_get(v, "db.system"),
           *dbn = json_object_get(v, "db.name");
    if ((nm && !json_is_string(nm)) || (dbs && !json_is_string(dbs)) ||
        (dbn && !json_is_string(dbn))) {
        seterr(c->err, c->errlen, "%s: name, db.system and db.name must be strings", where);
        return -1;
    }
    const char *opname = nm ? json_string_value(nm) : dbs ? "query" : "GET /";
    int o = find_op(t, svc, opname);
    if (o < 0) {
        if ((o = add_op(t, svc, opname)) < 0)
            return -1;
        op_t *po = &t->ops[o];
        po->peer = 1;
        po->lat.median_ms = 2;
        po->db_system = dbs ? xstrdup(json_string_value(dbs)) : NULL;
        po->db_name = dbn ? xstrdup(json_string_value(dbn)) : NULL;
        if (po->db_system) { /* a database statement has no HTTP method */
            free(po->method);
            free(po->route);
            po->method = po->route = NULL;
        }
        if (parse_behaviour(v, po, where, c->err, c->errlen) != 0)
            return -1;
    }
    out->op = o;
    return 0;
}

static int parse_operation(parse_ctx_t *c, int svc, json_t *v, const char *swhere, size_t idx)
{
    static const char *const keys[] = {"name", "latency", "error_rate", "error_type",
                                       "rate", "calls",   NULL};
    char where[512];
    fl_synth_topo_t *t = c->t;
    json_t *nm = json_is_object(v) ? json_object_get(v, "name") : NULL;
    if (!json_is_string(nm) || !*json_string_value(nm)) {
        seterr(c->err, c->errlen, "%s.operations[%zu]: missing \"name\" (e.g. \"POST /charge\")",
               swhere, idx);
        return -1;
    }
    snprintf(where, sizeof(where), "%s.operations[\"%s\"]", swhere, json_string_value(nm));
    if (check_keys(v, keys, where, c->err, c->errlen) != 0)
        return -1;
    if (find_op(t, svc, json_string_value(nm)) >= 0) {
        seterr(c->err, c->errlen, "%s: duplicate operation", where);
        return -1;
    }
    int o = add_op(t, svc, json_string_value(nm));
    if (o < 0)
        return -1;
    if (parse_behaviour(v, &t->ops[o], where, c->err, c->errlen) != 0 ||
        get_number(v, "rate", 0, 1e6, &t->ops[o].rate, where, c->err, c->errlen) != 0)
        return -1;
    json_t *calls = json_object_get(v, "calls");
    if (!calls)
        return 0;
    if (!json_is_array(calls)) {
        seterr(c->err, c->errlen, "%s.calls: expected an array", where);
        return -1;
    }
    size_t n = json_array_size(calls);
    step_t *steps = calloc(n ? n : 1, sizeof(*steps));
    if (!steps)
        return -1;
    t->ops[o].steps = steps;
    t->ops[o].n_steps = n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(calls, i);
        json_t *par = json_is_object(s) ? json_object_get(s, "parallel") : NULL;
        char cw[600];
        if (par) {
            if (json_object_size(s) != 1 || !json_is_array(par) || json_array_size(par) == 0) {
                seterr(c->err, c->errlen,
                       "%s.calls[%zu]: \"parallel\" must be the only key and a non-empty "
                       "array of calls",
                       where, i);
                return -1;
            }
            size_t m = json_array_size(par);
            steps[i].calls = calloc(m, sizeof(call_t));
            if (!steps[i].calls)
                return -1;
            steps[i].n = m;
            for (size_t j = 0; j < m; j++) {
                snprintf(cw, sizeof(cw), "%s.calls[%zu].parallel[%zu]", where, i, j);
                if (parse_call(c, json_array_get(par, j), o, (int)i, (int)j, &steps[i].calls[j],
                               cw) != 0)
                    return -1;
            }
        } else {
            steps[i].calls = calloc(1, sizeof(call_t));
            if (!steps[i].calls)
                return -1;
            steps[i].n = 1;
            snprintf(cw, sizeof(cw), "%s.calls[%zu]", where, i);
            if (parse_call(c, s, o, (int)i, 0, &steps[i].calls[0], cw) != 0)
                return -1;
        }
    }
    return 0;
}

/* Depth-first search for a cycle through instrumented calls (it would recurse forever). */
static int has_cycle(const fl_synth_topo_t *t, int op, int *state)
{
    if (state[op] == 1)
        return 1;
    if (state[op] == 2)
        return 0;
    state[op] = 1;
    const op_t *o = &t->ops[op];
    for (size_t s = 0; s < o->n_steps; s++)
        for (size_t i = 0; i < o->steps[s].n; i++)
            if (o->steps[s].calls[i].op >= 0 && has_cycle(t, o->steps[s].calls[i].op, state))
                return 1;
    state[op] = 2;
    return 0;
}

static int cmp_edge(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

static int build_edges(fl_synth_topo_t *t)
{
    size_t cap = 0;
    char **pairs = NULL;
    size_t n = 0;
    for (size_t i = 0; i < t->n_ops; i++) {
        const op_t *o = &t->ops[i];
        for (size_t s = 0; s < o->n_steps; s++)
            for (size_t k = 0; k < o->steps[s].n; k++) {
                const op_t *callee = &t->ops[o->steps[s].calls[k].op];
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    char **np = realloc(pairs, cap * sizeof(*np));
                    if (!np)
                        goto fail;
                    pairs = np;
                }
                const char *a = t->svc[o->service].name, *b = t->svc[callee->service].name;
                pairs[n] = malloc(strlen(a) + strlen(b) + 2);
                if (!pairs[n])
                    goto fail;
                sprintf(pairs[n++], "%s\t%s", a, b);
            }
    }
    if (n)
        fl_sort(pairs, n, sizeof(*pairs), cmp_edge);
    t->edge_caller = calloc(n ? n : 1, sizeof(char *));
    t->edge_callee = calloc(n ? n : 1, sizeof(char *));
    if (!t->edge_caller || !t->edge_callee)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(pairs[i], pairs[i - 1]) == 0)
            continue;
        char *tab = strchr(pairs[i], '\t');
        *tab = 0;
        t->edge_caller[t->n_edges] = xstrdup(pairs[i]);
        t->edge_callee[t->n_edges] = xstrdup(tab + 1);
        t->n_edges++;
        *tab = '\t';
    }
    for (size_t i = 0; i < n; i++)
        free(pairs[i]);
    free(pairs);
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        free(pairs[i]);
    free(pairs);
    return -1;
}

fl_synth_topo_t *fl_synth_topo_parse(const char *json, size_t len, char *err, size_t errlen)
{
    static const char *const top_keys[] = {"services", "description", NULL};
    static const char *const svc_keys[] = {"name", "operations", NULL};
    parse_ctx_t c = {.err = err, .errlen = errlen};
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    fl_synth_topo_t *t = NULL;
    int ok = 0;
    seterr(err, errlen, "out of memory");
    if (!root) {
        seterr(err, errlen, "topology: invalid JSON at line %d column %d: %s", je.line, je.column,
               je.text);
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        goto out;
    c.t = t;
    if (!json_is_object(root)) {
        seterr(err, errlen, "topology: expected an object with \"services\"");
        goto out;
    }
    if (check_keys(root, top_keys, "topology", err, errlen) != 0)
        goto out;
    json_t *svcs = json_object_get(root, "services");
    if (!json_is_array(svcs) || json_array_size(svcs) == 0) {
        seterr(err, errlen, "topology.services: expected a non-empty array");
        goto out;
    }
    /* Services first, so peers named like a later service are caught. */
    for (size_t i = 0; i < json_array_size(svcs); i++) {
        json_t *s = json_array_get(svcs, i);
        json_t *nm = json_is_object(s) ? json_object_get(s, "name") : NULL;
        if (!json_is_string(nm) || !*json_string_value(nm) || strchr(json_string_value(nm), '.')) {
            seterr(err, errlen, "services[%zu].name: expected a non-empty name without '.'", i);
            goto out;
        }
        if (find_service(t, json_string_value(nm)) >= 0) {
            seterr(err, errlen, "services[%zu]: duplicate service \"%s\"", i,
                   json_string_value(nm));
            goto out;
        }
        if (add_service(t, json_string_value(nm), 0) < 0)
            goto out;
    }
    for (size_t i = 0; i < json_array_size(svcs); i++) {
        json_t *s = json_array_get(svcs, i);
        char where[256];
        snprintf(where, sizeof(where), "services[\"%s\"]", t->svc[i].name);
        if (check_keys(s, svc_keys, where, err, errlen) != 0)
            goto out;
        json_t *ops = json_object_get(s, "operations");
        if (!json_is_array(ops) || json_array_size(ops) == 0) {
            seterr(err, errlen, "%s.operations: expected a non-empty array", where);
            goto out;
        }
        for (size_t k = 0; k < json_array_size(ops); k++)
            if (parse_operation(&c, (int)i, json_array_get(ops, k), where, k) != 0)
                goto out;
    }
    for (size_t i = 0; i < c.n_refs; i++) {
        callref_t *r = &c.refs[i];
        char *dot = strchr(r->to, '.');
        int svc = -1, o = -1;
        if (dot) {
            *dot = 0;
            svc = find_service(t, r->to);
            *dot = '.';
        }
        if (svc < 0 || t->svc[svc].peer) {
            seterr(err, errlen, "%s.to: unknown service in \"%s\" (expected service.operation)",
                   r->where, r->to);
            goto out;
        }
        if ((o = find_op(t, svc, dot + 1)) < 0) {
            seterr(err, errlen, "%s.to: service \"%s\" has no operation \"%s\"", r->where,
                   t->svc[svc].name, dot + 1);
            goto out;
        }
        t->ops[r->op].steps[r->step].calls[r->idx].op = o;
    }
    int entries = 0;
    for (size_t i = 0; i < t->n_ops; i++)
        entries += t->ops[i].rate > 0;
    if (!entries) {
        seterr(err, errlen, "topology: no entry operation (give at least one a \"rate\" > 0)");
        goto out;
    }
    int *state = calloc(t->n_ops, sizeof(int));
    if (!state)
        goto out;
    for (size_t i = 0; i < t->n_ops; i++)
        if (has_cycle(t, (int)i, state)) {
            seterr(err, errlen, "topology: the calls from %s.%s form a cycle",
                   t->svc[t->ops[i].service].name, t->ops[i].name);
            free(state);
            goto out;
        }
    free(state);
    if (build_edges(t) != 0)
        goto out;
    ok = 1;
out:
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].to);
    free(c.refs);
    json_decref(root);
    if (!ok) {
        fl_synth_topo_free(t);
        return NULL;
    }
    return t;
}

fl_synth_topo_t *fl_synth_topo_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "cannot open %s", path);
        return NULL;
    }
    fl_buf_t b;
    fl_buf_init(&b, 16 << 20);
    char tmp[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        rc = fl_buf_append(&b, tmp, n);
    fclose(f);
    fl_synth_topo_t *t = NULL;
    if (rc != 0)
        seterr(err, errlen, "%s: too large or out of memory", path);
    else
        t = fl_synth_topo_parse(b.data ? (const char *)b.data : "", b.len, err, errlen);
    fl_buf_dispose(&b);
    return t;
}

size_t fl_synth_topo_n_services(const fl_synth_topo_t *t)
{
    return t->n_svc;
}

const char *fl_synth_topo_service_name(const fl_synth_topo_t *t, size_t i)
{
    return i < t->n_svc ? t->svc[i].name : NULL;
}

int fl_synth_topo_is_peer(const fl_synth_topo_t *t, size_t i)
{
    return i < t->n_svc && t->svc[i].peer;
}

size_t fl_synth_topo_edges(const fl_synth_topo_t *t, const char **callers, const char **callees,
                           size_t max)
{
    size_t n = t->n_edges < max ? t->n_edges : max;
    for (size_t i = 0; i < n; i++) {
        callers[i] = t->edge_caller[i];
        callees[i] = t->edge_callee[i];
    }
    return t->n_edges;
}

/* ---------------------------------------------------------------- faults */

int fl_synth_fault_parse(const char *spec, fl_synth_fault_t *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    f->kind = -1;
    f->factor = -1;
    f->rate = -1;
    f->deadline_ns = 2000000000ull;
    int have_start = 0, have_dur = 0, have_target = 0;
    char *copy = xstrdup(spec), *save = NULL;
    int rc = -1;
    if (!copy) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            seterr(err, errlen, "fault \"%s\": expected key=value, got \"%s\"", spec, kv);
            goto out;
        }
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        char *e = NULL;
        if (strcmp(k, "kind") == 0) {
            if (strcmp(v, "latency") == 0) {
                f->kind = FL_SYNTH_FAULT_LATENCY;
            } else if (strcmp(v, "error") == 0 || strcmp(v, "errors") == 0) {
                f->kind = FL_SYNTH_FAULT_ERROR;
            } else if (strcmp(v, "timeout") == 0) {
                f->kind = FL_SYNTH_FAULT_TIMEOUT;
            } else if (strcmp(v, "traffic") == 0) {
                f->kind = FL_SYNTH_FAULT_TRAFFIC;
            } else if (strcmp(v, "drop") == 0) {
                f->kind = FL_SYNTH_FAULT_TRAFFIC;
                if (f->factor < 0)
                    f->factor = 0;
            } else if (strcmp(v, "surge") == 0) {
                f->kind = FL_SYNTH_FAULT_TRAFFIC;
                if (f->factor < 0)
                    f->factor = 10;
            } else {
                seterr(err, errlen,
                       "fault \"%s\": unknown kind \"%s\" (latency, error, timeout, traffic, "
                       "drop, surge)",
                       spec, v);
                goto out;
            }
        } else if (strcmp(k, "target") == 0) {
            const char *dot = strchr(v, '.');
            size_t sl = dot ? (size_t)(dot - v) : strlen(v);
            if (sl == 0 || sl >= sizeof(f->service) ||
                (dot && (!dot[1] || strlen(dot + 1) >= sizeof(f->operation)))) {
                seterr(err, errlen, "fault \"%s\": bad target \"%s\" (service[.operation])", spec,
                       v);
                goto out;
            }
            memcpy(f->service, v, sl);
            f->service[sl] = 0;
            if (dot)
                snprintf(f->operation, sizeof(f->operation), "%s", dot + 1);
            have_target = 1;
        } else if (strcmp(k, "factor") == 0) {
            f->factor = strtod(v, &e);
            if (e == v || *e || f->factor < 0 || f->factor > 1e6) {
                seterr(err, errlen, "fault \"%s\": bad factor \"%s\"", spec, v);
                goto out;
            }
        } else if (strcmp(k, "rate") == 0) {
            f->rate = strtod(v, &e);
            if (e == v || *e || f->rate < 0 || f->rate > 1) {
                seterr(err, errlen, "fault \"%s\": rate must be from 0 to 1, got \"%s\"", spec, v);
                goto out;
            }
        } else if (strcmp(k, "deadline") == 0) {
            if (fl_duration_parse(v, &f->deadline_ns) != FL_OK || f->deadline_ns == 0) {
                seterr(err, errlen, "fault \"%s\": bad deadline \"%s\"", spec, v);
                goto out;
            }
        } else if (strcmp(k, "start") == 0) {
            if (fl_duration_parse(v, &f->start_ns) == FL_OK) {
                f->start_abs = 0;
            } else if (fl_time_parse(v, &f->start_ns) == FL_OK) {
                f->start_abs = 1;
            } else {
                seterr(err, errlen,
                       "fault \"%s\": bad start \"%s\" (an offset such as 30m, or RFC 3339)", spec,
                       v);
                goto out;
            }
            have_start = 1;
        } else if (strcmp(k, "duration") == 0) {
            if (fl_duration_parse(v, &f->duration_ns) != FL_OK || f->duration_ns == 0) {
                seterr(err, errlen, "fault \"%s\": bad duration \"%s\"", spec, v);
                goto out;
            }
            have_dur = 1;
        } else {
            seterr(err, errlen,
                   "fault \"%s\": unknown key \"%s\" (kind, target, factor, rate, deadline, "
                   "start, duration)",
                   spec, k);
            goto out;
        }
    }
    if (f->kind < 0 || !have_target || !have_start || !have_dur) {
        seterr(err, errlen, "fault \"%s\": kind, target, start and duration are required", spec);
        goto out;
    }
    if (f->kind == FL_SYNTH_FAULT_LATENCY && f->factor < 0)
        f->factor = 5;
    if (f->kind == FL_SYNTH_FAULT_TRAFFIC && f->factor < 0)
        f->factor = 0.1;
    if (f->kind == FL_SYNTH_FAULT_ERROR && f->rate < 0)
        f->rate = 1.0;
    if (f->kind == FL_SYNTH_FAULT_LATENCY && f->factor <= 0) {
        seterr(err, errlen, "fault \"%s\": a latency factor must be > 0", spec);
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

/* ---------------------------------------------------------------- generator */

typedef struct fault_rt {
    fl_synth_fault_t f;
    int svc, op; /* op -1: the whole service */
} fault_rt_t;

typedef struct entry {
    int op;
    rng_t rng;
    uint64_t next_ns, seq;
    double max_factor; /* arrivals are drawn at rate * max_factor, then thinned */
} entry_t;

struct fl_synth_gen {
    const fl_synth_topo_t *t;
    fault_rt_t *faults;
    size_t n_faults;
    entry_t *entries;
    size_t n_entries;
    uint64_t start_ns, end_ns, seed;
    fl_synth_span_t *pending;
    size_t n_pending, cap_pending;
    fl_synth_span_t *out;
    size_t cap_out;
    fl_synth_stats_t st;
    int done;
};

static int fault_hits(const fault_rt_t *f, int op, const op_t *o, uint64_t t)
{
    return f->svc == o->service && (f->op < 0 || f->op == op) && t >= f->f.start_ns &&
           t < f->f.start_ns + f->f.duration_ns;
}

fl_synth_gen_t *fl_synth_gen_new(const fl_synth_topo_t *t, const fl_synth_fault_t *faults,
                                 size_t n_faults, uint64_t start_ns, uint64_t duration_ns,
                                 uint64_t seed, char *err, size_t errlen)
{
    fl_synth_gen_t *g = calloc(1, sizeof(*g));
    if (!g)
        goto oom;
    g->t = t;
    g->start_ns = start_ns;
    g->end_ns = start_ns + duration_ns;
    g->seed = seed;
    g->faults = calloc(n_faults ? n_faults : 1, sizeof(*g->faults));
    g->entries = calloc(t->n_ops, sizeof(*g->entries));
    if (!g->faults || !g->entries)
        goto oom;
    for (size_t i = 0; i < n_faults; i++) {
        fault_rt_t *f = &g->faults[i];
        f->f = faults[i];
        if (!f->f.start_abs) {
            f->f.start_ns += start_ns;
            f->f.start_abs = 1;
        }
        f->svc = find_service(t, f->f.service);
        f->op = -1;
        if (f->svc < 0) {
            seterr(err, errlen, "fault %zu: no service or peer \"%s\" in the topology", i + 1,
                   f->f.service);
            goto fail;
        }
        if (f->f.operation[0] && (f->op = find_op(t, f->svc, f->f.operation)) < 0) {
            seterr(err, errlen, "fault %zu: \"%s\" has no operation \"%s\"", i + 1, f->f.service,
                   f->f.operation);
            goto fail;
        }
        if (f->f.kind == FL_SYNTH_FAULT_TRAFFIC) {
            int any = 0;
            for (size_t k = 0; k < t->n_ops; k++)
                if (t->ops[k].service == f->svc && (f->op < 0 || f->op == (int)k) &&
                    t->ops[k].rate > 0)
                    any = 1;
            if (!any) {
                seterr(err, errlen,
                       "fault %zu: a traffic fault needs an entry operation (with a "
                       "rate) as its target",
                       i + 1);
                goto fail;
            }
        }
    }
    g->n_faults = n_faults;
    for (size_t k = 0; k < t->n_ops; k++) {
        if (t->ops[k].rate <= 0)
            continue;
        entry_t *e = &g->entries[g->n_entries++];
        e->op = (int)k;
        e->max_factor = 1;
        for (size_t i = 0; i < n_faults; i++) {
            const fault_rt_t *f = &g->faults[i];
            if (f->f.kind == FL_SYNTH_FAULT_TRAFFIC && f->svc == t->ops[k].service &&
                (f->op < 0 || f->op == (int)k) && f->f.factor > e->max_factor)
                e->max_factor = f->f.factor;
        }
        rng_seed(&e->rng, seed ^ (0x51ed270b27ull * (k + 1)));
        double rate = t->ops[k].rate * e->max_factor;
        e->next_ns = start_ns + (uint64_t)(-log(rng_unit(&e->rng)) / rate * 1e9);
    }
    return g;
oom:
    seterr(err, errlen, "out of memory");
fail:
    fl_synth_gen_free(g);
    return NULL;
}

void fl_synth_gen_free(fl_synth_gen_t *g)
{
    if (!g)
        return;
    free(g->faults);
    free(g->entries);
    free(g->pending);
    free(g->out);
    free(g);
}

const fl_synth_fault_t *fl_synth_gen_fault(const fl_synth_gen_t *g, size_t i)
{
    return i < g->n_faults ? &g->faults[i].f : NULL;
}

void fl_synth_gen_stats(const fl_synth_gen_t *g, fl_synth_stats_t *st)
{
    *st = g->st;
}

int fl_synth_gen_done(const fl_synth_gen_t *g)
{
    return g->done;
}

typedef struct trace_ctx {
    fl_synth_gen_t *g;
    rng_t rng;
    uint8_t trace_id[16];
    int failed;
} trace_ctx_t;

static fl_synth_span_t *new_span(trace_ctx_t *c)
{
    fl_synth_gen_t *g = c->g;
    if (g->n_pending == g->cap_pending) {
        size_t cap = g->cap_pending ? g->cap_pending * 2 : 4096;
        fl_synth_span_t *n = realloc(g->pending, cap * sizeof(*n));
        if (!n) {
            c->failed = 1;
            return NULL;
        }
        g->pending = n;
        g->cap_pending = cap;
    }
    fl_synth_span_t *s = &g->pending[g->n_pending++];
    memset(s, 0, sizeof(*s));
    memcpy(s->trace_id, c->trace_id, 16);
    rng_id(&c->rng, s->span_id, 8);
    g->st.spans++;
    return s;
}

static uint64_t sample_ns(rng_t *r, const latency_t *l)
{
    double z = rng_normal(r); /* drawn even for fixed latencies: stable stream layout */
    double ms = l->fixed ? l->median_ms : l->median_ms * exp(l->sigma * z);
    if (ms > 600000)
        ms = 600000;
    uint64_t ns = (uint64_t)(ms * 1e6);
    return ns ? ns : 1;
}

static double latency_factor(const fl_synth_gen_t *g, int op, uint64_t t)
{
    double k = 1;
    const op_t *o = &g->t->ops[op];
    for (size_t i = 0; i < g->n_faults; i++)
        if (g->faults[i].f.kind == FL_SYNTH_FAULT_LATENCY && fault_hits(&g->faults[i], op, o, t))
            k *= g->faults[i].f.factor;
    return k;
}

static double error_rate(const fl_synth_gen_t *g, int op, uint64_t t)
{
    double r = g->t->ops[op].error_rate;
    const op_t *o = &g->t->ops[op];
    for (size_t i = 0; i < g->n_faults; i++)
        if (g->faults[i].f.kind == FL_SYNTH_FAULT_ERROR && fault_hits(&g->faults[i], op, o, t) &&
            g->faults[i].f.rate > r)
            r = g->faults[i].f.rate;
    return r;
}

/* The deadline of a timeout fault active on op at t, or 0. */
static uint64_t timeout_of(const fl_synth_gen_t *g, int op, uint64_t t)
{
    const op_t *o = &g->t->ops[op];
    for (size_t i = 0; i < g->n_faults; i++)
        if (g->faults[i].f.kind == FL_SYNTH_FAULT_TIMEOUT && fault_hits(&g->faults[i], op, o, t))
            return g->faults[i].f.deadline_ns;
    return 0;
}

static double traffic_factor(const fl_synth_gen_t *g, int op, uint64_t t)
{
    double k = 1;
    const op_t *o = &g->t->ops[op];
    for (size_t i = 0; i < g->n_faults; i++)
        if (g->faults[i].f.kind == FL_SYNTH_FAULT_TRAFFIC && fault_hits(&g->faults[i], op, o, t))
            k *= g->faults[i].f.factor;
    return k;
}

/* Small network/proxy delays: 100-600 us each way. */
static uint64_t net_gap(rng_t *r)
{
    return 100000 + (uint64_t)(rng_unit(r) * 500000);
}

enum { OUT_OK, OUT_ERROR, OUT_TIMEOUT };

static int gen_server(trace_ctx_t *c, int op, const uint8_t *parent, uint64_t start, uint64_t *end,
                      int depth);

/* One call from a span of caller_svc: the CLIENT span and what it reaches. */
static int gen_call(trace_ctx_t *c, int caller_svc, const uint8_t *parent, const call_t *call,
                    uint64_t start, uint64_t *end, int depth)
{
    fl_synth_gen_t *g = c->g;
    const op_t *callee = &g->t->ops[call->op];
    fl_synth_span_t *cs = new_span(c);
    if (!cs)
        return OUT_ERROR;
    size_t ci = (size_t)(cs - g->pending);
    uint8_t client_id[8];
    memcpy(client_id, cs->span_id, 8);
    cs->kind = FL_SYNTH_CLIENT;
    cs->service = caller_svc;
    memcpy(cs->parent_id, parent, 8);
    cs->has_parent = 1;
    cs->name = callee->name;
    cs->method = callee->method;
    cs->route = callee->route;
    cs->peer = g->t->svc[callee->service].name;
    cs->db_system = callee->db_system;
    cs->db_name = callee->db_name;
    cs->start_ns = start;
    uint64_t g1 = net_gap(&c->rng), g2 = net_gap(&c->rng);
    uint64_t deadline = timeout_of(g, call->op, start + g1);
    int outcome = OUT_OK, status = 200;
    uint64_t e;
    if (deadline) {
        /* The callee stopped answering: nothing of it arrives; the caller gives up. */
        uint64_t wait = call->timeout_ns < deadline ? call->timeout_ns : deadline;
        e = start + wait;
        outcome = OUT_TIMEOUT;
        status = 0;
    } else if (callee->peer) {
        uint64_t d = sample_ns(&c->rng, &callee->lat);
        d = (uint64_t)((double)d * latency_factor(g, call->op, start + g1));
        int err = rng_unit(&c->rng) < error_rate(g, call->op, start + g1);
        e = start + g1 + d + g2;
        if (err) {
            outcome = OUT_ERROR;
            status = 500;
        }
        if (callee->db_system)
            status = 0;
    } else {
        uint64_t se = 0;
        outcome = gen_server(c, call->op, client_id, start + g1, &se, depth + 1);
        e = se + g2;
        status = outcome == OUT_ERROR ? 500 : outcome == OUT_TIMEOUT ? 504 : 200;
    }
    cs = &g->pending[ci]; /* the pending array may have moved */
    cs->end_ns = e;
    cs->http_status = cs->method ? status : 0;
    if (outcome != OUT_OK) {
        cs->error = 1;
        if (deadline) {
            cs->timeout = 1;
            cs->exception_type = "TimeoutError";
            cs->status_message = "deadline exceeded: the callee did not answer";
            g->st.timeouts++;
        } else if (callee->peer) {
            cs->exception_type = callee->error_type;
            cs->status_message = "peer call failed";
        } else {
            cs->status_message = status == 504 ? "upstream timeout" : "upstream error";
        }
    }
    *end = e;
    return outcome;
}

static int gen_server(trace_ctx_t *c, int op, const uint8_t *parent, uint64_t start, uint64_t *end,
                      int depth)
{
    fl_synth_gen_t *g = c->g;
    const op_t *o = &g->t->ops[op];
    fl_synth_span_t *ss = new_span(c);
    if (!ss)
        return OUT_ERROR;
    size_t si = (size_t)(ss - g->pending);
    uint8_t id[8];
    memcpy(id, ss->span_id, 8);
    ss->kind = FL_SYNTH_SERVER;
    ss->service = o->service;
    if (parent) {
        memcpy(ss->parent_id, parent, 8);
        ss->has_parent = 1;
    }
    ss->name = o->name;
    ss->method = o->method;
    ss->route = o->route;
    ss->start_ns = start;
    /* Own work (self time) is split around the calls: some before, the rest after. */
    uint64_t self = sample_ns(&c->rng, &o->lat);
    self = (uint64_t)((double)self * latency_factor(g, op, start));
    double split = 0.2 + 0.3 * rng_unit(&c->rng);
    int own_error = rng_unit(&c->rng) < error_rate(g, op, start);
    uint64_t pre = (uint64_t)((double)self * split), cursor = start + pre;
    int outcome = OUT_OK;
    for (size_t s = 0; s < o->n_steps && depth < MAX_DEPTH; s++) {
        const step_t *st = &o->steps[s];
        uint64_t step_end = cursor;
        for (size_t k = 0; k < st->n; k++) {
            double u = rng_unit(&c->rng);
            if (u >= st->calls[k].prob || outcome != OUT_OK)
                continue; /* a failed call ends the request: later steps are skipped */
            uint64_t ce = 0, cstart = cursor + (uint64_t)k * 20000;
            int r = gen_call(c, o->service, id, &st->calls[k], cstart, &ce, depth);
            if (r != OUT_OK && outcome == OUT_OK)
                outcome = r;
            if (ce > step_end)
                step_end = ce;
        }
        cursor = step_end + (s + 1 < o->n_steps ? 30000 : 0);
    }
    uint64_t e = cursor + (self - pre);
    ss = &g->pending[si];
    ss->end_ns = e;
    ss->http_status = 200;
    if (own_error) {
        ss->error = 1;
        ss->http_status = 500;
        ss->exception_type = o->error_type;
        ss->status_message = o->error_type;
        outcome = OUT_ERROR;
    } else if (outcome != OUT_OK) {
        ss->error = 1;
        ss->http_status = outcome == OUT_TIMEOUT ? 504 : 502;
        ss->status_message = outcome == OUT_TIMEOUT ? "upstream timeout" : "upstream error";
        outcome = OUT_ERROR; /* the caller sees an error answer, not a timeout */
    }
    if (!ss->method)
        ss->http_status = 0;
    *end = e;
    return outcome;
}

static void gen_trace(fl_synth_gen_t *g, entry_t *e, uint64_t at)
{
    trace_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.g = g;
    uint64_t x = g->seed ^ ((uint64_t)e->op << 48) ^ e->seq;
    rng_seed(&c.rng, splitmix(&x) ^ e->seq);
    rng_id(&c.rng, c.trace_id, 16);
    uint64_t end = 0;
    int r = gen_server(&c, e->op, NULL, at, &end, 0);
    g->st.traces++;
    if (r != OUT_OK && !c.failed)
        g->st.error_traces++;
}

static int cmp_span(const void *a, const void *b)
{
    const fl_synth_span_t *x = a, *y = b;
    if (x->end_ns != y->end_ns)
        return x->end_ns < y->end_ns ? -1 : 1;
    int r = memcmp(x->trace_id, y->trace_id, 16);
    return r ? r : memcmp(x->span_id, y->span_id, 8);
}

size_t fl_synth_gen_advance(fl_synth_gen_t *g, uint64_t until_ns, const fl_synth_span_t **out)
{
    uint64_t gen_until = until_ns < g->end_ns ? until_ns : g->end_ns;
    for (;;) {
        entry_t *best = NULL;
        for (size_t i = 0; i < g->n_entries; i++)
            if (g->entries[i].next_ns < gen_until &&
                (!best || g->entries[i].next_ns < best->next_ns))
                best = &g->entries[i];
        if (!best)
            break;
        uint64_t at = best->next_ns;
        const op_t *o = &g->t->ops[best->op];
        double keep = traffic_factor(g, best->op, at) / best->max_factor;
        double u = rng_unit(&best->rng);
        if (u < keep)
            gen_trace(g, best, at);
        best->seq++;
        best->next_ns =
            at + 1 + (uint64_t)(-log(rng_unit(&best->rng)) / (o->rate * best->max_factor) * 1e9);
    }
    if (g->n_pending)
        fl_sort(g->pending, g->n_pending, sizeof(*g->pending), cmp_span);
    size_t n = 0;
    while (n < g->n_pending && g->pending[n].end_ns <= until_ns)
        n++;
    if (n > g->cap_out) {
        fl_synth_span_t *no = realloc(g->out, n * sizeof(*no));
        if (!no) {
            *out = NULL;
            return 0;
        }
        g->out = no;
        g->cap_out = n;
    }
    if (n)
        memcpy(g->out, g->pending, n * sizeof(*g->out));
    memmove(g->pending, g->pending + n, (g->n_pending - n) * sizeof(*g->pending));
    g->n_pending -= n;
    if (until_ns >= g->end_ns && g->n_pending == 0) {
        int more = 0;
        for (size_t i = 0; i < g->n_entries; i++)
            more |= g->entries[i].next_ns < g->end_ns;
        g->done = !more;
    }
    *out = g->out;
    return n;
}
