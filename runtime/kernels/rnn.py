"""Recurrent layers: LSTM, GRU, RNN (schema 7 and later: layout, sequence_lens, peepholes,
clip, bidirectional), and the Optional ops.

The input projection of every time step is one matrix product (X @ W^T for all steps), so the
per-step loop only does the H @ R^T product and the gate math: the form onnxruntime's and
cuDNN's RNNs take. Steps past a sequence's length leave its state alone and write zeros to Y,
so ``Y_h`` / ``Y_c`` hold each sequence's last valid step (reverse direction included).
"""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.registry import kernel


def _sigmoid(v):
    return 0.5 * (np.tanh(0.5 * v) + 1)  # = 1 / (1 + exp(-v)), never overflows


#: activation name -> f(v, alpha, beta), with the spec's default alpha/beta
_ACTS = {
    "sigmoid": (lambda v, a, b: _sigmoid(v), None, None),
    "tanh": (lambda v, a, b: np.tanh(v), None, None),
    "relu": (lambda v, a, b: np.maximum(v, 0), None, None),
    "leakyrelu": (lambda v, a, b: np.where(v >= 0, v, a * v), 0.01, None),
    "thresholdedrelu": (lambda v, a, b: np.where(v > a, v, 0), 1.0, None),
    "scaledtanh": (lambda v, a, b: a * np.tanh(b * v), 1.0, 1.0),
    "hardsigmoid": (lambda v, a, b: np.clip(a * v + b, 0, 1), 0.2, 0.5),
    "elu": (lambda v, a, b: np.where(v >= 0, v, a * np.expm1(np.minimum(v, 0))), 1.0, None),
    "softsign": (lambda v, a, b: v / (1 + np.abs(v)), None, None),
    "softplus": (lambda v, a, b: np.logaddexp(0, v), None, None),
    "affine": (lambda v, a, b: a * v + b, 1.0, 0.0),
}


def _activations(names, alphas, betas, defaults, n_dir):
    """One list of callables per direction; alpha/beta are taken in order by the activations
    that have them (the spec's "consumed in the order of activation functions")."""
    names = list(names) if names else defaults * n_dir
    if len(names) != len(defaults) * n_dir:
        raise OptcError(f"activations: expected {len(defaults) * n_dir} names, got "
                        f"{len(names)}")
    alphas, betas = list(alphas or []), list(betas or [])
    fns = []
    for name in names:
        key = (name.decode() if isinstance(name, bytes) else name).lower()
        if key not in _ACTS:
            raise OptcError(f"activation '{name}' is not supported")
        f, da, db = _ACTS[key]
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        fns.append(lambda v, f=f, a=a, b=b: f(v, a, b))
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(n_dir)]


def _prepare(x, sequence_lens, initial, layout, n_dir, hidden_size):
    if layout:
        x = np.swapaxes(x, 0, 1)  # -> [seq, batch, input]
        initial = [None if s is None else np.swapaxes(s, 0, 1) for s in initial]
    t, b = x.shape[:2]
    lens = np.full(b, t, np.int64) if sequence_lens is None else \
        sequence_lens.astype(np.int64).reshape(-1)
    states = [np.zeros((n_dir, b, hidden_size), x.dtype) if s is None else s.astype(x.dtype)
              for s in initial]
    return x, lens, states


def _run(x, w, r, bias, lens, states, direction, clip, step):
    """The recurrence over time for each direction. ``step(d, gates_x, states) -> (h, states)``
    computes one step from the precomputed input projection; returns Y [seq, dir, batch, H]
    and the final states."""
    t, b, _ = x.shape
    n_dir = w.shape[0]
    hidden = r.shape[-1]
    y = np.zeros((t, n_dir, b, hidden), x.dtype)
    finals = [np.empty_like(s) for s in states]
    for d in range(n_dir):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        gx = (x.reshape(t * b, -1) @ w[d].T).reshape(t, b, -1)
        if bias is not None:
            gx = gx + bias[d]
        cur = [s[d] for s in states]
        full = bool(np.all(lens >= t))  # every sequence runs every step: no masks needed
        for i in (range(t - 1, -1, -1) if reverse else range(t)):
            h, new = step(d, gx[i], cur, clip)
            if full:
                cur = list(new)
                y[i, d] = h
                continue
            valid = (i < lens)[:, None]
            cur = [np.where(valid, n, c) for n, c in zip(new, cur)]
            y[i, d] = np.where(valid, h, 0)
        for f, c in zip(finals, cur):
            f[d] = c
    return y, finals


def _results(y, finals, layout, n_out):
    if layout:
        y = np.transpose(y, (2, 0, 1, 3))  # [batch, seq, dir, H]
        finals = [np.swapaxes(f, 0, 1) for f in finals]
    return tuple([y] + finals)[:n_out] if n_out > 1 else y


def _clip(v, clip):
    return v if clip is None else np.clip(v, -clip, clip)


def _direction(direction, n_dir):
    direction = direction.decode() if isinstance(direction, bytes) else direction
    direction = "forward" if direction == "foward" else direction  # GRU-1's spec default
    want = 2 if direction == "bidirectional" else 1
    if want != n_dir:
        raise OptcError(f"direction '{direction}' needs {want} weight sets, got {n_dir}")
    return direction


@kernel("LSTM", (7, 14, 22))
def lstm(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
         activation_alpha=None, activation_beta=None, activations=None, clip=None,
         direction="forward", hidden_size=None, input_forget=0, layout=0, _outputs=1):
    n_dir, hs = w.shape[0], r.shape[-1]
    direction = _direction(direction, n_dir)
    acts = _activations(activations, activation_alpha, activation_beta,
                        ["Sigmoid", "Tanh", "Tanh"], n_dir)
    x, lens, (h0, c0) = _prepare(x, sequence_lens, [initial_h, initial_c], layout, n_dir, hs)
    bias = None if b is None else (b[:, :4 * hs] + b[:, 4 * hs:]).astype(x.dtype)
    peep = None if p is None else p.astype(x.dtype)

    def step(d, gx, cur, clip):
        f, g, h = acts[d]
        hp, cp = cur
        gates = gx + hp @ r[d].T
        gi, go, gf, gc = (gates[:, k * hs:(k + 1) * hs] for k in range(4))
        if peep is not None:
            gi = gi + peep[d, :hs] * cp
            gf = gf + peep[d, 2 * hs:] * cp
        i = f(_clip(gi, clip))
        ft = 1 - i if input_forget else f(_clip(gf, clip))
        c = ft * cp + i * g(_clip(gc, clip))
        if peep is not None:
            go = go + peep[d, hs:2 * hs] * c
        o = f(_clip(go, clip))
        ht = o * h(c)
        return ht, [ht, c]

    y, finals = _run(x, w, r, bias, lens, [h0, c0], direction, clip, step)
    return _results(y, finals, layout, _outputs)


@kernel("GRU", (7, 14, 22))
def gru(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward",
        hidden_size=None, layout=0, linear_before_reset=0, _outputs=1):
    n_dir, hs = w.shape[0], r.shape[-1]
    direction = _direction(direction, n_dir)
    acts = _activations(activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh"],
                        n_dir)
    x, lens, (h0,) = _prepare(x, sequence_lens, [initial_h], layout, n_dir, hs)
    wb = None if b is None else b[:, :3 * hs].astype(x.dtype)
    rb = np.zeros((n_dir, 3 * hs), x.dtype) if b is None else b[:, 3 * hs:].astype(x.dtype)

    def step(d, gx, cur, clip):
        f, g = acts[d]
        (hp,) = cur
        rz = r[d][:2 * hs]
        rh = r[d][2 * hs:]
        zr = gx[:, :2 * hs] + hp @ rz.T + rb[d, :2 * hs]
        z = f(_clip(zr[:, :hs], clip))
        rt = f(_clip(zr[:, hs:], clip))
        if linear_before_reset:
            hh = gx[:, 2 * hs:] + rt * (hp @ rh.T + rb[d, 2 * hs:])
        else:
            hh = gx[:, 2 * hs:] + (rt * hp) @ rh.T + rb[d, 2 * hs:]
        ht = (1 - z) * g(_clip(hh, clip)) + z * hp
        return ht, [ht]

    y, finals = _run(x, w, r, wb, lens, [h0], direction, clip, step)
    return _results(y, finals, layout, _outputs)


@kernel("RNN", (7, 14, 22))
def rnn(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=[b"Tanh", b"Tanh"],  # noqa: B006 -- spec default
        clip=None, direction="forward", hidden_size=None, layout=0, _outputs=1):
    if activations is not None and list(activations) == [b"Tanh", b"Tanh"]:
        activations = None  # the schema's default names both directions
    n_dir, hs = w.shape[0], r.shape[-1]
    direction = _direction(direction, n_dir)
    acts = _activations(activations, activation_alpha, activation_beta, ["Tanh"], n_dir)
    x, lens, (h0,) = _prepare(x, sequence_lens, [initial_h], layout, n_dir, hs)
    bias = None if b is None else (b[:, :hs] + b[:, hs:]).astype(x.dtype)

    def step(d, gx, cur, clip):
        ht = acts[d][0](_clip(gx + cur[0] @ r[d].T, clip))
        return ht, [ht]

    y, finals = _run(x, w, r, bias, lens, [h0], direction, clip, step)
    return _results(y, finals, layout, _outputs)


# --- Optional -----------------------------------------------------------------------------------
# an optional value is the value itself, or None when empty
@kernel("Optional", (15, 28))
def optional(x=None, *, type=None):  # noqa: A002 -- the ONNX attribute name
    return x


@kernel("OptionalHasElement", (15, 18, 28))
def optional_has_element(x=None):
    return np.array(x is not None)


@kernel("OptionalGetElement", (15, 18, 28))
def optional_get_element(x=None):
    if x is None:
        raise OptcError("OptionalGetElement of an empty optional")
    return x


# --- schema 1 / 3: the same layers with an output_sequence flag (Y is always computed) -------
@kernel("LSTM", (1,))
def lstm_1(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
           activation_alpha=None, activation_beta=None, activations=None, clip=None,
           direction="forward", hidden_size=None, input_forget=0, output_sequence=0,
           _outputs=1):
    return lstm(x, w, r, b, sequence_lens, initial_h, initial_c, p,
                activation_alpha=activation_alpha, activation_beta=activation_beta,
                activations=activations, clip=clip, direction=direction,
                input_forget=input_forget, _outputs=_outputs)


@kernel("GRU", (1,))
def gru_1(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
          activation_beta=None, activations=None, clip=None, direction="foward",
          hidden_size=None, output_sequence=0, _outputs=1):
    # "foward": the spelling of GRU-1's default in the ONNX schema
    return gru(x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
               activation_beta=activation_beta, activations=activations, clip=clip,
               direction=direction, _outputs=_outputs)


@kernel("GRU", (3,))
def gru_3(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
          activation_beta=None, activations=None, clip=None, direction="forward",
          hidden_size=None, linear_before_reset=0, output_sequence=0, _outputs=1):
    return gru(x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
               activation_beta=activation_beta, activations=activations, clip=clip,
               direction=direction, linear_before_reset=linear_before_reset,
               _outputs=_outputs)


@kernel("RNN", (1,))
def rnn_1(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
          activation_beta=None, activations=[b"Tanh", b"Tanh"],  # noqa: B006 -- spec default
          clip=None, direction="forward", hidden_size=None, output_sequence=0, _outputs=1):
    if list(activations) == [b"Tanh", b"Tanh"]:
        activations = None  # the schema's default names both directions
    return rnn(x, w, r, b, sequence_lens, initial_h, activation_alpha=activation_alpha,
               activation_beta=activation_beta, activations=activations, clip=clip,
               direction=direction, _outputs=_outputs)
