"""`predict` (API and command) equals Keras' model.predict for every model kind and file kind.

Also: the two hard_sigmoid definitions and their override, and a stateful
(1, 1, 1) model fed one step at a time, which Keras runs without resetting
its state between calls.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODEL_KINDS, SAMPLES, keras_module
from keras_cache import cached_arrays
from reference import (
    MASKED_KINDS,
    invoke,
    masked_case,
    read_csv,
    reset_states,
)

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions

pytestmark = pytest.mark.keras_oracle  # every test here compares with Keras

TOL = 1e-5
FILES = [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")]
CASES = [pytest.param(kind, backend, ext, id=f"{kind}-{backend}.{ext}") for kind in MODEL_KINDS for backend, ext in FILES]


def as_list(outputs) -> list[np.ndarray]:
    return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else [np.asarray(outputs)]


def keras_predict(model, x):
    reset_states(model)
    try:
        return as_list(model.predict(x, verbose=0))
    finally:
        reset_states(model)


def our_input(kind: str, x):
    return x[..., None] if kind == "embedding" else x


_EXPECTED: dict[tuple[str, str], list[np.ndarray]] = {}


def expected_predict(case) -> list[np.ndarray]:
    """Keras' ``model.predict`` of ``case.x``: once per model and session, and kept on disk between
    runs (keras_cache.py: recomputed when Keras or the generators change)."""
    key = (case.kind, case.backend)
    if key not in _EXPECTED:
        _EXPECTED[key] = cached_arrays(f"predict/{case.kind}-{case.backend}", lambda: keras_predict(case.model, case.x),
                                       keras_predict, as_list, reset_states)
    return _EXPECTED[key]


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")])
@pytest.mark.parametrize("kind, backend, ext", CASES)
def test_predict_equals_keras(saved_model, kind, backend, ext, dtype):
    case = saved_model(kind, backend)
    expected = expected_predict(case)
    got = as_list(li.predict(li.load_model(str(case.paths[ext])), our_input(kind, case.x), options=ReplayOptions(dtype=dtype)))
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, atol=TOL)


@pytest.mark.parametrize("kind, backend, ext", [pytest.param(k, b, e, id=f"{k}-{b}.{e}") for k in MASKED_KINDS for b, e in FILES])
def test_masked_models_predict_equals_keras(kind, backend, ext):
    """Keras' outputs at masked steps: Bidirectional returning sequences zeroes them,
    a plain layer repeats its last output; return_sequences=False gives the last unmasked step."""
    case = masked_case(kind, backend)
    x = case.x
    expected = expected_predict(case)
    got = as_list(li.predict(li.load_model(str(case.paths[ext])), x[..., None] if "embedding" in kind else x))
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, atol=TOL)


def test_bidirectional_merge_none_gives_two_outputs(saved_model):
    case = saved_model("bi_none", "keras3")
    forward, backward = li.predict(li.load_model(str(case.paths["keras"])), case.x)
    want_forward, want_backward = keras_predict(case.model, case.x)
    np.testing.assert_allclose(forward, want_forward, atol=TOL)
    np.testing.assert_allclose(backward, want_backward, atol=TOL)


# ------------------------------------------------------------------ hard_sigmoid


def clone_in(backend: str, source):
    """The relu_hard model rebuilt in ``backend`` with ``source``'s weights."""
    K, L = keras_module(backend)
    model = MODEL_KINDS["relu_hard"](K, L)
    model.set_weights(source.get_weights())
    return model


@pytest.mark.parametrize(
    "saved_by, override, computed_by",
    [
        pytest.param("keras3", "keras2", "tfkeras", id="keras3-file-as-keras2"),
        pytest.param("tfkeras", "keras3", "keras3", id="keras2-file-as-keras3"),
    ],
)
def test_hard_sigmoid_override(saved_model, saved_by, override, computed_by):
    """Each file uses its own Keras' hard_sigmoid; the override switches to the other one's."""
    case = saved_model("relu_hard", saved_by)
    x = case.x * 3  # reach the region where the two definitions differ most
    model = li.load_model(str(case.paths["h5"]))
    own = keras_predict(case.model, x)[0]
    other = keras_predict(clone_in(computed_by, case.model), x)[0]
    assert np.abs(own - other).max() > 1e-2, "the two hard_sigmoid definitions should give different numbers"
    np.testing.assert_allclose(li.predict(model, x), own, atol=TOL)
    np.testing.assert_allclose(li.predict(model, x, options=ReplayOptions(hard_sigmoid=override)), other, atol=TOL)
    traced = li.trace_arrays(model, x, options=ReplayOptions(hard_sigmoid=override))["lstm"]["hidden"]
    np.testing.assert_allclose(traced, other, atol=TOL)


def test_hard_sigmoid_option_on_the_command_line(saved_model, tmp_path):
    case = saved_model("relu_hard", "keras3")
    x = case.x[0] * 3
    path = tmp_path / "x.npy"
    np.save(path, x)
    other = keras_predict(clone_in("tfkeras", case.model), x[None])[0][0]  # (T, U)
    own = keras_predict(case.model, x[None])[0][0]
    for flag, want in [([], own), (["--hard-sigmoid", "keras3"], own), (["--hard-sigmoid", "keras2"], other)]:
        result = invoke("predict", case.paths["keras"], path, "--format", "csv", *flag)
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        assert list(frame.columns) == ["sequence", "t"] + [f"y_{k}" for k in range(5)]
        np.testing.assert_allclose(frame[[f"y_{k}" for k in range(5)]].to_numpy(), want, atol=TOL, err_msg=str(flag))
        result = invoke("trace", case.paths["keras"], path, "--format", "csv", "--gates", "hidden", "--wide", *flag)
        assert result.exit_code == 0, result.stderr
        frame = read_csv(result.stdout)
        np.testing.assert_allclose(frame[[f"hidden_{k}" for k in range(5)]].to_numpy(), want, atol=TOL, err_msg=str(flag))


# ------------------------------------------------------------------ stateful


def keras_step_by_step(model, series: np.ndarray, layer_name: str = "lstm"):
    """Feed a stateful (1, 1, 1) model one value per predict call, never resetting.

    Returns the outputs (T, K) and the LSTM's h and c after each step (T, U).
    """
    layer = model.get_layer(layer_name)
    reset_states(model)
    outputs, hs, cs = [], [], []
    try:
        for value in series:
            outputs.append(model.predict(np.full((1, 1, 1), value, dtype="float32"), verbose=0)[0])
            h, c = (np.asarray(state) for state in layer.states)
            hs.append(h[0])
            cs.append(c[0])
    finally:
        reset_states(model)
    return np.array(outputs), np.array(hs), np.array(cs)


@pytest.mark.parametrize("backend, ext", [pytest.param(b, e, id=f"{b}.{e}") for b, e in FILES])
def test_stateful_api_equals_keras_fed_step_by_step(saved_model, backend, ext):
    case = saved_model("stateful", backend)
    series = np.random.default_rng(3).normal(size=12).astype("float32")
    outputs, hs, cs = keras_step_by_step(case.model, series)
    model = li.load_model(str(case.paths[ext]))
    # Every step its own 1-step sequence, the state carried from one to the next: the default
    # for a model saved stateful with batch shape (1, 1, 1), and what stateful=True asks.
    steps = series.reshape(-1, 1, 1)
    np.testing.assert_allclose(li.predict(model, steps), outputs, atol=TOL)
    np.testing.assert_allclose(li.predict(model, steps, stateful=True), outputs, atol=TOL)
    # The whole series as one sequence is cut into the same 1-step samples by default...
    np.testing.assert_allclose(li.predict(model, series.reshape(1, -1, 1)), outputs, atol=TOL)
    # ... and replayed whole with stateful=False: the last output.
    np.testing.assert_allclose(li.predict(model, series.reshape(1, -1, 1), stateful=False), outputs[-1:], atol=TOL)
    traced = li.trace_arrays(model, series.reshape(1, -1, 1))["lstm"]
    np.testing.assert_allclose(traced["hidden"][0], hs, atol=TOL)
    np.testing.assert_allclose(traced["cell"][0], cs, atol=TOL)
    # With stateful=False, each 1-step sequence starts from zeros: only the first agrees.
    fresh = li.predict(model, steps, stateful=False)
    np.testing.assert_allclose(fresh[0], outputs[0], atol=TOL)
    assert np.abs(fresh[1:] - outputs[1:]).max() > 1e-3


@pytest.fixture(scope="module")
def stateful_sample():
    """The sample stateful model loaded by Keras 3, with its series fed step by step."""
    import keras

    model = keras.saving.load_model(SAMPLES / "stateful_lstm.keras")
    series = read_csv((SAMPLES / "stateful_lstm.csv").read_text())["value"].to_numpy(np.float32)
    outputs, hs, cs = keras_step_by_step(model, series)
    return series, outputs, hs, cs


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_stateful_cli_one_sequence(stateful_sample, ext):
    """The CSV by default: trace gives Keras' state after each step as one sequence; predict one row per
    1-step sample, as model.predict(x) on the rows as (N, 1, 1) gives."""
    series, outputs, hs, cs = stateful_sample
    model, data = SAMPLES / f"stateful_lstm.{ext}", SAMPLES / "stateful_lstm.csv"
    result = invoke("trace", model, data, "--format", "csv", "--wide")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["t"].tolist() == list(range(len(series)))
    np.testing.assert_allclose(frame[[f"hidden_{u}" for u in range(10)]].to_numpy(), hs, atol=TOL)
    np.testing.assert_allclose(frame[[f"cell_{u}" for u in range(10)]].to_numpy(), cs, atol=TOL)
    result = invoke("predict", model, data, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert list(frame.columns) == ["sequence", "y_0", "y_1", "y_2"]
    assert frame["sequence"].tolist() == list(range(len(series)))
    np.testing.assert_allclose(frame[["y_0", "y_1", "y_2"]].to_numpy(), outputs, atol=TOL)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_stateful_cli_each_row_its_own_sequence(stateful_sample, tmp_path, ext):
    """--sequence-column + --stateful: each row is a 1-step sequence and the state carries over."""
    series, outputs, hs, cs = stateful_sample
    data = tmp_path / "steps.csv"
    data.write_text("step,value\n" + "".join(f"s{k},{v!r}\n" for k, v in enumerate(series.tolist())))
    model = SAMPLES / f"stateful_lstm.{ext}"
    result = invoke("predict", model, data, "--sequence-column", "step", "--stateful", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["sequence"].tolist() == [f"s{k}" for k in range(len(series))]
    np.testing.assert_allclose(frame[["y_0", "y_1", "y_2"]].to_numpy(), outputs, atol=TOL)
    result = invoke("trace", model, data, "--sequence-column", "step", "--stateful", "--format", "csv", "--wide")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["t"].tolist() == [0] * len(series)
    np.testing.assert_allclose(frame[[f"hidden_{u}" for u in range(10)]].to_numpy(), hs, atol=TOL)
    np.testing.assert_allclose(frame[[f"cell_{u}" for u in range(10)]].to_numpy(), cs, atol=TOL)
    # With --no-stateful every row starts from zeros.
    result = invoke("predict", model, data, "--sequence-column", "step", "--no-stateful", "--format", "csv")
    frame = read_csv(result.stdout)
    assert np.abs(frame[["y_0", "y_1", "y_2"]].to_numpy()[1:] - outputs[1:]).max() > 1e-3


# ------------------------------------------------------------------ the command on the sample models


def keras_sample(name: str, ext: str):
    if name == "keras2_hard_sigmoid":
        import tf_keras

        return tf_keras.models.load_model(SAMPLES / f"{name}.{ext}", compile=False)
    import keras

    return keras.saving.load_model(SAMPLES / f"{name}.{ext}", compile=False)


SAMPLE_FILES = [
    ("single_lstm", "keras"), ("single_lstm", "h5"), ("stacked_lstm", "keras"), ("stacked_lstm", "h5"),
    ("bidirectional_lstm", "keras"), ("bidirectional_lstm", "h5"), ("embedding_lstm", "keras"), ("embedding_lstm", "h5"),
    ("keras2_hard_sigmoid", "h5"),
]


@pytest.mark.parametrize("name, ext", [pytest.param(n, e, id=f"{n}.{e}") for n, e in SAMPLE_FILES])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_predict_command_on_samples_equals_keras(name, ext, fmt):
    data = SAMPLES / f"{name}.csv"
    x = read_csv(data.read_text()).to_numpy()[None]  # one sequence
    if name == "embedding_lstm":
        x = x[..., 0].astype("int32")
    expected = keras_sample(name, ext).predict(x.astype(x.dtype if name == "embedding_lstm" else "float32"), verbose=0)
    result = invoke("predict", SAMPLES / f"{name}.{ext}", data, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    if fmt == "csv":
        frame = read_csv(result.stdout)
    else:
        import json

        import pandas as pd

        frame = pd.DataFrame(json.loads(result.stdout))
    columns = [c for c in frame.columns if c.startswith("y_")]
    assert list(frame.columns) == ["sequence"] + (["t"] if expected.ndim == 3 else []) + columns
    np.testing.assert_allclose(frame[columns].to_numpy(), expected.reshape(-1, expected.shape[-1]), atol=TOL)
