"""DATA readers (DESIGN.md formats).

DATA is a ``.npz`` whose keys are the model's input names (leading axis = samples), or a folder
of ``.npy`` files named after the inputs (``<input>.npy``) and/or ``.npz`` files whose keys are
input names (their samples are concatenated in file-name order). The key ``labels``, where
present, is kept apart. Image folders arrive with the calibration issue.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from optc.errors import OptcError

LABELS = "labels"


def read_data(path: str | Path, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Read DATA and check it against ``input_names``; returns name -> array (and ``labels``)."""
    path = Path(path)
    if not path.exists():
        raise OptcError(f"{path}: no such file or folder")
    arrays: dict[str, list[np.ndarray]] = {}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
        if not files:
            raise OptcError(f"{path}: folder has no .npy or .npz files")
        for f in files:
            for k, v in _read_file(f).items():
                arrays.setdefault(k, []).append(v)
    else:
        for k, v in _read_file(path).items():
            arrays[k] = [v]
    data = {k: (v[0] if len(v) == 1 else np.concatenate(v)) for k, v in arrays.items()}
    missing = [n for n in input_names if n not in data]
    extra = [k for k in data if k not in input_names and k != LABELS]
    if missing:
        raise OptcError(f"{path}: no data for model input(s) {', '.join(missing)}"
                        + (f" (it has {', '.join(extra)})" if extra else ""))
    if extra:
        raise OptcError(f"{path}: key(s) {', '.join(extra)} match no model input "
                        f"(inputs: {', '.join(input_names)})")
    counts = {k: len(v) if v.ndim else 0 for k, v in data.items()}
    if len(set(counts.values())) > 1:
        raise OptcError(f"{path}: inputs have different sample counts: "
                        + ", ".join(f"{k}={c}" for k, c in counts.items()))
    return data


def _read_file(f: Path) -> dict[str, np.ndarray]:
    try:
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if f.suffix == ".npy":
            return {f.stem: np.load(f, allow_pickle=False)}
    except (OSError, ValueError, EOFError) as e:
        raise OptcError(f"{f}: cannot read it as NumPy data ({' '.join(str(e).split())})") from e
    raise OptcError(f"{f}: DATA must be .npz, .npy or a folder of them")


def batches(data: dict[str, np.ndarray], batch_sizes: dict[str, int | None]
            ) -> Iterator[dict[str, np.ndarray]]:
    """Split DATA into feeds; an input with a static leading dim k is fed k samples at a time,
    otherwise all samples go in one feed."""
    names = [k for k in data if k != LABELS]
    n = len(data[names[0]]) if names else 0
    step = next((b for b in (batch_sizes.get(k) for k in names) if b), None) or n
    for start in range(0, n, step):
        yield {k: data[k][start:start + step] for k in names}
