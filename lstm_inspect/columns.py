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
  pre-activations + ``masked`` when the model masks steps.  When a
  convolutional recurrent layer (ConvLSTM1D/2D/3D) is traced, its position
  columns come before ``unit``: ``x`` (1D), ``y,x`` (2D), ``z,y,x`` (3D),
  ``unit`` being the filter (empty for other layers' rows); ``--position``
  and ``--reduce`` take them away again;
* ``trace --wide``: ``sequence,layer,t,`` (+ position columns) + ``<gate>_<unit>`` for each column;
* ``predict``: ``sequence,[t,]y_0..y_k``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .batching import TraceBlock
from .engine import StepBlock, value_names
from .errors import UsageProblem
from .model import RecurrentLayer
from .weights import GateBlock

WEIGHT_COLUMNS = ["layer", "tensor", "gate", "unit", "source", "value", "path", "column", "row"]
# A convolutional kernel's values also need their tap (the kernel position): "1,2" for [1, 2, :, :].
TAP_COLUMN = "tap"
TRACE_KEYS = ["sequence", "layer", "t", "unit"]
POSITION_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


@dataclass
class Block:
    """A block of rows in column form: ``data[k]`` is column ``columns[k]``, an array of the rows' values or one scalar that every row shares."""
    columns: list[str]
    data: list  # arrays of equal length, or scalars

    @property
    def rows(self) -> int:
        """The number of rows (1 when every column is a scalar)."""
        for column in self.data:
            if isinstance(column, np.ndarray) and column.ndim:
                return int(column.shape[0])
        return 1


def object_block(rows: Sequence[dict], columns: Sequence[str]) -> Block:
    """Rows of Python values (dicts by column name) as one block of object columns (``layers``, ``verify``)."""
    data = []
    for name in columns:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row[name] for row in rows]
        data.append(column)
    return Block(list(columns), data)


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


def weight_columns(blocks: Sequence[GateBlock]) -> list[str]:
    """The weights columns: ``tap`` after ``row`` when a convolutional layer is among ``blocks``."""
    return WEIGHT_COLUMNS + ([TAP_COLUMN] if any(gb.stored_taps is not None for gb in blocks) else [])


def weight_blocks(blocks: Iterable[GateBlock], with_taps: bool = False) -> Iterator[Block]:
    """Long rows, one per weight value: unit by unit, each unit's sources in row order (and, for a
    convolution kernel, each source's taps in order); ``with_taps`` adds the ``tap`` column."""
    columns = WEIGHT_COLUMNS + ([TAP_COLUMN] if with_taps else [])
    for gb in blocks:
        values = gb.values
        units = gb.unit_count
        # Unit first, then source rows, then taps: move the unit axis to the front, the row axis next.
        order = (values.ndim - 1, values.ndim - 2) + tuple(range(values.ndim - 2)) if values.ndim >= 2 else (0,)
        flat = values.transpose(order).reshape(-1)
        per_unit = flat.shape[0] // max(units, 1)
        unit = np.repeat(np.arange(units), per_unit)
        if values.ndim >= 2:  # kernel / recurrent_kernel: (..., rows, U)
            rows = values.shape[-2]
            taps = per_unit // rows
            source = np.tile(np.repeat(np.arange(rows), taps), units)
        else:  # (U,): bias
            source = np.ma.masked_all(units, dtype=np.int64)
        column = np.asarray(gb.stored_columns).transpose(order).reshape(-1)
        if gb.stored_rows is None:
            row = np.ma.masked_all(flat.shape[0], dtype=np.int64)
        else:
            row = np.asarray(gb.stored_rows).transpose(order).reshape(-1)
        data = [gb.layer, gb.tensor, gb.gate, unit, source, flat, gb.path, column, row]
        if with_taps:
            if gb.stored_taps is None:
                data.append(None)
            else:
                taps_array = np.asarray(gb.stored_taps).transpose(order + (values.ndim,)).reshape(-1, gb.stored_taps.shape[-1])
                text = np.array([",".join(str(int(v)) for v in tap) for tap in taps_array], dtype=object)
                data.append(text)
        yield Block(list(columns), data)


# ------------------------------------------------------------------- trace


@dataclass(frozen=True)
class TraceColumns:
    """Which trace values are written, for which units, and the position columns."""

    names: tuple[str, ...]  # value columns, e.g. ("i", "f", "c", "o", "cell", "hidden")
    units: tuple[int, ...] | None  # None: all
    masked: bool  # add the `masked` column
    positions: tuple[str, ...] = ()  # ("y", "x") when a ConvLSTM2D's maps are written position by position

    @property
    def keys(self) -> list[str]:
        """The key columns of the long form: sequence, layer, t, [positions,] unit."""
        return ["sequence", "layer", "t", *self.positions, "unit"]

    @property
    def long_columns(self) -> list[str]:
        """The long format's columns: the keys (sequence, layer, t, [position,] unit), the values, and ``masked`` when steps can be masked."""
        return self.keys + list(self.names) + (["masked"] if self.masked else [])


def trace_columns(
    layers: Sequence[RecurrentLayer],
    *,
    gates: Sequence[str] | None,
    pre_activation: bool,
    masked: bool,
    units: Sequence[int] | None = None,
    positions_reduced: bool = False,
) -> TraceColumns:
    """The value columns for the traced layers: the union in order of first appearance.

    ``positions_reduced``: ``--position`` or ``--reduce`` takes a convolutional
    layer's positions away, so no position columns are written.
    """
    names: list[str] = []
    for layer in layers:
        for name in value_names(layer, False):
            if name not in names:
                names.append(name)
    if gates:
        unknown = [g for g in gates if g not in names and not (g.startswith("z_") and pre_activation)]
        if unknown:
            raise UsageProblem(f"unknown gate(s) {', '.join(unknown)}: the selected layer(s) have {', '.join(names)}")
        names = [n for n in names if n in gates]
    if pre_activation:
        for layer in layers:
            for gate in layer.gates:
                z = f"z_{gate}"
                if z not in names and (not gates or gate in gates or z in gates):
                    names.append(z)
    rank = max((layer.kind.spatial_rank for layer in layers), default=0)
    positions = POSITION_AXES.get(rank, ()) if not positions_reduced else ()
    return TraceColumns(tuple(names), tuple(units) if units is not None else None, masked, positions)


def focus_positions(blocks: Iterable[TraceBlock], position: Sequence[int] | None, reduce: str | None) -> Iterator[TraceBlock]:
    """Take a convolutional layer's positions away: keep the one at ``position`` (``(y, x)``), or
    aggregate each filter over all positions with ``reduce`` (``mean`` or ``max``).  Blocks of
    other layers pass unchanged."""
    for tb in blocks:
        block = tb.block
        rank = len(block.positions)
        if not rank or (position is None and reduce is None):
            yield tb
            continue
        if position is not None:
            if len(position) != rank:
                raise UsageProblem(f"--position takes {rank} coordinate(s) for layer '{tb.layer.name}' "
                                   f"({','.join(POSITION_AXES[rank])}); got {len(position)}")
            outside = [p for p, size in zip(position, block.positions) if not 0 <= p < size]
            if outside:
                raise UsageProblem(f"--position {','.join(map(str, position))} is outside layer '{tb.layer.name}''s maps "
                                   f"({'×'.join(map(str, block.positions))} positions, counted from 0)")
            index = (slice(None), slice(None), *position)
            values = {name: value[index] for name, value in block.values.items()}
        else:
            axes = tuple(range(2, 2 + rank))
            how = np.nanmax if reduce == "max" else np.nanmean
            values = {name: _reduce(how, value, axes) for name, value in block.values.items()}
        yield TraceBlock(tb.sequences, StepBlock(block.layer, block.t, values, block.masked))


def _reduce(how, value: NDArray, axes: tuple[int, ...]) -> NDArray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (masked) steps stay NaN
        return how(value, axis=axes).astype(value.dtype)


def long_blocks(blocks: Iterable[TraceBlock], spec: TraceColumns, dtype) -> Iterator[Block]:
    """Long rows: one per (sequence, layer, t, [position,] unit)."""
    columns = spec.long_columns
    for tb in blocks:
        block = tb.block
        steps, n, places, units = _dims(block)
        unit_idx = _units(spec, units)
        u = len(unit_idx)
        if u == 0 or steps == 0:
            continue
        rows = n * steps * places * u
        data: list = [
            _sequence_column(tb.sequences, steps * places * u),
            tb.layer.name,
            np.tile(np.repeat(block.t, places * u), n),
        ]
        data += _position_columns(spec, block.positions, n * steps, u)
        data.append(np.tile(np.asarray(unit_idx), n * steps * places))
        for name in spec.names:
            value = block.values.get(name)
            if value is None:
                data.append(np.full(rows, np.nan, dtype=dtype))
            else:
                flat = value.reshape(steps, n, places, value.shape[-1])
                data.append(_take_units(flat, unit_idx).transpose(1, 0, 2, 3).reshape(-1))
        if spec.masked:
            masked = block.masked if block.masked is not None else np.zeros((steps, n), dtype=bool)
            data.append(np.repeat(masked.T.reshape(-1), places * u).astype(np.int8))
        yield Block(columns, data)


def _position_columns(spec: TraceColumns, positions: tuple[int, ...], outer: int, inner: int) -> list:
    """The ``x``/``y,x``/``z,y,x`` columns of a block: each position's coordinates, repeated
    ``inner`` times (units), the whole tiled ``outer`` times (sequences × steps); empty cells for a
    layer without positions."""
    if not spec.positions:
        return []
    places = int(np.prod(positions)) if positions else 1
    if not positions:
        empty = np.ma.masked_all(outer * places * inner, dtype=np.int64)
        return [empty for _ in spec.positions]
    grid = np.indices(positions).reshape(len(positions), -1)  # (rank, places)
    columns: list = [np.ma.masked_all(outer * places * inner, dtype=np.int64)
                     for _ in range(len(spec.positions) - len(positions))]
    for axis in range(len(positions)):
        columns.append(np.tile(np.repeat(grid[axis], inner), outer))
    return columns


def wide_columns(layers: Sequence[RecurrentLayer], spec: TraceColumns) -> list[str]:
    """The wide format's columns: the keys, then ``<value>_<unit>`` for every value and selected unit."""
    width = max((layer.units for layer in layers), default=0)
    unit_idx = list(spec.units) if spec.units is not None else list(range(width))
    unit_idx = [u for u in unit_idx if u < width]
    columns = ["sequence", "layer", "t", *spec.positions]
    for name in spec.names:
        columns += [f"{name}_{u}" for u in unit_idx]
    if spec.masked:
        columns.append("masked")
    return columns


def wide_blocks(blocks: Iterable[TraceBlock], layers: Sequence[RecurrentLayer], spec: TraceColumns, dtype) -> Iterator[Block]:
    """Wide rows: one per (sequence, layer, t, [position]), a column per value and unit."""
    columns = wide_columns(layers, spec)
    width = max((layer.units for layer in layers), default=0)
    unit_idx = list(spec.units) if spec.units is not None else list(range(width))
    unit_idx = [u for u in unit_idx if u < width]
    for tb in blocks:
        block = tb.block
        steps, n, places, units = _dims(block)
        if steps == 0 or not any(u < units for u in unit_idx):
            continue  # as in the long form, a layer with none of the selected units is left out
        rows = n * steps * places
        data: list = [_sequence_column(tb.sequences, steps * places), tb.layer.name, np.tile(np.repeat(block.t, places), n)]
        data += _position_columns(spec, block.positions, n * steps, 1)
        for name in spec.names:
            value = block.values.get(name)
            flat = None if value is None else value.reshape(steps, n, places, value.shape[-1])
            for u in unit_idx:
                if flat is None or u >= units:
                    data.append(np.full(rows, np.nan, dtype=dtype))
                else:
                    data.append(flat[:, :, :, u].transpose(1, 0, 2).reshape(-1))
        if spec.masked:
            masked = block.masked if block.masked is not None else np.zeros((steps, n), dtype=bool)
            data.append(np.repeat(masked.T.reshape(-1), places).astype(np.int8))
        yield Block(columns, data)


def _dims(block) -> tuple[int, int, int, int]:
    """(steps, sequences, positions (1 for layers without maps), units) of a step block."""
    first = next(iter(block.values.values()))
    steps, n = first.shape[:2]
    return steps, n, int(np.prod(first.shape[2:-1])), first.shape[-1]


def _units(spec: TraceColumns, units: int) -> list[int]:
    if spec.units is None:
        return list(range(units))
    return [u for u in spec.units if u < units]


def _take_units(value: NDArray, unit_idx: list[int]) -> NDArray:
    if len(unit_idx) == value.shape[-1] and unit_idx == list(range(value.shape[-1])):
        return value
    return value[..., unit_idx]


def _sequence_column(ids: list, repeat: int):
    if len(ids) == 1:
        return ids[0]
    return np.repeat(np.asarray(ids, dtype=object if not all(isinstance(i, int) for i in ids) else np.int64), repeat)


# ------------------------------------------------------------------- predict


def predict_columns(outputs: Sequence[NDArray], names: Sequence[str] | None = None) -> list[str]:
    """``sequence,[t,]y_0..y_k`` for one output; ``sequence,output,[t,]y_0..y_k`` for several (k up to
    the widest; ``t`` when an output has a time axis)."""
    columns = ["sequence"]
    if len(outputs) > 1:
        columns.append("output")
    if any(output.ndim >= 3 for output in outputs):
        columns.append("t")
    width = max((_width(output) for output in outputs), default=0)
    return columns + [f"y_{k}" for k in range(width)]


def _width(output: NDArray) -> int:
    """Values per row: what follows the sequence (and time) axis, flattened."""
    return int(np.prod(output.shape[2:] if output.ndim >= 3 else output.shape[1:]))


def predict_block(ids: list, outputs: Sequence[NDArray], names: Sequence[str] | None = None) -> Block:
    """The rows of one batch: per sequence, per output, per step (empty cells where an output is narrower
    than the widest, or has no time axis)."""
    columns = predict_columns(outputs)
    if len(outputs) == 1:  # the common case, without the per-row bookkeeping
        output = outputs[0]
        n = output.shape[0]
        if output.ndim >= 3:
            steps = output.shape[1]
            flat = output.reshape(n * steps, -1)
            return Block(columns, [_sequence_column(ids, steps), np.tile(np.arange(steps), n)]
                         + [flat[:, k] for k in range(flat.shape[1])])
        flat = output.reshape(n, -1)
        return Block(columns, [_sequence_column(ids, 1)] + [flat[:, k] for k in range(flat.shape[1])])
    several = len(outputs) > 1
    timed = "t" in columns
    width = len(columns) - 1 - several - timed
    n = outputs[0].shape[0]
    parts: list[tuple[int, int, NDArray, NDArray | None]] = []  # (sequence row, output, (R, k) values, t)
    for index, output in enumerate(outputs):
        if output.ndim >= 3:
            steps = output.shape[1]
            flat = output.reshape(n, steps, -1)
            for row in range(n):
                parts.append((row, index, flat[row], np.arange(steps)))
        else:
            flat = output.reshape(n, -1)
            for row in range(n):
                parts.append((row, index, flat[row][None], None))
    parts.sort(key=lambda part: (part[0], part[1]))
    total = sum(p[2].shape[0] for p in parts)
    dtype = np.result_type(*[o.dtype for o in outputs]) if outputs else np.float32
    values = np.full((total, width), np.nan, dtype=dtype)
    sequence_rows = np.empty(total, dtype=np.int64)
    output_index = np.empty(total, dtype=np.int64)
    t_column = np.ma.masked_all(total, dtype=np.int64)
    at = 0
    for row, index, block, t in parts:
        count = block.shape[0]
        values[at : at + count, : block.shape[1]] = block
        sequence_rows[at : at + count] = row
        output_index[at : at + count] = index
        if t is not None:
            t_column[at : at + count] = t
        at += count
    data: list = [_ids_by_row(ids, sequence_rows)]
    if several:
        data.append(output_index)
    if timed:
        data.append(t_column if np.ma.is_masked(t_column) else np.asarray(t_column))
    data += [values[:, k] for k in range(width)]
    return Block(columns, data)


def _ids_by_row(ids: list, rows: NDArray) -> NDArray:
    if all(isinstance(i, (int, np.integer)) for i in ids):
        return np.asarray(ids, dtype=np.int64)[rows]
    return np.asarray(ids, dtype=object)[rows]
