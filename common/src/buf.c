/* SPDX-License-Identifier: Apache-2.0 */
/* Growable byte buffer with a hard cap. */
#include <faultline/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fl_buf_init(fl_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void fl_buf_dispose(fl_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int fl_buf_reserve(fl_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return FL_ERR_LIMIT;
    size_t need = b->len + extra + 1; /* room for the trailing NUL */
    if (b->max && b->len + extra > b->max)
        return FL_ERR_LIMIT;
    if (need <= b->cap)
        return FL_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max && cap > b->max + 1)
        cap = b->max + 1 > need ? b->max + 1 : need;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return FL_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return FL_OK;
}

int fl_buf_append(fl_buf_t *b, const void *data, size_t len)
{
    int rc = fl_buf_reserve(b, len);
    if (rc != FL_OK)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return FL_OK;
}

int fl_buf_puts(fl_buf_t *b, const char *s)
{
    return fl_buf_append(b, s, strlen(s));
}

int fl_buf_putc(fl_buf_t *b, int c)
{
    uint8_t ch = (uint8_t)c;
    return fl_buf_append(b, &ch, 1);
}

int fl_buf_vprintf(fl_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    int rc;
    if (n < 0) {
        rc = FL_ERR_INVALID;
    } else if ((size_t)n < sizeof(tmp)) {
        rc = fl_buf_append(b, tmp, (size_t)n);
    } else {
        rc = fl_buf_reserve(b, (size_t)n);
        if (rc == FL_OK) {
            vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
            b->len += (size_t)n;
        }
    }
    va_end(ap2);
    return rc;
}

int fl_buf_printf(fl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fl_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void fl_buf_consume(fl_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = 0;
}

void fl_buf_reset(fl_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

uint8_t *fl_buf_take(fl_buf_t *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
