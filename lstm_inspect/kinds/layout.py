"""Stored weight layouts of recurrent layers, converted to one canonical form.

Every kind (see ``kinds``) stores ``kernel`` (..., F, G*U), ``recurrent_kernel``
(..., U, G*U) and ``bias`` (G*U) with the gate blocks side by side in its own
gate order; gate ``g`` of unit ``u`` is column ``g*U + u``.  The leading
``...`` axes are the kernel taps of a convolutional kind and absent otherwise.
This module turns what a file holds into that canonical
:class:`RecurrentWeights`, and remembers, for every canonical value, where it
is stored (:meth:`RecurrentWeights.location`), so labels always point at the
file.  Stored layouts understood:

* Keras 2 / tf-keras / Keras 3: the canonical layout itself.  A GRU with
  ``reset_after=True`` keeps a (2, 3U) bias: row 0 for the input side, row 1
  for the recurrent side.
* Keras 2 ``CuDNNLSTM`` / ``CuDNNGRU``: the same shapes, but cuDNN reads each
  stored (F, U) gate block flattened row by row as a (U, F) matrix, so the
  equivalent Keras block is ``block.reshape(U, F).T``; the bias holds an
  input half and a recurrent half (8U / 6U), summed by an LSTM and kept apart
  by a GRU (which then acts as ``reset_after=True``).
* Keras 1: one array per gate (``W_i, U_i, b_i, ...``), or fused ``W, U, b``
  (``consume_less='gpu'``), told apart by name.

Nothing here knows a gate letter: the kind passes its gates and its Keras 1
letters in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ..errors import ModelFileError
from ..reading import StoredArray

if TYPE_CHECKING:
    from .base import RecurrentKind

# What each canonical tensor's rows mean, for labelling the `source` column.
ROW_MEANING = {"kernel": "input feature", "recurrent_kernel": "previous hidden unit"}


@dataclass(frozen=True)
class StoredLocation:
    """Where one gate's block of a canonical tensor is stored.

    ``rows``/``columns`` have the block's shape ((..., F or U, U) for kernels,
    (U,) for biases): the stored row and column of each value.  ``rows`` is
    None for a 1-D stored tensor.  For a convolutional kernel, ``taps`` holds
    the kernel position of each value ((..., F, U, rank) ints), else None.
    """

    path: str
    shape: tuple[int, ...]
    text: str  # a readable slice, e.g. "[:, 4:8]"
    rows: NDArray | None
    columns: NDArray
    taps: NDArray | None = None


@dataclass(frozen=True)
class RecurrentWeights:
    """A recurrent layer's weights in the canonical fused layout of its kind."""

    kind: RecurrentKind
    units: int
    kernel: NDArray  # (..., F, G*U)
    recurrent_kernel: NDArray  # (..., U, G*U)
    bias: NDArray | None  # (G*U,); for a reset_after GRU: the input-side bias
    recurrent_bias: NDArray | None = None  # (G*U,); reset_after GRU and cuDNN layers
    reset_after: bool = False
    # Canonical tensor name -> the stored array it came from (for paths in the output).
    sources: Mapping[str, StoredArray] = field(default_factory=dict)
    layout: str = "keras"  # "keras", "cudnn", "keras1": how the file stored them
    # (tensor, gate) -> where that block is stored, for layouts other than the canonical one.
    locations: Mapping[tuple[str, str], StoredLocation] = field(default_factory=dict)

    @property
    def gates(self) -> tuple[str, ...]:
        """The kind's gate letters, in Keras' column order."""
        return self.kind.gates

    @property
    def features(self) -> int:
        """Input features (channels, for a convolutional kind) per step."""
        return int(self.kernel.shape[-2])

    @property
    def taps(self) -> tuple[int, ...]:
        """The kernel's spatial size (convolutional kinds), else ``()``."""
        return tuple(int(d) for d in self.kernel.shape[:-2])

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

    def effective_bias(self) -> NDArray | None:
        """The bias added to x·kernel each step (a cuDNN LSTM's two halves summed)."""
        if self.recurrent_bias is not None and not self.reset_after:
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
            block = source.array.shape[:-1] + (len(units),)  # (..., rows, U)
            rows = np.broadcast_to(np.arange(block[-2])[:, None], block[-2:])
            taps = None
            if len(block) > 2:  # a convolution kernel: every tap holds a (rows, U) matrix
                grid = np.indices(block[:-2])  # (rank, *taps)
                taps = np.broadcast_to(np.moveaxis(grid, 0, -1)[..., None, None, :], block + (len(block) - 2,))
            lead = ", ".join(":" for _ in block[:-1])
            return StoredLocation(
                source.path, shape, f"[{lead}, {cols.start}:{cols.stop}]",
                np.broadcast_to(rows, block), np.broadcast_to(units, block), taps,
            )
        if len(shape) == 2:  # a reset_after GRU's (2, 3U) bias: row 0 input, row 1 recurrent
            row = 0 if tensor == "bias" else 1
            return StoredLocation(source.path, shape, f"[{row}, {cols.start}:{cols.stop}]", np.full(len(units), row), units)
        return StoredLocation(source.path, shape, f"[{cols.start}:{cols.stop}]", None, units)


def canonical_name(weight_name: str) -> str:
    """``"lstm/lstm_cell/kernel:0"`` -> ``"kernel"``."""
    last = weight_name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def build_weights(
    kind: RecurrentKind,
    units: int | None,
    stored: Mapping[str, StoredArray],
    *,
    use_bias: bool,
    reset_after: bool,
    cudnn: bool,
    where: str,
) -> RecurrentWeights:
    """Check the stored tensors of a recurrent layer against its config and fuse them.

    ``stored`` maps names (``kernel``, ``recurrent_kernel``, ``bias``; Keras 1
    ``W_i``, ...) to arrays.  ``cudnn``: the file holds a Keras 2 CuDNN layer.
    ``where`` names the layer in error messages.
    """
    if cudnn:
        return _from_cudnn(kind, units, stored, where)
    if "kernel" not in stored and any(name in stored for name in ("W", "W_i", "W_z")):
        return _from_keras1(kind, units, stored, where)
    missing = [name for name in ("kernel", "recurrent_kernel") if name not in stored]
    if missing:
        found = ", ".join(sorted(stored)) or "none"
        raise ModelFileError(f"{where}: weights {', '.join(missing)} not found in the file (found: {found})")
    kernel = stored["kernel"].array
    recurrent = stored["recurrent_kernel"].array
    rank = 2 + kind.spatial_rank
    if recurrent.ndim != rank or kernel.ndim != rank:
        raise ModelFileError(
            f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} must have {rank} axes for a {kind.name}"
        )
    if units is None:
        units = int(recurrent.shape[-2])
    expected = len(kind.gates) * units
    window = "..., " if rank > 2 else ""  # a convolutional kind's kernel window comes first
    if recurrent.shape[-2:] != (units, expected):
        raise ModelFileError(
            f"{where}: recurrent_kernel has shape {recurrent.shape}, but a {kind.name} of {units} units "
            f"needs ({window}{units}, {expected})"
        )
    if kernel.shape[-1] != expected or kernel.shape[-2] < 1:
        raise ModelFileError(
            f"{where}: kernel has shape {kernel.shape}, but a {kind.name} of {units} units needs ({window}features, {expected})"
        )
    bias = recurrent_bias = None
    sources = {"kernel": stored["kernel"], "recurrent_kernel": stored["recurrent_kernel"]}
    split_bias = kind.two_biases and reset_after
    if "bias" in stored:
        raw = stored["bias"].array
        sources["bias"] = stored["bias"]
        if split_bias:
            if raw.shape != (2, expected):
                raise ModelFileError(
                    f"{where}: bias has shape {raw.shape}, but a {kind.name} of {units} units with "
                    f"reset_after=True needs (2, {expected})"
                )
            bias, recurrent_bias = raw[0], raw[1]
            sources["recurrent_bias"] = stored["bias"]
        else:
            if raw.shape != (expected,):
                raise ModelFileError(f"{where}: bias has shape {raw.shape}, but a {kind.name} of {units} units needs ({expected},)")
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
        reset_after=split_bias,
        sources=sources,
    )


def gate_count(stored: Mapping[str, StoredArray]) -> tuple[int, int, int] | None:
    """(gates, units, spatial rank) that the stored kernels imply, or None when they are not a
    recurrent layer's (weights-only files: the kind is recognised from the shapes)."""
    if "kernel" not in stored or "recurrent_kernel" not in stored:
        return None
    kernel, recurrent = stored["kernel"].array, stored["recurrent_kernel"].array
    if kernel.ndim < 2 or recurrent.ndim != kernel.ndim or recurrent.shape[-2] == 0:
        return None
    units = int(recurrent.shape[-2])
    if recurrent.shape[-1] % units or kernel.shape[-1] != recurrent.shape[-1]:
        return None
    return recurrent.shape[-1] // units, units, kernel.ndim - 2


# ------------------------------------------------------------------ cuDNN


def _check_kernels(kind: RecurrentKind, units: int | None, kernel: NDArray, recurrent: NDArray, where: str) -> int:
    gates = len(kind.gates)
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ModelFileError(f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} must be 2-D")
    units = int(recurrent.shape[0]) if units is None else int(units)
    if recurrent.shape != (units, gates * units) or kernel.shape[1] != gates * units or kernel.shape[0] < 1:
        raise ModelFileError(
            f"{where}: kernel {kernel.shape} and recurrent_kernel {recurrent.shape} do not fit a "
            f"{kind.name} of {units} units"
        )
    return units


def _from_cudnn(kind: RecurrentKind, units: int | None, stored: Mapping[str, StoredArray], where: str) -> RecurrentWeights:
    """Keras 2's CuDNNLSTM / CuDNNGRU: per-gate blocks in cuDNN's memory order, split biases."""
    gates = kind.gates
    label = f"CuDNN{kind.name}"
    for name in ("kernel", "recurrent_kernel", "bias"):
        if name not in stored:
            raise ModelFileError(f"{where}: {label} weight '{name}' not found in the file")
    kernel_s, recurrent_s, bias_s = stored["kernel"], stored["recurrent_kernel"], stored["bias"]
    U = _check_kernels(kind, units, kernel_s.array, recurrent_s.array, where)
    width = len(gates) * U
    if bias_s.array.shape != (2 * width,):
        raise ModelFileError(f"{where}: bias has shape {bias_s.array.shape}, but a {label} of {U} units needs ({2 * width},)")
    locations: dict[tuple[str, str], StoredLocation] = {}
    blocks: dict[str, list[NDArray]] = {"kernel": [], "recurrent_kernel": []}
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
        kind=kind,
        units=U,
        kernel=np.concatenate(blocks["kernel"], axis=1),
        recurrent_kernel=np.concatenate(blocks["recurrent_kernel"], axis=1),
        bias=bias_s.array[:width],
        recurrent_bias=bias_s.array[width:],
        reset_after=kind.two_biases,  # a CuDNNGRU is a reset_after GRU; an LSTM sums the halves
        sources={"kernel": kernel_s, "recurrent_kernel": recurrent_s, "bias": bias_s, "recurrent_bias": bias_s},
        layout="cudnn",
        locations=locations,
    )


# ------------------------------------------------------------------ Keras 1


def _from_keras1(kind: RecurrentKind, units: int | None, stored: Mapping[str, StoredArray], where: str) -> RecurrentWeights:
    """Keras 1: ``W_<g>, U_<g>, b_<g>`` one per gate (named by the kind's Keras 1 letters), or fused ``W, U, b``."""
    letters = kind.keras1_letters
    if "W" in stored or not letters:
        fused = {"kernel": stored.get("W"), "recurrent_kernel": stored.get("U"), "bias": stored.get("b")}
        present = {k: v for k, v in fused.items() if v is not None}
        weights = build_weights(kind, units, present, use_bias="bias" in present, reset_after=False, cudnn=False, where=where)
        return replace(weights, layout="keras1")
    tensors: dict[str, list[NDArray]] = {"kernel": [], "recurrent_kernel": [], "bias": []}
    locations: dict[tuple[str, str], StoredLocation] = {}
    sources: dict[str, StoredArray] = {}
    prefix = {"kernel": "W", "recurrent_kernel": "U", "bias": "b"}
    for gate, letter in zip(kind.gates, letters):
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
    U = _check_kernels(kind, units, kernel, recurrent, where)
    bias = None
    if tensors["bias"]:
        if len(tensors["bias"]) != len(kind.gates):
            raise ModelFileError(f"{where}: some but not all Keras 1 gate biases are stored")
        bias = np.concatenate(tensors["bias"])
        if bias.shape != (len(kind.gates) * U,):
            raise ModelFileError(f"{where}: the Keras 1 gate biases do not fit a {kind.name} of {U} units")
    return RecurrentWeights(
        kind=kind, units=U, kernel=kernel, recurrent_kernel=recurrent, bias=bias,
        sources=sources, layout="keras1", locations=locations,
    )
