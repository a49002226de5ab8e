//! Operator fusion at session creation.
//!
//! [`fold_conv_affine`]: `Conv` followed by a per-channel constant `Mul` and/or `Add` (how
//! tf2onnx writes an inference BatchNormalization) gets the scale folded into its weights and
//! the shift into its bias. [`fold_pad_into_conv`]: a zero constant `Pad` of the spatial axes in
//! front of a `Conv` becomes the convolution's own padding (tf2onnx's "SAME" strided convs).
//!
//! [`fuse_conv_activations`]: a convolution followed by its activation becomes one `FusedConv` node (in
//! the engine's private domain [`DOMAIN`]) whose kernel applies the activation to each output
//! plane while it is still in cache, saving a full pass over memory and an intermediate buffer.
//!
//! Fused patterns (the convolution's output must have no other reader and not be a graph
//! output): `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `HardSigmoid`, `HardSwish`, `Clip` with
//! constant bounds, the two-node SiLU/Swish `Mul(Y, Sigmoid(Y))` that PyTorch and tf2onnx
//! emit for `x * sigmoid(x)`, and the HardSwish `Mul(Y, HardSigmoid(Y; 1/6, 1/2))` PyTorch
//! emits below opset 14 (the gate's output must feed only that `Mul`).

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

fn is_default_domain(n: &Node) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

/// Readers of each value of `g` (node indices; `usize::MAX` for graph outputs and subgraph
/// captures, which must never be rewritten away).
pub(super) fn readers_of(g: &Graph) -> HashMap<String, Vec<usize>> {
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
    readers
}

/// The node whose first output is each name (one pass, so pattern matchers look producers up
/// in constant time instead of scanning the graph per candidate).
fn first_output_producers(g: &Graph) -> HashMap<&str, usize> {
    g.nodes.iter().enumerate().filter_map(|(k, n)| n.outputs.first().map(|o| (o.as_str(), k))).collect()
}

/// Initializers and `Constant` node outputs of `g`, by name.
pub(super) fn constant_maps(g: &Graph) -> (HashMap<&str, &Tensor>, HashMap<&str, &Tensor>) {
    let inits = g.initializers.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let consts = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Constant" && n.domain.is_empty())
        .filter_map(|n| match n.attr("value") {
            Some(AttrValue::Tensor(t)) => Some((n.outputs.first()?.as_str(), t)),
            _ => None,
        })
        .collect();
    (inits, consts)
}

/// The one node reading `name` (None when it has several readers or is a graph output).
fn sole_reader(readers: &HashMap<String, Vec<usize>>, name: &str) -> Option<usize> {
    match readers.get(name).map(|v| v.as_slice()) {
        Some([k]) if *k != usize::MAX => Some(*k),
        _ => None,
    }
}

/// Remove the nodes marked in `removed` (indices of `g.nodes`).
fn drop_nodes(g: &mut Graph, removed: &[bool]) {
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
}

/// The constant tensor named `name`: an initializer (not overridable by a graph input) or the
/// output of a `Constant` node with a `value` tensor.
fn constant_of(g: &Graph, name: &str) -> Option<Tensor> {
    if g.inputs.iter().any(|i| i.name == name) {
        return None;
    }
    if let Some((_, t)) = g.initializers.iter().find(|(n, _)| n == name) {
        return Some(t.clone());
    }
    g.nodes.iter().find_map(|n| match (n.op_type.as_str(), n.outputs.first()) {
        ("Constant", Some(o)) if o == name && is_default_domain(n) => match n.attr("value") {
            Some(AttrValue::Tensor(t)) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// Per-output-channel values of a constant broadcast against a conv output of rank `rank` with
/// `m` channels: a scalar, or `m` values on axis 1 with every other axis 1. None otherwise.
fn per_channel(t: &Tensor, rank: usize, m: usize) -> Option<Vec<f32>> {
    if t.dtype() != DType::Float32 || t.rank() > rank {
        return None;
    }
    let v = t.as_slice::<f32>().ok()?;
    if v.len() == 1 {
        return Some(vec![v[0]; m]);
    }
    let off = rank - t.rank();
    let ok = v.len() == m
        && t.shape().iter().enumerate().all(|(i, &d)| if i + off == 1 { d == m } else { d == 1 });
    ok.then(|| v.to_vec())
}

/// Fold `Conv -> Mul(per-channel constant)` and `Conv -> Add(per-channel constant)` into the
/// convolution's weights and bias (repeatedly, so BatchNorm's Mul + Add chain folds whole).
/// The convolution's weights (and bias, if any) must be f32 constants with a known shape.
/// Returns the number of nodes folded away.
pub fn fold_conv_affine(g: &mut Graph) -> usize {
    let mut folded = 0;
    let mut fresh = 0usize;
    loop {
        let readers = readers_of(g);
        let mut change: Option<(usize, usize, Tensor, Tensor)> = None;
        for (k, n) in g.nodes.iter().enumerate() {
            if n.op_type != "Conv" || !is_default_domain(n) || n.outputs.len() != 1 || n.inputs.len() < 2 {
                continue;
            }
            let y = &n.outputs[0];
            let j = match readers.get(y).map(|v| v.as_slice()) {
                Some([j]) if *j != usize::MAX => *j,
                _ => continue,
            };
            let op = &g.nodes[j];
            if !is_default_domain(op) || !(op.op_type == "Mul" || op.op_type == "Add") || op.inputs.len() != 2 {
                continue;
            }
            let other = if op.inputs[0] == *y { &op.inputs[1] } else { &op.inputs[0] };
            if other == y {
                continue;
            }
            let (Some(w), Some(c)) = (constant_of(g, &n.inputs[1]), constant_of(g, other)) else { continue };
            if w.dtype() != DType::Float32 || w.rank() < 3 {
                continue;
            }
            let m = w.shape()[0];
            let Some(cv) = per_channel(&c, w.rank(), m) else { continue };
            let bias = match n.inputs.get(2).filter(|b| !b.is_empty()) {
                Some(b) => match constant_of(g, b) {
                    Some(t) if t.dtype() == DType::Float32 && t.len() == m => t.as_slice::<f32>().unwrap_or(&[]).to_vec(),
                    _ => continue,
                },
                None => vec![0.0; m],
            };
            let wv = match w.as_slice::<f32>() {
                Ok(v) => v,
                Err(_) => continue,
            };
            let per = wv.len() / m.max(1);
            let (new_w, new_b): (Vec<f32>, Vec<f32>) = if op.op_type == "Mul" {
                (
                    wv.iter().enumerate().map(|(i, x)| x * cv[i / per]).collect(),
                    bias.iter().zip(&cv).map(|(b, s)| b * s).collect(),
                )
            } else {
                (wv.to_vec(), bias.iter().zip(&cv).map(|(b, s)| b + s).collect())
            };
            let (Ok(tw), Ok(tb)) = (Tensor::from_vec(w.shape(), new_w), Tensor::from_vec(&[m], new_b)) else { continue };
            change = Some((k, j, tw, tb));
            break;
        }
        let Some((k, j, tw, tb)) = change else { return folded };
        fresh += 1;
        let wname = format!("{}__pmi_folded_w{fresh}", g.nodes[k].inputs[1]);
        let bname = format!("{}__pmi_folded_b{fresh}", g.nodes[k].outputs[0]);
        g.initializers.push((wname.clone(), tw));
        g.initializers.push((bname.clone(), tb));
        let out = g.nodes[j].outputs[0].clone();
        let n = &mut g.nodes[k];
        n.inputs.resize(3, String::new());
        n.inputs[1] = wname;
        n.inputs[2] = bname;
        n.outputs[0] = out;
        g.nodes.remove(j);
        folded += 1;
    }
}

/// Fold `Pad(mode constant, value 0, spatial axes only) -> Conv` into the convolution's `pads`.
/// Returns the number of Pad nodes removed.
pub fn fold_pad_into_conv(g: &mut Graph, opset: i64) -> usize {
    let mut folded = 0;
    loop {
        let readers = readers_of(g);
        let mut change: Option<(usize, usize, Vec<i64>)> = None;
        for (k, pad) in g.nodes.iter().enumerate() {
            if pad.op_type != "Pad" || !is_default_domain(pad) || pad.outputs.len() != 1 {
                continue;
            }
            let mode = match pad.attr("mode") {
                Some(AttrValue::String(s)) => s.clone(),
                _ => b"constant".to_vec(),
            };
            if mode != b"constant" {
                continue;
            }
            let pads: Vec<i64> = if opset < 11 {
                match pad.attr("pads") {
                    Some(AttrValue::Ints(p)) => p.clone(),
                    _ => continue,
                }
            } else {
                let Some(t) = pad.inputs.get(1).filter(|s| !s.is_empty()).and_then(|s| constant_of(g, s)) else { continue };
                match t.to_i64_vec() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            let zero_value = if opset < 11 {
                matches!(pad.attr("value"), None | Some(AttrValue::Float(0.0)))
            } else {
                match pad.inputs.get(2).filter(|s| !s.is_empty()) {
                    None => true,
                    Some(s) => constant_of(g, s).is_some_and(|t| t.to_f64_vec().map(|v| v.iter().all(|x| *x == 0.0)).unwrap_or(false)),
                }
            };
            // Opset 18+ `axes` input: only the plain form is folded.
            if !zero_value || pad.inputs.get(3).is_some_and(|s| !s.is_empty()) {
                continue;
            }
            let r = pads.len() / 2;
            if r < 3 || pads.len() != 2 * r || pads.iter().any(|p| *p < 0) || pads[0] != 0 || pads[1] != 0 || pads[r] != 0 || pads[r + 1] != 0 {
                continue;
            }
            let j = match readers.get(&pad.outputs[0]).map(|v| v.as_slice()) {
                Some([j]) if *j != usize::MAX => *j,
                _ => continue,
            };
            let conv = &g.nodes[j];
            if conv.op_type != "Conv" || !is_default_domain(conv) || conv.inputs.first() != Some(&pad.outputs[0]) {
                continue;
            }
            if !matches!(conv.attr("auto_pad"), None) && !matches!(conv.attr("auto_pad"), Some(AttrValue::String(s)) if s == b"NOTSET") {
                continue;
            }
            let spatial = r - 2;
            let mut cp = match conv.attr("pads") {
                Some(AttrValue::Ints(p)) if p.len() == 2 * spatial => p.clone(),
                None => vec![0; 2 * spatial],
                _ => continue,
            };
            for a in 0..spatial {
                cp[a] += pads[2 + a];
                cp[spatial + a] += pads[r + 2 + a];
            }
            change = Some((k, j, cp));
            break;
        }
        let Some((k, j, cp)) = change else { return folded };
        let src = g.nodes[k].inputs[0].clone();
        let conv = &mut g.nodes[j];
        conv.inputs[0] = src;
        conv.attrs.retain(|(n, _)| n != "pads");
        conv.attrs.push(("pads".into(), AttrValue::Ints(cp)));
        g.nodes.remove(k);
        folded += 1;
    }
}

/// Drop initializers no node, subgraph or graph output reads any more (the originals of
/// folded weights), so the session does not keep both copies. Overridable ones (also graph
/// inputs) stay.
pub fn prune_unused_initializers(g: &mut Graph) {
    let readers = readers_of(g);
    let inputs: std::collections::HashSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let keep: Vec<bool> =
        g.initializers.iter().map(|(n, _)| readers.contains_key(n) || inputs.contains(n.as_str())).collect();
    let mut k = 0;
    g.initializers.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}

/// Fuse activations into the convolutions of `g` (main graph only; subgraphs are untouched).
/// `opset` is the default-domain opset. Returns the number of fusions made.
pub fn fuse_conv_activations(g: &mut Graph, opset: i64) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let only_reader = |name: &str| sole_reader(&readers, name);
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
        // Gated activations: Y read by exactly G(Y) -> S and Mul(Y, S), with G = Sigmoid
        // (SiLU) or HardSigmoid(1/6, 1/2) (HardSwish, as exporters write it before opset 14).
        let rs = match readers.get(y.as_str()) {
            Some(v) if v.len() == 2 && !v.contains(&usize::MAX) => v.clone(),
            _ => continue,
        };
        let is_gate = |i: usize| matches!(g.nodes[i].op_type.as_str(), "Sigmoid" | "HardSigmoid");
        let (sig, mul) = if is_gate(rs[0]) { (rs[0], rs[1]) } else { (rs[1], rs[0]) };
        let (s, m) = (&g.nodes[sig], &g.nodes[mul]);
        if !is_gate(sig) || !s.domain.is_empty() || m.op_type != "Mul" || !m.domain.is_empty() || s.inputs.first() != Some(y) {
            continue;
        }
        let fused = if s.op_type == "Sigmoid" {
            act_attrs("Swish", &[1.0])
        } else if attr_f(s, "alpha", 0.2) == 1.0 / 6.0 && attr_f(s, "beta", 0.5) == 0.5 {
            // Act::HardSwish is x · HardSigmoid(x; 1/6, 1/2).
            act_attrs("HardSwish", &[])
        } else {
            continue;
        };
        let sname = &s.outputs[0];
        let pair_ok = m.inputs.len() == 2
            && ((m.inputs[0] == *y && m.inputs[1] == *sname) || (m.inputs[1] == *y && m.inputs[0] == *sname));
        if pair_ok && only_reader(sname) == Some(mul) {
            plans.push((k, vec![sig, mul], m.outputs[0].clone(), fused));
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
    drop_nodes(g, &removed);
    count
}

/// The constant f32 tensor named `name` (an initializer that no graph input overrides, or a
/// `Constant` node's value), from the maps of [`constant_maps`].
fn fixed_f32<'a>(g: &'a Graph, inits: &'a HashMap<&str, &Tensor>, consts: &'a HashMap<&str, &Tensor>) -> impl Fn(&str) -> Option<&'a Tensor> + 'a {
    let graph_inputs: std::collections::HashSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    move |name: &str| {
        if name.is_empty() || graph_inputs.contains(name) {
            return None;
        }
        inits.get(name).or_else(|| consts.get(name)).copied().filter(|t| t.dtype() == DType::Float32)
    }
}

/// The name of a node made of nodes `a` and `b`: both names joined by `+`, or the one given.
fn joined_name(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a}+{b}"),
    }
}

/// Fuse each pointwise convolution (1x1, unit strides, no padding, one group) whose only
/// reader is a depthwise convolution (`[E, 1, KH, KW]` weights, group `E`) into one
/// `ExpandDepthwise` node of the private domain: the expansion and depthwise convolution of an
/// inverted residual block (MobileNet v2/v3, EfficientNet), run without storing the expanded
/// image (see `crate::kernels::depthwise::expand_depthwise_f32`). Both take constant f32
/// weights and biases, and are `Conv` or `FusedConv` (NCHW: run after the layout pass, whose
/// channels-last nodes are not matched). The depthwise node's attributes are kept, the
/// pointwise activation goes in `pw_activation` and `pw_activation_params`. Returns the
/// number of fusions made.
pub fn fuse_expand_depthwise(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let fixed = fixed_f32(g, &inits, &consts);
    let is_conv = |n: &Node| (is_default_domain(n) && n.op_type == "Conv" || n.domain == DOMAIN && n.op_type == "FusedConv") && n.outputs.len() == 1 && (2..=3).contains(&n.inputs.len()) && !n.inputs[0].is_empty();
    let bias_ok = |n: &Node, e: usize| n.inputs.get(2).is_none_or(|b| b.is_empty() || fixed(b).is_some_and(|t| t.len() == e));
    let all = |n: &Node, name: &str, v: i64| n.attr_ints(name).is_none_or(|a| a.iter().all(|&x| x == v));
    let mut used = vec![false; g.nodes.len()];
    let mut plans = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        if !is_conv(n) || used[k] {
            continue;
        }
        let Some(&[e, _, 1, 1]) = fixed(&n.inputs[1]).map(|w| w.shape()) else { continue };
        let pointwise = n.attr_int("group").unwrap_or(1) == 1 && all(n, "strides", 1) && all(n, "dilations", 1) && all(n, "pads", 0) && all(n, "kernel_shape", 1);
        if !pointwise || !bias_ok(n, e) {
            continue;
        }
        let Some(j) = sole_reader(&readers, &n.outputs[0]) else { continue };
        let d = &g.nodes[j];
        if !is_conv(d) || used[j] || d.inputs[0] != n.outputs[0] || !bias_ok(d, e) {
            continue;
        }
        let Some(&[e2, 1, _, _]) = fixed(&d.inputs[1]).map(|w| w.shape()) else { continue };
        if e2 != e || d.attr_int("group").unwrap_or(1) != e as i64 {
            continue;
        }
        used[k] = true;
        used[j] = true;
        plans.push((k, j));
    }
    drop(fixed);
    let mut removed = vec![false; g.nodes.len()];
    for &(k, j) in &plans {
        let d = g.nodes[j].clone();
        let n = &mut g.nodes[k];
        let bias = |n: &Node| n.inputs.get(2).cloned().unwrap_or_default();
        n.inputs = vec![n.inputs[0].clone(), n.inputs[1].clone(), bias(n), d.inputs[1].clone(), bias(&d)];
        let pw_act: Vec<(String, AttrValue)> = n.attrs.iter().filter(|(a, _)| a.starts_with("activation")).map(|(a, v)| (format!("pw_{a}"), v.clone())).collect();
        n.attrs = d.attrs.into_iter().chain(pw_act).collect();
        n.op_type = "ExpandDepthwise".into();
        n.domain = DOMAIN.into();
        n.name = joined_name(&n.name, &d.name);
        n.outputs = d.outputs;
        removed[j] = true;
    }
    drop_nodes(g, &removed);
    plans.len()
}

/// Fuse each 2-D convolution of one group (`Conv` or `FusedConv`, constant f32 weights) whose
/// only reader is a `MaxPool` without indices into one `ConvMaxPool` node of the private
/// domain (the stems of SqueezeNet, ResNet, AlexNet, VGG: see
/// `crate::kernels::conv::conv_maxpool_f32`), the pool's attributes prefixed `pool_`. Returns
/// the number of fusions made.
pub fn fuse_conv_maxpool(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let fixed = fixed_f32(g, &inits, &consts);
    let fixed_rank4 = |name: &str| fixed(name).is_some_and(|t| t.rank() == 4);
    let mut plans = Vec::new();
    for (k, n) in g.nodes.iter().enumerate() {
        let conv = is_default_domain(n) && n.op_type == "Conv" || n.domain == DOMAIN && n.op_type == "FusedConv";
        if !conv || n.outputs.len() != 1 || !(2..=3).contains(&n.inputs.len()) || n.inputs[0].is_empty() || !fixed_rank4(&n.inputs[1]) || n.attr_int("group").unwrap_or(1) != 1 {
            continue;
        }
        let Some(j) = sole_reader(&readers, &n.outputs[0]) else { continue };
        let p = &g.nodes[j];
        let one_output = p.outputs.len() == 1 || p.outputs[1..].iter().all(|o| o.is_empty());
        if p.op_type != "MaxPool" || !is_default_domain(p) || p.inputs.len() != 1 || !one_output || p.attr_int("storage_order").unwrap_or(0) != 0 {
            continue;
        }
        plans.push((k, j));
    }
    drop(fixed);
    let mut removed = vec![false; g.nodes.len()];
    for &(k, j) in &plans {
        let p = g.nodes[j].clone();
        let n = &mut g.nodes[k];
        n.attrs.extend(p.attrs.into_iter().map(|(a, v)| (format!("pool_{a}"), v)));
        if n.op_type == "Conv" {
            n.attrs.extend(act_attrs("Identity", &[]));
        }
        n.op_type = "ConvMaxPool".into();
        n.domain = DOMAIN.into();
        n.name = joined_name(&n.name, &p.name);
        n.outputs = vec![p.outputs[0].clone()];
        removed[j] = true;
    }
    drop_nodes(g, &removed);
    plans.len()
}

/// Fuse the erf form of GELU as the PyTorch exporter writes it, `x · 0.5 · (1 + erf(x / √2))`:
/// `Div(x, √2)` (or `Mul(x, 1/√2)`) → `Erf` → `Add(·, 1)` → `Mul(x, ·)` → `Mul(·, 0.5)`, or with
/// `Mul(x, 0.5)` taken first, into one `Gelu` node of the private domain (one vectorized pass
/// instead of five over memory). Every intermediate must have that chain as its only reader.
/// Returns the number of fusions made.
pub fn fuse_gelu(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let only_reader = |name: &str| sole_reader(&readers, name);
    let is = |n: &Node, op: &str| n.op_type == op && is_default_domain(n) && n.outputs.len() == 1;
    // The operand of binary node `n` other than `v`, and whether that one is the scalar `want`.
    let other = |n: &Node, v: &str| -> Option<String> {
        match n.inputs.as_slice() {
            [a, b] if a == v => Some(b.clone()),
            [a, b] if b == v => Some(a.clone()),
            _ => None,
        }
    };
    let scalar_is = |name: &str, want: f32, tol: f32| const_scalar(name, &inits, &consts).is_some_and(|c| (c - want).abs() <= tol);
    let producers = first_output_producers(g);
    let producer = |name: &str| producers.get(name).copied();
    // (node to rewrite into Gelu, x, removed nodes)
    let mut plans: Vec<(usize, String, [usize; 4])> = Vec::new();
    for (k, erf) in g.nodes.iter().enumerate() {
        if !is(erf, "Erf") {
            continue;
        }
        // Div(x, √2) or Mul(x, 1/√2) before it.
        let Some(d) = erf.inputs.first().and_then(|i| producer(i)) else { continue };
        let dn = &g.nodes[d];
        let x = match dn.inputs.as_slice() {
            [x, c] if is(dn, "Div") && scalar_is(c, std::f32::consts::SQRT_2, 1e-4) => x.clone(),
            [a, b] if is(dn, "Mul") && scalar_is(b, std::f32::consts::FRAC_1_SQRT_2, 1e-5) => a.clone(),
            [a, b] if is(dn, "Mul") && scalar_is(a, std::f32::consts::FRAC_1_SQRT_2, 1e-5) => b.clone(),
            _ => continue,
        };
        if only_reader(&dn.outputs[0]) != Some(k) {
            continue;
        }
        // Add(erf, 1).
        let Some(a) = only_reader(&erf.outputs[0]) else { continue };
        let an = &g.nodes[a];
        if !is(an, "Add") || !other(an, &erf.outputs[0]).is_some_and(|c| scalar_is(&c, 1.0, 0.0)) {
            continue;
        }
        let Some(m1) = only_reader(&an.outputs[0]) else { continue };
        let mn = &g.nodes[m1];
        if !is(mn, "Mul") {
            continue;
        }
        let Some(p) = other(mn, &an.outputs[0]) else { continue };
        let fused = if p == x {
            // Mul(x, 1 + erf) then Mul(·, 0.5).
            let Some(m2) = only_reader(&mn.outputs[0]) else { continue };
            let hn = &g.nodes[m2];
            if !is(hn, "Mul") || !other(hn, &mn.outputs[0]).is_some_and(|c| scalar_is(&c, 0.5, 0.0)) {
                continue;
            }
            (m2, [d, k, a, m1])
        } else {
            // Mul(Mul(x, 0.5), 1 + erf).
            let Some(h) = producer(&p) else { continue };
            let hn = &g.nodes[h];
            if !is(hn, "Mul") || other(hn, &x).is_none_or(|c| !scalar_is(&c, 0.5, 0.0)) || only_reader(&p) != Some(m1) {
                continue;
            }
            (m1, [d, k, a, h])
        };
        plans.push((fused.0, x, fused.1));
    }
    rewrite_as_gelu(g, plans, &[])
}

/// Turn node `k` of each plan `(k, x, chain)` into the private-domain `Gelu(x)` with `attrs`,
/// and drop the rest of its chain. Returns the number of rewrites.
fn rewrite_as_gelu<const N: usize>(g: &mut Graph, plans: Vec<(usize, String, [usize; N])>, attrs: &[(String, AttrValue)]) -> usize {
    let mut removed = vec![false; g.nodes.len()];
    let count = plans.len();
    for (k, x, gone) in plans {
        let n = &mut g.nodes[k];
        n.op_type = "Gelu".into();
        n.domain = DOMAIN.into();
        n.inputs = vec![x];
        n.attrs = attrs.to_vec();
        for j in gone {
            removed[j] = true;
        }
    }
    drop_nodes(g, &removed);
    count
}

/// Fuse the tanh form of GELU as tf2onnx (Keras `gelu(approximate=True)`) and PyTorch below
/// opset 20 write it, `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`: `Pow(x, 3)` →
/// `Mul(0.044715, ·)` → `Add(x, ·)` → `Mul(√(2/π), ·)` → `Tanh` → `Add(1, ·)`, then either
/// `Mul(Mul(x, 0.5), ·)` or `Mul(Mul(x, ·), 0.5)`, into one `Gelu` node of the private domain
/// with `approximate = "tanh"` (one pass instead of eight). Every intermediate must have that
/// chain as its only reader. Returns the number of fusions made.
pub fn fuse_gelu_tanh(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let only_reader = |name: &str| sole_reader(&readers, name);
    let is = |n: &Node, op: &str| n.op_type == op && is_default_domain(n) && n.outputs.len() == 1;
    let producers = first_output_producers(g);
    let producer = |name: &str| producers.get(name).copied();
    let scalar_is = |name: &str, want: f32, tol: f32| const_scalar(name, &inits, &consts).is_some_and(|c| (c - want).abs() <= tol);
    // Binary node `n` with one operand the scalar `want`: the other operand.
    let with_scalar = |n: &Node, want: f32, tol: f32| -> Option<String> {
        match n.inputs.as_slice() {
            [a, b] if scalar_is(b, want, tol) => Some(a.clone()),
            [a, b] if scalar_is(a, want, tol) => Some(b.clone()),
            _ => None,
        }
    };
    let sqrt_2_over_pi = (2.0 / std::f32::consts::PI).sqrt();
    let mut plans: Vec<(usize, String, [usize; 7])> = Vec::new();
    for (k, tanh) in g.nodes.iter().enumerate() {
        if !is(tanh, "Tanh") {
            continue;
        }
        // Mul(√(2/π), s) with s = Add(x, Mul(0.044715, Pow(x, 3))).
        let Some(u) = tanh.inputs.first().and_then(|i| producer(i)) else { continue };
        let un = &g.nodes[u];
        let Some(sv) = is(un, "Mul").then(|| with_scalar(un, sqrt_2_over_pi, 1e-5)).flatten() else { continue };
        let Some(sa) = producer(&sv) else { continue };
        let sn = &g.nodes[sa];
        if !is(sn, "Add") || sn.inputs.len() != 2 {
            continue;
        }
        // One operand of the Add is the cube term, the other is x.
        let mut found = None;
        for (qi, xi) in [(0, 1), (1, 0)] {
            let Some(q) = producer(&sn.inputs[qi]) else { continue };
            let qn = &g.nodes[q];
            let Some(pv) = is(qn, "Mul").then(|| with_scalar(qn, 0.044715, 1e-6)).flatten() else { continue };
            let Some(pw) = producer(&pv) else { continue };
            let pn = &g.nodes[pw];
            let x = &sn.inputs[xi];
            if is(pn, "Pow") && pn.inputs.len() == 2 && &pn.inputs[0] == x && scalar_is(&pn.inputs[1], 3.0, 0.0) {
                found = Some((x.clone(), q, pw));
                break;
            }
        }
        let Some((x, q, pw)) = found else { continue };
        let chain_ok = only_reader(&g.nodes[pw].outputs[0]) == Some(q)
            && only_reader(&g.nodes[q].outputs[0]) == Some(sa)
            && only_reader(&sv) == Some(u)
            && only_reader(&un.outputs[0]) == Some(k);
        if !chain_ok {
            continue;
        }
        // Add(1, tanh), then the products with x and 0.5.
        let Some(v) = only_reader(&tanh.outputs[0]) else { continue };
        let vn = &g.nodes[v];
        if !is(vn, "Add") || with_scalar(vn, 1.0, 0.0).as_deref() != Some(tanh.outputs[0].as_str()) {
            continue;
        }
        let Some(m1) = only_reader(&vn.outputs[0]) else { continue };
        let mn = &g.nodes[m1];
        if !is(mn, "Mul") || mn.inputs.len() != 2 {
            continue;
        }
        let o = if mn.inputs[0] == vn.outputs[0] { &mn.inputs[1] } else { &mn.inputs[0] };
        let fused = if *o == x {
            // Mul(x, 1 + tanh) then Mul(·, 0.5).
            let Some(m2) = only_reader(&mn.outputs[0]) else { continue };
            let hn = &g.nodes[m2];
            if !is(hn, "Mul") || with_scalar(hn, 0.5, 0.0).as_deref() != Some(mn.outputs[0].as_str()) {
                continue;
            }
            (m2, [pw, q, sa, u, k, v, m1])
        } else {
            // Mul(Mul(x, 0.5), 1 + tanh).
            let Some(h) = producer(o) else { continue };
            let hn = &g.nodes[h];
            if !is(hn, "Mul") || with_scalar(hn, 0.5, 0.0).as_deref() != Some(x.as_str()) || only_reader(o) != Some(m1) {
                continue;
            }
            (m1, [pw, q, sa, u, k, v, h])
        };
        plans.push((fused.0, x, fused.1));
    }
    rewrite_as_gelu(g, plans, &[("approximate".to_string(), AttrValue::String(b"tanh".to_vec()))])
}

/// Fuse the layer normalization PyTorch exports below opset 17 — `ReduceMean(x)` over the last
/// axis, `Sub(x, mean)`, `Pow(·, 2)`, `ReduceMean`, `Add(·, eps)`, `Sqrt`, `Div`, then `Mul` by a
/// constant 1-D scale and optionally `Add` of a constant 1-D bias — into one
/// `LayerNormalization` node of the private domain (axis -1): two passes over each row instead
/// of nine nodes. Every intermediate must have that chain as its only reader (the centred `Sub`
/// output: the `Pow` and the `Div`). Returns the number of fusions made.
pub fn fuse_layer_norm(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let (inits, consts) = constant_maps(g);
    let readers_are = |name: &str| -> Vec<usize> {
        match readers.get(name) {
            Some(v) if !v.contains(&usize::MAX) => v.clone(),
            _ => Vec::new(),
        }
    };
    let only_reader = |name: &str| sole_reader(&readers, name);
    let is = |n: &Node, op: &str| n.op_type == op && is_default_domain(n) && n.outputs.len() == 1;
    // ReduceMean over the last axis only, keeping it (axes as attribute, or as a constant input
    // from opset 18).
    let mean_last = |n: &Node| -> bool {
        if !is(n, "ReduceMean") || !matches!(n.attr("keepdims"), None | Some(AttrValue::Int(1))) {
            return false;
        }
        match (n.attr("axes"), n.inputs.get(1)) {
            (Some(AttrValue::Ints(a)), None) => a.as_slice() == [-1],
            (None, Some(ax)) => inits.get(ax.as_str()).or_else(|| consts.get(ax.as_str())).is_some_and(|t| {
                t.dtype() == DType::Int64 && t.as_slice::<i64>().is_ok_and(|v| v == [-1])
            }),
            _ => false,
        }
    };
    let vector = |name: &str| inits.get(name).is_some_and(|t| t.rank() == 1 && t.dtype() == DType::Float32);
    let scalar = |name: &str| const_scalar(name, &inits, &consts);
    // (node rewritten, x, scale, bias, epsilon, removed nodes)
    let mut plans: Vec<(usize, String, String, Option<String>, f32, Vec<usize>)> = Vec::new();
    for (r1, n1) in g.nodes.iter().enumerate() {
        if !mean_last(n1) {
            continue;
        }
        let x = n1.inputs[0].clone();
        let Some(sub) = only_reader(&n1.outputs[0]) else { continue };
        let sn = &g.nodes[sub];
        if !is(sn, "Sub") || sn.inputs != [x.clone(), n1.outputs[0].clone()] {
            continue;
        }
        let d = &sn.outputs[0];
        let rs = readers_are(d);
        if rs.len() != 2 {
            continue;
        }
        let (pow, div) = if g.nodes[rs[0]].op_type == "Pow" { (rs[0], rs[1]) } else { (rs[1], rs[0]) };
        let (pn, dn) = (&g.nodes[pow], &g.nodes[div]);
        if !is(pn, "Pow") || pn.inputs.first() != Some(d) || pn.inputs.get(1).and_then(|e| scalar(e)) != Some(2.0) {
            continue;
        }
        let Some(r2) = only_reader(&pn.outputs[0]) else { continue };
        if !mean_last(&g.nodes[r2]) {
            continue;
        }
        let Some(add) = only_reader(&g.nodes[r2].outputs[0]) else { continue };
        let an = &g.nodes[add];
        let eps = match an.inputs.as_slice() {
            [v, e] if is(an, "Add") && *v == g.nodes[r2].outputs[0] => scalar(e),
            _ => None,
        };
        let Some(eps) = eps else { continue };
        let Some(sq) = only_reader(&an.outputs[0]) else { continue };
        if !is(&g.nodes[sq], "Sqrt") || only_reader(&g.nodes[sq].outputs[0]) != Some(div) {
            continue;
        }
        if !is(dn, "Div") || dn.inputs != [d.clone(), g.nodes[sq].outputs[0].clone()] {
            continue;
        }
        let Some(mul) = only_reader(&dn.outputs[0]) else { continue };
        let mn = &g.nodes[mul];
        let scale = match mn.inputs.as_slice() {
            [a, b] if is(mn, "Mul") && *a == dn.outputs[0] && vector(b) => b.clone(),
            [a, b] if is(mn, "Mul") && *b == dn.outputs[0] && vector(a) => a.clone(),
            _ => continue,
        };
        let mut gone = vec![r1, sub, pow, r2, add, sq, div];
        let (last, bias) = match only_reader(&mn.outputs[0]).map(|k| (k, &g.nodes[k])) {
            Some((k, bn)) if is(bn, "Add") && bn.inputs.len() == 2 => {
                let other = if bn.inputs[0] == mn.outputs[0] { &bn.inputs[1] } else { &bn.inputs[0] };
                if vector(other) {
                    gone.push(mul);
                    (k, Some(other.clone()))
                } else {
                    (mul, None)
                }
            }
            _ => (mul, None),
        };
        plans.push((last, x, scale, bias, eps, gone));
    }
    let mut removed = vec![false; g.nodes.len()];
    let count = plans.len();
    for (k, x, scale, bias, eps, gone) in plans {
        let n = &mut g.nodes[k];
        n.op_type = "LayerNormalization".into();
        n.domain = DOMAIN.into();
        n.inputs = std::iter::once(x).chain(std::iter::once(scale)).chain(bias).collect();
        n.attrs = vec![("axis".into(), AttrValue::Int(-1)), ("epsilon".into(), AttrValue::Float(eps))];
        for j in gone {
            removed[j] = true;
        }
    }
    drop_nodes(g, &removed);
    count
}

/// Fuse `MatMul(A, B)` whose `B` is a constant 2-D f32 initializer (k × n) with its only
/// reader `Add(·, bias)` (either order) of a constant 1-D f32 bias of n values (initializers,
/// or Identity nodes of them), PyTorch's
/// `Linear` export, into one `FusedMatMul` of the private domain with the bias as third input:
/// the GEMM adds it in its epilogue instead of a pass over the product (the Add of a
/// transformer layer's 128 x 512 product took ~4 us). Graph inputs (overridable at run time)
/// are not fused. Returns the number of fusions made.
pub fn fuse_matmul_bias(g: &mut Graph) -> usize {
    let plans = {
        let readers = readers_of(g);
        let (inits, _) = constant_maps(g);
        let overridable: std::collections::HashSet<&str> = g.inputs.iter().map(|v| v.name.as_str()).collect();
        let producers = first_output_producers(g);
        // The initializer behind `name`, through Identity nodes (exporters alias shared weights so).
        let source = |name: &str| -> Option<String> {
            let mut name = name.to_string();
            for _ in 0..8 {
                if inits.contains_key(name.as_str()) {
                    return Some(name);
                }
                let p = &g.nodes[*producers.get(name.as_str())?];
                if p.op_type != "Identity" || !is_default_domain(p) || p.inputs.len() != 1 {
                    return None;
                }
                name = p.inputs[0].clone();
            }
            None
        };
        let constant = |name: &str, rank: usize| {
            let src = source(name)?;
            let t = inits.get(src.as_str()).filter(|t| t.dtype() == DType::Float32 && t.rank() == rank && !overridable.contains(src.as_str()))?;
            Some((src, *t))
        };
        // (MatMul index, Add index, bias, output)
        let mut plans: Vec<(usize, usize, String, String)> = Vec::new();
        for (k, n) in g.nodes.iter().enumerate() {
            if n.op_type != "MatMul" || !is_default_domain(n) || n.inputs.len() != 2 || n.outputs.len() != 1 {
                continue;
            }
            let Some((_, b)) = constant(&n.inputs[1], 2) else { continue };
            let y = &n.outputs[0];
            let Some(j) = sole_reader(&readers, y) else { continue };
            let a = &g.nodes[j];
            if a.op_type != "Add" || !is_default_domain(a) || a.inputs.len() != 2 || a.outputs.len() != 1 {
                continue;
            }
            let bias = match (&a.inputs[0], &a.inputs[1]) {
                (l, r) if l == y && r != y => r,
                (l, r) if r == y && l != y => l,
                _ => continue,
            };
            if let Some((src, t)) = constant(bias, 1) {
                if t.shape()[0] == b.shape()[1] {
                    plans.push((k, j, src, a.outputs[0].clone()));
                }
            }
        }
        plans
    };
    let mut removed = vec![false; g.nodes.len()];
    let count = plans.len();
    for (k, j, bias, out) in plans {
        let n = &mut g.nodes[k];
        n.op_type = "FusedMatMul".into();
        n.domain = DOMAIN.into();
        n.inputs.push(bias);
        n.outputs[0] = out;
        removed[j] = true;
    }
    drop_nodes(g, &removed);
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
    fn hard_swish_written_as_hard_sigmoid_and_mul_is_fused() {
        let hs = |alpha: f32| {
            let mut n = node("HardSigmoid", &["c"], &["s"]);
            n.attrs.push(("alpha".into(), AttrValue::Float(alpha)));
            let mut g = graph(vec![node("Conv", &["x", "w"], &["c"]), n, node("Mul", &["c", "s"], &["y"])], &["y"], vec![]);
            (fuse_conv_activations(&mut g, 13), g)
        };
        let (n, g) = hs(1.0 / 6.0);
        assert_eq!(n, 1);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].outputs, vec!["y".to_string()]);
        assert_eq!(act_of(&g.nodes[0]), ("HardSwish".into(), vec![]));
        // Another slope is not HardSwish: left alone.
        let (n, g) = hs(0.2);
        assert_eq!((n, g.nodes.len()), (0, 3));
    }

    #[test]
    fn pointwise_convolutions_feeding_a_depthwise_one_are_fused() {
        let t = |shape: &[usize]| Tensor::from_vec(shape, vec![0.5f32; shape.iter().product()]).unwrap();
        let with = |mut n: Node, attrs: Vec<(&str, AttrValue)>| {
            n.attrs.extend(attrs.into_iter().map(|(k, v)| (k.to_string(), v)));
            n
        };
        let dw = |x: &str, y: &str, w: &str| with(node("Conv", &[x, w, "b2"], &[y]), vec![("group", AttrValue::Int(8)), ("strides", AttrValue::Ints(vec![2, 2])), ("pads", AttrValue::Ints(vec![1, 1, 1, 1]))]);
        let mut pw = node("Conv", &["x", "w1", "b1"], &["e"]);
        pw.op_type = "FusedConv".into();
        pw.domain = DOMAIN.into();
        pw.attrs = act_attrs("Relu", &[]);
        let inits = || vec![("w1", t(&[8, 4, 1, 1])), ("b1", t(&[8])), ("w2", t(&[8, 1, 3, 3])), ("b2", t(&[8])), ("w3", t(&[8, 8, 3, 3])), ("ws", t(&[8, 4, 1, 1]))];
        let mut g = graph(vec![pw.clone(), dw("e", "y", "w2")], &["y"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!((n.op_type.as_str(), n.domain.as_str()), ("ExpandDepthwise", DOMAIN));
        assert_eq!(n.inputs, ["x", "w1", "b1", "w2", "b2"]);
        assert_eq!(n.outputs, ["y"]);
        assert_eq!(n.attr_int("group"), Some(8));
        assert_eq!(n.attr_ints("strides"), Some(&[2i64, 2][..]));
        assert!(matches!(n.attr("pw_activation"), Some(AttrValue::String(s)) if s == b"Relu"));
        assert!(n.attr("activation").is_none());
        // Not fused: the expanded image read twice or a graph output; a dense second
        // convolution; weights that are a graph input; a strided first one.
        let mut g = graph(vec![pw.clone(), dw("e", "y", "w2"), node("Relu", &["e"], &["r"])], &["y", "r"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 0);
        let mut g = graph(vec![pw.clone(), dw("e", "y", "w2")], &["y", "e"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 0);
        let mut g = graph(vec![pw.clone(), with(node("Conv", &["e", "w3"], &["y"]), vec![])], &["y"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 0);
        let mut g = graph(vec![node("Conv", &["x", "w"], &["e"]), dw("e", "y", "w2")], &["y"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 0);
        let strided = with(node("Conv", &["x", "ws"], &["e"]), vec![("strides", AttrValue::Ints(vec![2, 2]))]);
        let mut g = graph(vec![strided, dw("e", "y", "w2")], &["y"], inits());
        assert_eq!(fuse_expand_depthwise(&mut g), 0);
    }

    #[test]
    fn convolutions_read_only_by_a_max_pool_are_fused() {
        let t = |shape: &[usize]| Tensor::from_vec(shape, vec![0.5f32; shape.iter().product()]).unwrap();
        let pool = |x: &str, y: &[&str]| {
            let mut n = node("MaxPool", &[x], y);
            n.attrs.push(("kernel_shape".into(), AttrValue::Ints(vec![3, 3])));
            n.attrs.push(("strides".into(), AttrValue::Ints(vec![2, 2])));
            n
        };
        let inits = || vec![("w1", t(&[8, 3, 3, 3])), ("b1", t(&[8]))];
        let mut conv = node("Conv", &["x", "w1", "b1"], &["c"]);
        conv.attrs.push(("strides".into(), AttrValue::Ints(vec![2, 2])));
        let mut g = graph(vec![conv.clone(), pool("c", &["y"])], &["y"], inits());
        assert_eq!(fuse_conv_maxpool(&mut g), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!((n.op_type.as_str(), n.domain.as_str()), ("ConvMaxPool", DOMAIN));
        assert_eq!((n.inputs.clone(), n.outputs.clone()), (vec!["x".to_string(), "w1".into(), "b1".into()], vec!["y".to_string()]));
        assert_eq!(n.attr_ints("strides"), Some(&[2i64, 2][..]));
        assert_eq!(n.attr_ints("pool_kernel_shape"), Some(&[3i64, 3][..]));
        // Not fused: the pool's indices wanted, the convolution's output read twice or a graph
        // output, weights given as a graph input.
        let mut g = graph(vec![conv.clone(), pool("c", &["y", "i"])], &["y", "i"], inits());
        assert_eq!(fuse_conv_maxpool(&mut g), 0);
        let mut g = graph(vec![conv.clone(), pool("c", &["y"]), node("Relu", &["c"], &["r"])], &["y", "r"], inits());
        assert_eq!(fuse_conv_maxpool(&mut g), 0);
        let mut g = graph(vec![conv.clone(), pool("c", &["y"])], &["y", "c"], inits());
        assert_eq!(fuse_conv_maxpool(&mut g), 0);
        let mut g = graph(vec![node("Conv", &["x", "w"], &["c"]), pool("c", &["y"])], &["y"], inits());
        assert_eq!(fuse_conv_maxpool(&mut g), 0);
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
    fn gelu_chains_are_fused_in_both_orders() {
        let sc = |v: f32| Tensor::scalar(v);
        let mut g = graph(
            vec![
                // x * (1 + erf(x / sqrt2)) * 0.5
                node("Div", &["x", "sqrt2"], &["d"]),
                node("Erf", &["d"], &["e"]),
                node("Add", &["e", "one"], &["a"]),
                node("Mul", &["x", "a"], &["m"]),
                node("Mul", &["m", "half"], &["y1"]),
                // (x * 0.5) * (1 + erf(x * 1/sqrt2))
                node("Mul", &["inv", "w"], &["d2"]),
                node("Erf", &["d2"], &["e2"]),
                node("Add", &["one", "e2"], &["a2"]),
                node("Mul", &["w", "half"], &["h2"]),
                node("Mul", &["h2", "a2"], &["y2"]),
                // Not GELU: the Add constant is 2.
                node("Div", &["x", "sqrt2"], &["d3"]),
                node("Erf", &["d3"], &["e3"]),
                node("Add", &["e3", "two"], &["a3"]),
                node("Mul", &["x", "a3"], &["m3"]),
                node("Mul", &["m3", "half"], &["y3"]),
            ],
            &["y1", "y2", "y3"],
            vec![
                ("sqrt2", sc(std::f32::consts::SQRT_2)),
                ("inv", sc(std::f32::consts::FRAC_1_SQRT_2)),
                ("one", sc(1.0)),
                ("two", sc(2.0)),
                ("half", sc(0.5)),
            ],
        );
        assert_eq!(fuse_gelu(&mut g), 2);
        assert_eq!(g.nodes.len(), 7);
        let gelus: Vec<_> = g.nodes.iter().filter(|n| n.op_type == "Gelu").collect();
        assert_eq!(gelus.len(), 2);
        assert!(gelus.iter().all(|n| n.domain == DOMAIN && n.attrs.is_empty()));
        assert_eq!((gelus[0].inputs.as_slice(), gelus[0].outputs.as_slice()), (&["x".to_string()][..], &["y1".to_string()][..]));
        assert_eq!((gelus[1].inputs.as_slice(), gelus[1].outputs.as_slice()), (&["w".to_string()][..], &["y2".to_string()][..]));
    }

    #[test]
    fn tanh_gelu_chains_are_fused_in_both_orders() {
        let sc = |v: f32| Tensor::scalar(v);
        let chain = |x: &str, p: &str, extra: &str| {
            vec![
                node("Pow", &[x, "three"], &[&format!("{p}pow")]),
                node("Mul", &["c", &format!("{p}pow")], &[&format!("{p}q")]),
                node("Add", &[x, &format!("{p}q")], &[&format!("{p}s")]),
                node("Mul", &["k", &format!("{p}s")], &[&format!("{p}u")]),
                node("Tanh", &[&format!("{p}u")], &[&format!("{p}t")]),
                node("Add", &[extra, &format!("{p}t")], &[&format!("{p}v")]),
            ]
        };
        let mut nodes = chain("x", "a", "one");
        // tf2onnx: Mul(0.5, x) times (1 + tanh).
        nodes.push(node("Mul", &["half", "x"], &["ah"]));
        nodes.push(node("Mul", &["ah", "av"], &["y1"]));
        // x times (1 + tanh), then 0.5.
        nodes.extend(chain("w", "b", "one"));
        nodes.push(node("Mul", &["w", "bv"], &["bm"]));
        nodes.push(node("Mul", &["bm", "half"], &["y2"]));
        // Not GELU: the Add constant is 2.
        nodes.extend(chain("z", "c", "two"));
        nodes.push(node("Mul", &["z", "cv"], &["cm"]));
        nodes.push(node("Mul", &["cm", "half"], &["y3"]));
        let mut g = graph(
            nodes,
            &["y1", "y2", "y3"],
            vec![
                ("three", sc(3.0)),
                ("c", sc(0.044715)),
                ("k", sc((2.0 / std::f32::consts::PI).sqrt())),
                ("one", sc(1.0)),
                ("two", sc(2.0)),
                ("half", sc(0.5)),
            ],
        );
        assert_eq!(fuse_gelu_tanh(&mut g), 2);
        assert_eq!(g.nodes.len(), 10);
        let gelus: Vec<_> = g.nodes.iter().filter(|n| n.op_type == "Gelu").collect();
        assert_eq!(gelus.len(), 2);
        for (n, (x, y)) in gelus.iter().zip([("x", "y1"), ("w", "y2")]) {
            assert_eq!(n.domain, DOMAIN);
            assert_eq!((n.inputs.as_slice(), n.outputs.as_slice()), (&[x.to_string()][..], &[y.to_string()][..]));
            assert!(matches!(n.attrs.as_slice(), [(a, AttrValue::String(v))] if a == "approximate" && v == b"tanh"));
        }
    }

    #[test]
    fn gelu_with_an_exposed_intermediate_is_not_fused() {
        let sc = |v: f32| Tensor::scalar(v);
        let mut g = graph(
            vec![
                node("Div", &["x", "sqrt2"], &["d"]),
                node("Erf", &["d"], &["e"]),
                node("Add", &["e", "one"], &["a"]),
                node("Mul", &["x", "a"], &["m"]),
                node("Mul", &["m", "half"], &["y"]),
            ],
            &["y", "e"],
            vec![("sqrt2", sc(std::f32::consts::SQRT_2)), ("one", sc(1.0)), ("half", sc(0.5))],
        );
        assert_eq!(fuse_gelu(&mut g), 0);
        assert_eq!(g.nodes.len(), 5);
    }

    #[test]
    fn matmul_bias_adds_are_fused() {
        let inits = || {
            vec![
                ("b2", Tensor::from_vec(&[3, 4], vec![1f32; 12]).unwrap()),
                ("bias", Tensor::from_vec(&[4], vec![0.5f32; 4]).unwrap()),
                ("short", Tensor::from_vec(&[3], vec![0.5f32; 3]).unwrap()),
            ]
        };
        // Bias first or second, or through an Identity alias (as exporters share weights).
        for nodes in [
            vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["y", "bias"], &["z"])],
            vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["bias", "y"], &["z"])],
            vec![node("Identity", &["bias"], &["alias"]), node("MatMul", &["x", "b2"], &["y"]), node("Add", &["alias", "y"], &["z"])],
        ] {
            let mut g = graph(nodes, &["z"], inits());
            assert_eq!(fuse_matmul_bias(&mut g), 1);
            let n = g.nodes.iter().find(|n| n.op_type == "FusedMatMul").expect("fused");
            assert_eq!(n.domain, DOMAIN);
            assert_eq!(n.inputs, vec!["x".to_string(), "b2".into(), "bias".into()]);
            assert_eq!(n.outputs, vec!["z".to_string()]);
            assert!(g.nodes.iter().all(|n| n.op_type != "Add"));
        }
        // Left alone: the product also read elsewhere or a graph output, a bias of another
        // length, a weight that is a graph input (overridable), a bias computed at run time.
        let cases: Vec<(Vec<Node>, Vec<&str>)> = vec![
            (vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["y", "bias"], &["z"]), node("Relu", &["y"], &["r"])], vec!["z", "r"]),
            (vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["y", "bias"], &["z"])], vec!["z", "y"]),
            (vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["y", "short"], &["z"])], vec!["z"]),
            (vec![node("MatMul", &["x", "w"], &["y"]), node("Add", &["y", "bias"], &["z"])], vec!["z"]),
            (vec![node("MatMul", &["x", "b2"], &["y"]), node("Add", &["y", "x"], &["z"])], vec!["z"]),
        ];
        for (nodes, outs) in cases {
            let mut inits = inits();
            inits.push(("w", Tensor::from_vec(&[3, 4], vec![1f32; 12]).unwrap()));
            let mut g = graph(nodes, &outs, inits);
            assert_eq!(fuse_matmul_bias(&mut g), 0);
            assert!(g.nodes.iter().all(|n| n.op_type != "FusedMatMul"));
        }
    }

    #[test]
    fn layer_norm_chain_is_fused() {
        let rm = |i: &str, o: &str| {
            let mut n = node("ReduceMean", &[i], &[o]);
            n.attrs.push(("axes".into(), AttrValue::Ints(vec![-1])));
            n
        };
        let chain = |bias_out: &str| {
            vec![
                rm("x", "m"),
                node("Sub", &["x", "m"], &["d"]),
                node("Pow", &["d", "two"], &["p"]),
                rm("p", "v"),
                node("Add", &["v", "eps"], &["a"]),
                node("Sqrt", &["a"], &["s"]),
                node("Div", &["d", "s"], &["n"]),
                node("Mul", &["n", "gamma"], &["y"]),
                node("Add", &["y", "beta"], &[bias_out]),
            ]
        };
        let inits = || {
            vec![
                ("two", Tensor::scalar(2f32)),
                ("eps", Tensor::scalar(1e-12f32)),
                ("gamma", Tensor::from_vec(&[4], vec![1f32; 4]).unwrap()),
                ("beta", Tensor::from_vec(&[4], vec![0f32; 4]).unwrap()),
            ]
        };
        let mut g = graph(chain("z"), &["z"], inits());
        assert_eq!(fuse_layer_norm(&mut g), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!((n.op_type.as_str(), n.domain.as_str()), ("LayerNormalization", DOMAIN));
        assert_eq!(n.inputs, vec!["x".to_string(), "gamma".into(), "beta".into()]);
        assert_eq!(n.outputs, vec!["z".to_string()]);
        assert!(matches!(n.attr("epsilon"), Some(AttrValue::Float(e)) if *e == 1e-12));
        // The centred value also read elsewhere: left alone.
        let mut nodes = chain("z");
        nodes.push(node("Relu", &["d"], &["r"]));
        let mut g = graph(nodes, &["z", "r"], inits());
        assert_eq!(fuse_layer_norm(&mut g), 0);
        assert_eq!(g.nodes.len(), 10);
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
