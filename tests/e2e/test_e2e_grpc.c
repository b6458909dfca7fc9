/* SPDX-License-Identifier: Apache-2.0 */
/* End to end against the real server: gRPC bad inputs (garbage frames, bad framing, over the
 * limit, unknown methods, wrong content type, 1,000 streams at once, clients that vanish or
 * say nothing) and OTLP/HTTP over h2c with curl. After each, other clients are served and
 * the data stored before is intact. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "otlp_gen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

static fl_test_server_t srv;
static json_t *healthy_traces; /* trace id -> expected span count */
static uint64_t id_base;       /* makes this run's trace ids unique */
static uint64_t id_next;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A new trace with n spans and unique ids. */
static otlp_gen_trace_t new_trace(int n)
{
    otlp_gen_trace_t t = {{0}, 0, n, "grpc-e2e", 1796004969000000000ull};
    uint64_t k = ++id_next;
    for (int i = 0; i < 8; i++) {
        t.trace_id[i] = (uint8_t)(id_base >> (56 - 8 * i));
        t.trace_id[8 + i] = (uint8_t)(k >> (56 - 8 * i));
    }
    t.span_seed = (id_base ^ (k << 20)) | 1;
    t.start_ns += k * 1000000;
    return t;
}

/* Spans stored for the trace (0 when unknown to the API). */
static int stored_spans(const otlp_gen_trace_t *t)
{
    char hex[33], url[96];
    otlp_gen_hex(t->trace_id, 16, hex);
    snprintf(url, sizeof(url), "/api/traces/%s", hex);
    int status = 0;
    json_t *j = fl_test_get_json(srv.api_port, url, &status);
    int n = status == 200 ? (int)json_array_size(json_object_get(j, "spans")) : 0;
    json_decref(j);
    return n;
}

static int setup(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    id_base = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    const char *args[] = {"--max-body", "1MiB", "--log-level", "warn", NULL};
    if (fl_test_server_start(&srv, args) != 0)
        return -1;
    char body[512], ep[64];
    snprintf(body, sizeof(body), "%s/fixtures/grpc/healthy.body", FL_TEST_DATA_DIR);
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", srv.grpc_port);
    const char *a[] = {"--quiet", "--grpc-endpoint", ep, body, NULL};
    if (fl_test_run_tool("faultline-replay", a) != 0)
        return -1;
    healthy_traces = fl_test_expected_span_counts("healthy");
    return healthy_traces ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = fl_test_server_stop(&srv);
    char *slog = fl_test_read_file(srv.log_path, NULL);
    if (slog && (strstr(slog, "Sanitizer") || strstr(slog, "runtime error:")))
        rc = -2; /* a sanitizer report in the server */
    free(slog);
    if (rc != 0) {
        char *log = fl_test_read_file(srv.log_path, NULL);
        fprintf(stderr, "faultline exit %d; log:\n%s\n", rc, log ? log : "");
        free(log);
    }
    fl_test_server_cleanup(&srv);
    json_decref(healthy_traces);
    return rc == 0 ? 0 : -1;
}

static fl_grpc_client_t *grpc_client(void)
{
    fl_grpc_client_opts_t o = {0};
    o.host = "127.0.0.1";
    o.port = srv.grpc_port;
    o.timeout_ms = 15000;
    fl_grpc_client_t *c = fl_grpc_client_new(&o);
    assert_non_null(c);
    return c;
}

/* One good export over gRPC from a fresh client: OK and stored. */
static void assert_grpc_serves(void)
{
    otlp_gen_trace_t t = new_trace(3);
    fl_buf_t msg;
    otlp_gen_protobuf(&t, 1, &msg);
    fl_grpc_client_t *c = grpc_client();
    fl_grpc_result_t res;
    assert_int_equal(fl_grpc_client_call(c, EXPORT_PATH, NULL, 0, msg.data, msg.len, 0, &res),
                     FL_OK);
    if (res.grpc_status != 0)
        fail_msg("grpc-status %d: %s", res.grpc_status, res.grpc_message ? res.grpc_message : "");
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
    fl_buf_dispose(&msg);
    assert_int_equal(stored_spans(&t), 3);
}

/* Everything stored before is still there, exactly, and the server still serves. */
static void assert_intact(void)
{
    char why[256];
    if (fl_test_traces_intact(srv.api_port, healthy_traces, why, sizeof(why)) != 0)
        fail_msg("stored data changed: %s", why);
    assert_grpc_serves();
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Read until the peer closes (or the deadline); returns the bytes read, -1 on timeout. */
static ssize_t read_until_close(int fd, fl_buf_t *out, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    fl_buf_init(out, 1 << 20);
    for (;;) {
        int left = (int)(end - now_ms());
        if ((int64_t)(end - now_ms()) <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return (ssize_t)out->len;
        if (r < 0)
            continue;
        fl_buf_append(out, buf, (size_t)r);
    }
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---------------------------------------------------------------- a tiny nghttp2 client */

typedef struct h2_stream {
    int32_t id;
    const uint8_t *body;
    size_t len, off;
    size_t stop_at; /* send only this much, then stall (a client that vanishes mid-body) */
    int http_status, grpc_status;
    uint32_t error; /* RST_STREAM / GOAWAY error code when closed without a response */
    int closed;
} h2_stream_t;

typedef struct h2_conn {
    int fd;
    nghttp2_session *s;
    int closed_streams;
    int eof;
    int goaway;
    int headers_sent;
} h2_conn_t;

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s;
    (void)flags;
    h2_conn_t *c = ud;
    ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EINTR ? NGHTTP2_ERR_WOULDBLOCK
                                                 : NGHTTP2_ERR_CALLBACK_FAILURE;
    return w;
}

static int h2_header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)flags;
    (void)ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    char v[32];
    snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 31 ? valuelen : 31), (const char *)value);
    if (namelen == 7 && !memcmp(name, ":status", 7))
        st->http_status = atoi(v);
    else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
        st->grpc_status = atoi(v);
    return 0;
}

static int h2_close_cb(nghttp2_session *s, int32_t id, uint32_t error, void *ud)
{
    h2_conn_t *c = ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (st && !st->closed) {
        st->closed = 1;
        st->error = error;
        c->closed_streams++;
    }
    return 0;
}

static int h2_frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    if (f->hd.type == NGHTTP2_GOAWAY)
        ((h2_conn_t *)ud)->goaway = 1;
    return 0;
}

static int h2_frame_send_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    if (f->hd.type == NGHTTP2_HEADERS)
        ((h2_conn_t *)ud)->headers_sent++;
    return 0;
}

static ssize_t h2_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                          nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    h2_stream_t *st = src->ptr;
    size_t limit = st->stop_at ? st->stop_at : st->len;
    if (st->off >= limit) {
        if (limit < st->len)
            return NGHTTP2_ERR_DEFERRED;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t n = limit - st->off < len ? limit - st->off : len;
    memcpy(buf, st->body + st->off, n);
    st->off += n;
    if (st->off == st->len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void h2_open(h2_conn_t *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = tcp_connect(port);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    nghttp2_session_callbacks *cb;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_send_callback(cb, h2_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_frame_recv_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_frame_send_cb);
    /* No client-side cap before the server's SETTINGS arrive (nghttp2 assumes 100). */
    nghttp2_option *opt;
    assert_int_equal(nghttp2_option_new(&opt), 0);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100000);
    assert_int_equal(nghttp2_session_client_new2(&c->s, cb, c, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static void h2_close(h2_conn_t *c)
{
    nghttp2_session_del(c->s);
    close(c->fd);
}

/* Submit a POST; st must outlive the connection. */
static void h2_submit(h2_conn_t *c, h2_stream_t *st, const char *path, const char *ctype)
{
    char auth[32];
    snprintf(auth, sizeof(auth), "127.0.0.1:%d", srv.grpc_port);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", "POST"),  NV(":scheme", "http"),     NV(":path", path),
                       NV(":authority", auth), NV("content-type", ctype), NV("te", "trailers")};
#undef NV
    nghttp2_data_provider dp = {{.ptr = st}, h2_read_cb};
    st->grpc_status = -1;
    st->id = nghttp2_submit_request(c->s, NULL, nv, sizeof(nv) / sizeof(nv[0]), &dp, st);
    assert_true(st->id > 0);
}

/* Drive the session until `want` streams closed, the peer closed, or the deadline. */
static void h2_pump(h2_conn_t *c, int want, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (c->closed_streams < want && !c->eof && now_ms() < end) {
        if (nghttp2_session_send(c->s) != 0)
            break;
        struct pollfd p = {c->fd, POLLIN | (nghttp2_session_want_write(c->s) ? POLLOUT : 0), 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[16384];
            ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                c->eof = 1;
                break;
            }
            if (r > 0 && nghttp2_session_mem_recv(c->s, buf, (size_t)r) < 0) {
                c->eof = 1;
                break;
            }
        }
    }
}

/* gRPC framing: 5-byte prefix + message (into out, initialised here). */
static void grpc_frame(const fl_buf_t *msg, fl_buf_t *out)
{
    uint8_t p[5] = {0, (uint8_t)(msg->len >> 24), (uint8_t)(msg->len >> 16),
                    (uint8_t)(msg->len >> 8), (uint8_t)msg->len};
    fl_buf_init(out, 0);
    fl_buf_append(out, p, 5);
    fl_buf_append(out, msg->data, msg->len);
}

/* ---------------------------------------------------------------- curl */

/* Run curl with args; stdout into out (initialised here). Returns curl's exit code. */
static int run_curl(const char *const *args, fl_buf_t *out)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = "curl";
    for (int i = 0; args[i] && n < 46; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = fl_test_run_capture(argv, out, 0);
    assert_true(rc >= 0);
    return rc;
}

/* POST a file with curl over h2c prior knowledge; the output ends with
 * "\n<http_version> <status>". Returns the status; asserts HTTP/2 was used. */
static int curl_h2c(int port, const char *path, const char *ctype, const char *file, fl_buf_t *out)
{
    char url[128], ct[128], data[600];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    snprintf(ct, sizeof(ct), "content-type: %s", ctype);
    snprintf(data, sizeof(data), "@%s", file);
    const char *a[] = {"-sS",
                       "--http2-prior-knowledge",
                       "-m",
                       "20",
                       "-X",
                       "POST",
                       "-H",
                       ct,
                       "--data-binary",
                       data,
                       "-w",
                       "\n%{http_version} %{http_code}",
                       url,
                       NULL};
    assert_int_equal(run_curl(a, out), 0);
    char *nl = strrchr((char *)out->data, '\n');
    assert_non_null(nl);
    int ver = 0, status = 0;
    assert_int_equal(sscanf(nl + 1, "%d %d", &ver, &status), 2);
    assert_int_equal(ver, 2);
    *nl = 0;
    return status;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* ---------------------------------------------------------------- tests */

static void test_e2e_grpc_export_ok(void **st)
{
    (void)st;
    assert_intact();
}

/* The h2 preface, then junk: the server answers with GOAWAY and closes; others unaffected. */
static void test_e2e_grpc_garbage_frame(void **st)
{
    (void)st;
    static const uint8_t junk[] = {0x00, 0x00, 0x10, 0xfe, 0xff, 0x00, 0x00, 0x00, 0x01, 0xde,
                                   0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe,
                                   0xef, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0xff, 0xff, 0x01};
    for (int round = 0; round < 2; round++) {
        int fd = tcp_connect(srv.grpc_port);
        write_all(fd, h2_preface, sizeof(h2_preface) - 1);
        if (round == 0) {
            /* A HEADERS frame on stream 1 whose block is not HPACK at all. */
            static const uint8_t bad_headers[] = {0x00, 0x00, 0x08, 0x01, 0x05, 0x00,
                                                  0x00, 0x00, 0x01, 0xff, 0xff, 0xff,
                                                  0xff, 0xff, 0xff, 0xff, 0xff};
            write_all(fd, bad_headers, sizeof(bad_headers));
        } else {
            write_all(fd, junk, sizeof(junk)); /* no SETTINGS first: a protocol error */
        }
        fl_buf_t in;
        ssize_t n = read_until_close(fd, &in, 10000);
        if (n < 0)
            fail_msg("the server kept a connection open after garbage (round %d)", round);
        /* Walk the frames it sent: there must be a GOAWAY with a nonzero error. */
        int goaway = 0;
        for (size_t off = 0; off + 9 <= in.len;) {
            const uint8_t *h = in.data + off;
            size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
            if (h[3] == NGHTTP2_GOAWAY && len >= 8 && off + 9 + len <= in.len) {
                const uint8_t *p = h + 9;
                uint32_t code =
                    (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
                goaway = code != 0;
            }
            off += 9 + len;
        }
        if (!goaway)
            fail_msg("no GOAWAY with an error code after garbage (round %d, %zu bytes back)", round,
                     in.len);
        fl_buf_dispose(&in);
        close(fd);
    }
    /* Not even HTTP: junk straight away; the server closes the connection. */
    int fd = tcp_connect(srv.grpc_port);
    write_all(fd, junk, sizeof(junk));
    write_all(fd, "\r\n\r\n", 4);
    fl_buf_t in;
    assert_true(read_until_close(fd, &in, 10000) >= 0);
    fl_buf_dispose(&in);
    close(fd);
    assert_intact();
}

static void expect_grpc(fl_grpc_client_t *c, const char *path, const void *body, size_t len,
                        int want_status, const char *needle)
{
    fl_grpc_result_t res;
    int rc = fl_grpc_client_call_raw(c, path, NULL, 0, body, len, &res);
    if (rc != FL_OK)
        fail_msg("call failed: %d", rc);
    if (res.grpc_status != want_status)
        fail_msg("grpc-status %d, expected %d: %s", res.grpc_status, want_status,
                 res.grpc_message ? res.grpc_message : "(no message)");
    if (!res.grpc_message || !*res.grpc_message)
        fail_msg("grpc-status %d without a grpc-message", res.grpc_status);
    if (needle && !strcasestr(res.grpc_message, needle))
        fail_msg("grpc-message does not mention \"%s\": %s", needle, res.grpc_message);
    fl_grpc_result_dispose(&res);
}

static void test_e2e_grpc_bad_framing(void **st)
{
    (void)st;
    otlp_gen_trace_t t = new_trace(5);
    fl_buf_t msg, framed;
    otlp_gen_protobuf(&t, 1, &msg);
    grpc_frame(&msg, &framed);
    fl_grpc_client_t *c = grpc_client();
    /* A prefix cut short. */
    expect_grpc(c, EXPORT_PATH, framed.data, 3, FL_GRPC_INTERNAL, NULL);
    /* A length prefix larger than the data that follows. */
    expect_grpc(c, EXPORT_PATH, framed.data, framed.len - 10, FL_GRPC_INTERNAL, NULL);
    /* No message at all. */
    expect_grpc(c, EXPORT_PATH, "", 0, FL_GRPC_INTERNAL, NULL);
    /* A compressed flag other than 0/1. */
    framed.data[0] = 7;
    expect_grpc(c, EXPORT_PATH, framed.data, framed.len, FL_GRPC_INTERNAL, NULL);
    /* Framing right, protobuf truncated half way: INVALID_ARGUMENT. */
    fl_buf_t half = {0}, halfframed;
    fl_buf_init(&half, 0);
    fl_buf_append(&half, msg.data, msg.len / 2);
    grpc_frame(&half, &halfframed);
    expect_grpc(c, EXPORT_PATH, halfframed.data, halfframed.len, FL_GRPC_INVALID_ARGUMENT, NULL);
    /* Compressed flag set but not gzip inside. */
    fl_grpc_result_t res;
    fl_net_header_t gz = {"grpc-encoding", "gzip"};
    assert_int_equal(fl_grpc_client_call(c, EXPORT_PATH, &gz, 1, msg.data, msg.len, 1, &res),
                     FL_OK);
    assert_true(res.grpc_status == FL_GRPC_INVALID_ARGUMENT || res.grpc_status == FL_GRPC_INTERNAL);
    fl_grpc_result_dispose(&res);
    fl_grpc_client_free(c);
    assert_int_equal(stored_spans(&t), 0);
    fl_buf_dispose(&half);
    fl_buf_dispose(&halfframed);
    fl_buf_dispose(&framed);
    fl_buf_dispose(&msg);
    assert_intact();
}

static void test_e2e_grpc_too_large(void **st)
{
    (void)st;
    /* --max-body is 1 MiB: a 1.5 MiB message is refused before it is decoded. */
    size_t big = 3u << 19;
    uint8_t *p = calloc(1, big + 5);
    assert_non_null(p);
    p[1] = (uint8_t)(big >> 24);
    p[2] = (uint8_t)(big >> 16);
    p[3] = (uint8_t)(big >> 8);
    p[4] = (uint8_t)big;
    fl_grpc_client_t *c = grpc_client();
    expect_grpc(c, EXPORT_PATH, p, big + 5, FL_GRPC_RESOURCE_EXHAUSTED, NULL);
    /* Only the prefix announces too much: refused on the prefix alone. */
    expect_grpc(c, EXPORT_PATH, p, 5 + 1000, FL_GRPC_RESOURCE_EXHAUSTED, NULL);
    fl_grpc_client_free(c);
    free(p);
    assert_intact();
}

static void test_e2e_grpc_unknown_method(void **st)
{
    (void)st;
    otlp_gen_trace_t t = new_trace(2);
    fl_buf_t msg, framed;
    otlp_gen_protobuf(&t, 1, &msg);
    grpc_frame(&msg, &framed);
    fl_grpc_client_t *c = grpc_client();
    expect_grpc(c, "/opentelemetry.proto.collector.trace.v1.TraceService/Nope", framed.data,
                framed.len, FL_GRPC_UNIMPLEMENTED, "Nope");
    expect_grpc(c, "/no.such.Service/Export", framed.data, framed.len, FL_GRPC_UNIMPLEMENTED,
                "no.such.Service");
    fl_grpc_client_free(c);
    assert_int_equal(stored_spans(&t), 0);
    fl_buf_dispose(&framed);
    fl_buf_dispose(&msg);
    assert_intact();
}

/* A gRPC path with a non-gRPC content type over h2c: an HTTP error, never a 200 that a gRPC
 * client would read as success, and nothing stored. */
static void test_e2e_grpc_wrong_content_type(void **st)
{
    (void)st;
    otlp_gen_trace_t t = new_trace(2);
    fl_buf_t msg, framed, out;
    otlp_gen_protobuf(&t, 1, &msg);
    grpc_frame(&msg, &framed);
    char file[600];
    snprintf(file, sizeof(file), "%s/framed.bin", srv.dir);
    write_file(file, framed.data, framed.len);
    int status = curl_h2c(srv.grpc_port, EXPORT_PATH, "text/plain", file, &out);
    char said[300];
    snprintf(said, sizeof(said), "%s", out.data ? (char *)out.data : "");
    fl_buf_dispose(&out);
    fl_buf_dispose(&framed);
    fl_buf_dispose(&msg);
    assert_int_equal(stored_spans(&t), 0);
    /* gRPC over HTTP/2 (PROTOCOL-HTTP2.md): a non-gRPC content type SHOULD get 415. */
    if (status != 415)
        fail_msg("status %d for content-type text/plain on the gRPC path, expected 415: %s", status,
                 said);
    assert_true(said[0] != 0);
    assert_intact();
}

/* 1,000 streams opened at once on one connection (all HEADERS sent before the server's
 * SETTINGS are read): each is answered or refused cleanly; an OK one is stored, a refused
 * one is not; the server keeps serving. */
static void test_e2e_grpc_thousand_streams(void **st)
{
    (void)st;
    enum { N = 1000 };
    otlp_gen_trace_t *tr = calloc(N, sizeof(*tr));
    fl_buf_t *bodies = calloc(N, sizeof(*bodies));
    h2_stream_t *ss = calloc(N, sizeof(*ss));
    assert_true(tr && bodies && ss);
    h2_conn_t c;
    h2_open(&c, srv.grpc_port);
    for (int i = 0; i < N; i++) {
        fl_buf_t msg;
        tr[i] = new_trace(1);
        otlp_gen_protobuf(&tr[i], 1, &msg);
        grpc_frame(&msg, &bodies[i]);
        fl_buf_dispose(&msg);
        ss[i].body = bodies[i].data;
        ss[i].len = bodies[i].len;
        ss[i].stop_at = 1; /* hold each body after one byte until every stream is open */
        h2_submit(&c, &ss[i], EXPORT_PATH, "application/grpc");
    }
    /* Write every HEADERS frame before reading anything: the client does not know the
     * server's SETTINGS_MAX_CONCURRENT_STREAMS yet, so all 1,000 streams are opened. */
    uint64_t end = now_ms() + 10000;
    while (c.headers_sent < N && now_ms() < end) {
        assert_int_equal(nghttp2_session_send(c.s), 0);
        struct pollfd p = {c.fd, POLLOUT, 0};
        poll(&p, 1, 100);
    }
    assert_int_equal(c.headers_sent, N);
    print_message("all HEADERS sent, %d streams closed so far\n", c.closed_streams);
    for (int i = 0; i < N; i++) {
        ss[i].stop_at = 0;
        if (!ss[i].closed)
            nghttp2_session_resume_data(c.s, ss[i].id);
    }
    h2_pump(&c, N, 60000);
    int ok = 0, refused = 0, other = 0, open = 0;
    for (int i = 0; i < N; i++) {
        if (!ss[i].closed)
            open++;
        else if (ss[i].grpc_status == 0)
            ok++;
        else if (ss[i].grpc_status > 0 || ss[i].error == NGHTTP2_REFUSED_STREAM)
            refused++;
        else
            other++;
    }
    print_message("1000 streams: %d ok, %d refused, %d other, %d unanswered, goaway=%d\n", ok,
                  refused, other, open, c.goaway);
    h2_close(&c);
    if (open)
        fail_msg("%d of %d streams got no answer (connection eof=%d)", open, N, c.eof);
    assert_true(ok > 0);
    /* A refusal must be an explicit one: a grpc-status or RST_STREAM(REFUSED_STREAM)
     * (or streams beyond a GOAWAY's last stream id, which are unprocessed by definition). */
    if (other && !c.goaway)
        fail_msg("%d streams closed without a status or a refusal", other);
    for (int i = 0; i < N; i++) {
        int n = stored_spans(&tr[i]);
        if (ss[i].grpc_status == 0 && n != 1)
            fail_msg("stream %d acknowledged but %d spans stored", i, n);
        if (ss[i].error == NGHTTP2_REFUSED_STREAM && ss[i].grpc_status < 0 && n != 0)
            fail_msg("stream %d refused but its span was stored", i);
        fl_buf_dispose(&bodies[i]);
    }
    free(tr);
    free(bodies);
    free(ss);
    assert_intact();
}

/* Wait until the receiver holds no request in flight (on_abort released what it took). */
static void assert_no_inflight(void)
{
    uint64_t end = now_ms() + 10000;
    json_int_t reqs = -1, bytes = -1;
    while (now_ms() < end) {
        int status;
        json_t *j = fl_test_get_json(srv.api_port, "/aiops/status", &status);
        json_t *in = json_object_get(j, "ingest");
        reqs = json_integer_value(json_object_get(in, "inflight_requests"));
        bytes = json_integer_value(json_object_get(in, "inflight_bytes"));
        int have = in != NULL;
        json_decref(j);
        if (!have)
            return; /* not reported by this build */
        if (reqs == 0 && bytes == 0)
            return;
        sleep_ms(50);
    }
    fail_msg("requests left in flight: %lld requests, %lld bytes", (long long)reqs,
             (long long)bytes);
}

/* Clients that send the head and part of the body, then vanish (gRPC and HTTP/1.1). */
static void test_e2e_grpc_disconnect_mid_stream(void **st)
{
    (void)st;
    otlp_gen_trace_t t = new_trace(40);
    fl_buf_t msg, framed;
    otlp_gen_protobuf(&t, 1, &msg);
    grpc_frame(&msg, &framed);
    for (int i = 0; i < 20; i++) {
        h2_conn_t c;
        h2_stream_t s = {0};
        s.body = framed.data;
        s.len = framed.len;
        s.stop_at = (size_t)(i % 2 ? 5 : framed.len / 2); /* after the prefix / mid-message */
        h2_open(&c, srv.grpc_port);
        h2_submit(&c, &s, EXPORT_PATH, "application/grpc");
        h2_pump(&c, 1, 300); /* sends what it can, then stalls */
        assert_int_equal(s.closed, 0);
        if (i % 4 == 3) {
            /* Some vanish abruptly: RST on close. */
            struct linger lg = {1, 0};
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        h2_close(&c);
    }
    /* HTTP/1.1: Content-Length promises more than is sent. */
    for (int i = 0; i < 10; i++) {
        int fd = tcp_connect(srv.http_port);
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         "application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
                         msg.len);
        write_all(fd, head, (size_t)n);
        write_all(fd, msg.data, msg.len / 2);
        close(fd);
    }
    assert_no_inflight();
    assert_int_equal(stored_spans(&t), 0);
    fl_buf_dispose(&framed);
    fl_buf_dispose(&msg);
    assert_intact();
}

/* Connections that are opened and say nothing (or only the preface) do not stop others. */
static void test_e2e_grpc_silent_clients(void **st)
{
    (void)st;
    enum { N = 100 };
    int fds[3 * N];
    for (int i = 0; i < N; i++) {
        fds[i] = tcp_connect(srv.grpc_port);
        fds[N + i] = tcp_connect(srv.http_port);
        fds[2 * N + i] = tcp_connect(srv.grpc_port);
        write_all(fds[2 * N + i], h2_preface, sizeof(h2_preface) - 1);
    }
    /* While they sit there: gRPC, OTLP/HTTP and the API all answer promptly. */
    uint64_t t0 = now_ms();
    assert_intact();
    otlp_gen_trace_t t = new_trace(4);
    fl_buf_t body;
    otlp_gen_json(&t, 1, &body);
    fl_buf_t out;
    int s = fl_test_http(srv.http_port, "POST", "/v1/traces", "application/json", NULL, body.data,
                         body.len, &out, NULL, 0);
    fl_buf_dispose(&out);
    assert_int_equal(s, 200);
    assert_int_equal(stored_spans(&t), 4);
    fl_buf_dispose(&body);
    if (now_ms() - t0 > 5000)
        fail_msg("serving took %llu ms with silent connections open",
                 (unsigned long long)(now_ms() - t0));
    for (int i = 0; i < 3 * N; i++)
        close(fds[i]);
    assert_intact();
}

/* OTLP/HTTP over HTTP/2 cleartext with prior knowledge, as curl sends it: the same answers
 * as over HTTP/1.1. */
static void test_e2e_grpc_http_h2c_curl(void **st)
{
    (void)st;
    otlp_gen_trace_t tj = new_trace(6), tp = new_trace(7);
    fl_buf_t json, pb, out;
    otlp_gen_json(&tj, 1, &json);
    otlp_gen_protobuf(&tp, 1, &pb);
    char fj[600], fp[600];
    snprintf(fj, sizeof(fj), "%s/h2c.json", srv.dir);
    snprintf(fp, sizeof(fp), "%s/h2c.binpb", srv.dir);
    write_file(fj, json.data, json.len);
    write_file(fp, pb.data, pb.len);

    assert_int_equal(curl_h2c(srv.http_port, "/v1/traces", "application/json", fj, &out), 200);
    json_t *r = json_loads((char *)out.data, 0, NULL);
    assert_non_null(r); /* an ExportTraceServiceResponse as JSON */
    json_decref(r);
    fl_buf_dispose(&out);
    assert_int_equal(stored_spans(&tj), 6);

    assert_int_equal(curl_h2c(srv.http_port, "/v1/traces", "application/x-protobuf", fp, &out),
                     200);
    fl_buf_dispose(&out);
    assert_int_equal(stored_spans(&tp), 7);

    int s = curl_h2c(srv.http_port, "/v1/traces", "text/plain", fj, &out);
    if (s != 415 || !strstr((char *)out.data, "application/x-protobuf"))
        fail_msg("text/plain: %d %s", s, (char *)out.data);
    fl_buf_dispose(&out);
    s = curl_h2c(srv.http_port, "/v1/nothing", "application/json", fj, &out);
    if (s != 404 || out.len == 0)
        fail_msg("unknown path: %d %s", s, (char *)out.data);
    fl_buf_dispose(&out);
    /* The same bytes again over HTTP/1.1 for comparison: same status. */
    s = fl_test_http(srv.http_port, "POST", "/v1/nothing", "application/json", NULL, json.data,
                     json.len, &out, NULL, 0);
    assert_int_equal(s, 404);
    fl_buf_dispose(&out);
    fl_buf_dispose(&json);
    fl_buf_dispose(&pb);
    assert_intact();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_grpc_export_ok),
        cmocka_unit_test(test_e2e_grpc_garbage_frame),
        cmocka_unit_test(test_e2e_grpc_bad_framing),
        cmocka_unit_test(test_e2e_grpc_too_large),
        cmocka_unit_test(test_e2e_grpc_unknown_method),
        cmocka_unit_test(test_e2e_grpc_wrong_content_type),
        cmocka_unit_test(test_e2e_grpc_thousand_streams),
        cmocka_unit_test(test_e2e_grpc_disconnect_mid_stream),
        cmocka_unit_test(test_e2e_grpc_silent_clients),
        cmocka_unit_test(test_e2e_grpc_http_h2c_curl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
