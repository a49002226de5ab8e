//! Dropout: identity at inference (optional all-true mask); random masking in training mode.

use crate::error::{Error, Result};
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::{DType, Tensor};
use half::{bf16, f16};

pub fn register(r: &mut Registry) {
    r.add("Dropout", build_dropout);
}

struct Dropout {
    /// Opsets < 12: ratio attribute (training decided by is_test for opsets < 7: never here).
    ratio_attr: f32,
    seed: Option<i64>,
    opset: i64,
}

fn build_dropout(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Dropout {
        ratio_attr: ctx.attr_f("ratio", 0.5)?,
        seed: ctx.attr_opt_i("seed")?,
        opset: ctx.opset,
    }))
}

/// A small deterministic generator (SplitMix64) for training-mode masks.
struct SplitMix(u64);
impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl Op for Dropout {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        const OP: &str = "Dropout";
        let x = tensor_in(inputs, 0, OP)?;
        let (ratio, training) = if self.opset >= 12 {
            let ratio = match opt_tensor_in(inputs, 1, OP)? {
                Some(r) => *r
                    .to_f64_vec()?
                    .first()
                    .ok_or_else(|| Error::InvalidArgument(format!("{OP}: ratio is empty")))?
                    as f32,
                None => 0.5,
            };
            let training = match opt_tensor_in(inputs, 2, OP)? {
                Some(t) => t.to_i64_vec()?.first().copied().unwrap_or(0) != 0,
                None => false,
            };
            (ratio, training)
        } else {
            (self.ratio_attr, false)
        };
        let mask_dtype = if self.opset >= 10 {
            DType::Bool
        } else {
            x.dtype()
        };
        if !training || ratio == 0.0 {
            let mask = if mask_dtype == DType::Bool {
                Tensor::build::<u8>(DType::Bool, x.shape(), |o| {
                    o.iter_mut().for_each(|v| *v = 1);
                    Ok(())
                })?
            } else {
                ones_like(x)?
            };
            return Ok(vec![x.clone().into(), mask.into()]);
        }
        if !(0.0..1.0).contains(&ratio) {
            return Err(Error::InvalidArgument(format!(
                "{OP}: ratio {ratio} must be in [0, 1)"
            )));
        }
        let mut rng = SplitMix(self.seed.unwrap_or(0x5eed) as u64);
        let keep: Vec<bool> = (0..x.len()).map(|_| rng.next_f32() >= ratio).collect();
        let scale = 1.0 / (1.0 - ratio);
        let xv = x.to_f64_vec()?;
        let yv: Vec<f64> = xv
            .iter()
            .zip(&keep)
            .map(|(v, k)| if *k { v * scale as f64 } else { 0.0 })
            .collect();
        let y = from_f64(x.dtype(), x.shape(), &yv)?;
        let mask = Tensor::build::<u8>(DType::Bool, x.shape(), |o| {
            o.iter_mut().zip(&keep).for_each(|(o, k)| *o = *k as u8);
            Ok(())
        })?;
        Ok(vec![y.into(), mask.into()])
    }
}

fn from_f64(d: DType, shape: &[usize], v: &[f64]) -> Result<Tensor> {
    match d {
        DType::Float32 => Tensor::from_vec(shape, v.iter().map(|x| *x as f32).collect::<Vec<_>>()),
        DType::Float64 => Tensor::from_slice(shape, v),
        DType::Float16 => Tensor::from_vec(
            shape,
            v.iter().map(|x| f16::from_f64(*x)).collect::<Vec<_>>(),
        ),
        DType::BFloat16 => Tensor::from_vec(
            shape,
            v.iter().map(|x| bf16::from_f64(*x)).collect::<Vec<_>>(),
        ),
        d => Err(Error::UnsupportedDtype(format!(
            "Dropout: element type {d} is not supported"
        ))),
    }
}

fn ones_like(x: &Tensor) -> Result<Tensor> {
    from_f64(x.dtype(), x.shape(), &vec![1.0; x.len()])
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::tensor::Tensor;

    #[test]
    fn dropout_inference_identity() {
        let x = tf(&[3], &[1., 2., 3.]);
        let out = run_op("Dropout", 13, vec![], vec![Some(x.clone())], 2).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1., 2., 3.]);
        assert_eq!(out[1].as_slice::<u8>().unwrap(), &[1, 1, 1]);
        let ratio = tf(&[], &[0.0]);
        let tm = Tensor::build::<u8>(crate::tensor::DType::Bool, &[], |o| {
            o[0] = 1;
            Ok(())
        })
        .unwrap();
        let out = run_op(
            "Dropout",
            13,
            vec![],
            vec![Some(x), Some(ratio), Some(tm)],
            2,
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1., 2., 3.]);
    }
}
