"""Attention, AdditiveAttention, MultiHeadAttention and EinsumDense replayed in NumPy equal Keras.

Every model is built here with seeded random weights, saved by Keras 3
(.keras and .h5) and tf-keras (.h5), read back with lstm-inspect, and its
replay compared with the live model's ``predict`` (and LSTM hidden states
with Keras sub-model outputs).  Masked inputs come through Masking layers, so
the query and value masks reach the attention layers as Keras attaches them.

Keras 3's MultiHeadAttention removes the mask of the tensors it is called
on (``set_keras_mask(query, None)``), so any other layer reading the same
tensor after it sees no mask.  The replay does the same (one test below);
elsewhere each MultiHeadAttention reads its own copy (a Dense: an identity
Activation hands Keras the very same tensor) so that the order in which
Keras runs independent layers does not matter.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import keras_module, randomise, run_cli

import lstm_inspect as li
from lstm_inspect.api import as_sequences
from lstm_inspect.batching import predict_batches, trace_blocks
from lstm_inspect.engine import ReplayOptions, compile_model
from lstm_inspect.errors import LstmInspectError

TOL = 1e-5
N, T_Q, T_V, F, U = 3, 5, 6, 3, 4
FILES = [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")]
BACKENDS = ("keras3", "tfkeras")


# ------------------------------------------------------------------ models


def _luong(K, L, keras3):
    """A masked LSTM encoder, a masked decoder sequence attending to it, then an LSTM."""
    dec_in = K.Input((T_Q, F), name="dec_in")
    enc_in = K.Input((T_V, F), name="enc_in")
    dec = L.Dense(U, name="decoder")(L.Masking(name="dec_mask")(dec_in))  # keeps the mask
    enc = L.LSTM(U, return_sequences=True, name="encoder")(L.Masking(name="enc_mask")(enc_in))
    key = L.Dense(U, name="key_proj")(enc)
    outputs = [
        L.Attention(name="dot")([dec, enc]),
        L.Attention(use_scale=True, name="scaled")([dec, enc]),
        L.Attention(score_mode="concat", name="concat")([dec, enc]),
        L.Attention(score_mode="concat", use_scale=True, name="concat_scaled")([dec, enc, key]),
        L.Attention(name="causal")([dec, enc], use_causal_mask=True),
        L.AdditiveAttention(name="additive")([dec, enc]),
        L.AdditiveAttention(use_scale=False, name="additive_plain")([dec, enc, key]),
    ]
    context, weights = L.Attention(use_scale=True, name="with_scores")([dec, enc], return_attention_scores=True)
    post = L.LSTM(U, return_sequences=True, name="post")(L.Concatenate(name="joined")([dec, context]))
    return K.Model([dec_in, enc_in], outputs + [context, weights, post])


def _luong_inputs():
    rng = np.random.default_rng(7)
    dec = rng.normal(size=(N, T_Q, F)).astype("float32")
    enc = rng.normal(size=(N, T_V, F)).astype("float32")
    dec[0, 0] = 0.0  # a masked first query step
    dec[2, 3:] = 0.0  # masked last query steps
    enc[0, 4:] = 0.0  # masked last value steps
    enc[1, 2] = 0.0  # a masked value step in the middle
    return [dec, enc]


def _residual_inputs():
    x = np.random.default_rng(8).normal(size=(N, T_Q, F)).astype("float32")
    x[1, :2] = 0.0
    x[2, 4:] = 0.0
    return [x]


def _mha(K, L, keras3):
    """MultiHeadAttention in self- and cross-attention, with the settings Keras offers."""
    x_in = K.Input((T_Q, F), name="x")
    c_in = K.Input((T_V, F), name="c")
    h = L.Masking(name="x_mask")(x_in)
    c = L.Masking(name="c_mask")(c_in)

    def copy(tensor, name):
        return L.Dense(U, name=name)(tensor)  # keeps the mask, as a new tensor

    MHA = L.MultiHeadAttention
    self_att = MHA(2, 3, name="mha_self")(copy(h, "q1"), copy(h, "v1"))
    outputs = [
        self_att,
        MHA(3, 2, value_dim=4, output_shape=(5,), name="mha_cross")(copy(h, "q2"), copy(c, "v2"), key=copy(c, "k2")),
        MHA(2, 3, use_bias=False, name="mha_causal")(copy(h, "q3"), copy(h, "v3"), use_causal_mask=True),
        MHA(2, 3, dropout=0.25, name="mha_dropout")(copy(h, "q5"), copy(c, "v5")),
    ]
    scored, scores = MHA(2, 2, name="mha_scores")(copy(h, "q4"), copy(c, "v4"), return_attention_scores=True)
    outputs += [scored, scores]
    if keras3:  # settings tf-keras does not have
        outputs.append(MHA(2, 3, use_gate=True, name="mha_gate")(copy(h, "q6"), copy(c, "v6")))
        outputs.append(MHA(2, 3, sliding_window=2, name="mha_window")(copy(h, "q7"), copy(h, "v7")))
    return K.Model([x_in, c_in], outputs)


def _mha_inputs():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(N, T_Q, F)).astype("float32")
    c = rng.normal(size=(N, T_V, F)).astype("float32")
    x[0, 3:] = 0.0
    x[1, 0] = 0.0
    c[2, 1:3] = 0.0
    c[0, 5] = 0.0
    return [x, c]


def _residual(K, L, keras3):
    """One input: the transformer block on LSTM outputs, x + MultiHeadAttention(x, x) normalised,
    then self-attention, an LSTM and a Dense head.  Keras 3's MultiHeadAttention strips x's mask as
    it runs, so the Add has none then and the Attention after it masks nothing; the LSTM still
    takes the mask its saved graph recorded.  In tf-keras everything after the Masking is masked."""
    x_in = K.Input((T_Q, F), name="x")
    h = L.LSTM(U, return_sequences=True, name="lstm")(L.Masking(name="mask")(x_in))
    attended = L.MultiHeadAttention(2, 3, name="mha")(h, h)
    block = L.LayerNormalization(name="norm")(L.Add(name="residual")([h, attended]))
    context = L.Attention(name="after")([block, block])
    post = L.LSTM(U, return_sequences=True, name="post")(context)
    return K.Model(x_in, L.Dense(2, name="head")(post))


def _mha_axes(K, L, keras3):
    """Attention over chosen axes of (N, T, X, F) inputs."""
    x_in = K.Input((3, 4, F), name="x")
    return K.Model(x_in, [
        L.MultiHeadAttention(2, 3, attention_axes=(2,), name="over_x")(x_in, x_in),
        L.MultiHeadAttention(2, 2, attention_axes=(1, 2), name="over_both")(x_in, x_in),
        L.MultiHeadAttention(1, 3, name="default_axes")(x_in, x_in),
    ])


def _mha_axes_inputs():
    return [np.random.default_rng(10).normal(size=(N, 3, 4, F)).astype("float32")]


def _einsum(K, L, keras3):
    """EinsumDense in each equation form, and an LSTM after one (the CNN-LSTM-like use)."""
    x_in = K.Input((T_Q, F), name="x")
    first = L.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d", activation="tanh", name="proj")(x_in)
    return K.Model(x_in, [
        first,
        L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="d", name="heads")(x_in),
        L.EinsumDense("...b,bc->...c", output_shape=4, bias_axes="c", name="left_elided")(x_in),
        L.EinsumDense("ab...,bc->ac...", output_shape=(2, F), name="right_elided")(x_in),
        L.LSTM(U, return_sequences=True, name="lstm")(first),
    ])


def _einsum_inputs():
    return [np.random.default_rng(11).normal(size=(N, T_Q, F)).astype("float32")]


MODELS = {
    "luong": (_luong, _luong_inputs),
    "mha": (_mha, _mha_inputs),
    "residual": (_residual, _residual_inputs),
    "mha_axes": (_mha_axes, _mha_axes_inputs),
    "einsum": (_einsum, _einsum_inputs),
}


def model_builder(folder, models):
    """``get(name, backend)`` -> (live Keras model, {suffix: path}, inputs, Keras outputs) for the
    ``models`` table (name -> (build(K, L, keras3), inputs())): built with seeded random weights,
    saved (Keras 3: .keras and .h5; tf-keras: .h5), run by Keras, each once."""
    cache = {}

    def get(name: str, backend: str):
        if (name, backend) not in cache:
            K, L = keras_module(backend)
            build, inputs = models[name]
            model = build(K, L, backend == "keras3")
            randomise(model, seed=len(name) * 7 + (backend == "tfkeras"))
            paths = {}
            for suffix in ("keras", "h5") if backend == "keras3" else ("h5",):
                paths[suffix] = folder / f"{name}-{backend}.{suffix}"
                model.save(paths[suffix])
            xs = inputs()
            cache[name, backend] = (model, paths, xs, keras_run(backend, model, xs))
        return cache[name, backend]

    return get


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return model_builder(tmp_path_factory.mktemp("attention"), MODELS)


def cli_predict(path, x: np.ndarray, folder) -> np.ndarray:
    """`lstm-inspect predict PATH X.npy --format csv` in a subprocess: (N, T, k) for one sequence output."""
    import io

    import pandas as pd

    data = folder / "x.npy"
    np.save(data, x)
    result = run_cli("predict", path, data, "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    table = pd.read_csv(io.StringIO(result.stdout.decode()))
    outputs = [c for c in table.columns if c.startswith("y_")]
    assert list(table.columns) == ["sequence", "t"] + outputs
    return table[outputs].to_numpy().reshape(x.shape[0], x.shape[1], len(outputs))


def our_predict(path, xs, dtype=np.float32) -> list[np.ndarray]:
    """lstm-inspect's outputs for one array per model input (the library path `predict` takes;
    the compiled program directly for inputs of more axes than (N, T, F))."""
    model = li.load_model(str(path))
    if max(x.ndim for x in xs) > 3:
        return compile_model(model, ReplayOptions(dtype=dtype)).predict(xs)
    batches = list(predict_batches(model, [as_sequences(x) for x in xs], options=ReplayOptions(dtype=dtype)))
    return [np.concatenate([outputs[k] for _, outputs in batches]) for k in range(len(batches[0][1]))]


def our_hidden(path, xs, layer: str) -> np.ndarray:
    """The traced hidden state of ``layer``, (N, T, U), fed one array per model input."""
    model = li.load_model(str(path))
    blocks = list(trace_blocks(model, [as_sequences(x) for x in xs], layers=[layer]))
    steps = max(int(b.block.t.max()) for b in blocks) + 1
    hidden = np.full((len(xs[0]), steps, model.recurrent_layer(layer).units), np.nan)
    for tb in blocks:
        hidden[np.ix_(tb.sequences, tb.block.t)] = tb.block.values["hidden"].transpose(1, 0, 2)
    return hidden


def keras_run(backend: str, model, xs) -> list[np.ndarray]:
    """Keras' outputs for one array per model input: Keras 3's ``predict``; tf-keras' own forward
    pass called directly (the same layers and arithmetic: its ``predict`` compiles a graph per
    model, 10 s and more on this machine, which would put this module far past its time budget)."""
    feed = xs if len(xs) > 1 else xs[0]
    outputs = model.predict(feed, verbose=0) if backend == "keras3" else model(feed, training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def keras_layer_output(backend: str, model, layer: str, xs, inputs=None) -> np.ndarray:
    """The output of a live model's layer: a sub-model from the model's inputs (or those numbered)."""
    sub_inputs = model.inputs if inputs is None else [model.inputs[i] for i in inputs]
    K, _ = keras_module(backend)
    return keras_run(backend, K.Model(sub_inputs, model.get_layer(layer).output), xs)[0]


def assert_outputs(got, expected, names, tol=TOL):
    assert len(got) == len(expected)
    for name, ours, theirs in zip(names, got, expected):
        assert ours.shape == theirs.shape, name
        np.testing.assert_allclose(ours, theirs, atol=tol, err_msg=name)


def output_names(model) -> list[str]:
    return list(model.output_names)


# ------------------------------------------------------------------ predict equals Keras


@pytest.mark.parametrize("name", ["luong", "mha", "mha_axes", "einsum"])
@pytest.mark.parametrize("backend, suffix", FILES, ids=[f"{b}.{s}" for b, s in FILES])
def test_predict_equals_keras(built, name, backend, suffix):
    model, paths, xs, expected = built(name, backend)
    assert_outputs(our_predict(paths[suffix], xs), expected, output_names(model))


@pytest.mark.parametrize("name, files", [("luong", FILES), ("einsum", FILES), ("mha", FILES[:2])])
def test_float64_replay_equals_keras(built, name, files):
    """The float64 replay agrees with Keras' float32.  Not for tf-keras' MultiHeadAttention on these
    inputs: at a masked query step every score gets -1e9 added, which float32 rounds to the same
    number (a plain average) and float64 does not (a softmax of the scores)."""
    for backend, suffix in files:
        model, paths, xs, expected = built(name, backend)
        assert_outputs(our_predict(paths[suffix], xs, np.float64), expected, output_names(model), tol=2e-5)


def test_masked_steps_are_what_keras_gives(built):
    """The settings are not inert: masked query rows of Attention are zero in Keras and here, and
    Keras 3's MultiHeadAttention averages every value at a query step with nothing to attend to."""
    expected = built("luong", "keras3")[3]
    assert np.all(expected[0][0, 0] == 0) and np.all(expected[0][2, 3:] == 0)
    expected = built("mha", "keras3")[3]
    np.testing.assert_allclose(expected[0][0, 3], expected[0][0, 4], atol=1e-7)  # both steps masked: same average


# ------------------------------------------------------------------ LSTM next to attention


@pytest.mark.parametrize("backend, suffix", FILES, ids=[f"{b}.{s}" for b, s in FILES])
def test_lstm_feeding_attention_traces_like_keras(built, backend, suffix):
    """The encoder LSTM that feeds Attention, traced from its input alone, equals Keras' sub-model;
    the LSTM after the attention (fed both inputs) equals Keras' output."""
    model, paths, xs, expected = built("luong", backend)
    traced = li.trace_arrays(li.load_model(str(paths[suffix])), xs[1], layers=["encoder"])
    expected_encoder = keras_layer_output(backend, model, "encoder", [xs[1]], inputs=[1])
    np.testing.assert_allclose(traced["encoder"]["hidden"], expected_encoder, atol=TOL)
    np.testing.assert_array_equal(traced["encoder"]["masked"], np.all(xs[1] == 0, axis=-1))
    np.testing.assert_allclose(our_hidden(paths[suffix], xs, "post"), expected[-1], atol=TOL)


def test_lstm_after_einsum_dense_traces_like_keras(built):
    for backend, suffix in FILES:
        _, paths, xs, expected = built("einsum", backend)
        traced = li.trace_arrays(li.load_model(str(paths[suffix])), xs[0], layers=["lstm"])
        np.testing.assert_allclose(traced["lstm"]["hidden"], expected[-1], atol=TOL)


# ------------------------------------------------------------------ one input: API and CLI


@pytest.mark.parametrize("backend, suffix", FILES, ids=[f"{b}.{s}" for b, s in FILES])
def test_residual_block_predict_and_trace(built, backend, suffix):
    """predict through the API, and the LSTMs before and after the attention traced, equal Keras;
    the Attention after the block masks its masked query steps (zeroes them) in tf-keras only."""
    model, paths, xs, expected = built("residual", backend)
    loaded = li.load_model(str(paths[suffix]))
    np.testing.assert_allclose(li.predict(loaded, xs[0]), expected[0], atol=TOL)
    traced = li.trace_arrays(loaded, xs[0])
    np.testing.assert_allclose(traced["lstm"]["hidden"], keras_layer_output(backend, model, "lstm", xs), atol=TOL)
    np.testing.assert_allclose(traced["post"]["hidden"], keras_layer_output(backend, model, "post", xs), atol=TOL)
    input_mask = np.any(xs[0] != 0, axis=-1)
    for name in ("lstm", "post"):
        np.testing.assert_array_equal(traced[name]["masked"], ~input_mask)
    context = keras_layer_output(backend, model, "after", xs)
    assert np.all(context[~input_mask] == 0) == (backend == "tfkeras")


@pytest.mark.parametrize("backend, suffix", [("keras3", "keras"), ("tfkeras", "h5")])
def test_cli_predict_equals_keras(built, tmp_path, backend, suffix):
    _, paths, xs, expected = built("residual", backend)
    np.testing.assert_allclose(cli_predict(paths[suffix], xs[0], tmp_path), expected[0], atol=TOL)


# ------------------------------------------------------------------ how the files store them


def test_weights_are_bound_from_every_file_kind(built):
    """MultiHeadAttention's sub-layer weights: `query/kernel` in .h5 files (Keras 3 and tf-keras),
    `query_dense/0` in the .keras weight tree; Attention's scale by name or position."""
    for backend, suffix in FILES:
        _, paths, _, _ = built("mha", backend)
        weights = li.load_model(str(paths[suffix])).weights
        if suffix == "keras":
            assert {"query_dense/0", "query_dense/1", "output_dense/0"} <= set(weights["mha_self"])
            assert set(weights["mha_causal"]) == {"query_dense/0", "key_dense/0", "value_dense/0", "output_dense/0"}
        else:
            assert {"query/kernel", "key/bias", "attention_output/kernel"} <= set(weights["mha_self"])
        _, paths, _, _ = built("luong", backend)
        weights = li.load_model(str(paths[suffix])).weights
        assert set(weights["concat_scaled"]) == {"scale", "concat_score_weight"}
        assert set(weights["additive"]) == {"scale"}


def test_call_arguments_reach_the_layers(built):
    """tf-keras records `mha(query, value, key=...)` as the query plus `value`/`key` keywords and
    Keras 3 as args plus a `key` keyword: both give the layer (query, value, key); call flags
    such as use_causal_mask come through too."""
    for backend, suffix in FILES:
        _, paths, _, _ = built("mha", backend)
        graph = li.load_model(str(paths[suffix])).graph
        cross = graph.layer("mha_cross")
        assert [e.layer for e in cross.inbound] == ["q2", "v2", "k2"]
        assert graph.layer("mha_causal").call_kwargs.get("use_causal_mask") is True
        _, paths, _, _ = built("luong", backend)
        graph = li.load_model(str(paths[suffix])).graph
        assert [e.layer for e in graph.layer("concat_scaled").inbound] == ["decoder", "encoder", "key_proj"]
        assert graph.layer("causal").call_kwargs.get("use_causal_mask") is True


# ------------------------------------------------------------------ refused


def _edit_keras_config(path, target, edit):
    """A copy of a .keras archive whose config has ``edit`` applied to layer ``target``'s entry."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for entry in config["config"]["layers"]:
        if entry["name"] == target:
            edit(entry)
    members["config.json"] = json.dumps(config).encode()
    out = path.with_name(f"edited-{target}-{path.name}")
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out


def _explicit_mask(entry):
    entry["inbound_nodes"][0]["kwargs"]["attention_mask"] = entry["inbound_nodes"][0]["args"][0]


def _bad_heads(entry):
    entry["config"]["num_heads"] = "two"


def _bad_equation(entry):
    entry["config"]["equation"] = "abc;cd->abd"


def _bad_score_mode(entry):
    entry["config"]["score_mode"] = "cosine"


@pytest.mark.parametrize("model_name, target, edit, message", [
    ("mha", "mha_self", _explicit_mask, "explicit attention_mask tensor, which is not replayed"),
    ("mha", "mha_self", _bad_heads, "num_heads is 'two'"),
    ("einsum", "proj", _bad_equation, "equation 'abc;cd->abd'"),
    ("luong", "dot", _bad_score_mode, "score_mode is 'cosine'"),
])
def test_bad_settings_are_refused_in_one_line(built, model_name, target, edit, message):
    _, paths, xs, _ = built(model_name, "keras3")
    edited = _edit_keras_config(paths["keras"], target, edit)
    with pytest.raises(LstmInspectError, match=message) as info:
        our_predict(edited, xs)
    assert "\n" not in str(info.value) and target in str(info.value)


def test_cli_refuses_an_unreplayable_setting_in_one_line(built, tmp_path):
    _, paths, xs, _ = built("residual", "keras3")
    edited = _edit_keras_config(paths["keras"], "mha", _explicit_mask)
    data = tmp_path / "x.npy"
    np.save(data, xs[0])
    result = run_cli("predict", edited, data, "--format", "csv")
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode().strip()
    assert "\n" not in message and "layer 'mha'" in message and "attention_mask" in message


def test_tf_keras_causal_config_key_means_use_causal_mask(built, tmp_path):
    """tf.keras before use_causal_mask saved Attention(causal=True) in the layer's config: read as
    use_causal_mask, the weightless 'dot' Attention then gives what Keras' 'causal' one (same inputs) gives."""
    import shutil

    import h5py

    model, paths, xs, expected = built("luong", "tfkeras")
    edited = tmp_path / "causal.h5"
    shutil.copy(paths["h5"], edited)
    with h5py.File(edited, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for entry in config["config"]["layers"]:
            if entry["name"] == "dot":
                entry["config"]["causal"] = True
        f.attrs["model_config"] = json.dumps(config)
    names = list(model.output_names)
    got = our_predict(edited, xs)[names.index("dot")]
    np.testing.assert_allclose(got, expected[names.index("causal")], atol=TOL)
    assert not np.allclose(got, expected[names.index("dot")], atol=1e-3)

