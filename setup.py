"""Build the Rust core (rust_core/) into the package as a plain shared library.

`pip install .` runs cargo in release mode through setuptools-rust and copies the cdylib to
`pyml_interop/_core<EXT_SUFFIX>` (e.g. `_core.cpython-311-x86_64-linux-gnu.so`): it is not a
Python extension module, `pyml_interop._ffi` opens it with cffi in ABI mode. The C header is
copied to `pyml_interop/include/pyml_interop.h` so the installed package can `cdef` it.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "include", "pyml_interop.h")
PACKAGE_HEADER = os.path.join("pyml_interop", "include", "pyml_interop.h")
MANIFEST = os.path.join(HERE, "rust_core", "Cargo.toml")


def crate_types() -> str:
    """The crate types of Cargo.toml, e.g. "cdylib,staticlib,rlib".

    setuptools-rust builds with `cargo rustc --crate-type cdylib` unless told otherwise; passing
    exactly the manifest's crate types makes its build the same cargo unit as `cargo build
    --release` and `cargo test --release`, so the library is compiled once, in rust_core/target.
    """
    try:
        import tomllib
    except ImportError:  # Python < 3.11: building only the cdylib is correct, just not shared.
        return "cdylib"
    with open(MANIFEST, "rb") as f:
        lib = tomllib.load(f).get("lib", {})
    return ",".join(lib.get("crate-type", ["cdylib"]))


class BuildPyWithHeader(build_py):
    """build_py that also ships include/pyml_interop.h inside the package."""

    def run(self) -> None:
        # Into the source tree (gitignored) for editable installs and sdists...
        os.makedirs(os.path.dirname(os.path.join(HERE, PACKAGE_HEADER)), exist_ok=True)
        shutil.copyfile(HEADER, os.path.join(HERE, PACKAGE_HEADER))
        super().run()
        # ...and into the build directory, whatever package data discovery saw.
        if not getattr(self, "editable_mode", False):
            target = os.path.join(self.build_lib, PACKAGE_HEADER)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(HEADER, target)


setup(
    rust_extensions=[
        RustExtension(
            "pyml_interop._core",
            path="rust_core/Cargo.toml",
            binding=Binding.NoBinding,
            py_limited_api=False,
            debug=False,  # release, also for `pip install -e .`
            args=["--crate-type", crate_types()],
        )
    ],
    cmdclass={"build_py": BuildPyWithHeader},
)
