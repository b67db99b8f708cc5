"""A way past layers that cannot be replayed (--from), and architectures beside the weights (--config).

Expected numbers come from Keras (the live model that was saved), or, for the
Keras 1 file Keras can no longer load, from the GRU equations written out in
float64 over the arrays read straight from the file (tests/reference.py).
"""

from __future__ import annotations

import csv
import io
import json

import h5py
import numpy as np
import pytest
from conftest import WILD, run_cli
from reference import keras_steps, reference_steps

import lstm_inspect as li

T, F, U = 6, 3, 4


def _csv(result):
    assert result.returncode == 0, result.stderr.decode()
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def _one_line(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    for word in words:
        assert word in stderr, stderr
    return stderr


def _randomise(model, rng):
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.5)


# ------------------------------------------------------------------ --from past a Lambda


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    import keras

    rng = np.random.default_rng(2)
    inputs = keras.Input((T, F))
    doubled = keras.layers.Lambda(lambda x: x * 2.0, name="double")(inputs)
    hidden = keras.layers.LSTM(U, return_sequences=True, name="lstm")(doubled)
    outputs = keras.layers.Dense(2, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    _randomise(model, rng)
    folder = tmp_path_factory.mktemp("lambda")
    path = folder / "lambda.keras"
    model.save(path)
    x = rng.normal(size=(2, T, F)).astype("float32")
    np.save(folder / "x.npy", x)
    np.save(folder / "x2.npy", 2.0 * x)  # what the Lambda hands the LSTM
    return model, path, x, folder


def test_a_lambda_is_refused_with_the_from_that_gets_past_it(lambda_model):
    _, path, _, folder = lambda_model
    _one_line(run_cli("predict", path, folder / "x.npy"), "'double' (Lambda)", "never runs", "--from lstm")


def test_from_feeds_the_layer_and_replays_from_there(lambda_model):
    model, path, x, folder = lambda_model
    expected = model.predict(x, verbose=0)
    rows = _csv(run_cli("predict", path, folder / "x2.npy", "--from", "lstm", "--format", "csv"))
    got = np.array([[float(row["y_0"]), float(row["y_1"])] for row in rows]).reshape(expected.shape)
    assert np.abs(got - expected).max() < 1e-5
    steps = keras_steps(model.get_layer("lstm"), 2.0 * x)
    traced = li.trace_arrays(li.load_model(str(path)), 2.0 * x, start="lstm")["lstm"]["hidden"]
    assert np.abs(traced - steps.hidden).max() < 1e-5


@pytest.mark.parametrize(
    "start, words",
    [("nope", ["--from: no layer named 'nope'"]), ("input_layer", ["input layer"])],
)
def test_impossible_from_is_one_line(lambda_model, start, words):
    _, path, _, folder = lambda_model
    model = li.load_model(str(path))
    start = start if start == "nope" else model.graph.inputs[0]
    _one_line(run_cli("trace", path, folder / "x2.npy", "--from", start), *words)


def test_from_with_the_wrong_width_is_one_line(lambda_model, tmp_path):
    _, path, _, _ = lambda_model
    np.save(tmp_path / "wide.npy", np.zeros((1, T, F + 2), dtype="float32"))
    _one_line(run_cli("trace", path, tmp_path / "wide.npy", "--from", "lstm"), "takes 3 feature(s)")


# ------------------------------------------------------------------ a custom layer


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    import keras

    @keras.saving.register_keras_serializable(package="lstm_inspect_tests")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    rng = np.random.default_rng(4)
    inputs = keras.Input((T, F))
    hidden = keras.layers.LSTM(U, return_sequences=True, name="lstm")(inputs)
    doubled = Doubler(name="doubler")(hidden)
    outputs = keras.layers.Dense(2, name="head")(doubled)
    model = keras.Model(inputs, outputs)
    _randomise(model, rng)
    folder = tmp_path_factory.mktemp("custom")
    path = folder / "custom.keras"
    model.save(path)
    x = rng.normal(size=(2, T, F)).astype("float32")
    np.save(folder / "x.npy", x)
    return model, path, x, folder


def test_a_custom_layer_is_refused_by_name_but_the_lstm_before_it_is_traced(custom_model):
    model, path, x, folder = custom_model
    _one_line(run_cli("predict", path, folder / "x.npy"), "'doubler'", "custom (non-Keras) layer", "--from head")
    rows = _csv(run_cli("trace", path, folder / "x.npy", "--gates", "hidden", "--format", "csv"))
    steps = keras_steps(model.get_layer("lstm"), x)
    for row in rows:
        n, t, u = int(row["sequence"]), int(row["t"]), int(row["unit"])
        assert abs(float(row["hidden"]) - steps.hidden[n, t, u]) < 1e-5


def test_from_after_a_custom_layer(custom_model, tmp_path):
    import keras

    model, path, x, _ = custom_model
    before_head = keras.Model(model.inputs, model.get_layer("doubler").output).predict(x, verbose=0)
    np.save(tmp_path / "mid.npy", before_head)
    got = li.predict(li.load_model(str(path)), before_head, start="head")
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-5


# ------------------------------------------------------------------ --config


def _stacked(K):
    L = K.layers
    return K.Sequential([K.Input((T, F)), L.LSTM(U, return_sequences=True, name="first"),
                         L.GRU(3, name="second"), L.Dense(2, activation="softmax", name="head")])


@pytest.mark.parametrize("backend", ["tfkeras", "keras3"])
def test_config_gives_a_weights_only_file_its_architecture(backend, tmp_path):
    if backend == "keras3":
        import keras as K

        weights = tmp_path / "model.weights.h5"
    else:
        import tf_keras as K

        weights = tmp_path / "weights.h5"
    rng = np.random.default_rng(8)
    model = _stacked(K)
    _randomise(model, rng)
    model.save_weights(weights)
    (tmp_path / "model.json").write_text(model.to_json())
    x = rng.normal(size=(3, T, F)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = model.predict(x, verbose=0)
    rows = _csv(run_cli("predict", weights, tmp_path / "x.npy", "--config", tmp_path / "model.json", "--format", "csv"))
    got = np.array([[float(row["y_0"]), float(row["y_1"])] for row in rows])
    assert np.abs(got - expected).max() < 1e-5
    layers = {row["name"]: row for row in json.loads(
        run_cli("layers", weights, "--config", tmp_path / "model.json", "--format", "json").stdout)}
    assert layers["first"]["activation"] == "tanh" and layers["second"]["units"] == 3


def test_keras1_weights_only_gru_with_its_json(tmp_path):
    """tsudalab's Keras 1.1.1 SMILES generator: per-gate GRU arrays, architecture in a JSON beside them."""
    weights = WILD / "tsudalab_chemts_keras1_gru_weights.h5"
    config = WILD / "tsudalab_chemts_keras1_gru_model.json"
    if not weights.exists():
        pytest.skip(f"corpus not found at {WILD}")

    class GRU:  # the Keras 1 layer as tests/reference.py reads one: config and fused arrays
        def __init__(self, h5, name):
            group = h5[name]
            parts = {key.split(":")[0][len(name) + 1 :]: group[key][()] for key in group}
            self.weights = [np.concatenate([parts[f"{w}_{g}"] for g in "zrh"], axis=-1) for w in "WUb"]

        def get_config(self):
            return {"activation": "sigmoid", "recurrent_activation": "hard_sigmoid", "reset_after": False}

        def get_weights(self):
            return self.weights

    ids = np.random.default_rng(0).integers(1, 64, size=(2, 12))
    np.save(tmp_path / "ids.npy", ids[..., None].astype("float32"))  # (N, T, 1): one column of ids per sequence
    model = li.load_model(str(weights), config=str(config))
    traced = li.trace_arrays(model, ids, ["gru_1", "gru_2"])
    with h5py.File(weights) as h5:
        table = h5["embedding_1"]["embedding_1_W:0"][()]
        first = reference_steps(GRU(h5, "gru_1"), table[ids], "keras2")
        second = reference_steps(GRU(h5, "gru_2"), first["hidden"], "keras2")
    assert np.abs(traced["gru_1"]["hidden"] - first["hidden"]).max() < 1e-5
    assert np.abs(traced["gru_2"]["hidden"] - second["hidden"]).max() < 1e-5
    rows = _csv(run_cli("predict", weights, tmp_path / "ids.npy", "--config", config, "--format", "csv"))
    assert len(rows) == 2 * 12 and len([c for c in rows[0] if c.startswith("y_")]) == 64
