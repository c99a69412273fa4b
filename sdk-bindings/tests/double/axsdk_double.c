/*
 * axsdk_double.c - a C test double of the axevent/axparameter subset declared in
 * include/earshot_axsdk.h, plus the four GLib functions it declares. Host tests only.
 *
 * It behaves as the SDK documents (ownership, GError on failure, copies of key-value sets) and
 * records every call in a global log that the Rust tests read through the double_* functions
 * at the end. It is not thread-safe: the Rust tests serialise themselves with a mutex.
 * Allocations handed to the caller (GErrors, strings, list nodes, handlers, sets, events,
 * parameter handles) are counted so the tests can check that everything was freed.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "earshot_axsdk.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 32
#define MAX_RECORDS 64
#define MAX_PARAMS 32
#define DUMP_SIZE 4096

#define EVENT_DOMAIN 0xE7E7u
#define PARAMETER_DOMAIN 0xBA8Au

static long live_errors;
static long live_allocs;

/* ---- GLib ---- */

static void *tracked_alloc(size_t size) {
  void *p = calloc(1, size);
  if (p) live_allocs++;
  return p;
}

static void tracked_free(void *p) {
  if (p) {
    live_allocs--;
    free(p);
  }
}

static gchar *tracked_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  gchar *p = tracked_alloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

void g_free(gpointer mem) { tracked_free(mem); }

void g_error_free(GError *error) {
  if (!error) return;
  live_errors--;
  free(error->message);
  free(error);
}

void g_list_free(GList *list) {
  while (list) {
    GList *next = list->next;
    tracked_free(list);
    list = next;
  }
}

/* ---- failure injection ---- */

static char fail_function[64];
static gint fail_code;
static char fail_message[256];

/* Fails this call (sets *error, returns 1) if double_fail_next named it. */
static int should_fail(const char *function, GQuark domain, GError **error) {
  if (fail_function[0] == '\0' || strcmp(fail_function, function) != 0) return 0;
  fail_function[0] = '\0';
  if (error) {
    GError *e = calloc(1, sizeof *e);
    if (!e) return 1;
    e->domain = domain;
    e->code = fail_code;
    e->message = strdup(fail_message);
    live_errors++;
    *error = e;
  }
  return 1;
}

static void set_error(GError **error, GQuark domain, gint code, const char *message) {
  if (!error) return;
  GError *e = calloc(1, sizeof *e);
  if (!e) return;
  e->domain = domain;
  e->code = code;
  e->message = strdup(message);
  live_errors++;
  *error = e;
}

/* ---- axevent ---- */

struct entry {
  char *key;
  char *ns; /* NULL: no namespace */
  AXEventValueType type;
  int has_value;
  gint int_value;
  gboolean bool_value;
  gdouble double_value;
  char *string_value;
  int source, data;
  char *user_tag;
  char *key_nice, *value_nice;
};

struct _AXEventKeyValueSet {
  int n;
  struct entry entries[MAX_KEYS];
};

struct _AXEvent {
  AXEventKeyValueSet set;
  int had_time_stamp;
};

struct _AXEventHandler {
  int unused;
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }
static int same(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void entries_free(AXEventKeyValueSet *set) {
  for (int i = 0; i < set->n; i++) {
    struct entry *e = &set->entries[i];
    free(e->key);
    free(e->ns);
    free(e->string_value);
    free(e->user_tag);
    free(e->key_nice);
    free(e->value_nice);
  }
  set->n = 0;
}

static void entries_copy(AXEventKeyValueSet *to, const AXEventKeyValueSet *from) {
  to->n = from->n;
  for (int i = 0; i < from->n; i++) {
    const struct entry *f = &from->entries[i];
    struct entry *t = &to->entries[i];
    *t = *f;
    t->key = dup_or_null(f->key);
    t->ns = dup_or_null(f->ns);
    t->string_value = dup_or_null(f->string_value);
    t->user_tag = dup_or_null(f->user_tag);
    t->key_nice = dup_or_null(f->key_nice);
    t->value_nice = dup_or_null(f->value_nice);
  }
}

static struct entry *find(AXEventKeyValueSet *set, const gchar *key, const gchar *ns) {
  for (int i = 0; i < set->n; i++)
    if (same(set->entries[i].key, key) && same(set->entries[i].ns, ns)) return &set->entries[i];
  return NULL;
}

static const char *type_name(AXEventValueType t) {
  switch (t) {
    case AX_VALUE_TYPE_INT: return "int";
    case AX_VALUE_TYPE_BOOL: return "bool";
    case AX_VALUE_TYPE_DOUBLE: return "double";
    case AX_VALUE_TYPE_STRING: return "string";
    case AX_VALUE_TYPE_ELEMENT: return "element";
  }
  return "?";
}

/* One line per key: "ns:key type=value [source] [data] [user=tag] [nice=K|V]". */
static void dump(const AXEventKeyValueSet *set, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < set->n && used < size; i++) {
    const struct entry *e = &set->entries[i];
    char value[256];
    if (!e->has_value)
      snprintf(value, sizeof value, "<unset>");
    else if (e->type == AX_VALUE_TYPE_INT)
      snprintf(value, sizeof value, "%d", e->int_value);
    else if (e->type == AX_VALUE_TYPE_BOOL)
      snprintf(value, sizeof value, "%s", e->bool_value ? "true" : "false");
    else if (e->type == AX_VALUE_TYPE_DOUBLE)
      snprintf(value, sizeof value, "%g", e->double_value);
    else
      snprintf(value, sizeof value, "\"%s\"", e->string_value ? e->string_value : "");
    used += (size_t)snprintf(buf + used, size - used, "%s:%s %s=%s%s%s%s%s%s%s%s%s\n",
                             e->ns ? e->ns : "", e->key, type_name(e->type), value,
                             e->source ? " source" : "", e->data ? " data" : "",
                             e->user_tag ? " user=" : "", e->user_tag ? e->user_tag : "",
                             e->key_nice || e->value_nice ? " nice=" : "",
                             e->key_nice ? e->key_nice : "",
                             e->key_nice || e->value_nice ? "|" : "",
                             e->value_nice ? e->value_nice : "");
  }
}

AXEventKeyValueSet *ax_event_key_value_set_new(void) {
  return tracked_alloc(sizeof(AXEventKeyValueSet));
}

void ax_event_key_value_set_free(AXEventKeyValueSet *key_value_set) {
  if (!key_value_set) return;
  entries_free(key_value_set);
  tracked_free(key_value_set);
}

gboolean ax_event_key_value_set_add_key_value(AXEventKeyValueSet *key_value_set,
                                              const gchar *key, const gchar *name_space,
                                              gconstpointer value, AXEventValueType value_type,
                                              GError **error) {
  if (should_fail("ax_event_key_value_set_add_key_value", EVENT_DOMAIN, error)) return 0;
  if (!key_value_set || !key) {
    set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_INVALID_ARGUMENT, "NULL set or key");
    return 0;
  }
  struct entry *e = find(key_value_set, key, name_space);
  if (!e) {
    if (key_value_set->n == MAX_KEYS) {
      set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_GENERIC, "double: too many keys");
      return 0;
    }
    e = &key_value_set->entries[key_value_set->n++];
    memset(e, 0, sizeof *e);
    e->key = strdup(key);
    e->ns = dup_or_null(name_space);
  }
  e->type = value_type;
  e->has_value = value != NULL;
  free(e->string_value);
  e->string_value = NULL;
  if (value) {
    switch (value_type) {
      case AX_VALUE_TYPE_INT: e->int_value = *(const gint *)value; break;
      case AX_VALUE_TYPE_BOOL: e->bool_value = *(const gboolean *)value; break;
      case AX_VALUE_TYPE_DOUBLE: e->double_value = *(const gdouble *)value; break;
      case AX_VALUE_TYPE_STRING: e->string_value = strdup((const gchar *)value); break;
      default:
        set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_INCOMPATIBLE_VALUE, "unsupported type");
        return 0;
    }
  }
  return 1;
}

static struct entry *existing(const char *function, AXEventKeyValueSet *set, const gchar *key,
                              const gchar *ns, GError **error) {
  if (should_fail(function, EVENT_DOMAIN, error)) return NULL;
  struct entry *e = set ? find(set, key, ns) : NULL;
  if (!e) set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_KEY_NOT_FOUND, "key not found");
  return e;
}

gboolean ax_event_key_value_set_mark_as_source(AXEventKeyValueSet *key_value_set,
                                               const gchar *key, const gchar *name_space,
                                               GError **error) {
  struct entry *e = existing("ax_event_key_value_set_mark_as_source", key_value_set, key,
                             name_space, error);
  if (!e) return 0;
  e->source = 1;
  return 1;
}

gboolean ax_event_key_value_set_mark_as_data(AXEventKeyValueSet *key_value_set,
                                             const gchar *key, const gchar *name_space,
                                             GError **error) {
  struct entry *e = existing("ax_event_key_value_set_mark_as_data", key_value_set, key,
                             name_space, error);
  if (!e) return 0;
  e->data = 1;
  return 1;
}

gboolean ax_event_key_value_set_mark_as_user_defined(AXEventKeyValueSet *key_value_set,
                                                     const gchar *key, const gchar *name_space,
                                                     const gchar *user_tag, GError **error) {
  struct entry *e = existing("ax_event_key_value_set_mark_as_user_defined", key_value_set, key,
                             name_space, error);
  if (!e) return 0;
  free(e->user_tag);
  e->user_tag = dup_or_null(user_tag);
  return 1;
}

gboolean ax_event_key_value_set_add_nice_names(AXEventKeyValueSet *key_value_set,
                                               const gchar *key, const gchar *name_space,
                                               const gchar *key_nice_name,
                                               const gchar *value_nice_name, GError **error) {
  struct entry *e = existing("ax_event_key_value_set_add_nice_names", key_value_set, key,
                             name_space, error);
  if (!e) return 0;
  free(e->key_nice);
  free(e->value_nice);
  e->key_nice = dup_or_null(key_nice_name);
  e->value_nice = dup_or_null(value_nice_name);
  return 1;
}

AXEvent *ax_event_new2(AXEventKeyValueSet *key_value_set, GDateTime *time_stamp) {
  if (!key_value_set) return NULL;
  AXEvent *event = tracked_alloc(sizeof(AXEvent));
  if (!event) return NULL;
  entries_copy(&event->set, key_value_set);
  event->had_time_stamp = time_stamp != NULL;
  return event;
}

void ax_event_free(AXEvent *event) {
  if (!event) return;
  entries_free(&event->set);
  tracked_free(event);
}

struct declaration {
  guint id;
  AXEventHandler *handler;
  int stateless;
  int undeclared;
  int completed;
  AXDeclarationCompleteCallback callback;
  gpointer user_data;
  char dump[DUMP_SIZE];
};

struct sent {
  guint declaration;
  int active; /* -1: no bool key "active" */
  int had_time_stamp;
  char dump[DUMP_SIZE];
};

static struct declaration declarations[MAX_RECORDS];
static int n_declarations;
static guint next_id = 1;
static struct sent sent[MAX_RECORDS];
static int n_sent;
static guint undeclared[MAX_RECORDS];
static int n_undeclared;
static int callbacks_returned;

AXEventHandler *ax_event_handler_new(void) { return tracked_alloc(sizeof(AXEventHandler)); }

void ax_event_handler_free(AXEventHandler *event_handler) { tracked_free(event_handler); }

gboolean ax_event_handler_declare(AXEventHandler *event_handler,
                                  AXEventKeyValueSet *key_value_set, gboolean stateless,
                                  guint *declaration, AXDeclarationCompleteCallback callback,
                                  gpointer user_data, GError **error) {
  if (should_fail("ax_event_handler_declare", EVENT_DOMAIN, error)) return 0;
  if (!event_handler || !key_value_set || !declaration || n_declarations == MAX_RECORDS) {
    set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_DECLARATION, "invalid declaration");
    return 0;
  }
  struct declaration *d = &declarations[n_declarations++];
  memset(d, 0, sizeof *d);
  d->id = next_id++;
  d->handler = event_handler;
  d->stateless = stateless != 0;
  d->callback = callback;
  d->user_data = user_data;
  dump(key_value_set, d->dump, sizeof d->dump);
  *declaration = d->id;
  return 1;
}

static struct declaration *live_declaration(AXEventHandler *handler, guint id) {
  for (int i = 0; i < n_declarations; i++)
    if (declarations[i].id == id && declarations[i].handler == handler &&
        !declarations[i].undeclared)
      return &declarations[i];
  return NULL;
}

gboolean ax_event_handler_undeclare(AXEventHandler *event_handler, guint declaration,
                                    GError **error) {
  if (should_fail("ax_event_handler_undeclare", EVENT_DOMAIN, error)) return 0;
  struct declaration *d = live_declaration(event_handler, declaration);
  if (!d) {
    set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_UNDECLARE, "no such declaration");
    return 0;
  }
  d->undeclared = 1;
  if (n_undeclared < MAX_RECORDS) undeclared[n_undeclared++] = declaration;
  return 1;
}

gboolean ax_event_handler_send_event(AXEventHandler *event_handler, guint declaration,
                                     AXEvent *event, GError **error) {
  if (should_fail("ax_event_handler_send_event", EVENT_DOMAIN, error)) return 0;
  if (!live_declaration(event_handler, declaration) || !event || n_sent == MAX_RECORDS) {
    set_error(error, EVENT_DOMAIN, AX_EVENT_ERROR_SEND, "undeclared or invalid event");
    return 0;
  }
  struct sent *s = &sent[n_sent++];
  s->declaration = declaration;
  struct entry *active = find(&event->set, "active", NULL);
  s->active = active && active->type == AX_VALUE_TYPE_BOOL && active->has_value
                  ? active->bool_value != 0
                  : -1;
  s->had_time_stamp = event->had_time_stamp;
  dump(&event->set, s->dump, sizeof s->dump);
  return 1;
}

/* ---- axparameter ---- */

struct param {
  char name[128];
  char value[256];
};

struct callback {
  char name[128];
  AXParameterCallback callback;
  gpointer data;
};

struct _AXParameter {
  char app[64];
  struct callback callbacks[MAX_PARAMS];
  int n_callbacks;
};

static struct param seeds[MAX_PARAMS];
static int n_seeds;
static AXParameter *current;
static int n_sets;
static int last_do_sync = -1;

AXParameter *ax_parameter_new(const gchar *app_name, GError **error) {
  if (should_fail("ax_parameter_new", PARAMETER_DOMAIN, error)) return NULL;
  AXParameter *p = tracked_alloc(sizeof(AXParameter));
  if (!p) return NULL;
  snprintf(p->app, sizeof p->app, "%s", app_name ? app_name : "");
  current = p;
  return p;
}

void ax_parameter_free(AXParameter *parameter) {
  if (current == parameter) current = NULL;
  tracked_free(parameter);
}

static struct param *find_param(const gchar *name) {
  for (int i = 0; name && i < n_seeds; i++)
    if (strcmp(seeds[i].name, name) == 0) return &seeds[i];
  return NULL;
}

gboolean ax_parameter_set(AXParameter *parameter, const gchar *name, const gchar *value,
                          gboolean do_sync, GError **error) {
  if (should_fail("ax_parameter_set", PARAMETER_DOMAIN, error)) return 0;
  struct param *p = find_param(name);
  if (!parameter || !p || !value) {
    set_error(error, PARAMETER_DOMAIN, 1, "no such parameter");
    return 0;
  }
  snprintf(p->value, sizeof p->value, "%s", value);
  n_sets++;
  last_do_sync = do_sync != 0;
  return 1;
}

gboolean ax_parameter_get(AXParameter *parameter, const gchar *name, gchar **value,
                          GError **error) {
  if (should_fail("ax_parameter_get", PARAMETER_DOMAIN, error)) return 0;
  struct param *p = find_param(name);
  if (!parameter || !p || !value) {
    set_error(error, PARAMETER_DOMAIN, 1, "no such parameter");
    return 0;
  }
  *value = tracked_strdup(p->value);
  return 1;
}

GList *ax_parameter_list(AXParameter *parameter, GError **error) {
  if (should_fail("ax_parameter_list", PARAMETER_DOMAIN, error)) return NULL;
  if (!parameter) return NULL;
  GList *head = NULL, *tail = NULL;
  for (int i = 0; i < n_seeds; i++) {
    GList *node = tracked_alloc(sizeof(GList));
    if (!node) break;
    node->data = tracked_strdup(seeds[i].name);
    node->prev = tail;
    if (tail)
      tail->next = node;
    else
      head = node;
    tail = node;
  }
  return head;
}

gboolean ax_parameter_register_callback(AXParameter *parameter, const gchar *name,
                                        AXParameterCallback callback, gpointer userdata,
                                        GError **error) {
  if (should_fail("ax_parameter_register_callback", PARAMETER_DOMAIN, error)) return 0;
  if (!parameter || !name || !callback || parameter->n_callbacks == MAX_PARAMS) {
    set_error(error, PARAMETER_DOMAIN, 1, "invalid callback");
    return 0;
  }
  struct callback *c = &parameter->callbacks[parameter->n_callbacks++];
  snprintf(c->name, sizeof c->name, "%s", name);
  c->callback = callback;
  c->data = userdata;
  return 1;
}

void ax_parameter_unregister_callback(AXParameter *parameter, const gchar *name) {
  if (!parameter || !name) return;
  for (int i = 0; i < parameter->n_callbacks; i++) {
    if (strcmp(parameter->callbacks[i].name, name) == 0) {
      parameter->callbacks[i] = parameter->callbacks[--parameter->n_callbacks];
      i--;
    }
  }
}

/* ---- GLib main context ---- */

/* Parameter changes queued by double_param_queue_change, delivered by g_main_context_iteration
 * as the device's main loop delivers axparameter's D-Bus signals. The only thread-safe part of
 * the double: a test may queue while the code under test iterates on its own thread. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static struct param queued[MAX_PARAMS];
static int n_queued;
static int iterations;

int double_complete_declarations(void);
int double_param_external_change(const char *name, const char *value);

/* One iteration of the default context: completes pending declarations and delivers the
 * oldest queued parameter change. Never blocks. TRUE if anything was dispatched. */
gboolean g_main_context_iteration(GMainContext *context, gboolean may_block) {
  (void)context;
  (void)may_block;
  iterations++;
  int dispatched = double_complete_declarations() > 0;
  struct param change;
  int have = 0;
  pthread_mutex_lock(&queue_lock);
  if (n_queued > 0) {
    change = queued[0];
    memmove(&queued[0], &queued[1], (size_t)(n_queued - 1) * sizeof queued[0]);
    n_queued--;
    have = 1;
  }
  pthread_mutex_unlock(&queue_lock);
  if (have) {
    double_param_external_change(change.name, change.value);
    dispatched = 1;
  }
  return dispatched;
}

/* ---- the tests' side ---- */

void double_reset(void) {
  for (int i = 0; i < n_declarations; i++) declarations[i].dump[0] = '\0';
  n_declarations = 0;
  n_sent = 0;
  n_undeclared = 0;
  next_id = 1;
  callbacks_returned = 0;
  iterations = 0;
  fail_function[0] = '\0';
  n_seeds = 0;
  n_sets = 0;
  last_do_sync = -1;
  current = NULL;
  pthread_mutex_lock(&queue_lock);
  n_queued = 0;
  pthread_mutex_unlock(&queue_lock);
}

/* The next call of `function` fails with a GError (code, message) of the function's domain. */
void double_fail_next(const char *function, int code, const char *message) {
  snprintf(fail_function, sizeof fail_function, "%s", function);
  fail_code = code;
  snprintf(fail_message, sizeof fail_message, "%s", message);
}

unsigned double_event_domain(void) { return EVENT_DOMAIN; }
unsigned double_parameter_domain(void) { return PARAMETER_DOMAIN; }
long double_live_errors(void) { return live_errors; }
long double_live_allocs(void) { return live_allocs; }

int double_declaration_count(void) { return n_declarations; }
unsigned double_declaration_id(int i) { return i < n_declarations ? declarations[i].id : 0; }
int double_declaration_stateless(int i) {
  return i < n_declarations ? declarations[i].stateless : -1;
}
int double_declaration_undeclared(int i) {
  return i < n_declarations ? declarations[i].undeclared : -1;
}
const char *double_declaration_dump(int i) { return i < n_declarations ? declarations[i].dump : ""; }

/* Simulates the main loop reporting every declaration as complete; returns how many callbacks
 * ran (and returned: callbacks_returned counts returns into C). */
int double_complete_declarations(void) {
  int ran = 0;
  for (int i = 0; i < n_declarations; i++) {
    struct declaration *d = &declarations[i];
    if (d->completed || d->undeclared) continue;
    d->completed = 1;
    if (d->callback) {
      d->callback(d->id, d->user_data);
      callbacks_returned++;
      ran++;
    }
  }
  return ran;
}
int double_callbacks_returned(void) { return callbacks_returned; }

int double_sent_count(void) { return n_sent; }
unsigned double_sent_declaration(int i) { return i < n_sent ? sent[i].declaration : 0; }
int double_sent_active(int i) { return i < n_sent ? sent[i].active : -2; }
int double_sent_had_time_stamp(int i) { return i < n_sent ? sent[i].had_time_stamp : -1; }
const char *double_sent_dump(int i) { return i < n_sent ? sent[i].dump : ""; }

int double_undeclare_count(void) { return n_undeclared; }
unsigned double_undeclared_id(int i) { return i < n_undeclared ? undeclared[i] : 0; }

/* Parameters that exist (as if declared in the manifest's paramConfig). */
int double_param_seed(const char *name, const char *value) {
  struct param *p = find_param(name);
  if (!p) {
    if (n_seeds == MAX_PARAMS) return 0;
    p = &seeds[n_seeds++];
    snprintf(p->name, sizeof p->name, "%s", name);
  }
  snprintf(p->value, sizeof p->value, "%s", value);
  return 1;
}

const char *double_param_value(const char *name) {
  struct param *p = find_param(name);
  return p ? p->value : NULL;
}
int double_param_set_count(void) { return n_sets; }
int double_param_last_do_sync(void) { return last_do_sync; }

/* A change from outside the app (the web page): updates the value and calls the callbacks
 * registered for `name` with the full name "root.<App>.<name>". Returns how many ran. */
int double_param_external_change(const char *name, const char *value) {
  if (!double_param_seed(name, value) || !current) return 0;
  char full[256];
  snprintf(full, sizeof full, "root.%s.%s", current->app, name);
  int ran = 0;
  for (int i = 0; i < current->n_callbacks; i++) {
    struct callback *c = &current->callbacks[i];
    if (strcmp(c->name, name) == 0 || strcmp(c->name, full) == 0) {
      c->callback(full, value, c->data);
      ran++;
    }
  }
  return ran;
}

/* A change from outside the app, delivered by the next g_main_context_iteration (on whatever
 * thread iterates). Thread-safe. Returns 0 when the queue is full. */
int double_param_queue_change(const char *name, const char *value) {
  pthread_mutex_lock(&queue_lock);
  int ok = n_queued < MAX_PARAMS;
  if (ok) {
    snprintf(queued[n_queued].name, sizeof queued[n_queued].name, "%s", name);
    snprintf(queued[n_queued].value, sizeof queued[n_queued].value, "%s", value);
    n_queued++;
  }
  pthread_mutex_unlock(&queue_lock);
  return ok;
}

/* Queued changes not yet delivered (thread-safe). */
int double_param_queued(void) {
  pthread_mutex_lock(&queue_lock);
  int n = n_queued;
  pthread_mutex_unlock(&queue_lock);
  return n;
}

/* Calls of g_main_context_iteration since the last reset. */
int double_iterations(void) { return iterations; }
