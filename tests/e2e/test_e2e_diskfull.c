/* SPDX-License-Identifier: Apache-2.0 */
/* End to end: a full disk (a --max-db-size cap, the same SQLITE_FULL path as ENOSPC) gives
 * clients 503 + Retry-After, keeps every acknowledged span and the database intact, and
 * ingest recovers once space returns (the cap raised). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "otlp_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TRACES 200 /* per export */
#define SPANS 10   /* per trace */
#define MAX_EXPORTS 400

static void make_export(int no, fl_buf_t *out)
{
    static otlp_gen_trace_t t[TRACES];
    for (int i = 0; i < TRACES; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        uint64_t v = (uint64_t)no * 100000 + (uint64_t)i + 1;
        for (int k = 0; k < 16; k++)
            t[i].trace_id[k] = (uint8_t)((v >> (8 * (k % 8))) ^ (k * 37) ^ 0x5a);
        t[i].span_seed = v * 64;
        t[i].n_spans = SPANS;
        t[i].service = i % 2 ? "disk-a" : "disk-b";
        t[i].start_ns = 1700000000000000000ull + v * 1000000;
    }
    otlp_gen_json(t, TRACES, out);
}

static int trace_spans(const fl_test_server_t *s, int no, int i)
{
    uint8_t id[16];
    char hex[33], url[96];
    uint64_t v = (uint64_t)no * 100000 + (uint64_t)i + 1;
    for (int k = 0; k < 16; k++)
        id[k] = (uint8_t)((v >> (8 * (k % 8))) ^ (k * 37) ^ 0x5a);
    otlp_gen_hex(id, 16, hex);
    snprintf(url, sizeof(url), "/api/traces/%s", hex);
    int status;
    json_t *t = fl_test_get_json(s->api_port, url, &status);
    int n = status == 200 ? (int)json_array_size(json_object_get(t, "spans")) : 0;
    json_decref(t);
    return n;
}

static int send_export(const fl_test_server_t *s, int no, char *hdrs, size_t hl)
{
    fl_buf_t body, resp;
    make_export(no, &body);
    int st = fl_test_http(s->http_port, "POST", "/v1/traces", "application/json", NULL, body.data,
                          body.len, &resp, hdrs, hl);
    fl_buf_dispose(&body);
    fl_buf_dispose(&resp);
    return st;
}

static void test_e2e_diskfull_refuses_retryably_and_recovers(void **state)
{
    (void)state;
    fl_test_server_t srv = {0};
    const char *args[] = {"--max-db-size", "1MiB", NULL};
    assert_int_equal(fl_test_server_start(&srv, args), 0);
    int acked[MAX_EXPORTS] = {0};
    int n_ok = 0, n_full = 0, run = 0, last = 0;
    char hdrs[4096];
    for (int no = 1; no < MAX_EXPORTS && run < 5; no++, last = no) {
        int st = send_export(&srv, no, hdrs, sizeof(hdrs));
        if (st == 200) {
            acked[no] = 1;
            n_ok++;
            run = 0;
        } else {
            if (st != 503)
                fail_msg("export %d: status %d, expected 200 or 503", no, st);
            assert_non_null(strcasestr(hdrs, "retry-after:"));
            n_full++;
            run++;
        }
    }
    assert_true(n_ok > 0);
    assert_true(n_full >= 5);
    /* Still serving; every acknowledged span is there; the refusals are counted. */
    int status;
    json_t *h = fl_test_get_json(srv.api_port, "/health", &status);
    assert_int_equal(status, 200);
    json_decref(h);
    for (int no = 1; no < last; no++)
        if (acked[no]) {
            assert_int_equal(trace_spans(&srv, no, 0), SPANS);
            assert_int_equal(trace_spans(&srv, no, TRACES - 1), SPANS);
        }
    assert_int_equal(fl_test_server_stop(&srv), 0);

    /* Nothing is corrupted. */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'PRAGMA integrity_check' | grep -qx ok", srv.db);
    assert_int_equal(system(cmd), 0);

    /* Space returns: the refused exports are accepted on retry, nothing is lost. */
    const char *more[] = {"--max-db-size", "0", NULL};
    assert_int_equal(fl_test_server_start(&srv, more), 0);
    for (int no = 1; no < last; no++)
        if (!acked[no])
            assert_int_equal(send_export(&srv, no, hdrs, sizeof(hdrs)), 200);
    for (int no = 1; no < last; no++)
        assert_int_equal(trace_spans(&srv, no, 7), SPANS);
    json_t *st = fl_test_get_json(srv.api_port, "/aiops/status", &status);
    assert_int_equal(status, 200);
    json_decref(st);
    assert_int_equal(fl_test_server_stop(&srv), 0);
    fl_test_server_cleanup(&srv);
    printf("diskfull: exports acked %d, refused 503 %d, all retried ok\n", n_ok, n_full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_diskfull_refuses_retryably_and_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
