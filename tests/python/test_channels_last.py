"""Chains of pointwise and depthwise convolutions on small maps run channels-last on AVX-512
CPUs (rust_core/src/optimizer/layout.rs): the results equal onnxruntime's for inverted
residual blocks with squeeze-excitation (GlobalAveragePool or ReduceMean), residual Adds,
strided and 5x5 depthwise windows, several images and threads, values read outside the region
and graph outputs inside it; the rewrite is observable in the per-operator profile, and large
maps or PYML_INTEROP_NO_LAYOUT keep the NCHW operators."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyml_interop as pmi

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT


def _avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _block(c: int, h: int, k: int, stride: int, mean_op: str, opset: int) -> bytes:
    """x [N, c, h, h] -> 1x1 expand (HardSwish) -> depthwise k x k / stride (Relu) -> SE (pool,
    1x1, Relu, 1x1, Sigmoid, Mul) -> 1x1 project -> (+ x when stride 1) -> y, with the pooled
    SE value a second output and the expanded map read by a node outside the region."""
    rng = np.random.default_rng(7)
    e, s = 3 * c, max(c // 2, 1)

    def const(name, shape, scale=0.3):
        return helper.make_tensor(name, F, shape, (rng.standard_normal(shape) * scale).astype(np.float32).flatten().tolist())

    inits = [const("we", [e, c, 1, 1]), const("be", [e]), const("wd", [e, 1, k, k]), const("bd", [e]),
             const("w1", [s, e, 1, 1]), const("b1", [s]), const("w2", [e, s, 1, 1]), const("b2", [e]),
             const("wp", [c, e, 1, 1]), const("bp", [c])]
    if mean_op == "GlobalAveragePool":
        pool = helper.make_node("GlobalAveragePool", ["d"], ["p"])
    elif opset >= 18:
        inits.append(helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]))
        pool = helper.make_node("ReduceMean", ["d", "axes"], ["p"], keepdims=1)
    else:
        pool = helper.make_node("ReduceMean", ["d"], ["p"], axes=[-1, -2], keepdims=1)
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["a"]),
             helper.make_node("HardSigmoid", ["a"], ["ag"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["a", "ag"], ["ea"]),
             helper.make_node("Conv", ["ea", "wd", "bd"], ["dc"], group=e, kernel_shape=[k, k], strides=[stride] * 2, pads=[k // 2] * 4),
             helper.make_node("Relu", ["dc"], ["d"]),
             pool,
             helper.make_node("Conv", ["p", "w1", "b1"], ["q"]),
             helper.make_node("Relu", ["q"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["t"]),
             helper.make_node("Sigmoid", ["t"], ["u"]),
             helper.make_node("Mul", ["d", "u"], ["v"]),
             helper.make_node("Conv", ["v", "wp", "bp"], ["z"]),
             helper.make_node("ReduceMax", ["ea"], ["emax"], keepdims=0)]
    outputs = ["y", "p", "emax"]
    if stride == 1:
        nodes.append(helper.make_node("Add", ["z", "x"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["z"], ["y"]))
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", F, ["N", c, h, h])],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


CASES = [(24, 6, 3, 1, "GlobalAveragePool", 13), (40, 14, 5, 1, "ReduceMean", 13),
         (20, 14, 3, 2, "ReduceMean", 18), (17, 7, 5, 1, "GlobalAveragePool", 17)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES)
def test_blocks_match_onnxruntime(case, batch, threads):
    model = _block(*case)
    c, h = case[0], case[1]
    x = np.random.default_rng(batch).standard_normal((batch, c, h, h)).astype(np.float32)
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    got = pmi.InferenceSession(model, so).run(None, {"x": x})
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _profile(tmp_path, model: bytes, shape, env_extra=None) -> dict[str, int]:
    """Per-operator call counts of one run (PYML_INTEROP_PROFILE, printed at session drop)."""
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    script = textwrap.dedent(f"""
        import numpy as np, pyml_interop as pmi
        s = pmi.InferenceSession({str(path)!r})
        s.run(None, {{"x": np.ones({tuple(shape)!r}, np.float32)}})
        del s
    """)
    env = dict(os.environ, PYML_INTEROP_PROFILE="1", **(env_extra or {}))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s+(\w+)\s+[\d.]+\s+(\d+)\s", r.stderr, re.M)}


@pytest.mark.skipif(not _avx512(), reason="channels-last regions are made on AVX-512 CPUs only")
def test_the_region_is_made_on_small_maps_only(tmp_path):
    small = _profile(tmp_path, _block(24, 6, 3, 1, "GlobalAveragePool", 13), (1, 24, 6, 6))
    # Five convolutions and the pool channels-last; x in, and out: the pooled output, the
    # projection before the residual Add and the expanded map read by ReduceMax.
    assert small.get("NhwcConv") == 5 and small.get("NhwcGlobalAveragePool") == 1
    assert small.get("Transpose") == 4 and "Conv" not in small and "FusedConv" not in small
    off = _profile(tmp_path, _block(24, 6, 3, 1, "GlobalAveragePool", 13), (1, 24, 6, 6), {"PYML_INTEROP_NO_LAYOUT": "1"})
    assert "NhwcConv" not in off and "Transpose" not in off
    large = _profile(tmp_path, _block(8, 56, 3, 1, "GlobalAveragePool", 13), (1, 8, 56, 56))
    assert "NhwcConv" not in large and "Transpose" not in large
