//! Variadic elementwise ops with broadcasting: Sum, Mean, Max, Min (folded pairwise).

use super::broadcast::{binary, unary};
use super::dispatch::Num;
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
}

struct Variadic {
    kind: Kind,
    label: String,
}

fn build(ctx: &BuildContext, kind: Kind) -> Result<Box<dyn Op>> {
    Ok(Box::new(Variadic { kind, label: ctx.node.describe() }))
}
pub fn build_sum(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Sum)
}
pub fn build_mean(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Mean)
}
pub fn build_max(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Max)
}
pub fn build_min(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Kind::Min)
}

fn fold<T: Num>(pool: &ThreadPool, kind: Kind, ts: &[&Tensor]) -> Result<Tensor> {
    let d = ts[0].dtype();
    let mut acc = ts[0].clone();
    for t in &ts[1..] {
        acc = match kind {
            Kind::Sum | Kind::Mean => binary::<T, T, T>(pool, &acc, t, d, |a, b| a.add(b))?,
            // NaN propagates, as numpy.maximum / numpy.minimum.
            Kind::Max => binary::<T, T, T>(pool, &acc, t, d, |a, b| if a.is_nan() || a >= b { a } else { b })?,
            Kind::Min => binary::<T, T, T>(pool, &acc, t, d, |a, b| if a.is_nan() || a <= b { a } else { b })?,
        };
    }
    if kind == Kind::Mean && ts.len() > 1 {
        let n = T::from_f64(ts.len() as f64);
        acc = unary::<T, T>(pool, &acc, d, |v| v.div(n))?;
    }
    Ok(acc)
}

impl Op for Variadic {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        if inputs.is_empty() {
            return Err(invalid_arg!("{}: needs at least one input", self.label));
        }
        let ts = (0..inputs.len()).map(|i| tensor_in(inputs, i, &self.label)).collect::<Result<Vec<_>>>()?;
        let d = ts[0].dtype();
        if let Some(t) = ts.iter().find(|t| t.dtype() != d) {
            return Err(dtype_err!("{}: inputs have different element types ({d} and {})", self.label, t.dtype()));
        }
        let out = with_numeric!(d, T => fold::<T>(ctx.pool, self.kind, &ts)?,
            _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label)));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;
    use crate::tensor::Tensor;

    #[test]
    fn variadic_broadcast() {
        let a = t_f32(&[3], &[3., 2., 1.]);
        let b = t_f32(&[1], &[2.]);
        let c = t_f32(&[2, 1], &[0., 5.]);
        assert_eq!(f32s(&run1("Sum", &[], &[a.clone(), b.clone(), c.clone()])), vec![5., 4., 3., 10., 9., 8.]);
        assert_close(&f32s(&run1("Mean", &[], &[a.clone(), b.clone()])), &[2.5, 2., 1.5], 1e-7);
        assert_eq!(f32s(&run1("Max", &[], &[a.clone(), b.clone()])), vec![3., 2., 2.]);
        assert_eq!(f32s(&run1("Min", &[], &[a.clone(), b.clone(), c])), vec![0., 0., 0., 2., 2., 1.]);
        assert_eq!(f32s(&run1("Max", &[], &[a.clone()])), vec![3., 2., 1.]);
        let n = t_f32(&[1], &[f32::NAN]);
        assert!(f32s(&run1("Max", &[], &[a.clone(), n]))[0].is_nan());
        let i = Tensor::from_slice(&[2], &[1i32, 9]).unwrap();
        let j = Tensor::from_slice(&[2], &[4i32, 2]).unwrap();
        assert_eq!(run1("Max", &[], &[i, j]).as_slice::<i32>().unwrap(), &[4, 9]);
        assert!(run("Sum", &[], &[a, Tensor::from_slice(&[1], &[1i32]).unwrap()]).is_err());
    }
}
