/* SPDX-License-Identifier: Apache-2.0 */
/* store failure tests: a database size cap (PRAGMA max_page_count, the cheap stand-in for
 * ENOSPC) makes commits fail with the retryable FL_ERR_STORE_FULL and the store recovers
 * once space returns; a writer process killed with SIGKILL loses nothing it acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_store_util.h"

#include <signal.h>
#include <sys/wait.h>

#define SPANS 300

/* A batch of SPANS spans (100 traces x 3) with incompressible attribute values, so every
 * batch grows the database by tens of KiB. Deterministic in its number. */
static fl_span_batch_t *noisy_batch(int no)
{
    fl_span_batch_t *b = tsu_batch(SPANS);
    uint64_t rng = (uint64_t)no * 7919 + 1;
    fl_resource_t *res = tsu_resource(b->arena, "filler");
    for (int i = 0; i < SPANS; i++) {
        uint64_t trace = (uint64_t)no * 1000 + (uint64_t)i / 3 + 1;
        fl_span_t *sp = &b->spans[i];
        tsu_span(b->arena, sp, trace, (uint64_t)i + 1, 0, res, NULL, "fill",
                 1000000 + (uint64_t)no * 1000 + (uint64_t)i, 10, 0);
        uint8_t junk[96];
        for (size_t k = 0; k < sizeof(junk); k++)
            junk[k] = (uint8_t)tsu_rand(&rng);
        sp->attrs.items[0].value.type = FL_VAL_BYTES;
        sp->attrs.items[0].value.u.str = tsu_bytes(b->arena, junk, sizeof(junk));
    }
    return b;
}

static int trace_present(fl_store_t *s, fl_arena_t *a, int no)
{
    uint8_t id[16];
    fl_span_t *sp;
    size_t n;
    tsu_id(id, 16, (uint64_t)no * 1000 + 1, 0x1111);
    int rc = fl_store_get_trace(s, id, a, &sp, &n);
    fl_arena_reset(a);
    if (rc == FL_OK)
        return (int)n;
    assert_int_equal(rc, FL_ERR_NOT_FOUND);
    return 0;
}

static void test_store_full_and_recovery(void **state)
{
    (void)state;
    tsu_db_t db;
    assert_int_equal(tsu_db_init(&db), 0);
    fl_store_opts_t o = {.max_db_bytes = 1536 * 1024};
    fl_store_t *s = tsu_open(&db, &o);
    assert_non_null(s);
    fl_arena_t *a = fl_arena_new(0);

    int acked = 0, failed_no = -1;
    tsu_done_t d;
    for (int no = 0; no < 400; no++) {
        int rc = tsu_put(s, noisy_batch(no), &d);
        if (rc == FL_OK) {
            assert_int_equal(d.stored, SPANS);
            acked++;
            continue;
        }
        assert_int_equal(rc, FL_ERR_STORE_FULL);
        assert_false(fl_err_is_fatal(rc));
        failed_no = no;
        break;
    }
    assert_true(failed_no > 0); /* the cap was reached, after some success */
    fl_store_stats_t st;
    fl_store_stats(s, &st);
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.spans_stored, (uint64_t)acked * SPANS);

    /* Reads still work; acknowledged data is there; the failed batch left nothing. */
    for (int no = 0; no < acked; no++)
        assert_int_equal(trace_present(s, a, no), 3);
    assert_int_equal(trace_present(s, a, failed_no), 0);

    /* Still full: the retry fails the same way, and is not mistaken for a duplicate. */
    assert_int_equal(tsu_put(s, noisy_batch(failed_no), &d), FL_ERR_STORE_FULL);

    /* Space returns: the same batch is now stored in full. */
    fl_store_set_max_db_bytes(s, 0);
    assert_int_equal(tsu_put(s, noisy_batch(failed_no), &d), FL_OK);
    assert_int_equal(d.stored, SPANS);
    assert_int_equal(d.dups, 0);
    assert_int_equal(trace_present(s, a, failed_no), 3);
    assert_int_equal(tsu_put(s, noisy_batch(failed_no + 1), &d), FL_OK);

    /* A resend of acknowledged data is a duplicate, as before. */
    assert_int_equal(tsu_put(s, noisy_batch(0), &d), FL_OK);
    assert_int_equal(d.stored, 0);
    assert_int_equal(d.dups, SPANS);

    char err[256] = "";
    assert_int_equal(fl_store_integrity_check(s, err, sizeof(err)), FL_OK);

    /* After a restart everything acknowledged is still there, once. */
    fl_store_close(s);
    s = tsu_open(&db, NULL);
    assert_non_null(s);
    fl_store_stats(s, &st);
    assert_int_equal(st.spans_stored, (uint64_t)(acked + 2) * SPANS);
    for (int no = 0; no <= failed_no + 1; no++)
        assert_int_equal(trace_present(s, a, no), 3);
    assert_int_equal(fl_store_integrity_check(s, err, sizeof(err)), FL_OK);
    fl_service_info_t *sv;
    size_t nsv;
    assert_int_equal(fl_store_list_services(s, a, &sv, &nsv), FL_OK);
    assert_int_equal(nsv, 1);
    assert_int_equal(sv[0].span_count, (uint64_t)(acked + 2) * SPANS);

    fl_arena_free(a);
    fl_store_close(s);
    tsu_db_remove(&db);
}

/* A cap set at open that is already exceeded: every write fails retryably, reads work. */
static void test_store_full_from_open(void **state)
{
    (void)state;
    tsu_db_t db;
    assert_int_equal(tsu_db_init(&db), 0);
    fl_store_t *s = tsu_open(&db, NULL);
    assert_non_null(s);
    tsu_done_t d;
    assert_int_equal(tsu_put(s, noisy_batch(1), &d), FL_OK);
    fl_store_close(s);

    fl_store_opts_t o = {.max_db_bytes = 4096};
    s = tsu_open(&db, &o);
    assert_non_null(s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tsu_put(s, noisy_batch(2 + i), &d), FL_ERR_STORE_FULL);
    fl_arena_t *a = fl_arena_new(0);
    assert_int_equal(trace_present(s, a, 1), 3);
    fl_store_set_max_db_bytes(s, 0);
    assert_int_equal(tsu_put(s, noisy_batch(2), &d), FL_OK);
    assert_int_equal(trace_present(s, a, 2), 3);
    fl_arena_free(a);
    fl_store_close(s);
    tsu_db_remove(&db);
}

/* ---------------------------------------------------------------- kill -9 */

static int ack_fd = -1;

static void pipe_ack_cb(void *ctx, int status, size_t stored, size_t dups)
{
    int no = (int)(intptr_t)ctx;
    (void)stored;
    (void)dups;
    if (status == FL_OK && write(ack_fd, &no, sizeof(no)) != sizeof(no))
        _exit(3);
}

/* Child: ingest batches first, first + 1, ... until killed; report each acknowledgement. */
static void child_ingest(const char *path, int first)
{
    fl_store_opts_t o = {.path = path, .max_group_spans = 2000};
    fl_store_t *s = NULL;
    char err[256];
    if (fl_store_open(&o, &s, err, sizeof(err)) != FL_OK)
        _exit(2);
    for (int no = first;; no++) {
        while (fl_store_would_block(s, SPANS))
            usleep(100);
        if (fl_store_submit_take(s, noisy_batch(no), pipe_ack_cb, (void *)(intptr_t)no) != FL_OK)
            _exit(4);
    }
}

static void test_store_survives_kill9(void **state)
{
    (void)state;
    tsu_db_t db;
    assert_int_equal(tsu_db_init(&db), 0);
    uint64_t rng = 12345;
    int *acked = calloc(50000, sizeof(int));
    int total_acked = 0;
    fl_arena_t *a = fl_arena_new(0);
    for (int round = 0; round < 10; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        int first = round * 5000;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            ack_fd = pfd[1];
            child_ingest(db.path, first);
        }
        close(pfd[1]);
        /* Let it acknowledge some batches, then kill it mid-stream. */
        int want = 5 + (int)tsu_below(&rng, 40), got = 0, no;
        while (got < want && read(pfd[0], &no, sizeof(no)) == sizeof(no)) {
            acked[no] = 1;
            got++;
        }
        usleep((useconds_t)tsu_below(&rng, 20000));
        kill(pid, SIGKILL);
        int wst;
        waitpid(pid, &wst, 0);
        assert_true(WIFSIGNALED(wst));
        while (read(pfd[0], &no, sizeof(no)) == sizeof(no)) /* acks sent before the kill */
            acked[no] = 1;
        close(pfd[0]);

        fl_store_t *s = tsu_open(&db, NULL);
        assert_non_null(s);
        char err[256] = "";
        assert_int_equal(fl_store_integrity_check(s, err, sizeof(err)), FL_OK);
        int n_acked = 0;
        for (int i = 0; i < 50000; i++) {
            if (!acked[i])
                continue;
            n_acked++;
            if (trace_present(s, a, i) != 3)
                fail_msg("round %d: acknowledged batch %d lost", round, i);
        }
        assert_true(n_acked > total_acked);
        total_acked = n_acked;
        fl_store_stats_t st;
        fl_store_stats(s, &st);
        assert_true(st.spans_stored >= (uint64_t)n_acked * SPANS);
        fl_store_close(s);
    }
    free(acked);
    fl_arena_free(a);
    tsu_db_remove(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_full_and_recovery),
        cmocka_unit_test(test_store_full_from_open),
        cmocka_unit_test(test_store_survives_kill9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
