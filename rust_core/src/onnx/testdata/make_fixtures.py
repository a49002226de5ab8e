"""Regenerate the fixtures of the ONNX reader's tests (run from this directory).

small.onnx    a checker-valid model exercising many message kinds: Conv with int-list attributes,
              a Constant with a tensor attribute, an If with two subgraphs, a sparse initializer,
              a model-local function, metadata, symbolic dimensions.
tensors.onnx  initializers of every element type, each twice: `<type>_raw` (raw_data, made by
              numpy_helper.from_array) and `<type>_typed` (the typed field, made by
              helper.make_tensor), holding the same values.
"""

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper


def small():
    w = numpy_helper.from_array(np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3) / 10, "w")
    b = helper.make_tensor("b", T.FLOAT, [2], [0.5, -0.5])
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1], strides=[1, 1])
    relu = helper.make_node("Relu", ["c"], ["r"], name="relu1", doc_string="rectifier")
    k = helper.make_node("Constant", [], ["k"], name="k", value=helper.make_tensor("kv", T.INT64, [1], [3]))
    red = helper.make_node("ReduceSum", ["r"], ["s"], name="sum", keepdims=0)
    pos = helper.make_node("Greater", ["s", "zero"], ["p"], name="pos")
    then_g = helper.make_graph(
        [helper.make_node("Add", ["r", "one"], ["t_out"], name="then_add")],
        "then",
        [],
        [helper.make_tensor_value_info("t_out", T.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor("one", T.FLOAT, [], [1.0])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["e_out"], name="else_neg")],
        "else",
        [],
        [helper.make_tensor_value_info("e_out", T.FLOAT, ["N", 2, 4, 4])],
    )
    iff = helper.make_node("If", ["p"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)
    sq = helper.make_node("Square", ["k"], ["k2"], domain="local", name="square")
    sparse = helper.make_sparse_tensor(
        helper.make_tensor("sp_values", T.FLOAT, [2], [1.5, 2.5]),
        helper.make_tensor("sp_indices", T.INT64, [2], [1, 4]),
        [2, 3],
    )
    graph = helper.make_graph(
        [conv, relu, k, red, pos, iff, sq],
        "small",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 2, 4, 4]), helper.make_tensor_value_info("k2", T.INT64, [1])],
        [w, b, helper.make_tensor("zero", T.FLOAT, [], [0.0])],
        doc_string="a small test model",
        sparse_initializer=[sparse],
    )
    square = helper.make_function(
        "local",
        "Square",
        ["X"],
        ["Y"],
        [helper.make_node("Mul", ["X", "X"], ["Y"])],
        [helper.make_opsetid("", 17)],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[square],
        producer_name="make_fixtures.py",
    )
    helper.set_model_props(model, {"purpose": "tests"})
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


VALUES = {
    T.FLOAT: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.DOUBLE: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.FLOAT16: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.BFLOAT16: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.FLOAT8E4M3FN: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.FLOAT8E4M3FNUZ: [0.0, 1.0, -2.0, 0.5, 3.25],
    T.FLOAT8E5M2: [0.0, 1.0, -2.0, 0.5, 3.0],
    T.FLOAT8E5M2FNUZ: [0.0, 1.0, -2.0, 0.5, 3.0],
    T.FLOAT8E8M0: [1.0, 2.0, 0.5, 4.0, 1024.0],
    T.FLOAT4E2M1: [0.0, 1.0, -2.0, 0.5, 3.0],
    T.INT8: [0, 1, -128, 127, -3],
    T.UINT8: [0, 1, 255, 128, 3],
    T.INT16: [0, 1, -32768, 32767, -3],
    T.UINT16: [0, 1, 65535, 32768, 3],
    T.INT32: [0, 1, -(2**31), 2**31 - 1, -3],
    T.UINT32: [0, 1, 2**32 - 1, 2**31, 3],
    T.INT64: [0, 1, -(2**63), 2**63 - 1, -3],
    T.UINT64: [0, 1, 2**64 - 1, 2**63, 3],
    T.INT4: [-8, 7, -1, 0, 3],
    T.UINT4: [0, 15, 1, 8, 3],
    T.INT2: [-2, 1, -1, 0, 1],
    T.UINT2: [0, 3, 1, 2, 3],
    T.BOOL: [True, False, True, True, False],
    T.COMPLEX64: [0j, 1 + 2j, -2 - 0.5j, 0.5j, 3.25],
    T.COMPLEX128: [0j, 1 + 2j, -2 - 0.5j, 0.5j, 3.25],
    T.STRING: [b"", b"a", b"\xc3\xa9t\xc3\xa9", b"x" * 200, b"z"],
}


def tensors():
    inits = []
    for code, values in VALUES.items():
        name = T.DataType.Name(code).lower()
        np_type = helper.tensor_dtype_to_np_dtype(code)
        array = np.array(values, dtype=object if code == T.STRING else np_type)
        raw = numpy_helper.from_array(array, f"{name}_raw")
        if code != T.STRING:
            assert raw.HasField("raw_data"), name
            inits.append(raw)
        typed_values = values if code != T.STRING else values
        typed = helper.make_tensor(f"{name}_typed", code, [len(values)], typed_values)
        assert not typed.HasField("raw_data"), name
        inits.append(typed)
    graph = helper.make_graph([], "tensors", [], [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    return model


if __name__ == "__main__":
    onnx.save(small(), "small.onnx")
    onnx.save(tensors(), "tensors.onnx")
