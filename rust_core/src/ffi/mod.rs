//! The C ABI: a thin translator between C and the Rust API.
//!
//! Every `extern "C"` function has the same shape: check pointers, call the Rust API inside
//! [`guard`], which turns errors into a `pmi_status` plus a thread-local message and turns
//! panics into `PMI_ERR_PANIC`. No logic lives here that the Rust API does not also offer.

#![allow(clippy::missing_safety_doc)]

mod model;
mod session;
mod status;
mod tensor;

pub use status::*;
