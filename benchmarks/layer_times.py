"""Where a model's time goes in optc.runtime next to onnxruntime, grouped by layer shape: each
optc kernel call is timed in the session, onnxruntime's own per-node times come from its
profiler (enable_profiling), and both are summed per (input channels, input size) -> (output
channels, output size), so that a layer optc lowered (Winograd, a fused residual) is compared
with the one onnxruntime ran for it (NCHWc convs included). One thread each, batch 1, the two
runs interleaved; medians over the rounds after the warm-up.

    python benchmarks/layer_times.py [--model resnet50] [--passes TEXT] [--rounds 12] [--top 30]
                                     [--by-op]

--by-op groups by operator instead (optc's lowered and fused ops under their own names).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

import optc
from optc.runtime import InferenceSession

from _models import model_files  # benchmarks/, run as a script

WARMUP = 3


def _key(in_shape, out_shape):
    """(C, H) -> (C, H) of a 4-D (or NCHWc 5-D) layer; the shapes' tails otherwise."""
    def norm(s):
        s = list(s)
        if len(s) == 5:  # onnxruntime's NCHWc blocks: (N, C / b, H, W, b)
            s = [s[0], s[1] * s[4], s[2], s[3]]
        return tuple(s[1:3])
    return norm(in_shape), norm(out_shape)


def _timed_optc(path: str, by_op: bool) -> tuple[InferenceSession, dict]:
    """A session whose kernels record (key, seconds) per call (key: the layer shape, or the
    op type with by_op), their fast paths (registry: ``fast``) included."""
    session = InferenceSession(path, threads=1, plans=False)  # every step through Python
    calls: dict[str, list] = defaultdict(list)

    def record(label, op, args, out, start):
        y = out[0] if isinstance(out, tuple) else out
        key = op if by_op else _key(args[0].shape, y.shape)
        calls[label].append((key, time.perf_counter() - start))

    for step in session._steps:
        # the label ends "(OpType)", for ai.optc ops too (step.op_type is the standard ops')
        op = step.node_label.rsplit("(", 1)[-1].rstrip(")")

        def timed(*args, _fn=step.kernel.fn, _label=step.node_label, _op=op, **kwargs):
            start = time.perf_counter()
            out = _fn(*args, **kwargs)
            record(_label, _op, args, out, start)
            return out

        def timed_fast(args, attrs, _fast=step.kernel.fast, _label=step.node_label, _op=op):
            run = _fast(args, attrs) if _fast is not None else None
            if run is None:
                return None

            def timed_run(args):
                start = time.perf_counter()
                out = run(args)
                if out is not None:
                    record(_label, _op, args, out, start)
                return out
            return timed_run
        step.kernel = dataclasses.replace(step.kernel, fn=timed, fast=timed_fast)
    return session, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a light name, a models/ stem or an .onnx path")
    parser.add_argument("--passes", default="default,fuse-act{target=optc},winograd")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--by-op", action="store_true", help="group by operator type")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if Path(args.model).is_file():  # any .onnx (the wild corpus's, a user's)
            path = Path(args.model)
        else:
            [path] = model_files(("resnet50", "vgg19", "densenet121", "inception_v1"),
                                 [args.model], d)
        lowered, _ = optc.optimize(str(path), passes=args.passes)
        optc.save(lowered, Path(d) / "lowered.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(d) / "ort")
        ort_s = ort.InferenceSession(str(path), options)
        optc_s, calls = _timed_optc(str(Path(d) / "lowered.onnx"), args.by_op)
        inp = ort_s.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(
            [d_ if isinstance(d_, int) else 1 for d_ in inp.shape]).astype(np.float32)
        for _ in range(args.rounds):
            ort_s.run(None, {inp.name: x})
            optc_s.run(None, {inp.name: x})
        events = json.load(open(ort_s.end_profiling()))
    ours: dict = defaultdict(float)
    for per_call in calls.values():
        key = per_call[0][0]
        ours[key] += statistics.median(t for _, t in per_call[WARMUP:]) * 1e3
    theirs_calls: dict = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            a = e["args"]
            shapes = [list(s.values())[0] for s in (a["input_type_shape"][0],
                                                    a["output_type_shape"][0])]
            key = a["op_name"] if args.by_op else _key(*shapes)
            theirs_calls[(e["name"], key)].append(e["dur"] / 1e3)
    theirs: dict = defaultdict(float)
    for (_, key), durations in theirs_calls.items():
        theirs[key] += statistics.median(durations[WARMUP:] or durations)
    print(f"{args.model} ({args.passes}): optc {sum(ours.values()):.1f} ms, onnxruntime "
          f"{sum(theirs.values()):.1f} ms (sums of per-layer medians)")
    head = "op" if args.by_op else "(C, H) in -> (C, H) out"
    print(f"{head:32s} {'optc ms':>9s} {'ort ms':>9s} {'ratio':>7s}")
    for key in sorted(set(ours) | set(theirs), key=lambda k: -ours.get(k, 0.0))[:args.top]:
        o, t = ours.get(key, 0.0), theirs.get(key, 0.0)
        ratio = f"{o / t:6.2f}x" if t > 0.005 else "      -"
        name = key if args.by_op else f"{key[0]} -> {key[1]}"
        print(f"{name:32s} {o:9.2f} {t:9.2f} {ratio}")


if __name__ == "__main__":
    main()
