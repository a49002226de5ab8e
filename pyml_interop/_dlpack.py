"""DLPack capsules (the Python exchange protocol) over the C library's DLPack functions.

A capsule named ``"dltensor_versioned"`` (DLPack >= 1.0) or ``"dltensor"`` (legacy) holds a
``DLManagedTensor[Versioned]*``. The consumer renames it to ``"used_dltensor[_versioned]"`` when
it takes ownership; if nobody did, the capsule's destructor calls the managed tensor's deleter.
See https://dmlc.github.io/dlpack/latest/python_spec.html.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ._ffi import ffi

__all__ = [
    "VERSIONED",
    "LEGACY",
    "new_capsule",
    "capsule_kind",
    "capsule_pointer",
    "mark_consumed",
    "is_contiguous",
]

# Capsule names. Module-level bytes objects: PyCapsule stores the pointer, not a copy, so the
# bytes must outlive every capsule carrying the name.
VERSIONED = b"dltensor_versioned"
LEGACY = b"dltensor"
USED_VERSIONED = b"used_dltensor_versioned"
USED_LEGACY = b"used_dltensor"

# Private prototypes (not ctypes.pythonapi's shared attributes, whose argtypes other libraries
# may set differently). PYFUNCTYPE keeps the GIL and raises a Python error set by the call.
_api = ctypes.pythonapi
_PyCapsule_New = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", _api)
)
_PyCapsule_IsValid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_PyCapsule_GetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)
_PyCapsule_SetName = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_SetName", _api))
# The same two, taking the capsule as a raw address: inside the destructor the capsule is being
# deallocated and must not be turned into a new Python reference.
_PyCapsule_IsValid_raw = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_PyCapsule_GetPointer_raw = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule: int) -> None:
    """PyCapsule destructor of our exports: call the deleter unless a consumer took ownership
    (then the capsule was renamed "used_..." and the consumer calls the deleter)."""
    try:
        if _PyCapsule_IsValid_raw(capsule, VERSIONED):
            managed = ffi.cast("DLManagedTensorVersioned*", _PyCapsule_GetPointer_raw(capsule, VERSIONED))
        elif _PyCapsule_IsValid_raw(capsule, LEGACY):
            managed = ffi.cast("DLManagedTensor*", _PyCapsule_GetPointer_raw(capsule, LEGACY))
        else:
            return  # consumed
        if managed.deleter != ffi.NULL:
            managed.deleter(managed)
    except Exception:  # noqa: BLE001 - nothing can propagate out of a destructor
        pass


# Kept alive for the whole process: capsules may outlive any object that created them.
_DESTRUCTOR_ADDRESS = ctypes.cast(_capsule_destructor, ctypes.c_void_p).value


def new_capsule(managed: Any, versioned: bool) -> Any:
    """A PyCapsule owning ``managed`` (a cffi ``DLManagedTensor[Versioned]*``): named
    "dltensor_versioned" or "dltensor", with a destructor that calls the deleter if unconsumed."""
    address = int(ffi.cast("uintptr_t", managed))
    try:
        return _PyCapsule_New(address, VERSIONED if versioned else LEGACY, _DESTRUCTOR_ADDRESS)
    except BaseException:
        managed.deleter(managed)
        raise


def capsule_kind(capsule: Any) -> bytes | None:
    """VERSIONED or LEGACY for an unconsumed DLPack capsule, else None."""
    if type(capsule).__name__ != "PyCapsule":
        return None
    for name in (VERSIONED, LEGACY):
        if _PyCapsule_IsValid(capsule, name):
            return name
    return None


def capsule_pointer(capsule: Any, kind: bytes) -> Any:
    """The managed tensor inside an unconsumed capsule of ``kind``, as a cffi pointer. The
    capsule keeps ownership until :func:`mark_consumed`."""
    address = _PyCapsule_GetPointer(capsule, kind)
    ctype = "DLManagedTensorVersioned*" if kind == VERSIONED else "DLManagedTensor*"
    return ffi.cast(ctype, address)


def mark_consumed(capsule: Any, kind: bytes) -> None:
    """Rename the capsule to "used_..." so that its destructor no longer calls the deleter: do
    this right before handing the pointer to the C library, which then owns it."""
    if _PyCapsule_SetName(capsule, USED_VERSIONED if kind == VERSIONED else USED_LEGACY) != 0:
        raise RuntimeError("PyCapsule_SetName failed")


def is_contiguous(dl_tensor: Any) -> bool:
    """Whether a cffi ``DLTensor`` is row-major contiguous (strides NULL, or equal to the row-major
    strides on every axis longer than 1; tensors without elements always are)."""
    ndim = dl_tensor.ndim
    if ndim <= 0 or dl_tensor.strides == ffi.NULL:
        return True
    shape = [dl_tensor.shape[i] for i in range(ndim)]
    if 0 in shape:
        return True
    expected = 1
    for axis in range(ndim - 1, -1, -1):
        if shape[axis] != 1 and dl_tensor.strides[axis] != expected:
            return False
        expected *= shape[axis]
    return True
