"""The replay engine's gates against an independent float64 computation, and its code paths.

``reference.reference_steps`` writes the Keras step equations out gate by
gate from ``layer.get_weights()``; its hidden states are first checked
against Keras itself, so the gates it yields are trustworthy.  Every value
lstm-inspect labels (i, f, c, o, cell, hidden; z, r, c; the z_* pre-activations)
is compared with it, in float32 and float64, on each of the engine's LSTM
paths (sigmoid/tanh fast path, hard_sigmoid clip path, general path), with
small chunks, batched and one sequence at a time, and from given initial states.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEATURES, STEPS, keras_module, randomise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import keras_steps, recurrent_inputs, reference_steps

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions, compile_model
from lstm_inspect.inputs import InputSequence

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
FILES = [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")]
# Kinds whose recurrent layers exercise every gate formula: LSTM (fast, clip via
# `tanh_hard`, general via `relu_hard`), no bias, backwards, masks, stacked,
# Bidirectional, GRU both reset_after settings, SimpleRNN.
GATE_KINDS = [
    "single", "stacked", "relu_hard", "backwards", "no_bias", "bi_concat", "bi_last", "embedding", "masking",
    "nested", "gru", "gru_reset_before", "simple_rnn", "bi_gru",
]


def tolerance(dtype) -> dict:
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == np.float32 else {"atol": 1e-9, "rtol": 1e-9}


def hard_sigmoid_of(backend: str) -> str:
    return "keras3" if backend == "keras3" else "keras2"


def our_input(kind: str, x):
    return x[..., None] if kind == "embedding" else x


@pytest.fixture(scope="session")
def tanh_hard(model_dir):
    """LSTM(tanh, hard_sigmoid): the engine's clip path, saved by Keras 3 and by tf-keras."""
    cases = {}

    def make(backend: str):
        if backend not in cases:
            K, L = keras_module(backend)
            model = K.Sequential(
                [K.Input((STEPS, FEATURES)), L.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm")]
            )
            randomise(model, seed=31, scale=1.5)  # large weights: gates reach the clip at 0 and 1
            path = model_dir / f"tanh_hard-{backend}.h5"
            model.save(path)
            x = np.random.default_rng(31).normal(scale=2.0, size=(3, STEPS, FEATURES)).astype("float32")
            cases[backend] = (model, path, x)
        return cases[backend]

    return make


def assert_matches_reference(traced: dict, expected: dict, dtype, where: str) -> None:
    keep = ~expected["masked"]
    for name, want in expected.items():
        if name == "masked":
            continue
        if name.startswith("z_") and name not in traced:
            continue  # traced without pre-activations
        got = traced[name]
        if name.startswith("z_"):  # pre-activations: compared where the step ran
            got, want = got[keep], want[keep]
        np.testing.assert_allclose(got, want, **tolerance(dtype), err_msg=f"{where}: {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", GATE_KINDS)
@pytest.mark.parametrize("backend, ext", [pytest.param(b, e, id=f"{b}.{e}") for b, e in FILES])
def test_gates_equal_float64_equations(saved_model, kind, backend, ext, dtype):
    case = saved_model(kind, backend)
    model = li.load_model(str(case.paths[ext]))
    traced = li.trace_arrays(model, our_input(kind, case.x), options=ReplayOptions(dtype=dtype, pre_activation=True))
    for item in recurrent_inputs(case.model, case.x):
        expected = reference_steps(item.layer, item.x, hard_sigmoid_of(backend), item.mask)
        # The equations are right: their hidden states are Keras' own.
        np.testing.assert_allclose(expected["hidden"], keras_steps(item.layer, item.x, item.mask).hidden, atol=1e-5)
        assert traced[item.name]["hidden"].dtype == dtype
        # A layer fed by another takes Keras' float32 output as its input here.
        precision = dtype if item.exact else np.float32
        assert_matches_reference(traced[item.name], expected, precision, item.name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["keras3", "tfkeras"])
def test_clip_path_hard_sigmoid_gates(tanh_hard, backend, dtype):
    model_keras, path, x = tanh_hard(backend)
    model = li.load_model(str(path))
    options = ReplayOptions(dtype=dtype, pre_activation=True)
    assert compile_model(model, options).recurrent["lstm"].scan.cell.mode == "clip"
    traced = li.trace_arrays(model, x, options=options)["lstm"]
    layer = model_keras.get_layer("lstm")
    expected = reference_steps(layer, x, hard_sigmoid_of(backend))
    np.testing.assert_allclose(expected["hidden"], keras_steps(layer, x).hidden, atol=1e-5)
    assert_matches_reference(traced, expected, dtype, "lstm")
    gates = np.concatenate([traced[g].ravel() for g in "ifo"])
    assert (gates == 0).any() and (gates == 1).any(), "the clip at 0 and 1 was not exercised"


@pytest.mark.parametrize(
    "kind, mode",
    [pytest.param("single", "tanh", id="sigmoid-tanh-fast"), pytest.param("relu_hard", "general", id="relu-general")],
)
def test_engine_path_chosen(saved_model, kind, mode):
    model = li.load_model(str(saved_model(kind, "keras3").paths["keras"]))
    name = model.recurrent_names()[0]
    assert compile_model(model).recurrent[name].scan.cell.mode == mode


def test_relu_hard_sigmoid_reaches_both_clips(saved_model):
    """The general path covers relu and hard_sigmoid's saturated regions too."""
    case = saved_model("relu_hard", "keras3")
    traced = li.trace_arrays(li.load_model(str(case.paths["keras"])), case.x * 4)["lstm"]
    gates = np.concatenate([traced[g].ravel() for g in "ifo"])
    assert (gates == 0).any() and (gates == 1).any()
    assert (traced["c"] == 0).any() and (traced["c"] > 0).any()  # relu candidate
    expected = reference_steps(case.model.get_layer("lstm"), case.x * 4, "keras3")
    assert_matches_reference(traced, expected, np.float32, "lstm")


# ------------------------------------------------------------------ chunks and batches

CHUNK_KINDS = ["single", "backwards", "masking", "embedding", "bi_concat", "stacked", "gru", "simple_rnn", "relu_hard"]


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("kind", CHUNK_KINDS)
def test_chunked_scan_equals_one_chunk(saved_model, kind, chunk):
    """7 steps in chunks of 3 (3+3+1) or 1: the same trace and the same prediction as Keras."""
    case = saved_model(kind, "keras3")
    model = li.load_model(str(case.paths["keras"]))
    x = our_input(kind, case.x)
    small = li.trace_arrays(model, x, options=ReplayOptions(chunk=chunk, pre_activation=True))
    whole = li.trace_arrays(model, x, options=ReplayOptions(chunk=2048, pre_activation=True))
    assert small.keys() == whole.keys()
    for name in whole:
        for value in whole[name]:
            np.testing.assert_allclose(small[name][value], whole[name][value], atol=1e-6, err_msg=f"{name}: {value}")
    expected = case.model.predict(case.x, verbose=0)
    got = li.predict(model, x, options=ReplayOptions(chunk=chunk))
    for want, have in zip(expected if isinstance(expected, (list, tuple)) else [expected], got if isinstance(got, list) else [got]):
        np.testing.assert_allclose(have, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["single", "backwards", "masking", "bi_concat", "embedding", "gru_reset_before"])
def test_batched_trace_equals_one_sequence_at_a_time(saved_model, kind):
    case = saved_model(kind, "keras3")
    model = li.load_model(str(case.paths["keras"]))
    x = our_input(kind, case.x)
    batched = li.trace_arrays(model, x)
    for n in range(x.shape[0]):
        alone = li.trace_arrays(model, x[n : n + 1])
        for name in batched:
            for value in batched[name]:
                np.testing.assert_allclose(
                    alone[name][value][0], batched[name][value][n], atol=1e-6, err_msg=f"sequence {n}, {name}: {value}"
                )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.integers(1, 12),
    n=st.integers(1, 4),
    chunk=st.integers(1, 13),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_any_chunk_batch_and_mask_equals_equations(saved_model, steps, n, chunk, seed, dtype):
    """Masked steps anywhere (also across chunk borders), any batch size and chunk size."""
    case = saved_model("masking", "keras3")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, FEATURES)).astype("float32")
    x[rng.random((n, steps)) < 0.3] = 0.0  # masked steps
    model = li.load_model(str(case.paths["keras"]))
    traced = li.trace_arrays(model, x, options=ReplayOptions(dtype=dtype, chunk=chunk, pre_activation=True))["lstm"]
    expected = reference_steps(case.model.get_layer("lstm"), x, "keras3", mask=np.any(x != 0, axis=-1))
    assert_matches_reference(traced, expected, dtype, "lstm")
    np.testing.assert_array_equal(traced["masked"], expected["masked"])


def test_ragged_sequences_each_equal_keras(saved_model):
    """Sequences of different lengths (replayed in separate batches) each match Keras."""
    case = saved_model("single", "keras3")
    model = li.load_model(str(case.paths["h5"]))
    layer = case.model.get_layer("lstm")
    rng = np.random.default_rng(5)
    sequences = [InputSequence(k, rng.normal(size=(steps, FEATURES)).astype("float32")) for k, steps in enumerate([7, 3, 3, 11, 1])]
    frame = li.trace(model, sequences)
    for sequence in sequences:
        expected = keras_steps(layer, sequence.values[None]).hidden[0]
        rows = frame[frame["sequence"] == sequence.id]
        got = rows.pivot(index="t", columns="unit", values="hidden").to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"sequence {sequence.id}")


# ------------------------------------------------------------------ initial states


@pytest.mark.parametrize("per_sequence", [False, True], ids=["one-state", "state-per-sequence"])
@pytest.mark.parametrize("kind, name", [("single", "lstm"), ("backwards", "lstm"), ("gru", "gru"), ("simple_rnn", "rnn")])
def test_initial_state_equals_keras(saved_model, kind, name, per_sequence):
    case = saved_model(kind, "keras3")
    model = li.load_model(str(case.paths["keras"]))
    layer = case.model.get_layer(name)
    units = layer.get_config()["units"]
    rng = np.random.default_rng(9)
    count = 2 if kind in ("single", "backwards") else 1
    shape = (case.x.shape[0], units) if per_sequence else (units,)
    state = [rng.normal(size=shape).astype("float32") for _ in range(count)]
    keras_state = [np.broadcast_to(s, (case.x.shape[0], units)) for s in state]
    expected = keras_steps(layer, case.x, initial_state=keras_state)
    for dtype in (np.float32, np.float64):
        traced = li.trace_arrays(model, case.x, options=ReplayOptions(dtype=dtype), initial_states={name: state})[name]
        np.testing.assert_allclose(traced["hidden"], expected.hidden, atol=1e-5)
        reference = reference_steps(layer, case.x, "keras3", initial_state=keras_state)
        assert_matches_reference(traced, reference, dtype, name)
