"""The ONNX operator conformance suite (onnx.backend.test.BackendTest) against pyml_interop,
through the Python package and the C ABI.

Collected: the node, simple, pytorch-converted and pytorch-operator cases that ship with the
`onnx` package. Excluded: the 'real' model cases (they download models from the internet).
Every case expected to fail is listed, with the reason, in conformance_expected_failures.txt
next to this file; they are marked xfail (an unexpected pass fails the run, so the list is
reported). An expected failure that starts passing shows as XPASS in the summary (non-strict, so
an operator landing does not break CI before the list is updated). Nothing is skipped silently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
import onnx.backend.test  # noqa: E402
from onnx.backend.test.loader import load_model_tests  # noqa: E402

from pyml_interop.backend import PymlBackend  # noqa: E402

EXPECTED = Path(__file__).with_name("conformance_expected_failures.txt")


def _expected_failures() -> dict[str, str]:
    """test name -> reason (the `# --- reason` header of its group)."""
    names: dict[str, str] = {}
    reason = ""
    for line in EXPECTED.read_text().splitlines():
        if line.startswith("# ---"):
            reason = line[5:].strip()
        line = line.split("#", 1)[0].strip()
        if line:
            names[line] = reason
    return names


warnings.simplefilter("ignore")
backend_test = onnx.backend.test.BackendTest(PymlBackend, __name__)
backend_test.exclude(r"_cuda$")  # CPU-only engine: the CUDA variants are not collected
for case in load_model_tests(kind="real"):
    backend_test.exclude(f"^{case.name}_")
EXPECTED_FAILURES = _expected_failures()
for case_class in backend_test.test_cases.values():
    for attr in dir(case_class):
        if attr.endswith("_cpu") and attr[: -len("_cpu")] in EXPECTED_FAILURES:
            method = getattr(case_class, attr)
            mark = pytest.mark.xfail(reason=EXPECTED_FAILURES[attr[: -len("_cpu")]], strict=False)
            setattr(case_class, attr, mark(method))

globals().update(backend_test.test_cases)
