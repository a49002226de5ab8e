"""The exception hierarchy: one class per `pmi_status` code, all under :class:`Error`.

The mapping is written once, here (``STATUS_CLASSES``), mirroring ``status_of`` in
``rust_core/src/ffi/status.rs``. Classes also derive from the closest built-in exception so that
generic handlers work (``except ValueError`` catches a bad shape).
"""

from __future__ import annotations

from typing import NoReturn

from ._ffi import ffi, lib

__all__ = [
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
    "STATUS_CLASSES",
    "error_for_status",
    "check",
]


class Error(Exception):
    """Base class of every error raised by the library.

    ``status`` is the `pmi_status` code (``PMI_ERR_*`` value) the C library returned.
    """

    status: int = -1
    status_name: str = "PMI_UNKNOWN"


class InvalidArgumentError(Error, ValueError):
    """An argument value is unacceptable (``PMI_ERR_INVALID_ARGUMENT``)."""

    status = 1
    status_name = "PMI_ERR_INVALID_ARGUMENT"


class NullPointerError(Error, ValueError):
    """A required pointer was NULL (``PMI_ERR_NULL_POINTER``); only reachable through the raw C
    ABI or a bug in these bindings."""

    status = 2
    status_name = "PMI_ERR_NULL_POINTER"


class FileError(Error, OSError):
    """A file could not be read or written (``PMI_ERR_IO``)."""

    status = 3
    status_name = "PMI_ERR_IO"


class InvalidModelError(Error, ValueError):
    """A model or serialized tensor is malformed (``PMI_ERR_INVALID_MODEL``)."""

    status = 4
    status_name = "PMI_ERR_INVALID_MODEL"


class UnsupportedOperatorError(Error):
    """The model uses operators the engine lacks (``PMI_ERR_UNSUPPORTED_OPERATOR``)."""

    status = 5
    status_name = "PMI_ERR_UNSUPPORTED_OPERATOR"


class UnsupportedDtypeError(Error, TypeError):
    """An element type is not supported by the function called (``PMI_ERR_UNSUPPORTED_DTYPE``)."""

    status = 6
    status_name = "PMI_ERR_UNSUPPORTED_DTYPE"


class ShapeMismatchError(Error, ValueError):
    """Shapes disagree (``PMI_ERR_SHAPE_MISMATCH``)."""

    status = 7
    status_name = "PMI_ERR_SHAPE_MISMATCH"


class ReadOnlyError(Error):
    """Write access was requested to read-only data (``PMI_ERR_READ_ONLY``)."""

    status = 8
    status_name = "PMI_ERR_READ_ONLY"


class VersionMismatchError(Error):
    """An ABI, DLPack or ONNX IR version is not supported (``PMI_ERR_VERSION_MISMATCH``)."""

    status = 9
    status_name = "PMI_ERR_VERSION_MISMATCH"


class LimitExceededError(Error, MemoryError):
    """Out of memory or a size limit exceeded (``PMI_ERR_LIMIT_EXCEEDED``)."""

    status = 10
    status_name = "PMI_ERR_LIMIT_EXCEEDED"


class PanicError(Error):
    """An internal panic was caught at the C boundary (``PMI_ERR_PANIC``): a bug, please report
    it. The library stays usable."""

    status = 11
    status_name = "PMI_ERR_PANIC"


class InternalError(Error):
    """An internal invariant was violated (``PMI_ERR_INTERNAL``): a bug, please report it."""

    status = 12
    status_name = "PMI_ERR_INTERNAL"


class ExecutionError(Error, RuntimeError):
    """Execution failed on the given values, e.g. an index out of range (``PMI_ERR_RUNTIME``)."""

    status = 13
    status_name = "PMI_ERR_RUNTIME"


#: `pmi_status` code -> exception class.
STATUS_CLASSES: dict[int, type[Error]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        NullPointerError,
        FileError,
        InvalidModelError,
        UnsupportedOperatorError,
        UnsupportedDtypeError,
        ShapeMismatchError,
        ReadOnlyError,
        VersionMismatchError,
        LimitExceededError,
        PanicError,
        InternalError,
        ExecutionError,
    )
}


def error_for_status(status: int, message: str) -> Error:
    """The exception for a failed call: the class of ``status`` (:class:`Error` for an unknown
    code) holding ``message``."""
    cls = STATUS_CLASSES.get(status)
    if cls is None:
        err = Error(f"unknown status {status}: {message}")
        err.status = status
        return err
    return cls(message)


def raise_for_status(status: int, message: str) -> NoReturn:
    """Raise :func:`error_for_status`."""
    raise error_for_status(status, message)


def last_error_message() -> str:
    """`pmi_last_error()` of this thread, decoded (invalid UTF-8 replaced)."""
    return ffi.string(lib.pmi_last_error()).decode("utf-8", "replace")


def check(status: int) -> None:
    """Raise the exception of `status` with `pmi_last_error()`'s message unless it is PMI_OK.

    Call it right after the C call: the message is thread-local and overwritten by the next one.
    """
    if status != 0:
        raise error_for_status(int(status), last_error_message())
