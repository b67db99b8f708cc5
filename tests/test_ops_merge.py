"""The merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate) and Dot
replayed in NumPy equal Keras, masks included.

Keras 3 changed the merge layers' mask rules (OR instead of AND; Multiply,
Maximum and Minimum use the masks in their values), so both Kerases are
tested on inputs masked differently (and not at all).  The masks are
observed where they matter: recurrent layers after the merges ("probes")
skip the masked steps, and their outputs are compared with Keras'.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ops_attention import (
    FILES,
    assert_outputs,
    cli_predict,
    keras_layer_output,
    model_builder,
)

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions, compile_model

TOL = 1e-5
N, T, F, U = 3, 6, 3, 4
# Merges whose output mask differs between the Kerases or between inputs: a recurrent layer probes each.
PROBED = ("add", "add_unmasked", "subtract", "multiply", "maximum_unmasked", "concat", "concat_unmasked",
          "concat_time", "concat_time_unmasked")


def _merges(K, L, keras3):
    """Three sequences (two masked differently, one not), a vector and a 4-D input, merged every way."""
    a_in, b_in, c_in = (K.Input((T, F), name=n) for n in ("a_in", "b_in", "c_in"))
    d_in = K.Input((T, 2, F), name="d_in")
    a = L.Dense(U, name="a")(L.Masking(name="a_mask")(a_in))  # Dense keeps the mask
    b = L.Dense(U, name="b")(L.Masking(name="b_mask")(b_in))
    c = L.Dense(U, name="c")(c_in)
    v = L.Dense(U, name="v")(L.Flatten(name="flat")(c_in))  # (N, U)
    w = L.Dense(U, name="w")(L.Flatten(name="flat_b")(b_in))
    merged = {
        "add": L.Add(name="add")([a, b]),
        "add_unmasked": L.Add(name="add_unmasked")([a, c]),
        "add_vector": L.Add(name="add_vector")([a, v]),  # (N, U) is broadcast over the steps
        "subtract": L.Subtract(name="subtract")([a, b]),
        "multiply": L.Multiply(name="multiply")([a, b]),
        "multiply_unmasked": L.Multiply(name="multiply_unmasked")([a, c, b]),
        "average": L.Average(name="average")([a, b, c]),
        "maximum": L.Maximum(name="maximum")([a, b]),
        "maximum_unmasked": L.Maximum(name="maximum_unmasked")([c, a]),
        "minimum": L.Minimum(name="minimum")([a, b, c]),
        "concat": L.Concatenate(name="concat")([a, b]),
        "concat_unmasked": L.Concatenate(name="concat_unmasked")([a, c, b]),
        "concat_time": L.Concatenate(axis=1, name="concat_time")([a, b]),
        # tf-keras cannot build this one: its mask ones_like(c) (N, T, U) and a's (N, T, 1) do not join.
        "concat_time_unmasked": L.Concatenate(axis=1, name="concat_time_unmasked")([c, a]) if keras3 else None,
        "concat_axis2": L.Concatenate(axis=2, name="concat_axis2")([d_in, d_in]),
        "concat_axis_neg2": L.Concatenate(axis=-2, name="concat_axis_neg2")([d_in, d_in]),
        "dot_steps": L.Dot(axes=(2, 2), name="dot_steps")([a, b]),  # (N, T, T)
        "dot_time": L.Dot(axes=1, normalize=True, name="dot_time")([a, c]),  # (N, U, U)
        "dot_mixed": L.Dot(axes=(2, 1), name="dot_mixed")([a, v]),  # (N, T)
        "dot_vectors": L.Dot(axes=-1, normalize=True, name="dot_vectors")([v, w]),  # (N, 1)
    }
    merged = {name: tensor for name, tensor in merged.items() if tensor is not None}
    # SimpleRNN probes (the same masking as an LSTM's; tf-keras builds an LSTM in ~3 s here, a SimpleRNN in 0.3 s).
    probes = [L.SimpleRNN(3, return_sequences=True, name=f"probe_{name}")(merged[name]) for name in PROBED if name in merged]
    return K.Model([a_in, b_in, c_in, d_in], list(merged.values()) + probes)


def _merge_inputs():
    rng = np.random.default_rng(21)
    a, b, c = (rng.normal(size=(N, T, F)).astype("float32") for _ in range(3))
    a[0, :2] = 0.0  # masked first steps
    a[2, 5] = 0.0
    b[0, 1] = 0.0
    b[0, 3] = 0.0
    b[1, 4:] = 0.0  # masked last steps
    b[2, 5] = 0.0  # masked in both a and b
    d = rng.normal(size=(N, T, 2, F)).astype("float32")
    return [a, b, c, d]


def _single(K, L, keras3):
    """One input: two masked projections added and concatenated, into an LSTM and a head (the CLI model)."""
    x_in = K.Input((T, F), name="x")
    x = L.Masking(name="mask")(x_in)
    p, q = L.Dense(U, name="p")(x), L.Dense(U, name="q")(x)
    joined = L.Concatenate(name="joined")([L.Add(name="sum")([p, q]), L.Multiply(name="product")([p, q])])
    lstm = L.LSTM(U, return_sequences=True, name="lstm")(joined)
    return K.Model(x_in, L.Dense(2, name="head")(lstm))


def _single_inputs():
    x = np.random.default_rng(22).normal(size=(N, T, F)).astype("float32")
    x[0, 4:] = 0.0
    x[2, :1] = 0.0
    return [x]


MODELS = {"merges": (_merges, _merge_inputs), "single": (_single, _single_inputs)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return model_builder(tmp_path_factory.mktemp("merge"), MODELS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend, suffix", FILES, ids=[f"{b}.{s}" for b, s in FILES])
def test_merges_equal_keras(built, backend, suffix, dtype):
    model, paths, xs, expected = built("merges", backend)
    got = compile_model(li.load_model(str(paths[suffix])), ReplayOptions(dtype=dtype)).predict(xs)
    assert_outputs(got, expected, list(model.output_names), tol=TOL if dtype is np.float32 else 2e-5)


def test_the_kerases_differ_where_the_replay_follows_them(built):
    """The mask rules under test are not inert: the probes after the same merges of the same
    inputs mask different steps in Keras 3 and tf-keras (compared through the replay of each)."""
    masked = {}
    for backend, suffix in (("keras3", "keras"), ("tfkeras", "h5")):
        _, paths, xs, _ = built("merges", backend)
        loaded = li.load_model(str(paths[suffix]))
        program = compile_model(loaded, upto=[name for name in loaded.recurrent_names() if name.startswith("probe_")])
        replay = program.replay(xs[:3], trace=None)  # the probes do not read the 4-D input
        masked[backend] = {}
        for block in replay:  # block.masked: (steps, N), None when the layer has no mask
            skipped = block.masked if block.masked is not None else np.zeros((len(block.t), N), dtype=bool)
            masked[backend].setdefault(block.layer.name, []).append(skipped)
    a_mask, b_mask = (np.any(x != 0, axis=-1) for x in _merge_inputs()[:2])

    def steps(backend, name):  # (N, T) True where the probe skipped the step
        return np.concatenate(masked[backend][f"probe_{name}"], axis=0).T

    np.testing.assert_array_equal(steps("tfkeras", "add"), ~(a_mask & b_mask))
    np.testing.assert_array_equal(steps("keras3", "add"), ~(a_mask | b_mask))
    np.testing.assert_array_equal(steps("tfkeras", "add_unmasked"), ~a_mask)
    assert not steps("keras3", "add_unmasked").any()
    np.testing.assert_array_equal(steps("keras3", "concat_time"), ~np.concatenate([a_mask, b_mask], axis=1))


@pytest.mark.parametrize("backend, suffix", FILES, ids=[f"{b}.{s}" for b, s in FILES])
def test_lstm_after_merges_predict_and_trace(built, backend, suffix):
    model, paths, xs, expected = built("single", backend)
    loaded = li.load_model(str(paths[suffix]))
    np.testing.assert_allclose(li.predict(loaded, xs[0]), expected[0], atol=TOL)
    traced = li.trace_arrays(loaded, xs[0], layers=["lstm"])
    np.testing.assert_allclose(traced["lstm"]["hidden"], keras_layer_output(backend, model, "lstm", xs), atol=TOL)
    np.testing.assert_array_equal(traced["lstm"]["masked"], np.all(xs[0] == 0, axis=-1))


@pytest.mark.parametrize("backend, suffix", [("keras3", "keras"), ("tfkeras", "h5")])
def test_cli_predict_equals_keras(built, tmp_path, backend, suffix):
    _, paths, xs, expected = built("single", backend)
    np.testing.assert_allclose(cli_predict(paths[suffix], xs[0], tmp_path), expected[0], atol=TOL)
