/* SPDX-License-Identifier: Apache-2.0 */
/* PII masking and per-request attribute limits, applied to a decoded batch before the sink:
 * sensitive values are redacted or hashed, extra attributes dropped and counted, long values
 * cut at a UTF-8 boundary (what the OpenTelemetry SDKs do with their span limits). */
#include "receiver_int.h"

#include <ctype.h>
#include <string.h>

static const char redacted[] = "[REDACTED]";

const char *const fl_mask_default_keys[] = {
    "password", "passwd",     "secret",      "token",       "api_key", "apikey", "authorization",
    "cookie",   "set-cookie", "credit_card", "card_number", "ssn",     NULL};

static int is_sep(int c)
{
    return c == '_' || c == '-';
}

static int alnum(int c)
{
    return isalnum((unsigned char)c);
}

/* pattern occurs in key as a word: bounded by the ends, by non-alphanumerics, or by a
 * lower-to-upper camelCase step; '_' and '-' are interchangeable, letters case-insensitive.
 * So "db.password", "x-api-key", "userPassword" and "access_token" match, but
 * "gen_ai.usage.input_tokens" and "classname" do not. */
static int word_match(const char *key, size_t len, const char *pat)
{
    size_t pl = strlen(pat);
    for (size_t i = 0; i + pl <= len; i++) {
        if (i > 0 && alnum(key[i - 1]) &&
            !(islower((unsigned char)key[i - 1]) && isupper((unsigned char)key[i])))
            continue;
        size_t k = 0;
        for (; k < pl; k++) {
            int a = key[i + k], b = pat[k];
            if (is_sep(a) && is_sep(b))
                continue;
            if (tolower((unsigned char)a) != b)
                break;
        }
        if (k < pl)
            continue;
        size_t j = i + pl;
        if (j == len || !alnum(key[j]) ||
            (islower((unsigned char)key[j - 1]) && isupper((unsigned char)key[j])))
            return 1;
    }
    return 0;
}

int fl_mask_key_matches(const fl_sanitize_opts_t *o, const char *key, size_t len)
{
    for (size_t i = 0; i < o->n_mask_keys; i++) {
        const char *m = o->mask_keys[i];
        size_t ml = strlen(m);
        if (ml && m[ml - 1] == '*') {
            if (len >= ml - 1 && memcmp(key, m, ml - 1) == 0)
                return 1;
        } else if (ml == len && memcmp(key, m, len) == 0) {
            return 1;
        }
    }
    if (!o->no_default_masks)
        for (size_t i = 0; fl_mask_default_keys[i]; i++)
            if (word_match(key, len, fl_mask_default_keys[i]))
                return 1;
    return 0;
}

size_t fl_utf8_truncate(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* Step back over continuation bytes to the start of the cut sequence, then drop it
     * unless it is complete. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int mask_value(const fl_sanitize_opts_t *o, fl_arena_t *a, fl_value_t *v)
{
    if (o->mask_mode == FL_MASK_HASH) {
        uint8_t d[32];
        fl_buf_t b;
        if (v->type == FL_VAL_STRING || v->type == FL_VAL_BYTES) {
            fl_net_sha256(v->u.str.ptr, v->u.str.len, d);
        } else {
            fl_jw_t w;
            fl_buf_init(&b, 0);
            fl_jw_init(&w, &b);
            fl_jw_value(&w, v);
            fl_net_sha256(b.data, b.len, d);
            fl_buf_dispose(&b);
        }
        char *s = fl_arena_alloc(a, 7 + 16 + 1);
        if (!s)
            return FL_ERR_NOMEM;
        memcpy(s, "sha256:", 7);
        fl_hex_encode(d, 8, s + 7);
        s[23] = 0;
        v->u.str.ptr = s;
        v->u.str.len = 23;
    } else {
        v->u.str.ptr = redacted;
        v->u.str.len = sizeof(redacted) - 1;
    }
    v->type = FL_VAL_STRING;
    return FL_OK;
}

static void truncate_value(const fl_sanitize_opts_t *o, fl_value_t *v, fl_sanitize_counts_t *c,
                           int depth)
{
    if (depth > 128)
        return;
    switch (v->type) {
    case FL_VAL_STRING:
        if (v->u.str.len > o->max_value_length) {
            v->u.str.len = fl_utf8_truncate(v->u.str.ptr, v->u.str.len, o->max_value_length);
            c->truncated++;
        }
        break;
    case FL_VAL_BYTES:
        if (v->u.str.len > o->max_value_length) {
            v->u.str.len = o->max_value_length;
            c->truncated++;
        }
        break;
    case FL_VAL_ARRAY:
        for (size_t i = 0; i < v->u.arr.n; i++)
            truncate_value(o, &v->u.arr.items[i], c, depth + 1);
        break;
    case FL_VAL_KVLIST:
        for (size_t i = 0; i < v->u.kv.n; i++)
            truncate_value(o, &v->u.kv.items[i].value, c, depth + 1);
        break;
    default:
        break;
    }
}

/* Whether a key is masked, remembered for the keys of one batch: a batch repeats a few
 * dozen keys thousands of times, and matching the default words costs ~0.4 us per key. */
#define MASK_MEMO_SLOTS 64
#define MASK_MEMO_KEY 40

typedef struct {
    uint8_t used, masked, len;
    char key[MASK_MEMO_KEY];
} mask_memo_t;

static int mask_memo_matches(const fl_sanitize_opts_t *o, mask_memo_t *memo, const char *key,
                             size_t len)
{
    if (len > MASK_MEMO_KEY)
        return fl_mask_key_matches(o, key, len);
    mask_memo_t *m = &memo[fl_hash64(key, len, 0) % MASK_MEMO_SLOTS];
    if (m->used && m->len == len && memcmp(m->key, key, len) == 0)
        return m->masked;
    m->used = 1;
    m->len = (uint8_t)len;
    memcpy(m->key, key, len);
    m->masked = (uint8_t)fl_mask_key_matches(o, key, len);
    return m->masked;
}

static int do_attrs(const fl_sanitize_opts_t *o, fl_arena_t *a, fl_attrs_t *at, uint32_t *dropped,
                    fl_sanitize_counts_t *c, mask_memo_t *memo)
{
    if (o->max_attributes && at->n > o->max_attributes) {
        size_t extra = at->n - o->max_attributes;
        at->n = o->max_attributes;
        *dropped += (uint32_t)extra;
        c->dropped += extra;
    }
    for (size_t i = 0; i < at->n; i++) {
        fl_kv_t *kv = &at->items[i];
        if (mask_memo_matches(o, memo, kv->key.ptr, kv->key.len)) {
            if (mask_value(o, a, &kv->value) != FL_OK)
                return FL_ERR_NOMEM;
            c->masked++;
        }
        if (o->max_value_length)
            truncate_value(o, &kv->value, c, 0);
    }
    return FL_OK;
}

int fl_sanitize_batch(const fl_sanitize_opts_t *o, fl_span_batch_t *b, fl_sanitize_counts_t *c)
{
    const fl_resource_t *last_res = NULL;
    const fl_scope_t *last_scope = NULL;
    fl_arena_t *a = b->arena;
    mask_memo_t memo[MASK_MEMO_SLOTS];
    memset(memo, 0, sizeof memo);
    int rc = FL_OK;
    for (size_t i = 0; i < b->n_spans && rc == FL_OK; i++) {
        fl_span_t *s = &b->spans[i];
        /* Resources and scopes are shared by consecutive spans of one ResourceSpans /
         * ScopeSpans and live in the batch arena: handle each once (hashing twice would
         * hash the hash). */
        if (s->resource && s->resource != last_res) {
            fl_resource_t *r = (fl_resource_t *)s->resource;
            last_res = s->resource;
            rc = do_attrs(o, a, &r->attrs, &r->dropped_attrs, c, memo);
        }
        if (rc == FL_OK && s->scope && s->scope != last_scope) {
            fl_scope_t *sc = (fl_scope_t *)s->scope;
            last_scope = s->scope;
            rc = do_attrs(o, a, &sc->attrs, &sc->dropped_attrs, c, memo);
        }
        if (rc == FL_OK)
            rc = do_attrs(o, a, &s->attrs, &s->dropped_attrs, c, memo);
        for (size_t k = 0; rc == FL_OK && k < s->n_events; k++)
            rc = do_attrs(o, a, &s->events[k].attrs, &s->events[k].dropped_attrs, c, memo);
        for (size_t k = 0; rc == FL_OK && k < s->n_links; k++)
            rc = do_attrs(o, a, &s->links[k].attrs, &s->links[k].dropped_attrs, c, memo);
    }
    return rc;
}
