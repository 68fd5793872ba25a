"""What one InferenceSession runs with: frozen, owned by the session, handed to the kernels
that need it (never a module-global switch, so sessions with different settings can run at
the same time in different threads).

``native``: the C kernels (runtime/csrc) where they apply; False runs every kernel's NumPy
implementation (tests compare both). ``threads``: how many threads the C kernels share a
node's work among.

Not per session: the SIMD level caps and path switches of the C library (native.ssimd,
native.qsimd, native.sconv_mode, the block sizes), which tests and benchmarks use to reach
every code path; they are process-wide and meant for that alone.
"""

from __future__ import annotations

from dataclasses import dataclass

try:  # the same test as kernels/native.py's AVAILABLE, without importing the kernels
    from optc.runtime import _ckernels  # noqa: F401
    _BUILT = True
except ImportError:  # pragma: no cover - depends on the install
    _BUILT = False


@dataclass(frozen=True)
class RuntimeConfig:
    native: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        if self.native and not _BUILT:  # no extension built: NumPy it is
            object.__setattr__(self, "native", False)
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        object.__setattr__(self, "threads", int(self.threads))


#: what a kernel called outside a session runs with
DEFAULT = RuntimeConfig()
