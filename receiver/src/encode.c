/* SPDX-License-Identifier: Apache-2.0 */
/* Response encodings: Export*ServiceResponse with partial success and google.rpc.Status
 * (with RetryInfo), in protobuf (protobuf-c) and in the OTLP/JSON mapping. */
#include "receiver_int.h"

#include <google/rpc/error_details.pb-c.h>
#include <google/rpc/status.pb-c.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h>
#include <opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h>
#include <opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h>
#include <string.h>

#define RETRY_INFO_TYPE_URL "type.googleapis.com/google.rpc.RetryInfo"

static int pack_into(const ProtobufCMessage *m, fl_buf_t *out)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    int rc = fl_buf_reserve(out, n);
    if (rc != FL_OK)
        return rc;
    protobuf_c_message_pack(m, out->data + out->len);
    out->len += n;
    out->data[out->len] = 0;
    return FL_OK;
}

int fl_otlp_encode_export_response(int signal, int format, size_t rejected, const char *msg,
                                   fl_buf_t *out)
{
    int empty = rejected == 0 && msg == NULL;
    if (format == FL_OTLP_JSON) {
        static const char *const counter[] = {"rejectedSpans", "rejectedLogRecords",
                                              "rejectedDataPoints"};
        if (signal < FL_OTLP_TRACES || signal > FL_OTLP_METRICS)
            return FL_ERR_INVALID;
        if (empty)
            return fl_buf_append(out, "{}", 2);
        fl_jw_t w;
        char num[24];
        fl_jw_init(&w, out);
        fl_jw_obj_begin(&w);
        fl_jw_key(&w, "partialSuccess");
        fl_jw_obj_begin(&w);
        if (rejected) {
            /* proto3 JSON writes int64 as a decimal string. */
            snprintf(num, sizeof(num), "%zu", rejected);
            fl_jw_key(&w, counter[signal]);
            fl_jw_str(&w, num);
        }
        if (msg && *msg) {
            fl_jw_key(&w, "errorMessage");
            fl_jw_str(&w, msg);
        }
        fl_jw_obj_end(&w);
        fl_jw_obj_end(&w);
        return w.err;
    }
    if (format != FL_OTLP_PROTOBUF)
        return FL_ERR_INVALID;
    if (empty)
        return FL_OK; /* an empty message: zero bytes */
    char *m = (char *)(msg ? msg : "");
    switch (signal) {
    case FL_OTLP_TRACES: {
        Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
            OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
        Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse r =
            OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
        ps.rejected_spans = (int64_t)rejected;
        ps.error_message = m;
        r.partial_success = &ps;
        return pack_into(&r.base, out);
    }
    case FL_OTLP_LOGS: {
        Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess ps =
            OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;
        Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse r =
            OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
        ps.rejected_log_records = (int64_t)rejected;
        ps.error_message = m;
        r.partial_success = &ps;
        return pack_into(&r.base, out);
    }
    case FL_OTLP_METRICS: {
        Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsPartialSuccess ps =
            OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_PARTIAL_SUCCESS__INIT;
        Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse r =
            OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_RESPONSE__INIT;
        ps.rejected_data_points = (int64_t)rejected;
        ps.error_message = m;
        r.partial_success = &ps;
        return pack_into(&r.base, out);
    }
    default:
        return FL_ERR_INVALID;
    }
}

int fl_otlp_encode_trace_response(int format, size_t rejected, const char *msg, fl_buf_t *out)
{
    return fl_otlp_encode_export_response(FL_OTLP_TRACES, format, rejected, msg, out);
}

int fl_otlp_encode_status(int format, int grpc_code, const char *msg, unsigned retry_after_s,
                          fl_buf_t *out)
{
    if (format == FL_OTLP_JSON) {
        fl_jw_t w;
        char delay[24];
        fl_jw_init(&w, out);
        fl_jw_obj_begin(&w);
        fl_jw_key(&w, "code");
        fl_jw_int(&w, grpc_code);
        if (msg && *msg) {
            fl_jw_key(&w, "message");
            fl_jw_str(&w, msg);
        }
        if (retry_after_s > 0) {
            /* google.protobuf.Duration in JSON: seconds with an "s" suffix. */
            snprintf(delay, sizeof(delay), "%us", retry_after_s);
            fl_jw_key(&w, "details");
            fl_jw_arr_begin(&w);
            fl_jw_obj_begin(&w);
            fl_jw_key(&w, "@type");
            fl_jw_str(&w, RETRY_INFO_TYPE_URL);
            fl_jw_key(&w, "retryDelay");
            fl_jw_str(&w, delay);
            fl_jw_obj_end(&w);
            fl_jw_arr_end(&w);
        }
        fl_jw_obj_end(&w);
        return w.err;
    }
    if (format != FL_OTLP_PROTOBUF)
        return FL_ERR_INVALID;
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *details[1] = {&any};
    Google__Rpc__RetryInfo ri = GOOGLE__RPC__RETRY_INFO__INIT;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    uint8_t ri_buf[32];
    st.code = grpc_code;
    st.message = (char *)(msg ? msg : "");
    if (retry_after_s > 0) {
        d.seconds = retry_after_s;
        ri.retry_delay = &d;
        size_t n = google__rpc__retry_info__get_packed_size(&ri);
        if (n > sizeof(ri_buf))
            return FL_ERR_INVALID;
        google__rpc__retry_info__pack(&ri, ri_buf);
        any.type_url = (char *)RETRY_INFO_TYPE_URL;
        any.value.data = ri_buf;
        any.value.len = n;
        st.details = details;
        st.n_details = 1;
    }
    return pack_into(&st.base, out);
}
