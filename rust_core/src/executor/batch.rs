//! Batch splitting: a batch of large images runs as one run per image when every operator of
//! the graph treats the images independently; on several threads, a batch of smaller images
//! that the thread count divides runs as one block of images per thread.
//!
//! At batch 8 the activations of a 224x224 CNN (a 16 x 112 x 112 map is 800 KB per image) no
//! longer fit the core's L2 cache, so every layer streams its input and output through L3;
//! one image's activations stay in L2 from one layer to the next. On two threads the images
//! are shared between the threads, each running its images on its own (each thread keeps its
//! own images' activations in its own L2, and no layer waits for the other thread). Smaller
//! images gain nothing from the cache alone (on one thread they run batched), but splitting
//! every layer between threads costs a hand-over per layer and layers of small maps scale
//! poorly: at batch 8 on 2 threads, a block of 4 images per thread ran tf_mobilenetv2 (96x96)
//! 1.37 -> 1.18x onnxruntime's time, mobilenet_v3_small 1.19 -> 1.11x, conv1d_audio
//! 1.0 -> 0.86x (same-process A/B, medians of three).
//!
//! Whether a graph is batch-separable is decided once, by [`separable`]: every value computed
//! from the inputs must keep the images in consecutive blocks of its first axis, each block
//! depending only on its own image. Operators are admitted one by one with the conditions
//! under which that holds (a convolution always; a `Concat` on any axis but 0; a `Reshape` whose
//! first dimension is 0 or -1; a reduction over other axes; constants that broadcast along the
//! batch axis); anything else (an unknown operator, `Shape`, a control-flow subgraph) makes the
//! graph run as a whole. A run that fails split is repeated whole, so errors are those of the
//! unsplit graph.

use crate::graph::ir::{AttrValue, Dim, Graph, Node, TypeInfo};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// Bytes of input per image from which a batch is split (a 3 x 224 x 224 float image is
/// 602 KB; a 96 x 96 one, 110 KB, runs faster batched: its activations fit L2 either way).
pub const SPLIT_MIN_BYTES: usize = 256 << 10;

/// Bytes per image of the first convolution's output from which a batch is split. At batch 8
/// on 2 threads, efficientnet_b0 (32 x 112 x 112 floats, 1.6 MB) ran 10% faster split and
/// squeezenet1_1 (64 x 111 x 111, 3.1 MB) 17%, mobilenet_v3_small (16 x 112 x 112, 0.8 MB)
/// 7% slower: its layers gain more from the whole batch's wider products than from the cache.
pub const SPLIT_MIN_ACTIVATION: usize = 1 << 20;

/// The first convolution of a separable graph, to estimate the size of its output per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstConv {
    /// Input channels (all groups) and output channels.
    pub in_channels: usize,
    pub out_channels: usize,
    /// Product of the strides.
    pub stride_area: usize,
}

impl FirstConv {
    /// Bytes of its f32 output per image, for `input_elems` values of input per image (all
    /// inputs; padding and dilation ignored).
    pub fn output_bytes(&self, input_elems: usize) -> usize {
        input_elems / self.in_channels.max(1) * self.out_channels / self.stride_area.max(1) * 4
    }
}

/// Whether `g` (prepared: constants folded into initializers) computes every output image by
/// image (see the module documentation) with a convolution of constant weights (the image
/// models whose activations outgrow the caches): that convolution when it does.
pub fn separable(g: &Graph) -> Option<FirstConv> {
    let consts: HashMap<&str, &Tensor> = g.initializers.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut ranks: HashMap<&str, usize> = HashMap::new();
    for v in g.real_inputs() {
        match &v.ty {
            TypeInfo::Tensor { shape: Some(s), .. } if !s.is_empty() && !matches!(s[0], Dim::Known(0)) => {
                ranks.insert(v.name.as_str(), s.len());
            }
            _ => return None,
        }
    }
    let mut scan = Scan { consts, opaque: HashSet::new() };
    let mut conv = None;
    for n in &g.nodes {
        if conv.is_none() && matches!(n.op_type.as_str(), "Conv" | "FusedConv" | "ExpandDepthwise" | "ConvMaxPool") {
            let w = scan.consts.get(n.inputs.get(1)?.as_str())?;
            if w.rank() < 3 {
                return None;
            }
            let group = usize::try_from(int(n, "group", 1)).ok()?;
            let stride_area = ints(n, "strides").unwrap_or_default().iter().map(|&s| usize::try_from(s).unwrap_or(1)).product();
            conv = Some(FirstConv { in_channels: w.shape()[1] * group, out_channels: w.shape()[0], stride_area });
        }
        if n.op_type.starts_with("Random") || n.op_type == "Multinomial" || n.op_type == "Bernoulli" {
            // A new draw per run: one per image would differ from one per batch.
            return None;
        }
        if n.inputs.iter().all(|i| !ranks.contains_key(i.as_str())) {
            // Computed from constants only: the same for every image. Constant and Identity
            // keep a known value; other results are constants of unknown value and shape.
            match (n.op_type.as_str(), n.attr("value"), n.inputs.first().and_then(|i| scan.consts.get(i.as_str()).copied())) {
                ("Constant", Some(AttrValue::Tensor(t)), _) if n.outputs.len() == 1 => {
                    scan.consts.insert(n.outputs[0].as_str(), t);
                }
                ("Identity", _, Some(t)) if n.outputs.len() == 1 => {
                    scan.consts.insert(n.outputs[0].as_str(), t);
                }
                _ => scan.opaque.extend(n.outputs.iter().map(String::as_str)),
            }
            continue;
        }
        let out = scan.node(n, &ranks)?;
        for (name, r) in n.outputs.iter().zip(out) {
            if !name.is_empty() {
                ranks.insert(name.as_str(), r);
            }
        }
    }
    g.outputs.iter().all(|o| ranks.contains_key(o.name.as_str())).then_some(conv?)
}

struct Scan<'g> {
    /// Constants of known value (initializers, Constant nodes and their copies).
    consts: HashMap<&'g str, &'g Tensor>,
    /// Values computed from constants only.
    opaque: HashSet<&'g str>,
}

/// An integer or integer-list attribute.
fn ints(n: &Node, name: &str) -> Option<Vec<i64>> {
    n.attr_ints(name).map(<[i64]>::to_vec).or_else(|| n.attr_int(name).map(|v| vec![v]))
}

fn int(n: &Node, name: &str, default: i64) -> i64 {
    n.attr_int(name).unwrap_or(default)
}

/// `axis` in `0..rank` (None when out of range).
fn norm(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Whether every axis is in range and none is the batch axis.
fn off_batch(axes: &[i64], rank: usize) -> bool {
    axes.iter().all(|&a| matches!(norm(a, rank), Some(x) if x > 0))
}

impl Scan<'_> {
    /// The constant input `k` as integers (None when absent or not a constant).
    fn const_ints(&self, n: &Node, k: usize) -> Option<Vec<i64>> {
        let name = n.inputs.get(k).filter(|s| !s.is_empty())?;
        self.consts.get(name.as_str())?.to_i64_vec().ok()
    }

    /// Axes given as attribute `axes` or as constant input `k`: None when they are computed
    /// at run time, `Some(None)` when absent.
    fn axes(&self, n: &Node, k: usize) -> Option<Option<Vec<i64>>> {
        if let Some(a) = ints(n, "axes") {
            return Some(Some(a));
        }
        match n.inputs.get(k).filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(_) => self.const_ints(n, k).map(Some),
        }
    }

    /// The ranks of the outputs of `n` when it computes them image by image from the values of
    /// `ranks` (the per-image values and their ranks), None otherwise.
    fn node(&self, n: &Node, ranks: &HashMap<&str, usize>) -> Option<Vec<usize>> {
        let private = n.domain == crate::optimizer::fuse::DOMAIN;
        if !(n.domain.is_empty() || n.domain == "ai.onnx" || private) {
            return None;
        }
        // Each input: Some(rank) per image, None when empty or constant; anything else (an
        // outer-scope value) is not admitted.
        let mut tin = Vec::with_capacity(n.inputs.len());
        for i in &n.inputs {
            if i.is_empty() || self.consts.contains_key(i.as_str()) || self.opaque.contains(i.as_str()) {
                tin.push(None);
            } else {
                tin.push(Some(*ranks.get(i.as_str())?));
            }
        }
        let r = (*tin.first()?)?;
        let only_first = |rest: &[Option<usize>]| rest.iter().all(Option::is_none);
        let outs = n.outputs.len();
        let same = |k: usize| Some(vec![k; outs]);
        let one_output = n.outputs.iter().skip(1).all(String::is_empty);
        let op = n.op_type.as_str();
        let out = match op {
            // Element-wise on one image-dependent input (the others are constant parameters).
            "Relu" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish" | "LeakyRelu" | "Elu" | "Selu" | "Celu" | "Softplus"
            | "Softsign" | "Exp" | "Log" | "Sqrt" | "Abs" | "Neg" | "Erf" | "Identity" | "Cast" | "CastLike" | "Floor"
            | "Ceil" | "Round" | "Reciprocal" | "Gelu" | "Mish" | "Sign" | "Not" | "Sin" | "Cos" | "ThresholdedRelu"
            | "Shrink" | "IsNaN" | "IsInf" | "Clip" | "Dropout"
                if only_first(&tin[1..]) =>
            {
                same(r)
            }
            // Broadcasting element-wise operators: image-dependent inputs of one rank, constants
            // that do not extend along the batch axis.
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Mod" | "Where" | "Equal" | "Less"
            | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "PRelu" => {
                let rk = tin.iter().flatten().copied().max()?;
                for (name, t) in n.inputs.iter().zip(&tin) {
                    match t {
                        Some(k) if *k != rk => return None,
                        Some(_) => {}
                        None => {
                            let c = self.consts.get(name.as_str())?;
                            if !(c.rank() < rk || c.shape()[0] == 1) {
                                return None;
                            }
                        }
                    }
                }
                same(rk)
            }
            // Per image and channel; a second MaxPool output (flat indices) counts the images.
            "Conv" | "FusedConv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool" | "GlobalAveragePool"
            | "GlobalMaxPool" | "GlobalLpPool" | "LRN" | "InstanceNormalization" | "BatchNormalization"
            | "DepthToSpace" | "SpaceToDepth" | "NhwcConv" | "NhwcGlobalAveragePool" | "ExpandDepthwise" | "ConvMaxPool"
                if only_first(&tin[1..]) && one_output =>
            {
                same(r)
            }
            "Flatten" if (1..=r as i64).contains(&(int(n, "axis", 1) + if int(n, "axis", 1) < 0 { r as i64 } else { 0 })) => same(2),
            "Gemm" if r == 2 && int(n, "transA", 0) == 0 && only_first(&tin[1..]) => {
                let c_ok = match n.inputs.get(2).filter(|s| !s.is_empty()) {
                    None => true,
                    Some(c) => self.consts.get(c.as_str()).is_some_and(|c| c.rank() < 2 || c.shape()[0] == 1),
                };
                c_ok.then(|| vec![2; outs])
            }
            "MatMul" | "FusedMatMul" if r >= 2 => match tin.get(1)? {
                None => (self.consts.get(n.inputs[1].as_str())?.rank() <= 2).then(|| vec![r; outs]),
                Some(rb) => (*rb == r && r >= 3).then(|| vec![r; outs]),
            },
            "Softmax" | "LogSoftmax" | "Hardmax" if only_first(&tin[1..]) => {
                norm(int(n, "axis", -1), r).filter(|&a| a > 0).and(same(r))
            }
            "LayerNormalization" if only_first(&tin[1..]) => norm(int(n, "axis", -1), r).filter(|&a| a > 0).and(same(r)),
            "Concat" if tin.iter().all(|t| *t == Some(r)) => norm(int(n, "axis", 0), r).filter(|&a| a > 0).and(same(r)),
            "Transpose" if only_first(&tin[1..]) => ints(n, "perm").filter(|p| p.first() == Some(&0)).and(same(r)),
            "Reshape" if only_first(&tin[1..]) => {
                let shape = self.const_ints(n, 1)?;
                let first_ok = matches!(shape.first(), Some(0) | Some(-1));
                (first_ok && !(int(n, "allowzero", 0) == 1 && shape.contains(&0))).then(|| vec![shape.len(); outs])
            }
            "Squeeze" if only_first(&tin[1..]) => {
                let axes = self.axes(n, 1)??;
                (off_batch(&axes, r) && axes.len() < r).then(|| vec![r - axes.len(); outs])
            }
            "Unsqueeze" if only_first(&tin[1..]) => {
                let axes = self.axes(n, 1)??;
                off_batch(&axes, r + axes.len()).then(|| vec![r + axes.len(); outs])
            }
            _ if op.starts_with("Reduce") && only_first(&tin[1..]) => {
                let keep = int(n, "keepdims", 1) == 1;
                match self.axes(n, 1)? {
                    Some(a) if !a.is_empty() => {
                        let mut axes: Vec<usize> = a.iter().map(|&x| norm(x, r)).collect::<Option<_>>()?;
                        axes.sort_unstable();
                        axes.dedup();
                        (axes[0] > 0).then(|| vec![if keep { r } else { r - axes.len() }; outs])
                    }
                    _ if int(n, "noop_with_empty_axes", 0) == 1 => same(r),
                    _ => None,
                }
            }
            "ArgMax" | "ArgMin" => {
                let keep = int(n, "keepdims", 1) == 1;
                norm(int(n, "axis", 0), r).filter(|&a| a > 0).map(|_| vec![if keep { r } else { r - 1 }; outs])
            }
            "Split" if only_first(&tin[1..]) => norm(int(n, "axis", 0), r).filter(|&a| a > 0).and(same(r)),
            "Slice" if only_first(&tin[1..]) => {
                let axes = match ints(n, "axes") {
                    Some(a) => a,
                    None => self.const_ints(n, 3)?,
                };
                off_batch(&axes, r).then(|| vec![r; outs])
            }
            "Gather" if only_first(&tin[1..]) && norm(int(n, "axis", 0), r).is_some_and(|a| a > 0) => {
                let q = self.consts.get(n.inputs.get(1)?.as_str())?.rank();
                (r - 1 + q >= 1).then(|| vec![r - 1 + q; outs])
            }
            "Pad" if only_first(&tin[1..]) && n.inputs.get(3).is_none_or(|s| s.is_empty()) => {
                let pads = ints(n, "pads").or_else(|| self.const_ints(n, 1))?;
                (pads.len() == 2 * r && pads[0] == 0 && pads[r] == 0).then(|| vec![r; outs])
            }
            "Resize" | "Upsample" if only_first(&tin[1..]) && n.inputs.get(3).is_none_or(|s| s.is_empty()) => {
                let k = if op == "Resize" { 2 } else { 1 };
                let scales = match ints(n, "scales") {
                    Some(s) => s.iter().map(|&v| v as f64).collect(),
                    None => self.consts.get(n.inputs.get(k)?.as_str())?.to_f64_vec().ok()?,
                };
                (scales.first() == Some(&1.0)).then(|| vec![r; outs])
            }
            "Tile" if only_first(&tin[1..]) => (self.const_ints(n, 1)?.first() == Some(&1)).then(|| vec![r; outs]),
            "Expand" if only_first(&tin[1..]) => {
                let shape = self.const_ints(n, 1)?;
                (shape.len() < r || (shape.len() == r && shape[0] == 1)).then(|| vec![r; outs])
            }
            _ => None,
        }?;
        out.iter().all(|&k| k >= 1).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ir::ValueInfo;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> Node {
        Node::for_test(op, inputs, outputs, attrs)
    }

    fn ok(g: &Graph) -> bool {
        separable(g).is_some()
    }

    fn value(name: &str, rank: usize) -> ValueInfo {
        let mut shape = vec![Dim::Symbol("N".into())];
        shape.extend((1..rank).map(|_| Dim::Known(4)));
        ValueInfo { name: name.into(), ty: TypeInfo::Tensor { dtype: None, shape: Some(shape) }, doc_string: String::new() }
    }

    /// x [N,3,8,8] -> Conv -> `tail` nodes -> y.
    fn graph(tail: Vec<Node>, consts: Vec<(&str, Tensor)>) -> Graph {
        let w = Tensor::from_vec(&[4, 3, 1, 1], vec![0.5f32; 12]).unwrap();
        let mut nodes = vec![node("Conv", &["x", "w"], &["c"], vec![])];
        nodes.extend(tail);
        let mut initializers = vec![("w".to_string(), w)];
        initializers.extend(consts.into_iter().map(|(n, t)| (n.to_string(), t)));
        Graph {
            name: "g".into(),
            doc_string: String::new(),
            nodes,
            inputs: vec![value("x", 4)],
            outputs: vec![value("y", 2)],
            initializers,
            value_info: vec![],
        }
    }

    #[test]
    fn image_models_are_separable_and_batch_mixing_ones_are_not() {
        let i64s = |v: &[i64]| Tensor::from_vec(&[v.len()], v.to_vec()).unwrap();
        let scale = |shape: &[usize]| Tensor::from_vec(shape, vec![2f32; shape.iter().product()]).unwrap();
        let pool = || node("GlobalAveragePool", &["c"], &["p"], vec![]);
        let flat = || node("Flatten", &["p"], &["y"], vec![]);
        // A classifier head: pooling, flatten (axis 1). The first convolution's output of an
        // 8x8 image: 4 channels of 64 floats.
        let first = separable(&graph(vec![pool(), flat()], vec![]));
        assert_eq!(first, Some(FirstConv { in_channels: 3, out_channels: 4, stride_area: 1 }));
        assert_eq!(first.unwrap().output_bytes(3 * 64), 4 * 64 * 4);
        // Per-channel constants broadcast; a constant with the batch extent does not.
        let mul = |c: &str| node("Mul", &["c", c], &["m"], vec![]);
        let rest = || vec![node("GlobalAveragePool", &["m"], &["p"], vec![]), flat()];
        assert!(ok(&graph([vec![mul("s")], rest()].concat(), vec![("s", scale(&[1, 4, 1, 1]))])));
        assert!(ok(&graph([vec![mul("s")], rest()].concat(), vec![("s", scale(&[4, 1, 1]))])));
        assert!(!ok(&graph([vec![mul("s")], rest()].concat(), vec![("s", scale(&[2, 4, 1, 1]))])));
        // Reshape keeping or inferring the first axis; a literal batch size mixes images.
        let reshape = || vec![pool(), node("Reshape", &["p", "s"], &["y"], vec![])];
        assert!(ok(&graph(reshape(), vec![("s", i64s(&[-1, 4]))])));
        assert!(ok(&graph(reshape(), vec![("s", i64s(&[0, 4]))])));
        assert!(!ok(&graph(reshape(), vec![("s", i64s(&[2, 4]))])));
        // Operators along the batch axis.
        let axis0 = |op: &str| vec![pool(), node(op, &["p"], &["q"], vec![("axis", AttrValue::Int(0))]), node("Flatten", &["q"], &["y"], vec![])];
        assert!(!ok(&graph(axis0("Softmax"), vec![])));
        assert!(!ok(&graph(vec![pool(), node("Flatten", &["p"], &["y"], vec![("axis", AttrValue::Int(0))])], vec![])));
        let reduce = || vec![node("ReduceMean", &["c", "a"], &["q"], vec![]), node("Flatten", &["q"], &["y"], vec![])];
        assert!(ok(&graph(reduce(), vec![("a", i64s(&[2, 3]))])));
        assert!(!ok(&graph(reduce(), vec![("a", i64s(&[0]))])));
        assert!(!ok(&graph(vec![node("ReduceMean", &["c"], &["q"], vec![]), node("Flatten", &["q"], &["y"], vec![])], vec![])));
        // Shape reads the batch size; unknown operators are not admitted.
        assert!(!ok(&graph(vec![node("Shape", &["c"], &["y"], vec![])], vec![])));
        assert!(!ok(&graph(vec![pool(), node("NoSuchOp", &["p"], &["y"], vec![])], vec![])));
        // An output that does not depend on the images.
        let mut g = graph(vec![pool(), flat()], vec![("k", scale(&[1, 2]))]);
        g.outputs.push(value("k", 2));
        assert!(!ok(&g));
        // No convolution: not worth splitting.
        let mut g = graph(vec![pool(), flat()], vec![]);
        g.nodes[0] = node("Relu", &["x"], &["c"], vec![]);
        assert!(!ok(&g));
    }
}
