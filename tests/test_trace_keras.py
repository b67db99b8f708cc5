"""The traced hidden and cell states equal Keras' own, for every model kind and file kind.

For each recurrent layer, Keras is asked for the same numbers: a clone of
the layer with ``return_sequences=True, return_state=True`` gets the
layer's weights and is called on the layer's own input (see
``reference.py``).  Our ``t`` is the input row consumed, so a go_backwards
layer's Keras outputs (processing order) are flipped before comparing.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODEL_KINDS
from reference import (
    MASKED_KINDS,
    build_masked,
    keras_steps,
    masked_input,
    recurrent_inputs,
)

import lstm_inspect as li

pytestmark = pytest.mark.keras_oracle  # every test here compares with Keras

TOL = 1e-5

# (backend, file) pairs: Keras 3 saves .keras and .h5; tf-keras 2.x saves .h5.
FILES = [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")]
CASES = [pytest.param(kind, backend, ext, id=f"{kind}-{backend}.{ext}") for kind in MODEL_KINDS for backend, ext in FILES]


def our_input(kind: str, x: np.ndarray) -> np.ndarray:
    """lstm-inspect takes (N, T, F); an Embedding model's ids are one feature column."""
    return x[..., None] if kind == "embedding" else x


def last_step(layer_input) -> int:
    """The input row an LSTM consumes last: the first for go_backwards."""
    return 0 if layer_input.layer.get_config().get("go_backwards") else layer_input.x.shape[1] - 1


@pytest.mark.parametrize("kind, backend, ext", CASES)
def test_hidden_and_final_state_equal_keras(saved_model, kind, backend, ext):
    case = saved_model(kind, backend)
    model = li.load_model(str(case.paths[ext]))
    traced = li.trace_arrays(model, our_input(kind, case.x))
    expected_layers = recurrent_inputs(case.model, case.x)
    assert sorted(traced) == sorted(item.name for item in expected_layers)
    for item in expected_layers:
        expected = keras_steps(item.layer, item.x, item.mask)
        got = traced[item.name]
        np.testing.assert_allclose(got["hidden"], expected.hidden, atol=TOL, err_msg=f"{item.name}: hidden")
        last = last_step(item)
        np.testing.assert_allclose(got["hidden"][:, last], expected.h, atol=TOL, err_msg=f"{item.name}: final h")
        if expected.c is not None:
            np.testing.assert_allclose(got["cell"][:, last], expected.c, atol=TOL, err_msg=f"{item.name}: final c")
        if item.mask is not None:
            np.testing.assert_array_equal(got["masked"], ~item.mask)


@pytest.mark.parametrize("kind, backend, ext", [pytest.param(k, b, e, id=f"{k}-{b}.{e}") for k in MASKED_KINDS for b, e in FILES])
def test_masked_models_hidden_equals_keras(kind, backend, ext):
    """Masks with Bidirectional, go_backwards, a chain of layers, Keras 3 functional graphs."""
    keras_model, paths = build_masked(kind, backend)
    x = masked_input(kind)
    traced = li.trace_arrays(li.load_model(str(paths[ext])), x[..., None] if "embedding" in kind else x)
    items = recurrent_inputs(keras_model, x)
    assert sorted(traced) == sorted(item.name for item in items)
    for item in items:
        expected = keras_steps(item.layer, item.x, item.mask)
        np.testing.assert_allclose(traced[item.name]["hidden"], expected.hidden, atol=TOL, err_msg=item.name)
        np.testing.assert_allclose(traced[item.name]["hidden"][:, last_step(item)], expected.h, atol=TOL, err_msg=item.name)
        np.testing.assert_array_equal(traced[item.name]["masked"], ~item.mask)


@pytest.mark.parametrize("kind", ["single", "backwards", "bi_concat", "stacked", "masking", "gru", "simple_rnn"])
def test_long_frame_hidden_equals_keras(saved_model, kind):
    """The long DataFrame: one row per (sequence, layer, t, unit); t is the input row."""
    case = saved_model(kind, "keras3")
    frame = li.trace(li.load_model(str(case.paths["keras"])), case.x)
    assert list(frame.columns[:4]) == ["sequence", "layer", "t", "unit"]
    for item in recurrent_inputs(case.model, case.x):
        expected = keras_steps(item.layer, item.x, item.mask)
        rows = frame[frame["layer"] == item.name]
        n, steps, units = expected.hidden.shape
        assert len(rows) == n * steps * units
        got = np.full(expected.hidden.shape, np.nan)
        got[rows["sequence"].to_numpy(int), rows["t"].to_numpy(int), rows["unit"].to_numpy(int)] = rows["hidden"]
        np.testing.assert_allclose(got, expected.hidden, atol=TOL, err_msg=item.name)


@pytest.mark.parametrize("kind", ["backwards", "bi_sum"])
def test_backwards_layer_rows_come_in_processing_order(saved_model, kind):
    """A go_backwards layer consumes the last row first: its t column descends."""
    case = saved_model(kind, "keras3")
    frame = li.trace(li.load_model(str(case.paths["h5"])), case.x[:1])
    name = "lstm" if kind == "backwards" else "bi/backward"
    t = frame.loc[(frame["layer"] == name) & (frame["unit"] == 0), "t"].tolist()
    assert t == list(range(case.x.shape[1] - 1, -1, -1))
    if kind == "bi_sum":
        t = frame.loc[(frame["layer"] == "bi/forward") & (frame["unit"] == 0), "t"].tolist()
        assert t == list(range(case.x.shape[1]))


def test_masked_steps_hold_the_state_and_have_no_gates(saved_model):
    """Masking: a masked step keeps h and c; its gates are NaN and `masked` is 1."""
    case = saved_model("masking", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    traced = li.trace_arrays(model, case.x)["lstm"]
    masked = ~np.any(case.x != 0, axis=-1)
    np.testing.assert_array_equal(traced["masked"], masked)
    for gate in "ifco":
        assert np.isnan(traced[gate][masked]).all()
        assert np.isfinite(traced[gate][~masked]).all()
    n_idx, t_idx = np.nonzero(masked)
    for n, t in zip(n_idx, t_idx):
        for name in ("hidden", "cell"):
            previous = traced[name][n, t - 1] if t > 0 else np.zeros(traced[name].shape[-1])
            np.testing.assert_array_equal(traced[name][n, t], previous)
    frame = li.trace(model, case.x)
    rows = frame[frame["masked"] == 1]
    assert len(rows) == masked.sum() * 5
    assert rows[["i", "f", "c", "o"]].isna().all().all()
    assert (frame.loc[frame["masked"] == 0, ["i", "f", "c", "o"]].notna()).all().all()


def test_embedding_padding_is_masked_and_final_state_equals_keras(saved_model):
    """mask_zero: padded ids (0) are masked steps; the returned (last) h is Keras' output."""
    case = saved_model("embedding", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    traced = li.trace_arrays(model, case.x[..., None])["lstm"]
    np.testing.assert_array_equal(traced["masked"], case.x == 0)
    np.testing.assert_allclose(traced["hidden"][:, -1], case.model.predict(case.x, verbose=0), atol=TOL)


def test_keras_masked_step_outputs():
    """Keras' own convention, which the replay copies: at a masked step a plain layer repeats
    its previous output (zeros before the first unmasked step); a Bidirectional that returns
    sequences outputs zeros there (zero_output_for_mask)."""
    import keras

    x = np.random.default_rng(2).normal(size=(1, 5, 2)).astype("float32")
    mask = np.array([[False, True, False, False, True]])
    lstm = keras.layers.LSTM(3, return_sequences=True)
    plain = np.asarray(lstm(x, mask=mask))[0]
    np.testing.assert_array_equal(plain[0], 0)
    np.testing.assert_array_equal(plain[2], plain[1])
    np.testing.assert_array_equal(plain[3], plain[1])
    bi = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), merge_mode="concat")
    both = np.asarray(bi(x, mask=mask))[0]
    np.testing.assert_array_equal(both[~mask[0]], 0)
    assert np.all(both[mask[0]] != 0)


@pytest.mark.parametrize("kind, backend, ext", [c for c in CASES if c.id.endswith(("keras3.keras", "tfkeras.h5"))])
def test_batch_split_across_threads_equals_keras(saved_model, kind, backend, ext):
    """Each sequence stepped in its own thread (``threads=3``), the state handed on across blocks of two steps."""
    case = saved_model(kind, backend)
    model = li.load_model(str(case.paths[ext]))
    traced = li.trace_arrays(model, our_input(kind, case.x), options=li.ReplayOptions(threads=3, chunk=2))
    for item in recurrent_inputs(case.model, case.x):
        expected = keras_steps(item.layer, item.x, item.mask)
        np.testing.assert_allclose(traced[item.name]["hidden"], expected.hidden, atol=TOL, err_msg=item.name)
        if expected.c is not None:
            np.testing.assert_allclose(traced[item.name]["cell"][:, last_step(item)], expected.c, atol=TOL, err_msg=item.name)


@pytest.mark.parametrize("kind", MASKED_KINDS)
def test_masked_batch_split_across_threads_equals_keras(kind):
    keras_model, paths = build_masked(kind, "keras3")
    x = masked_input(kind)
    model = li.load_model(str(paths["keras"]))
    traced = li.trace_arrays(model, x[..., None] if "embedding" in kind else x, options=li.ReplayOptions(threads=2, chunk=3))
    for item in recurrent_inputs(keras_model, x):
        expected = keras_steps(item.layer, item.x, item.mask)
        np.testing.assert_allclose(traced[item.name]["hidden"], expected.hidden, atol=TOL, err_msg=item.name)
        np.testing.assert_array_equal(traced[item.name]["masked"], ~item.mask)
