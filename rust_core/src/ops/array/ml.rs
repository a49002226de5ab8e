//! `ai.onnx.ml` operators: LabelEncoder, ArrayFeatureExtractor, Binarizer, TreeEnsemble.

use super::concat::concat_tensors;
use super::elements::{dispatch_numeric, ints_of, Num};
use super::gather::{norm_indices, take};
use crate::error::{Error, Result};
use crate::graph::ir::AttrValue;
use crate::ops::{tensor_in, BuildContext, Op, RunContext, Value};
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;

/// A lookup key: bytes for strings, the f64 bits (with -0.0 as 0.0) for numbers.
#[derive(Hash, PartialEq, Eq, Clone)]
enum Key {
    Str(Vec<u8>),
    Num(u64),
}

fn num_key(v: f64) -> Key {
    Key::Num(if v == 0.0 { 0 } else { v.to_bits() })
}

fn keys_of(t: &Tensor) -> Result<Vec<Key>> {
    if t.dtype() == DType::String {
        return Ok(t.strings()?.iter().map(|s| Key::Str(s.clone())).collect());
    }
    Ok(t.to_f64_vec()?.into_iter().map(num_key).collect())
}

/// LabelEncoder: maps each input element through a key -> value table (default otherwise).
struct LabelEncoder {
    table: HashMap<Key, usize>,
    /// The values followed by the default, 1-D.
    values: Tensor,
}

impl Op for LabelEncoder {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "LabelEncoder")?;
        let default = self.values.len() - 1;
        let idx: Vec<usize> = keys_of(x)?
            .iter()
            .map(|k| self.table.get(k).copied().unwrap_or(default))
            .collect();
        Ok(vec![take(
            &self.values,
            0,
            &idx,
            x.shape(),
            Some(ctx.pool),
            "LabelEncoder",
        )?
        .into()])
    }
}

pub fn build_label_encoder(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    let pick = |kind: &str| -> Result<Option<Tensor>> {
        if let Some(t) = ctx.attr_tensor(&format!("{kind}_tensor"))? {
            return Ok(Some(t.reshaped(&[t.len()])?));
        }
        Ok(
            match ctx
                .attr(&format!("{kind}_floats"))
                .or(ctx.attr(&format!("{kind}_int64s")))
                .or(ctx.attr(&format!("{kind}_strings")))
            {
                Some(AttrValue::Floats(v)) => Some(Tensor::from_slice(&[v.len()], v)?),
                Some(AttrValue::Ints(v)) => Some(Tensor::from_slice(&[v.len()], v)?),
                Some(AttrValue::Strings(v)) => Some(Tensor::from_strings(&[v.len()], v.clone())?),
                Some(AttrValue::Float(v)) => Some(Tensor::from_slice(&[1], &[*v])?),
                Some(AttrValue::Int(v)) => Some(Tensor::from_slice(&[1], &[*v])?),
                Some(AttrValue::String(v)) => Some(Tensor::from_strings(&[1], vec![v.clone()])?),
                Some(a) => {
                    return Err(ctx.invalid(format!("{kind} attribute has type {}", a.kind())))
                }
                None => None,
            },
        )
    };
    let keys = pick("keys")?.ok_or_else(|| ctx.invalid("no keys_* attribute"))?;
    let values = pick("values")?.ok_or_else(|| ctx.invalid("no values_* attribute"))?;
    if keys.len() != values.len() {
        return Err(ctx.invalid(format!("{} keys for {} values", keys.len(), values.len())));
    }
    let default = match ctx.attr_tensor("default_tensor")? {
        Some(t) if t.dtype() == values.dtype() && t.len() == 1 => t.reshaped(&[1])?,
        Some(t) => {
            return Err(ctx.invalid(format!(
                "default_tensor must be one {} value, got {} {:?}",
                values.dtype(),
                t.dtype(),
                t.shape()
            )))
        }
        _ => match values.dtype() {
            DType::String => Tensor::from_strings(
                &[1],
                vec![ctx.attr_s("default_string", "_Unused")?.into_bytes()],
            )?,
            DType::Int64 => Tensor::from_slice(&[1], &[ctx.attr_i("default_int64", -1)?])?,
            DType::Float32 => Tensor::from_slice(&[1], &[ctx.attr_f("default_float", -0.0)?])?,
            d if d.is_int() => super::elements::scalar_of(d, -1.0, &[1])?,
            d => super::elements::scalar_of(d, -0.0, &[1])?,
        },
    };
    let default = default.reshaped(&[1])?;
    let mut table = HashMap::new();
    for (i, k) in keys_of(&keys)?.into_iter().enumerate() {
        table.entry(k).or_insert(i);
    }
    let values = concat_tensors(&[&values, &default], 0, None, "LabelEncoder")?;
    Ok(Box::new(LabelEncoder { table, values }))
}

/// ArrayFeatureExtractor: selects entries of the last axis (a 1-D input acts as one row).
struct ArrayFeatureExtractor;

impl Op for ArrayFeatureExtractor {
    fn run(&self, inputs: &[Option<&Value>], ctx: &RunContext) -> Result<Vec<Value>> {
        let x0 = tensor_in(inputs, 0, "ArrayFeatureExtractor")?;
        let ind = tensor_in(inputs, 1, "ArrayFeatureExtractor")?;
        let x = if x0.rank() == 1 {
            x0.reshaped(&[1, x0.len()])?
        } else {
            x0.clone()
        };
        let r = x.rank();
        if r == 0 {
            return Err(Error::ShapeMismatch(
                "ArrayFeatureExtractor: input must have rank >= 1".into(),
            ));
        }
        let idx = norm_indices(
            &ints_of(ind, "ArrayFeatureExtractor: input 'Y'")?,
            x.shape()[r - 1],
            "ArrayFeatureExtractor",
            "Y",
        )?;
        Ok(vec![take(
            &x,
            r - 1,
            &idx,
            &[idx.len()],
            Some(ctx.pool),
            "ArrayFeatureExtractor",
        )?
        .into()])
    }
}

pub fn build_array_feature_extractor(_ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(ArrayFeatureExtractor))
}

/// Binarizer: 1 where x > threshold, else 0 (in x's type).
struct Binarizer {
    threshold: f64,
}

fn binarize<T: Num>(x: &Tensor, th: f64) -> Result<Tensor> {
    let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));
    crate::ops::common::unary_map::<T, T>(
        x,
        x.dtype(),
        |v| if v.to_f64() > th { one } else { zero },
    )
}

impl Op for Binarizer {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "Binarizer")?;
        let y = dispatch_numeric!(x.dtype(), T => binarize::<T>(x, self.threshold),
            Err(Error::UnsupportedDtype(format!("Binarizer: element type {} is not supported", x.dtype()))))?;
        Ok(vec![y.into()])
    }
}

pub fn build_binarizer(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    Ok(Box::new(Binarizer {
        threshold: ctx.attr_f("threshold", 0.0)? as f64,
    }))
}

#[derive(Clone, Copy, Debug)]
enum Child {
    Node(usize),
    Leaf(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Member,
}

struct TreeNode {
    mode: Mode,
    split: f64,
    /// For Member nodes: index into `TreeEnsemble::sets`.
    set: usize,
    feature: usize,
    missing_true: bool,
    on_true: Child,
    on_false: Child,
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Average,
    Sum,
    Min,
    Max,
}

#[derive(Clone, Copy, PartialEq)]
enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
}

/// TreeEnsemble (opset 5): sums (or averages, min, max) leaf weights per target over trees.
struct TreeEnsemble {
    nodes: Vec<TreeNode>,
    sets: Vec<Vec<f64>>,
    leaf_weights: Vec<f64>,
    leaf_targets: Vec<usize>,
    roots: Vec<Child>,
    n_targets: usize,
    n_features: usize,
    aggregate: Aggregate,
    post: PostTransform,
}

impl TreeEnsemble {
    fn leaf_of(&self, root: Child, x: &[f64]) -> usize {
        let mut c = root;
        loop {
            match c {
                Child::Leaf(l) => return l,
                Child::Node(i) => {
                    let n = &self.nodes[i];
                    let v = x[n.feature];
                    let hit = (n.missing_true && v.is_nan())
                        || match n.mode {
                            Mode::Leq => v <= n.split,
                            Mode::Lt => v < n.split,
                            Mode::Gte => v >= n.split,
                            Mode::Gt => v > n.split,
                            Mode::Eq => v == n.split,
                            Mode::Neq => v != n.split,
                            Mode::Member => self.sets[n.set].contains(&v),
                        };
                    c = if hit { n.on_true } else { n.on_false };
                }
            }
        }
    }
}

impl Op for TreeEnsemble {
    fn run(&self, inputs: &[Option<&Value>], _ctx: &RunContext) -> Result<Vec<Value>> {
        let x = tensor_in(inputs, 0, "TreeEnsemble")?;
        let (n, f) = match x.shape() {
            [n, f] => (*n, *f),
            [f] => (1, *f),
            s => {
                return Err(Error::ShapeMismatch(format!(
                    "TreeEnsemble: input must be [N, F], got {s:?}"
                )))
            }
        };
        if f < self.n_features {
            return Err(Error::ShapeMismatch(format!(
                "TreeEnsemble: input has {f} features, the trees read feature {}",
                self.n_features - 1
            )));
        }
        let xv = x.to_f64_vec()?;
        let nt = self.n_targets;
        let mut out = vec![0f64; n * nt];
        for b in 0..n {
            let row = &xv[b * f..(b + 1) * f];
            let res = &mut out[b * nt..(b + 1) * nt];
            let init = match self.aggregate {
                Aggregate::Min => f64::MAX,
                Aggregate::Max => f64::MIN,
                _ => 0.0,
            };
            res.fill(init);
            for &root in &self.roots {
                let l = self.leaf_of(root, row);
                let (w, t) = (self.leaf_weights[l], self.leaf_targets[l]);
                res[t] = match self.aggregate {
                    Aggregate::Sum => res[t] + w,
                    Aggregate::Average => res[t] + w / self.roots.len() as f64,
                    Aggregate::Min => res[t].min(w),
                    Aggregate::Max => res[t].max(w),
                };
            }
            match self.post {
                PostTransform::None => {}
                PostTransform::Logistic => {
                    res.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()))
                }
                PostTransform::Softmax | PostTransform::SoftmaxZero => {
                    let zero = self.post == PostTransform::SoftmaxZero;
                    let m = res.iter().copied().fold(f64::MIN, f64::max);
                    let mut s = 0.0;
                    for v in res.iter_mut() {
                        *v = if zero && *v == 0.0 {
                            0.0
                        } else {
                            (*v - m).exp()
                        };
                        s += *v;
                    }
                    res.iter_mut().for_each(|v| *v /= s);
                }
            }
        }
        let y = match x.dtype() {
            DType::Float64 => Tensor::from_slice(&[n, nt], &out)?,
            DType::Float16 => Tensor::from_vec(
                &[n, nt],
                out.iter().map(|v| half::f16::from_f64(*v)).collect(),
            )?,
            _ => Tensor::from_vec(&[n, nt], out.iter().map(|v| *v as f32).collect())?,
        };
        Ok(vec![y.into()])
    }
}

pub fn build_tree_ensemble(ctx: &BuildContext) -> Result<Box<dyn Op>> {
    // Each list may be given as ints/floats or as a tensor.
    let ints = |name: &str| -> Result<Vec<i64>> {
        match ctx.attr(name) {
            Some(AttrValue::Tensor(t)) => t.to_i64_vec(),
            _ => Ok(ctx.attr_ints(name)?.unwrap_or_default()),
        }
    };
    let floats = |name: &str| -> Result<Vec<f64>> {
        match ctx.attr(name) {
            Some(AttrValue::Tensor(t)) => t.to_f64_vec(),
            _ => Ok(ctx
                .attr_floats(name)?
                .unwrap_or_default()
                .into_iter()
                .map(|v| v as f64)
                .collect()),
        }
    };
    let splits = floats("nodes_splits")?;
    let features = ints("nodes_featureids")?;
    let modes = ints("nodes_modes")?;
    let true_ids = ints("nodes_truenodeids")?;
    let false_ids = ints("nodes_falsenodeids")?;
    let true_leaf = ints("nodes_trueleafs")?;
    let false_leaf = ints("nodes_falseleafs")?;
    let missing = ints("nodes_missing_value_tracks_true")?;
    let leaf_weights = floats("leaf_weights")?;
    let leaf_targets = ints("leaf_targetids")?;
    let roots = ints("tree_roots")?;
    let membership = floats("membership_values")?;
    let n_nodes = modes.len();
    for (name, len) in [
        ("nodes_splits", splits.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_trueleafs", true_leaf.len()),
        ("nodes_falseleafs", false_leaf.len()),
    ] {
        if len != n_nodes {
            return Err(ctx.invalid(format!(
                "{name} has {len} entries, nodes_modes has {n_nodes}"
            )));
        }
    }
    if leaf_targets.len() != leaf_weights.len() {
        return Err(ctx.invalid("leaf_targetids and leaf_weights differ in length"));
    }
    let n_targets = ctx
        .attr_opt_i("n_targets")?
        .ok_or_else(|| ctx.invalid("attribute 'n_targets' is required"))?;
    if n_targets < 1 {
        return Err(ctx.invalid(format!("n_targets must be positive, got {n_targets}")));
    }
    let n_targets = n_targets as usize;
    let child = |id: i64, leaf: bool| -> Result<Child> {
        let bound = if leaf { leaf_weights.len() } else { n_nodes };
        if id < 0 || id as usize >= bound {
            return Err(ctx.invalid(format!(
                "{} index {id} is out of range ({bound})",
                if leaf { "leaf" } else { "node" }
            )));
        }
        Ok(if leaf {
            Child::Leaf(id as usize)
        } else {
            Child::Node(id as usize)
        })
    };
    let mut nodes = Vec::with_capacity(n_nodes);
    for i in 0..n_nodes {
        let mode = match modes[i] {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            m => return Err(ctx.invalid(format!("unknown node mode {m}"))),
        };
        if features[i] < 0 {
            return Err(ctx.invalid(format!("negative feature id {}", features[i])));
        }
        nodes.push(TreeNode {
            mode,
            split: splits[i],
            set: usize::MAX,
            feature: features[i] as usize,
            missing_true: missing.get(i).is_some_and(|v| *v != 0),
            on_true: child(true_ids[i], true_leaf[i] != 0)?,
            on_false: child(false_ids[i], false_leaf[i] != 0)?,
        });
    }
    for &t in &leaf_targets {
        if t < 0 || t as usize >= n_targets {
            return Err(ctx.invalid(format!(
                "leaf target id {t} is out of range for {n_targets} targets"
            )));
        }
    }
    let mut root_children = Vec::with_capacity(roots.len());
    for &r in &roots {
        let ri = usize::try_from(r)
            .ok()
            .filter(|&r| r < n_nodes)
            .ok_or_else(|| ctx.invalid(format!("tree root {r} is out of range")))?;
        // A degenerate tree is a single leaf (the reference takes the root index as the leaf).
        let is_leaf = true_leaf[ri] != 0 && false_leaf[ri] != 0 && true_ids[ri] == false_ids[ri];
        root_children.push(if is_leaf {
            child(r, true)?
        } else {
            Child::Node(ri)
        });
    }
    // Membership sets are NaN-separated, consumed in depth-first (true branch first) order.
    let mut sets: Vec<Vec<f64>> = Vec::new();
    let mut cursor = membership.iter();
    let mut visited = vec![false; n_nodes];
    for &root in &root_children {
        let mut stack = vec![root];
        while let Some(c) = stack.pop() {
            let Child::Node(i) = c else { continue };
            if visited[i] {
                continue;
            }
            visited[i] = true;
            if nodes[i].mode == Mode::Member {
                let mut set = Vec::new();
                for &v in cursor.by_ref() {
                    if v.is_nan() {
                        break;
                    }
                    set.push(v);
                }
                nodes[i].set = sets.len();
                sets.push(set);
            }
            stack.push(nodes[i].on_false);
            stack.push(nodes[i].on_true);
        }
    }
    if nodes
        .iter()
        .any(|n| n.mode == Mode::Member && n.set == usize::MAX)
    {
        return Err(ctx.invalid("a set-membership node is not reachable from any root"));
    }
    let aggregate = match ctx.attr_i("aggregate_function", 1)? {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        a => return Err(ctx.invalid(format!("unknown aggregate_function {a}"))),
    };
    let post = match ctx.attr_i("post_transform", 0)? {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        p => return Err(ctx.invalid(format!("post_transform {p} is not supported"))),
    };
    let n_features = nodes.iter().map(|n| n.feature + 1).max().unwrap_or(0);
    Ok(Box::new(TreeEnsemble {
        nodes,
        sets,
        leaf_weights,
        leaf_targets: leaf_targets.into_iter().map(|t| t as usize).collect(),
        roots: root_children,
        n_targets,
        n_features,
        aggregate,
        post,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::graph::ir::AttrValue;
    use crate::ops::Value;
    use crate::tensor::Tensor;

    fn run_ml(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: Vec<Tensor>) -> Tensor {
        let mut n = node(op, attrs, &vec![true; inputs.len()], 1);
        n.domain = "ai.onnx.ml".into();
        let out = run_node(
            &n,
            5,
            inputs.into_iter().map(|t| Some(Value::Tensor(t))).collect(),
            &[],
        )
        .unwrap();
        out[0].as_tensor().unwrap().clone()
    }

    #[test]
    fn label_encoder() {
        let attrs = vec![
            (
                "keys_strings",
                AttrValue::Strings(vec![b"a".to_vec(), b"b".to_vec()]),
            ),
            ("values_int64s", AttrValue::Ints(vec![0, 1])),
            ("default_int64", AttrValue::Int(42)),
        ];
        let r = run_ml("LabelEncoder", attrs, vec![strs(&[3], &["b", "z", "a"])]);
        assert_eq!(ints(&r), vec![1, 42, 0]);
        let attrs = vec![
            ("keys_int64s", AttrValue::Ints(vec![7])),
            (
                "values_strings",
                AttrValue::Strings(vec![b"seven".to_vec()]),
            ),
        ];
        let r = run_ml("LabelEncoder", attrs, vec![i64s(&[7, 8])]);
        assert_eq!(texts(&r), vec!["seven", "_Unused"]);
    }

    #[test]
    fn feature_extractor_and_binarizer() {
        let r = run_ml(
            "ArrayFeatureExtractor",
            vec![],
            vec![iota(&[2, 3]), i64s(&[2, 0])],
        );
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(floats(&r), vec![2., 0., 5., 3.]);
        let r = run_ml(
            "Binarizer",
            vec![("threshold", AttrValue::Float(1.0))],
            vec![iota(&[3])],
        );
        assert_eq!(floats(&r), vec![0., 0., 1.]);
    }

    #[test]
    fn tree_ensemble_single_tree() {
        // The onnx test "single_tree": expected [[5.23, 0], [5.23, 0], [0, 12.12]] for x below.
        let t = |v: Vec<f64>| AttrValue::Tensor(Tensor::from_slice(&[v.len()], &v).unwrap());
        let attrs = vec![
            ("aggregate_function", AttrValue::Int(1)),
            ("leaf_targetids", AttrValue::Ints(vec![0, 1, 0, 1])),
            ("leaf_weights", t(vec![5.23, 12.12, -12.23, 7.21])),
            ("n_targets", AttrValue::Int(2)),
            ("nodes_falseleafs", AttrValue::Ints(vec![0, 1, 1])),
            ("nodes_falsenodeids", AttrValue::Ints(vec![2, 2, 3])),
            ("nodes_featureids", AttrValue::Ints(vec![0, 0, 0])),
            (
                "nodes_modes",
                AttrValue::Tensor(Tensor::from_slice(&[3], &[0u8, 0, 0]).unwrap()),
            ),
            ("nodes_splits", t(vec![3.14, 1.2, 4.2])),
            ("nodes_trueleafs", AttrValue::Ints(vec![0, 1, 1])),
            ("nodes_truenodeids", AttrValue::Ints(vec![1, 0, 1])),
            ("tree_roots", AttrValue::Ints(vec![0])),
        ];
        let x = Tensor::from_slice(&[3, 2], &[1.2f64, 3.4, -0.12, 1.66, 4.14, 1.77]).unwrap();
        let r = run_ml("TreeEnsemble", attrs, vec![x]);
        assert_eq!(
            r.as_slice::<f64>().unwrap(),
            &[5.23, 0., 5.23, 0., 0., 12.12]
        );
    }
}
