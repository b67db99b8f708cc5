"""Convolution layers (``ops/conv.py``) against Keras 3 and tf-keras 2.21.

Each case is a chain of layers built in Keras with seeded random weights
(kernels scaled by 1/sqrt(fan-in), random biases), saved as .keras and .h5
(Keras 3) and .h5 (tf-keras), read back with ``lstm_inspect.load_model`` and
replayed; every layer's output is compared with Keras' own (a sub-model
returning each layer's output), so a failure names the layer.  Cases cover
padding valid / same / causal, strides, dilation_rate, groups, use_bias,
activations, channels_first, depth_multiplier, the transposed convolutions
and their output_padding.  CNN-LSTMs (Conv1D + MaxPooling1D before LSTMs,
built here and the real corpus file; TimeDistributed Conv2D video model) have
their LSTM hidden states compared with Keras too, and predict runs through the
API and the command line.

Inputs of rank 4 and 5 (images, videos) go through
``engine.compile_model(...).predict`` / ``run``: ``lstm_inspect.predict``
and the CLI take (N, T, F) inputs only (``api.as_sequences``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import WILD, keras_module, run_cli

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions, compile_model
from lstm_inspect.errors import LstmInspectError, ModelFileError

TOL = 1e-5
FORMATS = (("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5"))


# ------------------------------------------------------------------ building and comparing (also used by
# test_ops_pooling)


def randomise_scaled(model, seed: int) -> None:
    """Seeded random weights that keep a chain's values of order 1: kernels ~ N(0, 1/fan_in), the
    rest (biases) ~ N(0, 0.3²)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for w in weights:
            if w.ndim >= 2:
                fan_in = int(np.prod(w.shape[:-1]))
                new.append(rng.normal(0.0, 1.0 / np.sqrt(fan_in), w.shape).astype("float32"))
            else:
                new.append(rng.normal(0.0, 0.3, w.shape).astype("float32"))
        layer.set_weights(new)


@dataclass
class Case:
    """A model built in one Keras, saved, with Keras' output of every layer for ``x``."""

    name: str
    backend: str
    model: object
    x: np.ndarray
    paths: dict[str, Path] = field(default_factory=dict)  # "keras" / "h5"
    layer_outputs: dict[str, np.ndarray] = field(default_factory=dict)  # Keras' own, by layer name
    prediction: np.ndarray | None = None


def build_case(folder: Path, name: str, backend: str, make: Callable, x: np.ndarray, twin: Callable | None = None) -> Case:
    """Build ``make(K, L)`` in ``backend``, randomise, save (.keras and .h5, or .h5), and record Keras' outputs.

    ``twin`` (channels_first cases): the same chain built channels_last.  Keras'
    expected outputs are then the twin's, given the same weights, on ``x`` with
    its channels moved last, and moved back: what channels_first means.  Keras
    cannot run most channels_first convolutions itself here: TensorFlow's CPU
    kernels refuse them with oneDNN off (as conftest sets it), and the XLA path
    (``jit_compile``) adds the bias along the wrong axis when a spatial size
    equals the number of filters (seen with Keras 3.15: a Conv1D of 6 filters
    over 6 positions).
    """
    K, L = keras_module(backend)
    model = make(K, L)
    randomise_scaled(model, zlib.crc32(name.encode()) % 10_000)
    case = Case(name, backend, model, x)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if twin is None:
        probe = K.Model(model.inputs, [layer.output for layer in layers])
        outputs = [np.asarray(out) for out in probe.predict(x, verbose=0)]
    else:
        last = twin(K, L)
        twin_layers = [layer for layer in last.layers if type(layer).__name__ != "InputLayer"]
        for mine, other in zip(layers, twin_layers):
            other.set_weights(mine.get_weights())
        probe = K.Model(last.inputs, [layer.output for layer in twin_layers])
        outputs = [np.moveaxis(np.asarray(out), -1, 1) for out in probe.predict(np.moveaxis(x, 1, -1), verbose=0)]
    case.layer_outputs = {layer.name: out for layer, out in zip(layers, outputs)}
    case.prediction = outputs[-1]
    suffixes = ("keras", "h5") if backend == "keras3" else ("h5",)
    for suffix in suffixes:
        path = folder / f"{name}-{backend}.{suffix}"
        model.save(path)
        case.paths[suffix] = path
    return case


def replay_layers(path: Path, x: np.ndarray, dtype=np.float32) -> dict[str, np.ndarray]:
    """lstm-inspect's output of every layer for ``x`` (the first output of each)."""
    program = compile_model(li.load_model(str(path)), ReplayOptions(dtype=dtype))
    replay = program.replay(x, keep_outputs=True)
    for _ in replay:
        pass
    return {name: outputs[0] for name, outputs in replay.layer_outputs.items() if outputs}


def assert_layers_equal(case: Case, got: dict[str, np.ndarray]) -> None:
    for name, want in case.layer_outputs.items():
        assert name in got, f"no output for layer '{name}'"
        have = got[name]
        assert have.shape == want.shape, f"layer '{name}': shape {have.shape}, Keras {want.shape}"
        np.testing.assert_allclose(have, want, atol=TOL, rtol=TOL, err_msg=f"layer '{name}' ({case.name})")


def file_params(names, formats=FORMATS, skip: dict | None = None) -> list:
    """pytest params (case name, backend, suffix), with ``skip[(name, backend)]`` a reason to leave one out."""
    params = []
    for name in names:
        for backend, suffix in formats:
            reason = (skip or {}).get((name, backend))
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(name, backend, suffix, id=f"{name}-{backend}.{suffix}", marks=marks))
    return params


def rng_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(1000 + seed).normal(size=shape).astype("float32")


def lstm_hidden(model, layer_name: str, x: np.ndarray, K) -> np.ndarray:
    """Keras' output of a recurrent layer (return_sequences=True) for ``x``: its hidden state per step."""
    probe = K.Model(model.inputs, model.get_layer(layer_name).output)
    return np.asarray(probe.predict(x, verbose=0))


def read_prediction_csv(text: str) -> np.ndarray:
    """``predict --format csv`` -> the y columns, one row per output row (sequence, or sequence and t)."""
    lines = [line.split(",") for line in text.strip().splitlines()]
    keys = 2 if lines[0][:2] == ["sequence", "t"] else 1
    assert lines[0][0] == "sequence" and all(c.startswith("y_") for c in lines[0][keys:]), lines[0]
    return np.array([[float(v) for v in row[keys:]] for row in lines[1:]])


# ------------------------------------------------------------------ the cases


def conv1d_chain(K, L):
    return K.Sequential([
        K.Input((12, 4)),
        L.Conv1D(6, 3, activation="relu", name="valid_relu"),
        L.Conv1D(6, 3, strides=2, padding="same", name="same_stride2"),
        L.Conv1D(4, 2, dilation_rate=2, padding="causal", activation="tanh", name="causal_dilated"),
        L.Conv1D(6, 3, groups=2, padding="same", use_bias=False, name="groups2_no_bias"),
        L.SeparableConv1D(5, 3, depth_multiplier=2, padding="same", activation="sigmoid", name="separable"),
        L.DepthwiseConv1D(2, depth_multiplier=2, dilation_rate=2, padding="same", name="depthwise"),
        L.Conv1DTranspose(4, 3, strides=2, padding="same", name="transpose_same"),
        L.Conv1DTranspose(4, 3, strides=2, output_padding=1, name="transpose_valid_padded"),
        L.SeparableConv1D(4, 2, strides=2, use_bias=False, name="separable_stride2"),
        L.DepthwiseConv1D(3, strides=2, padding="valid", use_bias=False, name="depthwise_stride2"),
        L.LSTM(5, return_sequences=True, name="lstm"),
    ])


def conv1d_formats(data_format: str) -> Callable:
    """Conv1D, SeparableConv1D, DepthwiseConv1D and Conv1DTranspose in ``data_format`` (4 channels, 13 steps)."""

    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((4, 13) if df == "channels_first" else (13, 4)),
            L.Conv1D(6, 3, strides=2, padding="same", data_format=df, activation="relu", name="conv"),
            L.Conv1D(4, 2, padding="causal", dilation_rate=2, data_format=df, name="causal"),
            L.Conv1D(4, 3, groups=2, padding="same", data_format=df, name="groups2"),
            L.SeparableConv1D(5, 2, depth_multiplier=2, data_format=df, name="separable"),
            L.DepthwiseConv1D(2, depth_multiplier=2, padding="same", data_format=df, name="depthwise"),
            L.Conv1DTranspose(3, 3, strides=2, padding="same", data_format=df, name="transpose"),
        ])

    return make


def conv2d_chain(K, L):
    return K.Sequential([
        K.Input((9, 8, 4)),
        L.Conv2D(6, (3, 2), activation="relu", name="valid_relu"),
        L.Conv2D(6, 3, strides=(2, 1), padding="same", name="same_strides"),
        L.Conv2D(4, (2, 3), dilation_rate=(1, 2), padding="same", activation="tanh", name="dilated"),
        L.Conv2D(4, 3, groups=2, padding="same", use_bias=False, name="groups2_no_bias"),
        L.SeparableConv2D(5, 2, depth_multiplier=2, name="separable"),
        L.DepthwiseConv2D(3, strides=2, padding="same", name="depthwise_stride2"),
        L.DepthwiseConv2D(2, depth_multiplier=3, dilation_rate=2, padding="same", name="depthwise_dilated"),
        L.Conv2DTranspose(4, 3, strides=2, padding="same", name="transpose_same"),
        L.Conv2DTranspose(3, (3, 2), strides=(2, 1), output_padding=(1, 0), name="transpose_valid_padded"),
    ])


def conv2d_formats(data_format: str) -> Callable:
    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((4, 7, 6) if df == "channels_first" else (7, 6, 4)),
            L.Conv2D(6, 3, strides=2, padding="same", data_format=df, activation="relu", name="conv"),
            L.Conv2D(4, 2, dilation_rate=2, padding="same", groups=2, data_format=df, name="dilated_groups2"),
            L.SeparableConv2D(4, 2, data_format=df, name="separable"),
            L.DepthwiseConv2D(2, depth_multiplier=2, padding="same", data_format=df, name="depthwise"),
            L.Conv2DTranspose(3, 3, strides=2, data_format=df, name="transpose"),
        ])

    return make


def conv3d_chain(K, L):
    return K.Sequential([
        K.Input((5, 6, 4, 2)),
        L.Conv3D(4, 2, activation="relu", name="valid_relu"),
        L.Conv3D(4, 3, strides=(2, 2, 1), padding="same", name="same_strides"),
        L.Conv3D(4, 2, dilation_rate=2, padding="same", groups=2, name="dilated_groups2"),
        L.Conv3DTranspose(3, 2, strides=2, padding="same", name="transpose_same"),
        L.Conv3DTranspose(2, (2, 3, 2), strides=(1, 2, 2), output_padding=(0, 1, 1), use_bias=False,
                          name="transpose_valid_padded"),
    ])


def conv3d_formats(data_format: str) -> Callable:
    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((2, 5, 6, 4) if df == "channels_first" else (5, 6, 4, 2)),
            L.Conv3D(4, 2, strides=(1, 2, 1), padding="same", data_format=df, name="conv"),
            L.Conv3DTranspose(3, 2, strides=2, data_format=df, name="transpose"),
        ])

    return make


def cnn_lstm(K, L):
    """The corpus CNN-LSTM's shape, small: Conv1D + MaxPooling1D before two LSTMs."""
    return K.Sequential([
        K.Input((9, 2)),
        L.Conv1D(8, 3, activation="relu", name="conv1d"),
        L.MaxPooling1D(2, name="max_pooling1d"),
        L.LSTM(6, return_sequences=True, name="lstm_a"),
        L.LSTM(4, return_sequences=True, name="lstm_b"),
        L.Dense(1, name="head"),
    ])


def video_lstm(K, L):
    """TimeDistributed(Conv2D) + TimeDistributed(MaxPooling2D) + TimeDistributed(Flatten) before an LSTM."""
    return K.Sequential([
        K.Input((5, 8, 7, 3)),
        L.TimeDistributed(L.Conv2D(4, 3, activation="relu"), name="td_conv"),
        L.TimeDistributed(L.MaxPooling2D(2), name="td_pool"),
        L.TimeDistributed(L.Flatten(), name="td_flatten"),
        L.LSTM(5, return_sequences=True, name="lstm"),
        L.Dense(2, name="head"),
    ])


# name -> (builder, input shape, channels-last twin of a channels_first builder)
CASES: dict[str, tuple[Callable, tuple[int, ...], Callable | None]] = {
    "conv1d": (conv1d_chain, (3, 12, 4), None),
    "conv1d_cf": (conv1d_formats("channels_first"), (3, 4, 13), conv1d_formats("channels_last")),
    "conv2d": (conv2d_chain, (2, 9, 8, 4), None),
    "conv2d_cf": (conv2d_formats("channels_first"), (2, 4, 7, 6), conv2d_formats("channels_last")),
    "conv3d": (conv3d_chain, (2, 5, 6, 4, 2), None),
    "conv3d_cf": (conv3d_formats("channels_first"), (2, 2, 5, 6, 4), conv3d_formats("channels_last")),
    "cnn_lstm": (cnn_lstm, (3, 9, 2), None),
    "video_lstm": (video_lstm, (2, 5, 8, 7, 3), None),
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Callable[[str, str], Case]:
    folder = tmp_path_factory.mktemp("ops_conv")
    built: dict[tuple[str, str], Case] = {}

    def get(name: str, backend: str) -> Case:
        if (name, backend) not in built:
            make, shape, twin = CASES[name]
            built[name, backend] = build_case(folder, name, backend, make, rng_input(shape, len(name)), twin)
        return built[name, backend]

    return get


# ------------------------------------------------------------------ every layer equals Keras


@pytest.mark.parametrize("name, backend, suffix", file_params(list(CASES)))
def test_every_layer_equals_keras(cases, name, backend, suffix):
    case = cases(name, backend)
    assert_layers_equal(case, replay_layers(case.paths[suffix], case.x))


def test_conv3d_file_is_read_without_help(cases):
    """A Conv3D kernel has 5 axes (k1, k2, k3, C_in, C_out): the reader takes it."""
    model = li.load_model(str(cases("conv3d", "keras3").paths["keras"]))
    assert any(spec.class_name == "Conv3D" for spec in model.graph.layers)


@pytest.mark.parametrize("name", ["conv1d", "conv2d", "conv3d"])
def test_float64_replay_equals_keras(cases, name):
    case = cases(name, "keras3")
    got = replay_layers(case.paths["keras"], case.x, dtype=np.float64)
    assert all(value.dtype == np.float64 for value in got.values())
    assert_layers_equal(case, got)


def test_depthwise_kernel_names_differ_between_keras3_and_tf_keras(cases):
    """Keras 3 stores the depthwise kernel as `kernel`, tf-keras as `depthwise_kernel`: both are read."""
    names = {}
    for backend in ("keras3", "tfkeras"):
        with h5py.File(cases("conv1d", backend).paths["h5"], "r") as f:
            names[backend] = [n.decode() if isinstance(n, bytes) else n
                              for n in f["model_weights/depthwise"].attrs["weight_names"]]
    assert any(n.endswith("/kernel") for n in names["keras3"]), names
    assert any(n.endswith("/depthwise_kernel:0") for n in names["tfkeras"]), names


# ------------------------------------------------------------------ CNN-LSTM: predict, trace, CLI


@pytest.mark.parametrize("name, backend, suffix", file_params(["cnn_lstm", "conv1d"]))
def test_predict_api_equals_keras(cases, name, backend, suffix):
    case = cases(name, backend)
    got = li.predict(li.load_model(str(case.paths[suffix])), case.x)
    np.testing.assert_allclose(got, case.prediction, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name, backend, suffix", file_params(["cnn_lstm"]))
def test_cnn_lstm_trace_equals_keras(cases, name, backend, suffix):
    """Both LSTMs after Conv1D + MaxPooling1D: every step's hidden state equals Keras'."""
    case = cases(name, backend)
    K, _ = keras_module(backend)
    traced = li.trace_arrays(li.load_model(str(case.paths[suffix])), case.x)
    assert set(traced) == {"lstm_a", "lstm_b"}
    for layer in ("lstm_a", "lstm_b"):
        want = lstm_hidden(case.model, layer, case.x, K)
        assert want.shape == (3, 3, 6 if layer == "lstm_a" else 4)  # 9 steps -> Conv1D valid 7 -> pool 3
        np.testing.assert_allclose(layer_steps(traced[layer]["hidden"], want), want, atol=TOL, rtol=TOL)


def layer_steps(traced: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The steps a recurrent layer took, from ``trace_arrays``' (N, input steps, U) array.

    ``trace_arrays`` sizes its arrays by the model input's steps; a layer after
    a convolution or pooling takes fewer, and the rest stay NaN (see
    ``test_trace_arrays_sizes_by_the_layers_steps``)."""
    steps = want.shape[1]
    assert np.isnan(traced[:, steps:]).all()
    return traced[:, :steps]


def test_trace_arrays_sizes_by_the_layers_steps(cases):
    """The LSTM after Conv1D + MaxPooling1D takes 3 of the 9 input steps: its arrays hold 3."""
    case = cases("cnn_lstm", "keras3")
    traced = li.trace_arrays(li.load_model(str(case.paths["keras"])), case.x)
    assert traced["lstm_a"]["hidden"].shape == (3, 3, 6)


def test_conv_chain_lstm_trace_equals_keras(cases):
    """The LSTM at the end of the 1D chain (after separable, depthwise and transposed layers)."""
    case = cases("conv1d", "tfkeras")
    K, _ = keras_module("tfkeras")
    traced = li.trace_arrays(li.load_model(str(case.paths["h5"])), case.x)
    want = lstm_hidden(case.model, "lstm", case.x, K)
    np.testing.assert_allclose(layer_steps(traced["lstm"]["hidden"], want), want, atol=TOL)


def test_cnn_lstm_predict_command_equals_keras(cases, tmp_path):
    case = cases("cnn_lstm", "keras3")
    source = tmp_path / "x.npy"
    np.save(source, case.x)
    result = run_cli("predict", case.paths["keras"], source, "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith("sequence,t,y_0")  # a sequence output: (N, 3, 1)
    got = read_prediction_csv(result.stdout.decode())
    np.testing.assert_allclose(got.reshape(case.prediction.shape), case.prediction, atol=TOL)


@pytest.mark.parametrize("backend, suffix", [("keras3", "keras"), ("tfkeras", "h5")])
def test_video_model_lstm_equals_keras(cases, backend, suffix):
    """TimeDistributed(Conv2D/MaxPooling2D/Flatten) before an LSTM: the LSTM's hidden states and the
    model's output (5-D input, through the compiled program)."""
    case = cases("video_lstm", backend)
    K, _ = keras_module(backend)
    model = li.load_model(str(case.paths[suffix]))
    assert model.recurrent_names() == ["lstm"]
    program = compile_model(model, upto=["lstm"])
    replay = program.replay(case.x, trace=["lstm"], keep_outputs=True)
    blocks = list(replay)
    assert blocks, "the LSTM was not traced"
    np.testing.assert_allclose(replay.layer_outputs["lstm"][0], lstm_hidden(case.model, "lstm", case.x, K), atol=TOL)
    np.testing.assert_allclose(compile_model(model).predict(case.x)[0], case.prediction, atol=TOL)


# ------------------------------------------------------------------ the corpus CNN-LSTM

CORPUS_CNN_LSTM = WILD / "g1213123_conv1d_lstm_k3.2.h5"


@pytest.fixture(scope="module")
def corpus_cnn_lstm():
    if not CORPUS_CNN_LSTM.exists():
        pytest.skip(f"the shared corpus file {CORPUS_CNN_LSTM} is not here")
    import keras

    model = keras.saving.load_model(CORPUS_CNN_LSTM, compile=False)
    x = rng_input((4, 7, 1), 7)
    return model, x


def test_corpus_cnn_lstm_predict_and_trace_equal_keras(corpus_cnn_lstm, tmp_path):
    """The real Keras 3.2 file (Conv1D(64, 3) -> MaxPooling1D(2) -> LSTM(64) -> LSTM(32) -> Dense -> Dense):
    predict (API and command) and both LSTMs' hidden states equal Keras 3 loading the same file."""
    import keras

    keras_model, x = corpus_cnn_lstm
    prediction = keras_model.predict(x, verbose=0)
    model = li.load_model(str(CORPUS_CNN_LSTM))
    np.testing.assert_allclose(li.predict(model, x), prediction, atol=TOL, rtol=TOL)
    traced = li.trace_arrays(model, x)
    assert set(traced) == {"lstm_2", "lstm_3"}
    want = lstm_hidden(keras_model, "lstm_2", x, keras)
    assert want.shape == (4, 2, 64)  # 7 steps -> Conv1D valid 5 -> pool 2
    np.testing.assert_allclose(layer_steps(traced["lstm_2"]["hidden"], want), want, atol=TOL)
    last = keras.Model(keras_model.inputs, keras_model.get_layer("lstm_3").output).predict(x, verbose=0)
    np.testing.assert_allclose(traced["lstm_3"]["hidden"][:, 1], last, atol=TOL)  # its last step
    source = tmp_path / "x.npy"
    np.save(source, x)
    result = run_cli("predict", CORPUS_CNN_LSTM, source, "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    np.testing.assert_allclose(read_prediction_csv(result.stdout.decode()), prediction, atol=TOL)
    result = run_cli("trace", CORPUS_CNN_LSTM, source, "--format", "csv")
    assert result.returncode == 0 and result.stdout.decode().startswith("sequence,layer,t,unit,"), result.stderr.decode()


# ------------------------------------------------------------------ the maths on its own


def test_conv_maths_equals_a_float64_loop_for_large_windows():
    """Windows larger than the input, 'same' padding wider than the input and a dilation far beyond it:
    the window walk skips the taps that miss, and gives what explicit zero padding gives."""
    from lstm_inspect.ops.convolution import conv, pad_amounts

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3))
    for size, dilation, stride in ((9, 1, 1), (3, 40, 1), (4, 2, 3), (1, 1, 4)):
        kernel = rng.normal(size=(size, 3, 2))
        got = conv(x, kernel, strides=stride, padding="same", dilation=dilation)
        before, after = pad_amounts(5, size, stride, dilation, "same")
        padded = np.pad(x, ((0, 0), (before, after), (0, 0)))
        out = -(-5 // stride)
        want = np.zeros((2, out, 2))
        for o in range(out):
            for tap in range(size):
                want[:, o] += padded[:, o * stride + tap * dilation] @ kernel[tap]
        np.testing.assert_allclose(got, want, atol=1e-12)


# ------------------------------------------------------------------ bad files and inputs


def rewrite_config(source: Path, target: Path, layer: str, **changes) -> Path:
    """A copy of a Keras 3 .h5 whose config gives ``layer`` the ``changes``."""
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for spec in config["config"]["layers"]:
            if spec["config"].get("name") == layer:
                spec["config"].update(changes)
        f.attrs["model_config"] = json.dumps(config)
    return target


BAD_SETTINGS = [
    pytest.param("valid_relu", {"strides": [0]}, "strides", id="zero-stride"),
    pytest.param("valid_relu", {"dilation_rate": [True]}, "dilation_rate", id="bool-dilation"),
    pytest.param("valid_relu", {"padding": "reflect"}, "padding", id="unknown-padding"),
    pytest.param("valid_relu", {"kernel_size": [5]}, "kernel_size", id="kernel-size-disagrees"),
    pytest.param("valid_relu", {"filters": 7}, "filters", id="filters-disagree"),
    pytest.param("same_stride2", {"groups": 4}, "groups", id="groups-do-not-divide"),
    pytest.param("valid_relu", {"data_format": "channels_middle"}, "data_format", id="unknown-data-format"),
    pytest.param("separable", {"depth_multiplier": 3}, "depth_multiplier", id="depth-multiplier-disagrees"),
    pytest.param("transpose_same", {"output_padding": [-1]}, "output_padding", id="negative-output-padding"),
    pytest.param("transpose_same", {"strides": [10**9]}, "strides", id="transpose-output-too-large"),
    pytest.param("causal_dilated", {"dilation_rate": [2.0]}, "dilation_rate", id="float-dilation"),
]


@pytest.mark.parametrize("layer, changes, word", BAD_SETTINGS)
def test_bad_settings_are_one_line_errors(cases, tmp_path, layer, changes, word):
    case = cases("conv1d", "keras3")
    path = rewrite_config(case.paths["h5"], tmp_path / "bad.h5", layer, **changes)
    with pytest.raises(ModelFileError) as error:
        li.predict(li.load_model(str(path)), case.x)
    message = str(error.value)
    assert "\n" not in message and f"'{layer}'" in message and word in message, message


def test_bad_setting_through_the_command_exits_2_with_one_line(cases, tmp_path):
    case = cases("conv1d", "keras3")
    path = rewrite_config(case.paths["h5"], tmp_path / "bad.h5", "same_stride2", strides=[-2])
    source = tmp_path / "x.npy"
    np.save(source, case.x)
    output = tmp_path / "out.csv"
    result = run_cli("predict", path, source, "-o", output)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2 and result.stdout == b""
    assert len(stderr.splitlines()) == 1 and "same_stride2" in stderr and "Traceback" not in stderr, stderr
    assert not output.exists()


def test_input_shorter_than_a_valid_kernel_is_an_input_error(cases):
    """Keras refuses an input that leaves no output position; so does the replay, naming the layer."""
    case = cases("cnn_lstm", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    with pytest.raises(LstmInspectError, match="conv1d.*smaller than its window"):
        li.predict(model, case.x[:, :2])
