//! Typed errors of the SDK calls.

use std::ffi::{CStr, CString};
use std::ptr;

use crate::sys;

/// The result of this crate's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an SDK call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SDK function `function` failed and reported a GLib `GError` (which has been freed).
    /// For axevent the `code` is one of `sys::AXEventErrorCode_*`; `domain` is the GError's
    /// `GQuark`, a number only meaningful within this process.
    #[error("{function} failed: {message} (GError domain {domain}, code {code})")]
    Sdk {
        /// The C function that failed, e.g. `"ax_event_handler_declare"`.
        function: &'static str,
        /// The GError's domain (a `GQuark`).
        domain: u32,
        /// The GError's code within its domain.
        code: i32,
        /// The GError's message (lossily converted to UTF-8).
        message: String,
    },
    /// The SDK function `function` returned failure (FALSE or NULL) without a `GError`.
    #[error("{function} failed without reporting an error")]
    Failed {
        /// The C function that failed.
        function: &'static str,
    },
    /// A string argument contains a NUL byte and cannot be passed to C.
    #[error("{what} contains a NUL byte at byte {position}")]
    Nul {
        /// Which argument (e.g. `"key"`, `"parameter name"`).
        what: &'static str,
        /// Byte offset of the first NUL.
        position: usize,
    },
    /// A string returned by the SDK is not valid UTF-8.
    #[error("{function} returned a string that is not UTF-8")]
    NotUtf8 {
        /// The C function that returned it.
        function: &'static str,
    },
    /// `mallopt(M_MMAP_THRESHOLD, bytes)` was not applied ([`crate::memory::set_mmap_threshold`]):
    /// `bytes` does not fit a C `int`, or glibc refused it.
    #[error("mmap threshold of {bytes} bytes not applied: mallopt takes a C int up to 2147483647, and glibc must accept it")]
    MmapThreshold {
        /// The threshold asked for, in bytes.
        bytes: usize,
    },
    /// `madvise` failed ([`crate::memory::page_out`]).
    #[error("madvise(MADV_PAGEOUT) failed: {message} (errno {errno}; Linux 5.4 or later needed)")]
    Madvise {
        /// The kernel's errno.
        errno: i32,
        /// Its description.
        message: String,
    },
    /// A stateful-only operation (an `active` state) on a stateless declaration.
    #[error("declaration {id} is stateless: it has no active state")]
    Stateless {
        /// The declaration id.
        id: u32,
    },
}

/// The `GError **error` out-argument of one SDK call: starts NULL; converted into an [`Error`]
/// (and freed) after a failure, freed on drop if the SDK set it anyway on success.
pub(crate) struct GErrorSlot(*mut sys::GError);

impl GErrorSlot {
    pub(crate) fn new() -> Self {
        Self(ptr::null_mut())
    }

    /// The pointer to pass as the `GError **error` argument.
    pub(crate) fn as_out(&mut self) -> *mut *mut sys::GError {
        &mut self.0
    }

    /// Whether the SDK set a GError.
    pub(crate) fn is_set(&self) -> bool {
        !self.0.is_null()
    }

    /// The error after `function` reported failure: the GError's contents, or
    /// [`Error::Failed`] if it set none. Frees the GError.
    pub(crate) fn into_error(mut self, function: &'static str) -> Error {
        let raw = std::mem::replace(&mut self.0, ptr::null_mut());
        if raw.is_null() {
            return Error::Failed { function };
        }
        // SAFETY: `raw` was set by the SDK through `as_out`: a valid GError that we own (GLib's
        // convention for `GError **` out-arguments); its message is NULL or NUL-terminated.
        let error = unsafe {
            let e = &*raw;
            let message = if e.message.is_null() {
                String::new()
            } else {
                CStr::from_ptr(e.message).to_string_lossy().into_owned()
            };
            Error::Sdk {
                function,
                domain: e.domain,
                code: e.code,
                message,
            }
        };
        // SAFETY: we own `raw` (see above) and no reference to it outlives this point.
        unsafe { sys::g_error_free(raw) };
        error
    }
}

impl Drop for GErrorSlot {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a GError the SDK set and we own; freed once (the pointer is not reused).
            unsafe { sys::g_error_free(self.0) };
        }
    }
}

/// `s` as a C string, or [`Error::Nul`] naming `what`.
pub(crate) fn c_string(what: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|e| Error::Nul {
        what,
        position: e.nul_position(),
    })
}

/// `s` as an optional C string (None stays None, passed to C as NULL).
pub(crate) fn c_string_opt(what: &'static str, s: Option<&str>) -> Result<Option<CString>> {
    s.map(|s| c_string(what, s)).transpose()
}

/// The pointer of an optional C string: NULL for None.
pub(crate) fn opt_ptr(s: &Option<CString>) -> *const std::ffi::c_char {
    s.as_ref().map_or(ptr::null(), |s| s.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_argument_is_a_typed_error() {
        assert_eq!(
            c_string("key", "to\0pic"),
            Err(Error::Nul {
                what: "key",
                position: 2
            })
        );
        assert_eq!(c_string_opt("ns", None), Ok(None));
        assert!(opt_ptr(&None).is_null());
    }

    #[test]
    fn no_gerror_means_failed() {
        assert_eq!(
            GErrorSlot::new().into_error("ax_x"),
            Error::Failed { function: "ax_x" }
        );
    }
}
