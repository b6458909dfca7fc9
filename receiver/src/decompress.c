/* SPDX-License-Identifier: Apache-2.0 */
/* Request body decompression: gzip, deflate/zlib, zstd, snappy (block and framed). Every
 * decoder writes into the output in bounded steps and stops as soon as the output would
 * pass max_out, so a decompression bomb costs at most max_out bytes. */
#include "receiver_int.h"

#include <pthread.h>
#include <snappy-c.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

enum codec { C_IDENTITY, C_GZIP, C_DEFLATE, C_ZSTD, C_SNAPPY, C_SNAPPY_FRAMED, C_UNKNOWN };

/* Trim blanks and match case-insensitively. */
static enum codec codec_of(const char *enc)
{
    if (!enc)
        return C_IDENTITY;
    while (*enc == ' ' || *enc == '\t')
        enc++;
    size_t n = strlen(enc);
    while (n && (enc[n - 1] == ' ' || enc[n - 1] == '\t'))
        n--;
#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(enc, lit, n) == 0)
    if (n == 0 || IS("identity"))
        return C_IDENTITY;
    if (IS("gzip") || IS("x-gzip"))
        return C_GZIP;
    if (IS("deflate") || IS("zlib"))
        return C_DEFLATE;
    if (IS("zstd"))
        return C_ZSTD;
    if (IS("snappy"))
        return C_SNAPPY;
    if (IS("x-snappy-framed"))
        return C_SNAPPY_FRAMED;
#undef IS
    return C_UNKNOWN;
}

int fl_decompress_supported(const char *encoding)
{
    return codec_of(encoding) != C_UNKNOWN;
}

/* Room the decoder may fill next: at most one byte past what is still allowed (that byte
 * proves the limit was passed), growing geometrically. */
static int next_room(fl_buf_t *out, size_t produced, size_t max_out, size_t *room)
{
    size_t allowed = max_out - produced;
    size_t want = produced < 65536 ? 65536 : produced;
    if (want > allowed)
        want = allowed < SIZE_MAX ? allowed + 1 : allowed;
    if (want > (1u << 30))
        want = 1u << 30; /* zlib counts in uInt */
    int rc = fl_buf_reserve(out, want);
    if (rc != FL_OK)
        return rc;
    *room = want;
    return FL_OK;
}

static int too_large(char *err, size_t errlen, const char *name, size_t max_out)
{
    return fl__errf(err, errlen, FL_ERR_TOO_LARGE,
                    "%s: decompressed body larger than the %zu-byte limit", name, max_out);
}

static int zlib_inflate(enum codec codec, const uint8_t *in, size_t len, size_t max_out,
                        fl_buf_t *out, char *err, size_t errlen)
{
    const char *name = codec == C_GZIP ? "gzip" : "deflate";
    int window;
    if (codec == C_GZIP) {
        if (len < 2 || in[0] != 0x1f || in[1] != 0x8b)
            return fl__errf(err, errlen, FL_ERR_ENCODING, "gzip: invalid header");
        window = 16 + MAX_WBITS;
    } else {
        /* "deflate" in HTTP means zlib-wrapped, but raw deflate is common in the wild:
         * take it when the two header bytes are not a valid zlib header. */
        int zlib_hdr = len >= 2 && (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 &&
                       (((unsigned)in[0] << 8) | in[1]) % 31 == 0;
        window = zlib_hdr ? MAX_WBITS : -MAX_WBITS;
    }
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, window) != Z_OK)
        return fl__errf(err, errlen, FL_ERR_NOMEM, "%s: cannot initialise zlib", name);
    int rc = FL_OK;
    size_t produced = 0, pos = 0;
    for (;;) {
        size_t room;
        /* zlib counts input in uInt: feed at most 1 GiB at a time. */
        if (zs.avail_in == 0 && pos < len) {
            size_t feed = len - pos > (1u << 30) ? (1u << 30) : len - pos;
            zs.next_in = (Bytef *)(uintptr_t)(in + pos);
            zs.avail_in = (uInt)feed;
            pos += feed;
        }
        if ((rc = next_room(out, produced, max_out, &room)) != FL_OK) {
            rc = rc == FL_ERR_LIMIT ? too_large(err, errlen, name, max_out)
                                    : fl__errf(err, errlen, rc, "%s: out of memory", name);
            break;
        }
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        size_t got = room - zs.avail_out;
        out->len += got;
        out->data[out->len] = 0;
        produced += got;
        if (produced > max_out) {
            rc = too_large(err, errlen, name, max_out);
            break;
        }
        if (zr == Z_STREAM_END) {
            size_t rest = zs.avail_in + (len - pos);
            if (rest == 0)
                break;
            /* gzip allows several members back to back. */
            const uint8_t *nx = zs.next_in;
            if (codec == C_GZIP && rest >= 2 && nx[0] == 0x1f && nx[1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            rc = fl__errf(err, errlen, FL_ERR_ENCODING, "%s: unexpected data after the stream",
                          name);
            break;
        }
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_in == 0 && pos >= len) {
            rc = fl__errf(err, errlen, FL_ERR_ENCODING, "%s: unexpected end of compressed data",
                          name);
            break;
        }
        if (zr == Z_BUF_ERROR && got > 0)
            continue;
        if (zr == Z_MEM_ERROR) {
            rc = fl__errf(err, errlen, FL_ERR_NOMEM, "%s: out of memory", name);
            break;
        }
        rc = fl__errf(err, errlen, FL_ERR_ENCODING, "%s: %s", name,
                      zs.msg ? zs.msg : "corrupt data");
        break;
    }
    inflateEnd(&zs);
    return rc;
}

static int zstd_decode(const uint8_t *in, size_t len, size_t max_out, fl_buf_t *out, char *err,
                       size_t errlen)
{
    ZSTD_DCtx *z = ZSTD_createDCtx();
    if (!z)
        return fl__errf(err, errlen, FL_ERR_NOMEM, "zstd: out of memory");
    /* Cap the window (and so the decoder's memory) at 128 MiB, zstd's usual default. */
    ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax, 27);
    ZSTD_inBuffer ib = {in, len, 0};
    size_t produced = 0, last = 1;
    int rc = FL_OK;
    while (ib.pos < ib.size || last != 0) {
        size_t room;
        if ((rc = next_room(out, produced, max_out, &room)) != FL_OK) {
            rc = rc == FL_ERR_LIMIT ? too_large(err, errlen, "zstd", max_out)
                                    : fl__errf(err, errlen, rc, "zstd: out of memory");
            break;
        }
        ZSTD_outBuffer ob = {out->data + out->len, room, 0};
        size_t in_before = ib.pos;
        last = ZSTD_decompressStream(z, &ob, &ib);
        if (ZSTD_isError(last)) {
            rc = fl__errf(err, errlen, FL_ERR_ENCODING, "zstd: %s", ZSTD_getErrorName(last));
            break;
        }
        out->len += ob.pos;
        out->data[out->len] = 0;
        produced += ob.pos;
        if (produced > max_out) {
            rc = too_large(err, errlen, "zstd", max_out);
            break;
        }
        if (ib.pos == ib.size && last != 0 && ob.pos < ob.size && ib.pos == in_before) {
            rc = fl__errf(err, errlen, FL_ERR_ENCODING, "zstd: unexpected end of compressed data");
            break;
        }
    }
    ZSTD_freeDCtx(z);
    return rc;
}

static int snappy_block(const uint8_t *in, size_t len, size_t max_out, size_t produced,
                        fl_buf_t *out, const char *name, char *err, size_t errlen)
{
    size_t ulen;
    /* The block format states its length up front: check it before allocating. */
    if (snappy_uncompressed_length((const char *)in, len, &ulen) != SNAPPY_OK)
        return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: invalid block header", name);
    if (ulen > max_out - produced)
        return too_large(err, errlen, name, max_out);
    int rc = fl_buf_reserve(out, ulen);
    if (rc != FL_OK)
        return rc == FL_ERR_LIMIT ? too_large(err, errlen, name, max_out)
                                  : fl__errf(err, errlen, rc, "%s: out of memory", name);
    size_t got = ulen;
    if (snappy_uncompress((const char *)in, len, (char *)out->data + out->len, &got) != SNAPPY_OK ||
        got != ulen)
        return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: corrupt data", name);
    out->len += got;
    out->data[out->len] = 0;
    return FL_OK;
}

/* CRC-32C (Castagnoli), as the snappy framing format checksums each chunk. */
static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    pthread_once(&crc32c_once, crc32c_init);
    for (size_t i = 0; i < n; i++)
        c = crc32c_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t snappy_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static const uint8_t snappy_stream_id[10] = {0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y'};

static int snappy_framed(const uint8_t *in, size_t len, size_t max_out, fl_buf_t *out, char *err,
                         size_t errlen)
{
    const char *name = "snappy (framed)";
    size_t i = 0, produced = 0;
    if (len < sizeof(snappy_stream_id) || memcmp(in, snappy_stream_id, 10) != 0)
        return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: missing stream identifier", name);
    while (i < len) {
        if (len - i < 4)
            return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: truncated chunk header", name);
        unsigned type = in[i];
        size_t clen = (size_t)in[i + 1] | (size_t)in[i + 2] << 8 | (size_t)in[i + 3] << 16;
        i += 4;
        if (clen > len - i)
            return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: truncated chunk", name);
        const uint8_t *c = in + i;
        i += clen;
        if (type == 0x00 || type == 0x01) {
            if (clen < 4)
                return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: chunk too short", name);
            uint32_t want =
                (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
            size_t start = out->len;
            if (type == 0x00) {
                int rc = snappy_block(c + 4, clen - 4, max_out, produced, out, name, err, errlen);
                if (rc != FL_OK)
                    return rc;
            } else {
                if (clen - 4 > max_out - produced)
                    return too_large(err, errlen, name, max_out);
                int rc = fl_buf_append(out, c + 4, clen - 4);
                if (rc != FL_OK)
                    return rc == FL_ERR_LIMIT
                               ? too_large(err, errlen, name, max_out)
                               : fl__errf(err, errlen, rc, "%s: out of memory", name);
            }
            produced += out->len - start;
            if (snappy_mask(crc32c(out->data + start, out->len - start)) != want)
                return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: checksum mismatch", name);
        } else if (type == 0xff) {
            if (clen != 6 || memcmp(c, snappy_stream_id + 4, 6) != 0)
                return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: bad stream identifier", name);
        } else if (type >= 0x02 && type <= 0x7f) {
            return fl__errf(err, errlen, FL_ERR_ENCODING, "%s: reserved chunk type 0x%02x", name,
                            type);
        }
        /* 0x80..0xfe: padding and skippable chunks. */
    }
    return FL_OK;
}

int fl_decompress(const char *encoding, const uint8_t *in, size_t len, size_t max_out,
                  fl_buf_t *out, char *err, size_t errlen)
{
    enum codec codec = codec_of(encoding);
    if (!out || (!in && len))
        return fl__errf(err, errlen, FL_ERR_INVALID, "invalid arguments");
    if (codec == C_UNKNOWN)
        return fl__errf(err, errlen, FL_ERR_ENCODING, "unsupported Content-Encoding: %s", encoding);
    if (codec == C_IDENTITY || len == 0) {
        /* An empty body is an empty body, whatever it claims to be compressed with. */
        if (len > max_out)
            return fl__errf(err, errlen, FL_ERR_TOO_LARGE,
                            "body of %zu bytes is larger than the %zu-byte limit", len, max_out);
        int rc = fl_buf_append(out, in, len);
        if (rc == FL_ERR_LIMIT)
            return too_large(err, errlen, "body", max_out);
        return rc == FL_OK ? FL_OK : fl__errf(err, errlen, rc, "out of memory");
    }
    switch (codec) {
    case C_GZIP:
    case C_DEFLATE:
        return zlib_inflate(codec, in, len, max_out, out, err, errlen);
    case C_ZSTD:
        return zstd_decode(in, len, max_out, out, err, errlen);
    case C_SNAPPY:
        /* As the Collector does: the framed format when it starts with the stream
         * identifier, the block format otherwise. */
        if (len >= sizeof(snappy_stream_id) && memcmp(in, snappy_stream_id, 10) == 0)
            return snappy_framed(in, len, max_out, out, err, errlen);
        return snappy_block(in, len, max_out, 0, out, "snappy", err, errlen);
    case C_SNAPPY_FRAMED:
        return snappy_framed(in, len, max_out, out, err, errlen);
    default:
        return fl__errf(err, errlen, FL_ERR_ENCODING, "unsupported Content-Encoding: %s", encoding);
    }
}
