"""The per-call fast path of ``InferenceSession.run``: numpy inputs wrapped in place (no DLPack
capsule, no copy), numpy outputs over the engine's buffers (no copy), and lifetimes that stay
right when an output shares an input's memory. Zero-copy is proven by pointer equality."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyml_interop as pmi
from pyml_interop import _ffi, tensor as tensor_module

F = TensorProto.FLOAT


def ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _vi(name: str, elem: int = F, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def _identity(elem: int = F) -> pmi.InferenceSession:
    return pmi.InferenceSession(_model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", elem)], [_vi("y", elem)]))


def _add(shape=("n", 4)) -> pmi.InferenceSession:
    return pmi.InferenceSession(
        _model([helper.make_node("Add", ["a", "b"], ["c"])], [_vi("a", shape=shape), _vi("b", shape=shape)],
               [_vi("c", shape=shape)])
    )


def _finalized(obj) -> list[int]:
    freed: list[int] = []
    weakref.finalize(obj, freed.append, 1)
    return freed


# -- zero-copy in and out ------------------------------------------------------------------------


def test_identity_output_is_the_input_buffer() -> None:
    # The engine saw the array's own pointer (in) and the output array is over the engine's
    # buffer, which is that pointer again (out): no copy on either side.
    a = np.arange(1000, dtype=np.float32)
    (y,) = _identity().run(None, {"x": a})
    assert ptr(y) == ptr(a)
    assert y.shape == a.shape and y.dtype == a.dtype
    assert not y.flags.owndata
    a[3] = -1.0
    assert y[3] == -1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.float16,
                                   np.complex64])
def test_identity_zero_copy_for_numpy_dtypes(dtype) -> None:
    elem = {np.float32: F, np.float64: TensorProto.DOUBLE, np.int64: TensorProto.INT64, np.int32: TensorProto.INT32,
            np.uint8: TensorProto.UINT8, np.bool_: TensorProto.BOOL, np.float16: TensorProto.FLOAT16,
            np.complex64: TensorProto.COMPLEX64}[dtype]
    a = (np.arange(24) % 2).astype(dtype).reshape(2, 3, 4)
    (y,) = _identity(elem).run(None, {"x": a})
    assert ptr(y) == ptr(a) and y.dtype == a.dtype
    np.testing.assert_array_equal(y, a)


def test_rank0_and_empty_inputs() -> None:
    s = _identity()
    a = np.array(2.5, dtype=np.float32)
    (y,) = s.run(None, {"x": a})
    assert y.shape == () and y == 2.5 and ptr(y) == ptr(a)
    e = np.zeros((0, 3), dtype=np.float32)
    (y,) = s.run(None, {"x": e})
    assert y.shape == (0, 3) and y.dtype == np.float32


def test_computed_output_is_writable_and_correct() -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    (c,) = _add().run(None, {"a": a, "b": b})
    np.testing.assert_array_equal(c, a + 1)
    assert c.flags.writeable and c.flags.c_contiguous
    assert ptr(c) not in (ptr(a), ptr(b))
    c[0, 0] = 100.0  # the old path gave writable outputs too
    assert c[0, 0] == 100.0


def test_read_only_input_gives_read_only_alias() -> None:
    a = np.arange(6, dtype=np.float32)
    a.flags.writeable = False
    (y,) = _identity().run(None, {"x": a})
    assert ptr(y) == ptr(a)
    assert not y.flags.writeable
    with pytest.raises(ValueError):
        y[0] = 1.0


def test_initializer_output_writability_matches_the_tensor() -> None:
    # Writable exactly when the engine's tensor is (as the old DLPack path gave).
    w = helper.make_tensor("w", F, [3], [1.0, 2.0, 3.0])
    s = pmi.InferenceSession(_model([helper.make_node("Identity", ["w"], ["y"])], [], [_vi("y", shape=[3])], [w]))
    (y,) = s.run(None, {})
    np.testing.assert_array_equal(y, [1, 2, 3])
    (t,) = s._session.run({})
    assert y.flags.writeable == t.writable


# -- lifetimes -----------------------------------------------------------------------------------


def test_output_outlives_session_and_inputs() -> None:
    s = _add()
    a = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    b = np.full((1000, 4), 2.0, dtype=np.float32)
    (c,) = s.run(None, {"a": a, "b": b})
    view = c[10:20]
    freed_a, freed_b = _finalized(a), _finalized(b)
    del s, a, b
    gc.collect()
    assert freed_a == [1] and freed_b == [1]  # a computed output does not hold its inputs
    np.testing.assert_array_equal(view, np.arange(40, 80, dtype=np.float32).reshape(10, 4) + 2)
    del c
    gc.collect()
    np.testing.assert_array_equal(view[0], [42, 43, 44, 45])  # a view keeps the buffer too


def test_aliasing_output_keeps_input_alive() -> None:
    a = np.arange(1000, dtype=np.float64)
    freed = _finalized(a)
    s = _identity(TensorProto.DOUBLE)
    (y,) = s.run(None, {"x": a})
    assert ptr(y) == ptr(a)
    del a, s
    gc.collect()
    assert not freed  # the output shares the input's buffer: the input must stay
    np.testing.assert_array_equal(y, np.arange(1000, dtype=np.float64))
    part = y[500:]
    del y
    gc.collect()
    assert not freed
    np.testing.assert_array_equal(part, np.arange(500, 1000, dtype=np.float64))
    del part
    gc.collect()
    assert freed == [1]  # released exactly once, with the last view


def test_aliasing_output_of_one_of_several_inputs() -> None:
    # y = Identity(b); z = Add(a, b): only y shares a buffer, and only with b.
    s = pmi.InferenceSession(_model(
        [helper.make_node("Identity", ["b"], ["y"]), helper.make_node("Add", ["a", "b"], ["z"])],
        [_vi("a", shape=[4]), _vi("b", shape=[4])], [_vi("y", shape=[4]), _vi("z", shape=[4])]))
    a = np.ones(4, dtype=np.float32)
    b = np.arange(4, dtype=np.float32)
    freed_a, freed_b = _finalized(a), _finalized(b)
    y, z = s.run(None, {"a": a, "b": b})
    assert ptr(y) == ptr(b)
    del a, b
    gc.collect()
    assert freed_a == [1] and not freed_b
    np.testing.assert_array_equal(y, [0, 1, 2, 3])
    np.testing.assert_array_equal(z, [1, 2, 3, 4])
    del y
    gc.collect()
    assert freed_b == [1]


def test_same_array_fed_twice() -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    (c,) = _add().run(None, {"a": a, "b": a})
    np.testing.assert_array_equal(c, 2 * a)


def test_native_session_identity_tensor_survives_through_dlpack() -> None:
    # Session.run returns Tensors that can escape through DLPack: numpy inputs there are wrapped
    # with a release callback, so the buffer lives exactly as long as the last user.
    s = pmi.Session(_model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x")], [_vi("y")]))
    a = np.arange(100, dtype=np.float32)
    freed = _finalized(a)
    pinned_before = len(tensor_module._pinned)
    (t,) = s.run({"x": a})
    assert t.data_ptr == ptr(a)
    exported = np.from_dlpack(t)
    del t, a, s
    gc.collect()
    assert not freed
    np.testing.assert_array_equal(exported, np.arange(100, dtype=np.float32))
    del exported
    gc.collect()
    assert freed == [1]
    assert len(tensor_module._pinned) == pinned_before


# -- one C call per run ---------------------------------------------------------------------------


def test_numpy_inputs_take_one_run_buffers_call(monkeypatch) -> None:
    from pyml_interop import session as session_module

    calls: list[int] = []
    real = session_module._run_buffers

    def counting(*args):
        calls.append(1)
        return real(*args)

    def no_general(*args, **kwargs):
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(session_module, "_run_buffers", counting)
    monkeypatch.setattr(pmi.Session, "_run_numpy_general", no_general)
    s = _add()
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    ro = np.ones((2, 4), np.float32)
    ro.flags.writeable = False
    (c,) = s.run(None, {"a": a, "b": ro})
    np.testing.assert_array_equal(c, a + 1)
    (c,) = s.run(["c"], {"b": a, "a": a})
    np.testing.assert_array_equal(c, 2 * a)
    assert len(calls) == 2


def test_unusual_inputs_and_names_take_the_general_path(monkeypatch) -> None:
    taken: list[int] = []
    real = pmi.Session._run_numpy_general

    def counting(self, *args, **kwargs):
        taken.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pmi.Session, "_run_numpy_general", counting)
    s = _identity()
    raw = np.zeros(4 * 6 + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float32)  # refused by the library, then copied
    misaligned[...] = np.arange(6)
    subclass = np.ones(3, np.float32).view(type("Sub", (np.ndarray,), {}))
    for x in (np.arange(12, dtype=np.float32)[::2], misaligned, subclass, pmi.Tensor.from_numpy(np.ones(3, np.float32))):
        (y,) = s.run(None, {"x": x})
        np.testing.assert_array_equal(y, np.asarray(x))
    assert len(taken) == 4
    with pytest.raises(pmi.InvalidArgumentError, match="'nope'"):
        s.run(None, {"nope": np.ones(2, np.float32)})
    with pytest.raises(pmi.InvalidArgumentError, match="'z'"):
        s.run(["z"], {"x": np.ones(2, np.float32)})
    assert len(taken) == 6


def test_reshape_output_shares_and_keeps_its_input() -> None:
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 4])
    s = pmi.InferenceSession(_model([helper.make_node("Reshape", ["x", "shape"], ["y"]),
                                     helper.make_node("Neg", ["x"], ["n"])],
                                    [_vi("x", shape=[12])], [_vi("y", shape=[3, 4]), _vi("n", shape=[12])], [shape]))
    a = np.arange(12, dtype=np.float32)
    freed = _finalized(a)
    y, n = s.run(None, {"x": a})
    assert ptr(y) == ptr(a) and y.shape == (3, 4) and y.flags.writeable
    assert ptr(n) != ptr(a)
    np.testing.assert_array_equal(n, -a)
    del a, s
    gc.collect()
    assert not freed
    np.testing.assert_array_equal(y.ravel(), np.arange(12, dtype=np.float32))
    del n
    gc.collect()
    assert not freed  # n does not hold the input, y does
    del y
    gc.collect()
    assert freed == [1]


# -- inputs that take the general path -----------------------------------------------------------


def test_strided_fortran_byteswapped_misaligned_inputs_are_copied() -> None:
    s = _identity()
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = base[:, ::2]
    fortran = np.asfortranarray(base)
    swapped = base.astype(">f4")
    raw = np.zeros(4 * 24 + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(4, 6)
    misaligned[...] = base
    assert not misaligned.flags.aligned
    for x in (strided, fortran, swapped, misaligned):
        (y,) = s.run(None, {"x": x})
        np.testing.assert_array_equal(y, x)
        assert y.dtype == np.float32 and y.dtype.isnative
        assert ptr(y) != ptr(x)


def test_read_only_strided_input() -> None:
    x = np.arange(12, dtype=np.float32)[::3]
    x.flags.writeable = False
    (y,) = _identity().run(None, {"x": x})
    np.testing.assert_array_equal(y, [0, 3, 6, 9])


def test_non_numpy_inputs_still_work() -> None:
    s = _add(shape=[2])
    expected = np.array([4.0, 6.0], dtype=np.float32)
    with pytest.raises(pmi.UnsupportedDtypeError):
        s.run(None, {"a": [1.0, 2.0], "b": [3.0, 4.0]})  # lists become float64 arrays, as before
    (c,) = _identity(TensorProto.DOUBLE).run(None, {"x": [1.0, 2.0]})
    np.testing.assert_array_equal(c, [1.0, 2.0])
    a = np.array([1.0, 2.0], dtype=np.float32)
    b = np.array([3.0, 4.0], dtype=np.float32)
    for fa, fb in [
        (pmi.Tensor.from_numpy(a), b),  # Tensor
        (pmi.from_dlpack(a), pmi.Tensor.from_numpy(b, copy=True)),
        (a.view(type("Sub", (np.ndarray,), {})), b),  # ndarray subclass
        (np.array([1.0, 2.0], dtype=np.float32), pmi.Tensor.from_numpy(b)),
    ]:
        (c,) = s.run(None, {"a": fa, "b": fb})
        np.testing.assert_array_equal(c, expected)
    # A DLPack producer that is not a Tensor (numpy through a wrapper object).
    class Producer:
        def __init__(self, x):
            self.x = x

        def __dlpack__(self, **kwargs):
            return self.x.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return (1, 0)

    (c,) = s.run(None, {"a": Producer(a), "b": b})
    np.testing.assert_array_equal(c, expected)
    # numpy scalars and Python scalars on a rank-0 model
    s0 = _identity()
    assert s0.run(None, {"x": np.float32(1.5)})[0] == 1.5
    assert s0.run(None, {"x": np.array(1.5, dtype=np.float32)[()]})[0] == 1.5


def test_string_and_bfloat16_outputs_take_the_general_path() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    s = _identity(TensorProto.STRING)
    (y,) = s.run(None, {"x": np.array(["a", "bc"])})
    assert list(y) == ["a", "bc"]
    cast = pmi.InferenceSession(_model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BFLOAT16)],
                                       [_vi("x")], [_vi("y", TensorProto.BFLOAT16)]))
    (y,) = cast.run(None, {"x": np.array([1.0, 2.0], dtype=np.float32)})
    assert y.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), [1.0, 2.0])


# -- errors: the same messages as the general path -----------------------------------------------


def _error(fn) -> tuple[type, str]:
    with pytest.raises(pmi.Error) as info:
        fn()
    return type(info.value), str(info.value)


def test_error_messages_match_the_general_path() -> None:
    s = _add(shape=("batch", 3))
    native = s._session
    x = np.ones((2, 3), np.float32)
    cases = [
        {"a": x, "b": x, "nope": x},  # unknown name
        {"a": x},  # missing input
        {"a": x.astype(np.float64), "b": x},  # wrong dtype
        {"a": x[0], "b": x},  # wrong rank
        {"a": x, "b": np.ones((3, 3), np.float32)},  # symbolic dim bound twice
        {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 4), np.float32)},  # fixed dim
    ]
    for feed in cases:
        fast = _error(lambda: s.run(None, feed))
        general = _error(lambda: native.run({k: pmi.Tensor.from_numpy(v, copy=True) for k, v in feed.items()}))
        assert fast == general
    fast = _error(lambda: s.run(["w"], {"a": x, "b": x}))
    assert fast[0] is pmi.InvalidArgumentError and "'w'" in fast[1]
    assert fast == _error(lambda: native.run({"a": x, "b": x}, ["w"]))
    with pytest.raises(pmi.UnsupportedDtypeError, match="has no ONNX element type"):
        s.run(None, {"a": np.zeros((2, 3), dtype="datetime64[s]"), "b": x})
    with pytest.raises(pmi.InvalidArgumentError, match="object array"):
        s.run(None, {"a": [object()], "b": x})


def test_failed_run_releases_wrapped_inputs() -> None:
    s = _add(shape=("batch", 3))
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 3), np.float32)
    freed = _finalized(a)
    refs = sys.getrefcount(a)
    for _ in range(50):
        with pytest.raises(pmi.ShapeMismatchError):
            s.run(None, {"a": a, "b": b})
    assert sys.getrefcount(a) == refs
    del a
    gc.collect()
    assert freed == [1]


def test_output_names_select_and_reorder() -> None:
    s = pmi.InferenceSession(_model(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["a", "b"], ["p"])],
        [_vi("a", shape=[2]), _vi("b", shape=[2])], [_vi("s", shape=[2]), _vi("p", shape=[2])]))
    a = np.array([2, 3], np.float32)
    b = np.array([4, 5], np.float32)
    p, sm = s.run(["p", "s"], {"a": a, "b": b})
    np.testing.assert_array_equal(p, [8, 15])
    np.testing.assert_array_equal(sm, [6, 8])
    (only,) = s.run(["s"], {"b": b, "a": a})  # feed order differs from the model's
    np.testing.assert_array_equal(only, [6, 8])
    assert len(s.run([], {"a": a, "b": b})) == 2  # empty list: all outputs, as onnxruntime


def test_many_shapes_beyond_the_shape_cache() -> None:
    s = _add()
    for n in range(1, tensor_module._C_SHAPES_MAX + 40):
        a = np.full((n, 4), float(n), dtype=np.float32)
        (c,) = s.run(None, {"a": a, "b": a})
        assert c.shape == (n, 4) and c[-1, -1] == 2 * n


# -- threads and leaks ---------------------------------------------------------------------------


def test_four_threads_on_one_session() -> None:
    s = _add()
    native = s._session
    ident = _identity()
    errors: list[BaseException] = []
    pinned_before = len(tensor_module._pinned)

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(300):
                n = int(rng.integers(1, 16))
                a = rng.standard_normal((n, 4)).astype(np.float32)
                b = rng.standard_normal((n, 4)).astype(np.float32)
                (c,) = s.run(None, {"a": a, "b": b})
                np.testing.assert_array_equal(c, a + b)
                (y,) = ident.run(None, {"x": a})
                assert ptr(y) == ptr(a)
                np.testing.assert_array_equal(y, a)
                (t,) = native.run({"a": a, "b": b})  # the release-callback path
                np.testing.assert_array_equal(t.numpy(), a + b)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    gc.collect()
    assert len(tensor_module._pinned) == pinned_before


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_run_does_not_leak() -> None:
    # Python objects: tracemalloc and refcounts; native tensors: outputs of 64 KiB, so leaked
    # handles over 2,000 calls would show as ~128 MiB of resident memory.
    s = _add()
    a = np.ones((4096, 4), np.float32)
    b = np.ones((4096, 4), np.float32)
    for _ in range(200):  # warm caches (names, shapes, per-thread scratch, engine buffers)
        s.run(None, {"a": a, "b": b})
    gc.collect()
    refs = (sys.getrefcount(a), sys.getrefcount(b))
    tracemalloc.start()
    before_py = tracemalloc.get_traced_memory()[0]
    before_rss = _rss_bytes() if sys.platform.startswith("linux") else 0
    for _ in range(2000):
        (c,) = s.run(None, {"a": a, "b": b})
        del c
    gc.collect()
    grown_py = tracemalloc.get_traced_memory()[0] - before_py
    tracemalloc.stop()
    assert (sys.getrefcount(a), sys.getrefcount(b)) == refs
    assert grown_py < 64 * 1024, f"Python memory grew by {grown_py} bytes over 2,000 runs"
    if before_rss:
        grown_rss = _rss_bytes() - before_rss
        assert grown_rss < 32 * 2**20, f"resident memory grew by {grown_rss} bytes over 2,000 runs"


def test_native_path_unpins_every_wrapped_buffer() -> None:
    s = pmi.Session(_model([helper.make_node("Add", ["a", "b"], ["c"])], [_vi("a"), _vi("b")], [_vi("c")]))
    a = np.ones(16, np.float32)
    before = len(tensor_module._pinned)
    for _ in range(500):
        (t,) = s.run({"a": a, "b": a})
        del t
    gc.collect()
    assert len(tensor_module._pinned) == before


# -- the raw cffi entry points ---------------------------------------------------------------------


def test_raw_cffi_entry_points_match_the_public_ones() -> None:
    ffi = _ffi.ffi
    arr = _ffi.new_raw(ffi.typeof("int64_t[]"), [1, 2, 3])
    assert ffi.typeof(arr) is ffi.typeof("int64_t[]") and list(arr) == [1, 2, 3]
    a = np.arange(4, dtype=np.float32)
    buf = _ffi.from_buffer_raw(_ffi.CHAR_ARRAY, a, True)
    assert int(ffi.cast("uintptr_t", buf)) == ptr(a) and len(buf) == a.nbytes
    a.flags.writeable = False
    with pytest.raises(ValueError):
        _ffi.from_buffer_raw(_ffi.CHAR_ARRAY, a, True)
    assert len(_ffi.from_buffer_raw(_ffi.CHAR_ARRAY, a, False)) == a.nbytes
    with pytest.raises(ValueError):
        _ffi.from_buffer_raw(_ffi.CHAR_ARRAY, np.arange(8, dtype=np.float32)[::2], False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128])
def test_every_numpy_dtype_takes_the_direct_paths(dtype) -> None:
    # In: wrapped in place (the Identity output is the input's memory). Out: an array over a
    # cffi buffer of the engine's data, not the slower general conversion through a Tensor.
    elem = pmi.DType(tensor_module._WRAP_CODES[np.dtype(dtype)])
    a = np.ones((3, 2), dtype=dtype)
    (y,) = _identity(int(elem)).run(None, {"x": a})
    assert ptr(y) == ptr(a) and y.dtype == np.dtype(dtype)
    assert type(y.base) is type(_ffi.ffi.buffer(_ffi.ffi.new("char[1]")))
