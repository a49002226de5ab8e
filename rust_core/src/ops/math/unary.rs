//! Elementwise unary math: Neg, Abs, Sign, Reciprocal, Exp, Log, Sqrt, Floor, Ceil, Round,
//! Erf, Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, IsNaN, IsInf.

use super::broadcast::unary;
use super::dispatch::{Num, Real};
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

pub use crate::kernels::vmath::{erf_f32, erf_f64};

/// `act(x)` for an f32 tensor with the vectorized kernels of [`crate::kernels::vmath`].
pub(crate) fn map_f32_act(pool: &ThreadPool, x: &Tensor, act: crate::kernels::vmath::Act) -> Result<Tensor> {
    let xv = x.as_slice::<f32>()?;
    Tensor::build_uninit::<f32>(DType::Float32, x.shape(), |o| {
        super::broadcast::par_chunks(pool, o, super::broadcast::PAR_MIN, |s, chunk| {
            let n = chunk.len();
            crate::kernels::vmath::map(act, &xv[s..s + n], chunk);
        });
        Ok(())
    })
}

/// Apply a float map to any float tensor: f32/f16/bf16 compute in f32, f64 in f64.
pub(super) fn map_real<T: Real>(
    pool: &ThreadPool,
    x: &Tensor,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<Tensor> {
    match x.dtype() {
        DType::Float64 => unary::<f64, f64>(pool, x, DType::Float64, f64f),
        DType::Float32 => unary::<f32, f32>(pool, x, DType::Float32, f32f),
        d => unary::<T, T>(pool, x, d, |v| T::from_f32(f32f(v.to_f32()))),
    }
}

/// `real_map!(pool, x, label, [params...], |v| expr)`: map a float tensor with `expr` written
/// once for f32 and f64 (each listed f32/f64 parameter is converted to the compute type).
macro_rules! real_map {
    ($pool:expr, $x:expr, $label:expr, [$($p:ident),*], |$v:ident| $e:expr) => {
        with_float!($x.dtype(), T => $crate::ops::math::unary::map_real::<T>(
                $pool,
                $x,
                |$v: f32| { $(#[allow(unused_variables)] let $p = $p as f32;)* $e },
                |$v: f64| { $(#[allow(unused_variables)] let $p = $p as f64;)* $e },
            ),
            _ => Err(dtype_err!("{}: {} tensors are not supported (float types only)", $label, $x.dtype())))
    };
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Neg,
    Abs,
    Sign,
    Reciprocal,
    Exp,
    Log,
    Sqrt,
    Floor,
    Ceil,
    Round,
    Erf,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
}

struct Unary {
    kind: Kind,
    label: String,
}

macro_rules! builders {
    ($($f:ident => $k:ident),* $(,)?) => {
        $(pub fn $f(ctx: &BuildContext) -> Result<Box<dyn Op>> {
            Ok(Box::new(Unary { kind: Kind::$k, label: ctx.node.describe() }))
        })*
    };
}
builders!(
    build_neg => Neg, build_abs => Abs, build_sign => Sign, build_reciprocal => Reciprocal,
    build_exp => Exp, build_log => Log, build_sqrt => Sqrt, build_floor => Floor, build_ceil => Ceil,
    build_round => Round, build_erf => Erf, build_sin => Sin, build_cos => Cos, build_tan => Tan,
    build_asin => Asin, build_acos => Acos, build_atan => Atan, build_sinh => Sinh,
    build_cosh => Cosh, build_asinh => Asinh, build_acosh => Acosh, build_atanh => Atanh,
);

fn int_unary<T: Num>(pool: &ThreadPool, kind: Kind, x: &Tensor, label: &str) -> Result<Tensor> {
    let d = x.dtype();
    match kind {
        Kind::Neg => unary::<T, T>(pool, x, d, |v| v.neg()),
        Kind::Abs => unary::<T, T>(pool, x, d, |v| v.abs()),
        Kind::Sign => unary::<T, T>(pool, x, d, |v| {
            if v > T::ZERO {
                T::ONE
            } else if v < T::ZERO {
                T::ONE.neg()
            } else {
                T::ZERO
            }
        }),
        _ => Err(dtype_err!("{label}: {kind:?} does not support {d} tensors")),
    }
}

fn float_unary(pool: &ThreadPool, kind: Kind, x: &Tensor, label: &str) -> Result<Tensor> {
    use crate::kernels::vmath::Act;
    if x.dtype() == DType::Float32 {
        match kind {
            Kind::Exp => return map_f32_act(pool, x, Act::Exp),
            Kind::Erf => return map_f32_act(pool, x, Act::Erf),
            Kind::Sin | Kind::Cos => {
                let xv = x.as_slice::<f32>()?;
                let cos = kind == Kind::Cos;
                return Tensor::build_uninit::<f32>(DType::Float32, x.shape(), |o| {
                    super::broadcast::par_chunks(pool, o, super::broadcast::PAR_MIN, |s, chunk| {
                        let n = chunk.len();
                        crate::kernels::vmath::sin_cos_f32(&xv[s..s + n], chunk, cos);
                    });
                    Ok(())
                });
            }
            _ => {}
        }
    }
    match kind {
        Kind::Neg => real_map!(pool, x, label, [], |v| -v),
        Kind::Abs => real_map!(pool, x, label, [], |v| v.abs()),
        Kind::Sign => real_map!(pool, x, label, [], |v| if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else if v.is_nan() {
            v
        } else {
            0.0
        }),
        Kind::Reciprocal => real_map!(pool, x, label, [], |v| 1.0 / v),
        Kind::Exp => real_map!(pool, x, label, [], |v| v.exp()),
        Kind::Log => real_map!(pool, x, label, [], |v| v.ln()),
        Kind::Sqrt => real_map!(pool, x, label, [], |v| v.sqrt()),
        Kind::Floor => real_map!(pool, x, label, [], |v| v.floor()),
        Kind::Ceil => real_map!(pool, x, label, [], |v| v.ceil()),
        Kind::Round => with_float!(x.dtype(), T => map_real::<T>(pool, x, f32::round_ties_even, f64::round_ties_even),
            _ => Err(dtype_err!("{label}: {} tensors are not supported", x.dtype()))),
        Kind::Erf => with_float!(x.dtype(), T => map_real::<T>(pool, x, erf_f32, erf_f64),
            _ => Err(dtype_err!("{label}: {} tensors are not supported", x.dtype()))),
        Kind::Sin => real_map!(pool, x, label, [], |v| v.sin()),
        Kind::Cos => real_map!(pool, x, label, [], |v| v.cos()),
        Kind::Tan => real_map!(pool, x, label, [], |v| v.tan()),
        Kind::Asin => real_map!(pool, x, label, [], |v| v.asin()),
        Kind::Acos => real_map!(pool, x, label, [], |v| v.acos()),
        Kind::Atan => real_map!(pool, x, label, [], |v| v.atan()),
        Kind::Sinh => real_map!(pool, x, label, [], |v| v.sinh()),
        Kind::Cosh => real_map!(pool, x, label, [], |v| v.cosh()),
        Kind::Asinh => real_map!(pool, x, label, [], |v| v.asinh()),
        Kind::Acosh => real_map!(pool, x, label, [], |v| v.acosh()),
        Kind::Atanh => real_map!(pool, x, label, [], |v| v.atanh()),
    }
}

impl Op for Unary {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let out = if x.dtype().is_float() {
            float_unary(ctx.pool, self.kind, x, &self.label)?
        } else {
            with_int!(x.dtype(), T => int_unary::<T>(ctx.pool, self.kind, x, &self.label)?,
                _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())))
        };
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// IsNaN, IsInf

struct IsNaN {
    label: String,
}

pub fn build_isnan(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(IsNaN { label: ctx.node.describe() }))
}

impl Op for IsNaN {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let out = with_float!(x.dtype(), T => unary::<T, u8>(ctx.pool, x, DType::Bool, |v| v.is_nan() as u8)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        Ok(vec![out.into()])
    }
}

struct IsInf {
    pos: bool,
    neg: bool,
    label: String,
}

pub fn build_isinf(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(IsInf {
        pos: ctx.attr_i("detect_positive", 1)? != 0,
        neg: ctx.attr_i("detect_negative", 1)? != 0,
        label: ctx.node.describe(),
    }))
}

impl Op for IsInf {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let (pos, neg) = (self.pos, self.neg);
        let out = with_float!(x.dtype(), T => unary::<T, u8>(ctx.pool, x, DType::Bool, |v| {
                let f = v.to_f64();
                ((pos && f == f64::INFINITY) || (neg && f == f64::NEG_INFINITY)) as u8
            })?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::test_util::*;

    #[test]
    fn basic_maps() {
        let x = t_f32(&[4], &[-1.5, 0.0, 2.5, 4.0]);
        assert_eq!(f32s(&run1("Neg", &[], &[x.clone()])), vec![1.5, -0.0, -2.5, -4.0]);
        assert_eq!(f32s(&run1("Abs", &[], &[x.clone()])), vec![1.5, 0.0, 2.5, 4.0]);
        assert_eq!(f32s(&run1("Sign", &[], &[x.clone()])), vec![-1.0, 0.0, 1.0, 1.0]);
        assert_eq!(f32s(&run1("Floor", &[], &[x.clone()])), vec![-2.0, 0.0, 2.0, 4.0]);
        assert_eq!(f32s(&run1("Ceil", &[], &[x.clone()])), vec![-1.0, 0.0, 3.0, 4.0]);
        assert_eq!(f32s(&run1("Sqrt", &[], &[t_f32(&[2], &[4.0, 9.0])])), vec![2.0, 3.0]);
        let r = t_f32(&[8], &[0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6]);
        assert_eq!(f32s(&run1("Round", &[], &[r])), vec![0.0, 2.0, 2.0, -0.0, -2.0, 2.0, 3.0, -3.0]);
        let i = Tensor::from_slice(&[3], &[-3i64, 0, 5]).unwrap();
        assert_eq!(run1("Abs", &[], &[i.clone()]).as_slice::<i64>().unwrap(), &[3, 0, 5]);
        assert_eq!(run1("Neg", &[], &[i.clone()]).as_slice::<i64>().unwrap(), &[3, 0, -5]);
        assert_eq!(run1("Sign", &[], &[i.clone()]).as_slice::<i64>().unwrap(), &[-1, 0, 1]);
        assert!(run("Exp", &[], &[i]).is_err());
    }

    #[test]
    fn erf_matches_reference() {
        // The default ISA's path (tests forcing other levels wait: the scalar one is 1 ulp off).
        let _isa = crate::kernels::simd::test_util::ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // math.erf values.
        let x = t_f32(&[5], &[-3.0, -0.5, 0.0, 0.3, 1.2]);
        let want = [-0.9999779095030014f32, -0.5204998778130465, 0.0, 0.3286267594591915, 0.9103139782296353];
        assert_close(&f32s(&run1("Erf", &[], &[x])), &want, 1e-7);
    }

    #[test]
    fn half_types_compute_in_f32() {
        // The default ISA's path (tests forcing other levels wait).
        let _isa = crate::kernels::simd::test_util::ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let x = Tensor::from_slice(&[2], &[half::f16::from_f32(1.0), half::f16::from_f32(-2.0)]).unwrap();
        let y = run1("Exp", &[], &[x]);
        let v = y.as_slice::<half::f16>().unwrap();
        assert_eq!(v[0], half::f16::from_f32(std::f32::consts::E));
        assert_eq!(y.dtype(), DType::Float16);
    }

    #[test]
    fn isnan_isinf() {
        let x = t_f32(&[4], &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        assert_eq!(run1("IsNaN", &[], &[x.clone()]).as_slice::<u8>().unwrap(), &[1, 0, 0, 0]);
        assert_eq!(run1("IsInf", &[], &[x.clone()]).as_slice::<u8>().unwrap(), &[0, 1, 1, 0]);
        assert_eq!(run1("IsInf", &[("detect_negative", int(0))], &[x]).as_slice::<u8>().unwrap(), &[0, 1, 0, 0]);
    }
}
