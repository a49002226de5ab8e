//! `pmi_session_*`: compiling a model and running it.

use super::model::{info_at, InfoC, PmiModel, PmiValueInfo};
use super::status::*;
use super::tensor::PmiTensor;
use crate::api::{Session, SessionOptions, Value};
use crate::error::Error;
use std::ffi::c_char;

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
            let name = c_str(*input_names.add(i), &format!("input_names[{i}]"))?;
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
            Some((0..n_outputs).map(|i| c_str(*output_names.add(i), &format!("output_names[{i}]"))).collect::<crate::Result<_>>()?)
        };
        let values = s.session.run(&feeds, names.as_deref())?;
        let mut tensors = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            match v {
                Value::Tensor(t) => tensors.push(t),
                other => {
                    return Err(Error::UnsupportedDtype(format!(
                        "output {i} is a {}, which pmi_session_run cannot return as a tensor",
                        other.kind()
                    )))
                }
            }
        }
        for (i, t) in tensors.into_iter().enumerate() {
            *outputs.add(i) = PmiTensor::boxed(t);
        }
        Ok(())
    })
}
