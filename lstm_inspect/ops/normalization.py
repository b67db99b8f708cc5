"""Normalisation layers, at inference time: Normalization (the preprocessing layer), Rescaling,
BatchNormalization (moving statistics), LayerNormalization, UnitNormalization, GroupNormalization
and RMSNormalization.

Axes are Keras': counted on the batch-first input, 0 being the batch axis,
negative from the end.  A stored parameter over several axes (a gamma of
shape (T, F) for ``axis=[1, 2]``) is laid onto the input by reshaping it to
the input's sizes on those axes and 1 elsewhere, as both Kerases do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, Layer, Tensor, register

# keras.backend.epsilon(): the floor of Normalization's standard deviation (not stored in files).
KERAS_EPSILON = 1e-7
# UnitNormalization's floor on the norm (Keras 3: 1/rsqrt(sum x²) is capped at 1e12).
UNIT_EPSILON = 1e-12


def _scale_center(config: Mapping[str, Any], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = []
    if config.get("scale", True):
        names.append("gamma")
    if config.get("center", True):
        names.append("beta")
    return tuple(names) + extra


def _axes(ctx: BuildContext, key: str = "axis", default: Any = -1, *, allow_none: bool = False) -> tuple[int, ...]:
    """Config axes as a tuple of ints (an int is one axis; None is no axis where allowed)."""
    value = ctx.get(key, default)
    if value is None and allow_none:
        return ()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if (not values and not allow_none) or any(isinstance(a, bool) or not isinstance(a, int) or abs(a) > 64 for a in values):
        raise ctx.bad_file(f"{key} is {value!r}, not an axis or a list of axes")
    return tuple(values)


def _epsilon(ctx: BuildContext, default: float) -> float:
    value = ctx.get("epsilon", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ctx.bad_file(f"epsilon is {value!r}, not a finite number >= 0")
    return float(value)


def _resolve(name: str, axes: Sequence[int], x: NDArray) -> list[int]:
    """The axes as non-negative indices of ``x``; an error naming the layer when one is outside it."""
    resolved = []
    for axis in axes:
        if not -x.ndim <= axis < x.ndim:
            raise InputDataError(f"layer '{name}': axis {axis} is outside its input of shape {x.shape}")
        resolved.append(axis % x.ndim)
    if len(set(resolved)) != len(resolved):
        raise InputDataError(f"layer '{name}': axes {list(axes)} name the same axis of its input twice")
    return resolved


def _lay_onto(name: str, what: str, param: NDArray | None, axes: Sequence[int], x: NDArray) -> NDArray | None:
    """A stored parameter shaped to broadcast against ``x``: the input's sizes on ``axes``, 1 elsewhere."""
    if param is None:
        return None
    shape = [1] * x.ndim
    for axis in axes:
        shape[axis] = x.shape[axis]
    if param.size != math.prod(shape):
        raise InputDataError(
            f"layer '{name}': {what} of shape {param.shape} does not fit axes {list(axes)} of its input {x.shape}"
        )
    return param.reshape(shape)


class Normalization(Layer):
    """The preprocessing layer: ``(x - mean) / max(sqrt(variance), 1e-7)``, or with ``invert``
    ``mean + x·max(sqrt(variance), 1e-7)``.

    ``axis`` lists the axes that keep their own statistics (default -1: one
    mean per feature; none: one mean for everything).  ``mean`` and
    ``variance`` are the adapted weights, or the config's values when the
    layer was given them; either is laid onto the kept axes, trailing axes
    first, as Keras broadcasts them.
    """

    def __init__(self, name: str, axes: tuple[int, ...], mean: NDArray, variance: NDArray, invert: bool) -> None:
        self.name, self.axes, self.invert = name, axes, invert
        self.mean, self.variance = mean, variance

    def _stat(self, value: NDArray, keep: list[int], x: NDArray) -> NDArray:
        kept = [x.shape[axis] for axis in keep]
        try:
            value = np.broadcast_to(value, kept)
        except ValueError:
            raise InputDataError(
                f"layer '{self.name}' (Normalization): mean/variance of shape {value.shape} do not fit the kept "
                f"axes {keep} of its input {x.shape}"
            ) from None
        return _lay_onto(self.name, "mean", value, keep, x)  # type: ignore[return-value]

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        keep = sorted(_resolve(self.name, self.axes, x))
        mean = self._stat(self.mean, keep, x)
        spread = np.maximum(np.sqrt(self._stat(self.variance, keep, x)), x.dtype.type(KERAS_EPSILON))
        y = mean + x * spread if self.invert else (x - mean) / spread
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


def _normalization_variables(config: Mapping[str, Any]) -> tuple[str, ...]:
    # Adapted statistics are weights; statistics given to the constructor live in the config.
    return ("mean", "variance", "count") if config.get("mean") is None else ()


def _config_array(ctx: BuildContext, key: str, value: Any) -> NDArray:
    """A number or nested list from the config (Keras 3 may wrap an array as ``__numpy__``)."""
    if isinstance(value, Mapping) and value.get("class_name") == "__numpy__":
        inner = value.get("config")
        value = inner.get("value") if isinstance(inner, Mapping) else None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.bad_file(f"{key} is {str(value)[:40]!r}, not a number or a list of numbers") from None
    if array.size > 1 << 24 or not np.all(np.isfinite(array)):
        raise ctx.bad_file(f"{key} holds values that are not finite numbers")
    return array.astype(ctx.dtype)


@register("Normalization", variables=_normalization_variables)
def build_normalization(ctx: BuildContext) -> Layer:
    axes = _axes(ctx, allow_none=True)
    if ctx.get("mean") is not None:
        if ctx.get("variance") is None:
            raise ctx.bad_file("the config gives a mean but no variance")
        mean, variance = _config_array(ctx, "mean", ctx.get("mean")), _config_array(ctx, "variance", ctx.get("variance"))
    else:
        mean, variance = ctx.weight("mean"), ctx.weight("variance")
    if mean.shape != variance.shape or mean.ndim > len(axes):
        raise ctx.bad_file(f"mean {mean.shape} and variance {variance.shape} do not fit axis {list(axes)}")
    invert = ctx.get("invert", False)
    if not isinstance(invert, bool):
        raise ctx.bad_file(f"invert is {invert!r}, not true or false")
    return Normalization(ctx.name, axes, mean, variance, invert)


class Rescaling(Layer):
    """``x·scale + offset``; a list of scales or offsets applies along the last axes."""

    def __init__(self, name: str, scale: NDArray, offset: NDArray) -> None:
        self.name, self.scale, self.offset = name, scale, offset

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        try:
            y = x * self.scale + self.offset
        except ValueError:
            y = None
        if y is None or y.shape != x.shape:
            raise InputDataError(f"layer '{self.name}' (Rescaling): scale {self.scale.shape} and offset "
                                 f"{self.offset.shape} do not fit its input {x.shape}")
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


@register("Rescaling")
def build_rescaling(ctx: BuildContext) -> Layer:
    return Rescaling(ctx.name, _config_array(ctx, "scale", ctx.get("scale")),
                     _config_array(ctx, "offset", ctx.get("offset", 0.0)))


class BatchNorm(Layer):
    """``(x - moving_mean) / sqrt(moving_variance + epsilon)·gamma + beta`` over ``axis``
    (Keras 3: one axis; tf-keras: one or several)."""

    def __init__(self, name: str, axes: tuple[int, ...], mean, variance, gamma, beta, eps: float) -> None:
        self.name, self.axes = name, axes
        self.mean, self.variance, self.gamma, self.beta, self.eps = mean, variance, gamma, beta, eps

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        axes = _resolve(self.name, self.axes, x)
        mean = _lay_onto(self.name, "moving_mean", self.mean, axes, x)
        inv = 1.0 / np.sqrt(_lay_onto(self.name, "moving_variance", self.variance, axes, x) + x.dtype.type(self.eps))
        if self.gamma is not None:
            inv = inv * _lay_onto(self.name, "gamma", self.gamma, axes, x)
        y = (x - mean) * inv
        if self.beta is not None:
            y = y + _lay_onto(self.name, "beta", self.beta, axes, x)
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


@register("BatchNormalization", variables=lambda config: _scale_center(config, ("moving_mean", "moving_variance")))
def build_batch_norm(ctx: BuildContext) -> Layer:
    # renorm=True adds moving_stddev, renorm_mean and renorm_stddev, which act only in training.
    return BatchNorm(ctx.name, _axes(ctx), ctx.weight("moving_mean"), ctx.weight("moving_variance"),
                     ctx.weight("gamma", required=False), ctx.weight("beta", required=False), _epsilon(ctx, 1e-3))


class LayerNorm(Layer):
    """Per sample, over ``axis``: ``(x - mean)/sqrt(var + epsilon)·gamma + beta``.

    Keras 3's (deprecated) ``rms_scaling=True`` computes ``x/sqrt(var + epsilon)·gamma``:
    it divides by the variance about the mean but does not subtract the mean, and has no beta.
    """

    def __init__(self, name: str, axes: tuple[int, ...], gamma, beta, eps: float, rms_scaling: bool) -> None:
        self.name, self.axes, self.gamma, self.beta, self.eps, self.rms_scaling = name, axes, gamma, beta, eps, rms_scaling

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        axes = _resolve(self.name, self.axes, x)
        reduce = tuple(axes)
        mean = x.mean(axis=reduce, keepdims=True)
        inv = 1.0 / np.sqrt(x.var(axis=reduce, keepdims=True) + x.dtype.type(self.eps))
        if self.gamma is not None:
            inv = inv * _lay_onto(self.name, "gamma", self.gamma, axes, x)
        if self.rms_scaling:
            return self.wrap(inputs, (x * inv).astype(x.dtype, copy=False))
        y = x * inv - mean * inv
        if self.beta is not None:
            y = y + _lay_onto(self.name, "beta", self.beta, axes, x)
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


def _layer_norm_variables(config: Mapping[str, Any]) -> tuple[str, ...]:
    rms = bool(config.get("rms_scaling", False))
    names = []
    if config.get("scale", True) or rms:
        names.append("gamma")
    if config.get("center", True) and not rms:
        names.append("beta")
    return tuple(names)


@register("LayerNormalization", variables=_layer_norm_variables)
def build_layer_norm(ctx: BuildContext) -> Layer:
    rms = ctx.get("rms_scaling", False)
    if not isinstance(rms, bool):
        raise ctx.bad_file(f"rms_scaling is {rms!r}, not true or false")
    return LayerNorm(ctx.name, _axes(ctx), ctx.weight("gamma", required=False), ctx.weight("beta", required=False),
                     _epsilon(ctx, 1e-3), rms)


class UnitNormalization(Layer):
    """``x / ||x||`` over ``axis`` (L2 norm; Keras 3 caps 1/||x|| at 1e12, so a zero vector stays zero)."""

    def __init__(self, name: str, axes: tuple[int, ...]) -> None:
        self.name, self.axes = name, axes

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        axes = tuple(_resolve(self.name, self.axes, x))
        square_sum = np.sum(np.square(x), axis=axes, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.minimum(1.0 / np.sqrt(square_sum), x.dtype.type(1.0 / UNIT_EPSILON))
        return self.wrap(inputs, (x * inv).astype(x.dtype, copy=False))


@register("UnitNormalization")
def build_unit_normalization(ctx: BuildContext) -> Layer:
    return UnitNormalization(ctx.name, _axes(ctx))


class GroupNorm(Layer):
    """The ``axis`` channels split into ``groups`` consecutive groups; each sample's group is
    normalised over its channels and every other axis, then ``·gamma + beta`` per channel."""

    def __init__(self, name: str, groups: int, axis: int, gamma, beta, eps: float) -> None:
        self.name, self.groups, self.axis, self.gamma, self.beta, self.eps = name, groups, axis, gamma, beta, eps

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        (axis,) = _resolve(self.name, (self.axis,), x)
        channels = x.shape[axis]
        groups = channels if self.groups == -1 else self.groups
        if axis == 0 or channels % groups:
            raise InputDataError(f"layer '{self.name}' (GroupNormalization): {groups} groups do not divide axis {axis} "
                                 f"of its input {x.shape}")
        grouped = x.reshape(x.shape[:axis] + (groups, channels // groups) + x.shape[axis + 1:])
        reduce = tuple(a for a in range(1, grouped.ndim) if a != axis)
        mean = grouped.mean(axis=reduce, keepdims=True)
        inv = 1.0 / np.sqrt(grouped.var(axis=reduce, keepdims=True) + x.dtype.type(self.eps))
        shape = [1] * grouped.ndim
        shape[axis], shape[axis + 1] = groups, channels // groups
        if self.gamma is not None:
            inv = inv * self._param("gamma", self.gamma, channels).reshape(shape)
        y = grouped * inv - mean * inv
        if self.beta is not None:
            y = y + self._param("beta", self.beta, channels).reshape(shape)
        return self.wrap(inputs, y.reshape(x.shape).astype(x.dtype, copy=False))

    def _param(self, what: str, value: NDArray, channels: int) -> NDArray:
        if value.shape != (channels,):
            raise InputDataError(f"layer '{self.name}' (GroupNormalization): {what} {value.shape} does not fit "
                                 f"{channels} channels")
        return value


@register("GroupNormalization", variables=_scale_center)
def build_group_norm(ctx: BuildContext) -> Layer:
    groups = ctx.get("groups", 32)
    if isinstance(groups, bool) or not isinstance(groups, int) or not (groups == -1 or 1 <= groups <= 1 << 20):
        raise ctx.bad_file(f"groups is {groups!r}, not a positive number of groups (or -1)")
    axis = ctx.get("axis", -1)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ctx.bad_file(f"axis is {axis!r}, not one axis")
    return GroupNorm(ctx.name, groups, axis, ctx.weight("gamma", required=False), ctx.weight("beta", required=False),
                     _epsilon(ctx, 1e-3))


class RMSNorm(Layer):
    """Keras 3's RMSNormalization: ``x / sqrt(mean(x²) + epsilon)·scale`` over ``axis``.

    ``scale`` is multiplied as stored (NumPy broadcasting, as Keras does), so
    a one-axis scale lines up with the last axis.  Keras 3 does not pass the
    mask on through this layer.
    """

    keeps_mask = False

    def __init__(self, name: str, axes: tuple[int, ...], scale: NDArray, eps: float) -> None:
        self.name, self.axes, self.scale, self.eps = name, axes, scale, eps

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        axes = tuple(_resolve(self.name, self.axes, x))
        inv = 1.0 / np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True) + x.dtype.type(self.eps))
        try:
            y = x * inv * self.scale
        except ValueError:
            raise InputDataError(f"layer '{self.name}' (RMSNormalization): scale {self.scale.shape} does not "
                                 f"broadcast against its input {x.shape}") from None
        if y.shape != x.shape:
            raise InputDataError(f"layer '{self.name}' (RMSNormalization): scale {self.scale.shape} does not fit "
                                 f"its input {x.shape}")
        return self.wrap(inputs, y.astype(x.dtype, copy=False))


@register("RMSNormalization", variables=("scale",))
def build_rms_norm(ctx: BuildContext) -> Layer:
    return RMSNorm(ctx.name, _axes(ctx), ctx.weight("scale"), _epsilon(ctx, 1e-6))
