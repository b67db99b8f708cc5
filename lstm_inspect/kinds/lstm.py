"""LSTM: gates i, f, c, o (input, forget, candidate, output), states h and cell.

Keras (all versions; ``a`` = activation, ``ra`` = recurrent_activation)::

    pre  = x·kernel + h_prev·recurrent_kernel + bias        (bias added once per step)
    i = ra(pre_i)   f = ra(pre_f)   c = a(pre_c)   o = ra(pre_o)
    cell = f·cell_prev + i·c        hidden = o·a(cell)

Stored: Keras 2/3 ``kernel`` (F, 4U), ``recurrent_kernel`` (U, 4U), ``bias``
(4U) in the order i, f, c, o; Keras 2's CuDNNLSTM in cuDNN's memory order
with a bias of 8U (input half + recurrent half, summed); Keras 1 per-gate
arrays ``W_i, U_i, b_i, ...`` (its group lists them i, c, f, o; they are
matched by letter).

Speed: the cell keeps its gates internally in the order i, f, o, c so that the
three recurrent-activation gates are contiguous, and folds the slope of
sigmoid (sigmoid(x) = 0.5·tanh(x/2) + 0.5) or hard_sigmoid into the weights
once, so one ``tanh`` over all four gates serves both activations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from .base import Cell, ExportOrder, RecurrentKind, hold
from .layout import RecurrentWeights


class LSTM(RecurrentKind):
    name = "LSTM"
    gates = ("i", "f", "c", "o")
    gate_names: ClassVar[Mapping[str, str]] = {"i": "input gate", "f": "forget gate", "c": "candidate", "o": "output gate"}
    states = ("h", "c")
    extra_values = ("cell",)
    recurrent_gates = ("i", "f", "o")
    keras1_letters = ("i", "f", "c", "o")
    keras_classes = ("LSTM", "CuDNNLSTM")
    cell_classes = ("LSTMCell",)
    torch = ExportOrder("LSTM", (0, 1, 2, 3), "i,f,g,o")
    onnx = ExportOrder("LSTM", (0, 3, 1, 2), "i,o,f,c")

    def cell(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
             dtype: np.dtype, config: Mapping[str, Any]) -> Cell:
        return LSTMCell(weights, activation, recurrent_activation, dtype)

    def equations(self, activation: str, recurrent_activation: str, use_bias: bool, reset_after: bool) -> list[str]:
        a, ra = activation, recurrent_activation
        bias = " + bias" if use_bias else ""
        return [
            f"pre = x·kernel + h_prev·recurrent_kernel{bias}   (bias added once per step; columns i, f, c, o)",
            f"i = {ra}(pre_i)   f = {ra}(pre_f)   c = {a}(pre_c)   o = {ra}(pre_o)",
            f"cell = f·cell_prev + i·c        hidden = o·{a}(cell)",
        ]

    def step_source(self, name: str, activation: str, recurrent_activation: str, use_bias: bool,
                    reset_after: bool) -> str:
        a, ra = activation, recurrent_activation
        bias = ' + w["bias"]' if use_bias else ""
        return f'''def {name}(x, state, w):
    """One LSTM step ({a}, {ra}): x (N, F), state [h, c] (N, U) each -> new [h, c] and the gates."""
    h, c = state
    U = h.shape[1]
    # One product per tensor, and the bias added once per step (not once per product).
    z = x @ w["kernel"] + h @ w["recurrent_kernel"]{bias}  # (N, 4U)
    # Keras' column blocks are i, f, c, o (not i, f, o, c): gate k of unit u is column k*U + u.
    i = {ra}(z[:, 0 * U : 1 * U])  # input gate
    f = {ra}(z[:, 1 * U : 2 * U])  # forget gate
    g = {a}(z[:, 2 * U : 3 * U])  # candidate ("c" in the trace)
    o = {ra}(z[:, 3 * U : 4 * U])  # output gate
    cell = f * c + i * g
    hidden = o * {a}(cell)  # the next layer reads hidden, not cell
    return [hidden, cell], {{"i": i, "f": f, "c": g, "o": o}}
'''


# Internal column order i, f, o, c (the recurrent-activation gates contiguous), as indices
# into Keras' i, f, c, o blocks; and where each Keras gate sits in it.
_INTERNAL = (0, 1, 3, 2)
_POSITION = {"i": 0, "f": 1, "o": 2, "c": 3}


class LSTMCell(Cell):
    """LSTM weights reordered (i, f, o, c) and rescaled for the step loop."""

    def __init__(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
                 dtype: np.dtype) -> None:
        super().__init__(weights, activation, recurrent_activation, dtype)
        U = self.units
        dtype = self.dtype
        order = np.concatenate([np.arange(k * U, (k + 1) * U) for k in _INTERNAL])
        kernel = np.asarray(weights.kernel, dtype=dtype)[..., order]
        recurrent = np.asarray(weights.recurrent_kernel, dtype=dtype)[..., order]
        effective = weights.effective_bias()
        bias = np.zeros(4 * U, dtype=dtype) if effective is None else np.asarray(effective, dtype=dtype)[order]
        self.scale = np.ones(4 * U, dtype=dtype)
        self.mode = "general"
        affine = recurrent_activation.affine
        if activation.name == "tanh" and affine and affine[0] == "tanh":
            self.mode = "tanh"  # sigmoid(x) = 0.5*tanh(x/2) + 0.5: the /2 goes into the weights
            self.scale[: 3 * U] = 0.5
        elif activation.name == "tanh" and affine and affine[0] == "clip":
            self.mode = "clip"  # hard_sigmoid(x) = clip(slope*x + offset, 0, 1): the slope goes in
            self.scale[: 3 * U] = affine[1]
        self.kernel = np.ascontiguousarray(kernel * self.scale)  # (..., F, 4U)
        self.recurrent = np.ascontiguousarray(recurrent * self.scale)  # (..., U, 4U)
        self.bias = bias * self.scale  # (4U,)

    def recurrent_product(self, h_prev: NDArray, out: NDArray) -> None:
        """``out`` (N, ..., 4U) = the recurrent side of one step for ``h_prev`` (N, ..., U)."""
        np.dot(h_prev, self.recurrent, out=out)

    def project(self, x: NDArray) -> NDArray:
        xw = np.matmul(x, self.kernel)  # (S, N, 4U)
        xw += self.bias
        return xw

    def values(self, buffers: dict[str, NDArray]) -> dict[str, NDArray]:
        U = self.units
        g = buffers["gates"]
        values = {gate: g[..., _POSITION[gate] * U : (_POSITION[gate] + 1) * U] for gate in self.kind.gates}
        values["cell"] = buffers["cell"]
        values["hidden"] = buffers["hidden"]
        if "pre" in buffers:
            p = buffers["pre"]
            for gate in self.kind.gates:
                cols = slice(_POSITION[gate] * U, (_POSITION[gate] + 1) * U)
                values[f"z_{gate}"] = p[..., cols] / self.scale[cols]  # Keras' own pre-activations
        return values

    def steps(self, xw: NDArray, state: list[NDArray], buffers: dict[str, NDArray], keep: NDArray | None) -> list[NDArray]:
        h_prev, cell_prev = state
        gates_out, cells, hiddens = buffers["gates"], buffers["cell"], buffers["hidden"]
        pre = buffers.get("pre")
        if self.mode == "tanh" and pre is None and keep is None and h_prev.ndim == 2:
            return self._plain_steps(xw, h_prev, cell_prev, gates_out, cells, hiddens)
        U = self.units
        recur = np.empty(h_prev.shape[:-1] + (4 * U,), dtype=self.dtype)
        scratch = np.empty(h_prev.shape, dtype=self.dtype)
        mode = self.mode
        activation, recurrent_activation = self.activation, self.recurrent_activation
        offset = self.dtype.type(recurrent_activation.affine[2]) if mode == "clip" else None
        half = self.dtype.type(0.5)
        for s in range(xw.shape[0]):
            g = gates_out[s]
            self.recurrent_product(h_prev, recur)
            np.add(xw[s], recur, out=g)
            if pre is not None:
                pre[s] = g
            sig, candidate = g[..., : 3 * U], g[..., 3 * U :]
            if mode == "tanh":
                np.tanh(g, out=g)
                np.multiply(sig, half, out=sig)
                np.add(sig, half, out=sig)
            elif mode == "clip":
                np.add(sig, offset, out=sig)
                np.clip(sig, 0, 1, out=sig)
                np.tanh(candidate, out=candidate)
            else:
                sig[...] = recurrent_activation(sig)
                candidate[...] = activation(candidate)
            cell, hidden = cells[s], hiddens[s]
            np.multiply(g[..., U : 2 * U], cell_prev, out=cell)  # f·cell_prev
            np.multiply(g[..., :U], candidate, out=scratch)  # i·c
            np.add(cell, scratch, out=cell)
            if mode == "general":
                hidden[...] = activation(cell)
            else:
                np.tanh(cell, out=hidden)
            np.multiply(hidden, g[..., 2 * U : 3 * U], out=hidden)  # o·a(cell)
            if keep is not None and not keep[s].all():
                hold(keep[s], [cell, hidden], [cell_prev, h_prev], [g, None if pre is None else pre[s]])
            h_prev, cell_prev = hidden, cell
        return [h_prev.copy(), cell_prev.copy()]

    def _plain_steps(self, xw, h_prev, cell_prev, gates_out, cells, hiddens) -> list[NDArray]:
        """The common case (sigmoid/tanh, no mask, no pre-activations), same numbers as ``steps``.

        With small layers a step's cost is NumPy's call overhead, so the
        per-step views are made in bulk before the loop (iterating over an
        array is cheaper than slicing it) and ufuncs get their output
        positionally: about 40% less time per step than the general loop for
        LSTM(32).
        """
        U = self.units
        n = h_prev.shape[0]
        recur = np.empty((n, 4 * U), dtype=self.dtype)
        scratch = np.empty((n, U), dtype=self.dtype)
        half = self.dtype.type(0.5)
        tanh, multiply, add, dot, R = np.tanh, np.multiply, np.add, np.dot, self.recurrent
        G = gates_out
        per_step = zip(xw, G, G[:, :, : 3 * U], G[:, :, :U], G[:, :, U : 2 * U], G[:, :, 2 * U : 3 * U],
                       G[:, :, 3 * U :], cells, hiddens)
        for x, g, sig, gate_i, gate_f, gate_o, candidate, cell, hidden in per_step:
            dot(h_prev, R, recur)
            add(x, recur, g)
            tanh(g, g)
            multiply(sig, half, sig)
            add(sig, half, sig)
            multiply(gate_f, cell_prev, cell)
            multiply(gate_i, candidate, scratch)
            add(cell, scratch, cell)
            tanh(cell, hidden)
            multiply(hidden, gate_o, hidden)
            h_prev, cell_prev = hidden, cell
        return [h_prev.copy(), cell_prev.copy()]
