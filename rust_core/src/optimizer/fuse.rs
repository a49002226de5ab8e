//! Operator fusion: a convolution followed by its activation becomes one `FusedConv` node (in
//! the engine's private domain [`DOMAIN`]) whose kernel applies the activation to each output
//! plane while it is still in cache, saving a full pass over memory and an intermediate buffer.
//!
//! Fused patterns (the convolution's output must have no other reader and not be a graph
//! output): `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `HardSigmoid`, `HardSwish`, `Clip` with
//! constant bounds, and the two-node SiLU/Swish `Mul(Y, Sigmoid(Y))` that PyTorch and tf2onnx
//! emit for `x * sigmoid(x)` (the `Sigmoid` output must feed only that `Mul`).

use crate::graph::ir::{AttrValue, Graph, Node};
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;

/// The engine's private operator domain (never written to saved models).
pub const DOMAIN: &str = "pyml_interop";

/// Activation name and parameters as stored on a fused node: `activation` (string) and
/// `activation_params` (floats), the same convention onnxruntime's fused nodes use.
fn act_attrs(name: &str, params: &[f32]) -> Vec<(String, AttrValue)> {
    vec![
        ("activation".to_string(), AttrValue::String(name.as_bytes().to_vec())),
        ("activation_params".to_string(), AttrValue::Floats(params.to_vec())),
    ]
}

/// A scalar float constant (initializer or `Constant` node output) named `name`.
fn const_scalar(name: &str, inits: &HashMap<&str, &Tensor>, consts: &HashMap<&str, &Tensor>) -> Option<f32> {
    let t = inits.get(name).or_else(|| consts.get(name))?;
    if t.len() != 1 || t.dtype() != DType::Float32 {
        return None;
    }
    t.as_slice::<f32>().ok().map(|v| v[0])
}

fn attr_f(n: &Node, name: &str, default: f32) -> f32 {
    match n.attr(name) {
        Some(AttrValue::Float(v)) => *v,
        _ => default,
    }
}

/// The fused activation equivalent to single-input node `n` applied to the conv output.
fn single_activation(
    n: &Node,
    opset: i64,
    inits: &HashMap<&str, &Tensor>,
    consts: &HashMap<&str, &Tensor>,
) -> Option<Vec<(String, AttrValue)>> {
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return None;
    }
    Some(match n.op_type.as_str() {
        "Relu" => act_attrs("Relu", &[]),
        "Sigmoid" => act_attrs("Sigmoid", &[]),
        "Tanh" => act_attrs("Tanh", &[]),
        "HardSwish" => act_attrs("HardSwish", &[]),
        "LeakyRelu" => act_attrs("LeakyRelu", &[attr_f(n, "alpha", 0.01)]),
        "HardSigmoid" => act_attrs("HardSigmoid", &[attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5)]),
        "Clip" => {
            let (lo, hi) = if opset < 11 {
                (attr_f(n, "min", f32::MIN), attr_f(n, "max", f32::MAX))
            } else {
                let bound = |i: usize, default: f32| -> Option<f32> {
                    match n.inputs.get(i) {
                        None => Some(default),
                        Some(s) if s.is_empty() => Some(default),
                        Some(s) => const_scalar(s, inits, consts),
                    }
                };
                (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
            };
            act_attrs("Clip", &[lo, hi])
        }
        _ => return None,
    })
}

/// Fuse activations into the convolutions of `g` (main graph only; subgraphs are untouched).
/// `opset` is the default-domain opset. Returns the number of fusions made.
pub fn fuse_conv_activations(g: &mut Graph, opset: i64) -> usize {
    // Readers of each value: node inputs, subgraph captures and graph outputs.
    let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, n) in g.nodes.iter().enumerate() {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            readers.entry(i.clone()).or_default().push(k);
        }
        for c in crate::executor::plan::node_captures(n) {
            readers.entry(c).or_default().push(usize::MAX);
        }
    }
    for o in &g.outputs {
        readers.entry(o.name.clone()).or_default().push(usize::MAX);
    }
    let inits: HashMap<&str, &Tensor> = g.initializers.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let consts: HashMap<&str, &Tensor> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Constant" && n.domain.is_empty())
        .filter_map(|n| match n.attr("value") {
            Some(AttrValue::Tensor(t)) => Some((n.outputs.first()?.as_str(), t)),
            _ => None,
        })
        .collect();
    let only_reader = |name: &str| -> Option<usize> {
        match readers.get(name).map(|v| v.as_slice()) {
            Some([k]) if *k != usize::MAX => Some(*k),
            _ => None,
        }
    };
    // (conv index, removed node indices, new output name, attrs)
    let mut plans: Vec<(usize, Vec<usize>, String, Vec<(String, AttrValue)>)> = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        if n.op_type != "Conv" || !(n.domain.is_empty() || n.domain == "ai.onnx") || n.outputs.len() != 1 {
            continue;
        }
        let y = &n.outputs[0];
        if let Some(j) = only_reader(y) {
            let a = &g.nodes[j];
            if a.inputs.first() == Some(y) && a.outputs.len() == 1 {
                if let Some(attrs) = single_activation(a, opset, &inits, &consts) {
                    plans.push((k, vec![j], a.outputs[0].clone(), attrs));
                }
            }
            continue;
        }
        // SiLU: Y read by exactly Sigmoid(Y) -> S and Mul(Y, S).
        let rs = match readers.get(y.as_str()) {
            Some(v) if v.len() == 2 && !v.contains(&usize::MAX) => v.clone(),
            _ => continue,
        };
        let (sig, mul) = if g.nodes[rs[0]].op_type == "Sigmoid" { (rs[0], rs[1]) } else { (rs[1], rs[0]) };
        let (s, m) = (&g.nodes[sig], &g.nodes[mul]);
        if s.op_type != "Sigmoid" || !s.domain.is_empty() || m.op_type != "Mul" || !m.domain.is_empty() {
            continue;
        }
        let sname = &s.outputs[0];
        let pair_ok = m.inputs.len() == 2
            && ((m.inputs[0] == *y && m.inputs[1] == *sname) || (m.inputs[1] == *y && m.inputs[0] == *sname));
        if pair_ok && only_reader(sname) == Some(mul) {
            plans.push((k, vec![sig, mul], m.outputs[0].clone(), act_attrs("Swish", &[1.0])));
        }
    }
    let mut removed = vec![false; g.nodes.len()];
    let count = plans.len();
    for (k, gone, out, attrs) in plans {
        let n = &mut g.nodes[k];
        n.op_type = "FusedConv".into();
        n.domain = DOMAIN.into();
        n.outputs[0] = out;
        n.attrs.extend(attrs);
        for j in gone {
            removed[j] = true;
        }
    }
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ir::{TypeInfo, ValueInfo};

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: format!("{op}_{}", outputs[0]),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: Vec::new(),
            doc_string: String::new(),
        }
    }

    fn vi(name: &str) -> ValueInfo {
        ValueInfo { name: name.into(), ty: TypeInfo::Unknown, doc_string: String::new() }
    }

    fn graph(nodes: Vec<Node>, outputs: &[&str], inits: Vec<(&str, Tensor)>) -> Graph {
        Graph {
            name: "g".into(),
            doc_string: String::new(),
            nodes,
            inputs: vec![vi("x"), vi("w")],
            outputs: outputs.iter().map(|o| vi(o)).collect(),
            initializers: inits.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
            value_info: Vec::new(),
        }
    }

    fn act_of(n: &Node) -> (String, Vec<f32>) {
        let name = match n.attr("activation") {
            Some(AttrValue::String(s)) => String::from_utf8(s.clone()).unwrap(),
            _ => panic!("no activation"),
        };
        let p = match n.attr("activation_params") {
            Some(AttrValue::Floats(p)) => p.clone(),
            _ => panic!("no params"),
        };
        (name, p)
    }

    #[test]
    fn relu_and_silu_are_fused() {
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c1"]),
                node("Relu", &["c1"], &["r1"]),
                node("Conv", &["r1", "w"], &["c2"]),
                node("Sigmoid", &["c2"], &["s2"]),
                node("Mul", &["s2", "c2"], &["y"]),
            ],
            &["y"],
            vec![],
        );
        assert_eq!(fuse_conv_activations(&mut g, 17), 2);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!((g.nodes[0].op_type.as_str(), g.nodes[0].domain.as_str()), ("FusedConv", DOMAIN));
        assert_eq!(g.nodes[0].outputs, vec!["r1".to_string()]);
        assert_eq!(act_of(&g.nodes[0]), ("Relu".into(), vec![]));
        assert_eq!(g.nodes[1].inputs[0], "r1");
        assert_eq!(g.nodes[1].outputs, vec!["y".to_string()]);
        assert_eq!(act_of(&g.nodes[1]), ("Swish".into(), vec![1.0]));
    }

    #[test]
    fn shared_or_exposed_outputs_are_not_fused() {
        // c1 is a graph output; c2 is read by Relu and by Add; s3 (Sigmoid) has a second reader.
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c1"]),
                node("Relu", &["c1"], &["r1"]),
                node("Conv", &["x", "w"], &["c2"]),
                node("Relu", &["c2"], &["r2"]),
                node("Add", &["c2", "r2"], &["a2"]),
                node("Conv", &["x", "w"], &["c3"]),
                node("Sigmoid", &["c3"], &["s3"]),
                node("Mul", &["c3", "s3"], &["m3"]),
                node("Add", &["m3", "s3"], &["y"]),
            ],
            &["c1", "r1", "a2", "y"],
            vec![],
        );
        assert_eq!(fuse_conv_activations(&mut g, 17), 0);
        assert_eq!(g.nodes.len(), 9);
        assert!(g.nodes.iter().all(|n| n.op_type != "FusedConv"));
    }

    #[test]
    fn clip_needs_constant_bounds() {
        let lo = Tensor::scalar(0f32);
        let hi = Tensor::scalar(6f32);
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c1"]),
                node("Clip", &["c1", "lo", "hi"], &["y1"]),
                node("Conv", &["x", "w"], &["c2"]),
                node("Clip", &["c2", "", "hi"], &["y2"]),
                node("Conv", &["x", "w"], &["c3"]),
                node("Clip", &["c3", "x", "hi"], &["y3"]),
            ],
            &["y1", "y2", "y3"],
            vec![("lo", lo), ("hi", hi)],
        );
        assert_eq!(fuse_conv_activations(&mut g, 13), 2);
        assert_eq!(act_of(&g.nodes[0]), ("Clip".into(), vec![0.0, 6.0]));
        assert_eq!(act_of(&g.nodes[1]), ("Clip".into(), vec![f32::NEG_INFINITY, 6.0]));
        assert_eq!(g.nodes[2].op_type, "Conv");
        assert_eq!(g.nodes.len(), 4);
    }
}
