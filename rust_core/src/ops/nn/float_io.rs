//! Float tensors in compute precision: `f32`/`f64` as they are, `float16`/`bfloat16` widened to
//! `f32` on entry and narrowed back on exit.

use crate::error::Result;
use crate::tensor::{DType, Tensor};
use half::{bf16, f16};
use std::borrow::Cow;

/// The tensor in a compute precision (`f32` or `f64`): half types are widened to `f32`.
/// Other dtypes are returned unchanged (the caller rejects them).
pub fn widen(t: &Tensor) -> Result<Cow<'_, Tensor>> {
    Ok(match t.dtype() {
        DType::Float16 => Cow::Owned(Tensor::from_vec(
            t.shape(),
            t.as_slice::<f16>()?.iter().map(|v| v.to_f32()).collect(),
        )?),
        DType::BFloat16 => Cow::Owned(Tensor::from_vec(
            t.shape(),
            t.as_slice::<bf16>()?.iter().map(|v| v.to_f32()).collect(),
        )?),
        _ => Cow::Borrowed(t),
    })
}

/// Convert a compute-precision result back to `dtype` (a no-op unless `dtype` is a half type).
pub fn narrow(t: Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() == dtype {
        return Ok(t);
    }
    match dtype {
        DType::Float16 => {
            let v = t.as_slice::<f32>()?;
            Tensor::build::<f16>(dtype, t.shape(), |o| {
                o.iter_mut()
                    .zip(v)
                    .for_each(|(o, x)| *o = f16::from_f32(*x));
                Ok(())
            })
        }
        DType::BFloat16 => {
            let v = t.as_slice::<f32>()?;
            Tensor::build::<bf16>(dtype, t.shape(), |o| {
                o.iter_mut()
                    .zip(v)
                    .for_each(|(o, x)| *o = bf16::from_f32(*x));
                Ok(())
            })
        }
        DType::Float32 => {
            let v = t.as_slice::<f64>()?;
            Tensor::from_vec(t.shape(), v.iter().map(|x| *x as f32).collect())
        }
        DType::Float64 => {
            let v = t.as_slice::<f32>()?;
            Tensor::from_vec(t.shape(), v.iter().map(|x| *x as f64).collect())
        }
        d => Err(crate::error::Error::Internal(format!(
            "narrow: cannot convert a {} result to {d}",
            t.dtype()
        ))),
    }
}

/// Whether `d` is one of the float types these operators compute (f16, bf16, f32, f64).
pub fn is_compute_float(d: DType) -> bool {
    matches!(
        d,
        DType::Float16 | DType::BFloat16 | DType::Float32 | DType::Float64
    )
}

/// Any float or integer tensor as `f32` values (used for small parameter tensors).
pub fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(match t.dtype() {
        DType::Float32 => t.as_slice::<f32>()?.to_vec(),
        _ => t.to_f64_vec()?.into_iter().map(|v| v as f32).collect(),
    })
}

/// Run `$body` with the type alias `$T` bound to `f32` or `f64` according to `$dtype`
/// (which must already be widened); any other dtype is an `UnsupportedDtype` error naming `$op`.
#[macro_export]
macro_rules! with_float {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DType::Float32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::Float64 => {
                type $T = f64;
                $body
            }
            d => Err($crate::error::Error::UnsupportedDtype(format!(
                "{}: element type {d} is not supported",
                $op
            ))),
        }
    };
}
