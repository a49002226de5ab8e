"""Extra memory used by loading a model, relative to its file size (target: <= 1.2x).

Each model is loaded in a fresh process; the growth of peak RSS across `load_model` (plus
session creation, reported separately) is compared with the file size. Files are
memory-mapped: aligned weights are borrowed from the mapping, misaligned ones (protobuf puts
`raw_data` at any offset) are copied once into aligned buffers, and the mapped pages read while
decoding and copying are released, so what remains is about the size of the copied weights.

Part of the growth is the library's own code, paged in from the shared object the first time the
loader runs (file-backed, shared with other processes, paid once per process whatever the model):
it is measured from /proc/self/smaps (Linux) and reported separately, with the ratio without it.
Usage: python3 benchmarks/load_memory.py [MODEL.onnx ...] (default: ../shared/models/*.onnx)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import os, re, resource, sys
import pyml_interop as pmi
from pyml_interop import _ffi
LIB = os.path.realpath(_ffi.LIBRARY_PATH)
HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
def start():
    # Peak RSS from now on. On Linux, VmHWM reset to the current RSS (ru_maxrss would include
    # what was inherited across fork and exec: the parent's peak).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return peak()
def peak():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024
def lib_rss():
    # Resident bytes of the library's own mappings (-1 without /proc/self/smaps).
    try:
        f = open("/proc/self/smaps")
    except OSError:
        return -1
    total, inside = 0, False
    with f:
        for line in f:
            if HEADER.match(line):
                inside = line.rstrip("\n").endswith(LIB)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total
code = lib_rss()
base = start()
m = pmi.load_model(sys.argv[1])
loaded = peak()
code_loaded = lib_rss()
after_load = start()
s = pmi.Session(m)
print(loaded - base, code_loaded - code if code >= 0 else -1, peak() - after_load)
"""


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(p) for p in sys.argv[1:]] or sorted((root.parent / "shared" / "models").glob("*.onnx"))
    if not paths:
        print("no models found")
        return 0
    print("| model | file MB | load extra MB | ratio | of which library code MB | ratio without code | + session MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in paths:
        out = subprocess.run([sys.executable, "-c", CHILD, str(p)], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"| {p.stem} | error: {out.stderr.strip().splitlines()[-1][:80]} |")
            continue
        load, code, sess = (int(x) for x in out.stdout.split())
        size = os.path.getsize(p)
        if code >= 0:
            code_cols = f"{code / 1e6:.1f} | {max(load - code, 0) / size:.2f}"
        else:
            code_cols = "- | -"
        cols = f"{size / 1e6:.1f} | {load / 1e6:.1f} | {load / size:.2f} | {code_cols} | {sess / 1e6:.1f}"
        print(f"| {p.stem} | {cols} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
