//! Concat and Split (and the helpers ConcatFromSequence / SplitToSequence reuse).

use super::elements::{apply_move, ints_of, par_rows, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

/// Normalizes an axis in `-rank..rank`, naming the op.
pub fn axis_in(axis: i64, rank: usize, op: &str) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(Error::InvalidArgument(format!(
            "{op}: axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Copies, for every outer index, each input's contiguous block after the previous one.
struct ConcatKernel<'a> {
    /// Elements per outer index of each input.
    inner: &'a [usize],
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for ConcatKernel<'_> {
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let row: usize = self.inner.iter().sum();
        if row == 0 {
            return Ok(());
        }
        // Split by elements, not by outer rows: a channel concat of one image has one row.
        par_rows(self.pool, dst, 1, |start, chunk| {
            let (mut pos, end) = (start, start + chunk.len());
            while pos < end {
                let (o, mut within) = (pos / row, pos % row);
                for (src, &n) in srcs.iter().zip(self.inner) {
                    if within >= n {
                        within -= n;
                        continue;
                    }
                    let take = (n - within).min(end - pos);
                    chunk[pos - start..pos - start + take].clone_from_slice(&src[o * n + within..o * n + within + take]);
                    pos += take;
                    if pos == end {
                        break;
                    }
                    within = 0;
                }
            }
            Ok(())
        })
    }
}

/// Concatenates tensors along `axis` (already normalized). All must have the same rank and
/// dtype and agree on every other dimension.
pub fn concat_tensors(
    ts: &[&Tensor],
    axis: usize,
    pool: Option<&ThreadPool>,
    op: &str,
) -> Result<Tensor> {
    let first = ts
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("{op}: no input to concatenate")))?;
    let rank = first.rank();
    let mut out_shape = first.shape().to_vec();
    out_shape[axis] = 0;
    for (i, t) in ts.iter().enumerate() {
        let same = t.rank() == rank
            && t.shape()
                .iter()
                .enumerate()
                .all(|(d, &n)| d == axis || n == first.shape()[d]);
        if !same {
            return Err(Error::ShapeMismatch(format!(
                "{op}: input {i} has shape {:?}, which does not match {:?} outside axis {axis}",
                t.shape(),
                first.shape()
            )));
        }
        out_shape[axis] += t.shape()[axis];
    }
    if ts.len() == 1 {
        return Ok((*first).clone());
    }
    let post: usize = first.shape()[axis + 1..].iter().product();
    let inner: Vec<usize> = ts.iter().map(|t| t.shape()[axis] * post).collect();
    apply_move(
        op,
        first.dtype(),
        ts,
        &out_shape,
        &ConcatKernel {
            inner: &inner,
            pool,
        },
    )
}

/// Concat.
struct Concat {
    axis: i64,
}

impl Op for Concat {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let ts = (0..inputs.len())
            .map(|i| tensor_in(inputs, i, "Concat"))
            .collect::<Result<Vec<_>>>()?;
        let rank = ts.first().map(|t| t.rank()).unwrap_or(0);
        let axis = axis_in(self.axis, rank, "Concat")?;
        Ok(vec![
            concat_tensors(&ts, axis, Some(ctx.pool), "Concat")?.into()
        ])
    }
}

pub fn build_concat(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let axis = match ctx.attr_opt_i("axis")? {
        Some(a) => a,
        None if ctx.opset < 4 => 1,
        None => return Err(ctx.invalid("attribute 'axis' is required")),
    };
    Ok(Box::new(Concat { axis }))
}

/// Copies a slab `[offset, offset + len)` of every source row.
struct SlabKernel<'a> {
    src_row: usize,
    offset: usize,
    len: usize,
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for SlabKernel<'_> {
    // Every output element is written (a row copy or fill each).
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let len = self.len;
        if len == 0 {
            return Ok(());
        }
        // Split by elements, not by rows: a channel split of one image has one row.
        par_rows(self.pool, dst, 1, |start, chunk| {
            let (mut pos, end) = (start, start + chunk.len());
            while pos < end {
                let (o, within) = (pos / len, pos % len);
                let take = (len - within).min(end - pos);
                let s = o * self.src_row + self.offset + within;
                chunk[pos - start..pos - start + take].clone_from_slice(&src[s..s + take]);
                pos += take;
            }
            Ok(())
        })
    }
}

/// Splits `x` along `axis` into pieces of the given sizes (which must sum to the dimension).
pub fn split_tensor(
    x: &Tensor,
    axis: usize,
    sizes: &[usize],
    pool: Option<&ThreadPool>,
    op: &str,
) -> Result<Vec<Tensor>> {
    let dim = x.shape()[axis];
    if sizes.iter().sum::<usize>() != dim {
        return Err(Error::ShapeMismatch(format!(
            "{op}: split sizes {sizes:?} do not add up to dimension {axis} of shape {:?}",
            x.shape()
        )));
    }
    let post: usize = x.shape()[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(sizes.len());
    let mut at = 0;
    for &n in sizes {
        let mut shape = x.shape().to_vec();
        shape[axis] = n;
        let t = if n == dim {
            x.clone()
        } else {
            apply_move(
                op,
                x.dtype(),
                &[x],
                &shape,
                &SlabKernel {
                    src_row: dim * post,
                    offset: at * post,
                    len: n * post,
                    pool,
                },
            )?
        };
        out.push(t);
        at += n;
    }
    Ok(out)
}

/// Sizes of `n` near-equal chunks of `dim` (the last one smaller when `dim % n != 0`).
pub fn even_sizes(dim: usize, n: usize, op: &str) -> Result<Vec<usize>> {
    if n == 0 {
        return Err(Error::InvalidArgument(format!(
            "{op}: cannot split into 0 parts"
        )));
    }
    let chunk = dim.div_ceil(n);
    Ok((0..n)
        .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
        .collect())
}

/// Split.
struct Split {
    axis: i64,
    attr_split: Option<Vec<i64>>,
    n_outputs: usize,
}

impl Op for Split {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Split")?;
        let axis = axis_in(self.axis, x.rank(), "Split")?;
        let split = match &self.attr_split {
            Some(s) => Some(s.clone()),
            None => opt_tensor_in(inputs, 1, "Split")?
                .map(|t| ints_of(t, "Split: input 'split'"))
                .transpose()?,
        };
        let sizes = match split {
            Some(s) => {
                if s.len() != self.n_outputs {
                    return Err(Error::InvalidArgument(format!(
                        "Split: 'split' {s:?} has {} entries for {} outputs",
                        s.len(),
                        self.n_outputs
                    )));
                }
                s.iter()
                    .map(|&v| {
                        usize::try_from(v).map_err(|_| {
                            Error::InvalidArgument(format!("Split: negative size in {s:?}"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => even_sizes(x.shape()[axis], self.n_outputs, "Split")?,
        };
        Ok(split_tensor(x, axis, &sizes, Some(ctx.pool), "Split")?
            .into_iter()
            .map(Value::Tensor)
            .collect())
    }
}

pub fn build_split(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let attr_split = if ctx.opset < 13 {
        ctx.attr_ints("split")?
    } else {
        None
    };
    let n_outputs = match ctx.attr_opt_i("num_outputs")? {
        Some(n) if n < 1 => {
            return Err(ctx.invalid(format!("attribute 'num_outputs' must be positive, got {n}")))
        }
        Some(n) => {
            if n as usize != ctx.node.outputs.len() {
                return Err(ctx.invalid(format!(
                    "'num_outputs' is {n} but the node has {} outputs",
                    ctx.node.outputs.len()
                )));
            }
            n as usize
        }
        None => ctx.node.outputs.len(),
    };
    Ok(Box::new(Split {
        axis: ctx.attr_i("axis", 0)?,
        attr_split,
        n_outputs,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn concat_split_across_threads_by_elements() {
        // Outer rows fewer than threads (a channel concat of one image) and several rows, each
        // large enough to be split mid-block across the pool's threads.
        for (outer, sizes) in [(1usize, [70_000usize, 3, 45_001]), (3, [20_000, 0, 33_333])] {
            let srcs: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| (0..outer * n).map(|j| (i * 1_000_000 + j) as f32).collect()).collect();
            let mut want = Vec::new();
            for o in 0..outer {
                for (src, &n) in srcs.iter().zip(&sizes) {
                    want.extend_from_slice(&src[o * n..(o + 1) * n]);
                }
            }
            for threads in [1, 2, 3] {
                let pool = crate::executor::pool::ThreadPool::new(threads);
                let ts: Vec<Tensor> = srcs.iter().zip(&sizes).map(|(v, &n)| Tensor::from_slice(&[outer, n], v).unwrap()).collect();
                let refs: Vec<&Tensor> = ts.iter().collect();
                let got = super::concat_tensors(&refs, 1, Some(&pool), "Concat").unwrap();
                assert_eq!(got.as_slice::<f32>().unwrap(), &want[..], "outer {outer}, {threads} threads");
                // And split back into the pieces.
                let parts = super::split_tensor(&got, 1, &sizes, Some(&pool), "Split").unwrap();
                for (k, (p, src)) in parts.iter().zip(&srcs).enumerate() {
                    assert_eq!(p.shape(), &[outer, sizes[k]]);
                    assert_eq!(p.as_slice::<f32>().unwrap(), &src[..], "split piece {k}, outer {outer}, {threads} threads");
                }
            }
        }
    }

    #[test]
    fn concat_axes_and_types() {
        let a = iota(&[2, 2]);
        let b = Tensor::from_slice(&[2, 1], &[10f32, 11.]).unwrap();
        let r = run1(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(-1))],
            vec![a.clone(), b],
        );
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(floats(&r), vec![0., 1., 10., 2., 3., 11.]);
        let r = run1(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(0))],
            vec![a.clone(), a.clone()],
        );
        assert_eq!(floats(&r), vec![0., 1., 2., 3., 0., 1., 2., 3.]);
        let e = Tensor::zeros(crate::DType::Float32, &[0, 2]).unwrap();
        let r = run1(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(0))],
            vec![e, a.clone()],
        );
        assert_eq!(r.shape(), &[2, 2]);
        let s = run1(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(1))],
            vec![strs(&[1, 1], &["x"]), strs(&[1, 2], &["y", "z"])],
        );
        assert_eq!(texts(&s), vec!["x", "y", "z"]);
        assert!(run(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(0))],
            vec![a.clone(), iota(&[2, 3])],
            1
        )
        .is_err());
        assert!(run(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(2))],
            vec![a.clone(), a.clone()],
            1
        )
        .is_err());
        let i = Tensor::from_slice(&[2], &[1i64, 2]).unwrap();
        assert!(run(
            "Concat",
            13,
            vec![("axis", AttrValue::Int(0))],
            vec![iota(&[2]), i],
            1
        )
        .is_err());
    }

    #[test]
    fn split_forms() {
        let x = iota(&[2, 5]);
        let outs = run(
            "Split",
            13,
            vec![("axis", AttrValue::Int(1))],
            vec![x.clone(), i64s(&[2, 3])],
            2,
        )
        .unwrap();
        let t: Vec<Tensor> = outs.into_iter().map(|v| v.into_tensor().unwrap()).collect();
        assert_eq!(floats(&t[0]), vec![0., 1., 5., 6.]);
        assert_eq!(floats(&t[1]), vec![2., 3., 4., 7., 8., 9.]);
        let outs = run(
            "Split",
            11,
            vec![
                ("axis", AttrValue::Int(-1)),
                ("split", AttrValue::Ints(vec![4, 1])),
            ],
            vec![x.clone()],
            2,
        )
        .unwrap();
        assert_eq!(outs[1].as_tensor().unwrap().shape(), &[2, 1]);
        // num_outputs of opset 18: uneven last chunk.
        let outs = run(
            "Split",
            18,
            vec![
                ("axis", AttrValue::Int(1)),
                ("num_outputs", AttrValue::Int(3)),
            ],
            vec![x.clone()],
            3,
        )
        .unwrap();
        let shapes: Vec<Vec<usize>> = outs
            .iter()
            .map(|v| v.as_tensor().unwrap().shape().to_vec())
            .collect();
        assert_eq!(shapes, vec![vec![2, 2], vec![2, 2], vec![2, 1]]);
        assert_eq!(floats(outs[2].as_tensor().unwrap()), vec![4., 9.]);
        // Equal split by output count.
        let outs = run("Split", 13, vec![], vec![x.clone()], 2).unwrap();
        assert_eq!(
            floats(outs[1].as_tensor().unwrap()),
            vec![5., 6., 7., 8., 9.]
        );
        assert!(run(
            "Split",
            13,
            vec![("axis", AttrValue::Int(1))],
            vec![x, i64s(&[2, 2])],
            2
        )
        .is_err());
    }
}
