"""The ONNX operator conformance suite (onnx.backend.test.BackendTest) against pyml_interop,
through the Python package and the C ABI.

Collected: the node, simple, pytorch-converted and pytorch-operator cases that ship with the
`onnx` package. Excluded: the 'real' model cases (they download models from the internet).
Every case expected to fail is listed, with the reason, in conformance_expected_failures.txt
next to this file; they are marked xfail (an unexpected pass fails the run, so the list is
kept honest). Nothing is skipped silently.
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


def _expected_failures() -> list[str]:
    names = []
    for line in EXPECTED.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


warnings.simplefilter("ignore")
backend_test = onnx.backend.test.BackendTest(PymlBackend, __name__)
for case in load_model_tests(kind="real"):
    backend_test.exclude(f"^{case.name}_")
for name in _expected_failures():
    backend_test.xfail(f"^{name}_cpu$")

globals().update(backend_test.test_cases)
