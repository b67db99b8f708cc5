"""Gate statistics, traces and predictions on Dask: a dataset, a dask DataFrame or a dask Bag.

Needs ``pip install 'lstm-inspect[dask]'``.  Each partition is read and
replayed by one task, on the worker that runs it; a stateful chain stays
within its partition (as in the single-process run over a dataset, see
``lstm_inspect.datasets``).

* ``gate_stats`` / ``compute_stats``: each partition's running sums (count,
  mean, M2, min, max, saturation counts, as ``stats`` keeps them) are merged
  by a ``dask.array.reduction`` tree whose combine step is Dask's own
  ``moment_combine`` (the pairwise update of Chan et al. for count, mean and
  M2); min, max and the counts merge by min, max and sum.  The result equals
  the single-process run up to float64 rounding (about 1e-15 relative).
* ``trace`` / ``predict``: each partition is written as one part of a
  partitioned Parquet dataset (``DIR/part-00000.parquet`` ...), in the
  published columns.  The parts are written to a staging folder and moved to
  ``DIR`` once all are complete; a task that is retried (a worker died)
  rewrites its part.

The model travels to the workers as its parsed arrays and config (a
:class:`~lstm_inspect.model.Model` pickles to plain dataclasses and NumPy
arrays): one node of the task graph, so a replacement worker gets it again.
Nothing read from a model file is executed, here or on a worker.  The
warnings and notes a task gives (a CSV read without a header, a stateful
model's feed, an input longer than the model's fixed length) travel back with
its result and are reported once each, as a run in one process reports them.

Inputs:

* a :class:`~lstm_inspect.datasets.Dataset` or a path/glob/URL naming one:
  the workers read the files (they must reach them: a shared folder, or
  object storage through fsspec);
* a dask DataFrame: rows are steps; ``sequence_column`` groups them into
  sequences (an id must lie in one partition); without it each partition is
  one sequence, named by its number; ``columns`` picks the features;
* a dask Bag of sequences: (T, F) arrays (named ``<partition>:<position>``),
  ``(id, array)`` pairs, or :class:`~lstm_inspect.inputs.InputSequence` s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .datasets import (
    Dataset,
    Partition,
    ReadSettings,
    SequenceRegistry,
    cut_sequences,
    group_rows,
    open_dataset,
    read_partition,
)
from .engine import ReplayOptions
from .errors import InputDataError, UsageProblem
from .inputs import CsvOptions, InputSequence
from .model import Model
from .notes import note, notes_to
from .partitions import (
    PartsOutput,
    Replay,
    TraceLayout,
    WriteSummary,
    check_initial_states,
    partition_stats,
    plan_trace,
    predict_rows,
    trace_rows,
    write_part,
)
from .stats import GateStats, StatsPlan, _Running, finish_stats, plan_stats, stats_frame

try:
    import dask
    import dask.array as da
    from dask.array.reductions import moment_combine
except ImportError:  # pragma: no cover - the CLI says what to install
    raise UsageProblem("running on Dask needs dask and distributed: pip install 'lstm-inspect[dask]'") from None


# ------------------------------------------------------------------ the public API


def gate_stats(
    model: Model,
    data: Any,
    layers: Sequence[str] | None = None,
    *,
    gates: Sequence[str] | None = None,
    sort: str = "unit",
    top: int | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    sequence_column: str | None = None,
    columns: Sequence[str] | None = None,
    start: str | None = None,
    split_every: int | None = None,
    progress: bool = False,
):
    """``lstm_inspect.gate_stats`` over ``data`` on Dask: a pandas DataFrame with the ``stats`` columns.

    ``data``: a dataset (path, glob, URL or :class:`Dataset`), a dask DataFrame or a dask Bag;
    ``sequence_column`` and ``columns`` apply to a path or DataFrame (a :class:`Dataset` has its own settings).
    Computes with the active ``dask.distributed`` client if there is one, else with Dask's
    default scheduler.  ``split_every``: partitions merged per step of the reduction tree.
    """
    replay = _replay(options, stateful, initial_states, start)
    plan = plan_stats(model, layers, gates, replay.options)
    results = compute_stats(model, data, plan, replay, sequence_column=sequence_column, columns=columns,
                            split_every=split_every, progress=progress)
    return stats_frame(results, sort, top)


def compute_stats(model: Model, data: Any, plan: StatsPlan, replay: Replay, *, sequence_column: str | None = None,
                  columns: Sequence[str] | None = None, split_every: int | None = None,
                  progress: bool = False) -> list[GateStats]:
    """One :class:`GateStats` per planned (layer, value), merged over every partition of ``data``."""
    tree = stats_reduction(model, data, plan, replay, sequence_column=sequence_column, columns=columns,
                           split_every=split_every)
    (merged,) = _compute([tree], progress)
    _report(model, merged["messages"])
    return finish_stats(model, plan, _running_sums(merged))


def stats_reduction(model: Model, data: Any, plan: StatsPlan, replay: Replay, *, sequence_column: str | None = None,
                    columns: Sequence[str] | None = None, split_every: int | None = None) -> Any:
    """The lazy reduction: a 0-d dask array whose value is the merged sums (see ``_combine``).

    Each partition's task returns its sums as a 1-element object array; those
    are the chunks that ``dask.array.reduction`` merges in a tree.
    """
    parts = _partitions(data, replay, sequence_column, columns)
    node = _model_node(model)
    chunks = []
    for index, (item, name) in enumerate(zip(parts.items, parts.names)):
        task = dask.delayed(_stats_task, pure=False)(node, plan, replay, parts.reader, item, index, name)
        chunks.append(da.from_delayed(task, shape=(1,), dtype=object))
    stacked = da.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return da.reduction(stacked, _chunk, _aggregate, combine=_combine, axis=0, concatenate=False, dtype=object,
                        split_every=split_every, meta=np.empty((), dtype=object), name="lstm-inspect-stats")


def trace(
    model: Model,
    data: Any,
    path: str,
    layers: Sequence[str] | None = None,
    *,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    wide: bool = False,
    position: Sequence[int] | None = None,
    reduce: str | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    sequence_column: str | None = None,
    columns: Sequence[str] | None = None,
    start: str | None = None,
    progress: bool = False,
) -> WriteSummary:
    """Trace every partition of ``data`` into the partitioned Parquet dataset ``path`` (a folder that
    does not exist yet, or is empty), one part per partition, in ``trace``'s columns."""
    replay = _replay(options, stateful, initial_states, start)
    layout = plan_trace(model, replay, layers, gates=gates, units=units, wide=wide, position=position, reduce=reduce)
    return write_trace(model, data, path, layout, replay, sequence_column=sequence_column, columns=columns,
                       progress=progress)


def write_trace(model: Model, data: Any, path: str, layout: TraceLayout, replay: Replay, *,
                sequence_column: str | None = None, columns: Sequence[str] | None = None, progress: bool = False,
                protect: Sequence[str | None] = ()) -> WriteSummary:
    """``trace`` with a planned layout (the CLI plans it to check the options first)."""
    rows = partial(_trace_rows, layout=layout, replay=replay)
    return _write(model, data, path, rows, list(layout.columns), replay, sequence_column, columns, progress, protect)


def predict(
    model: Model,
    data: Any,
    path: str,
    *,
    options: ReplayOptions | None = None,
    stateful: bool | None = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    sequence_column: str | None = None,
    columns: Sequence[str] | None = None,
    start: str | None = None,
    progress: bool = False,
    protect: Sequence[str | None] = (),
) -> WriteSummary:
    """The model's outputs for every partition of ``data``, written as the partitioned Parquet
    dataset ``path`` in ``predict``'s columns (``sequence,[output,][t,]y_0..y_k``)."""
    replay = _replay(options, stateful, initial_states, start)
    rows = partial(_predict_rows, replay=replay)
    return _write(model, data, path, rows, None, replay, sequence_column, columns, progress, protect)


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``dask.distributed`` client, the default while the block runs: connected to the scheduler at
    ``scheduler`` (``tcp://host:8786``), or to a local cluster of ``workers`` processes (one thread each)."""
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageProblem("--scheduler/--workers need distributed: pip install 'lstm-inspect[dask]'") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageProblem(f"--scheduler {scheduler}: cannot connect ({' '.join(str(exc).split())[:160]})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


# ------------------------------------------------------------------ inputs as partitions


@dataclass(frozen=True)
class _Parts:
    items: list  # per partition: a Partition, or a Delayed pandas DataFrame / list
    names: list[str]
    reader: Any  # reader(item, index) -> list[InputSequence], run on the worker


@dataclass(frozen=True)
class DatasetReader:
    """Reads a dataset's partition on the worker."""

    settings: ReadSettings

    def __call__(self, item: Partition, index: int) -> list[InputSequence]:
        return read_partition(item, self.settings)


@dataclass(frozen=True)
class FrameReader:
    """A pandas partition of a dask DataFrame -> its sequences (rows are steps)."""

    sequence_column: str | None
    columns: tuple[str, ...] | None
    dtype: Any
    sequence_length: int | None = None

    def __call__(self, frame, index: int) -> list[InputSequence]:

        if len(frame) == 0:
            return []
        names = [str(c) for c in frame.columns]
        if self.sequence_column is not None and self.sequence_column not in names:
            raise InputDataError(f"partition {index}: no column '{self.sequence_column}' (columns: {', '.join(names[:20])})")
        features = list(self.columns) if self.columns else [c for c in frame.columns if str(c) != self.sequence_column]
        missing = [c for c in features if str(c) not in names]
        if missing:
            raise InputDataError(f"partition {index}: no column '{missing[0]}' (columns: {', '.join(names[:20])})")
        values = _numeric_frame(frame[features], index, self.dtype)
        if self.sequence_column is None:
            sequences = [InputSequence(index, values)]
        else:
            ids = frame[self.sequence_column]
            if ids.isna().any():
                raise InputDataError(f"partition {index}, column '{self.sequence_column}': empty sequence id")
            sequences = group_rows(ids.to_numpy(), values)
        return cut_sequences(sequences, self.sequence_length)


@dataclass(frozen=True)
class BagReader:
    """A partition of a dask Bag -> its sequences."""

    dtype: Any
    sequence_length: int | None = None

    def __call__(self, items, index: int) -> list[InputSequence]:
        sequences = []
        for position, item in enumerate(items):
            if isinstance(item, InputSequence):
                sequence_id, values = item.id, item.values
            elif isinstance(item, tuple) and len(item) == 2:
                sequence_id, values = item
            else:
                sequence_id, values = f"{index}:{position}", item
            array = np.asarray(values)
            if array.dtype.kind not in "fiub" or array.ndim == 0 or array.size == 0:
                raise InputDataError(f"partition {index}, item {position}: expected a (T, F) array of numbers, "
                                     f"got {array.dtype} of shape {array.shape}")
            array = array[:, None] if array.ndim == 1 else array
            array = array.astype(self.dtype) if array.dtype.kind == "f" else array.astype(np.float64)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InputDataError(f"partition {index}, item {position}: inputs must be finite numbers")
            sequences.append(InputSequence(sequence_id, array))
        return cut_sequences(sequences, self.sequence_length)


def _numeric_frame(frame: Any, index: int, dtype: Any) -> NDArray:
    for name in frame.columns:
        if frame[name].dtype.kind not in "fiub":
            raise InputDataError(f"partition {index}: column '{name}' holds {frame[name].dtype}, not numbers")
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputDataError(f"partition {index}, row {row + 1}, column '{frame.columns[col]}' is {values[row, col]}: "
                             "inputs must be finite numbers")
    return values.astype(dtype)


def _partitions(data: Any, replay: Replay, sequence_column: str | None, columns: Sequence[str] | None,
                sequence_length: int | None = None) -> _Parts:
    check_initial_states(replay.initial_states)
    dtype = replay.options.dtype
    if isinstance(data, str):
        csv = CsvOptions(columns=tuple(columns) if columns else None, sequence_column=sequence_column)
        data = open_dataset(data, ReadSettings(csv, dtype, sequence_length))
    if isinstance(data, Dataset):
        return _Parts(list(data.partitions), [p.name for p in data.partitions], DatasetReader(data.settings))
    db: Any
    try:
        import dask.bag as db
    except ImportError:  # dask without the bag's dependencies
        db = None
    if db is not None and isinstance(data, db.Bag):
        items = data.to_delayed()
        return _Parts(items, [f"partition {k}" for k in range(len(items))], BagReader(dtype, sequence_length))
    if hasattr(data, "to_delayed") and hasattr(data, "columns"):  # a dask DataFrame
        items = data.to_delayed()
        reader = FrameReader(sequence_column, tuple(columns) if columns else None, dtype, sequence_length)
        return _Parts(items, [f"partition {k}" for k in range(len(items))], reader)
    raise UsageProblem(f"cannot run on {type(data).__name__}: give a dataset path, a Dataset, a dask DataFrame or a dask Bag")


def _model_node(model: Model) -> Any:
    """The model as one graph node: its parsed config and arrays, without the caller's warning hook."""
    payload = dataclasses.replace(model, on_warning=None)
    return dask.delayed(payload, name=f"lstm-inspect-model-{uuid.uuid4().hex}", traverse=False)


def _replay(options: Any, stateful: bool | None, initial_states: Any, start: str | None) -> Replay:
    return Replay(options or ReplayOptions(), stateful, dict(initial_states) if initial_states else None, start)


# ------------------------------------------------------------------ statistics: tasks and the merge


def _stats_task(model: Model, plan: StatsPlan, replay: Replay, reader: Any, item: Any, index: int, name: str) -> NDArray:
    """One partition: read, replay, and return its sums as the single element of an object array."""
    with _collecting(model) as (own, messages):
        sequences = reader(item, index)
        running = partition_stats(own, sequences, plan, replay) if sequences else {}
    part = {"ids": [(name, [s.id for s in sequences])], "sums": {key: _moments(acc) for key, acc in running.items()},
            "messages": messages}
    wrapped = np.empty(1, dtype=object)
    wrapped[0] = part
    return wrapped


def _moments(acc: _Running) -> dict[str, NDArray]:
    """Running sums in the layout of Dask's moment reductions: total, n (1, U), M (1, U, 1), plus extremes and
    saturation counts (1, U)."""
    return {
        "total": (acc.mean * acc.count)[None],
        "n": np.full((1, acc.mean.shape[0]), acc.count, dtype=np.int64),
        "M": acc.m2[None, :, None],
        "min": acc.min[None],
        "max": acc.max[None],
        "left": acc.left[None],
        "right": acc.right[None],
    }


def _chunk(x: Any, axis: Any = None, keepdims: Any = None, computing_meta: bool = False) -> Any:
    if computing_meta:
        return x
    return x[0]


def _combine(parts: Any, axis: Any = None, keepdims: Any = None, computing_meta: bool = False) -> Any:
    """Merge partitions' sums: count, mean and M2 by ``dask.array``'s ``moment_combine``."""
    if computing_meta:
        return parts
    if not isinstance(parts, list):
        parts = [parts]
    ids = [entry for part in parts for entry in part["ids"]]
    registry = SequenceRegistry()
    for name, sequence_ids in ids:
        registry.add(name, sequence_ids)
    keys = list(dict.fromkeys(key for part in parts for key in part["sums"]))
    sums = {}
    for key in keys:
        pieces = [part["sums"][key] for part in parts if key in part["sums"] and part["sums"][key]["n"][0, 0] > 0]
        if not pieces:
            continue
        moments = moment_combine([{k: p[k] for k in ("total", "n", "M")} for p in pieces], order=2, axis=(0,))
        stack = {k: np.concatenate([p[k] for p in pieces]) for k in ("min", "max", "left", "right")}
        sums[key] = {
            **moments,
            "min": stack["min"].min(axis=0, keepdims=True),
            "max": stack["max"].max(axis=0, keepdims=True),
            "left": stack["left"].sum(axis=0, keepdims=True),
            "right": stack["right"].sum(axis=0, keepdims=True),
        }
    messages = list(dict.fromkeys(message for part in parts for message in part["messages"]))
    return {"ids": ids, "sums": sums, "messages": messages}


def _aggregate(parts: Any, axis: Any = None, keepdims: Any = None, computing_meta: bool = False) -> Any:
    return _combine(parts, axis=axis, keepdims=keepdims, computing_meta=computing_meta)


def _running_sums(merged: Mapping) -> dict[tuple[str, str], _Running]:
    """The merged moments as ``stats``' running sums, ready for ``finish_stats``."""
    result = {}
    for key, m in merged["sums"].items():
        count = int(m["n"][0, 0])
        acc = _Running(m["total"].shape[1])
        acc.count = count
        acc.mean = m["total"][0] / count
        acc.m2 = m["M"][0, :, 0]
        acc.min, acc.max = m["min"][0], m["max"][0]
        acc.left, acc.right = m["left"][0], m["right"][0]
        result[key] = acc
    return result


# ------------------------------------------------------------------ trace and predict: one part per partition


def _trace_rows(model: Model, sequences: Any, partition: Any, *, layout: TraceLayout, replay: Replay) -> Any:
    return trace_rows(model, sequences, layout, replay, partition)


def _predict_rows(model: Model, sequences: Any, partition: Any, *, replay: Replay) -> Any:
    return predict_rows(model, sequences, replay, partition)


def _write_task(model: Model, rows: Any, columns: Any, reader: Any, item: Any, index: int, name: str, folder: str) -> Any:
    with _collecting(model) as (own, messages):
        sequences = reader(item, index)
        written = write_part(rows(own, sequences, name), columns, folder, index) if sequences else 0
    return name, [s.id for s in sequences], written, messages


def _write(model, data, path, rows, columns, replay, sequence_column, columns_in, progress, protect) -> WriteSummary:
    parts = _partitions(data, replay, sequence_column, columns_in)
    out = PartsOutput(path, protect)
    try:
        node = _model_node(model)
        tasks = [dask.delayed(_write_task, pure=False)(node, rows, columns, parts.reader, item, index, name, out.staging)
                 for index, (item, name) in enumerate(zip(parts.items, parts.names))]
        results = _compute(tasks, progress)
        registry = SequenceRegistry()
        for name, ids, _, _ in results:
            registry.add(name, ids)
        _report(model, [message for *_, messages in results for message in messages])
        out.commit()
    except BaseException:
        out.abort()
        raise
    rows_written = [count for _, _, count, _ in results]
    return WriteSummary(out.target, sum(1 for n in rows_written if n), sum(rows_written), len(rows_written))


# ------------------------------------------------------------------ warnings and notes from the tasks


@contextlib.contextmanager
def _collecting(model: Model) -> Iterator[tuple[Model, list[tuple[str, str]]]]:
    """A task's own view of the model, whose warnings (and the notes given meanwhile) are kept as
    ("warning" | "note", text) for the client to report."""
    messages: list[tuple[str, str]] = []
    own = dataclasses.replace(model, warnings=[], on_warning=lambda text: messages.append(("warning", text)))
    with notes_to(lambda text: messages.append(("note", text))):
        yield own, messages


def _report(model: Model, messages: Sequence[tuple[str, str]]) -> None:
    """The tasks' warnings (through the model, as the replay's own) and notes, each once, in order."""
    for kind, text in dict.fromkeys(tuple(message) for message in messages):
        if kind == "warning":
            model.warn(text)
        else:
            note(text)


# ------------------------------------------------------------------ running the graph


def _compute(collections: list, progress: bool) -> list:
    """Compute on the active distributed client (progress from the client, on stderr), else locally."""
    client = _active_client()
    if client is not None:
        futures = client.compute(collections)
        if progress:
            from distributed import progress as show_progress

            with contextlib.redirect_stdout(sys.stderr):  # the bar draws on stdout, which carries data
                show_progress(futures)
        return client.gather(futures)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            return list(dask.compute(*collections))
    return list(dask.compute(*collections))


def _active_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None
