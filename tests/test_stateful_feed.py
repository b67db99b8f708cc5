"""Stateful models as Keras runs them, and inputs longer or shorter than the model's T
(issue 10, points 2 and 3).

A model saved with ``stateful=True`` and batch shape (B, T, F) is fed, by
default, as ``model.predict(x, batch_size=B)`` feeds it: the input cut into
samples of T steps, sample j continuing the state of sample j - B.  Every
expectation comes from Keras itself (Keras 3 and tf-keras): ``predict`` on
the samples, and, for the trace, a non-stateful copy of the layer run over
a whole chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from conftest import SAMPLES, keras_module, randomise
from reference import invoke, read_csv, reset_states

import lstm_inspect as li
from lstm_inspect.notes import Note

TOL = 1e-5
NOTE = "lstm-inspect: note: stateful model with batch shape"
BACKENDS = ["keras3", "tfkeras"]


def y_columns(frame):
    return frame[[c for c in frame.columns if c.startswith("y_")]].to_numpy()


def write_rows(path, x: np.ndarray, names=None):
    names = names or [f"x{k}" for k in range(x.shape[1])]
    path.write_text(",".join(names) + "\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x))
    return path


def keras_predict_stateful(model, samples: np.ndarray, batch: int) -> np.ndarray:
    """Keras' own answer, from fresh states; a last batch short of B rows is padded with zeros
    (rows never meet in a batch, so the padding changes no other row) and cut off again."""
    reset_states(model)
    rows = len(samples)
    padded = -rows % batch
    if padded:
        samples = np.concatenate([samples, np.zeros((padded,) + samples.shape[1:], samples.dtype)])
    try:
        return model.predict(samples, batch_size=batch, verbose=0)[:rows]
    finally:
        reset_states(model)


def sequence_twin(K, L, model, layer_name: str):
    """The same recurrent layer without state or fixed batch, returning every step (Keras' own
    computation of a whole chain, which the stateful layer computes sample by sample)."""
    layer = model.get_layer(layer_name)
    config = dict(layer.get_config(), stateful=False, return_sequences=True, name="twin")
    twin = type(layer).from_config(config)
    features = layer.get_weights()[0].shape[0]
    wrapper = K.Sequential([K.Input((None, features)), twin])
    twin.set_weights(layer.get_weights())
    return wrapper


# ------------------------------------------------------------------ the (1, 1, 1) sample model


@pytest.fixture(scope="module")
def sample_keras():
    import keras

    return keras.saving.load_model(SAMPLES / "stateful_lstm.keras", compile=False)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_sample_predict_is_one_row_per_row_as_keras(tmp_path, sample_keras, ext):
    x = np.random.default_rng(20).normal(size=(5, 1)).astype("float32")
    data = write_rows(tmp_path / "five.csv", x, ["value"])
    expected = keras_predict_stateful(sample_keras, x.reshape(5, 1, 1), 1)
    assert expected.shape == (5, 3)
    result = invoke("predict", SAMPLES / f"stateful_lstm.{ext}", data, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["sequence"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(y_columns(frame), expected, atol=TOL)
    [note] = result.stderr.splitlines()
    assert note.startswith(f"{NOTE} (1, 1, 1)") and "5 rows" in note and "--no-stateful" in note
    # --sequence-length 1 --stateful says the same explicitly (and needs no note).
    explicit = invoke("predict", SAMPLES / f"stateful_lstm.{ext}", data, "--sequence-length", "1", "--stateful",
                      "--format", "csv")
    assert explicit.exit_code == 0 and explicit.stderr == ""
    np.testing.assert_allclose(y_columns(read_csv(explicit.stdout)), expected, atol=TOL)


def test_sample_trace_is_one_sequence_t_counting_rows(tmp_path, sample_keras):
    x = np.random.default_rng(21).normal(size=(5, 1)).astype("float32")
    data = write_rows(tmp_path / "five.csv", x, ["value"])
    result = invoke("trace", SAMPLES / "stateful_lstm.keras", data, "--wide", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["sequence"].tolist() == [0] * 5 and frame["t"].tolist() == [0, 1, 2, 3, 4]
    import keras

    want = sequence_twin(keras, keras.layers, sample_keras, "lstm").predict(x[None], verbose=0)[0]
    np.testing.assert_allclose(frame[[f"hidden_{u}" for u in range(10)]].to_numpy(), want, atol=TOL)
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(NOTE)


def test_sample_no_stateful_replays_the_rows_as_one_sequence_from_zeros(tmp_path, sample_keras):
    """--no-stateful: the rows as one 5-step sequence from zeros (its last output; Keras' twin agrees),
    with a warning that the model's input layer fixes 1 step."""
    import keras

    x = np.random.default_rng(22).normal(size=(5, 1)).astype("float32")
    data = write_rows(tmp_path / "five.csv", x, ["value"])
    result = invoke("predict", SAMPLES / "stateful_lstm.keras", data, "--no-stateful", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    warning = ("lstm-inspect: warning: the model's input layer fixes 1 step; the input has 5 steps per sequence "
               "(replayed as given: the recurrence does not depend on the length)")
    assert result.stderr.splitlines() == [warning]
    hidden = sequence_twin(keras, keras.layers, sample_keras, "lstm").predict(x[None], verbose=0)[0, -1]
    kernel, bias = sample_keras.get_layer("head").get_weights()
    logits = hidden @ kernel + bias
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(y_columns(read_csv(result.stdout))[0], expected, atol=TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixture_stateful_model_api_default(saved_model, backend):
    """The API follows the model too: li.predict(model, X) equals model.predict(X) row for row."""
    case = saved_model("stateful", backend)
    x = np.random.default_rng(23).normal(size=(7, 1, 1)).astype("float32")
    expected = keras_predict_stateful(case.model, x, 1)
    for path in case.paths.values():
        model = li.load_model(str(path))
        with pytest.warns(Note, match="stateful model with batch shape"):
            ours = li.predict(model, x)
        np.testing.assert_allclose(ours, expected, atol=TOL)


# ------------------------------------------------------------------ a batch of 2 chains


def _two_chains(K, L):
    inputs = K.Input(batch_shape=(2, 3, 2))
    hidden = L.LSTM(5, stateful=True, return_sequences=True, name="lstm")(inputs)
    last = L.LSTM(4, stateful=True, name="lstm_b")(hidden)
    return K.Model(inputs, L.Dense(3, name="head")(last))


def _mixed(K, L):
    """A stateful layer feeding one that is not: Keras resets the second at every batch."""
    inputs = K.Input(batch_shape=(2, 3, 2))
    hidden = L.GRU(4, stateful=True, return_sequences=True, name="gru")(inputs)
    last = L.LSTM(3, go_backwards=True, name="back")(hidden)
    return K.Model(inputs, L.Dense(2, name="head")(last))


@dataclass
class Built:
    backend: str
    kind: str
    K: object  # keras or tf_keras
    L: object  # its layers module
    model: object
    paths: list


def _build(backend, kind, tmp_path_factory) -> Built:
    K, L = keras_module(backend)
    model = {"two_chains": _two_chains, "mixed": _mixed}[kind](K, L)
    randomise(model, seed=5)
    folder = tmp_path_factory.mktemp(f"b2-{backend}-{kind}")
    paths = [folder / "model.h5"] + ([folder / "model.keras"] if backend == "keras3" else [])
    for path in paths:
        model.save(path)
    return Built(backend, kind, K, L, model, paths)


@pytest.fixture(scope="module", params=[(b, k) for b in BACKENDS for k in ("two_chains", "mixed")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def batch_two(request, tmp_path_factory):
    return _build(*request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def two_chains(request, tmp_path_factory):
    return _build(request.param, "two_chains", tmp_path_factory)


@pytest.fixture(scope="module", params=BACKENDS)
def mixed(request, tmp_path_factory):
    return _build(request.param, "mixed", tmp_path_factory)


@pytest.mark.parametrize("rows", [12, 15], ids=["two-full-batches", "last-batch-half"])
def test_batch_of_two_predict_equals_keras(tmp_path, batch_two, rows):
    built = batch_two
    model, paths = built.model, built.paths
    x = np.random.default_rng(24).normal(size=(rows, 2)).astype("float32")
    data = write_rows(tmp_path / "rows.csv", x)
    samples = x.reshape(-1, 3, 2)
    expected = keras_predict_stateful(model, samples, 2)
    for path in paths:
        result = invoke("predict", path, data, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        assert frame["sequence"].tolist() == list(range(len(samples)))
        np.testing.assert_allclose(y_columns(frame), expected, atol=TOL, err_msg=f"{path.name}")
        [note] = result.stderr.splitlines()
        assert note.startswith(f"{NOTE} (2, 3, 2)") and "batches of 2" in note
        if rows == 15:
            assert "the last batch holds 1 of 2" in note


def test_short_last_sample_predict_equals_keras(tmp_path, two_chains):
    """14 rows: samples of 3, 3, 3, 3 and a last one of 2 steps continuing chain 0.  Keras' answer
    for it comes from the same model rebuilt with an open time axis, fed batch after batch."""
    built = two_chains
    model, paths = built.model, built.paths
    x = np.random.default_rng(30).normal(size=(14, 2)).astype("float32")
    data = write_rows(tmp_path / "rows.csv", x)
    config = model.get_config()
    for layer in config["layers"]:
        for key in ("batch_shape", "batch_input_shape"):
            if key in layer["config"]:
                layer["config"][key] = [2, None, 2]
    open_axis = type(model).from_config(config)
    open_axis.set_weights(model.get_weights())
    reset_states(open_axis)
    full = open_axis.predict(x[:12].reshape(4, 3, 2), batch_size=2, verbose=0)
    last = open_axis.predict(np.stack([x[12:], np.zeros((2, 2), "float32")]), batch_size=2, verbose=0)[:1]
    expected = np.concatenate([full, last])
    for path in paths:
        result = invoke("predict", path, data, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        assert frame["sequence"].tolist() == [0, 1, 2, 3, 4]
        np.testing.assert_allclose(y_columns(frame), expected, atol=TOL)
        assert "the last sample has 2 step(s)" in result.stderr and "the last batch holds 1 of 2" in result.stderr


def test_batch_of_two_trace_shows_each_chain_as_one_sequence(tmp_path, batch_two):
    built = batch_two
    K, L, model, paths = built.K, built.L, built.model, built.paths
    kind = built.kind
    x = np.random.default_rng(25).normal(size=(18, 2)).astype("float32")  # 6 samples: 3 per chain
    data = write_rows(tmp_path / "rows.csv", x)
    samples = x.reshape(6, 3, 2)
    first = "lstm" if kind == "two_chains" else "gru"
    twin = sequence_twin(K, L, model, first)
    units = model.get_layer(first).get_weights()[1].shape[0]
    for path in paths:
        result = invoke("trace", path, data, "--layer", first, "--wide", "--format", "csv")
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        for chain in (0, 1):
            rows = frame[frame["sequence"] == chain]
            assert rows["t"].tolist() == list(range(9))
            whole = np.concatenate(list(samples[chain::2]))[None]  # samples chain, chain+2, chain+4
            want = twin.predict(whole, verbose=0)[0]
            np.testing.assert_allclose(rows[[f"hidden_{u}" for u in range(units)]].to_numpy(), want, atol=TOL)


def test_trace_of_a_layer_keras_resets_every_batch(tmp_path, mixed):
    """The non-stateful go_backwards LSTM after the stateful GRU: each sample on its own from
    zeros, read backwards; the chain's t still counts its input rows."""
    built = mixed
    K, L, model, paths = built.K, built.L, built.model, built.paths
    x = np.random.default_rng(29).normal(size=(12, 2)).astype("float32")  # 4 samples, 2 per chain
    data = write_rows(tmp_path / "rows.csv", x)
    samples = x.reshape(4, 3, 2)
    gru = sequence_twin(K, L, model, "gru")
    back = sequence_twin(K, L, model, "back")
    for path in paths:
        result = invoke("trace", path, data, "--layer", "back", "--wide", "--format", "csv")
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        for chain in (0, 1):
            rows = frame[frame["sequence"] == chain].sort_values("t")
            assert rows["t"].tolist() == list(range(6))
            hidden = gru.predict(np.concatenate(list(samples[chain::2]))[None], verbose=0)[0]  # (6, 4)
            want = np.concatenate([back.predict(hidden[None, k : k + 3], verbose=0)[0, ::-1] for k in (0, 3)])
            np.testing.assert_allclose(rows[[f"hidden_{u}" for u in range(3)]].to_numpy(), want, atol=TOL)


def test_batch_of_two_verify_matches_keras(tmp_path, batch_two):
    built = batch_two
    paths = built.paths
    x = np.random.default_rng(26).normal(size=(12, 2)).astype("float32")
    data = write_rows(tmp_path / "rows.csv", x)
    for path in paths:
        result = invoke("verify", path, data, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        assert set(frame["status"]) == {"ok"}, frame


def test_verify_short_last_sample(tmp_path, two_chains):
    """14 rows: samples of 3, 3, 3, 3 and a last one of 2, alone in its batch: Keras runs it (the
    model rebuilt with an open time axis).  17 rows: the 2-step sample shares a batch with a 3-step
    one, which Keras cannot run as one batch: one line, exit 2."""
    built = two_chains
    paths = built.paths
    data = write_rows(tmp_path / "rows.csv", np.random.default_rng(28).normal(size=(14, 2)).astype("float32"))
    result = invoke("verify", paths[0], data, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert set(read_csv(result.stdout)["status"]) == {"ok"}
    assert "open time axis" in result.stderr
    data = write_rows(tmp_path / "rows.csv", np.ones((17, 2), dtype="float32"))
    result = invoke("verify", paths[0], data)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("lstm-inspect: error: verify:") and "multiple of 3" in line


# ------------------------------------------------------------------ another length than the model's T


@pytest.fixture(scope="module", params=BACKENDS)
def fixed_seven(request, tmp_path_factory):
    K, L = keras_module(request.param)
    model = K.Sequential([K.Input((7, 3)), L.LSTM(4, return_sequences=True, name="lstm"), L.Dense(2, name="head")])
    randomise(model, seed=8)
    folder = tmp_path_factory.mktemp(f"t7-{request.param}")
    paths = [folder / "model.h5"] + ([folder / "model.keras"] if request.param == "keras3" else [])
    for path in paths:
        model.save(path)
    return K, L, model, paths


def test_other_length_replays_with_a_warning_and_verify_runs_keras(tmp_path, fixed_seven):
    K, L, model, paths = fixed_seven
    x = np.random.default_rng(27).normal(size=(12, 3)).astype("float32")
    data = write_rows(tmp_path / "twelve.csv", x)
    # Keras' own numbers at 12 steps: the same layers and weights with an open time axis.
    twin = K.Sequential([K.Input((None, 3)), L.LSTM(4, return_sequences=True), L.Dense(2)])
    twin.set_weights(model.get_weights())
    expected = twin.predict(x[None], verbose=0)[0]
    warning = ("lstm-inspect: warning: the model's input layer fixes 7 steps; the input has 12 steps per sequence "
               "(replayed as given: the recurrence does not depend on the length)")
    for path in paths:
        result = invoke("predict", path, data, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        assert result.stderr.splitlines() == [warning]
        np.testing.assert_allclose(y_columns(read_csv(result.stdout)), expected, atol=TOL)
        trace = invoke("trace", path, data, "--units", "0", "--format", "csv")
        assert trace.exit_code == 0 and trace.stderr.splitlines() == [warning]
        verify = invoke("verify", path, data, "--format", "csv")
        assert verify.exit_code == 0, verify.stderr
        assert set(read_csv(verify.stdout)["status"]) == {"ok"}
        assert "open time axis" in verify.stderr and "fixes 7 steps" in verify.stderr


def test_verify_where_keras_needs_the_length_is_one_line_exit_2(tmp_path):
    """Flatten after the LSTM ties the Dense to 7 steps: no replay and no Keras at 12; one line, exit 2."""
    K, L = keras_module("keras3")
    model = K.Sequential([K.Input((7, 3)), L.LSTM(2, return_sequences=True), L.Flatten(), L.Dense(1)])
    path = tmp_path / "flat.keras"
    model.save(path)
    data = write_rows(tmp_path / "twelve.csv", np.ones((12, 3), dtype="float32"))
    result = invoke("verify", path, data)
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if not line.startswith("lstm-inspect: warning:")]
    assert len(errors) == 1 and errors[0].startswith("lstm-inspect: error: "), result.stderr
