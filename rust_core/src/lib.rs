//! pyml_interop: an ONNX inference and tensor-exchange core with a stable C ABI.
//!
//! Layers, bottom-up: [`tensor`] (values), [`onnx`] (protobuf reading/writing), [`graph`]
//! (validated model IR), [`ops`] and [`kernels`] (operators), [`optimizer`], [`executor`]
//! (sessions). [`ffi`] is the C ABI, a thin translator over the Rust API.

#[macro_use]
pub mod error;
pub mod tensor;
pub mod onnx;
pub mod api;
pub mod ffi;
pub mod graph;
pub mod ops;
pub mod kernels;
pub mod optimizer;
pub mod executor;

pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
