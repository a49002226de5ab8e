//! Softmax, LogSoftmax and Hardmax. Opset < 13 coerces the input to 2-D at `axis` (default 1)
//! and normalizes each row of the flattened tail; opset >= 13 normalizes along one axis
//! (default -1).

use super::broadcast::SendPtr;
use super::dispatch::{with_float_buffers, Float};
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::common::norm_axis;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};
use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

struct Softmax {
    kind: Kind,
    axis: i64,
    /// Opset < 13: flatten `[..axis]` and `[axis..]`.
    coerce_2d: bool,
    label: String,
}

fn build(ctx: &BuildContext, kind: Kind) -> Result<Box<dyn Op>> {
    let coerce_2d = ctx.opset < 13;
    let axis = ctx.attr_i("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Box::new(Softmax { kind, axis, coerce_2d, label: ctx.node.describe() }))
}

pub fn build_softmax(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Softmax)
}
pub fn build_log_softmax(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::LogSoftmax)
}
pub fn build_hardmax(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Hardmax)
}

/// Normalize `x` viewed as `[outer, n, inner]` along the middle dimension.
fn kernel<F: Float>(pool: &ThreadPool, kind: Kind, x: &[F], o: &mut [F], outer: usize, n: usize, inner: usize) {
    let block = n * inner;
    if block == 0 || outer == 0 {
        return;
    }
    let p = SendPtr(o.as_mut_ptr());
    let min_blocks = (1 << 14) / block.max(1) + 1;
    pool.parallel_for(outer, min_blocks, |b0, b1| {
        let p = p;
        // SAFETY: disjoint blocks of `o`.
        let o = unsafe { std::slice::from_raw_parts_mut(p.0.add(b0 * block), (b1 - b0) * block) };
        let x = &x[b0 * block..b1 * block];
        if inner == 1 {
            for (xr, or) in x.chunks_exact(n).zip(o.chunks_exact_mut(n)) {
                row(kind, xr, or);
            }
        } else {
            let mut tmp = vec![F::ZERO; inner];
            for (xb, ob) in x.chunks_exact(block).zip(o.chunks_exact_mut(block)) {
                strided(kind, xb, ob, n, inner, &mut tmp);
            }
        }
    });
}

/// One contiguous row.
#[inline]
fn row<F: Float>(kind: Kind, x: &[F], o: &mut [F]) {
    if kind == Kind::Softmax {
        if let (Some(x32), Some(o32)) = (crate::kernels::float::as_f32(x), crate::kernels::float::as_f32_mut(o)) {
            crate::kernels::vmath::softmax_row(x32, o32);
            return;
        }
    }
    let mut m = F::NEG_INF;
    for &v in x {
        if v > m {
            m = v;
        }
    }
    match kind {
        Kind::Softmax => {
            let mut s = F::ZERO;
            for (o, &v) in o.iter_mut().zip(x) {
                let e = (v - m).exp();
                *o = e;
                s += e;
            }
            let r = F::ONE / s;
            for o in o.iter_mut() {
                *o = *o * r;
            }
        }
        Kind::LogSoftmax => {
            let mut s = F::ZERO;
            for &v in x {
                s += (v - m).exp();
            }
            let l = s.ln();
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v - m - l;
            }
        }
        Kind::Hardmax => {
            let mut found = false;
            for (o, &v) in o.iter_mut().zip(x) {
                if !found && v == m {
                    *o = F::ONE;
                    found = true;
                } else {
                    *o = F::ZERO;
                }
            }
        }
    }
}

/// One `[n, inner]` block normalized along n; `tmp` holds `inner` values.
fn strided<F: Float>(kind: Kind, x: &[F], o: &mut [F], n: usize, inner: usize, tmp: &mut [F]) {
    let m = tmp;
    m.fill(F::NEG_INF);
    for xr in x.chunks_exact(inner) {
        for (m, &v) in m.iter_mut().zip(xr) {
            if v > *m {
                *m = v;
            }
        }
    }
    match kind {
        Kind::Softmax | Kind::LogSoftmax => {
            let mut s = vec![F::ZERO; inner];
            for (xr, or) in x.chunks_exact(inner).zip(o.chunks_exact_mut(inner)) {
                // e^(v - m) a row at a time: the vector exponential for f32 (as the
                // last-axis rows), the scalar one otherwise.
                for ((o, &v), &m) in or.iter_mut().zip(xr).zip(m.iter()) {
                    *o = v - m;
                }
                match crate::kernels::float::as_f32_mut(or) {
                    Some(o32) => crate::kernels::vmath::apply_inplace(crate::kernels::vmath::Act::Exp, o32),
                    None => or.iter_mut().for_each(|o| *o = o.exp()),
                }
                for (o, s) in or.iter().zip(s.iter_mut()) {
                    *s += *o;
                }
            }
            if kind == Kind::Softmax {
                for s in s.iter_mut() {
                    *s = F::ONE / *s;
                }
                for or in o.chunks_exact_mut(inner) {
                    for (o, &r) in or.iter_mut().zip(s.iter()) {
                        *o = *o * r;
                    }
                }
            } else {
                for (s, &m) in s.iter_mut().zip(m.iter()) {
                    *s = m + s.ln();
                }
                for (xr, or) in x.chunks_exact(inner).zip(o.chunks_exact_mut(inner)) {
                    for ((o, &v), &l) in or.iter_mut().zip(xr).zip(s.iter()) {
                        *o = v - l;
                    }
                }
            }
        }
        Kind::Hardmax => {
            o.fill(F::ZERO);
            for j in 0..inner {
                for k in 0..n {
                    if x[k * inner + j] == m[j] {
                        o[k * inner + j] = F::ONE;
                        break;
                    }
                }
            }
        }
    }
}

/// Softmax of f16 / bf16 values (widened to f32) rounding after every step as the reference
/// does with numpy arithmetic in the narrow type: `x - max`, `exp`, the sum (bf16: rounded at
/// each addition; f16: accumulated in f32), the division, and LogSoftmax's `log`.
#[allow(clippy::too_many_arguments)]
fn half_emulated(kind: Kind, x: &[f32], o: &mut [f32], outer: usize, n: usize, inner: usize, r: impl Fn(f32) -> f32, round_each_add: bool) {
    for b in 0..outer {
        for j in 0..inner {
            let at = |k: usize| b * n * inner + k * inner + j;
            let m = (0..n).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0f32;
            for k in 0..n {
                let e = r(r(x[at(k)] - m).exp());
                o[at(k)] = e;
                s = if round_each_add { r(s + e) } else { s + e };
            }
            let s = r(s);
            for k in 0..n {
                let y = r(o[at(k)] / s);
                o[at(k)] = if kind == Kind::LogSoftmax { r(y.ln()) } else { y };
            }
        }
    }
}

impl Op for Softmax {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let shape = x.shape();
        let r = shape.len();
        let (outer, n, inner) = if r == 0 {
            (1, 1, 1)
        } else {
            let a = norm_axis(self.axis, r, &self.label)?;
            if self.coerce_2d {
                (shape[..a].iter().product(), shape[a..].iter().product(), 1)
            } else {
                (shape[..a].iter().product(), shape[a], shape[a + 1..].iter().product())
            }
        };
        let (kind, pool) = (self.kind, ctx.pool);
        let d = x.dtype();
        let out: Tensor = with_float_buffers(
            x,
            shape,
            true,
            |x, o| {
                match d {
                    DType::BFloat16 if kind != Kind::Hardmax => {
                        half_emulated(kind, x, o, outer, n, inner, |v| bf16::from_f32(v).to_f32(), true)
                    }
                    DType::Float16 if kind != Kind::Hardmax => {
                        half_emulated(kind, x, o, outer, n, inner, |v| f16::from_f32(v).to_f32(), false)
                    }
                    _ => kernel::<f32>(pool, kind, x, o, outer, n, inner),
                }
                Ok(())
            },
            |x, o| {
                kernel::<f64>(pool, kind, x, o, outer, n, inner);
                Ok(())
            },
        )
        .map_err(|e| e.context(&self.label))?;
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;

    #[test]
    fn middle_axis_matches_f64() {
        // [4, 7, 37] along axis 1: rows of 37 strided values (two vectors and a tail), with
        // large and -inf inputs, against the definition in f64.
        let (outer, n, inner) = (4usize, 7usize, 37usize);
        let mut xv: Vec<f32> = (0..outer * n * inner).map(|i| ((i * 7919) % 1013) as f32 * 0.05 - 25.0).collect();
        xv[5] = f32::NEG_INFINITY;
        xv[inner + 9] = 80.0;
        let x = t_f32(&[outer, n, inner], &xv);
        for op in ["Softmax", "LogSoftmax"] {
            let y = f32s(&run1(op, &[("axis", int(1))], &[x.clone()]));
            for b in 0..outer {
                for j in 0..inner {
                    let at = |k: usize| (b * n + k) * inner + j;
                    let m = (0..n).map(|k| xv[at(k)] as f64).fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = (0..n).map(|k| (xv[at(k)] as f64 - m).exp()).sum();
                    for k in 0..n {
                        let d = xv[at(k)] as f64 - m;
                        let (want, got) = if op == "Softmax" { (d.exp() / sum, y[at(k)] as f64) } else { (d - sum.ln(), y[at(k)] as f64) };
                        // x - max rounds to f32 first: a relative error of |d|·2^-24 in e^d
                        // (and subnormal results have few bits).
                        let tol = if op == "Softmax" { want * 4e-7 * (1.0 + d.abs()) + 1e-44 } else { 1e-6 * (1.0 + want.abs()) };
                        let ok = want == got || (want - got).abs() <= tol;
                        assert!(ok, "{op} [{b}, {k}, {j}]: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn softmax_last_and_middle_axis() {
        let x = t_f32(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 1.0, 1.0]);
        let y = run1("Softmax", &[], &[x.clone()]);
        assert_close(&f32s(&y), &[0.09003057, 0.24472847, 0.66524096, 1. / 3., 1. / 3., 1. / 3.], 1e-7);
        let y = run1("Softmax", &[("axis", int(0))], &[x.clone()]);
        assert_close(&f32s(&y), &[0.5, 0.7310586, 0.8807971, 0.5, 0.26894142, 0.11920292], 1e-7);
        let l = run1("LogSoftmax", &[], &[x.clone()]);
        assert_close(&f32s(&l), &[-2.4076059, -1.4076059, -0.40760595, -1.0986123, -1.0986123, -1.0986123], 1e-6);
        let h = run1("Hardmax", &[("axis", int(0))], &[x]);
        assert_eq!(f32s(&h), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn opset_11_coerces_to_2d() {
        let x = t_f32(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = run_full("Softmax", 11, &[], &[Some(x)]).unwrap().remove(0).into_tensor().unwrap();
        // axis = 1: one row of 4 values.
        assert_close(&f32s(&y), &[0.0320586, 0.08714432, 0.23688282, 0.6439142], 1e-7);
    }

    #[test]
    fn large_values_are_stable_and_bad_axis_fails() {
        let x = t_f32(&[3], &[1000.0, 1001.0, 1002.0]);
        assert_close(&f32s(&run1("Softmax", &[], &[x.clone()])), &[0.09003057, 0.24472847, 0.66524096], 1e-7);
        assert!(run("Softmax", &[("axis", int(1))], &[x]).is_err());
    }
}
