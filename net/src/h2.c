/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 server sessions on nghttp2 1.52 (mem_recv / mem_send, no sockets here) and gRPC
 * request framing: each stream becomes an fl_net_req_t that looks like an HTTP/1.1 one. */
#include "net_int.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Windows are generous because bodies are consumed (buffered) as soon as they arrive; the
 * per-request cap is max_body, enforced while buffering. */
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW (16 << 20)

typedef struct h2s {
    int32_t id;
    fl_net_req_t *req;
    int hdr_too_big;
    int discard;   /* answered early (or refused): body bytes are dropped */
    int resp_done; /* our response has ended (END_STREAM sent) */
    size_t drained;
    struct h2s *prev, *next;
} h2s_t;

typedef struct h2 {
    fl_conn_t *c;
    nghttp2_session *s;
    h2s_t *streams;
    size_t n_streams;
    int busy;         /* inside mem_recv / mem_send: no re-entrant send */
    int shutdown;     /* shutdown notice sent */
    int final_goaway; /* last GOAWAY submitted */
} h2_t;

static void h2_flush(h2_t *h);
static void maybe_stop_upload(nghttp2_session *s, h2s_t *st);

/* ---------------------------------------------------------------- streams */

static void stream_detach(h2_t *h, h2s_t *st)
{
    fl_net_req_t *r = st->req;
    st->req = NULL;
    if (r) {
        fl__req_drop_handler(r);
        r->conn = NULL;
        r->pstate = NULL;
        fl__req_unref(r);
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h->n_streams--;
    free(st);
}

static void final_goaway(h2_t *h)
{
    if (h->final_goaway)
        return;
    h->final_goaway = 1;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

static void became_idle(h2_t *h)
{
    if (h->shutdown)
        final_goaway(h);
    else
        fl__conn_set_timer(h->c, h->c->ls->o.idle_timeout_ms);
}

/* ---------------------------------------------------------------- request side */

static void grpc_fail(fl_net_req_t *r, int code, const char *msg)
{
    fl__peer_log(r->conn, "bad gRPC request", msg);
    fl__req_respond_direct(r, code, msg);
}

/* Headers are complete: fill the request and ask the handler. */
static void on_head(h2_t *h, h2s_t *st)
{
    fl_net_req_t *r = st->req;
    const fl_net_listen_opts_t *o = &h->c->ls->o;
    if (!fl_net_req_header(r, "host")) {
        const char *auth = fl_net_req_header(r, ":authority");
        if (auth)
            fl__req_add_header(r, "host", 4, auth, strlen(auth));
    }
    const char *cl = fl_net_req_header(r, "content-length");
    if (cl) {
        char *end;
        long long v = strtoll(cl, &end, 10);
        if (*end == 0 && v >= 0)
            r->content_length = v;
    }
    if (fl__is_grpc_ctype(fl_net_req_header(r, "content-type"))) {
        r->is_grpc = 1;
        r->grpc_timeout_ms = fl__grpc_parse_timeout(fl_net_req_header(r, "grpc-timeout"));
        r->body.max = o->max_body + 5; /* the limit applies to the message, not its prefix */
    }
    if (st->hdr_too_big) {
        st->discard = 1;
        if (r->is_grpc)
            grpc_fail(r, FL_GRPC_RESOURCE_EXHAUSTED, "request header list too large");
        else
            fl__req_respond_direct(r, 431, "request header fields too large");
        return;
    }
    if (!r->is_grpc && r->content_length > 0 && (uint64_t)r->content_length > o->max_body) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body of %lld bytes exceeds the limit of %zu bytes",
                 (long long)r->content_length, o->max_body);
        st->discard = 1;
        fl__peer_log(h->c, "bad request", msg);
        fl__req_respond_direct(r, 413, msg);
        return;
    }
    if (fl__req_call_head(r) == FL_NET_RESPONDED)
        st->discard = 1;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The request stream ended: check the gRPC framing, then hand the body over. */
static void on_end(h2_t *h, h2s_t *st)
{
    fl_net_req_t *r = st->req;
    if (r->body_done)
        return;
    r->body_done = 1;
    if (st->discard || atomic_load(&r->responded))
        return;
    if (r->is_grpc) {
        size_t len = r->body.len, max = h->c->ls->o.max_body;
        char msg[160];
        if (len < 5) {
            snprintf(msg, sizeof(msg),
                     len ? "truncated gRPC message: %zu bytes, the length prefix needs 5"
                         : "missing gRPC request message",
                     len);
            grpc_fail(r, FL_GRPC_INTERNAL, msg);
            return;
        }
        uint8_t flag = r->body.data[0];
        uint32_t mlen = be32(r->body.data + 1);
        if (flag > 1) {
            snprintf(msg, sizeof(msg), "invalid gRPC compressed flag %u", flag);
            grpc_fail(r, FL_GRPC_INTERNAL, msg);
            return;
        }
        if (mlen > max) {
            snprintf(msg, sizeof(msg), "gRPC message of %u bytes exceeds the limit of %zu bytes",
                     mlen, max);
            grpc_fail(r, FL_GRPC_RESOURCE_EXHAUSTED, msg);
            return;
        }
        if (mlen > len - 5) {
            snprintf(msg, sizeof(msg),
                     "truncated gRPC message: the prefix says %u bytes, %zu arrived", mlen,
                     len - 5);
            grpc_fail(r, FL_GRPC_INTERNAL, msg);
            return;
        }
        r->grpc_compressed = flag;
        r->grpc_off = 5;
        r->grpc_len = mlen;
    }
    fl__req_call_body(r);
}

/* ---------------------------------------------------------------- nghttp2 callbacks */

static int cb_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_t *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2s_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->req = fl__req_new(h->c, h->c->is_tls ? "h2" : "h2c");
    if (!st->req) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->id = f->hd.stream_id;
    st->req->stream_id = st->id;
    st->req->pstate = st;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    fl__conn_set_timer(h->c, 0);
    return 0;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    h2_t *h = ud;
    h2s_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || !st->req || st->req->head_seen)
        return 0; /* trailers are ignored */
    fl_net_req_t *r = st->req;
    r->hdr_bytes += namelen + valuelen + 32;
    if (r->hdr_bytes > h->c->ls->o.max_header) {
        st->hdr_too_big = 1;
        return 0;
    }
    const char *n = (const char *)name, *v = (const char *)value;
    if (namelen && n[0] == ':') {
        if (namelen == 7 && memcmp(n, ":method", 7) == 0) {
            r->method = fl_arena_strndup(r->arena, v, valuelen);
        } else if (namelen == 5 && memcmp(n, ":path", 5) == 0) {
            const char *q = memchr(v, '?', valuelen);
            size_t pl = q ? (size_t)(q - v) : valuelen;
            r->path = fl_arena_strndup(r->arena, v, pl);
            r->query = q ? fl_arena_strndup(r->arena, q + 1, valuelen - pl - 1) : "";
        } else if (namelen == 10 && memcmp(n, ":authority", 10) == 0) {
            fl__req_add_header(r, n, namelen, v, valuelen);
        }
        if (!r->method || !r->path || !r->query)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (fl__req_add_header(r, n, namelen, v, valuelen) != FL_OK)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    h2_t *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    h2s_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || !st->req)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
        !st->req->head_seen && !atomic_load(&st->req->responded))
        on_head(h, st);
    if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->req)
        on_end(h, st);
    return 0;
}

static int cb_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *ud)
{
    h2_t *h = ud;
    h2s_t *st = nghttp2_session_get_stream_user_data(s, stream_id);
    if (!st || !st->req)
        return 0;
    fl_net_req_t *r = st->req;
    if (!st->discard && atomic_load(&r->responded))
        st->discard = 1;
    if (st->discard) {
        st->drained += len;
        maybe_stop_upload(s, st);
        return 0;
    }
    /* Any nonzero return here kills the connection: refuse one stream with an answer. */
    size_t max = h->c->ls->o.max_body;
    int rc = fl_buf_append(&r->body, data, len);
    if (r->is_grpc && r->body.len >= 5 && be32(r->body.data + 1) > max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "gRPC message of %u bytes exceeds the limit of %zu bytes",
                 be32(r->body.data + 1), max);
        st->discard = 1;
        grpc_fail(r, FL_GRPC_RESOURCE_EXHAUSTED, msg);
        return 0;
    }
    if (rc == FL_ERR_LIMIT) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes", max);
        st->discard = 1;
        if (r->is_grpc) {
            grpc_fail(r, FL_GRPC_RESOURCE_EXHAUSTED, msg);
        } else {
            fl__peer_log(h->c, "bad request", msg);
            fl__req_respond_direct(r, 413, msg);
        }
        return 0;
    }
    if (rc != FL_OK) {
        st->discard = 1;
        fl__req_respond_direct(r, r->is_grpc ? FL_GRPC_RESOURCE_EXHAUSTED : 503, "out of memory");
    }
    return 0;
}

/* After an early answer the rest of the body is drained like on HTTP/1.1; past
 * FL_NET_DRAIN_MAX the client is asked to stop with RST_STREAM(NO_ERROR) (RFC 9113 8.1). */
static void maybe_stop_upload(nghttp2_session *s, h2s_t *st)
{
    if (st->resp_done && st->req && !st->req->body_done && st->drained > FL_NET_DRAIN_MAX) {
        st->drained = 0;
        st->resp_done = 2; /* once */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
}

static int cb_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        h2s_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st && !st->resp_done) {
            st->resp_done = 1;
            maybe_stop_upload(s, st);
        }
    }
    return 0;
}

static int cb_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
    h2_t *h = ud;
    h2s_t *st = nghttp2_session_get_stream_user_data(s, stream_id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, stream_id, NULL);
    stream_detach(h, st);
    if (h->n_streams == 0)
        became_idle(h);
    return 0;
}

static nghttp2_session_callbacks *g_cbs;

static void cbs_init(void)
{
    nghttp2_session_callbacks_new(&g_cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(g_cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(g_cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(g_cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(g_cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(g_cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(g_cbs, cb_stream_close);
}

/* ---------------------------------------------------------------- responses */

static ssize_t body_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
    fl_net_req_t *r = src->ptr;
    fl__resp_t *resp = r->resp;
    size_t n = resp->len - resp->sent;
    if (n > length)
        n = length;
    if (n)
        memcpy(buf, resp->body + resp->sent, n);
    resp->sent += n;
    if (resp->sent == resp->len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (resp->kind == FL__RESP_GRPC) {
            char st[16];
            snprintf(st, sizeof(st), "%d", resp->status);
            nghttp2_nv tr[3];
            size_t nt = 0;
            tr[nt++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), 0};
            if (resp->grpc_message)
                tr[nt++] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)resp->grpc_message,
                                        12, strlen(resp->grpc_message), 0};
            if (resp->grpc_details)
                tr[nt++] =
                    (nghttp2_nv){(uint8_t *)"grpc-status-details-bin",
                                 (uint8_t *)resp->grpc_details, 23, strlen(resp->grpc_details), 0};
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(s, stream_id, tr, nt);
        }
    }
    return (ssize_t)n;
}

static nghttp2_nv nv(const char *n, const char *v)
{
    return (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE};
}

static int hop_by_hop(const char *n)
{
    static const char *skip[] = {
        "connection",     "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
        "content-length", "date"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (strcasecmp(n, skip[i]) == 0)
            return 1;
    return 0;
}

static void h2_on_response(fl_conn_t *c, fl_net_req_t *r)
{
    h2_t *h = c->proto_state;
    fl__resp_t *resp = r->resp;
    size_t cap = resp->n_headers + 8;
    nghttp2_nv *nva = calloc(cap, sizeof(*nva));
    char **lower = calloc(resp->n_headers + 1, sizeof(char *));
    char status[8], clen[24];
    size_t n = 0;
    nghttp2_data_provider dp = {.source.ptr = r, .read_callback = body_read};
    nghttp2_data_provider *dpp = NULL;
    if (!nva || !lower)
        goto out;
    if (resp->kind == FL__RESP_GRPC) {
        char gs[16];
        nva[n++] = nv(":status", "200");
        nva[n++] = nv("content-type", "application/grpc");
        if (resp->status == FL_GRPC_OK) {
            dpp = &dp; /* message, then trailers from body_read */
            nghttp2_submit_response(h->s, r->stream_id, nva, n, dpp);
        } else {
            /* Trailers-Only */
            snprintf(gs, sizeof(gs), "%d", resp->status);
            nva[n++] = nv("grpc-status", gs);
            if (resp->grpc_message)
                nva[n++] = nv("grpc-message", resp->grpc_message);
            if (resp->grpc_details)
                nva[n++] = nv("grpc-status-details-bin", resp->grpc_details);
            nghttp2_submit_response(h->s, r->stream_id, nva, n, NULL);
        }
        goto out;
    }
    int st = resp->status < 200 || resp->status > 999 ? 500 : resp->status;
    snprintf(status, sizeof(status), "%d", st);
    nva[n++] = nv(":status", status);
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (hop_by_hop(resp->headers[i].name))
            continue;
        lower[i] = strdup(resp->headers[i].name);
        if (!lower[i])
            goto out;
        for (char *p = lower[i]; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        nva[n++] = nv(lower[i], resp->headers[i].value);
    }
    int no_body = st == 204 || st == 304;
    if (!no_body) {
        snprintf(clen, sizeof(clen), "%zu", resp->len);
        nva[n++] = nv("content-length", clen);
    }
    nva[n++] = nv("date", fl__net_date(c->net));
    if (!no_body && resp->len && strcmp(r->method, "HEAD") != 0)
        dpp = &dp;
    nghttp2_submit_response(h->s, r->stream_id, nva, n, dpp);
out:
    if (lower)
        for (size_t i = 0; i < resp->n_headers; i++)
            free(lower[i]);
    free(lower);
    free(nva);
    h2_flush(h);
}

/* ---------------------------------------------------------------- session I/O */

static void h2_flush(h2_t *h)
{
    fl_conn_t *c = h->c;
    if (h->busy || c->closing)
        return;
    h->busy = 1;
    for (;;) {
        if (c->wpending + c->wbuf.len > FL_NET_WRITE_HIGH)
            break; /* resumed from on_drain */
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->s, &data);
        if (n < 0) {
            fl__peer_log(c, "HTTP/2 send failed", nghttp2_strerror((int)n));
            h->busy = 0;
            fl__conn_close(c);
            return;
        }
        if (n == 0)
            break;
        fl__conn_send(c, data, (size_t)n);
    }
    h->busy = 0;
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
        fl__conn_close_after_flush(c, 0);
    else
        fl__conn_flush(c);
}

static int h2_on_data(fl_conn_t *c, const uint8_t *data, size_t len)
{
    h2_t *h = c->proto_state;
    if (!data)
        return -1;
    h->busy = 1;
    ssize_t rv = nghttp2_session_mem_recv(h->s, data, len);
    h->busy = 0;
    if (c->closing)
        return 0;
    if (rv < 0) {
        fl__peer_log(c, "HTTP/2 protocol error", nghttp2_strerror((int)rv));
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC || nghttp2_is_fatal((int)rv)) {
            fl__conn_close(c);
            return 0;
        }
        nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
    }
    h2_flush(h);
    return 0;
}

static void h2_on_drain(fl_conn_t *c)
{
    h2_flush(c->proto_state);
}

static void h2_on_timeout(fl_conn_t *c)
{
    h2_t *h = c->proto_state;
    if (h->n_streams)
        return;
    final_goaway(h);
    h2_flush(h);
    fl__conn_close_after_flush(c, 0);
}

static void h2_on_shutdown(fl_conn_t *c)
{
    h2_t *h = c->proto_state;
    h->shutdown = 1;
    /* Two-step GOAWAY: announce, let in-flight streams finish, then the final one. */
    nghttp2_submit_shutdown_notice(h->s);
    if (h->n_streams == 0)
        final_goaway(h);
    h2_flush(h);
}

static void h2_on_close(fl_conn_t *c)
{
    h2_t *h = c->proto_state;
    while (h->streams) {
        h2s_t *st = h->streams;
        nghttp2_session_set_stream_user_data(h->s, st->id, NULL);
        stream_detach(h, st);
    }
}

static void h2_dispose(fl_conn_t *c)
{
    h2_t *h = c->proto_state;
    if (!h)
        return;
    nghttp2_session_del(h->s);
    free(h);
}

const fl__proto_ops_t fl__proto_h2 = {
    .name = "h2",
    .on_data = h2_on_data,
    .on_response = h2_on_response,
    .on_drain = h2_on_drain,
    .on_timeout = h2_on_timeout,
    .on_shutdown = h2_on_shutdown,
    .on_close = h2_on_close,
    .dispose = h2_dispose,
};

int fl__h2_start(fl_conn_t *c)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, cbs_init);
    h2_t *h = calloc(1, sizeof(*h));
    nghttp2_option *opt = NULL;
    if (!h || nghttp2_option_new(&opt) != 0)
        goto fail;
    h->c = c;
    /* RST_STREAM floods ("rapid reset"): nghttp2's token bucket answers with GOAWAY. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 100);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    if (nghttp2_session_server_new3(&h->s, g_cbs, h, opt, NULL) != 0)
        goto fail;
    nghttp2_option_del(opt);
    opt = NULL;
    const fl_net_listen_opts_t *o = &c->ls->o;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)o->max_header},
    };
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
        goto fail;
    c->proto_state = h;
    fl__conn_set_proto(c, &fl__proto_h2);
    fl__conn_set_timer(c, o->idle_timeout_ms);
    return 0;
fail:
    nghttp2_option_del(opt);
    if (h && h->s)
        nghttp2_session_del(h->s);
    free(h);
    return -1;
}
