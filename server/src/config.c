/* SPDX-License-Identifier: Apache-2.0 */
/* The option table: defaults, environment variables and flags all go through one setter,
 * and --help is generated from the same table. */
#include "config.h"

#include <faultline/common.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* OPT_LIST: a repeatable flag kept comma-separated in a string field; the environment
 * variable gives the whole list, comma-separated. */
enum opt_type { OPT_STR, OPT_SIZE, OPT_INT, OPT_DURATION, OPT_BOOL, OPT_FLOAT, OPT_LIST };

typedef struct opt {
    const char *name; /* flag without the leading dashes */
    const char *env;  /* environment variable, NULL: none */
    const char *alt_env;
    enum opt_type type;
    size_t offset;
    size_t size; /* for strings */
    const char *def;
    int64_t min, max; /* for integers and floats */
    const char *help;
} opt_t;

#define STR(f) OPT_STR, offsetof(fl_config_t, f), sizeof(((fl_config_t *)0)->f)
#define NUM(t, f) t, offsetof(fl_config_t, f), 0
#define LIST(f) OPT_LIST, offsetof(fl_config_t, f), sizeof(((fl_config_t *)0)->f)

static const opt_t options[] = {
    {"otlp-grpc", "FAULTLINE_OTLP_GRPC", NULL, STR(otlp_grpc), "127.0.0.1:4317", 0, 0,
     "OTLP/gRPC listener HOST:PORT (\"off\" disables it)"},
    {"otlp-http", "FAULTLINE_OTLP_HTTP", NULL, STR(otlp_http), "127.0.0.1:4318", 0, 0,
     "OTLP/HTTP listener HOST:PORT (\"off\" disables it)"},
    {"api", "FAULTLINE_API", NULL, STR(api), "127.0.0.1:8080", 0, 0,
     "HTTP JSON API listener HOST:PORT"},
    {"db", "FAULTLINE_DB", NULL, STR(db), "./faultline.db", 0, 0,
     "database file; every data file of the store lives beside it"},
    {"max-body", "FAULTLINE_MAX_BODY", NULL, NUM(OPT_SIZE, max_body), "64MiB", 1024, INT64_MAX,
     "largest request after decompression (413 / RESOURCE_EXHAUSTED past it)"},
    {"tls-cert", "FAULTLINE_TLS_CERT", NULL, STR(tls_cert), "", 0, 0,
     "PEM certificate chain: turns TLS on for all listeners"},
    {"tls-key", "FAULTLINE_TLS_KEY", NULL, STR(tls_key), "", 0, 0, "PEM private key"},
    {"tls-client-ca", "FAULTLINE_TLS_CLIENT_CA", NULL, STR(tls_client_ca), "", 0, 0,
     "PEM CA bundle: require and verify client certificates (mTLS)"},
    {"capture-dir", "FAULTLINE_CAPTURE_DIR", NULL, STR(capture_dir), "", 0, 0,
     "write every accepted export request here (replayable with faultline-replay)"},
    {"log-level", "FAULTLINE_LOG_LEVEL", NULL, STR(log_level), "info", 0, 0,
     "error, warn, info, debug or trace"},
    {"log-format", "FAULTLINE_LOG_FORMAT", NULL, STR(log_format), "logfmt", 0, 0,
     "logfmt (key=value lines) or json"},
    {"port-file", "FAULTLINE_PORT_FILE", NULL, STR(port_file), "", 0, 0,
     "once ready, write the bound ports here as JSON (useful with port 0)"},
    {"decode-threads", "FAULTLINE_DECODE_THREADS", NULL, NUM(OPT_INT, decode_threads), "2", 1, 64,
     "threads decoding export requests"},
    {"api-threads", "FAULTLINE_API_THREADS", NULL, NUM(OPT_INT, api_threads), "2", 1, 64,
     "threads answering API queries"},
    {"max-inflight", "FAULTLINE_MAX_INFLIGHT", NULL, NUM(OPT_SIZE, max_inflight), "32MiB", 1024,
     INT64_MAX, "bytes of export requests being handled at once; past it: 503 + Retry-After"},
    {"max-queue-spans", "FAULTLINE_MAX_QUEUE_SPANS", NULL, NUM(OPT_INT, max_queue_spans), "50000",
     1000, 100000000, "spans accepted but not yet committed; past it: 503"},
    {"retry-after", "FAULTLINE_RETRY_AFTER", NULL, NUM(OPT_INT, retry_after), "1", 0, 3600,
     "seconds clients are told to wait when overloaded"},
    {"max-connections", "FAULTLINE_MAX_CONNECTIONS", NULL, NUM(OPT_INT, max_connections), "4096", 1,
     1000000, "connections per listener"},
    {"max-streams", "FAULTLINE_MAX_STREAMS", NULL, NUM(OPT_INT, max_streams), "256", 1, 100000,
     "concurrent HTTP/2 streams per connection"},
    {"max-header-size", "FAULTLINE_MAX_HEADER_SIZE", NULL, NUM(OPT_SIZE, max_header_size), "64KiB",
     1024, 16 << 20, "request header bytes (all headers together); past it: 431"},
    {"ingest-token-file", "FAULTLINE_INGEST_TOKEN_FILE", NULL, STR(ingest_token_file), "", 0, 0,
     "bearer tokens for OTLP ingest, one per line (several for rotation); without a valid "
     "\"Authorization: Bearer\" header: 401 / UNAUTHENTICATED"},
    {"api-token-file", "FAULTLINE_API_TOKEN_FILE", NULL, STR(api_token_file), "", 0, 0,
     "bearer tokens for the API, one per line; GET /health stays open"},
    {"cors-origin", "FAULTLINE_CORS_ORIGIN", NULL, LIST(cors_origin), "", 0, 0,
     "allow browsers from this origin (repeatable; '*' wildcards as in https://*.example.com) "
     "on OTLP/HTTP and the API; none: no CORS; the env variable takes a comma-separated list"},
    {"mask-attribute", "FAULTLINE_MASK_ATTRIBUTE", NULL, LIST(mask_attribute), "", 0, 0,
     "mask this attribute's value at ingest (repeatable; exact key, or a prefix ending in '*'); "
     "the env variable takes a comma-separated list"},
    {"mask-mode", "FAULTLINE_MASK_MODE", NULL, STR(mask_mode), "redact", 0, 0,
     "redact (\"[REDACTED]\") or hash (\"sha256:\" + 16 hex digits, equal values stay "
     "correlatable)"},
    {"no-default-masks", "FAULTLINE_NO_DEFAULT_MASKS", NULL, NUM(OPT_BOOL, no_default_masks),
     "false", 0, 1,
     "do not mask the default sensitive keys (keys containing the word password, passwd, "
     "secret, token, api_key, apikey, authorization, cookie, set-cookie, credit_card, "
     "card_number or ssn, any case)"},
    {"max-spans-per-request", "FAULTLINE_MAX_SPANS_PER_REQUEST", NULL,
     NUM(OPT_INT, max_spans_per_request), "100000", 1, 100000000,
     "spans per export request; past it: 413 / RESOURCE_EXHAUSTED"},
    {"max-spans-per-trace", "FAULTLINE_MAX_SPANS_PER_TRACE", NULL,
     NUM(OPT_INT, max_spans_per_trace), "50000", 0, 1000000000,
     "spans kept per trace across requests (recent traces, a fixed 1.5 MiB table); later ones "
     "are dropped and answered as partial success (rejected_spans); 0: no limit"},
    {"max-attributes", "FAULTLINE_MAX_ATTRIBUTES", NULL, NUM(OPT_INT, max_attributes), "128", 1,
     1000000,
     "attributes per span, event, link, scope and resource; extra ones are dropped and counted "
     "in dropped_attributes_count"},
    {"max-attribute-length", "FAULTLINE_MAX_ATTRIBUTE_LENGTH", NULL,
     NUM(OPT_INT, max_attribute_length), "4096", 16, 1 << 30,
     "bytes per string or bytes attribute value; longer ones are cut (at a UTF-8 boundary)"},
    {"idle-timeout", "FAULTLINE_IDLE_TIMEOUT", NULL, NUM(OPT_DURATION, idle_timeout), "120s", 0, 0,
     "close connections idle this long"},
    {"shutdown-timeout", "FAULTLINE_SHUTDOWN_TIMEOUT", NULL, NUM(OPT_DURATION, shutdown_timeout),
     "10s", 0, 0, "how long SIGTERM waits for in-flight requests"},
    {"synchronous-full", "FAULTLINE_SYNCHRONOUS_FULL", NULL, NUM(OPT_BOOL, synchronous_full),
     "false", 0, 1,
     "fsync every commit (survives power loss; the default survives process crashes)"},
    {"retention", "FAULTLINE_RETENTION", NULL, NUM(OPT_DURATION, retention), "7d", 0, 0,
     "delete spans and analysis buckets this much older than the newest span (event time), "
     "in small steps; 0 keeps spans forever"},
    {"max-db-size", "FAULTLINE_MAX_DB_SIZE", NULL, NUM(OPT_SIZE, max_db_size), "0", 0, INT64_MAX,
     "cap on the database size; past it ingest is refused with 503 / UNAVAILABLE (retryable); "
     "0: no cap"},
    {"bucket", "FAULTLINE_BUCKET", NULL, NUM(OPT_DURATION, bucket), "10s", 0, 0,
     "width of the analysis time buckets (1s .. 1h); keep it across restarts, the learned "
     "state of another width is discarded"},
    {"analysis-interval", "ANALYSIS_INTERVAL", "FAULTLINE_ANALYSIS_INTERVAL",
     NUM(OPT_DURATION, analysis_interval), "10s", 0, 0,
     "run the analysis this often (it also runs whenever a bucket closes); a bare number is "
     "seconds"},
    {"baseline-window", "BASELINE_WINDOW", "FAULTLINE_BASELINE_WINDOW",
     NUM(OPT_DURATION, baseline_window), "1h", 0, 0,
     "memory of the self-learning baselines (EWMA time constant); a bare number is seconds"},
    {"anomaly-threshold", "ANOMALY_THRESHOLD", "FAULTLINE_ANOMALY_THRESHOLD",
     NUM(OPT_FLOAT, anomaly_threshold), "3.0", 1, 1000,
     "latency anomaly: observed / baseline ratio that must be reached (and be significant)"},
    {"error-rate-threshold", "ERROR_RATE_THRESHOLD", "FAULTLINE_ERROR_RATE_THRESHOLD",
     NUM(OPT_FLOAT, error_rate_threshold), "0.2", 0, 1,
     "error anomaly: error rate (0..1) that must be exceeded (and be significant)"},
    {"webhook", "FAULTLINE_WEBHOOK", NULL, LIST(webhook), "", 0, 0,
     "URL notified of incidents (opened, escalated, resolved)"},
    {"webhook-format", "FAULTLINE_WEBHOOK_FORMAT", NULL, STR(webhook_format), "alertmanager", 0, 0,
     "webhook payload: alertmanager (webhook v4), slack (incoming webhook) or json"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static int set_opt(fl_config_t *c, const opt_t *o, const char *val, const char *origin, char *err,
                   size_t errlen)
{
    char *field = (char *)c + o->offset;
    uint64_t u;
    switch (o->type) {
    case OPT_STR:
        if (strlen(val) >= o->size) {
            snprintf(err, errlen, "%s: value too long (max %zu bytes)", origin, o->size - 1);
            return -1;
        }
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case OPT_SIZE:
        if (fl_size_parse(val, &u) != FL_OK || u < (uint64_t)o->min) {
            snprintf(err, errlen, "%s: \"%s\" is not a size of at least %lld bytes (e.g. 16MiB)",
                     origin, val, (long long)o->min);
            return -1;
        }
        memcpy(field, &u, sizeof(u));
        return 0;
    case OPT_DURATION:
        if (fl_duration_parse(val, &u) != FL_OK) {
            snprintf(err, errlen, "%s: \"%s\" is not a duration (e.g. 500ms, 10s, 5m, 7d)", origin,
                     val);
            return -1;
        }
        memcpy(field, &u, sizeof(u));
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: \"%s\" is not an integer from %lld to %lld", origin, val,
                     (long long)o->min, (long long)o->max);
            return -1;
        }
        int64_t v64 = v;
        memcpy(field, &v64, sizeof(v64));
        return 0;
    }
    case OPT_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v >= (double)o->min && v <= (double)o->max)) {
            snprintf(err, errlen, "%s: \"%s\" is not a number from %lld to %lld", origin, val,
                     (long long)o->min, (long long)o->max);
            return -1;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case OPT_LIST: {
        size_t cur = strlen(field);
        if (cur + 1 + strlen(val) >= o->size) {
            snprintf(err, errlen, "%s: list too long (max %zu bytes)", origin, o->size - 1);
            return -1;
        }
        if (cur && *val)
            field[cur++] = ',';
        memcpy(field + cur, val, strlen(val) + 1);
        return 0;
    }
    case OPT_BOOL: {
        int v;
        if (!strcmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
            !strcasecmp(val, "on"))
            v = 1;
        else if (!strcmp(val, "0") || !strcasecmp(val, "false") || !strcasecmp(val, "no") ||
                 !strcasecmp(val, "off"))
            v = 0;
        else {
            snprintf(err, errlen, "%s: \"%s\" is not a boolean (true/false)", origin, val);
            return -1;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    }
    return -1;
}

void fl_config_defaults(fl_config_t *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_OPTIONS; i++)
        set_opt(c, &options[i], options[i].def, options[i].name, err, sizeof(err));
}

int fl_config_apply_env(fl_config_t *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *names[2] = {options[i].env, options[i].alt_env};
        for (int k = 0; k < 2; k++) {
            const char *v = names[k] ? getenv(names[k]) : NULL;
            if (v && set_opt(c, &options[i], v, names[k], err, errlen) != 0)
                return -1;
        }
    }
    return 0;
}

int fl_config_parse_args(fl_config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    unsigned char list_seen[N_OPTIONS] = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fl_config_help(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = NULL;
        for (size_t k = 0; k < N_OPTIONS; k++)
            if (strlen(options[k].name) == nl && !strncmp(options[k].name, name, nl))
                o = &options[k];
        if (!o) {
            snprintf(err, errlen, "unknown flag \"--%.*s\" (see --help)", (int)nl, name);
            return -1;
        }
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (o->type == OPT_BOOL) {
            val = "true";
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, errlen, "flag --%s needs a value", o->name);
            return -1;
        }
        char origin[80];
        snprintf(origin, sizeof(origin), "--%s", o->name);
        /* The first flag of a list replaces what the environment gave; later ones add. */
        if (o->type == OPT_LIST && !list_seen[o - options]++)
            ((char *)c + o->offset)[0] = 0;
        if (set_opt(c, o, val, origin, err, errlen) != 0)
            return -1;
    }
    return 0;
}

void fl_config_help(FILE *out)
{
    fprintf(out,
            "faultline %s: OpenTelemetry OTLP receiver and trace analyzer\n\n"
            "Usage:\n"
            "  faultline serve [flags]   run the receiver, store and API\n"
            "  faultline version         print the version\n"
            "  faultline help            this text\n\n"
            "Flags of serve (each also read from the environment variable shown;\n"
            "flags win over the environment, the environment over the default):\n",
            FL_VERSION);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        const char *arg = o->type == OPT_STR        ? "VALUE"
                          : o->type == OPT_SIZE     ? "SIZE"
                          : o->type == OPT_DURATION ? "DURATION"
                          : o->type == OPT_BOOL     ? "[BOOL]"
                          : o->type == OPT_FLOAT    ? "X"
                          : o->type == OPT_LIST     ? "VALUE (repeatable)"
                                                    : "N";
        fprintf(out, "  --%s %s\n      %s\n      env %s%s%s, default %s\n", o->name, arg, o->help,
                o->env, o->alt_env ? " or " : "", o->alt_env ? o->alt_env : "",
                *o->def ? o->def : "(none)");
    }
    fprintf(out, "\nEndpoints:\n"
                 "  OTLP/gRPC  opentelemetry.proto.collector.trace.v1.TraceService/Export\n"
                 "  OTLP/HTTP  POST /v1/traces (application/x-protobuf or application/json;\n"
                 "             gzip, deflate, zstd, snappy)\n"
                 "  API        GET /health, /api/traces/{id}, /api/traces, /api/services,\n"
                 "             /api/dependencies, /aiops/metrics[/{service}], /aiops/baselines,\n"
                 "             /aiops/anomalies, /aiops/status; POST /aiops/analyze\n"
                 "Signals: SIGTERM/SIGINT drain in-flight requests, commit and exit.\n");
}

int fl_config_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    if (!strcmp(addr, "off") || !*addr) {
        *port = -1;
        host[0] = 0;
        return 0;
    }
    const char *colon = NULL, *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = addr + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) {
            h = "127.0.0.1";
            hl = strlen(h);
            colon = addr - 1; /* the whole string is the port */
        } else {
            hl = (size_t)(colon - addr);
        }
    }
    if (hl == 0) {
        h = "127.0.0.1";
        hl = strlen(h);
    }
    if (hl >= hostlen)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}
