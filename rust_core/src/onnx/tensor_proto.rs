//! Conversion between `TensorProto` and [`Tensor`], for every element type and storage form.
//!
//! Reading accepts `raw_data` (little-endian, sub-byte types packed), the typed fields
//! (`float_data`, `int32_data`, `int64_data`, `uint64_data`, `double_data`, `string_data`, with
//! the packing rules of `onnx.proto`), and external data. Aligned `raw_data` and external data are
//! borrowed, not copied. Writing always uses `raw_data` (`string_data` for strings).
//!
//! Memory: bytes that must be copied (misaligned for their element type) are copied once into an
//! aligned buffer. From a memory-mapped file they are read with `pread` on the file
//! ([`MappedFile::reopen`]), which maps nothing into the process; failing that, they are copied
//! from the mapping in chunks whose pages are dropped from the process once copied
//! ([`ModelBytes::release_pages`]). Either way a copied tensor does not count twice in memory. A
//! loader created with [`TensorLoader::with_owner`] also borrows typed fields (`float_data`...)
//! from the decoded message instead of copying them.

use super::bytes::{Bytes, MappedFile, ModelBytes};
use super::external_data::ExternalFiles;
use super::proto::{data_location, SparseTensorProto, TensorProto};
use super::sub_byte;
use crate::error::{Error, Result};
use crate::tensor::{checked_numel, DType, Element, Tensor, MAX_RANK};
use std::any::Any;
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Bytes copied through a mapping are copied in pieces of this size, each released once copied,
/// so that a copy holds little of its source in memory beside it.
const COPY_CHUNK_BYTES: usize = 256 << 10;

/// Converts `TensorProto`s of one model to tensors, memory-mapping each external data file once.
pub struct TensorLoader {
    files: ExternalFiles,
    /// Mapped files tensor bytes were read from, for [`TensorLoader::release_pages`], each with
    /// the file opened again for reading copies (`None` if it could not be).
    sources: Vec<(Arc<ModelBytes>, Option<File>)>,
    /// Owner of the messages given to `load`, from which typed fields are borrowed.
    owner: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for TensorLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorLoader")
            .field("files", &self.files)
            .field("sources", &self.sources.len())
            .field("borrows_typed_fields", &self.owner.is_some())
            .finish()
    }
}

impl TensorLoader {
    /// A loader resolving external data against `base_dir` (the model's directory; `None` for a
    /// model loaded from bytes, for which external data is an error).
    pub fn new(base_dir: Option<&Path>) -> TensorLoader {
        TensorLoader { files: ExternalFiles::new(base_dir), sources: Vec::new(), owner: None }
    }

    /// A loader whose tensors borrow the typed fields (`float_data`, `double_data`, `int64_data`,
    /// `uint64_data`, `int32_data`) of the messages they are loaded from when the element type
    /// matches, keeping `owner` alive, instead of copying them.
    ///
    /// # Safety
    /// Every `TensorProto` given to [`load`](Self::load) or [`load_sparse`](Self::load_sparse)
    /// must be owned by `owner` (reachable from it, e.g. part of a `ModelProto` behind the `Arc`),
    /// and must never be modified or dropped while `owner` lives.
    pub unsafe fn with_owner(base_dir: Option<&Path>, owner: Arc<dyn Any + Send + Sync>) -> TensorLoader {
        TensorLoader { owner: Some(owner), ..TensorLoader::new(base_dir) }
    }

    /// Drop from the process the pages still resident of every mapped file this loader read
    /// tensor bytes from (see [`ModelBytes::release_pages`]; the bytes stay readable), and close
    /// the files it opened to copy from. Meant for when a model's tensors are all loaded: the
    /// pages decoding, a copy or a check touched, and those the kernel mapped around them, stop
    /// counting in the process's memory. Tensors borrowing from a file fault their pages back in
    /// when used.
    pub fn release_pages(&mut self) {
        for (source, _) in self.sources.drain(..) {
            source.release_all_pages();
        }
    }

    /// The mapped file `source`, opened again for reading (once per loader), if it can be.
    fn file_of(&mut self, source: &Arc<ModelBytes>) -> Option<&File> {
        let mapped: &MappedFile = source.mapped_file()?;
        let i = match self.sources.iter().position(|(s, _)| Arc::ptr_eq(s, source)) {
            Some(i) => i,
            None => {
                self.sources.push((source.clone(), mapped.reopen()));
                self.sources.len() - 1
            }
        };
        self.sources[i].1.as_ref()
    }

    /// The tensor held by `tp`.
    pub fn load(&mut self, tp: &TensorProto) -> Result<Tensor> {
        let dtype = dtype_of(tp)?;
        if tp.segment.is_some() {
            return Err(invalid_model!("{}: segmented tensors are not supported", describe(tp)));
        }
        let shape = shape_of(tp, &tp.dims)?;
        let numel = checked_numel(&shape).map_err(|e| e.context(describe(tp)))?;
        match tp.data_location {
            data_location::DEFAULT => {}
            data_location::EXTERNAL => {
                if dtype == DType::String {
                    return Err(invalid_model!("{}: string tensors cannot have external data", describe(tp)));
                }
                let bytes = self.files.bytes(tp)?;
                return self.read_raw(tp, dtype, &shape, numel, &bytes).map_err(|e| e.context("external data"));
            }
            other => return Err(invalid_model!("{}: unknown data_location {other}", describe(tp))),
        }
        let present = data_fields(tp);
        match present.as_slice() {
            [] if numel == 0 => Tensor::zeros(dtype, &shape),
            [] => Err(invalid_model!("{}: no data for a {dtype} tensor of shape {shape:?}", describe(tp))),
            [field] => match (field, &tp.raw_data) {
                (DataField::Raw, Some(raw)) => self.read_raw(tp, dtype, &shape, numel, raw),
                _ => from_field(tp, *field, dtype, &shape, numel, self.owner.as_ref()),
            },
            [a, b, ..] => {
                Err(invalid_model!("{}: data is given in both {a} and {b}; only one is allowed", describe(tp)))
            }
        }
    }

    /// The dense tensor of a sparse tensor (zeros, or empty strings, except at the indices).
    pub fn load_sparse(&mut self, sp: &SparseTensorProto) -> Result<Tensor> {
        let (Some(values_proto), Some(indices_proto)) = (&sp.values, &sp.indices) else {
            return Err(invalid_model!("SparseTensorProto: both values and indices are required"));
        };
        let what = format!("SparseTensorProto '{}'", values_proto.name.escape_debug());
        let values = self.load(values_proto)?;
        let indices = self.load(indices_proto)?;
        let shape = shape_of(values_proto, &sp.dims).map_err(|e| e.context(&what))?;
        let nnz = values.len();
        if values.rank() != 1 {
            return Err(invalid_model!("{what}: values must be 1-D, not of shape {:?}", values.shape()));
        }
        if !indices.dtype().is_int() {
            return Err(invalid_model!("{what}: indices must be integers, not {}", indices.dtype()));
        }
        let idx = indices.to_i64_vec()?;
        let rank = shape.len();
        let numel = checked_numel(&shape).map_err(|e| e.context(&what))?;
        let linear: Vec<usize> = match indices.shape() {
            [n] if *n == nnz => idx.iter().map(|&i| checked_index(i, numel, &what)).collect::<Result<_>>()?,
            [n, 0] if *n == nnz && rank == 0 => vec![0; nnz],
            [n, r] if *n == nnz && *r == rank && rank > 0 => idx
                .chunks_exact(rank)
                .map(|c| {
                    // Row-major position; cannot overflow as every index is below its dimension.
                    c.iter().zip(&shape).try_fold(0usize, |acc, (&i, &d)| Ok(acc * d + checked_index(i, d, &what)?))
                })
                .collect::<Result<_>>()?,
            s => {
                return Err(invalid_model!(
                    "{what}: indices of shape {s:?} do not match {nnz} values of a rank-{rank} tensor"
                ))
            }
        };
        let mut dense = Tensor::zeros(values.dtype(), &shape)?;
        if values.dtype() == DType::String {
            let src = values.strings()?;
            let dst = dense.make_mut_strings()?;
            for (k, &i) in linear.iter().enumerate() {
                if let (Some(d), Some(s)) = (dst.get_mut(i), src.get(k)) {
                    d.clone_from(s);
                }
            }
        } else {
            let size = values.dtype().size();
            let src = values.bytes()?;
            let dst = dense.make_mut_bytes()?;
            for (k, &i) in linear.iter().enumerate() {
                if let (Some(d), Some(s)) = (dst.get_mut(i * size..(i + 1) * size), src.get(k * size..(k + 1) * size)) {
                    d.copy_from_slice(s);
                }
            }
        }
        Ok(dense)
    }
}

/// The tensor held by `tp`; external data is resolved against `base_dir`.
pub fn tensor_from_proto(tp: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    TensorLoader::new(base_dir).load(tp)
}

/// The dense tensor of a sparse tensor; external data is resolved against `base_dir`.
pub fn sparse_tensor_to_dense(sp: &SparseTensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    TensorLoader::new(base_dir).load_sparse(sp)
}

/// A `TensorProto` named `name` holding `t` in `raw_data` (`string_data` for strings).
pub fn tensor_to_proto(t: &Tensor, name: &str) -> Result<TensorProto> {
    let dims = t
        .shape()
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| Error::LimitExceeded(format!("dimension {d} does not fit in int64"))))
        .collect::<Result<Vec<i64>>>()?;
    let mut tp = TensorProto { dims, data_type: t.dtype().code(), name: name.to_owned(), ..Default::default() };
    let dtype = t.dtype();
    if dtype == DType::String {
        tp.string_data = t.strings()?.to_vec();
        return Ok(tp);
    }
    let bytes = t.bytes()?;
    let raw = match dtype.packed_bits() {
        bits @ (2 | 4) => sub_byte::pack(bytes, bits),
        _ => to_little_endian(dtype, bytes.to_vec()),
    };
    tp.raw_data = Some(Bytes::from_vec(raw));
    Ok(tp)
}

/// `TensorProto 'name'` for messages.
pub(crate) fn describe(tp: &TensorProto) -> String {
    if tp.name.is_empty() {
        "unnamed TensorProto".to_owned()
    } else {
        format!("TensorProto '{}'", tp.name.escape_debug())
    }
}

/// Bytes `tp`'s data takes in `raw_data` form (packed for sub-byte types).
pub(crate) fn expected_raw_len(tp: &TensorProto) -> Result<usize> {
    let dtype = dtype_of(tp)?;
    let shape = shape_of(tp, &tp.dims)?;
    let numel = checked_numel(&shape).map_err(|e| e.context(describe(tp)))?;
    raw_len(tp, dtype, &shape, numel)
}

fn raw_len(tp: &TensorProto, dtype: DType, shape: &[usize], numel: usize) -> Result<usize> {
    if dtype == DType::String {
        return Err(invalid_model!("{}: string tensors must use string_data, not raw bytes", describe(tp)));
    }
    sub_byte::packed_len(numel, dtype.packed_bits()).ok_or_else(|| {
        Error::LimitExceeded(format!("{}: a {dtype} tensor of shape {shape:?} is too large", describe(tp)))
    })
}

fn dtype_of(tp: &TensorProto) -> Result<DType> {
    if tp.data_type == 0 {
        return Err(invalid_model!("{}: data_type is UNDEFINED (0)", describe(tp)));
    }
    DType::from_code(tp.data_type).map_err(|e| e.context(describe(tp)))
}

/// Validate `dims` of `tp`: non-negative, rank within limits, element count addressable.
fn shape_of(tp: &TensorProto, dims: &[i64]) -> Result<Vec<usize>> {
    if dims.len() > MAX_RANK {
        return Err(Error::LimitExceeded(format!(
            "{}: rank {} exceeds the limit of {MAX_RANK}",
            describe(tp),
            dims.len()
        )));
    }
    dims.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| invalid_model!("{}: negative dimension {d} in dims {dims:?}", describe(tp)))
        })
        .collect()
}

fn checked_index(i: i64, bound: usize, what: &str) -> Result<usize> {
    usize::try_from(i)
        .ok()
        .filter(|&u| u < bound)
        .ok_or_else(|| invalid_model!("{what}: index {i} is out of range for a dimension of {bound}"))
}

/// The fields of a `TensorProto` that can hold its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataField {
    Raw,
    Float,
    Int32,
    String,
    Int64,
    Double,
    Uint64,
}

impl DataField {
    fn name(self) -> &'static str {
        match self {
            DataField::Raw => "raw_data",
            DataField::Float => "float_data",
            DataField::Int32 => "int32_data",
            DataField::String => "string_data",
            DataField::Int64 => "int64_data",
            DataField::Double => "double_data",
            DataField::Uint64 => "uint64_data",
        }
    }
}

impl std::fmt::Display for DataField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The data fields of `tp` that hold something.
fn data_fields(tp: &TensorProto) -> Vec<DataField> {
    [
        (DataField::Raw, tp.raw_data.is_some()),
        (DataField::Float, !tp.float_data.is_empty()),
        (DataField::Int32, !tp.int32_data.is_empty()),
        (DataField::String, !tp.string_data.is_empty()),
        (DataField::Int64, !tp.int64_data.is_empty()),
        (DataField::Double, !tp.double_data.is_empty()),
        (DataField::Uint64, !tp.uint64_data.is_empty()),
    ]
    .into_iter()
    .filter_map(|(field, present)| present.then_some(field))
    .collect()
}

/// The tensor of typed field `field` (not `raw_data`, which [`TensorLoader::read_raw`] reads).
/// With an `owner` of `tp` (see [`TensorLoader::with_owner`]), fields holding exactly the
/// tensor's bytes are borrowed rather than copied.
fn from_field(
    tp: &TensorProto,
    field: DataField,
    dtype: DType,
    shape: &[usize],
    numel: usize,
    owner: Option<&Arc<dyn Any + Send + Sync>>,
) -> Result<Tensor> {
    use DType::*;
    let wrong = || invalid_model!("{}: {field} cannot hold {dtype} elements", describe(tp));
    let count = |n: usize, per_element: usize| -> Result<()> {
        let want = numel.checked_mul(per_element);
        if want != Some(n) {
            return Err(invalid_model!(
                "{}: {field} has {n} values, but a {dtype} tensor of shape {shape:?} needs {}",
                describe(tp),
                want.map_or("more than can be addressed".to_owned(), |w| w.to_string())
            ));
        }
        Ok(())
    };
    match field {
        DataField::Raw => Err(wrong()),
        DataField::Float => match dtype {
            Float32 | Complex64 => {
                count(tp.float_data.len(), if dtype == Complex64 { 2 } else { 1 })?;
                share_or_copy(dtype, shape, &tp.float_data, owner)
            }
            _ => Err(wrong()),
        },
        DataField::Double => match dtype {
            Float64 | Complex128 => {
                count(tp.double_data.len(), if dtype == Complex128 { 2 } else { 1 })?;
                share_or_copy(dtype, shape, &tp.double_data, owner)
            }
            _ => Err(wrong()),
        },
        DataField::Int64 => match dtype {
            Int64 => {
                count(tp.int64_data.len(), 1)?;
                share_or_copy(dtype, shape, &tp.int64_data, owner)
            }
            _ => Err(wrong()),
        },
        DataField::Uint64 => match dtype {
            Uint64 => {
                count(tp.uint64_data.len(), 1)?;
                share_or_copy(dtype, shape, &tp.uint64_data, owner)
            }
            Uint32 => {
                count(tp.uint64_data.len(), 1)?;
                let v: Vec<u32> = tp.uint64_data.iter().map(|&x| x as u32).collect();
                Tensor::from_slice(shape, &v)
            }
            _ => Err(wrong()),
        },
        DataField::String => match dtype {
            String => {
                count(tp.string_data.len(), 1)?;
                Tensor::from_strings(shape, tp.string_data.clone())
            }
            _ => Err(wrong()),
        },
        DataField::Int32 => from_int32_data(tp, dtype, shape, numel, owner).and_then(|t| t.ok_or_else(wrong)),
    }
}

/// `int32_data`: one element per entry (values truncated to the element width, bit patterns for
/// 16- and 8-bit floats), or one packed byte per entry for sub-byte types. `None` if the field
/// cannot hold `dtype`.
fn from_int32_data(
    tp: &TensorProto,
    dtype: DType,
    shape: &[usize],
    numel: usize,
    owner: Option<&Arc<dyn Any + Send + Sync>>,
) -> Result<Option<Tensor>> {
    use DType::*;
    let data = &tp.int32_data;
    let bits = dtype.packed_bits();
    let expected = match dtype {
        Int32 | Int16 | Int8 | Uint16 | Uint8 | Bool | Float16 | BFloat16 | Float8E4M3FN | Float8E4M3FNUZ
        | Float8E5M2 | Float8E5M2FNUZ | Float8E8M0 => numel,
        Uint4 | Int4 | Float4E2M1 | Uint2 | Int2 => raw_len(tp, dtype, shape, numel)?,
        _ => return Ok(None),
    };
    if data.len() != expected {
        return Err(invalid_model!(
            "{}: int32_data has {} values, but a {dtype} tensor of shape {shape:?} needs {expected}",
            describe(tp),
            data.len()
        ));
    }
    let tensor = match dtype {
        Int32 => share_or_copy(dtype, shape, data, owner)?,
        Int16 => Tensor::from_vec(shape, data.iter().map(|&v| v as i16).collect::<Vec<_>>())?,
        Uint16 => Tensor::from_vec(shape, data.iter().map(|&v| v as u16).collect::<Vec<_>>())?,
        Float16 | BFloat16 => Tensor::build::<u16>(dtype, shape, |out| {
            out.iter_mut().zip(data).for_each(|(o, &v)| *o = v as u16);
            Ok(())
        })?,
        Bool => fill_bytes(dtype, shape, data.iter().map(|&v| u8::from(v != 0)))?,
        Uint4 | Int4 | Float4E2M1 | Uint2 | Int2 => {
            let packed: Vec<u8> = data.iter().map(|&v| v as u8).collect();
            unpack(dtype, shape, bits, &packed)?
        }
        // Int8, Uint8 and the 8-bit floats: the low byte.
        _ => fill_bytes(dtype, shape, data.iter().map(|&v| v as u8))?,
    };
    Ok(Some(tensor))
}

/// A one-byte-per-element tensor filled from `values`.
fn fill_bytes(dtype: DType, shape: &[usize], values: impl Iterator<Item = u8>) -> Result<Tensor> {
    let mut t = Tensor::zeros(dtype, shape)?;
    t.make_mut_bytes()?.iter_mut().zip(values).for_each(|(o, v)| *o = v);
    Ok(t)
}

fn unpack(dtype: DType, shape: &[usize], bits: usize, packed: &[u8]) -> Result<Tensor> {
    let mut t = Tensor::zeros(dtype, shape)?;
    sub_byte::unpack(packed, bits, dtype.is_signed_int(), t.make_mut_bytes()?);
    Ok(t)
}

/// A tensor of `dtype` whose elements are `values` (as many as the shape needs, checked by the
/// caller): borrowed from `owner` when given (a `Vec<T>` is aligned for `T`), copied otherwise.
fn share_or_copy<T: Element>(
    dtype: DType,
    shape: &[usize],
    values: &[T],
    owner: Option<&Arc<dyn Any + Send + Sync>>,
) -> Result<Tensor> {
    // SAFETY: `Element` types are plain old data, so their memory can be viewed as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
    match owner {
        // SAFETY: `values` is a field of a message owned by `owner` that is never modified while
        // it lives (the contract of `TensorLoader::with_owner`).
        Some(owner) => unsafe { Tensor::from_shared_bytes(dtype, shape, owner.clone(), bytes) },
        None => Tensor::from_bytes(dtype, shape, bytes),
    }
}

impl TensorLoader {
    /// A tensor from `raw_data`-format bytes: borrowed when aligned for `dtype`, else copied
    /// once, releasing the copied pages of a mapped file (see the module documentation).
    fn read_raw(
        &mut self,
        tp: &TensorProto,
        dtype: DType,
        shape: &[usize],
        numel: usize,
        raw: &Bytes,
    ) -> Result<Tensor> {
        let expected = raw_len(tp, dtype, shape, numel)?;
        if raw.len() != expected {
            return Err(invalid_model!(
                "{}: raw_data has {} bytes, but a {dtype} tensor of shape {shape:?} needs {expected}",
                describe(tp),
                raw.len()
            ));
        }
        let source = raw.owner();
        // Remembered for `release_pages`.
        let _ = self.file_of(source);
        let borrowable = cfg!(target_endian = "little") && (raw.as_ptr() as usize).is_multiple_of(dtype.align());
        let tensor = match dtype.packed_bits() {
            bits @ (2 | 4) => unpack(dtype, shape, bits, raw)?,
            _ if dtype == DType::Bool && raw.iter().any(|&b| b > 1) => {
                fill_bytes(dtype, shape, raw.iter().map(|&b| u8::from(b != 0)))?
            }
            // SAFETY: `raw` lies inside its owner (a `Bytes` invariant), whose bytes never change:
            // an owned vector behind an `Arc` is never mutated, and mapped files must not be
            // modified while mapped (documented on `ModelBytes`).
            _ if borrowable => return unsafe { Tensor::from_shared_bytes(dtype, shape, source.clone(), raw) },
            _ if cfg!(target_endian = "little") => self.copy(dtype, shape, raw)?,
            _ => Tensor::from_bytes(dtype, shape, &to_little_endian(dtype, raw.to_vec()))?,
        };
        // Converted, not borrowed: the source pages are no longer needed by this tensor.
        source.release_pages_around(raw.range());
        Ok(tensor)
    }

    /// An aligned copy of `raw` as a `dtype` tensor: read from the file when `raw` is part of
    /// a mapped file that can be opened again, else copied from memory chunk by chunk, the pages
    /// of a mapped source released as they are copied.
    fn copy(&mut self, dtype: DType, shape: &[usize], raw: &Bytes) -> Result<Tensor> {
        let mut t = Tensor::zeros(dtype, shape)?;
        let dst = t.make_mut_bytes()?;
        if dst.len() != raw.len() {
            return Err(internal_err!("{} bytes to copy into a {dtype} tensor of {} bytes", raw.len(), dst.len()));
        }
        let start = raw.range().start;
        #[cfg(unix)]
        if let Some(file) = self.file_of(raw.owner()) {
            use std::os::unix::fs::FileExt;
            if file.read_exact_at(dst, start as u64).is_ok() {
                return Ok(t);
            }
            // A read error: copy from the mapping, which is the reference.
        }
        for (i, (d, s)) in dst.chunks_mut(COPY_CHUNK_BYTES).zip(raw.chunks(COPY_CHUNK_BYTES)).enumerate() {
            d.copy_from_slice(s);
            let at = start + i * COPY_CHUNK_BYTES;
            raw.owner().release_pages_around(at..at + s.len());
        }
        Ok(t)
    }
}

/// Convert native-order element bytes to little-endian (and back: the swap is an involution).
fn to_little_endian(dtype: DType, mut bytes: Vec<u8>) -> Vec<u8> {
    if cfg!(target_endian = "big") {
        let unit = match dtype {
            DType::Complex64 => 4,
            DType::Complex128 => 8,
            d => d.size(),
        };
        if unit > 1 {
            bytes.chunks_exact_mut(unit).for_each(<[u8]>::reverse);
        }
    }
    bytes
}
