//! The in-memory model: a validated graph of nodes, with typed values and symbolic dims.

use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed extent.
    Known(usize),
    /// A named symbol (`dim_param`), shared across the whole graph.
    Symbol(String),
    /// Neither a value nor a name.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The declared type of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeInfo {
    /// A tensor; dtype and shape may be unknown.
    Tensor { dtype: Option<DType>, shape: Option<Vec<Dim>> },
    /// A sparse tensor.
    SparseTensor { dtype: Option<DType>, shape: Option<Vec<Dim>> },
    /// A sequence of values of one type.
    Sequence(Box<TypeInfo>),
    /// A map from a key element type to values.
    Map(DType, Box<TypeInfo>),
    /// An optional value.
    Optional(Box<TypeInfo>),
    /// No type information.
    Unknown,
}

impl TypeInfo {
    /// The element type, for tensors.
    pub fn tensor_dtype(&self) -> Option<DType> {
        match self {
            TypeInfo::Tensor { dtype, .. } | TypeInfo::SparseTensor { dtype, .. } => *dtype,
            _ => None,
        }
    }

    /// The declared shape, for tensors.
    pub fn tensor_shape(&self) -> Option<&[Dim]> {
        match self {
            TypeInfo::Tensor { shape, .. } | TypeInfo::SparseTensor { shape, .. } => shape.as_deref(),
            _ => None,
        }
    }

    /// The ONNX type string, as onnxruntime reports it: `tensor(float)`, `seq(tensor(int64))`.
    pub fn type_string(&self) -> String {
        match self {
            TypeInfo::Tensor { dtype, .. } => format!("tensor({})", dtype.map(|d| d.name()).unwrap_or("undefined")),
            TypeInfo::SparseTensor { dtype, .. } => {
                format!("sparse_tensor({})", dtype.map(|d| d.name()).unwrap_or("undefined"))
            }
            TypeInfo::Sequence(t) => format!("seq({})", t.type_string()),
            TypeInfo::Map(k, v) => format!("map({},{})", k.name(), v.type_string()),
            TypeInfo::Optional(t) => format!("optional({})", t.type_string()),
            TypeInfo::Unknown => "unknown".into(),
        }
    }
}

/// A named, typed graph input, output or intermediate.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub ty: TypeInfo,
    pub doc_string: String,
}

/// The value of a node attribute.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Arc<Graph>),
    SparseTensor(Tensor),
    Type(TypeInfo),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Arc<Graph>>),
    SparseTensors(Vec<Tensor>),
    Types(Vec<TypeInfo>),
    /// A reference to an attribute of the enclosing function (`ref_attr_name`), resolved when
    /// the function is inlined.
    Ref(String),
}

impl AttrValue {
    /// ONNX attribute type name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Float(_) => "float",
            AttrValue::Int(_) => "int",
            AttrValue::String(_) => "string",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Graph(_) => "graph",
            AttrValue::SparseTensor(_) => "sparse_tensor",
            AttrValue::Type(_) => "type_proto",
            AttrValue::Floats(_) => "floats",
            AttrValue::Ints(_) => "ints",
            AttrValue::Strings(_) => "strings",
            AttrValue::Tensors(_) => "tensors",
            AttrValue::Graphs(_) => "graphs",
            AttrValue::SparseTensors(_) => "sparse_tensors",
            AttrValue::Types(_) => "type_protos",
            AttrValue::Ref(_) => "ref_attr",
        }
    }
}

/// A node: one operator application.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    /// Operator domain; "" is the default ONNX domain (`ai.onnx`).
    pub domain: String,
    /// Input value names; "" marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names; "" marks an omitted optional output.
    pub outputs: Vec<String>,
    pub attrs: Vec<(String, AttrValue)>,
    pub doc_string: String,
}

impl Node {
    /// A default-domain node without a name, for tests.
    #[cfg(test)]
    pub fn for_test(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> Node {
        Node {
            name: String::new(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            doc_string: String::new(),
        }
    }

    /// A display name for messages: `Conv node 'conv1'` (or its first output when unnamed).
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            format!("{} node (output '{}')", self.op_type, self.outputs.first().map(String::as_str).unwrap_or(""))
        } else {
            format!("{} node '{}'", self.op_type, self.name)
        }
    }

    /// The attribute named `name`.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The integer attribute `name` (None when absent or of another type).
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attr(name) {
            Some(AttrValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// The integer-list attribute `name` (None when absent or of another type).
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name) {
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// The string attribute `name`, or `default` when absent or of another type.
    pub fn attr_str(&self, name: &str, default: &str) -> String {
        match self.attr(name) {
            Some(AttrValue::String(s)) => String::from_utf8_lossy(s).into_owned(),
            _ => default.to_string(),
        }
    }
}

/// A graph: nodes in topological order plus its interface.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub name: String,
    pub doc_string: String,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Constant tensors (initializers), by name. Initializers that are also listed in `inputs`
    /// are defaults that callers may override.
    pub initializers: Vec<(String, Tensor)>,
    pub value_info: Vec<ValueInfo>,
}

impl Graph {
    /// Inputs the caller must or may feed (graph inputs that are not initializers).
    pub fn real_inputs(&self) -> Vec<&ValueInfo> {
        let init: std::collections::HashSet<&str> = self.initializers.iter().map(|(n, _)| n.as_str()).collect();
        self.inputs.iter().filter(|i| !init.contains(i.name.as_str())).collect()
    }

    /// Names used inside this graph (recursively in subgraphs) but defined in none of them:
    /// the outer-scope values the graph captures.
    pub fn captured_names(&self) -> Vec<String> {
        let mut defined: std::collections::HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        defined.extend(self.initializers.iter().map(|(n, _)| n.as_str()));
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            let mut uses: Vec<String> = n.inputs.iter().filter(|s| !s.is_empty()).cloned().collect();
            for (_, a) in &n.attrs {
                match a {
                    AttrValue::Graph(g) => uses.extend(g.captured_names()),
                    AttrValue::Graphs(gs) => gs.iter().for_each(|g| uses.extend(g.captured_names())),
                    _ => {}
                }
            }
            for u in uses {
                if !defined.contains(u.as_str()) && seen.insert(u.clone()) {
                    out.push(u);
                }
            }
            defined.extend(n.outputs.iter().filter(|s| !s.is_empty()).map(String::as_str));
        }
        for o in &self.outputs {
            if !defined.contains(o.name.as_str()) && seen.insert(o.name.clone()) {
                out.push(o.name.clone());
            }
        }
        out
    }
}

/// A model-local function (`FunctionProto`), inlined at session creation.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub domain: String,
    pub overload: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Attribute names the function accepts.
    pub attributes: Vec<String>,
    /// Attributes with default values.
    pub attribute_defaults: Vec<(String, AttrValue)>,
    pub nodes: Vec<Node>,
    pub opsets: Vec<(String, i64)>,
}

/// A loaded, validated model.
#[derive(Debug, Clone)]
pub struct Model {
    pub ir_version: i64,
    /// (domain, version) pairs; "" is the default domain.
    pub opsets: Vec<(String, i64)>,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata: Vec<(String, String)>,
    pub graph: Arc<Graph>,
    pub functions: Vec<Function>,
    /// The decoded protobuf, kept for saving (initializer bytes are shared, not copied).
    pub proto: Arc<crate::onnx::proto::ModelProto>,
}

impl Model {
    /// The opset version imported for `domain` ("" and "ai.onnx" are the same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| if d == "ai.onnx" { String::new() } else { d.to_string() };
        let want = norm(domain);
        self.opsets.iter().find(|(d, _)| norm(d) == want).map(|(_, v)| *v)
    }

    /// Count of nodes per op type, over the main graph and every subgraph.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        fn walk(g: &Graph, h: &mut HashMap<String, usize>) {
            for n in &g.nodes {
                *h.entry(n.op_type.clone()).or_default() += 1;
                for (_, a) in &n.attrs {
                    match a {
                        AttrValue::Graph(s) => walk(s, h),
                        AttrValue::Graphs(ss) => ss.iter().for_each(|s| walk(s, h)),
                        _ => {}
                    }
                }
            }
        }
        let mut h = HashMap::new();
        walk(&self.graph, &mut h);
        let mut v: Vec<_> = h.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Number and total bytes of the main graph's initializers.
    pub fn initializer_stats(&self) -> (usize, usize) {
        let n = self.graph.initializers.len();
        let b = self.graph.initializers.iter().map(|(_, t)| t.nbytes()).sum();
        (n, b)
    }
}
