//! Activations: Relu, Sigmoid, Tanh, HardSigmoid, HardSwish, LeakyRelu, PRelu, Elu, Selu, Celu,
//! Softplus, Softsign, Mish, ThresholdedRelu, Gelu, Shrink, Swish, Clip.

use super::broadcast::{binary, unary};
use super::dispatch::Num;
use super::unary::{erf_f32, erf_f64};
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Relu,
    Sigmoid,
    Tanh,
    HardSigmoid,
    LeakyRelu,
    Elu,
    Selu,
    Celu,
    Softplus,
    Softsign,
    Mish,
    ThresholdedRelu,
    GeluErf,
    GeluTanh,
    Shrink,
    Swish,
}

/// An activation with its parameters (alpha, beta, gamma as the op defines them).
struct Activation {
    kind: Kind,
    alpha: f32,
    beta: f32,
    gamma: f32,
    label: String,
}

fn make(ctx: &BuildContext, kind: Kind, alpha: f32, beta: f32, gamma: f32) -> Result<Box<dyn Op>> {
    Ok(Box::new(Activation { kind, alpha, beta, gamma, label: ctx.node.describe() }))
}

pub fn build_relu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Relu, 0.0, 0.0, 0.0)
}
pub fn build_sigmoid(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Sigmoid, 0.0, 0.0, 0.0)
}
pub fn build_tanh(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Tanh, 0.0, 0.0, 0.0)
}
pub fn build_hard_sigmoid(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::HardSigmoid, ctx.attr_f("alpha", 0.2)?, ctx.attr_f("beta", 0.5)?, 0.0)
}
pub fn build_hard_swish(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    // HardSwish(x) = x * HardSigmoid(x) with alpha = 1/6, beta = 0.5.
    make(ctx, Kind::HardSigmoid, 1.0 / 6.0, 0.5, 1.0)
}
pub fn build_leaky_relu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::LeakyRelu, ctx.attr_f("alpha", 0.01)?, 0.0, 0.0)
}
pub fn build_elu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Elu, ctx.attr_f("alpha", 1.0)?, 0.0, 0.0)
}
pub fn build_selu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let alpha = ctx.attr_f("alpha", 1.673_263_192_176_818_8)?;
    let gamma = ctx.attr_f("gamma", 1.050_701_022_148_132_3)?;
    make(ctx, Kind::Selu, alpha, 0.0, gamma)
}
pub fn build_celu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let alpha = ctx.attr_f("alpha", 1.0)?;
    if alpha == 0.0 {
        return Err(ctx.invalid("attribute 'alpha' must not be 0"));
    }
    make(ctx, Kind::Celu, alpha, 0.0, 0.0)
}
pub fn build_softplus(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Softplus, 0.0, 0.0, 0.0)
}
pub fn build_softsign(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Softsign, 0.0, 0.0, 0.0)
}
pub fn build_mish(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Mish, 0.0, 0.0, 0.0)
}
pub fn build_thresholded_relu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::ThresholdedRelu, ctx.attr_f("alpha", 1.0)?, 0.0, 0.0)
}
pub fn build_gelu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let kind = match ctx.attr_s("approximate", "none")?.as_str() {
        "none" => Kind::GeluErf,
        "tanh" => Kind::GeluTanh,
        other => return Err(ctx.invalid(format!("attribute 'approximate' must be 'none' or 'tanh', got '{other}'"))),
    };
    make(ctx, kind, 0.0, 0.0, 0.0)
}
pub fn build_shrink(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Shrink, ctx.attr_f("lambd", 0.5)?, ctx.attr_f("bias", 0.0)?, 0.0)
}
pub fn build_swish(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    make(ctx, Kind::Swish, ctx.attr_f("alpha", 1.0)?, 0.0, 0.0)
}

fn int_activation<T: Num>(pool: &ThreadPool, a: &Activation, x: &Tensor) -> Result<Tensor> {
    let d = x.dtype();
    match a.kind {
        Kind::Relu => unary::<T, T>(pool, x, d, |v| if v > T::ZERO { v } else { T::ZERO }),
        Kind::Shrink => {
            let (l, b) = (a.alpha as f64, a.beta as f64);
            unary::<T, T>(pool, x, d, |v| {
                let f = v.to_f64();
                if f < -l {
                    T::from_f64(f + b)
                } else if f > l {
                    T::from_f64(f - b)
                } else {
                    T::ZERO
                }
            })
        }
        k => Err(dtype_err!("{}: {k:?} does not support {d} tensors", a.label)),
    }
}

/// The vectorized f32 kernel for an activation, when there is one.
fn vector_act(a: &Activation) -> Option<crate::kernels::vmath::Act> {
    use crate::kernels::vmath::Act;
    Some(match a.kind {
        Kind::Relu => Act::Relu,
        Kind::Sigmoid => Act::Sigmoid,
        Kind::Tanh => Act::Tanh,
        Kind::HardSigmoid if a.gamma == 1.0 && a.alpha == 1.0 / 6.0 && a.beta == 0.5 => Act::HardSwish,
        Kind::HardSigmoid if a.gamma != 1.0 => Act::HardSigmoid(a.alpha, a.beta),
        Kind::LeakyRelu => Act::LeakyRelu(a.alpha),
        Kind::GeluErf => Act::GeluErf,
        Kind::GeluTanh => Act::GeluTanh,
        Kind::Swish => Act::Swish(a.alpha),
        _ => return None,
    })
}

fn float_activation(pool: &ThreadPool, a: &Activation, x: &Tensor) -> Result<Tensor> {
    let (alpha, beta, gamma) = (a.alpha, a.beta, a.gamma);
    let label = &a.label;
    if x.dtype() == DType::Float32 {
        if let Some(act) = vector_act(a) {
            return super::unary::map_f32_act(pool, x, act);
        }
    }
    match a.kind {
        Kind::Relu => real_map!(pool, x, label, [], |v| if v > 0.0 { v } else if v.is_nan() { v } else { 0.0 }),
        Kind::Sigmoid => real_map!(pool, x, label, [], |v| 1.0 / (1.0 + (-v).exp())),
        Kind::Tanh => real_map!(pool, x, label, [], |v| v.tanh()),
        Kind::HardSigmoid => real_map!(pool, x, label, [alpha, beta, gamma], |v| {
            let h = (alpha * v + beta).max(0.0).min(1.0);
            // gamma = 1 selects HardSwish: x * HardSigmoid(x).
            if gamma == 1.0 {
                v * h
            } else {
                h
            }
        }),
        Kind::LeakyRelu => real_map!(pool, x, label, [alpha], |v| if v < 0.0 { alpha * v } else { v }),
        Kind::Elu => real_map!(pool, x, label, [alpha], |v| if v < 0.0 { alpha * (v.exp() - 1.0) } else { v }),
        Kind::Selu => real_map!(pool, x, label, [alpha, gamma], |v| if v > 0.0 {
            gamma * v
        } else {
            gamma * (alpha * v.exp() - alpha)
        }),
        Kind::Celu => real_map!(pool, x, label, [alpha], |v| v.max(0.0) + (alpha * ((v / alpha).exp() - 1.0)).min(0.0)),
        Kind::Softplus => real_map!(pool, x, label, [], |v| if v > 0.0 { v + (-v).exp().ln_1p() } else { v.exp().ln_1p() }),
        Kind::Softsign => real_map!(pool, x, label, [], |v| v / (1.0 + v.abs())),
        Kind::Mish => real_map!(pool, x, label, [], |v| {
            let sp = if v > 0.0 { v + (-v).exp().ln_1p() } else { v.exp().ln_1p() };
            v * sp.tanh()
        }),
        Kind::ThresholdedRelu => real_map!(pool, x, label, [alpha], |v| if v > alpha { v } else { 0.0 }),
        Kind::GeluErf => with_float!(x.dtype(), T => super::unary::map_real::<T>(pool, x,
                |v: f32| 0.5 * v * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2)),
                |v: f64| 0.5 * v * (1.0 + erf_f64(v * std::f64::consts::FRAC_1_SQRT_2))),
            _ => Err(dtype_err!("{label}: {} tensors are not supported", x.dtype()))),
        Kind::GeluTanh => real_map!(pool, x, label, [], |v| {
            // sqrt(2 / pi)
            let c = 0.797_884_560_802_865_4;
            0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
        }),
        Kind::Shrink => real_map!(pool, x, label, [alpha, beta], |v| if v < -alpha {
            v + beta
        } else if v > alpha {
            v - beta
        } else {
            0.0
        }),
        Kind::Swish => real_map!(pool, x, label, [alpha], |v| v / (1.0 + (-alpha * v).exp())),
    }
}

impl Op for Activation {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let out = if x.dtype().is_float() {
            float_activation(ctx.pool, self, x)?
        } else {
            with_int!(x.dtype(), T => int_activation::<T>(ctx.pool, self, x)?,
                _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())))
        };
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// PRelu

struct PRelu {
    /// Opset < 7: a 1-D slope of length C applies along axis 1 (no numpy broadcasting yet).
    channel_slope: bool,
    label: String,
}

pub fn build_prelu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(PRelu { channel_slope: ctx.opset < 7, label: ctx.node.describe() }))
}

impl Op for PRelu {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (x, s) = super::arith::same_dtype_pair(inputs, &self.label)?;
        let reshaped;
        let s = if self.channel_slope && s.rank() == 1 && x.rank() >= 2 && s.len() == x.shape()[1] && s.len() > 1 {
            let mut shape = vec![1; x.rank() - 1];
            shape[0] = s.len();
            reshaped = s.reshaped(&shape)?;
            &reshaped
        } else {
            s
        };
        let out = with_numeric!(x.dtype(), T => binary::<T, T, T>(ctx.pool, x, s, x.dtype(),
                |v, k| if v < T::ZERO { v.mul(k) } else { v })?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        if out.shape() != x.shape() {
            return Err(shape_err!(
                "{}: slope of shape {:?} does not broadcast to the input's shape {:?}",
                self.label,
                s.shape(),
                x.shape()
            ));
        }
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

struct SwiGlu {
    alpha: f32,
    label: String,
}

pub fn build_swiglu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SwiGlu { alpha: ctx.attr_f("alpha", 1.0)?, label: ctx.node.describe() }))
}

fn swiglu<T: super::dispatch::Real>(pool: &ThreadPool, a: &Tensor, b: &Tensor, alpha: f32) -> Result<Tensor> {
    // Rounded to T after the gate and after each product, as the reference.
    if T::DTYPE == crate::tensor::DType::Float64 {
        let al = alpha as f64;
        return binary::<T, T, T>(pool, a, b, a.dtype(), |x, y| {
            let x = x.to_f64();
            T::from_f64(x * (1.0 / (1.0 + (-al * x).exp())) * y.to_f64())
        });
    }
    binary::<T, T, T>(pool, a, b, a.dtype(), |x, y| {
        let xf = x.to_f32();
        let gate = T::from_f32(1.0 / (1.0 + (-alpha * xf).exp())).to_f32();
        let sw = T::from_f32(xf * gate).to_f32();
        T::from_f32(sw * y.to_f32())
    })
}

impl Op for SwiGlu {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = super::arith::same_dtype_pair(inputs, &self.label)?;
        if a.shape() != b.shape() {
            return Err(shape_err!("{}: A {:?} and B {:?} must have the same shape", self.label, a.shape(), b.shape()));
        }
        let out = with_float!(a.dtype(), T => swiglu::<T>(ctx.pool, a, b, self.alpha)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, a.dtype())));
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Clip

struct Clip {
    /// Opset < 11: bounds from attributes.
    attr_bounds: Option<(f32, f32)>,
    label: String,
}

pub fn build_clip(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_bounds = if ctx.opset < 11 {
        Some((ctx.attr_f("min", f32::NEG_INFINITY)?, ctx.attr_f("max", f32::INFINITY)?))
    } else {
        None
    };
    Ok(Box::new(Clip { attr_bounds, label: ctx.node.describe() }))
}

fn bound<T: Num>(t: Option<&Tensor>, default: T, what: &str, label: &str) -> Result<T> {
    match t {
        None => Ok(default),
        Some(t) => {
            let v = t.as_slice::<T>().map_err(|e| e.context(format!("{label}: '{what}'")))?;
            match v {
                [x] => Ok(*x),
                _ => Err(shape_err!("{label}: '{what}' must be a scalar, got shape {:?}", t.shape())),
            }
        }
    }
}

fn clip<T: Num>(pool: &ThreadPool, c: &Clip, inputs: &[Option<&Value>], x: &Tensor) -> Result<Tensor> {
    let (lo, hi) = match c.attr_bounds {
        Some((lo, hi)) => (T::from_f64(lo as f64), T::from_f64(hi as f64)),
        None => (
            bound::<T>(opt_tensor_in(inputs, 1, &c.label)?, T::MIN_VAL, "min", &c.label)?,
            bound::<T>(opt_tensor_in(inputs, 2, &c.label)?, T::MAX_VAL, "max", &c.label)?,
        ),
    };
    unary::<T, T>(pool, x, x.dtype(), |v| {
        let v = if v < lo { lo } else { v };
        if v > hi {
            hi
        } else {
            v
        }
    })
}

impl Op for Clip {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let out = with_numeric!(x.dtype(), T => clip::<T>(ctx.pool, self, inputs, x)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::test_util::*;

    #[test]
    fn activations() {
        let x = t_f32(&[5], &[-2.0, -0.5, 0.0, 0.5, 3.0]);
        assert_eq!(f32s(&run1("Relu", &[], &[x.clone()])), vec![0.0, 0.0, 0.0, 0.5, 3.0]);
        assert_close(
            &f32s(&run1("Sigmoid", &[], &[x.clone()])),
            &[0.11920292, 0.37754068, 0.5, 0.62245935, 0.95257413],
            1e-7,
        );
        assert_eq!(f32s(&run1("LeakyRelu", &[("alpha", float(0.1))], &[x.clone()])), vec![-0.2, -0.05, 0.0, 0.5, 3.0]);
        assert_close(
            &f32s(&run1("HardSigmoid", &[], &[x.clone()])),
            &[0.1, 0.4, 0.5, 0.6, 1.0],
            1e-7,
        );
        assert_close(
            &f32s(&run1("HardSwish", &[], &[x.clone()])),
            &[-0.33333334, -0.20833333, 0.0, 0.29166666, 3.0],
            1e-7,
        );
        assert_close(&f32s(&run1("Elu", &[], &[x.clone()])), &[-0.86466473, -0.39346933, 0.0, 0.5, 3.0], 1e-7);
        assert_close(&f32s(&run1("Softplus", &[], &[x.clone()])), &[0.12692805, 0.47407699, 0.6931472, 0.974077, 3.0485873], 1e-6);
        assert_close(&f32s(&run1("Softsign", &[], &[x.clone()])), &[-0.6666667, -0.33333334, 0.0, 0.33333334, 0.75], 1e-7);
        assert_close(&f32s(&run1("Mish", &[], &[x.clone()])), &[-0.2525015, -0.22074378, 0.0, 0.3752452, 2.986535], 1e-6);
        assert_close(&f32s(&run1("Gelu", &[], &[x.clone()])), &[-0.04550026, -0.15426877, 0.0, 0.34573123, 2.99595031], 1e-6);
        assert_close(
            &f32s(&run1("Gelu", &[("approximate", string("tanh"))], &[x.clone()])),
            &[-0.04540231, -0.15428599, 0.0, 0.34571401, 2.99636261],
            1e-6,
        );
        assert_eq!(f32s(&run1("ThresholdedRelu", &[("alpha", float(0.4))], &[x.clone()])), vec![0.0, 0.0, 0.0, 0.5, 3.0]);
        assert_eq!(f32s(&run1("Shrink", &[("bias", float(1.0))], &[x.clone()])), vec![-1.0, 0.0, 0.0, 0.0, 2.0]);
        assert!(run("Gelu", &[("approximate", string("fast"))], &[x]).is_err());
        let i = Tensor::from_slice(&[3], &[-3i32, 0, 4]).unwrap();
        assert_eq!(run1("Relu", &[], &[i]).as_slice::<i32>().unwrap(), &[0, 0, 4]);
    }

    #[test]
    fn prelu_broadcasts_slope() {
        let x = t_f32(&[2, 2], &[-1.0, 2.0, -3.0, 4.0]);
        let s = t_f32(&[2], &[0.1, 0.2]);
        assert_close(&f32s(&run1("PRelu", &[], &[x, s])), &[-0.1, 2.0, -0.3, 4.0], 1e-7);
    }

    #[test]
    fn prelu_opset6_channel_slope_and_swiglu() {
        let x = t_f32(&[1, 2, 2], &[-1.0, 2.0, -3.0, 4.0]);
        let s = t_f32(&[2], &[0.1, 0.2]);
        let y = run_full("PRelu", 6, &[], &[Some(x), Some(s)]).unwrap().remove(0).into_tensor().unwrap();
        assert_close(&f32s(&y), &[-0.1, 2.0, -0.6, 4.0], 1e-7);
        let a = t_f32(&[2], &[1.0, -2.0]);
        let b = t_f32(&[2], &[2.0, 3.0]);
        // a * sigmoid(a) * b
        assert_close(&f32s(&run1("SwiGLU", &[], &[a, b])), &[1.4621172, -0.71521753], 1e-6);
    }

    #[test]
    fn clip_attrs_and_inputs() {
        let x = t_f32(&[4], &[-2.0, 0.5, 3.0, f32::NAN]);
        let old = run_full("Clip", 6, &[("min", float(0.0)), ("max", float(1.0))], &[Some(x.clone())]).unwrap();
        assert_close(&f32s(old[0].as_tensor().unwrap()), &[0.0, 0.5, 1.0, f32::NAN], 0.0);
        let lo = t_f32(&[], &[-1.0]);
        let new = run_full("Clip", 13, &[], &[Some(x.clone()), Some(lo), None]).unwrap();
        assert_close(&f32s(new[0].as_tensor().unwrap()), &[-1.0, 0.5, 3.0, f32::NAN], 0.0);
        let i = Tensor::from_slice(&[3], &[-5i64, 5, 50]).unwrap();
        let hi = Tensor::from_slice(&[], &[10i64]).unwrap();
        let r = run_full("Clip", 13, &[], &[Some(i), None, Some(hi)]).unwrap();
        assert_eq!(r[0].as_tensor().unwrap().as_slice::<i64>().unwrap(), &[-5, 5, 10]);
    }
}
