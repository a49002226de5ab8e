"""Element types: ONNX ``TensorProto.DataType`` codes and their numpy dtypes.

Types numpy lacks come from ``ml_dtypes`` (bfloat16, float8, float4, int4/uint4, int2/uint2),
imported on first use of one of them (it takes 0.7 s to import, more than the rest of the package).
Sub-byte types are stored one element per byte, like ``ml_dtypes``. STRING maps to numpy
``object`` (elements ``str`` or ``bytes``); numpy ``str_``/``bytes_``/``StringDType`` arrays
convert to STRING tensors.
"""

from __future__ import annotations

import enum
from typing import Any, Union

import numpy as np

from ._errors import UnsupportedDtypeError

__all__ = ["DType", "DTypeLike", "to_numpy_dtype", "from_numpy_dtype", "as_dtype_code", "dtype_name"]


class DType(enum.IntEnum):
    """ONNX element type codes (``onnx.TensorProto.DataType``), equal to the ``PMI_DTYPE_*``
    macros of the C header."""

    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26


#: Anything :func:`as_dtype_code` accepts: a code (int or DType) or a numpy dtype-like.
DTypeLike = Union[int, DType, np.dtype, type, str]

_NUMPY_NATIVE: dict[DType, Any] = {
    DType.FLOAT: np.float32,
    DType.UINT8: np.uint8,
    DType.INT8: np.int8,
    DType.UINT16: np.uint16,
    DType.INT16: np.int16,
    DType.INT32: np.int32,
    DType.INT64: np.int64,
    DType.STRING: np.object_,
    DType.BOOL: np.bool_,
    DType.FLOAT16: np.float16,
    DType.DOUBLE: np.float64,
    DType.UINT32: np.uint32,
    DType.UINT64: np.uint64,
    DType.COMPLEX64: np.complex64,
    DType.COMPLEX128: np.complex128,
}

_ML_DTYPES_NAMES: dict[DType, str] = {
    DType.BFLOAT16: "bfloat16",
    DType.FLOAT8E4M3FN: "float8_e4m3fn",
    DType.FLOAT8E4M3FNUZ: "float8_e4m3fnuz",
    DType.FLOAT8E5M2: "float8_e5m2",
    DType.FLOAT8E5M2FNUZ: "float8_e5m2fnuz",
    DType.UINT4: "uint4",
    DType.INT4: "int4",
    DType.FLOAT4E2M1: "float4_e2m1fn",
    DType.FLOAT8E8M0: "float8_e8m0fnu",
    DType.UINT2: "uint2",
    DType.INT2: "int2",
}

# code -> numpy dtype: numpy's own types now, ml_dtypes' once `_load_ml_dtypes` ran. Public as
# NUMPY_DTYPES (module __getattr__ below), which is always complete.
_NUMPY_DTYPES: dict[DType, np.dtype] = {code: np.dtype(t) for code, t in _NUMPY_NATIVE.items()}
_ml_loaded = False


def _load_ml_dtypes() -> None:
    """Add the ml_dtypes types to the tables (once; a no-op when ml_dtypes is missing)."""
    global _ml_loaded
    if _ml_loaded:
        return
    _ml_loaded = True
    try:
        import ml_dtypes
    except ImportError:
        return
    for code, name in _ML_DTYPES_NAMES.items():
        if hasattr(ml_dtypes, name):
            dt = np.dtype(getattr(ml_dtypes, name))
            _NUMPY_DTYPES[code] = dt
            _FROM_NUMPY[dt] = code


def __getattr__(name: str) -> Any:
    if name == "NUMPY_DTYPES":
        #: code -> numpy dtype, for every code this numpy/ml_dtypes installation can represent.
        _load_ml_dtypes()
        return _NUMPY_DTYPES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Codes numpy itself can exchange through DLPack (the others go through __array_interface__).
NUMPY_DLPACK_CODES: frozenset[DType] = frozenset(
    code for code in _NUMPY_NATIVE if code is not DType.STRING
)

#: Signed sub-byte codes: the C library keeps them sign-extended in their byte, ml_dtypes keeps
#: only the low bits (and ignores the high bits when reading).
SIGNED_SUBBYTE_BITS: dict[DType, int] = {DType.INT4: 4, DType.INT2: 2}

_FROM_NUMPY: dict[np.dtype, DType] = {dt: code for code, dt in _NUMPY_DTYPES.items() if code is not DType.STRING}


def to_numpy_dtype(code: int) -> np.dtype:
    """The numpy dtype of an ONNX code (``object`` for STRING)."""
    try:
        code = DType(code)
        if code not in _NUMPY_DTYPES:
            _load_ml_dtypes()
        return _NUMPY_DTYPES[code]
    except (ValueError, KeyError):
        raise UnsupportedDtypeError(
            f"element type code {code} has no numpy dtype"
            + (" (upgrade ml_dtypes)" if code in _ML_DTYPES_NAMES else "")
        ) from None


def from_numpy_dtype(dtype: Any) -> DType:
    """The ONNX code of a numpy dtype (any byte order). ``str_``, ``bytes_``, ``object`` and
    ``StringDType`` give STRING."""
    dt = np.dtype(dtype)
    if dt.kind in "USOT":
        return DType.STRING
    native = dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt
    code = _FROM_NUMPY.get(native)
    if code is None and not _ml_loaded:
        _load_ml_dtypes()
        code = _FROM_NUMPY.get(native)
    if code is None:
        raise UnsupportedDtypeError(f"numpy dtype {dt} has no ONNX element type")
    return code


def as_dtype_code(dtype: DTypeLike) -> DType:
    """Normalize a dtype argument: an ONNX code (``int``/:class:`DType`) or a numpy dtype-like
    (``np.float32``, ``"float32"``, ``ml_dtypes.bfloat16``...). ONNX names are not accepted as
    strings because they clash with numpy's (``"float"`` is float32 in ONNX, float64 in numpy)."""
    if isinstance(dtype, bool):
        raise TypeError("dtype must be an ONNX code or a numpy dtype, not a bool")
    if isinstance(dtype, int):
        try:
            return DType(dtype)
        except ValueError:
            raise UnsupportedDtypeError(f"unknown element type code {dtype} (ONNX TensorProto.DataType)") from None
    try:
        return from_numpy_dtype(dtype)
    except TypeError as e:
        if isinstance(e, UnsupportedDtypeError):
            raise
        raise TypeError(f"not a dtype: {dtype!r}") from None


def dtype_name(code: int) -> str:
    """A display name: the numpy name when there is one (``float32``, ``bfloat16``), ``string``
    for STRING."""
    code = DType(code)
    if code is DType.STRING:
        return "string"
    if code not in _NUMPY_DTYPES:
        _load_ml_dtypes()
    dt = _NUMPY_DTYPES.get(code)
    return dt.name if dt is not None else code.name.lower()
