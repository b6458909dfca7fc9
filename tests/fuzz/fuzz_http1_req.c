/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: HTTP/1.1 request parsing. The input is what a client sends on one
 * connection (any number of pipelined requests), fed in two pieces split at a point derived
 * from the input, into a socketless server connection (net test hooks). The handler checks
 * every request it sees (strings readable, body within max_body and equal to Content-Length)
 * and echoes the body; the connection is then closed and freed. */
#include "fuzz_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /* inputs that switch to HTTP/2 belong to fuzz_h2_server */
    if (size >= 24 && memcmp(data, h2_preface, 24) == 0)
        return 0;
    size_t split = size ? (size_t)(fl_hash64(data, size, 1) % (size + 1)) : 0;
    const uint8_t *pieces[] = {data, data + split};
    size_t lens[] = {split, size - split};
    fuzz_session(data, size, pieces, lens, 2);
    return 0;
}
