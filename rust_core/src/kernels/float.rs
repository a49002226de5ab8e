//! The `Float` trait: the arithmetic the float kernels need, implemented for `f32` and `f64`.
//!
//! Kernels are written once, generic over `Float`; half-precision tensors are computed in `f32`.

use crate::tensor::Element;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point element type kernels compute in (`f32` or `f64`).
pub trait Float:
    Element
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + std::fmt::Debug
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
    fn from_usize(v: usize) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round_half_even(self) -> Self;
    fn is_nan(self) -> bool;
    fn fmax(self, o: Self) -> Self;
    fn fmin(self, o: Self) -> Self;
    /// Logistic sigmoid, stable for large |x|.
    fn sigmoid(self) -> Self {
        if self >= Self::ZERO {
            Self::ONE / (Self::ONE + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::ONE + e)
        }
    }
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline(always)]
            fn round_half_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn fmax(self, o: Self) -> Self {
                if self >= o || o.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn fmin(self, o: Self) -> Self {
                if self <= o || o.is_nan() {
                    self
                } else {
                    o
                }
            }
        }
    };
}
impl_float!(f32);
impl_float!(f64);

/// `s` as `&[f32]` when `T` is `f32` (for dispatch to f32-only SIMD kernels).
pub fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len()) })
    } else {
        None
    }
}

/// `s` as `&mut [f32]` when `T` is `f32`.
pub fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32.
        Some(unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len()) })
    } else {
        None
    }
}

/// `Σ f(v)` with eight interleaved partial sums, so the loop vectorizes (one serial chain of
/// additions is bounded by the add latency: LayerNormalization, GlobalAveragePool).
#[inline(always)]
pub fn lane_sum<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::ZERO; 8];
    let chunks = x.chunks_exact(8);
    let mut s = T::ZERO;
    for v in chunks.remainder() {
        s += f(*v);
    }
    for c in chunks {
        for l in 0..8 {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().fold(s, |a, b| a + *b)
}

/// `out[p]` = the mean of plane `p` of `x` (`out.len()` planes of `sz` floats; `x` holds at
/// least that many). On AVX-512, 32 partial sums per plane in two registers (the last vector
/// masked) and a register reduction: the global average pools of squeeze-excitation
/// blocks average hundreds of 7x7 to 56x56 planes, which the baseline build of [`lane_sum`]
/// summed two SSE registers wide.
pub fn plane_means_f32(x: &[f32], sz: usize, out: &mut [f32]) {
    if sz == 0 {
        out.fill(0.0);
        return;
    }
    assert!(x.len() >= out.len() * sz, "plane_means_f32: {} floats for {} planes of {sz}", x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: AVX-512 CPU; every plane read is inside x (checked above).
        unsafe { plane_means_avx512(x, sz, out) };
        return;
    }
    for (o, p) in out.iter_mut().zip(x.chunks_exact(sz)) {
        *o = lane_sum(p, |v| v) / sz as f32;
    }
}

/// See [`plane_means_f32`].
///
/// # Safety
/// AVX-512F CPU; `x` holds `out.len() · sz` floats, `sz > 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_means_avx512(x: &[f32], sz: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let (whole, rest) = (sz / 16, sz % 16);
    let tail = ((1u32 << rest) - 1) as u16;
    for (p, o) in out.iter_mut().enumerate() {
        let base = x.as_ptr().add(p * sz);
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        while i + 2 <= whole {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(base.add(16 * i)));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(base.add(16 * i + 16)));
            i += 2;
        }
        if i < whole {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(base.add(16 * i)));
        }
        if rest > 0 {
            a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tail, base.add(16 * whole)));
        }
        *o = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / sz as f32;
    }
}

#[cfg(test)]
mod plane_mean_tests {
    use super::*;
    use crate::kernels::simd::test_util::for_each_isa;

    #[test]
    fn plane_means_match_f64_sums_on_every_isa() {
        for sz in [1usize, 7, 15, 16, 17, 49, 196, 3136] {
            let planes = 5;
            let x: Vec<f32> = (0..planes * sz).map(|i| ((i * 31 % 97) as f32 - 48.0) / 16.0).collect();
            let want: Vec<f64> = x.chunks_exact(sz).map(|p| p.iter().map(|v| *v as f64).sum::<f64>() / sz as f64).collect();
            for_each_isa(|isa| {
                let mut out = vec![f32::NAN; planes];
                plane_means_f32(&x, sz, &mut out);
                for (g, w) in out.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{isa:?} sz {sz}: {g} vs {w}");
                }
            });
        }
        let mut out = [f32::NAN; 3];
        plane_means_f32(&[], 0, &mut out);
        assert_eq!(out, [0.0; 3]);
    }
}
