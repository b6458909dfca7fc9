/* SPDX-License-Identifier: Apache-2.0 */
/* Failure-injection state of one service: delay, error, timeout and intermittent faults,
 * service-wide or per route, read by every request and changed by /simulate. */
#include "svc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CHAOS_MAX_TARGETS 16

typedef struct chaos_target {
    char route[96]; /* "" = the whole service */
    int used;
    demo_fault_set_t f;
} chaos_target_t;

struct demo_chaos {
    pthread_mutex_t mu;
    chaos_target_t t[CHAOS_MAX_TARGETS];
};

static const char *const kind_names[DEMO_FAULT_KINDS] = {"delay", "error", "timeout",
                                                         "intermittent"};
static const char *const kind_params[DEMO_FAULT_KINDS] = {"duration", "rate", "duration",
                                                          "probability"};

const char *demo_fault_name(int kind)
{
    return kind >= 0 && kind < DEMO_FAULT_KINDS ? kind_names[kind] : "?";
}

const char *demo_fault_param(int kind)
{
    return kind >= 0 && kind < DEMO_FAULT_KINDS ? kind_params[kind] : "?";
}

demo_chaos_t *demo_chaos_new(void)
{
    demo_chaos_t *c = calloc(1, sizeof(*c));
    if (c)
        pthread_mutex_init(&c->mu, NULL);
    return c;
}

void demo_chaos_free(demo_chaos_t *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int target_empty(const chaos_target_t *t)
{
    for (int k = 0; k < DEMO_FAULT_KINDS; k++)
        if (t->f.has[k])
            return 0;
    return 1;
}

int demo_chaos_set(demo_chaos_t *c, const char *target, int kind, double value)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    chaos_target_t *slot = NULL, *free_slot = NULL;
    for (int i = 0; i < CHAOS_MAX_TARGETS; i++) {
        if (c->t[i].used && strcmp(c->t[i].route, target) == 0)
            slot = &c->t[i];
        else if (!c->t[i].used && !free_slot)
            free_slot = &c->t[i];
    }
    if (!slot && value > 0) {
        if (!free_slot) {
            rc = -1;
            goto out;
        }
        slot = free_slot;
        memset(slot, 0, sizeof(*slot));
        strncpy(slot->route, target, sizeof(slot->route) - 1);
        slot->used = 1;
    }
    if (slot) {
        slot->f.has[kind] = value > 0;
        slot->f.value[kind] = value > 0 ? value : 0;
        if (target_empty(slot))
            slot->used = 0;
    }
out:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void demo_chaos_clear(demo_chaos_t *c, const char *target)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CHAOS_MAX_TARGETS; i++)
        if (!target || strcmp(c->t[i].route, target) == 0)
            c->t[i].used = 0;
    pthread_mutex_unlock(&c->mu);
}

void demo_chaos_lookup(demo_chaos_t *c, const char *route, demo_fault_set_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    /* Service-wide first, then the route's own rules override kind by kind. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < CHAOS_MAX_TARGETS; i++) {
            const chaos_target_t *t = &c->t[i];
            if (!t->used)
                continue;
            int match = pass == 0 ? t->route[0] == 0
                                  : t->route[0] != 0 && route && strcmp(t->route, route) == 0;
            if (!match)
                continue;
            for (int k = 0; k < DEMO_FAULT_KINDS; k++) {
                if (t->f.has[k]) {
                    out->has[k] = 1;
                    out->value[k] = t->f.value[k];
                }
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
}

json_t *demo_chaos_json(demo_chaos_t *c)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CHAOS_MAX_TARGETS; i++) {
        const chaos_target_t *t = &c->t[i];
        if (!t->used)
            continue;
        for (int k = 0; k < DEMO_FAULT_KINDS; k++) {
            if (!t->f.has[k])
                continue;
            json_t *f = json_object();
            json_object_set_new(f, "fault", json_string(kind_names[k]));
            json_object_set_new(f, "route", t->route[0] ? json_string(t->route) : json_null());
            if (k == DEMO_FAULT_DELAY || k == DEMO_FAULT_TIMEOUT)
                json_object_set_new(f, "duration_ms", json_integer((json_int_t)t->f.value[k]));
            else
                json_object_set_new(f, kind_params[k], json_real(t->f.value[k]));
            json_array_append_new(arr, f);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return arr;
}
