/* SPDX-License-Identifier: Apache-2.0 */
/* fl_replaylib: what faultline-replay needs that is worth testing on its own: reading a
 * capture's NAME.headers.json, and rewriting OTLP timestamps in place (--shift-time) in
 * protobuf and JSON bodies, through gzip/deflate and gRPC length-prefix framing. */
#ifndef FAULTLINE_REPLAY_H
#define FAULTLINE_REPLAY_H

#include <faultline/common.h>
#include <faultline/net.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fl_replay_format { FL_REPLAY_PROTOBUF = 0, FL_REPLAY_JSON = 1 };
enum fl_replay_signal {
    FL_REPLAY_TRACES = 0,
    FL_REPLAY_LOGS = 1,
    FL_REPLAY_METRICS = 2,
    FL_REPLAY_OTHER = 3
};

/** One captured request, from NAME.headers.json (fixture or --capture-dir layout). */
typedef struct fl_replay_meta {
    char *method;             /**< "POST" when the file does not say */
    char *path;               /**< request path, e.g. "/v1/traces" */
    char *protocol;           /**< "http/1.x", "h2c", ... ("" when absent) */
    fl_net_header_t *headers; /**< what to send: hop-by-hop and pseudo headers removed */
    size_t n_headers;
    const char *content_type; /**< points into headers; "" when absent */
    const char *encoding;     /**< Content-Encoding (HTTP) or grpc-encoding (gRPC); "" none */
    int grpc;                 /**< a gRPC call (content-type application/grpc*) */
    int format;               /**< enum fl_replay_format, from the content type */
    int signal;               /**< enum fl_replay_signal, from the path */
} fl_replay_meta_t;

/** Read a headers.json file. Accepts "headers" as an object {name: value}, an array of
 *  [name, value] pairs or of {name, value} objects, and falls back to "rawHeaders".
 *  FL_ERR_IO / FL_ERR_DECODE / FL_ERR_NOMEM with a message in err. */
int fl_replay_meta_load(const char *headers_json_path, fl_replay_meta_t *m, char *err,
                        size_t errlen);
/** Same, from JSON text already in memory. */
int fl_replay_meta_parse(const char *json, size_t len, fl_replay_meta_t *m, char *err,
                         size_t errlen);
/** Free what fl_replay_meta_load allocated. Accepts a zeroed struct. */
void fl_replay_meta_dispose(fl_replay_meta_t *m);
/** 1 when the header is dropped on replay (host, connection, keep-alive, transfer-encoding,
 *  content-length, te, upgrade, proxy-connection, trailer, http2-settings, ":pseudo"). */
int fl_replay_header_is_hop(const char *name);

/** What a scan or a shift saw. */
typedef struct fl_replay_info {
    uint64_t max_end_ns; /**< newest span end (traces); 0 when no span */
    uint64_t max_any_ns; /**< newest of every timestamp the rewriter handles */
    size_t n_spans;      /**< spans (JSON: end-time keys); protobuf logs: log records */
    size_t n_times;      /**< non-zero timestamps seen (and shifted) */
} fl_replay_info_t;

/** The reference time --shift-time moves to "now": max_end_ns, else max_any_ns. */
uint64_t fl_replay_info_newest(const fl_replay_info_t *info);

/** Shift the timestamps of a serialised ExportTraceServiceRequest (Span start/end fields 7
 *  and 8, Event time field 1, also under the deprecated InstrumentationLibrarySpans field
 *  1000) or ExportLogsServiceRequest (LogRecord fields 1 and 11) in place by delta ns;
 *  delta 0 only scans. Zero timestamps stay zero; results saturate at 1 and UINT64_MAX.
 *  Fixed64 fields keep their width, so every other byte is unchanged. info accumulates
 *  (zero it first). FL_ERR_DECODE on a broken wire format, FL_ERR_UNSUPPORTED for metrics. */
int fl_replay_pb_shift(uint8_t *msg, size_t len, int signal, int64_t delta, fl_replay_info_t *info,
                       char *err, size_t errlen);

/** Shift OTLP/JSON timestamps: every object key startTimeUnixNano, endTimeUnixNano,
 *  timeUnixNano, observedTimeUnixNano (or the snake_case form) whose value is a decimal
 *  string or an integer number. Every other byte is copied unchanged; a value keeps its
 *  form (string or number). out is appended to (may be NULL to scan only).
 *  FL_ERR_DECODE on malformed JSON (unbalanced, unterminated, deeper than 512). */
int fl_replay_json_shift(const char *in, size_t len, int64_t delta, fl_buf_t *out,
                         fl_replay_info_t *info, char *err, size_t errlen);

/** Scan a captured body as sent (compressed, gRPC-framed) without changing it. */
int fl_replay_scan(const fl_replay_meta_t *m, const uint8_t *body, size_t len,
                   fl_replay_info_t *info, char *err, size_t errlen);
/** Rewrite a captured body as sent: undo gRPC framing and compression, shift by delta,
 *  compress again the same way (gzip stays gzip, zlib stays zlib) and frame again.
 *  out receives the new body. FL_ERR_UNSUPPORTED for encodings other than identity, gzip
 *  and deflate, and for protobuf metrics. */
int fl_replay_shift(const fl_replay_meta_t *m, const uint8_t *body, size_t len, int64_t delta,
                    fl_buf_t *out, fl_replay_info_t *info, char *err, size_t errlen);

/** Decompress gzip, zlib or raw deflate (auto-detected) into out, at most max_out bytes.
 *  *kind is set to 31 (gzip), 15 (zlib) or -15 (raw): the windowBits to compress it back. */
int fl_replay_inflate(const uint8_t *in, size_t len, size_t max_out, fl_buf_t *out, int *kind,
                      char *err, size_t errlen);
/** Compress with zlib windowBits kind (31 gzip, 15 zlib, -15 raw) into out. */
int fl_replay_deflate(const uint8_t *in, size_t len, int kind, fl_buf_t *out);

/** Read a whole file into out (appended). FL_ERR_IO / FL_ERR_LIMIT / FL_ERR_NOMEM. */
int fl_replay_read_file(const char *path, size_t max, fl_buf_t *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
