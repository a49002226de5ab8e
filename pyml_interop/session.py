"""Sessions: run models. :class:`InferenceSession` mirrors onnxruntime's API; :class:`Session`
is the native, zero-copy path (``Tensor`` / DLPack in and out)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from ._errors import InvalidArgumentError, check
from ._ffi import CHAR_ARRAY, ffi, from_buffer_raw, lib, new_raw
from .model import Model, ValueInfo, _value_info, load_model
from .tensor import (
    _ARRAY_DTYPES,
    _C_SHAPES,
    _WRAP_CODES,
    Tensor,
    _array_from_handle,
    _buffer,
    _c_shape,
    _gc,
    _release_tensor,
    from_dlpack,
)

__all__ = ["SessionOptions", "RunOptions", "Session", "InferenceSession", "NodeArg", "ModelMetadata"]

PathLike = Union[str, "os.PathLike[str]"]

_TENSOR_SLOTS = ffi.typeof("pmi_tensor*[]")
_NAME_ARRAY = ffi.typeof("const char*[]")
_NULL = ffi.NULL
_INPUT_BUFFERS = ffi.typeof("pmi_input_buffer[]")
_OUTPUT_BUFFERS = ffi.typeof("pmi_output_buffer[]")
_SIZE_T_ARRAY = ffi.typeof("size_t[]")
_run_buffers = lib.pmi_session_run_buffers
_ERR_INVALID_ARGUMENT = lib.PMI_ERR_INVALID_ARGUMENT
# Name arrays cached per session (one per distinct tuple of known names), bounded.
_NAMES_CACHE_MAX = 64


class SessionOptions:
    """Options fixed at session creation (the onnxruntime-compatible subset).

    ``intra_op_num_threads``: threads used inside one run; 0 (default) means one per core.
    Other onnxruntime attributes are accepted and ignored so existing scripts keep working.
    """

    def __init__(self) -> None:
        self.intra_op_num_threads: int = 0
        self.inter_op_num_threads: int = 0
        self.graph_optimization_level: Any = None
        self.log_severity_level: int = 2
        self.enable_profiling: bool = False

    def _handle(self) -> Any:
        out = ffi.new("pmi_session_options**")
        check(lib.pmi_session_options_create(out))
        h = ffi.gc(out[0], lib.pmi_session_options_release)
        n = int(self.intra_op_num_threads or 0)
        if n < 0:
            raise InvalidArgumentError(f"intra_op_num_threads must be >= 0, got {n}")
        check(lib.pmi_session_options_set_intra_op_threads(h, n))
        return h


class RunOptions:
    """Accepted for onnxruntime compatibility; no option changes a run today."""

    def __init__(self) -> None:
        self.log_severity_level: int = 2
        self.tag: str = ""


@dataclass(frozen=True)
class NodeArg:
    """An input or output as onnxruntime describes it: ``name``, ``type`` (``"tensor(float)"``)
    and ``shape`` (ints for fixed dims, strings for symbolic ones, None for unknown)."""

    name: str
    type: str
    shape: list[int | str | None] | None


@dataclass(frozen=True)
class ModelMetadata:
    """Model metadata as onnxruntime's ``get_modelmeta()`` returns it."""

    producer_name: str
    graph_name: str
    domain: str
    description: str
    graph_description: str
    version: int
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


def _as_tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor.from_numpy(value)
    if hasattr(value, "__dlpack__") and not isinstance(value, np.generic):
        return from_dlpack(value)
    try:
        arr = np.asarray(value)
    except Exception as e:  # pragma: no cover - numpy's own message is clear
        raise InvalidArgumentError(f"input '{name}': cannot convert {type(value).__name__} to a tensor: {e}") from e
    if arr.dtype == object:
        raise InvalidArgumentError(f"input '{name}': cannot convert {type(value).__name__} to a tensor (object array)")
    return Tensor.from_numpy(arr)


class Session:
    """A model compiled for execution: create once, run many times (thread-safe).

    :meth:`run` takes numpy arrays, :class:`Tensor` objects and any DLPack producer (torch,
    jax...) without copying them, and returns :class:`Tensor` objects that ``np.from_dlpack``
    and ``torch.from_dlpack`` take without a copy. The GIL is released while the engine runs.
    """

    def __init__(self, model: Model | PathLike | bytes, options: SessionOptions | None = None) -> None:
        self.model: Model = model if isinstance(model, Model) else load_model(model)
        opts = (options or SessionOptions())._handle()
        out = ffi.new("pmi_session**")
        check(lib.pmi_session_create(self.model._handle, opts, out))
        self._handle = ffi.gc(out[0], lib.pmi_session_release)
        n = ffi.new("size_t*")
        info = ffi.new("pmi_value_info*")
        check(lib.pmi_session_input_count(self._handle, n))
        ins = []
        for i in range(n[0]):
            check(lib.pmi_session_input_info(self._handle, i, info))
            ins.append(_value_info(info))
        check(lib.pmi_session_output_count(self._handle, n))
        outs = []
        for i in range(n[0]):
            check(lib.pmi_session_output_info(self._handle, i, info))
            outs.append(_value_info(info))
        self.inputs: list[ValueInfo] = ins
        self.outputs: list[ValueInfo] = outs
        self._n_outputs = len(outs)
        # C strings for names, built once (no per-call encoding), and the `const char*[]` arrays
        # of the name tuples seen so far (only read by the library: shared by every thread).
        self._c_names = {v.name: ffi.new(CHAR_ARRAY, v.name.encode("utf-8")) for v in ins + outs}
        self._name_arrays: dict[tuple[str, ...], Any] = {}
        # Positions for pmi_session_run_buffers: input name -> index, and the `size_t[]` of
        # output indices per tuple of output names seen so far (bounded, like the name arrays).
        self._input_index = {v.name: i for i, v in enumerate(ins)}
        self._output_index = {v.name: i for i, v in enumerate(outs)}
        self._output_arrays: dict[tuple[str, ...], Any] = {}

    def _names_array(self, names: tuple[str, ...]) -> tuple[Any, Any]:
        """(``const char*[]``, keep-alive) for a tuple of names. Arrays of known names are cached;
        an unknown name (the library reports it) gets a fresh C string kept by the second item
        for the duration of the call."""
        arr = self._name_arrays.get(names)
        if arr is not None:
            return arr, None
        c_names = self._c_names
        if all(n in c_names for n in names):
            arr = ffi.new(_NAME_ARRAY, [c_names[n] for n in names])
            if len(self._name_arrays) >= _NAMES_CACHE_MAX:
                self._name_arrays.clear()
            self._name_arrays[names] = arr
            return arr, None
        keep = [c_names.get(n) or ffi.new(CHAR_ARRAY, str(n).encode("utf-8")) for n in names]
        return ffi.new(_NAME_ARRAY, keep), keep

    def run(self, inputs: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[Tensor]:
        """Run with ``inputs`` (name -> array/Tensor/DLPack producer); returns the requested
        outputs (all, in model order, when ``output_names`` is None) as :class:`Tensor`.

        Raises :class:`InvalidArgumentError` (unknown or missing input name),
        :class:`UnsupportedDtypeError` (wrong dtype), :class:`ShapeMismatchError` (wrong shape
        or inconsistent symbolic dim), :class:`ExecutionError` (an operator failed)."""
        names = tuple(inputs)
        tensors = [_as_tensor(n, inputs[n]) for n in names]
        n_in = len(names)
        c_in_names, _keep_in = self._names_array(names) if n_in else (ffi.NULL, None)
        if output_names is None:
            n_out = self._n_outputs
            c_out_names, _keep_out = ffi.NULL, None
        else:
            out_names = tuple(output_names)
            n_out = len(out_names)
            c_out_names, _keep_out = self._names_array(out_names)
        slots = new_raw(_TENSOR_SLOTS, n_in + (n_out or 1))
        for i, t in enumerate(tensors):
            slots[i] = t._handle
        check(lib.pmi_session_run(self._handle, c_in_names, slots, n_in, c_out_names, n_out, slots + n_in))
        return [Tensor._adopt(slots[n_in + j]) for j in range(n_out)]

    def _output_indices(self, names: tuple[str, ...]) -> Any:
        """The ``size_t[]`` of output positions for ``names`` (cached), or None if one is
        unknown (the general path then reports it)."""
        arr = self._output_arrays.get(names)
        if arr is None:
            index = self._output_index
            if not all(n in index for n in names):
                return None
            if len(self._output_arrays) >= _NAMES_CACHE_MAX:
                self._output_arrays.clear()
            arr = self._output_arrays[names] = new_raw(_SIZE_T_ARRAY, [index[n] for n in names])
        return arr

    def _run_numpy(self, inputs: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """:meth:`run` returning numpy arrays, with the per-call work kept to a minimum (the
        path of :meth:`InferenceSession.run`): one ``pmi_session_run_buffers`` call.

        C-contiguous numpy inputs of a shareable dtype are passed as raw buffers (read in place,
        no tensor handle); outputs come back described in the same call and become numpy
        arrays over the library's buffers (no copy) that release the tensor when collected. An
        output that shares an input's buffer (Identity, Reshape) keeps that array alive.
        Anything else (other input types, strided, byte-swapped or misaligned arrays, unknown
        names) takes :meth:`_run_numpy_general`, which also reports every error."""
        index = self._input_index
        specs = []  # pmi_input_buffer initializers
        arrays = []  # the input arrays, in the order of `specs` (for aliasing outputs)
        buffers = []  # their exported buffers, held until the call returns
        for name, value in inputs.items():
            k = index.get(name)
            if k is None or type(value) is not np.ndarray:
                return self._run_numpy_general(inputs, output_names)
            code = _WRAP_CODES.get(value.dtype)
            if code is None:
                return self._run_numpy_general(inputs, output_names)
            try:
                buf = from_buffer_raw(CHAR_ARRAY, value, True)
                writable = 1
            except (ValueError, TypeError, BufferError):  # read-only, or strided
                if not value.flags.c_contiguous:
                    return self._run_numpy_general(inputs, output_names)
                buf = from_buffer_raw(CHAR_ARRAY, value, False)
                writable = 0
            shape = value.shape
            c_shape = _C_SHAPES.get(shape)
            if c_shape is None:
                c_shape = _c_shape(shape)
            specs.append((k, code, writable, c_shape, len(shape), buf, value.nbytes))
            arrays.append(value)
            buffers.append(buf)
        if output_names is None:
            n_out = self._n_outputs
            c_out = _NULL
        else:
            names = tuple(output_names)
            c_out = self._output_arrays.get(names)
            if c_out is None:
                c_out = self._output_indices(names)
                if c_out is None:
                    return self._run_numpy_general(inputs, output_names)
            n_out = len(names)
        n_in = len(specs)
        outs = new_raw(_OUTPUT_BUFFERS, n_out or 1)
        status = _run_buffers(self._handle, new_raw(_INPUT_BUFFERS, specs) if n_in else _NULL, n_in, c_out, n_out, outs)
        if status != 0:
            if status == _ERR_INVALID_ARGUMENT:  # e.g. misaligned data: copied by the general path
                return self._run_numpy_general(inputs, output_names)
            check(status)
        results: list[np.ndarray] = []
        j = 0
        try:
            while j < n_out:
                o = outs[j]
                handle = o.tensor
                j += 1  # the handle is owned from here on, also if what follows raises
                dtype = _ARRAY_DTYPES.get(o.dtype)
                if dtype is None:  # STRING, ml_dtypes types: the general conversion
                    results.append(Tensor._adopt(handle).numpy())
                    continue
                rank = o.rank
                alias = o.aliased_input
                keep = arrays[alias] if alias >= 0 else None
                # The destructor holds the handle (and the aliased input) in its defaults and
                # releases the handle when the pointer object is collected, that is after the
                # array and every view of it are gone.
                owned = _gc(o.data, lambda _p, h=handle, k=keep, release=_release_tensor: release(h), 0)
                out = np.ndarray(tuple(o.shape[0:rank]) if rank else (), dtype, _buffer(owned, o.nbytes))
                if not o.writable:
                    out.flags.writeable = False
                results.append(out)
        except BaseException:
            for k in range(j, n_out):
                _release_tensor(outs[k].tensor)
            raise
        return results

    def _run_numpy_general(self, inputs: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """:meth:`_run_numpy` for any inputs: numpy inputs of a shareable dtype that are
        C-contiguous are wrapped in place (``pmi_tensor_wrap`` without a release callback: the
        session is immutable, so once the run returns only its outputs can still use the buffer,
        and an output that does keeps the input array alive). Other inputs take :func:`_as_tensor`. Outputs are numpy arrays
        over the library's buffers (no copy) that release the tensor when collected."""
        names = tuple(inputs)
        n_in = len(names)
        if n_in:
            c_in_names = self._name_arrays.get(names)
            _keep_in = None
            if c_in_names is None:
                c_in_names, _keep_in = self._names_array(names)
        else:
            c_in_names = _NULL
        if output_names is None:
            n_out = self._n_outputs
            c_out_names, _keep_out = _NULL, None
        else:
            out_names = tuple(output_names)
            n_out = len(out_names)
            c_out_names, _keep_out = self._names_array(out_names)
        slots = new_raw(_TENSOR_SLOTS, n_in + (n_out or 1))
        wrapped: list[tuple[Any, Any, np.ndarray]] = []  # (start, end, array) per non-empty wrap
        wrapped_slots: list[int] = []
        converted: list[Tensor] = []  # inputs converted the general way, alive during the call
        try:
            for i in range(n_in):
                value = inputs[names[i]]
                if type(value) is np.ndarray:
                    code = _WRAP_CODES.get(value.dtype)
                    if code is not None:
                        try:
                            buf = from_buffer_raw(CHAR_ARRAY, value, True)
                            writable = 1
                        except (ValueError, TypeError, BufferError):  # read-only, or strided
                            buf = from_buffer_raw(CHAR_ARRAY, value, False) if value.flags.c_contiguous else None
                            writable = 0
                        if buf is not None:
                            shape = value.shape
                            c_shape = _C_SHAPES.get(shape)
                            if c_shape is None:
                                c_shape = _c_shape(shape)
                            nbytes = value.nbytes
                            if lib.pmi_tensor_wrap(code, c_shape, len(shape), buf, nbytes, writable,
                                                   _NULL, _NULL, slots + i) == 0:
                                if nbytes:  # an empty buffer cannot be shared by an output
                                    wrapped.append((buf, buf + nbytes, value))
                                wrapped_slots.append(i)
                                continue
                            # Refused (e.g. misaligned data): the general path copies it.
                t = _as_tensor(names[i], value)
                converted.append(t)
                slots[i] = t._handle
            status = lib.pmi_session_run(self._handle, c_in_names, slots, n_in, c_out_names, n_out, slots + n_in)
            if status != 0:
                check(status)
        finally:
            for i in wrapped_slots:
                lib.pmi_tensor_release(slots[i])
        if n_out == 1:
            return [_array_from_handle(slots[n_in], wrapped)]
        results: list[np.ndarray] = []
        j = 0
        try:
            while j < n_out:
                handle = slots[n_in + j]
                j += 1  # _array_from_handle owns the handle from here, also if it raises
                results.append(_array_from_handle(handle, wrapped))
        except BaseException:
            for k in range(j, n_out):
                lib.pmi_tensor_release(slots[n_in + k])
            raise
        return results


class InferenceSession:
    """Drop-in for ``onnxruntime.InferenceSession``: ``import pyml_interop as ort`` works for
    ordinary inference scripts.

    ``path_or_bytes``: a model file path or serialized model bytes. ``providers`` is accepted
    for compatibility (only the CPU exists). :meth:`run` returns numpy arrays.
    """

    def __init__(
        self,
        path_or_bytes: PathLike | bytes,
        sess_options: SessionOptions | None = None,
        providers: Iterable[Any] | None = None,
        provider_options: Any = None,
        **kwargs: Any,
    ) -> None:
        self._session = Session(load_model(path_or_bytes), sess_options)
        self._model = self._session.model
        self._sess_options = sess_options or SessionOptions()

    @staticmethod
    def _node_arg(v: ValueInfo) -> NodeArg:
        return NodeArg(v.name, v.type, list(v.shape) if v.shape is not None else None)

    def get_inputs(self) -> list[NodeArg]:
        """The inputs to feed (initializer-backed inputs excluded), as onnxruntime reports them."""
        return [self._node_arg(v) for v in self._session.inputs]

    def get_outputs(self) -> list[NodeArg]:
        """The outputs, in model order."""
        return [self._node_arg(v) for v in self._session.outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Initializers that are also graph inputs (none are reported separately today)."""
        return []

    def get_modelmeta(self) -> ModelMetadata:
        """Producer, domain, version and custom metadata of the model."""
        m = self._model
        return ModelMetadata(
            producer_name=m.producer[0],
            graph_name="",
            domain="",
            description="",
            graph_description="",
            version=0,
            custom_metadata_map=dict(m.metadata),
        )

    def get_providers(self) -> list[str]:
        """Execution providers: the CPU only (named as onnxruntime names it)."""
        return ["CPUExecutionProvider"]

    def get_session_options(self) -> SessionOptions:
        """The options the session was created with."""
        return self._sess_options

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[np.ndarray]:
        """Run and return numpy arrays (in the order of ``output_names``, or all outputs when it
        is None or empty). The arrays share the engine's output buffers (no copy), and
        C-contiguous numpy inputs of a numpy-native dtype are read in place (no copy); other
        inputs (lists, scalars, strided or byte-swapped arrays, DLPack objects) are converted
        first, as :meth:`Session.run` does."""
        return self._session._run_numpy(input_feed, output_names or None)
