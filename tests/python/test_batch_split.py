"""Batches of large images run one image per run when the graph treats images independently
(rust_core/src/executor/batch.rs), and on several threads batches of smaller images run as one
block of images per thread: results equal the whole-batch ones (checked against onnxruntime),
the split is observable in the per-operator call counts, graphs that mix the images run whole,
and a split run that fails falls back to the whole batch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyml_interop as pmi

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT
# 4 x 128 x 128 floats: 256 KB per image, the smallest image the engine splits.
C, H = 4, 128


def _const(name, arr):
    return helper.make_tensor(name, F, arr.shape, arr.flatten().tolist())


def _model(nodes, inits, outputs, shape=(None, C, H, H)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["N", *shape[1:]])],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _classifier(head_axis: int = 1, first_stride: int = 1) -> bytes:
    """Conv+Relu -> MaxPool -> 1x1 Conv -> per-channel scale -> GlobalAveragePool -> Flatten ->
    Gemm -> Softmax(head_axis); the pooled map is a second output. The first convolution's
    output is 16 x 128 x 128 floats per image (1 MB, the smallest that splits) at stride 1."""
    rng = np.random.default_rng(3)
    inits = [_const("w1", rng.standard_normal((16, C, 3, 3)).astype(np.float32) * 0.2),
             _const("b1", rng.standard_normal(16).astype(np.float32)),
             _const("w2", rng.standard_normal((6, 16, 1, 1)).astype(np.float32) * 0.3),
             _const("s", rng.standard_normal((1, 6, 1, 1)).astype(np.float32)),
             _const("wg", rng.standard_normal((5, 6)).astype(np.float32)),
             _const("bg", rng.standard_normal(5).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[first_stride] * 2, pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["pool", "w2"], ["c2"]),
             helper.make_node("Mul", ["c2", "s"], ["m"]),
             helper.make_node("GlobalAveragePool", ["m"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=head_axis)]
    return _model(nodes, inits, ["prob", "pool"])


def _calls(model: bytes, batch: int, threads: int, tmp_path, split: str = "1") -> dict[str, int]:
    """Per-operator call counts of one run (PYML_INTEROP_PROFILE, printed at session drop)."""
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    script = textwrap.dedent(f"""
        import numpy as np, pyml_interop as pmi
        so = pmi.SessionOptions(); so.intra_op_num_threads = {threads}
        s = pmi.InferenceSession({str(path)!r}, so)
        x = np.random.default_rng(0).standard_normal(({batch}, {C}, {H}, {H})).astype(np.float32)
        s.run(None, {{"x": x}})
    """)
    env = dict(os.environ, PYML_INTEROP_PROFILE="1", PYML_INTEROP_BATCH_SPLIT=split)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\w+)\s+[\d.]+\s+(\d+)\s", r.stderr, re.M)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [2, 3, 4, 5])
@pytest.mark.parametrize("first_stride", [1, 2])
def test_image_batches_match_onnxruntime(threads, batch, first_stride):
    # Stride 1: one run per image; stride 2 (smaller activations) on 2 threads and an even
    # batch: a block of images per thread; otherwise the whole batch.
    model = _classifier(first_stride=first_stride)
    x = np.random.default_rng(batch).standard_normal((batch, C, H, H)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    s = pmi.InferenceSession(model, so)
    got = s.run(None, {"x": x})
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # Each image alone gives its block of the batch's outputs.
    for i in range(batch):
        one = s.run(None, {"x": x[i:i + 1]})
        for g, o in zip(got, one):
            np.testing.assert_allclose(g[i:i + 1], o, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_split_runs_once_per_image_and_can_be_turned_off(threads, tmp_path):
    model = _classifier()
    assert _calls(model, 3, threads, tmp_path)["Softmax"] == 3
    assert _calls(model, 3, threads, tmp_path, split="0")["Softmax"] == 1
    assert _calls(model, 1, threads, tmp_path)["Softmax"] == 1
    # Smaller first activations (stride 2: 256 KB per image) run whole on one thread, and on
    # two threads when the batch is odd; an even batch runs as a block of images per thread.
    small = _classifier(first_stride=2)
    assert _calls(small, 3, threads, tmp_path)["Softmax"] == 1
    assert _calls(small, 4, threads, tmp_path)["Softmax"] == threads
    assert _calls(small, 4, threads, tmp_path, split="0")["Softmax"] == 1


def test_graphs_mixing_the_images_run_whole(tmp_path):
    # Softmax across the batch axis: every image's result depends on the others.
    model = _classifier(head_axis=0)
    x = np.random.default_rng(1).standard_normal((3, C, H, H)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = pmi.InferenceSession(model).run(None, {"x": x})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert _calls(model, 3, 1, tmp_path)["Softmax"] == 1


def test_failed_split_falls_back_to_the_whole_batch():
    # Reshape(-1, 8) of 4 x 257 x 257 values per image (4 times an odd number): each image alone
    # cannot be reshaped, the batch of two can. The result is the whole batch's.
    side = 257
    inits = [_const("w", np.full((4, 1, 1, 1), 2.0, np.float32)),
             helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 8])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Reshape", ["c", "shape"], ["y"])]
    model = _model(nodes, inits, ["y"], shape=(None, 1, side, side))
    x = np.random.default_rng(2).standard_normal((2, 1, side, side)).astype(np.float32)
    got = pmi.InferenceSession(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, np.broadcast_to(2 * x, (2, 4, side, side)).reshape(-1, 8))
    # A batch of one gets the engine's own error, naming the node.
    with pytest.raises(pmi.Error, match="Reshape"):
        pmi.InferenceSession(model).run(None, {"x": x[:1]})
