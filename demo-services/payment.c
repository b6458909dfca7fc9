/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-demo-payment: charges an order (checkout -> payment -> fraud). Calls the fraud
 * service before authorising, so a fraud failure cascades up through payment. */
#include "svc.h"

#include <stdio.h>
#include <string.h>

static void charge(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    if (bad || (in && !json_is_object(in))) {
        demo_reply_error(r, 400, NULL,
                         "the body must be a JSON object {amount_cents, payment_method}");
        return;
    }
    json_t *jamount = json_object_get(in, "amount_cents");
    if (jamount && (!json_is_integer(jamount) || json_integer_value(jamount) < 0)) {
        demo_reply_error(r, 400, NULL, "amount_cents must be a non-negative integer");
        return;
    }
    json_int_t amount = jamount ? json_integer_value(jamount) : 4999;
    const char *method = json_string_value(json_object_get(in, "payment_method"));
    if (!method)
        method = "card";
    fl_dt_span_t *span = demo_req_span(r);
    fl_dt_span_set_str(span, "payment.method", method);
    fl_dt_span_set_int(span, "payment.amount_cents", amount);

    demo_work(r, 20); /* talk to the card network */
    json_t *req =
        json_pack("{s:I,s:s}", "amount_cents", (json_int_t)amount, "payment_method", method);
    demo_call_result_t fr;
    demo_call(r, "fraud", "POST", "/score", req, &fr);
    json_decref(req);
    if (fr.status != 200) {
        if (fr.status == -2 || fr.status == 504)
            demo_reply_error(r, 504, "timeout", "fraud check timed out");
        else if (fr.status > 0 && fr.status < 500)
            demo_reply_error(r, fr.status, NULL, "fraud check refused the payment");
        else
            demo_reply_error(r, 502, NULL, "fraud check failed (%s)",
                             fr.status > 0 ? "server error" : fr.error);
        json_decref(fr.json);
        return;
    }
    double score = json_number_value(json_object_get(fr.json, "score"));
    json_decref(fr.json);
    demo_work(r, 15); /* authorise and capture */
    uint8_t id[8];
    char hex[17];
    fl_dt_random_id(id, sizeof(id));
    fl_hex_encode(id, sizeof(id), hex);
    char txn[32];
    snprintf(txn, sizeof(txn), "txn_%s", hex);
    fl_dt_span_set_str(span, "payment.transaction_id", txn);
    json_t *out = json_object();
    json_object_set_new(out, "transaction_id", json_string(txn));
    json_object_set_new(out, "status", json_string("charged"));
    json_object_set_new(out, "amount_cents", json_integer(amount));
    json_object_set_new(out, "payment_method", json_string(method));
    json_object_set_new(out, "fraud_score", json_real(score));
    demo_reply_json(r, 200, out);
}

static const demo_route_t routes[] = {{"POST", "/charge", charge}};

int main(int argc, char **argv)
{
    static const demo_service_def_t def = {
        .name = "payment",
        .summary = "The payment service of the faultline demo: POST /charge charges an order "
                   "after a fraud check.",
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
    };
    return demo_main(&def, argc, argv);
}
