//! ScatterND, ScatterElements and Scatter (the deprecated opset 9 name of ScatterElements),
//! with reductions none / add / mul / max / min.

use super::concat::axis_in;
use super::elements::{
    apply_move, dispatch_numeric, ints_of, signed_strides, walk_offsets, Elem, MoveKernel, Num,
};
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn parse_reduction(ctx: &BuildContext) -> Result<Reduction> {
    let r = ctx.attr_s("reduction", "none")?;
    Ok(match r.as_str() {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        _ => {
            return Err(ctx.invalid(format!(
                "unknown reduction '{r}' (none, add, mul, max, min)"
            )))
        }
    })
}

/// Copies data, then writes `post` update elements at each offset (later updates win).
struct ScatterKernel<'a> {
    offsets: &'a [usize],
    post: usize,
}

impl MoveKernel for ScatterKernel<'_> {
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let (data, upd) = (srcs[0], srcs[1]);
        dst.clone_from_slice(data);
        let p = self.post;
        for (k, &off) in self.offsets.iter().enumerate() {
            dst[off..off + p].clone_from_slice(&upd[k * p..(k + 1) * p]);
        }
        Ok(())
    }
}

fn scatter_reduce<T: Num>(
    data: &Tensor,
    upd: &Tensor,
    offsets: &[usize],
    post: usize,
    red: Reduction,
) -> Result<Tensor> {
    let (d, u) = (data.as_slice::<T>()?, upd.as_slice::<T>()?);
    let f: fn(T, T) -> T = match red {
        Reduction::Add => |a, b| a.add(b),
        Reduction::Mul => |a, b| a.mul(b),
        Reduction::Max => |a, b| if b > a { b } else { a },
        Reduction::Min => |a, b| if b < a { b } else { a },
        Reduction::None => |_, b| b,
    };
    Tensor::build::<T>(data.dtype(), data.shape(), |o| {
        o.copy_from_slice(d);
        for (k, &off) in offsets.iter().enumerate() {
            for (x, &y) in o[off..off + post]
                .iter_mut()
                .zip(&u[k * post..(k + 1) * post])
            {
                *x = f(*x, y);
            }
        }
        Ok(())
    })
}

fn scatter(
    op: &str,
    data: &Tensor,
    upd: &Tensor,
    offsets: &[usize],
    post: usize,
    red: Reduction,
) -> Result<Tensor> {
    if upd.dtype() != data.dtype() {
        return Err(Error::InvalidArgument(format!(
            "{op}: updates are {}, data is {}",
            upd.dtype(),
            data.dtype()
        )));
    }
    if red == Reduction::None {
        return apply_move(
            op,
            data.dtype(),
            &[data, upd],
            data.shape(),
            &ScatterKernel { offsets, post },
        );
    }
    dispatch_numeric!(data.dtype(), T => scatter_reduce::<T>(data, upd, offsets, post, red),
        Err(Error::UnsupportedDtype(format!("{op}: reduction {red:?} on {} elements", data.dtype()))))
}

/// ScatterND.
struct ScatterND {
    reduction: Reduction,
}

impl Op for ScatterND {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let data = tensor_in(inputs, 0, "ScatterND")?;
        let ind = tensor_in(inputs, 1, "ScatterND")?;
        let upd = tensor_in(inputs, 2, "ScatterND")?;
        let (ds, is) = (data.shape(), ind.shape());
        let q = is.len();
        let k = is.last().copied().unwrap_or(0);
        if q == 0 || k > ds.len() {
            return Err(Error::ShapeMismatch(format!(
                "ScatterND: indices shape {is:?} does not fit data shape {ds:?}"
            )));
        }
        let mut want = is[..q - 1].to_vec();
        want.extend_from_slice(&ds[k..]);
        if upd.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch(format!(
                "ScatterND: updates have shape {:?}, expected {want:?} for indices {is:?} and data {ds:?}",
                upd.shape()
            )));
        }
        let post: usize = ds[k..].iter().product();
        let st = crate::ops::common::strides_of(ds);
        let raw = ints_of(ind, "ScatterND: input 'indices'")?;
        let n: usize = is[..q - 1].iter().product();
        let mut offsets = Vec::with_capacity(n);
        for t in 0..n {
            let mut off = 0;
            for j in 0..k {
                let i = raw[t * k + j];
                let dim = ds[j] as i64;
                let v = if i < 0 { i + dim } else { i };
                if v < 0 || v >= dim {
                    return Err(Error::Runtime(format!(
                        "ScatterND: index {i} in input 'indices' is out of range for data dimension {j} of size {dim}"
                    )));
                }
                off += v as usize * st[j];
            }
            offsets.push(off);
        }
        Ok(vec![scatter(
            "ScatterND",
            data,
            upd,
            &offsets,
            post,
            self.reduction,
        )?
        .into()])
    }
}

pub fn build_scatter_nd(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(ScatterND {
        reduction: parse_reduction(ctx)?,
    }))
}

/// ScatterElements (and Scatter).
struct ScatterElements {
    axis: i64,
    reduction: Reduction,
    op: &'static str,
}

impl Op for ScatterElements {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let op = self.op;
        let data = tensor_in(inputs, 0, op)?;
        let ind = tensor_in(inputs, 1, op)?;
        let upd = tensor_in(inputs, 2, op)?;
        let axis = axis_in(self.axis, data.rank(), op)?;
        if ind.shape() != upd.shape()
            || ind.rank() != data.rank()
            || ind
                .shape()
                .iter()
                .zip(data.shape())
                .enumerate()
                .any(|(d, (i, s))| d != axis && i > s)
        {
            return Err(Error::ShapeMismatch(format!(
                "{op}: indices {:?} and updates {:?} must have equal shapes fitting data {:?}",
                ind.shape(),
                upd.shape(),
                data.shape()
            )));
        }
        let n_axis = data.shape()[axis] as i64;
        let raw = ints_of(ind, &format!("{op}: input 'indices'"))?;
        let mut st = signed_strides(data.shape());
        let axis_stride = st[axis] as usize;
        st[axis] = 0;
        let mut offsets = vec![0usize; raw.len()];
        let mut bad = None;
        walk_offsets(ind.shape(), &st, 0, 0, raw.len(), |k, off| {
            let i = raw[k];
            let v = if i < 0 { i + n_axis } else { i };
            if v < 0 || v >= n_axis {
                bad.get_or_insert(i);
            } else {
                offsets[k] = off + v as usize * axis_stride;
            }
        });
        if let Some(i) = bad {
            return Err(Error::Runtime(format!(
                "{op}: index {i} in input 'indices' is out of range for axis {axis} of size {n_axis}"
            )));
        }
        Ok(vec![
            scatter(op, data, upd, &offsets, 1, self.reduction)?.into()
        ])
    }
}

pub fn build_scatter_elements(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(ScatterElements {
        axis: ctx.attr_i("axis", 0)?,
        reduction: parse_reduction(ctx)?,
        op: "ScatterElements",
    }))
}

pub fn build_scatter(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(ScatterElements {
        axis: ctx.attr_i("axis", 0)?,
        reduction: Reduction::None,
        op: "Scatter",
    }))
}

/// Copies the cache, then writes update blocks at (prefix, cache position) offsets.
struct BlockScatterKernel<'a> {
    /// (destination offset, source offset) per block of `post` elements.
    moves: &'a [(usize, usize)],
    post: usize,
}

impl MoveKernel for BlockScatterKernel<'_> {
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let (cache, upd) = (srcs[0], srcs[1]);
        dst.clone_from_slice(cache);
        let p = self.post;
        for &(d, s) in self.moves {
            dst[d..d + p].clone_from_slice(&upd[s..s + p]);
        }
        Ok(())
    }
}

/// TensorScatter (opset 24): a KV-cache update, writing `update` into a copy of `past_cache`
/// along `axis` at per-batch write indices (modulo the cache length in circular mode).
struct TensorScatter {
    axis: i64,
    circular: bool,
}

impl Op for TensorScatter {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let cache = tensor_in(inputs, 0, "TensorScatter")?;
        let upd = tensor_in(inputs, 1, "TensorScatter")?;
        let (cs, us) = (cache.shape(), upd.shape());
        let axis = axis_in(self.axis, cache.rank(), "TensorScatter")?;
        if axis == 0
            || us.len() != cs.len()
            || us
                .iter()
                .zip(cs)
                .enumerate()
                .any(|(d, (u, c))| d != axis && u != c)
            || us[axis] > cs[axis]
        {
            return Err(Error::ShapeMismatch(format!(
                "TensorScatter: update shape {us:?} does not fit cache shape {cs:?} along axis {axis}"
            )));
        }
        let batch = cs[0];
        let writes = match crate::ops::opt_tensor_in(inputs, 2, "TensorScatter")? {
            Some(t) => ints_of(t, "TensorScatter: input 'write_indices'")?,
            None => vec![0; batch],
        };
        if writes.len() != batch {
            return Err(Error::ShapeMismatch(format!(
                "TensorScatter: write_indices has {} entries for batch size {batch}",
                writes.len()
            )));
        }
        let (max_len, seq) = (cs[axis], us[axis]);
        let post: usize = cs[axis + 1..].iter().product();
        let prefix: usize = cs[..axis].iter().product();
        let per_batch = prefix / batch.max(1);
        let mut moves = Vec::with_capacity(prefix * seq);
        for p in 0..prefix {
            let w = writes[p / per_batch.max(1)];
            for s in 0..seq {
                let mut c = w + s as i64;
                if self.circular && max_len > 0 {
                    c = c.rem_euclid(max_len as i64);
                }
                if c < 0 || c >= max_len as i64 {
                    return Err(Error::Runtime(format!(
                        "TensorScatter: write index {w} in input 'write_indices' plus {s} is out of range for a cache of length {max_len}"
                    )));
                }
                moves.push(((p * max_len + c as usize) * post, (p * seq + s) * post));
            }
        }
        let k = BlockScatterKernel {
            moves: &moves,
            post,
        };
        Ok(vec![apply_move(
            "TensorScatter",
            cache.dtype(),
            &[cache, upd],
            cs,
            &k,
        )?
        .into()])
    }
}

pub fn build_tensor_scatter(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let mode = ctx.attr_s("mode", "linear")?;
    if mode != "linear" && mode != "circular" {
        return Err(ctx.invalid(format!(
            "attribute 'mode' must be linear or circular, got '{mode}'"
        )));
    }
    Ok(Box::new(TensorScatter {
        axis: ctx.attr_i("axis", -2)?,
        circular: mode == "circular",
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::error::Error;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    fn red(r: &str) -> (&'static str, AttrValue) {
        ("reduction", AttrValue::String(r.as_bytes().to_vec()))
    }

    #[test]
    fn scatter_nd() {
        // onnx example 1: data [1..8], indices [[4],[3],[1],[7]], updates [9,10,11,12]
        let d = Tensor::from_slice(&[8], &[1f32, 2., 3., 4., 5., 6., 7., 8.]).unwrap();
        let i = Tensor::from_slice(&[4, 1], &[4i64, 3, 1, 7]).unwrap();
        let u = Tensor::from_slice(&[4], &[9f32, 10., 11., 12.]).unwrap();
        let r = run1(
            "ScatterND",
            16,
            vec![],
            vec![d.clone(), i.clone(), u.clone()],
        );
        assert_eq!(floats(&r), vec![1., 11., 3., 10., 9., 6., 7., 12.]);
        let i2 = Tensor::from_slice(&[2, 1], &[1i64, 1]).unwrap();
        let u2 = Tensor::from_slice(&[2], &[5f32, 6.]).unwrap();
        let r = run1(
            "ScatterND",
            16,
            vec![red("add")],
            vec![d.clone(), i2.clone(), u2.clone()],
        );
        assert_eq!(floats(&r)[1], 13.);
        let r = run1(
            "ScatterND",
            16,
            vec![red("mul")],
            vec![d.clone(), i2.clone(), u2.clone()],
        );
        assert_eq!(floats(&r)[1], 60.);
        let r = run1(
            "ScatterND",
            18,
            vec![red("max")],
            vec![d.clone(), i2.clone(), u2.clone()],
        );
        assert_eq!(floats(&r)[1], 6.);
        let r = run1("ScatterND", 18, vec![red("min")], vec![d.clone(), i2, u2]);
        assert_eq!(floats(&r)[1], 2.);
        let bad = Tensor::from_slice(&[1, 1], &[8i64]).unwrap();
        let u1 = Tensor::from_slice(&[1], &[0f32]).unwrap();
        assert!(matches!(
            run("ScatterND", 16, vec![], vec![d, bad, u1], 1),
            Err(Error::Runtime(_))
        ));
    }

    #[test]
    fn tensor_scatter() {
        // cache [2, 4, 1] zeros; update [2, 2, 1]; write at 1 (batch 0) and 3 (batch 1, circular).
        let cache = Tensor::zeros(crate::DType::Float32, &[2, 4, 1]).unwrap();
        let upd = Tensor::from_slice(&[2, 2, 1], &[1f32, 2., 3., 4.]).unwrap();
        let r = run1(
            "TensorScatter",
            24,
            vec![("mode", AttrValue::String(b"circular".to_vec()))],
            vec![cache.clone(), upd.clone(), i64s(&[1, 3])],
        );
        assert_eq!(floats(&r), vec![0., 1., 2., 0., 4., 0., 0., 3.]);
        assert!(matches!(
            run(
                "TensorScatter",
                24,
                vec![],
                vec![cache, upd, i64s(&[1, 3])],
                1
            ),
            Err(Error::Runtime(_))
        ));
    }

    #[test]
    fn scatter_elements() {
        // onnx example: data [[1,2,3,4,5]], indices [[1,3]], updates [[1.1,2.1]], axis 1
        let d = Tensor::from_slice(&[1, 5], &[1f32, 2., 3., 4., 5.]).unwrap();
        let i = Tensor::from_slice(&[1, 2], &[1i64, -2]).unwrap();
        let u = Tensor::from_slice(&[1, 2], &[1.1f32, 2.1]).unwrap();
        let r = run1(
            "ScatterElements",
            13,
            vec![("axis", AttrValue::Int(1))],
            vec![d.clone(), i.clone(), u.clone()],
        );
        assert_eq!(floats(&r), vec![1., 1.1, 3., 2.1, 5.]);
        let r = run1(
            "ScatterElements",
            18,
            vec![("axis", AttrValue::Int(1)), red("add")],
            vec![d.clone(), i.clone(), u.clone()],
        );
        assert_eq!(floats(&r), vec![1., 3.1, 3., 6.1, 5.]);
        let r = run1(
            "Scatter",
            9,
            vec![("axis", AttrValue::Int(1))],
            vec![d.clone(), i, u.clone()],
        );
        assert_eq!(floats(&r), vec![1., 1.1, 3., 2.1, 5.]);
        let bad = Tensor::from_slice(&[1, 2], &[1i64, 5]).unwrap();
        assert!(matches!(
            run(
                "ScatterElements",
                13,
                vec![("axis", AttrValue::Int(1))],
                vec![d, bad, u],
                1
            ),
            Err(Error::Runtime(_))
        ));
    }
}
