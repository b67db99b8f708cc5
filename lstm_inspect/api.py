"""The Python API: load a model, list its layers, label weights, trace and predict.

>>> import lstm_inspect as li
>>> model = li.load_model("sample_models/single_lstm.keras")
>>> [layer.name for layer in model.recurrent_layers()]
['lstm']
>>> frame = li.trace(model, "sample_models/single_lstm.csv")      # pandas DataFrame, long form
>>> arrays = li.trace_arrays(model, x)                             # {"lstm": {"i": (N, T, U), ...}}
>>> y = li.predict(model, x)                                       # what model.predict returns

Inputs ``x`` are a NumPy array of shape (T, F) (one sequence) or (N, T, F),
or a path to a CSV / .npy / .npz file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from . import _API
from .batching import Inputs, plan_inputs, predict_batches, trace_blocks
from .engine import ReplayOptions, compile_model, value_names
from .errors import InputDataError
from .export import ExportedWeights, export_weights  # noqa: F401 (re-exported: the names in _API)
from .inputs import CsvOptions, InputSequence, read_input
from .model import Model, load_model  # noqa: F401 (re-exported: the names in _API)
from .stats import GateStats, compute_stats, stats_frame  # noqa: F401 (re-exported: the names in _API)
from .weights import GateBlock, label_weights  # noqa: F401 (re-exported: the names in _API)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .codegen import GeneratedCode
    from .config import LayerSpec
    from .engine import InputSpec, Program

__all__ = sorted(_API)  # noqa: PLE0605 (the public names are listed once, in __init__, which imports this lazily)


def as_sequences(x: Any, csv: CsvOptions | None = None, dtype: Any = np.float32, *, token_ids: bool = False) -> list[InputSequence]:
    """Normalise an input: a path, a (T, F) or (N, T, F) array, or a list of sequences.

    With ``token_ids`` (a model starting with an Embedding), a 2-D array is
    (N, T) ids, one sequence per row, and a 1-D array one sequence of ids.
    """
    if isinstance(x, (str, os.PathLike)):
        return read_input(os.fspath(x), csv, dtype=dtype)
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], InputSequence):
        return list(x)
    array = np.asarray(x)
    _check_array(array)
    if token_ids and array.ndim == 2:
        return [InputSequence(i, array[i][:, None]) for i in range(array.shape[0])]
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim == 2:
        return [InputSequence(0, array)]
    if 3 <= array.ndim <= 6:  # (N, T, F); (N, T, *positions, C) for a convolutional recurrent layer
        return [InputSequence(i, array[i]) for i in range(array.shape[0])]
    raise InputDataError(f"input of shape {array.shape}; expected (T, F) or (N, T, F)")


def _check_array(array: NDArray) -> None:
    """An input array must hold finite numbers and at least one step (as a file's must)."""
    if array.dtype.kind not in "fiub":
        raise InputDataError(f"input array of dtype {array.dtype}; expected numbers")
    if array.size == 0:
        raise InputDataError(f"input array of shape {array.shape} holds no steps")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            where = ", ".join(str(int(i)) for i in np.argwhere(bad)[0])
            raise InputDataError(f"input[{where}] is {array[tuple(np.argwhere(bad)[0])]}: inputs must be finite numbers")


def _model_sequences(model: Model, x: Any, options: ReplayOptions, start: str | None = None) -> Any:
    """The input(s) as sequences: one list for a model with one input; a dict by input name when
    ``x`` is a dict, or a list/tuple of arrays for a model with several inputs."""
    program = _program_for_inputs(model, start)
    specs = {spec.name: spec for spec in program.inputs} if program is not None else {}
    if isinstance(x, Mapping):
        return {name: as_sequences(value, dtype=options.dtype, token_ids=_ids(specs.get(name))) for name, value in x.items()}
    if program is not None and len(program.inputs) > 1 and isinstance(x, (list, tuple)) and len(x) == len(program.inputs) \
            and not (x and isinstance(x[0], InputSequence)):
        return {spec.name: as_sequences(value, dtype=options.dtype, token_ids=spec.token_ids)
                for spec, value in zip(program.inputs, x)}
    first = program.inputs[0] if program is not None and program.inputs else None
    return as_sequences(x, dtype=options.dtype, token_ids=_ids(first))


def _ids(spec: InputSpec | None) -> bool:
    return bool(spec is not None and spec.token_ids)


def _program_for_inputs(model: Model, start: str | None) -> Program | None:
    """A compiled program that says what the inputs take (whole model, else the recurrent part)."""
    from .errors import LstmInspectError

    for upto in (None, model.recurrent_names() or None):
        try:
            return compile_model(model, upto=upto, start=start)
        except LstmInspectError:
            continue
    return None


def _takes_token_ids(model: Model) -> bool:
    """Whether the model's input is token ids (it starts with an Embedding)."""
    program = _program_for_inputs(model, None)
    return bool(program is not None and program.inputs and program.inputs[0].token_ids)


def layer_rows(model: Model) -> list[dict[str, Any]]:
    """One dict per layer: what ``lstm-inspect layers`` prints."""
    from .config import activation_name

    rows = []
    for spec in model.graph.layers:
        inner = spec.children.get("forward") or spec.children.get("layer")
        source = inner or spec
        class_name = spec.class_name if inner is None else f"{spec.class_name}({inner.class_name})"
        names = [spec.name] + [child.name for child in spec.children.values()]
        shapes = []
        params = 0
        for name in names:
            for key, stored in model.weights.get(name, {}).items():
                prefix = f"{name.rsplit('/', 1)[-1]}." if name != spec.name else ""
                shapes.append(f"{prefix}{key} {'×'.join(str(d) for d in stored.array.shape)}")
                params += int(stored.array.size)
        recurrent = source.is_recurrent
        rows.append(
            {
                "name": spec.name,
                "class": class_name,
                "units": source.get("units", source.get("filters")),
                "activation": activation_name(source.get("activation")) if "activation" in source.config or recurrent else None,
                "recurrent_activation": activation_name(source.get("recurrent_activation")) if recurrent else None,
                "return_sequences": source.get("return_sequences") if recurrent else None,
                "go_backwards": source.get("go_backwards") if recurrent else None,
                "stateful": source.get("stateful") if recurrent else None,
                "use_bias": source.get("use_bias"),
                "params": params,
                "weight_shapes": "; ".join(shapes) or None,  # empty cell, not "", for a layer without weights
                "keras_version": model.keras_version,
                "initial_state": _initial_state_source(spec, source) if recurrent else None,
            }
        )
    return rows


def _initial_state_source(spec: LayerSpec, inner: LayerSpec) -> str:
    """Where a recurrent layer's initial state comes from: ``h=lstm_1[1]; c=lstm_1[2]`` (outputs of
    other layers, or Input layers), or ``zeros``."""
    from .kinds import kind_of

    wired = list(spec.inbound[1:])
    if not wired:
        return "zeros"
    kind = kind_of(inner.kind)
    names = list(kind.states) if kind is not None else []
    if spec.is_bidirectional:
        names = [f"forward {n}" for n in names] + [f"backward {n}" for n in names]
    parts = []
    for k, edge in enumerate(wired):
        label = names[k] if k < len(names) else f"state {k}"
        parts.append(f"{label}={edge.layer}" + (f"[{edge.index}]" if edge.index else ""))
    return "; ".join(parts)


def weights_frame(model: Model, layers: Sequence[str] | None = None, gates: Sequence[str] | None = None
                  ) -> pd.DataFrame:
    """Every labelled weight as a pandas DataFrame (the ``weights`` CSV columns)."""
    import pandas as pd

    from .columns import WEIGHT_COLUMNS, weight_blocks

    parts = []
    for block in weight_blocks(label_weights(model, layers, gates)):
        rows = block.rows
        columns = {}
        for name, value in zip(block.columns, block.data):
            if isinstance(value, np.ma.MaskedArray):  # `source` is empty for biases
                value = pd.arrays.IntegerArray(value.filled(0).astype(np.int64), np.ma.getmaskarray(value))
            elif not isinstance(value, np.ndarray):
                value = [value] * rows
            columns[name] = value
        parts.append(pd.DataFrame(columns))
    if not parts:
        return pd.DataFrame(columns=WEIGHT_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def trace_arrays(
    model: Model,
    x: Any,
    layers: Sequence[str] | None = None,
    *,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> dict[str, dict[str, NDArray]]:
    """Per recurrent layer, each recorded value as an (N, T, U) array in input-row order
    ((N, T, *positions, U) for a convolutional layer).

    For a go_backwards layer, index ``t`` is still the input row consumed at
    that step (the arrays are flipped back from processing order).  Also
    holds ``"masked"`` (N, T) booleans.  All samples must have the same length.
    ``stateful`` None follows the model: a stateful model with a fixed batch
    shape is fed as Keras' ``predict`` feeds it, and N counts its chains.
    ``start`` feeds ``x`` to that layer (``--from``).
    """
    options = options or ReplayOptions()
    sequences = _model_sequences(model, x, options, start)
    selected = model.select_recurrent(layers)
    program = compile_model(model, options, upto=[layer.name for layer in selected], start=start)
    feed = plan_inputs(model, program, sequences, stateful)
    ids = list(range(feed.chain_count)) if feed.chains else [s.id for s in feed.samples]
    index = {name: i for i, name in enumerate(ids)}
    n = len(ids)
    collected: dict[str, list] = {}
    for tb in trace_blocks(model, feed, layers=[l.name for l in selected], options=options,
                           initial_states=initial_states, program=program):
        collected.setdefault(tb.layer.name, []).append(tb)
    result: dict[str, dict[str, NDArray]] = {}
    for name, blocks in collected.items():
        layer = blocks[0].layer
        lengths: dict[int, int] = {}
        for tb in blocks:
            for sample_id in tb.sequences:
                row = index[sample_id]
                lengths[row] = max(lengths.get(row, 0), int(tb.block.t.max(initial=-1)) + 1)
        if len(set(lengths.values())) > 1:
            raise ValueError("trace_arrays needs samples of equal length; use trace() for ragged input")
        steps = max(lengths.values(), default=0)
        shape = (n, steps) + blocks[0].block.positions + (layer.units,)
        store = {value: np.full(shape, np.nan, dtype=options.dtype) for value in value_names(layer, options.pre_activation)}
        store["masked"] = np.zeros((n, steps), dtype=bool)
        for tb in blocks:
            block = tb.block
            rows = [index[s] for s in tb.sequences]
            for value_name, value in block.values.items():
                store[value_name][np.ix_(rows, block.t)] = np.moveaxis(value, 1, 0)
            if block.masked is not None:
                store["masked"][np.ix_(rows, block.t)] = block.masked.T
        result[name] = store
    return result


def trace(
    model: Model,
    x: Any,
    layers: Sequence[str] | None = None,
    *,
    wide: bool = False,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    start: str | None = None,
    position: Sequence[int] | None = None,
    reduce: str | None = None,
) -> pd.DataFrame:
    """The trace as a pandas DataFrame with the CLI's columns (long, or wide with ``wide=True``).

    ``position`` / ``reduce`` (``mean``, ``max``) take a ConvLSTM layer's positions away, as
    ``--position`` and ``--reduce`` do.
    """
    import pandas as pd

    from .columns import focus_positions, long_blocks, trace_columns, wide_blocks

    options = options or ReplayOptions()
    selected = model.select_recurrent(layers)
    program = compile_model(model, options, upto=[layer.name for layer in selected], start=start)
    spec = trace_columns(selected, gates=gates, pre_activation=options.pre_activation, masked=program.may_mask, units=units,
                         positions_reduced=position is not None or reduce is not None)
    sequences = _model_sequences(model, x, options, start)
    blocks = trace_blocks(model, sequences, layers=[l.name for l in selected], options=options, stateful=stateful,
                          initial_states=initial_states, program=program)
    blocks = focus_positions(blocks, position, reduce)
    make = wide_blocks(blocks, selected, spec, options.dtype) if wide else long_blocks(blocks, spec, options.dtype)
    frames = []
    for block in make:
        rows = block.rows
        frames.append(pd.DataFrame({
            name: (value if isinstance(value, np.ndarray) else [value] * rows) for name, value in zip(block.columns, block.data)
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def predict(
    model: Model,
    x: Any,
    *,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> NDArray | list[NDArray]:
    """The model's output for ``x``, computed in NumPy (one array per model output).

    ``x``: one input (array, path or sequences), or, for a model with several
    inputs, a list of them in the model's input order or a dict by input name.
    ``start`` feeds ``x`` to that layer instead of the model's input (``--from``).
    ``stateful`` None follows the model: a stateful model with a fixed batch
    shape (B, T, F) gives one row per sample of T steps, as
    ``model.predict(x, batch_size=B)`` does.
    """
    options = options or ReplayOptions()
    sequences = _model_sequences(model, x, options, start)
    outputs: list[list[NDArray]] = []
    for _, batch_outputs in predict_batches(model, sequences, options=options, stateful=stateful,
                                            initial_states=initial_states, start=start):
        outputs.append(batch_outputs)
    merged = [np.concatenate([batch[k] for batch in outputs]) for k in range(len(outputs[0]))]
    return merged[0] if len(merged) == 1 else merged


# ------------------------------------------------------------------ statistics and pictures


def gate_stats(
    model: Model,
    x: Any,
    layers: Sequence[str] | None = None,
    *,
    gates: Sequence[str] | None = None,
    sort: str = "unit",
    top: int | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> pd.DataFrame:
    """Per layer, value and unit: steps, mean, std, min, max and saturation, as a pandas DataFrame.

    Columns as ``lstm-inspect stats`` writes them: ``layer, gate, unit, steps,
    mean, std, min, max, left_saturated, right_saturated, saturation_rank,
    variability_rank``.  ``left_saturated`` / ``right_saturated`` are the
    fractions of (unmasked) steps below 0.1 / above 0.9 of the activation's
    range (Karpathy, Johnson & Fei-Fei 2015, §4.2); NaN for ``cell`` and for
    an LSTM's or GRU's ``hidden``.  ``sort`` orders the units of each (layer,
    gate): ``unit``, ``saturation`` (most saturated first) or ``variability``
    (largest std first); ``top`` keeps the first ``top``.  Streams over the
    trace, so memory stays flat.  ``compute_stats`` gives the same as
    :class:`GateStats` objects with (U,) arrays.
    """
    options = options or ReplayOptions()
    results = compute_stats(model, _model_sequences(model, x, options, start), layers=layers, gates=gates,
                            options=options, stateful=stateful, initial_states=initial_states, start=start)
    return stats_frame(results, sort, top)


def draw(
    model: Model,
    sequences: Inputs,
    *,
    kind: str = "heatmap",
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    sequence: str | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> Figure:
    """A matplotlib Figure: ``heatmap`` (one sequence, values × layers) or ``saturation`` (all sequences).
    ``start`` feeds ``sequences`` to that layer (``--from``)."""
    from . import plot

    if kind == "heatmap":
        return plot.trace_figure(model, sequences, layers=layers, gates=gates, units=units, sequence=sequence,
                                 options=options, stateful=stateful, initial_states=initial_states, start=start)
    if kind == "saturation":
        plot.require_matplotlib()
        results = compute_stats(model, sequences, layers=layers, options=options, stateful=stateful,
                                initial_states=initial_states, start=start)
        return plot.saturation_figure(results, title=f"{model.label}: gate saturation")
    raise ValueError(f"unknown plot kind {kind!r} (heatmap or saturation)")


def save_figure(figure: Figure, stream: BinaryIO, fmt: str, dpi: float = 100) -> None:
    """Write a Figure to a binary stream as png, svg or pdf (Agg canvas; no dates, so reproducible)."""
    from . import plot

    plot.save_figure(figure, stream, fmt, dpi)


def plot_trace(
    model: Model,
    x: Any,
    path: str | None = None,
    *,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    sequence: str | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    dpi: float = 100,
) -> Figure:
    """Heatmaps (units × t) of i, f, c, o, cell, hidden per layer for one sequence of ``x``.

    Returns the matplotlib Figure; with ``path`` (``.png``, ``.svg`` or
    ``.pdf``) also writes it there, atomically.  Needs matplotlib
    (``pip install 'lstm-inspect[plot]'``).
    """
    options = options or ReplayOptions()
    figure = draw(model, _model_sequences(model, x, options), kind="heatmap", layers=layers, gates=gates, units=units,
                  sequence=sequence, options=options, stateful=stateful, initial_states=initial_states)
    if path is not None:
        _save_to(figure, path, dpi)
    return figure


def plot_saturation(
    model: Model,
    x: Any,
    path: str | None = None,
    *,
    layers: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    dpi: float = 100,
) -> Figure:
    """The left- vs right-saturation scatter (one point per unit and gate, one panel per layer).

    Returns the matplotlib Figure; with ``path`` also writes it there.
    """
    options = options or ReplayOptions()
    figure = draw(model, _model_sequences(model, x, options), kind="saturation", layers=layers, options=options,
                  stateful=stateful, initial_states=initial_states)
    if path is not None:
        _save_to(figure, path, dpi)
    return figure


def _save_to(figure: Figure, path: str, dpi: float) -> None:
    from .plot import format_for
    from .writers import open_output

    fmt = format_for(path)
    with open_output(path) as stream:
        save_figure(figure, stream, fmt, dpi)


# ------------------------------------------------------------------ report and code


def write_report(
    model: Model,
    x: Any,
    path: str | None = None,
    *,
    layers: Sequence[str] | None = None,
    vocab: Mapping[int, str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    max_sequences: int = 20,
) -> str:
    """The interactive HTML report of ``x`` (what ``lstm-inspect report`` writes), as a string;
    with ``path`` also written there, atomically.  ``vocab``: token id -> text for an Embedding
    input.  Needs plotly (``pip install 'lstm-inspect[report]'``)."""
    from .report import build_report
    from .writers import open_output

    options = options or ReplayOptions()
    page = build_report(model, _model_sequences(model, x, options), layers=layers, vocab=vocab, options=options,
                        stateful=stateful, initial_states=initial_states, max_sequences=max_sequences)
    if path is not None:
        with open_output(path) as stream:
            stream.write(page.encode("utf-8"))
    return page


def replay_code(model: Model, *, weights_out: str | None = None, hard_sigmoid: str | None = None
                ) -> GeneratedCode:
    """The standalone NumPy replay script of ``model`` (what ``lstm-inspect code`` writes): a
    ``GeneratedCode`` with ``.source`` and, for ``weights_out``, the ``.arrays`` to save there."""
    from .codegen import generate_code

    return generate_code(model, weights_out=weights_out, hard_sigmoid=hard_sigmoid)
