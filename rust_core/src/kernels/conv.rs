//! Convolution building blocks over a 3-D window (1-D and 2-D convolutions use leading axes of
//! size 1): im2col / col2im, a direct depthwise kernel, and the GEMM-based forward pass.
//!
//! Layouts: an image is `[C][D][H][W]` contiguous; a column buffer is
//! `[C][KD][KH][KW][OD][OH][OW]` so that `W_g (Mg × Cg·K) · col (Cg·K × OD·OH·OW)` is the output.

use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::float::{as_f32, as_f32_mut, Float};
use crate::kernels::gemm::{gemm, gemm_par, GemmElem, MatRef};
use crate::kernels::sgemm::{sgemm_ex, sgemm_ex_par, sgemm_implicit, sgemm_implicit_par, ASrc, Epilogue, ImplicitB, PackedA};
use crate::kernels::simd::MulAdd;
use crate::kernels::vmath::{apply_inplace_any, apply_inplace_body, Act};
use crate::kernels::{Scratch, SendPtr};

/// A window over exactly three spatial axes (D, H, W).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window3 {
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub strides: [usize; 3],
    pub dilations: [usize; 3],
    pub pad_begin: [usize; 3],
    pub pad_end: [usize; 3],
    pub out: [usize; 3],
}

impl Window3 {
    /// Number of taps of kernel axis `axis` at output `o` landing in `[lo, hi)` (input
    /// coordinates): an average pool's count (`[0, input)`, or the padded extent).
    #[inline]
    pub fn taps_in(&self, axis: usize, o: usize, lo: isize, hi: isize) -> usize {
        (0..self.kernel[axis]).filter(|&k| (lo..hi).contains(&self.coord(axis, o, k))).count()
    }

    pub fn in_size(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_size(&self) -> usize {
        self.out.iter().product()
    }
    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Input coordinate on `axis` of output position `o` and kernel tap `k` (may be outside).
    #[inline(always)]
    pub fn coord(&self, axis: usize, o: usize, k: usize) -> isize {
        (o * self.strides[axis] + k * self.dilations[axis]) as isize - self.pad_begin[axis] as isize
    }

    /// The range of output positions `o` on `axis` whose tap `k` falls inside the input.
    #[inline]
    pub fn valid_out_range(&self, axis: usize, k: usize) -> (usize, usize) {
        let s = self.strides[axis] as isize;
        let off = (k * self.dilations[axis]) as isize - self.pad_begin[axis] as isize;
        let n_in = self.input[axis] as isize;
        let n_out = self.out[axis] as isize;
        // o*s + off >= 0  ->  o >= ceil(-off / s)
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        // o*s + off <= n_in - 1  ->  o <= floor((n_in - 1 - off) / s)
        let hi = if n_in - 1 - off < 0 {
            0
        } else {
            ((n_in - 1 - off) / s + 1).min(n_out)
        };
        let lo = lo.min(n_out);
        (lo as usize, (hi.max(lo)) as usize)
    }
}

/// Fill the column rows `rows` (each `c·K + tap`) of `col` from image `x` (`[C][D][H][W]`).
/// `col` holds exactly those rows, each `w.out_size()` long.
pub fn im2col_rows<T: Float>(w: &Window3, x: &[T], rows: std::ops::Range<usize>, col: &mut [T]) {
    let [_, kh, kw] = w.kernel;
    let ksz = w.kernel_size();
    let [od_n, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let in_plane = w.in_size();
    let out_sz = w.out_size();
    let (sw, dw, pw) = (w.strides[2], w.dilations[2], w.pad_begin[2]);
    for (ri, row) in rows.enumerate() {
        let c = row / ksz;
        let tap = row % ksz;
        let (tkd, tkh, tkw) = (tap / (kh * kw), (tap / kw) % kh, tap % kw);
        let xc = &x[c * in_plane..(c + 1) * in_plane];
        let dst = &mut col[ri * out_sz..(ri + 1) * out_sz];
        let (lo, hi) = w.valid_out_range(2, tkw);
        for od in 0..od_n {
            let id = w.coord(0, od, tkd);
            for oh in 0..oh_n {
                let ih = w.coord(1, oh, tkh);
                let d = &mut dst[(od * oh_n + oh) * ow_n..(od * oh_n + oh + 1) * ow_n];
                if id < 0 || id >= w.input[0] as isize || ih < 0 || ih >= ih_n as isize {
                    d.iter_mut().for_each(|v| *v = T::ZERO);
                    continue;
                }
                let base = (id as usize * ih_n + ih as usize) * iw_n;
                d[..lo].iter_mut().for_each(|v| *v = T::ZERO);
                d[hi..].iter_mut().for_each(|v| *v = T::ZERO);
                if hi > lo {
                    let iw0 = lo * sw + tkw * dw - pw;
                    if sw == 1 {
                        d[lo..hi].copy_from_slice(&xc[base + iw0..base + iw0 + (hi - lo)]);
                    } else if let (2, Some(src), Some(dst)) = (sw, as_f32(&xc[base + iw0..]), as_f32_mut(&mut d[lo..hi])) {
                        copy_stride2_f32(src, dst);
                    } else {
                        let src = xc[base + iw0..].iter().step_by(sw);
                        for (v, s) in d[lo..hi].iter_mut().zip(src) {
                            *v = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Scatter-add column rows `rows` of `col` into image `y` (`[C][D][H][W]` of `w.input`): the
/// adjoint of [`im2col_rows`]. Rows of one channel must all be handled by one caller.
pub fn col2im_rows<T: Float>(w: &Window3, col: &[T], rows: std::ops::Range<usize>, y: &mut [T]) {
    let [_, kh, kw] = w.kernel;
    let ksz = w.kernel_size();
    let [od_n, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let in_plane = w.in_size();
    let out_sz = w.out_size();
    let (sw, dw, pw) = (w.strides[2], w.dilations[2], w.pad_begin[2]);
    for (ri, row) in rows.enumerate() {
        let c = row / ksz;
        let tap = row % ksz;
        let (tkd, tkh, tkw) = (tap / (kh * kw), (tap / kw) % kh, tap % kw);
        let yc = &mut y[c * in_plane..(c + 1) * in_plane];
        let src = &col[ri * out_sz..(ri + 1) * out_sz];
        let (lo, hi) = w.valid_out_range(2, tkw);
        if hi <= lo {
            continue;
        }
        for od in 0..od_n {
            let id = w.coord(0, od, tkd);
            if id < 0 || id >= w.input[0] as isize {
                continue;
            }
            for oh in 0..oh_n {
                let ih = w.coord(1, oh, tkh);
                if ih < 0 || ih >= ih_n as isize {
                    continue;
                }
                let s = &src[(od * oh_n + oh) * ow_n..(od * oh_n + oh + 1) * ow_n];
                let base = (id as usize * ih_n + ih as usize) * iw_n;
                let iw0 = lo * sw + tkw * dw - pw;
                if sw == 1 {
                    for (d, v) in yc[base + iw0..base + iw0 + (hi - lo)]
                        .iter_mut()
                        .zip(&s[lo..hi])
                    {
                        *d += *v;
                    }
                } else {
                    for (j, v) in s[lo..hi].iter().enumerate() {
                        yc[base + iw0 + j * sw] += *v;
                    }
                }
            }
        }
    }
}

/// `even[i] = src[2i]` and `odd[i] = src[2i + 1]` (the two column phases of an input row;
/// `even` holds at most `⌈len/2⌉` values, `odd` at most `⌊len/2⌋`). AVX-512: two loads and two
/// two-source permutes per 32 floats, against eight shuffles for two stride-2 copies.
pub(crate) fn split_columns2(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    assert!(2 * even.len() <= src.len() + 1 && 2 * odd.len() <= src.len(), "split_columns2: {} + {} columns from {}", even.len(), odd.len(), src.len());
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: AVX-512 CPU.
        i = unsafe { split_columns2_avx512(src, even, odd) };
    }
    for (j, d) in even.iter_mut().enumerate().skip(i) {
        *d = src[2 * j];
    }
    for (j, d) in odd.iter_mut().enumerate().skip(i) {
        *d = src[2 * j + 1];
    }
}

/// The most horizontal taps of a [`PhaseRows`] window.
#[cfg(target_arch = "x86_64")]
pub(crate) const PHASE_MAX_TAPS: usize = 5;

/// Where a direct row kernel (the depthwise one) reads one input plane's rows, so that the taps
/// of 16 consecutive outputs are 16 consecutive floats. Stride 1: the plane itself. Stride 2:
/// each row split into its even and odd columns (`phase` 0 and 1).
#[cfg(target_arch = "x86_64")]
pub(crate) struct PhaseRows {
    /// Row `i`'s phase `p` starts at `base + i·pitch + p·half` (`base` may point before the
    /// buffer when only some rows were split: it is only offset to rows that were).
    pub base: *const f32,
    pub pitch: usize,
    pub half: usize,
    /// Values in each phase's rows.
    pub len: [usize; 2],
    /// Per horizontal tap: its phase and its column offset in that phase from the output column.
    pub phase: [usize; PHASE_MAX_TAPS],
    pub off: [isize; PHASE_MAX_TAPS],
    /// Input rows, and the top padding (output row 0's first tap reads input row `-ph`).
    pub ih: isize,
    pub ph: isize,
}

#[cfg(target_arch = "x86_64")]
impl PhaseRows {
    fn taps(w: &Window3, base: *const f32, pitch: usize, half: usize, len: [usize; 2]) -> PhaseRows {
        let (s, pw) = (w.strides[2] as isize, w.pad_begin[2] as isize);
        let mut r = PhaseRows { base, pitch, half, len, phase: [0; PHASE_MAX_TAPS], off: [0; PHASE_MAX_TAPS], ih: w.input[1] as isize, ph: w.pad_begin[1] as isize };
        for kw in 0..w.kernel[2].min(PHASE_MAX_TAPS) {
            let d = (kw * w.dilations[2]) as isize - pw;
            r.phase[kw] = d.rem_euclid(s) as usize;
            r.off[kw] = d.div_euclid(s);
        }
        r
    }

    /// The rows of plane `x` (`ih · iw`) read where they are (stride 1).
    pub fn in_place(w: &Window3, x: *const f32) -> PhaseRows {
        debug_assert_eq!(w.strides[2], 1);
        let iw = w.input[2];
        PhaseRows::taps(w, x, iw, 0, [iw, iw])
    }

    /// Rows `rows` of plane `x` split into their even and odd columns in `buf` (stride 2;
    /// `buf` holds `rows.len() · 2 · ceil(iw / 2)` floats: the even columns of every row, then
    /// the odd ones): only those rows may be read. Even widths split all rows in one pass
    /// over the flattened rows (a call per row cost as much as the taps on 28-wide planes).
    pub fn split(w: &Window3, x: &[f32], rows: std::ops::Range<usize>, buf: &mut [f32]) -> PhaseRows {
        debug_assert_eq!(w.strides[2], 2);
        let iw = w.input[2];
        let (half, n) = (iw.div_ceil(2), rows.len());
        assert!(rows.end * iw <= x.len() && n * 2 * half <= buf.len() && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512);
        let (even, odd) = buf[..2 * n * half].split_at_mut(n * half);
        // SAFETY (both calls): AVX-512 CPU (asserted, as the direct kernels require).
        if iw % 2 == 0 {
            unsafe { split_columns2_avx512(&x[rows.start * iw..rows.end * iw], even, odd) };
        } else {
            for (r, i) in rows.clone().enumerate() {
                let src = &x[i * iw..(i + 1) * iw];
                unsafe { split_columns2_avx512(src, &mut even[r * half..(r + 1) * half], &mut odd[r * half..r * half + iw / 2]) };
            }
        }
        let base = buf.as_ptr().wrapping_sub(rows.start * half);
        PhaseRows::taps(w, base, half, n * half, [half, iw / 2])
    }

    /// Where tap `kw` of output column `ow` reads in input row `i` (masked lanes of a load
    /// from it are not read, so it may lie outside the row).
    #[inline(always)]
    pub fn at(&self, i: usize, kw: usize, ow: usize) -> *const f32 {
        self.base.wrapping_add(i * self.pitch + self.phase[kw] * self.half).wrapping_offset(ow as isize + self.off[kw])
    }

    /// Lanes of the 16 outputs from column `ow` whose tap `kw` lies inside its row.
    #[inline(always)]
    pub fn mask(&self, kw: usize, ow: usize) -> u16 {
        let start = ow as isize + self.off[kw];
        let lo = (-start).clamp(0, 16);
        let hi = (self.len[self.phase[kw]] as isize - start).clamp(0, 16);
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        }
    }
}

/// [`split_columns2`] with AVX-512: 32 source floats per step, the partial last step masked;
/// returns how many of each were written (all of them).
///
/// # Safety
/// AVX-512F CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_columns2_avx512(src: &[f32], even: &mut [f32], odd: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let lanes = |n: usize| ((1u32 << n.min(16)) - 1) as u16;
    let mut i = 0;
    // Loads read src[2i..] up to its end, stores write even and odd up to theirs (masked).
    while i < even.len().max(odd.len()) {
        let n = src.len() - 2 * i;
        let v0 = _mm512_maskz_loadu_ps(lanes(n), src.as_ptr().add(2 * i));
        let v1 = _mm512_maskz_loadu_ps(lanes(n.saturating_sub(16)), src.as_ptr().wrapping_add(2 * i + 16));
        _mm512_mask_storeu_ps(even.as_mut_ptr().wrapping_add(i), lanes(even.len().saturating_sub(i)), _mm512_permutex2var_ps(v0, ie, v1));
        _mm512_mask_storeu_ps(odd.as_mut_ptr().wrapping_add(i), lanes(odd.len().saturating_sub(i)), _mm512_permutex2var_ps(v0, io, v1));
        i += 16;
    }
    even.len().max(odd.len())
}

/// `dst[j] = src[2j]` (the columns of one stride-2 im2col row).
fn copy_stride2_f32(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    let src = &src[..2 * n - 1];
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx2 {
        // SAFETY: the CPU has AVX2; every read is checked against `src` inside.
        j = unsafe { copy_stride2_avx2(src, dst) };
    }
    for (d, s) in dst[j..].iter_mut().zip(src[2 * j..].iter().step_by(2)) {
        *d = *s;
    }
}

/// The whole groups of 8 outputs whose 16 source floats lie inside `src`; returns how many
/// outputs were written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_stride2_avx2(src: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let mut j = 0;
    while j + 8 <= dst.len() && 2 * j + 16 <= src.len() {
        let a = _mm256_loadu_ps(src.as_ptr().add(2 * j));
        let b = _mm256_loadu_ps(src.as_ptr().add(2 * j + 8));
        // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
        _mm256_storeu_ps(dst.as_mut_ptr().add(j), e);
        j += 8;
    }
    j
}

/// Direct convolution of one input channel plane `x` with `taps` (`[KD][KH][KW]`), accumulated
/// into output plane `y` (`[OD][OH][OW]`), which the caller initialized (e.g. with the bias).
/// Output rows stay in L1 while every tap touching them is applied.
pub fn conv_plane_direct<T: Float>(w: &Window3, x: &[T], taps: &[T], y: &mut [T]) {
    let [kd_n, kh_n, kw_n] = w.kernel;
    let [od_n, oh_n, ow_n] = w.out;
    let [id_n, ih_n, iw_n] = w.input;
    let (sw, dw, pw) = (w.strides[2], w.dilations[2], w.pad_begin[2]);
    // Per kernel column: the valid output range and the input column of its first output.
    let cols: Vec<(usize, usize, usize)> = (0..kw_n)
        .map(|kw| {
            let (lo, hi) = w.valid_out_range(2, kw);
            (lo, hi, if hi > lo { lo * sw + kw * dw - pw } else { 0 })
        })
        .collect();
    for od in 0..od_n {
        for oh in 0..oh_n {
            let yrow = &mut y[(od * oh_n + oh) * ow_n..(od * oh_n + oh + 1) * ow_n];
            for kd in 0..kd_n {
                let id = w.coord(0, od, kd);
                if id < 0 || id >= id_n as isize {
                    continue;
                }
                for kh in 0..kh_n {
                    let ih = w.coord(1, oh, kh);
                    if ih < 0 || ih >= ih_n as isize {
                        continue;
                    }
                    let xrow = &x[(id as usize * ih_n + ih as usize) * iw_n
                        ..(id as usize * ih_n + ih as usize + 1) * iw_n];
                    let trow = &taps[(kd * kh_n + kh) * kw_n..(kd * kh_n + kh + 1) * kw_n];
                    for (kw, &(lo, hi, iw0)) in cols.iter().enumerate() {
                        if hi <= lo {
                            continue;
                        }
                        let wv = trow[kw];
                        let yr = &mut yrow[lo..hi];
                        if sw == 1 {
                            for (o, xv) in yr.iter_mut().zip(&xrow[iw0..iw0 + (hi - lo)]) {
                                *o += wv * *xv;
                            }
                        } else {
                            for (o, xv) in yr.iter_mut().zip(xrow[iw0..].iter().step_by(sw)) {
                                *o += wv * *xv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Depthwise convolution of one 2-D `f32` plane (`w.input[0] == 1`), written (not accumulated)
/// into `y` as `act(conv + bias)`.
///
/// The plane is first copied into `scratch` with its left/right padding made explicit and, for
/// strided windows, each row split into `stride` phases (column `j·s + p` at phase `p`, index
/// `j`), so that tap `kw` of consecutive outputs reads consecutive floats. Every output row is
/// then computed [`DW_LANES`] outputs at a time, all taps accumulated in registers, one store;
/// rows of the window outside the input are skipped.
#[inline(always)]
fn depthwise_plane_body<M: MulAdd>(
    w: &Window3,
    x: &[f32],
    taps: &[f32],
    bias: f32,
    act: Act,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    const V: usize = DW_LANES;
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let [_, kh_n, kw_n] = w.kernel;
    let (sw, dw, pw) = (w.strides[2], w.dilations[2], w.pad_begin[2]);
    let ow_pad = ow_n.div_ceil(V) * V;
    // Phase length: the last chunk's last tap must stay inside.
    let plen = ow_pad + (kw_n - 1) * dw / sw + 1;
    let row_len = sw * plen;
    scratch.resize(ih_n * row_len + ow_pad, 0.0);
    let (padded, out_tmp) = scratch.split_at_mut(ih_n * row_len);
    for ih in 0..ih_n {
        let xrow = &x[ih * iw_n..(ih + 1) * iw_n];
        let prow = &mut padded[ih * row_len..(ih + 1) * row_len];
        for p in 0..sw {
            let dst = &mut prow[p * plen..(p + 1) * plen];
            // Valid j: 0 <= j·sw + p - pw < iw_n.
            let j0 = pw.saturating_sub(p).div_ceil(sw).min(plen);
            let j1 = if iw_n + pw > p { (iw_n + pw - p).div_ceil(sw).min(plen) } else { 0 }.max(j0);
            dst[..j0].fill(0.0);
            dst[j1..].fill(0.0);
            let first = j0 * sw + p - pw;
            if sw == 1 {
                dst[j0..j1].copy_from_slice(&xrow[first..first + (j1 - j0)]);
            } else {
                for (d, v) in dst[j0..j1].iter_mut().zip(xrow[first..].iter().step_by(sw)) {
                    *d = *v;
                }
            }
        }
    }
    // Source offset of tap kw (phase and start index) inside a padded row.
    let mut tap_off = [0usize; 16];
    let mut tap_vec = Vec::new();
    let tap_off: &mut [usize] = if kw_n <= 16 {
        &mut tap_off[..kw_n]
    } else {
        tap_vec.resize(kw_n, 0);
        &mut tap_vec
    };
    for (kw, o) in tap_off.iter_mut().enumerate() {
        *o = (kw * dw % sw) * plen + kw * dw / sw;
    }
    // (input row, kernel row) of the window rows inside the input; no allocation per plane
    // for kernels up to 16 rows tall.
    let mut rows_buf = [(0usize, 0usize); 16];
    let mut rows_vec = Vec::new();
    for oh in 0..oh_n {
        let mut n_rows = 0;
        for kh in 0..kh_n {
            let ih = w.coord(1, oh, kh);
            if ih >= 0 && (ih as usize) < ih_n {
                if kh_n <= 16 {
                    rows_buf[n_rows] = (ih as usize, kh);
                } else {
                    rows_vec.truncate(n_rows);
                    rows_vec.push((ih as usize, kh));
                }
                n_rows += 1;
            }
        }
        let rows: &[(usize, usize)] = if kh_n <= 16 { &rows_buf[..n_rows] } else { &rows_vec[..n_rows] };
        let mut ow = 0;
        while ow < ow_pad {
            // Three accumulators (taps kw, kw+1, kw+2): independent FMA chains in registers.
            let mut a0 = [bias; V];
            let mut a1 = [0f32; V];
            let mut a2 = [0f32; V];
            for &(ih, kh) in rows {
                let prow = &padded[ih * row_len + ow..(ih + 1) * row_len];
                let trow = &taps[kh * kw_n..(kh + 1) * kw_n];
                let mut kw = 0;
                while kw + 3 <= kw_n {
                    let (s0, s1, s2) = (&prow[tap_off[kw]..], &prow[tap_off[kw + 1]..], &prow[tap_off[kw + 2]..]);
                    let (s0, s1, s2) = (&s0[..V], &s1[..V], &s2[..V]);
                    let (w0, w1, w2) = (trow[kw], trow[kw + 1], trow[kw + 2]);
                    for l in 0..V {
                        a0[l] = M::madd(w0, s0[l], a0[l]);
                        a1[l] = M::madd(w1, s1[l], a1[l]);
                        a2[l] = M::madd(w2, s2[l], a2[l]);
                    }
                    kw += 3;
                }
                while kw < kw_n {
                    let s0 = &prow[tap_off[kw]..][..V];
                    let w0 = trow[kw];
                    for l in 0..V {
                        a0[l] = M::madd(w0, s0[l], a0[l]);
                    }
                    kw += 1;
                }
            }
            let o = &mut out_tmp[ow..ow + V];
            for l in 0..V {
                o[l] = a0[l] + a1[l] + a2[l];
            }
            ow += V;
        }
        // The activation runs over whole vectors of the padded row, then the row is stored.
        apply_inplace_body::<M>(act, &mut out_tmp[..ow_pad]);
        y[oh * ow_n..(oh + 1) * ow_n].copy_from_slice(&out_tmp[..ow_n]);
    }
}

/// Outputs computed together by the depthwise kernel (one AVX2 register).
const DW_LANES: usize = 8;

crate::multiversion! {
    /// See [`depthwise_plane_body`].
    fn depthwise_plane_f32(
        w: &Window3,
        x: &[f32],
        taps: &[f32],
        bias: f32,
        act: Act,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
    ) = depthwise_plane_body;
}

/// Deepest pointwise convolution whose GEMM reads the image unpacked whatever its output
/// channels.
const POINTWISE_MAX_DEPTH: usize = 256;
/// Output channels from which a pointwise convolution deeper than [`POINTWISE_MAX_DEPTH`]
/// packs B: the packing is shared by every pass of A's rows over B, so it pays for tall
/// products only (1000 x 512 on 13x13: 12% faster packed; 96 x 576 on 7x7: 14% slower,
/// 192 x 1152 on 7x7: 3% slower, 288 x 576 on 7x7: equal).
const POINTWISE_DEEP_MAX_ROWS: usize = 256;

/// Least fraction of the vector lanes doing useful work for [`ImplicitConv`].
const IMPLICIT_MIN_USE: f32 = 0.6;

/// A 1-D/2-D `f32` convolution run as a GEMM whose B is read straight from a zero-padded copy
/// of the image ([`ImplicitB`]): no im2col buffer is written or packed. A (phase) row is `ws`
/// long for `ow` outputs, so `ow / ws` of the lanes do useful work; below [`IMPLICIT_MIN_USE`]
/// im2col + GEMM is used.
struct ImplicitConv {
    /// Offset in the prepared group image of each row `c·K + tap` of the im2col matrix.
    offs: Vec<usize>,
    /// Strides (each padded plane is split into `sh·sw` phase sub-images).
    sh: usize,
    sw: usize,
    /// Phase sub-image height and width.
    hs: usize,
    ws: usize,
    /// Zero columns before the data of each prepared row (phase units). With unit column
    /// strides this is `max(left pad, right reach)`, not their sum: the zeros after a row's data
    /// are the next row's leading zeros, so a row is `lead + W` long instead of `W + pads`
    /// (13x13 images with a 3x3 window: 14 columns instead of 15, 12% fewer wasted lanes).
    lead: usize,
    /// Floats of the prepared group image (at least what the micro-kernel reads).
    len: usize,
    /// Pointwise window: B is the group image itself (no copy), one row of `ws` columns.
    direct: bool,
    /// Run transposed ([`sgemm_implicit_t`](crate::kernels::sgemm::sgemm_implicit_t), pixels
    /// × channels) instead of with vectors along the pixels.
    transposed: bool,
}

impl ImplicitConv {
    /// The plan for window `w` over `cg` channels, or `None` when im2col + GEMM should run.
    ///
    /// Strided windows become unit-stride ones over phase sub-images: padded row `r·sh + ph`,
    /// column `c·sw + pw` goes to row `r`, column `c` of sub-image `(ph, pw)`, so that tap
    /// `(kh, kw)` of consecutive outputs reads consecutive floats of one sub-image.
    fn plan(w: &Window3, cg: usize) -> Option<ImplicitConv> {
        Self::layout(w, cg).filter(|imp| imp.pixel_tiles_pay(w))
    }

    /// Whether [`ImplicitB`]'s tiles of 32 pixels suit this layout: tiles span at most four
    /// grid rows, and at least [`IMPLICIT_MIN_USE`] of their lanes do useful work.
    fn pixel_tiles_pay(&self, w: &Window3) -> bool {
        let [_, oh_n, ow_n] = w.out;
        !((oh_n > 1 && self.ws < 6) || (ow_n as f32) < IMPLICIT_MIN_USE * self.ws as f32)
    }

    /// The plan run transposed, pixels × channels (see [`Self::transposed`]), for window `w` over
    /// `cg` channels with `mg` output channels, when its vectors along the output channels
    /// fill more lanes than [`Self::plan`]'s along the pixels ([`implicit_t_pays`]).
    fn transposed(w: &Window3, cg: usize, mg: usize) -> Option<ImplicitConv> {
        let mut imp = Self::layout(w, cg)?;
        let [_, oh_n, ow_n] = w.out;
        if !implicit_t_pays(oh_n, ow_n, imp.ws, mg, imp.pixel_tiles_pay(w)) {
            return None;
        }
        imp.transposed = true;
        Some(imp)
    }

    /// The prepared image's layout and offsets for window `w` over `cg` channels, whatever the
    /// lanes used (None: not a 1-D/2-D window, or no AVX-512).
    fn layout(w: &Window3, cg: usize) -> Option<ImplicitConv> {
        let [_, kh_n, kw_n] = w.kernel;
        let [_, oh_n, ow_n] = w.out;
        let [_, ih_n, iw_n] = w.input;
        let [_, sh, sw] = w.strides;
        let [_, dh, dw] = w.dilations;
        let flat_depth = w.input[0] == 1 && w.kernel[0] == 1 && w.out[0] == 1 && w.pad_begin[0] == 0 && w.pad_end[0] == 0;
        if !crate::kernels::sgemm::implicit_available() || !flat_depth || oh_n == 0 || ow_n == 0 || cg == 0 || sh == 0 || sw == 0 {
            return None;
        }
        let hs = (ih_n + w.pad_begin[1] + w.pad_end[1]).div_ceil(sh);
        let pl = w.pad_begin[2];
        // Columns the last output reads past the input's last one.
        let right_reach = (ow_n - 1 + (kw_n - 1) * dw).saturating_sub(pl + iw_n - 1);
        let (ws, lead) = if sw == 1 {
            let lead = pl.max(right_reach);
            (lead + iw_n, lead)
        } else {
            ((iw_n + pl + w.pad_end[2]).div_ceil(sw), pl)
        };
        // Every valid output must read inside its sub-image (with unit column strides, the
        // columns past a row's end are the next row's leading zeros).
        let col_reach = if sw == 1 { ws + right_reach.min(lead) } else { ws };
        if oh_n - 1 + (kh_n - 1) * dh / sh >= hs || ow_n - 1 + (kw_n - 1) * dw / sw + (lead - pl) >= col_reach {
            return None;
        }
        let sub = hs * ws;
        let plane = sh * sw * sub;
        let mut offs = Vec::with_capacity(cg * kh_n * kw_n);
        for c in 0..cg {
            for kh in 0..kh_n {
                for kw in 0..kw_n {
                    let (r, ph) = (kh * dh / sh, kh * dh % sh);
                    let (q, pw) = (kw * dw / sw, kw * dw % sw);
                    offs.push(c * plane + (ph * sw + pw) * sub + r * ws + q + (lead - pl));
                }
            }
        }
        let offs_max = offs.iter().copied().max().unwrap_or(0);
        let len = (cg * plane).max(ImplicitB::reach(offs_max, ws, oh_n, ow_n));
        Some(ImplicitConv { offs, sh, sw, hs, ws, lead, len, direct: false, transposed: false })
    }

    /// The plan for a pointwise window (1×1, unit strides, no padding) over `cg` channels of
    /// `plane` floats: the GEMM reads the image in place, a plain product without packing B.
    /// Deeper than [`POINTWISE_MAX_DEPTH`] channels only for fewer than
    /// [`POINTWISE_DEEP_MAX_ROWS`] output channels `mg`: every pass of A's rows reads hundreds
    /// of strided rows of B, which packed B panels avoid at the cost of one copy.
    fn pointwise(cg: usize, mg: usize, plane: usize) -> Option<ImplicitConv> {
        let deep = cg > POINTWISE_MAX_DEPTH && mg >= POINTWISE_DEEP_MAX_ROWS;
        if !crate::kernels::sgemm::implicit_available() || cg == 0 || deep || plane == 0 {
            return None;
        }
        let offs = (0..cg).map(|c| c * plane).collect();
        Some(ImplicitConv { offs, sh: 1, sw: 1, hs: 1, ws: plane, lead: 0, len: 0, direct: true, transposed: false })
    }

    /// Floats of one channel of the prepared image.
    fn plane(&self) -> usize {
        self.sh * self.sw * self.hs * self.ws
    }

    /// Fill rows `rows` of sub-images `subs` (sub-image `k` is phase `k % (sh·sw)` of channel
    /// `k / (sh·sw)`) of the prepared image `xp` from the group image `x` (`[cg][H][W]`):
    /// padding made explicit (zeros), every `sw`-th column of every `sh`-th row.
    ///
    /// # Safety
    /// `xp` points to the prepared image (`cg · plane()` floats); no one else accesses these
    /// rows meanwhile.
    unsafe fn pad_rows(&self, w: &Window3, x: &[f32], subs: std::ops::Range<usize>, rows: std::ops::Range<usize>, xp: &SendPtr<f32>) {
        let [_, ih_n, iw_n] = w.input;
        let (pt, pl) = (w.pad_begin[1], self.lead);
        let (sh, sw, ws) = (self.sh, self.sw, self.ws);
        let sub = self.hs * ws;
        let phase_cols = |pw: usize| {
            // Sub-columns j whose padded column j·sw + pw is inside the input, and the input
            // column of the first.
            let j0 = pl.saturating_sub(pw).div_ceil(sw).min(ws);
            let j1 = if iw_n + pl > pw { (iw_n + pl - pw).div_ceil(sw).min(ws) } else { 0 }.max(j0);
            (j0, j1, (j0 * sw + pw).saturating_sub(pl))
        };
        // Stride 2 along rows: both column phases of an input row in one pass (each input
        // row is read once and split into its even and odd columns).
        let (p0, p1) = if sw == 2 { (phase_cols(0), phase_cols(1)) } else { ((0, 0, 0), (0, 0, 0)) };
        let pairs = sw == 2 && p0.0 < p0.1 && p1.0 < p1.1 && p0.2.abs_diff(p1.2) == 1;
        // Row r of sub-images k (column phase 0) and k + 1 (phase 1) from one input row.
        let split_row = |k: usize, r: usize| {
            let (c, ph) = (k / (sh * sw), (k % (sh * sw)) / sw);
            let src = &x[c * ih_n * iw_n..(c + 1) * ih_n * iw_n];
            // SAFETY: row r of sub-images k and k + 1 (caller's contract).
            let (row0, row1) = unsafe { (xp.slice(k * sub + r * ws, ws), xp.slice((k + 1) * sub + r * ws, ws)) };
            let rp = r * sh + ph;
            if rp < pt || rp >= pt + ih_n {
                row0.fill(0.0);
                row1.fill(0.0);
                return;
            }
            let srow = &src[(rp - pt) * iw_n..(rp - pt + 1) * iw_n];
            for (row, (j0, j1, _)) in [(&mut *row0, p0), (&mut *row1, p1)] {
                row[..j0].fill(0.0);
                row[j1..].fill(0.0);
            }
            // The phase whose first column is even in the input takes the even ones.
            let ((e, (ej0, ej1, ef)), (o, (oj0, oj1, _))) = if p0.2 < p1.2 { ((row0, p0), (row1, p1)) } else { ((row1, p1), (row0, p0)) };
            split_columns2(&srow[ef..], &mut e[ej0..ej1], &mut o[oj0..oj1]);
        };
        let per_channel = sh * sw;
        if pairs && subs.start % per_channel == 0 && subs.end % per_channel == 0 {
            // Whole channels: their input rows in order (row phases interleaved), one
            // sequential read of each channel plane.
            for c in subs.start / per_channel..subs.end / per_channel {
                for r in rows.clone() {
                    for ph in 0..sh {
                        split_row(c * per_channel + ph * sw, r);
                    }
                }
            }
            return;
        }
        let mut k = subs.start;
        while k < subs.end {
            let c = k / (sh * sw);
            let (ph, pw) = ((k % (sh * sw)) / sw, k % sw);
            if pairs && pw == 0 && k + 1 < subs.end {
                for r in rows.clone() {
                    split_row(k, r);
                }
                k += 2;
                continue;
            }
            let src = &x[c * ih_n * iw_n..(c + 1) * ih_n * iw_n];
            let (j0, j1, first) = phase_cols(pw);
            for r in rows.clone() {
                // SAFETY: row r of sub-image k, inside the prepared image (caller's contract).
                let row = unsafe { xp.slice(k * sub + r * ws, ws) };
                let rp = r * sh + ph;
                if rp < pt || rp >= pt + ih_n || j0 == j1 {
                    row.fill(0.0);
                    continue;
                }
                let srow = &src[(rp - pt) * iw_n..(rp - pt + 1) * iw_n];
                row[..j0].fill(0.0);
                row[j1..].fill(0.0);
                if sw == 1 {
                    row[j0..j1].copy_from_slice(&srow[first..first + (j1 - j0)]);
                } else if sw == 2 {
                    copy_stride2_f32(&srow[first..], &mut row[j0..j1]);
                } else {
                    for (d, v) in row[j0..j1].iter_mut().zip(srow[first..].iter().step_by(sw)) {
                        *d = *v;
                    }
                }
            }
            k += 1;
        }
    }

    /// `y = act(W·im2col(x) + bias)` for one group image `x`, `y` being `[mg][OH][OW]`.
    #[allow(clippy::too_many_arguments)]
    fn run(&self, pool: Option<&ThreadPool>, w: &Window3, cg: usize, x: &[f32], a: ASrc, mg: usize, epi: Epilogue, xp: &mut [f32], y: &mut [f32]) {
        let out_sz = w.out_size();
        if self.direct {
            let b = ImplicitB { x: &x[..cg * self.ws], offs: &self.offs, width: self.ws, rows: 1, cols: self.ws };
            return self.product(pool, &b, a, mg, epi, out_sz, y);
        }
        self.prepare(pool, w, cg, x, xp);
        let b = ImplicitB { x: xp, offs: &self.offs, width: self.ws, rows: w.out[1], cols: w.out[2] };
        self.product(pool, &b, a, mg, epi, out_sz, y)
    }

    /// Fill the prepared image `xp` (`len` floats) from the group image `x`, on `pool`'s
    /// threads when given.
    fn prepare(&self, pool: Option<&ThreadPool>, w: &Window3, cg: usize, x: &[f32], xp: &mut [f32]) {
        let plane = self.plane();
        let (body, slack) = xp.split_at_mut(cg * plane);
        slack.fill(0.0);
        // Split by rows of the sub-images: the GEMM below splits its columns (output rows)
        // the same way, so each thread mostly reads the rows it wrote, from its own cache.
        // Images of few rows (1-D convolutions: one) split by sub-image instead.
        let xpp = SendPtr(body.as_mut_ptr());
        let subs = cg * self.sh * self.sw;
        match pool {
            Some(pool) if pool.threads() > 1 && self.hs >= 2 * pool.threads() => {
                pool.parallel_for(self.hs, 1.max((1 << 14) / (subs * self.ws).max(1)), |r0, r1| {
                    // SAFETY: disjoint row ranges of the prepared image.
                    unsafe { self.pad_rows(w, x, 0..subs, r0..r1, &xpp) };
                });
            }
            Some(pool) if pool.threads() > 1 => {
                pool.parallel_for(subs, 1.max((1 << 14) / (self.hs * self.ws).max(1)), |k0, k1| {
                    // SAFETY: disjoint sub-image ranges of the prepared image.
                    unsafe { self.pad_rows(w, x, k0..k1, 0..self.hs, &xpp) };
                });
            }
            // SAFETY: the whole prepared image, this thread only.
            _ => unsafe { self.pad_rows(w, x, 0..subs, 0..self.hs, &xpp) },
        }
    }

    /// `y = act(conv(x) + bias)` for one image `x` (`[cg][H][W]`, one group), `y` being
    /// `[mg][OH][OW]`, as the transposed product (pixels × channels) of the prepared image
    /// `xp` and the packed `Wᵀ`: each thread's output channels (blocks of 32) into a scratch
    /// block, pixels × channels, then transposed into the output planes.
    #[allow(clippy::too_many_arguments)]
    fn run_transposed(&self, pool: &ThreadPool, w: &Window3, cg: usize, x: &[f32], bt: &crate::kernels::sgemm::PackedB, bias: Option<&[f32]>, act: Act, xp: &mut [f32], y: &mut [f32]) -> Result<()> {
        let (px, mg) = (w.out_size(), bt.cols());
        assert!(self.transposed && y.len() >= mg * px && bt.depth() == self.offs.len(), "ImplicitConv: transposed product of the wrong shape");
        // Small images are prepared on this thread (a split costs more than the copy).
        self.prepare((cg * self.plane() >= 1 << 14).then_some(pool), w, cg, x, xp);
        let xp = &*xp;
        const COLS: usize = 32;
        let yp = SendPtr(y.as_mut_ptr());
        let failed = std::sync::Mutex::new(None);
        let work = px * self.offs.len() * COLS;
        pool.parallel_for(mg.div_ceil(COLS), (1 << 18) / work.max(1) + 1, |b0, b1| {
            let mut scratch = Scratch::default();
            let (c0, nc) = (b0 * COLS, (b1 * COLS).min(mg) - b0 * COLS);
            let ct = match scratch.slice::<f32>(px * nc) {
                Ok(c) => c,
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            };
            let epi = Epilogue { bias: None, col_bias: bias.map(|b| &b[c0..c0 + nc]), act };
            let b = ImplicitB { x: xp, offs: &self.offs, width: self.ws, rows: w.out[1], cols: w.out[2] };
            // SAFETY: C is the px x nc scratch block, W has columns c0..c0 + nc (the reach of
            // the image is checked by the callee).
            unsafe { crate::kernels::sgemm::sgemm_implicit_t(&b, nc, bt, c0, ct.as_mut_ptr(), nc, epi) };
            // SAFETY: output channels c0..c0 + nc belong to this task.
            let yo = unsafe { yp.slice(c0 * px, nc * px) };
            transpose_block(ct, px, nc, yo);
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `y = act(A·B + bias)`, `y` being `mg` rows of `out_sz`.
    #[allow(clippy::too_many_arguments)]
    fn product(&self, pool: Option<&ThreadPool>, b: &ImplicitB, a: ASrc, mg: usize, epi: Epilogue, out_sz: usize, y: &mut [f32]) {
        assert!(y.len() >= mg * out_sz && b.rows * b.cols == out_sz, "ImplicitConv: output too small");
        // SAFETY: A is mg x depth (checked by sgemm_implicit when packed; raw weights are the
        // caller's mg x depth block), C is y (mg rows of out_sz), bias has mg values.
        unsafe {
            match pool {
                Some(pool) => sgemm_implicit_par(pool, mg, self.offs.len(), a, b, y.as_mut_ptr(), out_sz, epi),
                None => sgemm_implicit(mg, self.offs.len(), a, b, 0..b.tiles(), 0..mg, y.as_mut_ptr(), out_sz, epi),
            }
        }
    }
}

/// What an implicit-GEMM plan depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PlanKey {
    window: Window3,
    cg: usize,
    mg: usize,
    f32: bool,
    isa: crate::kernels::simd::Isa,
}

/// What one convolution node keeps across runs: the implicit-GEMM plan for its last input
/// shape (building it allocates an offset per input channel and tap, so a steady run of a
/// fixed-shape model allocates nothing for it; a new shape replaces the entry; concurrent runs
/// share it), and for a depthwise node with constant weights, its taps interleaved at session
/// creation.
#[derive(Default)]
pub struct PlanCache {
    plan: std::sync::Mutex<Option<(PlanKey, Option<std::sync::Arc<ImplicitConv>>)>>,
    depthwise: Option<crate::kernels::depthwise::DepthwiseTaps>,
    /// Constant pointwise weights transposed and packed as a GEMM's B (`[Cin][Cout]`), for
    /// outputs of few pixels (built on the first such run, see [`transposed_pays`]).
    transposed: std::sync::OnceLock<crate::kernels::sgemm::PackedB>,
    /// Constant weights (`[Cin·K][Cout]`) packed for the transposed implicit product of a
    /// convolution over small maps (built on the first such run, see [`implicit_t_pays`]).
    implicit_t: std::sync::OnceLock<crate::kernels::sgemm::PackedB>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache")
    }
}

impl PlanCache {
    /// The state of a depthwise convolution whose constant weights are `weights`
    /// (`[channels][taps]`).
    pub fn depthwise(weights: &[f32], channels: usize) -> PlanCache {
        PlanCache { depthwise: crate::kernels::depthwise::DepthwiseTaps::new(weights, channels), ..Default::default() }
    }

    /// The depthwise taps interleaved at session creation, if any.
    pub fn depthwise_taps(&self) -> Option<&crate::kernels::depthwise::DepthwiseTaps> {
        self.depthwise.as_ref()
    }

    /// Whether the current plan is the transposed product ([`ImplicitConv::transposed`]): it
    /// reads the weights packed in [`Self::implicit_t`], not a packed A.
    pub fn is_transposed(&self) -> bool {
        let g = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().is_some_and(|(_, p)| p.as_ref().is_some_and(|p| p.transposed))
    }

    fn get(&self, key: PlanKey, build: impl FnOnce() -> Option<ImplicitConv>) -> Option<std::sync::Arc<ImplicitConv>> {
        let mut g = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, plan)) = g.as_ref() {
            if *k == key {
                return plan.clone();
            }
        }
        let plan = build().map(std::sync::Arc::new);
        *g = Some((key, plan.clone()));
        plan
    }
}

/// Bytes of convolution output rows a [`conv_maxpool_f32`] task keeps (all output channels).
const CONV_POOL_BAND_BYTES: usize = 384 << 10;

/// `y = MaxPool(act(conv(x) + bias))` (the stem of SqueezeNet, ResNet and other CNNs: a
/// convolution whose only reader is a max pool) without storing the convolution's output:
/// bands of its rows are computed by the implicit GEMM into a buffer that stays in L2, pooled
/// from there, and the rows the next band's windows share are moved to the buffer's top rather
/// than computed again. `s`: the convolution, `pw`: the pool's window over its output;
/// `y`: `[N][M][POH·POW]`. Returns `Ok(false)`, writing nothing, unless the convolution is an
/// f32 one-group product with pixel tiles (see [`ImplicitConv::plan`]) and the pool runs in
/// registers ([`crate::kernels::maxpool::applicable`]).
#[allow(clippy::too_many_arguments)]
pub fn conv_maxpool_f32(pool: &ThreadPool, s: &ConvShape, x: &[f32], weights: &[f32], bias: Option<&[f32]>, act: Act, packed: Option<&[PackedA]>, plans: &PlanCache, pw: &Window3, y: &mut [f32]) -> Result<bool> {
    let w = &s.window;
    let (cg, mg) = (s.cg(), s.mg());
    let kdim = cg * w.kernel_size();
    let [_, ohc, owc] = w.out;
    if s.group != 1 || s.is_pointwise() || s.covers_input() || pw.input != [1, ohc, owc] || !crate::kernels::maxpool::applicable(pw) {
        return Ok(false);
    }
    let (in_sz, pool_sz) = (w.in_size(), pw.out_size());
    assert!(x.len() == s.batch * cg * in_sz && weights.len() == mg * kdim && y.len() == s.batch * mg * pool_sz, "conv_maxpool_f32: buffers do not match the shapes");
    // The plan the convolution alone would use (shared with it through the cache).
    let transposable = plans.implicit_t.get().is_some() || packed.is_some();
    let build = || transposable.then(|| ImplicitConv::transposed(w, cg, mg)).flatten().or_else(|| ImplicitConv::plan(w, cg));
    let key = PlanKey { window: *w, cg, mg, f32: true, isa: crate::kernels::simd::active() };
    let Some(imp) = plans.get(key, build).filter(|p| !p.transposed && !p.direct) else { return Ok(false) };
    if s.batch == 0 || mg == 0 || pool_sz == 0 {
        return Ok(true);
    }
    let [_, ph_n, pw_n] = pw.out;
    let (ps, pd, pt) = (pw.strides[1], pw.dilations[1], pw.pad_begin[1]);
    // Convolution rows read by pool rows p0..p1.
    let conv_rows = |p0: usize, p1: usize| {
        let lo = (p0 * ps).saturating_sub(pt).min(ohc);
        let hi = ((p1 - 1) * ps + (pw.kernel[1] - 1) * pd + 1).saturating_sub(pt).min(ohc);
        lo..hi.max(lo)
    };
    let row_bytes = mg * owc * 4;
    let mut sub = 1;
    while sub < ph_n && conv_rows(0, sub + 1).len().max(conv_rows(ph_n - sub - 1, ph_n).len()) * row_bytes <= CONV_POOL_BAND_BYTES {
        sub += 1;
    }
    let cap = (0..ph_n).step_by(sub).map(|p0| conv_rows(p0, (p0 + sub).min(ph_n)).len()).max().unwrap_or(1).max(1);
    let th = pool.threads();
    let parts = if th > 1 && s.batch % th != 0 && s.batch < 4 * th { th.min(ph_n) } else { 1 };
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    let fail = |e| *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    // Pool rows `rows` of image n from its prepared image `xp`, with `band` scratch.
    let task = |n: usize, rows: std::ops::Range<usize>, xp: &[f32], band: &mut [f32]| {
        let a = match packed.and_then(|p| p.first()) {
            Some(p) if p.rows() == mg && p.depth() == kdim => ASrc::Packed(p),
            _ => ASrc::Raw { a: weights.as_ptr(), rsa: kdim, csa: 1, alpha: 1.0 },
        };
        let epi = Epilogue { bias, col_bias: None, act };
        let mut held = 0..0;
        let mut p0 = rows.start;
        while p0 < rows.end {
            let p1 = (p0 + sub).min(rows.end);
            let need = conv_rows(p0, p1);
            let mut from = need.start;
            if held.start <= need.start && need.start < held.end {
                let (skip, keep) = (need.start - held.start, held.end - need.start);
                if skip > 0 {
                    for plane in band.chunks_exact_mut(cap * owc) {
                        plane.copy_within(skip * owc..(skip + keep) * owc, 0);
                    }
                }
                from = held.end;
            }
            if from < need.end {
                let b = ImplicitB { x: &xp[from * imp.ws..], offs: &imp.offs, width: imp.ws, rows: need.end - from, cols: owc };
                // SAFETY: A is mg x kdim (packed, or the weights), C is the band: mg planes of
                // cap rows, rows from - need.start.. of them written (inside: need.len() <= cap).
                unsafe { sgemm_implicit(mg, kdim, a, &b, 0..b.tiles(), 0..mg, band.as_mut_ptr().add((from - need.start) * owc), cap * owc, epi) };
            }
            held = need.clone();
            // The pool over the band: its rows are convolution rows need.start.., so pool row
            // p0 + r reads band rows r·ps + (p0·ps - pt - need.start) + i·pd.
            let mut bw = *pw;
            bw.input[1] = need.len();
            bw.out[1] = p1 - p0;
            bw.pad_begin[1] = need.start + pt - p0 * ps;
            let planes = &band[..(mg - 1) * cap * owc + need.len() * owc];
            // SAFETY: rows p0..p1 of image n's output planes belong to this task.
            let done = unsafe { crate::kernels::maxpool::pool_planes_strided_f32(&bw, crate::kernels::maxpool::Reduce::Max, mg, 0..p1 - p0, planes, cap * owc, yp.offset(n * mg * pool_sz + p0 * pw_n).0, pool_sz) };
            debug_assert!(done, "the band's window is applicable when the whole one is");
            p0 = p1;
        }
    };
    let band_len = mg * cap * owc;
    if parts > 1 {
        let mut scratch = Scratch::default();
        let xp = scratch.slice::<f32>(imp.len)?;
        for n in 0..s.batch {
            imp.prepare(Some(pool), w, cg, &x[n * cg * in_sz..(n + 1) * cg * in_sz], xp);
            let xp = &*xp;
            pool.parallel_for(parts, 1, |t0, t1| {
                let mut scratch = Scratch::default();
                match scratch.slice::<f32>(band_len) {
                    Ok(band) => (t0..t1).for_each(|t| task(n, t * ph_n / parts..(t + 1) * ph_n / parts, xp, band)),
                    Err(e) => fail(e),
                }
            });
        }
    } else {
        pool.parallel_for(s.batch, 1, |n0, n1| {
            let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
            match (s1.slice::<f32>(imp.len), s2.slice::<f32>(band_len)) {
                (Ok(xp), Ok(band)) => {
                    for n in n0..n1 {
                        imp.prepare(None, w, cg, &x[n * cg * in_sz..(n + 1) * cg * in_sz], xp);
                        task(n, 0..ph_n, xp, band);
                    }
                }
                (Err(e), _) | (_, Err(e)) => fail(e),
            }
        });
    }
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(true),
    }
}

/// Shape of a grouped convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub group: usize,
    pub window: Window3,
}

impl ConvShape {
    fn cg(&self) -> usize {
        self.in_channels / self.group
    }
    fn mg(&self) -> usize {
        self.out_channels / self.group
    }
    /// The window covers the whole input (no padding, unit dilation): one output per channel,
    /// whose im2col column is the image itself (a 1x1 convolution of a 1x1 image, or a dense
    /// layer written as a convolution).
    fn covers_input(&self) -> bool {
        let w = &self.window;
        w.kernel == w.input && w.out == [1, 1, 1] && w.dilations == [1, 1, 1] && w.pad_begin == [0, 0, 0] && w.pad_end == [0, 0, 0]
    }
    fn is_pointwise(&self) -> bool {
        let w = &self.window;
        w.kernel == [1, 1, 1]
            && w.strides == [1, 1, 1]
            && w.pad_begin == [0, 0, 0]
            && w.input == w.out
    }
}

/// Whether a pointwise convolution of `px` pixels, `cin` -> `cout` channels, runs faster as
/// [`pointwise_transposed`]: when its 16-lane vectors along the pixels would be under 85% full
/// and along the output channels would fill 10% more lanes, for products large enough to
/// repay its scratch block and transpose (below 16 pixels, always). On the Zen 4 machine, per
/// image, 1152 -> 192 on 7x7 (49 of 64 lanes): 256 -> 228 us, 96 -> 576 73 -> 70 us;
/// 192 -> 32 on 6x6 (221k multiply-adds) was 6% slower transposed and stays as it is.
fn transposed_pays(px: usize, cin: usize, cout: usize) -> bool {
    let fill = |n: usize| n as f64 / n.div_ceil(16).max(1) as f64 / 16.0;
    if cout < 32 || px == 0 {
        return false;
    }
    px < 16 || (fill(px) < 0.85 && fill(cout) > 1.1 * fill(px) && px * cin * cout >= 1 << 20)
}

/// How many times the lanes along the pixels the transposed product must fill to run instead.
const IMPLICIT_T_GAIN: f64 = 1.04;

/// Whether a convolution (not pointwise) of `mg` output channels onto an `oh × ow` map runs
/// faster as [`ImplicitConv::transposed`], vectors along the output channels, than along the
/// pixels: the implicit product's 32-pixel tiles over rows of `ws` (`nchw`; otherwise
/// im2col's over the `oh·ow` pixels) against 16-channel vectors. On the Zen 4 machine (one
/// thread, per image): 64 -> 256 channels on 13x13 0.53 -> 0.46 ms, 512 -> 512 on 7x7 2.84 ->
/// 2.30, 256 -> 256 on 14x14 2.41 -> 2.13, 128 -> 128 on 28x28 (94% of the pixel lanes) 2.20
/// -> 2.13; 16 -> 64 on 55x55 (97.5%) was 2% slower transposed, 64 -> 40 on 10x10 (channels
/// filling 83%) 9% slower.
fn implicit_t_pays(oh: usize, ow: usize, ws: usize, mg: usize, nchw: bool) -> bool {
    let fill = |used: usize, lanes: usize| used as f64 / lanes.max(1) as f64;
    let px = oh * ow;
    if px == 0 {
        return false;
    }
    let along_pixels = if nchw { fill(px, ((oh - 1) * ws + ow).div_ceil(32) * 32) } else { fill(px, px.div_ceil(32) * 32) };
    let along_channels = fill(mg, mg.div_ceil(16) * 16);
    along_channels >= 0.9 && along_channels > IMPLICIT_T_GAIN * along_pixels
}

/// Output channels per task of [`pointwise_transposed`] (a multiple of the GEMM's 16 columns).
const TRANSPOSED_COLS: usize = 256;

/// `dst` (`cols × rows`) = `src` (`rows × cols`) transposed: the register transposes of
/// [`transpose_block_f32`](crate::kernels::transpose::transpose_block_f32), a scalar loop
/// without AVX-512.
fn transpose_block(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    if crate::kernels::transpose::transpose_block_f32(&src[..rows * cols], cols, cols, rows, &mut dst[..rows * cols], rows) {
        return;
    }
    for (j, row) in dst.chunks_exact_mut(rows).take(cols).enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = src[i * cols + j];
        }
    }
}

/// A pointwise convolution of few pixels as `Yᵀ = Xᵀ · Wᵀ` (`Wᵀ` packed in `bt`): per image
/// and block of output channels, the product (pixels × channels, with the bias per column and
/// the activation in the GEMM's epilogue) goes to a scratch block, then into the output planes.
#[allow(clippy::too_many_arguments)]
fn pointwise_transposed(pool: &ThreadPool, s: &ConvShape, x: &[f32], bt: &crate::kernels::sgemm::PackedB, bias: Option<&[f32]>, act: Act, y: &mut [f32], y_stride: usize) -> Result<()> {
    let (px, cin, cout) = (s.window.out_size(), s.in_channels, s.out_channels);
    assert!(bt.depth() == cin && bt.cols() == cout && x.len() >= s.batch * cin * px);
    assert!(s.batch == 0 || y.len() >= (s.batch - 1) * y_stride + cout * px);
    // Blocks of at most TRANSPOSED_COLS channels (multiples of 16); with fewer images than
    // threads, as many blocks per image as make every thread's share equal (576 -> 96 on 7x7
    // in one block ran on one thread of two).
    let threads = pool.threads();
    let mut per_image = cout.div_ceil(TRANSPOSED_COLS);
    if threads > 1 && s.batch < threads {
        per_image = per_image.div_ceil(threads) * threads;
    }
    let cols = cout.div_ceil(per_image).div_ceil(16) * 16;
    let blocks = cout.div_ceil(cols);
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    let work = px * cin * cols.min(cout);
    pool.parallel_for(s.batch * blocks, (1 << 18) / work.max(1) + 1, |t0, t1| {
        let mut scratch = Scratch::default();
        let ct = match scratch.slice::<f32>(px * cols.min(cout)) {
            Ok(c) => c,
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        };
        for t in t0..t1 {
            let (n, b) = (t / blocks, t % blocks);
            let (c0, nc) = (b * cols, cols.min(cout - b * cols));
            let a = ASrc::Raw { a: x[n * cin * px..].as_ptr(), rsa: 1, csa: px, alpha: 1.0 };
            let epi = Epilogue { bias: None, col_bias: bias.map(|b| &b[c0..c0 + nc]), act };
            // SAFETY: A is image n's px x cin transposed view (inside x, asserted), B has cin
            // rows and columns c0..c0 + nc (c0 a multiple of 16), C the px x nc scratch block.
            unsafe { crate::kernels::sgemm::sgemm_packed_b(px, nc, cin, a, bt, c0, 0.0, ct.as_mut_ptr(), nc, epi) };
            let ct = &ct[..px * nc];
            // SAFETY: channels c0..c0 + nc of image n belong to this task.
            let yo = unsafe { yp.slice(n * y_stride + c0 * px, nc * px) };
            transpose_block(ct, px, nc, yo);
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Forward convolution: `y = act(conv(x, weights) + bias)`. `plans` keeps the node's
/// implicit-GEMM plan across runs (None: built for this call).
/// `x`: `[N][C][in]`, `weights`: `[M][C/group][K]`, `y`: `[N][M][out]` (every element written).
#[allow(clippy::too_many_arguments)]
pub fn conv_forward<T: GemmElem>(
    pool: &ThreadPool,
    s: &ConvShape,
    x: &[T],
    weights: &[T],
    bias: Option<&[T]>,
    act: Act,
    packed: Option<&[PackedA]>,
    plans: Option<&PlanCache>,
    y: &mut [T],
) -> Result<()> {
    let image = s.out_channels * s.window.out_size();
    conv_forward_into(pool, s, x, weights, bias, act, packed, plans, y, image)
}

/// [`conv_forward`] with image `n`'s output (`[M][out]`, contiguous) at `y[n * y_stride..]`:
/// a channel slice of a larger tensor, such as a concatenation along channels. Only the
/// output's elements are written; `y_stride` is at least `M · out`.
#[allow(clippy::too_many_arguments)]
pub fn conv_forward_into<T: GemmElem>(
    pool: &ThreadPool,
    s: &ConvShape,
    x: &[T],
    weights: &[T],
    bias: Option<&[T]>,
    act: Act,
    packed: Option<&[PackedA]>,
    plans: Option<&PlanCache>,
    y: &mut [T],
    y_stride: usize,
) -> Result<()> {
    let w = &s.window;
    let (cg, mg, group) = (s.cg(), s.mg(), s.group);
    let (in_sz, out_sz, ksz) = (w.in_size(), w.out_size(), w.kernel_size());
    let image = s.out_channels * out_sz;
    if s.batch > 0 && image > 0 {
        let need = (s.batch - 1).checked_mul(y_stride).and_then(|v| v.checked_add(image));
        if y_stride < image || need.is_none_or(|need| y.len() < need) {
            return Err(Error::Internal(format!("conv: output of {} floats for {} images of {image} every {y_stride}", y.len(), s.batch)));
        }
    }
    // Only the GEMM strategies over f32 address images by `y_stride`; the others run one
    // image at a time when the images are not back to back.
    let gemm_f32 = as_f32(x).is_some() && !(cg == 1 && group > 1) && !s.covers_input();
    if y_stride != image && s.batch > 1 && !gemm_f32 {
        let one = ConvShape { batch: 1, ..*s };
        for n in 0..s.batch {
            let xn = &x[n * s.in_channels * in_sz..(n + 1) * s.in_channels * in_sz];
            conv_forward_into(pool, &one, xn, weights, bias, act, packed, plans, &mut y[n * y_stride..n * y_stride + image], image)?;
        }
        return Ok(());
    }
    // f32 depthwise 1-D/2-D: the fused, vectorized plane kernel.
    if let (Some(x32), Some(w32)) = (as_f32(x), as_f32(weights)) {
        if cg == 1 && mg == 1 && group > 1 && w.input[0] == 1 && w.kernel[0] == 1 {
            let y32 = as_f32_mut(y).expect("y has the type of x");
            let b32 = bias.and_then(as_f32);
            let taps = plans.and_then(|p| p.depthwise.as_ref());
            return crate::kernels::depthwise::depthwise_f32(pool, w, s.batch, group, x32, w32, taps, b32, act, y32);
        }
        if cg == 1 && group > 1 && w.input[0] == 1 && w.kernel[0] == 1 && s.batch > 0 && out_sz > 0 {
            // Depthwise with a channel multiplier: the per-plane kernel.
            let b32 = bias.and_then(as_f32);
            let y32 = as_f32_mut(y).expect("y has the type of x");
            let yp = SendPtr(y32.as_mut_ptr());
            let tasks = s.batch * s.out_channels;
            let min_chunk = (1 << 14) / (out_sz * ksz).max(1) + 1;
            pool.parallel_for(tasks, min_chunk, |a, b| {
                let mut scratch = Vec::new();
                for t in a..b {
                    let (n, m) = (t / s.out_channels, t % s.out_channels);
                    let c = m / mg;
                    let xc = &x32[(n * s.in_channels + c) * in_sz..(n * s.in_channels + c + 1) * in_sz];
                    // SAFETY: task t owns output plane t.
                    let yo = unsafe { yp.slice(t * out_sz, out_sz) };
                    let bias = b32.map_or(0.0, |b| b[m]);
                    depthwise_plane_f32(w, xc, &w32[m * ksz..(m + 1) * ksz], bias, act, yo, &mut scratch);
                }
            });
            return Ok(());
        }
    }
    // f32 GEMM strategies write y directly (bias and activation in the GEMM's epilogue).
    let f32_gemm = as_f32(x).is_some() && !(cg == 1 && group > 1);
    // Otherwise initialize with the bias (every other strategy accumulates into y).
    for n in (0..s.batch).filter(|_| !f32_gemm) {
        for m in 0..s.out_channels {
            let b = bias.map(|b| b[m]).unwrap_or(T::ZERO);
            y[(n * s.out_channels + m) * out_sz..(n * s.out_channels + m + 1) * out_sz]
                .iter_mut()
                .for_each(|v| *v = b);
        }
    }
    if s.batch == 0 || out_sz == 0 || s.out_channels == 0 {
        return Ok(());
    }
    let yp = SendPtr(y.as_mut_ptr());
    if cg == 1 && group > 1 {
        // Depthwise: one direct plane kernel per (image, output channel).
        let tasks = s.batch * s.out_channels;
        let min_chunk = (1 << 14) / (out_sz * ksz).max(1) + 1;
        pool.parallel_for(tasks, min_chunk, |a, b| {
            for t in a..b {
                let (n, m) = (t / s.out_channels, t % s.out_channels);
                let c = m / mg;
                let xc = &x[(n * s.in_channels + c) * in_sz..(n * s.in_channels + c + 1) * in_sz];
                // SAFETY: task t owns output plane t.
                let yo = unsafe { yp.slice(t * out_sz, out_sz) };
                conv_plane_direct(w, xc, &weights[m * ksz..(m + 1) * ksz], yo);
                apply_inplace_any(act, yo);
            }
        });
        return Ok(());
    }
    let kdim = cg * ksz;
    let tasks = s.batch * group;
    if let (true, Some(x32), Some(w32)) = (s.covers_input(), as_f32(x), as_f32(weights)) {
        // One output per channel: a matrix-vector product per image and group (the weights
        // are read once per image, not spread over GEMM tiles that would use one column).
        let y32 = as_f32_mut(y).expect("y has the type of x");
        let b32 = bias.and_then(as_f32);
        let rows = s.batch * s.out_channels;
        let yp = SendPtr(y32.as_mut_ptr());
        pool.parallel_for(rows, 1.max((1 << 14) / kdim.max(1)), |r0, r1| {
            let mut r = r0;
            while r < r1 {
                let (n, m) = (r / s.out_channels, r % s.out_channels);
                let g = m / mg;
                // Output channels of this image and group inside r0..r1.
                let end = r1.min(n * s.out_channels + (g + 1) * mg);
                let xg = &x32[(n * s.in_channels + g * cg) * in_sz..(n * s.in_channels + (g + 1) * cg) * in_sz];
                // SAFETY: rows r..end of the output belong to this chunk only.
                let yo = unsafe { yp.slice(r, end - r) };
                crate::kernels::gemm::dots_f32(xg, &w32[m * kdim..], kdim, end - r, 1.0, 0.0, yo, 1);
                if let Some(b) = b32 {
                    yo.iter_mut().zip(&b[m..]).for_each(|(v, b)| *v += b);
                }
                crate::kernels::vmath::apply_inplace(act, yo);
                r = end;
            }
        });
        return Ok(());
    }
    let pointwise = s.is_pointwise();
    if let (true, Some(x32), Some(w32), Some(cache), Some(_)) = (pointwise && group == 1 && transposed_pays(out_sz, s.in_channels, s.out_channels), as_f32(x), as_f32(weights), plans, packed) {
        // Few pixels (the last stages of a CNN: 3x3 to 7x7 maps): the GEMM's vectors along the
        // pixels would be partly empty, so compute the transposed product, pixels × channels,
        // with vectors along the channels (constant weights only: `packed`).
        let bt = cache.transposed.get_or_init(|| crate::kernels::sgemm::PackedB::new(kdim, s.out_channels, w32, 1, kdim));
        let y32 = as_f32_mut(y).expect("y has the type of x");
        return pointwise_transposed(pool, s, x32, bt, bias.and_then(as_f32), act, y32, y_stride);
    }
    let flops_per_task = mg * kdim * out_sz;
    // The transposed product packs the constant weights its own way (kept by `plans`; the
    // caller may drop `packed` once it runs).
    let transposable = group == 1 && plans.is_some_and(|p| packed.is_some() || p.implicit_t.get().is_some()) && as_f32(weights).is_some();
    let build = || match (as_f32(x).is_some(), pointwise) {
        (false, _) => None,
        (true, true) => ImplicitConv::pointwise(cg, mg, in_sz),
        (true, false) => transposable.then(|| ImplicitConv::transposed(w, cg, mg)).flatten().or_else(|| ImplicitConv::plan(w, cg)),
    };
    let implicit = match plans {
        Some(cache) => cache.get(PlanKey { window: *w, cg, mg, f32: as_f32(x).is_some(), isa: crate::kernels::simd::active() }, build),
        None => build().map(std::sync::Arc::new),
    };
    if let (Some(imp), Some(cache), Some(x32), Some(w32)) = (implicit.as_ref().filter(|i| i.transposed), plans, as_f32(x), as_f32(weights)) {
        // Small maps: vectors along the output channels (see ImplicitConv::transposed).
        let bt = cache.implicit_t.get_or_init(|| crate::kernels::sgemm::PackedB::for_implicit_t(kdim, s.out_channels, w32, 1, kdim));
        let (y32, b32) = (as_f32_mut(y).expect("y has the type of x"), bias.and_then(as_f32));
        let mut col = Scratch::default();
        let xp = col.slice::<f32>(imp.len)?;
        for n in 0..s.batch {
            let xn = &x32[n * s.in_channels * in_sz..(n + 1) * s.in_channels * in_sz];
            imp.run_transposed(pool, w, cg, xn, bt, b32, act, xp, &mut y32[n * y_stride..n * y_stride + image])?;
        }
        return Ok(());
    }
    let run_task = |t: usize, col: &mut Scratch, par: bool| -> Result<()> {
        let (n, g) = (t / group, t % group);
        let xg =
            &x[(n * s.in_channels + g * cg) * in_sz..(n * s.in_channels + (g + 1) * cg) * in_sz];
        let wg = &weights[g * mg * kdim..(g + 1) * mg * kdim];
        // SAFETY: task t owns output channels g*mg..(g+1)*mg of image n.
        let yg = unsafe { yp.slice(n * y_stride + g * mg * out_sz, mg * out_sz) };
        if let (Some(imp), Some(x32), Some(w32), Some(y32)) = (&implicit, as_f32(xg), as_f32(wg), as_f32_mut(yg)) {
            let a = match packed.and_then(|p| p.get(g)) {
                Some(p) if p.rows() == mg && p.depth() == kdim => ASrc::Packed(p),
                _ => ASrc::Raw { a: w32.as_ptr(), rsa: kdim, csa: 1, alpha: 1.0 },
            };
            let epi = Epilogue { bias: bias.and_then(as_f32).map(|b| &b[g * mg..(g + 1) * mg]), col_bias: None, act };
            let xp = if imp.direct { &mut [][..] } else { col.slice::<f32>(imp.len)? };
            imp.run(par.then_some(pool), w, cg, x32, a, mg, epi, xp, y32);
            return Ok(());
        }
        let b_mat: &[T] = if pointwise {
            xg
        } else {
            // Every element is written by im2col.
            let col = col.slice::<T>(kdim * out_sz)?;
            if par {
                let cp = SendPtr(col.as_mut_ptr());
                pool.parallel_for(kdim, 1.max(4096 / out_sz.max(1)), |r0, r1| {
                    // SAFETY: disjoint row ranges of the column buffer.
                    let rows = unsafe { cp.slice(r0 * out_sz, (r1 - r0) * out_sz) };
                    im2col_rows(w, xg, r0..r1, rows);
                });
            } else {
                im2col_rows(w, xg, 0..kdim, col);
            }
            col
        };
        if let (Some(w32), Some(b32), Some(y32)) = (as_f32(wg), as_f32(b_mat), as_f32_mut(yg)) {
            let a = match packed.and_then(|p| p.get(g)) {
                Some(p) if p.rows() == mg && p.depth() == kdim => ASrc::Packed(p),
                _ => ASrc::Raw { a: w32.as_ptr(), rsa: kdim, csa: 1, alpha: 1.0 },
            };
            let epi = Epilogue { bias: bias.and_then(as_f32).map(|b| &b[g * mg..(g + 1) * mg]), col_bias: None, act };
            // SAFETY: A is mg x kdim (row-major), B kdim x out_sz, C mg x out_sz: all in bounds.
            unsafe {
                if par {
                    sgemm_ex_par(pool, mg, out_sz, kdim, a, b32.as_ptr(), out_sz, 1, 0.0, y32.as_mut_ptr(), out_sz, epi);
                } else {
                    sgemm_ex(mg, out_sz, kdim, a, b32.as_ptr(), out_sz, 1, 0.0, y32.as_mut_ptr(), out_sz, epi);
                }
            }
            return Ok(());
        }
        let a = MatRef::row_major(wg, kdim);
        let b = MatRef::row_major(b_mat, out_sz);
        if par {
            gemm_par(pool, mg, out_sz, kdim, T::ONE, a, b, T::ONE, yg, out_sz, 1)?;
            if act != Act::Identity {
                let yp = SendPtr(yg.as_mut_ptr());
                pool.parallel_for(mg, 1, |c0, c1| {
                    // SAFETY: disjoint channel ranges of this group's output.
                    apply_inplace_any(act, unsafe { yp.slice(c0 * out_sz, (c1 - c0) * out_sz) });
                });
            }
            Ok(())
        } else {
            gemm(mg, out_sz, kdim, T::ONE, a, b, T::ONE, yg, out_sz, 1)?;
            apply_inplace_any(act, yg);
            Ok(())
        }
    };
    if tasks >= pool.threads() && pool.threads() > 1 && flops_per_task < (1 << 22)
        || tasks >= 4 * pool.threads()
    {
        let failed = std::sync::Mutex::new(None);
        pool.parallel_for(tasks, 1, |a, b| {
            let mut col = Scratch::default();
            for t in a..b {
                if let Err(e) = run_task(t, &mut col, false) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    } else {
        let mut col = Scratch::default();
        for t in 0..tasks {
            run_task(t, &mut col, true)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::test_util::for_each_isa;

    /// Direct definition of the 2-D convolution (f64 accumulation).
    fn naive(s: &ConvShape, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f32> {
        let w = &s.window;
        let (cg, mg) = (s.cg(), s.mg());
        let [_, oh_n, ow_n] = w.out;
        let [_, ih_n, iw_n] = w.input;
        let [_, kh_n, kw_n] = w.kernel;
        let mut y = vec![0f32; s.batch * s.out_channels * oh_n * ow_n];
        for n in 0..s.batch {
            for m in 0..s.out_channels {
                let g = m / mg;
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let mut acc = bias[m] as f64;
                        for c in 0..cg {
                            for kh in 0..kh_n {
                                for kw in 0..kw_n {
                                    let (ih, iw) = (w.coord(1, oh, kh), w.coord(2, ow, kw));
                                    if ih < 0 || iw < 0 || ih >= ih_n as isize || iw >= iw_n as isize {
                                        continue;
                                    }
                                    let xv = x[((n * s.in_channels + g * cg + c) * ih_n + ih as usize) * iw_n + iw as usize];
                                    acc += xv as f64 * wt[((m * cg + c) * kh_n + kh) * kw_n + kw] as f64;
                                }
                            }
                        }
                        y[((n * s.out_channels + m) * oh_n + oh) * ow_n + ow] = acc.max(0.0) as f32;
                    }
                }
            }
        }
        y
    }

    /// The ISA lock while the implicit GEMM (AVX-512 only) runs on this CPU; `None`: skipped.
    fn implicit_isa() -> Option<std::sync::MutexGuard<'static, ()>> {
        crate::kernels::simd::test_util::avx512_guard("the implicit GEMM")
    }

    #[test]
    fn implicit_rows_share_their_zero_columns_with_unit_column_strides() {
        let Some(_isa) = implicit_isa() else { return };
        let win = |iw: usize, kw: usize, sw: usize, dw: usize, pl: usize, pr: usize| {
            let ow = (iw + pl + pr - dw * (kw - 1) - 1) / sw + 1;
            Window3 { input: [1, 13, iw], kernel: [1, 3, kw], strides: [1, 1, sw], dilations: [1, 1, dw], pad_begin: [0, 1, pl], pad_end: [0, 1, pr], out: [1, 13, ow] }
        };
        // (iw, kw, sw, dw, pl, pr) -> (row length, leading zeros)
        for (args, want) in [
            ((13, 3, 1, 1, 1, 1), (14, 1)),
            ((13, 5, 1, 1, 2, 2), (15, 2)),
            ((13, 3, 1, 1, 0, 2), (15, 2)),
            ((13, 3, 1, 2, 3, 1), (16, 3)),
            // Right pad longer than the left one: the longer one sets the lead.
            ((14, 3, 1, 1, 1, 2), (16, 2)),
            // Strided columns keep one phase sub-image per column phase, padded both sides.
            ((26, 3, 2, 1, 1, 1), (14, 1)),
        ] {
            let (iw, kw, sw, dw, pl, pr) = args;
            let p = ImplicitConv::plan(&win(iw, kw, sw, dw, pl, pr), 2).expect("implicit plan");
            assert_eq!((p.ws, p.lead), want, "{args:?}");
        }
    }

    #[test]
    fn deep_pointwise_convolutions_read_the_image_in_place_unless_tall() {
        let Some(_isa) = implicit_isa() else { return };
        for (cg, mg, direct) in [(256, 1000, true), (576, 96, true), (1152, 192, true), (512, 1000, false), (300, 256, false)] {
            assert_eq!(ImplicitConv::pointwise(cg, mg, 49).is_some(), direct, "{cg} -> {mg}");
        }
    }

    #[test]
    fn pointwise_products_are_transposed_where_pixel_vectors_would_be_partly_empty() {
        // 7x7 maps: 49 pixels fill 77% of 64 lanes; 576 or 96 channels fill them all.
        assert!(transposed_pays(49, 96, 576) && transposed_pays(49, 1152, 192));
        // Fewer than 16 pixels: always (with 32 channels or more).
        assert!(transposed_pays(9, 8, 64) && !transposed_pays(9, 64, 24));
        // Full enough pixel vectors (14x14: 92%, 12x12: 100%), or too small a product (6x6,
        // 192 -> 32: 221k multiply-adds), or channels no fuller (40 of 48 lanes).
        assert!(!transposed_pays(196, 96, 576) && !transposed_pays(144, 96, 576));
        assert!(!transposed_pays(36, 192, 32) && !transposed_pays(49, 1000, 40));
    }

    #[test]
    fn convolutions_over_small_maps_are_transposed_where_channels_fill_more_lanes() {
        // 13x13 in rows of 14: 88% of the pixel lanes; 7x7 in rows of 8: 77%; 3x3 (im2col):
        // 28%; 256, 512 or 64 channels fill them all.
        assert!(implicit_t_pays(13, 13, 14, 256, true) && implicit_t_pays(7, 7, 8, 512, true) && implicit_t_pays(3, 3, 4, 64, false));
        // 55x55 in rows of 56 (97.5%), or channels no fuller than that (40 of 48 lanes).
        assert!(!implicit_t_pays(55, 55, 56, 64, true) && !implicit_t_pays(10, 10, 11, 40, true));
    }

    #[test]
    fn gemm_convolutions_match_the_definition_on_every_path() {
        // (batch, C, M, group, input HxW, kernel, strides, dilations, pads t/l/b/r): windows
        // take the implicit GEMM on AVX-512 (rows of 1, 7 and 56 outputs, asymmetric pads,
        // strides split into phases, dilation, groups; pointwise ones read the image in
        // place); the other ISAs take im2col.
        let cases = [
            (1, 3, 8, 1, [1, 50], [1, 5], [1, 1], [1, 1], [0, 2, 0, 1]),
            (2, 16, 20, 1, [7, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 8, 70, 2, [20, 23], [3, 2], [1, 1], [2, 1], [2, 0, 1, 1]),
            (1, 6, 13, 1, [56, 56], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 3, 16, 1, [31, 30], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0]),
            (2, 3, 32, 1, [64, 64], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
            (1, 4, 12, 2, [40, 41], [3, 5], [2, 3], [2, 2], [2, 1, 0, 3]),
            (1, 5, 7, 1, [30, 33], [2, 3], [3, 1], [1, 1], [0, 0, 0, 0]),
            // Stride-2 columns split in one pass per input row: no left pad (the even columns
            // go to phase 0), odd widths, and images of few rows (split by sub-image).
            (1, 3, 8, 1, [9, 37], [3, 3], [2, 2], [1, 1], [1, 0, 1, 2]),
            (1, 2, 8, 1, [3, 40], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
            // Unit column strides: rows share their zeros (left pads of 0 to 3 columns, right
            // ones of 1 to 3, dilated taps, row phases).
            (1, 16, 24, 1, [13, 13], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 4, 10, 1, [12, 15], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]),
            (1, 3, 9, 1, [11, 17], [3, 3], [1, 1], [1, 1], [0, 0, 1, 2]),
            (1, 3, 9, 1, [10, 14], [3, 3], [2, 1], [1, 2], [1, 3, 1, 1]),
            (2, 5, 7, 1, [9, 16], [3, 4], [1, 1], [1, 1], [1, 1, 1, 3]),
            // Patchify (stride = kernel, implicit_t columns), and rows of 35 strided columns.
            (1, 3, 24, 1, [64, 64], [16, 16], [16, 16], [1, 1], [0, 0, 0, 0]),
            (1, 2, 8, 1, [8, 700], [2, 20], [2, 20], [1, 1], [0, 1, 0, 0]),
            (2, 16, 40, 1, [9, 13], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (1, 8, 30, 2, [5, 5], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            // Deep pointwise: in place for few output channels, packed B for many.
            (1, 300, 20, 1, [1, 37], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (1, 300, 260, 1, [5, 7], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            // Pointwise over fewer than 16 pixels with constant (packed) weights: the
            // transposed product, in blocks of 256 channels (the last partial), the bias per
            // column and the activation in its epilogue.
            (2, 24, 300, 1, [3, 3], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (3, 17, 40, 1, [2, 5], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (1, 8, 33, 1, [1, 15], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            // 7x7 and 5x5 maps whose 16-lane pixel vectors would be 77-78% full, transposed when
            // the product is large enough (a partial block of 44 channels after 256).
            (2, 96, 240, 1, [7, 7], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (1, 160, 300, 1, [5, 5], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            // Small maps with constant weights (when the cache is given) as the transposed
            // product: rows of 13 (one tile), 7 (stride 2), 29 (three tiles) with 160 channels
            // (a second block of W), 3x3 maps, depth 1260 (two blocks), dilated taps.
            (2, 16, 64, 1, [13, 13], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 12, 32, 1, [14, 14], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
            (1, 40, 160, 1, [27, 29], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 32, 64, 1, [3, 3], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 140, 32, 1, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            (1, 8, 48, 1, [11, 11], [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
            // The window covers the input: matrix-vector products (one output per channel).
            (3, 40, 37, 1, [1, 1], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
            (2, 6, 10, 2, [3, 4], [3, 4], [1, 1], [1, 1], [0, 0, 0, 0]),
        ];
        for (batch, c, m, group, [ih, iw], [kh, kw], st, dl, [pt, pl, pb, pr]) in cases {
            let out = |i: usize, k: usize, s: usize, d: usize, p: usize| (i + p - d * (k - 1) - 1) / s + 1;
            let (oh, ow) = (out(ih, kh, st[0], dl[0], pt + pb), out(iw, kw, st[1], dl[1], pl + pr));
            let window = Window3 {
                input: [1, ih, iw],
                kernel: [1, kh, kw],
                strides: [1, st[0], st[1]],
                dilations: [1, dl[0], dl[1]],
                pad_begin: [0, pt, pl],
                pad_end: [0, pb, pr],
                out: [1, oh, ow],
            };
            let s = ConvShape { batch, in_channels: c, out_channels: m, group, window };
            let kdim = (c / group) * kh * kw;
            let x: Vec<f32> = (0..batch * c * ih * iw).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
            let wt: Vec<f32> = (0..m * kdim).map(|i| ((i * 104729) % 89) as f32 / 44.0 - 1.0).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.05 - 0.3).collect();
            let want = naive(&s, &x, &wt, &bias);
            let mg = m / group;
            let pack = |f: fn(usize, usize, &[f32], usize, usize) -> PackedA| -> Vec<PackedA> {
                (0..group).map(|g| f(mg, kdim, &wt[g * mg * kdim..(g + 1) * mg * kdim], kdim, 1)).collect()
            };
            // Weights packed in either depth blocks serve every path.
            let (packed, deep) = (pack(PackedA::new), pack(PackedA::for_implicit));
            for_each_isa(|isa| {
                for threads in [1, 2] {
                    let pool = ThreadPool::new(threads);
                    let cache = PlanCache::default();
                    // Without a plan cache, then twice through one (built, then reused).
                    for (pk, plans) in [(None, None), (Some(&packed[..]), Some(&cache)), (Some(&packed[..]), Some(&cache)), (Some(&deep[..]), None)] {
                        let mut y = vec![f32::NAN; want.len()];
                        conv_forward(&pool, &s, &x, &wt, Some(&bias), Act::Relu, pk, plans, &mut y).unwrap();
                        for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{isa:?} t{threads} {:?} [{i}]: {g} vs {w}", s.window);
                        }
                    }
                }
            });
        }
    }

    /// A convolution and the max pool after it, band by band, against the two by the
    /// definition: SqueezeNet's stem (3x3 stride 2, no padding, pool 3x3 stride 2), ResNet's
    /// (7x7 stride 2 padded, pool padded), a pool of 2x2 and one of 3x3 stride 1 (every band
    /// sharing rows with the next), ceil mode (the last window past the end), few and many
    /// channels, images split between threads or given whole to each, taller than one band.
    #[test]
    fn convolutions_pooled_band_by_band_match_the_definition() {
        let Some(_isa) = implicit_isa() else { return };
        // (batch, c, m, [ih, iw], k, stride, pad, pool k, pool stride, pool pads [t, l, b, r])
        // (Channel counts that leave 16-lane vectors under 90% full: maps this small would
        // otherwise run as the transposed product, which is not banded.)
        let cases = [
            (1, 3, 40, [57, 61], 3, 2, 0, 3, 2, [0, 0, 0, 0]),
            (2, 3, 20, [40, 38], 7, 2, 3, 3, 2, [1, 1, 1, 1]),
            (3, 8, 24, [30, 33], 3, 1, 1, 2, 2, [0, 0, 0, 0]),
            (1, 5, 12, [45, 20], 3, 1, 1, 3, 1, [1, 1, 1, 1]),
            (1, 4, 24, [31, 31], 3, 2, 0, 3, 2, [0, 0, 1, 1]),
            (2, 16, 88, [70, 23], 3, 1, 1, 3, 2, [0, 0, 0, 0]),
            (1, 3, 64, [224, 224], 3, 2, 0, 3, 2, [0, 0, 0, 0]),
        ];
        for (batch, c, m, [ih, iw], k, st, pd, pk, ps, pp) in cases {
            let out = |i: usize, k: usize, s: usize, p: usize| (i + p - k) / s + 1;
            let (oh, ow) = (out(ih, k, st, 2 * pd), out(iw, k, st, 2 * pd));
            let window = Window3 { input: [1, ih, iw], kernel: [1, k, k], strides: [1, st, st], dilations: [1, 1, 1], pad_begin: [0, pd, pd], pad_end: [0, pd, pd], out: [1, oh, ow] };
            let s = ConvShape { batch, in_channels: c, out_channels: m, group: 1, window };
            let (poh, pow) = (out(oh, pk, ps, pp[0] + pp[2]), out(ow, pk, ps, pp[1] + pp[3]));
            let pw = Window3 { input: [1, oh, ow], kernel: [1, pk, pk], strides: [1, ps, ps], dilations: [1, 1, 1], pad_begin: [0, pp[0], pp[1]], pad_end: [0, pp[2], pp[3]], out: [1, poh, pow] };
            let kdim = c * k * k;
            let x: Vec<f32> = (0..batch * c * ih * iw).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
            let wt: Vec<f32> = (0..m * kdim).map(|i| ((i * 104729) % 89) as f32 / 44.0 - 1.0).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.05 - 0.3).collect();
            let conv = naive(&s, &x, &wt, &bias);
            let mut want = vec![0f32; batch * m * poh * pow];
            for (plane, yo) in want.chunks_exact_mut(poh * pow).enumerate() {
                let xc = &conv[plane * oh * ow..(plane + 1) * oh * ow];
                for (o, v) in yo.iter_mut().enumerate() {
                    let (r, q) = (o / pow, o % pow);
                    *v = f32::NEG_INFINITY;
                    for i in 0..pk {
                        for j in 0..pk {
                            let (y, x) = ((r * ps + i) as isize - pp[0] as isize, (q * ps + j) as isize - pp[1] as isize);
                            if y >= 0 && x >= 0 && (y as usize) < oh && (x as usize) < ow {
                                *v = v.max(xc[y as usize * ow + x as usize]);
                            }
                        }
                    }
                }
            }
            let packed = vec![PackedA::for_implicit(m, kdim, &wt, kdim, 1)];
            for threads in [1, 2] {
                let pool = ThreadPool::new(threads);
                let cache = PlanCache::default();
                for pk in [Some(&packed[..]), None] {
                    let mut y = vec![f32::NAN; want.len()];
                    assert!(conv_maxpool_f32(&pool, &s, &x, &wt, Some(&bias), Act::Relu, pk, &cache, &pw, &mut y).unwrap(), "{window:?} not run banded");
                    for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "t{threads} {window:?} pool {pw:?} [{i}]: {g} vs {w}");
                    }
                }
            }
        }
    }
}
