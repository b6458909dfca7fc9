/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks, RFC 3339 formatting and parsing, duration and size parsing. */
#include <faultline/common.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

uint64_t fl_time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fl_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

char *fl_time_format(uint64_t unix_ns, char out[40])
{
    time_t secs = (time_t)(unix_ns / 1000000000ull);
    uint32_t frac = (uint32_t)(unix_ns % 1000000000ull);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        char f[11];
        snprintf(f, sizeof(f), ".%09u", frac);
        size_t fl = strlen(f);
        while (fl > 1 && f[fl - 1] == '0')
            fl--;
        f[fl] = 0;
        memcpy(out + n, f, fl);
        n += fl;
    }
    out[n++] = 'Z';
    out[n] = 0;
    return out;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 for a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int fl_time_parse(const char *s, uint64_t *unix_ns)
{
    if (!s || !*s)
        return FL_ERR_INVALID;
    const char *p = s;
    int all_digits = 1;
    for (const char *q = s; *q; q++)
        if (!isdigit((unsigned char)*q))
            all_digits = 0;
    if (all_digits) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end)
            return FL_ERR_INVALID;
        *unix_ns = v;
        return FL_OK;
    }
    int Y, M, D, h, m, sec;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
        return FL_ERR_INVALID;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return FL_ERR_INVALID;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m) || *p++ != ':' || digits(&p, 2, &sec))
        return FL_ERR_INVALID;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return FL_ERR_INVALID;
    uint64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (isdigit((unsigned char)*p)) {
            if (nd < 9) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                nd++;
            }
            p++;
        }
        if (nd == 0)
            return FL_ERR_INVALID;
        while (nd++ < 9)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return FL_ERR_INVALID;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return FL_ERR_INVALID;
    }
    if (*p)
        return FL_ERR_INVALID;
    int64_t secs =
        days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec - off;
    if (secs < 0)
        return FL_ERR_INVALID;
    *unix_ns = (uint64_t)secs * 1000000000ull + frac;
    return FL_OK;
}

static int number_with_suffix(const char *s, double *num, const char **suffix)
{
    if (!s || !*s)
        return FL_ERR_INVALID;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || v != v)
        return FL_ERR_INVALID;
    while (*end == ' ')
        end++;
    *num = v;
    *suffix = end;
    return FL_OK;
}

int fl_duration_parse(const char *s, uint64_t *ns)
{
    double v;
    const char *u;
    if (number_with_suffix(s, &v, &u) != FL_OK)
        return FL_ERR_INVALID;
    double mul;
    if (!*u || !strcmp(u, "s"))
        mul = 1e9;
    else if (!strcmp(u, "ns"))
        mul = 1;
    else if (!strcmp(u, "us"))
        mul = 1e3;
    else if (!strcmp(u, "ms"))
        mul = 1e6;
    else if (!strcmp(u, "m"))
        mul = 60e9;
    else if (!strcmp(u, "h"))
        mul = 3600e9;
    else if (!strcmp(u, "d"))
        mul = 86400e9;
    else if (!strcmp(u, "w"))
        mul = 7 * 86400e9;
    else
        return FL_ERR_INVALID;
    double r = v * mul;
    if (r > 1.8e19)
        return FL_ERR_INVALID;
    *ns = (uint64_t)r;
    return FL_OK;
}

int fl_size_parse(const char *s, uint64_t *bytes)
{
    double v;
    const char *u;
    if (number_with_suffix(s, &v, &u) != FL_OK)
        return FL_ERR_INVALID;
    static const struct {
        const char *name;
        double mul;
    } units[] = {{"", 1},           {"B", 1},       {"K", 1024},        {"KB", 1e3},
                 {"KiB", 1024},     {"M", 1048576}, {"MB", 1e6},        {"MiB", 1048576},
                 {"G", 1073741824}, {"GB", 1e9},    {"GiB", 1073741824}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(u, units[i].name) == 0) {
            double r = v * units[i].mul;
            if (r > 1.8e19)
                return FL_ERR_INVALID;
            *bytes = (uint64_t)r;
            return FL_OK;
        }
    }
    return FL_ERR_INVALID;
}
