"""dedup-initializers: initializers with bit-identical data are shared.

When it fires: two or more constant initializers (not graph inputs, not graph outputs) with the
same dtype, shape and bytes. Readers of the later ones read the first; the later ones are
removed. Comparison is on the raw bytes, so 0.0 and -0.0 (or two NaN payloads) stay apart.
Not handled: initializers inside subgraphs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.ir import Model, Value
from optc.pass_base import Pass, PassContext, PassResult, register


@register
@dataclass(frozen=True)
class DedupInitializers(Pass):
    """Share initializers that hold bit-identical data."""

    name: ClassVar[str] = "dedup-initializers"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        outputs = set(g.outputs)
        inputs = set(g.inputs)
        candidates: dict[tuple, list[Value]] = {}
        removed = saved = 0
        for v in list(g.initializers.values()):
            if v in inputs or v in outputs:
                continue
            arr = v.const_value
            if arr.dtype == object:  # strings: compare by value
                key = (v.dtype, arr.shape, tuple(arr.reshape(-1).tolist()))
            else:
                digest = hashlib.blake2b(np.ascontiguousarray(arr).view(np.uint8).reshape(-1),
                                         digest_size=16).digest()
                key = (v.dtype, arr.shape, digest)
            same = candidates.setdefault(key, [])
            keep = next((k for k in same if _bit_equal(k.const_value, arr)), None)
            if keep is None:
                same.append(v)
                continue
            v.replace_all_uses_with(keep)
            g.remove_initializer(v)
            removed += 1
            saved += v.nbytes
        return PassResult(model, removed > 0, {"removed": removed, "bytes_saved": saved})


def _bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return bool(np.array_equal(a, b))
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                               np.ascontiguousarray(b).view(np.uint8)))
