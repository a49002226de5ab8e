"""The header and the built library agree: every `pmi_*` function declared in
include/pyml_interop.h is exported by the shared library, and every exported `pmi_*` symbol is
declared. This test FAILS on any disagreement (a missing implementation or an undocumented
export), naming the functions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyml_interop import _ffi

REPO_HEADER = Path(__file__).resolve().parents[2] / "include" / "pyml_interop.h"


def declared_functions(header: str) -> set[str]:
    """Names of the functions the header declares (comments, preprocessor lines and typedefs
    are ignored)."""
    text = re.sub(r"/\*.*?\*/", " ", header, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    names = set()
    for statement in text.split(";"):
        if "typedef" in statement or "(" not in statement:
            continue
        m = re.search(r"\b(pmi_\w+)\s*\(", statement)
        if m:
            names.add(m.group(1))
    return names


def exported_functions(library: Path) -> set[str]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(library)], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("T", "t", "W") and parts[2].startswith("pmi_"):
            names.add(parts[2])
    return names


def test_parser_finds_known_declarations() -> None:
    names = declared_functions(REPO_HEADER.read_text())
    assert {"pmi_last_error", "pmi_tensor_zeros", "pmi_tensor_release", "pmi_debug_panic"} <= names
    assert "pmi_release_fn" not in names  # a typedef, not a function


def test_header_and_library_agree() -> None:
    declared = declared_functions(REPO_HEADER.read_text())
    exported = exported_functions(_ffi.LIBRARY_PATH)
    missing = sorted(declared - exported)
    undeclared = sorted(exported - declared)
    problems = []
    if missing:
        problems.append(f"declared in {REPO_HEADER.name} but not exported by the library: {', '.join(missing)}")
    if undeclared:
        problems.append(f"exported by the library but not declared in the header: {', '.join(undeclared)}")
    assert not problems, f"{_ffi.LIBRARY_PATH}:\n" + "\n".join(problems)


def test_packaged_header_is_the_repository_header() -> None:
    assert _ffi.HEADER_PATH.read_text() == REPO_HEADER.read_text(), (
        f"{_ffi.HEADER_PATH} differs from {REPO_HEADER}: reinstall with `pip install .`"
    )
