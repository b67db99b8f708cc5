"""Terminal views (Rich): what a person reads when stdout is a terminal.

Scripts get CSV or JSON from ``writers``; these views show the same numbers,
rounded for reading, and say what they leave out.  Every view is drawn on a
Rich console made by :class:`~lstm_inspect.terminal.Terminal` (or by a
test), whose width and colour system it reads:

* A table is made to fit the console's width, so that Rich never has to wrap
  or cut a cell: a number is never split across lines nor cut to ``0.…``.
  When the columns do not fit, each view shortens or drops them in its own
  stated order (the file path first), explains a shortened name once below
  the table, and names what was left out and the option that shows it.
* The trace view chooses how many units and steps fit and says exactly which
  are shown; a ``…`` row appears only where steps were left out.
* Colour carries values: gates (0..1) are shaded with viridis, a sequential
  map of even perceived steps; the candidate, cell and hidden state (−1..1)
  with Moreland's cool-warm diverging map; a legend line says so.  With 16
  colours, ``NO_COLOR``, or no terminal at all, the views show numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .batching import TraceBlock
from .columns import Block, TraceColumns
from .model import Model, RecurrentLayer
from .weights import GateBlock, equations

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

HEAD_STEPS = 12  # the trace view's first steps ...
TAIL_STEPS = 4  # ... and last steps of a sequence
TRACE_SEQUENCES = 3  # sequences the trace view shows (the first ones)
ROWS_LIMIT = 50  # rows of a plain table (predict)
NUMBER_WIDTH = 6  # "+0.123": a trace value as a number

# Perceptually even colour maps, 17 samples from 0 to 1 each (matplotlib's tables, CC0 / public domain):
# viridis (sequential, lightness rising) for values in 0..1, and Moreland's cool-warm (diverging,
# grey in the middle) for values in -1..1.
VIRIDIS = ("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
           "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725")
COOL_WARM = ("#3b4cc0", "#4e68d8", "#6282ea", "#779af7", "#8db0fe", "#a3c2fe", "#b9d0f9", "#ccd9ed", "#dddcdc",
             "#ecd3c5", "#f5c4ac", "#f7b093", "#f4987a", "#eb7d62", "#dd5f4b", "#ca3b37", "#b40426")
# Shades per map: every sample in true colour; in 256 colours, 9 samples, which map to 9 different
# palette colours (xterm's palette has too few colours near each other for all 17).
LEVELS = {"truecolor": 17, "256": 9}


# ------------------------------------------------------------------- numbers


def format_number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, in one piece (no spaces): ``0.09388``, ``-1.68e-04``.

    NaN and None are empty; a value under 1e-3 in magnitude is written in
    scientific notation, so no digit is lost to leading zeros.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.{max(digits - 2, 1)}e}"


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return format_number(float(value), 6)
    return str(value)


def _unit_ranges(units: Sequence[int]) -> str:
    """``0–7``, ``0,3,5–7``: a list of unit numbers, runs joined by an en dash."""
    parts: list[str] = []
    start: int | None = None
    previous: int | None = None
    for unit in [*units, None]:
        if start is not None and (unit is None or previous is None or unit != previous + 1):
            parts.append(str(start) if start == previous else f"{start}–{previous}")
            start = None
        if unit is not None and start is None:
            start = unit
        previous = unit
    return ",".join(parts)


# ------------------------------------------------------------------- fitting tables to the width


@dataclass
class Column:
    """A column of a view: its header and cells as text, and how it may give way on a narrow screen.

    ``short`` is a shorter header and ``short_cells`` shorter cells, used
    when the table does not fit (explained once by ``short_legend``).
    """

    header: str
    cells: list[Any]  # str or rich Text
    justify: str = "left"
    short: str | None = None
    short_cells: list[Any] | None = None
    short_legend: str = ""
    legend: str = ""  # printed below the table whenever the column is shown

    def width(self, shortened: bool) -> int:
        """The column's natural width: its widest cell or header, in terminal cells."""
        from rich.cells import cell_len

        header = self.short if shortened and self.short is not None else self.header
        cells = self.short_cells if shortened and self.short_cells is not None else self.cells
        return max([cell_len(header)] + [cell_len(c if isinstance(c, str) else c.plain) for c in cells])


@dataclass(frozen=True)
class Narrowing:
    """One step a view takes when its table is too wide: ``drop`` a column or ``shorten`` it.
    ``shown_by`` says what shows a dropped column (an option)."""

    action: str  # "drop" | "shorten"
    column: str  # the column's header
    shown_by: str = "--format csv shows it"


@dataclass
class Fitted:
    """The outcome of :func:`fit_columns`: the columns kept (shortened where needed), and what gave way."""

    columns: list[Column]
    shortened: set[str] = field(default_factory=set)
    dropped: list[Narrowing] = field(default_factory=list)
    width: int = 0


def table_width(widths: Sequence[int]) -> int:
    """The width of a Rich table (default box, padding 1) with columns of these content widths."""
    return sum(widths) + 3 * len(widths) + 1


def fit_columns(columns: Sequence[Column], width: int, steps: Sequence[Narrowing]) -> Fitted:
    """Apply ``steps`` in order, only as far as needed, until the table fits ``width``."""
    kept = list(columns)
    fitted = Fitted(kept)

    def current() -> int:
        return table_width([c.width(c.header in fitted.shortened) for c in kept])

    for step in steps:
        if current() <= width:
            break
        if step.action == "shorten":
            fitted.shortened.add(step.column)
        else:
            before = len(kept)
            kept[:] = [c for c in kept if c.header != step.column]
            if len(kept) < before:
                fitted.dropped.append(step)
    fitted.width = current()
    return fitted


def render_table(console: Console, fitted: Fitted, title: str | None = None, *, sections: Sequence[int] = ()) -> None:
    """Print a fitted table; ``sections`` are row numbers before which a section line is drawn."""
    from rich.table import Table

    table = Table(header_style="bold", title=None)
    for column in fitted.columns:
        short = column.header in fitted.shortened
        header = column.short if short and column.short is not None else column.header
        table.add_column(header, justify=column.justify, no_wrap=True, overflow="fold",  # type: ignore[arg-type]
                         min_width=column.width(short))
    rows = len(fitted.columns[0].cells) if fitted.columns else 0
    for row in range(rows):
        if row in sections:
            table.add_section()
        cells = []
        for column in fitted.columns:
            short = column.header in fitted.shortened and column.short_cells is not None
            cells.append((column.short_cells if short else column.cells)[row])  # type: ignore[index]
        table.add_row(*cells)
    if title:
        console.print(_text(title, "bold"))
    console.print(table)
    _print_fitting_notes(console, fitted)


def _print_fitting_notes(console: Console, fitted: Fitted) -> None:
    """The legend of shortened columns and the names of dropped ones, one line each."""
    legends = [c.legend for c in fitted.columns if c.legend]
    legends += [c.short_legend for c in fitted.columns if c.header in fitted.shortened and c.short_legend]
    if legends:
        console.print(_text("; ".join(legends), "dim"))
    if fitted.dropped:
        by_hint: dict[str, list[str]] = {}
        for step in fitted.dropped:
            by_hint.setdefault(step.shown_by, []).append(step.column)
        parts = [f"{', '.join(names)} ({hint})" for hint, names in by_hint.items()]
        console.print(_text(f"not shown at {console.width} columns: " + "; ".join(parts), "dim"))


def _text(text: str, style: str = "") -> Text:
    from rich.text import Text

    return Text(text, style=style)


# ------------------------------------------------------------------- layers


LAYER_FLAGS = (("return_sequences", True, "seq"), ("go_backwards", True, "back"), ("stateful", True, "stateful"),
               ("use_bias", False, "no-bias"))


def render_layers(rows: Sequence[dict], console: Console, title: str) -> None:
    """``layers``: one line per layer on any width.

    The true/false settings are folded into one ``flags`` column (explained
    below the table) and the Keras version is in the title; on a narrow
    screen weight shapes are left out first, then the activations' headers
    are shortened, then initial state and parameter counts are left out (and
    said to be).
    """
    fitted = fit_columns(_layer_columns(rows), console.width, [
        Narrowing("drop", "weight shapes", "the weights command or --format csv shows them"),
        Narrowing("shorten", "activation"), Narrowing("shorten", "recurrent_activation"),
        Narrowing("drop", "initial state"), Narrowing("drop", "params"),
    ])
    render_table(console, fitted, title)


def render_verify(rows: Sequence[dict], columns: Sequence[str], console: Console, verdict: str) -> None:
    """``verify``: one line per compared layer output, under the verdict; on a narrow screen the
    tolerance (given in the verdict) and the float64 figures are left out first."""
    table = [Column(name, [_cell_text(row[name]) for row in rows],
                    "left" if name in ("layer", "shape", "status") else "right") for name in columns]
    fitted = fit_columns(table, console.width, [Narrowing("drop", name) for name in
                                                ("tolerance", "replay_vs_float64", "keras_vs_float64", "shape")])
    render_table(console, fitted, verdict)


def _layer_columns(rows: Sequence[dict]) -> list[Column]:
    flags = []
    used: list[str] = []
    for row in rows:
        words = []
        for key, value, word in LAYER_FLAGS:
            if row.get(key) is value:
                words.append(word)
                if word not in used:
                    used.append(word)
        flags.append(" ".join(words))
    meaning = {"seq": "seq = return_sequences", "back": "back = go_backwards", "stateful": "stateful",
               "no-bias": "no-bias = use_bias false"}
    flag_column = Column("flags", flags, legend="flags: " + ", ".join(meaning[w] for w in used) if used else "")
    columns = [
        Column("name", [str(row["name"]) for row in rows]),
        Column("class", [str(row["class"]) for row in rows]),
        Column("units", [_cell_text(row["units"]) for row in rows], "right"),
        Column("activation", [_cell_text(row["activation"]) for row in rows], short="act.",
               short_legend="act. = activation"),
        Column("recurrent_activation", [_cell_text(row["recurrent_activation"]) for row in rows], short="rec. act.",
               short_legend="rec. act. = recurrent_activation"),
        flag_column,
        Column("params", [f"{row['params']:,}" for row in rows], "right"),
        Column("weight shapes", [_cell_text(row["weight_shapes"]) for row in rows]),
        Column("initial state", [_cell_text(row["initial_state"]) for row in rows]),
    ]
    return columns


# ------------------------------------------------------------------- weights


def render_weights(model: Model, blocks: Iterable[GateBlock], console: Console, show_values: bool) -> None:
    """``weights``: per layer, a title line, one row per (tensor, gate) with its slice, shape and
    summary figures, and the step equations; with ``show_values``, every gate's matrix."""
    by_layer: dict[str, list[GateBlock]] = {}
    for block in blocks:
        by_layer.setdefault(block.layer, []).append(block)
    for name, layer_blocks in by_layer.items():
        layer = model.recurrent_layer(name)
        console.print(_text(_layer_title(model, layer), "bold"))
        fitted = fit_columns(_weight_columns(layer, layer_blocks), console.width, [
            Narrowing("drop", "path in file", "--format csv has it in the path column"),
            Narrowing("shorten", "gate"), Narrowing("shorten", "tensor"),
            Narrowing("drop", "slice", "--format csv has it in the column column"),
            Narrowing("drop", "shape"), Narrowing("drop", "L2 norm"),
        ])
        sections = [k for k in range(1, len(layer_blocks)) if layer_blocks[k].tensor != layer_blocks[k - 1].tensor]
        render_table(console, fitted, sections=sections)
        for line in equations(layer):
            console.print(_text("  " + line, "dim"))
        if layer.activation is None:
            console.print(_text("  activations unknown: weights-only file", "yellow"))
        console.print()
        if show_values:
            for block in layer_blocks:
                _render_values(block, console)


TENSOR_SHORT = {"kernel": "kernel", "recurrent_kernel": "recurrent", "bias": "bias", "recurrent_bias": "rec. bias"}


def _weight_columns(layer: RecurrentLayer, blocks: Sequence[GateBlock]) -> list[Column]:
    stats = [block.stats() for block in blocks]
    gates = ", ".join(f"{g} {layer.kind.gate_name(g)}" for g in layer.gates)
    tensors = [b.tensor for b in blocks]
    shorter = sorted({t for t in tensors if TENSOR_SHORT.get(t, t) != t})
    return [
        Column("tensor", tensors, short_cells=[TENSOR_SHORT.get(t, t) for t in tensors],
               short_legend=", ".join(f"{TENSOR_SHORT[t]} = {t}" for t in shorter)),
        Column("gate", [f"{b.gate} ({b.gate_name})" for b in blocks], short="gate", short_cells=[b.gate for b in blocks],
               short_legend=f"gates: {gates}"),
        Column("slice", [b.columns for b in blocks]),
        Column("shape", ["×".join(str(d) for d in b.values.shape) for b in blocks]),
        *[Column(header, [format_number(s[key]) for s in stats], "right")
          for header, key in (("mean", "mean"), ("std", "std"), ("min", "min"), ("max", "max"), ("L2 norm", "l2"))],
        Column("path in file", [b.path for b in blocks]),
    ]


def _layer_title(model: Model, layer: RecurrentLayer) -> str:
    w = layer.weights
    parts = [
        f"{layer.name}: {layer.kind}, {w.units} units, {w.features} input features",
        f"activation={layer.activation or '?'}",
    ]
    if layer.kind.recurrent_gates:
        parts.append(f"recurrent_activation={layer.recurrent_activation or '?'}")
    if layer.go_backwards:
        parts.append("go_backwards")
    if w.layout != "keras":
        parts.append(f"stored as {w.layout}")
    if model.keras_version:
        parts.append(f"saved by Keras {model.keras_version}")
    return "  ".join(parts)


def _render_values(block: GateBlock, console: Console) -> None:
    """One gate's matrix (``--values``): a row per source, a column per unit, as many units as fit."""
    values = block.values
    prefix = {"kernel": "x", "recurrent_kernel": "h"}.get(block.tensor)
    matrix = values.reshape(-1, values.shape[-1]) if values.ndim >= 2 else values[None]
    labels = [f"{prefix}[{row}]" for row in range(matrix.shape[0])] if values.ndim >= 2 else ["bias"]
    columns = [Column(block.row_meaning or "", labels)]
    columns += [Column(f"unit {unit}", [format_number(float(v), 5) for v in matrix[:, unit]], "right")
                for unit in range(matrix.shape[1])]
    steps = [Narrowing("drop", f"unit {unit}", "--format csv shows every value")
             for unit in reversed(range(1, matrix.shape[1]))]
    fitted = fit_columns(columns, console.width, steps)
    title = f"{block.layer} {block.tensor} {block.columns}: gate {block.gate} ({block.gate_name})"
    dropped, fitted.dropped = fitted.dropped, []
    render_table(console, fitted, title)
    if dropped:
        shown = matrix.shape[1] - len(dropped)
        console.print(_text(f"units 0–{shown - 1} of {matrix.shape[1]} shown at {console.width} columns "
                            "(--format csv shows every value)", "dim"))


# ------------------------------------------------------------------- trace


@dataclass
class _Excerpt:
    """What the trace view keeps of one (sequence, layer): the first and last steps, and a count."""

    layer: RecurrentLayer
    sequence: object
    units: list[int]  # the units kept (at most as many as could ever fit)
    selected: int  # how many units were selected (all the layer's, or --units)
    head: list[tuple[int, dict[str, NDArray], bool]] = field(default_factory=list)  # (t, {name: (units,)}, masked)
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_STEPS))
    steps: int = 0


def render_trace(blocks: Iterable[TraceBlock], spec: TraceColumns, console: Console) -> int:
    """``trace`` on a terminal: per sequence and layer, the first and last steps, as many units as fit.

    Consumes ``blocks`` keeping only what is shown (a few steps of at most
    ``console.width`` units per value), so a long input costs its replay and
    little more.  Returns the number of steps seen.
    """
    excerpts: dict[tuple[str, str], _Excerpt] = {}
    sequences: list[str] = []
    total = 0
    for tb in blocks:
        block = tb.block
        total += block.steps * len(tb.sequences)
        for n, sequence in enumerate(tb.sequences):
            key = (repr(sequence), tb.layer.name)
            if key[0] not in sequences:
                sequences.append(key[0])
            if sequences.index(key[0]) >= TRACE_SEQUENCES:
                continue
            excerpt = excerpts.get(key)
            if excerpt is None:
                selected = _selected_units(tb.layer, spec)
                excerpt = excerpts[key] = _Excerpt(tb.layer, sequence, selected[: max(console.width // 2, 1)],
                                                   len(selected))
            _keep(excerpt, block, n)
    painter = Painter.for_console(console)
    for excerpt in excerpts.values():
        _render_excerpt(excerpt, spec, console, painter)
    if total:
        masked = any(row[2] for e in excerpts.values() for row in list(e.head) + list(e.tail))
        console.print(painter.legend(masked))
    if len(sequences) > TRACE_SEQUENCES:
        console.print(_text(f"the first {TRACE_SEQUENCES} of {len(sequences)} sequences shown "
                            "(--format csv writes them all)", "dim"))
    return total


def _selected_units(layer: RecurrentLayer, spec: TraceColumns) -> list[int]:
    """The units of ``layer`` that --units selects (all when it was not given)."""
    return [u for u in (spec.units if spec.units is not None else range(layer.units)) if u < layer.units]


def _keep(excerpt: _Excerpt, block: Any, n: int) -> None:
    """Add the steps of sequence ``n`` of ``block`` that the view may show: the first ones until the head
    is full, and the block's last ones for the tail."""
    steps = block.steps
    index = np.asarray(excerpt.units)
    room = HEAD_STEPS - len(excerpt.head)
    take = list(range(min(room, steps)))
    take += [s for s in range(max(len(take), steps - TAIL_STEPS), steps)]
    for s in take:
        row = (int(block.t[s]), {name: np.array(value[s, n][index]) for name, value in block.values.items()},
               bool(block.masked[s, n]) if block.masked is not None else False)
        if len(excerpt.head) < HEAD_STEPS:
            excerpt.head.append(row)
        else:
            excerpt.tail.append(row)
    excerpt.steps += steps


def _render_excerpt(excerpt: _Excerpt, spec: TraceColumns, console: Console, painter: Painter) -> None:
    layer = excerpt.layer
    names = [n for n in spec.names if excerpt.head and n in excerpt.head[0][1]]
    rows = list(excerpt.head)
    omitted = excerpt.steps - len(excerpt.head) - len(excerpt.tail)
    tail = list(excerpt.tail)
    masked = any(row[2] for row in rows + tail)
    t_width = max(len("t"), *(len(str(row[0])) + masked for row in rows + tail), 1 if not omitted else len("…"))
    layout = painter.layout(console.width, t_width, names, len(excerpt.units))
    units = excerpt.units[: layout.units]
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("t", justify="right", no_wrap=True, min_width=t_width)
    for name in layout.names:
        table.add_column(name, justify="left", no_wrap=True, min_width=layout.cell_width)
    for row in rows + ([None] if omitted > 0 else []) + tail:
        if row is None:
            table.add_row("…", *[""] * len(layout.names))
            continue
        t, values, is_masked = row
        table.add_row(f"{t}{'*' if is_masked else ''}",
                      *[painter.cells(values[name][: layout.units], _scale(layer, name)) for name in layout.names])
    console.print(_text(_excerpt_title(excerpt, units, omitted, len(rows), len(tail)), "bold"))
    console.print(table)
    left_out = [n for n in names if n not in layout.names]
    if left_out:
        console.print(_text(f"not shown at {console.width} columns: {', '.join(left_out)} (--gates to choose)", "dim"))


def _excerpt_title(excerpt: _Excerpt, units: Sequence[int], omitted: int, head: int, tail: int) -> str:
    """``sequence 0 · lstm (LSTM, 32 units) · units 0–7 of 32 (--units to choose) · all 15 steps``."""
    layer = excerpt.layer
    word = "unit" if len(units) == 1 else "units"
    if list(units) == list(range(layer.units)):
        which = f"{word} {_unit_ranges(units)}"
    elif len(units) == excerpt.selected:
        which = f"{word} {_unit_ranges(units)} of {layer.units}"
    else:
        which = f"{word} {_unit_ranges(units)} of {layer.units} (--units to choose)"
    steps = (f"all {excerpt.steps} steps" if omitted <= 0 else
             f"first {head} and last {tail} of {excerpt.steps} steps (--format csv for every step)")
    return f"sequence {excerpt.sequence} · {layer.name} ({layer.kind}, {layer.units} units) · {which} · {steps}"


def _scale(layer: RecurrentLayer, name: str) -> str:
    """``sequential`` for a gate (a recurrent activation's output, 0..1), else ``diverging`` (−1..1)."""
    return "sequential" if name in layer.kind.recurrent_gates else "diverging"


@dataclass(frozen=True)
class TraceLayout:
    """How a trace table fits: which value columns, how many units each, and a value column's width."""

    names: list[str]
    units: int
    cell_width: int


class Painter:
    """Turns trace values into cells: shaded blocks, numbers on a shaded background, or plain numbers.

    ``levels`` is the number of shades of each colour map (0: no colour).
    """

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.shades = False  # set by layout(): one block per unit instead of a number

    @classmethod
    def for_console(cls, console: Console) -> Painter:
        """Shades in 256 colours and true colour; numbers alone in 16 colours, with NO_COLOR, or in a file."""
        system = console.color_system if not console.no_color else None
        return cls(LEVELS.get(system or "", 0))

    def layout(self, width: int, t_width: int, names: Sequence[str], available: int) -> TraceLayout:
        """Numbers for every unit if they fit; else, with colour, one shaded block per unit; else as
        many numbers as fit.  Value columns are left out (from the last) only when not even one unit fits."""
        names = list(names)

        def fits(units: int, cell: int, count: int) -> bool:
            return table_width([t_width] + [cell] * count) <= width

        def cell_width(units: int, shades: bool) -> int:
            return units if shades else units * (NUMBER_WIDTH + 1) - 1

        self.shades = False
        if fits(available, max(cell_width(available, False), *(len(n) for n in names)), len(names)):
            return TraceLayout(names, available, max(cell_width(available, False), *(len(n) for n in names)))
        self.shades = self.levels > 0
        while names:
            widest = max(len(n) for n in names)
            best = 0
            for units in range(available, 0, -1):
                if fits(units, max(cell_width(units, self.shades), widest), len(names)):
                    best = units
                    break
            if best:
                return TraceLayout(names, best, max(cell_width(best, self.shades), widest))
            names.pop()
        return TraceLayout([], 0, 0)

    def cells(self, values: NDArray, scale: str) -> Text:
        """One cell of the table: the units' values as shaded blocks or numbers, separated by spaces."""
        from rich.text import Text

        text = Text()
        for k, value in enumerate(values):
            value = float(value)
            if not self.shades and k:
                text.append(" ")
            if not np.isfinite(value):
                text.append(" " if self.shades else "—".rjust(NUMBER_WIDTH))
                continue
            colour = self.colour(value, scale) if self.levels else None
            if self.shades:
                text.append("█", style=colour or "")
            elif colour:
                text.append(f"{value:+.3f}", style=f"{_ink(colour)} on {colour}")
            else:
                text.append(f"{value:+.3f}")
        return text

    def colour(self, value: float, scale: str) -> str:
        """The shade of ``value`` (0..1 sequential, −1..1 diverging, clipped) as ``#rrggbb``."""
        colours = VIRIDIS if scale == "sequential" else COOL_WARM
        x = value if scale == "sequential" else (value + 1) / 2
        x = min(max(x, 0.0), 1.0)
        level = round(x * (self.levels - 1))
        return colours[round(level * (len(colours) - 1) / (self.levels - 1))]

    def legend(self, masked: bool = False) -> Text:
        """One line: what the shades mean (with colour), where every value is, and the mark of a masked step."""
        from rich.text import Text

        text = Text()
        if self.levels:
            for label, scale, low, high in (("gates", "sequential", 0.0, 1.0), ("c, cell, hidden", "diverging", -1.0, 1.0)):
                text.append(f"{label} {low:g} ", style="dim")
                for k in range(self.levels):
                    text.append("█", style=self.colour(low + (high - low) * k / (self.levels - 1), scale))
                text.append(f" {high:+g}   " if low < 0 else f" {high:g}   ", style="dim")
            text.append("(viridis; cool-warm, clipped at ±1). ", style="dim")
        if masked:
            text.append("* a masked step (the state carried over). ", style="dim")
        text.append("Pipe or use --format csv for every value.", style="dim")
        return text


def _ink(background: str) -> str:
    """Black or white text, whichever reads better on ``background`` (#rrggbb)."""
    r, g, b = (int(background[k : k + 2], 16) for k in (1, 3, 5))
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 else "white"


# ------------------------------------------------------------------- generic rows (predict)


def render_rows(columns: Sequence[str], blocks: Iterable[Block], console: Console, title: str | None = None,
                limit: int = ROWS_LIMIT) -> None:
    """A plain table of the first ``limit`` rows of ``blocks`` (``predict``), as many columns as fit;
    the other rows are counted, not kept."""
    kept: list[list[str]] = []
    extra = 0
    for block in blocks:
        rows = block.rows
        room = max(limit - len(kept), 0)
        if room:
            data = [_column_values(column, rows)[:room] for column in block.data]
            kept.extend([_cell_text(v) for v in row] for row in zip(*data))
        extra += max(rows - room, 0)
    table = [Column(name, [row[k] for row in kept], "right") for k, name in enumerate(columns)]
    steps = [Narrowing("drop", name, "--format csv shows every column") for name in reversed(columns[2:])]
    fitted = fit_columns(table, console.width, steps)
    dropped = fitted.dropped
    if dropped:  # say it as a range: y_5–y_9
        fitted.dropped = [Narrowing("drop", f"{dropped[-1].column}–{dropped[0].column}" if len(dropped) > 1
                                    else dropped[0].column, dropped[0].shown_by)]
    render_table(console, fitted, title)
    if extra:
        console.print(_text(f"the first {len(kept)} of {len(kept) + extra} rows shown (--format csv writes them all)", "dim"))


def _column_values(column: Any, rows: int) -> list[Any]:
    if isinstance(column, np.ndarray) and column.ndim:
        if isinstance(column, np.ma.MaskedArray):
            return [None if m else v for v, m in zip(column.data.tolist(), np.ma.getmaskarray(column).tolist())]
        return column.tolist()
    value = column.item() if isinstance(column, np.generic) else column
    return [value] * rows


# ------------------------------------------------------------------- stats


def render_stats(results: Sequence[Any], console: Console, sort: str = "unit", top: int | None = None) -> None:
    """``stats``: one table per layer, a section per value, one row per unit."""
    by_layer: dict[str, list[Any]] = {}
    for gs in results:
        by_layer.setdefault(gs.layer, []).append(gs)
    for name, layer_stats in by_layer.items():
        first = layer_stats[0]
        order_text = {"unit": "", "saturation": " · most saturated first", "variability": " · most variable first"}[sort]
        title = f"{name}: {first.kind}, {first.units} units · {first.steps} steps (masked steps excluded){order_text}"
        columns, sections = _stats_columns(layer_stats, sort, top)
        fitted = fit_columns(columns, console.width, [
            Narrowing("shorten", "gate"),
            Narrowing("drop", "var. rank", "--sort variability orders by it; --format csv has it"),
            Narrowing("drop", "sat. rank", "--sort saturation orders by it; --format csv has it"),
            Narrowing("shorten", "left sat."), Narrowing("shorten", "right sat."),
        ])
        render_table(console, fitted, title, sections=sections)
    if by_layer:
        console.print(_text("left/right sat.: share of steps below / above the thresholds shown "
                            "(10 % and 90 % of the activation's range; Karpathy et al. 2015). "
                            "Pipe or use --format csv for every value.", "dim"))


def _stats_columns(layer_stats: Sequence[Any], sort: str, top: int | None) -> tuple[list[Column], list[int]]:
    cells: dict[str, list[str]] = {key: [] for key in ("gate", "short", "unit", "mean", "std", "min", "max", "left",
                                                        "right", "sat", "var")}
    sections: list[int] = []
    thresholds: list[str] = []
    for gs in layer_stats:
        if cells["unit"]:
            sections.append(len(cells["unit"]))
        order = gs.order(sort)[:top] if top is not None else gs.order(sort)
        sat, var = gs.saturation_rank(), gs.variability_rank()
        limits = gs.thresholds
        if limits is not None:
            thresholds.append(f"{gs.gate} <{limits[0]:.3g} >{limits[1]:.3g}")
        for row, unit in enumerate(order):
            label = "" if row else (gs.gate if limits is None else f"{gs.gate}  <{limits[0]:.3g} >{limits[1]:.3g}")
            cells["gate"].append(label)
            cells["short"].append("" if row else gs.gate)
            cells["unit"].append(str(int(unit)))
            for key in ("mean", "std", "min", "max"):
                cells[key].append(format_number(float(getattr(gs, key)[unit])))
            cells["left"].append(_percent(float(gs.left[unit])))
            cells["right"].append(_percent(float(gs.right[unit])))
            cells["sat"].append("" if np.ma.is_masked(sat[unit]) else str(int(sat[unit])))
            cells["var"].append("" if np.ma.is_masked(var[unit]) else str(int(var[unit])))
    columns = [
        Column("gate", cells["gate"], short="gate", short_cells=cells["short"],
               short_legend="thresholds: " + ", ".join(thresholds) if thresholds else ""),
        Column("unit", cells["unit"], "right"),
        *[Column(key, cells[key], "right") for key in ("mean", "std", "min", "max")],
        Column("left sat.", cells["left"], "right", short="left", short_legend="left/right = left/right sat."),
        Column("right sat.", cells["right"], "right", short="right"),
        Column("sat. rank", cells["sat"], "right"),
        Column("var. rank", cells["var"], "right"),
    ]
    return columns, sections


def _percent(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{100 * value:.1f}%"


__all__: list[str] = [
    "Column", "Fitted", "Narrowing", "Painter", "TraceLayout", "fit_columns", "format_number", "render_layers",
    "render_rows", "render_stats", "render_table", "render_trace", "render_verify", "render_weights", "table_width",
]
