/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: an HTTP/2 + gRPC server session fed raw client bytes (as nghttp2's
 * fuzz/fuzz_target.cc does, but through our connection, nghttp2 callbacks, gRPC framing and
 * handler). The client preface is prepended when the input lacks it so that mutations are
 * not wasted on it. gRPC calls are decompressed and decoded synchronously by the handler. */
#include "fuzz_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const uint8_t *pieces[3];
    size_t lens[3];
    size_t n = 0;
    if (size < 24 || memcmp(data, preface, 24) != 0) {
        pieces[n] = preface;
        lens[n++] = 24;
    }
    size_t split = size ? (size_t)(fl_hash64(data, size, 2) % (size + 1)) : 0;
    pieces[n] = data;
    lens[n++] = split;
    pieces[n] = data + split;
    lens[n++] = size - split;
    fuzz_session(data, size, pieces, lens, n);
    return 0;
}
