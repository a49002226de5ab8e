//! Depthwise 2-D convolution (`group == channels`, one output per channel) on `f32`, vectorized
//! across channels.
//!
//! The input is NCHW, but per-channel planes of exported CNNs are small (7×7 to 112×112) while
//! channels are many, so vectorizing along a plane's rows wastes lanes and pays a setup per
//! plane. Instead, `CB` channels (8, or 16 on AVX-512 CPUs: one vector register) are
//! interleaved into a padded band of rows (`[row][col][CB]`,
//! zeros around the input), every tap is then one vector multiply-add over `CB` channels at
//! once, whatever the stride or dilation, and each finished output row is de-interleaved back
//! into the channels' planes. A task is (image, channel block, band of output rows); bands keep
//! the interleaved input inside L2 and give both threads work on the large early layers.

use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::kernels::conv::Window3;
#[cfg(target_arch = "x86_64")]
use crate::kernels::conv::PhaseRows;
use crate::kernels::simd::MulAdd;
use crate::kernels::vmath::{apply_inplace_body, Act};
use crate::kernels::sgemm::PackedB;
use crate::kernels::{Scratch, SendPtr};
#[cfg(target_arch = "x86_64")]
use crate::kernels::transpose::transpose16_part;

/// Channels interleaved per block without AVX-512 (one AVX2 register of `f32`).
const CB8: usize = 8;
/// Channels interleaved per block with AVX-512 (one register).
const CB16: usize = 16;
/// Bytes of interleaved input a band aims for (stays in L2 with the output row).
const BAND_BYTES: usize = 96 << 10;

/// Geometry of one task's band, shared by the band kernel's helpers.
#[derive(Clone, Copy)]
struct Band {
    /// Output rows `oh0..oh1`.
    oh0: usize,
    oh1: usize,
    /// Interleaved band: `rows × cols` pixels of `CB` lanes.
    rows: usize,
    cols: usize,
}

/// `T` consecutive outputs of one row, all taps, `CB` channels: `T` accumulators in registers.
///
/// # Safety
/// `band` must hold every pixel the window of outputs `ow..ow+T` of this row reads
/// (`(ow+T-1)·sw + (kw-1)·dw < cols`, rows `r0 + kh·dh < rows`), `out` must hold `T·CB` values.
#[inline(always)]
unsafe fn tile<M: MulAdd, const T: usize, const CB: usize>(
    w: &Window3,
    band: *const f32,
    cols: usize,
    r0: usize,
    ow: usize,
    taps: &[f32],
    bias: &[f32; CB],
    out: *mut f32,
) {
    let [_, kh_n, kw_n] = w.kernel;
    let (dh, sw, dw) = (w.dilations[1], w.strides[2], w.dilations[2]);
    let mut acc = [*bias; T];
    for kh in 0..kh_n {
        let brow = band.add((r0 + kh * dh) * cols * CB);
        for kw in 0..kw_n {
            let wv = &*(taps.as_ptr().add((kh * kw_n + kw) * CB) as *const [f32; CB]);
            for (t, a) in acc.iter_mut().enumerate() {
                let xv = &*(brow.add(((ow + t) * sw + kw * dw) * CB) as *const [f32; CB]);
                for l in 0..CB {
                    a[l] = M::madd(wv[l], xv[l], a[l]);
                }
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(a.as_ptr(), out.add(t * CB), CB);
    }
}

/// [`tile`] with AVX2 intrinsics (the compiler's vectorization of the generic tile spills for
/// some `T`), and the cheap activations applied in registers when `act_in_regs`.
///
/// # Safety
/// As [`tile`], and the CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx2<const T: usize>(
    w: &Window3,
    band: *const f32,
    cols: usize,
    r0: usize,
    ow: usize,
    taps: &[f32],
    bias: &[f32; CB8],
    act: Act,
    act_in_regs: bool,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let [_, kh_n, kw_n] = w.kernel;
    let (dh, sw, dw) = (w.dilations[1], w.strides[2], w.dilations[2]);
    let mut acc = [_mm256_loadu_ps(bias.as_ptr()); T];
    let step = sw * CB8;
    for kh in 0..kh_n {
        let brow = band.add((r0 + kh * dh) * cols * CB8 + ow * step);
        let trow = taps.as_ptr().add(kh * kw_n * CB8);
        for kw in 0..kw_n {
            let wv = _mm256_loadu_ps(trow.add(kw * CB8));
            let src = brow.add(kw * dw * CB8);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(src.add(t * step)), *a);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        let v = if act_in_regs { crate::kernels::vmath::act_m256(act, *a).unwrap_or(*a) } else { *a };
        _mm256_storeu_ps(out.add(t * CB8), v);
    }
}

/// [`tile_avx2`] for 16 channels in one AVX-512 register.
///
/// # Safety
/// As [`tile`], and the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const T: usize>(
    w: &Window3,
    rows: &[*const f32],
    pitch: usize,
    ow: usize,
    taps: &[f32],
    bias: &[f32; CB16],
    act: Act,
    act_in_regs: bool,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let [_, kh_n, kw_n] = w.kernel;
    let (sw, dw) = (w.strides[2], w.dilations[2]);
    let mut acc = [_mm512_loadu_ps(bias.as_ptr()); T];
    let step = sw * pitch;
    for (kh, &row) in rows.iter().enumerate().take(kh_n) {
        let brow = row.add(ow * step);
        let trow = taps.as_ptr().add(kh * kw_n * CB16);
        for kw in 0..kw_n {
            let wv = _mm512_loadu_ps(trow.add(kw * CB16));
            let src = brow.add(kw * dw * pitch);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(src.add(t * step)), *a);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        let v = if act_in_regs { crate::kernels::vmath::act_m512(act, *a) } else { *a };
        _mm512_storeu_ps(out.add(t * CB16), v);
    }
}

/// One output row of 16-channel blocks with [`tile_avx512`]: tiles of 8 outputs, the rest in
/// one tile. `rows[kh]` is the band row that tap row `kh` reads: its pixels' 16 lanes `pitch`
/// floats apart (16 in an interleaved band).
///
/// # Safety
/// As [`tile`] for every output of the row (each of the `KH` rows holding the columns the
/// windows reach); `out` holds `ow_n · 16` values; AVX-512F CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_avx512(w: &Window3, rows: &[*const f32], pitch: usize, taps: &[f32], bias: &[f32; CB16], act: Act, r: bool, op: *mut f32) {
    let ow_n = w.out[2];
    assert!(rows.len() >= w.kernel[1], "row_avx512: {} band rows for {} tap rows", rows.len(), w.kernel[1]);
    let mut ow = 0;
    while ow + 8 <= ow_n {
        tile_avx512::<8>(w, rows, pitch, ow, taps, bias, act, r, op.add(ow * CB16));
        ow += 8;
    }
    let o = op.add(ow * CB16);
    match ow_n - ow {
        0 => {}
        1 => tile_avx512::<1>(w, rows, pitch, ow, taps, bias, act, r, o),
        2 => tile_avx512::<2>(w, rows, pitch, ow, taps, bias, act, r, o),
        3 => tile_avx512::<3>(w, rows, pitch, ow, taps, bias, act, r, o),
        4 => tile_avx512::<4>(w, rows, pitch, ow, taps, bias, act, r, o),
        5 => tile_avx512::<5>(w, rows, pitch, ow, taps, bias, act, r, o),
        6 => tile_avx512::<6>(w, rows, pitch, ow, taps, bias, act, r, o),
        _ => tile_avx512::<7>(w, rows, pitch, ow, taps, bias, act, r, o),
    }
}

/// Tap rows kept on the stack by [`with_tap_rows`] (taller kernels use the heap).
const TAP_ROWS: usize = 16;

/// `f(rows)` with `rows[kh] = row(kh)` for the `kh_n` tap rows of a window.
#[inline(always)]
fn with_tap_rows<R>(kh_n: usize, row: impl Fn(usize) -> *const f32, f: impl FnOnce(&[*const f32]) -> R) -> R {
    if kh_n <= TAP_ROWS {
        let mut a = [std::ptr::null(); TAP_ROWS];
        for (kh, p) in a.iter_mut().enumerate().take(kh_n) {
            *p = row(kh);
        }
        f(&a[..kh_n])
    } else {
        f(&(0..kh_n).map(row).collect::<Vec<_>>())
    }
}

/// [`row_avx512`] over a contiguous band of rows `cols` pixels long, the output row's first
/// tap row being band row `r0`.
///
/// # Safety
/// As [`row_avx512`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn band_row_avx512(w: &Window3, bp: *const f32, cols: usize, r0: usize, taps: &[f32], bias: &[f32; CB16], act: Act, r: bool, op: *mut f32) {
    let dh = w.dilations[1];
    with_tap_rows(w.kernel[1], |kh| bp.wrapping_add((r0 + kh * dh) * cols * CB16), |rows| row_avx512(w, rows, CB16, taps, bias, act, r, op))
}

/// One task: interleave the band's input rows of channels `0..nc` of `x` (this image's planes
/// from the block's first channel on), then compute output rows `b.oh0..b.oh1` of those
/// channels into `y` (same layout as `x`, output planes).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn band_body<M: MulAdd, const CB: usize>(
    w: &Window3,
    x: &[f32],
    nc: usize,
    taps: &[f32],
    bias: &[f32],
    act: Act,
    b: Band,
    y: &SendPtr<f32>,
    buf: &mut [f32],
) {
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let (in_sz, out_sz) = (ih_n * iw_n, oh_n * ow_n);
    let (sh, ph, pw) = (w.strides[1], w.pad_begin[1], w.pad_begin[2]);
    let bias: &[f32; CB] = bias.try_into().expect("one bias per lane");
    #[cfg(target_arch = "x86_64")]
    let avx512 = CB == CB16 && M::AVX2 && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512;
    let flat = narrow_planes(w);
    let (band, rest) = buf.split_at_mut(b.rows * b.cols * CB);
    let (orow, tmp) = rest.split_at_mut(if flat { b.oh1 - b.oh0 } else { 1 } * ow_n * CB);
    // Interleave: pixel (r, q) of the band is input (oh0·sh + r - ph, q - pw), zero outside.
    // Narrow planes: the band's valid input rows are consecutive in every plane, so they are
    // interleaved in one pass over the flattened rows (8x8 transposes, a scalar tail only at
    // the very end), then copied into the padded band. Wide rows are interleaved in place.
    let (q0, q1) = (pw.min(b.cols), (pw + iw_n).min(b.cols));
    let ih_of = |r: usize| (b.oh0 * sh + r) as isize - ph as isize;
    let r_lo = (0..b.rows).find(|&r| ih_of(r) >= 0).unwrap_or(b.rows);
    let r_hi = (r_lo..b.rows).find(|&r| ih_of(r) >= ih_n as isize).unwrap_or(b.rows);
    if flat && r_lo < r_hi && q0 < q1 {
        let ih_lo = ih_of(r_lo) as usize;
        let len = (r_hi - r_lo) * iw_n;
        interleave::<M, CB>(x, in_sz, ih_lo * iw_n, len, nc, &mut tmp[..len * CB]);
    }
    for (r, brow) in band.chunks_exact_mut(b.cols * CB).enumerate() {
        if r < r_lo || r >= r_hi || q1 <= q0 {
            brow.fill(0.0);
            continue;
        }
        brow[..q0 * CB].fill(0.0);
        brow[q1 * CB..].fill(0.0);
        if flat {
            let from = ((r - r_lo) * iw_n + q0 - pw) * CB;
            brow[q0 * CB..q1 * CB].copy_from_slice(&tmp[from..from + (q1 - q0) * CB]);
        } else {
            let start = ih_of(r) as usize * iw_n + q0 - pw;
            interleave::<M, CB>(x, in_sz, start, q1 - q0, nc, &mut brow[q0 * CB..q1 * CB]);
        }
    }
    let (bp, op) = (band.as_ptr(), orow.as_mut_ptr());
    // AVX-512 tiles apply every activation in registers, AVX2 ones the cheap ones.
    // SAFETY (of the probe): M::AVX2 code runs on AVX2 CPUs only.
    #[cfg(target_arch = "x86_64")]
    let act_in_regs = avx512 || M::AVX2 && unsafe { crate::kernels::vmath::act_m256(act, std::arch::x86_64::_mm256_setzero_ps()) }.is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let act_in_regs = false;
    for oh in b.oh0..b.oh1 {
        let r0 = (oh - b.oh0) * sh;
        let op = if flat { op.wrapping_add((oh - b.oh0) * ow_n * CB) } else { op };
        let mut ow = 0;
        // SAFETY: the band holds every pixel these windows read (its extent was computed from
        // the last output of the row and of the band); `op` is this row's part of `orow`.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if avx512 {
                let b16 = &*(bias.as_ptr() as *const [f32; CB16]);
                band_row_avx512(w, bp, b.cols, r0, taps, b16, act, act_in_regs, op);
                ow = ow_n;
            }
            #[cfg(target_arch = "x86_64")]
            if M::AVX2 && CB == CB8 {
                let (a, r) = (act, act_in_regs);
                let bias = &*(bias.as_ptr() as *const [f32; CB8]);
                while ow + 8 <= ow_n {
                    tile_avx2::<8>(w, bp, b.cols, r0, ow, taps, bias, a, r, op.add(ow * CB));
                    ow += 8;
                }
                // The rest in one tile (independent accumulator chains hide the FMA latency).
                let o = op.add(ow * CB);
                match ow_n - ow {
                    0 => {}
                    1 => tile_avx2::<1>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    2 => tile_avx2::<2>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    3 => tile_avx2::<3>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    4 => tile_avx2::<4>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    5 => tile_avx2::<5>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    6 => tile_avx2::<6>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                    _ => tile_avx2::<7>(w, bp, b.cols, r0, ow, taps, bias, a, r, o),
                }
                ow = ow_n;
            }
            while ow + 8 <= ow_n {
                tile::<M, 8, CB>(w, bp, b.cols, r0, ow, taps, bias, op.add(ow * CB));
                ow += 8;
            }
            while ow < ow_n {
                tile::<M, 1, CB>(w, bp, b.cols, r0, ow, taps, bias, op.add(ow * CB));
                ow += 1;
            }
        }
        if !flat {
            if !act_in_regs {
                apply_inplace_body::<M>(act, orow);
            }
            // SAFETY: row oh of the block's planes belongs to this task only.
            deinterleave::<M, CB>(orow, nc, &unsafe { y.offset(oh * ow_n) }, out_sz);
        }
    }
    if flat {
        if !act_in_regs {
            apply_inplace_body::<M>(act, orow);
        }
        // The band's output rows are consecutive in every plane: de-interleaved in one pass.
        // SAFETY: rows oh0..oh1 of the block's planes belong to this task only.
        deinterleave::<M, CB>(orow, nc, &unsafe { y.offset(b.oh0 * ow_n) }, out_sz);
    }
}

/// Planes too narrow for row-by-row 8-pixel transposes: interleaved and de-interleaved a
/// band at a time over the flattened rows instead.
fn narrow_planes(w: &Window3) -> bool {
    w.input[2] < 16 || w.out[2] < 16
}

/// Pixels `start..start + len` of the first `nc` planes of `x` (plane stride `plane`) into
/// `dst` as `[len][CB]`, lanes past `nc` zero.
#[inline(always)]
fn interleave<M: MulAdd, const CB: usize>(x: &[f32], plane: usize, start: usize, len: usize, nc: usize, dst: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 && CB == CB16 && nc <= CB && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        assert!(dst.len() >= len * CB && (nc == 0 || x.len() >= (nc - 1) * plane + start + len));
        // SAFETY: AVX-512 code; source rows are the nc planes' pixels start..start+len (checked
        // above), destination rows the len pixels of dst; lanes past them are masked.
        unsafe {
            let (src, d) = (x.as_ptr().add(start), dst.as_mut_ptr());
            while done < len {
                let n = (len - done).min(16);
                let mask = ((1u32 << n) - 1) as u16;
                transpose16_part(src.add(done), plane, nc, mask, d.add(done * CB), CB, n, 0xFFFF);
                done += n;
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 && nc == CB {
        // SAFETY: AVX2 code; every 8x8 block lies inside the planes and `dst`.
        unsafe {
            let src = x.as_ptr().add(start);
            while done + 8 <= len {
                for g in 0..CB / 8 {
                    transpose8x8(src.add(g * 8 * plane + done), plane, dst.as_mut_ptr().add(done * CB + g * 8), CB);
                }
                done += 8;
            }
        }
    }
    let dst = &mut dst[done * CB..len * CB];
    for l in 0..CB {
        if l < nc {
            let src = &x[l * plane + start + done..l * plane + start + len];
            for (d, v) in dst.chunks_exact_mut(CB).zip(src) {
                d[l] = *v;
            }
        } else {
            dst.chunks_exact_mut(CB).for_each(|d| d[l] = 0.0);
        }
    }
}

/// `src` (`[len][CB]`) back into `nc` planes: lane `l` to `y + l·plane`, `len` pixels.
#[inline(always)]
fn deinterleave<M: MulAdd, const CB: usize>(src: &[f32], nc: usize, y: &SendPtr<f32>, plane: usize) {
    let len = src.len() / CB;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 && CB == CB16 && nc <= CB && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: AVX-512 code; the source holds len pixels of 16 lanes, the caller owns len
        // pixels of each of the nc planes at y (lanes past them are masked).
        unsafe {
            while done < len {
                let n = (len - done).min(16);
                let mask = ((1u32 << n) - 1) as u16;
                transpose16_part(src.as_ptr().add(done * CB), CB, n, 0xFFFF, y.0.add(done), plane, nc, mask);
                done += n;
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if M::AVX2 && nc == CB {
        // SAFETY: AVX2 code; the caller owns `len` pixels of each of the CB planes at `y`.
        unsafe {
            while done + 8 <= len {
                for g in 0..CB / 8 {
                    transpose8x8(src.as_ptr().add(done * CB + g * 8), CB, y.0.add(g * 8 * plane + done), plane);
                }
                done += 8;
            }
        }
    }
    for l in 0..nc {
        // SAFETY: as above, for lane l's plane.
        let yr = unsafe { y.slice(l * plane + done, len - done) };
        for (d, v) in yr.iter_mut().zip(src[done * CB..].chunks_exact(CB)) {
            *d = v[l];
        }
    }
}

/// Transpose an 8x8 block: row `i` of the source (8 floats at `src + i·ss`) becomes column `i`
/// of the destination (rows at `dst + j·ds`).
///
/// # Safety
/// AVX2 CPU; the 8 rows of 8 floats must be readable at `src` and writable at `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8x8(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (j, v) in out.iter().enumerate() {
        _mm256_storeu_ps(dst.add(j * ds), *v);
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn band_body8<M: MulAdd>(w: &Window3, x: &[f32], nc: usize, taps: &[f32], bias: &[f32], act: Act, b: Band, y: &SendPtr<f32>, buf: &mut [f32]) {
    band_body::<M, CB8>(w, x, nc, taps, bias, act, b, y, buf)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn band_body16<M: MulAdd>(w: &Window3, x: &[f32], nc: usize, taps: &[f32], bias: &[f32], act: Act, b: Band, y: &SendPtr<f32>, buf: &mut [f32]) {
    band_body::<M, CB16>(w, x, nc, taps, bias, act, b, y, buf)
}

crate::multiversion! {
    /// See [`band_body`]: blocks of 8 channels.
    fn band_f32_8(
        w: &Window3,
        x: &[f32],
        nc: usize,
        taps: &[f32],
        bias: &[f32],
        act: Act,
        b: Band,
        y: &SendPtr<f32>,
        buf: &mut [f32],
    ) = band_body8;
}

crate::multiversion! {
    /// See [`band_body`]: blocks of 16 channels (AVX-512).
    fn band_f32_16(
        w: &Window3,
        x: &[f32],
        nc: usize,
        taps: &[f32],
        bias: &[f32],
        act: Act,
        b: Band,
        y: &SendPtr<f32>,
        buf: &mut [f32],
    ) = band_body16;
}

/// Output rows computed together by the direct row kernel: each input row it loads serves up
/// to this many of them.
#[cfg(target_arch = "x86_64")]
const DIRECT_ROWS: usize = 4;
/// The narrowest output rows the direct row kernel takes (narrower ones waste too many of a
/// vector's 16 lanes and pay its setup per plane more often; the interleaved bands fill them
/// with channels instead: 480 channels of 14x14 3x3 taps 94 vs 86 us, 672 of 14x14 5x5 taps
/// 254 vs 166 us on the AMD Zen 4 machine).
#[cfg(target_arch = "x86_64")]
const DIRECT_MIN_COLS: usize = 28;

/// Whether [`direct_planes`] computes this window: an AVX-512 CPU, square 3x3 taps of stride 1
/// or 2 or 5x5 taps of stride 1 (at stride 2 each input row serves too few outputs: 96
/// channels of 28x28 53 vs 37 us interleaved), no dilation, output rows of at least
/// [`DIRECT_MIN_COLS`].
#[cfg(target_arch = "x86_64")]
fn direct_rows_ok(w: &Window3) -> bool {
    let k = w.kernel[1];
    crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512
        && w.kernel[2] == k
        && (k == 3 || k == 5)
        && w.strides[1] == w.strides[2]
        && (w.strides[1] == 1 || w.strides[1] == 2)
        && w.dilations[1] == 1
        && w.dilations[2] == 1
        && w.out[2] >= DIRECT_MIN_COLS
        && (k == 3 || w.strides[1] == 1)
}

/// `R` output rows from `oh0` × `T` vectors of 16 outputs from column `ow` of one plane:
/// every input row in their windows is loaded once per tap column and multiplied into each of
/// the `R` rows it serves. Stores only the lanes inside the row (`ow_n` columns).
///
/// # Safety
/// AVX-512F CPU; `rows` describes readable rows for every valid input row; `y` is the plane's
/// output (`oh_n · ow_n`), rows `oh0..oh0 + R` inside it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn direct_tile<const K: usize, const S: usize, const R: usize, const T: usize>(
    rows: &PhaseRows,
    wv: &[f32],
    bias: std::arch::x86_64::__m512,
    act: Act,
    oh0: usize,
    ow: usize,
    ow_n: usize,
    y: *mut f32,
) {
    use std::arch::x86_64::*;
    // The taps in registers for the whole tile (the compiler keeps the K·K used ones).
    let mut wr = [_mm512_setzero_ps(); 25];
    for (r, t) in wr.iter_mut().zip(wv) {
        *r = _mm512_set1_ps(*t);
    }
    let mut acc = [[bias; T]; R];
    let mut masks = [[0u16; T]; K];
    for (kw, m) in masks.iter_mut().enumerate() {
        for (t, mt) in m.iter_mut().enumerate() {
            *mt = rows.mask(kw, ow + 16 * t);
        }
    }
    for j in 0..(R - 1) * S + K {
        let i = (oh0 * S + j) as isize - rows.ph;
        if i < 0 || i >= rows.ih {
            continue;
        }
        for kw in 0..K {
            let src = rows.at(i as usize, kw, ow);
            for t in 0..T {
                // Masked lanes are not read (no fault), so `src` may point before the row.
                let v = _mm512_maskz_loadu_ps(masks[kw][t], src.wrapping_add(16 * t));
                for (r, a) in acc.iter_mut().enumerate() {
                    let kh = j as isize - (r * S) as isize;
                    if (0..K as isize).contains(&kh) {
                        a[t] = _mm512_fmadd_ps(wr[kh as usize * K + kw], v, a[t]);
                    }
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (t, v) in a.iter().enumerate() {
            let col = ow + 16 * t;
            let n = ow_n.saturating_sub(col).min(16);
            let m = ((1u32 << n) - 1) as u16;
            _mm512_mask_storeu_ps(y.add((oh0 + r) * ow_n + col), m, crate::kernels::vmath::act_m512(act, *v));
        }
    }
}

/// One plane of a depthwise convolution with [`direct_tile`]s: blocks of [`DIRECT_ROWS`]
/// rows, pairs of 16-column vectors. For stride 2 the input rows are first split into their
/// even and odd columns in `split` (`ih · 2 · ceil(iw / 2)` values).
///
/// # Safety
/// AVX-512F CPU; `x` holds the plane's `ih · iw` inputs, `y` its `oh · ow` outputs, `taps` its
/// `K · K` weights.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn direct_plane<const K: usize, const S: usize>(w: &Window3, x: *const f32, taps: &[f32], bias: f32, act: Act, split: *mut f32, y: *mut f32) {
    use std::arch::x86_64::*;
    let [_, ih, iw] = w.input;
    let [_, oh_n, ow_n] = w.out;
    let rows = if S == 2 {
        // Row i's even columns at split + 2i·ceil(iw/2), its odd ones after them.
        let all = std::slice::from_raw_parts_mut(split, ih * 2 * iw.div_ceil(2));
        PhaseRows::split(w, std::slice::from_raw_parts(x, ih * iw), 0..ih, all)
    } else {
        PhaseRows::in_place(w, x)
    };
    let wv = &taps[..K * K];
    let b = _mm512_set1_ps(bias);
    let mut oh = 0;
    while oh < oh_n {
        let full = oh + DIRECT_ROWS <= oh_n;
        let mut ow = 0;
        while ow < ow_n {
            // Pairs of vectors for 3x3 taps; 5x5 ones keep their 25 taps in registers instead.
            let two = K == 3 && ow + 16 < ow_n;
            match (full, two) {
                (true, true) => direct_tile::<K, S, DIRECT_ROWS, 2>(&rows, wv, b, act, oh, ow, ow_n, y),
                (true, false) => direct_tile::<K, S, DIRECT_ROWS, 1>(&rows, wv, b, act, oh, ow, ow_n, y),
                (false, true) => direct_tile::<K, S, 1, 2>(&rows, wv, b, act, oh, ow, ow_n, y),
                (false, false) => direct_tile::<K, S, 1, 1>(&rows, wv, b, act, oh, ow, ow_n, y),
            }
            ow += if two { 32 } else { 16 };
        }
        oh += if full { DIRECT_ROWS } else { 1 };
    }
}

/// [`depthwise_f32`] on wide planes ([`direct_rows_ok`]), one plane per task, computed in
/// place along its rows: no interleaving of channels.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn direct_planes(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    let (in_sz, out_sz, ksz) = (w.in_size(), w.out_size(), w.kernel_size());
    let (k, s) = (w.kernel[1], w.strides[1]);
    assert!(x.len() >= batch * channels * in_sz && y.len() >= batch * channels * out_sz && weights.len() >= channels * ksz);
    let split_len = if s == 2 { w.input[1] * 2 * w.input[2].div_ceil(2) } else { 0 };
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    let work = (out_sz * ksz).max(1);
    pool.parallel_for(batch * channels, (1 << 15) / work + 1, |p0, p1| {
        let mut scratch = Scratch::default();
        let split = match scratch.slice::<f32>(split_len.max(1)) {
            Ok(b) => b.as_mut_ptr(),
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        };
        for p in p0..p1 {
            let c = p % channels;
            let (xp, taps) = (x[p * in_sz..].as_ptr(), &weights[c * ksz..(c + 1) * ksz]);
            let b = bias.map_or(0.0, |b| b[c]);
            // SAFETY: AVX-512 checked by direct_rows_ok; plane p's input and output lie inside
            // x and y (asserted above), each plane written by one task; `split` holds split_len.
            unsafe {
                let yo = yp.offset(p * out_sz).0;
                match (k, s) {
                    (3, 1) => direct_plane::<3, 1>(w, xp, taps, b, act, split, yo),
                    (3, _) => direct_plane::<3, 2>(w, xp, taps, b, act, split, yo),
                    _ => direct_plane::<5, 1>(w, xp, taps, b, act, split, yo),
                }
            }
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The block width of [`depthwise_f32`] on this CPU.
fn block_width() -> usize {
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        CB16
    } else {
        CB8
    }
}

/// Constant depthwise weights interleaved once, at session creation, the way every run's
/// blocks read them: `[block][tap][CB]`, lanes past the last channel zero. Interleaving them on
/// each run cost a scalar gather per tap and channel (576 channels of 5x5 taps: 14,400 per
/// run, 13% of that convolution's time on 7x7 planes).
#[derive(Debug, Clone)]
pub struct DepthwiseTaps {
    cb: usize,
    channels: usize,
    ksz: usize,
    taps: Vec<f32>,
}

impl DepthwiseTaps {
    /// `weights` as `[channels][ksz]`, interleaved for this CPU's block width.
    pub fn new(weights: &[f32], channels: usize) -> Option<DepthwiseTaps> {
        if channels == 0 || weights.is_empty() || weights.len() % channels != 0 {
            return None;
        }
        let (cb, ksz) = (block_width(), weights.len() / channels);
        let mut taps = vec![0f32; channels.div_ceil(cb) * ksz * cb];
        for (blk, dst) in taps.chunks_exact_mut(ksz * cb).enumerate() {
            interleave_taps(weights, blk * cb, cb.min(channels - blk * cb), ksz, dst);
        }
        Some(DepthwiseTaps { cb, channels, ksz, taps })
    }

    /// Block `blk`'s taps when they were interleaved for `cb` lanes, `channels` and `ksz`.
    fn block(&self, cb: usize, channels: usize, ksz: usize, blk: usize) -> Option<&[f32]> {
        (self.cb == cb && self.channels == channels && self.ksz == ksz).then(|| &self.taps[blk * ksz * cb..(blk + 1) * ksz * cb])
    }
}

/// The `ksz` taps of channels `c0..c0 + nc` into `dst` as `[tap][CB]` (`CB = dst.len() / ksz`),
/// lanes past `nc` zero.
fn interleave_taps(weights: &[f32], c0: usize, nc: usize, ksz: usize, dst: &mut [f32]) {
    let cb = dst.len() / ksz;
    for (k, tv) in dst.chunks_exact_mut(cb).enumerate() {
        for (l, v) in tv.iter_mut().enumerate() {
            *v = if l < nc { weights[(c0 + l) * ksz + k] } else { 0.0 };
        }
    }
}

/// `y = act(depthwise_conv(x, weights) + bias)` for a 2-D (or 1-D, as height 1) window with one
/// output per input channel. `x`: `[N][C][IH·IW]`, `weights`: `[C][KH·KW]`, `y`: `[N][C][OH·OW]`
/// (every element written). `taps`, when given, are `weights` interleaved at session creation
/// (used when they match this CPU's block width and the shapes).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_f32(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    taps: Option<&DepthwiseTaps>,
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if direct_rows_ok(w) {
        return direct_planes(pool, w, batch, channels, x, weights, bias, act, y);
    }
    if block_width() == CB16 {
        depthwise_blocks::<CB16>(pool, w, batch, channels, x, weights, taps, bias, act, y)
    } else {
        depthwise_blocks::<CB8>(pool, w, batch, channels, x, weights, taps, bias, act, y)
    }
}

/// A task's taps and bias lanes for the channel block it is on (`[tap][CB]` and `[CB]`, zero
/// past the last channel): the taps interleaved at session creation when they match, else
/// interleaved here once per change of block (on the stack up to 7x7 taps: no allocation).
struct BlockParams<'a, const CB: usize> {
    packed: Option<&'a DepthwiseTaps>,
    weights: &'a [f32],
    bias: Option<&'a [f32]>,
    channels: usize,
    ksz: usize,
    stack: [f32; 49 * CB16],
    heap: Vec<f32>,
    bias_v: [f32; CB],
    last: usize,
}

impl<'a, const CB: usize> BlockParams<'a, CB> {
    fn new(packed: Option<&'a DepthwiseTaps>, weights: &'a [f32], bias: Option<&'a [f32]>, channels: usize, ksz: usize) -> Self {
        let heap = if ksz * CB > 49 * CB16 { vec![0.0; ksz * CB] } else { Vec::new() };
        BlockParams { packed, weights, bias, channels, ksz, stack: [0.0; 49 * CB16], heap, bias_v: [0.0; CB], last: usize::MAX }
    }

    /// Taps and bias lanes of block `blk`.
    fn block(&mut self, blk: usize) -> (&[f32], &[f32]) {
        let (c0, ksz) = (blk * CB, self.ksz);
        let nc = CB.min(self.channels - c0);
        let pre = self.packed.and_then(|p| p.block(CB, self.channels, ksz, blk));
        let own = if self.heap.is_empty() { &mut self.stack[..ksz * CB] } else { &mut self.heap[..] };
        if blk != self.last {
            if pre.is_none() {
                interleave_taps(self.weights, c0, nc, ksz, own);
            }
            for (l, v) in self.bias_v.iter_mut().enumerate() {
                *v = if l < nc { self.bias.map_or(0.0, |b| b[c0 + l]) } else { 0.0 };
            }
            self.last = blk;
        }
        (pre.unwrap_or(own), &self.bias_v)
    }
}

/// How a depthwise pass over `batch` images of `blocks` channel blocks of `cb` lanes bands its
/// output rows: the band width in input pixels, output rows per band (a band's interleaved
/// input within [`BAND_BYTES`], and enough tasks for every thread) and bands per plane.
fn band_plan(pool: &ThreadPool, w: &Window3, batch: usize, blocks: usize, cb: usize) -> (usize, usize, usize) {
    let (oh_n, ow_n, kw_n) = (w.out[1], w.out[2], w.kernel[2]);
    let cols = (ow_n - 1) * w.strides[2] + (kw_n - 1) * w.dilations[2] + 1;
    let mut per_band = (BAND_BYTES / (w.strides[1] * cols * cb * 4).max(1)).clamp(1, oh_n);
    let want_tasks = 4 * pool.threads();
    if pool.threads() > 1 && batch * blocks * oh_n.div_ceil(per_band) < want_tasks {
        let bands = want_tasks.div_ceil(batch * blocks).min(oh_n);
        per_band = per_band.min(oh_n.div_ceil(bands));
    }
    (cols, per_band, oh_n.div_ceil(per_band))
}

/// [`depthwise_f32`] with blocks of `CB` channels.
#[allow(clippy::too_many_arguments)]
fn depthwise_blocks<const CB: usize>(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    packed: Option<&DepthwiseTaps>,
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    debug_assert!(w.input[0] == 1 && w.kernel[0] == 1 && w.out[0] == 1);
    let [_, oh_n, ow_n] = w.out;
    let [_, kh_n, kw_n] = w.kernel;
    let (in_sz, out_sz, ksz) = (w.in_size(), w.out_size(), kh_n * kw_n);
    if batch == 0 || channels == 0 || out_sz == 0 {
        return Ok(());
    }
    let (sh, dh) = (w.strides[1], w.dilations[1]);
    let band_rows = |n_out: usize| (n_out - 1) * sh + (kh_n - 1) * dh + 1;
    let blocks = channels.div_ceil(CB);
    let (cols, per_band, bands) = band_plan(pool, w, batch, blocks, CB);
    let tasks = batch * blocks * bands;
    let work = (per_band * ow_n * ksz * CB).max(1);
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    pool.parallel_for(tasks, (1 << 15) / work + 1, |t0, t1| {
        let mut scratch = Scratch::default();
        let mut params = BlockParams::<CB>::new(packed, weights, bias, channels, ksz);
        // Padded input band, the band's output rows, its input rows before padding.
        let flat = narrow_planes(w);
        let buf_need = |rows: usize, out_rows: usize| {
            rows * cols * CB + if flat { out_rows * ow_n * CB + rows * w.input[2] * CB } else { ow_n * CB }
        };
        let buf_len = buf_need(band_rows(per_band), per_band);
        let buf = match scratch.slice::<f32>(buf_len) {
            Ok(b) => b,
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        };
        for t in t0..t1 {
            let (n, rest) = (t / (blocks * bands), t % (blocks * bands));
            let (blk, band) = (rest / bands, rest % bands);
            let c0 = blk * CB;
            let nc = CB.min(channels - c0);
            let (block_taps, bias_v) = params.block(blk);
            let oh0 = band * per_band;
            let oh1 = (oh0 + per_band).min(oh_n);
            let b = Band { oh0, oh1, rows: band_rows(oh1 - oh0), cols };
            let xb = &x[(n * channels + c0) * in_sz..(n * channels + c0 + nc) * in_sz];
            // Channel c0's output plane of image n; the task writes rows oh0..oh1 of nc planes.
            // SAFETY: inside y (n < batch, c0 < channels).
            let yb = unsafe { yp.offset((n * channels + c0) * out_sz) };
            let buf = &mut buf[..buf_need(b.rows, oh1 - oh0)];
            if CB == CB16 {
                band_f32_16(w, xb, nc, block_taps, bias_v, act, b, &yb, buf);
            } else {
                band_f32_8(w, xb, nc, block_taps, bias_v, act, b, &yb, buf);
            }
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `y = act(depthwise_conv(x, weights) + bias)` over channels-last images, the layout the
/// optimizer gives chains of pointwise and depthwise convolutions (see
/// `crate::optimizer::layout`): `x` is `[N][IH][IW][C]`, `y` `[N][OH][OW][C]` (every element
/// written), `weights` `[C][KH·KW]`, for a 2-D window (`w.input[0] == 1`). Sixteen consecutive
/// channels of a pixel are one vector already: each task copies its block's input rows into a
/// zero-padded band (one load and one store per pixel, no transposes) and runs the register
/// tiles of the channel-interleaved kernel on it. `taps`: as for [`depthwise_f32`].
#[allow(clippy::too_many_arguments)]
pub fn depthwise_nhwc_f32(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    taps: Option<&DepthwiseTaps>,
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    let (in_sz, out_sz, ksz) = (w.in_size(), w.out_size(), w.kernel_size());
    assert!(w.input[0] == 1 && w.kernel[0] == 1 && w.out[0] == 1, "depthwise_nhwc_f32: 2-D windows only");
    assert!(x.len() >= batch * in_sz * channels && y.len() >= batch * out_sz * channels && weights.len() >= channels * ksz);
    assert!(bias.is_none_or(|b| b.len() >= channels));
    if batch == 0 || channels == 0 || out_sz == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        return nhwc_blocks_avx512(pool, w, batch, channels, x, weights, taps, bias, act, y);
    }
    let _ = taps;
    // Any other CPU: one output pixel at a time, channels innermost (contiguous on both sides).
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let [_, kh_n, kw_n] = w.kernel;
    let yp = SendPtr(y.as_mut_ptr());
    pool.parallel_for(batch * oh_n, 1.max((1 << 14) / (ow_n * channels * ksz).max(1)), |r0, r1| {
        for r in r0..r1 {
            let (n, oh) = (r / oh_n, r % oh_n);
            // SAFETY: output row r belongs to this task.
            let yr = unsafe { yp.slice(r * ow_n * channels, ow_n * channels) };
            for (ow, yv) in yr.chunks_exact_mut(channels).enumerate() {
                match bias {
                    Some(b) => yv.copy_from_slice(&b[..channels]),
                    None => yv.fill(0.0),
                }
                for kh in 0..kh_n {
                    let ih = w.coord(1, oh, kh);
                    if ih < 0 || ih >= ih_n as isize {
                        continue;
                    }
                    for kw in 0..kw_n {
                        let iw = w.coord(2, ow, kw);
                        if iw < 0 || iw >= iw_n as isize {
                            continue;
                        }
                        let xv = &x[((n * ih_n + ih as usize) * iw_n + iw as usize) * channels..][..channels];
                        let k = kh * kw_n + kw;
                        for (c, (o, v)) in yv.iter_mut().zip(xv).enumerate() {
                            *o += v * weights[c * ksz + k];
                        }
                    }
                }
            }
            crate::kernels::vmath::apply_inplace(act, yr);
        }
    });
    Ok(())
}

/// [`depthwise_nhwc_f32`] on AVX-512: tasks of (image, block of 16 channels, band of output
/// rows) as in [`depthwise_blocks`].
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn nhwc_blocks_avx512(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    packed: Option<&DepthwiseTaps>,
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    let [_, oh_n, ow_n] = w.out;
    let [_, kh_n, kw_n] = w.kernel;
    let ksz = kh_n * kw_n;
    let (sh, dh) = (w.strides[1], w.dilations[1]);
    let band_rows = |n_out: usize| (n_out - 1) * sh + (kh_n - 1) * dh + 1;
    let blocks = channels.div_ceil(CB16);
    let (cols, per_band, bands) = band_plan(pool, w, batch, blocks, CB16);
    let work = (per_band * ow_n * ksz * CB16).max(1);
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    pool.parallel_for(batch * blocks * bands, (1 << 15) / work + 1, |t0, t1| {
        let mut scratch = Scratch::default();
        let mut params = BlockParams::<CB16>::new(packed, weights, bias, channels, ksz);
        // The padded band and one output row.
        let buf = match scratch.slice::<f32>(band_rows(per_band) * cols * CB16 + ow_n * CB16) {
            Ok(b) => b,
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        };
        for t in t0..t1 {
            let (n, rest) = (t / (blocks * bands), t % (blocks * bands));
            let (blk, band) = (rest / bands, rest % bands);
            let (c0, nc) = (blk * CB16, CB16.min(channels - blk * CB16));
            let (taps, bias_v) = params.block(blk);
            let bias_v: &[f32; CB16] = bias_v.try_into().expect("16 bias lanes");
            let oh0 = band * per_band;
            let oh1 = (oh0 + per_band).min(oh_n);
            let b = Band { oh0, oh1, rows: band_rows(oh1 - oh0), cols };
            // SAFETY: AVX-512 CPU (checked by the caller); the task reads image n's rows of
            // x and writes rows oh0..oh1 of channels c0..c0 + nc of image n's output only.
            unsafe { nhwc_band_avx512(w, x, channels, n, c0, nc, taps, bias_v, act, b, &yp, buf) };
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One task of [`nhwc_blocks_avx512`]: copy the band's input pixels of channels
/// `c0..c0 + nc` of image `n` into a zero-padded `[rows][cols][16]` band, compute its output
/// rows with [`row_avx512`] and store their `nc` lanes into the channels-last output.
///
/// # Safety
/// AVX-512F CPU; `x` and `y` hold `n + 1` images of `channels` channels (input and output
/// geometry of `w`); `buf` holds the band and one output row of 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn nhwc_band_avx512(w: &Window3, x: &[f32], channels: usize, n: usize, c0: usize, nc: usize, taps: &[f32], bias: &[f32; CB16], act: Act, b: Band, y: &SendPtr<f32>, buf: &mut [f32]) {
    use std::arch::x86_64::*;
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let (sh, ph, pw) = (w.strides[1], w.pad_begin[1], w.pad_begin[2]);
    let mask = ((1u32 << nc) - 1) as u16;
    let (band, orow) = buf.split_at_mut(b.rows * b.cols * CB16);
    let zero = _mm512_setzero_ps();
    let bp = band.as_mut_ptr();
    let xi = x.as_ptr().add(n * ih_n * iw_n * channels + c0);
    for r in 0..b.rows {
        let ih = (b.oh0 * sh + r) as isize - ph as isize;
        let row = bp.add(r * b.cols * CB16);
        if ih < 0 || ih >= ih_n as isize {
            for q in 0..b.cols {
                _mm512_storeu_ps(row.add(q * CB16), zero);
            }
            continue;
        }
        let src = xi.add(ih as usize * iw_n * channels);
        for q in 0..b.cols {
            let iw = q as isize - pw as isize;
            let v = if iw < 0 || iw >= iw_n as isize { zero } else { _mm512_maskz_loadu_ps(mask, src.add(iw as usize * channels)) };
            _mm512_storeu_ps(row.add(q * CB16), v);
        }
    }
    let op = orow.as_mut_ptr();
    for oh in b.oh0..b.oh1 {
        band_row_avx512(w, bp, b.cols, (oh - b.oh0) * sh, taps, bias, act, true, op);
        let dst = y.0.add(((n * oh_n + oh) * ow_n) * channels + c0);
        for ow in 0..ow_n {
            _mm512_mask_storeu_ps(dst.add(ow * channels), mask, _mm512_loadu_ps(op.add(ow * CB16)));
        }
    }
}

/// The pointwise convolution an [`expand_depthwise_f32`] computes before its depthwise one
/// (the expansion of an inverted residual block): `cin` input channels to the depthwise
/// convolution's channels, weights transposed (`[cin][channels]`) and packed by
/// [`PackedB::for_implicit_t`], with its bias and activation.
pub struct Expand<'a> {
    pub cin: usize,
    pub wt: &'a PackedB,
    pub bias: Option<&'a [f32]>,
    pub act: Act,
}

/// Bytes of expanded rows an [`expand_depthwise_f32`] task aims to keep (more when one
/// output row's window needs more): the rows in flight, zeroed once per task.
const EXPAND_BAND_BYTES: usize = 64 << 10;

/// Whether [`expand_depthwise_f32`] runs `w` (a depthwise window over `channels`) with `taps`
/// on this CPU: AVX-512, a 2-D (or 1-D) window, taps interleaved for 16 lanes.
pub fn expand_depthwise_available(w: &Window3, channels: usize, taps: Option<&DepthwiseTaps>) -> bool {
    crate::kernels::sgemm::implicit_available()
        && w.input[0] == 1
        && w.kernel[0] == 1
        && w.out[0] == 1
        && taps.is_some_and(|t| t.block(CB16, channels, w.kernel_size(), 0).is_some())
}

/// Whether [`expand_depthwise_f32`] beats the two convolutions apart for window `w`: always
/// but for 3x3 windows of stride 1 over rows the direct plane kernel takes, which reuses each
/// loaded input row for three output rows and needs no transposes. On the Zen 4 machine,
/// standalone (expanded image in L2 either way): 24 -> 88 channels on 28x28, 3x3 stride 1,
/// 1.2x slower fused, 24 -> 144 on 56x56 1.03x; 16 -> 96 on 112x112 with a 3x3 stride 2
/// 0.90x, 40 -> 240 on 28x28 with a 5x5 0.94x, 8 -> 48 on 48x48 with a 3x3 stride 2 0.86x.
pub fn expand_depthwise_pays(w: &Window3) -> bool {
    !(direct_rows_ok(w) && w.kernel[1] == 3 && w.strides[1] == 1)
}

/// `y = act(depthwise_conv(act1(pointwise_conv(x)), weights) + bias)` without the expanded
/// image ever reaching memory: the inverted residual block's expansion (`cin` to `channels`,
/// [`Expand`]) feeds its depthwise convolution (window `w`, whose input extent is `x`'s) row
/// by row. `x`: `[N][cin][IH·IW]`, `y`: `[N][channels][OH·OW]` (every element written).
///
/// The expanded image of an early stage is the largest tensor of these networks (96 channels
/// of 112x112: 4.8 MB), written by the pointwise convolution, read back by the depthwise one
/// and interleaved by it into 16-channel bands. Here each expanded row is computed straight
/// into those bands (pixels x 16 channels, the transposed product, bias and activation in
/// registers), kept in L2 while the depthwise rows that read it are computed, and the rows
/// that the next band of outputs also reads are moved to the band's top instead of being
/// computed again. A task is one image (or, with fewer images than threads, a part of its
/// output rows).
#[allow(clippy::too_many_arguments)]
pub fn expand_depthwise_f32(
    pool: &ThreadPool,
    w: &Window3,
    batch: usize,
    channels: usize,
    x: &[f32],
    ex: &Expand,
    taps: &DepthwiseTaps,
    bias: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) -> Result<()> {
    assert!(expand_depthwise_available(w, channels, Some(taps)), "expand_depthwise_f32: not available for this window and CPU");
    let (in_sz, out_sz) = (w.in_size(), w.out_size());
    let e = channels;
    assert!(x.len() == batch * ex.cin * in_sz && y.len() == batch * e * out_sz, "expand_depthwise_f32: x or y does not match the shapes");
    assert!(ex.wt.depth() == ex.cin && ex.wt.cols() == e, "expand_depthwise_f32: packed weights are {}x{}, not {}x{e}", ex.wt.depth(), ex.wt.cols(), ex.cin);
    assert!(ex.bias.is_none_or(|b| b.len() == e) && bias.is_none_or(|b| b.len() == e), "expand_depthwise_f32: a bias does not have {e} values");
    if batch == 0 || e == 0 || out_sz == 0 {
        return Ok(());
    }
    let [_, oh_n, ow_n] = w.out;
    let [_, kh_n, kw_n] = w.kernel;
    let (sh, dh) = (w.strides[1], w.dilations[1]);
    let cols = (ow_n - 1) * w.strides[2] + (kw_n - 1) * w.dilations[2] + 1;
    let blocks = e.div_ceil(CB16);
    // Padded rows read by `n` consecutive output rows.
    let reach = |n: usize| (n - 1) * sh + (kh_n - 1) * dh + 1;
    let ep = blocks * CB16;
    let row_bytes = cols * ep * 4;
    let mut sub = 1;
    while sub < oh_n && reach(sub + 1) * row_bytes <= EXPAND_BAND_BYTES {
        sub += 1;
    }
    // Images split into parts only to give every thread the same work.
    let th = pool.threads();
    let parts = if th > 1 && batch % th != 0 && batch < 4 * th { th.min(oh_n) } else { 1 };
    let band_len = reach(sub) * cols * ep;
    let yp = SendPtr(y.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    pool.parallel_for(batch * parts, 1, |t0, t1| {
        let mut scratch = Scratch::default();
        let buf = match scratch.slice::<f32>(band_len + ow_n * CB16) {
            Ok(b) => b,
            Err(e) => {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        };
        let offs: Vec<usize> = (0..ex.cin).map(|p| p * in_sz).collect();
        let mut params = BlockParams::<CB16>::new(Some(taps), &[], bias, e, w.kernel_size());
        for t in t0..t1 {
            let (n, part) = (t / parts, t % parts);
            let rows = part * oh_n / parts..(part + 1) * oh_n / parts;
            let task = ExpandTask { w, e, cols, sub, band_len, reach: reach(sub), x: &x[n * ex.cin * in_sz..(n + 1) * ex.cin * in_sz], offs: &offs, ex, act };
            // SAFETY: the CPU has AVX-512 (asserted above); the task writes output rows
            // `rows` of image n only, inside y.
            unsafe { task.run(rows, &mut params, buf, &yp.offset(n * e * out_sz)) };
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What every task of one [`expand_depthwise_f32`] call shares, for one image.
struct ExpandTask<'a> {
    w: &'a Window3,
    e: usize,
    /// Band row length in pixels (padding included).
    cols: usize,
    /// Output rows per band, and padded rows a band holds.
    sub: usize,
    reach: usize,
    /// Floats of the band.
    band_len: usize,
    /// The image's input planes, and each plane's offset in them.
    x: &'a [f32],
    offs: &'a [usize],
    ex: &'a Expand<'a>,
    act: Act,
}

impl ExpandTask<'_> {
    /// Output rows `rows` of the image (planes from `y` on). `buf`: the band, then one
    /// interleaved output row. The band is a ring of `reach` channels-last rows (`cols` pixels
    /// of every channel, padded to whole 16-lane blocks): padded row `pr` is in slot
    /// `pr % reach`, so the rows a band of outputs shares with the next stay where they are.
    ///
    /// # Safety
    /// AVX-512 CPU; the caller owns rows `rows` of the image's output planes at `y`.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn run(&self, rows: std::ops::Range<usize>, params: &mut BlockParams<CB16>, buf: &mut [f32], y: &SendPtr<f32>) {
        let w = self.w;
        let [_, ih_n, iw_n] = w.input;
        let (ow_n, out_sz, kh_n) = (w.out[2], w.out_size(), w.kernel[1]);
        let (sh, dh, ph, pw) = (w.strides[1], w.dilations[1], w.pad_begin[1], w.pad_begin[2]);
        let (cols, ring) = (self.cols, self.reach);
        let blocks = self.e.div_ceil(CB16);
        let ep = blocks * CB16;
        let row_len = cols * ep;
        let (band, orow) = buf.split_at_mut(self.band_len);
        let orow = &mut orow[..ow_n * CB16];
        // Zero padding columns and lanes past the last channel: never written below.
        band.fill(0.0);
        // Inside the band, columns pw.. hold the image's pixels (those the windows reach).
        let pixels = iw_n.min(cols.saturating_sub(pw));
        // Padded rows computed so far end here.
        let mut done = 0;
        let mut o0 = rows.start;
        while o0 < rows.end {
            let o1 = (o0 + self.sub).min(rows.end);
            let need = o0 * sh..(o1 - 1) * sh + (kh_n - 1) * dh + 1;
            debug_assert!(need.len() <= ring);
            for pr in done.max(need.start)..need.end {
                let row = &mut band[(pr % ring) * row_len..(pr % ring + 1) * row_len];
                let ih = pr as isize - ph as isize;
                if ih < 0 || ih >= ih_n as isize || pixels == 0 {
                    row.fill(0.0);
                    continue;
                }
                let x = self.x.as_ptr().add(ih as usize * iw_n);
                crate::kernels::sgemm::sgemm_row_t(x, self.offs, pixels, self.ex.wt, row.as_mut_ptr().add(pw * ep), ep, self.ex.bias, self.ex.act);
            }
            done = need.end;
            for blk in 0..blocks {
                let (c0, nc) = (blk * CB16, CB16.min(self.e - blk * CB16));
                let (taps, bias_v) = params.block(blk);
                let b16 = &*(bias_v.as_ptr() as *const [f32; CB16]);
                for oh in o0..o1 {
                    let slot = |kh: usize| band.as_ptr().add(((oh * sh + kh * dh) % ring) * row_len + c0);
                    with_tap_rows(kh_n, slot, |tap_rows| row_avx512(w, tap_rows, ep, taps, b16, self.act, true, orow.as_mut_ptr()));
                    deinterleave::<crate::kernels::simd::Fused, CB16>(orow, nc, &y.offset(c0 * out_sz + oh * ow_n), out_sz);
                }
            }
            o0 = o1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::conv_plane_direct;
    use crate::kernels::simd::test_util::for_each_isa;

    fn window(ih: usize, iw: usize, k: [usize; 2], s: [usize; 2], d: [usize; 2], p: [usize; 4]) -> Window3 {
        let out = |i: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize| (i + pb + pe - (k - 1) * d - 1) / s + 1;
        Window3 {
            input: [1, ih, iw],
            kernel: [1, k[0], k[1]],
            strides: [1, s[0], s[1]],
            dilations: [1, d[0], d[1]],
            pad_begin: [0, p[0], p[1]],
            pad_end: [0, p[2], p[3]],
            out: [1, out(ih, k[0], s[0], d[0], p[0], p[2]), out(iw, k[1], s[1], d[1], p[1], p[3])],
        }
    }

    /// Against the per-plane reference kernel, over channel counts around the block size,
    /// strides, dilations, asymmetric padding, 1-D windows and every ISA path.
    #[test]
    fn matches_direct_convolution() {
        let cases = [
            (window(7, 7, [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]), 13usize),
            (window(15, 16, [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]), 8),
            (window(12, 11, [3, 3], [1, 2], [2, 1], [2, 1, 2, 0]), 3),
            (window(1, 40, [1, 5], [1, 3], [1, 2], [0, 4, 0, 4]), 17),
            (window(113, 9, [3, 3], [2, 1], [1, 1], [1, 1, 1, 1]), 9),
            // Wide rows (interleaved row by row; the others a band at a time), partial blocks.
            (window(20, 37, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 19),
            (window(9, 33, [5, 5], [2, 2], [1, 1], [2, 2, 2, 2]), 40),
            // Rows of 28 (a whole and a partial 16-pixel transpose), whole blocks, stride 2.
            (window(10, 28, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 24),
            (window(6, 34, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]), 32),
            // Taps past the on-stack buffer (9x9).
            (window(12, 13, [9, 9], [1, 1], [1, 1], [4, 4, 4, 4]), 9),
            // The direct row kernel (AVX-512, 3x3 strides 1 and 2, 5x5 stride 1, rows of 28
            // or more: rows of 28, 30, 31 and 35 outputs, pairs of vectors the second partial;
            // asymmetric and no padding; odd and even input widths split into even and odd
            // columns; heights that leave 1-3 rows after the blocks of 4) and, for rows of
            // 14-24 or 5x5 stride 2, the interleaved bands.
            (window(14, 14, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 5),
            (window(17, 16, [5, 5], [1, 1], [1, 1], [2, 1, 2, 3]), 3),
            (window(15, 35, [3, 3], [1, 1], [1, 1], [0, 2, 3, 0]), 2),
            (window(49, 49, [3, 3], [2, 2], [1, 1], [0, 0, 0, 0]), 3),
            (window(30, 31, [5, 5], [2, 2], [1, 1], [2, 2, 2, 2]), 2),
            (window(11, 67, [5, 5], [2, 2], [1, 1], [1, 3, 0, 2]), 2),
            (window(57, 57, [3, 3], [2, 2], [1, 1], [0, 0, 0, 0]), 3),
            (window(12, 61, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]), 2),
            (window(7, 60, [3, 3], [2, 2], [1, 1], [0, 1, 1, 0]), 2),
            (window(9, 30, [5, 5], [1, 1], [1, 1], [2, 1, 2, 3]), 3),
        ];
        for (w, c) in cases {
            let batch = 2;
            let x: Vec<f32> = (0..batch * c * w.in_size()).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let wt: Vec<f32> = (0..c * w.kernel_size()).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.25 - 1.0).collect();
            let mut want = vec![0f32; batch * c * w.out_size()];
            for n in 0..batch {
                for ch in 0..c {
                    let yo = &mut want[(n * c + ch) * w.out_size()..(n * c + ch + 1) * w.out_size()];
                    yo.fill(bias[ch]);
                    let xc = &x[(n * c + ch) * w.in_size()..(n * c + ch + 1) * w.in_size()];
                    conv_plane_direct(&w, xc, &wt[ch * w.kernel_size()..(ch + 1) * w.kernel_size()], yo);
                    yo.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
            // Taps interleaved for the native block width serve the native ISA only; the
            // lowered ones fall back to interleaving per run.
            let native = DepthwiseTaps::new(&wt, c).unwrap();
            for threads in [1, 2] {
                let pool = ThreadPool::new(threads);
                for_each_isa(|isa| {
                    let here = DepthwiseTaps::new(&wt, c).unwrap();
                    for packed in [None, Some(&native), Some(&here)] {
                        let mut y = vec![f32::NAN; want.len()];
                        depthwise_f32(&pool, &w, batch, c, &x, &wt, packed, Some(&bias), Act::Relu, &mut y).unwrap();
                        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{w:?} c={c} {isa:?} t={threads} [{i}]: {a} vs {b}");
                        }
                        // The same images channels-last (2-D windows).
                        if w.input[0] == 1 && w.kernel[0] == 1 {
                            let (pi, po) = (w.in_size(), w.out_size());
                            let mut xl = vec![0f32; x.len()];
                            for n in 0..batch {
                                for ch in 0..c {
                                    for p in 0..pi {
                                        xl[(n * pi + p) * c + ch] = x[(n * c + ch) * pi + p];
                                    }
                                }
                            }
                            let mut yl = vec![f32::NAN; want.len()];
                            depthwise_nhwc_f32(&pool, &w, batch, c, &xl, &wt, packed, Some(&bias), Act::Relu, &mut yl).unwrap();
                            for n in 0..batch {
                                for ch in 0..c {
                                    for p in 0..po {
                                        let (a, b) = (yl[(n * po + p) * c + ch], want[(n * c + ch) * po + p]);
                                        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "nhwc {w:?} c={c} {isa:?} t={threads} n={n} ch={ch} p={p}: {a} vs {b}");
                                    }
                                }
                            }
                        }
                    }
                });
            }
        }
    }

    /// The fused expansion and depthwise convolution against the two computed apart by the
    /// definition: channel counts around the 16-lane blocks (and their pairs), strides 1 and
    /// 2, 3x3 and 5x5 windows, dilation, asymmetric padding (and windows that skip the last
    /// input column), rows of 1 to 14 pixels (every register tile) and wider, images taller
    /// than a band (the ring of rows reused), inputs deeper than one packed depth block,
    /// both biases or none, activations, images split between threads.
    #[test]
    fn expand_depthwise_matches_the_two_convolutions() {
        let Some(_isa) = crate::kernels::simd::test_util::avx512_guard("the fused expansion and depthwise convolution") else { return };
        let relu6 = Act::Clip(0.0, 6.0);
        // (window over the expanded image, cin, channels, batch, biases, act1, act2)
        let cases = [
            (window(56, 56, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]), 16, 72, 1, true, Act::Relu, Act::Relu),
            (window(28, 28, [5, 5], [2, 2], [1, 1], [2, 2, 2, 2]), 24, 96, 2, true, Act::HardSwish, Act::HardSwish),
            (window(24, 24, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 16, 48, 3, true, relu6, relu6),
            (window(30, 29, [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]), 40, 240, 1, false, Act::Swish(1.0), Act::Identity),
            (window(13, 14, [3, 3], [2, 2], [2, 1], [2, 0, 1, 1]), 3, 17, 2, true, Act::Identity, Act::Relu),
            (window(40, 15, [3, 3], [1, 1], [1, 1], [0, 1, 2, 0]), 8, 33, 1, false, Act::Relu, Act::Swish(1.0)),
            (window(9, 7, [3, 3], [1, 2], [1, 1], [1, 1, 1, 1]), 5, 16, 2, true, Act::Relu, Act::Relu),
            (window(6, 1, [3, 1], [1, 1], [1, 1], [1, 0, 1, 0]), 4, 20, 1, true, Act::Relu, Act::Identity),
            (window(5, 12, [3, 3], [2, 2], [1, 1], [0, 0, 0, 0]), 1200, 32, 1, true, Act::Identity, Act::Identity),
        ];
        for (w, cin, e, batch, biased, act1, act2) in cases {
            let px = w.in_size();
            let x: Vec<f32> = (0..batch * cin * px).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w1: Vec<f32> = (0..e * cin).map(|i| ((i * 13 % 29) as f32 - 14.0) / (7.0 * (cin as f32).sqrt())).collect();
            let w2: Vec<f32> = (0..e * w.kernel_size()).map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0).collect();
            let b1: Vec<f32> = (0..e).map(|i| i as f32 * 0.125 - 1.0).collect();
            let b2: Vec<f32> = (0..e).map(|i| 0.5 - i as f32 * 0.0625).collect();
            // The definition: the expanded image, then each channel's plane.
            let mut want = vec![0f32; batch * e * w.out_size()];
            for n in 0..batch {
                for ch in 0..e {
                    let t: Vec<f32> = (0..px)
                        .map(|p| {
                            let mut v = if biased { b1[ch] as f64 } else { 0.0 };
                            for c in 0..cin {
                                v += w1[ch * cin + c] as f64 * x[(n * cin + c) * px + p] as f64;
                            }
                            act1.apply_f64(v) as f32
                        })
                        .collect();
                    let yo = &mut want[(n * e + ch) * w.out_size()..(n * e + ch + 1) * w.out_size()];
                    yo.fill(if biased { b2[ch] } else { 0.0 });
                    conv_plane_direct(&w, &t, &w2[ch * w.kernel_size()..(ch + 1) * w.kernel_size()], yo);
                    yo.iter_mut().for_each(|v| *v = act2.apply_f64(*v as f64) as f32);
                }
            }
            let wt = PackedB::for_implicit_t(cin, e, &w1, 1, cin);
            let taps = DepthwiseTaps::new(&w2, e).unwrap();
            assert!(expand_depthwise_available(&w, e, Some(&taps)));
            for threads in [1, 2] {
                let pool = ThreadPool::new(threads);
                let ex = Expand { cin, wt: &wt, bias: biased.then_some(&b1[..]), act: act1 };
                let mut y = vec![f32::NAN; want.len()];
                expand_depthwise_f32(&pool, &w, batch, e, &x, &ex, &taps, biased.then_some(&b2[..]), act2, &mut y).unwrap();
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{w:?} cin={cin} e={e} t={threads} [{i}]: {a} vs {b}");
                }
            }
        }
    }
}
