"""Static int8 on the real-model corpus: optc's quantize next to onnxruntime's quantize_static.

    python benchmarks/wild_int8.py [--models a,b] [--optc-passes TEXT]

Both quantizers get the same calibration data (models/wild.py: CorpusModel.calibration) and
are checked on the same 8 in-distribution runs they did not see (wild.run_job's SQNR: signal
and noise of each output summed over the runs; the worst output is shown). onnxruntime's side
is what its documentation prescribes: ``quant_pre_process`` (shape inference + its
optimizer), then ``quantize_static`` (QDQ, per-channel, uint8 activations, int8 weights, the
MinMax calibrator). Printed per model: SQNR in dB, file size / float file size, and the
latency of each int8 model / the float model's in onnxruntime (1 thread, all optimizations,
best of 20 runs, measured in the same run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from wild import _ort, _outputs, _sqnr, corpus  # noqa: E402


def _sqnr_runs(source: bytes, model: bytes, tests) -> float:
    ref_sess, got_sess = _ort(source), _ort(model)
    refs = [_outputs(ref_sess, t) for t in tests]
    gots = [_outputs(got_sess, t) for t in tests]
    return min(_sqnr(np.concatenate([r[k].reshape(-1) for r in refs]),
                     np.concatenate([g[k].reshape(-1) for g in gots]))
               for k in range(len(refs[0])))


def _latency(model: bytes, feeds, runs: int = 20) -> float:
    sess = _ort(model, optimize=True)
    names = {i.name for i in sess.get_inputs()}
    f = {k: v for k, v in feeds.items() if k in names}
    sess.run(None, f)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, f)
        best = min(best, time.perf_counter() - t)
    return best


def _ort_int8(source: bytes, calib) -> bytes:
    """onnxruntime's static QDQ int8 of ``source`` on ``calib`` (one sample or run a feed),
    after its quant_pre_process, in a temporary working directory (the pre-processing writes
    files into the current one)."""
    import os

    feeds = calib if isinstance(calib, list) else [
        {k: v[i:i + 1] for k, v in calib.items()} for i in range(len(next(iter(calib.values()))))]
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            return _ort_int8_in(source, feeds, Path(d))
        finally:
            os.chdir(here)


def _ort_int8_in(source: bytes, feeds, d: Path) -> bytes:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    src, pre, out = d / "in.onnx", d / "pre.onnx", d / "out.onnx"
    src.write_bytes(source)
    try:
        quant_pre_process(str(src), str(pre))
    except Exception:  # noqa: BLE001 -- its optimizer refuses some models: quantize as is
        pre = src
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out.read_bytes()


def main() -> None:
    import optc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None)
    parser.add_argument("--optc-passes", default="default,quantize")
    args = parser.parse_args()
    table = Table(title="static int8: optc vs onnxruntime.quantization.quantize_static")
    for col in ("model", "optc SQNR", "ort SQNR", "optc size", "ort size", "optc latency",
                "ort latency", "note"):
        table.add_column(col)
    for m in corpus(args.models.split(",") if args.models else None):
        source = m.path.read_bytes()
        calib = m.calibration()
        tests = [m.feeds(m.sizes[0], seed=11 + i) for i in range(8)]
        row, note = [m.name], []
        results = {}
        for who in ("optc", "ort"):
            try:
                if who == "optc":
                    model, _ = optc.optimize(source, passes=args.optc_passes, calib=calib)
                    results[who] = optc.ir.serialize(model)
                else:
                    results[who] = _ort_int8(source, calib)
            except Exception as e:  # noqa: BLE001 -- the table reports every failure
                note.append(f"{who}: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
        base = _latency(source, tests[0])
        cells = {}
        for who, model in results.items():
            try:
                cells[who] = (f"{_sqnr_runs(source, model, tests):.1f}",
                              f"{len(model) / len(source):.2f}",
                              f"{_latency(model, tests[0]) / base:.2f}")
            except Exception as e:  # noqa: BLE001 -- e.g. onnxruntime rejects the output
                note.append(f"{who}'s model does not run: {str(e).splitlines()[0][:90]}")
        for i in range(3):
            for who in ("optc", "ort"):
                row.append(cells[who][i] if who in cells else "-")
        # columns: SQNR optc, SQNR ort, size optc, size ort, latency optc, latency ort
        table.add_row(*row, "; ".join(note))
        print(m.name, cells, note, file=sys.stderr, flush=True)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
