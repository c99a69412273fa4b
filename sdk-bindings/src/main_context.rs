//! The GLib main context on which the SDK delivers its callbacks.
//!
//! axevent reports a finished declaration and axparameter a changed parameter through
//! callbacks that GLib dispatches from the global default main context (`glib/gmain.h`), on
//! the thread that iterates it. Axis's examples run `g_main_loop_run` for that; an app with a
//! loop of its own calls [`dispatch_pending`] from it instead, on the thread that owns the
//! [`EventHandler`](crate::event::EventHandler) and [`Parameters`](crate::parameter::Parameters).

use crate::sys;

/// Dispatches the callbacks that are ready on the default main context without waiting, at
/// most `max_iterations` iterations (`g_main_context_iteration(NULL, FALSE)` until it reports
/// nothing dispatched). Returns how many iterations dispatched something.
///
/// Call it from the thread that created the SDK objects whose callbacks may run.
pub fn dispatch_pending(max_iterations: usize) -> usize {
    let mut dispatched = 0;
    for _ in 0..max_iterations {
        // SAFETY: NULL is the documented name of the default context; FALSE never blocks. The
        // callbacks it may run are the SDK objects' trampolines, whose user data live as long
        // as their registrations (see event.rs and parameter.rs).
        if unsafe { sys::g_main_context_iteration(std::ptr::null_mut(), 0) } == 0 {
            break;
        }
        dispatched += 1;
    }
    dispatched
}
