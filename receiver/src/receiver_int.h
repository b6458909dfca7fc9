/* SPDX-License-Identifier: Apache-2.0 */
/* faultline receiver internals shared between the decoders, the encoders and the endpoint
 * handlers. Not part of the public contract (see include/faultline/receiver.h). */
#ifndef FAULTLINE_RECEIVER_INT_H
#define FAULTLINE_RECEIVER_INT_H

#include <faultline/receiver.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

#define FL__DEFAULT_MAX_DEPTH 64

/* printf into a caller's error buffer (may be NULL). Always returns rc so callers can write
 * `return fl__errf(err, errlen, FL_ERR_DECODE, "...")`. */
int fl__errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A ProtobufCAllocator over an arena: free is a no-op, failures are remembered so a failed
 * unpack can be told apart from malformed input. */
typedef struct fl__pb_alloc {
    ProtobufCAllocator base;
    fl_arena_t *arena;
    int failed;
} fl__pb_alloc_t;

void fl__pb_alloc_init(fl__pb_alloc_t *a, fl_arena_t *arena);

/* Decoders of the OTLP/JSON mapping (otlp_json.c). The body is copied into the arena and
 * parsed in place; every string of the result points into the arena. */
int fl__json_decode_traces(const uint8_t *body, size_t len, int max_depth, fl_span_batch_t *batch,
                           char *err, size_t errlen);
int fl__json_count(int signal, const uint8_t *body, size_t len, int max_depth, size_t *count,
                   char *err, size_t errlen);

/* fl_otlp_prescan for a message of type desc (prescan.c). */
int fl__prescan(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                int max_depth, char *err, size_t errlen);

/* Decoders of the protobuf encoding (otlp_pb.c); they run the depth pre-scan first. Spans are
 * decoded straight from the wire; reference = 1 sends every span through protobuf-c instead
 * (the tests compare the two). */
int fl__pb_decode_traces(const uint8_t *body, size_t len, int max_depth, int reference,
                         fl_span_batch_t *batch, char *err, size_t errlen);
int fl__pb_count(int signal, const uint8_t *body, size_t len, int max_depth, size_t *count,
                 char *err, size_t errlen);

/* Builds the "resourceSpans[0].scopeSpans[1].spans[3]" prefix used in messages. */
int fl__span_path(char *out, size_t outlen, size_t rs, size_t ss, size_t sp);

/* Capture writer (capture.c). */
typedef struct fl__capture fl__capture_t;
fl__capture_t *fl__capture_new(const char *dir, char *err, size_t errlen);
void fl__capture_free(fl__capture_t *c);
/* Writes NNNNNNNN-<transport>.body (prefix, then body) and .headers.json atomically.
 * On success *seq receives the number used, for fl__capture_remove. */
int fl__capture_write(fl__capture_t *c, const char *transport, const fl_net_req_t *req,
                      const uint8_t *prefix, size_t prefix_len, const uint8_t *body, size_t len,
                      uint64_t *seq);
/* Removes a capture again (the request was refused after all). */
void fl__capture_remove(fl__capture_t *c, const char *transport, uint64_t seq);

#endif
