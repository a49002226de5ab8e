//! Loop: runs the body while `i < M` and `cond` hold, threading loop-carried values and
//! stacking per-iteration scan outputs along a new axis 0.

use super::{bool_scalar, truth, Body};
use crate::error::{Error, Result};
use crate::graph::ir::{Dim, TypeInfo};
use crate::ops::array::concat::concat_tensors;
use crate::ops::{opt_tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};

struct Loop {
    body: Body,
    /// Loop-carried values (node inputs after M and cond).
    n_carried: usize,
}

/// Stacks equally shaped tensors along a new axis 0. `empty_type` gives the dtype and element
/// shape when there is nothing to stack.
pub fn stack(items: &[Tensor], empty_type: Option<&TypeInfo>, op: &str) -> Result<Tensor> {
    if items.is_empty() {
        let dtype = empty_type
            .and_then(|t| t.tensor_dtype())
            .unwrap_or(DType::Float32);
        let mut shape = vec![0usize];
        if let Some(dims) = empty_type.and_then(|t| t.tensor_shape()) {
            for d in dims {
                match d {
                    Dim::Known(n) => shape.push(*n),
                    _ => shape.push(0),
                }
            }
        }
        return Tensor::zeros(dtype, &shape);
    }
    let first = items[0].shape();
    for (i, t) in items.iter().enumerate() {
        if t.shape() != first || t.dtype() != items[0].dtype() {
            return Err(Error::ShapeMismatch(format!(
                "{op}: scan output of iteration {i} is {} {:?}, but the first one is {} {first:?}",
                t.dtype(),
                t.shape(),
                items[0].dtype()
            )));
        }
    }
    let mut shape1 = vec![1usize];
    shape1.extend_from_slice(first);
    let views = items
        .iter()
        .map(|t| t.reshaped(&shape1))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Tensor> = views.iter().collect();
    concat_tensors(&refs, 0, None, op)
}

impl Op for Loop {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let max_trip = match opt_tensor_in(inputs, 0, "Loop")? {
            Some(t) => Some(
                *t.to_i64_vec()?
                    .first()
                    .ok_or_else(|| Error::InvalidArgument("Loop: input 'M' is empty".into()))?,
            ),
            None => None,
        };
        let mut cond = match inputs.get(1).copied().flatten() {
            Some(v) => truth(v, "Loop: input 'cond'")?,
            None => true,
        };
        let mut carried: Vec<Value> = (0..self.n_carried)
            .map(|k| {
                inputs
                    .get(2 + k)
                    .copied()
                    .flatten()
                    .cloned()
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("Loop: loop-carried input {k} is missing"))
                    })
            })
            .collect::<Result<_>>()?;
        let captured = self.body.captured(inputs)?;
        let n_scan = self.body.outputs.len().saturating_sub(1 + self.n_carried);
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
        let mut i: i64 = 0;
        while cond && max_trip.is_none_or(|m| i < m) {
            let mut args = Vec::with_capacity(2 + self.n_carried);
            args.push(Value::Tensor(Tensor::scalar(i)));
            args.push(Value::Tensor(bool_scalar(cond)?));
            args.append(&mut carried);
            let mut outs = self.body.run(args, &captured, ctx)?;
            if outs.len() != 1 + self.n_carried + n_scan {
                return Err(Error::InvalidModel(format!(
                    "Loop: the body returned {} values, expected {}",
                    outs.len(),
                    1 + self.n_carried + n_scan
                )));
            }
            let rest = outs.split_off(1);
            cond = truth(&outs[0], "Loop: body output 'cond'")?;
            let mut rest = rest.into_iter();
            carried = rest.by_ref().take(self.n_carried).collect();
            for (k, v) in rest.enumerate() {
                scans[k].push(
                    v.into_tensor()
                        .map_err(|e| e.context("Loop: scan output"))?,
                );
            }
            i += 1;
        }
        let mut out = carried;
        for (k, items) in scans.iter().enumerate() {
            out.push(Value::Tensor(stack(
                items,
                self.body.outputs.get(1 + self.n_carried + k),
                "Loop",
            )?));
        }
        Ok(out)
    }
}

pub fn build_loop(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let body = Body::build(ctx, "body")?;
    let n_carried = ctx.n_inputs().saturating_sub(2);
    if body.n_inputs != n_carried + 2 {
        return Err(ctx.invalid(format!(
            "the body takes {} inputs, expected 2 + {n_carried} loop-carried values",
            body.n_inputs
        )));
    }
    Ok(Box::new(Loop { body, n_carried }))
}

#[cfg(test)]
mod tests {
    use crate::graph::ir::{AttrValue, Graph, Node, TypeInfo, ValueInfo};
    use crate::ops::array::testing::*;
    use crate::ops::Value;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    fn vi(name: &str) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            ty: TypeInfo::Unknown,
            doc_string: String::new(),
        }
    }

    fn n(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node::for_test(op, inputs, outputs, vec![])
    }

    #[test]
    fn loop_sums_and_scans() {
        // body(i, cond, acc): acc' = Concat(acc, i-as-float)... simpler: scan out = i, carried passes.
        let body = Graph {
            nodes: vec![
                n("Identity", &["cond_in"], &["cond_out"]),
                n("Identity", &["acc"], &["acc_out"]),
                n("Identity", &["i"], &["scan"]),
            ],
            inputs: vec![vi("i"), vi("cond_in"), vi("acc")],
            outputs: vec![vi("cond_out"), vi("acc_out"), vi("scan")],
            ..Default::default()
        };
        let mut node = node(
            "Loop",
            vec![("body", AttrValue::Graph(Arc::new(body)))],
            &[true, false, true],
            2,
        );
        node.inputs[1] = String::new();
        let out = run_node(
            &node,
            13,
            vec![
                Some(Value::Tensor(Tensor::scalar(3i64))),
                None,
                Some(Value::Tensor(iota(&[1]))),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(floats(out[0].as_tensor().unwrap()), vec![0.]);
        let s = out[1].as_tensor().unwrap();
        assert_eq!(s.shape(), &[3]);
        assert_eq!(ints(s), vec![0, 1, 2]);
        // Zero iterations: empty scan output.
        let out = run_node(
            &node,
            13,
            vec![
                Some(Value::Tensor(Tensor::scalar(0i64))),
                None,
                Some(Value::Tensor(iota(&[1]))),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(out[1].as_tensor().unwrap().shape(), &[0]);
    }
}
