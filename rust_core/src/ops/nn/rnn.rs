//! Recurrent layers: LSTM, GRU, RNN (forward, reverse, bidirectional; layouts 0 and 1).
//!
//! The input projection of every time step is one GEMM up front (`X · Wᵀ + Wb + Rb`); each
//! step then adds `H · Rᵀ` (one small GEMM) and applies the gate activations. The two directions
//! of a bidirectional layer run in parallel.

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::activation::{fast_sigmoid, fast_tanh};
use crate::kernels::float::Float;
use crate::kernels::gemm::{gemm, GemmElem, MatRef};
use crate::kernels::SendPtr;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

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
    Ok(Box::new(Rnn {
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
    /// Input projections `[seq][batch][G·H]` (X·Wᵀ + Wb + Rb; for GRU without Rb of the h gate).
    xw: Vec<T>,
    r: &'a [T],
    /// GRU: recurrence bias of the h gate (applied inside the reset product).
    rb_h: Vec<T>,
    p: Option<&'a [T]>,
    h0: Vec<T>,
    c0: Vec<T>,
    acts: Vec<Act>,
    reverse: bool,
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
                gates[b * gh..(b + 1) * gh]
                    .copy_from_slice(&d.xw[(t * batch + b) * gh..(t * batch + b + 1) * gh]);
            }
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
            if self.cell == Cell::Gru && !self.linear_before_reset {
                // r first, then (r ⊙ H) · Rhᵀ.
                for b in 0..batch {
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
                                let xh = d.xw[(t * batch + b) * gh + 2 * hs + j];
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
        let x: Vec<T> = if self.layout == 0 {
            ins.x.as_slice::<T>()?.to_vec()
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
            v
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
            if let Some(b) = bias {
                let bd = &b[d * 2 * gh..(d + 1) * 2 * gh];
                let mut comb: Vec<T> = (0..gh).map(|j| bd[j] + bd[gh + j]).collect();
                if self.cell == Cell::Gru {
                    // The h gate's recurrence bias goes inside the reset product.
                    for j in 0..hs {
                        comb[2 * hs + j] = bd[2 * hs + j];
                        rb_h[j] = bd[gh + 2 * hs + j];
                    }
                }
                for row in xw.chunks_mut(gh.max(1)) {
                    row.copy_from_slice(&comb);
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
            dir_data.push(DirData {
                xw,
                r: &r[d * gh * hs..(d + 1) * gh * hs],
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
