"""Memory used by loading a large model (issue 3): about its file size, not twice it.

A ~40 MB model whose initializers' ``raw_data`` all lie at misaligned offsets in the file (so
every one must be copied into an aligned buffer) is loaded in a fresh process. The growth of
peak RSS across ``load_model`` must stay below 1.3x the file size: copied bytes must not also
stay resident as pages of the memory-mapped file (which gave ~2x). Linux only (RSS accounting
of mapped files differs elsewhere). ``benchmarks/load_memory.py`` measures the shared models the
same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import _ffi

onnx = pytest.importorskip("onnx")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS of mapped files is Linux-specific")

N = 2_500_000  # floats per initializer: 10 MB each
COUNT = 4
LIMIT = 1.3

# Peak RSS is VmHWM, reset to the current RSS just before loading: ru_maxrss would include what
# the child inherited across fork and exec (the peak of this test process, far above a model).
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import numpy as np
import pyml_interop as pmi
def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = peak()
m = pmi.load_model(sys.argv[1])
grown = peak() - base
y = pmi.Session(m).run({"x": np.ones(int(sys.argv[3]), np.float32)})[0].numpy()
print(grown, float(y[0]), float(y[-1]), float(y.sum(dtype=np.float64)))
"""


def _weights(i: int) -> np.ndarray:
    # Values of different initializers never coincide, so each is found by its first bytes.
    return (np.arange(N, dtype=np.float32) % 997 + 1000 * i) * np.float32(0.25)


def _misaligned_model(path: Path) -> int:
    """Write the model; return its size. Paddings placed after each initializer's raw_data (the
    graph's name, then each tensor's doc_string) shift the next raw_data off 4-byte alignment."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [_weights(i) for i in range(COUNT)]
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    nodes = []
    prev = "x"
    for i in range(COUNT):
        out = "y" if i == COUNT - 1 else f"s{i}"
        nodes.append(helper.make_node("Add", [prev, f"w{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8

    def offsets(data: bytes) -> list[int]:
        return [data.find(w.tobytes()[:64]) for w in weights]

    for i in range(COUNT):
        for pad in range(4):
            if i == 0:
                model.graph.name = "g" + "_" * pad
            else:
                model.graph.initializer[i - 1].doc_string = "_" * pad
            data = model.SerializeToString()
            if offsets(data)[i] % 4:
                break
    assert all(o > 0 and o % 4 for o in offsets(data)), offsets(data)
    path.write_bytes(data)
    return len(data)


def test_loading_a_misaligned_model_costs_about_its_file_size(tmp_path: Path) -> None:
    path = tmp_path / "misaligned.onnx"
    size = _misaligned_model(path)
    package_parent = str(Path(pmi.__file__).resolve().parents[1])
    env = {**os.environ, _ffi.LIB_ENV_VAR: str(_ffi.LIBRARY_PATH)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), package_parent, str(N)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    grown, first, last, total = out.stdout.split()
    expected = sum(_weights(i).astype(np.float64) for i in range(COUNT)) + 1.0
    assert float(first) == pytest.approx(expected[0])
    assert float(last) == pytest.approx(expected[-1])
    assert float(total) == pytest.approx(expected.sum(), rel=1e-6)
    ratio = int(grown) / size
    assert ratio <= LIMIT, f"loading a {size / 1e6:.1f} MB model grew peak RSS by {int(grown) / 1e6:.1f} MB ({ratio:.2f}x)"
