/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: OTLP/JSON. Decode into a span batch (the in-place pull parser), check the
 * batch invariants, check that the item counter agrees with the decoder, and run the logs /
 * metrics counters on the same bytes. Fresh arenas and an allocation failure plan per
 * input. */
#include "fuzz_util.h"

#include <faultline/receiver.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        fuzz_quiet();
        init = 1;
    }
    uint64_t h = fl_hash64(data, size, 0x15011);
    char err[256] = "";
    fuzz_alloc_begin(data, size);

    int rc = FL_ERR_NOMEM;
    fl_span_batch_t *b = fl_span_batch_new(0);
    FUZZ_CHECK(b != NULL || fuzz_oom());
    if (b)
        rc = fl_otlp_decode_traces(data, size, FL_OTLP_JSON, b, err, sizeof(err));
    FUZZ_CHECK(fuzz_decode_rc_ok(rc));
    if (rc == FL_OK) {
        fuzz_check_batch(b);
        size_t count = 0;
        int crc = fl_otlp_count_items(FL_OTLP_TRACES, data, size, FL_OTLP_JSON, 64, &count, err,
                                      sizeof(err));
        FUZZ_CHECK(crc == FL_OK || (crc == FL_ERR_NOMEM && fuzz_oom()));
        if (crc == FL_OK)
            FUZZ_CHECK(count == b->n_spans + b->rejected);
    } else if (b) {
        FUZZ_CHECK(err[0] != '\0');
    }
    fl_span_batch_free(b);

    /* a small nesting cap and, on some inputs, a tight arena */
    b = fl_span_batch_new(0);
    FUZZ_CHECK(b != NULL || fuzz_oom());
    if (!b)
        goto out;
    if ((h >> 8) % 4 == 0)
        fl_arena_set_limit(b->arena, 64 * 1024 + size);
    int rc2 =
        fl_otlp_decode_traces_ex(data, size, FL_OTLP_JSON, 2 + (int)(h % 8), b, err, sizeof(err));
    FUZZ_CHECK(fuzz_decode_rc_ok(rc2));
    if (rc2 == FL_OK)
        fuzz_check_batch(b);
    if (rc == FL_ERR_TOO_DEEP || rc == FL_ERR_DECODE)
        FUZZ_CHECK(rc2 != FL_OK);
    fl_span_batch_free(b);
out:

    for (int sig = FL_OTLP_LOGS; sig <= FL_OTLP_METRICS; sig++) {
        size_t count = 0;
        int crc = fl_otlp_count_items(sig, data, size, FL_OTLP_JSON, 64, &count, err, sizeof(err));
        FUZZ_CHECK(fuzz_decode_rc_ok(crc) || crc == FL_ERR_INVALID);
    }
    fuzz_alloc_end();
    return 0;
}
