"""What each command prints: its column blocks, and the terminal view of the same.

A command of the command line is one call to a function here and one call to
a writer.  Each function reads what it needs, checks the selections, and
returns an :class:`Output`: the published columns, the blocks in that order
(an iterator, consumed once, so memory stays flat), and a ``view`` that draws
the terminal table from the same source instead.  The writer consumes one or
the other, never both (``writers.write_output``).  Binary results (pictures,
exported weights) are a :class:`FileOutput`.

Errors that the first steps of a replay find (a wrong feature count, a token
id outside the vocabulary) are raised by these functions, before anything is
written: each replays its first block eagerly.

A new command adds one function here (or in the module that owns its
concern) returning an ``Output``; the command line needs nothing else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .batching import InputRequest, name_inputs, predict_batches, trace_blocks
from .columns import (
    Block,
    focus_positions,
    long_blocks,
    object_block,
    predict_block,
    predict_columns,
    trace_columns,
    wide_blocks,
    wide_columns,
)
from .engine import ReplayOptions, compile_model
from .errors import UsageProblem
from .inputs import InputFiles, read_initial_state, read_input
from .model import Model, RecurrentLayer
from .selection import check_gates, check_units

if TYPE_CHECKING:
    from rich.console import Console

    from .datasets import Dataset
    from .engine import Program
    from .partitions import Replay
    from .verify import VerifyResult

View = Callable[["Console"], None]


@dataclass
class Output:
    """A command's tabular result: ``columns`` and ``blocks`` for the data formats, ``view`` for the
    terminal table; ``sources`` are the files it was made from, which ``-o FILE`` must never replace."""

    columns: list[str]
    blocks: Iterable[Block]
    view: View
    sources: tuple[str, ...] = ()


@dataclass
class FileOutput:
    """A command's binary or whole-file result: ``write(stream)`` writes it; ``binary`` results are
    refused on a terminal stdout.  ``companions`` are other files written first, each
    ``(path, write)``; ``summary`` (``12.3 MB``), when given, is said on stderr after writing."""

    write: Callable[[BinaryIO], None]
    sources: tuple[str, ...] = ()
    binary: bool = True
    companions: tuple[tuple[str, Callable[[BinaryIO], None]], ...] = ()
    summary: str | None = None


@dataclass
class FolderOutput:
    """A result written as a folder of files: ``write(folder)`` writes them and returns what to say
    (``wrote ...``)."""

    write: Callable[[str | None], str]


@dataclass(frozen=True)
class Cluster:
    """Where a dataset INPUT is replayed: here (neither set), on a local Dask cluster of ``workers``
    processes, or on the dask.distributed ``scheduler``; ``progress`` shows Dask's progress bar."""

    scheduler: str | None = None
    workers: int | None = None
    progress: bool = False

    @property
    def distributed(self) -> bool:
        """Whether the replay runs on Dask."""
        return bool(self.scheduler or self.workers)

    def keywords(self) -> dict[str, Any]:
        """The ``partitions.run_*`` keywords."""
        return {"scheduler": self.scheduler, "workers": self.workers, "progress": self.progress}


def read_inputs(model: Model, files: InputFiles, dtype: Any = np.float32) -> tuple[InputRequest, dict | None]:
    """The INPUT files read (each named for the model input it feeds) and the initial states, if a file
    gives them."""
    from .notes import notes_to

    named = name_inputs(model, files.paths, files.start)
    read_notes: list[str] = []  # said with the feed's plan, once the inputs passed every check
    with notes_to(read_notes.append):
        sequences = {name: read_input(path, files.csv, dtype=dtype) for name, path in named.items()}
    request = InputRequest(sequences, stateful=files.stateful, sequence_length=files.sequence_length,
                           notes=tuple(read_notes))
    states = read_initial_state(files.initial_state) if files.initial_state else None
    return request, states


def open_dataset_input(model: Model, files: InputFiles, options: ReplayOptions, cluster: Cluster | None,
                       destination: str | None) -> tuple[Dataset, Replay] | None:
    """For a dataset INPUT (a folder, glob or URL), ``cluster`` on Dask, or ``-o DIR/``: the dataset and
    how to replay it; None for ordinary inputs (read whole by :func:`read_inputs`).

    A dataset feeds a model with one input (or the one layer of ``--from``): the
    partitions of several datasets could not be paired into samples.
    """
    from .datasets import ReadSettings, is_dataset, open_dataset
    from .partitions import Replay, check_initial_states, is_folder_output

    cluster = cluster or Cluster()
    if not (cluster.distributed or is_folder_output(destination)
            or any(is_dataset(_input_path(model, path, files.start)) for path in files.paths)):
        return None
    needed = [files.start] if files.start else list(model.graph.inputs)
    if len(needed) > 1:
        raise UsageProblem(
            f"a dataset INPUT (a folder, glob or URL), --workers/--scheduler and -o DIR/ need a model with one input; "
            f"this one has {len(needed)} ({', '.join(needed)}): give its inputs as files")
    (path,) = name_inputs(model, files.paths, files.start).values()
    if path == "-":
        raise UsageProblem("a dataset cannot be read from standard input")
    settings = ReadSettings(files.csv, options.dtype, files.sequence_length)
    states = read_initial_state(files.initial_state) if files.initial_state else None
    check_initial_states(states)
    stateful = files.stateful
    if stateful is None and files.sequence_length:
        stateful = False  # as for a file: --sequence-length alone replays each piece from the initial state
    return open_dataset(path, settings), Replay(options, stateful, states, files.start)


def _input_path(model: Model, item: str, start: str | None) -> str:
    """An INPUT argument's path: ``NAME=PATH`` without ``NAME=`` when NAME is one of the model's inputs."""
    key, sep, path = item.partition("=")
    return path if sep and (key in model.graph.inputs or key == start) else item


def _folder_only(fmt: str | None, cluster: Cluster | None, destination: str | None) -> bool:
    """Whether a dataset's rows go to a partitioned Parquet dataset (``-o DIR/``); the usage errors of
    the other cases (Dask without a folder, a one-file format into a folder)."""
    from .partitions import is_folder_output

    if is_folder_output(destination):
        if fmt not in (None, "parquet"):
            raise UsageProblem(f"-o DIR/ writes a partitioned Parquet dataset; --format {fmt} writes one file: "
                               "give -o FILE")
        return True
    if cluster is not None and cluster.distributed:
        raise UsageProblem("--workers/--scheduler write a partitioned Parquet dataset: give -o DIR/")
    return False


def _sources(model: Model, files: InputFiles | None = None) -> tuple[str, ...]:
    """The model file, its --config, and every input file: what ``-o`` must not overwrite."""
    sources = [model.path, model.config_path]
    if files is not None:
        sources += [*files.paths, files.initial_state]
    return tuple(path for path in sources if path)


def _views() -> Any:
    from . import terminal_views

    return terminal_views


# ------------------------------------------------------------------ weights and layers


def layers_output(model: Model) -> Output:
    """``layers``: one row per layer (``api.layer_rows``), the file's Keras version in the view's title."""
    from .api import layer_rows

    model.recurrent_layers()  # check the recurrent weights against their config, as every command does
    rows = layer_rows(model)
    columns = list(rows[0]) if rows else ["name"]
    title = f"{model.label}: {model.graph.class_name} saved by Keras {model.keras_version or 'unknown'}"
    blocks = [object_block(rows, columns)] if rows else []
    return Output(columns, blocks, lambda console: _views().render_layers(rows, console, title), _sources(model))


def weights_output(model: Model, layers: Sequence[str] | None = None, gates: Sequence[str] | None = None,
                   show_values: bool = False) -> Output:
    """``weights``: one row per weight value; the view summarises each gate's slice (and, with
    ``show_values``, prints its matrix)."""
    from .columns import weight_blocks, weight_columns
    from .weights import label_weights

    gates = check_gates(model.select_recurrent(layers), gates, values=False)
    blocks = list(label_weights(model, layers, gates))
    columns = weight_columns(blocks)
    return Output(columns, weight_blocks(blocks, with_taps=len(columns) > len(weight_columns([]))),
                  lambda console: _views().render_weights(model, blocks, console, show_values), _sources(model))


# ------------------------------------------------------------------ replays


def trace_output(
    model: Model,
    inputs: InputFiles,
    *,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    wide: bool = False,
    position: Sequence[int] | None = None,
    reduce: str | None = None,
    options: ReplayOptions | None = None,
    fmt: str | None = None,
    destination: str | None = None,
    cluster: Cluster | None = None,
    vocab_path: str | None = None,
) -> Output | FolderOutput:
    """``trace``: every recorded value at every step, long (one row per unit) or ``wide``.

    The view keeps only the steps and units it shows (a convolutional layer's
    maps averaged over the positions, unless ``position``/``reduce`` chose).
    With ``fmt`` lstmvis, the folder of files LSTMVis reads instead
    (:mod:`lstm_inspect.lstmvis`; ``vocab_path`` names the tokens).  A
    dataset INPUT is read partition by partition; with ``destination``
    ``DIR/`` (or a ``cluster`` on Dask) it is written as a partitioned Parquet
    dataset (:mod:`lstm_inspect.partitions`).
    """
    options = options or ReplayOptions()
    lstmvis = fmt == "lstmvis"
    on_dataset = open_dataset_input(model, inputs, options, cluster, None if lstmvis else destination)
    if on_dataset is None:
        request, states = read_inputs(model, inputs, options.dtype)
    elif lstmvis:
        raise UsageProblem("--format lstmvis takes INPUT files, not a dataset (a folder, glob or URL) "
                           "or --workers/--scheduler")
    selected = model.select_recurrent(layers)
    names = [layer.name for layer in selected]
    program = compile_model(model, options, upto=names, start=inputs.start)
    spec = trace_columns(selected, gates=gates, pre_activation=options.pre_activation, masked=program.may_mask,
                         units=units, positions_reduced=position is not None or reduce is not None)
    check_units(selected, units)
    if lstmvis:
        return _lstmvis_output(model, request, selected, program, gates, vocab_path, options, inputs.stateful, states)
    if on_dataset is not None:
        from .partitions import TraceLayout, run_trace, serial_trace

        dataset, replay = on_dataset
        columns = wide_columns(selected, spec) if wide else spec.long_columns
        layout = TraceLayout(tuple(names), spec, wide, tuple(position) if position is not None else None, reduce,
                             tuple(columns))
        if _folder_only(fmt, cluster, destination):
            run = cluster or Cluster()
            return FolderOutput(lambda folder: run_trace(model, dataset, layout, replay, folder or "",
                                                         protect=_sources(model, inputs), **run.keywords()).message())
        traced = serial_trace(model, dataset, layout, replay)
    else:
        traced = focus_positions(trace_blocks(model, request, layers=names, options=options, initial_states=states,
                                              program=program), position, reduce)
    first = next(traced, None)  # input errors found by the replay come before any output
    traced = itertools.chain([] if first is None else [first], traced)
    if wide:
        columns, blocks = wide_columns(selected, spec), wide_blocks(traced, selected, spec, options.dtype)
    else:
        columns, blocks = spec.long_columns, long_blocks(traced, spec, options.dtype)
    view_blocks = focus_positions(traced, None, "mean")
    return Output(columns, blocks, lambda console: _views().render_trace(view_blocks, spec, console),
                  _sources(model, inputs))


def _lstmvis_output(model: Model, request: InputRequest, selected: Sequence[RecurrentLayer], program: Program,
                    gates: Sequence[str] | None, vocab_path: str | None, options: ReplayOptions,
                    stateful: bool | None, states: dict | None) -> FolderOutput:
    """``trace --format lstmvis``: the LSTMVis project of the trace, written into the folder given."""
    from .lstmvis import write_lstmvis

    vocab = _read_vocab(vocab_path)

    def write(folder: str | None) -> str:
        written = write_lstmvis(folder or "", model, request, selected, program=program, values=gates, vocab=vocab,
                                options=options, stateful=stateful, initial_states=states)  # type: ignore[arg-type]
        return f"wrote {', '.join(written)}"

    return FolderOutput(write)


def _read_vocab(path: str | None) -> dict[int, str] | None:
    """``--vocab``: token id -> text, or None without a file."""
    from .vocab import read_vocab

    return read_vocab(path) if path else None


def predict_output(model: Model, inputs: InputFiles, options: ReplayOptions | None = None, *, fmt: str | None = None,
                   destination: str | None = None, cluster: Cluster | None = None) -> Output | FolderOutput:
    """``predict``: the model's outputs, one row per sequence (per step for sequence outputs).  A dataset
    INPUT is read partition by partition, and with ``destination`` ``DIR/`` written as a partitioned
    Parquet dataset."""
    options = options or ReplayOptions()
    on_dataset = open_dataset_input(model, inputs, options, cluster, destination)
    blocks: Iterator[Block]
    if on_dataset is not None:
        from .partitions import run_predict, serial_predict

        dataset, replay = on_dataset
        if _folder_only(fmt, cluster, destination):
            run = cluster or Cluster()
            return FolderOutput(lambda folder: run_predict(model, dataset, replay, folder or "",
                                                           protect=_sources(model, inputs), **run.keywords()).message())
        rows = serial_predict(model, dataset, replay)
        first_block = next(rows)  # a dataset holds at least one sequence
        columns = list(first_block.columns)
        blocks = itertools.chain([first_block], rows)
    else:
        request, states = read_inputs(model, inputs, options.dtype)
        batches = predict_batches(model, request, options=options, initial_states=states, start=inputs.start)
        first = next(batches)  # the first batch replayed before anything is written
        names = [edge.layer for edge in model.graph.outputs]
        columns = predict_columns(first[1], names)
        blocks = (predict_block(ids, outputs, names) for ids, outputs in itertools.chain([first], batches))
    title = f"{model.label}: predict"
    return Output(columns, blocks, lambda console: _views().render_rows(columns, blocks, console, title=title),
                  _sources(model, inputs))


def stats_output(model: Model, inputs: InputFiles, *, layers: Sequence[str] | None = None,
                 gates: Sequence[str] | None = None, sort: str = "unit", top: int | None = None,
                 options: ReplayOptions | None = None, cluster: Cluster | None = None) -> Output:
    """``stats``: per layer, value and unit, the figures of ``stats.compute_stats``; a dataset INPUT is
    summarised partition by partition (on Dask with ``cluster``) and the sums merged."""
    from .stats import STATS_COLUMNS, compute_stats, stats_blocks

    options = options or ReplayOptions()
    on_dataset = open_dataset_input(model, inputs, options, cluster, None)
    if on_dataset is not None:
        from .partitions import run_stats
        from .stats import plan_stats

        dataset, replay = on_dataset
        plan = plan_stats(model, layers, gates, replay.options)
        results = run_stats(model, dataset, plan, replay, **(cluster or Cluster()).keywords())
    else:
        request, states = read_inputs(model, inputs, options.dtype)
        results = compute_stats(model, request, layers=layers, gates=gates, options=options, initial_states=states,
                                start=inputs.start)
    return Output(list(STATS_COLUMNS), stats_blocks(results, sort, top, options.dtype),
                  lambda console: _views().render_stats(results, console, sort, top), _sources(model, inputs))


def verify_output(model: Model, inputs: InputFiles, tolerance: float = 1e-5,
                  options: ReplayOptions | None = None) -> tuple[Output, VerifyResult]:
    """``verify``: one row per compared layer output, and the result (for the verdict and the exit status)."""
    from . import verify as verifying

    options = options or ReplayOptions()
    request, _ = read_inputs(model, inputs, options.dtype)
    result = verifying.verify(model, request, tolerance=tolerance, options=options, start=inputs.start)
    rows = verifying.result_rows(result)
    columns = list(verifying.VERIFY_COLUMNS)
    blocks = [object_block(rows, columns)] if rows else []
    verdict = verifying.summary(result)
    output = Output(columns, blocks, lambda console: _views().render_verify(rows, columns, console, verdict),
                    _sources(model, inputs))
    return output, result


# ------------------------------------------------------------------ files


def plot_output(model: Model, inputs: InputFiles, path: str | None, fmt: str | None = None, *, kind: str = "heatmap", layers: Sequence[str] | None = None,
                gates: Sequence[str] | None = None, units: Sequence[int] | None = None, sequence: str | None = None,
                dpi: float = 100, options: ReplayOptions | None = None) -> FileOutput:
    """``plot``: the picture for ``-o path`` (png, svg or pdf: ``fmt``, else the extension), drawn now
    and written by the caller."""
    from .api import draw, save_figure
    from .plot import format_for, require_matplotlib

    fmt = format_for(path, fmt)
    require_matplotlib()
    options = options or ReplayOptions()
    request, states = read_inputs(model, inputs, options.dtype)
    figure = draw(model, request, kind=kind, layers=layers, gates=gates, units=units, sequence=sequence,
                  options=options, initial_states=states, start=inputs.start)
    return FileOutput(lambda stream: save_figure(figure, stream, fmt, dpi), _sources(model, inputs))


def export_output(model: Model, layout: str, path: str | None = None, fmt: str | None = None,
                  layers: Sequence[str] | None = None, options: ReplayOptions | None = None) -> FileOutput:
    """``export``: the recurrent weights in ``layout``, as ``fmt`` (npz, or json text; by default json
    for a ``path`` ending in .json, else npz)."""
    from .export import export_weights

    fmt = fmt or ("json" if (path or "").lower().endswith(".json") else "npz")
    options = options or ReplayOptions()
    exported = export_weights(model, layout, layers, hard_sigmoid=options.hard_sigmoid,
                              assume_activation=options.assume_activation,
                              assume_recurrent_activation=options.assume_recurrent_activation)
    return FileOutput(lambda stream: exported.write(stream, fmt), _sources(model), binary=fmt == "npz")


def code_output(model: Model, weights_out: str | None = None, hard_sigmoid: str | None = None) -> FileOutput:
    """``code``: the standalone NumPy replay script (:mod:`lstm_inspect.codegen`) as text, and with
    ``weights_out`` the .npz of weights it reads, written first."""
    from .codegen import generate_code, write_weights

    generated = generate_code(model, weights_out=weights_out, hard_sigmoid=hard_sigmoid)
    source = generated.source.encode("utf-8")
    companions: tuple[tuple[str, Callable[[BinaryIO], None]], ...] = ()
    if weights_out is not None:
        companions = ((weights_out, lambda stream: write_weights(generated.arrays, stream)),)
    return FileOutput(_writing(source), (*_sources(model), *((weights_out,) if weights_out else ())),
                      binary=False, companions=companions)


def _writing(data: bytes) -> Callable[[BinaryIO], None]:
    """A writer of ``data`` as it is."""

    def write(stream: BinaryIO) -> None:
        stream.write(data)

    return write


def report_output(model: Model, inputs: InputFiles, *, layers: Sequence[str] | None = None,
                  vocab_path: str | None = None, max_sequences: int = 20,
                  options: ReplayOptions | None = None) -> FileOutput:
    """``report``: the interactive HTML page (:mod:`lstm_inspect.report`), built now; its size is the summary."""
    from .report import build_report, page_size_text, require_plotly

    require_plotly()
    options = options or ReplayOptions()
    request, states = read_inputs(model, inputs, options.dtype)
    page = build_report(model, request, layers=layers, vocab=_read_vocab(vocab_path), options=options,
                        stateful=inputs.stateful, initial_states=states, max_sequences=max_sequences,
                        start=inputs.start)
    data = page.encode("utf-8")
    sources = (*_sources(model, inputs), *((vocab_path,) if vocab_path else ()))
    return FileOutput(_writing(data), sources, binary=False,
                      summary=page_size_text(page))


__all__ = [
    "Cluster",
    "FileOutput",
    "FolderOutput",
    "Output",
    "code_output",
    "export_output",
    "layers_output",
    "open_dataset_input",
    "plot_output",
    "predict_output",
    "read_inputs",
    "report_output",
    "stats_output",
    "trace_output",
    "verify_output",
    "weights_output",
]
