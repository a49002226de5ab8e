//! Det: determinants of square matrices `[*, M, M]` by LU decomposition with partial pivoting
//! (computed in f64).

use super::dispatch::Num;
use crate::error::Result;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

struct Det {
    label: String,
}

pub fn build_det(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Det { label: ctx.node.describe() }))
}

/// Determinant of the row-major `m x m` matrix `a` (destroyed).
fn det(a: &mut [f64], m: usize) -> f64 {
    let mut d = 1.0;
    for c in 0..m {
        let p = (c..m).max_by(|&i, &j| a[i * m + c].abs().total_cmp(&a[j * m + c].abs())).unwrap_or(c);
        if a[p * m + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for k in 0..m {
                a.swap(p * m + k, c * m + k);
            }
            d = -d;
        }
        let piv = a[c * m + c];
        d *= piv;
        for r in c + 1..m {
            let f = a[r * m + c] / piv;
            if f != 0.0 {
                for k in c..m {
                    a[r * m + k] -= f * a[c * m + k];
                }
            }
        }
    }
    d
}

fn run_typed<T: Num>(x: &Tensor, label: &str) -> Result<Tensor> {
    let s = x.shape();
    let r = s.len();
    if r < 2 || s[r - 1] != s[r - 2] {
        return Err(shape_err!("{label}: input must be [*, M, M], got {s:?}"));
    }
    let m = s[r - 1];
    let xs = x.as_slice::<T>()?;
    Tensor::build::<T>(x.dtype(), &s[..r - 2], |o| {
        let mut buf = vec![0f64; m * m];
        for (i, o) in o.iter_mut().enumerate() {
            for (b, v) in buf.iter_mut().zip(&xs[i * m * m..(i + 1) * m * m]) {
                *b = v.to_f64();
            }
            *o = T::from_f64(det(&mut buf, m));
        }
        Ok(())
    })
}

impl Op for Det {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let out = with_float!(x.dtype(), T => run_typed::<T>(x, &self.label)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;

    #[test]
    fn determinants() {
        let x = t_f32(&[2, 2, 2], &[1., 2., 3., 4., 2., 0., 0., 3.]);
        assert_close(&f32s(&run1("Det", &[], &[x])), &[-2., 6.], 1e-6);
        let y = t_f32(&[3, 3], &[0., 1., 2., 1., 0., 3., 4., -3., 8.]);
        assert_close(&f32s(&run1("Det", &[], &[y])), &[-2.], 1e-6);
        assert!(run("Det", &[], &[t_f32(&[2, 3], &[0.; 6])]).is_err());
    }
}
