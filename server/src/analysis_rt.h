/* SPDX-License-Identifier: Apache-2.0 */
/* The analysis runtime of the server: the engine, its persistence in the store, the commit
 * observer that feeds it and the thread that runs it on closed buckets and on a timer. */
#ifndef FAULTLINE_SERVER_ANALYSIS_RT_H
#define FAULTLINE_SERVER_ANALYSIS_RT_H

#include <faultline/analysis.h>
#include <faultline/common.h>
#include <faultline/store.h>

typedef struct fl_analysis_rt fl_analysis_rt_t;

typedef struct fl_analysis_rt_opts {
    fl_store_t *store;           /**< persistence and span source (observer) */
    uint64_t bucket_ns;          /**< --bucket */
    uint64_t interval_ns;        /**< --analysis-interval */
    uint64_t baseline_window_ns; /**< --baseline-window */
    double anomaly_threshold;    /**< --anomaly-threshold */
    double error_rate_threshold; /**< --error-rate-threshold */
    const char *webhooks;        /**< --webhook list, comma-separated; NULL or "": none */
    const char *webhook_format;  /**< --webhook-format; NULL: alertmanager */
} fl_analysis_rt_opts_t;

/** Samples ingest counters for the rates in /aiops/status (called on the analysis thread). */
typedef int (*fl_analysis_rt_sample_fn)(void *ud, uint64_t *spans_accepted,
                                        uint64_t *requests_refused);

/** Create the engine, restore its saved state and closed buckets from the store, set the
 *  store's commit observer and start the analysis thread. NULL with err on failure (bad
 *  options, OOM, thread). A saved state that cannot be restored (other bucket width, newer
 *  format, damaged) is logged and replaced by a fresh engine. */
fl_analysis_rt_t *fl_analysis_rt_new(const fl_analysis_rt_opts_t *o, char *err, size_t errlen);
/** Where the ingest counters come from (set before the listeners start). */
void fl_analysis_rt_set_receiver(fl_analysis_rt_t *rt, void *recv, fl_analysis_rt_sample_fn fn);
void *fl_analysis_rt_receiver(fl_analysis_rt_t *rt);
/** The engine (for the API's queries). */
fl_analysis_t *fl_analysis_rt_engine(fl_analysis_rt_t *rt);
/** fl_api_analyze_fn: run up to until_ns (0: the observed watermark), persist closed buckets
 *  and the state, rank root causes and update the incidents, fill out and changes (may be
 *  NULL) in arena. Serialised with the analysis thread. */
int fl_analysis_rt_analyze(void *rt, uint64_t until_ns, fl_arena_t *arena,
                           fl_analysis_run_result_t *out, fl_incident_changes_t *changes);
/** The incident set (restored from the store at creation), for the API. */
fl_incidents_t *fl_analysis_rt_incidents(fl_analysis_rt_t *rt);
/** fl_api_incident_fn: an API route changed incident id: persist the set, notify. */
void fl_analysis_rt_incident_changed(void *rt, const char *id, const char *event);
/** The API listener's address, for the links in notifications (api_addr as configured; a
 *  wildcard host becomes 127.0.0.1; port as bound). */
void fl_analysis_rt_set_api_port(fl_analysis_rt_t *rt, const char *api_addr, int port);
/** Write the "analysis_runtime" member of /aiops/status. */
void fl_analysis_rt_status(fl_analysis_rt_t *rt, fl_jw_t *w);
/** Write the ingest rate keys (inside the "ingest" object). */
void fl_analysis_rt_rates(fl_analysis_rt_t *rt, fl_jw_t *w);
/** Stop the thread, wait for the store's queued commits, run once more and save the state
 *  and closed buckets; remove the observer. Call before fl_store_close. Accepts NULL. */
void fl_analysis_rt_stop(fl_analysis_rt_t *rt);
/** Free the engine (after fl_analysis_rt_stop and after the store is closed). Accepts NULL. */
void fl_analysis_rt_free(fl_analysis_rt_t *rt);

#endif
