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
     *  paths, wrong methods. A Content-Length over max_body never gets here: the framework
     *  answers 413 itself. May be NULL (always read). If on_body is never called for this
     *  request (client gone, body over the limit, bad gRPC framing answered by the
     *  framework), the handler owes no response. */
    int (*on_head)(fl_net_req_t *req, void *ud);
    /** The whole body is in (on the loop thread). The handler must call fl_net_respond (or
     *  fl_net_grpc_respond) exactly once, now or later, from any thread. Until then the
     *  request stays valid even if the client disconnects (the answer is then dropped). */
    void (*on_body)(fl_net_req_t *req, void *ud);
    void *ud;
    /** Optional (on the loop thread): on_head returned FL_NET_READ_BODY but on_body will never
     *  come (client gone mid-body, body over the limit, bad framing answered by the
     *  framework). Release whatever on_head reserved; the handler owes no response. */
    void (*on_abort)(fl_net_req_t *req, void *ud);
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
    size_t max_body;        /**< raw (wire) body bytes per request; over it: 413 (gRPC: the
                                 message length, prefix excluded; RESOURCE_EXHAUSTED).
                                 Checked on Content-Length / the gRPC prefix before reading
                                 and while reading. 0: 64 MiB */
    size_t max_header;      /**< total header bytes; 0: 64 KiB. Over it: 431 */
    size_t max_connections; /**< 0: 4096. Past it new connections are closed at once */
    uint32_t max_streams;   /**< HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; 0: 256 */
    int idle_timeout_ms;    /**< close a connection idle this long; 0: 120000 */
    int header_timeout_ms;  /**< a request's head (and a new connection's first request or
                                 TLS handshake) must arrive within this, else 408/close;
                                 0: 30000 */
    int allow_h2c;          /**< accept HTTP/2 cleartext with prior knowledge (gRPC needs it);
                                 HTTP/1.1 is served on the same port. Over TLS, h2 is offered
                                 by ALPN whatever this says */
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
 *  join the thread. Idle keep-alive connections close at once; HTTP/1.1 answers still due go
 *  out with Connection: close; HTTP/2 gets a shutdown notice, then the final GOAWAY once its
 *  streams are done. Safe to call once; then fl_net_free. A response given after this is
 *  freed without being sent. */
void fl_net_shutdown(fl_net_t *n, int timeout_ms);
/** Free a stopped (or never started) server. Accepts NULL. */
void fl_net_free(fl_net_t *n);
/** Requests being served right now (for /status). */
size_t fl_net_inflight(const fl_net_t *n);
/** Open client connections across all listeners (for /status and tests). */
size_t fl_net_connections(const fl_net_t *n);

/* request accessors: call only between on_head and the response */

const char *fl_net_req_method(const fl_net_req_t *r); /**< "GET", "POST", ... */
const char *fl_net_req_path(const fl_net_req_t *r);   /**< path without the query, as sent
                                                           (not percent-decoded) */
const char *fl_net_req_query(const fl_net_req_t *r);  /**< text after '?', "" when none */
/** Header value by name, case-insensitive; NULL when absent. Repeated headers are joined
 *  with ", ". HTTP/2 requests also carry ":authority" and a "host" made from it. */
const char *fl_net_req_header(const fl_net_req_t *r, const char *name);
/** Iterate headers: returns 0 past the end. */
int fl_net_req_header_at(const fl_net_req_t *r, size_t i, const char **name, const char **value);
/** The body read so far (complete in on_body). Owned by the request. */
const uint8_t *fl_net_req_body(const fl_net_req_t *r, size_t *len);
/** Free the body before answering, once the handler is done with it (after on_body, from any
 *  thread, before fl_net_respond): a handler that answers only after slow work (a commit)
 *  need not hold it that long. fl_net_req_body then gives an empty body. */
void fl_net_req_drop_body(fl_net_req_t *r);
/** Content-Length if sent, else -1 (chunked or HTTP/2 without it). */
int64_t fl_net_req_content_length(const fl_net_req_t *r);
/** "http/1.1", "h2" or "h2c". */
const char *fl_net_req_protocol(const fl_net_req_t *r);
/** 1 when served over TLS. */
int fl_net_req_is_tls(const fl_net_req_t *r);
/** "ip:port" of the peer. */
const char *fl_net_req_peer(const fl_net_req_t *r);
/** 1 for a gRPC call (HTTP/2 with content-type application/grpc, application/grpc+proto...).
 *  For gRPC, fl_net_req_body gives the first length-prefixed message's payload (prefix
 *  removed) and fl_net_req_grpc_compressed tells whether its compressed flag was set. Bad
 *  framing is answered by the framework before on_body (Trailers-Only): no message, a short
 *  prefix, a prefix longer than the data, or a flag other than 0/1 give INTERNAL with a
 *  message; a message over max_body gives RESOURCE_EXHAUSTED. */
int fl_net_req_is_grpc(const fl_net_req_t *r);
int fl_net_req_grpc_compressed(const fl_net_req_t *r);
/** grpc-timeout in ms, or -1 when absent. */
int64_t fl_net_req_grpc_timeout_ms(const fl_net_req_t *r);
/** User data slot. */
void fl_net_req_set_data(fl_net_req_t *r, void *data);
void *fl_net_req_get_data(const fl_net_req_t *r);

/** Attach a header to whatever HTTP response this request gets (fl_net_respond), errors
 *  included: CORS headers decided in on_head, WWW-Authenticate. Strings are copied. Call on
 *  the loop thread before answering. FL_OK, FL_ERR_LIMIT (more than 12), FL_ERR_NOMEM. */
int fl_net_req_add_response_header(fl_net_req_t *r, const char *name, const char *value);

/* ---------------------------------------------------------------- security helpers */

/** SHA-256 of data into out (32 bytes). */
void fl_net_sha256(const void *data, size_t len, uint8_t out[32]);

/** A set of accepted bearer tokens (only their SHA-256 digests are kept). */
typedef struct fl_net_tokens fl_net_tokens_t;
/** Read tokens from a file, one per line (blank lines and surrounding spaces ignored; several
 *  lines allow rotation). NULL with a message in err when the file cannot be read or holds
 *  no token. The tokens themselves never appear in err. */
fl_net_tokens_t *fl_net_tokens_load(const char *path, char *err, size_t errlen);
/** Build a set from strings (tests). NULL on OOM or n == 0. */
fl_net_tokens_t *fl_net_tokens_new(const char *const *tokens, size_t n);
/** 1 when authorization is "Bearer <token>" (scheme case-insensitive) with a token of the
 *  set, else 0. The presented token is hashed and compared with every digest in constant
 *  time, so timing tells nothing about the tokens. */
int fl_net_tokens_check(const fl_net_tokens_t *t, const char *authorization);
size_t fl_net_tokens_count(const fl_net_tokens_t *t);
void fl_net_tokens_free(fl_net_tokens_t *t); /**< accepts NULL */

/** CORS policy for a listener (follows the OpenTelemetry Collector's confighttp cors). */
typedef struct fl_net_cors {
    const char *const *origins; /**< allowed origins; '*' matches any run of
                                     characters (https + "*.example.com"); none: off */
    size_t n_origins;
    const char *methods; /**< Access-Control-Allow-Methods, e.g. "POST" */
    int max_age_s;       /**< Access-Control-Max-Age; 0: 7200 */
} fl_net_cors_t;

/** 1 when origin matches pattern ('*' matches any run of characters, case-insensitive). */
int fl_net_cors_origin_match(const char *pattern, const char *origin);

enum fl_net_cors_result {
    FL_NET_CORS_NONE = 0,     /**< not a CORS request, CORS off, or origin not allowed */
    FL_NET_CORS_ALLOWED = 1,  /**< headers attached to the coming response */
    FL_NET_CORS_PREFLIGHT = 2 /**< an OPTIONS preflight, answered (204) */
};
/** Apply CORS in on_head: for an allowed Origin attach Access-Control-Allow-Origin (the
 *  origin echoed), -Allow-Credentials: true and Vary: Origin to the response; answer an
 *  OPTIONS preflight (Origin + Access-Control-Request-Method) with 204, -Allow-Methods,
 *  -Allow-Headers (Content-Type, Content-Encoding, Authorization, X-Requested-With plus the
 *  requested ones that are valid header names) and -Max-Age. A preflight from an origin not
 *  allowed still gets 204, without CORS headers (the browser then refuses). cors may be
 *  NULL. */
int fl_net_cors_apply(fl_net_req_t *req, const fl_net_cors_t *cors);

/** Answer a request; body is copied. Callable from any thread, exactly once per request
 *  (a second answer is logged and dropped). Content-Length, Date and Connection are added
 *  by the framework (the handler's own are ignored; on HTTP/2 names are lowercased and
 *  hop-by-hop headers dropped). If the client is gone the response is dropped silently. */
void fl_net_respond(fl_net_req_t *r, int status, const fl_net_header_t *headers, size_t n_headers,
                    const void *body, size_t len);
/** Answer a gRPC call: on grpc_status 0 the message (unprefixed; the framework adds the
 *  prefix with flag 0) is sent in DATA followed by trailers (grpc-status, and grpc-message /
 *  details when given); otherwise a Trailers-Only response. grpc_message is percent-encoded
 *  by the framework. details (may be NULL) is a serialised google.rpc.Status sent as base64
 *  without padding in grpc-status-details-bin. Callable from any thread, exactly once. On an
 *  HTTP/1.1 request the status travels in response headers. */
void fl_net_grpc_respond(fl_net_req_t *r, int grpc_status, const char *grpc_message,
                         const void *details, size_t details_len, const void *msg, size_t msg_len);

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
    int timeout_ms;        /**< per request (connect + send + receive); 0: 10000 */
    int tls;               /**< connect with TLS */
    const char *ca_file;   /**< verify the server against this CA (TLS) */
    const char *cert_file; /**< client certificate (mTLS) */
    const char *key_file;
    size_t max_response; /**< 0: 64 MiB */
    int insecure;        /**< TLS without verifying the server (self-signed test setups);
                              otherwise the server is checked against ca_file, or the
                              system CAs when ca_file is NULL, and its name/IP */
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

/* ---------------------------------------------------------------- gRPC client */

/** A blocking gRPC client (HTTP/2 over h2c with prior knowledge, or TLS with ALPN h2) on one
 *  connection, reconnecting when the server closed it or sent GOAWAY. Unary calls, one at a
 *  time. For tools (replay) and tests. Not thread-safe: one per thread. */
typedef struct fl_grpc_client fl_grpc_client_t;

typedef struct fl_grpc_client_opts {
    const char *host;
    int port;
    int timeout_ms;        /**< per call (connect + send + receive); 0: 10000. Also sent as
                                grpc-timeout unless the caller passes one */
    int tls;               /**< TLS with ALPN h2; else h2c prior knowledge */
    const char *ca_file;   /**< verify the server against this CA (TLS) */
    const char *cert_file; /**< client certificate (mTLS) */
    const char *key_file;
    int insecure;          /**< TLS without verifying the server */
    size_t max_response;   /**< response body bytes; 0: 64 MiB */
    const char *authority; /**< :authority; NULL: "host:port" */
} fl_grpc_client_opts_t;

typedef struct fl_grpc_result {
    int http_status;    /**< :status of the response headers */
    int grpc_status;    /**< grpc-status, or -1 when the server sent none */
    char *grpc_message; /**< percent-decoded grpc-message, NULL when none (malloc'd) */
    fl_buf_t message;   /**< the first response message, prefix removed (not decompressed) */
    int compressed;     /**< that message's compressed flag */
    fl_buf_t details;   /**< grpc-status-details-bin, base64-decoded (a google.rpc.Status) */
    fl_buf_t headers;   /**< "name: value\n" for response headers then trailers */
    int trailers_only;  /**< the response was a single HEADERS frame */
    uint32_t rst_error; /**< HTTP/2 error code if the stream was reset, else 0 */
} fl_grpc_result_t;

/** Create a client (connects lazily). NULL on bad options or OOM. */
fl_grpc_client_t *fl_grpc_client_new(const fl_grpc_client_opts_t *opts);
/** Close the connection and free. Accepts NULL. */
void fl_grpc_client_free(fl_grpc_client_t *c);
/** One unary call: POST path with content-type application/grpc, te: trailers, the extra
 *  headers (lowercase names), and msg framed with a 5-byte prefix carrying compressed_flag.
 *  res is initialised by the call; dispose it with fl_grpc_result_dispose. Returns FL_OK when
 *  a response arrived (whatever its grpc-status), FL_ERR_IO / FL_ERR_TIMEOUT on transport
 *  failure, FL_ERR_PROTOCOL when the stream was reset without a status or the response
 *  framing is broken, FL_ERR_LIMIT past max_response. */
int fl_grpc_client_call(fl_grpc_client_t *c, const char *path, const fl_net_header_t *extra,
                        size_t n_extra, const void *msg, size_t len, int compressed_flag,
                        fl_grpc_result_t *res);
/** As fl_grpc_client_call, but body is sent exactly as given (already length-prefixed, as
 *  in the captured fixtures; may also be deliberately malformed). */
int fl_grpc_client_call_raw(fl_grpc_client_t *c, const char *path, const fl_net_header_t *extra,
                            size_t n_extra, const void *body, size_t len, fl_grpc_result_t *res);
void fl_grpc_result_dispose(fl_grpc_result_t *res);

#ifdef __cplusplus
}
#endif
#endif
