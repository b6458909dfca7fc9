/* SPDX-License-Identifier: Apache-2.0 */
/* net HTTP/2, gRPC and TLS tests: scripted bytes into a socketless connection, the captured
 * gRPC exporter transcript over a real socket, the gRPC client, 1,000 streams, flow control,
 * TLS with ALPN and mTLS using certificates made at runtime with the openssl CLI. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "net_int.h" /* fl__vconn_* test hooks */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- test server */

typedef struct tsrv {
    fl_net_t *n;
    int port;
    atomic_int heads, bodies;
    pthread_mutex_t mu;
    uint8_t *payload;
    size_t payload_len;
    int compressed;
    int64_t timeout_ms;
    char protocol[16];
    int is_tls;
    char path[256];
} tsrv_t;

static const uint8_t details_bytes[] = {0x08, 0x03, 0x12, 0x00, 0xff, 0x00, 0x7f, 0x41};
static const char fail_msg[] = "bad input: 100% wrong\nline two \xc3\xa9";

static void h_body(fl_net_req_t *r, void *ud)
{
    tsrv_t *t = ud;
    size_t len;
    const uint8_t *b = fl_net_req_body(r, &len);
    pthread_mutex_lock(&t->mu);
    free(t->payload);
    t->payload = malloc(len + 1);
    memcpy(t->payload, b, len);
    t->payload_len = len;
    t->compressed = fl_net_req_grpc_compressed(r);
    t->timeout_ms = fl_net_req_grpc_timeout_ms(r);
    snprintf(t->protocol, sizeof(t->protocol), "%s", fl_net_req_protocol(r));
    snprintf(t->path, sizeof(t->path), "%s", fl_net_req_path(r));
    t->is_tls = fl_net_req_is_tls(r);
    pthread_mutex_unlock(&t->mu);
    atomic_fetch_add(&t->bodies, 1);
    if (fl_net_req_is_grpc(r)) {
        if (strstr(fl_net_req_path(r),
                   "TraceService/Export")) /* like ExportTraceServiceResponse{} */
            fl_net_grpc_respond(r, FL_GRPC_OK, NULL, NULL, 0, NULL, 0);
        else if (strcmp(fl_net_req_path(r), "/svc/Fail") == 0)
            fl_net_grpc_respond(r, FL_GRPC_INVALID_ARGUMENT, fail_msg, details_bytes,
                                sizeof(details_bytes), NULL, 0);
        else
            fl_net_grpc_respond(r, FL_GRPC_OK, NULL, NULL, 0, b, len);
        return;
    }
    fl_net_header_t h[] = {{"X-Proto", fl_net_req_protocol(r)},
                           {"Content-Type", "application/octet-stream"},
                           {"Connection", "keep-alive"}};
    fl_net_respond(r, 200, h, 3, b, len);
}

static int h_head(fl_net_req_t *r, void *ud)
{
    tsrv_t *t = ud;
    atomic_fetch_add(&t->heads, 1);
    if (strcmp(fl_net_req_path(r), "/svc/Busy") == 0) {
        fl_net_grpc_respond(r, FL_GRPC_UNAVAILABLE, "queue full", NULL, 0, NULL, 0);
        return FL_NET_RESPONDED;
    }
    return FL_NET_READ_BODY;
}

static fl_net_listen_opts_t base_opts(tsrv_t *t)
{
    fl_net_listen_opts_t o = {.name = "h2", .host = "127.0.0.1", .allow_h2c = 1};
    o.handler.on_head = h_head;
    o.handler.on_body = h_body;
    o.handler.ud = t;
    return o;
}

static void srv_init(tsrv_t *t, fl_net_listen_opts_t *o, int start)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->n = fl_net_new("test-h2");
    char err[256];
    int rc = fl_net_listen(t->n, o, err, sizeof(err));
    if (rc != FL_OK)
        fprintf(stderr, "listen: %s\n", err);
    assert_int_equal(rc, FL_OK);
    t->port = fl_net_bound_port(t->n, 0);
    if (start)
        assert_int_equal(fl_net_start(t->n), FL_OK);
}

static void srv_stop(tsrv_t *t)
{
    fl_net_shutdown(t->n, 2000);
    fl_net_free(t->n);
    free(t->payload);
    pthread_mutex_destroy(&t->mu);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static uint8_t *fixture(const char *rel, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/%s", FL_TEST_DATA_DIR, rel);
    return read_file(path, len);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- frame reading */

typedef struct frames {
    int n;
    uint8_t type[4096], flags[4096];
    int32_t sid[4096];
    uint32_t len[4096];
    const uint8_t *p[4096];
    size_t consumed;
} frames_t;

static void parse_frames(const uint8_t *b, size_t n, size_t skip, frames_t *f)
{
    memset(f, 0, sizeof(*f));
    size_t off = skip;
    while (n - off >= 9 && f->n < 4096) {
        uint32_t len = (uint32_t)b[off] << 16 | (uint32_t)b[off + 1] << 8 | b[off + 2];
        if (n - off - 9 < len)
            break;
        f->len[f->n] = len;
        f->type[f->n] = b[off + 3];
        f->flags[f->n] = b[off + 4];
        f->sid[f->n] = (int32_t)(((uint32_t)b[off + 5] << 24 | (uint32_t)b[off + 6] << 16 |
                                  (uint32_t)b[off + 7] << 8 | b[off + 8]) &
                                 0x7fffffff);
        f->p[f->n] = b + off + 9;
        f->n++;
        off += 9 + len;
    }
    f->consumed = off;
}

/* Decode every HEADERS block (in order, one HPACK context) into "name: value\n" lines. */
static void decode_headers(const frames_t *f, int32_t sid, char *out, size_t cap)
{
    nghttp2_hd_inflater *inf;
    assert_int_equal(nghttp2_hd_inflate_new(&inf), 0);
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->type[i] != NGHTTP2_HEADERS)
            continue;
        const uint8_t *in = f->p[i];
        size_t inlen = f->len[i];
        for (;;) {
            nghttp2_nv nv;
            int fl = 0;
            ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &fl, in, inlen, 1);
            assert_true(rv >= 0);
            in += rv;
            inlen -= (size_t)rv;
            if ((fl & NGHTTP2_HD_INFLATE_EMIT) && f->sid[i] == sid)
                o += (size_t)snprintf(out + o, cap - o, "%.*s: %.*s\n", (int)nv.namelen, nv.name,
                                      (int)nv.valuelen, nv.value);
            if (fl & NGHTTP2_HD_INFLATE_FINAL) {
                nghttp2_hd_inflate_end_headers(inf);
                break;
            }
            if (inlen == 0 && !(fl & NGHTTP2_HD_INFLATE_EMIT))
                break;
        }
    }
    nghttp2_hd_inflate_del(inf);
}

static int count_type(const frames_t *f, int type, int32_t sid)
{
    int k = 0;
    for (int i = 0; i < f->n; i++)
        if (f->type[i] == type && (sid < 0 || f->sid[i] == sid))
            k++;
    return k;
}

/* ---------------------------------------------------------------- scripted, no sockets */

static void feed_fixture_vconn(const char *wire, const char *body, size_t piece, int gz)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.max_streams = 77;
    srv_init(&t, &o, 0);
    size_t wlen, blen;
    uint8_t *w = fixture(wire, &wlen);
    uint8_t *want = fixture(body, &blen);
    fl_conn_t *c = fl__vconn_new(t.n, 0);
    assert_non_null(c);
    for (size_t off = 0; off < wlen; off += piece)
        fl__vconn_feed(c, w + off, wlen - off < piece ? wlen - off : piece);
    for (int i = 0; i < 3; i++)
        fl__net_run_nowait(t.n); /* delivers the queued response */
    assert_int_equal(atomic_load(&t.heads), 1);
    assert_int_equal(atomic_load(&t.bodies), 1);
    /* the handler saw the message without its 5-byte prefix */
    assert_int_equal(t.payload_len, blen - 5);
    assert_memory_equal(t.payload, want + 5, blen - 5);
    assert_int_equal(t.compressed, gz);
    assert_true(t.timeout_ms > 9900 && t.timeout_ms <= 9999); /* "99xxm" in the captures */
    assert_string_equal(t.protocol, "h2c");
    assert_string_equal(t.path, "/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    /* what went back: SETTINGS with our stream limit, a connection WINDOW_UPDATE, then
     * HEADERS, one DATA frame with the prefixed echo, trailers with grpc-status 0 */
    const fl_buf_t *out = fl__vconn_output(c);
    frames_t *f = malloc(sizeof(*f));
    parse_frames(out->data, out->len, 0, f);
    assert_int_equal(f->consumed, out->len);
    assert_int_equal(f->type[0], NGHTTP2_SETTINGS);
    if (getenv("FL_TEST_DEBUG"))
        for (int i = 0; i < f->n; i++)
            fprintf(stderr, "frame type=%d flags=%d sid=%d len=%u\n", f->type[i], f->flags[i],
                    f->sid[i], f->len[i]);
    int found = 0;
    for (uint32_t i = 0; i + 6 <= f->len[0]; i += 6) {
        const uint8_t *e = f->p[0] + i;
        if ((e[0] << 8 | e[1]) == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
            found = (e[2] << 24 | e[3] << 16 | e[4] << 8 | e[5]) == 77;
    }
    assert_true(found);
    assert_true(count_type(f, NGHTTP2_WINDOW_UPDATE, 0) >= 1);
    assert_int_equal(count_type(f, NGHTTP2_HEADERS, 1), 2);
    assert_true(count_type(f, NGHTTP2_DATA, 1) >= 1);
    size_t data_total = 0;
    for (int i = 0; i < f->n; i++)
        if (f->type[i] == NGHTTP2_DATA && f->sid[i] == 1)
            data_total += f->len[i];
    assert_int_equal(data_total, 5); /* the prefix of an empty response message */
    char hdrs[4096];
    decode_headers(f, 1, hdrs, sizeof(hdrs));
    assert_non_null(strstr(hdrs, ":status: 200\n"));
    assert_non_null(strstr(hdrs, "content-type: application/grpc\n"));
    assert_non_null(strstr(hdrs, "grpc-status: 0\n"));
    free(f);
    fl_net_free(t.n);
    free(t.payload);
    free(w);
    free(want);
    pthread_mutex_destroy(&t.mu);
}

static void test_net_h2_scripted_fixture(void **state)
{
    feed_fixture_vconn("wire/grpc/healthy.c2s.bin", "grpc/healthy.body", 1 << 20, 0);
    feed_fixture_vconn("wire/grpc/healthy.c2s.bin", "grpc/healthy.body", 1, 0);
    feed_fixture_vconn("wire/grpc/healthy.gz.c2s.bin", "grpc/healthy.gz.body", 1000, 1);
}

static void test_net_h2_scripted_garbage(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    srv_init(&t, &o, 0);
    /* a valid preface, then a frame that makes no sense: DATA on stream 0 */
    fl_conn_t *c = fl__vconn_new(t.n, 0);
    static const uint8_t pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const uint8_t settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    static const uint8_t bad[] = {0, 0, 4, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd'};
    fl__vconn_feed(c, pre, 24);
    fl__vconn_feed(c, settings, sizeof(settings));
    fl__vconn_feed(c, bad, sizeof(bad));
    fl__net_run_nowait(t.n);
    const fl_buf_t *out = fl__vconn_output(c);
    frames_t *f = malloc(sizeof(*f));
    parse_frames(out->data, out->len, 0, f);
    assert_int_equal(count_type(f, NGHTTP2_GOAWAY, 0), 1);
    assert_true(fl__vconn_closed(c));
    /* random bytes after the preface */
    c = fl__vconn_new(t.n, 0);
    uint8_t junk[512];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    fl__vconn_feed(c, pre, 24);
    fl__vconn_feed(c, junk, sizeof(junk));
    fl__net_run_nowait(t.n);
    assert_true(fl__vconn_closed(c));
    /* a broken preface is not HTTP/2: the HTTP/1.1 parser answers 400 and closes */
    c = fl__vconn_new(t.n, 0);
    fl__vconn_feed(c, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 24);
    fl__net_run_nowait(t.n);
    assert_true(fl__vconn_closed(c));
    assert_non_null(strstr((const char *)fl__vconn_output(c)->data, "400"));
    assert_int_equal(atomic_load(&t.heads), 0);
    free(f);
    srv_stop(&t);
}

/* ---------------------------------------------------------------- real sockets */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void test_net_h2_fixture_socket(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    srv_init(&t, &o, 1);
    size_t wlen, blen;
    uint8_t *w = fixture("wire/grpc/healthy.c2s.bin", &wlen);
    uint8_t *want = fixture("grpc/healthy.body", &blen);
    int fd = tcp_connect(t.port);
    /* Send like the exporter: everything up to the window limit, then the rest. */
    assert_int_equal(send(fd, w, wlen, MSG_NOSIGNAL), (ssize_t)wlen);
    uint8_t *buf = malloc(1 << 20);
    size_t len = 0;
    frames_t *f = malloc(sizeof(*f));
    uint64_t dl = now_ms() + 10000;
    for (;;) {
        ssize_t r = recv(fd, buf + len, (1 << 20) - len, 0);
        assert_true(r >= 0);
        len += (size_t)r;
        parse_frames(buf, len, 0, f);
        int trailers = 0;
        for (int i = 0; i < f->n; i++)
            if (f->type[i] == NGHTTP2_HEADERS && (f->flags[i] & NGHTTP2_FLAG_END_STREAM))
                trailers = 1;
        if (trailers || r == 0 || now_ms() > dl)
            break;
    }
    char hdrs[4096];
    decode_headers(f, 1, hdrs, sizeof(hdrs));
    assert_non_null(strstr(hdrs, "grpc-status: 0\n"));
    pthread_mutex_lock(&t.mu);
    assert_int_equal(t.payload_len, blen - 5);
    assert_memory_equal(t.payload, want + 5, blen - 5);
    pthread_mutex_unlock(&t.mu);
    close(fd);
    free(f);
    free(buf);
    free(w);
    free(want);
    srv_stop(&t);
}

static fl_grpc_client_t *gclient(int port)
{
    fl_grpc_client_opts_t o = {.host = "127.0.0.1", .port = port, .timeout_ms = 20000};
    fl_grpc_client_t *c = fl_grpc_client_new(&o);
    assert_non_null(c);
    return c;
}

static void test_net_grpc_roundtrip(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.max_body = 8u << 20;
    srv_init(&t, &o, 1);
    fl_grpc_client_t *c = gclient(t.port);
    fl_grpc_result_t res;
    /* OK with a message */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "ping", 4, 0, &res), FL_OK);
    assert_int_equal(res.http_status, 200);
    assert_int_equal(res.grpc_status, 0);
    assert_int_equal(res.trailers_only, 0);
    assert_int_equal(res.message.len, 4);
    assert_memory_equal(res.message.data, "ping", 4);
    assert_true(t.timeout_ms > 15000 && t.timeout_ms <= 20000);
    fl_grpc_result_dispose(&res);
    /* an empty message is still one framed message */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, NULL, 0, 1, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    assert_int_equal(res.message.len, 0);
    assert_int_equal(t.compressed, 1);
    fl_grpc_result_dispose(&res);
    /* an error: Trailers-Only with a percent-encoded message and binary details */
    fl_net_header_t extra[] = {{"Grpc-Timeout", "5S"}}; /* sent lowercased */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Fail", extra, 1, "x", 1, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_INVALID_ARGUMENT);
    assert_int_equal(res.trailers_only, 1);
    assert_string_equal(res.grpc_message, fail_msg);
    assert_non_null(
        strstr((char *)res.headers.data, "grpc-message: bad input: 100%25 wrong%0Aline"));
    assert_null(
        strstr((char *)res.headers.data, "grpc-status-details-bin: CAMSAP8Afw==")); /* no padding */
    assert_non_null(strstr((char *)res.headers.data, "grpc-status-details-bin: CAMSAP8Af0E\n"));
    assert_int_equal(res.details.len, sizeof(details_bytes));
    assert_memory_equal(res.details.data, details_bytes, sizeof(details_bytes));
    assert_int_equal(t.timeout_ms, 5000);
    fl_grpc_result_dispose(&res);
    /* an early answer from on_head */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Busy", NULL, 0, "x", 1, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_UNAVAILABLE);
    assert_string_equal(res.grpc_message, "queue full");
    fl_grpc_result_dispose(&res);
    /* 3 MB each way: needs WINDOW_UPDATEs in both directions */
    size_t big = 3u << 20;
    uint8_t *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 12));
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, data, big, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    assert_int_equal(res.message.len, big);
    assert_memory_equal(res.message.data, data, big);
    fl_grpc_result_dispose(&res);
    pthread_mutex_lock(&t.mu);
    assert_int_equal(t.payload_len, big);
    assert_memory_equal(t.payload, data, big);
    pthread_mutex_unlock(&t.mu);
    assert_int_equal(fl_net_connections(t.n), 1); /* all on one connection */
    free(data);
    fl_grpc_client_free(c);
    srv_stop(&t);
}

static void test_net_grpc_bad_framing(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.max_body = 1000;
    srv_init(&t, &o, 1);
    fl_grpc_client_t *c = gclient(t.port);
    fl_grpc_result_t res;
    /* the prefix promises more than arrives */
    uint8_t trunc[15] = {0, 0, 0, 0, 100};
    assert_int_equal(fl_grpc_client_call_raw(c, "/svc/Echo", NULL, 0, trunc, sizeof(trunc), &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_INTERNAL);
    assert_non_null(strstr(res.grpc_message, "prefix says 100 bytes, 10 arrived"));
    fl_grpc_result_dispose(&res);
    /* shorter than a prefix, and nothing at all */
    assert_int_equal(fl_grpc_client_call_raw(c, "/svc/Echo", NULL, 0, trunc, 3, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_INTERNAL);
    fl_grpc_result_dispose(&res);
    assert_int_equal(fl_grpc_client_call_raw(c, "/svc/Echo", NULL, 0, NULL, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_INTERNAL);
    assert_non_null(strstr(res.grpc_message, "missing"));
    fl_grpc_result_dispose(&res);
    /* a bad compressed flag */
    uint8_t badflag[6] = {7, 0, 0, 0, 1, 'x'};
    assert_int_equal(fl_grpc_client_call_raw(c, "/svc/Echo", NULL, 0, badflag, 6, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_INTERNAL);
    fl_grpc_result_dispose(&res);
    /* over the limit, by the prefix alone (refused before the data) and for real */
    uint8_t huge[10] = {0, 0, 0x10, 0, 0};
    assert_int_equal(fl_grpc_client_call_raw(c, "/svc/Echo", NULL, 0, huge, sizeof(huge), &res),
                     FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(res.grpc_message, "limit of 1000"));
    fl_grpc_result_dispose(&res);
    uint8_t *data = calloc(1, 5000);
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, data, 5000, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_RESOURCE_EXHAUSTED);
    fl_grpc_result_dispose(&res);
    /* exactly at the limit is fine */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, data, 1000, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, FL_GRPC_OK);
    assert_int_equal(res.message.len, 1000);
    fl_grpc_result_dispose(&res);
    assert_int_equal(atomic_load(&t.bodies), 1); /* only the valid call reached on_body */
    free(data);
    fl_grpc_client_free(c);
    for (uint64_t dl = now_ms() + 5000; fl_net_inflight(t.n) && now_ms() < dl;)
        usleep(5000);
    assert_int_equal(fl_net_inflight(t.n), 0);
    srv_stop(&t);
}

/* 1,000 streams opened at once on one connection, with a raw nghttp2 client session. */
typedef struct many {
    int done, ok;
} many_t;

static int m_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                    const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    many_t *m = ud;
    if (nl == 7 && memcmp(name, ":status", 7) == 0 && vl == 3 && memcmp(value, "200", 3) == 0)
        m->ok++;
    return 0;
}

static int m_close(nghttp2_session *s, int32_t sid, uint32_t err, void *ud)
{
    ((many_t *)ud)->done++;
    return 0;
}

static void test_net_h2_many_streams(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.max_streams = 1000;
    srv_init(&t, &o, 1);
    int fd = tcp_connect(t.port);
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, m_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, m_close);
    many_t m = {0};
    nghttp2_session *s;
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 1000);
    assert_int_equal(nghttp2_session_client_new2(&s, cbs, &m, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    char paths[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/s/%d", i);
        nghttp2_nv nva[] = {
            {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
            {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
            {(uint8_t *)":path", (uint8_t *)paths[i], 5, strlen(paths[i]), 0},
            {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        };
        assert_true(nghttp2_submit_request(s, NULL, nva, 4, NULL, NULL) > 0);
    }
    uint64_t dl = now_ms() + 30000;
    uint8_t buf[65536];
    while (m.done < 1000 && now_ms() < dl) {
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(s, &out)) > 0)
            assert_int_equal(send(fd, out, (size_t)n, MSG_NOSIGNAL), n);
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        assert_true(r > 0);
        assert_true(nghttp2_session_mem_recv(s, buf, (size_t)r) >= 0);
    }
    assert_int_equal(m.done, 1000);
    assert_int_equal(m.ok, 1000);
    assert_int_equal(atomic_load(&t.bodies), 1000);
    nghttp2_session_del(s);
    close(fd);
    srv_stop(&t);
}

static int run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

static void test_net_h2_curl_prior_knowledge(void **state)
{
    char out[4096];
    if (run_cmd("curl --version >/dev/null 2>&1 && echo yes", out, sizeof(out)) != 0 ||
        !strstr(out, "yes"))
        skip();
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    srv_init(&t, &o, 1);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "curl -s -i --http2-prior-knowledge --data-binary hello-h2 "
             "-H 'Content-Type: text/plain' http://127.0.0.1:%d/v1/traces",
             t.port);
    assert_int_equal(run_cmd(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "HTTP/2 200"));
    assert_non_null(strstr(out, "x-proto: h2c"));
    assert_non_null(strstr(out, "hello-h2"));
    /* HTTP/1.1 on the same h2c listener still works */
    snprintf(cmd, sizeof(cmd), "curl -s -i --data-binary hi http://127.0.0.1:%d/x", t.port);
    assert_int_equal(run_cmd(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "X-Proto: http/1.1"));
    srv_stop(&t);
}

static void test_net_h2_graceful_goaway(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    srv_init(&t, &o, 1);
    fl_grpc_client_t *c = gclient(t.port);
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "a", 1, 0, &res), FL_OK);
    fl_grpc_result_dispose(&res);
    int fd = tcp_connect(t.port); /* connected, silent: closed by shutdown */
    fl_net_shutdown(t.n, 3000);
    char b;
    assert_true(recv(fd, &b, 1, 0) <= 0);
    close(fd);
    /* the idle h2 connection got GOAWAY; the client notices and cannot reconnect */
    assert_int_not_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "a", 1, 0, &res), FL_OK);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
    fl_net_free(t.n);
    free(t.payload);
    pthread_mutex_destroy(&t.mu);
}

static char tmpdir[256]; /* made by the group setup (make_certs) */

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close on us mid-flood */
        b += w;
        n -= (size_t)w;
    }
}

static void frame_hdr(uint8_t *b, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    b[0] = (uint8_t)(len >> 16);
    b[1] = (uint8_t)(len >> 8);
    b[2] = (uint8_t)len;
    b[3] = type;
    b[4] = flags;
    b[5] = (uint8_t)(sid >> 24);
    b[6] = (uint8_t)(sid >> 16);
    b[7] = (uint8_t)(sid >> 8);
    b[8] = (uint8_t)sid;
}

/* Preface + SETTINGS, then `pairs` streams each opened (GET /) and cancelled at once. */
static size_t build_rst_pairs(uint8_t *b, uint32_t first_sid, uint32_t pairs, int preface)
{
    /* :method GET, :scheme http, :path /, :authority x (literal, not indexed) */
    static const uint8_t block[] = {0x82, 0x86, 0x84, 0x01, 0x01, 'x'};
    size_t n = 0;
    if (preface) {
        memcpy(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
        n = 24;
        frame_hdr(b + n, 0, NGHTTP2_SETTINGS, 0, 0);
        n += 9;
    }
    for (uint32_t i = 0; i < pairs; i++) {
        uint32_t sid = first_sid + 2 * i;
        frame_hdr(b + n, sizeof(block), NGHTTP2_HEADERS,
                  NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, sid);
        memcpy(b + n + 9, block, sizeof(block));
        n += 9 + sizeof(block);
        frame_hdr(b + n, 4, NGHTTP2_RST_STREAM, 0, sid);
        memset(b + n + 9, 0, 4);
        b[n + 12] = NGHTTP2_CANCEL;
        n += 13;
    }
    return n;
}

/* "Rapid reset": streams opened and cancelled at once, thousands of times. A few hundred
 * are tolerated; a flood gets GOAWAY (nghttp2's limiter says INTERNAL_ERROR) and a close,
 * while every other client keeps being served. */
static void test_net_h2_rst_flood(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    srv_init(&t, &o, 1);
    uint8_t *b = malloc(64 + 6000 * 32);
    uint8_t *in = malloc(4 << 20);
    frames_t *f = malloc(sizeof(*f));
    /* 300 resets, then a PING: still answered */
    int fd = tcp_connect(t.port);
    size_t n = build_rst_pairs(b, 1, 300, 1);
    frame_hdr(b + n, 8, NGHTTP2_PING, 0, 0);
    memcpy(b + n + 9, "pingpong", 8);
    n += 17;
    send_all(fd, b, n);
    size_t len = 0;
    int acked = 0, goaway = 0;
    for (uint64_t dl = now_ms() + 5000; !acked && now_ms() < dl;) {
        ssize_t r = recv(fd, in + len, (4 << 20) - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        parse_frames(in, len, 0, f);
        for (int i = 0; i < f->n; i++) {
            acked |= f->type[i] == NGHTTP2_PING && (f->flags[i] & NGHTTP2_FLAG_ACK);
            goaway |= f->type[i] == NGHTTP2_GOAWAY;
        }
    }
    assert_true(acked);
    assert_false(goaway);
    /* the flood, on the same connection */
    n = build_rst_pairs(b, 601, 5000, 0);
    send_all(fd, b, n);
    len = 0;
    for (;;) {
        ssize_t r = recv(fd, in + len, (4 << 20) - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    parse_frames(in, len, 0, f);
    for (int i = 0; i < f->n; i++)
        if (f->type[i] == NGHTTP2_GOAWAY && f->len[i] >= 8)
            goaway = f->p[i][7];
    assert_true(goaway == NGHTTP2_INTERNAL_ERROR || goaway == NGHTTP2_ENHANCE_YOUR_CALM);
    close(fd);
    /* everyone else is still served, and nothing leaked */
    fl_grpc_client_t *c = gclient(t.port);
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "ok", 2, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
    for (uint64_t dl = now_ms() + 5000; fl_net_inflight(t.n) && now_ms() < dl;)
        usleep(5000);
    assert_int_equal(fl_net_inflight(t.n), 0);
    free(f);
    free(in);
    free(b);
    srv_stop(&t);
}

/* A stream whose client goes away mid-body; and an idle h2 connection timing out. */
static void test_net_h2_disconnect_and_idle(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.idle_timeout_ms = 300;
    srv_init(&t, &o, 1);
    int fd = tcp_connect(t.port);
    uint8_t b[256];
    size_t n = 0;
    memcpy(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    frame_hdr(b + n, 0, NGHTTP2_SETTINGS, 0, 0);
    n += 9;
    /* POST /svc/Echo, content-type application/grpc (literal), body cut after 3 bytes */
    static const uint8_t block[] = {0x83, 0x86, 0x04, 0x09, '/',  's',  'v', 'c',  '/',
                                    'E',  'c',  'h',  'o',  0x01, 0x01, 'x', 0x0f, 0x10,
                                    0x10, 'a',  'p',  'p',  'l',  'i',  'c', 'a',  't',
                                    'i',  'o',  'n',  '/',  'g',  'r',  'p', 'c'};
    frame_hdr(b + n, sizeof(block), NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1);
    memcpy(b + n + 9, block, sizeof(block));
    n += 9 + sizeof(block);
    frame_hdr(b + n, 3, NGHTTP2_DATA, 0, 1);
    memcpy(b + n + 9, "\0\0\0", 3);
    n += 12;
    send_all(fd, b, n);
    for (uint64_t dl = now_ms() + 5000; atomic_load(&t.heads) < 1 && now_ms() < dl;)
        usleep(5000);
    assert_int_equal(atomic_load(&t.heads), 1);
    assert_int_equal(fl_net_inflight(t.n), 1);
    close(fd);
    for (uint64_t dl = now_ms() + 5000; fl_net_inflight(t.n) && now_ms() < dl;)
        usleep(5000);
    assert_int_equal(fl_net_inflight(t.n), 0);
    assert_int_equal(atomic_load(&t.bodies), 0);
    /* idle: after a call, the connection is closed by the server (GOAWAY) */
    fl_grpc_client_t *c = gclient(t.port);
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "a", 1, 0, &res), FL_OK);
    fl_grpc_result_dispose(&res);
    assert_int_equal(fl_net_connections(t.n), 1);
    uint64_t t0 = now_ms();
    for (uint64_t dl = now_ms() + 5000; fl_net_connections(t.n) && now_ms() < dl;)
        usleep(5000);
    assert_int_equal(fl_net_connections(t.n), 0);
    assert_true(now_ms() - t0 >= 200);
    /* and the client reconnects transparently */
    assert_int_equal(fl_grpc_client_call(c, "/svc/Echo", NULL, 0, "b", 1, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
    srv_stop(&t);
}

static void test_net_h2_limits_curl(void **state)
{
    char out[8192];
    if (run_cmd("curl --version >/dev/null 2>&1 && echo yes", out, sizeof(out)) != 0 ||
        !strstr(out, "yes"))
        skip();
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.max_body = 1000;
    srv_init(&t, &o, 1);
    char path[300], cmd[1024];
    snprintf(path, sizeof(path), "%s/body.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 5000; i++)
        fputc('q', f);
    fclose(f);
    /* with a content-length over the limit, and the same sent chunked (no length) */
    snprintf(cmd, sizeof(cmd),
             "curl -s -i --http2-prior-knowledge --data-binary @%s http://127.0.0.1:%d/big", path,
             t.port);
    run_cmd(cmd, out,
            sizeof(out)); /* curl may exit nonzero: the stream is reset after the answer */
    assert_non_null(strstr(out, "HTTP/2 413"));
    assert_non_null(strstr(out, "limit of 1000"));
    snprintf(cmd, sizeof(cmd),
             "curl -s -i --http2-prior-knowledge -H 'Transfer-Encoding: chunked' "
             "--data-binary @%s http://127.0.0.1:%d/big",
             path, t.port);
    run_cmd(cmd, out,
            sizeof(out)); /* curl may exit nonzero: the stream is reset after the answer */
    assert_non_null(strstr(out, "HTTP/2 413"));
    assert_int_equal(atomic_load(&t.bodies), 0);
    srv_stop(&t);
}

/* ---------------------------------------------------------------- TLS */

static char srv_cert[300], srv_key[300], cli_cert[300], cli_key[300], other_cert[300],
    other_key[300];

static int make_certs(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fl_net_tls_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(srv_cert, sizeof(srv_cert), "%s/srv.pem", tmpdir);
    snprintf(srv_key, sizeof(srv_key), "%s/srv.key", tmpdir);
    snprintf(cli_cert, sizeof(cli_cert), "%s/cli.pem", tmpdir);
    snprintf(cli_key, sizeof(cli_key), "%s/cli.key", tmpdir);
    snprintf(other_cert, sizeof(other_cert), "%s/other.pem", tmpdir);
    snprintf(other_key, sizeof(other_key), "%s/other.key", tmpdir);
    const char *fmt = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                      "-nodes -days 2 -subj /CN=%s -addext subjectAltName=%s "
                      "-keyout %s -out %s >/dev/null 2>&1";
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), fmt, "localhost", "IP:127.0.0.1,DNS:localhost", srv_key, srv_cert);
    if (system(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), fmt, "client", "DNS:client", cli_key, cli_cert);
    if (system(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), fmt, "other", "DNS:other", other_key, other_cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int rm_certs(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_net_tls_alpn(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.allow_h2c = 0;
    o.tls.cert_file = srv_cert;
    o.tls.key_file = srv_key;
    srv_init(&t, &o, 1);
    /* HTTP/1.1 over TLS, server verified against its certificate */
    fl_http_client_opts_t ho = {.host = "127.0.0.1", .port = t.port, .tls = 1, .ca_file = srv_cert};
    fl_http_client_t *hc = fl_http_client_new(&ho);
    fl_http_response_t resp;
    char v[64];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fl_http_client_request(hc, "POST", "/t", NULL, 0, "tls!", 4, &resp),
                         FL_OK);
        assert_int_equal(resp.status, 200);
        assert_memory_equal(resp.body.data, "tls!", 4);
        assert_string_equal(fl_http_response_header(&resp, "x-proto", v, sizeof(v)), "http/1.1");
        fl_http_response_dispose(&resp);
    }
    assert_int_equal(t.is_tls, 1);
    fl_http_client_free(hc);
    /* verification fails against the wrong CA */
    ho.ca_file = other_cert;
    hc = fl_http_client_new(&ho);
    assert_int_equal(fl_http_client_request(hc, "GET", "/t", NULL, 0, NULL, 0, &resp), FL_ERR_IO);
    fl_http_response_dispose(&resp);
    fl_http_client_free(hc);
    /* gRPC over TLS: ALPN picks h2 */
    fl_grpc_client_opts_t go = {.host = "127.0.0.1", .port = t.port, .tls = 1, .ca_file = srv_cert};
    fl_grpc_client_t *gc = fl_grpc_client_new(&go);
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(gc, "/svc/Echo", NULL, 0, "sec", 3, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    assert_memory_equal(res.message.data, "sec", 3);
    assert_string_equal(t.protocol, "h2");
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(gc);
    /* curl --http2 over TLS, if available */
    char out[4096], cmd[512];
    snprintf(cmd, sizeof(cmd),
             "curl -s -i -k --http2 --data-binary via-curl https://127.0.0.1:%d/c 2>&1", t.port);
    if (run_cmd(cmd, out, sizeof(out)) == 0) {
        assert_non_null(strstr(out, "HTTP/2 200"));
        assert_non_null(strstr(out, "x-proto: h2"));
        assert_non_null(strstr(out, "via-curl"));
    }
    /* plain HTTP to a TLS port is refused cleanly */
    fl_http_client_opts_t po = {.host = "127.0.0.1", .port = t.port, .timeout_ms = 3000};
    hc = fl_http_client_new(&po);
    assert_int_not_equal(fl_http_client_request(hc, "GET", "/t", NULL, 0, NULL, 0, &resp), FL_OK);
    fl_http_response_dispose(&resp);
    fl_http_client_free(hc);
    srv_stop(&t);
}

static void test_net_tls_mtls(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = base_opts(&t);
    o.tls.cert_file = srv_cert;
    o.tls.key_file = srv_key;
    o.tls.client_ca_file = cli_cert;
    srv_init(&t, &o, 1);
    fl_http_client_opts_t ho = {.host = "127.0.0.1",
                                .port = t.port,
                                .tls = 1,
                                .ca_file = srv_cert,
                                .cert_file = cli_cert,
                                .key_file = cli_key};
    fl_http_client_t *hc = fl_http_client_new(&ho);
    fl_http_response_t resp;
    assert_int_equal(fl_http_client_request(hc, "POST", "/m", NULL, 0, "ok", 2, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    fl_http_response_dispose(&resp);
    fl_http_client_free(hc);
    /* no client certificate: refused */
    ho.cert_file = ho.key_file = NULL;
    hc = fl_http_client_new(&ho);
    assert_int_not_equal(fl_http_client_request(hc, "POST", "/m", NULL, 0, "no", 2, &resp), FL_OK);
    fl_http_response_dispose(&resp);
    fl_http_client_free(hc);
    /* a certificate the server's CA did not issue: refused */
    ho.cert_file = other_cert;
    ho.key_file = other_key;
    hc = fl_http_client_new(&ho);
    assert_int_not_equal(fl_http_client_request(hc, "POST", "/m", NULL, 0, "no", 2, &resp), FL_OK);
    fl_http_response_dispose(&resp);
    fl_http_client_free(hc);
    /* gRPC with and without */
    fl_grpc_client_opts_t go = {.host = "127.0.0.1",
                                .port = t.port,
                                .tls = 1,
                                .ca_file = srv_cert,
                                .cert_file = cli_cert,
                                .key_file = cli_key};
    fl_grpc_client_t *gc = fl_grpc_client_new(&go);
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(gc, "/svc/Echo", NULL, 0, "m", 1, 0, &res), FL_OK);
    assert_int_equal(res.grpc_status, 0);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(gc);
    go.cert_file = go.key_file = NULL;
    gc = fl_grpc_client_new(&go);
    assert_int_not_equal(fl_grpc_client_call(gc, "/svc/Echo", NULL, 0, "m", 1, 0, &res), FL_OK);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(gc);
    assert_int_equal(atomic_load(&t.bodies), 2);
    srv_stop(&t);
}

static void test_net_tls_bad_files(void **state)
{
    fl_net_t *n = fl_net_new("bad");
    fl_net_listen_opts_t o = {.host = "127.0.0.1", .handler = {.on_body = h_body}};
    char err[512];
    o.tls.cert_file = srv_cert;
    o.tls.key_file = cli_key; /* not the certificate's key */
    assert_int_equal(fl_net_listen(n, &o, err, sizeof(err)), FL_ERR_INVALID);
    assert_non_null(strstr(err, cli_key)); /* names the file that does not fit */
    o.tls.key_file = srv_key;
    o.tls.client_ca_file = "/nonexistent/ca.pem";
    assert_int_equal(fl_net_listen(n, &o, err, sizeof(err)), FL_ERR_INVALID);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    o.tls.client_ca_file = NULL;
    o.tls.key_file = NULL;
    assert_int_equal(fl_net_listen(n, &o, err, sizeof(err)), FL_ERR_INVALID);
    fl_net_free(n);
}

int main(void)
{
    if (getenv("FL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("FL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_h2_scripted_fixture),
        cmocka_unit_test(test_net_h2_scripted_garbage),
        cmocka_unit_test(test_net_h2_fixture_socket),
        cmocka_unit_test(test_net_grpc_roundtrip),
        cmocka_unit_test(test_net_grpc_bad_framing),
        cmocka_unit_test(test_net_h2_many_streams),
        cmocka_unit_test(test_net_h2_curl_prior_knowledge),
        cmocka_unit_test(test_net_h2_graceful_goaway),
        cmocka_unit_test(test_net_h2_rst_flood),
        cmocka_unit_test(test_net_h2_disconnect_and_idle),
        cmocka_unit_test(test_net_h2_limits_curl),
        cmocka_unit_test(test_net_tls_alpn),
        cmocka_unit_test(test_net_tls_mtls),
        cmocka_unit_test(test_net_tls_bad_files),
    };
    return cmocka_run_group_tests(tests, make_certs, rm_certs);
}
