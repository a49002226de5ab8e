//! Sessions: a model compiled once, run many times (concurrently, from any thread).

use super::plan::{Opsets, Plan};
use super::pool::{default_threads, ThreadPool};
use crate::error::{Error, Result};
use crate::graph::ir::{Dim, Model, TypeInfo, ValueInfo};
use crate::ops::{RunContext, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Options fixed at session creation.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Threads for intra-op parallelism; 0 means one per available core.
    pub intra_op_threads: usize,
}

/// A model ready to run. Immutable: `run` may be called from several threads at once.
pub struct Session {
    model: Arc<Model>,
    plan: Plan,
    pool: ThreadPool,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    /// Initializer defaults of overridable inputs.
    defaults: HashMap<String, Value>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(inputs={:?}, outputs={:?})", self.inputs.iter().map(|v| &v.name).collect::<Vec<_>>(), self.outputs.iter().map(|v| &v.name).collect::<Vec<_>>())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // PYML_INTEROP_PROFILE=1: print where the time went, per operator type.
        if let Some(rows) = self.plan.profile_by_op_type() {
            let total: f64 = rows.iter().map(|r| r.1.as_secs_f64()).sum();
            let mut out = format!("pyml_interop profile ({} threads): op_type, total ms, calls, share\n", self.pool.threads());
            for (op, d, n) in rows {
                let ms = d.as_secs_f64() * 1e3;
                out.push_str(&format!("  {op:<24} {ms:>10.3} {n:>8} {:>6.1}%\n", 100.0 * d.as_secs_f64() / total.max(1e-12)));
            }
            eprint!("{out}");
        }
    }
}

impl Session {
    /// Compile `model` for execution: inline functions, build every operator, plan memory.
    pub fn new(model: Arc<Model>, options: &SessionOptions) -> Result<Session> {
        let graph = crate::optimizer::prepare(&model)?;
        let opsets: Opsets = Arc::new(
            model.opsets.iter().map(|(d, v)| (crate::ops::normalize_domain(d).to_string(), *v)).collect(),
        );
        let plan = Plan::build(&graph, &opsets, &HashSet::new())?;
        let threads = if options.intra_op_threads == 0 { default_threads() } else { options.intra_op_threads };
        let init: HashMap<&str, &crate::tensor::Tensor> = graph.initializers.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut defaults = HashMap::new();
        for v in &graph.inputs {
            if let Some(t) = init.get(v.name.as_str()) {
                defaults.insert(v.name.clone(), Value::Tensor((*t).clone()));
            }
        }
        let inputs = graph.real_inputs().into_iter().cloned().collect();
        let outputs = graph.outputs.clone();
        Ok(Session { model, plan, pool: ThreadPool::new(threads), inputs, outputs, defaults })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Inputs the caller feeds (initializer-backed inputs excluded).
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// Outputs, in graph order.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// Threads used for intra-op parallelism.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Run with named inputs; returns the requested outputs (all when `output_names` is None),
    /// in the order requested. Inputs are checked against the declared dtypes and shapes;
    /// symbolic dimensions must bind consistently across inputs.
    pub fn run(&self, feeds: &[(&str, Value)], output_names: Option<&[&str]>) -> Result<Vec<Value>> {
        let mut by_name: HashMap<&str, &Value> = HashMap::new();
        for (name, v) in feeds {
            if by_name.insert(name, v).is_some() {
                return Err(Error::InvalidArgument(format!("input '{name}' is given twice")));
            }
        }
        let known: HashSet<&str> = self.plan.input_names().collect();
        for name in by_name.keys() {
            if !known.contains(name) {
                let expected: Vec<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
                return Err(Error::InvalidArgument(format!(
                    "unknown input name '{name}'; the model's inputs are {expected:?}"
                )));
            }
        }
        let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
        for info in &self.inputs {
            match by_name.get(info.name.as_str()) {
                None if !self.defaults.contains_key(&info.name) => {
                    return Err(Error::InvalidArgument(format!("input '{}' is missing ({})", info.name, describe_type(&info.ty))));
                }
                None => {}
                Some(v) => check_input(info, v, &mut symbols)?,
            }
        }
        let plan_inputs: Vec<Option<Value>> = self.plan.input_names().map(|n| by_name.get(n).map(|v| (*v).clone())).collect();
        let ctx = RunContext { pool: &self.pool };
        let defaults = |n: &str| self.defaults.get(n).cloned();
        let all = self.plan.execute(plan_inputs, &defaults, &[], &ctx)?;
        match output_names {
            None => Ok(all),
            Some(names) => {
                let idx: HashMap<&str, usize> = self.plan.output_names().enumerate().map(|(i, n)| (n, i)).collect();
                names
                    .iter()
                    .map(|n| {
                        idx.get(n).map(|i| all[*i].clone()).ok_or_else(|| {
                            let valid: Vec<&str> = self.plan.output_names().collect();
                            Error::InvalidArgument(format!("unknown output name '{n}'; the model's outputs are {valid:?}"))
                        })
                    })
                    .collect()
            }
        }
    }
}

/// `tensor(float) [batch, 3, 224, 224]`, for messages.
pub fn describe_type(ty: &TypeInfo) -> String {
    match ty.tensor_shape() {
        Some(s) => format!("{} [{}]", ty.type_string(), s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        None => ty.type_string(),
    }
}

fn check_input<'a>(info: &'a ValueInfo, v: &Value, symbols: &mut HashMap<&'a str, (usize, &'a str)>) -> Result<()> {
    let t = match (&info.ty, v) {
        (TypeInfo::Tensor { .. }, Value::Tensor(t)) => t,
        (TypeInfo::Tensor { .. }, other) => {
            return Err(Error::InvalidArgument(format!("input '{}' must be a tensor, got a {}", info.name, other.kind())))
        }
        _ => return Ok(()),
    };
    if let Some(d) = info.ty.tensor_dtype() {
        if t.dtype() != d {
            return Err(Error::UnsupportedDtype(format!(
                "input '{}' has element type {}, the model expects {} ({})",
                info.name,
                t.dtype(),
                d,
                describe_type(&info.ty)
            )));
        }
    }
    if let Some(dims) = info.ty.tensor_shape() {
        if dims.len() != t.rank() {
            return Err(Error::ShapeMismatch(format!(
                "input '{}' has rank {} (shape {:?}), the model expects rank {} ({})",
                info.name,
                t.rank(),
                t.shape(),
                dims.len(),
                describe_type(&info.ty)
            )));
        }
        for (axis, (d, &actual)) in dims.iter().zip(t.shape()).enumerate() {
            match d {
                Dim::Known(n) if *n != actual => {
                    return Err(Error::ShapeMismatch(format!(
                        "input '{}' has dimension {actual} at axis {axis}, the model expects {n} (shape {:?} given, {} expected)",
                        info.name,
                        t.shape(),
                        describe_type(&info.ty)
                    )))
                }
                Dim::Symbol(s) => match symbols.get(s.as_str()) {
                    Some((bound, by)) if *bound != actual => {
                        return Err(Error::ShapeMismatch(format!(
                            "symbolic dimension '{s}' is {bound} in input '{by}' but {actual} in input '{}' (axis {axis})",
                            info.name
                        )))
                    }
                    Some(_) => {}
                    None => {
                        symbols.insert(s.as_str(), (actual, info.name.as_str()));
                    }
                },
                _ => {}
            }
        }
    }
    Ok(())
}
