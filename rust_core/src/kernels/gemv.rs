//! Products of a few rows by a constant matrix kept in L2: `C[m × n] += A[m × k] · B[k × n]`
//! for small `m` (the per-step recurrence `H · Rᵀ` of LSTM/GRU/RNN layers).
//!
//! B is packed once into panels of [`PANEL`] columns, each stored `[k][PANEL]` contiguously, so
//! a tile streams whole panels front to back. A one-row tile holds 4 panels (16 vectors, 16
//! independent multiply-add chains per broadcast of A); two rows hold 2 panels, three or four
//! rows one. The general GEMM kernels, built for larger products, keep one row of A to one or
//! two accumulator chains, bound by the multiply-add latency.

/// Columns per packed panel: four AVX-512 vectors.
pub const PANEL: usize = 64;

/// A `k × n` matrix packed as panels of [`PANEL`] columns (the last zero-padded).
pub struct PanelB {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PanelB {
    /// Pack `B[k × n]`, element `(p, j)` at `b[p·rsb + j·csb]` (`rsb = 1, csb = k` packs the
    /// transpose of a row-major `n × k` matrix, e.g. a recurrence weight `R` `[G·H][H]` for
    /// `H · Rᵀ`, or a `Gemm` weight with `transB`).
    pub fn new(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize) -> Self {
        assert!(n == 0 || k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(), "PanelB: B is too small");
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * k * PANEL];
        for (p, panel) in data.chunks_exact_mut(k * PANEL).enumerate() {
            let cols = PANEL.min(n - p * PANEL);
            for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (jj, v) in row[..cols].iter_mut().enumerate() {
                    *v = b[kk * rsb + (p * PANEL + jj) * csb];
                }
            }
        }
        PanelB { k, n, data }
    }

    /// Depth (rows of B).
    pub fn depth(&self) -> usize {
        self.k
    }

    /// Columns of B.
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// Whether [`gemv_add`] runs here (it has an AVX-512 kernel only; other CPUs keep the general
/// GEMM).
pub fn gemv_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C[r][j] += Σ_p A[r][p] · B[p][j]` for rows `r < m` and the first `n` columns of B
/// (`n ≤ b.cols()`); rows of A are `lda` apart, rows of C `ldc` apart. Returns false (and
/// leaves C alone) where [`gemv_available`] is false.
pub fn gemv_add(m: usize, n: usize, a: &[f32], lda: usize, b: &PanelB, c: &mut [f32], ldc: usize) -> bool {
    check(m, n, a, lda, b, c, ldc);
    gemv_available() && {
        // SAFETY: extents checked; the CPU has the kernel.
        unsafe { gemv_panels(m, n, 0..n.div_ceil(PANEL), a.as_ptr(), lda, b, c.as_mut_ptr(), ldc) };
        true
    }
}

/// [`gemv_add`] split over `pool` by groups of panels (each thread writes its own columns of
/// C, all read the small A), when the product is large enough to pay for it.
#[allow(clippy::too_many_arguments)]
pub fn gemv_add_par(pool: &crate::executor::pool::ThreadPool, m: usize, n: usize, a: &[f32], lda: usize, b: &PanelB, c: &mut [f32], ldc: usize) -> bool {
    check(m, n, a, lda, b, c, ldc);
    if !gemv_available() {
        return false;
    }
    // One-row tiles take four panels: split in such groups.
    let groups = n.div_ceil(4 * PANEL);
    let (ap, cp) = (a.as_ptr() as usize, c.as_mut_ptr() as usize);
    let min_chunk = if m * n * b.k < PAR_MIN_MACS { groups.max(1) } else { 1 };
    pool.parallel_for(groups, min_chunk, |g0, g1| {
        let panels = n.div_ceil(PANEL);
        // SAFETY: extents checked above; threads write disjoint panels (columns) of C.
        unsafe { gemv_panels(m, n, (g0 * 4).min(panels)..(g1 * 4).min(panels), ap as *const f32, lda, b, cp as *mut f32, ldc) };
    });
    true
}

/// Products smaller than this many multiply-adds stay on one thread.
const PAR_MIN_MACS: usize = 1 << 17;

fn check(m: usize, n: usize, a: &[f32], lda: usize, b: &PanelB, c: &[f32], ldc: usize) {
    assert!(n <= b.n, "gemv_add: {n} columns of a {}-column matrix", b.n);
    assert!(m == 0 || n == 0 || (a.len() >= (m - 1) * lda + b.k && c.len() >= (m - 1) * ldc + n), "gemv_add: operands too short");
}

/// The panels `panels` of the product (see [`gemv_add`]), rows of A four at a time.
///
/// # Safety
/// [`gemv_available`]; extents as checked by [`check`]; no one else writes these columns of C.
#[allow(clippy::too_many_arguments)]
unsafe fn gemv_panels(m: usize, n: usize, panels: std::ops::Range<usize>, a: *const f32, lda: usize, b: &PanelB, c: *mut f32, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut r = 0;
        while r < m {
            let mr = (m - r).min(4);
            let (ar, cr) = (a.add(r * lda), c.add(r * ldc));
            match mr {
                1 => rows_avx512::<1>(n, panels.clone(), ar, lda, b, cr, ldc),
                2 => rows_avx512::<2>(n, panels.clone(), ar, lda, b, cr, ldc),
                3 => rows_avx512::<3>(n, panels.clone(), ar, lda, b, cr, ldc),
                _ => rows_avx512::<4>(n, panels.clone(), ar, lda, b, cr, ldc),
            }
            r += mr;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (m, n, panels, a, lda, b, c, ldc);
}

/// `MR` rows of A against the panels `panels`: `4 / MR` panels per tile (one for three rows).
///
/// # Safety
/// AVX-512F CPU; extents as asserted by [`gemv_add`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512<const MR: usize>(n: usize, panels: std::ops::Range<usize>, a: *const f32, lda: usize, b: &PanelB, c: *mut f32, ldc: usize) {
    let per = (4 / MR).max(1);
    let mut p = panels.start;
    while p < panels.end {
        let np = per.min(panels.end - p);
        match np {
            1 => tile_avx512::<MR, 1>(n, p, a, lda, b, c, ldc),
            2 => tile_avx512::<MR, 2>(n, p, a, lda, b, c, ldc),
            3 => tile_avx512::<MR, 3>(n, p, a, lda, b, c, ldc),
            _ => tile_avx512::<MR, 4>(n, p, a, lda, b, c, ldc),
        }
        p += np;
    }
}

/// One tile: `MR` rows × `NP` panels starting at panel `p0`, accumulators loaded from C and
/// stored back (columns at or past `n` neither read nor written).
///
/// # Safety
/// AVX-512F CPU; extents as asserted by [`gemv_add`]; `p0 + NP` panels exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx512<const MR: usize, const NP: usize>(n: usize, p0: usize, ap: *const f32, lda: usize, b: &PanelB, cp: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let k = b.k;
    let col0 = p0 * PANEL;
    // Mask of vector v of panel q (all-zero past n).
    let mask = |q: usize, v: usize| -> __mmask16 {
        let start = col0 + q * PANEL + v * 16;
        if start >= n {
            0
        } else if start + 16 <= n {
            0xffff
        } else {
            ((1u32 << (n - start)) - 1) as __mmask16
        }
    };
    let mut acc = [[[_mm512_setzero_ps(); 4]; NP]; MR];
    for (r, accr) in acc.iter_mut().enumerate() {
        for (q, accq) in accr.iter_mut().enumerate() {
            for (v, x) in accq.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(mask(q, v), cp.add(r * ldc + col0 + q * PANEL + v * 16));
            }
        }
    }
    let bp: [*const f32; NP] = std::array::from_fn(|q| b.data.as_ptr().add((p0 + q) * k * PANEL));
    for kk in 0..k {
        let off = kk * PANEL;
        let mut x = [_mm512_setzero_ps(); MR];
        for (r, xr) in x.iter_mut().enumerate() {
            *xr = _mm512_set1_ps(*ap.add(r * lda + kk));
        }
        for q in 0..NP {
            for v in 0..4 {
                let w = _mm512_loadu_ps(bp[q].add(off + v * 16));
                for r in 0..MR {
                    acc[r][q][v] = _mm512_fmadd_ps(x[r], w, acc[r][q][v]);
                }
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (q, accq) in accr.iter().enumerate() {
            for (v, x) in accq.iter().enumerate() {
                _mm512_mask_storeu_ps(cp.add(r * ldc + col0 + q * PANEL + v * 16), mask(q, v), *x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn panel_products_match_the_definition() {
        let Some(_isa) = crate::kernels::simd::test_util::avx512_guard("the panel kernel") else { return };
        let mut seed = 7u64;
        let pool = crate::executor::pool::ThreadPool::new(2);
        // (m, n used, n packed, k, B transposed in memory, threads): one to nine rows, partial
        // panels and vectors, k = 1, panel groups split over two threads.
        let cases = [
            (1, 512, 512, 128, true, 1),
            (1, 300, 300, 33, false, 1),
            (2, 200, 256, 17, true, 1),
            (3, 64, 64, 5, false, 1),
            (4, 70, 80, 1, true, 1),
            (5, 129, 129, 40, true, 1),
            (9, 17, 17, 3, false, 1),
            (1, 1, 1, 2, true, 1),
            (1, 1000, 1000, 300, true, 2),
            (3, 700, 777, 129, false, 2),
        ];
        for &(m, n, np, k, trans, threads) in &cases {
            // B[p][j] at s[p·rsb + j·csb], with a row pitch wider than the row.
            let (rsb, csb) = if trans { (1, k + 3) } else { (np + 3, 1) };
            let s: Vec<f32> = (0..(np + 3) * (k + 3)).map(|_| lcg(&mut seed)).collect();
            let b = PanelB::new(k, np, &s, rsb, csb);
            let lda = k + 2;
            let a: Vec<f32> = (0..m * lda).map(|_| lcg(&mut seed)).collect();
            let ldc = np + 5;
            let c0: Vec<f32> = (0..m * ldc).map(|_| lcg(&mut seed)).collect();
            let mut c = c0.clone();
            if threads == 1 {
                assert!(gemv_add(m, n, &a, lda, &b, &mut c, ldc));
            } else {
                assert!(gemv_add_par(&pool, m, n, &a, lda, &b, &mut c, ldc));
            }
            for r in 0..m {
                for j in 0..ldc {
                    let want = if j < n {
                        c0[r * ldc + j] + (0..k).map(|p| a[r * lda + p] * s[p * rsb + j * csb]).sum::<f32>()
                    } else {
                        c0[r * ldc + j]
                    };
                    let got = c[r * ldc + j];
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "m {m} n {n} k {k} trans {trans}: C[{r}][{j}] = {got}, expected {want}");
                }
            }
        }
    }
}
