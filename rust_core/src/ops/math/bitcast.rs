//! BitCast: reinterpret each element's bits as another type of the same width.

use crate::error::Result;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

struct BitCast {
    to: DType,
    label: String,
}

pub fn build_bitcast(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let to = ctx.attr_dtype("to")?.ok_or_else(|| ctx.invalid("required attribute 'to' is missing"))?;
    if to == DType::String {
        return Err(ctx.invalid("cannot bit-cast to string"));
    }
    Ok(Box::new(BitCast { to, label: ctx.node.describe() }))
}

impl Op for BitCast {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, &self.label)?;
        let from = x.dtype();
        if from == DType::String || from.packed_bits() != self.to.packed_bits() {
            return Err(dtype_err!("{}: cannot bit-cast {from} to {} (widths differ)", self.label, self.to));
        }
        let mut out = Tensor::from_bytes(self.to, x.shape(), x.bytes()?)?;
        if self.to == DType::Bool {
            // Keep the bool invariant (0 or 1).
            for b in out.make_mut_bytes()? {
                *b = (*b != 0) as u8;
            }
        }
        Ok(vec![out.into()])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::math::test_util::*;

    #[test]
    fn reinterprets_bits() {
        let x = t_f32(&[2], &[1.0, -2.0]);
        let y = run1("BitCast", &[("to", int(6))], &[x]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0x3f80_0000, 0xc000_0000u32 as i32]);
        assert!(run("BitCast", &[("to", int(7))], &[t_f32(&[1], &[1.0])]).is_err());
    }
}
