"""Turn labelled weights and traced steps into column blocks in the published order.

A :class:`Block` is a list of equally long columns (NumPy arrays, or a
scalar repeated for the whole block).  Writers format blocks; nothing here
does I/O.

Published column orders (public API, keep them):

* ``weights``: ``layer,tensor,gate,unit,source,value,path,column,row`` (``column``
  and ``row`` locate the value in the stored dataset; ``row`` is empty for 1-D biases);
* ``trace`` long: ``sequence,layer,t,unit,`` + gate columns (LSTM ``i,f,c,o,
  cell,hidden``; GRU ``z,r,c,hidden``; SimpleRNN ``hidden``; the union, in
  order of first appearance, when kinds are mixed) + ``z_<gate>`` with
  pre-activations + ``masked`` when the model masks steps;
* ``trace --wide``: ``sequence,layer,t,`` + ``<gate>_<unit>`` for each column;
* ``predict``: ``sequence,[t,]y_0..y_k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from .engine import value_names
from .errors import UnsupportedLayer
from .model import RecurrentLayer
from .tracing import TraceBlock
from .weights import GateBlock

WEIGHT_COLUMNS = ["layer", "tensor", "gate", "unit", "source", "value", "path", "column", "row"]
TRACE_KEYS = ["sequence", "layer", "t", "unit"]


@dataclass
class Block:
    columns: list[str]
    data: list  # arrays of equal length, or scalars

    @property
    def rows(self) -> int:
        for column in self.data:
            if isinstance(column, np.ndarray) and column.ndim:
                return int(column.shape[0])
        return 1


def coalesce(blocks: Iterable[Block], min_rows: int = 8192) -> Iterator[Block]:
    """Merge runs of small blocks (same columns) into blocks of at least ``min_rows`` rows.

    Formatting has a fixed cost per block, which dominates when blocks hold a
    row or two (many short sequences, or ``--sequence-length 1``).  Only
    blocks whose array columns share a dtype are merged: a concatenation that
    promotes int64 or float32 to float64 would change the printed digits.
    """
    pending: list[Block] = []
    count = 0
    for block in blocks:
        if pending and _signature(pending[0]) != _signature(block):
            yield _merge(pending)
            pending, count = [], 0
        if not pending and block.rows >= min_rows:
            yield block
            continue
        pending.append(block)
        count += block.rows
        if count >= min_rows:
            yield _merge(pending)
            pending, count = [], 0
    if pending:
        yield _merge(pending)


def _signature(block: Block) -> tuple:
    kinds = tuple(
        np.asarray(part).dtype.kind if _is_scalar(part) else part.dtype
        for part in block.data
    )
    return tuple(block.columns), kinds


def _merge(blocks: list[Block]) -> Block:
    if len(blocks) == 1:
        return blocks[0]
    data = []
    for index in range(len(blocks[0].columns)):
        parts = [block.data[index] for block in blocks]
        if all(_is_scalar(p) for p in parts) and all(type(p) is type(parts[0]) and p == parts[0] for p in parts):
            data.append(parts[0])
            continue
        arrays = [_as_column(part, block.rows) for part, block in zip(parts, blocks)]
        if any(isinstance(a, np.ma.MaskedArray) for a in arrays):
            data.append(np.ma.concatenate(arrays))
        else:
            data.append(np.concatenate(arrays))
    return Block(list(blocks[0].columns), data)


def _is_scalar(value) -> bool:
    return not (isinstance(value, np.ndarray) and value.ndim)


def _as_column(value, rows: int):
    if not _is_scalar(value):
        return value
    if isinstance(value, (str, bytes)) or value is None:
        column = np.empty(rows, dtype=object)
        column[:] = [value] * rows
        return column
    return np.full(rows, value)


# ------------------------------------------------------------------- weights


def weight_blocks(blocks: Iterable[GateBlock]) -> Iterator[Block]:
    """Long rows, one per weight value: unit by unit, each unit's sources in row order."""
    for gb in blocks:
        values = gb.values
        units = gb.unit_count
        if values.ndim == 2:  # (rows, U): kernel / recurrent_kernel
            rows = values.shape[0]
            unit = np.repeat(np.arange(units), rows)
            source = np.tile(np.arange(rows), units)
        else:  # (U,): bias
            unit = np.arange(units)
            source = np.ma.masked_all(units, dtype=np.int64)
        # Transposed so that each unit's values are consecutive.
        flat = values.T.reshape(-1)
        column = np.asarray(gb.stored_columns).T.reshape(-1)
        if gb.stored_rows is None:
            row = np.ma.masked_all(flat.shape[0], dtype=np.int64)
        else:
            row = np.asarray(gb.stored_rows).T.reshape(-1)
        yield Block(
            list(WEIGHT_COLUMNS),
            [gb.layer, gb.tensor, gb.gate, unit, source, flat, gb.path, column, row],
        )


# ------------------------------------------------------------------- trace


@dataclass(frozen=True)
class TraceColumns:
    """Which trace values are written, for which units."""

    names: tuple[str, ...]  # value columns, e.g. ("i", "f", "c", "o", "cell", "hidden")
    units: tuple[int, ...] | None  # None: all
    masked: bool  # add the `masked` column


def trace_columns(
    layers: Sequence[RecurrentLayer],
    *,
    gates: Sequence[str] | None,
    pre_activation: bool,
    masked: bool,
    units: Sequence[int] | None = None,
) -> TraceColumns:
    """The value columns for the traced layers: the union in order of first appearance."""
    names: list[str] = []
    for layer in layers:
        for name in value_names(layer, False):
            if name not in names:
                names.append(name)
    if gates:
        unknown = [g for g in gates if g not in names and not (g.startswith("z_") and pre_activation)]
        if unknown:
            raise ValueError(f"unknown gate(s) {', '.join(unknown)} (traced: {', '.join(names)})")
        names = [n for n in names if n in gates]
    if pre_activation:
        for layer in layers:
            for gate in layer.gates:
                z = f"z_{gate}"
                if z not in names and (not gates or gate in gates or z in gates):
                    names.append(z)
    return TraceColumns(tuple(names), tuple(units) if units is not None else None, masked)


def long_blocks(blocks: Iterable[TraceBlock], spec: TraceColumns, dtype) -> Iterator[Block]:
    """Long rows: one per (sequence, layer, t, unit)."""
    columns = TRACE_KEYS + list(spec.names) + (["masked"] if spec.masked else [])
    for tb in blocks:
        block = tb.block
        steps, n, units = _dims(block)
        unit_idx = _units(spec, units)
        u = len(unit_idx)
        if u == 0 or steps == 0:
            continue
        rows = n * steps * u
        data: list = [
            _sequence_column(tb.sequences, steps * u),
            tb.layer.name,
            np.tile(np.repeat(block.t, u), n),
            np.tile(np.asarray(unit_idx), n * steps),
        ]
        for name in spec.names:
            value = block.values.get(name)
            if value is None:
                data.append(np.full(rows, np.nan, dtype=dtype))
            else:
                data.append(_take_units(value, unit_idx).transpose(1, 0, 2).reshape(-1))
        if spec.masked:
            masked = block.masked if block.masked is not None else np.zeros((steps, n), dtype=bool)
            data.append(np.repeat(masked.T.reshape(-1), u).astype(np.int8))
        yield Block(columns, data)


def wide_columns(layers: Sequence[RecurrentLayer], spec: TraceColumns) -> list[str]:
    width = max((layer.units for layer in layers), default=0)
    unit_idx = list(spec.units) if spec.units is not None else list(range(width))
    unit_idx = [u for u in unit_idx if u < width]
    columns = ["sequence", "layer", "t"]
    for name in spec.names:
        columns += [f"{name}_{u}" for u in unit_idx]
    if spec.masked:
        columns.append("masked")
    return columns


def wide_blocks(blocks: Iterable[TraceBlock], layers: Sequence[RecurrentLayer], spec: TraceColumns, dtype) -> Iterator[Block]:
    """Wide rows: one per (sequence, layer, t), a column per value and unit."""
    columns = wide_columns(layers, spec)
    width = max((layer.units for layer in layers), default=0)
    unit_idx = list(spec.units) if spec.units is not None else list(range(width))
    unit_idx = [u for u in unit_idx if u < width]
    for tb in blocks:
        block = tb.block
        steps, n, units = _dims(block)
        if steps == 0 or not any(u < units for u in unit_idx):
            continue  # as in the long form, a layer with none of the selected units is left out
        rows = n * steps
        data: list = [_sequence_column(tb.sequences, steps), tb.layer.name, np.tile(block.t, n)]
        for name in spec.names:
            value = block.values.get(name)
            for u in unit_idx:
                if value is None or u >= units:
                    data.append(np.full(rows, np.nan, dtype=dtype))
                else:
                    data.append(value[:, :, u].T.reshape(-1))
        if spec.masked:
            masked = block.masked if block.masked is not None else np.zeros((steps, n), dtype=bool)
            data.append(masked.T.reshape(-1).astype(np.int8))
        yield Block(columns, data)


def _dims(block) -> tuple[int, int, int]:
    first = next(iter(block.values.values()))
    steps, n, units = first.shape
    return steps, n, units


def _units(spec: TraceColumns, units: int) -> list[int]:
    if spec.units is None:
        return list(range(units))
    return [u for u in spec.units if u < units]


def _take_units(value: NDArray, unit_idx: list[int]) -> NDArray:
    if len(unit_idx) == value.shape[2] and unit_idx == list(range(value.shape[2])):
        return value
    return value[:, :, unit_idx]


def _sequence_column(ids: list, repeat: int):
    if len(ids) == 1:
        return ids[0]
    return np.repeat(np.asarray(ids, dtype=object if not all(isinstance(i, int) for i in ids) else np.int64), repeat)


# ------------------------------------------------------------------- predict


def predict_columns(outputs: Sequence[NDArray], names: Sequence[str]) -> list[str]:
    columns = ["sequence"]
    if outputs and outputs[0].ndim == 3:
        columns.append("t")
    for index, output in enumerate(outputs):
        prefix = "y" if index == 0 else f"{names[index]}_y"
        columns += [f"{prefix}_{k}" for k in range(output.shape[-1])]
    return columns


def predict_block(ids: list, outputs: Sequence[NDArray], names: Sequence[str]) -> Block:
    columns = predict_columns(outputs, names)
    first = outputs[0]
    if first.ndim == 3:
        n, steps, _ = first.shape
        data: list = [_sequence_column(ids, steps), np.tile(np.arange(steps), n)]
        for output in outputs:
            if output.ndim != 3 or output.shape[1] != steps:
                raise UnsupportedLayer("the model's outputs have different shapes (a sequence and a vector), "
                                       "which cannot share one table")
            flat = output.reshape(n * steps, -1)
            data += [flat[:, k] for k in range(flat.shape[1])]
    else:
        data = [_sequence_column(ids, 1)]
        for output in outputs:
            flat = output.reshape(output.shape[0], -1)
            data += [flat[:, k] for k in range(flat.shape[1])]
    return Block(columns, data)
