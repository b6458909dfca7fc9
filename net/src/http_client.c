/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking HTTP/1.1 client on one keep-alive connection: reconnects when the server closed
 * it, reads Content-Length, chunked and close-delimited responses with http-parser. */
#include "net_int.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fl_http_client {
    fl_http_client_opts_t o;
    char host[256];
    char *ca_file, *cert_file, *key_file;
    fl__cio_t io;
};

typedef struct resp_parse {
    fl_http_response_t *resp;
    int in_value;
    int done;
    int is_head;
    int nomem;
} resp_parse_t;

fl_http_client_t *fl_http_client_new(const fl_http_client_opts_t *opts)
{
    if (!opts || !opts->host || opts->port <= 0)
        return NULL;
    fl_http_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->o = *opts;
    snprintf(c->host, sizeof(c->host), "%s", opts->host);
    c->o.host = c->host;
    c->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    c->cert_file = opts->cert_file ? strdup(opts->cert_file) : NULL;
    c->key_file = opts->key_file ? strdup(opts->key_file) : NULL;
    c->o.ca_file = c->ca_file;
    c->o.cert_file = c->cert_file;
    c->o.key_file = c->key_file;
    if (c->o.timeout_ms <= 0)
        c->o.timeout_ms = 10000;
    if (!c->o.max_response)
        c->o.max_response = 64u << 20;
    fl__cio_init(&c->io);
    return c;
}

void fl_http_client_free(fl_http_client_t *c)
{
    if (!c)
        return;
    fl__cio_close(&c->io);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

/* ---------------------------------------------------------------- response parsing */

static int rp_header_field(http_parser *p, const char *at, size_t len)
{
    resp_parse_t *rp = p->data;
    fl_buf_t *h = &rp->resp->headers;
    if (rp->in_value || h->len == 0 || h->data[h->len - 1] == '\n') {
        if (rp->in_value && fl_buf_putc(h, '\n') != FL_OK)
            rp->nomem = 1;
        rp->in_value = 0;
    }
    for (size_t i = 0; i < len; i++)
        if (fl_buf_putc(h, tolower((unsigned char)at[i])) != FL_OK)
            rp->nomem = 1;
    return rp->nomem ? -1 : 0;
}

static int rp_header_value(http_parser *p, const char *at, size_t len)
{
    resp_parse_t *rp = p->data;
    fl_buf_t *h = &rp->resp->headers;
    if (!rp->in_value && fl_buf_puts(h, ": ") != FL_OK)
        rp->nomem = 1;
    rp->in_value = 1;
    if (fl_buf_append(h, at, len) != FL_OK)
        rp->nomem = 1;
    return rp->nomem ? -1 : 0;
}

static int rp_headers_complete(http_parser *p)
{
    resp_parse_t *rp = p->data;
    if (rp->in_value && fl_buf_putc(&rp->resp->headers, '\n') != FL_OK)
        return -1;
    rp->in_value = 0;
    rp->resp->status = p->status_code;
    /* HEAD answers and interim 1xx answers carry no body. */
    return rp->is_head || p->status_code / 100 == 1 ? 1 : 0;
}

static int rp_body(http_parser *p, const char *at, size_t len)
{
    resp_parse_t *rp = p->data;
    if (fl_buf_append(&rp->resp->body, at, len) != FL_OK) {
        rp->nomem = 1;
        return -1;
    }
    return 0;
}

static int rp_message_complete(http_parser *p)
{
    resp_parse_t *rp = p->data;
    if (p->status_code / 100 == 1) {
        /* 100 Continue: the real answer follows */
        fl_buf_reset(&rp->resp->headers);
        return 0;
    }
    rp->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings rp_settings = {
    .on_header_field = rp_header_field,
    .on_header_value = rp_header_value,
    .on_headers_complete = rp_headers_complete,
    .on_body = rp_body,
    .on_message_complete = rp_message_complete,
};

/* ---------------------------------------------------------------- requests */

static int has_header(const fl_net_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return 1;
    return 0;
}

static int ensure_connected(fl_http_client_t *c, uint64_t deadline, int *reused)
{
    *reused = 0;
    if (c->io.fd >= 0) {
        if (!fl__cio_stale(&c->io)) {
            *reused = 1;
            return FL_OK;
        }
        fl__cio_close(&c->io);
    }
    char err[256];
    fl__cio_opts_t co = {.host = c->o.host,
                         .port = c->o.port,
                         .tls = c->o.tls,
                         .verify = !c->o.insecure,
                         .ca_file = c->o.ca_file,
                         .cert_file = c->o.cert_file,
                         .key_file = c->o.key_file,
                         .alpn = "\x08http/1.1",
                         .alpn_len = 9};
    int rc = fl__cio_connect(&c->io, &co, deadline, err, sizeof(err));
    if (rc != FL_OK)
        fl_log(FL_LOG_DEBUG, FL_NET_MODULE, "client connect failed detail=\"%s\"", err);
    return rc == FL_ERR_TIMEOUT ? rc : rc != FL_OK ? FL_ERR_IO : FL_OK;
}

/* One attempt; *retry is set when a reused connection died before any response byte. */
static int attempt(fl_http_client_t *c, const fl_buf_t *req, int is_head, uint64_t deadline,
                   fl_http_response_t *resp, int *retry)
{
    int reused = 0;
    *retry = 0;
    int rc = ensure_connected(c, deadline, &reused);
    if (rc != FL_OK)
        return rc;
    rc = fl__cio_write(&c->io, req->data, req->len, deadline);
    if (rc != FL_OK) {
        fl__cio_close(&c->io);
        *retry = reused && rc == FL_ERR_IO;
        return rc;
    }
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    resp_parse_t rp = {.resp = resp, .is_head = is_head};
    p.data = &rp;
    uint8_t buf[16384];
    size_t total = 0;
    while (!rp.done) {
        long n = fl__cio_read(&c->io, buf, sizeof(buf), deadline);
        if (n < 0) {
            fl__cio_close(&c->io);
            *retry = reused && total == 0 && n == FL_ERR_IO;
            return (int)n;
        }
        if (n == 0) {
            /* EOF: ends a close-delimited body, or the server dropped an idle connection */
            if (total == 0) {
                fl__cio_close(&c->io);
                *retry = reused;
                return FL_ERR_IO;
            }
            http_parser_execute(&p, &rp_settings, NULL, 0);
            fl__cio_close(&c->io);
            return rp.done ? FL_OK : FL_ERR_PROTOCOL;
        }
        total += (size_t)n;
        size_t got = http_parser_execute(&p, &rp_settings, (const char *)buf, (size_t)n);
        enum http_errno e = HTTP_PARSER_ERRNO(&p);
        if (rp.nomem) {
            fl__cio_close(&c->io);
            return FL_ERR_LIMIT;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            fl__cio_close(&c->io);
            return FL_ERR_PROTOCOL;
        }
        (void)got;
    }
    if (!http_should_keep_alive(&p))
        fl__cio_close(&c->io);
    return FL_OK;
}

int fl_http_client_request(fl_http_client_t *c, const char *method, const char *path,
                           const fl_net_header_t *headers, size_t n_headers, const void *body,
                           size_t len, fl_http_response_t *resp)
{
    fl_buf_init(&resp->headers, 0);
    fl_buf_init(&resp->body, c ? c->o.max_response : 0);
    resp->status = 0;
    if (!c || !method || !path)
        return FL_ERR_INVALID;
    uint64_t deadline = fl_time_mono_ns() + (uint64_t)c->o.timeout_ms * 1000000ull;
    fl_buf_t req;
    fl_buf_init(&req, 0);
    fl_buf_printf(&req, "%s %s HTTP/1.1\r\n", method, path);
    if (!has_header(headers, n_headers, "Host"))
        fl_buf_printf(&req, "Host: %s:%d\r\n", c->o.host, c->o.port);
    for (size_t i = 0; i < n_headers; i++)
        fl_buf_printf(&req, "%s: %s\r\n", headers[i].name, headers[i].value);
    /* With a caller-supplied Transfer-Encoding the body is sent as given (already framed). */
    if (!has_header(headers, n_headers, "Content-Length") &&
        !has_header(headers, n_headers, "Transfer-Encoding") &&
        (len || (strcmp(method, "GET") && strcmp(method, "HEAD"))))
        fl_buf_printf(&req, "Content-Length: %zu\r\n", len);
    int rc = fl_buf_puts(&req, "\r\n");
    if (rc == FL_OK && len)
        rc = fl_buf_append(&req, body, len);
    if (rc != FL_OK) {
        fl_buf_dispose(&req);
        return FL_ERR_NOMEM;
    }
    int is_head = strcmp(method, "HEAD") == 0;
    int retry = 0;
    for (int i = 0; i < 2; i++) {
        fl_buf_reset(&resp->headers);
        fl_buf_reset(&resp->body);
        resp->status = 0;
        rc = attempt(c, &req, is_head, deadline, resp, &retry);
        if (rc == FL_OK || !retry)
            break;
    }
    fl_buf_dispose(&req);
    return rc;
}

const char *fl_http_response_header(const fl_http_response_t *resp, const char *name, char *out,
                                    size_t outlen)
{
    if (!resp->headers.data || !outlen)
        return NULL;
    size_t nl = strlen(name);
    const char *p = (const char *)resp->headers.data;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return out;
        }
        p = *eol ? eol + 1 : eol;
    }
    return NULL;
}

void fl_http_response_dispose(fl_http_response_t *resp)
{
    if (!resp)
        return;
    fl_buf_dispose(&resp->headers);
    fl_buf_dispose(&resp->body);
}
