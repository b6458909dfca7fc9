/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the pure security pieces: CORS origin wildcards, bearer-token sets, masking
 * keys and values, attribute limits and UTF-8-safe truncation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/receiver.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receiver_security_origin_match),
        cmocka_unit_test(test_receiver_security_tokens),
        cmocka_unit_test(test_receiver_security_mask_keys),
        cmocka_unit_test(test_receiver_security_sanitize),
        cmocka_unit_test(test_receiver_security_utf8_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
