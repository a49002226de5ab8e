//! Gather, GatherElements, GatherND, Compress.

use super::concat::axis_in;
use super::elements::{
    apply_move, ints_of, par_rows, signed_strides, walk_offsets, Elem, MoveKernel,
};
use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

/// Normalizes indices into `0..n` (negative count from the end); out-of-range is a runtime
/// error naming the op, the input and the value.
pub fn norm_indices(idx: &[i64], n: usize, op: &str, what: &str) -> Result<Vec<usize>> {
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if j < 0 || j >= n as i64 {
                Err(Error::Runtime(format!(
                    "{op}: index {i} in input '{what}' is out of range for a dimension of size {n}"
                )))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

/// Takes rows of a source viewed as [pre, n, post]: the output is [pre, idx.len(), post].
struct TakeKernel<'a> {
    idx: &'a [usize],
    n: usize,
    post: usize,
    pool: Option<&'a ThreadPool>,
}

impl MoveKernel for TakeKernel<'_> {
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let (m, post) = (self.idx.len(), self.post);
        if post == 0 || m == 0 {
            return Ok(());
        }
        par_rows(self.pool, dst, post, |r0, chunk| {
            for (k, out) in chunk.chunks_exact_mut(post).enumerate() {
                let row = r0 + k;
                let (p, j) = (row / m, row % m);
                let s = (p * self.n + self.idx[j]) * post;
                out.clone_from_slice(&src[s..s + post]);
            }
            Ok(())
        })
    }
}

/// Takes the slices `idx` (already in range) of `x` along `axis`; `idx_shape` replaces the axis
/// in the output shape.
pub fn take(
    x: &Tensor,
    axis: usize,
    idx: &[usize],
    idx_shape: &[usize],
    pool: Option<&ThreadPool>,
    op: &str,
) -> Result<Tensor> {
    let s = x.shape();
    let mut out_shape = s[..axis].to_vec();
    out_shape.extend_from_slice(idx_shape);
    out_shape.extend_from_slice(&s[axis + 1..]);
    let post: usize = s[axis + 1..].iter().product();
    apply_move(
        op,
        x.dtype(),
        &[x],
        &out_shape,
        &TakeKernel {
            idx,
            n: s[axis],
            post,
            pool,
        },
    )
}

/// Gather.
struct Gather {
    axis: i64,
}

impl Op for Gather {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Gather")?;
        let ind = tensor_in(inputs, 1, "Gather")?;
        let axis = axis_in(self.axis, x.rank(), "Gather")?;
        let idx = norm_indices(
            &ints_of(ind, "Gather: input 'indices'")?,
            x.shape()[axis],
            "Gather",
            "indices",
        )?;
        Ok(vec![take(
            x,
            axis,
            &idx,
            ind.shape(),
            Some(ctx.pool),
            "Gather",
        )?
        .into()])
    }
}

pub fn build_gather(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Gather {
        axis: ctx.attr_i("axis", 0)?,
    }))
}

/// Element gather: for every output position k (an index of the indices tensor), the source
/// offset is `base[k] + idx[k] * axis_stride`.
struct ElementKernel<'a> {
    /// Source offset of each output element with the axis coordinate zeroed.
    walk_shape: &'a [usize],
    walk_strides: &'a [isize],
    idx: &'a [usize],
    axis_stride: usize,
}

impl MoveKernel for ElementKernel<'_> {
    // One source element or slice per output element or slice.
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        let n = dst.len();
        walk_offsets(self.walk_shape, self.walk_strides, 0, 0, n, |k, off| {
            dst[k] = src[off + self.idx[k] * self.axis_stride].clone();
        });
        Ok(())
    }
}

/// GatherElements.
struct GatherElements {
    axis: i64,
}

/// Checks that `ind` has `x`'s rank and no dimension larger than `x`'s (except along `axis`).
fn check_elementwise_shape(x: &Tensor, ind: &Tensor, axis: usize, op: &str) -> Result<()> {
    if ind.rank() != x.rank()
        || ind
            .shape()
            .iter()
            .zip(x.shape())
            .enumerate()
            .any(|(d, (i, s))| d != axis && i > s)
    {
        return Err(Error::ShapeMismatch(format!(
            "{op}: indices shape {:?} does not fit data shape {:?} (axis {axis})",
            ind.shape(),
            x.shape()
        )));
    }
    Ok(())
}

impl Op for GatherElements {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "GatherElements")?;
        let ind = tensor_in(inputs, 1, "GatherElements")?;
        let axis = axis_in(self.axis, x.rank(), "GatherElements")?;
        check_elementwise_shape(x, ind, axis, "GatherElements")?;
        let idx = norm_indices(
            &ints_of(ind, "GatherElements: input 'indices'")?,
            x.shape()[axis],
            "GatherElements",
            "indices",
        )?;
        let mut st = signed_strides(x.shape());
        let axis_stride = st[axis] as usize;
        st[axis] = 0;
        let k = ElementKernel {
            walk_shape: ind.shape(),
            walk_strides: &st,
            idx: &idx,
            axis_stride,
        };
        Ok(vec![apply_move(
            "GatherElements",
            x.dtype(),
            &[x],
            ind.shape(),
            &k,
        )?
        .into()])
    }
}

pub fn build_gather_elements(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(GatherElements {
        axis: ctx.attr_i("axis", 0)?,
    }))
}

/// Copies `post`-element slices from precomputed source offsets (one per output slice).
pub struct OffsetsKernel<'a> {
    pub offsets: &'a [usize],
    pub post: usize,
}

impl MoveKernel for OffsetsKernel<'_> {
    // One source element or slice per output element or slice.
    const WRITES_ALL: bool = true;
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let src = srcs[0];
        if self.post == 0 {
            return Ok(());
        }
        for (out, &s) in dst.chunks_exact_mut(self.post).zip(self.offsets) {
            out.clone_from_slice(&src[s..s + self.post]);
        }
        Ok(())
    }
}

/// GatherND.
struct GatherND {
    batch_dims: usize,
}

impl Op for GatherND {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "GatherND")?;
        let ind = tensor_in(inputs, 1, "GatherND")?;
        let (ds, is) = (x.shape(), ind.shape());
        let b = self.batch_dims;
        let q = is.len();
        if q < 1 || b >= q || b >= ds.len() || ds[..b] != is[..b] {
            return Err(Error::ShapeMismatch(format!(
                "GatherND: indices shape {is:?} and data shape {ds:?} do not fit batch_dims {b}"
            )));
        }
        let m = is[q - 1];
        if b + m > ds.len() {
            return Err(Error::ShapeMismatch(format!(
                "GatherND: index tuples of length {m} are too long for data shape {ds:?} with batch_dims {b}"
            )));
        }
        let mut out_shape = is[..q - 1].to_vec();
        out_shape.extend_from_slice(&ds[b + m..]);
        let post: usize = ds[b + m..].iter().product();
        let batch_block: usize = ds[b..].iter().product();
        let st = crate::ops::common::strides_of(&ds[b..]);
        let raw = ints_of(ind, "GatherND: input 'indices'")?;
        let tuples = if m == 0 {
            is[..q - 1].iter().product()
        } else {
            raw.len() / m
        };
        let per_batch = tuples / is[..b].iter().product::<usize>().max(1);
        let mut offsets = Vec::with_capacity(tuples);
        for t in 0..tuples {
            let mut off = (t / per_batch.max(1)) * batch_block;
            for j in 0..m {
                let i = raw[t * m + j];
                let n = ds[b + j] as i64;
                let v = if i < 0 { i + n } else { i };
                if v < 0 || v >= n {
                    return Err(Error::Runtime(format!(
                        "GatherND: index {i} in input 'indices' is out of range for data dimension {} of size {n}",
                        b + j
                    )));
                }
                off += v as usize * st[j];
            }
            offsets.push(off);
        }
        let k = OffsetsKernel {
            offsets: &offsets,
            post,
        };
        Ok(vec![apply_move(
            "GatherND",
            x.dtype(),
            &[x],
            &out_shape,
            &k,
        )?
        .into()])
    }
}

pub fn build_gather_nd(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let b = ctx.attr_i("batch_dims", 0)?;
    if b < 0 {
        return Err(ctx.invalid(format!("attribute 'batch_dims' must be >= 0, got {b}")));
    }
    Ok(Box::new(GatherND {
        batch_dims: b as usize,
    }))
}

/// Compress: keeps the slices along `axis` (of the flattened input without axis) whose
/// condition is true.
struct Compress {
    axis: Option<i64>,
}

impl Op for Compress {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x0 = tensor_in(inputs, 0, "Compress")?;
        let cond = tensor_in(inputs, 1, "Compress")?;
        if cond.dtype() != DType::Bool || cond.rank() != 1 {
            return Err(Error::InvalidArgument(format!(
                "Compress: condition must be a 1-D bool tensor, got {} of shape {:?}",
                cond.dtype(),
                cond.shape()
            )));
        }
        let flat;
        let (x, axis) = match self.axis {
            Some(a) => (x0, axis_in(a, x0.rank(), "Compress")?),
            None => {
                flat = x0.reshaped(&[x0.len()])?;
                (&flat, 0)
            }
        };
        let c = cond.as_slice::<u8>()?;
        let n = x.shape()[axis];
        if c.len() > n {
            return Err(Error::ShapeMismatch(format!(
                "Compress: condition has {} entries, more than the {n} slices along axis {axis}",
                c.len()
            )));
        }
        let idx: Vec<usize> = c
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(i, _)| i)
            .collect();
        Ok(vec![take(
            x,
            axis,
            &idx,
            &[idx.len()],
            Some(ctx.pool),
            "Compress",
        )?
        .into()])
    }
}

pub fn build_compress(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Compress {
        axis: ctx.attr_opt_i("axis")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::error::Error;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn gather_axes() {
        let x = iota(&[3, 4]);
        let r = run1("Gather", 13, vec![], vec![x.clone(), i64s(&[2, -3])]);
        assert_eq!(floats(&r), vec![8., 9., 10., 11., 0., 1., 2., 3.]);
        let ind = Tensor::from_slice(&[2, 1], &[3i32, 0]).unwrap();
        let r = run1(
            "Gather",
            13,
            vec![("axis", AttrValue::Int(-1))],
            vec![x.clone(), ind],
        );
        assert_eq!(r.shape(), &[3, 2, 1]);
        assert_eq!(floats(&r), vec![3., 0., 7., 4., 11., 8.]);
        let r = run1("Gather", 13, vec![], vec![x.clone(), Tensor::scalar(1i64)]);
        assert_eq!(r.shape(), &[4]);
        match run("Gather", 13, vec![], vec![x.clone(), i64s(&[3])], 1) {
            Err(Error::Runtime(m)) => assert!(m.contains("index 3"), "{m}"),
            other => panic!("expected a runtime error, got {other:?}"),
        }
        let s = strs(&[3], &["a", "b", "c"]);
        assert_eq!(
            texts(&run1("Gather", 13, vec![], vec![s, i64s(&[2, 2, 0])])),
            vec!["c", "c", "a"]
        );
        let r = run1("Gather", 13, vec![], vec![x, i64s(&[])]);
        assert_eq!(r.shape(), &[0, 4]);
    }

    #[test]
    fn gather_elements_and_nd() {
        // onnx example: data [[1,2],[3,4]], indices [[0,0],[1,0]], axis 1 -> [[1,1],[4,3]]
        let x = Tensor::from_slice(&[2, 2], &[1f32, 2., 3., 4.]).unwrap();
        let ind = Tensor::from_slice(&[2, 2], &[0i64, 0, 1, 0]).unwrap();
        let r = run1(
            "GatherElements",
            13,
            vec![("axis", AttrValue::Int(1))],
            vec![x.clone(), ind],
        );
        assert_eq!(floats(&r), vec![1., 1., 4., 3.]);
        let ind = Tensor::from_slice(&[1, 2], &[-1i64, 0]).unwrap();
        let r = run1("GatherElements", 13, vec![], vec![x.clone(), ind]);
        assert_eq!(floats(&r), vec![3., 2.]);
        // GatherND: data [[0,1],[2,3]], indices [[1],[0]] -> [[2,3],[0,1]]
        let ind = Tensor::from_slice(&[2, 1], &[1i64, 0]).unwrap();
        let r = run1("GatherND", 13, vec![], vec![x.clone(), ind]);
        assert_eq!(floats(&r), vec![3., 4., 1., 2.]);
        // batch_dims 1: data [2,2,2] = 0..8, indices [[1],[0]] -> [[2,3],[4,5]]
        let d = iota(&[2, 2, 2]);
        let ind = Tensor::from_slice(&[2, 1], &[1i64, 0]).unwrap();
        let r = run1(
            "GatherND",
            13,
            vec![("batch_dims", AttrValue::Int(1))],
            vec![d.clone(), ind],
        );
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(floats(&r), vec![2., 3., 4., 5.]);
        let ind = Tensor::from_slice(&[2, 3], &[0i64, 1, 1, 1, 1, 0]).unwrap();
        let r = run1("GatherND", 13, vec![], vec![d.clone(), ind]);
        assert_eq!(floats(&r), vec![3., 6.]);
        let ind = Tensor::from_slice(&[1, 1], &[2i64]).unwrap();
        assert!(matches!(
            run("GatherND", 13, vec![], vec![d, ind], 1),
            Err(Error::Runtime(_))
        ));
    }

    #[test]
    fn compress() {
        let x = iota(&[3, 2]);
        let c = Tensor::from_slice(&[3], &[0u8, 1, 1]).unwrap();
        let c = Tensor::from_bytes(crate::DType::Bool, &[3], c.bytes().unwrap()).unwrap();
        let r = run1(
            "Compress",
            11,
            vec![("axis", AttrValue::Int(0))],
            vec![x.clone(), c.clone()],
        );
        assert_eq!(floats(&r), vec![2., 3., 4., 5.]);
        let r = run1("Compress", 11, vec![], vec![x, c]);
        assert_eq!(floats(&r), vec![1., 2.]);
    }
}
