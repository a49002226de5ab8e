"""Model loading through the C ABI: hand-built models for every attribute and storage kind,
subgraphs, functions, external data, and malformed input of every kind (each must give the
right exception with a message naming the field or node, never a crash)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

import pyml_interop as pmi

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=17, functions=(), **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] + kw.pop("extra_opsets", []),
                          functions=list(functions), **kw)
    m.ir_version = kw.get("ir_version", 8)
    return m


def _vi(name, elem=TensorProto.FLOAT, shape=(2,)):
    return helper.make_tensor_value_info(name, elem, shape)


# -- well-formed models ------------------------------------------------------------------------

def test_every_attribute_kind_loads():
    t = numpy_helper.from_array(np.arange(3, dtype=np.int64), "t")
    sub = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "sub", [], [_vi("y")])
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "sv"),
        numpy_helper.from_array(np.array([0, 3], np.int64), "si"), [2, 2])
    node = helper.make_node("Identity", ["x"], ["y"], name="all_attrs")
    node.attribute.extend([
        helper.make_attribute("f", 1.5), helper.make_attribute("i", 7), helper.make_attribute("s", b"abc"),
        helper.make_attribute("t", t), helper.make_attribute("g", sub),
        helper.make_attribute("floats", [1.0, 2.0]), helper.make_attribute("ints", [1, 2]),
        helper.make_attribute("strings", [b"a", b"b"]), helper.make_attribute("tensors", [t, t]),
        helper.make_attribute("graphs", [sub]), helper.make_attribute("sparse", sparse),
        helper.make_attribute("tp", helper.make_tensor_type_proto(TensorProto.FLOAT, [1])),
    ])
    m = _model([node], [_vi("x")], [_vi("y")])
    loaded = pmi.load_model(m.SerializeToString())
    assert loaded.op_types == {"Identity": 3}  # the node plus the Identity inside each subgraph


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.int64, np.uint32, np.uint64, np.bool_, np.float16, np.complex64])
@pytest.mark.parametrize("raw", [True, False])
def test_initializer_storage_forms(dtype, raw):
    a = (np.arange(6) % 3).astype(dtype).reshape(2, 3)
    t = numpy_helper.from_array(a, "w")
    if not raw:  # move the bytes into the typed repeated field
        t = helper.make_tensor("w", t.data_type, a.shape, a.flatten().tolist(), raw=False)
    node = helper.make_node("Identity", ["w"], ["y"])
    m = _model([node], [], [helper.make_tensor_value_info("y", t.data_type, a.shape)], [t])
    sess = pmi.InferenceSession(m.SerializeToString())
    (out,) = sess.run(None, {})
    np.testing.assert_array_equal(out, a)


def test_symbolic_dims_are_reported():
    m = _model([helper.make_node("Relu", ["x"], ["y"])],
               [_vi("x", shape=("batch", "s0", 3, None))], [_vi("y", shape=("batch", "s0", 3, None))])
    loaded = pmi.load_model(m.SerializeToString())
    assert loaded.inputs[0].shape == ("batch", "s0", 3, None)
    assert loaded.inputs[0].type == "tensor(float)"


def test_model_local_function_is_inlined():
    fn = helper.make_function("custom", "AddRelu", ["a", "b"], ["c"],
                              [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["c"])],
                              [helper.make_opsetid("", 17)])
    m = _model([helper.make_node("AddRelu", ["x", "y"], ["z"], domain="custom")],
               [_vi("x"), _vi("y")], [_vi("z")], functions=[fn],
               extra_opsets=[helper.make_opsetid("custom", 1)])
    sess = pmi.InferenceSession(m.SerializeToString())
    (z,) = sess.run(None, {"x": np.array([1, -3], np.float32), "y": np.array([1, 1], np.float32)})
    np.testing.assert_array_equal(z, [2, 0])


def test_external_data(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    m = _model([helper.make_node("Identity", ["w"], ["y"])], [], [_vi("y", shape=(3, 4))],
               [numpy_helper.from_array(w, "w")])
    onnx.save_model(m, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    model = pmi.load_model(tmp_path / "m.onnx")
    (y,) = pmi.InferenceSession(str(tmp_path / "m.onnx")).run(None, {})
    np.testing.assert_array_equal(y, w)
    # Saving inlines the data: the copy runs without the data file.
    model.save(tmp_path / "inline.onnx")
    os.rename(tmp_path / "m.onnx.data", tmp_path / "moved.data")
    (y2,) = pmi.InferenceSession(str(tmp_path / "inline.onnx")).run(None, {})
    np.testing.assert_array_equal(y2, w)
    # ...while the original now fails, naming the missing file.
    with pytest.raises(pmi.Error, match="m.onnx.data"):
        pmi.load_model(tmp_path / "m.onnx")


def _external_model(tmp_path, location, length=None):
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0"}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    m = _model([helper.make_node("Identity", ["w"], ["y"])], [], [_vi("y", shape=(4,))], [t])
    p = tmp_path / "sub" / "m.onnx"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(m.SerializeToString())
    return p


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "a/../../secret.bin"])
def test_external_data_outside_the_model_dir_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    p = _external_model(tmp_path, location)
    with pytest.raises(pmi.Error) as e:
        pmi.load_model(p)
    assert "'w'" in str(e.value) or "w" in str(e.value)


def test_external_data_symlink_escape_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    p = _external_model(tmp_path, "link.bin")
    os.symlink(tmp_path / "secret.bin", p.parent / "link.bin")
    with pytest.raises(pmi.Error, match="link.bin"):
        pmi.load_model(p)


def test_external_data_missing_or_truncated(tmp_path):
    p = _external_model(tmp_path, "data.bin")
    with pytest.raises(pmi.Error, match="data.bin"):
        pmi.load_model(p)
    (p.parent / "data.bin").write_bytes(b"\0" * 8)  # 4 floats need 16 bytes
    with pytest.raises(pmi.Error):
        pmi.load_model(p)
    p2 = _external_model(tmp_path, "data.bin", length=1 << 40)
    with pytest.raises(pmi.Error):
        pmi.load_model(p2)


def test_external_data_from_bytes_is_refused(tmp_path):
    p = _external_model(tmp_path, "data.bin")
    (p.parent / "data.bin").write_bytes(b"\0" * 16)
    with pytest.raises(pmi.InvalidModelError, match="w"):
        pmi.load_model(p.read_bytes())


# -- malformed input ---------------------------------------------------------------------------

def _good_bytes() -> bytes:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_vi("x", shape=(2, 2))],
               [_vi("y", shape=(2, 2))], [w])
    return m.SerializeToString()


def test_truncated_files_never_crash():
    data = _good_bytes()
    for cut in range(0, len(data), 3):
        try:
            pmi.load_model(data[:cut])
        except pmi.Error as e:
            assert isinstance(e, (pmi.InvalidModelError, pmi.VersionMismatchError)), e
            assert str(e)


def test_random_bytes_never_crash():
    rng = random.Random(1234)
    for _ in range(300):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        with pytest.raises(pmi.Error) as e:
            pmi.load_model(blob)
        assert not isinstance(e.value, (pmi.PanicError, pmi.InternalError)), e.value


def test_mutated_models_never_crash():
    rng = random.Random(99)
    data = bytearray(_good_bytes())
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        try:
            m = pmi.load_model(bytes(b))
            pmi.Session(m)
        except (pmi.PanicError, pmi.InternalError):
            raise
        except pmi.Error as e:
            assert str(e)


def test_absurd_length_is_refused_without_huge_allocation():
    # field 7 (graph), wire type 2, length ~2^62
    blob = bytes([0x08, 0x08, 0x3A]) + bytes([0xFF] * 8 + [0x3F])
    with pytest.raises(pmi.InvalidModelError, match="length"):
        pmi.load_model(blob)


def test_absurd_dims_are_refused():
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 40, 1 << 40], raw_data=b"")
    m = _model([helper.make_node("Identity", ["w"], ["y"])], [], [_vi("y")], [t])
    with pytest.raises(pmi.Error, match="w"):
        pmi.load_model(m.SerializeToString())


def test_wrong_wire_type():
    blob = bytes([0x08, 0x08, 0x3D, 0, 0, 0, 0])  # graph (field 7) sent as fixed32
    with pytest.raises(pmi.InvalidModelError, match="graph|wire"):
        pmi.load_model(blob)


def test_cycle_is_refused():
    m = _model([helper.make_node("Relu", ["b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")],
               [_vi("x")], [_vi("a")])
    with pytest.raises(pmi.InvalidModelError, match="cycle"):
        pmi.load_model(m.SerializeToString())


def test_undefined_input_is_refused():
    m = _model([helper.make_node("Relu", ["nope"], ["y"], name="r")], [_vi("x")], [_vi("y")])
    with pytest.raises(pmi.InvalidModelError, match="'nope'"):
        pmi.load_model(m.SerializeToString())


def test_unknown_opset_domain_is_refused():
    m = _model([helper.make_node("Foo", ["x"], ["y"], name="foo", domain="com.example")], [_vi("x")], [_vi("y")])
    with pytest.raises(pmi.InvalidModelError, match="com.example"):
        pmi.load_model(m.SerializeToString())


def test_unsupported_operators_listed_all_at_once():
    m = _model([helper.make_node("Foo", ["x"], ["a"], name="f1", domain="com.example"),
                helper.make_node("Bar", ["a"], ["y"], name="b1", domain="com.example")],
               [_vi("x")], [_vi("y")], extra_opsets=[helper.make_opsetid("com.example", 3)])
    model = pmi.load_model(m.SerializeToString())
    with pytest.raises(pmi.UnsupportedOperatorError) as e:
        pmi.Session(model)
    msg = str(e.value)
    assert "Foo" in msg and "Bar" in msg and "com.example" in msg and "f1" in msg and "b1" in msg


def test_missing_file():
    with pytest.raises(pmi.FileError, match="no_such_model.onnx"):
        pmi.load_model("/nonexistent/no_such_model.onnx")


# -- sessions: wrong inputs ---------------------------------------------------------------------

def _relu_session():
    m = _model([helper.make_node("Add", ["x", "y"], ["z"])], [_vi("x", shape=("batch", 3)), _vi("y", shape=("batch", 3))],
               [_vi("z", shape=("batch", 3))])
    return pmi.InferenceSession(m.SerializeToString())


def test_wrong_input_name_dtype_rank_symbol():
    s = _relu_session()
    x = np.ones((2, 3), np.float32)
    with pytest.raises(pmi.InvalidArgumentError, match="'nope'"):
        s.run(None, {"x": x, "y": x, "nope": x})
    with pytest.raises(pmi.InvalidArgumentError, match="'y'"):
        s.run(None, {"x": x})
    with pytest.raises(pmi.UnsupportedDtypeError, match="'x'.*float"):
        s.run(None, {"x": x.astype(np.float64), "y": x})
    with pytest.raises(pmi.ShapeMismatchError, match="'x'.*rank"):
        s.run(None, {"x": x[0], "y": x})
    with pytest.raises(pmi.ShapeMismatchError, match="batch"):
        s.run(None, {"x": x, "y": np.ones((3, 3), np.float32)})
    with pytest.raises(pmi.ShapeMismatchError, match="axis 1"):
        s.run(None, {"x": np.ones((2, 4), np.float32), "y": np.ones((2, 4), np.float32)})
    with pytest.raises(pmi.InvalidArgumentError, match="'w'"):
        s.run(["w"], {"x": x, "y": x})


def test_onnxruntime_style_api():
    s = _relu_session()
    (i0, i1), (o0,) = s.get_inputs(), s.get_outputs()
    assert (i0.name, i0.type, i0.shape) == ("x", "tensor(float)", ["batch", 3])
    assert (o0.name, o0.shape) == ("z", ["batch", 3])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (z,) = s.run(["z"], {"x": x, "y": x})
    np.testing.assert_array_equal(z, 2 * x)
    assert s.get_providers() == ["CPUExecutionProvider"]


def test_concurrent_runs_on_one_session():
    import threading

    s = _relu_session()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(50):
                n = int(rng.integers(1, 8))
                x = rng.standard_normal((n, 3)).astype(np.float32)
                y = rng.standard_normal((n, 3)).astype(np.float32)
                (z,) = s.run(None, {"x": x, "y": y})
                np.testing.assert_array_equal(z, x + y)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
