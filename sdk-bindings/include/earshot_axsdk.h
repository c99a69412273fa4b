/*
 * earshot_axsdk.h - hand-written declarations of the subset of the Axis ACAP Native SDK C APIs
 * `axevent` (axsdk/axevent.h) and `axparameter` (axsdk/axparameter.h) that Earshot uses.
 *
 * Origin: written by hand from Axis's public API documentation for ACAP Native SDK 12
 * (developer.axis.com/acap/acap-native-sdk-version-12/api/, files ax_event.h,
 * ax_event_handler.h, ax_event_key_value_set.h, ax_event_error.h, axparameter.h), the
 * AxisCommunications/acap-native-sdk-examples C examples (send_event, axparameter) and the
 * project handbook (shared/handbook/acap-platform.md). The SDK's headers are not available on
 * the build hosts; the signatures follow SDK 12.x (AXIS OS 12), which keeps the ACAP 3/4
 * signatures of these functions. Deprecated functions (ax_event_new with GTimeVal) are left out.
 *
 * When the SDK sysroot is present (pkg-config finds `axevent` and `axparameter`, as in the
 * official SDK container) sdk-bindings/build.rs runs bindgen against the REAL headers instead
 * and this file is not used. It is the input of the committed src/bindings.rs for host builds.
 *
 * The GLib types are declared here by hand (not #include <glib.h>) so that the committed
 * bindings do not depend on the host's GLib version. Their layout matches GLib 2.x on LP64 and
 * ILP32 Linux: gboolean and gint are int, gchar is char, GQuark is guint32.
 */
#ifndef EARSHOT_AXSDK_H
#define EARSHOT_AXSDK_H

/* ---- GLib (glib/gtypes.h, glib/gerror.h, glib/glist.h, glib/gdatetime.h, glib/gmem.h) ---- */

typedef char gchar;
typedef int gint;
typedef gint gboolean;
typedef unsigned int guint;
typedef unsigned int guint32;
typedef double gdouble;
typedef void *gpointer;
typedef const void *gconstpointer;
typedef guint32 GQuark;

/* A GLib error: set by a failing call through its `GError **error` argument; the caller owns
 * it and frees it with g_error_free. */
typedef struct _GError {
  GQuark domain;
  gint code;
  gchar *message;
} GError;

/* A doubly linked list node (ax_parameter_list returns one with gchar* data). */
typedef struct _GList {
  gpointer data;
  struct _GList *next;
  struct _GList *prev;
} GList;

/* Opaque; ax_event_new2 takes one as the event's time stamp (NULL: the current time). */
typedef struct _GDateTime GDateTime;

void g_free(gpointer mem);
void g_error_free(GError *error);
void g_list_free(GList *list);

/* Opaque; NULL names the global default context, where axevent and axparameter dispatch their
 * callbacks (declaration complete, parameter changed) (glib/gmain.h). */
typedef struct _GMainContext GMainContext;
/* Runs one iteration of `context`: dispatches the event sources that are ready. With
 * may_block FALSE it never waits. Returns TRUE if a source was dispatched (glib/gmain.h). */
gboolean g_main_context_iteration(GMainContext *context, gboolean may_block);

/* ---- axevent (axsdk/axevent.h) ---- */

/* Value types of a key in an AXEventKeyValueSet (ax_event_key_value_set.h). */
typedef enum {
  AX_VALUE_TYPE_INT,
  AX_VALUE_TYPE_BOOL,
  AX_VALUE_TYPE_DOUBLE,
  AX_VALUE_TYPE_STRING,
  AX_VALUE_TYPE_ELEMENT
} AXEventValueType;

/* Codes of the GErrors set by axevent (ax_event_error.h). */
typedef enum {
  AX_EVENT_ERROR_GENERIC,
  AX_EVENT_ERROR_INVALID_ARGUMENT,
  AX_EVENT_ERROR_INCOMPATIBLE_VALUE,
  AX_EVENT_ERROR_DECLARATION,
  AX_EVENT_ERROR_UNDECLARE,
  AX_EVENT_ERROR_SEND,
  AX_EVENT_ERROR_SUBSCRIPTION,
  AX_EVENT_ERROR_UNSUBSCRIBE,
  AX_EVENT_ERROR_KEY_NOT_FOUND,
  AX_EVENT_ERROR_END
} AXEventErrorCode;

typedef struct _AXEventKeyValueSet AXEventKeyValueSet;
typedef struct _AXEvent AXEvent;
typedef struct _AXEventHandler AXEventHandler;

/* Called from the GLib main loop when a declaration is registered in the event system. */
typedef void (*AXDeclarationCompleteCallback)(guint declaration, gpointer user_data);

AXEventKeyValueSet *ax_event_key_value_set_new(void);
void ax_event_key_value_set_free(AXEventKeyValueSet *key_value_set);
/* value points to a gint, gboolean, gdouble or is a const gchar* (STRING), or NULL: unset. */
gboolean ax_event_key_value_set_add_key_value(AXEventKeyValueSet *key_value_set,
                                              const gchar *key, const gchar *name_space,
                                              gconstpointer value, AXEventValueType value_type,
                                              GError **error);
gboolean ax_event_key_value_set_mark_as_source(AXEventKeyValueSet *key_value_set,
                                               const gchar *key, const gchar *name_space,
                                               GError **error);
gboolean ax_event_key_value_set_mark_as_data(AXEventKeyValueSet *key_value_set,
                                             const gchar *key, const gchar *name_space,
                                             GError **error);
gboolean ax_event_key_value_set_mark_as_user_defined(AXEventKeyValueSet *key_value_set,
                                                     const gchar *key, const gchar *name_space,
                                                     const gchar *user_tag, GError **error);
gboolean ax_event_key_value_set_add_nice_names(AXEventKeyValueSet *key_value_set,
                                               const gchar *key, const gchar *name_space,
                                               const gchar *key_nice_name,
                                               const gchar *value_nice_name, GError **error);

/* Copies the key-value set; the caller still owns and frees key_value_set. */
AXEvent *ax_event_new2(AXEventKeyValueSet *key_value_set, GDateTime *time_stamp);
void ax_event_free(AXEvent *event);

AXEventHandler *ax_event_handler_new(void);
void ax_event_handler_free(AXEventHandler *event_handler);
gboolean ax_event_handler_declare(AXEventHandler *event_handler,
                                  AXEventKeyValueSet *key_value_set, gboolean stateless,
                                  guint *declaration, AXDeclarationCompleteCallback callback,
                                  gpointer user_data, GError **error);
gboolean ax_event_handler_undeclare(AXEventHandler *event_handler, guint declaration,
                                    GError **error);
/* Does not take ownership of event. */
gboolean ax_event_handler_send_event(AXEventHandler *event_handler, guint declaration,
                                     AXEvent *event, GError **error);

/* ---- axparameter (axsdk/axparameter.h) ---- */

typedef struct _AXParameter AXParameter;

/* Called from the GLib main loop when a parameter changes; name is the full name
 * ("root.<App>.<Param>"), value the new value; both are owned by the library. */
typedef void (*AXParameterCallback)(const gchar *name, const gchar *value, gpointer data);

AXParameter *ax_parameter_new(const gchar *app_name, GError **error);
void ax_parameter_free(AXParameter *parameter);
gboolean ax_parameter_set(AXParameter *parameter, const gchar *name, const gchar *value,
                          gboolean do_sync, GError **error);
/* On success *value is a newly allocated string, freed with g_free. */
gboolean ax_parameter_get(AXParameter *parameter, const gchar *name, gchar **value,
                          GError **error);
/* A list of newly allocated names (g_free each, then g_list_free); NULL with *error on failure. */
GList *ax_parameter_list(AXParameter *parameter, GError **error);
gboolean ax_parameter_register_callback(AXParameter *parameter, const gchar *name,
                                        AXParameterCallback callback, gpointer userdata,
                                        GError **error);
void ax_parameter_unregister_callback(AXParameter *parameter, const gchar *name);

#endif /* EARSHOT_AXSDK_H */
