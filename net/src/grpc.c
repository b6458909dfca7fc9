/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC wire helpers: content-type test, grpc-timeout parsing, grpc-message percent
 * encoding, and unpadded base64 for grpc-status-details-bin. */
#include "net_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int fl__is_grpc_ctype(const char *ct)
{
    if (!ct || strncasecmp(ct, "application/grpc", 16) != 0)
        return 0;
    return ct[16] == 0 || ct[16] == '+' || ct[16] == ';';
}

int64_t fl__grpc_parse_timeout(const char *v)
{
    /* TimeoutValue is 1 to 8 ASCII digits, followed by one unit letter. */
    if (!v)
        return -1;
    size_t n = strlen(v);
    if (n < 2 || n > 9)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H':
        return x * 3600000;
    case 'M':
        return x * 60000;
    case 'S':
        return x * 1000;
    case 'm':
        return x;
    case 'u':
        return (x + 999) / 1000;
    case 'n':
        return (x + 999999) / 1000000;
    default:
        return -1;
    }
}

char *fl__grpc_pct_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = 0;
    return out;
}

void fl__grpc_pct_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        int hi, lo;
        if (p[0] == '%' && (hi = fl_hex_value(p[1])) >= 0 && (lo = fl_hex_value(p[2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

char *fl__b64_nopad(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    size_t len = fl_base64_encode(p, n, out);
    while (len && out[len - 1] == '=')
        out[--len] = 0;
    return out;
}
