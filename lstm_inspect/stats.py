"""Gate statistics per unit: mean, spread and saturation over every traced step.

For each recurrent layer, value and unit, :func:`compute_stats` streams over
the trace (``batching.trace_blocks``) and accumulates, in float64, the number
of steps, the mean, the population standard deviation (ddof=0), the minimum
and maximum, and the fraction of steps the value is *left-saturated* (below
0.1) or *right-saturated* (above 0.9): for the sigmoid gates, the measure of
Karpathy, Johnson & Fei-Fei, "Visualizing and Understanding Recurrent
Networks" (2015), §4.2, who apply it to those gates only.
Memory stays flat whatever the input length: a block's numbers are merged
into running sums (Chan et al.'s pairwise update for the variance) and the
block is dropped.

Which values, and where saturation is defined:

* LSTM ``i, f, c, o, cell, hidden``; GRU ``z, r, c, hidden``; SimpleRNN
  ``hidden`` (the trace columns, in the same order).
* Saturation is measured on values an activation produces directly, with
  the thresholds placed at 10 % and 90 % of that activation's range: the
  gates ``i, f, o, z, r`` (recurrent_activation; sigmoid and hard_sigmoid
  give < 0.1 and > 0.9), the candidate ``c`` (activation; tanh and softsign
  give < -0.8 and > 0.8, the same pre-activations at which sigmoid crosses
  0.1 and 0.9, since sigmoid(x) = (tanh(x/2) + 1) / 2) and a SimpleRNN's
  ``hidden``.  The thresholds of ``c`` and of a SimpleRNN's ``hidden`` are
  lstm-inspect's own extension of the paper's measure.  ``cell`` and an LSTM's or GRU's ``hidden`` are not the output
  of one activation, and an unbounded activation (relu, linear, ...) has no
  saturation: their saturation fields are empty (NaN).
* Masked steps (a ``Masking`` layer, ``mask_zero``) are left out of every
  figure; ``steps`` counts the steps that were included.

Ranking, within each layer and value: ``saturation_rank`` 1 is the unit
with the largest ``left_saturated + right_saturated`` (empty where
saturation is undefined); ``variability_rank`` 1 the unit with the largest
standard deviation.  Equal scores share a rank (competition ranking: 1, 2,
2, 4), so units that are never saturated all share the last rank; sorted
output lists tied units by unit number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .batching import Inputs, TraceBlock, trace_blocks
from .columns import Block
from .engine import ReplayOptions, value_names
from .errors import UsageProblem
from .feeding import Feed
from .model import Model, RecurrentLayer
from .selection import check_gates

LEFT_THRESHOLD = 0.1  # on the activation's range scaled to [0, 1]
RIGHT_THRESHOLD = 0.9
SORTS = ("unit", "saturation", "variability")

STATS_COLUMNS = [
    "layer",
    "gate",
    "unit",
    "steps",
    "mean",
    "std",
    "min",
    "max",
    "left_saturated",
    "right_saturated",
    "saturation_rank",
    "variability_rank",
]

# Output range of the activations whose saturation is defined.
ACTIVATION_RANGE: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
}


@dataclass(frozen=True)
class GateStats:
    """The statistics of one value (gate) of one recurrent layer, one entry per unit."""

    layer: str  # "lstm", "bi/backward"
    kind: str  # LSTM / GRU / SimpleRNN
    gate: str  # i, f, c, o, cell, hidden (LSTM); z, r, c, hidden (GRU); hidden (SimpleRNN)
    activation: str | None  # the activation that produced the value; None for cell and LSTM/GRU hidden
    bounds: tuple[float, float] | None  # the range the thresholds are placed in; None: no saturation
    steps: int  # steps included (masked steps excluded), summed over sequences
    mean: NDArray[np.float64]  # (U,)
    std: NDArray[np.float64]  # (U,) population standard deviation
    min: NDArray[np.float64]  # (U,)
    max: NDArray[np.float64]  # (U,)
    left: NDArray[np.float64]  # (U,) fraction of steps left-saturated; NaN without bounds
    right: NDArray[np.float64]  # (U,) fraction of steps right-saturated; NaN without bounds

    @property
    def units(self) -> int:
        """The number of units."""
        return int(self.mean.shape[0])

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """(left, right) thresholds in the value's own units, e.g. (0.1, 0.9) or (-0.8, 0.8)."""
        if self.bounds is None:
            return None
        lo, hi = self.bounds
        return lo + LEFT_THRESHOLD * (hi - lo), lo + RIGHT_THRESHOLD * (hi - lo)

    @property
    def saturation(self) -> NDArray[np.float64]:
        """(U,) fraction of steps saturated on either side."""
        return self.left + self.right

    def saturation_rank(self) -> np.ma.MaskedArray:
        """(U,) 1 = most saturated unit; masked where saturation is undefined."""
        return _rank(self.saturation)

    def variability_rank(self) -> np.ma.MaskedArray:
        """(U,) 1 = unit with the largest standard deviation."""
        return _rank(self.std)

    def order(self, sort: str = "unit") -> NDArray[np.int64]:
        """Unit indices in the order of ``sort`` (unit, saturation or variability)."""
        if sort == "unit":
            return np.arange(self.units)
        if sort not in SORTS:
            raise UsageProblem(f"unknown sort '{sort}' (choose from {', '.join(SORTS)})")
        rank = self.saturation_rank() if sort == "saturation" else self.variability_rank()
        return np.lexsort((np.arange(self.units), rank.filled(self.units + 1)))


def _rank(score: NDArray[np.float64]) -> np.ma.MaskedArray:
    """Competition ranking ("1224"): 1 + the number of units with a strictly higher score."""
    defined = np.isfinite(score)
    values = np.where(defined, score, -np.inf)
    ordered = np.sort(values[defined])[::-1]
    higher = np.searchsorted(-ordered, -values, side="left")  # count of defined scores > value
    return np.ma.masked_array((higher + 1).astype(np.int64), mask=~defined)


def value_activation(layer: RecurrentLayer, name: str, options: ReplayOptions | None = None) -> str | None:
    """The activation whose output ``name`` is (None for cell and LSTM/GRU hidden)."""
    options = options or ReplayOptions()
    activation = layer.activation or options.assume_activation
    recurrent_activation = layer.recurrent_activation or options.assume_recurrent_activation
    return layer.kind.value_activation(name, activation, recurrent_activation)


class _Running:
    """Running float64 sums for one (layer, value): merged block by block."""

    def __init__(self, units: int) -> None:
        self.count = 0
        self.mean = np.zeros(units)
        self.m2 = np.zeros(units)
        self.min = np.full(units, np.inf)
        self.max = np.full(units, -np.inf)
        self.left = np.zeros(units, dtype=np.int64)
        self.right = np.zeros(units, dtype=np.int64)

    def add(self, values: NDArray, thresholds: tuple[float, float] | None) -> None:
        """Merge ``values`` (K, U) of K included steps."""
        k = values.shape[0]
        if k == 0:
            return
        x = values.astype(np.float64)
        block_mean = x.mean(axis=0)
        self._merge_moments(k, block_mean, np.square(x - block_mean).sum(axis=0))
        np.minimum(self.min, x.min(axis=0), out=self.min)
        np.maximum(self.max, x.max(axis=0), out=self.max)
        if thresholds is not None:
            low, high = thresholds
            self.left += np.count_nonzero(x < low, axis=0)
            self.right += np.count_nonzero(x > high, axis=0)

    def merge(self, other: _Running) -> None:
        """Fold in the sums of other steps of the same (layer, value) (another partition's)."""
        if other.count == 0:
            return
        self._merge_moments(other.count, other.mean, other.m2)
        np.minimum(self.min, other.min, out=self.min)
        np.maximum(self.max, other.max, out=self.max)
        self.left += other.left
        self.right += other.right

    def _merge_moments(self, k: int, mean: NDArray, m2: NDArray) -> None:
        """Chan et al.'s pairwise update: ``k`` more steps with this ``mean`` and ``m2``."""
        total = self.count + k
        delta = mean - self.mean
        self.mean += delta * (k / total)
        self.m2 += m2 + np.square(delta) * (self.count * k / total)
        self.count = total


@dataclass(frozen=True)
class StatsPlan:
    """What a statistics run summarises: the selected layers, their values and saturation thresholds.

    Built once (``plan_stats``); it pickles, so Dask workers get it with each partition.
    """

    layers: tuple[str, ...]  # recurrent layer names, in model order
    names: dict[str, tuple[str, ...]]  # layer -> values, in trace-column order
    thresholds: dict[str, dict[str, tuple[float, float] | None]]  # layer -> value -> (left, right)
    options: ReplayOptions


def plan_stats(
    model: Model,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
) -> StatsPlan:
    """Select the layers and values to summarise, checking ``gates`` against them."""
    options = options or ReplayOptions()
    if options.pre_activation:
        from dataclasses import replace

        options = replace(options, pre_activation=False)
    selected = model.select_recurrent(layers)
    gates = check_gates(selected, gates, values=True)
    return StatsPlan(
        layers=tuple(layer.name for layer in selected),
        names={layer.name: tuple(_selected_values(layer, gates)) for layer in selected},
        thresholds={layer.name: _thresholds(layer, options) for layer in selected},
        options=options,
    )


def finish_stats(model: Model, plan: StatsPlan, running: Mapping[tuple[str, str], _Running]) -> list[GateStats]:
    """One :class:`GateStats` per planned (layer, value) from the running sums (empty where none)."""
    result = []
    for name in plan.layers:
        layer = model.recurrent_layer(name)
        for value in plan.names[name]:
            acc = running.get((name, value)) or _Running(layer.units)
            result.append(_finish(layer, value, acc, plan.options))
    return result


def compute_stats(
    model: Model,
    sequences: Inputs | Feed,
    *,
    layers: Sequence[str] | None = None,
    gates: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
    blocks: Iterable[TraceBlock] | None = None,
) -> list[GateStats]:
    """Replay ``sequences`` and summarise every selected value of every selected layer.

    Returns one :class:`GateStats` per (layer, value), layers in model order
    and values in trace-column order.  ``gates`` keeps only those values
    (``i,f``, ``cell``, ...).  Streams over the trace: memory does not grow
    with the input.  ``blocks``: the trace of ``sequences`` already under way
    (a caller that reads it too), summarised instead of replaying again.
    """
    plan = plan_stats(model, layers, gates, options)
    if blocks is None:
        blocks = trace_blocks(model, sequences, layers=list(plan.layers), options=plan.options,
                              stateful=stateful, initial_states=initial_states, start=start)
    return finish_stats(model, plan, accumulate(blocks, plan.names, plan.thresholds))


def _selected_values(layer: RecurrentLayer, gates: Sequence[str] | None) -> list[str]:
    return [name for name in value_names(layer, False) if not gates or name in gates]


def _thresholds(layer: RecurrentLayer, options: ReplayOptions) -> dict[str, tuple[float, float] | None]:
    result = {}
    for name in value_names(layer, False):
        bounds = ACTIVATION_RANGE.get(value_activation(layer, name, options) or "")
        result[name] = None if bounds is None else _scaled(bounds)
    return result


def _scaled(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = bounds
    return lo + LEFT_THRESHOLD * (hi - lo), lo + RIGHT_THRESHOLD * (hi - lo)


def accumulate(
    blocks: Iterable[TraceBlock],
    names: Mapping[str, Sequence[str]],
    thresholds: Mapping[str, Mapping[str, tuple[float, float] | None]],
) -> dict[tuple[str, str], _Running]:
    """Fold trace blocks into running sums keyed by (layer, value); masked steps skipped."""
    running: dict[tuple[str, str], _Running] = {}
    for tb in blocks:
        block = tb.block
        layer = block.layer.name
        keep = None if block.masked is None else ~block.masked  # (S, N)
        for name in names.get(layer, ()):
            value = block.values.get(name)
            if value is None:
                continue
            # (K, U): every unmasked step and, for a convolutional layer, every position
            flat = value.reshape(-1, value.shape[-1]) if keep is None else value[keep].reshape(-1, value.shape[-1])
            acc = running.get((layer, name))
            if acc is None:
                acc = running[(layer, name)] = _Running(value.shape[-1])
            acc.add(flat, thresholds[layer][name])
    return running


def _finish(layer: RecurrentLayer, name: str, acc: _Running, options: ReplayOptions) -> GateStats:
    activation = value_activation(layer, name, options)
    bounds = ACTIVATION_RANGE.get(activation or "")
    n = acc.count
    nan = np.full(layer.units, np.nan)
    if n == 0:
        return GateStats(layer.name, layer.kind.name, name, activation, bounds, 0, nan, nan, nan, nan, nan, nan.copy())
    left = acc.left / n if bounds is not None else nan
    right = acc.right / n if bounds is not None else nan.copy()
    return GateStats(
        layer=layer.name,
        kind=layer.kind.name,
        gate=name,
        activation=activation,
        bounds=bounds,
        steps=n,
        mean=acc.mean.copy(),
        std=np.sqrt(acc.m2 / n),
        min=acc.min.copy(),
        max=acc.max.copy(),
        left=left,
        right=right,
    )


@dataclass(frozen=True)
class SaturationPoint:
    """Units of one layer and gate that share one place on the saturation scatter."""

    gate: str
    left: float  # fraction of steps left-saturated
    right: float  # fraction of steps right-saturated
    units: tuple[int, ...]  # every unit of this gate at (left, right)
    shared: int  # points of any gate of the layer at (left, right): the count a picture shows

    @property
    def count(self) -> int:
        """How many units sit at this point."""
        return len(self.units)


def saturation_points(layer_stats: Iterable[GateStats]) -> list[SaturationPoint]:
    """The saturation scatter of one layer, overlapping points merged.

    Karpathy et al. (2015, §4.2) plot one point per unit of each sigmoid gate
    (``i, f, o``; ``z, r`` for a GRU); the candidate ``c`` and values without
    bounds are left out, as are gates that saw no step (a SimpleRNN's bounded
    ``hidden`` is kept, with lstm-inspect's thresholds).  Units of a gate with
    exactly the same fractions (15 units never saturated all sit at (0, 0))
    become one point listing them, and ``shared`` counts every point at that
    place, whatever its gate, so a picture can say how many it hides.
    """
    points: list[SaturationPoint] = []
    for gs in layer_stats:
        if gs.gate == "c" or gs.bounds is None or gs.steps == 0:
            continue
        places: dict[tuple[float, float], list[int]] = {}
        for unit in range(gs.units):
            places.setdefault((float(gs.left[unit]), float(gs.right[unit])), []).append(unit)
        points += [SaturationPoint(gs.gate, left, right, tuple(units), 0) for (left, right), units in places.items()]
    totals: dict[tuple[float, float], int] = {}
    for point in points:
        totals[(point.left, point.right)] = totals.get((point.left, point.right), 0) + point.count
    return [SaturationPoint(p.gate, p.left, p.right, p.units, totals[(p.left, p.right)]) for p in points]


def stats_blocks(results: Iterable[GateStats], sort: str = "unit", top: int | None = None, dtype=np.float32) -> Iterator[Block]:
    """One :class:`Block` per (layer, value) with :data:`STATS_COLUMNS`, units in ``sort`` order.

    ``top`` keeps the first ``top`` units of each (layer, value).  Numbers are
    written in ``dtype`` (float32 by default, as the trace is).
    """
    for gs in results:
        order = gs.order(sort)
        if top is not None:
            order = order[:top]
        yield Block(
            list(STATS_COLUMNS),
            [
                gs.layer,
                gs.gate,
                order.astype(np.int64),
                gs.steps,
                gs.mean[order].astype(dtype),
                gs.std[order].astype(dtype),
                gs.min[order].astype(dtype),
                gs.max[order].astype(dtype),
                gs.left[order].astype(dtype),
                gs.right[order].astype(dtype),
                gs.saturation_rank()[order],
                gs.variability_rank()[order],
            ],
        )


def stats_frame(results: Iterable[GateStats], sort: str = "unit", top: int | None = None):
    """The statistics as a pandas DataFrame with :data:`STATS_COLUMNS` (float64 numbers)."""
    import pandas as pd

    frames = []
    for gs in results:
        order = gs.order(sort)
        if top is not None:
            order = order[:top]
        sat, var = gs.saturation_rank()[order], gs.variability_rank()[order]
        frames.append(pd.DataFrame({
            "layer": gs.layer,
            "gate": gs.gate,
            "unit": order.astype(np.int64),
            "steps": np.full(order.shape[0], gs.steps, dtype=np.int64),
            "mean": gs.mean[order],
            "std": gs.std[order],
            "min": gs.min[order],
            "max": gs.max[order],
            "left_saturated": gs.left[order],
            "right_saturated": gs.right[order],
            "saturation_rank": pd.arrays.IntegerArray(sat.filled(0), np.ma.getmaskarray(sat)),
            "variability_rank": pd.arrays.IntegerArray(var.filled(0), np.ma.getmaskarray(var)),
        }))
    if not frames:
        return pd.DataFrame(columns=STATS_COLUMNS)
    return pd.concat(frames, ignore_index=True)
