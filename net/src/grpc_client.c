/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking gRPC unary client: an nghttp2 client session driven over a blocking socket with
 * poll deadlines, h2c prior knowledge or TLS with ALPN h2. */
#include "net_int.h"

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fl_grpc_client {
    fl_grpc_client_opts_t o;
    char host[256];
    char authority[300];
    char *ca_file, *cert_file, *key_file;
    fl__cio_t io;
    nghttp2_session *s;
    int goaway; /* the server will take no new streams on this connection */
};

typedef struct call {
    fl_grpc_result_t *res;
    fl_buf_t body; /* raw response DATA */
    const uint8_t *req;
    size_t req_len, req_off;
    int done;
    int saw_headers;
    int overflow;
} call_t;

/* ---------------------------------------------------------------- callbacks */

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                    const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    call_t *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!cl)
        return 0;
    fl_grpc_result_t *r = cl->res;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        r->http_status = atoi((const char *)value);
        return 0;
    }
    fl_buf_append(&r->headers, name, nl);
    fl_buf_puts(&r->headers, ": ");
    fl_buf_append(&r->headers, value, vl);
    fl_buf_putc(&r->headers, '\n');
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        r->grpc_status = atoi((const char *)value);
    } else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(r->grpc_message);
        r->grpc_message = strndup((const char *)value, vl);
        if (r->grpc_message)
            fl__grpc_pct_decode(r->grpc_message);
    } else if (nl == 23 && memcmp(name, "grpc-status-details-bin", 23) == 0) {
        fl_buf_reset(&r->details);
        if (fl_buf_reserve(&r->details, vl * 3 / 4 + 3) == FL_OK) {
            size_t out = 0;
            if (fl_base64_decode((const char *)value, vl, r->details.data, &out) == FL_OK)
                r->details.len = out;
        }
    }
    return 0;
}

static int c_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    fl_grpc_client_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    call_t *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!cl)
        return 0;
    if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        cl->saw_headers = 1;
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            cl->res->trailers_only = 1;
    }
    return 0;
}

static int c_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                        size_t len, void *ud)
{
    call_t *cl = nghttp2_session_get_stream_user_data(s, stream_id);
    if (cl && fl_buf_append(&cl->body, data, len) != FL_OK) {
        cl->overflow = 1;
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
}

static int c_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
    call_t *cl = nghttp2_session_get_stream_user_data(s, stream_id);
    if (cl) {
        cl->done = 1;
        cl->res->rst_error = error_code;
    }
    return 0;
}

static ssize_t c_body_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
    call_t *cl = src->ptr;
    size_t n = cl->req_len - cl->req_off;
    if (n > length)
        n = length;
    if (n)
        memcpy(buf, cl->req + cl->req_off, n);
    cl->req_off += n;
    if (cl->req_off == cl->req_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *g_ccbs;

static void ccbs_init(void)
{
    nghttp2_session_callbacks_new(&g_ccbs);
    nghttp2_session_callbacks_set_on_header_callback(g_ccbs, c_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_ccbs, c_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_ccbs, c_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_ccbs, c_stream_close);
}

/* ---------------------------------------------------------------- connection */

fl_grpc_client_t *fl_grpc_client_new(const fl_grpc_client_opts_t *opts)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!opts || !opts->host || opts->port <= 0)
        return NULL;
    pthread_once(&once, ccbs_init);
    fl_grpc_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->o = *opts;
    snprintf(c->host, sizeof(c->host), "%s", opts->host);
    c->o.host = c->host;
    if (opts->authority)
        snprintf(c->authority, sizeof(c->authority), "%s", opts->authority);
    else
        snprintf(c->authority, sizeof(c->authority), "%s:%d", opts->host, opts->port);
    c->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    c->cert_file = opts->cert_file ? strdup(opts->cert_file) : NULL;
    c->key_file = opts->key_file ? strdup(opts->key_file) : NULL;
    c->o.ca_file = c->ca_file;
    c->o.cert_file = c->cert_file;
    c->o.key_file = c->key_file;
    c->o.authority = c->authority;
    if (c->o.timeout_ms <= 0)
        c->o.timeout_ms = 10000;
    if (!c->o.max_response)
        c->o.max_response = 64u << 20;
    fl__cio_init(&c->io);
    return c;
}

static void disconnect(fl_grpc_client_t *c)
{
    nghttp2_session_del(c->s);
    c->s = NULL;
    c->goaway = 0;
    fl__cio_close(&c->io);
}

void fl_grpc_client_free(fl_grpc_client_t *c)
{
    if (!c)
        return;
    disconnect(c);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

/* Send everything nghttp2 has queued. */
static int pump_send(fl_grpc_client_t *c, uint64_t deadline)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->s, &data);
        if (n < 0)
            return FL_ERR_PROTOCOL;
        if (n == 0)
            return FL_OK;
        int rc = fl__cio_write(&c->io, data, (size_t)n, deadline);
        if (rc != FL_OK)
            return rc;
    }
}

/* Read once (blocking until the deadline) and feed the session. */
static int pump_recv(fl_grpc_client_t *c, uint64_t deadline)
{
    uint8_t buf[65536];
    long n = fl__cio_read(&c->io, buf, sizeof(buf), deadline);
    if (n == 0)
        return FL_ERR_IO;
    if (n < 0)
        return (int)n;
    if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0)
        return FL_ERR_PROTOCOL;
    return FL_OK;
}

/* Take in whatever an idle connection received (SETTINGS, PING, GOAWAY, EOF). */
static void drain_idle(fl_grpc_client_t *c)
{
    while (c->s) {
        struct pollfd p = {.fd = c->io.fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            return;
        if (pump_recv(c, fl_time_mono_ns() + 1000000) != FL_OK) {
            disconnect(c);
            return;
        }
    }
}

static int ensure_connected(fl_grpc_client_t *c, uint64_t deadline)
{
    if (c->s) {
        drain_idle(c);
        if (c->s && (c->goaway || !nghttp2_session_want_read(c->s)))
            disconnect(c);
        if (c->s)
            return FL_OK;
    }
    char err[256];
    fl__cio_opts_t co = {.host = c->o.host,
                         .port = c->o.port,
                         .tls = c->o.tls,
                         .verify = !c->o.insecure,
                         .ca_file = c->o.ca_file,
                         .cert_file = c->o.cert_file,
                         .key_file = c->o.key_file,
                         .alpn = "\x02h2",
                         .alpn_len = 3};
    int rc = fl__cio_connect(&c->io, &co, deadline, err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_DEBUG, FL_NET_MODULE, "grpc client connect failed detail=\"%s\"", err);
        return rc == FL_ERR_TIMEOUT ? rc : FL_ERR_IO;
    }
    if (c->o.tls && strcmp(c->io.alpn, "h2") != 0) {
        fl_log(FL_LOG_DEBUG, FL_NET_MODULE, "grpc client: server did not negotiate h2");
        fl__cio_close(&c->io);
        return FL_ERR_PROTOCOL;
    }
    if (nghttp2_session_client_new(&c->s, g_ccbs, c) != 0) {
        fl__cio_close(&c->io);
        return FL_ERR_NOMEM;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    return FL_OK;
}

static void result_init(fl_grpc_result_t *res, size_t max)
{
    memset(res, 0, sizeof(*res));
    res->grpc_status = -1;
    fl_buf_init(&res->message, max);
    fl_buf_init(&res->details, 0);
    fl_buf_init(&res->headers, 0);
}

void fl_grpc_result_dispose(fl_grpc_result_t *res)
{
    if (!res)
        return;
    free(res->grpc_message);
    res->grpc_message = NULL;
    fl_buf_dispose(&res->message);
    fl_buf_dispose(&res->details);
    fl_buf_dispose(&res->headers);
}

static int call_once(fl_grpc_client_t *c, const char *path, const fl_net_header_t *extra,
                     size_t n_extra, const uint8_t *body, size_t len, fl_grpc_result_t *res,
                     uint64_t deadline)
{
    int rc = ensure_connected(c, deadline);
    if (rc != FL_OK)
        return rc;
    call_t cl = {.res = res, .req = body, .req_len = len};
    fl_buf_init(&cl.body, c->o.max_response + 5);
    nghttp2_nv *nva = calloc(n_extra + 8, sizeof(*nva));
    if (!nva) {
        fl_buf_dispose(&cl.body);
        return FL_ERR_NOMEM;
    }
    char tmo[32];
    int ms = (int)((deadline - fl_time_mono_ns()) / 1000000);
    snprintf(tmo, sizeof(tmo), "%dm", ms > 0 ? ms : 1);
    size_t n = 0;
#define NV(a, b)                                                                                   \
    nva[n++] =                                                                                     \
        (nghttp2_nv){(uint8_t *)(a), (uint8_t *)(b), strlen(a), strlen(b), NGHTTP2_NV_FLAG_NONE}
    NV(":method", "POST");
    NV(":scheme", c->o.tls ? "https" : "http");
    NV(":path", path);
    NV(":authority", c->authority);
    int has_ct = 0, has_tmo = 0;
    for (size_t i = 0; i < n_extra; i++) {
        has_ct |= strcasecmp(extra[i].name, "content-type") == 0;
        has_tmo |= strcasecmp(extra[i].name, "grpc-timeout") == 0;
    }
    if (!has_ct)
        NV("content-type", "application/grpc");
    NV("te", "trailers");
    if (!has_tmo)
        NV("grpc-timeout", tmo);
    /* HTTP/2 field names must be lowercase: the server would reset the stream otherwise. */
    char **lower = calloc(n_extra + 1, sizeof(char *));
    for (size_t i = 0; lower && i < n_extra; i++) {
        lower[i] = strdup(extra[i].name);
        for (char *p = lower[i]; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        if (lower[i])
            NV(lower[i], extra[i].value);
    }
#undef NV
    nghttp2_data_provider dp = {.source.ptr = &cl, .read_callback = c_body_read};
    int32_t sid = nghttp2_submit_request(c->s, NULL, nva, n, &dp, &cl);
    for (size_t i = 0; lower && i < n_extra; i++)
        free(lower[i]);
    free(lower);
    free(nva);
    if (sid < 0) {
        fl_buf_dispose(&cl.body);
        return FL_ERR_PROTOCOL;
    }
    rc = FL_OK;
    while (!cl.done) {
        rc = pump_send(c, deadline);
        if (rc != FL_OK || cl.done)
            break;
        if (!nghttp2_session_want_read(c->s)) {
            rc = FL_ERR_PROTOCOL;
            break;
        }
        rc = pump_recv(c, deadline);
        if (rc != FL_OK)
            break;
    }
    if (rc == FL_OK)
        pump_send(c, deadline); /* acks and window updates */
    if (c->s && nghttp2_session_find_stream(c->s, sid))
        nghttp2_session_set_stream_user_data(c->s, sid, NULL);
    if (rc != FL_OK) {
        disconnect(c); /* the stream still points at cl: never reuse this session */
    } else if (cl.overflow) {
        rc = FL_ERR_LIMIT;
    } else if (!cl.saw_headers || (res->grpc_status < 0 && res->rst_error)) {
        rc = FL_ERR_PROTOCOL;
    } else if (cl.body.len) {
        size_t bl = cl.body.len;
        uint32_t ml = bl >= 5 ? (uint32_t)cl.body.data[1] << 24 | (uint32_t)cl.body.data[2] << 16 |
                                    (uint32_t)cl.body.data[3] << 8 | cl.body.data[4]
                              : 0;
        if (bl < 5 || ml > bl - 5) {
            rc = FL_ERR_PROTOCOL;
        } else {
            res->compressed = cl.body.data[0];
            rc = fl_buf_append(&res->message, cl.body.data + 5, ml);
        }
    }
    fl_buf_dispose(&cl.body);
    return rc;
}

int fl_grpc_client_call_raw(fl_grpc_client_t *c, const char *path, const fl_net_header_t *extra,
                            size_t n_extra, const void *body, size_t len, fl_grpc_result_t *res)
{
    result_init(res, c ? c->o.max_response : 0);
    if (!c || !path)
        return FL_ERR_INVALID;
    uint64_t deadline = fl_time_mono_ns() + (uint64_t)c->o.timeout_ms * 1000000ull;
    int had_conn = c->s != NULL;
    int rc = call_once(c, path, extra, n_extra, body, len, res, deadline);
    if (rc == FL_ERR_IO && had_conn) {
        /* The server dropped the reused connection: retry once on a new one. */
        fl_grpc_result_dispose(res);
        result_init(res, c->o.max_response);
        rc = call_once(c, path, extra, n_extra, body, len, res, deadline);
    }
    return rc;
}

int fl_grpc_client_call(fl_grpc_client_t *c, const char *path, const fl_net_header_t *extra,
                        size_t n_extra, const void *msg, size_t len, int compressed_flag,
                        fl_grpc_result_t *res)
{
    if (len > 0xffffffffu) {
        result_init(res, 0);
        return FL_ERR_INVALID;
    }
    uint8_t *body = malloc(len + 5);
    if (!body) {
        result_init(res, 0);
        return FL_ERR_NOMEM;
    }
    body[0] = compressed_flag ? 1 : 0;
    body[1] = (uint8_t)(len >> 24);
    body[2] = (uint8_t)(len >> 16);
    body[3] = (uint8_t)(len >> 8);
    body[4] = (uint8_t)len;
    if (len)
        memcpy(body + 5, msg, len);
    int rc = fl_grpc_client_call_raw(c, path, extra, n_extra, body, len + 5, res);
    free(body);
    return rc;
}
