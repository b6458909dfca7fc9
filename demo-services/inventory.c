/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-demo-inventory: reserves order items (checkout -> inventory -> stock), one stock
 * call per item, and lists what is in stock. */
#include "svc.h"

#include <stdio.h>
#include <string.h>

/* Relay a failed stock call as this service's own failure. */
static void fail_from_stock(demo_req_t *r, const demo_call_result_t *res)
{
    const char *m = json_string_value(json_object_get(res->json, "error"));
    if (res->status == -2 || res->status == 504)
        demo_reply_error(r, 504, "timeout", "stock store timed out");
    else if (res->status > 0 && res->status < 500)
        demo_reply_error(r, res->status, NULL, "stock store refused: %s", m ? m : "bad request");
    else
        demo_reply_error(r, 502, NULL, "stock store failed: %s",
                         res->status > 0 ? (m ? m : "server error") : res->error);
}

static void reserve(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    json_t *items = json_object_get(in, "items");
    if (bad || !json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > 50) {
        demo_reply_error(r, 400, NULL,
                         "the body must be {\"items\": [{\"sku\", \"quantity\"}, ...]} with 1 "
                         "to 50 items");
        return;
    }
    fl_dt_span_set_int(demo_req_span(r), "inventory.item_count", (int64_t)json_array_size(items));
    demo_work(r, 4);
    json_t *reserved = json_array();
    json_int_t total = 0;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *sku = json_string_value(json_object_get(it, "sku"));
        json_t *q = json_object_get(it, "quantity");
        if (!sku || !json_is_integer(q)) {
            json_decref(reserved);
            demo_reply_error(r, 400, NULL, "item %zu needs a string sku and an integer quantity",
                             i);
            return;
        }
        json_t *req = json_pack("{s:s,s:O}", "sku", sku, "quantity", q);
        demo_call_result_t res;
        demo_call(r, "stock", "POST", "/stock/reserve", req, &res);
        json_decref(req);
        if (res.status != 200) {
            fail_from_stock(r, &res);
            json_decref(res.json);
            json_decref(reserved);
            return;
        }
        json_int_t price = json_integer_value(json_object_get(res.json, "price_cents"));
        total += price * json_integer_value(q);
        json_array_append_new(reserved, json_pack("{s:s,s:O,s:I,s:O?}", "sku", sku, "quantity", q,
                                                  "price_cents", price, "remaining",
                                                  json_object_get(res.json, "remaining")));
        json_decref(res.json);
    }
    json_t *out = json_object();
    json_object_set_new(out, "reserved", reserved);
    json_object_set_new(out, "total_cents", json_integer(total));
    demo_reply_json(r, 200, out);
}

static void items(demo_req_t *r)
{
    demo_work(r, 3);
    demo_call_result_t res;
    demo_call(r, "stock", "GET", "/stock", NULL, &res);
    if (res.status != 200) {
        fail_from_stock(r, &res);
        json_decref(res.json);
        return;
    }
    json_t *out = json_object();
    json_object_set(out, "items", json_object_get(res.json, "items"));
    json_decref(res.json);
    demo_reply_json(r, 200, out);
}

static const demo_route_t routes[] = {{"POST", "/reserve", reserve}, {"GET", "/items", items}};

int main(int argc, char **argv)
{
    static const demo_service_def_t def = {
        .name = "inventory",
        .summary = "The inventory service of the faultline demo: POST /reserve reserves order "
                   "items in the stock store, GET /items lists them.",
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
    };
    return demo_main(&def, argc, argv);
}
