"""Single operators, pyml_interop against onnxruntime, in one process: a sweep that finds the
operators an unseen model could hit that are much slower than onnxruntime's (the shared models
exercise only a few). Prints one line per case with the median latency of each engine (one
`run` per call, so each includes ~7 us of Python per call on both sides) and flags ratios
above 1.3.

    python3 benchmarks/op_sweep.py [--threads N] [--filter SUBSTRING]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import pyml_interop as pmi

rng = np.random.default_rng(0)
ARGS = argparse.Namespace(threads=1, filter="")


def case(*a, **k):
    """Run one case; a failure (e.g. a case onnxruntime rejects) is reported, not raised."""
    if ARGS.filter.lower() not in a[0].lower():
        return
    try:
        case0(*a, **k)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"{a[0]:40s} ERROR {str(e)[:150]}")


def case0(name, op, ins, attrs={}, inits=(), nout=1):
    th = ARGS.threads
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64, np.dtype(np.int32): TensorProto.INT32, np.dtype(bool): TensorProto.BOOL}
    vi = [helper.make_tensor_value_info(n, elem[a.dtype], a.shape) for n, a in ins]
    outs = [f"y{i}" for i in range(nout)]
    node = helper.make_node(op, [n for n, _ in ins] + [n for n, _ in inits], outs, **attrs)
    gr = helper.make_graph([node], "g", vi, [helper.make_empty_tensor_value_info(o) for o in outs], [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    feed = {n: a for n, a in ins}
    so = pmi.SessionOptions()
    so.intra_op_num_threads = th
    s1 = pmi.InferenceSession(m, so)
    oo = ort.SessionOptions()
    oo.intra_op_num_threads = th
    o = ort.InferenceSession(m, oo, providers=["CPUExecutionProvider"])
    a = s1.run(None, feed)
    b = o.run(None, feed)
    err = max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max()) if np.asarray(x).size else 0.0 for x, y in zip(a, b))
    res = {"p": [], "o": []}
    for _ in range(3):
        for nm, f in [("p", lambda: s1.run(None, feed)), ("o", lambda: o.run(None, feed))]:
            for _ in range(5):
                f()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.1:
                t = time.perf_counter()
                f()
                res[nm].append(time.perf_counter() - t)
    p = np.median(res["p"]) * 1e6
    q = np.median(res["o"]) * 1e6
    flag = "  <<<" if p / q > 1.3 else ""
    print(f"{name:40s} pmi {p:8.1f} ort {q:8.1f} us  ratio {p / q:.2f}  max|diff| {err:.1e}{flag}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.parse_args(namespace=ARGS)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    X=f(1,64,56,56); S=f(1,197,192); T=f(8,128,768)
    case("Add same", "Add", [("a",X),("b",f(1,64,56,56))])
    case("Add bcast channel", "Add", [("a",X),("b",f(1,64,1,1))])
    case("Mul bcast row", "Mul", [("a",S),("b",f(192))])
    case("Sigmoid", "Sigmoid", [("a",X)])
    case("Tanh", "Tanh", [("a",X)])
    case("Erf", "Erf", [("a",X)])
    case("Exp", "Exp", [("a",X)])
    case("Relu", "Relu", [("a",X)])
    case("Clip", "Clip", [("a",X)], inits=[("lo",np.array(0,np.float32)),("hi",np.array(6,np.float32))])
    case("Div scalar", "Div", [("a",X),("b",np.array([3.0],np.float32))])
    case("Sqrt", "Sqrt", [("a",np.abs(X))])
    case("Pow 2", "Pow", [("a",X),("b",np.array(2.0,np.float32))])
    case("Softmax last", "Softmax", [("a",f(1,3,197,197))], {"axis":-1})
    case("Softmax axis1", "Softmax", [("a",f(8,10,256))], {"axis":1})
    case("LayerNorm", "LayerNormalization", [("a",S)], {"axis":-1}, inits=[("g",f(192)),("be",f(192))])
    case("ReduceMean last", "ReduceMean", [("a",S)], {"axes":[-1]})
    case("ReduceSum all", "ReduceSum", [("a",X)], {"keepdims":0})
    case("ReduceMax axis1", "ReduceMax", [("a",X)], {"axes":[1]})
    case("Concat axis1", "Concat", [("a",X),("b",f(1,64,56,56))], {"axis":1})
    case("Concat last", "Concat", [("a",S),("b",f(1,197,192))], {"axis":-1})
    case("Split axis1", "Split", [("a",X)], {"axis":1}, inits=[("sp",np.array([32,32],np.int64))], nout=2)
    case("Slice", "Slice", [("a",X)], inits=[("st",np.array([1],np.int64)),("en",np.array([55],np.int64)),("ax",np.array([2],np.int64))])
    case("Gather axis0 emb", "Gather", [("w",f(30000,128)),("i",rng.integers(0,30000,(1,128)).astype(np.int64))])
    case("Gather axis1", "Gather", [("a",S),("i",np.array([0],np.int64))], {"axis":1})
    case("Pad const", "Pad", [("a",X)], inits=[("p",np.array([0,0,1,1,0,0,1,1],np.int64))])
    case("Resize nearest 2x", "Resize", [("a",f(1,64,28,28))], {"mode":"nearest"}, inits=[("roi",np.array([],np.float32)),("sc",np.array([1,1,2,2],np.float32))])
    case("Resize linear 2x", "Resize", [("a",f(1,64,28,28))], {"mode":"linear"}, inits=[("roi",np.array([],np.float32)),("sc",np.array([1,1,2,2],np.float32))])
    case("BatchNorm", "BatchNormalization", [("a",X)], inits=[("s",f(64)),("b",f(64)),("m",f(64)),("v",np.abs(f(64))+0.5)])
    case("InstanceNorm", "InstanceNormalization", [("a",X)], inits=[("s",f(64)),("b",f(64))])
    case("AvgPool 3x3", "AveragePool", [("a",X)], {"kernel_shape":[3,3],"strides":[1,1],"pads":[1,1,1,1]})
    case("GlobalMaxPool", "GlobalMaxPool", [("a",X)])
    case("Transpose 0213 i", "Transpose", [("a",f(8,128,12,64))], {"perm":[0,2,1,3]})
    case("Transpose NHWC->NCHW rgb", "Transpose", [("a",f(8,96,96,3))], {"perm":[0,3,1,2]})
    case("Where", "Where", [("c",rng.random((1,64,56,56))>0.5),("a",X),("b",f(1,64,56,56))])
    case("Cast f->i32", "Cast", [("a",X)], {"to":TensorProto.INT32})
    case("Expand", "Expand", [("a",f(1,64,1,1))], inits=[("sh",np.array([1,64,56,56],np.int64))])
    case("Tile", "Tile", [("a",f(1,64,28,28))], inits=[("r",np.array([1,1,2,2],np.int64))])
    case("ConvTranspose 2x", "ConvTranspose", [("a",f(1,32,28,28))], {"kernel_shape":[2,2],"strides":[2,2]}, inits=[("w",f(32,16,2,2))])
    case("Conv 3x3 64", "Conv", [("a",f(1,64,28,28))], {"kernel_shape":[3,3],"pads":[1,1,1,1]}, inits=[("w",f(64,64,3,3))])
    case("MatMul shallow 960x16x1024", "MatMul", [("a",f(960,16))], inits=[("w",f(16,1024))])
    case("MatMul thin 2400x256x32", "MatMul", [("a",f(2400,256))], inits=[("w",f(256,32))])
    case("Gemm 8x512x512", "Gemm", [("a",f(8,512))], {"transB":1}, inits=[("w",f(512,512)),("b",f(512))])
    case("HardSwish", "HardSwish", [("a",X)])
    case("LeakyRelu", "LeakyRelu", [("a",X)])
    case("Neg", "Neg", [("a",X)])
    case("ArgMax", "ArgMax", [("a",f(64,1000))], {"axis":1})
    case("TopK", "TopK", [("a",f(64,1000))], inits=[("k",np.array([5],np.int64))], nout=2)
    case("CumSum", "CumSum", [("a",f(64,1000))], inits=[("ax",np.array(1,np.int32))])
    case("MaxPool 3x3 s2", "MaxPool", [("a",f(1,64,112,112))], {"kernel_shape":[3,3],"strides":[2,2],"pads":[1,1,1,1]})
    case("MaxPool 1-D k4 s4", "MaxPool", [("a",f(1,32,3981))], {"kernel_shape":[4],"strides":[4]})
    case("MaxPool 1-D k8 s8", "MaxPool", [("a",f(1,32,3981))], {"kernel_shape":[8],"strides":[8]})
    case("AvgPool 1-D k6 s5", "AveragePool", [("a",f(1,32,3981))], {"kernel_shape":[6],"strides":[5]})
    case("Conv 1x1 64->128", "Conv", [("a",X)], {"kernel_shape":[1,1]}, inits=[("w",f(128,64,1,1))])
    case("Conv 1x1 3x3 map 112->1280", "Conv", [("a",f(8,112,3,3))], {"kernel_shape":[1,1]}, inits=[("w",f(1280,112,1,1))])
    case("Conv depthwise 5x5 s2", "Conv", [("a",f(1,96,28,28))], {"kernel_shape":[5,5],"strides":[2,2],"pads":[2,2,2,2],"group":96}, inits=[("w",f(96,1,5,5))])
    case("Conv depthwise 3x3", "Conv", [("a",f(1,144,56,56))], {"kernel_shape":[3,3],"pads":[1,1,1,1],"group":144}, inits=[("w",f(144,1,3,3))])
    case("Conv 7x7 s2 stem", "Conv", [("a",f(1,3,224,224))], {"kernel_shape":[7,7],"strides":[2,2],"pads":[3,3,3,3]}, inits=[("w",f(64,3,7,7))])
    case("MatMul attention", "MatMul", [("a",f(1,3,197,64)),("b",f(1,3,64,197))])
    case("Einsum bmm", "Einsum", [("a",f(8,128,64)),("b",f(8,64,128))], {"equation":"bij,bjk->bik"})
    case("Einsum qk", "Einsum", [("a",f(1,3,197,64)),("b",f(1,3,197,64))], {"equation":"bhqd,bhkd->bhqk"})
    case("GRU 32x64->128", "GRU", [("a",f(32,1,64))], {"hidden_size":128}, inits=[("w",f(1,384,64)*0.1),("r",f(1,384,128)*0.1),("bb",f(1,768)*0.1)])
    case("DepthToSpace", "DepthToSpace", [("a",f(1,64,28,28))], {"blocksize":2})
    case("SpaceToDepth", "SpaceToDepth", [("a",f(1,16,56,56))], {"blocksize":2})
    case("LRN", "LRN", [("a",X)], {"size":5})
    case("Pow 0.5", "Pow", [("a",np.abs(X))], inits=[("e",np.array(0.5,np.float32))])
    case("Sin", "Sin", [("a",X)])
    case("ReduceL2 last", "ReduceL2", [("a",S)], {"axes":[-1]})


if __name__ == "__main__":
    main()
