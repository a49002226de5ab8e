//! The one error type of the core.
//!
//! Every failure of the engine is one variant of [`Error`]; each variant maps to exactly one
//! `pmi_status` code in the C ABI (see `ffi::status`) and to one Python exception class. The
//! message of a variant always names the thing at fault (argument, tensor, node, field).

use std::fmt;

/// A failure of the core, with a message naming what is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument has a value the function cannot accept (bad enum, bad name, bad option).
    InvalidArgument(String),
    /// A pointer argument that must not be NULL was NULL (C ABI only).
    NullPointer(String),
    /// Reading or writing a file failed.
    Io(String),
    /// The model (or a serialized tensor) is malformed or violates the ONNX specification.
    InvalidModel(String),
    /// The model uses operators the engine does not implement (all of them listed).
    UnsupportedOperator(String),
    /// An element type is not supported by the function called.
    UnsupportedDtype(String),
    /// Shapes do not agree (wrong input shape, inconsistent symbolic dimension, bad broadcast).
    ShapeMismatch(String),
    /// A write was attempted on read-only data.
    ReadOnly(String),
    /// The caller and the library disagree on a version (ABI, DLPack, ONNX IR).
    VersionMismatch(String),
    /// A size limit was exceeded or an allocation failed.
    LimitExceeded(String),
    /// A panic was caught at the C boundary; the message is the panic's.
    Panic(String),
    /// A bug in the library: an invariant did not hold.
    Internal(String),
    /// Execution failed on the values given (index out of range, division by zero in integers...).
    Runtime(String),
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The message without the category.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidArgument(m)
            | Error::NullPointer(m)
            | Error::Io(m)
            | Error::InvalidModel(m)
            | Error::UnsupportedOperator(m)
            | Error::UnsupportedDtype(m)
            | Error::ShapeMismatch(m)
            | Error::ReadOnly(m)
            | Error::VersionMismatch(m)
            | Error::LimitExceeded(m)
            | Error::Panic(m)
            | Error::Internal(m)
            | Error::Runtime(m) => m,
        }
    }

    /// A short name of the category, as used in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid argument",
            Error::NullPointer(_) => "null pointer",
            Error::Io(_) => "I/O error",
            Error::InvalidModel(_) => "invalid model",
            Error::UnsupportedOperator(_) => "unsupported operator",
            Error::UnsupportedDtype(_) => "unsupported dtype",
            Error::ShapeMismatch(_) => "shape mismatch",
            Error::ReadOnly(_) => "read-only",
            Error::VersionMismatch(_) => "version mismatch",
            Error::LimitExceeded(_) => "limit exceeded",
            Error::Panic(_) => "panic",
            Error::Internal(_) => "internal error",
            Error::Runtime(_) => "runtime error",
        }
    }

    /// Prefix the message with context (e.g. the node being run), keeping the variant.
    pub fn context(self, ctx: impl fmt::Display) -> Error {
        let wrap = |m: String| format!("{ctx}: {m}");
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(wrap(m)),
            Error::NullPointer(m) => Error::NullPointer(wrap(m)),
            Error::Io(m) => Error::Io(wrap(m)),
            Error::InvalidModel(m) => Error::InvalidModel(wrap(m)),
            Error::UnsupportedOperator(m) => Error::UnsupportedOperator(wrap(m)),
            Error::UnsupportedDtype(m) => Error::UnsupportedDtype(wrap(m)),
            Error::ShapeMismatch(m) => Error::ShapeMismatch(wrap(m)),
            Error::ReadOnly(m) => Error::ReadOnly(wrap(m)),
            Error::VersionMismatch(m) => Error::VersionMismatch(wrap(m)),
            Error::LimitExceeded(m) => Error::LimitExceeded(wrap(m)),
            Error::Panic(m) => Error::Panic(wrap(m)),
            Error::Internal(m) => Error::Internal(wrap(m)),
            Error::Runtime(m) => Error::Runtime(wrap(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// Extension to add context to a `Result` lazily.
pub trait ResultExt<T> {
    /// Prefix an error's message with the context produced by `f`.
    fn ctx<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn ctx<C: fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Build an `Error::InvalidArgument` with `format!` syntax.
#[macro_export]
macro_rules! invalid_arg { ($($t:tt)*) => { $crate::error::Error::InvalidArgument(format!($($t)*)) } }
/// Build an `Error::InvalidModel` with `format!` syntax.
#[macro_export]
macro_rules! invalid_model { ($($t:tt)*) => { $crate::error::Error::InvalidModel(format!($($t)*)) } }
/// Build an `Error::ShapeMismatch` with `format!` syntax.
#[macro_export]
macro_rules! shape_err { ($($t:tt)*) => { $crate::error::Error::ShapeMismatch(format!($($t)*)) } }
/// Build an `Error::UnsupportedDtype` with `format!` syntax.
#[macro_export]
macro_rules! dtype_err { ($($t:tt)*) => { $crate::error::Error::UnsupportedDtype(format!($($t)*)) } }
/// Build an `Error::Runtime` with `format!` syntax.
#[macro_export]
macro_rules! runtime_err { ($($t:tt)*) => { $crate::error::Error::Runtime(format!($($t)*)) } }
/// Build an `Error::Internal` with `format!` syntax.
#[macro_export]
macro_rules! internal_err { ($($t:tt)*) => { $crate::error::Error::Internal(format!($($t)*)) } }
