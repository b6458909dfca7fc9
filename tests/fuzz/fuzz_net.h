/* SPDX-License-Identifier: Apache-2.0 */
/* Socketless server sessions for the net fuzz targets, built on the private test hooks in
 * net/src/net_int.h (as tests/unit/test_net_h2.c uses them). One server is created per
 * process with a listener whose handler answers synchronously on the loop thread (the
 * gRPC path decompresses and decodes the message with the receiver's functions, no decode
 * pool), so a run is deterministic. Each input gets a fresh virtual connection that is
 * closed and freed before the next one. */
#ifndef FL_FUZZ_NET_H
#define FL_FUZZ_NET_H

#include "fuzz_util.h"
#include "net_int.h"

#include <faultline/receiver.h>

#define FUZZ_MAX_BODY (256u * 1024)

typedef struct fuzz_srv {
    fl_net_t *n;
    long heads, bodies, aborts;
} fuzz_srv_t;

static void fuzz_check_req(fl_net_req_t *r)
{
    const char *m = fl_net_req_method(r), *p = fl_net_req_path(r), *q = fl_net_req_query(r);
    FUZZ_CHECK(m && p && q);
    fuzz_touch(fl_str(m));
    fuzz_touch(fl_str(p));
    fuzz_touch(fl_str(q));
    const char *name, *value;
    for (size_t i = 0; fl_net_req_header_at(r, i, &name, &value); i++) {
        FUZZ_CHECK(name && value);
        fuzz_touch(fl_str(name));
        fuzz_touch(fl_str(value));
    }
    fuzz_touch(fl_str(fl_net_req_protocol(r)));
}

static int fuzz_on_head(fl_net_req_t *r, void *ud)
{
    fuzz_srv_t *s = ud;
    s->heads++;
    fuzz_check_req(r);
    const char *p = fl_net_req_path(r);
    if (strcmp(p, "/refuse") == 0) { /* an early answer: the body is drained */
        if (fl_net_req_is_grpc(r))
            fl_net_grpc_respond(r, FL_GRPC_UNAVAILABLE, "busy", NULL, 0, NULL, 0);
        else
            fl_net_respond(r, 503, NULL, 0, "busy", 4);
        return FL_NET_RESPONDED;
    }
    return FL_NET_READ_BODY;
}

static void fuzz_on_abort(fl_net_req_t *r, void *ud)
{
    ((fuzz_srv_t *)ud)->aborts++;
}

/* gRPC: the payload as the receiver's gRPC path would treat it (decompress, decode). */
static void fuzz_grpc_body(fl_net_req_t *r)
{
    size_t len;
    const uint8_t *b = fl_net_req_body(r, &len);
    FUZZ_CHECK(len <= FUZZ_MAX_BODY);
    fuzz_touch((fl_str_t){(const char *)b, len});
    char err[256];
    fl_buf_t plain;
    fl_buf_init(&plain, 0);
    const uint8_t *msg = b;
    size_t mlen = len;
    if (fl_net_req_grpc_compressed(r)) {
        const char *enc = fl_net_req_header(r, "grpc-encoding");
        if (!enc || !fl_decompress_supported(enc) ||
            fl_decompress(enc, b, len, FUZZ_MAX_BODY, &plain, err, sizeof(err)) != FL_OK) {
            fl_buf_dispose(&plain);
            fl_net_grpc_respond(r, FL_GRPC_INVALID_ARGUMENT, "bad encoding", NULL, 0, NULL, 0);
            return;
        }
        msg = plain.data;
        mlen = plain.len;
    }
    fl_span_batch_t *batch = fl_span_batch_new(0);
    int rc = FL_ERR_NOMEM;
    FUZZ_CHECK(batch != NULL || fuzz_oom());
    if (batch)
        rc = fl_otlp_decode_traces(msg, mlen, FL_OTLP_PROTOBUF, batch, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "out of memory");
    FUZZ_CHECK(fuzz_decode_rc_ok(rc));
    fl_buf_t out;
    fl_buf_init(&out, 0);
    if (rc == FL_OK) {
        fuzz_check_batch(batch);
        int erc = fl_otlp_encode_trace_response(FL_OTLP_PROTOBUF, batch->rejected,
                                                batch->reject_msg, &out);
        FUZZ_CHECK(erc == FL_OK || (erc == FL_ERR_NOMEM && fuzz_oom()));
        if (erc == FL_OK)
            fl_net_grpc_respond(r, FL_GRPC_OK, NULL, NULL, 0, out.data, out.len);
        else
            fl_net_grpc_respond(r, FL_GRPC_INTERNAL, "out of memory", NULL, 0, NULL, 0);
    } else {
        fl_net_grpc_respond(r, FL_GRPC_INVALID_ARGUMENT, err, NULL, 0, NULL, 0);
    }
    fl_buf_dispose(&out);
    fl_buf_dispose(&plain);
    fl_span_batch_free(batch);
}

static void fuzz_on_body(fl_net_req_t *r, void *ud)
{
    fuzz_srv_t *s = ud;
    s->bodies++;
    fuzz_check_req(r);
    if (fl_net_req_is_grpc(r)) {
        fuzz_grpc_body(r);
        return;
    }
    size_t len;
    const uint8_t *b = fl_net_req_body(r, &len);
    FUZZ_CHECK(len <= FUZZ_MAX_BODY);
    int64_t cl = fl_net_req_content_length(r);
    if (cl >= 0)
        FUZZ_CHECK((uint64_t)cl == len);
    fuzz_touch((fl_str_t){(const char *)b, len});
    fl_net_header_t h[] = {{"Content-Type", "application/octet-stream"}};
    fl_net_respond(r, 200, h, 1, b, len);
}

/* Create the process-wide server once (the listener binds an ephemeral loopback port that
 * is never accepted on: virtual connections bypass it). */
static fuzz_srv_t *fuzz_srv_get(void)
{
    static fuzz_srv_t srv;
    if (srv.n)
        return &srv;
    fuzz_quiet();
    srv.n = fl_net_new("fuzz");
    FUZZ_CHECK(srv.n != NULL);
    fl_net_listen_opts_t o = {.name = "fuzz", .host = "127.0.0.1", .allow_h2c = 1};
    o.handler.on_head = fuzz_on_head;
    o.handler.on_body = fuzz_on_body;
    o.handler.on_abort = fuzz_on_abort;
    o.handler.ud = &srv;
    o.max_body = FUZZ_MAX_BODY;
    o.max_header = 8192;
    o.max_streams = 16;
    char err[256];
    int rc = fl_net_listen(srv.n, &o, err, sizeof(err));
    if (rc != FL_OK)
        fprintf(stderr, "fuzz: listen: %s\n", err);
    FUZZ_CHECK(rc == FL_OK);
    return &srv;
}

/* One connection's life: feed the pieces, deliver queued responses, EOF, close, free. The
 * allocation failure plan comes from the input (data, size); the server is made before it. */
static void fuzz_session(const uint8_t *data, size_t size, const uint8_t *const *pieces,
                         const size_t *lens, size_t n_pieces)
{
    fuzz_srv_t *s = fuzz_srv_get();
    fuzz_alloc_begin(data, size);
    fl_conn_t *c = fl__vconn_new(s->n, 0);
    if (!c) {
        FUZZ_CHECK(fuzz_oom());
        fuzz_alloc_end();
        return;
    }
    for (size_t i = 0; i < n_pieces && !fl__vconn_closed(c); i++) {
        if (lens[i] == 0)
            continue;
        fl__vconn_feed(c, pieces[i], lens[i]);
        fl__net_run_nowait(s->n); /* hand queued responses back to the conn */
    }
    for (int i = 0; i < 2 && !fl__vconn_closed(c); i++) {
        fl__net_run_nowait(s->n);
        fl__vconn_feed(c, NULL, 0); /* the peer closes */
    }
    const fl_buf_t *out = fl__vconn_output(c);
    FUZZ_CHECK(out->len == 0 || out->data != NULL);
    fuzz_touch((fl_str_t){(const char *)out->data, out->len});
    if (getenv("FUZZ_NET_DEBUG"))
        fprintf(stderr, "fuzz_session: %zu bytes out: %.200s\n", out->len,
                out->len ? (const char *)out->data : "");
    if (!fl__vconn_closed(c))
        fl__conn_close(c);
    fl__net_run_nowait(s->n); /* runs the close callbacks: the conn moves to vdead */
    fl__net_run_nowait(s->n);
    /* free closed virtual conns now instead of at fl_net_free, so memory stays flat */
    for (fl_conn_t *d = s->n->vdead, *next; d; d = next) {
        next = d->next;
        fl_buf_dispose(&d->vout);
        free(d);
    }
    s->n->vdead = NULL;
    FUZZ_CHECK(s->n->n_conns == 0);
    FUZZ_CHECK(atomic_load(&s->n->inflight) == 0);
    static int debug = -1;
    if (debug < 0)
        debug = getenv("FUZZ_NET_DEBUG") != NULL;
    if (debug) /* to check that seeds reach the handler: FUZZ_NET_DEBUG=1 ./fuzz_x seed */
        fprintf(stderr, "fuzz_session: heads=%ld bodies=%ld aborts=%ld\n", s->heads, s->bodies,
                s->aborts);
    fuzz_alloc_end();
}

#endif
