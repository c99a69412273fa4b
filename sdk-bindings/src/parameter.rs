//! Safe wrapper of `axparameter` (source: ACAP Native SDK API, `axsdk/axparameter.h`): the
//! app's parameters declared in the manifest's `paramConfig`, stored by the device in
//! `/etc/dynamic/<app>.conf`.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use crate::callback::Callback;
use crate::error::{c_string, Error, GErrorSlot, Result};
use crate::sys;

/// The type of a parameter-change closure: `(name, value)`, where `name` is the full name the
/// SDK passes (`root.<App>.<Param>` in Axis's examples) and `value` the new value.
pub type ParameterChanged = dyn FnMut(&str, &str);

/// Owns an `AXParameter*` (`ax_parameter_new`) and the closures registered on it; on drop it
/// unregisters them, frees them and frees the handle (`ax_parameter_free`).
#[derive(Debug)]
pub struct Parameters {
    raw: NonNull<sys::AXParameter>,
    callbacks: Vec<Registered>,
}

#[derive(Debug)]
struct Registered {
    name: CString,
    callback: NonNull<Callback<ParameterChanged>>,
}

impl Parameters {
    /// The parameters of app `app_name` (the manifest's `appName`).
    ///
    /// # Errors
    /// [`Error::Nul`]; [`Error::Sdk`] with the SDK's GError; [`Error::Failed`].
    pub fn new(app_name: &str) -> Result<Self> {
        let app = c_string("app name", app_name)?;
        let mut error = GErrorSlot::new();
        // SAFETY: NUL-terminated app name alive for the call; valid error out-pointer.
        let raw = unsafe { sys::ax_parameter_new(app.as_ptr(), error.as_out()) };
        match NonNull::new(raw) {
            Some(raw) => Ok(Self {
                raw,
                callbacks: Vec::new(),
            }),
            None => Err(error.into_error("ax_parameter_new")),
        }
    }

    /// The raw handle, for SDK calls this crate does not wrap. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::AXParameter {
        self.raw.as_ptr()
    }

    /// The value of parameter `name` (the short name, e.g. `"Threshold"`).
    ///
    /// # Errors
    /// [`Error::Nul`]; [`Error::Sdk`] (e.g. no such parameter); [`Error::NotUtf8`].
    pub fn get(&self, name: &str) -> Result<String> {
        let name = c_string("parameter name", name)?;
        let mut value: *mut sys::gchar = std::ptr::null_mut();
        let mut error = GErrorSlot::new();
        // SAFETY: live handle, NUL-terminated name, valid out-pointers.
        let ok = unsafe {
            sys::ax_parameter_get(self.as_ptr(), name.as_ptr(), &mut value, error.as_out())
        };
        if ok == 0 || value.is_null() {
            return Err(error.into_error("ax_parameter_get"));
        }
        // SAFETY: on success `value` is a newly allocated NUL-terminated string we own.
        let result = unsafe { CStr::from_ptr(value) }
            .to_str()
            .map(str::to_owned)
            .map_err(|_| Error::NotUtf8 {
                function: "ax_parameter_get",
            });
        // SAFETY: allocated by the SDK with GLib; freed once, not used afterwards.
        unsafe { sys::g_free(value.cast()) };
        result
    }

    /// Sets parameter `name` to `value`; with `do_sync` the SDK writes it through to storage
    /// before returning (the `do_sync` argument of `ax_parameter_set`).
    ///
    /// # Errors
    /// [`Error::Nul`]; [`Error::Sdk`] (e.g. no such parameter); [`Error::Failed`].
    pub fn set(&self, name: &str, value: &str, do_sync: bool) -> Result<()> {
        let name = c_string("parameter name", name)?;
        let value = c_string("parameter value", value)?;
        let mut error = GErrorSlot::new();
        // SAFETY: live handle, NUL-terminated strings alive for the call, valid error slot.
        let ok = unsafe {
            sys::ax_parameter_set(
                self.as_ptr(),
                name.as_ptr(),
                value.as_ptr(),
                do_sync.into(),
                error.as_out(),
            )
        };
        if ok == 0 {
            return Err(error.into_error("ax_parameter_set"));
        }
        Ok(())
    }

    /// The names of the app's parameters, in the SDK's order. Names that are not UTF-8 are
    /// converted lossily.
    ///
    /// # Errors
    /// [`Error::Sdk`] if the SDK reports one (a NULL list without an error is an empty list).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut error = GErrorSlot::new();
        // SAFETY: live handle, valid error out-pointer.
        let list = unsafe { sys::ax_parameter_list(self.as_ptr(), error.as_out()) };
        let mut names = Vec::new();
        let mut node = list;
        while !node.is_null() {
            // SAFETY: `node` is a live node of the list we own; its data is NULL or a
            // NUL-terminated string we own, freed once here and not used afterwards.
            unsafe {
                let data = (*node).data as *mut sys::gchar;
                if !data.is_null() {
                    names.push(CStr::from_ptr(data).to_string_lossy().into_owned());
                    sys::g_free(data.cast());
                }
                node = (*node).next;
            }
        }
        if list.is_null() {
            // Empty list or failure: only the GError tells.
            if error.is_set() {
                return Err(error.into_error("ax_parameter_list"));
            }
        } else {
            // SAFETY: the list's nodes are ours; their data has been freed above.
            unsafe { sys::g_list_free(list) };
        }
        Ok(names)
    }

    /// Calls `on_change(name, value)` from the GLib main loop when parameter `name` changes
    /// (`ax_parameter_register_callback`). A closure already registered for `name` is replaced.
    /// The closure is kept alive by `self` and freed on drop; a panic in it is caught, never
    /// reaches C, and disables it (see [`Parameters::callback_panicked`]).
    ///
    /// # Errors
    /// [`Error::Nul`]; [`Error::Sdk`]; [`Error::Failed`].
    pub fn register_callback(
        &mut self,
        name: &str,
        on_change: impl FnMut(&str, &str) + 'static,
    ) -> Result<()> {
        let c_name = c_string("parameter name", name)?;
        self.unregister_callback(name);
        let boxed: Box<ParameterChanged> = Box::new(on_change);
        let callback = NonNull::from(Box::leak(Box::new(Callback::new(boxed))));
        let mut error = GErrorSlot::new();
        // SAFETY: live handle, NUL-terminated name, a trampoline matching AXParameterCallback,
        // user data that lives until unregistered (see unregister_callback / Drop).
        let ok = unsafe {
            sys::ax_parameter_register_callback(
                self.as_ptr(),
                c_name.as_ptr(),
                Some(parameter_changed),
                callback.as_ptr().cast(),
                error.as_out(),
            )
        };
        if ok == 0 {
            // SAFETY: registration failed, so the SDK holds no pointer; from Box::leak above.
            drop(unsafe { Box::from_raw(callback.as_ptr()) });
            return Err(error.into_error("ax_parameter_register_callback"));
        }
        self.callbacks.push(Registered {
            name: c_name,
            callback,
        });
        Ok(())
    }

    /// Unregisters and frees the closure registered for `name`; false if there was none.
    pub fn unregister_callback(&mut self, name: &str) -> bool {
        let Some(index) = self
            .callbacks
            .iter()
            .position(|r| r.name.as_bytes() == name.as_bytes())
        else {
            return false;
        };
        let registered = self.callbacks.swap_remove(index);
        self.release(registered);
        true
    }

    /// Whether the closure registered for `name` panicked (and is no longer called).
    pub fn callback_panicked(&self, name: &str) -> bool {
        self.callbacks.iter().any(|r| {
            // SAFETY: registered callbacks live until unregistered; shared access only.
            r.name.as_bytes() == name.as_bytes() && unsafe { r.callback.as_ref() }.panicked()
        })
    }

    fn release(&self, registered: Registered) {
        // SAFETY: live handle, the NUL-terminated name the callback was registered with.
        unsafe { sys::ax_parameter_unregister_callback(self.as_ptr(), registered.name.as_ptr()) };
        // SAFETY: unregistered, so the SDK no longer calls it; from Box::leak; freed once.
        drop(unsafe { Box::from_raw(registered.callback.as_ptr()) });
    }
}

impl Drop for Parameters {
    fn drop(&mut self) {
        for registered in std::mem::take(&mut self.callbacks) {
            self.release(registered);
        }
        // SAFETY: we own the handle; no callback is registered any more; freed once.
        unsafe { sys::ax_parameter_free(self.as_ptr()) }
    }
}

/// The C trampoline of parameter-change callbacks.
unsafe extern "C" fn parameter_changed(
    name: *const sys::gchar,
    value: *const sys::gchar,
    data: sys::gpointer,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: name and value are NULL or NUL-terminated strings owned by the SDK for the call.
    let (name, value) = unsafe { (lossy(name), lossy(value)) };
    // SAFETY: data is the Callback registered by Parameters::register_callback, alive until it
    // is unregistered; shared access only (Cell/RefCell inside).
    let callback = unsafe { &*(data as *const Callback<ParameterChanged>) };
    callback.run(|f| f(&name, &value));
}

/// A C string as an owned String, lossily; NULL as "".
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string alive for the call.
unsafe fn lossy(p: *const sys::gchar) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: see the function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
