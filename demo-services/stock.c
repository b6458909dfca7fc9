/* SPDX-License-Identifier: Apache-2.0 */
/* faultline-demo-stock: the stock store (inventory -> stock). Really reads and writes an
 * SQLite file; every statement gets a CLIENT span with db.system=sqlite. */
#include "svc.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sqlite3 *db;
static pthread_mutex_t db_mu = PTHREAD_MUTEX_INITIALIZER;
static char db_path[1024];
static const char *db_name; /* file name, for db.name */

/* A CLIENT span for one statement, named "<OPERATION> <table>" as the conventions say. */
static fl_dt_span_t *db_span(demo_req_t *r, const char *op, const char *sql)
{
    /* Transaction control has no table: its span is named by the operation alone. */
    int txn = strcmp(op, "BEGIN") == 0 || strcmp(op, "COMMIT") == 0 || strcmp(op, "ROLLBACK") == 0;
    char name[64];
    snprintf(name, sizeof(name), txn ? "%s" : "%s stock", op);
    fl_dt_span_t *s = fl_dt_span_start(demo_svc_tracer(demo_req_svc(r)), name, FL_DT_KIND_CLIENT,
                                       fl_dt_span_context(demo_req_span(r)));
    fl_dt_span_set_str(s, "db.system", "sqlite");
    fl_dt_span_set_str(s, "db.name", db_name);
    fl_dt_span_set_str(s, "db.operation", op);
    if (!txn)
        fl_dt_span_set_str(s, "db.sql.table", "stock");
    fl_dt_span_set_str(s, "db.statement", sql);
    fl_dt_span_set_str(s, "server.address", db_path);
    return s;
}

static void db_span_end(fl_dt_span_t *s, int rc)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fl_dt_span_set_str(s, "error.type", sqlite3_errstr(rc));
        fl_dt_span_record_exception(s, "SQLiteError", sqlite3_errmsg(db), NULL);
        fl_dt_span_set_status(s, FL_DT_STATUS_ERROR, sqlite3_errstr(rc));
    }
    fl_dt_span_end(s);
}

static int exec_traced(demo_req_t *r, const char *op, const char *sql)
{
    fl_dt_span_t *s = r ? db_span(r, op, sql) : NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (s)
        db_span_end(s, rc);
    return rc;
}

static json_t *row_json(sqlite3_stmt *st)
{
    return json_pack("{s:s,s:s,s:I,s:I}", "sku", (const char *)sqlite3_column_text(st, 0), "name",
                     (const char *)sqlite3_column_text(st, 1), "price_cents",
                     (json_int_t)sqlite3_column_int64(st, 2), "quantity",
                     (json_int_t)sqlite3_column_int64(st, 3));
}

static void list(demo_req_t *r)
{
    static const char sql[] = "SELECT sku, name, price_cents, quantity FROM stock ORDER BY sku";
    json_t *items = json_array();
    pthread_mutex_lock(&db_mu);
    fl_dt_span_t *s = db_span(r, "SELECT", sql);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(items, row_json(st));
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    fl_dt_span_set_int(s, "db.response.returned_rows", (int64_t)json_array_size(items));
    db_span_end(s, rc);
    pthread_mutex_unlock(&db_mu);
    if (rc != SQLITE_DONE) {
        json_decref(items);
        demo_reply_error(r, 500, "SQLiteError", "cannot read the stock table: %s",
                         sqlite3_errstr(rc));
        return;
    }
    demo_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

static void get_one(demo_req_t *r)
{
    static const char sql[] = "SELECT sku, name, price_cents, quantity FROM stock WHERE sku = ?1";
    const char *sku = demo_req_param(r, "sku");
    json_t *item = NULL;
    pthread_mutex_lock(&db_mu);
    fl_dt_span_t *s = db_span(r, "SELECT", sql);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sku, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            item = row_json(st);
    }
    sqlite3_finalize(st);
    db_span_end(s, rc);
    pthread_mutex_unlock(&db_mu);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        demo_reply_error(r, 500, "SQLiteError", "cannot read the stock table: %s",
                         sqlite3_errstr(rc));
    else if (!item)
        demo_reply_error(r, 404, NULL, "no item %s", sku);
    else
        demo_reply_json(r, 200, item);
}

/* Run one prepared statement with (text, int) bindings; returns the sqlite code. */
static int step_traced(demo_req_t *r, const char *op, const char *sql, const char *sku,
                       sqlite3_int64 n, sqlite3_int64 *out_a, sqlite3_int64 *out_b)
{
    fl_dt_span_t *s = db_span(r, op, sql);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sku, -1, SQLITE_TRANSIENT);
        if (sqlite3_bind_parameter_count(st) >= 2)
            sqlite3_bind_int64(st, 2, n);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            if (out_a)
                *out_a = sqlite3_column_int64(st, 0);
            if (out_b)
                *out_b = sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
    db_span_end(s, rc);
    return rc;
}

static void reserve(demo_req_t *r)
{
    int bad = 0;
    json_t *in = demo_req_json(r, &bad);
    const char *sku = json_string_value(json_object_get(in, "sku"));
    json_t *jq = json_object_get(in, "quantity");
    if (bad || !sku || !*sku || strlen(sku) > 64 || !json_is_integer(jq) ||
        json_integer_value(jq) < 1 || json_integer_value(jq) > 1000) {
        demo_reply_error(r, 400, NULL,
                         "the body must be {\"sku\": \"...\" (1-64 chars), \"quantity\": 1-1000}");
        return;
    }
    sqlite3_int64 qty = json_integer_value(jq);
    fl_dt_span_set_str(demo_req_span(r), "stock.sku", sku);
    demo_work(r, 2);

    sqlite3_int64 have = 0, price = 0;
    pthread_mutex_lock(&db_mu);
    int rc = exec_traced(r, "BEGIN", "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = step_traced(r, "SELECT", "SELECT quantity, price_cents FROM stock WHERE sku = ?1", sku,
                         0, &have, &price);
    if (rc == SQLITE_DONE) {
        /* Unknown items are stocked on first sight, so any order body works. */
        price = 500 + (sqlite3_int64)(fl_dt_random_unit() * 9500);
        have = 1000;
        fl_dt_span_add_event(demo_req_span(r), "new item stocked", NULL, 0);
        rc = step_traced(r, "INSERT",
                         "INSERT INTO stock (sku, name, price_cents, quantity, updated_at) "
                         "VALUES (?1, ?1, ?2, 1000, strftime('%s','now'))",
                         sku, price, NULL, NULL);
    } else if (rc == SQLITE_ROW) {
        rc = SQLITE_DONE;
    }
    if (rc == SQLITE_DONE && have < qty) {
        fl_dt_span_add_event(demo_req_span(r), "restock", NULL, 0);
        rc = step_traced(r, "UPDATE",
                         "UPDATE stock SET quantity = quantity + ?2, "
                         "updated_at = strftime('%s','now') WHERE sku = ?1",
                         sku, 1000, NULL, NULL);
        have += 1000;
    }
    if (rc == SQLITE_DONE)
        rc = step_traced(r, "UPDATE",
                         "UPDATE stock SET quantity = quantity - ?2, "
                         "updated_at = strftime('%s','now') WHERE sku = ?1",
                         sku, qty, NULL, NULL);
    if (rc == SQLITE_DONE)
        rc = exec_traced(r, "COMMIT", "COMMIT");
    else
        exec_traced(r, "ROLLBACK", "ROLLBACK");
    pthread_mutex_unlock(&db_mu);
    if (rc != SQLITE_OK) {
        demo_reply_error(r, 500, "SQLiteError", "cannot reserve %s: %s", sku, sqlite3_errstr(rc));
        return;
    }
    demo_reply_json(r, 200,
                    json_pack("{s:s,s:I,s:I,s:I}", "sku", sku, "reserved", (json_int_t)qty,
                              "remaining", (json_int_t)(have - qty), "price_cents",
                              (json_int_t)price));
}

static int start(demo_svc_t *svc)
{
    const char *p = demo_svc_flag(svc, "db");
    if (!p || !*p || strcmp(p, "$TMPDIR/faultline-demo-stock.db") == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(db_path, sizeof(db_path), "%s/faultline-demo-stock.db",
                 tmp && *tmp ? tmp : "/tmp");
    } else {
        snprintf(db_path, sizeof(db_path), "%s", p);
    }
    const char *slash = strrchr(db_path, '/');
    db_name = slash ? slash + 1 : db_path;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        fl_log(FL_LOG_ERROR, "demo", "cannot open the stock database path=%s err=\"%s\"", db_path,
               sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS stock ("
        "  sku TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,"
        "  quantity INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
        "INSERT OR IGNORE INTO stock VALUES"
        "  ('SKU-1001', 'Mechanical keyboard', 8999, 500, strftime('%s','now')),"
        "  ('SKU-1002', 'Wireless mouse', 2999, 800, strftime('%s','now')),"
        "  ('SKU-1003', 'USB-C hub', 4599, 600, strftime('%s','now')),"
        "  ('SKU-1004', '27-inch monitor', 32999, 200, strftime('%s','now')),"
        "  ('SKU-1005', 'Laptop stand', 3999, 400, strftime('%s','now')),"
        "  ('SKU-1006', 'Noise-cancelling headphones', 19999, 300, strftime('%s','now')),"
        "  ('SKU-1007', 'Webcam', 6999, 350, strftime('%s','now')),"
        "  ('SKU-1008', 'Desk lamp', 2499, 700, strftime('%s','now'));";
    char *err = NULL;
    rc = sqlite3_exec(db, schema, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        fl_log(FL_LOG_ERROR, "demo", "cannot create the stock schema path=%s err=\"%s\"", db_path,
               err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return -1;
    }
    fl_log(FL_LOG_INFO, "demo", "stock database ready path=%s", db_path);
    return 0;
}

static void stop(demo_svc_t *svc)
{
    (void)svc;
    sqlite3_close(db);
    db = NULL;
}

static const demo_route_t routes[] = {
    {"GET", "/stock", list},
    {"GET", "/stock/{sku}", get_one},
    {"POST", "/stock/reserve", reserve},
};

static const demo_flag_t flags[] = {
    {"db", "PATH", "the SQLite file holding the stock table", "$TMPDIR/faultline-demo-stock.db"},
};

int main(int argc, char **argv)
{
    static const demo_service_def_t def = {
        .name = "stock",
        .summary = "The stock store of the faultline demo: an SQLite table of items behind "
                   "GET /stock, GET /stock/{sku} and POST /stock/reserve.",
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
        .flags = flags,
        .n_flags = sizeof(flags) / sizeof(flags[0]),
        .start = start,
        .stop = stop,
    };
    return demo_main(&def, argc, argv);
}
