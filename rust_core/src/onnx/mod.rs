//! Reading and writing ONNX protobuf files, written by hand (no generated code).
//!
//! - [`proto`]: plain structs for the messages of `onnx.proto`.
//! - [`decode_model`] / [`encode_model`]: bytes ↔ [`ModelProto`]; [`decode_tensor`] /
//!   [`encode_tensor`]: bytes ↔ a standalone [`TensorProto`] (the test suite's `.pb` files).
//! - [`tensor_from_proto`] / [`tensor_to_proto`]: [`TensorProto`] ↔ [`Tensor`], for every element
//!   type and storage form; [`TensorLoader`] does the same for many tensors of one model.
//! - [`load_model_file`], [`load_model_bytes`], [`model_to_bytes`], [`save_model_file`],
//!   [`load_tensor_pb`], [`save_tensor_pb`]: the usual entry points.
//!
//! Hostile input gives an error naming the message and field at fault, never a panic: the wire
//! reader checks every length against the bytes that remain before using it, and nesting is
//! limited to [`MAX_DEPTH`] messages.
//!
//! Decoding never copies `raw_data`: tensors keep a [`Bytes`] range of the model's
//! [`ModelBytes`] (a memory map for files), and [`tensor_from_proto`] borrows from it when the
//! bytes are aligned. External data is memory-mapped from files confined to the model's
//! directory. Misaligned bytes are copied once, and the mapped pages read while decoding or
//! copying are dropped from the process afterwards, so loading a file costs about the size of
//! what had to be copied (see `tensor_proto` and [`ModelBytes::release_pages`]).
//!
//! Saving ([`model_to_bytes`], [`save_model_file`]) makes self-contained files: tensors with
//! external data are written inline, their data read from the mapped data files
//! ([`inline_external_data`] does this to a model in place). [`encode_model`] writes a model as it
//! is, external references included.

mod bytes;
mod decode;
mod encode;
mod external_data;
pub mod proto;
mod sub_byte;
mod tensor_proto;
mod wire;

#[cfg(test)]
mod tests;

pub use bytes::{Bytes, MappedFile, ModelBytes, MAPPED_AROUND_BYTES};
pub use decode::{decode_model, decode_tensor};
pub use encode::{encode_model, encode_tensor};
pub use external_data::{has_external_data, inline_external_data};
pub use proto::*;
pub use tensor_proto::{sparse_tensor_to_dense, tensor_from_proto, tensor_to_proto, TensorLoader};
pub use wire::MAX_DEPTH;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest serialized message protobuf implementations accept (2 GiB - 1).
pub const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Load a model file (memory-mapped; tensors borrow from the mapping). `base_dir` of the result
/// is the file's directory (made absolute), against which external data is resolved.
///
/// Decoding reads the message structure scattered through the file, not the tensor bytes; the
/// pages it touched are released afterwards ([`ModelBytes::release_pages`]), so that the file
/// does not stay resident in the process beside what is built from it.
pub fn load_model_file(path: &Path) -> Result<ModelProto> {
    let bytes = Arc::new(ModelBytes::map_file(path)?);
    let decoded = decode_model(bytes.clone());
    bytes.release_all_pages();
    let mut model = decoded.map_err(|e| e.context(format!("'{}'", path.display())))?;
    model.base_dir = Some(directory_of(path));
    Ok(model)
}

/// The directory of file `path`, canonical when it can be resolved.
fn directory_of(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Decode a model from bytes (kept, not copied: tensors borrow from them). The result has no
/// `base_dir`, so external data is an error unless the caller sets one.
pub fn load_model_bytes(bytes: Vec<u8>) -> Result<ModelProto> {
    decode_model(Arc::new(ModelBytes::Owned(bytes)))
}

/// Encode a model to self-contained bytes: tensors with external data are written inline (their
/// data resolved against `model.base_dir`). Fails with `LimitExceeded` beyond protobuf's 2 GiB
/// message limit; [`encode_model`] keeps external references and has no limit.
pub fn model_to_bytes(model: &ModelProto) -> Result<Vec<u8>> {
    let inlined;
    let model = if has_external_data(model) {
        let mut copy = model.clone();
        inline_external_data(&mut copy)?;
        inlined = copy;
        &inlined
    } else {
        model
    };
    let len = wire::encoded_len(model);
    if len > MAX_MESSAGE_BYTES {
        return Err(Error::LimitExceeded(format!(
            "the model is {len} bytes, beyond protobuf's limit of {MAX_MESSAGE_BYTES}; keep its data external"
        )));
    }
    Ok(encode_model(model))
}

/// Write a model to `path`, self-contained (see [`model_to_bytes`]). The file is replaced
/// atomically, so a model memory-mapped from `path` itself stays valid.
pub fn save_model_file(model: &ModelProto, path: &Path) -> Result<()> {
    write_file(path, &model_to_bytes(model)?)
}

/// Decode a serialized `TensorProto` into a tensor (external data is not allowed).
pub fn tensor_from_pb_bytes(bytes: &[u8]) -> Result<Tensor> {
    let tp = decode_tensor(Arc::new(ModelBytes::Owned(bytes.to_vec())))?;
    tensor_from_proto(&tp, None)
}

/// Serialize a tensor as a `TensorProto` named `name`.
pub fn tensor_to_pb_bytes(t: &Tensor, name: &str) -> Result<Vec<u8>> {
    Ok(encode_tensor(&tensor_to_proto(t, name)?))
}

/// Read a tensor from a serialized `TensorProto` file (e.g. the ONNX test suite's `input_0.pb`).
/// External data is resolved against the file's directory.
pub fn load_tensor_pb(path: &Path) -> Result<Tensor> {
    let data = std::fs::read(path).map_err(|e| Error::Io(format!("cannot read '{}': {e}", path.display())))?;
    let tp =
        decode_tensor(Arc::new(ModelBytes::Owned(data))).map_err(|e| e.context(format!("'{}'", path.display())))?;
    tensor_from_proto(&tp, Some(&directory_of(path)))
}

/// Write a tensor to `path` as a serialized `TensorProto` named `name`.
pub fn save_tensor_pb(t: &Tensor, name: &str, path: &Path) -> Result<()> {
    write_file(path, &tensor_to_pb_bytes(t, name)?)
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`: a model mapped
/// from `path` keeps its (old) bytes, and readers never see a partial file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io(format!("cannot write '{}': {e}", path.display()));
    let file_name =
        path.file_name().ok_or_else(|| Error::Io(format!("cannot write '{}': not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
