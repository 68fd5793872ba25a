"""The distillation stage on the digits model: pruned accuracy recovered by KD (and better
than hard labels only), quantization-aware fine-tuning never below post-training int8, hints,
multi-teacher soft targets, taylor scores feeding the pruner, the losses' formulas, and the
errors for bad input."""

import numpy as np
import pytest

import torch

import optc
from optc.distill.losses import Regressor, kd_loss, soft_targets
from optc.distill.taylor import taylor_scores
from optc.distill.train import DistillConfig, distill
from optc.errors import OptcError
from optc.ir import serialize
from optc.validate import ort_session
from tests.util import MODELS

DIGITS = str(MODELS / "digits_cnn.onnx")
TRAIN = dict(np.load(MODELS / "digits_train.npz"))
TEST = dict(np.load(MODELS / "digits_test.npz"))
HIDDEN = "/classifier/classifier.2/Relu_output_0"


def accuracy(model) -> float:
    """Top-1 on the held-out split, in onnxruntime (the written-back ONNX, not torch)."""
    s = ort_session(serialize(model))
    return float((s.run(None, {"input": TEST["input"]})[0].argmax(1) == TEST["labels"]).mean())


@pytest.fixture(scope="module")
def teacher():
    return optc.load(DIGITS)


@pytest.fixture(scope="module")
def pruned():
    model, _ = optc.optimize(DIGITS, passes="default,prune{ratio=0.5 criterion=l2}")
    return model


def test_kd_recovers_the_pruned_model_and_beats_hard_labels(teacher, pruned):
    base = accuracy(teacher)
    assert accuracy(pruned) < base - 0.3  # pruning 0.5 without fine-tuning collapses
    config = dict(temperature=8.0, epochs=100, lr=3e-3)
    kd = [accuracy(distill([teacher], pruned, TRAIN, DistillConfig(alpha=0.9, seed=s,
                                                                   **config)).model)
          for s in (0, 1)]
    hard = [accuracy(distill([teacher], pruned, TRAIN, DistillConfig(alpha=0.0, seed=s,
                                                                     **config)).model)
            for s in (0, 1)]
    assert np.mean(kd) >= base - 0.01, (kd, base)
    assert np.mean(kd) > np.mean(hard), (kd, hard)


def test_training_is_deterministic_and_writes_back_only_weights(teacher, pruned):
    a = distill([teacher], pruned, TRAIN, DistillConfig(epochs=2, seed=3)).model
    b = distill([teacher], pruned, TRAIN, DistillConfig(epochs=2, seed=3)).model
    for name, v in a.graph.initializers.items():
        np.testing.assert_array_equal(v.const_value, b.graph.initializers[name].const_value)
    assert [n.op_type for n in a.graph.nodes] == [n.op_type for n in pruned.graph.nodes]


def test_quantization_aware_fine_tuning_keeps_or_beats_post_training_int8(teacher, pruned):
    # a harder int8 case than the full model (whose PTQ already matches fp32): the pruned,
    # distilled model, quantized, then fine-tuned with fake quantization and learned scales
    student = distill([teacher], pruned, TRAIN, DistillConfig(epochs=30, lr=3e-3)).model
    ptq, _ = optc.optimize(student, passes="quantize{probe=false}",
                           calib={"input": TRAIN["input"][:256]})
    ptq_acc = accuracy(ptq)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(TRAIN["input"]))
    # the best epoch is chosen on samples the fine-tuning does not train on
    val = {k: v[perm[:256]] for k, v in TRAIN.items()}
    fit = {k: v[perm[256:]] for k, v in TRAIN.items()}
    result = distill([teacher], ptq, fit, DistillConfig(epochs=5, lr=1e-4, learn_scales=True),
                     val=val)
    qat = result.model
    assert [n.op_type for n in qat.graph.nodes] == [n.op_type for n in ptq.graph.nodes]
    for name, v in ptq.graph.initializers.items():
        assert qat.graph.initializers[name].const_value.dtype == v.const_value.dtype
    assert accuracy(qat) >= ptq_acc


def test_hints_and_multi_teacher_train(teacher, pruned):
    r = distill([teacher], pruned, TRAIN, DistillConfig(epochs=2, hints=[(HIDDEN, HIDDEN)]))
    assert len(r.history) == 2 and all(np.isfinite(h.loss) for h in r.history)
    r2 = distill([teacher, pruned], pruned, TRAIN, DistillConfig(epochs=1, alpha=1.0))
    assert np.isfinite(r2.history[0].loss)


def test_soft_targets_and_kd_loss_follow_the_formula():
    z_t = [torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])]
    z_s = torch.tensor([[1.0, 0.5, 0.0]])
    T = 2.0
    p = (torch.softmax(z_t[0] / T, 1) + torch.softmax(z_t[1] / T, 1)) / 2
    torch.testing.assert_close(soft_targets(z_t, T), p)
    q = torch.softmax(z_s / T, 1)
    kl = float((p * (p / q).log()).sum())
    ce = float(-torch.log_softmax(z_s, 1)[0, 1])
    got = kd_loss(z_s, p, torch.tensor([1]), temperature=T, alpha=0.7)
    assert float(got) == pytest.approx(0.7 * T * T * kl + 0.3 * ce, rel=1e-6)


def test_regressor_shapes():
    assert isinstance(Regressor((2, 8, 4, 4), (2, 8, 4, 4), "h").map, torch.nn.Identity)
    assert isinstance(Regressor((2, 8, 4, 4), (2, 16, 4, 4), "h").map, torch.nn.Conv2d)
    assert isinstance(Regressor((2, 32), (2, 64), "h").map, torch.nn.Linear)
    with pytest.raises(OptcError, match="cannot be mapped"):
        Regressor((2, 8, 4, 4), (2, 8, 2, 2), "h")


def test_taylor_scores_rank_channels_and_drive_the_pruner(tmp_path):
    from optc.distill.taylor import scores_json

    fused, _ = optc.optimize(DIGITS)
    scores = taylor_scores(fused, TRAIN)
    convs = [n for n in fused.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert set(scores) == {n.inputs[1].name for n in convs}
    for n in convs:
        w = n.inputs[1].const_value
        axis = 0 if n.op_type == "Conv" or n.attr("transB", 0) else 1
        assert len(scores[n.inputs[1].name]) == w.shape[axis]
        assert min(scores[n.inputs[1].name]) >= 0
    path = tmp_path / "scores.json"
    path.write_text(scores_json(scores))
    first = convs[0].inputs[1].name
    original = convs[0].inputs[1].const_value.copy()
    pruned, _ = optc.optimize(fused, passes=f"prune{{ratio=0.5 criterion=taylor "
                                            f"scores={path}}}")  # edits fused in place
    conv = next(n for n in pruned.graph.nodes if n.op_type == "Conv")
    kept = conv.inputs[1].const_value.shape[0]
    assert kept == len(original) // 2
    best = np.argsort(scores[first])[::-1][:kept]
    # the kept filters are the highest-scoring ones (the same rows, in the original order)
    np.testing.assert_array_equal(conv.inputs[1].const_value, original[np.sort(best)])


def test_taylor_scores_of_another_model_are_refused(tmp_path):
    from optc.distill.taylor import scores_json

    fused, _ = optc.optimize(DIGITS)
    scores = {k: v[:-1] for k, v in taylor_scores(fused, TRAIN).items()}
    path = tmp_path / "scores.json"
    path.write_text(scores_json(scores))
    with pytest.raises(OptcError, match="computed on this model"):
        optc.optimize(fused, passes=f"prune{{criterion=taylor scores={path}}}")


@pytest.mark.parametrize("change, fragment", [
    (dict(alpha=0.5, labels=False), "alpha=0.5 < 1 needs"),
    (dict(alpha=1.5), "alpha must be in [0, 1]"),
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(hints=[("nope", HIDDEN)]), "no tensor named 'nope'"),
])
def test_bad_configuration(teacher, pruned, change, fragment):
    data = dict(TRAIN)
    if change.pop("labels", True) is False:
        del data["labels"]
    with pytest.raises(OptcError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        distill([teacher], pruned, data, DistillConfig(epochs=1, **change))


def test_teacher_with_other_inputs_is_refused(pruned):
    other = optc.load(str(MODELS / "resnet_mini.onnx"))
    with pytest.raises(OptcError, match="shape"):
        distill([other], pruned, TRAIN, DistillConfig(epochs=1))


def test_teacher_assistant_chain_is_two_runs(teacher):
    assistant, _ = optc.optimize(DIGITS, passes="default,prune{ratio=0.3 criterion=l2}")
    assistant = distill([teacher], assistant, TRAIN, DistillConfig(epochs=3, lr=3e-3)).model
    student, _ = optc.optimize(DIGITS, passes="default,prune{ratio=0.6 criterion=l2}")
    before = accuracy(student)
    student = distill([assistant], student, TRAIN, DistillConfig(epochs=3, lr=3e-3)).model
    assert accuracy(student) > before


def test_iterative_prune_and_distill():
    from optc.distill.train import prune_and_distill

    model, rounds = prune_and_distill(DIGITS, TRAIN, ratio=0.5, steps=2,
                                      prune_options="criterion=l2",
                                      config=DistillConfig(epochs=2, lr=3e-3))
    assert len(rounds) == 2
    conv = next(n for n in model.graph.nodes if n.op_type == "Conv")
    # two rounds of 1 - sqrt(0.5) each keep about half of the 16 filters
    assert 7 <= conv.inputs[1].const_value.shape[0] <= 9
    assert accuracy(model) > 0.9
    with pytest.raises(OptcError, match="steps must be >= 1"):
        prune_and_distill(DIGITS, TRAIN, ratio=0.5, steps=0)
