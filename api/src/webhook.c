/* SPDX-License-Identifier: Apache-2.0 */
/* faultline api: incident notifications (Alertmanager webhook v4, Slack incoming webhook or
 * the incident JSON) sent from one sender thread through a bounded queue, with retries and
 * backoff on 5xx / 429 (Retry-After honoured), so analysis and ingest never wait on a peer. */
#include <faultline/api.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_QUEUE 256
#define DEFAULT_ATTEMPTS 5
#define DEFAULT_BACKOFF_NS 1000000000ull
#define MAX_BACKOFF_NS (30ull * 1000000000ull)
#define MAX_RETRY_AFTER_S 60
#define SEEN_MAX 1024 /* incidents whose notification state is remembered */

typedef struct target {
    char *url, *host, *path;
    int port, tls;
    fl_http_client_t *client; /* sender thread only */
} target_t;

typedef struct note {
    char *body;
    size_t len;
    char id[24];
    const char *event;
} note_t;

typedef struct seen {
    char id[24];
    int severity;
    int resolved;
} seen_t;

struct fl_webhook {
    target_t *targets;
    size_t n_targets;
    fl_webhook_format_t format;
    size_t max_queue;
    int max_attempts;
    uint64_t backoff_ns;
    int timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    uint64_t stop_deadline_mono;
    char base[256];
    note_t *q; /* ring */
    size_t q_head, q_len;
    seen_t seen[SEEN_MAX];
    size_t n_seen, seen_next;

    /* figures for /aiops/status (under mu) */
    uint64_t queued, sent, failed, retries, dropped;
    char last_error[192];
};

static int webhook_start(fl_webhook_t *wh);

int fl_webhook_format_parse(const char *s)
{
    if (!s)
        return 0;
    if (!strcmp(s, "alertmanager"))
        return FL_WEBHOOK_ALERTMANAGER;
    if (!strcmp(s, "slack"))
        return FL_WEBHOOK_SLACK;
    if (!strcmp(s, "json"))
        return FL_WEBHOOK_JSON;
    return 0;
}

static const char *format_name(fl_webhook_format_t f)
{
    return f == FL_WEBHOOK_SLACK ? "slack" : f == FL_WEBHOOK_JSON ? "json" : "alertmanager";
}

/* http[s]://host[:port][/path]; IPv6 literals in brackets. */
static int parse_url(const char *url, target_t *t)
{
    const char *p;

    if (!strncmp(url, "http://", 7)) {
        p = url + 7;
        t->port = 80;
    } else if (!strncmp(url, "https://", 8)) {
        p = url + 8;
        t->port = 443;
        t->tls = 1;
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *hs = p, *colon = NULL;
    if (hl && *p == '[') {
        const char *rb = memchr(p, ']', hl);
        if (!rb)
            return -1;
        hs = p + 1;
        if (rb + 1 < p + hl) {
            if (rb[1] != ':')
                return -1;
            colon = rb + 1;
        }
        t->host = strndup(hs, (size_t)(rb - hs));
    } else {
        colon = memchr(p, ':', hl);
        t->host = strndup(p, colon ? (size_t)(colon - p) : hl);
    }
    if (!t->host || !*t->host)
        return -1;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != p + hl || port < 1 || port > 65535)
            return -1;
        t->port = (int)port;
    }
    t->path = strdup(slash ? slash : "/");
    t->url = strdup(url);
    return t->path && t->url ? 0 : -1;
}

fl_webhook_t *fl_webhook_new(const fl_webhook_opts_t *o, char *err, size_t errlen)
{
    fl_webhook_t *wh = calloc(1, sizeof(*wh));
    pthread_condattr_t ca;

    if (!wh) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wh->format = o->format ? o->format : FL_WEBHOOK_ALERTMANAGER;
    wh->max_queue = o->max_queue ? o->max_queue : DEFAULT_QUEUE;
    wh->max_attempts = o->max_attempts > 0 ? o->max_attempts : DEFAULT_ATTEMPTS;
    wh->backoff_ns = o->backoff_ns ? o->backoff_ns : DEFAULT_BACKOFF_NS;
    wh->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    pthread_mutex_init(&wh->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wh->cv, &ca);
    pthread_condattr_destroy(&ca);
    wh->targets = calloc(o->n_urls ? o->n_urls : 1, sizeof(target_t));
    wh->q = calloc(wh->max_queue, sizeof(note_t));
    if (!wh->targets || !wh->q) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->n_urls; i++) {
        if (parse_url(o->urls[i], &wh->targets[i]) != 0) {
            snprintf(err, errlen, "--webhook: %s is not an http:// or https:// URL", o->urls[i]);
            wh->n_targets = i + 1;
            goto fail;
        }
        wh->n_targets = i + 1;
    }
    snprintf(wh->base, sizeof(wh->base), "http://127.0.0.1:8080");
    if (wh->n_targets && webhook_start(wh) != 0) {
        snprintf(err, errlen, "cannot start the webhook thread: %s", strerror(errno));
        goto fail;
    }
    return wh;
fail:
    fl_webhook_free(wh, 0);
    return NULL;
}

void fl_webhook_set_base_url(fl_webhook_t *wh, const char *base)
{
    if (!wh)
        return;
    pthread_mutex_lock(&wh->mu);
    snprintf(wh->base, sizeof(wh->base), "%s", base);
    pthread_mutex_unlock(&wh->mu);
}

/* ---------------------------------------------------------------- payloads */

static void kv(fl_jw_t *w, const char *k, const char *v)
{
    fl_jw_key(w, k);
    fl_jw_str(w, v);
}

static const char *example_trace(const fl_incident_t *x, char out[33])
{
    const uint8_t *id = NULL;

    if (x->n_candidates && x->root_cause.n_trace_ids)
        id = x->root_cause.trace_ids[0];
    else if (x->n_trace_ids)
        id = x->trace_ids[0];
    if (!id)
        return NULL;
    fl_hex_encode(id, 16, out);
    return out;
}

static void describe(const fl_incident_t *x, const char *trace, fl_buf_t *b)
{
    if (x->n_candidates)
        fl_buf_printf(b, "Root cause: %s %s (%s): %s.", x->root_cause.service,
                      x->root_cause.operation ? x->root_cause.operation : "",
                      fl_anomaly_kind_name(x->root_cause.kind),
                      x->root_cause.issue ? x->root_cause.issue : "");
    else
        fl_buf_puts(b, "Root cause: not yet ranked.");
    if (x->n_affected_endpoints) {
        fl_buf_puts(b, " Affected endpoints:");
        for (size_t i = 0; i < x->n_affected_endpoints; i++)
            fl_buf_printf(b, "%s %s", i ? "," : "", x->affected_endpoints[i]);
        fl_buf_putc(b, '.');
    }
    fl_buf_printf(b, " Failed requests: %llu, blast radius: %u.",
                  (unsigned long long)x->failed_requests, x->blast_radius);
    if (trace)
        fl_buf_printf(b, " Example trace: %s.", trace);
}

static void alertmanager(fl_jw_t *w, const fl_incident_t *x, int resolved, const char *link,
                         const char *base, const char *trace, const char *desc)
{
    char t[40];
    const char *status = resolved ? "resolved" : "firing";
    const char *svc = x->n_candidates ? x->root_cause.service : "";
    const char *sev = fl_severity_name(x->severity);

    fl_jw_obj_begin(w);
    kv(w, "version", "4");
    kv(w, "groupKey", x->id);
    fl_jw_key(w, "truncatedAlerts");
    fl_jw_uint(w, 0);
    kv(w, "status", status);
    kv(w, "receiver", "faultline");
    fl_jw_key(w, "groupLabels");
    fl_jw_obj_begin(w);
    kv(w, "incident_id", x->id);
    fl_jw_obj_end(w);
    for (int pass = 0; pass < 2; pass++) {
        fl_jw_key(w, pass ? "alerts" : "commonLabels");
        if (pass) {
            fl_jw_arr_begin(w);
            fl_jw_obj_begin(w);
            kv(w, "status", status);
            fl_jw_key(w, "labels");
        }
        fl_jw_obj_begin(w);
        kv(w, "alertname", "FaultlineIncident");
        kv(w, "service", svc);
        kv(w, "severity", sev);
        kv(w, "incident_id", x->id);
        if (pass && x->n_candidates && x->root_cause.operation)
            kv(w, "operation", x->root_cause.operation);
        fl_jw_obj_end(w);
        fl_jw_key(w, pass ? "annotations" : "commonAnnotations");
        fl_jw_obj_begin(w);
        kv(w, "summary", x->title);
        kv(w, "description", desc);
        if (pass) {
            kv(w, "root_cause", svc);
            kv(w, "trace_id", trace);
        }
        fl_jw_obj_end(w);
        if (pass) {
            kv(w, "startsAt", fl_time_format(x->first_detected_ns, t));
            kv(w, "endsAt",
               resolved && x->resolved_ns ? fl_time_format(x->resolved_ns, t)
                                          : "0001-01-01T00:00:00Z");
            kv(w, "generatorURL", link);
            kv(w, "fingerprint", x->id + 4);
            fl_jw_obj_end(w);
            fl_jw_arr_end(w);
        }
    }
    kv(w, "externalURL", base);
    kv(w, "notification_reason", resolved ? "resolved" : "firing");
    fl_jw_obj_end(w);
}

static void slack(fl_jw_t *w, const fl_incident_t *x, const char *event, const char *link,
                  const char *trace, const char *desc, fl_buf_t *tmp)
{
    const char *tag = !strcmp(event, "resolved")    ? "RESOLVED"
                      : !strcmp(event, "escalated") ? "ESCALATED"
                                                    : "FIRING";

    fl_buf_reset(tmp);
    fl_buf_printf(tmp, "[%s] %s %s (%s)", tag, x->id, x->title, fl_severity_name(x->severity));
    fl_jw_obj_begin(w);
    kv(w, "text", (const char *)tmp->data);
    fl_buf_reset(tmp);
    fl_buf_printf(tmp, "*%s* <%s|%s> severity *%s*\n", tag, link, x->id,
                  fl_severity_name(x->severity));
    if (x->n_candidates)
        fl_buf_printf(tmp, "Likely root cause: `%s` %s: %s\n", x->root_cause.service,
                      x->root_cause.operation ? x->root_cause.operation : "",
                      x->root_cause.issue ? x->root_cause.issue : "");
    fl_buf_puts(tmp, desc);
    if (trace)
        fl_buf_printf(tmp, "\nExample trace: `%s`", trace);
    fl_jw_key(w, "blocks");
    fl_jw_arr_begin(w);
    fl_jw_obj_begin(w);
    kv(w, "type", "section");
    fl_jw_key(w, "text");
    fl_jw_obj_begin(w);
    kv(w, "type", "mrkdwn");
    kv(w, "text", (const char *)tmp->data);
    fl_jw_obj_end(w);
    fl_jw_obj_end(w);
    fl_jw_arr_end(w);
    fl_jw_obj_end(w);
}

static int build(fl_webhook_t *wh, const fl_incident_t *x, const char *event, const char *base,
                 fl_buf_t *out)
{
    char trace_buf[33], link[512];
    const char *trace = example_trace(x, trace_buf);
    fl_buf_t desc, tmp;
    fl_jw_t w;

    snprintf(link, sizeof(link), "%s/aiops/incidents/%s", base, x->id);
    fl_buf_init(&desc, 0);
    fl_buf_init(&tmp, 0);
    describe(x, trace, &desc);
    fl_buf_putc(&desc, 0);
    fl_jw_init(&w, out);
    if (wh->format == FL_WEBHOOK_ALERTMANAGER) {
        alertmanager(&w, x, !strcmp(event, "resolved"), link, base, trace, (const char *)desc.data);
    } else if (wh->format == FL_WEBHOOK_SLACK) {
        slack(&w, x, event, link, trace, (const char *)desc.data, &tmp);
    } else {
        fl_jw_obj_begin(&w);
        kv(&w, "event", event);
        kv(&w, "url", link);
        fl_jw_key(&w, "incident");
        fl_api_write_incident(&w, x);
        fl_jw_obj_end(&w);
    }
    fl_buf_dispose(&desc);
    fl_buf_dispose(&tmp);
    return out->len ? FL_OK : FL_ERR_NOMEM;
}

/* ---------------------------------------------------------------- queue */

static seen_t *seen_find(fl_webhook_t *wh, const char *id)
{
    for (size_t i = 0; i < wh->n_seen; i++)
        if (!strcmp(wh->seen[i].id, id))
            return &wh->seen[i];
    return NULL;
}

static seen_t *seen_add(fl_webhook_t *wh, const char *id)
{
    seen_t *s;

    if (wh->n_seen < SEEN_MAX) {
        s = &wh->seen[wh->n_seen++];
    } else { /* the oldest entry goes: a very old incident may be announced again */
        s = &wh->seen[wh->seen_next];
        wh->seen_next = (wh->seen_next + 1) % SEEN_MAX;
    }
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    return s;
}

void fl_webhook_incident(fl_webhook_t *wh, const fl_incident_t *x)
{
    const char *event = NULL;
    char base[256];

    if (!wh || !wh->n_targets || !x)
        return;
    int resolved = x->status == FL_INC_RESOLVED || x->status == FL_INC_CLOSED;
    pthread_mutex_lock(&wh->mu);
    seen_t *s = seen_find(wh, x->id);
    if (!s) {
        if (!resolved) {
            event = "opened";
            s = seen_add(wh, x->id);
            s->severity = (int)x->severity;
        }
    } else if (resolved) {
        if (!s->resolved) {
            event = "resolved";
            s->resolved = 1;
        }
    } else if ((int)x->severity > s->severity && !s->resolved) {
        event = "escalated";
        s->severity = (int)x->severity;
    }
    snprintf(base, sizeof(base), "%s", wh->base);
    pthread_mutex_unlock(&wh->mu);
    if (!event)
        return;

    fl_buf_t body;
    fl_buf_init(&body, 0);
    if (build(wh, x, event, base, &body) != FL_OK) {
        fl_buf_dispose(&body);
        return;
    }
    note_t n = {0};
    n.len = body.len;
    n.body = (char *)fl_buf_take(&body, &n.len);
    snprintf(n.id, sizeof(n.id), "%s", x->id);
    n.event = event;
    fl_buf_dispose(&body);
    if (!n.body)
        return;
    pthread_mutex_lock(&wh->mu);
    if (wh->q_len == wh->max_queue) { /* full: drop the oldest, never wait */
        free(wh->q[wh->q_head].body);
        wh->q_head = (wh->q_head + 1) % wh->max_queue;
        wh->q_len--;
        wh->dropped++;
        fl_log(FL_LOG_WARN, "webhook", "queue full, dropped the oldest notification");
    }
    wh->q[(wh->q_head + wh->q_len) % wh->max_queue] = n;
    wh->q_len++;
    wh->queued++;
    pthread_cond_signal(&wh->cv);
    pthread_mutex_unlock(&wh->mu);
}

/* ---------------------------------------------------------------- sender thread */

/* Wait until deadline (monotonic) unless stopping; returns 1 when woken by stop. Under mu. */
static int wait_until(fl_webhook_t *wh, uint64_t deadline)
{
    while (!wh->stop && fl_time_mono_ns() < deadline) {
        struct timespec ts = {(time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull)};
        pthread_cond_timedwait(&wh->cv, &wh->mu, &ts);
    }
    return wh->stop;
}

/* One POST; returns 0 sent, 1 retryable (with *retry_after_ns when the peer asked), -1 not. */
static int post(fl_webhook_t *wh, target_t *t, const note_t *n, uint64_t *retry_after_ns, char *why,
                size_t whylen)
{
    fl_http_response_t resp;
    static const fl_net_header_t hdr[] = {{"content-type", "application/json"},
                                          {"user-agent", "faultline-webhook"}};

    *retry_after_ns = 0;
    if (!t->client) {
        fl_http_client_opts_t co = {0};
        co.host = t->host;
        co.port = t->port;
        co.tls = t->tls;
        co.timeout_ms = wh->timeout_ms;
        co.max_response = 1 << 20;
        if (!(t->client = fl_http_client_new(&co))) {
            snprintf(why, whylen, "cannot create a client");
            return 1;
        }
    }
    int rc = fl_http_client_request(t->client, "POST", t->path, hdr, 2, n->body, n->len, &resp);
    if (rc != FL_OK) {
        snprintf(why, whylen, "%s", fl_strerror(rc));
        /* A fresh connection next time: the old one may be half dead. */
        fl_http_client_free(t->client);
        t->client = NULL;
        return 1;
    }
    int st = resp.status, out;
    if (st >= 200 && st < 300) {
        out = 0;
    } else {
        char ra[32];
        snprintf(why, whylen, "HTTP %d", st);
        out = (st >= 500 || st == 429) ? 1 : -1;
        if (out == 1 && fl_http_response_header(&resp, "retry-after", ra, sizeof(ra))) {
            long s = strtol(ra, NULL, 10);
            if (s > 0)
                *retry_after_ns =
                    (uint64_t)(s > MAX_RETRY_AFTER_S ? MAX_RETRY_AFTER_S : s) * 1000000000ull;
        }
    }
    fl_http_response_dispose(&resp);
    return out;
}

static void deliver(fl_webhook_t *wh, const note_t *n)
{
    for (size_t i = 0; i < wh->n_targets; i++) {
        target_t *t = &wh->targets[i];
        uint64_t backoff = wh->backoff_ns, ra;
        char why[128] = "";
        int r = 1;
        for (int attempt = 1; attempt <= wh->max_attempts; attempt++) {
            r = post(wh, t, n, &ra, why, sizeof(why));
            if (r <= 0)
                break;
            pthread_mutex_lock(&wh->mu);
            int stopping = wh->stop && fl_time_mono_ns() >= wh->stop_deadline_mono;
            if (attempt < wh->max_attempts && !stopping) {
                wh->retries++;
                uint64_t delay = ra ? ra : backoff;
                uint64_t until = fl_time_mono_ns() + delay;
                if (wh->stop && until > wh->stop_deadline_mono)
                    until = wh->stop_deadline_mono;
                fl_log(FL_LOG_INFO, "webhook",
                       "retrying url=\"%s\" incident=%s event=%s attempt=%d error=\"%s\" "
                       "delay_ms=%llu",
                       t->url, n->id, n->event, attempt, why,
                       (unsigned long long)(delay / 1000000));
                if (wait_until(wh, until) && fl_time_mono_ns() >= wh->stop_deadline_mono)
                    attempt = wh->max_attempts; /* stopping: give up */
            } else {
                attempt = wh->max_attempts;
            }
            pthread_mutex_unlock(&wh->mu);
            backoff = backoff * 2 > MAX_BACKOFF_NS ? MAX_BACKOFF_NS : backoff * 2;
        }
        pthread_mutex_lock(&wh->mu);
        if (r == 0) {
            wh->sent++;
        } else {
            wh->failed++;
            snprintf(wh->last_error, sizeof(wh->last_error), "%s: %s", t->url, why);
        }
        pthread_mutex_unlock(&wh->mu);
        if (r == 0)
            fl_log(FL_LOG_DEBUG, "webhook", "sent url=\"%s\" incident=%s event=%s", t->url, n->id,
                   n->event);
        else
            fl_log(FL_LOG_WARN, "webhook",
                   "notification failed url=\"%s\" incident=%s event=%s error=\"%s\"", t->url,
                   n->id, n->event, why);
    }
}

static void *sender_main(void *arg)
{
    fl_webhook_t *wh = arg;

    pthread_mutex_lock(&wh->mu);
    for (;;) {
        while (!wh->q_len && !wh->stop)
            pthread_cond_wait(&wh->cv, &wh->mu);
        if (!wh->q_len || (wh->stop && fl_time_mono_ns() >= wh->stop_deadline_mono))
            break;
        note_t n = wh->q[wh->q_head];
        wh->q_head = (wh->q_head + 1) % wh->max_queue;
        wh->q_len--;
        pthread_mutex_unlock(&wh->mu);
        deliver(wh, &n);
        free(n.body);
        pthread_mutex_lock(&wh->mu);
    }
    pthread_mutex_unlock(&wh->mu);
    return NULL;
}

static int webhook_start(fl_webhook_t *wh)
{
    if (pthread_create(&wh->thread, NULL, sender_main, wh) != 0)
        return -1;
    wh->started = 1;
    return 0;
}

void fl_webhook_status(fl_webhook_t *wh, fl_jw_t *w)
{
    fl_jw_key(w, "webhooks");
    if (!wh) {
        fl_jw_null(w);
        return;
    }
    pthread_mutex_lock(&wh->mu);
    fl_jw_obj_begin(w);
    kv(w, "format", format_name(wh->format));
    fl_jw_key(w, "urls");
    fl_jw_uint(w, wh->n_targets);
    const struct {
        const char *k;
        uint64_t v;
    } f[] = {{"queued", wh->queued}, {"queue_depth", wh->q_len}, {"sent", wh->sent},
             {"failed", wh->failed}, {"retries", wh->retries},   {"dropped", wh->dropped}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        fl_jw_key(w, f[i].k);
        fl_jw_uint(w, f[i].v);
    }
    kv(w, "last_error", wh->last_error[0] ? wh->last_error : NULL);
    fl_jw_obj_end(w);
    pthread_mutex_unlock(&wh->mu);
}

void fl_webhook_free(fl_webhook_t *wh, int timeout_ms)
{
    if (!wh)
        return;
    if (wh->started) {
        pthread_mutex_lock(&wh->mu);
        wh->stop = 1;
        wh->stop_deadline_mono =
            fl_time_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
        pthread_cond_broadcast(&wh->cv);
        pthread_mutex_unlock(&wh->mu);
        pthread_join(wh->thread, NULL);
    }
    for (size_t i = 0; i < wh->q_len; i++)
        free(wh->q[(wh->q_head + i) % wh->max_queue].body);
    for (size_t i = 0; i < wh->n_targets; i++) {
        fl_http_client_free(wh->targets[i].client);
        free(wh->targets[i].url);
        free(wh->targets[i].host);
        free(wh->targets[i].path);
    }
    free(wh->targets);
    free(wh->q);
    pthread_mutex_destroy(&wh->mu);
    pthread_cond_destroy(&wh->cv);
    free(wh);
}
