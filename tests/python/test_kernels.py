"""Optimized paths against onnxruntime: fused Conv + activation patterns, the strided depthwise
kernel, pooling fast paths and vectorized activations, each on every SIMD level this CPU has
(forced with PYML_INTEROP_ISA in a subprocess, since the level is read once per process).

Reference outputs come from onnxruntime, never from our own earlier output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyml_interop as pmi

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _vi(name, shape, dt=F):
    return helper.make_tensor_value_info(name, dt, shape)


def _const(name, arr):
    return helper.make_tensor(name, TensorProto.FLOAT if arr.dtype == np.float32 else TensorProto.DOUBLE,
                              arr.shape, arr.flatten().tolist())


def _compare(model: bytes, feeds: dict, rtol=1e-5, atol=1e-5):
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = pmi.InferenceSession(model).run(None, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def _compare_runs(model: bytes, feeds: dict, threads: int, shape: tuple, runs=2, tol=1e-4):
    """The first output of `runs` runs of one session on `threads` threads against onnxruntime's."""
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    sess = pmi.InferenceSession(model, so)
    for _ in range(runs):
        got = sess.run(None, feeds)[0]
        assert got.shape == shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


ACTIVATIONS = {
    "relu": lambda y, o: [helper.make_node("Relu", [y], [o])],
    "leaky": lambda y, o: [helper.make_node("LeakyRelu", [y], [o], alpha=0.3)],
    "sigmoid": lambda y, o: [helper.make_node("Sigmoid", [y], [o])],
    "tanh": lambda y, o: [helper.make_node("Tanh", [y], [o])],
    "hardsigmoid": lambda y, o: [helper.make_node("HardSigmoid", [y], [o], alpha=0.25, beta=0.4)],
    "hardswish": lambda y, o: [helper.make_node("HardSwish", [y], [o])],
    "clip": lambda y, o: [helper.make_node("Clip", [y, "lo", "hi"], [o])],
    "silu": lambda y, o: [helper.make_node("Sigmoid", [y], [y + "_s"]), helper.make_node("Mul", [y, y + "_s"], [o])],
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["dense3x3", "pointwise", "depthwise_s2", "depthwise_5x5_dil"])
def test_fused_conv_activation_matches_onnxruntime(act, kind):
    rng = np.random.default_rng(7)
    c, m = 8, 8
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    wshape = (m, c, 3, 3)
    if kind == "pointwise":
        attrs, wshape = dict(kernel_shape=[1, 1]), (m, c, 1, 1)
    elif kind == "depthwise_s2":
        attrs = dict(kernel_shape=[3, 3], pads=[1, 0, 1, 1], strides=[2, 2], group=c)
        wshape = (c, 1, 3, 3)
    elif kind == "depthwise_5x5_dil":
        attrs = dict(kernel_shape=[5, 5], pads=[2, 3, 2, 1], strides=[1, 2], dilations=[1, 2], group=c)
        wshape = (c, 1, 5, 5)
    w = (rng.standard_normal(wshape) * 0.5).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)] + ACTIVATIONS[act]("y", "out")
    inits = [_const("w", w), _const("b", b), _const("lo", np.array(-0.5, np.float32)),
             _const("hi", np.array(1.5, np.float32))]
    model = _model(nodes, [_vi("x", [2, c, 13, 17])], [_vi("out", None)], inits)
    x = (rng.standard_normal((2, c, 13, 17)) * 2).astype(np.float32)
    _compare(model, {"x": x})


def test_conv_output_read_twice_is_not_fused_and_stays_correct():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Add", ["y", "r"], ["out"])]
    model = _model(nodes, [_vi("x", [1, 3, 9, 9])], [_vi("out", None), _vi("y", None)], [_const("w", w)])
    _compare(model, {"x": rng.standard_normal((1, 3, 9, 9)).astype(np.float32)})


def test_fused_conv_float64_uses_the_generic_path():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], group=4, strides=[2, 2]),
             helper.make_node("Relu", ["y"], ["out"])]
    D = TensorProto.DOUBLE
    model = _model(nodes, [_vi("x", [1, 4, 9, 9], D)], [_vi("out", None, D)], [_const("w", w)])
    x = rng.standard_normal((1, 4, 9, 9))
    got = pmi.InferenceSession(model).run(None, {"x": x})[0]
    # Reference: a direct loop.
    xp = x[0]
    want = np.zeros((4, 4, 4))
    for ch in range(4):
        for i in range(4):
            for j in range(4):
                want[ch, i, j] = max(0.0, float((xp[ch, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[ch, 0]).sum()))
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 1, 1], dilations=[2, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    # Interior columns (every tap inside) take the windowed-row path; borders the per-column one.
    ("MaxPool", dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])),
    ("MaxPool", dict(kernel_shape=[2, 4], strides=[1, 3], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2, 4], strides=[2, 3], pads=[0, 2, 1, 3], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[1, 12], strides=[1, 1])),
])
def test_pool_fast_path_matches_onnxruntime(op, attrs):
    rng = np.random.default_rng(3)
    model = _model([helper.make_node(op, ["x"], ["out"], **attrs)], [_vi("x", [2, 5, 15, 12])], [_vi("out", None)])
    _compare(model, {"x": rng.standard_normal((2, 5, 15, 12)).astype(np.float32)})


_ISA_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, pyml_interop as pmi
    from onnx import helper, TensorProto
    ops = ["Exp", "Erf", "Sigmoid", "Tanh", "Relu", "HardSwish"]
    g = helper.make_graph([helper.make_node(o, ["x"], [o]) for o in ops], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4099])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ops])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = np.linspace(-30, 30, 4099).astype(np.float32)
    np.save(sys.argv[1], np.stack(pmi.InferenceSession(m).run(None, {"x": x})))
""")


def test_vectorized_activations_agree_across_isa_levels(tmp_path):
    results = {}
    for isa in ["scalar", "avx2", "avx512"]:
        out = tmp_path / f"{isa}.npy"
        env = dict(os.environ, PYML_INTEROP_ISA=isa)
        subprocess.run([sys.executable, "-c", _ISA_SCRIPT, str(out)], check=True, env=env)
        results[isa] = np.load(out)
    x = np.linspace(-30, 30, 4099).astype(np.float64)
    from math import erf
    ref = np.stack([np.exp(x), np.vectorize(erf)(x), 1 / (1 + np.exp(-x)), np.tanh(x), np.maximum(x, 0),
                    x * np.clip(x / 6 + 0.5, 0, 1)])
    for isa, r in results.items():
        np.testing.assert_allclose(r, ref, rtol=2e-6, atol=1e-6, err_msg=isa)


@pytest.mark.parametrize("scale_first", [True, False])
def test_tf2onnx_pad_conv_batchnorm_relu6_chain_folds_and_matches(scale_first):
    """tf2onnx's pattern: Pad -> depthwise Conv (no bias) -> Mul(scale) -> Add(shift) -> Clip(0, 6),
    plus a dense Conv whose bias gets the Add folded, and per-channel constants shaped [C,1,1]."""
    rng = np.random.default_rng(5)
    c = 6
    w_dw = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    w_pw = rng.standard_normal((c, c, 1, 1)).astype(np.float32)
    b_pw = rng.standard_normal(c).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, (c, 1, 1)).astype(np.float32)
    shift = rng.standard_normal((c, 1, 1)).astype(np.float32)
    first, second = (("Mul", "scale"), ("Add", "shift")) if scale_first else (("Add", "shift"), ("Mul", "scale"))
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["xp"]),
        helper.make_node("Conv", ["xp", "w_dw"], ["y"], kernel_shape=[3, 3], strides=[2, 2], group=c),
        helper.make_node(first[0], ["y", first[1]], ["y1"]),
        helper.make_node(second[0], [second[1], "y1"], ["y2"]),
        helper.make_node("Clip", ["y2", "lo", "hi"], ["y3"]),
        helper.make_node("Conv", ["y3", "w_pw", "b_pw"], ["z"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["z", "shift"], ["out"]),
    ]
    inits = [_const("w_dw", w_dw), _const("w_pw", w_pw), _const("b_pw", b_pw), _const("scale", scale),
             _const("shift", shift), _const("lo", np.array(0, np.float32)), _const("hi", np.array(6, np.float32)),
             helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 0, 1, 0, 0, 1, 2])]
    model = _model(nodes, [_vi("x", [1, c, 12, 11])], [_vi("out", None)], inits)
    _compare(model, {"x": (rng.standard_normal((1, c, 12, 11)) * 3).astype(np.float32)}, rtol=1e-5, atol=1e-5)


def test_nonzero_pad_or_shared_constants_are_left_alone():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Pad", ["x", "pads", "val"], ["xp"]),
        helper.make_node("Conv", ["xp", "w"], ["y"], kernel_shape=[3, 3]),
        helper.make_node("Mul", ["y", "x_scale"], ["out"]),
    ]
    inits = [_const("w", w), _const("val", np.array(1.5, np.float32)),
             helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])]
    # The Mul's other operand is a graph input, not a constant: no folding.
    model = _model(nodes, [_vi("x", [1, 2, 7, 7]), _vi("x_scale", [1, 2, 1, 1])], [_vi("out", None)], inits)
    _compare(model, {"x": rng.standard_normal((1, 2, 7, 7)).astype(np.float32),
                     "x_scale": rng.standard_normal((1, 2, 1, 1)).astype(np.float32)})


@pytest.mark.parametrize("rows", [3, 8, 45])
@pytest.mark.parametrize("k,n", [(7, 5), (128, 100), (300, 33)])
def test_matmul_and_gemm_with_constant_b(rows, k, n):
    # From 8 rows on, a constant f32 B is packed once (on the first run) and reused; fewer rows
    # read it in place. Each session runs twice so the second run uses the cached packing.
    rng = np.random.default_rng(rows * 1000 + k + n)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bt = np.ascontiguousarray(b.T)
    c = rng.standard_normal((n,)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x3", "B"], ["mm"]),
             helper.make_node("Gemm", ["x", "BT", "C"], ["gt"], transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Gemm", ["xt", "B"], ["ga"], transA=1)]
    model = _model(nodes, [_vi("x3", [2, rows, k]), _vi("x", [rows, k]), _vi("xt", [k, rows])],
                   [_vi("mm", None), _vi("gt", None), _vi("ga", None)],
                   [_const("B", b), _const("BT", bt), _const("C", c)])
    x3 = rng.standard_normal((2, rows, k)).astype(np.float32)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    feeds = {"x3": x3, "x": x, "xt": np.ascontiguousarray(x.T)}
    sess = pmi.InferenceSession(model)
    for _ in range(2):
        mm, gt, ga = sess.run(None, feeds)
        np.testing.assert_allclose(mm, x3 @ b, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gt, 0.5 * (x @ b) + 2.0 * c, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ga, x @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("order", ["mul_last", "half_first", "not_gelu"])
def test_gelu_chains_match_onnxruntime(order):
    # The erf GELU chains exporters write are fused into one node; a near miss (Add 2) is not,
    # and both must compute what onnxruntime computes.
    s2, inv, one = np.float32(np.sqrt(2.0)), np.float32(1 / np.sqrt(2.0)), np.float32(2.0 if order == "not_gelu" else 1.0)
    inits = [_const("s2", np.array(s2, np.float32)), _const("inv", np.array(inv, np.float32)),
             _const("one", np.array(one, np.float32)), _const("half", np.array(0.5, np.float32))]
    if order == "half_first":
        nodes = [helper.make_node("Mul", ["x", "inv"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["one", "e"], ["a"]), helper.make_node("Mul", ["x", "half"], ["h"]),
                 helper.make_node("Mul", ["h", "a"], ["y"])]
    else:
        nodes = [helper.make_node("Div", ["x", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["y"])]
    model = _model(nodes, [_vi("x", [3, 37])], [_vi("y", None)], inits)
    x = np.linspace(-6, 6, 3 * 37, dtype=np.float32).reshape(3, 37)
    _compare(model, {"x": x}, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_chain_matches_onnxruntime(with_bias):
    # PyTorch's pre-opset-17 LayerNorm export, fused into one node (the bias Add optional).
    rng = np.random.default_rng(5)
    c = 48
    inits = [_const("two", np.array(2.0, np.float32)), _const("eps", np.array(1e-5, np.float32)),
             _const("gamma", rng.standard_normal(c).astype(np.float32)),
             _const("beta", rng.standard_normal(c).astype(np.float32))]
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]), helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["p"]), helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             helper.make_node("Add", ["v", "eps"], ["a"]), helper.make_node("Sqrt", ["a"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n"]),
             helper.make_node("Mul", ["n", "gamma"], ["y" if with_bias else "out"])]
    if with_bias:
        nodes.append(helper.make_node("Add", ["beta", "y"], ["out"]))
    model = _model(nodes, [_vi("x", [2, 7, c])], [_vi("out", None)], inits, opset=14)
    _compare(model, {"x": (rng.standard_normal((2, 7, c)) * 3 + 1).astype(np.float32)}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_inception_block_concat_written_in_place_matches_onnxruntime(threads, batch):
    """Four branches concatenated along channels (1x1, 1x1 -> 3x3, 1x1 -> 5x5, max pool -> 1x1),
    with fused activations; the convolutions write their channels straight into the Concat's
    output. A fifth part is a graph input copied in, and one branch's output is also a graph
    output (so that convolution keeps its own tensor)."""
    rng = np.random.default_rng(11)
    c = 6

    def conv(x, out, m, cin, k, act=None, **kw):
        w = (rng.standard_normal((m, cin, k, k)) * 0.3).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        inits.extend([_const(out + "_w", w), _const(out + "_b", b)])
        y = out + "_c" if act else out
        n = [helper.make_node("Conv", [x, out + "_w", out + "_b"], [y], kernel_shape=[k, k], pads=[k // 2] * 4, **kw)]
        return n + (ACTIVATIONS[act](y, out) if act else [])

    inits = []
    nodes = (conv("x", "b1", 5, c, 1, "relu") + conv("x", "r3", 4, c, 1, "relu") + conv("r3", "b3", 7, 4, 3, "silu")
             + conv("x", "r5", 3, c, 1) + conv("r5", "b5", 4, 3, 5, "clip")
             + [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])]
             + conv("p", "bp", 3, c, 1, "relu")
             + [helper.make_node("Concat", ["b1", "b3", "extra", "b5", "bp"], ["out"], axis=1)])
    inits += [_const("lo", np.array(-0.5, np.float32)), _const("hi", np.array(1.5, np.float32))]
    model = _model(nodes, [_vi("x", [batch, c, 11, 13]), _vi("extra", [batch, 2, 11, 13])],
                   [_vi("out", None), _vi("b5", None)], inits)
    feeds = {"x": rng.standard_normal((batch, c, 11, 13)).astype(np.float32),
             "extra": rng.standard_normal((batch, 2, 11, 13)).astype(np.float32)}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    got = pmi.InferenceSession(model, so).run(None, feeds)
    assert got[0].shape == (batch, 21, 11, 13)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_small_map_convolutions_transposed_into_a_concat_match_onnxruntime(threads, batch):
    """Fire modules on 13x13 and 7x7 maps (squeeze 1x1, expand 1x1 and 3x3 concatenated): the
    3x3 convolutions run as the transposed product (vectors along the 64-128 output channels),
    writing their channels into the Concat's output, with a fused activation; run twice (the
    second run without the weights packed for the other product)."""
    rng = np.random.default_rng(5)
    inits = []

    def conv(x, out, m, cin, k, act="relu", **kw):
        w = (rng.standard_normal((m, cin, k, k)) * 0.2).astype(np.float32)
        inits.extend([_const(out + "_w", w), _const(out + "_b", rng.standard_normal(m).astype(np.float32))])
        y = out + "_c"
        return [helper.make_node("Conv", [x, out + "_w", out + "_b"], [y], kernel_shape=[k, k], pads=[k // 2] * 4, **kw)] + ACTIVATIONS[act](y, out)

    nodes = (conv("x", "s1", 16, 32, 1) + conv("s1", "e1", 64, 16, 1) + conv("s1", "e3", 64, 16, 3, "silu")
             + [helper.make_node("Concat", ["e1", "e3"], ["f1"], axis=1)]
             + conv("f1", "d", 128, 128, 3, strides=[2, 2]) + conv("d", "s2", 32, 128, 1)
             + conv("s2", "e4", 128, 32, 1) + conv("s2", "e5", 128, 32, 3)
             + [helper.make_node("Concat", ["e4", "e5"], ["out"], axis=1)])
    model = _model(nodes, [_vi("x", [batch, 32, 13, 13])], [_vi("out", None)], inits)
    feeds = {"x": rng.standard_normal((batch, 32, 13, 13)).astype(np.float32)}
    _compare_runs(model, feeds, threads, (batch, 256, 7, 7))


def test_a_convolution_transposed_on_a_small_map_stays_right_on_a_large_one():
    """A 3x3 convolution with a free image size: first on 7x7 (the transposed product, after
    which its weights packed for the other product are freed), then on 64x64 (the product with
    vectors along the pixels, from the unpacked weights), then on 7x7 again."""
    rng = np.random.default_rng(6)
    w = (rng.standard_normal((64, 24, 3, 3)) * 0.2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = _model(nodes, [_vi("x", [1, 24, "h", "w"])], [_vi("y", None)], [_const("w", w)])
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    sess = pmi.InferenceSession(model)
    for side in (7, 64, 7):
        x = rng.standard_normal((1, 24, side, side)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_inverted_residual_blocks_fused_expansion_matches_onnxruntime(threads, batch):
    """Inverted residual blocks (pointwise expansion -> depthwise -> projection) on maps too
    large for the channels-last layout: each expansion and its depthwise convolution become
    one ExpandDepthwise node (Clip, SiLU and HardSwish activations; 48, 64 and 40 channels;
    a 3x3 stride 2, a 5x5 and a 3x3 stride 1 window, the last run as two convolutions), and a
    fourth expansion whose output is read twice stays unfused."""
    rng = np.random.default_rng(7)
    inits = [_const("lo", np.array(0.0, np.float32)), _const("hi", np.array(6.0, np.float32))]

    def conv(x, out, m, cin, k, act=None, **kw):
        w = (rng.standard_normal((m, cin // kw.get("group", 1), k, k)) * 0.3).astype(np.float32)
        inits.extend([_const(out + "_w", w), _const(out + "_b", rng.standard_normal(m).astype(np.float32))])
        y = out + "_c" if act else out
        node = helper.make_node("Conv", [x, out + "_w", out + "_b"], [y], kernel_shape=[k, k], pads=[k // 2] * 4, **kw)
        return [node] + (ACTIVATIONS[act](y, out) if act else [])

    nodes = (conv("x", "e1", 48, 8, 1, "clip") + conv("e1", "d1", 48, 48, 3, "clip", strides=[2, 2], group=48)
             + conv("d1", "p1", 16, 48, 1)
             + conv("p1", "e2", 64, 16, 1, "silu") + conv("e2", "d2", 64, 64, 5, "silu", group=64)
             + conv("d2", "p2", 16, 64, 1) + [helper.make_node("Add", ["p1", "p2"], ["r2"])]
             + conv("r2", "e3", 40, 16, 1, "hardswish") + conv("e3", "d3", 40, 40, 3, "hardswish", group=40)
             + conv("d3", "p3", 16, 40, 1)
             + conv("p3", "e4", 32, 16, 1, "relu") + conv("e4", "d4", 32, 32, 3, group=32)
             + [helper.make_node("ReduceMean", ["e4"], ["m4"], axes=[2, 3], keepdims=1),
                helper.make_node("Add", ["d4", "m4"], ["out"])])
    model = _model(nodes, [_vi("x", [batch, 8, 64, 64])], [_vi("out", None)], inits, opset=17)
    feeds = {"x": rng.standard_normal((batch, 8, 64, 64)).astype(np.float32)}
    _compare_runs(model, feeds, threads, (batch, 32, 32, 32))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("stem", ["squeezenet", "resnet", "ceil"])
def test_convolution_and_max_pool_fused_match_onnxruntime(stem, batch, threads):
    """A convolution whose only reader is a MaxPool runs as one ConvMaxPool node, pooled band by
    band: SqueezeNet's stem (3x3 stride 2 + pool 3x3 stride 2), ResNet's (7x7 stride 2 padded,
    BatchNorm folded, pool padded), and a pool in ceil mode whose last window overhangs."""
    rng = np.random.default_rng(8)
    conv_attrs, pool_attrs, m = {
        "squeezenet": ({"strides": [2, 2]}, {"kernel_shape": [3, 3], "strides": [2, 2]}, 64),
        "resnet": ({"strides": [2, 2], "pads": [3, 3, 3, 3]}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 40),
        "ceil": ({"pads": [1, 1, 1, 1]}, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, 24),
    }[stem]
    k = 7 if stem == "resnet" else 3
    w = (rng.standard_normal((m, 3, k, k)) * 0.3).astype(np.float32)
    inits = [_const("w", w), _const("b", rng.standard_normal(m).astype(np.float32)),
             _const("s", rng.uniform(0.5, 1.5, (1, m, 1, 1)).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], **conv_attrs),
             helper.make_node("Mul", ["c", "s"], ["cs"]), helper.make_node("Relu", ["cs"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["out"], **pool_attrs)]
    model = _model(nodes, [_vi("x", [batch, 3, 99, 101])], [_vi("out", None)], inits)
    feeds = {"x": rng.standard_normal((batch, 3, 99, 101)).astype(np.float32)}
    shape = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0].shape
    _compare_runs(model, feeds, threads, shape)


@pytest.mark.parametrize("cell,extra", [("LSTM", {}), ("GRU", {"linear_before_reset": 1}), ("GRU", {}), ("RNN", {})])
@pytest.mark.parametrize("batch", [1, 3, 9])
@pytest.mark.parametrize("threads", [1, 2])
def test_recurrent_layers_with_constant_weights(cell, extra, batch, threads):
    """Constant W and R (packed once: Wᵀ for the input projection, panels of Rᵀ for the
    per-step product, taken one to four batch rows at a time), a hidden size that leaves
    partial panels, both directions, biases and an initial state: every output against
    onnxruntime."""
    rng = np.random.default_rng(11)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    hs, inp, seq = 20, 12, 7
    w = (rng.standard_normal((2, gates * hs, inp)) * 0.3).astype(np.float32)
    r = (rng.standard_normal((2, gates * hs, hs)) * 0.3).astype(np.float32)
    b = (rng.standard_normal((2, 2 * gates * hs)) * 0.1).astype(np.float32)
    outs = ["y", "yh"] + (["yc"] if cell == "LSTM" else [])
    node = helper.make_node(cell, ["x", "w", "r", "b", "", "h0"], outs, hidden_size=hs, direction="bidirectional", **extra)
    model = _model([node], [_vi("x", [seq, batch, inp]), _vi("h0", [2, batch, hs])], [_vi(o, None) for o in outs],
                   [_const("w", w), _const("r", r), _const("b", b)])
    feeds = {"x": rng.standard_normal((seq, batch, inp)).astype(np.float32),
             "h0": (rng.standard_normal((2, batch, hs)) * 0.5).astype(np.float32)}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    so = pmi.SessionOptions()
    so.intra_op_num_threads = threads
    sess = pmi.InferenceSession(model, so)
    for _ in range(2):
        for name, g, e in zip(outs, sess.run(None, feeds), want):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k,n", [(1024, 1000), (37, 70), (256, 300)])
@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,c_shape", [
    (0, 1, 1.0, 1.0, "n"), (0, 0, 1.0, 1.0, "1n"), (1, 1, 0.5, 2.0, "1"), (1, 0, 1.5, 0.0, "n"), (0, 1, 1.0, 1.0, None)])
def test_single_row_products_with_constant_weights(threads, k, n, trans_a, trans_b, alpha, beta, c_shape):
    """One row times a constant matrix (a classifier at batch 1) takes the weights packed in
    column panels; a second session runs two rows (the GEMM path) for contrast. Gemm with every
    transposition, alpha, beta and bias shape, MatMul on a 1-D, 2-D and 3-D row and MatMul + Add
    (fused), against onnxruntime."""
    rng = np.random.default_rng(k + n)
    w = (rng.standard_normal((n, k) if trans_b else (k, n)) * 0.1).astype(np.float32)
    cval = {"n": (n,), "1n": (1, n), "1": (1,), None: None}[c_shape]
    inits = [_const("w", w)]
    inputs = ["a", "w"]
    if cval is not None:
        inits.append(_const("c", rng.standard_normal(cval).astype(np.float32)))
        inputs.append("c")
    for rows in (1, 2):
        a_shape = [k, rows] if trans_a else [rows, k]
        gemm = _model([helper.make_node("Gemm", inputs, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)],
                      [_vi("a", a_shape)], [_vi("y", None)], inits)
        _compare_runs(gemm, {"a": rng.standard_normal(a_shape).astype(np.float32)}, threads, (rows, n))
    if trans_a or trans_b:
        return
    bias = _const("bias", rng.standard_normal(n).astype(np.float32))
    for a_shape in ([k], [1, k], [1, 1, k]):
        feeds = {"a": rng.standard_normal(a_shape).astype(np.float32)}
        out = tuple(a_shape[:-1]) + (n,)
        mm = _model([helper.make_node("MatMul", ["a", "w"], ["y"])], [_vi("a", a_shape)], [_vi("y", None)], [inits[0]])
        _compare_runs(mm, feeds, threads, out)
        fused = _model([helper.make_node("MatMul", ["a", "w"], ["p"]), helper.make_node("Add", ["p", "bias"], ["y"])],
                       [_vi("a", a_shape)], [_vi("y", None)], [inits[0], bias])
        _compare_runs(fused, feeds, threads, out)
