"""ConvLSTM1D/2D/3D against Keras: replay, trace (positions, --position, --reduce), weights (taps), stats.

Models are built here with seeded random weights, saved, read back with
lstm-inspect and compared with Keras' own outputs: the layer's output sequence
is the hidden state at every step, so ``trace``'s ``hidden`` is checked
against it directly, and ``cell`` through a ``return_state`` model.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import run_cli

import lstm_inspect as li

STEPS = 4


def _assign(model, rng, scale=0.3):
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") * scale)


def _build(K, L, rank, name="cl", **settings):
    spatial = (7,) * rank
    layer = {1: L.ConvLSTM1D, 2: L.ConvLSTM2D, 3: L.ConvLSTM3D}[rank]
    inputs = K.Input((STEPS,) + spatial + (3,))
    outputs = layer(4, 3, return_sequences=True, name=name, **settings)(inputs)
    return K.Model(inputs, outputs), spatial


CASES = {
    "1d-valid": (1, {"padding": "valid"}),
    "1d-same-strides": (1, {"padding": "same", "strides": 2}),
    "2d-valid": (2, {"padding": "valid"}),
    "2d-same": (2, {"padding": "same"}),
    "2d-dilated": (2, {"padding": "valid", "dilation_rate": 2}),
    "2d-backwards-hard-sigmoid": (2, {"padding": "same", "go_backwards": True, "recurrent_activation": "hard_sigmoid"}),
    "3d-same": (3, {"padding": "same"}),
}


@pytest.fixture(scope="module")
def keras3_cases(tmp_path_factory):
    import keras

    rng = np.random.default_rng(7)
    built = {}
    for case, (rank, settings) in CASES.items():
        model, spatial = _build(keras, keras.layers, rank, **settings)
        _assign(model, rng)
        x = rng.normal(size=(2, STEPS) + spatial + (3,)).astype("float32")
        folder = tmp_path_factory.mktemp(case)
        paths = [folder / "model.keras", folder / "model.h5"]
        for path in paths:
            model.save(path)
        built[case] = (model, paths, x, settings)
    return built


@pytest.mark.parametrize("case", list(CASES))
def test_conv_lstm_replay_equals_keras3(keras3_cases, case):
    model, paths, x, settings = keras3_cases[case]
    expected = model.predict(x, verbose=0)
    for path in paths:
        loaded = li.load_model(str(path))
        assert np.abs(li.predict(loaded, x) - expected).max() < 1e-5
        hidden = li.trace_arrays(loaded, x)["cl"]["hidden"]  # (N, T, *positions, F), input-row order
        in_order = expected[:, ::-1] if settings.get("go_backwards") else expected
        assert hidden.shape == expected.shape
        assert np.abs(hidden - in_order).max() < 1e-5


def test_conv_lstm_cell_state_equals_keras3(tmp_path):
    import keras

    rng = np.random.default_rng(3)
    inputs = keras.Input((STEPS, 6, 6, 2))
    _, h, c = keras.layers.ConvLSTM2D(3, 3, padding="same", return_state=True, name="cl")(inputs)
    model = keras.Model(inputs, [h, c])
    _assign(model, rng)
    x = rng.normal(size=(2, STEPS, 6, 6, 2)).astype("float32")
    path = tmp_path / "state.keras"
    model.save(path)
    h_keras, c_keras = model.predict(x, verbose=0)
    traced = li.trace_arrays(li.load_model(str(path)), x)["cl"]
    assert np.abs(traced["hidden"][:, -1] - h_keras).max() < 1e-5
    assert np.abs(traced["cell"][:, -1] - c_keras).max() < 1e-5


def test_conv_lstm2d_equals_tf_keras(tmp_path):
    import tf_keras

    rng = np.random.default_rng(11)
    model, spatial = _build(tf_keras, tf_keras.layers, 2, padding="same", strides=1)
    _assign(model, rng)
    x = rng.normal(size=(2, STEPS) + spatial + (3,)).astype("float32")
    path = tmp_path / "tf.h5"
    model.save(path)
    ours = li.predict(li.load_model(str(path)), x)
    assert np.abs(ours - model.predict(x, verbose=0)).max() < 1e-5


def _rows(result):
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def test_trace_writes_one_row_per_position_and_filter(keras3_cases, tmp_path):
    model, paths, x, _ = keras3_cases["2d-valid"]
    expected = model.predict(x, verbose=0)  # (N, T, 5, 5, 4)
    np.save(tmp_path / "x.npy", x)
    rows = _rows(run_cli("trace", paths[0], tmp_path / "x.npy", "--format", "csv"))
    assert list(rows[0])[:6] == ["sequence", "layer", "t", "y", "x", "unit"]
    assert len(rows) == x.shape[0] * STEPS * 5 * 5 * 4
    for row in rows[:: 37]:
        n, t, y, xx, u = (int(row[k]) for k in ("sequence", "t", "y", "x", "unit"))
        assert abs(float(row["hidden"]) - expected[n, t, y, xx, u]) < 1e-5


def test_position_and_reduce_take_the_positions_away(keras3_cases, tmp_path):
    model, paths, x, _ = keras3_cases["2d-valid"]
    expected = model.predict(x, verbose=0)
    np.save(tmp_path / "x.npy", x)
    one = _rows(run_cli("trace", paths[0], tmp_path / "x.npy", "--position", "2,3", "--format", "csv"))
    assert list(one[0])[:4] == ["sequence", "layer", "t", "unit"] and "y" not in one[0]
    for row in one:
        n, t, u = int(row["sequence"]), int(row["t"]), int(row["unit"])
        assert abs(float(row["hidden"]) - expected[n, t, 2, 3, u]) < 1e-5
    for how, reduce in (("mean", np.mean), ("max", np.max)):
        rows = _rows(run_cli("trace", paths[0], tmp_path / "x.npy", "--reduce", how, "--format", "csv"))
        assert len(rows) == x.shape[0] * STEPS * 4
        for row in rows:
            n, t, u = int(row["sequence"]), int(row["t"]), int(row["unit"])
            assert abs(float(row["hidden"]) - reduce(expected[n, t, :, :, u])) < 1e-5


def test_position_outside_the_maps_is_one_line(keras3_cases, tmp_path):
    _, paths, x, _ = keras3_cases["2d-valid"]
    np.save(tmp_path / "x.npy", x)
    result = run_cli("trace", paths[0], tmp_path / "x.npy", "--position", "9,0")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "outside" in result.stderr.decode()


def test_weights_label_every_tap(keras3_cases):
    import h5py

    model, paths, _, _ = keras3_cases["2d-same"]
    rows = _rows(run_cli("weights", paths[1], "--format", "csv"))
    assert list(rows[0])[-1] == "tap"
    kernel = model.get_layer("cl").cell.kernel.numpy()  # (3, 3, 3, 16)
    assert sum(row["tensor"] == "kernel" for row in rows) == kernel.size
    with h5py.File(paths[1]) as h5:
        for row in rows[::13]:
            stored = h5[row["path"]][()]
            if row["tensor"] == "bias":
                assert np.float32(row["value"]) == stored[int(row["column"])]
                assert row["tap"] == ""
                continue
            ky, kx = (int(v) for v in row["tap"].split(","))
            assert np.float32(row["value"]) == stored[ky, kx, int(row["row"]), int(row["column"])]
            gate = "ifco".index(row["gate"])
            assert int(row["column"]) == gate * 4 + int(row["unit"])


def test_stats_summarise_each_filter_over_steps_and_positions(keras3_cases, tmp_path):
    model, paths, x, _ = keras3_cases["2d-same"]
    expected = model.predict(x, verbose=0)  # hidden: (N, T, 7, 7, 4)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("stats", paths[0], tmp_path / "x.npy", "--gates", "hidden", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    for row in rows:
        values = expected[..., row["unit"]].astype(np.float64).reshape(-1)
        assert row["steps"] == values.size
        assert abs(row["mean"] - values.mean()) < 1e-5
        assert abs(row["std"] - values.std()) < 1e-5
