/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: TLS and mTLS on all three listeners of the real server, with certificates the
 * test generates with the openssl CLI (a CA, a server certificate for 127.0.0.1/localhost, a
 * client certificate from the CA and one from a foreign CA). OTLP/HTTP (HTTP/1.1 and h2 via
 * ALPN with curl), gRPC and the API; a bad certificate path fails at start-up. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "otlp_gen.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

static char certdir[256];
static char ca_pem[300], srv_pem[300], srv_key[300], cli_pem[300], cli_key[300], foreign_pem[300],
    foreign_key[300];
static uint64_t id_base, id_next;

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

/* ---------------------------------------------------------------- certificates */

/* Generate the CA, server, client and foreign client certificates into dir with the openssl
 * CLI (EC P-256 keys: quick to make). Returns 0 or -1. */
static int make_certs(const char *dir)
{
    char script[4096];
    snprintf(script, sizeof(script),
             "set -e; cd '%s'\n"
             "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
             "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=fl-test-ca\n"
             "openssl req -x509 $K -keyout fca.key -out fca.pem -days 2 -subj /CN=fl-foreign-ca\n"
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n"
             "extendedKeyUsage=serverAuth\\nbasicConstraints=CA:FALSE\\n' > server.ext\n"
             "printf 'extendedKeyUsage=clientAuth\\nbasicConstraints=CA:FALSE\\n' > client.ext\n"
             "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost\n"
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out server.pem -days 2 -extfile server.ext\n"
             "openssl req $K -keyout client.key -out client.csr -subj /CN=fl-client\n"
             "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out client.pem -days 2 -extfile client.ext\n"
             "openssl req $K -keyout foreign.key -out foreign.csr -subj /CN=fl-client\n"
             "openssl x509 -req -in foreign.csr -CA fca.pem -CAkey fca.key -CAcreateserial "
             "-out foreign.pem -days 2 -extfile client.ext\n",
             dir);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "/bin/sh -c \"$FL_CERT_SCRIPT\" > '%s/openssl.log' 2>&1", dir);
    setenv("FL_CERT_SCRIPT", script, 1);
    int rc = system(cmd);
    unsetenv("FL_CERT_SCRIPT");
    if (rc != 0) {
        char p[400];
        snprintf(p, sizeof(p), "%s/openssl.log", dir);
        char *log = fl_test_read_file(p, NULL);
        fprintf(stderr, "openssl failed:\n%s\n", log ? log : "");
        free(log);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- a TLS server */

typedef struct tls_mode {
    int mtls;
} tls_mode_t;

static fl_http_client_t *https_client(int port, const char *cert, const char *key)
{
    fl_http_client_opts_t o = {0};
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_ms = 10000;
    o.tls = 1;
    o.ca_file = ca_pem;
    o.cert_file = cert;
    o.key_file = key;
    return fl_http_client_new(&o);
}

/* GET/POST over TLS; returns the status or -1 (transport failure); body into out when given. */
static int https(int port, const char *cert, const char *key, const char *method, const char *path,
                 const char *ctype, const void *body, size_t len, fl_buf_t *out)
{
    fl_http_client_t *c = https_client(port, cert, key);
    assert_non_null(c);
    fl_net_header_t h = {"Content-Type", ctype};
    fl_http_response_t r;
    int status = -1;
    if (out)
        fl_buf_init(out, 0);
    if (fl_http_client_request(c, method, path, &h, ctype ? 1 : 0, body, len, &r) == FL_OK) {
        status = r.status;
        if (out && r.body.len)
            fl_buf_append(out, r.body.data, r.body.len);
        fl_http_response_dispose(&r);
    }
    fl_http_client_free(c);
    return status;
}

/* Start faultline with TLS (and mTLS when client_ca) on ephemeral ports; ready once the port
 * file exists and /health answers 200 over TLS. The harness's own start checks /health in
 * plain HTTP, which a TLS API refuses. */
static int tls_start(fl_test_server_t *s, int mtls)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/fl-e2e-tls-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(s->db, sizeof(s->db), "%s/faultline.db", s->dir);
    snprintf(s->port_file, sizeof(s->port_file), "%s/ports.json", s->dir);
    snprintf(s->log_path, sizeof(s->log_path), "%s/server.log", s->dir);
    const char *argv[] = {FL_BUILD_DIR "/faultline",
                          "serve",
                          "--otlp-grpc",
                          "127.0.0.1:0",
                          "--otlp-http",
                          "127.0.0.1:0",
                          "--api",
                          "127.0.0.1:0",
                          "--db",
                          s->db,
                          "--port-file",
                          s->port_file,
                          "--tls-cert",
                          srv_pem,
                          "--tls-key",
                          srv_key,
                          mtls ? "--tls-client-ca" : NULL,
                          ca_pem,
                          NULL};
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    fl_test_track_pid(pid);
    uint64_t end = now_ms() + 20000;
    while (now_ms() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            char *log = fl_test_read_file(s->log_path, NULL);
            fprintf(stderr, "faultline exited during start-up; log:\n%s\n", log ? log : "");
            free(log);
            return -1;
        }
        char *ports = fl_test_read_file(s->port_file, NULL);
        json_t *j = ports ? json_loads(ports, 0, NULL) : NULL;
        free(ports);
        if (j) {
            s->grpc_port = (int)json_integer_value(json_object_get(j, "otlp-grpc"));
            s->http_port = (int)json_integer_value(json_object_get(j, "otlp-http"));
            s->api_port = (int)json_integer_value(json_object_get(j, "api"));
            json_decref(j);
            if (https(s->api_port, cli_pem, cli_key, "GET", "/health", NULL, NULL, 0, NULL) == 200)
                return 0;
        }
        sleep_ms(50);
    }
    fl_test_server_kill(s);
    return -1;
}

static void tls_stop(fl_test_server_t *s)
{
    int rc = fl_test_server_stop(s);
    if (rc != 0) {
        char *log = fl_test_read_file(s->log_path, NULL);
        fprintf(stderr, "faultline exit %d; log:\n%s\n", rc, log ? log : "");
        free(log);
    }
    fl_test_server_cleanup(s);
    assert_int_equal(rc, 0);
}

/* ---------------------------------------------------------------- helpers */

static otlp_gen_trace_t new_trace(int n)
{
    otlp_gen_trace_t t = {{0}, 0, n, "tls-e2e", 1796004969000000000ull};
    uint64_t k = ++id_next;
    for (int i = 0; i < 8; i++) {
        t.trace_id[i] = (uint8_t)(id_base >> (56 - 8 * i));
        t.trace_id[8 + i] = (uint8_t)(k >> (56 - 8 * i));
    }
    t.span_seed = (id_base ^ (k << 20)) | 1;
    t.start_ns += k * 1000000;
    return t;
}

/* Spans of the trace as the API (over TLS, with the good client cert) returns them. */
static int stored_spans(fl_test_server_t *s, const otlp_gen_trace_t *t)
{
    char hex[33], url[96];
    otlp_gen_hex(t->trace_id, 16, hex);
    snprintf(url, sizeof(url), "/api/traces/%s", hex);
    fl_buf_t out;
    int st = https(s->api_port, cli_pem, cli_key, "GET", url, NULL, NULL, 0, &out);
    int n = -1;
    if (st == 404)
        n = 0;
    else if (st == 200) {
        json_t *j = json_loadb((const char *)out.data, out.len, 0, NULL);
        n = (int)json_array_size(json_object_get(j, "spans"));
        json_decref(j);
    }
    fl_buf_dispose(&out);
    return n;
}

/* A gRPC export over TLS; returns the grpc-status, or -1 when the call failed in transport. */
static int grpc_export(int port, const char *cert, const char *key, const otlp_gen_trace_t *t)
{
    fl_grpc_client_opts_t o = {0};
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_ms = 10000;
    o.tls = 1;
    o.ca_file = ca_pem;
    o.cert_file = cert;
    o.key_file = key;
    fl_grpc_client_t *c = fl_grpc_client_new(&o);
    assert_non_null(c);
    fl_buf_t msg;
    otlp_gen_protobuf(t, 1, &msg);
    fl_grpc_result_t res;
    int st = -1;
    if (fl_grpc_client_call(c, EXPORT_PATH, NULL, 0, msg.data, msg.len, 0, &res) == FL_OK) {
        st = res.grpc_status;
        fl_grpc_result_dispose(&res);
    }
    fl_grpc_client_free(c);
    fl_buf_dispose(&msg);
    return st;
}

static int http_export(int port, const char *cert, const char *key, const otlp_gen_trace_t *t)
{
    fl_buf_t body, out;
    otlp_gen_json(t, 1, &body);
    int st =
        https(port, cert, key, "POST", "/v1/traces", "application/json", body.data, body.len, &out);
    fl_buf_dispose(&body);
    fl_buf_dispose(&out);
    return st;
}

/* Run curl with args; stdout into out (NUL-terminated). Returns curl's exit code. */
static int run_curl(const char *const *args, fl_buf_t *out)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = "curl";
    for (int i = 0; args[i] && n < 46; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = fl_test_run_capture(argv, out, 1);
    assert_true(rc >= 0);
    return rc;
}

/* curl over TLS (ALPN h2 unless http1); returns curl's exit code, *version and *status from
 * its -w output. */
static int curl_tls(const char *host, int port, const char *path, const char *ctype,
                    const char *file, int http1, const char *cert, const char *key, int *version,
                    int *status, fl_buf_t *out)
{
    char url[160], ct[128], data[400];
    snprintf(url, sizeof(url), "https://%s:%d%s", host, port, path);
    snprintf(ct, sizeof(ct), "content-type: %s", ctype);
    snprintf(data, sizeof(data), "@%s", file);
    const char *a[32] = {"-sS",
                         "-m",
                         "20",
                         http1 ? "--http1.1" : "--http2",
                         "--cacert",
                         ca_pem,
                         "-X",
                         "POST",
                         "-H",
                         ct,
                         "--data-binary",
                         data,
                         "-w",
                         "\n%{http_version} %{http_code}",
                         url};
    int n = 15;
    if (cert) {
        a[n++] = "--cert";
        a[n++] = cert;
        a[n++] = "--key";
        a[n++] = key;
    }
    a[n] = NULL;
    int rc = run_curl(a, out);
    *version = *status = 0;
    char *nl = strrchr((char *)out->data, '\n');
    if (nl) {
        float v = 0;
        sscanf(nl + 1, "%f %d", &v, status);
        *version = (int)(v * 10 + 0.5f);
        *nl = 0;
    }
    return rc;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    id_base = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    snprintf(certdir, sizeof(certdir), "/tmp/fl-e2e-certs-XXXXXX");
    if (!mkdtemp(certdir))
        return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", certdir);
    snprintf(srv_pem, sizeof(srv_pem), "%s/server.pem", certdir);
    snprintf(srv_key, sizeof(srv_key), "%s/server.key", certdir);
    snprintf(cli_pem, sizeof(cli_pem), "%s/client.pem", certdir);
    snprintf(cli_key, sizeof(cli_key), "%s/client.key", certdir);
    snprintf(foreign_pem, sizeof(foreign_pem), "%s/foreign.pem", certdir);
    snprintf(foreign_key, sizeof(foreign_key), "%s/foreign.key", certdir);
    return make_certs(certdir);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- tests */

/* TLS on: OTLP/HTTP (HTTP/1.1 and h2 by ALPN), gRPC and the API all work over TLS with the
 * server verified against the test CA; plain text is refused. */
static void test_e2e_tls_serves_all_listeners(void **st)
{
    (void)st;
    fl_test_server_t s;
    assert_int_equal(tls_start(&s, 0), 0);

    otlp_gen_trace_t th = new_trace(3), tg = new_trace(4);
    assert_int_equal(http_export(s.http_port, NULL, NULL, &th), 200);
    assert_int_equal(stored_spans(&s, &th), 3);
    assert_int_equal(grpc_export(s.grpc_port, NULL, NULL, &tg), 0);
    assert_int_equal(stored_spans(&s, &tg), 4);
    assert_int_equal(https(s.api_port, NULL, NULL, "GET", "/health", NULL, NULL, 0, NULL), 200);

    /* Plain HTTP to a TLS listener is not served. */
    fl_buf_t b;
    int status = fl_test_http(s.http_port, "GET", "/health", NULL, NULL, NULL, 0, &b, NULL, 0);
    fl_buf_dispose(&b);
    assert_true(status != 200);
    status = fl_test_http(s.api_port, "GET", "/health", NULL, NULL, NULL, 0, &b, NULL, 0);
    fl_buf_dispose(&b);
    assert_true(status != 200);

    /* curl: h2 by ALPN, then HTTP/1.1 by ALPN; same answers as plain HTTP/1.1; the certificate
     * is valid for localhost as well as 127.0.0.1. */
    otlp_gen_trace_t tc = new_trace(5), tc1 = new_trace(2);
    fl_buf_t json;
    char fj[400], fj1[400];
    snprintf(fj, sizeof(fj), "%s/c.json", s.dir);
    snprintf(fj1, sizeof(fj1), "%s/c1.json", s.dir);
    otlp_gen_json(&tc, 1, &json);
    write_file(fj, json.data, json.len);
    fl_buf_dispose(&json);
    otlp_gen_json(&tc1, 1, &json);
    write_file(fj1, json.data, json.len);
    fl_buf_dispose(&json);
    int ver, code;
    fl_buf_t out;
    assert_int_equal(curl_tls("localhost", s.http_port, "/v1/traces", "application/json", fj, 0,
                              NULL, NULL, &ver, &code, &out),
                     0);
    if (ver != 20 || code != 200)
        fail_msg("curl --http2: version %d status %d: %s", ver, code, (char *)out.data);
    fl_buf_dispose(&out);
    assert_int_equal(stored_spans(&s, &tc), 5);
    assert_int_equal(curl_tls("127.0.0.1", s.http_port, "/v1/traces", "text/plain", fj, 0, NULL,
                              NULL, &ver, &code, &out),
                     0);
    assert_int_equal(ver, 20);
    if (code != 415 || !strstr((char *)out.data, "application/x-protobuf"))
        fail_msg("h2 text/plain: %d %s", code, (char *)out.data);
    fl_buf_dispose(&out);
    assert_int_equal(curl_tls("127.0.0.1", s.http_port, "/v1/nothing", "application/json", fj, 0,
                              NULL, NULL, &ver, &code, &out),
                     0);
    assert_int_equal(ver, 20);
    assert_int_equal(code, 404);
    fl_buf_dispose(&out);
    assert_int_equal(curl_tls("127.0.0.1", s.http_port, "/v1/traces", "application/json", fj1, 1,
                              NULL, NULL, &ver, &code, &out),
                     0);
    assert_int_equal(ver, 11);
    assert_int_equal(code, 200);
    fl_buf_dispose(&out);
    assert_int_equal(stored_spans(&s, &tc1), 2);
    tls_stop(&s);
}

/* mTLS: a client certificate from the configured CA is accepted on every listener; none, or
 * one from a foreign CA, is refused, and nothing it sent is stored. */
static void test_e2e_tls_mtls(void **st)
{
    (void)st;
    fl_test_server_t s;
    assert_int_equal(tls_start(&s, 1), 0);

    otlp_gen_trace_t ok_h = new_trace(3), ok_g = new_trace(2);
    assert_int_equal(http_export(s.http_port, cli_pem, cli_key, &ok_h), 200);
    assert_int_equal(grpc_export(s.grpc_port, cli_pem, cli_key, &ok_g), 0);
    assert_int_equal(stored_spans(&s, &ok_h), 3);
    assert_int_equal(stored_spans(&s, &ok_g), 2);

    const char *certs[2][2] = {{NULL, NULL}, {foreign_pem, foreign_key}};
    for (int i = 0; i < 2; i++) {
        const char *cert = certs[i][0], *key = certs[i][1];
        otlp_gen_trace_t th = new_trace(3), tg = new_trace(3), tc = new_trace(3);
        int hs = http_export(s.http_port, cert, key, &th);
        if (hs != -1)
            fail_msg("OTLP/HTTP with %s client cert answered %d", cert ? "a foreign" : "no", hs);
        int gs = grpc_export(s.grpc_port, cert, key, &tg);
        if (gs != -1)
            fail_msg("gRPC with %s client cert answered grpc-status %d", cert ? "a foreign" : "no",
                     gs);
        int as = https(s.api_port, cert, key, "GET", "/health", NULL, NULL, 0, NULL);
        if (as != -1)
            fail_msg("API with %s client cert answered %d", cert ? "a foreign" : "no", as);
        /* curl too (h2 by ALPN). */
        fl_buf_t json, out;
        char fj[400];
        snprintf(fj, sizeof(fj), "%s/m%d.json", s.dir, i);
        otlp_gen_json(&tc, 1, &json);
        write_file(fj, json.data, json.len);
        fl_buf_dispose(&json);
        int ver, code;
        int rc = curl_tls("127.0.0.1", s.http_port, "/v1/traces", "application/json", fj, 0, cert,
                          key, &ver, &code, &out);
        fl_buf_dispose(&out);
        if (rc == 0 || code == 200)
            fail_msg("curl with %s client cert: exit %d status %d", cert ? "a foreign" : "no", rc,
                     code);
        assert_int_equal(stored_spans(&s, &th), 0);
        assert_int_equal(stored_spans(&s, &tg), 0);
        assert_int_equal(stored_spans(&s, &tc), 0);
    }
    /* curl with the good certificate, after the refusals: still served. */
    otlp_gen_trace_t tc = new_trace(4);
    fl_buf_t json, out;
    char fj[400];
    snprintf(fj, sizeof(fj), "%s/ok.json", s.dir);
    otlp_gen_json(&tc, 1, &json);
    write_file(fj, json.data, json.len);
    fl_buf_dispose(&json);
    int ver, code;
    assert_int_equal(curl_tls("127.0.0.1", s.http_port, "/v1/traces", "application/json", fj, 0,
                              cli_pem, cli_key, &ver, &code, &out),
                     0);
    fl_buf_dispose(&out);
    assert_int_equal(ver, 20);
    assert_int_equal(code, 200);
    assert_int_equal(stored_spans(&s, &tc), 4);
    tls_stop(&s);
}

/* Run faultline serve with args until it exits (it must, at start-up); returns the exit
 * status and the log in *log. */
static int run_to_exit(const char *const *extra, char **log)
{
    char dir[64] = "/tmp/fl-e2e-badtls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[128], logp[128];
    snprintf(db, sizeof(db), "%s/faultline.db", dir);
    snprintf(logp, sizeof(logp), "%s/server.log", dir);
    const char *argv[32] = {FL_BUILD_DIR "/faultline",
                            "serve",
                            "--otlp-grpc",
                            "127.0.0.1:0",
                            "--otlp-http",
                            "127.0.0.1:0",
                            "--api",
                            "127.0.0.1:0",
                            "--db",
                            db};
    int n = 10;
    for (int i = 0; extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    fl_test_track_pid(pid);
    int status = -1;
    uint64_t end = now_ms() + 10000;
    while (now_ms() < end) {
        int w;
        if (waitpid(pid, &w, WNOHANG) == pid) {
            status = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
            break;
        }
        sleep_ms(20);
    }
    if (status < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    *log = fl_test_read_file(logp, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return status;
}

/* Bad TLS files fail at start-up, with a message naming the file. */
static void test_e2e_tls_bad_cert_path(void **st)
{
    (void)st;
    char garbage[400];
    snprintf(garbage, sizeof(garbage), "%s/garbage.pem", certdir);
    write_file(garbage, "not a certificate\n", 18);
    struct {
        const char *cert, *key, *ca, *named;
    } cases[] = {
        {"/nonexistent/fl-cert.pem", srv_key, NULL, "/nonexistent/fl-cert.pem"},
        {srv_pem, "/nonexistent/fl-key.pem", NULL, "/nonexistent/fl-key.pem"},
        {garbage, srv_key, NULL, garbage},
        {srv_pem, srv_key, "/nonexistent/fl-ca.pem", "/nonexistent/fl-ca.pem"},
        {srv_pem, cli_key, NULL, NULL}, /* a key that does not match the certificate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[8] = {"--tls-cert",
                               cases[i].cert,
                               "--tls-key",
                               cases[i].key,
                               cases[i].ca ? "--tls-client-ca" : NULL,
                               cases[i].ca,
                               NULL};
        char *log = NULL;
        int status = run_to_exit(args, &log);
        if (status <= 0)
            fail_msg("case %zu: faultline %s (status %d); log:\n%s", i,
                     status < 0 ? "did not exit" : "exited 0", status, log ? log : "");
        if (cases[i].named && (!log || !strstr(log, cases[i].named)))
            fail_msg("case %zu: the log does not name %s:\n%s", i, cases[i].named, log ? log : "");
        free(log);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_tls_bad_cert_path),
        cmocka_unit_test(test_e2e_tls_serves_all_listeners),
        cmocka_unit_test(test_e2e_tls_mtls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
