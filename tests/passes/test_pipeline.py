"""Pipeline text, presets, errors, canonical printing, timing, print-ir-after, reproducer."""

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

import optc
from optc.errors import OptcError
from optc.ir import Model
from optc.pass_base import Pass, PassContext, PassResult, presets
from optc.pipeline import METADATA_KEY, PassFailed, Pipeline, run_pipeline
from optc.passes import CSE, DCE, FoldConstants
from tests.util import SHIPPED_MODELS, load

SIMPLE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x) => (float[2] y) { a = Identity(x)  y = Relu(a) }
"""


def test_parse_and_canonical_text():
    p = Pipeline.parse("dce, fold-constants{size-limit-mb=64 fold_dq=true},cse")
    assert [type(q) for q in p.passes] == [DCE, FoldConstants, CSE]
    assert p.passes[1].size_limit_mb == 64.0 and p.passes[1].fold_dq is True
    text = str(p)
    assert text == ("dce,fold-constants{size-limit-mb=64.0 fold-dq=true fold-shapes=true},cse")
    assert str(Pipeline.parse(text)) == text  # canonical text parses back to itself


def test_presets_expand():
    p = Pipeline.parse("default")
    names = [q.name for q in p.passes]
    cleanup = presets()["cleanup"].split(",")
    fuse = presets()["fuse"].split(",")
    assert set(names) == set(cleanup + fuse)
    # fusions run after the cleanup that exposes them and before the weight sharing
    assert names.index("fold-bn") > names.index("fold-constants")
    assert names.index("fuse-bias") < names.index("dedup-initializers")
    assert p.lossless


@pytest.mark.parametrize("text, message", [
    ("fold-constans", "unknown pass 'fold-constans'; did you mean 'fold-constants'?"),
    ("defualt", "did you mean 'default'?"),
    ("fold-constants{size-limt-mb=3}", "has no option 'size-limt-mb'; did you mean "
                                       "'size-limit-mb'?"),
    ("fold-constants{fold-dq=maybe}", "option 'fold-dq' expects true or false, got 'maybe'"),
    ("fold-constants{size-limit-mb=big}", "expects a number, got 'big'"),
    ("fold-constants{fold-dq}", "is not key=value"),
    ("fold-constants{fold-dq=true fold-dq=false}", "given twice"),
    ("default{x=1}", "preset 'default' takes no options"),
    ("dce,", "ends with ','"),
    ("", "empty pipeline"),
    ("dce{", "cannot parse pipeline"),
])
def test_bad_pipeline_text(text, message):
    with pytest.raises(OptcError) as err:
        Pipeline.parse(text)
    assert message in str(err.value)


def test_run_records_and_metadata():
    m = load(SIMPLE)
    report = run_pipeline(m, "eliminate-identity,dce")
    assert [r.name for r in report.records] == ["eliminate-identity", "dce"]
    assert report.records[0].modified and report.records[0].stats == {"Identity": 1}
    assert report.nodes_before == 2 and report.nodes_after == 1
    assert all(r.seconds >= 0 for r in report.records)
    assert m.metadata_props[METADATA_KEY] == "eliminate-identity,dce"


def test_print_ir_after():
    m = load(SIMPLE)
    printed = []
    run_pipeline(m, "eliminate-identity,dce", print_ir_after="eliminate-identity",
                 printer=printed.append)
    assert len(printed) == 1 and "IR after eliminate-identity" in printed[0]
    assert "Identity" not in printed[0].split("-----", 2)[2]
    printed.clear()
    run_pipeline(load(SIMPLE), "eliminate-identity,dce", print_ir_after="all",
                 printer=printed.append)
    assert len(printed) == 2
    with pytest.raises(OptcError, match="no such pass in the pipeline"):
        run_pipeline(load(SIMPLE), "dce", print_ir_after="cse")


@dataclass(frozen=True)
class _Broken(Pass):
    """A pass with a bug."""

    name: ClassVar[str] = "broken"
    when: str = field(default="always")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        raise ZeroDivisionError("bug in the pass")


@dataclass(frozen=True)
class _Corrupting(Pass):
    """A pass that breaks the IR's invariants."""

    name: ClassVar[str] = "corrupting"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        node = model.graph.nodes[0]
        node.outputs[0]._uses.clear()
        return PassResult(model, True)


def test_failing_pass_writes_a_reproducer():
    m = optc.load(SHIPPED_MODELS[0])
    pipeline = Pipeline([DCE(), _Broken(), CSE()])
    with pytest.raises(PassFailed) as err:
        run_pipeline(m, pipeline, repro_source=SHIPPED_MODELS[0])
    repro = err.value.repro_dir
    assert "pass 'broken' failed: ZeroDivisionError: bug in the pass" in str(err.value)
    assert str(repro) in str(err.value)
    assert (repro / "model.onnx").read_bytes() == open(SHIPPED_MODELS[0], "rb").read()
    assert (repro / "pipeline.txt").read_text().strip() == "dce,broken{when=always}"
    assert "ZeroDivisionError" in (repro / "error.txt").read_text()


def test_ir_broken_by_a_pass_is_caught_at_that_pass():
    m = load(SIMPLE)
    with pytest.raises(PassFailed, match="pass 'corrupting' failed: VerificationError"):
        run_pipeline(m, Pipeline([_Corrupting()]))


def test_optimize_api():
    model, report = optc.optimize(SHIPPED_MODELS[0])
    assert report.nodes_after <= report.nodes_before
    assert model.metadata_props[METADATA_KEY] == str(Pipeline.parse("default"))
