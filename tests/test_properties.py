"""Property-based tests (hypothesis) on random LSTM models, weights and inputs.

* Traced ``i, f, c, o, cell, hidden`` equal the float64 step equations of
  ``reference.reference_steps`` for any units, features, activations
  (hard_sigmoid in both its Keras 2 and Keras 3 forms, relu, ...), use_bias,
  go_backwards and stacking: on files written directly with h5py in the
  tf-keras layout (fast, so many examples), and on real Keras 3 / tf-keras saves.
* Tracing a sequence cut in two with ``--sequence-column`` and ``--stateful``
  equals tracing it whole.
* The long and wide formats of ``trace`` carry the same numbers.
* What ``weights --format csv`` writes, put back by its ``path``, ``row`` and
  ``column``, rebuilds every stored array exactly (values chosen to be
  awkward: subnormals, signed zeros, the largest float32s).

Expectations come from the reference equations or from h5py reading the file
directly, never from lstm-inspect's own output.
"""

from __future__ import annotations

import io
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from hostile import write_lstm_h5
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import invoke, reference_steps

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions

ACTIVATIONS = ["tanh", "sigmoid", "relu", "linear", "hard_sigmoid"]
RECURRENT_ACTIVATIONS = ["sigmoid", "hard_sigmoid", "tanh", "linear"]
KERAS_VERSIONS = {"2.15.0": "keras2", "3.4.1": "keras3"}  # the saving Keras decides hard_sigmoid
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


class LSTM:
    """A stand-in for a Keras LSTM layer, for ``reference_steps`` (which reads get_config/get_weights)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def get_config(self) -> dict:
        return {key: self.spec[key] for key in ("activation", "recurrent_activation", "go_backwards")}

    def get_weights(self) -> list[np.ndarray]:
        tensors = [self.spec["kernel"], self.spec["recurrent_kernel"]]
        return tensors + ([self.spec["bias"]] if self.spec["bias"] is not None else [])


@st.composite
def lstm_models(draw, max_layers: int = 2, go_backwards: bool | None = None):
    """(layers, features, keras_version): stacked LSTMs with random settings and float32 weights."""
    features = draw(st.integers(1, 4))
    scale = draw(st.sampled_from([0.1, 0.7, 2.0]))  # small, usual, saturating
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    layers = []
    width = features
    count = draw(st.integers(1, max_layers))
    for index in range(count):
        units = draw(st.integers(1, 6))
        layers.append({
            "name": f"lstm_{index}",
            "activation": draw(st.sampled_from(ACTIVATIONS)),
            "recurrent_activation": draw(st.sampled_from(RECURRENT_ACTIVATIONS)),
            "go_backwards": draw(st.booleans()) if go_backwards is None else go_backwards,
            "return_sequences": index < count - 1 or draw(st.booleans()),
            "kernel": (rng.normal(size=(width, 4 * units)) * scale).astype(np.float32),
            "recurrent_kernel": (rng.normal(size=(units, 4 * units)) * scale).astype(np.float32),
            "bias": (rng.normal(size=4 * units) * scale).astype(np.float32) if draw(st.booleans()) else None,
        })
        width = units
    return layers, features, draw(st.sampled_from(sorted(KERAS_VERSIONS)))


def inputs(features: int, max_steps: int = 9):
    return st.tuples(st.integers(1, 3), st.integers(1, max_steps), st.integers(0, 2**32 - 1)).map(
        lambda t: np.random.default_rng(t[2]).normal(size=(t[0], t[1], features)).astype(np.float32))


def reference_trace(layers: list[dict], x: np.ndarray, hard_sigmoid: str) -> dict[str, dict[str, np.ndarray]]:
    """Each layer's reference steps; a layer's input is the previous one's hidden sequence as
    Keras passes it on: in processing order, so reversed after a go_backwards layer."""
    result = {}
    value = x.astype(np.float64)
    for spec in layers:
        steps = reference_steps(LSTM(spec), value, hard_sigmoid)
        result[spec["name"]] = steps
        value = steps["hidden"][:, ::-1] if spec["go_backwards"] else steps["hidden"]
    return result


def assert_trace_equals_reference(model, layers, x, hard_sigmoid, dtype, tolerance):
    with np.errstate(all="ignore"), warnings.catch_warnings():  # linear/relu layers may overflow: compared as inf
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = li.trace_arrays(model, x, options=ReplayOptions(dtype=dtype))
        expected = reference_trace(layers, x, hard_sigmoid)
    assert list(ours) == [spec["name"] for spec in layers]
    if dtype == np.float32 and any(np.nanmax(np.abs(v)) > 1e30 for steps in expected.values() for v in steps.values()
                                   if v.dtype.kind == "f"):
        return  # beyond float32: its infinities are right, but not comparable with float64's large numbers
    for name, want in expected.items():
        for value in ("i", "f", "c", "o", "cell", "hidden"):
            got = ours[name][value].astype(np.float64)
            finite = np.abs(want[value][np.isfinite(want[value])])
            scale = max(1.0, float(finite.max(initial=0.0)))  # relu/linear can grow large (or overflow: inf)
            np.testing.assert_allclose(got, want[value], rtol=tolerance, atol=tolerance * scale,
                                       err_msg=f"{name}.{value}")


# ------------------------------------------------------------------ trace = the equations


@settings(max_examples=150, **SETTINGS)
@given(data=st.data(), spec=lstm_models())
def test_trace_equals_float64_equations(tmp_path, data, spec):
    """The proof: the float64 replay is the equations, to 1e-9, on any stack hypothesis draws."""
    assert_drawn_stack_equals_reference(tmp_path, data, spec, np.float64, 1e-9)


def assert_drawn_stack_equals_reference(tmp_path, data, spec, dtype, tolerance):
    layers, features, version = spec
    x = data.draw(inputs(features))
    path = write_lstm_h5(tmp_path / "model.h5", layers, features=features, keras_version=version)
    assert_trace_equals_reference(li.load_model(str(path)), layers, x, KERAS_VERSIONS[version], dtype, tolerance)


# The float32 replay against the same equations is only a bound: a drawn stack can amplify float32
# rounding without limit (linear activations, a hard_sigmoid input at its clip point), so random
# draws would now and then find one over any fixed bound.  The same 60 draws every run (derandomize)
# keep it a bound on the float32 path, not a lottery.
@settings(max_examples=60, derandomize=True, **SETTINGS)
@given(data=st.data(), spec=lstm_models())
def test_float32_trace_stays_near_the_equations(tmp_path, data, spec):
    assert_drawn_stack_equals_reference(tmp_path, data, spec, np.float32, 2e-4)


@pytest.mark.keras_oracle
def test_the_hand_written_layout_is_what_tf_keras_loads(tmp_path):
    """Control for ``write_lstm_h5``: tf-keras loads the file and computes what lstm-inspect does."""
    import tf_keras

    rng = np.random.default_rng(3)
    layers = [
        {"name": "a", "activation": "relu", "recurrent_activation": "hard_sigmoid", "go_backwards": True,
         "kernel": rng.normal(size=(3, 8)), "recurrent_kernel": rng.normal(size=(2, 8)), "bias": rng.normal(size=8)},
        {"name": "b", "return_sequences": False, "kernel": rng.normal(size=(2, 12)),
         "recurrent_kernel": rng.normal(size=(3, 12)), "bias": None},
    ]
    path = write_lstm_h5(tmp_path / "hand.h5", layers, features=3)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    keras_model = tf_keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(li.predict(li.load_model(str(path)), x), keras_model.predict(x, verbose=0), atol=1e-5)


@st.composite
def keras_configs(draw):
    return {
        "units": draw(st.integers(1, 5)),
        "activation": draw(st.sampled_from(ACTIVATIONS)),
        "recurrent_activation": draw(st.sampled_from(RECURRENT_ACTIVATIONS)),
        "use_bias": draw(st.booleans()),
        "go_backwards": draw(st.booleans()),
        "return_sequences": True,
    }


@pytest.mark.keras_oracle
@settings(max_examples=8, **SETTINGS)
@given(config=keras_configs(), features=st.integers(1, 3), where=st.sampled_from(["keras3.keras", "keras3.h5", "tfkeras.h5"]),
       seed=st.integers(0, 1000))
def test_real_keras_saves_equal_the_equations(tmp_path, config, features, where, seed):
    """The same property on files Keras itself wrote (Keras 3 .keras and .h5, tf-keras .h5)."""
    from conftest import keras_module

    backend, suffix = where.split(".")
    K, L = keras_module(backend)
    model = K.Sequential([K.Input((None, features)), L.LSTM(name="lstm", **config)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.8, w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / f"model.{suffix}"
    model.save(path)
    x = rng.normal(size=(2, 5, features)).astype(np.float32)
    ours = li.trace_arrays(li.load_model(str(path)), x, options=ReplayOptions(dtype=np.float64))["lstm"]
    want = reference_steps(model.get_layer("lstm"), x, "keras3" if backend == "keras3" else "keras2")
    for value in ("i", "f", "c", "o", "cell", "hidden"):
        scale = max(1.0, float(np.abs(want[value]).max()))
        np.testing.assert_allclose(ours[value], want[value], rtol=1e-9, atol=1e-9 * scale, err_msg=value)


# ------------------------------------------------------------------ stateful halves = the whole


def _csv(x: np.ndarray, ids: list[str] | None = None) -> bytes:
    frame = pd.DataFrame(x.astype(np.float64), columns=[f"x{k}" for k in range(x.shape[1])])
    if ids is not None:
        frame.insert(0, "id", ids)
    return frame.to_csv(index=False, float_format="%.17g").encode()


def _trace_csv(path, data: bytes, *args) -> pd.DataFrame:
    result = invoke("trace", path, "-", "--format", "csv", "--dtype", "float64", *args, input=data)
    assert result.exit_code == 0, result.stderr
    return pd.read_csv(io.StringIO(result.stdout), dtype={"sequence": str})


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), spec=lstm_models(go_backwards=False))
def test_stateful_halves_equal_the_whole(tmp_path, data, spec):
    """`--sequence-column id --stateful` on rows a…a b…b carries the state from a into b: the
    two halves together are the whole sequence traced at once (t restarts in each sequence)."""
    layers, features, version = spec
    steps = data.draw(st.integers(2, 12))
    cut = data.draw(st.integers(1, steps - 1))
    x = np.random.default_rng(steps * 31 + cut).normal(size=(steps, features)).astype(np.float32)
    path = write_lstm_h5(tmp_path / "model.h5", layers, features=features, keras_version=version)
    whole = _trace_csv(path, _csv(x))
    halves = _trace_csv(path, _csv(x, ["a"] * cut + ["b"] * (steps - cut)), "--sequence-column", "id", "--stateful")
    assert set(halves["sequence"]) == {"a", "b"}
    halves.loc[halves["sequence"] == "b", "t"] += cut
    keys = ["layer", "t", "unit"]
    whole = whole.drop(columns="sequence").sort_values(keys).reset_index(drop=True)
    halves = halves.drop(columns="sequence").sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(halves, whole, check_exact=False, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ long and wide


@settings(max_examples=25, **SETTINGS)
@given(data=st.data(), spec=lstm_models())
def test_long_and_wide_csv_carry_the_same_numbers(tmp_path, data, spec):
    """Per (sequence, layer, t), the wide row's `<value>_<unit>` cells are the long rows' values,
    for any stacking, go_backwards order and number of sequences."""
    layers, features, version = spec
    x = data.draw(inputs(features, max_steps=6))
    path = write_lstm_h5(tmp_path / "model.h5", layers, features=features, keras_version=version)
    ids = [str(n) for n in range(x.shape[0]) for _ in range(x.shape[1])]
    text = _csv(x.reshape(-1, features), ids)
    long = _trace_csv(path, text, "--sequence-column", "id")
    wide = _trace_csv(path, text, "--sequence-column", "id", "--wide")
    values = ["i", "f", "c", "o", "cell", "hidden"]
    assert len(wide) == len(long[["sequence", "layer", "t"]].drop_duplicates())
    merged = long.merge(wide, on=["sequence", "layer", "t"], validate="many_to_one")
    for name in values:
        picked = merged.apply(lambda row, name=name: row[f"{name}_{row['unit']}"], axis=1).to_numpy(float)
        np.testing.assert_array_equal(picked, merged[name].to_numpy(float), err_msg=name)
    widest = max(spec_["recurrent_kernel"].shape[0] for spec_ in layers)
    assert [c for c in wide.columns if c.startswith("hidden_")] == [f"hidden_{u}" for u in range(widest)]


# ------------------------------------------------------------------ weights CSV rebuilds the file

AWKWARD = st.one_of(
    st.floats(width=32, allow_nan=False),  # infinities too (they are warned about, and written as inf)
    st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 1.0, -1.0]),
)


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), spec=lstm_models())
def test_weights_csv_rebuilds_the_stored_arrays(tmp_path, data, spec):
    layers, features, version = spec
    for layer in layers:
        for tensor in ("kernel", "recurrent_kernel", "bias"):
            if layer[tensor] is not None:
                shape = layer[tensor].shape
                values = data.draw(st.lists(AWKWARD, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
                layer[tensor] = np.array(values, dtype=np.float32).reshape(shape)
    path = write_lstm_h5(tmp_path / "model.h5", layers, features=features, keras_version=version)
    result = invoke("weights", path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = pd.read_csv(io.StringIO(result.stdout), dtype={"value": str})
    rebuilt: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        for stored_path, group in rows.groupby("path"):
            stored = h5[stored_path][()]
            array = np.full(stored.shape, np.nan, dtype=np.float32)
            cols = group["column"].to_numpy(int)
            cells = np.array([float(v) for v in group["value"]], dtype=np.float32)
            if stored.ndim == 2:
                array[group["row"].to_numpy(int), cols] = cells
            else:
                assert group["row"].isna().all(), "a bias value with a row"
                array[cols] = cells
            assert len(group) == stored.size, stored_path  # every value once
            np.testing.assert_array_equal(array.view(np.uint32), stored.view(np.uint32), err_msg=stored_path)  # bit for bit
            rebuilt[stored_path] = array
    expected = [f"model_weights/{layer['name']}/{layer['name']}/lstm_cell/{tensor}:0"
                for layer in layers for tensor in ("kernel", "recurrent_kernel", "bias") if layer[tensor] is not None]
    assert sorted(rebuilt) == sorted(expected)


@pytest.mark.parametrize("version,expected", [("2.15.0", "keras2"), ("3.4.1", "keras3")])
def test_hard_sigmoid_follows_the_version_in_hand_written_files(tmp_path, version, expected):
    """The fixed point of the property above: one hard_sigmoid LSTM, both Keras conventions."""
    rng = np.random.default_rng(1)
    layers = [{"name": "lstm", "activation": "tanh", "recurrent_activation": "hard_sigmoid", "go_backwards": False,
               "kernel": rng.normal(size=(2, 8)).astype(np.float32), "recurrent_kernel": rng.normal(size=(2, 8)).astype(np.float32),
               "bias": None}]
    path = write_lstm_h5(tmp_path / "m.h5", layers, features=2, keras_version=version)
    x = rng.normal(size=(1, 4, 2)).astype(np.float32) * 3
    got = li.trace_arrays(li.load_model(str(path)), x, options=ReplayOptions(dtype=np.float64))["lstm"]["i"]
    other = "keras3" if expected == "keras2" else "keras2"
    np.testing.assert_allclose(got, reference_trace(layers, x, expected)["lstm"]["i"], atol=1e-12)
    assert not np.allclose(got, reference_trace(layers, x, other)["lstm"]["i"], atol=1e-6)
