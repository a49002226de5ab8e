"""Shared fixtures: the raw cffi binding, and a DLPack producer written in Python whose deleter
calls are counted (the C-side equivalent lives in tests/c/test_tensor.c)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyml_interop
from pyml_interop import _dlpack, _ffi

REPO = Path(__file__).resolve().parents[2]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"pyml_interop {pyml_interop.__version__} from {Path(pyml_interop.__file__).parent}",
        f"C library {_ffi.LIBRARY_PATH}",
    ]


@pytest.fixture
def ffi() -> Any:
    return _ffi.ffi


@pytest.fixture
def lib() -> Any:
    return _ffi.lib


def last_error() -> str:
    return _ffi.ffi.string(_ffi.lib.pmi_last_error()).decode()


class CountingProducer:
    """A DLPack producer over a numpy array's buffer whose deleter calls are counted.

    The managed tensor (struct, shape, strides) is allocated with cffi and kept alive until its
    deleter runs; ``deleted`` counts the deleter calls. ``device``, ``major``, ``read_only``,
    ``strides`` (in elements) let tests build bad or unusual tensors.
    """

    _ffi = _ffi.ffi
    # Every producer ever made, by managed-tensor address: kept forever so that the memory stays
    # valid and a second deleter call is counted rather than touching freed memory.
    registry: dict[int, "CountingProducer"] = {}

    def __init__(
        self,
        array: np.ndarray,
        *,
        versioned: bool = True,
        device: int = 1,
        major: int = 1,
        read_only: bool = False,
        strides: tuple[int, ...] | None = None,
        dtype: tuple[int, int] | None = None,
    ) -> None:
        ffi = self._ffi
        self.array = array
        self.versioned = versioned
        self.deleted = 0
        self.calls = 0
        self._shape = ffi.new("int64_t[]", list(array.shape) or [0])
        self._strides = ffi.new("int64_t[]", list(strides)) if strides is not None else ffi.NULL
        if versioned:
            self._managed = ffi.new("DLManagedTensorVersioned*")
            self._managed.version.major = major
            self._managed.version.minor = 0
            self._managed.flags = 1 if read_only else 0
            self._managed.deleter = _versioned_deleter
        else:
            self._managed = ffi.new("DLManagedTensor*")
            self._managed.deleter = _legacy_deleter
        dl = self._managed.dl_tensor
        dl.data = ffi.cast("void*", array.ctypes.data)
        dl.device.device_type = device
        dl.device.device_id = 0
        dl.ndim = array.ndim
        code, bits = dtype if dtype is not None else (2, array.dtype.itemsize * 8)  # kDLFloat
        dl.dtype.code = code
        dl.dtype.bits = bits
        dl.dtype.lanes = 1
        dl.shape = self._shape
        dl.strides = self._strides
        dl.byte_offset = 0
        self._address = int(ffi.cast("uintptr_t", self._managed))
        CountingProducer.registry[self._address] = self

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None, copy: Any = None) -> Any:
        self.calls += 1
        return _dlpack.new_capsule(self._managed, versioned=self.versioned)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def _on_delete(address: int) -> None:
    CountingProducer.registry[address].deleted += 1


@_ffi.ffi.callback("void(DLManagedTensorVersioned*)")
def _versioned_deleter(managed: Any) -> None:
    _on_delete(int(_ffi.ffi.cast("uintptr_t", managed)))


@_ffi.ffi.callback("void(DLManagedTensor*)")
def _legacy_deleter(managed: Any) -> None:
    _on_delete(int(_ffi.ffi.cast("uintptr_t", managed)))


@pytest.fixture
def producer() -> type[CountingProducer]:
    return CountingProducer


@pytest.fixture
def installed_only() -> None:
    """Skip unless the tests run against an installed package (set by tests/run_all.sh)."""
    if not os.environ.get("PYML_INTEROP_EXPECT_INSTALLED"):
        pytest.skip("PYML_INTEROP_EXPECT_INSTALLED not set")
