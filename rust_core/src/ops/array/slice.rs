//! Slice (opset 1 attributes; opset 10+ inputs with axes and steps, negative steps, clamped
//! bounds).

use super::elements::{
    apply_move, ints_of, par_rows, signed_strides, walk_offsets, Elem, MoveKernel,
};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// Resolved slice of one axis: first index, step, number of elements taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisSlice {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

/// numpy/ONNX semantics of one axis's `start:end:step` over a dimension `dim`.
pub fn resolve_axis(start: i64, end: i64, step: i64, dim: usize) -> AxisSlice {
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    if step > 0 {
        let s = norm(start).clamp(0, d);
        let e = norm(end).clamp(0, d);
        let count = if e > s {
            ((e - s) + step - 1) / step
        } else {
            0
        };
        AxisSlice {
            start: s,
            step,
            count: count as usize,
        }
    } else {
        let s = norm(start).clamp(-1, d - 1);
        let e = norm(end).clamp(-1, d - 1);
        let count = if s > e {
            ((s - e) + (-step) - 1) / (-step)
        } else {
            0
        };
        AxisSlice {
            start: s.max(0),
            step,
            count: count as usize,
        }
    }
}

/// Copies a strided region: rows of `row` contiguous elements (or single elements when the
/// innermost sliced axis has a step other than 1).
struct SliceKernel<'a> {
    walk_shape: &'a [usize],
    walk_strides: &'a [isize],
    base: isize,
    row: usize,
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for SliceKernel<'_> {
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let row = self.row;
        par_rows(self.pool, dst, row, |r0, chunk| {
            let rows = chunk.len() / row;
            walk_offsets(
                self.walk_shape,
                self.walk_strides,
                self.base,
                r0,
                r0 + rows,
                |k, off| {
                    let o = (k - r0) * row;
                    chunk[o..o + row].clone_from_slice(&src[off..off + row]);
                },
            );
            Ok(())
        })
    }
}

/// Slices `x` with one resolved `AxisSlice` per axis.
pub fn slice_tensor(x: &Tensor, sl: &[AxisSlice], pool: Option<&ThreadPool>) -> Result<Tensor> {
    let shape = x.shape();
    let out_shape: Vec<usize> = sl.iter().map(|s| s.count).collect();
    let full = |d: usize| sl[d].start == 0 && sl[d].step == 1 && sl[d].count == shape[d];
    let k = match (0..shape.len()).rev().find(|&d| !full(d)) {
        None => return Ok(x.clone()),
        Some(k) => k,
    };
    if out_shape.contains(&0) {
        return Tensor::zeros(x.dtype(), &out_shape);
    }
    let st = signed_strides(shape);
    let base: isize = sl.iter().zip(&st).map(|(s, &t)| s.start as isize * t).sum();
    let strides: Vec<isize> = sl
        .iter()
        .zip(&st)
        .map(|(s, &t)| s.step as isize * t)
        .collect();
    let post: usize = shape[k + 1..].iter().product();
    let (walk_len, row) = if sl[k].step == 1 {
        (k, sl[k].count * post)
    } else {
        (k + 1, post)
    };
    let kern = SliceKernel {
        walk_shape: &out_shape[..walk_len],
        walk_strides: &strides[..walk_len],
        base,
        row,
        pool,
    };
    apply_move("Slice", x.dtype(), &[x], &out_shape, &kern)
}

/// Slice. Bounds come from attributes (opset < 10) or inputs.
struct Slice {
    /// (starts, ends, axes) of the attribute form.
    attrs: Option<(Vec<i64>, Vec<i64>, Option<Vec<i64>>)>,
}

impl Op for Slice {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Slice")?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => {
                let get = |i: usize, name: &str| -> Result<Option<Vec<i64>>> {
                    opt_tensor_in(inputs, i, "Slice")?
                        .map(|t| ints_of(t, &format!("Slice: input '{name}'")))
                        .transpose()
                };
                let s = get(1, "starts")?.ok_or_else(|| {
                    Error::InvalidArgument("Slice: input 'starts' is missing".into())
                })?;
                let e = get(2, "ends")?.ok_or_else(|| {
                    Error::InvalidArgument("Slice: input 'ends' is missing".into())
                })?;
                (s, e, get(3, "axes")?, get(4, "steps")?)
            }
        };
        let r = x.rank();
        if starts.len() != ends.len() {
            return Err(Error::InvalidArgument(format!(
                "Slice: starts {starts:?} and ends {ends:?} differ in length"
            )));
        }
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps: Vec<i64> = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(Error::InvalidArgument(format!(
                "Slice: starts, ends, axes {axes:?} and steps {steps:?} must have the same length ({})",
                starts.len()
            )));
        }
        let mut sl: Vec<AxisSlice> = x
            .shape()
            .iter()
            .map(|&d| AxisSlice {
                start: 0,
                step: 1,
                count: d,
            })
            .collect();
        let mut seen = vec![false; r];
        for i in 0..starts.len() {
            let a = axes[i];
            let n = if a < 0 { a + r as i64 } else { a };
            if n < 0 || n >= r as i64 {
                return Err(Error::InvalidArgument(format!(
                    "Slice: axis {a} is out of range for rank {r}"
                )));
            }
            let n = n as usize;
            if seen[n] {
                return Err(Error::InvalidArgument(format!(
                    "Slice: axis {a} is repeated in {axes:?}"
                )));
            }
            seen[n] = true;
            if steps[i] == 0 {
                return Err(Error::InvalidArgument(format!(
                    "Slice: step 0 for axis {a}"
                )));
            }
            sl[n] = resolve_axis(starts[i], ends[i], steps[i], x.shape()[n]);
        }
        Ok(vec![slice_tensor(x, &sl, Some(ctx.pool))?.into()])
    }
}

pub fn build_slice(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    if ctx.opset < 10 {
        let starts = ctx
            .attr_ints("starts")?
            .ok_or_else(|| ctx.invalid("attribute 'starts' is required"))?;
        let ends = ctx
            .attr_ints("ends")?
            .ok_or_else(|| ctx.invalid("attribute 'ends' is required"))?;
        return Ok(Box::new(Slice {
            attrs: Some((starts, ends, ctx.attr_ints("axes")?)),
        }));
    }
    Ok(Box::new(Slice { attrs: None }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::graph::ir::AttrValue;

    #[test]
    fn resolve_like_numpy() {
        // Values checked against numpy's slice.indices.
        assert_eq!(
            resolve_axis(1, 4, 1, 5),
            AxisSlice {
                start: 1,
                step: 1,
                count: 3
            }
        );
        assert_eq!(
            resolve_axis(-1, i64::MIN, -1, 5),
            AxisSlice {
                start: 4,
                step: -1,
                count: 5
            }
        );
        assert_eq!(
            resolve_axis(0, i64::MAX, 2, 5),
            AxisSlice {
                start: 0,
                step: 2,
                count: 3
            }
        );
        assert_eq!(
            resolve_axis(10, -10, -3, 5),
            AxisSlice {
                start: 4,
                step: -3,
                count: 2
            }
        );
        assert_eq!(resolve_axis(3, 1, 1, 5).count, 0);
        assert_eq!(
            resolve_axis(-100, 100, 1, 5),
            AxisSlice {
                start: 0,
                step: 1,
                count: 5
            }
        );
    }

    #[test]
    fn slices() {
        let x = iota(&[3, 4]);
        // x[0:2, 1:3]
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![x.clone(), i64s(&[0, 1]), i64s(&[2, 3])],
        );
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(floats(&r), vec![1., 2., 5., 6.]);
        // x[:, ::-2] via axes/steps
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![
                x.clone(),
                i64s(&[-1]),
                i64s(&[i64::MIN]),
                i64s(&[-1]),
                i64s(&[-2]),
            ],
        );
        assert_eq!(floats(&r), vec![3., 1., 7., 5., 11., 9.]);
        // x[1:] rows: contiguous.
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![x.clone(), i64s(&[1]), i64s(&[i64::MAX]), i64s(&[0])],
        );
        assert_eq!(floats(&r), (4..12).map(|v| v as f32).collect::<Vec<_>>());
        // Full slice shares.
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![x.clone(), i64s(&[0]), i64s(&[100]), i64s(&[1])],
        );
        assert!(r.shares_data_with(&x));
        // Empty result.
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![x.clone(), i64s(&[3]), i64s(&[1]), i64s(&[1])],
        );
        assert_eq!(r.shape(), &[3, 0]);
        // Opset 1 attributes.
        let r = run1(
            "Slice",
            1,
            vec![
                ("starts", AttrValue::Ints(vec![1])),
                ("ends", AttrValue::Ints(vec![2])),
                ("axes", AttrValue::Ints(vec![0])),
            ],
            vec![x.clone()],
        );
        assert_eq!(floats(&r), vec![4., 5., 6., 7.]);
        // Strings, 3-D with a middle step.
        let y = iota(&[2, 3, 2]);
        let r = run1(
            "Slice",
            13,
            vec![],
            vec![y, i64s(&[0]), i64s(&[3]), i64s(&[1]), i64s(&[2])],
        );
        assert_eq!(floats(&r), vec![0., 1., 4., 5., 6., 7., 10., 11.]);
        let s = strs(&[3], &["a", "b", "c"]);
        assert_eq!(
            texts(&run1(
                "Slice",
                13,
                vec![],
                vec![s, i64s(&[-1]), i64s(&[-4]), i64s(&[0]), i64s(&[-1])]
            )),
            vec!["c", "b", "a"]
        );
        assert!(run(
            "Slice",
            13,
            vec![],
            vec![x.clone(), i64s(&[0]), i64s(&[1]), i64s(&[0]), i64s(&[0])],
            1
        )
        .is_err());
        assert!(run(
            "Slice",
            13,
            vec![],
            vec![x, i64s(&[0]), i64s(&[1]), i64s(&[2])],
            1
        )
        .is_err());
    }
}
