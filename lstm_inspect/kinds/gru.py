"""GRU: gates z, r, c (update, reset, candidate), one state h.

Keras (``a`` = activation, ``ra`` = recurrent_activation)::

    reset_after=True  (tf-keras 2 and Keras 3 default):
        x_z, x_r, x_c = x·kernel + bias         h_z, h_r, h_c = h_prev·recurrent_kernel + recurrent_bias
        z = ra(x_z + h_z)   r = ra(x_r + h_r)   c = a(x_c + r·h_c)
    reset_after=False (Keras 1 and standalone Keras 2):
        z = ra(x_z + h_prev·U_z)   r = ra(x_r + h_prev·U_r)   c = a(x_c + (r·h_prev)·U_c)
    hidden = z·h_prev + (1 - z)·c

Stored: ``kernel`` (F, 3U), ``recurrent_kernel`` (U, 3U) in the order z, r,
c; the bias is (3U), or (2, 3U) with reset_after (row 0 input side, row 1
recurrent side).  A GRU saved by Keras <= 2.1 has no ``reset_after`` key and
means False.  Keras 2's CuDNNGRU keeps 6U of bias and computes a reset_after
GRU.  Keras 1 names its arrays ``W_z, U_z, b_z, W_r, ..., W_h`` (the candidate
is ``h`` there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from .base import Cell, ExportOrder, RecurrentKind, hold
from .layout import RecurrentWeights


class GRU(RecurrentKind):
    name = "GRU"
    gates = ("z", "r", "c")
    gate_names: ClassVar[Mapping[str, str]] = {"z": "update gate", "r": "reset gate", "c": "candidate"}
    recurrent_gates = ("z", "r")
    keras1_letters = ("z", "r", "h")
    two_biases = True
    keras_classes = ("GRU", "CuDNNGRU")
    cell_classes = ("GRUCell",)
    torch = ExportOrder("GRU", (1, 0, 2), "r,z,n")
    onnx = ExportOrder("GRU", (0, 1, 2), "z,r,h")

    def default_reset_after(self, keras_major: int | None) -> bool:
        # tf-keras 2.x writes the key; a file without it is Keras <= 2.1 (False), or Keras 3 (True).
        return (keras_major or 0) >= 3

    def cell(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
             dtype: np.dtype, config: Mapping[str, Any]) -> Cell:
        return GRUCell(weights, activation, recurrent_activation, dtype)

    def equations(self, activation: str, recurrent_activation: str, use_bias: bool, reset_after: bool) -> list[str]:
        a, ra = activation, recurrent_activation
        if reset_after:
            return [
                "x_z, x_r, x_c = x·kernel + bias        h_z, h_r, h_c = h_prev·recurrent_kernel + recurrent_bias",
                f"z = {ra}(x_z + h_z)   r = {ra}(x_r + h_r)   c = {a}(x_c + r·h_c)",
                "hidden = z·h_prev + (1 - z)·c   (reset_after=True)",
            ]
        return [
            "x_z, x_r, x_c = x·kernel + bias",
            f"z = {ra}(x_z + h_prev·U_z)   r = {ra}(x_r + h_prev·U_r)   c = {a}(x_c + (r·h_prev)·U_c)",
            "hidden = z·h_prev + (1 - z)·c   (reset_after=False)",
        ]

    def step_source(self, name: str, activation: str, recurrent_activation: str, use_bias: bool,
                    reset_after: bool) -> str:
        a, ra = activation, recurrent_activation
        head = f'''def {name}(x, state, w):
    """One GRU step ({a}, {ra}, reset_after={reset_after}): x (N, F), state [h] (N, U) -> new [h] and the gates."""
    (h,) = state
    U = h.shape[1]
    # Keras' column blocks are z, r, c (update, reset, candidate): gate k of unit u is column k*U + u.
'''
        x_side = 'x @ w["kernel"]' + (' + w["bias"]' if use_bias else "")
        if reset_after:
            h_side = 'h @ w["recurrent_kernel"]' + (' + w["recurrent_bias"]' if use_bias else "")
            body = f'''    xs = {x_side}  # (N, 3U), input side with its own bias
    hs = {h_side}  # (N, 3U), recurrent side with its own bias
    z = {ra}(xs[:, 0 * U : 1 * U] + hs[:, 0 * U : 1 * U])  # update gate
    r = {ra}(xs[:, 1 * U : 2 * U] + hs[:, 1 * U : 2 * U])  # reset gate
    c = {a}(xs[:, 2 * U : 3 * U] + r * hs[:, 2 * U : 3 * U])  # reset_after: r scales h·U_c + its bias
'''
        else:
            side = "input side, with the one bias" if use_bias else "input side"
            body = f'''    xs = {x_side}  # (N, 3U), {side}
    R = w["recurrent_kernel"]  # (U, 3U)
    z = {ra}(xs[:, 0 * U : 1 * U] + h @ R[:, 0 * U : 1 * U])  # update gate
    r = {ra}(xs[:, 1 * U : 2 * U] + h @ R[:, 1 * U : 2 * U])  # reset gate
    c = {a}(xs[:, 2 * U : 3 * U] + (r * h) @ R[:, 2 * U : 3 * U])  # reset_after=False: r scales h first
'''
        tail = '''    hidden = z * h + (1 - z) * c  # z keeps the old state, 1 - z takes the candidate
    return [hidden], {"z": z, "r": r, "c": c}
'''
        return head + body + tail


class GRUCell(Cell):
    """GRU weights for the step loop (input bias folded into the projection)."""

    def __init__(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
                 dtype: np.dtype) -> None:
        super().__init__(weights, activation, recurrent_activation, dtype)
        self.kernel = np.ascontiguousarray(np.asarray(weights.kernel, dtype=self.dtype))  # (F, 3U)
        self.recurrent = np.ascontiguousarray(np.asarray(weights.recurrent_kernel, dtype=self.dtype))  # (U, 3U)
        effective = weights.effective_bias()
        self.bias = (np.zeros(self.kernel.shape[1], dtype=self.dtype) if effective is None
                     else np.asarray(effective, dtype=self.dtype))
        # Only a reset_after GRU keeps its recurrent bias apart (inside the reset gate's product).
        self.reset_after = weights.reset_after
        rb = weights.recurrent_bias if weights.reset_after else None
        self.recurrent_bias = None if rb is None else np.asarray(rb, dtype=self.dtype)

    def project(self, x: NDArray) -> NDArray:
        xw = np.matmul(x, self.kernel)  # (S, N, 3U)
        xw += self.bias
        return xw

    def steps(self, xw: NDArray, state: list[NDArray], buffers: dict[str, NDArray], keep: NDArray | None) -> list[NDArray]:
        (h_prev,) = state
        U = self.units
        R = self.recurrent
        gates_out, hiddens = buffers["gates"], buffers["hidden"]
        pre = buffers.get("pre")
        activation, recurrent_activation = self.activation, self.recurrent_activation
        recur = np.empty((h_prev.shape[0], 3 * U), dtype=self.dtype)
        for s in range(xw.shape[0]):
            x_s, g = xw[s], gates_out[s]
            if self.reset_after:
                np.dot(h_prev, R, out=recur)
                if self.recurrent_bias is not None:
                    recur += self.recurrent_bias
                np.add(x_s[:, : 2 * U], recur[:, : 2 * U], out=g[:, : 2 * U])
                if pre is not None:
                    pre[s, :, : 2 * U] = g[:, : 2 * U]
                g[:, : 2 * U] = recurrent_activation(g[:, : 2 * U])
                reset = g[:, U : 2 * U]
                candidate_pre = x_s[:, 2 * U :] + reset * recur[:, 2 * U :]
            else:
                np.add(x_s[:, : 2 * U], h_prev @ R[:, : 2 * U], out=g[:, : 2 * U])
                if pre is not None:
                    pre[s, :, : 2 * U] = g[:, : 2 * U]
                g[:, : 2 * U] = recurrent_activation(g[:, : 2 * U])
                reset = g[:, U : 2 * U]
                candidate_pre = x_s[:, 2 * U :] + (reset * h_prev) @ R[:, 2 * U :]
            if pre is not None:
                pre[s, :, 2 * U :] = candidate_pre
            g[:, 2 * U :] = activation(candidate_pre)
            update = g[:, :U]
            hidden = hiddens[s]
            hidden[...] = update * h_prev + (1 - update) * g[:, 2 * U :]
            if keep is not None and not keep[s].all():
                hold(keep[s], [hidden], [h_prev], [g, None if pre is None else pre[s]])
            h_prev = hidden
        return [h_prev.copy()]
