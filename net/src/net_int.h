/* SPDX-License-Identifier: Apache-2.0 */
/* net internals shared by the server files: the server, listeners, connections with their
 * transport (plain, TLS, virtual) and protocol (detect, http1, h2) vtables, and requests. */
#ifndef FL_NET_INT_H
#define FL_NET_INT_H

#include <faultline/net.h>

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#define FL_NET_MODULE "net"
#define FL_NET_READ_CHUNK 65536
#define FL_NET_MAX_LISTENERS 16
/* An early response keeps the connection alive only when at most this much body is left
 * to drain; otherwise it says Connection: close and half-closes. */
#define FL_NET_DRAIN_MAX (1u << 20)
/* After a half-close, unread input is discarded for at most this long before closing. */
#define FL_NET_LINGER_MS 2000
/* Stop reading from a peer while this many output bytes are unacknowledged. */
#define FL_NET_WRITE_HIGH (4u << 20)

typedef struct fl_listener fl_listener_t;
typedef struct fl_conn fl_conn_t;

/** Moves bytes between the socket (or a test buffer) and the protocol. */
typedef struct fl__transport_ops {
    const char *name;
    /** Raw bytes from the peer; plaintext goes on to fl__conn_deliver. <0 kills the conn. */
    int (*recv)(fl_conn_t *c, const uint8_t *data, size_t len);
    /** Plaintext from the protocol; raw bytes go on to fl__conn_raw_queue. */
    int (*send)(fl_conn_t *c, const void *data, size_t len);
    /** Free transport state (the conn is closing). */
    void (*dispose)(fl_conn_t *c);
} fl__transport_ops_t;

/** Speaks HTTP on top of a transport. All calls happen on the loop thread. */
typedef struct fl__proto_ops {
    const char *name;
    /** Plaintext from the peer. <0: close the connection. */
    int (*on_data)(fl_conn_t *c, const uint8_t *data, size_t len);
    /** A response taken from the queue for a request still attached to this conn. */
    void (*on_response)(fl_conn_t *c, fl_net_req_t *r);
    /** Every queued output byte has been written. */
    void (*on_drain)(fl_conn_t *c);
    /** The conn timer fired. */
    void (*on_timeout)(fl_conn_t *c);
    /** The server is shutting down: finish in-flight requests, then close. */
    void (*on_shutdown)(fl_conn_t *c);
    /** The conn is closing: detach requests (state stays valid until dispose). */
    void (*on_close)(fl_conn_t *c);
    /** Free protocol state (from a loop callback, never inside the protocol's own stack). */
    void (*dispose)(fl_conn_t *c);
} fl__proto_ops_t;

struct fl_listener {
    fl_net_t *net;
    int index;
    fl_net_listen_opts_t o; /* strings point into names below */
    char name[64];
    char host[64];
    uv_tcp_t tcp;
    int port;
    void *ssl_ctx; /* SSL_CTX *, NULL for plain TCP */
    size_t n_conns;
    uint64_t log_window_ns; /* per-listener rate limit for peer error logs */
    unsigned log_count;
};

struct fl_conn {
    fl_net_t *net;
    fl_listener_t *ls;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int is_virtual;
    const fl__transport_ops_t *tr;
    void *tr_state;
    const fl__proto_ops_t *proto;
    void *proto_state;
    fl_buf_t wbuf;   /* raw output waiting for the next flush */
    size_t wpending; /* bytes handed to uv_write, not yet completed */
    int closing;
    int handles_open;
    int close_after_flush; /* 1: close; 2: half-close then linger */
    int wfailed;           /* output could not be queued (OOM): drop the rest, close soon */
    int lingering;
    int is_tls;
    int eof;
    int bp_paused;    /* reading stopped: too much unacknowledged output */
    int proto_paused; /* reading stopped by the protocol */
    uint8_t det[24];  /* protocol detection: first bytes */
    size_t det_len;
    char alpn[16];
    char peer[64];
    fl_buf_t vout; /* virtual conns: everything sent */
    int vclosed;   /* virtual conns: closed */
    fl_conn_t *prev, *next;
};

enum fl__resp_kind { FL__RESP_HTTP = 1, FL__RESP_GRPC = 2 };

/** A response captured by fl_net_respond / fl_net_grpc_respond (malloc'd, owned by req). */
typedef struct fl__resp {
    int kind;
    int status; /* HTTP status, or grpc-status */
    fl_net_header_t *headers;
    size_t n_headers;
    uint8_t *body; /* HTTP body; for gRPC the prefixed message */
    size_t len;
    char *grpc_message; /* percent-encoded, NULL when none */
    char *grpc_details; /* base64 without padding, NULL when none */
    size_t sent;        /* h2: body bytes handed to nghttp2 */
} fl__resp_t;

#define FL__MAX_EXTRA_RESP 12

struct fl_net_req {
    fl_net_t *net;
    fl_conn_t *conn; /* NULL once detached (loop thread only) */
    int32_t stream_id;
    fl_arena_t *arena;
    const char *method;
    const char *path;
    const char *query;
    const char *protocol;
    char peer[64];
    fl_net_header_t *hdrs;
    size_t n_hdrs, cap_hdrs;
    size_t hdr_bytes;
    fl_buf_t body; /* wire body (gRPC: still prefixed) */
    int64_t content_length;
    int is_tls;
    int is_grpc;
    int grpc_compressed;
    int64_t grpc_timeout_ms;
    size_t grpc_off; /* payload offset in body (5 once framed) */
    size_t grpc_len;
    int head_seen;     /* handler's on_head ran */
    int head_accepted; /* on_head asked for the body: on_body or on_abort is owed */
    int body_done;     /* request fully read */
    int handed;        /* handler owns a response obligation (on_body ran) */
    int refs;          /* loop thread: conn ref + handler ref */
    atomic_int responded;
    fl__resp_t *resp; /* set by respond before queueing */
    void *udata;
    fl_net_req_t *qnext;
    void *pstate; /* protocol per-request state (h2 stream) */
    /* Headers added to every HTTP response (CORS, WWW-Authenticate). */
    fl_net_header_t extra_resp[FL__MAX_EXTRA_RESP];
    size_t n_extra_resp;
};

struct fl_net {
    char name[64];
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t stop_timer;
    pthread_t thread;
    pthread_t loop_tid;
    int started;
    int stopping; /* loop thread */
    int stop_requested;
    int stop_timeout_ms;
    int stopped; /* under mu: no loop left to take responses */
    int shut_done;
    pthread_mutex_t mu;
    fl_net_req_t *q_head, *q_tail;
    fl_listener_t *ls[FL_NET_MAX_LISTENERS];
    int n_ls;
    fl_conn_t *conns;
    fl_conn_t *vdead; /* closed virtual conns, freed with the server */
    size_t n_conns;
    atomic_size_t inflight;
    atomic_size_t conn_gauge; /* n_conns, readable from any thread */
    uint8_t rbuf[FL_NET_READ_CHUNK];
    char date[40];
    int64_t date_sec;
};

/* server.c */
void fl__conn_deliver(fl_conn_t *c, const uint8_t *data, size_t len);
void fl__conn_raw_queue(fl_conn_t *c, const void *data, size_t len);
int fl__conn_send(fl_conn_t *c, const void *data, size_t len);
void fl__conn_flush(fl_conn_t *c);
void fl__conn_close(fl_conn_t *c);
void fl__conn_close_after_flush(fl_conn_t *c, int half_close);
void fl__conn_set_timer(fl_conn_t *c, int ms);
void fl__conn_read_pause(fl_conn_t *c, int pause);
void fl__conn_set_proto(fl_conn_t *c, const fl__proto_ops_t *p);
const char *fl__net_date(fl_net_t *n);
void fl__peer_log(fl_conn_t *c, const char *what, const char *detail);

/* req.c */
fl_net_req_t *fl__req_new(fl_conn_t *c, const char *protocol);
void fl__req_unref(fl_net_req_t *r);
int fl__req_add_header(fl_net_req_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen);
/** Framework-generated response, on the loop thread (bypasses the queue). */
void fl__req_respond_direct(fl_net_req_t *r, int status, const char *msg);
void fl__resp_free(fl__resp_t *resp);
/** Take the handler's reference when on_body will not be called. */
void fl__req_drop_handler(fl_net_req_t *r);
/** Run on_head: returns FL_NET_READ_BODY or FL_NET_RESPONDED. Takes the handler ref. */
int fl__req_call_head(fl_net_req_t *r);
/** Run on_body (the handler ref moves to the handler). */
void fl__req_call_body(fl_net_req_t *r);
/** Loop thread: take queued responses and hand each to its conn. */
void fl__net_drain_queue(fl_net_t *n);

/* http1.c, h2.c */
extern const fl__proto_ops_t fl__proto_http1;
extern const fl__proto_ops_t fl__proto_h2;
/** Start HTTP/2 on c (after the preface was seen or ALPN chose h2). <0 on failure. */
int fl__h2_start(fl_conn_t *c);
int fl__h1_start(fl_conn_t *c);

/* tls.c */
/** Build an SSL_CTX for a listener; fills err on failure. */
void *fl__tls_server_ctx(const fl_net_tls_opts_t *o, char *err, size_t errlen);
void fl__tls_ctx_free(void *ctx);
/** Attach a TLS transport to a freshly accepted conn. */
int fl__tls_attach(fl_conn_t *c);
extern const fl__transport_ops_t fl__transport_plain;

/* grpc.c */
/** Parse grpc-timeout ("100m", "5S"...) into ms; -1 when malformed. */
int64_t fl__grpc_parse_timeout(const char *v);
/** Percent-encode a grpc-message (malloc'd). */
char *fl__grpc_pct_encode(const char *s);
/** Percent-decode in place. */
void fl__grpc_pct_decode(char *s);
/** base64 without padding (malloc'd). */
char *fl__b64_nopad(const void *p, size_t n);
/** 1 when a content-type names gRPC. */
int fl__is_grpc_ctype(const char *ct);

/* client_io.c: blocking socket with optional TLS, shared by both clients */
typedef struct fl__cio {
    int fd;
    void *ssl;     /* SSL * */
    void *ssl_ctx; /* SSL_CTX * */
    char alpn[16];
} fl__cio_t;

typedef struct fl__cio_opts {
    const char *host;
    int port;
    int tls;
    int verify;
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    const char *alpn; /* wire-format ALPN list, NULL: none */
    size_t alpn_len;
} fl__cio_opts_t;

void fl__cio_init(fl__cio_t *io);
int fl__cio_connect(fl__cio_t *io, const fl__cio_opts_t *o, uint64_t deadline_ns, char *err,
                    size_t errlen);
/** Write all; FL_OK, FL_ERR_IO, FL_ERR_TIMEOUT. */
int fl__cio_write(fl__cio_t *io, const void *p, size_t n, uint64_t deadline_ns);
/** Read some: >0 bytes, 0 on EOF, FL_ERR_IO, FL_ERR_TIMEOUT. */
long fl__cio_read(fl__cio_t *io, void *p, size_t n, uint64_t deadline_ns);
/** 1 when the peer has closed (or sent unexpected data) on an idle connection. */
int fl__cio_stale(fl__cio_t *io);
void fl__cio_close(fl__cio_t *io);

/* test hooks: a connection with no socket, driven by the caller on its own thread while
 * the server thread is not started. Output accumulates in fl__vconn_output. */
fl_conn_t *fl__vconn_new(fl_net_t *n, int listener);
void fl__vconn_feed(fl_conn_t *c, const void *data, size_t len);
const fl_buf_t *fl__vconn_output(fl_conn_t *c);
int fl__vconn_closed(fl_conn_t *c);
/** Run the loop once without blocking (processes queued responses). */
void fl__net_run_nowait(fl_net_t *n);

#endif
