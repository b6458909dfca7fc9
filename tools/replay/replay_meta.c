/* SPDX-License-Identifier: Apache-2.0 */
/* fl_replaylib: reading NAME.headers.json (fixtures and --capture-dir files) into what the
 * replay sends: method, path, the end-to-end headers, and the body's format and encoding. */
#include "replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define MAX_HEADERS_JSON ((size_t)4 << 20)
#define MAX_REPLAY_HEADERS 64

int fl_replay_header_is_hop(const char *name)
{
    static const char *const hop[] = {
        "host", "connection", "keep-alive",       "transfer-encoding", "content-length",
        "te",   "upgrade",    "proxy-connection", "trailer",           "http2-settings"};
    if (!name || name[0] == ':' || name[0] == '\0')
        return 1;
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (!strcasecmp(name, hop[i]))
            return 1;
    return 0;
}

int fl_replay_read_file(const char *path, size_t max, fl_buf_t *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    uint8_t chunk[65536];
    size_t n;
    int rc = FL_OK;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return FL_ERR_IO;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > max) {
            snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
            rc = FL_ERR_LIMIT;
            goto out;
        }
        if (fl_buf_append(out, chunk, n) != FL_OK) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = FL_ERR_NOMEM;
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = FL_ERR_IO;
    }
out:
    fclose(f);
    return rc;
}

void fl_replay_meta_dispose(fl_replay_meta_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_headers; i++) {
        free((char *)m->headers[i].name);
        free((char *)m->headers[i].value);
    }
    free(m->headers);
    free(m->method);
    free(m->path);
    free(m->protocol);
    memset(m, 0, sizeof(*m));
}

/* Header values in captures are strings; numbers (":status": 200) are stringified. */
static int value_text(json_t *v, char *buf, size_t buflen, const char **out)
{
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return 0;
    }
    if (json_is_integer(v)) {
        snprintf(buf, buflen, "%lld", (long long)json_integer_value(v));
        *out = buf;
        return 0;
    }
    return -1;
}

static int add_header(fl_replay_meta_t *m, const char *name, json_t *jv)
{
    char num[32];
    const char *v;
    char *n, *val;

    if (value_text(jv, num, sizeof(num), &v) != 0 || fl_replay_header_is_hop(name))
        return FL_OK; /* non-text values and hop-by-hop headers are not replayed */
    for (size_t i = 0; i < m->n_headers; i++)
        if (!strcasecmp(m->headers[i].name, name))
            return FL_OK; /* first one wins; rawHeaders repeats what headers said */
    if (m->n_headers == MAX_REPLAY_HEADERS)
        return FL_ERR_LIMIT;
    n = strdup(name);
    val = strdup(v);
    if (!n || !val) {
        free(n);
        free(val);
        return FL_ERR_NOMEM;
    }
    for (char *p = n; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    m->headers[m->n_headers].name = n;
    m->headers[m->n_headers].value = val;
    m->n_headers++;
    return FL_OK;
}

static int add_headers(fl_replay_meta_t *m, json_t *h)
{
    int rc = FL_OK;

    if (json_is_object(h)) {
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            if ((rc = add_header(m, k, v)) != FL_OK)
                return rc;
        }
    } else if (json_is_array(h)) {
        size_t i;
        json_t *e;
        json_array_foreach(h, i, e)
        {
            json_t *jn = NULL, *jv = NULL;
            if (json_is_array(e) && json_array_size(e) == 2) {
                jn = json_array_get(e, 0);
                jv = json_array_get(e, 1);
            } else if (json_is_object(e)) {
                jn = json_object_get(e, "name");
                jv = json_object_get(e, "value");
            }
            if (!json_is_string(jn))
                return FL_ERR_DECODE;
            if ((rc = add_header(m, json_string_value(jn), jv)) != FL_OK)
                return rc;
        }
    } else if (h) {
        return FL_ERR_DECODE;
    }
    return rc;
}

static const char *header_get(const fl_replay_meta_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (!strcasecmp(m->headers[i].name, name))
            return m->headers[i].value;
    return NULL;
}

static int starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static char *dup_str(json_t *root, const char *key, const char *dflt)
{
    json_t *v = json_object_get(root, key);
    return strdup(json_is_string(v) ? json_string_value(v) : dflt);
}

int fl_replay_meta_parse(const char *json, size_t len, fl_replay_meta_t *m, char *err,
                         size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    const char *ct, *enc;
    int rc = FL_OK;

    memset(m, 0, sizeof(*m));
    if (!root || !json_is_object(root)) {
        snprintf(err, errlen, "not a JSON object (line %d: %s)", root ? 1 : jerr.line,
                 root ? "top level is not an object" : jerr.text);
        rc = FL_ERR_DECODE;
        goto out;
    }
    if (!json_is_string(json_object_get(root, "path"))) {
        snprintf(err, errlen, "no \"path\" string");
        rc = FL_ERR_DECODE;
        goto out;
    }
    m->method = dup_str(root, "method", "POST");
    m->path = dup_str(root, "path", "");
    m->protocol = dup_str(root, "protocol", "");
    m->headers = calloc(MAX_REPLAY_HEADERS, sizeof(*m->headers));
    if (!m->method || !m->path || !m->protocol || !m->headers) {
        snprintf(err, errlen, "out of memory");
        rc = FL_ERR_NOMEM;
        goto out;
    }
    rc = add_headers(m, json_object_get(root, "headers"));
    if (rc == FL_OK)
        rc = add_headers(m, json_object_get(root, "rawHeaders"));
    if (rc != FL_OK) {
        snprintf(err, errlen, "%s",
                 rc == FL_ERR_DECODE  ? "\"headers\" is neither an object nor a list of pairs"
                 : rc == FL_ERR_LIMIT ? "more than 64 headers"
                                      : "out of memory");
        goto out;
    }
    ct = header_get(m, "content-type");
    m->content_type = ct ? ct : "";
    m->grpc =
        starts_with_ci(m->content_type, "application/grpc") || !strcasecmp(m->protocol, "grpc");
    enc = header_get(m, m->grpc ? "grpc-encoding" : "content-encoding");
    m->encoding = enc ? enc : "";
    m->format = strcasestr(m->content_type, "json") ? FL_REPLAY_JSON : FL_REPLAY_PROTOBUF;
    if (strstr(m->path, "/v1/traces") || strstr(m->path, "TraceService/"))
        m->signal = FL_REPLAY_TRACES;
    else if (strstr(m->path, "/v1/logs") || strstr(m->path, "LogsService/"))
        m->signal = FL_REPLAY_LOGS;
    else if (strstr(m->path, "/v1/metrics") || strstr(m->path, "MetricsService/"))
        m->signal = FL_REPLAY_METRICS;
    else
        m->signal = FL_REPLAY_OTHER;
out:
    json_decref(root);
    if (rc != FL_OK)
        fl_replay_meta_dispose(m);
    return rc;
}

int fl_replay_meta_load(const char *headers_json_path, fl_replay_meta_t *m, char *err,
                        size_t errlen)
{
    fl_buf_t b;
    char inner[256];
    int rc;

    memset(m, 0, sizeof(*m));
    fl_buf_init(&b, 0);
    rc = fl_replay_read_file(headers_json_path, MAX_HEADERS_JSON, &b, err, errlen);
    if (rc == FL_OK) {
        rc = fl_replay_meta_parse((const char *)b.data, b.len, m, inner, sizeof(inner));
        if (rc != FL_OK)
            snprintf(err, errlen, "%s: %s", headers_json_path, inner);
    }
    fl_buf_dispose(&b);
    return rc;
}
