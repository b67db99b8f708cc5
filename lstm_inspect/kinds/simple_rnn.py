"""SimpleRNN: one block ``h``; ``hidden = a(x·kernel + h_prev·recurrent_kernel + bias)``.

Stored: ``kernel`` (F, U), ``recurrent_kernel`` (U, U), ``bias`` (U).  Keras 1
stores the same three arrays as ``W, U, b``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from .base import Cell, ExportOrder, RecurrentKind, hold
from .layout import RecurrentWeights


class SimpleRNN(RecurrentKind):
    name = "SimpleRNN"
    gates = ("h",)
    gate_names: ClassVar[Mapping[str, str]] = {"h": "hidden"}
    records_gates = False  # its one block is the hidden state
    keras_classes = ("SimpleRNN",)
    cell_classes = ("SimpleRNNCell",)
    torch = ExportOrder("RNN", (0,), "h")
    onnx = ExportOrder("RNN", (0,), "h")

    def value_activation(self, name: str, activation: str | None, recurrent_activation: str | None) -> str | None:
        return activation if name == "hidden" else None

    def cell(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
             dtype: np.dtype, config: Mapping[str, Any]) -> Cell:
        return SimpleRNNCell(weights, activation, recurrent_activation, dtype)

    def equations(self, activation: str, recurrent_activation: str, use_bias: bool, reset_after: bool) -> list[str]:
        bias = " + bias" if use_bias else ""
        return [f"hidden = {activation}(x·kernel + h_prev·recurrent_kernel{bias})"]

    def step_source(self, name: str, activation: str, recurrent_activation: str, use_bias: bool,
                    reset_after: bool) -> str:
        bias = ' + w["bias"]' if use_bias else ""
        return f'''def {name}(x, state, w):
    """One SimpleRNN step ({activation}): x (N, F), state [h] (N, U) -> new [h] (it records no gates)."""
    (h,) = state
    hidden = {activation}(x @ w["kernel"] + h @ w["recurrent_kernel"]{bias})
    return [hidden], {{}}
'''


class SimpleRNNCell(Cell):
    def __init__(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
                 dtype: np.dtype) -> None:
        super().__init__(weights, activation, recurrent_activation, dtype)
        self.kernel = np.ascontiguousarray(np.asarray(weights.kernel, dtype=self.dtype))  # (F, U)
        self.recurrent = np.ascontiguousarray(np.asarray(weights.recurrent_kernel, dtype=self.dtype))  # (U, U)
        self.bias = (np.zeros(self.units, dtype=self.dtype) if weights.bias is None
                     else np.asarray(weights.bias, dtype=self.dtype))

    def project(self, x: NDArray) -> NDArray:
        xw = np.matmul(x, self.kernel)
        xw += self.bias
        return xw

    def steps(self, xw: NDArray, state: list[NDArray], buffers: dict[str, NDArray], keep: NDArray | None) -> list[NDArray]:
        (h_prev,) = state
        hiddens = buffers["hidden"]
        pre = buffers.get("pre")
        for s in range(xw.shape[0]):
            z = xw[s] + h_prev @ self.recurrent
            if pre is not None:
                pre[s] = z
            hidden = hiddens[s]
            hidden[...] = self.activation(z)
            if keep is not None and not keep[s].all():
                hold(keep[s], [hidden], [h_prev], [None if pre is None else pre[s]])
            h_prev = hidden
        return [h_prev.copy()]
