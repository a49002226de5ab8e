//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2,
//! ReduceLogSum, ReduceLogSumExp, ReduceSumSquare; ArgMax, ArgMin.
//!
//! Axes come from the `axes` attribute before opset 13 (ReduceSum) / 18 (the others) and from
//! the optional second input after. The input is viewed as `[outer, n, inner]` when the reduced
//! axes are contiguous (the common cases: last axis, spatial axes) and gathered so they are
//! otherwise; floats compute in f32 (f64 for f64), integers in f64 then wrap back.

use super::broadcast::SendPtr;
use super::dispatch::{with_float_buffers, Float, Num};
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::common::{norm_axis, strides_of};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

struct Reduce {
    kind: Kind,
    /// Axes from the attribute (old opsets); None: from the input, or all.
    attr_axes: Option<Vec<i64>>,
    axes_from_input: bool,
    keepdims: bool,
    noop_with_empty_axes: bool,
    label: String,
}

fn build(ctx: &BuildContext, kind: Kind, input_since: i64) -> Result<Box<dyn Op>> {
    let axes_from_input = ctx.opset >= input_since;
    let attr_axes = if axes_from_input { None } else { ctx.attr_ints("axes")? };
    let keepdims = ctx.attr_i("keepdims", 1)? != 0;
    let noop_with_empty_axes = ctx.attr_i("noop_with_empty_axes", 0)? != 0;
    Ok(Box::new(Reduce { kind, attr_axes, axes_from_input, keepdims, noop_with_empty_axes, label: ctx.node.describe() }))
}

pub fn build_reduce_sum(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Sum, 13)
}
pub fn build_reduce_mean(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Mean, 18)
}
pub fn build_reduce_max(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Max, 18)
}
pub fn build_reduce_min(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Min, 18)
}
pub fn build_reduce_prod(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Prod, 18)
}
pub fn build_reduce_l1(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::L1, 18)
}
pub fn build_reduce_l2(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::L2, 18)
}
pub fn build_reduce_log_sum(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::LogSum, 18)
}
pub fn build_reduce_log_sum_exp(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::LogSumExp, 18)
}
pub fn build_reduce_sum_square(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::SumSquare, 18)
}

/// The reduced-axis mask of a rank-`r` input, validated (range, duplicates).
fn axis_mask(axes: &[i64], r: usize, label: &str) -> Result<Vec<bool>> {
    let mut m = vec![false; r];
    for &a in axes {
        let k = norm_axis(a, r, label)?;
        if r == 0 {
            continue;
        }
        if m[k] {
            return Err(invalid_arg!("{label}: axis {a} is listed twice"));
        }
        m[k] = true;
    }
    Ok(m)
}

/// The elementwise parts of a reduction, `fold(pre(x)...)` from `init`, as a zero-sized type
/// so the kernels are monomorphized per reduction (no calls through pointers in the loops).
trait Fold<F: Float>: Send + Sync {
    fn init() -> F;
    fn pre(v: F) -> F;
    fn fold(a: F, b: F) -> F;
}

macro_rules! fold_kind {
    ($name:ident, $init:expr, |$v:ident| $pre:expr, |$a:ident, $b:ident| $fold:expr) => {
        struct $name;
        impl<F: Float> Fold<F> for $name {
            #[inline(always)]
            fn init() -> F {
                $init
            }
            #[inline(always)]
            fn pre($v: F) -> F {
                $pre
            }
            #[inline(always)]
            fn fold($a: F, $b: F) -> F {
                $fold
            }
        }
    };
}
fold_kind!(SumK, F::ZERO, |v| v, |a, b| a + b);
fold_kind!(AbsSumK, F::ZERO, |v| v.abs(), |a, b| a + b);
fold_kind!(SquareSumK, F::ZERO, |v| v * v, |a, b| a + b);
fold_kind!(ExpSumK, F::ZERO, |v| v.exp(), |a, b| a + b);
fold_kind!(ProdK, F::ONE, |v| v, |a, b| a * b);
#[allow(clippy::eq_op)]
fn nan_or<F: Float>(b: F, keep_b: bool, a: F) -> F {
    if keep_b || b != b {
        b
    } else {
        a
    }
}
fold_kind!(MaxK, F::NEG_INF, |v| v, |a, b| nan_or(b, b > a, a));
fold_kind!(MinK, F::INF, |v| v, |a, b| nan_or(b, b < a, a));
// The max of the finite values (for LogSumExp's shift).
fold_kind!(FiniteMaxK, F::NEG_INF, |v| if v.abs() == F::INF { F::NEG_INF } else { v }, |a, b| nan_or(b, b > a, a));

fn post<F: Float>(kind: Kind, acc: F, n: usize) -> F {
    match kind {
        Kind::Mean => acc / F::from_usize(n),
        Kind::L2 => acc.sqrt(),
        Kind::LogSum | Kind::LogSumExp => acc.ln(),
        _ => acc,
    }
}

/// Fold each contiguous row of length n: `out[o] = fold(pre(x[o*n + k] - shift[o]))`.
fn fold_rows<F: Float, K: Fold<F>>(pool: &ThreadPool, x: &[F], out: &mut [F], n: usize, shift: Option<&[F]>) {
    let rows = out.len();
    let optr = SendPtr(out.as_mut_ptr());
    let min_rows = (1 << 15) / n.max(1) + 1;
    pool.parallel_for(rows, min_rows, |r0, r1| {
        let optr = optr;
        // SAFETY: disjoint ranges of `out`.
        let out = unsafe { std::slice::from_raw_parts_mut(optr.0.add(r0), r1 - r0) };
        for (i, o) in out.iter_mut().enumerate() {
            let r = r0 + i;
            let xr = &x[r * n..r * n + n];
            let s = shift.map(|s| s[r]).unwrap_or(F::ZERO);
            // Eight independent accumulators so the loop vectorizes.
            let mut acc = [K::init(); 8];
            let mut chunks = xr.chunks_exact(8);
            for c in &mut chunks {
                for k in 0..8 {
                    acc[k] = K::fold(acc[k], K::pre(c[k] - s));
                }
            }
            let mut a = K::init();
            for &v in chunks.remainder() {
                a = K::fold(a, K::pre(v - s));
            }
            for v in acc {
                a = K::fold(a, v);
            }
            *o = a;
        }
    });
}

/// Fold `[outer, n, inner]` along n: `out[o*inner + j] = fold_k pre(x[(o*n + k)*inner + j])`.
fn fold_cols<F: Float, K: Fold<F>>(pool: &ThreadPool, x: &[F], out: &mut [F], n: usize, inner: usize, shift: Option<&[F]>) {
    let outer = out.len() / inner.max(1);
    let optr = SendPtr(out.as_mut_ptr());
    let min_outer = (1 << 15) / (n * inner).max(1) + 1;
    pool.parallel_for(outer, min_outer, |o0, o1| {
        let optr = optr;
        // SAFETY: disjoint ranges of `out`.
        let out = unsafe { std::slice::from_raw_parts_mut(optr.0.add(o0 * inner), (o1 - o0) * inner) };
        for (b, ob) in out.chunks_exact_mut(inner).enumerate() {
            let o = o0 + b;
            ob.fill(K::init());
            let base = o * n * inner;
            let sh = shift.map(|s| &s[o * inner..o * inner + inner]);
            for k in 0..n {
                let xr = &x[base + k * inner..base + (k + 1) * inner];
                match sh {
                    None => {
                        for (a, &v) in ob.iter_mut().zip(xr) {
                            *a = K::fold(*a, K::pre(v));
                        }
                    }
                    Some(sh) => {
                        for ((a, &v), &s) in ob.iter_mut().zip(xr).zip(sh) {
                            *a = K::fold(*a, K::pre(v - s));
                        }
                    }
                }
            }
        }
    });
}

fn fold_view<F: Float, K: Fold<F>>(pool: &ThreadPool, x: &[F], out: &mut [F], n: usize, inner: usize, shift: Option<&[F]>) {
    if inner == 1 {
        fold_rows::<F, K>(pool, x, out, n, shift)
    } else {
        fold_cols::<F, K>(pool, x, out, n, inner, shift)
    }
}

/// Reduce `x` viewed as `[outer, n, inner]` along n into `out` (`outer * inner` values).
fn reduce_view<F: Float>(pool: &ThreadPool, kind: Kind, x: &[F], out: &mut [F], n: usize, inner: usize) {
    if let (Kind::Mean, 1, true) = (kind, inner, n > 0) {
        if let (Some(x32), Some(o32)) = (crate::kernels::float::as_f32(x), crate::kernels::float::as_f32_mut(out)) {
            // Means of contiguous rows (the spatial means of squeeze-excitation blocks).
            let optr = SendPtr(o32.as_mut_ptr());
            pool.parallel_for(o32.len(), (1 << 15) / n + 1, |r0, r1| {
                let optr = optr;
                // SAFETY: disjoint ranges of `out`.
                let out = unsafe { std::slice::from_raw_parts_mut(optr.0.add(r0), r1 - r0) };
                crate::kernels::float::plane_means_f32(&x32[r0 * n..r1 * n], n, out);
            });
            return;
        }
    }
    match kind {
        Kind::Sum | Kind::Mean | Kind::LogSum => fold_view::<F, SumK>(pool, x, out, n, inner, None),
        Kind::Max => fold_view::<F, MaxK>(pool, x, out, n, inner, None),
        Kind::Min => fold_view::<F, MinK>(pool, x, out, n, inner, None),
        Kind::Prod => fold_view::<F, ProdK>(pool, x, out, n, inner, None),
        Kind::L1 => fold_view::<F, AbsSumK>(pool, x, out, n, inner, None),
        Kind::L2 | Kind::SumSquare => fold_view::<F, SquareSumK>(pool, x, out, n, inner, None),
        Kind::LogSumExp => {
            // log(sum(exp(x - m))) + m with m the max of the finite values (as the reference).
            let mut m = vec![F::ZERO; out.len()];
            fold_view::<F, FiniteMaxK>(pool, x, &mut m, n, inner, None);
            for v in m.iter_mut() {
                if *v == F::NEG_INF {
                    *v = F::ZERO;
                }
            }
            fold_view::<F, ExpSumK>(pool, x, out, n, inner, Some(&m));
            for (o, m) in out.iter_mut().zip(&m) {
                *o = o.ln() + *m;
            }
            return;
        }
    }
    if matches!(kind, Kind::Mean | Kind::L2 | Kind::LogSum) {
        for o in out.iter_mut() {
            *o = post(kind, *o, n);
        }
    }
}

/// Copy `x` (shape `shape`) with its axes permuted by `perm` into a new contiguous buffer.
fn permute<F: Copy + Default>(x: &[F], shape: &[usize], perm: &[usize]) -> Vec<F> {
    let st = strides_of(shape);
    let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = x.len();
    let mut out = Vec::with_capacity(n);
    let r = pshape.len();
    let mut idx = vec![0usize; r];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(x[off]);
        let mut d = r;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            off += pst[d];
            if idx[d] < pshape[d] {
                break;
            }
            off -= pst[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// The reduction plan of a shape: `[outer, n, inner]`, with a permutation when the reduced
/// axes are not one contiguous run.
struct Plan {
    perm: Option<Vec<usize>>,
    n: usize,
    inner: usize,
}

fn plan(shape: &[usize], mask: &[bool]) -> Plan {
    let r = shape.len();
    // Ignore size-1 axes when looking for one contiguous run of reduced axes.
    let red: Vec<usize> = (0..r).filter(|&i| mask[i] && shape[i] != 1).collect();
    let n: usize = (0..r).filter(|&i| mask[i]).map(|i| shape[i]).product();
    if red.is_empty() {
        return Plan { perm: None, n: 1, inner: 1 };
    }
    let (first, last) = (red[0], red[red.len() - 1]);
    let contiguous = (first..=last).all(|i| mask[i] || shape[i] == 1);
    if contiguous {
        let inner = shape[last + 1..].iter().product();
        return Plan { perm: None, n, inner };
    }
    let mut perm: Vec<usize> = (0..r).filter(|&i| !mask[i]).collect();
    perm.extend((0..r).filter(|&i| mask[i]));
    Plan { perm: Some(perm), n, inner: 1 }
}

fn reduce_float(pool: &ThreadPool, kind: Kind, x: &Tensor, shape: &[usize], mask: &[bool], out_shape: &[usize]) -> Result<Tensor> {
    let pl = plan(shape, mask);
    let (n, inner) = (pl.n, pl.inner);
    let perm = pl.perm.clone();
    with_float_buffers(
        x,
        out_shape,
        false,
        |xs, o| {
            let p;
            let xs = match &perm {
                Some(pm) => {
                    p = permute(xs, shape, pm);
                    &p[..]
                }
                None => xs,
            };
            reduce_view::<f32>(pool, kind, xs, o, n, inner);
            Ok(())
        },
        |xs, o| {
            let p;
            let xs = match &perm {
                Some(pm) => {
                    p = permute(xs, shape, pm);
                    &p[..]
                }
                None => xs,
            };
            reduce_view::<f64>(pool, kind, xs, o, n, inner);
            Ok(())
        },
    )
}

fn reduce_int<T: Num>(pool: &ThreadPool, kind: Kind, x: &Tensor, shape: &[usize], mask: &[bool], out_shape: &[usize]) -> Result<Tensor> {
    let xs: Vec<f64> = x.as_slice::<T>()?.iter().map(|v| v.to_f64()).collect();
    let pl = plan(shape, mask);
    let xs = match &pl.perm {
        Some(pm) => permute(&xs, shape, pm),
        None => xs,
    };
    let n_out = crate::tensor::checked_numel(out_shape)?;
    let mut o = vec![0f64; n_out];
    reduce_view::<f64>(pool, kind, &xs, &mut o, pl.n, pl.inner);
    let empty = pl.n == 0;
    Tensor::build::<T>(x.dtype(), out_shape, |t| {
        for (t, v) in t.iter_mut().zip(&o) {
            *t = match kind {
                Kind::Max if empty => T::MIN_VAL,
                Kind::Min if empty => T::MAX_VAL,
                _ => T::from_f64(*v),
            };
        }
        Ok(())
    })
}

impl Reduce {
    fn axes(&self, inputs: &[Option<&Value>]) -> Result<Option<Vec<i64>>> {
        if !self.axes_from_input {
            return Ok(self.attr_axes.clone());
        }
        match opt_tensor_in(inputs, 1, &self.label)? {
            None => Ok(None),
            Some(t) => Ok(Some(t.to_i64_vec().map_err(|e| e.context(format!("{}: 'axes'", self.label)))?)),
        }
    }
}

impl Op for Reduce {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let shape = x.shape();
        let r = shape.len();
        let axes = self.axes(inputs)?;
        let mask = match axes {
            Some(a) if !a.is_empty() => axis_mask(&a, r, &self.label)?,
            _ if self.noop_with_empty_axes => vec![false; r],
            _ => vec![true; r],
        };
        let out_shape: Vec<usize> = if self.keepdims {
            shape.iter().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect()
        } else {
            shape.iter().zip(&mask).filter(|(_, &m)| !m).map(|(&d, _)| d).collect()
        };
        let d = x.dtype();
        let out = if d.is_float() {
            reduce_float(ctx.pool, self.kind, x, shape, &mask, &out_shape)?
        } else if d == DType::Bool && matches!(self.kind, Kind::Max | Kind::Min) {
            let t = reduce_int::<u8>(ctx.pool, self.kind, x, shape, &mask, &out_shape)?;
            let empty_min = self.kind == Kind::Min;
            let v: Vec<u8> = t.as_slice::<u8>()?.iter().map(|&b| if b == u8::MAX { empty_min as u8 } else { b }).collect();
            Tensor::build::<u8>(DType::Bool, &out_shape, |o| {
                o.copy_from_slice(&v);
                Ok(())
            })?
        } else {
            with_int!(d, T => reduce_int::<T>(ctx.pool, self.kind, x, shape, &mask, &out_shape)?,
                _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label)))
        };
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ArgMax, ArgMin

struct Arg {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
    label: String,
}

fn build_arg(ctx: &BuildContext, max: bool) -> Result<Box<dyn Op>> {
    Ok(Box::new(Arg {
        max,
        axis: ctx.attr_i("axis", 0)?,
        keepdims: ctx.attr_i("keepdims", 1)? != 0,
        last: ctx.attr_i("select_last_index", 0)? != 0,
        label: ctx.node.describe(),
    }))
}
pub fn build_argmax(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build_arg(ctx, true)
}
pub fn build_argmin(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build_arg(ctx, false)
}

/// Outputs `start..start + o.len()` of ArgMax / ArgMin (`x` viewed as `[outer, n, inner]`).
fn arg<T: Num>(x: &[T], start: usize, o: &mut [i64], n: usize, inner: usize, max: bool, last: bool) {
    let better = |v: T, b: T| if max { v > b || (last && v == b) } else { v < b || (last && v == b) };
    for (oi, o) in o.iter_mut().enumerate() {
        let oi = start + oi;
        let (b, j) = (oi / inner, oi % inner);
        let base = b * n * inner + j;
        let mut best = x[base];
        let mut bi = 0;
        for k in 1..n {
            let v = x[base + k * inner];
            if better(v, best) {
                best = v;
                bi = k;
            }
        }
        *o = bi as i64;
    }
}

impl Op for Arg {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let shape = x.shape();
        let a = norm_axis(self.axis, shape.len(), &self.label)?;
        let n = shape.get(a).copied().unwrap_or(1);
        if n == 0 {
            return Err(invalid_arg!("{}: cannot take the arg{} of an empty axis", self.label, if self.max { "max" } else { "min" }));
        }
        let inner: usize = shape.get(a + 1..).map(|s| s.iter().product()).unwrap_or(1);
        let out_shape: Vec<usize> = shape
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| if i == a { if self.keepdims { Some(1) } else { None } } else { Some(d) })
            .collect();
        let (max, last) = (self.max, self.last);
        // Outputs are independent scans of n values: split them over the threads.
        let min_outputs = (1 << 13) / n + 1;
        let out = Tensor::build_uninit::<i64>(DType::Int64, &out_shape, |o| {
            if x.dtype() == DType::Bool {
                let xv = x.as_slice::<u8>()?;
                super::broadcast::par_chunks(ctx.pool, o, min_outputs, |s, c| arg::<u8>(xv, s, c, n, inner, max, last));
                return Ok(());
            }
            with_numeric!(x.dtype(), T => {
                    let xv = x.as_slice::<T>()?;
                    super::broadcast::par_chunks(ctx.pool, o, min_outputs, |s, c| arg::<T>(xv, s, c, n, inner, max, last))
                },
                _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
            Ok(())
        })?;
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::test_util::*;

    fn x234() -> Tensor {
        t_f32(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>())
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::from_slice(&[v.len()], v).unwrap()
    }

    #[test]
    fn argmax_argmin_split_over_threads() {
        // 300 rows of 200 (outputs split over the test pool's threads), ties first or last.
        let (rows, n) = (300usize, 200usize);
        let v: Vec<f32> = (0..rows * n).map(|i| ((i * 7919) % 211) as f32).collect();
        let x = t_f32(&[rows, n], &v);
        for (op, last) in [("ArgMax", 0), ("ArgMin", 0), ("ArgMax", 1), ("ArgMin", 1)] {
            let got = run1(op, &[("axis", int(1)), ("select_last_index", int(last))], &[x.clone()]);
            let got = got.as_slice::<i64>().unwrap();
            for r in 0..rows {
                let row = &v[r * n..(r + 1) * n];
                let best = if op == "ArgMax" { row.iter().cloned().fold(f32::MIN, f32::max) } else { row.iter().cloned().fold(f32::MAX, f32::min) };
                let want = if last == 1 { row.iter().rposition(|x| *x == best) } else { row.iter().position(|x| *x == best) }.unwrap();
                assert_eq!(got[r], want as i64, "{op} last {last} row {r}");
            }
        }
    }

    #[test]
    fn sum_mean_over_axes() {
        let x = x234();
        let s = run1("ReduceSum", &[("keepdims", int(0))], &[x.clone(), axes(&[1])]);
        assert_eq!(s.shape(), &[2, 4]);
        assert_eq!(f32s(&s), vec![12., 15., 18., 21., 48., 51., 54., 57.]);
        let m = run1("ReduceMean", &[], &[x.clone(), axes(&[-1])]);
        assert_eq!(m.shape(), &[2, 3, 1]);
        assert_eq!(f32s(&m), vec![1.5, 5.5, 9.5, 13.5, 17.5, 21.5]);
        // Non-contiguous axes (0 and 2) go through a permutation.
        let s02 = run1("ReduceSum", &[("keepdims", int(0))], &[x.clone(), axes(&[0, 2])]);
        assert_eq!(f32s(&s02), vec![60., 92., 124.]);
        // All axes by default.
        let all = run1("ReduceMax", &[("keepdims", int(0))], &[x.clone()]);
        assert_eq!(all.shape(), &[] as &[usize]);
        assert_eq!(f32s(&all), vec![23.]);
        // Opset 11: axes attribute.
        let old = run_full("ReduceMean", 11, &[("axes", ints(&[1]))], &[Some(x.clone())]).unwrap();
        assert_eq!(f32s(old[0].as_tensor().unwrap()), vec![4., 5., 6., 7., 16., 17., 18., 19.]);
        assert!(run("ReduceSum", &[], &[x.clone(), axes(&[3])]).is_err());
        assert!(run("ReduceSum", &[], &[x, axes(&[1, 1])]).is_err());
    }

    #[test]
    fn other_kinds() {
        let x = t_f32(&[2, 2], &[1., -2., 3., 4.]);
        let k0 = [("keepdims", int(0))];
        let one = axes(&[1]);
        let r = |op: &str| f32s(&run1(op, &k0, &[x.clone(), one.clone()]));
        assert_eq!(r("ReduceL1"), vec![3., 7.]);
        assert_close(&r("ReduceL2"), &[5f32.sqrt(), 5.], 1e-6);
        assert_eq!(r("ReduceSumSquare"), vec![5., 25.]);
        assert_eq!(r("ReduceProd"), vec![-2., 12.]);
        assert_eq!(r("ReduceMin"), vec![-2., 3.]);
        assert_close(&r("ReduceLogSum"), &[f32::NAN, 7f32.ln()], 1e-6);
        assert_close(&r("ReduceLogSumExp"), &[1.0485873, 4.3132615], 1e-6);
    }

    #[test]
    fn empty_set_and_noop() {
        let x = Tensor::from_slice::<f32>(&[2, 0, 4], &[]).unwrap();
        let a = axes(&[1]);
        let s = run1("ReduceSum", &[], &[x.clone(), a.clone()]);
        assert_eq!(s.shape(), &[2, 1, 4]);
        assert!(f32s(&s).iter().all(|v| *v == 0.0));
        assert!(f32s(&run1("ReduceProd", &[], &[x.clone(), a.clone()])).iter().all(|v| *v == 1.0));
        assert!(f32s(&run1("ReduceMax", &[], &[x.clone(), a.clone()])).iter().all(|v| *v == f32::NEG_INFINITY));
        assert!(f32s(&run1("ReduceLogSumExp", &[], &[x.clone(), a.clone()])).iter().all(|v| *v == f32::NEG_INFINITY));
        let y = t_f32(&[2], &[1., 2.]);
        let noop = run1("ReduceSum", &[("noop_with_empty_axes", int(1))], &[y.clone(), axes(&[])]);
        assert_eq!(f32s(&noop), vec![1., 2.]);
        let b = super::super::compare::bools(&[2, 0], &[]);
        let bm = run1("ReduceMax", &[], &[b, axes(&[1])]);
        assert_eq!(bm.dtype(), DType::Bool);
        assert_eq!(bm.as_slice::<u8>().unwrap(), &[0, 0]);
    }

    #[test]
    fn integer_reductions() {
        let x = Tensor::from_slice(&[2, 3], &[1i64, 5, 3, -4, 2, 2]).unwrap();
        let s = run1("ReduceSum", &[("keepdims", int(0))], &[x.clone(), axes(&[1])]);
        assert_eq!(s.as_slice::<i64>().unwrap(), &[9, 0]);
        let m = run1("ReduceMax", &[("keepdims", int(0))], &[x.clone(), axes(&[0])]);
        assert_eq!(m.as_slice::<i64>().unwrap(), &[1, 5, 3]);
    }

    #[test]
    fn argmax_argmin() {
        let x = t_f32(&[2, 3], &[1., 5., 5., 7., 0., 7.]);
        let a = run1("ArgMax", &[("axis", int(1))], &[x.clone()]);
        assert_eq!(a.shape(), &[2, 1]);
        assert_eq!(a.as_slice::<i64>().unwrap(), &[1, 0]);
        let a = run1("ArgMax", &[("axis", int(1)), ("select_last_index", int(1)), ("keepdims", int(0))], &[x.clone()]);
        assert_eq!(a.as_slice::<i64>().unwrap(), &[2, 2]);
        let a = run1("ArgMin", &[("axis", int(-2))], &[x]);
        assert_eq!(a.shape(), &[1, 3]);
        assert_eq!(a.as_slice::<i64>().unwrap(), &[0, 1, 0]);
    }
}
