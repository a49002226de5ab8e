"""Extra memory used by loading a model, relative to its file size (target: <= 1.2x).

Each model is loaded in a fresh process; the growth of peak RSS across `load_model` (plus
session creation, reported separately) is compared with the file size. Files are
memory-mapped, so aligned weights are borrowed from the page cache rather than copied.
Usage: python3 benchmarks/load_memory.py [MODEL.onnx ...] (default: ../shared/models/*.onnx)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import resource, sys
import pyml_interop as pmi
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
m = pmi.load_model(sys.argv[1])
loaded = rss()
s = pmi.Session(m)
print(loaded - base, rss() - loaded)
"""


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(p) for p in sys.argv[1:]] or sorted((root.parent / "shared" / "models").glob("*.onnx"))
    if not paths:
        print("no models found")
        return 0
    print("| model | file MB | load extra MB | ratio | + session MB |")
    print("|---|---:|---:|---:|---:|")
    for p in paths:
        out = subprocess.run([sys.executable, "-c", CHILD, str(p)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"| {p.stem} | error: {out.stderr.strip().splitlines()[-1][:80]} |")
            continue
        load, sess = (int(x) for x in out.stdout.split())
        size = os.path.getsize(p)
        print(f"| {p.stem} | {size / 1e6:.1f} | {load / 1e6:.1f} | {load / size:.2f} | {sess / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
