"""torch <-> Tensor through DLPack, sharing memory. Skipped when torch is not installed."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import Tensor

torch = pytest.importorskip("torch")


def test_torch_to_tensor_shares_memory() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = pmi.from_dlpack(x)
    assert t.data_ptr == x.data_ptr()
    assert t.shape == (3, 4)
    x[0, 0] = 99.0
    assert t.numpy()[0, 0] == 99.0


def test_tensor_to_torch_shares_memory() -> None:
    t = Tensor.from_numpy(np.arange(6, dtype=np.int64))
    x = torch.from_dlpack(t)
    assert x.data_ptr() == t.data_ptr
    assert x.tolist() == list(range(6))


def test_torch_round_trip_and_lifetime() -> None:
    x = torch.ones(1000, dtype=torch.float64)
    address = x.data_ptr()
    t = pmi.from_dlpack(x)
    del x
    gc.collect()
    y = torch.from_dlpack(t)
    del t
    gc.collect()
    assert y.data_ptr() == address
    assert float(y.sum()) == 1000.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "bool", "int8", "complex64"])
def test_torch_dtypes(dtype: str) -> None:
    x = torch.zeros(4, dtype=getattr(torch, dtype))
    t = pmi.from_dlpack(x)
    assert t.data_ptr == x.data_ptr()
    back = torch.from_dlpack(t)
    assert back.dtype == x.dtype and back.data_ptr() == x.data_ptr()


def test_non_contiguous_torch_tensor_is_copied_unless_copy_false() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    t = pmi.from_dlpack(x)
    np.testing.assert_array_equal(t.numpy(), x.numpy())
    with pytest.raises(BufferError):
        pmi.from_dlpack(x, copy=False)
