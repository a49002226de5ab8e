"""Package surface: versions, the ABI check, the cdef preprocessing, the CLI, typing marker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyml_interop as pmi
from pyml_interop import _ffi
from pyml_interop.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def test_versions() -> None:
    assert pmi.__version__ == pmi.library_version()  # Python package and Rust crate move together
    assert pmi.abi_version() == (_ffi.lib.PMI_ABI_VERSION_MAJOR, _ffi.lib.PMI_ABI_VERSION_MINOR)


def test_public_api_is_complete() -> None:
    for name in pmi.__all__:
        assert hasattr(pmi, name), name
        obj = getattr(pmi, name)
        if callable(obj) and not isinstance(obj, type) or isinstance(obj, type):
            assert obj.__doc__, f"{name} has no docstring"
    assert (Path(pmi.__file__).parent / "py.typed").is_file()


def test_installed_package_is_tested(installed_only) -> None:
    # tests/run_all.sh installs with `pip install .` and must not test the source tree by mistake.
    package_dir = Path(pmi.__file__).resolve().parent
    assert package_dir != REPO / "pyml_interop", f"testing the source tree {package_dir}, not the installed package"
    assert (package_dir / "include" / "pyml_interop.h").is_file()


def test_abi_version_check() -> None:
    _ffi.check_abi_version((1 << 16) | 0, 1, 0)
    _ffi.check_abi_version((1 << 16) | 3, 1, 2)  # newer minor library serves an older header
    with pytest.raises(ImportError, match=r"ABI version 1\.1, but the header pyml_interop.h is version 1\.2"):
        _ffi.check_abi_version((1 << 16) | 1, 1, 2)
    with pytest.raises(ImportError, match=r"ABI version 2\.0, but the header pyml_interop.h is version 1\.0"):
        _ffi.check_abi_version(2 << 16, 1, 0)


def test_cdef_source_preprocessing() -> None:
    header = """
#ifndef GUARD_H
#define GUARD_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#define ANSWER 42
#define HEX 0x10
#define NOT_AN_INT foo
int f(void);
#ifndef SOMETHING
typedef struct S { int a; } S;
#endif
#ifdef __cplusplus
}
#endif
#endif
"""
    src = _ffi.cdef_source(header)
    assert "#define ANSWER 42" in src and "#define HEX 0x10" in src
    assert "NOT_AN_INT" not in src and "GUARD_H" not in src and "#include" not in src
    assert 'extern "C"' not in src and "}\n" not in src.replace("} S;", "")
    assert "int f(void);" in src and "typedef struct S" in src
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(src)  # accepted by cffi


def test_library_override_env_var_is_honoured(tmp_path: Path) -> None:
    env = dict(os.environ, PYML_INTEROP_LIB=str(tmp_path / "nope.so"))
    r = subprocess.run([sys.executable, "-c", "import pyml_interop"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "cannot load the C library" in r.stderr and "nope.so" in r.stderr


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert f"pyml_interop {pmi.__version__}" in out and "ABI 1." in out


def test_cli_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_python_dash_m(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pyml_interop", "version"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pyml_interop" in r.stdout


def test_ml_dtypes_is_imported_only_when_needed(tmp_path: Path) -> None:
    # ml_dtypes takes longer to import than the rest of the package: a float32 session must not
    # pull it in; asking for a bfloat16 dtype must.
    code = (
        "import sys, numpy as np, pyml_interop as pmi\n"
        "t = pmi.Tensor.from_numpy(np.ones((2, 3), np.float32)); a = t.numpy()\n"
        "print('before', 'ml_dtypes' in sys.modules)\n"
        "print('dtype', pmi.dtypes.to_numpy_dtype(pmi.DType.BFLOAT16), 'ml_dtypes' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "before False" in r.stdout and "dtype bfloat16 True" in r.stdout, r.stdout
