//! OneHot: indices expanded into a new axis of size `depth`, `on` at the index, `off` elsewhere.

use super::elements::{apply_move, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};

struct OneHot {
    axis: i64,
}

/// Fills with values[0] (off), then writes values[1] (on) at the given positions.
struct OneHotKernel<'a> {
    on_positions: &'a [usize],
}

impl MoveKernel for OneHotKernel<'_> {
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let v = srcs[0];
        dst.fill(v[0].clone());
        for &p in self.on_positions {
            dst[p] = v[1].clone();
        }
        Ok(())
    }
}

impl Op for OneHot {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let ind = tensor_in(inputs, 0, "OneHot")?;
        let depth_t = tensor_in(inputs, 1, "OneHot")?;
        let values = tensor_in(inputs, 2, "OneHot")?;
        let depth = *depth_t
            .to_f64_vec()?
            .first()
            .ok_or_else(|| Error::InvalidArgument("OneHot: input 'depth' is empty".into()))?;
        if !(depth >= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "OneHot: depth must be positive, got {depth}"
            )));
        }
        let depth = depth as usize;
        if values.len() != 2 {
            return Err(Error::InvalidArgument(format!(
                "OneHot: values must hold [off, on], got shape {:?}",
                values.shape()
            )));
        }
        let r = ind.rank() as i64 + 1;
        let axis = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if axis < 0 || axis >= r {
            return Err(Error::InvalidArgument(format!(
                "OneHot: axis {} is out of range for output rank {r}",
                self.axis
            )));
        }
        let axis = axis as usize;
        let mut out_shape = ind.shape().to_vec();
        out_shape.insert(axis, depth);
        let post: usize = ind.shape()[axis..].iter().product();
        let idx = ind.to_f64_vec()?;
        let mut on = Vec::with_capacity(idx.len());
        for (k, &v) in idx.iter().enumerate() {
            let mut i = v.trunc() as i64;
            if i < 0 {
                i += depth as i64;
            }
            if i >= 0 && (i as usize) < depth {
                let (p, q) = (k / post.max(1), k % post.max(1));
                on.push((p * depth + i as usize) * post + q);
            }
        }
        let flat = values.reshaped(&[2])?;
        Ok(vec![apply_move(
            "OneHot",
            values.dtype(),
            &[&flat],
            &out_shape,
            &OneHotKernel { on_positions: &on },
        )?
        .into()])
    }
}

pub fn build_one_hot(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(OneHot {
        axis: ctx.attr_i("axis", -1)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn one_hot() {
        let ind = Tensor::from_slice(&[3], &[0i64, -1, 5]).unwrap();
        let vals = Tensor::from_slice(&[2], &[0f32, 1.]).unwrap();
        let r = run1(
            "OneHot",
            11,
            vec![],
            vec![ind.clone(), Tensor::scalar(3f32), vals.clone()],
        );
        assert_eq!(r.shape(), &[3, 3]);
        assert_eq!(floats(&r), vec![1., 0., 0., 0., 0., 1., 0., 0., 0.]);
        let r = run1(
            "OneHot",
            11,
            vec![("axis", AttrValue::Int(0))],
            vec![ind, Tensor::scalar(3i64), vals],
        );
        assert_eq!(floats(&r), vec![1., 0., 0., 0., 0., 0., 0., 1., 0.]);
    }
}
