//! Shape and data-movement operators: Shape, Reshape, Transpose, Concat, Slice, Gather, Pad, ...
//!
//! Files by kind (see `register` for the operator -> file map):
//! - `shape.rs`: Identity, Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze (no copies)
//! - `constant.rs`: Constant, ConstantOfShape, EyeLike, Range
//! - `transpose.rs`: Transpose, DepthToSpace, SpaceToDepth
//! - `concat.rs`: Concat, Split; `slice.rs`: Slice
//! - `gather.rs`: Gather, GatherElements, GatherND, Compress
//! - `scatter.rs`: ScatterND, ScatterElements, Scatter, TensorScatter
//! - `expand.rs`: Expand, Tile; `pad.rs`: Pad, CenterCropPad
//! - one file each: NonZero, TopK, Unique, OneHot, Trilu, ReverseSequence
//! - `string.rs`: StringConcat, StringSplit, StringNormalizer, RegexFullMatch
//! - `ml.rs`: ai.onnx.ml LabelEncoder, ArrayFeatureExtractor, Binarizer, TreeEnsemble
//! - `elements.rs`: the machinery every data-movement kernel is written over (numeric elements
//!   moved by width, strings by clone; parallel rows; strided walks; numeric dispatch).

pub mod concat;
pub mod constant;
pub mod elements;
pub mod expand;
pub mod gather;
pub mod ml;
pub mod nonzero;
pub mod one_hot;
pub mod pad;
pub mod reverse_sequence;
pub mod scatter;
pub mod shape;
pub mod slice;
pub mod string;
pub mod topk;
pub mod transpose;
pub mod trilu;
pub mod unique;

use super::Registry;

/// Register this family's operators.
pub fn register(r: &mut Registry) {
    r.add("Identity", shape::build_identity);
    r.add("Shape", shape::build_shape);
    r.add("Size", shape::build_size);
    r.add("Reshape", shape::build_reshape);
    r.add("Flatten", shape::build_flatten);
    r.add("Squeeze", shape::build_squeeze);
    r.add("Unsqueeze", shape::build_unsqueeze);
    r.add("Transpose", transpose::build_transpose);
    r.add("DepthToSpace", transpose::build_depth_to_space);
    r.add("SpaceToDepth", transpose::build_space_to_depth);
    r.add("Concat", concat::build_concat);
    r.add("Split", concat::build_split);
    r.add("Slice", slice::build_slice);
    r.add("Gather", gather::build_gather);
    r.add("GatherElements", gather::build_gather_elements);
    r.add("GatherND", gather::build_gather_nd);
    r.add("Compress", gather::build_compress);
    r.add("Constant", constant::build_constant);
    r.add("ConstantOfShape", constant::build_constant_of_shape);
    r.add("EyeLike", constant::build_eye_like);
    r.add("Range", constant::build_range);
    r.add("Expand", expand::build_expand);
    r.add("Tile", expand::build_tile);
    r.add("Pad", pad::build_pad);
    r.add("CenterCropPad", pad::build_center_crop_pad);
    r.add("ScatterND", scatter::build_scatter_nd);
    r.add("ScatterElements", scatter::build_scatter_elements);
    r.add("Scatter", scatter::build_scatter);
    r.add("TensorScatter", scatter::build_tensor_scatter);
    r.add("NonZero", nonzero::build_nonzero);
    r.add("TopK", topk::build_topk);
    r.add("Unique", unique::build_unique);
    r.add("OneHot", one_hot::build_one_hot);
    r.add("Trilu", trilu::build_trilu);
    r.add("ReverseSequence", reverse_sequence::build_reverse_sequence);
    r.add("StringConcat", string::build_string_concat);
    r.add("StringSplit", string::build_string_split);
    r.add("StringNormalizer", string::build_string_normalizer);
    r.add("RegexFullMatch", string::build_regex_full_match);
    r.add_domain("ai.onnx.ml", "LabelEncoder", ml::build_label_encoder);
    r.add_domain(
        "ai.onnx.ml",
        "ArrayFeatureExtractor",
        ml::build_array_feature_extractor,
    );
    r.add_domain("ai.onnx.ml", "Binarizer", ml::build_binarizer);
    r.add_domain("ai.onnx.ml", "TreeEnsemble", ml::build_tree_ensemble);
}

/// Helpers for the unit tests of this family and of `control`: build one node through the
/// registry and run it.
#[cfg(test)]
pub(crate) mod testing {
    use crate::error::Result;
    use crate::executor::plan::{node_captures, Plan};
    use crate::executor::pool::ThreadPool;
    use crate::graph::ir::{AttrValue, Node};
    use crate::ops::{registry, BuildContext, RunContext, SubgraphRunner, Value};
    use crate::tensor::Tensor;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    /// A node of the default domain with inputs `i0, i1, ...` ("" where `present[k]` is false)
    /// and outputs `o0, o1, ...`.
    pub fn node(op: &str, attrs: Vec<(&str, AttrValue)>, present: &[bool], n_out: usize) -> Node {
        Node {
            name: format!("test_{op}"),
            op_type: op.to_string(),
            domain: String::new(),
            inputs: present
                .iter()
                .enumerate()
                .map(|(i, p)| if *p { format!("i{i}") } else { String::new() })
                .collect(),
            outputs: (0..n_out).map(|i| format!("o{i}")).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            doc_string: String::new(),
        }
    }

    /// Builds `node` at `opset` and runs it on `inputs`; `captured` gives outer-scope values
    /// read by its subgraphs.
    pub fn run_node(
        node: &Node,
        opset: i64,
        inputs: Vec<Option<Value>>,
        captured: &[(&str, Value)],
    ) -> Result<Vec<Value>> {
        let opsets = Arc::new(HashMap::from([
            (String::new(), opset),
            ("ai.onnx.ml".to_string(), 5),
        ]));
        let mut outer: HashSet<String> = node
            .inputs
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        outer.extend(captured.iter().map(|(n, _)| n.to_string()));
        let compile = |g: &Arc<crate::graph::ir::Graph>| -> Result<Arc<dyn SubgraphRunner>> {
            Ok(Arc::new(Plan::build(g, &opsets, &outer)?) as Arc<dyn SubgraphRunner>)
        };
        let build = registry()
            .get(&node.domain, &node.op_type)
            .expect("operator registered");
        let ctx = BuildContext {
            node,
            opset,
            const_inputs: vec![None; node.inputs.len()],
            compile: &compile,
        };
        let op = build(&ctx)?;
        let mut all: Vec<Option<Value>> = inputs;
        for name in node_captures(node) {
            let v = captured
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone());
            if v.is_none() {
                // Captured from the node's own explicit inputs.
                let k = node
                    .inputs
                    .iter()
                    .position(|s| *s == name)
                    .expect("captured name is known");
                let v = all[k].clone();
                all.push(v);
            } else {
                all.push(v);
            }
        }
        let refs: Vec<Option<&Value>> = all.iter().map(|v| v.as_ref()).collect();
        let pool = ThreadPool::new(2);
        op.run(&refs, &RunContext { pool: &pool })
    }

    /// Runs an operator on tensors (all present).
    pub fn run(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Tensor>,
        n_out: usize,
    ) -> Result<Vec<Value>> {
        let n = node(op, attrs, &vec![true; inputs.len()], n_out);
        run_node(
            &n,
            opset,
            inputs.into_iter().map(|t| Some(Value::Tensor(t))).collect(),
            &[],
        )
    }

    /// Runs an operator with optional inputs (None: omitted).
    pub fn run_opt(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Option<Tensor>>,
        n_out: usize,
    ) -> Result<Vec<Value>> {
        let present: Vec<bool> = inputs.iter().map(|t| t.is_some()).collect();
        let n = node(op, attrs, &present, n_out);
        run_node(
            &n,
            opset,
            inputs.into_iter().map(|t| t.map(Value::Tensor)).collect(),
            &[],
        )
    }

    /// Runs a one-output operator, expecting success.
    pub fn run1(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Tensor>,
    ) -> Tensor {
        let mut v = run(op, opset, attrs, inputs, 1).unwrap_or_else(|e| panic!("{op} failed: {e}"));
        v.remove(0).into_tensor().expect("a tensor output")
    }

    /// The values of an integer tensor.
    pub fn ints(t: &Tensor) -> Vec<i64> {
        t.to_i64_vec().expect("integer tensor")
    }

    /// The values of a float tensor.
    pub fn floats(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().expect("float tensor").to_vec()
    }

    /// An f32 tensor of `shape` holding 0, 1, 2, ...
    pub fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_slice(shape, &(0..n).map(|v| v as f32).collect::<Vec<_>>()).unwrap()
    }

    /// An int64 1-D tensor.
    pub fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_slice(&[v.len()], v).unwrap()
    }

    /// A string tensor from text.
    pub fn strs(shape: &[usize], v: &[&str]) -> Tensor {
        Tensor::from_strings(shape, v.iter().map(|s| s.as_bytes().to_vec()).collect()).unwrap()
    }

    /// The text of a string tensor.
    pub fn texts(t: &Tensor) -> Vec<String> {
        t.strings()
            .unwrap()
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }
}
