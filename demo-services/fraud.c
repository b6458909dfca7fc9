/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-demo-fraud: scores a payment for fraud risk (payment -> fraud). A leaf service
 * with a little CPU-ish latency. */
#include "svc.h"

#include <string.h>

static void score(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    if (bad || (in && !json_is_object(in))) {
        demo_reply_error(r, 400, NULL,
                         "the body must be a JSON object {amount_cents, payment_method}");
        return;
    }
    json_int_t amount = json_integer_value(json_object_get(in, "amount_cents"));
    const char *method = json_string_value(json_object_get(in, "payment_method"));
    if (amount < 0) {
        demo_reply_error(r, 400, NULL, "amount_cents must not be negative");
        return;
    }
    demo_work(r, 12);
    /* Riskier for big amounts and for some methods; never decisive in the demo. */
    double s = 0.05 + 0.25 * fl_dt_random_unit();
    if (amount > 50000)
        s += 0.2;
    if (method && strcmp(method, "crypto") == 0)
        s += 0.3;
    if (s > 0.99)
        s = 0.99;
    const char *decision = s > 0.7 ? "review" : "approve";
    fl_dt_span_set_double(demo_req_span(r), "fraud.score", s);
    fl_dt_span_set_str(demo_req_span(r), "fraud.decision", decision);
    json_t *out = json_object();
    json_object_set_new(out, "score", json_real(s));
    json_object_set_new(out, "decision", json_string(decision));
    demo_reply_json(r, 200, out);
}

static const demo_route_t routes[] = {{"POST", "/score", score}};

int main(int argc, char **argv)
{
    static const demo_service_def_t def = {
        .name = "fraud",
        .summary = "The fraud service of the faultline demo: POST /score rates a payment.",
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
    };
    return demo_main(&def, argc, argv);
}
