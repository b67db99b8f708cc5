"""The ``lstm-inspect`` command line: parse options, call the API, pick a writer.

Each command turns its options into arguments, calls one function of
``outputs`` (which returns the blocks it prints and their terminal view) and
hands the result to ``writers``.  Options shared by several commands are
declared once, below, as decorators; several of them arrive in the command
as one object (``model``, ``inputs``, ``replay``).  The group makes the one
:class:`~lstm_inspect.terminal.Terminal` of the run, which the commands pass
down.  Errors are turned into one line and an exit status in one place,
:func:`main`:

0 success; 1 a ``verify`` mismatch; 2 a usage error or a bad model/input file
(one line on stderr, no traceback); 3 an internal error (one line, rerun with
--debug for the traceback); 128 + the signal (130, 143, 129) for a run
stopped by Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .errors import SIGNAL_STATUS_BASE, ExitStatus, Interrupted, LstmInspectError, PipeClosed
from .terminal import Terminal

if TYPE_CHECKING:
    from .engine import ReplayOptions
    from .inputs import InputFiles
    from .model import Model
    from .outputs import Cluster

F = TypeVar("F", bound=Callable[..., Any])


class VerifyMismatch(Exception):
    """``verify`` found a difference above the tolerance: exit status 1."""


TABLE_FORMATS = ("table", "csv", "json", "ndjson", "parquet")
TRACE_FORMATS = (*TABLE_FORMATS, "lstmvis")
VERIFY_FORMATS = ("table", "csv", "json", "ndjson")
PLOT_FORMATS = ("png", "svg", "pdf")
EXPORT_FORMATS = ("npz", "json")
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


# ------------------------------------------------------------------ option types


class UnitsType(click.ParamType):
    """``0,3-5`` -> [0, 3, 4, 5]."""

    name = "units"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        """The sorted unit numbers; a usage error (status 2) for anything else."""
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

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        """The coordinates, 1 to 3 of them, from 0."""
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

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        """The non-empty names of a comma list."""
        if isinstance(value, list):
            return value
        names = [part.strip() for part in str(value).split(",") if part.strip()]
        if not names:
            self.fail("empty list", param, ctx)
        return names


class DelimiterType(click.ParamType):
    """``--delimiter``: one character, or ``tab``, ``space``, ``whitespace``."""

    name = "char"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str | None:
        """The delimiter as ``inputs`` takes it."""
        from .inputs import parse_delimiter

        try:
            return parse_delimiter(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AliasOption(click.Option):
    """An option that also answers to older spellings (``aliases``), which --help does not show."""

    def __init__(self, *args: Any, aliases: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = tuple(aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        """The help line, without the aliases."""
        shown, self.opts = self.opts, [name for name in self.opts if name not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


# ------------------------------------------------------------------ shared options


def _merged_names(ctx: click.Context, param: click.Parameter, value: Any) -> list[str] | None:
    from .selection import merge_names

    return merge_names(value)


def _merged_units(ctx: click.Context, param: click.Parameter, value: Any) -> list[int] | None:
    if not value:
        return None
    return sorted({unit for units in value for unit in units})


def _apply(fn: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Any:
    """Apply click decorators so that --help lists them in the order given."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def layer_option(fn: F) -> F:
    """``--layer NAME[,NAME]`` (repeatable) -> ``layers``: a list of names, or None for all."""
    return click.option("--layer", "layers", multiple=True, metavar="NAME[,NAME]", callback=_merged_names,
                        help="Only these recurrent layers (comma list, repeatable; a Bidirectional's name selects "
                             "both directions).")(fn)


def gates_option(help_text: str) -> Callable[[F], F]:
    """``--gates i,f`` (repeatable; ``--gate`` a hidden alias) -> ``gates``; the help says what the command takes."""
    return click.option("--gates", "--gate", "gates", cls=AliasOption, aliases=("--gate",), multiple=True,
                        type=NamesType(), metavar="i,f", callback=_merged_names, help=help_text)


def units_option(help_text: str = "Only these units (comma list of numbers and ranges, repeatable).") -> Callable[[F], F]:
    """``--units 0,3-5`` (repeatable) -> ``units``: sorted unit numbers, or None for all."""
    return click.option("--units", "units", multiple=True, type=UnitsType(), metavar="0,3-5", callback=_merged_units,
                        help=help_text)


def output_options(formats: Sequence[str], *, required: bool = False,
                   output_help: str = "Write to FILE (atomically) instead of stdout; '-' is stdout.",
                   format_help: str = "Output format. Default: table on a terminal, csv when piped (or by the -o extension).",
                   ) -> Callable[[F], F]:
    """``-f/--format`` (only ``formats``; none without formats) -> ``fmt``, and ``-o/--output FILE`` -> ``output``."""
    options = [click.option("-o", "--output", metavar="FILE", required=required, help=output_help)]
    if formats:
        options.append(click.option("-f", "--format", "fmt", type=click.Choice(list(formats)), default=None,
                                    help=format_help))
    return lambda fn: _apply(fn, options)


def vocab_option(help_text: str) -> Callable[[F], F]:
    """``--vocab FILE`` -> ``vocab_path``: token texts for an Embedding input."""
    return click.option("--vocab", "vocab_path", default=None, metavar="FILE", help=help_text)


def hard_sigmoid_option(fn: F) -> F:
    """``--hard-sigmoid keras2|keras3`` -> ``hard_sigmoid``: which definition of hard_sigmoid to replay."""
    return click.option("--hard-sigmoid", type=click.Choice(["keras2", "keras3"]), default=None,
                        help="hard_sigmoid definition (default: that of the Keras version that saved the file).")(fn)


def _npz_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.endswith(".npz"):
        raise click.BadParameter("the file name must end in .npz")
    return value


def model_argument(fn: F) -> F:
    """``MODEL`` and ``--config FILE`` -> ``model``: the loaded Model (its warnings on stderr)."""

    @functools.wraps(fn)
    def load(*args: Any, model_path: str, config_path: str | None, **kwargs: Any) -> Any:
        from .model import load_model

        terminal = _terminal()
        model = load_model(model_path, isolate=True, config=config_path)  # a file that crashes HDF5 is refused, not fatal
        for warning in model.warnings:
            terminal.warn(warning)
        model.on_warning = terminal.warn  # later warnings (from the replay) as they arise
        return fn(*args, model=model, **kwargs)

    return _apply(load, [
        click.argument("model_path", metavar="MODEL"),
        click.option("--config", "config_path", default=None, metavar="FILE",
                     help="The model's architecture as model.to_json() wrote it (Keras 1, 2, tf.keras or 3), for a "
                          "weights-only MODEL."),
    ])


def input_arguments(fn: F) -> F:
    """``INPUT...`` and how to read and feed it -> ``inputs``: an :class:`~lstm_inspect.inputs.InputFiles`."""

    @functools.wraps(fn)
    def collect(*args: Any, input_paths: Sequence[str], start: str | None, header: bool | None,
                columns: Sequence[str] | None, sequence_column: str | None, delimiter: str | None,
                sequence_length: int | None, stateful: bool | None, initial_state: str | None, **kwargs: Any) -> Any:
        from .inputs import CsvOptions, InputFiles

        csv = CsvOptions(header=header, columns=tuple(columns) if columns else None, sequence_column=sequence_column,
                         delimiter=delimiter)
        inputs = InputFiles(tuple(input_paths), csv, start=start, stateful=stateful, sequence_length=sequence_length,
                            initial_state=initial_state)
        return fn(*args, inputs=inputs, **kwargs)

    return _apply(collect, [
        click.argument("input_paths", metavar="INPUT...", nargs=-1, required=True),
        click.option("--from", "start", default=None, metavar="LAYER", help="Feed INPUT straight to LAYER (its input: (T, F) rows or an .npy of its shape) and replay from there: a way past layers that cannot be replayed."),
        click.option("--header/--no-header", default=None, help="The CSV's first row is a header (default: detect)."),
        click.option("--columns", type=NamesType(), default=None, metavar="A,B,C", help="Feature columns to use, in order (names or 1-based numbers)."),
        click.option("--sequence-column", default=None, metavar="NAME", help="Column whose value splits the rows into sequences."),
        click.option("--delimiter", type=DelimiterType(), default=None, metavar="CHAR", help="CSV field separator: a character, 'tab' or 'whitespace' (default: detected from the first lines: comma, tab, semicolon, pipe or whitespace)."),
        click.option("--sequence-length", type=click.IntRange(min=1), default=None, metavar="K", help="Cut the input into consecutive sequences of K steps (with --stateful: a stateful model fed K steps per call)."),
        click.option("--stateful/--no-stateful", "stateful", default=None, help="Carry the state from one sequence to the next, or never. Default: as the model says (a stateful model with a fixed batch shape (B, T, F) is fed samples of T steps, as Keras' predict does)."),
        click.option("--initial-state", "initial_state", default=None, metavar="FILE", help="h0 (and c0) per layer: .npz with keys '<layer>/h', '<layer>/c', or JSON {layer: {h: [...], c: [...]}}."),
    ])


def cluster_options(fn: F) -> F:
    """``--scheduler ADDRESS`` and ``--workers N`` -> ``cluster``: where a dataset INPUT is replayed (Dask's
    progress bar shown where ours would be)."""

    @functools.wraps(fn)
    def collect(*args: Any, scheduler: str | None, workers: int | None, **kwargs: Any) -> Any:
        from .outputs import Cluster

        cluster = Cluster(scheduler, workers, progress=_terminal().shows_progress())
        return fn(*args, cluster=cluster, **kwargs)

    return _apply(collect, [
        click.option("--scheduler", default=None, metavar="ADDRESS", help="Run on this dask.distributed scheduler (tcp://host:8786); the workers must reach INPUT and -o DIR/."),
        click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N", help="Run on a local Dask cluster of N worker processes."),
    ])


def replay_options(*, numeric: bool = True) -> Callable[[F], F]:
    """The replay's settings -> ``replay``: a ReplayOptions.  ``--hard-sigmoid``, ``--activation`` and
    ``--recurrent-activation`` always; ``--dtype`` and ``--threads`` with ``numeric``."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def collect(*args: Any, hard_sigmoid: str | None, assume_activation: str | None,
                    assume_recurrent_activation: str | None, dtype: str = "float32", threads: int | None = None,
                    **kwargs: Any) -> Any:
            import numpy as np

            from .engine import ReplayOptions

            replay = ReplayOptions(dtype=np.float64 if dtype == "float64" else np.float32, hard_sigmoid=hard_sigmoid,
                                   threads=threads, assume_activation=assume_activation,
                                   assume_recurrent_activation=assume_recurrent_activation)
            return fn(*args, replay=replay, **kwargs)

        options = [
            hard_sigmoid_option,
            click.option("--activation", "assume_activation", default=None, metavar="NAME", help="Activation to assume where the file does not record it (weights-only files)."),
            click.option("--recurrent-activation", "assume_recurrent_activation", default=None, metavar="NAME", help="Recurrent activation to assume where the file does not record it."),
        ]
        if numeric:
            options += [
                click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True, help="Numeric type of the replay."),
                click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N", help="Threads that step a batch of sequences (default: up to the CPUs, when the batch is wide enough to gain)."),
            ]
        return _apply(collect, options)

    return decorator


QUIET = "lstm_inspect.quiet"  # ctx.meta key, shared by the group's context and the command's


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[QUIET] = True
    return value


def _quiet_option() -> click.Option:
    """``-q/--quiet``, accepted by the group and by every command: no notes, no progress bars."""
    return click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_quiet,
                        help="No notes and no progress bars on stderr (errors and warnings still show).")


def _terminal() -> Terminal:
    """The run's Terminal (made by the group), or one for this process when a command runs alone."""
    ctx = click.get_current_context(silent=True)
    terminal = ctx.find_object(Terminal) if ctx is not None else None
    return terminal if terminal is not None else Terminal.detect()


pass_terminal = click.make_pass_decorator(Terminal, ensure=False)


class Command(click.Command):
    """A command of the group: takes ``--quiet`` too, and while it runs, notes and progress go to the
    run's terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_quiet_option())

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command with notes and progress going to the run's terminal."""
        from .notes import notes_to
        from .progress import progress_to

        terminal = ctx.find_object(Terminal) or Terminal.detect()
        if ctx.meta.get(QUIET):
            terminal = replace(terminal, quiet=True)
        ctx.obj = terminal
        streams = _streams_to_stdout(ctx.params.get("fmt"), ctx.params.get("output"), terminal)
        with notes_to(_once(terminal.note)), progress_to(terminal.progress(streams)):
            return super().invoke(ctx)


def _once(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say``, for each message once: a dataset's partitions may give the same note."""
    seen: set[str] = set()

    def once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            say(message)

    return once


def _streams_to_stdout(fmt: str | None, output: str | None, terminal: Terminal) -> bool:
    """Text data written to stdout as it is made (no progress bar on that screen then)."""
    return output in (None, "-") and (fmt or ("table" if terminal.stdout_is_terminal else "csv")) != "table"


class Group(click.Group):
    """The command group: takes ``--quiet``, and its commands are :class:`Command` s."""

    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_quiet_option())


# ------------------------------------------------------------------ group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=epilog(None, mismatch=True))
@click.version_option(__version__, "--version", prog_name="lstm-inspect")
@click.option("--debug", is_flag=True, help="Show the full traceback of an internal error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Label the weights of saved Keras LSTM/GRU/SimpleRNN models by gate and unit,
    and trace every gate at every timestep, without TensorFlow.

    \b
      lstm-inspect layers model.h5
      lstm-inspect weights model.keras --layer lstm --gates f
      lstm-inspect trace model.h5 input.csv | head
      cat input.csv | lstm-inspect trace model.keras - --units 0-3 --gates i,f,o
      lstm-inspect predict model.keras input.csv
    """
    ctx.obj = Terminal.detect(quiet=bool(ctx.meta.get(QUIET)))


# ------------------------------------------------------------------ commands


@cli.command(epilog=epilog(TABLE_FORMATS))
@model_argument
@output_options(TABLE_FORMATS)
@pass_terminal
def layers(terminal: Terminal, model: Model, fmt: str | None, output: str | None) -> None:
    """One row per layer: class, units, activations, flags, parameters, weight shapes.

    \b
      lstm-inspect layers model.h5
      lstm-inspect layers model.keras --format json
    """
    from .outputs import layers_output
    from .writers import write_output

    write_output(layers_output(model), fmt, output, terminal)


@cli.command(epilog=epilog(TABLE_FORMATS))
@model_argument
@layer_option
@gates_option("Only these gates: i, f, c, o (LSTM); z, r, c (GRU); h (SimpleRNN). Comma list, repeatable.")
@click.option("--values", "show_values", is_flag=True, help="In the table view, print every gate's full matrix with its row labels.")
@output_options(TABLE_FORMATS)
@pass_terminal
def weights(terminal: Terminal, model: Model, layers: list[str] | None, gates: list[str] | None, show_values: bool,
            fmt: str | None, output: str | None) -> None:
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
    from .outputs import weights_output
    from .writers import write_output

    write_output(weights_output(model, layers, gates, show_values), fmt, output, terminal)


@cli.command(epilog=epilog(TRACE_FORMATS))
@model_argument
@input_arguments
@layer_option
@units_option()
@gates_option("Only these columns (i,f,c,o,cell,hidden; z,r for GRU). Comma list, repeatable.")
@click.option("--pre-activation", is_flag=True, help="Also write the pre-activations z_i,z_f,z_c,z_o.")
@click.option("--wide", is_flag=True, help="One row per (sequence, layer, t) with columns i_0..i_{u-1}, f_*, ...")
@click.option("--position", type=PositionType(), default=None, metavar="Y,X", help="ConvLSTM layers: only the maps' values at this position (x; y,x; z,y,x).")
@click.option("--reduce", type=click.Choice(["mean", "max"]), default=None, help="ConvLSTM layers: each filter's mean or max over all positions, instead of one row per position.")
@vocab_option("--format lstmvis: token texts for the words file (a JSON list or dict, or one token per line).")
@replay_options()
@cluster_options
@output_options(TRACE_FORMATS)
@pass_terminal
def trace(terminal: Terminal, model: Model, inputs: InputFiles, layers: list[str] | None, units: list[int] | None,
          gates: list[str] | None, pre_activation: bool, wide: bool, position: tuple[int, ...] | None,
          reduce: str | None, vocab_path: str | None, replay: ReplayOptions, cluster: Cluster, fmt: str | None,
          output: str | None) -> None:
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
      lstm-inspect trace char_model.h5 ids.csv --format lstmvis --vocab vocab.json -o lstmvis/
      lstm-inspect trace model.h5 'logs/*.parquet' --sequence-column id --workers 2 -o trace/

    INPUT may be a dataset: a folder, a glob or a URL of CSV, Parquet or .npy
    files, read one partition (file) at a time, for a model with one input
    (or the layer of --from; a model of several inputs takes files). -o DIR/
    writes a partitioned Parquet dataset, one part per partition; --workers N
    or --scheduler ADDRESS replays the partitions on Dask (needs
    lstm-inspect[dask]).
    """
    from .outputs import trace_output
    from .writers import write_output

    result = trace_output(model, inputs, layers=layers, gates=gates, units=units, wide=wide, position=position,
                          reduce=reduce, options=replace(replay, pre_activation=pre_activation), fmt=fmt,
                          destination=output, cluster=cluster, vocab_path=vocab_path)
    write_output(result, fmt, output, terminal)


@cli.command(epilog=epilog(TABLE_FORMATS))
@model_argument
@input_arguments
@replay_options()
@cluster_options
@output_options(TABLE_FORMATS)
@pass_terminal
def predict(terminal: Terminal, model: Model, inputs: InputFiles, replay: ReplayOptions, cluster: Cluster,
            fmt: str | None, output: str | None) -> None:
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
    from .outputs import predict_output
    from .writers import write_output

    result = predict_output(model, inputs, replay, fmt=fmt, destination=output, cluster=cluster)
    write_output(result, fmt, output, terminal)


@cli.command(epilog=epilog(VERIFY_FORMATS, mismatch=True))
@model_argument
@input_arguments
@click.option("--tolerance", type=float, default=1e-5, show_default=True, help="Largest accepted absolute difference.")
@replay_options()
@output_options(VERIFY_FORMATS)
@pass_terminal
def verify(terminal: Terminal, model: Model, inputs: InputFiles, tolerance: float, replay: ReplayOptions,
           fmt: str | None, output: str | None) -> None:
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
    from .outputs import verify_output
    from .verify import DRIFT_MEANING, summary
    from .writers import write_output

    result, checks = verify_output(model, inputs, tolerance, replay)
    write_output(result, fmt, output, terminal)
    terminal.error(summary(checks))
    if checks.drifts:
        terminal.error(DRIFT_MEANING)
    if checks.mismatches:
        raise VerifyMismatch()


@cli.command(epilog=epilog(TABLE_FORMATS))
@model_argument
@input_arguments
@layer_option
@gates_option("Only these values (i,f,c,o,cell,hidden; z,r for GRU). Comma list, repeatable.")
@click.option("--sort", type=click.Choice(["unit", "saturation", "variability"]), default="unit", show_default=True,
              help="Order the units of each layer and gate: by number, most saturated first, or largest std first.")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="K", help="Only the first K units of each layer and gate (after --sort).")
@replay_options()
@cluster_options
@output_options(TABLE_FORMATS)
@pass_terminal
def stats(terminal: Terminal, model: Model, inputs: InputFiles, layers: list[str] | None, gates: list[str] | None,
          sort: str, top: int | None, replay: ReplayOptions, cluster: Cluster, fmt: str | None,
          output: str | None) -> None:
    """Per layer, gate and unit over all steps of INPUT: mean, std, min, max, and how often saturated.

    CSV columns: layer,gate,unit,steps,mean,std,min,max,left_saturated,
    right_saturated,saturation_rank,variability_rank. left/right_saturated are
    the fractions of steps below 10 % / above 90 % of the activation's range
    (sigmoid gates: < 0.1, > 0.9; tanh candidate c: < -0.8, > 0.8; Karpathy et
    al. 2015); empty for cell and hidden. Masked steps are left out. Rank 1 is
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
    from .outputs import stats_output
    from .writers import write_output

    result = stats_output(model, inputs, layers=layers, gates=gates, sort=sort, top=top, options=replay,
                          cluster=cluster)
    write_output(result, fmt, output, terminal)


@cli.command(epilog=epilog(PLOT_FORMATS, output="Output: a picture, -o FILE.png|FILE.svg|FILE.pdf (or --format png|svg|pdf)."))
@model_argument
@input_arguments
@click.option("--kind", type=click.Choice(["heatmap", "saturation"]), default="heatmap", show_default=True,
              help="heatmap: each value over time × units; saturation: left- vs right-saturated fraction per unit and gate.")
@layer_option
@gates_option("heatmap: only these values (i,f,c,o,cell,hidden; z,r). Comma list, repeatable.")
@units_option("heatmap: only these units (comma list, repeatable).")
@click.option("--sequence", "sequence_id", default=None, metavar="ID", help="heatmap: the sequence to draw (default: the first).")
@click.option("--dpi", type=click.IntRange(min=20, max=600), default=100, show_default=True, help="Resolution of a PNG.")
@replay_options()
@output_options(PLOT_FORMATS, required=True, output_help="The picture: FILE.png, FILE.svg or FILE.pdf (written atomically).",
                format_help="Picture format (default: from the -o extension).")
@pass_terminal
def plot(terminal: Terminal, model: Model, inputs: InputFiles, kind: str, layers: list[str] | None,
         gates: list[str] | None, units: list[int] | None, sequence_id: str | None, dpi: int, replay: ReplayOptions,
         fmt: str | None, output: str) -> None:
    """Draw the trace of INPUT: heatmaps of every gate over time, or the saturation scatter.

    Needs matplotlib: pip install 'lstm-inspect[plot]'. With --kind saturation,
    one point per unit and gate (i, f, o; z, r) at x = fraction of steps below
    0.1, y = fraction above 0.9, over all sequences (Karpathy et al. 2015).

    \b
      lstm-inspect plot model.keras input.csv -o trace.png
      lstm-inspect plot model.h5 input.csv -o gates.svg --layer lstm --gates i,f,o --units 0-15
      lstm-inspect plot model.h5 data.csv --kind saturation -o saturation.pdf
    """
    from .outputs import plot_output
    from .writers import write_file_output

    picture = plot_output(model, inputs, output, fmt, kind=kind, layers=layers, gates=gates, units=units,
                          sequence=sequence_id, dpi=dpi, options=replay)
    write_file_output(picture, output, terminal)


@cli.command(epilog=epilog(EXPORT_FORMATS, output="Output: arrays, --format npz|json (default from the -o extension, else npz)."))
@model_argument
@click.option("--layout", type=click.Choice(["gates", "pytorch", "onnx"]), default="gates", show_default=True,
              help="gates: <layer>/kernel_i...; pytorch: nn.LSTM/GRU/RNN state-dict arrays; onnx: W, R, B of the ONNX operator.")
@layer_option
@replay_options(numeric=False)
@output_options(EXPORT_FORMATS, output_help="Write to FILE.npz or FILE.json (atomically); default stdout.",
                format_help="npz or json (arrays as nested lists); default from the -o extension, else npz.")
@pass_terminal
def export(terminal: Terminal, model: Model, layout: str, layers: list[str] | None, replay: ReplayOptions,
           fmt: str | None, output: str | None) -> None:
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
    from .outputs import export_output
    from .writers import write_file_output

    write_file_output(export_output(model, layout, output, fmt, layers, replay), output, terminal)


@cli.command(epilog=epilog(None, output="Output: a Python script, to stdout or -o FILE (and the weights to --weights-out FILE.npz)."))
@model_argument
@click.option("--weights-out", default=None, metavar="FILE.npz", callback=_npz_name,
              help="Also write the weights to FILE.npz, which the script then reads (no h5py needed; required for "
                   "cuDNN and Keras 1 layouts).")
@hard_sigmoid_option
@output_options((), output_help="Write the script to FILE (atomically) instead of stdout.")
@pass_terminal
def code(terminal: Terminal, model: Model, weights_out: str | None, hard_sigmoid: str | None,
         output: str | None) -> None:
    """Write a standalone NumPy script that replays MODEL, step loop and gates written out.

    `python replay.py INPUT.csv` prints what `predict` prints, `--trace` what
    `trace` prints; `import replay; replay.run(x)` returns the output and every
    step's values. Layers it cannot write out are refused by name.

    \b
      lstm-inspect code model.keras > replay.py
      lstm-inspect code model.h5 --weights-out weights.npz -o replay.py
    """
    from .outputs import code_output
    from .writers import write_file_output

    write_file_output(code_output(model, weights_out, hard_sigmoid), output, terminal)


@cli.command(epilog=epilog(None, output="Output: one HTML file, -o FILE.html."))
@model_argument
@input_arguments
@layer_option
@vocab_option("Token texts for an Embedding input: a JSON list or dict, or one token per line.")
@click.option("--max-sequences", type=click.IntRange(min=1), default=20, show_default=True, metavar="N",
              help="Show the first N sequences (the saturation scatter counts all).")
@replay_options()
@output_options((), required=True, output_help="The report: one HTML file that works offline (written atomically).")
@pass_terminal
def report(terminal: Terminal, model: Model, inputs: InputFiles, layers: list[str] | None, vocab_path: str | None,
           max_sequences: int, replay: ReplayOptions, output: str) -> None:
    """Write an interactive HTML report of INPUT's trace: heatmaps, units, saturation, weights, pattern search.

    Needs plotly: pip install 'lstm-inspect[report]'. The file holds everything
    (plotly.js included) and opens offline; a long input is shown downsampled,
    with a note, so that it stays under about 20 MB.

    \b
      lstm-inspect report model.keras input.csv -o report.html
      lstm-inspect report char_model.h5 text_ids.csv --vocab vocab.json -o report.html
    """
    from .outputs import report_output
    from .writers import write_file_output

    page = report_output(model, inputs, layers=layers, vocab_path=vocab_path, max_sequences=max_sequences,
                         options=replay)
    write_file_output(page, output, terminal)


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
def _signals_interrupt() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread, so that an
    ``-o`` file being written is removed and the run ends with one line and 128 + the signal.
    A second signal while the first is handled is ignored: the clean-up finishes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
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

    try:
        with warnings.catch_warnings():
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
        if isinstance(exc, _NO_ARGS_IS_HELP):  # `lstm-inspect` alone: the help
            exc.show()
        else:
            click.echo(f"lstm-inspect: error: {_one_line(exc)}", err=True)
        return ExitStatus.ERROR if exc.exit_code in (1, 2) else exc.exit_code
    except click.exceptions.Abort as exc:  # Click's own Ctrl-C (outside the main thread's handler)
        return _interrupted(ExitStatus.INTERRUPTED - SIGNAL_STATUS_BASE, getattr(exc.__cause__, "discarded", []))
    except LstmInspectError as exc:
        click.echo(f"lstm-inspect: error: {exc}", err=True)
        return ExitStatus.ERROR
    except VerifyMismatch:
        return ExitStatus.MISMATCH
    except (BrokenPipeError, PipeClosed):
        _silence_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt as exc:
        return _interrupted(ExitStatus.INTERRUPTED - SIGNAL_STATUS_BASE, getattr(exc, "discarded", []))
    except MemoryError:
        click.echo("lstm-inspect: error: out of memory (try a shorter input or --layer)", err=True)
        return ExitStatus.ERROR
    except Exception as exc:  # a bug: one line, and the traceback on request
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        click.echo(f"lstm-inspect: internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)", err=True)
        return ExitStatus.INTERNAL


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
    return SIGNAL_STATUS_BASE + signum


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
