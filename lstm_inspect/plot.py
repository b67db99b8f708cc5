"""Pictures of a trace: gate heatmaps over time, and the saturation scatter.

matplotlib is an optional extra (``pip install 'lstm-inspect[plot]'``) and
is imported only in this module, which the CLI and the API import only when
a picture is asked for.  Figures are built with ``matplotlib.figure.Figure``
on the Agg canvas, never through pyplot, so nothing global (the backend,
open windows) is touched.

* :func:`trace_figure`: one column per recurrent layer (a Bidirectional
  gives two), one row per value (``i, f, c, o, cell, hidden`` for LSTM,
  ``z, r, c, hidden`` for GRU); each panel is units × time for one
  sequence, with ``t`` the input row as in the trace (a go_backwards layer's
  steps are laid out in input order too).  Gates use a fixed 0..1 scale,
  tanh values -1..1, ``cell`` a scale symmetric about 0; masked steps are
  grey.
* :func:`saturation_figure`: Karpathy, Johnson & Fei-Fei (2015) §4.2: one
  panel per layer, one point per unit and gate (the gates ``i, f, o`` or
  ``z, r``) at x = fraction of steps left-saturated (< 0.1), y = fraction
  right-saturated (> 0.9).  Points near the origin are rarely saturated;
  points on the diagonal x + y = 1 always are.  Units at exactly the same
  place are drawn as one larger point with their number beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from .batching import Inputs, trace_blocks
from .columns import trace_columns
from .engine import ReplayOptions
from .errors import UsageProblem
from .feeding import Feed
from .model import Model, RecurrentLayer
from .stats import ACTIVATION_RANGE, LEFT_THRESHOLD, RIGHT_THRESHOLD, GateStats, saturation_points, value_activation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_FORMATS = ("png", "svg", "pdf")
GATE_COLOURS = {
    "i": "#1f77b4",
    "f": "#d62728",
    "o": "#2ca02c",
    "c": "#9467bd",
    "z": "#ff7f0e",
    "r": "#17becf",
    "h": "#7f7f7f",
}
_STATE_NAMES = {"cell": "cell state", "hidden": "hidden state"}


def require_matplotlib() -> None:
    """Raise ``UsageProblem`` (one line naming the extra) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageProblem("plot needs matplotlib: pip install 'lstm-inspect[plot]'") from None


def format_for(path: str | None, requested: str | None = None) -> str:
    """The picture format: as requested, else by the file's extension (png, svg, pdf)."""
    if requested:
        if requested not in PLOT_FORMATS:
            raise UsageProblem(f"unknown picture format '{requested}' (choose from {', '.join(PLOT_FORMATS)})")
        return requested
    extension = os.path.splitext(path or "")[1].lower().lstrip(".")
    if extension not in PLOT_FORMATS:
        raise UsageProblem(f"-o {path}: the file name must end in .png, .svg or .pdf (or give --format)")
    return extension


def save_figure(figure: Figure, stream: BinaryIO, fmt: str, dpi: float = 100) -> None:
    """Write ``figure`` to a binary stream; dates are left out so the bytes are reproducible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    metadata: dict[str, Any] = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    figure.savefig(stream, format=fmt, dpi=dpi, metadata=metadata)


# --------------------------------------------------------------------- heatmaps


def collect_sequence(
    model: Model,
    sequences: Inputs | Feed,
    layers: Sequence[RecurrentLayer],
    *,
    sequence: str | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> tuple[object, dict[str, tuple[NDArray, dict[str, NDArray]]]]:
    """Trace one sequence (``sequence`` is its id as text; the first when None).

    Returns (id, {layer: (t (T,), {value: (T, U)})}) with steps in input-row
    order.  Only that sequence is replayed, unless the feed is stateful (its
    state then depends on the sequences before it).  A stateful model fed by
    its batch shape offers its chains (ids 0 .. B-1) as the sequences.
    ``start`` feeds the input to that layer (``--from``).
    """
    from .batching import plan_inputs
    from .engine import compile_model

    program = compile_model(model, options, upto=[layer.name for layer in layers], start=start)
    feed = plan_inputs(model, program, sequences, stateful)
    ids = list(range(feed.chain_count)) if feed.chains else [s.id for s in feed.samples]
    position = 0
    if sequence is not None:
        matches = [k for k, name in enumerate(ids) if str(name) == str(sequence)]
        if not matches:
            known = ", ".join(str(name) for name in ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise UsageProblem(f"--sequence {sequence}: no such sequence in the input (have: {known})")
        position = matches[0]
    chosen = ids[position]
    if feed.chains:
        replay = feed
    elif feed.stateful:
        replay = replace(feed, samples=feed.samples[: position + 1])
    else:
        replay = replace(feed, samples=[feed.samples[position]])
    parts: dict[str, tuple[list, dict[str, list]]] = {}
    for tb in trace_blocks(model, replay, layers=[layer.name for layer in layers], options=options,
                           initial_states=initial_states, program=program):
        if tb.sequences[0] != chosen or tb.block.batch != 1:
            continue
        t_list, values = parts.setdefault(tb.layer.name, ([], {}))
        t_list.append(tb.block.t)
        for name, value in tb.block.values.items():
            if value.ndim > 3:  # a ConvLSTM's maps: each filter's mean over the positions
                value = np.nanmean(value, axis=tuple(range(2, value.ndim - 1)))
            values.setdefault(name, []).append(value[:, 0, :])  # (S, U)
    result = {}
    for name, (t_list, values) in parts.items():
        t = np.concatenate(t_list)
        order = np.argsort(t, kind="stable")
        result[name] = (t[order], {key: np.concatenate(chunks)[order] for key, chunks in values.items()})
    return chosen, result


def trace_figure(
    model: Model,
    sequences: Inputs | Feed,
    *,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    units: Sequence[int] | None = None,
    sequence: str | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> Figure:
    """Heatmaps (units × t) of every value of every selected layer for one sequence: a Figure.
    ``start`` feeds the input to that layer (``--from``)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    options = options or ReplayOptions()
    selected = model.select_recurrent(layers)
    try:
        rows = list(trace_columns(selected, gates=gates, pre_activation=False, masked=False).names)
    except ValueError as exc:  # an unknown gate
        raise UsageProblem(str(exc)) from None
    seq_id, traced = collect_sequence(model, sequences, selected, sequence=sequence, options=options,
                                      stateful=stateful, initial_states=initial_states, start=start)
    steps = max((t.shape[0] for t, _ in traced.values()), default=1)
    widest = max(layer.units for layer in selected)
    shown = widest if units is None else len([u for u in units if u < widest])
    if shown == 0:
        raise UsageProblem(f"--units: none of the units exist (the widest selected layer has {widest} units)")
    width = float(np.clip(1.6 + 0.1 * steps, 3.2, 9.0))
    height = float(np.clip(0.7 + 0.16 * shown, 1.3, 3.6))
    figure = Figure(figsize=(width * len(selected), height * len(rows) + 0.5), layout="constrained")
    axes = figure.subplots(len(rows), len(selected), squeeze=False)
    figure.suptitle(f"{model.label} · sequence {seq_id}", fontsize=11)
    panels = []  # (row, col, layer, t, kept units, (U, T) matrix)
    for col, layer in enumerate(selected):
        t, values = traced.get(layer.name, (np.zeros(0, dtype=np.int64), {}))
        keep = [u for u in (units if units is not None else range(layer.units)) if u < layer.units]
        for row, name in enumerate(rows):
            ax = axes[row][col]
            if row == 0:
                direction = "\nprocessed last row first (go_backwards)" if layer.go_backwards else ""
                ax.set_title(f"{layer.name} ({layer.kind}, {layer.units} units){direction}", fontsize=9)
            value = values.get(name)
            if value is None or not keep or t.shape[0] == 0:
                ax.set_axis_off()
                continue
            panels.append((row, col, layer, t, keep, value[:, keep].T))
            if row == len(rows) - 1 or values.get(rows[row + 1]) is None:
                ax.set_xlabel("t (input row)", fontsize=8)
    # One colour scale and one colour bar per row, shared by the layers.
    for row, name in enumerate(rows):
        in_row = [panel for panel in panels if panel[0] == row]
        if not in_row:
            continue
        scale = _shared_scale([colour_scale(layer, name, matrix, options) for _, _, layer, _, _, matrix in in_row])
        image = None
        for _, col, _, t, keep, matrix in in_row:
            image = _heatmap(axes[row][col], matrix, t, keep, scale)
        described = _STATE_NAMES.get(name) or in_row[0][2].kind.gate_name(name)
        axes[row][0].set_ylabel(f"{name}\n({described})\nunit", fontsize=8)
        bar = figure.colorbar(image, ax=list(axes[row]), fraction=0.05 / len(selected) ** 0.5, pad=0.01, aspect=12)
        bar.ax.tick_params(labelsize=6)
    return figure


def _shared_scale(scales: list[tuple[str, float, float]]) -> tuple[str, float, float]:
    if all(scale == scales[0] for scale in scales):
        return scales[0]
    low, high = min(s[1] for s in scales), max(s[2] for s in scales)
    if low >= 0:
        return "viridis", 0.0, high
    top = max(-low, high)
    return "RdBu_r", -top, top


def colour_scale(layer: RecurrentLayer, name: str, value: NDArray, options: ReplayOptions) -> tuple[str, float, float]:
    """(colour map, low, high) for a value: its activation's range (gates 0..1 viridis, tanh values
    -1..1 RdBu_r), else the range of ``value`` (symmetric about 0 when it has negatives)."""
    bounds = ACTIVATION_RANGE.get(value_activation(layer, name, options) or "")
    if bounds is None and name == "hidden":
        # o·a(cell) (LSTM) and z·h + (1 - z)·c (GRU) stay within a bounded a's range.
        bounds = ACTIVATION_RANGE.get(layer.activation or options.assume_activation or "")
    if bounds is not None:
        return ("viridis" if bounds[0] == 0 else "RdBu_r"), bounds[0], bounds[1]
    finite = value[np.isfinite(value)]
    if finite.size == 0:
        return "viridis", 0.0, 1.0
    if finite.min() >= 0:
        return "viridis", 0.0, float(max(finite.max(), 1e-12))
    top = float(max(np.abs(finite).max(), 1e-12))
    return "RdBu_r", -top, top


def _heatmap(ax: Axes, matrix: NDArray, t: NDArray, units: list[int], scale: tuple[str, float, float]) -> Any:
    import matplotlib

    cmap_name, vmin, vmax = scale
    cmap = matplotlib.colormaps[cmap_name].with_extremes(bad="#d9d9d9")
    image = ax.imshow(
        np.ma.masked_invalid(matrix),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        extent=(float(t[0]) - 0.5, float(t[-1]) + 0.5, len(units) - 0.5, -0.5),
    )
    if len(units) <= 16:
        ax.set_yticks(range(len(units)), [str(u) for u in units])
    ax.tick_params(labelsize=7)
    return image


# ------------------------------------------------------------------- saturation


def saturation_figure(results: Sequence[GateStats], title: str = "") -> Figure:
    """The left- vs right-saturation scatter (one panel per layer) from ``stats.compute_stats`` results."""
    require_matplotlib()
    from matplotlib.figure import Figure

    by_layer: dict[str, list[GateStats]] = {}
    for gs in results:
        by_layer.setdefault(gs.layer, []).append(gs)
    count = max(len(by_layer), 1)
    cols = min(count, 4)
    rows = -(-count // cols)
    figure = Figure(figsize=(3.4 * cols, 3.5 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    if title:
        figure.suptitle(title, fontsize=11)
    for ax in axes.flat[len(by_layer):]:
        ax.set_axis_off()
    for ax, (name, layer_stats) in zip(axes.flat, by_layer.items()):
        ax.plot([0, 1], [1, 0], color="#999999", linestyle="--", linewidth=0.8)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        ax.set_title(f"{name} ({layer_stats[0].kind}, {layer_stats[0].units} units)", fontsize=9)
        ax.set_xlabel(f"fraction left-saturated (< {LEFT_THRESHOLD:g})", fontsize=8)
        ax.set_ylabel(f"fraction right-saturated (> {RIGHT_THRESHOLD:g})", fontsize=8)
        ax.tick_params(labelsize=7)
        points = saturation_points(layer_stats)
        # Bigger first, so a smaller group at the same place stays visible on top of it.
        for point in sorted(points, key=lambda p: -p.count):
            ax.scatter(point.left, point.right, s=22 * np.sqrt(point.count), alpha=0.75,
                       color=GATE_COLOURS.get(point.gate), edgecolors="white", linewidths=0.4)
        for gate in dict.fromkeys(point.gate for point in points):
            ax.scatter([], [], s=22, color=GATE_COLOURS.get(gate), label=gate)  # one legend entry per gate
        # Where points overlap, say how many units sit there (of all gates).
        for (left, right), shared in {(p.left, p.right): p.shared for p in points}.items():
            if shared > 1:
                ax.annotate(f"{shared}", (left, right), xytext=(4, 3), textcoords="offset points", fontsize=7,
                            color="#333333")
        if points:
            ax.legend(fontsize=7, title="gate", title_fontsize=7, loc="upper right")
            ax.text(0.99, 0.02, "numbers: units at one point", ha="right", va="bottom", fontsize=6,
                    color="#555555", transform=ax.transAxes)
        else:
            ax.text(0.5, 0.5, "no gate with a bounded activation", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
    return figure
