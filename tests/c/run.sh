#!/usr/bin/env bash
# Build and run the C consumer tests against the Rust library:
#   1. test_tensor.c (C99, -Wall -Wextra -Werror -pedantic) linked to the STATIC library, run under
#      AddressSanitizer + UndefinedBehaviorSanitizer with leak detection;
#   2. the same program linked to the SHARED library, run under valgrind (if installed), which
#      also sees invalid accesses inside the (uninstrumented) Rust code;
#   3. test_header_cpp.cpp: the header compiles as C++17 (-Wall -Wextra -Werror -pedantic) and links.
# The library comes from rust_core/target/release (built here with `cargo build --release`, a
# no-op when `pip install .` or `cargo test --release` already built it), or from $PMI_LIB_DIR.
# Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$ROOT/tests/c/build"
LIBDIR="${PMI_LIB_DIR:-$ROOT/rust_core/target/release}"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"
mkdir -p "$BUILD"

if [[ -z "${PMI_LIB_DIR:-}" ]]; then
    echo "== cargo build --release (rust_core)"
    cargo build --release --quiet --manifest-path "$ROOT/rust_core/Cargo.toml"
fi
STATIC="$LIBDIR/libpyml_interop.a"
[[ -f "$STATIC" && -f "$LIBDIR/libpyml_interop.so" ]] || { echo "missing $STATIC or libpyml_interop.so" >&2; exit 1; }

DEFINES=()
# (grep without -q: an early exit would SIGPIPE nm and fail the pipeline under pipefail)
if nm --defined-only "$STATIC" 2>/dev/null | grep ' T pmi_tensor_load_pb$' >/dev/null; then
    DEFINES+=(-DPMI_TEST_HAVE_PB)
fi
CFLAGS=(-std=c99 -Wall -Wextra -Werror -pedantic -g -I"$ROOT/include" "${DEFINES[@]}")
SYSLIBS=(-lpthread -ldl -lm)

status=0
export RUST_BACKTRACE=0  # the panic-guard test panics on purpose: keep its report to one line

echo "== C tests, static library, AddressSanitizer + UBSan"
"$CC" "${CFLAGS[@]}" -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
    "$ROOT/tests/c/test_tensor.c" "$STATIC" "${SYSLIBS[@]}" -o "$BUILD/test_tensor_asan"
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}" UBSAN_OPTIONS="print_stacktrace=1" \
    "$BUILD/test_tensor_asan" || status=1

echo "== C tests, shared library${VALGRIND:+, valgrind}"
"$CC" "${CFLAGS[@]}" -O1 "$ROOT/tests/c/test_tensor.c" -L"$LIBDIR" -lpyml_interop -Wl,-rpath,"$LIBDIR" \
    "${SYSLIBS[@]}" -o "$BUILD/test_tensor_shared"
if command -v valgrind >/dev/null 2>&1 && [[ "${PMI_NO_VALGRIND:-}" != 1 ]]; then
    valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
        "$BUILD/test_tensor_shared" || status=1
else
    echo "(valgrind not installed or PMI_NO_VALGRIND=1: running without it)"
    "$BUILD/test_tensor_shared" || status=1
fi

echo "== C++ header test"
"$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" "$ROOT/tests/c/test_header_cpp.cpp" \
    "$STATIC" "${SYSLIBS[@]}" -o "$BUILD/test_header_cpp"
"$BUILD/test_header_cpp" || status=1

echo "== examples/run_model.c on the bundled demo model (C99, ASan), checked against numpy"
"$CC" "${CFLAGS[@]}" -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all \
    "$ROOT/examples/run_model.c" "$STATIC" "${SYSLIBS[@]}" -o "$BUILD/run_model"
EX="$BUILD/example"
rm -rf "$EX" && mkdir -p "$EX"
PY="${PYTHON:-python3}"
if "$PY" -c "import numpy" 2>/dev/null; then
    "$PY" - "$EX" "$ROOT" <<'PYEOF'
import sys, numpy as np
np.save(sys.argv[1] + "/x.npy", np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32))
PYEOF
    if ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" "$BUILD/run_model" \
        "$ROOT/pyml_interop/data/demo_mlp.onnx" "$EX" "x=$EX/x.npy"; then
        "$PY" - "$EX" "$ROOT" <<'PYEOF' || status=1
import sys, numpy as np
ex, root = sys.argv[1], sys.argv[2]
x = np.load(ex + "/x.npy"); w = np.load(root + "/pyml_interop/data/demo_mlp_weights.npz")
h = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
e = np.exp(h - h.max(1, keepdims=True)); ref = e / e.sum(1, keepdims=True)
got = np.load(ex + "/probs.npy")
assert got.shape == ref.shape and np.allclose(got, ref, atol=1e-6), np.abs(got - ref).max()
print("run_model output matches numpy")
PYEOF
    else
        status=1
    fi
    # A wrong input name must fail cleanly with a message naming it.
    if "$BUILD/run_model" "$ROOT/pyml_interop/data/demo_mlp.onnx" "$EX" "nope=$EX/x.npy" 2>"$EX/err.txt"; then
        echo "run_model accepted a wrong input name" >&2; status=1
    elif ! grep -q "'nope'" "$EX/err.txt"; then
        echo "run_model's error does not name the input: $(cat "$EX/err.txt")" >&2; status=1
    fi
    # Every shared exported model, when ../shared/models is present: .npz inputs -> .npy ->
    # run_model -> outputs compared with the framework's references within the manifest tolerance.
    MODELS="${PYML_SHARED_MODELS:-$ROOT/../shared/models}"
    if [[ -f "$MODELS/MANIFEST.json" ]]; then
        while read -r name file; do
            dir="$EX/$name"; mkdir -p "$dir"
            args=$("$PY" - "$MODELS" "$name" "$dir" <<'PYEOF'
import json, sys, numpy as np
models, name, out = sys.argv[1:]
e = json.load(open(models + "/MANIFEST.json"))["models"][name]
d = np.load(models + "/" + e["data"])
args = []
for i, k in enumerate(k for k in d.files if not k.startswith("out:")):
    np.save(f"{out}/in{i}.npy", d[k]); args.append(f"{k}={out}/in{i}.npy")
print(" ".join(args))
PYEOF
)
            # shellcheck disable=SC2086
            if "$BUILD/run_model" "$MODELS/$file" "$dir" $args >/dev/null; then
                "$PY" - "$MODELS" "$name" "$dir" <<'PYEOF' || status=1
import json, sys, numpy as np
models, name, out = sys.argv[1:]
e = json.load(open(models + "/MANIFEST.json"))["models"][name]
d = np.load(models + "/" + e["data"]); tol = e["tolerance"]
for k in (k for k in d.files if k.startswith("out:")):
    got = np.load(f"{out}/{k[4:]}.npy")
    assert np.allclose(got, d[k], rtol=tol["rtol"], atol=tol["atol"]), (name, k, np.abs(got - d[k]).max())
print(f"run_model {name}: matches the framework")
PYEOF
            else
                echo "run_model failed on $name" >&2; status=1
            fi
        done < <("$PY" -c "import json,sys; [print(k, v['file']) for k, v in json.load(open(sys.argv[1]))['models'].items()]" "$MODELS/MANIFEST.json")
    else
        echo "(shared models not found at $MODELS: C example checked on the demo model only)"
    fi
else
    echo "(numpy not installed: example not checked)"
fi

exit $status
