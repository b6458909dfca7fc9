/* SPDX-License-Identifier: Apache-2.0 */
/* End-to-end test harness (see harness.h). */
#include "harness.h"

#include <errno.h>
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

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *fl_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return p;
}

/* Servers still running when the test process exits (a failed assertion skips the
 * teardown) are killed, so no test leaves a faultline behind. */
#define MAX_TRACKED 64
static pid_t tracked[MAX_TRACKED];

static void kill_tracked(void)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (tracked[i] > 0 && kill(tracked[i], 0) == 0)
            kill(tracked[i], SIGKILL);
}

static void track(pid_t pid)
{
    static int registered;
    if (!registered) {
        atexit(kill_tracked);
        registered = 1;
    }
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (tracked[i] <= 0 || kill(tracked[i], 0) != 0) {
            tracked[i] = pid;
            return;
        }
    }
}

void fl_test_track_pid(pid_t pid)
{
    track(pid);
}

int fl_test_server_start(fl_test_server_t *s, const char *const *extra_args)
{
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/fl-e2e-XXXXXX");
        if (!mkdtemp(s->dir))
            return -1;
    }
    snprintf(s->db, sizeof(s->db), "%s/faultline.db", s->dir);
    snprintf(s->port_file, sizeof(s->port_file), "%s/ports.json", s->dir);
    snprintf(s->log_path, sizeof(s->log_path), "%s/server.log", s->dir);
    unlink(s->port_file);
    const char *argv[64];
    int n = 0;
    argv[n++] = FL_BUILD_DIR "/faultline";
    argv[n++] = "serve";
    const char *grpc = "127.0.0.1:0", *http = "127.0.0.1:0", *api = "127.0.0.1:0";
    char gbuf[32], hbuf[32], abuf[32];
    /* On restart, keep the ports the previous run had. */
    if (s->api_port > 0) {
        snprintf(gbuf, sizeof(gbuf), "127.0.0.1:%d", s->grpc_port);
        snprintf(hbuf, sizeof(hbuf), "127.0.0.1:%d", s->http_port);
        snprintf(abuf, sizeof(abuf), "127.0.0.1:%d", s->api_port);
        grpc = gbuf;
        http = hbuf;
        api = abuf;
    }
    const char *base[] = {"--otlp-grpc", grpc,  "--otlp-http", http,         "--api", api,
                          "--db",        s->db, "--port-file", s->port_file, NULL};
    for (int i = 0; base[i]; i++)
        argv[n++] = base[i];
    for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Neither stdout nor stderr may stay tied to the test's pipes: ctest waits for them
         * to close, so a server left behind by a failed assertion would hang the run. */
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
    track(pid);
    for (int i = 0; i < 400; i++) { /* 20 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "faultline exited during start-up; log:\n");
            char *log = fl_test_read_file(s->log_path, NULL);
            fprintf(stderr, "%s\n", log ? log : "");
            free(log);
            s->pid = 0;
            return -1;
        }
        char *ports = fl_test_read_file(s->port_file, NULL);
        if (ports) {
            json_t *j = json_loads(ports, 0, NULL);
            free(ports);
            if (j) {
                s->grpc_port = (int)json_integer_value(json_object_get(j, "otlp-grpc"));
                s->http_port = (int)json_integer_value(json_object_get(j, "otlp-http"));
                s->api_port = (int)json_integer_value(json_object_get(j, "api"));
                json_decref(j);
                int status = 0;
                json_t *h = fl_test_get_json(s->api_port, "/health", &status);
                json_decref(h);
                if (status == 200)
                    return 0;
            }
        }
        sleep_ms(50);
    }
    fl_test_server_kill(s);
    return -1;
}

int fl_test_server_stop(fl_test_server_t *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 400; i++) { /* the contract: exit within 15 s; we allow 20 */
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        sleep_ms(50);
    }
    fl_test_server_kill(s);
    return -1;
}

int fl_test_server_exited(fl_test_server_t *s, char *why, size_t whylen)
{
    int st;
    if (s->pid <= 0 || waitpid(s->pid, &st, WNOHANG) != s->pid)
        return 0;
    s->pid = 0;
    size_t len = 0;
    char *log = fl_test_read_file(s->log_path, &len);
    /* The first line that names a sanitizer finding, else the last 600 bytes. */
    const char *tail = log ? strstr(log, "runtime error") : NULL;
    if (!tail && log)
        tail = strstr(log, "ERROR: AddressSanitizer");
    if (!tail && log)
        tail = log + (len > 600 ? len - 600 : 0);
    while (tail && tail > log && tail[-1] != '\n') /* from the start of its line */
        tail--;
    snprintf(why, whylen, "faultline exited (%s %d); its log (%s): %.600s",
             WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
             s->log_path, tail ? tail : "");
    free(log);
    return 1;
}

void fl_test_server_kill(fl_test_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

void fl_test_server_cleanup(fl_test_server_t *s)
{
    if (s->pid > 0)
        fl_test_server_kill(s);
    if (s->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        int rc = system(cmd);
        (void)rc;
        s->dir[0] = 0;
    }
}

int fl_test_http(int port, const char *method, const char *path, const char *content_type,
                 const char *content_encoding, const void *body, size_t len, fl_buf_t *resp_body,
                 char *resp_headers, size_t resp_headers_len)
{
    fl_http_client_opts_t o = {0};
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_ms = 30000;
    fl_http_client_t *c = fl_http_client_new(&o);
    if (!c)
        return -1;
    fl_net_header_t h[2];
    size_t nh = 0;
    if (content_type)
        h[nh++] = (fl_net_header_t){"Content-Type", content_type};
    if (content_encoding)
        h[nh++] = (fl_net_header_t){"Content-Encoding", content_encoding};
    fl_http_response_t r;
    int rc = fl_http_client_request(c, method, path, h, nh, body, len, &r);
    int status = -1;
    if (rc == FL_OK) {
        status = r.status;
        if (resp_body) {
            fl_buf_init(resp_body, 0);
            fl_buf_append(resp_body, r.body.data ? (const char *)r.body.data : "", r.body.len);
        }
        if (resp_headers && resp_headers_len) {
            snprintf(resp_headers, resp_headers_len, "%s",
                     r.headers.data ? (const char *)r.headers.data : "");
        }
        fl_http_response_dispose(&r);
    } else if (resp_body) {
        fl_buf_init(resp_body, 0);
    }
    fl_http_client_free(c);
    return status;
}

json_t *fl_test_get_json(int port, const char *path, int *status)
{
    fl_buf_t b;
    int st = fl_test_http(port, "GET", path, NULL, NULL, NULL, 0, &b, NULL, 0);
    if (status)
        *status = st;
    json_t *j = b.data ? json_loadb((const char *)b.data, b.len, 0, NULL) : NULL;
    fl_buf_dispose(&b);
    return j;
}

int fl_test_run_tool(const char *tool, const char *const *args)
{
    const char *argv[64];
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FL_BUILD_DIR, tool);
    int n = 0;
    argv[n++] = path;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int fl_test_run_capture(const char *const *argv, fl_buf_t *out, int quiet_stderr)
{
    int pfd[2];
    fl_buf_init(out, 0);
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        if (quiet_stderr) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0)
                dup2(devnull, 2);
        }
        close(pfd[0]);
        close(pfd[1]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char buf[4096];
    ssize_t r;
    while ((r = read(pfd[0], buf, sizeof(buf))) > 0)
        fl_buf_append(out, buf, (size_t)r);
    close(pfd[0]);
    fl_buf_putc(out, 0);
    out->len--;
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

json_t *fl_test_expected_span_counts(const char *scenario)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/fixtures/%s.expected.jsonl", FL_TEST_DATA_DIR, scenario);
    char *text = fl_test_read_file(path, NULL);
    if (!text)
        return NULL;
    json_t *counts = json_object();
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *e = json_loads(line, 0, NULL);
        const char *tid = json_string_value(json_object_get(e, "trace_id"));
        if (tid) {
            json_int_t n = json_integer_value(json_object_get(counts, tid));
            json_object_set_new(counts, tid, json_integer(n + 1));
        }
        json_decref(e);
    }
    free(text);
    if (json_object_size(counts) == 0) {
        json_decref(counts);
        return NULL;
    }
    return counts;
}

int fl_test_traces_intact(int api_port, json_t *counts, char *why, size_t whylen)
{
    const char *tid;
    json_t *n;
    json_object_foreach(counts, tid, n)
    {
        char url[96];
        int status;
        snprintf(url, sizeof(url), "/api/traces/%s", tid);
        json_t *t = fl_test_get_json(api_port, url, &status);
        size_t got = json_array_size(json_object_get(t, "spans"));
        json_decref(t);
        if (status != 200 || got != (size_t)json_integer_value(n)) {
            snprintf(why, whylen, "trace %s: status %d, %zu spans, expected %lld", tid, status, got,
                     (long long)json_integer_value(n));
            return -1;
        }
    }
    int status;
    json_t *h = fl_test_get_json(api_port, "/health", &status);
    json_decref(h);
    if (status != 200) {
        snprintf(why, whylen, "/health answered %d", status);
        return -1;
    }
    return 0;
}

uint64_t fl_test_synthetic_start(uint64_t duration_ns)
{
    const uint64_t sec = 1000000000ull;
    uint64_t s = fl_time_now_ns() - duration_ns - 600 * sec;
    return s - s % (60 * sec);
}

int fl_test_run_synthetic(int http_port, const char *topology, uint64_t start, const char *duration,
                          const char *seed, const char *const *faults, const char *truth)
{
    char ep[64], st[40];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", http_port);
    const char *args[64];
    int n = 0;
    const char *fixed[] = {"synthetic",
                           "--topology",
                           topology,
                           "--endpoint",
                           ep,
                           "--start",
                           fl_time_format(start, st),
                           "--duration",
                           duration,
                           "--seed",
                           seed,
                           "--quiet",
                           NULL};
    for (int i = 0; fixed[i]; i++)
        args[n++] = fixed[i];
    for (int i = 0; faults && faults[i] && n < 58; i++) {
        args[n++] = "--fault";
        args[n++] = faults[i];
    }
    if (truth) {
        args[n++] = "--truth";
        args[n++] = truth;
    }
    args[n] = NULL;
    return fl_test_run_tool("faultline-load", args);
}

/* A value for a difference message, cut to fit. */
static void json_brief(const json_t *v, char *out, size_t n)
{
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    snprintf(out, n, "%s", t ? t : "(absent)");
    if (t && strlen(t) >= n && n > 4)
        memcpy(out + n - 4, "...", 4);
    free(t);
}

/* path holds the location of want/got (len bytes used of cap). */
static int json_diff_at(const json_t *want, const json_t *got, char *path, size_t len, size_t cap,
                        char *why, size_t whylen)
{
    char w[200], g[200];
    int rc = 0;
    if (json_is_object(want) && json_is_object(got)) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)want, key, v)
        {
            snprintf(path + len, cap - len, "%s%s", len ? "." : "", key);
            if ((rc = json_diff_at(v, json_object_get(got, key), path, strlen(path), cap, why,
                                   whylen)) != 0)
                return rc;
        }
        json_object_foreach((json_t *)got, key, v)
        {
            if (!json_object_get(want, key)) {
                snprintf(path + len, cap - len, "%s%s", len ? "." : "", key);
                json_brief(v, g, sizeof(g));
                snprintf(why, whylen, "%s: not expected, got %s", path, g);
                return -1;
            }
        }
        path[len] = 0;
        return 0;
    }
    if (json_is_array(want) && json_is_array(got) &&
        json_array_size(want) == json_array_size(got)) {
        for (size_t i = 0; i < json_array_size(want); i++) {
            snprintf(path + len, cap - len, "[%zu]", i);
            if ((rc = json_diff_at(json_array_get(want, i), json_array_get(got, i), path,
                                   strlen(path), cap, why, whylen)) != 0)
                return rc;
        }
        path[len] = 0;
        return 0;
    }
    if (got && json_equal((json_t *)want, (json_t *)got))
        return 0;
    json_brief(want, w, sizeof(w));
    json_brief(got, g, sizeof(g));
    snprintf(why, whylen, "%s: want %s, got %s", len ? path : "(top)", w, g);
    return -1;
}

int fl_test_json_diff(const json_t *want, const json_t *got, char *why, size_t whylen)
{
    char path[512] = "";
    return json_diff_at(want, got, path, 0, sizeof(path), why, whylen);
}
