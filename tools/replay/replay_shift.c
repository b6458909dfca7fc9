/* SPDX-License-Identifier: Apache-2.0 */
/* fl_replaylib: --shift-time. Rewrites OTLP timestamps in captured bodies without decoding
 * them into objects: a protobuf wire-format walk that patches fixed64 fields in place, and a
 * JSON token scan that replaces only the timestamp values; zlib and gRPC framing around them. */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#define MAX_INFLATE ((size_t)512 << 20)
#define JSON_MAX_DEPTH 512

uint64_t fl_replay_info_newest(const fl_replay_info_t *info)
{
    return info->max_end_ns ? info->max_end_ns : info->max_any_ns;
}

static uint64_t shift_value(uint64_t v, int64_t delta)
{
    if (v == 0 || delta == 0)
        return v;
    if (delta > 0) {
        uint64_t d = (uint64_t)delta;
        return v > UINT64_MAX - d ? UINT64_MAX : v + d;
    }
    uint64_t d = (uint64_t)(-(delta + 1)) + 1; /* |delta| without overflow at INT64_MIN */
    return v <= d ? 1 : v - d;
}

/* ---------------------------------------------------------------- protobuf */

/* Message levels of the OTLP trace and logs requests. */
enum pb_level {
    PB_SKIP = -1,
    PB_REQUEST = 0,
    PB_RESOURCE_SPANS,
    PB_SCOPE_SPANS,
    PB_SPAN,
    PB_EVENT,
    PB_RESOURCE_LOGS,
    PB_SCOPE_LOGS,
    PB_LOG_RECORD
};

enum pb_time { PB_TIME_NONE = 0, PB_TIME_END, PB_TIME_OTHER };

typedef struct pb_walk {
    int signal;
    int64_t delta;
    fl_replay_info_t *info;
    char *err;
    size_t errlen;
} pb_walk_t;

static int child_level(int signal, int level, uint64_t field)
{
    switch (level) {
    case PB_REQUEST:
        if (field != 1)
            return PB_SKIP;
        return signal == FL_REPLAY_LOGS ? PB_RESOURCE_LOGS : PB_RESOURCE_SPANS;
    case PB_RESOURCE_SPANS: /* 2: scope_spans, 1000: deprecated instrumentation_library_spans */
        return field == 2 || field == 1000 ? PB_SCOPE_SPANS : PB_SKIP;
    case PB_SCOPE_SPANS:
        return field == 2 ? PB_SPAN : PB_SKIP;
    case PB_SPAN:
        return field == 11 ? PB_EVENT : PB_SKIP;
    case PB_RESOURCE_LOGS:
        return field == 2 || field == 1000 ? PB_SCOPE_LOGS : PB_SKIP;
    case PB_SCOPE_LOGS:
        return field == 2 ? PB_LOG_RECORD : PB_SKIP;
    default:
        return PB_SKIP;
    }
}

static int time_field(int level, uint64_t field)
{
    if (level == PB_SPAN)
        return field == 8 ? PB_TIME_END : field == 7 ? PB_TIME_OTHER : PB_TIME_NONE;
    if (level == PB_EVENT)
        return field == 1 ? PB_TIME_OTHER : PB_TIME_NONE;
    if (level == PB_LOG_RECORD)
        return field == 1 || field == 11 ? PB_TIME_OTHER : PB_TIME_NONE;
    return PB_TIME_NONE;
}

static int read_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    uint64_t r = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (*off >= len)
            return -1;
        b = p[(*off)++];
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static void patch_time(pb_walk_t *w, uint8_t *p, int kind)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    if (v == 0)
        return;
    v = shift_value(v, w->delta);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    w->info->n_times++;
    if (v > w->info->max_any_ns)
        w->info->max_any_ns = v;
    if (kind == PB_TIME_END && v > w->info->max_end_ns)
        w->info->max_end_ns = v;
}

static int pb_walk(pb_walk_t *w, uint8_t *p, size_t len, int level, size_t base)
{
    size_t off = 0;

    if (level == PB_SPAN || level == PB_LOG_RECORD)
        w->info->n_spans++;
    while (off < len) {
        uint64_t tag, field, v;
        size_t at = off;
        int wt;

        if (read_varint(p, len, &off, &tag) != 0 || (field = tag >> 3) == 0) {
            snprintf(w->err, w->errlen, "protobuf: bad field tag at byte %zu", base + at);
            return FL_ERR_DECODE;
        }
        wt = (int)(tag & 7);
        switch (wt) {
        case 0:
            if (read_varint(p, len, &off, &v) != 0)
                goto truncated;
            break;
        case 1:
            if (len - off < 8)
                goto truncated;
            if (time_field(level, field) != PB_TIME_NONE)
                patch_time(w, p + off, time_field(level, field));
            off += 8;
            break;
        case 2: {
            int child;
            if (read_varint(p, len, &off, &v) != 0 || v > len - off)
                goto truncated;
            child = child_level(w->signal, level, field);
            if (child != PB_SKIP) {
                int rc = pb_walk(w, p + off, (size_t)v, child, base + off);
                if (rc != FL_OK)
                    return rc;
            }
            off += (size_t)v;
            break;
        }
        case 5:
            if (len - off < 4)
                goto truncated;
            off += 4;
            break;
        default:
            snprintf(w->err, w->errlen, "protobuf: unsupported wire type %d at byte %zu", wt,
                     base + at);
            return FL_ERR_DECODE;
        }
    }
    return FL_OK;
truncated:
    snprintf(w->err, w->errlen, "protobuf: truncated field at byte %zu", base + off);
    return FL_ERR_DECODE;
}

int fl_replay_pb_shift(uint8_t *msg, size_t len, int signal, int64_t delta, fl_replay_info_t *info,
                       char *err, size_t errlen)
{
    pb_walk_t w = {signal, delta, info, err, errlen};

    if (signal != FL_REPLAY_TRACES && signal != FL_REPLAY_LOGS) {
        snprintf(err, errlen, "protobuf timestamps can be shifted in traces and logs only");
        return FL_ERR_UNSUPPORTED;
    }
    return pb_walk(&w, msg, len, PB_REQUEST, 0);
}

/* ---------------------------------------------------------------- JSON */

static int json_time_key(const char *k, size_t n, int *is_end)
{
    static const char *const keys[] = {
        "startTimeUnixNano",    "endTimeUnixNano",    "timeUnixNano",   "observedTimeUnixNano",
        "start_time_unix_nano", "end_time_unix_nano", "time_unix_nano", "observed_time_unix_nano"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strlen(keys[i]) == n && !memcmp(keys[i], k, n)) {
            *is_end = (i == 1 || i == 5);
            return 1;
        }
    }
    return 0;
}

/* Digits only, fitting uint64. */
static int digits_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

typedef struct json_shift {
    const char *in;
    fl_buf_t *out;
    size_t copied; /* input bytes [0, copied) are already in out */
    int64_t delta;
    fl_replay_info_t *info;
} json_shift_t;

/* Replace the digits in[s, s+n) by the shifted value. */
static int json_replace(json_shift_t *j, size_t s, size_t n, int is_end)
{
    uint64_t v;
    char num[24];
    int nl;

    if (!digits_u64(j->in + s, n, &v) || v == 0)
        return FL_OK;
    v = shift_value(v, j->delta);
    j->info->n_times++;
    if (v > j->info->max_any_ns)
        j->info->max_any_ns = v;
    if (is_end && v > j->info->max_end_ns)
        j->info->max_end_ns = v;
    if (!j->out)
        return FL_OK;
    nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    if (fl_buf_append(j->out, j->in + j->copied, s - j->copied) != FL_OK ||
        fl_buf_append(j->out, num, (size_t)nl) != FL_OK)
        return FL_ERR_NOMEM;
    j->copied = s + n;
    return FL_OK;
}

int fl_replay_json_shift(const char *in, size_t len, int64_t delta, fl_buf_t *out,
                         fl_replay_info_t *info, char *err, size_t errlen)
{
    json_shift_t j = {in, out, 0, delta, info};
    char stack[JSON_MAX_DEPTH];
    int depth = 0, key_next = 0, target = 0, is_end = 0, rc;
    size_t i = 0;

    while (i < len) {
        char c = in[i];
        switch (c) {
        case ' ':
        case '\t':
        case '\r':
        case '\n':
        case ':':
            i++;
            break;
        case '{':
        case '[':
            if (depth == JSON_MAX_DEPTH) {
                snprintf(err, errlen, "JSON: nested deeper than %d at byte %zu", JSON_MAX_DEPTH, i);
                return FL_ERR_DECODE;
            }
            stack[depth++] = c;
            key_next = (c == '{');
            target = 0;
            i++;
            break;
        case '}':
        case ']':
            if (depth == 0 || stack[depth - 1] != (c == '}' ? '{' : '[')) {
                snprintf(err, errlen, "JSON: unbalanced '%c' at byte %zu", c, i);
                return FL_ERR_DECODE;
            }
            depth--;
            key_next = 0;
            target = 0;
            i++;
            break;
        case ',':
            key_next = depth > 0 && stack[depth - 1] == '{';
            i++;
            break;
        case '"': {
            size_t s = ++i;
            while (i < len && in[i] != '"')
                i += in[i] == '\\' ? 2 : 1;
            if (i >= len) {
                snprintf(err, errlen, "JSON: unterminated string starting at byte %zu", s - 1);
                return FL_ERR_DECODE;
            }
            if (key_next) {
                target = json_time_key(in + s, i - s, &is_end);
                if (target && is_end)
                    info->n_spans++; /* every span has exactly one end time */
                key_next = 0;
            } else {
                if (target && (rc = json_replace(&j, s, i - s, is_end)) != FL_OK)
                    goto oom;
                target = 0;
            }
            i++;
            break;
        }
        default: {
            size_t s = i;
            while (i < len && !strchr(" \t\r\n,:]}[{\"", in[i]))
                i++;
            if (target && (rc = json_replace(&j, s, i - s, is_end)) != FL_OK)
                goto oom;
            target = 0;
            key_next = 0;
            break;
        }
        }
    }
    if (depth != 0) {
        snprintf(err, errlen, "JSON: %d unclosed container%s at end of input", depth,
                 depth > 1 ? "s" : "");
        return FL_ERR_DECODE;
    }
    if (out && fl_buf_append(out, in + j.copied, len - j.copied) != FL_OK)
        goto oom;
    return FL_OK;
oom:
    snprintf(err, errlen, "out of memory");
    return FL_ERR_NOMEM;
}

/* ---------------------------------------------------------------- zlib */

int fl_replay_inflate(const uint8_t *in, size_t len, size_t max_out, fl_buf_t *out, int *kind,
                      char *err, size_t errlen)
{
    z_stream zs;
    int k, zrc, rc = FL_OK;

    if (len >= 2 && in[0] == 0x1f && in[1] == 0x8b)
        k = 31;
    else if (len >= 2 && (in[0] & 0x0f) == 8 && ((in[0] << 8) | in[1]) % 31 == 0)
        k = 15;
    else
        k = -15;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, k) != Z_OK) {
        snprintf(err, errlen, "zlib: cannot initialise");
        return FL_ERR_NOMEM;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len; /* bodies are far below 4 GiB (read_file caps them) */
    do {
        size_t before = out->len;
        if (fl_buf_reserve(out, 65536) != FL_OK) {
            rc = FL_ERR_NOMEM;
            snprintf(err, errlen, "out of memory while decompressing");
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = 65536;
        zrc = inflate(&zs, Z_NO_FLUSH);
        out->len = before + (65536 - zs.avail_out);
        out->data[out->len] = 0;
        if (out->len > max_out) {
            snprintf(err, errlen, "decompressed body larger than %zu bytes", max_out);
            rc = FL_ERR_TOO_LARGE;
            break;
        }
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) {
            snprintf(err, errlen, "compressed body is truncated");
            rc = FL_ERR_ENCODING;
            break;
        }
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            snprintf(err, errlen, "corrupt %s data: %s",
                     k == 31   ? "gzip"
                     : k == 15 ? "zlib"
                               : "deflate",
                     zs.msg ? zs.msg : "error");
            rc = FL_ERR_ENCODING;
            break;
        }
    } while (zrc != Z_STREAM_END);
    inflateEnd(&zs);
    if (kind)
        *kind = k;
    return rc;
}

int fl_replay_deflate(const uint8_t *in, size_t len, int kind, fl_buf_t *out)
{
    z_stream zs;
    uLong bound;
    int zrc;

    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kind, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return FL_ERR_NOMEM;
    bound = deflateBound(&zs, (uLong)len) + 32; /* + gzip header slack */
    if (fl_buf_reserve(out, bound) != FL_OK) {
        deflateEnd(&zs);
        return FL_ERR_NOMEM;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out->data + out->len;
    zs.avail_out = (uInt)bound;
    zrc = deflate(&zs, Z_FINISH);
    if (zrc == Z_STREAM_END) {
        out->len += bound - zs.avail_out;
        out->data[out->len] = 0;
    }
    deflateEnd(&zs);
    return zrc == Z_STREAM_END ? FL_OK : FL_ERR_NOMEM;
}

/* ---------------------------------------------------------------- whole bodies */

static int encoding_kind(const char *enc)
{
    if (!enc || !*enc || !strcasecmp(enc, "identity") || !strcasecmp(enc, "none"))
        return 0;
    if (!strcasecmp(enc, "gzip") || !strcasecmp(enc, "x-gzip") || !strcasecmp(enc, "deflate"))
        return 1;
    return -1;
}

/* One OTLP message as sent (possibly compressed): scan or shift it into out. */
static int process_message(const fl_replay_meta_t *m, const uint8_t *in, size_t len, int compressed,
                           int64_t delta, fl_buf_t *out, fl_replay_info_t *info, char *err,
                           size_t errlen)
{
    fl_buf_t plain, shifted;
    const uint8_t *msg = in;
    size_t msg_len = len;
    int kind = 0, rc = FL_OK;

    fl_buf_init(&plain, 0);
    fl_buf_init(&shifted, 0);
    if (compressed) {
        if (encoding_kind(m->encoding) < 0) {
            snprintf(err, errlen,
                     "cannot rewrite timestamps in a \"%s\"-encoded body "
                     "(gzip, deflate and identity only)",
                     m->encoding);
            rc = FL_ERR_UNSUPPORTED;
            goto out;
        }
        rc = fl_replay_inflate(in, len, MAX_INFLATE, &plain, &kind, err, errlen);
        if (rc != FL_OK)
            goto out;
        msg = plain.data;
        msg_len = plain.len;
    }
    if (m->format == FL_REPLAY_JSON) {
        rc = fl_replay_json_shift((const char *)msg, msg_len, delta, out ? &shifted : NULL, info,
                                  err, errlen);
    } else if (m->signal == FL_REPLAY_TRACES || m->signal == FL_REPLAY_LOGS) {
        /* The walk patches in place: work on a private copy. */
        rc = fl_buf_append(&shifted, msg, msg_len);
        if (rc == FL_OK)
            rc = fl_replay_pb_shift(shifted.data, shifted.len, m->signal, delta, info, err, errlen);
    } else if (out) {
        snprintf(err, errlen, "protobuf timestamps can be shifted in traces and logs only");
        rc = FL_ERR_UNSUPPORTED;
    }
    if (rc != FL_OK || !out)
        goto out;
    if (compressed)
        rc = fl_replay_deflate(shifted.data, shifted.len, kind, out);
    else
        rc = fl_buf_append(out, shifted.data, shifted.len);
    if (rc != FL_OK)
        snprintf(err, errlen, "out of memory");
out:
    fl_buf_dispose(&plain);
    fl_buf_dispose(&shifted);
    return rc;
}

/* 1 when the body is a sequence of gRPC length-prefixed messages that fills it exactly. */
static int grpc_framed(const uint8_t *b, size_t len)
{
    size_t off = 0;

    if (len < 5)
        return 0;
    while (off < len) {
        uint32_t l;
        if (len - off < 5 || b[off] > 1)
            return 0;
        l = (uint32_t)b[off + 1] << 24 | (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 8 |
            b[off + 4];
        if (l > len - off - 5)
            return 0;
        off += 5 + (size_t)l;
    }
    return 1;
}

static int process_body(const fl_replay_meta_t *m, const uint8_t *body, size_t len, int64_t delta,
                        fl_buf_t *out, fl_replay_info_t *info, char *err, size_t errlen)
{
    size_t off = 0;

    if (!m->grpc || !grpc_framed(body, len))
        return process_message(m, body, len, encoding_kind(m->encoding) != 0, delta, out, info, err,
                               errlen);
    while (off < len) {
        uint32_t l = (uint32_t)body[off + 1] << 24 | (uint32_t)body[off + 2] << 16 |
                     (uint32_t)body[off + 3] << 8 | body[off + 4];
        size_t hdr_at = out ? out->len : 0;
        int rc;

        if (out && fl_buf_append(out, body + off, 5) != FL_OK)
            return FL_ERR_NOMEM;
        rc = process_message(m, body + off + 5, l, body[off] == 1, delta, out, info, err, errlen);
        if (rc != FL_OK)
            return rc;
        if (out) {
            size_t nl = out->len - hdr_at - 5;
            if (nl > UINT32_MAX)
                return FL_ERR_LIMIT;
            out->data[hdr_at + 1] = (uint8_t)(nl >> 24);
            out->data[hdr_at + 2] = (uint8_t)(nl >> 16);
            out->data[hdr_at + 3] = (uint8_t)(nl >> 8);
            out->data[hdr_at + 4] = (uint8_t)nl;
        }
        off += 5 + (size_t)l;
    }
    return FL_OK;
}

int fl_replay_scan(const fl_replay_meta_t *m, const uint8_t *body, size_t len,
                   fl_replay_info_t *info, char *err, size_t errlen)
{
    return process_body(m, body, len, 0, NULL, info, err, errlen);
}

int fl_replay_shift(const fl_replay_meta_t *m, const uint8_t *body, size_t len, int64_t delta,
                    fl_buf_t *out, fl_replay_info_t *info, char *err, size_t errlen)
{
    return process_body(m, body, len, delta, out, info, err, errlen);
}
