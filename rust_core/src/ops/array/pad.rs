//! Pad (constant, reflect, edge, wrap; negative pads crop) and CenterCropPad.

use super::concat::axis_in;
use super::elements::{apply_move, ints_of, par_rows, scalar_of, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Source index along one axis of each output index (None: the pad value).
fn axis_map(dim: usize, begin: i64, end: i64, mode: PadMode) -> Result<Vec<Option<usize>>> {
    let out = dim as i64 + begin + end;
    if out < 0 {
        return Err(Error::InvalidArgument(format!(
            "Pad: pads ({begin}, {end}) remove more than the dimension {dim}"
        )));
    }
    let d = dim as i64;
    if d == 0 && out > 0 && mode != PadMode::Constant {
        return Err(Error::InvalidArgument(format!(
            "Pad: cannot pad an empty axis in {mode:?} mode"
        )));
    }
    Ok((0..out)
        .map(|o| {
            let i = o - begin;
            if (0..d).contains(&i) {
                return Some(i as usize);
            }
            match mode {
                PadMode::Constant => None,
                PadMode::Edge => Some(i.clamp(0, d - 1) as usize),
                PadMode::Wrap => Some(i.rem_euclid(d) as usize),
                PadMode::Reflect => {
                    if d == 1 {
                        return Some(0);
                    }
                    let p = 2 * (d - 1);
                    let r = i.rem_euclid(p);
                    Some((if r >= d { p - r } else { r }) as usize)
                }
            }
        })
        .collect())
}

/// A run of the innermost output axis: `len` elements from `src` onwards (or the pad value).
struct Run {
    len: usize,
    src: Option<usize>,
}

fn runs_of(map: &[Option<usize>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for &m in map {
        if let Some(last) = runs.last_mut() {
            let extends = match (last.src, m) {
                (None, None) => true,
                (Some(s), Some(v)) => v == s + last.len,
                _ => false,
            };
            if extends {
                last.len += 1;
                continue;
            }
        }
        runs.push(Run { len: 1, src: m });
    }
    runs
}

struct PadKernel<'a> {
    maps: &'a [Vec<Option<usize>>],
    in_strides: &'a [usize],
    out_shape: &'a [usize],
    last_runs: &'a [Run],
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for PadKernel<'_> {
    // Every output element is written (a row copy or fill each).
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let (src, value) = (srcs[0], &srcs[1][0]);
        let r = self.out_shape.len();
        let row = self.out_shape[r - 1];
        par_rows(self.pool, dst, row, |r0, chunk| {
            let outer = &self.out_shape[..r - 1];
            let mut idx = vec![0usize; r - 1];
            let mut rem = r0;
            for d in (0..r - 1).rev() {
                idx[d] = rem % outer[d];
                rem /= outer[d];
            }
            for out in chunk.chunks_exact_mut(row) {
                let mut base = Some(0usize);
                for d in 0..r - 1 {
                    base = match (base, self.maps[d][idx[d]]) {
                        (Some(b), Some(i)) => Some(b + i * self.in_strides[d]),
                        _ => None,
                    };
                }
                match base {
                    None => out.fill(value.clone()),
                    Some(b) => {
                        let mut at = 0;
                        for run in self.last_runs {
                            let o = &mut out[at..at + run.len];
                            match run.src {
                                Some(s) => o.clone_from_slice(&src[b + s..b + s + run.len]),
                                None => o.fill(value.clone()),
                            }
                            at += run.len;
                        }
                    }
                }
                for d in (0..r - 1).rev() {
                    idx[d] += 1;
                    if idx[d] < outer[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            Ok(())
        })
    }
}

/// Pads `x` by per-axis (begin, end) amounts; `value` is a one-element tensor of x's dtype.
pub fn pad_tensor(
    x: &Tensor,
    pads: &[(i64, i64)],
    mode: PadMode,
    value: &Tensor,
    pool: Option<&ThreadPool>,
) -> Result<Tensor> {
    if pads.iter().all(|&(b, e)| b == 0 && e == 0) {
        return Ok(x.clone());
    }
    let maps = x
        .shape()
        .iter()
        .zip(pads)
        .map(|(&d, &(b, e))| axis_map(d, b, e, mode))
        .collect::<Result<Vec<_>>>()?;
    let out_shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    if x.rank() == 0 || out_shape.contains(&0) {
        return Tensor::zeros(x.dtype(), &out_shape);
    }
    let in_strides = crate::ops::common::strides_of(x.shape());
    let last_runs = runs_of(&maps[x.rank() - 1]);
    let k = PadKernel {
        maps: &maps,
        in_strides: &in_strides,
        out_shape: &out_shape,
        last_runs: &last_runs,
        pool,
    };
    apply_move("Pad", x.dtype(), &[x, value], &out_shape, &k)
}

fn parse_mode(s: &str) -> Option<PadMode> {
    Some(match s {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        _ => return None,
    })
}

/// Pad.
struct Pad {
    mode: PadMode,
    /// Opset < 11: pads and value are attributes.
    attr_pads: Option<Vec<i64>>,
    attr_value: f32,
}

impl Op for Pad {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Pad")?;
        let r = x.rank();
        let (raw, value, axes) = match &self.attr_pads {
            Some(p) => (
                p.clone(),
                scalar_of(x.dtype(), self.attr_value as f64, &[1])?,
                None,
            ),
            None => {
                let raw = ints_of(tensor_in(inputs, 1, "Pad")?, "Pad: input 'pads'")?;
                let value = match opt_tensor_in(inputs, 2, "Pad")? {
                    Some(v) if v.len() >= 1 => v.reshaped(&[v.len()])?,
                    _ => Tensor::zeros(x.dtype(), &[1])?,
                };
                let axes = opt_tensor_in(inputs, 3, "Pad")?
                    .map(|t| ints_of(t, "Pad: input 'axes'"))
                    .transpose()?;
                (raw, value, axes)
            }
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| axis_in(a, r, "Pad"))
                .collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        if raw.len() != 2 * axes.len() {
            return Err(Error::InvalidArgument(format!(
                "Pad: pads {raw:?} must have 2 entries per padded axis ({} axes)",
                axes.len()
            )));
        }
        let mut pads = vec![(0i64, 0i64); r];
        for (i, &a) in axes.iter().enumerate() {
            pads[a] = (raw[i], raw[axes.len() + i]);
        }
        Ok(vec![pad_tensor(
            x,
            &pads,
            self.mode,
            &value,
            Some(ctx.pool),
        )?
        .into()])
    }
}

pub fn build_pad(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let m = ctx.attr_s("mode", "constant")?;
    let mode = parse_mode(&m).ok_or_else(|| {
        ctx.invalid(format!(
            "unknown mode '{m}' (constant, reflect, edge, wrap)"
        ))
    })?;
    let attr_pads = if ctx.opset < 11 {
        let key = if ctx.opset < 2 { "paddings" } else { "pads" };
        Some(
            ctx.attr_ints(key)?
                .ok_or_else(|| ctx.invalid(format!("attribute '{key}' is required")))?,
        )
    } else {
        None
    };
    Ok(Box::new(Pad {
        mode,
        attr_pads,
        attr_value: ctx.attr_f("value", 0.0)?,
    }))
}

/// CenterCropPad: crops or zero-pads the listed axes symmetrically to the target sizes.
struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

impl Op for CenterCropPad {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "CenterCropPad")?;
        let shape = ints_of(
            tensor_in(inputs, 1, "CenterCropPad")?,
            "CenterCropPad: input 'shape'",
        )?;
        let r = x.rank();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&a| axis_in(a, r, "CenterCropPad"))
                .collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        if shape.len() != axes.len() {
            return Err(Error::InvalidArgument(format!(
                "CenterCropPad: shape {shape:?} must have one entry per axis ({} axes)",
                axes.len()
            )));
        }
        let mut pads = vec![(0i64, 0i64); r];
        for (&a, &s) in axes.iter().zip(&shape) {
            if s < 0 {
                return Err(Error::InvalidArgument(format!(
                    "CenterCropPad: negative target size {s}"
                )));
            }
            let diff = s - x.shape()[a] as i64;
            // Crop: begin = floor(excess / 2); pad: begin = floor(missing / 2).
            let begin = if diff >= 0 { diff / 2 } else { -((-diff) / 2) };
            pads[a] = (begin, diff - begin);
        }
        let zero = Tensor::zeros(x.dtype(), &[1])?;
        Ok(vec![pad_tensor(
            x,
            &pads,
            PadMode::Constant,
            &zero,
            Some(ctx.pool),
        )?
        .into()])
    }
}

pub fn build_center_crop_pad(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(CenterCropPad {
        axes: ctx.attr_ints("axes")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    fn mode(m: &str) -> (&'static str, AttrValue) {
        ("mode", AttrValue::String(m.as_bytes().to_vec()))
    }

    #[test]
    fn pad_modes_match_numpy() {
        // numpy.pad(arange(4), (3, 2), mode) for each mode.
        let x = iota(&[4]);
        let p = i64s(&[3, 2]);
        let c = run1(
            "Pad",
            13,
            vec![],
            vec![x.clone(), p.clone(), Tensor::scalar(9f32)],
        );
        assert_eq!(floats(&c), vec![9., 9., 9., 0., 1., 2., 3., 9., 9.]);
        let r = run1("Pad", 13, vec![mode("reflect")], vec![x.clone(), p.clone()]);
        assert_eq!(floats(&r), vec![3., 2., 1., 0., 1., 2., 3., 2., 1.]);
        let e = run1("Pad", 13, vec![mode("edge")], vec![x.clone(), p.clone()]);
        assert_eq!(floats(&e), vec![0., 0., 0., 0., 1., 2., 3., 3., 3.]);
        let w = run1("Pad", 19, vec![mode("wrap")], vec![x.clone(), p]);
        assert_eq!(floats(&w), vec![1., 2., 3., 0., 1., 2., 3., 0., 1.]);
        // Negative pads crop.
        let c = run1("Pad", 13, vec![], vec![x.clone(), i64s(&[-1, 1])]);
        assert_eq!(floats(&c), vec![1., 2., 3., 0.]);
        assert!(run("Pad", 13, vec![], vec![x, i64s(&[-3, -2])], 1).is_err());
    }

    #[test]
    fn pad_2d_axes_and_attr_form() {
        let x = iota(&[2, 2]);
        // Opset 18 axes: pad only axis -1 by (1, 0).
        let r = run_opt(
            "Pad",
            18,
            vec![],
            vec![
                Some(x.clone()),
                Some(i64s(&[1, 0])),
                None,
                Some(i64s(&[-1])),
            ],
            1,
        )
        .unwrap();
        let r = r[0].as_tensor().unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(floats(r), vec![0., 0., 1., 0., 2., 3.]);
        let r = run1(
            "Pad",
            2,
            vec![
                ("pads", AttrValue::Ints(vec![1, 0, 0, 0])),
                ("value", AttrValue::Float(5.)),
            ],
            vec![x.clone()],
        );
        assert_eq!(floats(&r), vec![5., 5., 0., 1., 2., 3.]);
        let r = run1(
            "Pad",
            13,
            vec![mode("reflect")],
            vec![x, i64s(&[0, 1, 0, 1])],
        );
        assert_eq!(floats(&r), vec![1., 0., 1., 0., 3., 2., 3., 2.]);
    }

    #[test]
    fn center_crop_pad() {
        let x = iota(&[5, 2]);
        // Crop axis 0 from 5 to 2 (start 1), pad axis 1 from 2 to 5 (begin 1).
        let r = run1("CenterCropPad", 18, vec![], vec![x, i64s(&[2, 5])]);
        assert_eq!(r.shape(), &[2, 5]);
        assert_eq!(floats(&r), vec![0., 2., 3., 0., 0., 0., 4., 5., 0., 0.]);
    }
}
