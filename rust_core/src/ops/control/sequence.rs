//! Sequence operators: SequenceConstruct, SequenceEmpty, SequenceAt, SequenceInsert,
//! SequenceErase, SequenceLength, SplitToSequence, ConcatFromSequence, SequenceMap.

use super::Body;
use crate::error::{Error, Result};
use crate::ops::array::concat::{axis_in, concat_tensors, even_sizes, split_tensor};
use crate::ops::array::elements::ints_of;
use crate::ops::{opt_tensor_in, tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::Tensor;

fn seq_in<'a>(inputs: &[Option<&'a Value>], i: usize, op: &str) -> Result<&'a [Value]> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Sequence(s)) => Ok(s),
        Some(v) => Err(Error::InvalidArgument(format!(
            "{op}: input {i} must be a sequence, got a {}",
            v.kind()
        ))),
        None => Err(Error::InvalidArgument(format!(
            "{op}: input {i} is missing"
        ))),
    }
}

/// A position in `-len..=len` (insert) or `-len..len` (access), from an optional scalar input.
fn position(
    inputs: &[Option<&Value>],
    i: usize,
    len: usize,
    inclusive: bool,
    op: &str,
) -> Result<Option<usize>> {
    let Some(t) = opt_tensor_in(inputs, i, op)? else {
        return Ok(None);
    };
    let p = *ints_of(t, &format!("{op}: input 'position'"))?
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("{op}: input 'position' is empty")))?;
    let n = len as i64;
    let q = if p < 0 { p + n } else { p };
    let hi = if inclusive { n } else { n - 1 };
    if q < 0 || q > hi {
        return Err(Error::Runtime(format!(
            "{op}: position {p} is out of range for a sequence of length {len}"
        )));
    }
    Ok(Some(q as usize))
}

struct SequenceConstruct;

impl Op for SequenceConstruct {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let items = (0..inputs.len())
            .map(|i| tensor_in(inputs, i, "SequenceConstruct").map(|t| Value::Tensor(t.clone())))
            .collect::<Result<_>>()?;
        Ok(vec![Value::Sequence(items)])
    }
}

pub fn build_sequence_construct(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceConstruct))
}

struct SequenceEmpty;

impl Op for SequenceEmpty {
    fn run(&self, _inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        Ok(vec![Value::Sequence(Vec::new())])
    }
}

pub fn build_sequence_empty(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceEmpty))
}

struct SequenceAt;

impl Op for SequenceAt {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "SequenceAt")?;
        let p = position(inputs, 1, s.len(), false, "SequenceAt")?.ok_or_else(|| {
            Error::InvalidArgument("SequenceAt: input 'position' is missing".into())
        })?;
        Ok(vec![s[p].clone()])
    }
}

pub fn build_sequence_at(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceAt))
}

struct SequenceInsert;

impl Op for SequenceInsert {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "SequenceInsert")?;
        let t = tensor_in(inputs, 1, "SequenceInsert")?;
        let p = position(inputs, 2, s.len(), true, "SequenceInsert")?.unwrap_or(s.len());
        let mut out = s.to_vec();
        out.insert(p, Value::Tensor(t.clone()));
        Ok(vec![Value::Sequence(out)])
    }
}

pub fn build_sequence_insert(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceInsert))
}

struct SequenceErase;

impl Op for SequenceErase {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "SequenceErase")?;
        if s.is_empty() {
            return Err(Error::Runtime(
                "SequenceErase: the sequence is empty".into(),
            ));
        }
        let p = position(inputs, 1, s.len(), false, "SequenceErase")?.unwrap_or(s.len() - 1);
        let mut out = s.to_vec();
        out.remove(p);
        Ok(vec![Value::Sequence(out)])
    }
}

pub fn build_sequence_erase(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceErase))
}

struct SequenceLength;

impl Op for SequenceLength {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "SequenceLength")?;
        Ok(vec![Value::Tensor(Tensor::scalar(s.len() as i64))])
    }
}

pub fn build_sequence_length(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SequenceLength))
}

struct SplitToSequence {
    axis: i64,
    keepdims: bool,
}

impl Op for SplitToSequence {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "SplitToSequence")?;
        let axis = axis_in(self.axis, x.rank(), "SplitToSequence")?;
        let dim = x.shape()[axis];
        let (sizes, squeeze) = match opt_tensor_in(inputs, 1, "SplitToSequence")? {
            None => (vec![1; dim], !self.keepdims),
            Some(t) => {
                let v = ints_of(t, "SplitToSequence: input 'split'")?;
                let bad = |s: i64| {
                    Error::InvalidArgument(format!("SplitToSequence: invalid split size {s}"))
                };
                if t.rank() == 0 {
                    let c = *v.first().ok_or_else(|| bad(0))?;
                    if c <= 0 {
                        return Err(bad(c));
                    }
                    (
                        even_sizes(dim, dim.div_ceil(c as usize), "SplitToSequence")?,
                        false,
                    )
                } else {
                    (
                        v.iter()
                            .map(|&s| usize::try_from(s).map_err(|_| bad(s)))
                            .collect::<Result<Vec<_>>>()?,
                        false,
                    )
                }
            }
        };
        let parts = split_tensor(x, axis, &sizes, Some(ctx.pool), "SplitToSequence")?;
        let items = parts
            .into_iter()
            .map(|p| {
                if squeeze {
                    let mut s = p.shape().to_vec();
                    s.remove(axis);
                    p.reshaped(&s).map(Value::Tensor)
                } else {
                    Ok(Value::Tensor(p))
                }
            })
            .collect::<Result<_>>()?;
        Ok(vec![Value::Sequence(items)])
    }
}

pub fn build_split_to_sequence(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(SplitToSequence {
        axis: ctx.attr_i("axis", 0)?,
        keepdims: ctx.attr_i("keepdims", 1)? != 0,
    }))
}

struct ConcatFromSequence {
    axis: i64,
    new_axis: bool,
}

impl Op for ConcatFromSequence {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "ConcatFromSequence")?;
        let ts = s
            .iter()
            .map(|v| v.as_tensor())
            .collect::<Result<Vec<_>>>()?;
        let first = ts.first().ok_or_else(|| {
            Error::InvalidArgument("ConcatFromSequence: the sequence is empty".into())
        })?;
        if self.new_axis {
            let r = first.rank() + 1;
            let axis = axis_in(self.axis, r, "ConcatFromSequence")?;
            let views = ts
                .iter()
                .map(|t| {
                    let mut sh = t.shape().to_vec();
                    sh.insert(axis.min(sh.len()), 1);
                    t.reshaped(&sh)
                })
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&Tensor> = views.iter().collect();
            return Ok(vec![concat_tensors(
                &refs,
                axis,
                Some(ctx.pool),
                "ConcatFromSequence",
            )?
            .into()]);
        }
        let axis = axis_in(self.axis, first.rank(), "ConcatFromSequence")?;
        Ok(vec![concat_tensors(
            &ts,
            axis,
            Some(ctx.pool),
            "ConcatFromSequence",
        )?
        .into()])
    }
}

pub fn build_concat_from_sequence(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let axis = ctx
        .attr_opt_i("axis")?
        .ok_or_else(|| ctx.invalid("attribute 'axis' is required"))?;
    Ok(Box::new(ConcatFromSequence {
        axis,
        new_axis: ctx.attr_i("new_axis", 0)? != 0,
    }))
}

/// SequenceMap: runs the body once per element of the input sequence; additional inputs that
/// are sequences are iterated alongside, tensors are passed whole. Each output is a sequence.
struct SequenceMap {
    body: Body,
    n_explicit: usize,
    n_outputs: usize,
}

impl Op for SequenceMap {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let s = seq_in(inputs, 0, "SequenceMap")?;
        let captured = self.body.captured(inputs)?;
        let extra: Vec<&Value> = (1..self.n_explicit)
            .map(|i| {
                inputs.get(i).copied().flatten().ok_or_else(|| {
                    Error::InvalidArgument(format!("SequenceMap: input {i} is missing"))
                })
            })
            .collect::<Result<_>>()?;
        for (i, v) in extra.iter().enumerate() {
            if let Value::Sequence(e) = v {
                if e.len() != s.len() {
                    return Err(Error::ShapeMismatch(format!(
                        "SequenceMap: input {} has {} elements, the input sequence has {}",
                        i + 1,
                        e.len(),
                        s.len()
                    )));
                }
            }
        }
        let mut outs: Vec<Vec<Value>> = vec![Vec::with_capacity(s.len()); self.n_outputs];
        for (k, item) in s.iter().enumerate() {
            let mut args = vec![item.clone()];
            for v in &extra {
                args.push(match v {
                    Value::Sequence(e) => e[k].clone(),
                    other => (*other).clone(),
                });
            }
            let res = self.body.run(args, &captured, ctx)?;
            for (o, v) in outs.iter_mut().zip(res) {
                o.push(v);
            }
        }
        Ok(outs.into_iter().map(Value::Sequence).collect())
    }
}

pub fn build_sequence_map(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let body = Body::build(ctx, "body")?;
    Ok(Box::new(SequenceMap {
        body,
        n_explicit: ctx.n_inputs(),
        n_outputs: ctx.node.outputs.len(),
    }))
}

#[cfg(test)]
mod tests {
    use crate::graph::ir::AttrValue;
    use crate::ops::array::testing::*;
    use crate::ops::Value;
    use crate::tensor::Tensor;

    fn seq(ts: Vec<Tensor>) -> Value {
        Value::Sequence(ts.into_iter().map(Value::Tensor).collect())
    }

    fn run_v(
        op: &str,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Option<Value>>,
    ) -> crate::Result<Vec<Value>> {
        let present: Vec<bool> = inputs.iter().map(|v| v.is_some()).collect();
        run_node(&node(op, attrs, &present, 1), 17, inputs, &[])
    }

    #[test]
    fn sequence_basics() {
        let s = run_v(
            "SequenceConstruct",
            vec![],
            vec![Some(iota(&[1]).into()), Some(iota(&[2]).into())],
        )
        .unwrap()
        .remove(0);
        let len = run_v("SequenceLength", vec![], vec![Some(s.clone())])
            .unwrap()
            .remove(0);
        assert_eq!(ints(len.as_tensor().unwrap()), vec![2]);
        let at = run_v(
            "SequenceAt",
            vec![],
            vec![Some(s.clone()), Some(Tensor::scalar(-1i64).into())],
        )
        .unwrap()
        .remove(0);
        assert_eq!(at.as_tensor().unwrap().shape(), &[2]);
        assert!(run_v(
            "SequenceAt",
            vec![],
            vec![Some(s.clone()), Some(Tensor::scalar(2i64).into())]
        )
        .is_err());
        let ins = run_v(
            "SequenceInsert",
            vec![],
            vec![
                Some(s.clone()),
                Some(iota(&[3]).into()),
                Some(Tensor::scalar(0i64).into()),
            ],
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            ins.as_sequence().unwrap()[0].as_tensor().unwrap().shape(),
            &[3]
        );
        let er = run_v("SequenceErase", vec![], vec![Some(s.clone())])
            .unwrap()
            .remove(0);
        assert_eq!(er.as_sequence().unwrap().len(), 1);
        let e = run_v("SequenceEmpty", vec![], vec![]).unwrap().remove(0);
        assert_eq!(e.as_sequence().unwrap().len(), 0);
    }

    #[test]
    fn split_and_concat() {
        let x = iota(&[3, 2]);
        let s = run_v(
            "SplitToSequence",
            vec![("keepdims", AttrValue::Int(0))],
            vec![Some(x.clone().into())],
        )
        .unwrap()
        .remove(0);
        let items = s.as_sequence().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_tensor().unwrap().shape(), &[2]);
        let s2 = run_v(
            "SplitToSequence",
            vec![],
            vec![Some(x.clone().into()), Some(Tensor::scalar(2i64).into())],
        )
        .unwrap()
        .remove(0);
        let shapes: Vec<Vec<usize>> = s2
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_tensor().unwrap().shape().to_vec())
            .collect();
        assert_eq!(shapes, vec![vec![2, 2], vec![1, 2]]);
        let c = run_v(
            "ConcatFromSequence",
            vec![("axis", AttrValue::Int(0))],
            vec![Some(s2)],
        )
        .unwrap()
        .remove(0);
        assert_eq!(floats(c.as_tensor().unwrap()), floats(&x));
        let st = run_v(
            "ConcatFromSequence",
            vec![
                ("axis", AttrValue::Int(-1)),
                ("new_axis", AttrValue::Int(1)),
            ],
            vec![Some(s)],
        )
        .unwrap()
        .remove(0);
        let st = st.as_tensor().unwrap();
        assert_eq!(st.shape(), &[2, 3]);
        assert_eq!(floats(st), vec![0., 2., 4., 1., 3., 5.]);
        let l = run_v("SequenceLength", vec![], vec![Some(seq(vec![x]))])
            .unwrap()
            .remove(0);
        assert_eq!(ints(l.as_tensor().unwrap()), vec![1]);
    }
}
