"""Every element type round-trips numpy -> Tensor -> numpy, in every shape class."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import DType, Tensor
from pyml_interop.dtypes import NUMPY_DTYPES, as_dtype_code, from_numpy_dtype, to_numpy_dtype

# (ONNX code, numpy dtype, sample values): the values cover each type's range edges.
CASES = [
    (DType.FLOAT, np.float32, [0.0, -1.5, np.inf, 3.4e38]),
    (DType.UINT8, np.uint8, [0, 1, 255]),
    (DType.INT8, np.int8, [-128, 0, 127]),
    (DType.UINT16, np.uint16, [0, 65535]),
    (DType.INT16, np.int16, [-32768, 32767]),
    (DType.INT32, np.int32, [-(2**31), 2**31 - 1]),
    (DType.INT64, np.int64, [-(2**63), 2**63 - 1]),
    (DType.BOOL, np.bool_, [True, False, True]),
    (DType.FLOAT16, np.float16, [0.0, -2.5, 65504.0]),
    (DType.DOUBLE, np.float64, [1e-300, -1e300, np.nan]),
    (DType.UINT32, np.uint32, [0, 2**32 - 1]),
    (DType.UINT64, np.uint64, [0, 2**64 - 1]),
    (DType.COMPLEX64, np.complex64, [1 + 2j, -3.5j]),
    (DType.COMPLEX128, np.complex128, [1e200 + 1j, 0j]),
    (DType.BFLOAT16, ml_dtypes.bfloat16, [1.0, -2.0, 3.0e38]),
    (DType.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn, [0.5, -448.0]),
    (DType.FLOAT8E4M3FNUZ, ml_dtypes.float8_e4m3fnuz, [0.5, -240.0]),
    (DType.FLOAT8E5M2, ml_dtypes.float8_e5m2, [0.25, -57344.0]),
    (DType.FLOAT8E5M2FNUZ, ml_dtypes.float8_e5m2fnuz, [0.25, -57344.0]),
    (DType.UINT4, ml_dtypes.uint4, [0, 7, 15]),
    (DType.INT4, ml_dtypes.int4, [-8, -1, 0, 7]),
    (DType.FLOAT4E2M1, ml_dtypes.float4_e2m1fn, [0.5, -6.0, 0.0]),
    (DType.FLOAT8E8M0, ml_dtypes.float8_e8m0fnu, [1.0, 2.0**-127, 2.0**127]),
    (DType.UINT2, ml_dtypes.uint2, [0, 1, 3]),
    (DType.INT2, ml_dtypes.int2, [-2, -1, 0, 1]),
]
IDS = [c[0].name for c in CASES]


def comparable(a: np.ndarray) -> np.ndarray:
    """ml_dtypes arrays as float64 (their own comparisons are fine, but kept simple)."""
    return a.astype(np.float64) if a.dtype.kind == "V" else a


@pytest.mark.parametrize(("code", "np_dtype", "values"), CASES, ids=IDS)
def test_round_trip_every_dtype(code: DType, np_dtype, values) -> None:
    a = np.array(values, dtype=np_dtype)
    t = Tensor.from_numpy(a)
    assert t.onnx_dtype == code
    assert t.dtype == np.dtype(np_dtype)
    assert t.shape == a.shape and t.size == a.size and t.ndim == 1
    assert t.nbytes == a.size * np.dtype(np_dtype).itemsize
    back = t.numpy()
    assert back.dtype == np.dtype(np_dtype)
    np.testing.assert_array_equal(comparable(back), comparable(a))
    assert repr(t).startswith(f"Tensor(shape=({a.size},), dtype=")


@pytest.mark.parametrize(("code", "np_dtype", "values"), CASES, ids=IDS)
def test_shapes_rank0_and_zero_size(code: DType, np_dtype, values) -> None:
    scalar = np.array(values[0], dtype=np_dtype)
    t = Tensor.from_numpy(scalar)
    assert t.shape == () and t.size == 1
    assert t.numpy().shape == ()
    np.testing.assert_array_equal(comparable(t.numpy()), comparable(scalar))
    for shape in [(0,), (2, 0, 3), (0, 0)]:
        empty = np.zeros(shape, dtype=np_dtype)
        te = Tensor.from_numpy(empty)
        assert te.shape == shape and te.size == 0 and te.nbytes == 0
        assert te.numpy().shape == shape
        z = Tensor.zeros(shape, code)
        assert z.shape == shape and z.dtype == np.dtype(np_dtype)
    z = Tensor.zeros((2, 3), code)
    assert not z.numpy().view(np.uint8).any()  # all bytes zero


def test_signed_subbyte_values_reach_the_library_sign_extended() -> None:
    # The C library stores int4/int2 sign-extended in their byte (header: "signed ones
    # sign-extended"); ml_dtypes keeps only the low bits. from_numpy converts.
    t = Tensor.from_numpy(np.array([-1, -8, 7], dtype=ml_dtypes.int4))
    raw = np.asarray(t.numpy()).view(np.uint8)
    assert raw.tolist() == [0xFF, 0xF8, 0x07]
    t2 = Tensor.from_numpy(np.array([-2, 1], dtype=ml_dtypes.int2))
    assert t2.numpy().view(np.uint8).tolist() == [0xFE, 0x01]


def test_strings_round_trip() -> None:
    a = np.array([["a", "bé"], ["", "ünïcödé 😀"]])
    t = Tensor.from_numpy(a)
    assert t.onnx_dtype == DType.STRING
    assert t.dtype == np.dtype(object)
    assert t.nbytes == 0
    back = t.numpy()
    assert back.dtype == object and back.shape == (2, 2)
    assert back.tolist() == a.tolist()
    assert "ünïcödé" in repr(t)
    with pytest.raises(pmi.UnsupportedDtypeError, match="string"):
        t.data_ptr
    with pytest.raises(BufferError):
        np.from_dlpack(t)
    with pytest.raises(ValueError):
        np.asarray(t, copy=False)
    assert np.asarray(t).tolist() == a.tolist()


def test_string_kinds_bytes_object_and_stringdtype() -> None:
    raw = Tensor.from_numpy(np.array([b"\xff\x00binary", b"x"]))
    assert raw.numpy().tolist() == [b"\xff\x00binary", b"x"]  # not UTF-8: bytes come back
    mixed = Tensor.from_numpy(np.array(["s", b"b"], dtype=object))
    assert mixed.numpy().tolist() == ["s", "b"]
    scalar = Tensor.from_numpy(np.array("alone"))
    assert scalar.shape == () and scalar.numpy().item() == "alone"
    empty = Tensor.from_numpy(np.array([], dtype=str).reshape(0, 3))
    assert empty.shape == (0, 3) and empty.numpy().shape == (0, 3)
    if hasattr(np.dtypes, "StringDType"):
        sd = np.array(["x", "yz"], dtype=np.dtypes.StringDType())
        assert Tensor.from_numpy(sd).numpy().tolist() == ["x", "yz"]
    with pytest.raises(TypeError, match="element 1"):
        Tensor.from_numpy(np.array(["ok", 3], dtype=object))


def test_zeros_string_tensor() -> None:
    t = Tensor.zeros((2,), DType.STRING)
    assert t.numpy().tolist() == ["", ""]


def test_dtype_mapping_helpers() -> None:
    for code, dt in NUMPY_DTYPES.items():
        assert to_numpy_dtype(code) == dt
        assert from_numpy_dtype(dt) == code
    assert from_numpy_dtype(">i4") == DType.INT32
    assert from_numpy_dtype("U5") == DType.STRING
    assert as_dtype_code(np.float32) == DType.FLOAT
    assert as_dtype_code("float32") == DType.FLOAT
    assert as_dtype_code(1) == DType.FLOAT
    assert as_dtype_code(ml_dtypes.bfloat16) == DType.BFLOAT16
    with pytest.raises(pmi.UnsupportedDtypeError, match="99"):
        as_dtype_code(99)
    with pytest.raises(pmi.UnsupportedDtypeError):
        from_numpy_dtype("datetime64[s]")
    with pytest.raises(TypeError):
        as_dtype_code("not a dtype")
    with pytest.raises(TypeError):
        as_dtype_code(True)
    assert {int(c) for c in DType} == set(range(1, 27))


def test_dtype_codes_equal_the_header_macros(lib) -> None:
    for code in DType:
        assert getattr(lib, f"PMI_DTYPE_{code.name}") == code


def test_dtype_codes_equal_onnx() -> None:
    onnx = pytest.importorskip("onnx")
    for code in DType:
        assert onnx.TensorProto.DataType.Value(code.name) == code
        np_dt = NUMPY_DTYPES[code]
        if code is not DType.STRING:
            assert np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code)) == np_dt


def test_unsupported_numpy_dtypes() -> None:
    with pytest.raises(pmi.UnsupportedDtypeError, match="datetime64"):
        Tensor.from_numpy(np.zeros(2, dtype="datetime64[s]"))
    with pytest.raises(pmi.UnsupportedDtypeError):
        Tensor.from_numpy(np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]))
    with pytest.raises(TypeError):  # UnsupportedDtypeError is a TypeError too
        Tensor.from_numpy(np.zeros(2, dtype=np.float128 if hasattr(np, "float128") else "m8[s]"))
