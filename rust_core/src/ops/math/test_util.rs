//! Helpers for this family's unit tests: build an operator from a node and run it.

use crate::executor::pool::ThreadPool;
use crate::graph::ir::{AttrValue, Node};
use crate::ops::{BuildContext, RunContext, Value};
use crate::tensor::Tensor;
use crate::Result;

/// The opset the tests build operators for unless they say otherwise.
pub const OPSET: i64 = 21;

pub fn int(v: i64) -> AttrValue {
    AttrValue::Int(v)
}
pub fn ints(v: &[i64]) -> AttrValue {
    AttrValue::Ints(v.to_vec())
}
pub fn float(v: f32) -> AttrValue {
    AttrValue::Float(v)
}
pub fn string(v: &str) -> AttrValue {
    AttrValue::String(v.as_bytes().to_vec())
}

pub fn t_f32(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_slice(shape, v).unwrap()
}
pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.as_slice::<f32>().unwrap().to_vec()
}

/// Run `op_type` at `opset` with attributes and (optional) inputs; all outputs.
pub fn run_full(op_type: &str, opset: i64, attrs: &[(&str, AttrValue)], inputs: &[Option<Tensor>]) -> Result<Vec<Value>> {
    let node = Node {
        name: "n".into(),
        op_type: op_type.into(),
        domain: String::new(),
        inputs: inputs.iter().enumerate().map(|(i, t)| if t.is_some() { format!("i{i}") } else { String::new() }).collect(),
        outputs: vec!["o".into()],
        attrs: attrs.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
        doc_string: String::new(),
    };
    let build = crate::ops::registry().get("", op_type).expect("operator registered");
    let compile = |_: &std::sync::Arc<crate::graph::ir::Graph>| -> Result<std::sync::Arc<dyn crate::ops::SubgraphRunner>> {
        unreachable!()
    };
    let ctx = BuildContext { node: &node, opset, const_inputs: vec![None; inputs.len()], compile: &compile };
    let op = build(&ctx)?;
    let values: Vec<Option<Value>> = inputs.iter().map(|t| t.clone().map(Value::Tensor)).collect();
    let refs: Vec<Option<&Value>> = values.iter().map(|v| v.as_ref()).collect();
    let pool = ThreadPool::new(2);
    op.run(&refs, &RunContext { pool: &pool })
}

/// Run with all inputs present at [`OPSET`]; the outputs.
pub fn run(op_type: &str, attrs: &[(&str, AttrValue)], inputs: &[Tensor]) -> Result<Vec<Value>> {
    let ins: Vec<Option<Tensor>> = inputs.iter().cloned().map(Some).collect();
    run_full(op_type, OPSET, attrs, &ins)
}

/// Run and return the first output as a tensor (panics on error: tests only).
pub fn run1(op_type: &str, attrs: &[(&str, AttrValue)], inputs: &[Tensor]) -> Tensor {
    run(op_type, attrs, inputs).unwrap().remove(0).into_tensor().unwrap()
}

/// Assert two float slices agree within `tol` (NaN equals NaN).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol;
        assert!(ok, "element {i}: got {g}, want {w} (got {got:?}, want {want:?})");
    }
}
