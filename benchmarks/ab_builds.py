"""Two or more builds of optc's C extension (runtime/_ckernels*.so files) compared in one
process, interleaved with onnxruntime: the way to tell a kernel change from this machine's
noise (runs minutes apart swing 15-20 %; rounds interleaved within one process do not).

Each build is loaded as its own module object and swapped into optc.runtime.kernels.native
between runs of the same session (packed weights are shared: they do not depend on the
build). Prints per model the median optc/onnxruntime ratio of each build.

    cp runtime/_ckernels*.so /tmp/before.so   # then change the C code, pip install -e .
    python benchmarks/ab_builds.py /tmp/before.so runtime/_ckernels*.so \\
        [--models resnet50 densenet121] [--rounds 10] [--passes TEXT] [--int8 [--reduce-range]]
        [--precision fp32|bf16]

--int8 compares the int8 models instead (``default,quantize{probe=false}`` calibrated on seeded
random inputs, then ``qlinear,fuse-act{target=optc}``, as benchmarks/int8_runtime.py;
--reduce-range: 7-bit weights), against onnxruntime running the QDQ model.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import optc
from optc.runtime import InferenceSession
from optc.runtime.session import BF16_ALL, OPTIMIZATION_LEVELS
from optc.runtime.kernels import native

from _models import model_files  # benchmarks/, run as a script
from int8_runtime import _calibration

LIGHT = ("resnet50", "vgg19", "densenet121", "inception_v1")


def _load(path: str):
    """The extension at ``path`` as a module object of its own."""
    name = "optc.runtime._ckernels"  # its PyInit symbol's name
    loader = ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", help="paths of _ckernels .so files")
    parser.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--passes", default=None,
                        help="default: the session's 'all' pipeline at the precision")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="the optc session's (bf16: CPUs with AMX-BF16)")
    parser.add_argument("--int8", action="store_true", help="the int8 models (see above)")
    parser.add_argument("--reduce-range", action="store_true", help="with --int8: 7-bit weights")
    args = parser.parse_args()
    # copies: loading two files of the same path would return the first module again
    with tempfile.TemporaryDirectory() as d:
        builds = []
        for i, path in enumerate(args.builds):
            copy = Path(d) / f"build{i}" / Path(path).name
            copy.parent.mkdir()
            copy.write_bytes(Path(path).read_bytes())
            builds.append(_load(str(copy)))
        previous = native._ckernels
        try:
            paths = model_files(LIGHT, args.models, d, opset=17 if args.int8 else None)
            paths += [Path(m) for m in args.models or () if Path(m).is_file()]  # any .onnx
            for path in paths:
                if args.int8:
                    options = "probe=false" + (" reduce-range=true" if args.reduce_range else "")
                    qdq, _ = optc.optimize(str(path), passes=f"default,quantize{{{options}}}",
                                           calib=_calibration(path, 8))
                    optc.save(qdq, Path(d) / "qdq.onnx")
                    lowered, _ = optc.optimize(qdq, passes="qlinear,fuse-act{target=optc}")
                else:
                    lowered, _ = optc.optimize(str(path), passes=args.passes or (
                        BF16_ALL if args.precision == "bf16" else OPTIMIZATION_LEVELS["all"]))
                optc.save(lowered, Path(d) / "lowered.onnx")
                # plans (one C call a stretch of steps) where every build has run_plan
                session = InferenceSession(str(Path(d) / "lowered.onnx"), threads=1,
                                           precision=args.precision,
                                           plans=all(hasattr(b, "run_plan") for b in builds))
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                reference = ort.InferenceSession(str(Path(d) / "qdq.onnx") if args.int8
                                                 else str(path), options)
                inp = onnx.load(str(path)).graph.input[0]
                shape = [d_.dim_value or 1 for d_ in inp.type.tensor_type.shape.dim]
                feeds = {inp.name: np.random.default_rng(0).standard_normal(shape)
                         .astype(np.float32)}
                times: list[list[float]] = [[] for _ in range(len(builds) + 1)]
                for r in range(args.rounds + 1):  # round 0 warms up
                    for i, build in enumerate(builds):
                        native._ckernels = build
                        start = time.perf_counter()
                        session.run(None, feeds)
                        if r:
                            times[i].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    reference.run(None, feeds)
                    if r:
                        times[-1].append(time.perf_counter() - start)
                ref = statistics.median(times[-1])
                ratios = "  ".join(f"build {i}: {statistics.median(t) / ref:.3f}x"
                                   for i, t in enumerate(times[:-1]))
                print(f"{path.stem}: {ratios}  (onnxruntime {ref * 1e3:.1f} ms)")
        finally:
            native._ckernels = previous


if __name__ == "__main__":
    main()
