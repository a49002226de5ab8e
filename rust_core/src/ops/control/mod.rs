//! Control flow (If, Loop, Scan), sequences and optionals.
//!
//! Files: `if_op.rs` (If), `loop_op.rs` (Loop), `scan.rs` (Scan, opsets 8 and 9+),
//! `sequence.rs` (SequenceConstruct, SequenceEmpty, SequenceAt, SequenceInsert, SequenceErase,
//! SequenceLength, SplitToSequence, ConcatFromSequence, SequenceMap), `optional.rs` (Optional,
//! OptionalHasElement, OptionalGetElement).
//!
//! Subgraphs read outer-scope values: the executor appends them to a node's inputs, after the
//! explicit ones, in the order of `executor::plan::node_captures`. [`Captures`] maps each
//! subgraph's own captured names onto those positions once, at build time.

pub mod if_op;
pub mod loop_op;
pub mod optional;
pub mod scan;
pub mod sequence;

use super::{BuildContext, Registry, RunContext, SubgraphRunner, Value};
use crate::error::{Error, Result};
use crate::graph::ir::{AttrValue, Graph, TypeInfo};
use std::sync::Arc;

/// Register this family's operators.
pub fn register(r: &mut Registry) {
    r.add("If", if_op::build_if);
    r.add("Loop", loop_op::build_loop);
    r.add("Scan", scan::build_scan);
    r.add("SequenceConstruct", sequence::build_sequence_construct);
    r.add("SequenceEmpty", sequence::build_sequence_empty);
    r.add("SequenceAt", sequence::build_sequence_at);
    r.add("SequenceInsert", sequence::build_sequence_insert);
    r.add("SequenceErase", sequence::build_sequence_erase);
    r.add("SequenceLength", sequence::build_sequence_length);
    r.add("SplitToSequence", sequence::build_split_to_sequence);
    r.add("ConcatFromSequence", sequence::build_concat_from_sequence);
    r.add("SequenceMap", sequence::build_sequence_map);
    r.add("Optional", optional::build_optional);
    r.add("OptionalHasElement", optional::build_optional_has_element);
    r.add("OptionalGetElement", optional::build_optional_get_element);
}

/// A compiled subgraph with the positions, in the node's input list, of the outer values it
/// captures.
pub struct Body {
    pub runner: Arc<dyn SubgraphRunner>,
    positions: Vec<usize>,
    /// The subgraph's declared outputs (for dtypes of empty scan outputs).
    pub outputs: Vec<TypeInfo>,
    /// Number of formal inputs.
    pub n_inputs: usize,
}

impl Body {
    /// Compiles the graph attribute `name` of the node and maps its captures.
    pub fn build(ctx: &BuildContext, name: &str) -> Result<Body> {
        let graph: &Arc<Graph> = match ctx.attr(name) {
            Some(AttrValue::Graph(g)) => g,
            _ => return Err(ctx.invalid(format!("graph attribute '{name}' is missing"))),
        };
        let runner = ctx.subgraph(name)?;
        let all = crate::executor::plan::node_captures(ctx.node);
        let n_explicit = ctx.node.inputs.len();
        let positions = runner
            .captured_names()
            .iter()
            .map(|c| {
                all.iter()
                    .position(|a| a == c)
                    .map(|p| n_explicit + p)
                    .ok_or_else(|| {
                        ctx.invalid(format!(
                            "subgraph '{name}' captures '{c}', which the node does not provide"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Body {
            runner,
            positions,
            outputs: graph.outputs.iter().map(|o| o.ty.clone()).collect(),
            n_inputs: graph.inputs.len(),
        })
    }

    /// The captured values, picked from the node's inputs.
    pub fn captured<'a>(&self, inputs: &[Option<&'a Value>]) -> Result<Vec<Option<&'a Value>>> {
        self.positions
            .iter()
            .map(|&p| {
                inputs.get(p).copied().ok_or_else(|| {
                    Error::Internal(format!("captured value at input {p} was not passed"))
                })
            })
            .collect()
    }

    /// Runs the body.
    pub fn run(
        &self,
        args: Vec<Value>,
        captured: &[Option<&Value>],
        ctx: &RunContext,
    ) -> Result<Vec<Value>> {
        self.runner.run(args, captured, ctx)
    }
}

/// A bool scalar tensor.
pub fn bool_scalar(v: bool) -> Result<crate::tensor::Tensor> {
    crate::tensor::Tensor::from_bytes(crate::tensor::DType::Bool, &[], &[v as u8])
}

/// The truth of a one-element bool (or numeric) tensor.
pub fn truth(v: &Value, what: &str) -> Result<bool> {
    let t = v.as_tensor().map_err(|e| e.context(what))?;
    if t.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "{what} must hold one element, got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.to_f64_vec()?.first().is_some_and(|x| *x != 0.0))
}
