/* SPDX-License-Identifier: Apache-2.0 */
/* Requests: creation, headers, accessors, the handler hand-off (on_head / on_body), and
 * responses queued from any thread to the loop thread. */
#include "net_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

fl_net_req_t *fl__req_new(fl_conn_t *c, const char *protocol)
{
    fl_net_req_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->arena = fl_arena_new(4096);
    if (!r->arena) {
        free(r);
        return NULL;
    }
    r->net = c->net;
    r->conn = c;
    r->protocol = protocol;
    r->method = "";
    r->path = "";
    r->query = "";
    r->content_length = -1;
    r->grpc_timeout_ms = -1;
    r->is_tls = c->is_tls;
    r->refs = 1;
    atomic_init(&r->responded, 0);
    snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
    fl_buf_init(&r->body, c->ls->o.max_body);
    atomic_fetch_add(&c->net->inflight, 1);
    return r;
}

void fl__resp_free(fl__resp_t *resp)
{
    if (!resp)
        return;
    free(resp->headers);
    free(resp->body);
    free(resp->grpc_message);
    free(resp->grpc_details);
    free(resp);
}

static void req_free(fl_net_req_t *r)
{
    atomic_fetch_sub(&r->net->inflight, 1);
    fl_arena_free(r->arena);
    free(r->hdrs);
    fl_buf_dispose(&r->body);
    fl__resp_free(r->resp);
    free(r);
}

void fl__req_unref(fl_net_req_t *r)
{
    if (r && --r->refs == 0)
        req_free(r);
}

int fl__req_add_header(fl_net_req_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (strlen(r->hdrs[i].name) == nlen && strncasecmp(r->hdrs[i].name, name, nlen) == 0) {
            char *v = fl_arena_sprintf(r->arena, "%s, %.*s", r->hdrs[i].value, (int)vlen, value);
            if (!v)
                return FL_ERR_NOMEM;
            r->hdrs[i].value = v;
            return FL_OK;
        }
    }
    if (r->n_hdrs == r->cap_hdrs) {
        size_t cap = r->cap_hdrs ? r->cap_hdrs * 2 : 16;
        fl_net_header_t *h = realloc(r->hdrs, cap * sizeof(*h));
        if (!h)
            return FL_ERR_NOMEM;
        r->hdrs = h;
        r->cap_hdrs = cap;
    }
    char *n = fl_arena_strndup(r->arena, name, nlen);
    char *v = fl_arena_strndup(r->arena, value, vlen);
    if (!n || !v)
        return FL_ERR_NOMEM;
    r->hdrs[r->n_hdrs].name = n;
    r->hdrs[r->n_hdrs].value = v;
    r->n_hdrs++;
    return FL_OK;
}

/* ---------------------------------------------------------------- handler hand-off */

int fl__req_call_head(fl_net_req_t *r)
{
    const fl_net_handler_t *h = &r->conn->ls->o.handler;
    r->refs++; /* the handler's reference: ends with its response */
    r->head_seen = 1;
    int rc = h->on_head ? h->on_head(r, h->ud) : FL_NET_READ_BODY;
    if (atomic_load(&r->responded))
        rc = FL_NET_RESPONDED;
    r->head_accepted = rc != FL_NET_RESPONDED;
    return rc == FL_NET_RESPONDED ? FL_NET_RESPONDED : FL_NET_READ_BODY;
}

/* on_head accepted the request but on_body will not come: let the handler release what it
 * reserved. */
static void call_abort(fl_net_req_t *r)
{
    const fl_net_handler_t *h = &r->conn->ls->o.handler;
    if (r->head_accepted && !r->handed && h->on_abort) {
        r->head_accepted = 0;
        h->on_abort(r, h->ud);
    }
}

void fl__req_call_body(fl_net_req_t *r)
{
    const fl_net_handler_t *h = &r->conn->ls->o.handler;
    if (!r->head_seen) {
        r->refs++;
        r->head_seen = 1;
    }
    r->handed = 1;
    h->on_body(r, h->ud);
}

void fl__req_drop_handler(fl_net_req_t *r)
{
    call_abort(r);
    if (r->head_seen && !r->handed && !atomic_load(&r->responded)) {
        r->head_seen = 0;
        fl__req_unref(r);
    }
}

/* ---------------------------------------------------------------- responses */

static fl__resp_t *resp_new(int kind, int status, const fl_net_header_t *headers, size_t n,
                            const void *body, size_t len)
{
    fl__resp_t *resp = calloc(1, sizeof(*resp));
    if (!resp)
        return NULL;
    resp->kind = kind;
    resp->status = status;
    /* One block holds the header array and every string it points to. */
    size_t sz = n * sizeof(fl_net_header_t);
    for (size_t i = 0; i < n; i++)
        sz += strlen(headers[i].name) + strlen(headers[i].value) + 2;
    if (n) {
        resp->headers = malloc(sz);
        if (!resp->headers)
            goto fail;
        char *p = (char *)(resp->headers + n);
        for (size_t i = 0; i < n; i++) {
            size_t nl = strlen(headers[i].name) + 1, vl = strlen(headers[i].value) + 1;
            memcpy(p, headers[i].name, nl);
            resp->headers[i].name = p;
            p += nl;
            memcpy(p, headers[i].value, vl);
            resp->headers[i].value = p;
            p += vl;
        }
        resp->n_headers = n;
    }
    if (len) {
        resp->body = malloc(len);
        if (!resp->body)
            goto fail;
        memcpy(resp->body, body, len);
        resp->len = len;
    }
    return resp;
fail:
    fl__resp_free(resp);
    return NULL;
}

static void submit(fl_net_req_t *r, fl__resp_t *resp)
{
    fl_net_t *n = r->net;
    if (atomic_exchange(&r->responded, 1)) {
        fl_log(FL_LOG_ERROR, FL_NET_MODULE, "request answered twice, second answer dropped");
        fl__resp_free(resp);
        return;
    }
    r->resp = resp;
    pthread_mutex_lock(&n->mu);
    if (n->stopped) {
        /* No loop is left: every connection is gone, so this reference is the last one. */
        pthread_mutex_unlock(&n->mu);
        req_free(r);
        return;
    }
    r->qnext = NULL;
    if (n->q_tail)
        n->q_tail->qnext = r;
    else
        n->q_head = r;
    n->q_tail = r;
    /* Wake the loop under the lock: finish_stop closes the handle only after setting
     * stopped under this lock, so the handle is still open here. */
    uv_async_send(&n->async);
    pthread_mutex_unlock(&n->mu);
}

void fl_net_respond(fl_net_req_t *r, int status, const fl_net_header_t *headers, size_t n_headers,
                    const void *body, size_t len)
{
    if (!r)
        return;
    fl_net_header_t merged[32 + FL__MAX_EXTRA_RESP];
    if (r->n_extra_resp && n_headers <= 32) {
        /* Headers the handler attached in on_head (CORS, WWW-Authenticate) go on every
         * answer, errors included. */
        if (n_headers)
            memcpy(merged, headers, n_headers * sizeof(*headers));
        memcpy(merged + n_headers, r->extra_resp, r->n_extra_resp * sizeof(*headers));
        headers = merged;
        n_headers += r->n_extra_resp;
    }
    fl__resp_t *resp = resp_new(FL__RESP_HTTP, status, headers, n_headers, body, len);
    if (!resp)
        resp = resp_new(FL__RESP_HTTP, 500, NULL, 0, NULL, 0);
    submit(r, resp);
}

static fl__resp_t *grpc_resp_new(int grpc_status, const char *grpc_message, const void *details,
                                 size_t details_len, const void *msg, size_t msg_len)
{
    fl__resp_t *resp = resp_new(FL__RESP_GRPC, grpc_status, NULL, 0, NULL, 0);
    if (!resp)
        return NULL;
    if (grpc_status == FL_GRPC_OK) {
        resp->body = malloc(msg_len + 5);
        if (!resp->body)
            goto fail;
        resp->body[0] = 0;
        resp->body[1] = (uint8_t)(msg_len >> 24);
        resp->body[2] = (uint8_t)(msg_len >> 16);
        resp->body[3] = (uint8_t)(msg_len >> 8);
        resp->body[4] = (uint8_t)msg_len;
        if (msg_len)
            memcpy(resp->body + 5, msg, msg_len);
        resp->len = msg_len + 5;
    }
    if (grpc_message && grpc_message[0] &&
        !(resp->grpc_message = fl__grpc_pct_encode(grpc_message)))
        goto fail;
    if (details && details_len && !(resp->grpc_details = fl__b64_nopad(details, details_len)))
        goto fail;
    return resp;
fail:
    fl__resp_free(resp);
    return NULL;
}

void fl_net_grpc_respond(fl_net_req_t *r, int grpc_status, const char *grpc_message,
                         const void *details, size_t details_len, const void *msg, size_t msg_len)
{
    if (!r)
        return;
    fl__resp_t *resp = grpc_resp_new(grpc_status, grpc_message, details, details_len, msg, msg_len);
    if (!resp)
        resp = grpc_resp_new(FL_GRPC_INTERNAL, "out of memory", NULL, 0, NULL, 0);
    submit(r, resp);
}

int fl_net_req_add_response_header(fl_net_req_t *r, const char *name, const char *value)
{
    if (r->n_extra_resp >= FL__MAX_EXTRA_RESP)
        return FL_ERR_LIMIT;
    char *n = fl_arena_strdup(r->arena, name), *v = fl_arena_strdup(r->arena, value);
    if (!n || !v)
        return FL_ERR_NOMEM;
    r->extra_resp[r->n_extra_resp].name = n;
    r->extra_resp[r->n_extra_resp].value = v;
    r->n_extra_resp++;
    return FL_OK;
}

void fl__req_respond_direct(fl_net_req_t *r, int status, const char *msg)
{
    if (atomic_exchange(&r->responded, 1))
        return; /* the handler already answered; that answer goes out */
    call_abort(r);
    if (r->head_seen && !r->handed) {
        r->head_seen = 0;
        r->refs--; /* the handler will not get on_body; the conn ref keeps r alive */
    }
    if (r->is_grpc) {
        r->resp = grpc_resp_new(status, msg, NULL, 0, NULL, 0);
    } else {
        size_t len = msg ? strlen(msg) : 0;
        fl_net_header_t h = {"Content-Type", "text/plain; charset=utf-8"};
        r->resp = resp_new(FL__RESP_HTTP, status, &h, 1, msg, len);
    }
    if (r->resp && r->conn)
        r->conn->proto->on_response(r->conn, r);
}

void fl__net_drain_queue(fl_net_t *n)
{
    pthread_mutex_lock(&n->mu);
    fl_net_req_t *r = n->q_head;
    n->q_head = n->q_tail = NULL;
    pthread_mutex_unlock(&n->mu);
    while (r) {
        fl_net_req_t *next = r->qnext;
        if (r->conn && !r->conn->closing && r->resp)
            r->conn->proto->on_response(r->conn, r);
        fl__req_unref(r);
        r = next;
    }
}

/* ---------------------------------------------------------------- accessors */

const char *fl_net_req_method(const fl_net_req_t *r)
{
    return r->method;
}

const char *fl_net_req_path(const fl_net_req_t *r)
{
    return r->path;
}

const char *fl_net_req_query(const fl_net_req_t *r)
{
    return r->query;
}

const char *fl_net_req_header(const fl_net_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdrs; i++)
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    return NULL;
}

int fl_net_req_header_at(const fl_net_req_t *r, size_t i, const char **name, const char **value)
{
    if (i >= r->n_hdrs)
        return 0;
    *name = r->hdrs[i].name;
    *value = r->hdrs[i].value;
    return 1;
}

const uint8_t *fl_net_req_body(const fl_net_req_t *r, size_t *len)
{
    static const uint8_t empty[1];
    if (r->is_grpc) {
        *len = r->grpc_len;
        return r->body.data && r->grpc_off ? r->body.data + r->grpc_off : empty;
    }
    *len = r->body.len;
    return r->body.data ? r->body.data : empty;
}

void fl_net_req_drop_body(fl_net_req_t *r)
{
    fl_buf_dispose(&r->body);
    r->grpc_off = 0;
    r->grpc_len = 0;
}

int64_t fl_net_req_content_length(const fl_net_req_t *r)
{
    return r->content_length;
}

const char *fl_net_req_protocol(const fl_net_req_t *r)
{
    return r->protocol;
}

int fl_net_req_is_tls(const fl_net_req_t *r)
{
    return r->is_tls;
}

const char *fl_net_req_peer(const fl_net_req_t *r)
{
    return r->peer;
}

int fl_net_req_is_grpc(const fl_net_req_t *r)
{
    return r->is_grpc;
}

int fl_net_req_grpc_compressed(const fl_net_req_t *r)
{
    return r->grpc_compressed;
}

int64_t fl_net_req_grpc_timeout_ms(const fl_net_req_t *r)
{
    return r->grpc_timeout_ms;
}

void fl_net_req_set_data(fl_net_req_t *r, void *data)
{
    r->udata = data;
}

void *fl_net_req_get_data(const fl_net_req_t *r)
{
    return r->udata;
}

const char *fl_net_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "Unknown";
    }
}
