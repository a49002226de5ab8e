//! Comparisons and logic: Equal, Greater, GreaterOrEqual, Less, LessOrEqual (bool outputs),
//! And, Or, Xor, Not, and Where.

use super::arith::same_dtype_pair;
use super::broadcast::{binary, ternary, unary, Broadcast};
use crate::error::Result;
use crate::executor::pool::ThreadPool;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Equal,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

struct Compare {
    cmp: Cmp,
    label: String,
}

fn build(ctx: &BuildContext, cmp: Cmp) -> Result<Box<dyn Op>> {
    Ok(Box::new(Compare { cmp, label: ctx.node.describe() }))
}
pub fn build_equal(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Cmp::Equal)
}
pub fn build_greater(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Cmp::Greater)
}
pub fn build_greater_or_equal(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Cmp::GreaterOrEqual)
}
pub fn build_less(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Cmp::Less)
}
pub fn build_less_or_equal(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    build(ctx, Cmp::LessOrEqual)
}

fn compare<T: crate::tensor::Element + PartialOrd>(pool: &ThreadPool, cmp: Cmp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = DType::Bool;
    match cmp {
        Cmp::Equal => binary::<T, T, u8>(pool, a, b, d, |x, y| (x == y) as u8),
        Cmp::Greater => binary::<T, T, u8>(pool, a, b, d, |x, y| (x > y) as u8),
        Cmp::GreaterOrEqual => binary::<T, T, u8>(pool, a, b, d, |x, y| (x >= y) as u8),
        Cmp::Less => binary::<T, T, u8>(pool, a, b, d, |x, y| (x < y) as u8),
        Cmp::LessOrEqual => binary::<T, T, u8>(pool, a, b, d, |x, y| (x <= y) as u8),
    }
}

fn compare_strings(cmp: Cmp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let bc = Broadcast::<2>::new([a.shape(), b.shape()])?;
    let (av, bv) = (a.strings()?, b.strings()?);
    let sa = crate::ops::common::broadcast_strides(a.shape(), &bc.out_shape);
    let sb = crate::ops::common::broadcast_strides(b.shape(), &bc.out_shape);
    Tensor::build::<u8>(DType::Bool, &bc.out_shape.clone(), |o| {
        crate::ops::common::for_each_broadcast(&bc.out_shape, [&sa, &sb], |i, [ia, ib]| {
            let (x, y) = (&av[ia], &bv[ib]);
            o[i] = match cmp {
                Cmp::Equal => x == y,
                Cmp::Greater => x > y,
                Cmp::GreaterOrEqual => x >= y,
                Cmp::Less => x < y,
                Cmp::LessOrEqual => x <= y,
            } as u8;
        });
        Ok(())
    })
}

impl Op for Compare {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        let out = match a.dtype() {
            DType::Bool => compare::<u8>(ctx.pool, self.cmp, a, b)?,
            DType::String => compare_strings(self.cmp, a, b)?,
            d => with_numeric!(d, T => compare::<T>(ctx.pool, self.cmp, a, b)?,
                _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label))),
        };
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// And, Or, Xor, Not

#[derive(Clone, Copy, Debug, PartialEq)]
enum Logic {
    And,
    Or,
    Xor,
}

struct LogicOp {
    logic: Logic,
    label: String,
}

pub fn build_and(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(LogicOp { logic: Logic::And, label: ctx.node.describe() }))
}
pub fn build_or(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(LogicOp { logic: Logic::Or, label: ctx.node.describe() }))
}
pub fn build_xor(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(LogicOp { logic: Logic::Xor, label: ctx.node.describe() }))
}

fn check_bool(t: &Tensor, label: &str) -> Result<()> {
    if t.dtype() != DType::Bool {
        return Err(dtype_err!("{label}: expected bool tensors, got {}", t.dtype()));
    }
    Ok(())
}

impl Op for LogicOp {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        check_bool(a, &self.label)?;
        let d = DType::Bool;
        let out = match self.logic {
            Logic::And => binary::<u8, u8, u8>(ctx.pool, a, b, d, |x, y| ((x != 0) & (y != 0)) as u8)?,
            Logic::Or => binary::<u8, u8, u8>(ctx.pool, a, b, d, |x, y| ((x != 0) | (y != 0)) as u8)?,
            Logic::Xor => binary::<u8, u8, u8>(ctx.pool, a, b, d, |x, y| ((x != 0) ^ (y != 0)) as u8)?,
        };
        Ok(vec![out.into()])
    }
}

struct Not {
    label: String,
}

pub fn build_not(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Not { label: ctx.node.describe() }))
}

impl Op for Not {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        check_bool(x, &self.label)?;
        Ok(vec![unary::<u8, u8>(ctx.pool, x, DType::Bool, |v| (v == 0) as u8)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// Where

struct Where {
    label: String,
}

pub fn build_where(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Where { label: ctx.node.describe() }))
}

fn where_strings(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let bc = Broadcast::<3>::new([c.shape(), x.shape(), y.shape()])?;
    let out = &bc.out_shape;
    let cv = c.as_slice::<u8>()?;
    let (xv, yv) = (x.strings()?, y.strings()?);
    let s: Vec<Vec<usize>> =
        [c.shape(), x.shape(), y.shape()].iter().map(|s| crate::ops::common::broadcast_strides(s, out)).collect();
    let mut res = vec![Vec::new(); bc.len()];
    crate::ops::common::for_each_broadcast(out, [&s[0], &s[1], &s[2]], |i, [ic, ix, iy]| {
        res[i] = if cv[ic] != 0 { xv[ix].clone() } else { yv[iy].clone() };
    });
    Tensor::from_strings(out, res)
}

impl Op for Where {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let c = tensor_in(inputs, 0, &self.label)?;
        check_bool(c, &self.label)?;
        let x = tensor_in(inputs, 1, &self.label)?;
        let y = tensor_in(inputs, 2, &self.label)?;
        if x.dtype() != y.dtype() {
            return Err(dtype_err!("{}: X and Y have different element types ({} and {})", self.label, x.dtype(), y.dtype()));
        }
        let d = x.dtype();
        let out = match d {
            DType::String => where_strings(c, x, y)?,
            DType::Int8 | DType::Int4 | DType::Int2 => {
                ternary::<u8, i8, i8, i8>(ctx.pool, c, x, y, d, |k, a, b| if k != 0 { a } else { b })?
            }
            _ if d.size() == 1 => ternary::<u8, u8, u8, u8>(ctx.pool, c, x, y, d, |k, a, b| if k != 0 { a } else { b })?,
            _ => with_numeric!(d, T => ternary::<u8, T, T, T>(ctx.pool, c, x, y, d, |k, a, b| if k != 0 { a } else { b })?,
                _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label))),
        };
        Ok(vec![out.into()])
    }
}

/// A bool tensor (tests).
#[cfg(test)]
pub(super) fn bools(shape: &[usize], v: &[u8]) -> Tensor {
    Tensor::build::<u8>(DType::Bool, shape, |o| {
        o.copy_from_slice(v);
        Ok(())
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::test_util::*;

    #[test]
    fn comparisons() {
        let a = t_f32(&[3], &[1.0, 2.0, 3.0]);
        let b = t_f32(&[], &[2.0]);
        let r = |op| run1(op, &[], &[a.clone(), b.clone()]).as_slice::<u8>().unwrap().to_vec();
        assert_eq!(r("Equal"), vec![0, 1, 0]);
        assert_eq!(r("Greater"), vec![0, 0, 1]);
        assert_eq!(r("GreaterOrEqual"), vec![0, 1, 1]);
        assert_eq!(r("Less"), vec![1, 0, 0]);
        assert_eq!(r("LessOrEqual"), vec![1, 1, 0]);
        let s1 = Tensor::from_strings(&[2], vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
        let s2 = Tensor::from_strings(&[1], vec![b"b".to_vec()]).unwrap();
        assert_eq!(run1("Equal", &[], &[s1, s2]).as_slice::<u8>().unwrap(), &[0, 1]);
    }

    #[test]
    fn logic() {
        let a = bools(&[4], &[0, 0, 1, 1]);
        let b = bools(&[4], &[0, 1, 0, 1]);
        assert_eq!(run1("And", &[], &[a.clone(), b.clone()]).as_slice::<u8>().unwrap(), &[0, 0, 0, 1]);
        assert_eq!(run1("Or", &[], &[a.clone(), b.clone()]).as_slice::<u8>().unwrap(), &[0, 1, 1, 1]);
        assert_eq!(run1("Xor", &[], &[a.clone(), b.clone()]).as_slice::<u8>().unwrap(), &[0, 1, 1, 0]);
        assert_eq!(run1("Not", &[], &[a.clone()]).as_slice::<u8>().unwrap(), &[1, 1, 0, 0]);
        assert!(run("And", &[], &[t_f32(&[1], &[1.0]), t_f32(&[1], &[1.0])]).is_err());
    }

    #[test]
    fn where_broadcasts() {
        let c = bools(&[2, 1], &[1, 0]);
        let x = t_f32(&[2], &[1.0, 2.0]);
        let y = t_f32(&[], &[9.0]);
        let r = run1("Where", &[], &[c.clone(), x, y]);
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(f32s(&r), vec![1.0, 2.0, 9.0, 9.0]);
        let xi = Tensor::from_slice(&[2], &[1i64, 2]).unwrap();
        let yi = Tensor::from_slice(&[2], &[-1i64, -2]).unwrap();
        let r = run1("Where", &[], &[c, xi, yi]);
        assert_eq!(r.dtype(), DType::Int64);
        assert_eq!(r.as_slice::<i64>().unwrap(), &[1, 2, -1, -2]);
    }
}
