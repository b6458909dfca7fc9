/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-replay: send captured OTLP requests (fixture and --capture-dir layouts: NAME.body
 * + NAME.headers.json) to a receiver again, optionally rate-limited, repeated and with the
 * timestamps moved so the newest span ends now. */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY ((size_t)256 << 20)
#define PROGRESS_TTY_NS 250000000ull
#define PROGRESS_PIPE_NS 2000000000ull
#define FAIL_BODY_MAX 1000

typedef struct endpoint {
    char host[256];
    int port;
    int tls;
    char prefix[256]; /* path prefix of the endpoint URL, without a trailing slash */
} endpoint_t;

typedef struct item {
    char *body_path;
    char *meta_path;
} item_t;

typedef struct replay {
    endpoint_t http;
    endpoint_t grpc;
    double rate;
    long repeat;
    int shift;
    int quiet;
    int timeout_ms;
    item_t *items;
    size_t n_items, cap_items;
    fl_http_client_t *client;
    fl_grpc_client_t *grpc_client;
    /* progress */
    int tty;
    uint64_t t0, last_progress;
    uint64_t sent, ok, failed, spans, bytes;
    int progress_shown;
    int stop;
} replay_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: faultline-replay [OPTIONS] PATH...\n"
            "\n"
            "Send captured OTLP requests to a receiver again. A PATH is a NAME.body file (sent\n"
            "with NAME.headers.json beside it) or a directory, searched recursively for *.body\n"
            "files, sent in name order (a --capture-dir directory therefore replays in arrival\n"
            "order). Each request is sent with its recorded method, path and end-to-end headers\n"
            "(Content-Type, Content-Encoding, ...); host, connection, keep-alive,\n"
            "transfer-encoding, content-length, te, upgrade and HTTP/2 pseudo headers are\n"
            "dropped. The body is sent byte for byte unless --shift-time is given.\n"
            "\n"
            "Options:\n"
            "  --endpoint URL        OTLP/HTTP receiver (default http://127.0.0.1:4318); a path\n"
            "                        in the URL is put in front of every recorded path\n"
            "  --grpc-endpoint H:P   OTLP/gRPC receiver for gRPC captures (default\n"
            "                        127.0.0.1:4317). gRPC replay is not available yet in this\n"
            "                        build: gRPC captures fail with a message\n"
            "  --rate REQ/S          send at most this many requests per second (default: as\n"
            "                        fast as the receiver answers)\n"
            "  --repeat N            send the whole set N times (default 1)\n"
            "  --shift-time          move every timestamp by the same amount so that the newest\n"
            "                        span end of all the files becomes the current time,\n"
            "                        keeping relative times; recomputed at the start of each\n"
            "                        repetition. Works on protobuf and JSON bodies, through\n"
            "                        gzip/deflate and gRPC framing; protobuf metrics are sent\n"
            "                        unchanged (with a note). Repeated sends keep their ids\n"
            "  --timeout MS          per-request timeout (default 10000)\n"
            "  --quiet               no progress line and no summary (failures still print)\n"
            "  --help                this text\n"
            "\n"
            "Progress goes to stderr (at most every 250 ms on a terminal), then a summary.\n"
            "Every request answered with a non-2xx status is printed with its status and body.\n"
            "Exit status: 0 when every request got a 2xx answer; 1 when any request was\n"
            "refused, a file could not be read or shifted, or the receiver could not be\n"
            "reached (the replay stops there); 2 for a usage error.\n");
}

/* ---------------------------------------------------------------- arguments */

static int parse_hostport(const char *s, endpoint_t *e)
{
    const char *colon;
    char *end;
    long port;
    size_t hl;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - s - 1);
        if (hl == 0 || hl >= sizeof(e->host))
            return -1;
        memcpy(e->host, s + 1, hl);
        e->host[hl] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= sizeof(e->host))
            return -1;
        memcpy(e->host, s, hl);
        e->host[hl] = 0;
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 1 || port > 65535)
        return -1;
    e->port = (int)port;
    return 0;
}

static int parse_url(const char *url, endpoint_t *e)
{
    char hostport[300];
    const char *p = url, *slash;
    size_t hl;

    memset(e, 0, sizeof(*e));
    if (!strncmp(p, "http://", 7)) {
        p += 7;
    } else if (!strncmp(p, "https://", 8)) {
        p += 8;
        e->tls = 1;
    }
    slash = strchr(p, '/');
    hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl >= sizeof(hostport))
        return -1;
    memcpy(hostport, p, hl);
    hostport[hl] = 0;
    if (!strchr(hostport, ':') || (hostport[0] == '[' && !strstr(hostport, "]:"))) {
        /* No port: the scheme's default. */
        if (strlen(hostport) + 5 >= sizeof(hostport))
            return -1;
        strcat(hostport, e->tls ? ":443" : ":80");
    }
    if (parse_hostport(hostport, e) != 0)
        return -1;
    if (slash) {
        size_t pl = strlen(slash);
        while (pl > 0 && slash[pl - 1] == '/')
            pl--;
        if (pl >= sizeof(e->prefix))
            return -1;
        memcpy(e->prefix, slash, pl);
        e->prefix[pl] = 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- collecting files */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int add_item(replay_t *r, const char *body_path)
{
    item_t it;
    size_t n = strlen(body_path) - strlen(".body");

    if (r->n_items == r->cap_items) {
        size_t cap = r->cap_items ? r->cap_items * 2 : 64;
        item_t *ni = realloc(r->items, cap * sizeof(*ni));
        if (!ni)
            return -1;
        r->items = ni;
        r->cap_items = cap;
    }
    it.body_path = strdup(body_path);
    it.meta_path = malloc(n + sizeof(".headers.json"));
    if (!it.body_path || !it.meta_path) {
        free(it.body_path);
        free(it.meta_path);
        return -1;
    }
    memcpy(it.meta_path, body_path, n);
    memcpy(it.meta_path + n, ".headers.json", sizeof(".headers.json"));
    r->items[r->n_items++] = it;
    return 0;
}

static int collect(replay_t *r, const char *path, int depth)
{
    struct stat st;
    struct dirent **ents = NULL;
    int n, rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "faultline-replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (ends_with(path, ".body"))
            return add_item(r, path);
        if (ends_with(path, ".headers.json")) {
            char body[PATH_MAX];
            int bl = snprintf(body, sizeof(body), "%.*s.body",
                              (int)(strlen(path) - strlen(".headers.json")), path);
            return bl < (int)sizeof(body) ? add_item(r, body) : -1;
        }
        fprintf(stderr, "faultline-replay: %s: not a directory or a NAME.body file\n", path);
        return -1;
    }
    if (depth > 16)
        return 0;
    n = scandir(path, &ents, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "faultline-replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char child[PATH_MAX];
        const char *name = ents[i]->d_name;
        if (rc == 0 && name[0] != '.' &&
            snprintf(child, sizeof(child), "%s/%s", path, name) < (int)sizeof(child)) {
            struct stat cst;
            if (stat(child, &cst) == 0 && S_ISDIR(cst.st_mode))
                rc = collect(r, child, depth + 1);
            else if (ends_with(name, ".body"))
                rc = add_item(r, child);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

/* ---------------------------------------------------------------- progress */

static void progress(replay_t *r, int force)
{
    uint64_t now = fl_time_mono_ns();
    double secs = (double)(now - r->t0) / 1e9;

    if (r->quiet ||
        (!force && now - r->last_progress < (r->tty ? PROGRESS_TTY_NS : PROGRESS_PIPE_NS)))
        return;
    r->last_progress = now;
    fprintf(stderr,
            "%ssent %llu requests (%llu ok, %llu failed), %llu spans, %.1f MB, %.1f req/s%s",
            r->tty ? "\r\033[K" : "", (unsigned long long)r->sent, (unsigned long long)r->ok,
            (unsigned long long)r->failed, (unsigned long long)r->spans, (double)r->bytes / 1e6,
            secs > 0 ? (double)r->sent / secs : 0.0, r->tty ? "" : "\n");
    r->progress_shown = r->tty;
}

/* Start failure output on a fresh line when a progress line is showing. */
static void clear_progress(replay_t *r)
{
    if (r->progress_shown) {
        fputs("\r\033[K", stderr);
        r->progress_shown = 0;
    }
}

static void print_body(const uint8_t *b, size_t len)
{
    size_t n = len > FAIL_BODY_MAX ? FAIL_BODY_MAX : len;

    for (size_t i = 0; i < n; i++)
        fputc(b[i] >= 0x20 && b[i] < 0x7f ? b[i] : '.', stderr);
    if (n < len)
        fprintf(stderr, "... (%zu bytes)", len);
}

/* ---------------------------------------------------------------- sending */

static uint64_t global_newest(replay_t *r)
{
    uint64_t newest = 0;
    fl_buf_t body;

    fl_buf_init(&body, 0);
    for (size_t i = 0; i < r->n_items && !interrupted; i++) {
        fl_replay_meta_t m;
        fl_replay_info_t info = {0};
        char err[512];

        fl_buf_reset(&body);
        /* Unreadable files are reported when they are sent. */
        if (fl_replay_meta_load(r->items[i].meta_path, &m, err, sizeof(err)) != FL_OK)
            continue;
        if (fl_replay_read_file(r->items[i].body_path, MAX_BODY, &body, err, sizeof(err)) ==
                FL_OK &&
            fl_replay_scan(&m, body.data, body.len, &info, err, sizeof(err)) == FL_OK &&
            fl_replay_info_newest(&info) > newest)
            newest = fl_replay_info_newest(&info);
        fl_replay_meta_dispose(&m);
    }
    fl_buf_dispose(&body);
    return newest;
}

static void fail(replay_t *r, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(replay_t *r, const char *file, const char *fmt, ...)
{
    va_list ap;

    r->failed++;
    clear_progress(r);
    fprintf(stderr, "FAIL %s: ", file);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void send_http(replay_t *r, const item_t *it, const fl_replay_meta_t *m, const uint8_t *body,
                      size_t len)
{
    fl_http_response_t resp;
    char path[4096];
    int rc;

    if (!r->client) {
        fl_http_client_opts_t co = {0};
        co.host = r->http.host;
        co.port = r->http.port;
        co.tls = r->http.tls;
        co.timeout_ms = r->timeout_ms;
        r->client = fl_http_client_new(&co);
        if (!r->client) {
            fail(r, it->body_path, "cannot create the HTTP client");
            r->stop = 1;
            return;
        }
    }
    snprintf(path, sizeof(path), "%s%s", r->http.prefix, m->path);
    rc = fl_http_client_request(r->client, m->method, path, m->headers, m->n_headers, body, len,
                                &resp);
    r->sent++;
    if (rc != FL_OK) {
        fail(r, it->body_path,
             "no answer from %s:%d (%s: connection refused, reset or timed "
             "out); stopping",
             r->http.host, r->http.port, fl_strerror(rc));
        r->stop = 1;
        return;
    }
    if (resp.status < 200 || resp.status > 299) {
        fail(r, it->body_path, "HTTP %d %s", resp.status, fl_net_status_text(resp.status));
        fputs("  body: ", stderr);
        print_body(resp.body.data, resp.body.len);
        fputc('\n', stderr);
    } else {
        r->ok++;
    }
    fl_http_response_dispose(&resp);
}

static void send_grpc(replay_t *r, const item_t *it, const fl_replay_meta_t *m, const uint8_t *data,
                      size_t len)
{
    r->sent++;
    if (!r->grpc_client) {
        fl_grpc_client_opts_t o = {0};
        o.host = r->grpc.host;
        o.port = r->grpc.port;
        o.tls = r->grpc.tls;
        o.timeout_ms = r->timeout_ms;
        r->grpc_client = fl_grpc_client_new(&o);
        if (!r->grpc_client) {
            fail(r, it->body_path, "cannot create a gRPC client for %s:%d", r->grpc.host,
                 r->grpc.port);
            r->stop = 1;
            return;
        }
    }
    /* The client adds content-type, te and grpc-timeout itself; pass the rest (notably
     * grpc-encoding, which the compressed flag in the captured prefix relies on). */
    fl_net_header_t extra[32];
    size_t n = 0;
    for (size_t i = 0; i < m->n_headers && n < 32; i++) {
        const char *name = m->headers[i].name;
        if (!strcasecmp(name, "content-type") || !strcasecmp(name, "grpc-timeout") ||
            !strcasecmp(name, "user-agent"))
            continue;
        extra[n++] = m->headers[i];
    }
    fl_grpc_result_t res;
    int rc = fl_grpc_client_call_raw(r->grpc_client, m->path, extra, n, data, len, &res);
    if (rc != FL_OK) {
        fail(r, it->body_path, "gRPC call to %s:%d failed: %s", r->grpc.host, r->grpc.port,
             fl_strerror(rc));
    } else if (res.grpc_status != 0) {
        fail(r, it->body_path, "grpc-status %d: %s", res.grpc_status,
             res.grpc_message ? res.grpc_message : "(no message)");
    } else {
        r->ok++;
    }
    fl_grpc_result_dispose(&res);
}

static void send_one(replay_t *r, const item_t *it, int64_t delta, fl_buf_t *body,
                     fl_buf_t *shifted)
{
    fl_replay_meta_t m;
    fl_replay_info_t info = {0};
    const uint8_t *data;
    size_t len;
    char err[512];

    fl_buf_reset(body);
    fl_buf_reset(shifted);
    if (fl_replay_meta_load(it->meta_path, &m, err, sizeof(err)) != FL_OK) {
        fail(r, it->body_path, "%s", err);
        return;
    }
    if (fl_replay_read_file(it->body_path, MAX_BODY, body, err, sizeof(err)) != FL_OK) {
        fail(r, it->body_path, "%s", err);
        goto out;
    }
    data = body->data;
    len = body->len;
    if (r->shift) {
        int rc =
            fl_replay_shift(&m, body->data, body->len, delta, shifted, &info, err, sizeof(err));
        if (rc == FL_OK) {
            data = shifted->data;
            len = shifted->len;
        } else if (rc == FL_ERR_UNSUPPORTED && m.format == FL_REPLAY_PROTOBUF &&
                   m.signal != FL_REPLAY_TRACES && m.signal != FL_REPLAY_LOGS) {
            clear_progress(r);
            fprintf(stderr, "note %s: %s; sent unchanged\n", it->body_path, err);
        } else {
            fail(r, it->body_path, "--shift-time: %s", err);
            goto out;
        }
    } else {
        /* Count spans for the progress line; a body the scan cannot read is still sent. */
        fl_replay_scan(&m, body->data, body->len, &info, err, sizeof(err));
    }
    r->spans += info.n_spans;
    r->bytes += len;
    if (m.grpc)
        send_grpc(r, it, &m, data, len);
    else
        send_http(r, it, &m, data, len);
out:
    fl_replay_meta_dispose(&m);
}

static void sleep_until(uint64_t mono_ns)
{
    uint64_t now = fl_time_mono_ns();

    if (mono_ns > now) {
        struct timespec ts = {(time_t)((mono_ns - now) / 1000000000ull),
                              (long)((mono_ns - now) % 1000000000ull)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !interrupted)
            ;
    }
}

static void run(replay_t *r)
{
    uint64_t newest = 0;
    uint64_t n = 0;
    fl_buf_t body, shifted;

    fl_buf_init(&body, 0);
    fl_buf_init(&shifted, 0);
    r->t0 = fl_time_mono_ns();
    r->last_progress = r->t0;
    if (r->shift) {
        newest = global_newest(r);
        if (newest == 0 && !r->quiet)
            fprintf(stderr, "note: no timestamps found; --shift-time changes nothing\n");
    }
    for (long rep = 0; rep < r->repeat && !r->stop && !interrupted; rep++) {
        int64_t delta = 0;
        if (r->shift && newest) {
            uint64_t now = fl_time_now_ns();
            delta = now >= newest ? (int64_t)(now - newest) : -(int64_t)(newest - now);
        }
        for (size_t i = 0; i < r->n_items && !r->stop && !interrupted; i++, n++) {
            if (r->rate > 0)
                sleep_until(r->t0 + (uint64_t)((double)n * 1e9 / r->rate));
            if (interrupted)
                break;
            send_one(r, &r->items[i], delta, &body, &shifted);
            progress(r, 0);
        }
    }
    fl_buf_dispose(&body);
    fl_buf_dispose(&shifted);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"grpc-endpoint", required_argument, NULL, 'g'},
        {"rate", required_argument, NULL, 'r'},
        {"repeat", required_argument, NULL, 'n'},
        {"shift-time", no_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    replay_t r;
    const char *endpoint = "http://127.0.0.1:4318", *grpc_endpoint = "127.0.0.1:4317";
    struct sigaction sa;
    double secs;
    char *end;
    int c, status;

    memset(&r, 0, sizeof(r));
    r.repeat = 1;
    r.timeout_ms = 10000;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 'g':
            grpc_endpoint = optarg;
            break;
        case 'r':
            errno = 0;
            r.rate = strtod(optarg, &end);
            if (errno || *end || !(r.rate > 0) || !isfinite(r.rate)) {
                fprintf(stderr,
                        "faultline-replay: --rate: expected a positive number, got "
                        "\"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'n':
            errno = 0;
            r.repeat = strtol(optarg, &end, 10);
            if (errno || *end || r.repeat < 1) {
                fprintf(stderr,
                        "faultline-replay: --repeat: expected an integer >= 1, got "
                        "\"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 't': {
            long t;
            errno = 0;
            t = strtol(optarg, &end, 10);
            if (errno || *end || t < 1 || t > 3600000) {
                fprintf(stderr,
                        "faultline-replay: --timeout: expected milliseconds from 1 to "
                        "3600000, got \"%s\"\n",
                        optarg);
                return 2;
            }
            r.timeout_ms = (int)t;
            break;
        }
        case 's':
            r.shift = 1;
            break;
        case 'q':
            r.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "faultline-replay: no PATH given (try --help)\n");
        return 2;
    }
    if (parse_url(endpoint, &r.http) != 0) {
        fprintf(stderr, "faultline-replay: --endpoint: expected http://HOST:PORT, got \"%s\"\n",
                endpoint);
        return 2;
    }
    if (parse_hostport(grpc_endpoint, &r.grpc) != 0) {
        fprintf(stderr, "faultline-replay: --grpc-endpoint: expected HOST:PORT, got \"%s\"\n",
                grpc_endpoint);
        return 2;
    }
    for (int i = optind; i < argc; i++)
        if (collect(&r, argv[i], 0) != 0)
            return 2;
    if (r.n_items == 0) {
        fprintf(stderr, "faultline-replay: no .body files found\n");
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    r.tty = isatty(STDERR_FILENO);

    run(&r);

    secs = (double)(fl_time_mono_ns() - r.t0) / 1e9;
    if (!r.quiet) {
        clear_progress(&r);
        fprintf(stderr,
                "replayed %llu requests from %zu files x %ld in %.2f s: %llu ok, %llu failed; "
                "%llu spans, %.1f MB, %.1f req/s, %.0f spans/s%s\n",
                (unsigned long long)r.sent, r.n_items, r.repeat, secs, (unsigned long long)r.ok,
                (unsigned long long)r.failed, (unsigned long long)r.spans, (double)r.bytes / 1e6,
                secs > 0 ? (double)r.sent / secs : 0.0, secs > 0 ? (double)r.spans / secs : 0.0,
                interrupted ? " (interrupted)" : "");
    }
    status = (r.failed || interrupted) ? 1 : 0;
    fl_http_client_free(r.client);
    fl_grpc_client_free(r.grpc_client);
    for (size_t i = 0; i < r.n_items; i++) {
        free(r.items[i].body_path);
        free(r.items[i].meta_path);
    }
    free(r.items);
    return status;
}
