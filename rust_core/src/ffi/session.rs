//! `pmi_session_*`: compiling a model and running it.

use super::model::{info_at, InfoC, PmiModel, PmiValueInfo};
use super::status::*;
use super::tensor::PmiTensor;
use crate::api::{Session, SessionOptions, Value};
use crate::error::Error;
use crate::tensor::{DType, Storage, Tensor};
use std::ffi::{c_char, c_void};

/// Options handle.
pub struct PmiSessionOptions {
    opts: SessionOptions,
}

/// Session handle, with the input/output descriptions precomputed for C.
pub struct PmiSession {
    session: Session,
    inputs: Vec<InfoC>,
    outputs: Vec<InfoC>,
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_options_create(out: *mut *mut PmiSessionOptions) -> PmiStatus {
    guard(|| write_out(out, "out", Box::into_raw(Box::new(PmiSessionOptions { opts: SessionOptions::default() }))))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_options_set_intra_op_threads(options: *mut PmiSessionOptions, threads: usize) -> PmiStatus {
    guard(|| {
        let o = nn_mut(options, "options")?;
        if threads > 1024 {
            return Err(Error::InvalidArgument(format!("intra_op_threads {threads} is absurd (at most 1024)")));
        }
        o.opts.intra_op_threads = threads;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_options_release(options: *mut PmiSessionOptions) {
    if !options.is_null() {
        guard_value((), || drop(Box::from_raw(options)))
    }
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_create(
    model: *const PmiModel,
    options: *const PmiSessionOptions,
    out: *mut *mut PmiSession,
) -> PmiStatus {
    guard(|| {
        let m = nn(model, "model")?;
        if out.is_null() {
            return Err(Error::NullPointer("output argument 'out' is NULL".into()));
        }
        let opts = options.as_ref().map(|o| o.opts.clone()).unwrap_or_default();
        let session = Session::new(m.model.clone(), &opts)?;
        let inputs = session.inputs().iter().map(InfoC::new).collect();
        let outputs = session.outputs().iter().map(InfoC::new).collect();
        write_out(out, "out", Box::into_raw(Box::new(PmiSession { session, inputs, outputs })))
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_release(session: *mut PmiSession) {
    if !session.is_null() {
        guard_value((), || drop(Box::from_raw(session)))
    }
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_input_count(session: *const PmiSession, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(session, "session")?.inputs.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_output_count(session: *const PmiSession, out: *mut usize) -> PmiStatus {
    guard(|| write_out(out, "out", nn(session, "session")?.outputs.len()))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_input_info(session: *const PmiSession, index: usize, out: *mut PmiValueInfo) -> PmiStatus {
    guard(|| write_out(out, "out", info_at(&nn(session, "session")?.inputs, index, "input")?))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_output_info(session: *const PmiSession, index: usize, out: *mut PmiValueInfo) -> PmiStatus {
    guard(|| write_out(out, "out", info_at(&nn(session, "session")?.outputs, index, "output")?))
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_input_index(session: *const PmiSession, name: *const c_char, out: *mut usize) -> PmiStatus {
    guard(|| {
        let s = nn(session, "session")?;
        let name = c_str(name, "name")?;
        let i = s.session.input_position(name).ok_or_else(|| {
            let expected: Vec<&str> = s.session.inputs().iter().map(|v| v.name.as_str()).collect();
            Error::InvalidArgument(format!("unknown input name '{name}'; the model's inputs are {expected:?}"))
        })?;
        write_out(out, "out", i)
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_output_index(session: *const PmiSession, name: *const c_char, out: *mut usize) -> PmiStatus {
    guard(|| {
        let s = nn(session, "session")?;
        let name = c_str(name, "name")?;
        let i = s.session.output_position(name).ok_or_else(|| {
            let valid: Vec<&str> = s.session.outputs().iter().map(|v| v.name.as_str()).collect();
            Error::InvalidArgument(format!("unknown output name '{name}'; the model's outputs are {valid:?}"))
        })?;
        write_out(out, "out", i)
    })
}

/// `pmi_input_buffer`: a caller's dense buffer fed by input position.
#[repr(C)]
pub struct PmiInputBuffer {
    index: usize,
    dtype: i32,
    writable: i32,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    nbytes: usize,
}

/// `pmi_output_buffer`: an output handle with its description, filled by the library.
#[repr(C)]
pub struct PmiOutputBuffer {
    tensor: *mut PmiTensor,
    dtype: i32,
    writable: i32,
    shape: *const i64,
    rank: usize,
    data: *mut c_void,
    nbytes: usize,
    aliased_input: i64,
}

/// A tensor over `inputs[i]`'s buffer, without a release callback (the caller keeps it alive).
unsafe fn input_tensor(b: &PmiInputBuffer, i: usize) -> crate::Result<Tensor> {
    let at = |e: Error| e.context(&format!("inputs[{i}] (input index {})", b.index));
    let dtype = DType::from_code(b.dtype).map_err(at)?;
    if dtype == DType::String {
        return Err(at(Error::UnsupportedDtype("STRING inputs have no flat buffer; use pmi_session_run".into())));
    }
    if b.rank > crate::tensor::MAX_RANK {
        return Err(at(Error::LimitExceeded(format!("rank {} exceeds PMI_MAX_RANK ({})", b.rank, crate::tensor::MAX_RANK))));
    }
    if b.rank > 0 && b.shape.is_null() {
        return Err(at(Error::NullPointer(format!("shape is NULL but rank is {}", b.rank))));
    }
    if b.data.is_null() && b.nbytes > 0 {
        return Err(at(Error::NullPointer("data is NULL".into())));
    }
    let dims = if b.rank == 0 { &[][..] } else { std::slice::from_raw_parts(b.shape, b.rank) };
    let mut shape = Vec::with_capacity(b.rank);
    for (axis, &d) in dims.iter().enumerate() {
        shape.push(usize::try_from(d).map_err(|_| at(Error::InvalidArgument(format!("shape[{axis}] is negative ({d})"))))?);
    }
    let storage = Storage::external(b.data as *mut u8, b.nbytes, b.writable != 0, None);
    Tensor::from_storage(dtype, &shape, storage).map_err(at)
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_run_buffers(
    session: *const PmiSession,
    inputs: *const PmiInputBuffer,
    n_inputs: usize,
    output_indices: *const usize,
    n_outputs: usize,
    outputs: *mut PmiOutputBuffer,
) -> PmiStatus {
    guard(|| {
        let s = nn(session, "session")?;
        if n_inputs > 0 && inputs.is_null() {
            return Err(Error::NullPointer("argument 'inputs' is NULL".into()));
        }
        if n_outputs > 0 && outputs.is_null() {
            return Err(Error::NullPointer("argument 'outputs' is NULL".into()));
        }
        let ins = if n_inputs == 0 { &[][..] } else { std::slice::from_raw_parts(inputs, n_inputs) };
        let mut feeds = Vec::with_capacity(n_inputs);
        for (i, b) in ins.iter().enumerate() {
            feeds.push((b.index, Value::Tensor(input_tensor(b, i)?)));
        }
        let selected = if output_indices.is_null() {
            if n_outputs != s.outputs.len() {
                return Err(Error::InvalidArgument(format!(
                    "output_indices is NULL, so n_outputs must be the model's output count ({}), not {n_outputs}",
                    s.outputs.len()
                )));
            }
            None
        } else {
            Some(std::slice::from_raw_parts(output_indices, n_outputs))
        };
        let values = s.session.run_indexed(feeds, selected)?;
        let tensors = output_tensors(values, "pmi_session_run_buffers")?;
        for (j, t) in tensors.into_iter().enumerate() {
            // The output lies in an input's buffer when its data pointer does (the engine never
            // allocates inside a caller's live buffer, so there are no false positives).
            let (data, writable) = match t.data_ptr() {
                Ok(p) => (p as *mut c_void, t.is_writable()),
                Err(_) => (std::ptr::null_mut(), false), // STRING
            };
            let nbytes = t.nbytes();
            let aliased_input = if data.is_null() || nbytes == 0 {
                -1
            } else {
                ins.iter()
                    .position(|b| {
                        let start = b.data as usize;
                        (start..start + b.nbytes).contains(&(data as usize))
                    })
                    .map_or(-1, |i| i as i64)
            };
            let dtype = t.dtype().code();
            let rank = t.rank();
            let handle = PmiTensor::boxed(t);
            outputs.add(j).write(PmiOutputBuffer {
                tensor: handle,
                dtype,
                writable: writable as i32,
                shape: (*handle).dims_ptr(),
                rank,
                data,
                nbytes,
                aliased_input,
            });
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn pmi_session_run(
    session: *const PmiSession,
    input_names: *const *const c_char,
    inputs: *const *const PmiTensor,
    n_inputs: usize,
    output_names: *const *const c_char,
    n_outputs: usize,
    outputs: *mut *mut PmiTensor,
) -> PmiStatus {
    guard(|| {
        let s = nn(session, "session")?;
        if n_inputs > 0 && (input_names.is_null() || inputs.is_null()) {
            return Err(Error::NullPointer("argument 'input_names' or 'inputs' is NULL".into()));
        }
        if n_outputs > 0 && outputs.is_null() {
            return Err(Error::NullPointer("argument 'outputs' is NULL".into()));
        }
        let mut feeds: Vec<(&str, Value)> = Vec::with_capacity(n_inputs);
        for i in 0..n_inputs {
            let name = c_str_at(input_names, i, "input_names")?;
            let t = (*inputs.add(i))
                .as_ref()
                .ok_or_else(|| Error::NullPointer(format!("inputs[{i}] (for input '{name}') is NULL")))?;
            feeds.push((name, Value::Tensor(t.tensor.clone())));
        }
        let names: Option<Vec<&str>> = if output_names.is_null() {
            if n_outputs != s.outputs.len() {
                return Err(Error::InvalidArgument(format!(
                    "output_names is NULL, so n_outputs must be the model's output count ({}), not {n_outputs}",
                    s.outputs.len()
                )));
            }
            None
        } else {
            Some((0..n_outputs).map(|i| c_str_at(output_names, i, "output_names")).collect::<crate::Result<_>>()?)
        };
        let values = s.session.run(&feeds, names.as_deref())?;
        let tensors = output_tensors(values, "pmi_session_run")?;
        for (i, t) in tensors.into_iter().enumerate() {
            *outputs.add(i) = PmiTensor::boxed(t);
        }
        Ok(())
    })
}

/// The run's outputs as tensors, or an error naming the first output that is not one (a
/// sequence or map), for the C function `func`.
fn output_tensors(values: Vec<Value>, func: &str) -> crate::Result<Vec<crate::tensor::Tensor>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Tensor(t) => Ok(t),
            other => Err(Error::UnsupportedDtype(format!(
                "output {i} is a {}, which {func} cannot return as a tensor",
                other.kind()
            ))),
        })
        .collect()
}
