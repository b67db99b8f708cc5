"""Pooling layers: MaxPooling / AveragePooling 1D-3D and the global poolings.

Windows follow TensorFlow (which Keras 3 and tf-keras both call): with
``padding="same"`` a window's padded positions are left out of the max and
of the average's divisor (``convolution.pool``).  ``strides`` defaults to
``pool_size``.  Masks: only GlobalAveragePooling1D reads one (it averages
the unmasked steps); Keras passes no mask on from any pooling layer, and
Keras 3's GlobalMaxPooling1D ignores the mask it is given (tf-keras refuses
to build that model).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, Layer, Tensor, register
from .conv import (
    PADDINGS,
    SpatialLayer,
    channels_first,
    int_tuple,
    read_padding,
    spatial_rank,
)
from .convolution import pool


class Pool(SpatialLayer):
    """MaxPooling1D/2D/3D and AveragePooling1D/2D/3D."""

    def __init__(self, ctx: BuildContext, how: str) -> None:
        super().__init__(ctx)
        self.how = how
        self.size = int_tuple(ctx, "pool_size", self.rank, 2)
        self.strides = int_tuple(ctx, "strides", self.rank, self.size)
        self.padding = read_padding(ctx, PADDINGS)

    def compute(self, x: NDArray) -> NDArray:
        self.check_fits(x, self.size, self.strides, (1,) * self.rank, self.padding)
        return pool(x, self.size, strides=self.strides, padding=self.padding, how=self.how)


@register("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")
def build_max_pooling(ctx: BuildContext) -> Layer:
    return Pool(ctx, "max")


@register("AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
def build_average_pooling(ctx: BuildContext) -> Layer:
    return Pool(ctx, "mean")


class GlobalPool(Layer):
    """(N, *spatial, C) -> (N, C) (or (N, 1, ..., C) with ``keepdims``): max or mean over the spatial axes.

    GlobalAveragePooling1D with a mask averages the unmasked steps only; a
    sequence with every step masked gives NaN, as Keras' 0/0 does.
    """

    keeps_mask = False

    def __init__(self, ctx: BuildContext, how: str) -> None:
        self.where = ctx.where
        self.how = how
        self.rank = spatial_rank(ctx)
        self.channels_first = channels_first(ctx)
        keepdims = ctx.get("keepdims", False)
        if not isinstance(keepdims, bool):
            raise ctx.bad_file(f"keepdims is {keepdims!r}, not true or false")
        self.keepdims = keepdims

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        tensor = inputs[0]
        x = tensor.value
        if x.ndim != self.rank + 2:
            raise InputDataError(f"{self.where} takes inputs of {self.rank + 2} axes (N, {self.rank} spatial, channels); "
                                 f"its input has shape {x.shape}")
        first = 2 if self.channels_first else 1
        axes = tuple(range(first, first + self.rank))
        mask = tensor.mask if self.how == "mean" and self.rank == 1 else None
        if mask is not None and mask.shape == (x.shape[0], x.shape[first]):
            weights = np.expand_dims(mask, 1 if self.channels_first else 2)  # (N, T) -> against x's axes
            total = np.where(weights, x, 0).sum(axis=axes, keepdims=self.keepdims)
            with np.errstate(invalid="ignore", divide="ignore"):
                y = total / weights.sum(axis=axes, keepdims=self.keepdims).astype(x.dtype)
        elif self.how == "mean":
            y = x.mean(axis=axes, keepdims=self.keepdims)
        else:
            y = x.max(axis=axes, keepdims=self.keepdims)
        return [Tensor(np.asarray(y, dtype=x.dtype))]


@register("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def build_global_average(ctx: BuildContext) -> Layer:
    return GlobalPool(ctx, "mean")


@register("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D")
def build_global_max(ctx: BuildContext) -> Layer:
    return GlobalPool(ctx, "max")
