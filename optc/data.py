"""DATA readers (DESIGN.md formats).

DATA is a ``.npz`` whose keys are the model's input names (leading axis = samples), or a folder
of ``.npy`` files named after the inputs (``<input>.npy``) and/or ``.npz`` files whose keys are
input names (their samples are concatenated in file-name order), or a folder of images
(.png/.jpg/.jpeg/.bmp) with a ``preprocess.json`` stating how they become the model input:

    {"size": [H, W], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "scale": 255, "layout": "NCHW", "mode": "RGB", "input": "name"}

(``size`` required; pixel values are divided by ``scale`` (default 255), then (x - mean) / std
per channel (defaults 0 and 1); ``layout`` NCHW (default) or NHWC; ``mode`` RGB (default) or L
for grey; ``input`` names the model input, needed only when the model has several). Images in
sub-folders are labelled by sub-folder (class folders, sorted: the first is label 0), as
torchvision's ImageFolder. The key ``labels``, where present, is kept apart.

Calibration DATA may also be a folder of per-run feeds, for models whose inputs are not all
batched (a recurrent state ``[2, batch, 128]``, a scalar sample rate): files named
``*.feed.npz``, each holding one run's inputs at exactly the shapes the model takes (no
sample axis added), run in file-name order (``read_calibration``; ``optc.optimize`` also
takes the same as a list of dicts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from optc.errors import OptcError

LABELS = "labels"


def read_data(path: str | Path, input_names: Sequence[str], labels_key: str = LABELS
              ) -> dict[str, np.ndarray]:
    """Read DATA and check it against ``input_names``; returns name -> array (and ``labels``,
    read from the key ``labels_key``)."""
    path = Path(path)
    if not path.exists():
        raise OptcError(f"{path}: no such file or folder")
    arrays: dict[str, list[np.ndarray]] = {}
    if path.is_dir() and (path / PREPROCESS).exists():
        arrays = {k: [v] for k, v in _read_images(path, input_names).items()}
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
        if not files:
            if any(p.suffix.lower() in _IMAGES for p in path.rglob("*")):
                raise OptcError(f"{path}: a folder of images needs a {PREPROCESS} saying how "
                                f"they become the model input, e.g. "
                                f'{{"size": [224, 224], "mean": [0.485, 0.456, 0.406], '
                                f'"std": [0.229, 0.224, 0.225]}}')
            raise OptcError(f"{path}: folder has no .npy or .npz files")
        for f in files:
            for k, v in _read_file(f).items():
                arrays.setdefault(k, []).append(v)
    else:
        for k, v in _read_file(path).items():
            arrays[k] = [v]
    data = {k: (v[0] if len(v) == 1 else np.concatenate(v)) for k, v in arrays.items()}
    if labels_key != LABELS and labels_key in data:
        data[LABELS] = data.pop(labels_key)
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
                        + ", ".join(f"{k}={c}" for k, c in counts.items())
                        + f" (for inputs that are not all batched, give a folder of per-run "
                          f"feeds: one *{FEED_SUFFIX} per run, at the model's input shapes)")
    return data


FEED_SUFFIX = ".feed.npz"


def read_calibration(path: str | Path, model) -> dict[str, np.ndarray] | list[dict]:
    """Calibration DATA for ``model`` (an optc Model): samples (``read_data``, checked by
    ``check_samples``) or, from a folder of ``*.feed.npz``, a list of per-run feeds, each
    checked against the model's inputs (dtype, rank, static dims)."""
    g = model.graph
    names = [v.name for v in g.inputs if not g.is_initializer(v)]
    path = Path(path)
    feeds = sorted(path.glob("*" + FEED_SUFFIX)) if path.is_dir() else []
    if not feeds:
        data = read_data(path, names)
        check_samples(model, data, str(path))
        return data
    others = [p.name for p in path.iterdir()
              if p.suffix in (".npy", ".npz") and not p.name.endswith(FEED_SUFFIX)]
    if others:
        raise OptcError(f"{path}: mixes per-run feeds (*{FEED_SUFFIX}) with sample files "
                        f"({', '.join(sorted(others)[:3])})")
    runs = []
    for f in feeds:
        run = _read_file(f)
        missing = [n for n in names if n not in run]
        extra = [k for k in run if k not in names]
        if missing or extra:
            raise OptcError(f"{f}: " + (f"no value for model input(s) {', '.join(missing)}"
                                        if missing else
                                        f"key(s) {', '.join(extra)} match no model input")
                            + f" (inputs: {', '.join(names)})")
        check_feed(model, run, str(f))
        runs.append(run)
    return runs


def check_feed(model, feeds: dict[str, np.ndarray], where: str) -> None:
    """One run's inputs against ``model``'s inputs: dtype, rank, static dims, finite."""
    from onnx import helper

    g = model.graph
    for v in g.inputs:
        if g.is_initializer(v) or v.name not in feeds:
            continue
        arr = np.asarray(feeds[v.name])
        if v.dtype:
            want = helper.tensor_dtype_to_np_dtype(v.dtype)
            if arr.dtype != want:
                raise OptcError(f"{where}: input '{v.name}' is {arr.dtype}, the model takes "
                                f"{want}")
        if v.shape is not None and (arr.ndim != len(v.shape) or any(
                isinstance(d, int) and d > 0 and d != n for d, n in zip(v.shape, arr.shape))):
            dims = [d if isinstance(d, int) and d > 0 else "?" for d in v.shape]
            raise OptcError(f"{where}: input '{v.name}' has shape {list(arr.shape)}, the "
                            f"model takes {dims}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise OptcError(f"{where}: input '{v.name}' holds NaN or Inf")


PREPROCESS = "preprocess.json"
_IMAGES = (".png", ".jpg", ".jpeg", ".bmp")
_PREPROCESS_KEYS = {"size", "mean", "std", "scale", "layout", "mode", "input"}


def _read_images(folder: Path, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """An image folder with its preprocess.json -> {input: samples[, labels]}."""
    import json

    from PIL import Image

    where = folder / PREPROCESS
    try:
        spec = json.loads(where.read_text())
    except (OSError, ValueError) as e:
        raise OptcError(f"{where}: not readable JSON ({e})") from None
    if not isinstance(spec, dict) or "size" not in spec:
        raise OptcError(f'{where}: needs at least "size": [H, W]')
    unknown = set(spec) - _PREPROCESS_KEYS
    if unknown:
        raise OptcError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: "
                        f"{', '.join(sorted(_PREPROCESS_KEYS))})")
    name = spec.get("input")
    if name is None:
        if len(input_names) != 1:
            raise OptcError(f'{where}: the model has inputs {", ".join(input_names)}: say which '
                            f'one the images are with "input"')
        name = input_names[0]
    mode, layout = spec.get("mode", "RGB"), spec.get("layout", "NCHW")
    if mode not in ("RGB", "L") or layout not in ("NCHW", "NHWC"):
        raise OptcError(f'{where}: "mode" is RGB or L, "layout" NCHW or NHWC')
    h, w = (int(v) for v in spec["size"])
    channels = 3 if mode == "RGB" else 1
    mean = np.asarray(spec.get("mean", 0.0), np.float32).reshape(-1)
    std = np.asarray(spec.get("std", 1.0), np.float32).reshape(-1)
    if mean.size not in (1, channels) or std.size not in (1, channels) or np.any(std == 0):
        raise OptcError(f"{where}: mean and std need 1 or {channels} values (std non-zero)")
    top = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGES)
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if top and classes:
        raise OptcError(f"{folder}: images both at the top and in class folders")
    files = top or [(f, i) for i, c in enumerate(classes)
                    for f in sorted(c.iterdir()) if f.suffix.lower() in _IMAGES]
    if not files:
        raise OptcError(f"{folder}: no images (.png, .jpg, .jpeg, .bmp)")
    samples, labels = [], []
    for item in files:
        f, label = item if isinstance(item, tuple) else (item, None)
        try:
            with Image.open(f) as im:
                img = np.asarray(im.convert(mode).resize((w, h), Image.BILINEAR), np.float32)
        except OSError as e:
            raise OptcError(f"{f}: cannot read it as an image ({e})") from None
        img = img.reshape(h, w, channels) / float(spec.get("scale", 255.0))
        img = (img - mean) / std
        samples.append(img.transpose(2, 0, 1) if layout == "NCHW" else img)
        if label is not None:
            labels.append(label)
    out = {name: np.stack(samples).astype(np.float32)}
    if labels:
        out[LABELS] = np.asarray(labels, np.int64)
    return out


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


def check_samples(model, data: dict[str, np.ndarray], where: str) -> None:
    """DATA against ``model``'s inputs (an optc Model): each input's dtype, rank and static
    dims (the leading sample axis is the batch), finite values; integer labels, one per
    sample. One clear OptcError naming ``where`` otherwise."""
    from onnx import helper

    g = model.graph
    for v in g.inputs:
        if g.is_initializer(v) or v.name not in data:
            continue
        arr = data[v.name]
        if v.dtype:
            want = helper.tensor_dtype_to_np_dtype(v.dtype)
            if arr.dtype != want:
                raise OptcError(f"{where}: input '{v.name}' is {arr.dtype}, the model takes "
                                f"{want}")
        if v.shape is not None:
            dims = ["?" if not isinstance(d, int) or d <= 0 else d for d in v.shape]
            bad = arr.ndim != len(v.shape) or any(
                isinstance(d, int) and d > 0 and d != n
                for d, n in zip(v.shape[1:], arr.shape[1:]))
            if bad:
                raise OptcError(f"{where}: input '{v.name}' has samples of shape "
                                f"{list(arr.shape)}, the model takes {dims}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise OptcError(f"{where}: input '{v.name}' holds NaN or Inf")
    if LABELS in data:
        labels = data[LABELS]
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise OptcError(f"{where}: '{LABELS}' must be a 1-d array of class indices, got "
                            f"{labels.dtype} of shape {list(labels.shape)}")
