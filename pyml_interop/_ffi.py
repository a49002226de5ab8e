"""cffi binding (ABI mode) of the C library: ``ffi`` and ``lib``.

The declarations come from the C header itself (``pyml_interop.h``, shipped inside the package),
so Python and C cannot drift apart. The shared library is the one built into the package by
``pip install .`` (``pyml_interop/_core<EXT_SUFFIX>``) unless the environment variable
``PYML_INTEROP_LIB`` names another file. At import the library's ABI version is checked against
the header's ``PMI_ABI_VERSION_*`` macros.

Calls through ``lib`` release the GIL (cffi's default), so long C calls do not block other
Python threads; callbacks into Python (release functions, DLPack deleters) re-acquire it.
"""

from __future__ import annotations

import glob
import importlib.machinery
import os
import re
from pathlib import Path

import cffi

__all__ = ["ffi", "lib", "HEADER_PATH", "LIBRARY_PATH", "cdef_source", "check_abi_version"]

_PACKAGE_DIR = Path(__file__).resolve().parent

#: Environment variable overriding the shared library to load.
LIB_ENV_VAR = "PYML_INTEROP_LIB"

_DEFINE_INT = re.compile(r"#\s*define\s+[A-Za-z_]\w*\s+(?:-?\d+|0[xX][0-9a-fA-F]+)[uUlL]*\s*$")


def _find_header() -> Path:
    candidates = [
        _PACKAGE_DIR / "include" / "pyml_interop.h",  # installed package
        _PACKAGE_DIR.parent / "include" / "pyml_interop.h",  # source tree (editable install)
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ImportError(
        "pyml_interop: C header pyml_interop.h not found (looked in "
        + ", ".join(str(p) for p in candidates)
        + "); reinstall the package with `pip install .`"
    )


def _find_library() -> Path:
    override = os.environ.get(LIB_ENV_VAR)
    if override:
        return Path(override)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _PACKAGE_DIR / f"_core{suffix}"
        if path.is_file():
            return path
    found = sorted(glob.glob(str(_PACKAGE_DIR / "_core*.so")) + glob.glob(str(_PACKAGE_DIR / "_core*.dylib")))
    if found:
        return Path(found[0])
    raise ImportError(
        f"pyml_interop: the compiled library (_core{importlib.machinery.EXTENSION_SUFFIXES[0]}) is "
        f"missing from {_PACKAGE_DIR}; install the package with `pip install .` (needs a Rust "
        f"toolchain) or point {LIB_ENV_VAR} at libpyml_interop.so"
    )


def cdef_source(header_text: str) -> str:
    """The header as cffi ``cdef`` input.

    Preprocessor lines are dropped except ``#define NAME <integer>`` (which cffi turns into
    integer constants); ``#ifdef __cplusplus`` blocks (the ``extern "C"`` wrapper) are dropped
    with their content; other conditional blocks (include guard, the DLPack structs) are kept.
    """
    out: list[str] = []
    stack: list[bool] = []  # per open #if: whether its content is skipped
    for line in header_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            directive = stripped[1:].strip()
            if directive.startswith("if"):
                stack.append(directive.startswith("ifdef") and "__cplusplus" in directive)
            elif directive.startswith("else") and stack:
                stack[-1] = False  # `#ifdef __cplusplus ... #else <C part>`; others stay kept
            elif directive.startswith("endif") and stack:
                stack.pop()
            elif not any(stack) and _DEFINE_INT.match(stripped):
                out.append(stripped)
            continue
        if any(stack) or stripped.startswith('extern "C"'):
            continue
        out.append(line)
    return "\n".join(out)


def check_abi_version(library: int, header_major: int, header_minor: int, where: str = "") -> None:
    """Raise ImportError unless a library of ABI version ``library`` ((major << 16) | minor)
    serves a header of version ``header_major.header_minor``: same major, minor >= header's."""
    major, minor = library >> 16, library & 0xFFFF
    if major != header_major or minor < header_minor:
        raise ImportError(
            f"pyml_interop: C library{(' ' + where) if where else ''} has ABI version "
            f"{major}.{minor}, but the header pyml_interop.h is version {header_major}.{header_minor} "
            "(the library's major version must be equal and its minor version at least the header's); "
            "rebuild with `pip install .`"
        )


HEADER_PATH: Path = _find_header()
LIBRARY_PATH: Path = _find_library()

ffi = cffi.FFI()
ffi.cdef(cdef_source(HEADER_PATH.read_text(encoding="utf-8")))
try:
    lib = ffi.dlopen(str(LIBRARY_PATH))
except OSError as e:
    raise ImportError(f"pyml_interop: cannot load the C library {LIBRARY_PATH}: {e}") from e

check_abi_version(
    lib.pmi_abi_version(), lib.PMI_ABI_VERSION_MAJOR, lib.PMI_ABI_VERSION_MINOR, str(LIBRARY_PATH)
)

# Hot-path entry points. `ffi.new` and `ffi.from_buffer` are Python wrappers around these two
# functions of cffi's C backend (the module `ffi` is built on); calling them directly saves a
# Python frame per call on the per-run paths. Falls back to the public methods elsewhere.
#   new_raw(ctype, init) == ffi.new(ctype, init)
#   from_buffer_raw(CHAR_ARRAY, obj, require_writable) == ffi.from_buffer(obj, require_writable=...)
CHAR_ARRAY = ffi.typeof("char[]")
_backend = getattr(ffi, "_backend", None)
new_raw = getattr(_backend, "newp", None) or ffi.new
from_buffer_raw = getattr(_backend, "from_buffer", None) or (
    lambda ctype, obj, require_writable=False: ffi.from_buffer(ctype, obj, require_writable=require_writable)
)
