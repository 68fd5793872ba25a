"""The ``optc`` command line (click).

Every command turns bad input into one line on stderr (``optc: error: ...``) and a non-zero
exit; ``--debug`` shows the traceback instead. Outputs are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from optc.errors import OptcError

_stdout = Console(highlight=False, soft_wrap=True)
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class _Group(click.Group):
    """Turns exceptions into one-line errors unless --debug."""

    def invoke(self, ctx: click.Context):
        import warnings

        from optc.errors import OptcWarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, OptcWarning):
                click.echo(f"optc: warning: {message}", err=True)
            else:
                _show_other(message, category, *args, **kwargs)

        _show_other = warnings.showwarning
        warnings.showwarning = show
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OptcError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"optc: error: {e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("optc: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"optc: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
                       f"(run with --debug for the traceback)", err=True)
            ctx.exit(2)
        finally:
            warnings.showwarning = _show_other


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="optc")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """optc: ONNX graph compiler and model optimizer."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _report_md(model: Path, output: Path, report, results, sections: list[str]) -> str:
    lines = [f"# optc optimize {model.name}", "", f"- input: `{model}`", f"- output: `{output}`",
             f"- pipeline: `{report.pipeline}`",
             f"- nodes: {report.nodes_before} -> {report.nodes_after}", "",
             "| pass | ms | modified | nodes after | stats |", "|---|---|---|---|---|"]
    for r in report.records:
        stats = ", ".join(f"{k}={v}" for k, v in r.stats.items())
        lines.append(f"| {r.name} | {r.seconds * 1e3:.1f} | {'yes' if r.modified else 'no'} | "
                     f"{r.nodes_after} | {stats} |")
    if results is not None:
        lines += ["", "Validation against the input in onnxruntime:", ""]
        lines += [f"- {r.as_dict()}" for r in results]
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


# --------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the optimized model (written atomically).")
@click.option("--passes", "pipeline_text", default="default", show_default=True,
              help="Pipeline text, e.g. 'cleanup,fold-constants{size-limit-mb=64}'.")
@click.option("--validate", is_flag=True,
              help="Compare input and output in onnxruntime; fail (and write nothing) if a "
                   "lossless pipeline changed the outputs beyond tolerance.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write report.json (per-pass stats, node counts, validation) and report.md "
                   "(with each pass's own section, e.g. quantize's per-layer table and "
                   "histogram plots) into DIR.")
@click.option("--timing", is_flag=True, help="Print the time each pass took.")
@click.option("--print-ir-after", metavar="NAME|all",
              help="Print the IR after the named pass (or after every pass).")
@click.option("--seed", default=0, show_default=True, help="Seed of the --validate inputs.")
@click.option("--calib", "calib_path", type=click.Path(path_type=Path),
              help="Calibration DATA for quantize (.npz keyed by input name, a folder of "
                   ".npy/.npz, or a folder of images with a preprocess.json).")
@click.option("--target", type=click.Choice(["onnx", "ort", "optc"]), default=None,
              help="Runtime the output is for: sets fuse-act's target (onnx: standard ops; ort: "
                   "com.microsoft fused ops; optc: ai.optc fused ops for optc.runtime).")
@click.option("--engine", type=click.Choice(["auto", "optc", "ort"]), default="auto",
              show_default=True,
              help="Where passes run the model for calibration and pruning's sample run: "
                   "optc.runtime, onnxruntime, or auto (optc.runtime where it has every op).")
@click.option("--input-shape", multiple=True, metavar="NAME=D0,D1,...",
              help="Fix an input's dims (repeatable; NAME= may be left out for a one-input "
                   "model), as onnxsim's --overwrite-input-shape; the output then takes only "
                   "that size.")
def optimize(model: Path, output: Path, pipeline_text: str, validate: bool,
             report_dir: Path | None, timing: bool, print_ir_after: str | None, seed: int,
             calib_path: Path | None, target: str | None, engine: str,
             input_shape: tuple[str, ...]) -> None:
    """Run a pass pipeline over MODEL and write the result to OUTPUT."""
    from optc.ir import load, save
    from optc.passes import FuseActivation
    from optc.pipeline import Pipeline, run_pipeline

    pipeline = Pipeline.parse(pipeline_text)  # bad pipeline text fails before any work
    if target is not None:
        acts = [p for p in pipeline.passes if isinstance(p, FuseActivation)]
        if not acts:
            raise OptcError("--target sets fuse-act's target, but the pipeline does not run "
                            "fuse-act")
        pipeline = Pipeline([dataclasses.replace(p, target=target)
                             if isinstance(p, FuseActivation) else p for p in pipeline.passes])
    if not output.parent.exists():
        raise OptcError(f"{output}: directory '{output.parent}' does not exist")
    start = time.perf_counter()
    m = load(model)
    shapes = None
    if input_shape:
        from optc.ir.shapes import parse_input_shapes

        shapes = parse_input_shapes(input_shape, [v.name for v in m.graph.inputs
                                                  if not m.graph.is_initializer(v)])
    calib = None
    if calib_path is not None:
        from optc.data import read_calibration

        calib = read_calibration(calib_path, m)
    report = run_pipeline(m, pipeline, print_ir_after=print_ir_after,
                          printer=lambda text: click.echo(text), repro_source=model,
                          calib=calib, collect_report=report_dir is not None,
                          engine=engine, input_shapes=shapes)
    elapsed = time.perf_counter() - start
    results = None
    if validate:
        # ai.optc ops (fused, Winograd, FFT) run in optc.runtime only; the reference always
        # runs in onnxruntime
        from optc.runtime.registry import OPTC_DOMAIN

        runtime = "optc" if any(n.domain == OPTC_DOMAIN for n in m.graph.nodes) else "ort"
        results = _validate(model, m, pipeline.lossless, seed, runtime)
    save(m, output)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        doc = report.as_dict()
        doc.update(input=str(model), output=str(output), wall_seconds=elapsed)
        if results is not None:
            doc["validation"] = [r.as_dict() for r in results]
        _atomic_write_text(report_dir / "report.json", json.dumps(doc, indent=2) + "\n")
        sections = [text for p, r in zip(pipeline.passes, report.records)
                    if (text := p.report_markdown(r.artifacts, report_dir))]
        _atomic_write_text(report_dir / "report.md", _report_md(model, output, report, results,
                                                                 sections))
    if timing:
        t = Table(title="pass timing")
        for col in ("pass", "ms", "modified", "nodes after", "stats"):
            t.add_column(col, justify="right" if col in ("ms", "nodes after") else "left")
        for r in report.records:
            t.add_row(r.name, f"{r.seconds * 1e3:.1f}", "yes" if r.modified else "no",
                      str(r.nodes_after), ", ".join(f"{k}={v}" for k, v in r.stats.items()))
        _stderr.print(t)
    _stderr.print(f"{model} -> {output}: {report.nodes_before} -> {report.nodes_after} nodes, "
                  f"{len(report.records)} passes, {elapsed:.2f} s")


def _validate(source: Path, model, lossless: bool, seed: int, runtime: str = "ort"):
    from optc.ir import serde
    from optc.validate import compare_models

    with tempfile.TemporaryDirectory(prefix="optc-validate-") as d:
        candidate = Path(d) / "candidate.onnx"
        serde.save(model, candidate)
        results = compare_models(source, candidate, seed=seed, runtime=runtime)
    for r in results:
        _stderr.print(f"validate {r.name}: max abs err {r.max_abs:.3g}, max rel err "
                      f"{r.max_rel:.3g}, cosine {r.cosine:.8f}"
                      + (f", top-1 agreement {r.top1:.3f}" if r.top1 is not None else ""))
    bad = [r for r in results if not r.within_tolerance]
    if bad and lossless:
        raise OptcError(f"validation failed: output '{bad[0].name}' changed by "
                        f"{bad[0].max_rel:.3g} "
                        f"(relative to its scale) under a lossless pipeline; nothing written")
    return results


@main.command()
@click.option("--teacher", "teachers", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Teacher model; repeat for several (their soft targets are averaged).")
@click.option("--student", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model to fine-tune (pruned, quantized, ...).")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Training DATA (.npz, a folder of .npy/.npz, or images + preprocess.json).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the fine-tuned student (needed unless --epochs 0).")
@click.option("--labels", "labels_key", default="labels", show_default=True,
              help="The DATA key holding the class labels.")
@click.option("--temperature", default=4.0, show_default=True, help="Softmax temperature T.")
@click.option("--alpha", default=0.9, show_default=True,
              help="Weight of the soft-target term; 1 - alpha weighs the hard labels.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Adam's learning rate.")
@click.option("--weight-decay", default=0.0, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--hint", "hints", multiple=True, metavar="T_TENSOR:S_TENSOR",
              help="FitNets hint between a teacher and a student tensor (repeatable).")
@click.option("--hint-weight", default=1.0, show_default=True)
@click.option("--learn-scales", is_flag=True,
              help="Quantized students: train the QDQ scales too (LSQ).")
@click.option("--output-name", default=None, help="The logits output (default: the first).")
@click.option("--val", "val_path", type=click.Path(path_type=Path),
              help="Validation DATA: its metric picks the best epoch.")
@click.option("--taylor", "taylor_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write first-order Taylor channel importance of the student as "
                   "given (for prune{criterion=taylor scores=FILE}).")
def distill(teachers: tuple[Path, ...], student: Path, data_path: Path, output: Path | None,
            labels_key: str, temperature: float, alpha: float, epochs: int, lr: float,
            weight_decay: float, batch_size: int, seed: int, hints: tuple[str, ...],
            hint_weight: float, learn_scales: bool, output_name: str | None,
            val_path: Path | None, taylor_path: Path | None) -> None:
    """Fine-tune STUDENT against TEACHER(s) by knowledge distillation; write the weights back."""
    try:
        import optc.distill  # noqa: F401  (torch is an optional extra)
    except ImportError as e:
        raise OptcError("optc distill needs PyTorch: pip install 'optc[distill]'") from e
    from optc.data import check_samples, read_data
    from optc.distill.train import DistillConfig, check_compatible
    from optc.distill.train import distill as run_distill
    from optc.ir import load, save

    if output is None and epochs > 0:
        raise OptcError("-o/--output is required (or --epochs 0 with --taylor)")
    if output is None and taylor_path is None:
        raise OptcError("nothing to do: --epochs 0 without --taylor")
    for path in (output, taylor_path):
        if path is not None and not path.parent.exists():
            raise OptcError(f"{path}: directory '{path.parent}' does not exist")
    pairs = []
    for h in hints:
        t, sep, s = h.partition(":")
        if not sep or not t or not s:
            raise OptcError(f"--hint '{h}' is not T_TENSOR:S_TENSOR")
        pairs.append((t, s))
    config = DistillConfig(temperature=temperature, alpha=alpha, epochs=epochs, lr=lr,
                           weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                           hints=pairs, hint_weight=hint_weight, learn_scales=learn_scales,
                           output=output_name)
    config.check()
    s_model = load(student)
    t_models = [load(t) for t in teachers]
    for t_path, t in zip(teachers, t_models):
        check_compatible(t, s_model, f"teacher {t_path}")
    inputs = [v.name for v in s_model.graph.inputs if not s_model.graph.is_initializer(v)]
    data = read_data(data_path, inputs, labels_key)
    check_samples(s_model, data, str(data_path))
    val = None
    if val_path is not None:
        val = read_data(val_path, inputs, labels_key)
        check_samples(s_model, val, str(val_path))
    if taylor_path is not None:
        from optc.distill.taylor import scores_json, taylor_scores

        scores = taylor_scores(s_model, data, t_models, temperature=temperature,
                               batch_size=batch_size, output=output_name)
        _atomic_write_text(taylor_path, scores_json(scores))
        _stderr.print(f"wrote taylor channel importance of {len(scores)} layers to "
                      f"{taylor_path}")
    if epochs == 0:
        return
    result = run_distill(t_models, s_model, data, config, val=val,
                         progress=_stderr.is_terminal, log=lambda line: _stderr.print(line))
    from optc.distill.train import dist_env

    if dist_env()[0] != 0:
        return  # under torchrun only rank 0 writes
    save(result.model, output)
    per_epoch = sum(h.seconds for h in result.history) / max(len(result.history), 1)
    best = "the student as given" if result.best_epoch == 0 else f"epoch {result.best_epoch}"
    metric = ""
    if result.initial_metric is not None:
        chosen = result.initial_metric if result.best_epoch == 0 else \
            result.history[result.best_epoch - 1].metric
        metric = f"; {result.metric_name} {result.initial_metric:.4f} -> {chosen:.4f}"
    _stderr.print(f"{student} -> {output}: kept {best}{metric}; {per_epoch:.2f} s per epoch")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
@main.command("passes")
def list_passes() -> None:
    """List every pass, its options and presets."""
    from optc.pass_base import format_option, presets, registry

    t = Table(title="passes", show_lines=False)
    t.add_column("pass")
    t.add_column("what it does")
    t.add_column("options (default)")
    for name, cls in sorted(registry().items()):
        opts = "\n".join(f"{o.key}={format_option(o.default)}  {o.help}".rstrip()
                         for o in cls.options())
        t.add_row(name, cls.summary() + ("" if cls.lossless else " [lossy]"), opts or "-")
    _stdout.print(t)
    p = Table(title="presets")
    p.add_column("preset")
    p.add_column("expands to")
    for name, text in sorted(presets().items()):
        p.add_row(name, text)
    _stdout.print(p)


# --------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all-layers", is_flag=True, help="List every node, not only MAC-carrying ones.")
def inspect(model: Path, all_layers: bool) -> None:
    """Op counts, parameters and MACs per layer and in total."""
    from optc.ir import load
    from optc.report import model_stats

    m = load(model)
    stats = model_stats(m)
    layers = Table(title=f"{model.name}: layers")
    for col in ("#", "name", "op", "output shape", "params", "MACs"):
        layers.add_column(col, justify="right" if col in ("#", "params", "MACs") else "left")
    for i, layer in enumerate(stats.layers):
        if not all_layers and not layer.macs and layer.macs is not None and not layer.params:
            continue
        shape = "x".join("?" if d is None else str(d) for d in layer.output_shape) \
            if layer.output_shape is not None else "?"
        layers.add_row(str(i), layer.name or "-", layer.op_type, shape, f"{layer.params:,}",
                       "?" if layer.macs is None else f"{layer.macs:,}")
    _stdout.print(layers)
    ops = Table(title="op counts")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, c in stats.op_counts.most_common():
        ops.add_row(op, str(c))
    _stdout.print(ops)
    _stdout.print(f"nodes: {sum(stats.op_counts.values())}  params: {stats.params:,}  "
                  f"MACs: {stats.macs:,} ({stats.macs / 1e9:.3f} G)"
                  + (f"  layers with unknown shapes: {len(stats.unknown)}" if stats.unknown
                     else ""))


# --------------------------------------------------------------------------------------------
@main.command()
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help="DATA (.npz or folder of .npy/.npz) keyed by input name; default: seeded "
                   "random inputs.")
@click.option("--runtime", type=click.Choice(["ort", "optc"]), default="ort",
              show_default=True,
              help="Runtime that executes B; A, the reference, always runs in onnxruntime.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
def compare(a: Path, b: Path, data: Path | None, runtime: str, seed: int) -> None:
    """Run A (onnxruntime) and B (--runtime) on the same inputs; print max abs/rel error,
    cosine and top-1 agreement."""
    from optc.data import read_data
    from optc.ir import load
    from optc.validate import compare_models, ort_session

    for path in (a, b):
        load(path)  # one clear line for a missing / broken file before onnxruntime sees it
    feeds = None
    if data is not None:
        feeds = read_data(data, [i.name for i in ort_session(a).get_inputs()])
    results = compare_models(a, b, feeds, seed=seed, runtime=runtime)
    t = Table(title=f"{a.name} (ort) vs {b.name} ({runtime})")
    for col in ("output", "max abs err", "max rel err", "cosine", "top-1 agree"):
        t.add_column(col, justify="left" if col == "output" else "right")
    for r in results:
        t.add_row(r.name, f"{r.max_abs:.3g}", f"{r.max_rel:.3g}", f"{r.cosine:.8f}",
                  "-" if r.top1 is None else f"{r.top1:.3f}")
    _stdout.print(t)


# --------------------------------------------------------------------------------------------
@main.command("run")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "inputs", multiple=True, metavar="NAME=FILE.npy",
              help="An input tensor from a .npy file (repeat per input). Inputs not given get "
                   "seeded random values.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every output into this .npz (atomically).")
@click.option("--runtime", type=click.Choice(["ort", "optc"]), default="optc", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--threads", type=int, default=None, help="Threads (default: the runtime's).")
def run_model(model: Path, inputs: tuple[str, ...], output: Path | None, runtime: str,
              seed: int, threads: int | None) -> None:
    """Run MODEL once and print (or save) its outputs."""
    import numpy as np

    from optc.ir import load
    from optc.validate import random_feeds, session

    m = load(model)
    sess = session(m if runtime == "optc" else model, runtime, threads=threads)
    names = [i.name for i in sess.get_inputs()]
    feeds = {}
    for item in inputs:
        name, eq, file = item.partition("=")
        if not eq:
            raise OptcError(f"--input '{item}' is not NAME=FILE.npy")
        if name not in names:
            raise OptcError(f"--input '{name}': the model has no such input "
                            f"(inputs: {', '.join(names)})")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise OptcError(f"{file}: cannot read it as a .npy array ({e})") from e
    if len(feeds) < len(names):
        random = random_feeds(sess, seed)
        feeds.update({k: v for k, v in random.items() if k not in feeds})
    outputs = sess.run(None, feeds)
    out_names = [o.name for o in sess.get_outputs()]
    if output is not None:
        tmp = output.with_name(f".{output.name}.tmp.npz")
        np.savez(tmp, **dict(zip(out_names, outputs)))
        tmp.replace(output)
    t = Table(title=f"{model.name} ({runtime})")
    for col in ("output", "shape", "dtype", "min", "max", "mean"):
        t.add_column(col)
    for name, arr in zip(out_names, outputs):
        num = arr.dtype.kind in "biuf" and arr.size
        t.add_row(name, "x".join(map(str, arr.shape)), str(arr.dtype),
                  f"{arr.min():.4g}" if num else "-", f"{arr.max():.4g}" if num else "-",
                  f"{arr.astype(np.float64).mean():.4g}" if num else "-")
    _stdout.print(t)
    peak = getattr(sess, "peak_bytes", None)
    if peak is not None:
        _stdout.print(f"peak activation memory: {peak / 2**20:.2f} MiB "
                      f"(all activations: {sess.total_activation_bytes / 2**20:.2f} MiB)")


# --------------------------------------------------------------------------------------------
@main.command("bench")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--runtime", type=click.Choice(["ort", "optc"]), default="optc", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True,
              help="Threads for both runtimes.")
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--repeat", type=int, default=20, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True,
              help="Size of symbolic (batch) dims.")
@click.option("--passes", "pipeline_text", default=None,
              help="Optimize MODEL with this pipeline before optc runs it (e.g. "
                   "'default,fuse-act{target=optc},winograd'); onnxruntime runs MODEL as given.")
@click.option("--tune/--no-tune", default=True, show_default=True,
              help="Time optc's per-layer choices (Winograd or not) on this CPU first; the "
                   "choices are cached per CPU in ~/.cache/optc/tune ($OPTC_TUNE_DIR).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True,
              help="optc's precision: bf16 multiplies the convs in bfloat16 on CPUs with "
                   "AMX-BF16 and reports the error against onnxruntime's float32 outputs.")
def bench_model(model: Path, runtime: str, threads: int, warmup: int, repeat: int,
                batch: int, pipeline_text: str | None, tune: bool, precision: str) -> None:
    """Median latency of MODEL in RUNTIME, with onnxruntime measured in the same run."""
    from optc.bench import bench
    from optc.ir import load, serialize

    m = load(model)  # one clear line for a missing / broken file
    if repeat < 1 or warmup < 0 or threads < 1 or batch < 1:
        raise OptcError("--repeat, --threads and --batch must be >= 1, --warmup >= 0")
    target: Path | bytes = model
    if pipeline_text is not None:
        if runtime == "ort":
            raise OptcError("--passes optimizes the model optc runs; use --runtime optc")
        from optc.pipeline import run_pipeline

        run_pipeline(m, pipeline_text)
        target = serialize(m)
    if precision != "fp32" and runtime == "ort":
        raise OptcError("--precision sets optc's precision; use --runtime optc")
    r = bench(target, runtime=runtime, threads=threads, warmup=warmup, repeat=repeat,
              batch=batch, reference=model, tune=tune, precision=precision)
    line = f"{model.name}: onnxruntime {r.ort_median_ms:.2f} ms"
    if runtime != "ort":
        line += f", {runtime} {r.median_ms:.2f} ms, ratio {runtime}/ort {r.ratio:.2f}x"
    line += f" (median of {repeat}, {threads} thread{'s' if threads > 1 else ''})"
    if r.peak_bytes is not None:
        line += f"; peak activation memory {r.peak_bytes / 2**20:.2f} MiB"
    if r.error is not None:
        line += f"; {precision}: max error {r.error:.1e} of onnxruntime's float32 output scale"
    _stdout.print(line)
