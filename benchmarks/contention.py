"""Latency on a shared machine: pyml_interop vs onnxruntime on two threads while another
process keeps one core busy, against each engine's own one-thread time on the idle machine.

A busy process (a Python loop pinned to the last CPU) stands for a neighbour on a shared host.
The scheduler may then put an engine's worker thread on the caller's core; a worker that polls
for work without ever yielding takes half of that core from the thread doing the work, and two
threads end up slower than one. Each configuration is measured as in bench.py (engines
interleaved in one process, medians); the table gives the two-thread median under load, the
one-thread median without it, and their ratio (below 1: the second thread still helps).

Usage: python3 benchmarks/contention.py [--models a,b] [--seconds S]
Linux only (CPU affinity); skips cleanly elsewhere or on a single core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v3_small,squeezenet1_1,bert_tiny,efficientnet_b0")
    ap.add_argument("--seconds", type=float, default=4.0, help="time budget per configuration")
    args = ap.parse_args()
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        print("skipped: needs Linux CPU affinity and two cores")
        return 0
    if not bench.MODELS.is_dir():
        print(f"skipped: no models at {bench.MODELS}")
        return 0
    engines = [e for e in bench._engines() if e.name in ("pyml_interop", "onnxruntime")]
    last = max(os.sched_getaffinity(0))
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        path = bench.MODELS / f"{name}.onnx"
        data = bench.np.load(bench.MODELS / f"{name}.npz")
        inputs = {k: data[k] for k in data.files if not k.startswith("out:")}
        idle, _ = bench._measure(engines, path, inputs, 1, 10_000, args.seconds, 5)
        hog = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{last}}})\nwhile True: pass"])
        try:
            loaded, _ = bench._measure(engines, path, inputs, 2, 10_000, args.seconds, 5)
        finally:
            hog.kill()
            hog.wait()
        for e in engines:
            if e.name in idle and e.name in loaded:
                two, one = loaded[e.name]["median_ms"], idle[e.name]["median_ms"]
                rows.append((name, e.name, two, one))
    print("| model | engine | 2 threads, one core busy (ms) | 1 thread, idle (ms) | ratio |")
    print("|---|---|---:|---:|---:|")
    for name, eng, two, one in rows:
        print(f"| {name} | {eng} | {two:.3f} | {one:.3f} | {two / one:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
