//! Sessions: a model compiled once, run many times (concurrently, from any thread).

use super::plan::{Opsets, Plan};
use super::pool::{default_threads, ThreadPool};
use crate::error::{Error, Result};
use crate::graph::ir::{Dim, Model, TypeInfo, ValueInfo};
use crate::ops::{RunContext, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Up to this many inputs, names are found by comparing them in turn (faster than hashing).
const LINEAR_LOOKUP_MAX: usize = 16;

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
    /// Plan input position of each of `inputs`.
    input_slots: Vec<usize>,
    /// Plan input positions by name, for models with many inputs (a linear scan otherwise).
    input_by_name: Option<HashMap<String, usize>>,
    /// Batches of large images run one image at a time (see [`super::batch`]): the graph's
    /// first convolution when it may.
    split: Option<super::batch::FirstConv>,
    /// A pool of the calling thread alone, for images run on the threads of `pool`.
    single: ThreadPool,
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
            if super::plan::profiling_nodes() {
                out.push_str("pyml_interop profile per node: node, op_type, ms per call, calls\n");
                for (label, op, d, n) in self.plan.profile_by_step().unwrap_or_default() {
                    let per = d.as_secs_f64() * 1e3 / n.max(1) as f64;
                    out.push_str(&format!("  {label}\t{op}\t{per:.4}\t{n}\n"));
                }
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
        let inputs: Vec<ValueInfo> = graph.real_inputs().into_iter().cloned().collect();
        let input_slots = inputs
            .iter()
            .map(|v| plan.input_names().position(|n| n == v.name).ok_or_else(|| Error::Internal(format!("input '{}' has no slot", v.name))))
            .collect::<Result<_>>()?;
        let input_by_name = (plan.input_count() > LINEAR_LOOKUP_MAX)
            .then(|| plan.input_names().enumerate().map(|(i, n)| (n.to_string(), i)).collect());
        let outputs = graph.outputs.clone();
        // PYML_INTEROP_BATCH_SPLIT=0 runs every batch whole (for comparisons).
        let split = if std::env::var("PYML_INTEROP_BATCH_SPLIT").is_ok_and(|v| v == "0") { None } else { super::batch::separable(&graph) };
        Ok(Session {
            model,
            plan,
            pool: ThreadPool::new(threads),
            inputs,
            outputs,
            defaults,
            input_slots,
            input_by_name,
            split,
            single: ThreadPool::new(1),
        })
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
    /// symbolic dimensions must bind consistently across inputs. Initializer-backed inputs may
    /// be fed by name too (they override the initializer).
    pub fn run(&self, feeds: &[(&str, Value)], output_names: Option<&[&str]>) -> Result<Vec<Value>> {
        let mut slots: Vec<Option<Value>> = vec![None; self.plan.input_count()];
        for (name, v) in feeds {
            let k = self.plan_input_position(name).ok_or_else(|| {
                let expected: Vec<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
                Error::InvalidArgument(format!("unknown input name '{name}'; the model's inputs are {expected:?}"))
            })?;
            if slots[k].replace(v.clone()).is_some() {
                return Err(Error::InvalidArgument(format!("input '{name}' is given twice")));
            }
        }
        match output_names {
            None => self.run_slots(slots, None),
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for n in names {
                    idx.push(self.output_position(n).ok_or_else(|| {
                        let valid: Vec<&str> = self.plan.output_names().collect();
                        Error::InvalidArgument(format!("unknown output name '{n}'; the model's outputs are {valid:?}"))
                    })?);
                }
                self.run_slots(slots, Some(&idx))
            }
        }
    }

    /// Run with inputs by position: `feeds` holds `(i, value)` where `i` indexes [`Self::inputs`]
    /// (any order, each at most once); `outputs` selects outputs by position in
    /// [`Self::outputs`] (all, in order, when None). The checks and errors are those of
    /// [`Self::run`]; no name is looked up.
    pub fn run_indexed(&self, feeds: Vec<(usize, Value)>, outputs: Option<&[usize]>) -> Result<Vec<Value>> {
        let mut slots: Vec<Option<Value>> = vec![None; self.plan.input_count()];
        for (i, v) in feeds {
            let info = self.inputs.get(i).ok_or_else(|| {
                Error::InvalidArgument(format!("input index {i} is out of range (the model has {} inputs)", self.inputs.len()))
            })?;
            if slots[self.input_slots[i]].replace(v).is_some() {
                return Err(Error::InvalidArgument(format!("input '{}' is given twice", info.name)));
            }
        }
        if let Some(idx) = outputs {
            if let Some(&bad) = idx.iter().find(|&&j| j >= self.outputs.len()) {
                return Err(Error::InvalidArgument(format!(
                    "output index {bad} is out of range (the model has {} outputs)",
                    self.outputs.len()
                )));
            }
        }
        self.run_slots(slots, outputs)
    }

    /// Position of the input `name` among the plan's inputs (initializer-backed ones included).
    fn plan_input_position(&self, name: &str) -> Option<usize> {
        match &self.input_by_name {
            Some(map) => map.get(name).copied(),
            None => self.plan.input_names().position(|n| n == name),
        }
    }

    /// Position of the output `name`.
    pub fn output_position(&self, name: &str) -> Option<usize> {
        self.plan.output_names().position(|n| n == name)
    }

    /// Position of the input `name` in [`Self::inputs`].
    pub fn input_position(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|v| v.name == name)
    }

    /// The common path: `slots` by plan input position (None: not fed), outputs by position.
    fn run_slots(&self, slots: Vec<Option<Value>>, outputs: Option<&[usize]>) -> Result<Vec<Value>> {
        // Symbols bound so far: (symbol, value, input that bound it). Few: a linear scan.
        let mut symbols: Vec<(&str, usize, &str)> = Vec::new();
        for (info, &k) in self.inputs.iter().zip(&self.input_slots) {
            match &slots[k] {
                None if !self.defaults.contains_key(&info.name) => {
                    return Err(Error::InvalidArgument(format!("input '{}' is missing ({})", info.name, describe_type(&info.ty))));
                }
                None => {}
                Some(v) => check_input(info, v, &mut symbols)?,
            }
        }
        let ctx = RunContext { pool: &self.pool };
        let _running = self.pool.run_scope();
        let defaults = |n: &str| self.defaults.get(n).cloned();
        let split = self.split_images(&slots).and_then(|(n, blocks)| self.run_split(&slots, n, blocks, &defaults));
        let mut all = match split {
            Some(all) => all,
            None => self.plan.execute(slots, &defaults, &[], &ctx)?,
        };
        match outputs {
            None => Ok(all),
            // The common case of one output, taken without a clone.
            Some(&[j]) => Ok(vec![all.swap_remove(j)]),
            Some(idx) => Ok(idx.iter().map(|&j| all[j].clone()).collect()),
        }
    }
}

impl Session {
    /// The number of images when this run is split (see [`super::batch`]) and the number of
    /// parts it is split into: every input fed, a tensor of one batch size of at least 2;
    /// initializer-backed inputs left at their defaults (the graph was analysed with them as
    /// constants). Large enough images and first activations run one image at a time; smaller
    /// ones, on several threads and a batch that they divide, run as one block of images per
    /// thread.
    fn split_images(&self, slots: &[Option<Value>]) -> Option<(usize, usize)> {
        let first = self.split?;
        let mut n = None;
        let (mut image_bytes, mut image_elems) = (0, 0);
        for (k, s) in slots.iter().enumerate() {
            let is_input = self.input_slots.contains(&k);
            match s {
                Some(Value::Tensor(t)) if is_input && t.dtype() != crate::tensor::DType::String && t.rank() >= 1 => {
                    let b = t.shape()[0];
                    if b < 2 || *n.get_or_insert(b) != b {
                        return None;
                    }
                    image_bytes += t.nbytes() / b;
                    image_elems += t.len() / b;
                }
                None if !is_input => {}
                _ => return None,
            }
        }
        let n = n?;
        let large = image_bytes >= super::batch::SPLIT_MIN_BYTES && first.output_bytes(image_elems) >= super::batch::SPLIT_MIN_ACTIVATION;
        let threads = self.pool.threads();
        if large {
            Some((n, n))
        } else if threads > 1 && n % threads == 0 {
            Some((n, threads))
        } else {
            None
        }
    }

    /// Run the `n` images in `parts` equal blocks (`parts` divides `n`) and stack their
    /// outputs along the first axis; None when any block fails (the caller then runs the batch
    /// whole, for its result or its error). With several threads, the largest multiple of the
    /// thread count of blocks are shared between the threads, each running its blocks alone;
    /// the rest use the whole pool.
    fn run_split(&self, slots: &[Option<Value>], n: usize, parts: usize, defaults: &(dyn Fn(&str) -> Option<Value> + Sync)) -> Option<Vec<Value>> {
        let per = n / parts;
        // The slots of block i (images i·per..(i + 1)·per).
        let block = |i: usize| -> Option<Vec<Option<Value>>> {
            slots
                .iter()
                .map(|s| match s {
                    None => Some(None),
                    Some(Value::Tensor(t)) => images_of(t, i * per..(i + 1) * per, n).map(|t| Some(Value::Tensor(t))),
                    Some(_) => None,
                })
                .collect()
        };
        let results: Vec<std::sync::Mutex<Option<Vec<Value>>>> = (0..parts).map(|_| std::sync::Mutex::new(None)).collect();
        let run_one = |i: usize, pool: &ThreadPool| {
            let ctx = RunContext { pool };
            let out = block(i).and_then(|slots| self.plan.execute(slots, defaults, &[], &ctx).ok());
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = out;
        };
        let threads = self.pool.threads();
        let shared = if threads > 1 { parts / threads * threads } else { 0 };
        if shared > 0 {
            self.pool.parallel_for(shared, shared / threads, |s, e| (s..e).for_each(|i| run_one(i, &self.single)));
        }
        (shared..parts).for_each(|i| run_one(i, &self.pool));
        let per_block: Vec<Vec<Value>> = results.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect::<Option<_>>()?;
        (0..per_block.first()?.len()).map(|j| stack(per_block.iter().map(|o| &o[j]))).collect()
    }
}

/// Images `images` of `n` (a view of their block of the first axis, kept alive by the batch).
fn images_of(t: &crate::tensor::Tensor, images: std::ops::Range<usize>, n: usize) -> Option<crate::tensor::Tensor> {
    let per = t.nbytes() / n;
    let mut shape = t.shape().to_vec();
    shape[0] = shape[0] / n * images.len();
    let bytes = t.bytes().ok()?.get(images.start * per..images.end * per)?;
    // SAFETY: the bytes lie in the batch's storage, which the Arc keeps alive and which no
    // one writes while the run that borrows it lasts.
    unsafe { crate::tensor::Tensor::from_shared_bytes(t.dtype(), &shape, Arc::new(t.clone()), bytes).ok() }
}

/// The tensors of `parts` stacked along their first axis (None unless they are tensors of one
/// dtype and equal trailing dimensions).
fn stack<'a>(parts: impl Iterator<Item = &'a Value>) -> Option<Value> {
    let tensors: Vec<&crate::tensor::Tensor> = parts.map(|v| if let Value::Tensor(t) = v { Some(t) } else { None }).collect::<Option<_>>()?;
    let first = tensors.first()?;
    if first.rank() == 0 || first.dtype() == crate::tensor::DType::String {
        return None;
    }
    let tail = &first.shape()[1..];
    if tensors.iter().any(|t| t.dtype() != first.dtype() || t.rank() != first.rank() || &t.shape()[1..] != tail) {
        return None;
    }
    let mut shape = first.shape().to_vec();
    shape[0] = tensors.iter().map(|t| t.shape()[0]).sum();
    let mut out = crate::tensor::Tensor::for_overwrite(first.dtype(), &shape).ok()?;
    let dst = out.make_mut_bytes().ok()?;
    let mut at = 0;
    for t in &tensors {
        let b = t.bytes().ok()?;
        dst[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    }
    Some(Value::Tensor(out))
}

/// `tensor(float) [batch, 3, 224, 224]`, for messages.
pub fn describe_type(ty: &TypeInfo) -> String {
    match ty.tensor_shape() {
        Some(s) => format!("{} [{}]", ty.type_string(), s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        None => ty.type_string(),
    }
}

fn check_input<'a>(info: &'a ValueInfo, v: &Value, symbols: &mut Vec<(&'a str, usize, &'a str)>) -> Result<()> {
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
                Dim::Symbol(s) => match symbols.iter().find(|(name, _, _)| *name == s.as_str()).map(|(_, b, by)| (b, by)) {
                    Some((bound, by)) if *bound != actual => {
                        return Err(Error::ShapeMismatch(format!(
                            "symbolic dimension '{s}' is {bound} in input '{by}' but {actual} in input '{}' (axis {axis})",
                            info.name
                        )))
                    }
                    Some(_) => {}
                    None => symbols.push((s.as_str(), actual, info.name.as_str())),
                },
                _ => {}
            }
        }
    }
    Ok(())
}
