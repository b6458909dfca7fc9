/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 server protocol on http-parser: one request at a time per connection (pipelined
 * bytes wait in a buffer), limits, 100-continue, early responses with drain or half-close. */
#include "net_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum h1_state { H1_IDLE, H1_HEAD, H1_BODY, H1_WAIT };

typedef struct h1 {
    http_parser p;
    fl_conn_t *c;
    fl_buf_t in; /* plaintext not yet parsed (pipelined requests) */
    fl_net_req_t *req;
    fl_buf_t url, hname, hval;
    int in_value;
    size_t head_bytes;
    int state;
    int first;      /* the first request: its header timer started at accept */
    int msg_done;   /* the current request is fully read */
    int resp_sent;  /* its response is written */
    int discard;    /* answered early: the body is drained, not kept */
    int keep_alive; /* the connection survives the current response */
    int dead;       /* stop parsing: the connection closes after the pending response */
    int shutdown;
} h1_t;

static void h1_fail(h1_t *h, int status, const char *msg);

/* ---------------------------------------------------------------- parser callbacks */

static int head_add(h1_t *h, size_t len)
{
    h->head_bytes += len;
    if (h->head_bytes > h->c->ls->o.max_header) {
        h1_fail(h, 431, "request header fields too large");
        return -1;
    }
    return 0;
}

static int commit_header(h1_t *h)
{
    if (!h->hname.len)
        return 0;
    size_t vl = h->hval.len;
    const char *v = h->hval.data ? (const char *)h->hval.data : "";
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    int rc = fl__req_add_header(h->req, (const char *)h->hname.data, h->hname.len, v, vl);
    fl_buf_reset(&h->hname);
    fl_buf_reset(&h->hval);
    if (rc != FL_OK) {
        h1_fail(h, 500, "out of memory");
        return -1;
    }
    return 0;
}

static int cb_message_begin(http_parser *p)
{
    h1_t *h = p->data;
    fl_conn_t *c = h->c;
    h->req = fl__req_new(c, "http/1.1");
    if (!h->req) {
        h1_fail(h, 503, "out of memory");
        return -1;
    }
    fl_buf_reset(&h->url);
    fl_buf_reset(&h->hname);
    fl_buf_reset(&h->hval);
    h->in_value = 0;
    h->head_bytes = 0;
    h->msg_done = h->resp_sent = h->discard = 0;
    h->state = H1_HEAD;
    if (!h->first)
        fl__conn_set_timer(c, c->ls->o.header_timeout_ms);
    h->first = 0;
    return 0;
}

static int cb_url(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    if (head_add(h, len) < 0 || fl_buf_append(&h->url, at, len) != FL_OK)
        return -1;
    return 0;
}

static int cb_header_field(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    if (h->in_value) {
        if (commit_header(h) < 0)
            return -1;
        h->in_value = 0;
    }
    if (head_add(h, len) < 0 || fl_buf_append(&h->hname, at, len) != FL_OK)
        return -1;
    return 0;
}

static int cb_header_value(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    h->in_value = 1;
    if (head_add(h, len) < 0 || fl_buf_append(&h->hval, at, len) != FL_OK)
        return -1;
    return 0;
}

static void split_url(h1_t *h, fl_net_req_t *r)
{
    const char *u = h->url.data ? (const char *)h->url.data : "";
    size_t len = h->url.len;
    if (len && u[0] != '/' && u[0] != '*') {
        /* absolute-form: keep only the path and query */
        struct http_parser_url pu;
        http_parser_url_init(&pu);
        if (http_parser_parse_url(u, len, 0, &pu) == 0) {
            r->path = pu.field_set & (1 << UF_PATH)
                          ? fl_arena_strndup(r->arena, u + pu.field_data[UF_PATH].off,
                                             pu.field_data[UF_PATH].len)
                          : "/";
            if (pu.field_set & (1 << UF_QUERY))
                r->query = fl_arena_strndup(r->arena, u + pu.field_data[UF_QUERY].off,
                                            pu.field_data[UF_QUERY].len);
            return;
        }
    }
    const char *q = memchr(u, '?', len);
    if (q) {
        r->path = fl_arena_strndup(r->arena, u, (size_t)(q - u));
        r->query = fl_arena_strndup(r->arena, q + 1, len - (size_t)(q - u) - 1);
    } else {
        r->path = fl_arena_strndup(r->arena, u, len);
    }
    if (!r->path)
        r->path = "";
    if (!r->query)
        r->query = "";
}

static int cb_headers_complete(http_parser *p)
{
    h1_t *h = p->data;
    fl_conn_t *c = h->c;
    fl_net_req_t *r = h->req;
    const fl_net_listen_opts_t *o = &c->ls->o;
    if (h->in_value && commit_header(h) < 0)
        return -1;
    r->method = http_method_str((enum http_method)p->method);
    split_url(h, r);
    if (p->flags & F_CONTENTLENGTH)
        r->content_length = (int64_t)p->content_length;
    h->keep_alive = http_should_keep_alive(p) && !p->upgrade && !h->shutdown;
    h->state = H1_BODY;
    fl__conn_set_timer(c, o->idle_timeout_ms);
    if (p->method == HTTP_CONNECT) {
        h1_fail(h, 405, "CONNECT is not supported");
        return -1;
    }
    if (r->content_length > 0 && (uint64_t)r->content_length > o->max_body) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body of %lld bytes exceeds the limit of %zu bytes",
                 (long long)r->content_length, o->max_body);
        h1_fail(h, 413, msg);
        return -1;
    }
    const char *expect = fl_net_req_header(r, "Expect");
    int expect_continue = expect && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
                          p->http_minor >= 1;
    if (fl__req_call_head(r) == FL_NET_RESPONDED) {
        h->discard = 1;
        /* Keep the connection only when the rest of the body is known and small; else the
         * response says Connection: close and we half-close after it. */
        if (expect_continue || r->content_length < 0 || r->content_length > FL_NET_DRAIN_MAX)
            h->keep_alive = 0;
        if (!h->keep_alive) {
            h->dead = 1;
            return -1;
        }
        return 0;
    }
    if (c->closing)
        return -1;
    /* One allocation for a declared body instead of a doubling series of copies (the length
     * is within max_body; a failure here is left to the appends). */
    if (r->content_length > 0)
        (void)fl_buf_reserve(&r->body, (size_t)r->content_length);
    if (expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        fl__conn_send(c, cont, sizeof(cont) - 1);
        fl__conn_flush(c);
        if (c->closing) /* out of memory while writing it: the request is gone */
            return -1;
    }
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t len)
{
    h1_t *h = p->data;
    if (h->discard)
        return 0;
    if (!h->req) /* the connection closed under the parser */
        return -1;
    int rc = fl_buf_append(&h->req->body, at, len);
    if (rc == FL_ERR_LIMIT) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes",
                 h->c->ls->o.max_body);
        h1_fail(h, 413, msg);
        return -1;
    }
    if (rc != FL_OK) {
        h1_fail(h, 503, "out of memory");
        return -1;
    }
    return 0;
}

static int cb_message_complete(http_parser *p)
{
    h1_t *h = p->data;
    fl_conn_t *c = h->c;
    if (!h->req)
        return -1;
    h->msg_done = 1;
    h->req->body_done = 1;
    h->state = H1_WAIT;
    fl__conn_set_timer(c, 0); /* the handler takes its time; no timeout while it works */
    http_parser_pause(p, 1);  /* one request at a time: the rest waits in h->in */
    if (!h->discard)
        fl__req_call_body(h->req);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

/* ---------------------------------------------------------------- responses */

static void write_response(h1_t *h, fl_net_req_t *r, fl__resp_t *resp)
{
    fl_conn_t *c = h->c;
    fl_buf_t b;
    fl_buf_init(&b, 0);
    int status = resp->kind == FL__RESP_GRPC ? 200 : resp->status;
    if (status < 100 || status > 999)
        status = 500;
    int no_body = (status >= 100 && status < 200) || status == 204 || status == 304;
    int is_head = r && strcmp(r->method, "HEAD") == 0;
    fl_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, fl_net_status_text(status));
    for (size_t i = 0; i < resp->n_headers; i++) {
        const char *n = resp->headers[i].name;
        if (!strcasecmp(n, "Content-Length") || !strcasecmp(n, "Connection") ||
            !strcasecmp(n, "Date") || !strcasecmp(n, "Transfer-Encoding"))
            continue;
        fl_buf_printf(&b, "%s: %s\r\n", n, resp->headers[i].value);
    }
    if (resp->kind == FL__RESP_GRPC) {
        fl_buf_printf(&b, "Content-Type: application/grpc\r\ngrpc-status: %d\r\n", resp->status);
        if (resp->grpc_message)
            fl_buf_printf(&b, "grpc-message: %s\r\n", resp->grpc_message);
        if (resp->grpc_details)
            fl_buf_printf(&b, "grpc-status-details-bin: %s\r\n", resp->grpc_details);
    }
    if (!no_body)
        fl_buf_printf(&b, "Content-Length: %zu\r\n", resp->len);
    fl_buf_printf(&b, "Date: %s\r\nConnection: %s\r\n\r\n", fl__net_date(c->net),
                  h->keep_alive ? "keep-alive" : "close");
    fl__conn_send(c, b.data, b.len);
    if (!no_body && !is_head && resp->len)
        fl__conn_send(c, resp->body, resp->len);
    fl_buf_dispose(&b);
}

/* The current request is answered and fully read: forget it and read the next one. */
static void finish_request(h1_t *h)
{
    fl_net_req_t *r = h->req;
    h->req = NULL;
    h->state = H1_IDLE;
    h->msg_done = h->resp_sent = h->discard = 0;
    if (r) {
        r->conn = NULL;
        fl__req_unref(r);
    }
    fl__conn_set_timer(h->c, h->c->ls->o.idle_timeout_ms);
    fl__conn_read_pause(h->c, 0);
}

/* Parse from h->in until it is empty, the parser waits for a response, or the conn dies. */
static void h1_parse(h1_t *h)
{
    fl_conn_t *c = h->c;
    while (!c->closing && !h->dead && h->in.len && h->state != H1_WAIT) {
        size_t n = http_parser_execute(&h->p, &settings, (const char *)h->in.data, h->in.len);
        enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
        if (c->closing || h->dead)
            return;
        if (e == HPE_PAUSED) {
            http_parser_pause(&h->p, 0);
        } else if (e != HPE_OK) {
            h1_fail(h, e == HPE_HEADER_OVERFLOW ? 431 : 400, http_errno_description(e));
            return;
        }
        fl_buf_consume(&h->in, n);
        if (h->state == H1_WAIT && h->resp_sent)
            finish_request(h); /* the early answer went out while the body was drained */
        else if (n == 0)
            break;
    }
    /* Bound pipelined input: stop reading while a request is being answered. */
    if (h->state == H1_WAIT && h->in.len > c->ls->o.max_header + FL_NET_READ_CHUNK)
        fl__conn_read_pause(c, 1);
}

static void h1_on_response(fl_conn_t *c, fl_net_req_t *r)
{
    h1_t *h = c->proto_state;
    if (h->req != r || h->resp_sent)
        return;
    if (h->shutdown)
        h->keep_alive = 0;
    write_response(h, r, r->resp);
    fl__resp_free(r->resp);
    r->resp = NULL;
    h->resp_sent = 1;
    if (!h->keep_alive) {
        h->dead = 1;
        fl__conn_close_after_flush(c, 1);
        return;
    }
    fl__conn_flush(c);
    if (c->closing)
        return;
    if (h->msg_done) {
        finish_request(h);
        h1_parse(h);
    }
}

/* A framework error: answer it (unless the handler's answer is pending) and close. */
static void h1_fail(h1_t *h, int status, const char *msg)
{
    fl_conn_t *c = h->c;
    if (h->dead)
        return;
    h->keep_alive = 0;
    if (status != 503 || !h->req)
        fl__peer_log(c, "bad request", msg);
    if (h->req) {
        if (!atomic_load(&h->req->responded)) {
            fl__req_respond_direct(h->req, status, msg);
        }
        /* else: the handler's answer is queued and goes out with Connection: close */
    } else {
        fl__resp_t resp = {.kind = FL__RESP_HTTP, .status = status};
        resp.body = (uint8_t *)msg;
        resp.len = strlen(msg);
        write_response(h, NULL, &resp);
        fl__conn_close_after_flush(c, 1);
    }
    h->dead = 1;
}

/* ---------------------------------------------------------------- proto ops */

static int h1_on_data(fl_conn_t *c, const uint8_t *data, size_t len)
{
    h1_t *h = c->proto_state;
    if (!data) {
        /* The client half-closed. A request waiting for its answer still gets it. */
        if (h->state == H1_WAIT && !h->resp_sent) {
            h->keep_alive = 0;
            return 0;
        }
        return -1;
    }
    if (h->dead)
        return 0;
    if (fl_buf_append(&h->in, data, len) != FL_OK)
        return -1;
    if (h->state == H1_BODY)
        fl__conn_set_timer(c, c->ls->o.idle_timeout_ms);
    h1_parse(h);
    return 0;
}

static void h1_on_drain(fl_conn_t *c) {}

static void h1_on_timeout(fl_conn_t *c)
{
    h1_t *h = c->proto_state;
    if (h->state == H1_IDLE) {
        fl__conn_close(c);
        return;
    }
    if (h->state == H1_WAIT)
        return;
    h1_fail(h, 408, h->state == H1_HEAD ? "request header timeout" : "request body timeout");
    if (!c->closing && !c->close_after_flush)
        fl__conn_close(c);
}

static void h1_on_shutdown(fl_conn_t *c)
{
    h1_t *h = c->proto_state;
    h->shutdown = 1;
    if (!h->req && h->in.len == 0) {
        fl__conn_close(c);
        return;
    }
    h->keep_alive = 0;
}

static void h1_on_close(fl_conn_t *c)
{
    h1_t *h = c->proto_state;
    fl_net_req_t *r = h->req;
    h->req = NULL;
    if (r) {
        fl__req_drop_handler(r);
        r->conn = NULL;
        fl__req_unref(r);
    }
}

static void h1_dispose(fl_conn_t *c)
{
    h1_t *h = c->proto_state;
    if (!h)
        return;
    fl_buf_dispose(&h->in);
    fl_buf_dispose(&h->url);
    fl_buf_dispose(&h->hname);
    fl_buf_dispose(&h->hval);
    free(h);
}

const fl__proto_ops_t fl__proto_http1 = {
    .name = "http/1.1",
    .on_data = h1_on_data,
    .on_response = h1_on_response,
    .on_drain = h1_on_drain,
    .on_timeout = h1_on_timeout,
    .on_shutdown = h1_on_shutdown,
    .on_close = h1_on_close,
    .dispose = h1_dispose,
};

int fl__h1_start(fl_conn_t *c)
{
    h1_t *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    h->c = c;
    http_parser_init(&h->p, HTTP_REQUEST);
    h->p.data = h;
    h->first = 1;
    fl_buf_init(&h->in, 0);
    fl_buf_init(&h->url, 0);
    fl_buf_init(&h->hname, 0);
    fl_buf_init(&h->hval, 0);
    c->proto_state = h;
    fl__conn_set_proto(c, &fl__proto_http1);
    return 0;
}
