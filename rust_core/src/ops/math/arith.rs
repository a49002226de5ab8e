//! Binary arithmetic: Add, Sub, Mul, Div, Pow, Mod (numpy broadcasting, every numeric dtype).

use super::broadcast::binary;
use super::dispatch::Num;
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

struct Arith {
    kind: Kind,
    label: String,
}

fn build(ctx: &BuildContext, kind: Kind) -> Result<Box<dyn Op>> {
    Ok(Box::new(Arith { kind, label: ctx.node.describe() }))
}

pub fn build_add(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Add)
}
pub fn build_sub(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Sub)
}
pub fn build_mul(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Mul)
}
pub fn build_div(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Div)
}

/// Both inputs of a binary op, checked to share one dtype.
pub(super) fn same_dtype_pair<'a>(inputs: &[Option<&'a Value>], label: &str) -> Result<(&'a Tensor, &'a Tensor)> {
    let a = tensor_in(inputs, 0, label)?;
    let b = tensor_in(inputs, 1, label)?;
    if a.dtype() != b.dtype() {
        return Err(dtype_err!("{label}: inputs have different element types ({} and {})", a.dtype(), b.dtype()));
    }
    Ok((a, b))
}

fn arith<T: Num>(pool: &ThreadPool, kind: Kind, a: &Tensor, b: &Tensor, label: &str) -> Result<Tensor> {
    let d = a.dtype();
    match kind {
        Kind::Add => binary::<T, T, T>(pool, a, b, d, |x, y| x.add(y)),
        Kind::Sub => binary::<T, T, T>(pool, a, b, d, |x, y| x.sub(y)),
        Kind::Mul => binary::<T, T, T>(pool, a, b, d, |x, y| x.mul(y)),
        Kind::Div => {
            if !T::IS_FLOAT && b.as_slice::<T>()?.iter().any(|v| *v == T::ZERO) {
                return Err(runtime_err!("{label}: integer division by zero (input 1 holds a 0)"));
            }
            binary::<T, T, T>(pool, a, b, d, |x, y| x.div(y))
        }
    }
}

impl Op for Arith {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        let out = with_numeric!(a.dtype(), T => arith::<T>(ctx.pool, self.kind, a, b, &self.label)?,
            _ => return Err(dtype_err!("{}: {:?} does not support {} tensors", self.label, self.kind, a.dtype())));
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Pow

struct Pow {
    label: String,
}

pub fn build_pow(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Pow { label: ctx.node.describe() }))
}

/// Integer power by squaring, wrapping; negative exponents give 1/x^n truncated.
fn ipow(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 => if exp % 2 == 0 { 1 } else { -1 },
            _ => 0,
        };
    }
    let (mut r, mut b, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    r
}

fn pow_float<T: Num>(pool: &ThreadPool, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = a.dtype();
    if b.dtype() == DType::Float32 && d == DType::Float32 {
        // Common exponents get exact, fast forms.
        if b.len() == 1 {
            let e = b.as_slice::<f32>()?[0];
            if e == 2.0 {
                return binary::<f32, f32, f32>(pool, a, b, d, |x, _| x * x);
            } else if e == 3.0 {
                return binary::<f32, f32, f32>(pool, a, b, d, |x, _| x * x * x);
            } else if e == 1.0 {
                return binary::<f32, f32, f32>(pool, a, b, d, |x, _| x);
            } else if e == 0.5 {
                return binary::<f32, f32, f32>(pool, a, b, d, |x, _| x.sqrt());
            }
        }
        return binary::<f32, f32, f32>(pool, a, b, d, |x, y| x.powf(y));
    }
    if b.dtype() == d {
        return binary::<T, T, T>(pool, a, b, d, |x, y| T::from_f64(x.to_f64().powf(y.to_f64())));
    }
    // Mixed types: the exponent is read as f64 (numpy promotes to double, then casts back).
    let e = exponent_as_f64(b)?;
    binary::<T, f64, T>(pool, a, &e, d, |x, y| T::from_f64(x.to_f64().powf(y)))
}

fn exponent_as_f64(b: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(b.shape(), b.to_f64_vec()?)
}

fn pow_int<T: Num>(pool: &ThreadPool, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = a.dtype();
    if b.dtype().is_int() {
        let e = Tensor::from_vec(b.shape(), b.to_i64_vec()?)?;
        // Integer exponents: exact integer power, wrapped to the base type.
        binary::<T, i64, T>(pool, a, &e, d, |x, y| T::from_i64(ipow(x.to_f64() as i64, y)))
    } else {
        let e = exponent_as_f64(b)?;
        binary::<T, f64, T>(pool, a, &e, d, |x, y| T::from_f64(x.to_f64().powf(y)))
    }
}

impl Op for Pow {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let a = tensor_in(inputs, 0, &self.label)?;
        let b = tensor_in(inputs, 1, &self.label)?;
        let bad = || dtype_err!("{}: Pow does not support {} ^ {}", self.label, a.dtype(), b.dtype());
        if !(b.dtype().is_int() || matches!(b.dtype(), DType::Float32 | DType::Float64 | DType::Float16 | DType::BFloat16)) {
            return Err(bad());
        }
        let out = with_float!(a.dtype(), T => pow_float::<T>(ctx.pool, a, b)?,
            _ => with_int!(a.dtype(), T => pow_int::<T>(ctx.pool, a, b)?, _ => return Err(bad())));
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Mod

struct Mod {
    fmod: bool,
    label: String,
}

pub fn build_mod(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let fmod = match ctx.attr_i("fmod", 0)? {
        0 => false,
        1 => true,
        v => return Err(ctx.invalid(format!("attribute 'fmod' must be 0 or 1, got {v}"))),
    };
    Ok(Box::new(Mod { fmod, label: ctx.node.describe() }))
}

/// numpy's floor-mod for floats (npy_divmod): the result takes the divisor's sign.
#[inline]
pub(super) fn py_fmod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if b == 0.0 {
        return m;
    }
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        0f64.copysign(b)
    }
}

fn mod_typed<T: Num>(pool: &ThreadPool, a: &Tensor, b: &Tensor, fmod: bool, label: &str) -> Result<Tensor> {
    let d = a.dtype();
    if T::IS_FLOAT {
        if fmod {
            return binary::<T, T, T>(pool, a, b, d, |x, y| T::from_f64(x.to_f64() % y.to_f64()));
        }
        return binary::<T, T, T>(pool, a, b, d, |x, y| T::from_f64(py_fmod(x.to_f64(), y.to_f64())));
    }
    if b.as_slice::<T>()?.iter().any(|v| *v == T::ZERO) {
        return Err(runtime_err!("{label}: integer modulo by zero (input 1 holds a 0)"));
    }
    // Integer remainder, via the truncating remainder r = x - trunc(x/y)*y.
    if fmod {
        binary::<T, T, T>(pool, a, b, d, |x, y| x.sub(x.div(y).mul(y)))
    } else {
        binary::<T, T, T>(pool, a, b, d, |x, y| {
            let r = x.sub(x.div(y).mul(y));
            if r != T::ZERO && ((r < T::ZERO) != (y < T::ZERO)) {
                r.add(y)
            } else {
                r
            }
        })
    }
}

impl Op for Mod {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        let out = with_numeric!(a.dtype(), T => mod_typed::<T>(ctx.pool, a, b, self.fmod, &self.label)?,
            _ => return Err(dtype_err!("{}: Mod does not support {} tensors", self.label, a.dtype())));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::test_util::*;

    #[test]
    fn add_sub_mul_div_broadcast() {
        let a = t_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t_f32(&[3], &[10., 20., 30.]);
        assert_eq!(f32s(&run1("Add", &[], &[a.clone(), b.clone()])), vec![11., 22., 33., 14., 25., 36.]);
        assert_eq!(f32s(&run1("Sub", &[], &[a.clone(), b.clone()])), vec![-9., -18., -27., -6., -15., -24.]);
        assert_eq!(f32s(&run1("Mul", &[], &[a.clone(), b.clone()])), vec![10., 40., 90., 40., 100., 180.]);
        assert_eq!(f32s(&run1("Div", &[], &[b.clone(), a.clone()])), vec![10., 10., 10., 2.5, 4., 5.]);
    }

    #[test]
    fn integer_div_truncates_and_checks_zero() {
        let a = Tensor::from_slice(&[4], &[7i32, -7, 7, -7]).unwrap();
        let b = Tensor::from_slice(&[4], &[2i32, 2, -2, -2]).unwrap();
        let c = run1("Div", &[], &[a.clone(), b]);
        assert_eq!(c.as_slice::<i32>().unwrap(), &[3, -3, -3, 3]);
        let z = Tensor::from_slice(&[1], &[0i32]).unwrap();
        assert!(matches!(run("Div", &[], &[a, z]), Err(crate::Error::Runtime(_))));
        // Wrapping arithmetic.
        let x = Tensor::from_slice(&[1], &[127i8]).unwrap();
        let y = Tensor::from_slice(&[1], &[1i8]).unwrap();
        assert_eq!(run1("Add", &[], &[x, y]).as_slice::<i8>().unwrap(), &[-128]);
    }

    #[test]
    fn mixed_dtypes_are_refused() {
        let a = t_f32(&[1], &[1.]);
        let b = Tensor::from_slice(&[1], &[1i64]).unwrap();
        assert!(matches!(run("Add", &[], &[a, b]), Err(crate::Error::UnsupportedDtype(_))));
    }

    #[test]
    fn pow_types() {
        let a = t_f32(&[3], &[1., 2., 3.]);
        let e = Tensor::from_slice(&[3], &[4i64, 5, 6]).unwrap();
        assert_eq!(f32s(&run1("Pow", &[], &[a.clone(), e.clone()])), vec![1., 32., 729.]);
        let ai = Tensor::from_slice(&[3], &[1i64, 2, 3]).unwrap();
        assert_eq!(run1("Pow", &[], &[ai.clone(), e]).as_slice::<i64>().unwrap(), &[1, 32, 729]);
        let ef = t_f32(&[3], &[4., 5., 6.]);
        assert_eq!(run1("Pow", &[], &[ai, ef]).as_slice::<i64>().unwrap(), &[1, 32, 729]);
        let two = t_f32(&[], &[2.]);
        assert_eq!(f32s(&run1("Pow", &[], &[a.clone(), two])), vec![1., 4., 9.]);
        let half = t_f32(&[], &[0.5]);
        assert_eq!(f32s(&run1("Pow", &[], &[t_f32(&[2], &[4., 9.]), half])), vec![2., 3.]);
    }

    #[test]
    fn mod_signs() {
        let a = Tensor::from_slice(&[6], &[-4i32, 7, 5, 4, -7, 8]).unwrap();
        let b = Tensor::from_slice(&[6], &[2i32, -3, 8, -2, 3, 5]).unwrap();
        // numpy.mod: [0, -2, 5, 0, 2, 3]; numpy.fmod: [0, 1, 5, 0, -1, 3]
        assert_eq!(run1("Mod", &[], &[a.clone(), b.clone()]).as_slice::<i32>().unwrap(), &[0, -2, 5, 0, 2, 3]);
        assert_eq!(run1("Mod", &[("fmod", int(1))], &[a, b]).as_slice::<i32>().unwrap(), &[0, 1, 5, 0, -1, 3]);
        let x = Tensor::from_slice(&[3], &[-4.3f64, 7.2, 5.0]).unwrap();
        let y = Tensor::from_slice(&[3], &[2.1f64, -3.4, 8.0]).unwrap();
        let m = run1("Mod", &[], &[x.clone(), y.clone()]);
        let v = m.as_slice::<f64>().unwrap();
        assert!((v[0] - 2.0).abs() < 1e-12 && (v[1] + 3.0).abs() < 1e-12 && v[2] == 5.0);
        let f = run1("Mod", &[("fmod", int(1))], &[x, y]);
        let v = f.as_slice::<f64>().unwrap();
        assert!((v[0] + 0.1).abs() < 1e-12 && (v[1] - 0.4).abs() < 1e-12);
    }
}
