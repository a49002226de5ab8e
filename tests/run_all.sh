#!/usr/bin/env bash
# Every test of the project, as CI runs them on a fresh machine. Needs Python >= 3.10 with pip,
# a Rust toolchain (cargo), gcc and g++; valgrind is used when present.
#
#   1. python3 -m pip install ".[test]"  builds rust_core in release mode (setuptools-rust, target
#      dir rust_core/target) into the installed package, and installs numpy, cffi, ml_dtypes,
#      pytest, onnx, onnxruntime.
#   2. cargo test --release              Rust unit tests; reuses the library pip just built.
#   3. tests/c/run.sh                    C/C++ consumers of the header (ASan, valgrind).
#   4. pytest tests/python               against the INSTALLED package (run from tests/python so
#                                        the source tree's pyml_interop/ does not shadow it).
#   5. benchmarks/bench.py --quick       proves the benchmark runs (not a measurement).
#
# Runs every step even if one fails; exits non-zero if any failed. PYTHON overrides python3.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

failed=()
step() {
    local name="$1"
    shift
    local start=$SECONDS
    echo
    echo "=== $name"
    if "$@"; then
        echo "=== $name: ok ($((SECONDS - start))s)"
    else
        echo "=== $name: FAILED ($((SECONDS - start))s)"
        failed+=("$name")
    fi
}

step "pip install .[test]" "$PYTHON" -m pip install --quiet ".[test]"
if [[ ${#failed[@]} -ne 0 ]]; then
    echo "installation failed: not running the tests" >&2
    exit 1
fi
step "cargo test --release" cargo test --release --quiet --manifest-path rust_core/Cargo.toml
step "C tests" bash tests/c/run.sh
step "pytest" env PYML_INTEROP_EXPECT_INSTALLED=1 bash -c \
    'cd tests/python && exec "$0" -m pytest -q -p no:cacheprovider -ra .' "$PYTHON"
BENCH_OUT="$(mktemp -d)"
step "benchmark (quick)" "$PYTHON" benchmarks/bench.py --quick --out "$BENCH_OUT"
rm -rf "$BENCH_OUT"

echo
if [[ ${#failed[@]} -ne 0 ]]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all tests passed"
