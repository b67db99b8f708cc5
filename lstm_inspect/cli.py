"""The ``lstm-inspect`` command line: parse options, call the API, pick a writer.

Exit status: 0 success; 1 a ``verify`` mismatch; 2 a usage error or a bad
model/input file (one line on stderr, no traceback); 3 an internal error
(one line, rerun with --debug for the traceback).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

import click

from . import __version__
from .errors import ExitStatus, Interrupted, LstmInspectError

INTERNAL_ERROR = ExitStatus.INTERNAL


class VerifyMismatch(Exception):
    """``verify`` found a difference above the tolerance: exit status 1."""


class PipeClosed(Exception):
    """The reader of stdout went away (``| head``): stop quietly with status 0.

    Raised instead of BrokenPipeError because Click turns an EPIPE OSError
    into exit status 1.
    """

TABLE_FORMATS = ["table", "csv", "json", "ndjson", "parquet"]
VERIFY_FORMATS = ["table", "csv", "json", "ndjson"]
PLOT_FORMATS = ["png", "svg", "pdf"]
EXPORT_FORMATS = ["npz", "json"]
INTERRUPTED = "Stopped by Ctrl-C, SIGTERM or SIGHUP: status 130, 143 or 129, and nothing written to -o FILE."


def epilog(formats: Sequence[str] | None, *, mismatch: bool = False, output: str | None = None) -> str:
    """A command's help epilog: its own exit statuses and output formats, nothing it refuses."""
    statuses = ["0 success" + (" (also when the only differences are float32 drift)" if mismatch else "")]
    if mismatch:
        statuses.append("1 verify found a mismatch")
    statuses += ["2 usage or input error", "3 internal error (rerun with --debug for the traceback)"]
    lines = ["\b", f"Exit status: {', '.join(statuses)}.", INTERRUPTED]
    if output is not None:
        lines.append(output)
    elif formats:
        lines.append(f"Output: a table on a terminal, CSV when piped; --format {'|'.join(f for f in formats if f != 'table')}.")
    return "\n".join(lines) + "\n"


EPILOG = epilog(None, mismatch=True)


# ------------------------------------------------------------------ option types


class UnitsType(click.ParamType):
    """``0,3-5`` -> [0, 3, 4, 5]."""

    name = "units"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        units: list[int] = []
        try:
            for part in str(value).split(","):
                part = part.strip()
                if not part:
                    continue
                if "-" in part:
                    lo, hi = (int(p) for p in part.split("-", 1))
                    if hi < lo or lo < 0:
                        raise ValueError
                    units.extend(range(lo, hi + 1))
                else:
                    unit = int(part)
                    if unit < 0:
                        raise ValueError
                    units.append(unit)
        except ValueError:
            self.fail(f"'{value}' is not a list of units like 0,3-5", param, ctx)
        if not units:
            self.fail("no units given", param, ctx)
        return sorted(set(units))


class PositionType(click.ParamType):
    """``3,4`` -> (3, 4): a position in a convolutional layer's maps (x; y,x; z,y,x)."""

    name = "position"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            position = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"'{value}' is not a position like 3,4 (y,x)", param, ctx)
        if not 1 <= len(position) <= 3 or min(position) < 0:
            self.fail(f"'{value}' is not a position like 3,4 (1 to 3 coordinates from 0)", param, ctx)
        return position


class NamesType(click.ParamType):
    """``i,f`` -> ["i", "f"]."""

    name = "list"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        names = [part.strip() for part in str(value).split(",") if part.strip()]
        if not names:
            self.fail("empty list", param, ctx)
        return names


class AliasOption(click.Option):
    """An option that also answers to older spellings (``aliases``), which --help does not show."""

    def __init__(self, *args, aliases: Sequence[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = tuple(aliases)

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, [name for name in self.opts if name not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def _merged_names(ctx, param, value):
    from .selection import merge_names

    return merge_names(value)


def _merged_units(ctx, param, value):
    if not value:
        return None
    return sorted({unit for units in value for unit in units})


def layer_option(help_text: str = "Only these recurrent layers (comma list, repeatable; a Bidirectional's name selects both directions)."):
    return click.option("--layer", "layer_names", multiple=True, metavar="NAME[,NAME]", callback=_merged_names,
                        help=help_text)


def gates_option(help_text: str):
    return click.option("--gates", "--gate", "gates", cls=AliasOption, aliases=("--gate",), multiple=True,
                        type=NamesType(), metavar="i,f", callback=_merged_names, help=help_text)


def units_option(help_text: str = "Only these units (comma list of numbers and ranges, repeatable)."):
    return click.option("--units", "units", multiple=True, type=UnitsType(), metavar="0,3-5", callback=_merged_units,
                        help=help_text)


def output_options(formats: Sequence[str]):
    def decorator(fn):
        fn = click.option(
            "-o", "--output", metavar="FILE", default=None,
            help="Write to FILE (atomically) instead of stdout; '-' is stdout.",
        )(fn)
        fn = click.option(
            "-f", "--format", "fmt", type=click.Choice(list(formats)), default=None,
            help="Output format. Default: table on a terminal, csv when piped (or by the -o extension).",
        )(fn)
        return fn

    return decorator


def model_options(fn):
    """The options that say how to read MODEL."""
    return click.option(
        "--config", "config_path", default=None, metavar="FILE",
        help="The model's architecture as model.to_json() wrote it (Keras 1, 2, tf.keras or 3), for a weights-only MODEL.",
    )(fn)


def input_options(fn):
    options = [
        click.option("--from", "start", default=None, metavar="LAYER", help="Feed INPUT straight to LAYER (its input: (T, F) rows or an .npy of its shape) and replay from there: a way past layers that cannot be replayed."),
        click.option("--header/--no-header", default=None, help="The CSV's first row is a header (default: detect)."),
        click.option("--columns", type=NamesType(), default=None, metavar="A,B,C", help="Feature columns to use, in order (names or 1-based numbers)."),
        click.option("--sequence-column", default=None, metavar="NAME", help="Column whose value splits the rows into sequences."),
        click.option("--delimiter", default=None, metavar="CHAR", help="CSV field separator: a character, 'tab' or 'whitespace' (default: detected from the first lines: comma, tab, semicolon, pipe or whitespace)."),
        click.option("--sequence-length", type=click.IntRange(min=1), default=None, metavar="K", help="Cut the input into consecutive sequences of K steps (with --stateful: a stateful model fed K steps per call)."),
        click.option("--stateful/--no-stateful", "stateful", default=None, help="Carry the state from one sequence to the next, or never. Default: as the model says (a stateful model with a fixed batch shape (B, T, F) is fed samples of T steps, as Keras' predict does)."),
        click.option("--initial-state", "initial_state", default=None, metavar="FILE", help="h0 (and c0) per layer: .npz with keys '<layer>/h', '<layer>/c', or JSON {layer: {h: [...], c: [...]}}."),
        click.option("--hard-sigmoid", type=click.Choice(["keras2", "keras3"]), default=None, help="hard_sigmoid definition (default: that of the Keras version that saved the file)."),
        click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True, help="Numeric type of the replay."),
        click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N", help="Threads that step a batch of sequences (default: up to the CPUs, when the batch is wide enough to gain)."),
        click.option("--activation", "assume_activation", default=None, metavar="NAME", help="Activation to assume where the file does not record it (weights-only files)."),
        click.option("--recurrent-activation", "assume_recurrent_activation", default=None, metavar="NAME", help="Recurrent activation to assume where the file does not record it."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def cluster_options(fn):
    """Where a dataset is replayed: here, or on Dask (``lstm-inspect[dask]``)."""
    options = [
        click.option("--scheduler", default=None, metavar="ADDRESS", help="Run on this dask.distributed scheduler (tcp://host:8786); the workers must reach INPUT and -o DIR/."),
        click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N", help="Run on a local Dask cluster of N worker processes."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# ------------------------------------------------------------------ group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="lstm-inspect")
@click.option("--debug", is_flag=True, help="Show the full traceback of an internal error.")
def cli(debug: bool) -> None:
    """Label the weights of saved Keras LSTM/GRU/SimpleRNN models by gate and unit,
    and trace every gate at every timestep, without TensorFlow.

    \b
      lstm-inspect layers model.h5
      lstm-inspect weights model.keras --layer lstm --gates f
      lstm-inspect trace model.h5 input.csv | head
      cat input.csv | lstm-inspect trace model.keras - --units 0-3 --gates i,f,o
      lstm-inspect predict model.keras input.csv
    """


# ------------------------------------------------------------------ commands


@cli.command(epilog=epilog(TABLE_FORMATS))
@click.argument("model_path", metavar="MODEL")
@model_options
@output_options(TABLE_FORMATS)
def layers(model_path: str, config_path: str | None, fmt: str | None, output: str | None) -> None:
    """One row per layer: class, units, activations, flags, parameters, weight shapes.

    \b
      lstm-inspect layers model.h5
      lstm-inspect layers model.keras --format json
    """
    from . import api
    from .frames import Block

    model = _load(model_path, config_path)
    model.recurrent_layers()  # check the recurrent weights against their config, as every command does
    rows = api.layer_rows(model)
    columns = list(rows[0].keys()) if rows else ["name"]
    title = f"{model.label}: {model.graph.class_name} saved by Keras {model.keras_version or 'unknown'}"
    block = Block(columns, [_object_column([row[c] for row in rows]) for c in columns])
    _emit(fmt, output, columns, [block] if rows else [], [model_path],
          table=lambda console: _views().render_layers(rows, console, title))


@cli.command(epilog=epilog(TABLE_FORMATS))
@click.argument("model_path", metavar="MODEL")
@model_options
@layer_option()
@gates_option("Only these gates: i, f, c, o (LSTM); z, r, c (GRU); h (SimpleRNN). Comma list, repeatable.")
@click.option("--values", "show_values", is_flag=True, help="In the table view, print every gate's full matrix with its row labels.")
@output_options(TABLE_FORMATS)
def weights(model_path: str, config_path: str | None, layer_names, gates, show_values: bool, fmt: str | None, output: str | None) -> None:
    """Every weight of every recurrent layer, labelled by tensor, gate, unit and source row.

    CSV columns: layer,tensor,gate,unit,source,value,path,column,row — one row
    per value. `source` is the input feature (kernel) or previous hidden unit
    (recurrent_kernel) feeding that unit, empty for biases; path, column and
    row locate the value in the file.

    \b
      lstm-inspect weights model.h5
      lstm-inspect weights model.keras --layer lstm --gates f --values
      lstm-inspect weights model.h5 --format csv | awk -F, '$3=="f"'
    """
    from .frames import weight_blocks, weight_columns
    from .selection import check_gates
    from .weights import label_weights

    model = _load(model_path, config_path)
    gates = check_gates(model.select_recurrent(layer_names), gates, values=False)
    blocks = list(label_weights(model, layer_names, gates))
    columns = weight_columns(blocks)
    _emit(fmt, output, columns, weight_blocks(blocks, with_taps=len(columns) > 9), [model_path],
          table=lambda console: _views().render_weights(model, blocks, console, show_values))


@cli.command(epilog=epilog((*TABLE_FORMATS, "lstmvis")))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@layer_option()
@units_option()
@gates_option("Only these columns (i,f,c,o,cell,hidden; z,r for GRU). Comma list, repeatable.")
@click.option("--pre-activation", is_flag=True, help="Also write the pre-activations z_i,z_f,z_c,z_o.")
@click.option("--wide", is_flag=True, help="One row per (sequence, layer, t) with columns i_0..i_{u-1}, f_*, ...")
@click.option("--position", type=PositionType(), default=None, metavar="Y,X", help="ConvLSTM layers: only the maps' values at this position (x; y,x; z,y,x).")
@click.option("--reduce", type=click.Choice(["mean", "max"]), default=None, help="ConvLSTM layers: each filter's mean or max over all positions, instead of one row per position.")
@click.option("--vocab", "vocab_path", default=None, metavar="FILE", help="--format lstmvis: token texts for the words file (a JSON list or dict, or one token per line).")
@input_options
@cluster_options
@output_options((*TABLE_FORMATS, "lstmvis"))
def trace(model_path, config_path, input_paths, layer_names, units, gates, pre_activation, wide, position, reduce, fmt,
          output, vocab_path, **input_kw) -> None:
    """Replay INPUT through the model and write i, f, c, o, cell and hidden for every step and unit.

    INPUT is a CSV (rows are timesteps, columns features; '-' reads stdin), or
    a .npy/.npz array of shape (T, F) or (N, T, F). CSV columns:
    sequence,layer,t,unit,i,f,c,o,cell,hidden — `t` is the input row consumed
    at that step (descending for go_backwards layers).

    \b
      lstm-inspect trace model.h5 input.csv
      lstm-inspect trace model.keras input.csv --layer lstm --units 0-3 --gates i,f,o
      cat input.csv | lstm-inspect trace model.keras - | head
      lstm-inspect trace model.h5 data.csv --sequence-column id --stateful -o trace.csv
      lstm-inspect trace model.h5 'logs/*.parquet' --sequence-column id --workers 2 -o trace/

    INPUT may be a dataset: a folder, a glob or a URL of CSV, Parquet or .npy
    files, read one partition (file) at a time, for a model with one input
    (or the layer of --from; a model of several inputs takes files). -o DIR/
    writes a partitioned Parquet dataset, one part per partition; --workers N
    or --scheduler ADDRESS replays the partitions on Dask (needs
    lstm-inspect[dask]).
    """
    import itertools

    from .engine import compile_model
    from .frames import focus_positions, long_blocks, trace_columns, wide_blocks, wide_columns
    from .tracing import trace_blocks

    model = _load(model_path, config_path)
    # -o DIR with --format lstmvis is LSTMVis' folder, not a partitioned dataset
    on_dataset = _dataset_setup(model, input_paths, input_kw, None if fmt == "lstmvis" else output, pre_activation)
    if on_dataset is None:
        options, inputs, states = _replay_setup(model, input_paths, input_kw, pre_activation)
    else:
        options = on_dataset[1].options
    selected = model.select_recurrent(layer_names)
    program = compile_model(model, options, upto=[layer.name for layer in selected], start=input_kw["start"])
    try:
        spec = trace_columns(selected, gates=gates, pre_activation=pre_activation, masked=program.may_mask, units=units,
                             positions_reduced=position is not None or reduce is not None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _check_units(selected, units)
    if fmt == "lstmvis":  # a folder of files for LSTMVis (lstm_inspect.lstmvis)
        if on_dataset is not None:
            raise click.UsageError("--format lstmvis takes INPUT files, not a dataset (a folder, glob or URL) "
                                   "or --workers/--scheduler")
        _write_lstmvis(output, model, inputs, selected, program, gates, vocab_path, options, input_kw, states)
        return
    if on_dataset is not None:
        blocks = _trace_dataset(model, *on_dataset, selected, spec, wide, position, reduce, fmt, output, input_kw,
                                [model_path, config_path, *input_paths, input_kw["initial_state"]])
        if blocks is None:
            return  # written as a partitioned Parquet dataset
    else:
        blocks = trace_blocks(model, inputs, layers=[layer.name for layer in selected], options=options,
                              initial_states=states, program=program)
        blocks = focus_positions(blocks, position, reduce)
    # Replay the first chunk before writing anything, so that input errors found by the
    # replay (feature count, token ids) leave stdout empty, as `predict` does.
    first = next(blocks, None)
    blocks = itertools.chain([] if first is None else [first], blocks)
    if wide:
        columns = wide_columns(selected, spec)
        rows = wide_blocks(blocks, selected, spec, options.dtype)
    else:
        columns = spec.long_columns
        rows = long_blocks(blocks, spec, options.dtype)
    _emit(fmt, output, columns, rows, [model_path, config_path, *input_paths, input_kw["initial_state"]],
          table=lambda console: _views().render_trace(focus_positions(blocks, None, "mean"), spec, console))


@cli.command(epilog=epilog(TABLE_FORMATS))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@input_options
@cluster_options
@output_options(TABLE_FORMATS)
def predict(model_path, config_path, input_paths, fmt, output, **input_kw) -> None:
    """The model's output for INPUT, computed in NumPy (what model.predict returns).

    One row per sequence, or per timestep for sequence outputs: columns
    sequence,[t,]y_0..y_k. A stateful model with a fixed batch shape (B, T, F)
    gives one row per sample of T steps, numbered as model.predict's rows.

    \b
      lstm-inspect predict model.keras input.csv
      lstm-inspect predict model.h5 batch.npy --format json
      lstm-inspect predict model.keras 'data/*.npy' --workers 2 -o predictions/

    INPUT may be a dataset (a folder, glob or URL of CSV, Parquet or .npy
    files) for a model with one input; -o DIR/ writes a partitioned Parquet
    dataset; --workers N or --scheduler ADDRESS runs on Dask (see trace --help).
    """
    from .frames import predict_block, predict_columns
    from .tracing import predict_batches

    model = _load(model_path, config_path)
    on_dataset = _dataset_setup(model, input_paths, input_kw, output)
    if on_dataset is not None:
        _predict_dataset(model, *on_dataset, fmt, output, input_kw,
                         [model_path, config_path, *input_paths, input_kw["initial_state"]])
        return
    options, inputs, states = _replay_setup(model, input_paths, input_kw, False)
    batches = predict_batches(model, inputs, options=options, initial_states=states, start=input_kw["start"])
    first_ids, first_outputs = next(batches)
    names = [edge.layer for edge in model.graph.outputs]
    columns = predict_columns(first_outputs, names)

    def blocks():
        yield predict_block(first_ids, first_outputs, names)
        for ids, outputs in batches:
            yield predict_block(ids, outputs, names)

    def table(console):
        rows = []
        for block in blocks():
            data = [_expand(col, block.rows) for col in block.data]
            rows.extend(zip(*data))
        _views().render_rows(columns, rows, console, title=f"{model.label}: predict")

    _emit(fmt, output, columns, blocks(), [model_path, config_path, *input_paths, input_kw["initial_state"]], table=table)


@cli.command(epilog=epilog(VERIFY_FORMATS, mismatch=True))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@click.option("--tolerance", type=float, default=1e-5, show_default=True, help="Largest accepted absolute difference.")
@input_options
@output_options(VERIFY_FORMATS)
def verify(model_path, config_path, input_paths, tolerance, fmt, output, **input_kw) -> None:
    """Compare the NumPy replay of every layer with Keras' own outputs (needs TensorFlow).

    Loads MODEL with the Keras that fits it (Keras 3, or tf-keras for Keras 1/2
    files) and reports, per layer, the largest absolute difference on INPUT.
    Exit status 1 if any exceeds --tolerance, unless the difference is float32
    drift: a layer over the tolerance is replayed again in float64, and when
    Keras' float32 result and the float32 replay are both about as far from
    it, the model amplifies rounding and the status is `drift` (exit 0).
    Where Keras cannot load the file (or the model has a Lambda layer, whose
    stored code Keras would run), the replay is reported alone.

    \b
      lstm-inspect verify model.h5 input.csv
      lstm-inspect verify model.keras input.csv --tolerance 1e-6 --format json
    """
    from . import verify as verifying
    from .frames import Block

    model = _load(model_path, config_path)
    options, inputs, _ = _replay_setup(model, input_paths, input_kw, False)
    result = verifying.verify(model, inputs, tolerance=tolerance, options=options, start=input_kw["start"])
    rows = verifying.result_rows(result)
    columns = verifying.VERIFY_COLUMNS
    block = Block(columns, [_object_column([row[c] for row in rows]) for c in columns])
    _emit(fmt, output, columns, [block] if rows else [], [model_path, config_path, *input_paths, input_kw["initial_state"]],
          table=lambda console: _views().render_layers(rows, console, verifying.summary(result)))
    click.echo(verifying.summary(result), err=True)
    if result.drifts:
        click.echo(verifying.DRIFT_MEANING, err=True)
    if result.mismatches:
        raise VerifyMismatch()


@cli.command(epilog=epilog(TABLE_FORMATS))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@layer_option()
@gates_option("Only these values (i,f,c,o,cell,hidden; z,r for GRU). Comma list, repeatable.")
@click.option("--sort", type=click.Choice(["unit", "saturation", "variability"]), default="unit", show_default=True,
              help="Order the units of each layer and gate: by number, most saturated first, or largest std first.")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="K", help="Only the first K units of each layer and gate (after --sort).")
@input_options
@cluster_options
@output_options(TABLE_FORMATS)
def stats(model_path, config_path, input_paths, layer_names, gates, sort, top, fmt, output, **input_kw) -> None:
    """Per layer, gate and unit over all steps of INPUT: mean, std, min, max, and how often saturated.

    CSV columns: layer,gate,unit,steps,mean,std,min,max,left_saturated,
    right_saturated,saturation_rank,variability_rank. left/right_saturated are
    the fractions of steps below 10 % / above 90 % of the activation's range
    (sigmoid gates: < 0.1, > 0.9, as Karpathy et al. 2015; tanh candidate c:
    < -0.8, > 0.8, lstm-inspect's own extension); empty for cell and hidden. Masked steps are left out. Rank 1 is
    the most saturated (left + right) / most variable (std) unit.

    \b
      lstm-inspect stats model.h5 input.csv
      lstm-inspect stats model.keras input.csv --sort saturation --top 3
      lstm-inspect stats model.h5 data.csv --gates f --format json
      lstm-inspect stats model.h5 'data/*.parquet' --sequence-column id --workers 2

    INPUT may be a dataset (a folder, glob or URL of CSV, Parquet or .npy
    files) for a model with one input, read one partition (file) at a time;
    --workers N or --scheduler ADDRESS summarises the partitions on Dask and
    merges their running sums.
    """
    from .stats import STATS_COLUMNS, compute_stats, stats_blocks

    model = _load(model_path, config_path)
    on_dataset = _dataset_setup(model, input_paths, input_kw, None)
    if on_dataset is None:
        options, inputs, states = _replay_setup(model, input_paths, input_kw, False)
        results = compute_stats(model, inputs, layers=layer_names, gates=gates, options=options, initial_states=states,
                                start=input_kw["start"])
    else:
        options = on_dataset[1].options
        results = _stats_dataset(model, *on_dataset, layer_names, gates, input_kw)
    _emit(fmt, output, STATS_COLUMNS, stats_blocks(results, sort, top, options.dtype), [model_path, config_path, *input_paths, input_kw["initial_state"]],
          table=lambda console: _views().render_stats(results, console, sort, top))


@cli.command(epilog=epilog(PLOT_FORMATS, output="Output: a picture, -o FILE.png|FILE.svg|FILE.pdf (or --format png|svg|pdf)."))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="FILE", help="The picture: FILE.png, FILE.svg or FILE.pdf (written atomically).")
@click.option("-f", "--format", "fmt", type=click.Choice(PLOT_FORMATS), default=None, help="Picture format (default: from the -o extension).")
@click.option("--kind", type=click.Choice(["heatmap", "saturation"]), default="heatmap", show_default=True,
              help="heatmap: each value over time × units; saturation: left- vs right-saturated fraction per unit and gate.")
@layer_option()
@gates_option("heatmap: only these values (i,f,c,o,cell,hidden; z,r). Comma list, repeatable.")
@units_option("heatmap: only these units (comma list, repeatable).")
@click.option("--sequence", "sequence_id", default=None, metavar="ID", help="heatmap: the sequence to draw (default: the first).")
@click.option("--dpi", type=click.IntRange(min=20, max=600), default=100, show_default=True, help="Resolution of a PNG.")
@input_options
def plot(model_path, config_path, input_paths, output, fmt, kind, layer_names, gates, units, sequence_id, dpi, **input_kw) -> None:
    """Draw the trace of INPUT: heatmaps of every gate over time, or the saturation scatter.

    Needs matplotlib: pip install 'lstm-inspect[plot]'. With --kind saturation,
    one point per unit and gate (i, f, o; z, r) at x = fraction of steps below
    0.1, y = fraction above 0.9, over all sequences (Karpathy et al. 2015).

    \b
      lstm-inspect plot model.keras input.csv -o trace.png
      lstm-inspect plot model.h5 input.csv -o gates.svg --layer lstm --gates i,f,o --units 0-15
      lstm-inspect plot model.h5 data.csv --kind saturation -o saturation.pdf
    """
    from .plot import format_for, require_matplotlib

    fmt = format_for(output, fmt)
    require_matplotlib()
    model = _load(model_path, config_path)
    options, inputs, states = _replay_setup(model, input_paths, input_kw, False)
    figure = _api().draw(model, inputs, kind=kind, layers=layer_names, gates=gates, units=units,
                         sequence=sequence_id, options=options, initial_states=states, start=input_kw["start"])
    _save_binary(output, [model_path, config_path, *input_paths, input_kw["initial_state"]], lambda stream: _api().save_figure(figure, stream, fmt, dpi))


@cli.command(epilog=epilog(EXPORT_FORMATS, output="Output: arrays, --format npz|json (default from the -o extension, else npz)."))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.option("--layout", type=click.Choice(["gates", "pytorch", "onnx"]), default="gates", show_default=True,
              help="gates: <layer>/kernel_i...; pytorch: nn.LSTM/GRU/RNN state-dict arrays; onnx: W, R, B of the ONNX operator.")
@layer_option()
@click.option("-o", "--output", metavar="FILE", default=None, help="Write to FILE.npz or FILE.json (atomically); default stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None, help="npz or json (arrays as nested lists); default from the -o extension, else npz.")
@click.option("--hard-sigmoid", type=click.Choice(["keras2", "keras3"]), default=None, help="hard_sigmoid definition recorded for onnx (default: that of the saving Keras).")
@click.option("--activation", "assume_activation", default=None, metavar="NAME", help="Activation to assume where the file does not record it (weights-only files).")
@click.option("--recurrent-activation", "assume_recurrent_activation", default=None, metavar="NAME", help="Recurrent activation to assume where the file does not record it.")
def export(model_path, config_path, layout, layer_names, output, fmt, hard_sigmoid, assume_activation, assume_recurrent_activation) -> None:
    """Write the recurrent weights in another layout: gate by gate, PyTorch or ONNX.

    Array names: gates `<layer>/kernel_i`, `recurrent_kernel_i`, `bias_i`, ...;
    pytorch `<layer>/weight_ih_l0` (4U×F, gates i,f,g,o), `weight_hh_l0`,
    `bias_ih_l0` (the Keras bias), `bias_hh_l0` (zeros), `_reverse` for a
    Bidirectional's backward direction; onnx `<layer>/W`, `R`, `B` (gates
    i,o,f,c; GRU z,r,h). `__metadata__` (JSON) describes every layer, with the
    ONNX node attributes.

    \b
      lstm-inspect export model.h5 --layout pytorch -o weights.npz
      lstm-inspect export model.keras --layout onnx -o weights.json
      lstm-inspect export model.h5 --format json | jq '."lstm/bias_f"'
    """
    model = _load(model_path, config_path)
    fmt = fmt or ("json" if (output or "").lower().endswith(".json") else "npz")
    exported = _api().export_weights(model, layout, layer_names, hard_sigmoid=hard_sigmoid,
                                     assume_activation=assume_activation,
                                     assume_recurrent_activation=assume_recurrent_activation)
    _save_binary(output, [model_path], lambda stream: exported.write(stream, fmt), binary=fmt == "npz")


# ------------------------------------------------------------------ code (lstm_inspect.codegen)


@cli.command(epilog=epilog(None, output="Output: a Python script, to stdout or -o FILE.py."))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.option("--weights-out", default=None, metavar="FILE.npz", help="Also write the weights to FILE.npz, which the script then reads (no h5py needed; required for cuDNN and Keras 1 layouts).")
@click.option("--hard-sigmoid", type=click.Choice(["keras2", "keras3"]), default=None, help="hard_sigmoid definition (default: that of the Keras version that saved the file).")
@click.option("-o", "--output", metavar="FILE", default=None, help="Write the script to FILE (atomically) instead of stdout.")
def code(model_path, config_path, weights_out, hard_sigmoid, output) -> None:
    """Write a standalone NumPy script that replays MODEL, step loop and gates written out.

    `python replay.py INPUT.csv` prints what `predict` prints, `--trace` what
    `trace` prints; `import replay; replay.run(x)` returns the output and every
    step's values. Layers it cannot write out are refused by name.

    \b
      lstm-inspect code model.keras > replay.py
      lstm-inspect code model.h5 --weights-out weights.npz -o replay.py
    """
    from .codegen import generate_code, write_weights

    model = _load(model_path, config_path)
    if weights_out is not None and not weights_out.endswith(".npz"):
        raise click.BadParameter("the file name must end in .npz", param_hint="--weights-out")
    generated = generate_code(model, weights_out=weights_out, hard_sigmoid=hard_sigmoid)
    if weights_out is not None:
        _save_binary(weights_out, [model_path, config_path], lambda stream: write_weights(generated.arrays, stream))
    _save_binary(output, [model_path, config_path, weights_out], lambda stream: stream.write(generated.source.encode()),
                 binary=False)


# ------------------------------------------------------------------ report (lstm_inspect.report)


@cli.command(epilog=epilog(None, output="Output: one HTML file, -o FILE.html."))
@click.argument("model_path", metavar="MODEL")
@model_options
@click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="FILE.html", help="The report: one HTML file that works offline (written atomically).")
@click.option("--vocab", "vocab_path", default=None, metavar="FILE", help="Token texts for an Embedding input: a JSON list or dict, or one token per line.")
@click.option("--layer", "layer_names", multiple=True, metavar="NAME", help="Only this recurrent layer (repeatable).")
@click.option("--max-sequences", type=click.IntRange(min=1), default=20, show_default=True, metavar="N", help="Show the first N sequences (the saturation scatter counts all).")
@input_options
def report(model_path, config_path, input_paths, output, vocab_path, layer_names, max_sequences, **input_kw) -> None:
    """Write an interactive HTML report of INPUT's trace: heatmaps, units, saturation, weights, pattern search.

    Needs plotly: pip install 'lstm-inspect[report]'. The file holds everything
    (plotly.js included) and opens offline; a long input is shown downsampled,
    with a note, so that it stays under about 20 MB.

    \b
      lstm-inspect report model.keras input.csv -o report.html
      lstm-inspect report char_model.h5 text_ids.csv --vocab vocab.json -o report.html
    """
    from .report import build_report, page_size_text, require_plotly
    from .vocab import read_vocab

    require_plotly()
    model = _load(model_path, config_path)
    options, inputs, states = _replay_setup(model, input_paths, input_kw, False)
    vocab = read_vocab(vocab_path) if vocab_path else None
    page = build_report(model, inputs, layers=list(layer_names) or None, vocab=vocab, options=options,
                        stateful=input_kw["stateful"], initial_states=states, max_sequences=max_sequences,
                        start=input_kw["start"])
    _save_binary(output, [model_path, config_path, *input_paths, vocab_path, input_kw["initial_state"]],
                 lambda stream: stream.write(page.encode("utf-8")), binary=False)
    click.echo(f"lstm-inspect: wrote {output} ({page_size_text(page)})", err=True)


def _write_lstmvis(output, model, inputs, selected, program, gates, vocab_path, options, input_kw, states) -> None:
    from .lstmvis import write_lstmvis
    from .vocab import read_vocab

    if output is None or output == "-":
        raise click.UsageError("--format lstmvis writes a folder of files: give -o DIR")
    written = write_lstmvis(output, model, inputs, selected, program=program, values=gates,
                            vocab=read_vocab(vocab_path) if vocab_path else None, options=options,
                            stateful=input_kw["stateful"], initial_states=states)
    click.echo(f"lstm-inspect: wrote {', '.join(written)}", err=True)


# ------------------------------------------------------------------ helpers


def _api():
    from . import api

    return api


def _save_binary(output, protect, write, binary: bool = True) -> None:
    """Run ``write(stream)`` on stdout or on ``output`` written atomically."""
    from .writers import open_output

    if binary and (output is None or output == "-") and sys.stdout.isatty():
        raise click.UsageError("this writes binary data: give -o FILE or redirect stdout")
    try:
        with open_output(output, protect=protect) as stream:
            write(stream)
    except BrokenPipeError:
        raise PipeClosed() from None


def _views():
    from . import views

    return views


def _load(path: str, config: str | None = None):
    from .model import load_model

    model = load_model(path, isolate=True, config=config)  # a file that crashes the HDF5 library is refused, not fatal
    for warning in model.warnings:
        _warn(warning)
    model.on_warning = _warn  # later warnings (from the replay) as they arise
    return model


def _warn(message: str) -> None:
    click.echo(f"lstm-inspect: warning: {message}", err=True)


def _note(message: str) -> None:
    click.echo(f"lstm-inspect: note: {message}", err=True)


def _notes_once():
    """A run's note handler that prints each note once (a dataset's partitions may give the same one)."""
    seen: set[str] = set()

    def handler(message: str) -> None:
        if message not in seen:
            seen.add(message)
            _note(message)

    return handler


def _replay_setup(model, input_paths: Sequence[str], kw: dict, pre_activation: bool):
    """(replay options, the inputs as given (an InputRequest), initial states) from the command's options."""
    from .inputs import read_initial_state, read_input
    from .tracing import InputRequest, name_inputs

    options = _replay_options(kw, pre_activation)
    from .notes import notes_to

    csv = _csv_options(kw)
    read_notes: list[str] = []  # said with the feed's plan, once the inputs passed every check
    with notes_to(read_notes.append):
        sequences = {name: read_input(path, csv, dtype=options.dtype)
                     for name, path in name_inputs(model, input_paths, kw["start"]).items()}
    request = InputRequest(sequences, stateful=kw["stateful"], sequence_length=kw["sequence_length"],
                           notes=tuple(read_notes))
    states = read_initial_state(kw["initial_state"]) if kw["initial_state"] else None
    return options, request, states


def _replay_options(kw: dict, pre_activation: bool):
    import numpy as np

    from .engine import ReplayOptions

    return ReplayOptions(
        dtype=np.float64 if kw["dtype"] == "float64" else np.float32,
        hard_sigmoid=kw["hard_sigmoid"],
        pre_activation=pre_activation,
        threads=kw["threads"],
        assume_activation=kw["assume_activation"],
        assume_recurrent_activation=kw["assume_recurrent_activation"],
    )


def _csv_options(kw: dict):
    from .inputs import CsvOptions

    return CsvOptions(
        header=kw["header"],
        columns=tuple(kw["columns"]) if kw["columns"] else None,
        sequence_column=kw["sequence_column"],
        delimiter=_delimiter(kw["delimiter"]),
    )


def _dataset_setup(model, input_paths: Sequence[str], kw: dict, output: str | None, pre_activation: bool = False):
    """For a dataset INPUT (a folder, glob or URL), --workers/--scheduler or -o DIR/: the
    dataset and how to replay it; None for ordinary inputs (read whole, as before).

    A dataset feeds a model with one input (or the one layer of --from): the
    partitions of several datasets could not be paired into samples.
    """
    from .datasets import ReadSettings, is_dataset, open_dataset
    from .inputs import read_initial_state
    from .partitions import Replay, check_initial_states, is_folder_output
    from .tracing import name_inputs

    distributed = kw["workers"] or kw["scheduler"]
    if not (distributed or is_folder_output(output) or any(is_dataset(_input_path(model, path, kw["start"]))
                                                            for path in input_paths)):
        return None
    needed = [kw["start"]] if kw["start"] else list(model.graph.inputs)
    if len(needed) > 1:
        raise click.UsageError(
            f"a dataset INPUT (a folder, glob or URL), --workers/--scheduler and -o DIR/ need a model with one input; "
            f"this one has {len(needed)} ({', '.join(needed)}): give its inputs as files")
    (path,) = name_inputs(model, input_paths, kw["start"]).values()
    if path == "-":
        raise click.UsageError("a dataset cannot be read from standard input")
    options = _replay_options(kw, pre_activation)
    settings = ReadSettings(_csv_options(kw), options.dtype, kw["sequence_length"])
    states = read_initial_state(kw["initial_state"]) if kw["initial_state"] else None
    check_initial_states(states)
    stateful = kw["stateful"]
    if stateful is None and kw["sequence_length"]:
        stateful = False  # as for a file: --sequence-length alone replays each piece from the initial state
    replay = Replay(options, stateful, states, kw["start"])
    return open_dataset(path, settings), replay


def _input_path(model, item: str, start: str | None) -> str:
    """An INPUT argument's path: ``NAME=PATH`` without ``NAME=`` when NAME is one of the model's inputs."""
    key, sep, path = item.partition("=")
    return path if sep and (key in model.graph.inputs or key == start) else item


def _cluster(kw: dict) -> dict:
    """The run_* keywords that say where a dataset is replayed, with progress on a terminal's stderr."""
    return {"scheduler": kw["scheduler"], "workers": kw["workers"], "progress": sys.stderr.isatty()}


def _trace_dataset(model, dataset, replay, selected, spec, wide, position, reduce, fmt, output, kw, protect):
    """Trace a dataset: written as a partitioned Parquet dataset (-o DIR/, here or on Dask), returning
    None; or the traced steps of every partition in turn, for the other formats."""
    from .frames import wide_columns
    from .partitions import TraceLayout, is_folder_output, run_trace, serial_trace

    columns = wide_columns(selected, spec) if wide else spec.long_columns
    layout = TraceLayout(tuple(layer.name for layer in selected), spec, wide,
                         tuple(position) if position is not None else None, reduce, tuple(columns))
    if is_folder_output(output):
        _check_folder_format(fmt)
        _dataset_written(run_trace(model, dataset, layout, replay, output, protect=protect, **_cluster(kw)))
        return None
    _no_cluster_without_folder(kw)
    return serial_trace(model, dataset, layout, replay)


def _predict_dataset(model, dataset, replay, fmt, output, kw, protect) -> None:
    """Predict over a dataset: a partitioned Parquet dataset (-o DIR/, here or on Dask), or rows in any format."""
    import itertools

    from .partitions import is_folder_output, run_predict, serial_predict

    if is_folder_output(output):
        _check_folder_format(fmt)
        _dataset_written(run_predict(model, dataset, replay, output, protect=protect, **_cluster(kw)))
        return
    _no_cluster_without_folder(kw)
    blocks = serial_predict(model, dataset, replay)
    first = next(blocks)  # a dataset holds at least one sequence
    columns = list(first.columns)
    rows = itertools.chain([first], blocks)

    def table(console):
        lines = []
        for block in rows:
            lines.extend(zip(*[_expand(column, block.rows) for column in block.data]))
        _views().render_rows(columns, lines, console, title=f"{model.label}: predict")

    _emit(fmt, output, columns, rows, protect, table=table)


def _stats_dataset(model, dataset, replay, layer_names, gates, kw):
    from .partitions import run_stats
    from .stats import plan_stats

    plan = plan_stats(model, layer_names, gates, replay.options)
    return run_stats(model, dataset, plan, replay, **_cluster(kw))


def _no_cluster_without_folder(kw: dict) -> None:
    if kw["workers"] or kw["scheduler"]:
        raise click.UsageError("--workers/--scheduler write a partitioned Parquet dataset: give -o DIR/")


def _check_folder_format(fmt: str | None) -> None:
    if fmt not in (None, "parquet"):
        raise click.UsageError(f"-o DIR/ writes a partitioned Parquet dataset; --format {fmt} writes one file: give -o FILE")


def _dataset_written(summary) -> None:
    click.echo(f"lstm-inspect: {summary.message()}", err=True)


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    from .inputs import WHITESPACE

    value = {"\\t": "\t", "tab": "\t", "TAB": "\t", "space": " ", "whitespace": WHITESPACE}.get(value, value)
    if value == WHITESPACE:
        return value
    if len(value) != 1:
        raise click.BadParameter("the delimiter must be one character (or 'tab', 'space', 'whitespace')", param_hint="--delimiter")
    if value in "\r\n\"":
        raise click.BadParameter("the delimiter cannot be a line break or the quote character", param_hint="--delimiter")
    return value


def _check_units(layers, units) -> None:
    if not units:
        return
    widest = max(layer.units for layer in layers)
    if max(units) >= widest:
        raise click.UsageError(f"--units: unit {max(units)} does not exist (the widest selected layer has {widest} units: 0..{widest - 1})")


def _object_column(values: list):
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _expand(column, rows: int):
    import numpy as np

    if isinstance(column, np.ndarray) and column.ndim:
        return [v.item() if hasattr(v, "item") else v for v in column]
    return [column] * rows


def _emit(fmt, output, columns, blocks, protect, table) -> None:
    """Write ``blocks`` in the chosen format, or call ``table(console)`` for the terminal view."""
    from .writers import check_parquet, open_output, resolve_format, write_blocks

    fmt = resolve_format(fmt, output)
    if fmt == "parquet":
        check_parquet()
        if (output is None or output == "-") and sys.stdout.isatty():
            raise click.UsageError("--format parquet writes binary data: give -o FILE or redirect stdout")
    try:
        _write(fmt, output, columns, blocks, protect, table, write_blocks, open_output)
    except BrokenPipeError:
        raise PipeClosed() from None


def _write(fmt, output, columns, blocks, protect, table, write_blocks, open_output) -> None:
    with open_output(output, protect=protect) as stream:
        if fmt == "table":
            import io

            text = io.TextIOWrapper(stream, encoding="utf-8", write_through=True)
            try:
                console = _views().console_for(text if output not in (None, "-") else sys.stdout,
                                               color=None if output in (None, "-") else False)
                table(console)
            finally:
                text.detach()
        else:
            write_blocks(blocks, columns, fmt, stream)


# ------------------------------------------------------------------ entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line per error, exit codes as documented."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    with _signals_interrupt():
        code = _run(args, debug)
    sys.exit(code)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _signals_interrupt():
    """Ctrl-C, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread, so that an
    ``-o`` file being written is removed and the run ends with one line and 128 + the signal.
    A second signal while the first is handled is ignored: the clean-up finishes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum, frame):
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {}
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run(args: list[str], debug: bool) -> int:
    import warnings

    from .notes import notes_to

    try:
        with warnings.catch_warnings(), notes_to(_notes_once()):
            # NumPy's "overflow encountered in dot" from weights that overflow float32: the
            # output shows the inf/NaN it made, and stderr carries lstm-inspect's own lines only.
            warnings.simplefilter("ignore", RuntimeWarning)
            cli.main(args=args, prog_name="lstm-inspect", standalone_mode=False)
        sys.stdout.flush()
        return ExitStatus.OK
    except Interrupted as exc:
        return _interrupted(exc.signum, exc.discarded)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # usage errors: one line too, pointing at --help
        if isinstance(exc, _NO_ARGS_IS_HELP):  # `lstm-inspect` alone: the help, as before
            exc.show()
        else:
            click.echo(f"lstm-inspect: error: {_one_line(exc)}", err=True)
        return ExitStatus.ERROR if exc.exit_code in (1, 2) else exc.exit_code
    except click.exceptions.Abort as exc:  # Click's own Ctrl-C (outside the main thread's handler)
        return _interrupted(2, getattr(exc.__cause__, "discarded", []))
    except LstmInspectError as exc:
        click.echo(f"lstm-inspect: error: {exc}", err=True)
        return ExitStatus.ERROR
    except VerifyMismatch:
        return ExitStatus.MISMATCH
    except (BrokenPipeError, PipeClosed):
        _silence_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt as exc:
        return _interrupted(2, getattr(exc, "discarded", []))
    except MemoryError:
        click.echo("lstm-inspect: error: out of memory (try a shorter input or --layer)", err=True)
        return ExitStatus.ERROR
    except Exception as exc:  # a bug: one line, and the traceback on request
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        click.echo(f"lstm-inspect: internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)", err=True)
        return INTERNAL_ERROR


def _interrupted(signum: int, discarded: Sequence[str]) -> int:
    """One line for a stopped run; the status a shell gives a process ended by the signal."""
    import signal

    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    text = f"lstm-inspect: interrupted by {name}"
    if discarded:
        text += f"; nothing written to {', '.join(discarded)}"
    try:
        click.echo(text, err=True)
    except (OSError, ValueError):  # the terminal went away (SIGHUP)
        pass
    return 128 + signum


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(exc: click.ClickException) -> str:
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        text += f" (see '{ctx.command_path} --help')"
    return text


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
