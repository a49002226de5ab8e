//! Optional, OptionalHasElement, OptionalGetElement.

use super::bool_scalar;
use crate::error::{Error, Result};
use crate::ops::{BuildContext, Op, RunContext, Value};

/// Optional: wraps the input, or makes an empty optional when the input is omitted.
struct OptionalOp;

impl Op for OptionalOp {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        Ok(vec![Value::Optional(
            inputs
                .first()
                .copied()
                .flatten()
                .map(|v| Box::new(v.clone())),
        )])
    }
}

pub fn build_optional(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(OptionalOp))
}

/// OptionalHasElement: false for an empty optional or an omitted input.
struct OptionalHasElement;

impl Op for OptionalHasElement {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let has = match inputs.first().copied().flatten() {
            None | Some(Value::Optional(None)) => false,
            Some(_) => true,
        };
        Ok(vec![Value::Tensor(bool_scalar(has)?)])
    }
}

pub fn build_optional_has_element(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(OptionalHasElement))
}

/// OptionalGetElement: the value inside (a tensor or sequence input is returned as is).
struct OptionalGetElement;

impl Op for OptionalGetElement {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        match inputs.first().copied().flatten() {
            Some(Value::Optional(Some(v))) => Ok(vec![(**v).clone()]),
            Some(Value::Optional(None)) => Err(Error::Runtime(
                "OptionalGetElement: the optional input is empty".into(),
            )),
            Some(v) => Ok(vec![v.clone()]),
            None => Err(Error::InvalidArgument(
                "OptionalGetElement: input 0 is missing".into(),
            )),
        }
    }
}

pub fn build_optional_get_element(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(OptionalGetElement))
}

#[cfg(test)]
mod tests {
    use crate::ops::array::testing::*;
    use crate::ops::Value;

    #[test]
    fn optionals() {
        let x: Value = iota(&[2]).into();
        let o = run_node(
            &node("Optional", vec![], &[true], 1),
            18,
            vec![Some(x.clone())],
            &[],
        )
        .unwrap()
        .remove(0);
        let empty = run_node(&node("Optional", vec![], &[false], 1), 18, vec![None], &[])
            .unwrap()
            .remove(0);
        let has = |v: Option<Value>| {
            let p = v.is_some();
            let r = run_node(
                &node("OptionalHasElement", vec![], &[p], 1),
                18,
                vec![v],
                &[],
            )
            .unwrap()
            .remove(0);
            ints(r.as_tensor().unwrap())[0]
        };
        assert_eq!(has(Some(o.clone())), 1);
        assert_eq!(has(Some(empty.clone())), 0);
        assert_eq!(has(None), 0);
        assert_eq!(has(Some(x.clone())), 1);
        let g = run_node(
            &node("OptionalGetElement", vec![], &[true], 1),
            18,
            vec![Some(o)],
            &[],
        )
        .unwrap()
        .remove(0);
        assert_eq!(floats(g.as_tensor().unwrap()), vec![0., 1.]);
        assert!(run_node(
            &node("OptionalGetElement", vec![], &[true], 1),
            18,
            vec![Some(empty)],
            &[]
        )
        .is_err());
    }
}
