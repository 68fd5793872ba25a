"""What one InferenceSession runs with: frozen, owned by the session, handed to the kernels
that need it (never a module-global switch, so sessions with different settings can run at
the same time in different threads).

``native``: the C kernels (runtime/csrc) where they apply; False runs every kernel's NumPy
implementation (tests compare both). ``threads``: how many threads the C kernels share a
node's work among. ``precision``: "fp32", or "bf16": the 2-D convs with constant float32
weights (not depthwise) and the MatMul/Gemm nodes with a constant 2-D weight multiply in
bfloat16 on AMX-BF16 / AVX512-BF16 and sum in float32 (bf16.c); everything else stays
float32.

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


#: the session precisions: float32 throughout, or bf16 products in the convs
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class RuntimeConfig:
    native: bool = True
    threads: int = 1
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got '{self.precision}'")
        if self.native and not _BUILT:  # no extension built: NumPy it is
            object.__setattr__(self, "native", False)
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        object.__setattr__(self, "threads", int(self.threads))


#: what a kernel called outside a session runs with
DEFAULT = RuntimeConfig()
