/* SPDX-License-Identifier: Apache-2.0 */
/* End to end under valgrind memcheck: the real server replays the OTLP/HTTP fixtures (plain
 * and gzip, protobuf and JSON), answers the API queries, then stops on SIGTERM; valgrind
 * must report no error and no definite leak (exit 0). Skipped without valgrind and in
 * sanitizer builds (valgrind cannot run ASan binaries). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static void get_ok(int port, const char *path)
{
    int status;
    json_t *j = fl_test_get_json(port, path, &status);
    if (status != 200)
        fail_msg("GET %s: %d", path, status);
    json_decref(j);
}

static void test_e2e_valgrind_clean(void **state)
{
    (void)state;
    if (SANITIZED || system("valgrind --version >/dev/null 2>&1") != 0) {
        printf("valgrind: skipped (%s)\n", SANITIZED ? "sanitizer build" : "not installed");
        skip();
    }
    fl_test_server_t s = {0};
    snprintf(s.dir, sizeof(s.dir), "/tmp/fl-e2e-vg-XXXXXX");
    assert_non_null(mkdtemp(s.dir));
    snprintf(s.db, sizeof(s.db), "%s/faultline.db", s.dir);
    snprintf(s.port_file, sizeof(s.port_file), "%s/ports.json", s.dir);
    snprintf(s.log_path, sizeof(s.log_path), "%s/valgrind.log", s.dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(s.log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("valgrind", "valgrind", "--error-exitcode=99", "--leak-check=full",
               "--errors-for-leak-kinds=definite", "--track-fds=no", "-q",
               FL_BUILD_DIR "/faultline", "serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http",
               "127.0.0.1:0", "--api", "127.0.0.1:0", "--db", s.db, "--port-file", s.port_file,
               "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    s.pid = pid;
    fl_test_track_pid(pid);
    for (int i = 0; i < 1200 && !s.api_port; i++) { /* valgrind starts slowly: up to 120 s */
        char *ports = fl_test_read_file(s.port_file, NULL);
        json_t *j = ports ? json_loads(ports, 0, NULL) : NULL;
        free(ports);
        if (j) {
            s.http_port = (int)json_integer_value(json_object_get(j, "otlp-http"));
            s.api_port = (int)json_integer_value(json_object_get(j, "api"));
            json_decref(j);
        }
        if (!s.api_port)
            usleep(100000);
    }
    assert_true(s.api_port > 0);

    char ep[64], dir1[512], dir2[512];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", s.http_port);
    snprintf(dir1, sizeof(dir1), "%s/fixtures/http-protobuf", FL_TEST_DATA_DIR);
    snprintf(dir2, sizeof(dir2), "%s/fixtures/http-json", FL_TEST_DATA_DIR);
    const char *a[] = {"--quiet", "--endpoint", ep, dir1, dir2, NULL};
    fl_test_run_tool("faultline-replay", a); /* logs/metrics fixtures may be refused: fine */

    int status;
    json_t *stj = fl_test_get_json(s.api_port, "/aiops/status", &status);
    json_int_t stored = json_integer_value(json_object_get(stj, "spans_stored"));
    json_decref(stj);
    printf("valgrind: %lld spans stored from the fixtures\n", (long long)stored);
    assert_true(stored > 0);
    get_ok(s.api_port, "/health");
    get_ok(s.api_port, "/api/services");
    get_ok(s.api_port, "/api/traces?limit=50");
    get_ok(s.api_port, "/api/traces?service=checkout&limit=5");
    get_ok(s.api_port, "/api/dependencies");
    get_ok(s.api_port, "/aiops/status");
    get_ok(s.api_port, "/aiops/metrics");
    get_ok(s.api_port, "/aiops/baselines");
    json_t *list = fl_test_get_json(s.api_port, "/api/traces?limit=3", &status);
    json_t *traces = json_object_get(list, "traces"), *t;
    size_t i;
    json_array_foreach(traces, i, t)
    {
        char url[96];
        snprintf(url, sizeof(url), "/api/traces/%s",
                 json_string_value(json_object_get(t, "trace_id")));
        get_ok(s.api_port, url);
    }
    json_decref(list);
    fl_buf_t body;
    fl_test_http(s.api_port, "POST", "/aiops/analyze", "application/json", NULL, "{}", 2, &body,
                 NULL, 0);
    fl_buf_dispose(&body);

    kill(pid, SIGTERM);
    int st = -1, done = 0;
    for (int k = 0; k < 1200 && !done; k++) { /* 120 s */
        if (waitpid(pid, &st, WNOHANG) == pid)
            done = 1;
        else
            usleep(100000);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    char *log = fl_test_read_file(s.log_path, NULL);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("valgrind: exit %d, log %zu bytes\n", code, log ? strlen(log) : 0);
    if (code != 0)
        fprintf(stderr, "%s\n", log ? log : "");
    free(log);
    s.pid = 0;
    fl_test_server_cleanup(&s);
    assert_true(done);
    assert_int_equal(code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_valgrind_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
