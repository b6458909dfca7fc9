/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-demo-checkout: the demo's front door on :5000. POST /checkout reserves the
 * order's items (inventory -> stock) and charges it (payment -> fraud) in one trace. */
#include "svc.h"

#include <stdio.h>
#include <string.h>

static const char *const skus[] = {"SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004",
                                   "SKU-1005", "SKU-1006", "SKU-1007", "SKU-1008"};
static const char *const methods[] = {"card", "card", "card", "paypal", "apple_pay"};

static size_t pick(size_t n)
{
    size_t i = (size_t)(fl_dt_random_unit() * (double)n);
    return i < n ? i : n - 1;
}

/* A random order like a shopper's: 1-3 items, quantity 1-2. */
static json_t *random_items(void)
{
    json_t *items = json_array();
    size_t n = 1 + pick(3);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, json_pack("{s:s,s:i}", "sku",
                                               skus[pick(sizeof(skus) / sizeof(skus[0]))],
                                               "quantity", 1 + (int)pick(2)));
    return items;
}

/* items: an array of SKU strings or {sku|id|name, quantity|qty} objects. NULL when bad. */
static json_t *normalise_items(json_t *in)
{
    if (!json_is_array(in) || json_array_size(in) == 0 || json_array_size(in) > 50)
        return NULL;
    json_t *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(in, i, it)
    {
        const char *sku = NULL;
        json_int_t q = 1;
        if (json_is_string(it)) {
            sku = json_string_value(it);
        } else if (json_is_object(it)) {
            const char *keys[] = {"sku", "id", "product_id", "name", "item"};
            for (size_t k = 0; k < 5 && !sku; k++)
                sku = json_string_value(json_object_get(it, keys[k]));
            json_t *jq = json_object_get(it, "quantity");
            if (!jq)
                jq = json_object_get(it, "qty");
            if (jq && !json_is_integer(jq)) {
                json_decref(out);
                return NULL;
            }
            if (jq)
                q = json_integer_value(jq);
        }
        if (!sku || !*sku || strlen(sku) > 64 || q < 1 || q > 1000) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_pack("{s:s,s:I}", "sku", sku, "quantity", q));
    }
    return out;
}

/* Answer for a failed dependency call: timeouts become 504, failures 502, refusals pass. */
static void fail_from(demo_req_t *r, const char *dep, const demo_call_result_t *res)
{
    const char *m = json_string_value(json_object_get(res->json, "error"));
    if (res->status == -2 || res->status == 504)
        demo_reply_error(r, 504, "timeout", "%s timed out%s%s", dep, m ? ": " : "", m ? m : "");
    else if (res->status > 0 && res->status < 500)
        demo_reply_error(r, res->status, NULL, "%s refused the request: %s", dep,
                         m ? m : "bad request");
    else if (res->status > 0)
        demo_reply_error(r, 502, NULL, "%s failed with %d%s%s", dep, res->status, m ? ": " : "",
                         m ? m : "");
    else
        demo_reply_error(r, 502, NULL, "%s is unreachable: %s", dep, res->error);
}

static void checkout(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    if (bad || (in && !json_is_object(in))) {
        demo_reply_error(r, 400, NULL,
                         "the body must be a JSON order {\"items\": [...], \"payment_method\": "
                         "\"card\"} or empty");
        return;
    }
    json_t *jitems = json_object_get(in, "items");
    json_t *items = jitems ? normalise_items(jitems) : random_items();
    if (!items) {
        demo_reply_error(r, 400, NULL,
                         "items must be an array of 1-50 SKU strings or {\"sku\", \"quantity\"} "
                         "objects");
        return;
    }
    json_t *jm = json_object_get(in, "payment_method");
    if (jm && !json_is_string(jm)) {
        json_decref(items);
        demo_reply_error(r, 400, NULL, "payment_method must be a string");
        return;
    }
    const char *method = jm ? json_string_value(jm) : methods[pick(5)];
    uint8_t oid[6];
    char hex[13], order_id[20];
    fl_dt_random_id(oid, sizeof(oid));
    fl_hex_encode(oid, sizeof(oid), hex);
    snprintf(order_id, sizeof(order_id), "ord_%s", hex);
    fl_dt_span_t *span = demo_req_span(r);
    fl_dt_span_set_str(span, "order.id", order_id);
    fl_dt_span_set_int(span, "order.item_count", (int64_t)json_array_size(items));
    fl_dt_span_set_str(span, "payment.method", method);

    demo_work(r, 5); /* validate the cart */
    json_t *req = json_pack("{s:O}", "items", items);
    demo_call_result_t inv;
    demo_call(r, "inventory", "POST", "/reserve", req, &inv);
    json_decref(req);
    if (inv.status != 200) {
        fail_from(r, "inventory", &inv);
        json_decref(inv.json);
        json_decref(items);
        return;
    }
    json_int_t total = json_integer_value(json_object_get(inv.json, "total_cents"));
    json_decref(inv.json);
    fl_dt_span_set_int(span, "order.total_cents", total);

    req = json_pack("{s:I,s:s,s:s}", "amount_cents", total, "payment_method", method, "order_id",
                    order_id);
    demo_call_result_t pay;
    demo_call(r, "payment", "POST", "/charge", req, &pay);
    json_decref(req);
    if (pay.status != 200) {
        fail_from(r, "payment", &pay);
        json_decref(pay.json);
        json_decref(items);
        return;
    }
    const char *txn = json_string_value(json_object_get(pay.json, "transaction_id"));
    demo_work(r, 3); /* write the order */
    char tp[FL_DT_TRACEPARENT_LEN];
    fl_dt_span_traceparent(span, tp);
    json_t *out = json_object();
    json_object_set_new(out, "order_id", json_string(order_id));
    json_object_set_new(out, "status", json_string("confirmed"));
    json_object_set_new(out, "items", items);
    json_object_set_new(out, "total_cents", json_integer(total));
    json_object_set_new(out, "payment_method", json_string(method));
    json_object_set_new(out, "transaction_id", txn ? json_string(txn) : json_null());
    json_object_set_new(out, "trace_id", json_stringn(tp + 3, 32));
    json_decref(pay.json);
    demo_reply_json(r, 200, out);
}

/* The MVP's direct endpoints: relay to one dependency. */
static void payment(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    if (bad || (in && !json_is_object(in))) {
        demo_reply_error(r, 400, NULL, "the body must be a JSON object or empty");
        return;
    }
    json_t *req = in ? json_incref(in)
                     : json_pack("{s:i,s:s}", "amount_cents", 4999, "payment_method", "card");
    demo_work(r, 2);
    demo_call_result_t res;
    demo_call(r, "payment", "POST", "/charge", req, &res);
    json_decref(req);
    if (res.status != 200)
        fail_from(r, "payment", &res);
    else
        demo_reply_json(r, 200, json_incref(res.json));
    json_decref(res.json);
}

static void inventory(demo_req_t *r)
{
    demo_work(r, 2);
    demo_call_result_t res;
    demo_call(r, "inventory", "GET", "/items", NULL, &res);
    if (res.status != 200)
        fail_from(r, "inventory", &res);
    else
        demo_reply_json(r, 200, json_incref(res.json));
    json_decref(res.json);
}

static const demo_route_t routes[] = {
    {"POST", "/checkout", checkout},
    {"POST", "/payment", payment},
    {"GET", "/inventory", inventory},
};

int main(int argc, char **argv)
{
    static const demo_service_def_t def = {
        .name = "checkout",
        .summary = "The checkout service of the faultline demo (the MVP's :5000): POST /checkout "
                   "with an optional JSON order {items, payment_method} reserves the items and "
                   "charges the order; POST /payment, GET /inventory, GET /health.",
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
    };
    return demo_main(&def, argc, argv);
}
