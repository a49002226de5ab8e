//! Normalizations: BatchNormalization, LayerNormalization, RMSNormalization,
//! InstanceNormalization, GroupNormalization, LpNormalization, LRN, MeanVarianceNormalization.

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::float::{as_f32, as_f32_mut, lane_sum, Float};
use crate::kernels::SendPtr;
use crate::ops::common::{
    broadcast_shapes, broadcast_strides, for_each_broadcast, norm_axis, strides_of,
};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};

pub fn register(r: &mut Registry) {
    r.add("BatchNormalization", build_batch_norm);
    r.add("LayerNormalization", build_layer_norm);
    // The fused form of the exporters' ReduceMean/Sub/Pow/... chain (optimizer::fuse::fuse_layer_norm).
    r.add_domain(crate::optimizer::fuse::DOMAIN, "LayerNormalization", build_layer_norm);
    r.add("RMSNormalization", build_rms_norm);
    r.add("InstanceNormalization", build_instance_norm);
    r.add("GroupNormalization", build_group_norm);
    r.add("LpNormalization", build_lp_norm);
    r.add("LRN", build_lrn);
    r.add("MeanVarianceNormalization", build_mvn);
}

/// A parameter tensor as compute-type values.
fn params<T: Float>(t: &Tensor) -> Result<Vec<T>> {
    Ok(match t.dtype() {
        DType::Float32 => t
            .as_slice::<f32>()?
            .iter()
            .map(|v| T::from_f32(*v))
            .collect(),
        _ => t.to_f64_vec()?.into_iter().map(T::from_f64).collect(),
    })
}

/// Mean and variance (population) of a row, two-pass.
#[inline]
fn mean_var<T: Float>(x: &[T]) -> (T, T) {
    let n = T::from_usize(x.len().max(1));
    let mean = lane_sum(x, |v| v) / n;
    (mean, lane_sum(x, |v| (v - mean) * (v - mean)) / n)
}


// ---------------------------------------------------------------------------------------------
// BatchNormalization

struct BatchNorm {
    epsilon: f32,
    momentum: f32,
    training: bool,
}

fn build_batch_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    // Opsets < 7 had is_test (1 = inference); opset 14+ has training_mode.
    let training = if ctx.opset >= 14 {
        ctx.attr_i("training_mode", 0)? != 0
    } else if ctx.opset < 7 {
        ctx.attr_i("is_test", 0)? == 0 && ctx.node.outputs.len() > 1
    } else {
        ctx.node.outputs.iter().skip(1).any(|o| !o.is_empty())
    };
    Ok(Box::new(BatchNorm {
        epsilon: ctx.attr_f("epsilon", 1e-5)?,
        momentum: ctx.attr_f("momentum", 0.9)?,
        training,
    }))
}

impl Op for BatchNorm {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "BatchNormalization";
        let x = tensor_in(inputs, 0, OP)?;
        let ps: Vec<&Tensor> = (1..5)
            .map(|i| tensor_in(inputs, i, OP))
            .collect::<Result<_>>()?;
        if x.rank() < 1 {
            return Err(Error::ShapeMismatch(format!("{OP}: X must have rank >= 1")));
        }
        let c = if x.rank() >= 2 { x.shape()[1] } else { 1 };
        for (name, p) in ["scale", "B", "mean", "var"].iter().zip(&ps) {
            if p.len() != c {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: {name} has {} values for {c} channels",
                    p.len()
                )));
            }
        }
        let n = x.shape()[0];
        let inner: usize = x.shape().iter().skip(2).product();
        let dt = x.dtype();
        let xw = widen(x)?;
        let outs = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            let (scale, bias, mut mean, mut var) = (params::<T>(ps[0])?, params::<T>(ps[1])?, params::<T>(ps[2])?, params::<T>(ps[3])?);
            let mut extra = Vec::new();
            if self.training {
                // Batch statistics over every axis but the channel one.
                let cnt = T::from_usize((n * inner).max(1));
                let mom = T::from_f32(self.momentum);
                let mut run_mean = mean.clone();
                let mut run_var = var.clone();
                for ch in 0..c {
                    let mut s = T::ZERO;
                    for b in 0..n {
                        for v in &xv[(b * c + ch) * inner..(b * c + ch + 1) * inner] {
                            s += *v;
                        }
                    }
                    let m = s / cnt;
                    let mut q = T::ZERO;
                    for b in 0..n {
                        for v in &xv[(b * c + ch) * inner..(b * c + ch + 1) * inner] {
                            q += (*v - m) * (*v - m);
                        }
                    }
                    let vr = q / cnt;
                    run_mean[ch] = mean[ch] * mom + m * (T::ONE - mom);
                    run_var[ch] = var[ch] * mom + vr * (T::ONE - mom);
                    mean[ch] = m;
                    var[ch] = vr;
                }
                extra.push(Tensor::from_vec(&[c], run_mean)?);
                extra.push(Tensor::from_vec(&[c], run_var)?);
            }
            let eps = T::from_f32(self.epsilon);
            let a: Vec<T> = (0..c).map(|i| scale[i] / (var[i] + eps).sqrt()).collect();
            let b: Vec<T> = (0..c).map(|i| bias[i] - mean[i] * a[i]).collect();
            let y = Tensor::build_uninit::<T>(xw.dtype(), x.shape(), |o| {
                let yp = SendPtr::new(o);
                ctx.pool.parallel_for(n * c, (1 << 14) / inner.max(1) + 1, |s, e| {
                    for p in s..e {
                        let ch = p % c;
                        // SAFETY: plane p belongs to this task.
                        let yo = unsafe { yp.slice(p * inner, inner) };
                        let xp = &xv[p * inner..(p + 1) * inner];
                        if let (Some(x32), Some(y32), Some(a32), Some(b32)) = (as_f32(xp), as_f32_mut(yo), as_f32(&a[ch..ch + 1]), as_f32(&b[ch..ch + 1])) {
                            crate::kernels::float::scale_shift_f32(x32, a32[0], b32[0], y32);
                            continue;
                        }
                        for (yv, xv) in yo.iter_mut().zip(xp) {
                            *yv = *xv * a[ch] + b[ch];
                        }
                    }
                });
                Ok(())
            })?;
            let mut outs = vec![y];
            outs.extend(extra);
            Ok::<_, Error>(outs)
        })?;
        outs.into_iter()
            .map(|t| narrow(t, dt).map(Value::Tensor))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNormalization / RMSNormalization

struct LayerNorm {
    name: &'static str,
    axis: i64,
    epsilon: f32,
    rms: bool,
}

fn build_layer_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(LayerNorm {
        name: "LayerNormalization",
        axis: ctx.attr_i("axis", -1)?,
        epsilon: ctx.attr_f("epsilon", 1e-5)?,
        rms: false,
    }))
}

fn build_rms_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(LayerNorm {
        name: "RMSNormalization",
        axis: ctx.attr_i("axis", -1)?,
        epsilon: ctx.attr_f("epsilon", 1e-5)?,
        rms: true,
    }))
}

/// A parameter broadcast to `shape` (numpy rules, the parameter may not enlarge `shape`), materialized.
fn broadcast_param<T: Float>(p: &Tensor, shape: &[usize], what: &str) -> Result<Vec<T>> {
    let v = params::<T>(p)?;
    let out = broadcast_shapes(p.shape(), shape).map_err(|e| e.context(what))?;
    if out != shape {
        return Err(Error::ShapeMismatch(format!(
            "{what} of shape {:?} cannot be broadcast to {shape:?}",
            p.shape()
        )));
    }
    if p.shape() == shape {
        return Ok(v);
    }
    let st = broadcast_strides(p.shape(), shape);
    let mut r = vec![T::ZERO; shape.iter().product()];
    for_each_broadcast(shape, [&st], |i, [j]| r[i] = v[j]);
    Ok(r)
}

impl Op for LayerNorm {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, self.name)?;
        let scale = tensor_in(inputs, 1, self.name)?;
        let bias = if self.rms {
            None
        } else {
            opt_tensor_in(inputs, 2, self.name)?
        };
        let axis = norm_axis(self.axis, x.rank(), self.name)?;
        let outer: usize = x.shape()[..axis].iter().product();
        let inner: usize = x.shape()[axis..].iter().product();
        let dt = x.dtype();
        let xw = widen(x)?;
        let mut stat_shape = x.shape()[..axis].to_vec();
        stat_shape.extend(std::iter::repeat(1).take(x.rank() - axis));
        let outs = crate::with_float!(xw.dtype(), self.name, T => {
            let xv = xw.as_slice::<T>()?;
            let norm_shape = &x.shape()[axis..];
            // Scale/B covering only the normalized axes repeat per row; otherwise materialize them.
            let per_row = |p: &Tensor| p.rank() <= norm_shape.len();
            let full = x.shape();
            let sv = if per_row(scale) { broadcast_param::<T>(scale, norm_shape, "Scale")? } else { broadcast_param::<T>(scale, full, "Scale")? };
            let bv = match bias {
                Some(b) if per_row(b) => Some(broadcast_param::<T>(b, norm_shape, "B")?),
                Some(b) => Some(broadcast_param::<T>(b, full, "B")?),
                None => None,
            };
            let s_row = sv.len() == inner;
            let b_row = bv.as_ref().is_none_or(|b| b.len() == inner);
            let mut means = vec![T::ZERO; outer];
            let mut invs = vec![T::ZERO; outer];
            let eps = T::from_f32(self.epsilon);
            let y = Tensor::build_uninit::<T>(xw.dtype(), x.shape(), |o| {
                let yp = SendPtr::new(o);
                let mp = SendPtr::new(&mut means);
                let ip = SendPtr::new(&mut invs);
                ctx.pool.parallel_for(outer, (1 << 14) / inner.max(1) + 1, |s, e| {
                    for r in s..e {
                        let row = &xv[r * inner..(r + 1) * inner];
                        // SAFETY: row r belongs to this task.
                        let yo = unsafe { yp.slice(r * inner, inner) };
                        let (mean, inv) = if self.rms {
                            let q = lane_sum(row, |v| v * v);
                            (T::ZERO, T::ONE / (q / T::from_usize(inner.max(1)) + eps).sqrt())
                        } else {
                            let (m, v) = mean_var(row);
                            (m, T::ONE / (v + eps).sqrt())
                        };
                        unsafe {
                            mp.slice(r, 1)[0] = mean;
                            ip.slice(r, 1)[0] = inv;
                        }
                        let so = if s_row { 0 } else { r * inner };
                        let srow = &sv[so..so + inner];
                        match &bv {
                            Some(b) => {
                                let bo = if b_row { 0 } else { r * inner };
                                let brow = &b[bo..bo + inner];
                                for i in 0..inner {
                                    yo[i] = (row[i] - mean) * inv * srow[i] + brow[i];
                                }
                            }
                            None => {
                                for i in 0..inner {
                                    yo[i] = (row[i] - mean) * inv * srow[i];
                                }
                            }
                        }
                    }
                });
                Ok(())
            })?;
            Ok::<_, Error>(vec![y, Tensor::from_vec(&stat_shape, means)?, Tensor::from_vec(&stat_shape, invs)?])
        })?;
        let mut it = outs.into_iter();
        let y = narrow(it.next().unwrap_or(Tensor::scalar(0f32)), dt)?;
        // Mean and InvStdDev are float (the stash type) unless X is double.
        let stat = |t: Tensor| {
            if t.dtype() == DType::Float64 || dt == DType::Float32 {
                Ok(t)
            } else {
                narrow(t, DType::Float32)
            }
        };
        let mut res = vec![Value::Tensor(y)];
        for t in it {
            res.push(stat(t)?.into());
        }
        Ok(res)
    }
}

// ---------------------------------------------------------------------------------------------
// InstanceNormalization / GroupNormalization

struct GroupNorm {
    name: &'static str,
    epsilon: f32,
    /// None: instance normalization (one group per channel).
    groups: Option<usize>,
    /// GroupNormalization-18: scale and bias are per group, not per channel.
    per_group_params: bool,
}

fn build_instance_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(GroupNorm {
        name: "InstanceNormalization",
        epsilon: ctx.attr_f("epsilon", 1e-5)?,
        groups: None,
        per_group_params: false,
    }))
}

fn build_group_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let g = ctx.attr_i("num_groups", 0)?;
    if g < 1 {
        return Err(ctx.invalid(format!("attribute 'num_groups' must be >= 1, got {g}")));
    }
    Ok(Box::new(GroupNorm {
        name: "GroupNormalization",
        epsilon: ctx.attr_f("epsilon", 1e-5)?,
        groups: Some(g as usize),
        per_group_params: ctx.opset < 21,
    }))
}

impl Op for GroupNorm {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, self.name)?;
        let scale = tensor_in(inputs, 1, self.name)?;
        let bias = tensor_in(inputs, 2, self.name)?;
        if x.rank() < 2 {
            return Err(Error::ShapeMismatch(format!(
                "{}: X must have rank >= 2, got {:?}",
                self.name,
                x.shape()
            )));
        }
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let g = self.groups.unwrap_or(c);
        if g == 0 || c % g != 0 {
            return Err(Error::ShapeMismatch(format!(
                "{}: {c} channels are not divisible into {g} groups",
                self.name
            )));
        }
        let want = if self.per_group_params { g } else { c };
        if scale.len() != want || bias.len() != want {
            return Err(Error::ShapeMismatch(format!(
                "{}: scale and bias must have {want} values",
                self.name
            )));
        }
        let inner: usize = x.shape()[2..].iter().product();
        let cg = c / g;
        let gsz = cg * inner;
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), self.name, T => {
            let xv = xw.as_slice::<T>()?;
            let (sv, bv) = (params::<T>(scale)?, params::<T>(bias)?);
            let eps = T::from_f32(self.epsilon);
            Tensor::build_uninit::<T>(xw.dtype(), x.shape(), |o| {
                let yp = SendPtr::new(o);
                ctx.pool.parallel_for(n * g, (1 << 14) / gsz.max(1) + 1, |s, e| {
                    for t in s..e {
                        let blk = &xv[t * gsz..(t + 1) * gsz];
                        let (m, v) = mean_var(blk);
                        let inv = T::ONE / (v + eps).sqrt();
                        // SAFETY: block t belongs to this task.
                        let yo = unsafe { yp.slice(t * gsz, gsz) };
                        for j in 0..cg {
                            let ch = (t % g) * cg + j;
                            let pi = if self.per_group_params { t % g } else { ch };
                            let (a, b) = (sv[pi] * inv, bv[pi]);
                            for (yv, xv) in yo[j * inner..(j + 1) * inner].iter_mut().zip(&blk[j * inner..(j + 1) * inner]) {
                                *yv = (*xv - m) * a + b;
                            }
                        }
                    }
                });
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// LpNormalization

struct LpNorm {
    axis: i64,
    p: i64,
}

fn build_lp_norm(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let p = ctx.attr_i("p", 2)?;
    if p != 1 && p != 2 {
        return Err(ctx.invalid(format!("attribute 'p' must be 1 or 2, got {p}")));
    }
    Ok(Box::new(LpNorm {
        axis: ctx.attr_i("axis", -1)?,
        p,
    }))
}

impl Op for LpNorm {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "LpNormalization";
        let x = tensor_in(inputs, 0, OP)?;
        let axis = norm_axis(self.axis, x.rank(), OP)?;
        let d = x.shape().get(axis).copied().unwrap_or(1);
        let inner: usize = x.shape().iter().skip(axis + 1).product();
        let outer: usize = x.shape()[..axis.min(x.rank())].iter().product();
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build::<T>(xw.dtype(), x.shape(), |o| {
                for a in 0..outer {
                    for i in 0..inner {
                        let base = a * d * inner + i;
                        let mut s = T::ZERO;
                        for k in 0..d {
                            let v = xv[base + k * inner];
                            s += if self.p == 1 { v.abs() } else { v * v };
                        }
                        let norm = if self.p == 1 { s } else { s.sqrt() };
                        for k in 0..d {
                            o[base + k * inner] = if norm == T::ZERO { T::ZERO } else { xv[base + k * inner] / norm };
                        }
                    }
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// LRN

struct Lrn {
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
}

fn build_lrn(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let size = ctx.attr_i("size", 0)?;
    if size < 1 {
        return Err(ctx.invalid(format!("attribute 'size' must be >= 1, got {size}")));
    }
    Ok(Box::new(Lrn {
        size: size as usize,
        alpha: ctx.attr_f("alpha", 1e-4)?,
        beta: ctx.attr_f("beta", 0.75)?,
        bias: ctx.attr_f("bias", 1.0)?,
    }))
}

impl Op for Lrn {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "LRN";
        let x = tensor_in(inputs, 0, OP)?;
        if x.rank() < 2 {
            return Err(Error::ShapeMismatch(format!("{OP}: X must have rank >= 2")));
        }
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let inner: usize = x.shape()[2..].iter().product();
        let (before, after) = ((self.size - 1) / 2, (self.size - 1).div_ceil(2));
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            let (alpha, beta, bias) = (T::from_f32(self.alpha) / T::from_usize(self.size), T::from_f32(self.beta), T::from_f32(self.bias));
            Tensor::build::<T>(xw.dtype(), x.shape(), |o| {
                for b in 0..n {
                    for ch in 0..c {
                        let lo = ch.saturating_sub(before);
                        let hi = (ch + after).min(c - 1);
                        for i in 0..inner {
                            let mut s = T::ZERO;
                            for k in lo..=hi {
                                let v = xv[(b * c + k) * inner + i];
                                s += v * v;
                            }
                            let idx = (b * c + ch) * inner + i;
                            o[idx] = xv[idx] / (bias + alpha * s).powf(beta);
                        }
                    }
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// MeanVarianceNormalization

struct Mvn {
    axes: Vec<i64>,
}

fn build_mvn(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Mvn {
        axes: ctx.attr_ints("axes")?.unwrap_or(vec![0, 2, 3]),
    }))
}

/// For each element of `shape`, the index of its group when `axes` are reduced.
fn reduced_index(shape: &[usize], axes: &[usize]) -> (Vec<usize>, usize) {
    let kept: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, d)| if axes.contains(&i) { 1 } else { *d })
        .collect();
    let groups: usize = kept.iter().product();
    let st = broadcast_strides(&kept, shape);
    let mut ids = vec![0; shape.iter().product()];
    for_each_broadcast(shape, [&st], |i, [g]| ids[i] = g);
    let _ = strides_of;
    (ids, groups)
}

impl Op for Mvn {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "MeanVarianceNormalization";
        let x = tensor_in(inputs, 0, OP)?;
        let axes: Vec<usize> = self
            .axes
            .iter()
            .map(|a| norm_axis(*a, x.rank(), OP))
            .collect::<Result<_>>()?;
        let (ids, groups) = reduced_index(x.shape(), &axes);
        let count = (x.len() / groups.max(1)).max(1);
        let dt = x.dtype();
        let xw = widen(x)?;
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            let mut s = vec![T::ZERO; groups];
            let mut q = vec![T::ZERO; groups];
            for (v, g) in xv.iter().zip(&ids) {
                s[*g] += *v;
                q[*g] += *v * *v;
            }
            let n = T::from_usize(count);
            let mean: Vec<T> = s.iter().map(|v| *v / n).collect();
            let std: Vec<T> = q.iter().zip(&mean).map(|(q, m)| {
                let var = *q / n - *m * *m;
                (if var > T::ZERO { var } else { T::ZERO }).sqrt() + T::from_f64(1e-9)
            }).collect();
            Tensor::build::<T>(xw.dtype(), x.shape(), |o| {
                for (i, (v, g)) in xv.iter().zip(&ids).enumerate() {
                    o[i] = (*v - mean[*g]) / std[*g];
                }
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;

    #[test]
    fn batch_norm_inference_and_training() {
        let x = tf(&[1, 2, 1, 3], &[-1., 0., 1., 2., 3., 4.]);
        let s = tf(&[2], &[1., 1.5]);
        let b = tf(&[2], &[0., 1.]);
        let m = tf(&[2], &[0., 3.]);
        let v = tf(&[2], &[1., 1.5]);
        let y = &run_op(
            "BatchNormalization",
            15,
            vec![],
            vec![
                Some(x.clone()),
                Some(s.clone()),
                Some(b.clone()),
                Some(m.clone()),
                Some(v.clone()),
            ],
            1,
        )
        .unwrap()[0];
        // ch0: x/sqrt(1+1e-5); ch1: 1.5*(x-3)/sqrt(1.5+1e-5)+1
        let k0 = 1. / (1f32 + 1e-5).sqrt();
        let k1 = 1.5 / (1.5f32 + 1e-5).sqrt();
        assert_close(
            y.as_slice::<f32>().unwrap(),
            &[-k0, 0., k0, 1. - k1, 1., 1. + k1],
            1e-6,
        );
        let out = run_op(
            "BatchNormalization",
            15,
            vec![("training_mode", AttrValue::Int(1))],
            vec![Some(x), Some(s), Some(b), Some(m), Some(v)],
            3,
        )
        .unwrap();
        // Batch mean ch0 = 0, var = 2/3; running mean = 0.9*0 + 0.1*0 = 0, var = 0.9*1 + 0.1*2/3.
        assert_close(
            out[1].as_slice::<f32>().unwrap(),
            &[0., 0.9 * 3. + 0.1 * 3.],
            1e-6,
        );
        assert_close(
            out[2].as_slice::<f32>().unwrap(),
            &[0.9 + 0.1 * 2. / 3., 0.9 * 1.5 + 0.1 * 2. / 3.],
            1e-6,
        );
    }

    #[test]
    fn layer_norm_axes_and_stats() {
        let x = tf(&[2, 3], &[1., 2., 3., 2., 4., 6.]);
        let s = tf(&[3], &[1., 2., 1.]);
        let b = tf(&[3], &[0., 0., 1.]);
        let out = run_op(
            "LayerNormalization",
            17,
            vec![("epsilon", AttrValue::Float(0.0))],
            vec![Some(x.clone()), Some(s.clone()), Some(b)],
            3,
        )
        .unwrap();
        let k = (1.5f32).sqrt(); // 1/std for row 0 (var 2/3)
        assert_close(
            out[0].as_slice::<f32>().unwrap(),
            &[-k, 0., 1. + k, -k, 0., 1. + k],
            1e-5,
        );
        assert_eq!(out[1].shape(), &[2, 1]);
        assert_close(out[1].as_slice::<f32>().unwrap(), &[2., 4.], 1e-6);
        assert_close(out[2].as_slice::<f32>().unwrap(), &[k, k / 2.], 1e-5);
        // axis 0 over everything.
        let s6 = tf(&[2, 3], &[1.; 6]);
        let out = run_op(
            "LayerNormalization",
            17,
            vec![("axis", AttrValue::Int(-2))],
            vec![Some(x.clone()), Some(s6), None],
            1,
        )
        .unwrap();
        assert_close(
            &[out[0].as_slice::<f32>().unwrap().iter().sum::<f32>()],
            &[0.],
            1e-5,
        );
        // RMS.
        let out = run_op(
            "RMSNormalization",
            23,
            vec![("epsilon", AttrValue::Float(0.0))],
            vec![Some(x), Some(s)],
            1,
        )
        .unwrap();
        let r = (14f32 / 3.).sqrt();
        assert_close(
            &out[0].as_slice::<f32>().unwrap()[..3],
            &[1. / r, 4. / r, 3. / r],
            1e-5,
        );
    }

    #[test]
    fn instance_group_lp_lrn_mvn() {
        let x = tf(&[1, 2, 2], &[1., 3., 2., 6.]);
        let s = tf(&[2], &[1., 2.]);
        let b = tf(&[2], &[0., 1.]);
        let e0 = vec![("epsilon", AttrValue::Float(0.0))];
        let y = &run_op(
            "InstanceNormalization",
            6,
            e0.clone(),
            vec![Some(x.clone()), Some(s.clone()), Some(b.clone())],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[-1., 1., -1., 3.], 1e-6);
        let mut ga = e0.clone();
        ga.push(("num_groups", AttrValue::Int(1)));
        let y = &run_op(
            "GroupNormalization",
            21,
            ga,
            vec![Some(x.clone()), Some(s), Some(b)],
            1,
        )
        .unwrap()[0];
        // mean 3, var (4+0+1+9)/4 = 3.5
        let k = 1. / 3.5f32.sqrt();
        assert_close(
            y.as_slice::<f32>().unwrap(),
            &[-2. * k, 0., 2. * (-1. * k) + 1., 2. * 3. * k + 1.],
            1e-6,
        );
        let y = &run_op(
            "LpNormalization",
            1,
            vec![],
            vec![Some(tf(&[2, 2], &[3., 4., 0., 0.]))],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.6, 0.8, 0., 0.]);
        let y = &run_op(
            "LRN",
            13,
            vec![
                ("size", AttrValue::Int(3)),
                ("alpha", AttrValue::Float(3.0)),
                ("beta", AttrValue::Float(1.0)),
            ],
            vec![Some(tf(&[1, 2], &[1., 2.]))],
            1,
        )
        .unwrap()[0];
        // sum = 5 for both: x / (1 + 1*5)
        assert_close(y.as_slice::<f32>().unwrap(), &[1. / 6., 2. / 6.], 1e-6);
        let y = &run_op(
            "MeanVarianceNormalization",
            13,
            vec![("axes", ints(&[1]))],
            vec![Some(tf(&[1, 2], &[1., 3.]))],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[-1., 1.], 1e-6);
    }
}
