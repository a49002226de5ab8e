//! NonZero: the indices of the non-zero elements, as an int64 [rank, count] tensor.

use super::elements::{dispatch_numeric, Num};
use crate::error::{Error, Result};
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

struct NonZero;

fn flags<T: Num>(t: &Tensor) -> Result<Vec<usize>> {
    Ok(t.as_slice::<T>()?
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_zero())
        .map(|(i, _)| i)
        .collect())
}

impl Op for NonZero {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "NonZero")?;
        let hits = if x.dtype() == crate::tensor::DType::String {
            x.strings()?
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(i, _)| i)
                .collect()
        } else {
            dispatch_numeric!(x.dtype(), T => flags::<T>(x)?,
                return Err(Error::UnsupportedDtype(format!("NonZero: element type {} is not supported", x.dtype()))))
        };
        // A scalar behaves as a 1-element vector (numpy's nonzero).
        let shape: Vec<usize> = if x.rank() == 0 {
            vec![1]
        } else {
            x.shape().to_vec()
        };
        let r = shape.len();
        let n = hits.len();
        let st = crate::ops::common::strides_of(&shape);
        let mut out = vec![0i64; r * n];
        for (j, &h) in hits.iter().enumerate() {
            for d in 0..r {
                out[d * n + j] = ((h / st[d]) % shape[d]) as i64;
            }
        }
        Ok(vec![Tensor::from_slice(&[r, n], &out)?.into()])
    }
}

pub fn build_nonzero(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(NonZero))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::tensor::Tensor;

    #[test]
    fn nonzero() {
        let x = Tensor::from_slice(&[2, 2], &[1i32, 0, 1, 1]).unwrap();
        let r = run1("NonZero", 13, vec![], vec![x]);
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(ints(&r), vec![0, 1, 1, 0, 0, 1]);
        let e = run1(
            "NonZero",
            13,
            vec![],
            vec![Tensor::zeros(crate::DType::Float32, &[3]).unwrap()],
        );
        assert_eq!(e.shape(), &[1, 0]);
    }
}
