"""eliminate-noop."""

from optc.passes import EliminateNoop
from tests.util import check_pass, op_types


def test_noops_are_removed():
    m = check_pass(EliminateNoop(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x) => (float[6,4] y) <int64[3] same = {2, 3, 4}, int64[3] zeros = {0, 0, -1},
                                         int64[2] flat = {6, 4}> {
      a = Reshape(x, same)
      b = Reshape(a, zeros)
      c = Transpose <perm = [0, 1, 2]> (b)
      d = Cast <to = 1> (c)
      e = Reshape(d, flat)
      f = Flatten <axis = 1> (e)
      y = Relu(f)
    }
    """)
    assert op_types(m) == ["Reshape", "Relu"]
    # the shape constants of the removed Reshapes went with them
    assert sorted(m.graph.initializers) == ["flat"]


def test_real_reshapes_transposes_and_casts_stay():
    check_pass(EliminateNoop(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (double[3,2] y, float[3,2] z, float[3,2] w) <int64[2] s = {3, 2}> {
      z = Reshape(x, s)
      t = Transpose <perm = [1, 0]> (x)
      w = Relu(t)
      y = Cast <to = 11> (t)
    }
    """, expect_modified=False)


def test_symbolic_shapes_are_not_assumed():
    check_pass(EliminateNoop(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,3] x) => (float[N,3] y) <int64[2] s = {-1, 3}> {
      r = Reshape(x, s)
      y = Relu(r)
    }
    """, expect_modified=False)


def test_transpose_without_perm_of_rank_2_is_real():
    check_pass(EliminateNoop(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[3,2] y) { t = Transpose(x)  y = Relu(t) }
    """, expect_modified=False)
