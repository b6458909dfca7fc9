/* SPDX-License-Identifier: Apache-2.0 */
/* faultline net: the server framework every listener shares (receiver, API, demo services).
 * libuv event loop, HTTP/1.1 (http-parser), HTTP/2 and gRPC framing (nghttp2), TLS (OpenSSL),
 * request limits, plus a small blocking HTTP client. Knows nothing of OTLP. */
#ifndef FAULTLINE_NET_H
#define FAULTLINE_NET_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- server */

/** A server: one I/O thread running one libuv loop, serving one or more listeners. */
typedef struct fl_net fl_net_t;
/** One request: an HTTP/1.1 request, an HTTP/2 stream, or a gRPC call on a stream.
 *  Valid from on_head until the response has been handed over with fl_net_respond /
 *  fl_net_grpc_respond (after that, touch nothing in it). */
typedef struct fl_net_req fl_net_req_t;

typedef struct fl_net_header {
    const char *name;
    const char *value;
} fl_net_header_t;

/** What on_head decided. */
enum fl_net_head_action {
    FL_NET_READ_BODY = 0, /**< read the body, then call on_body */
    FL_NET_RESPONDED = 1  /**< the handler already called fl_net_respond; the body is drained
                               and discarded (the client can still read the answer) */
};

typedef struct fl_net_handler {
    /** Headers are complete (on the loop thread). Decide early: refuse overload, unknown
     *  paths, wrong methods, a Content-Length over the limit. May be NULL (always read). */
    int (*on_head)(fl_net_req_t *req, void *ud);
    /** The whole body is in (on the loop thread). The handler must call fl_net_respond (or
     *  fl_net_grpc_respond) exactly once, now or later, from any thread. */
    void (*on_body)(fl_net_req_t *req, void *ud);
    void *ud;
} fl_net_handler_t;

typedef struct fl_net_tls_opts {
    const char *cert_file;      /**< PEM chain; NULL: plain TCP */
    const char *key_file;       /**< PEM private key */
    const char *client_ca_file; /**< when set, client certificates are required and verified */
} fl_net_tls_opts_t;

typedef struct fl_net_listen_opts {
    const char *name; /**< for logs: "otlp-http", "otlp-grpc", "api", ... */
    const char *host; /**< "127.0.0.1", "::1", "0.0.0.0" */
    int port;         /**< 0: an ephemeral port (read it back with fl_net_bound_port) */
    fl_net_handler_t handler;
    size_t max_body;        /**< raw (wire) body bytes per request; over it: 413 (gRPC:
                                 RESOURCE_EXHAUSTED). 0: 64 MiB */
    size_t max_header;      /**< total header bytes; 0: 64 KiB. Over it: 431 */
    size_t max_connections; /**< 0: 4096. Past it new connections are closed at once */
    uint32_t max_streams;   /**< HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; 0: 256 */
    int idle_timeout_ms;    /**< close a connection idle this long; 0: 120000 */
    int header_timeout_ms;  /**< a request's head must arrive within this; 0: 30000 */
    int allow_h2c;          /**< accept HTTP/2 cleartext with prior knowledge (gRPC needs it) */
    fl_net_tls_opts_t tls;
} fl_net_listen_opts_t;

/** Create a server (not yet running). NULL on failure. */
fl_net_t *fl_net_new(const char *name);
/** Bind and listen. On failure fills err and returns FL_ERR_IO / FL_ERR_INVALID (bad TLS
 *  files are reported here, not at the first connection). Call before fl_net_start. */
int fl_net_listen(fl_net_t *n, const fl_net_listen_opts_t *opts, char *err, size_t errlen);
/** The port listener index i (in fl_net_listen order) is bound to. */
int fl_net_bound_port(const fl_net_t *n, int i);
/** Start the I/O thread. */
int fl_net_start(fl_net_t *n);
/** Stop accepting, let in-flight requests finish (up to timeout_ms), send GOAWAY / close,
 *  join the thread. Safe to call once; then fl_net_free. */
void fl_net_shutdown(fl_net_t *n, int timeout_ms);
/** Free a stopped (or never started) server. Accepts NULL. */
void fl_net_free(fl_net_t *n);
/** Requests being served right now (for /status). */
size_t fl_net_inflight(const fl_net_t *n);

/* request accessors: call only between on_head and the response */

const char *fl_net_req_method(const fl_net_req_t *r); /**< "GET", "POST", ... */
const char *fl_net_req_path(const fl_net_req_t *r);   /**< path without query, percent-decoded
                                                           no; as sent */
const char *fl_net_req_query(const fl_net_req_t *r);  /**< text after '?', "" when none */
/** Header value by name, case-insensitive; NULL when absent. Repeated headers are joined
 *  with ", ". */
const char *fl_net_req_header(const fl_net_req_t *r, const char *name);
/** Iterate headers: returns 0 past the end. */
int fl_net_req_header_at(const fl_net_req_t *r, size_t i, const char **name, const char **value);
/** The body read so far (complete in on_body). Owned by the request. */
const uint8_t *fl_net_req_body(const fl_net_req_t *r, size_t *len);
/** Content-Length if sent, else -1 (chunked or HTTP/2 without it). */
int64_t fl_net_req_content_length(const fl_net_req_t *r);
/** "http/1.1", "h2" or "h2c". */
const char *fl_net_req_protocol(const fl_net_req_t *r);
/** 1 when served over TLS. */
int fl_net_req_is_tls(const fl_net_req_t *r);
/** "ip:port" of the peer. */
const char *fl_net_req_peer(const fl_net_req_t *r);
/** 1 for a gRPC call (content-type application/grpc*). For gRPC, fl_net_req_body gives the
 *  first length-prefixed message's payload (prefix removed) and fl_net_req_grpc_compressed
 *  tells whether its compressed flag was set. */
int fl_net_req_is_grpc(const fl_net_req_t *r);
int fl_net_req_grpc_compressed(const fl_net_req_t *r);
/** grpc-timeout in ms, or -1 when absent. */
int64_t fl_net_req_grpc_timeout_ms(const fl_net_req_t *r);
/** User data slot. */
void fl_net_req_set_data(fl_net_req_t *r, void *data);
void *fl_net_req_get_data(const fl_net_req_t *r);

/** Answer a request; body is copied. Callable from any thread, exactly once per request.
 *  Content-Length, Date and Connection are added by the framework. If the client is gone
 *  the response is dropped silently. */
void fl_net_respond(fl_net_req_t *r, int status, const fl_net_header_t *headers, size_t n_headers,
                    const void *body, size_t len);
/** Answer a gRPC call: on grpc_status 0 the message (unprefixed, uncompressed) is sent in a
 *  DATA frame followed by trailers; otherwise a Trailers-Only response. grpc_message is
 *  percent-encoded by the framework. details (may be NULL) is a serialised google.rpc.Status
 *  sent base64 in grpc-status-details-bin. Callable from any thread, exactly once. */
void fl_net_grpc_respond(fl_net_req_t *r, int grpc_status, const char *grpc_message,
                         const void *details, size_t details_len, const void *msg,
                         size_t msg_len);

/** HTTP reason phrase for a status code ("Not Found"). */
const char *fl_net_status_text(int status);

/** gRPC status codes (grpc/doc/statuscodes.md). */
enum fl_grpc_status {
    FL_GRPC_OK = 0,
    FL_GRPC_CANCELLED = 1,
    FL_GRPC_UNKNOWN = 2,
    FL_GRPC_INVALID_ARGUMENT = 3,
    FL_GRPC_DEADLINE_EXCEEDED = 4,
    FL_GRPC_NOT_FOUND = 5,
    FL_GRPC_ALREADY_EXISTS = 6,
    FL_GRPC_PERMISSION_DENIED = 7,
    FL_GRPC_RESOURCE_EXHAUSTED = 8,
    FL_GRPC_FAILED_PRECONDITION = 9,
    FL_GRPC_ABORTED = 10,
    FL_GRPC_OUT_OF_RANGE = 11,
    FL_GRPC_UNIMPLEMENTED = 12,
    FL_GRPC_INTERNAL = 13,
    FL_GRPC_UNAVAILABLE = 14,
    FL_GRPC_DATA_LOSS = 15,
    FL_GRPC_UNAUTHENTICATED = 16
};

/* ---------------------------------------------------------------- client */

/** A blocking HTTP/1.1 client on one keep-alive connection (reconnects when the server
 *  closed it). Not thread-safe: one per thread. */
typedef struct fl_http_client fl_http_client_t;

typedef struct fl_http_response {
    int status;
    fl_buf_t headers; /**< "name: value\n" lines, names lowercased */
    fl_buf_t body;
} fl_http_response_t;

typedef struct fl_http_client_opts {
    const char *host;
    int port;
    int timeout_ms;          /**< per request (connect + send + receive); 0: 10000 */
    int tls;                 /**< connect with TLS */
    const char *ca_file;     /**< verify the server against this CA (TLS) */
    const char *cert_file;   /**< client certificate (mTLS) */
    const char *key_file;
    size_t max_response;     /**< 0: 64 MiB */
} fl_http_client_opts_t;

/** Create a client (connects lazily). NULL on failure. */
fl_http_client_t *fl_http_client_new(const fl_http_client_opts_t *opts);
void fl_http_client_free(fl_http_client_t *c);
/** Send one request and read the whole response into resp (initialised by the call;
 *  dispose it with fl_http_response_dispose). Returns FL_OK, FL_ERR_IO (connect/send/recv),
 *  FL_ERR_TIMEOUT or FL_ERR_PROTOCOL. A Host header is added when absent. */
int fl_http_client_request(fl_http_client_t *c, const char *method, const char *path,
                           const fl_net_header_t *headers, size_t n_headers, const void *body,
                           size_t len, fl_http_response_t *resp);
/** Header value from a response (name lowercase), copied into out; NULL when absent. */
const char *fl_http_response_header(const fl_http_response_t *resp, const char *name, char *out,
                                    size_t outlen);
void fl_http_response_dispose(fl_http_response_t *resp);

#ifdef __cplusplus
}
#endif
#endif
