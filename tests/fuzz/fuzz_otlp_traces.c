/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: OTLP protobuf. Pre-scan, then decode into a span batch, check the batch
 * invariants and that the pre-scan, the decoder and the item counter agree, and that the wire
 * decoder and its protobuf-c reference agree; the same bytes also go through the JSON decoder and
 * the logs / metrics counters. Each input gets fresh arenas, freed before returning, and its own
 * allocation failure plan (fuzz_alloc_begin). */
#include "fuzz_util.h"

#include "../unit/test_span_util.h"
#include "receiver_int.h" /* fl__pb_decode_traces: the wire decoder and its reference */

#include <faultline/receiver.h>

/* The wire decoder and the protobuf-c reference (every span unpacked by protobuf-c) accept
 * and refuse the same bytes, with the same message, and yield the same spans. */
static void compare_with_reference(const uint8_t *data, size_t size)
{
    char ew[256] = "", er[256] = "", why[64];
    fl_span_batch_t *w = fl_span_batch_new(0), *r = fl_span_batch_new(0);
    if (!w || !r) {
        FUZZ_CHECK(fuzz_oom());
        fl_span_batch_free(w);
        fl_span_batch_free(r);
        return;
    }
    int rw = fl__pb_decode_traces(data, size, 64, 0, w, ew, sizeof(ew));
    int rr = fl__pb_decode_traces(data, size, 64, 1, r, er, sizeof(er));
    if (rw != FL_ERR_NOMEM && rr != FL_ERR_NOMEM) { /* allocation failures differ */
        FUZZ_CHECK(rw == rr);
        if (rw != FL_OK) {
            FUZZ_CHECK(strcmp(ew, er) == 0);
        } else {
            FUZZ_CHECK(w->n_spans == r->n_spans && w->rejected == r->rejected);
            FUZZ_CHECK(!w->reject_msg == !r->reject_msg);
            FUZZ_CHECK(!w->reject_msg || strcmp(w->reject_msg, r->reject_msg) == 0);
            for (size_t i = 0; i < w->n_spans; i++) {
                tsu_cut_span(&w->spans[i]);
                FUZZ_CHECK(tsu_span_eq(&w->spans[i], &r->spans[i], why, sizeof(why)));
            }
        }
    }
    fl_span_batch_free(w);
    fl_span_batch_free(r);
}

static size_t decode_one(const uint8_t *data, size_t size, int format, int max_depth, int tight,
                         int *rc_out)
{
    char err[256] = "";
    fl_span_batch_t *b = fl_span_batch_new(0);
    if (!b) {
        FUZZ_CHECK(fuzz_oom());
        *rc_out = FL_ERR_NOMEM;
        return (size_t)-1;
    }
    if (tight) /* exercise the FL_ERR_NOMEM paths: the arena limit runs out mid-decode */
        fl_arena_set_limit(b->arena, 64 * 1024 + size);
    int rc = fl_otlp_decode_traces_ex(data, size, format, max_depth, b, err, sizeof(err));
    FUZZ_CHECK(fuzz_decode_rc_ok(rc));
    size_t total = (size_t)-1;
    if (rc == FL_OK) {
        fuzz_check_batch(b);
        total = b->n_spans + b->rejected;
    } else {
        FUZZ_CHECK(err[0] != '\0'); /* every failure names the problem */
    }
    fl_span_batch_free(b);
    *rc_out = rc;
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        fuzz_quiet();
        init = 1;
    }
    uint64_t h = fl_hash64(data, size, 0x5eed);
    char err[256];
    fuzz_alloc_begin(data, size);

    /* 1. pre-scan at the default cap, then the decoder that runs it too */
    int pre = fl_otlp_prescan(data, size, 64, err, sizeof(err));
    FUZZ_CHECK(pre == FL_OK || pre == FL_ERR_DECODE || pre == FL_ERR_TOO_DEEP);
    int rc;
    size_t total = decode_one(data, size, FL_OTLP_PROTOBUF, 64, 0, &rc);
    if (pre == FL_ERR_TOO_DEEP)
        FUZZ_CHECK(rc == FL_ERR_TOO_DEEP || (rc == FL_ERR_NOMEM && fuzz_oom()));
    if (pre == FL_ERR_DECODE)
        FUZZ_CHECK(rc != FL_OK);
    if (rc == FL_OK) {
        FUZZ_CHECK(pre == FL_OK);
        size_t count = 0;
        int crc = fl_otlp_count_items(FL_OTLP_TRACES, data, size, FL_OTLP_PROTOBUF, 64, &count, err,
                                      sizeof(err));
        FUZZ_CHECK(crc == FL_OK || (crc == FL_ERR_NOMEM && fuzz_oom()));
        if (crc == FL_OK)
            FUZZ_CHECK(count == total); /* every span is either kept or counted as rejected */
    }

    compare_with_reference(data, size);

    /* 2. a smaller cap and a tight arena on some inputs */
    int small = 2 + (int)(h % 8);
    int rc_small;
    decode_one(data, size, FL_OTLP_PROTOBUF, small, (h >> 8) % 4 == 0, &rc_small);
    if (rc == FL_ERR_TOO_DEEP)
        FUZZ_CHECK(rc_small != FL_OK); /* a lower cap never accepts what a higher one refused */

    /* 3. the same bytes as OTLP/JSON, and the logs / metrics counters */
    int rc_json;
    decode_one(data, size, FL_OTLP_JSON, 64, 0, &rc_json);
    for (int sig = FL_OTLP_LOGS; sig <= FL_OTLP_METRICS; sig++) {
        size_t count = 0;
        int crc =
            fl_otlp_count_items(sig, data, size, FL_OTLP_PROTOBUF, 64, &count, err, sizeof(err));
        FUZZ_CHECK(fuzz_decode_rc_ok(crc));
    }
    fuzz_alloc_end();
    return 0;
}
