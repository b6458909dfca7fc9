/* SPDX-License-Identifier: Apache-2.0 */
/* demotrace internals shared by the span, processor and exporter files. */
#ifndef FL_DEMOTRACE_INT_H
#define FL_DEMOTRACE_INT_H

#include <faultline/demotrace.h>

#include <pthread.h>
#include <stdatomic.h>

#define FL_DT_MAX_ATTRS 128
#define FL_DT_MAX_EVENTS 128
#define FL_DT_MAX_EVENT_ATTRS 32

typedef struct fl__dt_url {
    char host[256];
    int port;
    int tls;
    char path[768];
} fl__dt_url_t;

/** Parse "http[s]://host[:port][/path]"; -1 when malformed. */
int fl__dt_url_parse(const char *url, fl__dt_url_t *u);

typedef struct fl__dt_event {
    char *name;
    uint64_t time_ns;
    fl_dt_attr_t *attrs;
    size_t n_attrs;
    uint32_t dropped_attrs;
} fl__dt_event_t;

struct fl_dt_span {
    fl_dt_tracer_t *tracer;
    fl_dt_context_t ctx;
    uint8_t parent_span_id[8];
    int has_parent;
    int parent_remote;
    int recording;
    char *name;
    int kind;
    uint64_t start_ns;
    uint64_t end_ns;
    fl_dt_attr_t *attrs;
    size_t n_attrs, cap_attrs;
    uint32_t dropped_attrs;
    fl__dt_event_t *events;
    size_t n_events, cap_events;
    uint32_t dropped_events;
    int status;
    char *status_msg;
};

struct fl_dt_tracer {
    char *service_name;
    fl_dt_attr_t *resource; /* service.name first */
    size_t n_resource;
    int export_enabled;
    fl__dt_url_t url;
    size_t max_queue, max_batch;
    int schedule_delay_ms, export_timeout_ms;
    int retry_initial_ms, retry_max_ms, retry_max_elapsed_ms;
    int gzip, quiet;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* wakes the exporter */
    pthread_cond_t done_cv; /* wakes flush waiters */
    fl_dt_span_t **ring;
    size_t head, count;
    size_t in_flight;
    uint64_t flush_req, flush_done;
    int stopping;
    uint64_t stop_deadline_ns; /* monotonic; valid while stopping */
    pthread_t thread;
    int thread_started;
    uint64_t last_log_ns;
    unsigned suppressed_logs;

    atomic_uint_fast64_t spans_started, spans_ended, spans_dropped, spans_exported, spans_failed,
        export_requests, export_retries, last_retry_after_ms;
    atomic_int last_status;
};

/** Free a span and everything it owns. */
void fl__dt_span_free(fl_dt_span_t *s);
/** Hand an ended span to the processor (takes ownership; never blocks). */
void fl__dt_processor_push(fl_dt_tracer_t *t, fl_dt_span_t *s);
/** Start the exporter thread; -1 on failure. */
int fl__dt_exporter_start(fl_dt_tracer_t *t);
/** Encode spans as an ExportTraceServiceRequest (malloc'd; *len set). NULL on OOM. */
uint8_t *fl__dt_encode(const fl_dt_tracer_t *t, fl_dt_span_t *const *spans, size_t n, size_t *len);
/** Monotonic and wall clocks in ns. */
uint64_t fl__dt_mono_ns(void);
uint64_t fl__dt_wall_ns(void);

#endif
