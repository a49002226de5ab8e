//! Neural-network operators: MatMul/Gemm, convolutions, pooling, normalizations, recurrent layers, resize, quantization.
//!
//! Float operators compute in `f32` or `f64` (generic over [`crate::kernels::float::Float`]);
//! `float16`/`bfloat16` tensors are widened to `f32` on entry and narrowed on exit
//! ([`float_io`]). Heavy products go through [`crate::kernels::gemm`].

use super::Registry;

pub mod attention;
pub mod col2im;
pub mod conv;
pub mod dropout;
pub mod float_io;
pub mod grid;
pub mod loss;
pub mod matmul;
pub mod nms;
pub mod normalization;
pub mod pool;
pub mod quantize;
pub mod resize;
pub mod rnn;
pub mod roi;
pub mod window;

/// Register this family's operators.
pub fn register(r: &mut Registry) {
    matmul::register(r);
    conv::register(r);
    pool::register(r);
    normalization::register(r);
    rnn::register(r);
    quantize::register(r);
    dropout::register(r);
    resize::register(r);
    loss::register(r);
    attention::register(r);
    col2im::register(r);
    grid::register(r);
    nms::register(r);
    roi::register(r);
}

#[cfg(test)]
pub(crate) mod testing {
    //! Run one node through the registry, as the executor would.
    use crate::error::{Error, Result};
    use crate::executor::pool::ThreadPool;
    use crate::graph::ir::{AttrValue, Node};
    use crate::ops::{registry, BuildContext, RunContext, Value};
    use crate::tensor::Tensor;

    /// Build `op_type` (default domain, `opset`) with `attrs`, run it on `inputs` (None: omitted),
    /// and return its outputs as tensors.
    pub fn run_op(
        op_type: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Option<Tensor>>,
        n_outputs: usize,
    ) -> Result<Vec<Tensor>> {
        run_op_with(op_type, opset, attrs, inputs, &[], n_outputs, 2)
    }

    /// Like [`run_op`], with the inputs at positions `consts` known at build time, on a pool of
    /// `threads` threads ([`run_op`]: none constant, 2 threads).
    pub fn run_op_with(
        op_type: &str,
        opset: i64,
        attrs: Vec<(&str, AttrValue)>,
        inputs: Vec<Option<Tensor>>,
        consts: &[usize],
        n_outputs: usize,
        threads: usize,
    ) -> Result<Vec<Tensor>> {
        let node = Node {
            name: "n".into(),
            op_type: op_type.into(),
            domain: String::new(),
            inputs: inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.is_some() {
                        format!("i{i}")
                    } else {
                        String::new()
                    }
                })
                .collect(),
            outputs: (0..n_outputs).map(|i| format!("o{i}")).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            doc_string: String::new(),
        };
        let compile = |_: &std::sync::Arc<crate::graph::ir::Graph>| -> Result<std::sync::Arc<dyn crate::ops::SubgraphRunner>> {
            Err(Error::Internal("no subgraphs in tests".into()))
        };
        let const_inputs = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if consts.contains(&i) {
                    t.as_ref()
                } else {
                    None
                }
            })
            .collect();
        let ctx = BuildContext {
            node: &node,
            opset,
            const_inputs,
            compile: &compile,
        };
        let build = registry()
            .get("", op_type)
            .ok_or_else(|| Error::UnsupportedOperator(op_type.into()))?;
        let op = build(&ctx)?;
        let values: Vec<Option<Value>> = inputs.into_iter().map(|t| t.map(Value::Tensor)).collect();
        let refs: Vec<Option<&Value>> = values.iter().map(|v| v.as_ref()).collect();
        let pool = ThreadPool::new(threads);
        let out = op.run(&refs, &RunContext { pool: &pool })?;
        out.into_iter().map(|v| v.into_tensor()).collect()
    }

    /// An f32 tensor.
    pub fn tf(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_slice(shape, v).unwrap()
    }

    /// Assert two f32 slices agree to `tol` (absolute + relative).
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()),
                "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
            );
        }
    }

    pub fn ints(v: &[i64]) -> AttrValue {
        AttrValue::Ints(v.to_vec())
    }
}
