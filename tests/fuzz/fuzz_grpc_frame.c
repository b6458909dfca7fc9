/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: gRPC length-prefixed message framing. The input is the request body of
 * an OTLP TraceService/Export call (flag byte, 4-byte length, message); a fixed, valid
 * HTTP/2 preface + SETTINGS + HEADERS (grpc-encoding gzip) is sent first and the body follows
 * in DATA frames split at an input-derived point. The handler checks the unprefixed payload
 * it gets, decompresses and decodes it. The gRPC header helpers (grpc-timeout, grpc-message
 * percent-decoding, unpadded base64) also get the input. */
#include "fuzz_net.h"

#include <nghttp2/nghttp2.h>

#define MAX_GRPC_BODY 60000 /* stays inside the initial 65535-byte flow-control window */

static size_t frame_hdr(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(sid >> 24);
    p[6] = (uint8_t)(sid >> 16);
    p[7] = (uint8_t)(sid >> 8);
    p[8] = (uint8_t)sid;
    return 9;
}

/* Client preface, empty SETTINGS, HEADERS for stream 1 (no END_STREAM). */
static size_t build_head(uint8_t *out, size_t cap)
{
#define NV(n, v)                                                                                   \
    {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
        NV(":authority", "fuzz"),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("grpc-encoding", "gzip"),
        NV("grpc-timeout", "9999m"),
    };
#undef NV
    size_t o = 0;
    memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    o += 24;
    o += frame_hdr(out + o, 0, NGHTTP2_SETTINGS, 0, 0);
    nghttp2_hd_deflater *d;
    FUZZ_CHECK(nghttp2_hd_deflate_new(&d, 4096) == 0);
    size_t hpos = o;
    o += 9;
    ssize_t n = nghttp2_hd_deflate_hd(d, out + o, cap - o, nva, sizeof(nva) / sizeof(nva[0]));
    FUZZ_CHECK(n > 0);
    nghttp2_hd_deflate_del(d);
    frame_hdr(out + hpos, (size_t)n, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1);
    return o + (size_t)n;
}

/* Under the input's allocation failure plan: the encoders may return NULL only then. */
static void helpers(const uint8_t *data, size_t size)
{
    fuzz_alloc_begin(data, size);
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = 0;
    int64_t t = fl__grpc_parse_timeout(s);
    FUZZ_CHECK(t >= -1);
    (void)fl__is_grpc_ctype(s);
    size_t before = strlen(s);
    fl__grpc_pct_decode(s);
    FUZZ_CHECK(strlen(s) <= before);
    char *enc = fl__grpc_pct_encode(s);
    FUZZ_CHECK(enc != NULL || fuzz_oom());
    if (enc) {
        fl__grpc_pct_decode(enc); /* decoding our own encoding gives the text back */
        FUZZ_CHECK(strcmp(enc, s) == 0);
        free(enc);
    }
    char *b64 = fl__b64_nopad(data, size);
    FUZZ_CHECK(b64 != NULL || fuzz_oom());
    fuzz_alloc_end();
    if (!b64) {
        free(s);
        return;
    }
    FUZZ_CHECK(strchr(b64, '=') == NULL);
    uint8_t *back = malloc(size + 3);
    size_t blen = 0;
    FUZZ_CHECK(fl_base64_decode(b64, strlen(b64), back, &blen) == FL_OK);
    FUZZ_CHECK(blen == size && (size == 0 || memcmp(back, data, size) == 0));
    free(back);
    free(b64);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t head[1024];
    static size_t head_len;
    if (!head_len)
        head_len = build_head(head, sizeof(head));
    helpers(data, size);
    if (size > MAX_GRPC_BODY)
        size = MAX_GRPC_BODY;

    /* body in two DATA frames (each under the 16384-byte default max frame size where
     * possible, so split the larger ones), END_STREAM on the last */
    size_t split = size ? (size_t)(fl_hash64(data, size, 3) % (size + 1)) : 0;
    uint8_t *wire = malloc(size + 9 * (size / 16384 + 4));
    FUZZ_CHECK(wire != NULL);
    size_t o = 0;
    size_t bounds[3] = {0, split, size};
    for (int part = 0; part < 2; part++) {
        size_t off = bounds[part], end = bounds[part + 1];
        do {
            size_t n = end - off > 16384 ? 16384 : end - off;
            int last = part == 1 && off + n == end;
            if (n || last) {
                o += frame_hdr(wire + o, n, NGHTTP2_DATA, last ? NGHTTP2_FLAG_END_STREAM : 0, 1);
                memcpy(wire + o, data + off, n);
                o += n;
            }
            off += n;
        } while (off < end);
    }
    const uint8_t *pieces[] = {head, wire};
    size_t lens[] = {head_len, o};
    fuzz_session(data, size, pieces, lens, 2);
    free(wire);
    return 0;
}
