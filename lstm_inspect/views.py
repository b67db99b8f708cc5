"""Terminal views (Rich): the default output when stdout is a terminal.

These are for people reading a screen; scripts get CSV/JSON from
``writers``.  Every view shows the same numbers the data formats carry,
rounded for reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from .frames import TraceColumns
from .model import Model, RecurrentLayer
from .tracing import TraceBlock
from .weights import GateBlock, equations

HEAD_STEPS = 12
TAIL_STEPS = 4


def console_for(stream: TextIO, color: bool | None = None):
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # Rich's own handler exits with status 1; the CLI ends a closed pipe quietly with 0.
            self.quiet = True
            raise BrokenPipeError

    if color is None:
        try:
            color = stream.isatty()
        except (AttributeError, ValueError):
            color = False
    return _Console(file=stream, force_terminal=color, no_color=not color, highlight=False, soft_wrap=False,
                    width=None if color else 160)


def _num(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


# ------------------------------------------------------------------- layers


def render_layers(rows: Sequence[dict], console, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    columns = list(rows[0].keys()) if rows else []
    for name in columns:
        table.add_column(name, overflow="fold", justify="right" if name in ("units", "params") else "left")
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]).lower() if isinstance(row[c], bool) else str(row[c]) for c in columns))
    console.print(table)


# ------------------------------------------------------------------- weights


def render_weights(model: Model, blocks: Iterable[GateBlock], console, show_values: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    by_layer: dict[str, list[GateBlock]] = {}
    for block in blocks:
        by_layer.setdefault(block.layer, []).append(block)
    for name, layer_blocks in by_layer.items():
        layer = model.recurrent_layer(name)
        console.print(Text(_layer_title(model, layer), style="bold"))
        table = Table(header_style="bold", show_lines=False)
        for column in ("tensor", "gate", "slice", "shape", "mean", "std", "min", "max", "L2 norm", "path in file"):
            table.add_column(
                column,
                justify="right" if column in ("mean", "std", "min", "max", "L2 norm") else "left",
                overflow="fold",
            )
        previous = None
        for block in layer_blocks:
            stats = block.stats()
            if previous is not None and previous != block.tensor:
                table.add_section()
            previous = block.tensor
            shape = "×".join(str(d) for d in block.values.shape)
            table.add_row(
                block.tensor,
                f"{block.gate} ({block.gate_name})",
                block.columns,
                shape,
                _num(stats["mean"]),
                _num(stats["std"]),
                _num(stats["min"]),
                _num(stats["max"]),
                _num(stats["l2"]),
                block.path,
            )
        console.print(table)
        for line in equations(layer):
            console.print(Text("  " + line, style="dim"))
        if layer.activation is None:
            console.print(Text("  activations unknown: weights-only file", style="yellow"))
        console.print()
        if show_values:
            for block in layer_blocks:
                _render_values(block, console)


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


def _render_values(block: GateBlock, console) -> None:
    from rich.table import Table

    title = f"{block.layer} {block.tensor} {block.columns}: gate {block.gate} ({block.gate_name})"
    table = Table(title=title, title_justify="left", header_style="bold")
    values = block.values
    prefix = {"kernel": "x", "recurrent_kernel": "h"}.get(block.tensor)
    table.add_column(block.row_meaning or "", justify="left")
    for unit in range(block.unit_count):
        table.add_column(f"unit {unit}", justify="right")
    if values.ndim == 2:
        for row in range(values.shape[0]):
            table.add_row(f"{prefix}[{row}]", *(_num(float(v), 5) for v in values[row]))
    else:
        table.add_row("bias", *(_num(float(v), 5) for v in values))
    console.print(table)


# ------------------------------------------------------------------- trace


@dataclass
class _Excerpt:
    layer: RecurrentLayer
    sequence: object
    head: list = field(default_factory=list)  # (t, {name: (U,)}, masked)
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_STEPS))
    steps: int = 0


def render_trace(blocks: Iterable[TraceBlock], spec: TraceColumns, console) -> int:
    """A compact view per sequence and layer: the first and last steps, one row each.

    Returns the number of steps seen.
    """
    excerpts: dict[tuple, _Excerpt] = {}
    order: list[tuple] = []
    total = 0
    for tb in blocks:
        block = tb.block
        for n, seq in enumerate(tb.sequences):
            key = (repr(seq), tb.layer.name)
            excerpt = excerpts.get(key)
            if excerpt is None:
                excerpt = excerpts[key] = _Excerpt(tb.layer, seq)
                order.append(key)
            for s in range(block.steps):
                row = (
                    int(block.t[s]),
                    {name: value[s, n] for name, value in block.values.items()},
                    bool(block.masked[s, n]) if block.masked is not None else False,
                )
                if len(excerpt.head) < HEAD_STEPS:
                    excerpt.head.append(row)
                else:
                    excerpt.tail.append(row)
                excerpt.steps += 1
                total += 1
    for key in order:
        _render_excerpt(excerpts[key], spec, console)
    if total:
        console.print("[dim]gates 0 → 1 shaded blue → red; c, cell, hidden −1 → 1 shaded blue → red. "
                      "Pipe or use --format csv for every value.[/dim]")
    return total


def _render_excerpt(excerpt: _Excerpt, spec: TraceColumns, console) -> None:
    from rich.table import Table

    layer = excerpt.layer
    names = [n for n in spec.names if n in excerpt.head[0][1]] if excerpt.head else []
    units = list(spec.units) if spec.units is not None else list(range(layer.units))
    units = [u for u in units if u < layer.units]
    # Numbers when they fit the screen, else one shaded cell per unit.
    compact = (len(units) * 8 + 3) * max(len(names), 1) + 12 > console.width
    title = f"sequence {excerpt.sequence} · {layer.name} ({layer.kind}, {layer.units} units) · {excerpt.steps} steps"
    if compact:
        title += f" · units {units[0]}..{units[-1]} as shaded cells"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("t", justify="right", no_wrap=True, min_width=3)
    for name in names:
        table.add_column(name, justify="left" if compact else "right", no_wrap=True)
    rows = list(excerpt.head)
    skipped = excerpt.steps - len(excerpt.head) - len(excerpt.tail)
    for index, row in enumerate(rows + [None] + list(excerpt.tail) if excerpt.tail else rows):
        if row is None:
            table.add_row(f"… {skipped} more" if skipped > 0 else "…", *[""] * len(names))
            continue
        t, values, masked = row
        cells = []
        for name in names:
            vector = values[name][units]
            cells.append(_cell(name, vector, compact, masked))
        table.add_row(str(t) + (" (masked)" if masked else ""), *cells)
    console.print(table)


def _cell(name: str, vector: np.ndarray, compact: bool, masked: bool) -> str:
    signed = name in ("c", "cell", "hidden") or name.startswith("z_")
    if compact:
        return "".join(f"[{_colour(float(v), signed)}]█[/]" if np.isfinite(v) else " " for v in vector)
    parts = []
    for v in vector:
        if not np.isfinite(v):
            parts.append("    —")
        else:
            parts.append(f"[{_colour(float(v), signed)}]{float(v):+.3f}[/]")
    return " ".join(parts)


def _colour(value: float, signed: bool) -> str:
    x = (value + 1) / 2 if signed else value
    x = min(max(x, 0.0), 1.0)
    red = int(40 + 215 * x)
    blue = int(40 + 215 * (1 - x))
    green = int(60 + 60 * (1 - abs(2 * x - 1)))
    return f"rgb({red},{green},{blue})"


# ------------------------------------------------------------------- generic


def render_rows(columns: Sequence[str], rows: Iterable[Sequence], console, title: str | None = None, limit: int = 50) -> None:
    """A plain table of rows (predict and the like), cut after ``limit`` rows."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    shown = 0
    extra = 0
    for row in rows:
        if shown < limit:
            table.add_row(*(_num(v, 6) if isinstance(v, float) else str(v) for v in row))
            shown += 1
        else:
            extra += 1
    if extra:
        table.add_row(f"… {extra} more rows", *[""] * (len(columns) - 1))
    console.print(table)


# ------------------------------------------------------------------- stats


def render_stats(results: Sequence, console, sort: str = "unit", top: int | None = None) -> None:
    """One table per layer: a section per value, one row per unit (``stats`` on a terminal)."""
    from rich.table import Table
    from rich.text import Text

    by_layer: dict[str, list] = {}
    for gs in results:
        by_layer.setdefault(gs.layer, []).append(gs)
    for name, layer_stats in by_layer.items():
        first = layer_stats[0]
        order_text = {"unit": "", "saturation": " · most saturated first", "variability": " · most variable first"}[sort]
        console.print(Text(f"{name}: {first.kind}, {first.units} units · {first.steps} steps (masked steps excluded)"
                           f"{order_text}", style="bold"))
        table = Table(header_style="bold")
        for column in ("gate", "unit", "mean", "std", "min", "max", "left sat.", "right sat.", "sat. rank", "var. rank"):
            table.add_column(column, justify="left" if column == "gate" else "right", no_wrap=True)
        for index, gs in enumerate(layer_stats):
            if index:
                table.add_section()
            order = gs.order(sort)
            if top is not None:
                order = order[:top]
            sat, var = gs.saturation_rank(), gs.variability_rank()
            undefined = np.ma.getmaskarray(sat)
            limits = gs.thresholds
            for row, unit in enumerate(order):
                label = ""
                if row == 0:
                    label = gs.gate if limits is None else f"{gs.gate}  <{limits[0]:.3g} >{limits[1]:.3g}"
                table.add_row(
                    label,
                    str(int(unit)),
                    _num(float(gs.mean[unit])),
                    _num(float(gs.std[unit])),
                    _num(float(gs.min[unit])),
                    _num(float(gs.max[unit])),
                    _percent(float(gs.left[unit])),
                    _percent(float(gs.right[unit])),
                    "" if undefined[unit] else str(int(sat[unit])),
                    "" if np.ma.is_masked(var[unit]) else str(int(var[unit])),  # NaN std (NaN weights)
                )
        console.print(table)
    if by_layer:
        console.print("[dim]left/right sat.: share of steps below / above the thresholds shown "
                      "(10 % and 90 % of the activation's range; Karpathy et al. 2015). "
                      "Pipe or use --format csv for every value.[/dim]")


def _percent(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{100 * value:.1f}%"
