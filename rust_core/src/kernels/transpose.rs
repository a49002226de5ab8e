//! Transposes of 4-byte elements with AVX-512: 16x16 blocks in registers (partial blocks under
//! lane masks) and, for blocks only a few rows tall (an NHWC image's 3 channels), gathers.

/// One 16x16 transpose of a part of a block: rows `0..rows_in` of the source (lanes
/// `lanes_in` of the 16 floats at `src + i·ss`; the other rows and lanes read as zero) become
/// the columns of the destination, whose rows `0..rows_out` are stored (lanes `lanes_out` of
/// the 16 floats at `dst + j·ds`). Only the masked lanes are read and written, so a part of a
/// block (fewer channels, or the last pixels of a row) needs no scalar loop.
/// Four shuffle stages of 16 register operations: 4 shuffles per 16 floats, against 6 for the
/// AVX2 8x8 transposes, and half the loads and stores.
///
/// # Safety
/// AVX-512F CPU; the masked lanes of the `rows_in` source rows readable, those of the
/// `rows_out` destination rows writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn transpose16_part(src: *const f32, ss: usize, rows_in: usize, lanes_in: u16, dst: *mut f32, ds: usize, rows_out: usize, lanes_out: u16) {
    use std::arch::x86_64::*;
    let r: [__m512; 16] = std::array::from_fn(|i| {
        if i >= rows_in {
            _mm512_setzero_ps()
        } else if lanes_in == 0xFFFF {
            _mm512_loadu_ps(src.add(i * ss))
        } else {
            _mm512_maskz_loadu_ps(lanes_in, src.add(i * ss))
        }
    });
    // a[2k], a[2k+1]: rows 2k, 2k+1 interleaved (low / high pairs of each 128-bit lane).
    let mut a = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // Lane L of t[4k + j]: column 4L + j of rows 4k..4k+3.
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..4 {
        t[4 * k] = _mm512_shuffle_ps::<0x44>(a[4 * k], a[4 * k + 2]);
        t[4 * k + 1] = _mm512_shuffle_ps::<0xEE>(a[4 * k], a[4 * k + 2]);
        t[4 * k + 2] = _mm512_shuffle_ps::<0x44>(a[4 * k + 1], a[4 * k + 3]);
        t[4 * k + 3] = _mm512_shuffle_ps::<0xEE>(a[4 * k + 1], a[4 * k + 3]);
    }
    // Column 4L + j: lane L of t[j], t[4 + j], t[8 + j], t[12 + j] (a 4x4 transpose of
    // 128-bit lanes).
    let mut out = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        let c0 = _mm512_shuffle_f32x4::<0x44>(t[j], t[4 + j]);
        let c1 = _mm512_shuffle_f32x4::<0xEE>(t[j], t[4 + j]);
        let c2 = _mm512_shuffle_f32x4::<0x44>(t[8 + j], t[12 + j]);
        let c3 = _mm512_shuffle_f32x4::<0xEE>(t[8 + j], t[12 + j]);
        out[j] = _mm512_shuffle_f32x4::<0x88>(c0, c2);
        out[4 + j] = _mm512_shuffle_f32x4::<0xDD>(c0, c2);
        out[8 + j] = _mm512_shuffle_f32x4::<0x88>(c1, c3);
        out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(c1, c3);
    }
    for (j, v) in out.iter().enumerate().take(rows_out) {
        if lanes_out == 0xFFFF {
            _mm512_storeu_ps(dst.add(j * ds), *v);
        } else {
            _mm512_mask_storeu_ps(dst.add(j * ds), lanes_out, *v);
        }
    }
}

/// `dst[a·ds + b] = src[a + b·ss]` for `a < rows`, `b < cols`: the `cols × rows` block at `src`
/// (rows `ss` apart) transposed into `rows` rows of `cols` at `dst` (rows `ds` apart), for any
/// 4-byte element (moved bit for bit). Returns `false` (and writes nothing) without AVX-512.
///
/// Blocks of at least 8 rows go through [`transpose16_part`] 16x16 at a time; shorter ones
/// (NHWC -> NCHW of a 3-channel image) gather each output vector: 16 loads of 3 useful floats
/// through a 16x16 transpose cost more than one gather.
pub fn transpose_block_u32(src: &[u32], ss: usize, rows: usize, cols: usize, dst: &mut [u32], ds: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        if rows == 0 || cols == 0 {
            return true;
        }
        assert!(
            src.len() > (cols - 1) * ss + rows - 1 && dst.len() > (rows - 1) * ds + cols - 1 && ss.saturating_mul(16) < (i32::MAX / 4) as usize,
            "transpose_block_u32: blocks out of bounds"
        );
        // SAFETY: AVX-512F checked; every access is inside the extents asserted above.
        unsafe { transpose_block_avx512(src.as_ptr() as *const f32, ss, rows, cols, dst.as_mut_ptr() as *mut f32, ds) };
        return true;
    }
    let _ = (src, ss, rows, cols, dst, ds);
    false
}

/// [`transpose_block_u32`] of `f32` values (moved bit for bit): `dst[a·ds + b] = src[a + b·ss]`
/// for `a < rows`, `b < cols`. Returns `false` (and writes nothing) without AVX-512.
pub fn transpose_block_f32(src: &[f32], ss: usize, rows: usize, cols: usize, dst: &mut [f32], ds: usize) -> bool {
    // SAFETY: f32 and u32 have the same size and alignment; the views cover the same slices.
    let (s32, d32) = unsafe { (std::slice::from_raw_parts(src.as_ptr() as *const u32, src.len()), std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u32, dst.len())) };
    transpose_block_u32(s32, ss, rows, cols, d32, ds)
}

/// Lanes `0..n` (n ≤ 16).
#[inline(always)]
fn lanes(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// # Safety
/// AVX-512F CPU; extents as [`transpose_block_u32`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_block_avx512(src: *const f32, ss: usize, rows: usize, cols: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    if rows <= 4 && ss == rows {
        // Interleaved pixels (NHWC -> NCHW of a 1-4 channel image): 16 pixels are `rows`
        // contiguous vectors; lane p of channel a's output is element p·rows + a of them, picked
        // by one masked in-register permute per source vector (the gathers cost 3x more).
        let mut idx = [[_mm512_setzero_si512(); 4]; 4];
        let mut sel = [[0u16; 4]; 4];
        for a in 0..rows {
            for q in 0..rows {
                let mut v = [0i32; 16];
                for (p, l) in v.iter_mut().enumerate() {
                    let f = p * rows + a;
                    if f / 16 == q {
                        *l = (f % 16) as i32;
                        sel[a][q] |= 1 << p;
                    }
                }
                idx[a][q] = _mm512_loadu_si512(v.as_ptr().cast());
            }
        }
        let mut b = 0;
        while b < cols {
            let nb = (cols - b).min(16);
            let n = nb * rows;
            let v: [__m512; 4] = std::array::from_fn(|q| if q < rows { _mm512_maskz_loadu_ps(lanes(n.saturating_sub(16 * q)), src.wrapping_add(b * ss + 16 * q)) } else { _mm512_setzero_ps() });
            for a in 0..rows {
                let mut r = _mm512_setzero_ps();
                for q in 0..rows {
                    r = _mm512_mask_permutexvar_ps(r, sel[a][q], idx[a][q], v[q]);
                }
                _mm512_mask_storeu_ps(dst.add(a * ds + b), lanes(nb), r);
            }
            b += 16;
        }
        return;
    }
    if rows < 8 {
        let idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(ss as i32));
        for a in 0..rows {
            let d = dst.add(a * ds);
            let mut b = 0;
            while b + 16 <= cols {
                _mm512_storeu_ps(d.add(b), _mm512_i32gather_ps::<4>(idx, src.add(a + b * ss)));
                b += 16;
            }
            if b < cols {
                let m = lanes(cols - b);
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, src.add(a + b * ss));
                _mm512_mask_storeu_ps(d.add(b), m, v);
            }
        }
        return;
    }
    let mut a = 0;
    while a < rows {
        let na = (rows - a).min(16);
        let mut b = 0;
        while b < cols {
            let nb = (cols - b).min(16);
            transpose16_part(src.add(a + b * ss), ss, nb, lanes(na), dst.add(a * ds + b), ds, na, lanes(nb));
            b += 16;
        }
        a += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_every_height_match_the_definition() {
        let Some(_isa) = crate::kernels::simd::test_util::avx512_guard("the register transposes") else { return };
        // Interleaved pixels permuted in registers (1-4 rows, ss = rows), gathered (other
        // short blocks) and 16x16 blocks (8 rows on), whole and partial in both directions,
        // strides wider than the block, NaN payloads kept bit for bit.
        for &(rows, cols, ss, ds) in &[(1usize, 1usize, 1usize, 1usize), (2, 33, 2, 40), (4, 47, 4, 50), (4, 5, 6, 5), (3, 16, 3, 16), (3, 50, 3, 50), (3, 9216, 3, 9216), (7, 17, 9, 20), (8, 16, 8, 16), (16, 16, 16, 16), (33, 40, 35, 41), (2304, 32, 2304, 32), (5, 3, 5, 3)] {
            let src: Vec<u32> = (0..(cols - 1) * ss + rows).map(|i| (i as u32).wrapping_mul(2654435761) | if i % 7 == 0 { 0x7fc0_0001 } else { 0 }).collect();
            let mut dst = vec![0xdead_beefu32; (rows - 1) * ds + cols + 3];
            assert!(transpose_block_u32(&src, ss, rows, cols, &mut dst, ds));
            for a in 0..rows {
                for b in 0..cols {
                    assert_eq!(dst[a * ds + b], src[a + b * ss], "{rows}x{cols} ss {ss} ds {ds}: [{a}][{b}]");
                }
                for b in cols..ds.min(dst.len() - a * ds) {
                    assert_eq!(dst[a * ds + b], 0xdead_beef, "{rows}x{cols}: wrote [{a}][{b}] past the row");
                }
            }
        }
    }
}
