//! Matrix products: MatMul, Gemm, MatMulInteger, QLinearMatMul.

use super::float_io::{is_compute_float, narrow, widen};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::kernels::gemv::{gemv_add_par, gemv_available, PanelB, PANEL};
use crate::kernels::float::Float;
use crate::kernels::gemm::{gemm, gemm_par, GemmElem, MatRef};
use crate::kernels::sgemm::{sgemm_packed_b_par, Epilogue, PackedB};
use crate::ops::common::{broadcast_shapes, broadcast_strides, for_each_broadcast};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Element, Tensor};

pub fn register(r: &mut Registry) {
    r.add("MatMul", build_matmul);
    // MatMul + Add of a bias per column, made by the optimizer (see crate::optimizer::fuse).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "FusedMatMul", build_fused_matmul);
    r.add("Gemm", build_gemm);
    r.add("MatMulInteger", build_matmul_integer);
    r.add("QLinearMatMul", build_qlinear_matmul);
}

/// Integer element types multiplied with wrapping arithmetic.
pub trait WrapInt: Element {
    fn wmul_add(acc: Self, a: Self, b: Self) -> Self;
}
macro_rules! wrap_int {
    ($($t:ty),*) => {$(
        impl WrapInt for $t {
            #[inline(always)]
            fn wmul_add(acc: Self, a: Self, b: Self) -> Self {
                acc.wrapping_add(a.wrapping_mul(b))
            }
        }
    )*};
}
wrap_int!(i8, i16, i32, i64, u8, u16, u32, u64);

/// `c[m×n] += a[m×k] · b[k×n]` for row-major integer matrices (i-k-j order, vectorizable).
pub fn int_gemm_acc<T: WrapInt>(m: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T]) {
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let av = a[i * k + p];
            let brow = &b[p * n..(p + 1) * n];
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv = T::wmul_add(*cv, av, *bv);
            }
        }
    }
}

/// The geometry of a numpy-style matmul with batch broadcasting.
#[derive(Debug)]
pub struct MatMulShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub out_shape: Vec<usize>,
    /// Element offsets of each batch's A and B matrices.
    pub offsets: Vec<(usize, usize)>,
    /// B has a single matrix and A's batches are contiguous: the batches fold into M.
    pub fold: bool,
}

impl MatMulShape {
    pub fn new(a: &[usize], b: &[usize], op: &str) -> Result<MatMulShape> {
        if a.is_empty() || b.is_empty() {
            return Err(Error::ShapeMismatch(format!(
                "{op}: inputs must have rank >= 1, got shapes {a:?} and {b:?}"
            )));
        }
        let a2: Vec<usize> = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b2: Vec<usize> = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
        if k != k2 {
            return Err(Error::ShapeMismatch(format!(
                "{op}: inner dimensions differ: A has shape {a:?} ({k} columns), B has shape {b:?} ({k2} rows)"
            )));
        }
        let ba = &a2[..a2.len() - 2];
        let bb = &b2[..b2.len() - 2];
        let batch =
            broadcast_shapes(ba, bb).map_err(|e| e.context(format!("{op}: batch dimensions")))?;
        let mut out_shape = batch.clone();
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        let nb: usize = batch.iter().product();
        let b_single = bb.iter().product::<usize>() == 1;
        let mut offsets = Vec::with_capacity(nb);
        if nb > 0 {
            let sa: Vec<usize> = broadcast_strides(ba, &batch)
                .iter()
                .map(|s| s * m * k)
                .collect();
            let sb: Vec<usize> = broadcast_strides(bb, &batch)
                .iter()
                .map(|s| s * k * n)
                .collect();
            for_each_broadcast(&batch, [&sa, &sb], |_, [ia, ib]| offsets.push((ia, ib)));
        }
        let fold = b_single && ba.iter().product::<usize>() == nb;
        Ok(MatMulShape {
            m,
            k,
            n,
            out_shape,
            offsets,
            fold,
        })
    }
}

/// Float batched matmul `out = a · b` (row-major, batch offsets from `sh`).
fn float_matmul<T: GemmElem>(
    pool: &ThreadPool,
    sh: &MatMulShape,
    a: &[T],
    b: &[T],
    out: &mut [T],
) -> Result<()> {
    let (m, k, n) = (sh.m, sh.k, sh.n);
    if sh.fold {
        let rows = m * sh.offsets.len();
        return gemm_par(
            pool,
            rows,
            n,
            k,
            T::ONE,
            MatRef::row_major(a, k),
            MatRef::row_major(b, n),
            T::ZERO,
            out,
            n,
            1,
        );
    }
    let nb = sh.offsets.len();
    let per = m * n * k.max(1);
    let threads = pool.threads();
    // Several products of moderate size (attention heads): one parallel loop over (product,
    // band of rows) tasks, as many per thread, instead of each product split across the
    // threads in turn (one synchronization per product, and uneven column splits: vit_tiny's
    // three 197x64x197 heads took 0.85 of their one-thread time on two threads).
    if nb > 1 && threads > 1 && nb * per >= (1 << 16) && per < (1 << 24) {
        // Bands per product: the fewest that give every thread the same number of tasks.
        let mut parts = 1;
        while (nb * parts) % threads != 0 && parts < m.div_ceil(8) {
            parts += 1;
        }
        let band = m.div_ceil(parts).div_ceil(8) * 8;
        let parts = m.div_ceil(band);
        let op = out.as_mut_ptr() as usize;
        let out_len = out.len();
        let failed = std::sync::Mutex::new(None);
        pool.parallel_for(nb * parts, 1, |s, e| {
            for t in s..e {
                let (bi, r0) = (t / parts, (t % parts) * band);
                let rows = band.min(m - r0);
                let (ia, ib) = sh.offsets[bi];
                // SAFETY: task t writes only rows r0..r0 + rows of batch bi's m*n block of
                // `out`, which has nb*m*n elements.
                let c = unsafe { std::slice::from_raw_parts_mut((op as *mut T).add(bi * m * n + r0 * n), rows * n) };
                debug_assert!(bi * m * n + (r0 + rows) * n <= out_len);
                if let Err(e) = gemm(
                    rows,
                    n,
                    k,
                    T::ONE,
                    MatRef::row_major(&a[ia + r0 * k..], k),
                    MatRef::row_major(&b[ib..], n),
                    T::ZERO,
                    c,
                    n,
                    1,
                ) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        return Ok(());
    }
    for (bi, &(ia, ib)) in sh.offsets.iter().enumerate() {
        let c = &mut out[bi * m * n..(bi + 1) * m * n];
        gemm_par(
            pool,
            m,
            n,
            k,
            T::ONE,
            MatRef::row_major(&a[ia..], k),
            MatRef::row_major(&b[ib..], n),
            T::ZERO,
            c,
            n,
            1,
        )?;
    }
    Ok(())
}

/// `a · b` for float tensors (any float type, computed as MatMul computes it: f16/bf16 in
/// f32) with numpy matmul shapes, e.g. `[B, M, K] · [B, K, N]`: Einsum's contractions.
pub(crate) fn float_matmul_tensors(pool: &ThreadPool, a: &Tensor, b: &Tensor, what: &str) -> Result<Tensor> {
    let sh = MatMulShape::new(a.shape(), b.shape(), what)?;
    float_product(pool, &sh, a, b, what)
}

/// The float product of MatMul (shape `sh`): both operands widened to their compute type (`b`
/// may already be, a constant widened at build time), the result in `a`'s type.
fn float_product(pool: &ThreadPool, sh: &MatMulShape, a: &Tensor, b: &Tensor, what: &str) -> Result<Tensor> {
    let dt = a.dtype();
    let (aw, bw) = (widen(a)?, widen(b)?);
    if !is_compute_float(dt) || aw.dtype() != bw.dtype() {
        return Err(Error::UnsupportedDtype(format!("{what}: float products only, got {dt} and {}", b.dtype())));
    }
    let out = crate::with_float!(aw.dtype(), what, T => {
        let (av, bv) = (aw.as_slice::<T>()?, bw.as_slice::<T>()?);
        // Every element is written (beta 0: the GEMMs never read C), so the output is not
        // zeroed first (465 KB per vit_tiny attention product).
        Tensor::build_uninit::<T>(aw.dtype(), &sh.out_shape, |o| float_matmul(pool, sh, av, bv, o))
    })?;
    narrow(out, dt)
}

fn int_matmul<T: WrapInt>(sh: &MatMulShape, a: &[T], b: &[T], out: &mut [T]) {
    let (m, k, n) = (sh.m, sh.k, sh.n);
    for (bi, &(ia, ib)) in sh.offsets.iter().enumerate() {
        int_gemm_acc(
            m,
            n,
            k,
            &a[ia..ia + m * k],
            &b[ib..ib + k * n],
            &mut out[bi * m * n..(bi + 1) * m * n],
        );
    }
}

/// Products with at least this many rows use a constant f32 B packed once for the GEMM
/// kernels (the vector-matrix paths read B once per row of A: 4 x 1280 x 1000 took 406 us in
/// place, twice onnxruntime's time); a single row uses B packed in column panels for the
/// matrix-vector kernel ([`gemv_add_par`]: one sequential stream per panel, which the
/// prefetchers follow when B comes from memory: 1 x 1024 x 1000 from cold caches 277-299 ->
/// 167-222 us, onnxruntime 239-283).
const PACKED_B_MIN_ROWS: usize = 2;

/// A constant 2-D f32 B, packed on the first run that uses each form (so a model only ever
/// run at batch 1, or only batched, holds one packed copy besides the initializer).
#[derive(Default)]
struct LazyPackedB {
    constant: bool,
    packed: std::sync::OnceLock<PackedB>,
    panel: std::sync::OnceLock<PanelB>,
}

impl LazyPackedB {
    fn new(ctx: &BuildContext) -> LazyPackedB {
        let constant = ctx.const_inputs.get(1).copied().flatten().is_some_and(|b| b.dtype() == DType::Float32 && b.rank() == 2);
        LazyPackedB { constant, packed: Default::default(), panel: Default::default() }
    }

    /// `B'` as `(k, n, data, rsb, csb)` (element (p, j) at `data[p·rsb + j·csb]`; `b` stored
    /// transposed when `trans`), if B is the constant 2-D f32 tensor.
    fn operand<'t>(&self, b: &'t Tensor, trans: bool) -> Result<Option<(usize, usize, &'t [f32], usize, usize)>> {
        if !self.constant || b.dtype() != DType::Float32 || b.rank() != 2 {
            return Ok(None);
        }
        let (r, c) = (b.shape()[0], b.shape()[1]);
        let data = b.as_slice::<f32>()?;
        Ok(Some(if trans { (c, r, data, 1, c) } else { (r, c, data, c, 1) }))
    }

    /// The packed `B'` (k×n), if B is the constant and the product has `rows` rows.
    fn get(&self, b: &Tensor, trans: bool, rows: usize) -> Result<Option<&PackedB>> {
        match self.operand(b, trans)? {
            Some((k, n, data, rsb, csb)) if rows >= PACKED_B_MIN_ROWS => Ok(Some(self.packed.get_or_init(|| PackedB::new(k, n, data, rsb, csb)))),
            _ => Ok(None),
        }
    }

    /// The panels of `B'` for [`gemv_add_par`], if B is the constant, the product has fewer
    /// rows than [`PACKED_B_MIN_ROWS`], at least one panel of columns (narrower products,
    /// such as a 10-class head, would mostly multiply the panel's zero padding: they read B in
    /// place) and the CPU has the kernel.
    fn panel(&self, b: &Tensor, trans: bool, rows: usize) -> Result<Option<&PanelB>> {
        match self.operand(b, trans)? {
            Some((k, n, data, rsb, csb)) if rows > 0 && rows < PACKED_B_MIN_ROWS && n >= PANEL && gemv_available() => {
                Ok(Some(self.panel.get_or_init(|| PanelB::new(k, n, data, rsb, csb))))
            }
            _ => Ok(None),
        }
    }
}

/// The panels exist only where the kernel runs; its ISA level cannot drop afterwards outside
/// tests that force levels, but a product left undone must not pass as a result.
fn gemv_done(done: bool) -> Result<()> {
    if done {
        Ok(())
    } else {
        Err(Error::Internal("matrix-vector kernel unavailable after its weights were packed".into()))
    }
}

/// The row `a[..k]`, times `alpha` when that is not 1.
fn scaled_row(a: &[f32], k: usize, alpha: f32) -> std::borrow::Cow<'_, [f32]> {
    if alpha == 1.0 {
        std::borrow::Cow::Borrowed(&a[..k])
    } else {
        std::borrow::Cow::Owned(a[..k].iter().map(|v| v * alpha).collect())
    }
}

/// `MatMul` (opsets 1, 9, 13): numpy matmul with batch broadcasting; 1-D operands promoted.
/// `FusedMatMul` (private domain): the same with a third input, a bias of one value per
/// column of the product added to every row.
struct MatMul {
    /// A constant B already widened to compute precision.
    b_const: Option<Tensor>,
    b_packed: LazyPackedB,
    /// Whether input 2 is a bias per column (`FusedMatMul`).
    bias: bool,
}

fn build_matmul(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let b_const = match ctx.const_inputs.get(1).copied().flatten() {
        Some(b) if matches!(b.dtype(), DType::Float16 | DType::BFloat16) => {
            Some(widen(b)?.into_owned())
        }
        _ => None,
    };
    Ok(Box::new(MatMul { b_const, b_packed: LazyPackedB::new(ctx), bias: false }))
}

fn build_fused_matmul(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let b_packed = LazyPackedB::new(ctx);
    Ok(Box::new(MatMul { b_const: None, b_packed, bias: true }))
}

impl Op for MatMul {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let a = tensor_in(inputs, 0, "MatMul")?;
        let b = tensor_in(inputs, 1, "MatMul")?;
        if a.dtype() != b.dtype() {
            return Err(Error::InvalidArgument(format!(
                "MatMul: A is {} but B is {}",
                a.dtype(),
                b.dtype()
            )));
        }
        let sh = MatMulShape::new(a.shape(), b.shape(), "MatMul")?;
        let dt = a.dtype();
        let rows = sh.m * sh.offsets.len();
        let bias = match self.bias {
            false => None,
            true => {
                let t = tensor_in(inputs, 2, "FusedMatMul")?;
                if t.dtype() != DType::Float32 || dt != DType::Float32 || t.shape() != [sh.n] {
                    return Err(Error::InvalidArgument(format!(
                        "FusedMatMul: bias of shape {:?} ({}) for a {} product of {} columns",
                        t.shape(),
                        t.dtype(),
                        dt,
                        sh.n
                    )));
                }
                Some(t.as_slice::<f32>()?)
            }
        };
        if let (true, Some(pb)) = (sh.fold && dt == DType::Float32 && b.rank() == 2, self.b_packed.panel(b, false, rows)?) {
            let av = a.as_slice::<f32>()?;
            let (k, n) = (sh.k, sh.n);
            let out = Tensor::build::<f32>(dt, &sh.out_shape, |o| {
                if let Some(bias) = bias {
                    o.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
                }
                gemv_done(gemv_add_par(ctx.pool, rows, n, av, k, pb, o, n))
            })?;
            return Ok(vec![out.into()]);
        }
        if let (true, Some(pb)) = (sh.fold && dt == DType::Float32 && b.rank() == 2, self.b_packed.get(b, false, rows)?) {
            let av = a.as_slice::<f32>()?;
            let (k, n) = (sh.k, sh.n);
            let epi = Epilogue { col_bias: bias, ..Epilogue::NONE };
            let out = Tensor::build_uninit::<f32>(dt, &sh.out_shape, |o| {
                debug_assert!(av.len() >= rows * k && o.len() >= rows * n);
                // SAFETY: A is rows×k and C rows×n row-major (checked by the shape), B packed k×n,
                // the bias has n values (checked above).
                unsafe { sgemm_packed_b_par(ctx.pool, rows, n, k, (av.as_ptr(), k, 1, 1.0), pb, 0.0, o.as_mut_ptr(), n, epi) };
                Ok(())
            })?;
            return Ok(vec![out.into()]);
        }
        if is_compute_float(dt) {
            let b = self.b_const.as_ref().unwrap_or(b);
            let mut out = float_product(ctx.pool, &sh, a, b, "MatMul")?;
            if let Some(bias) = bias {
                for row in out.make_mut_slice::<f32>()?.chunks_exact_mut(sh.n) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            return Ok(vec![out.into()]);
        }
        macro_rules! int_case {
            ($t:ty) => {{
                let (av, bv) = (a.as_slice::<$t>()?, b.as_slice::<$t>()?);
                Tensor::build::<$t>(dt, &sh.out_shape, |o| {
                    int_matmul(&sh, av, bv, o);
                    Ok(())
                })?
            }};
        }
        let out = match dt {
            DType::Int32 => int_case!(i32),
            DType::Int64 => int_case!(i64),
            DType::Uint32 => int_case!(u32),
            DType::Uint64 => int_case!(u64),
            DType::Int8 => int_case!(i8),
            DType::Uint8 => int_case!(u8),
            DType::Int16 => int_case!(i16),
            DType::Uint16 => int_case!(u16),
            d => {
                return Err(Error::UnsupportedDtype(format!(
                    "MatMul: element type {d} is not supported"
                )))
            }
        };
        Ok(vec![out.into()])
    }
}

/// `Gemm`: `Y = alpha · A' · B' + beta · C`, A' and B' optionally transposed, C broadcast to (M, N).
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    b_const: Option<Tensor>,
    b_packed: LazyPackedB,
}

fn build_gemm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let b_const = match ctx.const_inputs.get(1).copied().flatten() {
        Some(b) if matches!(b.dtype(), DType::Float16 | DType::BFloat16) => {
            Some(widen(b)?.into_owned())
        }
        _ => None,
    };
    Ok(Box::new(Gemm {
        alpha: ctx.attr_f("alpha", 1.0)?,
        beta: ctx.attr_f("beta", 1.0)?,
        trans_a: ctx.attr_i("transA", 0)? != 0,
        trans_b: ctx.attr_i("transB", 0)? != 0,
        b_const,
        b_packed: LazyPackedB::new(ctx),
    }))
}

/// Fill `out` (m×n) with `beta · C` broadcast from `c_shape` (unidirectional broadcast).
fn fill_bias<T: Copy + std::ops::Mul<Output = T>>(
    out: &mut [T],
    m: usize,
    n: usize,
    c: &[T],
    c_shape: &[usize],
    beta: T,
) -> Result<()> {
    let target = [m, n];
    if c_shape.len() > 2 || broadcast_shapes(c_shape, &target).ok().as_deref() != Some(&target[..])
    {
        return Err(Error::ShapeMismatch(format!(
            "Gemm: C of shape {c_shape:?} cannot be broadcast to ({m}, {n})"
        )));
    }
    let out = &mut out[..m * n];
    if c.len() == n && n > 0 && c_shape.last() == Some(&n) {
        // One row for every row (a bias per column, the usual C).
        for row in out.chunks_exact_mut(n) {
            row.iter_mut().zip(c).for_each(|(o, &v)| *o = beta * v);
        }
        return Ok(());
    }
    let st = broadcast_strides(c_shape, &target);
    for_each_broadcast(&target, [&st], |i, [ic]| out[i] = beta * c[ic]);
    Ok(())
}

impl Op for Gemm {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let a = tensor_in(inputs, 0, "Gemm")?;
        let b = tensor_in(inputs, 1, "Gemm")?;
        let c = opt_tensor_in(inputs, 2, "Gemm")?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(Error::ShapeMismatch(format!(
                "Gemm: A and B must be 2-D, got {:?} and {:?}",
                a.shape(),
                b.shape()
            )));
        }
        let (m, k) = if self.trans_a {
            (a.shape()[1], a.shape()[0])
        } else {
            (a.shape()[0], a.shape()[1])
        };
        let (k2, n) = if self.trans_b {
            (b.shape()[1], b.shape()[0])
        } else {
            (b.shape()[0], b.shape()[1])
        };
        if k != k2 {
            return Err(Error::ShapeMismatch(format!(
                "Gemm: inner dimensions differ: A' is {m}x{k}, B' is {k2}x{n} (A {:?}, B {:?}, transA {}, transB {})",
                a.shape(),
                b.shape(),
                self.trans_a as i32,
                self.trans_b as i32
            )));
        }
        let dt = a.dtype();
        if b.dtype() != dt || c.is_some_and(|c| c.dtype() != dt) {
            return Err(Error::InvalidArgument(format!(
                "Gemm: A, B and C must have the same element type (A is {dt})"
            )));
        }
        let a_mat = |len_k: usize, len_m: usize| {
            if self.trans_a {
                (1usize, len_m)
            } else {
                (len_k, 1usize)
            }
        };
        let (rsa, csa) = a_mat(k, m);
        let (rsb, csb) = if self.trans_b { (1, k) } else { (n, 1) };
        if let (DType::Float32, 1, Some(pb)) = (dt, m, self.b_packed.panel(b, self.trans_b, m)?) {
            // One row: A' is contiguous whether transposed or not.
            let av = scaled_row(a.as_slice::<f32>()?, k, self.alpha);
            let out = Tensor::build::<f32>(dt, &[m, n], |o| {
                if let Some(c) = c {
                    if self.beta != 0.0 {
                        fill_bias(o, m, n, c.as_slice::<f32>()?, c.shape(), self.beta)?;
                    }
                }
                gemv_done(gemv_add_par(ctx.pool, m, n, &av, k, pb, o, n))
            })?;
            return Ok(vec![out.into()]);
        }
        if let (true, Some(pb)) = (dt == DType::Float32, self.b_packed.get(b, self.trans_b, m)?) {
            let av = a.as_slice::<f32>()?;
            let out = Tensor::build_uninit::<f32>(dt, &[m, n], |o| {
                let mut beta = 0.0;
                if let Some(c) = c {
                    if self.beta != 0.0 {
                        fill_bias(o, m, n, c.as_slice::<f32>()?, c.shape(), self.beta)?;
                        beta = 1.0;
                    }
                }
                debug_assert!(av.len() >= m * k && o.len() >= m * n);
                // SAFETY: A' is m×k through (rsa, csa) inside A (its shape was checked), C m×n.
                let a = (av.as_ptr(), rsa, csa, self.alpha);
                unsafe { sgemm_packed_b_par(ctx.pool, m, n, k, a, pb, beta, o.as_mut_ptr(), n, Epilogue::NONE) };
                Ok(())
            })?;
            return Ok(vec![out.into()]);
        }
        if is_compute_float(dt) {
            let aw = widen(a)?;
            let bw = match &self.b_const {
                Some(t) => std::borrow::Cow::Borrowed(t),
                None => widen(b)?,
            };
            let cw = c.map(widen).transpose()?;
            let out = crate::with_float!(aw.dtype(), "Gemm", T => {
                let (av, bv) = (aw.as_slice::<T>()?, bw.as_slice::<T>()?);
                Tensor::build::<T>(aw.dtype(), &[m, n], |o| {
                    let mut beta = T::ZERO;
                    if let Some(cw) = &cw {
                        if self.beta != 0.0 {
                            fill_bias(o, m, n, cw.as_slice::<T>()?, cw.shape(), T::from_f32(self.beta))?;
                            beta = T::ONE;
                        }
                    }
                    let am = MatRef { data: av, rs: rsa, cs: csa };
                    let bm = MatRef { data: bv, rs: rsb, cs: csb };
                    gemm_par(ctx.pool, m, n, k, T::from_f32(self.alpha), am, bm, beta, o, n, 1)
                })
            })?;
            return Ok(vec![narrow(out, dt)?.into()]);
        }
        macro_rules! int_case {
            ($t:ty) => {{
                let (av, bv) = (a.as_slice::<$t>()?, b.as_slice::<$t>()?);
                let alpha = self.alpha as $t;
                Tensor::build::<$t>(dt, &[m, n], |o| {
                    if let Some(c) = c {
                        if self.beta != 0.0 {
                            fill_bias(o, m, n, c.as_slice::<$t>()?, c.shape(), self.beta as $t)?;
                        }
                    }
                    for i in 0..m {
                        for j in 0..n {
                            let mut acc: $t = 0;
                            for p in 0..k {
                                acc = <$t>::wmul_add(
                                    acc,
                                    av[i * rsa + p * csa],
                                    bv[p * rsb + j * csb],
                                );
                            }
                            o[i * n + j] = o[i * n + j].wrapping_add(alpha.wrapping_mul(acc));
                        }
                    }
                    Ok(())
                })?
            }};
        }
        let out = match dt {
            DType::Int32 => int_case!(i32),
            DType::Int64 => int_case!(i64),
            DType::Uint32 => int_case!(u32),
            DType::Uint64 => int_case!(u64),
            d => {
                return Err(Error::UnsupportedDtype(format!(
                    "Gemm: element type {d} is not supported"
                )))
            }
        };
        Ok(vec![out.into()])
    }
}

/// An 8-bit (or other integer) tensor as i32 values minus a zero point broadcast numpy-style.
fn centered_i32(x: &Tensor, zp: Option<&Tensor>, what: &str) -> Result<Vec<i32>> {
    let xv: Vec<i32> = x.to_i64_vec()?.into_iter().map(|v| v as i32).collect();
    let Some(zp) = zp else { return Ok(xv) };
    let zv: Vec<i32> = zp.to_i64_vec()?.into_iter().map(|v| v as i32).collect();
    if zv.len() == 1 {
        return Ok(xv.into_iter().map(|v| v - zv[0]).collect());
    }
    // A 1-D zero point of an N-D input applies per row (A) or per column (B): align it to the
    // first of the two matrix axes when it matches that dimension, as onnxruntime does for A.
    let shape = x.shape();
    let zshape: Vec<usize> = if zp.rank() == 1
        && shape.len() >= 2
        && what == "a"
        && zp.shape()[0] == shape[shape.len() - 2]
    {
        vec![zp.shape()[0], 1]
    } else {
        zp.shape().to_vec()
    };
    let out =
        broadcast_shapes(&zshape, shape).map_err(|e| e.context(format!("zero point of {what}")))?;
    if out != shape {
        return Err(Error::ShapeMismatch(format!(
            "zero point of {what} has shape {:?}, incompatible with {shape:?}",
            zp.shape()
        )));
    }
    let st = broadcast_strides(&zshape, shape);
    let mut r = xv;
    for_each_broadcast(shape, [&st], |i, [iz]| r[i] -= zv[iz]);
    Ok(r)
}

fn int32_matmul(
    a: &Tensor,
    av: &[i32],
    b: &Tensor,
    bv: &[i32],
    op: &str,
) -> Result<(MatMulShape, Vec<i32>)> {
    let sh = MatMulShape::new(a.shape(), b.shape(), op)?;
    let total: usize = sh.out_shape.iter().product();
    let mut out = vec![0i32; total];
    int_matmul(&sh, av, bv, &mut out);
    Ok((sh, out))
}

/// `MatMulInteger` (opset 10): int8/uint8 inputs with optional zero points, int32 output.
struct MatMulInteger;

fn build_matmul_integer(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(MatMulInteger))
}

impl Op for MatMulInteger {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let a = tensor_in(inputs, 0, "MatMulInteger")?;
        let b = tensor_in(inputs, 1, "MatMulInteger")?;
        let azp = opt_tensor_in(inputs, 2, "MatMulInteger")?;
        let bzp = opt_tensor_in(inputs, 3, "MatMulInteger")?;
        let av = centered_i32(a, azp, "a")?;
        let bv = centered_i32(b, bzp, "b")?;
        let (sh, out) = int32_matmul(a, &av, b, &bv, "MatMulInteger")?;
        Ok(vec![Tensor::from_vec(&sh.out_shape, out)?.into()])
    }
}

/// `QLinearMatMul` (opsets 10, 21): quantized matmul with requantization of the output.
struct QLinearMatMul;

fn build_qlinear_matmul(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(QLinearMatMul))
}

/// A scale tensor's values in f64, and whether it is float16 (computed with f16 rounding).
fn scale_values(t: &Tensor) -> Result<Vec<f64>> {
    t.to_f64_vec()
}

impl Op for QLinearMatMul {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "QLinearMatMul";
        let a = tensor_in(inputs, 0, OP)?;
        let a_scale = tensor_in(inputs, 1, OP)?;
        let a_zp = opt_tensor_in(inputs, 2, OP)?;
        let b = tensor_in(inputs, 3, OP)?;
        let b_scale = tensor_in(inputs, 4, OP)?;
        let b_zp = opt_tensor_in(inputs, 5, OP)?;
        let y_scale = tensor_in(inputs, 6, OP)?;
        let y_zp = opt_tensor_in(inputs, 7, OP)?;
        let av = centered_i32(a, a_zp, "a")?;
        let bv = centered_i32(b, b_zp, "b")?;
        let (sh, acc) = int32_matmul(a, &av, b, &bv, OP)?;
        let (sa, sb, sy) = (
            scale_values(a_scale)?,
            scale_values(b_scale)?,
            scale_values(y_scale)?,
        );
        if sa.len() != 1 || sb.len() != 1 || sy.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: only per-tensor (scalar) scales are supported"
            )));
        }
        let half = a_scale.dtype() == DType::Float16;
        let factor = if half {
            let p = half::f16::from_f64(sa[0] * sb[0]).to_f64();
            half::f16::from_f64(p / sy[0]).to_f64()
        } else {
            let p = (sa[0] as f32) * (sb[0] as f32);
            (p / sy[0] as f32) as f64
        };
        let out_dt = y_zp.map(|z| z.dtype()).unwrap_or(a.dtype());
        let yz = match y_zp {
            Some(z) => *z
                .to_f64_vec()?
                .first()
                .ok_or_else(|| Error::InvalidArgument(format!("{OP}: y_zero_point is empty")))?,
            None => 0.0,
        };
        let (lo, hi) = match out_dt {
            DType::Uint8 => (0.0, 255.0),
            DType::Int8 => (-128.0, 127.0),
            d => {
                return Err(Error::UnsupportedDtype(format!(
                    "{OP}: output type {d} is not supported"
                )))
            }
        };
        let q: Vec<f64> = acc
            .iter()
            .map(|&c| ((c as f64) * factor + yz).round_ties_even().clamp(lo, hi))
            .collect();
        let out = if out_dt == DType::Uint8 {
            Tensor::from_vec(
                &sh.out_shape,
                q.iter().map(|v| *v as u8).collect::<Vec<u8>>(),
            )?
        } else {
            Tensor::from_vec(
                &sh.out_shape,
                q.iter().map(|v| *v as i8).collect::<Vec<i8>>(),
            )?
        };
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn matmul_shapes_and_values() {
        // [2,2,3] x [3,2]: folded batch.
        let a = tf(
            &[2, 2, 3],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        let b = tf(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let y = &run_op("MatMul", 13, vec![], vec![Some(a.clone()), Some(b)], 1).unwrap()[0];
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[4., 5., 10., 11., 16., 17., 22., 23.]
        );
        // 1-D x 1-D -> scalar.
        let v = tf(&[3], &[1., 2., 3.]);
        let y = &run_op(
            "MatMul",
            13,
            vec![],
            vec![Some(v.clone()), Some(v.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[14.]);
        // [2,2,3] x [3] -> [2,2].
        let y = &run_op(
            "MatMul",
            13,
            vec![],
            vec![Some(a.clone()), Some(v.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[14., 32., 50., 68.]);
        // [3] x [2,3,1] -> [2,1]
        let b3 = tf(&[2, 3, 1], &[1., 1., 1., 0., 1., 0.]);
        let y = &run_op("MatMul", 13, vec![], vec![Some(v), Some(b3)], 1).unwrap()[0];
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[6., 2.]);
        // Broadcast batch: [2,1,1,3] x [3,3,1] -> [2,3,1,1]
        let a4 = tf(&[2, 1, 1, 3], &[1., 2., 3., 4., 5., 6.]);
        let b4 = tf(&[3, 3, 1], &[1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        let y = &run_op("MatMul", 13, vec![], vec![Some(a4), Some(b4)], 1).unwrap()[0];
        assert_eq!(y.shape(), &[2, 3, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 2., 3., 4., 5., 6.]);
        // Mismatch.
        let e = run_op(
            "MatMul",
            13,
            vec![],
            vec![Some(tf(&[2, 3], &[0.; 6])), Some(tf(&[2, 3], &[0.; 6]))],
            1,
        );
        assert!(matches!(e, Err(crate::Error::ShapeMismatch(_))));
        // Empty.
        let y = &run_op(
            "MatMul",
            13,
            vec![],
            vec![Some(tf(&[0, 3], &[])), Some(tf(&[3, 2], &[0.; 6]))],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[0, 2]);
        let y = &run_op(
            "MatMul",
            13,
            vec![],
            vec![Some(tf(&[2, 0], &[])), Some(tf(&[0, 2], &[]))],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.; 4]);
    }

    #[test]
    fn matmul_int_and_half() {
        let a = Tensor::from_slice(&[2, 2], &[1i64, 2, 3, 4]).unwrap();
        let y = &run_op("MatMul", 13, vec![], vec![Some(a.clone()), Some(a)], 1).unwrap()[0];
        assert_eq!(y.as_slice::<i64>().unwrap(), &[7, 10, 15, 22]);
        let h: Vec<half::f16> = [1f32, 2., 3., 4.]
            .iter()
            .map(|v| half::f16::from_f32(*v))
            .collect();
        let a = Tensor::from_slice(&[2, 2], &h).unwrap();
        let y = &run_op_with(
            "MatMul",
            13,
            vec![],
            vec![Some(a.clone()), Some(a)],
            &[1],
            1,
            2,
        )
        .unwrap()[0];
        let got: Vec<f32> = y
            .as_slice::<half::f16>()
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect();
        assert_eq!(got, vec![7., 10., 15., 22.]);
    }

    #[test]
    fn gemm_attributes() {
        // A^T: A stored 3x2; B^T: B stored 2x3; C row vector.
        let a = tf(&[3, 2], &[1., 4., 2., 5., 3., 6.]);
        let b = tf(&[2, 3], &[1., 0., 1., 0., 1., 1.]);
        let c = tf(&[2], &[10., 20.]);
        let attrs = vec![
            ("transA", AttrValue::Int(1)),
            ("transB", AttrValue::Int(1)),
            ("alpha", AttrValue::Float(2.0)),
            ("beta", AttrValue::Float(0.5)),
        ];
        let y = &run_op("Gemm", 13, attrs, vec![Some(a), Some(b), Some(c)], 1).unwrap()[0];
        // A' = [[1,2,3],[4,5,6]], B' = [[1,0],[0,1],[1,1]] -> [[4,5],[10,11]]
        assert_eq!(y.as_slice::<f32>().unwrap(), &[13., 20., 25., 32.]);
        // Scalar C, no transposes, f64.
        let a = Tensor::from_slice(&[1, 2], &[1f64, 2.]).unwrap();
        let b = Tensor::from_slice(&[2, 1], &[3f64, 4.]).unwrap();
        let c = Tensor::from_slice(&[], &[1f64]).unwrap();
        let y = &run_op(
            "Gemm",
            13,
            vec![],
            vec![Some(a.clone()), Some(b.clone()), Some(c)],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f64>().unwrap(), &[12.]);
        let bad = Tensor::from_slice(&[3], &[1f64, 2., 3.]).unwrap();
        assert!(run_op("Gemm", 13, vec![], vec![Some(a), Some(b), Some(bad)], 1).is_err());
    }

    #[test]
    fn integer_matmuls() {
        let a = Tensor::from_slice(&[2, 2], &[11u8, 7, 3, 9]).unwrap();
        let b = Tensor::from_slice(&[2, 2], &[1u8, 4, 2, 3]).unwrap();
        let az = Tensor::from_slice(&[], &[1u8]).unwrap();
        let y = &run_op(
            "MatMulInteger",
            10,
            vec![],
            vec![Some(a.clone()), Some(b.clone()), Some(az), None],
            1,
        )
        .unwrap()[0];
        // [[10,6],[2,8]] x [[1,4],[2,3]]
        assert_eq!(y.as_slice::<i32>().unwrap(), &[22, 58, 18, 32]);
        let s = tf(&[], &[0.5]);
        let zp = Tensor::from_slice(&[], &[0u8]).unwrap();
        let ys = tf(&[], &[2.0]);
        let yz = Tensor::from_slice(&[], &[100u8]).unwrap();
        let y = &run_op(
            "QLinearMatMul",
            10,
            vec![],
            vec![
                Some(a),
                Some(s.clone()),
                Some(zp.clone()),
                Some(b),
                Some(s),
                Some(zp),
                Some(ys),
                Some(yz),
            ],
            1,
        )
        .unwrap()[0];
        // acc = [[25,65],[21,39]] * 0.125 + 100 -> [103.125, 108.125, 102.625, 104.875]
        assert_eq!(y.as_slice::<u8>().unwrap(), &[103, 108, 103, 105]);
    }

    /// Batched products split into (product, band of rows) tasks: every thread count, a batch
    /// count that does not divide among the threads, broadcast batches, and row bands that end
    /// inside the last product's rows; against a plain triple loop.
    #[test]
    fn batched_products_split_into_row_bands() {
        for (sa, sb) in [(vec![3usize, 197, 40], vec![3usize, 40, 61]), (vec![2, 1, 37, 64], vec![3, 64, 70]), (vec![5, 9, 130], vec![5, 130, 33])] {
            let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
            let na: usize = sa.iter().product();
            let nbb: usize = sb.iter().product();
            let av: Vec<f32> = (0..na).map(|i| ((i * 31 % 97) as f32 - 48.0) / 16.0).collect();
            let bv: Vec<f32> = (0..nbb).map(|i| ((i * 17 % 89) as f32 - 44.0) / 16.0).collect();
            // Output batch -> (A matrix, B matrix): [2,1] x [3] broadcasts to [2,3].
            let pairs: Vec<(usize, usize)> = if sa.len() == 4 { (0..6).map(|i| (i / 3, i % 3)).collect() } else { (0..sa[0]).map(|i| (i, i)).collect() };
            let mut want = Vec::new();
            for &(ia, ib) in &pairs {
                for i in 0..m {
                    for j in 0..n {
                        let acc: f64 = (0..k).map(|p| av[ia * m * k + i * k + p] as f64 * bv[ib * k * n + p * n + j] as f64).sum();
                        want.push(acc as f32);
                    }
                }
            }
            for threads in [1, 2, 3] {
                let y = &run_op_with("MatMul", 13, vec![], vec![Some(tf(&sa, &av)), Some(tf(&sb, &bv))], &[], 1, threads).unwrap()[0];
                let got = y.as_slice::<f32>().unwrap();
                assert_eq!(got.len(), want.len(), "{sa:?} x {sb:?}");
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-3 * (1.0 + e.abs()), "{sa:?} x {sb:?} t={threads} [{i}]: {g} vs {e}");
                }
            }
        }
    }
}
