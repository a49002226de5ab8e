//! Trilu: the upper or lower triangle of the last two axes (others set to zero).

use super::elements::{apply_move, ints_of, Elem, MoveKernel};
use crate::error::{Error, Result};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

struct Trilu {
    upper: bool,
}

struct TriluKernel {
    rows: usize,
    cols: usize,
    k: i64,
    upper: bool,
}

impl MoveKernel for TriluKernel {
    fn run<T: Elem>(&self, srcs: &[&[T]], dst: &mut [T]) -> Result<()> {
        let (src, zero) = (srcs[0], &srcs[1][0]);
        let c = self.cols as i64;
        for (m, (out, inp)) in dst
            .chunks_exact_mut(self.cols)
            .zip(src.chunks_exact(self.cols))
            .enumerate()
        {
            let i = (m % self.rows) as i64;
            // Columns kept: j >= i + k (upper) or j <= i + k (lower).
            let split = if self.upper {
                (i + self.k).clamp(0, c)
            } else {
                (i + self.k + 1).clamp(0, c)
            } as usize;
            let (a, b) = out.split_at_mut(split);
            if self.upper {
                a.fill(zero.clone());
                b.clone_from_slice(&inp[split..]);
            } else {
                a.clone_from_slice(&inp[..split]);
                b.fill(zero.clone());
            }
        }
        Ok(())
    }
}

impl Op for Trilu {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Trilu")?;
        let k = match opt_tensor_in(inputs, 1, "Trilu")? {
            Some(t) => *ints_of(t, "Trilu: input 'k'")?
                .first()
                .ok_or_else(|| Error::InvalidArgument("Trilu: input 'k' is empty".into()))?,
            None => 0,
        };
        let r = x.rank();
        if r < 2 {
            return Err(Error::ShapeMismatch(format!(
                "Trilu: input must have rank >= 2, got shape {:?}",
                x.shape()
            )));
        }
        let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
        if x.is_empty() {
            return Ok(vec![x.clone().into()]);
        }
        let zero = Tensor::zeros(x.dtype(), &[1])?;
        let kern = TriluKernel {
            rows,
            cols,
            k,
            upper: self.upper,
        };
        Ok(vec![apply_move(
            "Trilu",
            x.dtype(),
            &[x, &zero],
            x.shape(),
            &kern,
        )?
        .into()])
    }
}

pub fn build_trilu(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Trilu {
        upper: ctx.attr_i("upper", 1)? != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn trilu() {
        let x = iota(&[3, 3]);
        let r = run1("Trilu", 14, vec![], vec![x.clone()]);
        assert_eq!(floats(&r), vec![0., 1., 2., 0., 4., 5., 0., 0., 8.]);
        let r = run1(
            "Trilu",
            14,
            vec![("upper", AttrValue::Int(0))],
            vec![x.clone(), Tensor::scalar(-1i64)],
        );
        assert_eq!(floats(&r), vec![0., 0., 0., 3., 0., 0., 6., 7., 0.]);
        let r = run1("Trilu", 14, vec![], vec![x.clone(), Tensor::scalar(5i64)]);
        assert_eq!(floats(&r), vec![0.; 9]);
        let r = run1(
            "Trilu",
            14,
            vec![("upper", AttrValue::Int(0))],
            vec![x, Tensor::scalar(-5i64)],
        );
        assert_eq!(floats(&r), vec![0.; 9]);
    }
}
