"""Tensor files: .npy (checked against numpy's own reader and writer) and ONNX TensorProto .pb
(checked against the onnx package)."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import Tensor
from pyml_interop._ffi import lib

def comparable(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype.kind == "V" else a  # ml_dtypes types


NPY_ARRAYS = {
    "float32_2d": np.arange(12, dtype=np.float32).reshape(3, 4),
    "float64": np.array([1e-300, -2.5, np.inf]),
    "float16": np.array([1.5, -0.0], dtype=np.float16),
    "int8": np.array([-128, 127], dtype=np.int8),
    "uint16": np.array([0, 65535], dtype=np.uint16),
    "int32": np.array([[1, -2]], dtype=np.int32),
    "int64_rank0": np.array(-7, dtype=np.int64),
    "uint64": np.array([2**64 - 1], dtype=np.uint64),
    "bool": np.array([True, False]),
    "complex64": np.array([1 + 2j], dtype=np.complex64),
    "complex128": np.array([[3 - 4j, 0j]]),
    "zero_size": np.zeros((2, 0, 3), dtype=np.float32),
    "strings": np.array([["a", "bé"], ["", "longer text"]]),
}


@pytest.mark.parametrize("name", sorted(NPY_ARRAYS))
def test_save_npy_is_read_by_numpy(tmp_path: Path, name: str) -> None:
    a = NPY_ARRAYS[name]
    path = tmp_path / f"{name}.npy"
    pmi.save_npy(Tensor.from_numpy(a), path)
    back = np.load(path)
    assert back.shape == a.shape and back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize("name", sorted(NPY_ARRAYS))
def test_load_npy_reads_numpy_files(tmp_path: Path, name: str) -> None:
    a = NPY_ARRAYS[name]
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    t = pmi.load_npy(path)
    assert t.shape == a.shape
    if a.dtype.kind == "U":
        assert t.numpy().tolist() == a.tolist()
    else:
        assert t.dtype == a.dtype
        np.testing.assert_array_equal(t.numpy(), a)


def test_load_npy_big_endian_and_fortran(tmp_path: Path) -> None:
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    np.save(tmp_path / "be.npy", a)
    np.testing.assert_array_equal(pmi.load_npy(tmp_path / "be.npy").numpy(), a)
    f = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4))
    np.save(tmp_path / "f.npy", f)
    np.testing.assert_array_equal(pmi.load_npy(str(tmp_path / "f.npy")).numpy(), f)


def test_save_npy_accepts_arrays_and_bytes_paths(tmp_path: Path) -> None:
    a = np.arange(3, dtype=np.int16)
    pmi.save_npy(a, str(tmp_path / "a.npy").encode())
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)


def test_npy_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npy"
    with pytest.raises(pmi.FileError, match="missing.npy") as info:
        pmi.load_npy(missing)
    assert isinstance(info.value, OSError)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    with pytest.raises(pmi.InvalidArgumentError, match="not a .npy file"):
        pmi.load_npy(garbage)
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.arange(100, dtype=np.float64))
    truncated.write_bytes(truncated.read_bytes()[:-8])
    with pytest.raises(pmi.InvalidArgumentError, match="truncated"):
        pmi.load_npy(truncated)
    with pytest.raises(pmi.UnsupportedDtypeError, match="no portable .npy type"):
        pmi.save_npy(np.zeros(2, dtype=ml_dtypes.bfloat16), tmp_path / "bf16.npy")
    with pytest.raises(pmi.FileError, match="cannot write"):
        pmi.save_npy(np.zeros(2), tmp_path / "no_such_dir" / "x.npy")


# -- ONNX TensorProto files ------------------------------------------------------------------

needs_pb = pytest.mark.skipif(
    not (hasattr(lib, "pmi_tensor_load_pb") and hasattr(lib, "pmi_tensor_save_pb")),
    reason="pmi_tensor_load_pb/save_pb not in this build of the library yet",
)

PB_ARRAYS = {
    "float32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "int64": np.array([-1, 2**40], dtype=np.int64),
    "bool": np.array([True, False, True]),
    "float16": np.array([0.5, -2.0], dtype=np.float16),
    "double_rank0": np.array(3.25),
    "uint8_zero_size": np.zeros((0, 4), dtype=np.uint8),
    "complex64": np.array([1 + 1j], dtype=np.complex64),
    "bfloat16": np.array([1.0, -3.5], dtype=ml_dtypes.bfloat16),
    "float8e4m3fn": np.array([0.5, -448.0], dtype=ml_dtypes.float8_e4m3fn),
    "int4_odd_count": np.array([-8, 7, -1], dtype=ml_dtypes.int4),
    "uint4": np.array([0, 15, 3, 4], dtype=ml_dtypes.uint4),
    "strings": np.array(["a", "bé", ""], dtype=object),
}


@needs_pb
@pytest.mark.parametrize("name", sorted(PB_ARRAYS))
def test_pb_round_trip_against_onnx(tmp_path: Path, name: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    a = PB_ARRAYS[name]
    # onnx writes, we read
    path = tmp_path / f"{name}_onnx.pb"
    path.write_bytes(numpy_helper.from_array(a, name).SerializeToString())
    t = pmi.load_pb(path)
    assert t.shape == a.shape
    if a.dtype == object:
        assert t.numpy().tolist() == a.tolist()
    else:
        assert t.dtype == a.dtype
        np.testing.assert_array_equal(comparable(t.numpy()), comparable(a))
    # we write, onnx reads
    ours = tmp_path / f"{name}_ours.pb"
    pmi.save_pb(t, ours)
    proto = onnx.TensorProto()
    proto.ParseFromString(ours.read_bytes())
    back = numpy_helper.to_array(proto)
    assert back.shape == a.shape
    if a.dtype == object:
        assert [x.decode() if isinstance(x, bytes) else x for x in back.ravel().tolist()] == a.ravel().tolist()
    else:
        np.testing.assert_array_equal(comparable(back), comparable(a))


@needs_pb
def test_pb_errors(tmp_path: Path) -> None:
    with pytest.raises(pmi.FileError):
        pmi.load_pb(tmp_path / "missing.pb")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(pmi.InvalidModelError):
        pmi.load_pb(bad)
