"""Per-CPU tuning: what the CPU reports at run time, and per-layer choices timed on it.

The kernels' fixed rules (sgemm.c's tap-mode test, the winograd pass's cost model, the
depthwise path's width limit) were fitted on one CPU; on another the fastest choice for a
layer can differ (an Intel Xeon ran ResNet-50 at 1.37x onnxruntime where an AMD Zen 4 ran it
at 0.76x). So, as oneDNN's and TVM MetaSchedule's tuners do, the choice for a layer can be
*timed*: every candidate is built as a one-node model, run in an ``InferenceSession`` (its
prepare steps included, as in a real session) on seeded data of the layer's shape, and the
fastest kept. The results go to a JSON file per CPU, so a layer shape is timed once per
machine:

* ``cpu_info()``: model name, ISA flags optc uses, L1d/L2/L3 sizes (from
  /sys/devices/system/cpu, Linux; zeros elsewhere) and the SIMD levels of the C kernels.
* ``cpu_key()``: a short hash of all of that -- the tuning file's name, so a file is never
  read on a CPU it was not measured on.
* ``TuningCache``: ``$OPTC_TUNE_DIR`` (default ``~/.cache/optc/tune``) / ``<cpu_key>.json``,
  written atomically; ``choose(signature, candidates)`` returns the cached choice or times the
  candidates and records them (times included, for the curious).

Which choices are tuned, and how their candidates are built, is the passes' business (the
winograd pass's ``tile=tune``); this module knows nothing of convolutions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: the /proc/cpuinfo flags that decide which of optc's kernels can run
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: tuple[str, ...]
    l1d: int  # bytes, per core (0: unknown)
    l2: int
    l3: int
    simd_float: int  # native.ssimd(): 2 AVX-512F, 1 AVX2 + FMA, 0 portable, -1 no C kernels
    simd_int8: int   # native.qsimd()


def _cpuinfo_fields() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = set(value.split())
            break  # the first processor's lines are enough
    return model, flags


def _cache_sizes() -> dict[str, int]:
    """{"l1d", "l2", "l3"}: bytes per cache instance, from sysfs (0 where not reported)."""
    sizes = {"l1d": 0, "l2": 0, "l3": 0}
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(root.glob("index*")) if root.is_dir() else []:
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(size[-1:], 1)
        value = int(size.rstrip("KMG") or 0) * scale
        if level == 1 and kind in ("Data", "Unified"):
            sizes["l1d"] = value
        elif level in (2, 3):
            sizes[f"l{level}"] = value
    return sizes


def cpu_info() -> CpuInfo:
    from optc.runtime.kernels import native

    model, flags = _cpuinfo_fields()
    return CpuInfo(model=model, flags=tuple(f for f in ISA_FLAGS if f in flags),
                   **_cache_sizes(), simd_float=native.ssimd(), simd_int8=native.qsimd())


def cpu_key(info: CpuInfo | None = None) -> str:
    """12 hex digits naming this CPU's tuning file (the SIMD levels in it: a capped level,
    as tests set, is another machine as far as timings go)."""
    text = json.dumps(asdict(info or cpu_info()), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tune_dir() -> Path:
    return Path(os.environ.get("OPTC_TUNE_DIR") or Path.home() / ".cache" / "optc" / "tune")


def time_candidates(runs: dict[str, Callable[[], object]], rounds: int = 5,
                    budget_s: float = 0.5) -> dict[str, float]:
    """Median ms of each candidate's ``run``, the candidates taking turns each round (a slow
    spell of the machine hits them all); one warm-up round first, and fewer rounds (at least
    3) when the warm-up says ``rounds`` would take more than ``budget_s``."""
    start = time.perf_counter()
    for run in runs.values():
        run()
    warm = time.perf_counter() - start
    rounds = max(3, min(rounds, int(budget_s / max(warm, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


class TuningCache:
    """The timed choices of one CPU, in ``directory / <cpu_key>.json``."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.info = cpu_info()
        self.path = Path(directory or tune_dir()) / f"{cpu_key(self.info)}.json"
        self.choices: dict[str, dict] = {}
        self.timed = 0  # signatures timed (not found in the file) by this object
        self._warned = False
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and isinstance(data.get("choices"), dict):
                self.choices = data["choices"]
        except (OSError, ValueError):
            pass  # no file yet, or an unreadable one: it is rewritten on the next choice

    def choose(self, signature: str, runs: Callable[[], dict[str, Callable[[], object]]]) -> str:
        """The cached choice for ``signature``, or the fastest of ``runs()`` (candidate name ->
        a callable running it once), timed now and saved."""
        entry = self.choices.get(signature)
        if entry is not None and isinstance(entry.get("choice"), str):
            return entry["choice"]
        times = time_candidates(runs())
        choice = min(times, key=times.get)
        self.choices[signature] = {"choice": choice,
                                   "ms": {k: round(v, 4) for k, v in times.items()}}
        self.timed += 1
        try:
            self._save()
        except OSError as e:  # the choice still holds for this model; later runs time again
            if not self._warned:
                warnings.warn(f"optc: cannot write the tuning file {self.path} ({e.strerror or e}"
                              f"); tuning choices are not kept", RuntimeWarning, stacklevel=2)
                self._warned = True
        return choice

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"cpu": asdict(self.info), "choices": self.choices}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tune-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def seeded(shape, seed: int = 0) -> np.ndarray:
    """float32 standard-normal data of ``shape`` for timing a candidate."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def one_node_model(op: str, domain: str, attributes, inputs: list[str],
                   shapes: dict[str, list[int]], constants: dict[str, np.ndarray]):
    """A candidate as a model of one node: ``op`` of ``domain`` with ``attributes``
    (AttributeProtos) reading ``inputs`` by name ("" for an omitted optional one), those in
    ``shapes`` float32 graph inputs of those shapes, those in ``constants`` initializers; its
    output "y"."""
    import onnx
    from onnx import helper, numpy_helper

    from optc.runtime.registry import OPTC_DOMAIN

    node = helper.make_node(op, inputs, ["y"], domain=domain)
    node.attribute.extend(attributes)
    graph = helper.make_graph(
        [node], "tune",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s))
         for n, s in shapes.items()],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for n, a in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(OPTC_DOMAIN, 1)])


def session_runs(models: dict, shapes: dict[str, list[int]]) -> dict[str, Callable[[], object]]:
    """TuningCache.choose's candidates: each model (name -> ModelProto) in an
    InferenceSession as written (optimization "off"), run on seeded data of ``shapes`` (the
    same arrays for every candidate)."""
    from optc.runtime import InferenceSession

    feeds = {n: seeded(s, i) for i, (n, s) in enumerate(shapes.items())}
    sessions = {name: InferenceSession(m, optimization="off") for name, m in models.items()}
    return {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}
