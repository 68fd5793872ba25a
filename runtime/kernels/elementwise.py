"""Element-wise kernels: activations, arithmetic with broadcasting, Clip, Sum, Cast, Identity,
Dropout (inference)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from optc.errors import OptcError
from optc.runtime import plan
from optc.runtime.registry import kernel


def _scalar(x: np.ndarray, value: float):
    return x.dtype.type(value)


# --- activations ------------------------------------------------------------------------------
@kernel("Relu", (1, 6, 13, 14))
def relu(x, *, consumed_inputs=None):
    return np.maximum(x, _scalar(x, 0))


@kernel("LeakyRelu", (1, 6, 16))
def leaky_relu(x, *, alpha=0.01, consumed_inputs=None):
    return np.where(x >= 0, x, x * _scalar(x, alpha))


@kernel("Sigmoid", (1, 6, 13))
def sigmoid(x, *, consumed_inputs=None):
    # split by sign so that exp never overflows
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


@kernel("HardSigmoid", (1, 6, 22))
def hard_sigmoid(x, *, alpha=0.2, beta=0.5, consumed_inputs=None):
    return np.clip(x * _scalar(x, alpha) + _scalar(x, beta), _scalar(x, 0), _scalar(x, 1))


@kernel("HardSwish", (14, 22))
def hard_swish(x):
    return x * hard_sigmoid(x, alpha=1 / 6, beta=0.5)


@kernel("Tanh", (1, 6, 13))
def tanh(x, *, consumed_inputs=None):
    return np.tanh(x)


# --- Clip ---------------------------------------------------------------------------------------
@kernel("Clip", (1, 6))
def clip_attrs(x, *, min=-3.4028234663852886e38, max=3.4028234663852886e38,  # noqa: A002
               consumed_inputs=None):
    return np.clip(x, _scalar(x, min), _scalar(x, max)).astype(x.dtype)


@kernel("Clip", (11, 12, 13))
def clip(x, min=None, max=None):  # noqa: A002
    out = x
    if min is not None:
        out = np.maximum(out, min)
    if max is not None:
        out = np.minimum(out, max)
    return out.astype(x.dtype, copy=False) if out is not x else x.copy()


# --- binary arithmetic --------------------------------------------------------------------------
def legacy_broadcast(a, b, broadcast, axis):
    """Opset < 7 broadcasting: B's shape matches a contiguous run of A's dims starting at
    ``axis`` (default: the trailing dims)."""
    if not broadcast or b.shape == a.shape:
        return b
    if axis is None:
        axis = a.ndim - b.ndim
    if axis < 0:
        axis += a.ndim
    return b.reshape(b.shape + (1,) * (a.ndim - axis - b.ndim))


def _binary(op):
    def legacy(a, b, *, broadcast=0, axis=None, consumed_inputs=None):
        return np.asarray(op(a, legacy_broadcast(a, b, broadcast, axis)))

    def modern(a, b):
        return np.asarray(op(a, b))

    return legacy, modern


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        # ONNX integer division truncates toward zero (C semantics), unlike NumPy's floor
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(a.dtype)
    return a / b


def _binary_plan(mul: bool):
    """Add's and Mul's plan hook (registry: ``plan``): float32 operands broadcast as
    plan.binary_op takes them."""
    def plan_hook(args, attrs):
        a, b = args
        if a.__class__ is not np.ndarray or b.__class__ is not np.ndarray or \
                a.dtype != np.float32 or b.dtype != np.float32:
            return None
        return plan.binary_op(mul, a.shape, b.shape)
    return plan_hook


for _name, _op in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", _div)):
    _legacy, _modern = _binary(_op)
    _legacy.__name__, _modern.__name__ = f"{_name.lower()}_legacy", _name.lower()
    kernel(_name, (1, 6))(_legacy)
    kernel(_name, (7, 13, 14),
           plan=_binary_plan(_name == "Mul") if _name in ("Add", "Mul") else None)(_modern)


@kernel("Sum", (1, 6))
def sum_same_shape(*xs, consumed_inputs=None):
    out = xs[0].copy()
    for x in xs[1:]:
        if x.shape != out.shape:
            raise OptcError(f"Sum before opset 8 needs equal shapes, got {out.shape} and "
                            f"{x.shape}")
        out += x
    return out


@kernel("Sum", (8, 13))
def sum_(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return np.array(out, copy=True) if out is xs[0] else out


# --- Cast, Identity, Dropout --------------------------------------------------------------------
#: element types NumPy lacks, which onnx maps to ml_dtypes' types
_LOW_PRECISION = frozenset((
    "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
    "float8_e8m0fnu", "float4_e2m1fn", "int4", "uint4", "int2", "uint2"))


@kernel("Cast", (1, 6, 9, 13, 19, 21, 23, 24, 25, 28))
def cast(x, *, to, saturate=1, round_mode="up"):
    if isinstance(to, str):  # opset 1 spelled the type as a string
        to = getattr(TensorProto, to.upper())
    try:
        dtype = helper.tensor_dtype_to_np_dtype(to)
    except (KeyError, ValueError) as e:
        raise OptcError(f"Cast to element type {to} is not supported") from e
    if dtype.name in _LOW_PRECISION:
        # bfloat16, float8, float4, int4, int2 (ml_dtypes types): onnx.reference's cast, which
        # implements saturate (float8) and round_mode (float8e8m0)
        from onnx.reference.ops.op_cast import cast_to

        return cast_to(x, to, bool(saturate), round_mode)
    if dtype.kind not in "biuf" or dtype.itemsize == 0:
        raise OptcError(f"Cast to {dtype} is not supported by optc.runtime")
    if x.dtype.kind == "U" or x.dtype == object:
        return x.astype(np.float64).astype(dtype) if dtype.kind == "f" else x.astype(dtype)
    if dtype.kind in "iu" and x.dtype.kind == "f":
        # float -> int truncates toward zero (C semantics), which NumPy's astype does too
        return x.astype(dtype)
    return x.astype(dtype)


@kernel("Identity", (1, 13, 14, 16, 19, 21, 23, 24, 25))
def identity(x):
    return x


@kernel("Dropout", (1, 6, 7, 10))
def dropout_legacy(x, *, ratio=0.5, is_test=0, consumed_inputs=None, _outputs=1):
    # an inference runtime: identity whatever is_test says (as onnxruntime does); the
    # optional mask (opset >= 7) is all ones
    if _outputs > 1:
        return x, np.ones(x.shape, dtype=np.bool_)
    return x


@kernel("Dropout", (12, 13, 22))
def dropout(x, ratio=None, training_mode=None, *, seed=None, _outputs=1):
    if training_mode is not None and bool(training_mode) and \
            (ratio is None or float(ratio) != 0.0):
        raise OptcError("Dropout in training mode is not supported (optc.runtime runs "
                        "inference)")
    if _outputs > 1:
        return x, np.ones(x.shape, dtype=np.bool_)
    return x
