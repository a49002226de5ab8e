"""Zero-copy exchange, proven by data-pointer equality, and lifetimes (who frees what, once)."""

from __future__ import annotations

import gc
import weakref

import ml_dtypes
import numpy as np
import pytest

import pyml_interop as pmi
from pyml_interop import Tensor


def ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_numpy_to_tensor_to_numpy_shares_memory() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor.from_numpy(a)
    assert t.data_ptr == ptr(a)
    b = t.numpy()
    assert ptr(b) == ptr(a)
    assert b.shape == (3, 4) and b.dtype == np.float32
    a[1, 2] = 42.0  # writes are seen through every view
    assert b[1, 2] == 42.0
    assert t.writable and b.flags.writeable


def test_numpy_to_tensor_to_np_from_dlpack_shares_memory() -> None:
    a = np.arange(6, dtype=np.int64)
    t = Tensor.from_numpy(a)
    b = np.from_dlpack(t)
    assert ptr(b) == ptr(a)
    np.testing.assert_array_equal(b, a)


def test_tensor_to_np_from_dlpack_to_tensor_shares_memory() -> None:
    t = Tensor.zeros((2, 5), np.float64)
    a = np.from_dlpack(t)
    assert ptr(a) == t.data_ptr
    a[:] = 7.5
    t2 = pmi.from_dlpack(a)
    assert t2.data_ptr == t.data_ptr
    np.testing.assert_array_equal(t2.numpy(), np.full((2, 5), 7.5))


def test_tensor_to_tensor_through_dlpack_shares_memory() -> None:
    t = Tensor.from_numpy(np.arange(4, dtype=np.int32))
    t2 = pmi.from_dlpack(t)
    assert t2.data_ptr == t.data_ptr


def test_np_asarray_and_array_interface_share_memory() -> None:
    t = Tensor.from_numpy(np.arange(3, dtype=np.uint16))
    assert ptr(np.asarray(t)) == t.data_ptr
    assert t.__array_interface__["data"][0] == t.data_ptr
    c = np.array(t, copy=True)
    assert ptr(c) != t.data_ptr
    np.testing.assert_array_equal(c, [0, 1, 2])


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "int4", "uint4", "float4_e2m1fn"])
def test_ml_dtypes_numpy_view_is_zero_copy(dtype: str) -> None:
    t = Tensor.from_numpy(np.array([1, 2, 3], dtype=getattr(ml_dtypes, dtype)))  # copied in
    v = t.numpy()
    assert v.dtype == np.dtype(getattr(ml_dtypes, dtype))
    assert ptr(v) == t.data_ptr  # but viewed out without a copy
    assert ptr(np.asarray(t)) == t.data_ptr


def test_copy_true_gives_independent_writable_data() -> None:
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    t = Tensor.from_numpy(a, copy=True)
    assert t.data_ptr != ptr(a)
    assert t.writable
    c = t.copy()
    assert c.data_ptr != t.data_ptr
    np.testing.assert_array_equal(c.numpy(), a)


def test_dlpack_export_with_copy_true_is_a_copy() -> None:
    t = Tensor.from_numpy(np.arange(4, dtype=np.float32))
    b = np.from_dlpack(t, copy=True)
    assert ptr(b) != t.data_ptr
    np.testing.assert_array_equal(b, [0, 1, 2, 3])


# -- lifetimes --------------------------------------------------------------------------------


def test_tensor_keeps_numpy_buffer_alive_and_frees_it_once() -> None:
    a = np.arange(1000, dtype=np.float64)
    freed: list[int] = []
    weakref.finalize(a, freed.append, 1)
    address = ptr(a)
    t = Tensor.from_numpy(a)
    del a
    gc.collect()
    assert not freed  # the tensor holds the array through numpy's DLPack deleter
    view = t.numpy()
    assert ptr(view) == address
    del t
    gc.collect()
    assert not freed  # the view holds the tensor's data through our DLPack export
    np.testing.assert_array_equal(view, np.arange(1000, dtype=np.float64))  # values intact
    del view
    gc.collect()
    assert freed == [1]  # freed exactly once, when the last user went away


def test_numpy_view_outlives_tensor() -> None:
    t = Tensor.zeros((100,), np.int32)
    v = t.numpy()
    v[:] = np.arange(100)
    del t
    gc.collect()
    np.testing.assert_array_equal(v, np.arange(100))


def test_ml_dtypes_view_outlives_tensor() -> None:
    t = Tensor.from_numpy(np.arange(8, dtype=ml_dtypes.bfloat16))
    v = t.numpy()
    del t
    gc.collect()
    np.testing.assert_array_equal(v.astype(np.float32), np.arange(8, dtype=np.float32))


def test_producer_deleter_runs_once_after_last_user(producer) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = producer(data)
    t = pmi.from_dlpack(p)
    assert t.data_ptr == ptr(data)
    clone = pmi.from_dlpack(t)  # a second tensor sharing the producer's buffer
    view = t.numpy()
    assert p.deleted == 0
    del t
    gc.collect()
    assert p.deleted == 0
    del clone
    gc.collect()
    assert p.deleted == 0
    np.testing.assert_array_equal(view, data)
    del view
    gc.collect()
    assert p.deleted == 1


def test_legacy_producer_deleter_runs_once(producer) -> None:
    data = np.arange(4, dtype=np.float64)
    p = producer(data, versioned=False)
    t = pmi.from_dlpack(p)
    assert t.data_ptr == ptr(data) and t.writable
    del t
    gc.collect()
    assert p.deleted == 1


def test_unconsumed_capsule_calls_deleter_once(producer) -> None:
    p = producer(np.zeros(3, dtype=np.float32))
    capsule = p.__dlpack__(max_version=(1, 0))
    del capsule
    gc.collect()
    assert p.deleted == 1


def test_failed_import_calls_deleter_once(producer) -> None:
    # The Python-side check happens before ownership passes: the capsule then frees it.
    p = producer(np.zeros(3, dtype=np.float32), device=2)  # kDLCUDA behind a lying __dlpack_device__
    with pytest.raises(pmi.InvalidArgumentError, match="device type 2"):
        pmi.from_dlpack(p)
    gc.collect()
    assert p.deleted == 1
    p = producer(np.zeros(3, dtype=np.float32), major=2)
    with pytest.raises(pmi.VersionMismatchError, match="version 2.0"):
        pmi.from_dlpack(p)
    gc.collect()
    assert p.deleted == 1
    p = producer(np.zeros(4, dtype=np.float32), strides=(2,))
    with pytest.raises(BufferError, match="not contiguous"):
        pmi.from_dlpack(p, copy=False)
    gc.collect()
    assert p.deleted == 1


def test_strided_producer_is_copied_unless_copy_false(producer) -> None:
    data = np.arange(8, dtype=np.float32)
    p = producer(data[::2], strides=(2,))
    p.array = data  # keep the full buffer alive
    t = pmi.from_dlpack(p)
    np.testing.assert_array_equal(t.numpy(), [0, 2, 4, 6])
    assert t.data_ptr != ptr(data)
    gc.collect()
    assert p.deleted == 1  # released right after the gather


def test_read_only_producer_gives_read_only_tensor(producer) -> None:
    p = producer(np.ones(3, dtype=np.float32), read_only=True)
    t = pmi.from_dlpack(p)
    assert not t.writable
    assert not t.numpy().flags.writeable
    with pytest.raises(pmi.ReadOnlyError, match="read-only"):
        t.data_mut_ptr()


def test_object_without_dlpack_is_refused() -> None:
    with pytest.raises(TypeError, match="DLPack"):
        pmi.from_dlpack([1, 2, 3])


def test_non_cpu_device_is_refused() -> None:
    class OnGpu:
        def __dlpack__(self, **kwargs):  # pragma: no cover - must not be called
            raise AssertionError("should not be called")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(BufferError, match="device"):
        pmi.from_dlpack(OnGpu())


def test_legacy_only_producer_is_supported() -> None:
    class Legacy:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):  # no max_version: a pre-1.0 producer
            return self.a.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return (1, 0)

    a = np.arange(5, dtype=np.int16)
    t = pmi.from_dlpack(Legacy(a))
    assert t.data_ptr == ptr(a)


# -- read-only --------------------------------------------------------------------------------


def test_read_only_numpy_stays_read_only() -> None:
    a = np.arange(6, dtype=np.float32)
    a.flags.writeable = False
    t = Tensor.from_numpy(a)
    assert t.data_ptr == ptr(a)
    assert not t.writable
    with pytest.raises(pmi.ReadOnlyError, match="read-only"):
        t.data_mut_ptr()
    out = t.numpy()
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 1.0
    assert not np.from_dlpack(t).flags.writeable
    assert not np.asarray(t).flags.writeable
    with pytest.raises(BufferError, match="read-only"):
        t.__dlpack__()  # legacy capsule cannot carry the flag
    legacy_copy = t.__dlpack__(copy=True)  # but a copy is fine
    assert legacy_copy is not None
    assert pmi.from_dlpack(t).writable is False


def test_writable_tensor_data_mut_ptr() -> None:
    t = Tensor.zeros((3,), np.uint8)
    assert t.data_mut_ptr() == t.data_ptr


# -- copies forced by layout ------------------------------------------------------------------


def test_non_contiguous_array_is_copied() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = a[:, ::2]
    t = Tensor.from_numpy(s)
    assert t.data_ptr != ptr(s)
    np.testing.assert_array_equal(t.numpy(), s)
    with pytest.raises(BufferError, match="not C-contiguous"):
        Tensor.from_numpy(s, copy=False)


def test_fortran_array_is_copied() -> None:
    a = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    np.testing.assert_array_equal(Tensor.from_numpy(a).numpy(), a)
    with pytest.raises(BufferError):
        Tensor.from_numpy(a, copy=False)


def test_byte_swapped_array_is_copied() -> None:
    a = np.arange(5, dtype=">f8")
    t = Tensor.from_numpy(a)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises(BufferError, match="byte order"):
        Tensor.from_numpy(a, copy=False)


def test_ml_dtypes_and_strings_need_a_copy() -> None:
    with pytest.raises(BufferError, match="DLPack"):
        Tensor.from_numpy(np.zeros(2, dtype=ml_dtypes.bfloat16), copy=False)
    with pytest.raises(BufferError, match="string"):
        Tensor.from_numpy(np.array(["a"]), copy=False)


def test_unaligned_array_is_copied() -> None:
    buf = np.zeros(17, dtype=np.uint8)
    a = buf[1:].view(np.float32)  # misaligned by one byte
    assert not a.flags.aligned
    t = Tensor.from_numpy(a)
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises(BufferError):
        Tensor.from_numpy(a, copy=False)


def test_many_round_trips_do_not_leak_handles() -> None:
    a = np.arange(16, dtype=np.float32)
    freed: list[int] = []
    weakref.finalize(a, freed.append, 1)
    for _ in range(200):
        t = Tensor.from_numpy(a)
        b = np.from_dlpack(t)
        t2 = pmi.from_dlpack(b)
        assert t2.data_ptr == ptr(a)
    del t, b, t2, a
    gc.collect()
    assert freed == [1]


@pytest.mark.parametrize(("real", "complex_"), [(np.float32, np.complex64), (np.float64, np.complex128)])
def test_complex_with_natural_alignment_is_shared(real, complex_) -> None:
    buf = np.zeros(5, dtype=real)
    a = buf[1:].view(complex_)  # aligned to its component: numpy and C accept it
    assert a.flags.aligned and a.ctypes.data % a.dtype.itemsize != 0
    t = pmi.from_dlpack(a)
    assert t.data_ptr == ptr(a)
