//! Losses: NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss.

use super::float_io::{narrow, widen};
use crate::error::{Error, Result};
use crate::kernels::float::Float;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, Registry, RunContext, Value};
use crate::tensor::Tensor;

pub fn register(r: &mut Registry) {
    r.add("NegativeLogLikelihoodLoss", |ctx| build_loss(ctx, false));
    r.add("SoftmaxCrossEntropyLoss", |ctx| build_loss(ctx, true));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

struct Loss {
    softmax: bool,
    reduction: Reduction,
    ignore_index: Option<i64>,
}

fn build_loss(ctx: &BuildContext, softmax: bool) -> Result<Box<dyn Op>> {
    let reduction = match ctx.attr_s("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        r => return Err(ctx.invalid(format!("reduction '{r}' is not none, sum or mean"))),
    };
    Ok(Box::new(Loss {
        softmax,
        reduction,
        ignore_index: ctx.attr_opt_i("ignore_index")?,
    }))
}

impl Loss {
    fn name(&self) -> &'static str {
        if self.softmax {
            "SoftmaxCrossEntropyLoss"
        } else {
            "NegativeLogLikelihoodLoss"
        }
    }

    /// `x` holds log-probabilities `[N][C][D]`; returns (loss tensor, log_prob if softmax).
    fn compute<T: Float>(
        &self,
        x: &[T],
        shape: &[usize],
        target: &[i64],
        weight: Option<Vec<T>>,
    ) -> Result<Vec<Tensor>> {
        let (n, c) = (shape[0], shape[1]);
        let d: usize = shape[2..].iter().product();
        let mut lp: Vec<T> = x.to_vec();
        if self.softmax {
            // log_softmax over axis 1.
            for b in 0..n {
                for k in 0..d {
                    let mut m = T::NEG_INFINITY;
                    for j in 0..c {
                        m = m.fmax(x[(b * c + j) * d + k]);
                    }
                    let mut s = T::ZERO;
                    for j in 0..c {
                        s += (x[(b * c + j) * d + k] - m).exp();
                    }
                    let ls = s.ln() + m;
                    for j in 0..c {
                        lp[(b * c + j) * d + k] = x[(b * c + j) * d + k] - ls;
                    }
                }
            }
        }
        let mut loss = vec![T::ZERO; n * d];
        let mut wsum = T::ZERO;
        for b in 0..n {
            for k in 0..d {
                let t = target[b * d + k];
                if Some(t) == self.ignore_index {
                    continue;
                }
                if t < 0 || t as usize >= c {
                    return Err(Error::Runtime(format!(
                        "{}: target {t} is outside [0, {c})",
                        self.name()
                    )));
                }
                let w = weight.as_ref().map(|w| w[t as usize]).unwrap_or(T::ONE);
                loss[b * d + k] = -lp[(b * c + t as usize) * d + k] * w;
                wsum += w;
            }
        }
        let out = match self.reduction {
            Reduction::None => {
                let mut s = vec![n];
                s.extend(&shape[2..]);
                Tensor::from_vec(&s, loss)?
            }
            Reduction::Sum => {
                Tensor::from_vec(&[], vec![loss.iter().fold(T::ZERO, |a, v| a + *v)])?
            }
            Reduction::Mean => {
                let s = loss.iter().fold(T::ZERO, |a, v| a + *v);
                Tensor::from_vec(&[], vec![if wsum == T::ZERO { T::ZERO } else { s / wsum }])?
            }
        };
        let mut outs = vec![out];
        if self.softmax {
            outs.push(Tensor::from_vec(shape, lp)?);
        }
        Ok(outs)
    }
}

impl Op for Loss {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let name = self.name();
        let x = tensor_in(inputs, 0, name)?;
        let target = tensor_in(inputs, 1, name)?;
        let weight = opt_tensor_in(inputs, 2, name)?;
        if x.rank() < 2 {
            return Err(Error::ShapeMismatch(format!(
                "{name}: input must have rank >= 2, got {:?}",
                x.shape()
            )));
        }
        let mut want = vec![x.shape()[0]];
        want.extend(&x.shape()[2..]);
        if target.shape() != want.as_slice() {
            return Err(Error::ShapeMismatch(format!(
                "{name}: target has shape {:?}, expected {want:?}",
                target.shape()
            )));
        }
        if let Some(w) = weight {
            if w.shape() != [x.shape()[1]] {
                return Err(Error::ShapeMismatch(format!(
                    "{name}: weight has shape {:?}, expected [{}]",
                    w.shape(),
                    x.shape()[1]
                )));
            }
        }
        let tv = target.to_i64_vec()?;
        let dt = x.dtype();
        let xw = widen(x)?;
        let ww = weight.map(widen).transpose()?;
        let outs = crate::with_float!(xw.dtype(), name, T => {
            let wv = match &ww { Some(w) => Some(w.as_slice::<T>()?.to_vec()), None => None };
            self.compute::<T>(xw.as_slice::<T>()?, x.shape(), &tv, wv)
        })?;
        outs.into_iter()
            .map(|t| narrow(t, dt).map(Value::Tensor))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::tensor::Tensor;

    #[test]
    fn nll_and_sce() {
        let x = tf(&[2, 3], &[-1., -2., -3., -0.5, -1.5, -2.5]);
        let t = Tensor::from_slice(&[2], &[2i64, 0]).unwrap();
        let y = &run_op(
            "NegativeLogLikelihoodLoss",
            13,
            vec![],
            vec![Some(x.clone()), Some(t.clone())],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[1.75], 1e-6);
        let w = tf(&[3], &[1., 1., 3.]);
        let y = &run_op(
            "NegativeLogLikelihoodLoss",
            13,
            vec![],
            vec![Some(x.clone()), Some(t.clone()), Some(w)],
            1,
        )
        .unwrap()[0];
        assert_close(y.as_slice::<f32>().unwrap(), &[(9. + 0.5) / 4.], 1e-6);
        let y = &run_op(
            "NegativeLogLikelihoodLoss",
            13,
            vec![
                ("ignore_index", AttrValue::Int(0)),
                ("reduction", AttrValue::String(b"none".to_vec())),
            ],
            vec![Some(x.clone()), Some(t.clone())],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3., 0.]);
        let out = run_op(
            "SoftmaxCrossEntropyLoss",
            13,
            vec![("reduction", AttrValue::String(b"sum".to_vec()))],
            vec![
                Some(tf(&[1, 2], &[0., 0.])),
                Some(Tensor::from_slice(&[1], &[1i64]).unwrap()),
            ],
            2,
        )
        .unwrap();
        assert_close(out[0].as_slice::<f32>().unwrap(), &[2f32.ln()], 1e-6);
        assert_close(
            out[1].as_slice::<f32>().unwrap(),
            &[-(2f32.ln()), -(2f32.ln())],
            1e-6,
        );
    }
}
