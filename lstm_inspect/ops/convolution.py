"""Sliding windows in NumPy, as Keras (TensorFlow) computes them, channels last.

``conv`` is the one convolution of the project: the Conv1D/2D/3D layers, the
separable and depthwise ones and the ConvLSTM cells all call it;
``conv_transpose`` is its adjoint (the ConvTranspose layers) and ``pool`` the
max / average windows of the pooling layers.  All of them walk the kernel
taps: for each tap, one matrix product (or one elementwise operation for
depthwise and pooling windows) between the strided slice of the input that the
tap sees and the slice of the output it feeds.  Padding is never
materialised: a tap only touches the output positions where it falls on a
real input value, so memory stays at the size of the input and the output,
whatever the kernel size, dilation or pool size.

Padding as Keras (and TensorFlow) define it:

* ``valid``: none;
* ``same``: the output has ``ceil(in / stride)`` positions; the total padding
  ``max((out - 1)·stride + (k - 1)·dilation + 1 - in, 0)`` is split with the
  smaller half before (TensorFlow's rule);
* ``causal`` (1D only): ``(k - 1)·dilation`` zeros before, none after.

Padded positions count as zeros in a convolution, are skipped by a max pool,
and are left out of an average pool's divisor (TensorFlow's ``avg_pool``
divides by the number of real values in each window).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

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


def transpose_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str,
                          output_padding: int | None = None) -> int:
    """Positions along one axis after a transposed convolution (Keras' rule, the same in tf-keras and Keras 3).

    ``valid``: ``(in - 1)·stride + max(span, stride)``, ``same``: ``in·stride``;
    with ``output_padding``: ``(in - 1)·stride + span + output_padding`` (valid) or
    ``(in - 1)·stride + span % 2 + output_padding`` (same).
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return (size - 1) * stride + span + extra
    if output_padding is None:
        return size * stride
    return (size - 1) * stride + span % 2 + output_padding


# One axis of a window walk: (tap, output positions [lo, hi), first input position).
AxisTap = tuple[int, int, int, int]
# A tap of the whole window: (tap, output index, input index).
WindowTap = tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]


def _axis_taps(size_in: int, size_out: int, kernel: int, stride: int, dilation: int, before: int) -> list[AxisTap]:
    """The taps of one axis that fall on real input values, with where they do.

    Output position ``o`` reads input position ``o·stride + tap·dilation - before``;
    a tap's outputs are those where that lies in ``[0, size_in)``.
    """
    taps: list[AxisTap] = []
    if size_out <= 0 or size_in <= 0:
        return taps
    # Taps outside this range miss the input for every output (bounds the walk for huge windows).
    first = max(0, (before - (size_out - 1) * stride) // dilation)
    last = min(kernel - 1, (before + size_in - 1) // dilation)
    for tap in range(first, last + 1):
        offset = tap * dilation - before
        lo = (-offset + stride - 1) // stride if offset < 0 else 0
        hi = min(size_out, (size_in - 1 - offset) // stride + 1)
        if hi > lo:
            taps.append((tap, lo, hi, lo * stride + offset))
    return taps


@functools.lru_cache(maxsize=256)
def window_taps(in_sizes: tuple[int, ...], out_sizes: tuple[int, ...], kernel: tuple[int, ...],
                strides: tuple[int, ...], dilation: tuple[int, ...], befores: tuple[int, ...]) -> tuple[WindowTap, ...]:
    """(tap, output index, input index) for every kernel tap that touches the input.

    The indexes select, on arrays of shape (B, *spatial, ...), the output
    positions the tap feeds and the strided input positions it reads there
    (both hold the same number of positions).  Cached: a recurrent layer
    walks the same windows at every step.
    """
    axes = [_axis_taps(*args) for args in zip(in_sizes, out_sizes, kernel, strides, dilation, befores)]
    walk = []
    for combo in itertools.product(*axes):
        tap = tuple(t[0] for t in combo)
        out_index = (slice(None),) + tuple(slice(lo, hi) for _, lo, hi, _ in combo)
        in_index = (slice(None),) + tuple(
            slice(start, start + (hi - lo - 1) * s + 1, s) for (_, lo, hi, start), s in zip(combo, strides)
        )
        walk.append((tap, out_index, in_index))
    return tuple(walk)


def _settings(x: NDArray, kernel: Sequence[int], strides, dilation, padding: str):
    rank = len(kernel)
    strides = _tuple(strides, rank)
    dilation = _tuple(dilation, rank)
    if padding not in PADDINGS:
        raise ValueError(f"padding '{padding}' (expected one of {', '.join(PADDINGS)})")
    sizes = tuple(x.shape[1 : 1 + rank])
    out_sizes = tuple(output_size(n, k, s, d, padding) for n, k, s, d in zip(sizes, kernel, strides, dilation))
    befores = tuple(pad_amounts(n, k, s, d, padding)[0] for n, k, s, d in zip(sizes, kernel, strides, dilation))
    return strides, dilation, sizes, out_sizes, befores


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
    """Convolve ``x`` (B, *spatial, C_in) with ``kernel`` (*k, C_in/groups, C_out) -> (B, *out, C_out).

    With ``groups`` G, input channels ``[g·C_in/G, (g+1)·C_in/G)`` feed output
    channels ``[g·C_out/G, (g+1)·C_out/G)`` only (Keras' grouped convolution).
    """
    taps = kernel.shape[:-2]
    strides, dilation, sizes, out_sizes, befores = _settings(x, taps, strides, dilation, padding)
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    per_group = kernel.shape[-2]
    if groups < 1 or per_group * groups != c_in or c_out % groups:
        raise ValueError(f"a kernel {kernel.shape} with groups={groups} does not fit {c_in} input channels")
    result = np.zeros((x.shape[0], *out_sizes, c_out), dtype=np.result_type(x, kernel))
    for tap, out_index, in_index in window_taps(sizes, out_sizes, taps, strides, dilation, befores):
        weights = kernel[tap]  # (C_in/G, C_out)
        if groups > 1:  # (G, C_in/G, C_out/G): group g's block of the tap's matrix
            weights = weights.reshape(per_group, groups, c_out // groups).transpose(1, 0, 2)
        _accumulate(result[out_index], x[in_index], weights)
    if bias is not None:
        result += bias
    return result


# At most this many multiply-adds (rows x C_in x C_out) per BLAS call: OpenBLAS runs products this small on
# one thread (its GEMM_MULTITHREAD_THRESHOLD, 4 x 65536).  A convolution's products are tall and thin;
# split over threads they ran up to 10x slower on 2 busy cores (ConvLSTM2D of the corpus: 0.13 s -> 1.0 s).
PRODUCT_SIZE = 4 * 65536


def _accumulate(target: NDArray, cols: NDArray, weights: NDArray) -> None:
    """``target += cols @ weights`` over the last axis.

    ``cols`` (B, *n, C) is a strided slice of the input, copied once into a
    (rows, C) matrix; the product is taken in blocks of rows of at most
    ``PRODUCT_SIZE`` multiply-adds.  ``weights`` is (C, F), or
    (G, C/G, F/G) for a grouped convolution.
    """
    rows = cols.reshape(-1, cols.shape[-1])
    if weights.ndim == 3:  # groups: (G, M, C/G) @ (G, C/G, F/G)
        groups, per_group, _ = weights.shape
        rows = rows.reshape(-1, groups, per_group).transpose(1, 0, 2)
    product = np.empty(rows.shape[:-1] + (weights.shape[-1],), dtype=np.result_type(rows, weights))
    step = max(1, PRODUCT_SIZE // (weights.shape[-2] * weights.shape[-1]))
    for start in range(0, rows.shape[-2], step):
        block = slice(start, start + step)
        product[..., block, :] = rows[..., block, :] @ weights
    if weights.ndim == 3:
        product = product.transpose(1, 0, 2)  # (M, G, F/G)
    target += product.reshape(cols.shape[:-1] + (-1,))


def conv_transpose(
    x: NDArray,
    kernel: NDArray,
    *,
    strides: Sequence[int] | int = 1,
    padding: str = "valid",
    dilation: Sequence[int] | int = 1,
    output_padding: Sequence[int | None] | int | None = None,
    bias: NDArray | None = None,
) -> NDArray:
    """The transposed convolution of ``x`` (B, *spatial, C_in) with ``kernel`` (*k, C_out, C_in) -> (B, *out, C_out).

    It is the adjoint of ``conv`` over an input of the output's size, with
    that convolution's padding (TensorFlow's ``conv_transpose``): every input
    position scatters ``x·kernel[tap]ᵀ`` to the output positions the forward
    convolution would have read.  Output sizes: :func:`transpose_output_size`.
    """
    taps = kernel.shape[:-2]
    rank = len(taps)
    strides = _tuple(strides, rank)
    dilation = _tuple(dilation, rank)
    if padding not in ("valid", "same"):
        raise ValueError(f"padding '{padding}' (expected valid or same)")
    if output_padding is None or isinstance(output_padding, (int, np.integer)):
        extra = (output_padding,) * rank
    else:
        extra = tuple(output_padding)
    if x.shape[-1] != kernel.shape[-1]:
        raise ValueError(f"a transposed kernel {kernel.shape} does not fit {x.shape[-1]} input channels")
    sizes = x.shape[1 : 1 + rank]
    out_sizes = tuple(transpose_output_size(n, k, s, d, padding, e)
                      for n, k, s, d, e in zip(sizes, taps, strides, dilation, extra))
    befores = tuple(pad_amounts(o, k, s, d, padding)[0] for o, k, s, d in zip(out_sizes, taps, strides, dilation))
    c_out = kernel.shape[-2]
    result = np.zeros((x.shape[0], *out_sizes, c_out), dtype=np.result_type(x, kernel))
    # The forward convolution reads `result`'s positions (its input) to make x's (its output).
    for tap, x_index, out_index in window_taps(out_sizes, sizes, taps, strides, dilation, befores):
        _accumulate(result[out_index], x[x_index], kernel[tap].T)  # (C_in, C_out)
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
    taps = kernel.shape[:-2]
    strides, dilation, sizes, out_sizes, befores = _settings(x, taps, strides, dilation, padding)
    c_in, multiplier = kernel.shape[-2], kernel.shape[-1]
    if x.shape[-1] != c_in:
        raise ValueError(f"a depthwise kernel {kernel.shape} does not fit {x.shape[-1]} input channels")
    result = np.zeros((x.shape[0], *out_sizes, c_in, multiplier), dtype=np.result_type(x, kernel))
    for tap, out_index, in_index in window_taps(sizes, out_sizes, taps, strides, dilation, befores):
        result[out_index] += x[in_index][..., None] * kernel[tap]
    result = result.reshape(result.shape[:-2] + (c_in * multiplier,))
    if bias is not None:
        result += bias
    return result


def pool(
    x: NDArray,
    size: Sequence[int],
    *,
    strides: Sequence[int],
    padding: str = "valid",
    how: str = "max",
) -> NDArray:
    """Max or average of each window of ``size`` over the spatial axes of ``x`` (B, *spatial, C).

    ``how`` is ``"max"`` or ``"mean"``.  With ``same`` padding a window's
    padded positions are left out: of the max, and of the mean's divisor.
    """
    size = tuple(int(k) for k in size)
    rank = len(size)
    strides = _tuple(strides, rank)
    ones = (1,) * rank
    _, _, sizes, out_sizes, befores = _settings(x, size, strides, ones, padding)
    shape = (x.shape[0], *out_sizes) + x.shape[1 + rank :]
    walk = window_taps(sizes, out_sizes, size, strides, ones, befores)
    if how == "max":
        result = np.full(shape, -np.inf, dtype=x.dtype)
        for _, out_index, in_index in walk:
            target = result[out_index]
            np.maximum(target, x[in_index], out=target)
        return result
    result = np.zeros(shape, dtype=x.dtype)
    for _, out_index, in_index in walk:
        result[out_index] += x[in_index]
    # Real values per window: the product over the axes of the taps that land inside (a window is a box).
    count = np.ones((), dtype=x.dtype)
    for axis, (n, out, k, s, before) in enumerate(zip(sizes, out_sizes, size, strides, befores)):
        per_axis = np.zeros(out, dtype=x.dtype)
        for _, lo, hi, _ in _axis_taps(n, out, k, s, 1, before):
            per_axis[lo:hi] += 1
        count = np.multiply.outer(count, per_axis)
    return result / count.reshape(count.shape + (1,) * (x.ndim - 1 - rank))


def _tuple(value: Sequence[int] | int, rank: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    values = tuple(int(v) for v in value)
    if len(values) == 1 and rank > 1:
        return values * rank
    if len(values) != rank:
        raise ValueError(f"{values} does not give one value per axis ({rank})")
    return values
