//! Building the validated IR from decoded ONNX messages.
//!
//! Checks done here (each error names the node, value or field at fault):
//! every node input resolves (graph input, initializer, earlier output, or an outer-scope name
//! inside subgraphs); no value is produced twice; no cycles — nodes are put in topological order
//! (ONNX requires it; we sort rather than reject merely unordered graphs); every node's domain
//! has an opset import; attribute types are known.

use super::ir::{AttrValue, Dim, Function, Graph, Model, Node, TypeInfo, ValueInfo};
use crate::error::{Error, Result};
use crate::onnx::proto::{self, attribute_type as at, DimValue, TypeValue};
use crate::onnx::TensorLoader;
use crate::tensor::{DType, Tensor};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The one tensor loader of a model: external data files are mapped once for the whole model,
/// and the pages of mapped files copied from are released when all tensors are loaded.
type Loader = RefCell<TensorLoader>;

/// Oldest and newest IR versions accepted.
pub const MIN_IR_VERSION: i64 = 3;
pub const MAX_IR_VERSION: i64 = 14;

/// Build and validate a model from its decoded protobuf, which the model keeps (for saving).
///
/// Tensors share their bytes with the protobuf rather than copying them: aligned `raw_data` and
/// external data borrow from the mapped files, typed fields (`float_data`...) from the kept
/// protobuf. Pages of mapped files that had to be copied from are released once all tensors are
/// loaded (see [`TensorLoader::release_pages`]).
pub fn model_from_proto(m: proto::ModelProto) -> Result<Model> {
    if m.ir_version < MIN_IR_VERSION {
        return Err(Error::InvalidModel(format!(
            "ir_version {} is not supported (models need IR version {MIN_IR_VERSION} or newer; re-export with a recent exporter)",
            m.ir_version
        )));
    }
    if m.ir_version > MAX_IR_VERSION {
        return Err(Error::VersionMismatch(format!(
            "ir_version {} is newer than this library supports ({MAX_IR_VERSION})",
            m.ir_version
        )));
    }
    let mut opsets: Vec<(String, i64)> = Vec::new();
    for o in &m.opset_import {
        let d = crate::ops::normalize_domain(&o.domain).to_string();
        if o.version <= 0 {
            return Err(Error::InvalidModel(format!("opset_import for domain '{}' has version {}", o.domain, o.version)));
        }
        if opsets.iter().any(|(x, _)| *x == d) {
            return Err(Error::InvalidModel(format!("opset_import lists domain '{}' twice", o.domain)));
        }
        opsets.push((d, o.version));
    }
    let proto = Arc::new(m);
    let m = &*proto;
    let gp = m.graph.as_ref().ok_or_else(|| Error::InvalidModel("model has no graph".into()))?;
    // SAFETY: every TensorProto loaded below is part of `m`, which `proto` owns; it is never
    // modified afterwards (it is only reachable through `Arc`s, and the tensors borrowing from
    // it hold one, so `Arc::get_mut` cannot succeed while they live).
    let loader = RefCell::new(unsafe { TensorLoader::with_owner(m.base_dir.as_deref(), proto.clone()) });
    let functions = m
        .functions
        .iter()
        .map(|f| function_from_proto(f, &loader))
        .collect::<Result<Vec<_>>>()?;
    let mut domains: HashSet<String> = opsets.iter().map(|(d, _)| d.clone()).collect();
    // Function domains are callable as operators from the graph.
    let fn_domains: HashSet<&str> = functions.iter().map(|f| f.domain.as_str()).collect();
    domains.extend(fn_domains.iter().map(|d| d.to_string()));
    let graph = graph_in(gp, &loader, &HashSet::new(), Some(&domains))?;
    loader.borrow_mut().release_pages();
    Ok(Model {
        ir_version: m.ir_version,
        opsets,
        producer_name: m.producer_name.clone(),
        producer_version: m.producer_version.clone(),
        domain: m.domain.clone(),
        model_version: m.model_version,
        doc_string: m.doc_string.clone(),
        metadata: m.metadata_props.iter().map(|e| (e.key.clone(), e.value.clone())).collect(),
        graph: Arc::new(graph),
        functions,
        proto,
    })
}

fn function_from_proto(f: &proto::FunctionProto, loader: &Loader) -> Result<Function> {
    let ctx = || format!("function '{}' (domain '{}')", f.name, f.domain);
    let nodes = f
        .node
        .iter()
        .map(|n| node_from_proto(n, loader, &HashSet::new(), None))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.context(ctx()))?;
    let defaults = f
        .attribute_proto
        .iter()
        .map(|a| Ok((a.name.clone(), attr_from_proto(a, loader, &HashSet::new(), None)?)))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.context(ctx()))?;
    let mut attributes = f.attribute.clone();
    attributes.extend(f.attribute_proto.iter().map(|a| a.name.clone()));
    Ok(Function {
        name: f.name.clone(),
        domain: f.domain.clone(),
        overload: f.overload.clone(),
        inputs: f.input.clone(),
        outputs: f.output.clone(),
        attributes,
        attribute_defaults: defaults,
        nodes,
        opsets: f.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect(),
    })
}

/// Convert a type. Unknown element types are an error naming `what`.
pub fn type_from_proto(t: &proto::TypeProto, what: &str) -> Result<TypeInfo> {
    let tensor = |tt: &proto::TensorTypeProto| -> Result<(Option<DType>, Option<Vec<Dim>>)> {
        let dtype = if tt.elem_type == 0 {
            None
        } else {
            Some(DType::from_code(tt.elem_type).map_err(|e| e.context(what))?)
        };
        let shape = tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    DimValue::Value(v) if *v >= 0 => Dim::Known(*v as usize),
                    DimValue::Param(p) if !p.is_empty() => Dim::Symbol(p.clone()),
                    _ => Dim::Unknown,
                })
                .collect()
        });
        Ok((dtype, shape))
    };
    Ok(match &t.value {
        None => TypeInfo::Unknown,
        Some(TypeValue::Tensor(tt)) => {
            let (dtype, shape) = tensor(tt)?;
            TypeInfo::Tensor { dtype, shape }
        }
        Some(TypeValue::SparseTensor(tt)) => {
            let (dtype, shape) = tensor(tt)?;
            TypeInfo::SparseTensor { dtype, shape }
        }
        Some(TypeValue::Sequence(s)) => TypeInfo::Sequence(Box::new(match &s.elem_type {
            Some(e) => type_from_proto(e, what)?,
            None => TypeInfo::Unknown,
        })),
        Some(TypeValue::Optional(s)) => TypeInfo::Optional(Box::new(match &s.elem_type {
            Some(e) => type_from_proto(e, what)?,
            None => TypeInfo::Unknown,
        })),
        Some(TypeValue::Map(m)) => TypeInfo::Map(
            DType::from_code(m.key_type).map_err(|e| e.context(what))?,
            Box::new(match &m.value_type {
                Some(e) => type_from_proto(e, what)?,
                None => TypeInfo::Unknown,
            }),
        ),
        Some(TypeValue::Opaque(_)) => TypeInfo::Unknown,
    })
}

fn value_info(v: &proto::ValueInfoProto, role: &str) -> Result<ValueInfo> {
    let what = format!("{role} '{}'", v.name);
    Ok(ValueInfo {
        name: v.name.clone(),
        ty: match &v.r#type {
            Some(t) => type_from_proto(t, &what)?,
            None => TypeInfo::Unknown,
        },
        doc_string: v.doc_string.clone(),
    })
}

/// Densify a sparse tensor (values + indices, linear or coordinate form).
pub fn sparse_to_dense(s: &proto::SparseTensorProto, base: Option<&Path>) -> Result<Tensor> {
    crate::onnx::sparse_tensor_to_dense(s, base)
}

fn attr_from_proto(
    a: &proto::AttributeProto,
    loader: &Loader,
    outer: &HashSet<String>,
    domains: Option<&HashSet<String>>,
) -> Result<AttrValue> {
    if !a.ref_attr_name.is_empty() {
        return Ok(AttrValue::Ref(a.ref_attr_name.clone()));
    }
    let what = || format!("attribute '{}'", a.name);
    let sub = |g: &proto::GraphProto| -> Result<Arc<Graph>> {
        Ok(Arc::new(graph_in(g, loader, outer, domains).map_err(|e| e.context(format!("subgraph of {}", what())))?))
    };
    let tensor = |t: &proto::TensorProto| loader.borrow_mut().load(t).map_err(|e| e.context(what()));
    let sparse = |s: &proto::SparseTensorProto| loader.borrow_mut().load_sparse(s);
    Ok(match a.r#type {
        at::FLOAT => AttrValue::Float(a.f),
        at::INT => AttrValue::Int(a.i),
        at::STRING => AttrValue::String(a.s.clone()),
        at::TENSOR => AttrValue::Tensor(tensor(
            a.t.as_deref().ok_or_else(|| Error::InvalidModel(format!("{} of type TENSOR has no tensor", what())))?,
        )?),
        at::GRAPH => AttrValue::Graph(sub(
            a.g.as_deref().ok_or_else(|| Error::InvalidModel(format!("{} of type GRAPH has no graph", what())))?,
        )?),
        at::SPARSE_TENSOR => AttrValue::SparseTensor(
            sparse(
                a.sparse_tensor
                    .as_deref()
                    .ok_or_else(|| Error::InvalidModel(format!("{} of type SPARSE_TENSOR is empty", what())))?,
            )
            .map_err(|e| e.context(what()))?,
        ),
        at::TYPE_PROTO => AttrValue::Type(type_from_proto(
            a.tp.as_deref().ok_or_else(|| Error::InvalidModel(format!("{} of type TYPE_PROTO is empty", what())))?,
            &what(),
        )?),
        at::FLOATS => AttrValue::Floats(a.floats.clone()),
        at::INTS => AttrValue::Ints(a.ints.clone()),
        at::STRINGS => AttrValue::Strings(a.strings.clone()),
        at::TENSORS => AttrValue::Tensors(a.tensors.iter().map(tensor).collect::<Result<_>>()?),
        at::GRAPHS => AttrValue::Graphs(a.graphs.iter().map(sub).collect::<Result<_>>()?),
        at::SPARSE_TENSORS => AttrValue::SparseTensors(
            a.sparse_tensors.iter().map(sparse).collect::<Result<_>>()?,
        ),
        at::TYPE_PROTOS => AttrValue::Types(
            a.type_protos.iter().map(|t| type_from_proto(t, &what())).collect::<Result<_>>()?,
        ),
        at::UNDEFINED => infer_untyped_attr(a).ok_or_else(|| Error::InvalidModel(format!("{} has no type", what())))?,
        t => return Err(Error::InvalidModel(format!("{} has unknown type code {t}", what()))),
    })
}

/// Very old models omit `type`; infer it from the one field that is set.
fn infer_untyped_attr(a: &proto::AttributeProto) -> Option<AttrValue> {
    if !a.ints.is_empty() {
        Some(AttrValue::Ints(a.ints.clone()))
    } else if !a.floats.is_empty() {
        Some(AttrValue::Floats(a.floats.clone()))
    } else if !a.strings.is_empty() {
        Some(AttrValue::Strings(a.strings.clone()))
    } else if !a.s.is_empty() {
        Some(AttrValue::String(a.s.clone()))
    } else if a.f != 0.0 {
        Some(AttrValue::Float(a.f))
    } else {
        Some(AttrValue::Int(a.i))
    }
}

fn node_from_proto(
    n: &proto::NodeProto,
    loader: &Loader,
    outer: &HashSet<String>,
    domains: Option<&HashSet<String>>,
) -> Result<Node> {
    let mut node = Node {
        name: n.name.clone(),
        op_type: n.op_type.clone(),
        domain: crate::ops::normalize_domain(&n.domain).to_string(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attrs: Vec::new(),
        doc_string: n.doc_string.clone(),
    };
    if node.op_type.is_empty() {
        return Err(Error::InvalidModel(format!("{} has an empty op_type", node.describe())));
    }
    if let Some(d) = domains {
        if !d.contains(&node.domain) {
            return Err(Error::InvalidModel(format!(
                "{} uses domain '{}', which the model does not import (opset_import)",
                node.describe(),
                n.domain
            )));
        }
    }
    // Names visible to this node's subgraphs: the outer scope plus everything defined so far
    // is handled by the graph-level pass; here subgraphs see `outer` (refined in validate).
    for a in &n.attribute {
        let v = attr_from_proto(a, loader, outer, domains).map_err(|e| e.context(node.describe()))?;
        node.attrs.push((a.name.clone(), v));
    }
    Ok(node)
}

/// Convert and validate a graph. `outer` holds names visible from enclosing graphs; external
/// data is resolved against `base`.
pub fn graph_from_proto(
    g: &proto::GraphProto,
    base: Option<&Path>,
    outer: &HashSet<String>,
    domains: Option<&HashSet<String>>,
) -> Result<Graph> {
    graph_in(g, &RefCell::new(TensorLoader::new(base)), outer, domains)
}

/// [`graph_from_proto`], loading tensors with `loader`.
fn graph_in(
    g: &proto::GraphProto,
    loader: &Loader,
    outer: &HashSet<String>,
    domains: Option<&HashSet<String>>,
) -> Result<Graph> {
    let mut initializers = Vec::with_capacity(g.initializer.len());
    for t in &g.initializer {
        if t.name.is_empty() {
            return Err(Error::InvalidModel("an initializer has no name".into()));
        }
        let v = loader.borrow_mut().load(t).map_err(|e| e.context(format!("initializer '{}'", t.name)))?;
        initializers.push((t.name.clone(), v));
    }
    for s in &g.sparse_initializer {
        let name = s.values.as_ref().map(|v| v.name.clone()).unwrap_or_default();
        let v = loader.borrow_mut().load_sparse(s).map_err(|e| e.context(format!("sparse initializer '{name}'")))?;
        initializers.push((name, v));
    }
    let inputs = g.input.iter().map(|v| value_info(v, "graph input")).collect::<Result<Vec<_>>>()?;
    let outputs = g.output.iter().map(|v| value_info(v, "graph output")).collect::<Result<Vec<_>>>()?;
    let value_infos = g.value_info.iter().map(|v| value_info(v, "value_info")).collect::<Result<Vec<_>>>()?;

    // Names defined in this graph before any node runs.
    let mut defined: HashSet<String> = HashSet::new();
    for v in &inputs {
        defined.insert(v.name.clone());
    }
    for (n, _) in &initializers {
        defined.insert(n.clone());
    }
    // Everything produced in this graph, for subgraph scoping.
    let mut scope: HashSet<String> = outer.clone();
    scope.extend(defined.iter().cloned());
    for n in &g.node {
        scope.extend(n.output.iter().filter(|s| !s.is_empty()).cloned());
    }
    let nodes = g
        .node
        .iter()
        .map(|n| node_from_proto(n, loader, &scope, domains))
        .collect::<Result<Vec<_>>>()?;
    let nodes = topo_sort(nodes, &defined, outer)?;
    let graph = Graph {
        name: g.name.clone(),
        doc_string: g.doc_string.clone(),
        nodes,
        inputs,
        outputs,
        initializers,
        value_info: value_infos,
    };
    let produced: HashSet<&str> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(String::as_str))
        .chain(graph.inputs.iter().map(|v| v.name.as_str()))
        .chain(graph.initializers.iter().map(|(n, _)| n.as_str()))
        .collect();
    for o in &graph.outputs {
        if !produced.contains(o.name.as_str()) && !outer.contains(&o.name) {
            return Err(Error::InvalidModel(format!(
                "graph output '{}' is not produced by any node, input or initializer",
                o.name
            )));
        }
    }
    Ok(graph)
}

/// Order nodes so every input is defined before use; reject undefined inputs, values produced
/// twice, and cycles (naming the nodes involved).
fn topo_sort(nodes: Vec<Node>, defined: &HashSet<String>, outer: &HashSet<String>) -> Result<Vec<Node>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|s| !s.is_empty()) {
            if defined.contains(o) {
                return Err(Error::InvalidModel(format!(
                    "{} writes '{o}', which is already a graph input or initializer",
                    n.describe()
                )));
            }
            if let Some(j) = producer.insert(o, i) {
                return Err(Error::InvalidModel(format!(
                    "value '{o}' is produced twice: by {} and by {}",
                    nodes[j].describe(),
                    n.describe()
                )));
            }
        }
    }
    // Dependencies: explicit inputs plus names captured by subgraphs.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut uses: Vec<String> = n.inputs.iter().filter(|s| !s.is_empty()).cloned().collect();
        uses.extend(crate::executor::plan::node_captures(n));
        for u in uses {
            if let Some(&p) = producer.get(u.as_str()) {
                deps[i].push(p);
            } else if !defined.contains(&u) && !outer.contains(&u) {
                return Err(Error::InvalidModel(format!(
                    "{} uses input '{u}', which is not a graph input, initializer, node output or outer-scope value",
                    n.describe()
                )));
            }
        }
    }
    // Kahn's algorithm, stable (keeps the file order when it is valid).
    let mut indeg: Vec<usize> = deps.iter().map(|d| d.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<String> = (0..nodes.len()).filter(|i| indeg[*i] > 0).take(5).map(|i| nodes[i].describe()).collect();
        return Err(Error::InvalidModel(format!("the graph has a cycle through {}", stuck.join(", "))));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
