"""Gate layouts: which columns of a recurrent layer's weights belong to which gate.

This is the one module that knows Keras' gate orders:

* LSTM: ``i, f, c, o`` (input, forget, candidate, output);
* GRU: ``z, r, c`` (update, reset, candidate);
* SimpleRNN: a single block ``h``.

Every stored layout is converted here to one canonical form,
:class:`RecurrentWeights`: ``kernel`` (F, G*U), ``recurrent_kernel``
(U, G*U), ``bias`` (G*U) and, where the file keeps a second bias (a GRU with
``reset_after=True``, cuDNN layers), ``recurrent_bias`` (G*U).  Gate ``g`` of
unit ``u`` is column ``g*U + u``.

Stored layouts understood:

* Keras 2 / tf-keras / Keras 3: the canonical layout itself;
* Keras 2 ``CuDNNLSTM`` / ``CuDNNGRU``: the same shapes, but cuDNN reads each
  stored (F, U) gate block flattened row by row as a (U, F) matrix, so the
  equivalent Keras block is ``block.reshape(U, F).T``; the bias holds an
  input half and a recurrent half (8U / 6U) whose sum acts in an LSTM, and
  which a CuDNNGRU uses as a ``reset_after=True`` GRU does;
* Keras 1: one array per gate (``W_i, U_i, b_i, ...``; GRU ``W_z, ..., W_h``),
  or fused ``W, U, b`` (``consume_less='gpu'``), told apart by name.

For every canonical value, :meth:`RecurrentWeights.location` says where it
is stored (dataset, row, column), so labels always point at the file.
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
class StoredLocation:
    """Where one gate's block of a canonical tensor is stored.

    ``rows``/``columns`` have the block's shape ((F or U, U) for kernels,
    (U,) for biases): the stored row and column of each value.  ``rows`` is
    None for a 1-D stored tensor.
    """

    path: str
    shape: tuple[int, ...]
    text: str  # a readable slice, e.g. "[:, 4:8]"
    rows: NDArray | None
    columns: NDArray


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
    # (tensor, gate) -> where that block is stored, for layouts other than the canonical one.
    locations: Mapping[tuple[str, str], StoredLocation] = field(default_factory=dict)

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

    def effective_bias(self) -> NDArray | None:
        """The bias added to x·kernel each step (an LSTM/SimpleRNN sums a cuDNN layer's two halves)."""
        if self.recurrent_bias is not None and not (self.kind == "GRU" and self.reset_after):
            return self.bias + self.recurrent_bias
        return self.bias

    def location(self, tensor: str, gate: str) -> StoredLocation:
        """Where the values of ``tensor``'s block for ``gate`` are stored."""
        if (tensor, gate) in self.locations:
            return self.locations[(tensor, gate)]
        source = self.sources[tensor]
        cols = self.columns(gate)
        units = np.arange(cols.start, cols.stop)
        shape = tuple(source.array.shape)
        if tensor in ("kernel", "recurrent_kernel"):
            rows = source.array.shape[0]
            return StoredLocation(
                source.path, shape, f"[:, {cols.start}:{cols.stop}]",
                np.repeat(np.arange(rows)[:, None], len(units), axis=1), np.tile(units, (rows, 1)),
            )
        if len(shape) == 2:  # a reset_after GRU's (2, 3U) bias: row 0 input, row 1 recurrent
            row = 0 if tensor == "bias" else 1
            return StoredLocation(source.path, shape, f"[{row}, {cols.start}:{cols.stop}]", np.full(len(units), row), units)
        return StoredLocation(source.path, shape, f"[{cols.start}:{cols.stop}]", None, units)


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
    if kind in ("CuDNNLSTM", "CuDNNGRU"):
        return _from_cudnn(kind, units, stored, where)
    if kind not in GATES:
        raise ModelFileError(f"{where}: unknown recurrent layer kind {kind}")
    if "kernel" not in stored and any(name in stored for name in ("W", "W_i", "W_z")):
        return _from_keras1(kind, units, stored, where)
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


# ------------------------------------------------------------------ cuDNN


def _check_kernels(kind: str, units: int | None, kernel: NDArray, recurrent: NDArray, gates: int, where: str) -> int:
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ModelFileError(f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} must be 2-D")
    units = int(recurrent.shape[0]) if units is None else int(units)
    if recurrent.shape != (units, gates * units) or kernel.shape[1] != gates * units or kernel.shape[0] < 1:
        raise ModelFileError(
            f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} do not fit a "
            f"{kind} of {units} units"
        )
    return units


def _from_cudnn(kind: str, units: int | None, stored: Mapping[str, StoredArray], where: str) -> RecurrentWeights:
    """Keras 2's CuDNNLSTM / CuDNNGRU: per-gate blocks in cuDNN's order, split biases."""
    base = "LSTM" if kind == "CuDNNLSTM" else "GRU"
    gates = GATES[base]
    for name in ("kernel", "recurrent_kernel", "bias"):
        if name not in stored:
            raise ModelFileError(f"{where}: {kind} weight '{name}' not found in the file")
    kernel_s, recurrent_s, bias_s = stored["kernel"], stored["recurrent_kernel"], stored["bias"]
    U = _check_kernels(kind, units, kernel_s.array, recurrent_s.array, len(gates), where)
    width = len(gates) * U
    if bias_s.array.shape != (2 * width,):
        raise ModelFileError(f"{where}: bias has shape {bias_s.array.shape}, but a {kind} of {U} units needs ({2 * width},)")
    locations: dict[tuple[str, str], StoredLocation] = {}
    blocks = {"kernel": [], "recurrent_kernel": []}
    for tensor, source in (("kernel", kernel_s), ("recurrent_kernel", recurrent_s)):
        rows = source.array.shape[0]
        for g, gate in enumerate(gates):
            block = source.array[:, g * U : (g + 1) * U]
            blocks[tensor].append(block.reshape(U, rows).T)  # cuDNN reads the block as (U, rows)
            # Canonical [j, u] is the block's flat element u*rows + j.
            flat = np.arange(U)[None, :] * rows + np.arange(rows)[:, None]
            locations[(tensor, gate)] = StoredLocation(
                source.path, tuple(source.array.shape), f"[:, {g * U}:{(g + 1) * U}] (cuDNN order)",
                flat // U, g * U + flat % U,
            )
    for tensor, offset in (("bias", 0), ("recurrent_bias", width)):
        for g, gate in enumerate(gates):
            cols = offset + g * U + np.arange(U)
            locations[(tensor, gate)] = StoredLocation(
                bias_s.path, tuple(bias_s.array.shape), f"[{cols[0]}:{cols[-1] + 1}]", None, cols
            )
    return RecurrentWeights(
        kind=base,
        units=U,
        kernel=np.concatenate(blocks["kernel"], axis=1),
        recurrent_kernel=np.concatenate(blocks["recurrent_kernel"], axis=1),
        bias=bias_s.array[:width],
        recurrent_bias=bias_s.array[width:],
        reset_after=base == "GRU",
        sources={"kernel": kernel_s, "recurrent_kernel": recurrent_s, "bias": bias_s, "recurrent_bias": bias_s},
        layout="cudnn",
        locations=locations,
    )


# ------------------------------------------------------------------ Keras 1

# Keras 1 names each gate's arrays by its own letter; GRU's candidate is "h".
_KERAS1_LETTERS = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h"), "SimpleRNN": ()}


def _from_keras1(kind: str, units: int | None, stored: Mapping[str, StoredArray], where: str) -> RecurrentWeights:
    """Keras 1: ``W_i, U_i, b_i, ...`` one per gate (stored i, c, f, o for an LSTM), or fused ``W, U, b``."""
    letters = _KERAS1_LETTERS[kind]
    if "W" in stored or not letters:
        fused = {"kernel": stored.get("W"), "recurrent_kernel": stored.get("U"), "bias": stored.get("b")}
        present = {k: v for k, v in fused.items() if v is not None}
        weights = build_recurrent_weights(kind, units, present, use_bias="bias" in present, reset_after=False, where=where)
        return _replace_layout(weights, "keras1")
    gates = GATES[kind]
    tensors: dict[str, list[NDArray]] = {"kernel": [], "recurrent_kernel": [], "bias": []}
    locations: dict[tuple[str, str], StoredLocation] = {}
    sources: dict[str, StoredArray] = {}
    prefix = {"kernel": "W", "recurrent_kernel": "U", "bias": "b"}
    for gate, letter in zip(gates, letters):
        for tensor, head in prefix.items():
            key = f"{head}_{letter}"
            if key not in stored:
                if tensor == "bias":
                    continue
                raise ModelFileError(f"{where}: Keras 1 weight '{key}' not found in the file")
            source = stored[key]
            array = source.array
            tensors[tensor].append(array)
            sources.setdefault(tensor, source)
            width = array.shape[-1]
            if array.ndim == 2:
                rows = array.shape[0]
                locations[(tensor, gate)] = StoredLocation(
                    source.path, tuple(array.shape), f"[:, 0:{width}]",
                    np.repeat(np.arange(rows)[:, None], width, axis=1), np.tile(np.arange(width), (rows, 1)),
                )
            else:
                locations[(tensor, gate)] = StoredLocation(source.path, tuple(array.shape), f"[0:{width}]", None, np.arange(width))
    kernel = np.concatenate(tensors["kernel"], axis=1)
    recurrent = np.concatenate(tensors["recurrent_kernel"], axis=1)
    U = _check_kernels(kind, units, kernel, recurrent, len(gates), where)
    bias = None
    if tensors["bias"]:
        if len(tensors["bias"]) != len(gates):
            raise ModelFileError(f"{where}: some but not all Keras 1 gate biases are stored")
        bias = np.concatenate(tensors["bias"])
        if bias.shape != (len(gates) * U,):
            raise ModelFileError(f"{where}: the Keras 1 gate biases do not fit a {kind} of {U} units")
    return RecurrentWeights(
        kind=kind, units=U, kernel=kernel, recurrent_kernel=recurrent, bias=bias,
        sources=sources, layout="keras1", locations=locations,
    )


def _replace_layout(weights: RecurrentWeights, layout: str) -> RecurrentWeights:
    from dataclasses import replace

    return replace(weights, layout=layout)
