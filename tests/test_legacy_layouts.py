"""Legacy weight layouts: Keras 2 CuDNNLSTM / CuDNNGRU and Keras 1 per-gate arrays.

No GPU here, so cuDNN layers cannot run in Keras.  Instead each test writes a
file in the legacy layout (h5py, by the rules Keras' own converters follow),
holding weights equivalent to a tf-keras LSTM/GRU, and checks that
lstm-inspect's replay equals that Keras model's output, and that every
labelled value is found at the (path, row, column) it claims.  The real
textgenrnn file is checked against an independent float64 computation.
"""

from __future__ import annotations

import csv
import io
import json

import h5py
import numpy as np
import pytest
from conftest import WILD, keras_module, run_cli

import lstm_inspect as li

T, F, U = 6, 3, 4
RNG = np.random.default_rng(5)


def _write_legacy_h5(path, layers, keras_version=None, batch_input_shape=(None, T, F)):
    """A Sequential .h5 in the Keras 1 / Keras 2.0-2.2 layout: config is a bare list of layers.

    ``layers``: (class_name, config, [(weight_name, array), ...]) per layer.
    """
    config = []
    for index, (class_name, layer_config, _) in enumerate(layers):
        layer_config = dict(layer_config)
        if index == 0:
            layer_config["batch_input_shape"] = list(batch_input_shape)
        config.append({"class_name": class_name, "config": layer_config})
    with h5py.File(path, "w") as h5:
        if keras_version:
            h5.attrs["keras_version"] = keras_version
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": config})
        group = h5.create_group("model_weights")
        group.attrs["layer_names"] = [np.bytes_(c["config"]["name"]) for c in config]
        for (_, layer_config, weights) in layers:
            layer = group.create_group(layer_config["name"])
            layer.attrs["weight_names"] = [np.bytes_(name) for name, _ in weights]
            for name, array in weights:
                layer.create_dataset(name, data=np.asarray(array, dtype=np.float32))


def _to_cudnn_block(block):
    """A canonical Keras (rows, U) gate block as cuDNN keeps it: the block read as (U, rows)."""
    rows, units = block.shape
    return block.T.reshape(rows, units)


def _cudnn_layout(kernel, gates):
    units = kernel.shape[1] // gates
    return np.concatenate([_to_cudnn_block(kernel[:, g * units : (g + 1) * units]) for g in range(gates)], axis=1)


def _keras_reference(kind):
    """A tf-keras LSTM / GRU (reset_after) with random weights, its weights and outputs."""
    K, L = keras_module("tfkeras")
    if kind == "lstm":
        layer = L.LSTM(U, return_sequences=True, name="rnn")
    else:
        layer = L.GRU(U, return_sequences=True, reset_after=True, name="rnn")
    model = K.Sequential([K.Input((T, F)), layer, L.Dense(2, name="head")])
    for lay in model.layers:
        lay.set_weights([RNG.normal(0, 0.6, w.shape).astype("float32") for w in lay.get_weights()])
    x = RNG.normal(size=(2, T, F)).astype("float32")
    sub = K.Model(model.inputs, model.get_layer("rnn").output)
    return model, x, sub.predict(x, verbose=0), model.predict(x, verbose=0)


@pytest.fixture(scope="module", params=["lstm", "gru"])
def cudnn_case(request, tmp_path_factory):
    kind = request.param
    model, x, hidden, output = _keras_reference(kind)
    kernel, recurrent, bias = model.get_layer("rnn").get_weights()
    dense_kernel, dense_bias = model.get_layer("head").get_weights()
    gates = 4 if kind == "lstm" else 3
    if kind == "lstm":  # cuDNN adds two biases; any split of the Keras bias will do
        b_in = RNG.normal(0, 0.3, bias.shape).astype("float32")
        stored_bias = np.concatenate([b_in, bias - b_in])
    else:  # a reset_after GRU's (2, 3U) bias is cuDNN's input and recurrent halves
        stored_bias = bias.reshape(-1)
    stored = {
        "kernel": _cudnn_layout(kernel, gates),
        "recurrent_kernel": _cudnn_layout(recurrent, gates),
        "bias": stored_bias,
    }
    class_name = "CuDNNLSTM" if kind == "lstm" else "CuDNNGRU"
    path = tmp_path_factory.mktemp("cudnn") / f"{class_name}.h5"
    _write_legacy_h5(
        path,
        [
            (class_name, {"name": "rnn", "units": U, "return_sequences": True, "go_backwards": False, "stateful": False},
             [(f"rnn/{name}:0", stored[name]) for name in ("kernel", "recurrent_kernel", "bias")]),
            ("Dense", {"name": "head", "units": 2, "activation": "linear", "use_bias": True},
             [("head/kernel:0", dense_kernel), ("head/bias:0", dense_bias)]),
        ],
        keras_version="2.2.4",
    )
    return {"kind": kind, "path": path, "x": x, "hidden": hidden, "output": output, "stored": stored,
            "canonical": (kernel, recurrent, bias)}


def test_cudnn_replay_equals_keras(cudnn_case):
    model = li.load_model(str(cudnn_case["path"]))
    arrays = li.trace_arrays(model, cudnn_case["x"])
    np.testing.assert_allclose(arrays["rnn"]["hidden"], cudnn_case["hidden"], atol=1e-5)
    np.testing.assert_allclose(li.predict(model, cudnn_case["x"]), cudnn_case["output"], atol=1e-5)


def test_cudnn_labels_point_at_the_stored_values(cudnn_case):
    result = run_cli("weights", cudnn_case["path"], "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    kernel, recurrent, _bias = cudnn_case["canonical"]
    gates = "ifco" if cudnn_case["kind"] == "lstm" else "zrc"
    stored = cudnn_case["stored"]
    width = len(gates) * U
    seen = 0
    for row in rows:
        value = np.float32(float(row["value"]))
        g, u = gates.index(row["gate"]), int(row["unit"])
        tensor = row["tensor"]
        # Where it says it is stored ...
        if tensor in ("kernel", "recurrent_kernel"):
            assert stored[tensor][int(row["row"]), int(row["column"])] == value
            canonical = (kernel if tensor == "kernel" else recurrent)[int(row["source"]), g * U + u]
        else:
            assert row["row"] == "" and stored["bias"][int(row["column"])] == value
            half = stored["bias"][:width] if tensor == "bias" else stored["bias"][width:]
            canonical = half[g * U + u]
        # ... and what it means in Keras' own layout.
        assert value == canonical
        seen += 1
    assert seen == sum(a.size for a in stored.values())


def _keras1_layers(kind, mode, weights, dense):
    """Keras 1 configs and weight names for an LSTM / GRU / SimpleRNN + Dense model."""
    kernel, recurrent, bias = weights
    letters = {"lstm": "ifco", "gru": "zrh", "simple": ""}[kind]
    name = {"lstm": "lstm_1", "gru": "gru_1", "simple": "simplernn_1"}[kind]
    if mode == "gpu" or kind == "simple":
        arrays = [(f"{name}_W", kernel), (f"{name}_U", recurrent), (f"{name}_b", bias)]
    else:
        per_gate = {}
        for g, letter in enumerate(letters):
            cols = slice(g * U, (g + 1) * U)
            per_gate[letter] = [(f"{name}_W_{letter}", kernel[:, cols]), (f"{name}_U_{letter}", recurrent[:, cols]),
                                (f"{name}_b_{letter}", bias[cols])]
        order = "icfo" if kind == "lstm" else letters  # Keras 1 stored an LSTM's gates as i, c, f, o
        arrays = [item for letter in order for item in per_gate[letter]]
    config = {"name": name, "output_dim": U, "activation": "tanh", "return_sequences": True,
              "go_backwards": False, "stateful": False, "consume_less": mode, "input_dim": F, "input_length": T}
    if kind != "simple":
        config["inner_activation"] = "hard_sigmoid"
    class_name = {"lstm": "LSTM", "gru": "GRU", "simple": "SimpleRNN"}[kind]
    return [
        (class_name, config, arrays),
        ("Dense", {"name": "dense_1", "output_dim": 2, "activation": "linear", "bias": True},
         [("dense_1_W", dense[0]), ("dense_1_b", dense[1])]),
    ], name


@pytest.mark.parametrize("kind,mode", [("lstm", "cpu"), ("lstm", "gpu"), ("gru", "cpu"), ("gru", "gpu"), ("simple", "cpu")])
@pytest.mark.keras_oracle
def test_keras1_files_replay_like_keras(kind, mode, tmp_path):
    K, L = keras_module("tfkeras")
    layer = {
        "lstm": lambda: L.LSTM(U, recurrent_activation="hard_sigmoid", return_sequences=True),
        "gru": lambda: L.GRU(U, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True),
        "simple": lambda: L.SimpleRNN(U, return_sequences=True),
    }[kind]()
    model = K.Sequential([K.Input((T, F)), layer, L.Dense(2)])
    for lay in model.layers:
        lay.set_weights([RNG.normal(0, 0.7, w.shape).astype("float32") for w in lay.get_weights()])
    x = RNG.normal(size=(2, T, F)).astype("float32")
    expected_hidden = K.Model(model.inputs, model.layers[0].output).predict(x, verbose=0)
    expected = model.predict(x, verbose=0)
    layers, name = _keras1_layers(kind, mode, model.layers[0].get_weights(), model.layers[1].get_weights())
    path = tmp_path / f"keras1-{kind}-{mode}.h5"
    _write_legacy_h5(path, layers, keras_version=None)

    loaded = li.load_model(str(path))
    assert loaded.keras_version is None
    arrays = li.trace_arrays(loaded, x)
    np.testing.assert_allclose(arrays[name]["hidden"], expected_hidden, atol=1e-5)
    np.testing.assert_allclose(li.predict(loaded, x), expected, atol=1e-5)

    # Labels: each value sits at its (path, row, column) in the Keras 1 array it came from.
    frame = li.weights_frame(loaded)
    stored = {f"model_weights/{layer_config['name']}/{weight}": array
              for _, layer_config, arrays_ in layers for weight, array in arrays_}
    canonical = dict(zip(("kernel", "recurrent_kernel", "bias"), model.layers[0].get_weights()))
    gates = {"lstm": "ifco", "gru": "zrc", "simple": "h"}[kind]
    for row in frame.itertuples(index=False):
        array = stored[row.path]
        at = array[row.row, row.column] if array.ndim == 2 else array[row.column]
        assert np.float32(at) == np.float32(row.value)
        index = gates.index(row.gate) * U + row.unit
        expect = canonical[row.tensor][row.source, index] if row.tensor != "bias" else canonical["bias"][index]
        assert np.float32(expect) == np.float32(row.value)
    assert len(frame) == sum(w.size for w in model.layers[0].get_weights())


TEXTGEN = WILD / "textgenrnn_weights.hdf5"


@pytest.mark.skipif(not TEXTGEN.exists(), reason="corpus file textgenrnn_weights.hdf5 not found")
def test_textgenrnn_cudnn_layers_against_an_independent_replay():
    """The real CuDNNLSTM file: float64 LSTM from the stored arrays, converted by hand."""
    with h5py.File(TEXTGEN, "r") as h5:
        table = h5["embedding/embedding/embeddings:0"][()]
        stored = {n: {t: h5[f"{n}/{n}/{t}:0"][()] for t in ("kernel", "recurrent_kernel", "bias")} for n in ("rnn_1", "rnn_2")}
    ids = np.array([3, 17, 42, 5, 9, 100, 464, 1])
    x = table[ids].astype(np.float64)
    expected = {}
    for name in ("rnn_1", "rnn_2"):
        s = stored[name]
        units = s["recurrent_kernel"].shape[0]
        kernel = _from_cudnn(s["kernel"], units).astype(np.float64)
        recurrent = _from_cudnn(s["recurrent_kernel"], units).astype(np.float64)
        bias = (s["bias"][: 4 * units] + s["bias"][4 * units :]).astype(np.float64)
        h, c = np.zeros(units), np.zeros(units)
        outputs = []
        for step in x:
            z = step @ kernel + h @ recurrent + bias
            i, f, g, o = (z[k * units : (k + 1) * units] for k in range(4))
            sig = lambda v: 1 / (1 + np.exp(-v))
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            outputs.append(h)
        expected[name] = np.array(outputs)
        x = expected[name]
    model = li.load_model(str(TEXTGEN))
    arrays = li.trace_arrays(model, ids.reshape(1, -1, 1).astype(np.float32), options=li.ReplayOptions(dtype=np.float64))
    for name in ("rnn_1", "rnn_2"):
        np.testing.assert_allclose(arrays[name]["hidden"][0], expected[name], atol=1e-9)


def _from_cudnn(stored, units):
    """Independent inverse of the cuDNN layout: each gate block read as (units, rows), transposed."""
    rows = stored.shape[0]
    blocks = [stored[:, k * units : (k + 1) * units].reshape(-1).reshape(units, rows).T for k in range(stored.shape[1] // units)]
    return np.concatenate(blocks, axis=1)
