"""Layers that move values around: Reshape, Permute, Flatten, ZeroPadding1D/2D/3D, Cropping1D/2D/3D,
UpSampling1D/2D/3D and RepeatVector.

None of them passes a mask on: Keras 3 drops it (these layers do not support
masking: "this layer ... will therefore destroy the mask information"), and
tf-keras refuses to build a model that feeds them a mask.

``data_format`` follows Keras: ``channels_last`` (the default, (N, *spatial, C))
or ``channels_first`` ((N, C, *spatial)); Keras 1's ``dim_ordering`` ``th``/``tf``
mean the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, Layer, Tensor, register

MAX_REPEAT = 1_000_000  # RepeatVector's n, an upsampling factor, a padding or cropping: at most this
MAX_ELEMENTS = 1 << 29  # a padded, upsampled or repeated output may hold at most this many values


def data_format(ctx: BuildContext) -> str:
    """``channels_last`` or ``channels_first`` from the config (Keras 1: ``dim_ordering``)."""
    value = ctx.get("data_format")
    if value is None:
        value = {"th": "channels_first", "tf": "channels_last"}.get(ctx.get("dim_ordering"), "channels_last")
    if value not in ("channels_last", "channels_first"):
        raise ctx.bad_file(f"data_format is {value!r}, not channels_last or channels_first")
    return value


def _count(ctx: BuildContext, key: str, value: Any, low: int) -> int:
    """A whole number from ``low`` to MAX_REPEAT taken from config ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_REPEAT:
        raise ctx.bad_file(f"{key} is {value!r}, not a whole number from {low} to {MAX_REPEAT:,}")
    return value


def _per_axis(ctx: BuildContext, key: str, value: Any, rank: int, low: int) -> tuple[int, ...]:
    """An int or a list of ``rank`` ints (Keras' ``standardize_tuple``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ctx.bad_file(f"{key} is {value!r}, not {rank} whole numbers")
        return tuple(_count(ctx, key, v, low) for v in value)
    return (_count(ctx, key, value, low),) * rank


def _pairs(ctx: BuildContext, key: str, rank: int) -> tuple[tuple[int, int], ...]:
    """Padding or cropping per spatial axis as (before, after) pairs.

    Keras takes an int (the same everywhere), ``rank`` ints (symmetric per
    axis) or ``rank`` pairs; 1D layers take an int or one pair.
    """
    value = ctx.get(key)
    if rank == 1:
        return (_per_axis(ctx, key, value, 2, 0),)  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ctx.bad_file(f"{key} is {value!r}, not {rank} entries")
        return tuple(_per_axis(ctx, key, v, 2, 0) for v in value)  # type: ignore[misc]
    amount = _count(ctx, key, value, 0)
    return ((amount, amount),) * rank


def _spatial_axes(rank: int, channels_first: bool) -> tuple[int, ...]:
    """The axes of (N, ...) that padding, cropping and upsampling act on."""
    return tuple(range(2, rank + 2)) if channels_first else tuple(range(1, rank + 1))


def _check_rank(name: str, x: NDArray, rank: int) -> None:
    if x.ndim != rank + 1:
        raise InputDataError(f"layer '{name}' takes inputs of rank {rank} (after the batch axis); got shape {x.shape}")


def _check_size(name: str, shape: Sequence[int]) -> None:
    if math.prod(shape) > MAX_ELEMENTS:
        raise InputDataError(f"layer '{name}' would make an array of shape {tuple(shape)}, more than {MAX_ELEMENTS:,} values")


class Reshape(Layer):
    """(N, ...) -> (N, *target_shape); one entry of the target may be -1 (whatever is left)."""

    keeps_mask = False

    def __init__(self, name: str, target: tuple[int, ...]) -> None:
        self.name, self.target = name, target

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        size = math.prod(x.shape[1:])
        known = math.prod(d for d in self.target if d != -1)
        if (size != known) if -1 not in self.target else (known == 0 or size % known):
            raise InputDataError(
                f"layer '{self.name}' (Reshape) cannot make {x.shape[1:]} into target_shape {list(self.target)}"
            )
        return [Tensor(x.reshape((x.shape[0],) + self.target))]


@register("Reshape")
def build_reshape(ctx: BuildContext) -> Layer:
    target = ctx.get("target_shape")
    if not isinstance(target, (list, tuple)) or not target:
        raise ctx.bad_file(f"target_shape is {target!r}, not a list of sizes")
    if any(isinstance(d, bool) or not isinstance(d, int) or not (d == -1 or 1 <= d <= MAX_ELEMENTS) for d in target) \
            or list(target).count(-1) > 1:
        raise ctx.bad_file(f"target_shape is {list(target)!r}, not positive sizes with at most one -1")
    return Reshape(ctx.name, tuple(target))


class Permute(Layer):
    """Reorder the axes after the batch axis: ``dims`` is a permutation of 1..k."""

    keeps_mask = False

    def __init__(self, name: str, dims: tuple[int, ...]) -> None:
        self.name, self.dims = name, dims

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        _check_rank(self.name, x, len(self.dims))
        return [Tensor(np.ascontiguousarray(x.transpose((0,) + self.dims)))]


@register("Permute")
def build_permute(ctx: BuildContext) -> Layer:
    dims = ctx.get("dims")
    if not isinstance(dims, (list, tuple)) or any(isinstance(d, bool) for d in dims) \
            or sorted(dims) != list(range(1, len(dims) + 1)):
        raise ctx.bad_file(f"dims is {dims!r}, not a permutation of 1..k")
    return Permute(ctx.name, tuple(dims))


class Flatten(Layer):
    """(N, ...) -> (N, D).  With ``channels_first`` the channel axis (1) is moved last first,
    so that the order of the values is that of the channels_last layout (Keras does this)."""

    keeps_mask = False

    def __init__(self, channels_first: bool = False) -> None:
        self.channels_first = channels_first

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        if self.channels_first and x.ndim > 2:
            x = x.transpose((0, *range(2, x.ndim), 1))
        return [Tensor(x.reshape(x.shape[0], -1))]


@register("Flatten")
def build_flatten(ctx: BuildContext) -> Layer:
    return Flatten(data_format(ctx) == "channels_first")


class ZeroPadding(Layer):
    """Zeros before and after each spatial axis."""

    keeps_mask = False

    def __init__(self, name: str, pads: tuple[tuple[int, int], ...], channels_first: bool) -> None:
        self.name, self.pads, self.channels_first = name, pads, channels_first

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        rank = len(self.pads)
        _check_rank(self.name, x, rank + 1)
        widths = [(0, 0)] * x.ndim
        for axis, pad in zip(_spatial_axes(rank, self.channels_first), self.pads):
            widths[axis] = pad
        _check_size(self.name, [size + before + after for size, (before, after) in zip(x.shape, widths)])
        return [Tensor(np.pad(x, widths))]


@register("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def build_zero_padding(ctx: BuildContext) -> Layer:
    rank = int(ctx.class_name[-2])
    return ZeroPadding(ctx.name, _pairs(ctx, "padding", rank), data_format(ctx) == "channels_first")


class Cropping(Layer):
    """Drop ``before`` and ``after`` positions of each spatial axis."""

    keeps_mask = False

    def __init__(self, name: str, crops: tuple[tuple[int, int], ...], channels_first: bool) -> None:
        self.name, self.crops, self.channels_first = name, crops, channels_first

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        rank = len(self.crops)
        _check_rank(self.name, x, rank + 1)
        index: list[slice] = [slice(None)] * x.ndim
        for axis, (before, after) in zip(_spatial_axes(rank, self.channels_first), self.crops):
            if before + after >= x.shape[axis]:
                raise InputDataError(
                    f"layer '{self.name}' crops {before}+{after} positions from an axis of {x.shape[axis]} "
                    f"(input shape {x.shape})"
                )
            index[axis] = slice(before, x.shape[axis] - after)
        return [Tensor(np.ascontiguousarray(x[tuple(index)]))]


@register("Cropping1D", "Cropping2D", "Cropping3D")
def build_cropping(ctx: BuildContext) -> Layer:
    rank = int(ctx.class_name[-2])
    # Cropping1D has no data_format in Keras: always (N, T, C).
    channels_first = rank > 1 and data_format(ctx) == "channels_first"
    return Cropping(ctx.name, _pairs(ctx, "cropping", rank), channels_first)


class UpSampling(Layer):
    """Repeat each position ``size`` times along each spatial axis (``nearest``), or, for 2D,
    resize bilinearly (``bilinear``)."""

    keeps_mask = False

    def __init__(self, name: str, sizes: tuple[int, ...], channels_first: bool, interpolation: str = "nearest") -> None:
        self.name, self.sizes, self.channels_first, self.interpolation = name, sizes, channels_first, interpolation

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        rank = len(self.sizes)
        _check_rank(self.name, x, rank + 1)
        axes = _spatial_axes(rank, self.channels_first)
        shape = list(x.shape)
        for axis, size in zip(axes, self.sizes):
            shape[axis] *= size
        _check_size(self.name, shape)
        if self.interpolation == "bilinear":
            for axis, size in zip(axes, self.sizes):
                x = _resize_linear(x, axis, x.shape[axis] * size)
            return [Tensor(x)]
        for axis, size in zip(axes, self.sizes):
            x = np.repeat(x, size, axis=axis)
        return [Tensor(x)]


def _resize_linear(x: NDArray, axis: int, out: int) -> NDArray:
    """Linear resampling of one axis with half-pixel centres, as TensorFlow's ``resize`` (bilinear,
    no antialiasing) does: output position o samples input coordinate (o + 0.5)·in/out - 0.5,
    clamped to the first and last input positions."""
    size = x.shape[axis]
    coord = (np.arange(out, dtype=np.float64) + 0.5) * (size / out) - 0.5
    floor = np.floor(coord)
    lower = np.clip(floor, 0, size - 1).astype(np.intp)
    upper = np.clip(np.ceil(coord), 0, size - 1).astype(np.intp)
    weight_shape = [1] * x.ndim
    weight_shape[axis] = out
    lerp = (coord - floor).astype(x.dtype).reshape(weight_shape)
    low = np.take(x, lower, axis=axis)
    high = np.take(x, upper, axis=axis)
    return low + (high - low) * lerp


@register("UpSampling1D")
def build_up_sampling_1d(ctx: BuildContext) -> Layer:
    size = ctx.get("size", ctx.get("length", 2))  # Keras 1 called it length
    return UpSampling(ctx.name, _per_axis(ctx, "size", size, 1, 1), False)


@register("UpSampling2D", "UpSampling3D")
def build_up_sampling(ctx: BuildContext) -> Layer:
    rank = int(ctx.class_name[-2])
    sizes = _per_axis(ctx, "size", ctx.get("size", 2), rank, 1)
    interpolation = ctx.get("interpolation", "nearest") if rank == 2 else "nearest"
    if interpolation not in ("nearest", "bilinear"):
        raise ctx.unsupported(f"interpolation {interpolation!r} is not replayed (nearest and bilinear are)")
    return UpSampling(ctx.name, sizes, data_format(ctx) == "channels_first", interpolation)


class RepeatVector(Layer):
    """(N, D) -> (N, n, D)."""

    keeps_mask = False

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        _check_rank(self.name, x, 1)
        _check_size(self.name, (x.shape[0], self.n, x.shape[1]))
        return [Tensor(np.repeat(x[:, None, :], self.n, axis=1))]


@register("RepeatVector")
def build_repeat_vector(ctx: BuildContext) -> Layer:
    return RepeatVector(ctx.name, _count(ctx, "n", ctx.get("n", 1), 1))
