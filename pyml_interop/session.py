"""Sessions: run models. :class:`InferenceSession` mirrors onnxruntime's API; :class:`Session`
is the native, zero-copy path (``Tensor`` / DLPack in and out)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from ._errors import InvalidArgumentError, check
from ._ffi import ffi, lib
from .model import Model, ValueInfo, _value_info, load_model
from .tensor import Tensor, from_dlpack

__all__ = ["SessionOptions", "RunOptions", "Session", "InferenceSession", "NodeArg", "ModelMetadata"]

PathLike = Union[str, "os.PathLike[str]"]


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
        # C strings for names, built once (no per-call encoding).
        self._c_names = {v.name: ffi.new("char[]", v.name.encode("utf-8")) for v in ins + outs}
        self._all_out = ffi.new("const char*[]", [self._c_names[o.name] for o in outs])

    def _c_name(self, name: str, keep: list[Any]) -> Any:
        c = self._c_names.get(name)
        if c is None:
            # An unknown name (the library reports it): kept alive by `keep` during the call.
            c = ffi.new("char[]", name.encode("utf-8"))
            keep.append(c)
        return c

    def run(self, inputs: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[Tensor]:
        """Run with ``inputs`` (name -> array/Tensor/DLPack producer); returns the requested
        outputs (all, in model order, when ``output_names`` is None) as :class:`Tensor`.

        Raises :class:`InvalidArgumentError` (unknown or missing input name),
        :class:`UnsupportedDtypeError` (wrong dtype), :class:`ShapeMismatchError` (wrong shape
        or inconsistent symbolic dim), :class:`ExecutionError` (an operator failed)."""
        keep: list[Any] = []
        names = list(inputs.keys())
        tensors = [_as_tensor(n, inputs[n]) for n in names]
        n_in = len(names)
        c_in_names = ffi.new("const char*[]", [self._c_name(n, keep) for n in names]) if n_in else ffi.NULL
        c_in = ffi.new("const pmi_tensor*[]", [t._handle for t in tensors]) if n_in else ffi.NULL
        if output_names is None:
            n_out = len(self.outputs)
            c_out_names = ffi.NULL
        else:
            output_names = list(output_names)
            n_out = len(output_names)
            c_out_names = ffi.new("const char*[]", [self._c_name(n, keep) for n in output_names])
        outs = ffi.new("pmi_tensor*[]", max(n_out, 1))
        check(lib.pmi_session_run(self._handle, c_in_names, c_in, n_in, c_out_names, n_out, outs))
        return [Tensor._adopt(outs[i]) for i in range(n_out)]


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
        is None or empty). The arrays share the engine's output buffers (no copy)."""
        names = list(output_names) if output_names else None
        return [t.numpy() for t in self._session.run(input_feed, names)]
