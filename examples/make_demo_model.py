"""Regenerate pyml_interop/data/demo_mlp.onnx: a small MLP (Gemm-Relu-Gemm-Softmax, batch
dimension symbolic) with seeded weights, bundled for `pyml-interop demo`.
Usage: python3 examples/make_demo_model.py"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
b1 = rng.standard_normal(32).astype(np.float32) * 0.1
w2 = rng.standard_normal((32, 10)).astype(np.float32) * 0.3
b2 = rng.standard_normal(10).astype(np.float32) * 0.1
nodes = [
    helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
    helper.make_node("Relu", ["h"], ["r"], name="relu"),
    helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], name="fc2"),
    helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
]
graph = helper.make_graph(
    nodes,
    "demo_mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
    [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pyml_interop-demo")
model.ir_version = 8
onnx.checker.check_model(model)
out = Path(__file__).resolve().parents[1] / "pyml_interop" / "data" / "demo_mlp.onnx"
onnx.save(model, str(out))
# The weights again, for the demo's independent numpy check (no onnx needed at run time).
np.savez(out.with_name("demo_mlp_weights.npz"), w1=w1, b1=b1, w2=w2, b2=b2)
print(f"wrote {out} ({out.stat().st_size} bytes)")
