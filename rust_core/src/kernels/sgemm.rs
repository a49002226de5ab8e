//! Our own `f32` GEMM: BLIS-style blocking (KC × NC panels of B, MC × KC blocks of A, packed
//! into contiguous micro-panels) around a 6 × 16 register-blocked micro-kernel — twelve AVX2
//! accumulators, two loads of B and six broadcasts of A per step of k. A baseline-ISA kernel
//! over the same packed panels serves CPUs without AVX2+FMA (and the forced `scalar` path).
//!
//! Measured against the `matrixmultiply` crate on this machine (see benchmarks/): this kernel
//! is used for every `f32` product whose C rows are contiguous; `matrixmultiply` remains the
//! backend for `f64` and unusual output strides.

use crate::kernels::simd::{active, Isa};
use std::cell::RefCell;

/// Rows of the micro-tile.
pub const MR: usize = 6;
/// Columns of the micro-tile.
pub const NR: usize = 16;
/// Depth of a packed block (A panel of MR × KC and B panel of KC × NR stay in L1/L2).
const KC: usize = 256;
/// Rows of A packed at once (fits L2 with the B panel).
const MC: usize = 96;
/// Columns of B packed at once.
const NC: usize = 2048;

thread_local! {
    /// Packing buffers of the calling thread (A block, B block), reused across calls.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Pack `mc × kc` of A (element (i, p) at `a[i*rsa + p*csa]`), times `alpha`, into micro-panels
/// of MR rows: panel r holds `[p][MR]`; rows past `mc` are zero.
unsafe fn pack_a(mc: usize, kc: usize, a: *const f32, rsa: usize, csa: usize, alpha: f32, out: &mut [f32]) {
    for (r, panel) in out.chunks_exact_mut(MR * kc).take(mc.div_ceil(MR)).enumerate() {
        let i0 = r * MR;
        let rows = MR.min(mc - i0);
        if csa == 1 {
            for i in 0..MR {
                if i < rows {
                    let src = a.add((i0 + i) * rsa);
                    for p in 0..kc {
                        *panel.get_unchecked_mut(p * MR + i) = alpha * *src.add(p);
                    }
                } else {
                    for p in 0..kc {
                        *panel.get_unchecked_mut(p * MR + i) = 0.0;
                    }
                }
            }
        } else {
            for p in 0..kc {
                let src = a.add(p * csa + i0 * rsa);
                let dst = &mut panel[p * MR..p * MR + MR];
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = if i < rows { alpha * *src.add(i * rsa) } else { 0.0 };
                }
            }
        }
    }
}

/// Pack `kc × nc` of B (element (p, j) at `b[p*rsb + j*csb]`) into micro-panels of NR columns:
/// panel q holds `[p][NR]`; columns past `nc` are zero.
unsafe fn pack_b(kc: usize, nc: usize, b: *const f32, rsb: usize, csb: usize, out: &mut [f32]) {
    for (q, panel) in out.chunks_exact_mut(NR * kc).take(nc.div_ceil(NR)).enumerate() {
        let j0 = q * NR;
        let cols = NR.min(nc - j0);
        if csb == 1 && cols == NR {
            for p in 0..kc {
                let src = std::slice::from_raw_parts(b.add(p * rsb + j0), NR);
                panel[p * NR..p * NR + NR].copy_from_slice(src);
            }
        } else if csb == 1 {
            for p in 0..kc {
                let src = std::slice::from_raw_parts(b.add(p * rsb + j0), cols);
                let dst = &mut panel[p * NR..p * NR + NR];
                dst[..cols].copy_from_slice(src);
                dst[cols..].fill(0.0);
            }
        } else {
            for p in 0..kc {
                let dst = &mut panel[p * NR..p * NR + NR];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = if j < cols { *b.add(p * rsb + (j0 + j) * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// Write a finished tile: `C[i][j] = acc[i][j] + beta·C[i][j]` for the valid `mr × nr` part
/// (`beta == 0` ignores C's previous content, even NaN).
#[inline(always)]
unsafe fn store_tile(acc: &[[f32; NR]; MR], c: *mut f32, rsc: usize, mr: usize, nr: usize, beta: f32) {
    for (i, row) in acc.iter().enumerate().take(mr) {
        let cr = std::slice::from_raw_parts_mut(c.add(i * rsc), nr);
        if beta == 0.0 {
            cr.copy_from_slice(&row[..nr]);
        } else {
            for (cv, a) in cr.iter_mut().zip(row) {
                *cv = a + beta * *cv;
            }
        }
    }
}

/// Baseline micro-kernel over packed panels (the compiler vectorizes the 16-wide rows).
unsafe fn kernel_generic(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rsc: usize, mr: usize, nr: usize, beta: f32) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let bp = &b[p * NR..p * NR + NR];
        let ap = &a[p * MR..p * MR + MR];
        for i in 0..MR {
            let av = ap[i];
            for j in 0..NR {
                acc[i][j] += av * bp[j];
            }
        }
    }
    store_tile(&acc, c, rsc, mr, nr, beta);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rsc: usize, mr: usize, nr: usize, beta: f32) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
    let z = _mm256_setzero_ps();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
    let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        let a0 = _mm256_broadcast_ss(&*ap);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        let a1 = _mm256_broadcast_ss(&*ap.add(1));
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        let a2 = _mm256_broadcast_ss(&*ap.add(2));
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        let a3 = _mm256_broadcast_ss(&*ap.add(3));
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        let a4 = _mm256_broadcast_ss(&*ap.add(4));
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        let a5 = _mm256_broadcast_ss(&*ap.add(5));
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
    if mr == MR && nr == NR {
        let vb = _mm256_set1_ps(beta);
        for (i, (lo, hi)) in rows.iter().enumerate() {
            let cr = c.add(i * rsc);
            if beta == 0.0 {
                _mm256_storeu_ps(cr, *lo);
                _mm256_storeu_ps(cr.add(8), *hi);
            } else {
                _mm256_storeu_ps(cr, _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), *lo));
                _mm256_storeu_ps(cr.add(8), _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr.add(8)), *hi));
            }
        }
    } else {
        let mut acc = [[0f32; NR]; MR];
        for (i, (lo, hi)) in rows.iter().enumerate() {
            _mm256_storeu_ps(acc[i].as_mut_ptr(), *lo);
            _mm256_storeu_ps(acc[i].as_mut_ptr().add(8), *hi);
        }
        store_tile(&acc, c, rsc, mr, nr, beta);
    }
}

/// `C[m×n] = alpha·A·B + beta·C` with C rows contiguous (`C[i][j]` at `c[i*rsc + j]`).
///
/// # Safety
/// Every addressed element of A, B and C must be inside its buffer; C must not alias A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    csb: usize,
    beta: f32,
    c: *mut f32,
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        for i in 0..m {
            let cr = std::slice::from_raw_parts_mut(c.add(i * rsc), n);
            if beta == 0.0 {
                cr.fill(0.0);
            } else {
                cr.iter_mut().for_each(|v| *v *= beta);
            }
        }
        return;
    }
    let avx2 = cfg!(target_arch = "x86_64") && active() >= Isa::Avx2;
    PACK.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let (abuf, bbuf) = &mut *bufs;
        let kc_max = KC.min(k);
        let a_need = MC.min(m).div_ceil(MR) * MR * kc_max;
        let b_need = NC.min(n).div_ceil(NR) * NR * kc_max;
        if abuf.len() < a_need {
            abuf.resize(a_need, 0.0);
        }
        if bbuf.len() < b_need {
            bbuf.resize(b_need, 0.0);
        }
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b(kc, nc, b.add(pc * rsb + jc * csb), rsb, csb, bbuf);
                let beta_k = if pc == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a(mc, kc, a.add(ic * rsa + pc * csa), rsa, csa, alpha, abuf);
                    for (q, bpanel) in bbuf.chunks_exact(NR * kc).take(nc.div_ceil(NR)).enumerate() {
                        let j0 = q * NR;
                        let nr = NR.min(nc - j0);
                        for (r, apanel) in abuf.chunks_exact(MR * kc).take(mc.div_ceil(MR)).enumerate() {
                            let i0 = r * MR;
                            let mr = MR.min(mc - i0);
                            let cp = c.add((ic + i0) * rsc + jc + j0);
                            #[cfg(target_arch = "x86_64")]
                            if avx2 {
                                kernel_avx2(kc, apanel, bpanel, cp, rsc, mr, nr, beta_k);
                                continue;
                            }
                            let _ = avx2;
                            kernel_generic(kc, apanel, bpanel, cp, rsc, mr, nr, beta_k);
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::test_util::for_each_isa;

    fn naive(m: usize, n: usize, k: usize, alpha: f32, a: &[f32], rsa: usize, csa: usize, b: &[f32], rsb: usize, csb: usize, beta: f32, c: &mut [f32], rsc: usize) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64;
                }
                let old = if beta == 0.0 { 0.0 } else { beta as f64 * c[i * rsc + j] as f64 };
                c[i * rsc + j] = (alpha as f64 * s + old) as f32;
            }
        }
    }

    #[test]
    fn matches_naive_for_edges_strides_alpha_beta_on_every_path() {
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let shapes = [(1, 1, 1), (5, 7, 3), (6, 16, 8), (7, 17, 300), (13, 33, 257), (100, 40, 20), (97, 2100, 9), (2, 3, 600)];
        for_each_isa(|isa| {
            for &(m, n, k) in &shapes {
                for &(ta, tb) in &[(false, false), (true, false), (false, true)] {
                    for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (2.0, -0.5)] {
                        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
                        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
                        let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
                        let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
                        let rsc = n + 3;
                        let c0: Vec<f32> = (0..m * rsc).map(|_| rnd()).collect();
                        let mut want = c0.clone();
                        naive(m, n, k, alpha, &a, rsa, csa, &b, rsb, csb, beta, &mut want, rsc);
                        let mut got = c0.clone();
                        unsafe { sgemm(m, n, k, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, got.as_mut_ptr(), rsc) };
                        for i in 0..m {
                            for j in 0..rsc {
                                let (g, w) = (got[i * rsc + j], want[i * rsc + j]);
                                let tol = 1e-5 * (k as f32).sqrt().max(1.0) * (1.0 + w.abs());
                                assert!((g - w).abs() <= tol, "{isa:?} {m}x{n}x{k} ta={ta} tb={tb} a={alpha} b={beta} at ({i},{j}): {g} vs {w}");
                            }
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = vec![1f32; 6 * 4];
        let b = vec![1f32; 4 * 16];
        let mut c = vec![f32::NAN; 6 * 16];
        unsafe { sgemm(6, 16, 4, 1.0, a.as_ptr(), 4, 1, b.as_ptr(), 16, 1, 0.0, c.as_mut_ptr(), 16) };
        assert!(c.iter().all(|v| *v == 4.0));
    }
}
