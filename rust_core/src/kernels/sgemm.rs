//! Our own `f32` GEMM: BLIS-style blocking (KC × NC panels of B, MC × KC blocks of A, packed
//! into contiguous micro-panels) around a 6 × 16 register-blocked micro-kernel — twelve AVX2
//! accumulators, two loads of B and six broadcasts of A per step of k. On AVX-512 CPUs a
//! 12 × 32 kernel walks two A panels and two B panels at once (24 zmm accumulators); it was
//! 1.76× slower than onnxruntime on the 1024³ MatMul with the AVX2 kernel alone, on par with
//! it (0.96) since. A baseline-ISA kernel over the same packed panels serves CPUs without
//! AVX2+FMA (and the forced `scalar` path).
//!
//! Measured against the `matrixmultiply` crate on this machine (see benchmarks/): this kernel
//! is used for every `f32` product whose C rows are contiguous; `matrixmultiply` remains the
//! backend for `f64` and unusual output strides.

use crate::kernels::simd::{active, Isa, MulAdd};
#[cfg(target_arch = "x86_64")]
use crate::kernels::vmath::act_m256;
use crate::kernels::vmath::{apply_inplace_body, Act};
use std::cell::RefCell;

/// Rows of the micro-tile.
pub const MR: usize = 6;
/// Columns of the micro-tile.
pub const NR: usize = 16;
/// Depth of a packed block (A panel of MR × KC and B panel of KC × NR stay in L1/L2).
const KC: usize = 256;

/// Depth of the blocks of a product of depth `k`: at most [`KC`], all of one depth but the last
/// (576 = 3 x 192, not 256 + 256 + 64: a shallow last block pays a whole pass of C loads and
/// stores for little arithmetic). Packed operands and every driver use the same blocks.
fn block_depth(k: usize) -> usize {
    depth_blocks(k, KC)
}

/// Depth of the blocks of a product of depth `k` cut into blocks of at most `max` (all of one
/// depth but the last).
fn depth_blocks(k: usize, max: usize) -> usize {
    if k == 0 {
        max
    } else {
        k.div_ceil(k.div_ceil(max))
    }
}

/// Deepest block of a product with an implicit B ([`sgemm_implicit`], and the weights packed
/// for it: [`PackedA::for_implicit`]). Its B rows are not packed, so only A limits the depth
/// (12 rows x 1152 = 54 KB per pair of panels, from L2); every block boundary costs a pass of
/// C loads and stores through the scattered tile maps. A 3x3 convolution of 64 -> 256
/// channels on 13x13 (depth 576) ran 10% faster in one block than in three of 192; depths
/// 288 to 2304 gained 5-10%, pointwise products (mostly plain stores) were unchanged.
const IMPLICIT_KC: usize = 1152;
/// Rows of A packed at once (fits L2 with the B panel).
const MC: usize = 96;
/// Columns of B packed at once.
const NC: usize = 2048;

thread_local! {
    /// Packing buffers of the calling thread (A block, B block, the rows of a tile short of
    /// rows when A is read in place), reused across calls.
    static PACK: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
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

/// What happens to a finished tile of C: `C = act(acc + beta·C + bias[row])`, the bias and
/// activation only once the whole depth has been accumulated (`last`).
#[derive(Clone, Copy)]
struct TileOut<'a> {
    beta: f32,
    last: bool,
    /// Bias of the tile's first row onwards.
    bias: Option<&'a [f32]>,
    /// Bias of the tile's first column onwards.
    col_bias: Option<&'a [f32]>,
    act: Act,
    /// Scattered tile (only the AVX-512 kernel takes one): where each 16-column part's lanes
    /// go in C, instead of `nr` consecutive columns.
    map: Option<&'a [PartMap; 2]>,
}

/// Where the 16 lanes of a tile part go in each row of C: up to four runs, each a lane mask and
/// the offset from the row's start of C to where lane 0 would be (lane `l` of a run lands at
/// `offset + l`; an offset may be negative, as a masked-off lane is never addressed).
pub(crate) type PartMap = [(isize, u16); 4];

/// Write a finished tile for the valid `mr × nr` part (`beta == 0` ignores C's previous
/// content, even NaN).
#[inline(always)]
unsafe fn store_tile<M: MulAdd>(acc: &mut [[f32; NR]; MR], c: *mut f32, rsc: usize, mr: usize, nr: usize, t: TileOut) {
    for (i, row) in acc.iter_mut().enumerate().take(mr) {
        let cr = std::slice::from_raw_parts_mut(c.add(i * rsc), nr);
        if t.beta != 0.0 {
            for (a, cv) in row.iter_mut().zip(cr.iter()) {
                *a += t.beta * *cv;
            }
        }
        if t.last {
            if let Some(b) = t.bias {
                let bv = b[i];
                row.iter_mut().for_each(|a| *a += bv);
            }
            if let Some(cb) = t.col_bias {
                row.iter_mut().zip(&cb[..nr]).for_each(|(a, b)| *a += b);
            }
            apply_inplace_body::<M>(t.act, &mut row[..]);
        }
        for (d, v) in cr.iter_mut().zip(row.iter()) {
            *d = *v;
        }
    }
}

/// Baseline micro-kernel over packed panels (the compiler vectorizes the 16-wide rows).
unsafe fn kernel_generic(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rsc: usize, mr: usize, nr: usize, t: TileOut) {
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
    store_tile::<crate::kernels::simd::Plain>(&mut acc, c, rsc, mr, nr, t);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(kc: usize, a: &[f32], b: &[f32], c: *mut f32, rsc: usize, mr: usize, nr: usize, t: TileOut) {
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
    let beta = t.beta;
    if mr == MR && nr == NR {
        let vb = _mm256_set1_ps(beta);
        for (i, (lo, hi)) in rows.iter().enumerate() {
            let cr = c.add(i * rsc);
            let (mut lo, mut hi) = (*lo, *hi);
            if beta != 0.0 {
                lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), lo);
                hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr.add(8)), hi);
            }
            if t.last {
                if let Some(b) = t.bias {
                    let bv = _mm256_set1_ps(b[i]);
                    lo = _mm256_add_ps(lo, bv);
                    hi = _mm256_add_ps(hi, bv);
                }
                if let Some(cb) = t.col_bias {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(cb.as_ptr()));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(cb.as_ptr().add(8)));
                }
            }
            if t.last && t.act != Act::Identity {
                if let (Some(l), Some(h)) = (act_m256(t.act, lo), act_m256(t.act, hi)) {
                    (lo, hi) = (l, h);
                } else {
                    // Transcendental activations: through a stack row (same-width loads and
                    // stores, so no store-forwarding stall on C).
                    let mut row = [0f32; NR];
                    _mm256_storeu_ps(row.as_mut_ptr(), lo);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), hi);
                    apply_inplace_body::<crate::kernels::simd::Fused>(t.act, &mut row);
                    lo = _mm256_loadu_ps(row.as_ptr());
                    hi = _mm256_loadu_ps(row.as_ptr().add(8));
                }
            }
            _mm256_storeu_ps(cr, lo);
            _mm256_storeu_ps(cr.add(8), hi);
        }
    } else {
        let mut acc = [[0f32; NR]; MR];
        for (i, (lo, hi)) in rows.iter().enumerate() {
            _mm256_storeu_ps(acc[i].as_mut_ptr(), *lo);
            _mm256_storeu_ps(acc[i].as_mut_ptr().add(8), *hi);
        }
        store_tile::<crate::kernels::simd::Fused>(&mut acc, c, rsc, mr, nr, t);
    }
}

/// Where a micro-kernel finds the 16 floats of B at row `p`, columns `16·w..16·w + 16` of its
/// tile.
#[cfg(target_arch = "x86_64")]
trait BTile: Copy {
    /// # Safety
    /// `p` below the tile's depth and `w` below its panel count; the CPU has AVX-512F.
    unsafe fn load(self, p: usize, w: usize) -> std::arch::x86_64::__m512;
    /// Hint the caches about data a later tile reads at step `p` (nothing by default).
    ///
    /// # Safety
    /// As [`BTile::load`].
    #[inline(always)]
    unsafe fn prefetch(self, _p: usize) {}
}

/// The A operand of an AVX-512 tile: element (row `i`, depth `p`) for `i` below the tile's
/// rows.
trait ATile: Copy {
    /// # Safety
    /// `i` below the rows the tile holds, `p` below its depth `kc`.
    unsafe fn at(self, kc: usize, i: usize, p: usize) -> f32;
    /// Whether the tile holds `panels` panels of MR rows and depth `kc` (debug checks).
    fn holds(self, panels: usize, kc: usize) -> bool;
}

/// Packed micro-panels (see [`pack_a`]): panel `r` holds `[p][MR]`.
impl ATile for &[f32] {
    #[inline(always)]
    unsafe fn at(self, kc: usize, i: usize, p: usize) -> f32 {
        *self.as_ptr().add((i / MR) * kc * MR + p * MR + i % MR)
    }
    fn holds(self, panels: usize, kc: usize) -> bool {
        self.len() >= panels * kc * MR
    }
}

/// A row-major A read in place (no packing): row `i` starts at `a + i·rsa`. Only tiles whose
/// every row exists use it (the kernel reads all `R·MR` rows, or `(R-1)·MR + LAST`).
#[derive(Clone, Copy)]
struct RowsA {
    a: *const f32,
    rsa: usize,
}

impl ATile for RowsA {
    #[inline(always)]
    unsafe fn at(self, _kc: usize, i: usize, p: usize) -> f32 {
        *self.a.add(i * self.rsa + p)
    }
    fn holds(self, _panels: usize, _kc: usize) -> bool {
        true
    }
}

/// An A never materialized whose rows are consecutive floats: row `i`, depth `p` is
/// `x[offs[p] + i]` (see [`sgemm_implicit_t`]).
#[derive(Clone, Copy)]
struct OffsA {
    x: *const f32,
    offs: *const usize,
}

impl ATile for OffsA {
    #[inline(always)]
    unsafe fn at(self, _kc: usize, i: usize, p: usize) -> f32 {
        *self.x.add(*self.offs.add(p) + i)
    }
    fn holds(self, _panels: usize, _kc: usize) -> bool {
        true
    }
}

/// Packed panels of `kc` rows: panel `w` holds `[p][NR]`.
#[derive(Clone, Copy)]
struct PackedTile {
    b: *const f32,
    kc: usize,
}

#[cfg(target_arch = "x86_64")]
impl BTile for PackedTile {
    #[inline(always)]
    unsafe fn load(self, p: usize, w: usize) -> std::arch::x86_64::__m512 {
        std::arch::x86_64::_mm512_loadu_ps(self.b.add(w * self.kc * NR + p * NR))
    }
}

/// Unpacked B: row `p` of the tile starts at `base + offs[p]` and its columns are consecutive
/// (the implicit im2col matrix of a convolution, see [`sgemm_implicit`]). Only the lanes of
/// `mask[w]` are read (the others are zero), so a tile never reads past the end of B.
#[derive(Clone, Copy)]
struct RowsTile<const MASKED: bool> {
    base: *const f32,
    offs: *const usize,
    mask: [u16; 2],
    /// Columns ahead whose rows are prefetched at every step (0: none). The first panel pair
    /// over a block of tiles prefetches the next block: its rows of B come from L2 or L3 as up
    /// to hundreds of concurrent streams (one per row), which the hardware prefetchers do not
    /// follow.
    ahead: usize,
}

#[cfg(target_arch = "x86_64")]
impl<const MASKED: bool> BTile for RowsTile<MASKED> {
    #[inline(always)]
    unsafe fn load(self, p: usize, w: usize) -> std::arch::x86_64::__m512 {
        // Whole tiles load without a mask (a masked load costs an extra uop on the FMA ports).
        let src = self.base.add(*self.offs.add(p) + w * NR);
        if MASKED {
            std::arch::x86_64::_mm512_maskz_loadu_ps(self.mask[w], src)
        } else {
            std::arch::x86_64::_mm512_loadu_ps(src)
        }
    }
    #[inline(always)]
    unsafe fn prefetch(self, p: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if self.ahead != 0 {
            // Prefetches never fault: the address may lie past the end of B.
            let q = self.base.wrapping_add(*self.offs.add(p) + self.ahead) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(q);
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(124));
        }
    }
}

/// AVX-512 micro-kernel over `R` adjacent A panels and `W` adjacent B panels: a 6·R × 16·W
/// tile in 6·R·W accumulators of sixteen lanes (W loads of B and 6·R broadcasts of A per step
/// of k; at R = W = 2, 24 of the 32 registers). The panels keep the 6-row and 16-column packing
/// of the AVX2 kernel, so packed weights serve every ISA. Only the first `LAST` rows of the
/// last A panel are computed (`LAST < 6`: a product of 8 rows is a 12-row tile with 8 rows of
/// multiply-adds, not 12).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_avx512<const R: usize, const W: usize, const LAST: usize, B: BTile, A: ATile>(kc: usize, a: A, b: B, c: *mut f32, rsc: usize, mr: usize, nr: usize, t: TileOut) {
    use crate::kernels::vmath::act_m512;
    use std::arch::x86_64::*;
    debug_assert!(a.holds(R, kc) && (1..=MR).contains(&LAST) && mr <= (R - 1) * MR + LAST);
    // Accumulators never zeroed: step 0 writes the rows computed (MR per panel, LAST in the
    // last one), later steps add to them and only they are read. Zeroed, the whole array was
    // a memset per tile wherever it lived on the stack (5% of a pointwise tile 24 deep).
    let mut acc = [[[std::mem::MaybeUninit::<__m512>::uninit(); W]; MR]; R];
    {
        let live = kc > 0;
        let mut bv = [_mm512_setzero_ps(); W];
        if live {
            b.prefetch(0);
            for (w, v) in bv.iter_mut().enumerate() {
                *v = b.load(0, w);
            }
        }
        for (r, rows) in acc.iter_mut().enumerate() {
            let n_rows = if r + 1 == R { LAST } else { MR };
            for (i, row) in rows.iter_mut().enumerate().take(n_rows) {
                let av = if live { _mm512_set1_ps(a.at(kc, r * MR + i, 0)) } else { _mm512_setzero_ps() };
                for (w, v) in row.iter_mut().enumerate() {
                    v.write(_mm512_mul_ps(av, bv[w]));
                }
            }
        }
    }
    for p in 1..kc {
        b.prefetch(p);
        let mut bv = [_mm512_setzero_ps(); W];
        for (w, v) in bv.iter_mut().enumerate() {
            *v = b.load(p, w);
        }
        for (r, rows) in acc.iter_mut().enumerate() {
            let n_rows = if r + 1 == R { LAST } else { MR };
            for (i, row) in rows.iter_mut().enumerate().take(n_rows) {
                let av = _mm512_set1_ps(a.at(kc, r * MR + i, p));
                for (w, v) in row.iter_mut().enumerate() {
                    v.write(_mm512_fmadd_ps(av, bv[w], v.assume_init()));
                }
            }
        }
    }
    // Partial tiles store through lane masks (a masked-off lane is neither read nor written).
    let vb = _mm512_set1_ps(t.beta);
    let mut masks = [0 as __mmask16; W];
    for (w, m) in masks.iter_mut().enumerate() {
        let cols = nr.saturating_sub(w * NR).min(NR);
        *m = ((1u32 << cols) - 1) as __mmask16;
    }
    for (r, rows) in acc.iter().enumerate() {
        let n_rows = if r + 1 == R { LAST } else { MR };
        for (i, row) in rows.iter().enumerate().take(n_rows) {
            let ri = r * MR + i;
            if ri >= mr {
                break;
            }
            let cr = c.add(ri * rsc);
            // SAFETY: rows below n_rows were written by step 0.
            let mut out = row.map(|v| v.assume_init());
            for (w, v) in out.iter_mut().enumerate() {
                if t.beta != 0.0 {
                    let old = match t.map {
                        None => _mm512_maskz_loadu_ps(masks[w], cr.add(w * NR)),
                        Some(map) => map[w].iter().fold(_mm512_setzero_ps(), |o, &(off, m)| {
                            _mm512_mask_loadu_ps(o, m, cr.wrapping_offset(off))
                        }),
                    };
                    *v = _mm512_fmadd_ps(vb, old, *v);
                }
                if t.last {
                    if let Some(bias) = t.bias {
                        *v = _mm512_add_ps(*v, _mm512_set1_ps(bias[ri]));
                    }
                    if let Some(cb) = t.col_bias {
                        *v = _mm512_add_ps(*v, _mm512_maskz_loadu_ps(masks[w], cb.as_ptr().add(w * NR)));
                    }
                }
            }
            if t.last && t.act != Act::Identity {
                for v in out.iter_mut() {
                    *v = act_m512(t.act, *v);
                }
            }
            for (w, v) in out.iter().enumerate() {
                match t.map {
                    None if masks[w] != 0 => _mm512_mask_storeu_ps(cr.add(w * NR), masks[w], *v),
                    None => {}
                    Some(map) => {
                        for &(off, m) in map[w].iter().filter(|r| r.1 != 0) {
                            _mm512_mask_storeu_ps(cr.wrapping_offset(off), m, *v);
                        }
                    }
                }
            }
        }
    }
}

/// An A operand packed once (constant weights), in the block order [`sgemm_ex`] walks.
pub struct PackedA {
    m: usize,
    k: usize,
    /// Depth of its blocks (every driver walks a packed A in these blocks).
    kc: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Pack `A[m×k]` (element (i, p) at `a[i*rsa + p*csa]`) in the depth blocks of
    /// [`sgemm_ex`].
    pub fn new(m: usize, k: usize, a: &[f32], rsa: usize, csa: usize) -> PackedA {
        Self::with_blocks(m, k, a, rsa, csa, block_depth(k))
    }

    /// Pack `A[m×k]` as [`PackedA::new`] does, in the deeper blocks of [`sgemm_implicit`] (the
    /// weights of a convolution). Every driver accepts either packing.
    pub fn for_implicit(m: usize, k: usize, a: &[f32], rsa: usize, csa: usize) -> PackedA {
        Self::with_blocks(m, k, a, rsa, csa, depth_blocks(k, IMPLICIT_KC))
    }

    fn with_blocks(m: usize, k: usize, a: &[f32], rsa: usize, csa: usize, depth: usize) -> PackedA {
        assert!(m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len(), "PackedA: A is too small");
        let mut data = Vec::with_capacity(m.div_ceil(MR) * MR * k);
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let start = data.len();
                data.resize(start + mc.div_ceil(MR) * MR * kc, 0.0);
                // SAFETY: the block lies inside `a` (asserted above).
                unsafe { pack_a(mc, kc, a.as_ptr().add(ic * rsa + pc * csa), rsa, csa, 1.0, &mut data[start..]) };
            }
        }
        PackedA { m, k, kc: depth, data }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Depth.
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// A B operand packed once (constant weights of MatMul): for each block of KC rows, the
/// 16-column panels of every column in order, as the driver reads them.
pub struct PackedB {
    k: usize,
    n: usize,
    /// Depth of its blocks (every driver walks a packed B in these blocks).
    kc: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Pack `B[k×n]` (element (p, j) at `b[p*rsb + j*csb]`).
    pub fn new(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize) -> PackedB {
        Self::with_blocks(k, n, b, rsb, csb, block_depth(k))
    }

    /// Pack `B[k×n]` for [`sgemm_implicit_t`]: blocks as deep as an implicit product's.
    pub fn for_implicit_t(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize) -> PackedB {
        Self::with_blocks(k, n, b, rsb, csb, depth_blocks(k, IMPLICIT_KC))
    }

    fn with_blocks(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize, depth: usize) -> PackedB {
        assert!(k == 0 || n == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(), "PackedB: B is too small");
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * NR * k];
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            // SAFETY: the block lies inside `b` (asserted above); `data` holds it.
            unsafe { pack_b(kc, n, b.as_ptr().add(pc * rsb), rsb, csb, &mut data[pc * panels * NR..]) };
        }
        PackedB { k, n, kc: depth, data }
    }

    /// Depth.
    pub fn depth(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// The panels of rows `pc..pc + kc` (a KC block) from column `j0` (a multiple of NR) on.
    fn block(&self, pc: usize, kc: usize, j0: usize) -> &[f32] {
        let base = pc * self.n.div_ceil(NR) * NR;
        &self.data[base + (j0 / NR) * NR * kc..base + self.n.div_ceil(NR) * NR * kc]
    }
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
enum BSrc<'a> {
    Raw { b: *const f32, rsb: usize, csb: usize },
    /// Prepacked; the product's column 0 is the packed matrix's column `col0` (a multiple of NR).
    Packed { p: &'a PackedB, col0: usize },
}

/// Where the A operand comes from.
#[derive(Clone, Copy)]
pub enum ASrc<'a> {
    /// Strided memory, scaled by `alpha` while packing.
    Raw { a: *const f32, rsa: usize, csa: usize, alpha: f32 },
    /// Prepacked (alpha = 1).
    Packed(&'a PackedA),
}

/// Bias per row of C, bias per column of C and an activation, applied when the product is
/// complete (`act(A·B + bias[i] + col_bias[j])`).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub col_bias: Option<&'a [f32]>,
    pub act: Act,
}

impl Epilogue<'_> {
    /// Plain product.
    pub const NONE: Epilogue<'static> = Epilogue { bias: None, col_bias: None, act: Act::Identity };
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
    sgemm_ex(m, n, k, ASrc::Raw { a, rsa, csa, alpha }, b, rsb, csb, beta, c, rsc, Epilogue::NONE)
}

/// `C[m×n] = act(A·B + beta·C + bias)` (bias per row), A raw or prepacked.
///
/// # Safety
/// As [`sgemm`]; a packed A must have `m` rows and depth `k`; `bias` must hold `m` values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_ex(
    m: usize,
    n: usize,
    k: usize,
    a: ASrc,
    b: *const f32,
    rsb: usize,
    csb: usize,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    epi: Epilogue,
) {
    sgemm_core(m, n, k, a, BSrc::Raw { b, rsb, csb }, beta, c, rsc, epi)
}

/// `C[m×n] = act(A·B + beta·C + bias)` with B prepacked; the product's column 0 is `b`'s column
/// `col0`, a multiple of 16 (so column ranges of one packed B can run on several threads).
///
/// # Safety
/// As [`sgemm_ex`]; `b` must have depth `k` and at least `col0 + n` columns.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_b(m: usize, n: usize, k: usize, a: ASrc, b: &PackedB, col0: usize, beta: f32, c: *mut f32, rsc: usize, epi: Epilogue) {
    assert!(b.k == k && col0 % NR == 0 && col0 + n <= b.n, "sgemm_packed_b: packed B is {}x{}, product needs {k}x{n} from column {col0}", b.k, b.n);
    sgemm_core(m, n, k, a, BSrc::Packed { p: b, col0 }, beta, c, rsc, epi)
}

/// The `mc × kc` block of A at rows `ic`, depth `pc`, as packed micro-panels: a raw A is packed
/// into `abuf`; a packed A yields its next block (`packed_off` walks the blocks in the order
/// the drivers visit them: depth blocks outside, row blocks inside).
///
/// # Safety
/// A raw A must hold the block; `abuf` must hold a packed block.
#[inline(always)]
unsafe fn a_block<'r>(a: ASrc<'r>, abuf: &'r mut [f32], ic: usize, pc: usize, mc: usize, kc: usize, packed_off: &mut usize) -> &'r [f32] {
    let block_len = mc.div_ceil(MR) * MR * kc;
    match a {
        ASrc::Raw { a, rsa, csa, alpha } => {
            pack_a(mc, kc, a.add(ic * rsa + pc * csa), rsa, csa, alpha, abuf);
            &abuf[..block_len]
        }
        ASrc::Packed(p) => {
            let blk = &p.data[*packed_off..*packed_off + block_len];
            *packed_off += block_len;
            blk
        }
    }
}

/// One AVX-512 tile of `h` A panels and `w` B panels (`mr` rows, `nr` columns): the kernel
/// variant that computes only the rows the last A panel holds (the common small batches of
/// 2, 4 or 8 rows, the transposed products of small maps, 9 or 49 pixels, and convolutions
/// of 16, 80 or 255 output channels skip the zero rows' work; a row-major A read in place
/// must not be read past its rows either).
///
/// # Safety
/// As [`kernel_avx512`], on an AVX-512F CPU.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_avx512<A: ATile, B: BTile>(h: usize, w: usize, kc: usize, a: A, bt: B, cp: *mut f32, rsc: usize, mr: usize, nr: usize, t: TileOut) {
    match (h, w, mr - (h - 1) * MR) {
        (2, 2, 1) => kernel_avx512::<2, 2, 1, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, 2, 2) => kernel_avx512::<2, 2, 2, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, 2, 3) => kernel_avx512::<2, 2, 3, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, 2, 4) => kernel_avx512::<2, 2, 4, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, 2, 5) => kernel_avx512::<2, 2, 5, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, 2, _) => kernel_avx512::<2, 2, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (2, _, _) => kernel_avx512::<2, 1, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, 1) => kernel_avx512::<1, 2, 1, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, 2) => kernel_avx512::<1, 2, 2, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, 3) => kernel_avx512::<1, 2, 3, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, 4) => kernel_avx512::<1, 2, 4, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, 5) => kernel_avx512::<1, 2, 5, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        (_, 2, _) => kernel_avx512::<1, 2, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
        _ => kernel_avx512::<1, 1, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
    }
}

/// Whether the 2·MR rows of a tile, `rsa` floats apart, spread over the sets of a 32 KB
/// 8-way L1 (64 sets of 64-byte lines), at most four rows per set: read in place, more rows
/// than that in one set (all twelve when rows are 4 KB apart) evict each other and the
/// panels of B at every step of depth.
fn rows_spread_in_l1(rsa: usize) -> bool {
    let mut per_set = [0u8; 64];
    (0..2 * MR).all(|i| {
        let set = (i * rsa * 4 / 64) % 64;
        per_set[set] += 1;
        per_set[set] <= 4
    })
}

/// The driver behind [`sgemm_ex`] and [`sgemm_packed_b`].
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_core(m: usize, n: usize, k: usize, a: ASrc, bsrc: BSrc, beta: f32, c: *mut f32, rsc: usize, epi: Epilogue) {
    if m == 0 || n == 0 {
        return;
    }
    if let ASrc::Packed(p) = a {
        assert!(p.m == m && p.k == k, "sgemm_ex: packed A is {}x{}, product needs {m}x{k}", p.m, p.k);
    }
    let alpha_zero = matches!(a, ASrc::Raw { alpha, .. } if alpha == 0.0);
    if k == 0 || alpha_zero {
        for i in 0..m {
            let cr = std::slice::from_raw_parts_mut(c.add(i * rsc), n);
            if beta == 0.0 {
                cr.fill(0.0);
            } else {
                cr.iter_mut().for_each(|v| *v *= beta);
            }
            if let Some(bv) = epi.bias {
                cr.iter_mut().for_each(|v| *v += bv[i]);
            }
            if let Some(cb) = epi.col_bias {
                cr.iter_mut().zip(&cb[..n]).for_each(|(v, b)| *v += b);
            }
            crate::kernels::vmath::apply_inplace(epi.act, cr);
        }
        return;
    }
    let avx2 = cfg!(target_arch = "x86_64") && active() >= Isa::Avx2;
    let avx512 = cfg!(target_arch = "x86_64") && active() >= Isa::Avx512;
    PACK.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let (abuf, bbuf, edge) = &mut *bufs;
        // The depth blocks of a packed operand (a packed B and a packed A never meet), and
        // fewer columns per packed B block when they are deeper than KC (same L2 footprint).
        let depth = match (a, bsrc) {
            (ASrc::Packed(p), BSrc::Raw { .. }) => p.kc,
            (ASrc::Packed(p), BSrc::Packed { p: b, .. }) => {
                assert!(p.kc == b.kc, "sgemm: packed A and packed B in different depth blocks");
                p.kc
            }
            (_, BSrc::Packed { p, .. }) => p.kc,
            _ => block_depth(k),
        };
        let nc_step = if depth <= KC { NC } else { (NC * KC / depth).max(NR) / NR * NR };
        let kc_max = depth.min(k);
        let a_need = MC.min(m).div_ceil(MR) * MR * kc_max;
        let b_need = nc_step.min(n).div_ceil(NR) * NR * kc_max;
        if matches!(a, ASrc::Raw { .. }) && abuf.len() < a_need {
            abuf.resize(a_need, 0.0);
        }
        if matches!(bsrc, BSrc::Raw { .. }) && bbuf.len() < b_need {
            bbuf.resize(b_need, 0.0);
        }
        // The block of rows and depth whose short tile `edge` holds packed.
        let mut edge_of: Option<(usize, usize)> = None;
        for jc in (0..n).step_by(nc_step) {
            let nc = nc_step.min(n - jc);
            let mut packed_off = 0usize;
            for pc in (0..k).step_by(depth) {
                let kc = depth.min(k - pc);
                let bpanels: &[f32] = match bsrc {
                    BSrc::Raw { b, rsb, csb } => {
                        pack_b(kc, nc, b.add(pc * rsb + jc * csb), rsb, csb, bbuf);
                        &bbuf[..]
                    }
                    BSrc::Packed { p, col0 } => p.block(pc, kc, col0 + jc),
                };
                let beta_k = if pc == 0 { beta } else { 1.0 };
                let last = pc + kc == k;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    // A row-major A with unit alpha is read in place by the AVX-512 tiles (its
                    // rows are broadcast one value at a time, so they need no packing); only
                    // tiles short of rows pack theirs. Not when the tile's 12 rows would crowd
                    // a few L1 sets (rows 2 or 4 KB apart: 1024 x 1024 x 1024 ran at 1.08x
                    // onnxruntime's time read in place, 0.99x packed).
                    let direct = match a {
                        ASrc::Raw { a, rsa, csa: 1, alpha } if avx512 && alpha == 1.0 && rows_spread_in_l1(rsa) => Some((a.add(ic * rsa + pc), rsa)),
                        _ => None,
                    };
                    let ablock: &[f32] = if direct.is_some() { &[] } else { a_block(a, abuf, ic, pc, mc, kc, &mut packed_off) };
                    let panels = nc.div_ceil(NR);
                    let mut q = 0;
                    while q < panels {
                        // AVX-512 takes two panels (32 columns) per tile while two remain.
                        let w = if avx512 && q + 1 < panels { 2 } else { 1 };
                        let bpanel = &bpanels[q * NR * kc..(q + w) * NR * kc];
                        let j0 = q * NR;
                        let nr = (w * NR).min(nc - j0);
                        q += w;
                        let apanels = mc.div_ceil(MR);
                        let mut r = 0;
                        while r < apanels {
                            // AVX-512 takes two A panels (12 rows) per tile while two remain.
                            let h = if avx512 && r + 1 < apanels { 2 } else { 1 };
                            let i0 = r * MR;
                            let mr = (h * MR).min(mc - i0);
                            r += h;
                            let cp = c.add((ic + i0) * rsc + jc + j0);
                            let t = TileOut {
                                beta: beta_k,
                                last,
                                bias: epi.bias.map(|bv| &bv[ic + i0..ic + i0 + mr]),
                                col_bias: epi.col_bias.map(|cb| &cb[jc + j0..jc + j0 + nr]),
                                act: epi.act,
                                map: None,
                            };
                            #[cfg(target_arch = "x86_64")]
                            if avx512 {
                                let bt = PackedTile { b: bpanel.as_ptr(), kc };
                                match direct {
                                    Some((a0, rsa)) if mr == h * MR => tile_avx512(h, w, kc, RowsA { a: a0.add(i0 * rsa), rsa }, bt, cp, rsc, mr, nr, t),
                                    Some((a0, rsa)) => {
                                        // Packed once per block of rows and depth, for every
                                        // column panel after it.
                                        if edge_of != Some((ic, pc)) {
                                            edge.resize(h * MR * kc, 0.0);
                                            pack_a(mr, kc, a0.add(i0 * rsa), rsa, 1, 1.0, edge);
                                            edge_of = Some((ic, pc));
                                        }
                                        tile_avx512(h, w, kc, &edge[..h * MR * kc], bt, cp, rsc, mr, nr, t);
                                    }
                                    None => tile_avx512(h, w, kc, &ablock[i0 * kc..(i0 + h * MR) * kc], bt, cp, rsc, mr, nr, t),
                                }
                                continue;
                            }
                            let apanel = &ablock[i0 * kc..(i0 + h * MR) * kc];
                            #[cfg(target_arch = "x86_64")]
                            if avx2 {
                                kernel_avx2(kc, apanel, bpanel, cp, rsc, mr, nr, t);
                                continue;
                            }
                            let _ = (avx2, avx512);
                            kernel_generic(kc, apanel, bpanel, cp, rsc, mr, nr, t);
                        }
                    }
                }
            }
        }
    });
}

/// Multiply-adds below which a product runs on one thread. A split costs a wake-up and, after
/// it, the other thread's cache holds part of the output: 48x8x576 (221k) took 7 us alone and
/// 12 us split in two. At 2^18 instead of 2^17, alternating processes on 2 threads:
/// tf_mobilenetv2 -2 to -3%, mobilenet_v3_small -1 to -2%, the others within noise (raising
/// it further, to 2^19, cost mobilenet_v3_small 12%).
const PAR_MIN_MACS: usize = 1 << 18;

/// [`sgemm_ex`] split over `pool` by column blocks (each thread packs its own part of B and
/// reads the shared A); single-threaded when there are too few columns or too little work.
///
/// # Safety
/// As [`sgemm_ex`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_ex_par(
    pool: &crate::executor::pool::ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    a: ASrc,
    b: *const f32,
    rsb: usize,
    csb: usize,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    epi: Epilogue,
) {
    let threads = pool.threads();
    let blocks = n.div_ceil(NR);
    if threads <= 1 || blocks < 2 * threads || m * n * k < PAR_MIN_MACS {
        return sgemm_ex(m, n, k, a, b, rsb, csb, beta, c, rsc, epi);
    }
    let (bp, cp) = (b as usize, c as usize);
    // Raw pointers are plain addresses here; every task touches its own columns of C.
    struct Shared<'a>(ASrc<'a>);
    unsafe impl Sync for Shared<'_> {}
    let sa = Shared(a);
    pool.parallel_for(blocks, 1, |s, e| {
        let (c0, c1) = (s * NR, (e * NR).min(n));
        let a = &sa;
        let epi = Epilogue { col_bias: epi.col_bias.map(|cb| &cb[c0..c1]), ..epi };
        sgemm_ex(m, c1 - c0, k, a.0, (bp as *const f32).add(c0 * csb), rsb, csb, beta, (cp as *mut f32).add(c0), rsc, epi);
    });
}

/// [`sgemm_packed_b`] with a raw A (element (i, p) at `a[i*rsa + p*csa]`, times `alpha`),
/// split over `pool` by blocks of rows: each thread packs only its own rows of A and all read
/// the shared packed B (a column split would have every thread pack all of A).
///
/// # Safety
/// As [`sgemm_packed_b`] with `col0 = 0`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_b_par(
    pool: &crate::executor::pool::ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    (a, rsa, csa, alpha): (*const f32, usize, usize, f32),
    b: &PackedB,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    epi: Epilogue,
) {
    const ROWS: usize = 2 * MR;
    let blocks = m.div_ceil(ROWS);
    if pool.threads() <= 1 || m * n * k < PAR_MIN_MACS {
        return sgemm_packed_b(m, n, k, ASrc::Raw { a, rsa, csa, alpha }, b, 0, beta, c, rsc, epi);
    }
    let (ap, cp) = (a as usize, c as usize);
    if blocks < pool.threads() {
        // Too few rows to share (a classifier at batch 8: 8 x 1280 x 1000): ranges of whole
        // 32-column tiles instead, each thread reading its own part of the packed weights
        // (the product is bound by reading them).
        const COLS: usize = 2 * NR;
        let tiles = n.div_ceil(COLS);
        if tiles < pool.threads() {
            return sgemm_packed_b(m, n, k, ASrc::Raw { a, rsa, csa, alpha }, b, 0, beta, c, rsc, epi);
        }
        pool.parallel_for(tiles, 1, |s, e| {
            let (c0, c1) = (s * COLS, (e * COLS).min(n));
            let ar = ASrc::Raw { a: ap as *const f32, rsa, csa, alpha };
            let epi = Epilogue { col_bias: epi.col_bias.map(|cb| &cb[c0..c1]), ..epi };
            // SAFETY: every task writes its own columns of C; c0 is a multiple of NR.
            unsafe { sgemm_packed_b(m, c1 - c0, k, ar, b, c0, beta, (cp as *mut f32).add(c0), rsc, epi) };
        });
        return;
    }
    pool.parallel_for(blocks, 1, |s, e| {
        let (r0, r1) = (s * ROWS, (e * ROWS).min(m));
        let ar = ASrc::Raw { a: (ap as *const f32).add(r0 * rsa), rsa, csa, alpha };
        let epi = Epilogue { bias: epi.bias.map(|bv| &bv[r0..r1]), ..epi };
        // SAFETY: every task writes its own rows of C.
        unsafe { sgemm_packed_b(r1 - r0, n, k, ar, b, 0, beta, (cp as *mut f32).add(r0 * rsc), rsc, epi) };
    });
}

/// Most tiles of [`sgemm_implicit`] swept by each pair of A panels in turn (512 columns).
const TILE_BLOCK: usize = 16;

/// Whether [`sgemm_implicit`] runs on this CPU (it drives the AVX-512 micro-kernel).
pub fn implicit_available() -> bool {
    cfg!(target_arch = "x86_64") && active() >= Isa::Avx512
}

/// A B operand that is never materialized: its element at depth `p` and column `j` is
/// `x[offs[p] + v(j)]`, where column `j = (q, o)` of a `rows × cols` grid (row-major) sits at
/// `v = q·width + o` (`width ≥ cols`). Over a zero-padded image of row length `width` this is
/// the im2col matrix of a convolution with unit strides (`offs[p]` locates channel and tap `p`).
///
/// The product runs over the "virtual" columns `v` in tiles of 32 consecutive ones: the columns
/// `o ≥ cols` of each row are computed from whatever `x` holds there and never stored, so a
/// tile may span grid rows and only `width - cols` lanes per row are wasted.
#[derive(Clone, Copy)]
pub struct ImplicitB<'a> {
    pub x: &'a [f32],
    pub offs: &'a [usize],
    pub width: usize,
    pub rows: usize,
    pub cols: usize,
}

impl ImplicitB<'_> {
    /// Virtual columns up to the last stored one.
    fn virtual_cols(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.width + self.cols
        }
    }

    /// Tiles of 32 virtual columns.
    pub fn tiles(&self) -> usize {
        self.virtual_cols().div_ceil(2 * NR)
    }

    /// Floats of `x` the micro-kernel reads (loads are masked at the last column).
    pub fn reach(offs_max: usize, width: usize, rows: usize, cols: usize) -> usize {
        offs_max + rows.saturating_sub(1) * width + cols
    }

    /// Where the lanes of the 16 virtual columns from `v0` (of which `lanes` exist) go in a row
    /// of C (see [`PartMap`]).
    fn part_map(&self, v0: usize, lanes: usize) -> PartMap {
        let mut map = [(0isize, 0u16); 4];
        let (mut l, mut n) = (0, 0);
        while l < lanes {
            let (q, o) = ((v0 + l) / self.width, (v0 + l) % self.width);
            let run_end = (l + self.width - o).min(lanes);
            if o < self.cols {
                let valid_end = (l + self.cols - o).min(run_end);
                let mask = ((1u32 << valid_end) - (1u32 << l)) as u16;
                map[n] = ((q * self.cols + o) as isize - l as isize, mask);
                n += 1;
            }
            l = run_end;
        }
        map
    }
}

/// `C = act(A·B + bias)` (bias per row of C) for an implicit B, over its tiles `tiles` and the
/// rows `rows` of A (starting at a multiple of 6); C's element `(i, j)` is at `c[i·rsc + j]`. No B panel is packed: the micro-kernel loads each row
/// of a tile straight from `x`. Columns past the end of a grid row are computed from whatever
/// `x` holds there and never stored.
///
/// # Safety
/// [`implicit_available`]; A (raw) in bounds for `m × k`, a packed A of `m` rows and depth `k`;
/// C holds `m` rows of `rsc` floats covering every column of the grid; `bias` has `m` values.
/// The reach of B inside `x` is checked here.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_implicit(m: usize, k: usize, a: ASrc, b: &ImplicitB, tiles: std::ops::Range<usize>, rows: std::ops::Range<usize>, c: *mut f32, rsc: usize, epi: Epilogue) {
    assert!(implicit_available(), "sgemm_implicit needs AVX-512");
    assert!(epi.col_bias.is_none(), "sgemm_implicit: no bias per column");
    assert!(b.offs.len() == k, "sgemm_implicit: {} offsets for depth {k}", b.offs.len());
    let offs_max = b.offs.iter().copied().max().unwrap_or(0);
    assert!(b.width >= b.cols && (b.rows <= 1 || b.width >= 6), "sgemm_implicit: grid rows of {} in {}", b.cols, b.width);
    assert!(
        ImplicitB::reach(offs_max, b.width, b.rows, b.cols) <= b.x.len(),
        "sgemm_implicit: B reaches past its {} floats",
        b.x.len()
    );
    assert!(tiles.end <= b.tiles(), "sgemm_implicit: tiles {tiles:?} of {}", b.tiles());
    if let ASrc::Packed(p) = a {
        assert!(p.m == m && p.k == k, "sgemm_implicit: packed A is {}x{}, product needs {m}x{k}", p.m, p.k);
    }
    assert!(rows.start % MR == 0 && rows.end <= m, "sgemm_implicit: rows {rows:?} of {m}");
    if rows.is_empty() || tiles.is_empty() {
        return;
    }
    assert!(k > 0 && !matches!(a, ASrc::Raw { alpha, .. } if alpha == 0.0), "sgemm_implicit: empty product");
    #[cfg(target_arch = "x86_64")]
    PACK.with(|cell| {
        let abuf = &mut cell.borrow_mut().0;
        let depth = match a {
            ASrc::Packed(p) => p.kc,
            ASrc::Raw { .. } => depth_blocks(k, IMPLICIT_KC),
        };
        let a_need = MC.min(m).div_ceil(MR) * MR * depth.min(k);
        if matches!(a, ASrc::Raw { .. }) && abuf.len() < a_need {
            abuf.resize(a_need, 0.0);
        }
        let mut packed_off = 0usize;
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            let last = pc + kc == k;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let ablock = a_block(a, abuf, ic, pc, mc, kc, &mut packed_off);
                // The panels of this block inside `rows`.
                let (r_lo, r_hi) = (rows.start.max(ic).min(ic + mc) - ic, rows.end.max(ic).min(ic + mc) - ic);
                let (r_lo, r_hi) = (r_lo / MR, r_hi.div_ceil(MR));
                if r_lo >= r_hi {
                    continue;
                }
                let vcols = b.virtual_cols();
                // Blocks of tiles; within a block, each pair of A panels sweeps every tile, so a
                // shallow product writes C as 12 row streams, not one per row of A (at batch 8
                // the output no longer fits the caches, and 64 interleaved streams defeated the
                // prefetch: the first convolution of a CNN ran 3x slower per image).
                // As many tiles as keep their rows of B in L1 (32 KB) between panel pairs.
                let block = (KC / kc).clamp(1, TILE_BLOCK);
                let mut t0 = tiles.start;
                while t0 < tiles.end {
                    let t1 = (t0 + block).min(tiles.end);
                    let mut info = [(0usize, 0usize, 0usize, false, [[(0isize, 0u16); 4]; 2]); TILE_BLOCK];
                    for (t, inf) in (t0..t1).zip(info.iter_mut()) {
                        let v0 = t * 2 * NR;
                        let nr = (2 * NR).min(vcols - v0);
                        // A tile inside one grid row is stored as consecutive columns.
                        let (q0, o0) = (v0 / b.width, v0 % b.width);
                        let plain = o0 + nr <= b.cols;
                        let map = if plain { [[(0, 0); 4]; 2] } else { [b.part_map(v0, nr.min(NR)), b.part_map(v0 + NR, nr.saturating_sub(NR))] };
                        *inf = (v0, nr, q0 * b.cols + o0, plain, map);
                    }
                    let mut r = r_lo;
                    while r < r_hi {
                        let h = if r + 1 < r_hi { 2 } else { 1 };
                        let apanel = &ablock[r * MR * kc..(r + h) * MR * kc];
                        let i0 = r * MR;
                        let mr = (h * MR).min(mc - i0);
                        let first_pair = r == r_lo;
                        r += h;
                        for (v0, nr, c_off, plain, map) in &info[..t1 - t0] {
                            let (v0, nr, plain) = (*v0, *nr, *plain);
                            let lanes = |w: usize| ((1u32 << nr.saturating_sub(w * NR).min(NR)) - 1) as u16;
                            let ahead = if first_pair { (t1 - t0) * 2 * NR } else { 0 };
                            let (base, offs, mask) = (b.x.as_ptr().add(v0), b.offs.as_ptr().add(pc), [lanes(0), lanes(1)]);
                            let cp = c.add((ic + i0) * rsc + if plain { *c_off } else { 0 });
                            let tt = TileOut {
                                beta: if pc == 0 { 0.0 } else { 1.0 },
                                last,
                                bias: epi.bias.map(|bv| &bv[ic + i0..ic + i0 + mr]),
                                col_bias: None,
                                act: epi.act,
                                map: if plain { None } else { Some(map) },
                            };
                            if nr == 2 * NR {
                                // A whole tile reads 32 virtual columns, all inside B.
                                let bt = RowsTile::<false> { base, offs, mask, ahead };
                                // Output channels past a multiple of 6 (16 = 12 + 4, 80 = 72 + 8,
                                // a 1-channel map, 255 = 252 + 3): no multiply-adds for the last
                                // panel's zero rows.
                                tile_avx512(h, 2, kc, apanel, bt, cp, rsc, mr, nr, tt);
                            } else {
                                let bt = RowsTile::<true> { base, offs, mask, ahead };
                                match (h, nr > NR) {
                                    (2, true) => kernel_avx512::<2, 2, 6, _, _>(kc, apanel, bt, cp, rsc, mr, nr, tt),
                                    (2, false) => kernel_avx512::<2, 1, 6, _, _>(kc, apanel, bt, cp, rsc, mr, nr, tt),
                                    (_, true) => kernel_avx512::<1, 2, 6, _, _>(kc, apanel, bt, cp, rsc, mr, nr, tt),
                                    _ => kernel_avx512::<1, 1, 6, _, _>(kc, apanel, bt, cp, rsc, mr, nr, tt),
                                }
                            }
                        }
                    }
                    t0 = t1;
                }
            }
        }
    });
}

/// [`sgemm_implicit`] over the whole product, split over `pool` by tiles when there are many
/// (each thread reads the shared A and writes its own columns of C), otherwise by blocks of 12
/// rows of A (small grids: each thread writes its own rows of C).
///
/// # Safety
/// As [`sgemm_implicit`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_implicit_par(pool: &crate::executor::pool::ThreadPool, m: usize, k: usize, a: ASrc, b: &ImplicitB, c: *mut f32, rsc: usize, epi: Epilogue) {
    let (tiles, threads) = (b.tiles(), pool.threads());
    let row_blocks = m.div_ceil(2 * MR);
    if threads <= 1 || m * k * b.rows * b.cols < PAR_MIN_MACS || (tiles < 2 * threads && row_blocks < 2 * threads) {
        return sgemm_implicit(m, k, a, b, 0..tiles, 0..m, c, rsc, epi);
    }
    struct Shared<'a>(ASrc<'a>);
    unsafe impl Sync for Shared<'_> {}
    let (sa, cp) = (Shared(a), c as usize);
    if tiles >= 4 * threads || tiles >= row_blocks {
        pool.parallel_for(tiles, 1, |t0, t1| {
            let a = &sa;
            // SAFETY: every task writes the columns of its own tiles.
            unsafe { sgemm_implicit(m, k, a.0, b, t0..t1, 0..m, cp as *mut f32, rsc, epi) };
        });
    } else {
        pool.parallel_for(row_blocks, 1, |r0, r1| {
            let a = &sa;
            // SAFETY: every task writes its own rows of C.
            unsafe { sgemm_implicit(m, k, a.0, b, 0..tiles, r0 * 2 * MR..(r1 * 2 * MR).min(m), cp as *mut f32, rsc, epi) };
        });
    }
}

/// Output channels [`sgemm_implicit_t`] computes per sweep of the image: a block of `Wᵀ`
/// stays in L2 (1152 deep x 128 columns: 576 KB) while every output row sweeps it.
const IMPLICIT_T_NC: usize = 128;

/// Widest grid rows [`sgemm_implicit_t`] computes in tiles spanning several rows.
const IMPLICIT_T_SHORT: usize = 4;

/// Outputs of one grid row computed per tile by [`sgemm_implicit_t`] (at most 14: 28
/// accumulators, two B vectors and a broadcast fill the 32 registers).
const IMPLICIT_T_ROW: usize = 14;

/// The transposed product of [`sgemm_implicit`]: `C = act(Bᵀ·W + col_bias)` (bias per column
/// of C) for the implicit `b` (depth `k = b.offs.len()`, one row of C per grid element, in
/// order) and `W`, `w`'s columns `col0..col0 + n` (packed by [`PackedB::for_implicit_t`]); C's
/// element `(i, j)` is at `c[i·rsc + j]`. For a convolution, pixels × output channels, with
/// the vectors along the channels: no lane is wasted on the grid's short rows. A tile takes
/// up to [`IMPLICIT_T_ROW`] consecutive outputs of one grid row (a 13-wide row is one tile of
/// 13, a 27-wide one two of 14 and 13), each broadcast from the image in place; rows of at
/// most [`IMPLICIT_T_SHORT`] go 12 virtual columns at a time.
///
/// # Safety
/// [`implicit_available`]; C holds `b.rows·b.cols` rows of `rsc ≥ n` floats; `col_bias` has
/// `n` values. The reach of B inside `b.x` is checked here.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_implicit_t(b: &ImplicitB, n: usize, w: &PackedB, col0: usize, c: *mut f32, rsc: usize, epi: Epilogue) {
    let k = b.offs.len();
    assert!(implicit_available(), "sgemm_implicit_t needs AVX-512");
    assert!(epi.bias.is_none(), "sgemm_implicit_t: no bias per row");
    assert!(w.k == k && col0 % NR == 0 && col0 + n <= w.n && rsc >= n, "sgemm_implicit_t: packed W is {}x{}, product needs {k}x{n} from column {col0}", w.k, w.n);
    if b.rows == 0 || b.cols == 0 || n == 0 {
        return;
    }
    assert!(b.width >= b.cols, "sgemm_implicit_t: grid rows of {} in {}", b.cols, b.width);
    let offs_max = b.offs.iter().copied().max().unwrap_or(0);
    assert!(k > 0 && ImplicitB::reach(offs_max, b.width, b.rows, b.cols) <= b.x.len(), "sgemm_implicit_t: B reaches past its {} floats", b.x.len());
    // Tiles per grid row, of (nearly) equal widths.
    // Tiles: up to IMPLICIT_T_ROW outputs of one grid row (rows of nearly equal parts); grid
    // rows of at most IMPLICIT_T_SHORT outputs go 2·MR virtual columns at a time instead
    // (spanning grid rows; the columns past a row's end are computed and dropped), as a
    // tile of 3 rows would load each vector of W for 6 multiply-adds.
    let spanning = b.cols <= IMPLICIT_T_SHORT && b.rows > 1;
    let per_row = b.cols.div_ceil(IMPLICIT_T_ROW);
    let vcols = (b.rows - 1) * b.width + b.cols;
    let tiles = if spanning { vcols.div_ceil(2 * MR) } else { b.rows * per_row };
    // (first virtual column, outputs, row of C when the outputs are consecutive in it)
    let tile = |t: usize| -> (usize, usize, Option<usize>) {
        if spanning {
            (t * 2 * MR, (2 * MR).min(vcols - t * 2 * MR), None)
        } else {
            let (q, part) = (t / per_row, t % per_row);
            let (o0, o1) = (part * b.cols / per_row, (part + 1) * b.cols / per_row);
            (q * b.width + o0, o1 - o0, Some(q * b.cols + o0))
        }
    };
    // A spanning tile's rows, between C and the kernel.
    let mut staged = [0f32; 2 * MR * 2 * NR];
    #[cfg(target_arch = "x86_64")]
    for pc in (0..k).step_by(w.kc) {
        let kc = w.kc.min(k - pc);
        let last = pc + kc == k;
        let wpanels = w.block(pc, kc, col0);
        for jc in (0..n).step_by(IMPLICIT_T_NC) {
            let ncb = IMPLICIT_T_NC.min(n - jc);
            for ti in 0..tiles {
                let (v0, mr, c_row) = tile(ti);
                let a = OffsA { x: b.x.as_ptr().add(v0), offs: b.offs.as_ptr().add(pc) };
                let panels = ncb.div_ceil(NR);
                let mut p = 0;
                while p < panels {
                    let wd = if p + 1 < panels { 2 } else { 1 };
                    let j0 = jc + p * NR;
                    let nr = (wd * NR).min(n - j0);
                    p += wd;
                    let bt = PackedTile { b: wpanels[(j0 / NR) * NR * kc..(j0 / NR + wd) * NR * kc].as_ptr(), kc };
                    let t = TileOut {
                        beta: if pc == 0 { 0.0 } else { 1.0 },
                        last,
                        bias: None,
                        col_bias: epi.col_bias.map(|cb| &cb[j0..j0 + nr]),
                        act: epi.act,
                        map: None,
                    };
                    // The outputs of a spanning tile inside the grid: (tile row, row of C).
                    let valid = (0..mr).filter_map(|i| {
                        let (q, o) = ((v0 + i) / b.width, (v0 + i) % b.width);
                        (o < b.cols).then_some((i, q * b.cols + o))
                    });
                    let (cp, rs) = match c_row {
                        Some(r) => (c.add(r * rsc + j0), rsc),
                        None => {
                            if pc > 0 {
                                for (i, r) in valid.clone() {
                                    std::ptr::copy_nonoverlapping(c.add(r * rsc + j0), staged[i * 2 * NR..].as_mut_ptr(), nr);
                                }
                            }
                            (staged.as_mut_ptr(), 2 * NR)
                        }
                    };
                    match (mr.div_ceil(MR), wd, mr % MR) {
                        (3, 2, 1) => kernel_avx512::<3, 2, 1, _, _>(kc, a, bt, cp, rs, mr, nr, t),
                        (3, 2, _) => kernel_avx512::<3, 2, 2, _, _>(kc, a, bt, cp, rs, mr, nr, t),
                        (3, _, 1) => kernel_avx512::<3, 1, 1, _, _>(kc, a, bt, cp, rs, mr, nr, t),
                        (3, _, _) => kernel_avx512::<3, 1, 2, _, _>(kc, a, bt, cp, rs, mr, nr, t),
                        (h, _, _) => tile_avx512(h, wd, kc, a, bt, cp, rs, mr, nr, t),
                    }
                    if c_row.is_none() {
                        for (i, r) in valid {
                            std::ptr::copy_nonoverlapping(staged[i * 2 * NR..].as_ptr(), c.add(r * rsc + j0), nr);
                        }
                    }
                }
            }
        }
    }
}

/// One grid row of a transposed pointwise product, for the expand -> depthwise fusion:
/// `c[i·rsc + j] = act(Σ_p x[offs[p] + i] · W[p][j] + col_bias[j])` for the `pixels` outputs
/// `i` and every column `j` of `W` (packed by [`PackedB::for_implicit_t`]; lanes of the last
/// 16-column panel past them are not written). Tiles of at most [`IMPLICIT_T_ROW`] outputs by
/// 32 columns, each pixel broadcast from the image in place (exactly the `pixels` floats after
/// each `x + offs[p]` are read).
///
/// # Safety
/// [`implicit_available`]; `x + offs[p]` readable for `pixels` floats for every `p`; C holds
/// `pixels` rows of `rsc ≥ W's columns` floats; `col_bias` has one value per column.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_row_t(x: *const f32, offs: &[usize], pixels: usize, w: &PackedB, c: *mut f32, rsc: usize, col_bias: Option<&[f32]>, act: Act) {
    let (k, n) = (offs.len(), w.n);
    assert!(implicit_available(), "sgemm_row_t needs AVX-512");
    assert!(w.k == k && rsc >= n, "sgemm_row_t: packed W is {}x{}, row needs depth {k} into rows of {rsc}", w.k, w.n);
    assert!(col_bias.is_none_or(|b| b.len() >= n), "sgemm_row_t: bias shorter than {n}");
    if pixels == 0 || n == 0 || k == 0 {
        return;
    }
    let parts = pixels.div_ceil(IMPLICIT_T_ROW);
    #[cfg(target_arch = "x86_64")]
    for pc in (0..k).step_by(w.kc) {
        let kc = w.kc.min(k - pc);
        let panels = w.block(pc, kc, 0);
        for part in 0..parts {
            let (o0, o1) = (part * pixels / parts, (part + 1) * pixels / parts);
            let a = OffsA { x: x.add(o0), offs: offs.as_ptr().add(pc) };
            let mr = o1 - o0;
            for j0 in (0..n).step_by(2 * NR) {
                let nr = (2 * NR).min(n - j0);
                let bt = PackedTile { b: panels[(j0 / NR) * NR * kc..].as_ptr(), kc };
                let t = TileOut { beta: if pc == 0 { 0.0 } else { 1.0 }, last: pc + kc == k, bias: None, col_bias: col_bias.map(|b| &b[j0..]), act, map: None };
                let cp = c.add(o0 * rsc + j0);
                // Exactly `mr` rows of A are read (the image is not padded past the row).
                macro_rules! go {
                    ($w:literal) => {
                        match (mr.div_ceil(MR), mr - (mr - 1) / MR * MR) {
                            (3, 1) => kernel_avx512::<3, $w, 1, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (3, _) => kernel_avx512::<3, $w, 2, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, 1) => kernel_avx512::<2, $w, 1, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, 2) => kernel_avx512::<2, $w, 2, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, 3) => kernel_avx512::<2, $w, 3, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, 4) => kernel_avx512::<2, $w, 4, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, 5) => kernel_avx512::<2, $w, 5, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (2, _) => kernel_avx512::<2, $w, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, 1) => kernel_avx512::<1, $w, 1, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, 2) => kernel_avx512::<1, $w, 2, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, 3) => kernel_avx512::<1, $w, 3, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, 4) => kernel_avx512::<1, $w, 4, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, 5) => kernel_avx512::<1, $w, 5, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                            (_, _) => kernel_avx512::<1, $w, 6, _, _>(kc, a, bt, cp, rsc, mr, nr, t),
                        }
                    };
                }
                if nr > NR {
                    go!(2)
                } else {
                    go!(1)
                }
            }
        }
    }
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
        // (8, ..), (20, ..), (16, ..), (4, ..), (2, ..), (9, ..), (11, ..), (3, ..), (49, ..),
        // (7, ..), (13, ..): tiles whose last A panel holds 1 to 5 rows (the kernels skipping
        // the zero rows).
        let shapes = [(1, 1, 1), (5, 7, 3), (6, 16, 8), (7, 17, 300), (13, 33, 257), (100, 40, 20), (97, 2100, 9), (2, 3, 600), (8, 40, 33), (20, 70, 50), (16, 33, 10), (4, 64, 7), (2, 48, 5), (9, 40, 20), (11, 33, 17), (3, 40, 9), (49, 64, 30)];
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
    fn packed_a_with_bias_and_activation_matches_raw_then_epilogue() {
        for_each_isa(|isa| {
            // 30x900x1300: two deep blocks of 650 (for_implicit), B packed 800 columns at a time.
            for (&(m, n, k), act) in [(6, 16, 4), (13, 37, 300), (100, 5, 70), (7, 2049, 3), (24, 64, 40), (25, 70, 9), (30, 900, 1300)]
                .iter()
                .zip([Act::Clip(0.0, 6.0), Act::Swish(1.0), Act::Clip(0.0, 6.0), Act::Sigmoid, Act::Swish(1.0), Act::LeakyRelu(0.1), Act::Relu])
            {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 89) as f32 / 44.0 - 1.0).collect();
                let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
                let mut want = vec![0f32; m * n];
                unsafe { sgemm(m, n, k, 1.0, a.as_ptr(), k, 1, b.as_ptr(), n, 1, 0.0, want.as_mut_ptr(), n) };
                for i in 0..m {
                    for v in &mut want[i * n..(i + 1) * n] {
                        *v = act.apply::<crate::kernels::simd::Plain>(*v + bias[i]);
                    }
                }
                let epi = Epilogue { bias: Some(&bias), col_bias: None, act };
                let pool = crate::executor::pool::ThreadPool::new(2);
                for (packed, par) in [(PackedA::new(m, k, &a, k, 1), false), (PackedA::new(m, k, &a, k, 1), true), (PackedA::for_implicit(m, k, &a, k, 1), false)] {
                    let mut got = vec![f32::NAN; m * n];
                    unsafe {
                        if par {
                            sgemm_ex_par(&pool, m, n, k, ASrc::Packed(&packed), b.as_ptr(), n, 1, 0.0, got.as_mut_ptr(), n, epi)
                        } else {
                            sgemm_ex(m, n, k, ASrc::Packed(&packed), b.as_ptr(), n, 1, 0.0, got.as_mut_ptr(), n, epi)
                        }
                    };
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{isa:?} {m}x{n}x{k} {act:?} par={par} depth {}: {g} vs {w}", packed.kc);
                    }
                }
            }
        });
    }

    #[test]
    fn packed_b_matches_raw_on_every_path_and_column_range() {
        for_each_isa(|isa| {
            // (8, 1000, 300) and (5, 40, 2000): too few rows for two threads, split by columns
            // (the second into a whole and a partial tile).
            for &(m, n, k) in &[(1, 1, 1), (13, 37, 300), (24, 64, 40), (100, 2100, 9), (7, 50, 513), (8, 1000, 300), (5, 40, 2000), (4, 96, 70), (20, 64, 40)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 89) as f32 / 44.0 - 1.0).collect();
                let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
                let col_bias: Vec<f32> = (0..n).map(|j| (j % 7) as f32 * 0.5 - 1.5).collect();
                let epi = Epilogue { bias: Some(&bias), col_bias: Some(&col_bias), act: Act::Relu };
                let mut want = vec![0f32; m * n];
                unsafe { sgemm_ex(m, n, k, ASrc::Raw { a: a.as_ptr(), rsa: k, csa: 1, alpha: 1.0 }, b.as_ptr(), n, 1, 0.0, want.as_mut_ptr(), n, epi) };
                // Both biases, then the activation.
                for (idx, w) in want.iter().enumerate() {
                    let (i, j) = (idx / n, idx % n);
                    let dot: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                    let v = (dot + bias[i] as f64 + col_bias[j] as f64).max(0.0);
                    assert!((*w as f64 - v).abs() <= 1e-4 * (1.0 + v.abs()) * (k as f64).sqrt(), "{isa:?} {m}x{n}x{k} ({i},{j}): {w} vs {v}");
                }
                // B given transposed (column-major) to the packer, as Gemm's transB stores it.
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                for packed in [PackedB::new(k, n, &b, n, 1), PackedB::new(k, n, &bt, 1, k)] {
                    let pool = crate::executor::pool::ThreadPool::new(2);
                    let mut got = vec![f32::NAN; m * n];
                    let ar = ASrc::Raw { a: a.as_ptr(), rsa: k, csa: 1, alpha: 1.0 };
                    unsafe { sgemm_packed_b_par(&pool, m, n, k, (a.as_ptr(), k, 1, 1.0), &packed, 0.0, got.as_mut_ptr(), n, epi) };
                    // Columns from 16 on only, as a thread of a split product computes them.
                    if n > NR {
                        got[..].iter_mut().enumerate().filter(|(i, _)| i % n >= NR).for_each(|(_, v)| *v = f32::NAN);
                        // (The column biases of the product's columns.)
                        let epi = Epilogue { col_bias: Some(&col_bias[NR..]), ..epi };
                        unsafe { sgemm_packed_b(m, n - NR, k, ar, &packed, NR, 0.0, got.as_mut_ptr().add(NR), n, epi) };
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{isa:?} {m}x{n}x{k} [{i}]: {g} vs {w}");
                    }
                }
            }
        });
    }

    #[test]
    fn implicit_b_matches_the_explicit_matrix_on_every_split() {
        // Under the ISA lock: other tests force narrower ISAs meanwhile.
        for_each_isa(|isa| {
            if isa == Isa::Avx512 {
                implicit_cases();
            }
        });
    }

    fn implicit_cases() {
        // (m, channels, taps as (dy, dx) in a padded image, rows, cols, width): 1-D rows, rows
        // narrower than a vector (tiles spanning up to four grid rows), wide rows, depth past one
        // KC block, and more rows of A than one MC block; depth 1260 spans two implicit blocks.
        let cases: &[(usize, usize, &[(usize, usize)], usize, usize, usize)] = &[
            (5, 3, &[(0, 0), (0, 1), (0, 2)], 1, 40, 42),
            (13, 4, &[(0, 0), (1, 1), (2, 2)], 9, 7, 9),
            (64, 8, &[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)], 13, 13, 15),
            (100, 30, &[(0, 0), (0, 2), (2, 0), (2, 2), (1, 1), (0, 1), (1, 0), (1, 2), (2, 1)], 6, 56, 58),
            (24, 2, &[(0, 0)], 11, 6, 6),
            (20, 140, &[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)], 4, 5, 7),
            // Last A panels of 1, 3, 5 rows, alone or after a full one (1, 3, 7, 9, 11 rows).
            (1, 2, &[(0, 0), (1, 1), (2, 2)], 8, 20, 22),
            (3, 2, &[(0, 0), (1, 1), (2, 2)], 8, 20, 22),
            (7, 3, &[(0, 0), (0, 2), (2, 1)], 6, 33, 35),
            (9, 3, &[(0, 0), (0, 2), (2, 1)], 6, 33, 35),
            (11, 3, &[(0, 0), (0, 2), (2, 1)], 6, 33, 35),
            // Rows of 14 (one transposed tile of 14) and 15 (two of 7 and 8).
            (40, 5, &[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)], 3, 14, 16),
            (35, 4, &[(0, 0), (1, 2), (2, 1)], 2, 15, 17),
            // Rows of 3 and 4: transposed tiles spanning grid rows (depth 1260: two blocks).
            (20, 140, &[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)], 5, 3, 6),
            (33, 2, &[(0, 0), (1, 1)], 7, 4, 6),
        ];
        for &(m, ch, taps, rows, cols, width) in cases {
            let k = ch * taps.len();
            let plane = (rows + 2) * width;
            let offs: Vec<usize> = (0..k).map(|p| (p / taps.len()) * plane + taps[p % taps.len()].0 * width + taps[p % taps.len()].1).collect();
            let len = ImplicitB::reach(*offs.iter().max().unwrap(), width, rows, cols).max(ch * plane);
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 104729) % 89) as f32 / 44.0 - 1.0).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.1 - 2.0).collect();
            let n = rows * cols;
            // The explicit matrix and the reference product.
            let bx: Vec<f32> = (0..k * n).map(|i| x[offs[i / n] + (i % n) / cols * width + (i % n) % cols]).collect();
            let epi = Epilogue { bias: Some(&bias), col_bias: None, act: Act::Relu };
            let mut want = vec![0f32; m * n];
            let ar = ASrc::Raw { a: a.as_ptr(), rsa: k, csa: 1, alpha: 1.0 };
            unsafe { sgemm_ex(m, n, k, ar, bx.as_ptr(), n, 1, 0.0, want.as_mut_ptr(), n, epi) };
            let b = ImplicitB { x: &x, offs: &offs, width, rows, cols };
            let (packed, deep) = (PackedA::new(m, k, &a, k, 1), PackedA::for_implicit(m, k, &a, k, 1));
            // C rows are longer than the grid: the guard columns must stay untouched.
            let rsc = n + 3;
            for threads in [1, 2] {
                let pool = crate::executor::pool::ThreadPool::new(threads);
                for a_src in [ar, ASrc::Packed(&packed), ASrc::Packed(&deep)] {
                    let mut got = vec![f32::NAN; m * rsc];
                    got.iter_mut().enumerate().filter(|(i, _)| i % rsc >= n).for_each(|(_, v)| *v = 7.0);
                    unsafe { sgemm_implicit_par(&pool, m, k, a_src, &b, got.as_mut_ptr(), rsc, epi) };
                    for i in 0..m {
                        for j in 0..rsc {
                            let (g, w) = (got[i * rsc + j], if j < n { want[i * n + j] } else { 7.0 });
                            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "m{m} k{k} {rows}x{cols}/{width} t{threads} [{i}][{j}]: {g} vs {w}");
                        }
                    }
                }
            }
            // Tile and row ranges computed separately cover the product exactly, and a tile
            // writes nothing outside its own columns (the later tiles go first).
            let mut got = vec![f32::NAN; m * n];
            let (tiles, half) = (b.tiles(), (m / 2) / MR * MR);
            unsafe {
                sgemm_implicit(m, k, ar, &b, tiles / 2..tiles, 0..half, got.as_mut_ptr(), n, epi);
                sgemm_implicit(m, k, ar, &b, 0..tiles / 2, 0..half, got.as_mut_ptr(), n, epi);
                sgemm_implicit(m, k, ar, &b, 0..tiles, half..m, got.as_mut_ptr(), n, epi);
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "split m{m} {rows}x{cols} [{i}]: {g} vs {w}");
            }
            // The transposed product over the same image: pixels x channels, from column 0
            // and (past 16 channels) from column 16 of the packed weights.
            let bt = PackedB::for_implicit_t(k, m, &a, 1, k);
            for col0 in [0, 16].into_iter().filter(|&c0| c0 < m) {
                let nc = m - col0;
                let rsc = nc + 2;
                let mut got = vec![7.0f32; n * rsc];
                let epi = Epilogue { bias: None, col_bias: Some(&bias[col0..]), act: Act::Relu };
                unsafe { sgemm_implicit_t(&b, nc, &bt, col0, got.as_mut_ptr(), rsc, epi) };
                for v in 0..n {
                    for j in 0..rsc {
                        let (g, w) = (got[v * rsc + j], if j < nc { want[(col0 + j) * n + v] } else { 7.0 });
                        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "transposed m{m} k{k} {rows}x{cols}/{width} from {col0} [{v}][{j}]: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_is_read_in_place_only_when_its_rows_spread_over_l1() {
        // 12 rows 4 KB apart all land in one set, 2 KB apart six per set: packed.
        assert!(!rows_spread_in_l1(1024) && !rows_spread_in_l1(512) && !rows_spread_in_l1(3072));
        // vit_tiny's 192 and 768 columns, a Keras 1280, small depths: read in place.
        assert!(rows_spread_in_l1(192) && rows_spread_in_l1(768) && rows_spread_in_l1(1280) && rows_spread_in_l1(16));
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
