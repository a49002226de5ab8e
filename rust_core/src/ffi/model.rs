//! `pmi_model_*`: loading, inspecting and saving models.

use super::status::*;
use crate::api;
use crate::error::Error;
use crate::graph::{Dim, Model, ValueInfo};
use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::sync::Arc;

/// C view of a value's declared type (see `pmi_value_info` in the header).
#[repr(C)]
pub struct PmiValueInfo {
    pub name: *const c_char,
    pub dtype: i32,
    pub rank: i64,
    pub dims: *const i64,
    pub dim_names: *const *const c_char,
    pub type_string: *const c_char,
}

/// Owned storage behind a `PmiValueInfo`.
pub(crate) struct InfoC {
    name: CString,
    type_string: CString,
    dtype: i32,
    rank: i64,
    dims: Vec<i64>,
    _dim_names: Vec<Option<CString>>,
    dim_name_ptrs: Vec<*const c_char>,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl InfoC {
    pub(crate) fn new(v: &ValueInfo) -> InfoC {
        let shape = v.ty.tensor_shape();
        let dims: Vec<i64> = shape
            .map(|s| s.iter().map(|d| if let Dim::Known(n) = d { *n as i64 } else { -1 }).collect())
            .unwrap_or_default();
        let names: Vec<Option<CString>> = shape
            .map(|s| s.iter().map(|d| if let Dim::Symbol(n) = d { Some(cstring(n)) } else { None }).collect())
            .unwrap_or_default();
        let ptrs = names.iter().map(|n| n.as_ref().map(|c| c.as_ptr()).unwrap_or(std::ptr::null())).collect();
        InfoC {
            name: cstring(&v.name),
            type_string: cstring(&v.ty.type_string()),
            dtype: v.ty.tensor_dtype().map(|d| d.code()).unwrap_or(0),
            rank: shape.map(|s| s.len() as i64).unwrap_or(-1),
            dims,
            _dim_names: names,
            dim_name_ptrs: ptrs,
        }
    }

    pub(crate) fn view(&self) -> PmiValueInfo {
        PmiValueInfo {
            name: self.name.as_ptr(),
            dtype: self.dtype,
            rank: self.rank,
            dims: self.dims.as_ptr(),
            dim_names: self.dim_name_ptrs.as_ptr(),
            type_string: self.type_string.as_ptr(),
        }
    }
}

/// The C handle of a model, with C strings precomputed for borrowed accessors.
pub struct PmiModel {
    pub(crate) model: Arc<Model>,
    inputs: Vec<InfoC>,
    outputs: Vec<InfoC>,
    producer_name: CString,
    producer_version: CString,
    opsets: Vec<(CString, i64)>,
    metadata: Vec<(CString, CString)>,
    ops: Vec<(CString, usize)>,
}

// SAFETY: raw pointers inside InfoC point into CStrings owned by the same struct; immutable.
unsafe impl Send for PmiModel {}
unsafe impl Sync for PmiModel {}
unsafe impl Send for InfoC {}
unsafe impl Sync for InfoC {}

impl PmiModel {
    fn new(model: Arc<Model>) -> PmiModel {
        let g = &model.graph;
        PmiModel {
            inputs: g.real_inputs().into_iter().map(InfoC::new).collect(),
            outputs: g.outputs.iter().map(InfoC::new).collect(),
            producer_name: cstring(&model.producer_name),
            producer_version: cstring(&model.producer_version),
            opsets: model
                .opsets
                .iter()
                .map(|(d, v)| (cstring(if d.is_empty() { "ai.onnx" } else { d }), *v))
                .collect(),
            metadata: model.metadata.iter().map(|(k, v)| (cstring(k), cstring(v))).collect(),
            ops: model.op_histogram().into_iter().map(|(k, n)| (cstring(&k), n)).collect(),
            model,
        }
    }
}

unsafe fn out_model(out: *mut *mut PmiModel, m: Arc<Model>) -> crate::Result<()> {
    write_out(out, "out", Box::into_raw(Box::new(PmiModel::new(m))))
}

fn check_out<T>(out: *mut *mut T) -> crate::Result<()> {
    if out.is_null() {
        return Err(Error::NullPointer("output argument 'out' is NULL".into()));
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_load_file(path: *const c_char, out: *mut *mut PmiModel) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        let p = c_str(path, "path")?;
        out_model(out, api::load_model_file(Path::new(p))?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_load_bytes(data: *const c_void, len: usize, out: *mut *mut PmiModel) -> PmiStatus {
    guard(|| {
        check_out(out)?;
        if data.is_null() {
            return Err(Error::NullPointer("argument 'data' is NULL".into()));
        }
        let bytes = std::slice::from_raw_parts(data as *const u8, len).to_vec();
        out_model(out, api::load_model_bytes(bytes)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_release(model: *mut PmiModel) {
    if !model.is_null() {
        guard_value((), || drop(Box::from_raw(model)))
    }
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_save_file(model: *const PmiModel, path: *const c_char) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        let p = c_str(path, "path")?;
        api::save_model_file(&m.model, Path::new(p))
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_to_bytes(model: *const PmiModel, data: *mut *mut u8, len: *mut usize) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        if data.is_null() || len.is_null() {
            return Err(Error::NullPointer("output argument 'data' or 'len' is NULL".into()));
        }
        let bytes = api::model_to_bytes(&m.model)?.into_boxed_slice();
        let n = bytes.len();
        let p = Box::into_raw(bytes) as *mut u8;
        write_out(data, "data", p)?;
        write_out(len, "len", n)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_bytes_free(data: *mut u8, len: usize) {
    if !data.is_null() {
        guard_value((), || drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len))))
    }
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_input_count(model: *const PmiModel, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.inputs.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_output_count(model: *const PmiModel, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.outputs.len()))
}

pub(crate) fn info_at(list: &[InfoC], index: usize, what: &str) -> crate::Result<PmiValueInfo> {
    list.get(index)
        .map(InfoC::view)
        .ok_or_else(|| Error::InvalidArgument(format!("{what} index {index} out of range (there are {})", list.len())))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_input_info(model: *const PmiModel, index: usize, out: *mut PmiValueInfo) -> PmiStatus {
    guard(|| write_out(out, "out", info_at(&nn(model, "model")?.inputs, index, "input")?))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_output_info(model: *const PmiModel, index: usize, out: *mut PmiValueInfo) -> PmiStatus {
    guard(|| write_out(out, "out", info_at(&nn(model, "model")?.outputs, index, "output")?))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_ir_version(model: *const PmiModel, out: *mut i64) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.model.ir_version))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_producer(model: *const PmiModel, name: *mut *const c_char, version: *mut *const c_char) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        write_out(name, "name", m.producer_name.as_ptr())?;
        write_out(version, "version", m.producer_version.as_ptr())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_opset_count(model: *const PmiModel, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.opsets.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_opset(model: *const PmiModel, index: usize, domain: *mut *const c_char, version: *mut i64) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        let (d, v) = m
            .opsets
            .get(index)
            .ok_or_else(|| Error::InvalidArgument(format!("opset index {index} out of range (there are {})", m.opsets.len())))?;
        write_out(domain, "domain", d.as_ptr())?;
        write_out(version, "version", *v)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_metadata_count(model: *const PmiModel, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.metadata.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_metadata(model: *const PmiModel, index: usize, key: *mut *const c_char, value: *mut *const c_char) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        let (k, v) = m
            .metadata
            .get(index)
            .ok_or_else(|| Error::InvalidArgument(format!("metadata index {index} out of range (there are {})", m.metadata.len())))?;
        write_out(key, "key", k.as_ptr())?;
        write_out(value, "value", v.as_ptr())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_op_type_count(model: *const PmiModel, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(model, "model")?.ops.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_op_type(model: *const PmiModel, index: usize, op_type: *mut *const c_char, count: *mut usize) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        let (k, n) = m
            .ops
            .get(index)
            .ok_or_else(|| Error::InvalidArgument(format!("op type index {index} out of range (there are {})", m.ops.len())))?;
        write_out(op_type, "op_type", k.as_ptr())?;
        write_out(count, "count", *n)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_model_initializer_stats(model: *const PmiModel, count: *mut usize, nbytes: *mut usize) -> PmiStatus {
    guard(|| {
        let (c, b) = nn(model, "model")?.model.initializer_stats();
        write_out(count, "count", c)?;
        write_out(nbytes, "nbytes", b)
    })
}
