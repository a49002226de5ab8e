//! 2-D MaxPool and AveragePool of `f32` planes with AVX-512, entirely in registers.
//!
//! Sixteen consecutive outputs of a row need input columns `c0 .. c0 + 15·s + kw` of each
//! window row (`c0` the first output's first column, `s` the stride, 1 to 4). They are loaded as
//! up to four vectors (64 columns; columns outside the input masked to -inf for a max, which
//! never wins, or to 0 for a sum), combined over the window rows with vertical max (add)
//! instructions, then each tap `t` of the 16 outputs (`column s·i + t` for output `i`) is picked
//! out of the vectors by two-source permutes and maxed (added) in; an average divides by
//! its window's count (taps inside the input, or inside the padded input with
//! `count_include_pad`: a row factor times a column factor; multiplied by its reciprocal, so
//! within an ulp or two of the quotient). No temporary row, no phase split
//! in memory: the plane is read once per window row and each output written once.
//!
//! MaxPool: the same result as the per-output definition for every input without NaN (max is
//! exact). NaN: taps are compared rows before columns and a padding tap is -inf, so the result
//! depends on where the NaN sits; ONNX leaves this open (onnxruntime's result also depends on
//! tap order). AveragePool: the sum is taken rows first, then columns, so it may differ from a
//! per-output sum in the last bits.

use crate::kernels::conv::Window3;

/// Widest window row the kernel takes (and, with the stride, the 64 loaded columns:
/// `15·s + kw <= 64`).
const MAX_KW: usize = 16;

/// Columns loaded per window row for 16 outputs: four vectors.
const MAX_SPAN: usize = 64;

/// What the window computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Max,
    /// The mean of the taps inside the input, or (`include_pad`) the sum over the taps inside
    /// the padded input, padding counting as zeros.
    Avg { include_pad: bool },
}

/// Whether [`pool_planes_f32`] computes window `w` on this CPU.
pub fn applicable(w: &Window3) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let [_, kh, kw] = w.kernel;
        crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512
            && w.input[0] == 1
            && w.kernel[0] == 1
            && w.out[0] == 1
            && (1..=4).contains(&w.strides[2])
            && 15 * w.strides[2] + kw <= MAX_SPAN
            && w.strides[1] >= 1
            && w.dilations[2] == 1
            && w.dilations[1] >= 1
            && (1..=MAX_KW).contains(&kw)
            && kh >= 1
            && w.pad_begin[2] < kw
            && w.input[1] > 0
            && w.input[2] > 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = w;
        false
    }
}

/// `y = MaxPool(x)` or `AveragePool(x)` (`red`) for `planes` consecutive planes (`x`:
/// `[planes][IH][IW]`, `y`: `[planes][OH][OW]`, every output written); the window's permute
/// indices and row offsets are set up once for all of them. Returns `false` (and writes nothing)
/// when the window is not [`applicable`].
pub fn pool_planes_f32(w: &Window3, red: Reduce, planes: usize, x: &[f32], y: &mut [f32]) -> bool {
    if !applicable(w) {
        return false;
    }
    assert!(y.len() >= planes * w.out_size(), "pool_planes_f32: planes too short");
    // SAFETY: y holds every plane (asserted) and is borrowed exclusively.
    unsafe { pool_planes_rows_f32(w, red, planes, 0..w.out[1], x, y.as_mut_ptr()) }
}

/// [`pool_planes_f32`] for output rows `rows` of every plane only (a thread's share when the
/// planes are split by rows: a convolution before the pool split its output the same way, so
/// each thread then reads what it wrote, from its own cache).
///
/// # Safety
/// `y` must hold `planes` output planes, and no one else may access rows `rows` of them
/// meanwhile.
pub unsafe fn pool_planes_rows_f32(w: &Window3, red: Reduce, planes: usize, rows: std::ops::Range<usize>, x: &[f32], y: *mut f32) -> bool {
    pool_planes_strided_f32(w, red, planes, rows, x, w.in_size(), y, w.out_size())
}

/// [`pool_planes_rows_f32`] over planes `in_stride` floats apart in `x` and `out_stride` apart
/// in `y` (planes of a band of rows inside larger ones).
///
/// # Safety
/// As [`pool_planes_rows_f32`], for output planes `out_stride` apart.
#[allow(clippy::too_many_arguments)]
pub unsafe fn pool_planes_strided_f32(w: &Window3, red: Reduce, planes: usize, rows: std::ops::Range<usize>, x: &[f32], in_stride: usize, y: *mut f32, out_stride: usize) -> bool {
    if !applicable(w) {
        return false;
    }
    assert!(planes == 0 || (x.len() >= (planes - 1) * in_stride + w.in_size() && in_stride >= w.in_size() && out_stride >= w.out_size()), "pool_planes_strided_f32: planes too short");
    assert!(rows.end <= w.out[1], "pool_planes_strided_f32: rows past the output");
    let strides = (in_stride, out_stride);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F checked by `applicable`; x's extent asserted above, y's the caller's.
    unsafe {
        // The common windows with their tap count and stride as constants (indices in
        // registers, tap loop unrolled: 3/2, 2/2, 3/1 and 5/1 of CNNs, 4/4 and 3/3 of 1-D
        // audio and text models); any other applicable window in the general loop.
        macro_rules! by_window {
            ($avg:literal, $pad:expr) => {
                match (w.kernel[2], w.strides[2]) {
                    (3, 2) => pool_planes_avx512::<3, 2, $avg>(w, $pad, planes, rows, x, y, strides),
                    (2, 2) => pool_planes_avx512::<2, 2, $avg>(w, $pad, planes, rows, x, y, strides),
                    (3, 1) => pool_planes_avx512::<3, 1, $avg>(w, $pad, planes, rows, x, y, strides),
                    (5, 1) => pool_planes_avx512::<5, 1, $avg>(w, $pad, planes, rows, x, y, strides),
                    (4, 4) => pool_planes_avx512::<4, 4, $avg>(w, $pad, planes, rows, x, y, strides),
                    (3, 3) => pool_planes_avx512::<3, 3, $avg>(w, $pad, planes, rows, x, y, strides),
                    _ => pool_planes_avx512::<0, 0, $avg>(w, $pad, planes, rows, x, y, strides),
                }
            };
        }
        match red {
            Reduce::Max => by_window!(false, false),
            Reduce::Avg { include_pad } => by_window!(true, include_pad),
        }
    };
    true
}

/// Lanes `i` of a 16-column vector starting at column `c` with `0 <= c + i < n`.
#[inline(always)]
fn col_mask(c: isize, n: usize) -> u16 {
    let lo = (-c).clamp(0, 16);
    let hi = (n as isize - c).clamp(0, 16);
    if hi <= lo {
        return 0;
    }
    let below_hi = if hi == 16 { u16::MAX } else { (1u16 << hi) - 1 };
    below_hi & !((1u16 << lo) - 1)
}

/// The kernel for window rows of `KW` taps at horizontal stride `S` (`KW == 0`: both taken from
/// the window at run time), a sum divided by the count when `AVG` (`include_pad`: padding taps
/// count), else a max.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_planes_avx512<const KW: usize, const S: usize, const AVG: bool>(w: &Window3, include_pad: bool, planes: usize, out_rows: std::ops::Range<usize>, x: &[f32], y: *mut f32, (in_sz, out_sz): (usize, usize)) {
    use std::arch::x86_64::*;
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let kh_n = w.kernel[1];
    let (kw_n, s) = if KW == 0 { (w.kernel[2], w.strides[2]) } else { (KW, S) };
    let pl = w.pad_begin[2] as isize;
    // Tap t of output i is loaded column s·i + t: from vectors (0, 1) when below 32, else from
    // the last two loaded vectors, (1, 2) at index - 16 when three are loaded, (2, 3) at index -
    // 32 when four are (strides 3 and 4).
    let mut lo_idx = [_mm512_setzero_si512(); MAX_KW];
    let mut hi_idx = [_mm512_setzero_si512(); MAX_KW];
    let mut hi_mask = [0u16; MAX_KW];
    let span = s * 15 + kw_n;
    let need_third = span > 32;
    let need_fourth = span > 48;
    let hi_off = if need_fourth { 32 } else { 16 };
    for t in 0..kw_n {
        let idx: [i32; 16] = std::array::from_fn(|i| (s * i + t) as i32);
        lo_idx[t] = _mm512_loadu_si512(idx.as_ptr() as *const _);
        let hi: [i32; 16] = std::array::from_fn(|i| (idx[i] - hi_off).max(0));
        hi_idx[t] = _mm512_loadu_si512(hi.as_ptr() as *const _);
        hi_mask[t] = (0..16).filter(|&i| idx[i] >= 32).fold(0u16, |m, i| m | (1 << i));
    }
    // What masked-out (padding) lanes hold: nothing a max or a sum notices.
    let fill = _mm512_set1_ps(if AVG { 0.0 } else { f32::NEG_INFINITY });
    // Averages: per output column its window's column count (padded to whole vectors), per
    // output row its row count; the divisor is their product (at least 1: a window without
    // taps averages to 0).
    let (lo_h, hi_h) = if include_pad { (-(w.pad_begin[1] as isize), (ih_n + w.pad_end[1]) as isize) } else { (0, ih_n as isize) };
    let (lo_w, hi_w) = if include_pad { (-pl, (iw_n + w.pad_end[2]) as isize) } else { (0, iw_n as isize) };
    // The reciprocals of the products, per row count (at most kh): a multiply per vector
    // instead of a division (`vdivps` would take most of a 3x3 average's time).
    let ow_pad = ow_n.next_multiple_of(16);
    let recip: Vec<f32> = if AVG {
        (0..=kh_n)
            .flat_map(|rc| (0..ow_pad).map(move |o| (rc, o)))
            .map(|(rc, o)| if o < ow_n { 1.0 / (rc * w.taps_in(2, o, lo_w, hi_w)).max(1) as f32 } else { 1.0 })
            .collect()
    } else {
        Vec::new()
    };
    // Valid window rows of each output row (the same for every plane), as offsets in a plane.
    let mut row_start = Vec::with_capacity(oh_n + 1);
    let mut row_offs = Vec::new();
    for oh in 0..oh_n {
        row_start.push(row_offs.len());
        if !out_rows.contains(&oh) {
            continue;
        }
        for kh in 0..kh_n {
            let ih = w.coord(1, oh, kh);
            if ih >= 0 && ih < ih_n as isize {
                row_offs.push(ih as usize * iw_n);
            }
        }
    }
    row_start.push(row_offs.len());
    for p in 0..planes {
        let xp = x.as_ptr().add(p * in_sz);
        let yp = y.add(p * out_sz);
        for oh in out_rows.clone() {
            let rows = &row_offs[row_start[oh]..row_start[oh + 1]];
            let yrow = yp.add(oh * ow_n);
            let recip_row = if AVG { recip.as_ptr().add(w.taps_in(1, oh, lo_h, hi_h) * ow_pad) } else { recip.as_ptr() };
            let mut ow = 0;
            while ow < ow_n {
                let n = (ow_n - ow).min(16);
                let c0 = (ow * s) as isize - pl;
                let (m0, m1) = (col_mask(c0, iw_n), col_mask(c0 + 16, iw_n));
                let m2 = if need_third { col_mask(c0 + 32, iw_n) } else { 0 };
                let m3 = if need_fourth { col_mask(c0 + 48, iw_n) } else { 0 };
                let (mut v0, mut v1, mut v2, mut v3) = (fill, fill, fill, fill);
                for (r, &off) in rows.iter().enumerate() {
                    // Masked-out lanes are neither read nor faulted on, so the column pointer
                    // may point before the row (wrapping arithmetic, never dereferenced there).
                    let p = xp.add(off).wrapping_offset(c0);
                    let l0 = _mm512_mask_loadu_ps(fill, m0, p);
                    let l1 = _mm512_mask_loadu_ps(fill, m1, p.wrapping_add(16));
                    let l2 = if need_third { _mm512_mask_loadu_ps(fill, m2, p.wrapping_add(32)) } else { fill };
                    let l3 = if need_fourth { _mm512_mask_loadu_ps(fill, m3, p.wrapping_add(48)) } else { fill };
                    if r == 0 {
                        (v0, v1, v2, v3) = (l0, l1, l2, l3);
                    } else if AVG {
                        v0 = _mm512_add_ps(v0, l0);
                        v1 = _mm512_add_ps(v1, l1);
                        v2 = _mm512_add_ps(v2, l2);
                        v3 = _mm512_add_ps(v3, l3);
                    } else {
                        v0 = _mm512_max_ps(l0, v0);
                        v1 = _mm512_max_ps(l1, v1);
                        v2 = _mm512_max_ps(l2, v2);
                        v3 = _mm512_max_ps(l3, v3);
                    }
                }
                // (A macro, not a closure: the permutes must be compiled with AVX-512 enabled.)
                macro_rules! tap {
                    ($t:expr) => {{
                        let t = $t;
                        let a = _mm512_permutex2var_ps(v0, lo_idx[t], v1);
                        if hi_mask[t] == 0 {
                            a
                        } else if need_fourth {
                            _mm512_mask_mov_ps(a, hi_mask[t], _mm512_permutex2var_ps(v2, hi_idx[t], v3))
                        } else {
                            _mm512_mask_mov_ps(a, hi_mask[t], _mm512_permutex2var_ps(v1, hi_idx[t], v2))
                        }
                    }};
                }
                let mut acc = tap!(0);
                for t in 1..kw_n {
                    acc = if AVG { _mm512_add_ps(acc, tap!(t)) } else { _mm512_max_ps(tap!(t), acc) };
                }
                if AVG {
                    acc = _mm512_mul_ps(acc, _mm512_loadu_ps(recip_row.add(ow)));
                }
                let keep = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
                _mm512_mask_storeu_ps(yrow.add(ow), keep, acc);
                ow += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MaxPool or AveragePool of one plane by definition (padding taps skipped by a max, counted
    /// as zeros by an average with `include_pad`).
    fn naive(w: &Window3, red: Reduce, x: &[f32]) -> Vec<f32> {
        let [_, oh_n, ow_n] = w.out;
        let [_, ih_n, iw_n] = w.input;
        let mut y = Vec::with_capacity(oh_n * ow_n);
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let (mut max, mut sum, mut n, mut n_padded) = (f32::NEG_INFINITY, 0f64, 0, 0);
                for kh in 0..w.kernel[1] {
                    for kw in 0..w.kernel[2] {
                        let (ih, iw) = (w.coord(1, oh, kh), w.coord(2, ow, kw));
                        let in_padded = ih < (ih_n + w.pad_end[1]) as isize && iw < (iw_n + w.pad_end[2]) as isize;
                        if ih >= 0 && iw >= 0 && (ih as usize) < ih_n && (iw as usize) < iw_n {
                            let v = x[ih as usize * iw_n + iw as usize];
                            max = max.max(v);
                            sum += v as f64;
                            n += 1;
                        }
                        n_padded += in_padded as usize;
                    }
                }
                y.push(match red {
                    Reduce::Max => max,
                    Reduce::Avg { include_pad } => {
                        let d = if include_pad { n_padded } else { n };
                        if d == 0 {
                            0.0
                        } else {
                            (sum / d as f64) as f32
                        }
                    }
                });
            }
        }
        y
    }

    #[test]
    fn register_pools_match_the_definition() {
        let Some(_isa) = crate::kernels::simd::test_util::avx512_guard("the register pooling kernel") else { return };
        let mut n_cases = 0;
        // Kernels 1-7 and 16 (the specialized 3/2, 2/2, 3/1, 5/1, 4/4 and 3/3 tap
        // counts/strides and the general loop), strides 1 to 4 (three and four loaded vectors),
        // vertical stride 3 and dilation 2, 1-D windows, pads on both sides, ceil-mode
        // overhang; widths from 1 to more than four vectors.
        for (kh, kw, sh, sw, dh) in [(3, 3, 2, 2, 1), (2, 2, 2, 2, 1), (3, 3, 1, 1, 1), (5, 5, 1, 1, 1), (1, 1, 1, 1, 1), (5, 5, 1, 2, 1), (2, 7, 3, 1, 2), (1, 16, 1, 2, 1), (4, 16, 1, 1, 1), (1, 4, 1, 4, 1), (4, 4, 4, 4, 1), (1, 3, 1, 3, 1), (2, 2, 1, 3, 1), (1, 16, 1, 3, 1), (1, 2, 1, 4, 1), (3, 5, 2, 3, 1)] {
            for (pb, pe, extra) in [(0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 1)] {
                if pb >= kw.min(kh) || pe >= kw.min(kh) {
                    continue;
                }
                for (ih, iw) in [(9, 17), (7, 40), (12, 11), (3, 1), (5, 111), (4, 16), (1, 250)] {
                    let out = |n: usize, k: usize, s: usize, d: usize| (n + pb + pe + extra).checked_sub(d * (k - 1) + 1).map(|v| v / s + 1);
                    let (Some(oh), Some(ow)) = (out(ih, kh, sh, dh), out(iw, kw, sw, 1)) else { continue };
                    let w = Window3 {
                        input: [1, ih, iw],
                        kernel: [1, kh, kw],
                        strides: [1, sh, sw],
                        dilations: [1, dh, 1],
                        pad_begin: [0, pb, pb],
                        pad_end: [0, pe, pe],
                        out: [1, oh, ow],
                    };
                    // Three planes in one call (setup shared), each against the definition.
                    let x: Vec<f32> = (0..3 * ih * iw).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
                    for red in [Reduce::Max, Reduce::Avg { include_pad: false }, Reduce::Avg { include_pad: true }] {
                        let want: Vec<f32> = x.chunks_exact(ih * iw).flat_map(|p| naive(&w, red, p)).collect();
                        let mut got = vec![f32::NAN; want.len() + 5];
                        assert!(pool_planes_f32(&w, red, 3, &x, &mut got), "{w:?} not applicable");
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            // Max is exact; the sums of integers are too, then a reciprocal.
                            if red == Reduce::Max {
                                assert_eq!(g.to_bits(), e.to_bits(), "{red:?} {w:?} [{i}]: {g} vs {e}");
                            } else {
                                assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{red:?} {w:?} [{i}]: {g} vs {e}");
                            }
                        }
                        assert!(got[want.len()..].iter().all(|v| v.is_nan()), "{w:?}: wrote past the plane");
                    }
                    n_cases += 1;
                }
            }
        }
        assert!(n_cases > 100, "only {n_cases} cases ran");
    }
}
