"""freeze-initializers."""

from optc.passes import FoldConstants, FreezeInitializers
from tests.util import LIGHT_MODELS, check_pass, load, run_pass

OVERRIDABLE = """
<ir_version: 3, opset_import: ["" : 8]>
g (float[2] x, float[2] b) => (float[2] y) <float[2] b = {1.0, 2.0}> {
  y = Add(x, b)
}
"""


def test_initializer_inputs_become_constants():
    m = check_pass(FreezeInitializers(), OVERRIDABLE)
    assert [v.name for v in m.graph.inputs] == ["x"]
    assert "b" in m.graph.initializers
    assert m.ir_version == 4


def test_fold_needs_frozen_initializers_first():
    # an overridable initializer is not a constant: folding must leave its readers alone
    text = OVERRIDABLE.replace("y = Add(x, b)", "c = Neg(b)\n y = Add(x, c)")
    m = load(text)
    assert run_pass(FoldConstants(), m) is False
    assert run_pass(FreezeInitializers(), m) is True
    assert run_pass(FoldConstants(), m) is True


def test_no_initializer_inputs_is_not_modified():
    check_pass(FreezeInitializers(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] b = {1.0, 2.0}> { y = Add(x, b) }
    """, expect_modified=False)


def test_light_model():
    m = check_pass(FreezeInitializers(), LIGHT_MODELS[0])
    assert all(not m.graph.is_initializer(v) for v in m.graph.inputs)
