//! Safe wrappers of `axevent` (source: ACAP Native SDK API, `axsdk/axevent.h`):
//! [`EventHandler`], [`KeyValueSet`], [`Declaration`].
//!
//! ```no_run
//! # fn main() -> earshot_sdk::Result<()> {
//! use earshot_sdk::event::{EventHandler, EventKind, KeyValueSet};
//! let handler = EventHandler::new()?;
//! let mut set = KeyValueSet::new()?;
//! set.add_string("topic0", Some("tnsaxis"), Some("CameraApplicationPlatform"))?
//!     .mark_as_source("topic0", Some("tnsaxis"))?; // etc. for topic1, topic2
//! set.add_bool("active", None, None)?.mark_as_data("active", None)?;
//! let declaration = handler.declare(&set, EventKind::Stateful, None)?;
//! declaration.send_state(true, |set| {
//!     set.add_string("topic0", Some("tnsaxis"), Some("CameraApplicationPlatform"))?;
//!     Ok(())
//! })?;
//! // `declaration` undeclares itself when dropped, before `handler` is freed.
//! # Ok(()) }
//! ```

use std::ffi::c_void;
use std::ptr::{self, NonNull};

use crate::callback::Callback;
use crate::error::{c_string, c_string_opt, opt_ptr, Error, GErrorSlot, Result};
use crate::sys;

/// The key of the BOOL data value of a stateful event (the convention the device's rule engine
/// uses for "while active" conditions).
pub const ACTIVE_KEY: &str = "active";

/// The type of the closure called when a declaration is complete; its argument is the
/// declaration id.
pub type DeclarationComplete = dyn FnMut(u32);

/// Owns an `AXEventHandler*` (`ax_event_handler_new`), freed with `ax_event_handler_free` on drop.
#[derive(Debug)]
pub struct EventHandler {
    raw: NonNull<sys::AXEventHandler>,
}

impl EventHandler {
    /// A new event handler.
    ///
    /// # Errors
    /// [`Error::Failed`] if the SDK returns NULL.
    pub fn new() -> Result<Self> {
        // SAFETY: no preconditions; the result is checked for NULL.
        let raw = unsafe { sys::ax_event_handler_new() };
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or(Error::Failed {
                function: "ax_event_handler_new",
            })
    }

    /// The raw handler, for SDK calls this crate does not wrap. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::AXEventHandler {
        self.raw.as_ptr()
    }

    /// Declares an event whose keys, namespaces, types, source/data marks and nice names are
    /// those of `set` (a value left unset means "any value"). `on_complete` is called with the
    /// declaration id from the GLib main loop once the event system has registered it; a panic
    /// in it is caught (see [`Declaration::callback_panicked`]).
    ///
    /// # Errors
    /// [`Error::Sdk`] with the SDK's GError (e.g. `AX_EVENT_ERROR_DECLARATION`), or
    /// [`Error::Failed`].
    pub fn declare(
        &self,
        set: &KeyValueSet,
        kind: EventKind,
        on_complete: Option<Box<DeclarationComplete>>,
    ) -> Result<Declaration<'_>> {
        let callback = on_complete.map(|f| {
            let boxed = Box::new(Callback::new(f));
            // SAFETY (of later uses): freed only in Declaration::drop, after undeclaring.
            NonNull::from(Box::leak(boxed))
        });
        let (c_callback, user_data): (sys::AXDeclarationCompleteCallback, *mut c_void) =
            match callback {
                Some(cb) => (Some(declaration_complete), cb.as_ptr().cast()),
                None => (None, ptr::null_mut()),
            };
        let mut id: sys::guint = 0;
        let mut error = GErrorSlot::new();
        // SAFETY: handler and set are live objects owned by `self` and `set`; `id` and `error`
        // are valid out-pointers; `user_data` is NULL or a Callback that outlives the
        // declaration (freed in Declaration::drop after ax_event_handler_undeclare).
        let ok = unsafe {
            sys::ax_event_handler_declare(
                self.as_ptr(),
                set.as_ptr(),
                (kind == EventKind::Stateless).into(),
                &mut id,
                c_callback,
                user_data,
                error.as_out(),
            )
        };
        if ok == 0 {
            if let Some(cb) = callback {
                // SAFETY: the declaration failed, so the SDK keeps no pointer to the callback;
                // it came from Box::leak above and is freed once.
                drop(unsafe { Box::from_raw(cb.as_ptr()) });
            }
            return Err(error.into_error("ax_event_handler_declare"));
        }
        Ok(Declaration {
            handler: self,
            id,
            kind,
            callback,
        })
    }
}

impl Drop for EventHandler {
    fn drop(&mut self) {
        // SAFETY: we own the handler; every Declaration borrowing it has been dropped (and
        // undeclared) before, which the borrow checker guarantees.
        unsafe { sys::ax_event_handler_free(self.as_ptr()) }
    }
}

/// Stateful or stateless, the `stateless` argument of `ax_event_handler_declare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A property state (`stateless = FALSE`): carries a BOOL data key, conventionally
    /// [`ACTIVE_KEY`]; the rule engine can use it as "while active".
    Stateful,
    /// A pulse (`stateless = TRUE`).
    Stateless,
}

/// A declared event: holds the declaration id and undeclares it
/// (`ax_event_handler_undeclare`) when dropped.
#[derive(Debug)]
pub struct Declaration<'h> {
    handler: &'h EventHandler,
    id: u32,
    kind: EventKind,
    callback: Option<NonNull<Callback<DeclarationComplete>>>,
}

impl Declaration<'_> {
    /// The declaration id the SDK handed out.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Stateful or stateless, as declared.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// Whether the declaration-complete callback panicked (the panic was caught; the callback
    /// is not called again).
    pub fn callback_panicked(&self) -> bool {
        // SAFETY: the callback lives until self is dropped; only shared access (Cell inside).
        self.callback
            .is_some_and(|cb| unsafe { cb.as_ref() }.panicked())
    }

    /// Sends an event of this declaration with the keys and values of `set` (all keys of the
    /// declaration need a value), time-stamped now (`ax_event_new2(set, NULL)`); the set is
    /// copied by the SDK and stays the caller's.
    ///
    /// # Errors
    /// [`Error::Sdk`] (e.g. `AX_EVENT_ERROR_SEND`), or [`Error::Failed`] if `ax_event_new2`
    /// returns NULL.
    pub fn send(&self, set: &KeyValueSet) -> Result<()> {
        // SAFETY: set is a live key-value set; NULL time stamp means "now" (documented).
        let event = unsafe { sys::ax_event_new2(set.as_ptr(), ptr::null_mut()) };
        if event.is_null() {
            return Err(Error::Failed {
                function: "ax_event_new2",
            });
        }
        let mut error = GErrorSlot::new();
        // SAFETY: live handler, our declaration id, a live event (not taken by the call), a
        // valid error out-pointer.
        let ok = unsafe {
            sys::ax_event_handler_send_event(self.handler.as_ptr(), self.id, event, error.as_out())
        };
        // SAFETY: we own the event; send_event does not take it.
        unsafe { sys::ax_event_free(event) };
        if ok == 0 {
            return Err(error.into_error("ax_event_handler_send_event"));
        }
        Ok(())
    }

    /// Sends a state change of a stateful declaration: a new key-value set filled by `fill`
    /// (the source keys and any other data), plus the BOOL [`ACTIVE_KEY`] (no namespace) set to
    /// `active`.
    ///
    /// # Errors
    /// [`Error::Stateless`] for a stateless declaration; `fill`'s error; those of
    /// [`KeyValueSet::add_bool`] and [`Declaration::send`].
    pub fn send_state(
        &self,
        active: bool,
        fill: impl FnOnce(&mut KeyValueSet) -> Result<()>,
    ) -> Result<()> {
        if self.kind == EventKind::Stateless {
            return Err(Error::Stateless { id: self.id });
        }
        let mut set = KeyValueSet::new()?;
        fill(&mut set)?;
        set.add_bool(ACTIVE_KEY, None, Some(active))?;
        self.send(&set)
    }

    /// Undeclares now and reports the SDK's answer (dropping undeclares too, ignoring errors).
    ///
    /// # Errors
    /// [`Error::Sdk`] (e.g. `AX_EVENT_ERROR_UNDECLARE`) or [`Error::Failed`].
    pub fn undeclare(mut self) -> Result<()> {
        let result = self.undeclare_inner();
        self.free_callback();
        std::mem::forget(self);
        result
    }

    fn undeclare_inner(&mut self) -> Result<()> {
        let mut error = GErrorSlot::new();
        // SAFETY: live handler (borrowed for 'h), our id, valid error out-pointer.
        let ok = unsafe {
            sys::ax_event_handler_undeclare(self.handler.as_ptr(), self.id, error.as_out())
        };
        if ok == 0 {
            return Err(error.into_error("ax_event_handler_undeclare"));
        }
        Ok(())
    }

    fn free_callback(&mut self) {
        if let Some(cb) = self.callback.take() {
            // SAFETY: from Box::leak in EventHandler::declare; the declaration is undeclared,
            // so the SDK will not call it again; freed once (taken out of the Option).
            drop(unsafe { Box::from_raw(cb.as_ptr()) });
        }
    }
}

impl Drop for Declaration<'_> {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `undeclare` reports them.
        let _ = self.undeclare_inner();
        self.free_callback();
    }
}

/// The C trampoline of the declaration-complete callback.
unsafe extern "C" fn declaration_complete(declaration: sys::guint, user_data: sys::gpointer) {
    if user_data.is_null() {
        return;
    }
    // SAFETY: user_data is the Callback passed to ax_event_handler_declare, alive until the
    // Declaration is dropped, which undeclares first; shared access only (Cell/RefCell inside).
    let callback = unsafe { &*(user_data as *const Callback<DeclarationComplete>) };
    callback.run(|f| f(declaration));
}

/// Owns an `AXEventKeyValueSet*` (`ax_event_key_value_set_new`), freed on drop.
///
/// Keys are identified by name and namespace (`None`: no namespace, passed as NULL). The
/// typed `add_*` methods with `None` as the value add the key without a value, as for
/// declarations ("any value"). Adding an existing key again replaces its value.
#[derive(Debug)]
pub struct KeyValueSet {
    raw: NonNull<sys::AXEventKeyValueSet>,
}

impl KeyValueSet {
    /// An empty set.
    ///
    /// # Errors
    /// [`Error::Failed`] if the SDK returns NULL.
    pub fn new() -> Result<Self> {
        // SAFETY: no preconditions; checked for NULL.
        let raw = unsafe { sys::ax_event_key_value_set_new() };
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or(Error::Failed {
                function: "ax_event_key_value_set_new",
            })
    }

    /// The raw set, for SDK calls this crate does not wrap. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::AXEventKeyValueSet {
        self.raw.as_ptr()
    }

    fn add_raw(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        value: *const c_void,
        value_type: sys::AXEventValueType,
    ) -> Result<&mut Self> {
        let key = c_string("key", key)?;
        let namespace = c_string_opt("namespace", namespace)?;
        let mut error = GErrorSlot::new();
        // SAFETY: live set; NUL-terminated key and (optional) namespace; value is NULL or
        // points to a value of `value_type`'s C type (gint, gboolean, gdouble, or a
        // NUL-terminated string), all alive for the call; the SDK copies them.
        let ok = unsafe {
            sys::ax_event_key_value_set_add_key_value(
                self.as_ptr(),
                key.as_ptr(),
                opt_ptr(&namespace),
                value,
                value_type,
                error.as_out(),
            )
        };
        if ok == 0 {
            return Err(error.into_error("ax_event_key_value_set_add_key_value"));
        }
        Ok(self)
    }

    /// Adds an INT key (C `gint`).
    ///
    /// # Errors
    /// [`Error::Nul`] for a NUL in key or namespace; the SDK's [`Error::Sdk`].
    pub fn add_int(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        value: Option<i32>,
    ) -> Result<&mut Self> {
        let value = value.map(|v| v as sys::gint);
        let ptr = value
            .as_ref()
            .map_or(ptr::null(), |v| ptr::from_ref(v).cast());
        self.add_raw(key, namespace, ptr, sys::AXEventValueType_AX_VALUE_TYPE_INT)
    }

    /// Adds a BOOL key (C `gboolean`, 1 or 0).
    ///
    /// # Errors
    /// As [`KeyValueSet::add_int`].
    pub fn add_bool(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        value: Option<bool>,
    ) -> Result<&mut Self> {
        let value = value.map(sys::gboolean::from);
        let ptr = value
            .as_ref()
            .map_or(ptr::null(), |v| ptr::from_ref(v).cast());
        self.add_raw(
            key,
            namespace,
            ptr,
            sys::AXEventValueType_AX_VALUE_TYPE_BOOL,
        )
    }

    /// Adds a DOUBLE key (C `gdouble`).
    ///
    /// # Errors
    /// As [`KeyValueSet::add_int`].
    pub fn add_double(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        value: Option<f64>,
    ) -> Result<&mut Self> {
        let ptr = value
            .as_ref()
            .map_or(ptr::null(), |v| ptr::from_ref(v).cast());
        self.add_raw(
            key,
            namespace,
            ptr,
            sys::AXEventValueType_AX_VALUE_TYPE_DOUBLE,
        )
    }

    /// Adds a STRING key.
    ///
    /// # Errors
    /// As [`KeyValueSet::add_int`], and [`Error::Nul`] for a NUL in the value.
    pub fn add_string(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        value: Option<&str>,
    ) -> Result<&mut Self> {
        let value = c_string_opt("value", value)?;
        self.add_raw(
            key,
            namespace,
            opt_ptr(&value).cast(),
            sys::AXEventValueType_AX_VALUE_TYPE_STRING,
        )
    }

    fn mark(
        &mut self,
        function: &'static str,
        key: &str,
        namespace: Option<&str>,
        call: impl FnOnce(
            *mut sys::AXEventKeyValueSet,
            *const sys::gchar,
            *const sys::gchar,
            *mut *mut sys::GError,
        ) -> sys::gboolean,
    ) -> Result<&mut Self> {
        let key = c_string("key", key)?;
        let namespace = c_string_opt("namespace", namespace)?;
        let mut error = GErrorSlot::new();
        let ok = call(
            self.as_ptr(),
            key.as_ptr(),
            opt_ptr(&namespace),
            error.as_out(),
        );
        if ok == 0 {
            return Err(error.into_error(function));
        }
        Ok(self)
    }

    /// Marks an existing key as a source key (`ax_event_key_value_set_mark_as_source`), e.g.
    /// the topic keys of an app event.
    ///
    /// # Errors
    /// [`Error::Nul`]; [`Error::Sdk`] (e.g. `AX_EVENT_ERROR_KEY_NOT_FOUND`).
    pub fn mark_as_source(&mut self, key: &str, namespace: Option<&str>) -> Result<&mut Self> {
        self.mark(
            "ax_event_key_value_set_mark_as_source",
            key,
            namespace,
            // SAFETY: live set, NUL-terminated strings alive for the call, valid error slot.
            |s, k, n, e| unsafe { sys::ax_event_key_value_set_mark_as_source(s, k, n, e) },
        )
    }

    /// Marks an existing key as a data key (`ax_event_key_value_set_mark_as_data`).
    ///
    /// # Errors
    /// As [`KeyValueSet::mark_as_source`].
    pub fn mark_as_data(&mut self, key: &str, namespace: Option<&str>) -> Result<&mut Self> {
        self.mark(
            "ax_event_key_value_set_mark_as_data",
            key,
            namespace,
            // SAFETY: live set, NUL-terminated strings alive for the call, valid error slot.
            |s, k, n, e| unsafe { sys::ax_event_key_value_set_mark_as_data(s, k, n, e) },
        )
    }

    /// Tags an existing key with a user-defined type
    /// (`ax_event_key_value_set_mark_as_user_defined`), e.g. `wstype:tt:ReferenceToken` or
    /// `wstype:xs:float`.
    ///
    /// # Errors
    /// As [`KeyValueSet::mark_as_source`]; [`Error::Nul`] for a NUL in `user_tag`.
    pub fn mark_as_user_defined(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        user_tag: &str,
    ) -> Result<&mut Self> {
        let tag = c_string("user tag", user_tag)?;
        self.mark(
            "ax_event_key_value_set_mark_as_user_defined",
            key,
            namespace,
            // SAFETY: live set, NUL-terminated strings alive for the call, valid error slot.
            |s, k, n, e| unsafe {
                sys::ax_event_key_value_set_mark_as_user_defined(s, k, n, tag.as_ptr(), e)
            },
        )
    }

    /// Sets the human-readable names of an existing key and of its value
    /// (`ax_event_key_value_set_add_nice_names`); `None` leaves one unset (NULL).
    ///
    /// # Errors
    /// As [`KeyValueSet::mark_as_source`]; [`Error::Nul`] for a NUL in a name.
    pub fn add_nice_names(
        &mut self,
        key: &str,
        namespace: Option<&str>,
        key_nice_name: Option<&str>,
        value_nice_name: Option<&str>,
    ) -> Result<&mut Self> {
        let key_nice = c_string_opt("key nice name", key_nice_name)?;
        let value_nice = c_string_opt("value nice name", value_nice_name)?;
        self.mark(
            "ax_event_key_value_set_add_nice_names",
            key,
            namespace,
            // SAFETY: live set, NUL-terminated strings (or NULL) alive for the call, valid
            // error slot.
            |s, k, n, e| unsafe {
                sys::ax_event_key_value_set_add_nice_names(
                    s,
                    k,
                    n,
                    opt_ptr(&key_nice),
                    opt_ptr(&value_nice),
                    e,
                )
            },
        )
    }
}

impl Drop for KeyValueSet {
    fn drop(&mut self) {
        // SAFETY: we own the set; freed once.
        unsafe { sys::ax_event_key_value_set_free(self.as_ptr()) }
    }
}
