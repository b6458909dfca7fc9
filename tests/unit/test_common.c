/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/: arena, buffers, time, codecs, JSON writer, pool, span model. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/common.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void test_common_arena(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(1024);
    assert_non_null(a);
    char *p = fl_arena_alloc(a, 10);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    void *big = fl_arena_alloc(a, 100000);
    assert_non_null(big);
    memset(big, 1, 100000);
    assert_string_equal(fl_arena_sprintf(a, "x=%d", 42), "x=42");
    assert_true(fl_arena_used(a) >= 100010);
    fl_arena_reset(a);
    assert_int_equal(fl_arena_used(a), 0);
    fl_arena_set_limit(a, 200000);
    assert_null(fl_arena_alloc(a, 300000));
    fl_arena_free(a);
}

/* A rewound arena serves the next allocations from the chunks it kept, and its limit still
 * holds; a freed batch's arena comes back warm for the next batch. */
static void test_common_arena_rewind(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(4096);
    for (int i = 0; i < 100; i++)
        memset(fl_arena_alloc(a, 1000), 'x', 1000);
    size_t reserved = fl_arena_reserved(a);
    assert_true(reserved >= 100000);
    fl_arena_rewind(a);
    assert_int_equal(fl_arena_used(a), 0);
    assert_int_equal(fl_arena_reserved(a), reserved);
    for (int i = 0; i < 100; i++)
        memset(fl_arena_alloc(a, 1000), 'y', 1000);
    assert_int_equal(fl_arena_reserved(a), reserved); /* nothing new from malloc */
    fl_arena_rewind(a);
    fl_arena_set_limit(a, 5000);
    assert_non_null(fl_arena_alloc(a, 4000));
    assert_null(fl_arena_alloc(a, 2000));
    fl_arena_reset(a);
    assert_true(fl_arena_reserved(a) < reserved);
    fl_arena_free(a);

    fl_span_batch_t *b = fl_span_batch_new(4096);
    for (int i = 0; i < 64; i++)
        assert_non_null(fl_arena_alloc(b->arena, 4096));
    size_t held = fl_arena_reserved(b->arena);
    fl_span_batch_free(b);
    b = fl_span_batch_new(4096);
    assert_int_equal(b->n_spans, 0);
    assert_true(fl_arena_reserved(b->arena) >= held); /* the warm arena was reused */
    for (int i = 0; i < 64; i++)
        assert_non_null(fl_arena_alloc(b->arena, 4096));
    assert_int_equal(fl_arena_reserved(b->arena), held);
    fl_span_batch_free(b);
}

/* Chunks of 256 KiB and more are mapped (plain builds) and small ones come from malloc:
 * mixed in one arena, every allocation keeps its bytes through rewind (served from the
 * kept chunks, big ones included), reset (the largest chunk stays) and free. */
static void test_common_arena_big_chunks(void **state)
{
    (void)state;
    fl_arena_t *a = fl_arena_new(300 * 1024);
    size_t sizes[] = {100, 200000, 5000, 1u << 20, 64, 3u << 20, 700};
    unsigned char *ps[7];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 7; i++) {
            ps[i] = fl_arena_alloc(a, sizes[i]);
            assert_non_null(ps[i]);
            memset(ps[i], 'a' + i + round, sizes[i]);
        }
        for (int i = 0; i < 7; i++)
            for (size_t k = 0; k < sizes[i]; k += 4093)
                assert_int_equal(ps[i][k], 'a' + i + round);
        size_t reserved = fl_arena_reserved(a);
        assert_true(reserved >= (4u << 20) + 200000);
        if (round == 0) {
            fl_arena_rewind(a);
            assert_int_equal(fl_arena_reserved(a), reserved);
        } else {
            fl_arena_reset(a);
            assert_true(fl_arena_reserved(a) >= 3u << 20); /* the largest chunk is kept */
            assert_true(fl_arena_reserved(a) < reserved);
        }
    }
    fl_arena_free(a);
}

static void test_common_buf_limit(void **state)
{
    (void)state;
    fl_buf_t b;
    fl_buf_init(&b, 8);
    assert_int_equal(fl_buf_append(&b, "12345678", 8), FL_OK);
    assert_int_equal(fl_buf_putc(&b, '9'), FL_ERR_LIMIT);
    assert_int_equal(b.len, 8);
    fl_buf_consume(&b, 3);
    assert_string_equal((char *)b.data, "45678");
    fl_buf_dispose(&b);
    fl_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fl_buf_printf(&b, "%04d", i), FL_OK);
    assert_int_equal(b.len, 4000);
    assert_memory_equal(b.data + 3996, "0999", 4);
    fl_buf_dispose(&b);
}

static void test_common_time(void **state)
{
    (void)state;
    uint64_t ns;
    char out[40];
    assert_int_equal(fl_time_parse("2026-11-30T03:43:47.123456789Z", &ns), FL_OK);
    assert_string_equal(fl_time_format(ns, out), "2026-11-30T03:43:47.123456789Z");
    assert_int_equal(fl_time_parse("2026-11-30T04:43:47.5+01:00", &ns), FL_OK);
    assert_string_equal(fl_time_format(ns, out), "2026-11-30T03:43:47.5Z");
    assert_int_equal(fl_time_parse("1796004969369162488", &ns), FL_OK);
    assert_true(ns == 1796004969369162488ull);
    assert_int_equal(fl_time_parse("1970-01-01T00:00:00Z", &ns), FL_OK);
    assert_true(ns == 0);
    assert_int_equal(fl_time_parse("yesterday", &ns), FL_ERR_INVALID);
    assert_int_equal(fl_time_parse("2026-13-01T00:00:00Z", &ns), FL_ERR_INVALID);
    assert_int_equal(fl_time_parse("2026-11-30T03:43:47", &ns), FL_ERR_INVALID);
    assert_int_equal(fl_duration_parse("7d", &ns), FL_OK);
    assert_true(ns == 7ull * 86400 * 1000000000ull);
    assert_int_equal(fl_duration_parse("1500ms", &ns), FL_OK);
    assert_true(ns == 1500000000ull);
    assert_int_equal(fl_duration_parse("10", &ns), FL_OK);
    assert_true(ns == 10000000000ull);
    assert_int_equal(fl_duration_parse("10 parsecs", &ns), FL_ERR_INVALID);
    uint64_t sz;
    assert_int_equal(fl_size_parse("64MiB", &sz), FL_OK);
    assert_true(sz == 64ull << 20);
    assert_int_equal(fl_size_parse("16MB", &sz), FL_OK);
    assert_true(sz == 16000000ull);
    assert_int_equal(fl_size_parse("1024", &sz), FL_OK);
    assert_true(sz == 1024);
    assert_int_equal(fl_size_parse("-1", &sz), FL_ERR_INVALID);
    assert_int_equal(fl_size_parse("3 bananas", &sz), FL_ERR_INVALID);
}

static void test_common_codecs(void **state)
{
    (void)state;
    uint8_t id[8] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff}, back[8];
    char hex[17];
    assert_string_equal(fl_hex_encode(id, 8, hex), "deadbeef000102ff");
    assert_int_equal(fl_hex_decode("DEADBEEF000102FF", 16, back, 8), FL_OK);
    assert_memory_equal(id, back, 8);
    assert_int_equal(fl_hex_decode("deadbeef000102f", 15, back, 8), FL_ERR_INVALID);
    assert_int_equal(fl_hex_decode("deadbeef000102fg", 16, back, 8), FL_ERR_INVALID);
    const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        size_t dl;
        fl_base64_encode((const uint8_t *)cases[i], strlen(cases[i]), out);
        assert_string_equal(out, enc[i]);
        assert_int_equal(fl_base64_decode(enc[i], strlen(enc[i]), dec, &dl), FL_OK);
        assert_int_equal(dl, strlen(cases[i]));
        assert_memory_equal(dec, cases[i], dl);
    }
    size_t dl;
    uint8_t dec[8];
    assert_int_equal(fl_base64_decode("Zm9v!", 5, dec, &dl), FL_ERR_INVALID);
    assert_true(fl_hash64("abc", 3, 0) != fl_hash64("abd", 3, 0));
    assert_true(fl_hash64("abc", 3, 0) == fl_hash64("abc", 3, 0));
}

static void test_common_json_escaping(void **state)
{
    (void)state;
    fl_buf_t b;
    fl_buf_init(&b, 0);
    fl_jw_t w;
    fl_jw_init(&w, &b);
    fl_jw_obj_begin(&w);
    fl_jw_key(&w, "q\"uote");
    fl_jw_str(&w, "a\\b\n\x01\xff\xc3\xa9");
    fl_jw_key(&w, "arr");
    fl_jw_arr_begin(&w);
    fl_jw_int(&w, -5);
    fl_jw_double(&w, 3.0);
    fl_jw_double(&w, NAN);
    fl_jw_bool(&w, 1);
    fl_jw_uint(&w, UINT64_MAX);
    fl_jw_arr_end(&w);
    fl_jw_key(&w, "e");
    fl_jw_obj_begin(&w);
    fl_jw_obj_end(&w);
    fl_jw_obj_end(&w);
    assert_int_equal(w.err, FL_OK);
    assert_string_equal((char *)b.data,
                        "{\"q\\\"uote\":\"a\\\\b\\n\\u0001\xef\xbf\xbd\xc3\xa9\","
                        "\"arr\":[-5,3.0,null,true,18446744073709551615],\"e\":{}}");
    fl_buf_dispose(&b);
}

static void test_common_value_json(void **state)
{
    (void)state;
    fl_value_t inner[2] = {{.type = FL_VAL_INT, .u.i = INT64_MIN},
                           {.type = FL_VAL_BYTES, .u.str = {"\x00\x01", 2}}};
    fl_kv_t kvs[3] = {{FL_STR_LIT("arr"), {.type = FL_VAL_ARRAY, .u.arr = {inner, 2}}},
                      {FL_STR_LIT("inf"), {.type = FL_VAL_DOUBLE, .u.d = -INFINITY}},
                      {FL_STR_LIT("none"), {.type = FL_VAL_EMPTY}}};
    fl_attrs_t attrs = {kvs, 3};
    fl_buf_t b;
    fl_buf_init(&b, 0);
    fl_jw_t w;
    fl_jw_init(&w, &b);
    fl_jw_attrs(&w, &attrs);
    assert_string_equal((char *)b.data,
                        "{\"arr\":[-9223372036854775808,\"AAE=\"],\"inf\":\"-Infinity\","
                        "\"none\":null}");
    assert_non_null(fl_attrs_get(&attrs, "inf"));
    assert_null(fl_attrs_get(&attrs, "missing"));
    fl_value_t copy = kvs[0].value;
    assert_true(fl_value_eq(&copy, &kvs[0].value));
    assert_false(fl_value_eq(&kvs[1].value, &kvs[0].value));
    fl_buf_dispose(&b);
}

static atomic_int counter;
static void bump(void *arg)
{
    (void)arg;
    atomic_fetch_add(&counter, 1);
}

static void test_common_pool(void **state)
{
    (void)state;
    fl_pool_t *p = fl_pool_new(2, 10000, "t");
    assert_non_null(p);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(fl_pool_submit(p, bump, NULL), FL_OK);
    fl_pool_free(p); /* drains */
    assert_int_equal(atomic_load(&counter), 5000);
    p = fl_pool_new(1, 1, "t");
    int busy = 0;
    for (int i = 0; i < 100; i++)
        if (fl_pool_submit(p, bump, NULL) == FL_ERR_BUSY)
            busy++;
    fl_pool_free(p);
    assert_true(busy > 0);
}

/* The fuzz builds' allocation failure plan: seed 0 fails nothing; about a quarter of the
 * seeds fail, first at allocation 1..48, and the same seed fails the same allocations. */
static void test_common_fuzz_alloc_plan(void **state)
{
    (void)state;
    fl_fuzz_alloc_plan(0);
    for (int i = 0; i < 100; i++) {
        void *p = fl__fuzz_malloc(16);
        assert_non_null(p);
        free(p);
    }
    assert_int_equal(fl_fuzz_alloc_failed(), 0);
    int active = 0;
    for (uint64_t seed = 1; seed <= 400; seed++) {
        uint64_t pattern[2] = {0, 0};
        for (int run = 0; run < 2; run++) {
            fl_fuzz_alloc_plan(seed);
            for (int i = 0; i < 64; i++) {
                char *p = i % 2 ? fl__fuzz_strdup("x") : fl__fuzz_calloc(1, 8);
                if (!p)
                    pattern[run] |= 1ull << i;
                free(p);
            }
            assert_int_equal(fl_fuzz_alloc_failed(), __builtin_popcountll(pattern[run]));
        }
        assert_true(pattern[0] == pattern[1]);
        if (pattern[0]) {
            active++;
            assert_true(__builtin_ctzll(pattern[0]) < 48);
        }
    }
    assert_true(active > 60 && active < 140);
    /* A failed realloc leaves the block alone. */
    char *keep = fl__fuzz_malloc(4);
    assert_non_null(keep);
    memcpy(keep, "abc", 4);
    for (uint64_t seed = 1;; seed++) {
        fl_fuzz_alloc_plan(seed);
        char *grown = fl__fuzz_realloc(keep, 64);
        if (!grown) {
            assert_string_equal(keep, "abc");
            break;
        }
        keep = grown;
    }
    free(keep);
    fl_fuzz_alloc_plan(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_arena),
        cmocka_unit_test(test_common_arena_rewind),
        cmocka_unit_test(test_common_arena_big_chunks),
        cmocka_unit_test(test_common_buf_limit),
        cmocka_unit_test(test_common_time),
        cmocka_unit_test(test_common_codecs),
        cmocka_unit_test(test_common_json_escaping),
        cmocka_unit_test(test_common_value_json),
        cmocka_unit_test(test_common_pool),
        cmocka_unit_test(test_common_fuzz_alloc_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
