/* SPDX-License-Identifier: Apache-2.0 */
/* The server: one libuv loop on its own thread, listeners, connection lifecycle (read,
 * write, timers, half-close), protocol detection, the response queue and graceful stop. */
#include "net_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---------------------------------------------------------------- logging, date */

void fl__peer_log(fl_conn_t *c, const char *what, const char *detail)
{
    fl_listener_t *ls = c->ls;
    uint64_t now = fl_time_mono_ns();
    /* At most 5 lines per listener per 10 s: a misbehaving client must not flood the log. */
    if (now - ls->log_window_ns > 10000000000ull) {
        if (ls->log_count > 5)
            fl_log(FL_LOG_WARN, FL_NET_MODULE, "peer errors suppressed listener=%s count=%u",
                   ls->name, ls->log_count - 5);
        ls->log_window_ns = now;
        ls->log_count = 0;
    }
    if (++ls->log_count <= 5)
        fl_log(FL_LOG_WARN, FL_NET_MODULE, "%s listener=%s peer=%s detail=\"%s\"", what, ls->name,
               c->peer, detail ? detail : "");
}

const char *fl__net_date(fl_net_t *n)
{
    time_t t = time(NULL);
    if ((int64_t)t != n->date_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(n->date, sizeof(n->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        n->date_sec = (int64_t)t;
    }
    return n->date;
}

/* ---------------------------------------------------------------- server object */

fl_net_t *fl_net_new(const char *name)
{
    fl_net_t *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    snprintf(n->name, sizeof(n->name), "%s", name ? name : "net");
    if (uv_loop_init(&n->loop) != 0) {
        free(n);
        return NULL;
    }
    n->loop.data = n;
    pthread_mutex_init(&n->mu, NULL);
    atomic_init(&n->inflight, 0);
    atomic_init(&n->conn_gauge, 0);
    n->date_sec = -1;
    return n;
}

static void async_cb(uv_async_t *a);

static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    if (res->ai_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

static void on_connection(uv_stream_t *server, int status);

int fl_net_listen(fl_net_t *n, const fl_net_listen_opts_t *opts, char *err, size_t errlen)
{
    int rc = FL_ERR_INVALID;
    fl_listener_t *ls = NULL;
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = 0;
    if (!n || !opts || !opts->handler.on_body) {
        snprintf(err, errlen, "listen: missing server or on_body handler");
        goto fail;
    }
    if (n->started || n->n_ls >= FL_NET_MAX_LISTENERS) {
        snprintf(err, errlen, "listen: server already started or too many listeners");
        rc = FL_ERR_CONFLICT;
        goto fail;
    }
    ls = calloc(1, sizeof(*ls));
    if (!ls) {
        rc = FL_ERR_NOMEM;
        goto fail;
    }
    ls->net = n;
    ls->index = n->n_ls;
    ls->o = *opts;
    snprintf(ls->name, sizeof(ls->name), "%s", opts->name ? opts->name : "http");
    snprintf(ls->host, sizeof(ls->host), "%s", opts->host ? opts->host : "127.0.0.1");
    ls->o.name = ls->name;
    ls->o.host = ls->host;
    ls->o.tls = (fl_net_tls_opts_t){0}; /* the paths are only needed to build the context */
    if (!ls->o.max_body)
        ls->o.max_body = 64u << 20;
    if (!ls->o.max_header)
        ls->o.max_header = 64u << 10;
    if (!ls->o.max_connections)
        ls->o.max_connections = 4096;
    if (!ls->o.max_streams)
        ls->o.max_streams = 256;
    if (ls->o.idle_timeout_ms <= 0)
        ls->o.idle_timeout_ms = 120000;
    if (ls->o.header_timeout_ms <= 0)
        ls->o.header_timeout_ms = 30000;
    if (opts->tls.cert_file || opts->tls.key_file) {
        ls->ssl_ctx = fl__tls_server_ctx(&opts->tls, err, errlen);
        if (!ls->ssl_ctx)
            goto fail;
    }
    struct sockaddr_storage ss;
    if (opts->port < 0 || opts->port > 65535 || resolve(ls->host, opts->port, &ss) != 0) {
        snprintf(err, errlen, "listen %s: cannot resolve %s:%d", ls->name, ls->host, opts->port);
        goto fail;
    }
    uv_tcp_init(&n->loop, &ls->tcp);
    ls->tcp.data = ls;
    /* libuv sets SO_REUSEADDR on bind, so a restarted server rebinds at once. */
    int r = uv_tcp_bind(&ls->tcp, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&ls->tcp, 1024, on_connection);
    if (r != 0) {
        snprintf(err, errlen, "listen %s on %s:%d: %s", ls->name, ls->host, opts->port,
                 uv_strerror(r));
        uv_close((uv_handle_t *)&ls->tcp, NULL);
        uv_run(&n->loop, UV_RUN_NOWAIT);
        rc = FL_ERR_IO;
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&ls->tcp, (struct sockaddr *)&bound, &blen);
    ls->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    n->ls[n->n_ls++] = ls;
    fl_log(FL_LOG_INFO, FL_NET_MODULE,
           "listening listener=%s addr=%s:%d tls=%s mtls=%s h2c=%s max_body=%zu", ls->name,
           ls->host, ls->port, ls->ssl_ctx ? "on" : "off", opts->tls.client_ca_file ? "on" : "off",
           ls->o.allow_h2c ? "on" : "off", ls->o.max_body);
    return FL_OK;
fail:
    if (ls) {
        fl__tls_ctx_free(ls->ssl_ctx);
        free(ls);
    }
    if (err[0])
        fl_log(FL_LOG_ERROR, FL_NET_MODULE, "listen failed detail=\"%s\"", err);
    return rc;
}

int fl_net_bound_port(const fl_net_t *n, int i)
{
    if (!n || i < 0 || i >= n->n_ls)
        return -1;
    return n->ls[i]->port;
}

size_t fl_net_inflight(const fl_net_t *n)
{
    return n ? atomic_load(&((fl_net_t *)n)->inflight) : 0;
}

size_t fl_net_connections(const fl_net_t *n)
{
    return n ? atomic_load(&((fl_net_t *)n)->conn_gauge) : 0;
}

static void *loop_main(void *arg)
{
    fl_net_t *n = arg;
    n->loop_tid = pthread_self();
    uv_run(&n->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int ensure_async(fl_net_t *n)
{
    if (n->async.data)
        return FL_OK;
    if (uv_async_init(&n->loop, &n->async, async_cb) != 0)
        return FL_ERR_IO;
    n->async.data = n;
    uv_timer_init(&n->loop, &n->stop_timer);
    n->stop_timer.data = n;
    return FL_OK;
}

int fl_net_start(fl_net_t *n)
{
    if (!n || n->started || n->shut_done)
        return FL_ERR_CONFLICT;
    if (ensure_async(n) != FL_OK)
        return FL_ERR_IO;
    n->started = 1;
    if (pthread_create(&n->thread, NULL, loop_main, n) != 0) {
        n->started = 0;
        return FL_ERR_IO;
    }
    return FL_OK;
}

/* ---------------------------------------------------------------- connections */

static void conn_handle_closed(uv_handle_t *h)
{
    fl_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    fl_net_t *n = c->net;
    fl_buf_dispose(&c->wbuf);
    if (c->proto && c->proto->dispose)
        c->proto->dispose(c);
    c->proto_state = NULL;
    if (c->tr && c->tr->dispose)
        c->tr->dispose(c);
    if (c->is_virtual) {
        c->next = n->vdead;
        n->vdead = c;
    } else {
        fl_buf_dispose(&c->vout);
        free(c);
    }
}

static void finish_stop(fl_net_t *n);

static void stop_timer_cb(uv_timer_t *t)
{
    fl_net_t *n = t->data;
    if (n->n_conns == 0) {
        finish_stop(n);
        return;
    }
    /* The grace period is over: close whatever is left. */
    fl_log(FL_LOG_WARN, FL_NET_MODULE, "shutdown timeout, closing connections server=%s count=%zu",
           n->name, n->n_conns);
    for (fl_conn_t *c = n->conns, *next; c; c = next) {
        next = c->next;
        fl__conn_close(c);
    }
}

void fl__conn_close(fl_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    fl_net_t *n = c->net;
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    n->n_conns--;
    atomic_fetch_sub(&n->conn_gauge, 1);
    c->ls->n_conns--;
    if (n->stopping && n->n_conns == 0)
        uv_timer_start(&n->stop_timer, stop_timer_cb, 0, 0);
    uv_timer_stop(&c->timer);
    if (c->is_virtual) {
        c->vclosed = 1;
        c->handles_open = 1;
    } else {
        c->handles_open = 2;
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    }
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void update_reading(fl_conn_t *c);

static void read_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fl_conn_t *c = h->data;
    buf->base = (char *)c->net->rbuf;
    buf->len = sizeof(c->net->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fl_conn_t *c = s->data;
    if (c->closing)
        return;
    if (nread > 0) {
        if (c->lingering)
            return; /* half-closed: discard whatever the client still sends */
        if (c->tr->recv(c, (const uint8_t *)buf->base, (size_t)nread) < 0)
            fl__conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->eof = 1;
    if (nread != UV_EOF || c->lingering || !c->proto->on_data ||
        c->proto->on_data(c, NULL, 0) < 0) {
        fl__conn_close(c);
        return;
    }
    update_reading(c);
}

static void update_reading(fl_conn_t *c)
{
    if (c->is_virtual || c->closing)
        return;
    int want = c->lingering || (!c->bp_paused && !c->proto_paused && !c->eof);
    if (want)
        uv_read_start((uv_stream_t *)&c->tcp, read_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void fl__conn_read_pause(fl_conn_t *c, int pause)
{
    c->proto_paused = pause;
    update_reading(c);
}

void fl__conn_deliver(fl_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->closing || c->lingering || len == 0)
        return;
    if (c->proto->on_data(c, data, len) < 0)
        fl__conn_close(c);
}

static void timer_cb(uv_timer_t *t);

void fl__conn_raw_queue(fl_conn_t *c, const void *data, size_t len)
{
    if (c->closing || c->wfailed)
        return;
    if (fl_buf_append(&c->wbuf, data, len) != FL_OK) {
        /* Out of memory. Closing now would free the protocol state under the caller, which
         * is in the middle of writing: drop this and every later write, and close from the
         * loop instead (a flush before then may still send the earlier output; either way
         * the peer sees the output cut short and the connection closed). */
        c->wfailed = 1;
        c->close_after_flush = 1;
        uv_timer_start(&c->timer, timer_cb, 0, 0);
    }
}

int fl__conn_send(fl_conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return FL_ERR_CLOSED;
    return c->tr->send(c, data, len);
}

static void timer_cb(uv_timer_t *t)
{
    fl_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->lingering || c->close_after_flush) {
        fl__conn_close(c);
        return;
    }
    c->proto->on_timeout(c);
}

void fl__conn_set_timer(fl_conn_t *c, int ms)
{
    if (c->closing || c->lingering || c->wfailed) /* wfailed: the close timer is armed */
        return;
    if (ms <= 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, timer_cb, (uint64_t)ms, 0);
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    fl_conn_t *c = req->data;
    free(req);
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        fl__conn_close(c);
        return;
    }
    /* Keep reading and discarding until the client closes, so unread request bytes do not
     * turn our close into a reset that would destroy the response in flight. */
    c->lingering = 1;
    uv_timer_start(&c->timer, timer_cb, FL_NET_LINGER_MS, 0);
    update_reading(c);
}

static void drained(fl_conn_t *c)
{
    if (c->close_after_flush == 1 || (c->close_after_flush && c->is_virtual)) {
        fl__conn_close(c);
        return;
    }
    if (c->close_after_flush == 2) {
        c->close_after_flush = 3; /* shutdown in progress */
        uv_shutdown_t *req = malloc(sizeof(*req));
        if (!req) {
            fl__conn_close(c);
            return;
        }
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown_done) != 0) {
            free(req);
            fl__conn_close(c);
        }
        return;
    }
    if (c->close_after_flush == 3)
        return;
    if (c->proto->on_drain)
        c->proto->on_drain(c);
}

typedef struct wreq {
    uv_write_t w;
    fl_conn_t *c;
    uint8_t *data;
    size_t len;
} wreq_t;

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    fl_conn_t *c = wr->c;
    c->wpending -= wr->len;
    free(wr->data);
    free(wr);
    if (c->closing)
        return;
    if (status < 0) {
        fl__conn_close(c);
        return;
    }
    if (c->bp_paused && c->wpending < FL_NET_WRITE_HIGH / 2) {
        c->bp_paused = 0;
        update_reading(c);
    }
    if (c->wpending == 0 && c->wbuf.len == 0)
        drained(c);
}

void fl__conn_flush(fl_conn_t *c)
{
    if (c->closing)
        return;
    if (c->wbuf.len == 0) {
        /* Nothing new: only a pending close needs the drained state (on_drain is for
         * completed writes, so a protocol flushing from on_drain cannot loop). */
        if (c->wpending == 0 && c->close_after_flush)
            drained(c);
        return;
    }
    if (c->is_virtual) {
        fl_buf_append(&c->vout, c->wbuf.data, c->wbuf.len);
        fl_buf_reset(&c->wbuf);
        drained(c);
        return;
    }
    wreq_t *wr = malloc(sizeof(*wr));
    if (!wr) {
        fl__conn_close(c);
        return;
    }
    wr->c = c;
    wr->data = fl_buf_take(&c->wbuf, &wr->len);
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)wr->len);
    c->wpending += wr->len;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->wpending -= wr->len;
        free(wr->data);
        free(wr);
        fl__conn_close(c);
        return;
    }
    if (c->wpending > FL_NET_WRITE_HIGH && !c->bp_paused) {
        c->bp_paused = 1;
        update_reading(c);
    }
}

void fl__conn_close_after_flush(fl_conn_t *c, int half_close)
{
    if (c->closing || c->close_after_flush)
        return;
    c->close_after_flush = half_close ? 2 : 1;
    fl__conn_flush(c);
}

/* ---------------------------------------------------------------- protocol detection */

static int detect_on_data(fl_conn_t *c, const uint8_t *data, size_t len)
{
    if (!data)
        return -1; /* EOF before a request */
    if (strcmp(c->alpn, "h2") == 0) {
        if (fl__h2_start(c) < 0)
            return -1;
        return c->proto->on_data(c, data, len);
    }
    size_t plen = sizeof(h2_preface) - 1;
    size_t take = len < plen - c->det_len ? len : plen - c->det_len;
    memcpy(c->det + c->det_len, data, take);
    c->det_len += take;
    int is_h2 = memcmp(c->det, h2_preface, c->det_len) == 0;
    if (is_h2 && c->det_len < plen)
        return 0; /* need more bytes to decide */
    int rc = is_h2 && (c->ls->o.allow_h2c || c->is_tls) ? fl__h2_start(c) : fl__h1_start(c);
    if (rc < 0)
        return -1;
    /* Replay the detection bytes, then the rest of this chunk. */
    if (c->proto->on_data(c, c->det, c->det_len) < 0)
        return -1;
    if (len > take && !c->closing)
        return c->proto->on_data(c, data + take, len - take);
    return 0;
}

static void detect_on_timeout(fl_conn_t *c)
{
    fl__peer_log(c, "no request before the header timeout", NULL);
    fl__conn_close(c);
}

static void detect_on_shutdown(fl_conn_t *c)
{
    fl__conn_close(c);
}

static const fl__proto_ops_t proto_detect = {
    .name = "detect",
    .on_data = detect_on_data,
    .on_timeout = detect_on_timeout,
    .on_shutdown = detect_on_shutdown,
};

void fl__conn_set_proto(fl_conn_t *c, const fl__proto_ops_t *p)
{
    c->proto = p;
}

static fl_conn_t *conn_new(fl_listener_t *ls)
{
    fl_net_t *n = ls->net;
    fl_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->net = n;
    c->ls = ls;
    fl_buf_init(&c->wbuf, 0);
    fl_buf_init(&c->vout, 0);
    uv_timer_init(&n->loop, &c->timer);
    c->timer.data = c;
    c->tcp.data = c;
    c->tr = &fl__transport_plain;
    c->proto = &proto_detect;
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->n_conns++;
    atomic_fetch_add(&n->conn_gauge, 1);
    ls->n_conns++;
    return c;
}

static void close_free_cb(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    fl_listener_t *ls = server->data;
    fl_net_t *n = ls->net;
    if (status < 0 || n->stopping)
        return;
    if (ls->n_conns >= ls->o.max_connections) {
        /* Accept and close at once, so the client is told instead of left in the backlog. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (!t)
            return;
        uv_tcp_init(&n->loop, t);
        uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, close_free_cb);
        uint64_t now = fl_time_mono_ns();
        if (now - ls->log_window_ns > 10000000000ull) {
            ls->log_window_ns = now;
            ls->log_count = 0;
        }
        if (++ls->log_count <= 5)
            fl_log(FL_LOG_WARN, FL_NET_MODULE, "connection limit reached listener=%s max=%zu",
                   ls->name, ls->o.max_connections);
        return;
    }
    fl_conn_t *c = conn_new(ls);
    if (!c)
        return;
    uv_tcp_init(&n->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        fl__conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int slen = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    if (ls->ssl_ctx && fl__tls_attach(c) != FL_OK) {
        fl__conn_close(c);
        return;
    }
    fl__conn_set_timer(c, ls->o.header_timeout_ms);
    update_reading(c);
}

/* ---------------------------------------------------------------- queue and stop */

static void begin_stop(fl_net_t *n)
{
    n->stopping = 1;
    for (int i = 0; i < n->n_ls; i++)
        uv_close((uv_handle_t *)&n->ls[i]->tcp, NULL);
    fl_log(FL_LOG_INFO, FL_NET_MODULE, "shutting down server=%s connections=%zu inflight=%zu",
           n->name, n->n_conns, fl_net_inflight(n));
    for (fl_conn_t *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (c->proto->on_shutdown)
            c->proto->on_shutdown(c);
        else
            fl__conn_close(c);
    }
    uv_timer_start(&n->stop_timer, stop_timer_cb,
                   n->n_conns ? (uint64_t)(n->stop_timeout_ms > 0 ? n->stop_timeout_ms : 0) : 0, 0);
}

static void finish_stop(fl_net_t *n)
{
    if (n->stopped)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopped = 1;
    pthread_mutex_unlock(&n->mu);
    fl__net_drain_queue(n);
    uv_close((uv_handle_t *)&n->async, NULL);
    uv_close((uv_handle_t *)&n->stop_timer, NULL);
}

static void async_cb(uv_async_t *a)
{
    fl_net_t *n = a->data;
    fl__net_drain_queue(n);
    pthread_mutex_lock(&n->mu);
    int stop = n->stop_requested;
    pthread_mutex_unlock(&n->mu);
    if (stop && !n->stopping)
        begin_stop(n);
}

void fl_net_shutdown(fl_net_t *n, int timeout_ms)
{
    if (!n || n->shut_done)
        return;
    if (ensure_async(n) != FL_OK) {
        n->shut_done = 1;
        return;
    }
    pthread_mutex_lock(&n->mu);
    n->stop_requested = 1;
    n->stop_timeout_ms = timeout_ms;
    pthread_mutex_unlock(&n->mu);
    uv_async_send(&n->async);
    if (n->started)
        pthread_join(n->thread, NULL);
    else
        uv_run(&n->loop, UV_RUN_DEFAULT); /* never started: stop on the caller's thread */
    n->shut_done = 1;
}

void fl_net_free(fl_net_t *n)
{
    if (!n)
        return;
    fl_net_shutdown(n, 0);
    for (fl_conn_t *c = n->vdead, *next; c; c = next) {
        next = c->next;
        fl_buf_dispose(&c->vout);
        free(c);
    }
    uv_run(&n->loop, UV_RUN_NOWAIT);
    uv_loop_close(&n->loop);
    for (int i = 0; i < n->n_ls; i++) {
        fl__tls_ctx_free(n->ls[i]->ssl_ctx);
        free(n->ls[i]);
    }
    pthread_mutex_destroy(&n->mu);
    free(n);
}

/* ---------------------------------------------------------------- virtual conns (tests) */

static int virt_recv(fl_conn_t *c, const uint8_t *data, size_t len)
{
    fl__conn_deliver(c, data, len);
    return 0;
}

static int virt_send(fl_conn_t *c, const void *data, size_t len)
{
    fl__conn_raw_queue(c, data, len);
    return 0;
}

static const fl__transport_ops_t transport_virtual = {
    .name = "virtual", .recv = virt_recv, .send = virt_send};

fl_conn_t *fl__vconn_new(fl_net_t *n, int listener)
{
    if (!n || listener < 0 || listener >= n->n_ls || n->started)
        return NULL;
    ensure_async(n);
    fl_conn_t *c = conn_new(n->ls[listener]);
    if (!c)
        return NULL;
    c->is_virtual = 1;
    c->tr = &transport_virtual;
    snprintf(c->peer, sizeof(c->peer), "virtual:0");
    return c;
}

void fl__vconn_feed(fl_conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return;
    if (len == 0) {
        c->eof = 1;
        if (c->proto->on_data(c, NULL, 0) < 0)
            fl__conn_close(c);
        return;
    }
    if (c->tr->recv(c, data, len) < 0)
        fl__conn_close(c);
    fl__conn_flush(c);
}

const fl_buf_t *fl__vconn_output(fl_conn_t *c)
{
    return &c->vout;
}

int fl__vconn_closed(fl_conn_t *c)
{
    return c->vclosed;
}

void fl__net_run_nowait(fl_net_t *n)
{
    uv_run(&n->loop, UV_RUN_NOWAIT);
}
