/* SPDX-License-Identifier: Apache-2.0 */
/* The ingest side: per-span rollups into open buckets, the bounded window of compact span
 * records that pairs callers with callees across batches, self time, edges, virtual peers,
 * and the event-time sealing of buckets once the watermark passes end + grace. */
#include "analysis_int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t id64(const uint8_t p[8])
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---------------------------------------------------------------- window tables */

static uint32_t hpos(uint64_t key, uint32_t mask)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & mask;
}

/* Lookup in ids (by span id) or orph (by the parent id orphans are waiting for). */
static uint32_t tab_find(const fl__window_t *w, int orph, uint64_t key)
{
    const fl__wslot_t *t = orph ? w->orph : w->ids;
    for (uint32_t i = hpos(key, w->hmask);; i = (i + 1) & w->hmask) {
        if (!t[i].v)
            return FL__NONE;
        if (t[i].key == key)
            return t[i].v - 1;
    }
}

static void tab_put(fl__window_t *w, int orph, uint64_t key, uint32_t idx)
{
    fl__wslot_t *t = orph ? w->orph : w->ids;
    uint32_t i = hpos(key, w->hmask);
    while (t[i].v)
        i = (i + 1) & w->hmask;
    t[i].key = key;
    t[i].v = idx + 1;
}

/* The slot holding key, or FL__NONE. */
static uint32_t tab_slot(const fl__window_t *w, int orph, uint64_t key)
{
    const fl__wslot_t *t = orph ? w->orph : w->ids;
    for (uint32_t i = hpos(key, w->hmask);; i = (i + 1) & w->hmask) {
        if (!t[i].v)
            return FL__NONE;
        if (t[i].key == key)
            return i;
    }
}

/* Linear probing with backward-shift deletion: no tombstones, so probes stay short. */
static void tab_remove(fl__window_t *w, int orph, uint64_t key)
{
    fl__wslot_t *t = orph ? w->orph : w->ids;
    uint32_t i = tab_slot(w, orph, key);
    if (i == FL__NONE)
        return;
    for (uint32_t j = (i + 1) & w->hmask; t[j].v; j = (j + 1) & w->hmask) {
        uint32_t home = hpos(t[j].key, w->hmask);
        int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t[i] = t[j];
            i = j;
        }
    }
    t[i].v = 0;
}

int fl__window_init(fl__window_t *w, uint32_t capacity)
{
    memset(w, 0, sizeof(*w));
    uint32_t cap = 1024;
    while (cap < capacity && cap < (1u << 24))
        cap <<= 1;
    w->cap = cap;
    w->hmask = cap * 2 - 1;
    w->recs = calloc(cap, sizeof(*w->recs));
    w->ids = calloc((size_t)cap * 2, sizeof(fl__wslot_t));
    w->orph = calloc((size_t)cap * 2, sizeof(fl__wslot_t));
    if (!w->recs || !w->ids || !w->orph) {
        fl__window_dispose(w);
        return FL_ERR_NOMEM;
    }
    return FL_OK;
}

void fl__window_dispose(fl__window_t *w)
{
    free(w->recs);
    free(w->ids);
    free(w->orph);
    memset(w, 0, sizeof(*w));
}

/* ---------------------------------------------------------------- series & accumulators */

static uint32_t series_get(fl_analysis_t *a, uint8_t type, uint8_t flags, uint32_t svc, uint32_t op,
                           uint32_t csvc, uint32_t cop)
{
    if (svc == FL__NONE || op == FL__NONE) {
        FL__INC(a->c_refused);
        return FL__NONE;
    }
    fl__series_t key = {type, flags, svc, op, csvc, cop};
    uint32_t id = fl__sertab_get(&a->ser, &key);
    if (id == FL__NONE) {
        FL__INC(a->c_refused);
        return FL__NONE;
    }
    return fl__acc_slots_reserve(a, id) ? FL__NONE : id;
}

/* Series may also be created by restore and import: grow the open-bucket slot index to
 * cover id whenever it is first used here. */
int fl__acc_slots_reserve(fl_analysis_t *a, uint32_t id)
{
    if (id < a->acc_slot_cap)
        return FL_OK;
    uint32_t cap = a->acc_slot_cap ? a->acc_slot_cap : 1024;
    while (cap <= id)
        cap *= 2;
    uint32_t *p = realloc(a->acc_slot, (size_t)cap * a->K * sizeof(uint32_t));
    if (!p)
        return FL_ERR_NOMEM; /* the series exists; it gets data once memory returns */
    memset(p + (size_t)a->acc_slot_cap * a->K, 0xff,
           (size_t)(cap - a->acc_slot_cap) * a->K * sizeof(uint32_t));
    a->acc_slot = p;
    a->acc_slot_cap = cap;
    return FL_OK;
}

static fl__obucket_t *ob_get(fl_analysis_t *a, int64_t b)
{
    fl__obucket_t *ob = &a->ob[b % a->K];
    if (ob->b != b) {
        ob->b = b;
        ob->spans = 0;
    }
    return ob;
}

static fl__acc_t *acc_get(fl_analysis_t *a, uint32_t sid, int64_t b)
{
    if (sid == FL__NONE || b < a->sealed_next)
        return NULL;
    fl__obucket_t *ob = ob_get(a, b);
    uint32_t *slot = &a->acc_slot[(size_t)sid * a->K + (uint32_t)(b % a->K)];
    if (*slot != FL__NONE && *slot < ob->n && ob->accs[*slot].series == sid)
        return &ob->accs[*slot];
    if (ob->n == ob->cap) {
        uint32_t cap = ob->cap ? ob->cap * 2 : 64;
        fl__acc_t *p = realloc(ob->accs, (size_t)cap * sizeof(*p));
        if (!p)
            return NULL;
        ob->accs = p;
        ob->cap = cap;
    }
    fl__acc_init(&ob->accs[ob->n], sid);
    *slot = ob->n;
    return &ob->accs[ob->n++];
}

static void lost(fl_analysis_t *a, int rc)
{
    if (rc)
        FL__INC(a->c_lost);
}

/* ---------------------------------------------------------------- learned peers */

/* (caller service, peer name, client operation) -> the instrumented callee that answered it,
 * so a client call whose server span never arrives is charged to that callee ("unanswered")
 * instead of inventing a virtual node for a service we know. */
static uint32_t peer_pos(uint64_t k1, uint64_t k2, uint32_t mask)
{
    return hpos(k1 * 31 + k2, mask);
}

static void peer_learn(fl_analysis_t *a, uint32_t csvc, uint32_t peer, uint32_t name, uint32_t svc,
                       uint32_t op)
{
    uint64_t k1 = (uint64_t)csvc << 32 | peer, k2 = name;
    uint64_t v = (uint64_t)svc << 32 | op;
    for (uint32_t i = peer_pos(k1, k2, a->peer_mask);; i = (i + 1) & a->peer_mask) {
        if (a->peer_keys[i] == k1 + 1 && a->peer_k2[i] == k2) {
            a->peer_vals[i] = v;
            return;
        }
        if (!a->peer_keys[i]) {
            if (a->peer_n >= FL__PEER_CAP / 2)
                return;
            a->peer_keys[i] = k1 + 1;
            a->peer_k2[i] = k2;
            a->peer_vals[i] = v;
            a->peer_n++;
            return;
        }
    }
}

static int peer_lookup(const fl_analysis_t *a, uint32_t csvc, uint32_t peer, uint32_t name,
                       uint32_t *svc, uint32_t *op)
{
    uint64_t k1 = (uint64_t)csvc << 32 | peer, k2 = name;
    for (uint32_t i = peer_pos(k1, k2, a->peer_mask);; i = (i + 1) & a->peer_mask) {
        if (!a->peer_keys[i])
            return 0;
        if (a->peer_keys[i] == k1 + 1 && a->peer_k2[i] == k2) {
            *svc = (uint32_t)(a->peer_vals[i] >> 32);
            *op = (uint32_t)a->peer_vals[i];
            return 1;
        }
    }
}

/* ---------------------------------------------------------------- finalisation */

static uint64_t rec_dur(const fl__wrec_t *r)
{
    return (r->flags & FL__R_DUR_US) ? (uint64_t)r->dur * 1000 : r->dur;
}

static uint64_t rec_start(const fl__wrec_t *r)
{
    uint64_t d = rec_dur(r);
    return r->end_ns > d ? r->end_ns - d : 0;
}

/* The entry operation (SERVER/CONSUMER/root) enclosing a span within its own service, found
 * by walking up the parents still in the window; "" when the chain is broken. */
static uint32_t entry_op(const fl_analysis_t *a, uint32_t idx)
{
    const fl__wrec_t *recs = a->win.recs;
    uint32_t svc = recs[idx].svc;
    for (int d = 0; d < 32 && idx != FL__NONE; d++) {
        const fl__wrec_t *r = &recs[idx];
        if (r->svc != svc)
            break;
        if (r->flags & FL__R_ENTRY)
            return r->name;
        if (r->flags & FL__R_LINKED)
            break;
        idx = r->parent;
    }
    return a->id_empty;
}

static int u64pair_cmp(const void *x, const void *y)
{
    const uint64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

/* Time covered by the union of the children's intervals, clipped to [start, end]:
 * overlapping async children count once. */
static uint64_t busy_time(fl_analysis_t *a, const fl__wrec_t *r, uint64_t start, uint64_t end)
{
    const fl__wrec_t *recs = a->win.recs;
    uint32_t n = 0;
    for (uint32_t c = r->first_child; c != FL__NONE; c = recs[c].next_sib) {
        const fl__wrec_t *cr = &recs[c];
        if (cr->flags & FL__R_LINKED)
            continue; /* a linked consumer is another trace's work */
        uint64_t cs = rec_start(cr), ce = cr->end_ns;
        if (cs < start)
            cs = start;
        if (ce > end)
            ce = end;
        if (ce <= cs)
            continue;
        if (n == a->scr_cap) {
            uint32_t cap = a->scr_cap ? a->scr_cap * 2 : 64;
            uint64_t *p = realloc(a->scr, (size_t)cap * 2 * sizeof(uint64_t));
            if (!p)
                break;
            a->scr = p;
            a->scr_cap = cap;
        }
        a->scr[2 * n] = cs;
        a->scr[2 * n + 1] = ce;
        n++;
    }
    if (!n)
        return 0;
    if (n > 1)
        fl_sort(a->scr, n, 2 * sizeof(uint64_t), u64pair_cmp);
    uint64_t busy = 0, cs = a->scr[0], ce = a->scr[1];
    for (uint32_t i = 1; i < n; i++) {
        if (a->scr[2 * i] > ce) {
            busy += ce - cs;
            cs = a->scr[2 * i];
            ce = a->scr[2 * i + 1];
        } else if (a->scr[2 * i + 1] > ce) {
            ce = a->scr[2 * i + 1];
        }
    }
    return busy + (ce - cs);
}

/* One call on an edge, into the bucket of the caller-side span's end. */
static void edge_add(fl_analysis_t *a, uint32_t sid, int64_t b, const fl__wrec_t *r, int err,
                     uint64_t lat, int has_gap, uint64_t gap, int unanswered)
{
    fl__acc_t *c = acc_get(a, sid, b);
    if (!c) {
        lost(a, sid == FL__NONE ? 0 : FL_ERR_NOMEM);
        return;
    }
    c->count++;
    c->errors += err != 0;
    c->timeouts += (r->flags & FL__R_TIMEOUT) != 0;
    c->unanswered += unanswered != 0;
    if (err)
        c->st_error++;
    else
        c->st_unset++;
    lost(a, fl_sketch_add(&c->lat, lat));
    if (has_gap)
        lost(a, fl_sketch_add(&c->aux, gap));
    fl__acc_example(c->slow, r->trace_id, lat);
    if (err)
        fl__acc_example(c->err, r->trace_id, lat);
}

/* A client call (or a data-store access recorded as an internal span): pair it with the
 * server span it caused, else charge it to a learned callee or a virtual peer. */
static void emit_call(fl_analysis_t *a, uint32_t idx, int64_t b)
{
    const fl__wrec_t *recs = a->win.recs, *r = &recs[idx];
    uint32_t best = FL__NONE;
    for (uint32_t c = r->first_child; c != FL__NONE; c = recs[c].next_sib) {
        const fl__wrec_t *cr = &recs[c];
        if (cr->flags & FL__R_LINKED)
            continue;
        if (cr->kind != FL_KIND_SERVER && cr->kind != FL_KIND_CONSUMER && cr->svc == r->svc)
            continue;
        if (best == FL__NONE || rec_dur(cr) > rec_dur(&recs[best]) ||
            (rec_dur(cr) == rec_dur(&recs[best]) && cr->span_id < recs[best].span_id))
            best = c;
    }
    uint32_t csvc = r->svc, cop = entry_op(a, idx);
    uint64_t dur = rec_dur(r);
    int err = (r->flags & FL__R_ERR) != 0;
    /* Answered: latency is what the caller waited, the gap is what the callee did not
     * account for (network, proxies, queues, connection setup). */
    if (best != FL__NONE) {
        const fl__wrec_t *br = &recs[best];
        uint64_t bd = rec_dur(br);
        uint32_t sid = series_get(a, FL__SER_EDGE, 0, br->svc, br->name, csvc, cop);
        edge_add(a, sid, b, r, err || (br->flags & FL__R_ERR), dur, 1, dur > bd ? dur - bd : 0, 0);
        if (r->peer != FL__NONE)
            peer_learn(a, csvc, r->peer, r->name, br->svc, br->name);
        return;
    }
    if (r->peer == FL__NONE) {
        if (r->kind == FL_KIND_CLIENT)
            FL__INC(a->c_unmatched);
        return;
    }
    /* Unanswered: charge a callee we have seen answer this caller before, else a virtual
     * node named after the peer. */
    uint32_t msvc, mop;
    if (r->kind == FL_KIND_CLIENT && peer_lookup(a, csvc, r->peer, r->name, &msvc, &mop)) {
        uint32_t sid = series_get(a, FL__SER_EDGE, 0, msvc, mop, csvc, cop);
        edge_add(a, sid, b, r, err, dur, 0, 0, 1);
        return;
    }
    uint32_t sid = series_get(a, FL__SER_EDGE, FL__EDGE_VIRTUAL, r->peer, r->name, csvc, cop);
    edge_add(a, sid, b, r, err, dur, 0, 0, 0);
}

/* Everything a record contributes once its bucket closes (or it is evicted). */
static void finalize(fl_analysis_t *a, uint32_t idx)
{
    fl__wrec_t *recs = a->win.recs, *r = &recs[idx];
    r->flags |= FL__R_FINAL;
    int64_t b = (int64_t)(r->end_ns / a->o.bucket_ns);
    if (b < a->sealed_next)
        return;
    uint64_t dur = rec_dur(r), end = r->end_ns, start = rec_start(r);
    /* Self time goes to the span's own operation in the bucket of its end. */
    if (r->node != FL__NONE) {
        uint64_t busy = busy_time(a, r, start, end);
        fl__acc_t *c = acc_get(a, r->node, b);
        if (c)
            lost(a, fl_sketch_add(&c->aux, dur > busy ? dur - busy : 0));
        else
            lost(a, FL_ERR_NOMEM);
    }
    if (r->kind == FL_KIND_CLIENT || (r->flags & FL__R_DB))
        emit_call(a, idx, b);
    if (r->kind == FL_KIND_CLIENT || r->parent == FL__NONE)
        return;
    const fl__wrec_t *p = &recs[r->parent];
    int err = (r->flags & FL__R_ERR) != 0;
    if (p->kind == FL_KIND_PRODUCER) {
        /* Async hop: latency is publish start to processing end; the gap is the time the
         * message waited between the producer's end and the consumer's start. */
        uint64_t ps = rec_start(p);
        uint32_t sid = series_get(a, FL__SER_EDGE, FL__EDGE_ASYNC, r->svc, r->name, p->svc,
                                  entry_op(a, r->parent));
        uint64_t gap = start > p->end_ns ? start - p->end_ns : 0;
        edge_add(a, sid, b, r, err, end > ps ? end - ps : 0, 1, gap, 0);
    } else if (p->kind != FL_KIND_CLIENT && p->svc != r->svc) {
        uint32_t sid = series_get(a, FL__SER_EDGE, FL__EDGE_FALLBACK, r->svc, r->name, p->svc,
                                  entry_op(a, r->parent));
        edge_add(a, sid, b, r, err, dur, 0, 0, 0);
    }
}

/* ---------------------------------------------------------------- window records */

#define OFILT_BITS (1u << 20)

static uint32_t ofilt_bit(uint64_t id)
{
    return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 44); /* 20 bits */
}

static void ofilt_set(fl_analysis_t *a, uint64_t parent_id)
{
    uint32_t bit = ofilt_bit(parent_id);
    a->ofilt[a->ofilt_gen & 1][bit >> 6] |= 1ull << (bit & 63);
}

static int ofilt_maybe(const fl_analysis_t *a, uint64_t id)
{
    uint32_t bit = ofilt_bit(id);
    return ((a->ofilt[0][bit >> 6] | a->ofilt[1][bit >> 6]) >> (bit & 63)) & 1;
}

/* Every window capacity inserts the older generation is cleared: an orphan older than two
 * generations has been pushed out of the ring anyway. */
static void ofilt_tick(fl_analysis_t *a)
{
    if (a->win.head % a->win.cap)
        return;
    a->ofilt_gen++;
    memset(a->ofilt[a->ofilt_gen & 1], 0, OFILT_BITS / 8);
}

/* Take a record out of the window before its slot is reused: out of the id table, out of
 * its parent's child list or its orphan list, and its children forget it. */
static void rec_unlink(fl_analysis_t *a, uint32_t idx)
{
    fl__window_t *w = &a->win;
    fl__wrec_t *recs = w->recs, *r = &recs[idx];
    tab_remove(w, 0, r->span_id);
    if (r->flags & FL__R_ORPHAN) {
        if (r->prev_sib != FL__NONE) {
            recs[r->prev_sib].next_sib = r->next_sib;
        } else {
            uint32_t slot = tab_slot(w, 1, r->parent_id);
            if (slot != FL__NONE) {
                if (r->next_sib != FL__NONE)
                    w->orph[slot].v = r->next_sib + 1; /* the next orphan becomes the head */
                else
                    tab_remove(w, 1, r->parent_id);
            }
        }
        if (r->next_sib != FL__NONE)
            recs[r->next_sib].prev_sib = r->prev_sib;
    } else if (r->parent != FL__NONE) {
        if (r->prev_sib != FL__NONE)
            recs[r->prev_sib].next_sib = r->next_sib;
        else
            recs[r->parent].first_child = r->next_sib;
        if (r->next_sib != FL__NONE)
            recs[r->next_sib].prev_sib = r->prev_sib;
    }
    for (uint32_t c = r->first_child, nx; c != FL__NONE; c = nx) {
        nx = recs[c].next_sib;
        recs[c].parent = recs[c].next_sib = recs[c].prev_sib = FL__NONE;
    }
    r->flags = 0;
    __atomic_fetch_sub(&w->used, 1, __ATOMIC_RELAXED);
}

/* Insert at the ring head (evicting the oldest record if the ring is full), link to the
 * parent if it is here or wait as an orphan, and adopt children that came first. */
static void win_insert(fl_analysis_t *a, const fl__wrec_t *src)
{
    fl__window_t *w = &a->win;
    uint32_t idx = (uint32_t)(w->head & (w->cap - 1));
    fl__wrec_t *recs = w->recs, *r = &recs[idx];
    if (r->flags & FL__R_LIVE) {
        if (!(r->flags & FL__R_FINAL)) {
            FL__INC(a->c_evict);
            finalize(a, idx);
        }
        rec_unlink(a, idx);
    }
    /* One probe finds either a duplicate (the first copy stands) or the insert position;
     * linking below touches only the orphan table, so the position stays valid. */
    uint32_t pos = hpos(src->span_id, w->hmask);
    for (; w->ids[pos].v; pos = (pos + 1) & w->hmask)
        if (w->ids[pos].key == src->span_id)
            return;
    *r = *src;
    r->flags |= FL__R_LIVE;
    r->parent = r->first_child = r->next_sib = r->prev_sib = FL__NONE;
    w->head++;
    FL__INC(w->used);
    if (w->fin + w->cap < w->head)
        w->fin = w->head - w->cap;
    if (r->parent_id) {
        uint32_t p = tab_find(w, 0, r->parent_id);
        if (p != FL__NONE) {
            r->parent = p;
            r->next_sib = recs[p].first_child;
            if (r->next_sib != FL__NONE)
                recs[r->next_sib].prev_sib = idx;
            recs[p].first_child = idx;
        } else {
            /* The parent has not arrived: wait in the orphan list keyed by its id. */
            r->flags |= FL__R_ORPHAN;
            uint32_t slot = tab_slot(w, 1, r->parent_id);
            if (slot != FL__NONE) {
                uint32_t h = w->orph[slot].v - 1;
                r->next_sib = h;
                recs[h].prev_sib = idx;
                w->orph[slot].v = idx + 1;
            } else {
                tab_put(w, 1, r->parent_id, idx);
            }
            ofilt_set(a, r->parent_id); /* every joiner refreshes it: it may outlive the head */
        }
    }
    uint32_t slot = ofilt_maybe(a, r->span_id) ? tab_slot(w, 1, r->span_id) : FL__NONE;
    if (slot != FL__NONE) { /* children that arrived first */
        uint32_t h = w->orph[slot].v - 1;
        tab_remove(w, 1, r->span_id);
        r->first_child = h;
        for (uint32_t c = h; c != FL__NONE; c = recs[c].next_sib) {
            recs[c].parent = idx;
            recs[c].flags &= (uint16_t)~FL__R_ORPHAN;
        }
    }
    w->ids[pos].key = r->span_id;
    w->ids[pos].v = idx + 1;
    ofilt_tick(a);
}

/* ---------------------------------------------------------------- sealing */

static void finalize_scan(fl_analysis_t *a, int64_t tb)
{
    fl__window_t *w = &a->win;
    int advancing = 1;
    for (uint64_t seq = w->fin; seq < w->head; seq++) {
        uint32_t idx = (uint32_t)(seq & (w->cap - 1));
        fl__wrec_t *r = &w->recs[idx];
        if ((r->flags & FL__R_LIVE) && !(r->flags & FL__R_FINAL)) {
            if ((int64_t)(r->end_ns / a->o.bucket_ns) <= tb)
                finalize(a, idx);
            else
                advancing = 0;
        }
        if (advancing)
            w->fin = seq + 1;
    }
}

void fl__sealed_free(fl__sealed_t *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        fl__acc_dispose(&s->accs[i]);
    free(s->accs);
    free(s);
}

/* Close bucket sb: finish pairing for it, then hand its accumulators to run. */
static void seal(fl_analysis_t *a, int64_t sb)
{
    finalize_scan(a, sb);
    fl__obucket_t *ob = &a->ob[sb % a->K];
    if (ob->b == sb && (ob->n || ob->spans)) {
        for (uint32_t i = 0; i < ob->n; i++)
            a->acc_slot[(size_t)ob->accs[i].series * a->K + (uint32_t)(sb % a->K)] = FL__NONE;
        fl__sealed_t *s = calloc(1, sizeof(*s));
        if (s) {
            s->b = sb;
            s->spans = ob->spans;
            s->accs = ob->accs;
            s->n = ob->n;
            if (a->pend_tail)
                a->pend_tail->next = s;
            else
                a->pend_head = s;
            a->pend_tail = s;
            FL__INC(a->n_pend);
            if (a->n_pend > a->o.max_pending) { /* run fell far behind: drop the oldest */
                fl__sealed_t *old = a->pend_head;
                a->pend_head = old->next;
                __atomic_fetch_sub(&a->n_pend, 1, __ATOMIC_RELAXED);
                FL__INC(a->c_dropped_buckets);
                fl__sealed_free(old);
            }
        } else {
            for (uint32_t i = 0; i < ob->n; i++)
                fl__acc_dispose(&ob->accs[i]);
            free(ob->accs);
            FL__INC(a->c_dropped_buckets);
        }
        ob->accs = NULL;
        ob->n = ob->cap = 0;
    }
    ob->b = INT64_MIN;
    ob->spans = 0;
}

/* Move the watermark; close every bucket whose end + grace it passed. */
int fl__advance(fl_analysis_t *a, uint64_t wm)
{
    uint64_t w = a->o.bucket_ns, g = a->o.grace_ns;
    if (a->sealed_next == INT64_MIN)
        FL__SET(a->sealed_next, wm > g ? (int64_t)((wm - g) / w) : 0);
    if (wm <= a->wm)
        return FL_OK;
    FL__SET(a->wm, wm);
    int64_t target = wm > g ? (int64_t)((wm - g) / w) : 0; /* buckets below are closed */
    /* Data can only sit in the K open buckets, so at most K seals do any work. */
    for (int64_t s = a->sealed_next; s < target && s < a->sealed_next + (int64_t)a->K; s++) {
        seal(a, s);
    }
    if (target > a->sealed_next)
        FL__SET(a->sealed_next, target);
    return FL_OK;
}

/* ---------------------------------------------------------------- observe */

static uint32_t service_id(fl_analysis_t *a, const fl_span_t *s)
{
    fl_str_t sn = s->resource ? s->resource->service_name : (fl_str_t){NULL, 0};
    if (!sn.len)
        sn = FL_STR_LIT("unknown_service");
    /* Spans of one resource come together; the cache is checked by content because a
     * later batch may reuse the same resource address for another service. */
    if (s->resource && s->resource == a->last_res && a->last_svc != FL__NONE) {
        const char *cached = fl__strtab_get(&a->str, a->last_svc);
        if (strncmp(cached, sn.ptr, sn.len) == 0 && cached[sn.len] == 0)
            return a->last_svc;
    }
    uint32_t id = fl__strtab_intern(&a->str, sn.ptr, sn.len);
    a->last_res = s->resource;
    a->last_svc = id;
    return id;
}

/* Naming scans the name for ids and interns the result; spans of one operation repeat the
 * same (name, route, method), so a small direct-mapped cache of their 64-bit hash skips
 * both. */
#define OPCACHE 4096

static uint32_t op_id(fl_analysis_t *a, const fl_span_t *s, const fl__span_facts_t *f)
{
    uint64_t key = fl_hash64(s->name.ptr, s->name.len, 0x0b);
    if (f->route.len)
        key ^= fl_hash64(f->route.ptr, f->route.len, 0x1c) * 3;
    if (f->method.len)
        key ^= fl_hash64(f->method.ptr, f->method.len, 0x2d) * 5;
    key |= 1; /* 0 marks an empty entry */
    struct fl__opcache *e = a->opcache ? &a->opcache[key & (OPCACHE - 1)] : NULL;
    if (e && e->key == key)
        return e->id;
    char name[128];
    size_t nl = fl__op_name(s, f, name, sizeof(name));
    uint32_t id = fl__strtab_intern(&a->str, name, nl);
    if (e && id != FL__NONE) {
        e->key = key;
        e->id = id;
    }
    return id;
}

/* Everything one span contributes at arrival: its endpoint or operation rollup (counts,
 * status, latency, examples, error type) and a compact record in the window for pairing. */
void fl__observe_prefetch(const fl_analysis_t *a, const fl_span_t *s)
{
    const fl__window_t *w = &a->win;
    if (!w->ids)
        return;
    __builtin_prefetch(&w->ids[hpos(id64(s->span_id), w->hmask)], 1);
    __builtin_prefetch(&w->ids[hpos(id64(s->parent_span_id), w->hmask)], 0);
}

int fl__observe_one(fl_analysis_t *a, const fl_span_t *s)
{
    uint64_t start = s->start_ns, end = s->end_ns;
    if (end < start)
        end = start; /* malformed: treat as an instant at its start */
    if (!end)
        return FL_OK;
    FL__INC(a->c_spans);
    fl__advance(a, end);
    int64_t b = (int64_t)(end / a->o.bucket_ns);
    int late = b < a->sealed_next;
    uint64_t dur = end - start;

    fl__span_facts_t f;
    fl__span_facts(s, &f);
    uint32_t svc = service_id(a, s);
    uint32_t op = op_id(a, s, &f);
    int kind = s->kind;
    int root = fl_is_zero(s->parent_span_id, 8);
    int entry = kind == FL_KIND_SERVER || kind == FL_KIND_CONSUMER || root;
    int internal = !entry && kind != FL_KIND_CLIENT && kind != FL_KIND_PRODUCER;
    uint32_t node = FL__NONE;
    if (entry || internal)
        node = series_get(a, entry ? FL__SER_ENDPOINT : FL__SER_OP, 0, svc, op, FL__NONE, FL__NONE);

    /* A late span would change a bucket that was already analysed: count it, skip it. */
    if (late) {
        FL__INC(a->c_late);
    } else {
        ob_get(a, b)->spans++;
        fl__acc_t *c = node != FL__NONE ? acc_get(a, node, b) : NULL;
        if (c) {
            c->count++;
            c->errors += f.is_error != 0;
            c->timeouts += f.timeout_hint != 0;
            if (s->status_code == FL_STATUS_ERROR)
                c->st_error++;
            else if (s->status_code == FL_STATUS_OK)
                c->st_ok++;
            else
                c->st_unset++;
            fl__acc_code(c, f.http_status, 1);
            lost(a, fl_sketch_add(&c->lat, dur));
            fl__acc_example(c->slow, s->trace_id, dur);
            if (f.is_error) {
                fl__acc_example(c->err, s->trace_id, dur);
                if (f.error_type.len) {
                    uint32_t et = fl__strtab_intern(&a->str, f.error_type.ptr,
                                                    f.error_type.len > 96 ? 96 : f.error_type.len);
                    if (et != FL__NONE)
                        fl__acc_etype(c, et, 1);
                }
            }
        } else if (node != FL__NONE) {
            lost(a, FL_ERR_NOMEM);
        }
    }

    uint64_t sid = id64(s->span_id);
    if (!sid)
        return FL_OK;
    fl__wrec_t r;
    memset(&r, 0, sizeof(r));
    r.span_id = sid;
    r.parent_id = root ? 0 : id64(s->parent_span_id);
    /* A root consumer continues its producer's work through a link, not a parent: pair it
     * through the link so the async hop becomes an edge. */
    if (root && kind == FL_KIND_CONSUMER && s->n_links) {
        r.parent_id = id64(s->links[0].span_id);
        r.flags |= FL__R_LINKED;
    }
    if (r.parent_id == sid)
        r.parent_id = 0;
    r.end_ns = end;
    memcpy(r.trace_id, s->trace_id, 16);
    if (dur <= UINT32_MAX) {
        r.dur = (uint32_t)dur;
    } else {
        uint64_t us = dur / 1000;
        r.dur = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        r.flags |= FL__R_DUR_US;
    }
    r.svc = svc;
    r.name = op;
    r.node = node;
    r.peer = FL__NONE;
    r.kind = (uint8_t)(kind < 0 || kind > 255 ? 0 : kind);
    if (entry)
        r.flags |= FL__R_ENTRY;
    if (f.is_error)
        r.flags |= FL__R_ERR;
    if (f.timeout_hint)
        r.flags |= FL__R_TIMEOUT;
    /* Calls out of the service need a peer name in case nothing instrumented answers. */
    if (kind == FL_KIND_CLIENT || (f.db_system.len && internal)) {
        char peer[128];
        size_t pl = fl__peer_name(&f, peer, sizeof(peer));
        if (pl)
            r.peer = fl__strtab_intern(&a->str, peer, pl);
        if (kind != FL_KIND_CLIENT && r.peer != FL__NONE)
            r.flags |= FL__R_DB;
    }
    if (late)
        r.flags |= FL__R_FINAL;
    win_insert(a, &r);
    return FL_OK;
}

void fl__ingest_dispose(fl_analysis_t *a)
{
    if (a->ob) {
        for (uint32_t k = 0; k < a->K; k++) {
            for (uint32_t i = 0; i < a->ob[k].n; i++)
                fl__acc_dispose(&a->ob[k].accs[i]);
            free(a->ob[k].accs);
        }
    }
    free(a->ob);
    a->ob = NULL;
    for (fl__sealed_t *s = a->pend_head, *nx; s; s = nx) {
        nx = s->next;
        fl__sealed_free(s);
    }
    a->pend_head = a->pend_tail = NULL;
    fl__window_dispose(&a->win);
    free(a->acc_slot);
    free(a->peer_keys);
    free(a->peer_k2);
    free(a->peer_vals);
    free(a->scr);
    free(a->opcache);
    free(a->ofilt[0]);
    free(a->ofilt[1]);
    a->opcache = NULL;
    a->ofilt[0] = a->ofilt[1] = NULL;
    a->acc_slot = NULL;
    a->peer_keys = a->peer_k2 = a->peer_vals = NULL;
    a->scr = NULL;
}
