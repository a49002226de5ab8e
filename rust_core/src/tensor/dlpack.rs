//! DLPack (1.x versioned and legacy) import and export without copying.
//!
//! The struct layouts follow the DLPack specification (`dlpack.h`, v1.1). Sub-byte types are
//! exchanged one element per byte, which DLPack 1.1 signals with
//! `DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED` (versioned form only).

use super::dtype::DType;
use super::storage::Storage;
use super::tensor::{checked_nbytes, Tensor, MAX_RANK};
use crate::error::{Error, Result};
use std::os::raw::c_void;

/// DLPack major version we produce and accept.
pub const DLPACK_MAJOR_VERSION: u32 = 1;
/// DLPack minor version we produce.
pub const DLPACK_MINOR_VERSION: u32 = 1;
/// Read-only flag of `DLManagedTensorVersioned::flags`.
pub const FLAG_READ_ONLY: u64 = 1 << 0;
/// "Is a copy" flag.
pub const FLAG_IS_COPIED: u64 = 1 << 1;
/// Sub-byte elements occupy one byte each.
pub const FLAG_SUBBYTE_PADDED: u64 = 1 << 2;

/// `DLDeviceType::kDLCPU`.
pub const DL_CPU: i32 = 1;
/// `kDLCUDAHost` (pinned host memory, CPU-accessible).
pub const DL_CUDA_HOST: i32 = 3;
/// `kDLROCMHost`.
pub const DL_ROCM_HOST: i32 = 11;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

#[repr(C)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

// DLDataTypeCode values.
const K_INT: u8 = 0;
const K_UINT: u8 = 1;
const K_FLOAT: u8 = 2;
const K_BFLOAT: u8 = 4;
const K_COMPLEX: u8 = 5;
const K_BOOL: u8 = 6;
const K_F8_E4M3FN: u8 = 10;
const K_F8_E4M3FNUZ: u8 = 11;
const K_F8_E5M2: u8 = 12;
const K_F8_E5M2FNUZ: u8 = 13;
const K_F8_E8M0FNU: u8 = 14;
const K_F4_E2M1FN: u8 = 17;

/// The DLPack data type of `dtype`, or `UnsupportedDtype` (strings).
pub fn to_dl_dtype(dtype: DType) -> Result<DLDataType> {
    use DType::*;
    let (code, bits) = match dtype {
        Float32 => (K_FLOAT, 32),
        Float64 => (K_FLOAT, 64),
        Float16 => (K_FLOAT, 16),
        BFloat16 => (K_BFLOAT, 16),
        Int8 => (K_INT, 8),
        Int16 => (K_INT, 16),
        Int32 => (K_INT, 32),
        Int64 => (K_INT, 64),
        Uint8 => (K_UINT, 8),
        Uint16 => (K_UINT, 16),
        Uint32 => (K_UINT, 32),
        Uint64 => (K_UINT, 64),
        Bool => (K_BOOL, 8),
        Complex64 => (K_COMPLEX, 64),
        Complex128 => (K_COMPLEX, 128),
        Float8E4M3FN => (K_F8_E4M3FN, 8),
        Float8E4M3FNUZ => (K_F8_E4M3FNUZ, 8),
        Float8E5M2 => (K_F8_E5M2, 8),
        Float8E5M2FNUZ => (K_F8_E5M2FNUZ, 8),
        Float8E8M0 => (K_F8_E8M0FNU, 8),
        Float4E2M1 => (K_F4_E2M1FN, 4),
        Int4 => (K_INT, 4),
        Uint4 => (K_UINT, 4),
        Int2 => (K_INT, 2),
        Uint2 => (K_UINT, 2),
        String => return Err(Error::UnsupportedDtype("string tensors cannot be exchanged through DLPack".into())),
    };
    Ok(DLDataType { code, bits, lanes: 1 })
}

/// Our dtype for a DLPack data type.
pub fn from_dl_dtype(dt: DLDataType) -> Result<DType> {
    use DType::*;
    if dt.lanes != 1 {
        return Err(Error::UnsupportedDtype(format!(
            "DLPack dtype with {} lanes (vector types are not supported; lanes must be 1)",
            dt.lanes
        )));
    }
    Ok(match (dt.code, dt.bits) {
        (K_FLOAT, 32) => Float32,
        (K_FLOAT, 64) => Float64,
        (K_FLOAT, 16) => Float16,
        (K_BFLOAT, 16) => BFloat16,
        (K_INT, 8) => Int8,
        (K_INT, 16) => Int16,
        (K_INT, 32) => Int32,
        (K_INT, 64) => Int64,
        (K_UINT, 8) => Uint8,
        (K_UINT, 16) => Uint16,
        (K_UINT, 32) => Uint32,
        (K_UINT, 64) => Uint64,
        (K_BOOL, 8) => Bool,
        (K_COMPLEX, 64) => Complex64,
        (K_COMPLEX, 128) => Complex128,
        (K_F8_E4M3FN, 8) => Float8E4M3FN,
        (K_F8_E4M3FNUZ, 8) => Float8E4M3FNUZ,
        (K_F8_E5M2, 8) => Float8E5M2,
        (K_F8_E5M2FNUZ, 8) => Float8E5M2FNUZ,
        (K_F8_E8M0FNU, 8) => Float8E8M0,
        (K_F4_E2M1FN, 4) => Float4E2M1,
        (K_INT, 4) => Int4,
        (K_UINT, 4) => Uint4,
        (K_INT, 2) => Int2,
        (K_UINT, 2) => Uint2,
        (c, b) => return Err(Error::UnsupportedDtype(format!("DLPack dtype code {c} with {b} bits"))),
    })
}

/// Options of an import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Copy non-contiguous data into a new buffer instead of failing.
    pub allow_copy: bool,
}

/// What the generic importer needs from either managed-tensor flavour.
struct Incoming<'a> {
    tensor: &'a DLTensor,
    read_only: bool,
    subbyte_padded: bool,
}

/// Validate `t` and build a tensor that owns the producer's buffer; `release` is called exactly
/// once: on error before returning, or when the last clone of the tensor drops.
fn import(inc: Incoming<'_>, opts: ImportOptions, release: Box<dyn FnOnce() + Send>) -> Result<Tensor> {
    // Run `release` on every error path: wrap it in a guard that fires unless disarmed.
    struct Guard(Option<Box<dyn FnOnce() + Send>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    let mut guard = Guard(Some(release));
    let t = inc.tensor;
    if !matches!(t.device.device_type, DL_CPU | DL_CUDA_HOST | DL_ROCM_HOST) {
        return Err(Error::InvalidArgument(format!(
            "DLPack tensor is on device type {} (id {}); only CPU memory is supported",
            t.device.device_type, t.device.device_id
        )));
    }
    let dtype = from_dl_dtype(t.dtype)?;
    if dtype.packed_bits() < 8 && !inc.subbyte_padded {
        return Err(Error::UnsupportedDtype(format!(
            "DLPack {dtype} tensor is bit-packed; only the padded layout (one element per byte, \
             flag IS_SUBBYTE_TYPE_PADDED) is supported"
        )));
    }
    if t.ndim < 0 || t.ndim as usize > MAX_RANK {
        return Err(Error::InvalidArgument(format!("DLPack tensor has invalid ndim {}", t.ndim)));
    }
    let ndim = t.ndim as usize;
    if ndim > 0 && t.shape.is_null() {
        return Err(Error::NullPointer(format!("DLPack tensor of ndim {ndim} has a NULL shape")));
    }
    let dims: &[i64] = if ndim == 0 { &[] } else { unsafe { std::slice::from_raw_parts(t.shape, ndim) } };
    let mut shape = Vec::with_capacity(ndim);
    for (i, &d) in dims.iter().enumerate() {
        if d < 0 {
            return Err(Error::InvalidArgument(format!("DLPack tensor has negative dimension {d} at axis {i}")));
        }
        shape.push(d as usize);
    }
    let nbytes = checked_nbytes(dtype, &shape)?;
    let numel: usize = shape.iter().product();
    let elem = dtype.size();
    let base = if t.data.is_null() {
        if numel != 0 {
            return Err(Error::NullPointer("DLPack tensor has a NULL data pointer".into()));
        }
        std::ptr::null_mut()
    } else {
        (t.data as *mut u8).wrapping_add(t.byte_offset as usize)
    };
    // Contiguity: strides NULL means row-major; otherwise compare with row-major strides,
    // ignoring axes of extent 1 (their stride is irrelevant).
    let mut contiguous = true;
    let mut strides_v = vec![0i64; ndim];
    if !t.strides.is_null() && ndim > 0 {
        let strides = unsafe { std::slice::from_raw_parts(t.strides, ndim) };
        strides_v.copy_from_slice(strides);
        let mut expect = 1i64;
        for i in (0..ndim).rev() {
            if shape[i] != 1 && strides[i] != expect {
                contiguous = false;
            }
            expect = expect.saturating_mul(shape[i] as i64);
        }
    } else {
        let mut expect = 1i64;
        for i in (0..ndim).rev() {
            strides_v[i] = expect;
            expect = expect.saturating_mul(shape[i] as i64);
        }
    }
    if numel == 0 {
        contiguous = true;
    }
    if !contiguous {
        if !opts.allow_copy {
            return Err(Error::InvalidArgument(format!(
                "DLPack tensor of shape {shape:?} has non-contiguous strides {strides_v:?} \
                 and copying was not allowed"
            )));
        }
        // Gather into a new contiguous buffer, then release the producer now.
        let mut out = Tensor::zeros(dtype, &shape)?;
        {
            let dst = out.make_mut_bytes()?;
            let mut idx = vec![0usize; ndim];
            for k in 0..numel {
                let mut off: i64 = 0;
                for a in 0..ndim {
                    off += idx[a] as i64 * strides_v[a];
                }
                let src = unsafe { base.offset(off as isize * elem as isize) };
                unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr().add(k * elem), elem) };
                for a in (0..ndim).rev() {
                    idx[a] += 1;
                    if idx[a] < shape[a] {
                        break;
                    }
                    idx[a] = 0;
                }
            }
        }
        drop(guard);
        return Ok(out);
    }
    if numel != 0 && (base as usize) % dtype.align() != 0 {
        return Err(Error::InvalidArgument(format!(
            "DLPack data pointer {base:p} is not aligned to {} bytes, as {dtype} elements need",
            dtype.align()
        )));
    }
    let release = guard.0.take();
    // SAFETY: the producer guarantees the buffer lives until its deleter runs (in `release`).
    let storage = unsafe { Storage::external(base, nbytes, !inc.read_only, release) };
    Tensor::from_storage(dtype, &shape, storage)
}

/// Import a `DLManagedTensorVersioned`, taking ownership: its deleter is called exactly once,
/// either on error (before this returns) or when the last tensor sharing the data drops.
///
/// # Safety
/// `mt` must point to a valid managed tensor that the caller hands over.
pub unsafe fn import_versioned(mt: *mut DLManagedTensorVersioned, opts: ImportOptions) -> Result<Tensor> {
    if mt.is_null() {
        return Err(Error::NullPointer("argument 'managed' (DLManagedTensorVersioned*) is NULL".into()));
    }
    let m = &*mt;
    let mt_addr = mt as usize;
    let deleter = m.deleter;
    let release: Box<dyn FnOnce() + Send> = Box::new(move || {
        if let Some(d) = deleter {
            d(mt_addr as *mut DLManagedTensorVersioned)
        }
    });
    if m.version.major != DLPACK_MAJOR_VERSION {
        let v = m.version;
        // The spec says: on major version mismatch, call the deleter and fail.
        release();
        return Err(Error::VersionMismatch(format!(
            "DLPack tensor has version {}.{}; this library supports major version {DLPACK_MAJOR_VERSION}",
            v.major, v.minor
        )));
    }
    let inc = Incoming {
        tensor: &m.dl_tensor,
        read_only: m.flags & FLAG_READ_ONLY != 0,
        subbyte_padded: m.flags & FLAG_SUBBYTE_PADDED != 0,
    };
    import(inc, opts, release)
}

/// Import a legacy (pre-1.0) `DLManagedTensor`, taking ownership (see [`import_versioned`]).
/// Legacy tensors carry no read-only flag: the data is treated as writable.
///
/// # Safety
/// `mt` must point to a valid managed tensor that the caller hands over.
pub unsafe fn import_legacy(mt: *mut DLManagedTensor, opts: ImportOptions) -> Result<Tensor> {
    if mt.is_null() {
        return Err(Error::NullPointer("argument 'managed' (DLManagedTensor*) is NULL".into()));
    }
    let m = &*mt;
    let mt_addr = mt as usize;
    let deleter = m.deleter;
    let release: Box<dyn FnOnce() + Send> = Box::new(move || {
        if let Some(d) = deleter {
            d(mt_addr as *mut DLManagedTensor)
        }
    });
    let inc = Incoming { tensor: &m.dl_tensor, read_only: false, subbyte_padded: false };
    import(inc, opts, release)
}

/// What an exported managed tensor keeps alive: the tensor and the shape/stride arrays.
struct ExportCtx {
    _tensor: Tensor,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

fn export_parts(t: &Tensor) -> Result<(DLTensor, Box<ExportCtx>)> {
    let dl_dtype = to_dl_dtype(t.dtype())?;
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    let mut ctx = Box::new(ExportCtx { _tensor: t.clone(), shape, strides });
    let dl = DLTensor {
        data: t.data_ptr()? as *mut c_void,
        device: DLDevice { device_type: DL_CPU, device_id: 0 },
        ndim: ctx.shape.len() as i32,
        dtype: dl_dtype,
        shape: ctx.shape.as_mut_ptr(),
        strides: ctx.strides.as_mut_ptr(),
        byte_offset: 0,
    };
    Ok((dl, ctx))
}

unsafe extern "C" fn delete_versioned(mt: *mut DLManagedTensorVersioned) {
    if mt.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let b = Box::from_raw(mt);
        drop(Box::from_raw(b.manager_ctx as *mut ExportCtx));
    });
}

unsafe extern "C" fn delete_legacy(mt: *mut DLManagedTensor) {
    if mt.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let b = Box::from_raw(mt);
        drop(Box::from_raw(b.manager_ctx as *mut ExportCtx));
    });
}

/// Export as a `DLManagedTensorVersioned` sharing the tensor's data. The consumer must call its
/// deleter exactly once. Read-only data carries the read-only flag.
pub fn export_versioned(t: &Tensor) -> Result<*mut DLManagedTensorVersioned> {
    let (dl, ctx) = export_parts(t)?;
    let mut flags = 0;
    if !t.is_writable() {
        flags |= FLAG_READ_ONLY;
    }
    if t.dtype().packed_bits() < 8 {
        flags |= FLAG_SUBBYTE_PADDED;
    }
    let mt = Box::new(DLManagedTensorVersioned {
        version: DLPackVersion { major: DLPACK_MAJOR_VERSION, minor: DLPACK_MINOR_VERSION },
        manager_ctx: Box::into_raw(ctx) as *mut c_void,
        deleter: Some(delete_versioned),
        flags,
        dl_tensor: dl,
    });
    Ok(Box::into_raw(mt))
}

/// Export as a legacy `DLManagedTensor` sharing the tensor's data. Legacy DLPack has no read-only
/// flag, so read-only tensors are refused (`ReadOnly`) and sub-byte types too.
pub fn export_legacy(t: &Tensor) -> Result<*mut DLManagedTensor> {
    if !t.is_writable() {
        return Err(Error::ReadOnly(
            "tensor is read-only and legacy DLPack cannot signal it; use the versioned export".into(),
        ));
    }
    if t.dtype().packed_bits() < 8 {
        return Err(Error::UnsupportedDtype(format!(
            "{} cannot be exported through legacy DLPack (no padded sub-byte flag); use the versioned export",
            t.dtype()
        )));
    }
    let (dl, ctx) = export_parts(t)?;
    let mt = Box::new(DLManagedTensor {
        dl_tensor: dl,
        manager_ctx: Box::into_raw(ctx) as *mut c_void,
        deleter: Some(delete_legacy),
    });
    Ok(Box::into_raw(mt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn round_trip_shares_data() {
        let t = Tensor::from_slice(&[2, 3], &[1f32, 2., 3., 4., 5., 6.]).unwrap();
        let mt = export_versioned(&t).unwrap();
        let back = unsafe { import_versioned(mt, ImportOptions::default()) }.unwrap();
        assert_eq!(back.data_ptr().unwrap(), t.data_ptr().unwrap());
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back.as_slice::<f32>().unwrap()[5], 6.0);
        let mt = export_legacy(&t).unwrap();
        let back2 = unsafe { import_legacy(mt, ImportOptions::default()) }.unwrap();
        assert_eq!(back2.data_ptr().unwrap(), t.data_ptr().unwrap());
    }

    static DELETED: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn count_delete(_mt: *mut DLManagedTensorVersioned) {
        DELETED.fetch_add(1, Ordering::SeqCst);
    }

    fn make(data: &mut [f32], shape: &mut [i64], strides: Option<&mut [i64]>, major: u32, device: i32) -> DLManagedTensorVersioned {
        DLManagedTensorVersioned {
            version: DLPackVersion { major, minor: 0 },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(count_delete),
            flags: FLAG_READ_ONLY,
            dl_tensor: DLTensor {
                data: data.as_mut_ptr() as *mut c_void,
                device: DLDevice { device_type: device, device_id: 0 },
                ndim: shape.len() as i32,
                dtype: DLDataType { code: K_FLOAT, bits: 32, lanes: 1 },
                shape: shape.as_mut_ptr(),
                strides: strides.map(|s| s.as_mut_ptr()).unwrap_or(std::ptr::null_mut()),
                byte_offset: 0,
            },
        }
    }

    #[test]
    fn deleter_runs_once_on_success_and_error() {
        let mut data = [1f32, 2., 3., 4.];
        let mut shape = [2i64, 2];
        let before = DELETED.load(Ordering::SeqCst);
        let mut mt = make(&mut data, &mut shape, None, 1, DL_CPU);
        let t = unsafe { import_versioned(&mut mt, ImportOptions::default()) }.unwrap();
        assert!(!t.is_writable());
        let t2 = t.clone();
        drop(t);
        assert_eq!(DELETED.load(Ordering::SeqCst), before);
        drop(t2);
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 1);

        // Wrong device: error, deleter called once.
        let mut mt = make(&mut data, &mut shape, None, 1, 2);
        let e = unsafe { import_versioned(&mut mt, ImportOptions::default()) }.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 2);

        // Wrong major version.
        let mut mt = make(&mut data, &mut shape, None, 2, DL_CPU);
        let e = unsafe { import_versioned(&mut mt, ImportOptions::default()) }.unwrap_err();
        assert!(matches!(e, Error::VersionMismatch(_)));
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 3);

        // Non-contiguous (transposed) strides: refused without copy, gathered with copy.
        let mut strides = [1i64, 2];
        let mut mt = make(&mut data, &mut shape, Some(&mut strides), 1, DL_CPU);
        assert!(unsafe { import_versioned(&mut mt, ImportOptions::default()) }.is_err());
        let mut mt = make(&mut data, &mut shape, Some(&mut strides), 1, DL_CPU);
        let t = unsafe { import_versioned(&mut mt, ImportOptions { allow_copy: true }) }.unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1., 3., 2., 4.]);
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 5);
    }
}
