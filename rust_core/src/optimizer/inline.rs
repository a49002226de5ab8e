//! Inlining of model-local functions (`FunctionProto`), which the dynamo exporter emits.

use crate::error::{Error, Result};
use crate::graph::ir::{AttrValue, Function, Graph, Node};
use std::collections::HashMap;
use std::sync::Arc;

/// Deepest nesting of function calls we expand (guards recursive definitions).
const MAX_DEPTH: usize = 32;

/// A copy of `graph` where every call of a function in `functions` is replaced by its body,
/// also inside subgraphs.
pub fn inline_functions(graph: &Graph, functions: &[Function]) -> Result<Graph> {
    let table: HashMap<(&str, &str, &str), &Function> = functions
        .iter()
        .map(|f| ((f.domain.as_str(), f.name.as_str(), f.overload.as_str()), f))
        .collect();
    let mut counter = 0usize;
    let mut g = graph.clone();
    g.nodes = expand(&graph.nodes, &table, &mut counter, 0)?;
    Ok(g)
}

fn expand(
    nodes: &[Node],
    table: &HashMap<(&str, &str, &str), &Function>,
    counter: &mut usize,
    depth: usize,
) -> Result<Vec<Node>> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut node = node.clone();
        // Subgraphs first.
        for (_, a) in node.attrs.iter_mut() {
            match a {
                AttrValue::Graph(g) => *g = Arc::new(expand_graph(g, table, counter, depth)?),
                AttrValue::Graphs(gs) => {
                    for g in gs.iter_mut() {
                        *g = Arc::new(expand_graph(g, table, counter, depth)?);
                    }
                }
                _ => {}
            }
        }
        let key = (node.domain.as_str(), node.op_type.as_str(), "");
        let f = table.get(&key).copied();
        match f {
            None => out.push(node),
            Some(f) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::InvalidModel(format!(
                        "function '{}' nests more than {MAX_DEPTH} calls deep (recursive definition?)",
                        f.name
                    )));
                }
                *counter += 1;
                let body = instantiate(f, &node, *counter)?;
                out.extend(expand(&body, table, counter, depth + 1)?);
            }
        }
    }
    Ok(out)
}

fn expand_graph(g: &Graph, table: &HashMap<(&str, &str, &str), &Function>, counter: &mut usize, depth: usize) -> Result<Graph> {
    let mut g = g.clone();
    g.nodes = expand(&g.nodes, table, counter, depth)?;
    Ok(g)
}

/// The body of `f` for one call: names renamed, attribute references resolved.
fn instantiate(f: &Function, call: &Node, id: usize) -> Result<Vec<Node>> {
    if call.inputs.len() > f.inputs.len() || call.outputs.len() > f.outputs.len() {
        return Err(Error::InvalidModel(format!(
            "{} calls function '{}' with {} inputs/{} outputs; it declares {}/{}",
            call.describe(),
            f.name,
            call.inputs.len(),
            call.outputs.len(),
            f.inputs.len(),
            f.outputs.len()
        )));
    }
    let mut rename: HashMap<&str, String> = HashMap::new();
    for (i, formal) in f.inputs.iter().enumerate() {
        rename.insert(formal, call.inputs.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in f.outputs.iter().enumerate() {
        rename.insert(formal, call.outputs.get(i).cloned().unwrap_or_default());
    }
    let prefix = format!("{}__{}_{id}", if call.name.is_empty() { &f.name } else { &call.name }, f.name);
    let map = |name: &str| -> String {
        if name.is_empty() {
            return String::new();
        }
        rename.get(name).cloned().unwrap_or_else(|| format!("{prefix}/{name}"))
    };
    let mut body = Vec::with_capacity(f.nodes.len());
    for n in &f.nodes {
        let mut m = n.clone();
        m.name = format!("{prefix}/{}", n.name);
        m.inputs = n.inputs.iter().map(|s| map(s)).collect();
        m.outputs = n.outputs.iter().map(|s| map(s)).collect();
        let mut attrs = Vec::with_capacity(n.attrs.len());
        for (name, v) in &n.attrs {
            match v {
                AttrValue::Ref(r) => {
                    let found = call
                        .attrs
                        .iter()
                        .find(|(k, _)| k == r)
                        .or_else(|| f.attribute_defaults.iter().find(|(k, _)| k == r))
                        .map(|(_, v)| v.clone());
                    if let Some(v) = found {
                        attrs.push((name.clone(), v));
                    }
                }
                other => attrs.push((name.clone(), other.clone())),
            }
        }
        m.attrs = attrs;
        body.push(m);
    }
    Ok(body)
}
