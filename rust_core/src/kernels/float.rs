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

/// `y[i] = x[i]·a + b` (one rounding on FMA paths): a per-channel affine map such as an
/// inference-mode BatchNormalization, compiled per ISA (the generic loop ran at 0.9 ns per
/// value in the baseline build).
#[inline(always)]
fn scale_shift_body<M: crate::kernels::simd::MulAdd>(x: &[f32], a: f32, b: f32, y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = M::madd(*xv, a, b);
    }
}

crate::multiversion! {
    /// See [`scale_shift_body`]: `y[i] = x[i]·a + b` over the shorter of the two.
    pub fn scale_shift_f32(x: &[f32], a: f32, b: f32, y: &mut [f32]) = scale_shift_body;
}

/// `out[p]` = the largest value of plane `p` of `x` (as [`plane_means_f32`]); a plane holding a
/// NaN gives NaN (the last one met, as the scalar loop `max_propagating` returns). On AVX-512
/// two registers of running maxima and a register of "NaN seen" lanes per plane.
pub fn plane_maxes_f32(x: &[f32], sz: usize, out: &mut [f32]) {
    assert!(x.len() >= out.len() * sz, "plane_maxes_f32: {} floats for {} planes of {sz}", x.len(), out.len());
    for (p, o) in out.iter_mut().enumerate() {
        let plane = &x[p * sz..(p + 1) * sz];
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 && sz >= 16 {
            // SAFETY: AVX-512 CPU; the plane is in bounds.
            if let Some(m) = unsafe { plane_max_avx512(plane) } {
                *o = m;
                continue;
            }
        }
        *o = max_propagating(plane);
    }
}

/// The largest value of `x`, NaN (the last NaN) if it holds one, -inf when empty.
pub fn max_propagating(x: &[f32]) -> f32 {
    x.iter().fold(f32::NEG_INFINITY, |m, v| if *v > m || v.is_nan() { *v } else { m })
}

/// The largest value of `x` (`x.len() >= 16`), or None when it holds a NaN.
///
/// # Safety
/// AVX-512F CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_max_avx512(x: &[f32]) -> Option<f32> {
    use std::arch::x86_64::*;
    let n = x.len();
    let base = x.as_ptr();
    let (mut a0, mut a1) = (_mm512_set1_ps(f32::NEG_INFINITY), _mm512_set1_ps(f32::NEG_INFINITY));
    let mut nan: u16 = 0;
    let mut i = 0;
    while i + 32 <= n {
        let (v0, v1) = (_mm512_loadu_ps(base.add(i)), _mm512_loadu_ps(base.add(i + 16)));
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v0, v1);
        a0 = _mm512_max_ps(a0, v0);
        a1 = _mm512_max_ps(a1, v1);
        i += 32;
    }
    while i + 16 <= n {
        let v = _mm512_loadu_ps(base.add(i));
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        a0 = _mm512_max_ps(a0, v);
        i += 16;
    }
    if i < n {
        // The last 16 values (overlapping what was read: max is idempotent).
        let v = _mm512_loadu_ps(base.add(n - 16));
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        a1 = _mm512_max_ps(a1, v);
    }
    (nan == 0).then(|| _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)))
}

#[cfg(test)]
mod plane_mean_tests {
    use super::*;
    use crate::kernels::simd::test_util::for_each_isa;

    #[test]
    fn plane_maxes_match_the_scalar_fold_on_every_isa_with_nan() {
        for_each_isa(|isa| {
            for sz in [0usize, 1, 7, 15, 16, 17, 31, 32, 33, 49, 196, 3136] {
                let mut x: Vec<f32> = (0..3 * sz).map(|i| ((i * 7919) % 1013) as f32 - 500.0).collect();
                if sz > 0 {
                    x[sz + sz / 2] = f32::NAN; // plane 1 holds a NaN
                    x[2 * sz + sz - 1] = 1e9; // plane 2's largest value is its last
                }
                let mut out = vec![0f32; 3];
                plane_maxes_f32(&x, sz, &mut out);
                for (p, o) in out.iter().enumerate() {
                    let want = max_propagating(&x[p * sz..(p + 1) * sz]);
                    assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "{isa:?} sz {sz} plane {p}: {o} vs {want}");
                }
                if sz > 0 {
                    assert!(out[1].is_nan() && out[2] == 1e9, "{isa:?} sz {sz}: {out:?}");
                }
            }
        });
    }

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
