//! General matrix multiplication: `C = alpha * A·B + beta * C` for `f32` and `f64`.
//!
//! The single entry point for every GEMM in the engine (MatMul, Gemm, Conv via im2col, RNNs),
//! so the backend can be swapped after benchmarking. Matrices are described by a slice and a
//! row stride and column stride in elements; a transpose is just swapped strides. The backend
//! today is the `matrixmultiply` crate (BLIS-style packing, AVX2/FMA kernels chosen at run time);
//! [`gemm_par`] splits large products over the session's thread pool.
//!
//! When `beta == 0`, `C` is overwritten and its previous content (even NaN) is ignored.

use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::float::Float;

/// A read-only matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn row_major(data: &'a [T], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns (i.e. column-major storage).
    pub fn col_major(data: &'a [T], rows: usize) -> Self {
        MatRef {
            data,
            rs: 1,
            cs: rows,
        }
    }
    /// The transposed view.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// Element types the GEMM backend supports.
pub trait GemmElem: Float {
    /// # Safety
    /// Every addressed element must be inside the buffers; `c` elements must not alias.
    #[allow(clippy::too_many_arguments)]
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl GemmElem for f32 {
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl GemmElem for f64 {
    unsafe fn raw_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

fn check_extent(
    what: &str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)))
        .ok_or_else(|| Error::Internal(format!("gemm: matrix {what} strides overflow")))?;
    if last >= len {
        return Err(Error::Internal(format!(
            "gemm: matrix {what} ({rows}x{cols}, strides {rs},{cs}) needs {} elements, buffer has {len}",
            last + 1
        )));
    }
    Ok(())
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C`, single-threaded.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) -> Result<()> {
    check_extent("A", a.data.len(), m, k, a.rs, a.cs)?;
    check_extent("B", b.data.len(), k, n, b.rs, b.cs)?;
    check_extent("C", c.len(), m, n, rsc, csc)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    // SAFETY: extents checked above; `c` is a unique borrow.
    unsafe {
        gemm_unchecked(
            m,
            n,
            k,
            alpha,
            a.data.as_ptr(),
            a.rs,
            a.cs,
            b.data.as_ptr(),
            b.rs,
            b.cs,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        )
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm_unchecked<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: *const T,
    rsa: usize,
    csa: usize,
    b: *const T,
    rsb: usize,
    csb: usize,
    beta: T,
    c: *mut T,
    rsc: usize,
    csc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if m == 1
        && csc == 1
        && csb == 1
        && k > 0
        && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx2
    {
        let (alpha, a, b, beta, c) = (alpha.to_f32(), a as *const f32, b as *const f32, beta.to_f32(), c as *mut f32);
        // SAFETY: T is f32, the CPU has AVX2+FMA (and AVX-512F for the first); extents are the
        // caller's contract.
        if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
            if n > ROW_STREAM_MIN_COLS {
                row_stream_avx512(k, n, alpha, a, csa, b, rsb, beta, c);
            } else {
                row_times_rows_avx512(k, n, alpha, a, csa, b, rsb, beta, c);
            }
        } else {
            row_times_rows_avx2(k, n, alpha, a, csa, b, rsb, beta, c);
        }
        return;
    }
    if m == 1 && csc == 1 && csb == 1 && k > 0 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32; extents are the caller's contract.
        let crow = std::slice::from_raw_parts_mut(c as *mut f32, n);
        let (a, b) = (a as *const f32, b as *const f32);
        let (alpha, beta) = (alpha.to_f32(), beta.to_f32());
        if beta == 0.0 {
            crow.fill(0.0);
        } else if beta != 1.0 {
            crow.iter_mut().for_each(|v| *v *= beta);
        }
        for p in 0..k {
            let s = alpha * *a.add(p * csa);
            axpy_f32(s, std::slice::from_raw_parts(b.add(p * rsb), n), crow);
        }
        return;
    }
    if m == 1 && csc == 1 && csb == 1 && k > 0 {
        // Row vector times matrix: a streaming axpy over B's rows beats packing.
        let crow = std::slice::from_raw_parts_mut(c, n);
        if beta == T::ZERO {
            crow.iter_mut().for_each(|v| *v = T::ZERO);
        } else if beta != T::ONE {
            crow.iter_mut().for_each(|v| *v *= beta);
        }
        for p in 0..k {
            let s = alpha * *a.add(p * csa);
            let brow = std::slice::from_raw_parts(b.add(p * rsb), n);
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += s * *bv;
            }
        }
        return;
    }
    if (m <= 4 || n == 1) && csa == 1 && rsb == 1 && k >= 8 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // As below, four columns of B per pass over the row of A, vectorized.
        let (alpha, beta) = (alpha.to_f32(), beta.to_f32());
        let (a, b, c) = (a as *const f32, b as *const f32, c as *mut f32);
        // SAFETY: T is f32; extents are the caller's contract.
        let row = |i: usize| std::slice::from_raw_parts(a.add(i * rsa), k);
        let col = |j: usize| std::slice::from_raw_parts(b.add(j * csb), k);
        let put = |i: usize, j: usize, d: f32| {
            let cv = &mut *c.add(i * rsc + j * csc);
            *cv = if beta == 0.0 { alpha * d } else { beta * *cv + alpha * d };
        };
        // Group four vectors on the longer side; past the end, the last one is repeated.
        fn quad<'v>(f: impl Fn(usize) -> &'v [f32], i: usize, len: usize) -> [&'v [f32]; 4] {
            [f(i), f((i + 1).min(len - 1)), f((i + 2).min(len - 1)), f((i + 3).min(len - 1))]
        }
        if n >= 4 || n >= m {
            // Each row of A against all columns, the column loop inside one dispatched call
            // (per group of four, the dispatch and slicing cost 12% of lstm_tagger's time).
            let bcols = std::slice::from_raw_parts(b, (n - 1) * csb + k);
            for i in 0..m {
                let crow = std::slice::from_raw_parts_mut(c.add(i * rsc), (n - 1) * csc + 1);
                dots_f32(row(i), bcols, csb, n, alpha, beta, crow, csc);
            }
        } else {
            for j in 0..n {
                for i in (0..m).step_by(4) {
                    let d = dot4_f32(col(j), quad(row, i, m));
                    (i..m.min(i + 4)).for_each(|ii| put(ii, j, d[ii - i]));
                }
            }
        }
        return;
    }
    if (m <= 4 || n == 1) && csa == 1 && rsb == 1 && k >= 8 {
        // Few rows, or a single column, against a B whose columns are contiguous (B = Mᵀ, M
        // row-major, e.g. the recurrent weights of an RNN; a 1x1 convolution of a 1x1 image):
        // dot products, no packing.
        for i in 0..m {
            let arow = std::slice::from_raw_parts(a.add(i * rsa), k);
            for j in 0..n {
                let bcol = std::slice::from_raw_parts(b.add(j * csb), k);
                let d = alpha * dot(arow, bcol);
                let cv = &mut *c.add(i * rsc + j * csc);
                *cv = if beta == T::ZERO { d } else { beta * *cv + d };
            }
        }
        return;
    }
    if csc == 1 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32; extents are the caller's contract.
        crate::kernels::sgemm::sgemm(
            m,
            n,
            k,
            alpha.to_f32(),
            a as *const f32,
            rsa,
            csa,
            b as *const f32,
            rsb,
            csb,
            beta.to_f32(),
            c as *mut f32,
            rsc,
        );
        return;
    }
    T::raw_gemm(
        m,
        k,
        n,
        alpha,
        a,
        rsa as isize,
        csa as isize,
        b,
        rsb as isize,
        csb as isize,
        beta,
        c,
        rsc as isize,
        csc as isize,
    )
}

/// `c[..n] = alpha · a · B + beta · c` for a row vector `a` (k values, stride csa) and a
/// row-major B (k rows of n, stride rsb): C is kept in registers, 64 columns at a time (eight
/// independent FMA chains), while the rows of B stream by once.
///
/// # Safety
/// AVX2 and FMA available; `a`, `b`, `c` valid for the extents described.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_times_rows_avx2(k: usize, n: usize, alpha: f32, a: *const f32, csa: usize, b: *const f32, rsb: usize, beta: f32, c: *mut f32) {
    use std::arch::x86_64::*;
    let finish = |acc: __m256, cj: *mut f32| {
        let v = if beta == 0.0 { acc } else { _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(cj), acc) };
        _mm256_storeu_ps(cj, v);
    };
    let mut j = 0;
    while j + 64 <= n {
        let mut acc = [_mm256_setzero_ps(); 8];
        for p in 0..k {
            let x = _mm256_set1_ps(alpha * *a.add(p * csa));
            let row = b.add(p * rsb + j);
            for (q, v) in acc.iter_mut().enumerate() {
                *v = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.add(8 * q)), *v);
            }
        }
        for (q, v) in acc.iter().enumerate() {
            finish(*v, c.add(j + 8 * q));
        }
        j += 64;
    }
    while j + 8 <= n {
        let (mut v0, mut v1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut p = 0;
        while p + 2 <= k {
            v0 = _mm256_fmadd_ps(_mm256_set1_ps(alpha * *a.add(p * csa)), _mm256_loadu_ps(b.add(p * rsb + j)), v0);
            v1 = _mm256_fmadd_ps(_mm256_set1_ps(alpha * *a.add((p + 1) * csa)), _mm256_loadu_ps(b.add((p + 1) * rsb + j)), v1);
            p += 2;
        }
        if p < k {
            v0 = _mm256_fmadd_ps(_mm256_set1_ps(alpha * *a.add(p * csa)), _mm256_loadu_ps(b.add(p * rsb + j)), v0);
        }
        finish(_mm256_add_ps(v0, v1), c.add(j));
        j += 8;
    }
    while j < n {
        let mut d = 0f32;
        for p in 0..k {
            d = (alpha * *a.add(p * csa)).mul_add(*b.add(p * rsb + j), d);
        }
        let cj = c.add(j);
        *cj = if beta == 0.0 { d } else { beta.mul_add(*cj, d) };
        j += 1;
    }
}

/// [`row_times_rows_avx2`] on sixteen lanes: 128 columns of C in eight registers per pass over
/// the rows of B, then 16 at a time, the last partial vector under a mask.
///
/// # Safety
/// AVX-512F CPU; `a` holds `k` values `csa` apart, `b` `k` rows of `n` values `rsb` apart, `c`
/// `n` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_times_rows_avx512(k: usize, n: usize, alpha: f32, a: *const f32, csa: usize, b: *const f32, rsb: usize, beta: f32, c: *mut f32) {
    use std::arch::x86_64::*;
    let finish = |acc: __m512, cj: *mut f32, mask: __mmask16| {
        let v = if beta == 0.0 { acc } else { _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, cj), acc) };
        _mm512_mask_storeu_ps(cj, mask, v);
    };
    let mut j = 0;
    while j + 128 <= n {
        let mut acc = [_mm512_setzero_ps(); 8];
        for p in 0..k {
            let x = _mm512_set1_ps(alpha * *a.add(p * csa));
            let row = b.add(p * rsb + j);
            for (q, v) in acc.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(x, _mm512_loadu_ps(row.add(16 * q)), *v);
            }
        }
        for (q, v) in acc.iter().enumerate() {
            finish(*v, c.add(j + 16 * q), 0xFFFF);
        }
        j += 128;
    }
    while j < n {
        let mask = if n - j >= 16 { 0xFFFF } else { ((1u32 << (n - j)) - 1) as __mmask16 };
        let (mut v0, mut v1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut p = 0;
        while p + 2 <= k {
            v0 = _mm512_fmadd_ps(_mm512_set1_ps(alpha * *a.add(p * csa)), _mm512_maskz_loadu_ps(mask, b.add(p * rsb + j)), v0);
            v1 = _mm512_fmadd_ps(_mm512_set1_ps(alpha * *a.add((p + 1) * csa)), _mm512_maskz_loadu_ps(mask, b.add((p + 1) * rsb + j)), v1);
            p += 2;
        }
        if p < k {
            v0 = _mm512_fmadd_ps(_mm512_set1_ps(alpha * *a.add(p * csa)), _mm512_maskz_loadu_ps(mask, b.add(p * rsb + j)), v0);
        }
        finish(_mm512_add_ps(v0, v1), c.add(j), mask);
        j += 16;
    }
}

/// Rows wider than this take [`row_stream_avx512`]: strips of 128 columns read B in 512-byte
/// pieces 4 KB apart (a row of 1000 floats), a page per piece, which the hardware prefetchers
/// do not follow; a 1280 x 1000 classifier read its 5 MB at 22 GB/s against 26 for a plain
/// sequential read.
const ROW_STREAM_MIN_COLS: usize = 128;

/// `c = alpha·a·B + beta·c` for a row `a` with C kept in L1 and B read row after row, four rows
/// per pass over C (four sequential streams; per 16 columns four loads of B, one load and one
/// store of C), the last partial vector under a mask.
///
/// # Safety
/// AVX-512F CPU; `a` holds `k` values `csa` apart, `b` `k` rows of `n` values `rsb` apart, `c`
/// `n` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_stream_avx512(k: usize, n: usize, alpha: f32, a: *const f32, csa: usize, b: *const f32, rsb: usize, beta: f32, c: *mut f32) {
    use std::arch::x86_64::*;
    let full = n / 16 * 16;
    let tail = ((1u32 << (n - full)) - 1) as __mmask16;
    // C = beta·C (zero when beta is 0, whatever C held).
    let vb = _mm512_set1_ps(beta);
    let mut j = 0;
    while j < n {
        let m = if j < full { 0xFFFF } else { tail };
        let v = if beta == 0.0 { _mm512_setzero_ps() } else { _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, c.add(j))) };
        _mm512_mask_storeu_ps(c.add(j), m, v);
        j += 16;
    }
    let mut p = 0;
    while p + 4 <= k {
        let x: [__m512; 4] = std::array::from_fn(|i| _mm512_set1_ps(alpha * *a.add((p + i) * csa)));
        let r: [*const f32; 4] = std::array::from_fn(|i| b.add((p + i) * rsb));
        let mut j = 0;
        while j < full {
            let mut v = _mm512_loadu_ps(c.add(j));
            for i in 0..4 {
                v = _mm512_fmadd_ps(x[i], _mm512_loadu_ps(r[i].add(j)), v);
            }
            _mm512_storeu_ps(c.add(j), v);
            j += 16;
        }
        if j < n {
            let mut v = _mm512_maskz_loadu_ps(tail, c.add(j));
            for i in 0..4 {
                v = _mm512_fmadd_ps(x[i], _mm512_maskz_loadu_ps(tail, r[i].add(j)), v);
            }
            _mm512_mask_storeu_ps(c.add(j), tail, v);
        }
        p += 4;
    }
    while p < k {
        let x = _mm512_set1_ps(alpha * *a.add(p * csa));
        let r = b.add(p * rsb);
        let mut j = 0;
        while j < n {
            let m = if j < full { 0xFFFF } else { tail };
            let v = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, r.add(j)), _mm512_maskz_loadu_ps(m, c.add(j)));
            _mm512_mask_storeu_ps(c.add(j), m, v);
            j += 16;
        }
        p += 1;
    }
}

#[inline(always)]
fn axpy_body<M: crate::kernels::simd::MulAdd>(s: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = M::madd(s, *xv, *yv);
    }
}

crate::multiversion! {
    /// `y += s · x`.
    fn axpy_f32(s: f32, x: &[f32], y: &mut [f32]) = axpy_body;
}

#[inline(always)]
fn dot4_body<M: crate::kernels::simd::MulAdd>(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let k = a.len();
    let b = b.map(|c| &c[..k]);
    let mut acc = [[0f32; 8]; 4];
    let mut p = 0;
    while p + 8 <= k {
        let av = &a[p..p + 8];
        for (q, acc) in acc.iter_mut().enumerate() {
            let bv = &b[q][p..p + 8];
            for l in 0..8 {
                acc[l] = M::madd(av[l], bv[l], acc[l]);
            }
        }
        p += 8;
    }
    let mut out = [0f32; 4];
    for q in 0..4 {
        let r = &acc[q];
        let mut s = ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
        for t in p..k {
            s = M::madd(a[t], b[q][t], s);
        }
        out[q] = s;
    }
    out
}

/// Dot products of `a` with four vectors of its length.
fn dot4_f32(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA (`active` never exceeds what it reports).
        return unsafe { dot4_avx2(a, b) };
    }
    dot4_body::<crate::kernels::simd::Plain>(a, b)
}

/// [`dot4_body`] with intrinsics (the compiler's vectorization of the generic body shuffles
/// and spills).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let k = a.len();
    let b = b.map(|c| &c[..k]);
    let (pa, p0, p1, p2, p3) = (a.as_ptr(), b[0].as_ptr(), b[1].as_ptr(), b[2].as_ptr(), b[3].as_ptr());
    let z = _mm256_setzero_ps();
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    let (mut t0, mut t1, mut t2, mut t3) = (z, z, z, z);
    let mut p = 0;
    while p + 16 <= k {
        let (x, y) = (_mm256_loadu_ps(pa.add(p)), _mm256_loadu_ps(pa.add(p + 8)));
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p0.add(p)), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p1.add(p)), s1);
        s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p2.add(p)), s2);
        s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p3.add(p)), s3);
        t0 = _mm256_fmadd_ps(y, _mm256_loadu_ps(p0.add(p + 8)), t0);
        t1 = _mm256_fmadd_ps(y, _mm256_loadu_ps(p1.add(p + 8)), t1);
        t2 = _mm256_fmadd_ps(y, _mm256_loadu_ps(p2.add(p + 8)), t2);
        t3 = _mm256_fmadd_ps(y, _mm256_loadu_ps(p3.add(p + 8)), t3);
        p += 16;
    }
    if p + 8 <= k {
        let x = _mm256_loadu_ps(pa.add(p));
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p0.add(p)), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p1.add(p)), s1);
        s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p2.add(p)), s2);
        s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(p3.add(p)), s3);
        p += 8;
    }
    let sums = [_mm256_add_ps(s0, t0), _mm256_add_ps(s1, t1), _mm256_add_ps(s2, t2), _mm256_add_ps(s3, t3)];
    let mut out = [0f32; 4];
    for q in 0..4 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums[q]);
        let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        for t in p..k {
            s = a[t].mul_add(b[q][t], s);
        }
        out[q] = s;
    }
    out
}

/// `c[j·csc] = alpha · a·b[j·ldb..][..k] + beta · c[j·csc]` for `j < n` (`k = a.len()`; beta 0
/// ignores C): a row vector against n contiguous columns, four columns at a time so each load
/// of `a` serves four products, each product in eight-lane partial sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dots_body<M: crate::kernels::simd::MulAdd>(
    a: &[f32],
    b: &[f32],
    ldb: usize,
    n: usize,
    alpha: f32,
    beta: f32,
    c: &mut [f32],
    csc: usize,
) {
    const L: usize = 8;
    let k = a.len();
    let kv = k - k % L;
    let store = |c: &mut [f32], j: usize, d: f32| {
        let cv = &mut c[j * csc];
        *cv = if beta == 0.0 { alpha * d } else { M::madd(alpha, d, beta * *cv) };
    };
    let reduce = |acc: &[f32; L]| ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    let mut j = 0;
    while j + 4 <= n {
        let b0 = &b[j * ldb..j * ldb + k];
        let b1 = &b[(j + 1) * ldb..(j + 1) * ldb + k];
        let b2 = &b[(j + 2) * ldb..(j + 2) * ldb + k];
        let b3 = &b[(j + 3) * ldb..(j + 3) * ldb + k];
        let (mut s0, mut s1, mut s2, mut s3) = ([0f32; L], [0f32; L], [0f32; L], [0f32; L]);
        let mut p = 0;
        while p < kv {
            let x: &[f32; L] = a[p..p + L].try_into().unwrap();
            let (y0, y1, y2, y3): (&[f32; L], &[f32; L], &[f32; L], &[f32; L]) = (
                b0[p..p + L].try_into().unwrap(),
                b1[p..p + L].try_into().unwrap(),
                b2[p..p + L].try_into().unwrap(),
                b3[p..p + L].try_into().unwrap(),
            );
            for l in 0..L {
                s0[l] = M::madd(x[l], y0[l], s0[l]);
                s1[l] = M::madd(x[l], y1[l], s1[l]);
                s2[l] = M::madd(x[l], y2[l], s2[l]);
                s3[l] = M::madd(x[l], y3[l], s3[l]);
            }
            p += L;
        }
        let (mut d0, mut d1, mut d2, mut d3) = (reduce(&s0), reduce(&s1), reduce(&s2), reduce(&s3));
        for p in kv..k {
            d0 = M::madd(a[p], b0[p], d0);
            d1 = M::madd(a[p], b1[p], d1);
            d2 = M::madd(a[p], b2[p], d2);
            d3 = M::madd(a[p], b3[p], d3);
        }
        store(c, j, d0);
        store(c, j + 1, d1);
        store(c, j + 2, d2);
        store(c, j + 3, d3);
        j += 4;
    }
    while j < n {
        let bj = &b[j * ldb..j * ldb + k];
        let mut s = [0f32; L];
        let mut p = 0;
        while p < kv {
            let x: &[f32; L] = a[p..p + L].try_into().unwrap();
            let y: &[f32; L] = bj[p..p + L].try_into().unwrap();
            for l in 0..L {
                s[l] = M::madd(x[l], y[l], s[l]);
            }
            p += L;
        }
        let mut d = reduce(&s);
        for p in kv..k {
            d = M::madd(a[p], bj[p], d);
        }
        store(c, j, d);
        j += 1;
    }
}

crate::multiversion! {
    /// Row vector times contiguous columns: see [`dots_body`].
    #[allow(clippy::too_many_arguments)]
    fn dots_f32_auto(a: &[f32], b: &[f32], ldb: usize, n: usize, alpha: f32, beta: f32, c: &mut [f32], csc: usize) = dots_body;
}

/// Row vector times contiguous columns (see [`dots_body`]): explicit AVX2+FMA code where the
/// CPU has it (the compiler vectorizes the generic body across columns, with shuffles), the
/// generic body otherwise.
#[allow(clippy::too_many_arguments)]
pub fn dots_f32(a: &[f32], b: &[f32], ldb: usize, n: usize, alpha: f32, beta: f32, c: &mut [f32], csc: usize) {
    let k = a.len();
    assert!(n == 0 || (b.len() >= (n - 1) * ldb + k && c.len() > (n - 1) * csc), "dots_f32: operands too short");
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F; extents asserted above.
        unsafe { dots_avx512(a, b, ldb, n, alpha, beta, c, csc) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::active() >= crate::kernels::simd::Isa::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA (`active` never exceeds what it reports); extents
        // asserted above.
        unsafe { dots_avx2(a, b, ldb, n, alpha, beta, c, csc) };
        return;
    }
    dots_f32_auto(a, b, ldb, n, alpha, beta, c, csc)
}

/// [`dots_f32`] on sixteen lanes: four columns per pass over `a`, the last partial vector of
/// each product loaded under a mask (no scalar tail).
///
/// # Safety
/// AVX-512F CPU; extents as asserted by [`dots_f32`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_avx512(a: &[f32], b: &[f32], ldb: usize, n: usize, alpha: f32, beta: f32, c: &mut [f32], csc: usize) {
    use std::arch::x86_64::*;
    let k = a.len();
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let k16 = k - k % 16;
    let tail = ((1u32 << (k - k16)) - 1) as __mmask16;
    let store = |j: usize, d: f32| {
        let cv = cp.add(j * csc);
        *cv = if beta == 0.0 { alpha * d } else { alpha.mul_add(d, beta * *cv) };
    };
    let mut j = 0;
    while j + 4 <= n {
        let bq: [*const f32; 4] = std::array::from_fn(|q| bp.add((j + q) * ldb));
        let mut s = [_mm512_setzero_ps(); 4];
        let mut p = 0;
        while p < k16 {
            let x = _mm512_loadu_ps(ap.add(p));
            for q in 0..4 {
                s[q] = _mm512_fmadd_ps(x, _mm512_loadu_ps(bq[q].add(p)), s[q]);
            }
            p += 16;
        }
        if tail != 0 {
            let x = _mm512_maskz_loadu_ps(tail, ap.add(p));
            for q in 0..4 {
                s[q] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, bq[q].add(p)), s[q]);
            }
        }
        for (q, v) in s.iter().enumerate() {
            store(j + q, _mm512_reduce_add_ps(*v));
        }
        j += 4;
    }
    while j < n {
        let bj = bp.add(j * ldb);
        let mut v = _mm512_setzero_ps();
        let mut p = 0;
        while p < k16 {
            v = _mm512_fmadd_ps(_mm512_loadu_ps(ap.add(p)), _mm512_loadu_ps(bj.add(p)), v);
            p += 16;
        }
        if tail != 0 {
            v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, ap.add(p)), _mm512_maskz_loadu_ps(tail, bj.add(p)), v);
        }
        store(j, _mm512_reduce_add_ps(v));
        j += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_avx2(a: &[f32], b: &[f32], ldb: usize, n: usize, alpha: f32, beta: f32, c: &mut [f32], csc: usize) {
    use std::arch::x86_64::*;
    let k = a.len();
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let k16 = k - k % 16;
    let k8 = k - k % 8;
    // Sum of the eight lanes of each of four vectors, as the four lanes of one.
    #[inline(always)]
    unsafe fn hsum4(v0: __m256, v1: __m256, v2: __m256, v3: __m256) -> __m128 {
        let s01 = _mm256_hadd_ps(v0, v1);
        let s23 = _mm256_hadd_ps(v2, v3);
        let s = _mm256_hadd_ps(s01, s23);
        _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s))
    }
    let store = |j: usize, d: f32| {
        let cv = cp.add(j * csc);
        *cv = if beta == 0.0 { alpha * d } else { alpha.mul_add(d, beta * *cv) };
    };
    let mut j = 0;
    while j + 4 <= n {
        let (b0, b1, b2, b3) = (bp.add(j * ldb), bp.add((j + 1) * ldb), bp.add((j + 2) * ldb), bp.add((j + 3) * ldb));
        let (mut s0, mut s1, mut s2, mut s3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut t0, mut t1, mut t2, mut t3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        let mut p = 0;
        while p < k16 {
            let x = _mm256_loadu_ps(ap.add(p));
            let y = _mm256_loadu_ps(ap.add(p + 8));
            s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0.add(p)), s0);
            s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1.add(p)), s1);
            s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2.add(p)), s2);
            s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3.add(p)), s3);
            t0 = _mm256_fmadd_ps(y, _mm256_loadu_ps(b0.add(p + 8)), t0);
            t1 = _mm256_fmadd_ps(y, _mm256_loadu_ps(b1.add(p + 8)), t1);
            t2 = _mm256_fmadd_ps(y, _mm256_loadu_ps(b2.add(p + 8)), t2);
            t3 = _mm256_fmadd_ps(y, _mm256_loadu_ps(b3.add(p + 8)), t3);
            p += 16;
        }
        if p < k8 {
            let x = _mm256_loadu_ps(ap.add(p));
            s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0.add(p)), s0);
            s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1.add(p)), s1);
            s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2.add(p)), s2);
            s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3.add(p)), s3);
        }
        let sums = hsum4(_mm256_add_ps(s0, t0), _mm256_add_ps(s1, t1), _mm256_add_ps(s2, t2), _mm256_add_ps(s3, t3));
        let mut d = [0f32; 4];
        _mm_storeu_ps(d.as_mut_ptr(), sums);
        for p in k8..k {
            let x = *ap.add(p);
            d[0] = x.mul_add(*b0.add(p), d[0]);
            d[1] = x.mul_add(*b1.add(p), d[1]);
            d[2] = x.mul_add(*b2.add(p), d[2]);
            d[3] = x.mul_add(*b3.add(p), d[3]);
        }
        for (q, dq) in d.iter().enumerate() {
            store(j + q, *dq);
        }
        j += 4;
    }
    while j < n {
        let bj = bp.add(j * ldb);
        let (mut s, mut t) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut p = 0;
        while p < k16 {
            s = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(p)), _mm256_loadu_ps(bj.add(p)), s);
            t = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(p + 8)), _mm256_loadu_ps(bj.add(p + 8)), t);
            p += 16;
        }
        if p < k8 {
            s = _mm256_fmadd_ps(_mm256_loadu_ps(ap.add(p)), _mm256_loadu_ps(bj.add(p)), s);
        }
        let z = _mm256_setzero_ps();
        let mut d = _mm_cvtss_f32(hsum4(_mm256_add_ps(s, t), z, z, z));
        for p in k8..k {
            d = (*ap.add(p)).mul_add(*bj.add(p), d);
        }
        store(j, d);
        j += 1;
    }
}

/// Dot product with 8 independent accumulators (vectorizes).
#[inline]
pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::ZERO; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

/// Products smaller than this many multiply-adds run on the calling thread only.
const PAR_MIN_FLOPS: usize = 1 << 17;

/// Like [`gemm`], split over `pool`'s threads (by blocks of rows of C, or columns when C is short).
#[allow(clippy::too_many_arguments)]
pub fn gemm_par<T: GemmElem>(
    pool: &ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) -> Result<()> {
    let threads = pool.threads();
    if threads <= 1 || m.saturating_mul(n).saturating_mul(k.max(1)) < PAR_MIN_FLOPS {
        return gemm(m, n, k, alpha, a, b, beta, c, rsc, csc);
    }
    check_extent("A", a.data.len(), m, k, a.rs, a.cs)?;
    check_extent("B", b.data.len(), k, n, b.rs, b.cs)?;
    check_extent("C", c.len(), m, n, rsc, csc)?;
    let (ap, bp, cp) = (
        a.data.as_ptr() as usize,
        b.data.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    let (rsa, csa, rsb, csb) = (a.rs, a.cs, b.rs, b.cs);
    // Split columns when there are enough of them: each thread then packs only its own part
    // of B (the large operand of a blocked GEMM) and all share A's small blocks. Rows otherwise.
    if n < 64 * threads {
        // Blocks of 8 rows.
        let blocks = m.div_ceil(8);
        pool.parallel_for(blocks, 1, |s, e| {
            let (r0, r1) = (s * 8, (e * 8).min(m));
            // SAFETY: disjoint row ranges of C; extents checked above.
            unsafe {
                gemm_unchecked(
                    r1 - r0,
                    n,
                    k,
                    alpha,
                    (ap as *const T).add(r0 * rsa),
                    rsa,
                    csa,
                    bp as *const T,
                    rsb,
                    csb,
                    beta,
                    (cp as *mut T).add(r0 * rsc),
                    rsc,
                    csc,
                )
            }
        });
    } else {
        let blocks = n.div_ceil(16);
        pool.parallel_for(blocks, 1, |s, e| {
            let (c0, c1) = (s * 16, (e * 16).min(n));
            // SAFETY: disjoint column ranges of C; extents checked above.
            unsafe {
                gemm_unchecked(
                    m,
                    c1 - c0,
                    k,
                    alpha,
                    ap as *const T,
                    rsa,
                    csa,
                    (bp as *const T).add(c0 * csb),
                    rsb,
                    csb,
                    beta,
                    (cp as *mut T).add(c0 * csc),
                    rsc,
                    csc,
                )
            }
        });
    }
    Ok(())
}

/// `sgemm`: [`gemm`] for `f32`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<f32>,
    b: MatRef<f32>,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
    csc: usize,
) -> Result<()> {
    gemm(m, n, k, alpha, a, b, beta, c, rsc, csc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_row_vector_times_row_major_every_isa() {
        crate::kernels::simd::test_util::for_each_isa(|isa| {
            // Rows wider than 128 columns stream B row by row (k in fours and a tail).
            for &(n, k) in &[(1usize, 1usize), (7, 3), (8, 5), (10, 128), (64, 2), (75, 9), (130, 33), (256, 64), (1000, 7), (144, 4), (129, 1)] {
                let a: Vec<f32> = (0..2 * k).map(|i| ((i * 7 % 13) as f32) * 0.25 - 1.5).collect();
                let b: Vec<f32> = (0..k * (n + 3)).map(|i| ((i * 5 % 11) as f32) * 0.5 - 2.0).collect();
                for &beta in &[0.0f32, 1.0, -0.5] {
                    // beta 0 ignores C, even NaN.
                    let mut c: Vec<f32> = (0..n).map(|i| if beta == 0.0 { f32::NAN } else { i as f32 * 0.125 }).collect();
                    let c0: Vec<f32> = c.iter().map(|v| if v.is_nan() { 0.0 } else { *v }).collect();
                    // A with column stride 2, B with row stride n + 3.
                    gemm(1, n, k, 1.5, MatRef { data: &a, rs: 2 * k, cs: 2 }, MatRef { data: &b, rs: n + 3, cs: 1 }, beta, &mut c, n, 1)
                        .unwrap();
                    for j in 0..n {
                        let d: f64 = (0..k).map(|p| a[2 * p] as f64 * b[p * (n + 3) + j] as f64).sum();
                        let want = 1.5 * d + beta as f64 * c0[j] as f64;
                        assert!((c[j] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "{isa:?} n {n} k {k} beta {beta}: {} vs {want}", c[j]);
                    }
                }
            }
        });
    }

    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes_and_threads() {
        let pool = ThreadPool::new(3);
        for &(m, n, k) in &[
            (1, 5, 3),
            (7, 1, 4),
            (33, 70, 65),
            (100, 9, 300),
            (3, 200, 300),
            (0, 3, 3),
            (2, 3, 0),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64) - 6.0).collect();
            let b: Vec<f64> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f64) * 0.5 - 2.0)
                .collect();
            let want = naive(m, n, k, &a, &b);
            let mut c = vec![f64::NAN; m * n];
            gemm_par(
                &pool,
                m,
                n,
                k,
                1.0,
                MatRef::row_major(&a, k),
                MatRef::row_major(&b, n),
                0.0,
                &mut c,
                n,
                1,
            )
            .unwrap();
            assert_eq!(c, want, "{m}x{n}x{k}");
            // Transposed B stored as n x k.
            let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c2 = vec![1.0; m * n];
            gemm(
                m,
                n,
                k,
                2.0,
                MatRef::row_major(&a, k),
                MatRef::row_major(&bt, k).t(),
                1.0,
                &mut c2,
                n,
                1,
            )
            .unwrap();
            let want2: Vec<f64> = want.iter().map(|v| 2.0 * v + 1.0).collect();
            assert_eq!(c2, want2);
            let a32: Vec<f32> = a.iter().map(|v| *v as f32).collect();
            let b32: Vec<f32> = b.iter().map(|v| *v as f32).collect();
            let mut c3 = vec![0f32; m * n];
            gemm_par(
                &pool,
                m,
                n,
                k,
                1.0,
                MatRef::row_major(&a32, k),
                MatRef::row_major(&b32, n),
                0.0,
                &mut c3,
                n,
                1,
            )
            .unwrap();
            assert!(c3
                .iter()
                .zip(&want)
                .all(|(x, y)| (*x as f64 - y).abs() < 1e-3));
        }
    }

    /// The f32 few-rows path (dot products against a transposed B), on every ISA, for shapes
    /// that exercise groups of four, leftovers, the single-column case and short depths.
    #[test]
    fn few_rows_against_transposed_b_f32() {
        use crate::kernels::simd::test_util::for_each_isa;
        for &(m, n, k) in &[(1, 7, 37), (3, 2, 19), (4, 4, 8), (9, 1, 33), (2, 3, 16), (1, 1000, 576), (2, 6, 100)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64) * 0.25 - 1.5).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64) * 0.5 - 2.0).collect();
            let want = naive(m, n, k, &a, &b);
            let a32: Vec<f32> = a.iter().map(|v| *v as f32).collect();
            // B stored transposed (n x k, columns of B contiguous).
            let bt32: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k] as f32).collect();
            for_each_isa(|isa| {
                let mut c = vec![1f32; m * n];
                gemm(m, n, k, 2.0, MatRef::row_major(&a32, k), MatRef::row_major(&bt32, k).t(), 0.5, &mut c, n, 1).unwrap();
                for (i, (x, w)) in c.iter().zip(&want).enumerate() {
                    let w = 2.0 * w + 0.5;
                    assert!((*x as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}x{n}x{k} {isa:?} [{i}]: {x} vs {w}");
                }
            });
        }
    }

    #[test]
    fn rejects_short_buffers() {
        let a = [1f32; 5];
        let mut c = [0f32; 4];
        assert!(sgemm(
            2,
            2,
            3,
            1.0,
            MatRef::row_major(&a, 3),
            MatRef::row_major(&a, 2),
            0.0,
            &mut c,
            2,
            1
        )
        .is_err());
    }
}
