/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: W3C trace context parsing in the demo tracing library. The input (cut at
 * the first NUL) is parsed as traceparent, tracestate, a traceparent/tracestate pair and
 * OTEL_RESOURCE_ATTRIBUTES. Invariants: a parsed traceparent formats back to a value that
 * parses to the same context; normalised tracestate fits and re-parses to itself. */
#include "fuzz_util.h"

#include <faultline/demotrace.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_alloc_begin(data, size);
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = 0;

    fl_dt_context_t ctx, again;
    int rc = fl_dt_traceparent_parse(s, &ctx);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK(ctx.valid == 1 && ctx.remote == 1 && ctx.tracestate[0] == 0);
        FUZZ_CHECK(!fl_is_zero(ctx.trace_id, 16) && !fl_is_zero(ctx.span_id, 8));
        char out[FL_DT_TRACEPARENT_LEN];
        size_t n = fl_dt_traceparent_format(&ctx, out);
        FUZZ_CHECK(n == 55 && strlen(out) == 55);
        FUZZ_CHECK(fl_dt_traceparent_parse(out, &again) == 0);
        FUZZ_CHECK(!memcmp(again.trace_id, ctx.trace_id, 16));
        FUZZ_CHECK(!memcmp(again.span_id, ctx.span_id, 8));
        FUZZ_CHECK((again.flags & FL_DT_FLAG_SAMPLED) == (ctx.flags & FL_DT_FLAG_SAMPLED));
    } else {
        FUZZ_CHECK(ctx.valid == 0);
    }

    char ts[FL_DT_TRACESTATE_MAX + 1], ts2[FL_DT_TRACESTATE_MAX + 1];
    int m = fl_dt_tracestate_parse(s, ts, sizeof(ts));
    FUZZ_CHECK(m >= -1 && m <= FL_DT_TRACESTATE_MEMBERS);
    FUZZ_CHECK(strlen(ts) <= FL_DT_TRACESTATE_MAX);
    if (m < 0)
        FUZZ_CHECK(ts[0] == 0);
    if (m > 0) {
        FUZZ_CHECK(fl_dt_tracestate_parse(ts, ts2, sizeof(ts2)) == m);
        FUZZ_CHECK(strcmp(ts, ts2) == 0);
    }

    /* split at the first '|' into traceparent | tracestate */
    char *bar = strchr(s, '|');
    if (bar) {
        *bar = 0;
        fl_dt_extract(s, bar + 1, &ctx);
        FUZZ_CHECK(strlen(ctx.tracestate) <= FL_DT_TRACESTATE_MAX);
        if (!ctx.valid)
            FUZZ_CHECK(ctx.tracestate[0] == 0);
        if (ctx.valid && fl_dt_tracestate_put(&ctx, "fz", "1") == 0)
            FUZZ_CHECK(strncmp(ctx.tracestate, "fz=1", 4) == 0);
        *bar = '|';
    }

    fl_dt_attr_t *attrs = NULL;
    size_t n_attrs = 0;
    char err[128];
    if (fl_dt_resource_attrs_parse(s, &attrs, &n_attrs, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < n_attrs; i++)
            FUZZ_CHECK(attrs[i].key && attrs[i].key[0] && attrs[i].type == FL_DT_ATTR_STRING &&
                       attrs[i].v.s);
    } else {
        FUZZ_CHECK(attrs == NULL && n_attrs == 0);
    }
    fl_dt_attrs_free(attrs, n_attrs);
    free(s);
    fuzz_alloc_end();
    return 0;
}
