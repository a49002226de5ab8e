//! Status codes, the thread-local error slot, and the panic-catching call guard.

use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `pmi_status` values (see the header).
pub type PmiStatus = i32;
pub const PMI_OK: PmiStatus = 0;
pub const PMI_ERR_INVALID_ARGUMENT: PmiStatus = 1;
pub const PMI_ERR_NULL_POINTER: PmiStatus = 2;
pub const PMI_ERR_IO: PmiStatus = 3;
pub const PMI_ERR_INVALID_MODEL: PmiStatus = 4;
pub const PMI_ERR_UNSUPPORTED_OPERATOR: PmiStatus = 5;
pub const PMI_ERR_UNSUPPORTED_DTYPE: PmiStatus = 6;
pub const PMI_ERR_SHAPE_MISMATCH: PmiStatus = 7;
pub const PMI_ERR_READ_ONLY: PmiStatus = 8;
pub const PMI_ERR_VERSION_MISMATCH: PmiStatus = 9;
pub const PMI_ERR_LIMIT_EXCEEDED: PmiStatus = 10;
pub const PMI_ERR_PANIC: PmiStatus = 11;
pub const PMI_ERR_INTERNAL: PmiStatus = 12;
pub const PMI_ERR_RUNTIME: PmiStatus = 13;

/// ABI version (major, minor) — must equal the header's PMI_ABI_VERSION_* macros.
pub const ABI_VERSION: (u32, u32) = (1, 1);

/// The status code of an error (the one mapping from `Error` to C).
pub fn status_of(e: &Error) -> PmiStatus {
    match e {
        Error::InvalidArgument(_) => PMI_ERR_INVALID_ARGUMENT,
        Error::NullPointer(_) => PMI_ERR_NULL_POINTER,
        Error::Io(_) => PMI_ERR_IO,
        Error::InvalidModel(_) => PMI_ERR_INVALID_MODEL,
        Error::UnsupportedOperator(_) => PMI_ERR_UNSUPPORTED_OPERATOR,
        Error::UnsupportedDtype(_) => PMI_ERR_UNSUPPORTED_DTYPE,
        Error::ShapeMismatch(_) => PMI_ERR_SHAPE_MISMATCH,
        Error::ReadOnly(_) => PMI_ERR_READ_ONLY,
        Error::VersionMismatch(_) => PMI_ERR_VERSION_MISMATCH,
        Error::LimitExceeded(_) => PMI_ERR_LIMIT_EXCEEDED,
        Error::Panic(_) => PMI_ERR_PANIC,
        Error::Internal(_) => PMI_ERR_INTERNAL,
        Error::Runtime(_) => PMI_ERR_RUNTIME,
    }
}

thread_local! {
    static LAST: RefCell<(PmiStatus, CString)> = RefCell::new((PMI_OK, CString::default()));
}

fn set_last(status: PmiStatus, msg: &str) {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        // Success is the hot path (every call): clear without allocating.
        if msg.is_empty() {
            if l.0 != status || !l.1.as_bytes().is_empty() {
                *l = (status, CString::default());
            }
            return;
        }
        *l = (status, CString::new(msg.replace('\0', "\\0")).unwrap_or_default());
    });
}

/// Run `f`, catching panics; record and return the status.
pub(crate) fn guard<F: FnOnce() -> crate::Result<()>>(f: F) -> PmiStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last(PMI_OK, "");
            PMI_OK
        }
        Ok(Err(e)) => {
            let s = status_of(&e);
            set_last(s, e.message());
            s
        }
        Err(payload) => {
            let msg = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_string()
            };
            set_last(PMI_ERR_PANIC, &format!("internal panic: {msg}"));
            PMI_ERR_PANIC
        }
    }
}

/// Run an infallible body that must still never unwind across the boundary; `default` on panic.
pub(crate) fn guard_value<T, F: FnOnce() -> T>(default: T, f: F) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

/// Borrow a non-null pointer or fail naming the argument.
pub(crate) unsafe fn nn<'a, T>(p: *const T, what: &str) -> crate::Result<&'a T> {
    p.as_ref().ok_or_else(|| Error::NullPointer(format!("argument '{what}' is NULL")))
}

/// Mutable variant of [`nn`].
pub(crate) unsafe fn nn_mut<'a, T>(p: *mut T, what: &str) -> crate::Result<&'a mut T> {
    p.as_mut().ok_or_else(|| Error::NullPointer(format!("argument '{what}' is NULL")))
}

/// Write through an out-pointer, or fail naming it.
pub(crate) unsafe fn write_out<T>(p: *mut T, what: &str, v: T) -> crate::Result<()> {
    if p.is_null() {
        return Err(Error::NullPointer(format!("output argument '{what}' is NULL")));
    }
    p.write(v);
    Ok(())
}

/// A NUL-terminated UTF-8 string argument.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> crate::Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullPointer(format!("argument '{what}' is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("argument '{what}' is not valid UTF-8")))
}

/// Element `i` of a C array of NUL-terminated UTF-8 strings named `array` (the message names
/// `array[i]`; formatted only on failure).
pub(crate) unsafe fn c_str_at<'a>(array: *const *const c_char, i: usize, what: &str) -> crate::Result<&'a str> {
    let p = *array.add(i);
    if p.is_null() {
        return Err(Error::NullPointer(format!("argument '{what}[{i}]' is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("argument '{what}[{i}]' is not valid UTF-8")))
}

#[no_mangle]
pub extern "C" fn pmi_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || LAST.with(|l| l.borrow().1.as_ptr()))
}

#[no_mangle]
pub extern "C" fn pmi_last_status() -> PmiStatus {
    guard_value(PMI_ERR_INTERNAL, || LAST.with(|l| l.borrow().0))
}

#[no_mangle]
pub extern "C" fn pmi_status_name(status: PmiStatus) -> *const c_char {
    let s: &'static CStr = match status {
        PMI_OK => c"PMI_OK",
        PMI_ERR_INVALID_ARGUMENT => c"PMI_ERR_INVALID_ARGUMENT",
        PMI_ERR_NULL_POINTER => c"PMI_ERR_NULL_POINTER",
        PMI_ERR_IO => c"PMI_ERR_IO",
        PMI_ERR_INVALID_MODEL => c"PMI_ERR_INVALID_MODEL",
        PMI_ERR_UNSUPPORTED_OPERATOR => c"PMI_ERR_UNSUPPORTED_OPERATOR",
        PMI_ERR_UNSUPPORTED_DTYPE => c"PMI_ERR_UNSUPPORTED_DTYPE",
        PMI_ERR_SHAPE_MISMATCH => c"PMI_ERR_SHAPE_MISMATCH",
        PMI_ERR_READ_ONLY => c"PMI_ERR_READ_ONLY",
        PMI_ERR_VERSION_MISMATCH => c"PMI_ERR_VERSION_MISMATCH",
        PMI_ERR_LIMIT_EXCEEDED => c"PMI_ERR_LIMIT_EXCEEDED",
        PMI_ERR_PANIC => c"PMI_ERR_PANIC",
        PMI_ERR_INTERNAL => c"PMI_ERR_INTERNAL",
        PMI_ERR_RUNTIME => c"PMI_ERR_RUNTIME",
        _ => c"PMI_UNKNOWN",
    };
    s.as_ptr()
}

#[no_mangle]
pub extern "C" fn pmi_abi_version() -> u32 {
    (ABI_VERSION.0 << 16) | ABI_VERSION.1
}

#[no_mangle]
pub extern "C" fn pmi_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

#[no_mangle]
pub unsafe extern "C" fn pmi_debug_panic(message: *const c_char) -> PmiStatus {
    guard(|| {
        let m = if message.is_null() { "pmi_debug_panic" } else { CStr::from_ptr(message).to_str().unwrap_or("?") };
        panic!("{m}")
    })
}
