"""Builds optc.runtime's C kernels (runtime/csrc). Everything else is in pyproject.toml.

The extension is optional: where no C compiler is present the build prints a warning and
optc.runtime runs its NumPy kernels instead (optc.runtime.kernels.native says which)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "optc.runtime._ckernels", ["runtime/csrc/ckernels.c"],
    extra_compile_args=["-O3", "-std=c99"], optional=True)])
