"""The work done on one partition of a dataset, and the single-process run over all of them.

A partition's sequences are replayed on their own: a stateful chain never
crosses partitions.  A stateful model with a fixed batch shape (B, T, F) is
fed as Keras' ``predict`` would be fed each partition (``feeding.plan_feed``):
its chains (``trace``) and samples (``predict``), numbered from 0 in every
partition, are named ``<partition>:<number>`` so that no two partitions give
the same sequence.  The same functions run in this process (one partition
after the other, here) and on Dask workers (``lstm_inspect.dask``), so both
give the same rows and the same running sums:

* ``partition_stats``: the running sums of one partition, keyed by (layer, value);
* ``trace_rows`` / ``predict_rows``: the published column blocks of one partition;
* ``write_part``: one partition's blocks as one Parquet file of a partitioned
  dataset (``-o DIR/``), written under a temporary name and renamed, so a
  retried or failed task never leaves half a part.

``PartsOutput`` gathers the parts in a staging folder beside ``DIR`` and
renames it to ``DIR`` only when every partition has been written.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .batching import TraceBlock, predict_batches, trace_blocks
from .columns import (
    Block,
    TraceColumns,
    coalesce,
    focus_positions,
    long_blocks,
    predict_block,
    trace_columns,
    wide_blocks,
    wide_columns,
)
from .datasets import Dataset, SequenceRegistry
from .engine import ReplayOptions, compile_model
from .errors import UsageProblem
from .feeding import stateful_batch_shape
from .inputs import InputSequence
from .model import Model
from .stats import GateStats, StatsPlan, _Running, accumulate, finish_stats

PART_ROWS = 1 << 16  # rows per Parquet row group, at least (small trace blocks are merged)


@dataclass(frozen=True)
class Replay:
    """How every partition is replayed (picklable: it travels to the workers)."""

    options: ReplayOptions
    # carry the state from one sequence to the next within a partition; None: as the model says
    # (a stateful model with a batch shape is fed as Keras' predict, see ``keras_fed``)
    stateful: bool | None = False
    initial_states: Mapping[str, Sequence[NDArray]] | None = None  # one row per layer, for every partition
    start: str | None = None  # --from LAYER


def keras_fed(model: Model, replay: Replay) -> bool:
    """Whether each partition is fed as Keras' ``predict`` feeds a stateful model with a batch shape:
    samples of T steps in B chains, numbered from 0 (``feeding.plan_feed``)."""
    return replay.stateful is None and stateful_batch_shape(model) is not None


def _named(partition: str | None, ids: list) -> list:
    """Chain or sample numbers of a Keras-fed partition as ``<partition>:<number>``; other ids as they are."""
    if partition is None:
        return ids
    return [f"{partition}:{i}" if isinstance(i, (int, np.integer)) else i for i in ids]


def check_initial_states(states: Mapping[str, Sequence[NDArray]] | None) -> None:
    """Initial states over a dataset are one row per layer: partitions are replayed apart, so
    per-sequence rows could not be matched to their sequences."""
    for name, arrays in (states or {}).items():
        for array in arrays:
            if np.ndim(array) == 2 and np.shape(array)[0] != 1:
                raise UsageProblem(f"initial state for '{name}' has {np.shape(array)[0]} rows; over a dataset it is "
                                   "one row (the state every sequence, or every partition's chain, starts from)")


# ------------------------------------------------------------------- statistics


def partition_stats(model: Model, sequences: Sequence[InputSequence], plan: StatsPlan,
                    replay: Replay) -> dict[tuple[str, str], _Running]:
    """The running sums of one partition's steps, keyed by (layer, value)."""
    blocks = trace_blocks(model, list(sequences), layers=list(plan.layers), options=plan.options,
                          stateful=replay.stateful, initial_states=replay.initial_states, start=replay.start)
    return accumulate(blocks, plan.names, plan.thresholds)


def serial_stats(model: Model, parts: Iterable[tuple[str, list[InputSequence]]], plan: StatsPlan,
                 replay: Replay) -> list[GateStats]:
    """Statistics over every partition, in this process, one partition in memory at a time."""
    registry = SequenceRegistry()
    total: dict[tuple[str, str], _Running] = {}
    for name, sequences in parts:
        registry.add(name, [s.id for s in sequences])
        for key, running in partition_stats(model, sequences, plan, replay).items():
            if key in total:
                total[key].merge(running)
            else:
                total[key] = running
    return finish_stats(model, plan, total)


# ------------------------------------------------------------------- trace and predict


@dataclass(frozen=True)
class TraceLayout:
    """What ``trace`` writes: layers, columns, long or wide, ConvLSTM positions."""

    layers: tuple[str, ...]
    spec: TraceColumns
    wide: bool = False
    position: tuple[int, ...] | None = None
    reduce: str | None = None
    columns: tuple[str, ...] = ()


def plan_trace(model: Model, replay: Replay, layers: Sequence[str] | None = None, *, gates: Sequence[str] | None = None,
               units: Sequence[int] | None = None, wide: bool = False, position: Sequence[int] | None = None,
               reduce: str | None = None) -> TraceLayout:
    """The trace's layout, checked against the model before any partition is read."""
    selected = model.select_recurrent(layers)
    program = compile_model(model, replay.options, upto=[layer.name for layer in selected], start=replay.start)
    spec = trace_columns(selected, gates=gates, pre_activation=replay.options.pre_activation, masked=program.may_mask,
                         units=units, positions_reduced=position is not None or reduce is not None)
    columns = wide_columns(selected, spec) if wide else spec.long_columns
    return TraceLayout(tuple(layer.name for layer in selected), spec, wide,
                       tuple(position) if position is not None else None, reduce, tuple(columns))


def partition_trace(model: Model, sequences: Sequence[InputSequence], layout: TraceLayout,
                    replay: Replay, partition: str | None = None) -> Iterator[TraceBlock]:
    """One partition's traced steps (ConvLSTM positions taken away as the layout says).

    ``partition`` names the chains of a Keras-fed partition (see ``keras_fed``)."""
    program = compile_model(model, replay.options, upto=list(layout.layers), start=replay.start)
    blocks = trace_blocks(model, list(sequences), layers=list(layout.layers), options=replay.options,
                          stateful=replay.stateful, initial_states=replay.initial_states, program=program)
    if partition is not None and keras_fed(model, replay):
        blocks = (TraceBlock(_named(partition, block.sequences), block.block) for block in blocks)
    return focus_positions(blocks, layout.position, layout.reduce)


def trace_rows(model: Model, sequences: Sequence[InputSequence], layout: TraceLayout, replay: Replay,
               partition: str | None = None) -> Iterator[Block]:
    """One partition's trace in the published columns (long or wide)."""
    return layout_rows(model, partition_trace(model, sequences, layout, replay, partition), layout,
                       replay.options.dtype)


def layout_rows(model: Model, blocks: Iterable[TraceBlock], layout: TraceLayout, dtype: Any) -> Iterator[Block]:
    """Traced steps as the layout's rows: long, or wide."""
    if layout.wide:
        selected = [model.recurrent_layer(name) for name in layout.layers]
        return wide_blocks(blocks, selected, layout.spec, dtype)
    return long_blocks(blocks, layout.spec, dtype)


def predict_rows(model: Model, sequences: Sequence[InputSequence], replay: Replay,
                 partition: str | None = None) -> Iterator[Block]:
    """One partition's model outputs: ``sequence,[output,][t,]y_0..y_k`` rows.

    ``partition`` names the samples of a Keras-fed partition (see ``keras_fed``)."""
    names = [edge.layer for edge in model.graph.outputs]
    rename = partition is not None and keras_fed(model, replay)
    for ids, outputs in predict_batches(model, list(sequences), options=replay.options, stateful=replay.stateful,
                                        initial_states=replay.initial_states, start=replay.start):
        yield predict_block(_named(partition, ids) if rename else ids, outputs, names)


def serial_rows(parts: Iterable[tuple[str, list[InputSequence]]], rows: Any) -> Iterator[Any]:
    """``rows(sequences, partition name)`` of every partition in turn, checking that no sequence id repeats."""
    registry = SequenceRegistry()
    for name, sequences in parts:
        registry.add(name, [s.id for s in sequences])
        yield from rows(sequences, name)


# ------------------------------------------------------------------- partitioned Parquet output


def is_folder_output(output: str | None) -> bool:
    """``-o DIR/`` (a trailing slash, or an existing folder): write a partitioned Parquet dataset."""
    if not output or output == "-":
        return False
    return output.endswith("/") or ("://" not in output and os.path.isdir(output))


def part_name(index: int) -> str:
    """The file name of partition ``index``'s part (sorts in partition order)."""
    return f"part-{index:05d}.parquet"


def write_part(blocks: Iterable[Block], columns: Sequence[str] | None, folder: str, index: int) -> int:
    """Write one partition's blocks as ``folder/part-NNNNN.parquet``; return its rows.

    Nothing is written for a partition without rows.  The file appears under
    its final name only once complete (a task killed midway leaves a
    temporary file that ``PartsOutput.commit`` removes).
    """
    from .writers import write_blocks

    blocks = iter(coalesce(blocks, min_rows=PART_ROWS))
    first = next(blocks, None)
    if first is None:
        return 0
    fs = _fs(folder)
    target = _join(folder, part_name(index))
    temp = f"{target}.tmp-{uuid.uuid4().hex}"
    try:
        with (fs.open(temp, "wb") if fs else open(temp, "wb")) as stream:
            rows = write_blocks(_chain(first, blocks), list(columns or first.columns), "parquet", stream)
        if fs:
            fs.mv(temp, target)
        else:
            os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(temp) if fs else os.unlink(temp)
        raise
    return rows


def _chain(first: Block, rest: Iterator[Block]) -> Iterator[Block]:
    yield first
    yield from rest


class PartsOutput:
    """A partitioned Parquet dataset being written: parts go to a staging folder beside ``DIR``,
    renamed to ``DIR`` by ``commit`` and removed by ``abort``.

    ``DIR`` must not exist, or be an empty folder: parts of an earlier run would mix with these.
    """

    def __init__(self, target: str, protect: Sequence[str | None] = ()) -> None:
        self.target = target.rstrip("/") if target.rstrip("/") else target
        self.fs = _fs(self.target)
        if self.fs is None:
            parent = os.path.dirname(os.path.abspath(self.target))
            if not os.path.isdir(parent):
                raise UsageProblem(f"cannot write {target}: folder {parent} does not exist")
            if os.path.isdir(self.target) and os.listdir(self.target):
                raise UsageProblem(f"cannot write {target}: the folder is not empty (parts of another run would mix in)")
            if os.path.exists(self.target) and not os.path.isdir(self.target):
                raise UsageProblem(f"cannot write {target}: it is a file, not a folder")
            for other in protect:
                if other and other != "-" and os.path.exists(other) and os.path.abspath(other).startswith(
                        os.path.abspath(self.target) + os.sep):
                    raise UsageProblem(f"refusing to write {target}: it holds an input of this command")
            self.staging = os.path.join(parent, f".{os.path.basename(self.target)}.lstm-inspect-{uuid.uuid4().hex[:12]}")
            os.makedirs(self.staging)
        else:
            if self.fs.exists(self.target) and self.fs.ls(self.target):
                raise UsageProblem(f"cannot write {target}: the folder is not empty (parts of another run would mix in)")
            parent, base = posixpath.split(self.target.rstrip("/"))
            self.staging = f"{parent}/.{base}.lstm-inspect-{uuid.uuid4().hex[:12]}"
            self.fs.makedirs(self.staging, exist_ok=True)

    def commit(self) -> None:
        """Drop temporary files of killed attempts and move the parts to ``DIR``."""
        if self.fs is None:
            for name in os.listdir(self.staging):
                if ".tmp-" in name:
                    os.unlink(os.path.join(self.staging, name))
            if os.path.isdir(self.target):
                os.rmdir(self.target)  # empty, checked at the start
            os.replace(self.staging, self.target)
        else:
            for path in self.fs.ls(self.staging, detail=False):
                if ".tmp-" in posixpath.basename(path):
                    self.fs.rm(path)
            self.fs.mv(self.staging, self.target, recursive=True)

    def abort(self) -> None:
        """Remove the staging folder: nothing of a failed run is left."""
        with contextlib.suppress(Exception):
            if self.fs is None:
                shutil.rmtree(self.staging)
            else:
                self.fs.rm(self.staging, recursive=True)


def _fs(path: str) -> Any:
    """The fsspec filesystem of a URL; None for a local path (written with the standard library)."""
    if "://" not in path:
        return None
    import fsspec

    return fsspec.core.url_to_fs(path)[0]


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if "://" in folder else os.path.join(folder, name)


@dataclass(frozen=True)
class WriteSummary:
    """What a partitioned write produced."""

    path: str
    parts: int  # part files written (partitions without rows write none)
    rows: int
    partitions: int

    def message(self) -> str:
        """``wrote N rows in P part(s) from Q partition(s) to DIR``."""
        return f"wrote {self.rows} rows in {self.parts} part(s) from {self.partitions} partition(s) to {self.path}"


def serial_write(parts: Iterable[tuple[str, list[InputSequence]]], rows: Any, columns: Sequence[str] | None, output: str,
                 protect: Sequence[str | None] = ()) -> WriteSummary:
    """Write every partition's rows as one part of ``output`` (a partitioned Parquet dataset), in this process."""
    out = PartsOutput(output, protect)
    registry = SequenceRegistry()
    total = written = count = 0
    try:
        for index, (name, sequences) in enumerate(parts):
            registry.add(name, [s.id for s in sequences])
            n = write_part(rows(sequences, name), columns, out.staging, index)
            total += n
            written += n > 0
            count += 1
        out.commit()
    except BaseException:
        out.abort()
        raise
    return WriteSummary(out.target, written, total, count)


# ------------------------------------------------------------------- runs over a dataset


def serial_trace(model: Model, dataset: Dataset, layout: TraceLayout, replay: Replay) -> Iterator[TraceBlock]:
    """The traced steps of every partition in turn, in this process (for text output)."""
    return serial_rows(dataset.sequences(), lambda sequences, name: partition_trace(model, sequences, layout, replay, name))


def serial_predict(model: Model, dataset: Dataset, replay: Replay) -> Iterator[Block]:
    """The ``predict`` rows of every partition in turn, in this process."""
    return serial_rows(dataset.sequences(), lambda sequences, name: predict_rows(model, sequences, replay, name))


def run_stats(model: Model, dataset: Dataset, plan: StatsPlan, replay: Replay, *, scheduler: str | None = None,
              workers: int | None = None, progress: bool = False) -> list[GateStats]:
    """Statistics over a dataset: on Dask (``scheduler`` address, or ``workers`` local processes), else here."""
    if scheduler or workers:
        from . import dask as on_dask

        with on_dask.connect(scheduler, workers):
            return on_dask.compute_stats(model, dataset, plan, replay, progress=progress)
    return serial_stats(model, dataset.sequences(), plan, replay)


def run_trace(model: Model, dataset: Dataset, layout: TraceLayout, replay: Replay, output: str, *,
              scheduler: str | None = None, workers: int | None = None, progress: bool = False,
              protect: Sequence[str | None] = ()) -> WriteSummary:
    """The trace of a dataset as the partitioned Parquet dataset ``output``, on Dask or here."""
    if scheduler or workers:
        from . import dask as on_dask

        with on_dask.connect(scheduler, workers):
            return on_dask.write_trace(model, dataset, output, layout, replay, progress=progress, protect=protect)
    return serial_write(dataset.sequences(), lambda sequences, name: trace_rows(model, sequences, layout, replay, name),
                        layout.columns, output, protect)


def run_predict(model: Model, dataset: Dataset, replay: Replay, output: str, *, scheduler: str | None = None,
                workers: int | None = None, progress: bool = False, protect: Sequence[str | None] = ()) -> WriteSummary:
    """The model's outputs for a dataset as the partitioned Parquet dataset ``output``, on Dask or here."""
    if scheduler or workers:
        from . import dask as on_dask

        with on_dask.connect(scheduler, workers):
            return on_dask.predict(model, dataset, output, options=replay.options, stateful=replay.stateful,
                                   initial_states=replay.initial_states, start=replay.start, progress=progress,
                                   protect=protect)
    return serial_write(dataset.sequences(), lambda sequences, name: predict_rows(model, sequences, replay, name), None, output,
                        protect)
