//! The tensor value: element type, shape, and shared storage.

use super::dtype::{storage_compatible, DType, Element};
use super::storage::{Storage, MAX_ALLOC_BYTES};
use crate::error::{Error, Result};
use std::any::Any;
use std::sync::Arc;

/// Largest rank accepted anywhere (guards absurd inputs).
pub const MAX_RANK: usize = 64;

/// The data of a tensor: a flat byte buffer, or (for dtype string) a list of byte strings.
#[derive(Clone, Debug)]
enum Data {
    Bytes(Arc<Storage>),
    Strings(Arc<Vec<Vec<u8>>>),
}

/// A dense, row-major tensor. Cloning is cheap: clones share the data.
///
/// Numeric data lives in a [`Storage`] (owned and 64-byte aligned, a caller's buffer with a
/// release callback, or bytes kept alive by a shared owner such as a memory-mapped model).
#[derive(Clone, Debug)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
}

/// Number of elements of `shape`, or `LimitExceeded` on overflow.
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_RANK {
        return Err(Error::LimitExceeded(format!("rank {} exceeds the limit of {MAX_RANK}", shape.len())));
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        Error::LimitExceeded(format!("shape {shape:?} has more elements than can be addressed"))
    })
}

/// Bytes needed for `shape` of `dtype`, or `LimitExceeded`.
pub fn checked_nbytes(dtype: DType, shape: &[usize]) -> Result<usize> {
    let n = checked_numel(shape)?;
    let b = n
        .checked_mul(dtype.size())
        .filter(|b| *b <= MAX_ALLOC_BYTES)
        .ok_or_else(|| Error::LimitExceeded(format!("a {dtype} tensor of shape {shape:?} is too large")))?;
    Ok(b)
}

impl Tensor {
    /// A zero-filled tensor (empty strings for dtype string).
    /// A numeric tensor whose contents are unspecified (initialized, e.g. a recycled buffer's
    /// old values): for outputs the caller overwrites entirely. Strings start empty.
    pub fn for_overwrite(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        if dtype == DType::String {
            return Tensor::zeros(dtype, shape);
        }
        let nbytes = checked_nbytes(dtype, shape)?;
        Ok(Tensor { dtype, shape: shape.to_vec(), data: Data::Bytes(Arc::new(Storage::for_overwrite(nbytes)?)) })
    }

    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        if dtype == DType::String {
            let n = checked_numel(shape)?;
            if n > MAX_ALLOC_BYTES / 24 {
                return Err(Error::LimitExceeded(format!("string tensor of shape {shape:?} is too large")));
            }
            return Ok(Tensor { dtype, shape: shape.to_vec(), data: Data::Strings(Arc::new(vec![Vec::new(); n])) });
        }
        let nbytes = checked_nbytes(dtype, shape)?;
        Ok(Tensor { dtype, shape: shape.to_vec(), data: Data::Bytes(Arc::new(Storage::zeroed(nbytes)?)) })
    }

    /// A tensor holding a copy of `bytes` (row-major, `dtype`'s in-memory layout).
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        check_not_string(dtype, "Tensor::from_bytes")?;
        let nbytes = checked_nbytes(dtype, shape)?;
        if bytes.len() != nbytes {
            return Err(Error::ShapeMismatch(format!(
                "{} bytes given for a {dtype} tensor of shape {shape:?}, which needs {nbytes}",
                bytes.len()
            )));
        }
        Ok(Tensor { dtype, shape: shape.to_vec(), data: Data::Bytes(Arc::new(Storage::copy_from(bytes)?)) })
    }

    /// A tensor of `T` holding a copy of `values`.
    pub fn from_slice<T: Element>(shape: &[usize], values: &[T]) -> Result<Tensor> {
        let n = checked_numel(shape)?;
        if n != values.len() {
            return Err(Error::ShapeMismatch(format!(
                "{} values given for shape {shape:?} ({n} elements)",
                values.len()
            )));
        }
        // SAFETY: T is plain old data (Element contract).
        let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) };
        Tensor::from_bytes(T::DTYPE, shape, bytes)
    }

    /// A tensor of `T` from a vector (copied into aligned storage).
    pub fn from_vec<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Tensor> {
        Tensor::from_slice(shape, &values)
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::from_slice(&[], &[value]).expect("scalar fits")
    }

    /// A tensor of `dtype` whose bytes are filled by `fill` (the buffer starts zeroed).
    pub fn build<T: Element>(dtype: DType, shape: &[usize], fill: impl FnOnce(&mut [T]) -> Result<()>) -> Result<Tensor> {
        if !storage_compatible::<T>(dtype) {
            return Err(Error::Internal(format!("{} cannot view a {dtype} buffer", T::DTYPE)));
        }
        let mut t = Tensor::zeros(dtype, shape)?;
        fill(t.as_mut_slice_unchecked::<T>()?)?;
        Ok(t)
    }

    /// Like [`Tensor::build`], but the buffer starts with unspecified (initialized) contents:
    /// `fill` must write every element. Avoids zeroing large outputs that are overwritten.
    pub fn build_uninit<T: Element>(dtype: DType, shape: &[usize], fill: impl FnOnce(&mut [T]) -> Result<()>) -> Result<Tensor> {
        if !storage_compatible::<T>(dtype) || dtype == DType::String {
            return Err(Error::Internal(format!("{} cannot view a {dtype} buffer", T::DTYPE)));
        }
        let nbytes = checked_nbytes(dtype, shape)?;
        let mut t = Tensor { dtype, shape: shape.to_vec(), data: Data::Bytes(Arc::new(Storage::for_overwrite(nbytes)?)) };
        fill(t.as_mut_slice_unchecked::<T>()?)?;
        Ok(t)
    }

    /// A string tensor.
    pub fn from_strings(shape: &[usize], values: Vec<Vec<u8>>) -> Result<Tensor> {
        let n = checked_numel(shape)?;
        if n != values.len() {
            return Err(Error::ShapeMismatch(format!(
                "{} strings given for shape {shape:?} ({n} elements)",
                values.len()
            )));
        }
        Ok(Tensor { dtype: DType::String, shape: shape.to_vec(), data: Data::Strings(Arc::new(values)) })
    }

    /// Wrap existing storage (which must hold exactly the bytes of `shape`).
    pub fn from_storage(dtype: DType, shape: &[usize], storage: Storage) -> Result<Tensor> {
        check_not_string(dtype, "Tensor::from_storage")?;
        let nbytes = checked_nbytes(dtype, shape)?;
        if storage.len() != nbytes {
            return Err(Error::ShapeMismatch(format!(
                "buffer of {} bytes given for a {dtype} tensor of shape {shape:?}, which needs {nbytes}",
                storage.len()
            )));
        }
        let align = dtype.align();
        if nbytes > 0 && storage.as_ptr() as usize % align != 0 {
            return Err(Error::InvalidArgument(format!(
                "data pointer {:p} is not aligned to {align} bytes, as {dtype} elements need",
                storage.as_ptr()
            )));
        }
        Ok(Tensor { dtype, shape: shape.to_vec(), data: Data::Bytes(Arc::new(storage)) })
    }

    /// Read-only view of bytes kept alive by `owner` (no copy when aligned; copied otherwise).
    ///
    /// # Safety
    /// `bytes` must lie inside memory owned by `owner` that never changes while it lives.
    pub unsafe fn from_shared_bytes(
        dtype: DType,
        shape: &[usize],
        owner: Arc<dyn Any + Send + Sync>,
        bytes: &[u8],
    ) -> Result<Tensor> {
        if bytes.as_ptr() as usize % dtype.align() != 0 {
            return Tensor::from_bytes(dtype, shape, bytes);
        }
        Tensor::from_storage(dtype, shape, Storage::shared(owner, bytes.as_ptr(), bytes.len()))
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape (row-major dimensions).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes (0 for string tensors).
    pub fn nbytes(&self) -> usize {
        match &self.data {
            Data::Bytes(s) => s.len(),
            Data::Strings(_) => 0,
        }
    }

    /// Whether the data may be written.
    pub fn is_writable(&self) -> bool {
        match &self.data {
            Data::Bytes(s) => s.is_writable(),
            Data::Strings(_) => true,
        }
    }

    /// The storage, for numeric tensors.
    pub fn storage(&self) -> Result<&Arc<Storage>> {
        match &self.data {
            Data::Bytes(s) => Ok(s),
            Data::Strings(_) => Err(Error::UnsupportedDtype("string tensors have no flat data buffer".into())),
        }
    }

    /// The raw bytes (numeric tensors).
    pub fn bytes(&self) -> Result<&[u8]> {
        Ok(self.storage()?.bytes())
    }

    /// Pointer to the first byte (numeric tensors).
    pub fn data_ptr(&self) -> Result<*const u8> {
        Ok(self.storage()?.as_ptr())
    }

    /// Mutable pointer to the first byte; `ReadOnly` for read-only data. Clones share the data:
    /// writes are seen by every tensor sharing it.
    pub fn data_mut_ptr(&self) -> Result<*mut u8> {
        self.storage()?.as_mut_ptr()
    }

    /// The elements as `&[T]`; `UnsupportedDtype` if `T` does not match the dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if !storage_compatible::<T>(self.dtype) {
            return Err(Error::UnsupportedDtype(format!("tensor is {}, not {}", self.dtype, T::DTYPE)));
        }
        let s = self.storage()?;
        let n = s.len() / std::mem::size_of::<T>();
        // SAFETY: storage alignment checked at construction; T is POD (Element contract).
        Ok(unsafe { std::slice::from_raw_parts(s.as_ptr() as *const T, n) })
    }

    /// The elements as `&mut [T]`, copying the data first if it is shared or read-only.
    pub fn make_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        if !storage_compatible::<T>(self.dtype) {
            return Err(Error::UnsupportedDtype(format!("tensor is {}, not {}", self.dtype, T::DTYPE)));
        }
        let needs_copy = match &mut self.data {
            Data::Bytes(s) => Arc::get_mut(s).map(|s| !s.is_writable()).unwrap_or(true),
            Data::Strings(_) => return Err(Error::UnsupportedDtype("string tensor".into())),
        };
        if needs_copy {
            let copy = Storage::copy_from(self.bytes()?)?;
            self.data = Data::Bytes(Arc::new(copy));
        }
        self.as_mut_slice_unchecked()
    }

    /// The raw bytes, mutable, copying first if shared or read-only (numeric tensors).
    pub fn make_mut_bytes(&mut self) -> Result<&mut [u8]> {
        let needs_copy = match &mut self.data {
            Data::Bytes(s) => Arc::get_mut(s).map(|s| !s.is_writable()).unwrap_or(true),
            Data::Strings(_) => return Err(Error::UnsupportedDtype("string tensor".into())),
        };
        if needs_copy {
            let copy = Storage::copy_from(self.bytes()?)?;
            self.data = Data::Bytes(Arc::new(copy));
        }
        match &mut self.data {
            Data::Bytes(s) => Arc::get_mut(s).ok_or_else(|| Error::Internal("storage is shared".into()))?.bytes_mut(),
            Data::Strings(_) => unreachable!(),
        }
    }

    /// The string elements, mutable (copied first if shared).
    pub fn make_mut_strings(&mut self) -> Result<&mut Vec<Vec<u8>>> {
        match &mut self.data {
            Data::Strings(v) => Ok(Arc::make_mut(v)),
            Data::Bytes(_) => Err(Error::UnsupportedDtype(format!("tensor is {}, not string", self.dtype))),
        }
    }

    fn as_mut_slice_unchecked<T: Element>(&mut self) -> Result<&mut [T]> {
        match &mut self.data {
            Data::Bytes(s) => {
                let s = Arc::get_mut(s).ok_or_else(|| Error::Internal("storage is shared".into()))?;
                let b = s.bytes_mut()?;
                let n = b.len() / std::mem::size_of::<T>();
                // SAFETY: aligned (owned storage is 64-aligned), POD element.
                Ok(unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut T, n) })
            }
            Data::Strings(_) => Err(Error::UnsupportedDtype("string tensor".into())),
        }
    }

    /// The byte strings of a string tensor.
    pub fn strings(&self) -> Result<&[Vec<u8>]> {
        match &self.data {
            Data::Strings(v) => Ok(v),
            Data::Bytes(_) => Err(Error::UnsupportedDtype(format!("tensor is {}, not string", self.dtype))),
        }
    }

    /// Same data, another shape with the same number of elements (no copy).
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        let n = checked_numel(shape)?;
        if n != self.len() {
            return Err(Error::ShapeMismatch(format!(
                "cannot reshape {:?} ({} elements) to {shape:?} ({n} elements)",
                self.shape,
                self.len()
            )));
        }
        Ok(Tensor { dtype: self.dtype, shape: shape.to_vec(), data: self.data.clone() })
    }

    /// Whether two tensors share the same data buffer.
    pub fn shares_data_with(&self, other: &Tensor) -> bool {
        match (&self.data, &other.data) {
            (Data::Bytes(a), Data::Bytes(b)) => Arc::ptr_eq(a, b),
            (Data::Strings(a), Data::Strings(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// A deep copy with its own, writable, aligned storage.
    pub fn deep_copy(&self) -> Result<Tensor> {
        match &self.data {
            Data::Bytes(s) => Tensor::from_bytes(self.dtype, &self.shape, s.bytes()),
            Data::Strings(v) => Tensor::from_strings(&self.shape, v.as_ref().clone()),
        }
    }

    /// Integer tensor (any integer dtype or bool) as `i64` values.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        Ok(match self.dtype {
            DType::Int64 => self.as_slice::<i64>()?.to_vec(),
            DType::Int32 => self.as_slice::<i32>()?.iter().map(|v| *v as i64).collect(),
            DType::Int16 => self.as_slice::<i16>()?.iter().map(|v| *v as i64).collect(),
            DType::Int8 | DType::Int4 | DType::Int2 => self.as_slice::<i8>()?.iter().map(|v| *v as i64).collect(),
            DType::Uint8 | DType::Bool | DType::Uint4 | DType::Uint2 => {
                self.as_slice::<u8>()?.iter().map(|v| *v as i64).collect()
            }
            DType::Uint16 => self.as_slice::<u16>()?.iter().map(|v| *v as i64).collect(),
            DType::Uint32 => self.as_slice::<u32>()?.iter().map(|v| *v as i64).collect(),
            DType::Uint64 => self.as_slice::<u64>()?.iter().map(|v| *v as i64).collect(),
            d => return Err(Error::UnsupportedDtype(format!("expected an integer tensor, got {d}"))),
        })
    }

    /// Numeric tensor as `f64` values (floats, ints, bool).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype {
            DType::Float32 => self.as_slice::<f32>()?.iter().map(|v| *v as f64).collect(),
            DType::Float64 => self.as_slice::<f64>()?.to_vec(),
            DType::Float16 => self.as_slice::<half::f16>()?.iter().map(|v| v.to_f64()).collect(),
            DType::BFloat16 => self.as_slice::<half::bf16>()?.iter().map(|v| v.to_f64()).collect(),
            d if d.is_int() || d == DType::Bool => {
                if d == DType::Uint64 {
                    self.as_slice::<u64>()?.iter().map(|v| *v as f64).collect()
                } else {
                    self.to_i64_vec()?.into_iter().map(|v| v as f64).collect()
                }
            }
            d => return Err(Error::UnsupportedDtype(format!("cannot read {d} values as numbers here"))),
        })
    }
}

fn check_not_string(dtype: DType, what: &str) -> Result<()> {
    if dtype == DType::String {
        return Err(Error::UnsupportedDtype(format!("{what}: string tensors have no flat buffer")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_and_shape() {
        let t = Tensor::zeros(DType::Float32, &[2, 0, 3]).unwrap();
        assert_eq!(t.len(), 0);
        assert_eq!(t.nbytes(), 0);
        let s = Tensor::zeros(DType::Int64, &[]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.as_slice::<i64>().unwrap(), &[0]);
    }

    #[test]
    fn absurd_shapes_are_refused() {
        assert!(matches!(Tensor::zeros(DType::Float32, &[usize::MAX, 2]), Err(Error::LimitExceeded(_))));
        assert!(matches!(Tensor::zeros(DType::Float32, &[1 << 30, 1 << 30]), Err(Error::LimitExceeded(_))));
        assert!(matches!(Tensor::zeros(DType::Float32, &[1; 65]), Err(Error::LimitExceeded(_))));
    }

    #[test]
    fn typed_access_checks_dtype() {
        let t = Tensor::from_slice(&[2], &[1.0f32, 2.0]).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        assert!(matches!(t.as_slice::<i32>(), Err(Error::UnsupportedDtype(_))));
        assert!(matches!(Tensor::from_slice(&[3], &[1.0f32]), Err(Error::ShapeMismatch(_))));
    }

    #[test]
    fn copy_on_write() {
        let a = Tensor::from_slice(&[2], &[1i64, 2]).unwrap();
        let mut b = a.clone();
        assert!(a.shares_data_with(&b));
        b.make_mut_slice::<i64>().unwrap()[0] = 9;
        assert!(!a.shares_data_with(&b));
        assert_eq!(a.as_slice::<i64>().unwrap(), &[1, 2]);
        assert_eq!(b.as_slice::<i64>().unwrap(), &[9, 2]);
    }

    #[test]
    fn reshape_shares() {
        let a = Tensor::from_slice(&[2, 3], &[0u8; 6]).unwrap();
        let b = a.reshaped(&[3, 2]).unwrap();
        assert!(a.shares_data_with(&b));
        assert!(matches!(a.reshaped(&[4]), Err(Error::ShapeMismatch(_))));
    }
}
