/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the pure security pieces: CORS origin wildcards, bearer-token sets, masking
 * keys and values, attribute limits, UTF-8-safe truncation and the spans-per-trace table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/receiver.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_receiver_security_origin_match(void **state)
{
    (void)state;
    assert_true(fl_net_cors_origin_match("https://app.example.com", "https://app.example.com"));
    assert_true(fl_net_cors_origin_match("https://app.example.com", "HTTPS://APP.example.com"));
    assert_false(fl_net_cors_origin_match("https://app.example.com", "https://app.example.co"));
    assert_true(fl_net_cors_origin_match("https://*.example.com", "https://a.example.com"));
    assert_true(fl_net_cors_origin_match("https://*.example.com", "https://a.b.example.com"));
    assert_false(fl_net_cors_origin_match("https://*.example.com", "https://example.com"));
    assert_false(fl_net_cors_origin_match("https://*.example.com", "http://a.example.com"));
    assert_false(
        fl_net_cors_origin_match("https://*.example.com", "https://a.example.com.evil.net"));
    assert_true(fl_net_cors_origin_match("https://*", "https://anything:8443"));
    assert_true(fl_net_cors_origin_match("*", "null"));
    assert_true(fl_net_cors_origin_match("http://localhost:*", "http://localhost:3000"));
    assert_false(fl_net_cors_origin_match("", "https://a"));
}

static void test_receiver_security_tokens(void **state)
{
    (void)state;
    const char *toks[] = {"alpha", "beta-2"};
    fl_net_tokens_t *t = fl_net_tokens_new(toks, 2);
    assert_non_null(t);
    assert_int_equal(fl_net_tokens_count(t), 2);
    assert_true(fl_net_tokens_check(t, "Bearer alpha"));
    assert_true(fl_net_tokens_check(t, "bearer beta-2"));
    assert_false(fl_net_tokens_check(t, "Bearer alph"));
    assert_false(fl_net_tokens_check(t, "Bearer alphaa"));
    assert_false(fl_net_tokens_check(t, "Basic alpha"));
    assert_false(fl_net_tokens_check(t, "Bearer "));
    assert_false(fl_net_tokens_check(t, NULL));
    fl_net_tokens_free(t);

    char path[] = "/tmp/fl-tokens-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\n  one  \ntwo\n", 13), 13);
    close(fd);
    t = fl_net_tokens_load(path, err, sizeof(err));
    assert_non_null(t);
    assert_int_equal(fl_net_tokens_count(t), 2);
    assert_true(fl_net_tokens_check(t, "Bearer one"));
    assert_true(fl_net_tokens_check(t, "Bearer two"));
    fl_net_tokens_free(t);
    FILE *f = fopen(path, "w");
    fputs("\n \n", f);
    fclose(f);
    assert_null(fl_net_tokens_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "no token"));
    unlink(path);
    assert_null(fl_net_tokens_load(path, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot read"));
}

static int km(const fl_sanitize_opts_t *o, const char *k)
{
    return fl_mask_key_matches(o, k, strlen(k));
}

static void test_receiver_security_mask_keys(void **state)
{
    (void)state;
    const char *keys[] = {"customer.email", "internal.*"};
    fl_sanitize_opts_t o = {.mask_keys = keys, .n_mask_keys = 2};
    assert_true(km(&o, "customer.email"));
    assert_false(km(&o, "customer.email2"));
    assert_true(km(&o, "internal.x"));
    assert_true(km(&o, "password"));
    assert_true(km(&o, "db.password"));
    assert_true(km(&o, "userPassword"));
    assert_true(km(&o, "DB_PASSWORD"));
    assert_true(km(&o, "http.request.header.authorization"));
    assert_true(km(&o, "http.response.header.set-cookie"));
    assert_true(km(&o, "x-api-key")); /* "-" and "_" are interchangeable */
    assert_true(km(&o, "app.api-key"));
    assert_true(km(&o, "oauth.access_token"));
    assert_true(km(&o, "user.ssn"));
    assert_true(km(&o, "payment.credit_card"));
    assert_false(km(&o, "gen_ai.usage.input_tokens"));
    assert_false(km(&o, "code.classname"));
    assert_false(km(&o, "http.route"));
    o.no_default_masks = 1;
    assert_false(km(&o, "password"));
    assert_true(km(&o, "customer.email"));
}

static fl_kv_t kv_str(const char *k, const char *v)
{
    fl_kv_t kv;
    memset(&kv, 0, sizeof(kv));
    kv.key.ptr = k;
    kv.key.len = strlen(k);
    kv.value.type = FL_VAL_STRING;
    kv.value.u.str.ptr = v;
    kv.value.u.str.len = strlen(v);
    return kv;
}

static void test_receiver_security_sanitize(void **state)
{
    (void)state;
    fl_span_batch_t *b = fl_span_batch_new(4096);
    assert_non_null(b);
    fl_resource_t *res = fl_arena_calloc(b->arena, 1, sizeof(*res));
    fl_kv_t *ra = fl_arena_calloc(b->arena, 1, sizeof(fl_kv_t));
    ra[0] = kv_str("api_key", "k-123");
    res->attrs.items = ra;
    res->attrs.n = 1;
    b->spans = fl_arena_calloc(b->arena, 2, sizeof(fl_span_t));
    b->n_spans = 2;
    fl_kv_t *a = fl_arena_calloc(b->arena, 6, sizeof(fl_kv_t));
    a[0] = kv_str("password", "pw");
    a[1] = kv_str("note", "h\xc3\xa9llo w\xc3\xb6rld"); /* é at 1-2, ö at 8-9 */
    a[2] = kv_str("secret", "pw");
    a[3] = kv_str("x", "1");
    a[4] = kv_str("y", "2");
    a[5] = kv_str("z", "3");
    for (int i = 0; i < 2; i++) {
        b->spans[i].resource = res; /* shared: masked once */
        b->spans[i].attrs.items = i == 0 ? a : NULL;
        b->spans[i].attrs.n = i == 0 ? 6 : 0;
    }
    fl_sanitize_opts_t o = {.mask_mode = FL_MASK_HASH, .max_attributes = 4, .max_value_length = 9};
    fl_sanitize_counts_t c = {0};
    assert_int_equal(fl_sanitize_batch(&o, b, &c), FL_OK);
    assert_int_equal(b->spans[0].attrs.n, 4);
    assert_int_equal(b->spans[0].dropped_attrs, 2);
    assert_int_equal(c.dropped, 2);
    assert_int_equal(c.masked, 3); /* password, secret, resource api_key */
    /* hash, then cut to 9 bytes: equal values stay equal */
    assert_int_equal(a[0].value.u.str.len, 9);
    assert_memory_equal(a[0].value.u.str.ptr, "sha256:", 7);
    assert_memory_equal(a[0].value.u.str.ptr, a[2].value.u.str.ptr, 9);
    /* "hello wö" is 9 bytes with the ö complete at 8..9? 'h'(0) é(1,2) "llo w"(3..7) ö(8,9):
     * a cut at 9 would split ö, so 8 bytes remain. */
    assert_int_equal(a[1].value.u.str.len, 8);
    assert_int_equal(ra[0].value.u.str.len, 9);
    assert_true(c.truncated >= 3);
    fl_span_batch_free(b);

    /* Redact mode, no limits. */
    b = fl_span_batch_new(4096);
    b->spans = fl_arena_calloc(b->arena, 1, sizeof(fl_span_t));
    b->n_spans = 1;
    a = fl_arena_calloc(b->arena, 1, sizeof(fl_kv_t));
    a[0] = kv_str("Authorization", "Bearer xyz");
    b->spans[0].attrs.items = a;
    b->spans[0].attrs.n = 1;
    fl_sanitize_opts_t r = {.mask_mode = FL_MASK_REDACT};
    memset(&c, 0, sizeof(c));
    assert_int_equal(fl_sanitize_batch(&r, b, &c), FL_OK);
    assert_int_equal(c.masked, 1);
    assert_int_equal(a[0].value.u.str.len, 10);
    assert_memory_equal(a[0].value.u.str.ptr, "[REDACTED]", 10);
    fl_span_batch_free(b);
}

static void test_receiver_security_utf8_truncate(void **state)
{
    (void)state;
    const char *s = "a\xe2\x82\xac"; /* a + € (3 bytes) */
    assert_int_equal(fl_utf8_truncate(s, 4, 10), 4);
    assert_int_equal(fl_utf8_truncate(s, 4, 4), 4);
    assert_int_equal(fl_utf8_truncate(s, 4, 3), 1);
    assert_int_equal(fl_utf8_truncate(s, 4, 2), 1);
    assert_int_equal(fl_utf8_truncate(s, 4, 1), 1);
    assert_int_equal(fl_utf8_truncate(s, 4, 0), 0);
}

/* ---------------------------------------------------------------- spans per trace */

/* A batch of n spans: span i belongs to trace traces[i] (one byte repeated into the id) and
 * has span id i + 1 + first_sid. */
static fl_span_batch_t *trace_batch(const char *traces, int first_sid)
{
    size_t n = strlen(traces);
    fl_span_batch_t *b = fl_span_batch_new(4096);
    assert_non_null(b);
    b->spans = fl_arena_calloc(b->arena, n, sizeof(fl_span_t));
    b->n_spans = n;
    for (size_t i = 0; i < n; i++) {
        memset(b->spans[i].trace_id, traces[i], 16);
        b->spans[i].span_id[7] = (uint8_t)(first_sid + (int)i + 1);
    }
    return b;
}

/* The traces and span ids left in b, as "A1 B2 ...". */
static const char *left(const fl_span_batch_t *b)
{
    static char out[256];
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < b->n_spans && o + 8 < sizeof(out); i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%c%d", i ? " " : "",
                              b->spans[i].trace_id[0], b->spans[i].span_id[7]);
    return out;
}

/* Apply t to a batch of traces (as trace_batch makes them): want_dropped spans dropped and
 * want_left left ("A1 B2 ..."; NULL: not checked). The counts are kept in *charge when given,
 * else disposed. */
static void apply(fl_trace_limit_t *t, const char *traces, int first_sid,
                  fl_trace_limit_charge_t *charge, size_t want_dropped, const char *want_left)
{
    fl_trace_limit_charge_t c;
    fl_span_batch_t *b = trace_batch(traces, first_sid);
    assert_int_equal(fl_trace_limit_apply(t, b, &c), FL_OK);
    assert_int_equal(c.dropped, want_dropped);
    assert_int_equal(b->n_spans, strlen(traces) - want_dropped);
    if (want_left)
        assert_string_equal(left(b), want_left);
    fl_span_batch_free(b);
    if (charge)
        *charge = c;
    else
        fl_trace_limit_charge_dispose(&c);
}

static void test_receiver_security_trace_limit(void **state)
{
    (void)state;
    fl_trace_limit_charge_t c2;
    assert_null(fl_trace_limit_new(0, 0)); /* 0: no limit, no table */
    fl_trace_limit_t *t = fl_trace_limit_new(5, 0);
    assert_non_null(t);

    /* Under the limit: everything stays. A has 3 of 5, then the first 2 of its next 4 stay,
     * in order (C is another trace); then nothing more of A, while B still has room. */
    apply(t, "ABABA", 0, NULL, 0, "A1 B2 A3 B4 A5");
    apply(t, "ACAAA", 10, &c2, 2, "A11 C12 A13");
    assert_int_equal(c2.first_over[0], 'A');
    apply(t, "ABBB", 20, NULL, 1, "B22 B23 B24");

    /* The second request was refused after all: its 2 spans of A are given back. */
    fl_trace_limit_release(t, &c2);
    assert_null(c2.items);
    apply(t, "AAA", 30, NULL, 1, "A31 A32");

    /* No table: no limit. */
    apply(NULL, "AAAAAAA", 40, NULL, 0, NULL);
    fl_trace_limit_free(t);
}

static void test_receiver_security_trace_limit_bounded(void **state)
{
    (void)state;
    fl_trace_limit_charge_t c;
    /* The default table is 65536 entries of 24 bytes, whatever the traffic. */
    fl_trace_limit_t *t = fl_trace_limit_new(3, 0);
    size_t mem = fl_trace_limit_memory(t);
    assert_true(mem >= 65536 * 24 && mem < 65536 * 24 + 64 * 1024);
    for (int round = 0; round < 50; round++) {
        fl_span_batch_t *b = fl_span_batch_new(1 << 16);
        b->n_spans = 4000;
        b->spans = fl_arena_calloc(b->arena, b->n_spans, sizeof(fl_span_t));
        for (size_t i = 0; i < b->n_spans; i++) {
            uint32_t k = (uint32_t)(round * 4000 + (int)i);
            memcpy(b->spans[i].trace_id, &k, sizeof(k));
            b->spans[i].trace_id[15] = 1;
        }
        assert_int_equal(fl_trace_limit_apply(t, b, &c), FL_OK);
        assert_int_equal(b->n_spans, 4000); /* all distinct traces */
        fl_trace_limit_charge_dispose(&c);
        fl_span_batch_free(b);
    }
    assert_int_equal(fl_trace_limit_memory(t), mem);
    fl_trace_limit_free(t);

    /* One set of 8 entries: trace A at its limit, then 7 newer traces leave it known (and
     * full); 8 more evict it, and A starts from zero again (the documented cost of a
     * bounded table). */
    t = fl_trace_limit_new(3, 8);
    apply(t, "AAAA", 0, NULL, 1, NULL);
    apply(t, "abcdefg", 0, NULL, 0, NULL);
    apply(t, "A", 0, NULL, 1, NULL);
    apply(t, "stuvwxyz", 0, NULL, 0, NULL);
    apply(t, "AAAA", 0, NULL, 1, NULL);
    fl_trace_limit_free(t);
}

/* Several decode threads counting the same traces: exactly the limit gets through. */
typedef struct tl_worker {
    fl_trace_limit_t *t;
    size_t kept;
} tl_worker_t;

static void *tl_worker_main(void *arg)
{
    tl_worker_t *w = arg;
    for (int round = 0; round < 200; round++) {
        fl_span_batch_t *b = trace_batch("ABCDABCDAB", round * 10);
        fl_trace_limit_charge_t c;
        if (fl_trace_limit_apply(w->t, b, &c) == FL_OK)
            w->kept += b->n_spans;
        /* Every fourth request "fails" and gives its count back. */
        if (round % 4 == 3) {
            w->kept -= b->n_spans;
            fl_trace_limit_release(w->t, &c);
        } else {
            fl_trace_limit_charge_dispose(&c);
        }
        fl_span_batch_free(b);
    }
    return NULL;
}

static void test_receiver_security_trace_limit_threads(void **state)
{
    (void)state;
    enum { THREADS = 4 };
    fl_trace_limit_t *t = fl_trace_limit_new(700, 0);
    tl_worker_t w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (tl_worker_t){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, tl_worker_main, &w[i]), 0);
    }
    size_t kept = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        kept += w[i].kept;
    }
    /* Never more than the limit, whatever the interleaving. */
    assert_true(kept <= 4 * 700);
    /* 4 traces x 700 spans: 4 x 200 x 10 offered, 3/4 of them count, more than enough; but a
     * request that gave its count back after every other thread had finished (its last round
     * is a failing one) leaves that trace short. Requests that do not fail fill it up again,
     * to exactly the limit. */
    size_t refilled = 0;
    for (int round = 0; round < 50; round++) {
        fl_span_batch_t *b = trace_batch("ABCDABCDAB", 100000 + round * 10);
        fl_trace_limit_charge_t c;
        if (fl_trace_limit_apply(t, b, &c) == FL_OK)
            refilled += b->n_spans;
        fl_trace_limit_charge_dispose(&c);
        fl_span_batch_free(b);
    }
    assert_true(refilled <= 10 * THREADS); /* at most each thread's last round given back */
    assert_int_equal(kept + refilled, 4 * 700);
    fl_trace_limit_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receiver_security_origin_match),
        cmocka_unit_test(test_receiver_security_tokens),
        cmocka_unit_test(test_receiver_security_mask_keys),
        cmocka_unit_test(test_receiver_security_sanitize),
        cmocka_unit_test(test_receiver_security_utf8_truncate),
        cmocka_unit_test(test_receiver_security_trace_limit),
        cmocka_unit_test(test_receiver_security_trace_limit_bounded),
        cmocka_unit_test(test_receiver_security_trace_limit_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
