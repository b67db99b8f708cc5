"""Convolution layers: Conv1D/2D/3D, their transposes, SeparableConv1D/2D and DepthwiseConv1D/2D.

The maths is in ``convolution``; this module reads each layer's settings and
weights, checks that they make sense together, and moves the channels axis
for ``data_format="channels_first"`` (computed channels last, as Keras does on
CPU).  Stored kernels, as Keras 3 and tf-keras write them:

* Conv: ``kernel`` (*k, C_in/groups, filters), ``bias`` (filters,);
* ConvTranspose: ``kernel`` (*k, filters, C_in), ``bias`` (filters,);
* SeparableConv: ``depthwise_kernel`` (*k, C_in, M), ``pointwise_kernel``
  (1, ..., C_in·M, filters), ``bias`` (filters,);
* DepthwiseConv: ``kernel`` in Keras 3, ``depthwise_kernel`` in tf-keras
  (*k, C_in, M), ``bias`` (C_in·M,).

Keras does not pass a mask through any of them (Keras 3 drops it with a
warning; tf-keras refuses to build such a model).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, Layer, Tensor, register, with_bias
from .convolution import (
    conv,
    conv_transpose,
    depthwise_conv,
    output_size,
    transpose_output_size,
)

PADDINGS_1D = ("valid", "same", "causal")
PADDINGS = ("valid", "same")


# ------------------------------------------------------------- settings shared with pooling


def spatial_rank(ctx: BuildContext) -> int:
    """1, 2 or 3: the digit before the ``D`` of the class name (``Conv2DTranspose`` -> 2)."""
    found = re.search(r"([123])D", ctx.class_name)
    if found is None:
        raise ctx.unsupported("cannot tell its number of spatial axes from the class name")
    return int(found.group(1))


def whole(value: Any, minimum: int = 1) -> bool:
    """A whole number (not a bool) of at least ``minimum``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def int_tuple(ctx: BuildContext, key: str, rank: int, default: Any, minimum: int = 1) -> tuple[int, ...]:
    """Config ``key`` as one whole number per spatial axis (one number stands for all)."""
    value = ctx.get(key, default)
    if value is None:
        value = default
    values = (value,) * rank if whole(value, minimum) else value
    if isinstance(values, (list, tuple)) and len(values) == 1:
        values = tuple(values) * rank
    if not isinstance(values, (list, tuple)) or len(values) != rank or not all(whole(v, minimum) for v in values):
        raise ctx.bad_file(f"{key} is {value!r}, not {rank} whole number(s) of at least {minimum}")
    return tuple(int(v) for v in values)


def read_padding(ctx: BuildContext, allowed: Sequence[str]) -> str:
    value = ctx.get("padding", "valid")
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ctx.bad_file(f"padding is {value!r}, not one of {', '.join(allowed)}")
    return padding


def channels_first(ctx: BuildContext) -> bool:
    """Whether ``data_format`` puts the channels right after the batch axis (None means channels_last)."""
    value = ctx.get("data_format") or "channels_last"
    if value not in ("channels_last", "channels_first"):
        raise ctx.bad_file(f"data_format is {value!r}, not channels_last or channels_first")
    return value == "channels_first"


class SpatialLayer(Layer):
    """A layer over (N, *spatial, C) tensors (or (N, C, *spatial) with channels_first).

    ``rank`` (1, 2, 3) comes from the class name.  Subclasses implement
    ``compute`` on channels-last values; ``apply`` checks the input's rank and
    moves the channels axis both ways.
    """

    keeps_mask = False

    def __init__(self, ctx: BuildContext) -> None:
        self.where = ctx.where
        self.rank = spatial_rank(ctx)
        self.channels_first = channels_first(ctx)

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        if x.ndim != self.rank + 2:
            raise InputDataError(f"{self.where} takes inputs of {self.rank + 2} axes (N, {self.rank} spatial, channels); "
                                 f"its input has shape {x.shape}")
        if self.channels_first:
            x = np.moveaxis(x, 1, -1)
        y = self.compute(x)
        if self.channels_first:
            y = np.moveaxis(y, -1, 1)
        return [Tensor(np.ascontiguousarray(y))]

    def compute(self, x: NDArray) -> NDArray:
        raise NotImplementedError

    def check_channels(self, x: NDArray, expected: int) -> None:
        if x.shape[-1] != expected:
            raise InputDataError(f"{self.where}: its kernel takes {expected} input channel(s); its input has {x.shape[-1]}")

    def check_fits(self, x: NDArray, window: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
                   padding: str) -> None:
        """An input too small for a ``valid`` window has no output: Keras refuses it, so do we."""
        sizes = x.shape[1:-1]
        if any(output_size(n, k, s, d, padding) == 0 for n, k, s, d in zip(sizes, window, strides, dilation)):
            spans = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
            raise InputDataError(
                f"{self.where}: its input of spatial shape {tuple(sizes)} is smaller than its window {spans} "
                f"(padding {padding}), which leaves no output"
            )


# ------------------------------------------------------------------------ the layers


class _Conv(SpatialLayer):
    """What every convolution reads: strides, dilation_rate, padding, activation, and a kernel's checks."""

    def __init__(self, ctx: BuildContext, paddings: Sequence[str]) -> None:
        super().__init__(ctx)
        rank = self.rank
        self.strides = int_tuple(ctx, "strides", rank, 1)
        self.dilation = int_tuple(ctx, "dilation_rate", rank, 1)
        self.padding = read_padding(ctx, paddings if rank == 1 else PADDINGS)
        self.activation = ctx.activation("activation", None)

    def kernel(self, ctx: BuildContext, *names: str) -> NDArray:
        """The first of ``names`` stored, checked as a (*k, a, b) kernel matching ``kernel_size``."""
        key = next((name for name in names if name in ctx.weights), names[0])
        kernel = ctx.weight(key)
        rank = self.rank
        if kernel.ndim != rank + 2 or 0 in kernel.shape:
            raise ctx.bad_file(f"{key} has shape {kernel.shape}, not a {rank}-D convolution kernel ({rank + 2} axes)")
        size = int_tuple(ctx, "kernel_size", rank, kernel.shape[:rank])
        if size != kernel.shape[:rank]:
            raise ctx.bad_file(f"{key} has shape {kernel.shape}, but kernel_size is {list(size)}")
        return kernel

    def bias(self, ctx: BuildContext, size: int) -> NDArray | None:
        if not ctx.get("use_bias", True):
            return None
        bias = ctx.weight("bias")
        if bias.shape != (size,):
            raise ctx.bad_file(f"bias has shape {bias.shape}; the layer has {size} output channels")
        return bias

    def check_filters(self, ctx: BuildContext, filters: int) -> None:
        stated = ctx.get("filters")
        if stated is not None and stated != filters:
            raise ctx.bad_file(f"filters is {stated!r}, but the kernel has {filters} output channels")


class Conv(_Conv):
    """Conv1D / 2D / 3D: ``activation(conv(x, kernel) + bias)``, with groups, strides, dilation, padding."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx, PADDINGS_1D)
        self.weights = self.kernel(ctx, "kernel")
        filters = self.weights.shape[-1]
        self.check_filters(ctx, filters)
        self.groups = ctx.get("groups", 1)
        if not whole(self.groups) or filters % self.groups:
            raise ctx.bad_file(f"groups is {self.groups!r}, which does not divide the {filters} filters")
        self.bias_value = self.bias(ctx, filters)

    def compute(self, x: NDArray) -> NDArray:
        self.check_channels(x, self.weights.shape[-2] * self.groups)
        self.check_fits(x, self.weights.shape[:-2], self.strides, self.dilation, self.padding)
        y = conv(x, self.weights, strides=self.strides, padding=self.padding, dilation=self.dilation,
                 groups=self.groups, bias=self.bias_value)
        return self.activation(y)


# A transposed convolution's output grows with its strides, dilation and output_padding: more values than
# this per sequence come from settings no model uses, and would only exhaust memory.
MAX_TRANSPOSE_OUTPUT = 2**28


class ConvTranspose(_Conv):
    """Conv1DTranspose / 2D / 3D: the adjoint of a convolution (``convolution.conv_transpose``)."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx, PADDINGS)
        self.weights = self.kernel(ctx, "kernel")
        filters = self.weights.shape[-2]
        self.check_filters(ctx, filters)
        extra = ctx.get("output_padding")
        self.output_padding = None if extra is None else int_tuple(ctx, "output_padding", self.rank, 0, minimum=0)
        self.bias_value = self.bias(ctx, filters)
        self.bad_file = ctx.bad_file

    def compute(self, x: NDArray) -> NDArray:
        self.check_channels(x, self.weights.shape[-1])
        extra = self.output_padding or (None,) * self.rank
        sizes = [transpose_output_size(n, k, s, d, self.padding, e) for n, k, s, d, e in
                 zip(x.shape[1:-1], self.weights.shape[:-2], self.strides, self.dilation, extra)]
        if math.prod(sizes) * self.weights.shape[-2] > MAX_TRANSPOSE_OUTPUT:
            raise self.bad_file(f"strides {list(self.strides)}, dilation_rate {list(self.dilation)} and "
                                f"output_padding make an output of shape {tuple(sizes)} per sequence; refused")
        y = conv_transpose(x, self.weights, strides=self.strides, padding=self.padding, dilation=self.dilation,
                           output_padding=self.output_padding, bias=self.bias_value)
        return self.activation(y)


class DepthwiseConv(_Conv):
    """DepthwiseConv1D / 2D: each channel convolved with its own ``depth_multiplier`` kernels."""

    def __init__(self, ctx: BuildContext, key: str | None = None, own_bias: bool = True) -> None:
        super().__init__(ctx, PADDINGS_1D)
        self.depthwise = self.kernel(ctx, *((key,) if key else ("kernel", "depthwise_kernel")))
        multiplier = ctx.get("depth_multiplier")
        if multiplier is not None and multiplier != self.depthwise.shape[-1]:
            raise ctx.bad_file(f"depth_multiplier is {multiplier!r}, but the depthwise kernel has shape "
                               f"{self.depthwise.shape}")
        self.bias_value = self.bias(ctx, self.depthwise.shape[-2] * self.depthwise.shape[-1]) if own_bias else None

    def depthwise_step(self, x: NDArray, bias: NDArray | None) -> NDArray:
        self.check_channels(x, self.depthwise.shape[-2])
        self.check_fits(x, self.depthwise.shape[:-2], self.strides, self.dilation, self.padding)
        return depthwise_conv(x, self.depthwise, strides=self.strides, padding=self.padding, dilation=self.dilation,
                              bias=bias)

    def compute(self, x: NDArray) -> NDArray:
        return self.activation(self.depthwise_step(x, self.bias_value))


class SeparableConv(DepthwiseConv):
    """SeparableConv1D / 2D: a depthwise convolution, then a pointwise (1×1) one to ``filters`` channels."""

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx, "depthwise_kernel", own_bias=False)  # the bias is the pointwise step's
        pointwise = ctx.weight("pointwise_kernel")
        rows = self.depthwise.shape[-2] * self.depthwise.shape[-1]
        if pointwise.ndim != self.rank + 2 or pointwise.shape[:-1] != (1,) * self.rank + (rows,):
            raise ctx.bad_file(f"pointwise_kernel has shape {pointwise.shape}; a depthwise kernel of shape "
                               f"{self.depthwise.shape} needs {(1,) * self.rank + (rows,)} + (filters,)")
        self.pointwise = pointwise.reshape(rows, pointwise.shape[-1])  # (C_in·M, filters)
        self.check_filters(ctx, self.pointwise.shape[1])
        self.bias_value = self.bias(ctx, self.pointwise.shape[1])

    def compute(self, x: NDArray) -> NDArray:
        y = self.depthwise_step(x, None) @ self.pointwise
        if self.bias_value is not None:
            y += self.bias_value
        return self.activation(y)


@register("Conv1D", "Conv2D", "Conv3D", variables=with_bias("kernel"))
def build_conv(ctx: BuildContext) -> Layer:
    return Conv(ctx)


@register("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", variables=with_bias("kernel"))
def build_conv_transpose(ctx: BuildContext) -> Layer:
    return ConvTranspose(ctx)


# Keras 3 names the depthwise kernel `kernel`, tf-keras `depthwise_kernel`: both are looked for.
@register("DepthwiseConv1D", "DepthwiseConv2D", variables=with_bias("kernel"))
def build_depthwise_conv(ctx: BuildContext) -> Layer:
    return DepthwiseConv(ctx)


@register("SeparableConv1D", "SeparableConv2D", variables=with_bias("depthwise_kernel", "pointwise_kernel"))
def build_separable_conv(ctx: BuildContext) -> Layer:
    return SeparableConv(ctx)
