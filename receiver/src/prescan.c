/* SPDX-License-Identifier: Apache-2.0 */
/* Protobuf pre-scan: walks the wire format once, before protobuf-c unpacks it, to cap the
 * nesting depth (protobuf-c recurses without a limit and AnyValue nests in itself). The
 * message descriptors say which fields are messages. */
#include "receiver_int.h"

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <string.h>

typedef struct pscan {
    int max_depth;
    /* first wire error of the top-level message */
    size_t err_off;
    const char *err_what;
    uint32_t err_field;
} pscan_t;

enum { SCAN_OK = 0, SCAN_NOT_MESSAGE = 1 };

static inline int read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The descriptor of field number num; protoc-c lists fields by number, so for the dense
 * OTLP messages it is found by index. */
static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d, unsigned num)
{
    if (num - 1 < d->n_fields && d->fields[num - 1].id == num)
        return &d->fields[num - 1];
    return protobuf_c_message_descriptor_get_field(d, num);
}

/* SCAN_OK when [p, p+len), a message of type desc, keeps its nested messages within the depth
 * cap, FL_ERR_TOO_DEEP otherwise. Only fields the schema declares as messages are descended
 * into (protobuf-c keeps unknown fields as opaque bytes, and strings and bytes are not
 * parsed), so the scan costs one pass over the tags. A malformed nested message stops the
 * scan of that message: the unpack that follows reports it. */
static int scan(pscan_t *ps, const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                int depth, size_t base)
{
    size_t i = 0;
    if (depth > ps->max_depth)
        return FL_ERR_TOO_DEEP;
    while (i < len) {
        size_t at = i;
        uint64_t key, v;
        if (read_varint(p, len, &i, &key) < 0) {
            if (depth == 1) {
                ps->err_off = base + at;
                ps->err_what = "truncated field key";
                ps->err_field = 0;
            }
            return SCAN_NOT_MESSAGE;
        }
        uint64_t field = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        const char *bad = NULL;
        if (field == 0 || field > 0x1FFFFFFF) {
            bad = "invalid field number";
        } else {
            switch (wt) {
            case 0:
                if (read_varint(p, len, &i, &v) < 0)
                    bad = "truncated varint";
                break;
            case 1:
                if (len - i < 8)
                    bad = "truncated 64-bit field";
                else
                    i += 8;
                break;
            case 5:
                if (len - i < 4)
                    bad = "truncated 32-bit field";
                else
                    i += 4;
                break;
            case 2:
                if (read_varint(p, len, &i, &v) < 0) {
                    bad = "truncated length";
                } else if (v > len - i) {
                    bad = "length-delimited field runs past the end of its message";
                } else {
                    /* A message nests at most one level per two bytes (a key and a
                     * length), so a short one cannot reach the cap: skip it. */
                    const ProtobufCFieldDescriptor *f =
                        (size_t)depth + v / 2 < (size_t)ps->max_depth
                            ? NULL
                            : field_of(desc, (unsigned)field);
                    if (v > 0 && f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                        scan(ps, f->descriptor, p + i, (size_t)v, depth + 1, base + i) ==
                            FL_ERR_TOO_DEEP)
                        return FL_ERR_TOO_DEEP;
                    i += (size_t)v;
                }
                break;
            default:
                bad = wt == 3 || wt == 4 ? "groups are not supported" : "invalid wire type";
                break;
            }
        }
        if (bad) {
            if (depth == 1) {
                ps->err_off = base + at;
                ps->err_what = bad;
                ps->err_field = (uint32_t)(field > 0x1FFFFFFF ? 0 : field);
            }
            return SCAN_NOT_MESSAGE;
        }
    }
    return SCAN_OK;
}

int fl__prescan(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                int max_depth, char *err, size_t errlen)
{
    pscan_t ps;
    memset(&ps, 0, sizeof(ps));
    ps.max_depth = max_depth > 0 ? max_depth : FL__DEFAULT_MAX_DEPTH;
    int r = scan(&ps, desc, buf, len, 1, 0);
    if (r == SCAN_OK)
        return FL_OK;
    if (r == FL_ERR_TOO_DEEP)
        return fl__errf(err, errlen, FL_ERR_TOO_DEEP,
                        "protobuf: messages nested deeper than %d levels", ps.max_depth);
    if (ps.err_field)
        return fl__errf(err, errlen, FL_ERR_DECODE, "protobuf: %s (field %u) at byte offset %zu",
                        ps.err_what, ps.err_field, ps.err_off);
    return fl__errf(err, errlen, FL_ERR_DECODE, "protobuf: %s at byte offset %zu", ps.err_what,
                    ps.err_off);
}

int fl_otlp_prescan(const uint8_t *buf, size_t len, int max_depth, char *err, size_t errlen)
{
    return fl__prescan(
        &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor, buf,
        len, max_depth, err, errlen);
}
