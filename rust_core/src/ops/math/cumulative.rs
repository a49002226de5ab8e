//! Running sums and products along an axis: CumSum, CumProd (`exclusive`, `reverse`).

use super::dispatch::Num;
use crate::error::Result;
use crate::ops::common::norm_axis;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

struct Cumulative {
    prod: bool,
    exclusive: bool,
    reverse: bool,
    label: String,
}

fn build(ctx: &BuildContext, prod: bool) -> Result<Box<dyn Op>> {
    Ok(Box::new(Cumulative {
        prod,
        exclusive: ctx.attr_i("exclusive", 0)? != 0,
        reverse: ctx.attr_i("reverse", 0)? != 0,
        label: ctx.node.describe(),
    }))
}
pub fn build_cumsum(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, false)
}
pub fn build_cumprod(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, true)
}

fn scan<T: Num>(c: &Cumulative, x: &Tensor, axis: usize) -> Result<Tensor> {
    let shape = x.shape();
    let n = shape.get(axis).copied().unwrap_or(1);
    let inner: usize = shape.get(axis + 1..).map(|s| s.iter().product()).unwrap_or(1);
    let xs = x.as_slice::<T>()?;
    let (init, prod) = (if c.prod { T::ONE } else { T::ZERO }, c.prod);
    let op = |a: T, b: T| if prod { a.mul(b) } else { a.add(b) };
    Tensor::build::<T>(x.dtype(), shape, |o| {
        let block = n * inner;
        if block == 0 {
            return Ok(());
        }
        for (xb, ob) in xs.chunks_exact(block).zip(o.chunks_exact_mut(block)) {
            let mut acc = vec![init; inner];
            for step in 0..n {
                let k = if c.reverse { n - 1 - step } else { step };
                let (xr, or) = (&xb[k * inner..(k + 1) * inner], &mut ob[k * inner..(k + 1) * inner]);
                for ((a, o), &v) in acc.iter_mut().zip(or.iter_mut()).zip(xr) {
                    if c.exclusive {
                        *o = *a;
                        *a = op(*a, v);
                    } else {
                        *a = op(*a, v);
                        *o = *a;
                    }
                }
            }
        }
        Ok(())
    })
}

impl Op for Cumulative {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let a = tensor_in(inputs, 1, &self.label)?;
        let av = a.to_i64_vec().map_err(|e| e.context(format!("{}: 'axis'", self.label)))?;
        let axis = match av.as_slice() {
            [v] => norm_axis(*v, x.rank(), &self.label)?,
            _ => return Err(shape_err!("{}: 'axis' must hold one value, got shape {:?}", self.label, a.shape())),
        };
        let out = with_numeric!(x.dtype(), T => scan::<T>(self, x, axis)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, x.dtype())));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;
    use crate::tensor::Tensor;

    #[test]
    fn cumsum_variants() {
        let x = t_f32(&[5], &[1., 2., 3., 4., 5.]);
        let ax = Tensor::scalar(0i32);
        assert_eq!(f32s(&run1("CumSum", &[], &[x.clone(), ax.clone()])), vec![1., 3., 6., 10., 15.]);
        assert_eq!(f32s(&run1("CumSum", &[("exclusive", int(1))], &[x.clone(), ax.clone()])), vec![0., 1., 3., 6., 10.]);
        assert_eq!(f32s(&run1("CumSum", &[("reverse", int(1))], &[x.clone(), ax.clone()])), vec![15., 14., 12., 9., 5.]);
        assert_eq!(
            f32s(&run1("CumSum", &[("reverse", int(1)), ("exclusive", int(1))], &[x.clone(), ax.clone()])),
            vec![14., 12., 9., 5., 0.]
        );
        assert_eq!(f32s(&run1("CumProd", &[], &[x, ax])), vec![1., 2., 6., 24., 120.]);
        let m = t_f32(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let a1 = Tensor::scalar(-1i64);
        assert_eq!(f32s(&run1("CumSum", &[], &[m.clone(), a1])), vec![1., 3., 6., 4., 9., 15.]);
        assert_eq!(f32s(&run1("CumSum", &[], &[m, Tensor::scalar(0i64)])), vec![1., 2., 3., 5., 7., 9.]);
    }
}
