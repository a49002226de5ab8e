"""`Tensor`: a handle on a C library tensor, exchanged with numpy and DLPack without copying.

Zero-copy rules, in one place:

* :meth:`Tensor.from_numpy` shares the array's memory (``pmi_tensor_wrap`` over the array's
  buffer, which stays alive until the library releases it) when numpy could also export it
  through DLPack: bool, integers, float16/32/64, complex; native byte order; C-contiguous;
  aligned. Other arrays (ml_dtypes types, strings, byte-swapped, strided) are copied;
  ``copy=False`` then raises ``BufferError``.
* :func:`from_dlpack` shares the memory of any DLPack producer (numpy, torch, jax, ...) on the
  CPU; strided producers are copied unless ``copy=False``.
* :meth:`Tensor.numpy`, ``np.asarray(tensor)`` and ``np.from_dlpack(tensor)`` share the tensor's
  memory for every dtype except STRING (STRING tensors convert to a new object array).
* Read-only data stays read-only both ways.

Memory lives as long as its last user: a numpy array made from a tensor keeps the data alive
after the tensor is deleted, and a tensor made from an array keeps the array's buffer alive.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import threading
from typing import Any, Iterable, Sequence, Union

import numpy as np

from . import _dlpack
from ._errors import InvalidArgumentError, LimitExceededError, check
from ._ffi import ffi, lib, new_raw
from .dtypes import (
    NUMPY_DLPACK_CODES,
    SIGNED_SUBBYTE_BITS,
    DType,
    DTypeLike,
    as_dtype_code,
    dtype_name,
    from_numpy_dtype,
    to_numpy_dtype,
)

__all__ = ["Tensor", "from_dlpack", "load_npy", "save_npy", "load_pb", "save_pb"]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_INT64_MAX = 2**63 - 1
# DLPack device types the C library accepts: CPU, CUDA host (pinned), ROCm host.
_CPU_DEVICE_TYPES = (1, 3, 11)
_DLPACK_FLAG_IS_COPIED = 1 << 1
# Codes the C library exports through legacy DLPack (no sub-byte types).
_SUBBYTE_CODES = frozenset({DType.UINT4, DType.INT4, DType.FLOAT4E2M1, DType.UINT2, DType.INT2})


def _shape_arg(shape: Iterable[int]) -> tuple[Any, int, tuple[int, ...]]:
    """(int64_t[] or NULL, rank, dims) of a shape argument; dims are checked to fit int64 (the C
    library checks the rest: negative dims, rank, total size)."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of integers, got {shape!r}") from None
    for axis, d in enumerate(dims):
        if d > _INT64_MAX:
            raise LimitExceededError(f"shape[{axis}] = {d} does not fit in int64")
        if d < -_INT64_MAX - 1:
            raise InvalidArgumentError(f"shape[{axis}] is negative ({d})")
    return (ffi.new("int64_t[]", dims) if dims else ffi.NULL), len(dims), dims


def _path_arg(path: PathLike) -> bytes:
    """A UTF-8, NUL-terminated path for the C library."""
    p = os.fspath(path)
    return p if isinstance(p, bytes) else p.encode("utf-8")


def _sign_extend(a: np.ndarray, bits: int) -> np.ndarray:
    """Signed sub-byte values as the C library stores them: ml_dtypes keeps the low ``bits`` bits
    of each byte; the library wants the byte to hold the sign-extended value."""
    raw = a.view(np.uint8) & ((1 << bits) - 1)
    sign = 1 << (bits - 1)
    # np.asarray: arithmetic on rank-0 arrays gives numpy scalars.
    return np.asarray(((raw ^ sign).astype(np.int16) - sign).astype(np.int8)).view(a.dtype)


def _numpy_dlpack_reason(a: np.ndarray, code: DType) -> str | None:
    """Why numpy cannot share ``a`` through DLPack, or None if it can."""
    if code not in NUMPY_DLPACK_CODES:
        return f"numpy cannot export {a.dtype} through DLPack"
    if not a.dtype.isnative:
        return f"the array is in non-native byte order ({a.dtype.str})"
    if not a.flags.c_contiguous:
        return f"the array is not C-contiguous (strides {a.strides})"
    if a.size and a.ctypes.data % a.dtype.itemsize:
        return f"the array's data is not aligned to {a.dtype.itemsize} bytes"
    return None


# -- machinery shared with the session fast path ---------------------------------------------

#: numpy dtype (native byte order) -> ONNX code, for the dtypes whose arrays are shared rather
#: than copied: the ones numpy itself exports through DLPack (see the module docstring).
_WRAP_CODES: dict[np.dtype, int] = {
    to_numpy_dtype(code): int(code) for code in NUMPY_DLPACK_CODES
}
#: ONNX code -> numpy dtype of the outputs built directly over the library's buffer.
_ARRAY_DTYPES: dict[int, np.dtype] = {int(code): to_numpy_dtype(code) for code in NUMPY_DLPACK_CODES}

_INT64_ARRAY = ffi.typeof("int64_t[]")
_gc = getattr(getattr(ffi, "_backend", None), "gcp", None) or ffi.gc  # ffi.gc without its Python frame
_buffer = ffi.buffer
_prod = math.prod
_release_tensor = lib.pmi_tensor_release
_UINTPTR = ffi.typeof("uintptr_t")
_VOID_P = ffi.typeof("void*")
# Shapes already converted for the C library (tuple -> int64_t[]): the arrays are only read by
# the library, so one per shape serves every call and thread. Bounded: cleared when full.
_C_SHAPES: dict[tuple[int, ...], Any] = {(): ffi.NULL}
_C_SHAPES_MAX = 512


def _c_shape(shape: tuple[int, ...]) -> Any:
    """An ``int64_t[]`` (NULL for rank 0) holding a numpy shape, from a bounded cache."""
    c = _C_SHAPES.get(shape)
    if c is None:
        if len(_C_SHAPES) >= _C_SHAPES_MAX:
            _C_SHAPES.clear()
            _C_SHAPES[()] = ffi.NULL
        c = _C_SHAPES[shape] = new_raw(_INT64_ARRAY, shape)
    return c


class _Scratch(threading.local):
    """Per-thread out-parameters of the accessor calls on the fast paths, allocated once per
    thread instead of once per call: ``slots`` = (dtype, rank, dims, data pointer, and the data
    pointer slot viewed as ``const void**`` / ``void**`` for pmi_tensor_data / _data_mut; read
    through the ``char*[1]`` view it gives a pointer that ``ffi.buffer`` and comparisons take).
    """

    def __init__(self) -> None:
        data = ffi.new("char*[1]")
        self.slots = (
            ffi.new("int32_t[1]"),
            ffi.new("size_t[1]"),
            ffi.new("const int64_t*[1]"),
            data,
            ffi.cast("const void**", data),
            ffi.cast("void**", data),
        )


_scratch = _Scratch()

# Buffers wrapped with a release callback, by key: each entry keeps an array's buffer exported
# (and so the array alive) until the library calls `_unpin` with that key.
_pinned: dict[int, Any] = {}
_pin_keys = itertools.count(1)


@ffi.callback("void(void*)")
def _unpin(ctx: Any, _pop: Any = _pinned.pop, _cast: Any = ffi.cast, _uintptr: Any = _UINTPTR) -> None:
    """pmi_release_fn of wrapped numpy buffers: drop the pin (called exactly once per wrap)."""
    try:
        _pop(int(_cast(_uintptr, ctx)), None)
    except Exception:  # noqa: BLE001 - nothing may propagate into the C library
        pass


def _array_from_handle(handle: Any, wrapped: Sequence[tuple[Any, int, np.ndarray]] = ()) -> np.ndarray:
    """A numpy array over an owned ``pmi_tensor*``'s data, without a copy; takes ownership of
    ``handle`` (also when it raises). Writable unless the tensor is read-only.

    The array's base is a cffi buffer over the data whose pointer object releases the handle
    when collected, that is after the array and every view of it are gone.
    ``wrapped``: (buffer start, buffer end, array) of the inputs wrapped without a release callback
    for the run that produced ``handle``; if the data lies in one of those buffers, the output
    keeps that array alive too. STRING and ml_dtypes tensors take the general
    :meth:`Tensor.numpy`.
    """
    try:
        code, rank, dims, data, data_const, data_mut = _scratch.slots
        status = lib.pmi_tensor_dtype(handle, code)
        if status != 0:
            check(status)
        dtype = _ARRAY_DTYPES.get(code[0])
    except BaseException:
        lib.pmi_tensor_release(handle)
        raise
    if dtype is None:
        return Tensor._adopt(handle).numpy()  # the Tensor owns the handle from its first line
    try:
        status = lib.pmi_tensor_rank(handle, rank)
        if status != 0:
            check(status)
        n = rank[0]
        if n:
            status = lib.pmi_tensor_shape(handle, dims)
            if status != 0:
                check(status)
            shape = tuple(dims[0][0:n])
        else:
            shape = ()
        # One call for the pointer and the writability: data_mut fails only on read-only data.
        read_only = lib.pmi_tensor_data_mut(handle, data_mut) != 0
        if read_only:
            status = lib.pmi_tensor_data(handle, data_const)
            if status != 0:
                check(status)
        pointer = data[0]
        keep = None
        for buf, end, array in wrapped:
            if buf <= pointer < end:
                keep = (array,) if keep is None else (*keep, array)
        # The destructor holds the handle and the inputs to keep (in its defaults) and releases
        # the handle when the pointer object is collected.
        owned = _gc(pointer, lambda _p, h=handle, k=keep, release=_release_tensor: release(h), 0)
    except BaseException:
        lib.pmi_tensor_release(handle)
        raise
    # From here `owned` releases the handle when collected (also if what follows raises).
    out = np.ndarray(shape, dtype, _buffer(owned, _prod(shape) * dtype.itemsize))
    if read_only:
        out.flags.writeable = False
    return out


class _ArrayInterface:
    """Exposes a tensor's buffer as ``__array_interface__`` with an explicit typestr (used for
    ml_dtypes types, which typestrings cannot name: the array is then viewed as the right
    dtype). Keeps the tensor alive as the array's base."""

    __slots__ = ("tensor", "__array_interface__")

    def __init__(self, tensor: Tensor, typestr: str) -> None:
        self.tensor = tensor
        self.__array_interface__ = {
            "version": 3,
            "shape": tensor.shape,
            "typestr": typestr,
            "data": (tensor.data_ptr, not tensor.writable),
        }


class Tensor:
    """A dense, row-major tensor owned by the C library (a ``pmi_tensor*`` handle).

    Create one with :meth:`from_numpy`, :func:`from_dlpack`, :meth:`zeros`, :func:`load_npy` or
    :func:`load_pb`; read it with :meth:`numpy`, ``np.asarray``, ``np.from_dlpack`` or
    ``torch.from_dlpack``. The handle is released when the object is garbage-collected.
    """

    __slots__ = ("_handle", "_shape", "_code", "__weakref__")

    _handle: Any
    _shape: tuple[int, ...]
    _code: DType

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "Tensor cannot be constructed directly; use Tensor.from_numpy, Tensor.zeros, "
            "pyml_interop.from_dlpack or pyml_interop.load_npy"
        )

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def _adopt(cls, handle: Any) -> Tensor:
        """Wrap an owned ``pmi_tensor*`` (released when the Tensor is collected)."""
        self = object.__new__(cls)
        self._handle = ffi.gc(handle, lib.pmi_tensor_release)
        code, rank, dims = _scratch.slots[:3]
        check(lib.pmi_tensor_dtype(handle, code))
        self._code = DType(code[0])
        check(lib.pmi_tensor_rank(handle, rank))
        n = rank[0]
        if n:
            check(lib.pmi_tensor_shape(handle, dims))
            self._shape = tuple(dims[0][0:n])
        else:
            self._shape = ()
        return self

    @classmethod
    def zeros(cls, shape: Sequence[int], dtype: DTypeLike = DType.FLOAT) -> Tensor:
        """A new zero-filled (empty strings for STRING), writable tensor.

        ``dtype`` is an ONNX code (:class:`DType`) or a numpy dtype-like. Raises
        :class:`InvalidArgumentError` for a negative dim, :class:`LimitExceededError` for an
        absurd size, :class:`UnsupportedDtypeError` for an unknown dtype.
        """
        c_shape, rank, _ = _shape_arg(shape)
        out = ffi.new("pmi_tensor**")
        check(lib.pmi_tensor_zeros(int(as_dtype_code(dtype)), c_shape, rank, out))
        return cls._adopt(out[0])

    @classmethod
    def from_numpy(cls, array: np.ndarray, *, copy: bool | None = None) -> Tensor:
        """A tensor over a numpy array's data.

        ``copy=None`` (default) shares the memory when numpy can export it through DLPack (see the
        module docstring) and copies otherwise; ``copy=True`` always copies (the tensor is then
        writable); ``copy=False`` never copies and raises ``BufferError`` when sharing is
        impossible. A shared read-only array gives a read-only tensor. The tensor keeps the
        array's buffer alive. Numpy scalars are accepted as rank-0 arrays.
        """
        if isinstance(array, np.generic):
            array = np.asarray(array)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor.from_numpy expects a numpy.ndarray, got {type(array).__name__}")
        code = from_numpy_dtype(array.dtype)
        if code is DType.STRING:
            if copy is False:
                raise BufferError("string arrays are always copied (copy=False was given)")
            return cls._from_string_array(array)
        if copy is True:
            return cls._from_array_copy(array, code)
        reason = _numpy_dlpack_reason(array, code)
        if reason is None:
            return cls._wrap_array(array, code)
        if copy is False:
            raise BufferError(f"cannot share the array's memory without copying: {reason}")
        return cls._from_array_copy(array, code)

    @classmethod
    def _wrap_array(cls, array: np.ndarray, code: DType) -> Tensor:
        """A tensor over a C-contiguous, aligned, native-order array's buffer (no copy, no DLPack
        capsule): the buffer stays exported, and so the array alive, until the library calls the
        release callback (when the last tensor sharing the data is released)."""
        writable = bool(array.flags.writeable)
        buf = ffi.from_buffer(array, require_writable=writable)
        key = next(_pin_keys)
        _pinned[key] = buf
        out = ffi.new("pmi_tensor**")
        status = lib.pmi_tensor_wrap(
            int(code), _c_shape(array.shape), array.ndim, buf, array.nbytes, writable, _unpin,
            ffi.cast(_VOID_P, key), out,
        )
        if status != 0:
            _pinned.pop(key, None)  # the library already called `_unpin`; this is a no-op then
            check(status)
        return cls._adopt(out[0])

    @classmethod
    def _from_array_copy(cls, array: np.ndarray, code: DType) -> Tensor:
        a = array if array.flags.c_contiguous else array.copy(order="C")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if code in SIGNED_SUBBYTE_BITS:
            a = _sign_extend(a, SIGNED_SUBBYTE_BITS[code])
        c_shape, rank, _ = _shape_arg(array.shape)
        data = ffi.cast("const void*", a.ctypes.data) if a.nbytes else ffi.NULL
        out = ffi.new("pmi_tensor**")
        check(lib.pmi_tensor_from_copy(int(code), c_shape, rank, data, a.nbytes, out))
        return cls._adopt(out[0])

    @classmethod
    def _from_string_array(cls, array: np.ndarray) -> Tensor:
        items: list[bytes] = []
        for i, s in enumerate(array.ravel(order="C").tolist()):
            if isinstance(s, str):
                items.append(s.encode("utf-8"))
            elif isinstance(s, (bytes, bytearray, memoryview, np.bytes_)):
                items.append(bytes(s))
            else:
                raise TypeError(
                    f"string tensors hold str or bytes; element {i} of the array is {type(s).__name__}"
                )
        c_shape, rank, _ = _shape_arg(array.shape)
        out = ffi.new("pmi_tensor**")
        n = len(items)
        if n == 0:
            check(lib.pmi_tensor_from_strings(c_shape, rank, ffi.NULL, ffi.NULL, 0, out))
            return cls._adopt(out[0])
        blob = ffi.from_buffer(b"".join(items) or b"\0")
        pointers = ffi.new("const char*[]", n)
        lengths = ffi.new("size_t[]", [len(s) for s in items])
        offset = 0
        for i, s in enumerate(items):
            pointers[i] = blob + offset
            offset += len(s)
        check(lib.pmi_tensor_from_strings(c_shape, rank, pointers, lengths, n, out))
        return cls._adopt(out[0])

    # -- properties --------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """The dimensions."""
        return self._shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of elements (1 for rank 0)."""
        n = 1
        for d in self._shape:
            n *= d
        return n

    @property
    def onnx_dtype(self) -> DType:
        """The ONNX element type code."""
        return self._code

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype (an ml_dtypes one for bfloat16, float8...; ``object`` for STRING)."""
        return to_numpy_dtype(self._code)

    @property
    def nbytes(self) -> int:
        """Size of the data buffer in bytes (0 for STRING tensors)."""
        out = ffi.new("size_t*")
        check(lib.pmi_tensor_nbytes(self._handle, out))
        return int(out[0])

    @property
    def writable(self) -> bool:
        """Whether the data may be written (False for read-only imports and weights)."""
        out = ffi.new("int*")
        check(lib.pmi_tensor_is_writable(self._handle, out))
        return bool(out[0])

    @property
    def data_ptr(self) -> int:
        """Address of the first byte of the data. Raises :class:`UnsupportedDtypeError` for
        STRING tensors."""
        out = ffi.new("const void**")
        check(lib.pmi_tensor_data(self._handle, out))
        return int(ffi.cast("uintptr_t", out[0]))

    def data_mut_ptr(self) -> int:
        """Address of the data for writing; raises :class:`ReadOnlyError` for read-only data."""
        out = ffi.new("void**")
        check(lib.pmi_tensor_data_mut(self._handle, out))
        return int(ffi.cast("uintptr_t", out[0]))

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a rank-0 tensor")
        return self._shape[0]

    # -- conversion --------------------------------------------------------------------------

    def copy(self) -> Tensor:
        """A deep, writable copy."""
        out = ffi.new("pmi_tensor**")
        check(lib.pmi_tensor_copy(self._handle, out))
        return Tensor._adopt(out[0])

    def numpy(self) -> np.ndarray:
        """The data as a numpy array sharing memory (no copy), read-only if the tensor is.

        The array keeps the data alive after the tensor is deleted. bfloat16, float8, float4,
        int4... come as ml_dtypes arrays. STRING tensors are the exception: they convert to a new
        ``object`` array of ``str`` (or of ``bytes`` if some element is not valid UTF-8).
        Note for INT4/INT2: writes through an ml_dtypes view store only the low bits, while the
        C library expects sign-extended bytes; prefer ``Tensor.from_numpy`` to write such data.
        """
        if self._code is DType.STRING:
            return self._string_array()
        if self._code in NUMPY_DLPACK_CODES:
            return np.from_dlpack(self)
        storage = np.dtype(f"u{self.dtype.itemsize}")
        return np.asarray(_ArrayInterface(self, storage.str)).view(self.dtype)

    def _strings(self) -> list[bytes]:
        data = ffi.new("const char**")
        length = ffi.new("size_t*")
        items = []
        for i in range(self.size):
            check(lib.pmi_tensor_string_get(self._handle, i, data, length))
            items.append(ffi.buffer(data[0], length[0])[:])
        return items

    def _string_array(self) -> np.ndarray:
        raw = self._strings()
        try:
            items: list[Any] = [b.decode("utf-8") for b in raw]
        except UnicodeDecodeError:
            items = raw
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(self._shape)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """numpy's array protocol: zero-copy unless ``copy=True``, a dtype change, or STRING."""
        if self._code is DType.STRING and copy is False:
            raise ValueError("a STRING tensor cannot be converted to numpy without copying")
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError(f"converting {a.dtype} to {np.dtype(dtype)} needs a copy")
            return a.astype(dtype)
        return a.copy() if copy else a

    @property
    def __array_interface__(self) -> dict[str, Any]:
        """numpy's array interface (zero-copy) for dtypes numpy can name by typestr. Absent
        (AttributeError) for STRING and ml_dtypes types, which go through ``__array__``."""
        if self._code not in NUMPY_DLPACK_CODES:
            raise AttributeError(f"{dtype_name(self._code)} tensors have no __array_interface__; use numpy()")
        return {
            "version": 3,
            "shape": self._shape,
            "typestr": self.dtype.str,
            "data": (self.data_ptr, not self.writable),
        }

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """Export as a DLPack capsule sharing the data (``copy=True``: a deep copy).

        ``max_version`` >= (1, 0) gives a ``"dltensor_versioned"`` capsule (carrying the
        read-only flag), otherwise a legacy ``"dltensor"`` one, which cannot carry read-only or
        sub-byte data (``BufferError`` unless ``copy=True`` for read-only data). ``stream`` must be
        None (CPU). ``dl_device`` other than CPU ``(1, 0)`` raises ``BufferError``.
        """
        if stream is not None:
            raise ValueError(f"stream must be None for CPU tensors, got {stream!r}")
        if dl_device is not None and tuple(dl_device) != (1, 0):
            raise BufferError(f"cannot export to device {tuple(dl_device)}: tensors live on the CPU (1, 0)")
        if self._code is DType.STRING:
            raise BufferError("STRING tensors cannot be exchanged through DLPack")
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        source = self.copy() if copy else self
        if not versioned:
            if not source.writable:
                raise BufferError(
                    "read-only tensor: legacy DLPack cannot mark data read-only; "
                    "ask for max_version=(1, 0) or copy=True"
                )
            if source._code in _SUBBYTE_CODES:
                raise BufferError(f"{dtype_name(source._code)} cannot be exchanged through legacy DLPack")
            legacy = ffi.new("DLManagedTensor**")
            check(lib.pmi_tensor_to_dlpack(source._handle, legacy))
            return _dlpack.new_capsule(legacy[0], versioned=False)
        managed = ffi.new("DLManagedTensorVersioned**")
        check(lib.pmi_tensor_to_dlpack_versioned(source._handle, managed))
        if copy:
            managed[0].flags |= _DLPACK_FLAG_IS_COPIED
        return _dlpack.new_capsule(managed[0], versioned=True)

    def __dlpack_device__(self) -> tuple[int, int]:
        """(device type, device id): always (1, 0), the CPU."""
        return (1, 0)

    # -- display -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        flags = "" if self.writable else ", read_only"
        return f"Tensor(shape={self._shape}, dtype={dtype_name(self._code)}{flags}, values={self._preview()})"

    def _preview(self, limit: int = 6) -> str:
        if self._code is DType.STRING:
            values = [repr(s) for s in self._string_array().reshape(-1)[:limit]]
        else:
            flat = self.numpy().reshape(-1)[:limit]
            values = [repr(v.item()) if self._code in NUMPY_DLPACK_CODES else str(v) for v in flat]
        more = ", ..." if self.size > limit else ""
        return "[" + ", ".join(values) + more + "]"


def _import_capsule(capsule: Any, *, allow_copy: bool) -> Tensor:
    """A Tensor from an unconsumed DLPack capsule. Without ``allow_copy``, strided data raises
    ``BufferError`` and the capsule stays unconsumed (its producer frees it)."""
    kind = _dlpack.capsule_kind(capsule)
    if kind is None:
        raise TypeError("__dlpack__() did not return an unconsumed DLPack capsule")
    managed = _dlpack.capsule_pointer(capsule, kind)
    if not allow_copy and not _dlpack.is_contiguous(managed.dl_tensor):
        raise BufferError("the DLPack tensor is not contiguous and copy=False forbids copying it")
    out = ffi.new("pmi_tensor**")
    flags = lib.PMI_DLPACK_ALLOW_COPY if allow_copy else 0
    _dlpack.mark_consumed(capsule, kind)
    # From here the library owns `managed` and calls its deleter exactly once, also on error.
    if kind == _dlpack.VERSIONED:
        check(lib.pmi_tensor_from_dlpack_versioned(managed, flags, out))
    else:
        check(lib.pmi_tensor_from_dlpack(managed, flags, out))
    return Tensor._adopt(out[0])


def from_dlpack(obj: Any, *, copy: bool | None = None) -> Tensor:
    """A tensor sharing the memory of any DLPack producer on the CPU (numpy, torch, jax, a
    :class:`Tensor`...).

    The producer is asked for a DLPack 1.x capsule (``max_version=(1, 0)``), falling back to the
    legacy protocol for producers that do not know ``max_version``. Read-only producers give
    read-only tensors. ``copy=None`` copies only strided data, ``copy=True`` always copies,
    ``copy=False`` never does (``BufferError`` for strided data). Non-CPU data raises
    ``BufferError``.
    """
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"{type(obj).__name__} does not implement the DLPack protocol (__dlpack__)")
    if hasattr(obj, "__dlpack_device__"):
        device_type, device_id = obj.__dlpack_device__()
        if int(device_type) not in _CPU_DEVICE_TYPES:
            raise BufferError(
                f"the object is on DLPack device ({int(device_type)}, {int(device_id)}); only CPU memory is supported"
            )
    try:
        capsule = obj.__dlpack__(max_version=(1, 0))
    except TypeError:
        capsule = obj.__dlpack__()
    tensor = _import_capsule(capsule, allow_copy=copy is not False)
    return tensor.copy() if copy else tensor


def load_npy(path: PathLike) -> Tensor:
    """Read a ``.npy`` file (bool, integers, float16/32/64, complex, unicode strings; either byte
    order; C or Fortran order). Raises :class:`FileError` if unreadable,
    :class:`InvalidArgumentError` if not a valid ``.npy`` file, :class:`UnsupportedDtypeError`."""
    out = ffi.new("pmi_tensor**")
    check(lib.pmi_tensor_load_npy(_path_arg(path), out))
    return Tensor._adopt(out[0])


def save_npy(tensor: Tensor | np.ndarray, path: PathLike) -> None:
    """Write a tensor (or a numpy array, converted first) as a ``.npy`` file (format 1.0).
    Types without a ``.npy`` code (bfloat16, float8, int4...) raise
    :class:`UnsupportedDtypeError`: use :func:`save_pb`."""
    t = tensor if isinstance(tensor, Tensor) else Tensor.from_numpy(tensor)
    check(lib.pmi_tensor_save_npy(t._handle, _path_arg(path)))


def _require(symbol: str) -> None:
    if not hasattr(lib, symbol):
        raise NotImplementedError(f"this build of the C library lacks {symbol}")


def load_pb(path: PathLike) -> Tensor:
    """Read a serialized ONNX ``TensorProto`` file (e.g. the ONNX test suite's ``input_0.pb``),
    any dtype. Raises :class:`FileError`, :class:`InvalidModelError` (malformed)."""
    _require("pmi_tensor_load_pb")
    out = ffi.new("pmi_tensor**")
    check(lib.pmi_tensor_load_pb(_path_arg(path), out))
    return Tensor._adopt(out[0])


def save_pb(tensor: Tensor | np.ndarray, path: PathLike) -> None:
    """Write a tensor (or a numpy array, converted first) as a serialized ONNX ``TensorProto``,
    any dtype."""
    _require("pmi_tensor_save_pb")
    t = tensor if isinstance(tensor, Tensor) else Tensor.from_numpy(tensor)
    check(lib.pmi_tensor_save_pb(t._handle, _path_arg(path)))
