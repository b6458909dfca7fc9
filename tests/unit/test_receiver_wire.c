/* SPDX-License-Identifier: Apache-2.0 */
/* The protobuf span decoder that reads the wire directly, against the reference decoder that
 * unpacks every span with protobuf-c (fl__pb_decode_traces with reference = 1): random
 * requests built and packed with protobuf-c, the same spans mutated byte by byte, and the
 * encodings protobuf-c resolves in its own way (merged messages, oneof order, overlong keys,
 * unknown fields of every wire type). Both must accept and refuse the same bytes and yield
 * the same spans. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "receiver_int.h"
#include "test_span_util.h"

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link_t;

/* ---------------------------------------------------------------- comparison */

/* Decodes body both ways; the outcomes must agree (cut: strings may hold a NUL). Returns the
 * wire decoder's status. */
static int decode_both(const uint8_t *body, size_t len, int cut, fl_span_batch_t **wire_out)
{
    char ew[256] = "", er[256] = "", why[64] = "";
    fl_span_batch_t *w = fl_span_batch_new(0), *r = fl_span_batch_new(0);
    assert_non_null(w);
    assert_non_null(r);
    int rw = fl__pb_decode_traces(body, len, 64, 0, w, ew, sizeof(ew));
    int rr = fl__pb_decode_traces(body, len, 64, 1, r, er, sizeof(er));
    if (rw != rr) {
        char hex[1025] = "";
        for (size_t i = 0; i < len && i < 512; i++)
            snprintf(hex + 2 * i, 3, "%02x", body[i]);
        fail_msg("wire decoder: %d (%s), protobuf-c: %d (%s) on %s", rw, ew, rr, er, hex);
    }
    if (rw != FL_OK) {
        assert_string_equal(ew, er);
    } else {
        assert_int_equal(w->n_spans, r->n_spans);
        assert_int_equal(w->rejected, r->rejected);
        assert_true(!w->reject_msg == !r->reject_msg);
        if (w->reject_msg)
            assert_string_equal(w->reject_msg, r->reject_msg);
        for (size_t i = 0; i < w->n_spans; i++) {
            fl_span_t s = w->spans[i];
            if (cut)
                tsu_cut_span(&s);
            if (!tsu_span_eq(&s, &r->spans[i], why, sizeof(why)))
                fail_msg("span %zu differs: %s", i, why);
        }
    }
    fl_span_batch_free(r);
    if (wire_out && rw == FL_OK)
        *wire_out = w;
    else
        fl_span_batch_free(w);
    return rw;
}

/* ---------------------------------------------------------------- random requests */

typedef struct gen {
    fl_arena_t *a;
    uint64_t st;
} gen_t;

static uint64_t rnd(gen_t *g)
{
    uint64_t z = (g->st += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t below(gen_t *g, size_t n)
{
    return (size_t)(rnd(g) % n);
}

static void *alloc(gen_t *g, size_t n)
{
    void *p = fl_arena_calloc(g->a, 1, n ? n : 1);
    assert_non_null(p);
    return p;
}

static char *rstr(gen_t *g)
{
    static const char *const parts[] = {"a", "http.", "route", "/", "é", "日本", "-", "9", " "};
    size_t n = below(g, 6);
    char *s = alloc(g, n * 8 + 1);
    for (size_t i = 0; i < n; i++)
        strcat(s, parts[below(g, sizeof(parts) / sizeof(parts[0]))]);
    return s;
}

static void rbytes(gen_t *g, ProtobufCBinaryData *d, size_t n)
{
    d->len = n;
    d->data = alloc(g, n);
    for (size_t i = 0; i < n; i++)
        d->data[i] = (uint8_t)rnd(g);
}

/* Mostly the right length, sometimes absent or wrong (the span or link is then refused). */
static void rid(gen_t *g, ProtobufCBinaryData *d, size_t want)
{
    size_t k = below(g, 40);
    rbytes(g, d, k == 0 ? 0 : k == 1 ? want - 1 : want);
}

static pb_kv_t **rkvs(gen_t *g, size_t n, int depth);

static pb_any_t *rvalue(gen_t *g, int depth)
{
    pb_any_t *v = alloc(g, sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    switch (below(g, depth > 0 ? 9 : 6)) {
    case 0:
        break; /* no value set */
    case 1:
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = below(g, 2);
        break;
    case 2:
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = (int64_t)rnd(g) >> below(g, 64);
        break;
    case 3: {
        uint64_t bits = rnd(g);
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        memcpy(&v->double_value, &bits, sizeof(bits)); /* NaN payloads and all */
        break;
    }
    case 4:
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
        rbytes(g, &v->bytes_value, below(g, 12));
        break;
    case 5:
    case 6:
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        v->string_value = rstr(g);
        break;
    case 7: {
        Opentelemetry__Proto__Common__V1__ArrayValue *a = alloc(g, sizeof(*a));
        opentelemetry__proto__common__v1__array_value__init(a);
        a->n_values = below(g, 4);
        a->values = alloc(g, a->n_values * sizeof(*a->values));
        for (size_t i = 0; i < a->n_values; i++)
            a->values[i] = rvalue(g, depth - 1);
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
        v->array_value = a;
        break;
    }
    default: {
        Opentelemetry__Proto__Common__V1__KeyValueList *l = alloc(g, sizeof(*l));
        opentelemetry__proto__common__v1__key_value_list__init(l);
        l->n_values = below(g, 4);
        l->values = rkvs(g, l->n_values, depth - 1);
        v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
        v->kvlist_value = l;
        break;
    }
    }
    return v;
}

static pb_kv_t **rkvs(gen_t *g, size_t n, int depth)
{
    pb_kv_t **kv = alloc(g, n * sizeof(*kv));
    for (size_t i = 0; i < n; i++) {
        kv[i] = alloc(g, sizeof(**kv));
        opentelemetry__proto__common__v1__key_value__init(kv[i]);
        kv[i]->key = rstr(g);
        kv[i]->value = below(g, 10) ? rvalue(g, depth) : NULL;
    }
    return kv;
}

static pb_span_t *rspan(gen_t *g)
{
    pb_span_t *s = alloc(g, sizeof(*s));
    opentelemetry__proto__trace__v1__span__init(s);
    rid(g, &s->trace_id, 16);
    rid(g, &s->span_id, 8);
    if (below(g, 2))
        rid(g, &s->parent_span_id, 8);
    s->trace_state = rstr(g);
    s->name = rstr(g);
    s->flags = (uint32_t)rnd(g) >> below(g, 32);
    s->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)below(g, 7);
    s->start_time_unix_nano = rnd(g);
    s->end_time_unix_nano = rnd(g) >> below(g, 64);
    s->n_attributes = below(g, 12);
    s->attributes = rkvs(g, s->n_attributes, 3);
    s->dropped_attributes_count = (uint32_t)below(g, 3);
    s->n_events = below(g, 3);
    s->events = alloc(g, s->n_events * sizeof(*s->events));
    for (size_t i = 0; i < s->n_events; i++) {
        pb_event_t *e = s->events[i] = alloc(g, sizeof(*e));
        opentelemetry__proto__trace__v1__span__event__init(e);
        e->time_unix_nano = rnd(g);
        e->name = rstr(g);
        e->n_attributes = below(g, 4);
        e->attributes = rkvs(g, e->n_attributes, 2);
        e->dropped_attributes_count = (uint32_t)below(g, 3);
    }
    s->dropped_events_count = (uint32_t)below(g, 3);
    s->n_links = below(g, 3);
    s->links = alloc(g, s->n_links * sizeof(*s->links));
    for (size_t i = 0; i < s->n_links; i++) {
        pb_link_t *l = s->links[i] = alloc(g, sizeof(*l));
        opentelemetry__proto__trace__v1__span__link__init(l);
        rid(g, &l->trace_id, 16);
        rid(g, &l->span_id, 8);
        l->trace_state = rstr(g);
        l->n_attributes = below(g, 3);
        l->attributes = rkvs(g, l->n_attributes, 1);
        l->dropped_attributes_count = (uint32_t)below(g, 3);
        l->flags = (uint32_t)below(g, 1024);
    }
    s->dropped_links_count = (uint32_t)below(g, 3);
    if (below(g, 3)) {
        Opentelemetry__Proto__Trace__V1__Status *st = alloc(g, sizeof(*st));
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)below(g, 4);
        st->message = rstr(g);
        s->status = st;
    }
    return s;
}

static void pack(const ProtobufCMessage *m, fl_buf_t *out)
{
    fl_buf_init(out, 0);
    size_t n = protobuf_c_message_get_packed_size(m);
    assert_int_equal(fl_buf_reserve(out, n), FL_OK);
    protobuf_c_message_pack(m, out->data);
    out->len = n;
}

static void put_varint(fl_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        fl_buf_putc(b, (int)(v | 0x80) & 0xff);
        v >>= 7;
    }
    fl_buf_putc(b, (int)v);
}

static void put_field(fl_buf_t *b, unsigned field, const uint8_t *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    fl_buf_append(b, p, n);
}

/* A request of the given span encodings: one resource (service "svc"), one scope. */
static void request_of(fl_buf_t *spans, size_t n, fl_buf_t *out)
{
    fl_buf_t ss, rs;
    fl_buf_init(&ss, 0);
    fl_buf_append(&ss, "\x0a\x04\x0a\x02sc", 6); /* scope {name: "sc"} */
    for (size_t i = 0; i < n; i++)
        put_field(&ss, 2, spans[i].data, spans[i].len);
    fl_buf_init(&rs, 0);
    /* resource {attributes: [{key: "service.name", value: {string_value: "svc"}}]} */
    fl_buf_append(&rs, "\x0a\x17\x0a\x15\x0a\x0cservice.name\x12\x05\x0a\x03svc", 25);
    put_field(&rs, 2, ss.data, ss.len);
    fl_buf_init(out, 0);
    put_field(out, 1, rs.data, rs.len);
    fl_buf_dispose(&ss);
    fl_buf_dispose(&rs);
}

static void request_of_one(const void *span, size_t n, fl_buf_t *out)
{
    fl_buf_t s;
    fl_buf_init(&s, 0);
    fl_buf_append(&s, span, n);
    request_of(&s, 1, out);
    fl_buf_dispose(&s);
}

/* Random spans, each packed by protobuf-c and then mutated: a byte changed, a range
 * repeated (a field sent twice), bytes cut off or inserted. */
static void test_receiver_wire_random(void **state)
{
    (void)state;
    gen_t g = {fl_arena_new(1 << 16), 0x5eedf00d};
    size_t accepted = 0, refused = 0, spans_seen = 0;
    const char *env = getenv("FL_WIRE_ROUNDS"); /* more rounds when run by hand */
    int rounds = env ? atoi(env) : 400;
    g.st += env ? (uint64_t)time(NULL) : 0;
    for (int round = 0; round < rounds; round++) {
        fl_arena_reset(g.a);
        enum { N = 6 };
        fl_buf_t sp[N], req;
        for (size_t i = 0; i < N; i++)
            pack(&rspan(&g)->base, &sp[i]);
        request_of(sp, N, &req);
        fl_span_batch_t *b = NULL;
        assert_int_equal(decode_both(req.data, req.len, 0, &b), FL_OK);
        spans_seen += b->n_spans + b->rejected;
        assert_int_equal(b->n_spans + b->rejected, N);
        fl_span_batch_free(b);
        fl_buf_dispose(&req);

        for (int m = 0; m < 20; m++) {
            fl_buf_t *s = &sp[below(&g, N)], mut;
            fl_buf_init(&mut, 0);
            size_t at = s->len ? below(&g, s->len) : 0;
            switch (below(&g, 4)) {
            case 0: /* one byte changed */
                fl_buf_append(&mut, s->data, s->len);
                if (mut.len)
                    mut.data[at] = (uint8_t)rnd(&g);
                break;
            case 1: { /* a range repeated */
                size_t n = below(&g, s->len - at + 1);
                fl_buf_append(&mut, s->data, at + n);
                fl_buf_append(&mut, s->data + at, s->len - at);
                break;
            }
            case 2: /* cut short */
                fl_buf_append(&mut, s->data, at);
                break;
            default: { /* bytes inserted */
                fl_buf_append(&mut, s->data, at);
                for (size_t k = below(&g, 3) + 1; k > 0; k--)
                    fl_buf_putc(&mut, (int)(rnd(&g) & 0xff));
                fl_buf_append(&mut, s->data + at, s->len - at);
                break;
            }
            }
            request_of_one(mut.data, mut.len, &req);
            if (decode_both(req.data, req.len, 1, NULL) == FL_OK)
                accepted++;
            else
                refused++;
            fl_buf_dispose(&req);
            fl_buf_dispose(&mut);
        }
        for (size_t i = 0; i < N; i++)
            fl_buf_dispose(&sp[i]);
    }
    fl_arena_free(g.a);
    /* Both kinds of outcome were exercised. */
    assert_int_equal(spans_seen, (size_t)rounds * 6);
    assert_true(accepted > (size_t)rounds * 2);
    assert_true(refused > (size_t)rounds * 2);
}

/* ---------------------------------------------------------------- chosen encodings */

#define SPAN_IDS                                                                                   \
    "\x0a\x10\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"                     \
    "\x12\x08\x01\x02\x03\x04\x05\x06\x07\x08"

/* A request of one span: the ids above, then the given fields; decoded both ways (the
 * outcomes must agree), the wire decoder's status returned, its batch in *out when OK. */
static int decode_span(const char *fields, size_t n, fl_span_batch_t **out)
{
    fl_buf_t s, req;
    fl_buf_init(&s, 0);
    fl_buf_append(&s, SPAN_IDS, 28);
    fl_buf_append(&s, fields, n);
    request_of_one(s.data, s.len, &req);
    int rc = decode_both(req.data, req.len, 1, out);
    fl_buf_dispose(&s);
    fl_buf_dispose(&req);
    return rc;
}

/* The span is accepted alike, as one span. */
static fl_span_batch_t *one(const char *fields, size_t n)
{
    fl_span_batch_t *b = NULL;
    assert_int_equal(decode_span(fields, n, &b), FL_OK);
    assert_int_equal(b->n_spans, 1);
    return b;
}

static int refused(const char *fields, size_t n)
{
    return decode_span(fields, n, NULL) == FL_ERR_DECODE;
}

#define ONE(lit) one(lit, sizeof(lit) - 1)
#define REFUSED(lit) refused(lit, sizeof(lit) - 1)

static void test_receiver_wire_chosen(void **state)
{
    (void)state;
    fl_span_batch_t *b;
    /* status twice: protobuf-c merges the two (the wire decoder hands the span to it) */
    b = ONE("\x7a\x02\x18\x02\x7a\x03\x12\x01x");
    assert_true(fl_str_eq(b->spans[0].status_message, fl_str("x")));
    fl_span_batch_free(b);
    /* KeyValue.value twice (merged by protobuf-c too) */
    b = ONE("\x4a\x0b\x0a\x01k\x12\x02\x18\x07\x12\x02\x18\x09");
    assert_int_equal(b->spans[0].attrs.items[0].value.u.i, 9);
    fl_span_batch_free(b);
    /* a oneof: the last member sent wins */
    b = ONE("\x4a\x0d\x0a\x01k\x12\x08\x0a\x02hi\x18\x05\x10\x01");
    assert_int_equal(b->spans[0].attrs.items[0].value.type, FL_VAL_BOOL);
    fl_span_batch_free(b);
    b = ONE("\x4a\x07\x0a\x01k\x12\x02\x40\x05");
    assert_int_equal(b->spans[0].attrs.items[0].value.type, FL_VAL_EMPTY); /* strindex */
    fl_span_batch_free(b);
    /* protobuf-c reads a bool of any wire type: here a length-delimited one, length 1 */
    b = ONE("\x4a\x08\x0a\x01k\x12\x03\x12\x01\x00");
    assert_int_equal(b->spans[0].attrs.items[0].value.type, FL_VAL_BOOL);
    assert_int_equal(b->spans[0].attrs.items[0].value.u.b, 1);
    fl_span_batch_free(b);
    /* unknown fields of every wire type, and a name field sent twice (last wins) */
    b = ONE("\x85\x00\x01\x02\x03\x04" /* field 0 spelled in two bytes: unknown */
            "\x88\x01\x05\x91\x01\x01\x02\x03\x04\x05\x06\x07\x08\x9a\x01\x01z\xa5\x01\x01\x02"
            "\x03\x04\x2a\x01"
            "a\x2a\x02"
            "bc");
    assert_true(fl_str_eq(b->spans[0].name, fl_str("bc")));
    fl_span_batch_free(b);
    /* a five-byte key naming an unknown field is skipped; bool from a 10-byte varint */
    b = ONE("\xf8\xff\xff\xff\x0f\x01\x4a\x10\x0a\x01k\x12\x0b\x10"
            "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02");
    assert_int_equal(b->spans[0].attrs.items[0].value.u.b, 1);
    fl_span_batch_free(b);
    /* an embedded NUL: the wire decoder keeps the whole name (protobuf-c cuts it, which is
     * all the comparison allows for) */
    b = ONE("\x2a\003a\0b"); /* name: "a", NUL, "b" */
    assert_int_equal(b->spans[0].name.len, 3);
    fl_span_batch_free(b);

    /* refused alike: wrong wire types of known fields, a six-byte key, a group, a key whose
     * first byte names field 0, an over-long length prefix */
    assert_true(REFUSED("\x32\x01\x00"));                     /* kind as length-delimited */
    assert_true(REFUSED("\x39\x00"));                         /* start time cut short */
    assert_true(REFUSED("\x38\x01"));                         /* start time as varint */
    assert_true(REFUSED("\x85\x01\x01\x00\x00"));             /* flags (fixed32) cut short */
    assert_true(REFUSED("\x80\x01\x01"));                     /* flags as varint */
    assert_true(REFUSED("\x4a\x02\x10\x01"));                 /* KeyValue.value as varint */
    assert_true(REFUSED("\x4a\x04\x12\x02\x22\x00"));         /* double_value as bytes */
    assert_true(REFUSED("\x7a\x02\x18\x00\x7a\x02\x1a\x00")); /* code as bytes (merged) */
    assert_true(REFUSED("\xf8\xff\xff\xff\xff\x0f\x01"));     /* six-byte key */
    assert_true(REFUSED("\xfb\x01"));                         /* start group */
    assert_true(REFUSED("\x05\x00\x00\x00\x00"));             /* field 0 */
    assert_true(REFUSED("\x2a\x80\x80\x80\x80\x80\x00"));     /* six-byte length */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receiver_wire_random),
        cmocka_unit_test(test_receiver_wire_chosen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
