/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-load synthetic mode: topology parsing, scripted faults, a deterministic trace
 * generator emitting spans in event-time order, and their OTLP protobuf encoding. No I/O. */
#ifndef FAULTLINE_LOAD_SYNTH_H
#define FAULTLINE_LOAD_SYNTH_H

#include <stddef.h>
#include <stdint.h>

/** A parsed topology (opaque). Names handed out stay valid until fl_synth_topo_free. */
typedef struct fl_synth_topo fl_synth_topo_t;
/** A running generator (opaque). */
typedef struct fl_synth_gen fl_synth_gen_t;

enum fl_synth_fault_kind {
    FL_SYNTH_FAULT_LATENCY, /**< the target's own work takes factor times longer */
    FL_SYNTH_FAULT_ERROR,   /**< the target fails with probability rate */
    FL_SYNTH_FAULT_TIMEOUT, /**< the target stops answering: no server spans, callers time out */
    FL_SYNTH_FAULT_TRAFFIC  /**< the target's entry rate is multiplied by factor (drop/surge) */
};

/** One scripted fault. start/duration are relative to the run start until resolved. */
typedef struct fl_synth_fault {
    int kind;
    char service[128];
    char operation[256];  /**< "" for every operation of the service */
    double factor;        /**< latency multiplier or traffic multiplier */
    double rate;          /**< error probability (error faults) */
    uint64_t deadline_ns; /**< timeout faults: when the caller gives up */
    int start_abs;        /**< start_ns is absolute unix nanos, not relative */
    uint64_t start_ns, duration_ns;
} fl_synth_fault_t;

enum fl_synth_kind { FL_SYNTH_SERVER = 2, FL_SYNTH_CLIENT = 3 };

/** One generated span. Strings point into the topology. */
typedef struct fl_synth_span {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    int has_parent;
    int kind;           /**< FL_SYNTH_SERVER or FL_SYNTH_CLIENT */
    int service;        /**< index of the emitting service (fl_synth_topo_service_name) */
    const char *name;   /**< span name */
    const char *method; /**< HTTP method or NULL */
    const char *route;  /**< http.route (SERVER) / path (CLIENT) or NULL */
    const char *peer;   /**< CLIENT: callee service or peer name */
    const char *db_system, *db_name; /**< CLIENT to an uninstrumented database, else NULL */
    uint64_t start_ns, end_ns;
    int http_status;            /**< 0: none (timeout, database) */
    int error;                  /**< span status ERROR */
    int timeout;                /**< CLIENT gave up at its deadline */
    const char *exception_type; /**< an exception event is attached when set */
    const char *status_message;
} fl_synth_span_t;

/** Parse a topology document. NULL on error, with a message naming the problem (and where)
 *  in err. */
fl_synth_topo_t *fl_synth_topo_parse(const char *json, size_t len, char *err, size_t errlen);
/** Read and parse a file; as fl_synth_topo_parse. */
fl_synth_topo_t *fl_synth_topo_load(const char *path, char *err, size_t errlen);
void fl_synth_topo_free(fl_synth_topo_t *t);
size_t fl_synth_topo_n_services(const fl_synth_topo_t *t);
/** Service or uninstrumented peer name by index. */
const char *fl_synth_topo_service_name(const fl_synth_topo_t *t, size_t i);
/** 1 when the index is an uninstrumented peer (it emits no spans of its own). */
int fl_synth_topo_is_peer(const fl_synth_topo_t *t, size_t i);
/** The caller -> callee service edges the topology can produce, "caller\tcallee" sorted and
 *  deduplicated; returns the count (at most max); out[i] point into internal storage. */
size_t fl_synth_topo_edges(const fl_synth_topo_t *t, const char **callers, const char **callees,
                           size_t max);

/** Parse "kind=latency,target=payment[.op],factor=5,start=30m,duration=5m" (kinds: latency,
 *  error, timeout, traffic, drop, surge). Returns 0, or -1 with a message in err. */
int fl_synth_fault_parse(const char *spec, fl_synth_fault_t *f, char *err, size_t errlen);

/** Create a generator for [start_ns, start_ns + duration_ns) with faults (copied; relative
 *  starts resolved against start_ns). Returns NULL with a message when a fault's target does
 *  not exist in the topology (or a traffic fault targets no entry operation). */
fl_synth_gen_t *fl_synth_gen_new(const fl_synth_topo_t *t, const fl_synth_fault_t *faults,
                                 size_t n_faults, uint64_t start_ns, uint64_t duration_ns,
                                 uint64_t seed, char *err, size_t errlen);
void fl_synth_gen_free(fl_synth_gen_t *g);
/** Generate every trace whose root starts before until_ns and return, through *out, the
 *  spans that end at or before until_ns, ordered by end time (ties by ids): event-time
 *  order. The array stays valid until the next call. until_ns = UINT64_MAX drains all. */
size_t fl_synth_gen_advance(fl_synth_gen_t *g, uint64_t until_ns, const fl_synth_span_t **out);
/** 1 once every trace has been generated and returned. */
int fl_synth_gen_done(const fl_synth_gen_t *g);
/** Faults with absolute times (index < n_faults given at creation). */
const fl_synth_fault_t *fl_synth_gen_fault(const fl_synth_gen_t *g, size_t i);

typedef struct fl_synth_stats {
    uint64_t traces, spans, error_traces, timeouts;
} fl_synth_stats_t;
void fl_synth_gen_stats(const fl_synth_gen_t *g, fl_synth_stats_t *st);

/** Encode spans as one ExportTraceServiceRequest (a ResourceSpans per service, in order of
 *  first appearance). Returns a malloc'd buffer (free it) or NULL on OOM. */
uint8_t *fl_synth_encode(const fl_synth_topo_t *t, const fl_synth_span_t *spans, size_t n,
                         size_t *len);

#endif
