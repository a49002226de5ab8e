//! `pmi_tensor_*`: tensor handles over [`crate::tensor::Tensor`].

use super::status::*;
use crate::error::Error;
use crate::tensor::dlpack::{self, DLManagedTensor, DLManagedTensorVersioned, ImportOptions};
use crate::tensor::{npy, DType, Storage, Tensor, MAX_RANK};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;

/// The C handle: a tensor plus its dims as `int64_t` for the borrowed shape accessor.
pub struct PmiTensor {
    pub(crate) tensor: Tensor,
    dims: Vec<i64>,
}

impl PmiTensor {
    /// Box a tensor as a new C handle.
    pub(crate) fn boxed(tensor: Tensor) -> *mut PmiTensor {
        let dims = tensor.shape().iter().map(|&d| d as i64).collect();
        Box::into_raw(Box::new(PmiTensor { tensor, dims }))
    }

    /// The dims as `int64_t`, borrowed for as long as the handle lives.
    pub(crate) fn dims_ptr(&self) -> *const i64 {
        self.dims.as_ptr()
    }
}

/// Read a C shape argument.
pub(crate) unsafe fn read_shape(shape: *const i64, rank: usize) -> crate::Result<Vec<usize>> {
    if rank > MAX_RANK {
        return Err(Error::LimitExceeded(format!("rank {rank} exceeds PMI_MAX_RANK ({MAX_RANK})")));
    }
    if rank == 0 {
        return Ok(Vec::new());
    }
    if shape.is_null() {
        return Err(Error::NullPointer(format!("argument 'shape' is NULL but rank is {rank}")));
    }
    std::slice::from_raw_parts(shape, rank)
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| Error::InvalidArgument(format!("shape[{i}] is negative ({d})")))
        })
        .collect()
}

unsafe fn out_tensor(out: *mut *mut PmiTensor, t: Tensor) -> crate::Result<()> {
    write_out(out, "out", PmiTensor::boxed(t))
}

fn check_out(out: *mut *mut PmiTensor) -> crate::Result<()> {
    if out.is_null() {
        return Err(Error::NullPointer("output argument 'out' is NULL".into()));
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn pmi_dtype_size(dtype: i32) -> usize {
    guard_value(0, || DType::from_code(dtype).map(|d| d.size()).unwrap_or(0))
}

#[no_mangle]
pub extern "C" fn pmi_dtype_name(dtype: i32) -> *const c_char {
    guard_value(std::ptr::null(), || match DType::from_code(dtype) {
        // Names are static strings; build a static NUL-terminated table lazily.
        Ok(d) => dtype_cname(d).as_ptr(),
        Err(_) => std::ptr::null(),
    })
}

fn dtype_cname(d: DType) -> &'static CStr {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Vec<(DType, std::ffi::CString)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        crate::tensor::dtype::ALL_DTYPES
            .iter()
            .map(|d| (*d, std::ffi::CString::new(d.name()).expect("no NUL in dtype names")))
            .collect()
    });
    names.iter().find(|(x, _)| *x == d).map(|(_, c)| c.as_c_str()).unwrap_or(c"")
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_zeros(dtype: i32, shape: *const i64, rank: usize, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let dtype = DType::from_code(dtype)?;
        let shape = read_shape(shape, rank)?;
        out_tensor(out, Tensor::zeros(dtype, &shape)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_from_copy(
    dtype: i32,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    nbytes: usize,
    out: *mut *mut PmiTensor,
) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let dtype = DType::from_code(dtype)?;
        let shape = read_shape(shape, rank)?;
        if data.is_null() && nbytes > 0 {
            return Err(Error::NullPointer("argument 'data' is NULL".into()));
        }
        let bytes = if nbytes == 0 { &[][..] } else { std::slice::from_raw_parts(data as *const u8, nbytes) };
        out_tensor(out, Tensor::from_bytes(dtype, &shape, bytes)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_wrap(
    dtype: i32,
    shape: *const i64,
    rank: usize,
    data: *mut c_void,
    nbytes: usize,
    writable: c_int,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    release_ctx: *mut c_void,
    out: *mut *mut PmiTensor,
) -> PmiStatus {
    // The release callback runs exactly once: via the storage once it exists, otherwise here
    // on any error after the pointers were validated.
    let ctx_addr = release_ctx as usize;
    let callback = move || {
        if let Some(f) = release {
            f(ctx_addr as *mut c_void)
        }
    };
    guard(|| {
        check_out(out)?;
        if data.is_null() && nbytes > 0 {
            return Err(Error::NullPointer("argument 'data' is NULL".into()));
        }
        let storage = Storage::external(data as *mut u8, nbytes, writable != 0, Some(Box::new(callback)));
        // From here on, dropping `storage` (also on error) calls the release callback.
        let dtype = DType::from_code(dtype)?;
        if dtype == DType::String {
            return Err(Error::UnsupportedDtype("STRING tensors cannot wrap a flat buffer; use pmi_tensor_from_strings".into()));
        }
        let shape = read_shape(shape, rank)?;
        out_tensor(out, Tensor::from_storage(dtype, &shape, storage)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_from_strings(
    shape: *const i64,
    rank: usize,
    strings: *const *const c_char,
    lengths: *const usize,
    count: usize,
    out: *mut *mut PmiTensor,
) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let shape = read_shape(shape, rank)?;
        let n = crate::tensor::checked_numel(&shape)?;
        if n != count {
            return Err(Error::ShapeMismatch(format!("{count} strings given for shape {shape:?} ({n} elements)")));
        }
        if strings.is_null() && count > 0 {
            return Err(Error::NullPointer("argument 'strings' is NULL".into()));
        }
        let mut v = Vec::with_capacity(count);
        for i in 0..count {
            let p = *strings.add(i);
            if p.is_null() {
                return Err(Error::NullPointer(format!("strings[{i}] is NULL")));
            }
            let bytes = if lengths.is_null() {
                CStr::from_ptr(p).to_bytes()
            } else {
                std::slice::from_raw_parts(p as *const u8, *lengths.add(i))
            };
            v.push(bytes.to_vec());
        }
        out_tensor(out, Tensor::from_strings(&shape, v)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_from_dlpack_versioned(
    managed: *mut DLManagedTensorVersioned,
    flags: u32,
    out: *mut *mut PmiTensor,
) -> PmiStatus {
    guard(|| {
        if out.is_null() {
            // Ownership passed anyway: honour it by calling the deleter.
            if let Some(m) = managed.as_ref() {
                if let Some(d) = m.deleter {
                    d(managed)
                }
            }
            return Err(Error::NullPointer("output argument 'out' is NULL".into()));
        }
        let t = dlpack::import_versioned(managed, ImportOptions { allow_copy: flags & 1 != 0 })?;
        out_tensor(out, t)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_from_dlpack(managed: *mut DLManagedTensor, flags: u32, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        if out.is_null() {
            if let Some(m) = managed.as_ref() {
                if let Some(d) = m.deleter {
                    d(managed)
                }
            }
            return Err(Error::NullPointer("output argument 'out' is NULL".into()));
        }
        let t = dlpack::import_legacy(managed, ImportOptions { allow_copy: flags & 1 != 0 })?;
        out_tensor(out, t)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_to_dlpack_versioned(tensor: *const PmiTensor, out: *mut *mut DLManagedTensorVersioned) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        if out.is_null() {
            return Err(Error::NullPointer("output argument 'out' is NULL".into()));
        }
        write_out(out, "out", dlpack::export_versioned(&t.tensor)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_to_dlpack(tensor: *const PmiTensor, out: *mut *mut DLManagedTensor) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        if out.is_null() {
            return Err(Error::NullPointer("output argument 'out' is NULL".into()));
        }
        write_out(out, "out", dlpack::export_legacy(&t.tensor)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_clone(tensor: *const PmiTensor, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        check_out(out)?;
        out_tensor(out, t.tensor.clone())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_copy(tensor: *const PmiTensor, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        check_out(out)?;
        out_tensor(out, t.tensor.deep_copy()?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_release(tensor: *mut PmiTensor) {
    if !tensor.is_null() {
        guard_value((), || drop(Box::from_raw(tensor)))
    }
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_dtype(tensor: *const PmiTensor, out: *mut i32) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.tensor.dtype().code()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_rank(tensor: *const PmiTensor, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.tensor.rank()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_shape(tensor: *const PmiTensor, out: *mut *const i64) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.dims.as_ptr()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_numel(tensor: *const PmiTensor, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.tensor.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_nbytes(tensor: *const PmiTensor, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.tensor.nbytes()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_is_writable(tensor: *const PmiTensor, out: *mut c_int) -> PmiStatus {
    guard(|| write_out(out, "out", nn(tensor, "tensor")?.tensor.is_writable() as c_int))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_data(tensor: *const PmiTensor, out: *mut *const c_void) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        write_out(out, "out", t.tensor.data_ptr()? as *const c_void)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_data_mut(tensor: *mut PmiTensor, out: *mut *mut c_void) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        write_out(out, "out", t.tensor.data_mut_ptr()? as *mut c_void)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_string_get(
    tensor: *const PmiTensor,
    index: usize,
    data: *mut *const c_char,
    length: *mut usize,
) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        if data.is_null() || length.is_null() {
            return Err(Error::NullPointer("output argument 'data' or 'length' is NULL".into()));
        }
        let s = t.tensor.strings()?;
        let e = s
            .get(index)
            .ok_or_else(|| Error::InvalidArgument(format!("string index {index} out of range (tensor has {})", s.len())))?;
        write_out(data, "data", e.as_ptr() as *const c_char)?;
        write_out(length, "length", e.len())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_load_npy(path: *const c_char, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let p = c_str(path, "path")?;
        out_tensor(out, npy::load_npy(Path::new(p))?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_save_npy(tensor: *const PmiTensor, path: *const c_char) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        let p = c_str(path, "path")?;
        npy::save_npy(&t.tensor, Path::new(p))
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_load_pb(path: *const c_char, out: *mut *mut PmiTensor) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let p = c_str(path, "path")?;
        out_tensor(out, crate::onnx::load_tensor_pb(Path::new(p))?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_tensor_save_pb(tensor: *const PmiTensor, path: *const c_char) -> PmiStatus {
    guard(|| {
        let t = nn(tensor, "tensor")?;
        let p = c_str(path, "path")?;
        crate::onnx::save_tensor_pb(&t.tensor, "", Path::new(p))
    })
}
