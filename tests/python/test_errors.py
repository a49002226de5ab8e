"""The error model: one exception class per status code, messages naming the culprit, panics
contained, bad inputs refused at every door (Python API and raw C ABI)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import Tensor, _errors
from pyml_interop._errors import check

EXPECTED = {
    "PMI_ERR_INVALID_ARGUMENT": (pmi.InvalidArgumentError, ValueError),
    "PMI_ERR_NULL_POINTER": (pmi.NullPointerError, ValueError),
    "PMI_ERR_IO": (pmi.FileError, OSError),
    "PMI_ERR_INVALID_MODEL": (pmi.InvalidModelError, ValueError),
    "PMI_ERR_UNSUPPORTED_OPERATOR": (pmi.UnsupportedOperatorError, pmi.Error),
    "PMI_ERR_UNSUPPORTED_DTYPE": (pmi.UnsupportedDtypeError, TypeError),
    "PMI_ERR_SHAPE_MISMATCH": (pmi.ShapeMismatchError, ValueError),
    "PMI_ERR_READ_ONLY": (pmi.ReadOnlyError, pmi.Error),
    "PMI_ERR_VERSION_MISMATCH": (pmi.VersionMismatchError, pmi.Error),
    "PMI_ERR_LIMIT_EXCEEDED": (pmi.LimitExceededError, MemoryError),
    "PMI_ERR_PANIC": (pmi.PanicError, pmi.Error),
    "PMI_ERR_INTERNAL": (pmi.InternalError, pmi.Error),
    "PMI_ERR_RUNTIME": (pmi.ExecutionError, RuntimeError),
}


def header_statuses(ffi) -> dict[str, int]:
    return dict(ffi.typeof("pmi_status").relements)


def test_every_status_code_has_its_class(ffi, lib) -> None:
    statuses = header_statuses(ffi)
    assert statuses.pop("PMI_OK") == 0
    assert set(statuses) == set(EXPECTED), "header status codes and Python classes disagree"
    for name, code in statuses.items():
        cls, builtin = EXPECTED[name]
        assert cls.status == code, name
        assert cls.status_name == name
        assert _errors.STATUS_CLASSES[code] is cls
        assert ffi.string(lib.pmi_status_name(code)).decode() == name
        assert issubclass(cls, pmi.Error) and issubclass(cls, builtin)
        err = _errors.error_for_status(code, "msg")
        assert type(err) is cls and str(err) == "msg"
    assert ffi.string(lib.pmi_status_name(999)) == b"PMI_UNKNOWN"
    unknown = _errors.error_for_status(999, "strange")
    assert type(unknown) is pmi.Error and unknown.status == 999


def test_check_uses_last_error(ffi, lib) -> None:
    check(0)
    status = lib.pmi_tensor_zeros(99, ffi.NULL, 0, ffi.new("pmi_tensor**"))
    assert lib.pmi_last_status() == status == lib.PMI_ERR_UNSUPPORTED_DTYPE
    with pytest.raises(pmi.UnsupportedDtypeError, match="unknown element type code 99"):
        check(status)


def test_last_error_is_cleared_by_success(ffi, lib) -> None:
    out = ffi.new("pmi_tensor**")
    assert lib.pmi_tensor_zeros(99, ffi.NULL, 0, out) != 0
    assert ffi.string(lib.pmi_last_error()) != b""
    assert lib.pmi_tensor_zeros(1, ffi.NULL, 0, out) == 0
    assert ffi.string(lib.pmi_last_error()) == b""
    assert lib.pmi_last_status() == 0
    lib.pmi_tensor_release(out[0])


# -- statuses actually produced by the library ---------------------------------------------------


def test_panic_is_contained_and_library_keeps_working(ffi, lib) -> None:
    status = lib.pmi_debug_panic(b"boom")
    assert status == lib.PMI_ERR_PANIC
    with pytest.raises(pmi.PanicError, match="boom"):
        check(status)
    for _ in range(3):  # panicking repeatedly leaves no poisoned state
        with pytest.raises(pmi.PanicError, match="again"):
            check(lib.pmi_debug_panic(b"again"))
    t = Tensor.from_numpy(np.arange(3, dtype=np.int64))
    np.testing.assert_array_equal(t.numpy(), [0, 1, 2])
    with pytest.raises(pmi.PanicError):
        check(lib.pmi_debug_panic(ffi.NULL))


def test_invalid_argument_negative_dim() -> None:
    with pytest.raises(pmi.InvalidArgumentError, match=re.escape("shape[1] is negative (-3)")):
        Tensor.zeros((2, -3))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1 << 40, 1 << 40), "more elements than can be addressed"),
        ((1 << 62,), "too large"),
        ((2**63 - 1, 2), "too large"),
        ((1,) * 65, "rank 65 exceeds"),
    ],
)
def test_absurd_shapes_exceed_limits(shape, message) -> None:
    with pytest.raises(pmi.LimitExceededError, match=message):
        Tensor.zeros(shape, np.float32)


def test_shape_beyond_int64() -> None:
    with pytest.raises(pmi.LimitExceededError, match=r"shape\[0\]"):
        Tensor.zeros((2**64,))


def test_unsupported_dtype_code() -> None:
    with pytest.raises(pmi.UnsupportedDtypeError, match="unknown element type code 0"):
        Tensor.zeros((1,), 0)


def test_null_pointers_through_the_raw_abi(ffi, lib) -> None:
    out = ffi.new("pmi_tensor**")
    dims = ffi.new("int64_t[]", [2])
    cases = [
        (lambda: lib.pmi_tensor_zeros(1, ffi.NULL, 1, out), "argument 'shape' is NULL"),
        (lambda: lib.pmi_tensor_zeros(1, dims, 1, ffi.NULL), "argument 'out' is NULL"),
        (lambda: lib.pmi_tensor_from_copy(1, dims, 1, ffi.NULL, 8, out), "argument 'data' is NULL"),
        (lambda: lib.pmi_tensor_dtype(ffi.NULL, ffi.new("int32_t*")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_rank(ffi.NULL, ffi.new("size_t*")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_shape(ffi.NULL, ffi.new("const int64_t**")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_numel(ffi.NULL, ffi.new("size_t*")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_nbytes(ffi.NULL, ffi.new("size_t*")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_is_writable(ffi.NULL, ffi.new("int*")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_data(ffi.NULL, ffi.new("const void**")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_data_mut(ffi.NULL, ffi.new("void**")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_clone(ffi.NULL, out), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_copy(ffi.NULL, out), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_to_dlpack_versioned(ffi.NULL, ffi.new("DLManagedTensorVersioned**")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_to_dlpack(ffi.NULL, ffi.new("DLManagedTensor**")), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_from_dlpack_versioned(ffi.NULL, 0, out), "NULL"),
        (lambda: lib.pmi_tensor_from_dlpack(ffi.NULL, 0, out), "NULL"),
        (lambda: lib.pmi_tensor_from_strings(dims, 1, ffi.NULL, ffi.NULL, 2, out), "argument 'strings' is NULL"),
        (lambda: lib.pmi_tensor_load_npy(ffi.NULL, out), "argument 'path' is NULL"),
        (lambda: lib.pmi_tensor_load_npy(b"x.npy", ffi.NULL), "argument 'out' is NULL"),
        (lambda: lib.pmi_tensor_save_npy(ffi.NULL, b"x.npy"), "argument 'tensor' is NULL"),
        (lambda: lib.pmi_tensor_string_get(ffi.NULL, 0, ffi.new("const char**"), ffi.new("size_t*")), "argument 'tensor' is NULL"),
    ]
    for call, message in cases:
        with pytest.raises(pmi.NullPointerError, match=re.escape(message)):
            check(call())
    lib.pmi_tensor_release(ffi.NULL)  # accepted, does nothing


def test_null_output_pointers_on_a_real_tensor(ffi, lib) -> None:
    t = Tensor.zeros((2,), np.float32)
    h = t._handle
    for call in [
        lambda: lib.pmi_tensor_dtype(h, ffi.NULL),
        lambda: lib.pmi_tensor_rank(h, ffi.NULL),
        lambda: lib.pmi_tensor_shape(h, ffi.NULL),
        lambda: lib.pmi_tensor_numel(h, ffi.NULL),
        lambda: lib.pmi_tensor_nbytes(h, ffi.NULL),
        lambda: lib.pmi_tensor_is_writable(h, ffi.NULL),
        lambda: lib.pmi_tensor_data(h, ffi.NULL),
        lambda: lib.pmi_tensor_data_mut(h, ffi.NULL),
        lambda: lib.pmi_tensor_clone(h, ffi.NULL),
        lambda: lib.pmi_tensor_copy(h, ffi.NULL),
        lambda: lib.pmi_tensor_to_dlpack_versioned(h, ffi.NULL),
        lambda: lib.pmi_tensor_to_dlpack(h, ffi.NULL),
    ]:
        with pytest.raises(pmi.NullPointerError, match="output argument 'out' is NULL"):
            check(call())


def test_shape_mismatch_wrong_nbytes(ffi, lib) -> None:
    out = ffi.new("pmi_tensor**")
    dims = ffi.new("int64_t[]", [2, 3])
    data = ffi.new("float[]", 6)
    with pytest.raises(pmi.ShapeMismatchError, match="20 bytes given for a float tensor of shape"):
        check(lib.pmi_tensor_from_copy(1, dims, 2, data, 20, out))
    with pytest.raises(pmi.ShapeMismatchError, match="1 strings given"):
        check(lib.pmi_tensor_from_strings(dims, 2, ffi.new("const char*[]", [ffi.new("char[]", b"a")]), ffi.NULL, 1, out))


def test_string_accessors_refuse_wrong_tensors(ffi, lib) -> None:
    num = Tensor.zeros((2,), np.int32)
    s = Tensor.from_numpy(np.array(["a", "b"]))
    data, length = ffi.new("const char**"), ffi.new("size_t*")
    with pytest.raises(pmi.UnsupportedDtypeError, match="not string"):
        check(lib.pmi_tensor_string_get(num._handle, 0, data, length))
    with pytest.raises(pmi.InvalidArgumentError, match="index 2 out of range"):
        check(lib.pmi_tensor_string_get(s._handle, 2, data, length))
    with pytest.raises(pmi.UnsupportedDtypeError):
        check(lib.pmi_tensor_to_dlpack_versioned(s._handle, ffi.new("DLManagedTensorVersioned**")))


def test_wrong_python_types() -> None:
    with pytest.raises(TypeError, match="numpy.ndarray"):
        Tensor.from_numpy([1, 2, 3])
    with pytest.raises(TypeError, match="cannot be constructed directly"):
        Tensor()
    with pytest.raises(TypeError, match="shape"):
        Tensor.zeros("abc")
    with pytest.raises(TypeError, match="shape"):
        Tensor.zeros((2.5,))
    with pytest.raises(TypeError):
        Tensor.zeros((2,), dtype="no such dtype")
    with pytest.raises(TypeError, match="rank-0"):
        len(Tensor.zeros(()))
    with pytest.raises(TypeError):
        pmi.load_npy(3.14)
    t = Tensor.zeros((2,))
    with pytest.raises(ValueError, match="stream"):
        t.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="device"):
        t.__dlpack__(dl_device=(2, 0))
