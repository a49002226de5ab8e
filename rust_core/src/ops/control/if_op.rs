//! If: runs the then- or else-branch subgraph.

use super::{truth, Body};
use crate::error::{Error, Result};
use crate::ops::{BuildContext, Op, RunContext, Value};

struct If {
    then_branch: Body,
    else_branch: Body,
    n_outputs: usize,
}

impl Op for If {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let cond = inputs
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| Error::InvalidArgument("If: input 'cond' is missing".into()))?;
        let branch = if truth(cond, "If: input 'cond'")? {
            &self.then_branch
        } else {
            &self.else_branch
        };
        let captured = branch.captured(inputs)?;
        let outs = branch.run(Vec::new(), &captured, ctx)?;
        if outs.len() < self.n_outputs {
            return Err(Error::InvalidModel(format!(
                "If: the branch taken returned {} values, the node has {} outputs",
                outs.len(),
                self.n_outputs
            )));
        }
        Ok(outs)
    }
}

pub fn build_if(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let then_branch = Body::build(ctx, "then_branch")?;
    let else_branch = Body::build(ctx, "else_branch")?;
    Ok(Box::new(If {
        then_branch,
        else_branch,
        n_outputs: ctx.node.outputs.len(),
    }))
}

#[cfg(test)]
mod tests {
    use crate::graph::ir::{AttrValue, Graph, Node, TypeInfo, ValueInfo};
    use crate::ops::array::testing::*;
    use crate::ops::Value;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    pub fn vi(name: &str) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            ty: TypeInfo::Unknown,
            doc_string: String::new(),
        }
    }

    pub fn simple_node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> Node {
        Node::for_test(op, inputs, outputs, attrs)
    }

    #[test]
    fn if_picks_branch_and_reads_outer_values() {
        // then: Identity(outer_x); else: Constant 7.
        let then_g = Graph {
            nodes: vec![simple_node("Identity", &["outer_x"], &["t"], vec![])],
            outputs: vec![vi("t")],
            ..Default::default()
        };
        let else_g = Graph {
            nodes: vec![simple_node(
                "Constant",
                &[],
                &["e"],
                vec![("value_float", AttrValue::Float(7.0))],
            )],
            outputs: vec![vi("e")],
            ..Default::default()
        };
        let n = simple_node(
            "If",
            &["c"],
            &["y"],
            vec![
                ("then_branch", AttrValue::Graph(Arc::new(then_g))),
                ("else_branch", AttrValue::Graph(Arc::new(else_g))),
            ],
        );
        let x = Value::Tensor(iota(&[2]));
        for (c, want) in [(1u8, vec![0., 1.]), (0u8, vec![7.])] {
            let cond = Tensor::from_bytes(crate::DType::Bool, &[1], &[c]).unwrap();
            let out = run_node(
                &n,
                13,
                vec![Some(Value::Tensor(cond))],
                &[("outer_x", x.clone())],
            )
            .unwrap();
            assert_eq!(floats(out[0].as_tensor().unwrap()), want);
        }
    }
}
