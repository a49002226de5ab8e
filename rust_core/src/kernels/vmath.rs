//! Vectorized f32 elementwise math: exp, sigmoid, tanh, erf and the activations built on them,
//! over slices, with one code path per ISA (see [`super::simd`]).
//!
//! Every function here is branch-free so the compiler vectorizes the slice loops:
//! - `exp`: range reduction `x = n·ln2 + r`, |r| ≤ ln2/2, then a degree-5 minimax polynomial for
//!   `(e^r - 1 - r) / r²` (Cephes' coefficients) and a scale by `2^n` built from exponent bits
//!   in two halves (so results stay exact down to the subnormal range). Max relative error
//!   about 2 ulp; NaN propagates, overflow gives +inf, underflow 0.
//! - `tanh`: a [13/6] rational approximation on [-7.9, 7.9], ±1 beyond (|error| < 3e-7 absolute).
//! - `erf`: an odd [13/8] rational approximation on [-4, 4] (|error| < 3e-7 absolute).
//! - `sigmoid(x) = 1 / (1 + e^-x)`.

use super::simd::MulAdd;

mod libm {
    extern "C" {
        pub fn erff(x: f32) -> f32;
        pub fn erf(x: f64) -> f64;
    }
}

/// The error function in f32 from the C library (within 1 ulp; scalar).
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    // SAFETY: pure C math function.
    unsafe { libm::erff(x) }
}

/// The error function in f64 from the C library.
#[inline]
pub fn erf_f64(x: f64) -> f64 {
    // SAFETY: pure C math function.
    unsafe { libm::erf(x) }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in few bits and the remainder (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// `(e^r - 1 - r) / r²` on `|r| <= ln2 / 2` as a polynomial (highest degree first), fitted for
/// the least largest relative error of `e^r` (3e-9 in exact arithmetic; evaluated in f32
/// with FMA the error is the same 8.5e-8 as the degree-5 Taylor polynomial of this quotient
/// it replaced, one multiply-add fewer).
const EXP_POLY: [f32; 5] = [1.381_460_6e-3, 8.368_711e-3, 4.166_839e-2, 1.666_652_1e-1, 4.999_999_4e-1];

/// e^x.
#[inline(always)]
pub fn exp<M: MulAdd>(x: f32) -> f32 {
    // Beyond these bounds the result is 0 or +inf anyway; clamping keeps `n` in range.
    let xc = x.clamp(-104.0, 89.0);
    let t = M::madd(xc, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = M::madd(n, -LN2_HI, xc);
    let r = M::madd(n, -LN2_LO, r);
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = M::madd(p, r, *c);
    }
    let er = M::madd(p, r * r, r) + 1.0;
    // 2^n = 2^n1 · 2^n2 with both halves normal for n in [-150, 129].
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) << 23) as u32);
    let s2 = f32::from_bits(((n2 + 127) << 23) as u32);
    let y = er * s1 * s2;
    // NaN in, NaN out (the clamp above keeps NaN, but the scale bits are then arbitrary).
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid<M: MulAdd>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<M>(-x))
}

/// tanh(x).
#[inline(always)]
pub fn tanh<M: MulAdd>(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = M::madd(x2, -2.760_768_5e-16, 2.000_187_9e-13);
    p = M::madd(x2, p, -8.604_671_5e-11);
    p = M::madd(x2, p, 5.122_297e-8);
    p = M::madd(x2, p, 1.485_722_4e-5);
    p = M::madd(x2, p, 6.372_619_3e-4);
    p = M::madd(x2, p, 4.893_524_6e-3);
    p *= xc;
    let mut q = M::madd(x2, 1.198_258_4e-6, 1.185_347_1e-4);
    q = M::madd(x2, q, 2.268_434_6e-3);
    q = M::madd(x2, q, 4.893_525e-3);
    // At the clamp bound tanh is within 2.7e-7 of ±1: returning ±1 exactly from there on makes
    // x · (1 + tanh(x)) exactly 0 for large negative x (GELU), not a residue times x.
    if xc.abs() >= CLAMP {
        1f32.copysign(xc)
    } else {
        p / q
    }
}

/// erf(x).
#[inline(always)]
pub fn erf<M: MulAdd>(x: f32) -> f32 {
    let xc = x.clamp(-4.0, 4.0);
    let x2 = xc * xc;
    let mut p = M::madd(x2, -2.726_142_3e-10, 2.770_681_4e-8);
    p = M::madd(x2, p, -2.101_024e-6);
    p = M::madd(x2, p, -5.692_506_4e-5);
    p = M::madd(x2, p, -7.349_906_3e-4);
    p = M::madd(x2, p, -2.954_600_1e-3);
    p = M::madd(x2, p, -1.609_603_3e-2);
    p *= xc;
    let mut q = M::madd(x2, -1.456_607_2e-5, -2.133_740_6e-4);
    q = M::madd(x2, q, -1.682_827e-3);
    q = M::madd(x2, q, -7.373_329_2e-3);
    q = M::madd(x2, q, -1.426_474e-2);
    // Beyond |x| = 3.9, erf rounds to ±1 in f32; returning it exactly keeps 1 + erf(x) = 0 (GELU
    // of large negative inputs is then exactly 0, not a rounding residue times x).
    if xc.abs() >= 3.9 {
        1f32.copysign(xc)
    } else {
        p / q
    }
}

/// An activation applied elementwise (standalone, or fused after Conv/Gemm/MatMul).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    /// min(max(x, lo), hi).
    Clip(f32, f32),
    LeakyRelu(f32),
    Sigmoid,
    /// x · sigmoid(alpha · x) (SiLU when alpha = 1).
    Swish(f32),
    /// max(0, min(1, alpha · x + beta)).
    HardSigmoid(f32, f32),
    /// x · HardSigmoid(x) with alpha = 1/6, beta = 1/2.
    HardSwish,
    Tanh,
    /// 0.5 · x · (1 + erf(x / √2)).
    GeluErf,
    /// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³))).
    GeluTanh,
    Exp,
    Erf,
}

impl Act {
    /// The activation of one value.
    #[inline(always)]
    pub fn apply<M: MulAdd>(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            // NaN stays NaN (x > 0 is false, and the select keeps v when v != v).
            Act::Relu => {
                if v > 0.0 || v.is_nan() {
                    v
                } else {
                    0.0
                }
            }
            Act::Clip(lo, hi) => {
                let a = if v < lo { lo } else { v };
                if a > hi {
                    hi
                } else {
                    a
                }
            }
            Act::LeakyRelu(a) => {
                if v < 0.0 {
                    a * v
                } else {
                    v
                }
            }
            Act::Sigmoid => sigmoid::<M>(v),
            Act::Swish(a) => v * sigmoid::<M>(a * v),
            Act::HardSigmoid(a, b) => M::madd(a, v, b).clamp(0.0, 1.0),
            Act::HardSwish => v * M::madd(1.0 / 6.0, v, 0.5).clamp(0.0, 1.0),
            Act::Tanh => tanh::<M>(v),
            Act::GeluErf => 0.5 * v * (1.0 + erf::<M>(v * std::f32::consts::FRAC_1_SQRT_2)),
            Act::GeluTanh => {
                let c = 0.797_884_6f32;
                0.5 * v * (1.0 + tanh::<M>(c * M::madd(0.044715 * v, v * v, v)))
            }
            Act::Exp => exp::<M>(v),
            Act::Erf => erf::<M>(v),
        }
    }
}

/// `$body` once per activation kind with `$act` rebound to that kind, so each loop is
/// monomorphic and vectorizes on its own (a runtime `match` inside the loop would not).
macro_rules! per_activation {
    ($act:ident, $body:block) => {
        match $act {
            Act::Identity => $body,
            Act::Relu => $body,
            Act::Clip(..) => $body,
            Act::LeakyRelu(_) => $body,
            Act::Sigmoid => $body,
            Act::Swish(_) => $body,
            Act::HardSigmoid(..) => $body,
            Act::HardSwish => $body,
            Act::Tanh => $body,
            Act::GeluErf => $body,
            Act::GeluTanh => $body,
            Act::Exp => $body,
            Act::Erf => $body,
        }
    };
}

#[inline(always)]
fn map_body<M: MulAdd>(act: Act, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    if try_map_avx512::<M>(act, x.as_ptr(), y.as_mut_ptr(), n) {
        return;
    }
    per_activation!(act, {
        for (o, v) in y.iter_mut().zip(x) {
            *o = act.apply::<M>(*v);
        }
    })
}

#[inline(always)]
pub(crate) fn apply_inplace_body<M: MulAdd>(act: Act, y: &mut [f32]) {
    if act == Act::Identity {
        return;
    }
    if try_map_avx512::<M>(act, y.as_ptr(), y.as_mut_ptr(), y.len()) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 {
        // SAFETY: M::AVX2 code only runs on CPUs with AVX2+FMA.
        if unsafe { apply_cheap_avx2(act, y) } {
            return;
        }
    }
    per_activation!(act, {
        for v in y.iter_mut() {
            *v = act.apply::<M>(*v);
        }
    })
}

/// The cheap activations on one AVX2 register, with the NaN behaviour of [`Act::apply`]
/// (`max`/`min` return their second operand when either is NaN); `None` for the others.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn act_m256(act: Act, v: std::arch::x86_64::__m256) -> Option<std::arch::x86_64::__m256> {
    use std::arch::x86_64::*;
    let z = _mm256_setzero_ps();
    Some(match act {
        Act::Identity => v,
        Act::Relu => _mm256_max_ps(z, v),
        Act::Clip(lo, hi) => _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v)),
        Act::LeakyRelu(a) => {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, z);
            _mm256_blendv_ps(v, _mm256_mul_ps(_mm256_set1_ps(a), v), neg)
        }
        Act::HardSigmoid(a, b) => {
            let t = _mm256_fmadd_ps(_mm256_set1_ps(a), v, _mm256_set1_ps(b));
            _mm256_min_ps(_mm256_set1_ps(1.0), _mm256_max_ps(z, t))
        }
        Act::HardSwish => {
            let t = _mm256_fmadd_ps(_mm256_set1_ps(1.0 / 6.0), v, _mm256_set1_ps(0.5));
            _mm256_mul_ps(v, _mm256_min_ps(_mm256_set1_ps(1.0), _mm256_max_ps(z, t)))
        }
        _ => return None,
    })
}

/// Every activation on one AVX-512 register: the cheap ones as [`act_m256`] (same results, same
/// NaN behaviour), the transcendental ones with the approximations of the scalar functions
/// ([`exp_m512`] scales by `vscalefps`).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn act_m512(act: Act, v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_ps();
    match act {
        Act::Identity => v,
        Act::Relu => _mm512_max_ps(z, v),
        Act::Clip(lo, hi) => _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v)),
        Act::LeakyRelu(a) => {
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, z);
            _mm512_mask_mul_ps(v, neg, _mm512_set1_ps(a), v)
        }
        Act::HardSigmoid(a, b) => {
            let t = _mm512_fmadd_ps(_mm512_set1_ps(a), v, _mm512_set1_ps(b));
            _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(z, t))
        }
        Act::HardSwish => {
            let t = _mm512_fmadd_ps(_mm512_set1_ps(1.0 / 6.0), v, _mm512_set1_ps(0.5));
            _mm512_mul_ps(v, _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(z, t)))
        }
        Act::Sigmoid => sigmoid_m512(v),
        Act::Swish(a) => _mm512_mul_ps(v, sigmoid_m512(_mm512_mul_ps(_mm512_set1_ps(a), v))),
        Act::Exp => exp_m512(v),
        Act::Tanh => tanh_m512(v),
        Act::Erf => erf_m512(v),
        Act::GeluErf => {
            let e = erf_m512(_mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
            _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), v), _mm512_add_ps(_mm512_set1_ps(1.0), e))
        }
        Act::GeluTanh => {
            let inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715), v), _mm512_mul_ps(v, v), v);
            let t = tanh_m512(_mm512_mul_ps(_mm512_set1_ps(0.797_884_6), inner));
            _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), v), _mm512_add_ps(_mm512_set1_ps(1.0), t))
        }
    }
}

/// `x` clamped to `[-c, c]`, NaN kept (max/min return their second operand when either is NaN).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn clamp_sym_m512(x: std::arch::x86_64::__m512, c: f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_min_ps(_mm512_set1_ps(c), _mm512_max_ps(_mm512_set1_ps(-c), x))
}

/// [`tanh`] on sixteen lanes (same rational approximation, ±1 exactly from the clamp bound).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tanh_m512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    const CLAMP: f32 = 7.905_311;
    let p = [-2.760_768_5e-16, 2.000_187_9e-13, -8.604_671_5e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_3e-4, 4.893_524_6e-3];
    let q = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];
    odd_rational_m512(x, CLAMP, CLAMP, p, q)
}

/// [`erf`] on sixteen lanes (same rational approximation, ±1 exactly beyond |x| = 3.9).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn erf_m512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    let p = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600_1e-3, -1.609_603_3e-2];
    let q = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2];
    odd_rational_m512(x, 4.0, 3.9, p, q)
}

/// `xc·P(xc²) / Q(xc²)` for `xc = x` clamped to `±clamp` (coefficients highest degree first,
/// Horner steps with fused multiply-adds, as the scalar [`tanh`] and [`erf`]), then ±1 (the
/// sign of `xc`) where `|xc| >= one_from`. NaN stays NaN.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn odd_rational_m512<const NP: usize, const NQ: usize>(
    x: std::arch::x86_64::__m512,
    clamp: f32,
    one_from: f32,
    p: [f32; NP],
    q: [f32; NQ],
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let xc = clamp_sym_m512(x, clamp);
    let x2 = _mm512_mul_ps(xc, xc);
    let num = _mm512_mul_ps(horner_m512(x2, &p), xc);
    sign_one_beyond(_mm512_div_ps(num, horner_m512(x2, &q)), xc, one_from)
}

/// The polynomial with coefficients `c` (highest degree first, at least two) at `x`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn horner_m512(x: std::arch::x86_64::__m512, c: &[f32]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let mut v = _mm512_fmadd_ps(x, _mm512_set1_ps(c[0]), _mm512_set1_ps(c[1]));
    for &k in &c[2..] {
        v = _mm512_fmadd_ps(x, v, _mm512_set1_ps(k));
    }
    v
}

/// `v`, except ±1 (the sign of `xc`) where `|xc| >= bound` (false for NaN).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sign_one_beyond(v: std::arch::x86_64::__m512, xc: std::arch::x86_64::__m512, bound: f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let sign = _mm512_and_si512(_mm512_castps_si512(xc), _mm512_set1_epi32(i32::MIN));
    let one = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(1.0))));
    let big = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(xc), _mm512_set1_ps(bound));
    _mm512_mask_mov_ps(v, big, one)
}


/// sigmoid on sixteen lanes, `1 / (1 + e^-v)` with [`exp_m512`] (a reciprocal estimate refined
/// by a Newton step was no faster than the division on AVX-512 cores). NaN stays NaN.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sigmoid_m512(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let one = _mm512_set1_ps(1.0);
    let q = _mm512_add_ps(one, exp_m512(_mm512_sub_ps(_mm512_setzero_ps(), v)));
    _mm512_div_ps(one, q)
}

/// `y[i] = act(x[i])` for `i < n` with [`act_m512`] (masked last vector). `x` may equal `y`
/// (in place).
///
/// # Safety
/// The CPU must have AVX-512F; `x` readable and `y` writable for `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn map_avx512(act: Act, x: *const f32, y: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    let full = n / 16 * 16;
    let mut i = 0;
    while i < full {
        let v = act_m512(act, _mm512_loadu_ps(x.add(i)));
        _mm512_storeu_ps(y.add(i), v);
        i += 16;
    }
    if full < n {
        let tail: __mmask16 = ((1u32 << (n - full)) - 1) as __mmask16;
        let v = act_m512(act, _mm512_maskz_loadu_ps(tail, x.add(full)));
        _mm512_mask_storeu_ps(y.add(full), tail, v);
    }
}

/// [`map_avx512`] when the CPU runs the AVX-512 path (`M::AVX2` code on an AVX-512 CPU);
/// false (nothing done) otherwise.
#[inline(always)]
fn try_map_avx512<M: MulAdd>(act: Act, x: *const f32, y: *mut f32, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F; the callers pass slices of n floats.
        unsafe { map_avx512(act, x, y, n) };
        return true;
    }
    let _ = (act, x, y, n);
    false
}

/// [`act_m256`] over `y` in place; false (nothing done) for activations it does not cover.
/// Written with intrinsics because the compiler turns the in-place select of `Relu` into a
/// masked store, which is microcoded and slow on AMD.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn apply_cheap_avx2(act: Act, y: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    if act_m256(act, _mm256_setzero_ps()).is_none() {
        return false;
    }
    let mut chunks = y.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = act_m256(act, _mm256_loadu_ps(c.as_ptr())).unwrap_or(_mm256_setzero_ps());
        _mm256_storeu_ps(c.as_mut_ptr(), v);
    }
    for v in chunks.into_remainder() {
        *v = act.apply::<crate::kernels::simd::Fused>(*v);
    }
    true
}

#[inline(always)]
fn softmax_row_body<M: MulAdd>(x: &[f32], y: &mut [f32]) {
    // Sixteen running maxima (one serial compare chain per row was a third of the time); NaN
    // never wins a `>` so it is skipped either way, and then propagates through exp.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let xc16 = x.chunks_exact(16);
    let mut m = f32::NEG_INFINITY;
    for &v in xc16.remainder() {
        m = if v > m { v } else { m };
    }
    for xs in xc16 {
        for l in 0..16 {
            lanes[l] = if xs[l] > lanes[l] { xs[l] } else { lanes[l] };
        }
    }
    for &v in &lanes {
        m = if v > m { v } else { m };
    }
    // Sixteen partial sums so the reduction vectorizes (one AVX-512 register, two AVX2 ones).
    let mut acc = [0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact_mut(16));
    let xr = xc.remainder();
    // exp(d) for d = x - max <= 0, flushed to 0 below e^-87 (the smallest normal floats): a
    // denormal result costs a microcode assist per vector on Intel CPUs, and masked attention
    // rows (-1e4 or -inf added) are full of them. The flush changes outputs by < 1.2e-38.
    #[inline(always)]
    fn ex<M: MulAdd>(d: f32) -> f32 {
        const LO: f32 = -87.0;
        let e = exp::<M>(if d < LO { LO } else { d });
        if d < LO {
            0.0
        } else {
            e
        }
    }
    for (xs, ys) in xc.zip(yc) {
        for l in 0..16 {
            let e = ex::<M>(xs[l] - m);
            ys[l] = e;
            acc[l] += e;
        }
    }
    // The last partial chunk as one more vector (lanes past the row read -inf, their exp
    // dropped): a scalar exp per element doubled the time of rows like 197 = 12·16 + 5.
    let tail = x.len() - xr.len();
    let mut s = acc.iter().sum::<f32>();
    if !xr.is_empty() {
        let mut e = [f32::NEG_INFINITY; 16];
        e[..xr.len()].copy_from_slice(xr);
        for v in e.iter_mut() {
            *v = ex::<M>(*v - m);
        }
        let e = &e[..xr.len()];
        y[tail..].copy_from_slice(e);
        s += e.iter().sum::<f32>();
    }
    let r = 1.0 / s;
    for o in y.iter_mut() {
        *o *= r;
    }
}

crate::multiversion! {
    /// `y = softmax(x)` over one contiguous row (max-subtracted, vectorized exp).
    fn softmax_row_auto(x: &[f32], y: &mut [f32]) = softmax_row_body;
}

/// `y = softmax(x)` over one contiguous row (`y.len() == x.len()`): max-subtracted, exp
/// flushed to 0 below e^-87, NaN anywhere makes the row NaN. AVX-512 CPUs take an explicit
/// kernel (masked last vector, tree reductions: rows of a few hundred values spent more time
/// in the compiler's serial reductions and scalar tail than in the exponentials).
pub fn softmax_row(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "softmax_row: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 && !x.is_empty() {
        // SAFETY: the CPU has AVX-512F; lengths checked above.
        unsafe { softmax_row_avx512(x, y) };
        return;
    }
    softmax_row_auto(x, y)
}

/// [`exp`] on sixteen lanes: the same range reduction and polynomial, with the scale by 2^n
/// done by `vscalefps` (exact down to the subnormal range, +inf above, NaN propagated) instead
/// of building exponent bits: about half the instructions, and an exponential is port-bound
/// (its 28 vector operations took 14 cycles per register).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp_m512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // max/min return their second operand when either is NaN: NaN passes the clamp.
    let xc = _mm512_min_ps(_mm512_set1_ps(89.0), _mm512_max_ps(_mm512_set1_ps(-104.0), x));
    let magic = _mm512_set1_ps(ROUND_MAGIC);
    let n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), magic), magic);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(er, n)
}

/// [`exp_m512`] flushed to 0 below e^-87 (see [`softmax_row_body`]); NaN stays NaN.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn exp_flushed_m512(d: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, _mm512_set1_ps(-87.0));
    _mm512_maskz_mov_ps(!below, exp_m512(d))
}

/// [`softmax_row`] with AVX-512 intrinsics.
///
/// # Safety
/// The CPU must have AVX-512F; `y.len() == x.len() > 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len();
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let full = n / 16 * 16;
    let tail: __mmask16 = ((1u32 << (n - full)) - 1) as __mmask16;
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    // Max: NaN never wins (max returns its second operand, the running max, when one is NaN).
    let (mut m0, mut m1) = (ninf, ninf);
    let mut i = 0;
    while i + 32 <= full {
        m0 = _mm512_max_ps(_mm512_loadu_ps(xp.add(i)), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(xp.add(i + 16)), m1);
        i += 32;
    }
    if i < full {
        m0 = _mm512_max_ps(_mm512_loadu_ps(xp.add(i)), m0);
    }
    if tail != 0 {
        m1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail, xp.add(full)), m1);
    }
    let m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    let mv = _mm512_set1_ps(m);
    // Exponentials, stored, summed in two accumulators.
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= full {
        let e0 = exp_flushed_m512(_mm512_sub_ps(_mm512_loadu_ps(xp.add(i)), mv));
        let e1 = exp_flushed_m512(_mm512_sub_ps(_mm512_loadu_ps(xp.add(i + 16)), mv));
        _mm512_storeu_ps(yp.add(i), e0);
        _mm512_storeu_ps(yp.add(i + 16), e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
        i += 32;
    }
    if i < full {
        let e = exp_flushed_m512(_mm512_sub_ps(_mm512_loadu_ps(xp.add(i)), mv));
        _mm512_storeu_ps(yp.add(i), e);
        s0 = _mm512_add_ps(s0, e);
    }
    if tail != 0 {
        // Lanes past the row read -inf: their exponential is flushed to 0.
        let e = exp_flushed_m512(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, tail, xp.add(full)), mv));
        _mm512_mask_storeu_ps(yp.add(full), tail, e);
        s1 = _mm512_add_ps(s1, e);
    }
    let r = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
    let mut i = 0;
    while i < full {
        _mm512_storeu_ps(yp.add(i), _mm512_mul_ps(_mm512_loadu_ps(yp.add(i)), r));
        i += 16;
    }
    if tail != 0 {
        _mm512_mask_storeu_ps(yp.add(full), tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, yp.add(full)), r));
    }
}

/// Lanes below this magnitude take the vector sine/cosine: the three-part reduction by π/2
/// keeps its full accuracy there; larger arguments go to libm (a rounded multiple of π/2 of
/// more bits than the parts hold).
const SIN_VECTOR_MAX: f32 = 8192.0;

/// `y[i] = sin(x[i])` (or `cos` when `cos`): on AVX-512 sixteen lanes at a time — `n` =
/// nearest integer to `x·2/π`, `r = x - n·π/2` (π/2 in three parts), the sine or cosine
/// polynomial of `r` on `[-π/4, π/4]` picked and signed by `n mod 4` — within 2e-7 of the
/// exact value for `|x| < 8192`; elsewhere (and on other CPUs) libm's `sinf`/`cosf`.
pub fn sin_cos_f32(x: &[f32], y: &mut [f32], cos: bool) {
    let n = x.len().min(y.len());
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: AVX-512 CPU; both slices hold n floats.
        i = unsafe { sin_cos_avx512(x.as_ptr(), y.as_mut_ptr(), n, cos) };
    }
    for (o, v) in y[i..n].iter_mut().zip(&x[i..n]) {
        *o = if cos { v.cos() } else { v.sin() };
    }
}

/// [`sin_cos_f32`] over whole vectors; returns how many values it wrote.
///
/// # Safety
/// AVX-512F CPU; `x` readable and `y` writable for `n` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn sin_cos_avx512(x: *const f32, y: *mut f32, n: usize, cos: bool) -> usize {
    use std::arch::x86_64::*;
    // π/2 = P1 + P2 + P3, P1 and P2 short enough that n·P1 and n·P2 are exact for |n| < 2^13.
    let (p1, p2, p3) = (_mm512_set1_ps(1.570_312_5), _mm512_set1_ps(4.837_513e-4), _mm512_set1_ps(7.549_79e-8));
    let two_over_pi = _mm512_set1_ps(std::f32::consts::FRAC_2_PI);
    let (s1, s2, s3) = (_mm512_set1_ps(-1.666_665_5e-1), _mm512_set1_ps(8.332_161e-3), _mm512_set1_ps(-1.951_529_6e-4));
    let (c1, c2, c3) = (_mm512_set1_ps(4.166_664_6e-2), _mm512_set1_ps(-1.388_731_6e-3), _mm512_set1_ps(2.443_315_7e-5));
    let limit = _mm512_set1_ps(SIN_VECTOR_MAX);
    let shift = _mm512_set1_epi32(cos as i32);
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(x.add(i));
        let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(v, two_over_pi));
        let r = _mm512_fnmadd_ps(k, p1, v);
        let r = _mm512_fnmadd_ps(k, p2, r);
        let r = _mm512_fnmadd_ps(k, p3, r);
        let r2 = _mm512_mul_ps(r, r);
        let sp = _mm512_fmadd_ps(_mm512_fmadd_ps(s3, r2, s2), r2, s1);
        let sv = _mm512_fmadd_ps(_mm512_mul_ps(r, r2), sp, r);
        let cp = _mm512_fmadd_ps(_mm512_fmadd_ps(c3, r2, c2), r2, c1);
        let cv = _mm512_fmadd_ps(_mm512_mul_ps(r2, r2), cp, _mm512_fnmadd_ps(_mm512_set1_ps(0.5), r2, _mm512_set1_ps(1.0)));
        // Quadrant (cos x = sin(x + π/2)): odd takes the cosine polynomial, 2 and 3 negate.
        let q = _mm512_add_epi32(_mm512_cvtps_epi32(k), shift);
        let odd = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
        let neg = _mm512_slli_epi32::<30>(_mm512_and_si512(q, _mm512_set1_epi32(2)));
        let res = _mm512_mask_mov_ps(sv, odd, cv);
        let res = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(res), neg));
        _mm512_storeu_ps(y.add(i), res);
        // Large (or infinite, or NaN) lanes: libm.
        let far = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(_mm512_abs_ps(v), limit);
        if far != 0 {
            for l in 0..16 {
                if far & (1 << l) != 0 {
                    let xv = *x.add(i + l);
                    *y.add(i + l) = if cos { xv.cos() } else { xv.sin() };
                }
            }
        }
        i += 16;
    }
    i
}

crate::multiversion! {
    /// `y[i] = act(x[i])` (`x` and `y` have the same length).
    pub fn map(act: Act, x: &[f32], y: &mut [f32]) = map_body;
}

crate::multiversion! {
    /// `y[i] = act(y[i])`.
    pub fn apply_inplace(act: Act, y: &mut [f32]) = apply_inplace_body;
}


impl Act {
    /// Parse the `activation` / `activation_params` attributes of a fused node.
    pub fn from_attrs(name: &str, p: &[f32]) -> Option<Act> {
        let arg = |i: usize| p.get(i).copied();
        Some(match name {
            "Identity" | "" => Act::Identity,
            "Relu" => Act::Relu,
            "Clip" => Act::Clip(arg(0)?, arg(1)?),
            "LeakyRelu" => Act::LeakyRelu(arg(0)?),
            "Sigmoid" => Act::Sigmoid,
            "Swish" => Act::Swish(arg(0).unwrap_or(1.0)),
            "HardSigmoid" => Act::HardSigmoid(arg(0)?, arg(1)?),
            "HardSwish" => Act::HardSwish,
            "Tanh" => Act::Tanh,
            "GeluErf" => Act::GeluErf,
            "GeluTanh" => Act::GeluTanh,
            _ => return None,
        })
    }

    /// The activation of one `f64`, computed with the standard library (reference accuracy).
    pub fn apply_f64(self, v: f64) -> f64 {
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        match self {
            Act::Identity => v,
            Act::Relu => {
                if v > 0.0 || v.is_nan() {
                    v
                } else {
                    0.0
                }
            }
            Act::Clip(lo, hi) => {
                let a = if v < lo as f64 { lo as f64 } else { v };
                if a > hi as f64 {
                    hi as f64
                } else {
                    a
                }
            }
            Act::LeakyRelu(a) => {
                if v < 0.0 {
                    a as f64 * v
                } else {
                    v
                }
            }
            Act::Sigmoid => sig(v),
            Act::Swish(a) => v * sig(a as f64 * v),
            Act::HardSigmoid(a, b) => (a as f64 * v + b as f64).clamp(0.0, 1.0),
            Act::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Tanh => v.tanh(),
            Act::GeluErf => 0.5 * v * (1.0 + erf_f64(v * std::f64::consts::FRAC_1_SQRT_2)),
            Act::GeluTanh => 0.5 * v * (1.0 + (0.797_884_560_802_865_4 * (v + 0.044715 * v * v * v)).tanh()),
            Act::Exp => v.exp(),
            Act::Erf => erf_f64(v),
        }
    }
}

/// `y[i] = act(y[i])` for any compute float: the vectorized kernel for `f32`, the standard
/// library for `f64`.
pub fn apply_inplace_any<T: crate::kernels::float::Float>(act: Act, y: &mut [T]) {
    if act == Act::Identity {
        return;
    }
    if let Some(y32) = crate::kernels::float::as_f32_mut(y) {
        apply_inplace(act, y32);
    } else {
        for v in y.iter_mut() {
            *v = T::from_f64(act.apply_f64(v.to_f64()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::test_util::for_each_isa;
    use super::*;

    fn grid() -> Vec<f32> {
        let mut v: Vec<f32> = (-30000..=30000).map(|i| i as f32 * 0.004).collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, 88.0, 88.7, 89.5, -87.0, -100.0, -103.0, -110.0, 200.0, -200.0]);
        v
    }

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs().max(1e-300)
        }
    }

    #[test]
    fn sin_and_cos_are_accurate_on_every_path() {
        // Quadrant boundaries, the vector bound, large, tiny and special values, every ISA.
        let mut xs = grid();
        xs.extend((-200..=200).map(|k| k as f32 * std::f32::consts::FRAC_PI_4));
        xs.extend([8191.9, 8192.0, -8192.5, 1e6, -3e7, 1e-30, -0.0, 0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        for_each_isa(|isa| {
            for cos in [false, true] {
                let mut y = vec![0.0; xs.len()];
                sin_cos_f32(&xs, &mut y, cos);
                for (x, y) in xs.iter().zip(&y) {
                    let want = if cos { (*x as f64).cos() } else { (*x as f64).sin() };
                    if !x.is_finite() {
                        assert!(y.is_nan(), "{isa:?} cos={cos} f({x}) = {y}");
                        continue;
                    }
                    // Absolute near the zeros, where f32 arguments carry no more relative accuracy.
                    assert!((*y as f64 - want).abs() <= 2.5e-7 * want.abs().max(1.0) || (x.abs() >= 8192.0 && (*y as f64 - want).abs() <= 1e-6), "{isa:?} cos={cos} f({x}) = {y}, want {want}");
                }
            }
        });
    }

    #[test]
    fn exp_is_accurate_on_every_path() {
        let xs = grid();
        for_each_isa(|isa| {
            let mut y = vec![0.0; xs.len()];
            map(Act::Exp, &xs, &mut y);
            for (x, y) in xs.iter().zip(&y) {
                let want = (*x as f64).exp();
                if want > f32::MAX as f64 {
                    assert!(y.is_infinite(), "{isa:?} exp({x}) = {y}");
                } else if want < 1e-37 {
                    assert!((*y as f64 - want).abs() < 1e-44, "{isa:?} exp({x}) = {y}, want {want}");
                } else {
                    assert!(rel(*y as f64, want) < 3e-7, "{isa:?} exp({x}) = {y}, want {want}");
                }
            }
            map(Act::Exp, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], &mut y[..3]);
            assert!(y[0].is_nan() && y[1] == f32::INFINITY && y[2] == 0.0, "{isa:?} {:?}", &y[..3]);
        });
    }

    #[test]
    fn softmax_rows_of_every_length_match_the_definition_on_every_path() {
        // Whole 16-lane chunks, a partial one, both; NaN anywhere makes the row NaN.
        for_each_isa(|isa| {
            for n in (1..=40).chain([197, 255]) {
                let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7).collect();
                let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let sum: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
                let mut y = vec![f32::NAN; n];
                softmax_row(&x, &mut y);
                for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
                    let want = (xv as f64 - m).exp() / sum;
                    assert!((yv as f64 - want).abs() <= 1e-6 * want.max(1e-3), "{isa:?} n={n} [{i}]: {yv} vs {want}");
                }
                let mut xn = x.clone();
                xn[n - 1] = f32::NAN;
                softmax_row(&xn, &mut y);
                assert!(y.iter().all(|v| v.is_nan()), "{isa:?} n={n}: NaN did not propagate");
            }
        });
    }

    #[test]
    fn sigmoid_tanh_erf_gelu_are_accurate_on_every_path() {
        let xs = grid();
        for_each_isa(|isa| {
            let mut y = vec![0.0; xs.len()];
            let cases: [(Act, fn(f64) -> f64, f64); 6] = [
                (Act::Sigmoid, |x| 1.0 / (1.0 + (-x).exp()), 3e-7),
                (Act::Swish(1.0), |x| x / (1.0 + (-x).exp()), 3e-7),
                (Act::Tanh, f64::tanh, 6e-7),
                (Act::Erf, |x| erf_f64(x), 4e-7),
                (Act::GeluErf, |x| 0.5 * x * (1.0 + erf_f64(x / 2f64.sqrt())), 1e-6),
                (Act::GeluTanh, |x| 0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh()), 1e-6),
            ];
            for (act, f, tol) in cases {
                map(act, &xs, &mut y);
                let mut z = xs.clone();
                apply_inplace(act, &mut z);
                assert_eq!(y, z, "{isa:?} {act:?}: in place and mapped differ");
                for n in 0..20 {
                    // Every length of the last, partial vector.
                    let mut z = xs[..n].to_vec();
                    apply_inplace(act, &mut z);
                    assert_eq!(&y[..n], &z[..], "{isa:?} {act:?}: {n} values");
                }
                for (x, y) in xs.iter().zip(&y) {
                    let want = f(*x as f64);
                    let err = (*y as f64 - want).abs();
                    assert!(err <= tol * want.abs().max(1.0), "{isa:?} {act:?}({x}) = {y}, want {want}");
                }
                let mut z = [0.0; 3];
                map(act, &[1.0, f32::NAN, -2.0], &mut z);
                assert!(z[1].is_nan() && !z[0].is_nan() && !z[2].is_nan(), "{isa:?} {act:?}: NaN gave {z:?}");
            }
        });
    }

    #[test]
    fn simple_activations_match_definitions_on_every_path() {
        let xs = grid();
        for_each_isa(|isa| {
            for act in [Act::Relu, Act::Clip(-1.5, 6.0), Act::LeakyRelu(0.1), Act::HardSigmoid(0.2, 0.5), Act::HardSwish] {
                let mut y = xs.clone();
                apply_inplace(act, &mut y);
                let mut z = vec![0.0; xs.len()];
                map(act, &xs, &mut z);
                assert_eq!(y, z, "{isa:?} {act:?}: in place and mapped differ");
                for (x, y) in xs.iter().zip(&y) {
                    let want = match act {
                        Act::Relu => x.max(0.0),
                        Act::Clip(lo, hi) => x.max(lo).min(hi),
                        Act::LeakyRelu(a) => if *x < 0.0 { a * x } else { *x },
                        Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
                        _ => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
                    };
                    assert!((y - want).abs() <= 1e-6 * want.abs().max(1.0), "{isa:?} {act:?}({x}) = {y}");
                }
            }
            let mut y = [f32::NAN];
            apply_inplace(Act::Relu, &mut y);
            assert!(y[0].is_nan());
        });
    }
}
