//! ReverseSequence: reverses the first `sequence_lens[b]` time steps of every batch entry.

use super::elements::{apply_move, ints_of};
use super::gather::OffsetsKernel;
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};

struct ReverseSequence {
    time_axis: usize,
    batch_axis: usize,
}

impl Op for ReverseSequence {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "ReverseSequence")?;
        let lens = ints_of(
            tensor_in(inputs, 1, "ReverseSequence")?,
            "ReverseSequence: input 'sequence_lens'",
        )?;
        if x.rank() < 2 {
            return Err(Error::ShapeMismatch(format!(
                "ReverseSequence: input must have rank >= 2, got {:?}",
                x.shape()
            )));
        }
        let s = x.shape();
        let (nt, nb) = (s[self.time_axis], s[self.batch_axis]);
        if lens.len() != nb {
            return Err(Error::ShapeMismatch(format!(
                "ReverseSequence: sequence_lens has {} entries for batch size {nb}",
                lens.len()
            )));
        }
        let post: usize = s[2..].iter().product();
        let st = crate::ops::common::strides_of(s);
        let (st_t, st_b) = (st[self.time_axis], st[self.batch_axis]);
        let mut offsets = Vec::with_capacity(nt * nb);
        // Output rows in memory order over axes 0 and 1.
        for a0 in 0..s[0] {
            for a1 in 0..s[1] {
                let (t, b) = if self.time_axis == 0 {
                    (a0, a1)
                } else {
                    (a1, a0)
                };
                let l = lens[b];
                if l < 0 || l as usize > nt {
                    return Err(Error::Runtime(format!(
                        "ReverseSequence: sequence length {l} in input 'sequence_lens' is out of range for {nt} time steps"
                    )));
                }
                let l = l as usize;
                let src_t = if t < l { l - 1 - t } else { t };
                offsets.push(src_t * st_t + b * st_b);
            }
        }
        let k = OffsetsKernel {
            offsets: &offsets,
            post,
        };
        Ok(vec![
            apply_move("ReverseSequence", x.dtype(), &[x], s, &k)?.into()
        ])
    }
}

pub fn build_reverse_sequence(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let t = ctx.attr_i("time_axis", 0)?;
    let b = ctx.attr_i("batch_axis", 1)?;
    if !((t == 0 && b == 1) || (t == 1 && b == 0)) {
        return Err(ctx.invalid(format!(
            "time_axis {t} and batch_axis {b} must be 0 and 1 in some order"
        )));
    }
    Ok(Box::new(ReverseSequence {
        time_axis: t as usize,
        batch_axis: b as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;

    #[test]
    fn reverse_sequence() {
        // onnx example (time axis 0): x = arange(16).reshape(4, 4), lens [4, 3, 2, 1]
        let x = iota(&[4, 4]);
        let r = run1(
            "ReverseSequence",
            10,
            vec![],
            vec![x.clone(), i64s(&[4, 3, 2, 1])],
        );
        assert_eq!(
            floats(&r),
            vec![12., 9., 6., 3., 8., 5., 2., 7., 4., 1., 10., 11., 0., 13., 14., 15.]
        );
        let r = run1(
            "ReverseSequence",
            10,
            vec![
                ("time_axis", AttrValue::Int(1)),
                ("batch_axis", AttrValue::Int(0)),
            ],
            vec![x, i64s(&[1, 2, 3, 4])],
        );
        assert_eq!(
            floats(&r),
            vec![0., 1., 2., 3., 5., 4., 6., 7., 10., 9., 8., 11., 15., 14., 13., 12.]
        );
    }
}
