//! Bit operations on integers: BitShift, BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot.

use super::arith::same_dtype_pair;
use super::broadcast::{binary, unary};
use crate::error::Result;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};

/// Integer types with the bit operations these ops need.
trait Bits: super::dispatch::Num + std::ops::BitAnd<Output = Self> + std::ops::BitOr<Output = Self> + std::ops::BitXor<Output = Self> + std::ops::Not<Output = Self> {
    const BITS: u32;
    fn shl(self, n: u32) -> Self;
    /// Arithmetic for signed types, logical for unsigned.
    fn shr(self, n: u32) -> Self;
    fn shift_amount(self) -> i64;
}

macro_rules! bits {
    ($($t:ty),*) => {$(
        impl Bits for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn shl(self, n: u32) -> Self { self.wrapping_shl(n) }
            #[inline(always)]
            fn shr(self, n: u32) -> Self { self.wrapping_shr(n) }
            #[inline(always)]
            fn shift_amount(self) -> i64 { self as i64 }
        }
    )*};
}
bits!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! with_bits {
    ($dt:expr, $T:ident => $body:expr, _ => $other:expr) => {
        with_int!($dt, $T => $body, _ => $other)
    };
}

struct BitShift {
    left: bool,
    label: String,
}

pub fn build_bitshift(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let left = match ctx.attr_s("direction", "")?.as_str() {
        "LEFT" => true,
        "RIGHT" => false,
        d => return Err(ctx.invalid(format!("attribute 'direction' must be LEFT or RIGHT, got '{d}'"))),
    };
    Ok(Box::new(BitShift { left, label: ctx.node.describe() }))
}

fn shift<T: Bits>(pool: &crate::executor::pool::ThreadPool, a: &crate::tensor::Tensor, b: &crate::tensor::Tensor, left: bool) -> Result<crate::tensor::Tensor> {
    let d = a.dtype();
    // Shifts outside 0..bits give 0 (or -1 for negative values shifted right), as the reference.
    if left {
        binary::<T, T, T>(pool, a, b, d, |x, s| {
            let n = s.shift_amount();
            if (0..T::BITS as i64).contains(&n) { x.shl(n as u32) } else { T::ZERO }
        })
    } else {
        binary::<T, T, T>(pool, a, b, d, |x, s| {
            let n = s.shift_amount();
            if (0..T::BITS as i64).contains(&n) {
                x.shr(n as u32)
            } else if x < T::ZERO {
                T::ZERO.sub(T::ONE)
            } else {
                T::ZERO
            }
        })
    }
}

impl Op for BitShift {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        let out = with_bits!(a.dtype(), T => shift::<T>(ctx.pool, a, b, self.left)?,
            _ => return Err(dtype_err!("{}: {} tensors are not supported", self.label, a.dtype())));
        Ok(vec![out.into()])
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    And,
    Or,
    Xor,
}

struct Bitwise {
    kind: Kind,
    label: String,
}

pub fn build_bitwise_and(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Bitwise { kind: Kind::And, label: ctx.node.describe() }))
}
pub fn build_bitwise_or(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Bitwise { kind: Kind::Or, label: ctx.node.describe() }))
}
pub fn build_bitwise_xor(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Bitwise { kind: Kind::Xor, label: ctx.node.describe() }))
}

impl Op for Bitwise {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let (a, b) = same_dtype_pair(inputs, &self.label)?;
        let d = a.dtype();
        let p = ctx.pool;
        let out = with_bits!(d, T => match self.kind {
                Kind::And => binary::<T, T, T>(p, a, b, d, |x, y| x & y)?,
                Kind::Or => binary::<T, T, T>(p, a, b, d, |x, y| x | y)?,
                Kind::Xor => binary::<T, T, T>(p, a, b, d, |x, y| x ^ y)?,
            },
            _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label)));
        Ok(vec![out.into()])
    }
}

struct BitwiseNot {
    label: String,
}

pub fn build_bitwise_not(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(BitwiseNot { label: ctx.node.describe() }))
}

impl Op for BitwiseNot {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let d = x.dtype();
        let out = with_bits!(d, T => unary::<T, T>(ctx.pool, x, d, |v| !v)?,
            _ => return Err(dtype_err!("{}: {d} tensors are not supported", self.label)));
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;
    use crate::tensor::Tensor;

    #[test]
    fn shifts() {
        let x = Tensor::from_slice(&[4], &[16u8, 4, 1, 255]).unwrap();
        let s = Tensor::from_slice(&[4], &[1u8, 2, 3, 8]).unwrap();
        assert_eq!(run1("BitShift", &[("direction", string("RIGHT"))], &[x.clone(), s.clone()]).as_slice::<u8>().unwrap(), &[8, 1, 0, 0]);
        assert_eq!(run1("BitShift", &[("direction", string("LEFT"))], &[x, s]).as_slice::<u8>().unwrap(), &[32, 16, 8, 0]);
        let n = Tensor::from_slice(&[3], &[-16i8, -1, 64]).unwrap();
        let k = Tensor::from_slice(&[3], &[2i8, 9, -1]).unwrap();
        assert_eq!(run1("BitShift", &[("direction", string("RIGHT"))], &[n.clone(), k.clone()]).as_slice::<i8>().unwrap(), &[-4, -1, 0]);
        assert_eq!(run1("BitShift", &[("direction", string("LEFT"))], &[n, k]).as_slice::<i8>().unwrap(), &[-64, 0, 0]);
        assert!(run("BitShift", &[("direction", string("UP"))], &[Tensor::scalar(1u8), Tensor::scalar(1u8)]).is_err());
    }

    #[test]
    fn bitwise() {
        let a = Tensor::from_slice(&[2], &[0b1100i32, -1]).unwrap();
        let b = Tensor::from_slice(&[1], &[0b1010i32]).unwrap();
        assert_eq!(run1("BitwiseAnd", &[], &[a.clone(), b.clone()]).as_slice::<i32>().unwrap(), &[0b1000, 0b1010]);
        assert_eq!(run1("BitwiseOr", &[], &[a.clone(), b.clone()]).as_slice::<i32>().unwrap(), &[0b1110, -1]);
        assert_eq!(run1("BitwiseXor", &[], &[a.clone(), b]).as_slice::<i32>().unwrap(), &[0b0110, !0b1010]);
        assert_eq!(run1("BitwiseNot", &[], &[a]).as_slice::<i32>().unwrap(), &[!0b1100, 0]);
    }
}
