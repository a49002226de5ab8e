//! Channels-last regions: chains of pointwise and depthwise convolutions (the inverted
//! residual blocks of MobileNet and EfficientNet, with their activations, residual `Add`s and
//! squeeze-excitation branches) computed on `[N, H, W, C]` images.
//!
//! In NCHW a depthwise convolution vectorizes along channels only after interleaving 16
//! channel planes (a register transpose in and one out, on every node), and a pointwise one
//! vectorizes along the pixels, which leaves lanes empty on the 3x3 to 14x14 maps of a
//! network's last stages. Channels-last, sixteen channels of a pixel are one vector already: the
//! depthwise kernel copies rows (no transposes) and the pointwise convolution is a GEMM whose
//! rows are the pixels and whose vectors run along the output channels. onnxruntime gets the
//! same from its channel-blocked (NCHWc) layout; a chain of 20 depthwise nodes on 6x6 maps ran
//! 2.1x its time in NCHW.
//!
//! A region is a connected set of: `Conv`/`FusedConv` nodes with constant float weights that
//! are pointwise (1x1, unit strides, no padding, one group) or depthwise (one input channel
//! per group, as many groups as output channels), unary activations, `Add`/`Sub`/`Mul`/`Div` of
//! two region values (both rank 4, so broadcasting the squeeze-excitation scale
//! `[N, C, 1, 1]` over `[N, C, H, W]` stays a broadcast after the permutation) and
//! `GlobalAveragePool` of a region value. Regions with at least one depthwise and two
//! convolutions are rewritten: convolutions become `NhwcConv`, pools `NhwcGlobalAveragePool`,
//! and a `Transpose` converts each value entering the region and each leaving it (read by any
//! other node, or a graph output), so every value outside keeps its name, layout and shape.

use super::fuse::{constant_maps, readers_of, DOMAIN};
use crate::graph::ir::{AttrValue, Graph, Node};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Pointwise,
    Depthwise,
    Unary,
    Binary,
    GlobalPool,
}

/// What `n` can be in a region (None: it cannot). `fixed` tells the constant float tensors.
fn role(n: &Node, fixed: &dyn Fn(&str) -> Option<Vec<usize>>, constant: &dyn Fn(&str) -> bool, const_ints: &dyn Fn(&str) -> Option<Vec<i64>>) -> Option<Role> {
    let default = n.domain.is_empty() || n.domain == "ai.onnx";
    let op = n.op_type.as_str();
    if n.outputs.len() != 1 || n.inputs.first().is_none_or(|i| i.is_empty() || constant(i)) {
        return None;
    }
    match op {
        "Conv" if default => {}
        "FusedConv" if n.domain == DOMAIN => {}
        "Relu" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish" | "LeakyRelu" | "Clip" if default => {
            return n.inputs[1..].iter().all(|i| i.is_empty() || constant(i)).then_some(Role::Unary);
        }
        "Add" | "Sub" | "Mul" | "Div" if default => {
            return (n.inputs.len() == 2 && !n.inputs[1].is_empty() && !constant(&n.inputs[1])).then_some(Role::Binary);
        }
        "GlobalAveragePool" if default => return (n.inputs.len() == 1).then_some(Role::GlobalPool),
        // The mean over both spatial axes, keeping them (how newer PyTorch exports write it).
        "ReduceMean" if default => return spatial_mean(n, const_ints).then_some(Role::GlobalPool),
        _ => return None,
    }
    // A convolution: constant f32 weights of rank 4, a constant bias if any.
    if !(2..=3).contains(&n.inputs.len()) || n.inputs.get(2).is_some_and(|b| !b.is_empty() && fixed(b).is_none()) {
        return None;
    }
    let w = fixed(&n.inputs[1])?;
    let [m, cg, kh, kw] = w[..] else { return None };
    let group = n.attr_int("group").unwrap_or(1);
    let auto_pad = n.attr_str("auto_pad", "NOTSET");
    let kernel_ok = n.attr_ints("kernel_shape").is_none_or(|k| k == [kh as i64, kw as i64]);
    if m == 0 || cg == 0 || !kernel_ok || n.attr_ints("strides").is_some_and(|s| s.len() != 2) {
        return None;
    }
    if group == 1 && kh == 1 && kw == 1 {
        let unit = |name: &str| n.attr_ints(name).is_none_or(|v| v.iter().all(|&x| x == 1));
        let no_pads = n.attr_ints("pads").is_none_or(|p| p.iter().all(|&x| x == 0));
        (unit("strides") && unit("dilations") && no_pads && (auto_pad == "NOTSET" || auto_pad == "VALID")).then_some(Role::Pointwise)
    } else if cg == 1 && group == m as i64 {
        Some(Role::Depthwise)
    } else {
        None
    }
}

/// Largest map (height x width, input or output) of a convolution moved channels-last. On the
/// AMD Zen 4 machine, per node in efficientnet_b0: 7x7 and 14x14 maps faster (1152 -> 192 on
/// 7x7 0.26 -> 0.24 ms, depthwise 5x5 on 672 x 14x14 0.18 -> 0.15), 28x28 a few percent slower,
/// 56x56 and 112x112 10-35% slower (their NCHW kernels fill every lane).
const MAX_PIXELS: usize = 400;

/// Height x width of every rank-4 value whose spatial extents follow from the declared graph
/// inputs through the operators of image models (convolutions, pools, element-wise operators,
/// transposes, concatenations); values not listed are unknown.
fn spatial_sizes<'g>(g: &'g Graph, const_ints: &dyn Fn(&str) -> Option<Vec<i64>>) -> HashMap<&'g str, usize> {
    use crate::graph::ir::Dim;
    // Shapes with None for unknown extents (the batch).
    let mut shapes: HashMap<&str, Vec<Option<usize>>> = HashMap::new();
    for i in &g.inputs {
        if let Some(dims) = i.ty.tensor_shape() {
            shapes.insert(i.name.as_str(), dims.iter().map(|d| if let Dim::Known(v) = d { Some(*v) } else { None }).collect());
        }
    }
    for (name, t) in &g.initializers {
        shapes.entry(name.as_str()).or_insert_with(|| t.shape().iter().map(|&d| Some(d)).collect());
    }
    let attr_or = |n: &Node, name: &str, len: usize, v: i64| -> Vec<i64> { n.attr_ints(name).map_or(vec![v; len], |a| a.to_vec()) };
    for n in &g.nodes {
        let Some(x) = n.inputs.first().and_then(|i| shapes.get(i.as_str())).cloned() else { continue };
        let op = n.op_type.as_str();
        let out: Option<Vec<Option<usize>>> = match op {
            "Conv" | "FusedConv" | "MaxPool" | "AveragePool" if x.len() == 4 => {
                let (channels, kernel) = if op.ends_with("Conv") {
                    match n.inputs.get(1).and_then(|w| shapes.get(w.as_str())) {
                        Some(w) if w.len() == 4 => (w[0], vec![w[2], w[3]]),
                        _ => continue,
                    }
                } else {
                    (x[1], attr_or(n, "kernel_shape", 2, 0).iter().map(|&k| usize::try_from(k).ok()).collect())
                };
                let strides = attr_or(n, "strides", 2, 1);
                let dil = attr_or(n, "dilations", 2, 1);
                let pads = attr_or(n, "pads", 4, 0);
                let auto = n.attr_str("auto_pad", "NOTSET");
                let ceil = n.attr_int("ceil_mode").unwrap_or(0) != 0;
                let mut dims = vec![x[0], channels, None, None];
                for a in 0..2 {
                    let (Some(i), Some(k)) = (x[2 + a], kernel.get(a).copied().flatten()) else { continue };
                    let (s, d) = (strides.get(a).copied().unwrap_or(1).max(1) as usize, dil.get(a).copied().unwrap_or(1).max(1) as usize);
                    let reach = (k.max(1) - 1) * d + 1;
                    dims[2 + a] = match auto.as_str() {
                        "SAME_UPPER" | "SAME_LOWER" => Some(i.div_ceil(s)),
                        "VALID" => (i >= reach).then(|| (i - reach) / s + 1),
                        _ => {
                            let padded = i + pads.get(a).copied().unwrap_or(0).max(0) as usize + pads.get(a + 2).copied().unwrap_or(0).max(0) as usize;
                            (padded >= reach).then(|| if ceil { (padded - reach).div_ceil(s) + 1 } else { (padded - reach) / s + 1 })
                        }
                    };
                }
                Some(dims)
            }
            "Relu" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish" | "LeakyRelu" | "Clip" | "Identity" => Some(x),
            "Add" | "Sub" | "Mul" | "Div" => {
                let y = n.inputs.get(1).and_then(|i| shapes.get(i.as_str()));
                match y {
                    Some(y) if y.len() == x.len() => {
                        Some(x.iter().zip(y).map(|(a, b)| match (a, b) { (Some(1), b) => *b, (a, Some(1)) => *a, (Some(a), Some(b)) if a == b => Some(*a), _ => None }).collect())
                    }
                    Some(y) if y.len() < x.len() => Some(x),
                    _ => None,
                }
            }
            "GlobalAveragePool" | "GlobalMaxPool" if x.len() == 4 => Some(vec![x[0], x[1], Some(1), Some(1)]),
            "ReduceMean" if x.len() == 4 && spatial_mean(n, const_ints) => Some(vec![x[0], x[1], Some(1), Some(1)]),
            "Transpose" => n.attr_ints("perm").filter(|p| p.len() == x.len()).map(|p| p.iter().map(|&a| x.get(a as usize).copied().flatten()).collect()),
            "Concat" => {
                let axis = n.attr_int("axis").unwrap_or(0);
                let axis = if axis < 0 { axis + x.len() as i64 } else { axis } as usize;
                let mut dims = x.clone();
                for i in &n.inputs[1..] {
                    match shapes.get(i.as_str()) {
                        Some(y) if y.len() == x.len() && axis < x.len() => dims[axis] = dims[axis].zip(y[axis]).map(|(a, b)| a + b),
                        _ => {
                            if let Some(d) = dims.get_mut(axis) {
                                *d = None;
                            }
                        }
                    }
                }
                Some(dims)
            }
            _ => None,
        };
        if let (Some(out), Some(o)) = (out, n.outputs.first()) {
            shapes.insert(o.as_str(), out);
        }
    }
    shapes.into_iter().filter_map(|(k, v)| match v[..] { [_, _, Some(h), Some(w)] => Some((k, h * w)), _ => None }).collect()
}

/// Whether a `ReduceMean` averages axes 2 and 3 of a rank-4 value and keeps them; `axes` is
/// read from the attribute or the constant second input.
fn spatial_mean(n: &Node, const_ints: &dyn Fn(&str) -> Option<Vec<i64>>) -> bool {
    let axes = match (n.attr_ints("axes"), n.inputs.get(1).filter(|a| !a.is_empty())) {
        (Some(a), None) => a.to_vec(),
        (None, Some(a)) => match const_ints(a) {
            Some(v) => v,
            None => return false,
        },
        _ => return false,
    };
    let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + 4 } else { a }).collect();
    axes.sort_unstable();
    axes == [2, 3] && n.attr_int("keepdims").unwrap_or(1) != 0
}

fn find(parent: &mut [usize], mut k: usize) -> usize {
    while parent[k] != k {
        parent[k] = parent[parent[k]];
        k = parent[k];
    }
    k
}

/// Rewrite the channels-last regions of `g` (main graph only) when the CPU has AVX-512 (the
/// kernels were measured there; elsewhere the NCHW ones stay). Returns the number of nodes
/// moved into regions.
pub fn channels_last(g: &mut Graph) -> usize {
    if crate::kernels::simd::active() < crate::kernels::simd::Isa::Avx512 {
        return 0;
    }
    channels_last_regions(g)
}

/// [`channels_last`] whatever the CPU (the kernels run everywhere; tests use this).
pub(crate) fn channels_last_regions(g: &mut Graph) -> usize {
    let readers = readers_of(g);
    let graph_inputs: HashSet<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let (inits, consts) = constant_maps(g);
    let fixed = |name: &str| -> Option<Vec<usize>> {
        let t = inits.get(name).filter(|_| !graph_inputs.contains(name))?;
        (t.dtype() == crate::tensor::DType::Float32).then(|| t.shape().to_vec())
    };
    let constant = |name: &str| (inits.contains_key(name) && !graph_inputs.contains(name)) || consts.contains_key(name);
    let const_ints = |name: &str| -> Option<Vec<i64>> {
        let t = inits.get(name).filter(|_| !graph_inputs.contains(name)).or_else(|| consts.get(name))?;
        t.as_slice::<i64>().ok().map(|v| v.to_vec())
    };
    let maps = spatial_sizes(g, &const_ints);
    // Convolutions on larger maps stay NCHW: there the NCHW kernels fill their vectors and the
    // conversions cost more than the region saves (measured below).
    let small = |n: &Node| n.inputs.first().and_then(|i| maps.get(i.as_str())).is_some_and(|&a| a <= MAX_PIXELS)
        && n.outputs.first().and_then(|o| maps.get(o.as_str())).is_some_and(|&a| a <= MAX_PIXELS);
    let roles: Vec<Option<Role>> = g
        .nodes
        .iter()
        .map(|n| role(n, &fixed, &constant, &const_ints).filter(|r| !matches!(r, Role::Pointwise | Role::Depthwise) || small(n)))
        .collect();
    let producer: HashMap<&str, usize> =
        g.nodes.iter().enumerate().flat_map(|(k, n)| n.outputs.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), k))).collect();
    // The inputs of node k that carry images (the others are weights and parameters).
    let data_inputs = |k: usize| -> usize {
        match roles[k] {
            Some(Role::Binary) => 2,
            Some(_) => 1,
            None => 0,
        }
    };
    // Activations, operators on two values and pools join only a region value: drop the
    // others until nothing changes (a convolution may read a value from outside).
    let mut inr: Vec<bool> = roles.iter().map(Option::is_some).collect();
    loop {
        let mut changed = false;
        for k in 0..g.nodes.len() {
            if !inr[k] || matches!(roles[k], Some(Role::Pointwise | Role::Depthwise)) {
                continue;
            }
            let from_region = g.nodes[k].inputs[..data_inputs(k)].iter().all(|i| producer.get(i.as_str()).is_some_and(|&p| inr[p]));
            if !from_region {
                inr[k] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Connected components; keep those with a depthwise and at least two convolutions.
    let mut parent: Vec<usize> = (0..g.nodes.len()).collect();
    for k in (0..g.nodes.len()).filter(|&k| inr[k]) {
        for i in &g.nodes[k].inputs[..data_inputs(k)] {
            if let Some(&p) = producer.get(i.as_str()).filter(|&&p| inr[p]) {
                let (a, b) = (find(&mut parent, k), find(&mut parent, p));
                parent[a] = b;
            }
        }
    }
    let mut counts: HashMap<usize, (usize, usize)> = HashMap::new();
    for k in (0..g.nodes.len()).filter(|&k| inr[k]) {
        let root = find(&mut parent, k);
        let c = counts.entry(root).or_default();
        match roles[k] {
            Some(Role::Depthwise) => c.0 += 1,
            Some(Role::Pointwise) => c.1 += 1,
            _ => {}
        }
    }
    for k in 0..g.nodes.len() {
        if inr[k] {
            let (dw, pw) = counts[&find(&mut parent, k)];
            inr[k] = dw >= 1 && dw + pw >= 2;
        }
    }
    let moved = inr.iter().filter(|&&b| b).count();
    if moved == 0 {
        return 0;
    }
    // Fresh names for the channels-last values.
    let mut taken: HashSet<String> = g.nodes.iter().flat_map(|n| n.inputs.iter().chain(&n.outputs).cloned()).collect();
    taken.extend(g.inputs.iter().chain(&g.outputs).map(|v| v.name.clone()));
    taken.extend(g.initializers.iter().map(|(n, _)| n.clone()));
    let mut fresh = |base: &str| {
        let mut name = format!("{base}/nhwc");
        let mut k = 1;
        while taken.contains(&name) {
            k += 1;
            name = format!("{base}/nhwc{k}");
        }
        taken.insert(name.clone());
        name
    };
    let transpose = |from: &str, to: &str, perm: [i64; 4], what: &str| Node {
        name: format!("{to}/{what}"),
        op_type: "Transpose".into(),
        domain: String::new(),
        inputs: vec![from.to_string()],
        outputs: vec![to.to_string()],
        attrs: vec![("perm".into(), AttrValue::Ints(perm.to_vec()))],
        doc_string: String::new(),
    };
    let mut renamed: HashMap<String, String> = HashMap::new();
    for k in (0..g.nodes.len()).filter(|&k| inr[k]) {
        let o = g.nodes[k].outputs[0].clone();
        let f = fresh(&o);
        renamed.insert(o, f);
    }
    let mut entering: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::with_capacity(g.nodes.len() + 8);
    for (k, n) in std::mem::take(&mut g.nodes).into_iter().enumerate() {
        if !inr[k] {
            nodes.push(n);
            continue;
        }
        let mut n = n;
        for idx in 0..data_inputs(k) {
            let v = n.inputs[idx].clone();
            n.inputs[idx] = match renamed.get(&v) {
                Some(r) => r.clone(),
                None => match entering.get(&v) {
                    Some(t) => t.clone(),
                    None => {
                        let t = fresh(&v);
                        nodes.push(transpose(&v, &t, [0, 2, 3, 1], "to_nhwc"));
                        entering.insert(v, t.clone());
                        t
                    }
                },
            };
        }
        match roles[k] {
            Some(Role::Pointwise | Role::Depthwise) => {
                n.op_type = "NhwcConv".into();
                n.domain = DOMAIN.into();
            }
            Some(Role::GlobalPool) => {
                n.op_type = "NhwcGlobalAveragePool".into();
                n.domain = DOMAIN.into();
                n.inputs.truncate(1);
                n.attrs.clear();
            }
            _ => {}
        }
        let o = n.outputs[0].clone();
        let r = renamed[&o].clone();
        n.outputs[0] = r.clone();
        nodes.push(n);
        let outside = readers.get(&o).is_some_and(|rs| rs.iter().any(|&j| j == usize::MAX || !inr[j]));
        if outside {
            nodes.push(transpose(&r, &o, [0, 3, 1, 2], "to_nchw"));
        }
    }
    g.nodes = nodes;
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ir::{Dim, TypeInfo, ValueInfo};
    use crate::tensor::Tensor;

    fn conv(x: &str, w: &str, y: &str, group: i64, pads: i64) -> Node {
        Node::for_test("Conv", &[x, w], &[y], vec![("group", AttrValue::Int(group)), ("pads", AttrValue::Ints(vec![pads; 4]))])
    }

    /// x -> pw(8->16) -> Relu -> dw 3x3 -> SE (GAP, pw 16->4, Relu, pw 4->16, Sigmoid, Mul)
    /// -> pw(16->8) -> Add(x) -> y, with the SE's pooled value also a graph output.
    fn block() -> Graph {
        let t = |shape: &[usize]| Tensor::from_vec(shape, vec![0.5f32; shape.iter().product()]).unwrap();
        let nodes = vec![
            conv("x", "w1", "a", 1, 0),
            Node::for_test("Relu", &["a"], &["b"], vec![]),
            conv("b", "w2", "c", 16, 1),
            Node::for_test("GlobalAveragePool", &["c"], &["p"], vec![]),
            conv("p", "w3", "q", 1, 0),
            Node::for_test("Relu", &["q"], &["r"], vec![]),
            conv("r", "w4", "s", 1, 0),
            Node::for_test("Sigmoid", &["s"], &["u"], vec![]),
            Node::for_test("Mul", &["c", "u"], &["v"], vec![]),
            conv("v", "w5", "z", 1, 0),
            Node::for_test("Add", &["z", "x"], &["y"], vec![]),
        ];
        let vi = |n: &str| ValueInfo { name: n.into(), ty: TypeInfo::Tensor { dtype: None, shape: None }, doc_string: String::new() };
        let x = ValueInfo {
            name: "x".into(),
            ty: TypeInfo::Tensor { dtype: Some(crate::tensor::DType::Float32), shape: Some(vec![Dim::Symbol("N".into()), Dim::Known(8), Dim::Known(6), Dim::Known(6)]) },
            doc_string: String::new(),
        };
        Graph {
            nodes,
            inputs: vec![x],
            outputs: vec![vi("y"), vi("p")],
            initializers: vec![
                ("w1".into(), t(&[16, 8, 1, 1])),
                ("w2".into(), t(&[16, 1, 3, 3])),
                ("w3".into(), t(&[4, 16, 1, 1])),
                ("w4".into(), t(&[16, 4, 1, 1])),
                ("w5".into(), t(&[8, 16, 1, 1])),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn an_inverted_residual_block_runs_channels_last_between_two_transposes() {
        let mut g = block();
        // Everything but the residual Add (x enters the region only through the first conv).
        assert_eq!(channels_last_regions(&mut g), 10);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Transpose", "NhwcConv", "Relu", "NhwcConv", "NhwcGlobalAveragePool", "Transpose", "NhwcConv", "Relu", "NhwcConv",
                "Sigmoid", "Mul", "NhwcConv", "Transpose", "Add"
            ]
        );
        // Values outside keep their names: the pooled output and the last conv's, converted back.
        let t: Vec<(&str, &str, Vec<i64>)> = g
            .nodes
            .iter()
            .filter(|n| n.op_type == "Transpose")
            .map(|n| {
                let Some(AttrValue::Ints(p)) = n.attr("perm") else { panic!("perm") };
                (n.inputs[0].as_str(), n.outputs[0].as_str(), p.clone())
            })
            .collect();
        assert_eq!(t[0], ("x", "x/nhwc", vec![0, 2, 3, 1]));
        assert_eq!(t[1], ("p/nhwc", "p", vec![0, 3, 1, 2]));
        assert_eq!(t[2], ("z/nhwc", "z", vec![0, 3, 1, 2]));
        assert_eq!(g.nodes[10].inputs, ["c/nhwc", "u/nhwc"]);
    }

    #[test]
    fn regions_without_a_depthwise_or_with_other_convolutions_stay() {
        // Pointwise convolutions alone (squeezenet's fire modules): no gain, untouched.
        let mut g = block();
        g.nodes.remove(2);
        g.nodes[2].inputs[0] = "b".into();
        g.nodes[7].inputs[0] = "b".into();
        assert_eq!(channels_last_regions(&mut g), 0);
        // A dense 3x3 convolution is not a region node; a weight fed as a graph input is not
        // constant.
        let mut g = block();
        g.initializers[1].1 = Tensor::from_vec(&[16, 2, 3, 3], vec![0.5f32; 288]).unwrap();
        g.nodes[0].inputs[1] = "w_in".into();
        g.inputs.push(ValueInfo { name: "w_in".into(), ty: TypeInfo::Tensor { dtype: None, shape: None }, doc_string: String::new() });
        assert_eq!(channels_last_regions(&mut g), 0);
    }
}
