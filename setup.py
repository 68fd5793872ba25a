"""Builds optc.runtime's C kernels (runtime/csrc). Everything else is in pyproject.toml.

The extension is optional: where no C compiler is present the build prints a warning and
optc.runtime runs its NumPy kernels instead (optc.runtime.kernels.native says which).
-fno-wrapv undoes the -fwrapv that Python's own flags add: with wrapping signed ints GCC
cannot vectorise loops that index with `i + offset`, and the kernels never rely on wrapping.
-fno-math-errno lets sqrtf vectorise (LRN); the kernels never read errno."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "optc.runtime._ckernels", ["runtime/csrc/ckernels.c", "runtime/csrc/qgemm.c",
                                "runtime/csrc/sgemm.c", "runtime/csrc/winograd.c",
                                "runtime/csrc/activate.c", "runtime/csrc/dwconv.c",
                                "runtime/csrc/bf16.c"],
    depends=["runtime/csrc/qgemm.h", "runtime/csrc/vact.h"],
    extra_compile_args=["-O3", "-std=c99", "-fno-wrapv", "-fno-math-errno", "-pthread"],
    extra_link_args=["-pthread"], libraries=["m"], optional=True)])
