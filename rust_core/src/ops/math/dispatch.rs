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
    const IS_SIGNED: bool;
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
    ($t:ty, $signed:expr) => {
        impl Num for $t {
            const IS_FLOAT: bool = false;
            const IS_SIGNED: bool = $signed;
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
num_int!(i8, true);
num_int!(i16, true);
num_int!(i32, true);
num_int!(i64, true);
num_int!(u8, false);
num_int!(u16, false);
num_int!(u32, false);
num_int!(u64, false);

macro_rules! num_float {
    ($t:ty) => {
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
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
            const IS_SIGNED: bool = true;
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
