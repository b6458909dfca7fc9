/* SPDX-License-Identifier: Apache-2.0 */
/* Structured one-line logs on stderr: logfmt by default, JSON objects on request. */
#include <faultline/common.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int fl_log_level_current = FL_LOG_INFO;
static int log_json;

static const char *level_names[] = {"error", "warn", "info", "debug", "trace"};

int fl_log_set_level_name(const char *name)
{
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            fl_log_level_current = i;
            return FL_OK;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        fl_log_level_current = FL_LOG_WARN;
        return FL_OK;
    }
    return FL_ERR_INVALID;
}

void fl_log_set_json(int on)
{
    log_json = on;
}

/* The message is the text before the first " key=" token; the rest are fields. */
static size_t msg_end(const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p != ' ')
            continue;
        const char *q = p + 1;
        while (*q && (*q == '_' || *q == '.' || *q == '-' || (*q >= 'a' && *q <= 'z') ||
                      (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
            q++;
        if (*q == '=' && q > p + 1)
            return (size_t)(p - s);
    }
    return strlen(s);
}

void fl_log_write(int level, const char *mod, const char *fmt, ...)
{
    char text[2048], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    fl_time_format(fl_time_now_ns(), ts);
    /* Trim to milliseconds for readability: 2026-11-30T03:43:47.123Z */
    char *dot = strchr(ts, '.');
    if (dot && strlen(dot) > 5) {
        dot[4] = 'Z';
        dot[5] = 0;
    }
    if (level < 0)
        level = 0;
    if (level > 4)
        level = 4;
    size_t m = msg_end(text);
    fl_buf_t b;
    fl_buf_init(&b, 0);
    if (log_json) {
        fl_jw_t w;
        fl_jw_init(&w, &b);
        fl_jw_obj_begin(&w);
        fl_jw_key(&w, "ts");
        fl_jw_str(&w, ts);
        fl_jw_key(&w, "level");
        fl_jw_str(&w, level_names[level]);
        fl_jw_key(&w, "mod");
        fl_jw_str(&w, mod);
        fl_jw_key(&w, "msg");
        fl_jw_strn(&w, text, m);
        /* fields: key=value, value may be "quoted" */
        const char *p = text + m;
        while (*p) {
            while (*p == ' ')
                p++;
            const char *eq = strchr(p, '=');
            if (!*p || !eq)
                break;
            char key[64];
            size_t kl = (size_t)(eq - p) < sizeof(key) - 1 ? (size_t)(eq - p) : sizeof(key) - 1;
            memcpy(key, p, kl);
            key[kl] = 0;
            const char *v = eq + 1, *ve;
            if (*v == '"') {
                v++;
                ve = strchr(v, '"');
                if (!ve)
                    ve = v + strlen(v);
                p = *ve ? ve + 1 : ve;
            } else {
                ve = strchr(v, ' ');
                if (!ve)
                    ve = v + strlen(v);
                p = ve;
            }
            fl_jw_key(&w, key);
            fl_jw_strn(&w, v, (size_t)(ve - v));
        }
        fl_jw_obj_end(&w);
    } else {
        fl_buf_printf(&b, "ts=%s level=%s mod=%s msg=", ts, level_names[level], mod);
        fl_json_escape(&b, text, m);
        fl_buf_append(&b, text + m, strlen(text + m));
    }
    fl_buf_putc(&b, '\n');
    if (b.data) {
        ssize_t wr = write(STDERR_FILENO, b.data, b.len);
        (void)wr;
    }
    fl_buf_dispose(&b);
}
