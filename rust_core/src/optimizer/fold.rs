//! Constant folding: nodes whose inputs are all constants run once, at session creation.
//!
//! Exporters emit long chains of such nodes (Shape arithmetic on constant shapes, Cast and
//! Unsqueeze of constants, weight transposes, `Constant` nodes themselves); folding them removes
//! their cost from every run. A node is folded only when it is deterministic, has no subgraph,
//! and its operator succeeds on the constant inputs; otherwise it stays in the graph unchanged
//! (an error it would raise surfaces at run time, where it belongs).

use crate::executor::pool::ThreadPool;
use crate::graph::ir::{AttrValue, Graph, Node};
use crate::ops::{registry, BuildContext, RunContext, SubgraphRunner, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Operators whose output is not a function of their inputs alone.
const NONDETERMINISTIC: &[&str] =
    &["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"];

/// Largest output (in bytes) a folded node may produce; bigger results are computed per run
/// rather than held in memory for the session's lifetime.
const MAX_FOLDED_BYTES: usize = 64 << 20;

/// Values of the constants known before any node runs, plus those of every foldable node, and
/// the indices of the nodes that were folded (to be left out of the plan).
pub fn fold_constants(
    graph: &Graph,
    opsets: &HashMap<String, i64>,
    mut known: HashMap<String, Value>,
) -> (HashMap<String, Value>, HashSet<usize>) {
    let pool = ThreadPool::new(1);
    let ctx = RunContext { pool: &pool };
    let mut folded = HashSet::new();
    let no_subgraphs = |_: &Arc<Graph>| -> crate::Result<Arc<dyn SubgraphRunner>> {
        Err(crate::Error::Internal("constant folding does not compile subgraphs".into()))
    };
    for (k, node) in graph.nodes.iter().enumerate() {
        if !foldable(node) || !node.inputs.iter().all(|i| i.is_empty() || known.contains_key(i)) {
            continue;
        }
        let Some(build) = registry().get(&node.domain, &node.op_type) else { continue };
        let const_inputs = node
            .inputs
            .iter()
            .map(|i| match known.get(i) {
                Some(Value::Tensor(t)) => Some(t),
                _ => None,
            })
            .collect();
        let opset = opsets.get(crate::ops::normalize_domain(&node.domain)).copied().unwrap_or(0);
        let bctx = BuildContext { node, opset, const_inputs, compile: &no_subgraphs };
        let Ok(op) = build(&bctx) else { continue };
        let args: Vec<Option<&Value>> = node.inputs.iter().map(|i| if i.is_empty() { None } else { known.get(i) }).collect();
        let outs = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op.run(&args, &ctx))) {
            Ok(Ok(outs)) => outs,
            _ => continue,
        };
        let size: usize = outs.iter().map(|v| if let Value::Tensor(t) = v { t.nbytes() } else { 0 }).sum();
        if size > MAX_FOLDED_BYTES || outs.len() < node.outputs.iter().filter(|o| !o.is_empty()).count() {
            continue;
        }
        for (name, v) in node.outputs.iter().zip(outs) {
            if !name.is_empty() {
                known.insert(name.clone(), v);
            }
        }
        folded.insert(k);
    }
    (known, folded)
}

fn foldable(node: &Node) -> bool {
    !NONDETERMINISTIC.contains(&node.op_type.as_str())
        && !node.attrs.iter().any(|(_, a)| matches!(a, AttrValue::Graph(_) | AttrValue::Graphs(_)))
}
