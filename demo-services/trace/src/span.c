/* SPDX-License-Identifier: Apache-2.0 */
/* demotrace: the tracer object, span lifecycle (start, attributes, events, status, end),
 * configuration from the OTEL_* environment and random ids. */
#include "demotrace_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t fl__dt_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fl__dt_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- random */

/* xoshiro256** per thread, seeded from the kernel once per thread. */
static __thread uint64_t rng_s[4];
static __thread int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        if (getrandom(rng_s, sizeof(rng_s), 0) != (ssize_t)sizeof(rng_s)) {
            uint64_t x = fl__dt_wall_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)&rng_s;
            for (int i = 0; i < 4; i++) {
                x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
                uint64_t z = x;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                rng_s[i] = z ^ (z >> 31);
            }
        }
        if (!(rng_s[0] | rng_s[1] | rng_s[2] | rng_s[3]))
            rng_s[0] = 1;
        rng_seeded = 1;
    }
    uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0];
    rng_s[3] ^= rng_s[1];
    rng_s[1] ^= rng_s[2];
    rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t;
    rng_s[3] = rotl(rng_s[3], 45);
    return r;
}

void fl_dt_random_id(uint8_t *buf, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            size_t k = n - i < 8 ? n - i : 8;
            memcpy(buf + i, &r, k);
        }
        int zero = 1;
        for (size_t i = 0; i < n && zero; i++)
            zero = buf[i] == 0;
        if (!zero || n < 8)
            break;
    } while (1);
}

double fl_dt_random_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------- attributes */

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static void attr_clear(fl_dt_attr_t *a)
{
    free(a->key);
    if (a->type == FL_DT_ATTR_STRING)
        free(a->v.s);
    a->key = NULL;
}

/* Copy src into dst (deep); -1 on OOM. */
static int attr_copy(fl_dt_attr_t *dst, const fl_dt_attr_t *src)
{
    *dst = *src;
    dst->key = xstrdup(src->key);
    if (!dst->key)
        return -1;
    if (src->type == FL_DT_ATTR_STRING) {
        dst->v.s = xstrdup(src->v.s);
        if (!dst->v.s) {
            free(dst->key);
            return -1;
        }
    }
    return 0;
}

/* Set key on the span, replacing an earlier value; takes a prepared attribute. */
static void span_set(fl_dt_span_t *s, const fl_dt_attr_t *a)
{
    if (!s || !s->recording || !a->key)
        return;
    for (size_t i = 0; i < s->n_attrs; i++) {
        if (strcmp(s->attrs[i].key, a->key) == 0) {
            fl_dt_attr_t n;
            if (attr_copy(&n, a) == 0) {
                attr_clear(&s->attrs[i]);
                s->attrs[i] = n;
            }
            return;
        }
    }
    if (s->n_attrs >= FL_DT_MAX_ATTRS) {
        s->dropped_attrs++;
        return;
    }
    if (s->n_attrs == s->cap_attrs) {
        size_t nc = s->cap_attrs ? s->cap_attrs * 2 : 16;
        fl_dt_attr_t *na = realloc(s->attrs, nc * sizeof(*na));
        if (!na) {
            s->dropped_attrs++;
            return;
        }
        s->attrs = na;
        s->cap_attrs = nc;
    }
    if (attr_copy(&s->attrs[s->n_attrs], a) == 0)
        s->n_attrs++;
    else
        s->dropped_attrs++;
}

void fl_dt_span_set_str(fl_dt_span_t *s, const char *key, const char *value)
{
    fl_dt_attr_t a = {.key = (char *)key, .type = FL_DT_ATTR_STRING};
    a.v.s = (char *)(value ? value : "");
    span_set(s, &a);
}

void fl_dt_span_set_int(fl_dt_span_t *s, const char *key, int64_t value)
{
    fl_dt_attr_t a = {.key = (char *)key, .type = FL_DT_ATTR_INT};
    a.v.i = value;
    span_set(s, &a);
}

void fl_dt_span_set_double(fl_dt_span_t *s, const char *key, double value)
{
    fl_dt_attr_t a = {.key = (char *)key, .type = FL_DT_ATTR_DOUBLE};
    a.v.d = value;
    span_set(s, &a);
}

void fl_dt_span_set_bool(fl_dt_span_t *s, const char *key, int value)
{
    fl_dt_attr_t a = {.key = (char *)key, .type = FL_DT_ATTR_BOOL};
    a.v.b = value ? 1 : 0;
    span_set(s, &a);
}

void fl_dt_span_add_event(fl_dt_span_t *s, const char *name, const fl_dt_attr_t *attrs, size_t n)
{
    if (!s || !s->recording)
        return;
    if (s->n_events >= FL_DT_MAX_EVENTS) {
        s->dropped_events++;
        return;
    }
    if (s->n_events == s->cap_events) {
        size_t nc = s->cap_events ? s->cap_events * 2 : 4;
        fl__dt_event_t *ne = realloc(s->events, nc * sizeof(*ne));
        if (!ne) {
            s->dropped_events++;
            return;
        }
        s->events = ne;
        s->cap_events = nc;
    }
    fl__dt_event_t *e = &s->events[s->n_events];
    memset(e, 0, sizeof(*e));
    e->name = xstrdup(name);
    e->time_ns = fl__dt_wall_ns();
    size_t keep = n > FL_DT_MAX_EVENT_ATTRS ? FL_DT_MAX_EVENT_ATTRS : n;
    e->dropped_attrs = (uint32_t)(n - keep);
    if (keep)
        e->attrs = calloc(keep, sizeof(*e->attrs));
    if (!e->name || (keep && !e->attrs)) {
        free(e->name);
        free(e->attrs);
        s->dropped_events++;
        return;
    }
    for (size_t i = 0; i < keep; i++) {
        if (attr_copy(&e->attrs[e->n_attrs], &attrs[i]) == 0)
            e->n_attrs++;
        else
            e->dropped_attrs++;
    }
    s->n_events++;
}

void fl_dt_span_record_exception(fl_dt_span_t *s, const char *type, const char *message,
                                 const char *stacktrace)
{
    fl_dt_attr_t a[3];
    size_t n = 0;
    a[n].key = "exception.type";
    a[n].type = FL_DT_ATTR_STRING;
    a[n++].v.s = (char *)(type ? type : "Error");
    a[n].key = "exception.message";
    a[n].type = FL_DT_ATTR_STRING;
    a[n++].v.s = (char *)(message ? message : "");
    if (stacktrace) {
        a[n].key = "exception.stacktrace";
        a[n].type = FL_DT_ATTR_STRING;
        a[n++].v.s = (char *)stacktrace;
    }
    fl_dt_span_add_event(s, "exception", a, n);
}

void fl_dt_span_set_status(fl_dt_span_t *s, fl_dt_status_t code, const char *description)
{
    if (!s || !s->recording || code == FL_DT_STATUS_UNSET || s->status == FL_DT_STATUS_OK)
        return;
    s->status = code;
    free(s->status_msg);
    s->status_msg = NULL;
    if (code == FL_DT_STATUS_ERROR && description)
        s->status_msg = strdup(description);
}

fl_dt_status_t fl_dt_span_status(const fl_dt_span_t *s)
{
    return s ? (fl_dt_status_t)s->status : FL_DT_STATUS_UNSET;
}

void fl_dt_span_set_name(fl_dt_span_t *s, const char *name)
{
    if (!s || !name)
        return;
    char *n = strdup(name);
    if (n) {
        free(s->name);
        s->name = n;
    }
}

/* ---------------------------------------------------------------- lifecycle */

fl_dt_span_t *fl_dt_span_start_at(fl_dt_tracer_t *t, const char *name, fl_dt_kind_t kind,
                                  const fl_dt_context_t *parent, uint64_t start_ns)
{
    fl_dt_span_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->tracer = t;
    s->name = xstrdup(name);
    if (!s->name) {
        free(s);
        return NULL;
    }
    s->kind = kind;
    s->start_ns = start_ns;
    if (parent && parent->valid) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_span_id, parent->span_id, 8);
        s->has_parent = 1;
        s->parent_remote = parent->remote;
        s->ctx.flags = parent->flags;
        memcpy(s->ctx.tracestate, parent->tracestate, sizeof(s->ctx.tracestate));
    } else {
        fl_dt_random_id(s->ctx.trace_id, 16);
        s->ctx.flags = FL_DT_FLAG_SAMPLED;
    }
    fl_dt_random_id(s->ctx.span_id, 8);
    s->ctx.valid = 1;
    s->ctx.remote = 0;
    /* ParentBased(AlwaysOn): follow the parent's sampling decision. */
    s->recording = (s->ctx.flags & FL_DT_FLAG_SAMPLED) != 0;
    if (t)
        atomic_fetch_add(&t->spans_started, 1);
    return s;
}

fl_dt_span_t *fl_dt_span_start(fl_dt_tracer_t *t, const char *name, fl_dt_kind_t kind,
                               const fl_dt_context_t *parent)
{
    return fl_dt_span_start_at(t, name, kind, parent, fl__dt_wall_ns());
}

const fl_dt_context_t *fl_dt_span_context(const fl_dt_span_t *s)
{
    static const fl_dt_context_t invalid;
    return s ? &s->ctx : &invalid;
}

size_t fl_dt_span_traceparent(const fl_dt_span_t *s, char *out)
{
    return fl_dt_traceparent_format(fl_dt_span_context(s), out);
}

void fl__dt_span_free(fl_dt_span_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_attrs; i++)
        attr_clear(&s->attrs[i]);
    free(s->attrs);
    for (size_t i = 0; i < s->n_events; i++) {
        free(s->events[i].name);
        fl_dt_attrs_free(s->events[i].attrs, s->events[i].n_attrs);
    }
    free(s->events);
    free(s->status_msg);
    free(s->name);
    free(s);
}

void fl_dt_span_end_at(fl_dt_span_t *s, uint64_t end_ns)
{
    if (!s)
        return;
    s->end_ns = end_ns < s->start_ns ? s->start_ns : end_ns;
    if (!s->recording || !s->tracer) {
        fl__dt_span_free(s);
        return;
    }
    fl__dt_processor_push(s->tracer, s);
}

void fl_dt_span_end(fl_dt_span_t *s)
{
    fl_dt_span_end_at(s, fl__dt_wall_ns());
}

/* ---------------------------------------------------------------- configuration */

static int env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (errno || *e || x < 0 || x > 1000000000) {
        fprintf(stderr, "demotrace: ignoring %s=%s (not a non-negative integer)\n", name, v);
        return 0;
    }
    *out = (int)x;
    return 1;
}

int fl_dt_config_from_env(fl_dt_config_t *cfg, fl_dt_env_t *env, const char *default_service)
{
    const char *v;
    char err[256];
    if (fl_dt_resource_attrs_parse(getenv("OTEL_RESOURCE_ATTRIBUTES"), &env->attrs, &env->n_attrs,
                                   err, sizeof(err)) != 0)
        fprintf(stderr, "demotrace: ignoring OTEL_RESOURCE_ATTRIBUTES: %s\n", err);
    cfg->resource_attrs = env->attrs;
    cfg->n_resource_attrs = env->n_attrs;

    const char *svc = NULL;
    for (size_t i = 0; i < env->n_attrs; i++)
        if (strcmp(env->attrs[i].key, "service.name") == 0)
            svc = env->attrs[i].v.s;
    if ((v = getenv("OTEL_SERVICE_NAME")) && *v)
        svc = v;
    if (!svc)
        svc = cfg->service_name ? cfg->service_name : default_service;
    snprintf(env->service_name, sizeof(env->service_name), "%s", svc ? svc : "unknown_service");
    cfg->service_name = env->service_name;

    if ((v = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && *v) {
        snprintf(env->endpoint, sizeof(env->endpoint), "%s", v);
        cfg->endpoint = env->endpoint;
    } else if ((v = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) && *v) {
        if (fl_dt_traces_url(v, env->endpoint, sizeof(env->endpoint)) == 0)
            cfg->endpoint = env->endpoint;
    }
    if ((v = getenv("OTEL_SDK_DISABLED")) && strcasecmp(v, "true") == 0)
        cfg->endpoint = "none";
    if ((v = getenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")) ||
        (v = getenv("OTEL_EXPORTER_OTLP_COMPRESSION")))
        cfg->no_gzip = strcasecmp(v, "none") == 0;
    int x;
    if (env_int("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &x) ||
        env_int("OTEL_EXPORTER_OTLP_TIMEOUT", &x))
        cfg->export_timeout_ms = x;
    if (env_int("OTEL_BSP_MAX_QUEUE_SIZE", &x))
        cfg->max_queue = (size_t)x;
    if (env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &x))
        cfg->max_batch = (size_t)x;
    if (env_int("OTEL_BSP_SCHEDULE_DELAY", &x))
        cfg->schedule_delay_ms = x;
    return 0;
}

void fl_dt_env_dispose(fl_dt_env_t *env)
{
    fl_dt_attrs_free(env->attrs, env->n_attrs);
    env->attrs = NULL;
    env->n_attrs = 0;
}

/* ---------------------------------------------------------------- tracer */

static int add_resource(fl_dt_tracer_t *t, const char *key, const char *val, int64_t ival,
                        int is_int)
{
    for (size_t i = 0; i < t->n_resource; i++)
        if (strcmp(t->resource[i].key, key) == 0)
            return 0; /* first one wins: service.name is added first */
    fl_dt_attr_t *na = realloc(t->resource, (t->n_resource + 1) * sizeof(*na));
    if (!na)
        return -1;
    t->resource = na;
    fl_dt_attr_t a = {.key = (char *)key, .type = is_int ? FL_DT_ATTR_INT : FL_DT_ATTR_STRING};
    if (is_int)
        a.v.i = ival;
    else
        a.v.s = (char *)val;
    if (attr_copy(&t->resource[t->n_resource], &a) != 0)
        return -1;
    t->n_resource++;
    return 0;
}

static int pos_or(int v, int dflt)
{
    return v > 0 ? v : dflt;
}

fl_dt_tracer_t *fl_dt_tracer_new(const fl_dt_config_t *cfg)
{
    fl_dt_tracer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* every timed wait uses the monotonic clock */
    pthread_cond_init(&t->cv, &ca);
    pthread_cond_init(&t->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    const char *svc =
        cfg->service_name && *cfg->service_name ? cfg->service_name : "unknown_service";
    t->service_name = strdup(svc);
    t->max_queue = cfg->max_queue ? cfg->max_queue : 2048;
    t->max_batch = cfg->max_batch ? cfg->max_batch : 512;
    if (t->max_batch > t->max_queue)
        t->max_batch = t->max_queue;
    t->schedule_delay_ms = pos_or(cfg->schedule_delay_ms, 1000);
    t->export_timeout_ms = pos_or(cfg->export_timeout_ms, 10000);
    t->retry_initial_ms = pos_or(cfg->retry_initial_ms, 500);
    t->retry_max_ms = pos_or(cfg->retry_max_ms, 5000);
    t->retry_max_elapsed_ms = pos_or(cfg->retry_max_elapsed_ms, 15000);
    t->gzip = !cfg->no_gzip;
    t->quiet = cfg->quiet;
    atomic_store(&t->last_status, 0);
    t->ring = calloc(t->max_queue, sizeof(*t->ring));
    if (!t->service_name || !t->ring)
        goto fail;

    const char *ep = cfg->endpoint ? cfg->endpoint : "http://localhost:4318/v1/traces";
    if (*ep && strcmp(ep, "none") != 0) {
        if (fl__dt_url_parse(ep, &t->url) != 0) {
            fprintf(stderr, "demotrace: cannot parse the OTLP endpoint '%s'\n", ep);
            goto fail;
        }
        t->export_enabled = 1;
    }

    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    if (add_resource(t, "service.name", t->service_name, 0, 0) != 0)
        goto fail;
    if (cfg->service_version && add_resource(t, "service.version", cfg->service_version, 0, 0))
        goto fail;
    for (size_t i = 0; i < cfg->n_resource_attrs; i++) {
        const fl_dt_attr_t *a = &cfg->resource_attrs[i];
        fl_dt_attr_t *na = realloc(t->resource, (t->n_resource + 1) * sizeof(*na));
        if (!na)
            goto fail;
        t->resource = na;
        int dup = 0;
        for (size_t j = 0; j < t->n_resource; j++)
            dup |= strcmp(t->resource[j].key, a->key) == 0;
        if (dup)
            continue;
        if (attr_copy(&t->resource[t->n_resource], a) != 0)
            goto fail;
        t->n_resource++;
    }
    if (add_resource(t, "telemetry.sdk.name", "faultline-demotrace", 0, 0) ||
        add_resource(t, "telemetry.sdk.language", "c", 0, 0) ||
        add_resource(t, "telemetry.sdk.version", FL_VERSION, 0, 0) ||
        add_resource(t, "process.pid", NULL, (int64_t)getpid(), 1) ||
        (host[0] && add_resource(t, "host.name", host, 0, 0)))
        goto fail;

    if (fl__dt_exporter_start(t) != 0)
        goto fail;
    return t;
fail:
    fl_dt_attrs_free(t->resource, t->n_resource);
    free(t->ring);
    free(t->service_name);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->done_cv);
    free(t);
    return NULL;
}

const char *fl_dt_tracer_service(const fl_dt_tracer_t *t)
{
    return t ? t->service_name : "unknown_service";
}

void fl_dt_tracer_stats(fl_dt_tracer_t *t, fl_dt_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    out->spans_started = atomic_load(&t->spans_started);
    out->spans_ended = atomic_load(&t->spans_ended);
    out->spans_dropped = atomic_load(&t->spans_dropped);
    out->spans_exported = atomic_load(&t->spans_exported);
    out->spans_failed = atomic_load(&t->spans_failed);
    out->export_requests = atomic_load(&t->export_requests);
    out->export_retries = atomic_load(&t->export_retries);
    out->last_retry_after_ms = atomic_load(&t->last_retry_after_ms);
    out->last_status = atomic_load(&t->last_status);
}
