//! Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool, MaxUnpool.
//!
//! Windows are resolved by [`super::window`] and run over 3-D planes (1-D and 2-D pools use
//! leading axes of size 1), one (image, channel) plane per task in parallel.

use super::float_io::{narrow, widen};
use super::window::{Window3, WindowAttrs};
use crate::error::{Error, Result};
use crate::kernels::float::{as_f32, as_f32_mut, Float};
use crate::kernels::SendPtr;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::borrow::Cow;

pub fn register(r: &mut Registry) {
    r.add("MaxPool", build_max_pool);
    r.add("AveragePool", build_average_pool);
    r.add("LpPool", build_lp_pool);
    r.add("GlobalAveragePool", |_| {
        Ok(Box::new(GlobalPool {
            kind: GlobalKind::Avg,
        }))
    });
    r.add("GlobalMaxPool", |_| {
        Ok(Box::new(GlobalPool {
            kind: GlobalKind::Max,
        }))
    });
    r.add("GlobalLpPool", build_global_lp_pool);
    r.add("MaxUnpool", build_max_unpool);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PoolKind {
    Max,
    Avg { count_include_pad: bool },
    Lp { p: f64 },
}

struct Pool {
    name: &'static str,
    kind: PoolKind,
    attrs: WindowAttrs,
    storage_order: usize,
    /// MaxPool's optional `Indices` output is requested.
    want_indices: bool,
}

fn build_pool(ctx: &BuildContext, name: &'static str, kind: PoolKind) -> Result<Box<dyn Op>> {
    let attrs = WindowAttrs::parse(ctx)?;
    if attrs.kernel.is_none() {
        return Err(ctx.invalid("attribute 'kernel_shape' is required"));
    }
    let storage_order = ctx.attr_i("storage_order", 0)?;
    if !(0..=1).contains(&storage_order) {
        return Err(ctx.invalid(format!("storage_order must be 0 or 1, got {storage_order}")));
    }
    let want_indices = kind == PoolKind::Max && ctx.node.outputs.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(Pool {
        name,
        kind,
        attrs,
        storage_order: storage_order as usize,
        want_indices,
    }))
}

pub(crate) fn build_max_pool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build_pool(ctx, "MaxPool", PoolKind::Max)
}

fn build_average_pool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build_pool(
        ctx,
        "AveragePool",
        PoolKind::Avg {
            count_include_pad: ctx.attr_i("count_include_pad", 0)? != 0,
        },
    )
}

fn build_lp_pool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    // Opset 1 had a float `p`; later opsets an int.
    let p = match ctx.attr("p") {
        Some(crate::graph::ir::AttrValue::Float(f)) => *f as f64,
        _ => ctx.attr_i("p", 2)? as f64,
    };
    build_pool(ctx, "LpPool", PoolKind::Lp { p })
}


/// Max or average pool of one 2-D plane (`w.input[0] == w.kernel[0] == 1`) without indices:
/// per output row, the valid input rows are first combined elementwise into `tmp` (contiguous,
/// vectorizable; a single valid row, as in 1-D pools, is read in place), then each output takes
/// its valid taps of that line. Same results as
/// [`pool_plane`] except for NaN inputs of MaxPool: both keep the first of the taps they
/// compare when one is NaN, but this path compares rows before columns (ONNX leaves NaN
/// handling open; onnxruntime's result also depends on the tap order).
#[inline(always)]
fn pool_plane_2d<T: Float>(
    w: &Window3,
    avg: Option<bool>,
    cols: &[(usize, usize)],
    x: &[T],
    y: &mut [T],
    tmp: &mut Vec<T>,
    hred: &mut Vec<T>,
) {
    let [_, oh_n, ow_n] = w.out;
    let [_, ih_n, iw_n] = w.input;
    let kh_n = w.kernel[1];
    tmp.resize(iw_n, T::ZERO);
    let dw = w.dilations[2];
    // The output columns whose kw taps are all inside the input (consecutive).
    let kw_all = |c: &(usize, usize)| c.1 == w.kernel[2];
    let inner_lo = cols.iter().position(kw_all).unwrap_or(0);
    let inner = (inner_lo, inner_lo + cols[inner_lo..].iter().take_while(|c| kw_all(c)).count());
    for oh in 0..oh_n {
        let mut nrows = 0usize;
        let row = |ih: isize| &x[ih as usize * iw_n..(ih as usize + 1) * iw_n];
        let mut valid = (0..kh_n).map(|kh| w.coord(1, oh, kh)).filter(|&ih| ih >= 0 && ih < ih_n as isize);
        // A window of one valid row (1-D pools, kernel height 1) reads that row in place.
        let single = {
            let mut v = valid.clone();
            match (v.next(), v.next()) {
                (Some(a), None) => Some(a),
                _ => None,
            }
        };
        if single.is_some() {
            nrows = 1;
            valid.next();
        } else if avg.is_none() {
            // The first three rows in one pass that writes `tmp` without reading it: an
            // in-place select compiles to compare + masked store, much slower than a max.
            let (a, b, c) = (valid.next(), valid.next(), valid.next());
            match (a, b, c) {
                (Some(a), Some(b), Some(c)) => {
                    for (((t, v0), v1), v2) in tmp.iter_mut().zip(row(a)).zip(row(b)).zip(row(c)) {
                        let m = if *v1 > *v0 { *v1 } else { *v0 };
                        *t = if *v2 > m { *v2 } else { m };
                    }
                    nrows = 3;
                }
                (Some(a), Some(b), None) => {
                    for ((t, v0), v1) in tmp.iter_mut().zip(row(a)).zip(row(b)) {
                        *t = if *v1 > *v0 { *v1 } else { *v0 };
                    }
                    nrows = 2;
                }
                (Some(a), None, _) => {
                    tmp.copy_from_slice(row(a));
                    nrows = 1;
                }
                _ => {}
            }
        }
        for ih in valid {
            let row = row(ih);
            if nrows == 0 {
                tmp.copy_from_slice(row);
            } else if avg.is_some() {
                tmp.iter_mut().zip(row).for_each(|(t, v)| *t += *v);
            } else {
                tmp.iter_mut().zip(row).for_each(|(t, v)| *t = if *v > *t { *v } else { *t });
            }
            nrows += 1;
        }
        let line: &[T] = match single {
            Some(a) => row(a),
            None => &tmp[..],
        };
        // Interior columns (all kw taps valid, dilation 1) in vectorizable passes over the
        // output row, tap by tap in tap order (same results as the per-column loop below).
        // Strided windows read `line` split into phases (`hred[r·plen + j] = line[j·sw + r]`),
        // so that tap t of consecutive outputs reads consecutive values.
        let kw_n = w.kernel[2];
        let (sw, pl) = (w.strides[2].max(1), w.pad_begin[2]);
        let whole = nrows > 0 && dw <= 1 && kw_n <= iw_n && inner.1 > inner.0;
        let yrow = &mut y[oh * ow_n..(oh + 1) * ow_n];
        let rows_padded = match avg {
            Some(true) => w.taps_in(1, oh, -(w.pad_begin[1] as isize), (w.input[1] + w.pad_end[1]) as isize),
            _ => 0,
        };
        if whole {
            let plen = iw_n.div_ceil(sw);
            let n_out = inner.1 - inner.0;
            let ph_len = if sw == 1 { 0 } else { sw * plen };
            hred.resize(ph_len + 2 * n_out, T::ZERO);
            let (ph_buf, scratch) = hred.split_at_mut(ph_len);
            if sw == 2 {
                // Whole pairs first (a branch-free loop that vectorizes).
                let (even, odd) = ph_buf.split_at_mut(plen);
                for ((pair, e), o) in line[..iw_n / 2 * 2].chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
                    *e = pair[0];
                    *o = pair[1];
                }
                if iw_n % 2 == 1 {
                    (even[plen - 1], odd[plen - 1]) = (line[iw_n - 1], T::ZERO);
                }
            } else if sw > 2 {
                // Whole strides first, one input window after another (no bounds test per
                // value: 3-4x faster than filling the phases one at a time), then the tail.
                let whole_n = iw_n / sw;
                // f32 on AVX-512: the split is a transpose of `whole_n × sw` into `sw × plen`,
                // done in registers.
                let in_registers = match (as_f32(&line[..whole_n * sw]), as_f32_mut(&mut ph_buf[..])) {
                    (Some(l), Some(p)) => crate::kernels::transpose::transpose_block_f32(l, sw, sw, whole_n, p, plen),
                    _ => false,
                };
                if !in_registers {
                    for (j, chunk) in line[..whole_n * sw].chunks_exact(sw).enumerate() {
                        for (r, v) in chunk.iter().enumerate() {
                            ph_buf[r * plen + j] = *v;
                        }
                    }
                }
                for j in whole_n..plen {
                    for r in 0..sw {
                        ph_buf[r * plen + j] = if j * sw + r < iw_n { line[j * sw + r] } else { T::ZERO };
                    }
                }
            }
            let phases: &[T] = if sw == 1 { line } else { ph_buf };
            // The values of tap t for the interior outputs.
            let src = |t: usize| -> &[T] {
                let a = t as isize - pl as isize;
                let (r, d) = (a.rem_euclid(sw as isize) as usize, a.div_euclid(sw as isize));
                let start = r * plen + (inner.0 as isize + d) as usize;
                &phases[start..start + n_out]
            };
            let seg = &mut yrow[inner.0..inner.1];
            match avg {
                Some(include_pad) => {
                    seg.copy_from_slice(src(0));
                    for t in 1..kw_n {
                        seg.iter_mut().zip(src(t)).for_each(|(h, v)| *h += *v);
                    }
                    let n = T::from_usize(if include_pad { rows_padded } else { nrows } * kw_n);
                    seg.iter_mut().for_each(|v| *v = *v / n);
                }
                None if kw_n == 1 => seg.copy_from_slice(src(0)),
                None => {
                    // Each pass writes another buffer than it reads: an in-place select
                    // compiles to compare + masked store, twice as slow as a plain max.
                    let (mut cur, mut nxt) = scratch.split_at_mut(n_out);
                    for t in 1..kw_n {
                        let prev: &[T] = if t == 1 { src(0) } else { &*cur };
                        let dst: &mut [T] = if t == kw_n - 1 { &mut *seg } else { &mut *nxt };
                        for ((d, v), p) in dst.iter_mut().zip(src(t)).zip(prev) {
                            *d = if *v > *p { *v } else { *p };
                        }
                        std::mem::swap(&mut cur, &mut nxt);
                    }
                }
            }
        }
        let rest = if whole { (0..inner.0).chain(inner.1..ow_n) } else { (0..ow_n).chain(0..0) };
        for ow in rest {
            let out = &mut yrow[ow];
            let (lo, n) = cols[ow];
            let count = if nrows > 0 { n } else { 0 };
            let mut acc = if avg.is_some() { T::ZERO } else { T::NEG_INFINITY };
            if count > 0 {
                let d = dw.max(1);
                let taps = &line[lo..lo + (n - 1) * d + 1];
                if avg.is_some() {
                    let mut k = 0;
                    while k < taps.len() {
                        acc += taps[k];
                        k += d;
                    }
                } else if d == 1 {
                    acc = taps[0];
                    for &v in &taps[1..] {
                        acc = if v > acc { v } else { acc };
                    }
                } else {
                    acc = taps[0];
                    let mut k = d;
                    while k < taps.len() {
                        let v = taps[k];
                        acc = if v > acc { v } else { acc };
                        k += d;
                    }
                }
            }
            *out = match avg {
                None => acc,
                Some(include_pad) => {
                    let n = if include_pad {
                        rows_padded
                            * w.taps_in(2, ow, -(w.pad_begin[2] as isize), (w.input[2] + w.pad_end[2]) as isize)
                    } else {
                        count * nrows
                    };
                    if n == 0 {
                        T::ZERO
                    } else {
                        acc / T::from_usize(n)
                    }
                }
            };
        }
    }
}

/// [`pool_plane_2d`] for f32, compiled for each SIMD level (its row passes vectorize 16 wide
/// on AVX-512 instead of the baseline's 4).
#[inline(always)]
fn pool_plane_2d_body<M: crate::kernels::simd::MulAdd>(
    w: &Window3,
    avg: Option<bool>,
    cols: &[(usize, usize)],
    x: &[f32],
    y: &mut [f32],
    tmp: &mut Vec<f32>,
    hred: &mut Vec<f32>,
) {
    pool_plane_2d(w, avg, cols, x, y, tmp, hred)
}

crate::multiversion! {
    fn pool_plane_2d_f32(
        w: &Window3,
        avg: Option<bool>,
        cols: &[(usize, usize)],
        x: &[f32],
        y: &mut [f32],
        tmp: &mut Vec<f32>,
        hred: &mut Vec<f32>,
    ) = pool_plane_2d_body;
}

/// Per output column of a 2-D window: the first valid input column and the number of valid
/// taps (valid taps are consecutive in kw, one dilation apart).
fn pool_columns(w: &Window3) -> Vec<(usize, usize)> {
    let iw_n = w.input[2];
    (0..w.out[2])
        .map(|ow| {
            let mut first = None;
            let mut n = 0;
            for kw in 0..w.kernel[2] {
                let iw = w.coord(2, ow, kw);
                if iw >= 0 && iw < iw_n as isize {
                    first.get_or_insert(iw as usize);
                    n += 1;
                }
            }
            (first.unwrap_or(0), n)
        })
        .collect()
}

/// Pool one plane. `idx` receives flat input indices (MaxPool), offset by `base`.
fn pool_plane<T: Float>(
    w: &Window3,
    kind: PoolKind,
    storage_order: usize,
    x: &[T],
    y: &mut [T],
    mut idx: Option<&mut [i64]>,
    base: usize,
) {
    let [od_n, oh_n, ow_n] = w.out;
    let [id_n, ih_n, iw_n] = w.input;
    let [kd_n, kh_n, kw_n] = w.kernel;
    let mut o = 0;
    for od in 0..od_n {
        for oh in 0..oh_n {
            for ow in 0..ow_n {
                let mut acc = match kind {
                    PoolKind::Max => T::NEG_INFINITY,
                    _ => T::ZERO,
                };
                let mut best = 0usize;
                let mut count = 0usize;
                for kd in 0..kd_n {
                    let id = w.coord(0, od, kd);
                    if id < 0 || id >= id_n as isize {
                        continue;
                    }
                    for kh in 0..kh_n {
                        let ih = w.coord(1, oh, kh);
                        if ih < 0 || ih >= ih_n as isize {
                            continue;
                        }
                        let row = (id as usize * ih_n + ih as usize) * iw_n;
                        for kw in 0..kw_n {
                            let iw = w.coord(2, ow, kw);
                            if iw < 0 || iw >= iw_n as isize {
                                continue;
                            }
                            let pos = row + iw as usize;
                            let v = x[pos];
                            match kind {
                                PoolKind::Max => {
                                    if v > acc || count == 0 && !(v < acc) {
                                        acc = v;
                                        best = pos;
                                    }
                                }
                                PoolKind::Avg { .. } => acc += v,
                                PoolKind::Lp { p } => acc += v.abs().powf(T::from_f64(p)),
                            }
                            count += 1;
                        }
                    }
                }
                y[o] = match kind {
                    PoolKind::Max => acc,
                    PoolKind::Avg { count_include_pad } => {
                        let n = if count_include_pad {
                            // Taps inside the padded input (explicit or automatic pads) count.
                            (0..3)
                                .map(|a| {
                                    let o_a = [od, oh, ow][a];
                                    w.taps_in(
                                        a,
                                        o_a,
                                        -(w.pad_begin[a] as isize),
                                        (w.input[a] + w.pad_end[a]) as isize,
                                    )
                                })
                                .product::<usize>()
                        } else {
                            count
                        };
                        if n == 0 {
                            T::ZERO
                        } else {
                            acc / T::from_usize(n)
                        }
                    }
                    PoolKind::Lp { p } => acc.powf(T::ONE / T::from_f64(p)),
                };
                if let Some(ix) = idx.as_deref_mut() {
                    let (d, rem) = (best / (ih_n * iw_n), best % (ih_n * iw_n));
                    let (h, wv) = (rem / iw_n, rem % iw_n);
                    let flat = if storage_order == 1 {
                        d + h * id_n + wv * id_n * ih_n
                    } else {
                        best
                    };
                    ix[o] = (base + flat) as i64;
                }
                o += 1;
            }
        }
    }
}

impl Op for Pool {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, self.name)?;
        if x.rank() < 3 {
            return Err(Error::ShapeMismatch(format!(
                "{}: X must have rank >= 3, got shape {:?}",
                self.name,
                x.shape()
            )));
        }
        let kernel = self.attrs.kernel.clone().unwrap_or_default();
        let win = self.attrs.resolve(&x.shape()[2..], &kernel, self.name)?;
        let w3 = win.as_3d().map_err(|e| e.context(self.name))?;
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend(&win.out);
        let dt = x.dtype();
        // Integer MaxPool (int8/uint8) runs exactly in f32.
        let xw: Cow<Tensor> = match dt {
            DType::Int8 | DType::Uint8 if self.kind == PoolKind::Max => {
                Cow::Owned(Tensor::from_vec(
                    x.shape(),
                    x.to_f64_vec()?.into_iter().map(|v| v as f32).collect(),
                )?)
            }
            _ => widen(x)?,
        };
        let planes = x.shape()[0] * x.shape()[1];
        let (in_sz, out_sz) = (w3.in_size(), w3.out_size());
        let want_idx = self.want_indices;
        let fast = !want_idx && w3.input[0] == 1 && w3.kernel[0] == 1 && w3.out[0] == 1;
        let avg = match self.kind {
            PoolKind::Avg { count_include_pad } => Some(count_include_pad),
            _ => None,
        };
        let fast = fast && !matches!(self.kind, PoolKind::Lp { .. });
        // Max and average pools of f32 entirely in registers where the CPU and window allow.
        let in_registers = fast && crate::kernels::maxpool::applicable(&w3);
        let red = match avg {
            None => crate::kernels::maxpool::Reduce::Max,
            Some(include_pad) => crate::kernels::maxpool::Reduce::Avg { include_pad },
        };
        let cols = if fast && !in_registers { pool_columns(&w3) } else { Vec::new() };
        let mut indices = vec![0i64; if want_idx { planes * out_sz } else { 0 }];
        let y = crate::with_float!(xw.dtype(), self.name, T => {
            let xv = xw.as_slice::<T>()?;
            // Every output of every plane is written.
            Tensor::build_uninit::<T>(xw.dtype(), &out_shape, |o| {
                let yp = SendPtr::new(o);
                let ip = SendPtr::new(&mut indices);
                let oh_n = w3.out[1];
                if let (true, Some(x32)) = (in_registers && ctx.pool.threads() > 1 && oh_n >= 2 * ctx.pool.threads(), as_f32(xv)) {
                    // Several threads: each takes a band of output rows of every plane, as the
                    // convolution before the pool split its output (by pixels), so that each
                    // thread reads the rows it wrote from its own cache (split by planes, half
                    // of every thread's input came from the other core: squeezenet1_1's first
                    // pool scaled to 0.86 of its one-thread time on two threads).
                    let row_work = (planes * w3.out[2] * w3.kernel_size()).max(1);
                    ctx.pool.parallel_for(oh_n, (1 << 12) / row_work + 1, |r0, r1| {
                        // SAFETY: y holds every plane; rows r0..r1 of each are this task's only.
                        unsafe { crate::kernels::maxpool::pool_planes_rows_f32(&w3, red, planes, r0..r1, x32, yp.offset(0).0 as *mut f32) };
                    });
                    return Ok(());
                }
                ctx.pool.parallel_for(planes, (1 << 12) / (out_sz * w3.kernel_size()).max(1) + 1, |a, b| {
                    let (mut tmp, mut hred) = (Vec::new(), Vec::new());
                    let (mut tmp32, mut hred32) = (Vec::new(), Vec::new());
                    if in_registers {
                        // SAFETY: planes a..b are written by this task only.
                        let yo = unsafe { yp.slice(a * out_sz, (b - a) * out_sz) };
                        let xp = &xv[a * in_sz..b * in_sz];
                        if let (Some(x32), Some(y32)) = (as_f32(xp), as_f32_mut(yo)) {
                            crate::kernels::maxpool::pool_planes_f32(&w3, red, b - a, x32, y32);
                            return;
                        }
                    }
                    for p in a..b {
                        if fast {
                            // SAFETY: plane p is written by this task only.
                            let yo = unsafe { yp.slice(p * out_sz, out_sz) };
                            let xp = &xv[p * in_sz..(p + 1) * in_sz];
                            match (as_f32(xp), as_f32_mut(yo)) {
                                (Some(x32), Some(y32)) => pool_plane_2d_f32(&w3, avg, &cols, x32, y32, &mut tmp32, &mut hred32),
                                _ => pool_plane_2d(&w3, avg, &cols, xp, yo, &mut tmp, &mut hred),
                            }
                            continue;
                        }
                        // SAFETY: plane p is written by this task only.
                        let yo = unsafe { yp.slice(p * out_sz, out_sz) };
                        let io = if want_idx { Some(unsafe { ip.slice(p * out_sz, out_sz) }) } else { None };
                        pool_plane(&w3, self.kind, self.storage_order, &xv[p * in_sz..(p + 1) * in_sz], yo, io, p * in_sz);
                    }
                });
                Ok(())
            })
        })?;
        let y = match dt {
            DType::Int8 | DType::Uint8 => {
                let v = y.as_slice::<f32>()?;
                if dt == DType::Int8 {
                    Tensor::from_vec(&out_shape, v.iter().map(|f| *f as i8).collect::<Vec<i8>>())?
                } else {
                    Tensor::from_vec(&out_shape, v.iter().map(|f| *f as u8).collect::<Vec<u8>>())?
                }
            }
            _ => narrow(y, dt)?,
        };
        let mut out = vec![Value::Tensor(y)];
        if want_idx {
            out.push(Tensor::from_vec(&out_shape, indices)?.into());
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum GlobalKind {
    Avg,
    Max,
    Lp(f64),
}

struct GlobalPool {
    kind: GlobalKind,
}

fn build_global_lp_pool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let p = match ctx.attr("p") {
        Some(crate::graph::ir::AttrValue::Float(f)) => *f as f64,
        _ => ctx.attr_i("p", 2)? as f64,
    };
    Ok(Box::new(GlobalPool {
        kind: GlobalKind::Lp(p),
    }))
}

fn global_plane<T: Float>(kind: GlobalKind, x: &[T]) -> T {
    match kind {
        GlobalKind::Avg => crate::kernels::float::lane_sum(x, |v| v) / T::from_usize(x.len().max(1)),
        GlobalKind::Max => {
            x.iter().fold(
                T::NEG_INFINITY,
                |m, v| if *v > m || v.is_nan() { *v } else { m },
            )
        }
        GlobalKind::Lp(p) => {
            let pt = T::from_f64(p);
            let mut s = T::ZERO;
            for v in x {
                s += v.abs().powf(pt);
            }
            s.powf(T::ONE / pt)
        }
    }
}

impl Op for GlobalPool {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let name = match self.kind {
            GlobalKind::Avg => "GlobalAveragePool",
            GlobalKind::Max => "GlobalMaxPool",
            GlobalKind::Lp(_) => "GlobalLpPool",
        };
        let x = tensor_in(inputs, 0, name)?;
        if x.rank() < 2 {
            return Err(Error::ShapeMismatch(format!(
                "{name}: X must have rank >= 2, got shape {:?}",
                x.shape()
            )));
        }
        let dt = x.dtype();
        let xw = widen(x)?;
        let planes = x.shape()[0] * x.shape()[1];
        let sz: usize = x.shape()[2..].iter().product();
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend(std::iter::repeat(1).take(x.rank() - 2));
        let y = crate::with_float!(xw.dtype(), name, T => {
            let xv = xw.as_slice::<T>()?;
            Tensor::build_uninit::<T>(xw.dtype(), &out_shape, |o| {
                let yp = SendPtr::new(o);
                ctx.pool.parallel_for(planes, (1 << 14) / sz.max(1) + 1, |a, b| {
                    // SAFETY: outputs a..b belong to this task.
                    let yo = unsafe { yp.slice(a, b - a) };
                    if let (GlobalKind::Avg, Some(x32), Some(y32)) = (self.kind, as_f32(xv), as_f32_mut(yo)) {
                        return crate::kernels::float::plane_means_f32(&x32[a * sz..b * sz], sz, y32);
                    }
                    if let (GlobalKind::Max, Some(x32), Some(y32)) = (self.kind, as_f32(xv), as_f32_mut(yo)) {
                        return crate::kernels::float::plane_maxes_f32(&x32[a * sz..b * sz], sz, y32);
                    }
                    for (p, v) in (a..b).zip(yo.iter_mut()) {
                        *v = global_plane(self.kind, &xv[p * sz..(p + 1) * sz]);
                    }
                });
                Ok(())
            })
        })?;
        Ok(vec![narrow(y, dt)?.into()])
    }
}

/// `MaxUnpool` (opsets 9, 11, 22): scatter X to the positions given by Indices.
struct MaxUnpool {
    attrs: WindowAttrs,
}

fn build_max_unpool(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attrs = WindowAttrs::parse(ctx)?;
    if attrs.kernel.is_none() {
        return Err(ctx.invalid("attribute 'kernel_shape' is required"));
    }
    Ok(Box::new(MaxUnpool { attrs }))
}

impl Op for MaxUnpool {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "MaxUnpool";
        let x = tensor_in(inputs, 0, OP)?;
        let ind = tensor_in(inputs, 1, OP)?.to_i64_vec()?;
        let oshape = opt_tensor_in(inputs, 2, OP)?;
        if x.rank() < 3 || ind.len() != x.len() {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: X {:?} must have rank >= 3 and as many indices as values",
                x.shape()
            )));
        }
        let k = self.attrs.kernel.clone().unwrap_or_default();
        let ns = x.rank() - 2;
        if k.len() != ns {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: kernel_shape has {} axes for {ns} spatial axes",
                k.len()
            )));
        }
        let strides = self.attrs.strides.clone().unwrap_or(vec![1; ns]);
        let pads = self.attrs.pads.clone().unwrap_or(vec![0; 2 * ns]);
        let mut inferred = x.shape()[..2].to_vec();
        for i in 0..ns {
            let full = (x.shape()[2 + i].max(1) - 1) * strides[i] + k[i];
            inferred.push(full.saturating_sub(pads[i] + pads[ns + i]));
        }
        let shape: Vec<usize> = match oshape {
            Some(t) => t
                .to_i64_vec()?
                .into_iter()
                .map(|v| v.max(0) as usize)
                .collect(),
            None => inferred.clone(),
        };
        if shape.len() != x.rank() || shape.iter().zip(&inferred).any(|(a, b)| a < b) {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: output_shape {shape:?} is smaller than the inferred {inferred:?}"
            )));
        }
        let dt = x.dtype();
        let xw = widen(x)?;
        let inferred_len: usize = inferred.iter().product();
        let y = crate::with_float!(xw.dtype(), OP, T => {
            let xv = xw.as_slice::<T>()?;
            let mut flat = vec![T::ZERO; inferred_len];
            for (v, &i) in xv.iter().zip(&ind) {
                let slot = flat.get_mut(i as usize).filter(|_| i >= 0).ok_or_else(|| {
                    Error::Runtime(format!("{OP}: index {i} in I is outside the output of {inferred_len} elements"))
                })?;
                *slot = *v;
            }
            // Place the inferred block at the origin of the (possibly larger) output.
            Tensor::build::<T>(xw.dtype(), &shape, |o| {
                let st_out = crate::ops::common::strides_of(&shape);
                let st_in = crate::ops::common::strides_of(&inferred);
                for (i, v) in flat.iter().enumerate() {
                    let mut off = 0;
                    for d in 0..shape.len() {
                        off += (i / st_in[d]) % inferred[d] * st_out[d];
                    }
                    o[off] = *v;
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

    #[test]
    fn row_pass_pooling_matches_the_per_output_loop() {
        use super::*;
        // Strides 1-8 (phase split: whole strides, then a partial one), kernels 1-8, pads,
        // ceil-mode overhang, max and both averages, rows of 1 to 3 valid taps.
        let mut cases = Vec::new();
        for (k, s) in [(3, 2), (2, 2), (3, 1), (1, 1), (4, 3), (3, 3), (2, 1), (8, 8), (6, 5), (4, 7)] {
            for (pl, pr, extra) in [(0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 1)] {
                cases.push((k, s, pl, pr, extra));
            }
        }
        for (k, s, pad_b, pad_e, extra) in cases {
            for (ih, iw) in [(9, 17), (7, 40), (12, 11), (8, 83)] {
                if ih.min(iw) + pad_b + pad_e + extra < k {
                    continue;
                }
                let out = |n: usize| (n + pad_b + pad_e + extra - k) / s + 1;
                let w = Window3 {
                    input: [1, ih, iw],
                    kernel: [1, k, k],
                    strides: [1, s, s],
                    dilations: [1, 1, 1],
                    pad_begin: [0, pad_b, pad_b],
                    pad_end: [0, pad_e, pad_e],
                    out: [1, out(ih), out(iw)],
                };
                let x: Vec<f32> = (0..ih * iw).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
                let cols = pool_columns(&w);
                for (kind, avg) in [
                    (PoolKind::Max, None),
                    (PoolKind::Avg { count_include_pad: false }, Some(false)),
                    (PoolKind::Avg { count_include_pad: true }, Some(true)),
                ] {
                    let mut want = vec![0f32; w.out_size()];
                    pool_plane(&w, kind, 0, &x, &mut want, None, 0);
                    let mut got = vec![0f32; w.out_size()];
                    pool_plane_2d_f32(&w, avg, &cols, &x, &mut got, &mut Vec::new(), &mut Vec::new());
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(g.to_bits() == e.to_bits() || (g - e).abs() <= 1e-4 * e.abs(), "k{k} s{s} pads {pad_b}/{pad_e}+{extra} {ih}x{iw} {avg:?} [{i}]: {g} vs {e}");
                    }
                }
            }
        }
    }

    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    fn iota(n: usize) -> Vec<f32> {
        (1..=n).map(|i| i as f32).collect()
    }

    #[test]
    fn max_pool_with_indices_and_ceil() {
        // 1x1x4x4, kernel 2, stride 2.
        let x = tf(&[1, 1, 4, 4], &iota(16));
        let attrs = vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))];
        let out = run_op("MaxPool", 12, attrs, vec![Some(x.clone())], 2).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[6., 8., 14., 16.]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[5, 7, 13, 15]);
        // storage_order 1: (h, w) -> h + w*H.
        let attrs = vec![
            ("kernel_shape", ints(&[2, 2])),
            ("strides", ints(&[2, 2])),
            ("storage_order", AttrValue::Int(1)),
        ];
        let out = run_op("MaxPool", 12, attrs, vec![Some(x.clone())], 2).unwrap();
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[5, 13, 7, 15]);
        // ceil_mode: kernel 3 stride 2 on 4 -> ceil(1/2)+1 = 2.
        let attrs = vec![
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
            ("ceil_mode", AttrValue::Int(1)),
        ];
        let out = run_op("MaxPool", 12, attrs, vec![Some(x)], 1).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 2, 2]);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[11., 12., 15., 16.]);
        // uint8.
        let x = Tensor::from_slice(&[1, 1, 3], &[3u8, 200, 7]).unwrap();
        let out = run_op(
            "MaxPool",
            12,
            vec![("kernel_shape", ints(&[2]))],
            vec![Some(x)],
            1,
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<u8>().unwrap(), &[200, 200]);
    }

    /// MaxPool on 1-3 threads (bands of output rows of every plane on several threads, whole
    /// planes on one), batch 2, ceil mode and padding, against a per-output loop.
    #[test]
    fn pools_on_any_thread_count_match_the_definition() {
        // MaxPool and both AveragePools through the op (the register kernels split by row
        // bands or planes on several threads), against the per-output definition.
        let (n, c, h, w) = (2usize, 5usize, 23usize, 21usize);
        let xv: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 7919) % 211) as f32 - 100.0).collect();
        let (oh, ow) = (12usize, 11usize); // kernel 3, stride 2, pads 1, ceil: 23 -> 12, 21 -> 11
        for (op, include_pad) in [("MaxPool", false), ("AveragePool", false), ("AveragePool", true)] {
            let mut want = vec![0f32; n * c * oh * ow];
            for p in 0..n * c {
                for (i, o) in want[p * oh * ow..(p + 1) * oh * ow].iter_mut().enumerate() {
                    let (mut max, mut sum, mut taps, mut padded) = (f32::NEG_INFINITY, 0f32, 0, 0);
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (ih, iw) = ((i / ow * 2 + kh) as isize - 1, (i % ow * 2 + kw) as isize - 1);
                            if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                                let v = xv[p * h * w + ih as usize * w + iw as usize];
                                max = max.max(v);
                                sum += v;
                                taps += 1;
                            }
                            // Inside the padded input (ceil mode reaches past it).
                            padded += (ih <= h as isize && iw <= w as isize) as usize;
                        }
                    }
                    *o = if op == "MaxPool" { max } else { sum / if include_pad { padded } else { taps } as f32 };
                }
            }
            for threads in [1, 2, 3] {
                let mut attrs = vec![("kernel_shape", ints(&[3, 3])), ("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1])), ("ceil_mode", AttrValue::Int(1))];
                if op == "AveragePool" {
                    attrs.push(("count_include_pad", AttrValue::Int(include_pad as i64)));
                }
                let out = run_op_with(op, 19, attrs, vec![Some(tf(&[n, c, h, w], &xv))], &[], 1, threads).unwrap();
                assert_eq!(out[0].shape(), &[n, c, oh, ow]);
                // The sums of integers are exact; then a division or a reciprocal's product.
                for (i, (g, e)) in out[0].as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                    assert!((g - e).abs() <= 1e-6 * e.abs(), "{op} include_pad {include_pad}, {threads} threads: [{i}] {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn average_pool_pads() {
        let x = tf(&[1, 1, 3, 3], &iota(9));
        let attrs = |cip: i64| {
            vec![
                ("kernel_shape", ints(&[2, 2])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("count_include_pad", AttrValue::Int(cip)),
            ]
        };
        let y = &run_op("AveragePool", 11, attrs(0), vec![Some(x.clone())], 1).unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        assert_close(
            &y.as_slice::<f32>().unwrap()[..4],
            &[1., 1.5, 2.5, 3.],
            1e-6,
        );
        let y = &run_op("AveragePool", 11, attrs(1), vec![Some(x.clone())], 1).unwrap()[0];
        assert_close(
            &y.as_slice::<f32>().unwrap()[..4],
            &[0.25, 0.75, 1.25, 0.75],
            1e-6,
        );
        // SAME_UPPER, kernel 2 on 3: pads (0, 1).
        let attrs = vec![
            ("kernel_shape", ints(&[2, 2])),
            ("auto_pad", AttrValue::String(b"SAME_UPPER".to_vec())),
        ];
        let y = &run_op("AveragePool", 11, attrs, vec![Some(x.clone())], 1).unwrap()[0];
        assert_close(
            y.as_slice::<f32>().unwrap(),
            &[3., 4., 4.5, 6., 7., 7.5, 7.5, 8.5, 9.],
            1e-6,
        );
        let y = &run_op(
            "LpPool",
            18,
            vec![("kernel_shape", ints(&[3, 3]))],
            vec![Some(x.clone())],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[(285f32).sqrt()], 1e-6);
        let y = &run_op("GlobalAveragePool", 1, vec![], vec![Some(x.clone())], 1).unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[5.]);
        let y = &run_op("GlobalMaxPool", 1, vec![], vec![Some(x)], 1).unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[9.]);
    }

    #[test]
    fn max_unpool_round_trip() {
        let x = tf(&[1, 1, 2, 2], &[5., 6., 7., 8.]);
        let i = Tensor::from_slice(&[1, 1, 2, 2], &[5i64, 7, 13, 15]).unwrap();
        let attrs = vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))];
        let y = &run_op(
            "MaxUnpool",
            11,
            attrs.clone(),
            vec![Some(x.clone()), Some(i.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[1, 1, 4, 4]);
        let v = y.as_slice::<f32>().unwrap();
        assert_eq!((v[5], v[7], v[13], v[15], v[0]), (5., 6., 7., 8., 0.));
        let bad = Tensor::from_slice(&[1, 1, 2, 2], &[5i64, 7, 13, 99]).unwrap();
        assert!(matches!(
            run_op("MaxUnpool", 11, attrs, vec![Some(x), Some(bad)], 1),
            Err(crate::Error::Runtime(_))
        ));
    }
}
