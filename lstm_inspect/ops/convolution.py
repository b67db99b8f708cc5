"""N-dimensional convolution in NumPy, as Keras computes it (channels last).

``conv`` is the one convolution of the project: the Conv1D/2D/3D layers, the
separable and depthwise ones and the ConvLSTM cells all call it.  It adds one
matrix product per kernel tap: for each tap, the strided view of the padded
input that the tap sees, times that tap's (C_in, C_out) matrix.  Memory stays
at the size of the output.

Padding as Keras (and TensorFlow) define it:

* ``valid``: none;
* ``same``: the output has ``ceil(in / stride)`` positions; the total padding
  ``max((out - 1)·stride + (k - 1)·dilation + 1 - in, 0)`` is split with the
  smaller half before (TensorFlow's rule);
* ``causal`` (1D only): ``(k - 1)·dilation`` zeros before, none after.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

PADDINGS = ("valid", "same", "causal")


def pad_amounts(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(before, after) zeros along one axis of ``size`` positions."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Positions along one axis after the convolution (0 when the kernel does not fit)."""
    before, after = pad_amounts(size, kernel, stride, dilation, padding)
    span = (kernel - 1) * dilation + 1
    return max((size + before + after - span) // stride + 1, 0)


def pad_input(x: NDArray, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
              padding: str) -> NDArray:
    """Zero-pad the spatial axes of ``x`` (B, *spatial, C) for the convolution."""
    widths = [(0, 0)]
    for size, k, s, d in zip(x.shape[1:-1], kernel, strides, dilation):
        widths.append(pad_amounts(size, k, s, d, padding))
    widths.append((0, 0))
    if all(w == (0, 0) for w in widths):
        return x
    return np.pad(x, widths)


def tap_views(x: NDArray, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
              out: Sequence[int]):
    """Yield (tap index, the strided view of padded ``x`` that this tap multiplies)."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None)]
        for position, s, d, n in zip(tap, strides, dilation, out):
            start = position * d
            index.append(slice(start, start + (n - 1) * s + 1, s))
        index.append(slice(None))
        yield tap, x[tuple(index)]


def conv(
    x: NDArray,
    kernel: NDArray,
    *,
    strides: Sequence[int] | int = 1,
    padding: str = "valid",
    dilation: Sequence[int] | int = 1,
    groups: int = 1,
    bias: NDArray | None = None,
) -> NDArray:
    """Convolve ``x`` (B, *spatial, C_in) with ``kernel`` (*k, C_in/groups, C_out) -> (B, *out, C_out)."""
    rank = kernel.ndim - 2
    strides = _tuple(strides, rank)
    dilation = _tuple(dilation, rank)
    if padding not in PADDINGS:
        raise ValueError(f"padding '{padding}' (expected one of {', '.join(PADDINGS)})")
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    per_group = kernel.shape[-2]
    if groups < 1 or per_group * groups != c_in or c_out % groups:
        raise ValueError(f"a kernel {kernel.shape} with groups={groups} does not fit {c_in} input channels")
    out_sizes = [output_size(size, k, s, d, padding) for size, k, s, d in zip(x.shape[1:-1], kernel.shape[:-2], strides, dilation)]
    padded = pad_input(x, kernel.shape[:-2], strides, dilation, padding)
    result = np.zeros((x.shape[0], *out_sizes, c_out), dtype=np.result_type(x, kernel))
    if min(out_sizes, default=1) > 0:
        out_per_group = c_out // groups
        for tap, view in tap_views(padded, kernel.shape[:-2], strides, dilation, out_sizes):
            weights = kernel[tap]  # (C_in/groups, C_out)
            if groups == 1:
                result += view @ weights
            else:
                for g in range(groups):
                    columns = slice(g * out_per_group, (g + 1) * out_per_group)
                    result[..., columns] += view[..., g * per_group : (g + 1) * per_group] @ weights[:, columns]
    if bias is not None:
        result += bias
    return result


def depthwise_conv(
    x: NDArray,
    kernel: NDArray,
    *,
    strides: Sequence[int] | int = 1,
    padding: str = "valid",
    dilation: Sequence[int] | int = 1,
    bias: NDArray | None = None,
) -> NDArray:
    """Each input channel convolved on its own: ``kernel`` (*k, C_in, M) -> (B, *out, C_in·M).

    Output channel ``c·M + m`` is input channel ``c`` times its ``m``-th kernel, as Keras orders them.
    """
    rank = kernel.ndim - 2
    strides = _tuple(strides, rank)
    dilation = _tuple(dilation, rank)
    c_in, multiplier = kernel.shape[-2], kernel.shape[-1]
    if x.shape[-1] != c_in:
        raise ValueError(f"a depthwise kernel {kernel.shape} does not fit {x.shape[-1]} input channels")
    out_sizes = [output_size(size, k, s, d, padding) for size, k, s, d in zip(x.shape[1:-1], kernel.shape[:-2], strides, dilation)]
    padded = pad_input(x, kernel.shape[:-2], strides, dilation, padding)
    result = np.zeros((x.shape[0], *out_sizes, c_in, multiplier), dtype=np.result_type(x, kernel))
    if min(out_sizes, default=1) > 0:
        for tap, view in tap_views(padded, kernel.shape[:-2], strides, dilation, out_sizes):
            result += view[..., :, None] * kernel[tap]
    result = result.reshape(result.shape[:-2] + (c_in * multiplier,))
    if bias is not None:
        result += bias
    return result


def _tuple(value: Sequence[int] | int, rank: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    values = tuple(int(v) for v in value)
    if len(values) == 1 and rank > 1:
        return values * rank
    if len(values) != rank:
        raise ValueError(f"{values} does not give one value per axis ({rank})")
    return values
