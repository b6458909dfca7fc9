/* SPDX-License-Identifier: Apache-2.0 */
/* Listener security helpers shared by the receiver and the API: bearer-token sets compared
 * in constant time (as SHA-256 digests), and CORS for browser clients. */
#include "net_int.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fl_net_tokens {
    uint8_t (*digests)[32];
    size_t n;
};

void fl_net_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int olen = 32;
    if (!EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL))
        memset(out, 0, 32);
}

static int tokens_add(fl_net_tokens_t *t, const char *tok, size_t len)
{
    uint8_t(*d)[32] = realloc(t->digests, (t->n + 1) * sizeof(*d));
    if (!d)
        return -1;
    t->digests = d;
    fl_net_sha256(tok, len, t->digests[t->n++]);
    return 0;
}

fl_net_tokens_t *fl_net_tokens_new(const char *const *tokens, size_t n)
{
    fl_net_tokens_t *t = calloc(1, sizeof(*t));
    if (!t || n == 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (tokens_add(t, tokens[i], strlen(tokens[i])) != 0)
            goto fail;
    return t;
fail:
    fl_net_tokens_free(t);
    return NULL;
}

fl_net_tokens_t *fl_net_tokens_load(const char *path, char *err, size_t errlen)
{
    fl_net_tokens_t *t = calloc(1, sizeof(*t));
    FILE *f = NULL;
    char line[4096];
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read token file \"%s\": %s", path, strerror(errno));
        goto fail;
    }
    while (fgets(line, sizeof(line), f)) {
        char *s = line, *e = line + strlen(line);
        while (*s && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s && tokens_add(t, s, (size_t)(e - s)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    /* Leave no copy of a token on the stack. */
    OPENSSL_cleanse(line, sizeof(line));
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read token file \"%s\"", path);
        goto fail;
    }
    if (t->n == 0) {
        snprintf(err, errlen, "token file \"%s\" holds no token (one per line)", path);
        goto fail;
    }
    fclose(f);
    return t;
fail:
    if (f)
        fclose(f);
    fl_net_tokens_free(t);
    return NULL;
}

int fl_net_tokens_check(const fl_net_tokens_t *t, const char *authorization)
{
    uint8_t d[32];
    int ok = 0;
    if (!t || !authorization)
        return 0;
    while (*authorization == ' ')
        authorization++;
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    if (!len)
        return 0;
    fl_net_sha256(tok, len, d);
    /* Every digest is compared, whether or not an earlier one matched. */
    for (size_t i = 0; i < t->n; i++)
        ok |= CRYPTO_memcmp(d, t->digests[i], 32) == 0;
    return ok;
}

size_t fl_net_tokens_count(const fl_net_tokens_t *t)
{
    return t ? t->n : 0;
}

void fl_net_tokens_free(fl_net_tokens_t *t)
{
    if (!t)
        return;
    free(t->digests);
    free(t);
}

/* ---------------------------------------------------------------- CORS */

int fl_net_cors_origin_match(const char *p, const char *s)
{
    /* Iterative glob with backtracking to the last '*': linear in practice, no recursion. */
    const char *star = NULL, *ss = NULL;
    if (!p || !s)
        return 0;
    while (*s) {
        if (*p == '*') {
            star = p++;
            ss = s;
        } else if (tolower((unsigned char)*p) == tolower((unsigned char)*s)) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++ss;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == 0;
}

static int header_list_ok(const char *v)
{
    for (; *v; v++)
        if (!(isalnum((unsigned char)*v) || *v == '-' || *v == '_' || *v == ',' || *v == ' '))
            return 0;
    return 1;
}

int fl_net_cors_apply(fl_net_req_t *req, const fl_net_cors_t *cors)
{
    if (!cors || !cors->n_origins)
        return FL_NET_CORS_NONE;
    const char *origin = fl_net_req_header(req, "origin");
    int preflight = !strcmp(fl_net_req_method(req), "OPTIONS") && origin &&
                    fl_net_req_header(req, "access-control-request-method");
    int allowed = 0;
    if (origin && strlen(origin) < 1024)
        for (size_t i = 0; i < cors->n_origins && !allowed; i++)
            allowed = fl_net_cors_origin_match(cors->origins[i], origin);
    if (allowed) {
        fl_net_req_add_response_header(req, "Access-Control-Allow-Origin", origin);
        fl_net_req_add_response_header(req, "Access-Control-Allow-Credentials", "true");
        fl_net_req_add_response_header(req, "Vary", "Origin");
    }
    if (!preflight)
        return allowed ? FL_NET_CORS_ALLOWED : FL_NET_CORS_NONE;
    fl_net_header_t h[4];
    size_t n = 0;
    char hdrs[1200], age[16];
    if (allowed) {
        const char *want = fl_net_req_header(req, "access-control-request-headers");
        snprintf(hdrs, sizeof(hdrs),
                 "Content-Type, Content-Encoding, Authorization, "
                 "X-Requested-With");
        if (want && strlen(want) < 1024 && header_list_ok(want)) {
            size_t l = strlen(hdrs);
            snprintf(hdrs + l, sizeof(hdrs) - l, ", %s", want);
        }
        snprintf(age, sizeof(age), "%d", cors->max_age_s > 0 ? cors->max_age_s : 7200);
        h[n++] = (fl_net_header_t){"Access-Control-Allow-Methods",
                                   cors->methods ? cors->methods : "POST"};
        h[n++] = (fl_net_header_t){"Access-Control-Allow-Headers", hdrs};
        h[n++] = (fl_net_header_t){"Access-Control-Max-Age", age};
    }
    fl_net_respond(req, 204, h, n, NULL, 0);
    return FL_NET_CORS_PREFLIGHT;
}
