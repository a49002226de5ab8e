"""Command line: ``pyml-interop <command>`` (or ``python -m pyml_interop <command>``)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _cmd_version(args: argparse.Namespace) -> int:
    import pyml_interop
    from pyml_interop import _ffi

    major, minor = pyml_interop.abi_version()
    print(f"pyml_interop {pyml_interop.__version__}")
    print(f"C library {pyml_interop.library_version()} (ABI {major}.{minor}) at {_ffi.LIBRARY_PATH}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Run the bundled MLP on random data and check it against a numpy computation."""
    import time
    from pathlib import Path

    import numpy as np

    import pyml_interop as pmi

    path = Path(__file__).resolve().parent / "data" / "demo_mlp.onnx"
    model = pmi.load_model(path)
    print(f"model: {path.name}  {model}")
    sess = pmi.InferenceSession(str(path))
    x = np.random.default_rng(42).standard_normal((args.batch, 16)).astype(np.float32)
    t0 = time.perf_counter()
    (probs,) = sess.run(None, {"x": x})
    elapsed = (time.perf_counter() - t0) * 1e3
    # The same network computed with numpy from the model's own weights, as an independent check.
    w = np.load(path.with_name("demo_mlp_weights.npz"))
    h = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
    e = np.exp(h - h.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    err = float(np.abs(probs - ref).max())
    print(f"input x: {x.shape} float32 -> probs: {probs.shape} {probs.dtype} in {elapsed:.3f} ms")
    print(f"argmax per row: {probs.argmax(axis=1).tolist()}")
    print(f"max |pyml_interop - numpy| = {err:.2e}  ->  {'OK' if err < 1e-5 else 'MISMATCH'}")
    return 0 if err < 1e-5 else 1


def _cmd_info(args: argparse.Namespace) -> int:
    """Print what a model contains."""
    import pyml_interop as pmi

    m = pmi.load_model(args.model)
    print(f"producer: {m.producer[0]} {m.producer[1]}  ir_version: {m.ir_version}  opsets: {m.opsets}")
    for kind, values in (("input", m.inputs), ("output", m.outputs)):
        for v in values:
            print(f"{kind:6} {v.name}: {v.type} {list(v.shape) if v.shape is not None else '?'}")
    print(f"initializers: {m.initializer_count} ({m.initializer_bytes / 1e6:.2f} MB)")
    print("ops: " + ", ".join(f"{k}x{n}" for k, n in m.op_types.items()))
    if m.metadata:
        print(f"metadata: {m.metadata}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per command."""
    parser = argparse.ArgumentParser(
        prog="pyml-interop",
        description="ONNX inference and zero-copy tensor exchange over a Rust core.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    version = commands.add_parser("version", help="print the package, library and ABI versions")
    version.set_defaults(run=_cmd_version)
    demo = commands.add_parser("demo", help="run the bundled demo model and check its output")
    demo.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    demo.set_defaults(run=_cmd_demo)
    info = commands.add_parser("info", help="describe an ONNX model (inputs, outputs, opsets, ops)")
    info.add_argument("model", help="path to an .onnx file")
    info.set_defaults(run=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    from pyml_interop import Error

    try:
        return int(args.run(args))
    except Error as e:
        print(f"pyml-interop {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
