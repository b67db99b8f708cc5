"""Label every weight of a recurrent layer by tensor, gate, unit and source row.

``label_weights`` yields one :class:`GateBlock` per (layer, tensor, gate):
the slice of ``kernel`` (F, U), ``recurrent_kernel`` (U, U) or ``bias`` (U,)
that feeds that gate, with the dataset it came from and its column range.
Summary statistics come with each block; the long one-row-per-value form is
built by ``columns.weight_blocks``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import UsageProblem
from .kinds import ROW_MEANING
from .model import Model, RecurrentLayer


@dataclass(frozen=True)
class GateBlock:
    """The weights of one gate in one tensor of one recurrent layer."""

    layer: str  # "lstm", "bi/forward"
    kind: str  # the kind's name: LSTM, GRU, SimpleRNN, ConvLSTM2D, ...
    tensor: str  # kernel | recurrent_kernel | bias | recurrent_bias
    gate: str  # i, f, c, o (LSTM); z, r, c (GRU); h (SimpleRNN)
    path: str  # where the stored tensor lives in the file
    stored_shape: tuple[int, ...]
    columns: str  # the slice of the stored tensor, e.g. "[:, 8:12]"
    values: NDArray  # (rows, U) for kernels, (U,) for biases
    stored_rows: NDArray | None  # stored row of each value (values' shape); None for 1-D tensors
    stored_columns: NDArray  # stored column of each value (values' shape)
    gate_name: str = ""  # "forget gate"
    stored_taps: NDArray | None = None  # convolution kernels: the tap of each value (values' shape + (rank,))

    @property
    def unit_count(self) -> int:
        """The number of units (the last axis)."""
        return int(self.values.shape[-1])

    @property
    def row_meaning(self) -> str | None:
        """What the rows of this tensor stand for (``input feature``, ``previous hidden unit``), None for a bias."""
        return ROW_MEANING.get(self.tensor)

    def stats(self) -> dict[str, float]:
        """The block's mean, std, min, max and l2 norm (NaN for an empty block), computed in float64."""
        v = np.asarray(self.values, dtype=np.float64)
        if v.size == 0:
            return {k: float("nan") for k in ("mean", "std", "min", "max", "l2")}
        with np.errstate(all="ignore"):  # NaN/inf weights (warned about at load) give NaN/inf figures
            return {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "min": float(v.min()),
                "max": float(v.max()),
                "l2": float(np.sqrt(np.sum(v * v))),
            }


def label_weights(
    model: Model,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
) -> Iterator[GateBlock]:
    """Every recurrent weight, labelled: for each selected layer, tensor and gate.

    ``layers`` filters by layer name (a Bidirectional's name selects both
    directions); ``gates`` by gate letter.  Raises ``UsageProblem`` for an
    unknown layer or a gate no selected layer has.
    """
    selected = model.select_recurrent(layers)
    if gates:
        known = {g for layer in selected for g in layer.gates}
        unknown = [g for g in gates if g not in known]
        if unknown:
            raise UsageProblem(f"unknown gate(s) {', '.join(unknown)} (these layers have: {', '.join(sorted(known))})")
    for layer in selected:
        yield from layer_gate_blocks(layer, gates)


def layer_gate_blocks(layer: RecurrentLayer, gates: Sequence[str] | None = None) -> Iterator[GateBlock]:
    """The gate blocks of one layer's weights, tensor by tensor, only ``gates`` when given."""
    w = layer.weights
    for tensor, array in w.tensors():
        for gate in w.gates:
            if gates and gate not in gates:
                continue
            where = w.location(tensor, gate)
            yield GateBlock(
                layer=layer.name,
                kind=layer.kind.name,
                tensor=tensor,
                gate=gate,
                path=where.path,
                stored_shape=where.shape,
                columns=where.text,
                values=array[..., w.columns(gate)],
                stored_rows=where.rows,
                stored_columns=where.columns,
                gate_name=layer.kind.gate_name(gate),
                stored_taps=where.taps,
            )


def equations(layer: RecurrentLayer) -> list[str]:
    """The step equations of a layer, in words the legend prints."""
    return layer.kind.equations(
        layer.activation or "activation (unknown)",
        layer.recurrent_activation or "recurrent_activation (unknown)",
        layer.use_bias,
        layer.weights.reset_after,
    )
