/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: every decompressor behind fl_decompress. The first input byte picks the
 * encoding token and the output bound; the rest is the compressed body. Invariants: the
 * bound always holds (FL_ERR_TOO_LARGE instead), output is appended after what the buffer
 * held, and a bounded run agrees with a generous one (same bytes when they fit). */
#include "fuzz_util.h"

#include <faultline/receiver.h>

static const char *const encodings[] = {"identity",        "gzip",   "deflate", "zstd", "snappy",
                                        "x-snappy-framed", "x-gzip", "zlib"};
#define N_ENC (sizeof(encodings) / sizeof(encodings[0]))
#define BIG_BOUND (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        fuzz_quiet();
        init = 1;
    }
    if (size < 1)
        return 0;
    const char *enc = encodings[data[0] % N_ENC];
    static const size_t bounds[] = {0, 1, 17, 512, 4096, 65536, 1u << 20, 1u << 22};
    size_t bound = bounds[(data[0] >> 3) % 8];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    char err[256];
    FUZZ_CHECK(fl_decompress_supported(enc));
    fuzz_alloc_begin(data, size);

    /* generous run, output appended after a prefix that must survive */
    fl_buf_t big, small, capped;
    fl_buf_init(&big, 0);
    fl_buf_init(&small, 0);
    fl_buf_init(&capped, 100);
    if (fl_buf_append(&big, "AB", 2) != FL_OK) {
        FUZZ_CHECK(fuzz_oom());
        goto out;
    }
    err[0] = 0;
    int rc_big = fl_decompress(enc, in, len, BIG_BOUND, &big, err, sizeof(err));
    FUZZ_CHECK(rc_big == FL_OK || rc_big == FL_ERR_TOO_LARGE || rc_big == FL_ERR_ENCODING ||
               rc_big == FL_ERR_NOMEM);
    FUZZ_CHECK(big.len >= 2 && memcmp(big.data, "AB", 2) == 0);
    if (rc_big == FL_OK)
        FUZZ_CHECK(big.len - 2 <= BIG_BOUND);
    else
        FUZZ_CHECK(err[0] != '\0');

    /* bounded run */
    err[0] = 0;
    int rc = fl_decompress(enc, in, len, bound, &small, err, sizeof(err));
    FUZZ_CHECK(rc == FL_OK || rc == FL_ERR_TOO_LARGE || rc == FL_ERR_ENCODING ||
               rc == FL_ERR_NOMEM);
    if (rc == FL_OK)
        FUZZ_CHECK(small.len <= bound);
    if (rc_big == FL_OK && !(rc == FL_ERR_NOMEM && fuzz_oom())) {
        size_t n = big.len - 2;
        if (n <= bound) {
            FUZZ_CHECK(rc == FL_OK);
            FUZZ_CHECK(small.len == n && (n == 0 || memcmp(small.data, big.data + 2, n) == 0));
        } else {
            FUZZ_CHECK(rc == FL_ERR_TOO_LARGE);
        }
    }
    if (!strcmp(enc, "identity") && !fuzz_oom())
        FUZZ_CHECK(rc_big == FL_OK && big.len - 2 == len);

    /* the buffer's own cap also applies */
    rc = fl_decompress(enc, in, len, BIG_BOUND, &capped, err, sizeof(err));
    if (rc == FL_OK)
        FUZZ_CHECK(capped.len <= 100);

out:
    fl_buf_dispose(&big);
    fl_buf_dispose(&small);
    fl_buf_dispose(&capped);
    fuzz_alloc_end();
    return 0;
}
