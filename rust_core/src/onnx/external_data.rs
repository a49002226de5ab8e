//! Tensor data stored outside the model file (`data_location = EXTERNAL`).
//!
//! `external_data` gives a `location` relative to the model's directory, and optionally an
//! `offset` and `length` in bytes (`checksum` is ignored). Locations are confined to the model
//! directory: absolute paths, `..` components, and paths that resolve (following symlinks)
//! outside the directory are refused. Each file is memory-mapped once, and tensors borrow their
//! bytes from the mapping.

use super::bytes::{Bytes, ModelBytes};
use super::proto::{data_location, AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto};
use super::tensor_proto::{describe, expected_raw_len};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The external data files of one model directory, each mapped once.
#[derive(Debug, Default)]
pub(crate) struct ExternalFiles {
    base_dir: Option<PathBuf>,
    canonical_base: Option<PathBuf>,
    mapped: HashMap<PathBuf, Arc<ModelBytes>>,
}

impl ExternalFiles {
    /// Files relative to `base_dir` (`None`: external data is an error).
    pub(crate) fn new(base_dir: Option<&Path>) -> ExternalFiles {
        ExternalFiles { base_dir: base_dir.map(Path::to_path_buf), ..Default::default() }
    }

    /// The bytes of external tensor `tp` (a zero-copy range of the mapped file).
    pub(crate) fn bytes(&mut self, tp: &TensorProto) -> Result<Bytes> {
        let what = describe(tp);
        let location = tp
            .external_value("location")
            .ok_or_else(|| invalid_model!("{what} has data_location EXTERNAL but no 'location' in external_data"))?;
        let offset = parse_size(tp, "offset")?.unwrap_or(0);
        let length = parse_size(tp, "length")?;
        let Some(base) = self.base_dir.as_deref() else {
            return Err(invalid_model!(
                "{what} has its data in external file '{location}', but the model was not loaded from a file, \
                 so there is no directory to find it in"
            ));
        };
        check_location(location)
            .map_err(|why| invalid_model!("{what}: external data location '{location}' refused: {why}"))?;
        let canonical_base = match &self.canonical_base {
            Some(c) => c.clone(),
            None => {
                let c = base.canonicalize().map_err(|e| {
                    Error::Io(format!("{what}: cannot resolve the model directory '{}': {e}", base.display()))
                })?;
                self.canonical_base = Some(c.clone());
                c
            }
        };
        let joined = canonical_base.join(location);
        let path = joined
            .canonicalize()
            .map_err(|e| Error::Io(format!("{what}: cannot open external data file '{}': {e}", joined.display())))?;
        if !path.starts_with(&canonical_base) {
            return Err(invalid_model!(
                "{what}: external data location '{location}' resolves to '{}', outside the model directory '{}'; refused",
                path.display(),
                canonical_base.display()
            ));
        }
        if !path.is_file() {
            return Err(Error::Io(format!("{what}: external data '{}' is not a regular file", path.display())));
        }
        let file = match self.mapped.get(&path) {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(ModelBytes::map_file(&path).map_err(|e| e.context(&what))?);
                self.mapped.insert(path.clone(), f.clone());
                f
            }
        };
        let size = file.as_slice().len() as u64;
        let end = match length {
            Some(len) => offset.checked_add(len),
            None => Some(size.max(offset)),
        };
        let range = match end {
            Some(end) if offset <= size && end <= size => (offset as usize)..(end as usize),
            _ => {
                return Err(invalid_model!(
                    "{what}: external data range (offset {offset}, length {}) exceeds the {size} bytes of '{}'",
                    length.map_or("to end of file".to_owned(), |l| l.to_string()),
                    path.display()
                ))
            }
        };
        Bytes::from_range(&file, range).ok_or_else(|| internal_err!("external data range outside its file"))
    }
}

/// Parse the decimal `offset` or `length` entry of `external_data`.
fn parse_size(tp: &TensorProto, key: &str) -> Result<Option<u64>> {
    match tp.external_value(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            invalid_model!("{}: external_data '{key}' is '{v}', not a non-negative integer", describe(tp))
        }),
    }
}

/// Why `location` may not be used, if it may not: it must be a relative path without `..`.
fn check_location(location: &str) -> std::result::Result<(), &'static str> {
    if location.is_empty() {
        return Err("the location is empty");
    }
    let bytes = location.as_bytes();
    let drive_letter = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if location.starts_with(['/', '\\']) || drive_letter || Path::new(location).is_absolute() {
        return Err("absolute paths are not allowed");
    }
    if location.split(['/', '\\']).any(|c| c == "..") {
        return Err("'..' components are not allowed");
    }
    if location.contains('\0') {
        return Err("the location contains a NUL byte");
    }
    Ok(())
}

/// Replace every external tensor of `model` (initializers, attributes, subgraphs, functions,
/// training graphs) with inline `raw_data`, borrowed from the memory-mapped data files, so the
/// model can be saved self-contained. Data locations are resolved against `model.base_dir`.
pub fn inline_external_data(model: &mut ModelProto) -> Result<()> {
    let mut files = ExternalFiles::new(model.base_dir.as_deref());
    for_each_tensor_mut(model, &mut |tp: &mut TensorProto| {
        if !tp.is_external() {
            return Ok(());
        }
        let bytes = files.bytes(tp)?;
        let expected = expected_raw_len(tp)?;
        if bytes.len() != expected {
            return Err(invalid_model!(
                "{}: external data has {} bytes, but its type and shape need {expected}",
                describe(tp),
                bytes.len()
            ));
        }
        tp.raw_data = Some(bytes);
        tp.external_data.clear();
        tp.data_location = data_location::DEFAULT;
        Ok(())
    })
}

/// Whether any tensor of `model` has external data.
pub fn has_external_data(model: &ModelProto) -> bool {
    fn graph(g: &GraphProto) -> bool {
        g.initializer.iter().any(TensorProto::is_external)
            || g.sparse_initializer.iter().any(sparse)
            || g.node.iter().any(|n| n.attribute.iter().any(attribute))
    }
    fn attribute(a: &AttributeProto) -> bool {
        a.t.iter().map(|t| t.as_ref()).chain(&a.tensors).any(TensorProto::is_external)
            || a.sparse_tensor.iter().map(|s| s.as_ref()).chain(&a.sparse_tensors).any(sparse)
            || a.g.iter().map(|g| g.as_ref()).chain(&a.graphs).any(graph)
    }
    fn sparse(s: &SparseTensorProto) -> bool {
        s.values.iter().chain(&s.indices).any(TensorProto::is_external)
    }
    model.graph.iter().any(graph)
        || model.functions.iter().any(|f| {
            f.node.iter().any(|n| n.attribute.iter().any(attribute)) || f.attribute_proto.iter().any(attribute)
        })
        || model.training_info.iter().any(|t| t.initialization.iter().chain(&t.algorithm).any(graph))
}

type Visit<'a> = dyn FnMut(&mut TensorProto) -> Result<()> + 'a;

/// Call `f` on every tensor of `model`: initializers, sparse initializers, attribute tensors,
/// in the main graph, subgraphs, functions, and training graphs.
pub(crate) fn for_each_tensor_mut(model: &mut ModelProto, f: &mut Visit) -> Result<()> {
    if let Some(g) = &mut model.graph {
        graph_tensors(g, f)?;
    }
    for func in &mut model.functions {
        for n in &mut func.node {
            node_tensors(n, f)?;
        }
        for a in &mut func.attribute_proto {
            attribute_tensors(a, f)?;
        }
    }
    for t in &mut model.training_info {
        for g in t.initialization.iter_mut().chain(t.algorithm.iter_mut()) {
            graph_tensors(g, f)?;
        }
    }
    Ok(())
}

fn graph_tensors(g: &mut GraphProto, f: &mut Visit) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        sparse_tensors(s, f)?;
    }
    for n in &mut g.node {
        node_tensors(n, f)?;
    }
    Ok(())
}

fn node_tensors(n: &mut NodeProto, f: &mut Visit) -> Result<()> {
    for a in &mut n.attribute {
        attribute_tensors(a, f)?;
    }
    Ok(())
}

fn attribute_tensors(a: &mut AttributeProto, f: &mut Visit) -> Result<()> {
    for t in a.t.iter_mut().map(|b| b.as_mut()).chain(a.tensors.iter_mut()) {
        f(t)?;
    }
    for s in a.sparse_tensor.iter_mut().map(|b| b.as_mut()).chain(a.sparse_tensors.iter_mut()) {
        sparse_tensors(s, f)?;
    }
    for g in a.g.iter_mut().map(|b| b.as_mut()).chain(a.graphs.iter_mut()) {
        graph_tensors(g, f)?;
    }
    Ok(())
}

fn sparse_tensors(s: &mut SparseTensorProto, f: &mut Visit) -> Result<()> {
    for t in s.values.iter_mut().chain(s.indices.iter_mut()) {
        f(t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_confined() {
        assert!(check_location("weights.bin").is_ok());
        assert!(check_location("data/w.bin").is_ok());
        assert!(check_location("a..b/w.bin").is_ok());
        for bad in ["", "/etc/passwd", "\\\\server\\share", "C:\\w.bin", "c:w.bin", "../w.bin", "a/../../w", "a\\..\\w"]
        {
            assert!(check_location(bad).is_err(), "{bad}");
        }
    }
}
