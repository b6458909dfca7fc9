/* SPDX-License-Identifier: Apache-2.0 */
/* faultline: the composition root. Reads the configuration, opens the store, wires the
 * receiver's sink to the store writer and the store's commit observer to the analysis
 * engine, runs the analysis thread, starts the listeners and handles signals. */
#include "config.h"
#include "analysis_rt.h"

#include <faultline/analysis.h>
#include <faultline/api.h>
#include <faultline/common.h>
#include <faultline/net.h>
#include <faultline/receiver.h>
#include <faultline/store.h>

#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int sink_submit(void *ud, fl_span_batch_t *batch, fl_sink_done_cb cb, void *ctx)
{
    return fl_store_submit_take(ud, batch, cb, ctx);
}

static int sink_would_block(void *ud, size_t n_spans)
{
    return fl_store_would_block(ud, n_spans);
}

/* Receiver figures for GET /aiops/status (the API does not depend on the receiver). */
static void receiver_status(void *ud, fl_jw_t *w)
{
    fl_analysis_rt_t *rt = ud;
    fl_receiver_stats_t st;
    fl_receiver_stats(fl_analysis_rt_receiver(rt), &st);
    fl_analysis_rt_status(rt, w);
    fl_jw_key(w, "ingest");
    fl_jw_obj_begin(w);
    fl_jw_key(w, "requests");
    fl_jw_uint(w, st.requests);
    fl_jw_key(w, "spans_accepted");
    fl_jw_uint(w, st.spans_accepted);
    fl_jw_key(w, "spans_rejected");
    fl_jw_uint(w, st.spans_rejected);
    fl_jw_key(w, "requests_refused");
    fl_jw_uint(w, st.requests_refused);
    fl_jw_key(w, "requests_failed");
    fl_jw_uint(w, st.requests_failed);
    fl_jw_key(w, "inflight_bytes");
    fl_jw_uint(w, st.inflight_bytes);
    fl_jw_key(w, "inflight_requests");
    fl_jw_uint(w, st.inflight_requests);
    fl_jw_key(w, "requests_unauthenticated");
    fl_jw_uint(w, st.requests_unauthenticated);
    fl_jw_key(w, "requests_too_many_spans");
    fl_jw_uint(w, st.requests_too_many_spans);
    fl_jw_key(w, "attributes_masked");
    fl_jw_uint(w, st.attributes_masked);
    fl_jw_key(w, "attributes_dropped");
    fl_jw_uint(w, st.attributes_dropped);
    fl_jw_key(w, "values_truncated");
    fl_jw_uint(w, st.values_truncated);
    fl_jw_key(w, "spans_over_trace_limit");
    fl_jw_uint(w, st.spans_over_trace_limit);
    fl_analysis_rt_rates(rt, w);
    fl_jw_obj_end(w);
}

static int receiver_sample(void *ud, uint64_t *accepted, uint64_t *refused)
{
    fl_receiver_stats_t st;
    fl_receiver_stats(ud, &st);
    *accepted = st.spans_accepted;
    *refused = st.requests_refused;
    return 0;
}

typedef struct listener_spec {
    const char *name;
    const char *addr;
    int index; /* position within its fl_net_t, -1 when off */
    fl_net_t *net;
} listener_spec_t;

static int add_listener(fl_net_t *net, int *count, listener_spec_t *spec, const fl_config_t *cfg,
                        fl_net_handler_t handler, int allow_h2c, char *err, size_t errlen)
{
    char host[256];
    int port;
    spec->index = -1;
    spec->net = net;
    if (fl_config_split_addr(spec->addr, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "--%s: \"%s\" is not HOST:PORT", spec->name, spec->addr);
        return -1;
    }
    if (port < 0)
        return 0;
    fl_net_listen_opts_t o = {0};
    o.name = spec->name;
    o.host = host;
    o.port = port;
    o.handler = handler;
    o.max_body = (size_t)cfg->max_body;
    o.max_connections = (size_t)cfg->max_connections;
    o.max_streams = (uint32_t)cfg->max_streams;
    o.max_header = (size_t)cfg->max_header_size;
    o.idle_timeout_ms = (int)(cfg->idle_timeout / 1000000);
    o.allow_h2c = allow_h2c;
    o.tls.cert_file = *cfg->tls_cert ? cfg->tls_cert : NULL;
    o.tls.key_file = *cfg->tls_key ? cfg->tls_key : NULL;
    o.tls.client_ca_file = *cfg->tls_client_ca ? cfg->tls_client_ca : NULL;
    char lerr[512];
    if (fl_net_listen(net, &o, lerr, sizeof(lerr)) != FL_OK) {
        snprintf(err, errlen, "--%s %s: %s", spec->name, spec->addr, lerr);
        return -1;
    }
    spec->index = (*count)++;
    fl_log(FL_LOG_INFO, "server", "listening name=%s addr=%s:%d tls=%s mtls=%s", spec->name, host,
           fl_net_bound_port(net, spec->index), o.tls.cert_file ? "on" : "off",
           o.tls.client_ca_file ? "on" : "off");
    return 0;
}

static int write_port_file(const char *path, listener_spec_t *specs, int n)
{
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        int port = specs[i].index >= 0 ? fl_net_bound_port(specs[i].net, specs[i].index) : -1;
        fprintf(f, "%s\"%s\":%d", i ? "," : "", specs[i].name, port);
    }
    fprintf(f, ",\"pid\":%d}\n", (int)getpid());
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* Security settings resolved from the configuration: token sets, split lists, CORS. */
#define MAX_LIST 64
typedef struct sec {
    fl_net_tokens_t *ingest_tokens, *api_tokens;
    char origins_buf[4096], masks_buf[4096];
    const char *origins[MAX_LIST], *masks[MAX_LIST];
    size_t n_origins, n_masks;
    fl_net_cors_t ingest_cors, api_cors;
} sec_t;

static size_t split_list(char *buf, const char **out)
{
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < MAX_LIST;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        char *e = t + strlen(t);
        while (e > t && e[-1] == ' ')
            *--e = 0;
        if (*t)
            out[n++] = t;
    }
    return n;
}

static int sec_init(sec_t *sc, const fl_config_t *cfg, char *err, size_t errlen)
{
    char lerr[512];
    memset(sc, 0, sizeof(*sc));
    if (*cfg->ingest_token_file &&
        !(sc->ingest_tokens = fl_net_tokens_load(cfg->ingest_token_file, lerr, sizeof(lerr)))) {
        snprintf(err, errlen, "--ingest-token-file: %s", lerr);
        return -1;
    }
    if (*cfg->api_token_file &&
        !(sc->api_tokens = fl_net_tokens_load(cfg->api_token_file, lerr, sizeof(lerr)))) {
        snprintf(err, errlen, "--api-token-file: %s", lerr);
        return -1;
    }
    snprintf(sc->origins_buf, sizeof(sc->origins_buf), "%s", cfg->cors_origin);
    snprintf(sc->masks_buf, sizeof(sc->masks_buf), "%s", cfg->mask_attribute);
    sc->n_origins = split_list(sc->origins_buf, sc->origins);
    sc->n_masks = split_list(sc->masks_buf, sc->masks);
    sc->ingest_cors = (fl_net_cors_t){sc->origins, sc->n_origins, "POST", 0};
    sc->api_cors = (fl_net_cors_t){sc->origins, sc->n_origins, "GET, POST", 0};
    fl_log(FL_LOG_INFO, "server",
           "security ingest_auth=%s api_auth=%s cors_origins=%zu masked_keys=%zu defaults=%s "
           "mask_mode=%s",
           sc->ingest_tokens ? "on" : "off", sc->api_tokens ? "on" : "off", sc->n_origins,
           sc->n_masks, cfg->no_default_masks ? "off" : "on", cfg->mask_mode);
    return 0;
}

static int serve(const fl_config_t *cfg)
{
    int rc = 1;
    char err[1024] = "";
    fl_store_t *store = NULL;
    fl_analysis_rt_t *rt = NULL;
    fl_receiver_t *recv = NULL;
    fl_api_t *api = NULL;
    static sec_t sec; /* outlives the receiver, which may be leaked at shutdown */
    fl_net_t *ingest = NULL, *apinet = NULL;
    int n_ingest = 0, n_api = 0;
    listener_spec_t specs[3] = {{"otlp-grpc", cfg->otlp_grpc, -1, NULL},
                                {"otlp-http", cfg->otlp_http, -1, NULL},
                                {"api", cfg->api, -1, NULL}};

    /* Signals are taken by sigwait in this thread only; every thread started below
     * inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    fl_store_opts_t so = {0};
    so.path = cfg->db;
    so.max_queue_spans = (size_t)cfg->max_queue_spans;
    so.synchronous_full = cfg->synchronous_full;
    so.retention_ns = cfg->retention;
    so.max_db_bytes = cfg->max_db_size;
    /* Sized for the memory bound (RSS <= 256 MiB): 14 MiB of dedup keys, 32 MiB of page
     * cache for the writer; reads still merge older duplicates. */
    so.dedup_window_spans = 1000000;
    so.cache_mib = 32;
    if (fl_store_open(&so, &store, err, sizeof(err)) != FL_OK) {
        fl_log(FL_LOG_ERROR, "server", "cannot open the store path=\"%s\" error=\"%s\"", cfg->db,
               err);
        goto out;
    }
    fl_analysis_rt_opts_t rto = {
        .store = store,
        .bucket_ns = cfg->bucket,
        .interval_ns = cfg->analysis_interval,
        .baseline_window_ns = cfg->baseline_window,
        .anomaly_threshold = cfg->anomaly_threshold,
        .error_rate_threshold = cfg->error_rate_threshold,
        .webhooks = cfg->webhook,
        .webhook_format = cfg->webhook_format,
    };
    rt = fl_analysis_rt_new(&rto, err, sizeof(err));
    if (!rt) {
        fl_log(FL_LOG_ERROR, "server", "cannot start the analysis error=\"%s\"", err);
        goto out;
    }
    fl_receiver_opts_t ro = {0};
    ro.sink.submit_take = sink_submit;
    ro.sink.would_block = sink_would_block;
    ro.sink.ud = store;
    ro.max_body = (size_t)cfg->max_body;
    ro.max_inflight_bytes = (size_t)cfg->max_inflight;
    ro.decode_threads = (int)cfg->decode_threads;
    ro.retry_after_s = (unsigned)cfg->retry_after;
    ro.capture_dir = *cfg->capture_dir ? cfg->capture_dir : NULL;
    if (sec_init(&sec, cfg, err, sizeof(err)) != 0) {
        fl_log(FL_LOG_ERROR, "server", "cannot start error=\"%s\"", err);
        goto out;
    }
    ro.tokens = sec.ingest_tokens;
    ro.cors = &sec.ingest_cors;
    ro.sanitize.mask_keys = sec.masks;
    ro.sanitize.n_mask_keys = sec.n_masks;
    ro.sanitize.mask_mode = !strcmp(cfg->mask_mode, "hash") ? FL_MASK_HASH : FL_MASK_REDACT;
    ro.sanitize.no_default_masks = cfg->no_default_masks;
    ro.sanitize.max_attributes = (size_t)cfg->max_attributes;
    ro.sanitize.max_value_length = (size_t)cfg->max_attribute_length;
    ro.max_spans = (size_t)cfg->max_spans_per_request;
    ro.max_spans_per_trace = (size_t)cfg->max_spans_per_trace;
    recv = fl_receiver_new(&ro, err, sizeof(err));
    if (!recv) {
        fl_log(FL_LOG_ERROR, "server", "cannot start the receiver error=\"%s\"", err);
        goto out;
    }
    fl_analysis_rt_set_receiver(rt, recv, receiver_sample);
    fl_api_opts_t ao = {0};
    ao.store = store;
    ao.status_fn = receiver_status;
    ao.status_ud = rt;
    ao.analysis = fl_analysis_rt_engine(rt);
    ao.analyze_fn = fl_analysis_rt_analyze;
    ao.analyze_ud = rt;
    ao.incidents = fl_analysis_rt_incidents(rt);
    ao.incident_fn = fl_analysis_rt_incident_changed;
    ao.incident_ud = rt;
    ao.threads = (int)cfg->api_threads;
    ao.tokens = sec.api_tokens;
    ao.cors = &sec.api_cors;
    api = fl_api_new(&ao);
    if (!api) {
        fl_log(FL_LOG_ERROR, "server", "cannot start the API");
        goto out;
    }
    ingest = fl_net_new("ingest");
    apinet = fl_net_new("api");
    if (!ingest || !apinet)
        goto out;
    if (add_listener(ingest, &n_ingest, &specs[0], cfg, fl_receiver_grpc_handler(recv), 1, err,
                     sizeof(err)) ||
        add_listener(ingest, &n_ingest, &specs[1], cfg, fl_receiver_http_handler(recv), 1, err,
                     sizeof(err)) ||
        add_listener(apinet, &n_api, &specs[2], cfg, fl_api_handler(api), 1, err, sizeof(err))) {
        fl_log(FL_LOG_ERROR, "server", "cannot listen error=\"%s\"", err);
        goto out;
    }
    if ((n_ingest && fl_net_start(ingest) != FL_OK) || (n_api && fl_net_start(apinet) != FL_OK)) {
        fl_log(FL_LOG_ERROR, "server", "cannot start the I/O threads");
        goto out;
    }
    if (specs[2].index >= 0) /* links in incident notifications */
        fl_analysis_rt_set_api_port(rt, cfg->api, fl_net_bound_port(apinet, specs[2].index));
    fl_api_set_ready(api, 1);
    if (*cfg->port_file && write_port_file(cfg->port_file, specs, 3) != 0) {
        fl_log(FL_LOG_ERROR, "server", "cannot write the port file path=\"%s\" error=\"%s\"",
               cfg->port_file, strerror(errno));
        goto out;
    }
    fl_log(FL_LOG_INFO, "server", "ready version=%s db=\"%s\"", FL_VERSION, cfg->db);

    /* This thread has nothing else to do: once a second it hands the free pages in
     * malloc's heaps back to the system, so the RSS after a burst falls back to what is in
     * use (after 3x overload: 244 MiB -> 135 MiB, issue 7); a trim took 0.2 ms (median)
     * and 3 ms at most at 365k spans/s. */
    int sig;
    for (;;) {
        struct timespec tick = {1, 0};
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig > 0)
            break;
        malloc_trim(0);
    }
    fl_log(FL_LOG_INFO, "server", "shutting down signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    rc = 0;
out:;
    int timeout_ms = (int)(cfg->shutdown_timeout / 1000000);
    if (api)
        fl_api_set_ready(api, 0);
    /* Order: stop taking exports (in-flight ones still get their commit and answer), then
     * the API; the receiver's workers and sink callbacks may still answer requests, so the
     * net objects are freed only after the receiver; the store commits what is queued. */
    if (ingest && n_ingest)
        fl_net_shutdown(ingest, timeout_ms);
    if (apinet && n_api)
        fl_net_shutdown(apinet, 2000);
    fl_receiver_free(recv, timeout_ms);
    fl_net_free(ingest);
    fl_net_free(apinet);
    fl_api_free(api);
    /* Every acknowledged span is observed; a last run and save keep the learned state. */
    fl_analysis_rt_stop(rt);
    if (store) {
        fl_store_stats_t st;
        fl_store_stats(store, &st);
        fl_store_close(store);
        fl_log(FL_LOG_INFO, "server", "stopped spans_stored=%llu",
               (unsigned long long)st.spans_stored);
    }
    fl_analysis_rt_free(rt);
    /* Tokens are read only in on_head, on the net threads, which are gone by now. */
    fl_net_tokens_free(sec.api_tokens);
    fl_net_tokens_free(sec.ingest_tokens);
    if (*cfg->port_file)
        unlink(cfg->port_file);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("faultline %s\n", FL_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fl_config_help(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") != 0) {
        fprintf(stderr,
                "faultline: unknown command \"%s\"; try \"faultline serve\" or "
                "\"faultline --help\"\n",
                cmd);
        return 2;
    }
    fl_config_t cfg;
    char err[512];
    fl_config_defaults(&cfg);
    if (fl_config_apply_env(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "faultline: %s\n", err);
        return 2;
    }
    int pr = fl_config_parse_args(&cfg, argc - 2, argv + 2, err, sizeof(err));
    if (pr == 1)
        return 0;
    if (pr < 0) {
        fprintf(stderr, "faultline: %s\n", err);
        return 2;
    }
    if (fl_log_set_level_name(cfg.log_level) != FL_OK) {
        fprintf(stderr, "faultline: --log-level: \"%s\" is not error|warn|info|debug|trace\n",
                cfg.log_level);
        return 2;
    }
    if (strcmp(cfg.log_format, "logfmt") && strcmp(cfg.log_format, "json")) {
        fprintf(stderr, "faultline: --log-format: \"%s\" is not logfmt|json\n", cfg.log_format);
        return 2;
    }
    fl_log_set_json(!strcmp(cfg.log_format, "json"));
    if (!*cfg.tls_cert != !*cfg.tls_key) {
        fprintf(stderr, "faultline: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (cfg.analysis_interval < 100000000ull) {
        fprintf(stderr, "faultline: --analysis-interval: must be at least 100ms\n");
        return 2;
    }
    if (*cfg.tls_client_ca && !*cfg.tls_cert) {
        fprintf(stderr, "faultline: --tls-client-ca needs --tls-cert and --tls-key\n");
        return 2;
    }
    if (strcmp(cfg.mask_mode, "redact") && strcmp(cfg.mask_mode, "hash")) {
        fprintf(stderr, "faultline: --mask-mode: \"%s\" is not redact|hash\n", cfg.mask_mode);
        return 2;
    }
    return serve(&cfg);
}
