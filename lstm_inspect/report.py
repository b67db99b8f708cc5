"""``lstm-inspect report``: one self-contained HTML file to explore a model's gates.

The page is drawn by plotly.js, inlined from the plotly package
(``plotly.offline.get_plotlyjs``: its offline embedding), with the page's own
script and style (``report_app.js``, ``report.css``) and the data, all in the
one file: it opens offline, with a double-click.  plotly is an optional extra
(``pip install 'lstm-inspect[report]'``), imported only here.

What the data holds (:func:`report_payload`):

* the model: the ``layers`` table, the Keras version, each recurrent layer's
  activations and step equations as ``weights`` prints them;
* per shown sequence and recurrent layer, every traced value as a units × time
  matrix (float32, base64), and which steps are masked; a ConvLSTM's values
  are each filter's mean over the positions;
* per layer, the saturation scatter (``stats.saturation_points``, over all
  sequences, as ``stats`` computes it) and the labelled weights
  (``weights.label_weights``);
* the input: each step's first features, or its token (``--vocab``).

Size bounds: at most ``max_sequences`` sequences are shown, and the matrices
hold at most ``TRACE_BUDGET`` numbers in all: a longer input is shown in
columns that are each the mean of ``stride`` consecutive steps, and the page
says so.  The exact values stay in ``trace``'s output.  Weights beyond
``WEIGHT_BUDGET`` numbers are shown for the first units only, also with a note.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .engine import ReplayOptions, compile_model
from .errors import UsageProblem
from .model import Model, RecurrentLayer

TRACE_BUDGET = 2_000_000  # float32 numbers of trace shown (about 10.7 MB of base64)
MAX_COLUMNS = 4_000  # time columns per heatmap, so that a browser draws them quickly
WEIGHT_BUDGET = 600_000  # float32 numbers of weights shown
INPUT_FEATURES = 8  # features of each input row shown on hover
TEXT_TOKENS = 20_000  # tokens drawn in the text view, per sequence


def require_plotly() -> None:
    """Raise ``UsageProblem`` (one line naming the extra) when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise UsageProblem("report needs plotly: pip install 'lstm-inspect[report]'") from None


# ----------------------------------------------------------------------------- collecting


@dataclass
class _Bins:
    """Per (sequence, layer): running sums of each value over bins of ``stride`` steps."""

    stride: int
    columns: int
    units: int
    sums: dict[str, NDArray] = field(default_factory=dict)  # value -> (U, C) float64
    counts: dict[str, NDArray] = field(default_factory=dict)  # value -> (U, C) int
    masked: NDArray | None = None  # (C,) masked steps per bin
    steps: NDArray | None = None  # (C,) steps seen per bin

    def add(self, t: NDArray, values: Mapping[str, NDArray], masked: NDArray | None) -> None:
        """``t`` (S,), ``values[name]`` (S, U), ``masked`` (S,) or None.

        A block's steps are consecutive (descending for go_backwards): sorted, each run of
        steps in one column is summed at once (``reduceat``).
        """
        if self.steps is None:
            self.steps = np.zeros(self.columns, dtype=np.int64)
            self.masked = np.zeros(self.columns, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        col = t[order] // self.stride
        starts = np.concatenate([[0], np.flatnonzero(np.diff(col)) + 1])
        cols = col[starts]
        self.steps[cols] += np.diff(np.append(starts, col.shape[0]))
        if masked is not None:
            self.masked[cols] += np.add.reduceat(masked[order].astype(np.int64), starts)
        for name, value in values.items():
            if name not in self.sums:
                self.sums[name] = np.zeros((self.units, self.columns))
                self.counts[name] = np.zeros((self.units, self.columns), dtype=np.int64)
            value = value[order]
            finite = np.isfinite(value)
            self.sums[name][:, cols] += np.add.reduceat(np.where(finite, value, 0.0).astype(np.float64), starts).T
            self.counts[name][:, cols] += np.add.reduceat(finite.astype(np.int64), starts).T

    def means(self) -> dict[str, NDArray]:
        """value -> (U, C) float32: each bin's mean (NaN where every step was masked)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {name: (self.sums[name] / self.counts[name]).astype(np.float32) for name in self.sums}


def _b64(array: NDArray, dtype: str = "<f4") -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def report_payload(
    model: Model,
    sequences: Any,
    *,
    layers: Sequence[str] | None = None,
    vocab: Mapping[int, str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    max_sequences: int = 20,
    trace_budget: int = TRACE_BUDGET,
    weight_budget: int = WEIGHT_BUDGET,
    start: str | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as a JSON-ready dict (see the module docstring).

    ``start`` feeds the input to that layer (``--from``)."""
    from .api import layer_rows
    from .batching import chain_as_sample, plan_inputs, trace_blocks
    from .stats import compute_stats, saturation_points

    options = options or ReplayOptions()
    selected = model.select_recurrent(layers)
    program = compile_model(model, options, upto=[layer.name for layer in selected], start=start)
    feed = plan_inputs(model, program, sequences, stateful)
    samples = feed.samples
    if not samples:
        raise UsageProblem("the input holds no sequence")
    # A stateful model fed by its batch shape is traced chain by chain: each chain is one sequence.
    sequences_shown = [chain_as_sample(feed, j) for j in range(feed.chain_count)] if feed.chains else samples
    shown = sequences_shown[:max_sequences]
    notes = []
    if len(sequences_shown) > len(shown):
        notes.append(f"Showing the first {len(shown)} of {len(sequences_shown)} sequences (--max-sequences); "
                     "the saturation scatter counts them all.")
    time_input = next((k for k, spec in enumerate(program.inputs) if spec.has_time_axis), 0)
    lengths = [int(s.arrays[time_input].shape[0]) for s in shown]
    per_step = sum(len(layer.kind.value_names(False)) * layer.units for layer in selected)
    total = sum(lengths) * per_step
    stride = max(1, math.ceil(total / trace_budget), math.ceil(max(lengths) / MAX_COLUMNS))
    if stride > 1:
        notes.append(f"The input is long: each column shows the mean of {stride} consecutive steps "
                     f"({sum(lengths):,} steps in all), so the file stays small. Hovering shows the steps a "
                     "column covers; `lstm-inspect trace` writes the exact values of every step.")
    bins = {(k, layer.name): _Bins(stride, -(-lengths[k] // stride), layer.units)
            for k in range(len(shown)) for layer in selected}
    index = {s.id: k for k, s in enumerate(shown)}
    seen = {"convolutional": False}

    def binned(blocks):
        """The trace, passed on to the statistics after the shown sequences' steps are binned."""
        for tb in blocks:
            block = tb.block
            for row, sample_id in enumerate(tb.sequences):
                k = index.get(sample_id)
                if k is None:
                    continue
                values = {}
                for name, value in block.values.items():
                    value = value[:, row]
                    if value.ndim > 2:  # a ConvLSTM's maps: each filter's mean over the positions
                        seen["convolutional"] = True
                        value = np.nanmean(value, axis=tuple(range(1, value.ndim - 1)))
                    values[name] = value
                bins[(k, block.layer.name)].add(block.t, values, None if block.masked is None else block.masked[:, row])
            yield tb

    # One replay of every sequence: the scatter counts them all, the heatmaps show the first ones.
    blocks = trace_blocks(model, feed, layers=[layer.name for layer in selected], options=options,
                          initial_states=initial_states, program=program)
    stats = compute_stats(model, samples, layers=[layer.name for layer in selected], options=options,
                          blocks=binned(blocks))
    if seen["convolutional"]:
        notes.append("Convolutional layers (ConvLSTM) are shown per filter: each value is the filter's mean over "
                     "all positions.")
    weights, weight_notes = _weights(model, selected, weight_budget)
    notes += weight_notes
    return {
        "title": f"{model.label}: lstm-inspect report",
        "model": _model_part(model, selected, layer_rows(model)),
        "layers": [_layer_part(layer, options, [bins[(k, layer.name)] for k in range(len(shown))]) for layer in selected],
        "stride": stride,
        "sequences": [_sequence_part(sample, lengths[k], stride, program, vocab, time_input)
                      for k, sample in enumerate(shown)],
        "trace": [[_trace_part(bins[(k, layer.name)]) for layer in selected] for k in range(len(shown))],
        "saturation": [_saturation_part(layer, stats, saturation_points) for layer in selected],
        "weights": weights,
        "notes": notes,
        "text": bool(program.inputs and program.inputs[time_input].token_ids),
    }


def _model_part(model: Model, selected: Sequence[RecurrentLayer], rows: list[dict]) -> dict[str, Any]:
    from .weights import equations

    columns = [c for c in (rows[0].keys() if rows else []) if c != "keras_version"]
    return {
        "label": model.label,
        "keras_version": model.keras_version or "unknown",
        "class": model.graph.class_name,
        "columns": columns,
        "rows": [[_cell(row[c]) for c in columns] for row in rows],
        "recurrent": [
            {"name": layer.name, "kind": layer.kind.name, "units": layer.units,
             "activation": layer.activation or "unknown", "recurrent_activation": layer.recurrent_activation or "unknown",
             "go_backwards": layer.go_backwards, "equations": equations(layer)}
            for layer in selected
        ],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _layer_part(layer: RecurrentLayer, options: ReplayOptions, bins: Sequence[_Bins]) -> dict[str, Any]:
    from .plot import colour_scale

    values = layer.kind.value_names(False)
    scales = {}
    for name in values:
        shown = [b.means()[name].ravel() for b in bins if name in b.sums]
        cmap, low, high = colour_scale(layer, name, np.concatenate(shown) if shown else np.zeros(0), options)
        scales[name] = {"diverging": cmap != "viridis", "range": [low, high]}
    names = {name: (layer.kind.gate_name(name) if name in layer.kind.gates else
                    {"cell": "cell state", "hidden": "hidden state"}.get(name, name)) for name in values}
    return {"name": layer.name, "kind": layer.kind.name, "units": layer.units, "values": values, "value_names": names,
            "scales": scales, "go_backwards": layer.go_backwards}


def _sequence_part(sample, length: int, stride: int, program, vocab, time_input: int) -> dict[str, Any]:
    array = np.asarray(sample.arrays[time_input])
    part: dict[str, Any] = {"id": str(sample.id), "steps": length}
    if program.inputs[time_input].token_ids:
        ids = array.reshape(length, -1)[:, 0].astype(np.int64)
        part["ids"] = ids[:TEXT_TOKENS].tolist()
        if vocab is not None:
            part["tokens"] = [vocab.get(int(i), f"<{int(i)}>") for i in ids[:TEXT_TOKENS]]
    elif stride == 1:
        flat = array.reshape(length, -1)
        part["features"] = int(flat.shape[1])
        part["inputs"] = _b64(flat[:, :INPUT_FEATURES])
        part["input_width"] = int(min(flat.shape[1], INPUT_FEATURES))
    return part


def _trace_part(bins: _Bins) -> dict[str, Any]:
    means = bins.means()
    part = {name: _b64(value) for name, value in means.items()}
    masked = (bins.masked > 0) if bins.masked is not None else np.zeros(bins.columns, dtype=bool)
    part["masked"] = _b64(masked, "u1")
    part["columns"] = bins.columns
    return part


def _saturation_part(layer: RecurrentLayer, stats, points_of) -> list[dict[str, Any]]:
    mine = [gs for gs in stats if gs.layer == layer.name]
    return [{"gate": p.gate, "left": p.left, "right": p.right, "units": list(p.units), "shared": p.shared}
            for p in points_of(mine)]


def _weights(model: Model, selected: Sequence[RecurrentLayer], budget: int) -> tuple[list[dict[str, Any]], list[str]]:
    from .weights import layer_gate_blocks

    total = sum(int(np.asarray(array).size) for layer in selected for _, array in layer.weights.tensors())
    notes = []
    result = []
    for layer in selected:
        keep = layer.units
        if total > budget:
            keep = max(1, int(layer.units * budget / total))
            notes.append(f"Weights of {layer.name} are shown for units 0–{keep - 1} of {layer.units} (the file is "
                         "large); `lstm-inspect weights` lists them all.")
        blocks = []
        for block in layer_gate_blocks(layer):
            values = np.asarray(block.values, dtype=np.float32)
            if values.ndim > 2:  # a convolutional kernel: taps first; show the centre tap
                values = values[tuple(s // 2 for s in values.shape[:-2])]
            values = values[..., :keep]
            if block.tensor == "recurrent_kernel":
                values = values[:keep]
            blocks.append({"tensor": block.tensor, "gate": block.gate, "gate_name": block.gate_name,
                           "columns": block.columns, "path": block.path, "shape": list(values.shape),
                           "values": _b64(values), "rows": block.row_meaning or ""})
        result.append({"layer": layer.name, "blocks": blocks})
    return result, notes


# ----------------------------------------------------------------------------- the page


def render_html(payload: Mapping[str, Any]) -> str:
    """The self-contained page for ``payload``."""
    require_plotly()
    from plotly.offline import get_plotlyjs

    assets = resources.files("lstm_inspect")
    style = (assets / "report.css").read_text(encoding="utf-8")
    app = (assets / "report_app.js").read_text(encoding="utf-8")
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = html.escape(str(payload["title"]))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{title}</title>\n<style>\n{style}\n</style>\n"
        f"<script>\n{get_plotlyjs()}\n</script>\n"
        "</head>\n<body>\n<div id=\"app\"></div>\n"
        f"<script type=\"application/json\" id=\"payload\">{data}</script>\n"
        f"<script>\n{app}\n</script>\n</body>\n</html>\n"
    )


def build_report(model: Model, sequences: Any, **kwargs: Any) -> str:
    """The report page for ``model`` on ``sequences`` (see :func:`report_payload` for the options)."""
    require_plotly()
    return render_html(report_payload(model, sequences, **kwargs))


def page_size_text(page: str) -> str:
    """``12.3 MB``: the page's size, for the message after writing it."""
    return f"{len(page.encode('utf-8')) / 1e6:.1f} MB"


__all__ = ["build_report", "render_html", "report_payload", "require_plotly"]
