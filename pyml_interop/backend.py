"""An ``onnx.backend.base.Backend`` over pyml_interop, so the ONNX conformance suite
(``onnx.backend.test.BackendTest``) runs against the engine through the C ABI.

Requires the ``onnx`` package (imported lazily by this module only).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep

from .model import load_model
from .session import Session

__all__ = ["PymlBackend", "PymlBackendRep", "prepare", "run_model", "run_node", "supports_device"]


class PymlBackendRep(BackendRep):
    """A prepared model: positional inputs in, numpy outputs out."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feed = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            names = [v.name for v in self._session.inputs]
            feed = dict(zip(names, inputs))
        outs = self._session.run(feed)
        return tuple(t.numpy() for t in outs)


class PymlBackend(Backend):
    """pyml_interop as an ONNX backend (CPU only)."""

    @classmethod
    def is_compatible(cls, model: ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return device.upper().startswith("CPU")

    @classmethod
    def prepare(cls, model: ModelProto, device: str = "CPU", **kwargs: Any) -> PymlBackendRep:
        super().prepare(model, device, **kwargs)
        return PymlBackendRep(Session(load_model(model.SerializeToString())))

    @classmethod
    def run_model(cls, model: ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: NodeProto,
        inputs: Sequence[np.ndarray],
        device: str = "CPU",
        outputs_info: Sequence[tuple[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        """Run a single node by wrapping it in a one-node model (opset from ``opset_version``)."""
        from onnx import TensorProto  # noqa: PLC0415
        from onnx.helper import np_dtype_to_tensor_dtype  # noqa: PLC0415

        ins = [
            helper.make_tensor_value_info(n, np_dtype_to_tensor_dtype(np.asarray(x).dtype), np.asarray(x).shape)
            for n, x in zip(node.input, inputs)
        ]
        outs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in node.output]
        graph = helper.make_graph([node], "run_node", ins, outs)
        opset = kwargs.get("opset_version")
        imports = [helper.make_opsetid("", opset)] if opset else None
        model = helper.make_model(graph, opset_imports=imports) if imports else helper.make_model(graph)
        return cls.run_model(model, list(inputs), device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")


prepare = PymlBackend.prepare
run_model = PymlBackend.run_model
run_node = PymlBackend.run_node
supports_device = PymlBackend.supports_device
