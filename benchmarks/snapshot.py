"""Fingerprints of what optc writes and computes, to show that a refactoring changed nothing.

    python benchmarks/snapshot.py take OUT.json [--optc PATH/TO/optc] [--filter TEXT]
    python benchmarks/snapshot.py diff OLD.json NEW.json

`take` runs `optc optimize` (the given executable, so an older checkout installed in another
venv can take the baseline) over models/*.onnx and nine light-zoo models (at opset 13, random
weights) with ten pipelines -- default, --target optc, winograd, two prune variants, quantize
static / kl + min-sqnr / + qlinear / dynamic / weight-only, probe off (its timing would make
runs differ) -- and records a sha256 of each output model and of its outputs in optc.runtime
(one thread) on seeded inputs. `diff` lists the cases whose fingerprints differ. The light
models get five of the pipelines (the others are slow at 224x224 and add no coverage).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
LIGHT = ["alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
         "squeezenet", "vgg19", "zfnet512"]
Q = "probe=false"
PIPELINES = {
    "default": ("default", []),
    "target-optc": ("default", ["--target", "optc"]),
    "winograd": ("default,winograd", ["--target", "optc"]),
    "prune": ("default,prune{ratio=0.3}", []),
    "prune-l2-steps": ("default,prune{ratio=0.5 criterion=l2 steps=2 scope=global}", []),
    "q-static": (f"default,quantize{{{Q}}}", ["CALIB"]),
    "q-kl-minsqnr": (f"default,quantize{{{Q} method=kl min-sqnr=30}}", ["CALIB"]),
    "q-qlinear": (f"default,quantize{{{Q}}},qlinear", ["CALIB", "--target", "optc"]),
    "q-dynamic": ("default,quantize{mode=dynamic}", []),
    "q-weight-only": ("default,quantize{mode=weight-only}", []),
}
LIGHT_PIPELINES = {"default", "target-optc", "prune", "q-static", "q-qlinear"}


def _inputs(folder: Path) -> list[Path]:
    """The models and their calibration data (4 seeded samples) written into ``folder``."""
    from optc.testing import light_at_opset

    models = {p.stem: onnx.load(p) for p in sorted((ROOT / "models").glob("*.onnx"))}
    models.update({f"light_{n}": light_at_opset(n, 13) for n in LIGHT})
    paths = []
    for name, m in models.items():
        path = folder / f"{name}.onnx"
        onnx.save(m, path)
        inits = {i.name for i in m.graph.initializer}
        rng = np.random.default_rng(0)
        feeds = {}
        for i in m.graph.input:
            if i.name in inits:
                continue
            shape = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
            feeds[i.name] = rng.standard_normal([4] + shape[1:]).astype(np.float32)
        np.savez(path.with_suffix(".npz"), **feeds)
        paths.append(path)
    return paths


def _fingerprint(path: Path) -> str:
    from optc.runtime import InferenceSession

    m = onnx.load(path)
    for kv in m.metadata_props:  # the pipeline text names every option, new ones included
        kv.value = kv.value.replace(" plan=}", "}")
    model = hashlib.sha256(m.SerializeToString()).hexdigest()[:16]
    feeds = dict(np.load(path.parent / "feeds.npz"))
    try:
        outs = InferenceSession(str(path), threads=1).run(None, feeds)
        data = hashlib.sha256(b"".join(np.ascontiguousarray(x).tobytes() for x in outs))
        return f"{model} {data.hexdigest()[:16]}"
    except Exception as e:  # noqa: BLE001 -- a fingerprint of the failure is a fingerprint too
        return f"{model} run-error {type(e).__name__}: {str(e)[:80]}"


def take(out: Path, optc: str, filt: str) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in _inputs(Path(tmp)):
            data = path.with_suffix(".npz")
            for pipe, (passes, extra) in PIPELINES.items():
                key = f"{path.stem}/{pipe}"
                if path.stem.startswith("light_") and pipe not in LIGHT_PIPELINES or filt not in key:
                    continue
                args = [a for e in extra for a in (["--calib", str(data)] if e == "CALIB" else [e])]
                work = Path(tmp) / "run"
                work.mkdir()
                o = work / "out.onnx"
                np.savez(work / "feeds.npz", **{k: v[:1] for k, v in np.load(data).items()})
                r = subprocess.run([optc, "optimize", str(path), "-o", str(o), "--passes", passes,
                                    *args], capture_output=True, text=True)
                results[key] = (_fingerprint(o) if r.returncode == 0 else
                                "error " + (r.stderr.strip().splitlines() or ["?"])[-1])
                shutil.rmtree(work)
                print(key, results[key], flush=True)
    out.write_text(json.dumps(results, indent=1))


def diff(old: Path, new: Path) -> int:
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    keys = sorted(set(a) & set(b))
    bad = [k for k in keys if a[k] != b[k]]
    for k in bad:
        print(f"DIFF {k}: {a[k]} | {b[k]}")
    print(f"{len(keys)} cases compared, {len(bad)} differ"
          + (f"; only in one: {sorted(set(a) ^ set(b))}" if set(a) ^ set(b) else ""))
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("take")
    t.add_argument("out", type=Path)
    t.add_argument("--optc", default=shutil.which("optc") or "optc")
    t.add_argument("--filter", default="")
    d = sub.add_parser("diff")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.cmd == "take":
        take(args.out, args.optc, args.filter)
        return 0
    return diff(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
