//! Operators: the registry, the `Op` trait every kernel implements, and the families.
//!
//! Adding an operator touches one file: its family module builds an `Op` from a node at
//! session creation (attributes parsed once, constant weights pre-packed) and registers it
//! under its ONNX (domain, op_type) in that module's `register` function.

pub mod array;
pub mod common;
pub mod control;
pub mod math;
pub mod nn;
pub mod value;

use crate::error::{Error, Result};
use crate::executor::pool::ThreadPool;
use crate::graph::ir::{AttrValue, Graph, Node};
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use value::Value;

/// Per-run context handed to every operator.
pub struct RunContext<'a> {
    /// The session's thread pool (intra-op parallelism).
    pub pool: &'a ThreadPool,
}

/// A compiled operator: built once per node at session creation, run many times, possibly from
/// several threads at once (so `run` takes `&self`; per-run state lives on the stack).
pub trait Op: Send + Sync {
    /// Compute the outputs. `inputs[i]` is `None` for an omitted optional input. Returns one
    /// value per node output (omitted optional outputs may be given any value; they are dropped).
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>>;

    /// Whether [`Op::output_shape_f32`] and [`Op::run_into_f32`] are implemented: the op's
    /// single output can be written straight into a slice of a larger `f32` tensor. The
    /// executor has the producers of a channel concatenation write their parts in place.
    fn writes_into(&self) -> bool {
        false
    }

    /// The output's shape for these inputs when [`Op::run_into_f32`] can compute it, else
    /// `None` (not `f32`, or inputs [`Op::run`] rejects: it then reports the error).
    fn output_shape_f32(&self, _inputs: &[Option<&Value>]) -> Option<Vec<usize>> {
        None
    }

    /// Compute the output into `out`: image `n` (index `n` of axis 0), the product of
    /// `shape[1..]` contiguous floats, at `out[n * image_stride..]`, for the shape
    /// [`Op::output_shape_f32`] gave for the same inputs. Nothing else of `out` is written.
    fn run_into_f32(&self, _inputs: &[Option<&Value>], _ctx: &RunContext, _out: &mut [f32], _image_stride: usize) -> Result<()> {
        Err(Error::Internal("this operator cannot write into a larger tensor".into()))
    }
}

/// A subgraph compiled for execution (the bodies of If/Loop/Scan), provided by the executor.
pub trait SubgraphRunner: Send + Sync {
    /// Run with `inputs` bound to the subgraph's formal inputs in order and `captured` bound to
    /// the outer-scope names listed by [`SubgraphRunner::captured_names`], in that order.
    fn run(&self, inputs: Vec<Value>, captured: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>>;
    /// Outer-scope names the subgraph reads, in the order `captured` must follow.
    fn captured_names(&self) -> &[String];
}

/// Compiles subgraphs for operators that hold them.
pub type SubgraphCompiler<'a> = dyn Fn(&Arc<Graph>) -> Result<Arc<dyn SubgraphRunner>> + 'a;

/// What a builder sees of a node at session creation.
pub struct BuildContext<'a> {
    pub node: &'a Node,
    /// Opset version imported for the node's domain.
    pub opset: i64,
    /// Constant values of inputs known at session creation (initializers), by input position.
    pub const_inputs: Vec<Option<&'a Tensor>>,
    /// Compiles a subgraph attribute.
    pub compile: &'a SubgraphCompiler<'a>,
}

fn attr_type_err(node: &Node, name: &str, want: &str, got: &AttrValue) -> Error {
    Error::InvalidModel(format!("{}: attribute '{name}' must be {want}, got {}", node.describe(), got.kind()))
}

impl<'a> BuildContext<'a> {
    /// The raw attribute.
    pub fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        self.node.attr(name)
    }

    /// An int attribute, or `default`.
    pub fn attr_i(&self, name: &str, default: i64) -> Result<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(v) => Err(attr_type_err(self.node, name, "an int", v)),
        }
    }

    /// An optional int attribute.
    pub fn attr_opt_i(&self, name: &str) -> Result<Option<i64>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(v) => Err(attr_type_err(self.node, name, "an int", v)),
        }
    }

    /// A float attribute, or `default`.
    pub fn attr_f(&self, name: &str, default: f32) -> Result<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(AttrValue::Int(v)) => Ok(*v as f32),
            Some(v) => Err(attr_type_err(self.node, name, "a float", v)),
        }
    }

    /// An optional float attribute.
    pub fn attr_opt_f(&self, name: &str) -> Result<Option<f32>> {
        match self.attr(name) {
            None => Ok(None),
            Some(_) => self.attr_f(name, 0.0).map(Some),
        }
    }

    /// A string attribute, or `default`.
    pub fn attr_s(&self, name: &str, default: &str) -> Result<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(AttrValue::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(v) => Err(attr_type_err(self.node, name, "a string", v)),
        }
    }

    /// An ints attribute (None when absent).
    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(v)) => Ok(Some(vec![*v])),
            Some(v) => Err(attr_type_err(self.node, name, "ints", v)),
        }
    }

    /// A floats attribute (None when absent).
    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Float(v)) => Ok(Some(vec![*v])),
            Some(v) => Err(attr_type_err(self.node, name, "floats", v)),
        }
    }

    /// A strings attribute (None when absent).
    pub fn attr_strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Strings(v)) => Ok(Some(v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())),
            Some(v) => Err(attr_type_err(self.node, name, "strings", v)),
        }
    }

    /// A tensor attribute (None when absent).
    pub fn attr_tensor(&self, name: &str) -> Result<Option<&'a Tensor>> {
        match self.attr(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(t)) | Some(AttrValue::SparseTensor(t)) => Ok(Some(t)),
            Some(v) => Err(attr_type_err(self.node, name, "a tensor", v)),
        }
    }

    /// A required graph attribute, compiled.
    pub fn subgraph(&self, name: &str) -> Result<Arc<dyn SubgraphRunner>> {
        match self.attr(name) {
            Some(AttrValue::Graph(g)) => (self.compile)(g).map_err(|e| e.context(format!("{} subgraph '{name}'", self.node.describe()))),
            Some(v) => Err(attr_type_err(self.node, name, "a graph", v)),
            None => Err(self.invalid(format!("required attribute '{name}' is missing"))),
        }
    }

    /// A dtype attribute (e.g. Cast's `to`).
    pub fn attr_dtype(&self, name: &str) -> Result<Option<DType>> {
        match self.attr_opt_i(name)? {
            None => Ok(None),
            Some(c) => DType::from_code(c as i32).map(Some).map_err(|e| e.context(self.node.describe())),
        }
    }

    /// An `InvalidModel` error naming this node.
    pub fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::InvalidModel(format!("{}: {msg}", self.node.describe()))
    }

    /// Number of inputs (including omitted optional ones in the middle).
    pub fn n_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    /// Whether input `i` is present.
    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(|s| !s.is_empty())
    }
}

/// Builds an operator for a node.
pub type BuildFn = fn(&BuildContext) -> Result<Box<dyn Op>>;

/// The operator table: (domain, op_type) -> builder. Domain "" is `ai.onnx`.
#[derive(Default)]
pub struct Registry {
    ops: HashMap<(String, String), BuildFn>,
}

impl Registry {
    /// Register an operator of the default domain.
    pub fn add(&mut self, op_type: &str, build: BuildFn) {
        self.ops.insert((String::new(), op_type.to_string()), build);
    }

    /// Register an operator of another domain.
    pub fn add_domain(&mut self, domain: &str, op_type: &str, build: BuildFn) {
        self.ops.insert((normalize_domain(domain).to_string(), op_type.to_string()), build);
    }

    /// The builder for an operator, if supported.
    pub fn get(&self, domain: &str, op_type: &str) -> Option<BuildFn> {
        self.ops.get(&(normalize_domain(domain).to_string(), op_type.to_string())).copied()
    }

    /// Every registered (domain, op_type), sorted.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.ops.keys().cloned().collect();
        v.sort();
        v
    }
}

/// "" and "ai.onnx" are the same domain.
pub fn normalize_domain(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

/// The global operator registry.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        #[allow(unused_mut)]
        let mut r = Registry::default();
        register_all(&mut r);
        r
    })
}

/// Every family registers its operators here.
fn register_all(r: &mut Registry) {
    math::register(r);
    nn::register(r);
    array::register(r);
    control::register(r);
}

/// The input `i` as a tensor, or an error naming the op and position.
pub fn tensor_in<'a>(inputs: &[Option<&'a Value>], i: usize, op: &str) -> Result<&'a Tensor> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Tensor(t)) => Ok(t),
        Some(v) => Err(Error::InvalidArgument(format!("{op}: input {i} must be a tensor, got {}", v.kind()))),
        None => Err(Error::InvalidArgument(format!("{op}: required input {i} is missing"))),
    }
}

/// The optional input `i` as a tensor (None when omitted).
pub fn opt_tensor_in<'a>(inputs: &[Option<&'a Value>], i: usize, op: &str) -> Result<Option<&'a Tensor>> {
    match inputs.get(i).copied().flatten() {
        Some(Value::Tensor(t)) => Ok(Some(t)),
        Some(v) => Err(Error::InvalidArgument(format!("{op}: input {i} must be a tensor, got {}", v.kind()))),
        None => Ok(None),
    }
}
