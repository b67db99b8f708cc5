"""Gate layouts: which columns of a recurrent layer's weights belong to which gate.

This is the one module that knows Keras' gate orders:

* LSTM: ``i, f, c, o`` (input, forget, candidate, output);
* GRU: ``z, r, c`` (update, reset, candidate);
* SimpleRNN: a single block ``h``.

Every stored layout is converted here to one canonical form,
:class:`RecurrentWeights`: ``kernel`` (F, G*U), ``recurrent_kernel``
(U, G*U), ``bias`` (G*U) and, for a GRU with ``reset_after=True``, a separate
``recurrent_bias`` (G*U).  Gate ``g`` of unit ``u`` is column ``g*U + u``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from numpy.typing import NDArray

from .errors import ModelFileError
from .reading import StoredArray

GATES: dict[str, tuple[str, ...]] = {
    "LSTM": ("i", "f", "c", "o"),
    "GRU": ("z", "r", "c"),
    "SimpleRNN": ("h",),
}

GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "c": "candidate",
    "o": "output gate",
    "z": "update gate",
    "r": "reset gate",
    "h": "hidden",
}

# What each canonical tensor's rows mean, for labelling the `source` column.
ROW_MEANING = {"kernel": "input feature", "recurrent_kernel": "previous hidden unit"}


@dataclass(frozen=True)
class RecurrentWeights:
    """A recurrent layer's weights in the canonical fused layout."""

    kind: str  # "LSTM" | "GRU" | "SimpleRNN"
    units: int
    kernel: NDArray  # (F, G*U)
    recurrent_kernel: NDArray  # (U, G*U)
    bias: NDArray | None  # (G*U,); for GRU reset_after: the input-side bias
    recurrent_bias: NDArray | None = None  # (G*U,); GRU reset_after only
    reset_after: bool = False
    # Canonical tensor name -> the stored array it came from (for paths in the output).
    sources: Mapping[str, StoredArray] = field(default_factory=dict)
    layout: str = "keras"  # "keras", "cudnn", "keras1": how the file stored them

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.kind]

    @property
    def features(self) -> int:
        return int(self.kernel.shape[0])

    def columns(self, gate: str) -> slice:
        """The column slice of gate ``gate`` in kernel, recurrent_kernel and bias."""
        index = self.gates.index(gate)
        return slice(index * self.units, (index + 1) * self.units)

    def tensors(self) -> list[tuple[str, NDArray]]:
        """The canonical tensors present, in the order they are labelled."""
        result: list[tuple[str, NDArray]] = [("kernel", self.kernel), ("recurrent_kernel", self.recurrent_kernel)]
        if self.bias is not None:
            result.append(("bias", self.bias))
        if self.recurrent_bias is not None:
            result.append(("recurrent_bias", self.recurrent_bias))
        return result

    def parameter_count(self) -> int:
        return int(sum(array.size for _, array in self.tensors()))


def canonical_name(weight_name: str) -> str:
    """``"lstm/lstm_cell/kernel:0"`` -> ``"kernel"``."""
    last = weight_name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def build_recurrent_weights(
    kind: str,
    units: int | None,
    stored: Mapping[str, StoredArray],
    *,
    use_bias: bool,
    reset_after: bool,
    where: str,
) -> RecurrentWeights:
    """Check the stored tensors of a recurrent layer against its config and fuse them.

    ``stored`` maps canonical names (``kernel``, ``recurrent_kernel``,
    ``bias``) to arrays.  ``where`` names the layer in error messages.
    """
    if kind not in GATES:
        raise ModelFileError(f"{where}: unknown recurrent layer kind {kind}")
    missing = [name for name in ("kernel", "recurrent_kernel") if name not in stored]
    if missing:
        found = ", ".join(sorted(stored)) or "none"
        raise ModelFileError(f"{where}: weights {', '.join(missing)} not found in the file (found: {found})")
    kernel = stored["kernel"].array
    recurrent = stored["recurrent_kernel"].array
    n_gates = len(GATES[kind])
    if recurrent.ndim != 2 or kernel.ndim != 2:
        raise ModelFileError(
            f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} must be 2-D"
        )
    if units is None:
        units = int(recurrent.shape[0])
    expected = n_gates * units
    if recurrent.shape != (units, expected):
        raise ModelFileError(
            f"{where}: recurrent_kernel has shape {recurrent.shape}, but a {kind} of {units} units "
            f"needs ({units}, {expected})"
        )
    if kernel.shape[1] != expected or kernel.shape[0] < 1:
        raise ModelFileError(
            f"{where}: kernel has shape {kernel.shape}, but a {kind} of {units} units "
            f"needs (features, {expected})"
        )
    bias = recurrent_bias = None
    sources = {"kernel": stored["kernel"], "recurrent_kernel": stored["recurrent_kernel"]}
    if "bias" in stored:
        raw = stored["bias"].array
        sources["bias"] = stored["bias"]
        if kind == "GRU" and reset_after:
            if raw.shape != (2, expected):
                raise ModelFileError(
                    f"{where}: bias has shape {raw.shape}, but a GRU of {units} units with "
                    f"reset_after=True needs (2, {expected})"
                )
            bias, recurrent_bias = raw[0], raw[1]
            sources["recurrent_bias"] = stored["bias"]
        else:
            if raw.shape != (expected,):
                raise ModelFileError(
                    f"{where}: bias has shape {raw.shape}, but a {kind} of {units} units needs ({expected},)"
                )
            bias = raw
    elif use_bias:
        raise ModelFileError(f"{where}: use_bias is true but no bias is stored")
    return RecurrentWeights(
        kind=kind,
        units=units,
        kernel=kernel,
        recurrent_kernel=recurrent,
        bias=bias,
        recurrent_bias=recurrent_bias,
        reset_after=bool(reset_after and kind == "GRU"),
        sources=sources,
    )


def infer_recurrent_kind(stored: Mapping[str, StoredArray]) -> tuple[str, int, bool] | None:
    """Guess (kind, units, reset_after) of a layer from its weights alone (weights-only files).

    Returns None when the tensors do not look like a recurrent layer.
    """
    if "kernel" not in stored or "recurrent_kernel" not in stored:
        return None
    kernel, recurrent = stored["kernel"].array, stored["recurrent_kernel"].array
    if kernel.ndim != 2 or recurrent.ndim != 2 or recurrent.shape[0] == 0:
        return None
    units = int(recurrent.shape[0])
    if recurrent.shape[1] % units or kernel.shape[1] != recurrent.shape[1]:
        return None
    n_gates = recurrent.shape[1] // units
    kind = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(n_gates)
    if kind is None:
        return None
    reset_after = False
    bias = stored.get("bias")
    if bias is not None and bias.array.ndim == 2:
        reset_after = kind == "GRU"
    return kind, units, reset_after
