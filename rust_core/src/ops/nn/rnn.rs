//! Recurrent layers: LSTM, GRU, RNN (forward, reverse, bidirectional; layouts 0 and 1).
//!
//! The input projection of every time step is one GEMM up front (`X · Wᵀ + Wb + Rb`, one
//! contiguous row of gate inputs per step and batch row); each step then adds `H · Rᵀ` (a
//! constant f32 R packed once in column panels for `kernels::gemv`, a small GEMM otherwise) and
//! applies the gate activations. The two directions of a bidirectional layer run in parallel.

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::activation::{fast_sigmoid, fast_tanh};
use crate::kernels::float::{as_f32, as_f32_mut, Float};
use crate::kernels::gemm::{gemm, GemmElem, MatRef};
use crate::kernels::gemv::{gemv_add, gemv_available, PanelB};
use crate::kernels::sgemm::{sgemm_packed_b_par, Epilogue, PackedB};
use crate::kernels::simd::MulAdd;
use crate::kernels::vmath::{sigmoid, tanh, Act as VAct};
use crate::kernels::SendPtr;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::any::TypeId;
use std::borrow::Cow;

pub fn register(r: &mut Registry) {
    r.add("LSTM", |ctx| build_rnn(ctx, Cell::Lstm));
    r.add("GRU", |ctx| build_rnn(ctx, Cell::Gru));
    r.add("RNN", |ctx| build_rnn(ctx, Cell::Rnn));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
            Cell::Rnn => "RNN",
        }
    }
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

/// A gate activation function with its alpha/beta.
#[derive(Debug, Clone, Copy)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Act {
    #[inline(always)]
    fn apply<T: Float>(self, x: T) -> T {
        match self {
            Act::Sigmoid => x.sigmoid(),
            Act::Tanh => x.tanh(),
            Act::Relu => x.fmax(T::ZERO),
            Act::Affine(a, b) => T::from_f32(a) * x + T::from_f32(b),
            Act::LeakyRelu(a) => {
                if x >= T::ZERO {
                    x
                } else {
                    T::from_f32(a) * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > T::from_f32(a) {
                    x
                } else {
                    T::ZERO
                }
            }
            Act::ScaledTanh(a, b) => T::from_f32(a) * (T::from_f32(b) * x).tanh(),
            Act::HardSigmoid(a, b) => (T::from_f32(a) * x + T::from_f32(b))
                .fmax(T::ZERO)
                .fmin(T::ONE),
            Act::Elu(a) => {
                if x >= T::ZERO {
                    x
                } else {
                    T::from_f32(a) * (x.exp() - T::ONE)
                }
            }
            Act::Softsign => x / (T::ONE + x.abs()),
            Act::Softplus => (T::ONE + x.exp()).ln(),
        }
    }
}

/// Parse activation names, consuming `alphas`/`betas` in order for the functions that take them.
fn parse_activations(ctx: &BuildContext, names: &[String]) -> Result<Vec<Act>> {
    let alphas = ctx.attr_floats("activation_alpha")?.unwrap_or_default();
    let betas = ctx.attr_floats("activation_beta")?.unwrap_or_default();
    let (mut ai, mut bi) = (0, 0);
    let mut alpha = |d: f32| {
        let v = alphas.get(ai).copied().unwrap_or(d);
        ai += 1;
        v
    };
    let mut beta = |d: f32| {
        let v = betas.get(bi).copied().unwrap_or(d);
        bi += 1;
        v
    };
    names
        .iter()
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "relu" => Act::Relu,
                "tanh" => Act::Tanh,
                "sigmoid" => Act::Sigmoid,
                "affine" => Act::Affine(alpha(1.0), beta(0.0)),
                "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => Act::ScaledTanh(alpha(1.0), beta(1.0)),
                "hardsigmoid" => Act::HardSigmoid(alpha(0.2), beta(0.5)),
                "elu" => Act::Elu(alpha(1.0)),
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                _ => return Err(ctx.invalid(format!("unknown activation '{n}'"))),
            })
        })
        .collect()
}

struct Rnn {
    cell: Cell,
    hidden: usize,
    /// 1 or 2 directions; `reverse` for a single reverse direction.
    dirs: usize,
    reverse: bool,
    /// Activations per direction.
    acts: Vec<Vec<Act>>,
    clip: Option<f32>,
    input_forget: bool,
    linear_before_reset: bool,
    layout: i64,
    /// f32 input weights W packed once per direction (when W is a constant): the input
    /// projection is then `X · Wᵀ` with Wᵀ packed once, its rows the steps' gate inputs.
    w_packed: Option<Vec<PackedB>>,
    /// f32 recurrence weights R packed once per direction as panels of Rᵀ (when R is a
    /// constant and the CPU has the panel kernel): the per-step `H · Rᵀ` streams them.
    r_packed: Option<Vec<PanelB>>,
}

fn build_rnn(ctx: &BuildContext, cell: Cell) -> Result<Box<dyn Op>> {
    let hidden = ctx.attr_i("hidden_size", 0)?;
    if hidden < 1 && ctx.attr("hidden_size").is_some() {
        return Err(ctx.invalid(format!(
            "attribute 'hidden_size' must be >= 1, got {hidden}"
        )));
    }
    let (dirs, reverse) = match ctx.attr_s("direction", "forward")?.as_str() {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        d => {
            return Err(ctx.invalid(format!(
                "direction '{d}' is not forward, reverse or bidirectional"
            )))
        }
    };
    let per = cell.default_activations().len();
    let names = match ctx.attr_strings("activations")? {
        Some(v) => v,
        None => {
            let d: Vec<String> = cell
                .default_activations()
                .iter()
                .map(|s| s.to_string())
                .collect();
            d.iter().cycle().take(per * dirs).cloned().collect()
        }
    };
    let names = if names.len() == per && dirs == 2 {
        names.iter().cycle().take(2 * per).cloned().collect()
    } else {
        names
    };
    if names.len() != per * dirs {
        return Err(ctx.invalid(format!(
            "{} activations given, expected {}",
            names.len(),
            per * dirs
        )));
    }
    let all = parse_activations(ctx, &names)?;
    let acts = all.chunks(per).map(|c| c.to_vec()).collect();
    let layout = ctx.attr_i("layout", 0)?;
    if layout != 0 && layout != 1 {
        return Err(ctx.invalid(format!("layout must be 0 or 1, got {layout}")));
    }
    // W [dirs, G·H, input] known at build time: pack each direction's G·H × input block.
    let w_packed = match ctx.const_inputs.get(1).copied().flatten() {
        Some(w) if w.dtype() == DType::Float32 && w.rank() == 3 && w.shape()[0] == dirs => {
            let (gh, input) = (w.shape()[1], w.shape()[2]);
            let wv = w.as_slice::<f32>()?;
            Some((0..dirs).map(|d| PackedB::new(input, gh, &wv[d * gh * input..(d + 1) * gh * input], 1, input)).collect())
        }
        _ => None,
    };
    let r_packed = match ctx.const_inputs.get(2).copied().flatten() {
        Some(r) if gemv_available() && r.dtype() == DType::Float32 && r.rank() == 3 && r.shape()[0] == dirs => {
            let (gh, hs) = (r.shape()[1], r.shape()[2]);
            let rv = r.as_slice::<f32>()?;
            Some((0..dirs).map(|d| PanelB::new(hs, gh, &rv[d * gh * hs..(d + 1) * gh * hs], 1, hs)).collect())
        }
        _ => None,
    };
    Ok(Box::new(Rnn {
        w_packed,
        r_packed,
        cell,
        hidden: hidden.max(0) as usize,
        dirs,
        reverse,
        acts,
        clip: ctx.attr_opt_f("clip")?,
        input_forget: ctx.attr_i("input_forget", 0)? != 0,
        linear_before_reset: ctx.attr_i("linear_before_reset", 0)? != 0,
        layout,
    }))
}

/// Everything one direction needs, as slices into the (widened) inputs.
struct DirData<'a, T> {
    /// Input projections (X·Wᵀ + Wb + Rb; for GRU without Rb of the h gate), one row of G·H
    /// per (t, b) at row `t·batch + b`: `[seq·batch][G·H]`.
    xw: Vec<T>,
    r: &'a [T],
    /// R packed for [`gemv_add`] (f32 only).
    r_panel: Option<&'a PanelB>,
    /// GRU: recurrence bias of the h gate (applied inside the reset product).
    rb_h: Vec<T>,
    p: Option<&'a [T]>,
    h0: Vec<T>,
    c0: Vec<T>,
    acts: Vec<Act>,
    reverse: bool,
}

impl<T: Copy> DirData<'_, T> {
    /// Projection of gate value `g` for row `row` (= t·batch + b).
    #[inline(always)]
    fn xw_at(&self, row: usize, g: usize, gh: usize) -> T {
        self.xw[row * gh + g]
    }

    /// Copy the G·H projections of row `row` into `out`.
    fn load_row(&self, row: usize, out: &mut [T]) {
        let gh = out.len();
        out.copy_from_slice(&self.xw[row * gh..(row + 1) * gh]);
    }
}

struct Shape {
    batch: usize,
    hidden: usize,
}

impl Rnn {
    /// Run one direction; writes Y rows through `y` (layout-0 offsets computed by `y_off`).
    #[allow(clippy::too_many_arguments)]
    fn run_direction<T: GemmElem>(
        &self,
        d: &DirData<T>,
        sh: &Shape,
        lens: &[usize],
        y: &SendPtr<T>,
        y_off: &dyn Fn(usize, usize) -> usize,
        yh: &mut [T],
        yc: &mut [T],
    ) -> Result<()> {
        let (batch, hs) = (sh.batch, sh.hidden);
        let g = self.cell.gates();
        let gh = g * hs;
        let mut h = d.h0.clone();
        let mut c = d.c0.clone();
        let mut gates = vec![T::ZERO; batch * gh];
        let mut rh = vec![T::ZERO; batch * hs];
        let clip = self.clip.map(T::from_f32);
        let clipf = |v: T| match clip {
            Some(cl) => v.fmax(-cl).fmin(cl),
            None => v,
        };
        let max_len = lens.iter().copied().max().unwrap_or(0);
        // The default GRU cell (σ, tanh, no clip) on f32 runs vectorized; with
        // linear_before_reset (PyTorch's and Keras' exports) it needs each row's input
        // projection of the h̃ gate, kept before the recurrence product is added.
        let default_gru = self.cell == Cell::Gru && clip.is_none() && matches!(d.acts[..], [Act::Sigmoid, Act::Tanh]) && TypeId::of::<T>() == TypeId::of::<f32>();
        let mut xh = vec![T::ZERO; if default_gru && self.linear_before_reset { batch * hs } else { 0 }];
        for step in 0..max_len {
            // Gates = XW[t] + H · Rᵀ (for GRU only the z and r parts of R when !linear_before_reset).
            let active_rows = if self.cell == Cell::Gru && !self.linear_before_reset {
                2 * hs
            } else {
                gh
            };
            // Each batch row has its own time index when reversed with sequence lengths.
            for b in 0..batch {
                let t = if d.reverse {
                    lens[b].wrapping_sub(1).wrapping_sub(step)
                } else {
                    step
                };
                if step >= lens[b] {
                    continue;
                }
                d.load_row(t * batch + b, &mut gates[b * gh..(b + 1) * gh]);
                if !xh.is_empty() {
                    xh[b * hs..(b + 1) * hs].copy_from_slice(&gates[b * gh + 2 * hs..(b + 1) * gh]);
                }
            }
            let panel = d.r_panel.filter(|p| p.depth() == hs && p.cols() == gh);
            let done = match (panel, as_f32(&h), as_f32_mut(&mut gates)) {
                (Some(p), Some(hf), Some(gf)) => gemv_add(batch, active_rows, hf, hs, p, gf, gh),
                _ => false,
            };
            if !done {
                gemm(
                    batch,
                    active_rows,
                    hs,
                    T::ONE,
                    MatRef::row_major(&h, hs),
                    MatRef::row_major(d.r, hs).t(),
                    T::ONE,
                    &mut gates,
                    gh,
                    1,
                )?;
            }
            if self.cell == Cell::Gru && !self.linear_before_reset {
                // r first, then (r ⊙ H) · Rhᵀ.
                for b in 0..batch {
                    if default_gru {
                        let (gr, hb, rb) = (as_f32(&gates[b * gh + hs..b * gh + 2 * hs]), as_f32(&h[b * hs..(b + 1) * hs]), as_f32_mut(&mut rh[b * hs..(b + 1) * hs]));
                        if let (Some(gr), Some(hb), Some(rb)) = (gr, hb, rb) {
                            gru_reset_f32(gr, hb, rb);
                            continue;
                        }
                    }
                    for j in 0..hs {
                        let r = d.acts[0].apply(clipf(gates[b * gh + hs + j]));
                        rh[b * hs + j] = r * h[b * hs + j];
                    }
                }
                let rh_w = &d.r[2 * hs * hs..3 * hs * hs];
                gemm(
                    batch,
                    hs,
                    hs,
                    T::ONE,
                    MatRef::row_major(&rh, hs),
                    MatRef::row_major(rh_w, hs).t(),
                    T::ONE,
                    &mut gates[2 * hs..],
                    gh,
                    1,
                )?;
            }
            let default_lstm = self.cell == Cell::Lstm
                && d.p.is_none()
                && clip.is_none()
                && !self.input_forget
                && matches!(d.acts[..], [Act::Sigmoid, Act::Tanh, Act::Tanh]);
            for b in 0..batch {
                if step >= lens[b] {
                    continue;
                }
                let t = if d.reverse { lens[b] - 1 - step } else { step };
                if default_lstm && TypeId::of::<T>() == TypeId::of::<f32>() {
                    let (gb, cb, hb) = (&mut gates[b * gh..(b + 1) * gh], &mut c[b * hs..(b + 1) * hs], &mut h[b * hs..(b + 1) * hs]);
                    // SAFETY: T is f32 (same layout); the three slices are distinct buffers.
                    unsafe {
                        lstm_cell_f32(
                            std::slice::from_raw_parts_mut(gb.as_mut_ptr() as *mut f32, gb.len()),
                            std::slice::from_raw_parts_mut(cb.as_mut_ptr() as *mut f32, cb.len()),
                            std::slice::from_raw_parts_mut(hb.as_mut_ptr() as *mut f32, hb.len()),
                        );
                    }
                    // SAFETY: (t, b) rows of this direction are written by this direction only.
                    unsafe { y.slice(y_off(t, b), hs) }.copy_from_slice(hb);
                    continue;
                }
                if default_lstm {
                    // Monomorphic loops over gate slices (i, o, f contiguous, then c): vectorizable.
                    let gb = &mut gates[b * gh..(b + 1) * gh];
                    gb[..3 * hs].iter_mut().for_each(|v| *v = fast_sigmoid(*v));
                    gb[3 * hs..].iter_mut().for_each(|v| *v = fast_tanh(*v));
                    let (gi, rest) = gb.split_at(hs);
                    let (go, rest) = rest.split_at(hs);
                    let (gf, gc) = rest.split_at(hs);
                    let cb = &mut c[b * hs..(b + 1) * hs];
                    let hb = &mut h[b * hs..(b + 1) * hs];
                    for j in 0..hs {
                        let cn = gf[j] * cb[j] + gi[j] * gc[j];
                        cb[j] = cn;
                        hb[j] = go[j] * fast_tanh(cn);
                    }
                    // SAFETY: (t, b) rows of this direction are written by this direction only.
                    unsafe { y.slice(y_off(t, b), hs) }.copy_from_slice(hb);
                    continue;
                }
                if default_gru {
                    let xb = if xh.is_empty() { &[][..] } else { &xh[b * hs..(b + 1) * hs] };
                    let (gb, xb, rbh) = (as_f32(&gates[b * gh..(b + 1) * gh]), as_f32(xb), as_f32(&d.rb_h));
                    if let (Some(gb), Some(xb), Some(rbh), Some(hb)) = (gb, xb, rbh, as_f32_mut(&mut h[b * hs..(b + 1) * hs])) {
                        gru_cell_f32(gb, xb, rbh, self.linear_before_reset, hb);
                        let hb = &h[b * hs..(b + 1) * hs];
                        // SAFETY: (t, b) rows of this direction are written by this direction only.
                        unsafe { y.slice(y_off(t, b), hs) }.copy_from_slice(hb);
                        continue;
                    }
                }
                let gb = &gates[b * gh..(b + 1) * gh];
                let hb = &mut h[b * hs..(b + 1) * hs];
                // SAFETY: (t, b) rows of this direction are written by this direction only.
                let yrow = unsafe { y.slice(y_off(t, b), hs) };
                match self.cell {
                    Cell::Lstm => {
                        let cb = &mut c[b * hs..(b + 1) * hs];
                        let (f, gact, hact) = (d.acts[0], d.acts[1], d.acts[2]);
                        for j in 0..hs {
                            let (mut pi, mut po, mut pf) = (T::ZERO, T::ZERO, T::ZERO);
                            if let Some(p) = d.p {
                                pi = p[j] * cb[j];
                                pf = p[2 * hs + j] * cb[j];
                                po = p[hs + j];
                            }
                            let i = f.apply(clipf(gb[j] + pi));
                            let ft = if self.input_forget {
                                T::ONE - i
                            } else {
                                f.apply(clipf(gb[2 * hs + j] + pf))
                            };
                            let ct = gact.apply(clipf(gb[3 * hs + j]));
                            let cn = ft * cb[j] + i * ct;
                            let o = f.apply(clipf(gb[hs + j] + po * cn));
                            cb[j] = cn;
                            hb[j] = o * hact.apply(cn);
                        }
                    }
                    Cell::Gru => {
                        let (f, gact) = (d.acts[0], d.acts[1]);
                        for j in 0..hs {
                            let z = f.apply(clipf(gb[j]));
                            let hpre = if self.linear_before_reset {
                                let r = f.apply(clipf(gb[hs + j]));
                                // gb[2hs+j] = Xh + Wbh + H·Rh; add Rbh inside the reset product.
                                let xh = d.xw_at(t * batch + b, 2 * hs + j, gh);
                                xh + r * (gb[2 * hs + j] - xh + d.rb_h[j])
                            } else {
                                gb[2 * hs + j] + d.rb_h[j]
                            };
                            let ht = gact.apply(clipf(hpre));
                            hb[j] = (T::ONE - z) * ht + z * hb[j];
                        }
                    }
                    Cell::Rnn => {
                        for j in 0..hs {
                            hb[j] = d.acts[0].apply(clipf(gb[j]));
                        }
                    }
                }
                yrow.copy_from_slice(hb);
            }
        }
        yh.copy_from_slice(&h);
        if !yc.is_empty() {
            yc.copy_from_slice(&c);
        }
        Ok(())
    }

    fn compute<T: GemmElem>(&self, ins: &Inputs, ctx: &RunContext) -> Result<Vec<Tensor>> {
        let name = self.cell.name();
        let g = self.cell.gates();
        let xs = ins.x.shape();
        let (seq, batch, input) = if self.layout == 0 {
            (xs[0], xs[1], xs[2])
        } else {
            (xs[1], xs[0], xs[2])
        };
        let hs = if self.hidden > 0 {
            self.hidden
        } else {
            ins.r.shape().get(2).copied().unwrap_or(0)
        };
        let gh = g * hs;
        let dirs = self.dirs;
        let check = |t: &Tensor, want: &[usize], what: &str| -> Result<()> {
            if t.shape() != want {
                return Err(Error::ShapeMismatch(format!(
                    "{name}: {what} has shape {:?}, expected {want:?}",
                    t.shape()
                )));
            }
            Ok(())
        };
        check(ins.w, &[dirs, gh, input], "W")?;
        check(ins.r, &[dirs, gh, hs], "R")?;
        let x: Cow<[T]> = if self.layout == 0 {
            Cow::Borrowed(ins.x.as_slice::<T>()?)
        } else {
            // [batch, seq, input] -> [seq, batch, input]
            let xv = ins.x.as_slice::<T>()?;
            let mut v = vec![T::ZERO; xv.len()];
            for b in 0..batch {
                for t in 0..seq {
                    v[(t * batch + b) * input..(t * batch + b + 1) * input]
                        .copy_from_slice(&xv[(b * seq + t) * input..(b * seq + t + 1) * input]);
                }
            }
            Cow::Owned(v)
        };
        let lens: Vec<usize> = match ins.lens {
            Some(l) => {
                let v = l.to_i64_vec()?;
                if v.len() != batch || v.iter().any(|&n| n < 0 || n as usize > seq) {
                    return Err(Error::Runtime(format!(
                        "{name}: sequence_lens {v:?} must hold {batch} values in 0..={seq}"
                    )));
                }
                v.into_iter().map(|n| n as usize).collect()
            }
            None => vec![seq; batch],
        };
        let w = ins.w.as_slice::<T>()?;
        let r = ins.r.as_slice::<T>()?;
        let bias = match ins.b {
            Some(b) => {
                check(b, &[dirs, 2 * gh], "B")?;
                Some(b.as_slice::<T>()?)
            }
            None => None,
        };
        let p = match ins.p {
            Some(p) => {
                check(p, &[dirs, 3 * hs], "P")?;
                Some(p.as_slice::<T>()?)
            }
            None => None,
        };
        // Initial states in layout-0 order [dirs][batch][hidden].
        let state = |t: Option<&Tensor>, what: &str| -> Result<Vec<T>> {
            match t {
                None => Ok(vec![T::ZERO; dirs * batch * hs]),
                Some(t) => {
                    let want = if self.layout == 0 {
                        [dirs, batch, hs]
                    } else {
                        [batch, dirs, hs]
                    };
                    check(t, &want, what)?;
                    let v = t.as_slice::<T>()?;
                    if self.layout == 0 {
                        return Ok(v.to_vec());
                    }
                    let mut o = vec![T::ZERO; v.len()];
                    for b in 0..batch {
                        for d in 0..dirs {
                            o[(d * batch + b) * hs..(d * batch + b + 1) * hs]
                                .copy_from_slice(&v[(b * dirs + d) * hs..(b * dirs + d + 1) * hs]);
                        }
                    }
                    Ok(o)
                }
            }
        };
        let h0 = state(ins.h0, "initial_h")?;
        let c0 = state(ins.c0, "initial_c")?;
        let mut dir_data = Vec::with_capacity(dirs);
        for d in 0..dirs {
            let wd = &w[d * gh * input..(d + 1) * gh * input];
            let mut xw = vec![T::ZERO; seq * batch * gh];
            let mut rb_h = vec![T::ZERO; hs];
            // Wb + Rb per gate row (for GRU's h gate Wb only: Rbh goes inside the reset product).
            let comb: Option<Vec<T>> = bias.map(|b| {
                let bd = &b[d * 2 * gh..(d + 1) * 2 * gh];
                let mut comb: Vec<T> = (0..gh).map(|j| bd[j] + bd[gh + j]).collect();
                if self.cell == Cell::Gru {
                    for j in 0..hs {
                        comb[2 * hs + j] = bd[2 * hs + j];
                        rb_h[j] = bd[gh + 2 * hs + j];
                    }
                }
                comb
            });
            let packed = self.w_packed.as_ref().map(|p| &p[d]).filter(|p| p.cols() == gh && p.depth() == input);
            match (packed, as_f32(&x), as_f32_mut(&mut xw)) {
                (Some(pw), Some(xf), Some(xwf)) => {
                    // xw [seq·batch, G·H] = X · Wᵀ + bias (per column).
                    let bias_f32 = comb.as_ref().and_then(|v| as_f32(v));
                    // SAFETY: X is [seq·batch, input] row-major; W packed as input × gh; xw
                    // holds seq·batch rows of gh; the bias has gh values.
                    unsafe {
                        sgemm_packed_b_par(
                            ctx.pool,
                            seq * batch,
                            gh,
                            input,
                            (xf.as_ptr(), input, 1, 1.0),
                            pw,
                            0.0,
                            xwf.as_mut_ptr(),
                            gh,
                            Epilogue { bias: None, col_bias: bias_f32, act: VAct::Identity },
                        );
                    }
                }
                _ => {
                    if let Some(comb) = &comb {
                        for row in xw.chunks_mut(gh.max(1)) {
                            row.copy_from_slice(comb);
                        }
                    }
                    let beta = if bias.is_some() { T::ONE } else { T::ZERO };
                    crate::kernels::gemm::gemm_par(
                        ctx.pool,
                        seq * batch,
                        gh,
                        input,
                        T::ONE,
                        MatRef::row_major(&x, input),
                        MatRef::row_major(wd, input).t(),
                        beta,
                        &mut xw,
                        gh,
                        1,
                    )?;
                }
            }
            dir_data.push(DirData {
                xw,
                r: &r[d * gh * hs..(d + 1) * gh * hs],
                r_panel: self.r_packed.as_ref().map(|p| &p[d]),
                rb_h,
                p: p.map(|p| &p[d * 3 * hs..(d + 1) * 3 * hs]),
                h0: h0[d * batch * hs..(d + 1) * batch * hs].to_vec(),
                c0: c0[d * batch * hs..(d + 1) * batch * hs].to_vec(),
                acts: self.acts[d].clone(),
                reverse: self.reverse || d == 1,
            });
        }
        // Y in layout 0: [seq][dirs][batch][hidden]; zero where a sequence has ended.
        let mut y = vec![T::ZERO; seq * dirs * batch * hs];
        let mut yh = vec![T::ZERO; dirs * batch * hs];
        let mut yc = vec![
            T::ZERO;
            if self.cell == Cell::Lstm {
                dirs * batch * hs
            } else {
                0
            }
        ];
        let sh = Shape { batch, hidden: hs };
        let yp = SendPtr::new(&mut y);
        let yhp = SendPtr::new(&mut yh);
        let ycp = SendPtr::new(&mut yc);
        let per_c = if self.cell == Cell::Lstm {
            batch * hs
        } else {
            0
        };
        let errors = std::sync::Mutex::new(None);
        let run_dir = |d: usize| {
            let off = move |t: usize, b: usize| ((t * dirs + d) * batch + b) * hs;
            // SAFETY: direction d owns its slices of Y_h and Y_c and its rows of Y.
            let (yh_d, yc_d) = unsafe {
                (
                    yhp.slice(d * batch * hs, batch * hs),
                    ycp.slice(d * per_c, per_c),
                )
            };
            if let Err(e) = self.run_direction(&dir_data[d], &sh, &lens, &yp, &off, yh_d, yc_d) {
                *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        };
        if dirs == 2 {
            ctx.pool.parallel_for(2, 1, |a, b| (a..b).for_each(run_dir));
        } else {
            run_dir(0);
        }
        if let Some(e) = errors.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let dt = ins.x.dtype();
        let (y_t, yh_t, yc_t) = if self.layout == 0 {
            (
                Tensor::from_vec(&[seq, dirs, batch, hs], y)?,
                Tensor::from_vec(&[dirs, batch, hs], yh)?,
                Tensor::from_vec(&[dirs, batch, if yc.is_empty() { 0 } else { hs }], yc)?,
            )
        } else {
            let mut y1 = vec![T::ZERO; y.len()];
            for t in 0..seq {
                for d in 0..dirs {
                    for b in 0..batch {
                        let src = ((t * dirs + d) * batch + b) * hs;
                        let dst = ((b * seq + t) * dirs + d) * hs;
                        y1[dst..dst + hs].copy_from_slice(&y[src..src + hs]);
                    }
                }
            }
            let swap = |v: &[T]| -> Vec<T> {
                let mut o = vec![T::ZERO; v.len()];
                if v.is_empty() {
                    return o;
                }
                for d in 0..dirs {
                    for b in 0..batch {
                        o[(b * dirs + d) * hs..(b * dirs + d + 1) * hs]
                            .copy_from_slice(&v[(d * batch + b) * hs..(d * batch + b + 1) * hs]);
                    }
                }
                o
            };
            (
                Tensor::from_vec(&[batch, seq, dirs, hs], y1)?,
                Tensor::from_vec(&[batch, dirs, hs], swap(&yh))?,
                Tensor::from_vec(
                    &[batch, dirs, if yc.is_empty() { 0 } else { hs }],
                    swap(&yc),
                )?,
            )
        };
        let _ = dt;
        let mut outs = vec![y_t, yh_t];
        if self.cell == Cell::Lstm {
            outs.push(yc_t);
        }
        Ok(outs)
    }
}

/// The default LSTM cell on one batch row, in place: `gates` = [i, o, f, c̃] pre-activations
/// (H each) -> i, o, f = σ(·), c̃ = tanh(·); then `c = f ⊙ c + i ⊙ c̃` and `h = o ⊙ tanh(c)`.
#[inline(always)]
fn lstm_cell_body<M: MulAdd>(gates: &mut [f32], c: &mut [f32], h: &mut [f32]) {
    let hs = c.len();
    let (ifo, gc) = gates.split_at_mut(3 * hs);
    for v in ifo.iter_mut() {
        *v = sigmoid::<M>(*v);
    }
    let (gi, rest) = ifo.split_at(hs);
    let (go, gf) = rest.split_at(hs);
    let (gi, go, gf, gc, h) = (&gi[..hs], &go[..hs], &gf[..hs], &gc[..hs], &mut h[..hs]);
    for j in 0..hs {
        let cn = M::madd(gf[j], c[j], gi[j] * tanh::<M>(gc[j]));
        c[j] = cn;
        h[j] = go[j] * tanh::<M>(cn);
    }
}

crate::multiversion! {
    /// [`lstm_cell_body`] for the active ISA.
    fn lstm_cell_f32(gates: &mut [f32], c: &mut [f32], h: &mut [f32]) = lstm_cell_body;
}

/// GRU without linear_before_reset, first half of a step: `rh = σ(gr) ⊙ h` (the reset gate
/// applied to the state before the h̃ product).
#[inline(always)]
fn gru_reset_body<M: MulAdd>(gr: &[f32], h: &[f32], rh: &mut [f32]) {
    for ((o, g), hv) in rh.iter_mut().zip(gr).zip(h) {
        *o = sigmoid::<M>(*g) * *hv;
    }
}

/// The default GRU cell (σ, tanh) on one batch row, in place on `h`: `gates` = [z, r, h̃]
/// pre-activations (H each, recurrence products added; without `lbr` the h̃ part already holds
/// the reset product), `xh` the input projection of h̃ (with `lbr`), `rbh` its recurrence bias:
/// `h̃ = tanh(xh + r ⊙ (H·Rh + Rbh))` (`lbr`) or `tanh(g_h + Rbh)`, then `h = (1 - z) ⊙ h̃ + z ⊙ h`.
#[inline(always)]
fn gru_cell_body<M: MulAdd>(gates: &[f32], xh: &[f32], rbh: &[f32], lbr: bool, h: &mut [f32]) {
    let hs = h.len();
    let (gz, rest) = gates.split_at(hs);
    let (gr, gh) = rest.split_at(hs);
    let (gz, gr, gh, rbh) = (&gz[..hs], &gr[..hs], &gh[..hs], &rbh[..hs]);
    if lbr {
        let xh = &xh[..hs];
        for j in 0..hs {
            let (z, r) = (sigmoid::<M>(gz[j]), sigmoid::<M>(gr[j]));
            let ht = tanh::<M>(xh[j] + r * (gh[j] - xh[j] + rbh[j]));
            h[j] = (1.0 - z) * ht + z * h[j];
        }
    } else {
        for j in 0..hs {
            let z = sigmoid::<M>(gz[j]);
            let ht = tanh::<M>(gh[j] + rbh[j]);
            h[j] = (1.0 - z) * ht + z * h[j];
        }
    }
}

crate::multiversion! {
    /// [`gru_reset_body`] for the active ISA.
    fn gru_reset_f32(gr: &[f32], h: &[f32], rh: &mut [f32]) = gru_reset_body;
}

crate::multiversion! {
    /// [`gru_cell_body`] for the active ISA.
    fn gru_cell_f32(gates: &[f32], xh: &[f32], rbh: &[f32], lbr: bool, h: &mut [f32]) = gru_cell_body;
}

struct Inputs<'a> {
    x: &'a Tensor,
    w: &'a Tensor,
    r: &'a Tensor,
    b: Option<&'a Tensor>,
    lens: Option<&'a Tensor>,
    h0: Option<&'a Tensor>,
    c0: Option<&'a Tensor>,
    p: Option<&'a Tensor>,
}

impl Op for Rnn {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let name = self.cell.name();
        let x = tensor_in(inputs, 0, name)?;
        if x.rank() != 3 {
            return Err(Error::ShapeMismatch(format!(
                "{name}: X must be 3-D, got {:?}",
                x.shape()
            )));
        }
        let dt = x.dtype();
        let wid = |i: usize| -> Result<Option<std::borrow::Cow<Tensor>>> {
            match opt_tensor_in(inputs, i, name)? {
                Some(t) => {
                    if t.dtype() != dt {
                        return Err(Error::InvalidArgument(format!(
                            "{name}: input {i} is {} but X is {dt}",
                            t.dtype()
                        )));
                    }
                    Ok(Some(widen(t)?))
                }
                None => Ok(None),
            }
        };
        let xw = widen(x)?;
        let w =
            wid(1)?.ok_or_else(|| Error::InvalidArgument(format!("{name}: input W is missing")))?;
        let r =
            wid(2)?.ok_or_else(|| Error::InvalidArgument(format!("{name}: input R is missing")))?;
        let b = wid(3)?;
        let lens = opt_tensor_in(inputs, 4, name)?;
        let h0 = wid(5)?;
        let c0 = if self.cell == Cell::Lstm {
            wid(6)?
        } else {
            None
        };
        let p = if self.cell == Cell::Lstm {
            wid(7)?
        } else {
            None
        };
        let ins = Inputs {
            x: &xw,
            w: &w,
            r: &r,
            b: b.as_deref(),
            lens,
            h0: h0.as_deref(),
            c0: c0.as_deref(),
            p: p.as_deref(),
        };
        let outs = crate::with_float!(xw.dtype(), name, T => self.compute::<T>(&ins, ctx))?;
        outs.into_iter()
            .map(|t| narrow(t, dt).map(Value::Tensor))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn lstm_defaults_match_onnx_example() {
        // test_lstm_defaults: X [1,3,2] = [[1,2],[3,4],[5,6]], W = 0.1, R = 0.1, hidden 3.
        let x = tf(&[1, 3, 2], &[1., 2., 3., 4., 5., 6.]);
        let w = tf(&[1, 12, 2], &[0.1; 24]);
        let r = tf(&[1, 12, 3], &[0.1; 36]);
        let out = run_op(
            "LSTM",
            14,
            vec![("hidden_size", AttrValue::Int(3))],
            vec![Some(x), Some(w), Some(r)],
            3,
        )
        .unwrap();
        // Hand calc for batch row 0: gates all = 0.1*(1+2) = 0.3.
        let s = |v: f32| 1. / (1. + (-v).exp());
        let c = s(0.3) * 0.3f32.tanh();
        let h = s(0.3) * c.tanh();
        assert_eq!(out[1].shape(), &[1, 3, 3]);
        assert_close(&out[1].as_slice::<f32>().unwrap()[..3], &[h, h, h], 1e-6);
        assert_close(&out[2].as_slice::<f32>().unwrap()[..3], &[c, c, c], 1e-6);
        assert_eq!(out[0].shape(), &[1, 1, 3, 3]);
    }

    #[test]
    fn constant_weights_take_the_packed_projection_with_the_same_results() {
        // W known at build time: packed once, projection W · Xᵀ read by gate. Same outputs as
        // the path for W given at run time, for every cell, direction, layout, with sequence
        // lengths and biases, and on every ISA level (the LSTM cell kernel is multiversioned).
        let (seq, batch, input, hs) = (5usize, 3usize, 7usize, 6usize);
        let val = |n: usize, salt: usize| -> Vec<f32> { (0..n).map(|i| (((i * 37 + salt * 11) % 19) as f32 - 9.0) * 0.07).collect() };
        crate::kernels::simd::test_util::for_each_isa(|isa| {
            for (cell, g, lbr) in [("LSTM", 4usize, 0i64), ("GRU", 3, 0), ("GRU", 3, 1), ("RNN", 1, 0)] {
                for (direction, dirs) in [("forward", 1usize), ("reverse", 1), ("bidirectional", 2)] {
                    for layout in [0i64, 1] {
                        let xs = if layout == 0 { [seq, batch, input] } else { [batch, seq, input] };
                        let x = tf(&xs, &val(seq * batch * input, 1));
                        let w = tf(&[dirs, g * hs, input], &val(dirs * g * hs * input, 2));
                        let r = tf(&[dirs, g * hs, hs], &val(dirs * g * hs * hs, 3));
                        let b = tf(&[dirs, 2 * g * hs], &val(dirs * 2 * g * hs, 4));
                        let lens = Tensor::from_slice(&[batch], &[5i32, 3, 1]).unwrap();
                        let mut attrs = vec![
                            ("hidden_size", AttrValue::Int(hs as i64)),
                            ("direction", AttrValue::String(direction.as_bytes().to_vec())),
                            ("layout", AttrValue::Int(layout)),
                        ];
                        if cell == "GRU" {
                            attrs.push(("linear_before_reset", AttrValue::Int(lbr)));
                        }
                        let n_out = if cell == "LSTM" { 3 } else { 2 };
                        let ins = vec![Some(x), Some(w), Some(r), Some(b), Some(lens)];
                        let want = run_op(cell, 14, attrs.clone(), ins.clone(), n_out).unwrap();
                        let got = run_op_with(cell, 14, attrs, ins, &[1, 2, 3], n_out, 2).unwrap();
                        for (o, (gt, wt)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(gt.shape(), wt.shape(), "{cell} {direction} layout {layout} output {o}");
                            let (gv, wv) = (gt.as_slice::<f32>().unwrap(), wt.as_slice::<f32>().unwrap());
                            for (i, (a, b)) in gv.iter().zip(wv).enumerate() {
                                assert!((a - b).abs() <= 1e-5, "{isa:?} {cell} {direction} layout {layout} output {o}[{i}]: {a} vs {b}");
                            }
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn vectorized_gru_cell_matches_the_general_one() {
        // The default GRU (σ, tanh, no clip) takes the vectorized cell; a clip no value reaches
        // forces the per-element one. Both reset placements, bidirectional, two batch rows of
        // different lengths, 37 units (vector tails), biases and an initial state.
        let (seq, batch, input, hs) = (5usize, 2usize, 6usize, 37usize);
        let v = |n: usize, m: usize, sc: f32| -> Vec<f32> { (0..n).map(|i| ((i * m) % 29) as f32 * sc - 14.0 * sc).collect() };
        let x = tf(&[seq, batch, input], &v(seq * batch * input, 7, 0.1));
        let w = tf(&[2, 3 * hs, input], &v(2 * 3 * hs * input, 11, 0.02));
        let r = tf(&[2, 3 * hs, hs], &v(2 * 3 * hs * hs, 13, 0.01));
        let b = tf(&[2, 6 * hs], &v(2 * 6 * hs, 5, 0.03));
        let lens = Tensor::from_slice(&[batch], &[5i32, 3]).unwrap();
        let h0 = tf(&[2, batch, hs], &v(2 * batch * hs, 3, 0.05));
        for lbr in [0i64, 1] {
            let run = |clip: Option<f32>| {
                let mut attrs = vec![("hidden_size", AttrValue::Int(hs as i64)), ("direction", AttrValue::String(b"bidirectional".to_vec())), ("linear_before_reset", AttrValue::Int(lbr))];
                if let Some(c) = clip {
                    attrs.push(("clip", AttrValue::Float(c)));
                }
                run_op("GRU", 14, attrs, vec![Some(x.clone()), Some(w.clone()), Some(r.clone()), Some(b.clone()), Some(lens.clone()), Some(h0.clone())], 2).unwrap()
            };
            let (fast, general) = (run(None), run(Some(1e30)));
            for o in 0..2 {
                let (f, g) = (fast[o].as_slice::<f32>().unwrap(), general[o].as_slice::<f32>().unwrap());
                assert_eq!(f.len(), g.len());
                for (i, (a, e)) in f.iter().zip(g).enumerate() {
                    assert!((a - e).abs() <= 2e-6 * (1.0 + e.abs()), "lbr {lbr} output {o} [{i}]: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn gru_and_rnn_with_seq_lens_bidirectional() {
        let x = tf(&[2, 1, 1], &[1., 2.]);
        let w = tf(&[2, 1, 1], &[1., 1.]);
        let r = tf(&[2, 1, 1], &[0.5, 0.5]);
        let attrs = vec![
            ("hidden_size", AttrValue::Int(1)),
            ("direction", AttrValue::String(b"bidirectional".to_vec())),
        ];
        let out = run_op(
            "RNN",
            14,
            attrs.clone(),
            vec![Some(x.clone()), Some(w.clone()), Some(r.clone())],
            2,
        )
        .unwrap();
        // forward: h1 = tanh(1), h2 = tanh(2 + 0.5 h1); reverse: h2' = tanh(2), h1' = tanh(1 + 0.5 h2').
        let (f1, b2) = (1f32.tanh(), 2f32.tanh());
        let (f2, b1) = ((2. + 0.5 * f1).tanh(), (1. + 0.5 * b2).tanh());
        assert_close(out[0].as_slice::<f32>().unwrap(), &[f1, b1, f2, b2], 1e-6);
        assert_close(out[1].as_slice::<f32>().unwrap(), &[f2, b1], 1e-6);
        // Sequence length 1: the second step is skipped (Y zero), Y_h from step 0.
        let lens = Tensor::from_slice(&[1], &[1i32]).unwrap();
        let out = run_op(
            "RNN",
            14,
            attrs,
            vec![Some(x.clone()), Some(w), Some(r), None, Some(lens)],
            2,
        )
        .unwrap();
        assert_close(
            out[0].as_slice::<f32>().unwrap(),
            &[f1, 1f32.tanh(), 0., 0.],
            1e-6,
        );
        // GRU, one unit, weights 1, recurrence 0: z = r = s(x), h~ = tanh(x), h = (1-z) h~ + z h.
        let w = tf(&[1, 3, 1], &[1., 1., 1.]);
        let r = tf(&[1, 3, 1], &[0., 0., 0.]);
        for lbr in [0, 1] {
            let out = run_op(
                "GRU",
                14,
                vec![
                    ("hidden_size", AttrValue::Int(1)),
                    ("linear_before_reset", AttrValue::Int(lbr)),
                ],
                vec![Some(x.clone()), Some(w.clone()), Some(r.clone())],
                2,
            )
            .unwrap();
            let s = |v: f32| 1. / (1. + (-v).exp());
            let h1 = (1. - s(1.)) * 1f32.tanh();
            let h2 = (1. - s(2.)) * 2f32.tanh() + s(2.) * h1;
            assert_close(out[0].as_slice::<f32>().unwrap(), &[h1, h2], 1e-6);
        }
    }
}
