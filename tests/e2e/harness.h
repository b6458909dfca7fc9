/* SPDX-License-Identifier: Apache-2.0 */
/* End-to-end test harness: starts the real faultline binary on ephemeral ports with a
 * temporary database, runs the real tools, and talks to the server over HTTP. */
#ifndef FAULTLINE_TEST_HARNESS_H
#define FAULTLINE_TEST_HARNESS_H

#include <faultline/common.h>
#include <faultline/net.h>
#include <jansson.h>
#include <sys/types.h>

typedef struct fl_test_server {
    pid_t pid;
    char dir[256]; /* temporary directory holding the database */
    char db[512];
    char port_file[512];
    int grpc_port, http_port, api_port;
    char log_path[512]; /* the server's stderr */
} fl_test_server_t;

/** Start build/faultline serve with ports 0 plus extra args (NULL-terminated), in a new
 *  temp dir (or reusing s->dir when already set, for restarts). Waits for /health.
 *  Returns 0 or -1. */
int fl_test_server_start(fl_test_server_t *s, const char *const *extra_args);
/** SIGTERM and wait; returns the exit status (or -1 on timeout: then SIGKILL). */
int fl_test_server_stop(fl_test_server_t *s);
/** SIGKILL and reap. */
void fl_test_server_kill(fl_test_server_t *s);
/** 1 when the server has exited on its own (it is reaped, s->pid becomes 0): why gets its
 *  exit status and the end of its log (a sanitizer report, a crash message); else 0. */
int fl_test_server_exited(fl_test_server_t *s, char *why, size_t whylen);
/** Kill pid (SIGKILL) when the test process exits, if it still runs then. */
void fl_test_track_pid(pid_t pid);
/** Remove the temp dir. */
void fl_test_server_cleanup(fl_test_server_t *s);

/** One HTTP request to 127.0.0.1:port. Returns the status (or -1); the body into body
 *  (initialised here; dispose with fl_buf_dispose). */
int fl_test_http(int port, const char *method, const char *path, const char *content_type,
                 const char *content_encoding, const void *body, size_t len, fl_buf_t *resp_body,
                 char *resp_headers, size_t resp_headers_len);
/** GET a JSON document from the API; NULL unless 200 and valid JSON; status in *status. */
json_t *fl_test_get_json(int port, const char *path, int *status);
/** Run a program from the build dir with args (NULL-terminated); returns its exit code. */
int fl_test_run_tool(const char *tool, const char *const *args);
/** Run argv[0] (looked up in PATH) and capture its stdout into out (initialised here,
 *  NUL-terminated); stderr goes to /dev/null when quiet_stderr. Returns the exit code, 128
 *  when killed, -1 when it could not run. */
int fl_test_run_capture(const char *const *argv, fl_buf_t *out, int quiet_stderr);
/** {trace_id: span count} from tests/data/fixtures/SCENARIO.expected.jsonl; NULL on error. */
json_t *fl_test_expected_span_counts(const char *scenario);
/** 0 when every trace of counts is served by GET /api/traces/{id} with exactly its span
 *  count and /health answers 200; else -1 with the first difference in why. */
int fl_test_traces_intact(int api_port, json_t *counts, char *why, size_t whylen);
/** A minute-aligned event-time start so that duration_ns of fast-forwarded traffic ends ten
 *  minutes before now. */
uint64_t fl_test_synthetic_start(uint64_t duration_ns);
/** Run `faultline-load synthetic` with a topology file against 127.0.0.1:http_port from
 *  start for duration ("40m"), with a seed, a NULL-terminated list of --fault specs (may be
 *  NULL) and an optional --truth output path. Returns the tool's exit code. */
int fl_test_run_synthetic(int http_port, const char *topology, uint64_t start, const char *duration,
                          const char *seed, const char *const *faults, const char *truth);
/** Compare two JSON values exactly: objects as key sets (order ignored), arrays in order,
 *  numbers by type and value (1 is not 1.0). 0 when equal; else -1 and the first difference
 *  with its path in why ("attributes.k[2]: want 1, got 2.0", "links[0].flags: missing"). */
int fl_test_json_diff(const json_t *want, const json_t *got, char *why, size_t whylen);
/** Read a whole file (NUL-terminated); NULL on failure. */
char *fl_test_read_file(const char *path, size_t *len);

#endif
