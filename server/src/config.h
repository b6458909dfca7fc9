/* SPDX-License-Identifier: Apache-2.0 */
/* faultline server configuration: one table of options read from defaults, environment
 * variables and command-line flags, in that order of precedence (lowest first). */
#ifndef FAULTLINE_SERVER_CONFIG_H
#define FAULTLINE_SERVER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef struct fl_config {
    char otlp_grpc[256];
    char otlp_http[256];
    char api[256];
    char db[1024];
    uint64_t max_body;
    char tls_cert[1024];
    char tls_key[1024];
    char tls_client_ca[1024];
    char capture_dir[1024];
    char log_level[16];
    char log_format[16];
    char port_file[1024];
    int64_t decode_threads;
    int64_t api_threads;
    uint64_t max_inflight;
    int64_t max_queue_spans;
    int64_t retry_after;
    uint64_t shutdown_timeout;
    int64_t max_connections;
    int64_t max_streams;
    uint64_t max_header_size;
    char ingest_token_file[1024];
    char api_token_file[1024];
    char cors_origin[4096];    /* a list: comma-separated */
    char mask_attribute[4096]; /* a list: comma-separated */
    char mask_mode[16];
    int no_default_masks;
    int64_t max_spans_per_request;
    int64_t max_spans_per_trace;
    int64_t max_attributes;
    int64_t max_attribute_length;
    uint64_t idle_timeout;
    int synchronous_full;
    uint64_t retention;
    uint64_t max_db_size;
    uint64_t bucket;
    uint64_t analysis_interval;
    uint64_t baseline_window;
    double anomaly_threshold;
    double error_rate_threshold;
    char webhook[4096]; /* a list: comma-separated */
    char webhook_format[16];
} fl_config_t;

/** Fill defaults, then environment variables. */
void fl_config_defaults(fl_config_t *c);
/** Apply command-line flags (argv after the subcommand). Returns 0, 1 when --help was
 *  printed, or -1 with a message in err. */
int fl_config_parse_args(fl_config_t *c, int argc, char **argv, char *err, size_t errlen);
/** Apply environment variables. -1 with a message on a bad value. */
int fl_config_apply_env(fl_config_t *c, char *err, size_t errlen);
/** Print the generated help. */
void fl_config_help(FILE *out);
/** Split "host:port", "[v6]:port" or "port" into host and port. "off" gives port -1. */
int fl_config_split_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
