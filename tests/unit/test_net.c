/* SPDX-License-Identifier: Apache-2.0 */
/* net HTTP/1.1 tests: real server and client on 127.0.0.1 ephemeral ports, raw sockets for
 * wire-level cases (fixtures, limits, timeouts, early answers, shutdown). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/net.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- test server */

enum mode { M_ECHO, M_EARLY503, M_DELAY, M_HOLD };

typedef struct tsrv {
    fl_net_t *n;
    int port;
    int mode;
    int delay_ms;
    atomic_int heads, bodies;
    pthread_mutex_t mu;
    uint8_t *last_body;
    size_t last_len;
    fl_net_req_t *held;
} tsrv_t;

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

/* Poll a condition until it holds or the deadline passes. */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        uint64_t dl_ = now_ms() + (ms);                                                            \
        while (!(cond) && now_ms() < dl_)                                                          \
            sleep_ms(5);                                                                           \
    } while (0)

static int h_head(fl_net_req_t *r, void *ud)
{
    tsrv_t *t = ud;
    atomic_fetch_add(&t->heads, 1);
    if (t->mode == M_EARLY503) {
        fl_net_header_t h[] = {{"Retry-After", "1"}, {"Content-Type", "text/plain"}};
        fl_net_respond(r, 503, h, 2, "overloaded", 10);
        return FL_NET_RESPONDED;
    }
    return FL_NET_READ_BODY;
}

typedef struct delayed {
    fl_net_req_t *r;
    int ms;
} delayed_t;

static void *delayed_main(void *arg)
{
    delayed_t *d = arg;
    sleep_ms(d->ms);
    fl_net_respond(d->r, 200, NULL, 0, "late", 4);
    free(d);
    return NULL;
}

static void h_body(fl_net_req_t *r, void *ud)
{
    tsrv_t *t = ud;
    size_t len;
    const uint8_t *b = fl_net_req_body(r, &len);
    pthread_mutex_lock(&t->mu);
    free(t->last_body);
    t->last_body = malloc(len + 1);
    memcpy(t->last_body, b, len);
    t->last_len = len;
    pthread_mutex_unlock(&t->mu);
    atomic_fetch_add(&t->bodies, 1);
    if (t->mode == M_DELAY) {
        delayed_t *d = malloc(sizeof(*d));
        d->r = r;
        d->ms = t->delay_ms;
        pthread_t th;
        pthread_create(&th, NULL, delayed_main, d);
        pthread_detach(th);
        return;
    }
    if (t->mode == M_HOLD) {
        pthread_mutex_lock(&t->mu);
        t->held = r;
        pthread_mutex_unlock(&t->mu);
        return;
    }
    if (strcmp(fl_net_req_path(r), "/h") == 0) {
        fl_net_respond(r, 200, NULL, 0, "headbody", 8);
        return;
    }
    char cl[32];
    snprintf(cl, sizeof(cl), "%lld", (long long)fl_net_req_content_length(r));
    fl_net_header_t h[] = {{"X-Method", fl_net_req_method(r)},
                           {"X-Path", fl_net_req_path(r)},
                           {"X-Query", fl_net_req_query(r)},
                           {"X-Peer", fl_net_req_peer(r)},
                           {"X-CL", cl},
                           {"Content-Type", "application/octet-stream"}};
    fl_net_respond(r, 200, h, 6, b, len);
}

static void srv_start(tsrv_t *t, fl_net_listen_opts_t *o)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->n = fl_net_new("test");
    assert_non_null(t->n);
    o->name = "t";
    o->host = "127.0.0.1";
    o->port = 0;
    o->handler.on_head = h_head;
    o->handler.on_body = h_body;
    o->handler.ud = t;
    char err[256];
    assert_int_equal(fl_net_listen(t->n, o, err, sizeof(err)), FL_OK);
    t->port = fl_net_bound_port(t->n, 0);
    assert_true(t->port > 0);
    assert_int_equal(fl_net_start(t->n), FL_OK);
}

static void srv_stop(tsrv_t *t)
{
    fl_net_shutdown(t->n, 2000);
    fl_net_free(t->n);
    free(t->last_body);
    pthread_mutex_destroy(&t->mu);
}

static fl_http_client_t *client(int port)
{
    fl_http_client_opts_t o = {.host = "127.0.0.1", .port = port, .timeout_ms = 10000};
    fl_http_client_t *c = fl_http_client_new(&o);
    assert_non_null(c);
    return c;
}

/* ---------------------------------------------------------------- raw sockets */

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Read one response with a Content-Length (or none). Returns bytes of head+body in out;
 * *status set; *body points into out. -1 on EOF/error before a full response. */
static int read_response(int fd, char *out, size_t cap, int *status, char **body, size_t *blen)
{
    size_t len = 0;
    char *hend = NULL;
    while (!hend) {
        ssize_t r = recv(fd, out + len, cap - len - 1, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        out[len] = 0;
        hend = strstr(out, "\r\n\r\n");
    }
    *status = atoi(out + 9);
    size_t hlen = (size_t)(hend - out) + 4;
    size_t cl = 0;
    char *p = strcasestr(out, "\r\ncontent-length:");
    if (p && p < hend)
        cl = (size_t)strtoul(p + 17, NULL, 10);
    if (*status == 100 || *status == 204 || *status == 304)
        cl = 0;
    while (len < hlen + cl) {
        ssize_t r = recv(fd, out + len, cap - len - 1, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    out[len] = 0;
    *body = out + hlen;
    *blen = cl;
    return (int)(hlen + cl);
}

/* Read until EOF; returns 0 on a clean EOF, -1 on reset or timeout. */
static int read_until_eof(int fd, int timeout_ms)
{
    uint64_t dl = now_ms() + (uint64_t)timeout_ms;
    char buf[65536];
    while (now_ms() < dl) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0)
            return 0;
        if (r < 0)
            return -1;
    }
    return -1;
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

/* ---------------------------------------------------------------- tests */

static void test_net_roundtrip_keepalive(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    fl_http_client_t *c = client(t.port);
    char peer0[128] = "", v[128];
    for (int i = 0; i < 3; i++) {
        fl_http_response_t resp;
        char body[32];
        snprintf(body, sizeof(body), "hello %d", i);
        fl_net_header_t h[] = {{"Content-Type", "text/plain"}};
        assert_int_equal(
            fl_http_client_request(c, "POST", "/echo/x?a=1&b=2", h, 1, body, strlen(body), &resp),
            FL_OK);
        assert_int_equal(resp.status, 200);
        assert_int_equal(resp.body.len, strlen(body));
        assert_memory_equal(resp.body.data, body, strlen(body));
        assert_string_equal(fl_http_response_header(&resp, "x-path", v, sizeof(v)), "/echo/x");
        assert_string_equal(fl_http_response_header(&resp, "x-query", v, sizeof(v)), "a=1&b=2");
        assert_string_equal(fl_http_response_header(&resp, "x-method", v, sizeof(v)), "POST");
        assert_non_null(fl_http_response_header(&resp, "date", v, sizeof(v)));
        assert_string_equal(fl_http_response_header(&resp, "connection", v, sizeof(v)),
                            "keep-alive");
        fl_http_response_header(&resp, "x-peer", v, sizeof(v));
        if (i == 0)
            snprintf(peer0, sizeof(peer0), "%s", v);
        else
            assert_string_equal(v, peer0); /* the same connection was reused */
        fl_http_response_dispose(&resp);
    }
    assert_int_equal(fl_net_connections(t.n), 1);
    /* GET without a body, HEAD (no body bytes), OPTIONS */
    fl_http_response_t resp;
    assert_int_equal(fl_http_client_request(c, "GET", "/g", NULL, 0, NULL, 0, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, 0);
    fl_http_response_dispose(&resp);
    assert_int_equal(fl_http_client_request(c, "OPTIONS", "*", NULL, 0, NULL, 0, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(fl_http_response_header(&resp, "x-path", v, sizeof(v)), "*");
    fl_http_response_dispose(&resp);
    fl_http_client_free(c);
    srv_stop(&t);
}

static void test_net_head_has_no_body(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    /* The handler answers /h with an 8-byte body: HEAD announces it but sends none, so the
     * next answer on the connection starts right after the HEAD head. */
    const char *req = "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, strlen(req));
    char buf[8192] = "";
    size_t len = 0;
    while (!strstr(buf, "\r\n\r\n")) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - len - 1, 0);
        assert_true(r > 0);
        len += (size_t)r;
        buf[len] = 0;
    }
    assert_non_null(strstr(buf, "Content-Length: 8\r\n"));
    assert_int_equal(strlen(strstr(buf, "\r\n\r\n")), 4); /* nothing after the head */
    req = "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    send_all(fd, req, strlen(req));
    char *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 200);
    assert_int_equal(blen, 3);
    assert_memory_equal(body, "abc", 3);
    close(fd);
    srv_stop(&t);
}

typedef struct cc_arg {
    int port;
    int id;
    int ok;
} cc_arg_t;

static void *cc_main(void *arg)
{
    cc_arg_t *a = arg;
    fl_http_client_t *c = client(a->port);
    for (int i = 0; i < 20; i++) {
        char body[64];
        int blen = snprintf(body, sizeof(body), "client %d request %d", a->id, i);
        fl_http_response_t resp;
        int rc = fl_http_client_request(c, "POST", "/c", NULL, 0, body, (size_t)blen, &resp);
        if (rc == FL_OK && resp.status == 200 && resp.body.len == (size_t)blen &&
            memcmp(resp.body.data, body, (size_t)blen) == 0)
            a->ok++;
        fl_http_response_dispose(&resp);
    }
    fl_http_client_free(c);
    return NULL;
}

static void test_net_concurrent_clients(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    pthread_t th[8];
    cc_arg_t args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (cc_arg_t){.port = t.port, .id = i};
        pthread_create(&th[i], NULL, cc_main, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 20);
    }
    assert_int_equal(atomic_load(&t.bodies), 160);
    srv_stop(&t);
}

/* Replay the OTel JS exporter's HTTP/1.1 transcripts (chunked; with gzip the 10-byte gzip
 * header is a chunk of its own) and compare the body the handler sees with the fixture. */
static void replay_fixture(const char *scenario, size_t piece)
{
    char path[512];
    size_t wlen, blen;
    snprintf(path, sizeof(path), "%s/fixtures/wire/http-protobuf/%s.c2s.bin", FL_TEST_DATA_DIR,
             scenario);
    uint8_t *wire = read_file(path, &wlen);
    snprintf(path, sizeof(path), "%s/fixtures/http-protobuf/%s.body", FL_TEST_DATA_DIR, scenario);
    uint8_t *want = read_file(path, &blen);
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    for (size_t off = 0; off < wlen; off += piece)
        send_all(fd, wire + off, wlen - off < piece ? wlen - off : piece);
    static char buf[1 << 20];
    char *body;
    size_t rlen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &rlen) > 0);
    assert_int_equal(st, 200);
    assert_int_equal(rlen, blen);             /* echoed back */
    assert_non_null(strstr(buf, "X-CL: -1")); /* chunked: no Content-Length */
    pthread_mutex_lock(&t.mu);
    assert_int_equal(t.last_len, blen);
    assert_memory_equal(t.last_body, want, blen);
    pthread_mutex_unlock(&t.mu);
    close(fd);
    srv_stop(&t);
    free(wire);
    free(want);
}

static void test_net_fixture_chunked(void **state)
{
    replay_fixture("healthy", 1 << 20);
    replay_fixture("healthy.gz", 1 << 20);
    replay_fixture("healthy.gz", 7); /* split everywhere: chunk sizes, CRLFs, headers */
    replay_fixture("healthy", 4093);
}

static void test_net_413_content_length(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.max_body = 1000};
    srv_start(&t, &o);
    /* Raw: the head announces too much; the answer comes before any body byte. */
    int fd = tcp_connect(t.port);
    const char *req = "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n";
    send_all(fd, req, strlen(req));
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 413);
    assert_non_null(strstr(body, "limit of 1000"));
    assert_non_null(strcasestr(buf, "Connection: close"));
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    /* Through the client, which sends the whole body before reading. */
    fl_http_client_t *c = client(t.port);
    size_t big = 300000;
    uint8_t *data = calloc(1, big);
    fl_http_response_t resp;
    assert_int_equal(fl_http_client_request(c, "POST", "/big", NULL, 0, data, big, &resp), FL_OK);
    assert_int_equal(resp.status, 413);
    fl_http_response_dispose(&resp);
    /* A request within the limit still works (the client reconnects). */
    assert_int_equal(fl_http_client_request(c, "POST", "/ok", NULL, 0, data, 1000, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    fl_http_response_dispose(&resp);
    assert_int_equal(atomic_load(&t.heads), 1); /* the oversized ones never reached on_head */
    free(data);
    fl_http_client_free(c);
    srv_stop(&t);
}

static void test_net_413_chunked(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.max_body = 1000};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    const char *head = "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, head, strlen(head));
    char chunk[700];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        send_all(fd, "2bc\r\n", 5);
        send_all(fd, chunk, sizeof(chunk));
        send_all(fd, "\r\n", 2);
    }
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 413);
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    assert_int_equal(atomic_load(&t.bodies), 0);
    srv_stop(&t);
}

static void test_net_431(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.max_header = 2048};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    char req[8192];
    char big[4000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    send_all(fd, req, strlen(req));
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 431);
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    /* garbage gets a 400 */
    fd = tcp_connect(t.port);
    send_all(fd, "\x01\x02 nonsense\r\n\r\n", 15);
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 400);
    close(fd);
    srv_stop(&t);
}

static void test_net_early_response_drain(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_EARLY503;
    /* Known, small body: drained, the connection stays usable. */
    fl_http_client_t *c = client(t.port);
    size_t n = 512 * 1024;
    uint8_t *data = malloc(n);
    memset(data, 'z', n);
    char v[64];
    for (int i = 0; i < 2; i++) {
        fl_http_response_t resp;
        assert_int_equal(fl_http_client_request(c, "POST", "/v1/traces", NULL, 0, data, n, &resp),
                         FL_OK);
        assert_int_equal(resp.status, 503);
        assert_int_equal(resp.body.len, 10);
        assert_memory_equal(resp.body.data, "overloaded", 10);
        assert_string_equal(fl_http_response_header(&resp, "retry-after", v, sizeof(v)), "1");
        assert_string_equal(fl_http_response_header(&resp, "connection", v, sizeof(v)),
                            "keep-alive");
        fl_http_response_dispose(&resp);
    }
    assert_int_equal(fl_net_connections(t.n), 1);
    fl_http_client_free(c);
    /* Chunked body of unknown size (as the OTel exporters send): Connection: close, then a
     * half-close; the client keeps sending and still reads the 503 intact, no reset. */
    int fd = tcp_connect(t.port);
    const char *head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, head, strlen(head));
    for (int i = 0; i < 64; i++) {
        char sz[16];
        snprintf(sz, sizeof(sz), "%x\r\n", 65536);
        send_all(fd, sz, strlen(sz));
        send_all(fd, data, 65536);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 503);
    assert_int_equal(blen, 10);
    assert_memory_equal(body, "overloaded", 10);
    assert_non_null(strcasestr(buf, "Connection: close"));
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    assert_int_equal(atomic_load(&t.bodies), 0);
    free(data);
    srv_stop(&t);
}

static void test_net_expect_continue(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    const char *head =
        "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    send_all(fd, head, strlen(head));
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 100);
    send_all(fd, "hello", 5);
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 200);
    assert_memory_equal(body, "hello", 5);
    close(fd);
    srv_stop(&t);
}

static void test_net_pipelining(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_DELAY; /* answers come from other threads; order must still hold */
    t.delay_ms = 20;
    int fd = tcp_connect(t.port);
    const char *reqs = "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
                       "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"
                       "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, reqs, strlen(reqs));
    char buf[16384];
    size_t len = 0;
    int count = 0;
    uint64_t dl = now_ms() + 5000;
    while (count < 3 && now_ms() < dl) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - len - 1, 0);
        assert_true(r > 0);
        len += (size_t)r;
        buf[len] = 0;
        count = 0;
        for (char *p = buf; (p = strstr(p, "HTTP/1.1 200")); p++)
            count++;
        if (count == 3 && !strstr(strrchr(buf, 'H'), "late"))
            count = 2; /* the last body has not arrived */
    }
    assert_int_equal(count, 3);
    assert_int_equal(atomic_load(&t.bodies), 3);
    close(fd);
    srv_stop(&t);
}

static void test_net_respond_from_thread(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_DELAY;
    t.delay_ms = 150;
    fl_http_client_t *c = client(t.port);
    fl_http_response_t resp;
    uint64_t t0 = now_ms();
    assert_int_equal(fl_http_client_request(c, "POST", "/slow", NULL, 0, "x", 1, &resp), FL_OK);
    assert_true(now_ms() - t0 >= 140);
    assert_int_equal(resp.status, 200);
    assert_memory_equal(resp.body.data, "late", 4);
    fl_http_response_dispose(&resp);
    fl_http_client_free(c);
    WAIT_UNTIL(fl_net_inflight(t.n) == 0, 2000);
    assert_int_equal(fl_net_inflight(t.n), 0);
    srv_stop(&t);
}

static void test_net_client_disconnect(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_HOLD;
    int fd = tcp_connect(t.port);
    const char *req = "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd";
    send_all(fd, req, strlen(req));
    WAIT_UNTIL(atomic_load(&t.bodies) == 1, 5000);
    assert_int_equal(atomic_load(&t.bodies), 1);
    /* Abortive close (RST): the server drops the connection while the handler still owns
     * the request. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    WAIT_UNTIL(fl_net_connections(t.n) == 0, 5000);
    assert_int_equal(fl_net_connections(t.n), 0);
    assert_int_equal(fl_net_inflight(t.n), 1);
    pthread_mutex_lock(&t.mu);
    fl_net_req_t *r = t.held;
    t.held = NULL;
    pthread_mutex_unlock(&t.mu);
    size_t len;
    fl_net_req_body(r, &len); /* still readable until answered */
    assert_int_equal(len, 4);
    fl_net_respond(r, 200, NULL, 0, "gone", 4); /* dropped silently and freed */
    WAIT_UNTIL(fl_net_inflight(t.n) == 0, 5000);
    assert_int_equal(fl_net_inflight(t.n), 0);
    /* Half-close (FIN after the request): the answer is still delivered, then EOF. */
    fd = tcp_connect(t.port);
    send_all(fd, req, strlen(req));
    shutdown(fd, SHUT_WR);
    WAIT_UNTIL(atomic_load(&t.bodies) == 2, 5000);
    pthread_mutex_lock(&t.mu);
    r = t.held;
    pthread_mutex_unlock(&t.mu);
    assert_non_null(r);
    fl_net_respond(r, 200, NULL, 0, "late", 4);
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 200);
    assert_memory_equal(body, "late", 4);
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    srv_stop(&t);
}

static void test_net_idle_timeout(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.idle_timeout_ms = 200};
    srv_start(&t, &o);
    int fd = tcp_connect(t.port);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, strlen(req));
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    uint64_t t0 = now_ms();
    assert_int_equal(read_until_eof(fd, 5000), 0);
    assert_true(now_ms() - t0 >= 150);
    close(fd);
    /* The client notices the closed idle connection and reconnects. */
    fl_http_client_t *c = client(t.port);
    fl_http_response_t resp;
    assert_int_equal(fl_http_client_request(c, "GET", "/a", NULL, 0, NULL, 0, &resp), FL_OK);
    fl_http_response_dispose(&resp);
    WAIT_UNTIL(fl_net_connections(t.n) == 0, 5000);
    assert_int_equal(fl_net_connections(t.n), 0);
    assert_int_equal(fl_http_client_request(c, "GET", "/b", NULL, 0, NULL, 0, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    fl_http_response_dispose(&resp);
    fl_http_client_free(c);
    srv_stop(&t);
}

static void test_net_header_timeout(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.header_timeout_ms = 200};
    srv_start(&t, &o);
    /* slowloris: part of a head, then silence */
    int fd = tcp_connect(t.port);
    const char *part = "POST / HTTP/1.1\r\nHost: x\r\nX-A: ";
    send_all(fd, part, strlen(part));
    char buf[4096], *body;
    size_t blen;
    int st;
    uint64_t t0 = now_ms();
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 408);
    assert_int_equal(read_until_eof(fd, 5000), 0);
    assert_true(now_ms() - t0 < 3000);
    close(fd);
    /* a connection that sends nothing at all */
    fd = tcp_connect(t.port);
    assert_int_equal(read_until_eof(fd, 5000), 0);
    close(fd);
    /* a keep-alive connection whose second head is slow */
    fd = tcp_connect(t.port);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, strlen(req));
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    send_all(fd, "GET / HTT", 9);
    assert_true(read_response(fd, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 408);
    close(fd);
    srv_stop(&t);
}

static void test_net_max_connections(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {.max_connections = 2};
    srv_start(&t, &o);
    int a = tcp_connect(t.port), b = tcp_connect(t.port);
    WAIT_UNTIL(fl_net_connections(t.n) == 2, 5000);
    assert_int_equal(fl_net_connections(t.n), 2);
    int c = tcp_connect(t.port);
    char x;
    ssize_t r = recv(c, &x, 1, 0);
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET)); /* closed at once */
    close(c);
    assert_int_equal(fl_net_connections(t.n), 2);
    /* the admitted ones still work */
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(a, req, strlen(req));
    char buf[4096], *body;
    size_t blen;
    int st;
    assert_true(read_response(a, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 200);
    close(a);
    close(b);
    WAIT_UNTIL(fl_net_connections(t.n) == 0, 5000);
    c = tcp_connect(t.port); /* room again */
    send_all(c, req, strlen(req));
    assert_true(read_response(c, buf, sizeof(buf), &st, &body, &blen) > 0);
    assert_int_equal(st, 200);
    close(c);
    srv_stop(&t);
}

typedef struct sd_arg {
    int port;
    int status;
    char conn[32];
    int rc;
} sd_arg_t;

static void *sd_client(void *arg)
{
    sd_arg_t *a = arg;
    fl_http_client_t *c = client(a->port);
    fl_http_response_t resp;
    a->rc = fl_http_client_request(c, "POST", "/inflight", NULL, 0, "x", 1, &resp);
    a->status = resp.status;
    fl_http_response_header(&resp, "connection", a->conn, sizeof(a->conn));
    fl_http_response_dispose(&resp);
    fl_http_client_free(c);
    return NULL;
}

static void test_net_graceful_shutdown(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_DELAY;
    t.delay_ms = 300;
    int idle = tcp_connect(t.port); /* an idle keep-alive connection gets closed */
    sd_arg_t a = {.port = t.port};
    pthread_t th;
    pthread_create(&th, NULL, sd_client, &a);
    WAIT_UNTIL(fl_net_inflight(t.n) == 1, 5000);
    assert_int_equal(fl_net_inflight(t.n), 1);
    fl_net_shutdown(t.n, 5000); /* returns once the in-flight request is answered */
    pthread_join(th, NULL);
    assert_int_equal(a.rc, FL_OK);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.conn, "close");
    assert_int_equal(read_until_eof(idle, 2000), 0);
    close(idle);
    /* no longer listening */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    /* a restarted server rebinds the same port at once (SO_REUSEADDR) */
    fl_net_t *n2 = fl_net_new("again");
    fl_net_listen_opts_t o2 = {.host = "127.0.0.1", .port = t.port, .handler = o.handler};
    char err[256];
    assert_int_equal(fl_net_listen(n2, &o2, err, sizeof(err)), FL_OK);
    assert_int_equal(fl_net_bound_port(n2, 0), t.port);
    fl_net_free(n2);
    fl_net_free(t.n);
    free(t.last_body);
    pthread_mutex_destroy(&t.mu);
}

static void test_net_shutdown_timeout(void **state)
{
    tsrv_t t;
    fl_net_listen_opts_t o = {0};
    srv_start(&t, &o);
    t.mode = M_HOLD; /* never answered: shutdown gives up after its timeout */
    int fd = tcp_connect(t.port);
    const char *req = "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na";
    send_all(fd, req, strlen(req));
    WAIT_UNTIL(atomic_load(&t.bodies) == 1, 5000);
    uint64_t t0 = now_ms();
    fl_net_shutdown(t.n, 200);
    assert_true(now_ms() - t0 < 3000);
    assert_int_equal(read_until_eof(fd, 2000), 0);
    close(fd);
    /* Answering after the stop frees the request. */
    fl_net_respond(t.held, 200, NULL, 0, NULL, 0);
    assert_int_equal(fl_net_inflight(t.n), 0);
    fl_net_free(t.n);
    free(t.last_body);
    pthread_mutex_destroy(&t.mu);
}

/* A scripted raw server for the client: chunked answer, close-delimited answer, silence. */
typedef struct raw_srv {
    int lfd;
    int port;
} raw_srv_t;

static void read_head(int fd)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0)
            return;
        len += (size_t)r;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n"))
            return;
    }
}

static void *raw_main(void *arg)
{
    raw_srv_t *rs = arg;
    /* 1: chunked, keep-alive; a second request on it gets a 100 Continue first */
    int fd = accept(rs->lfd, NULL, NULL);
    read_head(fd);
    const char *a = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
                    "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
    send_all(fd, a, strlen(a));
    read_head(fd);
    const char *b =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    send_all(fd, b, strlen(b));
    close(fd);
    /* 2: no length, ends at close */
    fd = accept(rs->lfd, NULL, NULL);
    read_head(fd);
    const char *c = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
    send_all(fd, c, strlen(c));
    close(fd);
    /* 3: never answers */
    fd = accept(rs->lfd, NULL, NULL);
    read_head(fd);
    char x;
    recv(fd, &x, 1, 0); /* until the client gives up */
    close(fd);
    return NULL;
}

static void test_net_client_framing(void **state)
{
    raw_srv_t rs;
    rs.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(rs.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(rs.lfd, 8), 0);
    socklen_t sl = sizeof(a);
    getsockname(rs.lfd, (struct sockaddr *)&a, &sl);
    rs.port = ntohs(a.sin_port);
    pthread_t th;
    pthread_create(&th, NULL, raw_main, &rs);
    fl_http_client_opts_t o = {.host = "127.0.0.1", .port = rs.port, .timeout_ms = 400};
    fl_http_client_t *c = fl_http_client_new(&o);
    fl_http_response_t resp;
    char v[64];
    assert_int_equal(fl_http_client_request(c, "GET", "/1", NULL, 0, NULL, 0, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, 11);
    assert_memory_equal(resp.body.data, "hello world", 11);
    assert_string_equal(fl_http_response_header(&resp, "x-kind", v, sizeof(v)), "chunked");
    fl_http_response_dispose(&resp);
    assert_int_equal(fl_http_client_request(c, "POST", "/2", NULL, 0, "b", 1, &resp), FL_OK);
    assert_int_equal(resp.status, 201);
    assert_memory_equal(resp.body.data, "ok", 2);
    fl_http_response_dispose(&resp);
    /* the server closed that connection: the client reconnects for the next request */
    assert_int_equal(fl_http_client_request(c, "GET", "/3", NULL, 0, NULL, 0, &resp), FL_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, 13);
    assert_memory_equal(resp.body.data, "until the end", 13);
    fl_http_response_dispose(&resp);
    uint64_t t0 = now_ms();
    assert_int_equal(fl_http_client_request(c, "GET", "/4", NULL, 0, NULL, 0, &resp),
                     FL_ERR_TIMEOUT);
    assert_true(now_ms() - t0 >= 350 && now_ms() - t0 < 3000);
    fl_http_response_dispose(&resp);
    fl_http_client_free(c);
    pthread_join(th, NULL);
    close(rs.lfd);
}

static void test_net_listen_errors(void **state)
{
    fl_net_t *n = fl_net_new("bad");
    fl_net_listen_opts_t o = {.host = "127.0.0.1", .handler = {.on_body = h_body}};
    o.tls.cert_file = "/nonexistent/cert.pem";
    o.tls.key_file = "/nonexistent/key.pem";
    char err[256];
    assert_int_equal(fl_net_listen(n, &o, err, sizeof(err)), FL_ERR_INVALID);
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    fl_net_listen_opts_t o2 = {.host = "256.1.1.1", .handler = {.on_body = h_body}};
    assert_int_not_equal(fl_net_listen(n, &o2, err, sizeof(err)), FL_OK);
    /* a port in use */
    fl_net_listen_opts_t o3 = {.host = "127.0.0.1", .handler = {.on_body = h_body}};
    assert_int_equal(fl_net_listen(n, &o3, err, sizeof(err)), FL_OK);
    o3.port = fl_net_bound_port(n, 0);
    fl_net_t *n2 = fl_net_new("bad2");
    assert_int_equal(fl_net_listen(n2, &o3, err, sizeof(err)), FL_ERR_IO);
    assert_non_null(strstr(err, "in use"));
    fl_net_free(n2);
    fl_net_free(n);
    assert_string_equal(fl_net_status_text(404), "Not Found");
}

int main(void)
{
    if (getenv("FL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("FL_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_roundtrip_keepalive),
        cmocka_unit_test(test_net_head_has_no_body),
        cmocka_unit_test(test_net_concurrent_clients),
        cmocka_unit_test(test_net_fixture_chunked),
        cmocka_unit_test(test_net_413_content_length),
        cmocka_unit_test(test_net_413_chunked),
        cmocka_unit_test(test_net_431),
        cmocka_unit_test(test_net_early_response_drain),
        cmocka_unit_test(test_net_expect_continue),
        cmocka_unit_test(test_net_pipelining),
        cmocka_unit_test(test_net_respond_from_thread),
        cmocka_unit_test(test_net_client_disconnect),
        cmocka_unit_test(test_net_idle_timeout),
        cmocka_unit_test(test_net_header_timeout),
        cmocka_unit_test(test_net_max_connections),
        cmocka_unit_test(test_net_graceful_shutdown),
        cmocka_unit_test(test_net_shutdown_timeout),
        cmocka_unit_test(test_net_client_framing),
        cmocka_unit_test(test_net_listen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
