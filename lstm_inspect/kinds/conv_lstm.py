"""ConvLSTM1D / 2D / 3D: an LSTM whose products are convolutions (Shi et al., 2015).

Keras (keras/src/layers/rnn/conv_lstm.py, and tf-keras' ConvLSTM2D), per step::

    x_g = conv(x, kernel_g, strides, padding, dilation_rate) + bias_g      for g in i, f, c, o
    h_g = conv(h_prev, recurrent_kernel_g, strides 1, padding "same")
    i = ra(x_i + h_i)   f = ra(x_f + h_f)   c = a(x_c + h_c)   o = ra(x_o + h_o)
    cell = f·cell_prev + i·c        hidden = o·a(cell)

``units`` is the number of filters: every value is a (positions × filters)
map, and a trace has one row per (t, position, filter).  Stored:
``kernel`` (*k, C, 4F), ``recurrent_kernel`` (*k, F, 4F), ``bias`` (4F),
the gate blocks i, f, c, o along the last axis.  The step loop is the LSTM's
(``LSTMCell``) with the two products replaced by convolutions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from ..errors import UnsupportedLayer
from ..ops.convolution import conv, output_size
from .base import Cell
from .layout import RecurrentWeights
from .lstm import LSTM, LSTMCell


class _ConvLSTM(LSTM):
    keras1_letters = ()
    cell_classes = ()
    torch = None  # neither PyTorch nor ONNX has a convolutional LSTM
    onnx = None

    def cell(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
             dtype: np.dtype, config: Mapping[str, Any]) -> Cell:
        return ConvLSTMCell(weights, activation, recurrent_activation, dtype, config)

    def equations(self, activation: str, recurrent_activation: str, use_bias: bool, reset_after: bool) -> list[str]:
        a, ra = activation, recurrent_activation
        bias = " + bias" if use_bias else ""
        return [
            f"pre = conv(x, kernel){bias} + conv_same(h_prev, recurrent_kernel)   (per position; filters i, f, c, o)",
            f"i = {ra}(pre_i)   f = {ra}(pre_f)   c = {a}(pre_c)   o = {ra}(pre_o)",
            f"cell = f·cell_prev + i·c        hidden = o·{a}(cell)",
        ]

    def step_source(self, name: str, activation: str, recurrent_activation: str, use_bias: bool,
                    reset_after: bool) -> str:
        raise NotImplementedError  # a convolution per step: not written out by `lstm-inspect code`


class ConvLSTM1D(_ConvLSTM):
    name = "ConvLSTM1D"
    spatial_rank = 1
    keras_classes = ("ConvLSTM1D",)


class ConvLSTM2D(_ConvLSTM):
    name = "ConvLSTM2D"
    spatial_rank = 2
    keras_classes = ("ConvLSTM2D",)


class ConvLSTM3D(_ConvLSTM):
    name = "ConvLSTM3D"
    spatial_rank = 3
    keras_classes = ("ConvLSTM3D",)


def _ints(value: Any, rank: int, what: str) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, int) else tuple(value or ())
    if len(values) == 1:
        values *= rank
    if len(values) != rank or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise UnsupportedLayer(f"{what} {value!r} is not {rank} positive whole number(s)")
    return values


class ConvLSTMCell(LSTMCell):
    """The LSTM cell with convolutions for the input and recurrent products (channels last)."""

    def __init__(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
                 dtype: np.dtype, config: Mapping[str, Any]) -> None:
        super().__init__(weights, activation, recurrent_activation, dtype)
        rank = weights.kind.spatial_rank
        self.strides = _ints(config.get("strides", 1), rank, "strides")
        self.dilation = _ints(config.get("dilation_rate", 1), rank, "dilation_rate")
        self.padding = str(config.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise UnsupportedLayer(f"padding '{self.padding}' is not one a ConvLSTM takes (valid, same)")
        self.taps = weights.taps

    def output_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(output_size(size, k, s, d, self.padding)
                     for size, k, s, d in zip(spatial, self.taps, self.strides, self.dilation))

    def project(self, x: NDArray) -> NDArray:
        steps, n = x.shape[:2]
        flat = x.reshape((steps * n,) + x.shape[2:])  # (S·N, *spatial, C)
        out = conv(flat, self.kernel, strides=self.strides, padding=self.padding, dilation=self.dilation, bias=self.bias)
        return out.reshape((steps, n) + out.shape[1:]).astype(self.dtype, copy=False)  # (S, N, *out, 4F)

    def recurrent_product(self, h_prev: NDArray, out: NDArray) -> None:
        out[...] = conv(h_prev, self.recurrent, strides=1, padding="same")
