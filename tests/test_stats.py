"""`stats` and ``gate_stats``: saturation figures against independent computations.

Two independent sources of expected numbers:

* a float64 replay of the Keras step equations written out here from the live
  Keras layer's ``get_weights()`` (gate by gate, masks held as Keras does),
  with the saturation thresholds written literally (sigmoid gates < 0.1 /
  > 0.9, tanh candidate < -0.8 / > 0.8);
* lstm-inspect's own ``trace_arrays``, reduced with plain NumPy: this checks
  the streaming accumulation (chunks, batches, masks) on its own.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import SAMPLE_MODEL_FILES, SAMPLES, run_cli, sample_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions
from lstm_inspect.stats import STATS_COLUMNS, _Running

# ------------------------------------------------------------------ float64 reference


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _activation(name, hard):
    return {
        "sigmoid": _sigmoid,
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0.0),
        "hard_sigmoid": lambda x: np.clip(x * hard + 0.5, 0.0, 1.0),
    }[name]


def reference_gates(layer, x, mask=None, hard=1.0 / 6.0):
    """Gate values of a live Keras LSTM/GRU layer over x (N, T, F), float64, input-row order.

    Returns {name: (N, T, U)} with NaN at masked steps, and the (N, T) mask of kept steps.
    """
    config = layer.get_config()
    kind = type(layer).__name__
    U = config["units"]
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    kernel, recurrent = weights[0], weights[1]
    bias = weights[2] if len(weights) > 2 else np.zeros(kernel.shape[1])
    a = _activation(config["activation"], hard)
    ra = _activation(config["recurrent_activation"], hard)
    x = np.asarray(x, dtype=np.float64)
    n, steps, _ = x.shape
    keep = np.ones((n, steps), dtype=bool) if mask is None else mask
    names = ("i", "f", "c", "o") if kind == "LSTM" else ("z", "r", "c")
    out = {name: np.full((n, steps, U), np.nan) for name in names}
    h = np.zeros((n, U))
    cell = np.zeros((n, U))
    order = range(steps - 1, -1, -1) if config.get("go_backwards") else range(steps)
    for t in order:
        xt = x[:, t]
        if kind == "LSTM":
            pre = xt @ kernel + h @ recurrent + bias
            i, f = ra(pre[:, :U]), ra(pre[:, U : 2 * U])
            c, o = a(pre[:, 2 * U : 3 * U]), ra(pre[:, 3 * U :])
            new_cell = f * cell + i * c
            new_h = o * a(new_cell)
            gates = {"i": i, "f": f, "c": c, "o": o}
        else:
            if bias.ndim == 2:  # reset_after=True
                xb, hb = xt @ kernel + bias[0], h @ recurrent + bias[1]
                z, r = ra(xb[:, :U] + hb[:, :U]), ra(xb[:, U : 2 * U] + hb[:, U : 2 * U])
                c = a(xb[:, 2 * U :] + r * hb[:, 2 * U :])
            else:
                xb = xt @ kernel + bias
                z = ra(xb[:, :U] + h @ recurrent[:, :U])
                r = ra(xb[:, U : 2 * U] + h @ recurrent[:, U : 2 * U])
                c = a(xb[:, 2 * U :] + (r * h) @ recurrent[:, 2 * U :])
            new_h = z * h + (1 - z) * c
            new_cell = cell
            gates = {"z": z, "r": r, "c": c}
        k = keep[:, t][:, None]
        for name, value in gates.items():
            out[name][:, t] = np.where(k, value, np.nan)
        h = np.where(k, new_h, h)
        cell = np.where(k, new_cell, cell)
    return out, keep


def expected_figures(values, keep, low, high):
    """mean, std, left, right fractions per unit over kept steps."""
    flat = values[keep]  # (K, U)
    return {
        "steps": flat.shape[0],
        "mean": flat.mean(axis=0),
        "std": flat.std(axis=0),
        "left": (flat < low).mean(axis=0) if low is not None else None,
        "right": (flat > high).mean(axis=0) if high is not None else None,
    }


THRESHOLDS = {"sigmoid": (0.1, 0.9), "hard_sigmoid": (0.1, 0.9), "tanh": (-0.8, 0.8), "relu": (None, None)}


@pytest.mark.parametrize(
    "kind,backend",
    [
        ("single", "keras3"),
        ("single", "tfkeras"),
        ("masking", "keras3"),
        ("backwards", "keras3"),
        ("relu_hard", "keras3"),
        ("relu_hard", "tfkeras"),
        ("gru", "keras3"),
        ("gru_reset_before", "keras3"),
    ],
)
def test_saturation_matches_float64_reference(saved_model, kind, backend):
    case = saved_model(kind, backend)
    layer = next(l for l in case.model.layers if type(l).__name__ in ("LSTM", "GRU"))
    x = np.asarray(case.x, dtype=np.float64)
    mask = np.any(x != 0.0, axis=-1) if kind == "masking" else None
    hard = 1.0 / 6.0 if backend == "keras3" else 0.2
    reference, keep = reference_gates(layer, x, mask, hard)

    model = li.load_model(str(case.paths["h5"]))
    frame = li.gate_stats(model, x, options=ReplayOptions(dtype=np.float64))
    config = layer.get_config()
    checked = 0
    for name, values in reference.items():
        activation = config["activation"] if name == "c" else config["recurrent_activation"]
        low, high = THRESHOLDS[activation]
        want = expected_figures(values, keep, low, high)
        got = frame[(frame.layer == layer.name) & (frame.gate == name)].sort_values("unit")
        assert list(got.unit) == list(range(config["units"]))
        assert set(got.steps) == {want["steps"]}
        np.testing.assert_allclose(got["mean"], want["mean"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got["std"], want["std"], rtol=0, atol=1e-9)
        if low is None:
            assert got.left_saturated.isna().all() and got.right_saturated.isna().all()
            assert got.saturation_rank.isna().all()
        else:
            np.testing.assert_array_equal(got.left_saturated.to_numpy(), want["left"])
            np.testing.assert_array_equal(got.right_saturated.to_numpy(), want["right"])
            checked += int((want["left"] > 0).sum() + (want["right"] > 0).sum())
    assert checked > 0, "the case saturates nothing: it would not test the thresholds"


@pytest.mark.parametrize("kind", ["stacked", "bi_concat", "masking", "embedding", "bi_gru", "simple_rnn", "nested"])
def test_streamed_stats_match_trace_arrays(saved_model, kind):
    """Small chunks and several sequences: the running sums equal a one-shot NumPy reduction."""
    case = saved_model(kind, "keras3")
    model = li.load_model(str(case.paths["keras"]))
    x = case.x[..., None] if case.x.ndim == 2 else case.x  # token ids: (N, T, 1)
    arrays = li.trace_arrays(model, x)
    options = ReplayOptions(chunk=3)  # several blocks per sequence
    results = li.compute_stats(model, li.as_sequences(x), options=options)
    assert {(gs.layer, gs.gate) for gs in results} == {
        (layer, name) for layer, values in arrays.items() for name in values if name != "masked"
    }
    for gs in results:
        values = arrays[gs.layer][gs.gate].astype(np.float64)
        keep = ~arrays[gs.layer]["masked"]
        flat = values[keep]
        assert gs.steps == flat.shape[0]
        np.testing.assert_allclose(gs.mean, flat.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(gs.std, flat.std(axis=0), atol=1e-6)
        np.testing.assert_array_equal(gs.min, flat.min(axis=0))
        np.testing.assert_array_equal(gs.max, flat.max(axis=0))
        if gs.bounds is None:
            assert np.isnan(gs.left).all()
            continue
        lo, hi = gs.bounds
        np.testing.assert_array_equal(gs.left, (flat < lo + 0.1 * (hi - lo)).mean(axis=0))
        np.testing.assert_array_equal(gs.right, (flat > lo + 0.9 * (hi - lo)).mean(axis=0))


def test_which_values_have_saturation(saved_model):
    model = li.load_model(str(saved_model("stacked", "keras3").paths["keras"]))
    results = li.compute_stats(model, li.as_sequences(saved_model("stacked", "keras3").x))
    bounds = {gs.gate: gs.bounds for gs in results if gs.layer == "lstm_a"}
    assert bounds == {"i": (0, 1), "f": (0, 1), "o": (0, 1), "c": (-1, 1), "cell": None, "hidden": None}
    c = next(gs for gs in results if gs.gate == "c")
    assert c.thresholds == pytest.approx((-0.8, 0.8))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=40),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=2**31),
)
def test_running_sums_equal_one_shot(total, cuts, seed):
    """Chan's pairwise merge gives NumPy's mean and population std for any chunking."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.5, 0.3, size=(total, 3)).astype(np.float32)
    running = _Running(3)
    start = 0
    for size in cuts * (total // max(sum(cuts), 1) + 1):
        running.add(values[start : start + size], (0.1, 0.9))
        start += size
        if start >= total:
            break
    running.add(values[start:], (0.1, 0.9))
    x = values.astype(np.float64)
    assert running.count == total
    np.testing.assert_allclose(running.mean, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(np.sqrt(running.m2 / total), x.std(axis=0), atol=1e-12)
    np.testing.assert_array_equal(running.left, (x < 0.1).sum(axis=0))
    np.testing.assert_array_equal(running.right, (x > 0.9).sum(axis=0))


def test_ranks_and_sort():
    from lstm_inspect.stats import GateStats

    nan = np.full(4, np.nan)
    gs = GateStats("l", "LSTM", "f", "sigmoid", (0.0, 1.0), 10, nan, np.array([0.1, 0.3, 0.2, 0.3]), nan, nan,
                   np.array([0.0, 0.5, 0.0, 0.1]), np.array([0.0, 0.0, 0.0, 0.4]))
    assert list(gs.saturation_rank()) == [3, 1, 3, 1]  # ties share a rank
    assert list(gs.variability_rank()) == [4, 1, 3, 1]
    assert list(gs.order("saturation")) == [1, 3, 0, 2]
    assert list(gs.order("variability")) == [1, 3, 2, 0]
    assert list(gs.order("unit")) == [0, 1, 2, 3]


# ------------------------------------------------------------------ CLI


def _csv(result):
    assert result.returncode == 0, result.stderr
    # Nothing on stderr but notes (the stateful sample model's feed plan).
    assert all(line.startswith(b"lstm-inspect: note: ") for line in result.stderr.splitlines()), result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def test_cli_stats_csv_equals_api(saved_model, tmp_path):
    case = saved_model("stacked", "keras3")
    np.save(tmp_path / "x.npy", case.x)
    rows = _csv(run_cli("stats", case.paths["keras"], tmp_path / "x.npy"))
    assert list(rows[0]) == STATS_COLUMNS
    frame = li.gate_stats(li.load_model(str(case.paths["keras"])), case.x)
    assert len(rows) == len(frame) == (5 + 4) * 6  # i, f, c, o, cell, hidden per unit
    for row, (_, want) in zip(rows, frame.iterrows()):
        assert (row["layer"], row["gate"], int(row["unit"]), int(row["steps"])) == (want.layer, want.gate, want.unit, want.steps)
        for column in ("mean", "std", "left_saturated", "right_saturated"):
            if row[column] == "":
                assert np.isnan(want[column])
            else:
                assert float(row[column]) == pytest.approx(want[column], abs=1e-6)


def test_cli_stats_sort_top_and_json(saved_model):
    case = saved_model("single", "keras3")
    path = case.paths["keras"]
    np_path = path.with_suffix(".x.npy")
    np.save(np_path, case.x)
    result = run_cli("stats", path, np_path, "--sort", "variability", "--top", "2", "--gates", "f,o", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["gate"], r["variability_rank"]) for r in rows] == [("f", 1), ("f", 2), ("o", 1), ("o", 2)]
    stds = [r["std"] for r in rows]
    assert stds[0] >= stds[1] and stds[2] >= stds[3]


def test_cli_stats_table_and_every_sample_model():
    for model in SAMPLE_MODEL_FILES:
        data = sample_inputs(model)
        rows = _csv(run_cli("stats", model, *data))
        assert rows and all(r["steps"] != "0" for r in rows)
        table = run_cli("stats", model, *data, "--format", "table", "--sort", "saturation")
        assert table.returncode == 0 and b"left/right sat.: share of steps below" in table.stdout, table.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--gates", "q"], b"unknown gate(s) q"),
        (["--layer", "nope"], b"no recurrent layer named 'nope'"),
        (["--sort", "size"], b"Invalid value for '--sort'"),
    ],
)
def test_cli_stats_errors_are_one_line(args, message):
    result = run_cli("stats", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_stats_help_documents_the_thresholds():
    result = run_cli("stats", "--help")
    assert result.returncode == 0 and b"Exit status" in result.stdout and b"< 0.1" in result.stdout


@pytest.mark.parametrize("command", ["stats", "plot", "export"])
def test_new_commands_have_help_and_are_documented(command):
    from conftest import ROOT

    result = run_cli(command, "--help")
    assert result.returncode == 0 and b"Usage:" in result.stdout and b"Exit status" in result.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"lstm-inspect {command} " in readme and f"`{command} MODEL" in readme
