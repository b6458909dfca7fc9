/* SPDX-License-Identifier: Apache-2.0 */
/* --capture-dir: each accepted request becomes NNNNNNNN-<transport>.body (wire bytes) and
 * NNNNNNNN-<transport>.headers.json in the fixture layout, so a replay tool can send it
 * again. Files are written under a temporary name and renamed into place. */
#include "receiver_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fl__capture {
    char *dir;
    _Atomic uint64_t seq;
};

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char saved = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -1;
            buf[i] = saved;
        }
    }
    return 0;
}

fl__capture_t *fl__capture_new(const char *dir, char *err, size_t errlen)
{
    fl__capture_t *c = NULL;
    DIR *d = NULL;
    if (mkdir_p(dir) < 0) {
        fl__errf(err, errlen, FL_ERR_IO, "capture dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (access(dir, W_OK | X_OK) < 0) {
        fl__errf(err, errlen, FL_ERR_IO, "capture dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->dir = strdup(dir))) {
        fl__errf(err, errlen, FL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* Continue the numbering after what is already there, so a restart never overwrites an
     * earlier capture. */
    uint64_t max = 0;
    d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end;
            unsigned long long v = strtoull(e->d_name, &end, 10);
            if (end != e->d_name && *end == '-' && v > max)
                max = v;
        }
        closedir(d);
    }
    atomic_store(&c->seq, max);
    return c;
fail:
    if (c)
        free(c->dir);
    free(c);
    return NULL;
}

void fl__capture_free(fl__capture_t *c)
{
    if (!c)
        return;
    free(c->dir);
    free(c);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write parts to path via a temporary file and rename. */
static int write_atomic(const char *path, const uint8_t *a, size_t alen, const uint8_t *b,
                        size_t blen)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, a, alen) == 0 && write_all(fd, b, blen) == 0 ? 0 : -1;
    if (close(fd) < 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static void header_lower(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = 0;
}

int fl__capture_write(fl__capture_t *c, const char *transport, const fl_net_req_t *req,
                      const uint8_t *prefix, size_t prefix_len, const uint8_t *body, size_t len,
                      uint64_t *seq)
{
    char path[4200];
    fl_buf_t js;
    fl_jw_t w;
    uint64_t n = atomic_fetch_add(&c->seq, 1) + 1;
    int rc = FL_OK;
    fl_buf_init(&js, 0);

    snprintf(path, sizeof(path), "%s/%08llu-%s.body", c->dir, (unsigned long long)n, transport);
    if (write_atomic(path, prefix, prefix_len, body, len) < 0)
        return FL_ERR_IO;

    fl_jw_init(&w, &js);
    fl_jw_obj_begin(&w);
    fl_jw_key(&w, "transport");
    fl_jw_str(&w, transport);
    fl_jw_key(&w, "protocol");
    fl_jw_str(&w, fl_net_req_protocol(req));
    fl_jw_key(&w, "method");
    fl_jw_str(&w, fl_net_req_method(req));
    fl_jw_key(&w, "path");
    fl_jw_str(&w, fl_net_req_path(req));
    fl_jw_key(&w, "peer");
    fl_jw_str(&w, fl_net_req_peer(req));
    fl_jw_key(&w, "capturedAtUnixNano");
    fl_jw_uint(&w, fl_time_now_ns());
    fl_jw_key(&w, "bodyLength");
    fl_jw_uint(&w, prefix_len + len);
    fl_jw_key(&w, "headers");
    fl_jw_obj_begin(&w);
    /* One key per header name (lowercase), repeated headers joined as the framework joins
     * them. */
    const char *name, *value;
    for (size_t i = 0; fl_net_req_header_at(req, i, &name, &value); i++) {
        char lname[128];
        int seen = 0;
        const char *pn, *pv;
        header_lower(name, lname, sizeof(lname));
        for (size_t j = 0; j < i && fl_net_req_header_at(req, j, &pn, &pv); j++)
            if (strcasecmp(pn, name) == 0)
                seen = 1;
        if (seen)
            continue;
        const char *joined = fl_net_req_header(req, name);
        fl_jw_key(&w, lname);
        fl_jw_str(&w, joined ? joined : value);
    }
    fl_jw_obj_end(&w);
    fl_jw_obj_end(&w);
    fl_buf_putc(&js, '\n');
    if (w.err) {
        rc = w.err;
    } else {
        snprintf(path, sizeof(path), "%s/%08llu-%s.headers.json", c->dir, (unsigned long long)n,
                 transport);
        if (write_atomic(path, js.data, js.len, NULL, 0) < 0)
            rc = FL_ERR_IO;
    }
    fl_buf_dispose(&js);
    if (rc != FL_OK) {
        fl__capture_remove(c, transport, n);
        return rc;
    }
    *seq = n;
    return FL_OK;
}

void fl__capture_remove(fl__capture_t *c, const char *transport, uint64_t seq)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%08llu-%s.body", c->dir, (unsigned long long)seq, transport);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%08llu-%s.headers.json", c->dir, (unsigned long long)seq,
             transport);
    unlink(path);
}
