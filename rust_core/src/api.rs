//! The crate's facade: loading, inspecting and saving models, creating sessions.
//! The C ABI and the Python package are written over these functions.

use crate::error::Result;
use crate::graph::from_proto::model_from_proto;
use crate::graph::Model;
use std::path::Path;
use std::sync::Arc;

pub use crate::executor::{Session, SessionOptions};
pub use crate::ops::Value;

/// Load and validate an ONNX model file (memory-mapped; external data resolved next to it).
pub fn load_model_file(path: &Path) -> Result<Arc<Model>> {
    let proto = crate::onnx::load_model_file(path)?;
    Ok(Arc::new(model_from_proto(proto).map_err(|e| e.context(format!("'{}'", path.display())))?))
}

/// Load and validate a model from serialized bytes (models with external data need a file).
pub fn load_model_bytes(bytes: Vec<u8>) -> Result<Arc<Model>> {
    let proto = crate::onnx::load_model_bytes(bytes)?;
    Ok(Arc::new(model_from_proto(proto)?))
}

/// Serialize a model (external data inlined, so the bytes are self-contained).
pub fn model_to_bytes(model: &Model) -> Result<Vec<u8>> {
    crate::onnx::model_to_bytes(&self_contained(model)?)
}

/// The model's protobuf with external data inlined (tensor bytes are shared, not copied).
fn self_contained(model: &Model) -> Result<crate::onnx::ModelProto> {
    let mut p = (*model.proto).clone();
    crate::onnx::inline_external_data(&mut p)?;
    Ok(p)
}

/// Write a model to a file.
pub fn save_model_file(model: &Model, path: &Path) -> Result<()> {
    crate::onnx::save_model_file(&self_contained(model)?, path)
}
