//! The Rust side of the C test double (`tests/double/axsdk_double.c`): its log, failure
//! injection, queued parameter changes, and a lock that serialises the tests (the double's log
//! is global).
//!
//! Only with the `double` feature, which only dev-dependencies enable (this crate's tests and
//! the `earshot` crate's tests): build.rs then compiles the double and links it in place of
//! the SDK. The double is not thread-safe except [`Double::queue_change`]: the code under test
//! may call the SDK on its own thread while the test holds the [`Double`], as long as the test
//! reads the log only after that thread has stopped.
#![allow(missing_docs)]

use std::ffi::{c_char, c_int, c_long, c_uint, CStr, CString};
use std::sync::{Mutex, MutexGuard};

// Linked by build.rs (`double` feature).
unsafe extern "C" {
    fn double_reset();
    fn double_fail_next(function: *const c_char, code: c_int, message: *const c_char);
    fn double_event_domain() -> c_uint;
    fn double_parameter_domain() -> c_uint;
    fn double_live_errors() -> c_long;
    fn double_live_allocs() -> c_long;
    fn double_declaration_count() -> c_int;
    fn double_declaration_id(i: c_int) -> c_uint;
    fn double_declaration_stateless(i: c_int) -> c_int;
    fn double_declaration_undeclared(i: c_int) -> c_int;
    fn double_declaration_dump(i: c_int) -> *const c_char;
    fn double_complete_declarations() -> c_int;
    fn double_callbacks_returned() -> c_int;
    fn double_sent_count() -> c_int;
    fn double_sent_declaration(i: c_int) -> c_uint;
    fn double_sent_active(i: c_int) -> c_int;
    fn double_sent_had_time_stamp(i: c_int) -> c_int;
    fn double_sent_dump(i: c_int) -> *const c_char;
    fn double_undeclare_count() -> c_int;
    fn double_undeclared_id(i: c_int) -> c_uint;
    fn double_param_seed(name: *const c_char, value: *const c_char) -> c_int;
    fn double_param_value(name: *const c_char) -> *const c_char;
    fn double_param_set_count() -> c_int;
    fn double_param_last_do_sync() -> c_int;
    fn double_param_external_change(name: *const c_char, value: *const c_char) -> c_int;
    fn double_param_queue_change(name: *const c_char, value: *const c_char) -> c_int;
    fn double_param_queued() -> c_int;
    fn double_iterations() -> c_int;
}

static LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of the double, reset; checks on drop that nothing leaked.
pub struct Double {
    _guard: MutexGuard<'static, ()>,
}

fn c(s: &str) -> CString {
    CString::new(s).expect("test strings have no NUL")
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the double returns NUL-terminated strings it keeps until the next reset.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A declaration as the double recorded it.
#[derive(Debug, PartialEq)]
pub struct Declared {
    pub id: u32,
    pub stateless: bool,
    pub undeclared: bool,
    pub keys: String,
}

/// A sent event as the double recorded it.
#[derive(Debug, PartialEq)]
pub struct Sent {
    pub declaration: u32,
    /// None: no BOOL key `active`.
    pub active: Option<bool>,
    pub had_time_stamp: bool,
    pub keys: String,
}

impl Double {
    pub fn take() -> Self {
        let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: serialised by LOCK; the double is plain C state.
        unsafe { double_reset() };
        Self { _guard: guard }
    }

    pub fn fail_next(&self, function: &str, code: i32, message: &str) {
        let (f, m) = (c(function), c(message));
        // SAFETY: NUL-terminated strings; the double copies them.
        unsafe { double_fail_next(f.as_ptr(), code, m.as_ptr()) }
    }

    pub fn event_domain(&self) -> u32 {
        // SAFETY: no preconditions.
        unsafe { double_event_domain() }
    }

    pub fn parameter_domain(&self) -> u32 {
        // SAFETY: no preconditions.
        unsafe { double_parameter_domain() }
    }

    /// GErrors handed out and not freed with g_error_free.
    pub fn live_errors(&self) -> i64 {
        // SAFETY: no preconditions.
        unsafe { double_live_errors() as i64 }
    }

    /// Objects, strings and list nodes handed out and not freed.
    pub fn live_allocs(&self) -> i64 {
        // SAFETY: no preconditions.
        unsafe { double_live_allocs() as i64 }
    }

    pub fn declarations(&self) -> Vec<Declared> {
        // SAFETY: indices below the count; strings are copied at once.
        unsafe {
            (0..double_declaration_count())
                .map(|i| Declared {
                    id: double_declaration_id(i),
                    stateless: double_declaration_stateless(i) == 1,
                    undeclared: double_declaration_undeclared(i) == 1,
                    keys: text(double_declaration_dump(i)),
                })
                .collect()
        }
    }

    /// Runs the pending declaration-complete callbacks as the main loop would; returns how
    /// many ran and returned into C.
    pub fn complete_declarations(&self) -> (i32, i32) {
        // SAFETY: the callbacks' user data are alive while their declarations are.
        unsafe { (double_complete_declarations(), double_callbacks_returned()) }
    }

    pub fn sent(&self) -> Vec<Sent> {
        // SAFETY: indices below the count; strings are copied at once.
        unsafe {
            (0..double_sent_count())
                .map(|i| Sent {
                    declaration: double_sent_declaration(i),
                    active: match double_sent_active(i) {
                        0 => Some(false),
                        1 => Some(true),
                        _ => None,
                    },
                    had_time_stamp: double_sent_had_time_stamp(i) == 1,
                    keys: text(double_sent_dump(i)),
                })
                .collect()
        }
    }

    pub fn undeclared(&self) -> Vec<u32> {
        // SAFETY: indices below the count.
        unsafe {
            (0..double_undeclare_count())
                .map(|i| double_undeclared_id(i))
                .collect()
        }
    }

    pub fn seed_param(&self, name: &str, value: &str) {
        let (n, v) = (c(name), c(value));
        // SAFETY: NUL-terminated strings; the double copies them.
        assert_eq!(unsafe { double_param_seed(n.as_ptr(), v.as_ptr()) }, 1);
    }

    pub fn param_value(&self, name: &str) -> Option<String> {
        let n = c(name);
        // SAFETY: NUL-terminated name; the result is copied at once.
        let p = unsafe { double_param_value(n.as_ptr()) };
        (!p.is_null()).then(|| text(p))
    }

    /// (number of successful sets, do_sync of the last one or -1)
    pub fn param_sets(&self) -> (i32, i32) {
        // SAFETY: no preconditions.
        unsafe { (double_param_set_count(), double_param_last_do_sync()) }
    }

    /// A change from outside the app; returns how many callbacks ran.
    pub fn external_change(&self, name: &str, value: &str) -> i32 {
        let (n, v) = (c(name), c(value));
        // SAFETY: NUL-terminated strings; registered callbacks' user data are alive.
        unsafe { double_param_external_change(n.as_ptr(), v.as_ptr()) }
    }

    /// A change from outside the app, delivered to the registered callbacks by the next
    /// `g_main_context_iteration` on whatever thread iterates. Thread-safe.
    pub fn queue_change(&self, name: &str, value: &str) {
        let (n, v) = (c(name), c(value));
        // SAFETY: NUL-terminated strings, copied under the double's queue lock.
        assert_eq!(
            unsafe { double_param_queue_change(n.as_ptr(), v.as_ptr()) },
            1
        );
    }

    /// Queued changes not delivered yet. Thread-safe.
    pub fn queued_changes(&self) -> i32 {
        // SAFETY: no preconditions; reads under the queue lock.
        unsafe { double_param_queued() }
    }

    /// Calls of `g_main_context_iteration` since [`Double::take`].
    pub fn iterations(&self) -> i32 {
        // SAFETY: no preconditions.
        unsafe { double_iterations() }
    }
}
