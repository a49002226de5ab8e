//! The validated in-memory model (IR) built from ONNX protobuf messages.

pub mod from_proto;
pub mod ir;

pub use ir::{AttrValue, Dim, Function, Graph, Model, Node, TypeInfo, ValueInfo};
