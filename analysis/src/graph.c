/* SPDX-License-Identifier: Apache-2.0 */
/* The dependency graph over a time range, built from the closed rollups: services and
 * operations as nodes, caller -> callee edges with their RED figures, criticality (how many
 * nodes depend on a node or an edge, transitively) and cycles (strongly connected sets). */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- a small u64 -> index map */

typedef struct kmap {
    uint64_t *keys;
    uint32_t *vals; /* index + 1; 0 empty */
    uint32_t mask, n;
} kmap_t;

static uint32_t kpos(uint64_t k, uint32_t mask)
{
    k ^= k >> 31;
    k *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(k >> 32) & mask;
}

static int kmap_grow(kmap_t *m)
{
    uint32_t cap = m->mask ? (m->mask + 1) * 2 : 256;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    uint32_t *vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return FL_ERR_NOMEM;
    }
    for (uint32_t i = 0; m->mask && i <= m->mask; i++) {
        if (!m->vals[i])
            continue;
        uint32_t j = kpos(m->keys[i], cap - 1);
        while (vals[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = cap - 1;
    return FL_OK;
}

/* The index for key, or FL__NONE; *added tells whether next_index was assigned. */
static uint32_t kmap_get(kmap_t *m, uint64_t key, uint32_t next_index, int *added)
{
    *added = 0;
    if ((m->n + 1) * 2 > m->mask + 1 && kmap_grow(m))
        return FL__NONE;
    uint32_t i = kpos(key, m->mask);
    for (; m->vals[i]; i = (i + 1) & m->mask)
        if (m->keys[i] == key)
            return m->vals[i] - 1;
    m->keys[i] = key;
    m->vals[i] = next_index + 1;
    m->n++;
    *added = 1;
    return next_index;
}

static void kmap_free(kmap_t *m)
{
    free(m->keys);
    free(m->vals);
}

/* ---------------------------------------------------------------- builder */

typedef struct gnode {
    uint32_t name;
    int real; /* seen as an instrumented service */
    uint64_t req, err;
} gnode_t;

typedef struct gop {
    uint32_t svc, op, node;
    int entry;
    fl__acc_t acc;
} gop_t;

typedef struct gedge {
    uint32_t from, to; /* node indices (service edges) or op indices (op edges) */
    uint8_t flags;
    fl__acc_t acc;
} gedge_t;

typedef struct gb {
    fl_analysis_t *a;
    kmap_t nmap, omap, emap, oemap;
    gnode_t *nodes;
    gop_t *ops;
    gedge_t *edges, *oedges;
    uint32_t nn, no, ne, noe, cn, co, ce, coe;
    int err;
} gb_t;

static int grow(void **p, uint32_t *cap, uint32_t n, size_t sz)
{
    if (n < *cap)
        return FL_OK;
    uint32_t c = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, (size_t)c * sz);
    if (!q)
        return FL_ERR_NOMEM;
    *p = q;
    *cap = c;
    return FL_OK;
}

static uint32_t node_of(gb_t *g, uint32_t name, int real)
{
    int added;
    uint32_t i = kmap_get(&g->nmap, name, g->nn, &added);
    if (i == FL__NONE)
        return FL__NONE;
    if (added) {
        if (grow((void **)&g->nodes, &g->cn, g->nn, sizeof(*g->nodes)))
            return FL__NONE;
        memset(&g->nodes[g->nn++], 0, sizeof(gnode_t));
        g->nodes[i].name = name;
    }
    g->nodes[i].real |= real;
    return i;
}

static uint32_t op_of(gb_t *g, uint32_t svc, uint32_t op, int entry, int real)
{
    uint32_t node = node_of(g, svc, real);
    if (node == FL__NONE)
        return FL__NONE;
    int added;
    uint32_t i = kmap_get(&g->omap, (uint64_t)svc << 32 | op, g->no, &added);
    if (i == FL__NONE)
        return FL__NONE;
    if (added) {
        if (grow((void **)&g->ops, &g->co, g->no, sizeof(*g->ops)))
            return FL__NONE;
        gop_t *o = &g->ops[g->no++];
        memset(o, 0, sizeof(*o));
        o->svc = svc;
        o->op = op;
        o->node = node;
        fl__acc_init(&o->acc, 0);
    }
    g->ops[i].entry |= entry;
    return i;
}

static gedge_t *edge_of(gb_t *g, kmap_t *m, gedge_t **arr, uint32_t *n, uint32_t *cap,
                        uint32_t from, uint32_t to)
{
    int added;
    uint32_t i = kmap_get(m, (uint64_t)from << 32 | to, *n, &added);
    if (i == FL__NONE)
        return NULL;
    if (added) {
        if (grow((void **)arr, cap, *n, sizeof(**arr)))
            return NULL;
        gedge_t *e = &(*arr)[(*n)++];
        memset(e, 0, sizeof(*e));
        e->from = from;
        e->to = to;
        fl__acc_init(&e->acc, 0);
    }
    return &(*arr)[i];
}

/* Fold one series of the range into the graph. A peer that is also an instrumented
 * service keeps one node (real wins), so peer.service naming a real service is harmless. */
static int add_series(gb_t *g, const fl__acc_t *c)
{
    fl_analysis_t *a = g->a;
    const fl__series_t *ser = fl__sertab_at(&a->ser, c->series);
    if (ser->type != FL__SER_EDGE) {
        uint32_t o = op_of(g, ser->svc, ser->op, ser->type == FL__SER_ENDPOINT, 1);
        if (o == FL__NONE)
            return FL_ERR_NOMEM;
        if (ser->type == FL__SER_ENDPOINT) {
            g->nodes[g->ops[o].node].req += c->count;
            g->nodes[g->ops[o].node].err += c->errors;
        }
        return fl__acc_merge(&g->ops[o].acc, c);
    }
    int virt = (ser->flags & FL__EDGE_VIRTUAL) != 0;
    uint32_t co = op_of(g, ser->caller_svc, ser->caller_op, 0, 1);
    uint32_t ko = op_of(g, ser->svc, ser->op, !virt, !virt);
    if (co == FL__NONE || ko == FL__NONE)
        return FL_ERR_NOMEM;
    if (virt) { /* a peer's only traffic is what its callers report */
        g->nodes[g->ops[ko].node].req += c->count;
        g->nodes[g->ops[ko].node].err += c->errors;
        int rc = fl__acc_merge(&g->ops[ko].acc, c);
        if (rc)
            return rc;
    }
    gedge_t *se = edge_of(g, &g->emap, &g->edges, &g->ne, &g->ce, g->ops[co].node, g->ops[ko].node);
    gedge_t *oe = edge_of(g, &g->oemap, &g->oedges, &g->noe, &g->coe, co, ko);
    if (!se || !oe)
        return FL_ERR_NOMEM;
    se->flags |= ser->flags;
    oe->flags |= ser->flags;
    int rc = fl__acc_merge(&se->acc, c);
    return rc ? rc : fl__acc_merge(&oe->acc, c);
}

static void gb_free(gb_t *g)
{
    for (uint32_t i = 0; i < g->no; i++)
        fl__acc_dispose(&g->ops[i].acc);
    for (uint32_t i = 0; i < g->ne; i++)
        fl__acc_dispose(&g->edges[i].acc);
    for (uint32_t i = 0; i < g->noe; i++)
        fl__acc_dispose(&g->oedges[i].acc);
    free(g->nodes);
    free(g->ops);
    free(g->edges);
    free(g->oedges);
    kmap_free(&g->nmap);
    kmap_free(&g->omap);
    kmap_free(&g->emap);
    kmap_free(&g->oemap);
}

/* ---------------------------------------------------------------- ordering */

static const fl_analysis_t *sort_a;
static const gb_t *sort_g;

static int node_cmp(const void *x, const void *y)
{
    const uint32_t *p = x, *q = y;
    return strcmp(fl__s(sort_a, sort_g->nodes[*p].name), fl__s(sort_a, sort_g->nodes[*q].name));
}

static int op_cmp(const void *x, const void *y)
{
    const gop_t *p = &sort_g->ops[*(const uint32_t *)x], *q = &sort_g->ops[*(const uint32_t *)y];
    int c = strcmp(fl__s(sort_a, p->svc), fl__s(sort_a, q->svc));
    return c ? c : strcmp(fl__s(sort_a, p->op), fl__s(sort_a, q->op));
}

static int edge_cmp(const void *x, const void *y)
{
    const fl_graph_edge_t *p = x, *q = y;
    int c = strcmp(p->caller_name, q->caller_name);
    return c ? c : strcmp(p->callee_name, q->callee_name);
}

/* ---------------------------------------------------------------- reachability, cycles */

typedef struct csr {
    uint32_t *off, *adj;
} csr_t;

/* Adjacency in compressed rows, forward (callees) or reverse (callers). */
static int csr_build(csr_t *c, uint32_t n, const fl_graph_edge_t *e, size_t m, int reverse)
{
    c->off = calloc(n + 1, sizeof(uint32_t));
    c->adj = malloc((m ? m : 1) * sizeof(uint32_t));
    if (!c->off || !c->adj)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < m; i++)
        c->off[(reverse ? e[i].callee : e[i].caller) + 1]++;
    for (uint32_t i = 0; i < n; i++)
        c->off[i + 1] += c->off[i];
    uint32_t *fill = calloc(n + 1, sizeof(uint32_t));
    if (!fill)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < m; i++) {
        uint32_t from = reverse ? e[i].callee : e[i].caller,
                 to = reverse ? e[i].caller : e[i].callee;
        c->adj[c->off[from] + fill[from]++] = to;
    }
    free(fill);
    return FL_OK;
}

/* Nodes reachable from v (v itself excluded). */
static uint32_t reach(const csr_t *c, uint32_t n, uint32_t v, uint32_t *mark, uint32_t stamp,
                      uint32_t *stack)
{
    uint32_t sp = 0, cnt = 0;
    stack[sp++] = v;
    mark[v] = stamp;
    while (sp) {
        uint32_t u = stack[--sp];
        for (uint32_t k = c->off[u]; k < c->off[u + 1]; k++) {
            uint32_t w = c->adj[k];
            if (mark[w] != stamp) {
                mark[w] = stamp;
                cnt++;
                stack[sp++] = w;
            }
        }
    }
    (void)n;
    return cnt;
}

/* Tarjan's strongly connected components, iteratively. comp[v] gets a component number;
 * returns the number of components. */
static uint32_t tarjan(const csr_t *c, uint32_t n, uint32_t *comp)
{
    uint32_t *idx = malloc(n * sizeof(uint32_t)), *low = malloc(n * sizeof(uint32_t));
    uint32_t *stk = malloc(n * sizeof(uint32_t)), *cs = malloc(n * sizeof(uint32_t));
    uint32_t *it = malloc(n * sizeof(uint32_t));
    uint8_t *on = calloc(n, 1);
    uint32_t ncomp = 0;
    if (!idx || !low || !stk || !cs || !it || !on)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        idx[i] = FL__NONE;
    uint32_t counter = 0, sp = 0;
    for (uint32_t s = 0; s < n; s++) {
        if (idx[s] != FL__NONE)
            continue;
        uint32_t csp = 0;
        cs[csp++] = s;
        idx[s] = low[s] = counter++;
        it[s] = c->off[s];
        stk[sp++] = s;
        on[s] = 1;
        while (csp) {
            uint32_t v = cs[csp - 1];
            if (it[v] < c->off[v + 1]) {
                uint32_t w = c->adj[it[v]++];
                if (idx[w] == FL__NONE) {
                    idx[w] = low[w] = counter++;
                    it[w] = c->off[w];
                    stk[sp++] = w;
                    on[w] = 1;
                    cs[csp++] = w;
                } else if (on[w] && idx[w] < low[v]) {
                    low[v] = idx[w];
                }
                continue;
            }
            if (low[v] == idx[v]) {
                uint32_t w;
                do {
                    w = stk[--sp];
                    on[w] = 0;
                    comp[w] = ncomp;
                } while (w != v);
                ncomp++;
            }
            csp--;
            if (csp) {
                uint32_t u = cs[csp - 1];
                if (low[v] < low[u])
                    low[u] = low[v];
            }
        }
    }
out:
    free(idx);
    free(low);
    free(stk);
    free(cs);
    free(it);
    free(on);
    return ncomp;
}

/* ---------------------------------------------------------------- public */

static void fill_edge(const fl_analysis_t *a, const gedge_t *e, fl_graph_edge_t *o)
{
    (void)a;
    o->calls = e->acc.count;
    o->errors = e->acc.errors;
    o->unanswered = e->acc.unanswered;
    o->error_rate = e->acc.count ? (double)e->acc.errors / (double)e->acc.count : 0;
    o->p50_ms = fl_sketch_quantile_ns(&e->acc.lat, 0.5) / 1e6;
    o->p95_ms = fl_sketch_quantile_ns(&e->acc.lat, 0.95) / 1e6;
    o->gap_p50_ms = fl_sketch_quantile_ns(&e->acc.aux, 0.5) / 1e6;
    o->gap_p95_ms = fl_sketch_quantile_ns(&e->acc.aux, 0.95) / 1e6;
    o->async = (e->flags & FL__EDGE_ASYNC) != 0;
    o->virtual_peer = (e->flags & FL__EDGE_VIRTUAL) != 0;
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

/* Build, then order everything by name so the output is the same for the same data
 * whatever the series ids, then criticality (BFS per node, fine for service counts) and
 * cycles (SCCs). */
int fl_analysis_graph(fl_analysis_t *a, const fl_analysis_filter_t *f, fl_arena_t *ar,
                      fl_graph_t *out)
{
    if (!a || !ar || !out)
        return FL_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    gb_t g;
    memset(&g, 0, sizeof(g));
    g.a = a;
    uint32_t *perm = NULL, *rank = NULL, *operm = NULL, *orank = NULL, *mark = NULL, *stack = NULL,
             *comp = NULL, *csize = NULL;
    csr_t fw = {0}, bw = {0};
    pthread_rwlock_rdlock(&a->state_lock);
    fl__accmap_t m;
    int rc = fl__range_map(a, f, &m, &out->start_ns, &out->end_ns);
    for (uint32_t i = 0; !rc && i < m.n; i++)
        if (m.accs[i].count || m.accs[i].aux.count)
            rc = add_series(&g, &m.accs[i]);
    fl__accmap_dispose(&m);
    uint32_t nn = g.nn, no = g.no;
    if (rc)
        goto out;
    perm = malloc((nn + 1) * sizeof(uint32_t));
    rank = malloc((nn + 1) * sizeof(uint32_t));
    operm = malloc((no + 1) * sizeof(uint32_t));
    orank = malloc((no + 1) * sizeof(uint32_t));
    if (!perm || !rank || !operm || !orank) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < nn; i++)
        perm[i] = i;
    for (uint32_t i = 0; i < no; i++)
        operm[i] = i;
    pthread_mutex_lock(&sort_mu); /* qsort has no context argument in C11 */
    sort_a = a;
    sort_g = &g;
    fl_sort(perm, nn, sizeof(uint32_t), node_cmp);
    fl_sort(operm, no, sizeof(uint32_t), op_cmp);
    pthread_mutex_unlock(&sort_mu);
    for (uint32_t i = 0; i < nn; i++)
        rank[perm[i]] = i;
    for (uint32_t i = 0; i < no; i++)
        orank[operm[i]] = i;

    out->nodes = fl_arena_calloc(ar, nn ? nn : 1, sizeof(*out->nodes));
    out->ops = fl_arena_calloc(ar, no ? no : 1, sizeof(*out->ops));
    out->edges = fl_arena_calloc(ar, g.ne ? g.ne : 1, sizeof(*out->edges));
    out->op_edges = fl_arena_calloc(ar, g.noe ? g.noe : 1, sizeof(*out->op_edges));
    if (!out->nodes || !out->ops || !out->edges || !out->op_edges) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < nn; i++) {
        const gnode_t *s = &g.nodes[perm[i]];
        fl_graph_node_t *o = &out->nodes[i];
        o->name = fl_arena_strdup(ar, fl__s(a, s->name));
        o->virtual_peer = !s->real;
        o->requests = s->req;
        o->errors = s->err;
    }
    out->n_nodes = nn;
    for (uint32_t i = 0; i < no; i++) {
        const gop_t *s = &g.ops[operm[i]];
        fl_graph_op_t *o = &out->ops[i];
        o->node = rank[s->node];
        o->service = out->nodes[o->node].name;
        o->operation = fl_arena_strdup(ar, fl__s(a, s->op));
        o->entry = s->entry;
        o->count = s->acc.count;
        o->errors = s->acc.errors;
        o->p50_ms = fl_sketch_quantile_ns(&s->acc.lat, 0.5) / 1e6;
        o->p95_ms = fl_sketch_quantile_ns(&s->acc.lat, 0.95) / 1e6;
        o->self_p95_ms = fl_sketch_quantile_ns(&s->acc.aux, 0.95) / 1e6;
    }
    out->n_ops = no;
    for (uint32_t i = 0; i < g.ne; i++) {
        fl_graph_edge_t *o = &out->edges[i];
        fill_edge(a, &g.edges[i], o);
        o->caller = rank[g.edges[i].from];
        o->callee = rank[g.edges[i].to];
        o->caller_name = out->nodes[o->caller].name;
        o->callee_name = out->nodes[o->callee].name;
    }
    out->n_edges = g.ne;
    fl_sort(out->edges, out->n_edges, sizeof(*out->edges), edge_cmp);
    for (uint32_t i = 0; i < g.noe; i++) {
        fl_graph_edge_t *o = &out->op_edges[i];
        fill_edge(a, &g.oedges[i], o);
        o->caller = orank[g.oedges[i].from];
        o->callee = orank[g.oedges[i].to];
        o->caller_name = fl_arena_sprintf(ar, "%s:%s", out->ops[o->caller].service,
                                          out->ops[o->caller].operation);
        o->callee_name = fl_arena_sprintf(ar, "%s:%s", out->ops[o->callee].service,
                                          out->ops[o->callee].operation);
        if (!o->caller_name || !o->callee_name) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
    }
    out->n_op_edges = g.noe;
    fl_sort(out->op_edges, out->n_op_edges, sizeof(*out->op_edges), edge_cmp);

    /* Criticality and cycles on the service graph. */
    mark = calloc(nn + 1, sizeof(uint32_t));
    stack = malloc((nn + 1) * sizeof(uint32_t));
    comp = malloc((nn + 1) * sizeof(uint32_t));
    if (!mark || !stack || !comp || csr_build(&fw, nn, out->edges, out->n_edges, 0) ||
        csr_build(&bw, nn, out->edges, out->n_edges, 1)) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    uint32_t stamp = 0;
    for (uint32_t v = 0; v < nn; v++) {
        out->nodes[v].dependents = reach(&bw, nn, v, mark, ++stamp, stack);
        out->nodes[v].dependencies = reach(&fw, nn, v, mark, ++stamp, stack);
    }
    for (size_t i = 0; i < out->n_edges; i++) {
        const fl_graph_node_t *c = &out->nodes[out->edges[i].caller];
        /* the caller itself, and everything that reaches it */
        out->edges[i].criticality = c->dependents + 1;
    }
    for (size_t i = 0; i < out->n_op_edges; i++) {
        const fl_graph_node_t *c = &out->nodes[out->ops[out->op_edges[i].caller].node];
        out->op_edges[i].criticality = c->dependents + 1;
    }
    /* A cycle is a strongly connected set of more than one service, or a service calling
     * itself (marked UINT32_MAX in csize so it passes the size test below). */
    uint32_t ncomp = nn ? tarjan(&fw, nn, comp) : 0;
    csize = calloc(ncomp + 1, sizeof(uint32_t));
    if (!csize) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t v = 0; v < nn; v++)
        csize[comp[v]]++;
    for (size_t i = 0; i < out->n_edges; i++) /* a self-loop is a cycle of one */
        if (out->edges[i].caller == out->edges[i].callee && csize[comp[out->edges[i].caller]] == 1)
            csize[comp[out->edges[i].caller]] = UINT32_MAX;
    uint32_t ncyc = 0;
    for (uint32_t k = 0; k < ncomp; k++)
        ncyc += csize[k] > 1;
    if (ncyc) {
        out->cycles = fl_arena_calloc(ar, ncyc, sizeof(*out->cycles));
        if (!out->cycles) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        /* Cycles are listed in the order of their first (smallest-named) node. */
        uint32_t *slot = malloc((ncomp + 1) * sizeof(uint32_t));
        if (!slot) {
            rc = FL_ERR_NOMEM;
            goto out;
        }
        for (uint32_t k = 0; k <= ncomp; k++)
            slot[k] = FL__NONE;
        uint32_t c = 0;
        for (uint32_t v = 0; v < nn; v++) {
            uint32_t k = comp[v], sz = csize[k] == UINT32_MAX ? 1 : csize[k];
            if (csize[k] <= 1)
                continue;
            if (slot[k] == FL__NONE) {
                slot[k] = c++;
                out->cycles[slot[k]].nodes = fl_arena_calloc(ar, sz, sizeof(uint32_t));
                if (!out->cycles[slot[k]].nodes) {
                    rc = FL_ERR_NOMEM;
                    break;
                }
            }
            fl_graph_cycle_t *cy = &out->cycles[slot[k]];
            cy->nodes[cy->n++] = v;
            out->nodes[v].in_cycle = 1;
        }
        free(slot);
        out->n_cycles = c;
    }
out:
    pthread_rwlock_unlock(&a->state_lock);
    free(fw.off);
    free(fw.adj);
    free(bw.off);
    free(bw.adj);
    free(perm);
    free(rank);
    free(operm);
    free(orank);
    free(mark);
    free(stack);
    free(comp);
    free(csize);
    gb_free(&g);
    return rc;
}
