"""The exported models of ../shared/models: load, inspect, save, and run against the
framework's reference outputs (``out:NAME`` in each ``.npz``) within the manifest's tolerance.

Skips cleanly when the shared models folder is absent (set PYML_SHARED_MODELS to point
elsewhere)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import pyml_interop as pmi

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("PYML_SHARED_MODELS", ROOT.parent / "shared" / "models"))
MANIFEST = MODELS / "MANIFEST.json"

if not MANIFEST.is_file():
    pytest.skip(f"shared models not found at {MODELS}", allow_module_level=True)

ENTRIES = json.loads(MANIFEST.read_text())["models"]
NAMES = sorted(ENTRIES)


def _onnx_dims(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


@pytest.mark.parametrize("name", NAMES)
def test_inspection_matches_onnx(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    entry = ENTRIES[name]
    path = MODELS / entry["file"]
    ref = onnx.load(str(path), load_external_data=False)
    model = pmi.load_model(path)
    init = {t.name for t in ref.graph.initializer}
    ref_inputs = [i for i in ref.graph.input if i.name not in init]
    assert [i.name for i in model.inputs] == [i.name for i in ref_inputs]
    assert [o.name for o in model.outputs] == [o.name for o in ref.graph.output]
    for ours, theirs in zip(model.inputs + model.outputs, ref_inputs + list(ref.graph.output)):
        assert ours.onnx_dtype == theirs.type.tensor_type.elem_type, ours.name
        assert ours.shape == _onnx_dims(theirs), ours.name
    assert model.ir_version == ref.ir_version
    assert model.producer == (ref.producer_name, ref.producer_version)
    ref_opsets = {(o.domain or "ai.onnx"): o.version for o in ref.opset_import}
    assert model.opsets == ref_opsets
    assert model.initializer_count == len(ref.graph.initializer)
    hist: dict[str, int] = {}
    for n in ref.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    for op, count in hist.items():
        assert model.op_types.get(op, 0) >= count, op


@pytest.mark.parametrize("name", NAMES)
def test_save_round_trip(name: str, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    entry = ENTRIES[name]
    model = pmi.load_model(MODELS / entry["file"])
    out = tmp_path / "copy.onnx"
    model.save(out)
    onnx.checker.check_model(str(out))
    again = pmi.load_model(out)
    assert [i.name for i in again.inputs] == [i.name for i in model.inputs]
    assert again.to_bytes() == model.to_bytes()


def _feeds(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    entry = ENTRIES[name]
    data = np.load(MODELS / entry["data"])
    inputs = {k: data[k] for k in data.files if not k.startswith("out:")}
    refs = {k[4:]: data[k] for k in data.files if k.startswith("out:")}
    return inputs, refs


def _check_outputs(name: str, outputs: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> None:
    tol = ENTRIES[name]["tolerance"]
    for key, ref in refs.items():
        got = outputs[key]
        assert got.shape == ref.shape, key
        np.testing.assert_allclose(got, ref, rtol=tol["rtol"], atol=tol["atol"], err_msg=f"{name}:{key}")


@pytest.mark.parametrize("name", NAMES)
def test_inference_session_matches_framework(name: str) -> None:
    entry = ENTRIES[name]
    sess = pmi.InferenceSession(str(MODELS / entry["file"]))
    inputs, refs = _feeds(name)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, inputs)
    _check_outputs(name, dict(zip(names, outs)), refs)


@pytest.mark.parametrize("name", NAMES)
def test_native_session_zero_copy_outputs(name: str) -> None:
    entry = ENTRIES[name]
    sess = pmi.Session(MODELS / entry["file"])
    inputs, refs = _feeds(name)
    tensors = sess.run({k: pmi.Tensor.from_numpy(v) for k, v in inputs.items()})
    arrays = {}
    for info, t in zip(sess.outputs, tensors):
        a = np.from_dlpack(t)
        assert a.ctypes.data == t.data_ptr  # shared, not copied
        arrays[info.name] = a
    _check_outputs(name, arrays, refs)
