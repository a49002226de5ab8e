"""Where the time goes, per operator, in pyml_interop and onnxruntime on one model.

Runs the model `--runs` times in each engine (same inputs, same thread count) with per-node
profiling on (onnxruntime's `enable_profiling`, our `PYML_INTEROP_PROFILE=nodes`) and prints the
time per call by operator type side by side, then the slowest nodes of each engine. A
diagnostic for kernel work, not a benchmark: profiling adds a little time to every node.

Usage: python3 benchmarks/profile_ops.py MODEL [--batch N] [--threads T] [--runs R] [--nodes K]
MODEL is a name from ../shared/models or a path to an .onnx file (with an .npz beside it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("PYML_SHARED_MODELS", ROOT.parent / "shared" / "models"))

_CHILD = r"""
import sys, numpy as np
import pyml_interop as pmi
path, data, batch, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = np.load(data)
inputs = {k: (np.repeat(d[k], batch, axis=0) if batch > 1 else d[k]) for k in d.files if not k.startswith("out:")}
o = pmi.SessionOptions(); o.intra_op_num_threads = threads
s = pmi.InferenceSession(path, o)
for _ in range(runs):
    s.run(None, inputs)
del s
"""


def _inputs(data: Path, batch: int):
    import numpy as np
    d = np.load(data)
    return {k: (np.repeat(d[k], batch, axis=0) if batch > 1 else d[k]) for k in d.files if not k.startswith("out:")}


def ort_profile(path: Path, data: Path, batch: int, threads: int, runs: int):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.enable_profiling = True
    o.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    inputs = _inputs(data, batch)
    for _ in range(3):
        s.run(None, inputs)
    prof = s.end_profiling()
    o.enable_profiling = True
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        s.run(None, inputs)
    prof = s.end_profiling()
    events = json.load(open(prof))
    nodes = collections.defaultdict(float)
    kinds = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][: -len("_kernel_time")]
            nodes[n] += e["dur"] / 1e3
            kinds[n] = e["args"].get("op_name", "?")
    return {n: (kinds[n], t / runs) for n, t in nodes.items()}


def pmi_profile(path: Path, data: Path, batch: int, threads: int, runs: int):
    env = dict(os.environ, PYML_INTEROP_PROFILE="nodes")
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(data), str(batch), str(threads), str(runs)],
                       env=env, capture_output=True, text=True, cwd=tempfile.gettempdir(), check=True)
    out = {}
    on = False
    for line in r.stderr.splitlines():
        if line.startswith("pyml_interop profile per node"):
            on = True
            continue
        if on and line.startswith("  "):
            label, op, per, n = line.strip().split("\t")
            out[label] = (op, float(per))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=15)
    a = ap.parse_args()
    path = Path(a.model)
    if not path.exists():
        path = MODELS / f"{a.model}.onnx"
    data = path.with_suffix(".npz")
    ours = pmi_profile(path, data, a.batch, a.threads, a.runs)
    theirs = ort_profile(path, data, a.batch, a.threads, a.runs)
    by_op = collections.defaultdict(lambda: [0.0, 0.0, 0, 0])
    for op, t in ours.values():
        by_op[op][0] += t
        by_op[op][2] += 1
    for op, t in theirs.values():
        by_op[op][1] += t
        by_op[op][3] += 1
    tot = [sum(v[0] for v in by_op.values()), sum(v[1] for v in by_op.values())]
    print(f"{path.name} batch {a.batch}, {a.threads} thread(s), ms per run (node time only)")
    print(f"{'op type':<28}{'pmi ms':>10}{'nodes':>7}{'ort ms':>10}{'nodes':>7}")
    for op, (p, o, np_, no) in sorted(by_op.items(), key=lambda kv: -max(kv[1][0], kv[1][1])):
        print(f"{op:<28}{p:>10.3f}{np_:>7}{o:>10.3f}{no:>7}")
    print(f"{'total':<28}{tot[0]:>10.3f}{'':>7}{tot[1]:>10.3f}")
    for name, prof in (("pyml_interop", ours), ("onnxruntime", theirs)):
        print(f"\nslowest nodes, {name}:")
        for n, (op, t) in sorted(prof.items(), key=lambda kv: -kv[1][1])[: a.nodes]:
            print(f"  {t:8.4f} ms  {op:<20} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
