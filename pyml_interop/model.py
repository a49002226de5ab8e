"""`Model`: load, inspect and save ONNX models (``pmi_model_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ._errors import check
from ._ffi import ffi, lib
from .dtypes import DType, to_numpy_dtype

__all__ = ["Model", "ValueInfo", "load_model"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ValueInfo:
    """A model input or output as declared in the model.

    ``shape`` holds an ``int`` for a fixed dim, a ``str`` for a symbolic dim (``"batch"``) and
    ``None`` for an unknown one; ``shape`` itself is ``None`` when the rank is unknown.
    ``dtype`` is the numpy dtype (``None`` for non-tensors or unknown), ``onnx_dtype`` the ONNX
    code (0 when unknown), ``type`` the ONNX type string (``"tensor(float)"``).
    """

    name: str
    onnx_dtype: int
    shape: tuple[int | str | None, ...] | None
    type: str

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy dtype of the elements, or None when unknown or not a tensor."""
        if self.onnx_dtype == 0:
            return None
        try:
            return to_numpy_dtype(DType(self.onnx_dtype))
        except Exception:
            return None


def _value_info(info: Any) -> ValueInfo:
    name = ffi.string(info.name).decode("utf-8")
    rank = int(info.rank)
    shape: tuple[int | str | None, ...] | None
    if rank < 0:
        shape = None
    else:
        dims: list[int | str | None] = []
        for i in range(rank):
            d = int(info.dims[i])
            if d >= 0:
                dims.append(d)
            elif info.dim_names[i] != ffi.NULL:
                dims.append(ffi.string(info.dim_names[i]).decode("utf-8"))
            else:
                dims.append(None)
        shape = tuple(dims)
    return ValueInfo(name, int(info.dtype), shape, ffi.string(info.type_string).decode("utf-8"))


def _str(p: Any) -> str:
    return ffi.string(p).decode("utf-8") if p != ffi.NULL else ""


class Model:
    """A loaded, validated ONNX model (immutable, thread-safe).

    Load with :func:`load_model`. Attributes: :attr:`inputs`, :attr:`outputs`,
    :attr:`opsets`, :attr:`metadata`, :attr:`producer`, :attr:`ir_version`,
    :attr:`op_types`, :attr:`initializer_count`, :attr:`initializer_bytes`.
    """

    __slots__ = ("_handle", "inputs", "outputs", "opsets", "metadata", "producer", "ir_version",
                 "op_types", "initializer_count", "initializer_bytes")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use pyml_interop.load_model(path_or_bytes)")

    @classmethod
    def _adopt(cls, handle: Any) -> Model:
        self = object.__new__(cls)
        self._handle = ffi.gc(handle, lib.pmi_model_release)
        n = ffi.new("size_t*")
        info = ffi.new("pmi_value_info*")
        check(lib.pmi_model_input_count(handle, n))
        ins = []
        for i in range(n[0]):
            check(lib.pmi_model_input_info(handle, i, info))
            ins.append(_value_info(info))
        check(lib.pmi_model_output_count(handle, n))
        outs = []
        for i in range(n[0]):
            check(lib.pmi_model_output_info(handle, i, info))
            outs.append(_value_info(info))
        self.inputs: list[ValueInfo] = ins
        self.outputs: list[ValueInfo] = outs
        a, b = ffi.new("const char**"), ffi.new("const char**")
        v = ffi.new("int64_t*")
        check(lib.pmi_model_opset_count(handle, n))
        opsets = {}
        for i in range(n[0]):
            check(lib.pmi_model_opset(handle, i, a, v))
            opsets[_str(a[0])] = int(v[0])
        self.opsets: dict[str, int] = opsets
        check(lib.pmi_model_metadata_count(handle, n))
        meta = {}
        for i in range(n[0]):
            check(lib.pmi_model_metadata(handle, i, a, b))
            meta[_str(a[0])] = _str(b[0])
        self.metadata: dict[str, str] = meta
        check(lib.pmi_model_producer(handle, a, b))
        self.producer: tuple[str, str] = (_str(a[0]), _str(b[0]))
        check(lib.pmi_model_ir_version(handle, v))
        self.ir_version: int = int(v[0])
        check(lib.pmi_model_op_type_count(handle, n))
        ops = {}
        for i in range(n[0]):
            check(lib.pmi_model_op_type(handle, i, a, n2 := ffi.new("size_t*")))
            ops[_str(a[0])] = int(n2[0])
        self.op_types: dict[str, int] = ops
        c, nb = ffi.new("size_t*"), ffi.new("size_t*")
        check(lib.pmi_model_initializer_stats(handle, c, nb))
        self.initializer_count: int = int(c[0])
        self.initializer_bytes: int = int(nb[0])
        return self

    def save(self, path: PathLike) -> None:
        """Write the model as a self-contained ``.onnx`` file (external data inlined)."""
        check(lib.pmi_model_save_file(self._handle, os.fsencode(path)))

    def to_bytes(self) -> bytes:
        """The serialized model (external data inlined)."""
        data = ffi.new("uint8_t**")
        n = ffi.new("size_t*")
        check(lib.pmi_model_to_bytes(self._handle, data, n))
        try:
            return bytes(ffi.buffer(data[0], n[0]))
        finally:
            lib.pmi_bytes_free(data[0], n[0])

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}: {i.type}{list(i.shape) if i.shape is not None else ''}" for i in self.inputs)
        outs = ", ".join(f"{o.name}: {o.type}{list(o.shape) if o.shape is not None else ''}" for o in self.outputs)
        return f"Model(inputs=[{ins}], outputs=[{outs}], opsets={self.opsets})"


def load_model(source: PathLike | bytes | bytearray | memoryview) -> Model:
    """Load and validate an ONNX model from a file path or from serialized bytes.

    Files are memory-mapped and their external data (``model.onnx.data``) is read from the
    model's directory. Raises :class:`FileError` (unreadable), :class:`InvalidModelError`
    (malformed; the message names the field or node), :class:`VersionMismatchError`.
    """
    out = ffi.new("pmi_model**")
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf = ffi.from_buffer(bytes(source) if isinstance(source, memoryview) else source)
        check(lib.pmi_model_load_bytes(buf, len(buf), out))
    else:
        check(lib.pmi_model_load_file(os.fsencode(source), out))
    return Model._adopt(out[0])
