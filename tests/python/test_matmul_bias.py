"""MatMul followed by the Add of a constant bias per column (PyTorch's Linear export) runs as
one product with the bias added in the GEMM's epilogue (rust_core/src/optimizer/fuse.rs,
``fuse_matmul_bias``): results equal onnxruntime's on every path of the product (one row: the
vector paths; several: packed weights, split between threads), with the bias first or second,
and a bias input overridden at run time is honoured."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pyml_interop as pmi

ort = pytest.importorskip("onnxruntime")


def _linear(k: int, n: int, bias_first: bool, bias_is_input: bool = False) -> bytes:
    rng = np.random.default_rng(k * 31 + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    add = ["b", "y"] if bias_first else ["y", "b"]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", add, ["z"]),
             helper.make_node("Relu", ["z"], ["out"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    if bias_is_input:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [n]))
    g = helper.make_graph(nodes, "linear", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (2, 50, 64), (197, 64)])
@pytest.mark.parametrize("bias_first", [False, True])
def test_linear_layers_match_onnxruntime(threads, shape, bias_first):
    model = _linear(64, 200, bias_first)
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    got = pmi.InferenceSession(model, so).run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_bias_fed_at_run_time_is_used():
    model = _linear(16, 40, False, bias_is_input=True)
    x = np.random.default_rng(5).standard_normal((9, 16)).astype(np.float32)
    b = np.linspace(-3, 3, 40).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x, "b": b})[0]
    got = pmi.InferenceSession(model).run(None, {"x": x, "b": b})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
