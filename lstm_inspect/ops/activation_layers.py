"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax and tf-keras' ThresholdedReLU.

All of them keep the mask, as in Keras.  Softmax is the only one that reads
it (see :class:`Softmax`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, FunctionLayer, Layer, Tensor, register

# Keras (3 and tf-keras) puts this in front of masked entries before a softmax (float32 and wider).
MASKED_LOGIT = -1e9


def _number(ctx: BuildContext, key: str, default: Any, *, allow_none: bool = False) -> float | None:
    """A finite number from the config (None allowed where Keras allows it)."""
    value = ctx.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ctx.bad_file(f"{key} is {value!r}, not a finite number")
    return float(value)


def relu(x: NDArray, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0) -> NDArray:
    """Keras' generalised ReLU (``keras.activations.relu``; tf-keras ``backend.relu`` is the same).

    Above ``threshold``: x, clipped to [0, max_value] when ``max_value`` is set
    (without a threshold: relu, then the clip).  Below: ``negative_slope·(x - threshold)``.
    """
    dtype = x.dtype.type
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        return np.where(x > 0, x, x * dtype(negative_slope))
    below = np.maximum(dtype(threshold) - x, 0) if negative_slope != 0.0 else None
    y = np.where(x > dtype(threshold), x, dtype(0)) if threshold != 0.0 else np.maximum(x, 0)
    if max_value is not None:
        y = np.clip(y, dtype(0), dtype(max_value))
    if below is not None:
        y = y - dtype(negative_slope) * below
    return y.astype(x.dtype, copy=False)


@register("ReLU")
def build_relu(ctx: BuildContext) -> Layer:
    slope = _number(ctx, "negative_slope", 0.0)
    max_value = _number(ctx, "max_value", None, allow_none=True)
    threshold = _number(ctx, "threshold", 0.0)
    return FunctionLayer(lambda x: relu(x, slope, max_value, threshold))


@register("LeakyReLU")
def build_leaky_relu(ctx: BuildContext) -> Layer:
    # Keras 3 writes negative_slope; tf-keras and Keras 2 wrote alpha.  Both default to 0.3.
    key = "negative_slope" if ctx.get("negative_slope") is not None else "alpha"
    slope = _number(ctx, key, 0.3)
    return FunctionLayer(lambda x: np.where(x > 0, x, x * x.dtype.type(slope)))


@register("ThresholdedReLU")
def build_thresholded_relu(ctx: BuildContext) -> Layer:
    theta = _number(ctx, "theta", 1.0)
    return FunctionLayer(lambda x: x * (x > x.dtype.type(theta)).astype(x.dtype))


@register("ELU")
def build_elu(ctx: BuildContext) -> Layer:
    alpha = _number(ctx, "alpha", 1.0)

    def elu(x: NDArray) -> NDArray:
        negative = np.expm1(np.minimum(x, 0))
        return np.where(x > 0, x, negative * x.dtype.type(alpha)).astype(x.dtype, copy=False)

    return FunctionLayer(elu)


class PReLU(Layer):
    """``relu(x) - alpha·relu(-x)`` with a learnt ``alpha`` of the input's shape after the batch
    axis (1 along ``shared_axes``)."""

    def __init__(self, name: str, alpha: NDArray) -> None:
        self.name, self.alpha = name, alpha

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        alpha = self.alpha
        if alpha.ndim > x.ndim - 1 or any(a not in (1, d) for a, d in zip(alpha.shape[::-1], x.shape[:0:-1])):
            raise InputDataError(f"layer '{self.name}' (PReLU): alpha {alpha.shape} does not fit its input {x.shape}")
        return self.wrap(inputs, np.maximum(x, 0) - alpha * np.maximum(-x, 0))


@register("PReLU", variables=("alpha",))
def build_prelu(ctx: BuildContext) -> Layer:
    return PReLU(ctx.name, ctx.weight("alpha"))


class Softmax(Layer):
    """``exp(x) / sum(exp(x))`` over ``axis`` (an int or a list of axes).

    With a mask, Keras 3 puts -1e9 in front of masked entries and zeroes them
    afterwards.  The mask the replay carries is one flag per (sequence, step):
    it is used when the input is (N, T), one value per step.  Over an (N, T, F)
    input Keras lines the (N, T) mask up with the last two axes, so the result
    depends on the batch size (and fails for most sizes): that is refused.
    """

    def __init__(self, name: str, axis: int | tuple[int, ...]) -> None:
        self.name, self.axis = name, axis

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x, mask = inputs[0].value, inputs[0].mask
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if any(not -x.ndim <= a < x.ndim for a in axes) or len({a % x.ndim for a in axes}) != len(axes):
            raise InputDataError(f"layer '{self.name}' (Softmax): axis {self.axis} does not name distinct axes of its "
                                 f"input of shape {x.shape}")
        if mask is not None:
            if mask.shape != x.shape:
                raise InputDataError(
                    f"layer '{self.name}' (Softmax) gets a step mask over an input of shape {x.shape}: Keras lines the "
                    "mask up with the input's last axes, which depends on the batch size; this is not replayed"
                )
            x = np.where(mask, x, x.dtype.type(MASKED_LOGIT))
        shifted = x - x.max(axis=axes, keepdims=True)
        e = np.exp(shifted)
        y = e / e.sum(axis=axes, keepdims=True)
        if mask is not None:
            y = np.where(mask, y, y.dtype.type(0))
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


@register("Softmax")
def build_softmax(ctx: BuildContext) -> Layer:
    axis = ctx.get("axis", -1)
    if isinstance(axis, (list, tuple)) and len(axis) >= 1:
        values = tuple(axis)
    else:
        values = (axis,)
    if any(isinstance(a, bool) or not isinstance(a, int) or abs(a) > 64 for a in values):
        raise ctx.bad_file(f"axis is {axis!r}, not an axis or a list of axes")
    return Softmax(ctx.name, values if isinstance(axis, (list, tuple)) else values[0])
