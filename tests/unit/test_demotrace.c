/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for demo-services/trace (fl_demotrace): W3C traceparent/tracestate against the
 * spec's examples, OTEL_* configuration, spans, and the exporter against a real fl_net server
 * (503 + Retry-After then 200; nothing listening; a stuck receiver never slows span end). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <faultline/common.h>
#include <faultline/demotrace.h>
#include <faultline/net.h>

#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

static const char TID[] = "4bf92f3577b34da6a3ce929d0e0e4736";
static const char SID[] = "00f067aa0ba902b7";

static int tp_ok(const char *v)
{
    fl_dt_context_t c;
    return fl_dt_traceparent_parse(v, &c) == 0 && c.valid;
}

/* ---------------------------------------------------------------- traceparent */

static void test_demotrace_traceparent_valid(void **state)
{
    (void)state;
    fl_dt_context_t c;
    assert_int_equal(
        fl_dt_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &c), 0);
    assert_true(c.valid);
    assert_true(c.remote);
    assert_int_equal(c.flags, 1);
    char hex[33];
    assert_string_equal(fl_hex_encode(c.trace_id, 16, hex), TID);
    assert_string_equal(fl_hex_encode(c.span_id, 8, hex), SID);
    assert_string_equal(c.tracestate, "");

    /* Not sampled; unknown flag bits are accepted (and ignored). */
    assert_int_equal(
        fl_dt_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c), 0);
    assert_int_equal(c.flags & FL_DT_FLAG_SAMPLED, 0);
    assert_true(tp_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"));
    assert_true(tp_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"));
    /* HTTP optional whitespace around the value. */
    assert_true(tp_ok(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \t"));
    /* A future version: more fields after a '-' are allowed and ignored. */
    assert_int_equal(fl_dt_traceparent_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
                                             "01-what-the-future-will-be-like",
                                             &c),
                     0);
    assert_string_equal(fl_hex_encode(c.trace_id, 16, hex), TID);
    assert_true(tp_ok("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_true(tp_ok("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
}

static void test_demotrace_traceparent_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* version ff is forbidden */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* all-zero ids */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* uppercase hex anywhere */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        /* wrong lengths */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* version 00 allows nothing after the flags */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",
        /* a future version still needs '-' before extra fields */
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01what",
        /* non-hex characters, wrong delimiters */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736.00f067aa0ba902b7-01",
        /* two headers joined by the HTTP layer */
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, "
         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        /* empty and junk */
        "",
        " ",
        "00",
        "hello world",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fl_dt_context_t c;
        memset(&c, 0x55, sizeof(c));
        if (fl_dt_traceparent_parse(bad[i], &c) == 0)
            fail_msg("accepted invalid traceparent '%s'", bad[i]);
        assert_false(c.valid);
        assert_true(fl_is_zero(c.trace_id, 16));
    }
    fl_dt_context_t c;
    assert_int_equal(fl_dt_traceparent_parse(NULL, &c), -1);
    assert_false(c.valid);
}

static void test_demotrace_traceparent_format(void **state)
{
    (void)state;
    fl_dt_context_t c;
    char out[FL_DT_TRACEPARENT_LEN];
    const char *in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(fl_dt_traceparent_parse(in, &c), 0);
    assert_int_equal(fl_dt_traceparent_format(&c, out), 55);
    assert_string_equal(out, in);
    /* A future version is answered in version 00; unknown flags are not propagated. */
    assert_int_equal(fl_dt_traceparent_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
                                             "fb-extra",
                                             &c),
                     0);
    assert_int_equal(fl_dt_traceparent_format(&c, out), 55);
    assert_string_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    c.flags = 0;
    fl_dt_traceparent_format(&c, out);
    assert_string_equal(out + 53, "00");
    fl_dt_context_t none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(fl_dt_traceparent_format(&none, out), 0);
    assert_string_equal(out, "");
}

/* ---------------------------------------------------------------- tracestate */

static void test_demotrace_tracestate(void **state)
{
    (void)state;
    char out[FL_DT_TRACESTATE_MAX + 1];
    assert_int_equal(
        fl_dt_tracestate_parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", out, sizeof(out)), 2);
    assert_string_equal(out, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /* OWS around members and empty members are dropped. */
    assert_int_equal(fl_dt_tracestate_parse(" a=1 ,, \tb=2\t,", out, sizeof(out)), 2);
    assert_string_equal(out, "a=1,b=2");
    assert_int_equal(fl_dt_tracestate_parse("", out, sizeof(out)), 0);
    assert_int_equal(fl_dt_tracestate_parse(" , ", out, sizeof(out)), 0);
    /* Multi-tenant keys and the allowed key characters; values may hold spaces inside. */
    assert_int_equal(
        fl_dt_tracestate_parse("fw529a3039@dt=xyz,0tenant@sys_1=a b c,k_-*/9=!~", out, sizeof(out)),
        3);

    static const char *const bad[] = {
        "Rojo=1",              /* uppercase key */
        "1abc=1",              /* a simple key starts with a letter */
        "a=1,a=2",             /* duplicate key */
        "a=",                  /* empty value */
        "=1",                  /* empty key */
        "a",                   /* no '=' */
        "a=b=c",               /* '=' in the value */
        "a =1",                /* space before '=' */
        "a=\x7f",              /* not printable */
        "t@=1",                /* empty system id */
        "@s=1",                /* empty tenant id */
        "t@Sys=1",             /* system id starts with a lowercase letter */
        "t@s1234567890abcd=1", /* system id longer than 14 */
        "a=1,b",               /* one bad member spoils the header */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fl_dt_tracestate_parse(bad[i], out, sizeof(out)) != -1)
            fail_msg("accepted invalid tracestate '%s'", bad[i]);
        assert_string_equal(out, "");
    }

    /* Key and value length limits: 256 each. */
    char key[300], val[300], buf[700];
    memset(key, 'k', 256);
    key[256] = 0;
    snprintf(buf, sizeof(buf), "%s=v", key);
    assert_int_equal(fl_dt_tracestate_parse(buf, out, sizeof(out)), 1);
    key[256] = 'k';
    key[257] = 0;
    snprintf(buf, sizeof(buf), "%s=v", key);
    assert_int_equal(fl_dt_tracestate_parse(buf, out, sizeof(out)), -1);
    memset(val, 'v', 257);
    val[257] = 0;
    snprintf(buf, sizeof(buf), "k=%s", val);
    assert_int_equal(fl_dt_tracestate_parse(buf, out, sizeof(out)), -1);

    /* 32 members are fine; 33 make the header invalid. */
    fl_buf_t b;
    fl_buf_init(&b, 0);
    for (int i = 0; i < 32; i++)
        fl_buf_printf(&b, "%sk%d=%d", i ? "," : "", i, i);
    assert_int_equal(fl_dt_tracestate_parse((const char *)b.data, out, sizeof(out)), 32);
    fl_buf_printf(&b, ",k32=32");
    assert_int_equal(fl_dt_tracestate_parse((const char *)b.data, out, sizeof(out)), -1);
    fl_buf_dispose(&b);

    /* Over 512 characters: members longer than 128 go first, then from the right. */
    fl_buf_init(&b, 0);
    memset(val, 'x', 200);
    val[200] = 0;
    fl_buf_printf(&b, "a=1,big=%s,b=2", val);
    for (int i = 0; i < 29; i++) /* 32 members in all */
        fl_buf_printf(&b, ",m%02d=%s", i, "0123456789abcdef");
    assert_true(b.len > 512);
    int n = fl_dt_tracestate_parse((const char *)b.data, out, sizeof(out));
    assert_true(n > 0);
    assert_true(strlen(out) <= 512);
    assert_null(strstr(out, "big="));
    assert_non_null(strstr(out, "a=1,b=2,m00="));
    fl_buf_dispose(&b);
}

static void test_demotrace_extract_and_put(void **state)
{
    (void)state;
    fl_dt_context_t c;
    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=1, congo=2", &c);
    assert_true(c.valid);
    assert_string_equal(c.tracestate, "rojo=1,congo=2");
    /* A bad tracestate is dropped; the trace continues. */
    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Bad=1", &c);
    assert_true(c.valid);
    assert_string_equal(c.tracestate, "");
    /* A bad traceparent: a new trace, and the tracestate is ignored. */
    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "rojo=1", &c);
    assert_false(c.valid);
    assert_string_equal(c.tracestate, "");
    fl_dt_extract(NULL, NULL, &c);
    assert_false(c.valid);

    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=1,congo=2", &c);
    assert_int_equal(fl_dt_tracestate_put(&c, "congo", "3"), 0);
    assert_string_equal(c.tracestate, "congo=3,rojo=1");
    assert_int_equal(fl_dt_tracestate_put(&c, "fl", "x"), 0);
    assert_string_equal(c.tracestate, "fl=x,congo=3,rojo=1");
    assert_int_equal(fl_dt_tracestate_put(&c, "Bad", "x"), -1);
    assert_int_equal(fl_dt_tracestate_put(&c, "ok", "a,b"), -1);
    assert_string_equal(c.tracestate, "fl=x,congo=3,rojo=1");
}

/* ---------------------------------------------------------------- configuration */

static void test_demotrace_resource_attrs(void **state)
{
    (void)state;
    fl_dt_attr_t *a;
    size_t n;
    char err[128];
    assert_int_equal(fl_dt_resource_attrs_parse(
                         "service.name=shop, deployment.environment = prod%20eu ,team=a%2Cb%3Dc,,"
                         "k=1,k=2",
                         &a, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 4);
    assert_string_equal(a[0].key, "service.name");
    assert_string_equal(a[0].v.s, "shop");
    assert_string_equal(a[1].key, "deployment.environment");
    assert_string_equal(a[1].v.s, "prod eu");
    assert_string_equal(a[2].key, "team");
    assert_string_equal(a[2].v.s, "a,b=c");
    assert_string_equal(a[3].key, "k");
    assert_string_equal(a[3].v.s, "2"); /* the later value wins */
    assert_int_equal(a[3].type, FL_DT_ATTR_STRING);
    fl_dt_attrs_free(a, n);

    assert_int_equal(fl_dt_resource_attrs_parse("", &a, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(fl_dt_resource_attrs_parse(NULL, &a, &n, NULL, 0), 0);
    /* Any error discards the whole value. */
    static const char *const bad[] = {"a=1,b", "=x", "a=%zz", "a=%4", " =1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fl_dt_resource_attrs_parse(bad[i], &a, &n, err, sizeof(err)), -1);
        assert_null(a);
        assert_int_equal(n, 0);
        assert_true(strlen(err) > 0);
    }
}

static void test_demotrace_config_env(void **state)
{
    (void)state;
    char url[256];
    assert_int_equal(fl_dt_traces_url("http://h:4318", url, sizeof(url)), 0);
    assert_string_equal(url, "http://h:4318/v1/traces");
    assert_int_equal(fl_dt_traces_url("http://h:4318/", url, sizeof(url)), 0);
    assert_string_equal(url, "http://h:4318/v1/traces");
    assert_int_equal(fl_dt_traces_url("https://h/otlp", url, sizeof(url)), 0);
    assert_string_equal(url, "https://h/otlp/v1/traces");
    assert_int_equal(fl_dt_traces_url("http://h:4318", url, 10), -1);

    setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,region=eu%2Dwest", 1);
    unsetenv("OTEL_SERVICE_NAME");
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/", 1);
    unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    setenv("OTEL_BSP_SCHEDULE_DELAY", "250", 1);
    fl_dt_config_t cfg;
    fl_dt_env_t env;
    memset(&cfg, 0, sizeof(cfg));
    memset(&env, 0, sizeof(env));
    fl_dt_config_from_env(&cfg, &env, "dflt");
    assert_string_equal(cfg.service_name, "from-attrs");
    assert_string_equal(cfg.endpoint, "http://collector:4318/v1/traces");
    assert_int_equal(cfg.schedule_delay_ms, 250);
    assert_int_equal(cfg.n_resource_attrs, 2);
    assert_string_equal(cfg.resource_attrs[1].v.s, "eu-west");
    fl_dt_env_dispose(&env);

    /* OTEL_SERVICE_NAME wins; the signal-specific endpoint is used as is. */
    setenv("OTEL_SERVICE_NAME", "from-env", 1);
    setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/custom", 1);
    memset(&cfg, 0, sizeof(cfg));
    memset(&env, 0, sizeof(env));
    fl_dt_config_from_env(&cfg, &env, "dflt");
    assert_string_equal(cfg.service_name, "from-env");
    assert_string_equal(cfg.endpoint, "http://other:9999/custom");
    fl_dt_env_dispose(&env);

    /* Nothing set: the default name; a malformed attribute list is ignored as a whole. */
    unsetenv("OTEL_SERVICE_NAME");
    unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    unsetenv("OTEL_BSP_SCHEDULE_DELAY");
    setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=x,broken", 1);
    memset(&cfg, 0, sizeof(cfg));
    memset(&env, 0, sizeof(env));
    fl_dt_config_from_env(&cfg, &env, "dflt");
    assert_string_equal(cfg.service_name, "dflt");
    assert_null(cfg.endpoint);
    assert_int_equal(cfg.n_resource_attrs, 0);
    fl_dt_env_dispose(&env);
    unsetenv("OTEL_RESOURCE_ATTRIBUTES");

    /* A tracer refuses an endpoint it cannot parse. */
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = "ftp://nope";
    assert_null(fl_dt_tracer_new(&cfg));
}

/* ---------------------------------------------------------------- spans */

static void test_demotrace_span_context(void **state)
{
    (void)state;
    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = "none";
    cfg.service_name = "unit";
    fl_dt_tracer_t *t = fl_dt_tracer_new(&cfg);
    assert_non_null(t);
    assert_string_equal(fl_dt_tracer_service(t), "unit");

    fl_dt_span_t *root = fl_dt_span_start(t, "root", FL_DT_KIND_SERVER, NULL);
    const fl_dt_context_t *rc = fl_dt_span_context(root);
    assert_true(rc->valid);
    assert_false(fl_is_zero(rc->trace_id, 16));
    assert_false(fl_is_zero(rc->span_id, 8));
    assert_int_equal(rc->flags, FL_DT_FLAG_SAMPLED);

    fl_dt_span_t *child = fl_dt_span_start(t, "child", FL_DT_KIND_CLIENT, rc);
    const fl_dt_context_t *cc = fl_dt_span_context(child);
    assert_memory_equal(cc->trace_id, rc->trace_id, 16);
    assert_memory_not_equal(cc->span_id, rc->span_id, 8);
    char tp[FL_DT_TRACEPARENT_LEN];
    assert_int_equal(fl_dt_span_traceparent(child, tp), 55);
    fl_dt_context_t back;
    assert_int_equal(fl_dt_traceparent_parse(tp, &back), 0);
    assert_memory_equal(back.span_id, cc->span_id, 8);

    /* A remote parent: same trace, its tracestate carried on. */
    fl_dt_context_t remote;
    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=1", &remote);
    fl_dt_span_t *srv = fl_dt_span_start(t, "srv", FL_DT_KIND_SERVER, &remote);
    char hex[33];
    assert_string_equal(fl_hex_encode(fl_dt_span_context(srv)->trace_id, 16, hex), TID);
    assert_string_equal(fl_dt_span_context(srv)->tracestate, "rojo=1");

    /* Status: UNSET never overrides, OK is final. */
    fl_dt_span_set_status(srv, FL_DT_STATUS_ERROR, "boom");
    assert_int_equal(fl_dt_span_status(srv), FL_DT_STATUS_ERROR);
    fl_dt_span_set_status(srv, FL_DT_STATUS_UNSET, NULL);
    assert_int_equal(fl_dt_span_status(srv), FL_DT_STATUS_ERROR);
    fl_dt_span_set_status(srv, FL_DT_STATUS_OK, NULL);
    fl_dt_span_set_status(srv, FL_DT_STATUS_ERROR, "late");
    assert_int_equal(fl_dt_span_status(srv), FL_DT_STATUS_OK);

    /* NULL spans are accepted everywhere. */
    fl_dt_span_set_str(NULL, "k", "v");
    fl_dt_span_end(NULL);
    fl_dt_span_end(srv);
    fl_dt_span_end(child);
    fl_dt_span_end(root);
    fl_dt_stats_t st;
    fl_dt_tracer_stats(t, &st);
    assert_int_equal(st.spans_started, 3);
    assert_int_equal(st.spans_ended, 3);
    fl_dt_tracer_free(t, 1000);
}

/* ---------------------------------------------------------------- a fake receiver */

typedef struct receiver {
    fl_net_t *net;
    int port;
    pthread_mutex_t mu;
    int requests;
    int fail_first; /* answer this many with 503 + Retry-After */
    const char *retry_after;
    uint64_t at_ns[16];
    fl_buf_t last_body;
    char last_encoding[32];
    char last_type[64];
} receiver_t;

static void recv_on_body(fl_net_req_t *req, void *ud)
{
    receiver_t *rv = ud;
    size_t len;
    const uint8_t *b = fl_net_req_body(req, &len);
    pthread_mutex_lock(&rv->mu);
    int n = rv->requests++;
    if (n < 16)
        rv->at_ns[n] = fl_time_mono_ns();
    fl_buf_reset(&rv->last_body);
    fl_buf_append(&rv->last_body, b, len);
    const char *ce = fl_net_req_header(req, "content-encoding");
    const char *ct = fl_net_req_header(req, "content-type");
    snprintf(rv->last_encoding, sizeof(rv->last_encoding), "%s", ce ? ce : "");
    snprintf(rv->last_type, sizeof(rv->last_type), "%s", ct ? ct : "");
    int fail = n < rv->fail_first;
    pthread_mutex_unlock(&rv->mu);
    if (fail) {
        fl_net_header_t h[1] = {{"Retry-After", rv->retry_after}};
        fl_net_respond(req, 503, h, 1, "busy", 4);
    } else {
        fl_net_header_t h[1] = {{"Content-Type", "application/x-protobuf"}};
        fl_net_respond(req, 200, h, 1, "", 0);
    }
}

static void receiver_start(receiver_t *rv)
{
    memset(rv, 0, sizeof(*rv));
    pthread_mutex_init(&rv->mu, NULL);
    fl_buf_init(&rv->last_body, 0);
    rv->net = fl_net_new("fake-otlp");
    assert_non_null(rv->net);
    fl_net_listen_opts_t o;
    memset(&o, 0, sizeof(o));
    o.name = "fake-otlp";
    o.host = "127.0.0.1";
    o.port = 0;
    o.handler.on_body = recv_on_body;
    o.handler.ud = rv;
    char err[256];
    assert_int_equal(fl_net_listen(rv->net, &o, err, sizeof(err)), FL_OK);
    rv->port = fl_net_bound_port(rv->net, 0);
    assert_true(rv->port > 0);
    assert_int_equal(fl_net_start(rv->net), FL_OK);
}

static void receiver_stop(receiver_t *rv)
{
    fl_net_shutdown(rv->net, 1000);
    fl_net_free(rv->net);
    fl_buf_dispose(&rv->last_body);
    pthread_mutex_destroy(&rv->mu);
}

static uint8_t *gunzip(const uint8_t *in, size_t n, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return NULL;
    size_t cap = 1 << 20;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = inflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

static const Opentelemetry__Proto__Common__V1__AnyValue *
kv_get(Opentelemetry__Proto__Common__V1__KeyValue **kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i]->key, key) == 0)
            return kv[i]->value;
    return NULL;
}

static void test_demotrace_export_retry_after(void **state)
{
    (void)state;
    receiver_t rv;
    receiver_start(&rv);
    rv.fail_first = 1;
    rv.retry_after = "1";

    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", rv.port);
    fl_dt_attr_t res[1] = {{.key = "deployment.environment", .type = FL_DT_ATTR_STRING}};
    res[0].v.s = "test";
    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.service_name = "unit-export";
    cfg.endpoint = url;
    cfg.resource_attrs = res;
    cfg.n_resource_attrs = 1;
    cfg.schedule_delay_ms = 50;
    cfg.retry_initial_ms = 50;
    cfg.quiet = 1;
    fl_dt_tracer_t *t = fl_dt_tracer_new(&cfg);
    assert_non_null(t);

    fl_dt_span_t *s = fl_dt_span_start(t, "GET /thing", FL_DT_KIND_SERVER, NULL);
    fl_dt_span_set_str(s, "http.request.method", "GET");
    fl_dt_span_set_int(s, "http.response.status_code", 500);
    fl_dt_span_set_double(s, "ratio", 0.25);
    fl_dt_span_set_bool(s, "flag", 1);
    fl_dt_span_set_str(s, "http.request.method", "POST"); /* the last value wins */
    fl_dt_span_record_exception(s, "IOError", "disk on fire", "at main()\nat start()");
    fl_dt_span_set_status(s, FL_DT_STATUS_ERROR, "it broke");
    uint8_t tid[16], sid[8];
    memcpy(tid, fl_dt_span_context(s)->trace_id, 16);
    memcpy(sid, fl_dt_span_context(s)->span_id, 8);
    fl_dt_span_end(s);

    assert_int_equal(fl_dt_tracer_flush(t, 8000), 0);
    fl_dt_stats_t st;
    fl_dt_tracer_stats(t, &st);
    assert_int_equal(st.spans_exported, 1);
    assert_int_equal(st.spans_failed, 0);
    assert_int_equal(st.export_requests, 2);
    assert_int_equal(st.export_retries, 1);
    assert_int_equal(st.last_retry_after_ms, 1000);
    assert_int_equal(st.last_status, 200);

    pthread_mutex_lock(&rv.mu);
    assert_int_equal(rv.requests, 2);
    /* Retry-After: 1 was honoured (not the 50 ms backoff). */
    assert_true(rv.at_ns[1] - rv.at_ns[0] >= 950000000ull);
    assert_string_equal(rv.last_encoding, "gzip");
    assert_string_equal(rv.last_type, "application/x-protobuf");
    size_t rawlen = 0;
    uint8_t *raw = gunzip(rv.last_body.data, rv.last_body.len, &rawlen);
    pthread_mutex_unlock(&rv.mu);
    assert_non_null(raw);

    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, rawlen, raw);
    assert_non_null(req);
    assert_int_equal(req->n_resource_spans, 1);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
    const Opentelemetry__Proto__Common__V1__AnyValue *v =
        kv_get(rs->resource->attributes, rs->resource->n_attributes, "service.name");
    assert_non_null(v);
    assert_string_equal(v->string_value, "unit-export");
    v = kv_get(rs->resource->attributes, rs->resource->n_attributes, "deployment.environment");
    assert_non_null(v);
    assert_string_equal(v->string_value, "test");
    assert_int_equal(rs->n_scope_spans, 1);
    assert_int_equal(rs->scope_spans[0]->n_spans, 1);
    Opentelemetry__Proto__Trace__V1__Span *sp = rs->scope_spans[0]->spans[0];
    assert_string_equal(sp->name, "GET /thing");
    assert_int_equal(sp->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
    assert_int_equal(sp->trace_id.len, 16);
    assert_memory_equal(sp->trace_id.data, tid, 16);
    assert_memory_equal(sp->span_id.data, sid, 8);
    assert_int_equal(sp->parent_span_id.len, 0);
    assert_true(sp->end_time_unix_nano >= sp->start_time_unix_nano);
    assert_true(sp->start_time_unix_nano > 1600000000000000000ull);
    v = kv_get(sp->attributes, sp->n_attributes, "http.request.method");
    assert_string_equal(v->string_value, "POST");
    v = kv_get(sp->attributes, sp->n_attributes, "http.response.status_code");
    assert_int_equal(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
    assert_int_equal(v->int_value, 500);
    v = kv_get(sp->attributes, sp->n_attributes, "ratio");
    assert_true(v->double_value == 0.25);
    v = kv_get(sp->attributes, sp->n_attributes, "flag");
    assert_int_equal(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE);
    assert_true(v->bool_value);
    assert_int_equal(sp->n_events, 1);
    assert_string_equal(sp->events[0]->name, "exception");
    v = kv_get(sp->events[0]->attributes, sp->events[0]->n_attributes, "exception.type");
    assert_string_equal(v->string_value, "IOError");
    v = kv_get(sp->events[0]->attributes, sp->events[0]->n_attributes, "exception.message");
    assert_string_equal(v->string_value, "disk on fire");
    v = kv_get(sp->events[0]->attributes, sp->events[0]->n_attributes, "exception.stacktrace");
    assert_string_equal(v->string_value, "at main()\nat start()");
    assert_non_null(sp->status);
    assert_int_equal(sp->status->code,
                     OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    assert_string_equal(sp->status->message, "it broke");
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    free(raw);
    fl_dt_tracer_free(t, 2000);
    receiver_stop(&rv);
}

/* A port with nothing listening (bound, then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* Voluntary context switches of the calling thread so far. A call that blocked (on a lock, a
 * condition, I/O) adds at least one; a call that only lost the CPU to a busy machine (ASan, a
 * loaded CI runner) adds none, however long it took. */
static long voluntary_switches(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_nvcsw;
}

static void test_demotrace_export_gives_up_when_down(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", dead_port());
    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.service_name = "unit-down";
    cfg.endpoint = url;
    cfg.schedule_delay_ms = 20;
    cfg.retry_initial_ms = 50;
    cfg.retry_max_ms = 200;
    cfg.retry_max_elapsed_ms = 700;
    cfg.quiet = 1;
    fl_dt_tracer_t *t = fl_dt_tracer_new(&cfg);
    assert_non_null(t);
    uint64_t t0 = fl_time_mono_ns();
    long v0 = voluntary_switches();
    for (int i = 0; i < 10; i++)
        fl_dt_span_end(fl_dt_span_start(t, "op", FL_DT_KIND_INTERNAL, NULL));
    /* Span end is never slowed down by a dead receiver: quick, or (on a machine busy enough
     * to hold this thread off the CPU for 100 ms) at least it never waited for anything. */
    uint64_t ended = fl_time_mono_ns() - t0;
    if (ended >= 100000000ull && voluntary_switches() != v0)
        fail_msg("10 spans took %.1f ms and blocked", (double)ended / 1e6);
    assert_int_equal(fl_dt_tracer_flush(t, 10000), 0);
    uint64_t took = fl_time_mono_ns() - t0;
    fl_dt_stats_t st;
    fl_dt_tracer_stats(t, &st);
    assert_int_equal(st.spans_exported, 0);
    assert_int_equal(st.spans_failed, 10);
    assert_int_equal(st.last_status, -1);
    assert_true(st.export_retries >= 1);
    /* It gave up within the retry budget (plus scheduling slack), not forever. */
    assert_true(took < 3000000000ull);
    /* Shutdown with spans still queued against a dead receiver returns promptly. */
    for (int i = 0; i < 5; i++)
        fl_dt_span_end(fl_dt_span_start(t, "late", FL_DT_KIND_INTERNAL, NULL));
    t0 = fl_time_mono_ns();
    fl_dt_tracer_free(t, 300);
    assert_true(fl_time_mono_ns() - t0 < 2000000000ull);
}

static void test_demotrace_span_end_never_blocks(void **state)
{
    (void)state;
    /* A receiver that accepts connections (kernel backlog) but never answers. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", ntohs(a.sin_port));

    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.service_name = "unit-stuck";
    cfg.endpoint = url;
    cfg.max_queue = 64;
    cfg.max_batch = 8;
    cfg.schedule_delay_ms = 10;
    cfg.export_timeout_ms = 1500;
    cfg.retry_max_elapsed_ms = 1000;
    cfg.quiet = 1;
    fl_dt_tracer_t *t = fl_dt_tracer_new(&cfg);
    assert_non_null(t);
    /* Let the exporter take a first batch and hang on the silent receiver. */
    for (int i = 0; i < 8; i++)
        fl_dt_span_end(fl_dt_span_start(t, "first", FL_DT_KIND_INTERNAL, NULL));
    struct timespec ts = {0, 100000000L};
    nanosleep(&ts, NULL);

    const int n = 5000;
    uint64_t worst = 0, t0 = fl_time_mono_ns();
    int preempted = 0;
    for (int i = 0; i < n; i++) {
        fl_dt_span_t *s = fl_dt_span_start(t, "op", FL_DT_KIND_INTERNAL, NULL);
        fl_dt_span_set_int(s, "i", i);
        long v0 = voluntary_switches();
        uint64_t b = fl_time_mono_ns();
        fl_dt_span_end(s);
        uint64_t d = fl_time_mono_ns() - b;
        /* A slow call that never blocked was preempted, not held up by the exporter. */
        if (d >= 50000000ull && voluntary_switches() == v0) {
            preempted++;
            continue;
        }
        if (d > worst)
            worst = d;
    }
    uint64_t total = fl_time_mono_ns() - t0;
    if (preempted)
        print_message("%d span ends took 50 ms or more without blocking (preempted)\n", preempted);
    fl_dt_stats_t st;
    fl_dt_tracer_stats(t, &st);
    /* Every span was either queued or dropped and counted; none waited for the exporter. */
    assert_int_equal(st.spans_ended + st.spans_dropped, (uint64_t)n + 8);
    assert_true(st.spans_dropped >= (uint64_t)n - 64);
    assert_true(worst < 50000000ull);   /* 50 ms, generous for sanitizer builds */
    assert_true(total < 2000000000ull); /* 5000 spans well under the 1.5 s export timeout */
    assert_int_equal(st.spans_exported, 0);

    uint64_t f0 = fl_time_mono_ns();
    fl_dt_tracer_free(t, 200);
    /* At worst the attempt in progress runs out its own timeout. */
    assert_true(fl_time_mono_ns() - f0 < 3000000000ull);
    close(fd);
}

static void test_demotrace_unsampled_parent(void **state)
{
    (void)state;
    receiver_t rv;
    receiver_start(&rv);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", rv.port);
    fl_dt_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = url;
    cfg.schedule_delay_ms = 20;
    cfg.no_gzip = 1;
    fl_dt_tracer_t *t = fl_dt_tracer_new(&cfg);
    fl_dt_context_t p;
    fl_dt_extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", NULL, &p);
    fl_dt_span_t *s = fl_dt_span_start(t, "unsampled", FL_DT_KIND_SERVER, &p);
    char tp[FL_DT_TRACEPARENT_LEN];
    fl_dt_span_traceparent(s, tp);
    assert_memory_equal(tp + 3, TID, 32);
    assert_string_equal(tp + 53, "00"); /* the decision propagates */
    fl_dt_span_end(s);
    fl_dt_span_t *k = fl_dt_span_start(t, "sampled", FL_DT_KIND_INTERNAL, NULL);
    fl_dt_span_end(k);
    assert_int_equal(fl_dt_tracer_flush(t, 5000), 0);
    fl_dt_stats_t st;
    fl_dt_tracer_stats(t, &st);
    assert_int_equal(st.spans_exported, 1);
    pthread_mutex_lock(&rv.mu);
    assert_string_equal(rv.last_encoding, "");
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, rv.last_body.len, rv.last_body.data);
    pthread_mutex_unlock(&rv.mu);
    assert_non_null(req);
    assert_string_equal(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "sampled");
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    fl_dt_tracer_free(t, 1000);
    receiver_stop(&rv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demotrace_traceparent_valid),
        cmocka_unit_test(test_demotrace_traceparent_invalid),
        cmocka_unit_test(test_demotrace_traceparent_format),
        cmocka_unit_test(test_demotrace_tracestate),
        cmocka_unit_test(test_demotrace_extract_and_put),
        cmocka_unit_test(test_demotrace_resource_attrs),
        cmocka_unit_test(test_demotrace_config_env),
        cmocka_unit_test(test_demotrace_span_context),
        cmocka_unit_test(test_demotrace_export_retry_after),
        cmocka_unit_test(test_demotrace_export_gives_up_when_down),
        cmocka_unit_test(test_demotrace_span_end_never_blocks),
        cmocka_unit_test(test_demotrace_unsampled_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
