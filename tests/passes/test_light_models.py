"""The default pipeline on the 9 onnx `light` models (constant-filled weights as shipped, and
with seeded random weights) and on the models/ models: outputs match onnxruntime on the
original, the node count goes down, the result passes the full checker."""

import os

import onnx
import pytest

import optc
from optc.ir import serialize, to_proto, verify
from optc.pipeline import run_pipeline
from tests.util import LIGHT_MODELS, SHIPPED_MODELS, assert_same_outputs, randomize_light


def _optimize(proto_or_path):
    m = optc.load(proto_or_path)
    report = run_pipeline(m, "default")
    verify(m.graph)
    onnx.checker.check_model(to_proto(m), full_check=True)
    return m, report


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=os.path.basename)
def test_light_model_as_shipped(path):
    m, report = _optimize(path)
    assert report.nodes_after < report.nodes_before
    # every ConstantOfShape-built weight became an initializer
    assert "ConstantOfShape" not in {n.op_type for n in m.graph.nodes}
    assert_same_outputs(path, serialize(m))


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=os.path.basename)
def test_light_model_with_random_weights(path):
    original = randomize_light(path)  # weights are initializers already: numerics are the point
    m, report = _optimize(original)
    assert report.nodes_after <= report.nodes_before
    # every BatchNormalization was folded into a layer (or, where none could take it, became a
    # Mul+Add that fuse-scale/fuse-bias merged with its neighbours)
    assert "BatchNormalization" not in {n.op_type for n in m.graph.nodes}
    assert_same_outputs(original, serialize(m))


@pytest.mark.parametrize("path", SHIPPED_MODELS, ids=os.path.basename)
def test_shipped_models(path):
    m, report = _optimize(path)
    assert report.nodes_after < report.nodes_before
    assert "BatchNormalization" not in {n.op_type for n in m.graph.nodes}
    assert_same_outputs(path, serialize(m))
