"""Write every ONNX backend node test case to disk (model.onnx + test_data_set_N/*.pb).

The `onnx` wheel generates node test cases in memory; this dumps them in the on-disk layout of
the ONNX repository so non-Python harnesses (rust_core/examples/conformance.rs) can read them.
Usage: python3 tests/conformance/dump_node_tests.py [OUT_DIR]
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import onnx
from onnx import numpy_helper


def _to_proto(value, type_proto):
    if isinstance(value, onnx.TensorProto):
        return value.SerializeToString(), "tensor"
    if isinstance(value, list):
        seq = numpy_helper.from_list([np.asarray(v) for v in value])
        return seq.SerializeToString(), "sequence"
    if value is None:
        return onnx.OptionalProto().SerializeToString(), "optional"
    if isinstance(value, dict):
        return numpy_helper.from_dict(value).SerializeToString(), "map"
    arr = np.asarray(value)
    elem = None
    if type_proto is not None and type_proto.HasField("tensor_type"):
        elem = type_proto.tensor_type.elem_type
    if elem and arr.dtype != object:
        t = numpy_helper.from_array(arr)
        if t.data_type != elem:
            try:
                t = onnx.helper.make_tensor("", elem, arr.shape, arr.flatten().tolist())
            except Exception:
                pass
        return t.SerializeToString(), "tensor"
    return numpy_helper.from_array(arr).SerializeToString(), "tensor"


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "rust_core", "target", "onnx-node-tests")
    warnings.simplefilter("ignore")
    import onnx.backend.test.case.node as node_cases

    cases = node_cases.collect_testcases(None)
    n = 0
    for case in cases:
        d = os.path.join(out, case.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        with open(os.path.join(d, "tolerance.txt"), "w") as f:
            f.write(f"{case.rtol} {case.atol}\n")
        for k, (inputs, outputs) in enumerate(case.data_sets or []):
            ds = os.path.join(d, f"test_data_set_{k}")
            os.makedirs(ds, exist_ok=True)
            for kind, values, infos in (("input", inputs, case.model.graph.input),
                                        ("output", outputs, case.model.graph.output)):
                for i, v in enumerate(values):
                    tp = infos[i].type if i < len(infos) else None
                    data, what = _to_proto(v, tp)
                    suffix = "" if what == "tensor" else f".{what}"
                    with open(os.path.join(ds, f"{kind}_{i}{suffix}.pb"), "wb") as f:
                        f.write(data)
        n += 1
    print(f"wrote {n} node test cases to {os.path.abspath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
