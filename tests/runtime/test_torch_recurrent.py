"""Recurrent models as torch exports them (torch.onnx.export, TorchScript exporter): nn.LSTM and
nn.GRU -- two layers, bidirectional, batch-first, with and without initial states, and an RNN
with tanh -- with dynamic batch and sequence length. One optc.runtime session (the default
optimization) runs two input sizes and matches onnxruntime (graph optimizations off) to 1e-4 of
each output's scale. The transformer encoder and silero VAD (LSTM inside If) of the corpus are
checked the same way by tests/models/test_wild.py (its "runtime" job)."""

import io

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from optc.runtime import InferenceSession  # noqa: E402
from optc.runtime.conformance import ort_runner  # noqa: E402

SIZES = [(1, 5), (3, 11)]  # (batch, sequence length)
FEATURES, HIDDEN = 12, 16


class Recurrent(nn.Module):
    def __init__(self, cell: str, states: bool, **kw):
        super().__init__()
        self.states = states
        self.rnn = getattr(nn, cell)(FEATURES, HIDDEN, batch_first=True, **kw)
        self.head = nn.Linear(HIDDEN * (2 if kw.get("bidirectional") else 1), 4)

    def forward(self, x, *state):
        y, _ = self.rnn(x, *state) if state else self.rnn(x)
        return self.head(y)


def _export(cell: str, opset: int, states: bool, **kw) -> tuple[onnx.ModelProto, dict]:
    torch.manual_seed(0)
    net = Recurrent(cell, states, **kw).eval()
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    x = torch.randn(2, 7, FEATURES)
    example, names = (x,), ["x"]
    dynamic = {"x": {0: "batch", 1: "sequence"}, "y": {0: "batch", 1: "sequence"}}
    if states:
        h0 = torch.randn(layers, 2, HIDDEN)
        state = (h0, torch.randn(layers, 2, HIDDEN)) if cell == "LSTM" else h0
        example = (x, state)
        names += ["h0", "c0"] if cell == "LSTM" else ["h0"]
        for n in names[1:]:
            dynamic[n] = {1: "batch"}
    buf = io.BytesIO()
    torch.onnx.export(net, example, buf, dynamo=False, opset_version=opset, input_names=names,
                      output_names=["y"], dynamic_axes=dynamic)
    return onnx.load_from_string(buf.getvalue()), {"layers": layers, "names": names}


CONFIGS = [
    ("LSTM", 14, False, {"num_layers": 2, "bidirectional": True}),
    ("LSTM", 17, True, {"num_layers": 2}),
    ("GRU", 14, False, {"num_layers": 2, "bidirectional": True}),
    ("GRU", 17, True, {}),
    ("RNN", 17, False, {"nonlinearity": "tanh", "num_layers": 2}),
]


@pytest.mark.parametrize("cell,opset,states,kw", CONFIGS,
                         ids=[f"{c}-op{o}-{'states' if s else 'nostate'}-"
                              f"{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'plain'}"
                              for c, o, s, kw in CONFIGS])
def test_torch_recurrent_matches_onnxruntime_at_two_sizes(cell, opset, states, kw):
    model, info = _export(cell, opset, states, **kw)
    assert cell in {n.op_type for n in model.graph.node}
    session = InferenceSession(model)  # one session, both sizes
    assert session.optimization == "all"
    ort = ort_runner(model)
    rng = np.random.default_rng(0)
    for batch, seq in SIZES:
        feeds = {"x": rng.standard_normal((batch, seq, FEATURES)).astype(np.float32)}
        for n in info["names"][1:]:
            feeds[n] = rng.standard_normal((info["layers"], batch, HIDDEN)).astype(np.float32)
        (ref,) = ort([feeds[n] for n in info["names"]])
        (got,) = session.run(None, feeds)
        assert got.shape == ref.shape == (batch, seq, 4)
        scale = float(np.max(np.abs(ref)))
        assert float(np.max(np.abs(got - ref))) <= 1e-4 * scale
