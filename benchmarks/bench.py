"""Side-by-side latency benchmark: pyml_interop vs onnxruntime (and tract when installed),
interleaved in one process, on the shared exported models and two synthetic graphs.

For every model and configuration (batch 1 and 8 for CNNs, 1 and 2 threads) each engine is
warmed up, then the engines take turns until every engine has `--iters` timed calls or
`--seconds` elapsed; medians and p90 come from the same time window, so machine noise hits all
engines alike. A turn is an untimed settle period of `SETTLE_S` seconds, then timed calls for
about `TURN_S` seconds: onnxruntime's idle workers keep spinning for 60-90 ms after its last run
(measured here; ours poll 50 us after a run), and a one-call round-robin charged that to the next engine
(2-thread runs of pyml_interop measured up to 2x slower than in a process of their own).
numpy's BLAS threads are limited to one (they spin too, and neither engine uses them). Also measured: session-creation time (median of a few),
peak RSS of a fresh process that loads and runs one model (each engine in its own process), and
the per-call overhead of the Python API on a tiny Add graph.

Writes a JSON file and a markdown table (default: benchmarks/results/latest.{json,md}).
Not a test: `--quick` runs a short version only to prove the script works.

Usage: python3 benchmarks/bench.py [--quick] [--models a,b] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

TURN_S = 0.3
SETTLE_S = 0.15
ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("PYML_SHARED_MODELS", ROOT.parent / "shared" / "models"))
CNNS = {"mobilenet_v3_small", "squeezenet1_1", "efficientnet_b0", "tf_mobilenetv2", "conv1d_audio"}


def _synthetic(tmp: Path) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """The two synthetic graphs: a 1024^3 MatMul and a 1x4 Add."""
    import onnx
    from onnx import TensorProto, helper

    out = {}
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1024, 1024]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1024, 1024])])
    p = tmp / "matmul1024.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    out["matmul_1024"] = (p, {"a": rng.standard_normal((1024, 1024), np.float32),
                              "b": rng.standard_normal((1024, 1024), np.float32)})
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["z"])], "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    p = tmp / "add_tiny.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    out["add_tiny"] = (p, {"x": np.ones((1, 4), np.float32), "y": np.ones((1, 4), np.float32)})
    return out


def _batched(inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    return {k: np.repeat(v, batch, axis=0) if batch > 1 else v for k, v in inputs.items()}


class Engine:
    name = ""

    def create(self, path: Path, threads: int):
        raise NotImplementedError

    def run(self, sess, inputs):
        raise NotImplementedError


class Pyml(Engine):
    name = "pyml_interop"

    def create(self, path, threads):
        import pyml_interop as pmi
        o = pmi.SessionOptions()
        o.intra_op_num_threads = threads
        return pmi.InferenceSession(str(path), o)

    def run(self, sess, inputs):
        return sess.run(None, inputs)


class Ort(Engine):
    name = "onnxruntime"

    def create(self, path, threads):
        import onnxruntime as ort
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    def run(self, sess, inputs):
        return sess.run(None, inputs)


class Tract(Engine):
    name = "tract"

    def create(self, path, threads):
        import tract
        return tract.onnx().model_for_path(str(path)).into_optimized().into_runnable()

    def run(self, sess, inputs):
        return sess.run(list(inputs.values()))


def _engines() -> list[Engine]:
    engines: list[Engine] = [Pyml(), Ort()]
    try:
        import tract  # noqa: F401
        engines.append(Tract())
    except ImportError:
        pass
    return engines


def _measure(engines, path, inputs, threads, iters, seconds, warmup):
    sessions, create_ms, errors = {}, {}, {}
    for e in engines:
        try:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                s = e.create(path, threads)
                times.append((time.perf_counter() - t0) * 1e3)
            sessions[e.name] = s
            create_ms[e.name] = statistics.median(times)
            for _ in range(warmup):
                e.run(s, inputs)
        except Exception as ex:  # an engine that cannot run the model is reported, not fatal
            errors[e.name] = f"{type(ex).__name__}: {str(ex)[:200]}"
            sessions.pop(e.name, None)
    samples = {n: [] for n in sessions}
    start = time.perf_counter()
    while any(len(v) < iters for v in samples.values()) and time.perf_counter() - start < seconds:
        for e in engines:
            if e.name in sessions:
                # Untimed settle period: the previous engine's idle workers may still spin.
                turn = time.perf_counter()
                e.run(sessions[e.name], inputs)
                while time.perf_counter() - turn < SETTLE_S:
                    e.run(sessions[e.name], inputs)
                turn = time.perf_counter()
                while True:
                    t0 = time.perf_counter()
                    e.run(sessions[e.name], inputs)
                    t1 = time.perf_counter()
                    samples[e.name].append((t1 - t0) * 1e3)
                    if t1 - turn >= TURN_S:
                        break
    res = {}
    for n, v in samples.items():
        v.sort()
        res[n] = {"median_ms": statistics.median(v), "p90_ms": v[int(0.9 * (len(v) - 1))], "n": len(v),
                  "create_ms": create_ms[n]}
    return res, errors


_RSS_CHILD = r"""
import sys
# ru_maxrss survives fork/exec (a child of this large process would report the parent's peak):
# reset the kernel's high-water mark first, then read VmHWM at the end.
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
import numpy as np
engine, path, data = sys.argv[1], sys.argv[2], sys.argv[3]
d = np.load(data)
inputs = {k: d[k] for k in d.files if not k.startswith("out:")}
if engine == "pyml_interop":
    import pyml_interop as m
    s = m.InferenceSession(path)
else:
    import onnxruntime as m
    s = m.InferenceSession(path, providers=["CPUExecutionProvider"])
s.run(None, inputs)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
if hwm:
    print(int(hwm[0].split()[1]))
else:
    import resource
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_mb(engine: str, path: Path, data: Path) -> float | None:
    try:
        # `python -c` puts the working directory first on sys.path: from the repository root
        # the source tree's pyml_interop/ (no compiled core) would shadow the installed one.
        out = subprocess.run([sys.executable, "-c", _RSS_CHILD, engine, str(path), str(data)],
                             capture_output=True, text=True, timeout=300, check=True,
                             cwd=tempfile.gettempdir())
        return int(out.stdout.strip().splitlines()[-1]) / 1024.0
    except Exception:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run that only proves the script works")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output folder")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget per configuration")
    args = ap.parse_args()
    iters, seconds, warmup = (5, 2.0, 1) if args.quick else (args.iters, args.seconds, 10)
    engines = _engines()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Path, dict[str, np.ndarray], Path | None]] = []
        if (MODELS / "MANIFEST.json").is_file():
            manifest = json.loads((MODELS / "MANIFEST.json").read_text())["models"]
            wanted = set(filter(None, args.models.split(","))) or set(manifest)
            for name in sorted(wanted & set(manifest)):
                d = np.load(MODELS / manifest[name]["data"])
                inputs = {k: d[k] for k in d.files if not k.startswith("out:")}
                cases.append((name, MODELS / manifest[name]["file"], inputs, MODELS / manifest[name]["data"]))
        else:
            print(f"shared models not found at {MODELS}: synthetic graphs only", file=sys.stderr)
        for name, (p, inputs) in _synthetic(Path(tmp)).items():
            if not args.models or name in args.models.split(","):
                cases.append((name, p, inputs, None))
        if args.quick:
            cases = [c for c in cases if c[0] in ("mlp", "add_tiny")] or cases[:1]
        for name, path, inputs, data in cases:
            batches = [1, 8] if name in CNNS and not args.quick else [1]
            for batch in batches:
                for threads in ([2] if args.quick else [1, 2]):
                    res, errors = _measure(engines, path, _batched(inputs, batch), threads, iters, seconds, warmup)
                    row = {"model": name, "batch": batch, "threads": threads, "results": res, "errors": errors}
                    o, p = res.get("onnxruntime"), res.get("pyml_interop")
                    if o and p:
                        row["ratio"] = p["median_ms"] / o["median_ms"]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if data is not None and not args.quick:
                for e in ("pyml_interop", "onnxruntime"):
                    rows.append({"model": name, "peak_rss_mb": {e: _peak_rss_mb(e, path, data)}, "engine": e})
    ratios = [r["ratio"] for r in rows if "ratio" in r and r["model"] not in ("add_tiny", "matmul_1024")]
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "geomean_ratio_models": float(np.exp(np.mean(np.log(ratios)))) if ratios else None,
        "worst_ratio_models": max(ratios) if ratios else None,
        "quick": args.quick,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    lines = [f"Benchmark {summary['date']} on {summary['machine']}" + (" (quick)" if args.quick else ""), "",
             "| model | batch | threads | pyml_interop median (p90) ms | onnxruntime median (p90) ms | ratio | create ms (pmi / ort) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "results" not in r:
            continue
        p, o = r["results"].get("pyml_interop"), r["results"].get("onnxruntime")
        fmt = lambda x: f"{x['median_ms']:.3f} ({x['p90_ms']:.3f})" if x else "n/a"  # noqa: E731
        cr = f"{p['create_ms']:.1f} / {o['create_ms']:.1f}" if p and o else "n/a"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ("error: " + "; ".join(r["errors"].values()))[:80]
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {fmt(p)} | {fmt(o)} | {ratio} | {cr} |")
    rss = [r for r in rows if "peak_rss_mb" in r]
    if rss:
        lines += ["", "| model | engine | peak RSS MB (load + one run, fresh process) |", "|---|---|---:|"]
        for r in rss:
            v = r["peak_rss_mb"][r["engine"]]
            lines.append(f"| {r['model']} | {r['engine']} | {v:.0f} |" if v else f"| {r['model']} | {r['engine']} | n/a |")
    if summary["geomean_ratio_models"]:
        lines += ["", f"Geometric mean of latency ratios (pyml_interop / onnxruntime) over the models: "
                      f"{summary['geomean_ratio_models']:.2f}; worst: {summary['worst_ratio_models']:.2f}"]
    (out / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
