"""Saturation scatter: points that overlap are merged and counted, in `plot --kind saturation`."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_inspect.stats import GateStats, saturation_points


def _gate(gate: str, left, right, kind: str = "LSTM", bounds=(0.0, 1.0)) -> GateStats:
    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    zeros = np.zeros_like(left)
    return GateStats("lstm", kind, gate, "sigmoid", bounds, 10, zeros, zeros, zeros, zeros, left, right)


def test_fifteen_units_at_the_origin_are_one_point_counted_fifteen():
    left = np.zeros(16)
    right = np.zeros(16)
    right[3] = 0.5  # one unit apart
    points = saturation_points([_gate("f", left, right)])
    by_place = {(p.left, p.right): p for p in points}
    assert by_place[(0.0, 0.0)].units == tuple(u for u in range(16) if u != 3)
    assert by_place[(0.0, 0.0)].count == by_place[(0.0, 0.0)].shared == 15
    assert by_place[(0.0, 0.5)].units == (3,) and by_place[(0.0, 0.5)].shared == 1


def test_shared_counts_points_of_every_gate_and_leaves_out_the_candidate():
    stats = [_gate("i", [0, 0], [0, 0]), _gate("f", [0, 0.2], [0, 0]),
             _gate("c", [0, 0], [0, 0], bounds=(-1.0, 1.0)), _gate("cell", [0, 0], [0, 0], bounds=None)]
    points = saturation_points(stats)
    assert sorted((p.gate, p.units, p.shared) for p in points) == [("f", (0,), 3), ("f", (1,), 1), ("i", (0, 1), 3)]


def test_plot_shows_the_count_beside_an_overlap():
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (pip install -e '.[test]')")
    from lstm_inspect.plot import saturation_figure

    figure = saturation_figure([_gate("i", np.zeros(15), np.zeros(15)), _gate("o", [0.25], [0.5])])
    ax = figure.axes[0]
    labels = {text.get_text(): text.xy for text in ax.texts if hasattr(text, "xy")}
    assert labels == {"15": (0.0, 0.0)}  # the lone point at (0.25, 0.5) gets no number
    sizes = sorted(float(c.get_sizes()[0]) for c in ax.collections if len(c.get_offsets()))
    assert sizes[-1] == pytest.approx(22 * np.sqrt(15)) and sizes[0] == pytest.approx(22)
