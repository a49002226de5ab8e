//! Execution plans: a graph compiled into a list of steps over numbered value slots.
//!
//! Built once at session creation: every node's operator is built (attributes parsed, weights
//! pre-packed), every value name becomes a slot index, and the last use of each intermediate is
//! known, so a run frees buffers as soon as their last consumer ran. Constants live in their own
//! table and are never copied per run.

use crate::error::{Error, Result};
use crate::graph::ir::{AttrValue, Graph, Node};
use crate::ops::{registry, BuildContext, Op, RunContext, SubgraphRunner, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One operator invocation.
struct Step {
    op: Box<dyn Op>,
    /// Slot per input (None: omitted optional input). Explicit inputs, then captured names.
    inputs: Vec<Option<usize>>,
    /// Slot per output (None: omitted optional output).
    outputs: Vec<Option<usize>>,
    /// Runtime slots to drop once this step ran.
    frees: Vec<usize>,
    /// `Conv node 'x'`, for error messages.
    label: String,
    /// The node's op_type, for profiles.
    op_type: String,
    /// `axis` of a `Concat` of the default domain (a candidate for [`fuse_concats`]).
    concat_axis: Option<i64>,
}

/// Opset versions by domain, shared by a graph and its subgraphs.
pub type Opsets = Arc<HashMap<String, i64>>;

/// A compiled graph.
pub struct Plan {
    /// Constants (initializers), slots `0..consts.len()`.
    consts: Vec<Value>,
    /// Number of runtime slots (after the constants).
    n_runtime: usize,
    /// Slot of each formal input, in graph order, with its name.
    inputs: Vec<(String, usize)>,
    /// Captured outer-scope names and their slots (subgraphs only).
    captured: Vec<(String, usize)>,
    captured_names: Vec<String>,
    steps: Vec<Step>,
    /// Slot of each graph output, with its name.
    outputs: Vec<(String, usize)>,
    /// Per-step accumulated time and call count, when profiling is on.
    profile: Option<Profile>,
}

/// Time spent per step, accumulated over runs (enabled with `PYML_INTEROP_PROFILE=1`).
pub struct Profile {
    per_step: Vec<std::sync::Mutex<(std::time::Duration, u64)>>,
}

impl Plan {
    /// Per-op-type totals `(op_type, total time, calls)`, slowest first; None unless profiling.
    pub fn profile_by_op_type(&self) -> Option<Vec<(String, std::time::Duration, u64)>> {
        let p = self.profile.as_ref()?;
        let mut acc: HashMap<&str, (std::time::Duration, u64)> = HashMap::new();
        for (step, cell) in self.steps.iter().zip(&p.per_step) {
            let (d, n) = *cell.lock().unwrap_or_else(|e| e.into_inner());
            let e = acc.entry(step.op_type.as_str()).or_default();
            e.0 += d;
            e.1 += n;
        }
        let mut v: Vec<_> = acc.into_iter().map(|(k, (d, n))| (k.to_string(), d, n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1));
        Some(v)
    }

    /// Per-step `(label, op_type, total time, calls)` in execution order; None unless profiling.
    pub fn profile_by_step(&self) -> Option<Vec<(String, String, std::time::Duration, u64)>> {
        let p = self.profile.as_ref()?;
        Some(
            self.steps
                .iter()
                .zip(&p.per_step)
                .map(|(step, cell)| {
                    let (d, n) = *cell.lock().unwrap_or_else(|e| e.into_inner());
                    (step.label.clone(), step.op_type.clone(), d, n)
                })
                .collect(),
        )
    }
}

impl Plan {
    /// Compile `graph`. `outer` is the set of names visible from enclosing graphs (empty for
    /// the main graph). Every unsupported operator (recursively) is reported in one error.
    pub fn build(graph: &Graph, opsets: &Opsets, outer: &HashSet<String>) -> Result<Plan> {
        let unsupported = collect_unsupported(graph, opsets);
        if !unsupported.is_empty() {
            return Err(Error::UnsupportedOperator(format_unsupported(&unsupported)));
        }
        Plan::build_checked(graph, opsets, outer)
    }

    fn build_checked(graph: &Graph, opsets: &Opsets, outer: &HashSet<String>) -> Result<Plan> {
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut consts = Vec::new();
        let input_names: HashSet<&str> = graph.inputs.iter().map(|v| v.name.as_str()).collect();
        // Initializers that are not also inputs are true constants. Those that are inputs are
        // overridable defaults: they get a runtime slot filled from the default when not fed.
        let initial: HashMap<String, Value> = graph
            .initializers
            .iter()
            .filter(|(name, _)| !input_names.contains(name.as_str()))
            .map(|(name, t)| (name.clone(), Value::Tensor(t.clone())))
            .collect();
        // Nodes computable from constants alone run now, once; their outputs become constants.
        let (known, folded) = crate::optimizer::fold::fold_constants(graph, opsets.as_ref(), initial);
        let mut known: Vec<(String, Value)> = known.into_iter().collect();
        known.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, v) in known {
            slots.insert(name, consts.len());
            consts.push(v);
        }
        let nc = consts.len();
        let mut n_runtime = 0usize;
        let mut new_slot = |slots: &mut HashMap<String, usize>, name: &str| -> usize {
            let s = nc + n_runtime;
            n_runtime += 1;
            slots.insert(name.to_string(), s);
            s
        };
        let mut inputs = Vec::new();
        for v in &graph.inputs {
            let s = new_slot(&mut slots, &v.name);
            inputs.push((v.name.clone(), s));
        }
        let captured_names = graph.captured_names();
        let mut captured = Vec::new();
        for name in &captured_names {
            if !outer.contains(name) {
                return Err(Error::InvalidModel(format!(
                    "value '{name}' is used but never defined (not a graph input, initializer, node output \
                     or outer-scope value)"
                )));
            }
            let s = new_slot(&mut slots, name);
            captured.push((name.clone(), s));
        }
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (_, node) in graph.nodes.iter().enumerate().filter(|(k, _)| !folded.contains(k)) {
            let label = node.describe();
            // Explicit inputs.
            let mut in_slots = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    in_slots.push(None);
                    continue;
                }
                let s = *slots.get(name).ok_or_else(|| {
                    Error::InvalidModel(format!("{label}: input '{name}' is not defined before this node"))
                })?;
                in_slots.push(Some(s));
            }
            // Names captured by the node's subgraphs become implicit inputs.
            let implicit = node_captures(node);
            let mut visible: HashSet<String> = outer.clone();
            visible.extend(slots.keys().cloned());
            for name in &implicit {
                let s = *slots.get(name).ok_or_else(|| {
                    Error::InvalidModel(format!("{label}: subgraph uses '{name}', which is not defined"))
                })?;
                in_slots.push(Some(s));
            }
            let opset = opsets.get(crate::ops::normalize_domain(&node.domain)).copied().unwrap_or(0);
            let const_inputs = in_slots
                .iter()
                .take(node.inputs.len())
                .map(|s| match s {
                    Some(s) if *s < nc => match &consts[*s] {
                        Value::Tensor(t) => Some(t),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            let opsets_c = opsets.clone();
            let compile = move |g: &Arc<Graph>| -> Result<Arc<dyn SubgraphRunner>> {
                Ok(Arc::new(Plan::build_checked(g, &opsets_c, &visible)?) as Arc<dyn SubgraphRunner>)
            };
            let build = registry()
                .get(&node.domain, &node.op_type)
                .ok_or_else(|| Error::UnsupportedOperator(format!("{label} ({})", node.domain)))?;
            let ctx = BuildContext { node, opset, const_inputs, compile: &compile };
            let op = build(&ctx).map_err(|e| e.context(&label))?;
            let mut out_slots = Vec::with_capacity(node.outputs.len());
            for name in &node.outputs {
                if name.is_empty() {
                    out_slots.push(None);
                } else {
                    out_slots.push(Some(new_slot(&mut slots, name)));
                }
            }
            let concat_axis = match (node.op_type.as_str(), node.domain.as_str(), node.attr("axis")) {
                ("Concat", "" | "ai.onnx", Some(AttrValue::Int(axis))) => Some(*axis),
                _ => None,
            };
            steps.push(Step { op, inputs: in_slots, outputs: out_slots, frees: Vec::new(), label, op_type: node.op_type.clone(), concat_axis });
        }
        let mut outputs = Vec::new();
        let mut keep: HashSet<usize> = HashSet::new();
        for o in &graph.outputs {
            let s = *slots.get(&o.name).ok_or_else(|| {
                Error::InvalidModel(format!("graph output '{}' is not produced by any node or input", o.name))
            })?;
            keep.insert(s);
            outputs.push((o.name.clone(), s));
        }
        let mut steps = fuse_concats(steps, &keep);
        // Each runtime value is freed after its last reader (an output nobody reads, right
        // after its step).
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (k, step) in steps.iter().enumerate() {
            for s in step.outputs.iter().flatten() {
                last_use.entry(*s).or_insert(k);
            }
            for s in step.inputs.iter().flatten() {
                last_use.insert(*s, k);
            }
        }
        for (slot, k) in last_use {
            if slot >= nc && !keep.contains(&slot) {
                steps[k].frees.push(slot);
            }
        }
        let profile = profiling_enabled().then(|| Profile {
            per_step: steps.iter().map(|_| std::sync::Mutex::new(Default::default())).collect(),
        });
        Ok(Plan { consts, n_runtime, inputs, captured, captured_names, steps, outputs, profile })
    }

    /// The label of every step, in execution order (`Conv node 'c1'`; a concatenation whose
    /// parts are written in place names its producers).
    pub fn step_labels(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.label.as_str())
    }

    /// Formal input names, in order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|(n, _)| n.as_str())
    }

    /// Number of formal inputs.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Output names, in order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|(n, _)| n.as_str())
    }

    /// Run with inputs bound by position (None: not fed; initializer defaults apply) and the
    /// captured outer values. Returns every graph output, in order.
    pub fn execute(
        &self,
        inputs: Vec<Option<Value>>,
        defaults: &dyn Fn(&str) -> Option<Value>,
        captured: &[Option<&Value>],
        ctx: &RunContext,
    ) -> Result<Vec<Value>> {
        let nc = self.consts.len();
        let mut rt: Vec<Option<Value>> = vec![None; self.n_runtime];
        for ((name, slot), v) in self.inputs.iter().zip(inputs) {
            let v = match v {
                Some(v) => v,
                None => defaults(name).ok_or_else(|| Error::InvalidArgument(format!("input '{name}' was not given")))?,
            };
            rt[slot - nc] = Some(v);
        }
        for ((name, slot), v) in self.captured.iter().zip(captured) {
            let v = v.ok_or_else(|| Error::Internal(format!("captured value '{name}' is missing")))?;
            rt[slot - nc] = Some(v.clone());
        }
        for (k, step) in self.steps.iter().enumerate() {
            let t0 = self.profile.as_ref().map(|_| std::time::Instant::now());
            let outs = {
                // Arguments on the stack for the usual few inputs (no allocation per step).
                const STACK_ARGS: usize = 8;
                let mut stack: [Option<&Value>; STACK_ARGS] = [None; STACK_ARGS];
                let mut heap: Vec<Option<&Value>> = Vec::new();
                let n = step.inputs.len();
                let args: &mut [Option<&Value>] = if n <= STACK_ARGS {
                    &mut stack[..n]
                } else {
                    heap.resize(n, None);
                    &mut heap
                };
                for (a, s) in args.iter_mut().zip(&step.inputs) {
                    *a = match s {
                        None => None,
                        Some(s) if *s < nc => Some(&self.consts[*s]),
                        Some(s) => {
                            let v = rt[s - nc].as_ref();
                            if v.is_none() {
                                return Err(Error::Internal(format!("{}: an input was freed too early", step.label)));
                            }
                            v
                        }
                    };
                }
                step.op.run(args, ctx).map_err(|e| e.context(&step.label))?
            };
            if outs.len() < step.outputs.iter().filter(|o| o.is_some()).count() {
                return Err(Error::Internal(format!(
                    "{} returned {} outputs, {} expected",
                    step.label,
                    outs.len(),
                    step.outputs.len()
                )));
            }
            for (slot, v) in step.outputs.iter().zip(outs) {
                if let Some(s) = slot {
                    rt[s - nc] = Some(v);
                }
            }
            for s in &step.frees {
                rt[s - nc] = None;
            }
            if let (Some(p), Some(t0)) = (&self.profile, t0) {
                let mut c = p.per_step[k].lock().unwrap_or_else(|e| e.into_inner());
                c.0 += t0.elapsed();
                c.1 += 1;
            }
        }
        self.outputs
            .iter()
            .enumerate()
            .map(|(i, (name, s))| {
                if *s < nc {
                    return Ok(self.consts[*s].clone());
                }
                // Moved out of its slot unless a later output is the same value.
                let v = if self.outputs[i + 1..].iter().any(|(_, s2)| s2 == s) { rt[s - nc].clone() } else { rt[s - nc].take() };
                v.ok_or_else(|| Error::Internal(format!("output '{name}' was not computed")))
            })
            .collect()
    }
}

/// Channel concatenations whose parts are written in place (see [`super::concat`]): each
/// `Concat` step absorbs the producers of its inputs that can write into a slice
/// ([`Op::writes_into`], one output) and that nothing else reads (not another node, not a graph
/// output, not twice by the concatenation). The producers run at the concatenation's step
/// instead of their own, which keeps their inputs alive until then.
fn fuse_concats(steps: Vec<Step>, keep: &HashSet<usize>) -> Vec<Step> {
    use super::concat::{ConcatInPlace, Part};
    let mut readers: HashMap<usize, usize> = HashMap::new();
    let mut producer: HashMap<usize, usize> = HashMap::new();
    for (k, step) in steps.iter().enumerate() {
        for s in step.inputs.iter().flatten() {
            *readers.entry(*s).or_default() += 1;
        }
        for s in step.outputs.iter().flatten() {
            producer.insert(*s, k);
        }
    }
    // For each concatenation, the steps it absorbs (by input position).
    let mut absorbed: Vec<Option<usize>> = vec![None; steps.len()];
    let mut groups: HashMap<usize, Vec<Option<usize>>> = HashMap::new();
    for (k, step) in steps.iter().enumerate() {
        if step.concat_axis.is_none() || step.inputs.is_empty() || step.inputs.iter().any(|s| s.is_none()) {
            continue;
        }
        let parts: Vec<Option<usize>> = step
            .inputs
            .iter()
            .flatten()
            .map(|s| {
                let j = *producer.get(s)?;
                let p = &steps[j];
                let sole = readers.get(s) == Some(&1) && !keep.contains(s);
                (sole && p.op.writes_into() && p.outputs.len() == 1 && absorbed[j].is_none()).then_some(j)
            })
            .collect();
        if parts.iter().any(|p| p.is_some()) {
            for j in parts.iter().flatten() {
                absorbed[*j] = Some(k);
            }
            groups.insert(k, parts);
        }
    }
    if groups.is_empty() {
        return steps;
    }
    let mut taken: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(taken.len());
    for k in 0..taken.len() {
        if absorbed[k].is_some() {
            continue;
        }
        let Some(step) = taken[k].take() else { continue };
        let Some(parts) = groups.remove(&k) else {
            out.push(step);
            continue;
        };
        let mut inputs = Vec::new();
        let mut fused = Vec::with_capacity(parts.len());
        let mut names = Vec::new();
        for (slot, part) in step.inputs.iter().zip(&parts) {
            match part.and_then(|j| taken[j].take()) {
                Some(p) => {
                    fused.push(Part::Produced { op: p.op, args: p.inputs.len(), label: p.label.clone() });
                    inputs.extend(p.inputs);
                    names.push(p.label);
                }
                None => {
                    fused.push(Part::Given);
                    inputs.push(*slot);
                }
            }
        }
        let op = ConcatInPlace { concat: step.op, axis: step.concat_axis.unwrap_or(0), parts: fused };
        out.push(Step {
            op: Box::new(op),
            inputs,
            outputs: step.outputs,
            frees: Vec::new(),
            label: format!("{} (written in place by {})", step.label, names.join(", ")),
            op_type: step.op_type,
            concat_axis: None,
        });
    }
    out
}

impl SubgraphRunner for Plan {
    fn run(&self, inputs: Vec<Value>, captured: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        if inputs.len() > self.inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "subgraph takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut ins: Vec<Option<Value>> = inputs.into_iter().map(Some).collect();
        ins.resize(self.inputs.len(), None);
        self.execute(ins, &|_| None, captured, ctx)
    }

    fn captured_names(&self) -> &[String] {
        &self.captured_names
    }
}

/// Whether `PYML_INTEROP_PROFILE=nodes` asks for the per-node table too.
pub fn profiling_nodes() -> bool {
    std::env::var("PYML_INTEROP_PROFILE").is_ok_and(|v| v == "nodes")
}

/// Whether `PYML_INTEROP_PROFILE` asks for per-operator timing (read at session creation).
pub fn profiling_enabled() -> bool {
    std::env::var("PYML_INTEROP_PROFILE").map(|v| !v.is_empty() && v != "0").unwrap_or(false)
}

/// Outer-scope names read by the subgraphs of `node`, in first-use order.
pub fn node_captures(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (_, a) in &node.attrs {
        let gs: Vec<&Arc<Graph>> = match a {
            AttrValue::Graph(g) => vec![g],
            AttrValue::Graphs(gs) => gs.iter().collect(),
            _ => continue,
        };
        for g in gs {
            for n in g.captured_names() {
                if seen.insert(n.clone()) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// (domain, op_type, opset version) -> node labels, for every unsupported operator.
fn collect_unsupported(graph: &Graph, opsets: &Opsets) -> Vec<((String, String, i64), Vec<String>)> {
    fn walk(g: &Graph, opsets: &Opsets, acc: &mut Vec<((String, String, i64), Vec<String>)>) {
        for n in &g.nodes {
            if registry().get(&n.domain, &n.op_type).is_none() {
                let dom = crate::ops::normalize_domain(&n.domain).to_string();
                let v = opsets.get(&dom).copied().unwrap_or(0);
                let key = (dom, n.op_type.clone(), v);
                let label = if n.name.is_empty() { format!("(output '{}')", n.outputs.first().cloned().unwrap_or_default()) } else { format!("'{}'", n.name) };
                match acc.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, names)) => names.push(label),
                    None => acc.push((key, vec![label])),
                }
            }
            for (_, a) in &n.attrs {
                match a {
                    AttrValue::Graph(s) => walk(s, opsets, acc),
                    AttrValue::Graphs(ss) => ss.iter().for_each(|s| walk(s, opsets, acc)),
                    _ => {}
                }
            }
        }
    }
    let mut acc = Vec::new();
    walk(graph, opsets, &mut acc);
    acc
}

fn format_unsupported(list: &[((String, String, i64), Vec<String>)]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|((dom, op, v), nodes)| {
            let d = if dom.is_empty() { "ai.onnx" } else { dom };
            let mut names = nodes.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if nodes.len() > 5 {
                names.push_str(&format!(", ... ({} nodes)", nodes.len()));
            }
            format!("{op} (domain {d}, opset {v}; nodes {names})")
        })
        .collect();
    format!("{} unsupported operator(s): {}", list.len(), parts.join("; "))
}
