//! Rust closures called from C: a boxed closure behind a thin pointer, run under
//! `catch_unwind` so that a panic never unwinds into the SDK.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A closure handed to C as `user_data`. After a panic it is disabled (its state may be
/// broken) and [`Callback::panicked`] reports it.
pub(crate) struct Callback<F: ?Sized> {
    panicked: Cell<bool>,
    f: RefCell<Box<F>>,
}

impl<F: ?Sized> Callback<F> {
    pub(crate) fn new(f: Box<F>) -> Self {
        Self {
            panicked: Cell::new(false),
            f: RefCell::new(f),
        }
    }

    /// Whether the closure panicked (and is therefore no longer called).
    pub(crate) fn panicked(&self) -> bool {
        self.panicked.get()
    }

    /// Runs `call` on the closure unless it panicked before or is already running (a
    /// re-entrant call from C is dropped rather than aliased). Never unwinds.
    pub(crate) fn run(&self, call: impl FnOnce(&mut F)) {
        if self.panicked.get() {
            return;
        }
        let Ok(mut f) = self.f.try_borrow_mut() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| call(&mut f))).is_err() {
            self.panicked.set(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_and_disables_the_callback() {
        let calls = std::rc::Rc::new(Cell::new(0));
        let seen = calls.clone();
        let cb: Callback<dyn FnMut(u32)> = Callback::new(Box::new(move |n| {
            seen.set(seen.get() + 1);
            if n == 1 {
                panic!("test panic");
            }
        }));
        cb.run(|f| f(0));
        assert!(!cb.panicked());
        cb.run(|f| f(1));
        assert!(cb.panicked());
        cb.run(|f| f(2));
        assert_eq!(calls.get(), 2);
    }
}
