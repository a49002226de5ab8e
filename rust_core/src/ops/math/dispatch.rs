//! Element-type dispatch for the math kernels: macros that bind a Rust type to a tensor's
//! dtype once per run, and the numeric traits the generic kernels are written against.

use half::{bf16, f16};

/// Bind `$T` to the Rust type of a numeric dtype and evaluate `$body`; `$other` otherwise.
/// Covers f32, f64, f16, bf16 and the 8/16/32/64-bit integers (not bool, not sub-byte types).
macro_rules! with_numeric {
    ($dt:expr, $T:ident => $body:expr, _ => $other:expr) => {{
        use $crate::tensor::DType as __D;
        match $dt {
            __D::Float32 => { type $T = f32; $body }
            __D::Float64 => { type $T = f64; $body }
            __D::Float16 => { type $T = half::f16; $body }
            __D::BFloat16 => { type $T = half::bf16; $body }
            __D::Int8 => { type $T = i8; $body }
            __D::Int16 => { type $T = i16; $body }
            __D::Int32 => { type $T = i32; $body }
            __D::Int64 => { type $T = i64; $body }
            __D::Uint8 => { type $T = u8; $body }
            __D::Uint16 => { type $T = u16; $body }
            __D::Uint32 => { type $T = u32; $body }
            __D::Uint64 => { type $T = u64; $body }
            _ => $other,
        }
    }};
}

/// Like [`with_numeric`] for the floating-point types f32, f64, f16, bf16.
macro_rules! with_float {
    ($dt:expr, $T:ident => $body:expr, _ => $other:expr) => {{
        use $crate::tensor::DType as __D;
        match $dt {
            __D::Float32 => { type $T = f32; $body }
            __D::Float64 => { type $T = f64; $body }
            __D::Float16 => { type $T = half::f16; $body }
            __D::BFloat16 => { type $T = half::bf16; $body }
            _ => $other,
        }
    }};
}

/// Like [`with_numeric`] for the integer types only.
macro_rules! with_int {
    ($dt:expr, $T:ident => $body:expr, _ => $other:expr) => {{
        use $crate::tensor::DType as __D;
        match $dt {
            __D::Int8 => { type $T = i8; $body }
            __D::Int16 => { type $T = i16; $body }
            __D::Int32 => { type $T = i32; $body }
            __D::Int64 => { type $T = i64; $body }
            __D::Uint8 => { type $T = u8; $body }
            __D::Uint16 => { type $T = u16; $body }
            __D::Uint32 => { type $T = u32; $body }
            __D::Uint64 => { type $T = u64; $body }
            _ => $other,
        }
    }};
}

/// A numeric element with the arithmetic ONNX needs: integers wrap on overflow (as numpy and
/// onnxruntime do), f16/bf16 compute in f32 and round once.
pub trait Num: crate::tensor::Element + PartialOrd + PartialEq {
    const IS_FLOAT: bool;
    const ZERO: Self;
    const ONE: Self;
    /// Smallest and largest values (-inf / +inf for floats).
    const MIN_VAL: Self;
    const MAX_VAL: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Division; integers truncate toward zero (the caller checked for a zero divisor).
    fn div(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn to_f64(self) -> f64;
    /// Float: rounded; integer: truncated toward zero then wrapped.
    fn from_f64(v: f64) -> Self;
    /// Integers: wrapped; floats: rounded.
    fn from_i64(v: i64) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! num_int {
    ($t:ty) => {
        impl Num for $t {
            const IS_FLOAT: bool = false;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const MIN_VAL: Self = <$t>::MIN;
            const MAX_VAL: Self = <$t>::MAX;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn div(self, o: Self) -> Self { if o == 0 { 0 } else { self.wrapping_div(o) } }
            #[inline(always)]
            fn neg(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if self < 0 { self.neg() } else { self } }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { if v < 0.0 { (v as i64) as $t } else if v >= 9.2e18 { (v as u64) as $t } else { (v as i64) as $t } }
            #[inline(always)]
            fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)]
            fn is_nan(self) -> bool { false }
        }
    };
}
num_int!(i8);
num_int!(i16);
num_int!(i32);
num_int!(i64);
num_int!(u8);
num_int!(u16);
num_int!(u32);
num_int!(u64);

macro_rules! num_float {
    ($t:ty) => {
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MIN_VAL: Self = <$t>::NEG_INFINITY;
            const MAX_VAL: Self = <$t>::INFINITY;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self + o }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)]
            fn div(self, o: Self) -> Self { self / o }
            #[inline(always)]
            fn neg(self) -> Self { -self }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)]
            fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)]
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    };
}
num_float!(f32);
num_float!(f64);

macro_rules! num_half {
    ($t:ty) => {
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const ZERO: Self = <$t>::ZERO;
            const ONE: Self = <$t>::ONE;
            const MIN_VAL: Self = <$t>::NEG_INFINITY;
            const MAX_VAL: Self = <$t>::INFINITY;
            #[inline(always)]
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            #[inline(always)]
            fn div(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() / o.to_f32()) }
            #[inline(always)]
            fn neg(self) -> Self { -self }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::from_bits(self.to_bits() & 0x7fff) }
            #[inline(always)]
            fn to_f64(self) -> f64 { self.to_f64() }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            #[inline(always)]
            fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
            #[inline(always)]
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    };
}
num_half!(f16);
num_half!(bf16);

/// A floating-point element whose math runs in `f32` (f32, f16, bf16) or `f64` (f64).
pub trait Real: Num {
    /// Convert to the compute type f32 (f64 values are narrowed; use the f64 kernels for them).
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 { self }
    #[inline(always)]
    fn from_f32(v: f32) -> Self { v }
}
impl Real for f64 {
    #[inline(always)]
    fn to_f32(self) -> f32 { self as f32 }
    #[inline(always)]
    fn from_f32(v: f32) -> Self { v as f64 }
}
impl Real for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 { f16::to_f32(self) }
    #[inline(always)]
    fn from_f32(v: f32) -> Self { f16::from_f32(v) }
}
impl Real for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 { bf16::to_f32(self) }
    #[inline(always)]
    fn from_f32(v: f32) -> Self { bf16::from_f32(v) }
}

/// The compute types of the float kernels (f32 and f64), with the math the kernels use.
pub trait Float:
    Copy
    + PartialOrd
    + Send
    + Sync
    + Default
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    const INF: Self;
    const NEG_INF: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn from_usize(v: usize) -> Self;
}

macro_rules! float_impl {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INF: Self = <$t>::INFINITY;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn exp(self) -> Self { <$t>::exp(self) }
            #[inline(always)]
            fn ln(self) -> Self { <$t>::ln(self) }
            #[inline(always)]
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)]
            fn from_usize(v: usize) -> Self { v as $t }
        }
    };
}
float_impl!(f32);
float_impl!(f64);

/// Run a float kernel on `x` into a new tensor of `x`'s dtype and `out_shape`: f32 and f64
/// run in place on the tensors' buffers; f16 and bf16 are widened to f32 and narrowed back.
/// The kernels see a zero-filled output unless `overwrites` (they write every element: the
/// output then starts with unspecified contents and is not zeroed first).
pub fn with_float_buffers(
    x: &crate::tensor::Tensor,
    out_shape: &[usize],
    overwrites: bool,
    f32k: impl FnOnce(&[f32], &mut [f32]) -> crate::error::Result<()>,
    f64k: impl FnOnce(&[f64], &mut [f64]) -> crate::error::Result<()>,
) -> crate::error::Result<crate::tensor::Tensor> {
    use crate::tensor::{DType, Tensor};
    let d = x.dtype();
    match d {
        DType::Float32 if overwrites => Tensor::build_uninit::<f32>(d, out_shape, |o| f32k(x.as_slice::<f32>()?, o)),
        DType::Float64 if overwrites => Tensor::build_uninit::<f64>(d, out_shape, |o| f64k(x.as_slice::<f64>()?, o)),
        DType::Float32 => Tensor::build::<f32>(d, out_shape, |o| f32k(x.as_slice::<f32>()?, o)),
        DType::Float64 => Tensor::build::<f64>(d, out_shape, |o| f64k(x.as_slice::<f64>()?, o)),
        DType::Float16 | DType::BFloat16 => {
            let xin: Vec<f32> = if d == DType::Float16 {
                x.as_slice::<f16>()?.iter().map(|v| v.to_f32()).collect()
            } else {
                x.as_slice::<bf16>()?.iter().map(|v| v.to_f32()).collect()
            };
            let n = crate::tensor::checked_numel(out_shape)?;
            let mut o = vec![0f32; n];
            f32k(&xin, &mut o)?;
            if d == DType::Float16 {
                Tensor::build::<f16>(d, out_shape, |t| {
                    for (t, v) in t.iter_mut().zip(&o) {
                        *t = f16::from_f32(*v);
                    }
                    Ok(())
                })
            } else {
                Tensor::build::<bf16>(d, out_shape, |t| {
                    for (t, v) in t.iter_mut().zip(&o) {
                        *t = bf16::from_f32(*v);
                    }
                    Ok(())
                })
            }
        }
        _ => Err(dtype_err!("expected a float tensor, got {d}")),
    }
}
