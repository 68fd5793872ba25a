"""prune: the pruned model equals the masked original; coupling through Add, Concat,
depthwise/grouped convs, Flatten -> Gemm and SE blocks; models and bad input."""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.errors import OptcError
from optc.ir import clone, serialize, verify
from optc.passes import Prune
from optc.validate import ort_session, random_feeds
from tests.util import MODELS


@st.composite
def prunable_models(draw):
    """Random CNNs: Conv (1x1/3x3, padded), BN, Relu, residual Add, Concat, depthwise and
    grouped convs, squeeze-excitation blocks, then GlobalAveragePool or Flatten into a Gemm."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    nodes, inits = [], []
    counter = [0]

    def fresh(p):
        counter[0] += 1
        return f"{p}{counter[0]}"

    def const(arr, p="w"):
        name = fresh(p)
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv(src, cin, cout, k=1, group=1):
        out = fresh("c")
        w = const(rng.standard_normal((cout, cin // group, k, k)) * 0.5)
        b = const(rng.standard_normal(cout) * 0.1, "b")
        nodes.append(helper.make_node("Conv", [src, w, b], [out], pads=[k // 2] * 4,
                                      group=group, name=fresh("conv")))
        return out

    cur, ch = "x", 3
    cur, ch = conv(cur, 3, draw(st.sampled_from([4, 6, 8]))), None
    ch = int(inits[-1].dims[0])
    values = [(cur, ch)]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "bn", "relu", "add", "concat", "dw", "grouped",
                                     "se", "split", "slice", "shuffle"]))
        src, c = values[draw(st.integers(0, len(values) - 1))]
        if kind == "conv":
            out, c2 = conv(src, c, draw(st.sampled_from([2, 4, 6])), draw(st.sampled_from([1,
                                                                                         3]))), None
            c2 = int(inits[-1].dims[0])
        elif kind == "bn":
            out, c2 = fresh("bn"), c
            params = [const(rng.uniform(0.5, 1.5, c), "s"), const(rng.standard_normal(c), "b"),
                      const(rng.standard_normal(c) * 0.1, "m"), const(rng.uniform(.5, 2, c), "v")]
            nodes.append(helper.make_node("BatchNormalization", [src] + params, [out]))
        elif kind == "relu":
            out, c2 = fresh("r"), c
            nodes.append(helper.make_node("Relu", [src], [out]))
        elif kind == "add":
            same = [v for v in values if v[1] == c]
            other = same[draw(st.integers(0, len(same) - 1))][0]
            out, c2 = fresh("a"), c
            nodes.append(helper.make_node("Add", [src, other], [out]))
        elif kind == "concat":
            other, co = values[draw(st.integers(0, len(values) - 1))]
            out, c2 = fresh("cat"), c + co
            nodes.append(helper.make_node("Concat", [src, other], [out], axis=1))
        elif kind == "dw":
            out, c2 = conv(src, c, c, 3, group=c), c
        elif kind == "split":  # two parts along the channels, sizes given; both used
            if c < 2:
                continue
            first = draw(st.integers(1, c - 1))
            a, b, sizes = fresh("sa"), fresh("sb"), fresh("split")
            inits.append(numpy_helper.from_array(np.array([first, c - first], np.int64), sizes))
            nodes.append(helper.make_node("Split", [src, sizes], [a, b], axis=1))
            values.append((a, first))
            out, c2 = b, c - first
        elif kind == "slice":  # channels [lo, c) and a crop of space
            if c < 2:
                continue
            lo = draw(st.integers(1, c - 1))
            out, c2 = fresh("sl"), c - lo
            starts = fresh("st")
            ends = fresh("en")
            axes = fresh("ax")
            inits += [numpy_helper.from_array(np.array([lo, 0], np.int64), starts),
                      numpy_helper.from_array(np.array([c, 5], np.int64), ends),
                      numpy_helper.from_array(np.array([1, 3], np.int64), axes)]
            nodes.append(helper.make_node("Slice", [src, starts, ends, axes], [out]))
        elif kind == "grouped":
            if c % 2:
                continue
            out, c2 = conv(src, c, c, 1, group=2), c
        elif kind == "shuffle":  # a layer, a channel shuffle of 2 groups, maybe a grouped conv
            c2 = draw(st.sampled_from([4, 8]))
            made = conv(src, c, c2, 1, group=2 if c % 2 == 0 and draw(st.booleans()) else 1)
            five, moved, out = fresh("r5"), fresh("tr"), fresh("shuf")
            first, last = fresh("t5"), fresh("t4")
            inits += [numpy_helper.from_array(np.array(
                          [0, 2, draw(st.sampled_from([c2 // 2, -1])), 5, 5], np.int64), first),
                      numpy_helper.from_array(np.array(
                          [2, draw(st.sampled_from([c2, -1])), 5, 5], np.int64), last)]
            nodes += [helper.make_node("Reshape", [made, first], [five]),
                      helper.make_node("Transpose", [five], [moved], perm=[0, 2, 1, 3, 4]),
                      helper.make_node("Reshape", [moved, last], [out])]
            if draw(st.booleans()):
                values.append((out, c2))
                out = conv(out, c2, c2, draw(st.sampled_from([1, 3])), group=2)
        else:  # squeeze-excitation: GAP -> conv -> relu -> conv -> sigmoid -> Mul
            pooled, r, s, gate, out = (fresh(p) for p in ("gap", "ser", "ses", "gate", "se"))
            nodes.append(helper.make_node("GlobalAveragePool", [src], [pooled]))
            mid = conv(pooled, c, 2)
            nodes.append(helper.make_node("Relu", [mid], [r]))
            back = conv(r, 2, c)
            nodes.append(helper.make_node("Sigmoid", [back], [gate]))
            nodes.append(helper.make_node("Mul", [src, gate], [out]))
            c2 = c
        values.append((out, c2))
    last, c = values[-1]
    flat = fresh("flat")
    if draw(st.booleans()):
        pooled = fresh("gap")
        nodes.append(helper.make_node("GlobalAveragePool", [last], [pooled]))
        nodes.append(helper.make_node("Flatten", [pooled], [flat]))
        features = c
    else:
        nodes.append(helper.make_node("Flatten", [last], [flat]))
        features = c * 25
    w = const(rng.standard_normal((features, 3)) * 0.2)
    nodes.append(helper.make_node("Gemm", [flat, w], ["y"], name="head"))
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 3, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def masked(model, plan: dict):
    """``model`` with the channels the pass removed zeroed at their sources (filters, bias)."""
    m = clone(model)
    g = m.graph
    by_name = {}
    for n in g.nodes:
        by_name[n.name] = n
        by_name[n.outputs[0].name] = n
    for group in plan["groups"]:
        drop = np.setdiff1d(np.arange(group["channels"]), group["kept"])
        if len(drop) == 0:
            continue
        for layer in group["layers"]:
            n = by_name[layer]
            axis = 0 if n.op_type == "Conv" else (0 if n.attr("transB", 0) else 1)
            for index in (1, 2):
                if index >= len(n.inputs) or n.inputs[index] is None:
                    continue
                arr = n.inputs[index].const_value.copy()
                ax = axis if index == 1 else arr.ndim - 1
                sl = [slice(None)] * arr.ndim
                sl[ax] = drop
                arr[tuple(sl)] = 0
                n.replace_input(index, g.add_initializer(n.inputs[index].name + "_m", arr))
    return m


def _check_exact(proto, pipeline_before="default", **options):
    model, _ = optc.optimize(proto, passes=pipeline_before)
    original = clone(model)
    p = Prune(**options)
    result = p(model)
    verify(model.graph)
    data = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    reference = serialize(masked(original, result.artifacts["plan"]))
    s_ref, s_new = ort_session(reference), ort_session(data)
    feeds = random_feeds(s_ref, seed=1)
    r, o = s_ref.run(None, feeds)[0], s_new.run(None, feeds)[0]
    np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5 * max(np.abs(r).max(), 1e-6))
    return model, p, result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prunable_models(), st.sampled_from([0.3, 0.5]), st.sampled_from(["l1", "l2", "random"]),
       st.sampled_from(["local", "global"]))
def test_pruned_equals_masked(proto, ratio, criterion, scope):
    _, _, result = _check_exact(proto, ratio=ratio, criterion=criterion, scope=scope)
    # examples where every group was blocked prove little: hypothesis must find enough others
    # (a health check fails if too many are discarded)
    assume(result.stats["pruned"] > 0)


def _bn_model(k2: int, shape=(2, 3, 6, 6)):
    """conv -> BN -> Relu -> conv(k2) -> Gemm: with BN unfolded, a masked channel leaves a
    constant max(beta', 0) that the next conv must absorb. ``shape``: the input's dims
    (strings: symbolic)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.standard_normal((6, 3, 3, 3))), ("s", rng.uniform(.5, 1.5, 6)),
        ("b", rng.uniform(0.5, 1.0, 6)), ("m", np.zeros(6)), ("v", np.ones(6)),
        ("w2", rng.standard_normal((4, 6, k2, k2))), ("w3", rng.standard_normal((4, 3))))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4, name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[k2 // 2] * 4, name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3"], ["y"], name="head")]
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [shape[0], 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_unfolded_bn_constant_is_folded_into_the_next_bias_exactly():
    model, p, result = _check_exact(_bn_model(1), pipeline_before="cleanup", ratio=0.5)
    assert any(n.op_type == "BatchNormalization" for n in model.graph.nodes)
    assert "approximate_folds" not in result.stats
    bn = next(n for n in model.graph.nodes if n.op_type == "BatchNormalization")
    assert bn.inputs[1].const_value.shape == (3,)  # BN's vectors were sliced with conv1


def test_padded_consumer_gets_an_exact_correction_map():
    # a 3x3 padded conv sees the removed channels' constant inside and zeros at the borders:
    # the surgery adds that (spatially varying) contribution after the conv
    model, p, result = _check_exact(_bn_model(3), pipeline_before="cleanup", ratio=0.5)
    assert "approximate_folds" not in result.stats
    adds = [n for n in model.graph.nodes if n.op_type == "Add"]
    assert len(adds) == 1 and adds[0].inputs[1].const_value.shape == (1, 2, 6, 6)


DYNAMIC = ("N", 3, "H", "W")


def test_dynamic_spatial_dims_need_sizes_for_the_sample_run():
    """No made-up sizes: a model that leaves H and W open says which options give them."""
    with pytest.raises(OptcError, match=r"input 'x' has dims \[N, 3, H, W\].*--calib.*"
                                        r"--input-shape x="):
        optc.optimize(_bn_model(1, DYNAMIC), passes="cleanup,prune{ratio=0.5}")


@pytest.mark.parametrize("k2", [1, 3])
def test_dynamic_model_pruned_with_calibration_sizes_keeps_its_dynamic_dims(k2):
    """With --calib the sample run takes the data's sizes; the output still takes any batch
    and image size. A 1x1 consumer folds exactly at every size; a padded 3x3 one would need
    a map of one size, so its interior value goes into the bias and the fold is counted as
    approximate (no fixed-size map in the output)."""
    proto = _bn_model(k2, DYNAMIC)
    calib = {"x": np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)}
    original = optc.load(proto)
    optc.optimize(original, passes="cleanup")
    model, report = optc.optimize(proto, passes="cleanup,prune{ratio=0.5}", calib=calib)
    stats = report.records[-1].stats
    assert stats["pruned"] == 2  # conv1 (its BN constant folds into conv2) and conv2
    assert model.graph.inputs[0].shape == ("N", 3, "H", "W")
    assert not any(n.op_type == "Add" for n in model.graph.nodes)  # no size-bound map
    data = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    plan = report.records[-1].artifacts["plan"]
    s_ref, s_new = ort_session(serialize(masked(original, plan))), ort_session(data)
    for shape in ((1, 3, 6, 6), (3, 3, 9, 7)):
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        r, o = s_ref.run(None, {"x": x})[0], s_new.run(None, {"x": x})[0]
        if k2 == 1:
            assert "approximate_folds" not in stats
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5 * np.abs(r).max())
        else:
            assert stats["approximate_folds"] == 1
            assert o.shape == r.shape and np.all(np.isfinite(o))


def test_features_on_the_last_axis_are_not_pruned():
    """A transformer's (batch, tokens, features) MatMul: the analysis follows channels on
    axis 1 only, so the group is blocked with its reason rather than cut wrongly."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(a).astype(np.float32), n)
             for n, a in (("w1", (8, 16)), ("b1", (16,)), ("w2", (16, 8)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Add", ["b1", "h"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    proto = helper.make_model(helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", 8])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    model = optc.load(proto)
    result = Prune(ratio=0.5)(model)
    assert result.stats["pruned"] == 0
    reasons = [r for g in result.artifacts["plan"]["blocked"] for r in g["reasons"]]
    assert any("last axis of a rank-3 tensor" in r for r in reasons), reasons


def test_blocked_groups_and_reasons():
    model, _ = optc.optimize(MODELS / "resnet_mini.onnx")
    plan = Prune(ratio=0.3)(model).artifacts["plan"]
    reasons = [r for b in plan["blocked"] for r in b["reasons"]]
    assert any("reaches the graph output" in r for r in reasons)
    assert plan["groups"] and all(len(g["kept"]) < g["channels"] for g in plan["groups"])


def test_round_to_and_protect():
    model, _ = optc.optimize(MODELS / "mobilenetv2_mini.onnx")
    stem = next(n for n in model.graph.nodes if n.op_type == "Conv")
    plan = Prune(ratio=0.5, round_to=8, protect=stem.name)(model).artifacts["plan"]
    assert all(len(g["kept"]) % 8 == 0 or len(g["kept"]) == g["channels"]
               for g in plan["groups"])
    assert any(stem.name in b["layers"] and "protected" in " ".join(b["reasons"])
               for b in plan["blocked"])


@pytest.mark.parametrize("options, fragment", [
    ("ratio=1.0", "ratio must be in [0, 1)"),
    ("ratio=-0.1", "ratio must be in [0, 1)"),
    ("criterion=taylor", "needs scores=FILE"),
    ("criterion=l1 scores=x.json", "for criterion=taylor"),
    ("criterion=magnitude", "criterion"),
    ("protect=no_such_layer", "protected name(s) not in the graph: no_such_layer"),
])
def test_bad_options(options, fragment):
    with pytest.raises(OptcError, match=fragment.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        optc.optimize(MODELS / "digits_cnn.onnx", passes=f"default,prune{{{options}}}")


@pytest.mark.parametrize("scope", ["local", "global"])
def test_sparsify_reaches_the_sparsity_and_keeps_the_largest_weights(scope):
    from optc.passes import Sparsify

    model, _ = optc.optimize(MODELS / "resnet_mini.onnx")
    layers = [n for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")]
    before = {n.name: n.inputs[1].const_value.copy() for n in layers}
    result = Sparsify(sparsity=0.6, scope=scope)(model)
    assert result.modified and result.stats["sparsity"] == pytest.approx(0.6, abs=0.01)
    for n in layers:
        w, w0 = n.inputs[1].const_value, before[n.name]
        assert w.shape == w0.shape
        kept = w != 0
        np.testing.assert_array_equal(w[kept], w0[kept])  # survivors untouched
        if scope == "local":  # every zeroed weight is no larger than every kept one
            assert np.abs(w0[~kept]).max() <= np.abs(w0[kept]).min()
    onnx.checker.check_model(onnx.load_from_string(serialize(model)), full_check=True)
    assert Sparsify(sparsity=0.6, scope=scope)(model).modified is False


def test_sparsify_bad_sparsity():
    with pytest.raises(OptcError, match=r"sparsity must be in \[0, 1\)"):
        optc.optimize(MODELS / "digits_cnn.onnx", passes="sparsify{sparsity=1.5}")


_LIGHT = ("resnet50", "densenet121", "shufflenet", "inception_v1", "inception_v2")


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", ["digits_cnn", "resnet_mini", "mobilenetv2_mini", *_LIGHT])
def test_models_prune_and_run(name, ratio):
    from optc.testing import light_at_opset

    source = light_at_opset(name, 13) if name in _LIGHT else MODELS / f"{name}.onnx"
    model, _ = optc.optimize(source)
    before = serialize(model)
    result = Prune(ratio=ratio)(model)
    stats = result.stats
    data = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    s = ort_session(data)
    out = s.run(None, random_feeds(s, seed=0))[0]
    assert np.all(np.isfinite(out))
    assert ort_session(before).run(None, random_feeds(s, seed=0))[0].shape == out.shape
    # ShuffleNet: only its bottlenecks, 12 of the 16 behind channel shuffles, can be pruned;
    # the residual chains after a Concat and the rest are reported
    assert stats["pruned"] >= 1 and len(data) < (0.9 if name == "shufflenet" else 0.8) * len(
        before)
    if name == "shufflenet":
        assert stats["pruned"] == 12
        reasons = [r for b in result.artifacts["plan"]["blocked"] for r in b["reasons"]]
        assert sum("splits the columns of a channel shuffle" in r for r in reasons) == 4
        assert any("adds channels laid out differently" in r for r in reasons)


def test_shufflenet_pruned_equals_masked():
    from optc.testing import light_at_opset

    _, p, result = _check_exact(light_at_opset("shufflenet", 13), ratio=0.5)
    assert result.stats["pruned"] == 12
    for group in result.artifacts["plan"]["groups"]:  # whole columns of the 4 x C/4 shuffle matrix
        kept = np.array(group["kept"]).reshape(4, -1) - \
            (np.arange(4) * (group["channels"] // 4))[:, None]
        assert np.all(kept == kept[0])


def test_plan_breaking_a_channel_shuffle_is_refused(tmp_path):
    import json

    from optc.testing import light_at_opset

    model, _ = optc.optimize(light_at_opset("shufflenet", 13))
    group = Prune(ratio=0.5)(clone(model)).artifacts["plan"]["groups"][0]
    group["kept"] = list(range(len(group["kept"])))  # the first channels: not whole columns
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"groups": [group]}))
    with pytest.raises(OptcError, match="channel shuffle"):
        Prune(plan=str(plan))(model)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_target_macs(scope):
    from optc.report import model_stats

    model, _ = optc.optimize(MODELS / "resnet_mini.onnx")
    before = model_stats(clone(model)).macs
    p = Prune(target_macs=0.4, scope=scope)
    stats = p(model).stats
    after = model_stats(model).macs
    assert after <= 0.4 * before
    assert after >= 0.3 * before  # the smallest ratio that reaches it, not far beyond
    assert 0 < stats["ratio"] < 0.9
    with pytest.raises(OptcError, match="target-macs=0.001 is out of reach"):
        optc.optimize(MODELS / "resnet_mini.onnx", passes="default,prune{target-macs=0.001}")


def test_iterative_steps_reach_the_ratio_and_their_plan_replays(tmp_path):
    import json

    base, _ = optc.optimize(MODELS / "resnet_mini.onnx")
    model = clone(base)
    result = Prune(ratio=0.5, steps=3)(model)
    stats, groups = result.stats, result.artifacts["plan"]["groups"]
    assert stats["steps"] == 3 and stats["pruned"] == 9
    for grp in groups:  # 1 - 0.5 of the original channels, kept indices in original terms
        assert len(grp["kept"]) == grp["channels"] // 2
        assert max(grp["kept"]) < grp["channels"]
    # the composed plan, replayed in one shot on the original, gives the same weights
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"groups": groups}))
    replayed = clone(base)
    Prune(plan=str(plan))(replayed)
    assert [v.const_value.tolist() for v in model.graph.initializers.values()] == \
        [v.const_value.tolist() for v in replayed.graph.initializers.values()]
