"""pyml_interop: ONNX inference and zero-copy tensor exchange over a Rust core with a C ABI.

The Python package is a thin layer over the C library (``include/pyml_interop.h``), loaded with
cffi. Tensors cross it without copies; models run through an onnxruntime-compatible session::

    import pyml_interop as ort                  # drop-in for `import onnxruntime as ort`
    sess = ort.InferenceSession("model.onnx")
    outputs = sess.run(None, {"input": x})      # list of numpy arrays

The tensor layer::

    import numpy as np
    import pyml_interop as pmi

    t = pmi.Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))  # no copy
    a = t.numpy()                                                          # no copy either
    pmi.save_npy(t, "t.npy")

Errors raise subclasses of :class:`pyml_interop.Error`, one per C status code.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._errors import (
    Error,
    ExecutionError,
    FileError,
    InternalError,
    InvalidArgumentError,
    InvalidModelError,
    LimitExceededError,
    NullPointerError,
    PanicError,
    ReadOnlyError,
    ShapeMismatchError,
    UnsupportedDtypeError,
    UnsupportedOperatorError,
    VersionMismatchError,
)
from ._ffi import ffi as _ffi_instance
from ._ffi import lib as _lib
from .dtypes import DType
from .model import Model, ValueInfo, load_model
from .session import InferenceSession, ModelMetadata, NodeArg, RunOptions, Session, SessionOptions
from .tensor import Tensor, from_dlpack, load_npy, load_pb, save_npy, save_pb

__all__ = [
    "__version__",
    "abi_version",
    "library_version",
    # models and sessions
    "load_model",
    "Model",
    "ValueInfo",
    "InferenceSession",
    "Session",
    "SessionOptions",
    "RunOptions",
    "NodeArg",
    "ModelMetadata",
    "get_available_providers",
    # tensors
    "Tensor",
    "DType",
    "from_dlpack",
    "load_npy",
    "save_npy",
    "load_pb",
    "save_pb",
    # errors
    "Error",
    "InvalidArgumentError",
    "NullPointerError",
    "FileError",
    "InvalidModelError",
    "UnsupportedOperatorError",
    "UnsupportedDtypeError",
    "ShapeMismatchError",
    "ReadOnlyError",
    "VersionMismatchError",
    "LimitExceededError",
    "PanicError",
    "InternalError",
    "ExecutionError",
]


def get_available_providers() -> list[str]:
    """Execution providers, as onnxruntime names them: the CPU only."""
    return ["CPUExecutionProvider"]


def abi_version() -> tuple[int, int]:
    """The loaded C library's ABI version (major, minor)."""
    v = _lib.pmi_abi_version()
    return (v >> 16, v & 0xFFFF)


def library_version() -> str:
    """The loaded C library's release version, e.g. ``"0.1.0"``."""
    return _ffi_instance.string(_lib.pmi_version_string()).decode("ascii")
