/* SPDX-License-Identifier: Apache-2.0 */
/* String views. */
#include <faultline/common.h>
#include <string.h>
#include <strings.h>

fl_str_t fl_str(const char *s)
{
    fl_str_t r = {s ? s : "", s ? strlen(s) : 0};
    return r;
}

int fl_str_eq(fl_str_t a, fl_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int fl_str_ieq_cstr(fl_str_t a, const char *b)
{
    size_t n = strlen(b);
    return a.len == n && (n == 0 || strncasecmp(a.ptr, b, n) == 0);
}
